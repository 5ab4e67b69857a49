/* nn_internal.h -- private to the nn module: a small thread pool with a spin-then-block barrier.
 *
 * gmf_nn_pool_run(p, job, ctx) runs job(ctx, tid, n) on all n threads (the caller is tid 0) and
 * returns when every thread has finished.  Inside a job, gmf_nn_pool_barrier(p) makes all n
 * threads meet.  The barrier spins briefly (a step of the GM layer is ~0.1-1 ms, so a waiting
 * thread usually waits microseconds) and then blocks on a condition variable, so idle workers
 * cost no CPU between epochs.
 */
#ifndef GMFLOW_NN_INTERNAL_H
#define GMFLOW_NN_INTERNAL_H

#include <stddef.h>

struct gmf_nn_pool;
typedef void (*gmf_nn_job)(void *ctx, int tid, int nthreads);

int gmf_nn_pool_new(struct gmf_nn_pool **out, int nthreads);
void gmf_nn_pool_free(struct gmf_nn_pool *p);
int gmf_nn_pool_size(const struct gmf_nn_pool *p);
void gmf_nn_pool_run(struct gmf_nn_pool *p, gmf_nn_job job, void *ctx);
void gmf_nn_pool_barrier(struct gmf_nn_pool *p);

/* [lo, hi) of n items for part t of nt (contiguous, sizes differ by at most one). */
static inline void gmf_nn_split(size_t n, int t, int nt, size_t *lo, size_t *hi) {
    *lo = n * (size_t)t / (size_t)nt;
    *hi = n * (size_t)(t + 1) / (size_t)nt;
}

/* OpenBLAS's thread count (declared here rather than relying on which cblas.h is found). */
void openblas_set_num_threads(int num_threads);

/* Set OpenBLAS's (process-global) thread count to n unless the last call here already did:
 * every network entry point calls it, so a workspace of one model kind is not left running with
 * the thread count another workspace set (1 inside the GM pool, --threads elsewhere). */
void gmf_nn_blas_threads(int n);

#endif
