/* gmflow/sqloss.h -- the squared regression loss as a first-variation oracle (prefix gmf_sqloss).
 *
 *   L(rho) = (1/n) sum_i (y_i - h_rho(x_i))^2,   h_rho(x) = E_rho f(x, theta),
 *   dL(rho)(theta) = -(2/n) sum_i r_i f(x_i, theta),  r_i = y_i - h_rho(x_i).
 *
 * With the closed forms of gauss.h this gives Theorem 4 (and Theorem 2 for K = 1) through the
 * generic mixture flow of flow.h.  Per component the work is two GEMMs of size n x d x D.
 */
#ifndef GMFLOW_SQLOSS_H
#define GMFLOW_SQLOSS_H

#include "gmflow/flow.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gmf_sqloss gmf_sqloss;

/* X: n x d row-major inputs, y: n targets (both copied; must be finite). */
int gmf_sqloss_new(gmf_sqloss **out, size_t n, size_t d, const double *X, const double *y);
void gmf_sqloss_free(gmf_sqloss *s);

/* As gmf_sqloss_new but borrowing X and y (not copied: the caller keeps them alive and unchanged
 * while s lives), so the data is held once.  Same results bitwise. */
int gmf_sqloss_borrow(gmf_sqloss **out, size_t n, size_t d, const double *X, const double *y);

/* Data-parallel (docs/SCALE.md): this rank holds rows X (n_local x d) and y (borrowed, as above)
 * of a data set of n_total samples sharded over the ranks of gmflow/par.h (any split; every
 * sample on exactly one rank).  Collective: every rank calls it, and then every prepare() of
 * its oracle, with the same mixture.  Each prepare sums this rank's per-component sums, then
 * reduces the K (D + 2) d + K D + K + 1 numbers with gmf_par_sum, so every rank gets the same
 * gradients and loss bitwise, equal to the one-process ones to rounding.  Its oracle has no jvp
 * (exact-Jacobian BDF and Newton polish are serial only), and gmf_sqloss_eval's pred holds this
 * rank's rows only.  With one rank it gives gmf_sqloss_new's results bitwise. */
int gmf_sqloss_shard(gmf_sqloss **out, size_t n_local, size_t n_total, size_t d, const double *X,
                     const double *y);

/* The oracle (borrows s; valid while s lives).  It has the optional jvp, prepare_w (weighted
 * mixtures) and value (E_k[dL] = -(2/n) sum_i r_i E_k f(x_i, .)) members (not when sharded). */
gmf_oracle gmf_sqloss_oracle(gmf_sqloss *s);

/* Predictions h(x_i) (n, may be NULL) and loss (may be NULL) for mu (K x D), Sigma (K x D x D). */
int gmf_sqloss_eval(gmf_sqloss *s, size_t K, const double *mu, const double *Sigma, double *pred,
                    double *loss);

/* The same for the weighted mixture sum_k w[k] N(mu_k, Sigma_k) (w: K weights >= 0; NULL = 1/K). */
int gmf_sqloss_eval_w(gmf_sqloss *s, size_t K, const double *w, const double *mu,
                      const double *Sigma, double *pred, double *loss);

size_t gmf_sqloss_n(const gmf_sqloss *s);
size_t gmf_sqloss_d(const gmf_sqloss *s);

#ifdef __cplusplus
}
#endif
#endif
