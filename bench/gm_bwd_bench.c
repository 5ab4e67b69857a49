/* gm_bwd_bench.c -- the fused SGD step's backward half on one thread, CPU time per step (median
 * of the rounds, the two routes alternated round by round): the two backward products
 * (gmf_nn_kern_tn: [dmu; dW] = dF^T X and dsig2 = dS2^T (X*X)) followed by
 * gmf_nn_kern_gm_update for each component -- the route before docs/PERFORMANCE.md section 10.2 --
 * against gmf_nn_kern_tn_update, which keeps each component's product rows in registers and runs
 * the parameter pass from them.  Shapes of `gmflow train` by default (B 64, d 784, K 20, L 9).
 *
 *   build/bench/gm_bwd_bench [--rounds 7] [--B 64] [--d 784] [--K 20] [--L 9]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/discrete/nn_internal.h"
#include "benchutil.h"

#ifndef GMF_NN_KERN
int main(void) {
    printf("gm_bwd_bench: this build has no AVX-512 kernels (GMF_NN_KERN)\n");
    return 0;
}
#else

enum { NROUND = 64 };

/* n floats on a 64-byte boundary, uniform in [lo, lo + 1) */
static float *falloc(size_t n, float lo) {
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (p)
        for (size_t e = 0; e < n; e++)
            p[e] = lo + (float)rand() / (float)RAND_MAX;
    return p;
}

int main(int argc, char **argv) {
    long rounds = 7, B = 64, d = 784, K = 20, L = 9;
    const int rc = bench_gm_shape_args(argc, argv, "gm_bwd_bench", &rounds, &B, &d, &K, &L);
    if (rc >= 0) return rc;
    if (rounds < 1 || rounds > NROUND || B < 1 || B > GMF_NN_KERN_TU_MMAX || d < 1 || K < 1 ||
        L < 0 || L > GMF_NN_KERN_TU_LMAX) {
        fprintf(stderr, "gm_bwd_bench: bad option value (B <= %d, L <= %d)\n", GMF_NN_KERN_TU_MMAX,
                GMF_NN_KERN_TU_LMAX);
        return 2;
    }
    const size_t Bz = (size_t)B, dz = (size_t)d, Kz = (size_t)K, Lz = (size_t)L;
    const size_t W = Kz * (Lz + 1);
    srand(1);
    float *X = falloc(Bz * dz, -0.5f), *F = falloc(Bz * W, -0.5f), *S2 = falloc(Bz * Kz, -0.5f);
    float *dP = falloc(W * dz, 0.0f), *dS = falloc(Kz * dz, 0.0f);
    float *U = falloc(Kz * Lz * dz + 1, -0.5f), *mu = falloc(Kz * dz, -0.5f);
    float *sg = falloc(Kz * dz, 0.5f), *s2 = falloc(Kz * dz, 0.0f), *muW = falloc(W * dz, 0.0f);
    float *dal = falloc(Kz * Lz + 1, -0.5f);
    double *acc = malloc(sizeof(double) * (Kz * Lz + 1));
    if (!X || !F || !S2 || !dP || !dS || !U || !mu || !sg || !s2 || !muW || !dal || !acc) return 1;
    for (size_t e = 0; e < Kz * dz; e++)
        s2[e] = sg[e] * sg[e];
    const float rU = 1e-6f, rS = 1e-6f, rM = 1e-6f; /* small: the parameters barely move */
    const int reps = 200;
    double t[2][NROUND];
    for (long r = 0; r < rounds; r++)
        for (int v = 0; v < 2; v++) {
            const double c0 = bench_cpu_s();
            for (int q = 0; q < reps; q++) {
                if (v == 0) {
                    gmf_nn_kern_tn(W, dz, Bz, F, W, X, dz, dP, dz, 0, 0);
                    gmf_nn_kern_tn(Kz, dz, Bz, S2, Kz, X, dz, dS, dz, 1, 0);
                    for (size_t k = 0; k < Kz; k++)
                        gmf_nn_kern_gm_update(dz, Lz, U + k * Lz * dz, mu + k * dz, sg + k * dz,
                                              dP + k * (Lz + 1) * dz + dz, dP + k * (Lz + 1) * dz,
                                              dS + k * dz, s2 + k * dz, muW + k * (Lz + 1) * dz,
                                              dal + k * Lz, rU, rS, rM, acc + k * Lz);
                } else
                    gmf_nn_kern_tn_update(Bz, dz, Lz, 0, Kz, X, dz, F, W, S2, Kz, U, mu, sg, s2,
                                          muW, dal, rU, rS, rM, acc);
            }
            t[v][r] = (bench_cpu_s() - c0) / reps;
        }
    double g[2];
    for (int v = 0; v < 2; v++) {
        qsort(t[v], (size_t)rounds, sizeof(double), bench_cmpd);
        g[v] = t[v][rounds / 2];
    }
    const double fl = 2.0 * (double)(Bz * (W + Kz) * dz); /* the two products */
    printf("gm_bwd_bench B=%ld d=%ld K=%ld L=%ld: tn x2 + gm_update %.1f us, tn_update %.1f us "
           "(%.2fx); %.1f vs %.1f GFLOP/s of products incl. the parameter pass\n",
           B, d, K, L, 1e6 * g[0], 1e6 * g[1], g[0] / g[1], 1e-9 * fl / g[0], 1e-9 * fl / g[1]);
    free(X), free(F), free(S2), free(dP), free(dS), free(U), free(mu), free(sg), free(s2);
    free(muW), free(dal), free(acc);
    return 0;
}
#endif
