/* gmflow/par.h -- data-parallel communication (prefix gmf_par).  The only place that talks MPI.
 *
 * Built with MPI (CMake option GMFLOW_MPI, default ON when FindMPI finds it) these wrap
 * MPI_COMM_WORLD; built without it they are serial stubs (rank 0 of 1).  Either way the same
 * binary runs serially without mpirun (Open MPI's singleton init).  Nothing else includes mpi.h.
 *
 * Initialization: gmf_par_init() is called once by the CLI's main (src/cli/main.c) before any
 * subcommand, and gmf_par_finalize() at its end.  It initializes MPI only when the process was
 * started by an MPI launcher (OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK set); otherwise the run
 * is serial without touching MPI.  A library user who never calls gmf_par_init
 * gets rank 0 of 1 from every function here (the serial path), unless MPI was initialized by
 * the caller, in which case MPI_COMM_WORLD is used.
 *
 * Determinism rule (docs/SCALE.md): gmf_par_sum gathers each rank's numbers to rank 0, which adds
 * them in rank order 0, 1, ..., P-1 with plain left-to-right double additions, then broadcasts the
 * sums.  Every rank therefore holds bitwise the same result, independent of the MPI library's
 * reduction algorithm, and a run with the same P reproduces bitwise.  MPI_Allreduce is never used
 * for floating point: its association order is unspecified.
 */
#ifndef GMFLOW_PAR_H
#define GMFLOW_PAR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Initialize MPI if built with it and not yet initialized.  0 or a GMF_E* code. */
int gmf_par_init(int *argc, char ***argv);
/* Finalize MPI if gmf_par_init initialized it. */
void gmf_par_finalize(void);
/* 1 when built with MPI, 0 otherwise. */
int gmf_par_compiled(void);
/* This process's rank and the number of ranks (0 and 1 when serial). */
int gmf_par_rank(void);
int gmf_par_size(void);
/* The contiguous block of rows [*i0, *i0 + *cnt) of n rows that `rank` of `size` owns: the
 * first n % size ranks get one row more. */
void gmf_par_block(size_t n, int rank, int size, size_t *i0, size_t *cnt);
/* Sum buf[0..m) over all ranks in place, deterministically (the rule above); collective. */
int gmf_par_sum(double *buf, size_t m);
/* Broadcast `bytes` bytes from rank `root`; collective. */
int gmf_par_bcast(void *buf, size_t bytes, int root);
/* 1 on every rank if `flag` is nonzero on any rank, else 0; collective (integer, exact). */
int gmf_par_any(int flag);
/* Stop every rank with exit status `code` (MPI_Abort; exit() when serial). */
void gmf_par_abort(int code);

#ifdef __cplusplus
}
#endif
#endif
