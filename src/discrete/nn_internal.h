/* nn_internal.h -- private to the nn module: the whole network's workspace (the struct behind
 * nn.h's opaque gmf_nn_ws_f / gmf_nn_ws_d), the per-precision table of its entry points, the
 * hand-written kernels, and a small thread pool with a spin-then-block barrier.
 *
 * gmf_nn_pool_run(p, job, ctx) runs job(ctx, tid, n) on all n threads (the caller is tid 0) and
 * returns when every thread has finished.  Inside a job, gmf_nn_pool_barrier(p) makes all n
 * threads meet.  The barrier spins briefly (a step of the GM layer is ~0.1-1 ms, so a waiting
 * thread usually waits microseconds) and then blocks on a condition variable, so idle workers
 * cost no CPU between epochs.
 */
#ifndef GMFLOW_NN_INTERNAL_H
#define GMFLOW_NN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "gmflow/dataset.h"
#include "gmflow/nn.h"

/* The whole network's workspace (nn.h: opaque to users, gmf_nn_ws_new / gmf_nn_ws_free); its
 * fields are the library's own (nn_tmpl.h, the ops table below) and the white-box tests'. */
#define GMF_NN_WS_DEF(real, S)                                                                     \
    struct gmf_nn_ws##S {                                                                          \
        gmf_nn_model *m;                                                                           \
        size_t Bmax;                                                                               \
        real *P, *dP; /* nparams: working copy of m->params, gradient */                           \
        double *gacc; /* nparams: gradient accumulator (gmf_nn_loss_grad, accumulate = 1) */       \
        real *H, *dH; /* Bmax x L */                                                               \
        real *Z1, *Y1, *dY1, *dZ1, *nrm; /* GMSTACK middle layer: Bmax x Lmid (nrm: Bmax) */       \
        double *lossv;                   /* Bmax per-sample losses */                              \
        real *Xb;                        /* Bmax x d gathered batch (gmf_nn_sgd_step_rows) */      \
        uint8_t *yb;                     /* Bmax gathered labels */                                \
        gmf_nn_gm_cache##S gm1, gm2;                                                               \
        gmf_nn_gmfull_cache##S full;                                                               \
        gmf_nn_gmlr_cache##S lr; /* gm-lowrank */                                                  \
        gmf_nn_fc_cache##S fc;                                                                     \
        int nthreads;                                                                              \
        struct gmf_nn_pool *pool; /* GM kind: components split over nthreads threads */            \
        int prep_valid;           /* GM kind: gm1's parameter-derived cache matches P */           \
        gmf_nn_wgeom wgeom;       /* learned weights: the logits' SGD step (euclid) */             \
        int per_mass;             /* learned weights: transport rate lr / (K w_k) (0) */           \
        real *xtp; /* GM kind, AVX-512 float32, nthreads > 1: each pool thread's own X^T */        \
        /* GM kind, AVX-512 float32: the gather's staged bytes (Bmax x d) and scales (2 Bmax),  */ \
        /* and threads 1.. nthreads-1's own copies of X (thread 0's is Xb) */                      \
        uint8_t *sb;                                                                               \
        double *ssc;                                                                               \
        real *xp;                                                                                  \
        real *xb2; /* GM kind, nthreads > 1: the second batch buffer of a multi-step pool job */   \
        /* GM kind, AVX-512 float32, 2 threads, GM_ONE_BARRIER: the one-barrier step's partial  */ \
        /* output sums (2 parities x 2 threads) and each thread's private per-step arrays       */ \
        double *hp;                                                                                \
        unsigned char *obuf;                                                                       \
    };

GMF_NN_WS_DEF(float, _f)
GMF_NN_WS_DEF(double, _d)

struct gmf_nn_pool;
typedef void (*gmf_nn_job)(void *ctx, int tid, int nthreads);

int gmf_nn_pool_new(struct gmf_nn_pool **out, int nthreads);
void gmf_nn_pool_free(struct gmf_nn_pool *p);
int gmf_nn_pool_size(const struct gmf_nn_pool *p);
void gmf_nn_pool_run(struct gmf_nn_pool *p, gmf_nn_job job, void *ctx);
void gmf_nn_pool_barrier(struct gmf_nn_pool *p);
/* The same barrier in two halves: g = gmf_nn_pool_arrive(p) tells the others this thread has
 * arrived; gmf_nn_pool_await(p, g) waits for them.  Between the two the thread may do work that
 * no other thread waits for at this barrier (and must not write what the others read before
 * it). */
unsigned gmf_nn_pool_arrive(struct gmf_nn_pool *p);
void gmf_nn_pool_await(struct gmf_nn_pool *p, unsigned g);

/* [lo, hi) of n items for part t of nt (contiguous, sizes differ by at most one). */
static inline void gmf_nn_split(size_t n, int t, int nt, size_t *lo, size_t *hi) {
    *lo = n * (size_t)t / (size_t)nt;
    *hi = n * (size_t)(t + 1) / (size_t)nt;
}

/* The GM layer's float32 products on AVX-512 builds (gm_kern.c; why hand-written: there).
 * GMF_NN_KERN is defined when they are compiled in; nn_f32.c's GM layer then uses them instead
 * of cblas_sgemm (other builds and float64: OpenBLAS).  Row-major, leading dimensions in floats;
 * sq: A's entries squared (x * x formed in registers).
 *   gmf_nn_kern_nt: C[i, j] = sum_p A[i, p] B[j, p]   (i < M, j < N, p < d; C overwritten)
 *   gmf_nn_kern_tn: C[j, p] = sum_i G[i, j] A[i, p]   (j < N, p < d, i < M; add: C +=) */
/* The forward products from the transposed batch (gm_kern_xt.c; why: there; they replace
 * gmf_nn_kern_nt in the GM and low-rank layers' forward, nt stays for tests and the bench).
 * XT holds X^T in panels of 64 batch columns: X[i, p] at XT[(i / 64) 64 d + 64 p + i % 64]
 * (gmf_nn_xt_size floats for Bmax rows): a batch block's d x 64 entries are contiguous.
 *   gmf_nn_kern_xt_trans: columns [i0, i1) of XT = rows [i0, i1) of X (row-major, ldx), p < d
 *   gmf_nn_kern_xt: C[i, j] = sum_p X^T[p, i0 + i] B[j, p]  (i < M, j < N, p < d; squared when
 *                   sq; C overwritten): one FMA chain over p = 0 .. d-1 per entry, so any range
 *                   of rows (i0) or columns is bitwise the whole product's. */
static inline size_t gmf_nn_xt_size(size_t Bmax, size_t d) {
    return (Bmax + 63) / 64 * 64 * d;
}
#ifdef __AVX512F__
void gmf_nn_kern_xt_trans(size_t d, const float *X, size_t ldx, size_t i0, size_t i1, float *XT);
/* gmf_nn_kern_xt_conv_u8: rows [i0, i1) of X (ldx) and columns [i0, i1) of XT formed at once
 * from bytes: X[i, p] = (float)(((double)S[i lds + p] - scale[2 i]) * scale[2 i + 1])
 * (gmf_dataset_u8_value's operations, bitwise its values), X^T as gmf_nn_kern_xt_trans would
 * transpose it (the batch gather's conversion with the transposition fused: nn_tmpl.h). */
void gmf_nn_kern_xt_conv_u8(size_t d, const uint8_t *S, size_t lds, const double *scale, size_t i0,
                            size_t i1, float *X, size_t ldx, float *XT);
void gmf_nn_kern_xt(size_t M, size_t N, size_t d, const float *XT, size_t i0, const float *B,
                    size_t ldb, float *C, size_t ldc, int sq);
#endif

#ifdef __AVX512F__
#define GMF_NN_KERN 1
/* gmf_nn_kern_tn_update: the backward products fused with gmf_nn_kern_gm_update, for the
 * components [k0, k1) (absolute indices; the parameter and cache pointers are those of
 * component 0, component k's rows at k L d (U), k d (mu, sigma, sig2), k (L + 1) d (muW)):
 * component k's product rows dsig2_k = dS2[:, k]^T (X * X), [dmu_k; dW_k] = dF[:, k (L+1) ..
 * k (L+1) + L]^T X (i < M, leading dimensions ldx, ldf, lds) stay in registers and feed
 * gm_update's column work directly (dal and acc: L entries per component from k0).  Bitwise the
 * results of gmf_nn_kern_tn (both products) followed by gmf_nn_kern_gm_update per component.
 * Returns 0 (nothing done) when L > GMF_NN_KERN_TU_LMAX or M > GMF_NN_KERN_TU_MMAX, else 1. */
#define GMF_NN_KERN_TU_LMAX 10
#define GMF_NN_KERN_TU_MMAX 256
int gmf_nn_kern_tn_update(size_t M, size_t d, size_t L, size_t k0, size_t k1, const float *X,
                          size_t ldx, const float *dF, size_t ldf, const float *dS2, size_t lds,
                          float *U, float *mu, float *sigma, float *sig2, float *muW,
                          const float *dal, float rU, float rS, float rM, double *acc);
void gmf_nn_kern_nt(size_t M, size_t N, size_t d, const float *A, size_t lda, const float *B,
                    size_t ldb, float *C, size_t ldc, int sq);
void gmf_nn_kern_tn(size_t N, size_t d, size_t M, const float *G, size_t ldg, const float *A,
                    size_t lda, float *C, size_t ldc, int sq, int add);
/* gmf_nn_kern_gm_update: the fused SGD step's pass over one GM component's parameters (d
 * columns, L rows of U, dW rows at stride d): U -= rU (dW sig2 + dal mu) per row; dsigma =
 * 2 sigma (dsig2 + sum_l dW_l U_l), dmu' = dmu + sum_l dal_l U_l (old U); sigma -= rS dsigma,
 * mu -= rM dmu' (a rate of 0 leaves the block untouched); then sig2 = sigma^2, muW row 0 = mu,
 * rows 1..L = U diag(sig2) and acc[l] = U_l . mu (dot16's order), all from the new values.
 * Bitwise the results of nn_tmpl.h's row-by-row passes (gm_row_update, sgd_update, gm_prep1). */
void gmf_nn_kern_gm_update(size_t d, size_t L, float *U, float *mu, float *sigma, const float *dW,
                           const float *dmu, const float *dsig2, float *sig2, float *muW,
                           const float *dal, float rU, float rS, float rM, double *acc);
/* gmf_nn_kern_gm_bwd_scalars (gm_scal.c): the backward scalars of components [k0, k1) over rows
 * [0, B) (nn_tmpl.h gm_bwd_scalars has the formulas), with 8 components per zmm of doubles: dF (m
 * and G entries of those components), dS2, da (nk x L, written), gw[k0..k1) (when not NULL); G
 * entries, da and gw bitwise the C loop, m entries and dS2 to its last bits (one division, 1/s).
 * sc: the components' weights (NULL: 1/K).  L <= GMF_NN_SCAL_LMAX. */
#define GMF_NN_SCAL_LMAX 64
void gmf_nn_kern_gm_bwd_scalars(size_t B, size_t K, size_t L, size_t k0, size_t k1, const float *a,
                                const float *F, const float *A, const float *Phi, const float *phi,
                                const float *s, const float *dH, const double *sc, float *dF,
                                float *dS2, double *da, double *gw);
/* gmf_nn_kern_gm_reduce_rows (gm_scal.c): rows [i0, i1) of the GM layer's output, bitwise
 * nn_tmpl.h's gm_reduce_rows (w NULL: H = inv (S_0 + S_1), S_0 and S_1 the sums of
 * A_ik a_k + Phi_ik G_ik over k in [0, K/2) and [K/2, K), each in order) and gm_reduce_rows_w
 * (H = sum_k w_k [A_ik a_k + Phi_ik G_ik], summed over k in order).
 * gmf_nn_kern_gm_reduce_part: hp[i L + l] = the same sum over k in [k0, k1) in order, in double
 * (rows [i0, i1)): S_0 and S_1 of the one-barrier step's two threads (nn_tmpl.h). */
void gmf_nn_kern_gm_reduce_rows(float *H, const float *A, const float *Phi, const float *a,
                                const float *F, const double *w, double inv, size_t K, size_t L,
                                size_t i0, size_t i1);
void gmf_nn_kern_gm_reduce_part(double *hp, const float *A, const float *Phi, const float *a,
                                const float *F, size_t K, size_t L, size_t k0, size_t k1, size_t i0,
                                size_t i1);
/* gmf_nn_kern_gm_gauss (gm_gauss.c): the forward's Gaussian scalars of the points [p0, p1) of the
 * flat sequence p = i K + k (row i, component k): m = F[p (L + 1)], s^2 = S2[p] (the GM cache's
 * F and S2) give s[p], Phi[p], phi[p], A[p] = m Phi + s phi in double as gmf_gauss_scalars
 * (erfc, exp: libmvec's 8-lane AVX-512 variants), rounded to float.  Every point is computed by
 * the same lane code whatever the range: any split of [p0, p1) is bitwise one call. */
void gmf_nn_kern_gm_gauss(size_t p0, size_t p1, size_t L, const float *F, const float *S2, float *s,
                          float *Phi, float *phi, float *A);
/* gmf_nn_kern_gm_gauss_cols: the same for components [k0, k1) of rows [0, B) (the points
 * p = i K + k, outputs at [p]), 8 points per block across rows (s^2 gathered, the outputs
 * copied out by rows); every point bitwise gmf_nn_kern_gm_gauss's (the one-barrier step).  Any
 * B: the lanes index from each block's first row (B K (L + 1) may exceed 2^31); the one limit,
 * asserted, is 8 K (L + 1) <= INT32_MAX. */
void gmf_nn_kern_gm_gauss_cols(size_t B, size_t K, size_t k0, size_t k1, size_t L, const float *F,
                               const float *S2, float *s, float *Phi, float *phi, float *A);
/* gmf_nn_kern_refloss (gm_gauss.c): gmf_nn_refloss_f (nn.h) for L <= GMF_NN_REFLOSS_LMAX, 8 rows
 * per zmm of doubles, the same operations per row with libmvec's 8-lane exp and log (the last
 * bits of lossv and, rarely, of dH differ from gmf_nn_refloss_f's); rows independent. */
#define GMF_NN_REFLOSS_LMAX 64
double gmf_nn_kern_refloss(float *dH, double *lossv, const float *H, const uint8_t *y,
                           double dscale, size_t B, size_t L);
#endif

/* OpenBLAS's thread count (declared here rather than relying on which cblas.h is found). */
void openblas_set_num_threads(int num_threads);

/* Set OpenBLAS's (process-global) thread count to n unless the last call here already did:
 * every network entry point calls it, so a workspace of one model kind is not left running with
 * the thread count another workspace set (1 inside the GM pool, --threads elsewhere). */
void gmf_nn_blas_threads(int n);

/* w = softmax(a) over K >= 1 logits, in double (nn_model.c). */
void gmf_nn_softmax(double *w, const double *a, size_t K);

/* The precision-dependent entry points of a whole network, as one table per precision (defined
 * by nn_tmpl.h: gmf_nn_ops_f, gmf_nn_ops_d), so that a caller that runs either precision (the
 * trainer) chooses its table once, at creation, instead of branching at every call.  ws is a
 * workspace of the table's precision (a gmf_nn_ws_f * or gmf_nn_ws_d *, made by ws_new); X holds
 * `real` rows (real_size bytes per entry). */
typedef struct gmf_nn_ops {
    int precision;    /* 32 or 64 */
    size_t real_size; /* sizeof(real) */
    int (*ws_new)(void **out, gmf_nn_model *m, size_t Bmax, int nthreads);
    void (*ws_free)(void *ws);
    void (*ws_store)(void *ws);
    /* X[0..n) = (real) src[0..n) */
    void (*load)(void *X, const float *src, size_t n);
    double (*sgd_step_rows)(void *ws, const float *data, const uint8_t *labels, const size_t *idx,
                            size_t B, const double *lr);
    /* sgd_step_rows from a data set in either form (gmf_dataset's floats or compact bytes) */
    double (*sgd_step_ds)(void *ws, const gmf_dataset *ds, const size_t *idx, size_t B,
                          const double *lr);
    /* nsteps SGD steps of B rows each, step s on rows idx[s B .. (s + 1) B) of ds: losses[s] =
     * what sgd_step_ds would return for it (bitwise the same parameters as nsteps calls of
     * sgd_step_ds); stops after a non-finite loss (that step's parameters not updated) and
     * returns the number of steps run.  The GM kind on more than one thread runs them as one
     * pool job (nn_tmpl.h gm_steps_run). */
    size_t (*sgd_steps_ds)(void *ws, const gmf_dataset *ds, const size_t *idx, size_t B,
                           size_t nsteps, const double *lr, double *losses);
    /* X, y = rows idx[0..B) of ds (idx NULL: rows first..first+B), in `real` */
    void (*gather)(void *X, uint8_t *y, const gmf_dataset *ds, const size_t *idx, size_t first,
                   size_t B);
    double (*loss_grad)(void *ws, const void *X, const uint8_t *y, size_t B, double dscale,
                        int accumulate);
    void (*sgd_apply)(void *ws, const double *lr, int from_acc);
    /* the gradient accumulator gacc (gmf_nn_ws_grad_acc; m->nparams doubles) */
    double *(*grad_acc)(void *ws);
    /* gmf_nn_ws_set_weight_rule */
    void (*set_weight_rule)(void *ws, gmf_nn_wgeom geom, int per_mass);
    /* forward into ws->H: returns sum_i loss_i and adds the misclassified rows to *wrong */
    double (*evaluate)(void *ws, const void *X, const uint8_t *y, size_t B, size_t *wrong);
} gmf_nn_ops;

extern const gmf_nn_ops gmf_nn_ops_f, gmf_nn_ops_d;

/* Test hook (tests/test_nn_pool_split.c): pool thread gmf_nn_test_delay_tid (-1, the default:
 * none) spins gmf_nn_test_delay_us microseconds in every GM step between the backward scalars and
 * the fused backward (gm_step; in gm_step1b, the one-barrier step, right after its barrier,
 * before it reads the other thread's partial output sum), so that the other threads run ahead
 * into the next step's gather, conversion and forward products (the multi-step job's window
 * without a barrier, nn_tmpl.h gm_steps_run) every time instead of by chance.  Set them while no
 * job runs; the cost when unset is one load and a branch per step. */
extern int gmf_nn_test_delay_tid;
extern unsigned gmf_nn_test_delay_us;
void gmf_nn_test_delay(void);

/* Bench-only phase profile of the pool's jobs (compiled in only with -DGMF_NN_PROF;
 * bench/README.md): gmf_nn_prof_mark(t, ph) adds thread t's CPU time since its previous mark to
 * phase ph (t < 0: the thread of the calling thread's last mark); per-thread totals go to stderr at
 * exit. */
#ifdef GMF_NN_PROF
void gmf_nn_prof_mark(int t, int ph);
#define GMF_NN_PROF_MARK(t, ph) gmf_nn_prof_mark(t, ph)
#else
#define GMF_NN_PROF_MARK(t, ph) ((void)0)
#endif

#endif
