/* bench_rhs.c -- throughput of the Theorem 4 right-hand side, and the C side of the SciPy
 * side-by-side run (bench/run_flow_bench.sh).
 *
 *   bench_rhs [rhs] [options]   RHS evaluations/s and GFLOP/s against this machine's peak,
 *                               a time breakdown, and a cost-vs-size sweep with fitted exponents
 *   bench_rhs flow [options]    write a problem as .npy, integrate it with gmf_ode_solve, write
 *                               the final state as .npy (read by bench/flow_numpy.py)
 *
 * Run `bench_rhs --help` for the options.  The problem is generated here (not by toy.h, so the
 * bench depends only on the core): x_i ~ N(0, I_d), y_i = (1/4) sum_j a_j relu(b_j . x_i) +
 * 0.05 N(0, 1) with a_j ~ N(0, 4), b_j ~ N(0, I_d / d); the paper's initialization mu_k entries
 * ~ N(0, gamma^2), Sigma_k = gamma^2 I (C_k = gamma I), gamma = 1/2.
 *
 * Flop count of one RHS evaluation, counting the level-3 work only, as multiply + add = 2 flops.
 * The same count F is used for the library and for the previous oracle (tests/sqloss_old.h), so
 * their GFLOP/s are comparable (F is the useful work, not what either one executes):
 *   m = X M_beta^T  (n x d) (d x K)                             2 n d K
 *   per component:  W_k = X R_k[1:, :]  (n x d) (d x D)         2 n d D
 *                   X^T diag(rho q) W_k  (d x n) (n x D)        2 n d D
 *   Euclidean form: Sigma_k = C_k C_k^T by SYRK (upper half)    D^2 (D + 1)
 *   => F_bw = K (4 n d D) + 2 n d K,   F_euclid = F_bw + K D^2 (D + 1).
 * src/exact/sqloss.c (blocked pass) executes these as two GEMMs per block of samples, X_b Rcat with
 * Rcat = [R_1[1:, :] .. R_K[1:, :] | M_beta^T] and X_b^T T with T of K (D + 2) columns, i.e.
 * F_bw + 4 n d K flops: the two X^T GEMVs per component ride along as 2 K extra columns.  Its
 * remaining work is hand loops of O(n K (d + D)) flops (the s^2 dots, the row scaling, the row-0
 * accumulation W^T z) and n K evaluations of erfc, exp and sqrt (the closed forms), which are not
 * flops at all but cost tens of cycles each.  The previous oracle did the same O(n K (d + D))
 * work as n K cblas_ddot / cblas_dscal calls and three GEMVs per component.
 */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gmflow/common.h"
#include "gmflow/flow.h"
#include "gmflow/gauss.h"
#include "gmflow/ode.h"
#include "gmflow/sqloss.h"
#include "sqloss_old.h"

/* ------------------------------------------------------------------ small utilities */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The clock of the timing loops.  The machine is shared: single-threaded measurements use the
 * process CPU time, which time slicing by other processes does not inflate; multi-threaded ones
 * need the wall clock. */
static int g_cpu_clock = 1;
static double tick(void) {
    return g_cpu_clock ? cpu_now() : now();
}
static const char *clock_name(void) {
    return g_cpu_clock ? "process CPU time" : "wall clock";
}

static void die(const char *what, int rc) {
    fprintf(stderr, "bench_rhs: %s: %s (%s)\n", what, gmf_errmsg(), gmf_strerror(rc));
    exit(1);
}

static void *xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size);
    if (!p) {
        fprintf(stderr, "bench_rhs: out of memory (%zu x %zu bytes)\n", count, size);
        exit(1);
    }
    return p;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* splitmix64 + Box-Muller: a small, reproducible generator independent of GSL. */
typedef struct {
    uint64_t s;
    int have;
    double spare;
} rng_t;

static uint64_t rng_u64(rng_t *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double rng_unif(rng_t *r) {
    return ((double)(rng_u64(r) >> 11) + 0.5) * 0x1.0p-53;
}

static double rng_normal(rng_t *r) {
    if (r->have) {
        r->have = 0;
        return r->spare;
    }
    double u = rng_unif(r), v = rng_unif(r), rad = sqrt(-2.0 * log(u));
    r->spare = rad * sin(2.0 * M_PI * v);
    r->have = 1;
    return rad * cos(2.0 * M_PI * v);
}

/* ------------------------------------------------------------------ the problem */

typedef struct {
    size_t n, d, K, D;
    double gamma;
    double *X, *y; /* n x d, n */
    double *ybw;   /* BW state [mu | Sigma] */
    double *yeu;   /* Euclidean state [mu | C] */
} problem;

static void problem_make(problem *p, size_t n, size_t d, size_t K, double gamma, uint64_t seed) {
    const size_t D = d + 1, width = 4;
    rng_t r = {.s = seed};
    p->n = n, p->d = d, p->K = K, p->D = D, p->gamma = gamma;
    p->X = xcalloc(n * d, sizeof(double));
    p->y = xcalloc(n, sizeof(double));
    double *a = xcalloc(width, sizeof(double)), *b = xcalloc(width * d, sizeof(double));
    for (size_t j = 0; j < width; j++) {
        a[j] = 2.0 * rng_normal(&r);
        for (size_t l = 0; l < d; l++)
            b[j * d + l] = rng_normal(&r) / sqrt((double)d);
    }
    for (size_t i = 0; i < n; i++) {
        double *x = p->X + i * d, h = 0.0;
        for (size_t l = 0; l < d; l++)
            x[l] = rng_normal(&r);
        for (size_t j = 0; j < width; j++) {
            double z = 0.0;
            for (size_t l = 0; l < d; l++)
                z += b[j * d + l] * x[l];
            h += a[j] * (z > 0 ? z : 0.0);
        }
        p->y[i] = h / (double)width + 0.05 * rng_normal(&r);
    }
    free(a);
    free(b);
    const size_t N = K * (D + D * D);
    p->ybw = xcalloc(N, sizeof(double));
    p->yeu = xcalloc(N, sizeof(double));
    for (size_t i = 0; i < K * D; i++)
        p->ybw[i] = p->yeu[i] = gamma * rng_normal(&r);
    for (size_t k = 0; k < K; k++)
        for (size_t a2 = 0; a2 < D; a2++) {
            p->ybw[gmf_flow_mat_offset(K, D, k) + a2 * D + a2] = gamma * gamma;
            p->yeu[gmf_flow_mat_offset(K, D, k) + a2 * D + a2] = gamma;
        }
}

static void problem_free(problem *p) {
    free(p->X);
    free(p->y);
    free(p->ybw);
    free(p->yeu);
}

static double flops_rhs(gmf_flow_kind kind, size_t n, size_t d, size_t K) {
    const double D = (double)d + 1.0, N = (double)n, dd = (double)d, KK = (double)K;
    double f = KK * 4.0 * N * dd * D + 2.0 * N * dd * KK;
    if (kind == GMF_FLOW_EUCLID) f += KK * D * D * (D + 1.0);
    return f;
}

/* ------------------------------------------------------------------ machine peak */

typedef struct {
    char model[128], vendor[32], isa[32];
    int family, cores, fpc, fpc_uarch;
    double mhz;
} cpu_t;

static void cpu_probe(cpu_t *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->model, "?");
    c->cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    int avx512 = 0, avx2 = 0, fma = 0, avx = 0;
    FILE *fp = fopen("/proc/cpuinfo", "r");
    char line[8192];
    while (fp && fgets(line, sizeof line, fp)) {
        char *v = strchr(line, ':');
        if (!v) continue;
        v++;
        while (*v == ' ' || *v == '\t')
            v++;
        v[strcspn(v, "\n")] = 0;
        if (!strncmp(line, "model name", 10) && c->model[0] == '?')
            snprintf(c->model, sizeof c->model, "%s", v);
        else if (!strncmp(line, "vendor_id", 9) && !c->vendor[0])
            snprintf(c->vendor, sizeof c->vendor, "%s", v);
        else if (!strncmp(line, "cpu family", 10) && !c->family)
            c->family = atoi(v);
        else if (!strncmp(line, "cpu MHz", 7) && c->mhz == 0.0)
            c->mhz = atof(v);
        else if (!strncmp(line, "flags", 5) && !avx) {
            char *tok = strtok(v, " ");
            for (; tok; tok = strtok(NULL, " ")) {
                avx512 |= !strcmp(tok, "avx512f");
                avx2 |= !strcmp(tok, "avx2");
                fma |= !strcmp(tok, "fma");
                avx |= !strcmp(tok, "avx");
            }
            avx |= 1; /* mark the flags line as read */
        }
    }
    if (fp) fclose(fp);
    /* Double-precision flops per cycle per core by the flag rule: two FMA pipes of the widest
     * vector width (AVX-512: 2 x 8 x 2 = 32; AVX2 + FMA: 2 x 4 x 2 = 16). */
    if (avx512) {
        c->fpc = 32;
        strcpy(c->isa, "AVX-512");
    } else if (avx2 && fma) {
        c->fpc = 16;
        strcpy(c->isa, "AVX2+FMA");
    } else {
        c->fpc = 8;
        strcpy(c->isa, "AVX/SSE");
    }
    c->fpc_uarch = c->fpc;
    /* AMD Zen 4 (family 0x19 with AVX-512) executes 512-bit FMAs on two 256-bit pipes: the
     * architectural peak is the AVX2 figure, 16 flops/cycle/core. */
    if (avx512 && !strcmp(c->vendor, "AuthenticAMD") && c->family == 25) c->fpc_uarch = 16;
}

/* Best-of-3 GFLOP/s of an N x N x N cblas_dgemm at the current thread count. */
static double dgemm_peak(size_t N) {
    double *A = xcalloc(N * N, sizeof(double)), *B = xcalloc(N * N, sizeof(double)),
           *C = xcalloc(N * N, sizeof(double));
    rng_t r = {.s = 7};
    for (size_t i = 0; i < N * N; i++)
        A[i] = rng_unif(&r), B[i] = rng_unif(&r);
    const int n = (int)N;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, A, n, B, n, 0.0, C, n);
    double best = 1e300;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = tick();
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, A, n, B, n, 0.0, C, n);
        best = fmin(best, tick() - t0);
    }
    free(A);
    free(B);
    free(C);
    return 2.0 * (double)N * (double)N * (double)N / best * 1e-9;
}

/* ------------------------------------------------------------------ timing the RHS */

typedef struct {
    gmf_sqloss *loss;
    gmf_flow *flow;
    double *ydot;
} rhs_ctx;

static void rhs_open(rhs_ctx *c, const problem *p, gmf_flow_kind kind) {
    int rc = gmf_sqloss_new(&c->loss, p->n, p->d, p->X, p->y);
    if (rc) die("gmf_sqloss_new", rc);
    rc = gmf_flow_new(&c->flow, kind, p->K, gmf_sqloss_oracle(c->loss));
    if (rc) die("gmf_flow_new", rc);
    c->ydot = xcalloc(gmf_flow_dim(c->flow), sizeof(double));
}

static void rhs_close(rhs_ctx *c) {
    gmf_flow_free(c->flow);
    gmf_sqloss_free(c->loss);
    free(c->ydot);
}

/* Seconds per call of fn(arg): calibrate a batch to ~min_time / trials, run `trials` batches;
 * returns the best batch's mean and stores the median in *med (may be NULL). */
typedef void (*work_fn)(void *arg);

/* Batch size that makes one batch of fn(arg) take about `target` seconds (after a warm-up call:
 * allocations, page faults, OpenBLAS thread start). */
static long calibrate(work_fn fn, void *arg, double target) {
    fn(arg);
    long reps = 1;
    for (;;) {
        double t0 = tick();
        for (long i = 0; i < reps; i++)
            fn(arg);
        double dt = tick() - t0;
        if (dt >= 0.02 * target || reps > (1L << 30))
            return (long)fmax(1.0, ceil(target / fmax(dt / (double)reps, 1e-9)));
        reps *= 4;
    }
}

static double time_it(work_fn fn, void *arg, double min_time, int trials, double *med) {
    if (trials > 64) trials = 64;
    const long reps = calibrate(fn, arg, min_time / trials);
    double v[64];
    for (int t = 0; t < trials; t++) {
        double t0 = tick();
        for (long i = 0; i < reps; i++)
            fn(arg);
        v[t] = (tick() - t0) / (double)reps;
    }
    double best = v[0];
    for (int t = 1; t < trials; t++)
        best = fmin(best, v[t]);
    if (med) *med = median(v, (size_t)trials);
    return best;
}

/* Interleaved timing of m functions, so that machine noise hits them alike: `rounds` rounds in
 * each of which every function runs one batch of about min_time / (rounds m) seconds; t[j] is
 * function j's best batch mean. */
static void time_many(const work_fn *fn, void *const *arg, int m, double min_time, int rounds,
                      double *t) {
    long reps[8];
    for (int j = 0; j < m && j < 8; j++) {
        reps[j] = calibrate(fn[j], arg[j], min_time / (rounds * m));
        t[j] = 1e300;
    }
    for (int r = 0; r < rounds; r++)
        for (int j = 0; j < m && j < 8; j++) {
            double t0 = tick();
            for (long i = 0; i < reps[j]; i++)
                fn[j](arg[j]);
            t[j] = fmin(t[j], (tick() - t0) / (double)reps[j]);
        }
}

typedef struct {
    rhs_ctx *c;
    const double *y;
} rhs_call;

static void do_rhs(void *arg) {
    rhs_call *a = arg;
    int rc = gmf_flow_rhs(a->c->flow, a->y, a->c->ydot);
    if (rc) die("gmf_flow_rhs", rc);
}

static double time_rhs(const problem *p, gmf_flow_kind kind, double min_time, double *med) {
    rhs_ctx c;
    rhs_open(&c, p, kind);
    rhs_call a = {&c, kind == GMF_FLOW_BW ? p->ybw : p->yeu};
    double t = time_it(do_rhs, &a, min_time, 5, med);
    rhs_close(&c);
    return t;
}

/* ------------------------------------------------------------------ breakdown of one RHS
 *
 * The pieces of src/exact/sqloss.c's blocked pass re-run in isolation with the same shapes, the
 * same block rule and the same data (BW form): gemm    the two level-3 calls per block of nb
 * samples: T = X_b Rcat (nb x (K D + K) x d) and G += X_b^T T (d x K (D + 2) x nb) loops   the
 * fused hand loops per (sample, component): the s^2 dot (length d), then the row scaling and the
 * W^T z accumulation (length D) scalar  n K calls of gmf_gauss_scalars (sqrt, erfc, exp) on the
 * real m, s^2, c_0 and the remainder of the full RHS ("rest": residuals, the copy-out in
 * component(), flow.c's symmetrization and finiteness check, and cache effects). */

typedef struct {
    const problem *p;
    size_t nb, ld;
    double *Rcat, *T, *G, *H0, *m, *s2, *c0, zq, z, sink;
    gmf_gauss_point *pts;
} bd_ctx;

/* Samples per block: the rule of src/exact/sqloss.c (a tile of about 256 KiB, at least 32 rows). */
static size_t block_rows(size_t n, size_t ld) {
    size_t nb = (256 * 1024 / 8) / ld;
    if (nb < 32) nb = 32;
    return nb < n ? nb : n;
}

static void bd_gemm(void *arg) {
    bd_ctx *b = arg;
    const problem *p = b->p;
    const size_t n = p->n, d = p->d, KK = p->K * p->D + p->K;
    for (size_t i0 = 0; i0 < n; i0 += b->nb) {
        const size_t nb = i0 + b->nb <= n ? b->nb : n - i0;
        const double *Xb = p->X + i0 * d;
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nb, (int)KK, (int)d, 1.0, Xb,
                    (int)d, b->Rcat, (int)KK, 0.0, b->T, (int)b->ld);
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)b->ld, (int)nb, 1.0, Xb,
                    (int)d, b->T, (int)b->ld, i0 ? 1.0 : 0.0, b->G, (int)b->ld);
    }
}

static void bd_loops(void *arg) {
    bd_ctx *b = arg;
    const problem *p = b->p;
    const size_t n = p->n, d = p->d, D = p->D, K = p->K;
    const double zq = b->zq, z = b->z; /* 1 and 1e-300: the tile does not drift */
    double acc = 0.0;
    for (size_t i0 = 0; i0 < n; i0 += b->nb) {
        const size_t nb = i0 + b->nb <= n ? b->nb : n - i0;
        for (size_t ii = 0; ii < nb; ii++) {
            const double *x = p->X + (i0 + ii) * d;
            double *t = b->T + ii * b->ld;
            for (size_t k = 0; k < K; k++) {
                const double *w = t + k * D;
                double s2 = 0.0;
                for (size_t j = 0; j < d; j++)
                    s2 += x[j] * w[j + 1];
                acc += s2;
            }
            for (size_t k = 0; k < K; k++) {
                double *w = t + k * D, *h0 = b->H0 + k * D;
                for (size_t c = 0; c < D; c++) {
                    h0[c] += z * w[c];
                    w[c] *= zq;
                }
            }
        }
    }
    b->sink += acc;
}

static void bd_scalar(void *arg) {
    bd_ctx *b = arg;
    const problem *p = b->p;
    const size_t n = p->n, K = p->K;
    for (size_t k = 0; k < K; k++) {
        double mu_w = p->ybw[k * p->D];
        for (size_t i = 0; i < n; i++)
            gmf_gauss_scalars(b->m[i * K + k], b->s2[k * n + i], b->c0[k * n + i], mu_w,
                              &b->pts[k * n + i]);
    }
}

typedef struct {
    double total, gemm, loops, scalar;
} breakdown_t;

static breakdown_t breakdown(const problem *p, double min_time) {
    const size_t n = p->n, d = p->d, D = p->D, K = p->K, KD = K * D, KK = KD + K;
    const double *Sig = p->ybw + KD;
    bd_ctx b = {.p = p, .ld = K * (D + 2), .zq = 1.0, .z = 1e-300};
    b.nb = block_rows(n, b.ld);
    b.Rcat = xcalloc(d * KK, sizeof(double));
    b.T = xcalloc(b.nb * b.ld, sizeof(double));
    b.G = xcalloc(d * b.ld, sizeof(double));
    b.H0 = xcalloc(KD, sizeof(double));
    b.m = xcalloc(n * K, sizeof(double));
    b.s2 = xcalloc(n * K, sizeof(double));
    b.c0 = xcalloc(n * K, sizeof(double));
    b.pts = xcalloc(n * K, sizeof(gmf_gauss_point));
    for (size_t j = 0; j < d; j++)
        for (size_t k = 0; k < K; k++) {
            memcpy(b.Rcat + j * KK + k * D, Sig + k * D * D + (j + 1) * D, D * sizeof(double));
            b.Rcat[j * KK + KD + k] = p->ybw[k * D + j + 1];
        }
    /* the real m, s^2 and c_0 for bd_scalar, block by block */
    for (size_t i0 = 0; i0 < n; i0 += b.nb) {
        const size_t nb = i0 + b.nb <= n ? b.nb : n - i0;
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nb, (int)KK, (int)d, 1.0,
                    p->X + i0 * d, (int)d, b.Rcat, (int)KK, 0.0, b.T, (int)b.ld);
        for (size_t ii = 0; ii < nb; ii++) {
            const size_t i = i0 + ii;
            const double *t = b.T + ii * b.ld, *x = p->X + i * d;
            for (size_t k = 0; k < K; k++) {
                double s2 = 0.0;
                for (size_t j = 0; j < d; j++)
                    s2 += x[j] * t[k * D + j + 1];
                b.m[i * K + k] = t[KD + k];
                b.s2[k * n + i] = s2;
                b.c0[k * n + i] = t[k * D];
            }
        }
    }
    rhs_ctx c;
    rhs_open(&c, p, GMF_FLOW_BW);
    rhs_call a = {&c, p->ybw};
    const work_fn fns[4] = {do_rhs, bd_gemm, bd_loops, bd_scalar};
    void *const args[4] = {&a, &b, &b, &b};
    double t[4];
    time_many(fns, args, 4, 4 * min_time, 5, t);
    rhs_close(&c);
    breakdown_t r = {.total = t[0], .gemm = t[1], .loops = t[2], .scalar = t[3]};
    free(b.Rcat), free(b.T), free(b.G), free(b.H0), free(b.m), free(b.s2), free(b.c0), free(b.pts);
    return r;
}

/* ------------------------------------------------------------------ the previous oracle
 *
 * tests/sqloss_old.h: the per-component implementation src/exact/sqloss.c had before the blocked
 * pass (docs/PERFORMANCE.md, P1), timed beside the library to measure the change honestly. */

typedef struct {
    gmf_flow *flow;
    const double *y;
    double *ydot;
} flow_call;

static void do_flow(void *arg) {
    flow_call *a = arg;
    int rc = gmf_flow_rhs(a->flow, a->y, a->ydot);
    if (rc) die("gmf_flow_rhs (old oracle)", rc);
}

/* Time the library RHS and the old oracle's side by side (interleaved batches); return the max
 * relative difference of their outputs (normwise, over the whole state) in *diff. */
static void old_compare(const problem *pb, gmf_flow_kind kind, double min_time, double *t_new,
                        double *t_old, double *diff) {
    sqold od;
    sqold_init(&od, pb->n, pb->d, pb->X, pb->y);
    gmf_flow *fl;
    int rc = gmf_flow_new(&fl, kind, pb->K, sqold_oracle(&od));
    if (rc) die("gmf_flow_new (old oracle)", rc);
    const size_t N = gmf_flow_dim(fl);
    const double *y = kind == GMF_FLOW_BW ? pb->ybw : pb->yeu;
    double *ydot = xcalloc(N, sizeof(double));
    flow_call a = {fl, y, ydot};
    rhs_ctx c;
    rhs_open(&c, pb, kind);
    rhs_call b = {&c, y};
    do_rhs(&b);
    do_flow(&a);
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < N; i++) {
        num = fmax(num, fabs(ydot[i] - c.ydot[i]));
        den = fmax(den, fabs(ydot[i]));
    }
    *diff = num / den;
    const work_fn fns[2] = {do_rhs, do_flow};
    void *const args[2] = {&b, &a};
    double t[2];
    time_many(fns, args, 2, 2 * min_time, 6, t);
    *t_new = t[0], *t_old = t[1];
    rhs_close(&c);
    gmf_flow_free(fl);
    free(ydot);
    sqold_free(&od);
}

/* ------------------------------------------------------------------ least squares on log-log */

/* Slope and intercept of log t = a + b log x. */
static double fit_exponent(const double *x, const double *t, size_t m, double *intercept) {
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (size_t i = 0; i < m; i++) {
        double lx = log(x[i]), ly = log(t[i]);
        sx += lx, sy += ly, sxx += lx * lx, sxy += lx * ly;
    }
    double b = (m * sxy - sx * sy) / (m * sxx - sx * sx);
    if (intercept) *intercept = (sy - b * sx) / (double)m;
    return b;
}

/* ------------------------------------------------------------------ options */

typedef struct {
    size_t n, d, K;
} size3;

typedef struct {
    size3 sizes[32];
    size_t nsizes;
    int threads[8];
    size_t nthreads;
    double min_time;
    int sweep, breakdown, old, quick;
    size_t gemm_n;
    const char *out, *sweep_out, *old_out;
    uint64_t seed;
    double gamma;
} rhs_opts;

static int parse_list_int(const char *s, int *v, size_t cap, size_t *count) {
    *count = 0;
    while (*s && *count < cap) {
        char *end;
        long x = strtol(s, &end, 10);
        if (end == s || x < 1) return -1;
        v[(*count)++] = (int)x;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return *count ? 0 : -1;
}

static void usage(FILE *f) {
    fputs("usage: bench_rhs [rhs] [--size n,d,K]... [--threads 1,2] [--min-time S] [--quick]\n"
          "                 [--no-sweep] [--no-breakdown] [--no-old]\n"
          "                 [--gemm N] [--out-dir DIR | --in-repo]\n"
          "                 [--out CSV] [--sweep-out CSV] [--old-out CSV]\n"
          "                 [--seed S] [--gamma G]\n"
          "       bench_rhs flow --dir DIR [--n N] [--d d] [--K K] [--T T] [--method M]\n"
          "                 [--rtol R] [--atol A] [--h0 H|auto|fixed] [--oracle new|old]\n"
          "                 [--gsl-norm max|rms]\n"
          "                 [--threads T] [--repeat R]\n"
          "                 [--tag NAME] [--seed S] [--gamma G]\n"
          "rhs:  times gmf_flow_rhs (BW and Euclidean forms) at each size (default\n"
          "      1000,10,5  2000,100,5  10000,50,10) and OpenBLAS thread count (default 1,2),\n"
          "      against the theoretical peak and a measured DGEMM peak (N = 2000); then the\n"
          "      previous (per-component) oracle timed beside the library's, a breakdown of one\n"
          "      RHS, and a cost sweep over n, D and K (library and previous oracle) with fitted\n"
          "      exponents.  CSVs: rhs.csv, rhs_old_vs_new.csv, rhs_sweep.csv (*_quick.csv with\n"
          "      --quick) in --out-dir DIR (created if missing), by default\n"
          "      ${TMPDIR:-/tmp}/gmflow_bench_rhs_<UTC date> (outside the repository);\n"
          "      --in-repo: DIR = bench/results, which must exist in the current directory (run\n"
          "      from the repository root); --out, --sweep-out, --old-out name one file each.\n"
          "      --min-time: seconds per measurement (0.3);\n"
          "      --quick: 0.05 s per measurement, DGEMM N = 1000, a shorter sweep.\n"
          "flow: writes DIR/{X,y,mu0,Sigma0}.npy and the RHS at the start (DIR/rhs_c.npy),\n"
          "      integrates the BW flow (Theorem 4) from 0 to T (default 1) with METHOD (adams,\n"
          "      bdf, rk8pd, rkf45; default rk8pd; rtol 1e-8, atol 1e-10), best of up to\n"
          "      --repeat runs (stopping after 2 s), writes DIR/{mu,Sigma}_<tag>.npy (tag\n"
          "      default c_<method>) and prints one RESULT line.  --h0: auto or 0 = the\n"
          "      library's choice (for rk8pd/rkf45 the Hairer-Norsett-Wanner estimate, whose two\n"
          "      RHS calls are in nfev); fixed = 1e-6 max(1, T), the library's rule before it.\n"
          "      --oracle old: the previous per-component squared-loss oracle "
          "(tests/sqloss_old.h).\n"
          "      --gsl-norm: rk8pd/rkf45's error norm, max (GSL's control, default) or rms.\n",
          f);
}

static int parse_size(const char *s, size3 *z) {
    char *e1, *e2, *e3;
    long n = strtol(s, &e1, 10);
    if (*e1 != ',') return -1;
    long d = strtol(e1 + 1, &e2, 10);
    if (*e2 != ',') return -1;
    long K = strtol(e2 + 1, &e3, 10);
    if (*e3 || n < 1 || d < 1 || K < 1) return -1;
    z->n = (size_t)n, z->d = (size_t)d, z->K = (size_t)K;
    return 0;
}

/* ------------------------------------------------------------------ rhs mode */

static FILE *open_csv(const char *path, const char *header) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "bench_rhs: cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
    fprintf(f, "%s\n", header);
    return f;
}

/* One sweep series: the library RHS and the previous oracle, interleaved, at each point (BW
 * form); tl = library, tp = previous. */
static void sweep_series(FILE *csv, const char *var, const size3 *pts, size_t m, double min_time,
                         uint64_t seed, double gamma, double *tl, double *tp) {
    for (size_t i = 0; i < m; i++) {
        problem p;
        problem_make(&p, pts[i].n, pts[i].d, pts[i].K, gamma, seed);
        double diff;
        old_compare(&p, GMF_FLOW_BW, min_time, &tl[i], &tp[i], &diff);
        const double F = flops_rhs(GMF_FLOW_BW, p.n, p.d, p.K);
        printf("  %-2s %6zu %4zu %4zu %4zu  %10.3f %10.3f %8.2f %8.2f\n", var, p.n, p.d, p.D, p.K,
               tl[i] * 1e6, tp[i] * 1e6, F / tl[i] * 1e-9, F / tp[i] * 1e-9);
        fprintf(csv, "%s,%zu,%zu,%zu,%zu,%.6e,%.6e,%.4f,%.4f\n", var, p.n, p.d, p.D, p.K, tl[i],
                tp[i], F / tl[i] * 1e-9, F / tp[i] * 1e-9);
        fflush(stdout);
        problem_free(&p);
    }
}

typedef struct {
    double n, D, D_hi, K; /* exponents */
    double a, b;          /* t = n K (a + b d D) */
} fit_t;

static fit_t fit_sweep(const size3 *pts[3], const double *t[3], size_t m) {
    fit_t f;
    double x[3][6];
    for (size_t i = 0; i < m; i++) {
        x[0][i] = (double)pts[0][i].n;
        x[1][i] = (double)pts[1][i].d + 1.0;
        x[2][i] = (double)pts[2][i].K;
    }
    f.n = fit_exponent(x[0], t[0], m, NULL);
    f.D = fit_exponent(x[1], t[1], m, NULL);
    f.D_hi = fit_exponent(x[1] + m - 3, t[1] + m - 3, 3, NULL);
    f.K = fit_exponent(x[2], t[2], m, NULL);
    /* Two-term model over all points, least squares on the relative error (rows divided by t) */
    double s11 = 0, s12 = 0, s22 = 0, r1 = 0, r2 = 0;
    for (int j = 0; j < 3; j++)
        for (size_t i = 0; i < m; i++) {
            const size3 z = pts[j][i];
            double u = (double)(z.n * z.K) / t[j][i], v = u * (double)(z.d * (z.d + 1));
            s11 += u * u, s12 += u * v, s22 += v * v, r1 += u, r2 += v;
        }
    double det = s11 * s22 - s12 * s12;
    f.a = (r1 * s22 - r2 * s12) / det;
    f.b = (s11 * r2 - s12 * r1) / det;
    return f;
}

/* /proc/loadavg: the machine is shared, so say how busy it was. */
static void print_load(const char *when) {
    char buf[128] = "?";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (!fgets(buf, sizeof buf, f)) strcpy(buf, "?");
        fclose(f);
    }
    buf[strcspn(buf, "\n")] = 0;
    printf("%s: %s (1, 5, 15 min; running/total; last pid)\n", when, buf);
}

static int run_rhs(rhs_opts *o) {
    cpu_t cpu;
    cpu_probe(&cpu);
    const double ghz = cpu.mhz * 1e-3;
    printf("# gmflow RHS benchmark\n");
    printf("cpu: %s (%s family %d), %d cores online, cpu MHz %.0f (nominal, from /proc/cpuinfo;"
           " turbo and throttling not seen)\n",
           cpu.model, cpu.vendor, cpu.family, cpu.cores, cpu.mhz);
    printf("openblas: %s, core %s\n", openblas_get_config(), openblas_get_corename());
    print_load("load average at the start");
    printf("theoretical DP peak, flag rule (%s: %d flop/cycle/core): %.1f GFLOP/s per core\n",
           cpu.isa, cpu.fpc, cpu.fpc * ghz);
    if (cpu.fpc_uarch != cpu.fpc)
        printf("  (this is Zen 4: 512-bit FMAs issue as 2 x 256 bits, so the micro-architectural "
               "peak is %d flop/cycle/core = %.1f GFLOP/s per core)\n",
               cpu.fpc_uarch, cpu.fpc_uarch * ghz);

    FILE *csv = open_csv(o->out, "form,threads,n,d,D,K,sec_per_eval,sec_per_eval_median,"
                                 "evals_per_s,gflop_per_eval,gflops,peak_theory_gflops,"
                                 "peak_uarch_gflops,dgemm_gflops,frac_theory,frac_uarch,"
                                 "frac_dgemm");
    double dg1 = 0.0; /* DGEMM GFLOP/s per thread at the first thread count */
    for (size_t ti = 0; ti < o->nthreads; ti++) {
        const int th = o->threads[ti];
        openblas_set_num_threads(th);
        g_cpu_clock = th == 1;
        const double peak_t = cpu.fpc * ghz * th, peak_u = cpu.fpc_uarch * ghz * th;
        const double dg = dgemm_peak(o->gemm_n);
        printf("\n## OpenBLAS threads = %d (timed by %s)\n", th, clock_name());
        printf("measured DGEMM %zu^3: %.1f GFLOP/s = %.0f%% of flag-rule peak %.1f, %.0f%% of "
               "micro-architectural peak %.1f\n",
               o->gemm_n, dg, 100 * dg / peak_t, peak_t, 100 * dg / peak_u, peak_u);
        if (dg > peak_u)
            printf("  (above the micro-architectural peak at the nominal clock: the cores run at "
                   ">= %.2f GHz, i.e. boost; the %% columns use the nominal clock)\n",
                   dg / (cpu.fpc_uarch * th));
        if (ti == 0)
            dg1 = dg / th;
        else
            printf("  DGEMM speedup over %d thread(s): %.2fx for %dx the threads; well below that "
                   "means another process holds a core and these rows understate\n",
                   o->threads[0], dg / (dg1 * o->threads[0]), th / o->threads[0]);
        printf("%-6s %6s %4s %4s %4s %11s %11s %10s %9s %8s %7s %7s %7s\n", "form", "n", "d", "D",
               "K", "us/eval", "us(median)", "evals/s", "GFLOP/ev", "GFLOP/s", "%theo", "%uarch",
               "%dgemm");
        for (size_t si = 0; si < o->nsizes; si++) {
            problem p;
            problem_make(&p, o->sizes[si].n, o->sizes[si].d, o->sizes[si].K, o->gamma, o->seed);
            for (int form = 0; form < 2; form++) {
                gmf_flow_kind kind = form ? GMF_FLOW_EUCLID : GMF_FLOW_BW;
                double med, t = time_rhs(&p, kind, o->min_time, &med);
                double F = flops_rhs(kind, p.n, p.d, p.K), gf = F / t * 1e-9;
                const char *name = form ? "euclid" : "bw";
                printf("%-6s %6zu %4zu %4zu %4zu %11.2f %11.2f %10.1f %9.4f %8.2f %6.1f%% "
                       "%6.1f%% %6.1f%%\n",
                       name, p.n, p.d, p.D, p.K, t * 1e6, med * 1e6, 1.0 / t, F * 1e-9, gf,
                       100 * gf / peak_t, 100 * gf / peak_u, 100 * gf / dg);
                fprintf(csv,
                        "%s,%d,%zu,%zu,%zu,%zu,%.6e,%.6e,%.3f,%.6e,%.4f,%.3f,%.3f,%.3f,%.5f,%.5f,"
                        "%.5f\n",
                        name, th, p.n, p.d, p.D, p.K, t, med, 1.0 / t, F * 1e-9, gf, peak_t, peak_u,
                        dg, gf / peak_t, gf / peak_u, gf / dg);
                fflush(stdout);
            }
            problem_free(&p);
        }
    }
    fclose(csv);
    printf("\nwrote %s\n", o->out);

    if (o->old) {
        printf("\n## Library (blocked pass, batched GEMMs) vs the previous per-component oracle "
               "(tests/sqloss_old.h), timed interleaved; speedup = old / new\n");
        printf("%-6s %3s %6s %4s %4s %12s %12s %8s %12s\n", "form", "thr", "n", "d", "K",
               "old us/eval", "new us/eval", "speedup", "max rel diff");
        FILE *pc = open_csv(o->old_out, "form,threads,n,d,D,K,sec_old,sec_new,speedup,"
                                        "max_rel_diff");
        for (size_t ti = 0; ti < o->nthreads; ti++) {
            openblas_set_num_threads(o->threads[ti]);
            g_cpu_clock = o->threads[ti] == 1;
            for (size_t si = 0; si < o->nsizes; si++) {
                problem p;
                problem_make(&p, o->sizes[si].n, o->sizes[si].d, o->sizes[si].K, o->gamma, o->seed);
                for (int form = 0; form < 2; form++) {
                    gmf_flow_kind kind = form ? GMF_FLOW_EUCLID : GMF_FLOW_BW;
                    double tn, to, diff;
                    old_compare(&p, kind, o->min_time, &tn, &to, &diff);
                    const char *name = form ? "euclid" : "bw";
                    printf("%-6s %3d %6zu %4zu %4zu %12.2f %12.2f %7.2fx %12.2e\n", name,
                           o->threads[ti], p.n, p.d, p.K, to * 1e6, tn * 1e6, to / tn, diff);
                    fprintf(pc, "%s,%d,%zu,%zu,%zu,%zu,%.6e,%.6e,%.4f,%.3e\n", name, o->threads[ti],
                            p.n, p.d, p.D, p.K, to, tn, to / tn, diff);
                    fflush(stdout);
                }
                problem_free(&p);
            }
        }
        fclose(pc);
        printf("wrote %s\n", o->old_out);
    }

    openblas_set_num_threads(1);
    g_cpu_clock = 1;
    if (o->breakdown) {
        printf("\n## Where one BW RHS evaluation goes (OpenBLAS threads = 1; pieces of "
               "src/exact/sqloss.c's blocked pass re-run in isolation)\n");
        printf("%6s %4s %4s %4s %10s %16s %16s %16s %16s\n", "n", "d", "D", "K", "total us",
               "level-3 GEMM", "hand loops", "erfc/exp scalar", "rest");
        for (size_t si = 0; si < o->nsizes; si++) {
            problem p;
            problem_make(&p, o->sizes[si].n, o->sizes[si].d, o->sizes[si].K, o->gamma, o->seed);
            breakdown_t b = breakdown(&p, o->min_time);
            double rest = b.total - b.gemm - b.loops - b.scalar;
            printf("%6zu %4zu %4zu %4zu %10.1f %9.1f (%3.0f%%) %9.1f (%3.0f%%) %9.1f (%3.0f%%) "
                   "%9.1f (%3.0f%%)\n",
                   p.n, p.d, p.D, p.K, b.total * 1e6, b.gemm * 1e6, 100 * b.gemm / b.total,
                   b.loops * 1e6, 100 * b.loops / b.total, b.scalar * 1e6, 100 * b.scalar / b.total,
                   rest * 1e6, 100 * rest / b.total);
            printf("%28s GEMM alone: %.2f GFLOP/s; scalar closed forms: %.1f ns per (sample, "
                   "component)\n",
                   "", flops_rhs(GMF_FLOW_BW, p.n, p.d, p.K) / b.gemm * 1e-9,
                   b.scalar / (double)(p.n * p.K) * 1e9);
            problem_free(&p);
        }
    }

    if (o->sweep) {
        printf("\n## Cost vs size (BW form, OpenBLAS threads = 1; library RHS and the previous "
               "oracle, interleaved)\n");
        printf("  %-2s %6s %4s %4s %4s  %10s %10s %8s %8s\n", "", "n", "d", "D", "K", "lib us",
               "old us", "lib GF/s", "old GF/s");
        FILE *sc = open_csv(o->sweep_out, "vary,n,d,D,K,sec_lib,sec_old,gflops_lib,"
                                          "gflops_old");
        const size_t full_n[] = {500, 1000, 2000, 4000, 8000, 16000};
        const size_t full_d[] = {5, 10, 20, 50, 100, 200};
        const size_t full_K[] = {1, 2, 4, 8, 16, 32};
        const size_t m = o->quick ? 4 : 6;
        size3 pn[6], pd[6], pk[6];
        double tl[3][6], tp[3][6];
        for (size_t i = 0; i < m; i++) {
            pn[i] = (size3){full_n[i], 20, 5};
            pd[i] = (size3){2000, full_d[i], 5};
            pk[i] = (size3){2000, 20, full_K[i]};
        }
        sweep_series(sc, "n", pn, m, o->min_time, o->seed, o->gamma, tl[0], tp[0]);
        sweep_series(sc, "D", pd, m, o->min_time, o->seed, o->gamma, tl[1], tp[1]);
        sweep_series(sc, "K", pk, m, o->min_time, o->seed, o->gamma, tl[2], tp[2]);
        const size3 *pts[3] = {pn, pd, pk};
        const double *tlp[3] = {tl[0], tl[1], tl[2]}, *tpp[3] = {tp[0], tp[1], tp[2]};
        const fit_t fl = fit_sweep(pts, tlp, m), fp = fit_sweep(pts, tpp, m);
        printf("fitted exponents (least squares on log-log)      library  previous\n");
        printf("  n (n = %zu..%zu, d = 20, K = 5; expected ~1)    %7.3f  %9.3f\n", pn[0].n,
               pn[m - 1].n, fl.n, fp.n);
        printf("  D (D = %zu..%zu, n = 2000, K = 5)                 %7.3f  %9.3f\n", pd[0].d + 1,
               pd[m - 1].d + 1, fl.D, fp.D);
        printf("  D, largest three (D = %zu..%zu; expected -> 2)   %7.3f  %9.3f\n", pd[m - 3].d + 1,
               pd[m - 1].d + 1, fl.D_hi, fp.D_hi);
        printf("  K (K = %zu..%zu, n = 2000, d = 20; expected ~1)    %7.3f  %9.3f\n", pk[0].K,
               pk[m - 1].K, fl.K, fp.K);
        printf("two-term model t = n K (a + b d D), fitted over all points:\n");
        printf("  library:   a = %5.1f ns per (sample, component), b = %.4f ns per n d D unit "
               "(%.1f GFLOP/s on the 4 n d D GEMM flops)\n",
               fl.a * 1e9, fl.b * 1e9, 4.0 / (fl.b * 1e9));
        printf("  previous:  a = %5.1f ns per (sample, component), b = %.4f ns per n d D unit "
               "(%.1f GFLOP/s on the 4 n d D GEMM flops)\n",
               fp.a * 1e9, fp.b * 1e9, 4.0 / (fp.b * 1e9));
        fprintf(sc, "# exponents (library): n %.4f, D %.4f (largest three %.4f), K %.4f\n", fl.n,
                fl.D, fl.D_hi, fl.K);
        fprintf(sc, "# exponents (previous oracle): n %.4f, D %.4f (largest three %.4f), K %.4f\n",
                fp.n, fp.D, fp.D_hi, fp.K);
        fprintf(sc,
                "# model t = n K (a + b d D): library a %.4e s, b %.4e s; previous a %.4e s, "
                "b %.4e s\n",
                fl.a, fl.b, fp.a, fp.b);
        fclose(sc);
        printf("wrote %s\n", o->sweep_out);
    }
    print_load("load average at the end");
    return 0;
}

/* ------------------------------------------------------------------ flow mode */

static int write_npy(const char *path, const double *data, size_t ndim, const size_t *shape) {
    char dict[256], sh[128] = "";
    size_t total = 1, off = 0;
    for (size_t i = 0; i < ndim; i++) {
        off += (size_t)snprintf(sh + off, sizeof sh - off, "%zu%s", shape[i],
                                ndim == 1 ? "," : (i + 1 < ndim ? ", " : ""));
        total *= shape[i];
    }
    int len = snprintf(dict, sizeof dict,
                       "{'descr': '<f8', 'fortran_order': False, 'shape': (%s), }", sh);
    /* magic (6) + version (2) + header length (2) + dict + padding + '\n' = multiple of 64 */
    size_t hl = (size_t)len + 1, pad = (64 - (10 + hl) % 64) % 64;
    hl += pad;
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    unsigned char pre[10] = {
        0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hl & 0xff), (unsigned char)(hl >> 8)};
    fwrite(pre, 1, 10, f);
    fwrite(dict, 1, (size_t)len, f);
    for (size_t i = 0; i < pad; i++)
        fputc(' ', f);
    fputc('\n', f);
    size_t w = fwrite(data, sizeof(double), total, f); /* x86-64: little-endian */
    int bad = ferror(f) | (w != total);
    return (fclose(f) != 0 || bad) ? -1 : 0;
}

static void write_npy_or_die(const char *dir, const char *name, const double *data, size_t ndim,
                             const size_t *shape) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (write_npy(path, data, ndim, shape)) {
        fprintf(stderr, "bench_rhs: cannot write %s\n", path);
        exit(1);
    }
}

static int run_flow(int argc, char **argv) {
    size_t n = 1000, d = 10, K = 5;
    double T = 1.0, rtol = 1e-8, atol = 1e-10, gamma = 0.5, h0 = 0.0;
    int h0_fixed = 0, use_old = 0;
    const char *method = "rk8pd", *dir = NULL, *tag = NULL;
    int threads = 1, repeat = 1;
    gmf_ode_norm gsl_norm = GMF_ODE_NORM_MAX;
    uint64_t seed = 1;
    for (int i = 0; i < argc; i += 2) { /* every flow option takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "bench_rhs flow: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--n"))
            n = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--d"))
            d = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--K"))
            K = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--T"))
            T = atof(v);
        else if (!strcmp(a, "--rtol"))
            rtol = atof(v);
        else if (!strcmp(a, "--atol"))
            atol = atof(v);
        else if (!strcmp(a, "--h0")) {
            h0_fixed = !strcmp(v, "fixed");
            h0 = (h0_fixed || !strcmp(v, "auto")) ? 0.0 : atof(v);
        } else if (!strcmp(a, "--oracle")) {
            if (strcmp(v, "new") && strcmp(v, "old")) {
                fprintf(stderr, "bench_rhs flow: --oracle new or old\n");
                return 2;
            }
            use_old = !strcmp(v, "old");
        } else if (!strcmp(a, "--gsl-norm")) {
            if (gmf_ode_norm_parse(v, &gsl_norm)) {
                fprintf(stderr, "bench_rhs flow: --gsl-norm: %s\n", gmf_errmsg());
                return 2;
            }
        } else if (!strcmp(a, "--gamma"))
            gamma = atof(v);
        else if (!strcmp(a, "--method"))
            method = v;
        else if (!strcmp(a, "--dir"))
            dir = v;
        else if (!strcmp(a, "--tag"))
            tag = v;
        else if (!strcmp(a, "--threads"))
            threads = atoi(v);
        else if (!strcmp(a, "--repeat"))
            repeat = atoi(v);
        else if (!strcmp(a, "--seed"))
            seed = strtoull(v, NULL, 10);
        else {
            fprintf(stderr, "bench_rhs flow: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    gmf_ode_method m = GMF_ODE_AUTO;
    const int bad_method = gmf_ode_method_parse(method, &m) != GMF_OK;
    if (!dir || bad_method || n < 1 || d < 1 || K < 1 || !(T > 0) || threads < 1 || repeat < 1) {
        fprintf(stderr, "bench_rhs flow: need --dir, a known --method and positive sizes\n");
        return 2;
    }
    mkdir(dir, 0777);
    openblas_set_num_threads(threads);
    g_cpu_clock = threads == 1;
    problem p;
    problem_make(&p, n, d, K, gamma, seed);
    const size_t D = p.D, N = K * (D + D * D);
    size_t sX[2] = {n, d}, sy[1] = {n}, smu[2] = {K, D}, sS[3] = {K, D, D};
    write_npy_or_die(dir, "X.npy", p.X, 2, sX);
    write_npy_or_die(dir, "y.npy", p.y, 1, sy);
    write_npy_or_die(dir, "mu0.npy", p.ybw, 2, smu);
    write_npy_or_die(dir, "Sigma0.npy", p.ybw + K * D, 3, sS);

    rhs_ctx c;
    rhs_open(&c, &p, GMF_FLOW_BW);
    sqold od;
    sqold_init(&od, p.n, p.d, p.X, p.y);
    int rc;
    if (use_old) { /* the same flow over the previous oracle */
        gmf_flow_free(c.flow);
        rc = gmf_flow_new(&c.flow, GMF_FLOW_BW, K, sqold_oracle(&od));
        if (rc) die("gmf_flow_new (old oracle)", rc);
    }
    double loss0, lossT;
    rc = gmf_flow_loss(c.flow, p.ybw, &loss0);
    if (rc) die("gmf_flow_loss", rc);
    rc = gmf_flow_rhs(c.flow, p.ybw, c.ydot); /* for cross-checking the NumPy RHS */
    if (rc) die("gmf_flow_rhs", rc);
    size_t sN[1] = {N};
    write_npy_or_die(dir, "rhs_c.npy", c.ydot, 1, sN);
    gmf_ode_opts o = gmf_ode_defaults();
    o.method = (gmf_ode_method)m;
    o.rtol = rtol;
    o.atol = atol;
    o.gsl_norm = (int)gsl_norm;
    o.max_steps = 10000000;
    /* 0: the library's choice (its estimate's RHS calls are in st.nfevals and in the times);
     * fixed: src/exact/ode.c's rule before the estimate, 1e-6 max(1, T) */
    o.h0 = h0_fixed ? 1e-6 * fmax(1.0, T) : h0;
    const double tout[2] = {0.0, T};
    double *y = xcalloc(N, sizeof(double));
    gmf_ode_stats st;
    double best = 1e300, best_cpu = 1e300, spent = 0.0;
    for (int r = 0; r < repeat && spent <= 2.0; r++) { /* up to --repeat runs, stop after 2 s */
        memcpy(y, p.ybw, N * sizeof(double));
        const double t0 = now(), c0 = cpu_now();
        rc = gmf_ode_solve(N, gmf_flow_ode_rhs, c.flow, y, tout, 2, &o, NULL, NULL, &st);
        const double dt = now() - t0, dc = cpu_now() - c0;
        if (rc) die("gmf_ode_solve", rc);
        best = fmin(best, dt);
        best_cpu = fmin(best_cpu, dc);
        spent += dt;
    }
    rc = gmf_flow_loss(c.flow, y, &lossT);
    if (rc) die("gmf_flow_loss", rc);
    /* the RHS alone, at the final state, to split integrator overhead from RHS time */
    rhs_call a = {&c, y};
    double t_rhs = time_it(do_rhs, &a, 0.2, 3, NULL);
    char name[256];
    snprintf(name, sizeof name, "mu_%s%s.npy", tag ? "" : "c_", tag ? tag : method);
    write_npy_or_die(dir, name, y, 2, smu);
    snprintf(name, sizeof name, "Sigma_%s%s.npy", tag ? "" : "c_", tag ? tag : method);
    write_npy_or_die(dir, name, y + K * D, 3, sS);
    /* h0=0: the library chose it (for rk8pd/rkf45 the estimate, counted in nfev) */
    printf("RESULT impl=gmflow method=%s n=%zu d=%zu K=%zu T=%g rtol=%g atol=%g threads=%d "
           "wall_s=%.6e cpu_s=%.6e nfev=%ld nsteps=%ld netfails=%ld rhs_s=%.6e loss0=%.10g "
           "lossT=%.10g h0=%.3e oracle=%s gsl_norm=%s\n",
           method, n, d, K, T, rtol, atol, threads, best, best_cpu, st.nfevals, st.nsteps,
           st.netfails, t_rhs, loss0, lossT, o.h0, use_old ? "old" : "new",
           gmf_ode_norm_name(gsl_norm));
    free(y);
    rhs_close(&c);
    sqold_free(&od);
    problem_free(&p);
    return 0;
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv) {
    int a0 = 1;
    if (argc > 1 && !strcmp(argv[1], "flow")) return run_flow(argc - 2, argv + 2);
    if (argc > 1 && !strcmp(argv[1], "rhs")) a0 = 2;
    rhs_opts o = {.nthreads = 2,
                  .threads = {1, 2},
                  .min_time = 0.3,
                  .sweep = 1,
                  .breakdown = 1,
                  .old = 1,
                  .gemm_n = 2000,
                  .seed = 1,
                  .gamma = 0.5};
    int gemm_set = 0, mt_set = 0, in_repo = 0;
    const char *out_dir = NULL;
    for (int i = a0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--no-sweep"))
            o.sweep = 0;
        else if (!strcmp(a, "--no-breakdown"))
            o.breakdown = 0;
        else if (!strcmp(a, "--no-old"))
            o.old = 0;
        else if (!strcmp(a, "--quick"))
            o.quick = 1;
        else if (!strcmp(a, "--in-repo"))
            in_repo = 1;
        else if (!v)
            bad = 1;
        else if (!strcmp(a, "--size")) {
            if (o.nsizes >= 32 || parse_size(v, &o.sizes[o.nsizes++])) bad = 1;
            i++;
        } else if (!strcmp(a, "--threads")) {
            bad = parse_list_int(v, o.threads, 8, &o.nthreads);
            i++;
        } else if (!strcmp(a, "--min-time")) {
            o.min_time = atof(v), mt_set = 1, bad = !(o.min_time > 0);
            i++;
        } else if (!strcmp(a, "--gemm")) {
            o.gemm_n = strtoul(v, NULL, 10), gemm_set = 1, bad = o.gemm_n < 1;
            i++;
        } else if (!strcmp(a, "--out-dir"))
            out_dir = v, bad = !*v, i++;
        else if (!strcmp(a, "--out"))
            o.out = v, i++;
        else if (!strcmp(a, "--sweep-out"))
            o.sweep_out = v, i++;
        else if (!strcmp(a, "--old-out"))
            o.old_out = v, i++;
        else if (!strcmp(a, "--seed"))
            o.seed = strtoull(v, NULL, 10), i++;
        else if (!strcmp(a, "--gamma"))
            o.gamma = atof(v), i++;
        else
            bad = 1;
        if (bad) {
            fprintf(stderr, "bench_rhs: bad option or value: %s %s\n", a, v ? v : "");
            usage(stderr);
            return 2;
        }
    }
    if (o.nsizes == 0) {
        o.sizes[0] = (size3){1000, 10, 5};
        o.sizes[1] = (size3){2000, 100, 5};
        o.sizes[2] = (size3){10000, 50, 10};
        o.nsizes = 3;
    }
    if (o.quick) {
        if (!mt_set) o.min_time = 0.05;
        if (!gemm_set) o.gemm_n = 1000;
    }
    if (in_repo && out_dir) {
        fprintf(stderr, "bench_rhs: --in-repo and --out-dir %s: choose one\n", out_dir);
        return 2;
    }
    /* the CSVs' directory: outside the repository unless asked (a quick run keeps the full
     * run's CSVs: *_quick.csv); --in-repo writes into the repository's existing bench/results
     * (relative to the current directory: run from the repository root), never creates it */
    static char dir[1024], paths[3][1100];
    if (in_repo) {
        struct stat st;
        out_dir = "bench/results";
        if (stat(out_dir, &st) || !S_ISDIR(st.st_mode)) {
            fprintf(stderr,
                    "bench_rhs: --in-repo: %s: no such directory (run from the repository "
                    "root)\n",
                    out_dir);
            return 1;
        }
    } else if (!out_dir) {
        const char *tmp = getenv("TMPDIR");
        if (!tmp || !*tmp) tmp = "/tmp";
        char stamp[32];
        const time_t now = time(NULL);
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", gmtime(&now)); /* UTC, as date -u */
        const int len = snprintf(dir, sizeof dir, "%s/gmflow_bench_rhs_%s", tmp, stamp);
        if (len < 0 || (size_t)len >= sizeof dir) {
            fprintf(stderr, "bench_rhs: TMPDIR too long for the output directory: %s\n", tmp);
            return 1;
        }
        out_dir = dir;
    }
    const char *names[3] = {"rhs", "rhs_sweep", "rhs_old_vs_new"};
    const char **dest[3] = {&o.out, &o.sweep_out, &o.old_out};
    int need_dir = 0;
    for (int k = 0; k < 3; k++)
        if (!*dest[k]) {
            const int len = snprintf(paths[k], sizeof paths[k], "%s/%s%s.csv", out_dir, names[k],
                                     o.quick ? "_quick" : "");
            if (len < 0 || (size_t)len >= sizeof paths[k]) {
                fprintf(stderr, "bench_rhs: output directory too long: %s\n", out_dir);
                return 1;
            }
            *dest[k] = paths[k], need_dir = !in_repo;
        }
    if (need_dir && mkdir(out_dir, 0777) && errno != EEXIST) {
        fprintf(stderr, "bench_rhs: cannot create %s: %s\n", out_dir, strerror(errno));
        return 1;
    }
    return run_rhs(&o);
}
