/* xsmm_probe.c -- can libxsmm's JIT small-GEMM kernels (Debian libxsmm-dev 1.17) run the GM
 * trainer's float32 GEMM shapes faster than OpenBLAS, with no packing?  A standalone probe, not
 * part of gmflow: built by hand, against libxsmm, only when GMFLOW_XSMM_PROBE is defined.
 * bench/'s CMake glob builds this file too; without the macro it compiles to a stub that says so
 * and exits 77, so the default build needs no libxsmm.
 *
 * Build and run (apt-get install -y libxsmm-dev; libxsmm 1.17 ships static libraries only):
 *   gcc -std=gnu11 -O2 -march=native -DGMFLOW_XSMM_PROBE bench/xsmm_probe.c -o /tmp/xsmm_probe \
 *       -lxsmm -lopenblas -lpthread -lrt -ldl -lm
 *   OPENBLAS_NUM_THREADS=1 taskset -c 1 /tmp/xsmm_probe [--rounds 7] [--calls 1000]
 *
 * Shapes are written row-major, as gmflow calls cblas_sgemm: C (m x n) = op(P) op(Q), with
 * P = X (batch x d) or dF/dS2, Q = the parameters.  libxsmm is column-major, so the probe asks it
 * for C^T = op(Q)^T op(P)^T: M = n, N = m, K = k, A = Q, B = P; a transposed Q becomes
 * LIBXSMM_GEMM_FLAG_TRANS_A, a transposed P LIBXSMM_GEMM_FLAG_TRANS_B.  libxsmm 1.17's JIT
 * supports TRANS_B but not TRANS_A for float32 (generator_gemm.c), so F = X B^T in gmflow's
 * layout (B row-major K(L+1) x d) has no kernel; the probe then times two alternatives:
 *   "+T"  : transpose B into a scratch buffer on every call (B changes every step), then the NN
 *           kernel -- the honest cost in gmflow's current layout;
 *   layout T: the parameters stored transposed (d x K(L+1), row-major) for good, so F = X Bt is
 *           NN and the update dBt += X^T dF is TRANS_B -- both supported, no per-call copy;
 *   layout Xt: X (and X2 = X .* X) transposed once per batch into d x batch and F, S2 kept
 *           transposed (K(L+1) x batch): F^T = B Xt is NN, and with dF, dS2 also transposed the
 *           updates dB += dFt X are NN too; the once-per-batch transpose of X is timed separately
 *           (a blocked loop and libxsmm_otrans).
 *
 * For each shape: the max relative difference max|C_xsmm - C_blas| / max|C_blas| against
 * cblas_sgemm from the same inputs, then `rounds` rounds of `calls` calls of OpenBLAS and of
 * libxsmm, interleaved (A B A B), process CPU time; median GFLOP/s of each and the range of the
 * per-round ratios (OpenBLAS time / libxsmm time, > 1 = libxsmm faster).  Also the 2048^3 SGEMM
 * rate and /proc/loadavg before and after.
 */
#ifndef GMFLOW_XSMM_PROBE
#include <stdio.h>
int main(void) {
    fprintf(stderr, "xsmm_probe: built without libxsmm; see the build line at the top of "
                    "bench/xsmm_probe.c\n");
    return 77;
}
#else
#include <cblas.h>
#include <libxsmm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void loadavg(char *buf, size_t n) {
    FILE *f = fopen("/proc/loadavg", "r");
    buf[0] = 0;
    if (f) {
        if (!fgets(buf, (int)n, f)) buf[0] = 0;
        fclose(f);
    }
    size_t l = strlen(buf);
    if (l && buf[l - 1] == '\n') buf[l - 1] = 0;
}

static unsigned long long rng_state = 0x9E3779B97F4A7C15ull;
static float urand(void) { /* splitmix64 -> [-0.5, 0.5) */
    unsigned long long z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) / 9007199254740992.0 - 0.5);
}

static float *alloc_fill(size_t n) {
    float *p = libxsmm_aligned_malloc(n * sizeof(float), 64);
    if (!p) {
        fprintf(stderr, "xsmm_probe: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = urand();
    return p;
}

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    double t[64];
    memcpy(t, v, (size_t)n * sizeof(double));
    qsort(t, (size_t)n, sizeof(double), cmp_dbl);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

typedef struct {
    const char *name; /* gmflow's formula */
    int m, n, k;      /* row-major C (m x n) = op(P) (m x k) op(Q) (k x n) */
    int tp, tq;       /* P / Q transposed as stored */
    float beta;
} shape_t;

/* the libxsmm side of one call: kernel, and for "+T" the scratch transpose of Q */
typedef struct {
    libxsmm_smmfunction kern;
    int pre_t; /* transpose Q (stored n x k, row-major) into qt (k x n) before the kernel */
    float *qt;
    int qrows, qcols; /* Q as stored */
} xcall_t;

/* row-major R x C -> row-major C x R, 16 x 16 blocks */
static void transpose_naive(float *restrict o, const float *restrict q, int R, int C) {
    for (int i0 = 0; i0 < R; i0 += 16)
        for (int j0 = 0; j0 < C; j0 += 16) {
            int i1 = i0 + 16 < R ? i0 + 16 : R, j1 = j0 + 16 < C ? j0 + 16 : C;
            for (int i = i0; i < i1; i++)
                for (int j = j0; j < j1; j++)
                    o[(size_t)j * R + i] = q[(size_t)i * C + j];
        }
}

static void xsmm_run(const xcall_t *x, const float *p, const float *q, float *c) {
    if (x->pre_t) {
        transpose_naive(x->qt, q, x->qrows, x->qcols);
        x->kern(x->qt, p, c);
    } else {
        x->kern(q, p, c);
    }
}

/* the once-per-batch transpose of X (batch x d -> d x batch) that layout Xt needs: the blocked
 * loop above (A) vs libxsmm_otrans (B), interleaved; microseconds per call, CPU time */
static void probe_transpose(int rows, int cols, int rounds, int calls) {
    const size_t n = (size_t)rows * cols;
    float *x = alloc_fill(n), *oa = alloc_fill(n), *ob = alloc_fill(n);
    transpose_naive(oa, x, rows, cols);
    /* libxsmm is column-major: X row-major rows x cols = cols x rows column-major */
    libxsmm_otrans(ob, x, sizeof(float), cols, rows, cols, rows);
    int same = !memcmp(oa, ob, n * sizeof(float)) && oa[1] == x[cols];
    double ta[64], tb[64];
    for (int r = 0; r < rounds; r++) {
        double t0 = cpu_now();
        for (int i = 0; i < calls; i++)
            transpose_naive(oa, x, rows, cols);
        double t1 = cpu_now();
        for (int i = 0; i < calls; i++)
            libxsmm_otrans(ob, x, sizeof(float), cols, rows, cols, rows);
        double t2 = cpu_now();
        ta[r] = (t1 - t0) / calls * 1e6;
        tb[r] = (t2 - t1) / calls * 1e6;
    }
    printf("transpose X %dx%d: %s  blocked_loop_us=%.2f  libxsmm_otrans_us=%.2f (medians)\n", rows,
           cols, same ? "results agree" : "RESULTS DIFFER", median(ta, rounds), median(tb, rounds));
    libxsmm_free(x);
    libxsmm_free(oa);
    libxsmm_free(ob);
}

static void blas_run(const shape_t *s, const float *p, const float *q, float *c) {
    const int ldp = s->tp ? s->m : s->k, ldq = s->tq ? s->k : s->n;
    cblas_sgemm(CblasRowMajor, s->tp ? CblasTrans : CblasNoTrans, s->tq ? CblasTrans : CblasNoTrans,
                s->m, s->n, s->k, 1.0f, p, ldp, q, ldq, s->beta, c, s->n);
}

static void probe(const shape_t *s, int rounds, int calls) {
    const size_t np = (size_t)s->m * s->k, nq = (size_t)s->k * s->n, nc = (size_t)s->m * s->n;
    float *p = alloc_fill(np), *q = alloc_fill(nq), *c0 = alloc_fill(nc);
    float *cb = alloc_fill(nc), *cx = alloc_fill(nc);
    const int ldp = s->tp ? s->m : s->k, ldq = s->tq ? s->k : s->n;
    xcall_t x = {0};
    const float alpha = 1.0f;
    const int pf = LIBXSMM_GEMM_PREFETCH_NONE;
    int flags = (s->tq ? LIBXSMM_GEMM_FLAG_TRANS_A : 0) | (s->tp ? LIBXSMM_GEMM_FLAG_TRANS_B : 0);
    libxsmm_blasint M = s->n, N = s->m, K = s->k, lda = ldq, ldb = ldp, ldc = s->n;
    x.kern = libxsmm_smmdispatch(M, N, K, &lda, &ldb, &ldc, &alpha, &s->beta, &flags, &pf);
    const char *how = "direct";
    if (!x.kern && s->tq) {
        /* no TRANS_A kernel: transpose Q (stored n x k) to k x n each call, then NN */
        int f2 = s->tp ? LIBXSMM_GEMM_FLAG_TRANS_B : 0;
        libxsmm_blasint lda2 = s->n;
        x.kern = libxsmm_smmdispatch(M, N, K, &lda2, &ldb, &ldc, &alpha, &s->beta, &f2, &pf);
        x.pre_t = 1;
        x.qt = libxsmm_aligned_malloc(nq * sizeof(float), 64);
        x.qrows = s->n;
        x.qcols = s->k;
        how = "+T (TRANS_A refused; Q transposed per call)";
    }
    if (!x.kern) {
        printf("%-28s %4dx%4dx%4d  libxsmm dispatch refused (flags %d)\n", s->name, s->m, s->n,
               s->k, flags);
        goto out;
    }
    /* correctness: same inputs, same starting C */
    memcpy(cb, c0, nc * sizeof(float));
    memcpy(cx, c0, nc * sizeof(float));
    blas_run(s, p, q, cb);
    xsmm_run(&x, p, q, cx);
    double dmax = 0, rmax = 0;
    for (size_t i = 0; i < nc; i++) {
        double d = cb[i] - cx[i];
        if (d < 0) d = -d;
        if (d > dmax) dmax = d;
        double r = cb[i] < 0 ? -cb[i] : cb[i];
        if (r > rmax) rmax = r;
    }
    const double rel = rmax > 0 ? dmax / rmax : dmax;
    /* timing: warm-up, then rounds of A (OpenBLAS) B (libxsmm) */
    for (int i = 0; i < calls / 10 + 1; i++) {
        blas_run(s, p, q, cb);
        xsmm_run(&x, p, q, cx);
    }
    double gb[64], gx[64], ratio[64];
    const double flop = 2.0 * s->m * s->n * s->k * calls;
    for (int r = 0; r < rounds; r++) {
        double t0 = cpu_now();
        for (int i = 0; i < calls; i++)
            blas_run(s, p, q, cb);
        double t1 = cpu_now();
        for (int i = 0; i < calls; i++)
            xsmm_run(&x, p, q, cx);
        double t2 = cpu_now();
        gb[r] = flop / (t1 - t0) * 1e-9;
        gx[r] = flop / (t2 - t1) * 1e-9;
        ratio[r] = (t1 - t0) / (t2 - t1);
    }
    double rlo = 1e300, rhi = 0;
    for (int r = 0; r < rounds; r++) {
        if (ratio[r] < rlo) rlo = ratio[r];
        if (ratio[r] > rhi) rhi = ratio[r];
    }
    printf("%-28s %4dx%4dx%4d beta=%g xsmm(M=%d N=%d K=%d flags=%d %s)\n", s->name, s->m, s->n,
           s->k, (double)s->beta, (int)M, (int)N, (int)K, flags, how);
    printf("    maxreldiff=%.2e  openblas_gflops=%.1f  xsmm_gflops=%.1f  ratio_median=%.2f "
           "range=%.2f-%.2f\n",
           rel, median(gb, rounds), median(gx, rounds), median(ratio, rounds), rlo, rhi);
    fflush(stdout);
out:
    libxsmm_free(p);
    libxsmm_free(q);
    libxsmm_free(c0);
    libxsmm_free(cb);
    libxsmm_free(cx);
    if (x.qt) libxsmm_free(x.qt);
}

/* one GM step's four GEMMs in sequence (F, dB, S2, ds; the elementwise work between them is not
 * part of this probe), interleaved per round:
 *   A  OpenBLAS in gmflow's layout (as src/ calls it today),
 *   C  the same with S2 split into two calls of ns/2 rows of s (OpenBLAS's small-matrix path),
 *   B  libxsmm in layout Xt, including libxsmm_otrans of X and of X2 every step.
 * Prints the median microseconds per step of each and the per-round ratios A/B and A/C. */
static void probe_step(int bt, int d, int nb, int ns, int rounds, int calls) {
    float *x = alloc_fill((size_t)bt * d), *x2 = alloc_fill((size_t)bt * d);
    float *xt = alloc_fill((size_t)bt * d), *x2t = alloc_fill((size_t)bt * d);
    float *b = alloc_fill((size_t)nb * d), *db = alloc_fill((size_t)nb * d);
    float *sv = alloc_fill((size_t)ns * d), *ds = alloc_fill((size_t)ns * d);
    float *f = alloc_fill((size_t)bt * nb), *df = alloc_fill((size_t)bt * nb);
    float *s2 = alloc_fill((size_t)bt * ns), *ds2 = alloc_fill((size_t)bt * ns);
    const float one = 1.0f, zero = 0.0f;
    const int pf = LIBXSMM_GEMM_PREFETCH_NONE, nn = 0;
    libxsmm_blasint ld_bt = bt, ld_d = d;
    /* F^T (nb x bt) = B Xt; S2^T = s X2t; dB += dFt X; ds += dS2t X2 (column-major views) */
    libxsmm_smmfunction kf =
        libxsmm_smmdispatch(bt, nb, d, &ld_bt, &ld_d, &ld_bt, &one, &zero, &nn, &pf);
    libxsmm_smmfunction ks =
        libxsmm_smmdispatch(bt, ns, d, &ld_bt, &ld_d, &ld_bt, &one, &zero, &nn, &pf);
    libxsmm_smmfunction kdb =
        libxsmm_smmdispatch(d, nb, bt, &ld_d, &ld_bt, &ld_d, &one, &one, &nn, &pf);
    libxsmm_smmfunction kds =
        libxsmm_smmdispatch(d, ns, bt, &ld_d, &ld_bt, &ld_d, &one, &one, &nn, &pf);
    if (!kf || !ks || !kdb || !kds) {
        printf("step nb=%d ns=%d: libxsmm dispatch refused\n", nb, ns);
        return;
    }
    double ta[64], tb[64], tc[64], rab[64], rac[64];
    for (int r = -1; r < rounds; r++) { /* r = -1: warm-up */
        double t0 = cpu_now();
        for (int i = 0; i < calls; i++) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bt, nb, d, 1.0f, x, d, b, d, 0.0f,
                        f, nb);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nb, d, bt, 1.0f, df, nb, x, d,
                        1.0f, db, d);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bt, ns, d, 1.0f, x2, d, sv, d,
                        0.0f, s2, ns);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ns, d, bt, 1.0f, ds2, ns, x2, d,
                        1.0f, ds, d);
        }
        double t1 = cpu_now();
        for (int i = 0; i < calls; i++) {
            libxsmm_otrans(xt, x, sizeof(float), d, bt, d, bt);
            libxsmm_otrans(x2t, x2, sizeof(float), d, bt, d, bt);
            kf(xt, b, f);    /* f holds F^T here (nb x bt) */
            kdb(x, df, db);  /* df read as dF^T (nb x bt) */
            ks(x2t, sv, s2); /* s2 holds S2^T */
            kds(x2, ds2, ds);
        }
        double t2 = cpu_now();
        for (int i = 0; i < calls; i++) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bt, nb, d, 1.0f, x, d, b, d, 0.0f,
                        f, nb);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nb, d, bt, 1.0f, df, nb, x, d,
                        1.0f, db, d);
            for (int h = 0; h < 2; h++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bt, ns / 2, d, 1.0f, x2, d,
                            sv + (size_t)h * (ns / 2) * d, d, 0.0f, s2 + h * (ns / 2), ns);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ns, d, bt, 1.0f, ds2, ns, x2, d,
                        1.0f, ds, d);
        }
        double t3 = cpu_now();
        if (r < 0) continue;
        ta[r] = (t1 - t0) / calls * 1e6;
        tb[r] = (t2 - t1) / calls * 1e6;
        tc[r] = (t3 - t2) / calls * 1e6;
        rab[r] = ta[r] / tb[r];
        rac[r] = ta[r] / tc[r];
    }
    double lo1 = 1e300, hi1 = 0, lo2 = 1e300, hi2 = 0;
    for (int r = 0; r < rounds; r++) {
        lo1 = rab[r] < lo1 ? rab[r] : lo1;
        hi1 = rab[r] > hi1 ? rab[r] : hi1;
        lo2 = rac[r] < lo2 ? rac[r] : lo2;
        hi2 = rac[r] > hi2 ? rac[r] : hi2;
    }
    const double fl = 2.0 * bt * d * (2.0 * nb + 2.0 * ns) * 1e-3; /* flop / 1000: / us = GFLOP/s */
    printf(
        "step nb=%d ns=%d (%.2f MFLOP): A openblas_R_us=%.1f (%.1f GF)  B xsmm_Xt+otrans_us=%.1f "
        "(%.1f GF)  C openblas_R_S2split_us=%.1f (%.1f GF)\n",
        nb, ns, fl * 1e-3, median(ta, rounds), fl / median(ta, rounds), median(tb, rounds),
        fl / median(tb, rounds), median(tc, rounds), fl / median(tc, rounds));
    printf("    ratio A/B median=%.2f range=%.2f-%.2f   A/C median=%.2f range=%.2f-%.2f\n",
           median(rab, rounds), lo1, hi1, median(rac, rounds), lo2, hi2);
    float *bufs[] = {x, x2, xt, x2t, b, db, sv, ds, f, df, s2, ds2};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        libxsmm_free(bufs[i]);
}

static double sgemm_peak(int n, int reps) {
    float *a = alloc_fill((size_t)n * n), *b = alloc_fill((size_t)n * n),
          *c = alloc_fill((size_t)n * n);
    double g[16];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    for (int r = 0; r < reps; r++) {
        double t0 = cpu_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        g[r] = 2.0 * n * (double)n * n / (cpu_now() - t0) * 1e-9;
    }
    libxsmm_free(a);
    libxsmm_free(b);
    libxsmm_free(c);
    return median(g, reps);
}

int main(int argc, char **argv) {
    unsigned long ur = 7, uc = 1000;
    const vh_opt opts[] = {{"--rounds", VH_ULONG, &ur, NULL, NULL},
                           {"--calls", VH_ULONG, &uc, NULL, NULL}};
    vh_parse(argc, argv, "xsmm_probe", "[--rounds R (1-63)] [--calls N]", opts, 2);
    if (ur < 1 || ur > 63 || uc < 1 || uc > 100000000)
        vh_usage_error("--rounds must be 1-63 and --calls 1-1e8");
    const int rounds = (int)ur, calls = (int)uc;
    libxsmm_init();
    char la[128];
    loadavg(la, sizeof la);
    printf("xsmm_probe libxsmm %s target=%s openblas=%s threads=%d rounds=%d calls=%d\n",
           LIBXSMM_VERSION, libxsmm_get_target_arch(), openblas_get_config(),
           openblas_get_num_threads(), rounds, calls);
    printf("loadavg_before %s\n", la);
    printf("sgemm_2048 openblas_gflops=%.1f (median of 3, CPU time)\n", sgemm_peak(2048, 3));
    const int d = 784, bt = 64;
    for (int half = 0; half < 2; half++) {
        const int nb = half ? 100 : 200, ns = half ? 10 : 20;
        printf("== %s: B %dx%d, s %dx%d ==\n", half ? "half (2-thread split)" : "full", nb, d, ns,
               d);
        const shape_t sh[] = {
            /* gmflow's layout: B row-major nb x d */
            {"F = X B^T", bt, nb, d, 0, 1, 0.0f},
            {"dB += dF^T X", nb, d, bt, 1, 0, 1.0f},
            {"S2 = X2 s^T", bt, ns, d, 0, 1, 0.0f},
            {"ds += dS2^T X2", ns, d, bt, 1, 0, 1.0f},
            /* layout T: parameters stored transposed, Bt row-major d x nb */
            {"[T] F = X Bt", bt, nb, d, 0, 0, 0.0f},
            {"[T] dBt += X^T dF", d, nb, bt, 1, 0, 1.0f},
            {"[T] S2 = X2 st", bt, ns, d, 0, 0, 0.0f},
            {"[T] dst += X2^T dS2", d, ns, bt, 1, 0, 1.0f},
            /* layout Xt: X (and X2) transposed once per batch (d x batch), F kept transposed */
            {"[Xt] F^T = B Xt", nb, bt, d, 0, 0, 0.0f},
            {"[Xt] S2^T = s X2t", ns, bt, d, 0, 0, 0.0f},
            {"[Xt] dB += dFt X", nb, d, bt, 0, 0, 1.0f},
            {"[Xt] ds += dS2t X2", ns, d, bt, 0, 0, 1.0f},
        };
        for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++)
            probe(&sh[i], rounds, calls);
    }
    probe_transpose(bt, d, rounds, calls);
    probe_step(bt, d, 200, 20, rounds, calls);
    probe_step(bt, d, 100, 10, rounds, calls);
    printf("sgemm_2048 openblas_gflops=%.1f (after)\n", sgemm_peak(2048, 3));
    loadavg(la, sizeof la);
    printf("loadavg_after %s\n", la);
    libxsmm_finalize();
    return 0;
}
#endif
