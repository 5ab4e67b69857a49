/* validate/gd_to_flow_cls.c -- full-batch gradient descent on the classification parameters
 * converges to the exact classification flow at first order in the step, and the discrete
 * trainer's full-batch steps are those gradient-descent steps.
 *
 * (1) Order.  Gradient descent with step eta on theta = (mu, C or sigma, U, v),
 *         theta_{j+1} = theta_j - eta grad loss(theta_j)      (gmf_clsflow_grad: closed form),
 *     is the explicit Euler method for the flow theta' = -grad loss (clsflow.h), so after
 *     N = t / eta steps || theta_N - theta(t) ||_inf = c(t) eta + O(eta^2).  theta(t) from CVODE
 *     (Adams, rtol 1e-12, atol 1e-14) at the matching times t_j = j eta0, j = 0..N0 = T / eta0, and
 *     err(eta) = max_j || theta_{N_j} - theta(t_j) ||_inf along the whole trajectory.
 *     eta = eta0, eta0/2, ..., eta0/2^5 (five halvings); fit log err = p log eta + b by least
 *     squares.  The same is done for the DISCRETE TRAINER itself
 *     (train.h: gmf_train_epoch, precision 64, full_batch = 1, lr = lr_sigma = eta, N epochs =
 *     N gradient-descent steps, its own forward/backward code in nn.h): err_tr(eta), the same
 *     trajectory maximum for the trainer's parameters after each matching epoch, and its order.
 * Pass: both orders within 1.00 +- 0.05 for every case and both errors decreasing at every halving.
 * The table (and results/validation/gd_to_flow_cls.csv with --csv) lists err(eta), err(eta)/eta
 * (which must approach the constant c) and err_tr(eta).  Control: --trainer-lr-scale 1.01 runs the
 * trainer with a 1% wrong step (as a mis-scaled gradient would); its error then stops shrinking (it
 * converges to the flow at time 1.01 T) and the program fails.
 *
 * (2) Trainer.  The discrete trainer (train.h, nn.h) on the same data and initial parameters
 *     (its GM / GM-full parameter vectors have exactly the layout of clsflow.h), precision 64,
 *     full_batch = 1, learning rate eta for every group (lr = lr_sigma = eta):
 *       - its gradient (gmf_nn_loss_grad_d, dscale = 1/n) equals gmf_clsflow_grad to 1e-12
 *         (relative, max-norm);
 *       - after each of 10 epochs (= 10 gradient-descent steps) its parameters equal ours to 1e-10
 *         (relative, max-norm): double-precision agreement, limited only by summation order (the
 *         trainer accumulates the gradient in chunks of eval_batch samples).
 *     Its float32 path (precision 32: float GEMM operands, double per-sample scalars and master
 *     parameters) is run too and must agree to 1e-5 (float precision, eps_f = 6e-8, amplified by
 *     the sums); its figure is printed for information.  The inputs are float (the trainer's data
 *     type): both sides use the same float-rounded x.
 *
 * Usage: gd_to_flow_cls [--T T] [--eta0 E] [--seed S] [--csv PATH] [--trainer-lr-scale S]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/clsflow.h"
#include "gmflow/common.h"
#include "gmflow/dataset.h"
#include "gmflow/nn.h"
#include "gmflow/ode.h"
#include "gmflow/train.h"
#include "harness.h"

#define NETA       6
#define NTRAIN     10
#define TOL_ORDER  0.05
#define TOL_GRAD   1e-12
#define TOL_TRAIN  1e-10
#define TOL_TRAINF 1e-5

typedef struct {
    const char *label;
    gmf_clsflow_cov cov;
    size_t n, d, nclass, K;
    double sep;
    unsigned long seed;
} gcase;

static double maxabs(const double *a, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i]));
    return m;
}
static double maxdiff(const double *a, const double *b, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i] - b[i]));
    return m;
}

static int fail(const char *what) {
    fprintf(stderr, "gd_to_flow_cls: %s: %s\n", what, gmf_errmsg());
    return 1;
}

/* The trainer cross-check.  Returns 0 and the three figures, or 1 on an API failure. */
static int trainer_check(const gcase *c, gmf_clsflow *f, const double *X, const uint8_t *y,
                         const double *th0, double eta, double *gerr, double *terr,
                         double *terr_f) {
    const gmf_clsflow_layout *lo = gmf_clsflow_layout_of(f);
    const size_t n = c->n, d = c->d, L = c->nclass - 1, N = lo->dim;
    gmf_nn_model m;
    const gmf_nn_kind kind = c->cov == GMF_CLSFLOW_FULL ? GMF_NN_GMFULL : GMF_NN_GM;
    if (gmf_nn_model_init(&m, kind, d, L, c->K, 0, 0)) return fail("trainer model");
    if (m.nparams != N) {
        fprintf(stderr, "gd_to_flow_cls: trainer has %zu parameters, clsflow %zu\n", m.nparams, N);
        return 1;
    }
    /* gradient at th0 */
    memcpy(m.params, th0, N * sizeof(double));
    gmf_nn_ws_d *ws;
    if (gmf_nn_ws_new_d(&ws, &m, n, 1)) return fail("trainer workspace");
    double *g = calloc(N, sizeof *g), *z = calloc(N, sizeof *z);
    double lt = gmf_nn_loss_grad_d(ws, X, y, n, 1.0 / (double)n, 0), lc;
    if (gmf_clsflow_grad(f, th0, &lc, g)) return fail("gradient");
    *gerr =
        fmax(maxdiff(gmf_nn_ws_grad_d(ws), g, N) / maxabs(g, N), fabs(lt / (double)n - lc) / lc);
    gmf_nn_ws_free_d(ws);

    /* NTRAIN full-batch epochs, double and float, against our gradient descent */
    gmf_dataset ds = {.n = n, .d = d, .nclass = c->nclass};
    ds.x = calloc(n * d, sizeof(float));
    ds.label = calloc(n, 1);
    for (size_t i = 0; i < n * d; i++)
        ds.x[i] = (float)X[i];
    memcpy(ds.label, y, n);
    *terr = *terr_f = 0.0;
    for (int prec = 64; prec >= 32; prec -= 32) {
        memcpy(m.params, th0, N * sizeof(double));
        memcpy(z, th0, N * sizeof(double));
        gmf_train_opts o;
        o = gmf_train_defaults();
        o.full_batch = 1, o.precision = prec, o.lr = eta, o.lr_sigma = eta, o.threads = 1;
        o.eval_batch = 64; /* several chunks: the accumulation path */
        gmf_train *t;
        if (gmf_train_new(&t, &m, &o)) return fail("trainer");
        for (size_t e = 1; e <= NTRAIN; e++) {
            double ml;
            if (gmf_train_epoch(t, &ds, e, &ml, NULL, NULL, NULL)) return fail("trainer epoch");
            if (gmf_clsflow_grad(f, z, NULL, g)) return fail("gradient");
            for (size_t i = 0; i < N; i++)
                z[i] -= eta * g[i];
            double rel = maxdiff(m.params, z, N) / maxabs(z, N);
            if (prec == 64)
                *terr = fmax(*terr, rel);
            else
                *terr_f = fmax(*terr_f, rel);
        }
        gmf_train_free(t);
    }
    gmf_nn_model_free(&m);
    free(ds.x), free(ds.label), free(g), free(z);
    return 0;
}

/* The discrete trainer from th0: N0 * every full-batch epochs (= gradient-descent steps) at
 * learning rate lr for every group, float64; *err = max over j of the distance of the parameters
 * after epoch j * every to traj + j N.  Final parameters in out.  0, or 1 on failure. */
static int trainer_run(const gcase *c, const gmf_dataset *ds, const double *th0, size_t N,
                       double lr, long N0, long every, const double *traj, double *out,
                       double *err) {
    gmf_nn_model m;
    const gmf_nn_kind kind = c->cov == GMF_CLSFLOW_FULL ? GMF_NN_GMFULL : GMF_NN_GM;
    if (gmf_nn_model_init(&m, kind, c->d, c->nclass - 1, c->K, 0, 0)) return fail("trainer model");
    if (m.nparams != N) {
        fprintf(stderr, "gd_to_flow_cls: trainer has %zu parameters, clsflow %zu\n", m.nparams, N);
        gmf_nn_model_free(&m);
        return 1;
    }
    memcpy(m.params, th0, N * sizeof(double));
    gmf_train_opts o;
    o = gmf_train_defaults();
    o.full_batch = 1, o.precision = 64, o.lr = lr, o.lr_sigma = lr, o.threads = 1;
    o.eval_batch = 64;
    gmf_train *t;
    if (gmf_train_new(&t, &m, &o)) {
        gmf_nn_model_free(&m);
        return fail("trainer");
    }
    int rc = 0;
    double ml; /* gmf_train_epoch requires the mean-loss output */
    *err = 0.0;
    for (long e = 1; e <= N0 * every && !rc; e++) {
        if (gmf_train_epoch(t, ds, (size_t)e, &ml, NULL, NULL, NULL)) rc = fail("trainer epoch");
        if (e % every == 0) *err = fmax(*err, maxdiff(m.params, traj + (size_t)(e / every) * N, N));
    }
    memcpy(out, m.params, N * sizeof(double));
    gmf_train_free(t);
    gmf_nn_model_free(&m);
    return rc;
}

typedef struct {
    double dp, dpt, g, t, tf; /* worst |order - 1| (GD, trainer), trainer gradient and steps */
} worst;

/* One case: the flow's trajectory at t_j = j eta0, j <= N0; GD and the trainer at eta0 / 2^e
 * against it (one table row per step size, a CSV row if out), their fitted orders, and the
 * trainer's gradient and steps against clsflow's.  Updates *w and *ok; 1 if a run failed. */
static int run_case(const gcase *c, long N0, double eta0, double lr_scale, FILE *out, worst *w,
                    int *ok) {
    double *X0, *X = calloc(c->n * c->d, sizeof *X);
    uint8_t *y;
    if (gmf_clsflow_blobs(c->n, c->d, c->nclass, c->sep, c->seed, &X0, &y)) return fail("blobs");
    for (size_t i = 0; i < c->n * c->d; i++)
        X[i] = (double)(float)X0[i]; /* the trainer's float inputs, exactly */
    gmf_dataset ds = {.n = c->n, .d = c->d, .nclass = c->nclass}; /* the trainer's float data */
    ds.x = calloc(c->n * c->d, sizeof(float));
    ds.label = calloc(c->n, 1);
    for (size_t i = 0; i < c->n * c->d; i++)
        ds.x[i] = (float)X0[i];
    memcpy(ds.label, y, c->n);
    gmf_clsflow *f;
    if (gmf_clsflow_new(&f, c->cov, c->K, c->nclass - 1, c->n, c->d, X, y)) return fail("flow");
    const gmf_clsflow_layout *lo = gmf_clsflow_layout_of(f);
    const size_t N = lo->dim;
    double *th0 = calloc(N, sizeof *th0), *yf = calloc(N, sizeof *yf), *z = calloc(N, sizeof *z),
           *g = calloc(N, sizeof *g), *zt = calloc(N, sizeof *zt);
    gmf_clsflow_init_paper(lo, 0.5, c->seed + 100, th0);
    memcpy(yf, th0, N * sizeof *yf);
    double *tj = calloc(N0 + 1, sizeof *tj), *traj = calloc((N0 + 1) * N, sizeof *traj);
    for (long j = 0; j <= N0; j++)
        tj[j] = (double)j * eta0;
    vh_traj so = {N, traj};
    gmf_ode_opts o = gmf_ode_defaults();
    o.rtol = 1e-12, o.atol = 1e-14;
    if (gmf_ode_solve(N, gmf_clsflow_ode_rhs, f, yf, tj, (size_t)N0 + 1, &o, vh_traj_store, &so,
                      NULL))
        return fail("flow integration");
    double L0, LT;
    gmf_clsflow_loss(f, th0, &L0);
    gmf_clsflow_loss(f, yf, &LT);
    printf("\n%s: n = %zu, d = %zu, %zu classes, K = %zu, %s, loss %.5f -> %.5f, |theta(T) - "
           "theta(0)| = %.3f\n",
           c->label, c->n, c->d, c->nclass, c->K, c->cov == GMF_CLSFLOW_FULL ? "full" : "diag", L0,
           LT, maxdiff(yf, th0, N));
    printf("(errors: max over the %ld matching times t_j = j eta0 in (0, T]; |tr - GD|: the "
           "trainer's and GD's parameters at T)\n",
           N0);
    printf("%10s %7s %14s %12s %14s %10s\n", "eta", "steps", "err (GD)", "err/eta", "err (trainer)",
           "|tr - GD|");
    double eta[NETA], err[NETA], errt[NETA];
    int mono = 1;
    for (int e = 0; e < NETA; e++) {
        eta[e] = eta0 / (double)(1 << e);
        const long every = 1L << e, steps = N0 * every;
        memcpy(z, th0, N * sizeof *z);
        err[e] = 0.0;
        for (long j = 1; j <= steps; j++) {
            if (gmf_clsflow_grad(f, z, NULL, g)) return fail("gradient step");
            for (size_t i = 0; i < N; i++)
                z[i] -= eta[e] * g[i];
            if (j % every == 0)
                err[e] = fmax(err[e], maxdiff(z, traj + (size_t)(j / every) * N, N));
        }
        if (trainer_run(c, &ds, th0, N, lr_scale * eta[e], N0, every, traj, zt, &errt[e])) return 1;
        if (e && !(err[e] < err[e - 1] && errt[e] < errt[e - 1])) mono = 0;
        printf("%10.4e %7ld %14.6e %12.6f %14.6e %10.2e\n", eta[e], steps, err[e], err[e] / eta[e],
               errt[e], maxdiff(zt, z, N));
        if (out)
            fprintf(out, "%s,%.10g,%ld,%.10g,%.10g,%.10g\n", c->label, eta[e], steps, err[e],
                    err[e] / eta[e], errt[e]);
    }
    double p = vh_loglog_slope(eta, err, NETA), pt = vh_loglog_slope(eta, errt, NETA);
    w->dp = fmax(w->dp, fabs(p - 1.0));
    w->dpt = fmax(w->dpt, fabs(pt - 1.0));
    *ok = *ok && mono && fabs(p - 1.0) <= TOL_ORDER && fabs(pt - 1.0) <= TOL_ORDER;
    printf("fitted order: GD %.4f, trainer %.4f (pass 1.00 +- %.2f)%s\n", p, pt, TOL_ORDER,
           mono ? "" : "  FAIL: error not decreasing");

    double ge, te_, tf;
    if (trainer_check(c, f, X, y, th0, eta0 / 4, &ge, &te_, &tf)) return 1;
    printf("trainer (eta %g, %d full-batch epochs): gradient %.2e (pass <= %.0e), "
           "parameters float64 %.2e (pass <= %.0e), float32 %.2e (pass <= %.0e)\n",
           eta0 / 4, NTRAIN, ge, TOL_GRAD, te_, TOL_TRAIN, tf, TOL_TRAINF);
    w->g = fmax(w->g, ge), w->t = fmax(w->t, te_), w->tf = fmax(w->tf, tf);
    *ok = *ok && ge <= TOL_GRAD && te_ <= TOL_TRAIN && tf <= TOL_TRAINF;
    gmf_clsflow_free(f);
    free(X0), free(X), free(y), free(th0), free(yf), free(z), free(g), free(zt);
    free(ds.x), free(ds.label), free(tj), free(traj);
    return 0;
}

int main(int argc, char **argv) {
    double T = 3.0, eta0 = 0.1, lr_scale = 1.0;
    unsigned long seed = 0;
    const char *csv = NULL;
    const vh_opt opts[] = {
        {"--T", VH_DOUBLE, &T, NULL, NULL},
        {"--eta0", VH_DOUBLE, &eta0, NULL, NULL},
        {"--seed", VH_ULONG, &seed, NULL, NULL},
        {"--csv", VH_STRING, &csv, NULL, NULL},
        {"--trainer-lr-scale", VH_DOUBLE, &lr_scale, NULL, NULL},
    };
    vh_parse(argc, argv, "gd_to_flow_cls",
             "[--T T] [--eta0 E] [--seed S] [--csv PATH] [--trainer-lr-scale S]", opts,
             sizeof opts / sizeof opts[0]);
    const long N0 = !(eta0 > 0) ? 0 : lround(T / eta0);
    if (!(T > 0) || !(eta0 > 0) || N0 < 1 || fabs(N0 * eta0 - T) > 1e-9 * T || !(lr_scale > 0))
        vh_usage_error("need eta0 > 0, T a multiple of eta0 and a trainer lr scale > 0");
    vh_run run = vh_start("gd_to_flow_cls");
    const gcase cases[] = {
        {"blobs3-d3-full", GMF_CLSFLOW_FULL, 150, 3, 3, 2, 1.5, 31},
        {"blobs4-d4-diag", GMF_CLSFLOW_DIAG, 160, 4, 4, 3, 1.5, 32},
    };
    FILE *out = vh_csv_open(csv, "case,eta,steps,err,err_over_eta,err_trainer");
    int ok = 1;
    printf(
        "gd_to_flow_cls: full-batch GD vs the classification flow at T = %g (CVODE, rtol 1e-12)\n",
        T);
    worst w = {0};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        gcase c = cases[ci];
        if (seed) c.seed = seed + ci;
        if (run_case(&c, N0, eta0, lr_scale, out, &w, &ok)) return 1;
    }
    if (out) fclose(out);
    printf("\ntrainer vs clsflow: gradient %.2e, float64 steps %.2e, float32 steps %.2e\n", w.g,
           w.t, w.tf);
    return vh_finish(&run, ok,
                     "max |order - 1| GD %.4f, trainer %.4f (pass <= %.2f), trainer float64 steps "
                     "%.1e (pass <= %.0e)",
                     w.dp, w.dpt, TOL_ORDER, w.t, TOL_TRAIN);
}
