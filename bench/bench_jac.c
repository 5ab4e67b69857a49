/* bench/bench_jac.c -- what exact Jacobian information buys CVODE's BDF (docs/FLOWS.md).
 *
 * The built-in toy of `gmflow flow` (toy defaults: n 200, d 3, ReLU teacher of width 4, noise
 * 0.05, data seed 1; K 3, gamma 0.5, init seed 2), integrated from t = 0 to --t-end with 51
 * output times, rtol 1e-8, atol 1e-10, BDF with each linear-solver choice in turn, interleaved
 * over --reps rounds (dq jvp dense, dq jvp dense, ...).  Prints per choice: steps, RHS calls,
 * JVPs (exact or by difference quotients), dense Jacobians, linear iterations, the median wall
 * time, and the largest difference of the final state from the dq run's (relative to max|y|).
 *
 * Usage: bench_jac [--t-end T] [--form bw|euclid] [--K K] [--reps R]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gmflow/common.h"
#include "gmflow/flow.h"
#include "gmflow/ode.h"
#include "gmflow/sqloss.h"
#include "gmflow/toy.h"
#include "harness.h"

#define NOUT 51
#define MAXR 15
#define NCHO 3

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    double t_end = 2e4;
    size_t K = 3, reps = 3;
    int form = GMF_FLOW_BW; /* index into forms: GMF_FLOW_BW, GMF_FLOW_EUCLID */
    static const char *const forms[] = {"bw", "euclid", NULL};
    const vh_opt opts[] = {
        {"--t-end", VH_DOUBLE, &t_end, NULL, NULL},
        {"--form", VH_CHOICE, &form, forms, NULL},
        {"--K", VH_SIZE, &K, NULL, NULL},
        {"--reps", VH_SIZE, &reps, NULL, NULL},
    };
    vh_parse(argc, argv, "bench_jac", "[--t-end T] [--form bw|euclid] [--K K] [--reps R]", opts,
             sizeof opts / sizeof opts[0]);
    const gmf_flow_kind kind = (gmf_flow_kind)form;
    if (reps < 1 || reps > MAXR || K < 1 || !(t_end > 0))
        vh_usage_error("need 1 <= reps <= %d, K >= 1, t-end > 0", MAXR);
    gmf_toy_opts to = gmf_toy_defaults();
    double *X = NULL, *yv = NULL;
    gmf_sqloss *sq = NULL;
    gmf_flow *f = NULL;
    if (gmf_toy_make(&to, &X, &yv) || gmf_sqloss_new(&sq, to.n, to.d, X, yv) ||
        gmf_flow_new(&f, kind, K, gmf_sqloss_oracle(sq))) {
        fprintf(stderr, "bench_jac: %s\n", gmf_errmsg());
        return 1;
    }
    const size_t D = to.d + 1, N = gmf_flow_dim(f);
    double *y0 = calloc(N, sizeof *y0), *y = calloc(N, sizeof *y), *yref = calloc(N, sizeof *y);
    double tout[NOUT], wall[NCHO][MAXR];
    if (!y0 || !y || !yref) return 1;
    if (gmf_toy_init_mixture(K, D, 0.5, 2, y0, kind == GMF_FLOW_EUCLID ? y0 + K * D : NULL,
                             kind == GMF_FLOW_BW ? y0 + K * D : NULL)) {
        fprintf(stderr, "bench_jac: %s\n", gmf_errmsg());
        return 1;
    }
    for (size_t j = 0; j < NOUT; j++)
        tout[j] = t_end * (double)j / (NOUT - 1);
    const gmf_ode_jacobian cho[NCHO] = {GMF_ODE_JAC_DQ, GMF_ODE_JAC_JVP, GMF_ODE_JAC_DENSE};
    gmf_ode_stats st[NCHO];
    double diff[NCHO] = {0};
    for (size_t r = 0; r < reps; r++)
        for (int c = 0; c < NCHO; c++) {
            gmf_ode_opts o = gmf_ode_defaults();
            o.method = GMF_ODE_CVODE_BDF;
            o.jvp = gmf_flow_ode_jvp;
            o.jac = gmf_flow_ode_jac;
            o.jacobian = cho[c];
            memcpy(y, y0, N * sizeof *y);
            double t0 = now();
            if (gmf_ode_solve(N, gmf_flow_ode_rhs, f, y, tout, NOUT, &o, NULL, NULL, &st[c])) {
                fprintf(stderr, "bench_jac: %s: %s\n", gmf_ode_jacobian_name(cho[c]), gmf_errmsg());
                return 1;
            }
            wall[c][r] = now() - t0;
            if (c == 0) memcpy(yref, y, N * sizeof *y);
            double dm = 0, sc = 0;
            for (size_t i = 0; i < N; i++)
                dm = fmax(dm, fabs(y[i] - yref[i])), sc = fmax(sc, fabs(yref[i]));
            diff[c] = dm / sc;
        }
    /* per-call costs at the final state: RHS, exact JVP (cached values), dense Jacobian */
    double *v = calloc(N, sizeof *v), *jv = calloc(N, sizeof *jv), *J = calloc(N * N, sizeof *J);
    if (!v || !jv || !J) return 1;
    for (size_t i = 0; i < N; i++)
        v[i] = 1.0 / (1.0 + (double)i);
    const int nrep = 2000;
    int bad = 0;
    double t0 = now();
    for (int r = 0; r < nrep; r++)
        bad |= gmf_flow_rhs(f, y, jv);
    const double t_rhs = (now() - t0) / nrep;
    bad |= gmf_flow_jvp(f, y, v, jv);
    t0 = now();
    for (int r = 0; r < nrep; r++)
        bad |= gmf_flow_jvp(f, y, v, jv);
    const double t_jvp = (now() - t0) / nrep;
    t0 = now();
    for (int r = 0; r < nrep / 40; r++)
        bad |= gmf_flow_jac(f, y, J);
    const double t_jac = (now() - t0) / (nrep / 40);
    free(v), free(jv), free(J);
    double loss;
    bad |= gmf_flow_loss(f, y, &loss);
    if (bad) {
        fprintf(stderr, "bench_jac: %s\n", gmf_errmsg());
        return 1;
    }
    printf("built-in toy, %s form, K = %zu, N = %zu, t_end = %g, BDF rtol 1e-8 atol 1e-10, %zu "
           "rounds; final loss %.10e\n",
           kind == GMF_FLOW_BW ? "bw" : "euclid", K, N, t_end, reps, loss);
    printf("%-6s %8s %9s %9s %7s %9s %10s %11s\n", "jac", "steps", "rhs", "jvp", "jacs", "lin.it",
           "median s", "|dy|/|y|");
    for (int c = 0; c < NCHO; c++) {
        qsort(wall[c], reps, sizeof(double), cmp);
        printf("%-6s %8ld %9ld %9ld %7ld %9ld %10.4f %11.2e\n", gmf_ode_jacobian_name(cho[c]),
               st[c].nsteps, st[c].nfevals, st[c].njvevals, st[c].njevals, st[c].nliters,
               wall[c][reps / 2], diff[c]);
    }
    printf("per call at the final state: RHS %.1f us, exact JVP %.1f us (%.2f RHS), dense Jacobian "
           "%.1f us (%.1f RHS)\n",
           1e6 * t_rhs, 1e6 * t_jvp, t_jvp / t_rhs, 1e6 * t_jac, t_jac / t_rhs);
    gmf_flow_free(f);
    gmf_sqloss_free(sq);
    free(X), free(yv), free(y0), free(y), free(yref);
    return 0;
}
