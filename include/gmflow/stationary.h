/* gmflow/stationary.h -- stationary points of the Euclidean objective l(mu, C) (prefix
 * gmf_stationary).
 *
 * The Euclidean flow (flow.h, GMF_FLOW_EUCLID) is y' = F(y) = -grad l(y), y = [mu | C], so
 * grad l = -F and Hess l = -J with J = dF/dy the exact dense Jacobian (gmf_flow_jac).
 *
 * Newton polish (Levenberg-Marquardt on g(y) = grad l(y) = 0): at each iterate the Hessian's
 * eigen-decomposition H = V diag(lambda) V^T (LAPACK dsyevr) and the damped Newton step
 *   (H^2 + delta^2 I) p = -H g,   p = -sum_i lambda_i / (lambda_i^2 + delta^2) (v_i . g) v_i,
 * delta^2 = mu |g|^2 (Yamashita-Fukushima: quadratic convergence even when the solutions are not
 * isolated, as here along the gauge orbits C_k -> C_k Q, where H is singular), accepted when
 * |g(y + p)| < |g(y)| (then mu /= 16, at least 1e-12), else mu *= 4 and retried.  It converges
 * to the stationary point nearby, minimum or saddle alike; far from one (a plateau of the flow,
 * eigenvalues of H near 0) it can make slow progress: polish after the flow has settled.
 *
 * Relative gradient norm: |g|_2 / (max|lambda(H)| |y|_2), the size of the Newton step relative to
 * the state that the gradient corresponds to (dimensionless; rounding puts a floor near 1e-16).
 *
 * Spectrum and index: the gauge directions at y are C_k A (A antisymmetric, D(D - 1)/2 per
 * component, tangent to C_k -> C_k Q); an orthonormal basis of the complement of their span (SVD,
 * rank counted with a relative threshold 1e-10) restricts H to Hr = U_perp^T H U_perp, whose
 * eigenvalues below -tol (tol = zero_rtol max|lambda(H)|) are the index: 0 at a minimum, > 0 at
 * a saddle.  Zero eigenvalues that remain are reported (nzero); the rescaling symmetry of the
 * neuron, (omega, beta) -> (omega / a, a beta), gives one per component at a stationary point.
 */
#ifndef GMFLOW_STATIONARY_H
#define GMFLOW_STATIONARY_H

#include <stddef.h>

#include "gmflow/flow.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GMF_STATIONARY_MAXIT 100

typedef struct gmf_stationary_opts {
    int max_iter; /* Newton iterations at most (default 50, at most GMF_STATIONARY_MAXIT) */
    double gtol;  /* stop at relative gradient norm <= gtol (default 1e-14) */
    double mu0;   /* initial damping factor: delta^2 = mu |g|^2 (default 1e-4) */
} gmf_stationary_opts;

gmf_stationary_opts gmf_stationary_defaults(void);

typedef struct gmf_stationary_result {
    int iters;                          /* Newton steps taken */
    int converged;                      /* relative gradient norm reached gtol */
    double grad0, grad, grad_rel, loss; /* |g| at the start and end, relative |g| at the end, l */
    double hist[GMF_STATIONARY_MAXIT + 1]; /* |g| at each iterate (iters + 1 entries) */
} gmf_stationary_result;

/* Hessian of l at a Euclidean state y: H = -J (N x N row-major, symmetrized (H + H^T) / 2). */
int gmf_stationary_hessian(gmf_flow *f, const double *y, double *H);

/* Newton polish in place (f: a GMF_FLOW_EUCLID flow whose oracle has a jvp).  Returns GMF_OK
 * whether or not gtol was reached (see res->converged), or an error. */
int gmf_stationary_newton(gmf_flow *f, double *y, const gmf_stationary_opts *o,
                          gmf_stationary_result *res);

typedef struct gmf_stationary_spectrum {
    size_t N;      /* state dimension */
    size_t ngauge; /* rank of the gauge directions (K D (D - 1) / 2 when every C_k is invertible) */
    size_t nr;     /* N - ngauge */
    double *hess;  /* N eigenvalues of H, ascending */
    double *restr; /* nr eigenvalues of H restricted to the complement of the gauge directions */
    size_t index;  /* restricted eigenvalues < -tol */
    size_t nzero;  /* restricted eigenvalues with |lambda| <= tol */
    double tol;    /* zero_rtol max|lambda(H)| */
} gmf_stationary_spectrum;

/* Spectrum and index at y (default zero_rtol 1e-8 when <= 0); free with
 * gmf_stationary_spectrum_free. */
int gmf_stationary_spectrum_compute(gmf_flow *f, const double *y, double zero_rtol,
                                    gmf_stationary_spectrum *s);
void gmf_stationary_spectrum_free(gmf_stationary_spectrum *s);

/* The end-of-run polish for a state y of either form (what `gmflow flow --polish` calls): a BW
 * state is factored first, C_k = V_k diag(sqrt(max(lambda_k, 0))) from Sigma_k = V_k
 * diag(lambda_k) V_k^T (any factor: they differ by the gauge), then gmf_stationary_newton on
 * l(mu, C) and the spectrum at the result (zero_rtol 1e-8).  yc (N) receives the polished
 * Euclidean state [mu | C]; spec is allocated (free with gmf_stationary_spectrum_free). */
int gmf_stationary_polish(gmf_oracle oracle, size_t K, gmf_flow_kind kind, const double *y,
                          const gmf_stationary_opts *o, double *yc, gmf_stationary_result *res,
                          gmf_stationary_spectrum *spec);

/* Write the spectrum as CSV (docs/FORMATS.md): header "set,i,eigenvalue", rows "hessian,i,x"
 * (N) then "restricted,i,x" (nr), %.17g.  Atomic (a temporary renamed into place). */
int gmf_stationary_spectrum_write(const char *path, const gmf_stationary_spectrum *s);

#ifdef __cplusplus
}
#endif
#endif
