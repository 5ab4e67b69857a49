/* validate/gd_to_flow.c -- the discrete trainer's full-batch gradient descent converges to the
 * exact flows at first order in the step (regression part of the cross-checks).
 *
 * The discrete GM regression layer (nn.h, gmf_nn_gmreg_gd_step) takes gradient-descent steps
 * with step eta on l(mu, C) = L(rho), Sigma_k = C_k C_k^T,
 *     (mu, C)_{j+1} = (mu, C)_j - eta grad l((mu, C)_j),
 * the explicit Euler method for the Euclidean flow (mu, C)' = -grad l of Theorem 1, so after
 * N = t / eta steps its distance to the flow at time t is c(t) eta + O(eta^2).  We take the flows
 * from CVODE (Adams, rtol 1e-12) at the matching times t_j = j eta0, j = 0..N0 = T / eta0 (every
 * step of the coarsest run; step j 2^e of the run with eta0 / 2^e) and compare along the whole
 * trajectory in two ways:
 *   err_E(eta)  = max_j || (mu, C)_{N_j} - (mu, C)^E(t_j) ||_inf      (Euclidean flow at t_j)
 *   err_BW(eta) = max_j max_k max_ab |(C_k C_k^T - Sigma_k^BW(t_j/K))_ab|   (mixture flow in the
 *                 Sigma form at t_j/K; the covariance blocks only, so it is not the means' error
 *                 again)
 * for eta = eta0, eta0/2, ..., eta0/2^5 (five halvings) and fit log err = p log eta + b by least
 * squares.  Pass: both fitted orders p within 1.00 +- 0.05, and both errors decreasing at every
 * halving.  The second comparison is the independent route: the Sigma-form mixture flow has its
 * own right-hand side (Theorem 4's Stein form), its own integration, and Theorem 1's time
 * rescaling t -> t/K between them.  Control: --no-rescale compares against the mixture flow at
 * time T instead of T/K; the error then stops shrinking and the program fails (K > 1).
 *
 * --csv PATH writes the table (eta, steps, err_euclid, err_sigma) for tools/plot_cls_validation.py.
 *
 * Usage: gd_to_flow [--n N] [--d D] [--K K] [--T T] [--eta0 E] [--seed S] [--no-rescale]
 *                   [--csv PATH]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/flow.h"
#include "gmflow/nn.h"
#include "gmflow/ode.h"
#include "gmflow/sqloss.h"
#include "gmflow/toy.h"
#include "harness.h"

#define NETA 6

/* The reference trajectories at the N0 + 1 times j eta0 and what the sweep needs. */
typedef struct {
    size_t K, D, N;
    long N0;
    double eta0;
    const double *y0, *trE, *trB; /* initial state [mu | C]; flows, (N0 + 1) x N each */
} sweep;

/* Full-batch GD from y0 at eta0 / 2^e (e < NETA): max errors against the Euclidean flow (errE)
 * and the mixture flow's Sigma block (errB) at the matching times; one table row per step size
 * (and a CSV row if out).  z, zb: N doubles of workspace. */
static int gd_sweep(const sweep *s, gmf_nn_gmreg *layer, double *z, double *zb, FILE *out,
                    double *eta, double *errE, double *errB) {
    const size_t K = s->K, D = s->D, N = s->N;
    int rc = GMF_OK;
    for (int e = 0; e < NETA && !rc; e++) {
        eta[e] = s->eta0 / (double)(1 << e);
        const long every = 1L << e, steps = s->N0 * every;
        memcpy(z, s->y0, N * sizeof *z);
        double ee = 0.0, eb = 0.0;
        for (long j = 1; j <= steps && !rc; j++) {
            if ((rc = gmf_nn_gmreg_gd_step(z, NULL, layer, eta[e]))) break;
            if (j % every) continue;
            const double *rE = s->trE + (size_t)(j / every) * N,
                         *rB = s->trB + (size_t)(j / every) * N;
            for (size_t i = 0; i < N; i++)
                ee = fmax(ee, fabs(z[i] - rE[i]));
            gmf_flow_euclid_to_bw(K, D, z, zb);
            for (size_t i = K * D; i < N; i++)
                eb = fmax(eb, fabs(zb[i] - rB[i]));
        }
        errE[e] = ee, errB[e] = eb;
        printf("%10.3e %8ld %14.6e %14.6e\n", eta[e], steps, ee, eb);
        if (out) fprintf(out, "%.10g,%ld,%.10g,%.10g\n", eta[e], steps, ee, eb);
    }
    return rc;
}

static int fail(const char *what) {
    fprintf(stderr, "gd_to_flow: %s: %s\n", what, gmf_errmsg());
    return 1;
}

int main(int argc, char **argv) {
    size_t n = 150, d = 3, K = 3;
    double T = 1.0, eta0 = 0.04;
    unsigned long seed = 7;
    int rescale = 1;
    const char *csv = NULL;
    int no_rescale = 0;
    const vh_opt opts[] = {
        {"--n", VH_SIZE, &n, NULL, NULL},
        {"--d", VH_SIZE, &d, NULL, NULL},
        {"--K", VH_SIZE, &K, NULL, NULL},
        {"--T", VH_DOUBLE, &T, NULL, NULL},
        {"--eta0", VH_DOUBLE, &eta0, NULL, NULL},
        {"--seed", VH_ULONG, &seed, NULL, NULL},
        {"--csv", VH_STRING, &csv, NULL, NULL},
        {"--no-rescale", VH_FLAG, &no_rescale, NULL, NULL},
    };
    vh_parse(argc, argv, "gd_to_flow",
             "[--n N] [--d D] [--K K] [--T T] [--eta0 E] [--seed S] [--no-rescale] [--csv PATH]",
             opts, sizeof opts / sizeof opts[0]);
    rescale = !no_rescale;
    const long N0 = !(eta0 > 0) ? 0 : lround(T / eta0);
    if (!n || !d || !K || !(T > 0) || !(eta0 > 0) || N0 < 1 || fabs(N0 * eta0 - T) > 1e-9 * T)
        vh_usage_error("need n, d, K >= 1, eta0 > 0 and T a multiple of eta0");
    vh_run run = vh_start("gd_to_flow");
    const size_t D = d + 1;
    gmf_toy_opts to = gmf_toy_defaults();
    to.n = n, to.d = d, to.seed = seed;
    double *X, *y;
    if (gmf_toy_make(&to, &X, &y)) return fail("toy data");
    gmf_sqloss *sq;
    if (gmf_sqloss_new(&sq, n, d, X, y)) return fail("squared loss");
    gmf_flow *fe = NULL, *fb = NULL;
    gmf_nn_gmreg *layer; /* the discrete trainer's regression layer, on its own copy of the data */
    if (gmf_nn_gmreg_new(&layer, K, n, d, X, y)) return fail("GM regression layer");
    if (gmf_flow_new(&fe, GMF_FLOW_EUCLID, K, gmf_sqloss_oracle(sq)) ||
        gmf_flow_new(&fb, GMF_FLOW_BW, K, gmf_sqloss_oracle(sq)))
        return fail("flow");
    const size_t N = gmf_flow_dim(fe);
    double *y0 = calloc(N, sizeof *y0), *ye = calloc(N, sizeof *ye), *yb = calloc(N, sizeof *yb),
           *z = calloc(N, sizeof *z), *zb = calloc(N, sizeof *zb), *te = calloc(N0 + 1, sizeof *te),
           *tb = calloc(N0 + 1, sizeof *tb), *trE = calloc((N0 + 1) * N, sizeof *trE),
           *trB = calloc((N0 + 1) * N, sizeof *trB);
    if (!y0 || !ye || !yb || !z || !zb || !te || !tb || !trE || !trB) return 1;
    if (gmf_toy_init_mixture(K, D, 0.5, seed + 1, y0, y0 + gmf_flow_mat_offset(K, D, 0), NULL))
        return fail("init");

    /* reference flows */
    gmf_ode_opts o = gmf_ode_defaults();
    o.rtol = 1e-12, o.atol = 1e-14;
    memcpy(ye, y0, N * sizeof *ye);
    for (long j = 0; j <= N0; j++)
        te[j] = (double)j * eta0, tb[j] = rescale ? te[j] / (double)K : te[j];
    vh_traj sE = {N, trE}, sB = {N, trB};
    if (gmf_ode_solve(N, gmf_flow_ode_rhs, fe, ye, te, (size_t)N0 + 1, &o, vh_traj_store, &sE,
                      NULL))
        return fail("Euclidean flow");
    gmf_flow_euclid_to_bw(K, D, y0, yb);
    if (gmf_ode_solve(N, gmf_flow_ode_rhs, fb, yb, tb, (size_t)N0 + 1, &o, vh_traj_store, &sB,
                      NULL))
        return fail("mixture flow");

    FILE *out = vh_csv_open(csv, "eta,steps,err_euclid,err_sigma");
    double eta[NETA], errE[NETA], errB[NETA];
    printf("gd_to_flow: discrete GM regression layer, full-batch GD, vs the flows (CVODE, rtol "
           "1e-12)\n");
    printf("n = %zu, d = %zu, K = %zu, T = %g (Euclidean time; mixture time %s)\n", n, d, K, T,
           rescale ? "T/K" : "T: CONTROL, no rescaling");
    printf("(errors: max over the %ld matching times t_j = j eta0 in (0, T])\n", N0);
    printf("%10s %8s %14s %14s\n", "eta", "steps", "err_euclid", "err_Sigma");
    const sweep sw = {K, D, N, N0, eta0, y0, trE, trB};
    if (gd_sweep(&sw, layer, z, zb, out, eta, errE, errB)) return fail("gradient step");
    if (out) fclose(out);
    int ok = 1;
    for (int e = 1; e < NETA; e++)
        if (!(errE[e] < errE[e - 1]) || !(errB[e] < errB[e - 1])) ok = 0;
    double pE = vh_loglog_slope(eta, errE, NETA), pB = vh_loglog_slope(eta, errB, NETA);
    ok = ok && fabs(pE - 1.0) <= 0.05 && fabs(pB - 1.0) <= 0.05;
    printf("fitted order vs Euclidean flow %.4f, vs mixture flow at %s %.4f (pass 1.00 +- 0.05)\n",
           pE, rescale ? "t/K" : "t", pB);
    int status = vh_finish(&run, ok, "order %.4f (euclid), %.4f (mixture)", pE, pB);
    gmf_nn_gmreg_free(layer);
    gmf_flow_free(fe);
    gmf_flow_free(fb);
    gmf_sqloss_free(sq);
    free(X), free(y), free(y0), free(ye), free(yb), free(z), free(zb), free(te), free(tb),
        free(trE), free(trB);
    return status;
}
