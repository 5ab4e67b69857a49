/* gmflow/flow.h -- Gaussian-mixture gradient flows as ODE right-hand sides (prefix gmf_flow).
 *
 * A mixture rho = (1/K) sum_k N(mu_k, Sigma_k) over theta in R^D.  Two state layouts:
 *
 *   GMF_FLOW_BW     (Theorem 3; Theorem 2 when K = 1; Theorem 4 for the squared loss)
 *                   y = [mu_1 .. mu_K | Sigma_1 .. Sigma_K], each Sigma_k a full D x D row-major
 *                   matrix.  d/dt mu_k    = -E_k grad dL
 *                            d/dt Sigma_k = -(E_k[hess dL] Sigma_k + Sigma_k E_k[hess dL])
 *                   Symmetry: Sigma_k is stored in full; the oracle returns the Stein form
 *                   S_k = E_k[hess dL] Sigma_k and the velocity is -(S_k + S_k^T), which is
 *                   bitwise symmetric, so an integrator taking linear combinations keeps
 *                   Sigma_k bitwise symmetric when it starts so (gmf_flow_check_state tests it).
 *   GMF_FLOW_EUCLID (Theorem 1) y = [mu_1 .. mu_K | C_1 .. C_K], Sigma_k = C_k C_k^T, and
 *                   y' = -grad l(mu, C) with l(mu, C) = L(rho):
 *                            d/dt mu_k = -(1/K) E_k grad dL
 *                            d/dt C_k  = -(1/K) E_k[hess dL] C_k.
 *                   Theorem 1: Sigma_k^BW(t / K) = C_k(t) C_k(t)^T.
 *
 * dL is the first variation of the loss L at rho, supplied by the caller as an oracle.
 */
#ifndef GMFLOW_FLOW_H
#define GMFLOW_FLOW_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* First-variation oracle of a loss L over probability measures on R^D. */
typedef struct gmf_oracle {
    void *ctx;
    size_t D; /* dimension of theta */
    /* Called once per evaluation with the whole mixture: mu (K x D), Sigma (K x D x D) and,
     * for the Euclidean form, C (K x D x D; NULL otherwise).  Computes whatever of dL(rho)
     * depends on the whole mixture (for the squared loss: the residuals) and the loss value. */
    int (*prepare)(void *ctx, size_t K, const double *mu, const double *Sigma, const double *C);
    /* After prepare, for component k:
     *   grad  (D)     = E_k[grad dL]
     *   hessR (D x D) = E_k[hess dL] R,  R = C_k if prepare got C, else Sigma_k
     *                   (then hessR is the Stein form E_k[grad dL (x) (theta - mu_k)]). */
    int (*component)(void *ctx, size_t k, double *grad, double *hessR);
    /* L(rho) at the last prepared mixture. */
    double (*loss)(void *ctx);
    /* Optional (NULL when the oracle has none; gmf_flow_jvp then fails with GMF_EINVAL): the
     * directional derivative of component()'s outputs for ALL components at the mixture
     * (mu, Sigma, C) -- the arguments of prepare -- along dmu (K x D) and dR (K x D x D: dC when
     * C != NULL, else dSigma):
     *   dgrad  (K x D)     = d/de E_k[grad dL],   dhessR (K x D x D) = d/de (E_k[hess dL] R_k).
     * Self-contained: needs no prepare() and leaves its state alone. */
    int (*jvp)(void *ctx, size_t K, const double *mu, const double *Sigma, const double *C,
               const double *dmu, const double *dR, double *dgrad, double *dhessR);
    /* Optional, for the Wasserstein-Fisher-Rao kinds (docs/WFR.md; NULL when unsupported):
     * prepare_w is prepare for the weighted mixture rho = sum_k w[k] N(mu_k, Sigma_k) (w: K
     * weights; prepare itself is the case w_k = 1/K); value(k), after prepare or prepare_w, is
     * E_k[dL], the first variation averaged over component k. */
    int (*prepare_w)(void *ctx, size_t K, const double *w, const double *mu, const double *Sigma,
                     const double *C);
    double (*value)(void *ctx, size_t k);
} gmf_oracle;

/* GMF_FLOW_WFR_BW / GMF_FLOW_WFR_EUCLID: Wasserstein-Fisher-Rao mixtures with learned weights
 * (docs/WFR.md; functions in src/exact/wfr.c), alpha = gmf_flow_alpha(f):
 *   GMF_FLOW_WFR_BW     y = [w_1 .. w_K | mu | Sigma], w on the simplex, rho = sum_k w_k N_k;
 *                       w_k' = -alpha w_k (v_k - vbar),  v_k = E_k[dL],  vbar = sum w_j v_j /
 *                       sum w_j; mu_k', Sigma_k' as GMF_FLOW_BW (the mass-weighted transport).
 *   GMF_FLOW_WFR_EUCLID y = [a_1 .. a_K | mu | C], w_k = a_k^2 / |a|^2, Sigma_k = C_k C_k^T:
 *                       the flat gradient flow of l(a, mu, C) = L(rho) with the a-block metric
 *                       scaled by c = alpha / (4K):
 *                       a_k' = -(alpha / (2 K |a|^2)) a_k (v_k - vbar),
 *                       mu_k' = -w_k E_k grad dL,  C_k' = -w_k E_k[hess dL] C_k.
 *                       |a| is conserved; with |a| = 1 its image in BW time s = t / K is the
 *                       GMF_FLOW_WFR_BW flow with the transport speed scaled by K w_k
 *                       (gmf_flow_set_wfr_flat(f, 1)): the two agree only at equal weights. */
typedef enum {
    GMF_FLOW_BW = 0,
    GMF_FLOW_EUCLID = 1,
    GMF_FLOW_WFR_BW = 2,
    GMF_FLOW_WFR_EUCLID = 3
} gmf_flow_kind;

/* The flow: its kind, K, the oracle's D, the oracle (copied; its ctx is borrowed and must
 * outlive the flow), a workspace and counters.  Opaque; made with gmf_flow_new, released with
 * gmf_flow_free. */
typedef struct gmf_flow gmf_flow;

/* A flow of `kind` with K >= 1 components over `oracle` (D = oracle.D >= 2; the WFR kinds need
 * oracle.prepare_w and oracle.value).  *out is NULL on failure.  The WFR settings start at
 * alpha = 1 and wfr_flat = 0 (gmf_flow_set_alpha, gmf_flow_set_wfr_flat). */
int gmf_flow_new(gmf_flow **out, gmf_flow_kind kind, size_t K, gmf_oracle oracle);
void gmf_flow_free(gmf_flow *f); /* NULL is fine */

/* WFR kinds: set the Fisher-Rao weight alpha (finite, >= 0; default 1).  GMF_EINVAL naming the
 * value (or the kind) otherwise. */
int gmf_flow_set_alpha(gmf_flow *f, double alpha);
/* GMF_FLOW_WFR_BW only: flat = 1 scales the transport speed by K w_k (the image of
 * GMF_FLOW_WFR_EUCLID, docs/WFR.md); 0 (default) is the WFR flow.  GMF_EINVAL naming the value
 * (or the kind) otherwise. */
int gmf_flow_set_wfr_flat(gmf_flow *f, int flat);

/* What the flow was made with, and its counters. */
gmf_flow_kind gmf_flow_kind_of(const gmf_flow *f);
size_t gmf_flow_K(const gmf_flow *f);
size_t gmf_flow_D(const gmf_flow *f);
double gmf_flow_alpha(const gmf_flow *f);
int gmf_flow_wfr_flat(const gmf_flow *f);
/* The flow's copy of the oracle (e.g. oracle->value for E_k[dL] at the last evaluation). */
const gmf_oracle *gmf_flow_oracle(const gmf_flow *f);
/* L(rho) at the mixture of the last gmf_flow_rhs / gmf_flow_loss, without another evaluation
 * (the oracle's loss). */
double gmf_flow_last_loss(const gmf_flow *f);
long gmf_flow_nrhs(const gmf_flow *f); /* right-hand side evaluations so far */
long gmf_flow_njvp(const gmf_flow *f); /* JVPs so far (gmf_flow_jvp; gmf_flow_jac adds N each) */

/* 1 for the WFR kinds (state starts with K weights or amplitudes). */
static inline int gmf_flow_is_wfr(gmf_flow_kind kind) {
    return kind == GMF_FLOW_WFR_BW || kind == GMF_FLOW_WFR_EUCLID;
}
/* Offset of the means in the state: K for the WFR kinds, else 0. */
size_t gmf_flow_off(const gmf_flow *f);
/* The mixture weights of a WFR state: w = y[0..K) (GMF_FLOW_WFR_BW, copied) or a_k^2 / |a|^2
 * (GMF_FLOW_WFR_EUCLID); for the W kinds w_k = 1/K. */
void gmf_flow_weights(gmf_flow_kind kind, size_t K, const double *y, double *w);

/* Length of the state vector: K (D + D^2), plus K for the WFR kinds. */
size_t gmf_flow_dim(const gmf_flow *f);

/* The right-hand side ydot = F(y).  Returns GMF_OK, or an error (non-finite state, oracle
 * failure) with a message. */
int gmf_flow_rhs(gmf_flow *f, const double *y, double *ydot);

/* Adaptor with the gmf_ode_rhs signature (user = gmf_flow *): maps a non-finite state or an
 * oracle failure to a fatal error. */
int gmf_flow_ode_rhs(double t, const double *y, double *ydot, void *user);

/* Loss L(rho) at state y (runs the oracle's prepare). */
int gmf_flow_loss(gmf_flow *f, const double *y, double *loss);

/* Exact Jacobian information of F (docs/FLOWS.md, "Exact Jacobian"); needs oracle.jvp.
 *   gmf_flow_jvp: jv = J(y) v, J = dF/dy (N x N, N = gmf_flow_dim), v any vector (a Sigma_k
 *                 block of v need not be symmetric: F is differentiated as a function of all
 *                 D^2 stored entries, exactly as gmf_flow_rhs evaluates it);
 *   gmf_flow_jac: the dense J, row-major, J[i N + j] = dF_i/dy_j (N JVPs with unit vectors).
 * In the Euclidean form J = -Hess l(mu, C), symmetric. */
int gmf_flow_jvp(gmf_flow *f, const double *y, const double *v, double *jv);
int gmf_flow_jac(gmf_flow *f, const double *y, double *J);
/* Adaptors with the gmf_ode_jvp / gmf_ode_jac signatures (user = gmf_flow *); -1 on failure. */
int gmf_flow_ode_jvp(double t, const double *y, const double *fy, const double *v, double *jv,
                     void *user);
int gmf_flow_ode_jac(double t, const double *y, double *J, void *user);

/* The state layout in one place: offsets of mu_k and of the matrix (Sigma_k or C_k) of component
 * k in a state vector of K components in dimension D, and views for a gmf_flow's state.  Use
 * these instead of writing `K * D + k * D * D` by hand. */
static inline size_t gmf_flow_mu_offset(size_t K, size_t D, size_t k) {
    (void)K;
    return k * D;
}
static inline size_t gmf_flow_mat_offset(size_t K, size_t D, size_t k) {
    return K * D + k * D * D;
}
double *gmf_flow_mu(const gmf_flow *f, double *y, size_t k);
double *gmf_flow_mat(const gmf_flow *f, double *y, size_t k);

/* Convert an Euclidean state [mu | C] to a BW state [mu | C C^T] (may not alias). */
void gmf_flow_euclid_to_bw(size_t K, size_t D, const double *yc, double *ys);

/* Convert a BW state [mu | Sigma] to an Euclidean state [mu | C] with C_k the lower Cholesky
 * factor of Sigma_k (upper triangle zero), so C_k C_k^T = Sigma_k up to rounding (may not
 * alias).  Fails with GMF_ENOTPD naming the component when a Sigma_k is not positive definite
 * (a singular Sigma_k has no Cholesky factor; the BW form handles it). */
int gmf_flow_bw_to_euclid(size_t K, size_t D, const double *ys, double *yc);

/* Theorem 1's time rescaling: the Euclidean flow at time t is the BW flow at time t / K.
 * Converts time t of a `from` flow to the matching time of a `to` flow (t itself when the kinds
 * agree; K t from bw to euclid; t / K from euclid to bw). */
double gmf_flow_time_convert(double t, gmf_flow_kind from, gmf_flow_kind to, size_t K);

/* Validate a state of the given kind: finite entries; for the WFR kinds the leading K entries
 * (GMF_FLOW_WFR_BW: weights non-negative and summing to 1 within GMF_WFR_SUM_TOL;
 * GMF_FLOW_WFR_EUCLID: amplitudes not all zero), then the rest as GMF_FLOW_BW / GMF_FLOW_EUCLID;
 * for GMF_FLOW_BW each Sigma_k symmetric
 * (relative 1e-12) and positive semidefinite: smallest eigenvalue >= -GMF_PSD_RTOL times the
 * largest (LAPACK dsyev).  The error message names the component. */
#define GMF_PSD_RTOL    1e-8
#define GMF_WFR_SUM_TOL 1e-12
int gmf_flow_check_state(gmf_flow_kind kind, size_t K, size_t D, const double *y);

#ifdef __cplusplus
}
#endif
#endif
