/* vargs.h -- strict option values for the validate/ programs: a value that does not parse (or is
 * not finite, or out of range) stops the program with exit status 2 and a message naming the
 * option, instead of strtoul/atof's silent 0. */
#ifndef GMFLOW_VARGS_H
#define GMFLOW_VARGS_H

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static inline unsigned long varg_ulong(const char *opt, const char *v) {
    char *end;
    errno = 0;
    unsigned long x = strtoul(v, &end, 10);
    if (end == v || *end != '\0' || errno == ERANGE || v[0] == '-') {
        fprintf(stderr, "%s: expected a non-negative integer, got '%s'\n", opt, v);
        exit(2);
    }
    return x;
}

static inline double varg_double(const char *opt, const char *v) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end != '\0' || !isfinite(x)) {
        fprintf(stderr, "%s: expected a finite number, got '%s'\n", opt, v);
        exit(2);
    }
    return x;
}

/* The value argv[i] of the option argv[i - 1] (call as varg_ulong_at(argv, ++i)). */
static inline unsigned long varg_ulong_at(char **argv, int i) {
    return varg_ulong(argv[i - 1], argv[i]);
}
static inline double varg_double_at(char **argv, int i) {
    return varg_double(argv[i - 1], argv[i]);
}

#endif
