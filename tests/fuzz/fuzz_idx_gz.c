/* fuzz_idx_gz.c -- libFuzzer target: the IDX readers on gzip input.  The first byte selects
 * images/labels (bit 0) and how the rest becomes the file (bit 1): 0 = written as is (a fuzzed
 * .gz: corrupt streams, truncation, trailing bytes, concatenated members), 1 = gzip-compressed
 * first (a valid .gz around a fuzzed IDX payload, so the IDX layer is reached through inflate). */
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
    if (data[0] & 1) {
        gmf_idx_images im;
        int rc = gmf_idx_read_images(path, &im);
        fz_check_error(rc, path);
        if (rc == GMF_OK) gmf_idx_images_free(&im);
    } else {
        size_t n;
        uint8_t *lab;
        int rc = gmf_idx_read_labels(path, &n, &lab);
        fz_check_error(rc, path);
        if (rc == GMF_OK) free(lab);
    }
    return 0;
}
