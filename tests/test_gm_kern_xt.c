/* test_gm_kern_xt.c -- gm_kern_xt.c's forward products from the transposed batch (nn_internal.h:
 * gmf_nn_kern_xt_trans, gmf_nn_kern_xt) against a plain loop in double, against a scalar fmaf
 * chain (the documented summation order, bit for bit) and against gm_kern.c's nt product (the
 * route they replace).  Skipped (exit 77) in builds without AVX-512 (no GMF_NN_KERN).
 *
 *   xt_trans: X^T[p, i] = X[i * ldx + p] for rows [i0, i1), p < d, X^T in panels of 64 columns:
 *             X^T[p, i] at XT[(i / 64) 64 d + 64 p + i % 64]
 *   xt:       C[i, j] = sum_p X^T[p, i0 + i] B[j, p]   (squared when sq), C overwritten
 *
 * Sizes: every batch size B in 1..70 with d in {1, 15, 16, 17, 63, 100} and N in a list across
 * the 6-row tile's edges (1, 2, 5, 6, 7, 11, 13, 20, 31), plus the step's shapes (64 x 200 x 784,
 * 64 x 20 x 784) and odd ones at d = 784 (B 33, 65; N 7, 200); leading dimensions larger than the
 * sizes, operands at odd float offsets (unaligned), sq 0 and 1, X^T built in two row ranges (as
 * two pool threads build it).  Checks:
 *   - X^T: every entry exactly X's, entries outside the columns written untouched;
 *   - against double: |got - exact| <= (d + 2) 2^-24 sum_p |x_p b_p| (a sum of d float products
 *     in any order is within about d u of it; a wrong lane, mask or row errs by O(1) of it);
 *   - bit for bit against the fmaf chain acc = fmaf(x_p, b_p, acc), p = 0 .. d-1 from acc = 0
 *     (x_p = x * x rounded to float when sq): the order nn_internal.h promises;
 *   - entries outside C (padding columns, the row past the end) untouched;
 *   - row ranges (i0, C + i0 ldc: the rows split) and column ranges (B + j0 rows, C + j0:
 *     the components split) bitwise the whole product's;
 *   - xt_conv_u8 (bytes -> X and X^T at once): X and X^T bit for bit the plain scalar conversion
 *     gmf_dataset_u8_value and the panel formula, for B 1..70 x d in {1, 7, 15, 16, 17, 33,
 *     100, 784} and B 64 and 500 at d = 784, in 1-3 row ranges; and only the rows [j0, j1)
 *     with j0 > 0 (inside a 16-row block, at its start, in the second 64-row panel; B up to
 *     130, d in {1, 13, 16, 31, 784}); nothing outside written.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../src/discrete/nn_internal.h"
#include "gmflow/dataset.h"
#include "testutil.h"

#ifndef GMF_NN_KERN
int main(void) {
    printf("test_gm_kern_xt: SKIP: this build has no AVX-512 kernels (GMF_NN_KERN undefined)\n");
    return 77;
}
#else

static tu_worst worst;
static const float SENT = -12345.0f; /* padding sentinel */

static float *fsent(size_t n) {
    float *p = tu_xmalloc((n + 16) * sizeof(float));
    for (size_t e = 0; e < n + 16; e++)
        p[e] = SENT;
    return p;
}

static int same_bits(float a, float b) {
    return memcmp(&a, &b, sizeof a) == 0;
}

/* one case: B batch rows, N parameter rows, d columns */
static void case_xt(gsl_rng *r, size_t B, size_t N, size_t d, int sq, size_t off) {
    const size_t ldx = d + 3, ldb = d + 1 + off, ldc = N + 2, nx = gmf_nn_xt_size(B, d);
    float *Xb = tu_frand(r, B * ldx, off), *Bb = tu_frand(r, N * ldb, off);
    const float *X = Xb + off, *P = Bb + off;
    float *XTb = fsent(nx + off), *XT = XTb + off;
    /* X^T in two row ranges, as two pool threads form it */
    const size_t ih = B / 2 + (B > 2);
    gmf_nn_kern_xt_trans(d, X, ldx, ih < B ? ih : B, B, XT);
    gmf_nn_kern_xt_trans(d, X, ldx, 0, ih < B ? ih : B, XT);
    int tr = 1;
    for (size_t p = 0; p < d; p++)
        for (size_t i = 0; i < nx / d; i++) {
            const float want = i < B ? X[i * ldx + p] : SENT;
            if (!same_bits(XT[(i / 64) * 64 * d + 64 * p + i % 64], want)) tr = 0;
        }
    CHECK(tr, "xt_trans B=%zu d=%zu: X^T wrong or padding written", B, d);
    CHECK(XT[nx] == SENT && (off == 0 || XTb[0] == SENT), "xt_trans B=%zu d=%zu: outside", B, d);

    float *Cb = fsent(B * ldc + off), *C = Cb + off;
    gmf_nn_kern_xt(B, N, d, XT, 0, P, ldb, C, ldc, sq);
    double we = 0.0;
    int chain = 1;
    for (size_t i = 0; i < B; i++)
        for (size_t j = 0; j < N; j++) {
            double exact = 0.0, s = 0.0;
            float acc = 0.0f;
            for (size_t p = 0; p < d; p++) {
                const float x = sq ? X[i * ldx + p] * X[i * ldx + p] : X[i * ldx + p];
                const float b = P[j * ldb + p];
                exact += (double)x * b, s += fabs((double)x * b);
                acc = fmaf(x, b, acc);
            }
            const double e = fabs((double)C[i * ldc + j] - exact) / fmax(s, 1e-30);
            if (e > we) we = e;
            CHECK(e <= (double)(d + 2) * 0x1p-24, "xt B=%zu N=%zu d=%zu sq=%d (%zu,%zu): err %.3g",
                  B, N, d, sq, i, j, e);
            if (!same_bits(C[i * ldc + j], acc)) chain = 0;
        }
    CHECK(chain, "xt B=%zu N=%zu d=%zu sq=%d: not bitwise the fmaf chain over p", B, N, d, sq);
    for (size_t i = 0; i < B; i++)
        for (size_t j = N; j < ldc; j++)
            CHECK(C[i * ldc + j] == SENT, "xt B=%zu N=%zu d=%zu: padding (%zu,%zu) written", B, N,
                  d, i, j);
    CHECK(C[B * ldc] == SENT && (off == 0 || Cb[0] == SENT), "xt B=%zu N=%zu d=%zu: outside C", B,
          N, d);
    tu_worst_update(&worst, we / ((double)(d + 2) * 0x1p-24), "xt B=%zu N=%zu d=%zu sq=%d", B, N, d,
                    sq);

    float *Cs = fsent(B * ldc);
    /* column ranges (a pool thread's components) */
    for (size_t j0 = 0; j0 < N; j0 += 4) {
        const size_t j1 = j0 + 7 < N ? j0 + 7 : N;
        for (size_t e = 0; e < B * ldc; e++)
            Cs[e] = SENT;
        gmf_nn_kern_xt(B, j1 - j0, d, XT, 0, P + j0 * ldb, ldb, Cs + j0, ldc, sq);
        int same = 1;
        for (size_t i = 0; i < B; i++)
            for (size_t j = 0; j < ldc; j++)
                if (!same_bits(Cs[i * ldc + j], j >= j0 && j < j1 ? C[i * ldc + j] : SENT))
                    same = 0;
        CHECK(same, "xt B=%zu N=%zu d=%zu sq=%d: columns [%zu,%zu) not bitwise the whole", B, N, d,
              sq, j0, j1);
    }
    /* row ranges (the rows split: a view at row i0) */
    for (size_t i0 = 0; i0 < B; i0 += 13) {
        const size_t i1 = i0 + 21 < B ? i0 + 21 : B;
        for (size_t e = 0; e < B * ldc; e++)
            Cs[e] = SENT;
        gmf_nn_kern_xt(i1 - i0, N, d, XT, i0, P, ldb, Cs + i0 * ldc, ldc, sq);
        int same = 1;
        for (size_t i = 0; i < B; i++)
            for (size_t j = 0; j < ldc; j++)
                if (!same_bits(Cs[i * ldc + j], i >= i0 && i < i1 && j < N ? C[i * ldc + j] : SENT))
                    same = 0;
        CHECK(same, "xt B=%zu N=%zu d=%zu sq=%d: rows [%zu,%zu) not bitwise the whole", B, N, d, sq,
              i0, i1);
    }
    free(Xb), free(Bb), free(XTb), free(Cb), free(Cs);
}

/* The step's shapes against gm_kern.c's nt product (another summation order: the two agree to
 * the double-reference bound above, 2 (d + 2) 2^-24 of the sum of |terms|). */
static void against_nt(gsl_rng *r, size_t B, size_t N, size_t d, int sq) {
    float *X = tu_frand(r, B * d, 0), *P = tu_frand(r, N * d, 0), *XT = fsent(gmf_nn_xt_size(B, d));
    float *C1 = fsent(B * N), *C2 = fsent(B * N);
    gmf_nn_kern_xt_trans(d, X, d, 0, B, XT);
    gmf_nn_kern_xt(B, N, d, XT, 0, P, d, C1, N, sq);
    gmf_nn_kern_nt(B, N, d, X, d, P, d, C2, N, sq);
    double we = 0.0;
    for (size_t i = 0; i < B; i++)
        for (size_t j = 0; j < N; j++) {
            double s = 0.0;
            for (size_t p = 0; p < d; p++) {
                const float x = sq ? X[i * d + p] * X[i * d + p] : X[i * d + p];
                s += fabs((double)x * P[j * d + p]);
            }
            const double e = fabs((double)C1[i * N + j] - C2[i * N + j]) / fmax(s, 1e-30);
            if (e > we) we = e;
        }
    CHECK(we <= 2.0 * (double)(d + 2) * 0x1p-24, "xt vs nt (%zu x %zu x %zu, sq %d): %.3g", B, N, d,
          sq, we);
    printf("test_gm_kern_xt: xt vs nt %zu x %zu x %zu sq %d: %.3g of sum |terms|\n", B, N, d, sq,
           we);
    free(X), free(P), free(XT), free(C1), free(C2);
}

/* gmf_nn_kern_xt_conv_u8 (the gather's conversion with the transposition fused) against the
 * plain C route: X[i, p] = gmf_dataset_u8_value(S[i lds + p], mean_i, inv_i) (idx.h's scalar
 * conversion) and X^T filled by the panel formula from those values; both bit for bit, nothing
 * outside the rows and columns written.  Rows in up to three ranges, as threads (or a caller
 * starting at an odd row) would form them; mean and 1/sd as the loader's (MNIST-like bytes,
 * mean 0..140, 1/sd 1/120 .. 1/20) and some rows all zero or all 255. */
static void case_conv(gsl_rng *r, size_t B, size_t d, size_t nrange, size_t j0, size_t j1) {
    const size_t lds = d + 5, ldx = d + 2, nx = gmf_nn_xt_size(B, d);
    uint8_t *S = tu_xmalloc(B * lds + 1);
    double *sc = tu_xmalloc(2 * B * sizeof(double));
    for (size_t i = 0; i < B; i++) {
        const int kind = (int)gsl_rng_uniform_int(r, 8);
        for (size_t p = 0; p < lds; p++)
            S[i * lds + p] =
                kind == 0   ? 0
                : kind == 1 ? 255
                            : (gsl_rng_uniform(r) < 0.5 ? 0 : (uint8_t)gsl_rng_uniform_int(r, 256));
        sc[2 * i] = 140.0 * gsl_rng_uniform(r);
        sc[2 * i + 1] = 1.0 / (20.0 + 100.0 * gsl_rng_uniform(r));
    }
    float *X = fsent(B * ldx), *XT = fsent(nx);
    size_t cut[4] = {j0, j1, j1, j1};
    if (nrange > 1) cut[1] = j0 + gsl_rng_uniform_int(r, j1 - j0 + 1);
    if (nrange > 2) cut[2] = cut[1] + gsl_rng_uniform_int(r, j1 - cut[1] + 1);
    for (size_t k = nrange; k-- > 0;) /* the ranges in reverse order */
        gmf_nn_kern_xt_conv_u8(d, S, lds, sc, cut[k], cut[k + 1], X, ldx, XT);
    int okx = 1, okt = 1; /* rows [j0, j1) written, every other entry untouched */
    for (size_t i = 0; i < B; i++)
        for (size_t p = 0; p < ldx; p++) {
            const float want = p < d && i >= j0 && i < j1
                                   ? gmf_dataset_u8_value(S[i * lds + p], sc[2 * i], sc[2 * i + 1])
                                   : SENT;
            if (!same_bits(X[i * ldx + p], want)) okx = 0;
        }
    for (size_t p = 0; p < d; p++)
        for (size_t i = 0; i < nx / d; i++) {
            const float want = i >= j0 && i < j1
                                   ? gmf_dataset_u8_value(S[i * lds + p], sc[2 * i], sc[2 * i + 1])
                                   : SENT;
            if (!same_bits(XT[(i / 64) * 64 * d + 64 * p + i % 64], want)) okt = 0;
        }
    CHECK(okx, "xt_conv_u8 B=%zu d=%zu rows [%zu,%zu) ranges=%zu: X wrong or outside written", B, d,
          j0, j1, nrange);
    CHECK(okt, "xt_conv_u8 B=%zu d=%zu rows [%zu,%zu) ranges=%zu: X^T wrong or outside written", B,
          d, j0, j1, nrange);
    CHECK(X[B * ldx] == SENT && XT[nx] == SENT, "xt_conv_u8 B=%zu d=%zu: outside", B, d);
    free(S), free(sc), free(X), free(XT);
}

int main(void) {
    tu_worst_init(&worst);
    gsl_rng *r = tu_rng(20);
    printf("test_gm_kern_xt: seed %lu\n", tu_seed());
    const size_t Ns[] = {1, 2, 5, 6, 7, 11, 13, 20, 31};
    const size_t ds[] = {1, 15, 16, 17, 63, 100};
    size_t ncase = 0;
    for (size_t B = 1; B <= 70; B++)
        for (size_t c = 0; c < sizeof ds / sizeof *ds; c++) {
            /* every N for a few batch sizes, one N (cycling) for the others */
            const int all = B % 16 <= 1 || B == 63 || B == 70;
            for (size_t b = 0; b < sizeof Ns / sizeof *Ns; b++) {
                if (!all && b != (B + c) % (sizeof Ns / sizeof *Ns)) continue;
                case_xt(r, B, Ns[b], ds[c], (int)((B + b + c) & 1), (B + c) % 3);
                ncase++;
            }
        }
    const size_t big[][3] = {{64, 200, 784}, {64, 20, 784}, {33, 7, 784}, {65, 200, 784}};
    for (size_t k = 0; k < 4; k++)
        for (int sq = 0; sq < 2; sq++) {
            case_xt(r, big[k][0], big[k][1], big[k][2], sq, k % 3);
            ncase++;
        }
    const size_t dc[] = {1, 7, 15, 16, 17, 33, 100, 784};
    for (size_t B = 1; B <= 70; B++)
        for (size_t c = 0; c < sizeof dc / sizeof *dc; c++) {
            case_conv(r, B, dc[c], 1 + (B + c) % 3, 0, B);
            ncase++;
        }
    for (size_t k = 1; k <= 3; k++) {
        case_conv(r, 64, 784, k, 0, 64);   /* the training step's batch */
        case_conv(r, 500, 784, k, 0, 500); /* the evaluation's */
        ncase += 2;
    }
    /* only some rows [j0, j1), j0 > 0 (inside a 16-row block, at one, inside the second 64-row
     * panel), the rest untouched: full and partial blocks, odd d and d a multiple of 16 */
    const size_t rg[][3] = {{70, 5, 37},  {70, 16, 64}, {70, 17, 18}, {130, 64, 130},
                            {130, 3, 99}, {33, 31, 33}, {64, 48, 64}, {100, 65, 81}};
    const size_t dr[] = {1, 13, 16, 31, 784};
    for (size_t k = 0; k < sizeof rg / sizeof *rg; k++)
        for (size_t c = 0; c < sizeof dr / sizeof *dr; c++) {
            case_conv(r, rg[k][0], dr[c], 1 + (k + c) % 3, rg[k][1], rg[k][2]);
            ncase++;
        }
    against_nt(r, 64, 200, 784, 0);
    against_nt(r, 64, 20, 784, 1);
    gsl_rng_free(r);
    printf("test_gm_kern_xt: %zu cases; worst error %.3g of the bound (%s)\n", ncase, worst.value,
           worst.what);
    return tu_finish("test_gm_kern_xt");
}
#endif
