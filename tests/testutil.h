/* testutil.h -- small header-only helpers shared by the gmflow tests (everything is static).
 *
 * Include it from exactly one translation unit per test program.  Conventions:
 *
 *   CHECK(cond, fmt, ...)   evaluates cond; on failure prints "file:line: FAIL cond -- message"
 *                           to stderr, counts the failure and carries on (a message is required:
 *                           C11 needs at least one argument after cond).
 *   CHECK_CLOSE(got, want, rtol, atol, fmt, ...)
 *                           |got - want| <= atol + rtol |want|, both finite.
 *   return tu_finish("name");   last line of main: prints the check count and the failures and
 *                           returns 0 (pass) or 1 (fail).
 *
 *   tu_worst                a "worst figure so far" record (value plus a label) so that a test can
 *                           print its worst measured figure last, as the project asks.
 *
 * Linear-algebra helpers (row-major, n x n, LAPACKE):
 *   tu_rand_orthogonal      Haar-distributed orthogonal matrix (QR of a Gaussian matrix with the
 *                           signs of diag(R) folded in).
 *   tu_rand_spd             Q diag(lambda) Q^T with lambda geometrically spaced from `scale` down
 *                           to scale / cond (cond >= 1), so cond_2 = cond up to rounding.
 *   tu_rand_psd_rank        rank-r PSD matrix, optionally with a factor L (S = L L^T, n x n).
 *   tu_rand_psd_null        PSD matrix whose null space contains a given vector v (exactly in the
 *                           factor, to rounding in S), optionally with its factor.
 *   tu_psd_factor           L with S = L L^T: Cholesky when S is numerically PD, otherwise the
 *                           eigen-factor V diag(sqrt(max(lambda, 0))) (for singular S).
 *
 * Random numbers: tu_rng(seed) returns a GSL mt19937 generator (free it with gsl_rng_free).  The
 * environment variable GMF_TEST_SEED, when set, overrides the seed (for soak runs); every test
 * should print the seed it used (tu_seed()).  tu_rng_stream(r, k) restarts r on stream k so that
 * independent cases do not shift each other's random numbers.
 */
#ifndef GMFLOW_TESTUTIL_H
#define GMFLOW_TESTUTIL_H

#include <float.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <lapacke.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"

/* ---------------------------------------------------------------- checks and the summary */

/* A setup call that must succeed (a library call returning GMF_OK): on failure the test stops
 * with the call, its code and the library's message, exit status 1. */
#define TU_OK(call)                                                                                \
    do {                                                                                           \
        const int tu_rc_ = (call);                                                                 \
        if (tu_rc_) {                                                                              \
            fprintf(stderr, "%s:%d: %s failed (%d): %s\n", __FILE__, __LINE__, #call, tu_rc_,      \
                    gmf_errmsg());                                                                 \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static long tu_nchecks_ = 0;
static long tu_nfail_ = 0;

__attribute__((format(printf, 4, 5))) static inline void
tu_fail_(const char *file, int line, const char *expr, const char *fmt, ...) {
    va_list ap;
    tu_nfail_++;
    fprintf(stderr, "%s:%d: FAIL %s -- ", file, line, expr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        tu_nchecks_++;                                                                             \
        if (!(cond)) tu_fail_(__FILE__, __LINE__, #cond, __VA_ARGS__);                             \
    } while (0)

/* 1 if |got - want| <= atol + rtol |want| and both are finite. */
static inline int tu_close(double got, double want, double rtol, double atol) {
    return isfinite(got) && isfinite(want) && fabs(got - want) <= atol + rtol * fabs(want);
}

#define CHECK_CLOSE(got, want, rtol, atol, ...)                                                    \
    do {                                                                                           \
        double tu_g_ = (got), tu_w_ = (want);                                                      \
        tu_nchecks_++;                                                                             \
        if (!tu_close(tu_g_, tu_w_, (rtol), (atol))) {                                             \
            tu_fail_(__FILE__, __LINE__, #got " ~ " #want, __VA_ARGS__);                           \
            fprintf(stderr, "    got %.17g want %.17g (diff %.3g)\n", tu_g_, tu_w_,                \
                    tu_g_ - tu_w_);                                                                \
        }                                                                                          \
    } while (0)

/* Number of failures so far (for tests that want to stop early). */
static inline long tu_failures(void) {
    return tu_nfail_;
}

/* Print the summary line and return the exit status for main. */
static inline int tu_finish(const char *name) {
    if (tu_nfail_)
        printf("%s: FAIL (%ld of %ld checks failed)\n", name, tu_nfail_, tu_nchecks_);
    else
        printf("%s: ok (%ld checks)\n", name, tu_nchecks_);
    return tu_nfail_ ? 1 : 0;
}

/* ---------------------------------------------------------------- worst figure */

typedef struct tu_worst {
    double value;   /* largest value seen (starts at 0) */
    char what[200]; /* label of the value */
} tu_worst;

static inline void tu_worst_init(tu_worst *w) {
    w->value = 0.0;
    w->what[0] = '\0';
}

/* Record v if it is larger than the worst so far (NaN always counts as worse). */
__attribute__((format(printf, 3, 4))) static inline void tu_worst_update(tu_worst *w, double v,
                                                                         const char *fmt, ...) {
    if (!(v <= w->value) || (w->what[0] == '\0' && v == w->value)) {
        va_list ap;
        w->value = v;
        va_start(ap, fmt);
        vsnprintf(w->what, sizeof w->what, fmt, ap);
        va_end(ap);
    }
}

/* ---------------------------------------------------------------- scalar and vector errors */

/* |a - b| / max(|b|, floor): relative error with a floor for values near zero. */
static inline double tu_relerr(double a, double b, double floor) {
    double den = fabs(b) > floor ? fabs(b) : floor;
    if (a == b) return 0.0;
    return den > 0.0 ? fabs(a - b) / den : INFINITY;
}

static inline double tu_max_abs(const double *a, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        if (!(fabs(a[i]) <= m)) m = fabs(a[i]);
    return m;
}

static inline double tu_max_abs_diff(const double *a, const double *b, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        if (!(fabs(a[i] - b[i]) <= m)) m = fabs(a[i] - b[i]);
    return m;
}

/* Normwise relative difference max|a - b| / max(max|b|, floor). */
static inline double tu_vec_relerr(const double *a, const double *b, size_t n, double floor) {
    double den = tu_max_abs(b, n);
    if (den < floor) den = floor;
    double num = tu_max_abs_diff(a, b, n);
    if (num == 0.0) return 0.0;
    return den > 0.0 ? num / den : INFINITY;
}

static inline int tu_all_finite(const double *a, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(a[i])) return 0;
    return 1;
}

/* ---------------------------------------------------------------- random numbers */

static unsigned long tu_seed_ = 0;

/* GSL mt19937 seeded with `seed`, or with $GMF_TEST_SEED when that is set (the seed in use is
 * returned by tu_seed()). */
static inline gsl_rng *tu_rng(unsigned long seed) {
    const char *env = getenv("GMF_TEST_SEED");
    if (env && *env) seed = strtoul(env, NULL, 0);
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (!r) {
        fprintf(stderr, "tu_rng: out of memory\n");
        exit(2);
    }
    tu_seed_ = seed;
    gsl_rng_set(r, seed);
    return r;
}

static inline unsigned long tu_seed(void) {
    return tu_seed_;
}

/* Restart r on stream k (seed + k): call it at the start of each independent case so that a case
 * does not depend on how many numbers earlier cases drew (which can vary with the platform's
 * rounding, e.g. in retry loops). */
static inline void tu_rng_stream(gsl_rng *r, unsigned long k) {
    gsl_rng_set(r, tu_seed_ + k);
}

/* v[i] ~ N(0, scale^2), i < n. */
static inline void tu_randn(gsl_rng *r, size_t n, double scale, double *v) {
    for (size_t i = 0; i < n; i++)
        v[i] = scale * gsl_ran_gaussian_ziggurat(r, 1.0);
}

/* ---------------------------------------------------------------- small dense algebra */

static inline void *tu_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "testutil: out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

/* n + off + 16 floats uniform in [-1, 1) (the kernels' tests: an operand at float offset off,
 * with 16 floats of slack for masked tails); free with free(). */
static inline float *tu_frand(gsl_rng *r, size_t n, size_t off) {
    float *p = tu_xmalloc((n + off + 16) * sizeof(float));
    for (size_t e = 0; e < n + off + 16; e++)
        p[e] = (float)(gsl_rng_uniform(r) * 2.0 - 1.0);
    return p;
}

/* C = A B, A: n x k, B: k x m, row-major; C must not alias A or B. */
static inline void tu_matmul(size_t n, size_t k, size_t m, const double *A, const double *B,
                             double *C) {
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < m; j++) {
            double acc = 0.0;
            for (size_t l = 0; l < k; l++)
                acc += A[i * k + l] * B[l * m + j];
            C[i * m + j] = acc;
        }
}

/* S = L L^T for L n x r (row-major); S is made exactly symmetric. */
static inline void tu_gram(size_t n, size_t r, const double *L, double *S) {
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j <= i; j++) {
            double acc = 0.0;
            for (size_t l = 0; l < r; l++)
                acc += L[i * r + l] * L[j * r + l];
            S[i * n + j] = S[j * n + i] = acc;
        }
}

/* Q (n x n) orthogonal; if `first` is non-NULL the first column of Q is first / |first| (up to
 * sign), the rest Haar-random in its orthogonal complement.  Exits on LAPACK failure. */
static inline void tu_rand_orthogonal_with(gsl_rng *r, size_t n, const double *first, double *Q) {
    double *tau = tu_xmalloc(n * sizeof *tau);
    tu_randn(r, n * n, 1.0, Q);
    if (first)
        for (size_t i = 0; i < n; i++)
            Q[i * n] = first[i];
    lapack_int info =
        LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, (lapack_int)n, (lapack_int)n, Q, (lapack_int)n, tau);
    if (info != 0) {
        fprintf(stderr, "tu_rand_orthogonal: dgeqrf info %d\n", (int)info);
        exit(2);
    }
    double *rdiag = tu_xmalloc(n * sizeof *rdiag);
    for (size_t i = 0; i < n; i++)
        rdiag[i] = Q[i * n + i];
    info = LAPACKE_dorgqr(LAPACK_ROW_MAJOR, (lapack_int)n, (lapack_int)n, (lapack_int)n, Q,
                          (lapack_int)n, tau);
    if (info != 0) {
        fprintf(stderr, "tu_rand_orthogonal: dorgqr info %d\n", (int)info);
        exit(2);
    }
    /* Q diag(sign(R_ii)) is Haar-distributed (Mezzadri 2007). */
    for (size_t j = 0; j < n; j++)
        if (rdiag[j] < 0.0)
            for (size_t i = 0; i < n; i++)
                Q[i * n + j] = -Q[i * n + j];
    free(rdiag);
    free(tau);
}

static inline void tu_rand_orthogonal(gsl_rng *r, size_t n, double *Q) {
    tu_rand_orthogonal_with(r, n, NULL, Q);
}

/* S = Q diag(lam) Q^T, exactly symmetric; optional factor L = Q diag(sqrt(lam)) (lam >= 0). */
static inline void tu_spectral(size_t n, const double *Q, const double *lam, double *S, double *L) {
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j <= i; j++) {
            double acc = 0.0;
            for (size_t l = 0; l < n; l++)
                acc += Q[i * n + l] * lam[l] * Q[j * n + l];
            S[i * n + j] = S[j * n + i] = acc;
        }
    if (L)
        for (size_t i = 0; i < n; i++)
            for (size_t l = 0; l < n; l++)
                L[i * n + l] = Q[i * n + l] * sqrt(lam[l] > 0.0 ? lam[l] : 0.0);
}

/* Geometric spectrum: lam[i] = scale * cond^(-i / (n - 1)), i < n (lam[0] = scale). */
static inline void tu_geom_spectrum(size_t n, double cond, double scale, double *lam) {
    for (size_t i = 0; i < n; i++)
        lam[i] = n > 1 ? scale * pow(cond, -(double)i / (double)(n - 1)) : scale;
}

/* Random SPD n x n matrix with eigenvalues geometric from scale to scale / cond; optional factor
 * L (n x n, S = L L^T to rounding). */
static inline void tu_rand_spd(gsl_rng *r, size_t n, double cond, double scale, double *S,
                               double *L) {
    double *Q = tu_xmalloc(n * n * sizeof *Q), *lam = tu_xmalloc(n * sizeof *lam);
    tu_rand_orthogonal(r, n, Q);
    tu_geom_spectrum(n, cond, scale, lam);
    tu_spectral(n, Q, lam, S, L);
    free(lam);
    free(Q);
}

/* Random PSD matrix of rank `rank` (< n makes it singular); the nonzero eigenvalues are geometric
 * from scale to scale / cond.  Optional factor L (n x n with n - rank zero columns). */
static inline void tu_rand_psd_rank(gsl_rng *r, size_t n, size_t rank, double cond, double scale,
                                    double *S, double *L) {
    double *Q = tu_xmalloc(n * n * sizeof *Q), *lam = tu_xmalloc(n * sizeof *lam);
    tu_rand_orthogonal(r, n, Q);
    tu_geom_spectrum(rank, cond, scale, lam);
    for (size_t i = rank; i < n; i++)
        lam[i] = 0.0;
    tu_spectral(n, Q, lam, S, L);
    free(lam);
    free(Q);
}

/* Random PSD matrix with S v = 0 (v != 0), positive definite on v's orthogonal complement with
 * eigenvalues geometric from scale to scale / cond.  S v vanishes to rounding (~ eps scale |v|);
 * the factor L (optional) has L^T v = 0 to rounding and an exactly zero first column. */
static inline void tu_rand_psd_null(gsl_rng *r, size_t n, const double *v, double cond,
                                    double scale, double *S, double *L) {
    double *Q = tu_xmalloc(n * n * sizeof *Q), *lam = tu_xmalloc(n * sizeof *lam);
    tu_rand_orthogonal_with(r, n, v, Q);
    lam[0] = 0.0;
    tu_geom_spectrum(n - 1, cond, scale, lam + 1);
    tu_spectral(n, Q, lam, S, L);
    free(lam);
    free(Q);
}

/* L (n x n) with S = L L^T.  Cholesky (lower) when S is numerically positive definite, else the
 * eigen-factor V diag(sqrt(max(lambda, 0))).  Returns 0 for Cholesky, 1 for the eigen-factor. */
static inline int tu_psd_factor(size_t n, const double *S, double *L) {
    memcpy(L, S, n * n * sizeof *L);
    lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)n, L, (lapack_int)n);
    if (info == 0) {
        for (size_t i = 0; i < n; i++)
            for (size_t j = i + 1; j < n; j++)
                L[i * n + j] = 0.0;
        return 0;
    }
    double *V = tu_xmalloc(n * n * sizeof *V), *lam = tu_xmalloc(n * sizeof *lam);
    memcpy(V, S, n * n * sizeof *V);
    info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)n, V, (lapack_int)n, lam);
    if (info != 0) {
        fprintf(stderr, "tu_psd_factor: dsyevd info %d\n", (int)info);
        exit(2);
    }
    for (size_t i = 0; i < n; i++)
        for (size_t l = 0; l < n; l++)
            L[i * n + l] = V[i * n + l] * sqrt(lam[l] > 0 ? lam[l] : 0);
    free(lam);
    free(V);
    return 1;
}

/* ---------------------------------------------------------------- Gaussian expectations */

/* Shift mu's beta block (mu[1..d]) along x so that t = m / s for m = x . mu_beta and
 * s^2 = x^T Sigma^beta x (Sigma^beta: the lower-right d x d block of the (d + 1) x (d + 1)
 * Sigma); the move is along x, so s does not change. */
static inline void tu_set_t(size_t d, const double *x, const double *Sigma, double *mu, double t) {
    const size_t D = d + 1;
    double m = 0.0, s2 = 0.0, x2 = 0.0;
    for (size_t j = 0; j < d; j++) {
        double cj = 0.0;
        for (size_t k = 0; k < d; k++)
            cj += Sigma[(j + 1) * D + k + 1] * x[k];
        m += x[j] * mu[j + 1];
        s2 += x[j] * cj;
        x2 += x[j] * x[j];
    }
    const double dm = t * sqrt(s2) - m;
    for (size_t j = 0; j < d; j++)
        mu[j + 1] += dm * x[j] / x2;
}

/* ---------------------------------------------------------------- Monte Carlo of a GM layer */

/* One sampled neuron of GM component k, summed into the Monte Carlo estimate of its term of the
 * layer (eq. (5)): omega = U_k beta + v_k (U_k: L x d, v_k: L), and for each of the B rows x_i of
 * X (B x d) with y = beta . x_i > 0, f = omega_l y is added to sum[i L + l] and f^2 to
 * sum2[i L + l] (sum, sum2: component k's B x L blocks).  omega: L scratch entries. */
static inline void tu_mc_neuron_add(const double *beta, const double *Uk, const double *vk,
                                    const double *X, size_t B, size_t d, size_t L, double *omega,
                                    double *sum, double *sum2) {
    for (size_t l = 0; l < L; l++) {
        double acc = vk[l];
        for (size_t a = 0; a < d; a++)
            acc += Uk[l * d + a] * beta[a];
        omega[l] = acc;
    }
    for (size_t i = 0; i < B; i++) {
        double y = 0.0;
        for (size_t a = 0; a < d; a++)
            y += beta[a] * X[i * d + a];
        if (y <= 0) continue;
        for (size_t l = 0; l < L; l++) {
            const double f = omega[l] * y;
            sum[i * L + l] += f;
            sum2[i * L + l] += f * f;
        }
    }
}

/* A GM layer's closed form H (B x L) against its stratified Monte Carlo estimate: sum, sum2 hold
 * per component k the B x L sums of f and f^2 over n draws (tu_mc_neuron_add); the estimate is
 * the mean over k of sum / n, its standard error se from the per-component variances, and
 * z = |H - mean| / (se + 1e-13) is CHECKed <= zmax and recorded in *w, labelled tag. */
static inline void tu_check_strat_mc(const char *tag, const double *H, const double *sum,
                                     const double *sum2, size_t K, size_t B, size_t L, long n,
                                     double zmax, tu_worst *w) {
    for (size_t i = 0; i < B; i++)
        for (size_t l = 0; l < L; l++) {
            double mean = 0.0, var = 0.0;
            for (size_t k = 0; k < K; k++) {
                const size_t e = (k * B + i) * L + l;
                const double mk = sum[e] / n, vk = sum2[e] / n - mk * mk;
                mean += mk / (double)K;
                var += (vk > 0 ? vk : 0) / n / (double)(K * K);
            }
            const double se = sqrt(var), z = fabs(H[i * L + l] - mean) / (se + 1e-13);
            CHECK(z <= zmax, "%s: h[%zu][%zu] closed %.10g mc %.10g (SE %.3g, z = %.2f)", tag, i, l,
                  H[i * L + l], mean, se, z);
            tu_worst_update(w, z, "%s h[%zu][%zu]", tag, i, l);
        }
}

/* The output of an FC network of n neurons (params as gmf_nn_fc_from_gm lays them out: beta,
 * n x d, then omega, n x L) read as a plain Monte Carlo mean over its neurons, against the GM
 * layer's closed form H (B x L) on X (B x d): for every entry, mean of relu(beta_j . x_i)
 * omega_jl over j, its standard error se, and z = |H - mean| / (se + 1e-13) CHECKed <= zmax and
 * recorded in *w. */
static inline void tu_check_fc_mc(const double *H, const double *fcparams, long n, const double *X,
                                  size_t B, size_t d, size_t L, double zmax, tu_worst *w) {
    const double *beta = fcparams, *omega = fcparams + (size_t)n * d;
    for (size_t i = 0; i < B; i++)
        for (size_t l = 0; l < L; l++) {
            double s = 0.0, s2 = 0.0;
            for (long j = 0; j < n; j++) {
                double y = 0.0;
                for (size_t a = 0; a < d; a++)
                    y += beta[j * d + a] * X[i * d + a];
                const double f = y > 0 ? omega[j * L + l] * y : 0.0;
                s += f, s2 += f * f;
            }
            const double mean = s / n, se = sqrt(fmax(s2 / n - mean * mean, 0) / n);
            const double z = fabs(H[i * L + l] - mean) / (se + 1e-13);
            CHECK(z <= zmax, "fc_from_gm: h[%zu][%zu] closed %.10g fc %.10g (SE %.3g, z %.2f)", i,
                  l, H[i * L + l], mean, se, z);
            tu_worst_update(w, z, "fc_from_gm h[%zu][%zu]", i, l);
        }
}

/* ---------------------------------------------------------------- finite differences */

typedef double (*tu_objective)(void *ctx);

/* g (analytic) against central differences of f over v[0..n): step h = 1e-6 max(|v_e|, scale),
 * or hfix when hfix > 0; entries with skip[e] set are not differenced.  CHECKs that the largest
 * |g - fd| relative to max(max|fd|, 1e-8) is <= tol and that g is finite, records the error in
 * *w, prints a line and returns the error.  v is restored entry by entry. */
static inline double tu_check_fd(const char *what, double *v, size_t n, const double *g,
                                 tu_objective f, void *ctx, double scale, double hfix,
                                 const unsigned char *skip, double tol, tu_worst *w) {
    double maxfd = 0.0, maxdiff = 0.0;
    size_t worst_e = 0;
    double *fd = tu_xmalloc(n * sizeof *fd);
    for (size_t e = 0; e < n; e++) {
        if (skip && skip[e]) {
            fd[e] = g[e];
            continue;
        }
        const double p = v[e], h = hfix > 0 ? hfix : 1e-6 * (fabs(p) > scale ? fabs(p) : scale);
        v[e] = p + h;
        const double fp = f(ctx);
        v[e] = p - h;
        const double fm = f(ctx);
        v[e] = p;
        fd[e] = (fp - fm) / (2 * h);
        if (fabs(fd[e]) > maxfd) maxfd = fabs(fd[e]);
        if (!(fabs(g[e] - fd[e]) <= maxdiff)) maxdiff = fabs(g[e] - fd[e]), worst_e = e;
    }
    const double err = maxdiff / (maxfd > 1e-8 ? maxfd : 1e-8);
    CHECK(err <= tol, "%s: finite-difference error %.3g (entry %zu: analytic %.10g, fd %.10g)",
          what, err, worst_e, g[worst_e], fd[worst_e]);
    CHECK(tu_all_finite(g, n), "%s: gradient has non-finite entries", what);
    tu_worst_update(w, err, "%s", what);
    printf("  %-52s n=%-5zu max|fd|=%-10.3g err=%.2e\n", what, n, maxfd, err);
    free(fd);
    return err;
}

#endif
