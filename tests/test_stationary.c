/* test_stationary.c -- Hessian of l(mu, C), Newton polish, spectrum and index (stationary.h).
 *
 * Planted problem: inputs x_i ~ N(0, I_d), targets y_i = h*(x_i) of a planted mixture
 * (mu*_k ~ N(0, 1), C*_k = Q_k / 2, Sigma*_k = I / 4) with no noise, so l = 0 at the planted
 * state: a global minimum, known without the code under test.
 *
 *  1. Hessian vs central differences of the exact gradient (-F, gmf_flow_rhs) along every unit
 *     vector, Richardson-extrapolated, at a random state: max rel. error <= 1e-7; the raw
 *     Jacobian's asymmetry <= 1e-12 (Hess l is symmetric).
 *  2. Newton from the planted state plus a 1e-4 perturbation: converges (relative gradient
 *     <= 1e-12), loss <= 1e-20, and (K = 1, D = 3) quadratically: some step has
 *     log(g_{k+1} / g_0) / log(g_k / g_0) >= 1.8 while g_k / g_0 <= 1e-2 (measured 1.97:
 *     3.8e-4, 4.6e-8, 7.5e-12, 1.7e-16).  A linearly convergent iteration gives ratios near 1.
 *  3. Spectrum there: gauge rank K D (D - 1) / 2 (the C_k are invertible), index 0, Hessian
 *     eigenvalues >= -1e-8 max (a zero-loss minimum is positive semidefinite), and at least K
 *     zero eigenvalues left after the gauge (the neuron's rescaling symmetry, one per component).
 *  4. K = 1 (D = 3) and K = 2 (D = 4): the gauge rank is K D (D - 1) / 2.
 *  5. Index > 0 is real: a 2-component student started symmetric (both components at the mean
 *     of the planted ones) on that 2-component teacher, integrated to t = 1e4 (the flow keeps
 *     the symmetry) and polished, is a stationary point with loss > 0 = the global minimum's;
 *     its index must be > 0, and the second difference of the loss itself along the most
 *     negative eigenvector v of H, (l(y + e v) + l(y - e v) - 2 l(y)) / e^2 with e = 1e-3, must
 *     match that eigenvalue to 20 % (an independent check of the spectrum's sign).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gmflow/common.h"
#include "gmflow/flow.h"
#include "gmflow/ode.h"
#include "gmflow/sqloss.h"
#include "gmflow/stationary.h"
#include "testutil.h"

typedef struct {
    size_t n, d, D, K, N;
    double *X, *y, *ystar; /* data, planted Euclidean state */
    gmf_sqloss *sq;
    gmf_flow *f;
} planted;

static int planted_make(planted *p, size_t n, size_t d, size_t K, double noise,
                        unsigned long seed) {
    memset(p, 0, sizeof *p);
    p->n = n, p->d = d, p->D = d + 1, p->K = K;
    const size_t D = p->D, N = K * (D + D * D);
    p->N = N;
    gsl_rng *r = tu_rng(seed);
    p->X = tu_xmalloc(n * d * sizeof(double));
    p->y = tu_xmalloc(n * sizeof(double));
    p->ystar = tu_xmalloc(N * sizeof(double));
    tu_randn(r, n * d, 1.0, p->X);
    tu_randn(r, K * D, 1.0, p->ystar);
    for (size_t k = 0; k < K; k++) {
        double *C = p->ystar + K * D + k * D * D;
        tu_rand_orthogonal(r, D, C);
        for (size_t i = 0; i < D * D; i++)
            C[i] *= 0.5;
    }
    memset(p->y, 0, n * sizeof(double));
    int rc = gmf_sqloss_new(&p->sq, n, d, p->X, p->y);
    double *Sig = tu_xmalloc(N * sizeof(double));
    gmf_flow_euclid_to_bw(K, D, p->ystar, Sig);
    if (!rc) rc = gmf_sqloss_eval(p->sq, K, Sig, Sig + K * D, p->y, NULL); /* y = h*(x) */
    for (size_t i = 0; i < n; i++)
        p->y[i] += noise * gsl_ran_gaussian(r, 1.0);
    gmf_sqloss_free(p->sq);
    p->sq = NULL;
    if (!rc) rc = gmf_sqloss_new(&p->sq, n, d, p->X, p->y);
    if (!rc) rc = gmf_flow_new(&p->f, GMF_FLOW_EUCLID, K, gmf_sqloss_oracle(p->sq));
    free(Sig);
    gsl_rng_free(r);
    return rc;
}

static void planted_free(planted *p) {
    gmf_flow_free(p->f);
    gmf_sqloss_free(p->sq);
    free(p->X), free(p->y), free(p->ystar);
}

/* 1. Hessian vs differences of the gradient, and the raw Jacobian's symmetry. */
static void test_hessian_fd(planted *p) {
    const size_t N = p->N;
    double *y = tu_xmalloc(N * sizeof *y), *H = tu_xmalloc(N * N * sizeof *H);
    double *J = tu_xmalloc(N * N * sizeof *J), *Fp = tu_xmalloc(N * sizeof *Fp);
    double *Fm = tu_xmalloc(N * sizeof *Fm), *d0 = tu_xmalloc(N * sizeof *d0);
    gsl_rng *r = tu_rng(21);
    tu_randn(r, N, 0.5, y);
    CHECK(gmf_stationary_hessian(p->f, y, H) == GMF_OK, "hessian: %s", gmf_errmsg());
    CHECK(gmf_flow_jac(p->f, y, J) == GMF_OK, "jac: %s", gmf_errmsg());
    double err = 0, scale = tu_max_abs(H, N * N), asym = 0;
    for (size_t j = 0; j < N; j++) {
        const double yj = y[j];
        for (int pass = 0; pass < 2; pass++) {
            const double h = pass ? 5e-4 : 1e-3;
            y[j] = yj + h;
            CHECK(gmf_flow_rhs(p->f, y, Fp) == GMF_OK, "rhs");
            y[j] = yj - h;
            CHECK(gmf_flow_rhs(p->f, y, Fm) == GMF_OK, "rhs");
            y[j] = yj;
            for (size_t i = 0; i < N; i++) {
                const double dq = -(Fp[i] - Fm[i]) / (2 * h); /* d grad_i / dy_j */
                if (!pass)
                    d0[i] = dq;
                else
                    err = fmax(err, fabs((4 * dq - d0[i]) / 3 - H[i * N + j]));
            }
        }
        for (size_t i = 0; i < j; i++)
            asym = fmax(asym, fabs(J[i * N + j] - J[j * N + i]));
    }
    err /= scale, asym /= scale;
    printf("Hessian vs differences of the gradient: %.3e (N = %zu); Jacobian asymmetry %.3e\n", err,
           N, asym);
    CHECK(err <= 1e-7, "Hessian vs finite differences: %.3e", err);
    CHECK(asym <= 1e-12, "Jacobian not symmetric: %.3e", asym);
    gsl_rng_free(r);
    free(d0), free(Fm), free(Fp), free(J), free(H), free(y);
}

/* 2 and 3: Newton near the planted minimum, then its spectrum. */
static void test_newton_planted(planted *p, int check_quadratic) {
    const size_t N = p->N, K = p->K, D = p->D;
    double *y = tu_xmalloc(N * sizeof *y), *e = tu_xmalloc(N * sizeof *e);
    gsl_rng *r = tu_rng(22);
    tu_randn(r, N, 1e-4, e);
    for (size_t i = 0; i < N; i++)
        y[i] = p->ystar[i] + e[i];
    gmf_stationary_result res;
    CHECK(gmf_stationary_newton(p->f, y, NULL, &res) == GMF_OK, "newton: %s", gmf_errmsg());
    printf("Newton: %d steps, |g| %.3e -> %.3e (relative %.3e), loss %.3e; |g_k|:", res.iters,
           res.grad0, res.grad, res.grad_rel, res.loss);
    int quadratic = 0;
    for (int k = 0; k <= res.iters; k++) {
        printf(" %.2e", res.hist[k]);
        if (k < res.iters && res.hist[k] <= 1e-2 * res.grad0 && res.hist[k + 1] > 0) {
            double q = log(res.hist[k + 1] / res.grad0) / log(res.hist[k] / res.grad0);
            quadratic |= q >= 1.8;
        }
    }
    printf("\n");
    CHECK(res.converged && res.grad_rel <= 1e-12, "not converged: relative |g| %.3e", res.grad_rel);
    CHECK(res.loss <= 1e-20, "loss at the polished planted point %.3e", res.loss);
    if (check_quadratic) CHECK(quadratic, "no quadratic step in the gradient norms");
    gmf_stationary_spectrum s;
    CHECK(gmf_stationary_spectrum_compute(p->f, y, 0, &s) == GMF_OK, "spectrum: %s", gmf_errmsg());
    printf("planted minimum: gauge rank %zu, index %zu, zero %zu, min eig %.3e, max %.3e\n",
           s.ngauge, s.index, s.nzero, s.hess[0], s.hess[N - 1]);
    CHECK(s.ngauge == K * D * (D - 1) / 2, "gauge rank %zu, expected %zu", s.ngauge,
          K * D * (D - 1) / 2);
    CHECK(s.index == 0, "index %zu at a zero-loss minimum", s.index);
    CHECK(s.hess[0] >= -1e-8 * s.hess[N - 1], "negative eigenvalue %.3e at a minimum", s.hess[0]);
    CHECK(s.nzero >= K, "%zu zero eigenvalues beyond the gauge, expected >= K = %zu", s.nzero, K);
    gmf_stationary_spectrum_free(&s);
    gsl_rng_free(r);
    free(e), free(y);
}

/* 5. The symmetric stationary point of a 2-component student on a 2-component teacher: both
 * components equal (the mean of the planted ones), polished in the symmetric subspace (the
 * gradient is symmetric there, so Newton stays in it); where its index is > 0, the loss along
 * the most negative eigenvector v of H (|v| = 1) must fall by about lambda e^2 / 2. */
static void test_saddle(planted *p) {
    const size_t N = p->N, K = p->K, D = p->D;
    double *y = tu_xmalloc(N * sizeof *y), *H = tu_xmalloc(N * N * sizeof *H);
    double *Z = tu_xmalloc(N * N * sizeof *Z), *w = tu_xmalloc(N * sizeof *w);
    double *yt = tu_xmalloc(N * sizeof *yt);
    for (size_t k = 0; k < K; k++) {
        for (size_t a = 0; a < D; a++) {
            double m = 0;
            for (size_t j = 0; j < K; j++)
                m += p->ystar[j * D + a] / K;
            y[k * D + a] = m;
        }
        for (size_t a = 0; a < D * D; a++) {
            double m = 0;
            for (size_t j = 0; j < K; j++)
                m += p->ystar[K * D + j * D * D + a] / K;
            y[K * D + k * D * D + a] = m;
        }
    }
    gmf_ode_opts o = gmf_ode_defaults();
    o.method = GMF_ODE_CVODE_BDF, o.jvp = gmf_flow_ode_jvp, o.jac = gmf_flow_ode_jac;
    const double tout[2] = {0, 1e4};
    CHECK(gmf_ode_solve(N, gmf_flow_ode_rhs, p->f, y, tout, 2, &o, NULL, NULL, NULL) == GMF_OK,
          "flow: %s", gmf_errmsg());
    gmf_stationary_result res;
    CHECK(gmf_stationary_newton(p->f, y, NULL, &res) == GMF_OK, "newton: %s", gmf_errmsg());
    gmf_stationary_spectrum s;
    CHECK(gmf_stationary_spectrum_compute(p->f, y, 0, &s) == GMF_OK, "spectrum");
    printf("symmetric point: %d steps, relative |g| %.3e, loss %.6e, index %zu, zero %zu, min "
           "restricted eig %.3e\n",
           res.iters, res.grad_rel, res.loss, s.index, s.nzero, s.restr[0]);
    CHECK(res.converged, "symmetric point not converged (relative |g| %.3e)", res.grad_rel);
    CHECK(s.index > 0, "the symmetric point of a 2-component teacher should be a saddle");
    CHECK(gmf_stationary_hessian(p->f, y, H) == GMF_OK, "hessian");
    lapack_int m;
    lapack_int *sup = tu_xmalloc(2 * N * sizeof *sup);
    CHECK(LAPACKE_dsyevr(LAPACK_ROW_MAJOR, 'V', 'A', 'U', (lapack_int)N, H, (lapack_int)N, 0, 0, 0,
                         0, 0, &m, w, Z, (lapack_int)N, sup) == 0,
          "dsyevr");
    const double eps = 1e-3;
    double l0, lp, lm;
    CHECK(gmf_flow_loss(p->f, y, &l0) == GMF_OK, "loss");
    for (size_t i = 0; i < N; i++)
        yt[i] = y[i] + eps * Z[i * N];
    CHECK(gmf_flow_loss(p->f, yt, &lp) == GMF_OK, "loss");
    for (size_t i = 0; i < N; i++)
        yt[i] = y[i] - eps * Z[i * N];
    CHECK(gmf_flow_loss(p->f, yt, &lm) == GMF_OK, "loss");
    const double second = (lp + lm - 2 * l0) / (eps * eps); /* = lambda_min */
    printf("  along the most negative eigenvector: l'' = %.4e, lambda_min = %.4e\n", second, w[0]);
    CHECK(w[0] < 0 && fabs(second - w[0]) <= 0.2 * fabs(w[0]),
          "curvature along v %.4e vs lambda_min %.4e", second, w[0]);
    gmf_stationary_spectrum_free(&s);
    free(sup), free(yt), free(w), free(Z), free(H), free(y);
}

/* The end-of-run polish from a BW state (factored inside), and the spectrum file. */
static void test_polish_bw(planted *p) {
    const size_t N = p->N, K = p->K, D = p->D;
    double *yb = tu_xmalloc(N * sizeof *yb), *yc = tu_xmalloc(N * sizeof *yc);
    double *e = tu_xmalloc(N * sizeof *e);
    gsl_rng *r = tu_rng(23);
    tu_randn(r, N, 1e-4, e);
    for (size_t i = 0; i < N; i++)
        yc[i] = p->ystar[i] + e[i];
    gmf_flow_euclid_to_bw(K, D, yc, yb);
    gmf_stationary_result res;
    gmf_stationary_spectrum s;
    CHECK(gmf_stationary_polish(gmf_sqloss_oracle(p->sq), K, GMF_FLOW_BW, yb, NULL, yc, &res, &s) ==
              GMF_OK,
          "polish: %s", gmf_errmsg());
    printf("polish from a BW state: %d steps, relative |g| %.3e, loss %.3e, index %zu\n", res.iters,
           res.grad_rel, res.loss, s.index);
    CHECK(res.converged && res.loss <= 1e-20 && s.index == 0, "BW polish: rel %.3e loss %.3e",
          res.grad_rel, res.loss);
    char path[] = "/tmp/gmflow_spectrum_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd >= 0) {
        close(fd);
        CHECK(gmf_stationary_spectrum_write(path, &s) == GMF_OK, "write: %s", gmf_errmsg());
        FILE *fp = fopen(path, "r");
        size_t lines = 0, restricted = 0;
        char line[256];
        double first = NAN;
        while (fp && fgets(line, sizeof line, fp)) {
            lines++;
            restricted += strncmp(line, "restricted,", 11) == 0;
            if (lines == 2) sscanf(line, "hessian,0,%lf", &first);
        }
        if (fp) fclose(fp);
        remove(path);
        CHECK(lines == 1 + N + s.nr && restricted == s.nr && first == s.hess[0],
              "spectrum file: %zu lines, %zu restricted, first %.17g", lines, restricted, first);
    }
    gmf_stationary_spectrum_free(&s);
    gsl_rng_free(r);
    free(e), free(yc), free(yb);
}

int main(void) {
    planted p;
    CHECK(planted_make(&p, 120, 2, 1, 0.0, 31) == GMF_OK, "planted: %s", gmf_errmsg());
    if (tu_failures()) return tu_finish("test_stationary");
    test_hessian_fd(&p);
    test_newton_planted(&p, 1);
    planted_free(&p);
    CHECK(planted_make(&p, 120, 3, 2, 0.0, 32) == GMF_OK, "planted: %s", gmf_errmsg());
    if (tu_failures()) return tu_finish("test_stationary");
    test_newton_planted(&p, 0);
    test_saddle(&p);
    test_polish_bw(&p);
    planted_free(&p);
    return tu_finish("test_stationary");
}
