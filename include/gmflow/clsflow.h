/* gmflow/clsflow.h -- the exact classification flow of Appendix A.2 (prefix gmf_clsflow).
 *
 * L + 1 classes {0, ..., L}, class 0 the reference with logit 0.  A GM layer with K components
 * maps x in R^d to logits h(x) in R^L (eq. (5) of the paper):
 *
 *   h(x) = (1/K) sum_k E_{beta ~ N(mu_k, Sigma_k)}[(U_k beta + v_k) relu(beta . x)]
 *        = (1/K) sum_k [ (U_k mu_k + v_k) A_k(x) + U_k Sigma_k x Phi_k(x) ],
 *
 *   m = x . mu_k,  c = Sigma_k x,  s^2 = x . c,  t = m/s,  A = m Phi(t) + s phi(t),
 *
 * and the mean multi-class logistic loss over a fixed data set (x_i, y_i), i < n,
 *
 *   loss = (1/n) sum_i [ log(1 + sum_l exp h(x_i)_l) - h(x_i)_{y_i} ]   (h_{.,0} := 0).
 *
 * Two covariance parametrizations, each a Euclidean parameter vector theta:
 *   GMF_CLSFLOW_FULL  Sigma_k = C_k C_k^T, C_k any d x d matrix (the square-root form of Thm 1)
 *   GMF_CLSFLOW_DIAG  Sigma_k = diag(sigma_k^2), sigma_k in R^d (the paper's eq. (5))
 *
 * State layout (the same as the discrete trainer's GM / GM-full parameter vectors, nn.h):
 *
 *   theta = [ mu (K x d) | C (K x d x d) or sigma (K x d) | U (K x L x d) | v (K x L) ]
 *
 * The flow is the Euclidean gradient flow theta' = -grad loss(theta).  The gradient is in closed
 * form (docs/CLASSIFICATION_FLOW.md): with r_i = (softmax([0, h_i])_{1..L} - e_{y_i}) / n,
 * w_i = U_k^T r_i, alpha_i = r_i . (U_k mu_k + v_k), gamma_i = r_i . U_k c_i / s_i,
 * g_i = alpha_i Phi_i + gamma_i phi_i, kappa_i = phi_i (alpha_i - gamma_i t_i), z_i = C_k^T x_i
 * (|z_i| = s_i) and zh_i = z_i / s_i,
 *
 *   grad_{U_k} = (1/K) sum_i r_i P_i^T,       P_i = E[beta relu(beta . x_i)] = mu A_i + c_i Phi_i
 *   grad_{v_k} = (1/K) sum_i r_i A_i
 *   grad_{mu_k} = (1/K) sum_i [ A_i w_i + g_i x_i ]
 *   grad_{C_k} = (1/K) sum_i [ Phi_i (w_i z_i^T + x_i w_i^T C_k) + kappa_i x_i zh_i^T ]
 *   grad_{sigma_kj} = (1/K) sum_i [ 2 sigma_kj Phi_i w_ij x_ij + kappa_i x_ij zh_ij ]
 *
 * all as BLAS products over the samples, in double precision.  Only s itself is divided by, and
 * only through the bounded zh_i = z_i / s_i and U c_i / s_i; at s = 0 (x = 0, or Sigma singular
 * along x) the limits Phi = 1{m > 0}, phi = 0, zh = 0 of gauss.h are used.
 *
 * Fixed-beta mode freezes the beta-marginal: mu and C / sigma get zero velocity and only (U, v)
 * move (the paper's "lazy" experiment of Figure 5); the loss is then convex along the flow.
 */
#ifndef GMFLOW_CLSFLOW_H
#define GMFLOW_CLSFLOW_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { GMF_CLSFLOW_FULL = 0, GMF_CLSFLOW_DIAG = 1 } gmf_clsflow_cov;

/* Offsets of the blocks of theta (entries), and the per-component sizes. */
typedef struct gmf_clsflow_layout {
    gmf_clsflow_cov cov;
    size_t K, d, L;
    size_t ncov;           /* covariance entries per component: d * d (FULL) or d (DIAG) */
    size_t mu, covo, U, v; /* block offsets: mu = 0, covo = K d, U = covo + K ncov, v = U + KLd */
    size_t dim;            /* total length K (d + ncov + L d + L) */
} gmf_clsflow_layout;

/* Layout for the given shapes (no allocation; all shapes must be >= 1). */
gmf_clsflow_layout gmf_clsflow_layout_make(gmf_clsflow_cov cov, size_t K, size_t d, size_t L);

/* Views of component k's blocks in a state vector. */
static inline double *gmf_clsflow_mu(const gmf_clsflow_layout *lo, double *th, size_t k) {
    return th + lo->mu + k * lo->d;
}
static inline double *gmf_clsflow_covp(const gmf_clsflow_layout *lo, double *th, size_t k) {
    return th + lo->covo + k * lo->ncov;
}
static inline double *gmf_clsflow_U(const gmf_clsflow_layout *lo, double *th, size_t k) {
    return th + lo->U + k * lo->L * lo->d;
}
static inline double *gmf_clsflow_v(const gmf_clsflow_layout *lo, double *th, size_t k) {
    return th + lo->v + k * lo->L;
}

typedef struct gmf_clsflow gmf_clsflow;

/* A classification flow over the data set X (n x d row-major, finite) with labels y (n, each
 * <= L); both are copied.  K components, L logits (L + 1 classes). */
int gmf_clsflow_new(gmf_clsflow **out, gmf_clsflow_cov cov, size_t K, size_t L, size_t n, size_t d,
                    const double *X, const uint8_t *y);
void gmf_clsflow_free(gmf_clsflow *f);

const gmf_clsflow_layout *gmf_clsflow_layout_of(const gmf_clsflow *f);
size_t gmf_clsflow_dim(const gmf_clsflow *f);
size_t gmf_clsflow_n(const gmf_clsflow *f);
/* Right-hand side evaluations so far (gmf_clsflow_rhs calls). */
long gmf_clsflow_nrhs(const gmf_clsflow *f);

/* Fixed-beta mode on (1) or off (0, the default): see the header comment. */
void gmf_clsflow_set_fixed_beta(gmf_clsflow *f, int on);
int gmf_clsflow_fixed_beta(const gmf_clsflow *f);

/* Logits H (n x L) of the whole data set at theta. */
int gmf_clsflow_logits(gmf_clsflow *f, const double *theta, double *H);
/* Mean loss over the data set at theta. */
int gmf_clsflow_loss(gmf_clsflow *f, const double *theta, double *loss);
/* Full Euclidean gradient (all blocks, regardless of fixed-beta mode) of the mean loss over the
 * data set, and the loss (either output may be NULL). */
int gmf_clsflow_grad(gmf_clsflow *f, const double *theta, double *loss, double *grad);
/* The same for the mean loss over the minibatch x_{idx[0]}, ..., x_{idx[B-1]} (indices < n,
 * repeats allowed: sampling with replacement). */
int gmf_clsflow_grad_batch(gmf_clsflow *f, const double *theta, size_t B, const size_t *idx,
                           double *loss, double *grad);

/* The vector field theta' = -grad loss(theta), with the mu and C / sigma blocks zero in
 * fixed-beta mode.  Non-finite state or loss: GMF_EDIVERGE with a message. */
int gmf_clsflow_rhs(gmf_clsflow *f, const double *theta, double *thetadot);
/* Adaptor with the gmf_ode_rhs signature (user = gmf_clsflow *); failures are fatal (-1). */
int gmf_clsflow_ode_rhs(double t, const double *y, double *ydot, void *user);

/* Component k's moments on the data set: A (n) = E relu(beta . x_i) and, if P != NULL,
 * P (n x d) = E[beta relu(beta . x_i)].  h(x_i) = (1/K) sum_k (U_k P_i + v_k A_i), which is
 * linear in (U, v): the features of the fixed-beta problem. */
int gmf_clsflow_moments(gmf_clsflow *f, const double *theta, size_t k, double *A, double *P);

/* The paper's initialization (Section 5): entries of mu, U, v i.i.d. N(0, gamma^2) and
 * sigma = gamma (DIAG) or C = gamma I (FULL); GSL mt19937 seeded with `seed`, drawn in the
 * order mu, U, v (component by component, row by row). */
int gmf_clsflow_init_paper(const gmf_clsflow_layout *lo, double gamma, unsigned long seed,
                           double *theta);

/* A few-class toy: nclass Gaussian blobs in R^d, class centres i.i.d. N(0, sep^2 I_d), samples
 * centre + N(0, I_d), labels 0, 1, ..., nclass - 1 in turn (balanced).  Allocates *X (n x d)
 * and *y (n); free with free().  GSL mt19937 seeded with `seed` (centres first, then the
 * samples row by row). */
int gmf_clsflow_blobs(size_t n, size_t d, size_t nclass, double sep, unsigned long seed, double **X,
                      uint8_t **y);

#ifdef __cplusplus
}
#endif
#endif
