/* gm_scal.c -- the GM layer's float32 backward scalars in AVX-512 lanes (nn_internal.h:
 * gmf_nn_kern_gm_bwd_scalars), used by nn_tmpl.h's float instantiation (gm_bwd_scalars) when the
 * build has AVX-512 (GMF_NN_KERN); other builds and float64 keep the C loop there.
 *
 * Why hand-written: the C loop runs one (row, component) pair at a time: two length-L dot
 * products in double whose adds form a dependent chain, L float->double conversions of each
 * operand, and three dependent double divisions (phi / s, m / s^2, / (2 s)) per pair -- 1280
 * pairs per step, 6-7 % of an epoch's samples (docs/PERFORMANCE.md section 10.4).  GCC does not
 * vectorize it (the sums run along l, the phi > 0 test stays a branch).  Here 8 components share
 * one zmm of doubles: the sums along l become independent lanes, a_k is converted to double once
 * per call, G_ik (stride L + 1 in the row) is read with one gather per l, and each division covers
 * 8 pairs.
 *
 * Every lane does the C loop's operations in its order, with two exceptions (session 22,
 * docs/PERFORMANCE.md section 10.9): the dot products' and da's multiply-adds are FMAs (each
 * product of two floats is exact in double, so the FMA rounds exactly like the C loop's add:
 * bitwise the same), and the three divisions are one, y = 1/s, times multiplies (phi / s -> phi y,
 * m / s^2 -> m y y, / (2 s) -> (y / 2)): dm and dS2 differ from the C loop's in the last bits of
 * the double, so their floats may differ by one rounding (none of 182,560 in tests/test_gm_scal.c;
 * trained checkpoints unchanged).  dG, da and the weight gradient stay bitwise the C loop's.
 * dF's row part of a chunk (m and G of 8 components, 8 (L + 1) floats) is written as contiguous
 * blocks of 8 (L < 16): each entry cv_j dh_e or dm_j 1.0 picked by two permutes (the per-component
 * stores with their conversions of dh were 40 % of the kernel); L = 9 has its own instance (the l
 * loops unrolled, da's sums in registers), and a last chunk of up to 4 components runs in 4 lanes.
 * gm_scal_bench (B 64, K 20, L 9): 7.96 -> 5.4 us per call.
 *
 * gmf_nn_kern_gm_reduce_rows: the forward's output sum h_i = sum_k w_k [A_ik a_k + Phi_ik G_ik]
 * over 8 logits per zmm of doubles and 4 rows at a time, bitwise nn_tmpl.h's gm_reduce_rows(_w)
 * (the same test; A a + Phi G as fma(A, a, Phi G): both products exact in double). */
#include <stddef.h>
#include <stdint.h>

#include "nn_internal.h"

#ifdef GMF_NN_KERN
#include <immintrin.h>

/* Components kc .. kc + 7 (nv valid lanes) of every row; see nn_internal.h for the formulas. */
static inline __attribute__((always_inline)) void
chunk8(size_t B, size_t K, size_t L, size_t kc, size_t nv, const float *a, const float *F,
       const float *A, const float *Phi, const float *phi, const float *s, const float *dH,
       const double *sc, double invK, float *dF, float *dS2, double *da, double *gk, double *aT,
       double *daT, int narrow) {
    const size_t W = K * (L + 1);
    const __mmask8 mv = (__mmask8)((1u << nv) - 1u);
    const __m512d zero = _mm512_setzero_pd();
    /* a_k^T in double: aT[8 l + lane] = a[(kc + lane) L + l] (the C loop converts a[l] per use) */
    for (size_t l = 0; l < L; l++)
        for (size_t j = 0; j < 8; j++)
            aT[8 * l + j] = j < nv ? (double)a[(kc + j) * L + l] : 0.0;
    for (size_t l = 0; l < L; l++)
        _mm512_store_pd(daT + 8 * l, zero);
    /* lane j's offset of component kc + j in a row of F / dF */
    const __m256i off = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                           _mm256_set1_epi32((int)(L + 1)));
    const __m128i off4 = _mm256_castsi256_si128(off);
    const __m512d inv = sc ? _mm512_maskz_loadu_pd(mv, sc + kc) : _mm512_set1_pd(invK);
    const __m512d half = _mm512_set1_pd(0.5);
    __m512d gkv = zero;
    double cvs[8] __attribute__((aligned(64))), dmv[8] __attribute__((aligned(64)));
    double hd[GMF_NN_SCAL_LMAX] __attribute__((aligned(64))) = {0};
    /* L < 16: the row's dF entries of the chunk, P = nv (L + 1) positions in nb blocks of 8;
     * position p = 8 b + t is (j, e) = (p / (L + 1), p % (L + 1)): e = 0 is m_j (dm_j * 1.0),
     * e > 0 is G_j,e-1 (cv_j * dh_e-1).  cidx picks cv_j (j) or dm_j (8 + j) from (cv, dm), hidx
     * dh_e-1 (e - 1) or 1.0 (15, h1's last lane) from (h0, h1) = dh_0..7, dh_8..14 in double. */
    const size_t P = nv * (L + 1), nb = (P + 7) / 8;
    __m512i cidx[16], hidx[16];
    __mmask8 mlast = 0xff;
    const __m512d one = _mm512_set1_pd(1.0);
    if (L < 16) {
        for (size_t b = 0; b < nb; b++) {
            int64_t ci[8], hi[8];
            for (size_t t = 0; t < 8; t++) {
                const size_t p = 8 * b + t, j = p / (L + 1) % 8, e = p % (L + 1);
                ci[t] = (int64_t)(e == 0 ? 8 + j : j);
                hi[t] = (int64_t)(e == 0 ? 15 : e - 1);
            }
            cidx[b] = _mm512_loadu_si512(ci);
            hidx[b] = _mm512_loadu_si512(hi);
        }
        if (P % 8) mlast = (__mmask8)((1u << (P % 8)) - 1u);
    }
    for (size_t i = 0; i < B; i++) {
        const float *dh = dH + i * L;
        const float *Fi =
            F + i * W + kc * (L + 1); /* m of lane 0; G_l of lane j at 1 + l + off_j */
        float *dFi = dF + i * W + kc * (L + 1);
        const size_t ik = i * K + kc;
        const __m512d Av = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(mv, A + ik));
        const __m512d Phv = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(mv, Phi + ik));
        const __m512d phv = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(mv, phi + ik));
        const __m512d sv = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(mv, s + ik));
        __m512d dA = zero, dPhi = zero;
        /* dh_i in double once per row (hd): broadcast from memory below, no shuffle */
        for (size_t l = 0; l < L; l += 8) {
            const __mmask8 t = (__mmask8)(L - l >= 8 ? 0xffu : (1u << (L - l)) - 1u);
            _mm512_store_pd(hd + l, _mm512_cvtps_pd(_mm256_maskz_loadu_ps(t, dh + l)));
        }
        /* every product of two floats is exact in double, so the FMAs round each sum exactly as
         * the C loop's add of the separately rounded product does: bitwise the same */
        if (narrow) { /* nv <= 4: the same in 4 lanes (ymm: half the gather, three ports) */
            const __m256d Av4 = _mm512_castpd512_pd256(Av);
            __m256d dA4 = _mm256_setzero_pd(), dPhi4 = _mm256_setzero_pd();
            for (size_t l = 0; l < L; l++) {
                const __m256d h = _mm256_set1_pd(hd[l]);
                const __m256d G = _mm256_cvtps_pd(
                    _mm_mmask_i32gather_ps(_mm_setzero_ps(), mv, off4, Fi + 1 + l, 4));
                dA4 = _mm256_fmadd_pd(h, _mm256_load_pd(aT + 8 * l), dA4);
                dPhi4 = _mm256_fmadd_pd(h, G, dPhi4);
                _mm256_store_pd(daT + 8 * l, _mm256_fmadd_pd(Av4, h, _mm256_load_pd(daT + 8 * l)));
            }
            dA = _mm512_zextpd256_pd512(dA4), dPhi = _mm512_zextpd256_pd512(dPhi4);
        } else {
            for (size_t l = 0; l < L; l++) {
                const __m512d h = _mm512_set1_pd(hd[l]);
                const __m512d G = _mm512_cvtps_pd(
                    _mm256_mmask_i32gather_ps(_mm256_setzero_ps(), mv, off, Fi + 1 + l, 4));
                dA = _mm512_fmadd_pd(h, _mm512_load_pd(aT + 8 * l), dA);
                dPhi = _mm512_fmadd_pd(h, G, dPhi);
                _mm512_store_pd(daT + 8 * l, _mm512_fmadd_pd(Av, h, _mm512_load_pd(daT + 8 * l)));
            }
        }
        if (gk)
            gkv =
                _mm512_add_pd(gkv, _mm512_add_pd(_mm512_mul_pd(Av, dA), _mm512_mul_pd(Phv, dPhi)));
        dA = _mm512_mul_pd(dA, inv), dPhi = _mm512_mul_pd(dPhi, inv);
        /* dm = dA Phi (+ dPhi phi / s);  dS2 = phi (dA - dPhi m / (s s)) / (2 s), 0 where
         * phi = 0 (the C loop's branch; the masked lanes divide nothing) */
        const __mmask8 pos = _mm512_mask_cmp_pd_mask(mv, phv, zero, _CMP_GT_OQ);
        const __m512d m =
            narrow
                ? _mm512_zextpd256_pd512(
                      _mm256_cvtps_pd(_mm_mmask_i32gather_ps(_mm_setzero_ps(), mv, off4, Fi, 4)))
                : _mm512_cvtps_pd(_mm256_mmask_i32gather_ps(_mm256_setzero_ps(), mv, off, Fi, 4));
        __m512d dm = _mm512_mul_pd(dA, Phv);
        /* one division per 8 pairs: y = 1/s, then phi / s = phi y, m / s^2 = m y y, / (2 s) =
         * (y / 2) (the C loop divides three times; the doubles differ from its in the last bits,
         * the float results rarely: tests/test_gm_scal.c) */
        const __m512d y = narrow ? _mm512_zextpd256_pd512(_mm256_maskz_div_pd(
                                       pos, _mm256_set1_pd(1.0), _mm512_castpd512_pd256(sv)))
                                 : _mm512_maskz_div_pd(pos, one, sv);
        dm = _mm512_mask_add_pd(dm, pos, dm, _mm512_mul_pd(_mm512_mul_pd(dPhi, phv), y));
        const __m512d q = _mm512_mul_pd(_mm512_mul_pd(_mm512_mul_pd(dPhi, m), y), y);
        const __m512d dS = _mm512_maskz_mul_pd(pos, _mm512_mul_pd(phv, _mm512_sub_pd(dA, q)),
                                               _mm512_mul_pd(half, y));
        _mm256_mask_storeu_ps(dS2 + ik, mv, _mm512_cvtpd_ps(dS));
        const __m512d cv = _mm512_mul_pd(inv, Phv);
        if (L < 16) {
            /* the chunk's nv (L + 1) entries of the row of dF as contiguous blocks of 8:
             * (inv_k Phi_ik or dm_ik) times (dh_il or 1.0), picked per position by two permutes
             * (the same double product as below for G, dm * 1.0 = dm for m) */
            const __m512d h0 = _mm512_load_pd(hd);
            const __m512d h1 = _mm512_mask_mov_pd(_mm512_load_pd(hd + 8), 0x80, one);
            for (size_t b = 0; b < nb; b++) {
                const __m512d v = _mm512_mul_pd(_mm512_permutex2var_pd(cv, cidx[b], dm),
                                                _mm512_permutex2var_pd(h0, hidx[b], h1));
                if (b + 1 < nb)
                    _mm256_storeu_ps(dFi + 8 * b, _mm512_cvtpd_ps(v));
                else
                    _mm256_mask_storeu_ps(dFi + 8 * b, mlast, _mm512_cvtpd_ps(v));
            }
            continue;
        }
        /* dG_ikl = (inv_k Phi_ik) dh_il, written per component (contiguous in l) */
        _mm512_store_pd(cvs, cv);
        _mm512_store_pd(dmv, dm);
        for (size_t j = 0; j < nv; j++) {
            float *g = dFi + j * (L + 1);
            g[0] = (float)dmv[j];
            const __m512d cj = _mm512_set1_pd(cvs[j]);
            size_t l = 0;
            for (; l + 8 <= L; l += 8)
                _mm256_storeu_ps(g + 1 + l, _mm512_cvtpd_ps(_mm512_mul_pd(
                                                cj, _mm512_cvtps_pd(_mm256_loadu_ps(dh + l)))));
            if (l < L) {
                const __mmask8 t = (__mmask8)((1u << (L - l)) - 1u);
                _mm256_mask_storeu_ps(g + 1 + l, t,
                                      _mm512_cvtpd_ps(_mm512_mul_pd(
                                          cj, _mm512_cvtps_pd(_mm256_maskz_loadu_ps(t, dh + l)))));
            }
        }
    }
    for (size_t j = 0; j < nv; j++)
        for (size_t l = 0; l < L; l++)
            da[j * L + l] = daT[8 * l + j];
    if (gk) {
        double g8[8] __attribute__((aligned(64)));
        _mm512_store_pd(g8, gkv);
        for (size_t j = 0; j < nv; j++)
            gk[j] = g8[j];
    }
}

void gmf_nn_kern_gm_bwd_scalars(size_t B, size_t K, size_t L, size_t k0, size_t k1, const float *a,
                                const float *F, const float *A, const float *Phi, const float *phi,
                                const float *s, const float *dH, const double *sc, float *dF,
                                float *dS2, double *da, double *gw) {
    const double invK = 1.0 / (double)K;
    double aT[8 * GMF_NN_SCAL_LMAX] __attribute__((aligned(64)));
    double daT[8 * GMF_NN_SCAL_LMAX] __attribute__((aligned(64)));
    for (size_t kc = k0; kc < k1; kc += 8) {
        const size_t nv = k1 - kc < 8 ? k1 - kc : 8;
        double *dak = da + (kc - k0) * L, *gk = gw ? gw + kc : NULL;
        /* instances: L = 9 (MNIST's 10 classes: the l loops unrolled, da's sums in registers)
         * and any L, each for 8 lanes and for nv <= 4 (K = 20: the last chunk) */
        if (L == 9 && nv > 4)
            chunk8(B, K, 9, kc, nv, a, F, A, Phi, phi, s, dH, sc, invK, dF, dS2, dak, gk, aT, daT,
                   0);
        else if (L == 9)
            chunk8(B, K, 9, kc, nv, a, F, A, Phi, phi, s, dH, sc, invK, dF, dS2, dak, gk, aT, daT,
                   1);
        else if (nv > 4)
            chunk8(B, K, L, kc, nv, a, F, A, Phi, phi, s, dH, sc, invK, dF, dS2, dak, gk, aT, daT,
                   0);
        else
            chunk8(B, K, L, kc, nv, a, F, A, Phi, phi, s, dH, sc, invK, dF, dS2, dak, gk, aT, daT,
                   1);
    }
}

/* gmf_nn_kern_gm_reduce_rows: the forward's output sum, vectorized over l (8 logits per zmm of
 * doubles; the k loop stays in order in every lane, so each H entry is the C loop's sum bitwise).
 * Why by hand: the C loop's VLA accumulator and runtime L keep GCC from vectorizing it over l,
 * and it converts each float operand separately.  The last L % 8 logits (L = 9: one) go 8 rows
 * per zmm instead (lanes = rows, A, Phi and G gathered): as a masked block of logits they cost a
 * whole block's vector operations for one lane (microbenchmark, B = 64, K = 20, L = 9, core 1:
 * 4.1 -> 2.5 us per call). */
/* The sums over k in [ka, kh) (acc0) and [kh, kb) (acc1), each in order from zero; output:
 * hp[i L + l] = acc0 (hp set: the one-barrier step's partial sum, kh = kb), else
 * H = acc0 (w set: the weighted sum, kh = kb) or H = inv (acc0 + acc1) (the two halves). */
static inline __attribute__((always_inline)) void
reduce_core(float *H, double *hp, const float *A, const float *Phi, const float *a, const float *F,
            const double *w, double inv, size_t K, size_t L, size_t ka, size_t kh, size_t kb,
            size_t i0, size_t i1) {
    /* 4 rows at a time: 4 independent dependency chains of adds along k (one chain alone waits
     * on the add latency at every k) */
    enum { R = 4 };
    const size_t W = K * (L + 1), Lv = L / 8 * 8; /* [0, Lv): blocks of 8 logits */
    /* kb <= KD: the R rows' A and Phi converted to double once (then broadcast from memory, a
     * load each; from float it is a conversion and a shuffle each, per block of logits) */
    enum { KD = 64 };
    double Ad[R][KD + 8] __attribute__((aligned(64))), Pd[R][KD + 8] __attribute__((aligned(64)));
    const int dbl = kb <= KD; /* (+ 8: a block of 8 from k < kb, ka not a multiple of 8) */
    for (size_t i = i0; i < i1; i += R) {
        const size_t nr = i1 - i < R ? i1 - i : R;
        for (size_t r = 0; dbl && Lv > 0 && r < R; r++) {
            const size_t ir = i + (r < nr ? r : 0);
            for (size_t k = ka; k < kb; k += 8) {
                const __mmask8 mk = (__mmask8)(kb - k >= 8 ? 0xffu : (1u << (kb - k)) - 1u);
                _mm512_storeu_pd(Ad[r] + k,
                                 _mm512_cvtps_pd(_mm256_maskz_loadu_ps(mk, A + ir * K + k)));
                _mm512_storeu_pd(Pd[r] + k,
                                 _mm512_cvtps_pd(_mm256_maskz_loadu_ps(mk, Phi + ir * K + k)));
            }
        }
        for (size_t l0 = 0; l0 < Lv; l0 += 8) {
            __m512d acc[2][R];
            for (int h = 0; h < 2; h++) {
                const size_t ks = h ? kh : ka, ke = h ? kb : kh;
                for (size_t r = 0; r < R; r++)
                    acc[h][r] = _mm512_setzero_pd();
                for (size_t k = ks; k < ke; k++) {
                    const __m512d av = _mm512_cvtps_pd(_mm256_loadu_ps(a + k * L + l0));
                    for (size_t r = 0; r < R; r++) {
                        const size_t ir = i + (r < nr ? r : 0); /* past the end: repeat row i */
                        const __m512d Av = _mm512_set1_pd(dbl ? Ad[r][k] : (double)A[ir * K + k]);
                        const __m512d Pv = _mm512_set1_pd(dbl ? Pd[r][k] : (double)Phi[ir * K + k]);
                        const __m512d Gv =
                            _mm512_cvtps_pd(_mm256_loadu_ps(F + ir * W + k * (L + 1) + 1 + l0));
                        const __m512d t = _mm512_fmadd_pd(Av, av, _mm512_mul_pd(Pv, Gv));
                        acc[h][r] = _mm512_add_pd(acc[h][r],
                                                  w ? _mm512_mul_pd(_mm512_set1_pd(w[k]), t) : t);
                    }
                }
            }
            for (size_t r = 0; r < nr; r++) {
                if (hp) {
                    _mm512_storeu_pd(hp + (i + r) * L + l0, acc[0][r]);
                    continue;
                }
                const __m512d o =
                    w ? acc[0][r]
                      : _mm512_mul_pd(_mm512_set1_pd(inv), _mm512_add_pd(acc[0][r], acc[1][r]));
                _mm256_storeu_ps(H + (i + r) * L + l0, _mm512_cvtpd_ps(o));
            }
        }
    }
    if (Lv == L) return;
    /* logits [Lv, L): lane r is row i + r; the same operations per entry as above */
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i offK = _mm256_mullo_epi32(lane, _mm256_set1_epi32((int)K));
    const __m256i offW = _mm256_mullo_epi32(lane, _mm256_set1_epi32((int)W));
    const __m256i offL = _mm256_mullo_epi32(lane, _mm256_set1_epi32((int)L));
    const __m256 z = _mm256_setzero_ps();
    for (size_t i = i0; i < i1; i += 8) {
        const size_t nr = i1 - i < 8 ? i1 - i : 8;
        const __mmask8 mr = (__mmask8)((1u << nr) - 1u);
        for (size_t l = Lv; l < L; l++) {
            __m512d acc[2];
            for (int h = 0; h < 2; h++) {
                const size_t ks = h ? kh : ka, ke = h ? kb : kh;
                acc[h] = _mm512_setzero_pd();
                for (size_t k = ks; k < ke; k++) {
                    const __m512d av = _mm512_set1_pd((double)a[k * L + l]);
                    const __m512d Av =
                        _mm512_cvtps_pd(_mm256_mmask_i32gather_ps(z, mr, offK, A + i * K + k, 4));
                    const __m512d Pv =
                        _mm512_cvtps_pd(_mm256_mmask_i32gather_ps(z, mr, offK, Phi + i * K + k, 4));
                    const __m512d Gv = _mm512_cvtps_pd(
                        _mm256_mmask_i32gather_ps(z, mr, offW, F + i * W + k * (L + 1) + 1 + l, 4));
                    const __m512d t = _mm512_fmadd_pd(Av, av, _mm512_mul_pd(Pv, Gv));
                    acc[h] = _mm512_add_pd(acc[h], w ? _mm512_mul_pd(_mm512_set1_pd(w[k]), t) : t);
                }
            }
            if (hp) {
                _mm512_mask_i32scatter_pd(hp + i * L + l, mr, offL, acc[0], 8);
                continue;
            }
            const __m512d o =
                w ? acc[0] : _mm512_mul_pd(_mm512_set1_pd(inv), _mm512_add_pd(acc[0], acc[1]));
            _mm256_mask_i32scatter_ps(H + i * L + l, mr, offL, _mm512_cvtpd_ps(o), 4);
        }
    }
}

void gmf_nn_kern_gm_reduce_rows(float *H, const float *A, const float *Phi, const float *a,
                                const float *F, const double *w, double inv, size_t K, size_t L,
                                size_t i0, size_t i1) {
    if (w) /* in order over all K */
        reduce_core(H, NULL, A, Phi, a, F, w, 0.0, K, L, 0, K, K, i0, i1);
    else /* the two halves [0, K/2) and [K/2, K) (gmf_nn_split(K, t, 2)'s), added at the end */
        reduce_core(H, NULL, A, Phi, a, F, NULL, inv, K, L, 0, K / 2, K, i0, i1);
}

void gmf_nn_kern_gm_reduce_part(double *hp, const float *A, const float *Phi, const float *a,
                                const float *F, size_t K, size_t L, size_t k0, size_t k1, size_t i0,
                                size_t i1) {
    reduce_core(NULL, hp, A, Phi, a, F, NULL, 0.0, K, L, k0, k1, k1, i0, i1);
}
#endif
