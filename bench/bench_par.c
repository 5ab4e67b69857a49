/* bench_par.c -- data-parallel RHS timing and the reduction microbenchmark (docs/SCALE.md).
 *
 *   mpirun -np P build/bench/bench_par N d K [reps]
 *
 * N samples in total (weak scaling: pass N = P * n_per_rank), sharded as gmflow flow does
 * (gmf_par_block); each rank makes its own rows from the global row index, so the data is the
 * same for every P.  Prints on rank 0: the wall time of one oracle prepare (the whole RHS data
 * pass including its reduction), the time of gmf_par_sum alone on the same number of doubles,
 * and gmf_par_sum's time for 1 .. 2^21 doubles (latency and bandwidth of the reduction).
 * Medians over reps.  Uses only gmflow/par.h: no mpi.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gmflow/common.h"
#include "gmflow/par.h"
#include "gmflow/sqloss.h"
#include "gmflow/toy.h"
#include "harness.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmpd);
    return v[n / 2];
}
/* a reproducible pseudo-random number from (row, column) */
static double hashu(size_t i, size_t j) {
    unsigned long long z =
        (unsigned long long)i * 0x9E3779B97F4A7C15ull + j * 0xBF58476D1CE4E5B9ull;
    z ^= z >> 31, z *= 0x94D049BB133111EBull, z ^= z >> 29;
    return (double)(z >> 11) / 9007199254740992.0 - 0.5;
}

static double time_sum(double *buf, size_t m, int reps) {
    double t[64];
    for (int r = 0; r < reps; r++) {
        gmf_par_any(0); /* a barrier */
        double t0 = now();
        if (gmf_par_sum(buf, m)) return -1;
        t[r] = now() - t0;
    }
    return median(t, reps);
}

int main(int argc, char **argv) {
    if (gmf_par_init(&argc, &argv)) return 1;
    const int rank = gmf_par_rank(), P = gmf_par_size();
    const char *use = "N d K [REPS (5, at most 64)]";
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        if (!rank) printf("usage: bench_par %s\n", use);
        gmf_par_finalize();
        return 0;
    }
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-') {
            if (!rank)
                fprintf(stderr, "bench_par: unknown option %s\nusage: bench_par %s\n", argv[i],
                        use);
            gmf_par_finalize();
            return 2;
        }
    if (argc < 4 || argc > 5) {
        if (!rank) fprintf(stderr, "bench_par: need 3 or 4 arguments\nusage: bench_par %s\n", use);
        gmf_par_finalize();
        return 2;
    }
    /* every rank parses the same arguments, so all of them stop together on a bad one */
    vh_prog_name = "bench_par", vh_prog_usage = use;
    const size_t N = (size_t)vh_ulong_value("N", argv[1], 1000000000),
                 d = (size_t)vh_ulong_value("d", argv[2], 100000),
                 K = (size_t)vh_ulong_value("K", argv[3], 10000), D = d + 1;
    const int reps = argc > 4 ? (int)vh_ulong_value("REPS", argv[4], 64) : 5;
    if (!N || !d || !K || reps < 1) vh_usage_error("N, d, K and REPS must be at least 1");
    size_t i0, nl;
    gmf_par_block(N, rank, P, &i0, &nl);
    double *X = malloc((nl ? nl : 1) * d * sizeof(double)), *y = malloc((nl ? nl : 1) * 8);
    double *mu = malloc(K * D * 8), *C = malloc(K * D * D * 8), *S = malloc(K * D * D * 8);
    const size_t m = d * K * (D + 2) + K * D + K + 1;
    double *buf = calloc(m > ((size_t)1 << 21) ? m : ((size_t)1 << 21), sizeof(double));
    if (!X || !y || !mu || !C || !S || !buf) gmf_par_abort(1);
    for (size_t i = 0; i < nl; i++) {
        for (size_t j = 0; j < d; j++)
            X[i * d + j] = 2.0 * hashu(i0 + i, j);
        y[i] = hashu(i0 + i, d);
    }
    gmf_sqloss *sq = NULL;
    if (gmf_toy_init_mixture(K, D, 0.5, 1, mu, C, S) || gmf_sqloss_shard(&sq, nl, N, d, X, y)) {
        fprintf(stderr, "rank %d: %s\n", rank, gmf_errmsg());
        gmf_par_abort(1);
    }
    gmf_oracle o = gmf_sqloss_oracle(sq);
    double t[64];
    for (int r = 0; r < reps + 1; r++) { /* the first is a warm-up */
        gmf_par_any(0);
        double t0 = now();
        if (o.prepare(o.ctx, K, mu, S, NULL)) gmf_par_abort(1);
        if (r) t[r - 1] = now() - t0;
    }
    const double trhs = median(t, reps), tcomm = time_sum(buf, m, reps);
    if (!rank)
        printf("P %d N %zu d %zu K %zu n_per_rank %zu  prepare %.6f s  reduce(%zu doubles) %.6f s  "
               "loss %.17g\n",
               P, N, d, K, nl, trhs, m, tcomm, o.loss(o.ctx));
    for (size_t mm = 1; mm <= ((size_t)1 << 21); mm *= 8) {
        const double tm = time_sum(buf, mm, reps);
        if (!rank) printf("  gmf_par_sum %8zu doubles  %.3e s\n", mm, tm);
    }
    gmf_sqloss_free(sq);
    free(X), free(y), free(mu), free(C), free(S), free(buf);
    gmf_par_finalize();
    return 0;
}
