/* test_gm_scal.c -- the GM layer's float32 backward scalars in AVX-512 lanes
 * (gmf_nn_kern_gm_bwd_scalars, src/discrete/gm_scal.c) against two independent routes, and the
 * forward's output sum (gmf_nn_kern_gm_reduce_rows: bitwise nn_tmpl.h's gm_reduce_rows /
 * gm_reduce_rows_w, copied here, and to 2^-23 of sum |terms| against a long double sum, on the
 * same cases, fixed and learned weights, all rows and an inner row range; its partial form
 * gmf_nn_kern_gm_reduce_part bitwise the copied loop over the case's component range, and the
 * two halves' parts combined bitwise the full sum; and, on cancelling terms where another
 * grouping gives another float, that the halves are gmf_nn_split(K, t, 2)'s (check_halves_grouping,
 * which fails for the sequential sum or the (K+1)/2 cut)):
 *
 *   1. against the C loop it replaces (ref_scalars below: nn_tmpl.h's gm_bwd_scalars copied
 *      verbatim for real = float, plus the sizes of the terms; that loop's formulas are the ones
 *      tests/test_nn_grad.c checks against finite differences in double): bit for bit dG (the G
 *      entries of dF of the components in range), everything outside the range (untouched), da
 *      and gw; dm (the m entries of dF) and dS2 within 1 float ulp plus 2^-48 of the terms (the
 *      kernel divides once, 1/s, where the loop divides three times), the floats that are not
 *      bitwise counted;
 *   2. dm and dS2 against central finite differences of
 *         g(m, S2) = dA A(m, sqrt S2) + dPhi Phi(m / sqrt S2)
 *      (A = m Phi + s phi, the closed forms of gmf_gauss_batch in double), dA and dPhi summed in
 *      long double here: to 1e-5 relative to the largest |derivative| of the case (the kernel
 *      reads A, Phi, phi, s rounded to float; the difference quotient's own error is ~1e-9).
 *
 * Cases: K in {1, 3, 8, 9, 20, 23}, L in {0, 1, 7, 8, 9, 15, 16, 17}, B in {1, 5, 64}, component
 * ranges [k0, k1) inside K (the pool's split: 8-lane chunks that start anywhere, tails of 1..7
 * lanes), weights 1/K or learned (sc), gw or not; entries with s = 0 (phi = 0 branch), far tails
 * (phi = 0 in float) and m ~ s.  Skipped (exit 77) in builds without AVX-512 (no GMF_NN_KERN). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/discrete/nn_internal.h"
#include "gmflow/gauss.h"
#include "testutil.h"

#ifndef GMF_NN_KERN
int main(void) {
    printf("test_gm_scal: SKIP: this build has no AVX-512 kernels (GMF_NN_KERN undefined)\n");
    return 77;
}
#else

typedef struct {
    size_t B, K, L;
    float *a, *F, *A, *Phi, *phi, *s, *dH, *dF, *dS2;
    double *sc;
} sc_case;

/* nn_tmpl.h gm_bwd_scalars' C loop for real = float (the cache fields passed explicitly). */
static void ref_scalars(const sc_case *c, double *da, const double *sc, double *gw, size_t k0,
                        size_t k1, float *dF, float *dS2, double *mag_m, double *mag_s) {
    const size_t B = c->B, K = c->K, L = c->L, W = K * (L + 1), nk = k1 - k0;
    const double invK = 1.0 / (double)K;
    double gk[nk + 1];
    for (size_t e = 0; e < nk * L; e++)
        da[e] = 0.0;
    for (size_t k = 0; k < nk; k++)
        gk[k] = 0.0;
    for (size_t i = 0; i < B; i++) {
        const float *dh = c->dH + i * L;
        for (size_t k = k0; k < k1; k++) {
            const size_t ik = i * K + k;
            const double inv = sc ? sc[k] : invK;
            const float *a = c->a + k * L, *G = c->F + i * W + k * (L + 1) + 1;
            float *dG = dF + i * W + k * (L + 1) + 1;
            const double A = c->A[ik], Phi = c->Phi[ik], phi = c->phi[ik], s = c->s[ik];
            double dA = 0.0, dPhi = 0.0;
            for (size_t l = 0; l < L; l++) {
                dA += (double)dh[l] * a[l];
                dPhi += (double)dh[l] * G[l];
                dG[l] = (float)(inv * Phi * dh[l]);
                da[(k - k0) * L + l] += A * dh[l];
            }
            if (gw) gk[k - k0] += A * dA + Phi * dPhi;
            dA *= inv, dPhi *= inv;
            double dm = dA * Phi, dS2v = 0.0;
            mag_m[ik] = fabs(dm), mag_s[ik] = 0.0; /* (the test's: the terms' sizes) */
            if (phi > 0.0) {
                const double m = c->F[i * W + k * (L + 1)];
                dm += dPhi * phi / s;
                dS2v = phi * (dA - dPhi * m / (s * s)) / (2.0 * s);
                mag_m[ik] += fabs(dPhi * phi / s);
                mag_s[ik] = phi * (fabs(dA) + fabs(dPhi * m / (s * s))) / (2.0 * s);
            }
            dF[i * W + k * (L + 1)] = (float)dm;
            dS2[ik] = (float)dS2v;
        }
    }
    if (gw)
        for (size_t k = k0; k < k1; k++)
            gw[k] = gk[k - k0];
}

/* g(m, S2) of the finite-difference check */
static double gfun(double m, double S2, double dA, double dPhi) {
    double s, Phi, phi, A;
    const gmf_gauss_batch_out go = {.s = &s, .Phi = &Phi, .phi = &phi, .A = &A};
    gmf_gauss_batch(1, &m, &S2, NULL, 0.0, &go);
    return dA * A + dPhi * Phi;
}

static float urand(gsl_rng *r, double lo, double hi) {
    return (float)(lo + (hi - lo) * gsl_rng_uniform(r));
}

static size_t nbit, nfd, nred, npart, nval, ndiff;
static double worst_red;

/* nn_tmpl.h gm_reduce_rows (w NULL: the halves [0, K/2) and [K/2, K) summed separately, then
 * added) and gm_reduce_rows_w (in order over all K) for real = float; hp set: instead the sum
 * over [k0, k1) in double into hp (gmf_nn_kern_gm_reduce_part). */
static void ref_sum(double *acc, const sc_case *c, const double *w, size_t i, size_t k0,
                    size_t k1) {
    const size_t K = c->K, L = c->L, W = K * (L + 1);
    for (size_t l = 0; l < L; l++)
        acc[l] = 0.0;
    for (size_t k = k0; k < k1; k++) {
        const double A = c->A[i * K + k], Phi = c->Phi[i * K + k];
        const float *a = c->a + k * L, *G = c->F + i * W + k * (L + 1) + 1;
        for (size_t l = 0; l < L; l++)
            acc[l] += w ? w[k] * (A * a[l] + Phi * G[l]) : A * a[l] + Phi * G[l];
    }
}
static void ref_reduce(float *H, const sc_case *c, const double *w, size_t i0, size_t i1) {
    const size_t K = c->K, L = c->L;
    const double inv = 1.0 / (double)K;
    for (size_t i = i0; i < i1; i++) {
        double acc[L + 1], acc1[L + 1];
        ref_sum(acc, c, w, i, 0, w ? K : K / 2);
        if (!w) ref_sum(acc1, c, w, i, K / 2, K);
        for (size_t l = 0; l < L; l++)
            H[i * L + l] = (float)(w ? acc[l] : inv * (acc[l] + acc1[l]));
    }
}

/* gmf_nn_kern_gm_reduce_part on rows [i0, i1), components [k0, k1): bit for bit ref_sum, nothing
 * else written; and the two halves' parts combined as the one-barrier step does (inv (S_0 +
 * S_1), rounded) bit for bit the kernel's H. */
static void check_reduce_part(const sc_case *c, size_t i0, size_t i1, size_t k0, size_t k1) {
    const size_t B = c->B, K = c->K, L = c->L;
    double *hp = malloc((B * L + 1) * sizeof(double)), *hq = malloc((B * L + 1) * sizeof(double));
    for (size_t e = 0; e < B * L; e++)
        hp[e] = hq[e] = (double)e - 7.25;
    for (size_t i = i0; i < i1; i++)
        ref_sum(hq + i * L, c, NULL, i, k0, k1);
    gmf_nn_kern_gm_reduce_part(hp, c->A, c->Phi, c->a, c->F, K, L, k0, k1, i0, i1);
    CHECK(memcmp(hp, hq, B * L * sizeof(double)) == 0,
          "reduce_part B=%zu K=%zu L=%zu rows [%zu,%zu) comps [%zu,%zu)", B, K, L, i0, i1, k0, k1);
    double *h0 = malloc((B * L + 1) * sizeof(double)), *h1 = malloc((B * L + 1) * sizeof(double));
    float *H = malloc((B * L + 1) * sizeof(float));
    gmf_nn_kern_gm_reduce_part(h0, c->A, c->Phi, c->a, c->F, K, L, 0, K / 2, 0, B);
    gmf_nn_kern_gm_reduce_part(h1, c->A, c->Phi, c->a, c->F, K, L, K / 2, K, 0, B);
    gmf_nn_kern_gm_reduce_rows(H, c->A, c->Phi, c->a, c->F, NULL, 1.0 / (double)K, K, L, 0, B);
    size_t bad = 0;
    for (size_t e = 0; e < B * L; e++)
        bad += (float)(1.0 / (double)K * (h0[e] + h1[e])) != H[e];
    CHECK(bad == 0, "reduce halves B=%zu K=%zu L=%zu: %zu entries differ", B, K, L, bad);
    npart++;
    free(hp), free(hq), free(h0), free(h1), free(H);
}

/* The halves' grouping, made visible (review s24, item 2).  H = inv (S_0 + S_1) with S_t the sum
 * over gmf_nn_split(K, t, 2)'s components is what makes 1 and 2 threads bitwise equal (the
 * one-barrier step sums each thread's components separately, gm_step1b); on random data another
 * grouping nearly always rounds to the same float H, so this case cancels: per (row i, logit l)
 * the terms A_ik a_kl + Phi_ik G_ikl are b = (1 + i)(1 + l) / 8 at k = 0, +C at the first
 * component of the second half, -C at k = K - 1 (C = 2^60), 0 elsewhere (Phi = 0 there; the G
 * entries are garbage in the Phi = 0 terms, the m slots NaN: never read).  The documented halves
 * give S_0 = b, S_1 = 0, H = inv b; the sequential sum and the halves [0, (K+1)/2) + [(K+1)/2, K)
 * (odd K) lose b to C and give 0 -- asserted on the test's own reference first, so the case can
 * fail.  Checked: gmf_nn_kern_gm_reduce_rows (every path's 1-thread / rows-split sum) and
 * gmf_nn_kern_gm_reduce_part on the two halves combined as gm_step1b does. */
static size_t ngroup;
static void check_halves_grouping(size_t B, size_t K, size_t L) {
    const size_t W = K * (L + 1);
    const float C = 0x1p60f;
    float *A = calloc(B * K, sizeof(float)), *Phi = calloc(B * K, sizeof(float)),
          *a = calloc(K * L + 1, sizeof(float)), *F = malloc((B * W + 1) * sizeof(float)),
          *H = malloc((B * L + 1) * sizeof(float));
    double *h0 = malloc((B * L + 1) * sizeof(double)), *h1 = malloc((B * L + 1) * sizeof(double));
    size_t k0, kh, k1;
    gmf_nn_split(K, 0, 2, &k0, &kh);
    gmf_nn_split(K, 1, 2, &kh, &k1);
    for (size_t e = 0; e < B * W; e++)
        F[e] = e % (L + 1) ? (float)e * 0.37f - 11.0f : NAN;
    for (size_t i = 0; i < B; i++) {
        A[i * K] = (float)(1 + i);
        A[i * K + kh] = 1.0f;
        A[i * K + K - 1] = 1.0f;
        for (size_t k = 1; k < K; k++)
            if (k != kh && k != K - 1) Phi[i * K + k] = 0.0f, A[i * K + k] = 0.0f;
    }
    for (size_t l = 0; l < L; l++) {
        a[l] = (float)(1 + l) / 8.0f;
        a[kh * L + l] = C;
        a[(K - 1) * L + l] = -C;
    }
    const double inv = 1.0 / (double)K;
    size_t bad_ref = 0, bad_rows = 0, bad_part = 0;
    for (size_t i = 0; i < B; i++) {
        double S[3][2]; /* [grouping][half]: documented, sequential, (K+1)/2 */
        for (size_t l = 0; l < L; l++) {
            const size_t cut[3] = {kh, K, (K + 1) / 2};
            for (int g = 0; g < 3; g++) {
                S[g][0] = S[g][1] = 0.0;
                for (size_t k = 0; k < K; k++)
                    S[g][k >= cut[g]] +=
                        (double)A[i * K + k] * (double)a[k * L + l] +
                        (double)Phi[i * K + k] * (double)F[i * W + k * (L + 1) + 1 + l];
            }
            const float ref = (float)(inv * (S[0][0] + S[0][1]));
            const float seq = (float)(inv * (S[1][0] + S[1][1]));
            const float odd = (float)(inv * (S[2][0] + S[2][1]));
            /* the case separates the groupings (for odd K the (K+1)/2 cut differs from kh) */
            bad_ref += ref != (float)(inv * (double)a[l] * (double)(1 + i)) || seq == ref ||
                       (K % 2 && odd == ref);
        }
    }
    CHECK(bad_ref == 0,
          "halves grouping B=%zu K=%zu L=%zu: the case does not separate the "
          "groupings (%zu entries)",
          B, K, L, bad_ref);
    gmf_nn_kern_gm_reduce_rows(H, A, Phi, a, F, NULL, inv, K, L, 0, B);
    for (size_t i = 0; i < B; i++)
        for (size_t l = 0; l < L; l++)
            bad_rows += H[i * L + l] != (float)(inv * (double)a[l] * (double)(1 + i));
    gmf_nn_kern_gm_reduce_part(h0, A, Phi, a, F, K, L, k0, kh, 0, B);
    gmf_nn_kern_gm_reduce_part(h1, A, Phi, a, F, K, L, kh, k1, 0, B);
    for (size_t i = 0; i < B; i++)
        for (size_t l = 0; l < L; l++)
            bad_part += (float)(inv * (h0[i * L + l] + h1[i * L + l])) !=
                        (float)(inv * (double)a[l] * (double)(1 + i));
    CHECK(bad_rows == 0,
          "halves grouping B=%zu K=%zu L=%zu: gmf_nn_kern_gm_reduce_rows does not sum the halves "
          "[0, %zu) and [%zu, %zu) (%zu entries differ)",
          B, K, L, kh, kh, K, bad_rows);
    CHECK(bad_part == 0,
          "halves grouping B=%zu K=%zu L=%zu: reduce_part halves combined differ (%zu entries)", B,
          K, L, bad_part);
    ngroup++;
    free(A), free(Phi), free(a), free(F), free(H), free(h0), free(h1);
}

/* The output sum: bit for bit against ref_reduce, and against a long double sum to 2^-23
 * relative to sum_k |terms| (the float rounding of H) -- rows [i0, i1), entries outside untouched.
 */
static void check_reduce(const sc_case *c, const double *w, size_t i0, size_t i1) {
    const size_t B = c->B, K = c->K, L = c->L, W = K * (L + 1);
    float *H1 = malloc((B * L + 1) * sizeof(float)), *H2 = malloc((B * L + 1) * sizeof(float));
    for (size_t e = 0; e < B * L; e++)
        H1[e] = H2[e] = (float)e - 3.5f;
    ref_reduce(H1, c, w, i0, i1);
    gmf_nn_kern_gm_reduce_rows(H2, c->A, c->Phi, c->a, c->F, w, 1.0 / (double)K, K, L, i0, i1);
    CHECK(memcmp(H1, H2, B * L * sizeof(float)) == 0,
          "reduce B=%zu K=%zu L=%zu rows [%zu,%zu) w=%d", B, K, L, i0, i1, w != NULL);
    double err = 0.0;
    for (size_t i = i0; i < i1; i++)
        for (size_t l = 0; l < L; l++) {
            long double s = 0, sa = 0;
            for (size_t k = 0; k < K; k++) {
                const long double wk = w ? w[k] : 1.0L / K;
                const long double t =
                    (long double)c->A[i * K + k] * c->a[k * L + l] +
                    (long double)c->Phi[i * K + k] * c->F[i * W + k * (L + 1) + 1 + l];
                s += wk * t, sa += fabsl(wk * t);
            }
            const double e = (double)(fabsl(H2[i * L + l] - s) / (sa > 0 ? sa : 1));
            if (e > err) err = e;
        }
    CHECK(err <= 0x1p-23, "reduce B=%zu K=%zu L=%zu: %g vs long double", B, K, L, err);
    if (err > worst_red) worst_red = err;
    nred++;
    free(H1), free(H2);
}
static double worst_fd;

static void run_case(gsl_rng *r, size_t B, size_t K, size_t L, size_t k0, size_t k1, int learned,
                     int with_gw) {
    const size_t W = K * (L + 1), nk = k1 - k0;
    sc_case c = {B, K, L, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    c.a = malloc((K * L + 1) * sizeof(float));
    c.F = malloc(B * W * sizeof(float));
    c.A = malloc(B * K * sizeof(float)), c.Phi = malloc(B * K * sizeof(float));
    c.phi = malloc(B * K * sizeof(float)), c.s = malloc(B * K * sizeof(float));
    c.dH = malloc((B * L + 1) * sizeof(float));
    double *S2 = malloc(B * K * sizeof(double));
    double sc[K];
    for (size_t k = 0; k < K; k++)
        sc[k] = 0.5 * gsl_rng_uniform(r) + 0.01;
    for (size_t e = 0; e < K * L; e++)
        c.a[e] = urand(r, -2, 2);
    for (size_t e = 0; e < B * W; e++)
        c.F[e] = urand(r, -3, 3);
    for (size_t e = 0; e < B * L; e++)
        c.dH[e] = urand(r, -1, 1);
    for (size_t i = 0; i < B; i++)
        for (size_t k = 0; k < K; k++) {
            const size_t ik = i * K + k;
            const int kind = (int)gsl_rng_uniform_int(r, 8);
            double m = c.F[i * W + k * (L + 1)], s2 = urand(r, 0.01, 4);
            if (kind == 0) s2 = 0.0; /* s = 0: the phi = 0 branch */
            if (kind == 1) m = (float)(40.0 * (m < 0 ? -1 : 1)), s2 = 0.25; /* far tail */
            if (kind == 2) s2 = (double)(float)(m * m * 0.8);               /* m ~ s */
            c.F[i * W + k * (L + 1)] = (float)m;
            S2[ik] = s2 = (double)(float)s2;
            double sv, Phi, phi, A;
            const gmf_gauss_batch_out go = {.s = &sv, .Phi = &Phi, .phi = &phi, .A = &A};
            gmf_gauss_batch(1, &m, &s2, NULL, 0.0, &go);
            c.s[ik] = (float)sv, c.Phi[ik] = (float)Phi, c.phi[ik] = (float)phi, c.A[ik] = (float)A;
        }
    const double *scp = learned ? sc : NULL;
    /* outputs start as a pattern, so that entries outside the range are checked untouched */
    float *dF1 = malloc(B * W * sizeof(float)), *dF2 = malloc(B * W * sizeof(float));
    float *dS1 = malloc(B * K * sizeof(float)), *dS2o = malloc(B * K * sizeof(float));
    for (size_t e = 0; e < B * W; e++)
        dF1[e] = dF2[e] = (float)e + 0.5f;
    for (size_t e = 0; e < B * K; e++)
        dS1[e] = dS2o[e] = -(float)e - 0.25f;
    double da1[nk * L + 1], da2[nk * L + 1], gw1[K], gw2[K];
    for (size_t k = 0; k < K; k++)
        gw1[k] = gw2[k] = 7.0 + (double)k;
    double *mag_m = malloc(B * K * sizeof(double)), *mag_s = malloc(B * K * sizeof(double));
    ref_scalars(&c, da1, scp, with_gw ? gw1 : NULL, k0, k1, dF1, dS1, mag_m, mag_s);
    gmf_nn_kern_gm_bwd_scalars(B, K, L, k0, k1, c.a, c.F, c.A, c.Phi, c.phi, c.s, c.dH, scp, dF2,
                               dS2o, da2, with_gw ? gw2 : NULL);
    /* dm (the m entries of dF) and dS2 in range: the kernel divides once (1/s) where the C loop
     * divides three times, so its doubles differ in the last bits and the floats may differ by
     * one rounding: |kernel - C| <= 1 float ulp of C + 2^-48 of the terms' sizes (the double
     * error, a few ulps of the largest term, which cancellation can leave larger than C itself).
     * Everything else -- dG, entries outside the range, da, gw -- bit for bit. */
    size_t bad = 0, badt = 0;
    for (size_t i = 0; i < B; i++)
        for (size_t k = 0; k < K; k++) {
            const size_t ik = i * K + k, pm = i * W + k * (L + 1);
            const int in = k >= k0 && k < k1;
            bad += memcmp(dF1 + pm + 1, dF2 + pm + 1, L * sizeof(float)) != 0;
            const float cm[2] = {dF1[pm], dS1[ik]}, km[2] = {dF2[pm], dS2o[ik]};
            const double mag[2] = {mag_m[ik], mag_s[ik]};
            for (int q = 0; q < 2; q++) {
                if (memcmp(&cm[q], &km[q], sizeof(float)) == 0) continue;
                const double tol =
                    (double)(nextafterf(fabsf(cm[q]), INFINITY) - fabsf(cm[q])) + 0x1p-48 * mag[q];
                if (!in || !(fabs((double)km[q] - (double)cm[q]) <= tol)) badt++;
                ndiff++;
            }
        }
    bad += memcmp(da1, da2, nk * L * sizeof(double)) != 0;
    bad += memcmp(gw1, gw2, K * sizeof(double)) != 0;
    CHECK(bad == 0 && badt == 0,
          "B=%zu K=%zu L=%zu [%zu,%zu) learned=%d gw=%d: %zu rows/arrays differ, %zu dm/dS2 "
          "beyond the bound",
          B, K, L, k0, k1, learned, with_gw, bad, badt);
    nbit++, nval += 2 * B * nk;
    free(mag_m), free(mag_s);

    check_reduce(&c, learned ? sc : NULL, 0, B);
    if (B > 2) check_reduce(&c, learned ? NULL : sc, 1, B - 1);
    check_reduce_part(&c, 0, B, k0, k1);
    if (B > 2) check_reduce_part(&c, 1, B - 1, k0, k1);

    /* finite differences of g(m, S2) for dm and dS2 (kernel output, float) */
    if (L > 0) {
        double scale = 0.0, err = 0.0;
        double fdm[B * nk], fds[B * nk];
        for (size_t i = 0; i < B; i++)
            for (size_t k = k0; k < k1; k++) {
                const size_t ik = i * K + k, q = i * nk + (k - k0);
                const double inv = scp ? scp[k] : 1.0 / (double)K;
                long double dA = 0, dPhi = 0;
                for (size_t l = 0; l < L; l++) {
                    dA += (long double)c.dH[i * L + l] * c.a[k * L + l];
                    dPhi += (long double)c.dH[i * L + l] * c.F[i * W + k * (L + 1) + 1 + l];
                }
                const double gA = (double)dA * inv, gP = (double)dPhi * inv;
                const double m = c.F[i * W + k * (L + 1)], s2 = S2[ik];
                const double hm = 1e-6 * fmax(1.0, fabs(m));
                fdm[q] = (gfun(m + hm, s2, gA, gP) - gfun(m - hm, s2, gA, gP)) / (2 * hm);
                if (s2 > 0) {
                    const double hs = 1e-6 * s2;
                    fds[q] = (gfun(m, s2 + hs, gA, gP) - gfun(m, s2 - hs, gA, gP)) / (2 * hs);
                } else {
                    fds[q] = 0.0; /* the layer's analytic limit at s = 0 */
                }
                scale = fmax(scale, fmax(fabs(fdm[q]), fabs(fds[q])));
            }
        for (size_t i = 0; i < B; i++)
            for (size_t k = k0; k < k1; k++) {
                const size_t ik = i * K + k, q = i * nk + (k - k0);
                err = fmax(err, fabs(dF2[i * W + k * (L + 1)] - fdm[q]));
                err = fmax(err, fabs(dS2o[ik] - fds[q]));
            }
        err /= fmax(scale, 1e-30);
        CHECK(err <= 1e-5, "B=%zu K=%zu L=%zu [%zu,%zu): dm/dS2 vs finite differences %g", B, K, L,
              k0, k1, err);
        if (err > worst_fd) worst_fd = err;
        nfd++;
    }
    free(c.a), free(c.F), free(c.A), free(c.Phi), free(c.phi), free(c.s), free(c.dH), free(S2);
    free(dF1), free(dF2), free(dS1), free(dS2o);
}

int main(void) {
    gsl_rng *r = tu_rng(20);
    printf("test_gm_scal: seed %lu\n", tu_seed());
    const size_t Ks[] = {1, 3, 8, 9, 20, 23}, Ls[] = {0, 1, 7, 8, 9, 15, 16, 17}, Bs[] = {1, 5, 64};
    for (size_t a = 0; a < sizeof Ks / sizeof *Ks; a++)
        for (size_t b = 0; b < sizeof Ls / sizeof *Ls; b++)
            for (size_t e = 0; e < sizeof Bs / sizeof *Bs; e++) {
                const size_t K = Ks[a], L = Ls[b], B = Bs[e];
                const size_t ranges[4][2] = {
                    {0, K}, {K / 2, K}, {0, (K + 1) / 2}, {K / 3, K - K / 4}};
                for (int q = 0; q < 4; q++) {
                    const size_t k0 = ranges[q][0], k1 = ranges[q][1];
                    if (k1 <= k0) continue;
                    run_case(r, B, K, L, k0, k1, q & 1, (q >> 1) ^ (int)(e & 1));
                }
            }
    /* the halves' grouping: K >= 3 (the case needs k = 0, K/2 and K - 1 distinct), odd and even; L
     * across the vector blocks of 8 logits and the row-lane tail */
    {
        const size_t Kg[] = {3, 4, 5, 9, 20, 23}, Lg[] = {1, 8, 9, 17}, Bg[] = {1, 5, 13};
        for (size_t a = 0; a < sizeof Kg / sizeof *Kg; a++)
            for (size_t b = 0; b < sizeof Lg / sizeof *Lg; b++)
                for (size_t e = 0; e < sizeof Bg / sizeof *Bg; e++)
                    check_halves_grouping(Bg[e], Kg[a], Lg[b]);
    }
    printf("  %zu cases: the halves' grouping (cancelling terms) as gmf_nn_split(K, t, 2)\n",
           ngroup);
    printf("  %zu cases vs the C loop: dG, da, gw bitwise; dm/dS2 within 1 float ulp + 2^-48 of "
           "the terms, %zu of %zu floats not bitwise\n",
           nbit, ndiff, nval);
    printf("  %zu cases vs finite differences (worst %.2e of 1e-5)\n", nfd, worst_fd);
    printf("  output sum: %zu cases bitwise vs the C loop, vs long double worst %.2f of the 2^-23 "
           "bound\n",
           nred, worst_red / 0x1p-23);
    printf("  partial output sums (reduce_part): %zu cases bitwise vs the C loop, halves combined "
           "bitwise the full sum\n",
           npart);
    gsl_rng_free(r);
    return tu_finish("test_gm_scal");
}
#endif
