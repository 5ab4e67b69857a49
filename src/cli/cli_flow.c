/* cli_flow.c -- `gmflow flow`: integrate the exact Gaussian-mixture gradient flow of the squared
 * loss (Theorems 3/4 in the Sigma form, Theorem 1 in the (mu, C) form) on a CSV data set or a
 * built-in regression toy, and write the trajectory (docs/FORMATS.md).
 *
 * Parse and validate options -> load data -> initial mixture (random or --init) -> checks before
 * integrating (gmf_traj_check_start) -> integrate, recording every output time (gmf_traj) ->
 * (optionally) integrate the other form and compare (Theorem 1, gmf_traj_thm1_distance) -> write
 * all files as one atomic set (gmf_flowio_write_set) -> summary on stdout.  The mathematics and
 * the file formats live in the library; this file parses, calls and reports.
 */
#define _POSIX_C_SOURCE 200809L

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "gmflow/common.h"
#include "gmflow/events.h"
#include "gmflow/flow.h"
#include "gmflow/flowio.h"
#include "gmflow/io.h"
#include "gmflow/ode.h"
#include "gmflow/outset.h"
#include "gmflow/par.h"
#include "gmflow/sqloss.h"
#include "gmflow/stationary.h"
#include "gmflow/toy.h"
#include "gmflow/traj.h"

#define CMD "gmflow flow"

/* Theorem 1 check: pass threshold and the tolerances used when the user set none. */
#define THM1_TOL        1e-8
#define THM1_RTOL       1e-11
#define THM1_ATOL       1e-13
#define DEFAULT_K       3
#define DEFAULT_GAMMA   0.5
#define DEFAULT_SEED    2
#define DEFAULT_T_END   5.0
#define DEFAULT_N_OUT   51
#define DEFAULT_OUT_DIR "out/flow"

/* A bad option value: a usage error (exit status 2), like the other subcommands'. */
#define bad_value(...) usage_error(__VA_ARGS__)

/* ------------------------------------------------------------------------------------------ */
/* help                                                                                        */

static void help(FILE *fp) {
    gmf_toy_opts t = gmf_toy_defaults();
    gmf_ode_opts o = gmf_ode_defaults();
    fprintf(
        fp,
        "usage: " CMD " [options]\n"
        "\n"
        "Integrate the exact gradient flow of the squared loss\n"
        "  L(rho) = (1/n) sum_i (y_i - E_rho f(x_i, theta))^2,  f(x, theta) = omega relu(beta . "
        "x)\n"
        "over Gaussian mixtures rho = (1/K) sum_k N(mu_k, Sigma_k) on theta = (omega, beta) in "
        "R^D,\n"
        "D = d + 1, with closed-form expectations (no Monte Carlo) and an adaptive ODE solver.\n"
        "With no options it runs a built-in regression toy in a few seconds.\n"
        "\n"
        "Data (a CSV file, or the built-in toy):\n"
        "  --data FILE.csv      rows x_1,...,x_d,y (optional header line; '#' comments)\n"
        "  --data FILE.npy      one (n, d+1) float64 array, rows x_1..x_d, y; under mpirun each\n"
        "                       rank reads only its own block of rows (docs/SCALE.md)\n"
        "  --n N                toy: number of samples (default %zu)\n"
        "  --d D                toy: input dimension (default %zu)\n"
        "  --teacher NAME       toy: relu (a random ReLU network) or mixture (a planted Gaussian\n"
        "                       mixture, targets in closed form) (default relu)\n"
        "  --width M            toy: teacher width (neurons or planted components) (default %zu)\n"
        "  --noise S            toy: label-noise standard deviation (default %g)\n"
        "  --data-seed SEED     toy: random seed of the data (default %lu)\n"
        "\n"
        "Initial mixture (random, as in the paper, or from a file):\n"
        "  -K, --components K   number of components (default %d)\n"
        "  --gamma G            random init: mu entries ~ N(0, G^2), C_k = G I, Sigma_k = G^2 I\n"
        "                       (default %g)\n"
        "  --seed SEED          random init: seed (default %d)\n"
        "  --init STATE.json    start from a state written by a previous run (its state.json);\n"
        "                       K comes from the file and its d must match the data.  Time\n"
        "                       continues from the state's t (converted between the forms: an\n"
        "                       euclid time is K times the bw time).\n"
        "\n"
        "Flow:\n"
        "  --form bw|euclid     bw: Theorems 3/4, state (mu_k, Sigma_k) (default);\n"
        "                       euclid: Theorem 1, Euclidean gradient flow over (mu_k, C_k) with\n"
        "                       Sigma_k = C_k C_k^T; euclid at time t equals bw at time t/K.\n"
        "                       From a bw state, C_k is the Cholesky factor of Sigma_k.\n"
        "  --geometry w|wfr     w: fixed equal weights 1/K (the paper's flows; default);\n"
        "                       wfr: Wasserstein-Fisher-Rao, weights w_k learned by the reaction\n"
        "                       w_k' = -alpha w_k (E_k[dL] - sum_j w_j E_j[dL]) (docs/WFR.md);\n"
        "                       --form bw only, no events; writes w.npy and \"w\" in state.json.\n"
        "                       With --init the file's \"w\" is used (none: equal weights)\n"
        "  --fr-weight ALPHA    wfr: the Fisher-Rao weight alpha >= 0 (default 1; 0 = frozen\n"
        "                       weights)\n"
        "  --t-end T            integrate over [t0, t0 + T], t0 = the initial state's time\n"
        "                       (default %g)\n"
        "  --n-out N            number of output times, evenly spaced, both ends included\n"
        "                       (default %d)\n"
        "  --t-out LIST|@FILE   output times after t0 instead: a list like 0.1,1,10,100 or a file\n"
        "                       of numbers (commas, spaces or new lines; '#' comments); t0 is\n"
        "                       always the first output, the last time is the end (no --t-end)\n"
        "  --log-times N        N output times log-spaced from --t-first to --t-end after t0,\n"
        "                       plus t0 itself (plateaus show on a log scale)\n"
        "  --t-first T1         the first of the --log-times (default t-end x 1e-6)\n"
        "                       Outputs come from the solver's dense output (CVODE) or by "
        "stepping\n"
        "                       to each time (GSL); with CVODE they do not shorten the steps.\n"
        "\n"
        "Solver:\n"
        "  --method NAME        auto (CVODE Adams, switching to BDF when the problem turns stiff:\n"
        "                       repeated fixed-point convergence failures, or the step held at\n"
        "                       the fastest mode's stability limit with >= 2000 steps to go),\n"
        "                       adams (CVODE Adams-Moulton), bdf (CVODE BDF + matrix-free GMRES),\n"
        "                       rk8pd, rkf45 (GSL Runge-Kutta) (default %s)\n"
        "  --gsl-norm NAME      rk8pd/rkf45's error norm over |err_i| / (atol + rtol |y_i|): max\n"
        "                       (GSL's standard control) or rms (root mean square, SciPy's and\n"
        "                       CVODE's norm; fewer steps on wide states) (default max)\n"
        "  --rtol R             relative tolerance, > 0 (default %g)\n"
        "  --atol A             absolute tolerance, >= 0; > 0 for auto, adams, bdf (default %g)\n"
        "  --max-steps N        internal steps allowed per output interval (default %ld)\n"
        "  --jacobian NAME      bdf's linear solver: auto (dense exact Jacobian for N <= 400,\n"
        "                       else exact JVPs), dq (GMRES, difference quotients), jvp (GMRES,\n"
        "                       exact JVPs), dense (dense LU, exact Jacobian) (default auto;\n"
        "                       under mpirun only dq, which auto then selects)\n"
        "  --stall-steps N      stop with a message when N steps advanced t by less than 0.1 %%\n"
        "                       (0: off) (default %ld)\n"
        "  --stall-seconds S    ... or when S seconds of wall time did (0: off) (default %g); the\n"
        "                       step size falling below 1e-12 |t| stops the run too.  The message\n"
        "                       gives the time reached, the step, the most singular component.\n"
        "  The loss must not increase along the flow: a rise above min(1e-2, 100 rtol) relative\n"
        "  (over the smallest loss so far, checked at outputs, events and every second) stops the\n"
        "  run as a failure (exit 1): the tolerances are too loose for the problem.\n"
        "  --loss-atol A        absolute slack of that check, >= 0 (default 0): rises below A are\n"
        "                       ignored (a loss converging to 0 reaches its error floor, about\n"
        "                       (100 atol)^2, where it wanders)\n"
        "\n"
        "Events (each recorded in run.json with its time, kind and component; the state there\n"
        "written to DIR/event_<j>_state.json, usable with --init; located by CVODE's root finding\n"
        "or, for GSL, by bisection on step retakes):\n"
        "  --stop-grad TOL      ||F(y)||_2 (the flow's velocity; for euclid the gradient of\n"
        "                       l(mu, C)) falls below TOL: a stationary point\n"
        "  --event-loss VALUE   the loss crosses VALUE\n"
        "  --collapse RATIO     lambda_min/lambda_max of some Sigma_k (euclid: C_k C_k^T) falls\n"
        "                       below RATIO, in (0, 1): the component collapses\n"
        "  --on-event stop|continue  stop at the first event (default; the trajectory ends\n"
        "                       there and state.json is the event's state, exit 0) or record\n"
        "                       every event and go on\n"
        "\n"
        "Checks and output:\n"
        "  --check-thm1         also integrate the other form from the same initial state over "
        "the\n"
        "                       matching times (euclid time = K x bw time) and report the largest\n"
        "                       relative difference ||Sigma_k(t/K) - C_k(t) "
        "C_k(t)^T||_F/||Sigma_k||_F\n"
        "                       and ||mu(t/K) - mu(t)|| / ||mu||; PASS if both <= %g,\n"
        "                       else exit 1 (the main run's files are written either way).\n"
        "                       Without --rtol/--atol both runs use rtol %g, atol %g.\n"
        "  --polish             at the end, Newton-polish the final state to a stationary point\n"
        "                       of l(mu, C) (a bw state is factored first); print the gradient\n"
        "                       norm, the Hessian's index (gauge directions removed), minimum or\n"
        "                       saddle, and write DIR/spectrum.csv (part of the output set)\n"
        "  --out DIR            output directory, created if needed (default %s)\n"
        "  -q, --quiet          no progress lines on stderr (without it: a line per output time\n"
        "                       and, between them, about every second: t, loss, steps, step size)\n"
        "  -h, --help           this help\n"
        "\n"
        "Files written to DIR, as one set replacing the previous one atomically, only after the\n"
        "integration succeeded (staged in DIR.tmp.<pid>, then swapped in; files in DIR that are\n"
        "not among these are kept; formats in docs/FORMATS.md; T = n-out):\n"
        "  trajectory.csv       t, loss, wall_s (seconds since the start), nrhs (cumulative\n"
        "                       right-hand side evaluations) per output time\n"
        "  t.npy                (T,)           output times\n"
        "  mu.npy               (T, K, D)      means\n"
        "  Sigma.npy            (T, K, D, D)   covariances (euclid: C C^T)\n"
        "  C.npy                (T, K, D, D)   square roots (euclid only)\n"
        "  w.npy                (T, K)         mixture weights (--geometry wfr only)\n"
        "  state.json           the final state (usable with --init)\n"
        "  event_<j>_state.json the state at event j (first 20 events)\n"
        "  run.json             options, data source, sizes, solver statistics, losses, timing,\n"
        "                       auto switches, events\n"
        "\n"
        "Exit status: 0 success; 1 runtime failure (unreadable or invalid --data/--init file,\n"
        "solver failure, I/O error, Theorem 1 check FAIL); 2 usage error (unknown option, bad\n"
        "option value, conflicting options).\n",
        t.n, t.d, t.width, t.noise, t.seed, DEFAULT_K, DEFAULT_GAMMA, DEFAULT_SEED, DEFAULT_T_END,
        DEFAULT_N_OUT, gmf_ode_method_name(o.method), o.rtol, o.atol, o.max_steps, o.stall_steps,
        o.stall_seconds, THM1_TOL, THM1_RTOL, THM1_ATOL, DEFAULT_OUT_DIR);
}

/* ------------------------------------------------------------------------------------------ */
/* option values                                                                               */

typedef struct options {
    const char *data;
    gmf_toy_opts toy;
    const char *toy_opt; /* first toy-only option given (for the conflict message) */
    size_t K;
    int K_set;
    double gamma;
    unsigned long seed;
    const char *rand_opt; /* first random-init-only option given */
    const char *init;
    gmf_flow_kind form;
    gmf_ode_opts ode;
    int rtol_set, atol_set, tightened;
    double t_end;
    size_t n_out;
    const char *out;
    int check, quiet;
    const char *t_out; /* --t-out LIST|@FILE */
    size_t log_times;  /* --log-times N (0: off) */
    double t_first;    /* --t-first (0: t-end x 1e-6) */
    int t_end_set, n_out_set;
    gmf_events_opts ev; /* --stop-grad, --event-loss, --collapse, --on-event */
    const char *ev_opt; /* first event option given */
    int polish;
    int wfr, fr_set; /* --geometry wfr; --fr-weight given */
    double fr_weight;
} options;

enum {
    O_DATA = 256,
    O_N,
    O_D,
    O_TEACHER,
    O_WIDTH,
    O_NOISE,
    O_DATA_SEED,
    O_GAMMA,
    O_SEED,
    O_INIT,
    O_FORM,
    O_METHOD,
    O_RTOL,
    O_ATOL,
    O_MAX_STEPS,
    O_T_END,
    O_N_OUT,
    O_OUT,
    O_CHECK,
    O_T_OUT,
    O_LOG_TIMES,
    O_T_FIRST,
    O_STOP_GRAD,
    O_EVENT_LOSS,
    O_COLLAPSE,
    O_ON_EVENT,
    O_STALL_SECONDS,
    O_STALL_STEPS,
    O_JACOBIAN,
    O_POLISH,
    O_GEOMETRY,
    O_FR_WEIGHT,
    O_LOSS_ATOL,
    O_GSL_NORM
};

static const struct option long_opts[] = {
    {"data", required_argument, NULL, O_DATA},
    {"n", required_argument, NULL, O_N},
    {"d", required_argument, NULL, O_D},
    {"teacher", required_argument, NULL, O_TEACHER},
    {"width", required_argument, NULL, O_WIDTH},
    {"noise", required_argument, NULL, O_NOISE},
    {"data-seed", required_argument, NULL, O_DATA_SEED},
    {"components", required_argument, NULL, 'K'},
    {"gamma", required_argument, NULL, O_GAMMA},
    {"seed", required_argument, NULL, O_SEED},
    {"init", required_argument, NULL, O_INIT},
    {"form", required_argument, NULL, O_FORM},
    {"method", required_argument, NULL, O_METHOD},
    {"rtol", required_argument, NULL, O_RTOL},
    {"atol", required_argument, NULL, O_ATOL},
    {"max-steps", required_argument, NULL, O_MAX_STEPS},
    {"t-end", required_argument, NULL, O_T_END},
    {"n-out", required_argument, NULL, O_N_OUT},
    {"out", required_argument, NULL, O_OUT},
    {"check-thm1", no_argument, NULL, O_CHECK},
    {"t-out", required_argument, NULL, O_T_OUT},
    {"log-times", required_argument, NULL, O_LOG_TIMES},
    {"t-first", required_argument, NULL, O_T_FIRST},
    {"stop-grad", required_argument, NULL, O_STOP_GRAD},
    {"event-loss", required_argument, NULL, O_EVENT_LOSS},
    {"collapse", required_argument, NULL, O_COLLAPSE},
    {"on-event", required_argument, NULL, O_ON_EVENT},
    {"stall-seconds", required_argument, NULL, O_STALL_SECONDS},
    {"stall-steps", required_argument, NULL, O_STALL_STEPS},
    {"K", required_argument, NULL, 'K'},
    {"jacobian", required_argument, NULL, O_JACOBIAN},
    {"polish", no_argument, NULL, O_POLISH},
    {"geometry", required_argument, NULL, O_GEOMETRY},
    {"fr-weight", required_argument, NULL, O_FR_WEIGHT},
    {"loss-atol", required_argument, NULL, O_LOSS_ATOL},
    {"gsl-norm", required_argument, NULL, O_GSL_NORM},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}};

static void set_defaults(options *o) {
    memset(o, 0, sizeof *o);
    o->toy = gmf_toy_defaults();
    o->K = DEFAULT_K;
    o->gamma = DEFAULT_GAMMA;
    o->seed = DEFAULT_SEED;
    o->form = GMF_FLOW_BW;
    o->ode = gmf_ode_defaults();
    o->t_end = DEFAULT_T_END;
    o->n_out = DEFAULT_N_OUT;
    o->out = DEFAULT_OUT_DIR;
    o->fr_weight = 1.0;
    o->ev.stop = 1;
    o->ode.jvp = gmf_flow_ode_jvp; /* exact Jacobian information for bdf (--jacobian) */
    o->ode.jac = gmf_flow_ode_jac;
    o->ev.max_events = 1000;
}

/* The data options.  Each opt_* returns -1 when c is not its option, 0 when it took the value,
 * 2 (message printed) for a bad value. */
static int opt_data(options *o, int c, const char *on, const char *arg) {
    unsigned long long u;
    switch (c) {
    case O_DATA:
        o->data = arg;
        return 0;
    case O_N:
        if (parse_count(on, arg, 1, (unsigned long long)1 << 40, &u)) return 2;
        o->toy.n = (size_t)u;
        return 0;
    case O_D:
        if (parse_count(on, arg, 1, 100000, &u)) return 2;
        o->toy.d = (size_t)u;
        return 0;
    case O_TEACHER:
        if (!strcmp(arg, "relu"))
            o->toy.teacher = GMF_TOY_RELU;
        else if (!strcmp(arg, "mixture"))
            o->toy.teacher = GMF_TOY_MIXTURE;
        else
            return bad_value("--teacher: unknown teacher '%s' (choose relu or mixture)", arg);
        return 0;
    case O_WIDTH:
        if (parse_count(on, arg, 1, 1000000, &u)) return 2;
        o->toy.width = (size_t)u;
        return 0;
    case O_NOISE:
        if (parse_double(on, arg, &o->toy.noise)) return 2;
        if (o->toy.noise < 0) return bad_value("--noise: must be >= 0 (got %s)", arg);
        return 0;
    case O_DATA_SEED:
        if (parse_count(on, arg, 0, 0xffffffffULL, &u)) return 2;
        o->toy.seed = (unsigned long)u;
        return 0;
    }
    return -1;
}

/* The initial-mixture options. */
static int opt_init(options *o, int c, const char *on, const char *arg) {
    unsigned long long u;
    switch (c) {
    case 'K':
        if (parse_count(on, arg, 1, 1000000, &u)) return 2;
        o->K = (size_t)u, o->K_set = 1;
        return 0;
    case O_GAMMA:
        if (parse_double(on, arg, &o->gamma)) return 2;
        if (!(o->gamma > 0)) return bad_value("--gamma: must be > 0 (got %s)", arg);
        return 0;
    case O_SEED:
        if (parse_count(on, arg, 0, 0xffffffffULL, &u)) return 2;
        o->seed = (unsigned long)u;
        return 0;
    case O_INIT:
        o->init = arg;
        return 0;
    }
    return -1;
}

/* The flow, solver and output options. */
static int opt_flow(options *o, int c, const char *on, const char *arg) {
    unsigned long long u;
    switch (c) {
    case O_FORM:
        if (!strcmp(arg, "bw"))
            o->form = GMF_FLOW_BW;
        else if (!strcmp(arg, "euclid"))
            o->form = GMF_FLOW_EUCLID;
        else
            return bad_value("--form: unknown form '%s' (choose bw or euclid)", arg);
        return 0;
    case O_METHOD: {
        if (gmf_ode_method_parse(arg, &o->ode.method))
            return bad_value("--method: %s", gmf_errmsg());
        return 0;
    }
    case O_GSL_NORM: {
        gmf_ode_norm nm;
        if (gmf_ode_norm_parse(arg, &nm)) return bad_value("--gsl-norm: %s", gmf_errmsg());
        o->ode.gsl_norm = (int)nm;
        return 0;
    }
    case O_RTOL:
        if (parse_double(on, arg, &o->ode.rtol)) return 2;
        if (!(o->ode.rtol > 0)) return bad_value("--rtol: must be > 0 (got %s)", arg);
        o->rtol_set = 1;
        return 0;
    case O_ATOL:
        if (parse_double(on, arg, &o->ode.atol)) return 2;
        if (!(o->ode.atol >= 0)) return bad_value("--atol: must be >= 0 (got %s)", arg);
        o->atol_set = 1;
        return 0;
    case O_MAX_STEPS:
        if (parse_count(on, arg, 1, 0x7fffffffULL, &u)) return 2;
        o->ode.max_steps = (long)u;
        return 0;
    case O_T_END:
        if (parse_double(on, arg, &o->t_end)) return 2;
        if (!(o->t_end > 0)) return bad_value("--t-end: must be > 0 (got %s)", arg);
        o->t_end_set = 1;
        return 0;
    case O_N_OUT:
        if (parse_count(on, arg, 2, 10000000, &u)) return 2;
        o->n_out = (size_t)u, o->n_out_set = 1;
        return 0;
    case O_OUT:
        if (!*arg) return bad_value("--out: empty directory name");
        o->out = arg;
        return 0;
    case O_CHECK:
        o->check = 1;
        return 0;
    case O_JACOBIAN: {
        gmf_ode_jacobian j;
        if (gmf_ode_jacobian_parse(arg, &j)) return bad_value("--jacobian: %s", gmf_errmsg());
        o->ode.jacobian = (int)j;
        return 0;
    }
    case O_POLISH:
        o->polish = 1;
        return 0;
    case O_GEOMETRY:
        if (strcmp(arg, "w") && strcmp(arg, "wfr"))
            return bad_value("--geometry: unknown geometry '%s' (choose w or wfr)", arg);
        o->wfr = !strcmp(arg, "wfr");
        return 0;
    case O_FR_WEIGHT:
        if (parse_double(on, arg, &o->fr_weight)) return 2;
        if (!(o->fr_weight >= 0) || !isfinite(o->fr_weight))
            return bad_value("--fr-weight: must be finite and >= 0 (got %s)", arg);
        o->fr_set = 1;
        return 0;
    }
    return -1;
}

/* --geometry wfr: the Sigma form only, no Theorem 1 check, no Newton polish, no events and no
 * exact Jacobian (docs/WFR.md). */
static int check_wfr_options(options *o) {
    if (o->fr_set && !o->wfr) return usage_error("--fr-weight needs --geometry wfr");
    if (!o->wfr) return -1;
    if (o->form != GMF_FLOW_BW)
        return usage_error("--geometry wfr runs the Sigma form only (use --form bw)");
    if (o->check || o->polish)
        return usage_error("--geometry wfr: %s is not available (Theorem 1 and the Newton polish "
                           "are for equal weights)",
                           o->check ? "--check-thm1" : "--polish");
    if (o->ev_opt) return usage_error("--geometry wfr: %s (events) is not available", o->ev_opt);
    if (o->ode.jacobian == GMF_ODE_JAC_JVP || o->ode.jacobian == GMF_ODE_JAC_DENSE)
        return usage_error("--geometry wfr: --jacobian %s needs the exact Jacobian, which the WFR "
                           "flow does not have (use auto or dq)",
                           gmf_ode_jacobian_name((gmf_ode_jacobian)o->ode.jacobian));
    o->ode.jvp = NULL, o->ode.jac = NULL; /* difference quotients */
    return -1;
}

/* Output-time, event and stall options. */
static int opt_events(options *o, int c, const char *on, const char *arg) {
    unsigned long long u;
    static const char *const ev_names[] = {"--stop-grad", "--event-loss", "--collapse",
                                           "--on-event"};
    if (c >= O_STOP_GRAD && c <= O_ON_EVENT && !o->ev_opt) o->ev_opt = ev_names[c - O_STOP_GRAD];
    switch (c) {
    case O_T_OUT:
        o->t_out = arg;
        return 0;
    case O_LOG_TIMES:
        if (parse_count(on, arg, 1, 10000000, &u)) return 2;
        o->log_times = (size_t)u;
        return 0;
    case O_T_FIRST:
        if (parse_double(on, arg, &o->t_first)) return 2;
        if (!(o->t_first > 0)) return bad_value("--t-first: must be > 0 (got %s)", arg);
        return 0;
    case O_STOP_GRAD:
        if (parse_double(on, arg, &o->ev.grad_tol)) return 2;
        if (!(o->ev.grad_tol > 0)) return bad_value("--stop-grad: must be > 0 (got %s)", arg);
        return 0;
    case O_EVENT_LOSS:
        if (parse_double(on, arg, &o->ev.loss_value)) return 2;
        o->ev.loss_on = 1;
        return 0;
    case O_COLLAPSE:
        if (parse_double(on, arg, &o->ev.collapse_ratio)) return 2;
        if (!(o->ev.collapse_ratio > 0 && o->ev.collapse_ratio < 1))
            return bad_value("--collapse: must be in (0, 1) (got %s)", arg);
        return 0;
    case O_ON_EVENT:
        if (strcmp(arg, "stop") && strcmp(arg, "continue"))
            return bad_value("--on-event: '%s' (choose stop or continue)", arg);
        o->ev.stop = !strcmp(arg, "stop");
        return 0;
    case O_STALL_SECONDS:
        if (parse_double(on, arg, &o->ode.stall_seconds)) return 2;
        if (!(o->ode.stall_seconds >= 0))
            return bad_value("--stall-seconds: must be >= 0 (got %s)", arg);
        return 0;
    case O_LOSS_ATOL:
        if (parse_double(on, arg, &o->ode.scalar_atol)) return 2;
        if (!(o->ode.scalar_atol >= 0) || !isfinite(o->ode.scalar_atol))
            return bad_value("--loss-atol: must be finite and >= 0 (got %s)", arg);
        return 0;
    case O_STALL_STEPS:
        if (parse_count(on, arg, 0, 0x7fffffffULL, &u)) return 2;
        o->ode.stall_steps = (long)u;
        return 0;
    }
    return -1;
}

/* Combinations, and what can be checked before any file is read. */
static int check_options(options *o) {
    if (o->data && o->toy_opt)
        return usage_error("--%s sets the built-in toy data; it cannot be combined with --data",
                           o->toy_opt);
    int wrc = check_wfr_options(o);
    if (wrc >= 0) return wrc;
    if (o->init && o->rand_opt)
        return usage_error("%s sets the random initial mixture; it cannot be combined with --init",
                           o->rand_opt);
    if (o->check && !o->rtol_set && !o->atol_set) {
        o->ode.rtol = THM1_RTOL, o->ode.atol = THM1_ATOL;
        o->tightened = 1;
    }
    if (o->t_out && (o->t_end_set || o->n_out_set || o->log_times))
        return usage_error("--t-out gives the output times and the end: it cannot be combined "
                           "with --t-end, --n-out or --log-times");
    if (o->log_times && o->n_out_set)
        return usage_error("--log-times and --n-out both set the number of output times");
    if (o->t_first > 0 && !o->log_times)
        return usage_error("--t-first is the first time of --log-times; give --log-times N");
    if (o->ev_opt && o->check)
        return usage_error("%s cannot be combined with --check-thm1 (an event may stop the run "
                           "before the times the check compares)",
                           o->ev_opt);
    if (o->ode.atol == 0 && (o->ode.method == GMF_ODE_CVODE_ADAMS ||
                             o->ode.method == GMF_ODE_CVODE_BDF || o->ode.method == GMF_ODE_AUTO))
        return usage_error("--atol 0: CVODE (--method %s) needs atol > 0: its error weights "
                           "1/(rtol |y_i| + atol) are infinite at the zero entries of the state "
                           "(the off-diagonal zeros of Sigma); give --atol > 0, or --method "
                           "rk8pd/rkf45 for a purely relative tolerance",
                           gmf_ode_method_name(o->ode.method));
    return -1;
}

/* Returns -1 to go on, else the exit status (0 for --help). */
static int parse_options(int argc, char **argv, options *o) {
    set_defaults(o);
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":K:qh", long_opts, NULL)) != -1) {
        const char *name = c == 'K' ? "-K/--components" : NULL;
        for (const struct option *lo = long_opts; !name && lo->name; lo++)
            if (lo->val == c) name = lo->name;
        char on[64];
        snprintf(on, sizeof on, "%s%s", c == 'K' ? "" : "--", name ? name : "?");
        if (c >= O_N && c <= O_DATA_SEED && !o->toy_opt) o->toy_opt = long_opts[c - O_DATA].name;
        if ((c == O_GAMMA || c == O_SEED) && !o->rand_opt)
            o->rand_opt = c == O_GAMMA ? "--gamma" : "--seed";
        if (c == 'h') {
            help(stdout);
            return 0;
        }
        if (c == 'q') {
            o->quiet = 1;
            continue;
        }
        if (c == ':') return usage_error("option '%s' needs a value", argv[optind - 1]);
        int rc = opt_data(o, c, on, optarg);
        if (rc < 0) rc = opt_init(o, c, on, optarg);
        if (rc < 0) rc = opt_flow(o, c, on, optarg);
        if (rc < 0) rc = opt_events(o, c, on, optarg);
        if (rc >= 0) {
            if (rc) return rc;
            continue;
        }
        if (optopt && optopt != '?') return usage_error("unknown option '-%c'", optopt);
        return usage_error("unknown option '%s'", argv[optind - 1]);
    }
    if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
    return check_options(o);
}

/* ------------------------------------------------------------------------------------------ */
/* inputs                                                                                      */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct inputs {
    size_t n, d, D, K;
    double *X, *yv;      /* data */
    char data_desc[512]; /* for the summary */
    char src[600];       /* where the initial state comes from, for messages */
    double t0, t0_file;  /* start time in the run's form; the --init file's own time */
    const char *init_form;
    double *ybw, *yeu; /* initial state [mu | Sigma] and (when available or needed) [mu | C] */
    double *w;         /* the --init file's mixture weights, or NULL (equal weights) */
    int rank, P, npy;  /* MPI (docs/SCALE.md); npy: X, yv hold only rows i0 .. i0 + nloc - 1 */
    size_t i0, nloc;   /* this rank's block of rows */
} inputs;

static void inputs_free(inputs *in) {
    free(in->X), free(in->yv), free(in->ybw), free(in->yeu), free(in->w);
}

static int load_data(const options *o, inputs *in) {
    const char *hook = getenv("GMFLOW_TEST_FAIL_RANK"); /* test hook: this rank fails to read */
    const size_t dlen = o->data ? strlen(o->data) : 0;
    if (hook && in->P > 1 && atoi(hook) == in->rank)
        return fail("--data: rank %d of %d: cannot read its shard (simulated by "
                    "GMFLOW_TEST_FAIL_RANK)",
                    in->rank, in->P);
    if (dlen > 4 && !strcmp(o->data + dlen - 4, ".npy")) { /* each rank reads its rows only */
        in->npy = 1;
        if (gmf_io_read_xy_npy(o->data, in->rank, in->P, &in->n, &in->d, &in->i0, &in->nloc, &in->X,
                               &in->yv))
            return fail("--data: %s", gmf_errmsg());
        snprintf(in->data_desc, sizeof in->data_desc, "%s (n = %zu, d = %zu)", o->data, in->n,
                 in->d);
    } else if (o->data) {
        if (gmf_io_read_csv(o->data, &in->n, &in->d, &in->X, &in->yv))
            return fail("--data: %s", gmf_errmsg());
        snprintf(in->data_desc, sizeof in->data_desc, "%s (n = %zu, d = %zu)", o->data, in->n,
                 in->d);
    } else {
        if (gmf_toy_make(&o->toy, &in->X, &in->yv)) return fail("%s", gmf_errmsg());
        in->n = o->toy.n, in->d = o->toy.d;
        snprintf(in->data_desc, sizeof in->data_desc,
                 "toy, %s teacher (width %zu, noise %g, seed %lu), n = %zu, d = %zu",
                 o->toy.teacher == GMF_TOY_MIXTURE ? "mixture" : "relu", o->toy.width, o->toy.noise,
                 o->toy.seed, in->n, in->d);
    }
    in->D = in->d + 1;
    if (!in->npy) gmf_par_block(in->n, in->rank, in->P, &in->i0, &in->nloc);
    return 0;
}

/* in->ybw (and in->yeu when the file has C) from --init, with K and the start time. */
static int read_init(const options *o, inputs *in) {
    gmf_io_state s = {0};
    if (gmf_io_read_state(o->init, &s)) return fail("--init: %s", gmf_errmsg());
    int rc = 1;
    in->init_form = s.euclid ? "euclid" : "bw";
    if (s.d != in->d) {
        fail("--init: %s: the state has d = %zu (D = %zu) but the data %s has d = %zu", o->init,
             s.d, s.D, o->data ? o->data : "(built-in toy, --d)", in->d);
    } else if (o->K_set && o->K != s.K) {
        fail("-K %zu conflicts with K = %zu in --init %s (with --init, K comes from the file)",
             o->K, s.K, o->init);
    } else {
        const size_t K = in->K = s.K, D = in->D, N = K * (D + D * D);
        in->t0_file = s.t;
        in->t0 = gmf_flow_time_convert(s.t, s.euclid ? GMF_FLOW_EUCLID : GMF_FLOW_BW, o->form, K);
        in->ybw = gmf_calloc(N, sizeof(double), "initial state");
        in->yeu = s.C ? gmf_calloc(N, sizeof(double), "initial state") : NULL;
        if (!in->ybw || (s.C && !in->yeu)) {
            fail("%s", gmf_errmsg());
        } else {
            memcpy(in->ybw, s.mu, K * D * sizeof(double));
            memcpy(in->ybw + gmf_flow_mat_offset(K, D, 0), s.Sigma, K * D * D * sizeof(double));
            if (s.C) {
                memcpy(in->yeu, s.mu, K * D * sizeof(double));
                memcpy(in->yeu + gmf_flow_mat_offset(K, D, 0), s.C, K * D * D * sizeof(double));
            }
            in->w = s.w, s.w = NULL;
            rc = 0;
            for (size_t k = 0; in->w && !o->wfr && k < K && !rc; k++)
                if (fabs(in->w[k] - 1.0 / (double)K) > 1e-12)
                    rc = fail("--init: %s has learned weights (w[%zu] = %g, not 1/K): continue it "
                              "with --geometry wfr",
                              o->init, k, in->w[k]);
        }
    }
    gmf_io_state_free(&s);
    return rc;
}

/* The random initial mixture of the paper: both forms. */
static int random_init(const options *o, inputs *in) {
    const size_t K = in->K = o->K, D = in->D, N = K * (D + D * D);
    in->ybw = gmf_calloc(N, sizeof(double), "initial state");
    in->yeu = gmf_calloc(N, sizeof(double), "initial state");
    if (!in->ybw || !in->yeu) return fail("%s", gmf_errmsg());
    if (gmf_toy_init_mixture(K, D, o->gamma, o->seed, in->ybw,
                             in->yeu + gmf_flow_mat_offset(K, D, 0),
                             in->ybw + gmf_flow_mat_offset(K, D, 0)))
        return fail("%s", gmf_errmsg());
    memcpy(in->yeu, in->ybw, K * D * sizeof(double));
    return 0;
}

/* The initial state in both forms as needed, validated. */
static int load_init(const options *o, inputs *in) {
    if (o->init)
        snprintf(in->src, sizeof in->src, "--init: %s", o->init);
    else
        snprintf(in->src, sizeof in->src, "random initial mixture (--gamma %g, --seed %lu)",
                 o->gamma, o->seed);
    if (o->init ? read_init(o, in) : random_init(o, in)) return 1;
    const size_t K = in->K, D = in->D;
    if (gmf_flow_check_state(GMF_FLOW_BW, K, D, in->ybw))
        return fail("%s: invalid initial state: %s", in->src, gmf_errmsg());
    if ((o->form == GMF_FLOW_EUCLID || o->check) && !in->yeu) {
        in->yeu = gmf_calloc(K * (D + D * D), sizeof(double), "initial state");
        if (!in->yeu) return fail("%s", gmf_errmsg());
        if (gmf_flow_bw_to_euclid(K, D, in->ybw, in->yeu))
            return fail("%s: %s, so it has no Cholesky factor C for --form euclid; use --form bw",
                        in->src, gmf_errmsg());
    }
    if (o->form == GMF_FLOW_EUCLID && gmf_flow_check_state(GMF_FLOW_EUCLID, K, D, in->yeu))
        return fail("%s: invalid initial state: %s", in->src, gmf_errmsg());
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* integration                                                                                 */

typedef struct progress {
    int quiet;
    const char *label;
} progress;

static void print_progress(const gmf_traj *tr, size_t j, void *user) {
    const progress *p = user;
    if (p->quiet) return;
    const size_t T = gmf_traj_T(tr);
    fprintf(stderr, "%s[%*zu/%zu] t = %-12.6g loss = %.10e  rhs = %ld  %.2f s\n", p->label,
            T >= 100 ? 3 : 2, j + 1, T, gmf_traj_t(tr)[j], gmf_traj_loss(tr)[j],
            gmf_traj_nrhs(tr)[j], gmf_traj_wall(tr)[j]);
}

/* Between output times, about every second: where the integration is. */
static void print_step_progress(const gmf_ode_progress_info *i, void *user) {
    const progress *p = user;
    fprintf(stderr,
            "%s  ... t = %-12.6g loss = %.10e  steps = %ld  rhs = %ld  h = %.3g  %s  %.1f s\n",
            p->label, i->t, i->scalar, i->nsteps, i->nfevals, i->h, gmf_ode_method_name(i->method),
            i->wall);
}

/* Integrate one form from y0 over tout into a new trajectory, with the events ev (NULL: none).
 * 0 or 1 (message printed). */
static int integrate(gmf_flow_kind kind, const inputs *in, gmf_oracle oracle, const double *y0,
                     const double *tout, const options *o, const char *label, gmf_events *ev,
                     gmf_traj **tr, gmf_ode_stats *st) {
    if (gmf_traj_new(tr, kind, o->n_out, in->K, in->D)) return fail("%s", gmf_errmsg());
    if (kind == GMF_FLOW_WFR_BW && gmf_traj_set_alpha(*tr, o->fr_weight))
        return fail("%s", gmf_errmsg());
    progress p = {o->quiet, label};
    gmf_traj_set_progress(*tr, print_progress, &p);
    gmf_ode_opts ode = o->ode;
    if (!o->quiet) ode.progress = print_step_progress, ode.progress_user = &p;
    ode.progress_seconds = o->quiet ? 0.0 : 1.0;
    if (ev) gmf_events_attach(ev, &ode);
    if (gmf_traj_integrate(*tr, oracle, y0, tout, st, &ode)) {
        fail("%s", gmf_errmsg());
        if (strstr(gmf_errmsg(), "no progress"))
            fprintf(stderr,
                    CMD ": options for this: --collapse RATIO (stop cleanly at a component "
                        "collapse), --stop-grad TOL, --t-end (stop before), --stall-seconds/"
                        "--stall-steps (the detector), --method, --rtol\n");
        return 1;
    }
    return 0;
}

/* Checks before integrating, blaming the option or the file at fault. */
static int check_start(const options *o, const inputs *in, gmf_oracle oracle, const double *y0,
                       const double *tout) {
    gmf_traj_start_issue issue;
    if (!gmf_traj_check_start(o->wfr ? GMF_FLOW_WFR_BW : o->form, in->K, oracle, y0, tout, o->n_out,
                              &o->ode, &issue))
        return 0;
    if (issue == GMF_TRAJ_START_TIMES)
        return bad_value("--t-end %g: %s; use a shorter --t-end, a larger --n-out or --method "
                         "rk8pd",
                         o->t_end, gmf_errmsg());
    if (issue == GMF_TRAJ_START_TOLERANCE) return bad_value("--rtol/--atol: %s", gmf_errmsg());
    return fail("%s: %s", in->src, gmf_errmsg());
}

/* Theorem 1: the other form from the same initial state over the matching times. */
static int check_thm1(const options *o, const inputs *in, gmf_oracle oracle, const double *tout,
                      const gmf_traj *tr, gmf_flowio_run *run) {
    const size_t K = in->K, D = in->D, T = o->n_out;
    gmf_flow_kind other = o->form == GMF_FLOW_BW ? GMF_FLOW_EUCLID : GMF_FLOW_BW;
    double *y0c = gmf_calloc(K * (D + D * D), sizeof(double), "Theorem 1 state");
    double *toutc = gmf_calloc(T, sizeof(double), "Theorem 1 output times");
    gmf_traj *trc = NULL;
    int rc = 1;
    if (!y0c || !toutc) {
        fail("%s", gmf_errmsg());
        goto done;
    }
    if (other == GMF_FLOW_EUCLID) /* the run's own C (Cholesky or the file's) */
        memcpy(y0c, in->yeu, K * (D + D * D) * sizeof(double));
    else /* Sigma = C C^T of the run's own C */
        gmf_flow_euclid_to_bw(K, D, in->yeu, y0c);
    for (size_t j = 0; j < T; j++)
        toutc[j] = gmf_flow_time_convert(tout[j], o->form, other, K);
    const char *lab = other == GMF_FLOW_EUCLID ? "thm1 euclid " : "thm1 bw ";
    if (integrate(other, in, oracle, y0c, toutc, o, lab, NULL, &trc, &run->check_stats)) goto done;
    if (gmf_traj_thm1_distance(tr, trc, &run->err_sigma, &run->err_mu)) {
        fail("%s", gmf_errmsg());
        goto done;
    }
    run->checked = 1;
    run->tol = THM1_TOL;
    run->pass = run->err_sigma <= THM1_TOL && run->err_mu <= THM1_TOL;
    run->check_wall = gmf_traj_elapsed(trc);
    rc = 0;
done:
    gmf_traj_free(trc);
    free(y0c), free(toutc);
    return rc;
}

/* --polish's result, reported after the summary. */
typedef struct polished {
    int done;
    gmf_stationary_result res;
    gmf_stationary_spectrum sp;
} polished;

/* --polish: Newton polish of the final state (library: gmf_stationary_polish); spectrum.csv is
 * written into the output set's staging directory.  0 or 1 (message printed). */
static int polish_run(const gmf_outset *set, gmf_oracle oracle, const gmf_traj *tr, polished *p) {
    const size_t K = gmf_traj_K(tr), D = gmf_traj_D(tr), N = K * (D + D * D);
    const size_t last = gmf_traj_done(tr) - 1;
    const int euclid = gmf_traj_kind(tr) == GMF_FLOW_EUCLID;
    double *y = gmf_calloc(2 * N, sizeof(double), "the polish");
    if (!y) return fail("%s", gmf_errmsg());
    double *yc = y + N;
    memcpy(y, gmf_traj_mu(tr) + last * K * D, K * D * sizeof(double));
    memcpy(y + gmf_flow_mat_offset(K, D, 0),
           (euclid ? gmf_traj_C(tr) : gmf_traj_Sigma(tr)) + last * K * D * D,
           K * D * D * sizeof(double));
    char path[4200];
    int rc = gmf_stationary_polish(oracle, K, gmf_traj_kind(tr), y, NULL, yc, &p->res, &p->sp);
    free(y);
    if (rc) return fail("--polish failed: %s", gmf_errmsg());
    p->done = 1;
    rc = gmf_outset_path(set, "spectrum.csv", path, sizeof path);
    if (!rc) rc = gmf_stationary_spectrum_write(path, &p->sp);
    if (rc) return fail("%s", gmf_errmsg());
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* report                                                                                      */

static void polish_report(const char *dir, const polished *p) {
    const gmf_stationary_result *res = &p->res;
    const gmf_stationary_spectrum *sp = &p->sp;
    printf("  polish    %d Newton steps, |grad l| %.3e -> %.3e (relative %.3e), loss %.10e\n",
           res->iters, res->grad0, res->grad, res->grad_rel, res->loss);
    if (!res->converged)
        printf("            NOT converged: no stationary point near the final state (integrate "
               "longer, or it may lie at a collapse)\n");
    printf("            Hessian eigenvalues %.3e .. %.3e; %zu gauge directions removed; index %zu "
           "(%zu zero within %.1e) -> %s\n",
           sp->hess[0], sp->hess[sp->N - 1], sp->ngauge, sp->index, sp->nzero, sp->tol,
           !res->converged ? "not a stationary point"
           : sp->index     ? "saddle"
                           : "minimum");
    printf("            spectrum  %s/spectrum.csv\n", dir);
}

static void summary(const options *o, const inputs *in, const gmf_traj *tr,
                    const gmf_flowio_run *r) {
    const size_t T = gmf_traj_done(tr);
    const double *t = gmf_traj_t(tr), *loss = gmf_traj_loss(tr);
    const gmf_ode_stats *st = &r->stats;
    printf(CMD ": %s\n", o->form == GMF_FLOW_EUCLID
                             ? "euclid (Theorem 1: Euclidean flow over (mu, C))"
                             : "bw (Theorems 3/4: Bures-Wasserstein flow over (mu, Sigma))");
    printf("  data      %s\n", in->data_desc);
    if (o->init)
        printf("  init      %s (form %s, t = %g), K = %zu, D = %zu\n", o->init, in->init_form,
               in->t0_file, in->K, in->D);
    else
        printf("  init      random (gamma %g, seed %lu), K = %zu, D = %zu\n", o->gamma, o->seed,
               in->K, in->D);
    printf("  solver    %s%s%s, rtol %g, atol %g, max steps %ld%s\n",
           gmf_ode_method_name(o->ode.method), o->ode.gsl_norm == GMF_ODE_NORM_RMS ? " (norm " : "",
           o->ode.gsl_norm == GMF_ODE_NORM_RMS ? "rms)" : "", o->ode.rtol, o->ode.atol,
           o->ode.max_steps, o->tightened ? " (tightened for --check-thm1)" : "");
    printf("  loss      %.10e at t = %g  ->  %.10e at t = %g\n", loss[0], t[0], loss[T - 1],
           t[T - 1]);
    printf("  stats     %ld steps, %ld RHS evaluations, %ld error-test failures, %ld nonlinear "
           "iterations (%ld convergence failures)",
           st->nsteps, st->nfevals, st->netfails, st->nniters, st->nncfails);
    if (st->method_last == GMF_ODE_CVODE_BDF)
        printf(", %ld linear iterations, jacobian %s (%ld dense, %ld JVPs)", st->nliters,
               gmf_ode_jacobian_name(st->jacobian), st->njevals, st->njvevals);
    printf(", %.3f s\n", r->wall);
    for (int i = 0; i < st->nswitch && i < GMF_ODE_MAX_SWITCH; i++)
        printf("  auto      switched adams -> bdf at t = %.10g (stiffness detected)\n",
               st->t_switch[i]);
    const gmf_events *e = r->events;
    const size_t nev = gmf_events_count(e), ndropped = gmf_events_ndropped(e);
    for (size_t j = 0; j < nev; j++) {
        char desc[512];
        gmf_events_describe(e, gmf_events_get(e, j), desc, sizeof desc);
        if (j < GMF_FLOWIO_MAX_EVENT_FILES)
            printf("  event %-3zu %s; state in %s/event_%zu_state.json\n", j + 1, desc, o->out,
                   j + 1);
        else
            printf("  event %-3zu %s\n", j + 1, desc);
    }
    if (ndropped) printf("  events    %zu more not recorded\n", ndropped);
    if (st->stopped && nev)
        printf("  stopped   at event %zu (t = %.10g); state.json holds the state there\n", nev,
               gmf_events_get(e, nev - 1)->t);
    if (r->checked) {
        printf("  thm1      %s form, %ld steps, %.3f s; max over %zu times of\n",
               o->form == GMF_FLOW_BW ? "euclid" : "bw", r->check_stats.nsteps, r->check_wall, T);
        printf("            ||Sigma_k(t) - C_k(Kt) C_k(Kt)^T||_F / ||Sigma_k(t)||_F = %.3e\n",
               r->err_sigma);
        printf("            ||mu(t) - mu_euclid(Kt)|| / ||mu(t)||                   = %.3e\n",
               r->err_mu);
        printf("            %s (tolerance %g)\n", r->pass ? "PASS" : "FAIL", THM1_TOL);
    }
    if (o->wfr) {
        const double *w = gmf_traj_w(tr) + (gmf_traj_done(tr) - 1) * in->K;
        double wmin = w[0], wmax = w[0];
        for (size_t k = 1; k < in->K; k++)
            wmin = fmin(wmin, w[k]), wmax = fmax(wmax, w[k]);
        printf("  geometry  wfr (Fisher-Rao weight %g): final weights in [%.4g, %.4g]\n",
               o->fr_weight, wmin, wmax);
    }
    printf("  output    %s/{trajectory.csv, t.npy, mu.npy, Sigma.npy%s, state.json, run.json}\n",
           o->out,
           o->form == GMF_FLOW_EUCLID ? ", C.npy"
           : o->wfr                   ? ", w.npy"
                                      : "");
    fflush(stdout);
}

static gmf_flowio_run run_record(int argc, char **argv, const options *o, const inputs *in) {
    gmf_flowio_run r = {.version = GMF_VERSION_STRING,
                        .argc = argc,
                        .argv = argv,
                        .data_path = o->data,
                        .toy = o->toy,
                        .n = in->n,
                        .init_path = o->init,
                        .init_form = in->init_form,
                        .init_t = in->t0_file,
                        .gamma = o->gamma,
                        .seed = o->seed,
                        .ode = o->ode,
                        .tightened = o->tightened,
                        .t0 = in->t0,
                        .t_end = o->t_end,
                        .fr_weight = o->fr_weight};
    return r;
}

/* ------------------------------------------------------------------------------------------ */
/* the command                                                                                 */

/* The output times: --t-out, --log-times or the even grid of --t-end/--n-out.  Sets o->n_out
 * and o->t_end to what they give.  0, or the exit status (message printed). */
static int output_times(options *o, const inputs *in, double **tout) {
    double *off = NULL;
    size_t n = 0;
    if (o->t_out) {
        if (gmf_ode_parse_times(o->t_out, &off, &n)) return bad_value("--t-out: %s", gmf_errmsg());
        const size_t skip = off[0] == 0.0; /* t = 0 is always the first output */
        o->n_out = n + 1 - skip, o->t_end = off[n - 1];
        *tout = gmf_calloc(o->n_out, sizeof(double), "output times");
        if (*tout) {
            (*tout)[0] = in->t0;
            for (size_t i = skip; i < n; i++)
                (*tout)[i + 1 - skip] = in->t0 + off[i];
        }
        free(off);
        if (!*tout) return fail("%s", gmf_errmsg());
        for (size_t j = 1; j < o->n_out; j++)
            if (!((*tout)[j] > (*tout)[j - 1]))
                return bad_value("--t-out: times %g and %g are too close to tell apart after t0 = "
                                 "%g",
                                 (*tout)[j - 1] - in->t0, (*tout)[j] - in->t0, in->t0);
        return 0;
    }
    if (o->log_times) o->n_out = o->log_times + 1;
    *tout = gmf_calloc(o->n_out, sizeof(double), "output times");
    if (!*tout) return fail("%s", gmf_errmsg());
    if (o->log_times) {
        const double first = o->t_first > 0 ? o->t_first : 1e-6 * o->t_end;
        if (gmf_ode_log_times(in->t0, first, o->t_end, o->log_times, *tout))
            return bad_value("--log-times %zu, --t-first %g, --t-end %g: %s", o->log_times, first,
                             o->t_end, gmf_errmsg());
        return 0;
    }
    if (gmf_traj_time_grid(in->t0, o->t_end, o->n_out, *tout))
        return bad_value("--t-end %g, --n-out %zu: %s", o->t_end, o->n_out, gmf_errmsg());
    return 0;
}

/* The WFR initial state [w | mu | Sigma]: the --init file's weights, else 1/K; NULL (message
 * printed) on failure. */
static double *wfr_state(const inputs *in) {
    const size_t K = in->K, D = in->D, N = K * (D + D * D);
    double *y = gmf_calloc(K + N, sizeof(double), "initial state");
    if (!y) {
        fail("%s", gmf_errmsg());
        return NULL;
    }
    for (size_t k = 0; k < K; k++)
        y[k] = in->w ? in->w[k] : 1.0 / (double)K;
    memcpy(y + K, in->ybw, N * sizeof(double));
    if (gmf_flow_check_state(GMF_FLOW_WFR_BW, K, D, y)) {
        fail("%s: invalid initial state: %s", in->src, gmf_errmsg());
        free(y);
        return NULL;
    }
    return y;
}

/* Everything after the inputs: integrate, check, write, report.  The exit status. */
static int run_flow(int argc, char **argv, options *o, const inputs *in, double t_start) {
    gmf_sqloss *sq = NULL;
    gmf_outset *set = NULL;
    gmf_traj *tr = NULL;
    polished pol = {0};
    int polish_failed = 0;
    gmf_events *ev = NULL;
    double *tout = NULL, *y0w = NULL;
    int status = output_times(o, in, &tout);
    if (status) goto done;
    status = 1;
    int bad = in->rank == 0 && gmf_outset_new(&set, o->out, gmf_flowio_names); /* rank 0 writes */
    if (bad) fail("--out %s: %s", o->out, gmf_errmsg());
    if (gmf_par_any(bad)) goto done;
    const size_t off = in->npy ? 0 : in->i0; /* a CSV is read whole by every rank */
    if (in->P > 1 ? gmf_sqloss_shard(&sq, in->nloc, in->n, in->d, in->X + off * in->d, in->yv + off)
                  : gmf_sqloss_borrow(&sq, in->n, in->d, in->X, in->yv)) {
        fail("%s", gmf_errmsg());
        goto done;
    }
    gmf_oracle oracle = gmf_sqloss_oracle(sq);
    const double *y0 = o->form == GMF_FLOW_EUCLID ? in->yeu : in->ybw;
    if (o->wfr && !(y0 = y0w = wfr_state(in))) goto done;
    if ((status = check_start(o, in, oracle, y0, tout)) != 0) goto done;
    status = 1;
    if (!o->quiet)
        fprintf(stderr, CMD ": %s, K = %zu, D = %zu, %s, t in [%g, %g]\n",
                o->form == GMF_FLOW_EUCLID ? "euclid" : "bw", in->K, in->D,
                gmf_ode_method_name(o->ode.method), in->t0, in->t0 + o->t_end);
    gmf_flowio_run r = run_record(argc, argv, o, in);
    r.ranks = in->P;
    if (!o->wfr && gmf_events_new(&ev, o->form, in->K, oracle, &o->ev)) {
        fail("%s", gmf_errmsg());
        goto done;
    }
    r.events = ev; /* NULL for WFR runs: they have no events (docs/WFR.md) */
    if (integrate(o->wfr ? GMF_FLOW_WFR_BW : o->form, in, oracle, y0, tout, o, "", ev, &tr,
                  &r.stats))
        goto done;
    r.wall = gmf_traj_elapsed(tr);
    if (o->check && check_thm1(o, in, oracle, tout, tr, &r)) goto done;
    r.wall_total = now() - t_start;
    if (in->rank) { /* the others computed the same; rank 0 writes and reports */
        status = r.checked && !r.pass;
        goto done;
    }
    if (o->polish) polish_failed = polish_run(set, oracle, tr, &pol);
    if (gmf_flowio_write_set(set, tr, &r)) {
        fail("--out %s: %s (the previous contents of %s are unchanged)", o->out, gmf_errmsg(),
             o->out);
        goto done;
    }
    summary(o, in, tr, &r);
    if (pol.done) polish_report(o->out, &pol);
    fflush(stdout);
    if (polish_failed) goto done;
    if (r.checked && !r.pass) {
        fail("Theorem 1 check FAILED: relative differences %.3e (Sigma), %.3e (mu) exceed %g",
             r.err_sigma, r.err_mu, THM1_TOL);
        goto done;
    }
    status = 0;
done:
    if (pol.done) gmf_stationary_spectrum_free(&pol.sp);
    gmf_events_free(ev);
    gmf_traj_free(tr);
    gmf_sqloss_free(sq);
    gmf_outset_free(set);
    free(tout);
    free(y0w);
    return status;
}

int gmf_cli_flow(int argc, char **argv) {
    double t_start = now();
    options o;
    int status = parse_options(argc, argv, &o);
    if (status >= 0) return status;
    /* MPI (docs/SCALE.md): samples sharded over the ranks, the state replicated; only rank 0
     * prints and writes; an error on any rank stops every rank (gmf_par_any after each step
     * that can fail on one rank alone). */
    inputs in;
    memset(&in, 0, sizeof in);
    in.init_form = "";
    in.rank = gmf_par_rank(), in.P = gmf_par_size();
    if (in.P > 1 && o.polish)
        return usage_error("--polish needs the exact Jacobian: serial runs only");
    if (in.P > 1 && o.ode.method == GMF_ODE_CVODE_BDF) { /* the sharded oracle has no JVP */
        if (o.ode.jacobian == GMF_ODE_JAC_JVP || o.ode.jacobian == GMF_ODE_JAC_DENSE)
            return usage_error("--jacobian %s needs exact JVPs: serial runs only (use dq)",
                               gmf_ode_jacobian_name(o.ode.jacobian));
        o.ode.jacobian = GMF_ODE_JAC_DQ;
    }
    if (in.rank) o.quiet = 1;
    /* wall-time tests would differ between ranks and split their decisions: step-count only */
    if (in.P > 1) o.ode.stall_seconds = 0;
    const int bad = load_data(&o, &in);
    if (gmf_par_any(bad)) {
        if (!bad) fail("stopping: another rank failed to read the data (its message above)");
        status = 1;
    } else
        status = load_init(&o, &in) ? 1 : run_flow(argc, argv, &o, &in, t_start);
    inputs_free(&in);
    return status;
}
