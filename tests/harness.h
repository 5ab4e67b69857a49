/* tests/harness.h -- what every validate/ program (and the bench/ drivers) share (header only: each
 * validate/<name>.c is one program; tests/ is on every program's include path):
 *
 *   - vh_parse: the options from a table, strictly: an unknown option, a missing value, a value
 *     that does not parse (integers: plain non-negative decimal in range; numbers: finite; a
 *     choice: one of its fixed list) stops the program with "<prog>: <option>: <reason>", the
 *     usage line, and exit status 2; -h / --help prints the usage line and exits 0;
 *   - vh_now: the clock (monotonic seconds);
 *   - vh_csv_open: a program's --csv file with its header;
 *   - vh_loglog_slope: the order of a convergence (least squares in log-log);
 *   - vh_traj, vh_traj_store: an observer for gmf_ode_solve that keeps every output state;
 *   - vh_run: the case runner's book-keeping: cases that could not run (vh_case), and the
 *     verdict (vh_finish), always the program's last line: "<prog>: <figure> PASS|FAIL"; exit
 *     status 0 on pass, 1 on fail (a case that could not run fails the program).
 *
 * A main is then: defaults, an option table, vh_parse, range checks (vh_usage_error), the cases,
 * vh_finish.
 */
#ifndef GMFLOW_VALIDATE_HARNESS_H
#define GMFLOW_VALIDATE_HARNESS_H

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gmflow/common.h"

/* Seconds on the monotonic clock (differences only). */
static inline double vh_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef enum {
    VH_FLAG,   /* no value; *(int *)dst = 1 */
    VH_ULONG,  /* *(unsigned long *)dst */
    VH_SIZE,   /* *(size_t *)dst */
    VH_DOUBLE, /* *(double *)dst, finite */
    VH_STRING, /* *(const char **)dst = the argument (not copied) */
    VH_CHOICE  /* *(int *)dst = index of the value in choices */
} vh_kind;

typedef struct vh_opt {
    const char *name; /* "--n" */
    vh_kind kind;
    void *dst;
    const char *const *choices; /* VH_CHOICE: the accepted values, NULL-terminated */
    int *given;                 /* optional: set to 1 when the option appears */
} vh_opt;

/* The program's name and usage (the arguments part), set by vh_parse for the messages. */
static const char *vh_prog_name = "validate", *vh_prog_usage = "";

/* Usage error: "<prog>: <message>" and the usage line on stderr, exit status 2. */
static inline void vh_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void vh_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", vh_prog_name);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: %s %s\n", vh_prog_name, vh_prog_usage);
    exit(2);
}

static inline unsigned long vh_ulong_value(const char *opt, const char *v, unsigned long max) {
    char *end;
    errno = 0;
    unsigned long x = strtoul(v, &end, 10);
    if (end == v || *end != '\0' || errno == ERANGE || v[0] == '-' || v[0] == '+')
        vh_usage_error("%s: expected a non-negative integer, got '%s'", opt, v);
    if (x > max) vh_usage_error("%s: at most %lu, got '%s'", opt, max, v);
    return x;
}

static inline double vh_double_value(const char *opt, const char *v) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end != '\0' || !isfinite(x))
        vh_usage_error("%s: expected a finite number, got '%s'", opt, v);
    return x;
}

static inline int vh_choice_value(const char *opt, const char *v, const char *const *choices) {
    for (int i = 0; choices[i]; i++)
        if (!strcmp(v, choices[i])) return i;
    char list[256] = "";
    for (int i = 0; choices[i]; i++) {
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", choices[i]);
    }
    vh_usage_error("%s: expected one of %s, got '%s'", opt, list, v);
    return -1;
}

/* Parse argv[1 .. argc-1] against the n options of opts (see the header comment). */
static inline void vh_parse(int argc, char **argv, const char *prog, const char *usage,
                            const vh_opt *opts, size_t n) {
    vh_prog_name = prog, vh_prog_usage = usage;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: %s %s\n", prog, usage);
            exit(0);
        }
        const vh_opt *o = NULL;
        for (size_t j = 0; j < n && !o; j++)
            if (!strcmp(a, opts[j].name)) o = &opts[j];
        if (!o) vh_usage_error("unknown option '%s'", a);
        if (o->given) *o->given = 1;
        if (o->kind == VH_FLAG) {
            *(int *)o->dst = 1;
            continue;
        }
        if (i + 1 >= argc) vh_usage_error("%s needs a value", a);
        const char *v = argv[++i];
        switch (o->kind) {
        case VH_ULONG:
            *(unsigned long *)o->dst = vh_ulong_value(a, v, (unsigned long)-1);
            break;
        case VH_SIZE:
            *(size_t *)o->dst = (size_t)vh_ulong_value(a, v, (size_t)-1);
            break;
        case VH_DOUBLE:
            *(double *)o->dst = vh_double_value(a, v);
            break;
        case VH_STRING:
            *(const char **)o->dst = v;
            break;
        case VH_CHOICE:
            *(int *)o->dst = vh_choice_value(a, v, o->choices);
            break;
        case VH_FLAG:
            break;
        }
    }
}

/* The --csv output of a program: NULL when path is NULL; else the file opened for writing with
 * its header line written (header ends without a newline); a file that cannot be opened stops
 * the program with "<path>: <reason>" on stderr and exit status 1. */
static inline FILE *vh_csv_open(const char *path, const char *header) {
    if (!path) return NULL;
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fprintf(f, "%s\n", header);
    return f;
}

/* Least-squares slope of log y against log x over m points: the order of a convergence
 * (y ~ C x^p gives p). */
static inline double vh_loglog_slope(const double *x, const double *y, int m) {
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int i = 0; i < m; i++) {
        double lx = log(x[i]), ly = log(y[i]);
        sx += lx, sy += ly, sxx += lx * lx, sxy += lx * ly;
    }
    return (m * sxy - sx * sy) / (m * sxx - sx * sx);
}

/* A trajectory for gmf_ode_solve's observer: vh_traj_store copies output j's state (N values)
 * to Y + j N (Y holds one row per output time). */
typedef struct vh_traj {
    size_t N;
    double *Y;
} vh_traj;

static inline int vh_traj_store(size_t j, double t, const double *y, void *user) {
    (void)t;
    vh_traj *tr = user;
    memcpy(tr->Y + j * tr->N, y, tr->N * sizeof(double));
    return 0;
}

/* The case runner's book-keeping. */
typedef struct vh_run {
    const char *prog;
    int errors; /* cases that could not run */
    double t0;
} vh_run;

static inline vh_run vh_start(const char *prog) {
    vh_run r = {prog, 0, vh_now()};
    return r;
}

/* Record one case's status: rc != GMF_OK means it could not run; reported on stderr with the
 * library's message.  Returns rc. */
static inline int vh_case(vh_run *r, const char *label, int rc) {
    if (rc) {
        r->errors++;
        fprintf(stderr, "%s: case %s: %s: %s\n", r->prog, label, gmf_strerror(rc), gmf_errmsg());
    }
    return rc;
}

/* Count a case that could not run and has reported why on stderr itself. */
static inline void vh_case_failed(vh_run *r) {
    r->errors++;
}

/* The verdict, the program's last line: "<prog>: <figure> PASS|FAIL"; fails when pass is 0 or a
 * case could not run.  Returns the exit status (0 pass, 1 fail). */
static inline int vh_finish(const vh_run *r, int pass, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int vh_finish(const vh_run *r, int pass, const char *fmt, ...) {
    pass = pass && !r->errors;
    va_list ap;
    va_start(ap, fmt);
    printf("%s: ", r->prog);
    vprintf(fmt, ap);
    va_end(ap);
    printf(" %s", pass ? "PASS" : "FAIL");
    if (r->errors) printf(" (%d case(s) could not run)", r->errors);
    printf(" [%.1f s]\n", vh_now() - r->t0);
    fflush(stdout);
    return pass ? 0 : 1;
}

#endif
