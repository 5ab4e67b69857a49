/* validate/solvers.c -- the four integrators agree on the same flow to their tolerance.
 *
 * One regression problem, both state forms (BW Sigma form to T / K, Euclidean (mu, C) form to T),
 * integrated by CVODE (Adams with fixed-point iteration; BDF with Newton + matrix-free SPGMR) and
 * GSL odeiv2 (rk8pd, rkf45) at rtol in {1e-6, 1e-9}, atol = 1e-2 rtol.  Measured, for the final
 * states y (normwise, relative to the reference's largest entry):
 *
 *   err(method, rtol)   = ||y - y_ref||_inf / ||y_ref||_inf,  y_ref = CVODE Adams at rtol 1e-13
 *                         (atol 1e-15), itself checked against GSL rk8pd at the same tolerance;
 *   pair(rtol)          = max over the 6 pairs of methods of ||y_a - y_b||_inf / ||y_ref||_inf.
 *
 * Pass: err <= C rtol and pair <= C rtol with C = 100 (a tolerance bounds the local error per
 * step; over a flow that contracts towards a minimiser the global error stays a small multiple of
 * it -- measured ratios are printed in units of rtol), every method's error falls when rtol does
 * (err(1e-9) <= err(1e-6) / 10), the two reference runs agree to 1e-10, and every final BW
 * Sigma_k is bitwise symmetric.
 *
 * Usage: solvers [--n N] [--d D] [--K K] [--T T] [--seed S]
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
#include "harness.h"
#include "testutil.h"

#define C_FACTOR 100.0
#define REF_TOL  1e-10
#define NMETH    4
#define NRTOL    2

static const double rtols[NRTOL] = {1e-6, 1e-9};
static const gmf_ode_method meths[NMETH] = {GMF_ODE_CVODE_ADAMS, GMF_ODE_CVODE_BDF,
                                            GMF_ODE_GSL_RK8PD, GMF_ODE_GSL_RKF45};

/* Integrate flow f from y0 over [0, T]; final state into y. */
static int integrate(gmf_flow *f, const double *y0, double T, gmf_ode_method m, double rtol,
                     double atol, double *y, gmf_ode_stats *st, double *secs) {
    size_t N = gmf_flow_dim(f);
    memcpy(y, y0, N * sizeof *y);
    gmf_ode_opts o = gmf_ode_defaults();
    o.method = m;
    o.rtol = rtol;
    o.atol = atol;
    o.max_steps = 10000000;
    double tout[2] = {0.0, T}, t0 = vh_now();
    int rc = gmf_ode_solve(N, gmf_flow_ode_rhs, f, y, tout, 2, &o, NULL, NULL, st);
    *secs = vh_now() - t0;
    if (rc)
        fprintf(stderr, "solvers: %s rtol %g: %s\n", gmf_ode_method_name(m), rtol, gmf_errmsg());
    return rc;
}

/* Number of pairs (a, b), a > b, with Sigma_k[a][b] != Sigma_k[b][a] in a BW state.  flow.h
 * promises bitwise symmetry for integrators that take linear combinations of states and fields
 * (all four do: CVODE's Newton-Krylov corrections are combinations of symmetric vectors too). */
static size_t asymmetric(size_t K, size_t D, const double *y) {
    size_t bad = 0;
    for (size_t k = 0; k < K; k++) {
        const double *S = y + gmf_flow_mat_offset(K, D, k);
        for (size_t a = 0; a < D; a++)
            for (size_t b = 0; b < a; b++)
                bad += S[a * D + b] != S[b * D + a];
    }
    return bad;
}

static void print_stats(const char *form, gmf_ode_method m, double rtol, const gmf_ode_stats *s,
                        double err, double secs) {
    int cv = m == GMF_ODE_CVODE_ADAMS || m == GMF_ODE_CVODE_BDF;
    printf("%-6s %-6s %7.0e %8ld %8ld %6ld", form, gmf_ode_method_name(m), rtol, s->nsteps,
           s->nfevals, s->netfails);
    if (cv)
        printf(" %7ld %6ld %7ld %2d", s->nniters, s->nncfails, s->nliters, s->qlast);
    else
        printf(" %7s %6s %7s %2s", "-", "-", "-", "-");
    printf(" %10.3e %10.2e %8.1f %7.3f\n", s->hlast, err, err / rtol, secs);
}

/* One form (BW to T / K, or Euclid to T): a reference run (CVODE Adams, rtol 1e-13) checked by
 * rk8pd, then every method at every rtol against it (one table row each), the pairwise
 * differences, and the error's fall from the loose to the tight rtol.  Updates *worst_ratio (max
 * over errors and pairs / rtol); returns 1 if a check failed or a run could not be made. */
static int check_form(gmf_flow *fl, const double *y0, const char *fname, double Tf, size_t K,
                      size_t D, double *yref, double *ychk, double *ys, double *worst_ratio) {
    const size_t N = gmf_flow_dim(fl);
    int fail = 0;
    double secs;
    gmf_ode_stats st;
    if (integrate(fl, y0, Tf, GMF_ODE_CVODE_ADAMS, 1e-13, 1e-15, yref, &st, &secs)) return 1;
    double scale = tu_max_abs(yref, N);
    print_stats(fname, GMF_ODE_CVODE_ADAMS, 1e-13, &st, 0.0, secs);
    if (integrate(fl, y0, Tf, GMF_ODE_GSL_RK8PD, 1e-13, 1e-15, ychk, &st, &secs)) return 1;
    double refdiff = tu_max_abs_diff(ychk, yref, N) / scale;
    print_stats(fname, GMF_ODE_GSL_RK8PD, 1e-13, &st, refdiff, secs);
    if (!(refdiff <= REF_TOL)) {
        printf("  reference runs disagree: %.2e > %.0e\n", refdiff, REF_TOL);
        fail = 1;
    }
    double err[NRTOL][NMETH];
    for (int ir = 0; ir < NRTOL; ir++) {
        for (int im = 0; im < NMETH; im++) {
            double *y = ys + (ir * NMETH + im) * N;
            if (integrate(fl, y0, Tf, meths[im], rtols[ir], 1e-2 * rtols[ir], y, &st, &secs)) {
                fail = 1;
                err[ir][im] = INFINITY;
                continue;
            }
            err[ir][im] = tu_max_abs_diff(y, yref, N) / scale;
            print_stats(fname, meths[im], rtols[ir], &st, err[ir][im], secs);
            *worst_ratio = fmax(*worst_ratio, err[ir][im] / rtols[ir]);
            if (gmf_flow_kind_of(fl) == GMF_FLOW_BW && asymmetric(K, D, y)) {
                printf("  %s: final Sigma not bitwise symmetric (%zu entries differ)\n",
                       gmf_ode_method_name(meths[im]), asymmetric(K, D, y));
                fail = 1;
            }
        }
    }
    for (int ir = 0; ir < NRTOL; ir++) {
        double pair = 0;
        const char *pa = "", *pb = "";
        for (int a = 0; a < NMETH; a++)
            for (int b = a + 1; b < NMETH; b++) {
                double v =
                    tu_max_abs_diff(ys + (ir * NMETH + a) * N, ys + (ir * NMETH + b) * N, N) /
                    scale;
                if (!(v <= pair)) {
                    pair = v;
                    pa = gmf_ode_method_name(meths[a]);
                    pb = gmf_ode_method_name(meths[b]);
                }
            }
        printf("%-6s rtol %.0e: max pairwise difference %.2e = %.1f rtol (%s vs %s)\n", fname,
               rtols[ir], pair, pair / rtols[ir], pa, pb);
        *worst_ratio = fmax(*worst_ratio, pair / rtols[ir]);
    }
    for (int im = 0; im < NMETH; im++) {
        double gain = err[0][im] / err[1][im];
        printf("%-6s %-6s error falls by %.3g from rtol %.0e to %.0e%s\n", fname,
               gmf_ode_method_name(meths[im]), gain, rtols[0], rtols[1],
               gain >= 10 ? "" : "  FAIL (< 10)");
        if (!(gain >= 10)) fail = 1;
    }
    return fail;
}

int main(int argc, char **argv) {
    size_t n = 200, d = 3, K = 3;
    double T = 30.0;
    unsigned long seed = 41;
    const vh_opt opts[] = {
        {"--n", VH_SIZE, &n, NULL, NULL},        {"--d", VH_SIZE, &d, NULL, NULL},
        {"--K", VH_SIZE, &K, NULL, NULL},        {"--T", VH_DOUBLE, &T, NULL, NULL},
        {"--seed", VH_ULONG, &seed, NULL, NULL},
    };
    vh_parse(argc, argv, "solvers", "[--n N] [--d D] [--K K] [--T T] [--seed S]", opts,
             sizeof opts / sizeof opts[0]);
    if (n < 1 || d < 1 || K < 1 || !(T > 0)) vh_usage_error("need n, d, K >= 1 and T > 0");
    vh_run run = vh_start("solvers");

    const size_t D = d + 1;
    gmf_toy_opts to = gmf_toy_defaults();
    to.n = n, to.d = d, to.seed = seed;
    double *X = NULL, *yv = NULL;
    gmf_sqloss *sq = NULL;
    gmf_flow *fl[2] = {NULL, NULL};
    int rc = gmf_toy_make(&to, &X, &yv);
    if (!rc) rc = gmf_sqloss_new(&sq, n, d, X, yv);
    if (!rc) rc = gmf_flow_new(&fl[0], GMF_FLOW_BW, K, gmf_sqloss_oracle(sq));
    if (!rc) rc = gmf_flow_new(&fl[1], GMF_FLOW_EUCLID, K, gmf_sqloss_oracle(sq));
    if (rc) {
        fprintf(stderr, "solvers: setup: %s\n", gmf_errmsg());
        return 1;
    }
    const size_t N = gmf_flow_dim(fl[0]);
    double *y0[2], *yref = tu_xmalloc(N * sizeof *yref), *ychk = tu_xmalloc(N * sizeof *ychk);
    double *ys = tu_xmalloc(NRTOL * NMETH * N * sizeof *ys);
    y0[0] = tu_xmalloc(N * sizeof(double));
    y0[1] = tu_xmalloc(N * sizeof(double));
    /* initial mixture: mu entries N(0, 1/4), C = 0.3 I + G, G entries N(0, 0.25 / D) */
    gsl_rng *r = tu_rng(seed + 5000);
    tu_randn(r, K * D, 0.5, y0[1]);
    for (size_t k = 0; k < K; k++)
        for (size_t a = 0; a < D; a++)
            for (size_t b = 0; b < D; b++)
                y0[1][gmf_flow_mat_offset(K, D, k) + a * D + b] =
                    (a == b ? 0.3 : 0.0) + gsl_ran_gaussian_ziggurat(r, 0.5 / sqrt((double)D));
    gsl_rng_free(r);
    gmf_flow_euclid_to_bw(K, D, y0[1], y0[0]);

    printf("Solver agreement: n %zu, d %zu, K %zu, relu teacher, state length %zu; BW to T/K = "
           "%g, Euclid to T = %g\n",
           n, d, K, N, T / (double)K, T);
    printf("%-6s %-6s %7s %8s %8s %6s %7s %6s %7s %2s %10s %10s %8s %7s\n", "form", "method",
           "rtol", "steps", "fevals", "etf", "nniter", "nncf", "nliter", "q", "hlast", "err vs ref",
           "err/rtol", "sec");
    double worst_ratio = 0; /* max over (err, pair) / rtol */
    int fail = 0;
    for (int form = 0; form < 2; form++)
        fail |= check_form(fl[form], y0[form], form ? "Euclid" : "BW", form ? T : T / (double)K, K,
                           D, yref, ychk, ys, &worst_ratio);
    int status = vh_finish(&run, !fail && worst_ratio <= C_FACTOR,
                           "max error or pairwise difference %.1f rtol (pass <= %.0f rtol)",
                           worst_ratio, C_FACTOR);
    free(ys);
    free(ychk);
    free(yref);
    free(y0[0]);
    free(y0[1]);
    gmf_flow_free(fl[0]);
    gmf_flow_free(fl[1]);
    gmf_sqloss_free(sq);
    free(X);
    free(yv);
    return status;
}
