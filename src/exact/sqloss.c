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
 * using E[hess f] = Phi (e0 xt^T + xt e0^T) + (kap / s) xt xt^T (gauss.h).
 *
 * Layout of the computation (docs/PERFORMANCE.md, P1).  The residual r_i depends only on sample
 * i's K components, so prepare() makes ONE pass over blocks of nb samples and does all the work;
 * component() only copies out.  Per block (X_b = rows i0 .. i0 + nb - 1 of X):
 *
 *   1. one GEMM for all components:  T = X_b Rcat,
 *        Rcat = [R_1[1:, :] .. R_K[1:, :] | mu_1[1:] .. mu_K[1:]]           d x (K D + K)
 *      gives every component's rows w_i (K D columns) and the means m_ik (K columns);
 *   2. the closed forms, per component over the block's samples (gmf_gauss_batch: libmvec's
 *      vector erfc/exp, the s -> 0 and far-tail limits exactly those of gmf_gauss_scalars in
 *      gauss.h), then per sample the residual r_i, the loss, and in place:
 *        T_i = [rho q_1 w_i1 .. rho q_K w_iK | rho g_1 .. rho g_K | rho Phi_1 .. rho Phi_K];
 *      row 0 of each Stein form (W_k^T z_k) and grad[0] are accumulated in the same loop;
 *   3. one GEMM accumulated over the blocks:  G += X_b^T T                   d x K (D + 2)
 *      whose columns hold X^T diag(rho q_k) W_k, X^T (rho g_k) and X^T (rho Phi_k) for all k.
 *
 * So X is streamed twice per RHS (plus the cheap s^2 dots while the block is in cache), in two
 * GEMMs per block instead of 2 K + 1 GEMMs and 3 K GEMVs over all of it, and the nb x K (D + 2)
 * tile (about 256 KiB) stays in L2 instead of a K x n x D cache.  bench/bench_rhs.c times a
 * per-component implementation (tests/sqloss_old.h) against it (1.2-1.7x slower there).
 */
#include "gmflow/sqloss.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/gauss.h"
#include "gmflow/par.h"
#include "sqloss_internal.h"

/* Target size of one block's tile T, in doubles (256 KiB: half of a 512 KiB-1 MiB L2), and the
 * smallest block (below it the two GEMM calls per block cost more than they save). */
#define SQ_TILE_DOUBLES (256 * 1024 / 8)
#define SQ_MIN_BLOCK    32

struct gmf_sqloss {
    size_t n, d, D;
    const double *X, *y; /* this rank's rows: owned (copied) or borrowed */
    double *Xown, *yown; /* the copies, NULL when borrowed */
    size_t ntot;         /* samples over all ranks (= n unless sharded) */
    int shard;           /* sums reduced over gmf_par (gmf_sqloss_shard) */
    double *red;         /* sharded: the packed sums G, H0, g0, sse to reduce */
    double *r;           /* n residuals y - h at the last prepared mixture */
    /* state of the last prepare (valid until the next one) */
    size_t K, ld, nb;  /* components, tile row length K (D + 2), samples per block */
    const double *R;   /* K x D x D right factors (caller's C or Sigma) */
    double *Rcat;      /* d x (K D + K) */
    double *T;         /* nb x ld: one block's tile */
    double *S;         /* 8 x K x nb: the closed forms' inputs and outputs for one block */
    double *G;         /* d x ld: X^T T summed over the blocks */
    double *H0, *g0;   /* K x D: row 0 of each hessR; K: each grad[0] */
    double *v;         /* K: E_k[dL] = sum_i rho_i E_k f(x_i) (the WFR reaction, docs/WFR.md) */
    size_t Kcap, Tcap; /* capacity of the K-sized buffers (in components) and of T (doubles) */
    double loss;
    struct gmf_sqloss_jv *jv; /* sqloss_jvp.c's workspace and cache (NULL until its first use) */
};

size_t gmf_sqloss_n(const gmf_sqloss *s) {
    return s->n;
}
size_t gmf_sqloss_d(const gmf_sqloss *s) {
    return s->d;
}

/* The constructors: n this rank's rows of ntot; copy X and y, or borrow them. */
static int sq_new(gmf_sqloss **out, size_t n, size_t ntot, size_t d, const double *X,
                  const double *y, int copy, int shard) {
    *out = NULL;
    if (ntot == 0 || d == 0 || (!shard && n == 0))
        return gmf_error(GMF_EINVAL, "squared loss: need n >= 1 and d >= 1 (got n=%zu, d=%zu)",
                         ntot, d);
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
    s->ntot = ntot;
    s->shard = shard;
    s->d = d;
    s->D = d + 1;
    s->r = gmf_calloc(n ? n : 1, sizeof(double), "squared loss residuals");
    if (!s->r) {
        gmf_sqloss_free(s);
        return GMF_ENOMEM;
    }
    if (copy) {
        s->Xown = gmf_calloc(n * d, sizeof(double), "squared loss inputs");
        s->yown = gmf_calloc(n, sizeof(double), "squared loss targets");
        if (!s->Xown || !s->yown) {
            gmf_sqloss_free(s);
            return GMF_ENOMEM;
        }
        memcpy(s->Xown, X, n * d * sizeof(double));
        memcpy(s->yown, y, n * sizeof(double));
        X = s->Xown, y = s->yown;
    }
    s->X = X, s->y = y;
    *out = s;
    return GMF_OK;
}

int gmf_sqloss_new(gmf_sqloss **out, size_t n, size_t d, const double *X, const double *y) {
    return sq_new(out, n, n, d, X, y, 1, 0);
}

int gmf_sqloss_borrow(gmf_sqloss **out, size_t n, size_t d, const double *X, const double *y) {
    return sq_new(out, n, n, d, X, y, 0, 0);
}

int gmf_sqloss_shard(gmf_sqloss **out, size_t n_local, size_t n_total, size_t d, const double *X,
                     const double *y) {
    /* every rank must agree on the sizes, or the reductions would not match up */
    size_t dims[2] = {n_total, d}, dims0[2] = {n_total, d};
    int rc = gmf_par_bcast(dims0, sizeof dims0, 0);
    if (rc) return rc;
    if (gmf_par_any(dims[0] != dims0[0] || dims[1] != dims0[1]))
        return gmf_error(GMF_EINVAL,
                         "squared loss: ranks disagree on n or d (rank %d: n = %zu, "
                         "d = %zu; rank 0: n = %zu, d = %zu)",
                         gmf_par_rank(), n_total, d, dims0[0], dims0[1]);
    if (gmf_par_any(n_local > n_total))
        return gmf_error(GMF_EINVAL, "squared loss: a rank holds more rows than n = %zu", n_total);
    rc = sq_new(out, n_local, n_total, d, X, y, 0, 1);
    if (gmf_par_any(rc != GMF_OK)) { /* bad data on one rank stops every rank */
        gmf_sqloss_free(*out);
        *out = NULL;
        return rc ? rc : gmf_error(GMF_EINVAL, "squared loss: the data on another rank is invalid");
    }
    return GMF_OK;
}

static void free_k_buffers(gmf_sqloss *s) {
    free(s->Rcat);
    free(s->G);
    free(s->H0);
    free(s->g0);
    free(s->red);
    free(s->v);
    s->Rcat = s->G = s->H0 = s->g0 = s->red = s->v = NULL;
    s->Kcap = 0;
}

void gmf_sqloss_free(gmf_sqloss *s) {
    if (!s) return;
    free_k_buffers(s);
    gmf_sqloss_jv_free_(s->jv);
    free(s->T);
    free(s->S);
    free(s->Xown);
    free(s->yown);
    free(s->r);
    free(s->red);
    free(s);
}

/* Size the buffers for K components and choose the block. */
static int reserve(gmf_sqloss *s, size_t K) {
    const size_t d = s->d, D = s->D, ld = K * (D + 2);
    if (K > s->Kcap) {
        free_k_buffers(s);
        s->Rcat = gmf_calloc(d * (K * D + K), sizeof(double), "squared loss buffers");
        s->G = gmf_calloc(d * ld, sizeof(double), "squared loss buffers");
        s->H0 = gmf_calloc(K * D, sizeof(double), "squared loss buffers");
        s->g0 = gmf_calloc(K, sizeof(double), "squared loss buffers");
        if (s->shard)
            s->red = gmf_calloc(d * ld + K * D + K + 1, sizeof(double), "squared loss buffers");
        s->v = gmf_calloc(K, sizeof(double), "squared loss buffers");
        if (!s->Rcat || !s->G || !s->H0 || !s->g0 || !s->v || (s->shard && !s->red)) {
            free_k_buffers(s);
            return GMF_ENOMEM;
        }
        s->Kcap = K;
    }
    size_t nb = SQ_TILE_DOUBLES / ld;
    if (nb < SQ_MIN_BLOCK) nb = SQ_MIN_BLOCK;
    if (nb > s->n) nb = s->n;
    if (nb == 0) nb = 1;     /* a shard with no rows still needs a tile to allocate */
    if (nb * ld > s->Tcap) { /* S holds 8 nb K = 8 nb ld / (D + 2): it grows with T */
        free(s->T);
        free(s->S);
        s->Tcap = 0;
        s->T = gmf_calloc(nb * ld, sizeof(double), "squared loss block tile");
        s->S = gmf_calloc(8 * nb * K, sizeof(double), "squared loss block scalars");
        if (!s->T || !s->S) return GMF_ENOMEM;
        s->Tcap = nb * ld;
    }
    s->K = K;
    s->ld = ld;
    s->nb = nb;
    return GMF_OK;
}

/* Steps 2 and 3 of the header comment for the block of nb samples starting at sample i0, whose
 * tile already holds X_b Rcat; returns the block's sum of squared residuals.
 *
 * The per-sample loops here are written by hand rather than as BLAS calls: each is a dot product
 * or an axpy of length d or D over a row that is already in L1, so a cblas_ddot / cblas_dscal
 * call per (sample, component) -- n K of them per RHS -- would cost more in
 * call overhead and dispatch than the arithmetic itself (docs/PERFORMANCE.md section 2), while
 * the compiler vectorizes these contiguous loops.  Fusing them also lets the scaling of w and
 * the row-0 accumulation W^T z share one read of the row.  The closed forms between the two
 * sample loops are batched per component (four samples per libmvec erfc/exp call; with scalar
 * erfc/exp per sample and component they were about half of a toy-size RHS). */
static double block_closed_forms(gmf_sqloss *s, size_t i0, size_t nb, const double *wt,
                                 const double *mu, const double *C) {
    const size_t d = s->d, D = s->D, K = s->K, KD = K * D, ld = s->ld, nK = nb * K;
    const double scale = -2.0 / (double)s->ntot; /* rho_i = scale * r_i */
    const double *Xb = s->X + i0 * d;
    /* component-major arrays of the block (entry k nb + ii): inputs m, s^2, c0; outputs */
    double *m = s->S, *s2v = m + nK, *c0v = s2v + nK, *Phi = c0v + nK, *A = Phi + nK, *g = A + nK,
           *q = g + nK, *Ef = q + nK, sse = 0.0;
    for (size_t ii = 0; ii < nb; ii++) {
        const double *x = Xb + ii * d, *t = s->T + ii * ld;
        for (size_t k = 0; k < K; k++) {
            const double *w = t + k * D;
            double s2 = 0.0, c0 = 0.0;
            if (C) { /* w = C^T xt: s^2 = |w|^2, c0 = e0^T C C^T xt = C_{0,:} . w */
                const double *C0 = C + k * D * D;
                for (size_t b = 0; b < D; b++) {
                    s2 += w[b] * w[b];
                    c0 += C0[b] * w[b];
                }
            } else { /* w = Sigma xt = c: s^2 = xt . c, c0 = c_0 */
                for (size_t j = 0; j < d; j++)
                    s2 += x[j] * w[j + 1];
                c0 = w[0];
            }
            m[k * nb + ii] = t[KD + k];
            s2v[k * nb + ii] = s2;
            c0v[k * nb + ii] = c0;
        }
    }
    /* the closed forms, nb samples of one component at a time (gauss.h: the limits of
     * gmf_gauss_scalars, q = kap / s with its s -> 0 limit 0; vector erfc/exp) */
    for (size_t k = 0; k < K; k++) {
        const gmf_gauss_batch_out o = {.Phi = Phi + k * nb,
                                       .A = A + k * nb,
                                       .g = g + k * nb,
                                       .q = q + k * nb,
                                       .Ef = Ef + k * nb};
        gmf_gauss_batch(nb, m + k * nb, s2v + k * nb, c0v + k * nb, mu[k * D], &o);
    }
    for (size_t ii = 0; ii < nb; ii++) {
        double *t = s->T + ii * ld, h = 0.0;
        if (wt) /* weighted mixture (WFR); else equal weights: the sum divided by K */
            for (size_t k = 0; k < K; k++)
                h += wt[k] * Ef[k * nb + ii];
        else
            for (size_t k = 0; k < K; k++)
                h += Ef[k * nb + ii];
        const double r = s->y[i0 + ii] - (wt ? h : h / (double)K), rho = scale * r;
        s->r[i0 + ii] = r;
        sse += r * r;
        for (size_t k = 0; k < K; k++) {
            double *w = t + k * D, *h0 = s->H0 + k * D;
            const double z = rho * Phi[k * nb + ii], zq = rho * q[k * nb + ii];
            for (size_t b = 0; b < D; b++) {
                h0[b] += z * w[b]; /* row 0 of hessR: W^T z */
                w[b] *= zq;        /* diag(rho q) W */
            }
            s->g0[k] += rho * A[k * nb + ii];
            s->v[k] += rho * Ef[k * nb + ii];
            t[KD + k] = rho * g[k * nb + ii]; /* overwrites m_ik, read above */
            t[KD + K + k] = z;
        }
    }
    return sse;
}

/* Sharded: sum G, H0, g0 and the squared residuals over the ranks (gmf_par_sum: rank order,
 * the same bits on every rank). */
static int reduce_shards(gmf_sqloss *s, double *sse) {
    const size_t dl = s->d * s->ld, KD = s->K * s->D, K = s->K, m = dl + KD + K + 1;
    if (s->n == 0) memset(s->G, 0, dl * sizeof(double)); /* no block wrote it */
    memcpy(s->red, s->G, dl * sizeof(double));
    memcpy(s->red + dl, s->H0, KD * sizeof(double));
    memcpy(s->red + dl + KD, s->g0, K * sizeof(double));
    s->red[m - 1] = *sse;
    int rc = gmf_par_sum(s->red, m);
    if (rc) return rc;
    memcpy(s->G, s->red, dl * sizeof(double));
    memcpy(s->H0, s->red + dl, KD * sizeof(double));
    memcpy(s->g0, s->red + dl + KD, K * sizeof(double));
    *sse = s->red[m - 1];
    return GMF_OK;
}

/* wt = NULL: equal weights 1/K (the W flows' mixture); else the K mixture weights. */
static int sq_prepare_impl(gmf_sqloss *s, size_t K, const double *wt, const double *mu,
                           const double *Sigma, const double *C) {
    const size_t n = s->n, d = s->d, D = s->D, KD = K * D;
    if (K == 0) return gmf_error(GMF_EINVAL, "squared loss: mixture has no components");
    int rc = reserve(s, K);
    if (s->shard && gmf_par_any(rc != GMF_OK)) /* all ranks leave together */
        return rc ? rc : gmf_error(GMF_ENOMEM, "squared loss: out of memory on another rank");
    if (rc) return rc;
    const size_t ld = s->ld;
    s->R = C ? C : Sigma;
    for (size_t j = 0; j < d; j++) { /* Rcat row j: rows j + 1 of every R_k, then mu_k[j + 1] */
        double *row = s->Rcat + j * (KD + K);
        for (size_t k = 0; k < K; k++) {
            memcpy(row + k * D, s->R + k * D * D + (j + 1) * D, D * sizeof(double));
            row[KD + k] = mu[k * D + j + 1];
        }
    }
    memset(s->H0, 0, KD * sizeof(double));
    memset(s->g0, 0, K * sizeof(double));
    memset(s->v, 0, K * sizeof(double));
    double sse = 0.0;
    for (size_t i0 = 0; i0 < n; i0 += s->nb) {
        const size_t nb = i0 + s->nb <= n ? s->nb : n - i0;
        const double *Xb = s->X + i0 * d;
        /* T (nb x (K D + K), row stride ld) = X_b Rcat */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nb, (int)(KD + K), (int)d, 1.0,
                    Xb, (int)d, s->Rcat, (int)(KD + K), 0.0, s->T, (int)ld);
        sse += block_closed_forms(s, i0, nb, wt, mu, C);
        /* G (d x ld) += X_b^T T */
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)ld, (int)nb, 1.0, Xb,
                    (int)d, s->T, (int)ld, i0 ? 1.0 : 0.0, s->G, (int)ld);
    }
    if (s->shard && (rc = reduce_shards(s, &sse))) return rc;
    s->loss = sse / (double)s->ntot;
    if (!isfinite(s->loss)) return gmf_error(GMF_EDIVERGE, "squared loss: loss is not finite");
    return GMF_OK;
}

static int sq_prepare(void *ctx, size_t K, const double *mu, const double *Sigma, const double *C) {
    return sq_prepare_impl(ctx, K, NULL, mu, Sigma, C);
}

static int sq_prepare_w(void *ctx, size_t K, const double *w, const double *mu, const double *Sigma,
                        const double *C) {
    for (size_t k = 0; k < K; k++)
        if (!(w[k] >= 0.0) || !isfinite(w[k]))
            return gmf_error(GMF_EINVAL, "squared loss: weight w[%zu] = %g is not finite and >= 0",
                             k, w[k]);
    return sq_prepare_impl(ctx, K, w, mu, Sigma, C);
}

/* E_k[dL] = -(2/n) sum_i r_i E_k f(x_i, .) at the last prepared mixture (k < K). */
static double sq_value(void *ctx, size_t k) {
    gmf_sqloss *s = ctx;
    return k < s->K ? s->v[k] : NAN;
}

static int sq_component(void *ctx, size_t k, double *grad, double *hessR) {
    gmf_sqloss *s = ctx;
    const size_t d = s->d, D = s->D, K = s->K, KD = K * D, ld = s->ld;
    if (k >= K) return gmf_error(GMF_EINVAL, "squared loss: component %zu of %zu", k, K);
    const double *R0 = s->R + k * D * D; /* row 0 of R_k */
    /* grad = sum_i rho_i (A_i, g_i x_i);  hessR row 0 = W^T z */
    grad[0] = s->g0[k];
    memcpy(hessR, s->H0 + k * D, D * sizeof(double));
    /* rows 1..d: X^T diag(rho q) W + (X^T z) R_{0,:}.  Reads only, so component() may be called
     * again, in any order, until the next prepare. */
    for (size_t j = 0; j < d; j++) {
        const double *Gj = s->G + j * ld, xz = Gj[KD + K + k];
        grad[j + 1] = Gj[KD + k];
        for (size_t b = 0; b < D; b++)
            hessR[(j + 1) * D + b] = Gj[k * D + b] + xz * R0[b];
    }
    return GMF_OK;
}

static double sq_loss(void *ctx) {
    return ((gmf_sqloss *)ctx)->loss;
}

gmf_oracle gmf_sqloss_oracle(gmf_sqloss *s) {
    gmf_oracle o = {
        .ctx = s, .D = s->D, .prepare = sq_prepare, .component = sq_component, .loss = sq_loss};
    o.jvp = s->shard ? NULL : gmf_sqloss_jvp_; /* src/exact/sqloss_jvp.c (serial only) */
    /* the WFR members (E_k[dL] is not reduced over shards: serial only) */
    o.prepare_w = s->shard ? NULL : sq_prepare_w;
    o.value = s->shard ? NULL : sq_value;
    return o;
}

int gmf_sqloss_eval(gmf_sqloss *s, size_t K, const double *mu, const double *Sigma, double *pred,
                    double *loss) {
    return gmf_sqloss_eval_w(s, K, NULL, mu, Sigma, pred, loss);
}

int gmf_sqloss_eval_w(gmf_sqloss *s, size_t K, const double *w, const double *mu,
                      const double *Sigma, double *pred, double *loss) {
    int rc = w ? sq_prepare_w(s, K, w, mu, Sigma, NULL) : sq_prepare(s, K, mu, Sigma, NULL);
    if (rc && rc != GMF_EDIVERGE) return rc;
    if (pred)
        for (size_t i = 0; i < s->n; i++)
            pred[i] = s->y[i] - s->r[i];
    if (loss) *loss = s->loss;
    return rc;
}

const double *gmf_sqloss_X_(const gmf_sqloss *s) {
    return s->X;
}
const double *gmf_sqloss_y_(const gmf_sqloss *s) {
    return s->y;
}
struct gmf_sqloss_jv **gmf_sqloss_jv_(gmf_sqloss *s) {
    return &s->jv;
}
