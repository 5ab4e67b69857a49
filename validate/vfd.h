/* validate/vfd.h -- what the validations of the squared-loss flows share: fd.c and jac_fd.c all
 * of it, energy.c and thm1.c the problem (header only, everything static inline: each
 * validate/<name>.c is one program and CMake builds only the .c files):
 *
 *   - vfd_problem: the squared-loss toy problem (gmf_toy_make data, gmf_sqloss) with its
 *     Euclidean ([mu | C]) and BW ([mu | Sigma]) flows;
 *   - vfd_state: a random Euclidean state [mu | C], each C_k = L_k Q_k with Sigma_k = L_k L_k^T
 *     of a requested kind (well-conditioned, near-singular, singular, thin in beta) and Q_k a
 *     random orthogonal matrix (so C_k is full, neither symmetric nor triangular);
 *   - vfd_richardson: central differences of a vector function g(t) at t = 0 with steps h and
 *     h/2, Richardson-extrapolated (error O(h^4)), with the error estimate |D(h/2) - D(h)| / 3 of
 *     the plain difference at h/2.  The caller chooses the step (fd.c: scaled per entry by the
 *     component's standard deviations; jac_fd.c: the best of four by that estimate).
 */
#ifndef GMFLOW_VALIDATE_VFD_H
#define GMFLOW_VALIDATE_VFD_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/flow.h"
#include "gmflow/sqloss.h"
#include "gmflow/toy.h"
#include "testutil.h"

/* ---------------------------------------------------------------- the toy problem */

typedef struct vfd_problem {
    double *X, *y;     /* toy data: n x d inputs, n targets */
    gmf_sqloss *sq;    /* the squared loss on them */
    gmf_flow *fE, *fB; /* its Euclidean and BW flows with K components */
} vfd_problem;

/* Make the problem; on failure returns the library's status (gmf_errmsg() says why).  Call
 * vfd_problem_free in either case. */
static inline int vfd_problem_init(vfd_problem *p, size_t n, size_t d, size_t K,
                                   gmf_toy_teacher teacher, unsigned long seed) {
    memset(p, 0, sizeof *p);
    gmf_toy_opts to = gmf_toy_defaults();
    to.n = n, to.d = d, to.teacher = teacher, to.seed = seed;
    int rc = gmf_toy_make(&to, &p->X, &p->y);
    if (!rc) rc = gmf_sqloss_new(&p->sq, n, d, p->X, p->y);
    if (!rc) rc = gmf_flow_new(&p->fE, GMF_FLOW_EUCLID, K, gmf_sqloss_oracle(p->sq));
    if (!rc) rc = gmf_flow_new(&p->fB, GMF_FLOW_BW, K, gmf_sqloss_oracle(p->sq));
    return rc;
}

static inline void vfd_problem_free(vfd_problem *p) {
    gmf_flow_free(p->fB);
    gmf_flow_free(p->fE);
    gmf_sqloss_free(p->sq);
    free(p->X);
    free(p->y);
    memset(p, 0, sizeof *p);
}

/* ---------------------------------------------------------------- states */

/* Covariance kinds of a state's components. */
typedef enum {
    VFD_COV_FULL = 0, /* random SPD, condition number 10 */
    VFD_COV_NEAR,     /* random SPD, condition number 1e6 */
    VFD_COV_SING,     /* exactly rank D - 1, random null vector */
    VFD_COV_THIN      /* beta block variance 1e-4: s = sd(beta . x) ~ 1e-2 |x|, steep Phi(m / s) */
} vfd_cov;

/* y = [mu | C] (K components, dimension D): mu ~ N(0, 0.5^2), C_k = L_k Q_k with Sigma_k of kind
 * cov[k] (largest eigenvalue 0.5; thin: L_k = diag(0.5, 1e-2, ...)). */
static inline void vfd_state(gsl_rng *r, size_t K, size_t D, const vfd_cov *cov, double *y) {
    double *S = tu_xmalloc(D * D * sizeof *S), *L = tu_xmalloc(D * D * sizeof *L);
    double *Q = tu_xmalloc(D * D * sizeof *Q), *v = tu_xmalloc(D * sizeof *v);
    tu_randn(r, K * D, 0.5, y);
    for (size_t k = 0; k < K; k++) {
        switch (cov[k]) {
        case VFD_COV_FULL:
            tu_rand_spd(r, D, 10.0, 0.5, S, L);
            break;
        case VFD_COV_NEAR:
            tu_rand_spd(r, D, 1e6, 0.5, S, L);
            break;
        case VFD_COV_SING:
            tu_randn(r, D, 1.0, v);
            tu_rand_psd_null(r, D, v, 10.0, 0.5, S, L);
            break;
        case VFD_COV_THIN:
            memset(L, 0, D * D * sizeof *L);
            L[0] = 0.5;
            for (size_t a = 1; a < D; a++)
                L[a * D + a] = 1e-2;
            break;
        }
        tu_rand_orthogonal(r, D, Q);
        tu_matmul(D, D, D, L, Q, y + gmf_flow_mat_offset(K, D, k));
    }
    free(v);
    free(Q);
    free(L);
    free(S);
}

/* ---------------------------------------------------------------- finite differences */

/* g(ctx, t, out): the n values of the function at step t along the caller's direction; nonzero
 * when it could not be evaluated. */
typedef int (*vfd_fn)(void *ctx, double t, double *out);

/* d = (4 D(h/2) - D(h)) / 3 with D(s) = (g(s) - g(-s)) / (2 s), and est = |D(h/2) - D(h)| / 3,
 * entry by entry (n entries); g is called at h, -h, h/2, -h/2 in that order; work: 3n doubles.
 * Returns 0, or at once g's nonzero status (d and est are then not written). */
static inline int vfd_richardson(vfd_fn g, void *ctx, size_t n, double h, double *d, double *est,
                                 double *work) {
    double *gp = work, *gm = work + n, *D0 = work + 2 * n;
    for (int pass = 0; pass < 2; pass++) {
        const double hh = pass ? h / 2 : h;
        int rc = g(ctx, hh, gp);
        if (!rc) rc = g(ctx, -hh, gm);
        if (rc) return rc;
        for (size_t i = 0; i < n; i++) {
            const double D = (gp[i] - gm[i]) / (2 * hh);
            if (pass == 0)
                D0[i] = D;
            else {
                est[i] = fabs(D - D0[i]) / 3;
                d[i] = (4 * D - D0[i]) / 3;
            }
        }
    }
    return 0;
}

#endif
