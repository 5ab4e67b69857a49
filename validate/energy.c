/* validate/energy.c -- energy dissipation along the gradient flows.
 *
 * Along the Euclidean (mu, C) flow y' = F(y) = -grad l(y) (Theorem 1),
 *
 *     dL/dt = <grad l, y'> = -||F(y)||^2.
 *
 * Two independent checks of that identity, and one of the BW flow:
 *
 *  (a) local:    at check times t_c, a fourth-order central difference of L in time,
 *                [L(t-2h) - 8 L(t-h) + 8 L(t+h) - L(t+2h)] / (12 h), against -||F(y(t))||^2.
 *                L is evaluated on states the integrator delivers at the stencil times.
 *  (b) integral: z' = ||F(y)||^2 is integrated as an extra ODE component alongside the flow, and
 *                L(t) - L(0) + z(t) = 0 is checked at every output time, relative to z(t) (the
 *                energy dissipated so far).
 *  (c) BW form:  along the Sigma-form flow, L is non-increasing at 101 output times, and the same
 *                balance L(s) - L(0) + z(s) = 0 holds with z' = K ||F_E(mu, chol Sigma)||^2: by
 *                Theorem 1 L_BW(s) = L_E(K s), and ||F_E(mu, C)||^2 depends on C only through
 *                C C^T, so the Euclidean field evaluated at the Cholesky factor of the BW state
 *                gives the BW dissipation rate.
 *
 * All integrations: CVODE Adams, rtol 1e-12, atol 1e-14.
 * Pass: (b) and (c)-balance <= 1e-8 relative; (a) <= 1e-7 relative to ||F||^2 (the difference
 * quotient's truncation h^4 L^(5) / 30 and the integration error divided by h limit it; with the
 * default h = 2.5e-3 both are ~1e-10, and the h^4 law is visible with --h); (c) L never
 * increases by more than 1e-11 L (the integration tolerance).
 *
 * Usage: energy [--n N] [--d D] [--K K] [--T T] [--seed S] [--h H]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lapacke.h>

#include "gmflow/common.h"
#include "gmflow/flow.h"
#include "gmflow/ode.h"
#include "gmflow/sqloss.h"
#include "gmflow/toy.h"
#include "harness.h"
#include "testutil.h"
#include "vfd.h"

#define TOL_BALANCE  1e-8
#define TOL_LOCAL    1e-7
#define TOL_MONOTONE 1e-11
#define NCHECK       8   /* check times T/8, ..., T for (a) */
#define NBW          101 /* output times of the BW run */

typedef struct {
    const char *label;
    size_t n, d, K;
    gmf_toy_teacher teacher;
    double T;
    unsigned long seed;
} ecase;

static double sumsq(size_t n, const double *a) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * a[i];
    return s;
}

/* The augmented system [y | z]: y' = F(y), z' = dissipation rate. */
typedef struct {
    gmf_flow *f;  /* the flow being integrated */
    gmf_flow *fE; /* Euclidean flow (for the BW rate); NULL for the Euclidean run */
    size_t N;     /* flow state length */
    double *yc;   /* N: [mu | chol Sigma] for the BW rate */
    double *fc;   /* N: F_E at yc */
    /* per-output records */
    double *L, *z, *rate; /* loss, integrated dissipation, -dL/dt from the field */
} aug;

/* BW state -> Euclidean state [mu | L_k] with L_k the lower Cholesky factor of Sigma_k. */
static int chol_state(size_t K, size_t D, const double *ys, double *yc) {
    memcpy(yc, ys, (K * D + K * D * D) * sizeof(double));
    for (size_t k = 0; k < K; k++) {
        double *Lk = yc + gmf_flow_mat_offset(K, D, k);
        lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)D, Lk, (lapack_int)D);
        if (info != 0)
            return gmf_error(GMF_ENOTPD, "energy: Cholesky of Sigma_%zu failed (info %d)", k,
                             (int)info);
        for (size_t a = 0; a < D; a++)
            for (size_t b = a + 1; b < D; b++)
                Lk[a * D + b] = 0.0;
    }
    return GMF_OK;
}

static int rate_of(aug *a, const double *y, const double *ydot, double *rate) {
    if (!a->fE) {
        *rate = sumsq(a->N, ydot);
        return GMF_OK;
    }
    int rc = chol_state(gmf_flow_K(a->f), gmf_flow_D(a->f), y, a->yc);
    if (!rc) rc = gmf_flow_rhs(a->fE, a->yc, a->fc);
    *rate = (double)gmf_flow_K(a->f) * sumsq(a->N, a->fc);
    return rc;
}

static int aug_rhs(double t, const double *y, double *ydot, void *user) {
    (void)t;
    aug *a = user;
    if (gmf_flow_rhs(a->f, y, ydot)) return -1;
    return rate_of(a, y, ydot, &ydot[a->N]) ? -1 : 0;
}

static int aug_obs(size_t j, double t, const double *y, void *user) {
    (void)t;
    aug *a = user;
    double *ydot = tu_xmalloc((a->N + 1) * sizeof *ydot);
    int rc = gmf_flow_rhs(a->f, y, ydot);
    if (!rc) rc = rate_of(a, y, ydot, &a->rate[j]);
    if (!rc) rc = gmf_flow_loss(a->f, y, &a->L[j]);
    a->z[j] = y[a->N];
    free(ydot);
    return rc;
}

typedef struct {
    double local;  /* (a) max |FD dL/dt + |F|^2| / |F|^2 */
    double balE;   /* (b) max |L(t) - L(0) + z(t)| / z(t) */
    double balB;   /* (c) same along the BW flow */
    double mono;   /* (c) max (L_{j+1} - L_j) / L_j (negative: strictly decreasing) */
    double L0, LT; /* loss at 0 and T */
    long stepsE, stepsB;
    double secs;
} eresult;

static int run_case(const ecase *c, double h, int verbose, eresult *res) {
    const size_t K = c->K, D = c->d + 1;
    memset(res, 0, sizeof *res);
    double t0 = vh_now();
    double *y = NULL, *y0 = NULL, *tout = NULL, *rec = NULL, *yc = NULL, *fc = NULL;
    vfd_problem pb;
    int rc = vfd_problem_init(&pb, c->n, c->d, K, c->teacher, c->seed);
    if (rc) goto done;
    const size_t N = gmf_flow_dim(pb.fE);
    y = tu_xmalloc((N + 1) * sizeof *y);
    yc = tu_xmalloc(N * sizeof *yc);
    fc = tu_xmalloc(N * sizeof *fc);

    /* initial state: mu entries N(0, 1/4), C = 0.3 I + G, G entries N(0, 0.25 / D) */
    y0 = tu_xmalloc(N * sizeof *y0);
    gsl_rng *r = tu_rng(c->seed + 3000);
    for (size_t i = 0; i < K * D; i++)
        y0[i] = gsl_ran_gaussian_ziggurat(r, 0.5);
    for (size_t k = 0; k < K; k++)
        for (size_t a = 0; a < D; a++)
            for (size_t b = 0; b < D; b++)
                y0[gmf_flow_mat_offset(K, D, k) + a * D + b] =
                    (a == b ? 0.3 : 0.0) + gsl_ran_gaussian_ziggurat(r, 0.5 / sqrt((double)D));
    gsl_rng_free(r);

    gmf_ode_opts o = gmf_ode_defaults();
    o.method = GMF_ODE_CVODE_ADAMS;
    o.rtol = 1e-12;
    o.atol = 1e-14;
    o.max_steps = 1000000;
    gmf_ode_stats st;

    /* ---- Euclidean run: output at 0 and the stencils t_c + m h, m = -2..2 */
    const size_t nE = 1 + 5 * NCHECK;
    tout = tu_xmalloc((nE > NBW ? nE : NBW) * sizeof *tout);
    rec = tu_xmalloc(3 * (nE > NBW ? nE : NBW) * sizeof *rec);
    tout[0] = 0.0;
    for (size_t j = 0; j < NCHECK; j++)
        for (int m = -2; m <= 2; m++)
            tout[1 + 5 * j + (size_t)(m + 2)] = c->T * (double)(j + 1) / NCHECK + m * h;
    size_t nout = nE;
    aug a = {.f = pb.fE, .fE = NULL, .N = N, .yc = yc, .fc = fc};
    a.L = rec, a.z = rec + nout, a.rate = rec + 2 * nout;
    memcpy(y, y0, N * sizeof *y);
    y[N] = 0.0;
    if ((rc = gmf_ode_solve(N + 1, aug_rhs, &a, y, tout, nout, &o, aug_obs, &a, &st))) goto done;
    res->stepsE = st.nsteps;
    res->L0 = a.L[0];
    if (verbose)
        printf("  %-14s %8s %12s %12s %10s %12s %10s\n", "Euclidean", "t", "L(t)", "-|F|^2",
               "(a) rel", "z(t)", "(b) rel");
    for (size_t j = 0; j < NCHECK; j++) {
        const double *L = a.L + 1 + 5 * j;
        size_t mid = 1 + 5 * j + 2;
        double dLdt = (L[0] - 8.0 * L[1] + 8.0 * L[3] - L[4]) / (12.0 * h);
        double want = -a.rate[mid];
        double erel = fabs(dLdt - want) / fabs(want);
        if (!(erel <= res->local)) res->local = erel;
        if (verbose)
            printf("  %-14s %8.4f %12.6e %12.6e %10.2e %12.6e %10.2e\n", "", tout[mid], a.L[mid],
                   want, erel, a.z[mid], fabs(a.L[mid] - a.L[0] + a.z[mid]) / a.z[mid]);
    }
    for (size_t j = 1; j < nout; j++) {
        double bal = fabs(a.L[j] - a.L[0] + a.z[j]) / a.z[j];
        if (!(bal <= res->balE)) res->balE = bal;
    }
    res->LT = a.L[1 + 5 * (NCHECK - 1) + 2];

    /* ---- BW run from the same mixture to T / K: monotone decrease and the energy balance */
    for (size_t j = 0; j < NBW; j++)
        tout[j] = c->T / (double)K * (double)j / (double)(NBW - 1);
    nout = NBW;
    aug b = {.f = pb.fB, .fE = pb.fE, .N = N, .yc = yc, .fc = fc};
    b.L = rec, b.z = rec + nout, b.rate = rec + 2 * nout;
    gmf_flow_euclid_to_bw(K, D, y0, y);
    y[N] = 0.0;
    if ((rc = gmf_ode_solve(N + 1, aug_rhs, &b, y, tout, nout, &o, aug_obs, &b, &st))) goto done;
    res->stepsB = st.nsteps;
    res->mono = -INFINITY;
    for (size_t j = 1; j < nout; j++) {
        double bal = fabs(b.L[j] - b.L[0] + b.z[j]) / b.z[j];
        if (!(bal <= res->balB)) res->balB = bal;
        double inc = (b.L[j] - b.L[j - 1]) / b.L[j - 1];
        if (!(inc <= res->mono)) res->mono = inc;
    }
    if (verbose) {
        printf("  %-14s %8s %12s %12s %12s %10s\n", "BW (every 20)", "s", "L(s)", "-dL/ds", "z(s)",
               "(c) rel");
        for (size_t j = 0; j < nout; j += 20)
            printf("  %-14s %8.4f %12.6e %12.6e %12.6e %10.2e\n", "", tout[j], b.L[j], -b.rate[j],
                   b.z[j], j ? fabs(b.L[j] - b.L[0] + b.z[j]) / b.z[j] : 0.0);
    }
done:
    res->secs = vh_now() - t0;
    free(rec);
    free(tout);
    free(y0);
    free(fc);
    free(yc);
    free(y);
    vfd_problem_free(&pb);
    return rc;
}

int main(int argc, char **argv) {
    static const ecase ci[] = {
        {"K1-d2-relu", 150, 2, 1, GMF_TOY_RELU, 8.0, 21},
        {"K3-d4-relu", 200, 4, 3, GMF_TOY_RELU, 8.0, 22},
        {"K2-d3-mixture", 150, 3, 2, GMF_TOY_MIXTURE, 8.0, 23},
    };
    ecase custom = {"custom", 200, 3, 2, GMF_TOY_RELU, 8.0, 1};
    int use_custom = 0;
    double h = 2.5e-3;
    const vh_opt opts[] = {
        {"--n", VH_SIZE, &custom.n, NULL, &use_custom},
        {"--d", VH_SIZE, &custom.d, NULL, &use_custom},
        {"--K", VH_SIZE, &custom.K, NULL, &use_custom},
        {"--T", VH_DOUBLE, &custom.T, NULL, NULL},
        {"--seed", VH_ULONG, &custom.seed, NULL, NULL},
        {"--h", VH_DOUBLE, &h, NULL, NULL},
    };
    vh_parse(argc, argv, "energy", "[--n N] [--d D] [--K K] [--T T] [--seed S] [--h H]", opts,
             sizeof opts / sizeof opts[0]);
    if (custom.n < 1 || custom.d < 1 || custom.K < 1 || !(custom.T > 4 * h) || !(h > 0))
        vh_usage_error("need n, d, K >= 1, h > 0 and T > 4 h");
    const ecase *cases = use_custom ? &custom : ci;
    size_t ncases = use_custom ? 1 : sizeof ci / sizeof ci[0];

    printf("Energy dissipation dL/dt = -|grad l|^2 (CVODE Adams rtol 1e-12 atol 1e-14, stencil "
           "h = %g)\n",
           h);
    vh_run run = vh_start("energy");
    double worst_local = 0, worst_bal = 0, worst_mono = -INFINITY;
    eresult rs[16];
    for (size_t i = 0; i < ncases; i++) {
        const ecase *c = &cases[i];
        printf("case %s: n %zu, d %zu, K %zu, %s teacher, T %g\n", c->label, c->n, c->d, c->K,
               c->teacher == GMF_TOY_RELU ? "relu" : "mixture", c->T);
        if (vh_case(&run, c->label, run_case(c, h, 1, &rs[i]))) {
            worst_bal = INFINITY;
            continue;
        }
        worst_local = fmax(worst_local, rs[i].local);
        worst_bal = fmax(worst_bal, fmax(rs[i].balE, rs[i].balB));
        worst_mono = fmax(worst_mono, rs[i].mono);
    }
    printf("\n%-14s %4s %2s %2s %10s %10s %10s %10s %11s %10s %7s %6s\n", "case", "n", "d", "K",
           "L(0)", "L(T)", "(a) local", "(b) bal", "(c) BW bal", "(c) max dL", "steps", "sec");
    for (size_t i = 0; i < ncases; i++)
        printf("%-14s %4zu %2zu %2zu %10.4e %10.4e %10.2e %10.2e %11.2e %10.2e %7ld %6.2f\n",
               cases[i].label, cases[i].n, cases[i].d, cases[i].K, rs[i].L0, rs[i].LT, rs[i].local,
               rs[i].balE, rs[i].balB, rs[i].mono, rs[i].stepsE + rs[i].stepsB, rs[i].secs);
    int ok_local = worst_local <= TOL_LOCAL, ok_mono = worst_mono <= TOL_MONOTONE;
    int ok_bal = worst_bal <= TOL_BALANCE;
    printf("(a) time derivative of L vs -|F|^2: max rel %.2e (%s <= %.0e)\n", worst_local,
           ok_local ? "pass" : "FAIL", TOL_LOCAL);
    printf("(c) BW loss monotone: max relative step change %.2e (%s <= %.0e)\n", worst_mono,
           ok_mono ? "pass" : "FAIL", TOL_MONOTONE);
    return vh_finish(&run, ok_local && ok_mono && ok_bal,
                     "max relative energy-balance residual %.2e (pass <= %.0e%s)", worst_bal,
                     TOL_BALANCE, ok_local && ok_mono ? "" : "; another check failed");
}
