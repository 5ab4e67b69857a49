/* gmflow/ode.h -- adaptive ODE integrators: SUNDIALS CVODE and GSL odeiv2 (prefix gmf_ode).
 *
 * One driver for both libraries: integrate y' = F(y) from tout[0] to tout[ntout-1], calling an
 * observer at every output time (tout[0] included).  CVODE runs step by step to the last time
 * (with a stop time there) and gives the outputs from its dense output (CVodeGetDky) as its
 * steps pass them; the GSL drivers step to each output time.  Between steps the driver
 *   - switches Adams -> BDF when the problem turns stiff (GMF_ODE_AUTO),
 *   - locates events (roots of user functions g_i(t, y); CVodeRootInit for CVODE, bisection by
 *     step retakes for GSL) and stops or continues there,
 *   - stops a stalled run (step-size collapse, no progress for stall_steps steps or
 *     stall_seconds of wall time) with a message,
 *   - checks that a monitored scalar (the loss of a gradient flow) does not increase,
 *   - reports progress about every progress_seconds of wall time.
 * A library failure stops the integration with the library's own reason in the message
 * (gmf_errmsg()).
 */
#ifndef GMFLOW_ODE_H
#define GMFLOW_ODE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    GMF_ODE_CVODE_ADAMS = 0, /* CVODE, Adams-Moulton, fixed-point nonlinear solver */
    GMF_ODE_CVODE_BDF,       /* CVODE, BDF, Newton with matrix-free SPGMR (no Jacobian) */
    GMF_ODE_GSL_RK8PD,       /* GSL Prince-Dormand 8(9) */
    GMF_ODE_GSL_RKF45,       /* GSL Runge-Kutta-Fehlberg 4(5) */
    GMF_ODE_AUTO             /* CVODE: Adams first, BDF once stiffness is detected (the default) */
} gmf_ode_method;

/* Name <-> method ("adams", "bdf", "rk8pd", "rkf45", "auto").  parse: GMF_OK and *out set, or
 * GMF_EINVAL with a message listing the choices (*out unchanged). */
int gmf_ode_method_parse(const char *name, gmf_ode_method *out);
const char *gmf_ode_method_name(gmf_ode_method m);

/* Right-hand side: ydot = F(t, y).  Return 0 on success, > 0 for a recoverable failure (the
 * solver may retry with a smaller step), < 0 for a fatal one. */
typedef int (*gmf_ode_rhs)(double t, const double *y, double *ydot, void *user);
/* Observer: called with the solution at each output time; non-zero return stops the run. */
typedef int (*gmf_ode_observer)(size_t j, double t, const double *y, void *user);

/* Optional exact Jacobian information for the implicit (BDF) Newton iteration; user is the same
 * pointer the right-hand side gets.  NULL: CVODE's difference quotients.
 *   jvp: jv = J(t, y) v, where fy = F(t, y) is supplied (length N each);
 *   jac: the dense Jacobian J(t, y), N x N row-major, J[i*N + j] = dF_i/dy_j. */
typedef int (*gmf_ode_jvp)(double t, const double *y, const double *fy, const double *v, double *jv,
                           void *user);
typedef int (*gmf_ode_jac)(double t, const double *y, double *J, void *user);

/* Hooks (all optional; hook_user is their user pointer):
 *   scalar:   *value = a scalar function of the state that must not increase along the solution
 *             (the loss of a gradient flow); checked at every output time, every 50 steps (a count,
 * not a clock: MPI ranks check at the same steps), each event and at the end: an increase above
 * scalar_rtol |min so far| + scalar_atol (+ 1e-300) over the smallest value seen fails the run
 * (GMF_EDIVERGE)
 * naming both values and times; roots:    g (nroots values) at (t, y); an event is where a g_i
 * changes sign in the direction root_dir[i] (-1 falling, +1 rising, 0 either; root_dir NULL =
 * either); on_root:  called at each event with the state there; which[i] = +1/-1 for the g_i that
 *             crossed (rising/falling), else 0.  Return 0 to continue, 1 to stop there (the
 *             observer is then called once more, with index = outputs done so far and the event's
 *             time and state, and y holds that state on return), < 0 to fail;
 *   diagnose: a sentence about the state for the stall message (e.g. the most singular
 *             component), written into buf. */
typedef int (*gmf_ode_scalar)(double t, const double *y, double *value, void *user);
typedef int (*gmf_ode_roots)(double t, const double *y, double *g, void *user);
typedef int (*gmf_ode_on_root)(double t, const double *y, const int *which, void *user);
typedef void (*gmf_ode_diagnose)(double t, const double *y, char *buf, size_t len, void *user);

/* Progress report, about every progress_seconds of wall time during the integration. */
typedef struct gmf_ode_progress_info {
    double t, h;           /* time reached, last step */
    long nsteps, nfevals;  /* so far */
    double wall;           /* seconds since the start of gmf_ode_solve */
    double scalar;         /* the monitored scalar at its last check (every 50 steps; NAN before) */
    gmf_ode_method method; /* the method stepping now (adams or bdf under auto) */
} gmf_ode_progress_info;
typedef void (*gmf_ode_progress)(const gmf_ode_progress_info *p, void *user);

/* The linear solver of the BDF Newton iteration (docs/FLOWS.md, "Exact Jacobian"):
 *   AUTO   dense if opts.jac is set and N <= GMF_ODE_DENSE_MAX, else JVP if opts.jvp is set,
 *          else DQ;
 *   DQ     matrix-free SPGMR, Jacobian-vector products by CVODE's difference quotients;
 *   JVP    matrix-free SPGMR with the exact opts.jvp (required);
 *   DENSE  SUNDIALS' dense LU (SUNLinSol_Dense) with the exact opts.jac, or CVODE's
 *          difference-quotient dense Jacobian when opts.jac is NULL. */
typedef enum {
    GMF_ODE_JAC_AUTO = 0,
    GMF_ODE_JAC_DQ,
    GMF_ODE_JAC_JVP,
    GMF_ODE_JAC_DENSE
} gmf_ode_jacobian;
#define GMF_ODE_DENSE_MAX 400
/* Name <-> choice ("auto", "dq", "jvp", "dense").  parse: GMF_OK and *out set, or GMF_EINVAL
 * with a message listing the choices (*out unchanged). */
int gmf_ode_jacobian_parse(const char *name, gmf_ode_jacobian *out);
const char *gmf_ode_jacobian_name(gmf_ode_jacobian j);

/* The GSL drivers' error norm (rk8pd, rkf45; CVODE always uses its own weighted RMS norm).  With
 * sc_i = atol + rtol |y_i| (y the new state) and the step's error estimate err_i, a step passes
 * when the scaled error r <= 1.1, where
 *   MAX  r = max_i |err_i| / sc_i               (GSL's standard control, gsl_odeiv2_control_y_new)
 *   RMS  r = sqrt(mean_i (err_i / sc_i)^2)      (SciPy's solve_ivp and CVODE's norm)
 * and the next step is h S r^(-1/q) (S = 0.9, q = the order on a rejection, order + 1 when
 * growing, at most 5x up, 5x down, unchanged for 0.5 <= r <= 1.1) -- GSL's own adjustment, only
 * the norm differs.  RMS is never larger than MAX, so it takes fewer steps on wide states whose
 * error is concentrated in a few components (docs/FLOWS.md, "GSL error norm"). */
typedef enum { GMF_ODE_NORM_MAX = 0, GMF_ODE_NORM_RMS } gmf_ode_norm;
/* Name <-> norm ("max", "rms").  parse: GMF_OK and *out set, or GMF_EINVAL with a message listing
 * the choices (*out unchanged). */
int gmf_ode_norm_parse(const char *name, gmf_ode_norm *out);
const char *gmf_ode_norm_name(gmf_ode_norm n);

typedef struct gmf_ode_opts {
    gmf_ode_method method;
    double rtol, atol; /* relative and absolute tolerances */
    long max_steps;    /* internal steps allowed per output interval */
    double h0;         /* initial step; 0 = estimated: CVODE's own rule, or for GSL the
                        * Hairer-Norsett-Wanner rule (2 RHS calls, counted in nfevals) */
    gmf_ode_jvp jvp;   /* NULL = difference quotients (see above) */
    gmf_ode_jac jac;   /* NULL = none (matrix-free Krylov) */
    int jacobian;      /* a gmf_ode_jacobian: the BDF linear solver (default AUTO, see above) */
    /* auto: at the end of every window of auto_window Adams steps, switch to BDF when
     * (a) at least auto_fail_frac of the window's steps had a fixed-point convergence failure,
     * or (b) Adams would need >= auto_min_steps more steps at its step h and h rho >= auto_hrho,
     * rho the spectral radius of dF/dy (power iteration on difference quotients, 9 RHS calls):
     * the step is held at the fastest mode's stability scale, not by accuracy */
    long auto_window;
    double auto_fail_frac;
    double auto_hrho;
    long auto_min_steps;
    /* stall detection (0 = off for each): stop when |h| < stall_hrel |t| (step-size
     * collapse), or when the last stall_steps steps, or the last stall_seconds of wall time,
     * advanced t by less than stall_frac max(|t|, t - t_start) (no progress on the log-time
     * scale of long horizons) */
    double stall_hrel;
    long stall_steps;
    double stall_seconds;
    double stall_frac;
    double progress_seconds; /* 0 = no progress reports */
    gmf_ode_progress progress;
    void *progress_user;
    gmf_ode_scalar scalar;   /* see the hooks above */
    const char *scalar_name; /* for messages ("loss"); NULL = "monitored value" */
    double scalar_rtol;      /* < 0: no check; 0: min(1e-2, max(100 rtol, 1e-12)) */
    double scalar_atol;      /* >= 0: absolute slack of that check (default 0): increases below
                              * it are ignored, e.g. a loss at its rounding floor near zero */
    size_t nroots;
    const int *root_dir;
    gmf_ode_roots roots;
    gmf_ode_on_root on_root;
    gmf_ode_diagnose diagnose;
    void *hook_user;
    int gsl_norm; /* a gmf_ode_norm: the GSL drivers' error norm (default MAX, see above) */
} gmf_ode_opts;

/* Defaults: auto (CVODE Adams -> BDF), rtol 1e-8, atol 1e-10, max_steps 100000, GSL norm max,
 * auto window 100 steps, 4 % convergence failures or h rho >= 0.05 with >= 2000 steps to go,
 * stall: hrel 1e-12, 10000 steps or 10 s advancing t by less than 0.1 %; no progress reports,
 * no hooks. */
gmf_ode_opts gmf_ode_defaults(void);

typedef struct gmf_ode_stats {
    long nsteps;   /* internal steps */
    long nfevals;  /* right-hand side evaluations */
    long netfails; /* error test failures */
    long nniters;  /* nonlinear iterations (CVODE) */
    long nncfails; /* nonlinear convergence failures (CVODE) */
    long nliters;  /* linear iterations (CVODE BDF/SPGMR) */
    int qlast;     /* last method order (CVODE) */
    double hlast;  /* last step size */
    /* method auto: the Adams -> BDF switches */
#define GMF_ODE_MAX_SWITCH 8
    int nswitch;
    double t_switch[GMF_ODE_MAX_SWITCH];
    gmf_ode_method method_last; /* the method that took the last step */
    int stopped;                /* 1: stopped early by on_root or the observer */
    double t_reached;           /* the time of y on return */
    size_t nout;                /* observer calls made */
    long njevals;               /* dense Jacobian evaluations (CVODE BDF, dense) */
    long njvevals; /* Jacobian-vector products, exact or by difference quotients (SPGMR) */
    int jacobian;  /* the gmf_ode_jacobian the BDF run used (never AUTO; DQ otherwise) */
} gmf_ode_stats;

/* Integrate in place: y (length N) holds the state at tout[0] on entry and at tout[ntout-1] on
 * return (or at the stop, see on_root).  tout must be strictly increasing.  stats may be NULL
 * (it is filled on failure too).
 * Process-wide side effect: the GSL methods switch GSL's error handler off
 * (gsl_set_error_handler_off, for the whole process) so that GSL errors come back as codes
 * instead of aborting. */
int gmf_ode_solve(size_t N, gmf_ode_rhs f, void *user, double *y, const double *tout, size_t ntout,
                  const gmf_ode_opts *opts, gmf_ode_observer obs, void *obs_user,
                  gmf_ode_stats *stats);

/* Output times t0, t0 + first, ..., t0 + span: n >= 1 times log-spaced from first to span
 * (0 < first <= span) after t0, n + 1 in all (tout has room for n + 1). */
int gmf_ode_log_times(double t0, double first, double span, size_t n, double *tout);

/* Times from a list "0.1,1,10" or, with spec "@FILE", from a file (numbers separated by commas,
 * white space or new lines; '#' comments): each >= 0, strictly increasing, the last > 0.
 * *times is malloc'd (free it); errors name the file and carry strerror. */
int gmf_ode_parse_times(const char *spec, double **times, size_t *count);

#ifdef __cplusplus
}
#endif
#endif
