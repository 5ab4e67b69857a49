/* validate/gd_to_flow.c -- discrete full-batch gradient descent converges to the exact flow at
 * first order in the step (regression part of the cross-checks).
 *
 * Gradient descent with step eta on l(mu, C) = L(rho), Sigma_k = C_k C_k^T,
 *     (mu, C)_{j+1} = (mu, C)_j - eta grad l((mu, C)_j),
 * is the explicit Euler method for the Euclidean flow (mu, C)' = -grad l of Theorem 1, so after
 * N = T / eta steps its distance to the flow at time T is c eta + O(eta^2).  We take the flow
 * from CVODE (Adams, rtol 1e-12) and compare against it in two ways:
 *   err_E(eta)  = || (mu, C)_N - (mu, C)^E(T) ||          (Euclidean flow at time T)
 *   err_BW(eta) = max_k max_ab |(C_k C_k^T - Sigma_k^BW(T/K))_ab|   (mixture flow at T/K;
 *                 the covariance blocks only, so it is not the means' error again)
 * for eta = eta0, eta0/2, ..., eta0/2^5 and fit log err = p log eta + b by least squares.
 * Pass: both fitted orders p within 1.00 +- 0.05, and err_E decreasing at every halving.
 * The gradient is the closed form of the Euclidean right-hand side (gmf_flow_rhs), so the test
 * checks the discrete-to-continuous link, not the gradient itself (validate/fd does that).
 *
 * Usage: gd_to_flow [--n N] [--d D] [--K K] [--T T] [--eta0 E] [--seed S]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/flow.h"
#include "gmflow/ode.h"
#include "gmflow/sqloss.h"
#include "gmflow/toy.h"

#define NETA 6

static double fit_slope(const double *x, const double *y, int m) {
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int i = 0; i < m; i++) {
        double lx = log(x[i]), ly = log(y[i]);
        sx += lx, sy += ly, sxx += lx * lx, sxy += lx * ly;
    }
    return (m * sxy - sx * sy) / (m * sxx - sx * sx);
}

static int fail(const char *what) {
    fprintf(stderr, "gd_to_flow: %s: %s\n", what, gmf_errmsg());
    return 1;
}

int main(int argc, char **argv) {
    size_t n = 150, d = 3, K = 3;
    double T = 1.0, eta0 = 0.04;
    unsigned long seed = 7;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--n"))
            n = strtoul(argv[++i], NULL, 10);
        else if (i + 1 < argc && !strcmp(argv[i], "--d"))
            d = strtoul(argv[++i], NULL, 10);
        else if (i + 1 < argc && !strcmp(argv[i], "--K"))
            K = strtoul(argv[++i], NULL, 10);
        else if (i + 1 < argc && !strcmp(argv[i], "--T"))
            T = atof(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--eta0"))
            eta0 = atof(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--seed"))
            seed = strtoul(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: gd_to_flow [--n N] [--d D] [--K K] [--T T] [--eta0 E] "
                            "[--seed S]\n");
            return 2;
        }
    }
    if (!n || !d || !K || !(T > 0) || !(eta0 > 0)) {
        fprintf(stderr, "gd_to_flow: need n, d, K >= 1 and T, eta0 > 0\n");
        return 2;
    }
    const size_t D = d + 1;
    gmf_toy_opts to = gmf_toy_defaults();
    to.n = n, to.d = d, to.seed = seed;
    double *X, *y;
    if (gmf_toy_make(&to, &X, &y)) return fail("toy data");
    gmf_sqloss *sq;
    if (gmf_sqloss_new(&sq, n, d, X, y)) return fail("squared loss");
    gmf_flow fe, fb;
    if (gmf_flow_init(&fe, GMF_FLOW_EUCLID, K, gmf_sqloss_oracle(sq)) ||
        gmf_flow_init(&fb, GMF_FLOW_BW, K, gmf_sqloss_oracle(sq)))
        return fail("flow");
    const size_t N = gmf_flow_dim(&fe);
    double *y0 = calloc(N, sizeof *y0), *ye = calloc(N, sizeof *ye), *yb = calloc(N, sizeof *yb),
           *z = calloc(N, sizeof *z), *g = calloc(N, sizeof *g), *zb = calloc(N, sizeof *zb);
    if (!y0 || !ye || !yb || !z || !g || !zb) return 1;
    if (gmf_toy_init_mixture(K, D, 0.5, seed + 1, y0, y0 + K * D, NULL)) return fail("init");

    /* reference flows */
    gmf_ode_opts o = gmf_ode_defaults();
    o.rtol = 1e-12, o.atol = 1e-14;
    memcpy(ye, y0, N * sizeof *ye);
    const double te[2] = {0.0, T}, tb[2] = {0.0, T / (double)K};
    if (gmf_ode_solve(N, gmf_flow_ode_rhs, &fe, ye, te, 2, &o, NULL, NULL, NULL))
        return fail("Euclidean flow");
    gmf_flow_euclid_to_bw(K, D, y0, yb);
    if (gmf_ode_solve(N, gmf_flow_ode_rhs, &fb, yb, tb, 2, &o, NULL, NULL, NULL))
        return fail("mixture flow");

    double eta[NETA], errE[NETA], errB[NETA];
    printf("gd_to_flow: n = %zu, d = %zu, K = %zu, T = %g (Euclidean time; mixture time T/K)\n", n,
           d, K, T);
    printf("%10s %8s %14s %14s\n", "eta", "steps", "err_euclid", "err_Sigma");
    for (int e = 0; e < NETA; e++) {
        eta[e] = eta0 / (double)(1 << e);
        long steps = lround(T / eta[e]);
        memcpy(z, y0, N * sizeof *z);
        for (long j = 0; j < steps; j++) {
            if (gmf_flow_rhs(&fe, z, g)) return fail("gradient step");
            for (size_t i = 0; i < N; i++)
                z[i] += eta[e] * g[i]; /* g = -grad l */
        }
        double ee = 0.0, eb = 0.0;
        for (size_t i = 0; i < N; i++)
            ee = fmax(ee, fabs(z[i] - ye[i]));
        gmf_flow_euclid_to_bw(K, D, z, zb);
        for (size_t i = K * D; i < N; i++)
            eb = fmax(eb, fabs(zb[i] - yb[i]));
        errE[e] = ee, errB[e] = eb;
        printf("%10.3e %8ld %14.6e %14.6e\n", eta[e], steps, ee, eb);
    }
    int ok = 1;
    for (int e = 1; e < NETA; e++)
        if (!(errE[e] < errE[e - 1])) ok = 0;
    double pE = fit_slope(eta, errE, NETA), pB = fit_slope(eta, errB, NETA);
    ok = ok && fabs(pE - 1.0) <= 0.05 && fabs(pB - 1.0) <= 0.05;
    printf("fitted order vs Euclidean flow %.4f, vs mixture flow at t/K %.4f (pass 1.00 +- 0.05)\n",
           pE, pB);
    printf("gd_to_flow: order %.4f (euclid), %.4f (mixture) %s\n", pE, pB, ok ? "PASS" : "FAIL");
    gmf_flow_free(&fe);
    gmf_flow_free(&fb);
    gmf_sqloss_free(sq);
    free(X), free(y), free(y0), free(ye), free(yb), free(z), free(g), free(zb);
    return ok ? 0 : 1;
}
