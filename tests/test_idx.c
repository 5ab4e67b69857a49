/* test_idx.c -- the IDX loader (src/io/idx.c): good files, bad files, and the shared MNIST copy.
 *
 * Synthetic files (raw and gzip) are written to a fresh temporary directory and removed at the
 * end.  Every bad file must fail with the right error code and a message that names the file
 * (and, for size problems, the expected and actual byte counts).  The real data is read from
 * $GMFLOW_DATA (default ../shared/data, relative to the project root where ctest runs us):
 * counts, label histograms, md5 of the decompressed bytes and pixel statistics against
 * ../shared/data/README.md.  Without the real data the synthetic cases still run, and the test
 * then exits 77 (ctest: skipped) rather than passing.
 */
#include "gmflow/common.h"
#include "gmflow/dataset.h"
#include "gmflow/idx.h"
#include "gmflow/train.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static int failures = 0;
static char tmpdir[512];

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* ---- helpers: files in the temp dir ----------------------------------------------------- */

static const char *tpath(const char *name) {
    static char buf[8][600];
    static int slot = 0;
    slot = (slot + 1) % 8;
    snprintf(buf[slot], sizeof buf[slot], "%s/%s", tmpdir, name);
    return buf[slot];
}

static void write_raw(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
}

/* gzip-compress data at `level` (0 = stored blocks, so a flipped payload byte only breaks the
 * CRC; 9 = real deflate). */
static void write_gz(const char *path, const void *data, size_t n, int level) {
    char mode[8];
    snprintf(mode, sizeof mode, "wb%d", level);
    gzFile g = gzopen(path, mode);
    if (!g || (n && gzwrite(g, data, (unsigned)n) != (int)n) || gzclose(g) != Z_OK) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
}

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) exit(2);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    unsigned char *b = malloc((size_t)len + 1);
    if (!b || fread(b, 1, (size_t)len, f) != (size_t)len) exit(2);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* An IDX image file in memory: header + count*rows*cols pixels (pixel i = (i*37 + 11) % 256). */
static unsigned char *make_images(size_t count, size_t rows, size_t cols, size_t *n) {
    *n = 16 + count * rows * cols;
    unsigned char *b = malloc(*n);
    put_be32(b, 2051);
    put_be32(b + 4, (uint32_t)count);
    put_be32(b + 8, (uint32_t)rows);
    put_be32(b + 12, (uint32_t)cols);
    for (size_t i = 0; i < count * rows * cols; i++)
        b[16 + i] = (unsigned char)((i * 37 + 11) % 256);
    return b;
}

static unsigned char *make_labels(size_t count, size_t *n) {
    *n = 8 + count;
    unsigned char *b = malloc(*n);
    put_be32(b, 2049);
    put_be32(b + 4, (uint32_t)count);
    for (size_t i = 0; i < count; i++)
        b[8 + i] = (unsigned char)((i * 7) % 10);
    return b;
}

/* The call failed with `code` and the message names `path` and contains every `needles` entry.
 */
static void expect_err(int rc, int code, const char *path, const char *const *needles,
                       const char *what) {
    const char *msg = gmf_errmsg();
    CHECK(rc == code, "%s: rc %d (%s), expected %d; message: %s", what, rc, gmf_strerror(rc), code,
          msg);
    CHECK(strstr(msg, path) != NULL, "%s: message does not name %s: %s", what, path, msg);
    for (; needles && *needles; needles++)
        CHECK(strstr(msg, *needles) != NULL, "%s: message lacks \"%s\": %s", what, *needles, msg);
    if (getenv("GMFLOW_TEST_VERBOSE")) printf("  %-34s -> %s\n", what, msg);
}

#define NEEDLES(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- the two .gz inflaters (gmf_idx_gz_inflater): libdeflate (whole file, zlib retries what
 * it refuses) and zlib's streaming inflate, chosen by GMFLOW_IDX_INFLATE.  Every file these tests
 * read is also read with the other settings: "zlib" must give the same result code and message
 * (or the same bytes), "libdeflate-only" (no zlib retry) the same bytes, or a failure that names
 * the file -- so the libdeflate path itself rejects every corrupt or truncated .gz here. */

static const char *inflater_env0; /* GMFLOW_IDX_INFLATE as the test started (ctest sets it) */
static int have_libdeflate;       /* the default inflater is libdeflate */
static size_t agree_good, agree_bad;

static void set_inflater(const char *mode) {
    if (mode)
        setenv("GMFLOW_IDX_INFLATE", mode, 1);
    else
        unsetenv("GMFLOW_IDX_INFLATE");
}

/* Read images (images = 1) or labels with GMFLOW_IDX_INFLATE = mode; *data (malloc'ed, *n
 * bytes) and the message (msg) are the caller's; then the starting setting is restored. */
static int read_mode(const char *path, int images, const char *mode, uint8_t **data, size_t *n,
                     char *msg, size_t len) {
    set_inflater(mode);
    int rc;
    *data = NULL;
    *n = 0;
    if (images) {
        gmf_idx_images im;
        rc = gmf_idx_read_images(path, &im);
        if (rc == GMF_OK) *data = im.pixels, *n = im.count * im.rows * im.cols;
    } else {
        rc = gmf_idx_read_labels(path, n, data);
    }
    snprintf(msg, len, "%s", rc ? gmf_errmsg() : "");
    set_inflater(inflater_env0);
    return rc;
}

/* path failed with rc and message msg by default: the other inflaters agree. */
static void modes_bad(const char *path, int images, int rc, const char *what) {
    char msg0[1024], msg[1024];
    snprintf(msg0, sizeof msg0, "%s", gmf_errmsg());
    uint8_t *d;
    size_t n;
    int rz = read_mode(path, images, "zlib", &d, &n, msg, sizeof msg);
    CHECK(rz == rc && strcmp(msg, msg0) == 0, "%s: zlib: rc %d \"%s\", default rc %d \"%s\"", what,
          rz, msg, rc, msg0);
    free(d);
    if (have_libdeflate) {
        int rl = read_mode(path, images, "libdeflate-only", &d, &n, msg, sizeof msg);
        CHECK(rl != GMF_OK && rl != GMF_ENOMEM && strstr(msg, path),
              "%s: libdeflate-only: rc %d \"%s\"", what, rl, msg);
        if (getenv("GMFLOW_TEST_VERBOSE")) printf("  %-34s libdeflate-only -> %s\n", what, msg);
        free(d);
    }
    agree_bad++;
}

/* path holds exactly the n bytes `want` (images = 1: pixels; 0: labels): the same with every
 * inflater. */
static void modes_good(const char *path, int images, const uint8_t *want, size_t n) {
    const char *modes[] = {"zlib", "libdeflate-only"};
    for (int m = 0; m < 1 + have_libdeflate; m++) {
        uint8_t *d;
        size_t got;
        char msg[1024];
        int rc = read_mode(path, images, modes[m], &d, &got, msg, sizeof msg);
        CHECK(rc == GMF_OK && got == n && (n == 0 || memcmp(d, want, n) == 0),
              "%s: %s: rc %d (%s), %zu bytes, expected %zu, %s", path, modes[m], rc, msg, got, n,
              rc == GMF_OK && got == n ? "different bytes" : "");
        free(d);
    }
    agree_good++;
}

static int bad_images(const char *path, int code, const char *const *needles, const char *what) {
    gmf_idx_images im;
    int rc = gmf_idx_read_images(path, &im);
    expect_err(rc, code, path, needles, what);
    CHECK(im.pixels == NULL && im.count == 0, "%s: output not cleared on failure", what);
    modes_bad(path, 1, rc, what);
    return rc;
}

static int bad_labels(const char *path, int code, const char *const *needles, const char *what) {
    size_t n = 99;
    uint8_t *lab = (uint8_t *)1;
    int rc = gmf_idx_read_labels(path, &n, &lab);
    expect_err(rc, code, path, needles, what);
    CHECK(lab == NULL && n == 0, "%s: output not cleared on failure", what);
    modes_bad(path, 0, rc, what);
    return rc;
}

/* ---- MD5 (RFC 1321), to check the decompressed MNIST bytes against the README ---------- */

typedef struct {
    uint32_t h[4];
    uint64_t len;
    unsigned char buf[64];
    size_t nbuf;
} md5_ctx;

static uint32_t rol(uint32_t x, int c) {
    return (x << c) | (x >> (32 - c));
}

static void md5_block(md5_ctx *c, const unsigned char *p) {
    static const uint32_t K[64] = {
        0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613,
        0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193,
        0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d,
        0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
        0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122,
        0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
        0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244,
        0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
        0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
        0xeb86d391};
    static const int R[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                              5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
                              4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                              6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};
    uint32_t m[16];
    for (int i = 0; i < 16; i++)
        m[i] = (uint32_t)p[4 * i] | ((uint32_t)p[4 * i + 1] << 8) | ((uint32_t)p[4 * i + 2] << 16) |
               ((uint32_t)p[4 * i + 3] << 24);
    uint32_t a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3];
    for (int i = 0; i < 64; i++) {
        uint32_t f;
        int g;
        if (i < 16)
            f = (b & cc) | (~b & d), g = i;
        else if (i < 32)
            f = (d & b) | (~d & cc), g = (5 * i + 1) % 16;
        else if (i < 48)
            f = b ^ cc ^ d, g = (3 * i + 5) % 16;
        else
            f = cc ^ (b | ~d), g = (7 * i) % 16;
        uint32_t t = d;
        d = cc;
        cc = b;
        b = b + rol(a + f + K[i] + m[g], R[i]);
        a = t;
    }
    c->h[0] += a, c->h[1] += b, c->h[2] += cc, c->h[3] += d;
}

static void md5_init(md5_ctx *c) {
    memset(c, 0, sizeof *c);
    c->h[0] = 0x67452301, c->h[1] = 0xefcdab89, c->h[2] = 0x98badcfe, c->h[3] = 0x10325476;
}

static void md5_update(md5_ctx *c, const void *data, size_t n) {
    const unsigned char *p = data;
    c->len += n;
    while (n) {
        size_t k = 64 - c->nbuf < n ? 64 - c->nbuf : n;
        memcpy(c->buf + c->nbuf, p, k);
        c->nbuf += k, p += k, n -= k;
        if (c->nbuf == 64) md5_block(c, c->buf), c->nbuf = 0;
    }
}

static void md5_hex(md5_ctx *c, char out[33]) {
    uint64_t bits = c->len * 8;
    unsigned char pad = 0x80, zero = 0, lenb[8];
    md5_update(c, &pad, 1);
    while (c->nbuf != 56)
        md5_update(c, &zero, 1);
    for (int i = 0; i < 8; i++)
        lenb[i] = (unsigned char)(bits >> (8 * i));
    md5_update(c, lenb, 8);
    for (int i = 0; i < 16; i++)
        sprintf(out + 2 * i, "%02x", (c->h[i / 4] >> (8 * (i % 4))) & 0xff);
}

/* md5 of the decompressed IDX file, rebuilt from what the loader returned (header + payload). */
static void md5_images(const gmf_idx_images *im, char out[33]) {
    unsigned char h[16];
    put_be32(h, 2051), put_be32(h + 4, (uint32_t)im->count), put_be32(h + 8, (uint32_t)im->rows);
    put_be32(h + 12, (uint32_t)im->cols);
    md5_ctx c;
    md5_init(&c);
    md5_update(&c, h, 16);
    md5_update(&c, im->pixels, im->count * im->rows * im->cols);
    md5_hex(&c, out);
}

static void md5_labels(const uint8_t *lab, size_t n, char out[33]) {
    unsigned char h[8];
    put_be32(h, 2049), put_be32(h + 4, (uint32_t)n);
    md5_ctx c;
    md5_init(&c);
    md5_update(&c, h, 8);
    md5_update(&c, lab, n);
    md5_hex(&c, out);
}

/* ---- good synthetic files --------------------------------------------------------------- */

static void test_good_synthetic(void) {
    size_t ni, nl;
    unsigned char *img = make_images(5, 3, 4, &ni);
    unsigned char *lab = make_labels(5, &nl);

    const char *raw = tpath("img.idx"), *gz9 = tpath("img.idx.gz"), *gz0 = tpath("img0.gz");
    write_raw(raw, img, ni);
    write_gz(gz9, img, ni, 9);
    write_gz(gz0, img, ni, 0);
    /* two gzip members back to back (cat a.gz b.gz): one stream */
    const char *multi = tpath("multi.gz"), *part2 = tpath("part2.gz");
    write_gz(multi, img, 21, 6);
    write_gz(part2, img + 21, ni - 21, 6);
    {
        size_t n1, n2;
        unsigned char *a = read_all(multi, &n1), *b = read_all(part2, &n2);
        unsigned char *ab = malloc(n1 + n2);
        memcpy(ab, a, n1), memcpy(ab + n1, b, n2);
        write_raw(multi, ab, n1 + n2);
        free(a), free(b), free(ab);
    }
    const char *files[] = {raw, gz9, gz0, multi};
    for (int f = 0; f < 4; f++) {
        gmf_idx_images im;
        int rc = gmf_idx_read_images(files[f], &im);
        CHECK(rc == GMF_OK, "%s: %s", files[f], gmf_errmsg());
        if (rc) continue;
        CHECK(im.count == 5 && im.rows == 3 && im.cols == 4, "%s: dims %zu %zu %zu", files[f],
              im.count, im.rows, im.cols);
        CHECK(memcmp(im.pixels, img + 16, 60) == 0, "%s: pixels differ", files[f]);
        gmf_idx_images_free(&im);
        CHECK(im.pixels == NULL, "free clears");
        modes_good(files[f], 1, img + 16, 60);
    }

    const char *lraw = tpath("lab.idx"), *lgz = tpath("lab.idx.gz");
    write_raw(lraw, lab, nl);
    write_gz(lgz, lab, nl, 9);
    for (int f = 0; f < 2; f++) {
        const char *p = f ? lgz : lraw;
        size_t n;
        uint8_t *l;
        int rc = gmf_idx_read_labels(p, &n, &l);
        CHECK(rc == GMF_OK, "%s: %s", p, gmf_errmsg());
        if (rc) continue;
        CHECK(n == 5 && memcmp(l, lab + 8, 5) == 0, "%s: labels differ", p);
        free(l);
        modes_good(p, 0, lab + 8, 5);
    }

    /* zero images is a valid file (the data set loader rejects it) */
    size_t ne;
    unsigned char *empty = make_images(0, 28, 28, &ne);
    write_gz(tpath("empty.gz"), empty, ne, 9);
    gmf_idx_images im;
    CHECK(gmf_idx_read_images(tpath("empty.gz"), &im) == GMF_OK && im.count == 0, "empty: %s",
          gmf_errmsg());
    gmf_idx_images_free(&im);
    modes_good(tpath("empty.gz"), 1, empty, 0);
    free(empty);
    free(img);
    free(lab);
}

/* Image x's mean and 1/sd by the direct two-pass double formula (pixel order), and how many of
 * the n images of px have a (mean, 1/sd) in scale that differs from it in any bit. */
static void direct_stats(const uint8_t *x, size_t d, double *mean, double *inv) {
    double sum = 0, ss = 0;
    for (size_t j = 0; j < d; j++)
        sum += x[j];
    const double m = sum / (double)d;
    for (size_t j = 0; j < d; j++)
        ss += (x[j] - m) * (x[j] - m);
    const double sd = sqrt(ss / (double)(d - 1));
    *mean = m, *inv = sd > 0 ? 1.0 / sd : 0.0;
}

static size_t scale_mismatches(const uint8_t *px, size_t n, size_t d, const double *scale) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double ms[2];
        direct_stats(px + i * d, d, &ms[0], &ms[1]);
        bad += memcmp(ms, scale + 2 * i, sizeof ms) != 0;
    }
    return bad;
}

/* The data set: file discovery (.gz then raw), normalization, limit. */
static void test_dataset_synthetic(void) {
    const size_t n = 6, rows = 5, cols = 7, d = rows * cols;
    size_t ni, nl;
    unsigned char *img = make_images(n, rows, cols, &ni);
    unsigned char *lab = make_labels(n, &nl);
    memset(img + 16 + 2 * d, 77, d); /* image 2 is constant -> zeros */
    img[16 + 4 * d] = 255;           /* image 4: one bright pixel */
    write_gz(tpath("syn-images-idx3-ubyte.gz"), img, ni, 9);
    write_raw(tpath("syn-labels-idx1-ubyte"), lab, nl); /* raw labels next to gz images */

    gmf_dataset ds;
    int rc = gmf_dataset_load(tmpdir, "syn", 0, &ds);
    CHECK(rc == GMF_OK, "syn: %s", gmf_errmsg());
    if (rc == GMF_OK) {
        CHECK(ds.n == n && ds.d == d && ds.nclass == 10, "syn dims %zu %zu %zu", ds.n, ds.d,
              ds.nclass);
        CHECK(memcmp(ds.label, lab + 8, n) == 0, "syn labels");
        for (size_t i = 0; i < n; i++) {
            const unsigned char *x = img + 16 + i * d;
            double mean = 0, ss = 0, m = 0, s2 = 0, maxerr = 0;
            for (size_t j = 0; j < d; j++)
                mean += x[j];
            mean /= (double)d;
            for (size_t j = 0; j < d; j++)
                ss += (x[j] - mean) * (x[j] - mean);
            const double sd = sqrt(ss / (double)(d - 1));
            for (size_t j = 0; j < d; j++) {
                const double y = ds.x[i * d + j];
                const double ref = sd > 0 ? (x[j] - mean) / sd : 0.0;
                m += y, s2 += y * y;
                if (fabs(y - ref) > maxerr) maxerr = fabs(y - ref);
            }
            CHECK(maxerr < 1e-6, "image %zu: max |x - ref| = %g", i, maxerr);
            CHECK(fabs(m / (double)d) < 1e-6, "image %zu: mean %g", i, m / (double)d);
            if (i == 2)
                CHECK(s2 == 0.0, "constant image not zero: sum sq %g", s2);
            else
                CHECK(fabs(s2 - (double)(d - 1)) < 1e-4 * (double)d,
                      "image %zu: sum sq %g, expected d - 1 = %zu (sample std)", i, s2, d - 1);
        }
        gmf_dataset_free(&ds);
        CHECK(ds.x == NULL && ds.n == 0, "dataset_free clears");
    }
    rc = gmf_dataset_load(tmpdir, "syn", 2, &ds);
    CHECK(rc == GMF_OK && ds.n == 2 && ds.label[1] == lab[9], "limit 2: %s", gmf_errmsg());
    gmf_dataset_free(&ds);
    /* the compact form (bytes + per-image mean, 1/sd), whole and limited: gmf_dataset_row gives
     * bitwise the float form's rows */
    for (size_t lim = 0; lim <= 2; lim += 2) {
        gmf_dataset fl, cp;
        int r1 = gmf_dataset_load(tmpdir, "syn", lim, &fl),
            r2 = gmf_dataset_load_u8(tmpdir, "syn", lim, &cp);
        CHECK(r1 == GMF_OK && r2 == GMF_OK && cp.x == NULL && cp.n == fl.n && cp.d == fl.d &&
                  !memcmp(cp.label, fl.label, fl.n) && !memcmp(cp.px, img + 16, cp.n * d),
              "compact limit %zu: %s", lim, gmf_errmsg());
        float row[5 * 7];
        for (size_t i = 0; r1 == GMF_OK && r2 == GMF_OK && i < cp.n; i++) {
            gmf_dataset_row(&cp, i, row);
            CHECK(!memcmp(row, fl.x + i * d, sizeof row), "compact limit %zu: row %zu differs", lim,
                  i);
            gmf_dataset_row(&fl, i, row);
            CHECK(!memcmp(row, fl.x + i * d, sizeof row), "float form: row %zu", i);
        }
        gmf_dataset_free(&fl), gmf_dataset_free(&cp);
        CHECK(cp.px == NULL && cp.scale == NULL, "dataset_free clears the compact form");
    }
    rc = gmf_dataset_load(tmpdir, "syn", 1000, &ds);
    CHECK(rc == GMF_OK && ds.n == n, "limit > n keeps all: %s", gmf_errmsg());
    gmf_dataset_free(&ds);

    /* the standardization helper on its own: population of 2 values {0, 2} -> {-1/sqrt2, ...}
     * with the sample sd sqrt(2) */
    const uint8_t two[2] = {0, 2};
    float y[2];
    gmf_dataset_standardize_u8(y, two, 1, 2);
    CHECK(fabs(y[0] + 1 / sqrt(2.0)) < 1e-7 && fabs(y[1] - 1 / sqrt(2.0)) < 1e-7, "%g %g", y[0],
          y[1]);

    /* bitwise equal to the direct two-pass double formula (the helper uses value tables) on
     * pseudo-random images, a sparse MNIST-like one and a constant one */
    enum { NI = 43, DI = 784 }; /* 43: five groups of eight and a remainder */
    uint8_t *u = malloc((size_t)NI * DI);
    float *yy = malloc((size_t)NI * DI * sizeof *yy);
    CHECK(u && yy, "out of memory");
    if (u && yy) {
        uint32_t st = 12345u;
        for (size_t k = 0; k < (size_t)NI * DI; k++) {
            st = st * 1664525u + 1013904223u;
            u[k] = (uint8_t)(st >> 24);
            if (k / DI == 1 && (st >> 8) % 5) u[k] = 0; /* mostly zero, like MNIST */
            if (k / DI == 2) u[k] = 77;                 /* constant */
        }
        gmf_dataset_standardize_u8(yy, u, NI, DI);
        size_t bad = 0;
        for (size_t i = 0; i < NI; i++) {
            const uint8_t *x = u + i * DI;
            double sum = 0, ss = 0;
            for (size_t j = 0; j < DI; j++)
                sum += x[j];
            const double mean = sum / DI;
            for (size_t j = 0; j < DI; j++)
                ss += (x[j] - mean) * (x[j] - mean);
            const double sd = sqrt(ss / (DI - 1)), inv = sd > 0 ? 1.0 / sd : 0.0;
            for (size_t j = 0; j < DI; j++) {
                const float ref = (float)((x[j] - mean) * inv);
                if (memcmp(&ref, &yy[i * DI + j], sizeof ref) != 0) bad++;
            }
        }
        CHECK(bad == 0, "standardize_u8: %zu of %d values differ from the direct formula", bad,
              NI * DI);
        bad = 0; /* the compact form's per-image stats and value, one image at a time */
        for (size_t i = 0; i < NI; i++) {
            double mean, inv;
            gmf_dataset_u8_stats(u + i * DI, DI, &mean, &inv);
            for (size_t j = 0; j < DI; j++) {
                const float v = gmf_dataset_u8_value(u[i * DI + j], mean, inv);
                if (memcmp(&v, &yy[i * DI + j], sizeof v) != 0) bad++;
            }
        }
        CHECK(bad == 0, "u8_stats/u8_value: %zu of %d values differ from standardize_u8", bad,
              NI * DI);
        /* the compact load's (mean, 1/sd) in blocks (32 images in AVX-512 lanes, then 8, then
         * the scalar remainder of 3): every double bitwise the direct formula's */
        size_t nimg, nlab;
        unsigned char *f = make_images(NI, 28, 28, &nimg), *fl = make_labels(NI, &nlab);
        memcpy(f + 16, u, (size_t)NI * DI);
        write_gz(tpath("st-images-idx3-ubyte.gz"), f, nimg, 1);
        write_raw(tpath("st-labels-idx1-ubyte"), fl, nlab);
        gmf_dataset cs;
        int rs = gmf_dataset_load_u8(tmpdir, "st", 0, &cs);
        CHECK(rs == GMF_OK && cs.n == NI, "st: %s", gmf_errmsg());
        if (rs == GMF_OK) {
            const size_t nb = scale_mismatches(cs.px, NI, DI, cs.scale);
            CHECK(nb == 0,
                  "compact load: %zu of %d images' (mean, 1/sd) differ in some bit from "
                  "the direct formula",
                  nb, NI);
            gmf_dataset_free(&cs);
        }
        free(f), free(fl);
    }
    free(u);
    free(yy);
    free(img);
    free(lab);
}

/* ---- bad files ------------------------------------------------------------------------ */

static void test_bad_files(void) {
    size_t ni, nl;
    unsigned char *img = make_images(5, 3, 4, &ni); /* 16 + 60 bytes */
    unsigned char *lab = make_labels(5, &nl);       /* 8 + 5 bytes */
    const char *p;

    /* nonexistent */
    p = tpath("does-not-exist.gz");
    bad_images(p, GMF_EIO, NEEDLES("cannot open"), "nonexistent images");
    bad_labels(p, GMF_EIO, NEEDLES("cannot open"), "nonexistent labels");

    /* wrong magic: garbage, a label file read as images and vice versa */
    unsigned char *b = malloc(ni + 64);
    memcpy(b, img, ni);
    put_be32(b, 0x12345678);
    p = tpath("badmagic.idx");
    write_raw(p, b, ni);
    bad_images(p, GMF_EFORMAT, NEEDLES("magic", "2051"), "garbage magic (raw)");
    p = tpath("badmagic.gz");
    write_gz(p, b, ni, 9);
    bad_images(p, GMF_EFORMAT, NEEDLES("magic", "2051"), "garbage magic (gz)");
    p = tpath("labels-as-images.gz");
    write_gz(p, lab, nl, 9);
    bad_images(p, GMF_EFORMAT, NEEDLES("2049", "2051"), "label file read as images");
    p = tpath("images-as-labels.gz");
    write_gz(p, img, ni, 9);
    bad_labels(p, GMF_EFORMAT, NEEDLES("2051", "2049"), "image file read as labels");

    /* wrong type byte (0x0D = float) */
    memcpy(b, img, ni);
    b[2] = 0x0d;
    p = tpath("badtype.gz");
    write_gz(p, b, ni, 9);
    bad_images(p, GMF_EFORMAT, NEEDLES("type byte 0x0d", "0x08"), "type byte 0x0d");

    /* empty file, truncated header */
    p = tpath("empty.idx");
    write_raw(p, img, 0);
    bad_images(p, GMF_EFORMAT, NEEDLES("0 bytes"), "empty file");
    p = tpath("shorthdr.idx");
    write_raw(p, img, 10);
    bad_images(p, GMF_EFORMAT, NEEDLES("header", "16", "10"), "truncated header (raw)");
    p = tpath("shorthdr.gz");
    write_gz(p, img, 10, 9);
    bad_images(p, GMF_EFORMAT, NEEDLES("header", "16", "10"), "truncated header (gz)");

    /* zero rows */
    memcpy(b, img, 16);
    put_be32(b + 8, 0);
    p = tpath("zerorows.idx");
    write_raw(p, b, 16);
    bad_images(p, GMF_EFORMAT, NEEDLES("zero"), "zero rows");

    /* truncated payload: 60 expected, 53 present */
    p = tpath("trunc.idx");
    write_raw(p, img, ni - 7);
    bad_images(p, GMF_EFORMAT, NEEDLES("60", "53", "truncated"), "truncated payload (raw)");
    p = tpath("trunc.gz");
    write_gz(p, img, ni - 7, 9);
    bad_images(p, GMF_EFORMAT, NEEDLES("60", "53", "truncated"), "truncated payload (gz)");
    p = tpath("trunclab.idx");
    write_raw(p, lab, nl - 1);
    bad_labels(p, GMF_EFORMAT, NEEDLES("5", "4"), "truncated labels (raw)");

    /* trailing garbage: 60 expected, 63 present */
    memcpy(b, img, ni);
    memcpy(b + ni, "xyz", 3);
    p = tpath("trailing.idx");
    write_raw(p, b, ni + 3);
    bad_images(p, GMF_EFORMAT, NEEDLES("60", "63", "trailing"), "trailing bytes (raw)");
    p = tpath("trailing.gz");
    write_gz(p, b, ni + 3, 9);
    bad_images(p, GMF_EFORMAT, NEEDLES("60", "63", "trailing"), "trailing bytes (gz payload)");
    p = tpath("traillab.gz");
    memcpy(b, lab, nl);
    b[nl] = 1;
    write_gz(p, b, nl + 1, 9);
    bad_labels(p, GMF_EFORMAT, NEEDLES("trailing"), "trailing bytes (labels)");

    /* gzip-level damage, on a file big enough to have real deflate blocks */
    size_t nbig;
    unsigned char *big = make_images(40, 28, 28, &nbig);
    for (size_t i = 16; i < nbig; i++)
        big[i] = (unsigned char)((big[i] * 2654435761u) >> 13);
    const char *good9 = tpath("big9.gz"), *good0 = tpath("big0.gz");
    write_gz(good9, big, nbig, 9);
    write_gz(good0, big, nbig, 0);
    size_t n9, n0;
    unsigned char *z9 = read_all(good9, &n9), *z0 = read_all(good0, &n0);
    {
        gmf_idx_images im;
        CHECK(gmf_idx_read_images(good9, &im) == GMF_OK && im.count == 40, "big9: %s",
              gmf_errmsg());
        gmf_idx_images_free(&im);
    }
    /* flip bytes in the middle of the deflate stream: inflate error or CRC mismatch */
    unsigned char *z = malloc(n9 + n0 + 16);
    memcpy(z, z9, n9);
    for (size_t i = n9 / 2; i < n9 / 2 + 8; i++)
        z[i] ^= 0x5a;
    p = tpath("corrupt9.gz");
    write_raw(p, z, n9);
    bad_images(p, GMF_EFORMAT, NEEDLES("corrupt gzip"), "flipped bytes (deflate)");
    /* stored blocks: one flipped payload byte decodes fine, only the CRC-32 catches it */
    memcpy(z, z0, n0);
    z[n0 / 2] ^= 0x01;
    p = tpath("corrupt0.gz");
    write_raw(p, z, n0);
    bad_images(p, GMF_EFORMAT, NEEDLES("corrupt gzip", "incorrect data check"),
               "flipped byte (CRC-32)");
    /* damaged ISIZE trailer */
    memcpy(z, z9, n9);
    z[n9 - 1] ^= 0xff;
    p = tpath("badisize.gz");
    write_raw(p, z, n9);
    bad_images(p, GMF_EFORMAT, NEEDLES("corrupt gzip", "incorrect length check"), "bad ISIZE");
    /* truncated .gz: the compressed stream stops early */
    p = tpath("cut.gz");
    write_raw(p, z9, n9 / 2);
    bad_images(p, GMF_EFORMAT, NEEDLES("corrupt gzip", "truncated"), "truncated .gz");
    p = tpath("cut-trailer.gz");
    write_raw(p, z9, n9 - 3);
    bad_images(p, GMF_EFORMAT, NEEDLES("corrupt gzip"), "truncated .gz trailer");
    /* bytes after the gzip stream that are not another member */
    memcpy(z, z9, n9);
    memcpy(z + n9, "garbage!", 8);
    p = tpath("gzgarbage.gz");
    write_raw(p, z, n9 + 8);
    bad_images(p, GMF_EFORMAT, NEEDLES("8 trailing bytes after the gzip stream"),
               "garbage after gzip stream");
    /* a damaged gzip header */
    memcpy(z, z9, n9);
    z[2] = 7; /* compression method must be 8 */
    p = tpath("badgzhdr.gz");
    write_raw(p, z, n9);
    bad_images(p, GMF_EFORMAT, NEEDLES("corrupt gzip"), "bad gzip header");

    free(z), free(z9), free(z0), free(big), free(b), free(img), free(lab);
}

/* gzip containers the libdeflate path reads member by member: several members (one empty), a
 * header with FNAME and FEXTRA fields, a header CRC (FHCRC: right, and wrong), a member that holds
 * more than the IDX header declares, and a payload above 4 MiB (the huge-page buffer).  Every
 * inflater must read them alike (modes_good / modes_bad). */
static size_t gz_member(unsigned char *out, const unsigned char *data, size_t n, int flags) {
    /* a gzip member by hand: 10-byte header (+ FEXTRA, FNAME, FHCRC as asked), raw deflate, trailer
     */
    size_t k = 0;
    const unsigned char h[10] = {0x1f, 0x8b, 8, (unsigned char)flags, 0, 0, 0, 0, 0, 3};
    memcpy(out, h, 10), k = 10;
    if (flags & 4) { /* FEXTRA: 2-byte length, then that many bytes */
        out[k++] = 5, out[k++] = 0;
        memcpy(out + k, "AB\x02\0z", 5), k += 5;
    }
    if (flags & 8) { /* FNAME: zero-terminated */
        memcpy(out + k, "x-ubyte", 8), k += 8;
    }
    if (flags & 2) { /* FHCRC: low 16 bits of the CRC-32 of the header so far */
        const uLong crc = crc32(0L, out, (uInt)k);
        out[k++] = (unsigned char)(crc & 0xff), out[k++] = (unsigned char)((crc >> 8) & 0xff);
    }
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) exit(2);
    zs.next_in = (Bytef *)(uintptr_t)data;
    zs.avail_in = (uInt)n;
    zs.next_out = out + k;
    zs.avail_out = (uInt)(deflateBound(&zs, (uLong)n) + 16);
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END) exit(2);
    k += zs.total_out;
    deflateEnd(&zs);
    const uLong crc = crc32(0L, data, (uInt)n);
    for (int i = 0; i < 4; i++)
        out[k++] = (unsigned char)((crc >> (8 * i)) & 0xff);
    for (int i = 0; i < 4; i++)
        out[k++] = (unsigned char)(((uLong)n >> (8 * i)) & 0xff);
    return k;
}

static void test_gz_members(void) {
    size_t ni;
    unsigned char *img = realloc(make_images(300, 28, 28, &ni), 16 + 235200 + 5);
    if (!img) exit(2);
    for (size_t i = 16; i < ni; i++)
        img[i] = (unsigned char)(((i * 2654435761u) >> 11) & (i % 7 ? 0x0f : 0xff));
    unsigned char *z = malloc(2 * ni + 4096);
    const char *p;
    size_t k;

    /* four members: header + 1000 bytes, an empty one, 100000 bytes, the rest */
    k = gz_member(z, img, 1016, 0);
    k += gz_member(z + k, img, 0, 0);
    k += gz_member(z + k, img + 1016, 100000, 8);
    k += gz_member(z + k, img + 101016, ni - 101016, 4 | 8);
    p = tpath("members4.gz");
    write_raw(p, z, k);
    modes_good(p, 1, img + 16, ni - 16);
    /* a header CRC (FHCRC), right: read (by zlib, which checks it); wrong: an error */
    k = gz_member(z, img, ni, 2 | 8);
    p = tpath("fhcrc.gz");
    write_raw(p, z, k);
    modes_good(p, 1, img + 16, ni - 16);
    z[18] ^= 0x01; /* the CRC-16 after the 10-byte header and "x-ubyte\0" */
    p = tpath("fhcrc-bad.gz");
    write_raw(p, z, k);
    bad_images(p, GMF_EFORMAT, NEEDLES("corrupt gzip", "header crc"), "wrong gzip header CRC");
    /* a second member that holds 5 bytes more than the header declares */
    k = gz_member(z, img, ni / 2, 0);
    memcpy(img + ni, "12345", 5);
    k += gz_member(z + k, img + ni / 2, ni - ni / 2 + 5, 0);
    p = tpath("members-long.gz");
    write_raw(p, z, k);
    bad_images(p, GMF_EFORMAT, NEEDLES("5 trailing bytes"), "second member too long");
    /* a second member that is cut short, and one missing */
    k = gz_member(z, img, ni / 2, 0);
    const size_t k1 = k;
    k += gz_member(z + k, img + ni / 2, ni - ni / 2, 0);
    p = tpath("members-cut.gz");
    write_raw(p, z, k - 10);
    bad_images(p, GMF_EFORMAT, NEEDLES("corrupt gzip"), "second member truncated");
    p = tpath("members-missing.gz");
    write_raw(p, z, k1);
    bad_images(p, GMF_EFORMAT, NEEDLES("truncated", "missing"), "second member missing");
    free(z);
    free(img);

    /* above 4 MiB: 6000 images of 28 x 28 */
    unsigned char *big = make_images(6000, 28, 28, &ni);
    for (size_t i = 16; i < ni; i++)
        big[i] = (unsigned char)((i * 40503u) >> 9);
    p = tpath("big6000.gz");
    write_gz(p, big, ni, 6);
    modes_good(p, 1, big + 16, ni - 16);
    free(big);
}

/* gmf_dataset_load_sets: several sets read in parallel and standardized in chunks of images
 * over the threads give bitwise what one gmf_dataset_load(_u8) per set gives, at 1, 2 and 3
 * threads, compact and float, whole and limited; a failure reports the first failing set in
 * order and leaves every output cleared. */
static int same_set(const gmf_dataset *a, const gmf_dataset *b) {
    if (a->n != b->n || a->d != b->d || a->nclass != b->nclass) return 0;
    if (memcmp(a->label, b->label, a->n)) return 0;
    if (a->x) return b->x && !memcmp(a->x, b->x, a->n * a->d * sizeof(float));
    return !b->x && !memcmp(a->px, b->px, a->n * a->d) &&
           !memcmp(a->scale, b->scale, 2 * a->n * sizeof(double));
}

static void check_sets(const char *dir, size_t nsets, const char *const *prefix,
                       const size_t *limit, const char *what) {
    for (int compact = 0; compact <= 1; compact++)
        for (int th = 1; th <= 3; th++) {
            gmf_dataset got[4], want[4];
            int rc = gmf_dataset_load_sets(dir, nsets, prefix, limit, compact, th, got);
            CHECK(rc == GMF_OK, "%s: sets, compact %d, %d threads: %s", what, compact, th,
                  gmf_errmsg());
            if (rc) continue;
            for (size_t s = 0; s < nsets; s++) {
                const size_t lim = limit ? limit[s] : 0;
                rc = compact ? gmf_dataset_load_u8(dir, prefix[s], lim, &want[s])
                             : gmf_dataset_load(dir, prefix[s], lim, &want[s]);
                CHECK(rc == GMF_OK && same_set(&got[s], &want[s]) &&
                          gmf_train_data_checksum(&got[s]) == gmf_train_data_checksum(&want[s]),
                      "%s: set %s, compact %d, %d threads: not the single load's data (%s)", what,
                      prefix[s], compact, th, rc ? gmf_errmsg() : "");
                gmf_dataset_free(&want[s]);
                gmf_dataset_free(&got[s]);
            }
        }
}

/* gmf_dataset_find: a given directory as is; $GMFLOW_DATA/<name> when it exists; otherwise
 * ../shared/data/<name> from the working directory (here: a temporary tree with a fake
 * ../shared/data); none: GMF_EIO naming the set; a too small buffer: GMF_EINVAL. */
static void test_find(void) {
    char out[1024], cwd[1024], want[1100];
    CHECK(getcwd(cwd, sizeof cwd) != NULL, "getcwd: %s", strerror(errno));
    const char *old = getenv("GMFLOW_DATA");
    char saved[1024] = "";
    if (old) snprintf(saved, sizeof saved, "%s", old);
    CHECK(gmf_dataset_find("/given/dir", "mnist", out, sizeof out) == GMF_OK &&
              !strcmp(out, "/given/dir"),
          "find: given: %s", out);
    /* tmpdir/env/setA and tmpdir/work/../shared/data/setB */
    snprintf(want, sizeof want, "%s/env", tmpdir);
    mkdir(want, 0700);
    snprintf(want, sizeof want, "%s/env/setA", tmpdir);
    mkdir(want, 0700);
    snprintf(want, sizeof want, "%s/env", tmpdir);
    setenv("GMFLOW_DATA", want, 1);
    int rc = gmf_dataset_find(NULL, "setA", out, sizeof out);
    snprintf(want, sizeof want, "%s/env/setA", tmpdir);
    CHECK(rc == GMF_OK && !strcmp(out, want), "find: $GMFLOW_DATA: rc %d out %s", rc, out);
    const char *mk[] = {"work", "shared", "shared/data", "shared/data/setB"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(want, sizeof want, "%s/%s", tmpdir, mk[i]);
        mkdir(want, 0700);
    }
    snprintf(want, sizeof want, "%s/work", tmpdir);
    CHECK(chdir(want) == 0, "chdir %s: %s", want, strerror(errno));
    rc = gmf_dataset_find(NULL, "setB", out, sizeof out); /* not under $GMFLOW_DATA */
    CHECK(rc == GMF_OK && !strcmp(out, "../shared/data/setB"), "find: ../shared/data: rc %d %s", rc,
          out);
    rc = gmf_dataset_find(NULL, "no-such-set", out, sizeof out);
    CHECK(rc == GMF_EIO && strstr(gmf_errmsg(), "no-such-set") && out[0] == '\0',
          "find: missing: rc %d: %s", rc, gmf_errmsg());
    rc = gmf_dataset_find(NULL, "setB", out, 8);
    CHECK(rc == GMF_EINVAL && strstr(gmf_errmsg(), "longer than 7"), "find: short buffer: rc %d %s",
          rc, gmf_errmsg());
    CHECK(chdir(cwd) == 0, "chdir back: %s", strerror(errno));
    if (old)
        setenv("GMFLOW_DATA", saved, 1);
    else
        unsetenv("GMFLOW_DATA");
    const char *rm[] = {"shared/data/setB", "shared/data", "shared", "work", "env/setA", "env"};
    for (size_t i = 0; i < 6; i++) {
        snprintf(want, sizeof want, "%s/%s", tmpdir, rm[i]);
        rmdir(want);
    }
}

static void test_load_sets(void) {
    size_t ni, nl;
    unsigned char *a = make_images(5000, 28, 28, &ni); /* 3 chunks of 2048 images */
    for (size_t i = 16; i < ni; i++)
        a[i] = (unsigned char)(((i * 2654435761u) >> 13) & (i % 5 ? 0xff : 0x07));
    unsigned char *la = make_labels(5000, &nl);
    write_gz(tpath("sa-images-idx3-ubyte.gz"), a, ni, 6);
    write_gz(tpath("sa-labels-idx1-ubyte.gz"), la, nl, 6);
    write_raw(tpath("sb-images-idx3-ubyte"), a, 16 + 300 * 784); /* header says 5000: patch */
    {
        unsigned char *b = malloc(16 + 300 * 784), *lb = malloc(8 + 300);
        memcpy(b, a, 16 + 300 * 784), memcpy(lb, la, 8 + 300);
        put_be32(b + 4, 300), put_be32(lb + 4, 300);
        write_raw(tpath("sb-images-idx3-ubyte"), b, 16 + 300 * 784);
        write_raw(tpath("sb-labels-idx1-ubyte"), lb, 8 + 300);
        lb[8 + 17] = 10; /* a label out of range */
        write_gz(tpath("bad-images-idx3-ubyte.gz"), b, 16 + 300 * 784, 1);
        write_gz(tpath("bad-labels-idx1-ubyte.gz"), lb, 8 + 300, 1);
        free(b), free(lb);
    }
    const char *ab[] = {"sa", "sb", "sa"};
    check_sets(tmpdir, 3, ab, NULL, "synthetic");
    const size_t lim[] = {4100, 7, 0};
    check_sets(tmpdir, 3, ab, lim, "synthetic, limited");

    /* failures: the first failing set in order names the error; all outputs cleared */
    const char *f1[] = {"sa", "bad", "none"}, *f2[] = {"sb", "none", "bad"};
    for (int th = 1; th <= 2; th++) {
        gmf_dataset out[3];
        memset(out, 0x55, sizeof out);
        int rc = gmf_dataset_load_sets(tmpdir, 3, f1, NULL, 1, th, out);
        CHECK(rc == GMF_EFORMAT && strstr(gmf_errmsg(), tpath("bad-labels-idx1-ubyte.gz")) &&
                  strstr(gmf_errmsg(), "out of range"),
              "sets with a bad label, %d threads: rc %d, %s", th, rc, gmf_errmsg());
        for (int s = 0; s < 3; s++)
            CHECK(out[s].n == 0 && !out[s].px && !out[s].scale && !out[s].label && !out[s].x,
                  "failed sets: output %d not cleared", s);
        rc = gmf_dataset_load_sets(tmpdir, 3, f2, NULL, 0, th, out);
        CHECK(rc == GMF_EIO && strstr(gmf_errmsg(), tpath("none-images-idx3-ubyte.gz")),
              "sets with a missing set, %d threads: rc %d, %s", th, rc, gmf_errmsg());
        for (int s = 0; s < 3; s++)
            CHECK(out[s].n == 0 && !out[s].x && !out[s].label, "failed sets: output %d", s);
    }
    free(a), free(la);
}

static void test_bad_dataset(void) {
    size_t ni, nl;
    unsigned char *img = make_images(5, 3, 4, &ni);
    unsigned char *lab = make_labels(6, &nl);
    gmf_dataset ds;
    int rc;

    /* image/label count mismatch: both files named */
    write_gz(tpath("mis-images-idx3-ubyte.gz"), img, ni, 9);
    write_gz(tpath("mis-labels-idx1-ubyte.gz"), lab, nl, 9);
    rc = gmf_dataset_load(tmpdir, "mis", 0, &ds);
    expect_err(rc, GMF_EFORMAT, tpath("mis-images-idx3-ubyte.gz"), NEEDLES("5 images", "6 labels"),
               "count mismatch");
    CHECK(strstr(gmf_errmsg(), tpath("mis-labels-idx1-ubyte.gz")) != NULL,
          "mismatch message lacks the label file: %s", gmf_errmsg());
    CHECK(ds.x == NULL && ds.n == 0, "dataset cleared on failure");

    /* a label >= 10 */
    unsigned char *lab5 = make_labels(5, &nl);
    lab5[8 + 3] = 10;
    write_raw(tpath("big-images-idx3-ubyte"), img, ni);
    write_raw(tpath("big-labels-idx1-ubyte"), lab5, nl);
    rc = gmf_dataset_load(tmpdir, "big", 0, &ds);
    expect_err(rc, GMF_EFORMAT, tpath("big-labels-idx1-ubyte"), NEEDLES("label 10", "sample 3"),
               "label >= 10");

    /* zero images */
    size_t ne;
    unsigned char *e = make_images(0, 3, 4, &ne);
    unsigned char *el = make_labels(0, &nl);
    write_raw(tpath("nil-images-idx3-ubyte"), e, ne);
    write_raw(tpath("nil-labels-idx1-ubyte"), el, nl);
    rc = gmf_dataset_load(tmpdir, "nil", 0, &ds);
    expect_err(rc, GMF_EFORMAT, tpath("nil-images-idx3-ubyte"), NEEDLES("no images"), "no images");

    /* missing files / directory */
    rc = gmf_dataset_load(tmpdir, "nothere", 0, &ds);
    expect_err(rc, GMF_EIO, tpath("nothere-images-idx3-ubyte"), NEEDLES("not found"),
               "missing prefix");
    write_raw(tpath("half-images-idx3-ubyte"), img, ni);
    rc = gmf_dataset_load(tmpdir, "half", 0, &ds);
    expect_err(rc, GMF_EIO, tpath("half-labels-idx1-ubyte"), NEEDLES("not found"),
               "missing label file");
    /* a bad file inside the data set is reported with its own name */
    write_raw(tpath("tr-images-idx3-ubyte"), img, ni - 1);
    write_raw(tpath("tr-labels-idx1-ubyte"), lab5, nl);
    rc = gmf_dataset_load(tmpdir, "tr", 0, &ds);
    expect_err(rc, GMF_EFORMAT, tpath("tr-images-idx3-ubyte"), NEEDLES("truncated"),
               "truncated file in data set");
    free(img), free(lab), free(lab5), free(e), free(el);
}

/* ---- the shared MNIST / Fashion-MNIST copies --------------------------------------------- */

typedef struct {
    const char *set, *prefix;
    size_t count;
    double mean, std; /* README: of values / 255 over all pixels */
    const char *md5_images, *md5_labels;
    size_t hist[10];
} real_set;

static const real_set REAL[] = {
    {"mnist",
     "t10k",
     10000,
     0.13251,
     0.31048,
     "2646ac647ad5339dbf082846283269ea",
     "27ae3e4e09519cfbb04c329615203637",
     {980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009}},
    {"mnist",
     "train",
     60000,
     0.13066,
     0.30811,
     "6bbc9ace898e44ae57da46a324031adb",
     "a25bea736e30d166cdddb491f175f624",
     {5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949}},
    {"fashion-mnist",
     "t10k",
     10000,
     0.28691,
     0.35401,
     "647a0e6355d3f0d44af3224f6aba1076",
     "15d484375f8d13e6eb1aabb0c3f46965",
     {1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000}},
};

static void test_real(const char *root, const real_set *r) {
    char dir[1024], ipath[1100], lpath[1100];
    snprintf(dir, sizeof dir, "%s/%s", root, r->set);
    snprintf(ipath, sizeof ipath, "%s/%s-images-idx3-ubyte.gz", dir, r->prefix);
    snprintf(lpath, sizeof lpath, "%s/%s-labels-idx1-ubyte.gz", dir, r->prefix);

    gmf_idx_images im;
    int rc = gmf_idx_read_images(ipath, &im);
    CHECK(rc == GMF_OK, "%s", gmf_errmsg());
    if (rc) return;
    CHECK(im.count == r->count && im.rows == 28 && im.cols == 28, "%s: %zu x %zu x %zu", ipath,
          im.count, im.rows, im.cols);
    char md5[33];
    md5_images(&im, md5);
    CHECK(strcmp(md5, r->md5_images) == 0, "%s: md5 %s, README says %s", ipath, md5, r->md5_images);
    /* pixel statistics of values / 255 (population std over all pixels) */
    const size_t np = im.count * im.rows * im.cols;
    uint64_t s1 = 0, s2 = 0;
    for (size_t i = 0; i < np; i++)
        s1 += im.pixels[i], s2 += (uint64_t)im.pixels[i] * im.pixels[i];
    const double mean = (double)s1 / (double)np / 255.0;
    const double var = (double)s2 / (double)np / (255.0 * 255.0) - mean * mean;
    const double sd = sqrt(var);
    CHECK(fabs(mean - r->mean) < 1e-4, "%s: pixel mean %.6f, README %.5f", ipath, mean, r->mean);
    CHECK(fabs(sd - r->std) < 1e-4, "%s: pixel std %.6f, README %.5f", ipath, sd, r->std);
    modes_good(ipath, 1, im.pixels, np); /* zlib (and libdeflate alone): the same bytes */
    gmf_idx_images_free(&im);

    size_t n;
    uint8_t *lab;
    rc = gmf_idx_read_labels(lpath, &n, &lab);
    CHECK(rc == GMF_OK && n == r->count, "%s: %s", lpath, gmf_errmsg());
    if (rc == GMF_OK) {
        modes_good(lpath, 0, lab, n);
        md5_labels(lab, n, md5);
        CHECK(strcmp(md5, r->md5_labels) == 0, "%s: md5 %s, README %s", lpath, md5, r->md5_labels);
        size_t hist[10] = {0};
        for (size_t i = 0; i < n; i++)
            if (lab[i] < 10) hist[lab[i]]++;
        for (int c = 0; c < 10; c++)
            CHECK(hist[c] == r->hist[c], "%s: class %d count %zu, expected %zu", lpath, c, hist[c],
                  r->hist[c]);
        free(lab);
    }
    printf("  %s/%s: %zu images, md5 ok, pixel mean %.5f std %.5f (README %.5f %.5f)\n", r->set,
           r->prefix, r->count, mean, sd, r->mean, r->std);

    /* the normalized data set: every image mean 0, squared norm 783 (sample std) */
    if (strcmp(r->prefix, "t10k") == 0) {
        gmf_dataset ds;
        rc = gmf_dataset_load(dir, r->prefix, 0, &ds);
        CHECK(rc == GMF_OK && ds.n == r->count && ds.d == 784, "%s: %s", dir, gmf_errmsg());
        if (rc) return;
        double worst_mean = 0, worst_norm = 0;
        for (size_t i = 0; i < ds.n; i++) {
            double m = 0, q = 0;
            for (size_t j = 0; j < ds.d; j++)
                m += ds.x[i * ds.d + j], q += ds.x[i * ds.d + j] * ds.x[i * ds.d + j];
            if (fabs(m / 784) > worst_mean) worst_mean = fabs(m / 784);
            if (fabs(q - 783) > worst_norm) worst_norm = fabs(q - 783);
        }
        CHECK(worst_mean < 1e-6, "%s: worst per-image mean %g", dir, worst_mean);
        CHECK(worst_norm < 1e-3, "%s: worst | ||x||^2 - 783 | = %g", dir, worst_norm);
        gmf_dataset cp; /* the compact form: bitwise the same rows */
        rc = gmf_dataset_load_u8(dir, r->prefix, 0, &cp);
        CHECK(rc == GMF_OK && cp.n == ds.n, "%s compact: %s", dir, gmf_errmsg());
        float *row = malloc(ds.d * sizeof *row);
        size_t bad = 0;
        for (size_t i = 0; rc == GMF_OK && row && i < ds.n; i++) {
            gmf_dataset_row(&cp, i, row);
            bad += memcmp(row, ds.x + i * ds.d, ds.d * sizeof *row) != 0;
        }
        CHECK(bad == 0, "%s compact: %zu rows differ from the float form", dir, bad);
        free(row);
        const size_t nbad = scale_mismatches(cp.px, cp.n, cp.d, cp.scale);
        CHECK(nbad == 0, "%s compact: %zu images' (mean, 1/sd) differ from the direct formula", dir,
              nbad);
        { /* the compact set through zlib's inflate: bitwise the same, same checksum */
            gmf_dataset cz;
            set_inflater("zlib");
            rc = gmf_dataset_load_u8(dir, r->prefix, 0, &cz);
            set_inflater(inflater_env0);
            CHECK(rc == GMF_OK && cz.n == cp.n && cz.d == cp.d &&
                      !memcmp(cz.px, cp.px, cp.n * cp.d) &&
                      !memcmp(cz.scale, cp.scale, 2 * cp.n * sizeof(double)) &&
                      !memcmp(cz.label, cp.label, cp.n) &&
                      gmf_train_data_checksum(&cz) == gmf_train_data_checksum(&cp),
                  "%s: the compact set through zlib differs: %s", dir, rc ? gmf_errmsg() : "");
            gmf_dataset_free(&cz);
        }
        gmf_dataset_free(&cp);
        gmf_dataset_free(&ds);
        rc = gmf_dataset_load(dir, r->prefix, 100, &ds);
        CHECK(rc == GMF_OK && ds.n == 100, "limit 100: %s", gmf_errmsg());
        gmf_dataset_free(&ds);
    }
}

/* ---- driver ------------------------------------------------------------------------------ */

static void rm_tmpdir(void) {
    char cmd[600];
    if (!tmpdir[0]) return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tmpdir);
}

int main(void) {
    inflater_env0 = getenv("GMFLOW_IDX_INFLATE");
    have_libdeflate = strcmp(gmf_idx_gz_inflater(), "libdeflate") == 0;
    printf("test_idx: .gz through %s\n", gmf_idx_gz_inflater());
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/gmflow-test-idx-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    test_good_synthetic();
    test_dataset_synthetic();
    test_bad_files();
    test_bad_dataset();
    test_gz_members();
    test_load_sets();
    test_find();
    rm_tmpdir();

    const char *root = getenv("GMFLOW_DATA");
    if (!root || !*root) root = "../shared/data";
    char probe[1100];
    snprintf(probe, sizeof probe, "%s/mnist/t10k-images-idx3-ubyte.gz", root);
    if (access(probe, R_OK) != 0) {
        if (failures) {
            fprintf(stderr, "test_idx: %d failure(s)\n", failures);
            return 1;
        }
        printf("test_idx: synthetic cases passed; SKIP the real files: %s not found (run from "
               "the project root or set GMFLOW_DATA)\n",
               probe);
        return 77; /* ctest: skipped */
    } else {
        const int quick = getenv("GMFLOW_TEST_QUICK") != NULL; /* skip the 60k train set */
        for (size_t i = 0; i < sizeof REAL / sizeof REAL[0]; i++)
            if (!(quick && REAL[i].count > 10000)) test_real(root, &REAL[i]);
        char dir[1100]; /* MNIST's train and t10k sets read in parallel: bitwise the same */
        snprintf(dir, sizeof dir, "%s/mnist", root);
        const char *tt[] = {"train", "t10k"};
        const size_t lim[] = {quick ? 5000 : 0, 0};
        check_sets(dir, 2, tt, lim, "mnist train + t10k");
    }
    printf("test_idx: %zu good and %zu bad files read alike by zlib%s\n", agree_good, agree_bad,
           have_libdeflate ? ", libdeflate and libdeflate-only" : " only (no libdeflate)");
    if (failures) {
        fprintf(stderr, "test_idx: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_idx: all passed\n");
    return 0;
}
