/* gm_scal_bench.c -- the GM step's forward scalar work on one thread, CPU time per step (median of
 * the rounds, the routes alternated round by round; docs/PERFORMANCE.md section 10.7):
 *   gauss:  the forward Gaussian scalars of B x K points, gmf_nn_kern_gm_gauss (8 points per
 *           AVX-512 libmvec call, one pass) against the route before it (gmf_gauss_batch per row
 *           on double copies of the row, as nn_tmpl.h's gm_fwd_scalars did);
 *   loss:   gmf_nn_kern_refloss (8 rows per zmm) against gmf_nn_refloss_f;
 *   sum:    gmf_nn_kern_gm_reduce_rows at L and at L rounded down to a multiple of 8 (with
 *           L = 9, the ninth logit's cost);
 *   bwd:    gmf_nn_kern_gm_bwd_scalars, the backward scalars of all K components (1 thread,
 *           fixed weights, no weight gradient; section 10.9).
 * Inputs: t = m / s uniform in [-3, 3] (5 % of the points at |t| = 40, the clamp), s^2 in [1, 6];
 * logits uniform in [-4, 4].  Shapes of `gmflow train` by default (B 64, K 20, L 9).
 *
 *   build/bench/gm_scal_bench [--rounds 7] [--B 64] [--K 20] [--L 9]   (--d: accepted, unused)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/discrete/nn_internal.h"
#include "benchutil.h"
#include "gmflow/gauss.h"

#ifndef GMF_NN_KERN
int main(void) {
    printf("gm_scal_bench: this build has no AVX-512 kernels (GMF_NN_KERN)\n");
    return 0;
}
#else

enum { NROUND = 64, NROUTE = 7 };

/* the route before gm_gauss.c: nn_tmpl.h's gm_fwd_scalars on gmf_gauss_batch, for real = float */
static void gauss_rows(const float *F, const float *S2, float *s, float *Phi, float *phi, float *A,
                       size_t B, size_t K, size_t L) {
    const size_t W = K * (L + 1);
    double m[K], s2[K], sv[K], P[K], p[K], Av[K];
    for (size_t i = 0; i < B; i++) {
        for (size_t k = 0; k < K; k++) {
            m[k] = (double)F[i * W + k * (L + 1)];
            s2[k] = (double)S2[i * K + k];
        }
        const gmf_gauss_batch_out go = {.s = sv, .Phi = P, .phi = p, .A = Av};
        gmf_gauss_batch(K, m, s2, NULL, 0.0, &go);
        for (size_t k = 0; k < K; k++) {
            s[i * K + k] = (float)sv[k];
            Phi[i * K + k] = (float)P[k];
            phi[i * K + k] = (float)p[k];
            A[i * K + k] = (float)Av[k];
        }
    }
}

static float frand(float lo, float hi) {
    return lo + (hi - lo) * (float)rand() / (float)RAND_MAX;
}

int main(int argc, char **argv) {
    long rounds = 7, B = 64, d = 0, K = 20, L = 9;
    const int rc = bench_gm_shape_args(argc, argv, "gm_scal_bench", &rounds, &B, &d, &K, &L);
    if (rc >= 0) return rc;
    if (rounds < 1 || rounds > NROUND || B < 1 || K < 1 || L < 1 || L > GMF_NN_REFLOSS_LMAX) {
        fprintf(stderr, "gm_scal_bench: bad option value (1 <= L <= %d)\n", GMF_NN_REFLOSS_LMAX);
        return 2;
    }
    const size_t Bz = (size_t)B, Kz = (size_t)K, Lz = (size_t)L, W = Kz * (Lz + 1), n = Bz * Kz;
    srand(1);
    float *F = malloc(Bz * W * sizeof(float)), *S2 = malloc(n * sizeof(float));
    float *o[4], *a = malloc(Kz * Lz * sizeof(float)), *H = malloc(Bz * Lz * sizeof(float));
    float *dH = malloc(Bz * Lz * sizeof(float));
    double *lossv = malloc(Bz * sizeof(double)), *da = malloc(Kz * Lz * sizeof(double));
    float *dF = malloc(Bz * W * sizeof(float)), *dS2 = malloc(n * sizeof(float));
    uint8_t *y = malloc(Bz);
    for (int q = 0; q < 4; q++)
        o[q] = malloc(n * sizeof(float));
    if (!F || !S2 || !a || !H || !dH || !lossv || !da || !dF || !dS2 || !y || !o[0] || !o[1] ||
        !o[2] || !o[3])
        return 1;
    for (size_t e = 0; e < Bz * W; e++)
        F[e] = frand(-1.0f, 1.0f);
    for (size_t p = 0; p < n; p++) {
        S2[p] = frand(1.0f, 6.0f);
        const float t = rand() % 20 == 0 ? (rand() % 2 ? 40.0f : -40.0f) : frand(-3.0f, 3.0f);
        F[p * (Lz + 1)] = t * sqrtf(S2[p]);
    }
    for (size_t e = 0; e < Kz * Lz; e++)
        a[e] = frand(-1.0f, 1.0f);
    for (size_t i = 0; i < Bz; i++)
        y[i] = (uint8_t)(rand() % (L + 1));
    gmf_nn_kern_gm_gauss(0, n, Lz, F, S2, o[0], o[1], o[2], o[3]); /* A, Phi for the sum */
    for (size_t e = 0; e < Bz * Lz; e++)
        H[e] = frand(-4.0f, 4.0f);
    const size_t L8 = Lz / 8 * 8;
    const char *name[NROUTE] = {"gauss: gmf_nn_kern_gm_gauss", "gauss: gmf_gauss_batch per row",
                                "loss: gmf_nn_kern_refloss",   "loss: gmf_nn_refloss_f",
                                "sum: reduce_rows at L",       "sum: reduce_rows at L - L % 8",
                                "bwd: gm_bwd_scalars"};
    const int reps = 2000;
    double t[NROUTE][NROUND];
    volatile double sink = 0.0;
    for (long r = 0; r < rounds; r++)
        for (int v = 0; v < NROUTE; v++) {
            if (v == 5 && L8 == 0) {
                t[v][r] = 0.0;
                continue;
            }
            const double t0 = bench_cpu_s();
            for (int e = 0; e < reps; e++) {
                switch (v) {
                case 0:
                    gmf_nn_kern_gm_gauss(0, n, Lz, F, S2, o[0], o[1], o[2], o[3]);
                    break;
                case 1:
                    gauss_rows(F, S2, o[0], o[1], o[2], o[3], Bz, Kz, Lz);
                    break;
                case 2:
                    sink += gmf_nn_kern_refloss(dH, lossv, H, y, 1.0 / 64, Bz, Lz);
                    break;
                case 3:
                    sink += gmf_nn_refloss_f(dH, lossv, H, y, 1.0 / 64, Bz, Lz);
                    break;
                case 4:
                    gmf_nn_kern_gm_reduce_rows(H, o[3], o[1], a, F, NULL, 1.0 / K, Kz, Lz, 0, Bz);
                    break;
                case 5: /* the first L8 logits only (a and F keep their strides L and L + 1) */
                    gmf_nn_kern_gm_reduce_rows(dH, o[3], o[1], a, F, NULL, 1.0 / K, Kz, L8, 0, Bz);
                    break;
                default: /* the backward scalars of all K components (gm_bwd_scalars, 1 thread) */
                    gmf_nn_kern_gm_bwd_scalars(Bz, Kz, Lz, 0, Kz, a, F, o[3], o[1], o[2], o[0], dH,
                                               NULL, dF, dS2, da, NULL);
                }
            }
            t[v][r] = (bench_cpu_s() - t0) / reps;
            for (size_t e = 0; e < Bz * Lz; e++) /* the sum wrote H: fresh logits for the loss */
                H[e] = frand(-4.0f, 4.0f);
        }
    printf("gm_scal_bench: B %ld K %ld L %ld, %ld rounds, CPU time per call, median (min-max)\n", B,
           K, L, rounds);
    for (int v = 0; v < NROUTE; v++) {
        if (v == 5 && L8 == 0) continue;
        qsort(t[v], (size_t)rounds, sizeof(double), bench_cmpd);
        printf("  %-34s %8.3f us (%.3f-%.3f)\n", name[v], 1e6 * t[v][rounds / 2], 1e6 * t[v][0],
               1e6 * t[v][rounds - 1]);
    }
    printf("  (gauss: %.2f ns per point against %.2f)\n", 1e9 * t[0][rounds / 2] / (double)n,
           1e9 * t[1][rounds / 2] / (double)n);
    (void)sink;
    for (int q = 0; q < 4; q++)
        free(o[q]);
    free(F), free(S2), free(a), free(H), free(dH), free(lossv), free(y), free(da), free(dF),
        free(dS2);
    return 0;
}
#endif
