/* blas_peak.c -- the GEMM rate this machine's OpenBLAS reaches: the practical FLOP-rate ceiling
 * that bench/run_train_bench.sh compares `gmflow train` and the PyTorch peer against.
 *
 *   build/bench/blas_peak [--threads N] [--n 2048] [--reps 5]
 *
 * Prints, for float32 and float64, the best of `reps` timings of
 *   - a large square GEMM (n x n x n), the attainable peak, and
 *   - the three GEMM shapes of one GM-layer training step on MNIST at K = 20, batch 64:
 *     F = X [mu; W]^T (64 x 784 -> K (L + 1) = 200), d[mu; W] = dF^T X (200 x 64 -> 784) and
 *     S2 = (X .* X) sig2^T (64 x 784 -> 20) -- N = K (L + 1) as in src/discrete/nn_tmpl.h,
 * as lines "blas_peak dtype=... shape=MxNxK threads=T gflops=G seconds=S gflops_cpu=C" (2 M N K
 * flops; G from the best wall time, C from the best process CPU time per thread, which time
 * slicing on a loaded machine does not inflate),
 * and first the core clock while busy, estimated from a chain of dependent integer adds (one
 * cycle each): "blas_peak clock_ghz=F" -- /proc/cpuinfo's "cpu MHz" is the nominal (TSC) rate,
 * which boost clocks exceed.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* the process's CPU time (all threads), seconds */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* C (m x n) = A (m x k) B (k x n) or with transposes as given; returns the best wall seconds per
 * call, and in *cpu_best the best process CPU seconds per call (all threads together). */
static double time_gemm(int dbl, int ta, int tb, int m, int n, int k, int reps, int inner,
                        double *cpu_best) {
    size_t sa = (size_t)m * k, sb = (size_t)k * n, sc = (size_t)m * n, es = dbl ? 8 : 4;
    void *a = malloc(sa * es), *b = malloc(sb * es), *c = malloc(sc * es);
    if (!a || !b || !c) {
        fprintf(stderr, "blas_peak: out of memory\n");
        exit(2);
    }
    for (size_t i = 0; i < sa; i++) {
        double v = (double)((i * 2654435761u) % 1000) / 1000.0 - 0.5;
        if (dbl)
            ((double *)a)[i] = v;
        else
            ((float *)a)[i] = (float)v;
    }
    for (size_t i = 0; i < sb; i++) {
        double v = (double)((i * 40503u) % 997) / 997.0 - 0.5;
        if (dbl)
            ((double *)b)[i] = v;
        else
            ((float *)b)[i] = (float)v;
    }
    memset(c, 0, sc * es);
    const CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
    const int lda = ta ? m : k, ldb = tb ? k : n;
    double best = 1e300;
    *cpu_best = 1e300;
    for (int r = 0; r < reps + 1; r++) { /* +1: warm-up */
        double t0 = now(), c0 = cpu_now();
        for (int i = 0; i < inner; i++) {
            if (dbl)
                cblas_dgemm(CblasRowMajor, TA, TB, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, n);
            else
                cblas_sgemm(CblasRowMajor, TA, TB, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n);
        }
        double t = (now() - t0) / inner, tc = (cpu_now() - c0) / inner;
        if (r > 0 && t < best) best = t;
        if (r > 0 && tc < *cpu_best) *cpu_best = tc;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

/* Core clock in GHz: 16 dependent 1-cycle adds per iteration; best of 100 runs of ~2 ms each, so
 * that on a shared machine some run sees the core to itself. */
static double clock_ghz(void) {
    const long n = 400000;
    double best = 0;
    for (int r = 0; r < 100; r++) {
        unsigned long x = 0;
        double t0 = now();
        for (long i = 0; i < n; i++)
            __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                             "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                             "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                             "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
                             : "+r"(x));
        double ghz = 16.0 * (double)n / (now() - t0) / 1e9;
        if (ghz > best) best = ghz;
    }
    return best;
}

int main(int argc, char **argv) {
    unsigned long ut = 1, un = 2048, ur = 5;
    const vh_opt opts[] = {{"--threads", VH_ULONG, &ut, NULL, NULL},
                           {"--n", VH_ULONG, &un, NULL, NULL},
                           {"--reps", VH_ULONG, &ur, NULL, NULL}};
    vh_parse(argc, argv, "blas_peak", "[--threads N] [--n 2048] [--reps 5]", opts, 3);
    if (ut < 1 || ut > 256 || un < 16 || un > 16384 || ur < 1 || ur > 1000)
        vh_usage_error("need 1 <= threads <= 256, 16 <= n <= 16384, 1 <= reps <= 1000");
    const int threads = (int)ut, n = (int)un, reps = (int)ur;
    openblas_set_num_threads(threads);
#if defined(__x86_64__)
    printf("blas_peak clock_ghz=%.3f\n", clock_ghz());
#endif
    const struct {
        const char *name;
        int ta, tb, m, n, k, inner;
    } shapes[] = {
        {"square", 0, 0, n, n, n, 1},
        {"gm_fwd_XWt", 0, 1, 64, 200, 784, 200},  /* F = X [mu; W]^T      */
        {"gm_bwd_dPtX", 1, 0, 200, 784, 64, 200}, /* d[mu; W] = dF^T X    */
        {"gm_fwd_Xmut", 0, 1, 64, 20, 784, 1000}, /* S2 = X2 sig2^T       */
    };
    for (int dbl = 0; dbl < 2; dbl++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            double tc, t = time_gemm(dbl, shapes[s].ta, shapes[s].tb, shapes[s].m, shapes[s].n,
                                     shapes[s].k, reps, shapes[s].inner, &tc);
            double fl = 2.0 * shapes[s].m * shapes[s].n * shapes[s].k;
            /* cpu: the rate per thread-second times the threads (= gflops on an idle machine) */
            printf("blas_peak dtype=%s shape=%s:%dx%dx%d threads=%d gflops=%.2f seconds=%.3e "
                   "gflops_cpu=%.2f\n",
                   dbl ? "float64" : "float32", shapes[s].name, shapes[s].m, shapes[s].n,
                   shapes[s].k, threads, fl / t / 1e9, t, fl / (tc / threads) / 1e9);
        }
    return 0;
}
