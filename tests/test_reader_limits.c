/* test_reader_limits.c -- the readers against hostile sizes (issue 9 items 1, 3, 4, 10).
 *
 *   gmf_mul_size / gmf_mul_size3 against the compiler's __builtin_mul_overflow (an independent
 *        route) on the edges of size_t.
 *   Huge declared sizes in tiny files (NPY 1 GB in 146 bytes, IDX.gz 2 GB / 13 GB in ~30 bytes,
 *        a valid but short IDX.gz declaring 300 MB within deflate's 1032:1 bound, IDX raw 13 GB,
 *        state.json with d = 100000): each read runs in a child process whose address space is
 *        limited to what it maps plus 200 MB, so a reader that allocated for the declared size
 *        gets "out of memory" instead of the format error naming the file this test demands;
 *        each must also fail within 2 s.
 *   CSV: a valid 203-character number parses to strtod's value; a line over 1 MiB and /dev/zero
 *        fail fast with a message naming file and line; a line-buffer allocation failure under
 *        an address-space limit is reported as out of memory, not taken for the end of file.
 *   Checkpoint: epoch fields of 2^63 and 1000001 (checksums valid) are rejected, 1000000 is
 *        accepted; /dev/zero as a checkpoint fails fast.
 * Under AddressSanitizer (which reserves terabytes of address space) the address-space limit
 * cannot be set: the same calls run without it (the format checks still apply).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "gmflow/common.h"
#include "gmflow/idx.h"
#include "gmflow/io.h"
#include "gmflow/nn.h"
#include "gmflow/train.h"
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define TL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TL_ASAN 1
#endif
#endif

static char tmpdir[256];

static const char *tpath(const char *name) {
    static char buf[8][512];
    static int slot = 0;
    slot = (slot + 1) % 8;
    snprintf(buf[slot], sizeof buf[slot], "%s/%s", tmpdir, name);
    return buf[slot];
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(data, 1, n, fp) != n || fclose(fp) != 0) {
        perror(path);
        exit(2);
    }
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Limit the address space to what is mapped now plus extra_kb (no-op under ASan). */
static void limit_as(size_t extra_kb) {
#ifndef TL_ASAN
    FILE *fp = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (!fp || fscanf(fp, "%lu", &pages) != 1) exit(3);
    fclose(fp);
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + extra_kb * 1024;
    if (setrlimit(RLIMIT_AS, &rl) != 0) exit(3);
#else
    (void)extra_kb;
#endif
}

/* Run fn in a child under limit_as(extra_kb) and alarm(seconds); 1 if it exited 0. */
static int in_child(int (*fn)(void), size_t extra_kb, unsigned seconds) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) {
        limit_as(extra_kb);
        alarm(seconds);
        int r = fn();
        fflush(NULL);
        _exit(r == 0 ? 0 : 1);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid) return 0;
    if (WIFSIGNALED(st)) fprintf(stderr, "child killed by signal %d\n", WTERMSIG(st));
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* In a child: rc must be GMF_EFORMAT with a message naming path (and `word`), within 2 s. */
static int expect_format_error(int rc, const char *path, const char *word, double t0) {
    double s = now() - t0;
    int ok = rc == GMF_EFORMAT && strstr(gmf_errmsg(), path) &&
             (!word || strstr(gmf_errmsg(), word)) && s < 2.0;
    printf("  %s (%.3f s): rc %d: %s\n", ok ? "ok" : "FAIL", s, rc, gmf_errmsg());
    return ok ? 0 : 1;
}

/* ---------------------------------------------------------------- gmf_mul_size */

static void mul_size(void) {
    const size_t v[] = {0,
                        1,
                        2,
                        3,
                        7,
                        8,
                        255,
                        65535,
                        65536,
                        4294967295u,
                        (size_t)1 << 32,
                        ((size_t)1 << 32) + 1,
                        SIZE_MAX / 2,
                        SIZE_MAX / 2 + 1,
                        SIZE_MAX / 3,
                        SIZE_MAX / 8,
                        SIZE_MAX / 8 + 1,
                        SIZE_MAX - 1,
                        SIZE_MAX,
                        (size_t)1518500250,
                        (size_t)3037000499u,
                        (size_t)3037000500u};
    const size_t nv = sizeof v / sizeof v[0];
    size_t bad = 0, n = 0;
    for (size_t i = 0; i < nv; i++)
        for (size_t j = 0; j < nv; j++) {
            size_t want, got = 12345;
            const int ovf = __builtin_mul_overflow(v[i], v[j], &want);
            const int r = gmf_mul_size(v[i], v[j], &got);
            n++;
            if ((r != 0) != ovf || (!ovf && got != want)) bad++;
            for (size_t k = 0; k < nv; k += 3) {
                size_t w3, g3 = 0, ab;
                const int o3 = __builtin_mul_overflow(v[i], v[j], &ab) ||
                               __builtin_mul_overflow(ab, v[k], &w3);
                const int r3 = gmf_mul_size3(v[i], v[j], v[k], &g3);
                n++;
                /* a*b overflowing with c = 0 is still reported (the factors are suspect) */
                if ((r3 != 0) != o3 || (!o3 && g3 != w3)) bad++;
            }
        }
    size_t out = 77;
    CHECK(gmf_mul_size(SIZE_MAX, 2, &out) != 0 && out == 77, "overflow must leave *out");
    CHECK(bad == 0, "%zu of %zu products disagree with __builtin_mul_overflow", bad, n);
    printf("gmf_mul_size: %zu products agree with __builtin_mul_overflow\n", n);
}

/* ---------------------------------------------------------------- huge declared sizes */

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

static size_t gzip_mem(const void *in, size_t n, unsigned char *out, size_t cap) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) exit(2);
    zs.next_in = (Bytef *)(uintptr_t)in, zs.avail_in = (uInt)n;
    zs.next_out = out, zs.avail_out = (uInt)cap;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END) exit(2);
    size_t m = zs.total_out;
    deflateEnd(&zs);
    return m;
}

static int c_npy_1gb(void) {
    const char *p = tpath("huge.npy");
    double *a = NULL;
    size_t nd, sh[8];
    double t0 = now();
    int rc = gmf_io_read_npy(p, &a, &nd, sh);
    free(a);
    return expect_format_error(rc, p, "truncated", t0);
}

static int c_idx_gz_labels(void) {
    const char *p = tpath("labels2g.gz");
    size_t n;
    uint8_t *lab = NULL;
    double t0 = now();
    int rc = gmf_idx_read_labels(p, &n, &lab);
    free(lab);
    return expect_format_error(rc, p, NULL, t0);
}

static int c_idx_gz_images(void) {
    const char *p = tpath("images13g.gz");
    gmf_idx_images im;
    double t0 = now();
    int rc = gmf_idx_read_images(p, &im);
    gmf_idx_images_free(&im);
    return expect_format_error(rc, p, NULL, t0);
}

static int c_idx_gz_short(void) {
    const char *p = tpath("labels300m.gz");
    size_t n;
    uint8_t *lab = NULL;
    double t0 = now();
    int rc = gmf_idx_read_labels(p, &n, &lab);
    free(lab);
    return expect_format_error(rc, p, "truncated", t0);
}

static int c_idx_raw_images(void) {
    const char *p = tpath("images13g");
    gmf_idx_images im;
    double t0 = now();
    int rc = gmf_idx_read_images(p, &im);
    gmf_idx_images_free(&im);
    return expect_format_error(rc, p, "truncated", t0);
}

static int c_state_d100000(void) {
    const char *p = tpath("d100000.json");
    gmf_io_state s;
    double t0 = now();
    int rc = gmf_io_read_state(p, &s);
    return expect_format_error(rc, p, "numbers", t0);
}

static void huge_declared(void) {
    /* NPY: 146 bytes whose header declares 134217728 doubles (1 GB) */
    {
        char h[118];
        const char *d = "{'descr': '<f8', 'fortran_order': False, 'shape': (134217728,), }";
        memset(h, ' ', sizeof h);
        memcpy(h, d, strlen(d));
        h[sizeof h - 1] = '\n';
        unsigned char f[146] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 118, 0};
        memcpy(f + 10, h, sizeof h);
        write_bytes(tpath("huge.npy"), f, sizeof f);
    }
    unsigned char hdr[16], gz[1 << 12];
    /* IDX.gz labels declaring 2^31 - 1 bytes, header only (the 26-byte file) */
    hdr[0] = hdr[1] = 0, hdr[2] = 8, hdr[3] = 1;
    put_be32(hdr + 4, 0x7fffffffu);
    size_t m = gzip_mem(hdr, 8, gz, sizeof gz);
    write_bytes(tpath("labels2g.gz"), gz, m);
    printf("IDX.gz declaring 2 GB: %zu bytes\n", m);
    /* IDX.gz images 65535 x 65535 x 3 (12.9 GB) */
    hdr[3] = 3;
    put_be32(hdr + 4, 65535), put_be32(hdr + 8, 65535), put_be32(hdr + 12, 3);
    m = gzip_mem(hdr, 16, gz, sizeof gz);
    write_bytes(tpath("images13g.gz"), gz, m);
    write_bytes(tpath("images13g"), hdr, 16); /* raw, header only */
    /* a valid gzip stream of 300 KB random bytes after a labels header declaring 300 MB: within
     * deflate's 1032:1 bound, so only the growing buffer keeps the allocation small */
    {
        const size_t nr = 300000;
        unsigned char *raw = malloc(8 + nr), *z = malloc(2 * nr + 1024);
        if (!raw || !z) exit(2);
        raw[0] = raw[1] = 0, raw[2] = 8, raw[3] = 1;
        put_be32(raw + 4, 300000000u);
        uint64_t x = 88172645463325252ull;
        for (size_t i = 0; i < nr; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            raw[8 + i] = (unsigned char)(x >> 32);
        }
        m = gzip_mem(raw, 8 + nr, z, 2 * nr + 1024);
        write_bytes(tpath("labels300m.gz"), z, m);
        free(raw), free(z);
    }
    const char *st = "{\"format\":\"gmflow-state\",\"version\":1,\"form\":\"bw\",\"t\":0,\"K\":1,"
                     "\"d\":100000,\"mu\":[[0,1]],\"Sigma\":[[[1,0],[0,1]]]}";
    write_bytes(tpath("d100000.json"), st, strlen(st));
    printf("state.json with d = 100000: %zu bytes\n", strlen(st));

    const size_t lim = 200 * 1024; /* KB above what the child maps */
    CHECK(in_child(c_npy_1gb, lim, 10), "NPY declaring 1 GB in 146 bytes");
    CHECK(in_child(c_idx_gz_labels, lim, 10), "IDX.gz declaring 2 GB");
    CHECK(in_child(c_idx_gz_images, lim, 10), "IDX.gz declaring 13 GB");
    CHECK(in_child(c_idx_gz_short, lim, 10), "IDX.gz declaring 300 MB, holding 300 KB");
    CHECK(in_child(c_idx_raw_images, lim, 10), "raw IDX declaring 13 GB");
    CHECK(in_child(c_state_d100000, lim, 10), "state.json with d = 100000");
}

/* ---------------------------------------------------------------- CSV */

static void csv_long_number(void) {
    char num[204];
    num[0] = '1', num[1] = '.';
    memset(num + 2, '0', 197);
    memcpy(num + 199, "1e-2", 5);
    CHECK(strlen(num) == 203, "setup: %zu characters", strlen(num));
    const double want = strtod(num, NULL); /* the C library's value, independently */
    char text[600];
    snprintf(text, sizeof text, "x,y\n%s,1\n2,%s\n", num, num);
    const char *p = tpath("long_number.csv");
    write_bytes(p, text, strlen(text));
    size_t n = 0, d = 0;
    double *X = NULL, *y = NULL;
    int rc = gmf_io_read_csv(p, &n, &d, &X, &y);
    CHECK(rc == 0 && n == 2 && d == 1, "203-character number: rc %d: %s", rc, gmf_errmsg());
    if (rc == 0) {
        CHECK(X[0] == want && y[1] == want && X[1] == 2 && y[0] == 1,
              "values %.17g %.17g, want %.17g", X[0], y[1], want);
        free(X), free(y);
    }
}

static int c_csv_long_line(void) {
    const char *p = tpath("long_line.csv");
    size_t n, d;
    double *X = NULL, *y = NULL, t0 = now();
    int rc = gmf_io_read_csv(p, &n, &d, &X, &y);
    free(X), free(y);
    return expect_format_error(rc, p, "line 2 is longer than 1048576 bytes", t0);
}

static int c_csv_dev_zero(void) {
    size_t n, d;
    double *X = NULL, *y = NULL, t0 = now();
    int rc = gmf_io_read_csv("/dev/zero", &n, &d, &X, &y);
    free(X), free(y);
    return expect_format_error(rc, "/dev/zero", "line 1 is longer", t0);
}

#ifndef TL_ASAN /* needs an address-space limit, which ASan cannot run under */
static int c_csv_enomem(void) {
    const char *p = tpath("enomem.csv");
    size_t n = 0, d;
    double *X = NULL, *y = NULL;
    int rc = gmf_io_read_csv(p, &n, &d, &X, &y);
    free(X), free(y);
    int ok = rc == GMF_ENOMEM && strstr(gmf_errmsg(), p) && strstr(gmf_errmsg(), "line 4");
    printf("  %s: rc %d (%zu rows): %s\n", ok ? "ok" : "FAIL", rc, n, rc ? gmf_errmsg() : "");
    return ok ? 0 : 1;
}
#endif

static void csv_limits(void) {
    /* a 1 MiB + 2 byte line (blanks around a valid field) */
    const size_t len = ((size_t)1 << 20) + 2;
    char *big = malloc(len + 16);
    if (!big) exit(2);
    memcpy(big, "1,2\n", 4);
    memset(big + 4, ' ', len);
    memcpy(big + 4 + len - 4, "3,4\n", 4);
    write_bytes(tpath("long_line.csv"), big, len + 4);
    /* exactly the limit (newline included) is fine */
    memset(big + 4, ' ', len);
    memcpy(big + 4 + ((size_t)1 << 20) - 4, "3,4\n", 4);
    write_bytes(tpath("at_limit.csv"), big, 4 + ((size_t)1 << 20));
    size_t n = 0, d;
    double *X = NULL, *y = NULL;
    int rc = gmf_io_read_csv(tpath("at_limit.csv"), &n, &d, &X, &y);
    CHECK(rc == 0 && n == 2 && y[1] == 4, "a line of exactly 1 MiB: rc %d: %s", rc, gmf_errmsg());
    free(X), free(y);
    CHECK(in_child(c_csv_long_line, 64 * 1024, 10), "CSV line over 1 MiB");
    CHECK(in_child(c_csv_dev_zero, 64 * 1024, 10), "CSV /dev/zero");
    /* three short rows, then one whose 900 KB of blanks need a line buffer the child's address
     * space cannot hold: that must be "out of memory at line 4", not a 3-row success */
    memcpy(big, "1,2\n3,4\n5,6\n7,", 14);
    memset(big + 14, ' ', 900000);
    memcpy(big + 14 + 900000, "8\n", 2);
    write_bytes(tpath("enomem.csv"), big, 14 + 900000 + 2);
    free(big);
#ifndef TL_ASAN
    CHECK(in_child(c_csv_enomem, 256, 10), "CSV line buffer allocation failure");
#else
    printf("CSV allocation failure: not run under AddressSanitizer (no address-space limit)\n");
#endif
}

/* ---------------------------------------------------------------- checkpoint */

static int c_ck_dev_zero(void) {
    gmf_nn_model m;
    if (gmf_nn_model_init(&m, GMF_NN_GM, 3, 2, 2, 0, 0)) return 1;
    double t0 = now();
    int rc = gmf_train_load_checkpoint("/dev/zero", &m, NULL, NULL);
    gmf_nn_model_free(&m);
    return expect_format_error(rc, "/dev/zero", NULL, t0);
}

static void checkpoint_epoch(void) {
    gmf_nn_model m, r;
    CHECK(gmf_nn_model_init(&m, GMF_NN_GM, 3, 2, 2, 0, 0) == 0, "init: %s", gmf_errmsg());
    for (size_t i = 0; i < m.nparams; i++)
        m.params[i] = 0.5 * (double)i;
    const uint64_t epochs[3] = {(uint64_t)1 << 63, 1000001, 1000000};
    for (int i = 0; i < 3; i++) {
        const char *p = tpath("ck.gmck");
        CHECK(gmf_train_save_checkpoint(p, &m, epochs[i], 1) == 0, "save: %s", gmf_errmsg());
        gmf_nn_model_init(&r, GMF_NN_GM, 3, 2, 2, 0, 0);
        uint64_t ep = 0;
        int rc = gmf_train_load_checkpoint(p, &r, &ep, NULL);
        if (i < 2)
            CHECK(rc == GMF_EFORMAT && strstr(gmf_errmsg(), p) && strstr(gmf_errmsg(), "epoch"),
                  "epoch %llu accepted (rc %d): %s", (unsigned long long)epochs[i], rc,
                  gmf_errmsg());
        else
            CHECK(rc == 0 && ep == epochs[i], "epoch 1000000: rc %d: %s", rc, gmf_errmsg());
        printf("checkpoint epoch %llu: %s\n", (unsigned long long)epochs[i],
               rc ? gmf_errmsg() : "accepted");
        gmf_nn_model_free(&r);
    }
    gmf_nn_model_free(&m);
    CHECK(in_child(c_ck_dev_zero, 64 * 1024, 10), "checkpoint /dev/zero");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/gmflow_test_limits.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
#ifdef TL_ASAN
    printf("AddressSanitizer build: address-space limits not applied\n");
#endif
    mul_size();
    huge_declared();
    csv_long_number();
    csv_limits();
    checkpoint_epoch();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return tu_finish("test_reader_limits");
}
