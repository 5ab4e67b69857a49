/* cli_flow.c -- `gmflow flow`: integrate the exact Gaussian-mixture gradient flow of the squared
 * loss (Theorems 3/4 in the Sigma form, Theorem 1 in the (mu, C) form) on a CSV data set or a
 * built-in regression toy, and write the trajectory (docs/FORMATS.md).
 *
 * Pipeline: parse and validate options -> load data -> initial mixture (random or --init) ->
 * integrate with an observer that records every output time -> (optionally) integrate the other
 * form and compare (Theorem 1) -> write all files atomically -> summary on stdout.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <lapacke.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "gmflow/common.h"
#include "gmflow/flow.h"
#include "gmflow/io.h"
#include "gmflow/ode.h"
#include "gmflow/par.h"
#include "gmflow/sqloss.h"
#include "gmflow/stationary.h"
#include "gmflow/toy.h"

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
        "  --t-end T            integrate over [t0, t0 + T], t0 = the initial state's time\n"
        "                       (default %g)\n"
        "  --n-out N            number of output times, evenly spaced, both ends included\n"
        "                       (default %d)\n"
        "\n"
        "Solver:\n"
        "  --method NAME        adams (CVODE Adams-Moulton), bdf (CVODE BDF + matrix-free GMRES),\n"
        "                       rk8pd, rkf45 (GSL Runge-Kutta) (default %s)\n"
        "  --rtol R             relative tolerance, > 0 (default %g)\n"
        "  --atol A             absolute tolerance, >= 0 (default %g)\n"
        "  --max-steps N        internal steps allowed per output interval (default %ld)\n"
        "  --jacobian NAME      bdf's linear solver: auto (dense exact Jacobian for N <= 400,\n"
        "                       else exact JVPs), dq (GMRES, difference quotients), jvp (GMRES,\n"
        "                       exact JVPs), dense (dense LU, exact Jacobian) (default auto;\n"
        "                       under mpirun only dq, which auto then selects)\n"
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
        "                       saddle, and write DIR/spectrum.csv\n"
        "  --out DIR            output directory, created if needed (default %s)\n"
        "  -q, --quiet          no progress lines on stderr\n"
        "  -h, --help           this help\n"
        "\n"
        "Files written to DIR (each atomically, only after the integration succeeded; formats in\n"
        "docs/FORMATS.md; T = n-out):\n"
        "  trajectory.csv       t, loss, wall_s (seconds since the start), nrhs (cumulative\n"
        "                       right-hand side evaluations) per output time\n"
        "  t.npy                (T,)           output times\n"
        "  mu.npy               (T, K, D)      means\n"
        "  Sigma.npy            (T, K, D, D)   covariances (euclid: C C^T)\n"
        "  C.npy                (T, K, D, D)   square roots (euclid only)\n"
        "  state.json           the final state (usable with --init)\n"
        "  run.json             options, data source, sizes, solver statistics, losses, timing\n"
        "\n"
        "Exit status: 0 success, 1 failure (bad input, solver failure, Theorem 1 check FAIL),\n"
        "2 usage error.\n",
        t.n, t.d, t.width, t.noise, t.seed, DEFAULT_K, DEFAULT_GAMMA, DEFAULT_SEED, DEFAULT_T_END,
        DEFAULT_N_OUT, gmf_ode_method_name(o.method), o.rtol, o.atol, o.max_steps, THM1_TOL,
        THM1_RTOL, THM1_ATOL, DEFAULT_OUT_DIR);
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
    int polish;
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
    O_JACOBIAN,
    O_POLISH
};

static const struct option long_opts[] = {{"data", required_argument, NULL, O_DATA},
                                          {"n", required_argument, NULL, O_N},
                                          {"d", required_argument, NULL, O_D},
                                          {"teacher", required_argument, NULL, O_TEACHER},
                                          {"width", required_argument, NULL, O_WIDTH},
                                          {"noise", required_argument, NULL, O_NOISE},
                                          {"data-seed", required_argument, NULL, O_DATA_SEED},
                                          {"components", required_argument, NULL, 'K'},
                                          {"K", required_argument, NULL, 'K'},
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
                                          {"jacobian", required_argument, NULL, O_JACOBIAN},
                                          {"polish", no_argument, NULL, O_POLISH},
                                          {"quiet", no_argument, NULL, 'q'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};

/* Returns -1 to go on, else the exit status (0 for --help). */
static int parse_options(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    o->toy = gmf_toy_defaults();
    o->K = DEFAULT_K;
    o->gamma = DEFAULT_GAMMA;
    o->seed = DEFAULT_SEED;
    o->form = GMF_FLOW_BW;
    o->ode = gmf_ode_defaults();
    o->ode.jvp = gmf_flow_ode_jvp; /* exact Jacobian information for bdf (--jacobian) */
    o->ode.jac = gmf_flow_ode_jac;
    o->t_end = DEFAULT_T_END;
    o->n_out = DEFAULT_N_OUT;
    o->out = DEFAULT_OUT_DIR;

    optind = 1;
    opterr = 0;
    int c;
    unsigned long long u;
    const unsigned long long big = (unsigned long long)1 << 40;
    while ((c = getopt_long(argc, argv, ":K:qh", long_opts, NULL)) != -1) {
        const char *name = c == 'K' ? "-K/--components" : NULL;
        for (const struct option *lo = long_opts; !name && lo->name; lo++)
            if (lo->val == c) name = lo->name;
        char optname[64];
        snprintf(optname, sizeof optname, "%s%s", c == 'K' ? "" : "--", name ? name : "?");
        const char *on = optname;
        if (c >= O_N && c <= O_DATA_SEED && !o->toy_opt) o->toy_opt = long_opts[c - O_DATA].name;
        if ((c == O_GAMMA || c == O_SEED) && !o->rand_opt)
            o->rand_opt = c == O_GAMMA ? "--gamma" : "--seed";
        switch (c) {
        case 'h':
            help(stdout);
            return 0;
        case 'q':
            o->quiet = 1;
            break;
        case O_DATA:
            o->data = optarg;
            break;
        case O_N:
            if (parse_count(on, optarg, 1, big, &u)) return 1;
            o->toy.n = (size_t)u;
            break;
        case O_D:
            if (parse_count(on, optarg, 1, 100000, &u)) return 1;
            o->toy.d = (size_t)u;
            break;
        case O_TEACHER:
            if (!strcmp(optarg, "relu"))
                o->toy.teacher = GMF_TOY_RELU;
            else if (!strcmp(optarg, "mixture"))
                o->toy.teacher = GMF_TOY_MIXTURE;
            else
                return fail("--teacher: unknown teacher '%s' (choose relu or mixture)", optarg);
            break;
        case O_WIDTH:
            if (parse_count(on, optarg, 1, 1000000, &u)) return 1;
            o->toy.width = (size_t)u;
            break;
        case O_NOISE:
            if (parse_double(on, optarg, &o->toy.noise)) return 1;
            if (o->toy.noise < 0) return fail("--noise: must be >= 0 (got %s)", optarg);
            break;
        case O_DATA_SEED:
            if (parse_count(on, optarg, 0, 0xffffffffULL, &u)) return 1;
            o->toy.seed = (unsigned long)u;
            break;
        case 'K':
            if (parse_count(on, optarg, 1, 1000000, &u)) return 1;
            o->K = (size_t)u, o->K_set = 1;
            break;
        case O_GAMMA:
            if (parse_double(on, optarg, &o->gamma)) return 1;
            if (!(o->gamma > 0)) return fail("--gamma: must be > 0 (got %s)", optarg);
            break;
        case O_SEED:
            if (parse_count(on, optarg, 0, 0xffffffffULL, &u)) return 1;
            o->seed = (unsigned long)u;
            break;
        case O_INIT:
            o->init = optarg;
            break;
        case O_FORM:
            if (!strcmp(optarg, "bw"))
                o->form = GMF_FLOW_BW;
            else if (!strcmp(optarg, "euclid"))
                o->form = GMF_FLOW_EUCLID;
            else
                return fail("--form: unknown form '%s' (choose bw or euclid)", optarg);
            break;
        case O_METHOD: {
            int m = gmf_ode_method_parse(optarg);
            if (m < 0)
                return fail("--method: unknown method '%s' (choose adams, bdf, rk8pd or rkf45)",
                            optarg);
            o->ode.method = (gmf_ode_method)m;
            break;
        }
        case O_RTOL:
            if (parse_double(on, optarg, &o->ode.rtol)) return 1;
            if (!(o->ode.rtol > 0)) return fail("--rtol: must be > 0 (got %s)", optarg);
            o->rtol_set = 1;
            break;
        case O_ATOL:
            if (parse_double(on, optarg, &o->ode.atol)) return 1;
            if (!(o->ode.atol >= 0)) return fail("--atol: must be >= 0 (got %s)", optarg);
            o->atol_set = 1;
            break;
        case O_MAX_STEPS:
            if (parse_count(on, optarg, 1, 0x7fffffffULL, &u)) return 1;
            o->ode.max_steps = (long)u;
            break;
        case O_T_END:
            if (parse_double(on, optarg, &o->t_end)) return 1;
            if (!(o->t_end > 0)) return fail("--t-end: must be > 0 (got %s)", optarg);
            break;
        case O_N_OUT:
            if (parse_count(on, optarg, 2, 10000000, &u)) return 1;
            o->n_out = (size_t)u;
            break;
        case O_OUT:
            if (!*optarg) return fail("--out: empty directory name");
            o->out = optarg;
            break;
        case O_CHECK:
            o->check = 1;
            break;
        case O_JACOBIAN:
            if ((o->ode.jacobian = gmf_ode_jacobian_parse(optarg)) < 0)
                return fail("--jacobian: unknown choice '%s' (choose auto, dq, jvp or dense)",
                            optarg);
            break;
        case O_POLISH:
            o->polish = 1;
            break;
        case ':':
            return usage_error("option '%s' needs a value", argv[optind - 1]);
        case '?':
        default:
            if (optopt && optopt != '?') return usage_error("unknown option '-%c'", optopt);
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
    if (o->data && o->toy_opt)
        return usage_error("--%s sets the built-in toy data; it cannot be combined with --data",
                           o->toy_opt);
    if (o->init && o->rand_opt)
        return usage_error("%s sets the random initial mixture; it cannot be combined with --init",
                           o->rand_opt);
    if (o->check && !o->rtol_set && !o->atol_set) {
        o->ode.rtol = THM1_RTOL, o->ode.atol = THM1_ATOL;
        o->tightened = 1;
    }
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* helpers                                                                                     */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* mkdir -p; 0 or an error message printed, 1. */
/* Lower Cholesky factor of each Sigma_k into C (row-major, upper part zeroed). */
static int cholesky_all(size_t K, size_t D, const double *Sigma, double *C, const char *src) {
    for (size_t k = 0; k < K; k++) {
        double *L = C + k * D * D;
        memcpy(L, Sigma + k * D * D, D * D * sizeof(double));
        lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)D, L, (lapack_int)D);
        if (info != 0)
            return fail("%s: Sigma of component %zu is not positive definite (Cholesky failed at "
                        "leading minor %d), so it has no Cholesky factor C for --form euclid; "
                        "use --form bw",
                        src, k, (int)info);
        for (size_t i = 0; i < D; i++)
            for (size_t j = i + 1; j < D; j++)
                L[i * D + j] = 0.0;
    }
    return 0;
}

/* Everything recorded at the output times of one integration. */
typedef struct traj {
    size_t T, K, D;
    int euclid;
    double *t, *loss, *wall; /* T */
    long *nrhs;              /* T */
    double *mu;              /* T x K x D */
    double *Sigma;           /* T x K x D x D */
    double *C;               /* T x K x D x D (euclid) */
    double *scratch;         /* K (D + D^2) */
    gmf_flow *flow;
    double start;
    size_t done; /* output times recorded */
    int quiet;
    const char *label;
    int rc; /* observer failure */
    char msg[1024];
} traj;

static void traj_free(traj *tr) {
    free(tr->t), free(tr->loss), free(tr->wall), free(tr->nrhs);
    free(tr->mu), free(tr->Sigma), free(tr->C), free(tr->scratch);
    memset(tr, 0, sizeof *tr);
}

static int traj_alloc(traj *tr, size_t T, size_t K, size_t D, int euclid) {
    memset(tr, 0, sizeof *tr);
    tr->T = T, tr->K = K, tr->D = D, tr->euclid = euclid;
    tr->t = calloc(T, sizeof(double));
    tr->loss = calloc(T, sizeof(double));
    tr->wall = calloc(T, sizeof(double));
    tr->nrhs = calloc(T, sizeof(long));
    tr->mu = calloc(T * K * D, sizeof(double));
    tr->Sigma = calloc(T * K * D * D, sizeof(double));
    if (euclid) tr->C = calloc(T * K * D * D, sizeof(double));
    tr->scratch = calloc(K * (D + D * D), sizeof(double));
    if (!tr->t || !tr->loss || !tr->wall || !tr->nrhs || !tr->mu || !tr->Sigma ||
        (euclid && !tr->C) || !tr->scratch) {
        traj_free(tr);
        return fail("out of memory for the trajectory (%zu output times, K = %zu, D = %zu)", T, K,
                    D);
    }
    return 0;
}

static int observe(size_t j, double t, const double *y, void *user) {
    traj *tr = user;
    const size_t K = tr->K, D = tr->D;
    tr->t[j] = t;
    tr->wall[j] = now() - tr->start;
    tr->nrhs[j] = tr->flow->nrhs;
    memcpy(tr->mu + j * K * D, y, K * D * sizeof(double));
    if (tr->euclid) {
        memcpy(tr->C + j * K * D * D, y + K * D, K * D * D * sizeof(double));
        gmf_flow_euclid_to_bw(K, D, y, tr->scratch);
        memcpy(tr->Sigma + j * K * D * D, tr->scratch + K * D, K * D * D * sizeof(double));
    } else {
        memcpy(tr->Sigma + j * K * D * D, y + K * D, K * D * D * sizeof(double));
    }
    int rc = gmf_flow_loss(tr->flow, y, &tr->loss[j]);
    if (rc == GMF_OK && !isfinite(tr->loss[j]))
        rc = gmf_error(GMF_EDIVERGE, "the loss is not finite at t = %g", t);
    if (rc) {
        tr->rc = rc;
        snprintf(tr->msg, sizeof tr->msg, "%s", gmf_errmsg());
        return 1;
    }
    tr->done = j + 1;
    if (!tr->quiet)
        fprintf(stderr, "%s[%*zu/%zu] t = %-12.6g loss = %.10e  rhs = %ld  %.2f s\n", tr->label,
                tr->T >= 100 ? 3 : 2, j + 1, tr->T, t, tr->loss[j], tr->nrhs[j], tr->wall[j]);
    return 0;
}

/* --polish: Newton polish of the final state (library: gmf_stationary_polish), a report on
 * stdout and DIR/spectrum.csv.  0 or 1 (message printed). */
static int polish_report(const char *dir, gmf_oracle oracle, const traj *tr) {
    const size_t K = tr->K, D = tr->D, N = K * (D + D * D), last = tr->T - 1;
    double *y = malloc(2 * N * sizeof(double));
    if (!y) return fail("out of memory for the polish");
    double *yc = y + N;
    memcpy(y, tr->mu + last * K * D, K * D * sizeof(double));
    memcpy(y + K * D, (tr->euclid ? tr->C : tr->Sigma) + last * K * D * D,
           K * D * D * sizeof(double));
    gmf_stationary_result res;
    gmf_stationary_spectrum sp;
    char path[4096];
    int rc = gmf_stationary_polish(oracle, K, tr->euclid ? GMF_FLOW_EUCLID : GMF_FLOW_BW, y, NULL,
                                   yc, &res, &sp);
    free(y);
    if (rc) return fail("--polish failed: %s", gmf_errmsg());
    printf("  polish    %d Newton steps, |grad l| %.3e -> %.3e (relative %.3e), loss %.10e\n",
           res.iters, res.grad0, res.grad, res.grad_rel, res.loss);
    if (!res.converged)
        printf("            NOT converged: no stationary point near the final state (integrate "
               "longer, or it may lie at a collapse)\n");
    printf("            Hessian eigenvalues %.3e .. %.3e; %zu gauge directions removed; index %zu "
           "(%zu zero within %.1e) -> %s\n",
           sp.hess[0], sp.hess[sp.N - 1], sp.ngauge, sp.index, sp.nzero, sp.tol,
           !res.converged ? "not a stationary point"
           : sp.index     ? "saddle"
                          : "minimum");
    snprintf(path, sizeof path, "%s/spectrum.csv", dir);
    rc = gmf_stationary_spectrum_write(path, &sp);
    gmf_stationary_spectrum_free(&sp);
    if (rc) return fail("%s", gmf_errmsg());
    printf("            spectrum  %s\n", path);
    return 0;
}

/* Integrate one form from y0 over tout, recording into tr.  0 or 1 (message printed). */
static int integrate(gmf_flow_kind kind, size_t K, gmf_oracle oracle, const double *y0,
                     const double *tout, size_t T, const gmf_ode_opts *ode, int quiet,
                     const char *label, traj *tr, gmf_ode_stats *st, double *wall) {
    const size_t D = oracle.D;
    gmf_flow flow;
    int rc = gmf_flow_init(&flow, kind, K, oracle);
    if (rc) return fail("%s", gmf_errmsg());
    if (traj_alloc(tr, T, K, D, kind == GMF_FLOW_EUCLID)) {
        gmf_flow_free(&flow);
        return 1;
    }
    size_t N = gmf_flow_dim(&flow);
    double *y = malloc(N * sizeof(double));
    if (!y) {
        gmf_flow_free(&flow);
        return fail("out of memory for the state");
    }
    memcpy(y, y0, N * sizeof(double));
    tr->flow = &flow;
    tr->quiet = quiet;
    tr->label = label;
    tr->start = now();
    rc = gmf_ode_solve(N, gmf_flow_ode_rhs, &flow, y, tout, T, ode, observe, tr, st);
    *wall = now() - tr->start;
    tr->flow = NULL;
    free(y);
    gmf_flow_free(&flow);
    if (rc) return fail("%s solver failed: %s", gmf_ode_method_name(ode->method), gmf_errmsg());
    if (tr->rc) return fail("integration stopped: %s", tr->msg);
    if (tr->done != T)
        return fail("integration stopped early: %zu of %zu output times", tr->done, T);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* output files                                                                                */

static void json_string(FILE *fp, const char *s) {
    fputc('"', fp);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(fp, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(fp, "\\u%04x", *p);
        else
            fputc(*p, fp);
    }
    fputc('"', fp);
}

static void json_stats(FILE *fp, const gmf_ode_stats *s, double wall, const char *indent) {
    fprintf(fp,
            "{\n%s  \"nsteps\": %ld,\n%s  \"nfevals\": %ld,\n%s  \"netfails\": %ld,\n"
            "%s  \"nniters\": %ld,\n%s  \"nncfails\": %ld,\n%s  \"nliters\": %ld,\n"
            "%s  \"qlast\": %d,\n%s  \"hlast\": %.17g,\n%s  \"wall_s\": %.6f\n%s}",
            indent, s->nsteps, indent, s->nfevals, indent, s->netfails, indent, s->nniters, indent,
            s->nncfails, indent, s->nliters, indent, s->qlast, indent, s->hlast, indent, wall,
            indent);
}

static int write_trajectory_csv(const char *path, const traj *tr) {
    gmf_io_file f;
    if (gmf_io_open(&f, path)) return 1;
    fprintf(f.fp, "t,loss,wall_s,nrhs\n");
    for (size_t j = 0; j < tr->T; j++)
        fprintf(f.fp, "%.17g,%.17g,%.6f,%ld\n", tr->t[j], tr->loss[j], tr->wall[j], tr->nrhs[j]);
    return gmf_io_commit(&f) ? 1 : 0;
}

typedef struct run_info {
    int argc;
    char **argv;
    const options *o;
    size_t n, d, K, D;
    double t0, t0_file;
    const char *init_form;
    const gmf_ode_stats *st;
    double wall, wall_total;
    const traj *tr;
    int checked, pass;
    double err_sigma, err_mu, check_wall;
    const gmf_ode_stats *check_st;
} run_info;

static int write_run_json(const char *path, const run_info *r) {
    const options *o = r->o;
    gmf_io_file f;
    if (gmf_io_open(&f, path)) return 1;
    FILE *fp = f.fp;
    fprintf(fp, "{\n  \"format\": \"gmflow-run\",\n  \"version\": 1,\n");
    fprintf(fp, "  \"gmflow_version\": \"%s\",\n  \"command\": \"flow\",\n  \"argv\": [",
            GMF_VERSION_STRING);
    for (int i = 0; i < r->argc; i++) {
        if (i) fputs(", ", fp);
        json_string(fp, r->argv[i]);
    }
    fprintf(fp, "],\n  \"form\": \"%s\",\n", o->form == GMF_FLOW_EUCLID ? "euclid" : "bw");
    if (o->data) {
        const size_t L = strlen(o->data);
        fprintf(fp, "  \"data\": {\"source\": \"%s\", \"path\": ",
                L > 4 && !strcmp(o->data + L - 4, ".npy") ? "npy" : "csv");
        json_string(fp, o->data);
        fprintf(fp, "},\n");
    } else {
        fprintf(fp,
                "  \"data\": {\"source\": \"toy\", \"teacher\": \"%s\", \"n\": %zu, \"d\": %zu, "
                "\"width\": %zu, \"noise\": %.17g, \"seed\": %lu},\n",
                o->toy.teacher == GMF_TOY_MIXTURE ? "mixture" : "relu", o->toy.n, o->toy.d,
                o->toy.width, o->toy.noise, o->toy.seed);
    }
    if (o->init) {
        fprintf(fp, "  \"init\": {\"source\": \"file\", \"path\": ");
        json_string(fp, o->init);
        fprintf(fp, ", \"form\": \"%s\", \"t\": %.17g},\n", r->init_form, r->t0_file);
    } else {
        fprintf(fp, "  \"init\": {\"source\": \"random\", \"gamma\": %.17g, \"seed\": %lu},\n",
                o->gamma, o->seed);
    }
    fprintf(fp, "  \"ranks\": %d,\n", gmf_par_size());
    fprintf(fp, "  \"n\": %zu,\n  \"d\": %zu,\n  \"K\": %zu,\n  \"D\": %zu,\n", r->n, r->d, r->K,
            r->D);
    fprintf(fp,
            "  \"solver\": {\"method\": \"%s\", \"rtol\": %.17g, \"atol\": %.17g, "
            "\"max_steps\": %ld, \"tolerances_tightened_for_check\": %s},\n",
            gmf_ode_method_name(o->ode.method), o->ode.rtol, o->ode.atol, o->ode.max_steps,
            o->tightened ? "true" : "false");
    const traj *tr = r->tr;
    fprintf(fp, "  \"t0\": %.17g,\n  \"t_end\": %.17g,\n  \"t_final\": %.17g,\n  \"n_out\": %zu,\n",
            r->t0, o->t_end, tr->t[tr->T - 1], o->n_out);
    fprintf(fp, "  \"loss_start\": %.17g,\n  \"loss_end\": %.17g,\n", tr->loss[0],
            tr->loss[tr->T - 1]);
    fprintf(fp, "  \"stats\": ");
    json_stats(fp, r->st, r->wall, "  ");
    fprintf(fp, ",\n  \"wall_s\": %.6f,\n", r->wall_total);
    if (r->checked) {
        fprintf(fp,
                "  \"check_thm1\": {\n    \"other_form\": \"%s\",\n    \"sigma_rel_err\": %.17g,\n"
                "    \"mu_rel_err\": %.17g,\n    \"tol\": %g,\n    \"pass\": %s,\n    \"stats\": ",
                o->form == GMF_FLOW_EUCLID ? "bw" : "euclid", r->err_sigma, r->err_mu, THM1_TOL,
                r->pass ? "true" : "false");
        json_stats(fp, r->check_st, r->check_wall, "    ");
        fprintf(fp, "\n  },\n");
    } else {
        fprintf(fp, "  \"check_thm1\": null,\n");
    }
    fprintf(fp,
            "  \"files\": [\"trajectory.csv\", \"t.npy\", \"mu.npy\", \"Sigma.npy\", %s"
            "\"state.json\", \"run.json\"]\n}\n",
            o->form == GMF_FLOW_EUCLID ? "\"C.npy\", " : "");
    return gmf_io_commit(&f) ? 1 : 0;
}

static int path_join(char *out, size_t outsz, const char *dir, const char *name) {
    if (snprintf(out, outsz, "%s/%s", dir, name) >= (int)outsz)
        return fail("output path too long: %s/%s", dir, name);
    return 0;
}

#define WRITE_OR_FAIL(expr)                                                                        \
    do {                                                                                           \
        if ((expr) != 0) return fail("%s", gmf_errmsg());                                          \
    } while (0)

static int write_outputs(const char *dir, const traj *tr, const run_info *ri, size_t d) {
    char p[4200];
    const size_t T = tr->T, K = tr->K, D = tr->D;
    size_t s1[1] = {T}, s3[3] = {T, K, D}, s4[4] = {T, K, D, D};
    if (path_join(p, sizeof p, dir, "t.npy")) return 1;
    WRITE_OR_FAIL(gmf_io_write_npy(p, tr->t, 1, s1));
    if (path_join(p, sizeof p, dir, "mu.npy")) return 1;
    WRITE_OR_FAIL(gmf_io_write_npy(p, tr->mu, 3, s3));
    if (path_join(p, sizeof p, dir, "Sigma.npy")) return 1;
    WRITE_OR_FAIL(gmf_io_write_npy(p, tr->Sigma, 4, s4));
    if (tr->euclid) {
        if (path_join(p, sizeof p, dir, "C.npy")) return 1;
        WRITE_OR_FAIL(gmf_io_write_npy(p, tr->C, 4, s4));
    }
    if (path_join(p, sizeof p, dir, "trajectory.csv")) return 1;
    if (write_trajectory_csv(p, tr)) return fail("%s", gmf_errmsg());
    gmf_io_state s = {.K = K,
                      .d = d,
                      .D = D,
                      .t = tr->t[T - 1],
                      .euclid = tr->euclid,
                      .mu = tr->mu + (T - 1) * K * D,
                      .Sigma = tr->Sigma + (T - 1) * K * D * D,
                      .C = tr->euclid ? tr->C + (T - 1) * K * D * D : NULL};
    if (path_join(p, sizeof p, dir, "state.json")) return 1;
    WRITE_OR_FAIL(gmf_io_write_state(p, &s));
    if (path_join(p, sizeof p, dir, "run.json")) return 1;
    if (write_run_json(p, ri)) return fail("%s", gmf_errmsg());
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Theorem 1 comparison                                                                        */

/* bw: the BW trajectory, eu: the Euclidean one at the matching times. */
static void thm1_compare(const traj *bw, const traj *eu, double *err_sigma, double *err_mu) {
    const size_t T = bw->T, K = bw->K, D = bw->D;
    double es = 0, em = 0;
    for (size_t j = 0; j < T; j++) {
        double dm = 0, nm = 0;
        for (size_t i = 0; i < K * D; i++) {
            double a = bw->mu[j * K * D + i], b = eu->mu[j * K * D + i];
            dm += (a - b) * (a - b), nm += a * a;
        }
        double rel = nm > 0 ? sqrt(dm / nm) : sqrt(dm);
        if (!(rel <= em)) em = rel;
        for (size_t k = 0; k < K; k++) {
            const double *S = bw->Sigma + (j * K + k) * D * D;
            const double *P = eu->Sigma + (j * K + k) * D * D; /* C C^T */
            double ds = 0, ns = 0;
            for (size_t i = 0; i < D * D; i++)
                ds += (S[i] - P[i]) * (S[i] - P[i]), ns += S[i] * S[i];
            double r = ns > 0 ? sqrt(ds / ns) : sqrt(ds);
            if (!(r <= es)) es = r;
        }
    }
    *err_sigma = es, *err_mu = em;
}

/* ------------------------------------------------------------------------------------------ */
/* the command                                                                                 */

int gmf_cli_flow(int argc, char **argv) {
    double t_start = now();
    options o;
    int status = parse_options(argc, argv, &o);
    if (status >= 0) return status;

    /* MPI (docs/SCALE.md): samples sharded over the ranks, the state replicated; only rank 0
     * prints and writes; an error on any rank stops every rank (gmf_par_any after each step that
     * can fail on one rank alone). */
    const int rank = gmf_par_rank(), P = gmf_par_size();
    if (P > 1 && o.polish)
        return usage_error("--polish needs the exact Jacobian: serial runs only");
    if (P > 1 && o.ode.method == GMF_ODE_CVODE_BDF) { /* the sharded oracle has no JVP */
        if (o.ode.jacobian == GMF_ODE_JAC_JVP || o.ode.jacobian == GMF_ODE_JAC_DENSE)
            return usage_error("--jacobian %s needs exact JVPs: serial runs only (use dq)",
                               gmf_ode_jacobian_name(o.ode.jacobian));
        o.ode.jacobian = GMF_ODE_JAC_DQ;
    }
    if (rank) o.quiet = 1;
    status = 1;
    double *X = NULL, *yv = NULL, *mu0 = NULL, *Sigma0 = NULL, *C0 = NULL, *y0 = NULL, *y0c = NULL,
           *tout = NULL, *toutc = NULL;
    gmf_sqloss *sq = NULL;
    gmf_io_state init = {0};
    traj tr = {0}, trc = {0};
    size_t n, d;

    /* data */
    int bad = 0, npy = 0; /* npy: X, yv hold only this rank's rows i0 .. i0 + nloc - 1 */
    size_t i0 = 0, nloc = 0, dlen = o.data ? strlen(o.data) : 0;
    const char *hook = getenv("GMFLOW_TEST_FAIL_RANK"); /* test hook: this rank fails to read */
    if (hook && P > 1 && atoi(hook) == rank)
        bad = fail("--data: rank %d of %d: cannot read its shard (simulated by "
                   "GMFLOW_TEST_FAIL_RANK)",
                   rank, P);
    else if (dlen > 4 && !strcmp(o.data + dlen - 4, ".npy")) {
        npy = 1;
        if (gmf_io_read_xy_npy(o.data, rank, P, &n, &d, &i0, &nloc, &X, &yv))
            bad = fail("--data: %s", gmf_errmsg());
    } else if (o.data) {
        if (gmf_io_read_csv(o.data, &n, &d, &X, &yv)) bad = fail("--data: %s", gmf_errmsg());
    } else {
        if (gmf_toy_make(&o.toy, &X, &yv)) bad = fail("%s", gmf_errmsg());
        n = o.toy.n, d = o.toy.d;
    }
    if (gmf_par_any(bad)) {
        if (!bad) fail("stopping: another rank failed to read the data (its message above)");
        goto done;
    }
    const size_t D = d + 1;
    char data_desc[512];
    if (o.data)
        snprintf(data_desc, sizeof data_desc, "%s (n = %zu, d = %zu)", o.data, n, d);
    else
        snprintf(data_desc, sizeof data_desc,
                 "toy, %s teacher (width %zu, noise %g, seed %lu), n = %zu, d = %zu",
                 o.toy.teacher == GMF_TOY_MIXTURE ? "mixture" : "relu", o.toy.width, o.toy.noise,
                 o.toy.seed, n, d);

    /* initial mixture: mu0, Sigma0 and (when available or needed) C0 */
    size_t K = o.K;
    double t0 = 0, t0_file = 0;
    const char *init_form = "";
    if (o.init) {
        if (gmf_io_read_state(o.init, &init)) {
            fail("--init: %s", gmf_errmsg());
            goto done;
        }
        init_form = init.euclid ? "euclid" : "bw";
        if (init.d != d) {
            fail("--init: %s: the state has d = %zu (D = %zu) but the data %s has d = %zu", o.init,
                 init.d, init.D, o.data ? o.data : "(built-in toy, --d)", d);
            goto done;
        }
        if (o.K_set && o.K != init.K) {
            fail("-K %zu conflicts with K = %zu in --init %s (with --init, K comes from the file)",
                 o.K, init.K, o.init);
            goto done;
        }
        K = init.K;
        t0_file = init.t;
        /* time: an euclid run at time t is the bw flow at t / K */
        t0 = init.t;
        if (init.euclid && o.form == GMF_FLOW_BW) t0 = init.t / (double)K;
        if (!init.euclid && o.form == GMF_FLOW_EUCLID) t0 = init.t * (double)K;
        mu0 = init.mu, Sigma0 = init.Sigma, C0 = init.C;
        init.mu = init.Sigma = init.C = NULL;
    } else {
        mu0 = gmf_calloc(K * D, sizeof(double), "initial means");
        Sigma0 = gmf_calloc(K * D * D, sizeof(double), "initial covariances");
        C0 = gmf_calloc(K * D * D, sizeof(double), "initial square roots");
        if (!mu0 || !Sigma0 || !C0) {
            fail("%s", gmf_errmsg());
            goto done;
        }
        if (gmf_toy_init_mixture(K, D, o.gamma, o.seed, mu0, C0, Sigma0)) {
            fail("%s", gmf_errmsg());
            goto done;
        }
    }
    char src[600];
    if (o.init)
        snprintf(src, sizeof src, "--init: %s", o.init);
    else
        snprintf(src, sizeof src, "random initial mixture (--gamma %g, --seed %lu)", o.gamma,
                 o.seed);
    size_t N = K * (D + D * D);
    y0 = gmf_calloc(N, sizeof(double), "initial state");
    if (!y0) {
        fail("%s", gmf_errmsg());
        goto done;
    }
    memcpy(y0, mu0, K * D * sizeof(double));
    memcpy(y0 + K * D, Sigma0, K * D * D * sizeof(double));
    if (gmf_flow_check_state(GMF_FLOW_BW, K, D, y0)) {
        fail("%s: invalid initial state: %s", src, gmf_errmsg());
        goto done;
    }
    int need_C = o.form == GMF_FLOW_EUCLID || o.check;
    if (need_C && !C0) {
        C0 = gmf_calloc(K * D * D, sizeof(double), "initial square roots");
        if (!C0) {
            fail("%s", gmf_errmsg());
            goto done;
        }
        if (cholesky_all(K, D, Sigma0, C0, src)) goto done;
    }
    if (o.form == GMF_FLOW_EUCLID) memcpy(y0 + K * D, C0, K * D * D * sizeof(double));
    if (gmf_flow_check_state(o.form, K, D, y0)) {
        fail("%s: invalid initial state: %s", src, gmf_errmsg());
        goto done;
    }

    /* output times */
    const size_t T = o.n_out;
    tout = malloc(T * sizeof(double));
    if (!tout) {
        fail("out of memory");
        goto done;
    }
    for (size_t j = 0; j < T; j++)
        tout[j] = t0 + o.t_end * (double)j / (double)(T - 1);
    tout[T - 1] = t0 + o.t_end;
    for (size_t j = 1; j < T; j++)
        if (!(tout[j] > tout[j - 1])) {
            fail("--t-end %g with --n-out %zu gives output times too close to distinguish at t0 "
                 "= %g",
                 o.t_end, T, t0);
            goto done;
        }

    if (gmf_par_any(rank == 0 && make_dirs(o.out))) goto done;

    if (!npy) gmf_par_block(n, rank, P, &i0, &nloc);
    const size_t off = npy ? 0 : i0; /* a CSV is read whole by every rank */
    if (P > 1 ? gmf_sqloss_shard(&sq, nloc, n, d, X + off * d, yv + off)
              : gmf_sqloss_borrow(&sq, n, d, X, yv)) {
        fail("%s", gmf_errmsg());
        goto done;
    }
    gmf_oracle oracle = gmf_sqloss_oracle(sq);

    const char *form_desc = o.form == GMF_FLOW_EUCLID
                                ? "euclid (Theorem 1: Euclidean flow over (mu, C))"
                                : "bw (Theorems 3/4: Bures-Wasserstein flow over (mu, Sigma))";
    if (!o.quiet)
        fprintf(stderr, CMD ": %s, K = %zu, D = %zu, %s, t in [%g, %g]\n",
                o.form == GMF_FLOW_EUCLID ? "euclid" : "bw", K, D,
                gmf_ode_method_name(o.ode.method), t0, t0 + o.t_end);
    gmf_ode_stats st, stc;
    memset(&stc, 0, sizeof stc);
    double wall = 0, wallc = 0;
    if (integrate(o.form, K, oracle, y0, tout, T, &o.ode, o.quiet, "", &tr, &st, &wall)) goto done;

    /* Theorem 1: the other form from the same initial state over the matching times */
    run_info ri = {.argc = argc,
                   .argv = argv,
                   .o = &o,
                   .n = n,
                   .d = d,
                   .K = K,
                   .D = D,
                   .t0 = t0,
                   .t0_file = t0_file,
                   .init_form = init_form,
                   .st = &st,
                   .wall = wall,
                   .tr = &tr};
    if (o.check) {
        gmf_flow_kind other = o.form == GMF_FLOW_BW ? GMF_FLOW_EUCLID : GMF_FLOW_BW;
        y0c = malloc(N * sizeof(double));
        toutc = malloc(T * sizeof(double));
        if (!y0c || !toutc) {
            fail("out of memory");
            goto done;
        }
        memcpy(y0c, mu0, K * D * sizeof(double));
        if (other == GMF_FLOW_EUCLID) {
            memcpy(y0c + K * D, C0, K * D * D * sizeof(double));
            for (size_t j = 0; j < T; j++)
                toutc[j] = tout[j] * (double)K;
        } else {
            gmf_flow_euclid_to_bw(K, D, y0, y0c); /* Sigma = C C^T of the run's own C */
            for (size_t j = 0; j < T; j++)
                toutc[j] = tout[j] / (double)K;
        }
        const char *lab = other == GMF_FLOW_EUCLID ? "thm1 euclid " : "thm1 bw ";
        if (integrate(other, K, oracle, y0c, toutc, T, &o.ode, o.quiet, lab, &trc, &stc, &wallc))
            goto done;
        const traj *bw = other == GMF_FLOW_BW ? &trc : &tr, *eu = other == GMF_FLOW_BW ? &tr : &trc;
        thm1_compare(bw, eu, &ri.err_sigma, &ri.err_mu);
        ri.checked = 1;
        ri.pass = ri.err_sigma <= THM1_TOL && ri.err_mu <= THM1_TOL;
        ri.check_st = &stc;
        ri.check_wall = wallc;
    }
    ri.wall_total = now() - t_start;
    if (rank) { /* the others computed the same; rank 0 reports */
        status = ri.checked && !ri.pass;
        goto done;
    }

    if (write_outputs(o.out, &tr, &ri, d)) goto done;

    /* summary */
    printf(CMD ": %s\n", form_desc);
    printf("  data      %s\n", data_desc);
    if (o.init)
        printf("  init      %s (form %s, t = %g), K = %zu, D = %zu\n", o.init, init_form, t0_file,
               K, D);
    else
        printf("  init      random (gamma %g, seed %lu), K = %zu, D = %zu\n", o.gamma, o.seed, K,
               D);
    printf("  solver    %s, rtol %g, atol %g, max steps %ld%s\n", gmf_ode_method_name(o.ode.method),
           o.ode.rtol, o.ode.atol, o.ode.max_steps,
           o.tightened ? " (tightened for --check-thm1)" : "");
    printf("  loss      %.10e at t = %g  ->  %.10e at t = %g\n", tr.loss[0], tr.t[0],
           tr.loss[T - 1], tr.t[T - 1]);
    printf("  stats     %ld steps, %ld RHS evaluations, %ld error-test failures, %ld nonlinear "
           "iterations (%ld convergence failures)",
           st.nsteps, st.nfevals, st.netfails, st.nniters, st.nncfails);
    if (o.ode.method == GMF_ODE_CVODE_BDF)
        printf(", %ld linear iterations, jacobian %s (%ld dense, %ld JVPs)", st.nliters,
               gmf_ode_jacobian_name(st.jacobian), st.njevals, st.njvevals);
    printf(", %.3f s\n", wall);
    if (ri.checked) {
        printf("  thm1      %s form, %ld steps, %.3f s; max over %zu times of\n",
               o.form == GMF_FLOW_BW ? "euclid" : "bw", stc.nsteps, wallc, T);
        printf("            ||Sigma_k(t) - C_k(Kt) C_k(Kt)^T||_F / ||Sigma_k(t)||_F = %.3e\n",
               ri.err_sigma);
        printf("            ||mu(t) - mu_euclid(Kt)|| / ||mu(t)||                   = %.3e\n",
               ri.err_mu);
        printf("            %s (tolerance %g)\n", ri.pass ? "PASS" : "FAIL", THM1_TOL);
    }
    printf("  output    %s/{trajectory.csv, t.npy, mu.npy, Sigma.npy%s, state.json, run.json}\n",
           o.out, o.form == GMF_FLOW_EUCLID ? ", C.npy" : "");
    if (o.polish && polish_report(o.out, oracle, &tr)) goto done;
    fflush(stdout);
    if (ri.checked && !ri.pass) {
        fail("Theorem 1 check FAILED: relative differences %.3e (Sigma), %.3e (mu) exceed %g",
             ri.err_sigma, ri.err_mu, THM1_TOL);
        goto done;
    }
    status = 0;

done:
    free(X), free(yv), free(mu0), free(Sigma0), free(C0), free(y0), free(y0c);
    free(tout), free(toutc);
    gmf_io_state_free(&init);
    traj_free(&tr);
    traj_free(&trc);
    gmf_sqloss_free(sq);
    return status;
}
