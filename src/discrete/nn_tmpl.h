/* nn_tmpl.h -- GM layers, FC layer, unit-norm, reference-class logistic loss and whole networks,
 * written once for `real` and compiled by nn_f32.c (real = float, suffix _f) and nn_f64.c
 * (real = double, suffix _d).  The including file defines real, SUFFIX and GEMM (cblas_sgemm or
 * cblas_dgemm).  Derivations of every backward pass: docs/TRAINING.md.
 *
 * Conventions: row-major; B = batch rows; the per-(sample, component) Gaussian scalars are
 * computed in double, by gmf_gauss_batch (gauss.h) in the forward pass and by
 * gmf_gauss_scalars (gauss.h) in the full-covariance layer, with gauss.h's degenerate limit
 * s -> 0 (Phi = 1{m > 0}, phi = 0) and far-tail clamp |m/s| >= 38 (phi = 0).
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/gauss.h"
#include "gmflow/nn.h"
#include "nn_internal.h"

#define CAT2(a, b) a##b
#define CAT(a, b)  CAT2(a, b)
#define FN(name)   CAT(name, SUFFIX)

/* GM_KERN: this instantiation's diagonal GM layer runs gm_kern.c's AVX-512 products instead of
 * OpenBLAS (float32 on AVX-512 builds; nn_internal.h), and forms X * X in registers (X2 unused). */
#if defined(REAL_F32) && defined(GMF_NN_KERN)
#define GM_KERN 1
#else
#define GM_KERN 0
#endif

/* The forward products on more than one thread (GM_FWD_MT; 1 thread always reads the shared X^T
 * that gm_square_rows writes):
 *   2 (default): each thread transposes the WHOLE batch into its own X^T (ws->xtp) after the
 *     gather's barrier and runs gm_kern_xt.c on it for its components: bitwise the 1-thread
 *     results (the same X^T, the same kernel), no line of X^T shared between the cores;
 *   1: gm_kern.c's nt kernel on X (no X^T; another sum order than 1 thread, in the last bits);
 *   0: the shared X^T, each thread transposing its rows (the 1-thread layout).
 * Measured on 2 threads (docs/PERFORMANCE.md, "Two threads for the GM trainer"): the shared X^T
 * was the slowest (the transposition wrote lines the other core had read: 34 ms per thread per
 * epoch against 24 for all rows on 1 thread); nt 1.11x faster than it; the private copies
 * 1.055x faster than nt (6 rounds, every round faster), although each thread transposes all
 * rows. */
#ifndef GM_FWD_MT
#define GM_FWD_MT 2
#endif

/* The gather of a batch of compact (byte) rows with GM_KERN (GM_GATHER_CONV; 0: each thread
 * converts its rows into the shared X and X^T is transposed from X, as for float data sets):
 * the rows' raw bytes, scales and labels are first copied into a staging buffer (ws->sb,
 * ws->ssc; the random rows' memory latency is here), then the bytes are converted into X and
 * X^T in one pass (gmf_nn_kern_xt_conv_u8: X^T is formed from each 16 x 16 block while it is in
 * L1, not by a second pass over X).
 *   1: on 1 thread only (the transposition's pass over X disappears: epoch 1.014-1.061x
 *     faster, median 1.03);
 *   2 (default): also on more threads with GM_FWD_MT 2: each thread copies EVERY row's bytes
 *     into its OWN staging buffer (ws->sb + t gm_sb_stride, ws->ssc + t gm_ssc_stride;
 * stage_rows) and converts the whole batch into its own X (Xb for thread 0, ws->xp for the
 * others) and its own X^T: no staged byte and no float row of X crosses the cores, and nothing
 * before the forward barrier reads another thread's writes, so there is no barrier after the gather
 * (gm_steps_run's comment); the price, every thread reading all B random rows and converting every
 * row (vector-ALU bound, about 9 us per 64 rows).  Until session 23 each thread staged only its
 * rows into one shared buffer, with a barrier before the conversion (that form measured the same as
 * 1 with one pool job per step, and faster with the steps in one job, GM_STEPS_MT); staging every
 * row per thread measured 1.006x faster on 2 threads than it (median of 36 interleaved rounds, 22
 * faster; at the host's noise level), the conversion 3-18 ms per 3 epochs cheaper per thread, the
 * staging 5-7 ms dearer (docs/PERFORMANCE.md, "Each thread gathers every row's bytes itself"). The
 * values are those of the plain gather (gmf_dataset_u8_value), X^T the same numbers, so the results
 * are bitwise the same with any setting (docs/PERFORMANCE.md, "The gather's conversion fused with
 * the transposition"). */
#ifndef GM_GATHER_CONV
#define GM_GATHER_CONV 2
#endif

/* Several SGD steps as one pool job on more than one thread (GM_STEPS_MT, gm_steps_run: the
 * trainer's full batches in chunks, ops.sgd_steps_ds): 1 (default) with the AVX-512 float32
 * components split and each thread's own X^T (GM_FWD_MT 2, the default; fixed weights: the
 * second batch buffer xb2 is allocated only then, and other builds run one job per step); 0: one
 * job per step
 * (docs/PERFORMANCE.md, "Two threads for the GM trainer"). */
#ifndef GM_STEPS_MT
#define GM_STEPS_MT 1
#endif

/* One barrier per step (GM_ONE_BARRIER, gm_step1b) in the multi-step job on exactly 2 threads with
 * a byte data set and fixed weights: each thread runs its components through the whole step
 * (forward products, Gaussian scalars, its half of the output sum in double, the backward scalars,
 * the fused update) and, after the one barrier, the output, loss and dH of every row itself from
 * the two halves; nothing else crosses threads (gm_steps_run's comment).  0 selects the two
 * barriers of gm_step.  Measured per 2-thread epoch (docs/PERFORMANCE.md, "One barrier per step
 * on 2 threads"; bench/results/xeon_20261201_s24_one/): 1.087-1.095x faster than main 55afc1c,
 * the session's start (ab8, ab9: the s24-one branch's final build against that base, so with
 * everything else that branch changed, not this switch alone); 1.066x faster than the same build
 * with GM_ONE_BARRIER=0 (ab4, the two-barrier step with the two-halves output sum; taken before
 * the final Gaussian-scalars change).  It pays only because each thread's per-row arrays are its
 * own (on the shared cache it ran 1.15x slower). */
#ifndef GM_ONE_BARRIER
#define GM_ONE_BARRIER 1
#endif
/* The 2-thread split of gm_step: 0 = components (the default), 1 = rows (gm_job_run's comment;
 * with 1, gm_step1b never runs and ws_init allocates none of its buffers). */
#ifndef GM_FWD_ROWS
#define GM_FWD_ROWS 0
#endif
/* (A split of that job's steps by pixel columns instead of components -- each thread its columns
 * of every component, two barriers per step, each byte converted once -- was built and measured
 * 1.13x slower on 2 threads: the fused backward on half the columns of every component ran
 * 1.2-1.35x longer per thread, the two threads writing the two halves of the same parameter rows.
 * Removed; its code is commit 8fd9fa3 (docs/PERFORMANCE.md, "The step split by pixel columns").) */

/* One thread's staging buffer (ws->sb + t gm_sb_stride: GM_GATHER_CONV 2 on more than one
 * thread): Bmax rows of d bytes, rounded up to a cache line. */
static inline size_t gm_sb_stride(size_t Bmax, size_t d) {
    return (Bmax * d + 63) / 64 * 64;
}
/* ... and its scales (ws->ssc + t gm_ssc_stride doubles: 2 Bmax, rounded up to a cache line, so
 * that no line is written by two threads). */
static inline size_t gm_ssc_stride(size_t Bmax) {
    return (2 * Bmax + 7) / 8 * 8;
}

/* gm_step1b's buffers: hp holds 2 parities x 2 threads blocks of gm_hp_stride(Bmax, L) doubles
 * (block [par][t] at (2 par + t) stride: each on its own cache lines); obuf holds one block of
 * gm_ob_size bytes per thread, its private per-step arrays (gm_ob_view), each on its own lines. */
static inline size_t gm_hp_stride(size_t Bmax, size_t L) {
    return (Bmax * L + 7) / 8 * 8;
}
static inline size_t gm_ob_al(size_t bytes) { /* rounded up to whole cache lines */
    return (bytes + 63) / 64 * 64;
}
static inline size_t gm_ob_size(size_t Bmax, size_t K, size_t L) {
    const size_t W = K * (L + 1);
    return 2 * gm_ob_al(Bmax * W * sizeof(real)) + 6 * gm_ob_al(Bmax * K * sizeof(real)) +
           2 * gm_ob_al(Bmax * L * sizeof(real)) + gm_ob_al(Bmax * sizeof(double)) +
           2 * gm_ob_al(Bmax);
}
/* Whether ws_init's hp (4 gm_hp_stride doubles) and obuf (2 gm_ob_size bytes) sizes fit in size_t:
 * with n = Bmax (K + 1) (L + 1) <= SIZE_MAX / 1024 (n >= Bmax K (L + 1), Bmax K, Bmax L, Bmax),
 * each of gm_ob_size's 13 terms is at most 8 n + 63 bytes (sizeof(real), sizeof(double) <= 8),
 * so 2 gm_ob_size < 208 n + 1700, and 4 gm_hp_stride doubles <= 32 n + 256: both far below
 * SIZE_MAX.  (The bound that held before these buffers existed, Bmax d floats of Xb, says nothing
 * about them.) */
static inline int gm_1b_sizes_ok(size_t Bmax, size_t K, size_t L) {
    const size_t lim = SIZE_MAX / 1024;
    if (L >= lim || K >= lim || K + 1 > lim / (L + 1)) return 0;
    return Bmax <= lim / ((K + 1) * (L + 1));
}

typedef FN(gmf_nn_gm_cache) gm_cache;
typedef FN(gmf_nn_gmfull_cache) full_cache;
typedef FN(gmf_nn_gmlr_cache) lr_cache;
typedef FN(gmf_nn_fc_cache) fc_cache;
typedef FN(gmf_nn_ws) ws_t;
typedef FN(gmf_nn_gm_params) gm_params;
typedef FN(gmf_nn_fc_params) fc_params;
typedef FN(gmf_nn_net_params) net_params;

/* C (M x N) = alpha op(A) op(B) + beta C, row-major, ints for BLAS. */
static inline void gemm(int ta, int tb, size_t M, size_t N, size_t Kd, real alpha, const real *A,
                        size_t lda, const real *Bm, size_t ldb, real beta, real *C, size_t ldc) {
    if (M == 0 || N == 0) return;
    if (Kd == 0) { /* BLAS may not touch C when K = 0 */
        for (size_t i = 0; i < M; i++)
            for (size_t j = 0; j < N; j++)
                C[i * ldc + j] = beta == 0 ? 0 : beta * C[i * ldc + j];
        return;
    }
    GEMM(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M,
         (int)N, (int)Kd, alpha, A, (int)lda, Bm, (int)ldb, beta, C, (int)ldc);
}

/* Do a layer cache's sizes fit size_t?  Every array of the caches below holds at most
 * (Bmax + 1) K (d + L + r + 2) elements (r: the low-rank rank, else 0; K: the FC width for the
 * FC cache) or K (L + 1 + r) (d + r) (the stacked parameter operands muW and E, and U_q, Q), so
 * that the public *_cache_init need no checked model; the bound keeps 16 bytes an element.  Called
 * first by every *_cache_init, so that no product below can wrap (a wrapped size would allocate too
 * little). */
static int cache_dims_check(const char *what, size_t Bmax, size_t d, size_t K, size_t L, size_t r) {
    size_t n;
    if (d > SIZE_MAX / 4 || L > SIZE_MAX / 4 || r > SIZE_MAX / 4 || Bmax == SIZE_MAX ||
        gmf_mul_size3(Bmax + 1, K ? K : 1, d + L + r + 2, &n) || n > SIZE_MAX / 16 ||
        gmf_mul_size3(K ? K : 1, L + 1 + r, d + r, &n) || n > SIZE_MAX / 16)
        return gmf_error(GMF_EINVAL, "%s (B=%zu, d=%zu, K=%zu, L=%zu): its sizes overflow size_t",
                         what, Bmax, d, K, L);
    return GMF_OK;
}

/* n zeroed reals on a 64-byte boundary (a cache line: the GM_KERN products' rows then start on
 * one when d is a multiple of 16; loads that straddle two lines cost twice, and made the products
 * about 1.5x slower); freed with free(). */
static real *ralloc(size_t n, int *fail) {
    const size_t bytes = ((n ? n : 1) * sizeof(real) + 63) / 64 * 64;
    real *p = n <= SIZE_MAX / sizeof(real) - 64 ? aligned_alloc(64, bytes) : NULL;
    if (!p)
        *fail = 1;
    else
        memset(p, 0, bytes);
    return p;
}

/* The caches' X^T buffer (GM_KERN only: gm_kern_xt.c's forward products read the batch
 * transposed, in panels of 64 rows: nn_internal.h); NULL in the other instantiations. */
static void xt_alloc(real **XT, size_t *xt0, size_t Bmax, size_t d, int *fail) {
    *XT = NULL, *xt0 = 0; /* (xtb: set per forward pass, XT_SELECT) */
    if (!GM_KERN) return;
    if (d && Bmax > SIZE_MAX / sizeof(real) / 2 / d)
        *fail = 1;
    else
        *XT = ralloc(gmf_nn_xt_size(Bmax, d), fail);
}

/* The X^T storage for a forward pass on B rows (GM_KERN): the backward's product buffer (dmuW,
 * dE) when X^T fits in it -- that buffer is dead from the parameter update that reads it to the
 * next backward product that writes it, and X^T lives from the gather to the end of the forward,
 * so the training step's working set does not grow by X^T (200 KB; it outgrew L2 and slowed the
 * backward and the update) -- else the cache's own buffer (Bmax rows: the evaluation's batches).
 * Set before the rows are transposed (gm_square_rows) and kept by the rows view. */
#define XT_SELECT(c, dbuf, W, B)                                                                   \
    ((c)->xtb = GM_KERN && gmf_nn_xt_size((B), (c)->d) <= (W) * (c)->d ? (dbuf) : (c)->XT)

/* =============================================================================================
 * Named parameter views (nn.h) and the SGD update.
 * ============================================================================================= */

gm_params FN(gmf_nn_gm_view)(real *P, size_t d, size_t K, size_t L, int full) {
    gm_params p = {0};
    p.mu = P;
    if (full)
        p.C = P + K * d;
    else
        p.sigma = P + K * d;
    p.U = P + K * d + (full ? K * d * d : K * d);
    p.v = p.U + K * L * d;
    return p;
}

fc_params FN(gmf_nn_fc_view)(real *P, size_t d, size_t m, size_t L) {
    (void)L;
    fc_params p = {P, P + m * d};
    return p;
}

net_params FN(gmf_nn_net_view)(const gmf_nn_model *m, real *P) {
    net_params p;
    memset(&p, 0, sizeof p);
    switch (m->kind) {
    case GMF_NN_GM:
    case GMF_NN_GMFULL:
        p.gm[0] = FN(gmf_nn_gm_view)(P, m->d, m->K, m->L, m->kind == GMF_NN_GMFULL);
        break;
    case GMF_NN_FC:
        p.fc = FN(gmf_nn_fc_view)(P, m->d, m->width, m->L);
        break;
    case GMF_NN_GMSTACK: /* layer 2 starts where layer 1's v ends */
        p.gm[0] = FN(gmf_nn_gm_view)(P, m->d, m->K, m->Lmid, 0);
        p.gm[1] = FN(gmf_nn_gm_view)(p.gm[0].v + m->K * m->Lmid, m->Lmid, m->K, m->L, 0);
        break;
    case GMF_NN_GMLR: /* the diagonal layer's blocks, then V */
        p.gm[0] = FN(gmf_nn_gm_view)(P, m->d, m->K, m->L, 0);
        p.V = p.gm[0].v + m->K * m->L;
        break;
    }
    for (int l = 0; l < 2; l++) { /* learned weights: the logits, after all other blocks */
        const int g = gmf_nn_model_logits_group(m, l + 1);
        if (g >= 0) p.gm[l].a = P + m->group[g].off;
    }
    return p;
}

/* Component k's blocks of a GM layer's view: mu_k (d), sigma_k (d) or C_k (d x d), U_k (L x d),
 * v_k (L). */
static inline gm_params gm_comp(gm_params p, size_t d, size_t L, size_t k) {
    gm_params q = {p.mu + k * d,
                   p.sigma ? p.sigma + k * d : NULL,
                   p.C ? p.C + k * d * d : NULL,
                   p.U + k * L * d,
                   p.v + k * L,
                   NULL};
    return q;
}

/* The SGD update, in `real`: the one home of the rule.  sgd_rate gives a group's rate in `real`
 * (0: the group is frozen and not touched at all, so it stays bitwise unchanged: --fixed-beta);
 * sgd_step1 updates one entry; sgd_update n entries.  Used by gmf_nn_sgd_apply and by the fused
 * GM step (gm_bwd_param1: sgd_update on v, sigma, mu; sgd_step1 inside the U row loop, so that
 * each U row is read and written in the same pass that forms its gradient). */
static inline real sgd_rate(double lr) {
    return (real)lr;
}

static inline real sgd_step1(real p, real g, real r) {
    return p - r * g;
}

static inline void sgd_update(size_t n, real *restrict p, const real *restrict g, double lr) {
    const real r = sgd_rate(lr);
    if (r == 0) return;
    for (size_t j = 0; j < n; j++)
        p[j] = sgd_step1(p[j], g[j], r);
}

/* The same update from the double gradient accumulator (full batch): p = (real)(p - lr g),
 * computed in double. */
static inline void sgd_update_acc(size_t n, real *restrict p, const double *restrict g, double lr) {
    if (lr == 0.0) return;
    for (size_t j = 0; j < n; j++)
        p[j] = (real)((double)p[j] - lr * g[j]);
}

/* =============================================================================================
 * Mixture weights (learned): w = softmax(a) and the logits' gradient.
 * ============================================================================================= */

/* *learned = (logit != NULL); with logits, w = softmax(logit) in double (as gmf_nn_softmax). */
static void mix_weights(int *learned, double *w, const real *logit, size_t K) {
    *learned = logit != NULL;
    if (!logit || K == 0) return;
    double mx = (double)logit[0], sum = 0.0;
    for (size_t k = 1; k < K; k++)
        if ((double)logit[k] > mx) mx = (double)logit[k];
    for (size_t k = 0; k < K; k++)
        sum += w[k] = exp((double)logit[k] - mx);
    for (size_t k = 0; k < K; k++)
        w[k] /= sum;
}

/* sum_j w_j g_j (in index order) */
static double mix_mean(const double *w, const double *g, size_t K) {
    double gbar = 0.0;
    for (size_t k = 0; k < K; k++)
        gbar += w[k] * g[k];
    return gbar;
}

/* dL/da_k = w_k (g_k - sum_j w_j g_j): the softmax Jacobian dw_j/da_k = w_j (delta_jk - w_k)
 * applied to g_j = dL/dw_j. */
static void mix_logit_grad(real *dlogit, const double *w, const double *g, size_t K) {
    const double gbar = mix_mean(w, g, K);
    for (size_t k = 0; k < K; k++)
        dlogit[k] = (real)(w[k] * (g[k] - gbar));
}

/* =============================================================================================
 * GM classification layer, diagonal covariance.
 *
 * Parameters through the views: gm_comp(gmf_nn_gm_view(P, d, K, L, 0), d, L, k) gives
 * component k's mu_k (d), sigma_k (d), U_k (L x d), v_k (L).
 * ============================================================================================= */

int FN(gmf_nn_gm_cache_init)(gm_cache *c, size_t Bmax, size_t d, size_t K, size_t L) {
    memset(c, 0, sizeof *c);
    if (cache_dims_check("GM layer cache", Bmax, d, K, L, 0)) return GMF_EINVAL;
    c->Bmax = Bmax, c->d = d, c->K = K, c->L = L;
    const size_t W = K * (L + 1);
    int fail = 0;
    c->muW = ralloc(W * d, &fail);
    c->sig2 = ralloc(K * d, &fail);
    c->a = ralloc(K * L, &fail);
    c->X2 = ralloc(Bmax * d, &fail);
    xt_alloc(&c->XT, &c->xt0, Bmax, d, &fail);
    c->F = ralloc(Bmax * W, &fail);
    c->S2 = ralloc(Bmax * K, &fail);
    c->s = ralloc(Bmax * K, &fail);
    c->Phi = ralloc(Bmax * K, &fail);
    c->phi = ralloc(Bmax * K, &fail);
    c->A = ralloc(Bmax * K, &fail);
    c->dF = ralloc(Bmax * W, &fail);
    c->dS2 = ralloc(Bmax * K, &fail);
    c->dmuW = ralloc(W * d, &fail);
    c->dsig2 = ralloc(K * d, &fail);
    c->w = calloc(K ? K : 1, sizeof(double));
    c->gw = calloc(K ? K : 1, sizeof(double));
    if (!c->w || !c->gw) fail = 1;
    if (fail) {
        FN(gmf_nn_gm_cache_free)(c);
        return gmf_error(GMF_ENOMEM, "GM layer cache (B=%zu, d=%zu, K=%zu, L=%zu): out of memory",
                         Bmax, d, K, L);
    }
    return GMF_OK;
}

void FN(gmf_nn_gm_cache_free)(gm_cache *c) {
    if (!c) return;
    free(c->muW), free(c->sig2), free(c->a), free(c->X2), free(c->XT), free(c->F), free(c->S2);
    free(c->s);
    free(c->Phi), free(c->phi), free(c->A), free(c->dF), free(c->dS2), free(c->dmuW);
    free(c->dsig2), free(c->w), free(c->gw);
    memset(c, 0, sizeof *c);
}

/* u . w over d entries with 16 fixed partial sums (vectorizable, and deterministic: the order does
 * not depend on alignment or the compiler), combined in double. */
static double dot16(const real *restrict u, const real *restrict w, size_t d) {
    real part[16] = {0};
    size_t j = 0;
    for (; j + 16 <= d; j += 16)
        for (size_t q = 0; q < 16; q++)
            part[q] += u[j + q] * w[j + q];
    double acc = 0.0;
    for (size_t q = 0; q < 16; q++)
        acc += (double)part[q];
    for (; j < d; j++)
        acc += (double)u[j] * (double)w[j];
    return acc;
}

/* Parameter-derived quantities of component k: sig2 = sigma^2, the stacked GEMM operand
 * muW = [mu_k; W_k] with W_k = U_k diag(sigma_k^2), and a_k = U_k mu_k + v_k. */
static void gm_prep1(gm_cache *c, const real *P, size_t d, size_t K, size_t L, size_t k) {
    const gm_params p = gm_comp(FN(gmf_nn_gm_view)((real *)P, d, K, L, 0), d, L, k);
    const real *restrict mu = p.mu, *restrict sigma = p.sigma, *restrict U = p.U, *restrict v = p.v;
    real *restrict sig2 = c->sig2 + k * d, *restrict row = c->muW + k * (L + 1) * d;
    for (size_t j = 0; j < d; j++)
        sig2[j] = sigma[j] * sigma[j];
    memcpy(row, mu, d * sizeof(real));
    for (size_t l = 0; l < L; l++) {
        const real *restrict u = U + l * d;
        real *restrict w = row + (1 + l) * d;
        for (size_t j = 0; j < d; j++)
            w[j] = u[j] * sig2[j];
        c->a[k * L + l] = (real)(dot16(u, mu, d) + (double)v[l]);
    }
}

static void gm_prep(gm_cache *c, const real *P, size_t d, size_t K, size_t L, size_t k0,
                    size_t k1) {
    for (size_t k = k0; k < k1; k++)
        gm_prep1(c, P, d, K, L, k);
}

/* Rows [i0, i1) of X2 = X * X; with GM_KERN instead columns [i0, i1) of X^T (the forward
 * products read the batch transposed and square it in registers; the backward reads X). */
static void gm_square_rows(gm_cache *c, const real *X, size_t d, size_t i0, size_t i1) {
#if GM_KERN
    gmf_nn_kern_xt_trans(d, X, d, c->xt0 + i0, c->xt0 + i1, c->xtb);
#else
    for (size_t e = i0 * d; e < i1 * d; e++)
        c->X2[e] = X[e] * X[e];
#endif
}

/* The forward products of components [k0, k1), every row (needs gm_prep for them; all rows of X
 * and X2, or of X^T with GM_KERN: gm_square_rows). */
static void gm_fwd_gemm(gm_cache *c, const real *X, size_t B, size_t d, size_t K, size_t L,
                        size_t k0, size_t k1) {
    const size_t W = K * (L + 1), nk = k1 - k0;
    if (nk == 0) return;
#if GM_KERN
    /* F[:, k, :] = X [mu_k; W_k]^T:  m_ik = x_i . mu_k and G_ik = W_k x_i      (B x nk(L+1))
     * S2 = (X * X) (sigma^2)^T:  s_ik^2 = sum_j sigma_kj^2 x_ij^2                  (B x nk)
     * from X^T (gm_kern_xt.c: the batch as the vector dimension; X itself is not read) */
    (void)X;
    gmf_nn_kern_xt(B, nk * (L + 1), d, c->xtb, c->xt0, c->muW + k0 * (L + 1) * d, d,
                   c->F + k0 * (L + 1), W, 0);
    gmf_nn_kern_xt(B, nk, d, c->xtb, c->xt0, c->sig2 + k0 * d, d, c->S2 + k0, K, 1);
#else
    gemm(0, 1, B, nk * (L + 1), d, 1, X, d, c->muW + k0 * (L + 1) * d, d, 0, c->F + k0 * (L + 1),
         W);
    gemm(0, 1, B, nk, d, 1, c->X2, d, c->sig2 + k0 * d, d, 0, c->S2 + k0, K);
#endif
}

/* The Gaussian scalars of rows [i0, i1), every component (needs gm_fwd_gemm for all K), in
 * double, one row at a time: a row's K points in gmf_gauss_batch's blocks of 4 the same way
 * whichever thread computes the row (by rows, so that two threads split this work evenly: by
 * components, 10 of K = 20 left 2 points per row to the scalar tail on each thread).  GM_KERN:
 * the rows' points as one flat range, 8 per AVX-512 lane block, the same lane code for every
 * point whatever the range (gm_gauss.c; rounded to float it differs from gmf_gauss_batch's
 * results in the last bit of a few values, tests/test_gm_gauss.c). */
static void gm_fwd_scalars(gm_cache *c, size_t K, size_t L, size_t i0, size_t i1) {
    const size_t W = K * (L + 1);
    if (K == 0) return;
#if GM_KERN /* all rows' points in one pass, 8 per AVX-512 libmvec call (gm_gauss.c) */
    gmf_nn_kern_gm_gauss(i0 * K, i1 * K, L, c->F, c->S2, c->s, c->Phi, c->phi, c->A);
    return;
#endif
    double m[K], s2[K], sv[K], Phi[K], phi[K], A[K];
    for (size_t i = i0; i < i1; i++) {
        for (size_t k = 0; k < K; k++) {
            m[k] = (double)c->F[i * W + k * (L + 1)];
            s2[k] = (double)c->S2[i * K + k];
        }
        const gmf_gauss_batch_out go = {.s = sv, .Phi = Phi, .phi = phi, .A = A};
        gmf_gauss_batch(K, m, s2, NULL, 0.0, &go);
        for (size_t k = 0; k < K; k++) {
            c->s[i * K + k] = (real)sv[k];
            c->Phi[i * K + k] = (real)Phi[k];
            c->phi[i * K + k] = (real)phi[k];
            c->A[i * K + k] = (real)A[k]; /* E relu(beta . x) = m Phi + s phi */
        }
    }
}

/* Both, every row and component (the serial path and the rows split). */
static void gm_fwd_part(gm_cache *c, const real *X, size_t B, size_t d, size_t K, size_t L) {
    gm_fwd_gemm(c, X, B, d, K, L, 0, K);
    gm_fwd_scalars(c, K, L, 0, B);
}

/* Rows [i0, i1) of H = (1/K) sum_k [A_ik a_k + Phi_ik G_ik], summed in two halves, S_0 over
 * k in [0, K/2) and S_1 over [K/2, K) (each in order from zero), then H = (1/K) (S_0 + S_1):
 * the halves are gmf_nn_split(K, t, 2)'s components, so the one-barrier step on 2 threads (each
 * thread's S_t, gm_step1b) gives bitwise the same H on every path and thread count. */
static void gm_reduce_rows(real *H, const gm_cache *c, size_t K, size_t L, size_t i0, size_t i1) {
    const size_t W = K * (L + 1);
    const double inv = 1.0 / (double)K;
#if GM_KERN /* the same over 8 logits per vector, bitwise (gm_scal.c) */
    gmf_nn_kern_gm_reduce_rows(H, c->A, c->Phi, c->a, c->F, NULL, inv, K, L, i0, i1);
    return;
#endif
    for (size_t i = i0; i < i1; i++) {
        double acc[2][L + 1];
        for (int h = 0; h < 2; h++) {
            for (size_t l = 0; l < L; l++)
                acc[h][l] = 0.0;
            for (size_t k = h ? K / 2 : 0; k < (h ? K : K / 2); k++) {
                const double A = c->A[i * K + k], Phi = c->Phi[i * K + k];
                const real *a = c->a + k * L, *G = c->F + i * W + k * (L + 1) + 1;
                for (size_t l = 0; l < L; l++)
                    acc[h][l] += A * a[l] + Phi * G[l];
            }
        }
        for (size_t l = 0; l < L; l++)
            H[i * L + l] = (real)(inv * (acc[0][l] + acc[1][l]));
    }
}

/* The same with the learned weights c->w: h_i = sum_k w_k [A_ik a_k + Phi_ik G_ik]. */
static void gm_reduce_rows_w(real *H, const gm_cache *c, size_t K, size_t L, size_t i0, size_t i1) {
    const size_t W = K * (L + 1);
#if GM_KERN /* the same over 8 logits per vector, bitwise (gm_scal.c) */
    gmf_nn_kern_gm_reduce_rows(H, c->A, c->Phi, c->a, c->F, c->w, 0.0, K, L, i0, i1);
    return;
#endif
    for (size_t i = i0; i < i1; i++) {
        double acc[L + 1];
        for (size_t l = 0; l < L; l++)
            acc[l] = 0.0;
        for (size_t k = 0; k < K; k++) {
            const double wk = c->w[k], A = c->A[i * K + k], Phi = c->Phi[i * K + k];
            const real *a = c->a + k * L, *G = c->F + i * W + k * (L + 1) + 1;
            for (size_t l = 0; l < L; l++)
                acc[l] += wk * (A * a[l] + Phi * G[l]);
        }
        for (size_t l = 0; l < L; l++)
            H[i * L + l] = (real)acc[l];
    }
}

void FN(gmf_nn_gm_forward_w)(real *H, gm_cache *c, const real *X, const real *P, const real *logit,
                             size_t B, size_t d, size_t K, size_t L) {
    XT_SELECT(c, c->dmuW, K * (L + 1), B);
    mix_weights(&c->learned, c->w, logit, K);
    gm_prep(c, P, d, K, L, 0, K);
    gm_square_rows(c, X, d, 0, B);
    gm_fwd_part(c, X, B, d, K, L);
    if (c->learned)
        gm_reduce_rows_w(H, c, K, L, 0, B);
    else
        gm_reduce_rows(H, c, K, L, 0, B);
}

void FN(gmf_nn_gm_forward)(real *H, gm_cache *c, const real *X, const real *P, size_t B, size_t d,
                           size_t K, size_t L) {
    FN(gmf_nn_gm_forward_w)(H, c, X, P, NULL, B, d, K, L);
}

/* Backward, first half, for components [k0, k1): the per-(sample, component) scalars
 * (gm_bwd_scalars: dF, dS2, da, gw) and the two GEMMs (gm_bwd_prod); leaves dmuW = [dmu_k; dW_k]
 * (the m and G parts) and dsig2 (the S2 part) in the cache and da (nk x L, unscaled: sum_i A_ik
 * dH_i) in `da`.
 *
 * With g_i = dH_i / K and h_i = sum_k [A_ik a_k + Phi_ik G_ik] / K:
 *   dA_ik = g_i . a_k,  dPhi_ik = g_i . G_ik,  dG_ik = Phi_ik g_i,  da_k = sum_i A_ik g_i;
 *   A = m Phi(m/s) + s phi(m/s) has dA/dm = Phi, dA/ds = phi;  Phi(m/s) has d/dm = phi/s,
 *   d/ds = -m phi / s^2;  s = sqrt(S2) so d/dS2 = 1/(2s):
 *     dm_ik  = dA Phi + dPhi phi / s
 *     dS2_ik = phi (dA - dPhi m / s^2) / (2 s)
 *   (both terms with phi vanish when phi = 0: s == 0 or the far tail).
 * Then m_ik = x_i . mu_k, G_ik = W_k x_i, S2_ik = (x_i*x_i) . sigma_k^2 give
 *   [dmu_k; dW_k] = dF[:, k]^T X,   dsig2_k = dS2[:, k]^T (X*X). */
static void gm_bwd_scalars(gm_cache *c, double *da, const double *sc, double *gw, const real *dH,
                           size_t B, size_t K, size_t L, size_t k0, size_t k1) {
#if GM_KERN
    if (L <= GMF_NN_SCAL_LMAX) { /* AVX-512 lanes (gm_scal.c): dG, da, gw bitwise; dm, dS2 to the
                                  * last bits of the double (one division per pair) */
        gmf_nn_kern_gm_bwd_scalars(B, K, L, k0, k1, c->a, c->F, c->A, c->Phi, c->phi, c->s, dH, sc,
                                   c->dF, c->dS2, da, gw);
        return;
    }
#endif
    const size_t W = K * (L + 1), nk = k1 - k0;
    if (nk == 0) return;
    const double invK = 1.0 / (double)K;
    double gk[nk];
    for (size_t e = 0; e < nk * L; e++)
        da[e] = 0.0;
    for (size_t k = 0; k < nk; k++)
        gk[k] = 0.0;
    for (size_t i = 0; i < B; i++) {
        const real *dh = dH + i * L;
        for (size_t k = k0; k < k1; k++) {
            const size_t ik = i * K + k;
            const double inv = sc ? sc[k] : invK; /* component k's weight in h (1/K or w_k) */
            const real *a = c->a + k * L, *G = c->F + i * W + k * (L + 1) + 1;
            real *dG = c->dF + i * W + k * (L + 1) + 1;
            const double A = c->A[ik], Phi = c->Phi[ik], phi = c->phi[ik], s = c->s[ik];
            double dA = 0.0, dPhi = 0.0;
            for (size_t l = 0; l < L; l++) {
                dA += (double)dh[l] * a[l];        /* dL/dA_ik   = g_i . a_k  (times K) */
                dPhi += (double)dh[l] * G[l];      /* dL/dPhi_ik = g_i . G_ik (times K) */
                dG[l] = (real)(inv * Phi * dh[l]); /* dL/dG_ik = Phi_ik g_i */
                da[(k - k0) * L + l] += A * dh[l]; /* dL/da_k += A_ik g_i (times K) */
            }
            if (gw) gk[k - k0] += A * dA + Phi * dPhi; /* dL/dw_k += dH_i . out_k(x_i) */
            dA *= inv, dPhi *= inv;
            double dm = dA * Phi, dS2 = 0.0;
            if (phi > 0.0) {
                const double m = c->F[i * W + k * (L + 1)];
                dm += dPhi * phi / s;                              /* through Phi(m/s) */
                dS2 = phi * (dA - dPhi * m / (s * s)) / (2.0 * s); /* through A and Phi, ds/dS2 */
            }
            c->dF[i * W + k * (L + 1)] = (real)dm;
            c->dS2[ik] = (real)dS2;
        }
    }
    if (gw)
        for (size_t k = k0; k < k1; k++)
            gw[k] = gk[k - k0];
}

/* The backward's products for components [k0, k1), after gm_bwd_scalars (which leaves dF and
 * dS2): */
static void gm_bwd_prod(gm_cache *c, const real *X, size_t B, size_t d, size_t K, size_t L,
                        size_t k0, size_t k1) {
    const size_t W = K * (L + 1), nk = k1 - k0;
    if (nk == 0) return;
#if GM_KERN
    /* [dmu_k; dW_k] = dF[:, k]^T X                                           (nk(L+1) x d)
     * dsig2_k = dS2[:, k]^T (X * X)                                                 (nk x d)
     * GM_KERN: written (no zeroing pass needed).  OpenBLAS (below): accumulated (beta = 1) into
     * dmuW and dsig2, which gm_bwd_param1 leaves zero: OpenBLAS then skips its beta pass, a
     * separate sweep over the 200 x 784 output that zeroed it every step (0 + the products:
     * bitwise the beta = 0 result) */
    gmf_nn_kern_tn(nk * (L + 1), d, B, c->dF + k0 * (L + 1), W, X, d, c->dmuW + k0 * (L + 1) * d, d,
                   0, 0);
    gmf_nn_kern_tn(nk, d, B, c->dS2 + k0, K, X, d, c->dsig2 + k0 * d, d, 1, 0);
#else
    gemm(1, 0, nk * (L + 1), d, B, 1, c->dF + k0 * (L + 1), W, X, d, 1, c->dmuW + k0 * (L + 1) * d,
         d);
    gemm(1, 0, nk, d, B, 1, c->dS2 + k0, K, c->X2, d, 1, c->dsig2 + k0 * d, d);
#endif
}

/* Backward, first half (gm_bwd_scalars + gm_bwd_prod). */
static void gm_bwd_gemm(gm_cache *c, double *da, const double *sc, double *gw, const real *dH,
                        const real *X, size_t B, size_t d, size_t K, size_t L, size_t k0,
                        size_t k1) {
    gm_bwd_scalars(c, da, sc, gw, dH, B, K, L, k0, k1);
    gm_bwd_prod(c, X, B, d, K, L, k0, k1);
}

/* One row (k, l) of the parameter chain: dU_kl = dW_kl * sig2_k + da_kl mu_k (via W_k and via
 * a_k), dsig2_k += dW_kl * U_kl (W_k = U_k diag(sig2_k)), dmu_k += da_kl U_kl (a_k = U_k mu_k +
 * v_k).  gm_row_grad stores dU; gm_row_update (the fused step) instead updates U in place with
 * sgd_step1 at rate r (u is not read again in this step); gm_row_nograd only accumulates (U
 * frozen).  Restrict-qualified parameters, so that the loops vectorize. */
static void gm_row_grad(size_t d, real *restrict du, real *restrict dsig2, real *restrict dmu,
                        const real *restrict u, const real *restrict dW, const real *restrict sig2,
                        const real *restrict mu, real dal) {
    for (size_t j = 0; j < d; j++) {
        du[j] = dW[j] * sig2[j] + dal * mu[j];
        dsig2[j] += dW[j] * u[j];
        dmu[j] += dal * u[j];
    }
}

static void gm_row_update(size_t d, real *restrict u, real *restrict dsig2, real *restrict dmu,
                          const real *restrict dW, const real *restrict sig2,
                          const real *restrict mu, real dal, real r) {
    for (size_t j = 0; j < d; j++) {
        const real du = dW[j] * sig2[j] + dal * mu[j];
        dsig2[j] += dW[j] * u[j];
        dmu[j] += dal * u[j];
        u[j] = sgd_step1(u[j], du, r);
    }
}

static void gm_row_nograd(size_t d, real *restrict dsig2, real *restrict dmu,
                          const real *restrict u, const real *restrict dW, real dal) {
    for (size_t j = 0; j < d; j++) {
        dsig2[j] += dW[j] * u[j];
        dmu[j] += dal * u[j];
    }
}

#if GM_KERN
/* The fused SGD step's second half for component k (gm_bwd_param1 with lr and a U rate != 0) in
 * one pass over the component's columns (gm_kern.c gmf_nn_kern_gm_update): every quantity of
 * the chain is separable by column except a_k = U_k mu_k + v_k, so per block of 16 columns the
 * U rows are updated (the dsig2_k and dmu_k sums over l formed on the way, in the row-by-row
 * order), then sigma_k and mu_k, then the refreshed cache rows (sig2, muW = [mu; U diag(sig2)])
 * are written and a_k's 16 partial sums carried -- the same arithmetic, operation for operation,
 * as gm_row_update + sgd_update + gm_prep1 below (bitwise their results), with U, mu, sigma and
 * the gradient rows read once instead of twice and no separate refresh pass. */
static void gm_bwd_update1(real *P, gm_cache *c, const double *dak, double inv, const double *lr,
                           size_t d, size_t K, size_t L, size_t k) {
    const gm_params p = gm_comp(FN(gmf_nn_gm_view)(P, d, K, L, 0), d, L, k);
    real *dmW = c->dmuW + k * (L + 1) * d; /* row 0: dmu (the m part), rows 1..L: dW */
    real dal[L + 1];                       /* + 1: never empty */
    double acc[L + 1];
    dal[L] = 0, acc[L] = 0.0;
    for (size_t l = 0; l < L; l++)
        dal[l] = (real)(inv * dak[l]), acc[l] = 0.0;
    sgd_update(L, p.v, dal, lr[GMF_NN_GROUP_V]); /* dv_k = da_k */
    gmf_nn_kern_gm_update(d, L, p.U, p.mu, p.sigma, dmW + d, dmW, c->dsig2 + k * d, c->sig2 + k * d,
                          c->muW + k * (L + 1) * d, dal, sgd_rate(lr[GMF_NN_GROUP_U]),
                          sgd_rate(lr[GMF_NN_GROUP_SIGMA]), sgd_rate(lr[GMF_NN_GROUP_MU]), acc);
    for (size_t l = 0; l < L; l++)
        c->a[k * L + l] = (real)(acc[l] + (double)p.v[l]); /* as gm_prep1 */
}

/* The fused SGD step's products and parameter pass for components [k0, k1) in one kernel
 * (gm_kern.c gmf_nn_kern_tn_update: each component's product rows stay in registers and feed
 * gm_update's column work; dmuW and dsig2 are not written), after gm_bwd_scalars.  Bitwise
 * gm_bwd_prod followed by gm_bwd_update1 for each k.  Returns 0 (nothing done) where it does not
 * apply: not the fused step, U frozen, or L above the kernel's register tiles. */
static int gm_bwd_fused(real *P, gm_cache *c, const double *da, const double *sc, const double *lr,
                        const real *X, size_t B, size_t d, size_t K, size_t L, size_t k0,
                        size_t k1) {
    if (!lr || sgd_rate(lr[GMF_NN_GROUP_U]) == 0 || L > GMF_NN_KERN_TU_LMAX ||
        B > GMF_NN_KERN_TU_MMAX)
        return 0;
    const size_t nk = k1 - k0;
    if (nk == 0) return 1;
    const gm_params p = FN(gmf_nn_gm_view)(P, d, K, L, 0);
    real dal[nk * L + 1]; /* + 1: never empty */
    double acc[nk * L + 1];
    dal[nk * L] = 0; /* (never read; set so that GCC sees dal written when L = 0) */
    for (size_t k = k0; k < k1; k++) {
        const double inv = sc ? sc[k] : 1.0 / (double)K;
        real *dk = dal + (k - k0) * L;
        for (size_t l = 0; l < L; l++)
            dk[l] = (real)(inv * da[(k - k0) * L + l]);
        sgd_update(L, p.v + k * L, dk, lr[GMF_NN_GROUP_V]); /* dv_k = da_k */
    }
    gmf_nn_kern_tn_update(B, d, L, k0, k1, X, d, c->dF, K * (L + 1), c->dS2, K, p.U, p.mu, p.sigma,
                          c->sig2, c->muW, dal, sgd_rate(lr[GMF_NN_GROUP_U]),
                          sgd_rate(lr[GMF_NN_GROUP_SIGMA]), sgd_rate(lr[GMF_NN_GROUP_MU]), acc);
    for (size_t k = k0; k < k1; k++)
        for (size_t l = 0; l < L; l++) /* as gm_prep1 */
            c->a[k * L + l] = (real)(acc[(k - k0) * L + l] + (double)p.v[k * L + l]);
    return 1;
}
#else
static int gm_bwd_fused(real *P, gm_cache *c, const double *da, const double *sc, const double *lr,
                        const real *X, size_t B, size_t d, size_t K, size_t L, size_t k0,
                        size_t k1) {
    (void)P, (void)c, (void)da, (void)sc, (void)lr, (void)X, (void)B, (void)d, (void)K, (void)L;
    (void)k0, (void)k1;
    return 0;
}
#endif

/* Backward, second half, for component k: the chain through W_k = U_k diag(sigma_k^2),
 * a_k = U_k mu_k + v_k and sig2 = sigma^2, from the cache's dmuW, dsig2 and da_k (unscaled).
 * With lr == NULL the gradient goes to dP (the layout of P); otherwise (the fused SGD step) it
 * is not stored (dv on the stack, dsigma over dsig2) and each parameter block is updated in
 * place with its group's rate (lr[GMF_NN_GROUP_MU] ...) right after its last use -- a U row in
 * the pass that forms its gradient (gm_row_update), v, sigma and mu at the end -- and the
 * component's parameter-derived cache
 * (gm_prep1) is refreshed for the next forward pass: one pass over the component's parameters
 * while they are in cache. */
static void gm_bwd_param1(real *P, real *dP, gm_cache *c, const double *dak, double inv,
                          const double *lr, size_t d, size_t K, size_t L, size_t k) {
    const gm_params p = gm_comp(FN(gmf_nn_gm_view)(P, d, K, L, 0), d, L, k);
    real *dmW = c->dmuW + k * (L + 1) * d;
    const real *sig2 = c->sig2 + k * d;
    real *dsig2 = c->dsig2 + k * d;
    /* dmu_k = sum_i dm_ik x_i (row 0 of dmuW, accumulated in place) + U_k^T da_k */
    real *dmu = c->dmuW + k * (L + 1) * d;
    /* where the gradient goes: dP's blocks, or (fused step) dsigma over dsig2, dv on the stack,
     * dU nowhere (gm_row_update) */
    real dv[L];
    gm_params g = {dmu, dsig2, NULL, NULL, dv, NULL};
    if (!lr) g = gm_comp(FN(gmf_nn_gm_view)(dP, d, K, L, 0), d, L, k);
    const real rU = lr ? sgd_rate(lr[GMF_NN_GROUP_U]) : 0;
#if GM_KERN
    if (rU != 0) { /* the fused step with U trained: one pass (bitwise the same results) */
        gm_bwd_update1(P, c, dak, inv, lr, d, K, L, k);
        return;
    }
#endif
    for (size_t l = 0; l < L; l++) {
        const real dal = (real)(inv * dak[l]);
        real *dW = dmW + (1 + l) * d;
        g.v[l] = dal; /* dv_k = da_k */
        if (!lr)
            gm_row_grad(d, g.U + l * d, dsig2, dmu, p.U + l * d, dW, sig2, p.mu, dal);
        else if (rU != 0)
            gm_row_update(d, p.U + l * d, dsig2, dmu, dW, sig2, p.mu, dal, rU);
        else
            gm_row_nograd(d, dsig2, dmu, p.U + l * d, dW, dal);
        if (!GM_KERN) memset(dW, 0, d * sizeof(real)); /* zero for the next beta = 1 GEMM */
    }
    for (size_t j = 0; j < d; j++)
        g.sigma[j] = 2 * p.sigma[j] * dsig2[j]; /* sig2 = sigma^2 */
    if (!lr) {
        memcpy(g.mu, dmu, d * sizeof(real));
        if (!GM_KERN) memset(dmu, 0, d * sizeof(real)), memset(dsig2, 0, d * sizeof(real));
        return;
    }
    sgd_update(L, p.v, g.v, lr[GMF_NN_GROUP_V]);
    sgd_update(d, p.sigma, g.sigma, lr[GMF_NN_GROUP_SIGMA]);
    sgd_update(d, p.mu, g.mu, lr[GMF_NN_GROUP_MU]);
    if (!GM_KERN) memset(dmu, 0, d * sizeof(real)), memset(dsig2, 0, d * sizeof(real));
    gm_prep1(c, P, d, K, L, k);
}

/* Backward for components [k0, k1) into dP (the layer API's path); with learned weights
 * (c->learned) the components are scaled by w_k and c->gw gets dL/dw_k. */
static void gm_bwd_part(real *dP, gm_cache *c, const real *dH, const real *X, const real *P,
                        size_t B, size_t d, size_t K, size_t L, size_t k0, size_t k1) {
    if (k1 <= k0) return;
    double da[(k1 - k0) * L];
    const double *sc = c->learned ? c->w : NULL;
    gm_bwd_gemm(c, da, sc, c->learned ? c->gw : NULL, dH, X, B, d, K, L, k0, k1);
    for (size_t k = k0; k < k1; k++)
        gm_bwd_param1((real *)P, dP, c, da + (k - k0) * L, sc ? sc[k] : 1.0 / (double)K, NULL, d, K,
                      L, k);
}

/* dX = sum_k [dm_k mu_k^T + dG_k W_k] + 2 X * (dS2 sig2)  (needs gm_bwd_part for all k). */
static void gm_bwd_input(real *dX, gm_cache *c, const real *X, size_t B, size_t d, size_t K,
                         size_t L) {
    const size_t W = K * (L + 1);
    gemm(0, 0, B, d, K, 1, c->dS2, K, c->sig2, d, 0, dX, d); /* dL/d(x*x) = dS2 sig2 */
    for (size_t e = 0; e < B * d; e++)
        dX[e] *= 2 * X[e];                                 /* d(x*x)/dx = 2x */
    gemm(0, 0, B, d, W, 1, c->dF, W, c->muW, d, 1, dX, d); /* m = X mu^T, G = X W^T */
}

void FN(gmf_nn_gm_backward_w)(real *dP, real *dlogit, real *dX, gm_cache *c, const real *dH,
                              const real *X, const real *P, size_t B, size_t d, size_t K,
                              size_t L) {
    gm_bwd_part(dP, c, dH, X, P, B, d, K, L, 0, K);
    if (dlogit && c->learned) mix_logit_grad(dlogit, c->w, c->gw, K);
    if (dX) gm_bwd_input(dX, c, X, B, d, K, L);
}

void FN(gmf_nn_gm_backward)(real *dP, real *dX, gm_cache *c, const real *dH, const real *X,
                            const real *P, size_t B, size_t d, size_t K, size_t L) {
    FN(gmf_nn_gm_backward_w)(dP, NULL, dX, c, dH, X, P, B, d, K, L);
}

/* =============================================================================================
 * GM classification layer, full covariance Sigma_k = C_k C_k^T.
 * Parameters through the view gmf_nn_gm_view(P, d, K, L, 1): mu (K x d), C (K x d x d),
 * U (K x L x d), v (K x L).
 * ============================================================================================= */

int FN(gmf_nn_gmfull_cache_init)(full_cache *c, size_t Bmax, size_t d, size_t K, size_t L) {
    memset(c, 0, sizeof *c);
    if (cache_dims_check("full-covariance GM layer cache", Bmax, d, K, L, 0)) return GMF_EINVAL;
    c->Bmax = Bmax, c->d = d, c->K = K, c->L = L;
    int fail = 0;
    c->a = ralloc(K * L, &fail);
    c->M = ralloc(Bmax * K, &fail);
    c->Wc = ralloc(K * Bmax * d, &fail);
    c->Cc = ralloc(K * Bmax * d, &fail);
    c->G = ralloc(K * Bmax * L, &fail);
    c->s = ralloc(Bmax * K, &fail);
    c->Phi = ralloc(Bmax * K, &fail);
    c->phi = ralloc(Bmax * K, &fail);
    c->A = ralloc(Bmax * K, &fail);
    c->dG = ralloc(K * Bmax * L, &fail);
    c->dCc = ralloc(K * Bmax * d, &fail);
    c->dWc = ralloc(K * Bmax * d, &fail);
    c->dM = ralloc(Bmax * K, &fail);
    c->dS2 = ralloc(Bmax * K, &fail);
    c->w = calloc(K ? K : 1, sizeof(double));
    c->gw = calloc(K ? K : 1, sizeof(double));
    if (!c->w || !c->gw) fail = 1;
    if (fail) {
        FN(gmf_nn_gmfull_cache_free)(c);
        return gmf_error(GMF_ENOMEM, "full-covariance GM layer cache: out of memory");
    }
    return GMF_OK;
}

void FN(gmf_nn_gmfull_cache_free)(full_cache *c) {
    if (!c) return;
    free(c->a), free(c->M), free(c->Wc), free(c->Cc), free(c->G), free(c->s), free(c->Phi);
    free(c->phi), free(c->A), free(c->dG), free(c->dCc), free(c->dWc), free(c->dM);
    free(c->dS2), free(c->w), free(c->gw);
    memset(c, 0, sizeof *c);
}

/* h_i = sum_k w_k [A_ik a_k + Phi_ik G_ik] with the learned weights c->w. */
static void gmfull_reduce_w(real *H, const full_cache *c, size_t B, size_t K, size_t L) {
    for (size_t i = 0; i < B; i++)
        for (size_t l = 0; l < L; l++) {
            double acc = 0.0;
            for (size_t k = 0; k < K; k++)
                acc += c->w[k] * ((double)c->A[i * K + k] * c->a[k * L + l] +
                                  (double)c->Phi[i * K + k] * c->G[(k * B + i) * L + l]);
            H[i * L + l] = (real)acc;
        }
}

void FN(gmf_nn_gmfull_forward)(real *H, full_cache *c, const real *X, const real *P, size_t B,
                               size_t d, size_t K, size_t L) {
    FN(gmf_nn_gmfull_forward_w)(H, c, X, P, NULL, B, d, K, L);
}

void FN(gmf_nn_gmfull_forward_w)(real *H, full_cache *c, const real *X, const real *P,
                                 const real *logit, size_t B, size_t d, size_t K, size_t L) {
    mix_weights(&c->learned, c->w, logit, K);
    const gm_params p = FN(gmf_nn_gm_view)((real *)P, d, K, L, 1);
    const real *mu = p.mu, *C = p.C, *U = p.U, *v = p.v;
    for (size_t k = 0; k < K; k++)
        for (size_t l = 0; l < L; l++) { /* a_k = U_k mu_k + v_k */
            double acc = v[k * L + l];
            for (size_t j = 0; j < d; j++)
                acc += (double)U[(k * L + l) * d + j] * mu[k * d + j];
            c->a[k * L + l] = (real)acc;
        }
    gemm(0, 1, B, K, d, 1, X, d, mu, d, 0, c->M, K); /* M = X mu^T: m_ik = x_i . mu_k */
    for (size_t k = 0; k < K; k++) {
        const real *Ck = C + k * d * d;
        real *Wc = c->Wc + k * B * d, *Cc = c->Cc + k * B * d, *G = c->G + k * B * L;
        gemm(0, 0, B, d, d, 1, X, d, Ck, d, 0, Wc, d);            /* w_i = C_k^T x_i */
        gemm(0, 1, B, d, d, 1, Wc, d, Ck, d, 0, Cc, d);           /* c_i = C_k w_i */
        gemm(0, 1, B, L, d, 1, Cc, d, U + k * L * d, d, 0, G, L); /* G_i = U_k c_i */
        for (size_t i = 0; i < B; i++) {
            double s2 = 0.0; /* s^2 = x^T Sigma_k x = |w_i|^2 */
            for (size_t j = 0; j < d; j++)
                s2 += (double)Wc[i * d + j] * Wc[i * d + j];
            gmf_gauss_point p;
            gmf_gauss_scalars((double)c->M[i * K + k], s2, 0.0, 0.0, &p);
            c->s[i * K + k] = (real)p.s;
            c->Phi[i * K + k] = (real)p.Phi;
            c->phi[i * K + k] = (real)p.phi;
            c->A[i * K + k] = (real)p.A;
        }
    }
    if (c->learned) {
        gmfull_reduce_w(H, c, B, K, L);
        return;
    }
    const double inv = 1.0 / (double)K;
    for (size_t i = 0; i < B; i++)
        for (size_t l = 0; l < L; l++) {
            double acc = 0.0; /* h_i = (1/K) sum_k [A_ik a_k + Phi_ik G_ik] */
            for (size_t k = 0; k < K; k++)
                acc += (double)c->A[i * K + k] * c->a[k * L + l] +
                       (double)c->Phi[i * K + k] * c->G[(k * B + i) * L + l];
            H[i * L + l] = (real)(inv * acc);
        }
}

/* Same scalar chain as the diagonal layer (dm, dS2 from dA, dPhi); then, per component, with
 * w_i = C^T x_i, c_i = C w_i, G_i = U c_i, s^2 = |w_i|^2:
 *   dU  = da mu^T + dG^T Cc,   dc_i = U^T dG_i,
 *   dw_i = C^T dc_i + 2 dS2_i w_i,   dC = sum_i [dc_i w_i^T + x_i dw_i^T],
 *   dmu = dM^T X + U^T da,   dX = dM mu + sum_k dW_k C_k^T. */
void FN(gmf_nn_gmfull_backward)(real *dP, real *dX, full_cache *c, const real *dH, const real *X,
                                const real *P, size_t B, size_t d, size_t K, size_t L) {
    FN(gmf_nn_gmfull_backward_w)(dP, NULL, dX, c, dH, X, P, B, d, K, L);
}

/* With learned weights component k's terms carry w_k instead of 1/K, and
 * g_k = dL/dw_k = sum_i dH_i . (A_ik a_k + Phi_ik G_ik). */
void FN(gmf_nn_gmfull_backward_w)(real *dP, real *dlogit, real *dX, full_cache *c, const real *dH,
                                  const real *X, const real *P, size_t B, size_t d, size_t K,
                                  size_t L) {
    const gm_params p = FN(gmf_nn_gm_view)((real *)P, d, K, L, 1);
    const gm_params g = FN(gmf_nn_gm_view)(dP, d, K, L, 1);
    const real *mu = p.mu, *C = p.C, *U = p.U;
    real *dmu = g.mu, *dC = g.C, *dU = g.U, *dv = g.v;
    for (size_t k = 0; k < K; k++) {
        const double inv = c->learned ? c->w[k] : 1.0 / (double)K;
        double gwk = 0.0;
        const real *Ck = C + k * d * d, *Uk = U + k * L * d, *a = c->a + k * L;
        const real *Wc = c->Wc + k * B * d, *Cc = c->Cc + k * B * d, *G = c->G + k * B * L;
        real *dG = c->dG + k * B * L, *dCc = c->dCc + k * B * d, *dWc = c->dWc + k * B * d;
        double da[L];
        for (size_t l = 0; l < L; l++)
            da[l] = 0.0;
        for (size_t i = 0; i < B; i++) {
            const size_t ik = i * K + k;
            const double A = c->A[ik], Phi = c->Phi[ik], phi = c->phi[ik], s = c->s[ik];
            double dA = 0.0, dPhi = 0.0;
            for (size_t l = 0; l < L; l++) {
                const double g = inv * dH[i * L + l];
                if (c->learned) gwk += dH[i * L + l] * (A * a[l] + Phi * G[i * L + l]);
                dA += g * a[l];                  /* dL/dA_ik = g_i . a_k */
                dPhi += g * G[i * L + l];        /* dL/dPhi_ik = g_i . G_ik */
                dG[i * L + l] = (real)(Phi * g); /* dL/dG_ik = Phi_ik g_i */
                da[l] += A * g;                  /* dL/da_k += A_ik g_i */
            }
            double dm = dA * Phi, dS2 = 0.0;
            if (phi > 0.0) {
                dm += dPhi * phi / s;
                dS2 = phi * (dA - dPhi * (double)c->M[ik] / (s * s)) / (2.0 * s);
            }
            c->dM[ik] = (real)dm;
            c->dS2[ik] = (real)dS2;
        }
        c->gw[k] = gwk;
        for (size_t l = 0; l < L; l++) {
            dv[k * L + l] = (real)da[l];   /* dv_k = da_k */
            for (size_t j = 0; j < d; j++) /* a_k = U_k mu_k + v_k */
                dU[(k * L + l) * d + j] = (real)(da[l] * mu[k * d + j]);
        }
        gemm(1, 0, L, d, B, 1, dG, L, Cc, d, 1, dU + k * L * d, d); /* G_i = U c_i: dU += dG^T Cc */
        gemm(0, 0, B, d, L, 1, dG, L, Uk, d, 0, dCc, d);            /* dc_i = U^T dG_i */
        gemm(0, 0, B, d, d, 1, dCc, d, Ck, d, 0, dWc, d);           /* dw_i = C^T dc_i ... */
        for (size_t i = 0; i < B; i++) {                            /* ... + 2 dS2_i w_i */
            const real two_ds = 2 * c->dS2[i * K + k];
            for (size_t j = 0; j < d; j++)
                dWc[i * d + j] += two_ds * Wc[i * d + j];
        }
        real *dCk = dC + k * d * d;
        gemm(1, 0, d, d, B, 1, dCc, d, Wc, d, 0, dCk, d); /* c = C w:   dC += dc w^T */
        gemm(1, 0, d, d, B, 1, X, d, dWc, d, 1, dCk, d);  /* w = C^T x: dC += x dw^T */
        for (size_t j = 0; j < d; j++) {                  /* dmu_k = U_k^T da_k (+ dM^T X) */
            double acc = 0.0;
            for (size_t l = 0; l < L; l++)
                acc += da[l] * Uk[l * d + j];
            dmu[k * d + j] = (real)acc;
        }
    }
    gemm(1, 0, K, d, B, 1, c->dM, K, X, d, 1, dmu, d); /* m = X mu^T: dmu += dM^T X */
    if (dlogit && c->learned) mix_logit_grad(dlogit, c->w, c->gw, K);
    if (dX) {
        gemm(0, 0, B, d, K, 1, c->dM, K, mu, d, 0, dX, d); /* m_ik = x_i . mu_k */
        for (size_t k = 0; k < K; k++)                     /* w = C^T x: dx += C dw */
            gemm(0, 1, B, d, d, 1, c->dWc + k * B * d, d, C + k * d * d, d, 1, dX, d);
    }
}

/* =============================================================================================
 * GM classification layer, low-rank covariance Sigma_k = diag(sigma_k^2) + V_k V_k^T.
 *
 * Parameters: the diagonal layer's mu | sigma | U | v (gmf_nn_gm_view), then V (K x r x d), whose
 * row q of component k is column q of V_k (d x r).  Per component, with W_k = U_k diag(sigma_k^2)
 * and Q_k = U_k V_k (L x r), Sigma_k x = sigma_k^2 * x + V_k (V_k^T x) gives
 *   m = x . mu_k,   t = V_k^T x (r),   G = U_k Sigma_k x = W_k x + Q_k t,
 *   s^2 = (x*x) . sigma_k^2 + |t|^2,
 * and the forward pass is the diagonal layer's GEMMs with the stacked rows E = [mu_k; W_k;
 * V_k^T] (K (L+1+r) x d) plus O(B K L r) scalar work for Q_k t.
 * ============================================================================================= */

/* Component k's V_k^T (r x d) in P. */
static inline real *lr_Vt(const real *P, size_t d, size_t K, size_t L, size_t r, size_t k) {
    return (real *)P + K * (2 * d + L * d + L) + k * r * d;
}

int FN(gmf_nn_gmlr_cache_init)(lr_cache *c, size_t Bmax, size_t d, size_t K, size_t L, size_t r) {
    memset(c, 0, sizeof *c);
    if (cache_dims_check("low-rank GM layer cache", Bmax, d, K, L, r)) return GMF_EINVAL;
    c->Bmax = Bmax, c->d = d, c->K = K, c->L = L, c->r = r;
    const size_t W = K * (L + 1 + r);
    int fail = 0;
    c->E = ralloc(W * d, &fail);
    c->sig2 = ralloc(K * d, &fail);
    c->a = ralloc(K * L, &fail);
    c->Q = ralloc(K * L * r, &fail);
    c->X2 = ralloc(Bmax * d, &fail);
    xt_alloc(&c->XT, &c->xt0, Bmax, d, &fail);
    c->F = ralloc(Bmax * W, &fail);
    c->S2 = ralloc(Bmax * K, &fail);
    c->s = ralloc(Bmax * K, &fail);
    c->Phi = ralloc(Bmax * K, &fail);
    c->phi = ralloc(Bmax * K, &fail);
    c->A = ralloc(Bmax * K, &fail);
    c->dF = ralloc(Bmax * W, &fail);
    c->dS2 = ralloc(Bmax * K, &fail);
    c->dE = ralloc(W * d, &fail);
    c->dsig2 = ralloc(K * d, &fail);
    c->dQ = ralloc(K * L * r, &fail);
    c->dUq = ralloc(K * L * d, &fail);
    if (fail) {
        FN(gmf_nn_gmlr_cache_free)(c);
        return gmf_error(GMF_ENOMEM,
                         "low-rank GM layer cache (B=%zu, d=%zu, K=%zu, L=%zu, r=%zu): out of "
                         "memory",
                         Bmax, d, K, L, r);
    }
    return GMF_OK;
}

void FN(gmf_nn_gmlr_cache_free)(lr_cache *c) {
    if (!c) return;
    free(c->E), free(c->sig2), free(c->a), free(c->Q), free(c->X2), free(c->XT), free(c->F);
    free(c->S2);
    free(c->s), free(c->Phi), free(c->phi), free(c->A), free(c->dF), free(c->dS2), free(c->dE);
    free(c->dsig2), free(c->dQ), free(c->dUq);
    memset(c, 0, sizeof *c);
}

/* Parameter-derived quantities of component k: sig2 = sigma^2, the stacked GEMM operand
 * E_k = [mu_k; W_k; V_k^T] with W_k = U_k diag(sig2), Q_k = U_k V_k, a_k = U_k mu_k + v_k. */
static void lr_prep1(lr_cache *c, const real *P, size_t d, size_t K, size_t L, size_t r, size_t k) {
    const gm_params p = gm_comp(FN(gmf_nn_gm_view)((real *)P, d, K, L, 0), d, L, k);
    const real *restrict mu = p.mu, *restrict sigma = p.sigma, *restrict U = p.U, *restrict v = p.v;
    const real *restrict Vt = lr_Vt(P, d, K, L, r, k);
    real *restrict sig2 = c->sig2 + k * d, *restrict E = c->E + k * (L + 1 + r) * d;
    real *restrict Q = c->Q + k * L * r;
    for (size_t j = 0; j < d; j++)
        sig2[j] = sigma[j] * sigma[j];
    memcpy(E, mu, d * sizeof(real));
    memcpy(E + (L + 1) * d, Vt, r * d * sizeof(real)); /* rows V_k^T: t = V_k^T x */
    for (size_t l = 0; l < L; l++) {
        const real *restrict u = U + l * d;
        real *restrict w = E + (1 + l) * d;
        for (size_t j = 0; j < d; j++)
            w[j] = u[j] * sig2[j];
        c->a[k * L + l] = (real)(dot16(u, mu, d) + (double)v[l]);
    }
    gemm(0, 1, L, r, d, 1, U, d, Vt, d, 0, Q, r); /* Q_k = U_k V_k */
}

static void lr_prep(lr_cache *c, const real *P, size_t d, size_t K, size_t L, size_t r, size_t k0,
                    size_t k1) {
    for (size_t k = k0; k < k1; k++)
        lr_prep1(c, P, d, K, L, r, k);
}

/* As gm_square_rows: rows [i0, i1) of X2, or with GM_KERN columns [i0, i1) of X^T. */
static void lr_square_rows(lr_cache *c, const real *X, size_t d, size_t i0, size_t i1) {
#if GM_KERN
    gmf_nn_kern_xt_trans(d, X, d, c->xt0 + i0, c->xt0 + i1, c->xtb);
#else
    for (size_t e = i0 * d; e < i1 * d; e++)
        c->X2[e] = X[e] * X[e];
#endif
}

/* Forward GEMMs and Gaussian scalars for components [k0, k1) (needs lr_prep for them and all
 * rows of X2).  Leaves F[i, k] = [m_ik, G_ik, t_ik] with the full G = W_k x + Q_k t. */
static void lr_fwd_part(lr_cache *c, const real *X, size_t B, size_t d, size_t K, size_t L,
                        size_t r, size_t k0, size_t k1) {
    const size_t R = L + 1 + r, W = K * R, nk = k1 - k0;
    if (nk == 0) return;
#if GM_KERN
    /* F[:, k, :] = X E_k^T: m_ik = x_i . mu_k, W_k x_i, t_ik = V_k^T x_i        (B x nk R)
     * S2 = (X * X) (sigma^2)^T: the diagonal part of s_ik^2                        (B x nk)
     * (GM_KERN: the diagonal layer's products from X^T, so that V = 0 trains bitwise as that
     * layer) */
    (void)X;
    gmf_nn_kern_xt(B, nk * R, d, c->xtb, c->xt0, c->E + k0 * R * d, d, c->F + k0 * R, W, 0);
    gmf_nn_kern_xt(B, nk, d, c->xtb, c->xt0, c->sig2 + k0 * d, d, c->S2 + k0, K, 1);
#else
    gemm(0, 1, B, nk * R, d, 1, X, d, c->E + k0 * R * d, d, 0, c->F + k0 * R, W);
    gemm(0, 1, B, nk, d, 1, c->X2, d, c->sig2 + k0 * d, d, 0, c->S2 + k0, K);
#endif
    /* G_k = W_k x + Q_k t: G[:, k] += T[:, k] Q_k^T (B x L; F's columns t and G are disjoint) */
    for (size_t k = k0; k < k1; k++)
        gemm(0, 1, B, L, r, 1, c->F + k * R + L + 1, W, c->Q + k * L * r, r, 1, c->F + k * R + 1,
             W);
    double m[nk], s2[nk], sv[nk], Phi[nk], phi[nk], A[nk];
    for (size_t i = 0; i < B; i++) {
        for (size_t k = k0; k < k1; k++) {
            const real *t = c->F + i * W + k * R + L + 1;
            double tt = 0.0; /* s^2 = x' diag(sigma^2) x + |V_k^T x|^2 */
            for (size_t q = 0; q < r; q++)
                tt += (double)t[q] * t[q];
            m[k - k0] = (double)c->F[i * W + k * R];
            s2[k - k0] = (double)c->S2[i * K + k] + tt;
        }
        const gmf_gauss_batch_out go = {.s = sv, .Phi = Phi, .phi = phi, .A = A};
        gmf_gauss_batch(nk, m, s2, NULL, 0.0, &go);
        for (size_t k = k0; k < k1; k++) {
            c->s[i * K + k] = (real)sv[k - k0];
            c->Phi[i * K + k] = (real)Phi[k - k0];
            c->phi[i * K + k] = (real)phi[k - k0];
            c->A[i * K + k] = (real)A[k - k0];
        }
    }
}

/* Rows [i0, i1) of H = (1/K) sum_k [A_ik a_k + Phi_ik G_ik]  (summed over k in order). */
static void lr_reduce_rows(real *H, const lr_cache *c, size_t K, size_t L, size_t r, size_t i0,
                           size_t i1) {
    const size_t R = L + 1 + r, W = K * R;
    const double inv = 1.0 / (double)K;
    for (size_t i = i0; i < i1; i++) {
        double acc[L + 1];
        for (size_t l = 0; l < L; l++)
            acc[l] = 0.0;
        for (size_t k = 0; k < K; k++) {
            const double A = c->A[i * K + k], Phi = c->Phi[i * K + k];
            const real *a = c->a + k * L, *G = c->F + i * W + k * R + 1;
            for (size_t l = 0; l < L; l++)
                acc[l] += A * a[l] + Phi * G[l];
        }
        for (size_t l = 0; l < L; l++)
            H[i * L + l] = (real)(inv * acc[l]);
    }
}

void FN(gmf_nn_gmlr_forward)(real *H, lr_cache *c, const real *X, const real *P, size_t B, size_t d,
                             size_t K, size_t L, size_t r) {
    XT_SELECT(c, c->dE, K * (L + 1 + r), B);
    lr_prep(c, P, d, K, L, r, 0, K);
    lr_square_rows(c, X, d, 0, B);
    lr_fwd_part(c, X, B, d, K, L, r, 0, K);
    lr_reduce_rows(H, c, K, L, r, 0, B);
}

/* Backward, first half, for components [k0, k1): the diagonal layer's scalar chain (dm, dS2,
 * dG, da; gm_bwd_gemm), then through G = W x + Q t and s^2 = ... + |t|^2:
 *   dt_ik = 2 dS2_ik t_ik + Q_k^T dG_ik,   dQ_k = sum_i dG_ik t_ik^T   (L x r),
 * and the GEMMs [dmu_k; dW_k; dV_k^T]_direct = dF[:, k]^T X, dsig2_k = dS2[:, k]^T (X * X). */
static void lr_bwd_gemm(lr_cache *c, double *da, const real *dH, const real *X, size_t B, size_t d,
                        size_t K, size_t L, size_t r, size_t k0, size_t k1) {
    const size_t R = L + 1 + r, W = K * R, nk = k1 - k0;
    if (nk == 0) return;
    const double inv = 1.0 / (double)K;
    for (size_t e = 0; e < nk * L; e++)
        da[e] = 0.0;
    for (size_t i = 0; i < B; i++) {
        const real *dh = dH + i * L;
        for (size_t k = k0; k < k1; k++) {
            const size_t ik = i * K + k;
            const real *a = c->a + k * L, *G = c->F + i * W + k * R + 1, *t = G + L;
            real *dG = c->dF + i * W + k * R + 1, *dt = dG + L;
            const double A = c->A[ik], Phi = c->Phi[ik], phi = c->phi[ik], s = c->s[ik];
            double dA = 0.0, dPhi = 0.0;
            for (size_t l = 0; l < L; l++) {
                dA += (double)dh[l] * a[l];        /* dL/dA_ik   = g_i . a_k  (times K) */
                dPhi += (double)dh[l] * G[l];      /* dL/dPhi_ik = g_i . G_ik (times K) */
                dG[l] = (real)(inv * Phi * dh[l]); /* dL/dG_ik = Phi_ik g_i */
                da[(k - k0) * L + l] += A * dh[l]; /* dL/da_k += A_ik g_i (times K) */
            }
            dA *= inv, dPhi *= inv;
            double dm = dA * Phi, dS2 = 0.0;
            if (phi > 0.0) {
                const double m = c->F[i * W + k * R];
                dm += dPhi * phi / s;                              /* through Phi(m/s) */
                dS2 = phi * (dA - dPhi * m / (s * s)) / (2.0 * s); /* through A and Phi, ds/dS2 */
            }
            c->dF[i * W + k * R] = (real)dm;
            c->dS2[ik] = (real)dS2;
            for (size_t q = 0; q < r; q++) /* s^2 = ... + |t|^2 (Q_k^T dG: below) */
                dt[q] = (real)(2.0 * dS2 * t[q]);
        }
    }
    for (size_t k = k0; k < k1; k++) { /* G = W x + Q t, per component over the batch: */
        real *dG = c->dF + k * R + 1, *dT = dG + L;
        gemm(0, 0, B, r, L, 1, dG, W, c->Q + k * L * r, r, 1, dT, W); /* dt += Q_k^T dG */
        gemm(1, 0, L, r, B, 1, dG, W, c->F + k * R + L + 1, W, 0, c->dQ + k * L * r, r); /* dQ */
    }
    /* [dmu_k; dW_k; dV_k^T] = dF[:, k]^T X                                       (nk R x d)
     * dsig2_k = dS2[:, k]^T (X * X)                                                 (nk x d) */
#if GM_KERN
    gmf_nn_kern_tn(nk * R, d, B, c->dF + k0 * R, W, X, d, c->dE + k0 * R * d, d, 0, 0);
    gmf_nn_kern_tn(nk, d, B, c->dS2 + k0, K, X, d, c->dsig2 + k0 * d, d, 1, 0);
#else
    gemm(1, 0, nk * R, d, B, 1, c->dF + k0 * R, W, X, d, 0, c->dE + k0 * R * d, d);
    gemm(1, 0, nk, d, B, 1, c->dS2 + k0, K, c->X2, d, 0, c->dsig2 + k0 * d, d);
#endif
}

/* One row (k, l) of the U chain: dU_kl = dW_l diag(sig2) + da_l mu_k + (dQ_k V_k^T)_l (via W, a
 * and Q), dsig2 += dW_l * U_kl, dmu += da_l U_kl.  lr_row_grad stores dU; lr_row_update (the
 * fused step) updates U in place at rate rr instead, with the same arithmetic (so that the two
 * steps agree bitwise).  Restrict-qualified: the loops vectorize. */
static void lr_row_grad(size_t d, real *restrict du, real *restrict dsig2, real *restrict dmu,
                        const real *restrict u, const real *restrict dW, const real *restrict sig2,
                        const real *restrict mu, const real *restrict dq, real dal) {
    for (size_t j = 0; j < d; j++) {
        du[j] = dW[j] * sig2[j] + dal * mu[j] + dq[j];
        dsig2[j] += dW[j] * u[j];
        dmu[j] += dal * u[j];
    }
}

static void lr_row_update(size_t d, real *restrict u, real *restrict dsig2, real *restrict dmu,
                          const real *restrict dW, const real *restrict sig2,
                          const real *restrict mu, const real *restrict dq, real dal, real rr) {
    for (size_t j = 0; j < d; j++) {
        const real du = dW[j] * sig2[j] + dal * mu[j] + dq[j];
        dsig2[j] += dW[j] * u[j];
        dmu[j] += dal * u[j];
        u[j] = sgd_step1(u[j], du, rr);
    }
}

/* Backward, second half, for component k: with dW the GEMM's dL/dW_k and dQ_k from
 * lr_bwd_gemm,
 *   W = U diag(sig2):   dU_k = dW diag(sig2),  dsig2_k += sum_l dW_l * U_l
 *   Q = U V:            dU_k += dQ V_k^T,      dV_k += U_k^T dQ
 *   a = U mu + v:       dU_k += da mu^T,       dmu_k += U_k^T da,   dv_k = da
 *   sig2 = sigma^2:     dsigma_k = 2 sigma_k * dsig2_k.
 * With lr == NULL the gradient goes to dP; otherwise (the step) only dV goes to dP, and each
 * block of component k is updated in place with its group's rate right after its last use (a U
 * row in the pass that forms its gradient, as the diagonal layer's fused step), then the
 * component's cache is refreshed (lr_prep1). */
static void lr_bwd_param1(real *P, real *dP, lr_cache *c, const double *dak, const double *lr,
                          size_t d, size_t K, size_t L, size_t r, size_t k) {
    const double inv = 1.0 / (double)K;
    const size_t R = L + 1 + r;
    const gm_params p = gm_comp(FN(gmf_nn_gm_view)(P, d, K, L, 0), d, L, k);
    real *Vt = lr_Vt(P, d, K, L, r, k), *gV = lr_Vt(dP, d, K, L, r, k);
    const real *dQ = c->dQ + k * L * r, *sig2 = c->sig2 + k * d, *dE = c->dE + k * R * d;
    real *dsig2 = c->dsig2 + k * d, *dUq = c->dUq + k * L * d;
    real *dmu = c->dE + k * R * d; /* dmu_k = sum_i dm_ik x_i (dE's row 0) + U_k^T da_k */
    real dv[L];
    gm_params g = {dmu, dsig2, NULL, NULL, dv, NULL}; /* the step: dsigma over dsig2, dU nowhere */
    if (!lr) g = gm_comp(FN(gmf_nn_gm_view)(dP, d, K, L, 0), d, L, k);
    memcpy(gV, dE + (L + 1) * d, r * d * sizeof(real)); /* dV_k^T = sum_i dt_ik x_i^T ... */
    gemm(1, 0, r, d, L, 1, dQ, r, p.U, d, 1, gV, d);    /* ... + (U_k^T dQ)^T */
    gemm(0, 0, L, d, r, 1, dQ, r, Vt, d, 0, dUq, d);    /* dQ V_k^T (L x d) */
    const real rU = lr ? sgd_rate(lr[GMF_NN_GROUP_U]) : 0;
    for (size_t l = 0; l < L; l++) {
        const real dal = (real)(inv * dak[l]), *dW = dE + (1 + l) * d, *dq = dUq + l * d;
        g.v[l] = dal; /* dv_k = da_k */
        if (!lr)
            lr_row_grad(d, g.U + l * d, dsig2, dmu, p.U + l * d, dW, sig2, p.mu, dq, dal);
        else if (rU != 0)
            lr_row_update(d, p.U + l * d, dsig2, dmu, dW, sig2, p.mu, dq, dal, rU);
        else
            gm_row_nograd(d, dsig2, dmu, p.U + l * d, dW, dal);
    }
    for (size_t j = 0; j < d; j++)
        g.sigma[j] = 2 * p.sigma[j] * dsig2[j]; /* sig2 = sigma^2 */
    if (!lr) {
        memcpy(g.mu, dmu, d * sizeof(real));
        return;
    }
    sgd_update(L, p.v, g.v, lr[GMF_NN_GROUP_V]);
    sgd_update(d, p.sigma, g.sigma, lr[GMF_NN_GROUP_SIGMA]);
    sgd_update(d, p.mu, g.mu, lr[GMF_NN_GROUP_MU]);
    sgd_update(r * d, Vt, gV, lr[GMF_NN_GROUP_LOWRANK]);
    lr_prep1(c, P, d, K, L, r, k);
}

/* Backward for components [k0, k1) into dP, or (lr != NULL) the step's update of P. */
static void lr_bwd_part(real *P, real *dP, lr_cache *c, const real *dH, const real *X,
                        const double *lr, size_t B, size_t d, size_t K, size_t L, size_t r,
                        size_t k0, size_t k1) {
    if (k1 <= k0) return;
    double da[(k1 - k0) * L];
    lr_bwd_gemm(c, da, dH, X, B, d, K, L, r, k0, k1);
    for (size_t k = k0; k < k1; k++)
        lr_bwd_param1(P, dP, c, da + (k - k0) * L, lr, d, K, L, r, k);
}

void FN(gmf_nn_gmlr_backward)(real *dP, real *dX, lr_cache *c, const real *dH, const real *X,
                              const real *P, size_t B, size_t d, size_t K, size_t L, size_t r) {
    lr_bwd_part((real *)P, dP, c, dH, X, NULL, B, d, K, L, r, 0, K);
    if (!dX) return;
    /* dX = dF E + 2 X * (dS2 sig2): m = X mu^T, W x, t = X V (dt holds both of its uses), and
     * the diagonal part of s^2 = (X*X) sig2^T */
    const size_t W = K * (L + 1 + r);
    gemm(0, 0, B, d, K, 1, c->dS2, K, c->sig2, d, 0, dX, d);
    for (size_t e = 0; e < B * d; e++)
        dX[e] *= 2 * X[e];
    gemm(0, 0, B, d, W, 1, c->dF, W, c->E, d, 1, dX, d);
}

/* =============================================================================================
 * Fully connected ReLU layer: P = [beta (m x d) | omega (m x L)] (gmf_nn_fc_view),
 * h = scale relu(X beta^T) omega.
 * ============================================================================================= */

int FN(gmf_nn_fc_cache_init)(fc_cache *c, size_t Bmax, size_t d, size_t m, size_t L) {
    memset(c, 0, sizeof *c);
    if (cache_dims_check("FC layer cache", Bmax, d, m, L, 0)) return GMF_EINVAL;
    c->Bmax = Bmax, c->d = d, c->m = m, c->L = L;
    int fail = 0;
    c->R = ralloc(Bmax * m, &fail);
    c->dR = ralloc(Bmax * m, &fail);
    if (fail) {
        FN(gmf_nn_fc_cache_free)(c);
        return gmf_error(GMF_ENOMEM, "FC layer cache: out of memory");
    }
    return GMF_OK;
}

void FN(gmf_nn_fc_cache_free)(fc_cache *c) {
    if (!c) return;
    free(c->R), free(c->dR);
    memset(c, 0, sizeof *c);
}

void FN(gmf_nn_fc_forward)(real *H, fc_cache *c, const real *X, const real *P, real scale, size_t B,
                           size_t d, size_t m, size_t L) {
    const fc_params p = FN(gmf_nn_fc_view)((real *)P, d, m, L);
    const real *beta = p.beta, *omega = p.omega;
    gemm(0, 1, B, m, d, 1, X, d, beta, d, 0, c->R, m); /* Z = X beta^T */
    for (size_t e = 0; e < B * m; e++)
        c->R[e] = c->R[e] > 0 ? c->R[e] : 0;                /* R = relu(Z) */
    gemm(0, 0, B, L, m, scale, c->R, m, omega, L, 0, H, L); /* H = scale R omega */
}

void FN(gmf_nn_fc_backward)(real *dP, real *dX, fc_cache *c, const real *dH, const real *X,
                            const real *P, real scale, size_t B, size_t d, size_t m, size_t L) {
    const fc_params p = FN(gmf_nn_fc_view)((real *)P, d, m, L), g = FN(gmf_nn_fc_view)(dP, d, m, L);
    const real *beta = p.beta, *omega = p.omega;
    real *dbeta = g.beta, *domega = g.omega;
    gemm(1, 0, m, L, B, scale, c->R, m, dH, L, 0, domega, L); /* domega = scale R^T dH */
    gemm(0, 1, B, m, L, scale, dH, L, omega, L, 0, c->dR, m); /* dR = scale dH omega^T */
    for (size_t e = 0; e < B * m; e++)
        if (!(c->R[e] > 0)) c->dR[e] = 0;                        /* dZ = dR * 1{Z > 0} */
    gemm(1, 0, m, d, B, 1, c->dR, m, X, d, 0, dbeta, d);         /* dbeta = dZ^T X */
    if (dX) gemm(0, 0, B, d, m, 1, c->dR, m, beta, d, 0, dX, d); /* dX = dZ beta */
}

/* =============================================================================================
 * Unit-norm normalization.
 * ============================================================================================= */

void FN(gmf_nn_unitnorm_forward)(real *Y, real *nrm, const real *Z, size_t B, size_t n) {
    for (size_t i = 0; i < B; i++) {
        double ss = 0.0;
        for (size_t j = 0; j < n; j++)
            ss += (double)Z[i * n + j] * Z[i * n + j];
        double r = sqrt(ss);
        if (!(r > GMF_NN_NORM_EPS)) r = GMF_NN_NORM_EPS;
        nrm[i] = (real)r;
        for (size_t j = 0; j < n; j++)
            Y[i * n + j] = (real)(Z[i * n + j] / r);
    }
}

/* y = z / r with r = |z| (> eps):  dz = (dy - y (y . dy)) / r;  with r = eps (constant): dy/eps */
void FN(gmf_nn_unitnorm_backward)(real *dZ, const real *dY, const real *Y, const real *nrm,
                                  size_t B, size_t n) {
    for (size_t i = 0; i < B; i++) {
        const double r = nrm[i];
        double yd = 0.0;
        if (r > GMF_NN_NORM_EPS)
            for (size_t j = 0; j < n; j++)
                yd += (double)Y[i * n + j] * dY[i * n + j];
        for (size_t j = 0; j < n; j++)
            dZ[i * n + j] = (real)((dY[i * n + j] - Y[i * n + j] * yd) / r);
    }
}

/* =============================================================================================
 * Reference-class logistic loss and prediction.
 * ============================================================================================= */

double FN(gmf_nn_refloss)(real *dH, double *lossv, const real *H, const uint8_t *y, double dscale,
                          size_t B, size_t L) {
    double total = 0.0;
    /* exp(h_l - mx), formed once for the sum and the softmax (the same values; up to EMAX logits,
     * so that the stack stays bounded: above it each is formed twice, as before) */
    enum { EMAX = 256 };
    double e[EMAX];
    const int keep = L <= EMAX;
    for (size_t i = 0; i < B; i++) {
        const real *h = H + i * L;
        double mx = 0.0; /* the reference logit 0 takes part in the max */
        for (size_t l = 0; l < L; l++)
            if (h[l] > mx) mx = h[l];
        double se = exp(-mx);
        for (size_t l = 0; l < L; l++) {
            const double el = exp((double)h[l] - mx);
            if (keep) e[l] = el;
            se += el;
        }
        const double lse = mx + log(se);
        const double li = lse - (y[i] ? (double)h[y[i] - 1] : 0.0);
        if (lossv) lossv[i] = li;
        total += li;
        if (dH)
            for (size_t l = 0; l < L; l++) /* softmax_l - 1{y = l} */
                dH[i * L + l] = (real)(dscale * ((keep ? e[l] : exp((double)h[l] - mx)) / se -
                                                 (y[i] == l + 1 ? 1.0 : 0.0)));
    }
    return total;
}

size_t FN(gmf_nn_predict)(uint8_t *pred, const real *H, const uint8_t *y, size_t B, size_t L) {
    size_t wrong = 0;
    for (size_t i = 0; i < B; i++) {
        const real *h = H + i * L;
        unsigned best = 0; /* class 0: the reference logit 0 */
        real bv = 0;
        for (size_t l = 0; l < L; l++) {
            if (h[l] != h[l]) { /* a NaN logit: no prediction (255), counted wrong */
                best = 255;
                break;
            }
            if (h[l] > bv) bv = h[l], best = (unsigned)(l + 1);
        }
        if (pred) pred[i] = (uint8_t)best;
        if (y && best != y[i]) wrong++;
    }
    return wrong;
}

/* =============================================================================================
 * Whole networks.
 * ============================================================================================= */

static void ws_release(ws_t *ws);

/* Fill the zeroed *ws (gmf_nn_ws_new); on failure everything it allocated is released again. */
static int ws_init(ws_t *ws, gmf_nn_model *m, size_t Bmax, int nthreads) {
    memset(ws, 0, sizeof *ws);
    if (Bmax == 0) return gmf_error(GMF_EINVAL, "workspace: batch size must be >= 1");
    /* every Bmax-sized product below (Bmax L, Bmax d, and the caches') fits size_t */
    if (cache_dims_check("workspace", Bmax, m->d, m->K > m->width ? m->K : m->width, m->L + m->Lmid,
                         m->rank))
        return GMF_EINVAL;
    if (nthreads < 1) nthreads = 1;
    ws->m = m;
    ws->Bmax = Bmax;
    ws->nthreads = nthreads;
    int fail = 0, rc = GMF_OK;
    ws->P = ralloc(m->nparams, &fail);
    ws->dP = ralloc(m->nparams, &fail);
    ws->gacc = calloc(m->nparams ? m->nparams : 1, sizeof(double));
    ws->H = ralloc(Bmax * m->L, &fail);
    ws->dH = ralloc(Bmax * m->L, &fail);
    ws->lossv = calloc(Bmax, sizeof(double));
    ws->Xb = ralloc(Bmax * m->d, &fail);
    ws->yb = calloc(Bmax, 1);
    if (!ws->gacc || !ws->lossv || !ws->yb) fail = 1;
    if (fail) {
        ws_release(ws);
        return gmf_error(GMF_ENOMEM, "workspace: out of memory");
    }
    switch (m->kind) {
    case GMF_NN_GM:
        rc = FN(gmf_nn_gm_cache_init)(&ws->gm1, Bmax, m->d, m->K, m->L);
        if (!rc) rc = gmf_nn_pool_new(&ws->pool, nthreads);
#if GM_KERN
        if (!rc && nthreads > 1 && GM_FWD_MT == 2) { /* gm_job_run: the private X^T copies */
            ws->xtp = ralloc((size_t)nthreads * gmf_nn_xt_size(Bmax, m->d), &fail);
            if (GM_GATHER_CONV == 2) ws->xp = ralloc((size_t)(nthreads - 1) * Bmax * m->d, &fail);
            if (GM_STEPS_MT) ws->xb2 = ralloc(Bmax * m->d, &fail); /* gm_steps_run */
            /* (and only where gmf_nn_kern_gm_gauss_cols's 32-bit lane offsets hold, 8 K (L + 1)
             * <= INT32_MAX, an assert there: a larger layer runs the two-barrier step) */
            if (GM_ONE_BARRIER && !GM_FWD_ROWS && GM_STEPS_MT && GM_GATHER_CONV == 2 &&
                nthreads == 2 && !fail && m->K <= (size_t)INT32_MAX / 8 / (m->L + 1)) {
                /* gm_step1b (the sizes checked against size_t: gm_1b_sizes_ok) */
                if (!gm_1b_sizes_ok(Bmax, m->K, m->L))
                    rc = gmf_error(GMF_ENOMEM, "workspace: 2-thread buffers overflow size_t");
                else {
                    ws->hp = aligned_alloc(64, 4 * gm_hp_stride(Bmax, m->L) * sizeof(double));
                    ws->obuf = aligned_alloc(64, 2 * gm_ob_size(Bmax, m->K, m->L));
                    if (!ws->hp || !ws->obuf) fail = 1;
                }
            }
            if (fail) rc = gmf_error(GMF_ENOMEM, "workspace: out of memory");
        }
        if (!rc && GM_GATHER_CONV) { /* gm_step: the staged bytes of a gathered batch */
            const size_t ns = nthreads > 1 && GM_GATHER_CONV == 2 && GM_FWD_MT == 2 ? nthreads : 1;
            /* one of each per thread, each on its own cache lines (the Bmax * d floats of Xb are
             * already allocated, so Bmax * d bytes cannot overflow; their ns copies can) */
            if (gm_sb_stride(Bmax, m->d) > SIZE_MAX / ns ||
                gm_ssc_stride(Bmax) > SIZE_MAX / sizeof(double) / ns)
                rc = gmf_error(GMF_ENOMEM, "workspace: staging buffers overflow size_t");
            else {
                ws->sb = aligned_alloc(64, ns * gm_sb_stride(Bmax, m->d));
                ws->ssc = aligned_alloc(64, ns * gm_ssc_stride(Bmax) * sizeof(double));
                if (!ws->sb || !ws->ssc) rc = gmf_error(GMF_ENOMEM, "workspace: out of memory");
            }
        }
#endif
        break;
    case GMF_NN_GMFULL:
        rc = FN(gmf_nn_gmfull_cache_init)(&ws->full, Bmax, m->d, m->K, m->L);
        break;
    case GMF_NN_GMLR:
        rc = FN(gmf_nn_gmlr_cache_init)(&ws->lr, Bmax, m->d, m->K, m->L, m->rank);
        if (!rc) rc = gmf_nn_pool_new(&ws->pool, nthreads);
        break;
    case GMF_NN_FC:
        rc = FN(gmf_nn_fc_cache_init)(&ws->fc, Bmax, m->d, m->width, m->L);
        break;
    case GMF_NN_GMSTACK:
        rc = FN(gmf_nn_gm_cache_init)(&ws->gm1, Bmax, m->d, m->K, m->Lmid);
        if (!rc) rc = FN(gmf_nn_gm_cache_init)(&ws->gm2, Bmax, m->Lmid, m->K, m->L);
        ws->Z1 = ralloc(Bmax * m->Lmid, &fail);
        ws->Y1 = ralloc(Bmax * m->Lmid, &fail);
        ws->dY1 = ralloc(Bmax * m->Lmid, &fail);
        ws->dZ1 = ralloc(Bmax * m->Lmid, &fail);
        ws->nrm = ralloc(Bmax, &fail);
        if (fail && !rc) rc = gmf_error(GMF_ENOMEM, "workspace: out of memory");
        break;
    default:
        rc = gmf_error(GMF_EINVAL, "workspace: unknown model kind %d", (int)m->kind);
    }
    if (rc) {
        ws_release(ws);
        return rc;
    }
    FN(gmf_nn_ws_load)(ws);
    return GMF_OK;
}

/* Free what ws_init allocated (any part of it) and zero *ws; not ws itself. */
static void ws_release(ws_t *ws) {
    if (ws->pool) gmf_nn_pool_free(ws->pool);
    free(ws->P), free(ws->dP), free(ws->gacc), free(ws->H), free(ws->dH), free(ws->lossv);
    free(ws->Xb), free(ws->yb), free(ws->xtp), free(ws->sb), free(ws->ssc), free(ws->xp);
    free(ws->xb2), free(ws->hp), free(ws->obuf);
    free(ws->Z1), free(ws->Y1), free(ws->dY1), free(ws->dZ1), free(ws->nrm);
    if (ws->gm1.muW) FN(gmf_nn_gm_cache_free)(&ws->gm1);
    if (ws->gm2.muW) FN(gmf_nn_gm_cache_free)(&ws->gm2);
    if (ws->full.a) FN(gmf_nn_gmfull_cache_free)(&ws->full);
    if (ws->lr.E) FN(gmf_nn_gmlr_cache_free)(&ws->lr);
    if (ws->fc.R) FN(gmf_nn_fc_cache_free)(&ws->fc);
    memset(ws, 0, sizeof *ws);
}

int FN(gmf_nn_ws_new)(ws_t **out, gmf_nn_model *m, size_t Bmax, int nthreads) {
    if (!out) return gmf_error(GMF_EINVAL, "workspace: no output pointer");
    *out = NULL;
    ws_t *ws = gmf_calloc(1, sizeof *ws, "workspace");
    if (!ws) return GMF_ENOMEM;
    const int rc = ws_init(ws, m, Bmax, nthreads);
    if (rc) {
        free(ws);
        return rc;
    }
    *out = ws;
    return GMF_OK;
}

void FN(gmf_nn_ws_free)(ws_t *ws) {
    if (!ws) return;
    ws_release(ws);
    free(ws);
}

const real *FN(gmf_nn_ws_grad)(const ws_t *ws) {
    return ws->dP;
}

double *FN(gmf_nn_ws_grad_acc)(ws_t *ws) {
    return ws->gacc;
}

real *FN(gmf_nn_ws_logits)(ws_t *ws) {
    return ws->H;
}

void FN(gmf_nn_ws_load)(ws_t *ws) {
    for (size_t j = 0; j < ws->m->nparams; j++)
        ws->P[j] = (real)ws->m->params[j];
    ws->prep_valid = 0;
}

void FN(gmf_nn_ws_store)(ws_t *ws) {
    for (size_t j = 0; j < ws->m->nparams; j++)
        ws->m->params[j] = (double)ws->P[j];
}

void FN(gmf_nn_ws_set_weight_rule)(ws_t *ws, gmf_nn_wgeom geom, int per_mass) {
    ws->wgeom = geom;
    ws->per_mass = per_mass != 0;
}

/* ---- the GM kind on the pool: thread t owns components [k0, k1) and rows [i0, i1) -----------
 * (On 2 threads the multi-step job on a byte data set with fixed weights instead runs
 * gm_step1b: components only, no rows split, one barrier per step; gm_steps_run's comment.)
 * Rows: the gather, X * X, the output sum H, the loss (and, with GM_FWD_ROWS = 1, the whole
 * forward pass); components: the forward products (GM_FWD_ROWS = 0, the default), the backward
 * products, the fused update and the parameter-derived cache.  One step is one pool job: the
 * start, barriers after the gather (not with GM_GATHER_CONV 2's per-thread staging of every
 * row) and after the forward (GM_FWD_ROWS = 0 only) and after the loss (dH of every row), the
 * end.  No sum crosses threads except the batch loss, which every
 * thread adds up in the same order.  The parameter-derived cache (sig2, muW, a) stays valid across
 * calls while P changes only through the fused SGD step, which refreshes it per component right
 * after updating it. */

typedef struct gm_job {
    ws_t *ws;
    real *H;
    const real *X;
    const uint8_t *y;
    size_t B;
    int mode;         /* 0 forward; 1 loss + gradient (dP, or gacc if accumulate); 2 SGD step */
    int accumulate;   /* mode 1 */
    double dscale;    /* modes 1, 2 */
    const double *lr; /* mode 2: per group */
    double loss;      /* modes 1, 2: sum of per-sample losses */
    /* optional gather: X = rows idx[0..B) of src (either form of gmf_dataset), y = its labels
     * (X and y then point at the workspace's batch buffers) */
    const gmf_dataset *src;
    const size_t *idx;
    /* a multi-step job (gm_steps_run; mode 2, src set): nsteps steps of B rows, step s on rows
     * idx[s B ..), losses[s] = its loss sum; done = the number of steps run */
    size_t nsteps, done;
    double *losses;
    /* set by gm_steps_run for its steps: the next step's rows (NULL for the last), which a thread
     * staging every row itself stages in the loss barrier's two halves; prestaged: this step's
     * rows were staged so in the step before */
    const size_t *next_idx;
    int prestaged;
} gm_job;

/* The gathers' look-ahead over random rows (idx): while row i of [i0, i1) is copied, the row
 * GATHER_AHEAD places on is requested (every cache line of it, the last one included when the
 * row does not start on a line, its label and its scale), so that its memory latency overlaps
 * this row's work (the hardware prefetcher cannot guess the next random row; sequential rows it
 * streams by itself). */
enum { GATHER_AHEAD = 4 };
static inline void gather_request(const gmf_dataset *src, const size_t *idx, size_t d, size_t i,
                                  size_t i1) {
    if (!idx || i + GATHER_AHEAD >= i1) return;
    const size_t rn = idx[i + GATHER_AHEAD];
    const size_t rowb = src->x ? d * sizeof(float) : d;
    const char *pn = src->x ? (const char *)(src->x + rn * d) : (const char *)(src->px + rn * d);
    for (size_t b = 0; b < rowb; b += 64)
        __builtin_prefetch(pn + b);
    __builtin_prefetch(pn + rowb - 1);
    __builtin_prefetch(src->label + rn);
    if (!src->x) __builtin_prefetch(src->scale + 2 * rn);
}

/* Rows [i0, i1) of a gathered batch: X[i] = (real) row r = idx[i] (idx NULL: r = first + i) of
 * src (gmf_dataset_row's floats, standardized here from the bytes in the compact form), y[i] =
 * its label. */
static void gather_rows_at(real *X, uint8_t *y, const gmf_dataset *src, const size_t *idx,
                           size_t first, size_t d, size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; i++) {
        gather_request(src, idx, d, i, i1);
        const size_t r = idx ? idx[i] : first + i;
        real *restrict dst = X + i * d;
        if (src->x) {
            const float *restrict row = src->x + r * d;
            for (size_t j = 0; j < d; j++)
                dst[j] = (real)row[j];
        } else {
            const uint8_t *restrict row = src->px + r * d;
            const double mean = src->scale[2 * r], inv = src->scale[2 * r + 1];
            if (sizeof(real) == sizeof(float)) /* float32: the vectorized helper, same values */
                gmf_dataset_u8_row((float *)dst, row, d, mean, inv);
            else
                for (size_t j = 0; j < d; j++)
                    dst[j] = (real)gmf_dataset_u8_value(row[j], mean, inv);
        }
        y[i] = src->label[r];
    }
}

static void gather_rows(real *X, uint8_t *y, const gmf_dataset *src, const size_t *idx, size_t d,
                        size_t i0, size_t i1) {
    gather_rows_at(X, y, src, idx, 0, d, i0, i1);
}

/* Rows [i0, i1) of a gathered batch of compact (byte) rows, staged: S[i d ..] = the bytes of row
 * r = idx[i], sc[2 i], sc[2 i + 1] = its mean and 1/sd, and y[i] = its label for the rows of
 * [y0, y1) only.  The same look-ahead (gather_request) as gather_rows_at.  GM_GATHER_CONV on 1
 * thread: every row and label; GM_GATHER_CONV 2 on more: every row [0, B) into the thread's OWN
 * buffer but only its rows' labels into the shared y (it alone reads them, in its rows' loss), so
 * that no staged byte crosses the cores and no barrier is needed after the gather. */
static void stage_rows(uint8_t *S, double *sc, uint8_t *y, const gmf_dataset *src,
                       const size_t *idx, size_t d, size_t i0, size_t i1, size_t y0, size_t y1) {
    for (size_t i = i0; i < i1; i++) {
        gather_request(src, idx, d, i, i1);
        const size_t r = idx ? idx[i] : i;
        memcpy(S + i * d, src->px + r * d, d);
        sc[2 * i] = src->scale[2 * r], sc[2 * i + 1] = src->scale[2 * r + 1];
        if (i >= y0 && i < y1) y[i] = src->label[r];
    }
}

/* acc[0..n) += (double) g[0..n) */
static void acc_add(double *restrict acc, const real *restrict g, size_t n) {
    for (size_t e = 0; e < n; e++)
        acc[e] += (double)g[e];
}

/* How the GM kind's forward pass is split over the pool's threads (docs/PERFORMANCE.md, "Two
 * threads for the GM trainer"): 0 = components (each thread its components for all rows, before
 * a barrier after the forward; a byte data set with GM_GATHER_CONV 2: each thread stages every
 * row itself, no barrier after the gather; otherwise one after the gather too), 1 = rows (each
 * thread its rows through all K components: two barriers less per step).  Components, with OpenBLAS
 * and with gm_kern.c alike: measured on 2 otherwise idle cores the rows split was 1.10x slower per
 * epoch with gm_kern.c (every step each thread reads the other's freshly updated half of [mu; W],
 * 313 KB from the other core's cache, and its update then invalidates the other's copy) and slower
 * with OpenBLAS too (its 32 x 200 x 784 SGEMM runs about 1.25x slower than 64 x 100 x 784).
 * -DGM_FWD_ROWS=1 selects rows for measurements; tests/test_nn_pool_split.c covers both.
 * (Defined at the top of this file: ws_init's allocations depend on it too.) */

/* The cache seen from batch row i0 on: its per-row arrays offset by i0 rows, so that the
 * component-range kernels (gm_fwd_part with B = a row count) work on rows [i0, i0 + B). */
static gm_cache gm_rows_view(const gm_cache *c, size_t d, size_t K, size_t L, size_t i0) {
    gm_cache v = *c;
    const size_t W = K * (L + 1);
    v.X2 += i0 * d, v.F += i0 * W, v.dF += i0 * W;
    v.xt0 += i0; /* X^T's columns (GM_KERN) */
    v.S2 += i0 * K, v.s += i0 * K, v.Phi += i0 * K, v.phi += i0 * K, v.A += i0 * K;
    v.dS2 += i0 * K;
    return v;
}

/* da for components [k0, k1) (unscaled, as gm_bwd_scalars leaves it): da_kl = sum_i A_ik dh_il
 * over all B rows in row order, the same operations as gm_bwd_scalars (bitwise its da).  For
 * the pool's scalars by rows (gm_job_run), where the row pass cannot sum over rows. */
static void gm_bwd_da(double *restrict da, const gm_cache *c, const real *restrict dH, size_t B,
                      size_t K, size_t L, size_t k0, size_t k1) {
    for (size_t e = 0; e < (k1 - k0) * L; e++)
        da[e] = 0.0;
    for (size_t i = 0; i < B; i++) {
        const real *restrict dh = dH + i * L;
        for (size_t k = k0; k < k1; k++) {
            const double A = c->A[i * K + k];
            double *restrict dak = da + (k - k0) * L;
            for (size_t l = 0; l < L; l++)
                dak[l] += A * dh[l];
        }
    }
}

/* The backward scalars by rows on more than one thread (GM_SCAL_ROWS, the default): with fixed
 * weights each thread forms dF and dS2 of its own rows for all K components right after its
 * rows' loss (no barrier added: the one after the loss is there anyway), reading only what it
 * wrote itself (A, Phi, phi, s, dH of its rows; F of its rows, read by its forward scalars
 * already); da then comes from gm_bwd_da by components.  By components instead (the thread's
 * components, every row) each thread read the other half of the rows' A, Phi, phi, s just
 * written by the other core, and ran 10 components as an 8-lane and a 2-lane chunk: on 2
 * threads that kernel took as long per thread as on 1 (docs/PERFORMANCE.md, "Two threads for
 * the GM trainer").  Learned weights (their gradient gw sums over rows) keep the components
 * split.  Bitwise the same results either way (each (row, component) pair's arithmetic is the
 * same; da sums in row order). */
#ifndef GM_SCAL_ROWS
#define GM_SCAL_ROWS 1
#endif

static void gm_fwd_gemm_nt(gm_cache *c, const real *X, size_t B, size_t d, size_t K, size_t L,
                           size_t k0, size_t k1) {
#if GM_KERN
    const size_t W = K * (L + 1), nk = k1 - k0;
    if (nk == 0) return;
    gmf_nn_kern_nt(B, nk * (L + 1), d, X, d, c->muW + k0 * (L + 1) * d, d, c->F + k0 * (L + 1), W,
                   0);
    gmf_nn_kern_nt(B, nk, d, X, d, c->sig2 + k0 * d, d, c->S2 + k0, K, 1);
#else
    gm_fwd_gemm(c, X, B, d, K, L, k0, k1);
#endif
}

/* GM_FWD_MT 2: thread t's copy of X^T (all B rows, xtp + t gmf_nn_xt_size(Bmax, d)), then its
 * components' products from it, as gm_fwd_gemm does from the shared X^T. */
static void gm_fwd_gemm_own(gm_cache *c, const real *X, size_t B, size_t d, size_t K, size_t L,
                            size_t k0, size_t k1, real *xtp, size_t t, int transpose) {
    if (k1 <= k0) return;
    gm_cache v = *c; /* the cache seen with this thread's X^T (the same F, S2, parameters) */
#if GM_KERN
    v.xtb = xtp + t * gmf_nn_xt_size(c->Bmax, d), v.xt0 = 0;
    if (transpose) gmf_nn_kern_xt_trans(d, X, d, 0, B, v.xtb);
#else
    (void)xtp, (void)t, (void)transpose;
#endif
    gm_fwd_gemm(&v, X, B, d, K, L, k0, k1);
}

/* Does each thread of the components split stage every row of job j's gather itself into its
 * own buffer (a byte data set, GM_GATHER_CONV 2 with the private X^T copies, more than one
 * thread)?  gm_step's `own`. */
static int gm_own_staging(const gm_job *j, int nt) {
    return GM_KERN && !GM_FWD_ROWS && GM_GATHER_CONV == 2 && GM_FWD_MT == 2 && nt > 1 && j->src &&
           !j->src->x;
}

/* The pieces gm_step and gm_step1b share (review s24 item 8: one copy each). */

#if GM_KERN
/* Thread t's own X (Xb for thread 0, ws->xp for the others: only t reads it) converted from its
 * staged bytes sb / ssc (all B rows), with X^T into xt; returns X. */
static inline real *gm_conv_own(ws_t *ws, int t, const uint8_t *sb, const double *ssc, size_t B,
                                size_t d, real *xt) {
    real *const X = t == 0 ? ws->Xb : ws->xp + (size_t)(t - 1) * ws->Bmax * d;
    gmf_nn_kern_xt_conv_u8(d, sb, d, ssc, 0, B, X, d, xt);
    return X;
}
#endif

/* Rows' loss terms lossv[0, n) and dH (logits H, labels y): 8 rows per zmm with libmvec's exp
 * and log where the build has the kernels and L fits (gm_gauss.c; lossv's last bits differ from
 * the C loop's), else gmf_nn_refloss. */
static inline void gm_loss_rows(real *dH, double *lossv, const real *H, const uint8_t *y,
                                double dscale, size_t n, size_t L) {
#if GM_KERN
    if (L <= GMF_NN_REFLOSS_LMAX) {
        gmf_nn_kern_refloss(dH, lossv, H, y, dscale, n, L);
        return;
    }
#endif
    FN(gmf_nn_refloss)(dH, lossv, H, y, dscale, n, L);
}

/* The batch loss: lossv summed in row order (every thread the same value). */
static inline double gm_loss_sum(const double *lossv, size_t B) {
    double loss = 0.0;
    for (size_t i = 0; i < B; i++)
        loss += lossv[i];
    return loss;
}

/* The loss barrier in two halves, with (stage set, a next step) the next step's rows staged in
 * between: into the thread's own buffer sb / ssc, labels of rows [y0, y1) into y (what the
 * callers' comments say nobody else reads). */
static inline void gm_barrier_staging(const gm_job *j, int stage, uint8_t *sb, double *ssc,
                                      uint8_t *y, size_t d, size_t y0, size_t y1) {
    const unsigned g = gmf_nn_pool_arrive(j->ws->pool);
    if (stage && j->next_idx) stage_rows(sb, ssc, y, j->src, j->next_idx, d, 0, j->B, y0, y1);
    gmf_nn_pool_await(j->ws->pool, g);
}

/* The backward of components [k0, k1) from their da: the fused kernel (products and parameter
 * pass in one, gm_bwd_fused) where it applies, else the products and the per-component pass;
 * lr set: the SGD step in place (dP unused), else the gradient into dP (the SGD step's mode 2
 * always has its rates: gm_step passes them as lr there, so that NULL means mode 0 or 1).  sc:
 * the components' shares (NULL: 1/K). */
static inline void gm_bwd_step(real *P, real *dP, gm_cache *c, const double *da, const double *sc,
                               const double *lr, const real *X, size_t B, size_t d, size_t K,
                               size_t L, size_t k0, size_t k1) {
    if (gm_bwd_fused(P, c, da, sc, lr, X, B, d, K, L, k0, k1)) return;
    gm_bwd_prod(c, X, B, d, K, L, k0, k1);
    for (size_t k = k0; k < k1; k++)
        gm_bwd_param1(P, lr ? NULL : dP, c, da + (k - k0) * L, sc ? sc[k] : 1.0 / (double)K, lr, d,
                      K, L, k);
}

/* One step of job j on thread t of nt (prep: the parameter-derived cache is to be prepared
 * first); gathers into j->X (the batch buffer) when j->src is set.  Returns the batch's loss sum
 * (every thread the same value; 0 in mode 0). */
static double gm_step(const gm_job *j, int t, int nt, int prep) {
    ws_t *ws = j->ws;
    real *const xg = (real *)j->X; /* the gather's target when j->src is set (Xb or xb2) */
    const gmf_nn_model *m = ws->m;
    gm_cache *c = &ws->gm1;
    const size_t d = m->d, K = m->K, L = m->L, B = j->B;
    const real *X = j->X; /* (with GM_GATHER_CONV: this thread's own copy, set below) */
    size_t k0, k1, i0, i1;
    gmf_nn_split(K, t, nt, &k0, &k1);
    gmf_nn_split(B, t, nt, &i0, &i1);
    /* more than one thread on a byte data set: every thread stages every row into its own
     * buffer, so that nothing before the forward barrier reads another thread's writes (no
     * gather barrier; gm_steps_run's comment) */
    const int own = gm_own_staging(j, nt);
    uint8_t *const sb = own ? ws->sb + (size_t)t * gm_sb_stride(ws->Bmax, d) : ws->sb;
    double *const ssc = own ? ws->ssc + (size_t)t * gm_ssc_stride(ws->Bmax) : ws->ssc;
    if (GM_FWD_ROWS) {
        /* rows split: this thread's rows through every component; it reads every component's
         * prepared blocks (a barrier when they are prepared here) but no other thread's rows */
        if (prep) {
            gm_prep(c, ws->P, d, K, L, k0, k1);
            gmf_nn_pool_barrier(ws->pool);
        }
        if (j->src) gather_rows(xg, ws->yb, j->src, j->idx, d, i0, i1);
        gm_square_rows(c, j->X, d, i0, i1);
        GMF_NN_PROF_MARK(t, 1);
        if (i1 > i0) {
            gm_cache rv = gm_rows_view(c, d, K, L, i0);
            gm_fwd_part(&rv, j->X + i0 * d, i1 - i0, d, K, L);
        }
    } else {
        /* components split: every row through this thread's components (after all rows are
         * gathered), then the rows' reduction over all components (after all are done) */
        if (prep) gm_prep(c, ws->P, d, K, L, k0, k1);
        const int fwd_mt = GM_KERN && nt > 1 ? GM_FWD_MT : 0; /* 1: nt on X, 2: own X^T */
        /* the staged gather (GM_GATHER_CONV): every thread its own X and X^T from the bytes */
        const int conv = GM_KERN && GM_GATHER_CONV && j->src && !j->src->x &&
                         (nt == 1 || (GM_GATHER_CONV == 2 && fwd_mt == 2));
        if (own) { /* (prestaged: in the step before, between the halves of its loss barrier) */
            if (!j->prestaged) stage_rows(sb, ssc, ws->yb, j->src, j->idx, d, 0, B, i0, i1);
        } else if (conv)
            stage_rows(sb, ssc, ws->yb, j->src, j->idx, d, i0, i1, i0, i1);
        else if (j->src)
            gather_rows(xg, ws->yb, j->src, j->idx, d, i0, i1);
        if (!fwd_mt && !conv) gm_square_rows(c, X, d, i0, i1);
        GMF_NN_PROF_MARK(t, 1);
        if (!own) gmf_nn_pool_barrier(ws->pool);
        GMF_NN_PROF_MARK(t, 2);
        if (conv) {
#if GM_KERN /* (X^T: the whole cache's when fwd_mt is 0, xt0 = 0) */
            X = gm_conv_own(ws, t, sb, ssc, B, d,
                            fwd_mt ? ws->xtp + (size_t)t * gmf_nn_xt_size(c->Bmax, d) : c->xtb);
#endif
            GMF_NN_PROF_MARK(t, 13);
        }
        if (fwd_mt == 1)
            gm_fwd_gemm_nt(c, X, B, d, K, L, k0, k1);
        else if (fwd_mt == 2)
            gm_fwd_gemm_own(c, X, B, d, K, L, k0, k1, ws->xtp, (size_t)t, !conv);
        else
            gm_fwd_gemm(c, X, B, d, K, L, k0, k1);
        GMF_NN_PROF_MARK(t, 12);
        gmf_nn_pool_barrier(ws->pool);
        gm_fwd_scalars(c, K, L, i0, i1); /* this thread's rows, every component */
    }
    GMF_NN_PROF_MARK(t, 3);
    if (c->learned)
        gm_reduce_rows_w(j->H, c, K, L, i0, i1);
    else
        gm_reduce_rows(j->H, c, K, L, i0, i1);
    if (j->mode == 0) return 0.0;
    gm_loss_rows(ws->dH + i0 * L, ws->lossv + i0, j->H + i0 * L, j->y + i0, j->dscale, i1 - i0, L);
    const int scal_rows = GM_SCAL_ROWS && nt > 1 && !c->learned;
    if (scal_rows && i1 > i0) {
        gm_cache rv = gm_rows_view(c, d, K, L, i0);
        double da_rows[K * L]; /* (this thread's rows only: discarded, gm_bwd_da below) */
        gm_bwd_scalars(&rv, da_rows, NULL, NULL, ws->dH + i0 * L, i1 - i0, K, L, 0, K);
    }
    GMF_NN_PROF_MARK(t, 5);
    /* the loss barrier in two halves: a thread staging every row itself stages the next step's
     * rows in between (its own buffer, its own rows' labels: nothing another thread reads; the
     * step's conversion that read the buffer is done), so that it works while it would wait for
     * the others' by-rows phase (gm_steps_run's comment) */
    gm_barrier_staging(j, own, sb, ssc, ws->yb, d, i0, i1);
    GMF_NN_PROF_MARK(t, 6);
    /* every thread sums the per-sample losses in the same order: the same value everywhere */
    const double loss = gm_loss_sum(ws->lossv, B);
    if (!isfinite(loss) || k1 <= k0) return loss;
    double da[(k1 - k0) * L];
    /* learned weights: component k's share is w_k (the gradient); the per-mass SGD step uses
     * 1/K instead, i.e. the rate lr / (K w_k) on the gradient (docs/TRAINING.md) */
    const double *sc = c->learned && !(j->mode == 2 && ws->per_mass) ? c->w : NULL;
    if (scal_rows) /* dF and dS2 formed by rows before the barrier: only da is left */
        gm_bwd_da(da, c, ws->dH, B, K, L, k0, k1);
    else
        gm_bwd_scalars(c, da, sc, c->learned ? c->gw : NULL, ws->dH, B, K, L, k0, k1);
    GMF_NN_PROF_MARK(t, 7);
    if (gmf_nn_test_delay_tid == t) gmf_nn_test_delay(); /* (tests only: nn_internal.h) */
    /* the fused step: products and parameter pass in one kernel (gm_bwd_fused); else both */
    gm_bwd_step(ws->P, ws->dP, c, da, sc, j->mode == 2 ? j->lr : NULL, X, B, d, K, L, k0, k1);
    GMF_NN_PROF_MARK(t, 8);
    if (j->mode == 1 && j->accumulate) { /* this thread's components of every block */
        const gm_params g = gm_comp(FN(gmf_nn_gm_view)(ws->dP, d, K, L, 0), d, L, k0);
        const gmf_nn_gm_params_d a = gmf_nn_gm_view_d(ws->gacc, d, K, L, 0);
        const size_t nk = k1 - k0;
        acc_add(a.mu + k0 * d, g.mu, nk * d);
        acc_add(a.sigma + k0 * d, g.sigma, nk * d);
        acc_add(a.U + k0 * L * d, g.U, nk * L * d);
        acc_add(a.v + k0 * L, g.v, nk * L);
    }
    return loss;
}

#if GM_KERN
/* Thread t's private per-step arrays in ws->obuf (gm_step1b): the per-row arrays of the GM cache
 * (F, dF, S2, s, Phi, phi, A, dS2: only its components' columns are used), its H, dH and lossv of
 * every row, and the labels of every row for the steps of each parity. */
typedef struct {
    real *F, *dF, *S2, *s, *Phi, *phi, *A, *dS2, *H, *dH;
    double *lossv;
    uint8_t *y[2];
} gm_ob;

static gm_ob gm_ob_view(const ws_t *ws, int t) {
    const size_t Bmax = ws->Bmax, K = ws->m->K, L = ws->m->L, W = K * (L + 1);
    unsigned char *b = ws->obuf + (size_t)t * gm_ob_size(Bmax, K, L);
    gm_ob o;
    real **rk[6] = {&o.S2, &o.s, &o.Phi, &o.phi, &o.A, &o.dS2};
    o.F = (real *)b, b += gm_ob_al(Bmax * W * sizeof(real));
    o.dF = (real *)b, b += gm_ob_al(Bmax * W * sizeof(real));
    for (int q = 0; q < 6; q++)
        *rk[q] = (real *)b, b += gm_ob_al(Bmax * K * sizeof(real));
    o.H = (real *)b, b += gm_ob_al(Bmax * L * sizeof(real));
    o.dH = (real *)b, b += gm_ob_al(Bmax * L * sizeof(real));
    o.lossv = (double *)b, b += gm_ob_al(Bmax * sizeof(double));
    o.y[0] = b, b += gm_ob_al(Bmax);
    o.y[1] = b;
    return o;
}

/* One step of the multi-step job j on thread t of 2 with one barrier (GM_ONE_BARRIER; fixed
 * weights, a byte data set, mode 2); par = the step's parity (s % 2).  Thread t owns components
 * [k0, k1) = gmf_nn_split(K, t, 2) and runs them through the whole step on every row:
 *   1. stages every row into its own buffer with every label into its own y[par] (prestaged: in
 *      the step before, inside the barrier), converts them into its own X and X^T;
 *   2. its components' forward products into its private F and S2;
 *   3. their Gaussian scalars, every row (gmf_nn_kern_gm_gauss_cols: bitwise the flat kernel);
 *   4. its partial output sum S_t = sum over its k of A_ik a_k + Phi_ik G_ik, in double, into the
 *      shared hp block [par][t];
 *   5. the one barrier (staging the next step's rows between its halves);
 *   6. H = (real)(inv (S_0 + S_1)) of every row (bitwise gm_reduce_rows, which sums the same
 *      halves), the loss and dH of every row into its private H, dH, lossv (both threads form
 *      the same values; two threads writing one shared copy would still be a data race), the
 *      loss sum in row order;
 *   7. its components' backward scalars (and da) from its private arrays and dH, then the fused
 *      backward as gm_step.
 * Every operation per value is that of gm_step's: bitwise the same parameters and losses. */
static double gm_step1b(const gm_job *j, int t, int prep, int par) {
    ws_t *ws = j->ws;
    const gmf_nn_model *m = ws->m;
    gm_cache *c = &ws->gm1;
    const size_t d = m->d, K = m->K, L = m->L, B = j->B;
    size_t k0, k1;
    gmf_nn_split(K, t, 2, &k0, &k1);
    const gm_ob o = gm_ob_view(ws, t);
    gm_cache v = *c; /* the cache with this thread's private per-row arrays */
    v.F = o.F, v.dF = o.dF, v.S2 = o.S2, v.s = o.s, v.Phi = o.Phi, v.phi = o.phi, v.A = o.A;
    v.dS2 = o.dS2;
    uint8_t *const sb = ws->sb + (size_t)t * gm_sb_stride(ws->Bmax, d);
    double *const ssc = ws->ssc + (size_t)t * gm_ssc_stride(ws->Bmax);
    const size_t hps = gm_hp_stride(ws->Bmax, L);
    if (prep) gm_prep(c, ws->P, d, K, L, k0, k1);
    if (!j->prestaged) stage_rows(sb, ssc, o.y[par], j->src, j->idx, d, 0, B, 0, B);
    GMF_NN_PROF_MARK(t, 1);
    const real *const X =
        gm_conv_own(ws, t, sb, ssc, B, d, ws->xtp + (size_t)t * gmf_nn_xt_size(c->Bmax, d));
    GMF_NN_PROF_MARK(t, 13);
    gm_fwd_gemm_own(&v, X, B, d, K, L, k0, k1, ws->xtp, (size_t)t, 0);
    GMF_NN_PROF_MARK(t, 12);
    gmf_nn_kern_gm_gauss_cols(B, K, k0, k1, L, v.F, v.S2, v.s, v.Phi, v.phi, v.A);
    gmf_nn_kern_gm_reduce_part(ws->hp + (size_t)(2 * par + t) * hps, v.A, v.Phi, v.a, v.F, K, L, k0,
                               k1, 0, B);
    GMF_NN_PROF_MARK(t, 3);
    /* the barrier in two halves: the next step's rows staged in between (this thread's buffer,
     * read by this step's conversion only; every label, into the other parity's y) */
    gm_barrier_staging(j, 1, sb, ssc, o.y[!par], d, 0, B);
    GMF_NN_PROF_MARK(t, 6);
    /* (tests only, nn_internal.h: here, before the reads of hp, a held-back thread lets the other
     * run into the next step's writes of hp, which parity keeps in the other block) */
    if (gmf_nn_test_delay_tid == t) gmf_nn_test_delay();
    {
        const double *restrict h0 = ws->hp + (size_t)(2 * par) * hps, *restrict h1 = h0 + hps;
        const double inv = 1.0 / (double)K;
        for (size_t e = 0; e < B * L; e++)
            o.H[e] = (real)(inv * (h0[e] + h1[e])); /* as gmf_nn_kern_gm_reduce_rows */
    }
    gm_loss_rows(o.dH, o.lossv, o.H, o.y[par], j->dscale, B, L);
    const double loss = gm_loss_sum(o.lossv, B); /* (as gm_step: the same on both threads) */
    GMF_NN_PROF_MARK(t, 5);
    if (!isfinite(loss) || k1 <= k0) return loss;
    double da[(k1 - k0) * L];
    gm_bwd_scalars(&v, da, NULL, NULL, o.dH, B, K, L, k0, k1);
    GMF_NN_PROF_MARK(t, 7);
    gm_bwd_step(ws->P, NULL, &v, da, NULL, j->lr, X, B, d, K, L, k0, k1);
    GMF_NN_PROF_MARK(t, 8);
    return loss;
}
#endif

/* A multi-step job (j->nsteps > 0; sgd_steps_ds decides when): the steps run one after the other
 * inside ONE pool job.  Per step the threads then cross two barriers on a byte data set
 * (GM_GATHER_CONV 2: after the forward products and after the loss) and three on a float one
 * (after the gather too) instead of five (the job's start and end as well), the calling
 * thread's serial part between steps disappears, and a thread that finishes its backward early
 * goes on with the next batch's gather, conversion and forward products instead of waiting.
 *
 * Why no barrier is needed before step s + 1's forward barrier on a byte data set: every thread
 * t has passed step s's loss barrier, but the others may still be anywhere in step s's
 * backward, where they read the loss terms (lossv), A and dH of every row (gm_bwd_da), dF and
 * dS2 of their own components, their own X, and their own components' parameters and cache
 * (gm_bwd_fused / gmf_nn_kern_tn_update; they write P, sig2, muW and a of their components
 * only).  What t writes in step s + 1 before that barrier:
 *   - its staging buffer, its X (Xb for thread 0, ws->xp for the others) and its X^T (xtp):
 *     private, no other thread reads them;
 *   - yb of its own rows: only t reads them (its rows' loss);
 *   - F and S2 in its own components' columns (the forward products, reading only its
 *     components' sig2 and muW, which it refreshed itself): the others read F and S2 of every
 *     component for their rows in step s's by-rows phase only -- the Gaussian scalars
 *     (gm_fwd_scalars), the output sum (G in gm_reduce_rows) and the backward scalars by rows
 *     (gm_bwd_scalars; the multi-step job runs with fixed weights only, sgd_steps_ds, so
 *     scal_rows applies) -- all before the loss barrier, and never after it;
 *   - (the first step only: the parameter-derived cache of its components, before any step.)
 * Everything else step s + 1 writes (s, Phi, phi, A, H, dH, lossv, dF, dS2, the parameters)
 * comes after its forward barrier, which no thread passes before every thread has finished step
 * s.  On a float data set (and GM_GATHER_CONV 0 or 1) the gather writes the thread's rows of a
 * shared X, which the others still read in step s's backward, so X alternates between Xb and
 * xb2 and the gather barrier stays; its own labels only it reads.  Tested by
 * tests/test_nn_pool_split.c's steps cases (bitwise against single steps, uneven_steps_case:
 * one thread runs ahead into the next gather, by chance and then, through nn_internal.h's test
 * hook, every step): every thread converting into Xb fails 77-81 checks there, all 30 held-back
 * cases in every run, and TSan reports the race; each thread staging only its rows into one
 * shared buffer without the gather barrier failed 104-108.  (TSan does not see the AVX-512
 * kernels' masked loads and stores: the held-back cases are the check that does not depend on
 * it.)  Each step's operations are those of a one-step job: bitwise the same parameters and
 * losses.
 *
 * On exactly 2 threads with a byte data set and fixed weights (GM_ONE_BARRIER, the default) the
 * steps are gm_step1b's instead: ONE barrier per step.  What crosses threads: only the partial
 * output sums hp (block [par][t], par = s % 2: thread t writes its block of parity s % 2 before
 * step s's barrier, both threads read both blocks of that parity after it).  Everything else is
 * private to its thread -- its staging buffer, labels (y[0], y[1]), X, X^T, the per-row arrays
 * F, S2, s, Phi, phi, A, dF, dS2 (ws->obuf: read and written by their owner only, so that no
 * cache line is written by both cores either), H, dH, lossv -- or its components' own
 * parameters and cache (P, sig2, muW, a: written by the owner's fused update, read by its
 * forward, prep and reduce only).  Not a race but false sharing: the K x L blocks a (the cache) and
 * v (in P) are split between the threads at component K/2, and with K L floats per block that
 * boundary can fall inside a cache line (K = 20, L = 9: at float 90 of each), so both cores' fused
 * updates write their own entries of the same line of a and of v every step.  Why parity
 * double-buffering of hp suffices: thread u reads hp[s % 2][t] after passing barrier s and before
 * arriving at barrier s + 1 (the reads come before its backward); t writes hp[s % 2][t] next in
 * step s + 2, after passing barrier s + 1, which it cannot pass before u has arrived there, i.e.
 * after u's reads of step s.  Its write of
 * step s + 1 goes to the other block, which u last read in step s - 1, before arriving at
 * barrier s, which t passed before starting step s + 1.  One block per thread only (no parity)
 * would let t, leaving step s's backward first, overwrite its sum with step s + 1's while u
 * still reads step s's.  Tested by tests/test_nn_pool_split.c's steps cases on 2 threads
 * (uneven_steps_case(20, 2): the test hook holds a thread right after the barrier, before its
 * reads of hp, so that the other runs into the next step's write of hp every step): with hp
 * single-buffered (broken on purpose) that case failed 6 of its 24 checks (the float32 losses
 * and parameters, held back or not) in 2 of 2 runs; the whole test failed its first 2-thread
 * steps case already and then hung, the threads disagreeing on the loss's finiteness.  The labels
 * of step s + 1 are staged inside step s's barrier into the other parity's y, since step s's loss
 * still reads y[s % 2] after it. */
static void gm_steps_run(gm_job *j, int t, int nt) {
    int prep = !j->ws->prep_valid;
    /* this thread's copy, made once: thread 0 writes j->done and j->losses after every step,
     * unordered against the other threads, so no thread may read *j whole after the start */
    gm_job js = *j;
    /* (and every per-step value from that copy: j->done shares a cache line with j->idx, j->B
     * and j->ws, so reading those through j would fetch the line thread 0 has just written) */
    const size_t nsteps = js.nsteps, B = js.B;
    const size_t *const idx = js.idx;
    real *const xa = js.ws->Xb, *const xb = js.ws->xb2;
    double *const losses = js.losses;
#if GM_KERN /* gm_step1b where it applies (GM_ONE_BARRIER allocated ws->hp: 2 threads) */
    const int one =
        nt == 2 && js.ws->hp && gm_own_staging(&js, nt) && !js.ws->gm1.learned && js.mode == 2;
#endif
    for (size_t s = 0; s < nsteps; s++) {
        js.idx = idx + s * B;
        js.next_idx = s + 1 < nsteps ? idx + (s + 1) * B : NULL;
        js.prestaged = s > 0;
        js.X = s % 2 ? xb : xa;
#if GM_KERN
        const double loss = one ? gm_step1b(&js, t, prep, (int)(s % 2)) : gm_step(&js, t, nt, prep);
#else
        const double loss = gm_step(&js, t, nt, prep);
#endif
        prep = 0;
        if (t == 0) losses[s] = loss, j->done = s + 1;
        if (!isfinite(loss)) return; /* (every thread: the same sum) */
    }
}

static void gm_job_run(void *vctx, int t, int nt) {
    gm_job *j = vctx;
    if (j->nsteps) {
        gm_steps_run(j, t, nt);
        return;
    }
    const double loss = gm_step(j, t, nt, !j->ws->prep_valid);
    if (t == 0) j->loss = loss;
}

/* The pool owns the parallelism of the GM kind: OpenBLAS runs single-threaded inside it; the other
 * kinds give OpenBLAS the workspace's thread count. */
static void blas_threads(const ws_t *ws) {
    gmf_nn_blas_threads(ws->m->kind == GMF_NN_GM || ws->m->kind == GMF_NN_GMLR ? 1 : ws->nthreads);
}

/* After a job of mode 1 or 2 with learned weights and a finite loss (the threads have left
 * g_k = dL/dw_k in gm1.gw): the logits' gradient w_k (g_k - gbar) into dP (and gacc), or their
 * SGD step -- euclid: a -= lr w_k (g_k - gbar); fr: a -= lr (g_k - gbar). */
static void gm_logits_finish(ws_t *ws, const gm_job *j) {
    const gm_cache *c = &ws->gm1;
    const int g = gmf_nn_model_logits_group(ws->m, 1);
    if (!c->learned || j->mode == 0 || !isfinite(j->loss) || g < 0) return;
    const size_t K = ws->m->K, off = ws->m->group[g].off;
    if (j->mode == 1) {
        mix_logit_grad(ws->dP + off, c->w, c->gw, K);
        if (j->accumulate) acc_add(ws->gacc + off, ws->dP + off, K);
        return;
    }
    const real r = sgd_rate(j->lr[g]);
    if (r == 0) return;
    const double gbar = mix_mean(c->w, c->gw, K);
    real *a = ws->P + off;
    for (size_t k = 0; k < K; k++) {
        const double fr = c->gw[k] - gbar;
        a[k] = sgd_step1(a[k], (real)(ws->wgeom == GMF_NN_WGEOM_FR ? fr : c->w[k] * fr), r);
    }
}

/* Run job j on the pool, then the logits' part (learned weights). */
static void gm_run(ws_t *ws, gm_job *j) {
    gm_cache *c = &ws->gm1;
    mix_weights(&c->learned, c->w, FN(gmf_nn_net_view)(ws->m, ws->P).gm[0].a, ws->m->K);
    XT_SELECT(c, c->dmuW, ws->m->K * (ws->m->L + 1), j->B);
    gmf_nn_pool_run(ws->pool, gm_job_run, j);
    gm_logits_finish(ws, j);
    ws->prep_valid = 1; /* prepared by the job, and refreshed by a step's updates */
}

static double gm_pool_run(ws_t *ws, real *H, const real *X, const uint8_t *y, size_t B, int mode,
                          int accumulate, double dscale, const double *lr) {
    gm_job j = {.ws = ws,
                .H = H,
                .X = X,
                .y = y,
                .B = B,
                .mode = mode,
                .accumulate = accumulate,
                .dscale = dscale,
                .lr = lr,
                .loss = 0.0};
    gm_run(ws, &j);
    return j.loss;
}

/* ---- the gm-lowrank kind on the pool: as the GM kind (thread t owns components [k0, k1) and rows
 * [i0, i1)), the step fused the same way (lr_bwd_param1), so a step equals loss_grad + apply
 * bitwise; the parameter-derived cache is refreshed per component for the next forward pass. */

static void lr_job_run(void *vctx, int t, int nt) {
    gm_job *j = vctx;
    ws_t *ws = j->ws;
    const gmf_nn_model *m = ws->m;
    lr_cache *c = &ws->lr;
    const size_t d = m->d, K = m->K, L = m->L, r = m->rank, B = j->B;
    size_t k0, k1, i0, i1;
    gmf_nn_split(K, t, nt, &k0, &k1);
    gmf_nn_split(B, t, nt, &i0, &i1);
    if (!ws->prep_valid) lr_prep(c, ws->P, d, K, L, r, k0, k1);
    if (j->src) gather_rows(ws->Xb, ws->yb, j->src, j->idx, d, i0, i1);
    lr_square_rows(c, j->X, d, i0, i1);
    gmf_nn_pool_barrier(ws->pool);
    lr_fwd_part(c, j->X, B, d, K, L, r, k0, k1);
    gmf_nn_pool_barrier(ws->pool);
    lr_reduce_rows(j->H, c, K, L, r, i0, i1);
    if (j->mode == 0) return;
    FN(gmf_nn_refloss)
    (ws->dH + i0 * L, ws->lossv + i0, j->H + i0 * L, j->y + i0, j->dscale, i1 - i0, L);
    gmf_nn_pool_barrier(ws->pool);
    double loss = 0.0; /* every thread sums in the same order */
    for (size_t i = 0; i < B; i++)
        loss += ws->lossv[i];
    if (t == 0) j->loss = loss;
    if (!isfinite(loss) || k1 <= k0) return;
    lr_bwd_part(ws->P, ws->dP, c, ws->dH, j->X, j->mode == 2 ? j->lr : NULL, B, d, K, L, r, k0, k1);
}

/* Run the gm-lowrank job (modes of gm_job); with accumulate, gacc += dP afterwards. */
static double lr_pool_run(gm_job *j) {
    ws_t *ws = j->ws;
    lr_cache *c = &ws->lr;
    XT_SELECT(c, c->dE, ws->m->K * (ws->m->L + 1 + ws->m->rank), j->B);
    gmf_nn_pool_run(ws->pool, lr_job_run, j);
    ws->prep_valid = 1;
    if (j->mode == 1 && j->accumulate && isfinite(j->loss))
        acc_add(ws->gacc, ws->dP, ws->m->nparams);
    return j->loss;
}

void FN(gmf_nn_forward)(real *H, ws_t *ws, const real *X, size_t B) {
    const gmf_nn_model *m = ws->m;
    blas_threads(ws);
    const real *P = ws->P;
    switch (m->kind) {
    case GMF_NN_GM:
        gm_pool_run(ws, H, X, NULL, B, 0, 0, 0.0, NULL);
        break;
    case GMF_NN_GMLR: {
        gm_job j = {.ws = ws, .H = H, .X = X, .B = B, .mode = 0};
        lr_pool_run(&j);
        break;
    }
    case GMF_NN_GMFULL:
        FN(gmf_nn_gmfull_forward_w)
        (H, &ws->full, X, P, FN(gmf_nn_net_view)(m, ws->P).gm[0].a, B, m->d, m->K, m->L);
        break;
    case GMF_NN_FC:
        FN(gmf_nn_fc_forward)(H, &ws->fc, X, P, (real)m->fc_scale, B, m->d, m->width, m->L);
        break;
    case GMF_NN_GMSTACK: {
        const net_params p = FN(gmf_nn_net_view)(m, ws->P);
        FN(gmf_nn_gm_forward_w)(ws->Z1, &ws->gm1, X, p.gm[0].mu, p.gm[0].a, B, m->d, m->K, m->Lmid);
        FN(gmf_nn_unitnorm_forward)(ws->Y1, ws->nrm, ws->Z1, B, m->Lmid);
        FN(gmf_nn_gm_forward_w)(H, &ws->gm2, ws->Y1, p.gm[1].mu, p.gm[1].a, B, m->Lmid, m->K, m->L);
        break;
    }
    }
}

/* Backward of the whole network from ws->dH into dP (after gmf_nn_forward into ws->H). */
static void net_backward(ws_t *ws, real *dP, const real *X, size_t B) {
    const gmf_nn_model *m = ws->m;
    const real *P = ws->P;
    switch (m->kind) {
    case GMF_NN_GM: /* handled by the pool */
    case GMF_NN_GMLR:
        break;
    case GMF_NN_GMFULL:
        FN(gmf_nn_gmfull_backward_w)
        (dP, FN(gmf_nn_net_view)(m, dP).gm[0].a, NULL, &ws->full, ws->dH, X, P, B, m->d, m->K,
         m->L);
        break;
    case GMF_NN_FC:
        FN(gmf_nn_fc_backward)
        (dP, NULL, &ws->fc, ws->dH, X, P, (real)m->fc_scale, B, m->d, m->width, m->L);
        break;
    case GMF_NN_GMSTACK: {
        const net_params p = FN(gmf_nn_net_view)(m, ws->P), g = FN(gmf_nn_net_view)(m, dP);
        /* layer 2 (input Y1), then the normalization, then layer 1 */
        FN(gmf_nn_gm_backward_w)
        (g.gm[1].mu, g.gm[1].a, ws->dY1, &ws->gm2, ws->dH, ws->Y1, p.gm[1].mu, B, m->Lmid, m->K,
         m->L);
        FN(gmf_nn_unitnorm_backward)(ws->dZ1, ws->dY1, ws->Y1, ws->nrm, B, m->Lmid);
        FN(gmf_nn_gm_backward_w)
        (g.gm[0].mu, g.gm[0].a, NULL, &ws->gm1, ws->dZ1, X, p.gm[0].mu, B, m->d, m->K, m->Lmid);
        break;
    }
    }
}

double FN(gmf_nn_loss_grad)(ws_t *ws, const real *X, const uint8_t *y, size_t B, double dscale,
                            int accumulate) {
    const gmf_nn_model *m = ws->m;
    blas_threads(ws);
    if (m->kind == GMF_NN_GM) return gm_pool_run(ws, ws->H, X, y, B, 1, accumulate, dscale, NULL);
    if (m->kind == GMF_NN_GMLR) {
        gm_job j = {.ws = ws, .H = ws->H, .X = X, .y = y, .B = B, .mode = 1};
        j.accumulate = accumulate, j.dscale = dscale;
        return lr_pool_run(&j);
    }
    FN(gmf_nn_forward)(ws->H, ws, X, B);
    double loss = FN(gmf_nn_refloss)(ws->dH, ws->lossv, ws->H, y, dscale, B, m->L);
    if (!isfinite(loss)) return loss;
    net_backward(ws, ws->dP, X, B);
    if (accumulate)
        for (size_t e = 0; e < m->nparams; e++)
            ws->gacc[e] += (double)ws->dP[e];
    return loss;
}

/* The learned weights w = softmax(a) of GM layer `layer` at P (NULL: fixed weights), formed
 * into the layer's cache: the values of the forward pass that gave the gradient, since P has not
 * changed since (also on an MPI rank that had no rows of the batch and ran no forward pass). */
static const double *layer_weights(ws_t *ws, int layer) {
    const gmf_nn_model *m = ws->m;
    if (m->weights != GMF_NN_WEIGHTS_LEARNED) return NULL;
    const real *logit = FN(gmf_nn_net_view)(m, ws->P).gm[layer == 2].a;
    int *learned = m->kind == GMF_NN_GMFULL ? &ws->full.learned
                   : layer == 2             ? &ws->gm2.learned
                                            : &ws->gm1.learned;
    double *w = m->kind == GMF_NN_GMFULL ? ws->full.w : layer == 2 ? ws->gm2.w : ws->gm1.w;
    mix_weights(learned, w, logit, m->K);
    return logit ? w : NULL;
}

/* Group g's update with a per-component rate lr s_k, s_k = 1 / w_k (the fr step of the logits:
 * dL/da_k / w_k = g_k - gbar) or 1 / (K w_k) (per-mass transport); a component of weight 0 (an
 * underflow of exp) is left unchanged (its gradient is 0). */
static void sgd_apply_scaled(ws_t *ws, const gmf_nn_group *gr, double lr, const double *w,
                             int from_acc) {
    const size_t K = ws->m->K, nk = gr->n / K;
    for (size_t k = 0; k < K; k++) {
        if (!(w[k] > 0.0)) continue;
        const double rk = lr / (gr->logits ? w[k] : (double)K * w[k]);
        const size_t off = gr->off + k * nk;
        if (from_acc)
            sgd_update_acc(nk, ws->P + off, ws->gacc + off, rk);
        else
            sgd_update(nk, ws->P + off, ws->dP + off, rk);
    }
}

void FN(gmf_nn_sgd_apply)(ws_t *ws, const double *lr, int from_acc) {
    const gmf_nn_model *m = ws->m;
    const int fr = ws->wgeom == GMF_NN_WGEOM_FR;
    const double *wl[2] = {NULL, NULL}; /* the weights at P, before any group is updated */
    if (m->weights == GMF_NN_WEIGHTS_LEARNED && (fr || ws->per_mass))
        for (int l = 1; l <= 2; l++)
            if (gmf_nn_model_logits_group(m, l) >= 0) wl[l - 1] = layer_weights(ws, l);
    for (size_t g = 0; g < m->ngroups; g++) {
        const size_t off = m->group[g].off, n = m->group[g].n;
        const gmf_nn_group *gr = &m->group[g];
        const int scaled = gr->logits ? fr : ws->per_mass;
        const double *w = scaled && gr->layer >= 1 && gr->layer <= 2 ? wl[gr->layer - 1] : NULL;
        if (w && lr[g] != 0.0)
            sgd_apply_scaled(ws, gr, lr[g], w, from_acc);
        else if (from_acc)
            sgd_update_acc(n, ws->P + off, ws->gacc + off, lr[g]);
        else
            sgd_update(n, ws->P + off, ws->dP + off, lr[g]);
    }
    if (from_acc) memset(ws->gacc, 0, m->nparams * sizeof(double));
    ws->prep_valid = 0;
}

/* The pool job of an SGD step on rows idx of ds (gathered into ws->Xb, ws->yb by the job). */
static gm_job sgd_job_ds(ws_t *ws, const gmf_dataset *ds, const size_t *idx, size_t B,
                         const double *lr) {
    return (gm_job){.ws = ws,
                    .H = ws->H,
                    .X = ws->Xb,
                    .y = ws->yb,
                    .B = B,
                    .mode = 2,
                    .dscale = 1.0 / (double)B,
                    .lr = lr,
                    .src = ds,
                    .idx = idx};
}

/* gmf_nn_sgd_step_rows from either form of a data set (the trainer's path). */
static double sgd_step_ds(ws_t *ws, const gmf_dataset *ds, const size_t *idx, size_t B,
                          const double *lr) {
    const gmf_nn_model *m = ws->m;
    blas_threads(ws);
    if (m->kind != GMF_NN_GM && m->kind != GMF_NN_GMLR) {
        gather_rows(ws->Xb, ws->yb, ds, idx, m->d, 0, B);
        return FN(gmf_nn_sgd_step)(ws, ws->Xb, ws->yb, B, lr);
    }
    gm_job j = sgd_job_ds(ws, ds, idx, B, lr);
    if (m->kind == GMF_NN_GMLR) return lr_pool_run(&j) / (double)B;
    gm_run(ws, &j);
    return j.loss / (double)B;
}

/* nsteps steps of sgd_step_ds (ops.sgd_steps_ds): losses[s] = step s's mean loss; stops after a
 * non-finite one; returns the number of steps run.  One pool job for all of them where
 * gm_steps_run applies (its comment), else one call per step; the same results either way. */
static size_t sgd_steps_ds(ws_t *ws, const gmf_dataset *ds, const size_t *idx, size_t B,
                           size_t nsteps, const double *lr, double *losses) {
#if GM_KERN && GM_STEPS_MT && !GM_FWD_ROWS && GM_FWD_MT != 0
    const gmf_nn_model *m = ws->m;
    if (m->kind == GMF_NN_GM && ws->nthreads > 1 && ws->xb2 && nsteps > 1 && B <= ws->Bmax) {
        gm_cache *c = &ws->gm1;
        blas_threads(ws);
        mix_weights(&c->learned, c->w, FN(gmf_nn_net_view)(m, ws->P).gm[0].a, m->K);
        if (!c->learned) { /* (learned weights: the logits' step between steps, gm_run) */
            gm_job j = sgd_job_ds(ws, ds, idx, B, lr);
            j.nsteps = nsteps, j.losses = losses;
            XT_SELECT(c, c->dmuW, m->K * (m->L + 1), B);
            gmf_nn_pool_run(ws->pool, gm_job_run, &j);
            ws->prep_valid = 1;
            for (size_t s = 0; s < j.done; s++)
                losses[s] /= (double)B;
            return j.done;
        }
    }
#endif
    for (size_t s = 0; s < nsteps; s++) {
        losses[s] = sgd_step_ds(ws, ds, idx + s * B, B, lr);
        if (!isfinite(losses[s])) return s + 1;
    }
    return nsteps;
}

double FN(gmf_nn_sgd_step_rows)(ws_t *ws, const float *data, const uint8_t *labels,
                                const size_t *idx, size_t B, const double *lr) {
    const gmf_dataset ds = {.d = ws->m->d, .x = (float *)data, .label = (uint8_t *)labels};
    return sgd_step_ds(ws, &ds, idx, B, lr);
}

double FN(gmf_nn_sgd_step)(ws_t *ws, const real *X, const uint8_t *y, size_t B, const double *lr) {
    const double dscale = 1.0 / (double)B;
    double loss;
    blas_threads(ws);
    if (ws->m->kind == GMF_NN_GM) {
        loss = gm_pool_run(ws, ws->H, X, y, B, 2, 0, dscale, lr);
    } else if (ws->m->kind == GMF_NN_GMLR) {
        gm_job j = {.ws = ws, .H = ws->H, .X = X, .y = y, .B = B, .mode = 2};
        j.dscale = dscale, j.lr = lr;
        loss = lr_pool_run(&j);
    } else {
        loss = FN(gmf_nn_loss_grad)(ws, X, y, B, dscale, 0);
        if (isfinite(loss)) FN(gmf_nn_sgd_apply)(ws, lr, 0);
    }
    return loss / (double)B;
}

/* =============================================================================================
 * The table of this precision's whole-network entry points (nn_internal.h).
 * ============================================================================================= */

static int ops_ws_new(void **out, gmf_nn_model *m, size_t Bmax, int nthreads) {
    ws_t *ws;
    const int rc = FN(gmf_nn_ws_new)(&ws, m, Bmax, nthreads);
    *out = ws;
    return rc;
}
static void ops_ws_free(void *ws) {
    FN(gmf_nn_ws_free)((ws_t *)ws);
}
static void ops_ws_store(void *ws) {
    FN(gmf_nn_ws_store)((ws_t *)ws);
}
static void ops_load(void *X, const float *src, size_t n) {
    real *dst = X;
    for (size_t j = 0; j < n; j++)
        dst[j] = (real)src[j];
}
static double ops_sgd_step_rows(void *ws, const float *data, const uint8_t *labels,
                                const size_t *idx, size_t B, const double *lr) {
    return FN(gmf_nn_sgd_step_rows)((ws_t *)ws, data, labels, idx, B, lr);
}
static double ops_sgd_step_ds(void *ws, const gmf_dataset *ds, const size_t *idx, size_t B,
                              const double *lr) {
    return sgd_step_ds((ws_t *)ws, ds, idx, B, lr);
}
static size_t ops_sgd_steps_ds(void *ws, const gmf_dataset *ds, const size_t *idx, size_t B,
                               size_t nsteps, const double *lr, double *losses) {
    return sgd_steps_ds((ws_t *)ws, ds, idx, B, nsteps, lr, losses);
}
static void ops_gather(void *X, uint8_t *y, const gmf_dataset *ds, const size_t *idx, size_t first,
                       size_t B) {
    gather_rows_at(X, y, ds, idx, first, ds->d, 0, B);
}
static double ops_loss_grad(void *ws, const void *X, const uint8_t *y, size_t B, double dscale,
                            int accumulate) {
    return FN(gmf_nn_loss_grad)((ws_t *)ws, X, y, B, dscale, accumulate);
}
static void ops_sgd_apply(void *ws, const double *lr, int from_acc) {
    FN(gmf_nn_sgd_apply)((ws_t *)ws, lr, from_acc);
}
static void ops_set_weight_rule(void *ws, gmf_nn_wgeom geom, int per_mass) {
    FN(gmf_nn_ws_set_weight_rule)((ws_t *)ws, geom, per_mass);
}
static double *ops_grad_acc(void *ws) {
    return FN(gmf_nn_ws_grad_acc)(ws);
}
static double ops_evaluate(void *ws, const void *X, const uint8_t *y, size_t B, size_t *wrong) {
    ws_t *w = (ws_t *)ws;
    FN(gmf_nn_forward)(w->H, w, X, B);
    const double loss = FN(gmf_nn_refloss)(NULL, NULL, w->H, y, 1.0, B, w->m->L);
    *wrong += FN(gmf_nn_predict)(NULL, w->H, y, B, w->m->L);
    return loss;
}

const gmf_nn_ops FN(gmf_nn_ops) = {.precision = (int)(8 * sizeof(real)),
                                   .real_size = sizeof(real),
                                   .ws_new = ops_ws_new,
                                   .ws_free = ops_ws_free,
                                   .ws_store = ops_ws_store,
                                   .load = ops_load,
                                   .sgd_step_rows = ops_sgd_step_rows,
                                   .sgd_step_ds = ops_sgd_step_ds,
                                   .sgd_steps_ds = ops_sgd_steps_ds,
                                   .gather = ops_gather,
                                   .loss_grad = ops_loss_grad,
                                   .sgd_apply = ops_sgd_apply,
                                   .grad_acc = ops_grad_acc,
                                   .set_weight_rule = ops_set_weight_rule,
                                   .evaluate = ops_evaluate};
