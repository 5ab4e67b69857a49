/* ode.c -- one driver over SUNDIALS CVODE and GSL odeiv2.
 *
 * CVODE: Adams-Moulton with the fixed-point nonlinear solver (the gradient flows here are not
 * stiff at moderate tolerances, and fixed point needs no Jacobian), or BDF with Newton and a
 * matrix-free SPGMR linear solver (Jacobian-vector products by CVODE's difference quotients), for
 * stiff problems.  Both keep memory O(N): a dense Jacobian of a K (D + D^2) state would not be.
 * GSL: explicit embedded Runge-Kutta pairs (rk8pd, rkf45) through gsl_odeiv2_driver, with the
 * standard error control |err_i| <= atol + rtol |y_i|, the same form as CVODE's weights, and
 * (unless the caller sets h0) the Hairer-Norsett-Wanner initial step (gsl_initial_step).
 */
#include "gmflow/ode.h"

#include <cvode/cvode.h>
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

#include "gmflow/common.h"

static const char *method_names[] = {"adams", "bdf", "rk8pd", "rkf45"};

int gmf_ode_method_parse(const char *name) {
    for (int i = 0; i < (int)(sizeof method_names / sizeof method_names[0]); i++)
        if (!strcmp(name, method_names[i])) return i;
    return -1;
}

const char *gmf_ode_method_name(gmf_ode_method m) {
    return (unsigned)m < sizeof method_names / sizeof method_names[0] ? method_names[m] : "?";
}

gmf_ode_opts gmf_ode_defaults(void) {
    gmf_ode_opts o = {.method = GMF_ODE_CVODE_ADAMS,
                      .rtol = 1e-8,
                      .atol = 1e-10,
                      .max_steps = 100000,
                      .h0 = 0.0,
                      .jvp = NULL,
                      .jac = NULL,
                      .jacobian = GMF_ODE_JAC_AUTO};
    return o;
}

typedef struct {
    gmf_ode_rhs f;
    void *user;
    long nfevals;
    int rhs_failed;  /* the user's RHS returned < 0 (or its exact JVP / Jacobian) */
    gmf_ode_jvp jvp; /* exact Jacobian information, set by attach_linsol */
    gmf_ode_jac jac;
    char msg[512]; /* CVODE's last error message */
} driver_data;

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
    return GMF_OK;
}

/* A copy of the RHS's own message: gmf_error() formats into the buffer that gmf_errmsg() returns,
 * so that message must not be passed to it directly. */
static const char *rhs_reason(char *buf, size_t len) {
    snprintf(buf, len, "%s", gmf_errmsg());
    return buf;
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

int gmf_ode_jacobian_parse(const char *name) {
    for (int i = 0; i < (int)(sizeof jacobian_names / sizeof jacobian_names[0]); i++)
        if (!strcmp(name, jacobian_names[i])) return i;
    return -1;
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
 * Jacobian-vector products, or SUNDIALS' dense LU with an exact or difference-quotient dense
 * Jacobian.  *A is the dense matrix (NULL for SPGMR); *used the choice made. */
static int attach_linsol(void *mem, N_Vector v, SUNContext ctx, driver_data *dd,
                         const gmf_ode_opts *o, SUNLinearSolver *LS, SUNMatrix *A,
                         gmf_ode_jacobian *used) {
    const size_t N = (size_t)N_VGetLength(v);
    int rc = choose_jacobian(N, o, used), flag;
    if (rc) return rc;
    if (*used == GMF_ODE_JAC_DENSE) {
        *A = SUNDenseMatrix((sunindextype)N, (sunindextype)N, ctx);
        *LS = *A ? SUNLinSol_Dense(v, *A, ctx) : NULL;
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

static int solve_cvode(size_t N, driver_data *dd, double *y, const double *tout, size_t ntout,
                       const gmf_ode_opts *o, gmf_ode_observer obs, void *obs_user,
                       gmf_ode_stats *st) {
    int rc = GMF_OK;
    SUNContext ctx = NULL;
    N_Vector v = NULL;
    void *mem = NULL;
    SUNLinearSolver LS = NULL;
    SUNMatrix A = NULL;
    gmf_ode_jacobian used = GMF_ODE_JAC_DQ;
    SUNNonlinearSolver NLS = NULL;
    if (SUNContext_Create(NULL, &ctx) != 0)
        return gmf_error(GMF_ESOLVER, "CVODE: SUNContext_Create failed");
    v = N_VMake_Serial((sunindextype)N, y, ctx); /* wraps y: the solution lands in y */
    mem = CVodeCreate(o->method == GMF_ODE_CVODE_BDF ? CV_BDF : CV_ADAMS, ctx);
    if (!v || !mem) {
        rc = gmf_error(GMF_ESOLVER, "CVODE: out of memory creating the solver");
        goto done;
    }
    CV_TRY(CVodeSetErrHandlerFn(mem, cv_err, dd));
    CV_TRY(CVodeInit(mem, cv_rhs, tout[0], v));
    CV_TRY(CVodeSetUserData(mem, dd));
    CV_TRY(CVodeSStolerances(mem, o->rtol, o->atol));
    CV_TRY(CVodeSetMaxNumSteps(mem, o->max_steps));
    if (o->h0 > 0) CV_TRY(CVodeSetInitStep(mem, o->h0));
    if (o->method == GMF_ODE_CVODE_BDF) {
        if ((rc = attach_linsol(mem, v, ctx, dd, o, &LS, &A, &used)) != GMF_OK) goto done;
    } else {
        NLS = SUNNonlinSol_FixedPoint(v, 0, ctx);
        if (!NLS) {
            rc = gmf_error(GMF_ESOLVER, "CVODE: could not create the fixed-point solver");
            goto done;
        }
        CV_TRY(CVodeSetNonlinearSolver(mem, NLS));
    }
    if (obs && obs(0, tout[0], y, obs_user)) goto done;
    for (size_t j = 1; j < ntout; j++) {
        sunrealtype t = tout[j - 1];
        int flag = CVode(mem, tout[j], v, &t, CV_NORMAL);
        if (flag < 0) {
            char why[512];
            if (dd->rhs_failed)
                rc = gmf_error(GMF_ESOLVER,
                               "CVODE stopped at t = %.6g: the right-hand side "
                               "failed: %s",
                               t, rhs_reason(why, sizeof why));
            else {
                char name[64];
                flag_name(flag, name, sizeof name);
                rc = gmf_error(GMF_ESOLVER, "CVODE failed at t = %.6g (%s): %s", t, name, dd->msg);
            }
            goto done;
        }
        if (obs && obs(j, tout[j], y, obs_user)) goto done;
    }
done:
    if (mem && st) {
        long v1 = 0;
        int q = 0;
        sunrealtype h = 0;
        CVodeGetNumSteps(mem, &v1), st->nsteps = v1;
        CVodeGetNumErrTestFails(mem, &v1), st->netfails = v1;
        CVodeGetNumNonlinSolvIters(mem, &v1), st->nniters = v1;
        CVodeGetNumNonlinSolvConvFails(mem, &v1), st->nncfails = v1;
        if (LS) CVodeGetNumLinIters(mem, &v1), st->nliters = v1;
        if (LS) CVodeGetNumJacEvals(mem, &v1), st->njevals = v1;
        if (LS) CVodeGetNumJtimesEvals(mem, &v1), st->njvevals = v1;
        st->jacobian = used;
        CVodeGetLastOrder(mem, &q), st->qlast = q;
        CVodeGetLastStep(mem, &h), st->hlast = h;
    }
    if (st) st->nfevals = dd->nfevals;
    CVodeFree(&mem);
    if (LS) SUNLinSolFree(LS);
    if (A) SUNMatDestroy(A);
    if (NLS) SUNNonlinSolFree(NLS);
    if (v) N_VDestroy(v);
    if (ctx) SUNContext_Free(&ctx);
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

static int solve_gsl(size_t N, driver_data *dd, double *y, const double *tout, size_t ntout,
                     const gmf_ode_opts *o, gmf_ode_observer obs, void *obs_user,
                     gmf_ode_stats *st) {
    /* GSL's default error handler aborts the process; errors are reported by return codes. */
    gsl_set_error_handler_off();
    gsl_odeiv2_system sys = {gsl_rhs, NULL, N, dd};
    const gsl_odeiv2_step_type *T =
        o->method == GMF_ODE_GSL_RK8PD ? gsl_odeiv2_step_rk8pd : gsl_odeiv2_step_rkf45;
    double h0 = o->h0;
    if (!(h0 > 0)) { /* 0: estimate it (two RHS calls) */
        if (gsl_initial_step(N, dd, y, tout[0], tout[ntout - 1] - tout[0],
                             o->method == GMF_ODE_GSL_RK8PD ? 7 : 4, o->rtol, o->atol, &h0)) {
            char why[512];
            if (st) st->nfevals = dd->nfevals;
            return gmf_error(GMF_ESOLVER,
                             "GSL odeiv2 (%s) stopped at t = %.6g: the right-hand side failed: %s",
                             T->name, tout[0], rhs_reason(why, sizeof why));
        }
    }
    gsl_odeiv2_driver *drv = gsl_odeiv2_driver_alloc_y_new(&sys, T, h0, o->atol, o->rtol);
    if (!drv) return gmf_error(GMF_ESOLVER, "GSL odeiv2: could not allocate the driver");
    gsl_odeiv2_driver_set_nmax(drv, (unsigned long)o->max_steps);
    int rc = GMF_OK;
    double t = tout[0];
    if (!(obs && obs(0, t, y, obs_user))) {
        for (size_t j = 1; j < ntout; j++) {
            int status = gsl_odeiv2_driver_apply(drv, &t, tout[j], y);
            if (status != GSL_SUCCESS) {
                char why[512];
                if (dd->rhs_failed)
                    rc = gmf_error(GMF_ESOLVER,
                                   "GSL odeiv2 (%s) stopped at t = %.6g: the "
                                   "right-hand side failed: %s",
                                   T->name, t, rhs_reason(why, sizeof why));
                else
                    rc = gmf_error(GMF_ESOLVER, "GSL odeiv2 (%s) failed at t = %.6g: %s%s", T->name,
                                   t, gsl_strerror(status),
                                   status == GSL_EMAXITER ? " (raise max_steps)" : "");
                break;
            }
            if (obs && obs(j, tout[j], y, obs_user)) break;
        }
    }
    if (st) {
        st->nsteps = (long)drv->e->count;
        st->netfails = (long)drv->e->failed_steps;
        st->hlast = drv->h;
        st->nfevals = dd->nfevals;
    }
    gsl_odeiv2_driver_free(drv);
    return rc;
}

int gmf_ode_solve(size_t N, gmf_ode_rhs f, void *user, double *y, const double *tout, size_t ntout,
                  const gmf_ode_opts *opts, gmf_ode_observer obs, void *obs_user,
                  gmf_ode_stats *stats) {
    gmf_ode_opts o = opts ? *opts : gmf_ode_defaults();
    if (stats) memset(stats, 0, sizeof *stats);
    int rc = check_args(N, y, tout, ntout, &o);
    if (rc) return rc;
    driver_data dd = {.f = f, .user = user};
    switch (o.method) {
    case GMF_ODE_CVODE_ADAMS:
    case GMF_ODE_CVODE_BDF:
        return solve_cvode(N, &dd, y, tout, ntout, &o, obs, obs_user, stats);
    case GMF_ODE_GSL_RK8PD:
    case GMF_ODE_GSL_RKF45:
        return solve_gsl(N, &dd, y, tout, ntout, &o, obs, obs_user, stats);
    }
    return gmf_error(GMF_EINVAL, "ODE: unknown method %d", (int)o.method);
}
