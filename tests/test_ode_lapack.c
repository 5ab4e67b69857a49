/* test_ode_lapack.c -- CVODE's dense linear solver through LAPACK (src/exact/ode_lapack.h), as
 * CVODE calls it: setup(A) factors the SUNDenseMatrix in place, solve(A, x, b) solves with the
 * factors.
 *
 *  1. N = 1, 7, 60, 200, random matrices with a large diagonal (well conditioned): after setup,
 *     solve gives x with |A x - b| <= 1e-12 |A| |x| (A x formed from a copy of A taken before the
 *     factorization, by a plain triple loop: independent of LAPACK); also with x == b (in place).
 *  2. A pivoting case: [[0, 1], [1, 0]] (a zero leading pivot) solves exactly.
 *  3. A singular matrix (two equal columns) makes setup return SUNLS_LUFACT_FAIL (recoverable,
 *     > 0), as SUNLinSol_Dense does, so CVODE retries with a smaller step.
 *  4. The solver reports itself as direct (CVODE scales its solution for a changed gamma only
 *     for direct solvers).
 */
#include <math.h>
#include <nvector/nvector_serial.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sundials/sundials_context.h>
#include <sunmatrix/sunmatrix_dense.h>

#include "../src/exact/ode_lapack.h"
#include "testutil.h"

/* max |A x - b| / (max|A| max|x|), A column-major (SUNDIALS' layout) */
static double residual(size_t n, const double *A, const double *x, const double *b) {
    double r = 0.0, amax = 0.0, xmax = 0.0;
    for (size_t i = 0; i < n; i++) {
        double s = 0.0;
        for (size_t j = 0; j < n; j++) {
            s += A[j * n + i] * x[j];
            amax = fmax(amax, fabs(A[j * n + i]));
        }
        r = fmax(r, fabs(s - b[i]));
        xmax = fmax(xmax, fabs(x[i]));
    }
    return r / (amax * xmax);
}

/* Solve A x = b for A given column-major in a (n x n); returns the setup flag; x out. */
static int lp_solve(SUNContext ctx, size_t n, const double *a, const double *b, double *x,
                    int inplace) {
    N_Vector vx = N_VNew_Serial((sunindextype)n, ctx), vb = N_VNew_Serial((sunindextype)n, ctx);
    SUNMatrix A = SUNDenseMatrix((sunindextype)n, (sunindextype)n, ctx);
    SUNLinearSolver S = gmf_ode_lapack_dense(vx, ctx);
    if (!vx || !vb || !A || !S) {
        fprintf(stderr, "test_ode_lapack: out of memory\n");
        exit(1);
    }
    memcpy(SUNDenseMatrix_Data(A), a, n * n * sizeof(double));
    memcpy(N_VGetArrayPointer(vb), b, n * sizeof(double));
    CHECK(SUNLinSolGetType(S) == SUNLINEARSOLVER_DIRECT, "not a direct solver");
    CHECK(SUNLinSolInitialize(S) == SUNLS_SUCCESS, "initialize");
    int flag = SUNLinSolSetup(S, A);
    if (flag == SUNLS_SUCCESS) {
        N_Vector out = inplace ? vb : vx;
        CHECK(SUNLinSolSolve(S, A, out, vb, 0.0) == SUNLS_SUCCESS, "solve n = %zu", n);
        memcpy(x, N_VGetArrayPointer(out), n * sizeof(double));
    }
    SUNLinSolFree(S);
    SUNMatDestroy(A);
    N_VDestroy(vx);
    N_VDestroy(vb);
    return flag;
}

int main(void) {
    SUNContext ctx;
    if (SUNContext_Create(NULL, &ctx)) return 1;
    gsl_rng *r = tu_rng(3);
    printf("test_ode_lapack: seed %lu\n", tu_seed());
    const size_t sizes[4] = {1, 7, 60, 200};
    for (int k = 0; k < 4; k++) {
        const size_t n = sizes[k];
        double *a = tu_xmalloc(n * n * sizeof *a), *b = tu_xmalloc(n * sizeof *b);
        double *x = tu_xmalloc(n * sizeof *x);
        tu_randn(r, n * n, 1.0, a);
        for (size_t i = 0; i < n; i++)
            a[i * n + i] += 2.0 * sqrt((double)n);
        tu_randn(r, n, 1.0, b);
        for (int inplace = 0; inplace < 2; inplace++) {
            memset(x, 0, n * sizeof *x);
            CHECK(lp_solve(ctx, n, a, b, x, inplace) == SUNLS_SUCCESS, "setup n = %zu", n);
            double res = residual(n, a, x, b);
            CHECK(res <= 1e-12, "n = %zu%s: residual %.3g", n, inplace ? " (in place)" : "", res);
            printf("  n = %3zu%s: relative residual %.2e\n", n, inplace ? " in place" : "", res);
        }
        free(a), free(b), free(x);
    }
    gsl_rng_free(r);
    /* pivoting: column-major [[0, 1], [1, 0]] */
    const double p[4] = {0.0, 1.0, 1.0, 0.0}, pb[2] = {3.0, 5.0};
    double px[2] = {0, 0};
    CHECK(lp_solve(ctx, 2, p, pb, px, 0) == SUNLS_SUCCESS && px[0] == 5.0 && px[1] == 3.0,
          "zero leading pivot: x = (%g, %g), want (5, 3)", px[0], px[1]);
    /* singular: two equal columns */
    const double s[9] = {1, 2, 3, 1, 2, 3, 0, 1, 4}, sb[3] = {1, 1, 1};
    double sx[3];
    int flag = lp_solve(ctx, 3, s, sb, sx, 0);
    CHECK(flag == SUNLS_LUFACT_FAIL, "singular matrix: setup flag %d, want SUNLS_LUFACT_FAIL",
          flag);
    SUNContext_Free(&ctx);
    return tu_finish("test_ode_lapack");
}
