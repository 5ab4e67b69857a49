/* gm_kern_bench.c -- GFLOP/s (CPU time) of the GM step's four products, gm_kern.c's AVX-512
 * kernels against cblas_sgemm on the same shapes, interleaved round by round (median of the
 * rounds).  Shapes of `gmflow train` (B 64, d 784, K 20, L 9): forward F = X [mu;W]^T
 * (64 x 200 x 784), S2 = (X*X) sig2^T (64 x 20 x 784); backward dmuW += dF^T X (200 x 784 x 64),
 * dsig2 += dS2^T (X*X) (20 x 784 x 64).  The measurement behind docs/PERFORMANCE.md section 9;
 * last line: the gather's byte -> X + X^T conversion, plain and fused (gmf_nn_kern_xt_conv_u8).
 *
 *   build/bench/gm_kern_bench [--rounds 7] [--B 64] [--d 784] [--K 20] [--L 9]
 */
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/discrete/nn_internal.h"
#include "benchutil.h"

#ifndef GMF_NN_KERN
int main(void) {
    printf("gm_kern_bench: this build has no AVX-512 kernels (GMF_NN_KERN)\n");
    return 0;
}
#else

enum { NROUND = 64 };

static float *falloc(size_t n) {
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (p) memset(p, 0, n * sizeof(float));
    return p;
}

int main(int argc, char **argv) {
    long rounds = 7, B = 64, d = 784, K = 20, L = 9;
    const int rc = bench_gm_shape_args(argc, argv, "gm_kern_bench", &rounds, &B, &d, &K, &L);
    if (rc >= 0) return rc;
    if (rounds < 1 || rounds > NROUND || B < 1 || d < 1 || K < 1 || L < 0) {
        fprintf(stderr, "gm_kern_bench: bad option value\n");
        return 2;
    }
    const size_t W = (size_t)(K * (L + 1));
    /* 64-byte aligned, as the library's buffers (rows then start on cache lines when d is a
     * multiple of 16) */
    float *X = falloc((size_t)(B * d)), *X2 = falloc((size_t)(B * d));
    float *P = falloc(W * d), *S = falloc((size_t)(K * d));
    float *F = falloc(B * W), *S2 = falloc((size_t)(B * K));
    float *dP = falloc(W * d), *dS = falloc((size_t)(K * d));
    /* X^T for gm_kern_xt.c's forward products (panels of 64 rows, as the library's) */
    float *XT = falloc(gmf_nn_xt_size((size_t)B, (size_t)d));
    if (!X || !X2 || !P || !S || !F || !S2 || !dP || !dS || !XT) return 1;
    srand(1);
    for (long e = 0; e < B * d; e++)
        X[e] = (float)rand() / RAND_MAX - 0.5f, X2[e] = X[e] * X[e];
    for (size_t e = 0; e < W * d; e++)
        P[e] = (float)rand() / RAND_MAX - 0.5f;
    for (long e = 0; e < K * d; e++)
        S[e] = (float)rand() / RAND_MAX;
    for (size_t e = 0; e < B * W; e++)
        F[e] = (float)rand() / RAND_MAX - 0.5f;
    for (long e = 0; e < B * K; e++)
        S2[e] = (float)rand() / RAND_MAX - 0.5f;
    const char *name[4] = {"F 64x200x784", "S2 64x20x784", "dmuW 200x784x64", "dsig2 20x784x64"};
    const double fl[4] = {2.0 * B * W * d, 2.0 * B * K * d, 2.0 * B * W * d, 2.0 * B * K * d};
    double t[3][4][NROUND], ttr[NROUND];
    const int reps = 200;
    for (long r = 0; r < rounds; r++)
        for (int v = 0; v < 3; v++) {
            if (v == 2) { /* the per-step transpose X -> X^T alone */
                const double c0 = bench_cpu_s();
                for (int q = 0; q < reps; q++)
                    gmf_nn_kern_xt_trans(d, X, d, 0, B, XT);
                ttr[r] = (bench_cpu_s() - c0) / reps;
            }
            for (int s = 0; s < (v == 2 ? 2 : 4); s++) {
                const double c0 = bench_cpu_s();
                for (int q = 0; q < reps; q++) {
                    if (v == 2) { /* gm_kern_xt.c: F and S2 from X^T */
                        if (s == 0)
                            gmf_nn_kern_xt(B, W, d, XT, 0, P, d, F, W, 0);
                        else
                            gmf_nn_kern_xt(B, K, d, XT, 0, S, d, S2, K, 1);
                    } else if (v == 0) {
                        if (s == 0)
                            gmf_nn_kern_nt(B, W, d, X, d, P, d, F, W, 0);
                        else if (s == 1)
                            gmf_nn_kern_nt(B, K, d, X, d, S, d, S2, K, 1);
                        else if (s == 2)
                            gmf_nn_kern_tn(W, d, B, F, W, X, d, dP, d, 0, 0);
                        else
                            gmf_nn_kern_tn(K, d, B, S2, K, X, d, dS, d, 1, 0);
                    } else {
                        if (s == 0)
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, W, d, 1, X, d,
                                        P, d, 0, F, W);
                        else if (s == 1)
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, K, d, 1, X2, d,
                                        S, d, 0, S2, K);
                        else if (s == 2)
                            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, W, d, B, 1, F, W,
                                        X, d, 1, dP, d);
                        else
                            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, d, B, 1, S2, K,
                                        X2, d, 1, dS, d);
                    }
                }
                t[v][s][r] = (bench_cpu_s() - c0) / reps;
                if (s >= 2)
                    memset(s == 2 ? dP : dS, 0, sizeof(float) * (s == 2 ? W : (size_t)K) * d);
            }
        }
    double sum[2] = {0, 0};
    for (int s = 0; s < 4; s++) {
        double g[2];
        for (int v = 0; v < 2; v++) {
            qsort(t[v][s], rounds, sizeof(double), bench_cmpd);
            g[v] = t[v][s][rounds / 2];
            sum[v] += g[v];
        }
        printf("gm_kern_bench %-16s kern %7.1f GFLOP/s  sgemm %7.1f GFLOP/s  (%.2fx)\n", name[s],
               1e-9 * fl[s] / g[0], 1e-9 * fl[s] / g[1], g[1] / g[0]);
    }
    qsort(t[2][0], rounds, sizeof(double), bench_cmpd);
    qsort(t[2][1], rounds, sizeof(double), bench_cmpd);
    qsort(ttr, rounds, sizeof(double), bench_cmpd);
    const double x0 = t[2][0][rounds / 2], x1 = t[2][1][rounds / 2], xt = ttr[rounds / 2];
    printf("gm_kern_bench xt: F %.1f GFLOP/s (%.2fx nt), S2 %.1f GFLOP/s (%.2fx nt), X^T %.2f us; "
           "F+S2+X^T %.1f us vs nt F+S2 %.1f us (%.2fx)\n",
           1e-9 * fl[0] / x0, t[0][0][rounds / 2] / x0, 1e-9 * fl[1] / x1, t[0][1][rounds / 2] / x1,
           1e6 * xt, 1e6 * (x0 + x1 + xt), 1e6 * (t[0][0][rounds / 2] + t[0][1][rounds / 2]),
           (t[0][0][rounds / 2] + t[0][1][rounds / 2]) / (x0 + x1 + xt));
    /* The forward products as the training step meets them: the parameters out of L2 (the step's
     * backward and update stream about 2 MB between two forward passes; here a 4 MB buffer is
     * written before each call), the batch just written (X, or the gather + X^T, read once
     * before the call).  Per call, nt (F then S2) against X^T + xt (F then S2), alternated. */
    const size_t nev = (size_t)4 << 20;
    char *ev = malloc(nev);
    if (!ev) return 1;
    double tc[2][NROUND];
    for (long r = 0; r < rounds; r++)
        for (int v = 0; v < 2; v++) {
            double acc = 0.0;
            for (int q = 0; q < 50; q++) {
                memset(ev, q, nev);
                volatile float sink = 0.0f;
                for (long e = 0; e < B * d; e += 16)
                    sink += X[e];
                const double c0 = bench_cpu_s();
                if (v == 0) {
                    gmf_nn_kern_nt(B, W, d, X, d, P, d, F, W, 0);
                    gmf_nn_kern_nt(B, K, d, X, d, S, d, S2, K, 1);
                } else {
                    gmf_nn_kern_xt_trans(d, X, d, 0, B, XT);
                    gmf_nn_kern_xt(B, W, d, XT, 0, P, d, F, W, 0);
                    gmf_nn_kern_xt(B, K, d, XT, 0, S, d, S2, K, 1);
                }
                acc += bench_cpu_s() - c0;
            }
            tc[v][r] = acc / 50;
        }
    free(ev);
    qsort(tc[0], rounds, sizeof(double), bench_cmpd);
    qsort(tc[1], rounds, sizeof(double), bench_cmpd);
    printf("gm_kern_bench cold parameters: nt F+S2 %.1f us (%.1f GFLOP/s), X^T+xt F+S2 %.1f us "
           "(%.1f GFLOP/s): %.2fx\n",
           1e6 * tc[0][rounds / 2], 1e-9 * (fl[0] + fl[1]) / tc[0][rounds / 2],
           1e6 * tc[1][rounds / 2], 1e-9 * (fl[0] + fl[1]) / tc[1][rounds / 2],
           tc[0][rounds / 2] / tc[1][rounds / 2]);
    printf("gm_kern_bench all four: kern %.1f us  sgemm %.1f us  (%.2fx), %.1f vs %.1f GFLOP/s\n",
           1e6 * sum[0], 1e6 * sum[1], sum[1] / sum[0],
           1e-9 * (fl[0] + fl[1] + fl[2] + fl[3]) / sum[0],
           1e-9 * (fl[0] + fl[1] + fl[2] + fl[3]) / sum[1]);
    {
        /* The gather's conversion of a batch of byte rows (MNIST-like: about 80 % zero bytes)
         * into X and X^T: gmf_dataset_u8_row per row then gmf_nn_kern_xt_trans (the float
         * data set's route, and main's before the fused kernel) against gmf_nn_kern_xt_conv_u8
         * (both at once), alternated, 200 calls each per round, hot (L1/L2). */
        uint8_t *U8 = malloc((size_t)(B * d));
        double *sc = malloc(2 * (size_t)B * sizeof(double));
        double tv[2][NROUND];
        if (!U8 || !sc) return 1;
        for (long e = 0; e < B * d; e++)
            U8[e] = rand() % 5 ? 0 : (uint8_t)(rand() % 256);
        for (long i = 0; i < B; i++)
            sc[2 * i] = 33.0 + 0.1 * (double)i, sc[2 * i + 1] = 1.0 / 80.0;
        for (long r = 0; r < rounds; r++) {
            double t0 = bench_cpu_s();
            for (int c = 0; c < 200; c++) {
                for (long i = 0; i < B; i++)
                    gmf_dataset_u8_row(X + i * d, U8 + i * d, (size_t)d, sc[2 * i], sc[2 * i + 1]);
                gmf_nn_kern_xt_trans((size_t)d, X, (size_t)d, 0, (size_t)B, XT);
            }
            double t1 = bench_cpu_s();
            tv[0][r] = (t1 - t0) / 200;
            for (int c = 0; c < 200; c++)
                gmf_nn_kern_xt_conv_u8((size_t)d, U8, (size_t)d, sc, 0, (size_t)B, X, (size_t)d,
                                       XT);
            tv[1][r] = (bench_cpu_s() - t1) / 200;
        }
        qsort(tv[0], rounds, sizeof(double), bench_cmpd);
        qsort(tv[1], rounds, sizeof(double), bench_cmpd);
        printf("gm_kern_bench bytes -> X + X^T (%ld rows): u8_row + xt_trans %.2f us, "
               "xt_conv_u8 %.2f us (%.2fx)\n",
               B, 1e6 * tv[0][rounds / 2], 1e6 * tv[1][rounds / 2],
               tv[0][rounds / 2] / tv[1][rounds / 2]);
        free(U8), free(sc);
    }
    free(XT), free(X), free(X2), free(P), free(S), free(F), free(S2), free(dP), free(dS);
    return 0;
}
#endif
