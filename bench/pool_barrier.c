/* pool_barrier.c -- the cost of the nn module's thread pool itself (src/discrete/nn_pool.c): jobs
 * of 4 barriers each on 2 threads, with no work or a little (--work N: N dependent adds per
 * thread between barriers), so that a job's time is its 6 synchronizations (start, 4 barriers,
 * end) plus the work.  The measurement behind docs/PERFORMANCE.md, "Two threads for the GM
 * trainer" (a training step has 5).  Pin it: `taskset -c 0,1` (SCHED_FIFO, `chrt -f 10`, on a
 * loaded machine: a run lasts about 0.5 s).
 *
 *   build/bench/pool_barrier [--work N] [--jobs N] [--threads 2]
 *
 * Output, 3 repetitions: pool_barrier threads=T work=N us_per_job=X */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/discrete/nn_internal.h"
#include "harness.h"

static struct gmf_nn_pool *pool;
static long work;
static volatile double sink;

static void job(void *ctx, int t, int n) {
    (void)ctx, (void)n;
    for (int b = 0; b < 4; b++) {
        double s = 0;
        for (long i = 0; i < work; i++)
            s += (double)i * 1e-9 * (t + 1);
        sink = s;
        gmf_nn_pool_barrier(pool);
    }
}

int main(int argc, char **argv) {
    unsigned long uw = 0, uj = 100000, ut = 2;
    const vh_opt opts[] = {{"--work", VH_ULONG, &uw, NULL, NULL},
                           {"--jobs", VH_ULONG, &uj, NULL, NULL},
                           {"--threads", VH_ULONG, &ut, NULL, NULL}};
    vh_parse(argc, argv, "pool_barrier", "[--work N] [--jobs N] [--threads 2]", opts, 3);
    if (uw > 100000000 || uj < 1 || uj > 100000000 || ut < 1 || ut > 64)
        vh_usage_error("need work <= 1e8, 1 <= jobs <= 1e8, 1 <= threads <= 64");
    work = (long)uw;
    const long jobs = (long)uj, threads = (long)ut;
    if (gmf_nn_pool_new(&pool, (int)threads)) {
        fprintf(stderr, "pool_barrier: no pool of %ld threads: %s\n", threads, gmf_errmsg());
        return 1;
    }
    for (int rep = 0; rep < 3; rep++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (long s = 0; s < jobs; s++)
            gmf_nn_pool_run(pool, job, NULL);
        clock_gettime(CLOCK_MONOTONIC, &b);
        const double us = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) /
                          (double)jobs / 1e3;
        printf("pool_barrier threads=%ld work=%ld us_per_job=%.3f\n", threads, work, us);
    }
    gmf_nn_pool_free(pool);
    return 0;
}
