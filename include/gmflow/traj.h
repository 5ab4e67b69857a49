/* gmflow/traj.h -- trajectories of a Gaussian-mixture flow: record the state, the loss, the
 * wall time and the right-hand-side count at every output time of an integration, and compare
 * a BW trajectory with an Euclidean one (Theorem 1) (prefix gmf_traj).
 *
 * Typical use (the `gmflow flow` command does exactly this):
 *
 *     gmf_traj *tr;
 *     gmf_traj_new(&tr, GMF_FLOW_BW, T, K, D);
 *     gmf_traj_integrate(tr, oracle, y0, tout, &stats, &ode_opts);   // y0: a BW state
 *     const double *loss = gmf_traj_loss(tr);                         // T losses
 *     gmf_traj_free(tr);
 *
 * Lower level: gmf_traj_attach(tr, &flow) and pass gmf_traj_observe with user = tr as the
 * observer of gmf_ode_solve.  Arrays are row-major: mu (T x K x D), Sigma and C (T x K x D x D);
 * Sigma is always recorded (for the Euclidean form it is C C^T, computed as by
 * gmf_flow_euclid_to_bw); C only for the Euclidean form.
 */
#ifndef GMFLOW_TRAJ_H
#define GMFLOW_TRAJ_H

#include <stddef.h>

#include "gmflow/flow.h"
#include "gmflow/ode.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gmf_traj gmf_traj; /* opaque: owns the recorded arrays and a scratch state */

/* Called after output time j has been recorded (progress reports); must not fail. */
typedef void (*gmf_traj_progress)(const gmf_traj *tr, size_t j, void *user);

/* A trajectory of a `kind` flow with room for T >= 1 output times, K components, dimension D. */
int gmf_traj_new(gmf_traj **tr, gmf_flow_kind kind, size_t T, size_t K, size_t D);
void gmf_traj_free(gmf_traj *tr); /* NULL is fine */

/* Progress callback (NULL: none). */
void gmf_traj_set_progress(gmf_traj *tr, gmf_traj_progress fn, void *user);

/* The flow whose loss and right-hand-side count are recorded; also starts the wall clock.  The
 * flow must have the trajectory's kind, K and D and must outlive the recording. */
int gmf_traj_attach(gmf_traj *tr, gmf_flow *flow);

/* gmf_ode_observer (user = the gmf_traj, attached): records output time j.  A non-finite loss
 * or an oracle failure stops the run (non-zero return; the reason is kept for
 * gmf_traj_integrate's message). */
int gmf_traj_observe(size_t j, double t, const double *y, void *user);

/* The integration policy of `gmflow flow`: a flow of the trajectory's kind over `oracle` from
 * y0 (length K (D + D^2), the state of that kind at tout[0]) through tout[0..T-1] (strictly
 * increasing), recording every output time.  Succeeds only when all T times were recorded, or
 * when an event stopped the run (stats->stopped; the last recorded row is then the event's time
 * and state, gmf_traj_done < T); a failure names the method and the solver's or the observer's
 * reason.  Unless opts has a monotone scalar (or a hook_user), the loss is installed as one: an
 * increase beyond the driver's tolerance fails the run (ode.h).  stats may be NULL. */
int gmf_traj_integrate(gmf_traj *tr, gmf_oracle oracle, const double *y0, const double *tout,
                       gmf_ode_stats *stats, const gmf_ode_opts *opts);

/* Output times: T >= 2 evenly spaced times from t0 to t0 + span, both ends included (the last
 * set exactly to t0 + span).  GMF_EINVAL when they are not finite and strictly increasing (span
 * too small to tell them apart at t0, or t0 + span overflowing). */
int gmf_traj_time_grid(double t0, double span, size_t T, double *tout);

/* What gmf_traj_check_start found wrong. */
typedef enum {
    GMF_TRAJ_START_OK = 0,
    GMF_TRAJ_START_STATE,     /* the initial state: non-finite loss or velocity */
    GMF_TRAJ_START_TOLERANCE, /* rtol, atol */
    GMF_TRAJ_START_TIMES      /* the output times */
} gmf_traj_start_issue;

/* Largest magnitude of an initial state's entry accepted by gmf_traj_check_start. */
#define GMF_TRAJ_STATE_MAX 1e150

/* Checks before integrating, so that a bad input is named instead of surfacing as a solver
 * failure: rtol > 0 and atol >= 0, finite; for CVODE (adams, bdf) atol > 0 (its error weights
 * 1 / (rtol |y_i| + atol) are infinite at any zero entry of the state, such as the off-diagonal
 * zeros of a diagonal Sigma); the output times finite and strictly increasing; every entry of y0
 * (the state of `kind`) at most GMF_TRAJ_STATE_MAX in magnitude (the closed forms multiply
 * entries pairwise); the loss and the velocity F(y0) finite at y0; for CVODE, the first output
 * interval short enough that its initial-step rule, which keeps the first step at or above 100 u
 * max(|tout[0]|, |tout[1]|) (u the unit roundoff), does not move the state by more than its own
 * size, h ||F(y0)||_inf <= max(||y0||_inf, 1).  GMF_EINVAL with the reason, and *issue (may be
 * NULL) says which input is at fault. */
int gmf_traj_check_start(gmf_flow_kind kind, size_t K, gmf_oracle oracle, const double *y0,
                         const double *tout, size_t T, const gmf_ode_opts *opts,
                         gmf_traj_start_issue *issue);

/* Accessors. */
gmf_flow_kind gmf_traj_kind(const gmf_traj *tr);
size_t gmf_traj_T(const gmf_traj *tr); /* capacity: output times */
size_t gmf_traj_K(const gmf_traj *tr);
size_t gmf_traj_D(const gmf_traj *tr);
size_t gmf_traj_done(const gmf_traj *tr);         /* output times recorded so far */
const double *gmf_traj_t(const gmf_traj *tr);     /* T */
const double *gmf_traj_loss(const gmf_traj *tr);  /* T */
const double *gmf_traj_wall(const gmf_traj *tr);  /* T: seconds since attach */
const long *gmf_traj_nrhs(const gmf_traj *tr);    /* T: cumulative RHS evaluations */
const double *gmf_traj_mu(const gmf_traj *tr);    /* T x K x D */
const double *gmf_traj_Sigma(const gmf_traj *tr); /* T x K x D x D */
const double *gmf_traj_C(const gmf_traj *tr);     /* T x K x D x D, NULL for the BW form */
/* GMF_FLOW_WFR_BW trajectories (docs/WFR.md; state [w | mu | Sigma], mu and Sigma recorded as
 * above): the weights, T x K (NULL for the other kinds), and the Fisher-Rao weight alpha used by
 * gmf_traj_integrate (default 1; GMF_EINVAL for another kind or alpha not finite and >= 0). */
const double *gmf_traj_w(const gmf_traj *tr);
int gmf_traj_set_alpha(gmf_traj *tr, double alpha);
double gmf_traj_elapsed(const gmf_traj *tr); /* wall seconds of the last integrate */

/* Theorem 1 distance between a BW trajectory and an Euclidean one recorded at the matching times
 * (Euclidean time = K x BW time; either argument order): the largest over output times j and
 * components k of
 *     ||Sigma_k^BW - C_k C_k^T||_F / ||Sigma_k^BW||_F   -> *err_sigma
 * and over j of ||mu^BW - mu^E||_2 / ||mu^BW||_2 (all K D means together) -> *err_mu
 * (a zero norm divides by 1).  A NaN difference counts as the largest.  GMF_EINVAL unless one
 * trajectory is BW and the other Euclidean with the same T, K, D. */
int gmf_traj_thm1_distance(const gmf_traj *a, const gmf_traj *b, double *err_sigma, double *err_mu);
/* The same errors per output time (the distance above is their maximum over j): err_sigma[j]
 * the largest over k of ||Sigma_k^BW - C_k C_k^T||_F / ||Sigma_k^BW||_F at time j, err_mu[j]
 * the relative distance of the means at time j (T entries each). */
int gmf_traj_thm1_errors(const gmf_traj *a, const gmf_traj *b, double *err_sigma, double *err_mu);

#ifdef __cplusplus
}
#endif
#endif
