/* gm_kern.c -- hand-written AVX-512 float32 products of the GM layer's SGD step (nn_internal.h:
 * gmf_nn_kern_nt, gmf_nn_kern_tn), used by nn_tmpl.h's float instantiation instead of
 * cblas_sgemm when the build has AVX-512 (GMF_NN_KERN); other builds and float64 keep OpenBLAS.
 *
 * Why hand-written (the house rule: hot loops are BLAS or deliberately vectorized code): the
 * step's GEMMs are small and skinny (64 x 200 x 784, 200 x 784 x 64, 64 x 20 x 784, 20 x 784 x 64)
 * and OpenBLAS reaches 79-174 GFLOP/s on them against 202 on a large SGEMM (docs/PERFORMANCE.md
 * section 9): it packs both operands on every call (sgemm_incopy/oncopy/itcopy were 12 % of a
 * training profile) and needs X * X materialized for the two variance products.  Here the
 * operands are read in the layouts the step already has (row-major X, parameter rows, dF),
 * nothing is packed, and X * X is formed in registers.
 *
 *   nt: C[i, j] = sum_p A[i, p] B[j, p]        (A squared when sq)  -- forward F and S2
 *       Register tile 4 rows of A x 4 rows of B: 16 zmm accumulators of 16 partial sums each
 *       along p (both operands contiguous in p, no transposes), one reduction tree per tile
 *       (45 shuffles/adds for 16 outputs) at the end.
 *   tn: C[j, p] (+)= sum_i G[i, j] A[i, p]    (A squared when sq)  -- backward dmuW and dsig2
 *       Register tile 6 rows of C x 64 columns (4 zmm): 24 accumulators; per i, 4 loads of A's
 *       row segment and 6 broadcasts of G; the A panel (B rows x 64 columns) stays in L1 while
 *       the tile walks down C's rows.
 *
 * Both sum in a fixed order that depends only on the sizes (not on alignment or threads), so
 * results are deterministic; they differ from OpenBLAS's in the last bits (another order).
 * Tested against a double-precision loop on odd sizes by tests/test_gm_kern.c.
 *
 *   tn_update: tn's two backward products fused with gm_update (below), one component's rows in
 *       registers; bitwise tn + gm_update (docs/PERFORMANCE.md section 10.2).
 *   gm_update: the fused SGD step's parameter pass over one component (U rows, sigma, mu and
 *       the refreshed W / sig2 / a cache) in one pass of 16-column blocks, bitwise the C
 *       row-by-row passes it replaces (docs/PERFORMANCE.md section 10.1); tested bit for bit
 *       against them and against double by tests/test_gm_kern.c. */
#include <stddef.h>

#include "nn_internal.h"

#ifdef GMF_NN_KERN
#include <immintrin.h>

/* mask of the first n (0..16) lanes */
static inline __mmask16 lanes(size_t n) {
    return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
}

/* out lane 4 r + c = sum of the 16 lanes of v[4 c + r] (r, c < 4): a transpose-and-add tree. */
static inline __m512 reduce16(const __m512 v[16]) {
    __m512 s[8], u[4];
    for (int m = 0; m < 8; m++) /* quarters 0-1: v[2m] halves summed; 2-3: v[2m+1] */
        s[m] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * m], v[2 * m + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * m], v[2 * m + 1], 0xEE));
    for (int m = 0; m < 4; m++) /* quarter q: 4 partial sums of v[4m + q] */
        u[m] = _mm512_add_ps(_mm512_shuffle_f32x4(s[2 * m], s[2 * m + 1], 0x88),
                             _mm512_shuffle_f32x4(s[2 * m], s[2 * m + 1], 0xDD));
    /* lane q of each 128-bit quarter: lanes 0-1 partials of u[a]'s, 2-3 of u[b]'s */
    const __m512 w0 =
        _mm512_add_ps(_mm512_shuffle_ps(u[0], u[1], 0x44), _mm512_shuffle_ps(u[0], u[1], 0xEE));
    const __m512 w1 =
        _mm512_add_ps(_mm512_shuffle_ps(u[2], u[3], 0x44), _mm512_shuffle_ps(u[2], u[3], 0xEE));
    /* quarter q: [v[q], v[4 + q], v[8 + q], v[12 + q]] */
    return _mm512_add_ps(_mm512_shuffle_ps(w0, w1, 0x88), _mm512_shuffle_ps(w0, w1, 0xDD));
}

/* One 4 x 4 tile of nt: rows a[0..4) of A, rows b[0..4) of B (edge tiles repeat a row; the
 * caller stores only the valid outputs), d columns. */
static inline __attribute__((always_inline)) __m512
nt_tile(const float *const a[4], const float *const b[4], size_t d, int sq) {
    __m512 acc[4][4];
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            acc[r][c] = _mm512_setzero_ps();
    size_t p = 0;
    for (; p + 16 <= d; p += 16) {
        __m512 x[4];
        for (int r = 0; r < 4; r++) {
            x[r] = _mm512_loadu_ps(a[r] + p);
            if (sq) x[r] = _mm512_mul_ps(x[r], x[r]);
        }
        for (int c = 0; c < 4; c++) {
            const __m512 y = _mm512_loadu_ps(b[c] + p);
            for (int r = 0; r < 4; r++)
                acc[r][c] = _mm512_fmadd_ps(x[r], y, acc[r][c]);
        }
    }
    if (p < d) { /* tail: masked loads, zeros elsewhere */
        const __mmask16 m = lanes(d - p);
        __m512 x[4];
        for (int r = 0; r < 4; r++) {
            x[r] = _mm512_maskz_loadu_ps(m, a[r] + p);
            if (sq) x[r] = _mm512_mul_ps(x[r], x[r]);
        }
        for (int c = 0; c < 4; c++) {
            const __m512 y = _mm512_maskz_loadu_ps(m, b[c] + p);
            for (int r = 0; r < 4; r++)
                acc[r][c] = _mm512_fmadd_ps(x[r], y, acc[r][c]);
        }
    }
    __m512 v[16];
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            v[4 * c + r] = acc[r][c];
    return reduce16(v);
}

void gmf_nn_kern_nt(size_t M, size_t N, size_t d, const float *A, size_t lda, const float *B,
                    size_t ldb, float *C, size_t ldc, int sq) {
    if (M == 0 || N == 0) return;
    /* B's rows (the parameters: 4 x d floats) outer, A's rows streamed under them */
    for (size_t j = 0; j < N; j += 4) {
        const size_t nc = N - j < 4 ? N - j : 4;
        const float *b[4];
        for (size_t c = 0; c < 4; c++)
            b[c] = B + (j + (c < nc ? c : nc - 1)) * ldb;
        for (size_t i = 0; i < M; i += 4) {
            const size_t nr = M - i < 4 ? M - i : 4;
            const float *a[4];
            for (size_t r = 0; r < 4; r++)
                a[r] = A + (i + (r < nr ? r : nr - 1)) * lda;
            const __m512 t = sq ? nt_tile(a, b, d, 1) : nt_tile(a, b, d, 0);
            if (nr == 4 && nc == 4) {
                float *c0 = C + i * ldc + j;
                _mm_storeu_ps(c0, _mm512_extractf32x4_ps(t, 0));
                _mm_storeu_ps(c0 + ldc, _mm512_extractf32x4_ps(t, 1));
                _mm_storeu_ps(c0 + 2 * ldc, _mm512_extractf32x4_ps(t, 2));
                _mm_storeu_ps(c0 + 3 * ldc, _mm512_extractf32x4_ps(t, 3));
            } else {
                float o[16];
                _mm512_storeu_ps(o, t);
                for (size_t r = 0; r < nr; r++)
                    for (size_t c = 0; c < nc; c++)
                        C[(i + r) * ldc + j + c] = o[4 * r + c];
            }
        }
    }
}

#define TN_R 6 /* rows of C per register tile */

/* Rows j[0..TN_R) of C (edge tiles repeat a row; only nj are stored), columns [p, p + 64) with
 * per-vector masks m[0..4), sum over i < M. */
static inline __attribute__((always_inline)) void
tn_tile(size_t M, const float *G, size_t ldg, const size_t j[TN_R], size_t nj, const float *A,
        size_t lda, float *C, size_t ldc, size_t p, const __mmask16 m[4], int sq, int add,
        int full) {
    __m512 acc[TN_R][4];
    for (int r = 0; r < TN_R; r++)
        for (int q = 0; q < 4; q++)
            acc[r][q] = _mm512_setzero_ps();
    for (size_t i = 0; i < M; i++) {
        const float *ar = A + i * lda + p;
        __m512 x[4];
        for (int q = 0; q < 4; q++) {
            /* full panels: plain loads (a masked load may cost an extra vector-port uop) */
            x[q] = full ? _mm512_loadu_ps(ar + 16 * q) : _mm512_maskz_loadu_ps(m[q], ar + 16 * q);
            if (sq) x[q] = _mm512_mul_ps(x[q], x[q]);
        }
        const float *g = G + i * ldg;
        for (int r = 0; r < TN_R; r++) {
            const __m512 s = _mm512_set1_ps(g[j[r]]);
            for (int q = 0; q < 4; q++)
                acc[r][q] = _mm512_fmadd_ps(s, x[q], acc[r][q]);
        }
    }
    for (int r = 0; r < TN_R; r++) { /* constant r: the accumulators stay in registers */
        if ((size_t)r >= nj) break;
        float *cr = C + j[r] * ldc + p;
        for (int q = 0; q < 4; q++) {
            __m512 v = acc[r][q];
            if (add) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m[q], cr + 16 * q), v);
            _mm512_mask_storeu_ps(cr + 16 * q, m[q], v);
        }
    }
}

void gmf_nn_kern_tn(size_t N, size_t d, size_t M, const float *G, size_t ldg, const float *A,
                    size_t lda, float *C, size_t ldc, int sq, int add) {
    if (N == 0 || d == 0) return;
    for (size_t p = 0; p < d; p += 64) { /* A's panel (M x 64) stays in L1 */
        __mmask16 m[4];
        for (size_t q = 0; q < 4; q++)
            m[q] = p + 16 * q < d ? lanes(d - p - 16 * q) : 0;
        for (size_t j0 = 0; j0 < N; j0 += TN_R) {
            const size_t nj = N - j0 < TN_R ? N - j0 : TN_R;
            size_t j[TN_R];
            for (size_t r = 0; r < TN_R; r++)
                j[r] = j0 + (r < nj ? r : nj - 1);
            const int full = p + 64 <= d; /* constants in each instance: */
            if (sq && full)
                tn_tile(M, G, ldg, j, nj, A, lda, C, ldc, p, m, 1, add, 1);
            else if (sq)
                tn_tile(M, G, ldg, j, nj, A, lda, C, ldc, p, m, 1, add, 0);
            else if (full)
                tn_tile(M, G, ldg, j, nj, A, lda, C, ldc, p, m, 0, add, 1);
            else
                tn_tile(M, G, ldg, j, nj, A, lda, C, ldc, p, m, 0, add, 0);
        }
    }
}

/* The fused SGD step's parameter pass for one component (nn_tmpl.h gm_bwd_param1, documented in
 * nn_internal.h): per block of 16 columns, the L U rows are updated while the dsig2 and dmu sums
 * over l are formed in registers (l = 0 .. L-1, the row-by-row order), then sigma and mu, then
 * the refreshed cache rows (sig2, muW = [mu; U diag(sig2)]) and a's 16-lane partial sums
 * U_l . mu.  Separate multiplies and adds (no FMA), each as the scalar C form writes it, so the
 * results are bitwise those of the row-by-row C passes. */
void gmf_nn_kern_gm_update(size_t d, size_t L, float *U, float *mu, float *sigma, const float *dW,
                           const float *dmu, const float *dsig2, float *sig2, float *muW,
                           const float *dal, float rU, float rS, float rM, double *acc) {
    __m512 part[L ? L : 1];
    for (size_t l = 0; l < L; l++)
        part[l] = _mm512_setzero_ps();
    const __m512 two = _mm512_set1_ps(2.0f), vU = _mm512_set1_ps(rU), vS = _mm512_set1_ps(rS);
    const __m512 vM = _mm512_set1_ps(rM);
    const size_t dfull = d & ~(size_t)15;
    for (size_t j = 0; j < d; j += 16) {
        const __mmask16 m = lanes(d - j);
        const __m512 s2o = _mm512_maskz_loadu_ps(m, sig2 + j),
                     muo = _mm512_maskz_loadu_ps(m, mu + j);
        __m512 ds = _mm512_maskz_loadu_ps(m, dsig2 + j), dm = _mm512_maskz_loadu_ps(m, dmu + j);
        for (size_t l = 0; l < L; l++) {
            const __m512 g = _mm512_maskz_loadu_ps(m, dW + l * d + j);
            const __m512 u = _mm512_maskz_loadu_ps(m, U + l * d + j), a = _mm512_set1_ps(dal[l]);
            const __m512 du = _mm512_add_ps(_mm512_mul_ps(g, s2o), _mm512_mul_ps(a, muo));
            ds = _mm512_add_ps(ds, _mm512_mul_ps(g, u));
            dm = _mm512_add_ps(dm, _mm512_mul_ps(a, u));
            _mm512_mask_storeu_ps(U + l * d + j, m, _mm512_sub_ps(u, _mm512_mul_ps(vU, du)));
        }
        __m512 sn = _mm512_maskz_loadu_ps(m, sigma + j), mn = muo;
        if (rS != 0.0f)
            sn = _mm512_sub_ps(sn, _mm512_mul_ps(vS, _mm512_mul_ps(_mm512_mul_ps(two, sn), ds)));
        if (rM != 0.0f) mn = _mm512_sub_ps(mn, _mm512_mul_ps(vM, dm));
        const __m512 s2n = _mm512_mul_ps(sn, sn);
        _mm512_mask_storeu_ps(sigma + j, m, sn);
        _mm512_mask_storeu_ps(mu + j, m, mn);
        _mm512_mask_storeu_ps(muW + j, m, mn);
        _mm512_mask_storeu_ps(sig2 + j, m, s2n);
        for (size_t l = 0; l < L; l++) {
            const __m512 u = _mm512_maskz_loadu_ps(m, U + l * d + j);
            _mm512_mask_storeu_ps(muW + (1 + l) * d + j, m, _mm512_mul_ps(u, s2n));
            if (j < dfull) part[l] = _mm512_add_ps(part[l], _mm512_mul_ps(u, mn));
        }
    }
    for (size_t l = 0; l < L; l++) { /* dot16's order: the 16 lanes, then the d % 16 tail */
        float p[16];
        _mm512_storeu_ps(p, part[l]);
        double s = 0.0;
        for (int q = 0; q < 16; q++)
            s += (double)p[q];
        for (size_t j = dfull; j < d; j++)
            s += (double)U[l * d + j] * (double)mu[j];
        acc[l] = s;
    }
}

/* load / store 16 floats: plain in a full block (a masked load may cost a vector-port uop),
 * masked in d's tail */
static inline __m512 ld16(const float *p, __mmask16 m, int full) {
    return full ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(m, p);
}

static inline void st16(float *p, __mmask16 m, int full, __m512 v) {
    if (full)
        _mm512_storeu_ps(p, v);
    else
        _mm512_mask_storeu_ps(p, m, v);
}

/* ---------------------------------------------------------------------------------------------
 * tn_update: the backward product fused with the parameter pass (gmf_nn_kern_tn_update in
 * nn_internal.h).  Why: tn + gm_update wrote dmuW (K (L+1) x d floats) and dsig2 (K x d) every
 * step and read them back with U; here a register tile holds one component's L + 2 product rows
 * (dsig2, dmu, dW_0..dW_{L-1}) for 32 columns (2 zmm each: 22 accumulators at L = 9), and
 * gm_update's per-column work for those columns runs from the registers, so the gradient rows
 * never go to memory.  Per batch row i: 2 loads of X, 2 of X * X, L + 2 broadcasts, 2 (L + 2)
 * FMAs.  Loop order: panels of TU_PB columns outer (X's M x TU_PB panel and its square, formed
 * once per panel, stay in L1), the components of a group of TU_KB inner (a's partial sums of the
 * group on the stack).  The epilogue's two 16-column halves are interleaved (their dependency
 * chains overlap), and its parameter rows are prefetched while the product runs.  The whole
 * backward half is bound by vector-port work (the products' FMAs and the pass's 12 operations
 * per U row and 16 columns), so this gains about 5 % of the epoch, not more (docs/PERFORMANCE.md
 * section 10.2).
 * Bitwise: every product entry is the same single FMA chain over i = 0 .. M-1 as gmf_nn_kern_tn,
 * and the epilogue is gmf_nn_kern_gm_update's arithmetic operation for operation (a's 16-lane
 * partial sums carried across the 16-column blocks in the same order). */
/* columns per panel: 2 tiles of 32 (panels of 32 and 128 measured 0.85x and 0.75x of the unfused
 * route's speed on gm_kern_bench's shapes, 64 1.09x) */
#define TU_PB 64
#define TU_KB 32 /* components per group */

/* One component's tile: columns [p, p + 32) (masks for d's tail), the product over
 * i < M, then gm_update's column work.  L is a constant in each instance.  one: 16 columns or
 * fewer (d = 784's last 16), only the first half's loads and FMAs (the second half's were all
 * masked: the tile cost a full one for half the columns; the kernel 5-15 % faster at d = 784,
 * docs/PERFORMANCE.md "The step split by pixel columns"); bitwise the same results. */
static inline __attribute__((always_inline)) void
tu_tile(const size_t L, size_t M, size_t d, size_t p, const float *X, size_t ldx, const float *X2,
        size_t ld2, const float *g, size_t ldf, const float *gs, size_t lds, float *U, float *mu,
        float *sigma, float *sig2, float *muW, const float *dal, float rU, float rS, float rM,
        float *part, int full, int one) {
    __m512 acc[GMF_NN_KERN_TU_LMAX + 2][2]; /* row 0: dsig2, row 1: dmu, rows 2 ..: dW */
    for (size_t r = 0; r < L + 2; r++)
        acc[r][0] = _mm512_setzero_ps(), acc[r][1] = _mm512_setzero_ps();
    const __mmask16 m0 = lanes(d - p), m1 = p + 16 < d ? lanes(d - p - 16) : 0;
    /* the epilogue's rows (U, muW, mu, sigma, sig2 at these 32 columns), requested during the
     * first 2 L + 4 batch rows: the panel order visits each row in 128-byte pieces, 20
     * components apart, which the hardware prefetchers do not follow; in the training step these
     * lines come from L3 (epoch: the kernel's samples 5 % fewer, 1.025x over 8 pairs) */
    const float *pf[2 * GMF_NN_KERN_TU_LMAX + 4];
    const size_t npf = 2 * L + 4;
    for (size_t l = 0; l < L; l++)
        pf[l] = U + l * d + p;
    for (size_t q = 0; q <= L; q++)
        pf[L + q] = muW + q * d + p;
    pf[2 * L + 1] = mu + p, pf[2 * L + 2] = sigma + p, pf[2 * L + 3] = sig2 + p;
    for (size_t i = 0; i < M; i++) {
        if (i < npf) {
            _mm_prefetch((const char *)pf[i], _MM_HINT_T0);
            if (full) _mm_prefetch((const char *)(pf[i] + 16), _MM_HINT_T0);
        }
        const float *xr = X + i * ldx + p, *gi = g + i * ldf, *x2 = X2 + i * ld2;
        const __m512 x0 = full ? _mm512_loadu_ps(xr) : _mm512_maskz_loadu_ps(m0, xr);
        const __m512 b = _mm512_set1_ps(gs[i * lds]);
        acc[0][0] = _mm512_fmadd_ps(b, _mm512_loadu_ps(x2), acc[0][0]);
        if (one) { /* 16 columns or fewer: the second half's lanes would all be masked */
            for (size_t r = 0; r <= L; r++)
                acc[1 + r][0] = _mm512_fmadd_ps(_mm512_set1_ps(gi[r]), x0, acc[1 + r][0]);
            continue;
        }
        const __m512 x1 = full ? _mm512_loadu_ps(xr + 16) : _mm512_maskz_loadu_ps(m1, xr + 16);
        acc[0][1] = _mm512_fmadd_ps(b, _mm512_loadu_ps(x2 + 16), acc[0][1]);
        for (size_t r = 0; r <= L; r++) {
            const __m512 s = _mm512_set1_ps(gi[r]);
            acc[1 + r][0] = _mm512_fmadd_ps(s, x0, acc[1 + r][0]);
            acc[1 + r][1] = _mm512_fmadd_ps(s, x1, acc[1 + r][1]);
        }
    }
    /* gmf_nn_kern_gm_update's body (gmu_block) for the two 16-column halves, interleaved, the
     * gradient rows from the accumulators */
    const __m512 two = _mm512_set1_ps(2.0f), vU = _mm512_set1_ps(rU), vS = _mm512_set1_ps(rS);
    const __m512 vM = _mm512_set1_ps(rM);
    const int nh = full ? 2 : p + 16 < d ? 2 : 1;
    const __mmask16 mh[2] = {m0, m1};
    int fh[2];
    __m512 s2o[2], muo[2], ds[2], dm[2], sn[2], mn[2], s2n[2];
    for (int h = 0; h < nh; h++) {
        const size_t c = p + 16 * (size_t)h;
        fh[h] = full ? 1 : d - c >= 16; /* a full 16-column block (dot16's lanes) */
        s2o[h] = ld16(sig2 + c, mh[h], fh[h]), muo[h] = ld16(mu + c, mh[h], fh[h]);
        ds[h] = acc[0][h], dm[h] = acc[1][h];
    }
    for (size_t l = 0; l < L; l++) {
        const __m512 a = _mm512_set1_ps(dal[l]);
        for (int h = 0; h < nh; h++) {
            const size_t c = p + 16 * (size_t)h;
            const __m512 gl = acc[2 + l][h], u = ld16(U + l * d + c, mh[h], fh[h]);
            const __m512 du = _mm512_add_ps(_mm512_mul_ps(gl, s2o[h]), _mm512_mul_ps(a, muo[h]));
            ds[h] = _mm512_add_ps(ds[h], _mm512_mul_ps(gl, u));
            dm[h] = _mm512_add_ps(dm[h], _mm512_mul_ps(a, u));
            st16(U + l * d + c, mh[h], fh[h], _mm512_sub_ps(u, _mm512_mul_ps(vU, du)));
        }
    }
    for (int h = 0; h < nh; h++) {
        const size_t c = p + 16 * (size_t)h;
        sn[h] = ld16(sigma + c, mh[h], fh[h]), mn[h] = muo[h];
        if (rS != 0.0f)
            sn[h] = _mm512_sub_ps(
                sn[h], _mm512_mul_ps(vS, _mm512_mul_ps(_mm512_mul_ps(two, sn[h]), ds[h])));
        if (rM != 0.0f) mn[h] = _mm512_sub_ps(mn[h], _mm512_mul_ps(vM, dm[h]));
        s2n[h] = _mm512_mul_ps(sn[h], sn[h]);
        st16(sigma + c, mh[h], fh[h], sn[h]);
        st16(mu + c, mh[h], fh[h], mn[h]);
        st16(muW + c, mh[h], fh[h], mn[h]);
        st16(sig2 + c, mh[h], fh[h], s2n[h]);
    }
    for (size_t l = 0; l < L; l++)
        for (int h = 0; h < nh; h++) {
            const size_t c = p + 16 * (size_t)h;
            const __m512 u = ld16(U + l * d + c, mh[h], fh[h]);
            st16(muW + (1 + l) * d + c, mh[h], fh[h], _mm512_mul_ps(u, s2n[h]));
            if (fh[h])
                _mm512_storeu_ps(part + 16 * l, _mm512_add_ps(_mm512_loadu_ps(part + 16 * l),
                                                              _mm512_mul_ps(u, mn[h])));
        }
}

/* Components [k0, k1) (absolute indices into the parameter and cache arrays), L constant. */
static inline __attribute__((always_inline)) void
tu_run(const size_t L, size_t M, size_t d, size_t k0, size_t k1, const float *X, size_t ldx,
       const float *dF, size_t ldf, const float *dS2, size_t lds, float *U, float *mu, float *sigma,
       float *sig2, float *muW, const float *dal, float rU, float rS, float rM, double *acc) {
    float part[TU_KB * (L ? L : 1) * 16]; /* a's 16-lane partial sums, per (component, l) */
    const size_t dfull = d & ~(size_t)15;
    float x2p[M * TU_PB] __attribute__((aligned(64))); /* M <= TU_MMAX */
    for (size_t kb = k0; kb < k1; kb += TU_KB) {
        const size_t ke = k1 - kb < TU_KB ? k1 : kb + TU_KB;
        for (size_t e = 0; e < (ke - kb) * L * 16; e++)
            part[e] = 0.0f;
        for (size_t p0 = 0; p0 < d; p0 += TU_PB) {
            /* the panel of X * X, formed once for all components (zeros past d) */
            for (size_t i = 0; i < M; i++)
                for (size_t q = 0; q < TU_PB; q += 16) {
                    const __m512 x =
                        p0 + q < d ? _mm512_maskz_loadu_ps(lanes(d - p0 - q), X + i * ldx + p0 + q)
                                   : _mm512_setzero_ps();
                    _mm512_store_ps(x2p + i * TU_PB + q, _mm512_mul_ps(x, x));
                }
            for (size_t k = kb; k < ke; k++)
                for (size_t p = p0; p < p0 + TU_PB && p < d; p += 32) {
                    const float *g = dF + k * (L + 1), *gs = dS2 + k;
                    float *Uk = U + k * L * d, *mk = mu + k * d, *sk = sigma + k * d;
                    float *s2k = sig2 + k * d, *mWk = muW + k * (L + 1) * d;
                    const float *dk = dal + (k - k0) * L;
                    float *pk = part + (k - kb) * L * 16;
                    const float *x2 = x2p + (p - p0);
                    if (p + 32 <= d)
                        tu_tile(L, M, d, p, X, ldx, x2, TU_PB, g, ldf, gs, lds, Uk, mk, sk, s2k,
                                mWk, dk, rU, rS, rM, pk, 1, 0);
                    else if (p + 16 >= d) /* (d = 784's last 16 columns) */
                        tu_tile(L, M, d, p, X, ldx, x2, TU_PB, g, ldf, gs, lds, Uk, mk, sk, s2k,
                                mWk, dk, rU, rS, rM, pk, 0, 1);
                    else
                        tu_tile(L, M, d, p, X, ldx, x2, TU_PB, g, ldf, gs, lds, Uk, mk, sk, s2k,
                                mWk, dk, rU, rS, rM, pk, 0, 0);
                }
        }
        for (size_t k = kb; k < ke; k++) /* dot16's order: the 16 lanes, then the tail */
            for (size_t l = 0; l < L; l++) {
                const float *pl = part + ((k - kb) * L + l) * 16;
                const float *u = U + (k * L + l) * d, *mk = mu + k * d;
                double s = 0.0;
                for (int q = 0; q < 16; q++)
                    s += (double)pl[q];
                for (size_t j = dfull; j < d; j++)
                    s += (double)u[j] * (double)mk[j];
                acc[(k - k0) * L + l] = s;
            }
    }
}

#define TU_INST(n)                                                                                 \
    static void tu_run##n(size_t M, size_t d, size_t k0, size_t k1, const float *X, size_t ldx,    \
                          const float *dF, size_t ldf, const float *dS2, size_t lds, float *U,     \
                          float *mu, float *sigma, float *sig2, float *muW, const float *dal,      \
                          float rU, float rS, float rM, double *acc) {                             \
        tu_run(n, M, d, k0, k1, X, ldx, dF, ldf, dS2, lds, U, mu, sigma, sig2, muW, dal, rU, rS,   \
               rM, acc);                                                                           \
    }
TU_INST(0)
TU_INST(1)
TU_INST(2)
TU_INST(3)
TU_INST(4)
TU_INST(5)
TU_INST(6)
TU_INST(7)
TU_INST(8)
TU_INST(9)
TU_INST(10)

typedef void (*tu_fn)(size_t, size_t, size_t, size_t, const float *, size_t, const float *, size_t,
                      const float *, size_t, float *, float *, float *, float *, float *,
                      const float *, float, float, float, double *);

int gmf_nn_kern_tn_update(size_t M, size_t d, size_t L, size_t k0, size_t k1, const float *X,
                          size_t ldx, const float *dF, size_t ldf, const float *dS2, size_t lds,
                          float *U, float *mu, float *sigma, float *sig2, float *muW,
                          const float *dal, float rU, float rS, float rM, double *acc) {
    static const tu_fn fn[GMF_NN_KERN_TU_LMAX + 1] = {tu_run0, tu_run1, tu_run2, tu_run3,
                                                      tu_run4, tu_run5, tu_run6, tu_run7,
                                                      tu_run8, tu_run9, tu_run10};
    if (L > GMF_NN_KERN_TU_LMAX || M > GMF_NN_KERN_TU_MMAX) return 0;
    if (k1 <= k0 || d == 0) {
        for (size_t e = 0; e < (k1 > k0 ? k1 - k0 : 0) * L; e++)
            acc[e] = 0.0; /* no columns: a's partial sums are empty */
        return 1;
    }
    fn[L](M, d, k0, k1, X, ldx, dF, ldf, dS2, lds, U, mu, sigma, sig2, muW, dal, rU, rS, rM, acc);
    return 1;
}
#endif
