/* flow_jac.c -- exact Jacobian information of the flow's right-hand side (flow.h).
 *
 * With the oracle's directional derivatives (dgrad_k, dM_k) of (E_k grad dL, E_k[hess dL] R_k):
 *   GMF_FLOW_BW:     J v = [-dgrad_k | -(dM_k + dM_k^T)]
 *   GMF_FLOW_EUCLID: J v = [-dgrad_k / K | -dM_k / K]
 * (the derivative of gmf_flow_rhs term by term); the dense J column by column. */
#include <stdlib.h>
#include <string.h>

#include "flow_internal.h"
#include "gmflow/common.h"
#include "gmflow/flow.h"

int gmf_flow_jvp(gmf_flow *f, const double *y, const double *v, double *jv) {
    const size_t K = f->K, D = f->D, N = gmf_flow_dim(f);
    if (gmf_flow_is_wfr(f->kind))
        return gmf_error(GMF_EINVAL, "flow: no exact Jacobian for the Wasserstein-Fisher-Rao flow "
                                     "(use the difference-quotient Jacobian)");
    if (!f->oracle.jvp)
        return gmf_error(GMF_EINVAL, "flow: the oracle supplies no Jacobian-vector product");
    if (!gmf_all_finite(y, N)) return gmf_error(GMF_EDIVERGE, "flow: state has non-finite entries");
    const double *Sigma = y + K * D, *C = NULL;
    if (f->kind == GMF_FLOW_EUCLID) {
        gmf_flow_euclid_to_bw(K, D, y, f->work);
        Sigma = f->work + K * D;
        C = y + K * D;
    }
    int rc = f->oracle.jvp(f->oracle.ctx, K, y, Sigma, C, v, v + K * D, jv, jv + K * D);
    if (rc) return rc;
    f->njvp++;
    if (f->kind == GMF_FLOW_EUCLID) {
        for (size_t i = 0; i < N; i++)
            jv[i] *= -1.0 / (double)K;
        return GMF_OK;
    }
    for (size_t i = 0; i < K * D; i++)
        jv[i] = -jv[i];
    for (size_t k = 0; k < K; k++) {
        double *M = jv + gmf_flow_mat_offset(K, D, k);
        for (size_t a = 0; a < D; a++)
            for (size_t b = 0; b <= a; b++)
                M[a * D + b] = M[b * D + a] = -(M[a * D + b] + M[b * D + a]);
    }
    return GMF_OK;
}

int gmf_flow_jac(gmf_flow *f, const double *y, double *J) {
    const size_t N = gmf_flow_dim(f);
    double *e = gmf_calloc(2 * N, sizeof(double), "flow Jacobian");
    if (!e) return GMF_ENOMEM;
    double *col = e + N;
    int rc = GMF_OK;
    for (size_t j = 0; j < N && rc == GMF_OK; j++) {
        e[j] = 1.0;
        rc = gmf_flow_jvp(f, y, e, col);
        e[j] = 0.0;
        for (size_t i = 0; i < N; i++)
            J[i * N + j] = col[i];
    }
    free(e);
    return rc;
}

int gmf_flow_ode_jvp(double t, const double *y, const double *fy, const double *v, double *jv,
                     void *user) {
    (void)t, (void)fy;
    return gmf_flow_jvp((gmf_flow *)user, y, v, jv) ? -1 : 0;
}

int gmf_flow_ode_jac(double t, const double *y, double *J, void *user) {
    (void)t;
    return gmf_flow_jac((gmf_flow *)user, y, J) ? -1 : 0;
}
