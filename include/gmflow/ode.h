/* gmflow/ode.h -- adaptive ODE integrators: SUNDIALS CVODE and GSL odeiv2 (prefix gmf_ode).
 *
 * One driver for both libraries: integrate y' = F(y) from tout[0] to each tout[j] in turn,
 * calling an observer at every output time (tout[0] included).  A library failure stops the
 * integration with the library's own reason in the message (gmf_errmsg()).
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
    GMF_ODE_GSL_RKF45        /* GSL Runge-Kutta-Fehlberg 4(5) */
} gmf_ode_method;

/* Name <-> method ("adams", "bdf", "rk8pd", "rkf45"); returns -1 for an unknown name. */
int gmf_ode_method_parse(const char *name);
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
/* Name <-> choice ("auto", "dq", "jvp", "dense"); -1 for an unknown name. */
int gmf_ode_jacobian_parse(const char *name);
const char *gmf_ode_jacobian_name(gmf_ode_jacobian j);

typedef struct gmf_ode_opts {
    gmf_ode_method method;
    double rtol, atol; /* relative and absolute tolerances */
    long max_steps;    /* internal steps allowed per output interval */
    double h0;         /* initial step; 0 = estimated: CVODE's own rule, or for GSL the
                        * Hairer-Norsett-Wanner rule (2 RHS calls, counted in nfevals) */
    gmf_ode_jvp jvp;   /* NULL = difference quotients (see above) */
    gmf_ode_jac jac;   /* NULL = none (matrix-free Krylov) */
    int jacobian;      /* a gmf_ode_jacobian: the BDF linear solver (default AUTO, see above) */
} gmf_ode_opts;

/* Defaults: CVODE Adams, rtol 1e-8, atol 1e-10, max_steps 100000. */
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
    long njevals;  /* dense Jacobian evaluations (CVODE BDF, dense) */
    long njvevals; /* Jacobian-vector products, exact or by difference quotients (SPGMR) */
    int jacobian;  /* the gmf_ode_jacobian the BDF run used (never AUTO; DQ otherwise) */
} gmf_ode_stats;

/* Integrate in place: y (length N) holds the state at tout[0] on entry and at tout[ntout-1] on
 * return.  tout must be strictly increasing.  stats may be NULL. */
int gmf_ode_solve(size_t N, gmf_ode_rhs f, void *user, double *y, const double *tout, size_t ntout,
                  const gmf_ode_opts *opts, gmf_ode_observer obs, void *obs_user,
                  gmf_ode_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
