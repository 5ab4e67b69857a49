/* ode.c -- one driver over SUNDIALS CVODE and GSL odeiv2.
 *
 * CVODE: Adams-Moulton with the fixed-point nonlinear solver (the gradient flows here are not
 * stiff at moderate tolerances, and fixed point needs no Jacobian), or BDF with Newton and a
 * matrix-free SPGMR linear solver (Jacobian-vector products by CVODE's difference quotients), for
 * stiff problems.  Both keep memory O(N): a dense Jacobian of a K (D + D^2) state would not be.
 * GSL: explicit embedded Runge-Kutta pairs (rk8pd, rkf45) through gsl_odeiv2_driver, with the
 * standard error control |err_i| <= atol + rtol |y_i|, the same form as CVODE's weights, and
 * (unless the caller sets h0) the Hairer-Norsett-Wanner initial step (gsl_initial_step).
 *
 * Both run step by step (CVODE in CV_ONE_STEP mode with a stop time at the end, GSL through
 * gsl_odeiv2_evolve_apply towards each output time), so that between steps the driver can give
 * dense output, switch methods (auto), locate events, detect stalls, check the monitored scalar
 * and report progress (the "monitor" section below).
 */
#include "gmflow/ode.h"

#include <cvode/cvode.h>
#include <errno.h>
#include <float.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_odeiv2.h>
#include <math.h>
#include <nvector/nvector_serial.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sundials/sundials_context.h>
#include <sunlinsol/sunlinsol_dense.h>
#include <sunlinsol/sunlinsol_spgmr.h>
#include <sunmatrix/sunmatrix_dense.h>
#include <sunnonlinsol/sunnonlinsol_fixedpoint.h>
#include <time.h>

#include "gmflow/common.h"
#include "ode_lapack.h"

static const char *method_names[] = {"adams", "bdf", "rk8pd", "rkf45", "auto"};
static const char *norm_names[] = {"max", "rms"};

int gmf_ode_norm_parse(const char *name, gmf_ode_norm *out) {
    for (int i = 0; i < (int)(sizeof norm_names / sizeof norm_names[0]); i++)
        if (!strcmp(name, norm_names[i])) {
            *out = (gmf_ode_norm)i;
            return GMF_OK;
        }
    return gmf_error(GMF_EINVAL, "unknown error norm '%s' (choose max or rms)", name);
}

const char *gmf_ode_norm_name(gmf_ode_norm n) {
    return (unsigned)n < sizeof norm_names / sizeof norm_names[0] ? norm_names[n] : "?";
}

int gmf_ode_method_parse(const char *name, gmf_ode_method *out) {
    for (int i = 0; i < (int)(sizeof method_names / sizeof method_names[0]); i++)
        if (!strcmp(name, method_names[i])) {
            *out = (gmf_ode_method)i;
            return GMF_OK;
        }
    return gmf_error(GMF_EINVAL, "unknown method '%s' (choose auto, adams, bdf, rk8pd or rkf45)",
                     name);
}

const char *gmf_ode_method_name(gmf_ode_method m) {
    return (unsigned)m < sizeof method_names / sizeof method_names[0] ? method_names[m] : "?";
}

gmf_ode_opts gmf_ode_defaults(void) {
    gmf_ode_opts o = {.method = GMF_ODE_AUTO,
                      .rtol = 1e-8,
                      .atol = 1e-10,
                      .max_steps = 100000,
                      .h0 = 0.0,
                      .jvp = NULL,
                      .jac = NULL,
                      .jacobian = GMF_ODE_JAC_AUTO,
                      .auto_window = 100,
                      .auto_fail_frac = 0.04,
                      .auto_hrho = 0.05,
                      .auto_min_steps = 2000,
                      .stall_hrel = 1e-12,
                      .stall_steps = 10000,
                      .stall_seconds = 10.0,
                      .stall_frac = 1e-3,
                      .gsl_norm = GMF_ODE_NORM_MAX};
    return o;
}

typedef struct {
    gmf_ode_rhs f;
    void *user;
    long nfevals;
    int rhs_failed;  /* the user's RHS returned < 0 (or its exact JVP / Jacobian) */
    int hook_failed; /* an event function failed */
    gmf_ode_jvp jvp; /* exact Jacobian information, set by attach_linsol */
    gmf_ode_jac jac;
    char msg[512]; /* CVODE's last error message */
    /* the monitor (see below) */
    const gmf_ode_opts *o;
    size_t N;
    const double *tout;
    size_t ntout, jnext; /* jnext: the next output index */
    gmf_ode_observer obs;
    void *obs_user;
    gmf_ode_stats *st;      /* never NULL here */
    gmf_ode_method cur;     /* the method stepping now */
    long nsteps, steps_out; /* steps so far; since the last output time */
    double wall0, tick;     /* start, last progress report */
    long sw_n;              /* step-count stall window: start step and time */
    double sw_t;            /* " */
    double ww_wall, ww_t;   /* wall-time stall window: start and time */
    long aw_n, aw_f;        /* auto: window start (steps, convergence failures) */
    int have_min;           /* the monitored scalar: smallest value so far and its time */
    double smin, tmin, srtol;
    double slast; /* the scalar at the last check (NAN before one), for progress */
} driver_data;

/* The monitored scalar is checked at every output time and event and every SCALAR_EVERY steps:
 * a step count, never a clock, so that replicated integrators (MPI ranks, docs/SCALE.md) call
 * it -- an oracle evaluation, collective under MPI -- at the same steps. */
#define SCALAR_EVERY 50

static int check_args(size_t N, const double *y, const double *tout, size_t ntout,
                      const gmf_ode_opts *o) {
    if (N == 0) return gmf_error(GMF_EINVAL, "ODE: empty state");
    if (ntout < 1) return gmf_error(GMF_EINVAL, "ODE: no output times");
    for (size_t j = 0; j < ntout; j++)
        if (!isfinite(tout[j]) || (j > 0 && !(tout[j] > tout[j - 1])))
            return gmf_error(GMF_EINVAL,
                             "ODE: output times must be finite and strictly "
                             "increasing (tout[%zu] = %g)",
                             j, tout[j]);
    if (!(o->rtol > 0) || !(o->atol >= 0) || !isfinite(o->rtol) || !isfinite(o->atol))
        return gmf_error(GMF_EINVAL, "ODE: need rtol > 0 and atol >= 0 (got rtol=%g, atol=%g)",
                         o->rtol, o->atol);
    if (o->max_steps <= 0)
        return gmf_error(GMF_EINVAL, "ODE: max_steps must be positive (got %ld)", o->max_steps);
    if (!gmf_all_finite(y, N)) return gmf_error(GMF_EINVAL, "ODE: initial state is not finite");
    if (!(o->stall_hrel >= 0) || o->stall_steps < 0 || !(o->stall_seconds >= 0) ||
        !(o->stall_frac >= 0) || !(o->progress_seconds >= 0) || isnan(o->scalar_rtol) ||
        !(o->scalar_atol >= 0) || !isfinite(o->scalar_atol))
        return gmf_error(GMF_EINVAL, "ODE: stall and progress settings must be >= 0");
    if (o->method == GMF_ODE_AUTO && (o->auto_window < 1 || !(o->auto_fail_frac >= 0) ||
                                      !(o->auto_hrho >= 0) || o->auto_min_steps < 0))
        return gmf_error(GMF_EINVAL, "ODE: auto needs auto_window >= 1 and auto_fail_frac, "
                                     "auto_hrho, auto_min_steps >= 0");
    if (o->nroots && !o->roots) return gmf_error(GMF_EINVAL, "ODE: nroots > 0 without roots");
    if (o->gsl_norm != GMF_ODE_NORM_MAX && o->gsl_norm != GMF_ODE_NORM_RMS)
        return gmf_error(GMF_EINVAL, "ODE: unknown GSL error norm %d (max or rms)", o->gsl_norm);
    return GMF_OK;
}

/* A copy of the RHS's own message: gmf_error() formats into the buffer that gmf_errmsg() returns,
 * so that message must not be passed to it directly. */
static const char *rhs_reason(char *buf, size_t len) {
    snprintf(buf, len, "%s", gmf_errmsg());
    return buf;
}

/* ---------------------------------------------------------------- monitor
 * Called by both drivers between steps: outputs, events, stalls, the monotone scalar, progress. */

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *scalar_name(const driver_data *dd) {
    return dd->o->scalar_name ? dd->o->scalar_name : "monitored value";
}

/* Evaluate the monitored scalar at (t, y) (NAN in *out without one) and check that it has not
 * increased beyond the tolerance over the smallest value seen so far. */
static int scalar_check(driver_data *dd, double t, const double *y, double *out) {
    const gmf_ode_opts *o = dd->o;
    if (out) *out = NAN;
    if (!o->scalar) return GMF_OK;
    double v = NAN;
    int rc = o->scalar(t, y, &v, o->hook_user);
    if (rc) return rc < 0 ? rc : GMF_ESOLVER;
    if (out) *out = v;
    if (!isfinite(v))
        return gmf_error(GMF_EDIVERGE, "ODE (%s): the %s is not finite (%g) at t = %.10g",
                         gmf_ode_method_name(dd->cur), scalar_name(dd), v, t);
    const double allowed = dd->srtol * fabs(dd->smin) + o->scalar_atol + 1e-300;
    if (dd->srtol >= 0 && dd->have_min && v - dd->smin > allowed)
        return gmf_error(GMF_EDIVERGE,
                         "ODE (%s): the %s increased from %.10g at t = %.10g to %.10g at t = %.10g "
                         "(relative increase %.3g, allowed %.3g + %g absolute): it cannot increase "
                         "along a gradient flow, so the computed solution is wrong; tighten the "
                         "tolerances (rtol %g, atol %g)",
                         gmf_ode_method_name(dd->cur), scalar_name(dd), dd->smin, dd->tmin, v, t,
                         (v - dd->smin) / fmax(fabs(dd->smin), 1e-300), dd->srtol, o->scalar_atol,
                         o->rtol, o->atol);
    if (!dd->have_min || v < dd->smin) dd->smin = v, dd->tmin = t, dd->have_min = 1;
    return GMF_OK;
}

/* Output j at (t, y).  GMF_OK, 1 if the observer stopped the run, or an error. */
static int emit(driver_data *dd, size_t j, double t, const double *y) {
    int rc = scalar_check(dd, t, y, NULL);
    if (rc) return rc;
    dd->st->nout++;
    dd->steps_out = 0;
    dd->st->t_reached = t;
    if (dd->obs && dd->obs(j, t, y, dd->obs_user)) {
        dd->st->stopped = 1;
        return 1;
    }
    return GMF_OK;
}

/* An event at (t, y): on_root decides.  GMF_OK to go on, 1 to stop (after a last observer call
 * at the event), or an error. */
static int handle_root(driver_data *dd, double t, const double *y, const int *which) {
    const gmf_ode_opts *o = dd->o;
    int r = o->on_root ? o->on_root(t, y, which, o->hook_user) : 1;
    if (r < 0) return r;
    int rc = scalar_check(dd, t, y, NULL);
    if (rc) return rc;
    if (r == 0) return GMF_OK;
    dd->st->stopped = 1;
    dd->st->t_reached = t;
    dd->st->nout++;
    if (dd->obs) (void)dd->obs(dd->jnext, t, y, dd->obs_user);
    return 1;
}

static int stall_error(driver_data *dd, double t, double h, const double *y, const char *what) {
    char diag[512] = "";
    if (dd->o->diagnose) dd->o->diagnose(t, y, diag, sizeof diag, dd->o->hook_user);
    return gmf_error(GMF_ESOLVER,
                     "ODE (%s): no progress at t = %.10g (step size %.3g, %ld steps): %s.%s%s "
                     "The solution is probably approaching a singularity. What to try: stop "
                     "before it with an event (e.g. a component-collapse or gradient-norm event), "
                     "continue from a state saved just before, or try another method or looser "
                     "tolerances",
                     gmf_ode_method_name(dd->cur), t, h, dd->nsteps, what, diag[0] ? " " : "",
                     diag);
}

/* After every accepted step to (t, y) of size h. */
static int monitor_step(driver_data *dd, double t, double h, const double *y) {
    const gmf_ode_opts *o = dd->o;
    char what[256];
    dd->nsteps++;
    dd->st->t_reached = t;
    if (++dd->steps_out > o->max_steps)
        return gmf_error(GMF_ESOLVER,
                         "ODE (%s): more than max_steps = %ld internal steps between output times "
                         "%.10g and %.10g (reached t = %.10g, step size %.3g); raise max_steps or "
                         "add output times",
                         gmf_ode_method_name(dd->cur), o->max_steps, dd->tout[dd->jnext - 1],
                         dd->tout[dd->jnext], t, h);
    /* progress is measured relative to the time reached (log-time), the natural clock of long
     * horizons: a window must advance t by stall_frac max(|t|, t - t0) */
    const double need = o->stall_frac * fmax(fabs(t), t - dd->tout[0]);
    /* (not when the whole span is itself that short: a step is then legitimately tiny) */
    if (o->stall_hrel > 0 && fabs(h) < o->stall_hrel * fabs(t) &&
        dd->tout[dd->ntout - 1] - dd->tout[0] > 1e3 * fabs(h)) {
        snprintf(what, sizeof what, "the step size collapsed below %g |t|", o->stall_hrel);
        return stall_error(dd, t, h, y, what);
    }
    if (o->stall_steps > 0 && dd->nsteps - dd->sw_n >= o->stall_steps) {
        if (t - dd->sw_t < need) {
            snprintf(what, sizeof what, "the last %ld steps advanced t by only %.3g (< %g |t|)",
                     dd->nsteps - dd->sw_n, t - dd->sw_t, o->stall_frac);
            return stall_error(dd, t, h, y, what);
        }
        dd->sw_n = dd->nsteps, dd->sw_t = t;
    }
    const double now = wall_now();
    if (o->stall_seconds > 0 && now - dd->ww_wall >= o->stall_seconds) {
        if (t - dd->ww_t < need) {
            snprintf(what, sizeof what,
                     "the last %.1f s of wall time advanced t by only %.3g (< %g |t|)",
                     now - dd->ww_wall, t - dd->ww_t, o->stall_frac);
            return stall_error(dd, t, h, y, what);
        }
        dd->ww_wall = now, dd->ww_t = t;
    }
    if (dd->nsteps % SCALAR_EVERY == 0) {
        int rc = scalar_check(dd, t, y, &dd->slast);
        if (rc) return rc;
    }
    /* progress about every progress_seconds: reports only (the last checked scalar), so that
     * the clock decides nothing */
    if (o->progress && o->progress_seconds > 0 && now - dd->tick >= o->progress_seconds) {
        dd->tick = now;
        gmf_ode_progress_info p = {.t = t,
                                   .h = h,
                                   .nsteps = dd->nsteps,
                                   .nfevals = dd->nfevals,
                                   .wall = now - dd->wall0,
                                   .scalar = dd->slast,
                                   .method = dd->cur};
        o->progress(&p, o->progress_user);
    }
    return GMF_OK;
}

/* ---------------------------------------------------------------- CVODE */

static int cv_rhs(sunrealtype t, N_Vector y, N_Vector ydot, void *ud) {
    driver_data *dd = ud;
    dd->nfevals++;
    int rc = dd->f(t, N_VGetArrayPointer(y), N_VGetArrayPointer(ydot), dd->user);
    if (rc < 0) dd->rhs_failed = 1;
    return rc;
}

static void cv_err(int code, const char *module, const char *function, char *msg, void *ud) {
    (void)code;
    driver_data *dd = ud;
    snprintf(dd->msg, sizeof dd->msg, "%s/%s: %s", module, function, msg);
}

/* CVodeGetReturnFlagName returns a malloc'd string (SUNDIALS 6): copy it and free it. */
static void flag_name(int flag, char *buf, size_t len) {
    char *name = CVodeGetReturnFlagName(flag);
    snprintf(buf, len, "%s", name ? name : "unknown flag");
    free(name);
}

#define CV_TRY(call)                                                                               \
    do {                                                                                           \
        int flag_ = (call);                                                                        \
        if (flag_ < 0) {                                                                           \
            char name_[64];                                                                        \
            flag_name(flag_, name_, sizeof name_);                                                 \
            rc = gmf_error(GMF_ESOLVER, "CVODE setup failed in %s: %s", #call, name_);             \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

static const char *jacobian_names[] = {"auto", "dq", "jvp", "dense"};

int gmf_ode_jacobian_parse(const char *name, gmf_ode_jacobian *out) {
    for (int i = 0; i < (int)(sizeof jacobian_names / sizeof jacobian_names[0]); i++)
        if (!strcmp(name, jacobian_names[i])) {
            *out = (gmf_ode_jacobian)i;
            return GMF_OK;
        }
    return gmf_error(GMF_EINVAL, "unknown choice '%s' (choose auto, dq, jvp or dense)", name);
}

const char *gmf_ode_jacobian_name(gmf_ode_jacobian j) {
    return (unsigned)j < sizeof jacobian_names / sizeof jacobian_names[0] ? jacobian_names[j] : "?";
}

/* CVODE's Jacobian-times-vector callback over the caller's exact JVP. */
static int cv_jtimes(N_Vector v, N_Vector Jv, sunrealtype t, N_Vector y, N_Vector fy, void *ud,
                     N_Vector tmp) {
    (void)tmp;
    driver_data *dd = ud;
    int rc = dd->jvp(t, N_VGetArrayPointer(y), N_VGetArrayPointer(fy), N_VGetArrayPointer(v),
                     N_VGetArrayPointer(Jv), dd->user);
    if (rc < 0) dd->rhs_failed = 1;
    return rc;
}

/* CVODE's dense Jacobian callback: the caller fills J row-major into the (column-major) matrix
 * data, which is then transposed in place. */
static int cv_jac(sunrealtype t, N_Vector y, N_Vector fy, SUNMatrix J, void *ud, N_Vector t1,
                  N_Vector t2, N_Vector t3) {
    (void)fy, (void)t1, (void)t2, (void)t3;
    driver_data *dd = ud;
    const sunindextype N = SUNDenseMatrix_Rows(J);
    double *a = SUNDenseMatrix_Data(J);
    int rc = dd->jac(t, N_VGetArrayPointer(y), a, dd->user);
    if (rc < 0) {
        dd->rhs_failed = 1;
        return rc;
    }
    for (sunindextype i = 0; i < N; i++)
        for (sunindextype j = 0; j < i; j++) {
            const double tmp = a[i * N + j];
            a[i * N + j] = a[j * N + i];
            a[j * N + i] = tmp;
        }
    return rc;
}

/* The policy of gmf_ode_jacobian (ode.h): the solver a BDF run of size N gets. */
static int choose_jacobian(size_t N, const gmf_ode_opts *o, gmf_ode_jacobian *out) {
    gmf_ode_jacobian j = (gmf_ode_jacobian)o->jacobian;
    if (j == GMF_ODE_JAC_AUTO)
        j = o->jac && N <= GMF_ODE_DENSE_MAX ? GMF_ODE_JAC_DENSE
            : o->jvp                         ? GMF_ODE_JAC_JVP
                                             : GMF_ODE_JAC_DQ;
    if (j == GMF_ODE_JAC_JVP && !o->jvp)
        return gmf_error(GMF_EINVAL, "ODE: jacobian 'jvp' needs an exact Jacobian-vector product");
    if ((unsigned)j > GMF_ODE_JAC_DENSE)
        return gmf_error(GMF_EINVAL, "ODE: unknown jacobian choice %d", (int)j);
    *out = j;
    return GMF_OK;
}

/* The linear solver of CVODE's Newton iteration (BDF), the one place that chooses and attaches
 * it (policy: gmf_ode_jacobian in ode.h): matrix-free SPGMR with difference-quotient or exact
 * Jacobian-vector products, or a dense LU (LAPACK: ode_lapack.h) with an exact or
 * difference-quotient dense Jacobian.  *A is the dense matrix (NULL for SPGMR); *used the choice
 * made. */
static int attach_linsol(void *mem, N_Vector v, SUNContext ctx, driver_data *dd,
                         const gmf_ode_opts *o, SUNLinearSolver *LS, SUNMatrix *A,
                         gmf_ode_jacobian *used) {
    const size_t N = (size_t)N_VGetLength(v);
    int rc = choose_jacobian(N, o, used), flag;
    if (rc) return rc;
    if (*used == GMF_ODE_JAC_DENSE) {
        *A = SUNDenseMatrix((sunindextype)N, (sunindextype)N, ctx);
        *LS = *A ? gmf_ode_lapack_dense(v, ctx) : NULL; /* LAPACK's LU (ode_lapack.h) */
        if (!*LS)
            return gmf_error(GMF_ESOLVER,
                             "CVODE: could not create the dense linear solver "
                             "(N = %zu)",
                             N);
    } else {
        *LS = SUNLinSol_SPGMR(v, SUN_PREC_NONE, 0, ctx);
        if (!*LS) return gmf_error(GMF_ESOLVER, "CVODE: could not create the SPGMR linear solver");
    }
    if ((flag = CVodeSetLinearSolver(mem, *LS, *A)) != CV_SUCCESS)
        return gmf_error(GMF_ESOLVER, "CVODE: CVodeSetLinearSolver failed (flag %d)", flag);
    if (*used == GMF_ODE_JAC_DENSE && o->jac) {
        dd->jac = o->jac;
        if ((flag = CVodeSetJacFn(mem, cv_jac)) != CV_SUCCESS)
            return gmf_error(GMF_ESOLVER, "CVODE: CVodeSetJacFn failed (flag %d)", flag);
    }
    if (*used == GMF_ODE_JAC_JVP) {
        dd->jvp = o->jvp;
        if ((flag = CVodeSetJacTimes(mem, NULL, cv_jtimes)) != CV_SUCCESS)
            return gmf_error(GMF_ESOLVER, "CVODE: CVodeSetJacTimes failed (flag %d)", flag);
    }
    return GMF_OK;
}

/* Event functions for CVODE's root finding. */
static int cv_roots(sunrealtype t, N_Vector y, sunrealtype *g, void *ud) {
    driver_data *dd = ud;
    int rc = dd->o->roots(t, N_VGetArrayPointer(y), g, dd->o->hook_user);
    if (rc) dd->hook_failed = 1;
    return rc ? -1 : 0;
}

/* One CVODE solver; with method auto it is replaced (new memory, same context and vectors) at
 * the switch, and the retired memories' counts are kept here. */
typedef struct {
    SUNContext ctx;
    N_Vector v, vd; /* the state (wraps y); a dense-output buffer */
    void *mem;
    SUNLinearSolver LS;
    SUNNonlinearSolver NLS;
    SUNMatrix A;           /* the dense Jacobian's matrix (BDF, dense) */
    gmf_ode_jacobian used; /* the BDF linear solver chosen */
    int *rootdir, *rootsfound;
    long nst, netf, nni, ncf, nli, nje, njv; /* from retired memories */
} cv_solver;

/* A fresh CVODE memory for method m (adams or bdf) at (t0, v). */
static int cv_start(cv_solver *s, driver_data *dd, gmf_ode_method m, double t0, double h0) {
    int rc = GMF_OK;
    const gmf_ode_opts *o = dd->o;
    void *mem = s->mem = CVodeCreate(m == GMF_ODE_CVODE_BDF ? CV_BDF : CV_ADAMS, s->ctx);
    if (!mem) return gmf_error(GMF_ESOLVER, "CVODE: out of memory creating the solver");
    dd->cur = m;
    CV_TRY(CVodeSetErrHandlerFn(mem, cv_err, dd));
    CV_TRY(CVodeInit(mem, cv_rhs, t0, s->v));
    CV_TRY(CVodeSetUserData(mem, dd));
    CV_TRY(CVodeSStolerances(mem, o->rtol, o->atol));
    CV_TRY(CVodeSetStopTime(mem, dd->tout[dd->ntout - 1]));
    if (h0 > 0) CV_TRY(CVodeSetInitStep(mem, h0));
    if (o->nroots) {
        CV_TRY(CVodeRootInit(mem, (int)o->nroots, cv_roots));
        CV_TRY(CVodeSetRootDirection(mem, s->rootdir));
        CV_TRY(CVodeSetNoInactiveRootWarn(mem));
    }
    if (m == GMF_ODE_CVODE_BDF) {
        rc = attach_linsol(mem, s->v, s->ctx, dd, o, &s->LS, &s->A, &s->used);
    } else {
        s->NLS = SUNNonlinSol_FixedPoint(s->v, 0, s->ctx);
        if (!s->NLS)
            return gmf_error(GMF_ESOLVER, "CVODE: could not create the fixed-point solver");
        CV_TRY(CVodeSetNonlinearSolver(mem, s->NLS));
    }
done:
    return rc;
}

/* The statistics of the current memory plus the retired ones. */
static void cv_stats(const cv_solver *s, gmf_ode_stats *st) {
    long v1 = 0;
    int q = 0;
    sunrealtype h = 0;
    st->nsteps = s->nst, st->netfails = s->netf, st->nniters = s->nni, st->nncfails = s->ncf;
    st->nliters = s->nli, st->njevals = s->nje, st->njvevals = s->njv, st->jacobian = s->used;
    if (!s->mem) return;
    if (CVodeGetNumSteps(s->mem, &v1) == CV_SUCCESS) st->nsteps += v1;
    if (CVodeGetNumErrTestFails(s->mem, &v1) == CV_SUCCESS) st->netfails += v1;
    if (CVodeGetNumNonlinSolvIters(s->mem, &v1) == CV_SUCCESS) st->nniters += v1;
    if (CVodeGetNumNonlinSolvConvFails(s->mem, &v1) == CV_SUCCESS) st->nncfails += v1;
    if (s->LS && CVodeGetNumLinIters(s->mem, &v1) == CV_SUCCESS) st->nliters += v1;
    if (s->LS && CVodeGetNumJacEvals(s->mem, &v1) == CV_SUCCESS) st->njevals += v1;
    if (s->LS && CVodeGetNumJtimesEvals(s->mem, &v1) == CV_SUCCESS) st->njvevals += v1;
    if (CVodeGetLastOrder(s->mem, &q) == CV_SUCCESS) st->qlast = q;
    if (CVodeGetLastStep(s->mem, &h) == CV_SUCCESS) st->hlast = h;
}

/* Free the current memory, keeping its counts. */
static void cv_retire(cv_solver *s) {
    gmf_ode_stats st;
    memset(&st, 0, sizeof st);
    cv_stats(s, &st);
    s->nst = st.nsteps, s->netf = st.netfails, s->nni = st.nniters, s->ncf = st.nncfails;
    s->nli = st.nliters, s->nje = st.njevals, s->njv = st.njvevals;
    CVodeFree(&s->mem);
    if (s->LS) SUNLinSolFree(s->LS);
    if (s->NLS) SUNNonlinSolFree(s->NLS);
    if (s->A) SUNMatDestroy(s->A);
    s->LS = NULL, s->NLS = NULL, s->A = NULL;
}

/* Method auto: has the last window of auto_window Adams steps had at least auto_fail_frac of
 * them end in a fixed-point convergence failure?  (The fixed-point iteration converges when h
 * times the Lipschitz constant is small; failing often means the step is held down by the
 * iteration, not by accuracy: the problem has turned stiff.) */
/* Method auto: the spectral radius of dF/dy at (t, y), by power iteration on difference
 * quotients (GMF_ODE_POWER_ITERS iterations from a fixed pseudo-random vector, one RHS call each
 * plus one for F(y)).  NAN if the RHS fails there. */
#define GMF_ODE_POWER_ITERS 8
static double spectral_radius(driver_data *dd, double t, const double *y, double *w) {
    const size_t N = dd->N;
    double *f0 = w, *v = w + N, *f1 = v + N, *yp = f1 + N;
    dd->nfevals++;
    if (dd->f(t, y, f0, dd->user)) return NAN;
    double nv = 0, ny = 0, rho = NAN;
    for (size_t i = 0; i < N; i++) {
        v[i] = (double)((i * 2654435761u) % 1000u) / 500.0 - 1.0 + 1e-3;
        nv += v[i] * v[i], ny += y[i] * y[i];
    }
    nv = sqrt(nv);
    for (size_t i = 0; i < N; i++)
        v[i] /= nv;
    const double eps = sqrt(DBL_EPSILON) * (1.0 + sqrt(ny));
    for (int it = 0; it < GMF_ODE_POWER_ITERS; it++) {
        for (size_t i = 0; i < N; i++)
            yp[i] = y[i] + eps * v[i];
        dd->nfevals++;
        if (dd->f(t, yp, f1, dd->user)) return NAN;
        double n = 0;
        for (size_t i = 0; i < N; i++)
            v[i] = (f1[i] - f0[i]) / eps, n += v[i] * v[i];
        rho = sqrt(n);
        if (!(rho > 0) || !isfinite(rho)) return rho;
        for (size_t i = 0; i < N; i++)
            v[i] /= rho;
    }
    return rho;
}

/* Method auto, at the end of every window of auto_window Adams steps: has the problem turned
 * stiff?  Either
 *   (a) at least auto_fail_frac of the window's steps ended in a fixed-point convergence failure
 *       (the iteration converges when h gamma rho is small: failing often means the iteration,
 *       not accuracy, holds the step down), or
 *   (b) Adams would still need at least auto_min_steps steps at its current step h to reach the
 *       end, and h rho >= auto_hrho, rho the spectral radius of dF/dy (power iteration, 9 RHS
 *       calls): the step sits near the stability scale 1 / rho of the fastest mode -- high-order
 *       Adams has a small stability region and stays there without any convergence failure --
 *       while BDF's step is bounded by accuracy alone. */
static int cv_stiff(const cv_solver *s, driver_data *dd) {
    const gmf_ode_opts *o = dd->o;
    long nst = 0, ncf = 0;
    sunrealtype h = 0, t = 0;
    if (CVodeGetNumSteps(s->mem, &nst) != CV_SUCCESS ||
        CVodeGetNumNonlinSolvConvFails(s->mem, &ncf) != CV_SUCCESS)
        return 0;
    if (nst - dd->aw_n < o->auto_window) return 0;
    const long fails = ncf - dd->aw_f;
    int stiff = fails >= 1 && (double)fails >= o->auto_fail_frac * (double)(nst - dd->aw_n);
    dd->aw_n = nst, dd->aw_f = ncf;
    if (stiff || CVodeGetLastStep(s->mem, &h) != CV_SUCCESS ||
        CVodeGetCurrentTime(s->mem, &t) != CV_SUCCESS || !(h > 0) ||
        (dd->tout[dd->ntout - 1] - t) / h < (double)o->auto_min_steps)
        return stiff;
    double *w = malloc(4 * dd->N * sizeof(double));
    if (!w) return 0; /* no estimate: stay with Adams */
    const double rho = spectral_radius(dd, t, N_VGetArrayPointer(s->v), w);
    free(w);
    dd->rhs_failed = 0; /* a failure at a probe point is not the solution's */
    return h * rho >= o->auto_hrho;
}

/* Method auto: continue from (t, y) with BDF, starting from the current step size. */
static int cv_switch(cv_solver *s, driver_data *dd, double t) {
    sunrealtype h = 0;
    if (CVodeGetCurrentStep(s->mem, &h) != CV_SUCCESS) h = 0;
    cv_retire(s);
    gmf_ode_stats *st = dd->st;
    if (st->nswitch < GMF_ODE_MAX_SWITCH) st->t_switch[st->nswitch] = t;
    st->nswitch++;
    return cv_start(s, dd, GMF_ODE_CVODE_BDF, t, fabs(h));
}

static int cv_fail(driver_data *dd, int flag, double t) {
    char why[512], name[64];
    if (dd->rhs_failed)
        return gmf_error(GMF_ESOLVER, "CVODE stopped at t = %.6g: the right-hand side failed: %s",
                         t, rhs_reason(why, sizeof why));
    if (dd->hook_failed)
        return gmf_error(GMF_ESOLVER, "CVODE stopped at t = %.6g: an event function failed: %s", t,
                         rhs_reason(why, sizeof why));
    flag_name(flag, name, sizeof name);
    return gmf_error(GMF_ESOLVER, "CVODE failed at t = %.6g (%s): %s", t, name, dd->msg);
}

/* Outputs passed by the step that ended at t (dense output inside the step).  GMF_OK, 1 if the
 * observer stopped the run (y then holds the output's state), or an error. */
static int cv_outputs(cv_solver *s, driver_data *dd, double t, double *y) {
    while (dd->jnext < dd->ntout && dd->tout[dd->jnext] <= t) {
        const double tj = dd->tout[dd->jnext];
        const double *yj = y;
        if (tj < t) {
            int flag = CVodeGetDky(s->mem, tj, 0, s->vd);
            if (flag != CV_SUCCESS) return cv_fail(dd, flag, tj);
            yj = N_VGetArrayPointer(s->vd);
        }
        int rc = emit(dd, dd->jnext, tj, yj);
        if (rc == 1 && yj != y) memcpy(y, yj, dd->N * sizeof(double));
        if (rc) return rc;
        dd->jnext++;
    }
    return GMF_OK;
}

static int cv_loop(cv_solver *s, driver_data *dd, double *y) {
    const double tend = dd->tout[dd->ntout - 1];
    while (dd->jnext < dd->ntout) {
        sunrealtype t = 0, h = 0;
        int flag = CVode(s->mem, tend, s->v, &t, CV_ONE_STEP);
        if (flag < 0) return cv_fail(dd, flag, t);
        dd->st->t_reached = t;
        int rc = cv_outputs(s, dd, flag == CV_TSTOP_RETURN ? tend : t, y);
        if (rc) return rc > 0 ? GMF_OK : rc;
        if (flag == CV_ROOT_RETURN) {
            if ((flag = CVodeGetRootInfo(s->mem, s->rootsfound)) != CV_SUCCESS)
                return cv_fail(dd, flag, t);
            rc = handle_root(dd, t, y, s->rootsfound);
            if (rc) return rc > 0 ? GMF_OK : rc;
            continue;
        }
        if (dd->jnext >= dd->ntout) break;
        if (CVodeGetLastStep(s->mem, &h) != CV_SUCCESS) h = 0;
        if ((rc = monitor_step(dd, t, h, y)) != GMF_OK) return rc;
        if (dd->o->method == GMF_ODE_AUTO && dd->cur == GMF_ODE_CVODE_ADAMS && cv_stiff(s, dd) &&
            (rc = cv_switch(s, dd, t)) != GMF_OK)
            return rc;
    }
    return GMF_OK;
}

static int solve_cvode(size_t N, driver_data *dd, double *y) {
    const gmf_ode_opts *o = dd->o;
    int rc = GMF_OK;
    cv_solver s;
    memset(&s, 0, sizeof s);
    s.used = GMF_ODE_JAC_DQ;
    if (SUNContext_Create(NULL, &s.ctx) != 0)
        return gmf_error(GMF_ESOLVER, "CVODE: SUNContext_Create failed");
    s.v = N_VMake_Serial((sunindextype)N, y, s.ctx); /* wraps y: the solution lands in y */
    s.vd = N_VNew_Serial((sunindextype)N, s.ctx);
    if (o->nroots) {
        s.rootdir = calloc(o->nroots, sizeof(int));
        s.rootsfound = calloc(o->nroots, sizeof(int));
    }
    if (!s.v || !s.vd || (o->nroots && (!s.rootdir || !s.rootsfound))) {
        rc = gmf_error(GMF_ENOMEM, "CVODE: out of memory creating the solver");
        goto done;
    }
    for (size_t i = 0; i < o->nroots; i++)
        s.rootdir[i] = o->root_dir ? o->root_dir[i] : 0;
    rc = cv_start(&s, dd, o->method == GMF_ODE_AUTO ? GMF_ODE_CVODE_ADAMS : o->method, dd->tout[0],
                  o->h0);
    if (rc) goto done;
    rc = emit(dd, 0, dd->tout[0], y);
    dd->jnext = 1;
    if (rc == GMF_OK) rc = cv_loop(&s, dd, y);
    if (rc > 0) rc = GMF_OK;
done:
    cv_stats(&s, dd->st);
    dd->st->method_last = dd->cur;
    if (s.mem) cv_retire(&s);
    free(s.rootdir), free(s.rootsfound);
    if (s.vd) N_VDestroy(s.vd);
    if (s.v) N_VDestroy(s.v);
    SUNContext_Free(&s.ctx);
    return rc;
}

/* ---------------------------------------------------------------- GSL */

static int gsl_rhs(double t, const double y[], double ydot[], void *ud) {
    driver_data *dd = ud;
    dd->nfevals++;
    int rc = dd->f(t, y, ydot, dd->user);
    if (rc < 0) {
        dd->rhs_failed = 1;
        return GSL_EBADFUNC; /* makes the driver stop and return at once */
    }
    return rc > 0 ? GSL_EDOM : GSL_SUCCESS;
}

/* The initial step for the GSL drivers when the caller gives none: the Hairer-Norsett-Wanner
 * estimate (Solving ODEs I, II.4, "starting step size"; the same rule as SciPy's
 * select_initial_step), with the error estimator's order (7 for rk8pd, 4 for rkf45, as SciPy
 * uses for DOP853 and RK45).  With sc_i = atol + rtol |y0_i| and the RMS norm |v| over v_i / sc_i:
 *
 *   d0 = |y0|, d1 = |f(y0)|;  h0 = 0.01 d0 / d1 (1e-6 if either is < 1e-5), at most span;
 *   d2 = |f(y0 + h0 f(y0)) - f(y0)| / h0;
 *   h1 = (0.01 / max(d1, d2))^(1 / (order + 1))  (max(1e-6, 1e-3 h0) if both are <= 1e-15);
 *   h  = min(100 h0, h1, span).
 *
 * It costs two right-hand side calls (counted in nfevals).  GSL's controller grows a step at most
 * 5x per step, so starting from a fixed tiny step (1e-6 max(1, span), the fallback below) costs
 * about 6 steps ramping up: 70-80 of rk8pd's evaluations (docs/PERFORMANCE.md, P2).
 * Sets *h and returns GSL_SUCCESS, or GSL_EBADFUNC if the RHS failed fatally at y0 (the caller
 * reports it).  A recoverable failure, a failure at the probe point y0 + h0 f(y0), or a step that
 * is not finite and positive (atol = 0 with a zero y0_i makes sc_i = 0) falls back to the
 * fixed step 1e-6 max(1, span). */
static int gsl_initial_step(size_t N, driver_data *dd, const double *y0, double t0, double span,
                            int order, double rtol, double atol, double *h) {
    *h = 1e-6 * fmax(1.0, span);
    if (!(span > 0.0)) return GSL_SUCCESS; /* a single output time: no step is taken */
    double *f0 = malloc(3 * N * sizeof(double));
    if (!f0) return GSL_SUCCESS;
    double *y1 = f0 + N, *f1 = y1 + N;
    int rc = gsl_rhs(t0, y0, f0, dd);
    if (rc != GSL_SUCCESS) {
        free(f0);
        return rc == GSL_EBADFUNC ? rc : GSL_SUCCESS;
    }
    double d0 = 0.0, d1 = 0.0, d2 = 0.0;
    for (size_t i = 0; i < N; i++) {
        const double sc = atol + rtol * fabs(y0[i]);
        d0 += (y0[i] / sc) * (y0[i] / sc);
        d1 += (f0[i] / sc) * (f0[i] / sc);
    }
    d0 = sqrt(d0 / (double)N);
    d1 = sqrt(d1 / (double)N);
    double h0 = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
    h0 = fmin(h0, span);
    if (!(h0 > 0.0 && isfinite(h0))) goto done;
    for (size_t i = 0; i < N; i++)
        y1[i] = y0[i] + h0 * f0[i];
    if (gsl_rhs(t0 + h0, y1, f1, dd) != GSL_SUCCESS) {
        dd->rhs_failed = 0; /* the probe point is not on the solution: use the fixed rule */
        goto done;
    }
    for (size_t i = 0; i < N; i++) {
        const double sc = atol + rtol * fabs(y0[i]);
        d2 += ((f1[i] - f0[i]) / sc) * ((f1[i] - f0[i]) / sc);
    }
    d2 = sqrt(d2 / (double)N) / h0;
    const double h1 = (d1 <= 1e-15 && d2 <= 1e-15) ? fmax(1e-6, 1e-3 * h0)
                                                   : pow(0.01 / fmax(d1, d2), 1.0 / (order + 1));
    const double est = fmin(fmin(100.0 * h0, h1), span);
    if (est > 0.0 && isfinite(est)) *h = est;
done:
    free(f0);
    return GSL_SUCCESS;
}

/* Buffers of the GSL event search: the state before the step, a retaken state, the step's error
 * estimate, and the event functions before the step, after it and at a retaken point. */
typedef struct {
    double *yp, *ym, *yerr, *g0, *g1, *gm;
    int *which;
} gsl_ev;

/* Which g_i crossed zero (in their directions) between values ga and gb; 1 if any. */
static int crossed(const driver_data *dd, const double *ga, const double *gb, int *which) {
    int any = 0;
    for (size_t i = 0; i < dd->o->nroots; i++) {
        int w = (ga[i] < 0 && gb[i] >= 0) ? 1 : (ga[i] > 0 && gb[i] <= 0) ? -1 : 0;
        const int dir = dd->o->root_dir ? dd->o->root_dir[i] : 0;
        if (dir && w != dir) w = 0;
        which[i] = w;
        any |= w != 0;
    }
    return any;
}

static int gsl_g(driver_data *dd, double t, const double *y, double *g) {
    int rc = dd->o->roots(t, y, g, dd->o->hook_user);
    if (rc) {
        char why[512];
        return gmf_error(GMF_ESOLVER,
                         "GSL odeiv2 stopped at t = %.6g: an event function failed: %s", t,
                         rhs_reason(why, sizeof why));
    }
    return GMF_OK;
}

/* An event inside the step (tp, yp) -> t1: bisection on the event time, each trial point a
 * retake of the step from tp (accurate to the method's order, unlike an interpolant).  On
 * return *tr and ev->ym hold the first point found past the crossing (to 4 ulp of t or 1e-14 of
 * the span) and ev->which the functions that crossed. */
static int gsl_locate(driver_data *dd, gsl_odeiv2_step *s, const gsl_odeiv2_system *sys, gsl_ev *ev,
                      double tp, double t1, const double *y1, double *tr) {
    const size_t N = dd->N;
    const double span = dd->tout[dd->ntout - 1] - dd->tout[0];
    double a = tp, b = t1;
    memcpy(ev->ym, y1, N * sizeof(double));
    double *yb = ev->yerr + N; /* the state at b */
    memcpy(yb, y1, N * sizeof(double));
    for (int it = 0; it < 200 && b - a > fmax(4 * DBL_EPSILON * fabs(b), 1e-14 * span); it++) {
        const double m = a + 0.5 * (b - a);
        memcpy(ev->ym, ev->yp, N * sizeof(double));
        gsl_odeiv2_step_reset(s);
        if (gsl_odeiv2_step_apply(s, tp, m - tp, ev->ym, ev->yerr, NULL, NULL, sys) != GSL_SUCCESS)
            return gmf_error(GMF_ESOLVER,
                             "GSL odeiv2: a step retake failed locating an event "
                             "at t in [%.10g, %.10g]",
                             a, b);
        int rc = gsl_g(dd, m, ev->ym, ev->gm);
        if (rc) return rc;
        if (crossed(dd, ev->g0, ev->gm, ev->which))
            b = m, memcpy(yb, ev->ym, N * sizeof(double));
        else
            a = m;
    }
    gsl_odeiv2_step_reset(s);
    int rc = gsl_g(dd, b, yb, ev->gm);
    if (rc) return rc;
    (void)crossed(dd, ev->g0, ev->gm, ev->which);
    memcpy(ev->ym, yb, N * sizeof(double));
    *tr = b;
    return GMF_OK;
}

/* After a step (tp, ev->yp) -> (t, y): events.  GMF_OK, 1 to stop (y, *t at the event). */
static int gsl_events(driver_data *dd, gsl_odeiv2_step *s, const gsl_odeiv2_system *sys, gsl_ev *ev,
                      double tp, double *t, double *y) {
    int rc = gsl_g(dd, *t, y, ev->g1);
    if (rc) return rc;
    if (crossed(dd, ev->g0, ev->g1, ev->which)) {
        double tr = *t;
        if ((rc = gsl_locate(dd, s, sys, ev, tp, *t, y, &tr)) != GMF_OK) return rc;
        rc = handle_root(dd, tr, ev->ym, ev->which);
        if (rc == 1) memcpy(y, ev->ym, dd->N * sizeof(double)), *t = tr;
        if (rc) return rc;
    }
    memcpy(ev->g0, ev->g1, dd->o->nroots * sizeof(double));
    return GMF_OK;
}

static int gsl_fail(driver_data *dd, const char *name, int status, double t) {
    char why[512];
    if (dd->rhs_failed)
        return gmf_error(GMF_ESOLVER,
                         "GSL odeiv2 (%s) stopped at t = %.6g: the right-hand side failed: %s",
                         name, t, rhs_reason(why, sizeof why));
    return gmf_error(GMF_ESOLVER, "GSL odeiv2 (%s) failed at t = %.6g: %s", name, t,
                     gsl_strerror(status));
}

static int gsl_loop(driver_data *dd, gsl_odeiv2_driver *drv, const gsl_odeiv2_system *sys,
                    gsl_ev *ev, double h, double *y) {
    const size_t N = dd->N;
    double t = dd->tout[0];
    int rc = emit(dd, 0, t, y);
    if (rc) return rc;
    if (dd->o->nroots && (rc = gsl_g(dd, t, y, ev->g0)) != GMF_OK) return rc;
    for (dd->jnext = 1; dd->jnext < dd->ntout; dd->jnext++) {
        const double t1 = dd->tout[dd->jnext];
        while (t < t1) {
            const double tp = t;
            if (dd->o->nroots) memcpy(ev->yp, y, N * sizeof(double));
            int status = gsl_odeiv2_evolve_apply(drv->e, drv->c, drv->s, sys, &t, t1, &h, y);
            if (status != GSL_SUCCESS) return gsl_fail(dd, drv->s->type->name, status, t);
            if (dd->o->nroots && (rc = gsl_events(dd, drv->s, sys, ev, tp, &t, y)) != GMF_OK)
                return rc;
            if ((rc = monitor_step(dd, t, t - tp, y)) != GMF_OK) return rc;
        }
        if ((rc = emit(dd, dd->jnext, t1, y)) != GMF_OK) return rc;
    }
    return GMF_OK;
}

/* ---- the RMS error norm for the GSL drivers (gmf_ode_norm, ode.h) ----
 * A gsl_odeiv2_control_type with GSL's standard control's scale
 *   D0_i = rtol (a_y |y_i| + a_dydt |h y'_i|) + atol
 * and step adjustment (S = 0.9, shrink by S r^(-1/ord) but at most 5x when r > 1.1, grow by
 * S r^(-1/(ord+1)) clamped to [1, 5] when r < 0.5, else keep h; gsl-2.7 ode-initval2/control.c),
 * with r the RMS of err_i / D0_i instead of their maximum.  A zero scale (atol = 0, y_i = 0)
 * counts as 0 when err_i = 0 and as infinite otherwise (the step shrinks 5x). */
typedef struct {
    double eps_abs, eps_rel, a_y, a_dydt;
} rms_control;

static void *rms_alloc(void) {
    return calloc(1, sizeof(rms_control));
}

static int rms_init(void *vs, double eps_abs, double eps_rel, double a_y, double a_dydt) {
    if (!(eps_abs >= 0 && eps_rel >= 0 && a_y >= 0 && a_dydt >= 0)) return GSL_EINVAL;
    rms_control *c = vs;
    c->eps_abs = eps_abs, c->eps_rel = eps_rel, c->a_y = a_y, c->a_dydt = a_dydt;
    return GSL_SUCCESS;
}

/* sqrt(mean((yerr_i / D0_i)^2)), the scale as above */
static double rms_scaled_error(const rms_control *c, size_t dim, const double *y,
                               const double *yerr, const double *yp, double h) {
    double sum = 0.0;
    for (size_t i = 0; i < dim; i++) {
        const double D0 =
            c->eps_rel * (c->a_y * fabs(y[i]) + c->a_dydt * fabs(h * yp[i])) + c->eps_abs;
        if (D0 > 0.0) {
            const double r = yerr[i] / D0;
            sum += r * r;
        } else if (yerr[i] != 0.0) {
            return HUGE_VAL;
        }
    }
    return dim ? sqrt(sum / (double)dim) : 0.0;
}

static int rms_hadjust(void *vs, size_t dim, unsigned int ord, const double y[],
                       const double yerr[], const double yp[], double *h) {
    const double S = 0.9, h_old = *h;
    const double r = rms_scaled_error(vs, dim, y, yerr, yp, h_old);
    if (r > 1.1 || isnan(r)) { /* reject: shrink, at most 5x */
        const double f = isnan(r) ? 0.2 : S / pow(r, 1.0 / ord);
        *h = fmax(f, 0.2) * h_old;
        return GSL_ODEIV_HADJ_DEC;
    }
    if (r < 0.5) { /* grow, at most 5x, never shrink */
        const double f = S / pow(r, 1.0 / (ord + 1.0));
        *h = fmin(fmax(f, 1.0), 5.0) * h_old;
        return GSL_ODEIV_HADJ_INC;
    }
    return GSL_ODEIV_HADJ_NIL;
}

static int rms_errlevel(void *vs, const double y, const double dydt, const double h,
                        const size_t ind, double *errlev) {
    (void)ind;
    const rms_control *c = vs;
    *errlev = c->eps_rel * (c->a_y * fabs(y) + c->a_dydt * fabs(h * dydt)) + c->eps_abs;
    return *errlev > 0.0 ? GSL_SUCCESS : GSL_EFAILED;
}

static int rms_set_driver(void *vs, const gsl_odeiv2_driver *d) {
    (void)vs, (void)d;
    return GSL_SUCCESS;
}

static void rms_free(void *vs) {
    free(vs);
}

static const gsl_odeiv2_control_type rms_control_type = {
    "rms", rms_alloc, rms_init, rms_hadjust, rms_errlevel, rms_set_driver, rms_free};

/* Replace the driver's standard (max-norm) control by the RMS one, same tolerances. */
static int gsl_use_rms(gsl_odeiv2_driver *drv, double atol, double rtol) {
    gsl_odeiv2_control *c = gsl_odeiv2_control_alloc(&rms_control_type);
    if (!c) return gmf_error(GMF_ENOMEM, "GSL odeiv2: could not allocate the RMS control");
    if (gsl_odeiv2_control_init(c, atol, rtol, 1.0, 0.0) != GSL_SUCCESS ||
        gsl_odeiv2_control_set_driver(c, drv) != GSL_SUCCESS) {
        gsl_odeiv2_control_free(c);
        return gmf_error(GMF_EINVAL,
                         "GSL odeiv2: bad tolerances for the RMS control "
                         "(rtol %g, atol %g)",
                         rtol, atol);
    }
    gsl_odeiv2_control_free(drv->c);
    drv->c = c;
    return GMF_OK;
}

static int solve_gsl(size_t N, driver_data *dd, double *y) {
    const gmf_ode_opts *o = dd->o;
    /* GSL's default error handler aborts the process; errors are reported by return codes. */
    gsl_set_error_handler_off();
    gsl_odeiv2_system sys = {gsl_rhs, NULL, N, dd};
    const gsl_odeiv2_step_type *T =
        o->method == GMF_ODE_GSL_RK8PD ? gsl_odeiv2_step_rk8pd : gsl_odeiv2_step_rkf45;
    dd->cur = o->method;
    dd->st->method_last = o->method;
    const double *tout = dd->tout;
    double h0 = o->h0;
    if (!(h0 > 0)) { /* 0: estimate it (two RHS calls) */
        if (gsl_initial_step(N, dd, y, tout[0], tout[dd->ntout - 1] - tout[0],
                             o->method == GMF_ODE_GSL_RK8PD ? 7 : 4, o->rtol, o->atol, &h0)) {
            dd->st->nfevals = dd->nfevals;
            return gsl_fail(dd, T->name, GSL_EBADFUNC, tout[0]);
        }
    }
    gsl_odeiv2_driver *drv = gsl_odeiv2_driver_alloc_y_new(&sys, T, h0, o->atol, o->rtol);
    gsl_ev ev = {0};
    if (o->nroots) {
        ev.yp = malloc(5 * N * sizeof(double)); /* yp, ym, yerr (N), the state at b (N) */
        ev.g0 = malloc(3 * o->nroots * sizeof(double));
        ev.which = malloc(o->nroots * sizeof(int));
        if (ev.yp) ev.ym = ev.yp + N, ev.yerr = ev.ym + N;
        if (ev.g0) ev.g1 = ev.g0 + o->nroots, ev.gm = ev.g1 + o->nroots;
    }
    int rc = GMF_OK;
    if (!drv || (o->nroots && (!ev.yp || !ev.g0 || !ev.which)))
        rc = gmf_error(GMF_ENOMEM, "GSL odeiv2: could not allocate the driver");
    if (rc == GMF_OK && o->gsl_norm == GMF_ODE_NORM_RMS) rc = gsl_use_rms(drv, o->atol, o->rtol);
    if (rc == GMF_OK) rc = gsl_loop(dd, drv, &sys, &ev, h0, y);
    if (rc > 0) rc = GMF_OK;
    if (drv) {
        dd->st->nsteps = (long)drv->e->count;
        dd->st->netfails = (long)drv->e->failed_steps;
        dd->st->hlast = drv->e->last_step;
    }
    free(ev.yp), free(ev.g0), free(ev.which);
    if (drv) gsl_odeiv2_driver_free(drv);
    return rc;
}

int gmf_ode_solve(size_t N, gmf_ode_rhs f, void *user, double *y, const double *tout, size_t ntout,
                  const gmf_ode_opts *opts, gmf_ode_observer obs, void *obs_user,
                  gmf_ode_stats *stats) {
    gmf_ode_opts o = opts ? *opts : gmf_ode_defaults();
    gmf_ode_stats local;
    gmf_ode_stats *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);
    st->t_reached = ntout ? tout[0] : 0.0;
    st->jacobian = GMF_ODE_JAC_DQ;
    int rc = check_args(N, y, tout, ntout, &o);
    if (rc) return rc;
    driver_data dd = {.f = f,
                      .user = user,
                      .o = &o,
                      .N = N,
                      .tout = tout,
                      .ntout = ntout,
                      .obs = obs,
                      .obs_user = obs_user,
                      .st = st,
                      .cur = o.method};
    dd.wall0 = dd.tick = dd.ww_wall = wall_now();
    dd.slast = NAN;
    dd.sw_t = dd.ww_t = tout[0];
    dd.srtol = o.scalar_rtol != 0 ? o.scalar_rtol : fmin(1e-2, fmax(100 * o.rtol, 1e-12));
    switch (o.method) {
    case GMF_ODE_CVODE_ADAMS:
    case GMF_ODE_CVODE_BDF:
    case GMF_ODE_AUTO:
        rc = solve_cvode(N, &dd, y);
        break;
    case GMF_ODE_GSL_RK8PD:
    case GMF_ODE_GSL_RKF45:
        rc = solve_gsl(N, &dd, y);
        break;
    default:
        return gmf_error(GMF_EINVAL, "ODE: unknown method %d", (int)o.method);
    }
    st->nfevals = dd.nfevals;
    return rc;
}

/* ---------------------------------------------------------------- output times */

int gmf_ode_log_times(double t0, double first, double span, size_t n, double *tout) {
    if (n < 1 || !isfinite(t0) || !(first > 0) || !(span >= first) || !isfinite(t0 + span))
        return gmf_error(GMF_EINVAL,
                         "log-spaced times: need n >= 1 and 0 < first <= span, all finite (got n "
                         "%zu, first %g, span %g)",
                         n, first, span);
    tout[0] = t0;
    for (size_t i = 1; i <= n; i++)
        tout[i] =
            n == 1 ? t0 + span : t0 + first * pow(span / first, (double)(i - 1) / (double)(n - 1));
    tout[n] = t0 + span;
    for (size_t i = 1; i <= n; i++)
        if (!(tout[i] > tout[i - 1]))
            return gmf_error(GMF_EINVAL,
                             "log-spaced times: %zu times from %g to %g after t0 = %g are too "
                             "close to tell apart",
                             n, first, span, t0);
    return GMF_OK;
}

/* Numbers separated by commas, white space or new lines; '#' starts a comment to the end of the
 * line.  Appends to *t (capacity *cap, count *n). */
static int parse_numbers(const char *text, const char *what, double **t, size_t *n, size_t *cap) {
    const char *p = text;
    while (*p) {
        if (*p == '#') {
            while (*p && *p != '\n')
                p++;
            continue;
        }
        if (*p == ',' || *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
            p++;
            continue;
        }
        char *end;
        errno = 0;
        const double v = strtod(p, &end);
        if (end == p || errno == ERANGE || !isfinite(v))
            return gmf_error(GMF_EINVAL, "%s: '%.20s' is not a finite number", what, p);
        if (*n == *cap) {
            size_t nc = *cap ? 2 * *cap : 64;
            double *nt = realloc(*t, nc * sizeof(double));
            if (!nt) return gmf_error(GMF_ENOMEM, "%s: out of memory", what);
            *t = nt, *cap = nc;
        }
        (*t)[(*n)++] = v;
        p = end;
    }
    return GMF_OK;
}

int gmf_ode_parse_times(const char *spec, double **times, size_t *count) {
    *times = NULL, *count = 0;
    size_t cap = 0;
    int rc;
    if (spec[0] == '@') {
        FILE *fp = fopen(spec + 1, "r");
        if (!fp) return gmf_error(GMF_EIO, "%s: cannot open: %s", spec + 1, strerror(errno));
        char buf[4096];
        rc = GMF_OK;
        while (rc == GMF_OK && fgets(buf, sizeof buf, fp)) {
            if (!strchr(buf, '\n') && !feof(fp))
                rc = gmf_error(GMF_EFORMAT, "%s: a line longer than %zu characters", spec + 1,
                               sizeof buf - 2);
            else
                rc = parse_numbers(buf, spec + 1, times, count, &cap);
        }
        if (rc == GMF_OK && ferror(fp))
            rc = gmf_error(GMF_EIO, "%s: read error: %s", spec + 1, strerror(errno));
        fclose(fp);
    } else {
        rc = parse_numbers(spec, "output times", times, count, &cap);
    }
    const char *what = spec[0] == '@' ? spec + 1 : "output times";
    if (rc == GMF_OK && *count == 0) rc = gmf_error(GMF_EINVAL, "%s: no times given", what);
    for (size_t i = 0; rc == GMF_OK && i < *count; i++)
        if ((*times)[i] < 0 || (i && !((*times)[i] > (*times)[i - 1])))
            rc = gmf_error(GMF_EINVAL,
                           "%s: times must be >= 0 and strictly increasing (time %zu is %g)", what,
                           i + 1, (*times)[i]);
    if (rc == GMF_OK && (*times)[*count - 1] <= 0)
        rc = gmf_error(GMF_EINVAL, "%s: the last time must be > 0", what);
    if (rc) free(*times), *times = NULL, *count = 0;
    return rc;
}
