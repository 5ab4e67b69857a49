/* sqloss_old.h -- the per-component squared-loss oracle that src/exact/sqloss.c had before the blocked
 * pass (docs/PERFORMANCE.md, P1), kept as a reference: tests/test_sqloss_oracle.c checks the
 * library against it, and bench/bench_rhs.c times the library beside it.  Same closed forms
 * (gmf_gauss_scalars), same gmf_oracle interface (sqold_oracle), with
 *   prepare:    m = X M_beta^T (one GEMM); per component W_k = X R_k[1:, :] (GEMM) into a
 *               K x n x D cache, n cblas_ddot calls for s^2 (two in the Euclidean form), the
 *               closed forms; then the residuals;
 *   component:  grad = X^T (rho g) and xz = X^T (rho Phi) (two GEMVs over X), row 0 = W_k^T z
 *               (GEMV), the row-scaled copy diag(rho q) W_k, X^T of it (GEMM), a rank-1 update.
 * The includer provides the cblas_* declarations (OpenBLAS's cblas.h or GSL's gsl_cblas.h).
 * Out of memory aborts: this is test and benchmark code. */
#ifndef GMFLOW_SQLOSS_OLD_H
#define GMFLOW_SQLOSS_OLD_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/flow.h"
#include "gmflow/gauss.h"

typedef struct {
    size_t n, d, D, K, Kcap;
    const double *X, *y, *R;
    double *W, *Phi, *A, *g, *q, *Ef, *m; /* K x n x D, then K x n each (m: n x K) */
    double *r, *z, *V, *xz;               /* n, n, n x D, d */
    double loss;
} sqold;

static inline double *sqold_alloc(size_t count) {
    double *p = calloc(count ? count : 1, sizeof(double));
    if (!p) {
        fprintf(stderr, "sqloss_old.h: out of memory (%zu doubles)\n", count);
        abort();
    }
    return p;
}

static inline void sqold_free(sqold *s) {
    free(s->W), free(s->Phi), free(s->A), free(s->g), free(s->q), free(s->Ef), free(s->m);
    free(s->r), free(s->z), free(s->V), free(s->xz);
}

static inline void sqold_init(sqold *s, size_t n, size_t d, const double *X, const double *y) {
    memset(s, 0, sizeof *s);
    s->n = n, s->d = d, s->D = d + 1, s->X = X, s->y = y;
    s->r = sqold_alloc(n);
    s->z = sqold_alloc(n);
    s->V = sqold_alloc(n * s->D);
    s->xz = sqold_alloc(d);
}

static inline void sqold_reserve(sqold *s, size_t K) {
    if (K <= s->Kcap) return;
    const size_t n = s->n;
    free(s->W), free(s->Phi), free(s->A), free(s->g), free(s->q), free(s->Ef), free(s->m);
    s->W = sqold_alloc(K * n * s->D);
    s->Phi = sqold_alloc(K * n);
    s->A = sqold_alloc(K * n);
    s->g = sqold_alloc(K * n);
    s->q = sqold_alloc(K * n);
    s->Ef = sqold_alloc(K * n);
    s->m = sqold_alloc(K * n);
    s->Kcap = K;
}

static inline void sqold_component_stats(sqold *s, size_t K, size_t k, const double *mu_k,
                                         const double *Sigma_k, const double *C_k) {
    const size_t n = s->n, d = s->d, D = s->D;
    const double *R = C_k ? C_k : Sigma_k;
    double *W = s->W + k * n * D;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)D, (int)d, 1.0, s->X,
                (int)d, R + D, (int)D, 0.0, W, (int)D);
    for (size_t i = 0; i < n; i++) {
        const double *w = W + i * D, *x = s->X + i * d;
        double s2, c0;
        if (C_k) {
            s2 = cblas_ddot((int)D, w, 1, w, 1);
            c0 = cblas_ddot((int)D, C_k, 1, w, 1);
        } else {
            s2 = cblas_ddot((int)d, x, 1, w + 1, 1);
            c0 = w[0];
        }
        gmf_gauss_point p;
        gmf_gauss_scalars(s->m[i * K + k], s2, c0, mu_k[0], &p);
        s->Phi[k * n + i] = p.Phi;
        s->A[k * n + i] = p.A;
        s->g[k * n + i] = p.g;
        s->q[k * n + i] = p.s > 0.0 ? p.kap / p.s : 0.0;
        s->Ef[k * n + i] = p.Ef;
    }
}

static inline int sqold_prepare(void *ctx, size_t K, const double *mu, const double *Sigma,
                                const double *C) {
    sqold *s = ctx;
    const size_t n = s->n, d = s->d, D = s->D;
    sqold_reserve(s, K);
    s->K = K;
    s->R = C ? C : Sigma;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)K, (int)d, 1.0, s->X, (int)d,
                mu + 1, (int)D, 0.0, s->m, (int)K);
    for (size_t k = 0; k < K; k++)
        sqold_component_stats(s, K, k, mu + k * D, Sigma + k * D * D, C ? C + k * D * D : NULL);
    double loss = 0.0;
    for (size_t i = 0; i < n; i++) {
        double h = 0.0;
        for (size_t k = 0; k < K; k++)
            h += s->Ef[k * n + i];
        s->r[i] = s->y[i] - h / (double)K;
        loss += s->r[i] * s->r[i];
    }
    s->loss = loss / (double)n;
    return isfinite(s->loss) ? GMF_OK : gmf_error(GMF_EDIVERGE, "old oracle: loss not finite");
}

static inline int sqold_component(void *ctx, size_t k, double *grad, double *hessR) {
    sqold *s = ctx;
    const size_t n = s->n, d = s->d, D = s->D;
    const double *Phi = s->Phi + k * n, *A = s->A + k * n, *g = s->g + k * n, *q = s->q + k * n,
                 *R = s->R + k * D * D, *W = s->W + k * n * D;
    double *z = s->z, *V = s->V;
    const double scale = -2.0 / (double)n;
    double g0 = 0.0;
    for (size_t i = 0; i < n; i++) {
        g0 += s->r[i] * A[i];
        z[i] = s->r[i] * g[i];
    }
    grad[0] = scale * g0;
    cblas_dgemv(CblasRowMajor, CblasTrans, (int)n, (int)d, scale, s->X, (int)d, z, 1, 0.0, grad + 1,
                1);
    for (size_t i = 0; i < n; i++)
        z[i] = scale * s->r[i] * Phi[i];
    cblas_dgemv(CblasRowMajor, CblasTrans, (int)n, (int)D, 1.0, W, (int)D, z, 1, 0.0, hessR, 1);
    for (size_t i = 0; i < n; i++) {
        const double a = scale * s->r[i] * q[i];
        for (size_t b = 0; b < D; b++)
            V[i * D + b] = a * W[i * D + b];
    }
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)D, (int)n, 1.0, s->X, (int)d,
                V, (int)D, 0.0, hessR + D, (int)D);
    cblas_dgemv(CblasRowMajor, CblasTrans, (int)n, (int)d, 1.0, s->X, (int)d, z, 1, 0.0, s->xz, 1);
    cblas_dger(CblasRowMajor, (int)d, (int)D, 1.0, s->xz, 1, R, 1, hessR + D, (int)D);
    return GMF_OK;
}

static inline double sqold_loss(void *ctx) {
    return ((sqold *)ctx)->loss;
}

static inline gmf_oracle sqold_oracle(sqold *s) {
    gmf_oracle o = {.ctx = s,
                    .D = s->D,
                    .prepare = sqold_prepare,
                    .component = sqold_component,
                    .loss = sqold_loss};
    return o;
}

#endif
