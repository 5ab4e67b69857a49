/* conv_bench.c -- gmf_nn_kern_xt_conv_u8 alone (s23-conv): variants linked side by side (the
 * same source compiled with -D renames), alternated round by round, on staged 64 x 784 byte
 * batches resident in L2 (NB different batches, one per call, so that no branch pattern
 * repeats call after call), X and X^T 200 KB each.  Data: MNIST training images (raw bytes,
 * argv[1], 60000 x 784; written by python from train-images-idx3-ubyte.gz) or, with "rand",
 * i.i.d. bytes 80 % zero (gm_kern_bench's data).  Prints ns per call and per element and

 * checks every variant's X and X^T bitwise against variant 0's.
 *
 *   conv_bench FILE|rand [rounds] */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef void convfn(size_t d, const uint8_t *S, size_t lds, const double *scale, size_t i0,
                    size_t i1, float *X, size_t ldx, float *XT);
#include <immintrin.h>
convfn conv_v0, conv_v1, conv_v2;
/* the floor of the output traffic: X and X^T written (zmm stores, 400 KB), nothing computed;
 * and the same plus the bytes read */
static void stores_only(size_t d, const uint8_t *S, size_t lds, const double *scale, size_t i0,
                        size_t i1, float *X, size_t ldx, float *XT) {
    (void)S, (void)lds;
    const __m512 v = _mm512_set1_ps((float)scale[0]);
    for (size_t i = i0; i < i1; i++)
        for (size_t p = 0; p < d; p += 16)
            _mm512_storeu_ps(X + i * ldx + p, v);
    for (size_t e = 0; e < (i1 - i0) * d; e += 16)
        _mm512_storeu_ps(XT + e, v);
}
static void stores_reads(size_t d, const uint8_t *S, size_t lds, const double *scale, size_t i0,
                         size_t i1, float *X, size_t ldx, float *XT) {
    __m512 v = _mm512_set1_ps((float)scale[0]);
    for (size_t i = i0; i < i1; i++)
        for (size_t p = 0; p < d; p += 16) {
            v = _mm512_add_ps(v, _mm512_castsi512_ps(_mm512_cvtepu8_epi32(
                                     _mm_loadu_si128((const __m128i *)(S + i * lds + p)))));
            _mm512_storeu_ps(X + i * ldx + p, v);
        }
    for (size_t e = 0; e < (i1 - i0) * d; e += 16)
        _mm512_storeu_ps(XT + e, v);
}
static convfn *const fns[] = {conv_v0, conv_v1, conv_v2, stores_only, stores_reads};
static const char *const names[] = {"base 0111c4a", "new, ZSKIP0", "new", "stores only",
                                    "stores+bytes"};
enum { NV = 5, NB = 16, B = 64, CALLS = 40 };
static int D = 784; /* argv[3]: fewer columns (64: S, X and X^T in L1) */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
static int cmpd(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const int rounds = argc > 2 ? atoi(argv[2]) : 15;
    if (argc > 3) D = atoi(argv[3]);
    uint8_t *S = aligned_alloc(64, (size_t)NB * B * D);
    double *sc = malloc(sizeof(double) * 2 * NB * B);
    float *X = aligned_alloc(64, sizeof(float) * B * D),
          *XT = aligned_alloc(64, sizeof(float) * B * D);
    float *X0 = malloc(sizeof(float) * B * D), *XT0 = malloc(sizeof(float) * B * D);
    srand(7);
    FILE *f = strcmp(argv[1], "rand") ? fopen(argv[1], "rb") : NULL;
    for (int b = 0; b < NB * B; b++) {
        uint8_t *row = S + (size_t)b * D;
        if (f) {
            fseek(f, (long)(rand() % 60000) * 784 + 784 / 2 - D / 2,
                  SEEK_SET); /* (the middle columns) */
            if (fread(row, 1, (size_t)D, f) != (size_t)D) return 1;
        } else {
            for (int p = 0; p < D; p++)
                row[p] = rand() % 5 ? 0 : (uint8_t)(rand() % 256);
        }
        double s = 0, ss = 0;
        for (int p = 0; p < D; p++)
            s += row[p];
        const double m = s / D;
        for (int p = 0; p < D; p++)
            ss += (row[p] - m) * (row[p] - m);
        sc[2 * b] = m, sc[2 * b + 1] = 1.0 / sqrt(ss / D + 1e-12);
    }
    if (f) fclose(f);
    int bad = 0;
    for (int v = 0; v < 3; v++)
        for (int b = 0; b < NB; b++) {
            memset(X, 0xff, sizeof(float) * B * D), memset(XT, 0xff, sizeof(float) * B * D);
            fns[v](D, S + (size_t)b * B * D, D, sc + 2 * b * B, 0, B, X, D, XT);
            if (v == 0 && b == 0)
                memcpy(X0, X, sizeof(float) * B * D), memcpy(XT0, XT, sizeof(float) * B * D);
            if (b == 0 &&
                (memcmp(X, X0, sizeof(float) * B * D) || memcmp(XT, XT0, sizeof(float) * B * D)))
                printf("variant %d: NOT bitwise variant 0's\n", v), bad = 1;
        }
    double t[NV][64];
    for (int r = 0; r < rounds; r++)
        for (int v = 0; v < NV; v++) {
            const double t0 = now();
            for (int c = 0; c < CALLS; c++)
                for (int b = 0; b < NB; b++)
                    fns[v](D, S + (size_t)b * B * D, D, sc + 2 * b * B, 0, B, X, D, XT);
            t[v][r] = (now() - t0) / (CALLS * NB);
        }
    for (int v = 0; v < NV; v++) {
        qsort(t[v], rounds, sizeof(double), cmpd);
        printf(
            "%-14s %7.3f us per call (min %.3f, max %.3f)  %.3f ns per element  base/this %.3f\n",
            names[v], 1e6 * t[v][rounds / 2], 1e6 * t[v][0], 1e6 * t[v][rounds - 1],
            1e9 * t[v][rounds / 2] / (B * D), t[0][rounds / 2] / t[v][rounds / 2]);
    }
    return bad;
}
