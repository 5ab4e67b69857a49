/* test_ode_rmsnorm.c -- the GSL drivers' RMS error norm (gmf_ode_opts.gsl_norm, ode.h), each
 * check against an independent route:
 *
 *   equivalence   the RMS of err_i / sc_i over a state [y, 0, ..., 0] of N = 16 components whose
 *                 last 15 stay exactly 0 (zero error) is |err_1| / (4 sc_1), so RMS with
 *                 (atol, rtol) must take the same steps as GSL's own max-norm control with
 *                 (4 atol, 4 rtol) on the scalar problem: same RHS count, same error-test
 *                 failures, the same end state to 1e-12 (it fails if the norm, the scale or the
 *                 step adjustment differ from GSL's standard control but for the norm);
 *                 with N identical components RMS = max, so both norms take the same steps;
 *   analytic      y' = A y, 20 damped rotations (rates 0.1..2, frequencies 0.5..10) with the
 *                 exact solution exp(-a t) (cos w t, sin w t): rk8pd and rkf45 with either
 *                 norm end within 20 tolerances of it (the global error of y_i in units of
 *                 atol + rtol |y_i|, measured in the run's own norm), the RMS run takes no more RHS
 *                 calls than the max run and strictly fewer when one fast component dominates
 *                 the error;
 *   toy           the built-in regression toy's BW flow (n 120, d 2, K 3) to t = 1: rk8pd with
 *                 either norm at rtol 1e-8, atol 1e-10 agrees with CVODE Adams at rtol 1e-12
 *                 within 5 (atol + rtol |y_i|) and the RMS run takes fewer RHS calls;
 *   bad input     gsl_norm outside {max, rms} and unknown names are rejected with a message.
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
#include "testutil.h"

/* y_1' = -y_1 + sin(3 t) y_1 (a smooth non-autonomous scalar), y_i' = 0 for i > 1 */
static int scalar_rhs(double t, const double *y, double *f, void *u) {
    const size_t N = *(const size_t *)u;
    f[0] = (-1.0 + sin(3.0 * t)) * y[0];
    for (size_t i = 1; i < N; i++)
        f[i] = 0.0;
    return 0;
}

/* all N components the same scalar equation */
static int copies_rhs(double t, const double *y, double *f, void *u) {
    const size_t N = *(const size_t *)u;
    for (size_t i = 0; i < N; i++)
        f[i] = (-1.0 + sin(3.0 * t)) * y[i];
    return 0;
}

static void run(size_t N, gmf_ode_rhs f, gmf_ode_method m, gmf_ode_norm nm, double rtol,
                double atol, double h0, double *y, double tend, gmf_ode_stats *st) {
    gmf_ode_opts o = gmf_ode_defaults();
    o.method = m, o.gsl_norm = (int)nm, o.rtol = rtol, o.atol = atol, o.h0 = h0;
    size_t n = N;
    const double tout[2] = {0.0, tend};
    CHECK(gmf_ode_solve(N, f, &n, y, tout, 2, &o, NULL, NULL, st) == GMF_OK, "solve: %s",
          gmf_errmsg());
}

static void test_equivalence(void) {
    const gmf_ode_method ms[2] = {GMF_ODE_GSL_RK8PD, GMF_ODE_GSL_RKF45};
    for (int k = 0; k < 2; k++) {
        double ys[16] = {1.0}, yv[16] = {1.0};
        gmf_ode_stats a, b;
        run(1, scalar_rhs, ms[k], GMF_ODE_NORM_MAX, 4e-8, 4e-10, 1e-3, ys, 5.0, &a);
        run(16, scalar_rhs, ms[k], GMF_ODE_NORM_RMS, 1e-8, 1e-10, 1e-3, yv, 5.0, &b);
        CHECK(a.nfevals == b.nfevals && a.netfails == b.netfails && a.nsteps == b.nsteps,
              "%s: rms on [y, 0 x 15] = max at 4x the tolerances on y: %ld/%ld/%ld vs %ld/%ld/%ld "
              "(RHS / failures / steps)",
              gmf_ode_method_name(ms[k]), b.nfevals, b.netfails, b.nsteps, a.nfevals, a.netfails,
              a.nsteps);
        CHECK(fabs(ys[0] - yv[0]) <= 1e-12 * fabs(ys[0]), "%s: same end state (%.17g vs %.17g)",
              gmf_ode_method_name(ms[k]), yv[0], ys[0]);
        double yc[8], yd[8];
        for (int i = 0; i < 8; i++)
            yc[i] = yd[i] = 1.0;
        run(8, copies_rhs, ms[k], GMF_ODE_NORM_MAX, 1e-8, 1e-10, 1e-3, yc, 5.0, &a);
        run(8, copies_rhs, ms[k], GMF_ODE_NORM_RMS, 1e-8, 1e-10, 1e-3, yd, 5.0, &b);
        CHECK(a.nfevals == b.nfevals && fabs(yc[7] - yd[7]) <= 1e-12 * fabs(yc[7]),
              "%s: identical components: rms = max (%ld vs %ld RHS calls)",
              gmf_ode_method_name(ms[k]), b.nfevals, a.nfevals);
    }
}

/* 20 damped rotations: (u, v)' = (-a u - w v, w u - a v) */
#define NBLK 20
typedef struct {
    double a[NBLK], w[NBLK];
} rot;

static int rot_rhs(double t, const double *y, double *f, void *u) {
    (void)t;
    const rot *r = u;
    for (int b = 0; b < NBLK; b++) {
        const double p = y[2 * b], q = y[2 * b + 1];
        f[2 * b] = -r->a[b] * p - r->w[b] * q;
        f[2 * b + 1] = r->w[b] * p - r->a[b] * q;
    }
    return 0;
}

/* the global error at t in the norm nm over (y_i - exact_i) / (atol + rtol |exact_i|), from (1, 0)
 * in each block */
static double rot_error(const rot *r, const double *y, double t, double rtol, double atol,
                        gmf_ode_norm nm) {
    double worst = 0.0, sum = 0.0;
    for (int b = 0; b < NBLK; b++) {
        const double e = exp(-r->a[b] * t);
        const double ex[2] = {e * cos(r->w[b] * t), e * sin(r->w[b] * t)};
        for (int c = 0; c < 2; c++) {
            const double e = fabs(y[2 * b + c] - ex[c]) / (atol + rtol * fabs(ex[c]));
            worst = fmax(worst, e), sum += e * e;
        }
    }
    return nm == GMF_ODE_NORM_MAX ? worst : sqrt(sum / (2 * NBLK));
}

static void rot_run(const rot *r, gmf_ode_method m, gmf_ode_norm nm, double tend, double *err,
                    long *nfev) {
    const double rtol = 1e-8, atol = 1e-10;
    double y[2 * NBLK];
    for (int b = 0; b < NBLK; b++)
        y[2 * b] = 1.0, y[2 * b + 1] = 0.0;
    gmf_ode_opts o = gmf_ode_defaults();
    o.method = m, o.gsl_norm = (int)nm, o.rtol = rtol, o.atol = atol;
    const double tout[2] = {0.0, tend};
    gmf_ode_stats st;
    CHECK(gmf_ode_solve(2 * NBLK, rot_rhs, (void *)r, y, tout, 2, &o, NULL, NULL, &st) == GMF_OK,
          "rotations: %s", gmf_errmsg());
    *err = rot_error(r, y, tend, rtol, atol, nm);
    *nfev = st.nfevals;
}

static void test_analytic(void) {
    const gmf_ode_method ms[2] = {GMF_ODE_GSL_RK8PD, GMF_ODE_GSL_RKF45};
    rot spread, one_fast;
    for (int b = 0; b < NBLK; b++) {
        spread.a[b] = 0.1 + 1.9 * b / (NBLK - 1.0), spread.w[b] = 0.5 + 9.5 * b / (NBLK - 1.0);
        one_fast.a[b] = 0.2, one_fast.w[b] = b == 0 ? 10.0 : 0.5;
    }
    for (int k = 0; k < 2; k++) {
        const char *name = gmf_ode_method_name(ms[k]);
        double emax, erms;
        long fmax_, frms;
        rot_run(&spread, ms[k], GMF_ODE_NORM_MAX, 3.0, &emax, &fmax_);
        rot_run(&spread, ms[k], GMF_ODE_NORM_RMS, 3.0, &erms, &frms);
        printf("%s spread rotations: error %.3g (max) %.3g (rms, RMS) tolerances, %ld / %ld RHS\n",
               name, emax, erms, fmax_, frms);
        CHECK(erms <= 20.0 && emax <= 20.0, "%s: within 20 tolerances of exp(At) y0 (%g, %g)", name,
              erms, emax);
        CHECK(frms <= fmax_, "%s: rms takes no more RHS calls (%ld vs %ld)", name, frms, fmax_);
        rot_run(&one_fast, ms[k], GMF_ODE_NORM_MAX, 3.0, &emax, &fmax_);
        rot_run(&one_fast, ms[k], GMF_ODE_NORM_RMS, 3.0, &erms, &frms);
        printf("%s one fast rotation: error %.3g (max) %.3g (rms, RMS) tolerances, %ld / %ld RHS\n",
               name, emax, erms, fmax_, frms);
        CHECK(erms <= 20.0 && emax <= 20.0, "%s one fast: within 20 tolerances (%g, %g)", name,
              erms, emax);
        CHECK(frms < fmax_, "%s one fast: rms takes fewer RHS calls (%ld vs %ld)", name, frms,
              fmax_);
    }
}

static void test_toy(void) {
    gmf_toy_opts to = gmf_toy_defaults();
    to.n = 120, to.d = 2;
    const size_t K = 3, D = 3, N = K * (D + D * D);
    double *X = NULL, *yv = NULL;
    gmf_sqloss *sq = NULL;
    CHECK(gmf_toy_make(&to, &X, &yv) == GMF_OK, "toy: %s", gmf_errmsg());
    CHECK(gmf_sqloss_new(&sq, to.n, to.d, X, yv) == GMF_OK, "sqloss: %s", gmf_errmsg());
    double y0[3 * (3 + 9)], y[3][3 * (3 + 9)];
    CHECK(gmf_toy_init_mixture(K, D, 0.5, 7, y0, y0 + gmf_flow_mat_offset(K, D, 0),
                               y0 + gmf_flow_mat_offset(K, D, 0)) == GMF_OK,
          "init");
    gmf_flow *f;
    CHECK(gmf_flow_new(&f, GMF_FLOW_BW, K, gmf_sqloss_oracle(sq)) == GMF_OK, "flow: %s",
          gmf_errmsg());
    if (!f) return;
    const double tout[2] = {0.0, 1.0};
    const gmf_ode_method ms[3] = {GMF_ODE_CVODE_ADAMS, GMF_ODE_GSL_RK8PD, GMF_ODE_GSL_RK8PD};
    const gmf_ode_norm ns[3] = {GMF_ODE_NORM_MAX, GMF_ODE_NORM_MAX, GMF_ODE_NORM_RMS};
    long nfev[3];
    for (int r = 0; r < 3; r++) {
        gmf_ode_opts o = gmf_ode_defaults();
        o.method = ms[r], o.gsl_norm = (int)ns[r];
        o.rtol = r == 0 ? 1e-12 : 1e-8, o.atol = r == 0 ? 1e-14 : 1e-10;
        memcpy(y[r], y0, N * sizeof(double));
        gmf_ode_stats st;
        CHECK(gmf_ode_solve(N, gmf_flow_ode_rhs, f, y[r], tout, 2, &o, NULL, NULL, &st) == GMF_OK,
              "toy %s: %s", gmf_ode_method_name(ms[r]), gmf_errmsg());
        nfev[r] = st.nfevals;
    }
    for (int r = 1; r < 3; r++) {
        double worst = 0.0;
        for (size_t i = 0; i < N; i++)
            worst = fmax(worst, fabs(y[r][i] - y[0][i]) / (1e-10 + 1e-8 * fabs(y[0][i])));
        printf("toy rk8pd %s: %.3g tolerances from CVODE (rtol 1e-12), %ld RHS calls\n",
               gmf_ode_norm_name(ns[r]), worst, nfev[r]);
        CHECK(worst <= 5.0, "toy rk8pd %s agrees with CVODE within 5 tolerances (%g)",
              gmf_ode_norm_name(ns[r]), worst);
    }
    CHECK(nfev[2] < nfev[1], "toy: rms takes fewer RHS calls than max (%ld vs %ld)", nfev[2],
          nfev[1]);
    gmf_flow_free(f);
    gmf_sqloss_free(sq);
    free(X), free(yv);
}

static void test_bad(void) {
    double y[1] = {1.0};
    size_t n = 1;
    gmf_ode_opts o = gmf_ode_defaults();
    o.method = GMF_ODE_GSL_RK8PD, o.gsl_norm = 7;
    const double tout[2] = {0.0, 1.0};
    CHECK(gmf_ode_solve(1, scalar_rhs, &n, y, tout, 2, &o, NULL, NULL, NULL) == GMF_EINVAL &&
              strstr(gmf_errmsg(), "norm"),
          "gsl_norm 7 rejected: %s", gmf_errmsg());
    gmf_ode_norm nm = GMF_ODE_NORM_MAX;
    CHECK(gmf_ode_norm_parse("l2", &nm) == GMF_EINVAL && nm == GMF_ODE_NORM_MAX &&
              strstr(gmf_errmsg(), "max or rms"),
          "unknown name rejected: %s", gmf_errmsg());
    CHECK(gmf_ode_norm_parse("rms", &nm) == GMF_OK && nm == GMF_ODE_NORM_RMS &&
              !strcmp(gmf_ode_norm_name(nm), "rms"),
          "rms parses");
}

int main(void) {
    test_equivalence();
    test_analytic();
    test_toy();
    test_bad();
    return tu_finish("test_ode_rmsnorm");
}
