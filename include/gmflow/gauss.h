/* gmflow/gauss.h -- closed-form Gaussian-ReLU expectations (prefix gmf_gauss).
 *
 * theta = (omega, beta) in R^D, D = d + 1, f(x, theta) = omega * relu(beta . x).
 * For one component N(mu, Sigma) and an input x, let xt = (0, x) and Y = xt . theta.  Then
 *
 *   m = xt . mu,  c = Sigma xt,  s^2 = xt . c,  t = m / s,  Phi = Phi(t),  phi = phi(t),
 *   u = c / s  (bounded: |u_j| <= sqrt(Sigma_jj)),
 *
 *   E[relu(Y)]            = A   = m Phi + s phi
 *   E f                   = Ef  = mu_w A + c_0 Phi                  (mu_w = mu_0)
 *   E[omega 1{Y>0}]       = g   = mu_w Phi + u_0 phi
 *   E[omega delta(Y)] * s = kap = phi (mu_w - u_0 t)
 *   E grad f              = (A, g x)
 *   E[hess f]             = Phi (e0 xt^T + xt e0^T) + (kap / s) xt xt^T
 *   E[grad f (x) (theta - mu)] = E[hess f] Sigma = e0 a^T + xt b^T,
 *                           a = Phi c,  b = Phi Sigma e0 + kap u.
 *
 * Everything is written in terms of u = c/s and kap, so no division by a variance other than
 * s itself appears; see docs/CLOSED_FORMS.md for the derivation.  Degenerate limit: when s == 0
 * (x = 0, or Sigma singular along xt, in which case c = 0 too) Y = m almost surely and the
 * limits are Phi = 1{m > 0}, phi = 0, u = 0, kap = 0.
 */
#ifndef GMFLOW_GAUSS_H
#define GMFLOW_GAUSS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Standard normal cdf and pdf. */
double gmf_gauss_cdf(double t);
double gmf_gauss_pdf(double t);

/* Per-sample scalars for one component and one input (see the header comment). */
typedef struct gmf_gauss_point {
    double m, s, t, Phi, phi; /* Y ~ N(m, s^2), t = m/s (0 when s == 0) */
    double u0;                /* c_0 / s = Cov(omega, Y) / sd(Y) (0 when s == 0) */
    double A, Ef, g, kap;     /* E relu(Y), E f, E[omega 1{Y>0}], s E[omega delta(Y)] */
} gmf_gauss_point;

/* Scalars from m, s^2 (clamped at 0), c_0 = (Sigma xt)_0 and mu_w.  Exposed so that batched code
 * and tests share one definition of the degenerate limit. */
void gmf_gauss_scalars(double m, double s2, double c0, double mu_w, gmf_gauss_point *p);

/* The scalars of n points (m_i, s2_i, c0_i) sharing one mu_w, as arrays: the same values as n
 * calls of gmf_gauss_scalars (same limits: s == 0 or |m| >= 38 s gives Phi = 1{m > 0}, phi = 0),
 * with q = kap / s (0 when s == 0).  c0 may be NULL (all zero); any output may be NULL (not
 * computed); outputs must not overlap the inputs.  Vectorized four points at a time with glibc's
 * libmvec erfc/exp (accurate to about 4 ulp, vs < 1 ulp for the scalar calls) when compiled for
 * AVX2 + FMA (GMFLOW_NATIVE); else, and for the n mod 4 remainder, gmf_gauss_scalars. */
typedef struct gmf_gauss_batch_out {
    double *s, *Phi, *phi, *A, *Ef, *g, *q;
} gmf_gauss_batch_out;
void gmf_gauss_batch(size_t n, const double *m, const double *s2, const double *c0, double mu_w,
                     const gmf_gauss_batch_out *out);

/* Reference single-input evaluation (no BLAS), used by tests and by the Monte Carlo checks.
 *   x: d,  mu: D,  Sigma: D x D row-major symmetric.  Outputs (any may be NULL):
 *   p        the scalars above
 *   grad     D       E grad f
 *   hess     D x D   E hess f          (the delta term uses kap/s; +inf-free only if s > 0)
 *   stein    D x D   E[grad f (x) (theta - mu)] = e0 a^T + xt b^T
 *   c        D       Sigma xt
 */
void gmf_gauss_eval1(size_t d, const double *x, const double *mu, const double *Sigma,
                     gmf_gauss_point *p, double *grad, double *hess, double *stein, double *c);

/* The paper's building blocks of Appendix A.1 for one input (robust conditional form):
 *   A = E relu(Y), B = E[omega 1{Y>0}], C = E[omega relu(Y)], D = E[omega^2 1{Y>0}],
 *   P_j = E[relu(Y) beta_j], Q_j = E[omega 1{Y>0} beta_j]   (j = 0..d-1; P, Q of length d). */
typedef struct gmf_gauss_blocks {
    double A, B, C, D;
} gmf_gauss_blocks;
void gmf_gauss_blocks1(size_t d, const double *x, const double *mu, const double *Sigma,
                       gmf_gauss_blocks *out, double *P, double *Q);

#ifdef __cplusplus
}
#endif
#endif
