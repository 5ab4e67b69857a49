/* test_particle.c -- the particle flow (Sigma_k = 0) is the Gaussian-mixture flow's exact s -> 0
 * case: the library's closed forms accept Sigma_k = 0 (and C_k = 0) and give the mean-field
 * gradient flow of a width-K ReLU network (examples/long_horizon.sh relies on it).
 *
 * Independent route: the particle loss written out here, with no closed form,
 *   L(theta_1..theta_K) = (1/n) sum_i (y_i - (1/K) sum_k omega_k relu(beta_k . x_i))^2,
 * whose mean-field (Wasserstein) gradient flow is theta_k' = -K dL/dtheta_k.
 *
 *  1. BW form at Sigma_k = 0: mu_k' against -K x central differences of L (step 1e-6; every
 *     sample's kink is >= 1e-2 away, checked, so L is smooth there): max rel. error <= 1e-7;
 *     Sigma_k' = 0 exactly; gmf_flow_loss = L to 1e-13 relative.
 *  2. Euclidean form at C_k = 0: mu_k' = (BW mu_k') / K (Theorem 1's time scale) to 1e-14,
 *     C_k' = 0 exactly.
 *  3. The s -> 0 limit: with Sigma_k = eps^2 I the BW mu' differs from the particle one by
 *     O(eps^2) (the relu parts differ only by exp(-m^2 / 2 s^2) terms, the omega-beta covariance
 *     term is linear in Sigma): err(1e-2) / err(1e-3) must be 100 within 30 %, and err(1e-3) <=
 * 1e-4.
 *  4. A run: gmf_ode_solve of the BW flow from Sigma_k = 0 to t = 1 keeps Sigma_k = 0 exactly and
 *     lowers the loss.
 * Each check fails if the closed forms mishandle s = 0 (a NaN from 0/0, a nonzero delta term), if
 * the flow's time scale or sign were off, or if the mixture's loss were not the network's.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/flow.h"
#include "gmflow/ode.h"
#include "gmflow/sqloss.h"
#include "testutil.h"

enum { N = 40, d = 3, D = d + 1, K = 3 };

static double X[N * d], Y[N];

/* the particle loss: th = K x D, row k = (omega_k, beta_k) */
static double particle_loss(const double *th) {
    double L = 0.0;
    for (size_t i = 0; i < N; i++) {
        double h = 0.0;
        for (size_t k = 0; k < K; k++) {
            double z = 0.0;
            for (size_t j = 0; j < d; j++)
                z += th[k * D + 1 + j] * X[i * d + j];
            h += th[k * D] * (z > 0 ? z : 0.0);
        }
        double r = Y[i] - h / K;
        L += r * r;
    }
    return L / N;
}

/* smallest |beta_k . x_i| over samples and particles (the distance to a kink) */
static double kink_margin(const double *th) {
    double m = INFINITY;
    for (size_t i = 0; i < N; i++)
        for (size_t k = 0; k < K; k++) {
            double z = 0.0;
            for (size_t j = 0; j < d; j++)
                z += th[k * D + 1 + j] * X[i * d + j];
            m = fmin(m, fabs(z));
        }
    return m;
}

static double max_abs(const double *a, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i]));
    return m;
}

int main(void) {
    gsl_rng *r = tu_rng(11);
    printf("test_particle: seed %lu\n", tu_seed());
    for (size_t i = 0; i < N * d; i++)
        X[i] = gsl_ran_gaussian(r, 1.0);
    for (size_t i = 0; i < N; i++)
        Y[i] = gsl_ran_gaussian(r, 0.5);
    double th[K * D];
    do { /* particles with every kink away from the samples */
        for (size_t i = 0; i < K * D; i++)
            th[i] = gsl_ran_gaussian(r, 0.7);
    } while (kink_margin(th) < 1e-2);
    gsl_rng_free(r);

    gmf_sqloss *sq = NULL;
    gmf_flow *bw = NULL, *eu = NULL;
    if (gmf_sqloss_new(&sq, N, d, X, Y) ||
        gmf_flow_new(&bw, GMF_FLOW_BW, K, gmf_sqloss_oracle(sq)) ||
        gmf_flow_new(&eu, GMF_FLOW_EUCLID, K, gmf_sqloss_oracle(sq))) {
        fprintf(stderr, "test_particle: setup: %s\n", gmf_errmsg());
        return 1;
    }
    const size_t dim = gmf_flow_dim(bw);
    double *y = calloc(dim, sizeof(double)), *f = calloc(dim, sizeof(double));
    double *f2 = calloc(dim, sizeof(double)), *ye = calloc(dim, sizeof(double));
    if (!y || !f || !f2 || !ye) return 1;
    memcpy(y, th, sizeof th); /* mu = theta, Sigma = 0 (calloc) */

    /* 1. BW at Sigma = 0 vs -K x central differences of the particle loss */
    CHECK(gmf_flow_rhs(bw, y, f) == 0, "bw rhs: %s", gmf_errmsg());
    double err = 0.0, scale = max_abs(f, K * D);
    for (size_t i = 0; i < K * D; i++) {
        double tp[K * D], tm[K * D], h = 1e-6;
        memcpy(tp, th, sizeof th), memcpy(tm, th, sizeof th);
        tp[i] += h, tm[i] -= h;
        double fd = -(double)K * (particle_loss(tp) - particle_loss(tm)) / (2 * h);
        err = fmax(err, fabs(f[i] - fd));
    }
    CHECK(err <= 1e-7 * scale, "mu' vs -K dL/dtheta (FD): max error %.3g (scale %.3g)", err, scale);
    printf("  BW mu' at Sigma = 0 vs finite differences of the particle loss: rel. error %.2e\n",
           err / scale);
    CHECK(max_abs(f + K * D, dim - K * D) == 0.0, "Sigma' at Sigma = 0 is %.3g, not 0",
          max_abs(f + K * D, dim - K * D));
    double L = NAN, Lp = particle_loss(th);
    CHECK(gmf_flow_loss(bw, y, &L) == 0, "loss: %s", gmf_errmsg());
    CHECK_CLOSE(L, Lp, 1e-13, 0.0, "loss at Sigma = 0 vs the network's");

    /* 2. Euclidean form at C = 0 */
    CHECK(gmf_flow_rhs(eu, y, f2) == 0, "euclid rhs: %s", gmf_errmsg());
    double e2 = 0.0;
    for (size_t i = 0; i < K * D; i++)
        e2 = fmax(e2, fabs(f2[i] - f[i] / K));
    CHECK(e2 <= 1e-14 * scale, "euclid mu' vs bw mu' / K: %.3g", e2);
    CHECK(max_abs(f2 + K * D, dim - K * D) == 0.0, "C' at C = 0 is not 0");

    /* 3. the s -> 0 limit */
    const double eps[2] = {1e-4, 1e-5};
    double el[2];
    for (int e = 0; e < 2; e++) {
        memcpy(ye, y, dim * sizeof(double));
        for (size_t k = 0; k < K; k++)
            for (size_t a = 0; a < D; a++)
                for (size_t b = 0; b < D; b++)
                    gmf_flow_mat(bw, ye, k)[a * D + b] = eps[e] * eps[e] * ((a == b) + 1.0);
        CHECK(gmf_flow_rhs(bw, ye, f2) == 0, "bw rhs at eps %g: %s", eps[e], gmf_errmsg());
        el[e] = 0.0;
        for (size_t i = 0; i < K * D; i++)
            el[e] = fmax(el[e], fabs(f2[i] - f[i]));
    }
    printf("  s -> 0: |mu'(eps) - mu'(0)| = %.3e (eps 1e-4), %.3e (eps 1e-5), ratio %.1f\n", el[0],
           el[1], el[0] / el[1]);
    CHECK(el[1] > 0 && el[0] / el[1] >= 70 && el[0] / el[1] <= 130,
          "s -> 0: errors %.3g, %.3g (want O(eps^2): ratio 100)", el[0], el[1]);

    /* 4. a run keeps Sigma = 0 and lowers the loss */
    double tout[2] = {0.0, 1.0};
    gmf_ode_opts o = gmf_ode_defaults();
    int rc = gmf_ode_solve(dim, gmf_flow_ode_rhs, bw, y, tout, 2, &o, NULL, NULL, NULL);
    CHECK(rc == 0, "solve: %s", gmf_errmsg());
    double L1 = NAN;
    CHECK(gmf_flow_loss(bw, y, &L1) == 0 && L1 < L, "loss %.6g -> %.6g", L, L1);
    CHECK(max_abs(y + K * D, dim - K * D) == 0.0, "Sigma left 0 during the run (%.3g)",
          max_abs(y + K * D, dim - K * D));

    free(y), free(f), free(f2), free(ye);
    gmf_flow_free(bw);
    gmf_flow_free(eu);
    gmf_sqloss_free(sq);
    return tu_finish("test_particle");
}
