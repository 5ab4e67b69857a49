/* test_gm_kern.c -- gm_kern.c's AVX-512 float32 products (nn_internal.h: gmf_nn_kern_nt,
 * gmf_nn_kern_tn) against a plain loop in double, and against cblas_sgemm (the route the other
 * builds take); the fused step's parameter pass (gmf_nn_kern_gm_update) bit for bit against the
 * row-by-row float passes it replaces and against double (case_update); the backward products
 * fused with that pass (gmf_nn_kern_tn_update) bit for bit against tn + gm_update and against
 * double (case_tu).  Skipped (exit 77) in
 * builds without AVX-512 (no GMF_NN_KERN).
 *
 *   nt: C[i, j] = sum_p A[i, p] B[j, p]   (A squared when sq), C overwritten
 *   tn: C[j, p] = sum_i G[i, j] A[i, p]   (A squared when sq), C overwritten, or with add
 *       accumulated (C +=)
 *
 * Sizes: every M, N in a list with the register tiles' edges (1, 3, 4, 5, 6, 7, 13, 64, 200),
 * d across the 16-lane and 64-column edges (1, 15, 16, 17, 63, 64, 65, 100, 784), leading
 * dimensions larger than the sizes, operands at odd float offsets (unaligned), sq 0 and 1.
 * Tolerance, in units of the sum of the absolute values of the terms (s = sum |a b|, plus |C0|
 * for tn): |got - exact| <= (n + 2) 2^-24 s for a sum of n float products in any order (the
 * standard bound is about n u; a wrong index, lane or mask gives errors of order s).  Also, bit
 * for bit: entries outside the output (padding columns, rows past the end) are untouched; the
 * product of a column range [j0, j1) of nt (the components one pool thread owns) equals those
 * columns of the whole product; rows of tn likewise -- gm_job_run splits components over threads
 * and must give the 1-thread result.
 */
#include <gsl/gsl_cblas.h> /* cblas_sgemm (OpenBLAS at link time; testutil.h brings GSL) */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../src/discrete/nn_internal.h"
#include "testutil.h"

#ifndef GMF_NN_KERN
int main(void) {
    printf("test_gm_kern: SKIP: this build has no AVX-512 kernels (GMF_NN_KERN undefined)\n");
    return 77;
}
#else

static tu_worst worst, worst_tu;     /* worst_tu: case_tu alone */
static const float SENT = -12345.0f; /* padding sentinel */

/* nt on (M, N, d) with A (lda), B (ldb), C (ldc) at float offset off */
static void case_nt(gsl_rng *r, size_t M, size_t N, size_t d, int sq, size_t off) {
    const size_t lda = d + 3, ldb = d + 5, ldc = N + 2;
    float *Ab = tu_frand(r, M * lda, off), *Bb = tu_frand(r, N * ldb, off);
    float *Cb = tu_xmalloc((M * ldc + off + 16) * sizeof(float));
    float *Cs = tu_xmalloc((M * ldc + 16) * sizeof(float));
    const float *A = Ab + off, *B = Bb + off;
    float *C = Cb + off;
    for (size_t e = 0; e < M * ldc + off + 16; e++)
        Cb[e] = SENT;
    gmf_nn_kern_nt(M, N, d, A, lda, B, ldb, C, ldc, sq);
    double we = 0.0;
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            double exact = 0.0, s = 0.0;
            for (size_t p = 0; p < d; p++) {
                const double a = sq ? (double)(A[i * lda + p] * A[i * lda + p]) : A[i * lda + p];
                exact += a * B[j * ldb + p], s += fabs(a * B[j * ldb + p]);
            }
            const double e = fabs((double)C[i * ldc + j] - exact) / fmax(s, 1e-30);
            if (e > we) we = e;
            CHECK(e <= (double)(d + 2) * 0x1p-24, "nt M=%zu N=%zu d=%zu sq=%d (%zu,%zu): err %.3g",
                  M, N, d, sq, i, j, e);
        }
    for (size_t i = 0; i < M; i++)
        for (size_t j = N; j < ldc && (i + 1 < M || j < ldc); j++)
            CHECK(C[i * ldc + j] == SENT, "nt M=%zu N=%zu d=%zu: padding (%zu,%zu) written", M, N,
                  d, i, j);
    CHECK(Cb[0] == SENT || off == 0, "nt: before C written");
    CHECK(C[M * ldc] == SENT, "nt M=%zu N=%zu d=%zu: past the end written", M, N, d);
    tu_worst_update(&worst, we / ((double)(d + 2) * 0x1p-24), "nt M=%zu N=%zu d=%zu sq=%d", M, N, d,
                    sq);
    /* column ranges (a pool thread's components): bitwise the whole product's columns */
    for (size_t j0 = 0; j0 < N; j0 += 3) {
        const size_t j1 = j0 + 5 < N ? j0 + 5 : N;
        for (size_t e = 0; e < M * ldc; e++)
            Cs[e] = SENT;
        gmf_nn_kern_nt(M, j1 - j0, d, A, lda, B + j0 * ldb, ldb, Cs + j0, ldc, sq);
        int same = 1;
        for (size_t i = 0; i < M; i++)
            for (size_t j = 0; j < ldc; j++) {
                const float want = j >= j0 && j < j1 ? C[i * ldc + j] : SENT;
                if (memcmp(&Cs[i * ldc + j], &want, sizeof want)) same = 0;
            }
        CHECK(same, "nt M=%zu N=%zu d=%zu sq=%d: columns [%zu,%zu) not bitwise the whole", M, N, d,
              sq, j0, j1);
    }
    free(Ab), free(Bb), free(Cb), free(Cs);
}

/* tn on (N, d, M): G (M x N, ldg), A (M x d, lda), C (N x d, ldc) += ... at float offset off */
static void case_tn(gsl_rng *r, size_t N, size_t d, size_t M, int sq, size_t off, int add) {
    const size_t ldg = N + 3, lda = d + 1, ldc = d + 7;
    float *Gb = tu_frand(r, M * ldg, off), *Ab = tu_frand(r, M * lda, off);
    float *Cb = tu_xmalloc((N * ldc + off + 16) * sizeof(float));
    float *C0 = tu_xmalloc((N * ldc + 16) * sizeof(float));
    float *Cs = tu_xmalloc((N * ldc + 16) * sizeof(float));
    const float *G = Gb + off, *A = Ab + off;
    float *C = Cb + off;
    for (size_t e = 0; e < N * ldc + off + 16; e++)
        Cb[e] = SENT;
    for (size_t j = 0; j < N; j++)
        for (size_t p = 0; p < d; p++)
            C[j * ldc + p] = (float)(gsl_rng_uniform(r) - 0.5);
    memcpy(C0, C, N * ldc * sizeof(float));
    gmf_nn_kern_tn(N, d, M, G, ldg, A, lda, C, ldc, sq, add);
    double we = 0.0;
    for (size_t j = 0; j < N; j++)
        for (size_t p = 0; p < d; p++) {
            double exact = add ? C0[j * ldc + p] : 0.0, s = fabs(exact);
            for (size_t i = 0; i < M; i++) {
                const double a = sq ? (double)(A[i * lda + p] * A[i * lda + p]) : A[i * lda + p];
                exact += (double)G[i * ldg + j] * a, s += fabs((double)G[i * ldg + j] * a);
            }
            const double e = fabs((double)C[j * ldc + p] - exact) / fmax(s, 1e-30);
            if (e > we) we = e;
            CHECK(e <= (double)(M + 2) * 0x1p-24, "tn N=%zu d=%zu M=%zu sq=%d (%zu,%zu): err %.3g",
                  N, d, M, sq, j, p, e);
        }
    for (size_t j = 0; j < N; j++)
        for (size_t p = d; p < ldc; p++)
            CHECK(C[j * ldc + p] == SENT, "tn N=%zu d=%zu M=%zu: padding (%zu,%zu) written", N, d,
                  M, j, p);
    CHECK(C[N * ldc] == SENT, "tn N=%zu d=%zu M=%zu: past the end written", N, d, M);
    tu_worst_update(&worst, we / ((double)(M + 2) * 0x1p-24), "tn N=%zu d=%zu M=%zu sq=%d", N, d, M,
                    sq);
    /* row ranges: bitwise the whole product's rows */
    for (size_t j0 = 0; j0 < N; j0 += 4) {
        const size_t j1 = j0 + 7 < N ? j0 + 7 : N;
        memcpy(Cs, C0, N * ldc * sizeof(float));
        gmf_nn_kern_tn(j1 - j0, d, M, G + j0, ldg, A, lda, Cs + j0 * ldc, ldc, sq, add);
        int same = 1;
        for (size_t j = j0; j < j1; j++)
            if (memcmp(Cs + j * ldc, C + j * ldc, d * sizeof(float))) same = 0;
        for (size_t j = 0; j < N; j++)
            if ((j < j0 || j >= j1) && memcmp(Cs + j * ldc, C0 + j * ldc, d * sizeof(float)))
                same = 0;
        CHECK(same, "tn N=%zu d=%zu M=%zu sq=%d: rows [%zu,%zu) not bitwise the whole", N, d, M, sq,
              j0, j1);
    }
    free(Gb), free(Ab), free(Cb), free(C0), free(Cs);
}

/* The GM step's shapes against cblas_sgemm (what the non-AVX-512 builds run): the same
 * tolerance relative to the terms, both routes' difference */
static void against_blas(gsl_rng *r) {
    const size_t B = 64, d = 784, W = 200;
    float *X = tu_frand(r, B * d, 0), *P = tu_frand(r, W * d, 0),
          *F = tu_xmalloc(B * W * sizeof(float));
    float *Fb = tu_xmalloc(B * W * sizeof(float)), *D = tu_xmalloc(W * d * sizeof(float));
    float *Db = tu_xmalloc(W * d * sizeof(float));
    gmf_nn_kern_nt(B, W, d, X, d, P, d, F, W, 0);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)W, (int)d, 1, X, (int)d, P,
                (int)d, 0, Fb, (int)W);
    double e1 = 0.0;
    for (size_t e = 0; e < B * W; e++)
        e1 = fmax(e1, fabs((double)F[e] - Fb[e]) / (double)d); /* |terms| <= 1 each */
    memset(D, 0, W * d * sizeof(float)), memset(Db, 0, W * d * sizeof(float));
    gmf_nn_kern_tn(W, d, B, F, W, X, d, D, d, 0, 1);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)W, (int)d, (int)B, 1, F, (int)W, X,
                (int)d, 1, Db, (int)d);
    double e2 = 0.0, fmx = 0.0;
    for (size_t e = 0; e < B * W; e++)
        fmx = fmax(fmx, fabs((double)F[e]));
    for (size_t e = 0; e < W * d; e++)
        e2 = fmax(e2, fabs((double)D[e] - Db[e]) / ((double)B * fmx));
    CHECK(e1 <= 2.0 * (double)(d + 2) * 0x1p-24, "nt vs cblas_sgemm (64 x 200 x 784): %.3g", e1);
    CHECK(e2 <= 2.0 * (double)(B + 2) * 0x1p-24, "tn vs cblas_sgemm (200 x 784 x 64): %.3g", e2);
    printf("test_gm_kern: vs cblas_sgemm on the step's shapes: nt %.3g, tn %.3g (per |term|)\n", e1,
           e2);
    free(X), free(P), free(F), free(Fb), free(D), free(Db);
}

/* The double evaluation of one component's parameter pass (gmf_nn_kern_gm_update's rule) at
 * column j, as the largest error in units of tol times the sum of the absolute values of the
 * terms: P[0] = dsig2, P[1] = dmu, P[2 + l] = dW_l at column j (S: their sums of |terms|), dal
 * the component's da; the inputs U0 (L x d), mu0, sg0, s20 and the kernel's outputs U, mu, sg,
 * s2, muW ((L + 1) x d), all the component's blocks. */
static double update_col_err(size_t d, size_t L, size_t j, const double *P, const double *S,
                             const float *dal, const float *U0, const float *mu0, const float *sg0,
                             const float *s20, const float *U, const float *mu, const float *sg,
                             const float *s2, const float *muW, float rU, float rS, float rM,
                             double tol) {
    double we = 0.0, ds = P[0], as = S[0], dm = P[1], am = S[1];
    for (size_t l = 0; l < L; l++) {
        const double u = U0[l * d + j], a = dal[l];
        ds += P[2 + l] * u, as += S[2 + l] * fabs(u);
        dm += a * u, am += fabs(a * u);
        const double du = P[2 + l] * s20[j] + a * mu0[j];
        const double un = u - (double)rU * du;
        const double sc = fabs(u) + fabs((double)rU) * (S[2 + l] * s20[j] + fabs(a * mu0[j]));
        we = fmax(we, fabs(U[l * d + j] - un) / (tol * sc + 1e-300));
    }
    const double sn = rS != 0 ? sg0[j] - (double)rS * 2.0 * sg0[j] * ds : sg0[j];
    const double ssc = fabs(sg0[j]) + fabs((double)rS) * 2.0 * fabs(sg0[j]) * as;
    const double mn = rM != 0 ? mu0[j] - (double)rM * dm : mu0[j];
    const double msc = fabs(mu0[j]) + fabs((double)rM) * am;
    we = fmax(we, fabs(sg[j] - sn) / (tol * ssc + 1e-300));
    we = fmax(we, fabs(mu[j] - mn) / (tol * msc + 1e-300));
    const double s2x = (double)sg[j] * sg[j];
    we = fmax(we, fabs(s2[j] - s2x) / (tol * s2x + 1e-300));
    we = fmax(we, fabs(muW[j] - (double)mu[j]) / (tol * fabs(mn) + 1e-300));
    for (size_t l = 0; l < L; l++) {
        const double w = (double)U[l * d + j] * s2x;
        we = fmax(we, fabs(muW[(1 + l) * d + j] - w) / (tol * fabs(w) + 1e-300));
    }
    return we;
}

/* acc[l] = U_l . mu (the kernel's a partial sums) against double, in units of (d + 2) 2^-24
 * times the sum of |terms|. */
static double update_acc_err(size_t d, size_t L, const float *U, const float *mu,
                             const double *acc) {
    double we = 0.0;
    for (size_t l = 0; l < L; l++) {
        double a = 0.0, sa = 0.0;
        for (size_t j = 0; j < d; j++) {
            const double t = (double)U[l * d + j] * mu[j];
            a += t, sa += fabs(t);
        }
        we = fmax(we, fabs(acc[l] - a) / ((double)(d + 2) * 0x1p-24 * sa + 1e-300));
    }
    return we;
}

/* gmf_nn_kern_gm_update on one component (d columns, L rows) against (1) the row-by-row float
 * passes it replaces (nn_tmpl.h gm_row_update, sgd_update, gm_prep1 with dot16), bit for bit,
 * and (2) a plain double evaluation of the same formulas from the same float inputs, to
 * tol * (the sum of the absolute values of the terms), tol = (L + 8) 2^-24 (each output is a
 * sum of at most L + 2 rounded products; a wrong lane, mask or row fails by O(1)); a's sums to
 * (d + 2) 2^-24.  Entries past muW's end untouched. */
static void case_update(gsl_rng *r, size_t d, size_t L, float rU, float rS, float rM) {
    const size_t n = L * d;
    float *U = tu_frand(r, n, 0), *mu = tu_frand(r, d, 0), *sg = tu_frand(r, d, 0),
          *dW = tu_frand(r, n, 0);
    float *dmu = tu_frand(r, d, 0), *ds2 = tu_frand(r, d, 0), *dal = tu_frand(r, L + 1, 0);
    float *s2 = tu_xmalloc((d + 16) * 4), *muW = tu_xmalloc(((L + 1) * d + 16) * 4);
    for (size_t j = 0; j < d; j++)
        s2[j] = sg[j] * sg[j];
    for (size_t e = 0; e < (L + 1) * d + 16; e++)
        muW[e] = SENT;
    /* (1) the row-by-row float passes, on copies */
    float *Ur = tu_xmalloc((n + 1) * 4), *mur = tu_xmalloc(d * 4), *sgr = tu_xmalloc(d * 4);
    float *dmr = tu_xmalloc(d * 4), *dsr = tu_xmalloc(d * 4), *s2r = tu_xmalloc(d * 4);
    float *Wr = tu_xmalloc(((L + 1) * d + 1) * 4);
    double *accr = tu_xmalloc((L + 1) * 8), *acc = tu_xmalloc((L + 1) * 8);
    memcpy(Ur, U, n * 4), memcpy(mur, mu, d * 4), memcpy(sgr, sg, d * 4);
    memcpy(dmr, dmu, d * 4), memcpy(dsr, ds2, d * 4);
    for (size_t l = 0; l < L; l++)
        for (size_t j = 0; j < d; j++) {
            const float du = dW[l * d + j] * s2[j] + dal[l] * mur[j];
            dsr[j] += dW[l * d + j] * Ur[l * d + j];
            dmr[j] += dal[l] * Ur[l * d + j];
            Ur[l * d + j] = Ur[l * d + j] - rU * du;
        }
    for (size_t j = 0; j < d; j++) {
        dsr[j] = 2 * sgr[j] * dsr[j];
        if (rS != 0) sgr[j] = sgr[j] - rS * dsr[j];
        if (rM != 0) mur[j] = mur[j] - rM * dmr[j];
        s2r[j] = sgr[j] * sgr[j];
        Wr[j] = mur[j];
    }
    for (size_t l = 0; l < L; l++) {
        float part[16] = {0};
        size_t j = 0;
        for (; j + 16 <= d; j += 16)
            for (size_t q = 0; q < 16; q++)
                part[q] += Ur[l * d + j + q] * mur[j + q];
        double a = 0.0;
        for (size_t q = 0; q < 16; q++)
            a += (double)part[q];
        for (; j < d; j++)
            a += (double)Ur[l * d + j] * (double)mur[j];
        accr[l] = a;
        for (j = 0; j < d; j++)
            Wr[(1 + l) * d + j] = Ur[l * d + j] * s2r[j];
    }
    /* the kernel, on the originals (U0, mu0, sg0, s20 keep the inputs for (2)) */
    float *U0 = tu_xmalloc((n + 1) * 4), *mu0 = tu_xmalloc(d * 4), *sg0 = tu_xmalloc(d * 4);
    float *s20 = tu_xmalloc(d * 4);
    memcpy(U0, U, n * 4), memcpy(mu0, mu, d * 4), memcpy(sg0, sg, d * 4), memcpy(s20, s2, d * 4);
    gmf_nn_kern_gm_update(d, L, U, mu, sg, dW, dmu, ds2, s2, muW, dal, rU, rS, rM, acc);
    const int same = !memcmp(U, Ur, n * 4) && !memcmp(mu, mur, d * 4) && !memcmp(sg, sgr, d * 4) &&
                     !memcmp(s2, s2r, d * 4) && !memcmp(muW, Wr, (L + 1) * d * 4) &&
                     !memcmp(acc, accr, L * 8);
    CHECK(same, "gm_update d=%zu L=%zu: not bitwise the row-by-row passes", d, L);
    int pad = 1;
    for (size_t e = (L + 1) * d; e < (L + 1) * d + 16; e++)
        pad &= muW[e] == SENT;
    CHECK(pad, "gm_update d=%zu L=%zu: wrote past muW", d, L);
    /* (2) the double evaluation */
    const double tol = (double)(L + 8) * 0x1p-24;
    double we = 0.0, *P = tu_xmalloc((L + 2) * 8), *S = tu_xmalloc((L + 2) * 8);
    for (size_t j = 0; j < d; j++) {
        P[0] = ds2[j], S[0] = fabs((double)ds2[j]), P[1] = dmu[j], S[1] = fabs((double)dmu[j]);
        for (size_t l = 0; l < L; l++)
            P[2 + l] = dW[l * d + j], S[2 + l] = fabs((double)dW[l * d + j]);
        we = fmax(we, update_col_err(d, L, j, P, S, dal, U0, mu0, sg0, s20, U, mu, sg, s2, muW, rU,
                                     rS, rM, tol));
    }
    we = fmax(we, update_acc_err(d, L, U, mu, acc));
    free(P), free(S);
    CHECK(we <= 1.0, "gm_update d=%zu L=%zu vs double: %.3g of the bound", d, L, we);
    tu_worst_update(&worst, we, "gm_update d=%zu L=%zu", d, L);
    free(U), free(mu), free(sg), free(dW), free(dmu), free(ds2), free(dal), free(s2), free(muW);
    free(Ur), free(mur), free(sgr), free(dmr), free(dsr), free(s2r), free(Wr), free(accr);
    free(acc), free(U0), free(mu0), free(sg0), free(s20);
}

/* gmf_nn_kern_tn_update (the backward products fused with the parameter pass) on M batch rows,
 * d columns, L, K components, the range [k0, k1), against (1) the unfused route -- gmf_nn_kern_tn
 * for [dmu; dW] and dsig2, then gmf_nn_kern_gm_update per component -- bit for bit (every
 * parameter and cache array, all K components: those outside the range untouched), and (2) the
 * products and the update evaluated in double from the same float inputs, to
 * tol = (M + L + 12) 2^-24 times the sum of the absolute values of the terms each output goes
 * through (a product entry is a sum of M rounded terms, then at most L + 4 rounded operations).
 * Where the kernel does not apply (L > GMF_NN_KERN_TU_LMAX, M > GMF_NN_KERN_TU_MMAX) it must
 * return 0 and write nothing.  Leading dimensions larger than the sizes. */
static void case_tu(gsl_rng *r, size_t M, size_t d, size_t L, size_t K, size_t k0, size_t k1,
                    float rU, float rS, float rM) {
    const size_t W = K * (L + 1), nk = k1 - k0, ldx = d + 3, ldf = W + 1, lds = K + 2;
    const size_t nU = K * L * d, nW = W * d, nd = K * d;
    float *X = tu_frand(r, M * ldx, 0), *dF = tu_frand(r, M * ldf, 0),
          *dS2 = tu_frand(r, M * lds, 0);
    float *U = tu_frand(r, nU, 0), *mu = tu_frand(r, nd, 0), *sg = tu_frand(r, nd, 0);
    float *s2 = tu_xmalloc((nd + 16) * 4), *muW = tu_xmalloc((nW + 16) * 4);
    float *dal = tu_frand(r, nk * L + 1, 0);
    for (size_t e = 0; e < nd; e++)
        s2[e] = sg[e] * sg[e];
    for (size_t e = 0; e < nW + 16; e++)
        muW[e] = SENT;
    /* copies: the reference route (R) and the inputs (0) */
    float *UR = tu_xmalloc((nU + 1) * 4), *muR = tu_xmalloc(nd * 4), *sgR = tu_xmalloc(nd * 4);
    float *s2R = tu_xmalloc(nd * 4), *muWR = tu_xmalloc((nW + 16) * 4);
    float *U0 = tu_xmalloc((nU + 1) * 4), *mu0 = tu_xmalloc(nd * 4), *sg0 = tu_xmalloc(nd * 4);
    float *s20 = tu_xmalloc(nd * 4);
    memcpy(UR, U, nU * 4), memcpy(muR, mu, nd * 4), memcpy(sgR, sg, nd * 4);
    memcpy(s2R, s2, nd * 4), memcpy(muWR, muW, (nW + 16) * 4);
    memcpy(U0, U, nU * 4), memcpy(mu0, mu, nd * 4), memcpy(sg0, sg, nd * 4);
    memcpy(s20, s2, nd * 4);
    double *acc = tu_xmalloc((nk * L + 1) * 8), *accR = tu_xmalloc((nk * L + 1) * 8);
    for (size_t e = 0; e < nk * L + 1; e++)
        acc[e] = -1.0, accR[e] = -1.0;
    const int ok = gmf_nn_kern_tn_update(M, d, L, k0, k1, X, ldx, dF, ldf, dS2, lds, U, mu, sg, s2,
                                         muW, dal, rU, rS, rM, acc);
    if (L > GMF_NN_KERN_TU_LMAX || M > GMF_NN_KERN_TU_MMAX) {
        CHECK(!ok, "tn_update M=%zu L=%zu: should decline", M, L);
        CHECK(!memcmp(U, U0, nU * 4) && !memcmp(mu, mu0, nd * 4) && !memcmp(sg, sg0, nd * 4) &&
                  !memcmp(s2, s20, nd * 4) && !memcmp(muW, muWR, (nW + 16) * 4),
              "tn_update M=%zu L=%zu: declined but wrote", M, L);
        goto done;
    }
    CHECK(ok, "tn_update M=%zu d=%zu L=%zu: declined", M, d, L);
    /* (1) the unfused route */
    {
        float *dmuW = tu_xmalloc((nk * (L + 1) * d + 1) * 4), *dsig2 = tu_xmalloc((nk * d + 1) * 4);
        gmf_nn_kern_tn(nk * (L + 1), d, M, dF + k0 * (L + 1), ldf, X, ldx, dmuW, d, 0, 0);
        gmf_nn_kern_tn(nk, d, M, dS2 + k0, lds, X, ldx, dsig2, d, 1, 0);
        for (size_t k = k0; k < k1; k++) {
            const float *g = dmuW + (k - k0) * (L + 1) * d;
            gmf_nn_kern_gm_update(d, L, UR + k * L * d, muR + k * d, sgR + k * d, g + d, g,
                                  dsig2 + (k - k0) * d, s2R + k * d, muWR + k * (L + 1) * d,
                                  dal + (k - k0) * L, rU, rS, rM, accR + (k - k0) * L);
        }
        free(dmuW), free(dsig2);
    }
    const int same = !memcmp(U, UR, nU * 4) && !memcmp(mu, muR, nd * 4) &&
                     !memcmp(sg, sgR, nd * 4) && !memcmp(s2, s2R, nd * 4) &&
                     !memcmp(muW, muWR, (nW + 16) * 4) && !memcmp(acc, accR, nk * L * 8);
    CHECK(same, "tn_update M=%zu d=%zu L=%zu K=%zu [%zu,%zu): not bitwise tn + gm_update", M, d, L,
          K, k0, k1);
    /* (2) double */
    const double tol = (double)(M + L + 12) * 0x1p-24;
    double we = 0.0;
    double *P = tu_xmalloc((L + 2) * 8), *S = tu_xmalloc((L + 2) * 8);
    for (size_t k = k0; k < k1; k++) {
        const float *dk = dal + (k - k0) * L;
        for (size_t j = 0; j < d; j++) {
            /* P[0] = dsig2, P[1] = dmu, P[2 + l] = dW_l; S: sums of |terms| */
            for (size_t q = 0; q < L + 2; q++)
                P[q] = 0.0, S[q] = 0.0;
            for (size_t i = 0; i < M; i++) {
                const double x = X[i * ldx + j], gs = dS2[i * lds + k];
                P[0] += gs * x * x, S[0] += fabs(gs * x * x);
                for (size_t q = 0; q <= L; q++) {
                    const double g = dF[i * ldf + k * (L + 1) + q];
                    P[1 + q] += g * x, S[1 + q] += fabs(g * x);
                }
            }
            we =
                fmax(we, update_col_err(d, L, j, P, S, dk, U0 + k * L * d, mu0 + k * d, sg0 + k * d,
                                        s20 + k * d, U + k * L * d, mu + k * d, sg + k * d,
                                        s2 + k * d, muW + k * (L + 1) * d, rU, rS, rM, tol));
        }
        we = fmax(we, update_acc_err(d, L, U + k * L * d, mu + k * d, acc + (k - k0) * L));
    }
    CHECK(we <= 1.0, "tn_update M=%zu d=%zu L=%zu K=%zu vs double: %.3g of the bound", M, d, L, K,
          we);
    tu_worst_update(&worst, we, "tn_update M=%zu d=%zu L=%zu", M, d, L);
    tu_worst_update(&worst_tu, we, "tn_update M=%zu d=%zu L=%zu", M, d, L);
    free(P), free(S);
done:
    free(X), free(dF), free(dS2), free(U), free(mu), free(sg), free(s2), free(muW), free(dal);
    free(UR), free(muR), free(sgR), free(s2R), free(muWR), free(U0), free(mu0), free(sg0);
    free(s20), free(acc), free(accR);
}

int main(void) {
    tu_worst_init(&worst);
    tu_worst_init(&worst_tu);
    gsl_rng *r = tu_rng(14);
    printf("test_gm_kern: seed %lu\n", tu_seed());
    const size_t Ms[] = {1, 3, 4, 5, 6, 7, 13, 64}, Ns[] = {1, 3, 4, 5, 6, 7, 13, 200};
    const size_t ds[] = {1, 15, 16, 17, 63, 64, 65, 100, 784};
    size_t ncase = 0;
    for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
        for (size_t b = 0; b < sizeof Ns / sizeof *Ns; b++)
            for (size_t c = 0; c < sizeof ds / sizeof *ds; c++) {
                if (Ms[a] * Ns[b] * ds[c] > 64 * 13 * 784 && ds[c] != 784) continue;
                const int sq = (int)((a + b + c) & 1);
                const size_t off = (a + c) % 3; /* 0: 64-byte aligned rows when d allows */
                case_nt(r, Ms[a], Ns[b], ds[c], sq, off);
                case_tn(r, Ns[b], ds[c], Ms[a], !sq, off, (int)((a + c) & 1));
                ncase += 2;
            }
    against_blas(r);
    const size_t Ls[] = {0, 1, 3, 9};
    for (size_t c = 0; c < sizeof ds / sizeof *ds; c++)
        for (size_t a = 0; a < 4; a++) {
            case_update(r, ds[c], Ls[a], 0.05f, (c & 1) ? 0.02f : 0.0f, (a & 1) ? 0.0f : 0.03f);
            ncase++;
        }
    /* tn_update: d across the 16- and 32-column edges, every L up to the tiles' limit and past
     * it, M across 1 .. 70 (and the M limit), component ranges inside K, K past a group of 32 */
    const size_t tds[] = {1, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 100, 784};
    const size_t tMs[] = {1, 2, 7, 16, 64, 70};
    size_t it = 0;
    for (size_t c = 0; c < sizeof tds / sizeof *tds; c++)
        for (size_t L = 0; L <= 12; L++) {
            const size_t M = tMs[(c + L) % 6], K = (c + L) % 4 == 3 ? 40 : 3;
            const size_t k0 = K == 40 ? 5 : (it & 1), k1 = K == 40 ? 38 : K - ((it >> 1) & 1);
            if (tds[c] == 784 && L % 3) continue; /* the large d: L = 0, 3, 6, 9, 12 */
            case_tu(r, M, tds[c], L, K, k0, k1, 0.05f, (it % 3) ? 0.02f : 0.0f,
                    (it % 4 == 1) ? 0.0f : 0.03f);
            it++, ncase++;
        }
    case_tu(r, 64, 784, 9, 20, 0, 20, 0.05f, 0.02f, 0.03f);  /* gmflow train's step */
    case_tu(r, 64, 784, 9, 20, 10, 20, 0.05f, 0.02f, 0.03f); /* its second pool thread */
    case_tu(r, GMF_NN_KERN_TU_MMAX, 40, 2, 2, 0, 2, 0.05f, 0.02f, 0.03f);
    case_tu(r, GMF_NN_KERN_TU_MMAX + 1, 40, 2, 2, 0, 2, 0.05f, 0.02f, 0.03f); /* declined */
    ncase += 4;
    gsl_rng_free(r);
    printf("test_gm_kern: tn_update's worst error vs double %.3g of the bound (%s)\n",
           worst_tu.value, worst_tu.what);
    printf("test_gm_kern: %zu cases; worst error %.3g of the bound (%s)\n", ncase, worst.value,
           worst.what);
    return tu_finish("test_gm_kern");
}
#endif
