/* benchutil.h -- the small helpers the C benchmarks share: the process's CPU time and a qsort
 * comparison for medians.  Header-only (static inline); bench/ programs only. */
#ifndef GMFLOW_BENCHUTIL_H
#define GMFLOW_BENCHUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* The GM kernel benches' options: --rounds R --B B --d d --K K --L L (each "--name value"), or
 * --help.  Returns -1 to go on, else the exit status (0 after --help, 2 on a bad option, the
 * message naming it and prog). */
static inline int bench_gm_shape_args(int argc, char **argv, const char *prog, long *rounds,
                                      long *B, long *d, long *K, long *L) {
    for (int i = 1; i < argc; i += 2) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: %s [--rounds %ld] [--B %ld] [--d %ld] [--K %ld] [--L %ld]\n", prog,
                   *rounds, *B, *d, *K, *L);
            return 0;
        }
        long *t = !strcmp(argv[i], "--rounds") ? rounds
                  : !strcmp(argv[i], "--B")    ? B
                  : !strcmp(argv[i], "--d")    ? d
                  : !strcmp(argv[i], "--K")    ? K
                  : !strcmp(argv[i], "--L")    ? L
                                               : NULL;
        if (!t || i + 1 >= argc) {
            fprintf(stderr, "%s: %s %s (see --help)\n", prog,
                    t ? "missing value for" : "unknown option", argv[i]);
            return 2;
        }
        char *end;
        *t = strtol(argv[i + 1], &end, 10);
        if (end == argv[i + 1] || *end) {
            fprintf(stderr, "%s: %s: not an integer: %s\n", prog, argv[i], argv[i + 1]);
            return 2;
        }
    }
    return -1;
}

#endif
