/* wfr.c -- Wasserstein-Fisher-Rao mixture flows (flow.h, GMF_FLOW_WFR_BW / GMF_FLOW_WFR_EUCLID;
 * the derivation is in docs/WFR.md).
 *
 *   WFR_BW     y = [w | mu | Sigma]:  w_k' = -alpha w_k (v_k - vbar),
 *                                     mu_k' = -s_k E_k grad dL,  Sigma_k' = -s_k (S_k + S_k^T),
 *              s_k = 1 (the WFR flow) or K w_k (wfr_flat: the image of the Euclidean form);
 *   WFR_EUCLID y = [a | mu | C]:      a_k' = -(alpha / (2 K |a|^2)) a_k (v_k - vbar),
 *                                     mu_k' = -w_k E_k grad dL,  C_k' = -w_k E_k[hess dL] C_k,
 *
 * with v_k = E_k[dL] (the oracle's value member), vbar = sum_k w_k v_k / sum_k w_k (dividing by
 * sum w keeps sum_k w_k' = 0 up to rounding even when the state's sum has drifted by rounding),
 * S_k = E_k[hess dL] Sigma_k the Stein form, and w_k = a_k^2 / |a|^2 in the Euclidean form. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "flow_internal.h"
#include "gmflow/common.h"
#include "gmflow/flow.h"

int gmf_flow_set_alpha(gmf_flow *f, double alpha) {
    if (!gmf_flow_is_wfr(f->kind))
        return gmf_error(GMF_EINVAL,
                         "flow: the Fisher-Rao weight applies to the WFR flows only (kind %d)",
                         (int)f->kind);
    if (!isfinite(alpha) || alpha < 0.0)
        return gmf_error(GMF_EINVAL, "flow: the Fisher-Rao weight must be finite and >= 0 (got %g)",
                         alpha);
    f->alpha = alpha;
    return GMF_OK;
}

int gmf_flow_set_wfr_flat(gmf_flow *f, int flat) {
    if (f->kind != GMF_FLOW_WFR_BW)
        return gmf_error(GMF_EINVAL, "flow: wfr_flat applies to GMF_FLOW_WFR_BW only (kind %d)",
                         (int)f->kind);
    if (flat != 0 && flat != 1)
        return gmf_error(GMF_EINVAL, "flow: wfr_flat must be 0 or 1 (got %d)", flat);
    f->wfr_flat = flat;
    return GMF_OK;
}

void gmf_flow_weights(gmf_flow_kind kind, size_t K, const double *y, double *w) {
    if (kind == GMF_FLOW_WFR_BW) {
        memcpy(w, y, K * sizeof(double));
    } else if (kind == GMF_FLOW_WFR_EUCLID) {
        double a2 = 0.0;
        for (size_t k = 0; k < K; k++)
            a2 += y[k] * y[k];
        for (size_t k = 0; k < K; k++)
            w[k] = y[k] * y[k] / a2;
    } else {
        for (size_t k = 0; k < K; k++)
            w[k] = 1.0 / (double)K;
    }
}

/* Prepare the oracle at the WFR state y; on return w (in f's scratch) holds the weights and
 * *a2 = |a|^2 (Euclidean form; 1 otherwise). */
static int wfr_prepare(gmf_flow *f, const double *y, double **wout, double *a2) {
    const size_t K = f->K, D = f->D, N = gmf_flow_dim(f);
    if (!gmf_all_finite(y, N)) return gmf_error(GMF_EDIVERGE, "flow: state has non-finite entries");
    double *w = f->work + N + D * D;
    const double *mu = y + K, *Sigma = y + K + K * D, *C = NULL;
    *a2 = 1.0;
    if (f->kind == GMF_FLOW_WFR_EUCLID) {
        double s = 0.0;
        for (size_t k = 0; k < K; k++)
            s += y[k] * y[k];
        if (!(s > 0.0)) return gmf_error(GMF_EINVAL, "flow: WFR amplitudes a are all zero");
        *a2 = s;
        for (size_t k = 0; k < K; k++)
            w[k] = y[k] * y[k] / s;
        gmf_flow_euclid_to_bw(K, D, y + K, f->work);
        Sigma = f->work + K * D;
        C = y + K + K * D;
    } else {
        memcpy(w, y, K * sizeof(double));
    }
    *wout = w;
    return f->oracle.prepare_w(f->oracle.ctx, K, w, mu, Sigma, C);
}

int gmf_flow_wfr_rhs_(gmf_flow *f, const double *y, double *ydot) {
    const size_t K = f->K, D = f->D, KD = K * D, N = gmf_flow_dim(f);
    double *w, a2;
    int rc = wfr_prepare(f, y, &w, &a2);
    if (rc) return rc;
    f->nrhs++;
    double sw = 0.0, swv = 0.0;
    for (size_t k = 0; k < K; k++) {
        sw += w[k];
        swv += w[k] * f->oracle.value(f->oracle.ctx, k);
    }
    const double vbar = swv / sw, euclid = f->kind == GMF_FLOW_WFR_EUCLID;
    const double ra = euclid ? f->alpha / (2.0 * (double)K * a2) : f->alpha;
    for (size_t k = 0; k < K; k++) /* Euclid: a_k' (y[k] = a_k); BW: w_k' (y[k] = w_k) */
        ydot[k] = -ra * y[k] * (f->oracle.value(f->oracle.ctx, k) - vbar);
    double *M = f->work + N;
    for (size_t k = 0; k < K; k++) {
        double *mudot = ydot + K + k * D, *matdot = ydot + K + KD + k * D * D;
        if (euclid) { /* mu' = -w E grad dL;  C' = -w E[hess dL] C */
            rc = f->oracle.component(f->oracle.ctx, k, mudot, matdot);
            if (rc) return rc;
            cblas_dscal((int)D, -w[k], mudot, 1);
            cblas_dscal((int)(D * D), -w[k], matdot, 1);
            continue;
        }
        /* mu' = -s E grad dL;  Sigma' = -s (S + S^T), S = E[hess dL] Sigma (Stein form) */
        const double s = f->wfr_flat ? (double)K * w[k] : 1.0;
        rc = f->oracle.component(f->oracle.ctx, k, mudot, M);
        if (rc) return rc;
        for (size_t a = 0; a < D; a++) {
            mudot[a] = -s * mudot[a];
            for (size_t b = 0; b <= a; b++)
                matdot[a * D + b] = matdot[b * D + a] = -s * (M[a * D + b] + M[b * D + a]);
        }
    }
    return GMF_OK;
}

int gmf_flow_wfr_loss_(gmf_flow *f, const double *y, double *loss) {
    double *w, a2;
    int rc = wfr_prepare(f, y, &w, &a2);
    *loss = rc && rc != GMF_EDIVERGE ? NAN : f->oracle.loss(f->oracle.ctx);
    return rc;
}

int gmf_flow_check_weights_(gmf_flow_kind kind, size_t K, const double *y) {
    double sum = 0.0, a2 = 0.0;
    for (size_t k = 0; k < K; k++) {
        if (!isfinite(y[k]))
            return gmf_error(GMF_EINVAL, "component %zu: %s is not finite", k,
                             kind == GMF_FLOW_WFR_BW ? "weight w" : "amplitude a");
        if (kind == GMF_FLOW_WFR_BW && y[k] < -GMF_WFR_SUM_TOL)
            return gmf_error(GMF_EINVAL, "component %zu: weight w = %.17g is negative", k, y[k]);
        sum += y[k];
        a2 += y[k] * y[k];
    }
    if (kind == GMF_FLOW_WFR_BW && !(fabs(sum - 1.0) <= GMF_WFR_SUM_TOL))
        return gmf_error(GMF_EINVAL, "mixture weights sum to %.17g, not 1 (tolerance %g)", sum,
                         GMF_WFR_SUM_TOL);
    if (kind == GMF_FLOW_WFR_EUCLID && !(a2 > 0.0))
        return gmf_error(GMF_EINVAL, "mixture amplitudes a are all zero");
    return GMF_OK;
}
