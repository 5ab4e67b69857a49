/* test_io.c -- files at the edges (io.h) and the toy generators (toy.h).
 *
 *   NPY: bitwise round trips over shapes 0-d to 4-d (NaN, -0, denormals, extremes included), the
 *        64-byte header alignment, numpy's own reader (when /usr/bin/python3 has numpy), and the
 *        rejection of other dtypes, Fortran order, bad magic, truncation and trailing bytes.
 *   state JSON: bitwise round trips (bw and euclid) and a catalogue of malformed states, each of
 *        which must fail with a message naming the file and the key or line.
 *   CSV: headers, comments, CRLF and blanks accepted; ragged rows, unparsable fields, NaN/inf,
 *        empty files, a missing y column and empty fields rejected with the line number.
 *   atomic writer: abort leaves nothing, commit replaces, a failed open leaves the old file.
 *   toy: determinism by seed, the documented initial mixture, argument validation.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gmflow/common.h"
#include "gmflow/io.h"
#include "gmflow/toy.h"
#include "testutil.h"

static char tmpdir[256];

static const char *tpath(const char *name) {
    static char buf[8][512];
    static int slot = 0;
    slot = (slot + 1) % 8;
    snprintf(buf[slot], sizeof buf[slot], "%s/%s", tmpdir, name);
    return buf[slot];
}

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        perror(path);
        exit(2);
    }
    fputs(text, fp);
    fclose(fp);
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        perror(path);
        exit(2);
    }
    fwrite(data, 1, n, fp);
    fclose(fp);
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static int errmsg_has(const char *needle) {
    return strstr(gmf_errmsg(), needle) != NULL;
}

/* ---------------------------------------------------------------- NPY */

static void test_npy_roundtrip(void) {
    static const size_t shapes[][5] = {/* ndim, dims... */
                                       {0},       {1, 7}, {2, 3, 4}, {3, 2, 3, 4}, {4, 2, 3, 4, 5},
                                       {2, 0, 3}, {1, 1}};
    gsl_rng *r = tu_rng(11);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t ndim = shapes[s][0], shape[8] = {0}, count = 1;
        for (size_t i = 0; i < ndim; i++)
            shape[i] = shapes[s][1 + i], count *= shape[i];
        double *a = tu_xmalloc(count * sizeof(double) + 8);
        tu_randn(r, count, 3.0, a);
        const double special[] = {-0.0, 5e-324, 1.7976931348623157e308, NAN, -INFINITY, 0.1};
        for (size_t i = 0; i < count && i < 6; i++)
            a[i] = special[i];
        const char *p = tpath("a.npy");
        int rc = gmf_io_write_npy(p, a, ndim, shape);
        CHECK(rc == GMF_OK, "write npy ndim %zu: %s", ndim, gmf_errmsg());

        /* header: magic, version 1.0, total header a multiple of 64, ends in '\n' */
        FILE *fp = fopen(p, "rb");
        unsigned char pre[10];
        CHECK(fp && fread(pre, 1, 10, fp) == 10, "read npy preamble");
        size_t hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
        CHECK(!memcmp(pre, "\x93NUMPY\x01\x00", 8), "magic and version 1.0");
        CHECK((10 + hlen) % 64 == 0, "header + preamble = %zu is 64-byte aligned", 10 + hlen);
        char *hdr = tu_xmalloc(hlen + 1);
        CHECK(fread(hdr, 1, hlen, fp) == hlen, "read header");
        hdr[hlen] = '\0';
        CHECK(hdr[hlen - 1] == '\n', "header ends in newline");
        CHECK(strstr(hdr, "'descr': '<f8'") && strstr(hdr, "'fortran_order': False"),
              "header dict: %s", hdr);
        free(hdr);
        fseek(fp, 0, SEEK_END);
        CHECK((size_t)ftell(fp) == 10 + hlen + 8 * count, "file size");
        fclose(fp);

        double *b = NULL;
        size_t nd2 = 99, sh2[8];
        rc = gmf_io_read_npy(p, &b, &nd2, sh2);
        CHECK(rc == GMF_OK, "read npy ndim %zu: %s", ndim, gmf_errmsg());
        if (rc == GMF_OK) {
            CHECK(nd2 == ndim, "ndim %zu vs %zu", nd2, ndim);
            for (size_t i = 0; i < ndim; i++)
                CHECK(sh2[i] == shape[i], "dim %zu", i);
            CHECK(memcmp(a, b, count * sizeof(double)) == 0, "bitwise round trip ndim %zu", ndim);
        }
        free(b);
        free(a);
    }
    gsl_rng_free(r);

    /* numpy's reader, when available */
    if (access("/usr/bin/python3", X_OK) == 0 &&
        system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0) {
        size_t shape[4] = {2, 3, 4, 5};
        double a[120];
        for (int i = 0; i < 120; i++)
            a[i] = 0.5 * i - 7.25;
        CHECK(gmf_io_write_npy(tpath("np.npy"), a, 4, shape) == GMF_OK, "%s", gmf_errmsg());
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 -c \"import numpy as np, sys; a = np.load('%s'); "
                 "ok = a.shape == (2,3,4,5) and a.dtype == np.dtype('<f8') and "
                 "a[1,2,3,4] == 0.5*119 - 7.25 and a.flags.c_contiguous; "
                 "np.save('%s', np.arange(6.0).reshape(2,3)); "
                 "np.save('%s', np.arange(6, dtype='<f4')); "
                 "np.save('%s', np.asfortranarray(np.arange(6.0).reshape(2,3))); "
                 "sys.exit(0 if ok else 1)\"",
                 tpath("np.npy"), tpath("from_np.npy"), tpath("f4.npy"), tpath("fortran.npy"));
        CHECK(system(cmd) == 0, "numpy loads our file with the right shape, dtype and values");
        double *b = NULL;
        size_t nd, sh[8];
        CHECK(gmf_io_read_npy(tpath("from_np.npy"), &b, &nd, sh) == GMF_OK, "read numpy's file: %s",
              gmf_errmsg());
        CHECK(b && nd == 2 && sh[0] == 2 && sh[1] == 3 && b[5] == 5.0, "numpy's values");
        free(b);
        b = NULL;
        CHECK(gmf_io_read_npy(tpath("f4.npy"), &b, &nd, sh) == GMF_EFORMAT && errmsg_has("<f4"),
              "numpy float32 rejected naming the dtype: %s", gmf_errmsg());
        CHECK(gmf_io_read_npy(tpath("fortran.npy"), &b, &nd, sh) == GMF_EFORMAT &&
                  errmsg_has("Fortran"),
              "numpy Fortran order rejected: %s", gmf_errmsg());
        CHECK(b == NULL, "no data on failure");
    } else {
        printf("test_io: /usr/bin/python3 with numpy not found; skipping the numpy cross-check\n");
    }
}

/* A hand-made NPY file: header dict `dict`, then `ndata` bytes of payload. */
static void write_npy_raw(const char *path, const char *dict, size_t ndata) {
    size_t len = strlen(dict), hlen = (10 + len + 1 + 63) / 64 * 64 - 10;
    unsigned char *buf = calloc(1, 10 + hlen + ndata);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(hlen & 0xff), buf[9] = (unsigned char)(hlen >> 8);
    memset(buf + 10, ' ', hlen);
    memcpy(buf + 10, dict, len);
    buf[10 + hlen - 1] = '\n';
    write_bytes(path, buf, 10 + hlen + ndata);
    free(buf);
}

static void test_npy_errors(void) {
    double *b = NULL;
    size_t nd, sh[8];
    const char *p = tpath("bad.npy");
    write_npy_raw(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 12);
    CHECK(gmf_io_read_npy(p, &b, &nd, sh) == GMF_EFORMAT && errmsg_has("'<f4'") &&
              errmsg_has("bad.npy"),
          "float32 rejected: %s", gmf_errmsg());
    write_npy_raw(p, "{'descr': '>f8', 'fortran_order': False, 'shape': (3,), }", 24);
    CHECK(gmf_io_read_npy(p, &b, &nd, sh) == GMF_EFORMAT && errmsg_has("'>f8'"),
          "big-endian rejected: %s", gmf_errmsg());
    write_npy_raw(p, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }", 48);
    CHECK(gmf_io_read_npy(p, &b, &nd, sh) == GMF_EFORMAT && errmsg_has("Fortran"),
          "Fortran order rejected: %s", gmf_errmsg());
    write_npy_raw(p, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 40);
    CHECK(gmf_io_read_npy(p, &b, &nd, sh) == GMF_EFORMAT && errmsg_has("truncated"),
          "truncated payload rejected: %s", gmf_errmsg());
    write_npy_raw(p, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 56);
    CHECK(gmf_io_read_npy(p, &b, &nd, sh) == GMF_EFORMAT && errmsg_has("trailing"),
          "trailing bytes rejected: %s", gmf_errmsg());
    write_npy_raw(p, "{'descr': '<f8', 'shape': (2, 3), }", 48);
    CHECK(gmf_io_read_npy(p, &b, &nd, sh) == GMF_EFORMAT && errmsg_has("fortran_order"),
          "missing key rejected: %s", gmf_errmsg());
    write_npy_raw(p, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), 'x': 1}", 48);
    CHECK(gmf_io_read_npy(p, &b, &nd, sh) == GMF_EFORMAT, "unknown key rejected: %s", gmf_errmsg());
    write_npy_raw(p, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 48);
    CHECK(gmf_io_read_npy(p, &b, &nd, sh) == GMF_OK && nd == 2 && sh[0] == 2 && sh[1] == 3,
          "control: the hand-made valid file reads: %s", gmf_errmsg());
    free(b);
    b = NULL;
    write_text(p, "NUMPY not really");
    CHECK(gmf_io_read_npy(p, &b, &nd, sh) == GMF_EFORMAT && errmsg_has("magic"),
          "bad magic rejected: %s", gmf_errmsg());
    write_bytes(p, "\x93NUMPY\x01\x00\x40", 9);
    CHECK(gmf_io_read_npy(p, &b, &nd, sh) == GMF_EFORMAT, "truncated header rejected: %s",
          gmf_errmsg());
    CHECK(gmf_io_read_npy(tpath("missing.npy"), &b, &nd, sh) == GMF_EIO &&
              errmsg_has("missing.npy"),
          "missing file: %s", gmf_errmsg());
    CHECK(b == NULL, "no allocation on failure");
    size_t big[2] = {SIZE_MAX / 2, 4};
    double x = 0;
    CHECK(gmf_io_write_npy(tpath("big.npy"), &x, 2, big) == GMF_EINVAL, "overflowing shape");
    CHECK(!file_exists(tpath("big.npy")), "nothing written for a bad shape");
}

/* ---------------------------------------------------------------- state JSON */

static void make_state(gsl_rng *r, size_t K, size_t d, int euclid, gmf_io_state *s) {
    size_t D = d + 1;
    s->K = K, s->d = d, s->D = D, s->euclid = euclid;
    s->t = 1.0 / 3.0;
    s->mu = tu_xmalloc(K * D * sizeof(double));
    s->Sigma = tu_xmalloc(K * D * D * sizeof(double));
    s->C = euclid ? tu_xmalloc(K * D * D * sizeof(double)) : NULL;
    tu_randn(r, K * D, 1.0, s->mu);
    s->mu[0] = -0.0, s->mu[1] = 5e-324, s->mu[2] = 1e300, s->mu[3] = 0.1;
    for (size_t k = 0; k < K; k++) {
        double *L = tu_xmalloc(D * D * sizeof(double));
        tu_rand_spd(r, D, 1e3, 1.0, s->Sigma + k * D * D, L);
        if (euclid) {
            memcpy(s->C + k * D * D, L, D * D * sizeof(double));
            tu_gram(D, D, L, s->Sigma + k * D * D);
        }
        free(L);
    }
}

static void test_state_roundtrip(void) {
    gsl_rng *r = tu_rng(12);
    for (int euclid = 0; euclid <= 1; euclid++) {
        gmf_io_state s = {0}, u;
        make_state(r, 3, 4, euclid, &s);
        const char *p = tpath("state.json");
        CHECK(gmf_io_write_state(p, &s) == GMF_OK, "write state: %s", gmf_errmsg());
        int rc = gmf_io_read_state(p, &u);
        CHECK(rc == GMF_OK, "read state back: %s", gmf_errmsg());
        if (rc == GMF_OK) {
            size_t K = 3, D = 5;
            CHECK(u.K == 3 && u.d == 4 && u.D == 5 && u.euclid == euclid, "dims and form");
            CHECK(memcmp(&u.t, &s.t, sizeof u.t) == 0, "t bitwise");
            CHECK(memcmp(u.mu, s.mu, K * D * sizeof(double)) == 0, "mu bitwise");
            CHECK(memcmp(u.Sigma, s.Sigma, K * D * D * sizeof(double)) == 0, "Sigma bitwise");
            CHECK(euclid ? u.C && memcmp(u.C, s.C, K * D * D * sizeof(double)) == 0 : !u.C,
                  "C bitwise (euclid) / absent (bw)");
            CHECK(signbit(u.mu[0]) && u.mu[1] == 5e-324, "-0 and the smallest denormal survive");
        }
        gmf_io_state_free(&u);
        CHECK(u.mu == NULL && u.Sigma == NULL && u.C == NULL, "free clears");
        gmf_io_state_free(&s);
    }
    /* the writer refuses non-finite states and bad dimensions, and writes nothing */
    gmf_io_state s = {0};
    make_state(r, 2, 2, 0, &s);
    s.Sigma[4] = NAN;
    CHECK(gmf_io_write_state(tpath("nan_state.json"), &s) == GMF_EINVAL, "NaN state refused");
    CHECK(!file_exists(tpath("nan_state.json")), "no file for a refused state");
    s.Sigma[4] = 1.0;
    s.D = 4;
    CHECK(gmf_io_write_state(tpath("nan_state.json"), &s) == GMF_EINVAL, "D != d+1 refused");
    gmf_io_state_free(&s);
    gsl_rng_free(r);
}

static const char *good_state =
    "{\"format\": \"gmflow-state\", \"version\": 1, \"form\": \"bw\", \"t\": 0.5, \"K\": 2,\n"
    " \"d\": 1,\n"
    " \"mu\": [[0.1, 0.2], [0.3, 0.4]],\n"
    " \"Sigma\": [[[1, 0.5], [0.5, 2]], [[1, 0], [0, 1]]]}\n";

/* Replace the first occurrence of `from` in good_state by `to` and write it to `name`. */
static const char *state_variant(const char *name, const char *from, const char *to) {
    char buf[2048];
    const char *at = strstr(good_state, from);
    if (!at) {
        fprintf(stderr, "state_variant: '%s' not in the template\n", from);
        exit(2);
    }
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - good_state), good_state, to,
             at + strlen(from));
    const char *p = tpath(name);
    write_text(p, buf);
    return p;
}

static void expect_state_error(const char *p, const char *needle, const char *what) {
    gmf_io_state s;
    int rc = gmf_io_read_state(p, &s);
    CHECK(rc != GMF_OK, "%s: must fail", what);
    CHECK(errmsg_has(p) && errmsg_has(needle), "%s: message names the file and '%s': %s", what,
          needle, gmf_errmsg());
    CHECK(s.mu == NULL && s.Sigma == NULL && s.C == NULL, "%s: nothing allocated", what);
}

static void test_state_errors(void) {
    gmf_io_state s;
    write_text(tpath("good.json"), good_state);
    CHECK(gmf_io_read_state(tpath("good.json"), &s) == GMF_OK && s.K == 2 && s.d == 1 &&
              s.Sigma[1] == 0.5 && s.t == 0.5,
          "control: the template reads: %s", gmf_errmsg());
    gmf_io_state_free(&s);

    expect_state_error(state_variant("s1.json", "\"format\": \"gmflow-state\", ", ""), "\"format\"",
                       "missing format");
    expect_state_error(state_variant("s2.json", "gmflow-state", "gmflow-run"), "\"format\"",
                       "wrong format");
    expect_state_error(state_variant("s3.json", "\"version\": 1", "\"version\": 2"), "version",
                       "wrong version");
    expect_state_error(state_variant("s4.json", "\"bw\"", "\"sqrt\""), "\"form\"", "bad form");
    expect_state_error(state_variant("s5.json", "\"K\": 2", "\"K\": 3"), "\"mu\"",
                       "K disagrees with mu");
    expect_state_error(state_variant("s6.json", "[0.3, 0.4]", "[0.3]"), "\"mu\"[1]",
                       "short mu row");
    expect_state_error(state_variant("s7.json", "[0.5, 2]", "[0.5, 2, 3]"), "\"Sigma\"[0][1]",
                       "long Sigma row");
    expect_state_error(state_variant("s8.json", "0.4", "\"x\""), "\"mu\"[1][1]", "string in mu");
    expect_state_error(state_variant("s9.json", "0.4", "NaN"), "NaN", "NaN in mu");
    expect_state_error(state_variant("s10.json", "0.4", "-Infinity"), "Infinity", "-inf in mu");
    expect_state_error(state_variant("s11.json", "0.4", "1e400"), "range", "overflow in mu");
    expect_state_error(state_variant("s12.json", "]]]}\n", "]]]} x\n"), "trailing",
                       "trailing garbage");
    expect_state_error(state_variant("s13.json", "\"d\": 1,", "\"d\": 1, \"d\": 1,"), "duplicate",
                       "duplicate key");
    expect_state_error(state_variant("s14.json", "\"d\": 1,", "\"d\": 1, \"extra\": 0,"),
                       "\"extra\"", "unknown key");
    expect_state_error(state_variant("s15.json", "\"K\": 2", "\"K\": 2.5"), "\"K\"",
                       "non-integer K");
    expect_state_error(state_variant("s16.json", "\"K\": 2", "\"K\": 0"), "\"K\"", "K = 0");
    expect_state_error(state_variant("s17.json", "\"t\": 0.5", "\"t\": \"0.5\""), "\"t\"",
                       "string t");
    expect_state_error(state_variant("s18.json", "\"d\": 1,", "\"d\": 1, \"C\": [],"), "\"C\"",
                       "C with form bw");
    expect_state_error(state_variant("s19.json", "\"bw\"", "\"euclid\""), "\"C\"",
                       "euclid without C");
    expect_state_error(state_variant("s20.json", "\"Sigma\": [", "\"Sigma\": [[[1]]], \"X\": ["),
                       "line", "structure error");
    expect_state_error(state_variant("s21.json", "0.1, 0.2", "0.1,, 0.2"), "line 3",
                       "syntax error names the line");
    expect_state_error(state_variant("s22.json", "0.1, 0.2", "01, 0.2"), "line 3",
                       "leading zero is not JSON");
    state_variant("s23.json", "\"Sigma\"", "\"Sigma\" \n ");
    CHECK(gmf_io_read_state(tpath("s23.json"), &s) == GMF_OK, "whitespace before ':' is fine: %s",
          gmf_errmsg());
    gmf_io_state_free(&s);

    /* truncated at every length: must fail cleanly, never crash or succeed */
    size_t len = strlen(good_state);
    int all_fail = 1;
    char buf[2048];
    for (size_t cut = 0; cut + 1 < len; cut++) {
        memcpy(buf, good_state, cut);
        buf[cut] = '\0';
        write_text(tpath("trunc.json"), buf);
        if (gmf_io_read_state(tpath("trunc.json"), &s) == GMF_OK) {
            all_fail = 0;
            gmf_io_state_free(&s);
        }
    }
    CHECK(all_fail, "every truncation of a state file is rejected");
    write_text(tpath("trunc.json"), "{\"format\": \"gmflow-state\", \"version\": 1, \"mu\": [[1,");
    expect_state_error(tpath("trunc.json"), "truncated", "truncated file says so");
    write_text(tpath("empty.json"), "  \n");
    expect_state_error(tpath("empty.json"), "empty", "empty file");
    write_text(tpath("arr.json"), "[1, 2]");
    expect_state_error(tpath("arr.json"), "object", "top-level array");

    /* euclid: Sigma must equal C C^T */
    const char *eu = "{\"format\": \"gmflow-state\", \"version\": 1, \"form\": \"euclid\", "
                     "\"t\": 0, \"K\": 1, \"d\": 1, \"mu\": [[0, 0]],\n"
                     "\"Sigma\": [[[4, 2], [2, 2]]], \"C\": [[[2, 0], [1, 1]]]}";
    write_text(tpath("eu.json"), eu);
    CHECK(gmf_io_read_state(tpath("eu.json"), &s) == GMF_OK && s.euclid && s.C && s.C[2] == 1,
          "euclid state reads: %s", gmf_errmsg());
    gmf_io_state_free(&s);
    char eu2[512];
    snprintf(eu2, sizeof eu2, "%s", eu);
    char *at = strstr(eu2, "[[4, 2]");
    at[2] = '5';
    write_text(tpath("eu2.json"), eu2);
    expect_state_error(tpath("eu2.json"), "C[0] C[0]^T", "euclid Sigma != C C^T");
    expect_state_error(tpath("nonexistent.json"), "nonexistent.json", "missing file");
}

/* ---------------------------------------------------------------- CSV */

static void expect_csv_error(const char *name, const char *text, const char *needle) {
    const char *p = tpath(name);
    write_text(p, text);
    size_t n = 99, d = 99;
    double *X = (double *)1, *y = (double *)1;
    int rc = gmf_io_read_csv(p, &n, &d, &X, &y);
    CHECK(rc != GMF_OK, "%s must fail", name);
    CHECK(errmsg_has(name) && errmsg_has(needle), "%s: message names the file and '%s': %s", name,
          needle, gmf_errmsg());
    CHECK(X == NULL && y == NULL && n == 0, "%s: outputs cleared", name);
}

static void test_csv(void) {
    size_t n, d;
    double *X = NULL, *y = NULL;
    write_text(tpath("ok.csv"), "# a comment\r\n x1 , x2 ,y\r\n\r\n1,2,3\r\n  -4.5e-1, 5 ,6\n"
                                "# another\n\n7,8,9");
    int rc = gmf_io_read_csv(tpath("ok.csv"), &n, &d, &X, &y);
    CHECK(rc == GMF_OK, "good CSV: %s", gmf_errmsg());
    if (rc == GMF_OK) {
        CHECK(n == 3 && d == 2, "n = %zu, d = %zu", n, d);
        CHECK(X[0] == 1 && X[1] == 2 && X[2] == -0.45 && X[3] == 5 && X[5] == 8, "X values");
        CHECK(y[0] == 3 && y[1] == 6 && y[2] == 9, "y values");
    }
    free(X), free(y);

    /* without a header */
    write_text(tpath("nohdr.csv"), "1,2\n3,4\n");
    rc = gmf_io_read_csv(tpath("nohdr.csv"), &n, &d, &X, &y);
    CHECK(rc == GMF_OK && n == 2 && d == 1 && y[1] == 4, "headerless CSV: %s", gmf_errmsg());
    free(X), free(y);

    /* write + read is bitwise */
    gsl_rng *r = tu_rng(13);
    double Xw[40], yw[10];
    tu_randn(r, 40, 1.0, Xw);
    tu_randn(r, 10, 1.0, yw);
    Xw[0] = -0.0, Xw[1] = 5e-324, yw[0] = 1e-310;
    gsl_rng_free(r);
    CHECK(gmf_io_write_csv_data(tpath("rt.csv"), 10, 4, Xw, yw) == GMF_OK, "%s", gmf_errmsg());
    rc = gmf_io_read_csv(tpath("rt.csv"), &n, &d, &X, &y);
    CHECK(rc == GMF_OK && n == 10 && d == 4, "read written CSV: %s", gmf_errmsg());
    if (rc == GMF_OK)
        CHECK(!memcmp(X, Xw, sizeof Xw) && !memcmp(y, yw, sizeof yw), "CSV round trip bitwise");
    free(X), free(y);

    expect_csv_error("ragged.csv", "x1,x2,y\n1,2,3\n4,5,6\n7,8\n", "line 4");
    expect_csv_error("ragged2.csv", "1,2,3\n4,5,6,7\n", "line 2");
    expect_csv_error("ragged_hdr.csv", "a,b\n1,2,3\n", "line 2");
    expect_csv_error("nonnum.csv", "1,2,3\n4,abc,6\n", "line 2, column 2");
    expect_csv_error("nonnum2.csv", "x,y\n1,2\n\n# c\n3,4x\n", "line 5, column 2");
    expect_csv_error("nan.csv", "1,2,3\n4,5,nan\n", "line 2, column 3");
    expect_csv_error("inf.csv", "1,2,3\n-inf,5,6\n", "line 2, column 1");
    expect_csv_error("huge.csv", "1,2,3\n1e999,5,6\n", "line 2, column 1");
    expect_csv_error("empty.csv", "", "empty");
    expect_csv_error("blank.csv", "\n\n# nothing\n", "no data rows");
    expect_csv_error("hdronly.csv", "x1,x2,y\n", "no data rows");
    expect_csv_error("onecol.csv", "1\n2\n", "line 1");
    expect_csv_error("emptyfield.csv", "1,2,3\n4,,6\n", "line 2, column 2");
    expect_csv_error("trailcomma.csv", "1,2,3,\n", "line 1, column 4");
    write_bytes(tpath("nul.csv"), "1,2\n3\0,4\n", 9);
    CHECK(gmf_io_read_csv(tpath("nul.csv"), &n, &d, &X, &y) == GMF_EFORMAT && errmsg_has("line 2"),
          "NUL byte rejected: %s", gmf_errmsg());
    CHECK(gmf_io_read_csv(tpath("nope.csv"), &n, &d, &X, &y) == GMF_EIO && errmsg_has("nope.csv"),
          "missing file: %s", gmf_errmsg());
}

/* ---------------------------------------------------------------- atomic writer */

static void test_atomic(void) {
    const char *p = tpath("atomic.txt");
    write_text(p, "old\n");
    gmf_io_file f;
    CHECK(gmf_io_open(&f, p) == GMF_OK, "open: %s", gmf_errmsg());
    fputs("partial", f.fp);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", f.tmp);
    CHECK(file_exists(tmp), "temporary exists while writing");
    gmf_io_abort(&f);
    CHECK(!file_exists(tmp), "abort removes the temporary");
    gmf_io_abort(&f); /* twice is harmless */
    FILE *fp = fopen(p, "r");
    char line[32] = "";
    CHECK(fp && fgets(line, sizeof line, fp) && !strcmp(line, "old\n"), "abort keeps the old file");
    if (fp) fclose(fp);

    CHECK(gmf_io_open(&f, p) == GMF_OK, "open: %s", gmf_errmsg());
    fputs("new\n", f.fp);
    CHECK(gmf_io_commit(&f) == GMF_OK, "commit: %s", gmf_errmsg());
    fp = fopen(p, "r");
    CHECK(fp && fgets(line, sizeof line, fp) && !strcmp(line, "new\n"), "commit replaces");
    if (fp) fclose(fp);
    CHECK(!file_exists(tmp), "no temporary left after commit");
    CHECK(gmf_io_commit(&f) != GMF_OK, "second commit is an error");

    CHECK(gmf_io_open(&f, tpath("no/such/dir/x.txt")) == GMF_EIO && errmsg_has("x.txt"),
          "open in a missing directory fails naming the file: %s", gmf_errmsg());
    CHECK(f.fp == NULL, "no stream after a failed open");
    size_t shape[1] = {1};
    double v = 1;
    CHECK(gmf_io_write_npy(tpath("no/such/dir/x.npy"), &v, 1, shape) == GMF_EIO,
          "npy write into a missing directory fails");
}

/* ---------------------------------------------------------------- toy */

static void test_toy(void) {
    gmf_toy_opts o = gmf_toy_defaults();
    CHECK(o.n == 200 && o.d == 3 && o.teacher == GMF_TOY_RELU && o.width == 4 && o.noise == 0.05 &&
              o.seed == 1,
          "documented defaults");
    for (int teacher = 0; teacher <= 1; teacher++) {
        o.teacher = (gmf_toy_teacher)teacher;
        o.n = 50;
        double *X1, *y1, *X2, *y2;
        CHECK(gmf_toy_make(&o, &X1, &y1) == GMF_OK, "toy %d: %s", teacher, gmf_errmsg());
        CHECK(gmf_toy_make(&o, &X2, &y2) == GMF_OK, "toy %d again", teacher);
        CHECK(!memcmp(X1, X2, 150 * sizeof(double)) && !memcmp(y1, y2, 50 * sizeof(double)),
              "toy %d: same seed, same data", teacher);
        double var = 0;
        for (int i = 0; i < 50; i++)
            var += y1[i] * y1[i];
        CHECK(tu_all_finite(y1, 50) && var > 0, "toy %d: finite, non-trivial targets", teacher);
        free(X2), free(y2);
        o.seed = 2;
        CHECK(gmf_toy_make(&o, &X2, &y2) == GMF_OK, "toy %d seed 2", teacher);
        CHECK(memcmp(X1, X2, 150 * sizeof(double)) != 0, "toy %d: another seed, other data",
              teacher);
        free(X1), free(y1), free(X2), free(y2);
        o.seed = 1;
    }
    o.noise = -1;
    double *X, *y;
    CHECK(gmf_toy_make(&o, &X, &y) == GMF_EINVAL && X == NULL, "negative noise rejected");
    o = gmf_toy_defaults();
    o.d = 0;
    CHECK(gmf_toy_make(&o, &X, &y) == GMF_EINVAL, "d = 0 rejected");

    size_t K = 3, D = 4;
    double mu[12], C[48], S[48], mu2[12];
    CHECK(gmf_toy_init_mixture(K, D, 0.5, 2, mu, C, S) == GMF_OK, "init: %s", gmf_errmsg());
    CHECK(gmf_toy_init_mixture(K, D, 0.5, 2, mu2, NULL, NULL) == GMF_OK, "init, mu only");
    CHECK(!memcmp(mu, mu2, sizeof mu), "init is deterministic");
    int ok = 1;
    for (size_t k = 0; k < K; k++)
        for (size_t i = 0; i < D; i++)
            for (size_t j = 0; j < D; j++) {
                size_t at = (k * D + i) * D + j;
                ok &= C[at] == (i == j ? 0.5 : 0.0) && S[at] == (i == j ? 0.25 : 0.0);
            }
    CHECK(ok, "C_k = gamma I and Sigma_k = gamma^2 I");
    double m2 = 0;
    for (size_t i = 0; i < K * D; i++)
        m2 += mu[i] * mu[i];
    CHECK(m2 > 0 && m2 / (double)(K * D) < 2.0, "mean entries at scale gamma (mean square %g)",
          m2 / (double)(K * D));
    CHECK(gmf_toy_init_mixture(K, D, 0.0, 2, mu, C, S) == GMF_EINVAL, "gamma = 0 rejected");
    CHECK(gmf_toy_init_mixture(K, D, NAN, 2, mu, C, S) == GMF_EINVAL, "gamma = NaN rejected");
}

/* gmf_io_json_string against literals escaped by hand (RFC 8259: quote, backslash, controls). */
static void test_json_string(void) {
    static const struct {
        const char *in, *want;
    } cases[] = {{"plain", "\"plain\""},
                 {"a\"b", "\"a\\\"b\""},
                 {"c:\\dir", "\"c:\\\\dir\""},
                 {"tab\there\n", "\"tab\\u0009here\\u000a\""},
                 {"", "\"\""}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[64] = {0};
        FILE *fp = fmemopen(buf, sizeof buf - 1, "w");
        CHECK(fp != NULL, "fmemopen");
        if (!fp) return;
        gmf_io_json_string(fp, cases[i].in);
        fclose(fp);
        CHECK(!strcmp(buf, cases[i].want), "json of case %zu: got %s, want %s", i, buf,
              cases[i].want);
    }
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/gmflow_test_io.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    test_npy_roundtrip();
    test_json_string();
    test_npy_errors();
    test_state_roundtrip();
    test_state_errors();
    test_csv();
    test_atomic();
    test_toy();
    if (!tu_failures()) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "test_io: could not remove %s\n", tmpdir);
    } else {
        fprintf(stderr, "test_io: files kept in %s\n", tmpdir);
    }
    return tu_finish("test_io");
}
