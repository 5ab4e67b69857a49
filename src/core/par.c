/* par.c -- data-parallel communication behind gmflow/par.h (MPI or serial stubs). */
#include "gmflow/par.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"

#ifdef GMFLOW_HAVE_MPI
#include <mpi.h>

static int we_initialized;

/* MPI in use: initialized (by us or by the caller) and not finalized. */
static int active(void) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    return init && !fin;
}

/* Started by an MPI launcher (mpirun/mpiexec/srun)?  Without one the run is serial and MPI is
 * not initialized at all: no singleton start-up (about 0.5 s with Open MPI) and no MPI
 * allocations left for LeakSanitizer. */
static int launched(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

int gmf_par_init(int *argc, char ***argv) {
    if (active() || !launched()) return GMF_OK;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) return gmf_error(GMF_EIO, "MPI_Init failed");
    we_initialized = 1;
    return GMF_OK;
}

void gmf_par_finalize(void) {
    if (we_initialized && active()) MPI_Finalize();
    we_initialized = 0;
}

int gmf_par_compiled(void) {
    return 1;
}

int gmf_par_rank(void) {
    int r = 0;
    if (active()) MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

int gmf_par_size(void) {
    int p = 1;
    if (active()) MPI_Comm_size(MPI_COMM_WORLD, &p);
    return p;
}

/* Largest gather buffer on rank 0, in doubles (32 MiB): the sum goes in chunks of
 * GATHER_DOUBLES / P numbers, so rank 0's extra memory does not grow with P. */
#define GATHER_DOUBLES ((size_t)4 << 20)

int gmf_par_sum(double *buf, size_t m) {
    const int P = gmf_par_size(), rank = gmf_par_rank();
    if (P == 1 || m == 0) return GMF_OK;
    size_t chunk = GATHER_DOUBLES / (size_t)P;
    if (chunk < 1) chunk = 1;
    if (chunk > m) chunk = m;
    if (chunk > INT32_MAX) chunk = INT32_MAX;
    double *all = NULL;
    if (rank == 0) {
        all = gmf_calloc((size_t)P * chunk, sizeof(double), "MPI reduction buffer");
        if (!all) gmf_par_abort(1); /* the others would wait forever */
    }
    for (size_t j0 = 0; j0 < m; j0 += chunk) {
        const size_t c = j0 + chunk <= m ? chunk : m - j0;
        if (MPI_Gather(buf + j0, (int)c, MPI_DOUBLE, all, (int)c, MPI_DOUBLE, 0, MPI_COMM_WORLD) !=
            MPI_SUCCESS) {
            free(all);
            return gmf_error(GMF_EIO, "MPI_Gather failed");
        }
        if (rank == 0) /* rank order: buf = ((x_0 + x_1) + x_2) + ... */
            for (size_t j = 0; j < c; j++) {
                double s = all[j];
                for (int p = 1; p < P; p++)
                    s += all[(size_t)p * c + j];
                buf[j0 + j] = s;
            }
    }
    free(all);
    return gmf_par_bcast(buf, m * sizeof(double), 0);
}

int gmf_par_bcast(void *buf, size_t bytes, int root) {
    if (gmf_par_size() == 1) return GMF_OK;
    char *p = buf;
    while (bytes) { /* counts are ints: go in pieces of at most 1 GiB */
        const size_t c = bytes < ((size_t)1 << 30) ? bytes : ((size_t)1 << 30);
        if (MPI_Bcast(p, (int)c, MPI_BYTE, root, MPI_COMM_WORLD) != MPI_SUCCESS)
            return gmf_error(GMF_EIO, "MPI_Bcast failed");
        p += c, bytes -= c;
    }
    return GMF_OK;
}

int gmf_par_any(int flag) {
    if (gmf_par_size() == 1) return flag != 0;
    int in = flag != 0, out = 0;
    if (MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS)
        gmf_par_abort(1);
    return out;
}

void gmf_par_abort(int code) {
    if (active()) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

#else /* serial stubs */

int gmf_par_init(int *argc, char ***argv) {
    (void)argc, (void)argv;
    return GMF_OK;
}
void gmf_par_finalize(void) {}
int gmf_par_compiled(void) {
    return 0;
}
int gmf_par_rank(void) {
    return 0;
}
int gmf_par_size(void) {
    return 1;
}
int gmf_par_sum(double *buf, size_t m) {
    (void)buf, (void)m;
    return GMF_OK;
}
int gmf_par_bcast(void *buf, size_t bytes, int root) {
    (void)buf, (void)bytes, (void)root;
    return GMF_OK;
}
int gmf_par_any(int flag) {
    return flag != 0;
}
void gmf_par_abort(int code) {
    exit(code);
}
#endif

void gmf_par_block(size_t n, int rank, int size, size_t *i0, size_t *cnt) {
    const size_t P = size > 0 ? (size_t)size : 1, r = (size_t)rank, q = n / P, e = n % P;
    *cnt = q + (r < e ? 1 : 0);
    *i0 = r * q + (r < e ? r : e);
}
