/* gm_gauss.c -- the GM layer's float32 forward Gaussian scalars in AVX-512 lanes (nn_internal.h:
 * gmf_nn_kern_gm_gauss), used by nn_tmpl.h's float instantiation (gm_fwd_scalars) when the build
 * has AVX-512 (GMF_NN_KERN); other builds, float64 and the low-rank layer keep gmf_gauss_batch.
 * Also the GM pool job's loss in lanes of rows (gmf_nn_kern_refloss, at the end; why: there).
 *
 * Why hand-written: gm_fwd_scalars called gmf_gauss_batch (src/core/gauss.c, shared with the
 * flows, 4 points per AVX2 libmvec call) once per row: per row it copied the K means (stride
 * L + 1 in F) and variances into double arrays, ran K / 4 blocks, and converted the four outputs
 * back to float one by one -- about 7 ns per (row, component) point on the Xeon of
 * docs/PERFORMANCE.md (10.7), of which the libmvec erfc + exp are about 2.2 ns.  Here the points
 * of a row range are one flat sequence (point p = i K + k: m at F[p (L + 1)], s^2 at S2[p], the
 * outputs at [p]), 8 points per zmm of doubles: m by one strided gather, s^2 and the outputs by
 * (masked) loads and stores of 8 floats, erfc and exp by glibc's 8-lane AVX-512 libmvec
 * (_ZGVeN8v_erfc, _ZGVeN8v_exp, glibc >= 2.35), in passes over chunks of 256 points (below): about
 * 3.2 ns per point.  The last block of a range is the same vector code under a mask, so every
 * point gets the same arithmetic whatever range (thread) computes it: any split of the rows is
 * bitwise one pass over all rows.
 *
 * The lanes do gmf_gauss_scalars' operations in its order, in double (separate multiplies and
 * adds as the C build compiles them, the same limits: s = 0 or |m| >= 38 s gives Phi = 1{m > 0},
 * phi = 0, where the clamped t = +-38 is not formed since nothing uses it), as gauss.c's 4-lane
 * batch4 does; only erfc and exp are other implementations
 * (libmvec's 8-lane variants, a few ulp in double).  The outputs are rounded to float, so they are
 * nearly always the bits of the 4-lane route; tests/test_gm_gauss.c bounds them against
 * gmf_gauss_scalars in double (1 float ulp) and counts the bits that differ from gmf_gauss_batch.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "nn_internal.h"

#ifdef GMF_NN_KERN
#include <immintrin.h>
#include <math.h>

/* glibc's vector math library (x86_64 vector function ABI, AVX-512 variants: 'e' ISA, 8 lanes;
 * linked through libm.so's AS_NEEDED libmvec, as gauss.c's 4-lane ones). */
__m512d _ZGVeN8v_erfc(__m512d x);
__m512d _ZGVeN8v_exp(__m512d x);

/* gauss.c's clamp: |t| >= 38 is Y = m to double precision (phi < 1e-300) */
#define GM_GAUSS_T_MAX 38.0

/* Points [p0, p1) in chunks of GM_GAUSS_CHUNK, each in three passes over its blocks of 8: (1) m,
 * s, the masks and t (in the regular lanes; 0 elsewhere) into double arrays, (2) erfc, then exp,
 * of those t in tight loops, (3) the outputs.  One pass with both libmvec calls per block kept
 * about 60 values live across each call (the vector ABI saves no zmm register): 4.4 ns per
 * point against 3.2 in passes (microbenchmark, 64 x 20 points, |t| <= 3, core 1). */
#define GM_GAUSS_CHUNK 256

static inline __mmask8 lanes(size_t p, size_t p1) {
    return p1 - p >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (p1 - p)) - 1u);
}

/* The lane indices of the next block of 8 of the component-range sequence (gauss_core's ranged
 * form), from row *i, component k0 + *r on (advanced past the block): point i K + k0 + r, as an
 * offset from the block's first row's point i0 K (i0 = *i on entry): (i - i0) K + k0 + r < 8 K,
 * so the 32-bit lanes (and their product by L + 1) cannot wrap however large B K (L + 1) is --
 * absolute indices did once B K (L + 1) > 2^31 - 1 (review s24, item 3); the caller gathers from
 * F + i0 K (L + 1) and S2 + i0 K (size_t pointers, as the flat form's F + p (L + 1)) and asserts
 * 8 K (L + 1) <= INT32_MAX.  No division (two per block cost more than the block's arithmetic). */
static inline __m256i range_idx(size_t *i, size_t *r, size_t K, size_t k0, size_t nk) {
    const size_t i0 = *i;
    int32_t ix[8];
    for (int j = 0; j < 8; j++) {
        ix[j] = (int32_t)((*i - i0) * K + k0 + *r);
        if (++*r == nk) *r = 0, ++*i;
    }
    return _mm256_setr_epi32(ix[0], ix[1], ix[2], ix[3], ix[4], ix[5], ix[6], ix[7]);
}

/* Points [q0, q1) of the flat sequence (ranged 0: p = q) or of the component-range sequence
 * (ranged 1: q = i nk + (k - k0), p = i K + k; s^2 gathered instead of loaded, the outputs stored
 * in order into a chunk buffer and copied out row by row): the same arithmetic per point either
 * way. */
static inline __attribute__((always_inline)) void
gauss_core(size_t q0, size_t q1, size_t L, const float *F, const float *S2, float *s, float *Phi,
           float *phi, float *A, int ranged, size_t K, size_t k0, size_t nk) {
    const size_t R = L + 1;
    const size_t p0 = q0, p1 = q1;
    /* lane j's offset from point p's mean: j (L + 1) floats */
    const __m256i off =
        _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)R));
    const __m512d zero = _mm512_setzero_pd(), one = _mm512_set1_pd(1.0), half = _mm512_set1_pd(0.5),
                  tmax = _mm512_set1_pd(GM_GAUSS_T_MAX), nrt2 = _mm512_set1_pd(-M_SQRT1_2),
                  nhalf = _mm512_set1_pd(-0.5), ipdf = _mm512_set1_pd(0.5 * M_2_SQRTPI * M_SQRT1_2);
    double mb[GM_GAUSS_CHUNK] __attribute__((aligned(64)));
    double sb[GM_GAUSS_CHUNK] __attribute__((aligned(64)));
    double tb[GM_GAUSS_CHUNK] __attribute__((aligned(64)));
    double Pb[GM_GAUSS_CHUNK] __attribute__((aligned(64)));
    double pb[GM_GAUSS_CHUNK] __attribute__((aligned(64)));
    __mmask8 regb[GM_GAUSS_CHUNK / 8], mposb[GM_GAUSS_CHUNK / 8];
    float ob[4][GM_GAUSS_CHUNK] __attribute__((aligned(64))); /* the ranged form's outputs */
    for (size_t c0 = p0; c0 < p1; c0 += GM_GAUSS_CHUNK) {
        const size_t c1 = p1 - c0 < GM_GAUSS_CHUNK ? p1 : c0 + GM_GAUSS_CHUNK;
        const size_t nb = (c1 - c0 + 7) / 8;
        size_t ri = ranged ? c0 / nk : 0, rr = ranged ? c0 % nk : 0; /* (ranged: c0's row, k) */
        const size_t ri0 = ri, rr0 = rr;
        for (size_t b = 0; b < nb; b++) {
            const size_t p = c0 + 8 * b;
            const __mmask8 mv = lanes(p, c1);
            __m512d m, s2;
            if (ranged) { /* lanes relative to the block's first row (range_idx) */
                const size_t bi = ri;
                const __m256i ix = range_idx(&ri, &rr, K, k0, nk);
                m = _mm512_cvtps_pd(_mm256_mmask_i32gather_ps(
                    _mm256_setzero_ps(), mv, _mm256_mullo_epi32(ix, _mm256_set1_epi32((int)R)),
                    F + bi * K * R, 4));
                s2 = _mm512_cvtps_pd(
                    _mm256_mmask_i32gather_ps(_mm256_setzero_ps(), mv, ix, S2 + bi * K, 4));
            } else {
                m = _mm512_cvtps_pd(
                    _mm256_mmask_i32gather_ps(_mm256_setzero_ps(), mv, off, F + p * R, 4));
                s2 = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(mv, S2 + p));
            }
            /* s = s2 > 0 ? sqrt(s2) : 0 (max_pd returns its second operand for NaN or -0) */
            const __m512d sv = _mm512_sqrt_pd(_mm512_max_pd(s2, zero));
            const __mmask8 spos = _mm512_cmp_pd_mask(sv, zero, _CMP_GT_OQ);
            /* regular: s > 0 and |m| < T_MAX s; otherwise Y = m almost surely, and Phi = 1{m > 0},
             * phi = 0 whatever t is (gmf_gauss_scalars' t = +-T_MAX or 0 is not needed) */
            const __mmask8 reg = _mm512_mask_cmp_pd_mask(spos, _mm512_abs_pd(m),
                                                         _mm512_mul_pd(tmax, sv), _CMP_LT_OQ);
            /* t = m / s in the regular lanes, 0 in the others: erfc and exp of t = +-38 (they
             * underflow) would send the whole block to libmvec's per-lane fallback, and their
             * values are discarded anyway */
            _mm512_store_pd(tb + 8 * b, _mm512_maskz_div_pd(reg, m, sv));
            _mm512_store_pd(mb + 8 * b, m);
            _mm512_store_pd(sb + 8 * b, sv);
            regb[b] = reg;
            mposb[b] = _mm512_cmp_pd_mask(m, zero, _CMP_GT_OQ);
        }
        for (size_t b = 0; b < nb; b++)
            _mm512_store_pd(Pb + 8 * b,
                            _ZGVeN8v_erfc(_mm512_mul_pd(nrt2, _mm512_load_pd(tb + 8 * b))));
        for (size_t b = 0; b < nb; b++) {
            const __m512d t = _mm512_load_pd(tb + 8 * b);
            _mm512_store_pd(pb + 8 * b, _ZGVeN8v_exp(_mm512_mul_pd(_mm512_mul_pd(nhalf, t), t)));
        }
        for (size_t b = 0; b < nb; b++) {
            const size_t p = c0 + 8 * b;
            const __mmask8 mv = lanes(p, c1), reg = regb[b];
            const __m512d m = _mm512_load_pd(mb + 8 * b), sv = _mm512_load_pd(sb + 8 * b);
            const __m512d P = _mm512_mul_pd(half, _mm512_load_pd(Pb + 8 * b));
            const __m512d pd = _mm512_mul_pd(_mm512_load_pd(pb + 8 * b), ipdf);
            const __m512d Phv = _mm512_mask_blend_pd(reg, _mm512_maskz_mov_pd(mposb[b], one), P);
            const __m512d phv = _mm512_maskz_mov_pd(reg, pd);
            const __m512d Av = _mm512_add_pd(_mm512_mul_pd(m, Phv), _mm512_mul_pd(sv, phv));
            if (ranged) { /* the chunk's outputs in order, copied out by rows below */
                _mm256_store_ps(ob[0] + 8 * b, _mm512_cvtpd_ps(sv));
                _mm256_store_ps(ob[1] + 8 * b, _mm512_cvtpd_ps(Phv));
                _mm256_store_ps(ob[2] + 8 * b, _mm512_cvtpd_ps(phv));
                _mm256_store_ps(ob[3] + 8 * b, _mm512_cvtpd_ps(Av));
            } else {
                _mm256_mask_storeu_ps(s + p, mv, _mm512_cvtpd_ps(sv));
                _mm256_mask_storeu_ps(Phi + p, mv, _mm512_cvtpd_ps(Phv));
                _mm256_mask_storeu_ps(phi + p, mv, _mm512_cvtpd_ps(phv));
                _mm256_mask_storeu_ps(A + p, mv, _mm512_cvtpd_ps(Av));
            }
        }
        /* ranged: each row's run of the chunk's points (up to nk consecutive components) with
         * masked 16-float copies (instead of 4 scatters per block: the same time within the
         * microbenchmark's noise while the indices still took two divisions per block) */
        for (size_t q = c0, i = ri0, r = rr0; ranged && q < c1; i++, r = 0) {
            const size_t len = nk - r < c1 - q ? nk - r : c1 - q;
            for (size_t e = 0; e < len; e += 16) {
                const __mmask16 mk =
                    len - e >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (len - e)) - 1u);
                const size_t so = q - c0 + e, dp = i * K + k0 + r + e;
                _mm512_mask_storeu_ps(s + dp, mk, _mm512_maskz_loadu_ps(mk, ob[0] + so));
                _mm512_mask_storeu_ps(Phi + dp, mk, _mm512_maskz_loadu_ps(mk, ob[1] + so));
                _mm512_mask_storeu_ps(phi + dp, mk, _mm512_maskz_loadu_ps(mk, ob[2] + so));
                _mm512_mask_storeu_ps(A + dp, mk, _mm512_maskz_loadu_ps(mk, ob[3] + so));
            }
            q += len;
        }
    }
}

void gmf_nn_kern_gm_gauss(size_t p0, size_t p1, size_t L, const float *F, const float *S2, float *s,
                          float *Phi, float *phi, float *A) {
    gauss_core(p0, p1, L, F, S2, s, Phi, phi, A, 0, 0, 0, 1);
}

void gmf_nn_kern_gm_gauss_cols(size_t B, size_t K, size_t k0, size_t k1, size_t L, const float *F,
                               const float *S2, float *s, float *Phi, float *phi, float *A) {
    if (k1 <= k0 || B == 0) return;
    /* the ranged form's 32-bit lane offsets (range_idx) stay below 8 K (L + 1) */
    assert(K <= (size_t)INT32_MAX / 8 / (L + 1));
    if (k0 == 0 && k1 == K) /* every component: the flat sequence */
        gauss_core(0, B * K, L, F, S2, s, Phi, phi, A, 0, 0, 0, 1);
    else
        gauss_core(0, B * (k1 - k0), L, F, S2, s, Phi, phi, A, 1, K, k0, k1 - k0);
}

/* glibc's 8-lane AVX-512 libmvec log, for the loss below */
__m512d _ZGVeN8v_log(__m512d x);

/* gmf_nn_kern_refloss: nn_tmpl.h's gmf_nn_refloss for float, 8 rows per zmm of doubles (why by
 * hand: the C loop makes L + 1 scalar exp calls, one log and L divisions per row -- 640 exp per
 * step, with the output sum 3 % of an epoch -- and GCC does not vectorize it across rows).  Row
 * i + r is lane r; each lane does the C loop's operations in its order (the max over [0, h] with
 * its NaN behaviour, se = exp(-mx) + sum_l exp(h_l - mx), lse = mx + log(se), loss = lse - h_y,
 * dH_l = dscale (e_l / se - 1{y = l})), with libmvec's 8-lane exp and log (a few ulp, against
 * < 1 ulp for glibc's scalar calls).  The sum of the losses runs over the rows in order as there.
 * The lanes are independent, so any split of the rows gives the same lossv and dH. */
double gmf_nn_kern_refloss(float *dH, double *lossv, const float *H, const uint8_t *y,
                           double dscale, size_t B, size_t L) {
    double total = 0.0;
    double e[GMF_NN_REFLOSS_LMAX * 8] __attribute__((aligned(64)));
    const __m512d zero = _mm512_setzero_pd(), one = _mm512_set1_pd(1.0),
                  ds = _mm512_set1_pd(dscale);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i off = _mm256_mullo_epi32(lane, _mm256_set1_epi32((int)L)); /* row r: r L */
    for (size_t i = 0; i < B; i += 8) {
        const size_t nr = B - i < 8 ? B - i : 8;
        const __mmask8 mr = (__mmask8)((1u << nr) - 1u);
        const float *h = H + i * L;
        /* labels of the 8 rows (0 past the end; a copy, not a masked byte load, which would need
         * AVX512BW where the other kernels need only AVX512F + VL) */
        int32_t yl[8] = {0};
        for (size_t r = 0; r < nr; r++)
            yl[r] = y[i + r];
        const __m256i yv = _mm256_loadu_si256((const __m256i *)yl);
        __m512d mx = zero, hy = zero;
        for (size_t l = 0; l < L; l++) {
            const __m512d hl =
                _mm512_cvtps_pd(_mm256_mmask_i32gather_ps(_mm256_setzero_ps(), mr, off, h + l, 4));
            _mm512_store_pd(e + 8 * l, hl); /* h_l for now */
            /* if (h[l] > mx) mx = h[l] */
            mx = _mm512_mask_mov_pd(mx, _mm512_cmp_pd_mask(hl, mx, _CMP_GT_OQ), hl);
            hy = _mm512_mask_mov_pd(hy, _mm256_cmpeq_epi32_mask(yv, _mm256_set1_epi32((int)l + 1)),
                                    hl);
        }
        __m512d se = _ZGVeN8v_exp(_mm512_sub_pd(zero, mx)); /* exp(-mx) */
        for (size_t l = 0; l < L; l++) {
            const __m512d el = _ZGVeN8v_exp(_mm512_sub_pd(_mm512_load_pd(e + 8 * l), mx));
            _mm512_store_pd(e + 8 * l, el);
            se = _mm512_add_pd(se, el);
        }
        const __m512d lse = _mm512_add_pd(mx, _ZGVeN8v_log(se));
        const __m512d li = _mm512_sub_pd(lse, hy);
        double lv[8] __attribute__((aligned(64)));
        _mm512_store_pd(lv, li);
        for (size_t r = 0; r < nr; r++) {
            if (lossv) lossv[i + r] = lv[r];
            total += lv[r];
        }
        if (!dH) continue;
        for (size_t l = 0; l < L; l++) {
            const __mmask8 isy = _mm256_cmpeq_epi32_mask(yv, _mm256_set1_epi32((int)l + 1));
            const __m512d ind = _mm512_maskz_mov_pd(isy, one);
            const __m512d g =
                _mm512_mul_pd(ds, _mm512_sub_pd(_mm512_div_pd(_mm512_load_pd(e + 8 * l), se), ind));
            _mm256_mask_i32scatter_ps(dH + i * L + l, mr, off, _mm512_cvtpd_ps(g), 4);
        }
    }
    return total;
}
#endif
