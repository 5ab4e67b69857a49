/* stationary_solve.c -- gmflow's side of bench/run_stationary_bench.sh, timed in process: the
 * library integrates a toy written by bench/stationary_toy until the gradient-norm event
 * ||F(y)||_2 <= TOL (gmf_events GMF_EVENT_GRAD, stop), exactly as `gmflow flow --data DIR/data.csv
 * --init DIR/init.json --stop-grad TOL --t-end T_MAX --n-out 2 [--method M]` does (the same
 * gmf_traj_integrate call, the same events, the same defaults), and reports the CPU and wall
 * seconds of the solve alone: from the events' set-up to the end of gmf_traj_integrate, the
 * counterpart of stationary_scipy.py's timing of solve_ivp (the data, the oracle and the
 * interpreter's or process's start-up are outside both).
 *
 *   stationary_solve DIR [--tol 1e-8] [--t-max 1e5] [--method auto|bdf|adams] [--rtol 1e-8]
 *                        [--atol 1e-10] [--tag gmflow_auto]
 *
 * Writes DIR/<tag>_state.json (the state at the event, or at t_max) and prints one line
 *   RESULT method=M reached=True|False t=T gradnorm=G loss=L nrhs=N steps=S cpu_s=C wall_s=W
 * Exit 0 when the run completed (reached or not), 1 on an error (message on stderr), 2 on usage.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gmflow/common.h"
#include "gmflow/events.h"
#include "gmflow/flow.h"
#include "gmflow/io.h"
#include "gmflow/sqloss.h"
#include "gmflow/traj.h"

typedef struct {
    const char *dir, *method, *tag;
    double tol, tmax, rtol, atol;
} args;

static double clk(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The usage on f; returns the exit status rc. */
static int usage(FILE *f, int rc) {
    fprintf(f, "usage: stationary_solve DIR [--tol TOL] [--t-max T] [--method auto|bdf|adams]\n"
               "                        [--rtol R] [--atol A] [--tag NAME]\n");
    return rc;
}

static int parse(int argc, char **argv, args *a) {
    *a = (args){
        .method = "auto", .tag = NULL, .tol = 1e-8, .tmax = 1e5, .rtol = 1e-8, .atol = 1e-10};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) exit(usage(stdout, 0));
        if (o[0] != '-') {
            a->dir = o;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "stationary_solve: option %s needs a value\n", o);
            return usage(stderr, 2);
        }
        const char *v = argv[++i];
        char *end;
        errno = 0;
        double x = strtod(v, &end);
        int num = !errno && end != v && !*end;
        if (!strcmp(o, "--method"))
            a->method = v;
        else if (!strcmp(o, "--tag"))
            a->tag = v;
        else if (num && !strcmp(o, "--tol"))
            a->tol = x;
        else if (num && !strcmp(o, "--t-max"))
            a->tmax = x;
        else if (num && !strcmp(o, "--rtol"))
            a->rtol = x;
        else if (num && !strcmp(o, "--atol"))
            a->atol = x;
        else {
            fprintf(stderr, "stationary_solve: bad option %s %s\n", o, v);
            return usage(stderr, 2);
        }
    }
    if (!a->dir) fprintf(stderr, "stationary_solve: no DIR given\n");
    return a->dir ? 0 : usage(stderr, 2);
}

/* Integrate with the gradient-norm event; times the solve.  0 or 1. */
static int solve(const args *a, gmf_sqloss *sq, const gmf_io_state *s0) {
    gmf_ode_opts ode = gmf_ode_defaults();
    if (gmf_ode_method_parse(a->method, &ode.method)) return 1;
    ode.rtol = a->rtol, ode.atol = a->atol, ode.max_steps = 10000000;
    ode.jvp = gmf_flow_ode_jvp, ode.jac = gmf_flow_ode_jac; /* exact Jacobian, as gmflow flow */
    const double tout[2] = {s0->t, s0->t + a->tmax};
    gmf_events_opts eo = {.grad_tol = a->tol, .stop = 1};
    gmf_events *ev = NULL;
    gmf_traj *tr = NULL;
    gmf_ode_stats st;
    const double c0 = clk(CLOCK_PROCESS_CPUTIME_ID), w0 = clk(CLOCK_MONOTONIC);
    int rc = gmf_traj_new(&tr, GMF_FLOW_BW, 2, s0->K, s0->D);
    if (!rc) rc = gmf_events_new(&ev, GMF_FLOW_BW, s0->K, gmf_sqloss_oracle(sq), &eo);
    if (!rc) gmf_events_attach(ev, &ode);
    if (!rc) {
        double *y0 = gmf_calloc(s0->K * (s0->D + s0->D * s0->D), sizeof(double), "state");
        if (!y0) return gmf_traj_free(tr), gmf_events_free(ev), 1;
        memcpy(y0, s0->mu, s0->K * s0->D * sizeof(double));
        memcpy(y0 + s0->K * s0->D, s0->Sigma, s0->K * s0->D * s0->D * sizeof(double));
        rc = gmf_traj_integrate(tr, gmf_sqloss_oracle(sq), y0, tout, &st, &ode);
        free(y0);
    }
    const double cpu = clk(CLOCK_PROCESS_CPUTIME_ID) - c0, wall = clk(CLOCK_MONOTONIC) - w0;
    if (!rc) {
        const size_t j = gmf_traj_done(tr) - 1, K = s0->K, D = s0->D;
        const int reached = gmf_events_count(ev) > 0;
        const double gn = reached ? gmf_events_get(ev, 0)->value : NAN;
        gmf_io_state s = {.K = K,
                          .d = D - 1,
                          .D = D,
                          .t = gmf_traj_t(tr)[j],
                          .mu = (double *)gmf_traj_mu(tr) + j * K * D,
                          .Sigma = (double *)gmf_traj_Sigma(tr) + j * K * D * D};
        char path[4096], tag[256];
        snprintf(tag, sizeof tag, "gmflow_%s", a->method);
        snprintf(path, sizeof path, "%s/%s_state.json", a->dir, a->tag ? a->tag : tag);
        rc = gmf_io_write_state(path, &s);
        if (!rc)
            printf(
                "RESULT method=%s reached=%s t=%.17g gradnorm=%.6e loss=%.17g nrhs=%ld steps=%ld "
                "cpu_s=%.6f wall_s=%.6f\n",
                a->method, reached ? "True" : "False", s.t, gn, gmf_traj_loss(tr)[j], st.nfevals,
                st.nsteps, cpu, wall);
    }
    if (rc) fprintf(stderr, "stationary_solve: %s\n", gmf_errmsg());
    gmf_events_free(ev);
    gmf_traj_free(tr);
    return rc ? 1 : 0;
}

int main(int argc, char **argv) {
    args a;
    int rc = parse(argc, argv, &a);
    if (rc) return rc;
    char path[4096];
    size_t n = 0, d = 0;
    double *X = NULL, *y = NULL;
    gmf_io_state s0;
    memset(&s0, 0, sizeof s0);
    gmf_sqloss *sq = NULL;
    snprintf(path, sizeof path, "%s/data.csv", a.dir);
    rc = gmf_io_read_csv(path, &n, &d, &X, &y);
    if (!rc) {
        snprintf(path, sizeof path, "%s/init.json", a.dir);
        rc = gmf_io_read_state(path, &s0);
    }
    if (!rc && (s0.d != d || s0.euclid))
        rc = gmf_error(GMF_EINVAL, "%s: a bw state with d = %zu expected", path, d);
    if (!rc) rc = gmf_sqloss_new(&sq, n, d, X, y);
    if (rc) {
        fprintf(stderr, "stationary_solve: %s\n", gmf_errmsg());
        rc = 1;
    } else {
        rc = solve(&a, sq, &s0);
    }
    gmf_sqloss_free(sq);
    gmf_io_state_free(&s0);
    free(X), free(y);
    return rc;
}
