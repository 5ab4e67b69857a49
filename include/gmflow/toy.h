/* gmflow/toy.h -- regression toys and initial mixtures (prefix gmf_toy).
 *
 * Teachers (inputs x_i ~ N(0, I_d), targets y_i = teacher(x_i) + noise * N(0, 1)):
 *   GMF_TOY_RELU     a finite-width ReLU network  y = (1/m) sum_j a_j relu(b_j . x),
 *                    a_j ~ N(0, 4),  b_j ~ N(0, I_d / d)
 *   GMF_TOY_MIXTURE  a planted Gaussian mixture  y = E_{rho*} f(x, theta) computed in closed
 *                    form (gauss.h), rho* = (1/m) sum_j N(mu*_j, Sigma*_j),
                    entries of mu*_j ~ N(0, 1), Sigma*_j = I_D / 4
 * All randomness from GSL's mt19937 seeded with `seed`.
 */
#ifndef GMFLOW_TOY_H
#define GMFLOW_TOY_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { GMF_TOY_RELU = 0, GMF_TOY_MIXTURE = 1 } gmf_toy_teacher;

typedef struct gmf_toy_opts {
    size_t n, d;             /* samples, input dimension */
    gmf_toy_teacher teacher; /* see above */
    size_t width;            /* teacher width m (neurons or planted components) */
    double noise;            /* standard deviation of the additive label noise */
    unsigned long seed;
} gmf_toy_opts;

/* Defaults: n 200, d 3, relu teacher, width 4, noise 0.05, seed 1. */
gmf_toy_opts gmf_toy_defaults(void);

/* Allocates *X (n x d row-major) and *y (n); caller frees with free(). */
int gmf_toy_make(const gmf_toy_opts *o, double **X, double **y);

/* The paper's initialization: entries of mu_k ~ N(0, gamma^2), C_k = gamma I (Sigma_k =
 * gamma^2 I).  mu: K x D, C: K x D x D (may be NULL), Sigma: K x D x D (may be NULL). */
int gmf_toy_init_mixture(size_t K, size_t D, double gamma, unsigned long seed, double *mu,
                         double *C, double *Sigma);

#ifdef __cplusplus
}
#endif
#endif
