/* gm_kern_xt.c -- the GM layer's two forward products of the float32 step from the transposed
 * batch X^T (nn_internal.h: gmf_nn_kern_xt_trans, gmf_nn_kern_xt), AVX-512 builds only
 * (GMF_NN_KERN), used by nn_tmpl.h's float instantiation for F = X [mu; W]^T and
 * S2 = (X * X) (sigma^2)^T (and the low-rank layer's F = X E^T).
 *
 * Why hand-written, and why this layout (docs/PERFORMANCE.md section 10.3): gm_kern.c's nt form
 * reads X and the parameter rows both contiguous in d, so its 4 x 4 register tile needs 8 vector
 * loads per 16 FMAs plus a reduction tree, and one operand always streams from L2 at about
 * 32 B/cycle: 131 GFLOP/s against 144-200 for a large SGEMM.  Here the batch is the vector
 * dimension: X^T (d rows of the batch, formed once per step) gives, for each p, 64 batch entries
 * in 4 zmm; a tile of 6 parameter rows x 64 batch columns keeps 24 accumulators, and each p
 * costs 4 loads of X^T + 6 broadcasts of parameters for 24 FMAs (no reduction: every output's
 * sum is one FMA chain over p = 0 .. d-1).  The tile is written into C (B x N, the layout the
 * scalar code reads) through an in-register 8 x 16 transpose per 16 batch columns.
 *
 * Summation order: C[i, j] = (((x_0 b_0 + x_1 b_1) + x_2 b_2) + ...) in p order, one FMA chain,
 * the same for every i, j whatever M, N, the tiling, the offsets or the thread split, so a range
 * of rows or columns is bitwise the whole product's.  It differs from gm_kern.c's nt order (16
 * lanes, then a tree) in the last bits.  Tested against double by tests/test_gm_kern_xt.c. */
#include <stddef.h>
#include <stdint.h>

#include "nn_internal.h"

#ifdef GMF_NN_KERN
#include <immintrin.h>

#define XT_P 64 /* batch columns per X^T panel (nn_internal.h) */

/* mask of the first n (0..16) lanes */
static inline __mmask16 lanes(size_t n) {
    return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
}

/* r[0..16) = the 16 x 16 block's rows; returns its transpose in r (4 shuffle stages). */
static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int k = 0; k < 8; k++) { /* pairs of rows: [a0 b0 a1 b1] per 128-bit lane */
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    for (int k = 0; k < 4; k++) { /* quads: rows 4k..4k+3 of column 4 lane + m */
        r[4 * k + 0] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], 0x44);
        r[4 * k + 1] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], 0xEE);
        r[4 * k + 2] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0x44);
        r[4 * k + 3] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0xEE);
    }
    /* r[4k + m] lane q: rows 4k..4k+3 of column 4q + m.  Gather the 128-bit lanes: column
     * 4q + m = [r[m].q, r[4 + m].q, r[8 + m].q, r[12 + m].q]. */
    for (int m = 0; m < 4; m++) {
        const __m512 a = _mm512_shuffle_f32x4(r[m], r[4 + m], 0x44);      /* r[m].0,1  r[4+m].0,1 */
        const __m512 b = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0x44); /* r[8+m].0,1 ... */
        const __m512 c = _mm512_shuffle_f32x4(r[m], r[4 + m], 0xEE);      /* lanes 2,3 */
        const __m512 e = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0xEE);
        t[m] = _mm512_shuffle_f32x4(a, b, 0x88);      /* column m:      lanes .0 of the four */
        t[4 + m] = _mm512_shuffle_f32x4(a, b, 0xDD);  /* column 4 + m:  lanes .1 */
        t[8 + m] = _mm512_shuffle_f32x4(c, e, 0x88);  /* column 8 + m:  lanes .2 */
        t[12 + m] = _mm512_shuffle_f32x4(c, e, 0xDD); /* column 12 + m: lanes .3 */
    }
    for (int k = 0; k < 16; k++)
        r[k] = t[k];
}

/* X^T's 16 columns [p, p + 16) of the full block of rows [i, i + 16) of Y (row-major, ldy), read
 * as 4 x 4 sub-blocks: register z[k] holds in its 128-bit lane j row 4 j + k's 4 columns (one
 * load and three 128-bit insertions from memory: load ports and any vector port), and one
 * in-lane 4 x 4 transpose per 4 columns finishes them (2 shuffles per 16 floats, against 4 for
 * transpose16).  Y's rows just stored (gmf_nn_kern_xt_conv_u8): read from L1.  (Used for
 * gmf_nn_kern_xt_trans's float X in L2 as well, it changed nothing: 5.13-5.18 against
 * 5.19-5.27 us per 64 x 784, docs/PERFORMANCE.md.)  T: column i, row p of X^T. */
static inline void trans_block16(const float *Y, size_t ldy, float *T) {
    for (size_t h = 0; h < 4; h++) {
        __m512 z[4];
        for (size_t k = 0; k < 4; k++) {
            const float *y = Y + k * ldy + 4 * h;
            __m512 v = _mm512_castps128_ps512(_mm_loadu_ps(y));
            v = _mm512_insertf32x4(v, _mm_loadu_ps(y + 4 * ldy), 1);
            v = _mm512_insertf32x4(v, _mm_loadu_ps(y + 8 * ldy), 2);
            z[k] = _mm512_insertf32x4(v, _mm_loadu_ps(y + 12 * ldy), 3);
        }
        const __m512 t0 = _mm512_unpacklo_ps(z[0], z[1]), t1 = _mm512_unpackhi_ps(z[0], z[1]);
        const __m512 t2 = _mm512_unpacklo_ps(z[2], z[3]), t3 = _mm512_unpackhi_ps(z[2], z[3]);
        float *t = T + 4 * h * XT_P; /* column 4 h + m: rows 0..15 in order */
        _mm512_storeu_ps(t, _mm512_shuffle_ps(t0, t2, 0x44));
        _mm512_storeu_ps(t + XT_P, _mm512_shuffle_ps(t0, t2, 0xEE));
        _mm512_storeu_ps(t + 2 * XT_P, _mm512_shuffle_ps(t1, t3, 0x44));
        _mm512_storeu_ps(t + 3 * XT_P, _mm512_shuffle_ps(t1, t3, 0xEE));
    }
}

void gmf_nn_kern_xt_trans(size_t d, const float *X, size_t ldx, size_t i0, size_t i1, float *XT) {
    /* blocks of up to 16 rows that do not cross a multiple of 16 (so not a panel's edge either):
     * block [i, i + nr) goes to lanes i % 64 .. of its panel's rows */
    for (size_t i = i0; i < i1;) {
        const size_t e = (i / 16 + 1) * 16, nr = (i1 < e ? i1 : e) - i;
        const __mmask16 mr = lanes(nr);
        float *const T = XT + (i / XT_P) * XT_P * d + i % XT_P; /* column i, row p = 0 */
        for (size_t p = 0; p < d; p += 16) {
            const size_t np = d - p < 16 ? d - p : 16;
            const __mmask16 mp = lanes(np);
            __m512 r[16];
            for (size_t k = 0; k < 16; k++)
                r[k] =
                    k < nr ? _mm512_maskz_loadu_ps(mp, X + (i + k) * ldx + p) : _mm512_setzero_ps();
            transpose16(r);
            for (size_t k = 0; k < np; k++)
                _mm512_mask_storeu_ps(T + (p + k) * XT_P, mr, r[k]);
        }
        i += nr;
    }
}

/* 16 standardized floats of one row's bytes x[0..n) (n <= 16; lanes past n are zero):
 * (float)(((double)x_j - mean) * inv), the operations of gmf_dataset_u8_value and of
 * gmf_dataset_u8_row's 8-lane loop, so bitwise their values. */
static inline __m512 conv16(const uint8_t *x, size_t n, double mean, double inv) {
    uint8_t t[16] = {0};
    if (n < 16) { /* (a byte-masked load would need AVX512BW+VL; the tail is rare) */
        for (size_t j = 0; j < n; j++)
            t[j] = x[j];
        x = t;
    }
    const __m512d m = _mm512_set1_pd(mean), iv = _mm512_set1_pd(inv);
#if defined(__AVX512DQ__) && !defined(GMF_CONV_DQ0)
    /* 8 bytes -> 8 int64 -> 8 doubles per half (vpmovzxbq from memory + vcvtqq2pd: one
     * shuffle-port uop per 8 values; the int32 route below takes two: the widening and the
     * 256-bit extract, and its vcvtdq2pd is a port-0 + port-5 pair) -- the shuffle port is this
     * kernel's bottleneck, with the transposition's 4 shuffles per 16 values */
    const __m512d lo =
        _mm512_cvtepi64_pd(_mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)x)));
    const __m512d hi =
        _mm512_cvtepi64_pd(_mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)(x + 8))));
#else
    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)x));
    const __m512d lo = _mm512_cvtepi32_pd(_mm512_castsi512_si256(v));
    const __m512d hi = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(v, 1));
#endif
    const __m256 a = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_sub_pd(lo, m), iv));
    const __m256 c = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_sub_pd(hi, m), iv));
    return _mm512_insertf32x8(_mm512_castps256_ps512(a), c, 1);
}

/* 8 standardized floats of x[0..8) (the full blocks' half-row; as conv16) */
static inline __m256 conv8(const uint8_t *x, __m512d m, __m512d iv) {
#if defined(__AVX512DQ__) && !defined(GMF_CONV_DQ0)
    const __m512d v = _mm512_cvtepi64_pd(_mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)x)));
#else
    const __m512d v = _mm512_cvtepi32_pd(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)x)));
#endif
    return _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_sub_pd(v, m), iv));
}

/* Where this kernel stands (s23-conv, docs/PERFORMANCE.md 10.11; conv_bench in
 * bench/results/xeon_20261201_s23_conv/): 0.17-0.18 ns per element (8.3-9.4 us per 64 x 784
 * batch), the same with everything in L1 (d = 64): bound by its vector uops on the two 512-bit
 * ports (p0, p5), not by memory.  Per 16 x 16 block, 192 uops of conversion (per 8 bytes:
 * widening, int64 -> double, subtract, multiply, double -> float as two uops: the double
 * operations of gmf_dataset_u8_value, which the bitwise contract requires) and 80 of
 * transposition (48 insertions, 32 shuffles): 136 cycles if both ports were busy every cycle,
 * about 180 measured (4.05 GHz).  Its floor at d = 784 is the output: storing X and X^T alone
 * (400 KB, L2-resident) takes 6.1-6.2 us, 7.1-7.4 with the bytes read, and with the conversion
 * cut to a third (wrong values) the kernel runs at that floor: 1.2-1.3x is all that any
 * arithmetic saving could give.  Tried and slower (figures in 10.11): zero bytes skipped per
 * 8-byte half (0.89x on MNIST batches; presumably a mispredicted loop exit per block) or per
 * all-zero 16 x 16 block (1.005x: those blocks still write their 2 KB); X^T from the converted
 * registers with 128-bit lane stores (0.97x; the upper lanes' stores presumably take a shuffle
 * uop) or masked 512-bit stores (0.62x: each splits a line); prefetchw of the next blocks'
 * output lines (0.78x); the columns outer over 64-row panels (0.99x); the widening by a
 * broadcast load and two shifts (port 0) instead of vpmovzxbq (port 5) (0.93x); the block's
 * 16-row loop unrolled (0.97x).  The code of those variants: commit 4edba1e (the last two:
 * variant_zxshift.txt, variant_unroll.txt). */
void gmf_nn_kern_xt_conv_u8(size_t d, const uint8_t *S, size_t lds, const double *scale, size_t i0,
                            size_t i1, float *X, size_t ldx, float *XT) {
    /* as gmf_nn_kern_xt_trans, but the 16 x 16 block's rows come from the bytes (converted in
     * registers) and are stored into X as well, and X^T is formed from them while they are in
     * L1, instead of reading X back from L2 in a second pass */
    for (size_t i = i0; i < i1;) {
        const size_t e = (i / 16 + 1) * 16, nr = (i1 < e ? i1 : e) - i;
        const __mmask16 mr = lanes(nr);
        float *const T = XT + (i / XT_P) * XT_P * d + i % XT_P;
        for (size_t p = 0; p < d; p += 16) {
            const size_t np = d - p < 16 ? d - p : 16;
            if (nr == 16 && np == 16) {
                /* a full block (the common case): each row's two converted halves are stored
                 * into X, then X^T's 16 columns are read back from those stores (L1, store
                 * forwarding) as 4 x 4 sub-blocks, four 128-bit pieces per register (one load
                 * and three insertions from memory: load ports and any vector port), and only
                 * the in-lane 4 x 4 transposes use the shuffle port (trans_block16): 2 shuffles
                 * per 16 floats against 4 for transpose16 plus 1 for joining the halves.  The
                 * kernel is bound by the two 512-bit vector ports: about 272 uops per block,
                 * 192 of them the conversion (docs/PERFORMANCE.md) */
                for (size_t k = 0; k < 16; k++) {
                    const __m512d m = _mm512_set1_pd(scale[2 * (i + k)]);
                    const __m512d iv = _mm512_set1_pd(scale[2 * (i + k) + 1]);
                    const uint8_t *x = S + (i + k) * lds + p;
                    float *y = X + (i + k) * ldx + p;
                    _mm256_storeu_ps(y, conv8(x, m, iv));
                    _mm256_storeu_ps(y + 8, conv8(x + 8, m, iv));
                }
                trans_block16(X + i * ldx + p, ldx, T + p * XT_P);
                continue;
            }
            const __mmask16 mp = lanes(np);
            __m512 r[16];
            for (size_t k = 0; k < 16; k++) {
                if (k < nr) {
                    const size_t q = i + k;
                    r[k] = conv16(S + q * lds + p, np, scale[2 * q], scale[2 * q + 1]);
                    _mm512_mask_storeu_ps(X + q * ldx + p, mp, r[k]);
                } else {
                    r[k] = _mm512_setzero_ps();
                }
            }
            transpose16(r);
            for (size_t k = 0; k < np; k++)
                _mm512_mask_storeu_ps(T + (p + k) * XT_P, mr, r[k]);
        }
        i += nr;
    }
}

#define XT_R 6 /* parameter rows per register tile (6 x 4 zmm = 24 accumulators) */

/* Write the tile acc[r][q] (rows j..j+R of C^T, batch columns c0 + 16 q + lane) into C
 * (row-major, C[(c0 + col) * ldc + j + r]) for the batch columns col < ncol: per 16 columns an
 * 8 x 16 transpose in registers (rows R..7 zero), then one 4-float and one 1-2-float masked
 * store per batch column. */
static inline __attribute__((always_inline)) void
store_tile(const __m512 acc[XT_R][4], int R, int NV, float *C, size_t ldc, size_t ncol) {
    const __m512 z = _mm512_setzero_ps();
    for (int q = 0; q < NV; q++) {
        if ((size_t)(16 * q) >= ncol) break;
        const __m512 r0 = acc[0][q], r1 = R > 1 ? acc[1][q] : z, r2 = R > 2 ? acc[2][q] : z;
        const __m512 r3 = R > 3 ? acc[3][q] : z, r4 = R > 4 ? acc[4][q] : z;
        const __m512 r5 = R > 5 ? acc[5][q] : z;
        const __m512 t0 = _mm512_unpacklo_ps(r0, r1), t1 = _mm512_unpackhi_ps(r0, r1);
        const __m512 t2 = _mm512_unpacklo_ps(r2, r3), t3 = _mm512_unpackhi_ps(r2, r3);
        const __m512 t4 = _mm512_unpacklo_ps(r4, r5), t5 = _mm512_unpackhi_ps(r4, r5);
        /* u[m] lane k: rows 0-3 of column 4k + m; t4 lane k: rows 4-5 of columns 4k, 4k + 1;
         * t5: of 4k + 2, 4k + 3 */
        __m512 u[4];
        u[0] = _mm512_shuffle_ps(t0, t2, 0x44), u[1] = _mm512_shuffle_ps(t0, t2, 0xEE);
        u[2] = _mm512_shuffle_ps(t1, t3, 0x44), u[3] = _mm512_shuffle_ps(t1, t3, 0xEE);
        const __mmask8 lo = (__mmask8)((1u << (R < 4 ? R : 4)) - 1u);
        const __mmask8 hi = (__mmask8)(R > 4 ? (1u << (R - 4)) - 1u : 0u);
        for (int k = 0; k < 4; k++) {
            __m128 a[4], h0 = _mm_setzero_ps(), h1 = _mm_setzero_ps();
            if (k == 0) {
                for (int m = 0; m < 4; m++)
                    a[m] = _mm512_castps512_ps128(u[m]);
                if (R > 4) h0 = _mm512_castps512_ps128(t4), h1 = _mm512_castps512_ps128(t5);
            } else {
                for (int m = 0; m < 4; m++)
                    a[m] = k == 1   ? _mm512_extractf32x4_ps(u[m], 1)
                           : k == 2 ? _mm512_extractf32x4_ps(u[m], 2)
                                    : _mm512_extractf32x4_ps(u[m], 3);
                if (R > 4) {
                    h0 = k == 1   ? _mm512_extractf32x4_ps(t4, 1)
                         : k == 2 ? _mm512_extractf32x4_ps(t4, 2)
                                  : _mm512_extractf32x4_ps(t4, 3);
                    h1 = k == 1   ? _mm512_extractf32x4_ps(t5, 1)
                         : k == 2 ? _mm512_extractf32x4_ps(t5, 2)
                                  : _mm512_extractf32x4_ps(t5, 3);
                }
            }
            for (int m = 0; m < 4; m++) {
                const size_t col = (size_t)(16 * q + 4 * k + m);
                if (col >= ncol) break;
                float *o = C + col * ldc;
                if (R >= 4)
                    _mm_storeu_ps(o, a[m]);
                else
                    _mm_mask_storeu_ps(o, lo, a[m]);
                if (R > 4) { /* rows 4, 5: low (m even) or high (m odd) half of h0 / h1 */
                    const __m128 h = m < 2 ? h0 : h1;
                    if (m % 2 == 0)
                        _mm_mask_storeu_ps(o + 4, hi, h);
                    else
                        _mm_mask_storeu_ps(o + 2, (__mmask8)(hi << 2), h);
                }
            }
        }
    }
}

/* One tile: rows b[0..R) of the parameters (stride ldb), batch columns [0, ncol) of XT (rows
 * of a panel, XT_P floats apart; ncol <= 16 NV; full: ncol == 64, plain loads), all d, written
 * into C (column j of row 0 at C). */
static inline __attribute__((always_inline)) void xt_tile(int R, int NV, size_t d, const float *XT,
                                                          const float *b, size_t ldb, float *C,
                                                          size_t ldc, size_t ncol, int sq,
                                                          int full) {
    __m512 acc[XT_R][4];
    for (int r = 0; r < XT_R; r++)
        for (int q = 0; q < 4; q++)
            acc[r][q] = _mm512_setzero_ps();
    __mmask16 m[4];
    for (int q = 0; q < 4; q++)
        m[q] = (size_t)(16 * q) < ncol ? lanes(ncol - (size_t)(16 * q)) : 0;
    for (size_t p = 0; p < d; p++) {
        const float *xp = XT + p * XT_P;
        __m512 x[4];
        for (int q = 0; q < NV; q++) {
            x[q] = full ? _mm512_loadu_ps(xp + 16 * q) : _mm512_maskz_loadu_ps(m[q], xp + 16 * q);
            if (sq) x[q] = _mm512_mul_ps(x[q], x[q]);
        }
        for (int r = 0; r < R; r++) {
            const __m512 s = _mm512_set1_ps(b[(size_t)r * ldb + p]);
            for (int q = 0; q < NV; q++)
                acc[r][q] = _mm512_fmadd_ps(s, x[q], acc[r][q]);
        }
    }
    store_tile(acc, R, NV, C, ldc, ncol);
}

/* the instances: R (1..6) and NV (1..4) constant, squared or not, full 64-column block or
 * masked */
#define XT_NV(R, NV)                                                                               \
    case NV:                                                                                       \
        if (sq)                                                                                    \
            xt_tile(R, NV, d, XT, b, ldb, C, ldc, ncol, 1, 0);                                     \
        else                                                                                       \
            xt_tile(R, NV, d, XT, b, ldb, C, ldc, ncol, 0, 0);                                     \
        break;
#define XT_CASE(R)                                                                                 \
    case R:                                                                                        \
        if (full && sq)                                                                            \
            xt_tile(R, 4, d, XT, b, ldb, C, ldc, 64, 1, 1);                                        \
        else if (full)                                                                             \
            xt_tile(R, 4, d, XT, b, ldb, C, ldc, 64, 0, 1);                                        \
        else                                                                                       \
            switch ((ncol + 15) / 16) {                                                            \
                XT_NV(R, 1)                                                                        \
                XT_NV(R, 2)                                                                        \
                XT_NV(R, 3)                                                                        \
                XT_NV(R, 4)                                                                        \
            default:                                                                               \
                break;                                                                             \
            }                                                                                      \
        break;

static void xt_tile_any(size_t R, size_t d, const float *XT, const float *b, size_t ldb, float *C,
                        size_t ldc, size_t ncol, int sq) {
    const int full = ncol == XT_P;
    switch (R) {
        XT_CASE(1)
        XT_CASE(2)
        XT_CASE(3)
        XT_CASE(4)
        XT_CASE(5)
        XT_CASE(6)
    default:
        break;
    }
}

void gmf_nn_kern_xt(size_t M, size_t N, size_t d, const float *XT, size_t i0, const float *B,
                    size_t ldb, float *C, size_t ldc, int sq) {
    if (M == 0 || N == 0) return;
    /* N rows in ceil(N / 6) tiles of as equal sizes as possible (200 = 30 x 6 + 4 x 5, 20 =
     * 4 x 5): a tile of 2 rows would load 4 X^T vectors per 8 FMAs */
    const size_t nt = (N + XT_R - 1) / XT_R, base = N / nt, extra = N % nt;
    /* batch blocks (a panel, or the part of one in [i0, i0 + M)) outer: the block's X^T (d x 64
     * floats, 200 KB at d = 784, contiguous) stays in L2 while the tiles walk down the
     * parameter rows */
    for (size_t i = 0; i < M;) {
        const size_t col = i0 + i, off = col % XT_P;
        const size_t ncol = XT_P - off < M - i ? XT_P - off : M - i;
        const float *xb = XT + (col / XT_P) * XT_P * d + off;
        size_t j = 0;
        for (size_t t = 0; t < nt; t++) {
            const size_t R = base + (t < extra);
            xt_tile_any(R, d, xb, B + j * ldb, ldb, C + i * ldc + j, ldc, ncol, sq);
            j += R;
        }
        i += ncol;
    }
}
#endif
