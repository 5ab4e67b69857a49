/* validate/thm1.c -- Theorem 1: the Gaussian-mixture (Bures-Wasserstein) flow in the Sigma form
 * and the Euclidean gradient flow over (mu, C) agree after the time rescaling by K:
 *
 *     Sigma_k^BW(t / K) = C_k(t) C_k(t)^T,   mu_k^BW(t / K) = mu_k^E(t)   for all t >= 0.
 *
 * Both flows start from the same mixture (Sigma_k(0) = C_k(0) C_k(0)^T) and are integrated
 * independently with CVODE Adams at rtol 1e-12, atol 1e-14.  At every output time we measure
 *
 *     dSigma = max_k ||Sigma_k^BW(t/K) - C_k(t) C_k(t)^T||_F / ||Sigma_k^BW(t/K)||_F
 *     dmu    = max_k ||mu_k^BW(t/K) - mu_k^E(t)||_2 / max(||mu_k^BW(t/K)||_2, 1)
 *
 * and pass when the largest over all cases and times is <= 1e-8.  Also required at every output:
 * each BW Sigma_k bitwise symmetric (flow.h promises it) and positive semidefinite up to the
 * integration error (lambda_min >= -100 rtol lambda_max; a rank-deficient start case is
 * included, where the Sigma form's zero eigenvalue drifts to ~ -rtol lambda_max).  The two
 * right-hand sides share only the oracle (the closed forms); the mapping between them -- the factor
 * 1/K, the product E[hess dL] C instead of the symmetrised Stein form, the time rescaling -- is
 * what is tested.
 *
 * Usage: thm1 [--n N] [--d D] [--K K] [--T T] [--seed S] [--teacher relu|mixture]
 *             [--init random|paper|singular] [--rtol R] [--no-rescale]
 * With no size option the CI case list runs; any of --n/--d/--K runs that one case instead.
 * --no-rescale compares Sigma^BW(t) with C(t) C(t)^T (no 1/K): a control that must fail for K > 1.
 */
#include <lapacke.h>

#include "gmflow/common.h"
#include "gmflow/flow.h"
#include "gmflow/ode.h"
#include "gmflow/sqloss.h"
#include "gmflow/toy.h"
#include "harness.h"
#include "testutil.h"
#include "vfd.h"

#define PASS_TOL 1e-8
#define NOUT     11 /* output times 0, T/10, ..., T */
/* The Sigma-form integration may push a zero eigenvalue (rank-deficient start) to about
 * -rtol lambda_max; PSD is required up to PSD_FACTOR rtol lambda_max. */
#define PSD_FACTOR 100.0

typedef enum { INIT_RANDOM = 0, INIT_PAPER = 1, INIT_SINGULAR = 2 } init_kind;
static const char *init_name[] = {"random", "paper", "rkdef"};

typedef struct {
    const char *label;
    size_t n, d, K;
    gmf_toy_teacher teacher;
    init_kind init;
    double T; /* Euclidean time horizon (the BW flow runs to T / K) */
    unsigned long seed;
} tcase;

static double frob_diff(size_t n, const double *a, const double *b) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (a[i] - b[i]) * (a[i] - b[i]);
    return sqrt(s);
}

static double frob(size_t n, const double *a) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * a[i];
    return sqrt(s);
}

/* Initial Euclidean state [mu | C].  Random: mu entries N(0, 1/4) and C = 0.3 I + G with G
 * entries N(0, 0.5^2 / D): a full, non-symmetric, non-triangular square root.  Paper: mu entries
 * N(0, gamma^2), C = gamma I, gamma = 1/2 (gmf_toy_init_mixture).  Rank-deficient: the random C
 * with its last column zeroed, so every Sigma_k(0) is singular (rank D - 1); both flows keep the
 * rank (Sigma' = -(H Sigma + Sigma H) maps range(Sigma) into itself), and the closed forms only
 * need s > 0 along the data. */
static int initial_state(const tcase *c, size_t D, double *y0) {
    const size_t K = c->K;
    int rc = gmf_toy_init_mixture(K, D, 0.5, c->seed + 1000, y0, y0 + gmf_flow_mat_offset(K, D, 0),
                                  NULL);
    if (rc || c->init == INIT_PAPER) return rc;
    gsl_rng *r = tu_rng(c->seed + 2000);
    double *C = y0 + gmf_flow_mat_offset(K, D, 0);
    for (size_t k = 0; k < K; k++)
        for (size_t a = 0; a < D; a++)
            for (size_t b = 0; b < D; b++)
                C[(k * D + a) * D + b] =
                    (a == b ? 0.3 : 0.0) + gsl_ran_gaussian_ziggurat(r, 0.5 / sqrt((double)D));
    gsl_rng_free(r);
    if (c->init == INIT_SINGULAR) /* rank D - 1: zero C's last column (Sigma singular) */
        for (size_t k = 0; k < K; k++)
            for (size_t a = 0; a < D; a++)
                C[(k * D + a) * D + D - 1] = 0.0;
    return GMF_OK;
}

/* 1 if the D x D matrix S is bitwise symmetric; its extreme eigenvalues in *lmin, *lmax. */
static int sym_eig(size_t D, const double *S, double *lmin, double *lmax) {
    int sym = 1;
    for (size_t a = 0; a < D; a++)
        for (size_t b = 0; b < a; b++)
            if (S[a * D + b] != S[b * D + a]) sym = 0;
    double *A = tu_xmalloc(D * D * sizeof *A), *ev = tu_xmalloc(D * sizeof *ev);
    memcpy(A, S, D * D * sizeof *A);
    lapack_int info =
        LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'N', 'U', (lapack_int)D, A, (lapack_int)D, ev);
    *lmin = info == 0 ? ev[0] : NAN;
    *lmax = info == 0 ? ev[D - 1] : NAN;
    free(ev);
    free(A);
    return sym;
}

typedef struct {
    double dmu, dsig; /* worst over components and output times */
    double tworst;    /* Euclidean time of the worst dSigma */
    double moved;     /* max_k ||Sigma_k(T) - Sigma_k(0)||_F / ||Sigma_k(0)||_F */
    double L0, LT;
    long stepsE, stepsB;
    double mineig; /* min over k, t of lambda_min(Sigma_k^BW) / lambda_max(Sigma_k^BW) */
    int bad_state; /* a BW Sigma_k lost bitwise symmetry or had lambda_min < -PSD_TOL */
    double secs;
} result;

/* rescale = 0 turns the time rescaling off (a control: the check must then fail for K > 1). */
static int run_case(const tcase *c, double rtol, int rescale, result *res) {
    const size_t K = c->K, D = c->d + 1;
    const double psd_tol = PSD_FACTOR * rtol;
    memset(res, 0, sizeof *res);
    res->mineig = INFINITY;
    double t0 = vh_now();
    vh_traj trE = {0}, trB = {0};
    double *y0 = NULL, *yE = NULL, *yB = NULL, *S = NULL;
    vfd_problem pb;
    int rc = vfd_problem_init(&pb, c->n, c->d, K, c->teacher, c->seed);
    if (rc) goto done;
    const size_t N = gmf_flow_dim(pb.fE);
    y0 = tu_xmalloc(N * sizeof *y0);
    yE = tu_xmalloc(N * sizeof *yE);
    yB = tu_xmalloc(N * sizeof *yB);
    S = tu_xmalloc(N * sizeof *S);
    trE.N = trB.N = N;
    trE.Y = tu_xmalloc(NOUT * N * sizeof(double));
    trB.Y = tu_xmalloc(NOUT * N * sizeof(double));
    if ((rc = initial_state(c, D, y0))) goto done;
    memcpy(yE, y0, N * sizeof *yE);
    gmf_flow_euclid_to_bw(K, D, y0, yB);

    double tE[NOUT], tB[NOUT];
    for (size_t j = 0; j < NOUT; j++) {
        tE[j] = c->T * (double)j / (double)(NOUT - 1);
        tB[j] = rescale ? gmf_flow_time_convert(tE[j], GMF_FLOW_EUCLID, GMF_FLOW_BW, K) : tE[j];
    }
    gmf_ode_opts o = gmf_ode_defaults();
    o.method = GMF_ODE_CVODE_ADAMS;
    o.rtol = rtol;
    o.atol = 1e-2 * rtol;
    o.max_steps = 1000000;
    gmf_ode_stats sE, sB;
    if ((rc =
             gmf_ode_solve(N, gmf_flow_ode_rhs, pb.fE, yE, tE, NOUT, &o, vh_traj_store, &trE, &sE)))
        goto done;
    if ((rc =
             gmf_ode_solve(N, gmf_flow_ode_rhs, pb.fB, yB, tB, NOUT, &o, vh_traj_store, &trB, &sB)))
        goto done;
    res->stepsE = sE.nsteps, res->stepsB = sB.nsteps;

    for (size_t j = 0; j < NOUT; j++) {
        const double *ye = trE.Y + j * N, *yb = trB.Y + j * N;
        for (size_t k = 0; k < K; k++) {
            double lmin, lmax;
            int sym = sym_eig(D, yb + gmf_flow_mat_offset(K, D, k), &lmin, &lmax);
            res->mineig = fmin(res->mineig, lmin / lmax);
            if (!sym || !(lmin >= -psd_tol * lmax)) {
                fprintf(stderr,
                        "  %s: BW Sigma_%zu at t = %g: %s (lambda_min %.3g, lambda_max %.3g)\n",
                        c->label, k, tB[j], sym ? "not PSD to the tolerance" : "not symmetric",
                        lmin, lmax);
                res->bad_state = 1;
            }
        }
        gmf_flow_euclid_to_bw(K, D, ye, S); /* [mu | C C^T] */
        for (size_t k = 0; k < K; k++) {
            const double *muB = yb + k * D, *muE = S + k * D;
            const double *SgB = yb + gmf_flow_mat_offset(K, D, k),
                         *SgE = S + gmf_flow_mat_offset(K, D, k);
            double dm = frob_diff(D, muB, muE) / fmax(frob(D, muB), 1.0);
            double ds = frob_diff(D * D, SgB, SgE) / frob(D * D, SgB);
            if (!(dm <= res->dmu)) res->dmu = dm;
            if (!(ds <= res->dsig)) res->dsig = ds, res->tworst = tE[j];
        }
    }
    const double *yb0 = trB.Y, *ybT = trB.Y + (NOUT - 1) * N;
    for (size_t k = 0; k < K; k++) {
        const double *S0 = yb0 + gmf_flow_mat_offset(K, D, k),
                     *ST = ybT + gmf_flow_mat_offset(K, D, k);
        res->moved = fmax(res->moved, frob_diff(D * D, ST, S0) / frob(D * D, S0));
    }
    if ((rc = gmf_flow_loss(pb.fE, trE.Y, &res->L0))) goto done;
    if ((rc = gmf_flow_loss(pb.fE, trE.Y + (NOUT - 1) * N, &res->LT))) goto done;
done:
    res->secs = vh_now() - t0;
    free(trE.Y);
    free(trB.Y);
    free(S);
    free(yB);
    free(yE);
    free(y0);
    vfd_problem_free(&pb);
    return rc;
}

static const char *const teacher_choices[] = {"relu", "mixture", NULL};
static const char *const init_choices[] = {"random", "paper", "singular", NULL};

int main(int argc, char **argv) {
    /* The CI case list: K = 1 (Theorem 2), d from 1 to 8, K up to 4, both teachers, random full
     * square roots and the paper's initialization. */
    static const tcase ci[] = {
        {"K1-d1-relu", 100, 1, 1, GMF_TOY_RELU, INIT_RANDOM, 10.0, 11},
        {"K1-d4-relu", 200, 4, 1, GMF_TOY_RELU, INIT_RANDOM, 10.0, 12},
        {"K2-d2-paper", 150, 2, 2, GMF_TOY_RELU, INIT_PAPER, 10.0, 13},
        {"K2-d3-mixture", 150, 3, 2, GMF_TOY_MIXTURE, INIT_RANDOM, 10.0, 14},
        {"K3-d5-relu", 200, 5, 3, GMF_TOY_RELU, INIT_RANDOM, 10.0, 15},
        {"K3-d2-mix-paper", 150, 2, 3, GMF_TOY_MIXTURE, INIT_PAPER, 10.0, 16},
        {"K4-d6-mixture", 200, 6, 4, GMF_TOY_MIXTURE, INIT_RANDOM, 10.0, 17},
        {"K2-d3-rankdef", 150, 3, 2, GMF_TOY_RELU, INIT_SINGULAR, 10.0, 19},
        {"K4-d8-relu", 200, 8, 4, GMF_TOY_RELU, INIT_RANDOM, 10.0, 18},
    };
    tcase custom = {"custom", 100, 3, 2, GMF_TOY_RELU, INIT_RANDOM, 4.0, 1};
    int use_custom = 0, no_rescale = 0, teacher = GMF_TOY_RELU, init = INIT_RANDOM;
    double rtol = 1e-12;
    const vh_opt opts[] = {
        {"--n", VH_SIZE, &custom.n, NULL, &use_custom},
        {"--d", VH_SIZE, &custom.d, NULL, &use_custom},
        {"--K", VH_SIZE, &custom.K, NULL, &use_custom},
        {"--T", VH_DOUBLE, &custom.T, NULL, NULL},
        {"--seed", VH_ULONG, &custom.seed, NULL, NULL},
        {"--teacher", VH_CHOICE, &teacher, teacher_choices, NULL},
        {"--init", VH_CHOICE, &init, init_choices, NULL},
        {"--rtol", VH_DOUBLE, &rtol, NULL, NULL},
        {"--no-rescale", VH_FLAG, &no_rescale, NULL, NULL},
    };
    vh_parse(argc, argv, "thm1",
             "[--n N] [--d D] [--K K] [--T T] [--seed S] [--teacher relu|mixture] "
             "[--init random|paper|singular] [--rtol R] [--no-rescale]",
             opts, sizeof opts / sizeof opts[0]);
    custom.teacher = (gmf_toy_teacher)teacher, custom.init = (init_kind)init;
    if (use_custom && (custom.n < 1 || custom.d < 1 || custom.K < 1 || !(custom.T > 0)))
        vh_usage_error("need n, d, K >= 1 and T > 0");
    if (!(rtol > 0)) vh_usage_error("--rtol: need rtol > 0");
    const tcase *cases = use_custom ? &custom : ci;
    size_t ncases = use_custom ? 1 : sizeof ci / sizeof ci[0];

    printf("Theorem 1: Sigma_k^BW(t/K) vs C_k(t) C_k(t)^T and mu_k^BW(t/K) vs mu_k^E(t), "
           "CVODE Adams rtol %.0e atol %.0e, %d output times\n",
           rtol, 1e-2 * rtol, NOUT);
    printf("%-16s %4s %2s %2s %-8s %-6s %4s %10s %10s %6s %9s %9s %7s %10s %7s %6s\n", "case", "n",
           "d", "K", "teacher", "init", "T", "max dmu", "max dSig", "at t", "L(0)", "L(T)", "moved",
           "min eig", "steps", "sec");
    vh_run run = vh_start("thm1");
    double worst = 0.0;
    int fail = 0;
    for (size_t ci_ = 0; ci_ < ncases; ci_++) {
        const tcase *c = &cases[ci_];
        result r;
        int rc = vh_case(&run, c->label, run_case(c, rtol, !no_rescale, &r));
        if (r.bad_state) fail = 1;
        double w = fmax(r.dmu, r.dsig);
        if (rc || !(w <= worst)) worst = rc ? INFINITY : w;
        printf("%-16s %4zu %2zu %2zu %-8s %-6s %4.1f %10.2e %10.2e %6.2f %9.3e %9.3e %7.3f "
               "%10.2e %7ld %6.2f%s\n",
               c->label, c->n, c->d, c->K, c->teacher == GMF_TOY_RELU ? "relu" : "mixture",
               init_name[c->init], c->T, r.dmu, r.dsig, r.tworst, r.L0, r.LT, r.moved, r.mineig,
               r.stepsE + r.stepsB, r.secs, rc ? "  ERROR" : "");
    }
    printf("(moved = max_k ||Sigma_k(T) - Sigma_k(0)||_F / ||Sigma_k(0)||_F: the flows travel far, "
           "so agreement is not trivial;\n min eig = min_{k,t} lambda_min / lambda_max of the BW "
           "Sigma_k, required >= -%.0e; BW Sigma_k must stay bitwise symmetric)\n",
           PSD_FACTOR * rtol);
    return vh_finish(&run, !fail && worst <= PASS_TOL,
                     "max relative discrepancy %.2e (pass <= %.0e)", worst, PASS_TOL);
}
