/* benchutil.h -- the small helpers the C benchmarks share: the process's CPU time and a qsort
 * comparison for medians.  Header-only (static inline); bench/ programs only. */
#ifndef GMFLOW_BENCHUTIL_H
#define GMFLOW_BENCHUTIL_H

#include <time.h>

/* CPU time of the process (all threads), seconds */
static inline double bench_cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* qsort comparison of doubles, ascending */
static inline int bench_cmpd(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif
