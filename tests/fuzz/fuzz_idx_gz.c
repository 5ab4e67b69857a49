/* fuzz_idx_gz.c -- libFuzzer target: the IDX readers on gzip input.  The first byte selects
 * images/labels (bit 0) and how the rest becomes the file (bit 1): 0 = written as is (a fuzzed
 * .gz: corrupt streams, truncation, trailing bytes, concatenated members), 1 = gzip-compressed
 * first (a valid .gz around a fuzzed IDX payload, so the IDX layer is reached through inflate).
 * Each input is read three ways (GMFLOW_IDX_INFLATE unset, "zlib", "libdeflate-only"), and the
 * ways must agree (a difference aborts: a finding). */
#define _POSIX_C_SOURCE 200809L
#include <zlib.h>

#include "fuzz_common.h"
#include "gmflow/idx.h"

static size_t gzip_bytes(const uint8_t *in, size_t n, uint8_t **out) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) abort();
    size_t cap = deflateBound(&zs, (uLong)n) + 32;
    *out = malloc(cap);
    if (!*out) abort();
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)n;
    zs.next_out = *out;
    zs.avail_out = (uInt)cap;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END) abort();
    size_t m = zs.total_out;
    deflateEnd(&zs);
    return m;
}

/* Read path as images (images = 1) or labels with GMFLOW_IDX_INFLATE = mode (NULL: unset);
 * *data (malloc'ed) and *n: what was read; msg: the error message. */
static int read_as(const char *path, int images, const char *mode, uint8_t **data, size_t *n,
                   char *msg, size_t len) {
    if (mode)
        setenv("GMFLOW_IDX_INFLATE", mode, 1);
    else
        unsetenv("GMFLOW_IDX_INFLATE");
    int rc;
    *data = NULL;
    *n = 0;
    if (images) {
        gmf_idx_images im;
        rc = gmf_idx_read_images(path, &im);
        fz_check_error(rc, path);
        if (rc == GMF_OK) *data = im.pixels, *n = im.count * im.rows * im.cols;
    } else {
        rc = gmf_idx_read_labels(path, n, data);
        fz_check_error(rc, path);
    }
    snprintf(msg, len, "%s", rc ? gmf_errmsg() : "");
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *path;
    if (data[0] & 2) {
        uint8_t *gz;
        size_t m = gzip_bytes(data + 1, size - 1, &gz);
        path = fz_write("x-ubyte.gz", gz, m);
        free(gz);
    } else {
        path = fz_write("x-ubyte.gz", data + 1, size - 1);
    }
    /* The default inflater (libdeflate with zlib's retry, where built with libdeflate) must agree
     * with zlib's streaming inflate: the same result code and message, or the same bytes; and
     * libdeflate alone, where it accepts, the same bytes (it may refuse what it leaves to zlib). */
    const int images = data[0] & 1;
    uint8_t *d0, *d1;
    size_t n0, n1;
    static char m0[1100], m1[1100];
    const int r0 = read_as(path, images, NULL, &d0, &n0, m0, sizeof m0);
    const int r1 = read_as(path, images, "zlib", &d1, &n1, m1, sizeof m1);
    if (r0 != r1 || strcmp(m0, m1) != 0 || n0 != n1 || (n0 && memcmp(d0, d1, n0) != 0)) {
        fprintf(stderr,
                "FUZZ FINDING: the inflaters disagree: default rc %d (%s) %zu bytes, zlib rc "
                "%d (%s) %zu bytes\n",
                r0, m0, n0, r1, m1, n1);
        abort();
    }
    free(d1);
    if (strcmp(gmf_idx_gz_inflater(), "zlib") != 0) { /* built with libdeflate */
        const int r2 = read_as(path, images, "libdeflate-only", &d1, &n1, m1, sizeof m1);
        if (r2 == GMF_OK && (r0 != GMF_OK || n1 != n0 || (n0 && memcmp(d0, d1, n0) != 0))) {
            fprintf(stderr,
                    "FUZZ FINDING: libdeflate alone accepts (%zu bytes) what the default "
                    "read gave rc %d (%s) %zu bytes\n",
                    n1, r0, m0, n0);
            abort();
        }
        free(d1);
    }
    unsetenv("GMFLOW_IDX_INFLATE");
    free(d0);
    return 0;
}
