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
#endif
