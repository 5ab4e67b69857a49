/* sqloss.c -- the squared regression loss as a first-variation oracle (Theorem 4).
 *
 * For component k with right factor R (R = C_k in the Euclidean form, Sigma_k otherwise) and
 * rows w_i = R^T xt_i of W = Xt R, the sums over the n samples are
 *
 *   E_k grad dL          = sum_i rho_i (A_i, g_i x_i),                    rho_i = -(2/n) r_i
 *   E_k[hess dL] R       = sum_i rho_i E_k[hess f(x_i)] R
 *                        = e0 (W^T z)^T + xt-part:  X^T diag(rho q) W + (X^T z) R_{0,:},
 *                          z_i = rho_i Phi_i,  q_i = kap_i / s_i
 *
 * using E[hess f] = Phi (e0 xt^T + xt e0^T) + (kap/s) xt xt^T (gauss.h).  W and the products
 * with X are BLAS level-3 calls; everything else is O(n D) per component.
 */
#include "gmflow/sqloss.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/gauss.h"

struct gmf_sqloss {
    size_t n, d, D;
    double *X, *y;
    /* cache of the last prepared mixture (valid until the next prepare) */
    size_t K, Kcap;
    const double *R;              /* K x D x D right factors (caller's C or Sigma) */
    double *W;                    /* K x n x D:  Xt R_k */
    double *Phi, *A, *g, *q, *Ef; /* K x n */
    double *m;                    /* n x K: X mu_beta^T */
    double *r;                    /* n residuals y - h */
    double *z;                    /* n scratch */
    double *V;                    /* n x D scratch: diag(rho q) W */
    double loss;
};

size_t gmf_sqloss_n(const gmf_sqloss *s) {
    return s->n;
}
size_t gmf_sqloss_d(const gmf_sqloss *s) {
    return s->d;
}

int gmf_sqloss_new(gmf_sqloss **out, size_t n, size_t d, const double *X, const double *y) {
    *out = NULL;
    if (n == 0 || d == 0)
        return gmf_error(GMF_EINVAL, "squared loss: need n >= 1 and d >= 1 (got n=%zu, d=%zu)", n,
                         d);
    for (size_t i = 0; i < n * d; i++)
        if (!isfinite(X[i]))
            return gmf_error(GMF_EINVAL, "squared loss: input x[%zu][%zu] is not finite", i / d,
                             i % d);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(y[i]))
            return gmf_error(GMF_EINVAL, "squared loss: target y[%zu] is not finite", i);
    gmf_sqloss *s = gmf_calloc(1, sizeof *s, "squared loss");
    if (!s) return GMF_ENOMEM;
    s->n = n;
    s->d = d;
    s->D = d + 1;
    s->X = gmf_calloc(n * d, sizeof(double), "squared loss inputs");
    s->y = gmf_calloc(n, sizeof(double), "squared loss targets");
    s->r = gmf_calloc(n, sizeof(double), "squared loss residuals");
    s->z = gmf_calloc(n, sizeof(double), "squared loss scratch");
    s->V = gmf_calloc(n * s->D, sizeof(double), "squared loss scratch");
    if (!s->X || !s->y || !s->r || !s->z || !s->V) {
        gmf_sqloss_free(s);
        return GMF_ENOMEM;
    }
    memcpy(s->X, X, n * d * sizeof(double));
    memcpy(s->y, y, n * sizeof(double));
    *out = s;
    return GMF_OK;
}

static void free_cache(gmf_sqloss *s) {
    free(s->W);
    free(s->Phi);
    free(s->A);
    free(s->g);
    free(s->q);
    free(s->Ef);
    free(s->m);
    s->W = s->Phi = s->A = s->g = s->q = s->Ef = s->m = NULL;
    s->Kcap = 0;
}

void gmf_sqloss_free(gmf_sqloss *s) {
    if (!s) return;
    free_cache(s);
    free(s->X);
    free(s->y);
    free(s->r);
    free(s->z);
    free(s->V);
    free(s);
}

static int reserve(gmf_sqloss *s, size_t K) {
    if (K <= s->Kcap) return GMF_OK;
    free_cache(s);
    size_t n = s->n;
    s->W = gmf_calloc(K * n * s->D, sizeof(double), "squared loss cache");
    s->Phi = gmf_calloc(K * n, sizeof(double), "squared loss cache");
    s->A = gmf_calloc(K * n, sizeof(double), "squared loss cache");
    s->g = gmf_calloc(K * n, sizeof(double), "squared loss cache");
    s->q = gmf_calloc(K * n, sizeof(double), "squared loss cache");
    s->Ef = gmf_calloc(K * n, sizeof(double), "squared loss cache");
    s->m = gmf_calloc(K * n, sizeof(double), "squared loss cache");
    if (!s->W || !s->Phi || !s->A || !s->g || !s->q || !s->Ef || !s->m) {
        free_cache(s);
        return GMF_ENOMEM;
    }
    s->Kcap = K;
    return GMF_OK;
}

/* Per-component closed forms for all n samples; fills the cache and adds Ef / K into pred. */
static void component_stats(gmf_sqloss *s, size_t K, size_t k, const double *mu_k,
                            const double *Sigma_k, const double *C_k) {
    const size_t n = s->n, d = s->d, D = s->D;
    const double *R = C_k ? C_k : Sigma_k;
    double *W = s->W + k * n * D;
    /* W = Xt R = X R[1:, :]  (n x d) (d x D) */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)D, (int)d, 1.0, s->X,
                (int)d, R + D, (int)D, 0.0, W, (int)D);
    double *Phi = s->Phi + k * n, *A = s->A + k * n, *g = s->g + k * n, *q = s->q + k * n,
           *Ef = s->Ef + k * n;
    for (size_t i = 0; i < n; i++) {
        const double *w = W + i * D, *x = s->X + i * d;
        double s2, c0;
        if (C_k) { /* s^2 = |C^T xt|^2, c0 = e0^T C C^T xt = C_{0,:} . w */
            s2 = cblas_ddot((int)D, w, 1, w, 1);
            c0 = cblas_ddot((int)D, C_k, 1, w, 1);
        } else { /* w = Sigma xt = c */
            s2 = cblas_ddot((int)d, x, 1, w + 1, 1);
            c0 = w[0];
        }
        gmf_gauss_point p;
        gmf_gauss_scalars(s->m[i * K + k], s2, c0, mu_k[0], &p);
        Phi[i] = p.Phi;
        A[i] = p.A;
        g[i] = p.g;
        q[i] = p.s > 0.0 ? p.kap / p.s : 0.0;
        Ef[i] = p.Ef;
    }
}

static int sq_prepare(void *ctx, size_t K, const double *mu, const double *Sigma, const double *C) {
    gmf_sqloss *s = ctx;
    const size_t n = s->n, d = s->d, D = s->D;
    if (K == 0) return gmf_error(GMF_EINVAL, "squared loss: mixture has no components");
    int rc = reserve(s, K);
    if (rc) return rc;
    s->K = K;
    s->R = C ? C : Sigma;
    /* m (n x K) = X mu_beta^T: all components' means in one GEMM */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)K, (int)d, 1.0, s->X, (int)d,
                mu + 1, (int)D, 0.0, s->m, (int)K);
    for (size_t k = 0; k < K; k++)
        component_stats(s, K, k, mu + k * D, Sigma + k * D * D, C ? C + k * D * D : NULL);
    double loss = 0.0;
    for (size_t i = 0; i < n; i++) {
        double h = 0.0;
        for (size_t k = 0; k < K; k++)
            h += s->Ef[k * n + i];
        s->r[i] = s->y[i] - h / (double)K;
        loss += s->r[i] * s->r[i];
    }
    s->loss = loss / (double)n;
    if (!isfinite(s->loss)) return gmf_error(GMF_EDIVERGE, "squared loss: loss is not finite");
    return GMF_OK;
}

static int sq_component(void *ctx, size_t k, double *grad, double *hessR) {
    gmf_sqloss *s = ctx;
    const size_t n = s->n, d = s->d, D = s->D;
    if (k >= s->K) return gmf_error(GMF_EINVAL, "squared loss: component %zu of %zu", k, s->K);
    const double *Phi = s->Phi + k * n, *A = s->A + k * n, *g = s->g + k * n, *q = s->q + k * n,
                 *R = s->R + k * D * D;
    const double *W = s->W + k * n * D;
    double *z = s->z;
    const double scale = -2.0 / (double)n; /* rho_i = scale * r_i */

    /* grad = sum_i rho_i (A_i, g_i x_i) */
    double g0 = 0.0;
    for (size_t i = 0; i < n; i++) {
        g0 += s->r[i] * A[i];
        z[i] = s->r[i] * g[i];
    }
    grad[0] = scale * g0;
    cblas_dgemv(CblasRowMajor, CblasTrans, (int)n, (int)d, scale, s->X, (int)d, z, 1, 0.0, grad + 1,
                1);

    /* row 0 of hessR: W^T z with z_i = rho_i Phi_i */
    for (size_t i = 0; i < n; i++)
        z[i] = scale * s->r[i] * Phi[i];
    cblas_dgemv(CblasRowMajor, CblasTrans, (int)n, (int)D, 1.0, W, (int)D, z, 1, 0.0, hessR, 1);
    /* rows 1..d: X^T diag(rho q) W + (X^T z) R_{0,:}.  The scaled copy V keeps the cache
     * intact, so component() may be called again for the same k. */
    double *V = s->V;
    for (size_t i = 0; i < n; i++) {
        const double a = scale * s->r[i] * q[i];
        for (size_t b = 0; b < D; b++)
            V[i * D + b] = a * W[i * D + b];
    }
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)D, (int)n, 1.0, s->X, (int)d,
                V, (int)D, 0.0, hessR + D, (int)D);
    double xz[d];
    cblas_dgemv(CblasRowMajor, CblasTrans, (int)n, (int)d, 1.0, s->X, (int)d, z, 1, 0.0, xz, 1);
    cblas_dger(CblasRowMajor, (int)d, (int)D, 1.0, xz, 1, R, 1, hessR + D, (int)D);
    return GMF_OK;
}

static double sq_loss(void *ctx) {
    return ((gmf_sqloss *)ctx)->loss;
}

gmf_oracle gmf_sqloss_oracle(gmf_sqloss *s) {
    gmf_oracle o = {
        .ctx = s, .D = s->D, .prepare = sq_prepare, .component = sq_component, .loss = sq_loss};
    return o;
}

int gmf_sqloss_eval(gmf_sqloss *s, size_t K, const double *mu, const double *Sigma, double *pred,
                    double *loss) {
    int rc = sq_prepare(s, K, mu, Sigma, NULL);
    if (rc && rc != GMF_EDIVERGE) return rc;
    if (pred)
        for (size_t i = 0; i < s->n; i++)
            pred[i] = s->y[i] - s->r[i];
    if (loss) *loss = s->loss;
    return rc;
}
