/* flow.c -- Theorem 3 (Bures-Wasserstein mixture flow) and Theorem 1 (Euclidean (mu, C) flow)
 * right-hand sides over a first-variation oracle. */
#include "gmflow/flow.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "flow_internal.h"
#include "gmflow/common.h"

int gmf_flow_new(gmf_flow **out, gmf_flow_kind kind, size_t K, gmf_oracle oracle) {
    if (!out) return gmf_error(GMF_EINVAL, "flow: null output");
    *out = NULL;
    if (K == 0) return gmf_error(GMF_EINVAL, "flow: K must be >= 1");
    if (oracle.D < 2) return gmf_error(GMF_EINVAL, "flow: oracle dimension D = %zu < 2", oracle.D);
    if (kind != GMF_FLOW_BW && kind != GMF_FLOW_EUCLID && !gmf_flow_is_wfr(kind))
        return gmf_error(GMF_EINVAL, "flow: unknown flow kind %d", (int)kind);
    if (gmf_flow_is_wfr(kind) && (!oracle.prepare_w || !oracle.value))
        return gmf_error(GMF_EINVAL, "flow: the Wasserstein-Fisher-Rao flow needs an oracle with "
                                     "weighted mixtures (prepare_w and value)");
    gmf_flow *f = gmf_calloc(1, sizeof *f, "flow");
    if (!f) return GMF_ENOMEM;
    f->alpha = 1.0;
    f->kind = kind;
    f->K = K;
    f->D = oracle.D;
    f->oracle = oracle;
    /* a BW state for the Euclidean form's C C^T, then one D x D buffer for the Stein form (the
     * WFR kinds: then K weights) */
    f->work = gmf_calloc(gmf_flow_dim(f) + f->D * f->D + K, sizeof(double), "flow scratch");
    if (!f->work) {
        free(f);
        return GMF_ENOMEM;
    }
    *out = f;
    return GMF_OK;
}

void gmf_flow_free(gmf_flow *f) {
    if (!f) return;
    free(f->work);
    free(f);
}

gmf_flow_kind gmf_flow_kind_of(const gmf_flow *f) {
    return f->kind;
}
size_t gmf_flow_K(const gmf_flow *f) {
    return f->K;
}
size_t gmf_flow_D(const gmf_flow *f) {
    return f->D;
}
double gmf_flow_alpha(const gmf_flow *f) {
    return f->alpha;
}
int gmf_flow_wfr_flat(const gmf_flow *f) {
    return f->wfr_flat;
}
const gmf_oracle *gmf_flow_oracle(const gmf_flow *f) {
    return &f->oracle;
}
double gmf_flow_last_loss(const gmf_flow *f) {
    return f->oracle.loss(f->oracle.ctx);
}
long gmf_flow_nrhs(const gmf_flow *f) {
    return f->nrhs;
}
long gmf_flow_njvp(const gmf_flow *f) {
    return f->njvp;
}

size_t gmf_flow_off(const gmf_flow *f) {
    return gmf_flow_is_wfr(f->kind) ? f->K : 0;
}
double *gmf_flow_mu(const gmf_flow *f, double *y, size_t k) {
    return y + gmf_flow_off(f) + gmf_flow_mu_offset(f->K, f->D, k);
}
double *gmf_flow_mat(const gmf_flow *f, double *y, size_t k) {
    return y + gmf_flow_off(f) + gmf_flow_mat_offset(f->K, f->D, k);
}

size_t gmf_flow_dim(const gmf_flow *f) {
    return f->K * (f->D + f->D * f->D) + gmf_flow_off(f);
}

void gmf_flow_euclid_to_bw(size_t K, size_t D, const double *yc, double *ys) {
    memcpy(ys, yc, K * D * sizeof(double));
    for (size_t k = 0; k < K; k++) {
        const double *C = yc + gmf_flow_mat_offset(K, D, k);
        double *S = ys + gmf_flow_mat_offset(K, D, k);
        /* Sigma = C C^T: SYRK fills the upper triangle; mirroring it keeps Sigma exactly
         * symmetric (a GEMM need not). */
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)D, (int)D, 1.0, C, (int)D, 0.0, S,
                    (int)D);
        for (size_t a = 0; a < D; a++)
            for (size_t b = 0; b < a; b++)
                S[a * D + b] = S[b * D + a];
    }
}

int gmf_flow_bw_to_euclid(size_t K, size_t D, const double *ys, double *yc) {
    memcpy(yc, ys, K * D * sizeof(double));
    for (size_t k = 0; k < K; k++) {
        double *L = yc + gmf_flow_mat_offset(K, D, k);
        memcpy(L, ys + gmf_flow_mat_offset(K, D, k), D * D * sizeof(double));
        lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)D, L, (lapack_int)D);
        if (info != 0)
            return gmf_error(GMF_ENOTPD,
                             "Sigma of component %zu is not positive definite (Cholesky failed "
                             "at leading minor %d)",
                             k, (int)info);
        for (size_t i = 0; i < D; i++)
            for (size_t j = i + 1; j < D; j++)
                L[i * D + j] = 0.0;
    }
    return GMF_OK;
}

double gmf_flow_time_convert(double t, gmf_flow_kind from, gmf_flow_kind to, size_t K) {
    if (from == GMF_FLOW_BW && to == GMF_FLOW_EUCLID) return t * (double)K;
    if (from == GMF_FLOW_EUCLID && to == GMF_FLOW_BW) return t / (double)K;
    return t;
}

/* Run the oracle's prepare on state y; on return *Sigma and *C point at the mixture. */
static int prepare(gmf_flow *f, const double *y, const double **Sigma, const double **C) {
    const size_t K = f->K, D = f->D;
    if (!gmf_all_finite(y, gmf_flow_dim(f)))
        return gmf_error(GMF_EDIVERGE, "flow: state has non-finite entries");
    if (f->kind == GMF_FLOW_EUCLID) {
        gmf_flow_euclid_to_bw(K, D, y, f->work);
        *Sigma = f->work + gmf_flow_mat_offset(K, D, 0);
        *C = y + gmf_flow_mat_offset(K, D, 0);
    } else {
        *Sigma = y + gmf_flow_mat_offset(K, D, 0);
        *C = NULL;
    }
    return f->oracle.prepare(f->oracle.ctx, K, y, *Sigma, *C);
}

int gmf_flow_rhs(gmf_flow *f, const double *y, double *ydot) {
    if (gmf_flow_is_wfr(f->kind)) return gmf_flow_wfr_rhs_(f, y, ydot);
    const size_t K = f->K, D = f->D;
    const double *Sigma, *C;
    int rc = prepare(f, y, &Sigma, &C);
    if (rc) return rc;
    f->nrhs++;
    double *M = f->work + gmf_flow_dim(f);
    for (size_t k = 0; k < K; k++) {
        double *mudot = gmf_flow_mu(f, ydot, k), *matdot = gmf_flow_mat(f, ydot, k);
        if (f->kind == GMF_FLOW_BW) {
            /* mu' = -E grad dL;  Sigma' = -(S + S^T), S = E[hess dL] Sigma (Stein form) */
            rc = f->oracle.component(f->oracle.ctx, k, mudot, M);
            if (rc) return rc;
            for (size_t a = 0; a < D; a++) {
                mudot[a] = -mudot[a];
                for (size_t b = 0; b <= a; b++)
                    matdot[a * D + b] = matdot[b * D + a] = -(M[a * D + b] + M[b * D + a]);
            }
        } else {
            /* mu' = -(1/K) E grad dL;  C' = -(1/K) E[hess dL] C */
            rc = f->oracle.component(f->oracle.ctx, k, mudot, matdot);
            if (rc) return rc;
            cblas_dscal((int)D, -1.0 / (double)K, mudot, 1);
            cblas_dscal((int)(D * D), -1.0 / (double)K, matdot, 1);
        }
    }
    return GMF_OK;
}

int gmf_flow_ode_rhs(double t, const double *y, double *ydot, void *user) {
    (void)t;
    return gmf_flow_rhs((gmf_flow *)user, y, ydot) ? -1 : 0;
}

int gmf_flow_loss(gmf_flow *f, const double *y, double *loss) {
    if (gmf_flow_is_wfr(f->kind)) return gmf_flow_wfr_loss_(f, y, loss);
    const double *Sigma, *C;
    int rc = prepare(f, y, &Sigma, &C);
    *loss = f->oracle.loss(f->oracle.ctx);
    return rc;
}

int gmf_flow_check_state(gmf_flow_kind kind, size_t K, size_t D, const double *y) {
    if (gmf_flow_is_wfr(kind)) {
        int rc = gmf_flow_check_weights_(kind, K, y);
        if (rc) return rc;
        return gmf_flow_check_state(kind == GMF_FLOW_WFR_BW ? GMF_FLOW_BW : GMF_FLOW_EUCLID, K, D,
                                    y + K);
    }
    size_t N = K * (D + D * D);
    for (size_t i = 0; i < N; i++) {
        if (isfinite(y[i])) continue;
        if (i < K * D)
            return gmf_error(GMF_EINVAL, "component %zu: mean entry %zu is not finite", i / D,
                             i % D);
        size_t k = (i - K * D) / (D * D), e = (i - K * D) % (D * D);
        return gmf_error(GMF_EINVAL, "component %zu: %s[%zu][%zu] is not finite", k,
                         kind == GMF_FLOW_BW ? "Sigma" : "C", e / D, e % D);
    }
    if (kind == GMF_FLOW_EUCLID) return GMF_OK; /* any C gives a PSD Sigma = C C^T */
    double *S = gmf_calloc(D * D + D, sizeof(double), "state check");
    if (!S) return GMF_ENOMEM;
    double *ev = S + D * D;
    int rc = GMF_OK;
    for (size_t k = 0; k < K && rc == GMF_OK; k++) {
        const double *Sk = y + gmf_flow_mat_offset(K, D, k);
        double scale = 0.0;
        for (size_t a = 0; a < D * D; a++)
            scale = fmax(scale, fabs(Sk[a]));
        for (size_t a = 0; a < D && rc == GMF_OK; a++)
            for (size_t b = 0; b < a; b++)
                if (fabs(Sk[a * D + b] - Sk[b * D + a]) > 1e-12 * scale) {
                    rc = gmf_error(GMF_ENOTPD,
                                   "component %zu: Sigma is not symmetric (Sigma[%zu][%zu] = %.17g "
                                   "but Sigma[%zu][%zu] = %.17g)",
                                   k, a, b, Sk[a * D + b], b, a, Sk[b * D + a]);
                    break;
                }
        if (rc) break;
        memcpy(S, Sk, D * D * sizeof(double));
        lapack_int info =
            LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'N', 'U', (lapack_int)D, S, (lapack_int)D, ev);
        if (info != 0) {
            rc =
                gmf_error(GMF_ENOTPD, "component %zu: eigenvalues of Sigma failed (LAPACK info %d)",
                          k, (int)info);
            break;
        }
        /* Positive semidefinite up to GMF_PSD_RTOL lambda_max: a singular Sigma is a legitimate
         * (degenerate) component -- the closed forms handle s -> 0 -- and integrating the Sigma
         * form moves its zero eigenvalue by about rtol lambda_max either way, so a state saved
         * from such a run must still load; a clearly negative eigenvalue is rejected. */
        if (ev[0] < -GMF_PSD_RTOL * fmax(ev[D - 1], 1e-300))
            rc = gmf_error(GMF_ENOTPD,
                           "component %zu: Sigma is not positive semidefinite (smallest "
                           "eigenvalue %.6g, largest %.6g)",
                           k, ev[0], ev[D - 1]);
    }
    free(S);
    return rc;
}
