/* test_ode_driver.c -- the ODE driver's step-by-step services (ode.h) on problems with known
 * solutions:
 *   dense output   y' = -y at 400 output times inside the steps: every output within tolerance
 *                  of exp(-t), and (CVODE) the step count independent of the number of outputs
 *                  (it fails if the driver stopped at each output time);
 *   events         y' = -y, g = y - 1/2 and y - 1/4: stop at t = ln 2 exactly (y = 1/2 there),
 *                  or record both (ln 2, ln 4) and go on; a rising-only direction sees none;
 *                  every method (adams, bdf, auto, rk8pd, rkf45);
 *   auto           a stiff scalar problem y' = -L (y - sin t) + cos t, L = 1e4, exact solution
 *                  sin t + y0 exp(-L t): auto switches to BDF (the switch recorded), agrees with
 *                  the exact solution and with BDF, and takes far fewer steps than Adams;
 *   stall          y' = 1 + y^2 (y = tan t, singular at pi/2) asked to reach t = 2: the driver
 *                  stops with "no progress" near pi/2 within a few seconds, naming the time;
 *                  y' = cos(1e8 t) from t = 1 (steps ~1e-9) trips the step-window detector;
 *                  a right-hand side that makes no progress in wall time (sleeps) trips the
 *                  wall-clock detector;
 *   monotone       a scalar that increases along the solution fails the run with "increased"
 *                  (unless the rise is below scalar_atol: 0.9 passes, 0.85 fails a 0.8647 rise);
 *                  one that decreases does not.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "gmflow/common.h"
#include "gmflow/ode.h"
#include "testutil.h"

static const gmf_ode_method methods[] = {GMF_ODE_CVODE_ADAMS, GMF_ODE_CVODE_BDF, GMF_ODE_AUTO,
                                         GMF_ODE_GSL_RK8PD, GMF_ODE_GSL_RKF45};
#define NMETHODS (sizeof methods / sizeof methods[0])

static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int decay(double t, const double *y, double *f, void *u) {
    (void)t, (void)u;
    f[0] = -y[0];
    return 0;
}

/* ------------------------------------------------------------------ dense output */

typedef struct {
    double maxerr;
    size_t calls;
    double tlast, ylast;
} rec;

static int obs_decay(size_t j, double t, const double *y, void *u) {
    rec *r = u;
    (void)j;
    double e = fabs(y[0] - exp(-t)) / exp(-t);
    if (e > r->maxerr) r->maxerr = e;
    r->calls++, r->tlast = t, r->ylast = y[0];
    return 0;
}

static void test_dense(void) {
    enum { T = 400 };
    double tout[T];
    for (size_t j = 0; j < T; j++)
        tout[j] = 10.0 * (double)j / (T - 1);
    for (size_t m = 0; m < NMETHODS; m++) {
        gmf_ode_opts o = gmf_ode_defaults();
        o.method = methods[m];
        o.rtol = 1e-10, o.atol = 1e-14;
        double y = 1.0;
        rec r = {0};
        gmf_ode_stats st, st2;
        int rc = gmf_ode_solve(1, decay, NULL, &y, tout, T, &o, obs_decay, &r, &st);
        CHECK(rc == 0, "%s: %s", gmf_ode_method_name(o.method), gmf_errmsg());
        CHECK(r.calls == T && st.nout == T, "%s: %zu observer calls", gmf_ode_method_name(o.method),
              r.calls);
        CHECK(r.maxerr < 1e-7, "%s: dense output relative error %.3g",
              gmf_ode_method_name(o.method), r.maxerr);
        CHECK(y == r.ylast && st.t_reached == 10.0, "%s: final state is the last output",
              gmf_ode_method_name(o.method));
        if (o.method > GMF_ODE_CVODE_BDF && o.method != GMF_ODE_AUTO) continue;
        const double t2[2] = {0.0, 10.0};
        y = 1.0;
        rc = gmf_ode_solve(1, decay, NULL, &y, t2, 2, &o, NULL, NULL, &st2);
        CHECK(rc == 0 && labs(st.nsteps - st2.nsteps) <= 2,
              "%s: %ld steps with %d outputs but %ld with 2 (outputs must not cut steps)",
              gmf_ode_method_name(o.method), st.nsteps, T, st2.nsteps);
    }
}

/* ------------------------------------------------------------------ events */

typedef struct {
    size_t n;
    double t[8];
    int which[8][2];
    int stop;
} roots_rec;

static int g_half(double t, const double *y, double *g, void *u) {
    (void)t, (void)u;
    g[0] = y[0] - 0.5;
    g[1] = y[0] - 0.25;
    return 0;
}

static int on_root(double t, const double *y, const int *which, void *u) {
    roots_rec *r = u;
    (void)y;
    if (r->n < 8) r->t[r->n] = t, r->which[r->n][0] = which[0], r->which[r->n][1] = which[1];
    r->n++;
    return r->stop;
}

static void test_events(void) {
    const double tout[3] = {0.0, 0.3, 3.0};
    for (size_t m = 0; m < NMETHODS; m++) {
        const char *name = gmf_ode_method_name(methods[m]);
        for (int stop = 1; stop >= 0; stop--) {
            gmf_ode_opts o = gmf_ode_defaults();
            o.method = methods[m];
            o.rtol = 1e-10, o.atol = 1e-14;
            roots_rec r = {.stop = stop};
            o.nroots = 2, o.roots = g_half, o.on_root = on_root, o.hook_user = &r;
            double y = 1.0;
            rec ob = {0};
            gmf_ode_stats st;
            int rc = gmf_ode_solve(1, decay, NULL, &y, tout, 3, &o, obs_decay, &ob, &st);
            CHECK(rc == 0, "%s: %s", name, gmf_errmsg());
            if (stop) {
                CHECK(r.n == 1 && r.which[0][0] == -1 && r.which[0][1] == 0, "%s stop: %zu events",
                      name, r.n);
                CHECK_CLOSE(r.t[0], log(2.0), 1e-8, 0, "%s: event time", name);
                CHECK_CLOSE(y, 0.5, 1e-8, 0, "%s: state at the event", name);
                CHECK(st.stopped && st.t_reached == r.t[0] && ob.calls == 3 && ob.tlast == r.t[0],
                      "%s: stop: observer called at the event (calls %zu, t %g)", name, ob.calls,
                      ob.tlast);
            } else {
                CHECK(r.n == 2 && r.which[0][0] == -1 && r.which[1][1] == -1,
                      "%s continue: %zu events", name, r.n);
                CHECK_CLOSE(r.t[0], log(2.0), 1e-8, 0, "%s: first event time", name);
                CHECK_CLOSE(r.t[1], log(4.0), 1e-8, 0, "%s: second event time", name);
                CHECK(!st.stopped && ob.calls == 3 && st.t_reached == 3.0,
                      "%s continue: ran to the end", name);
                CHECK_CLOSE(y, exp(-3.0), 1e-7, 0, "%s: final state", name);
            }
        }
        /* rising only: y - 1/2 falls, so no event */
        gmf_ode_opts o = gmf_ode_defaults();
        o.method = methods[m];
        roots_rec r = {.stop = 1};
        const int dir[2] = {1, 1};
        o.nroots = 2, o.roots = g_half, o.on_root = on_root, o.hook_user = &r, o.root_dir = dir;
        double y = 1.0;
        int rc = gmf_ode_solve(1, decay, NULL, &y, tout, 3, &o, NULL, NULL, NULL);
        CHECK(rc == 0 && r.n == 0, "%s: a rising-only event fired on a falling function", name);
    }
}

/* ------------------------------------------------------------------ auto */

#define STIFF_L 1e4
static int stiff(double t, const double *y, double *f, void *u) {
    (void)u;
    f[0] = -STIFF_L * (y[0] - sin(t)) + cos(t);
    return 0;
}

static void test_auto(void) {
    const double tout[2] = {0.0, 50.0};
    double yend[3];
    long steps[3];
    const gmf_ode_method ms[3] = {GMF_ODE_AUTO, GMF_ODE_CVODE_BDF, GMF_ODE_CVODE_ADAMS};
    for (int i = 0; i < 3; i++) {
        gmf_ode_opts o = gmf_ode_defaults();
        o.method = ms[i];
        o.max_steps = 10000000;
        double y = 1.0;
        gmf_ode_stats st;
        int rc = gmf_ode_solve(1, stiff, NULL, &y, tout, 2, &o, NULL, NULL, &st);
        CHECK(rc == 0, "%s: %s", gmf_ode_method_name(ms[i]), gmf_errmsg());
        yend[i] = y, steps[i] = st.nsteps;
        const double exact = sin(50.0) + exp(-STIFF_L * 50.0);
        CHECK_CLOSE(y, exact, 1e-6, 1e-8, "%s: y(50)", gmf_ode_method_name(ms[i]));
        if (ms[i] == GMF_ODE_AUTO) {
            CHECK(st.nswitch == 1 && st.t_switch[0] > 0 && st.t_switch[0] < 50.0 &&
                      st.method_last == GMF_ODE_CVODE_BDF,
                  "auto: %d switches (first at t = %g), last method %s", st.nswitch, st.t_switch[0],
                  gmf_ode_method_name(st.method_last));
            printf("auto: switched to bdf at t = %.3g\n", st.t_switch[0]);
        }
    }
    CHECK_CLOSE(yend[0], yend[1], 1e-6, 1e-8, "auto vs bdf");
    CHECK(steps[0] * 10 < steps[2], "auto took %ld steps, adams %ld (want 10x fewer)", steps[0],
          steps[2]);
    printf("steps: auto %ld, bdf %ld, adams %ld\n", steps[0], steps[1], steps[2]);

    /* a non-stiff problem: auto must not switch */
    gmf_ode_opts o = gmf_ode_defaults();
    double y = 1.0;
    gmf_ode_stats st;
    const double t2[2] = {0.0, 20.0};
    int rc = gmf_ode_solve(1, decay, NULL, &y, t2, 2, &o, NULL, NULL, &st);
    CHECK(rc == 0 && st.nswitch == 0 && st.method_last == GMF_ODE_CVODE_ADAMS,
          "auto switched on y' = -y (%d switches)", st.nswitch);
}

/* ------------------------------------------------------------------ stall */

static int blowup(double t, const double *y, double *f, void *u) {
    (void)t, (void)u;
    f[0] = 1.0 + y[0] * y[0];
    return 0;
}

static int slow(double t, const double *y, double *f, void *u) {
    (void)t, (void)u;
    struct timespec ts = {0, 2000000}; /* 2 ms per evaluation */
    nanosleep(&ts, NULL);
    f[0] = -y[0];
    return 0;
}

/* a fast oscillation: every method's steps stay ~1e-9 while t ~ 1 */
static int oscillate(double t, const double *y, double *f, void *u) {
    (void)y, (void)u;
    f[0] = cos(1e8 * t);
    return 0;
}

static void test_stall(void) {
    for (size_t m = 0; m < NMETHODS; m++) {
        gmf_ode_opts o = gmf_ode_defaults();
        o.method = methods[m];
        o.max_steps = 100000000;
        const double t2[2] = {1.0, 10.0};
        double y = 0.0;
        const double w0 = wall();
        int rc = gmf_ode_solve(1, oscillate, NULL, &y, t2, 2, &o, NULL, NULL, NULL);
        CHECK(rc != 0 && strstr(gmf_errmsg(), "steps advanced t by only") && wall() - w0 < 5.0,
              "%s: oscillation: rc %d after %.2f s: %s", gmf_ode_method_name(methods[m]), rc,
              wall() - w0, gmf_errmsg());
    }

    const double tout[2] = {0.0, 2.0};
    for (size_t m = 0; m < NMETHODS; m++) {
        gmf_ode_opts o = gmf_ode_defaults();
        o.method = methods[m];
        o.max_steps = 100000000;
        double y = 0.0;
        gmf_ode_stats st;
        const double w0 = wall();
        int rc = gmf_ode_solve(1, blowup, NULL, &y, tout, 2, &o, NULL, NULL, &st);
        const double dt = wall() - w0;
        const char *msg = gmf_errmsg();
        CHECK(rc != 0 && dt < 5.0, "%s: tan t to t = 2: rc %d after %.2f s",
              gmf_ode_method_name(methods[m]), rc, dt);
        CHECK(strstr(msg, "no progress") && strstr(msg, "at t = 1.57"), "%s: message: %s",
              gmf_ode_method_name(methods[m]), msg);
        printf("%s: stopped after %.2f s, %ld steps: %.160s...\n", gmf_ode_method_name(methods[m]),
               dt, st.nsteps, msg);
    }
    /* wall clock: with 2 ms per RHS and a window of 0.3 s that must advance t by 1e6 |t| (which
     * no step can), the wall-clock detector fires after the first window */
    gmf_ode_opts o = gmf_ode_defaults();
    o.method = GMF_ODE_GSL_RKF45;
    o.stall_seconds = 0.3, o.stall_frac = 1e6, o.stall_steps = 0;
    o.h0 = 1e-3;
    const double t2[2] = {0.0, 1e6};
    double y = 1.0;
    const double w0 = wall();
    int rc = gmf_ode_solve(1, slow, NULL, &y, t2, 2, &o, NULL, NULL, NULL);
    CHECK(rc != 0 && strstr(gmf_errmsg(), "s of wall time") && wall() - w0 < 3.0,
          "wall-clock stall: rc %d after %.2f s: %s", rc, wall() - w0, gmf_errmsg());
}

/* ------------------------------------------------------------------ monotone scalar */

static int sc_minus(double t, const double *y, double *v, void *u) {
    (void)t, (void)u;
    *v = -y[0]; /* increases as y decays */
    return 0;
}
static int sc_square(double t, const double *y, double *v, void *u) {
    (void)t, (void)u;
    *v = y[0] * y[0];
    return 0;
}

static void test_monotone(void) {
    const double tout[3] = {0.0, 1.0, 2.0};
    for (size_t m = 0; m < NMETHODS; m++) {
        gmf_ode_opts o = gmf_ode_defaults();
        o.method = methods[m];
        o.scalar = sc_minus, o.scalar_name = "energy";
        double y = 1.0;
        int rc = gmf_ode_solve(1, decay, NULL, &y, tout, 3, &o, NULL, NULL, NULL);
        CHECK(rc == GMF_EDIVERGE && strstr(gmf_errmsg(), "energy increased"), "%s: %d %s",
              gmf_ode_method_name(methods[m]), rc, gmf_errmsg());
        o.scalar = sc_square;
        y = 1.0;
        rc = gmf_ode_solve(1, decay, NULL, &y, tout, 3, &o, NULL, NULL, NULL);
        CHECK(rc == 0, "%s: decreasing scalar: %s", gmf_ode_method_name(methods[m]), gmf_errmsg());
        /* scalar_atol: -y rises by 1 - e^-2 = 0.8647 over [0, 2]: slack 0.9 lets it pass, 0.85
         * (below the rise; the relative part adds only 1e-6) does not, a negative one is refused */
        o.scalar = sc_minus;
        const double slack[3] = {0.9, 0.85, -1.0};
        const int want[3] = {GMF_OK, GMF_EDIVERGE, GMF_EINVAL};
        for (int i = 0; i < 3; i++) {
            o.scalar_atol = slack[i];
            y = 1.0;
            rc = gmf_ode_solve(1, decay, NULL, &y, tout, 3, &o, NULL, NULL, NULL);
            CHECK(rc == want[i], "%s: scalar_atol %g: rc %d (want %d): %s",
                  gmf_ode_method_name(methods[m]), slack[i], rc, want[i], gmf_errmsg());
        }
    }
}

int main(void) {
    test_dense();
    test_events();
    test_auto();
    test_stall();
    test_monotone();
    return tu_finish("test_ode_driver");
}
