/* ode_lapack.c -- CVODE's dense linear solver through LAPACK (ode_lapack.h).
 *
 * setup(A): LU with partial pivoting of A in place (LAPACKE_dgetrf_work: no NaN scan of the
 * input, which cost 13 % of a d6 solve; column-major, as SUNDIALS'
 * dense matrix stores it); a zero pivot is a recoverable failure (SUNLS_LUFACT_FAIL + its column,
 * as SUNLinSol_Dense reports it), so CVODE retries with a smaller step.  solve(A, x, b): x = b,
 * then LAPACKE_dgetrs_work.  Measured on the d6 stationary toy (docs/PERFORMANCE.md, section 6).
 */
#include "ode_lapack.h"

#include <lapacke.h>
#include <stdlib.h>
#include <string.h>
#include <sundials/sundials_math.h>
#include <sunmatrix/sunmatrix_dense.h>

typedef struct {
    sunindextype N;
    lapack_int *piv;
    sunindextype last_flag;
} lapack_content;

static SUNLinearSolver_Type lp_type(SUNLinearSolver S) {
    (void)S;
    return SUNLINEARSOLVER_DIRECT;
}

static SUNLinearSolver_ID lp_id(SUNLinearSolver S) {
    (void)S;
    return SUNLINEARSOLVER_CUSTOM;
}

static int lp_init(SUNLinearSolver S) {
    ((lapack_content *)S->content)->last_flag = SUNLS_SUCCESS;
    return SUNLS_SUCCESS;
}

static int lp_setup(SUNLinearSolver S, SUNMatrix A) {
    lapack_content *c = S->content;
    if (SUNMatGetID(A) != SUNMATRIX_DENSE || SUNDenseMatrix_Rows(A) != c->N ||
        SUNDenseMatrix_Columns(A) != c->N)
        return (int)(c->last_flag = SUNLS_ILL_INPUT);
    const lapack_int n = (lapack_int)c->N;
    lapack_int info =
        LAPACKE_dgetrf_work(LAPACK_COL_MAJOR, n, n, SUNDenseMatrix_Data(A), n, c->piv);
    if (info < 0) return (int)(c->last_flag = SUNLS_PACKAGE_FAIL_UNREC);
    c->last_flag = info; /* > 0: U(info, info) = 0, recoverable */
    return info > 0 ? SUNLS_LUFACT_FAIL : SUNLS_SUCCESS;
}

static int lp_solve(SUNLinearSolver S, SUNMatrix A, N_Vector x, N_Vector b, sunrealtype tol) {
    (void)tol;
    lapack_content *c = S->content;
    double *xd = N_VGetArrayPointer(x);
    if (!xd) return (int)(c->last_flag = SUNLS_MEM_FAIL);
    if (x != b) N_VScale(1.0, b, x);
    const lapack_int n = (lapack_int)c->N;
    lapack_int info =
        LAPACKE_dgetrs_work(LAPACK_COL_MAJOR, 'N', n, 1, SUNDenseMatrix_Data(A), n, c->piv, xd, n);
    c->last_flag = info ? SUNLS_PACKAGE_FAIL_UNREC : SUNLS_SUCCESS;
    return (int)c->last_flag;
}

static sunindextype lp_lastflag(SUNLinearSolver S) {
    return ((lapack_content *)S->content)->last_flag;
}

static int lp_space(SUNLinearSolver S, long *lrw, long *liw) {
    *lrw = 0;
    *liw = 2 + (long)((lapack_content *)S->content)->N;
    return SUNLS_SUCCESS;
}

static int lp_free(SUNLinearSolver S) {
    if (!S) return SUNLS_SUCCESS;
    if (S->content) {
        free(((lapack_content *)S->content)->piv);
        free(S->content);
        S->content = NULL;
    }
    SUNLinSolFreeEmpty(S);
    return SUNLS_SUCCESS;
}

SUNLinearSolver gmf_ode_lapack_dense(N_Vector y, SUNContext ctx) {
    const sunindextype N = N_VGetLength(y);
    SUNLinearSolver S = N > 0 ? SUNLinSolNewEmpty(ctx) : NULL;
    if (!S) return NULL;
    S->ops->gettype = lp_type;
    S->ops->getid = lp_id;
    S->ops->initialize = lp_init;
    S->ops->setup = lp_setup;
    S->ops->solve = lp_solve;
    S->ops->lastflag = lp_lastflag;
    S->ops->space = lp_space;
    S->ops->free = lp_free;
    lapack_content *c = calloc(1, sizeof *c);
    if (c) c->piv = calloc((size_t)N, sizeof *c->piv);
    if (!c || !c->piv) {
        free(c);
        SUNLinSolFreeEmpty(S);
        return NULL;
    }
    c->N = N;
    S->content = c;
    return S;
}
