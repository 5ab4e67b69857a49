/* clsflow.c -- the exact classification flow (Appendix A.2, derived in
 * docs/CLASSIFICATION_FLOW.md): closed-form logits, loss and Euclidean gradient of the
 * reference-class logistic loss of a GM layer in the (mu, C, U, v) or (mu, sigma, U, v)
 * parametrization.
 *
 * Forward, per component k (n rows, all products BLAS):
 *   m = X mu                                       [GEMV n x d]
 *   Z = X C  (rows z_i = C^T x_i, |z_i| = s_i)     [GEMM n x d x d]   (DIAG: z_ij = sigma_j x_ij)
 *   Cm = Z C^T (rows c_i = Sigma x_i)              [GEMM n x d x d]   (DIAG: c_ij = sigma_j z_ij)
 *   Phi, phi, t, A from (m, s^2) by gmf_gauss_scalars (its degenerate limit at s = 0)
 *   P = A mu^T + diag(Phi) Cm   (rows E[beta relu(beta . x_i)])
 *   G = Cm U^T   (rows U c_i)                      [GEMM n x d x L]
 *   H += (1/K) (A a^T + diag(Phi) G),  a = U mu + v
 * Loss and backprop signal: R = (softmax([0, H]) - onehot(y)) / n  (rows r_i in R^L).
 * Backward, per component (each line one BLAS call unless noted):
 *   grad_v  = (1/K) R^T A
 *   grad_U  = (1/K) R^T P                          [GEMM L x n x d]
 *   Wm      = R U  (rows w_i = U^T r_i)            [GEMM n x L x d]
 *   alpha   = R a,  gamma_i = r_i . G_i / s_i,  g = alpha Phi + gamma phi,
 *   kappa   = phi (alpha - gamma t)                (O(n L) loop)
 *   grad_mu = (1/K) (U^T (R^T A) + X^T g)
 *   grad_C  = (1/K) (Wm^T diag(Phi) Z + X^T [diag(Phi) Wm C + diag(kappa) Zh])   [3 GEMMs]
 *   grad_sigma_j = (1/K) sum_i (2 sigma_j Phi_i w_ij x_ij + kappa_i x_ij zh_ij)   (O(n d) loop)
 * with Zh = rows z_i / s_i (0 where s_i = 0).
 */
#include "gmflow/clsflow.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/gauss.h"

struct gmf_clsflow {
    gmf_clsflow_layout lo;
    size_t n;
    double *X;  /* n x d */
    uint8_t *y; /* n */
    int fixed_beta;
    long nrhs;
    /* workspace for up to `cap` rows (grown on demand by reserve) */
    size_t cap;
    double *Xb;                    /* cap x d gathered minibatch */
    uint8_t *yb;                   /* cap */
    double *H, *R;                 /* cap x L */
    double *Z, *Cm, *P;            /* K x cap x d */
    double *G;                     /* K x cap x L */
    double *s, *t, *Phi, *phi, *A; /* K x cap */
    double *al, *gv;               /* cap scratch (alpha / g / kappa), L scratch */
    double *Wm, *V1, *V2, *V3;     /* cap x d scratch */
    double *a;                     /* K x L: U_k mu_k + v_k */
};

gmf_clsflow_layout gmf_clsflow_layout_make(gmf_clsflow_cov cov, size_t K, size_t d, size_t L) {
    gmf_clsflow_layout lo;
    lo.cov = cov;
    lo.K = K;
    lo.d = d;
    lo.L = L;
    lo.ncov = cov == GMF_CLSFLOW_FULL ? d * d : d;
    lo.mu = 0;
    lo.covo = K * d;
    lo.U = lo.covo + K * lo.ncov;
    lo.v = lo.U + K * L * d;
    lo.dim = lo.v + K * L;
    return lo;
}

const gmf_clsflow_layout *gmf_clsflow_layout_of(const gmf_clsflow *f) {
    return &f->lo;
}
size_t gmf_clsflow_dim(const gmf_clsflow *f) {
    return f->lo.dim;
}
size_t gmf_clsflow_n(const gmf_clsflow *f) {
    return f->n;
}
long gmf_clsflow_nrhs(const gmf_clsflow *f) {
    return f->nrhs;
}
void gmf_clsflow_set_fixed_beta(gmf_clsflow *f, int on) {
    f->fixed_beta = on ? 1 : 0;
}
int gmf_clsflow_fixed_beta(const gmf_clsflow *f) {
    return f->fixed_beta;
}

static void free_ws(gmf_clsflow *f) {
    double **bufs[] = {&f->Xb,  &f->H,   &f->R, &f->Z,  &f->Cm, &f->P,  &f->G,  &f->s, &f->t,
                       &f->Phi, &f->phi, &f->A, &f->al, &f->Wm, &f->V1, &f->V2, &f->V3};
    for (size_t j = 0; j < sizeof bufs / sizeof bufs[0]; j++) {
        free(*bufs[j]);
        *bufs[j] = NULL;
    }
    free(f->yb);
    f->yb = NULL;
    f->cap = 0;
}

void gmf_clsflow_free(gmf_clsflow *f) {
    if (!f) return;
    free_ws(f);
    free(f->X);
    free(f->y);
    free(f->gv);
    free(f->a);
    free(f);
}

/* Workspace for `rows` rows. */
static int reserve(gmf_clsflow *f, size_t rows) {
    if (rows <= f->cap) return GMF_OK;
    free_ws(f);
    const size_t K = f->lo.K, d = f->lo.d, L = f->lo.L;
    const char *what = "classification flow workspace";
    f->Xb = gmf_calloc(rows * d, sizeof(double), what);
    f->yb = gmf_calloc(rows, 1, what);
    f->H = gmf_calloc(rows * L, sizeof(double), what);
    f->R = gmf_calloc(rows * L, sizeof(double), what);
    f->Z = gmf_calloc(K * rows * d, sizeof(double), what);
    f->Cm = gmf_calloc(K * rows * d, sizeof(double), what);
    f->P = gmf_calloc(K * rows * d, sizeof(double), what);
    f->G = gmf_calloc(K * rows * L, sizeof(double), what);
    f->s = gmf_calloc(K * rows, sizeof(double), what);
    f->t = gmf_calloc(K * rows, sizeof(double), what);
    f->Phi = gmf_calloc(K * rows, sizeof(double), what);
    f->phi = gmf_calloc(K * rows, sizeof(double), what);
    f->A = gmf_calloc(K * rows, sizeof(double), what);
    f->al = gmf_calloc(rows, sizeof(double), what);
    f->Wm = gmf_calloc(rows * d, sizeof(double), what);
    f->V1 = gmf_calloc(rows * d, sizeof(double), what);
    f->V2 = gmf_calloc(rows * d, sizeof(double), what);
    f->V3 = gmf_calloc(rows * d, sizeof(double), what);
    if (!f->Xb || !f->yb || !f->H || !f->R || !f->Z || !f->Cm || !f->P || !f->G || !f->s || !f->t ||
        !f->Phi || !f->phi || !f->A || !f->al || !f->Wm || !f->V1 || !f->V2 || !f->V3) {
        free_ws(f);
        return GMF_ENOMEM;
    }
    f->cap = rows;
    return GMF_OK;
}

int gmf_clsflow_new(gmf_clsflow **out, gmf_clsflow_cov cov, size_t K, size_t L, size_t n, size_t d,
                    const double *X, const uint8_t *y) {
    *out = NULL;
    if (cov != GMF_CLSFLOW_FULL && cov != GMF_CLSFLOW_DIAG)
        return gmf_error(GMF_EINVAL, "classification flow: unknown covariance kind %d", (int)cov);
    if (!K || !L || !n || !d)
        return gmf_error(GMF_EINVAL,
                         "classification flow: need K, L, n, d >= 1 (got K=%zu, L=%zu, n=%zu, "
                         "d=%zu)",
                         K, L, n, d);
    if (L > 255)
        return gmf_error(GMF_EINVAL,
                         "classification flow: L = %zu logits, at most 255 (uint8 "
                         "labels)",
                         L);
    if (n > ((size_t)1 << 32) / d || K * (d * d + L * d) > ((size_t)1 << 28))
        return gmf_error(GMF_EINVAL, "classification flow: problem too large");
    for (size_t i = 0; i < n * d; i++)
        if (!isfinite(X[i]))
            return gmf_error(GMF_EINVAL, "classification flow: input x[%zu][%zu] is not finite",
                             i / d, i % d);
    for (size_t i = 0; i < n; i++)
        if (y[i] > L)
            return gmf_error(GMF_EINVAL,
                             "classification flow: label y[%zu] = %u but there are only %zu "
                             "classes (0..%zu)",
                             i, (unsigned)y[i], L + 1, L);
    gmf_clsflow *f = gmf_calloc(1, sizeof *f, "classification flow");
    if (!f) return GMF_ENOMEM;
    f->lo = gmf_clsflow_layout_make(cov, K, d, L);
    f->n = n;
    f->X = gmf_calloc(n * d, sizeof(double), "classification flow inputs");
    f->y = gmf_calloc(n, 1, "classification flow labels");
    f->gv = gmf_calloc(L, sizeof(double), "classification flow scratch");
    f->a = gmf_calloc(K * L, sizeof(double), "classification flow scratch");
    if (!f->X || !f->y || !f->gv || !f->a || reserve(f, n)) {
        gmf_clsflow_free(f);
        return GMF_ENOMEM;
    }
    memcpy(f->X, X, n * d * sizeof(double));
    memcpy(f->y, y, n);
    *out = f;
    return GMF_OK;
}

/* Component k's per-row quantities on rows X (B x d): Z, Cm, s, t, Phi, phi, A, P, and if
 * want_G, G = Cm U^T and a = U mu + v. */
static void component_forward(gmf_clsflow *f, size_t B, const double *X, const double *theta,
                              size_t k, int want_G) {
    const gmf_clsflow_layout *lo = &f->lo;
    const size_t d = lo->d, L = lo->L, cap = f->cap;
    double *th = (double *)theta; /* views only read */
    const double *mu = gmf_clsflow_mu(lo, th, k), *cv = gmf_clsflow_covp(lo, th, k);
    double *Z = f->Z + k * cap * d, *Cm = f->Cm + k * cap * d, *P = f->P + k * cap * d;
    double *s = f->s + k * cap, *t = f->t + k * cap, *Phi = f->Phi + k * cap,
           *phi = f->phi + k * cap, *A = f->A + k * cap;
    /* m = X mu, kept in A until the scalars overwrite it */
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)B, (int)d, 1.0, X, (int)d, mu, 1, 0.0, A, 1);
    if (lo->cov == GMF_CLSFLOW_FULL) {
        /* Z = X C, Cm = Z C^T = X Sigma */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)B, (int)d, (int)d, 1.0, X,
                    (int)d, cv, (int)d, 0.0, Z, (int)d);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)d, (int)d, 1.0, Z, (int)d,
                    cv, (int)d, 0.0, Cm, (int)d);
    } else {
        for (size_t i = 0; i < B; i++)
            for (size_t j = 0; j < d; j++) {
                Z[i * d + j] = cv[j] * X[i * d + j];
                Cm[i * d + j] = cv[j] * Z[i * d + j];
            }
    }
    for (size_t i = 0; i < B; i++) {
        const double *z = Z + i * d;
        double s2 = 0.0;
        for (size_t j = 0; j < d; j++)
            s2 += z[j] * z[j];
        gmf_gauss_point p;
        gmf_gauss_scalars(A[i], s2, 0.0, 0.0, &p);
        s[i] = p.s;
        t[i] = p.t;
        Phi[i] = p.Phi;
        phi[i] = p.phi;
        A[i] = p.A;
        /* P_i = mu A_i + c_i Phi_i = E[beta relu(beta . x_i)] */
        for (size_t j = 0; j < d; j++)
            P[i * d + j] = mu[j] * p.A + Cm[i * d + j] * p.Phi;
    }
    if (want_G) {
        const double *U = gmf_clsflow_U(lo, th, k), *v = gmf_clsflow_v(lo, th, k);
        double *G = f->G + k * cap * L, *a = f->a + k * L;
        /* G = Cm U^T  (B x L), rows U c_i */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)L, (int)d, 1.0, Cm,
                    (int)d, U, (int)d, 0.0, G, (int)L);
        /* a = U mu + v */
        memcpy(a, v, L * sizeof(double));
        cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)L, (int)d, 1.0, U, (int)d, mu, 1, 1.0, a, 1);
    }
}

/* Logits of B rows into f->H. */
static int forward(gmf_clsflow *f, size_t B, const double *X, const double *theta) {
    const gmf_clsflow_layout *lo = &f->lo;
    const size_t K = lo->K, L = lo->L, cap = f->cap;
    if (!gmf_all_finite(theta, lo->dim))
        return gmf_error(GMF_EDIVERGE, "classification flow: state has non-finite entries");
    memset(f->H, 0, B * L * sizeof(double));
    const double invK = 1.0 / (double)K;
    for (size_t k = 0; k < K; k++) {
        component_forward(f, B, X, theta, k, 1);
        const double *A = f->A + k * cap, *Phi = f->Phi + k * cap, *G = f->G + k * cap * L,
                     *a = f->a + k * L;
        /* H += (1/K) (A a^T + diag(Phi) G) */
        for (size_t i = 0; i < B; i++)
            for (size_t l = 0; l < L; l++)
                f->H[i * L + l] += invK * (A[i] * a[l] + Phi[i] * G[i * L + l]);
    }
    return GMF_OK;
}

/* Mean loss of B rows from f->H and labels y; if want_R, R = (softmax([0, h]) - onehot) / B. */
static int loss_and_signal(gmf_clsflow *f, size_t B, const uint8_t *y, int want_R,
                           double *loss_out) {
    const size_t L = f->lo.L;
    double loss = 0.0;
    for (size_t i = 0; i < B; i++) {
        const double *h = f->H + i * L;
        double mx = 0.0;
        for (size_t l = 0; l < L; l++)
            mx = fmax(mx, h[l]);
        double se = exp(-mx);
        for (size_t l = 0; l < L; l++)
            se += exp(h[l] - mx);
        const double lse = mx + log(se);
        loss += lse - (y[i] ? h[y[i] - 1] : 0.0);
        if (want_R) {
            double *r = f->R + i * L;
            for (size_t l = 0; l < L; l++)
                r[l] = (exp(h[l] - lse) - (y[i] == l + 1 ? 1.0 : 0.0)) / (double)B;
        }
    }
    loss /= (double)B;
    if (loss_out) *loss_out = loss;
    if (!isfinite(loss)) return gmf_error(GMF_EDIVERGE, "classification flow: loss is not finite");
    return GMF_OK;
}

/* Gradient of the mean loss over B rows (after forward + loss_and_signal).  The mu and C / sigma
 * blocks are computed only if want_beta (else zeroed). */
static void backward(gmf_clsflow *f, size_t B, const double *X, const double *theta, int want_beta,
                     double *grad) {
    const gmf_clsflow_layout *lo = &f->lo;
    const size_t K = lo->K, d = lo->d, L = lo->L, cap = f->cap;
    const double invK = 1.0 / (double)K;
    double *th = (double *)theta;
    for (size_t k = 0; k < K; k++) {
        const double *cv = gmf_clsflow_covp(lo, th, k), *U = gmf_clsflow_U(lo, th, k);
        const double *Z = f->Z + k * cap * d, *P = f->P + k * cap * d, *G = f->G + k * cap * L,
                     *s = f->s + k * cap, *t = f->t + k * cap, *Phi = f->Phi + k * cap,
                     *phi = f->phi + k * cap, *A = f->A + k * cap, *a = f->a + k * L;
        double *gmu = gmf_clsflow_mu(lo, grad, k), *gcv = gmf_clsflow_covp(lo, grad, k),
               *gU = gmf_clsflow_U(lo, grad, k), *gv = gmf_clsflow_v(lo, grad, k);
        const double *R = f->R;

        /* R^T A (unscaled; reused for grad_mu) and grad_v = (1/K) R^T A */
        cblas_dgemv(CblasRowMajor, CblasTrans, (int)B, (int)L, 1.0, R, (int)L, A, 1, 0.0, f->gv, 1);
        for (size_t l = 0; l < L; l++)
            gv[l] = invK * f->gv[l];
        /* grad_U = (1/K) R^T P */
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)L, (int)d, (int)B, invK, R,
                    (int)L, P, (int)d, 0.0, gU, (int)d);
        if (!want_beta) {
            memset(gmu, 0, d * sizeof(double));
            memset(gcv, 0, lo->ncov * sizeof(double));
            continue;
        }
        /* Wm = R U: rows w_i = U^T r_i;  FULL: V3 = Wm C (rows C^T w_i) */
        double *Wm = f->Wm, *V1 = f->V1, *V2 = f->V2, *V3 = f->V3, *g = f->al;
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)B, (int)d, (int)L, 1.0, R,
                    (int)L, U, (int)d, 0.0, Wm, (int)d);
        const int full = lo->cov == GMF_CLSFLOW_FULL;
        if (full)
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)B, (int)d, (int)d, 1.0, Wm,
                        (int)d, cv, (int)d, 0.0, V3, (int)d);
        /* per row: alpha = r . a,  gamma = r . G / s  (= r . U u, u = c / s bounded),
         * g = alpha Phi + gamma phi,  kappa = phi (alpha - gamma t) */
        for (size_t i = 0; i < B; i++) {
            const double *r = R + i * L, *Gi = G + i * L, *z = Z + i * d;
            double alpha = 0.0, rg = 0.0;
            for (size_t l = 0; l < L; l++) {
                alpha += r[l] * a[l];
                rg += r[l] * Gi[l];
            }
            const double gamma = s[i] > 0.0 ? rg / s[i] : 0.0;
            const double kappa = phi[i] * (alpha - gamma * t[i]);
            g[i] = alpha * Phi[i] + gamma * phi[i];
            /* kappa zh_i = (kappa / s) z_i, bounded since |z_i| = s_i */
            const double ks = s[i] > 0.0 ? kappa / s[i] : 0.0;
            if (full)
                for (size_t j = 0; j < d; j++) {
                    V1[i * d + j] = Phi[i] * z[j];                      /* Phi z */
                    V2[i * d + j] = Phi[i] * V3[i * d + j] + ks * z[j]; /* Phi C^T w + kappa zh */
                }
            else
                for (size_t j = 0; j < d; j++)
                    V2[i * d + j] = ks * z[j];
        }
        /* grad_mu = (1/K) (U^T (R^T A) + X^T g) */
        cblas_dgemv(CblasRowMajor, CblasTrans, (int)L, (int)d, invK, U, (int)d, f->gv, 1, 0.0, gmu,
                    1);
        cblas_dgemv(CblasRowMajor, CblasTrans, (int)B, (int)d, invK, X, (int)d, g, 1, 1.0, gmu, 1);
        if (full) {
            /* grad_C = (1/K) (Wm^T V1 + X^T V2) */
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)d, (int)B, invK, Wm,
                        (int)d, V1, (int)d, 0.0, gcv, (int)d);
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)d, (int)B, invK, X,
                        (int)d, V2, (int)d, 1.0, gcv, (int)d);
        } else {
            /* grad_sigma_j = (1/K) sum_i (2 sigma_j Phi_i w_ij x_ij + kappa_i x_ij zh_ij) */
            memset(gcv, 0, d * sizeof(double));
            for (size_t i = 0; i < B; i++)
                for (size_t j = 0; j < d; j++)
                    gcv[j] += X[i * d + j] * (2.0 * cv[j] * Phi[i] * Wm[i * d + j] + V2[i * d + j]);
            for (size_t j = 0; j < d; j++)
                gcv[j] *= invK;
        }
    }
}

int gmf_clsflow_logits(gmf_clsflow *f, const double *theta, double *H) {
    int rc = forward(f, f->n, f->X, theta);
    if (rc) return rc;
    memcpy(H, f->H, f->n * f->lo.L * sizeof(double));
    return GMF_OK;
}

int gmf_clsflow_loss(gmf_clsflow *f, const double *theta, double *loss) {
    *loss = NAN;
    int rc = forward(f, f->n, f->X, theta);
    if (rc) return rc;
    return loss_and_signal(f, f->n, f->y, 0, loss);
}

/* Loss and gradient over B rows X / y (X may be f->X or f->Xb). */
static int loss_grad(gmf_clsflow *f, size_t B, const double *X, const uint8_t *y,
                     const double *theta, int want_beta, double *loss, double *grad) {
    double l;
    int rc = forward(f, B, X, theta);
    if (!rc) rc = loss_and_signal(f, B, y, grad != NULL, &l);
    if (loss) *loss = rc ? NAN : l;
    if (rc) return rc;
    if (grad) backward(f, B, X, theta, want_beta, grad);
    return GMF_OK;
}

int gmf_clsflow_grad(gmf_clsflow *f, const double *theta, double *loss, double *grad) {
    return loss_grad(f, f->n, f->X, f->y, theta, 1, loss, grad);
}

int gmf_clsflow_grad_batch(gmf_clsflow *f, const double *theta, size_t B, const size_t *idx,
                           double *loss, double *grad) {
    if (B == 0) return gmf_error(GMF_EINVAL, "classification flow: empty minibatch");
    for (size_t b = 0; b < B; b++)
        if (idx[b] >= f->n)
            return gmf_error(GMF_EINVAL,
                             "classification flow: minibatch index idx[%zu] = %zu out of range "
                             "(n = %zu)",
                             b, idx[b], f->n);
    int rc = reserve(f, B);
    if (rc) return rc;
    const size_t d = f->lo.d;
    for (size_t b = 0; b < B; b++) {
        memcpy(f->Xb + b * d, f->X + idx[b] * d, d * sizeof(double));
        f->yb[b] = f->y[idx[b]];
    }
    return loss_grad(f, B, f->Xb, f->yb, theta, 1, loss, grad);
}

int gmf_clsflow_rhs(gmf_clsflow *f, const double *theta, double *thetadot) {
    int rc = loss_grad(f, f->n, f->X, f->y, theta, !f->fixed_beta, NULL, thetadot);
    if (rc) return rc;
    f->nrhs++;
    for (size_t e = 0; e < f->lo.dim; e++)
        thetadot[e] = -thetadot[e];
    return GMF_OK;
}

int gmf_clsflow_ode_rhs(double t, const double *y, double *ydot, void *user) {
    (void)t;
    return gmf_clsflow_rhs((gmf_clsflow *)user, y, ydot) ? -1 : 0;
}

int gmf_clsflow_moments(gmf_clsflow *f, const double *theta, size_t k, double *A, double *P) {
    const gmf_clsflow_layout *lo = &f->lo;
    if (k >= lo->K)
        return gmf_error(GMF_EINVAL, "classification flow: component %zu of %zu", k, lo->K);
    if (!gmf_all_finite(theta, lo->dim))
        return gmf_error(GMF_EDIVERGE, "classification flow: state has non-finite entries");
    component_forward(f, f->n, f->X, theta, k, 0);
    memcpy(A, f->A + k * f->cap, f->n * sizeof(double));
    if (P) memcpy(P, f->P + k * f->cap * lo->d, f->n * lo->d * sizeof(double));
    return GMF_OK;
}
