/* ode_lapack.h -- internal to src/exact (prefix gmf_ode_): a SUNDIALS linear solver for CVODE's
 * Newton iteration that factors the dense matrix with LAPACK (LAPACKE_dgetrf / dgetrs, i.e.
 * OpenBLAS's blocked LU) instead of SUNDIALS' own unblocked dense LU (SUNLinSol_Dense).  Debian's
 * SUNDIALS 6.4 is built without its LAPACK linear solver, so this is the same thing, written out.
 * A direct solver on a SUNDenseMatrix (column-major, factored in place), as SUNLinSol_Dense. */
#ifndef GMFLOW_ODE_LAPACK_H
#define GMFLOW_ODE_LAPACK_H

#include <sundials/sundials_linearsolver.h>
#include <sundials/sundials_nvector.h>

/* A solver for N x N dense matrices (N = the length of y), or NULL (out of memory). */
SUNLinearSolver gmf_ode_lapack_dense(N_Vector y, SUNContext ctx);

#endif
