/* validate/fixed_beta.c -- with the beta-marginal frozen, the classification flow reaches the
 * minimum of a convex problem, found independently by a damped Newton solve and by BFGS.
 *
 * Why the problem is convex.  With mu_k and C_k / sigma_k frozen, the logits are
 *
 *     h(x_i) = (1/K) sum_k (U_k P_ik + v_k A_ik) = Theta phi_i,
 *     phi_i  = (1/K) [P_i1; A_i1; ...; P_iK; A_iK] in R^M,  M = K (d + 1),
 *
 * with A_ik = E_k relu(beta . x_i) and P_ik = E_k[beta relu(beta . x_i)] fixed numbers
 * (gmf_clsflow_moments) and Theta = [U_1 v_1 ... U_K v_K] (L x M): h is LINEAR in (U, v).  The
 * per-sample loss l(h) = log(1 + sum_l exp h_l) - h_y is convex in h (its Hessian
 * diag(p) - p p^T, p = softmax([0, h])_{1..L}, is positive definite: for any a != 0,
 * a^T (diag(p) - p p^T) a = Var_q(a) >= 0 under the distribution q = (p_0, p) on {0, ..., L}
 * with a_0 := 0, and it is 0 only if a is constant on the support, i.e. a = 0 since p_0 > 0).
 * A convex function of a linear map is convex, so loss(U, v) is convex; it is STRICTLY convex
 * when the features phi_i span R^M (Hessian = (1/n) sum_i (diag(p_i) - p_i p_i^T) (x) phi_i phi_i^T
 * is then positive definite), and a minimizer exists when no direction separates the classes
 * (overlapping blobs).  Both are confirmed numerically: the Hessian's smallest eigenvalue at the
 * minimum is printed (> 0) and Newton converges quadratically to a finite point, so the minimum
 * is unique (but see "Conditioning" below).
 *
 * Three independent routes to the minimum:
 *   Newton  damped Newton on Theta from 0 with the closed-form gradient and Hessian above
 *           (features from gmf_clsflow_moments, nothing else from clsflow), Cholesky solve by
 *           LAPACKE_dposv, Armijo backtracking; once |grad|_inf <= 1e-12, one more full step
 *           (quadratic convergence takes it to rounding, |grad| ~ 1e-17).
 *   BFGS    GSL gsl_multimin_fdfminimizer_vector_bfgs2 on the same loss and gradient, from 0,
 *           restarted from its last point when its line search stalls.
 *   flow    the fixed-beta flow (gmf_clsflow_set_fixed_beta) from the paper's initialization,
 *           integrated with CVODE BDF (rtol 1e-12, atol 1e-15) to T = 40 / lambda_min(Hessian),
 *           so that its distance to the minimum has contracted by ~e^-40 (the linearized rate).
 * Pass: the flow's loss within 1e-8 (relative) of Newton's and its (U, v) within 1e-9 (max-norm,
 * relative to max |Theta*|): measured ~1e-15 and ~1e-13, the integrator's error.  BFGS must agree
 * on the loss to 1e-8 too, but on the parameters only to 1e-4: a first-order method stops at
 * |grad| ~ 1e-10 (line-search rounding), which leaves |grad| / lambda_min ~ 1e-6 in Theta.  The
 * frozen blocks (mu, C / sigma) must be bitwise unchanged along the flow, and the convex route's
 * loss at the flow's final (U, v) must equal gmf_clsflow_loss there to 1e-13 (same model), and
 * Newton must have converged (|grad|_inf <= 1e-12).
 *
 * Conditioning, and the ridge.  With K = 1 the Hessian at the minimum has condition number
 * 200-1000 on these cases.  With K >= 2 it is 1e7-1e9: the features of different components are
 * Gaussian-smoothed ReLU ridge functions, nearly linearly dependent on low-dimensional data, so
 * the minimum, though unique, lies along directions of curvature ~1e-7..1e-10 and the flow needs
 * t ~ 1e9 or more to reach it (CVODE's Newton iteration then fails at h ~ 4000, t ~ 1e9).  Those
 * cases add a small ridge (rho / 2) |(U, v)|^2, rho = 1e-3, to the objective of all three routes
 * (the flow's field gets -rho (U, v) added in this program, the library is not changed), which
 * bounds lambda_min below by rho.  The unregularized lambda_min is printed for them.
 *
 * Usage: fixed_beta [--seed S]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_multimin.h>
#include <lapacke.h>

#include "gmflow/clsflow.h"
#include "gmflow/common.h"
#include "gmflow/ode.h"
#include "harness.h"

#define TOL_LOSS       1e-8
#define TOL_PARAM      1e-9 /* flow vs Newton */
#define TOL_PARAM_BFGS 1e-4 /* BFGS vs Newton (first-order stopping, see above) */

typedef struct {
    const char *label;
    size_t n, d, nclass, K;
    gmf_clsflow_cov cov;
    double sep;
    double gamma,
        muscale;  /* frozen marginal: C = gamma I or sigma = gamma, mu ~ N(0, muscale^2 I) */
    double ridge; /* rho: objective loss + (rho / 2) |(U, v)|^2 (0: none) */
    unsigned long seed;
} fcase;

/* The convex problem in Theta (L x M, row-major, vectorized as l * M + a). */
typedef struct {
    size_t n, M, L;
    const double *Phi; /* n x M features */
    const uint8_t *y;
    double ridge;
} convex;

/* loss, gradient (may be NULL) and Hessian (LM x LM, may be NULL) at Theta. */
static double cvx_eval(const convex *c, const double *Th, double *g, double *Hs) {
    const size_t n = c->n, M = c->M, L = c->L, N = L * M;
    double loss = 0.0, p[256], h[256];
    if (g) memset(g, 0, N * sizeof *g);
    if (Hs) memset(Hs, 0, N * N * sizeof *Hs);
    for (size_t i = 0; i < n; i++) {
        const double *ph = c->Phi + i * M;
        double mx = 0.0;
        for (size_t l = 0; l < L; l++) {
            double acc = 0.0;
            for (size_t a = 0; a < M; a++)
                acc += Th[l * M + a] * ph[a];
            h[l] = acc;
            mx = fmax(mx, acc);
        }
        double se = exp(-mx);
        for (size_t l = 0; l < L; l++)
            se += exp(h[l] - mx);
        double lse = mx + log(se);
        loss += lse - (c->y[i] ? h[c->y[i] - 1] : 0.0);
        for (size_t l = 0; l < L; l++)
            p[l] = exp(h[l] - lse);
        if (g)
            for (size_t l = 0; l < L; l++) {
                double r = (p[l] - (c->y[i] == l + 1)) / (double)n;
                for (size_t a = 0; a < M; a++)
                    g[l * M + a] += r * ph[a];
            }
        if (Hs)
            for (size_t l = 0; l < L; l++)
                for (size_t l2 = 0; l2 < L; l2++) {
                    double w = ((l == l2 ? p[l] : 0.0) - p[l] * p[l2]) / (double)n;
                    for (size_t a = 0; a < M; a++)
                        for (size_t b = 0; b < M; b++)
                            Hs[(l * M + a) * N + l2 * M + b] += w * ph[a] * ph[b];
                }
    }
    /* ridge (rho / 2) |Theta|^2 */
    double rr = 0.0;
    for (size_t e = 0; e < N; e++) {
        rr += Th[e] * Th[e];
        if (g) g[e] += c->ridge * Th[e];
        if (Hs) Hs[e * N + e] += c->ridge;
    }
    return loss / (double)n + 0.5 * c->ridge * rr;
}

static double maxabs(const double *a, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i]));
    return m;
}

/* Damped Newton from Theta = 0.  Returns iterations (or -1). */
static int newton(const convex *c, double *Th, double *gnorm) {
    const size_t N = c->L * c->M;
    double *g = calloc(N, sizeof *g), *Hs = calloc(N * N, sizeof *Hs), *dx = calloc(N, sizeof *dx),
           *tr = calloc(N, sizeof *tr);
    memset(Th, 0, N * sizeof *Th);
    int it, extra = 0;
    for (it = 0; it < 60; it++) {
        double f = cvx_eval(c, Th, g, Hs);
        /* quadratic convergence: once |grad| <= 1e-12, one more full step reaches rounding */
        if (maxabs(g, N) <= 1e-12 && extra++) break;
        for (size_t e = 0; e < N; e++)
            dx[e] = -g[e];
        lapack_int info =
            LAPACKE_dposv(LAPACK_ROW_MAJOR, 'U', (lapack_int)N, 1, Hs, (lapack_int)N, dx, 1);
        if (info) {
            fprintf(stderr, "fixed_beta: Newton: Hessian not positive definite (dposv info %d)\n",
                    (int)info);
            it = -1;
            break;
        }
        double slope = 0.0;
        for (size_t e = 0; e < N; e++)
            slope += g[e] * dx[e];
        double t = 1.0;
        for (int ls = 0; ls < 60; ls++, t *= 0.5) {
            for (size_t e = 0; e < N; e++)
                tr[e] = Th[e] + t * dx[e];
            /* Armijo; near the minimum (predicted decrease below 1e-10 f) the loss cannot
             * resolve the decrease any more and the full Newton step is taken */
            if (extra || -slope < 1e-10 * f || cvx_eval(c, tr, NULL, NULL) <= f + 1e-4 * t * slope)
                break;
        }
        memcpy(Th, tr, N * sizeof *Th);
    }
    cvx_eval(c, Th, g, NULL);
    *gnorm = maxabs(g, N);
    free(g), free(Hs), free(dx), free(tr);
    return it;
}

/* smallest and largest eigenvalue of the Hessian at Theta */
static void hess_spectrum(const convex *c, const double *Th, double *lmin, double *lmax) {
    const size_t N = c->L * c->M;
    double *Hs = calloc(N * N, sizeof *Hs), *ev = calloc(N, sizeof *ev);
    cvx_eval(c, Th, NULL, Hs);
    LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'N', 'U', (lapack_int)N, Hs, (lapack_int)N, ev);
    *lmin = ev[0];
    *lmax = ev[N - 1];
    free(Hs), free(ev);
}

/* ---- GSL BFGS wrappers */
static double mm_f(const gsl_vector *x, void *p) {
    return cvx_eval(p, x->data, NULL, NULL);
}
static void mm_df(const gsl_vector *x, void *p, gsl_vector *g) {
    cvx_eval(p, x->data, g->data, NULL);
}
static void mm_fdf(const gsl_vector *x, void *p, double *f, gsl_vector *g) {
    *f = cvx_eval(p, x->data, g->data, NULL);
}

static int bfgs(convex *c, double *Th, int *iters) {
    const size_t N = c->L * c->M;
    gsl_multimin_function_fdf fn = {.f = mm_f, .df = mm_df, .fdf = mm_fdf, .n = N, .params = c};
    gsl_vector *x = gsl_vector_calloc(N);
    gsl_multimin_fdfminimizer *s =
        gsl_multimin_fdfminimizer_alloc(gsl_multimin_fdfminimizer_vector_bfgs2, N);
    gsl_multimin_fdfminimizer_set(s, &fn, x, 0.1, 0.1);
    /* bfgs2 stops making progress (iterate returns GSL_ENOPROG) when its line search meets
     * rounding; restarting from the current point a few times recovers the last digits. */
    int it = 0;
    for (int restart = 0; restart < 8; restart++) {
        if (restart) gsl_multimin_fdfminimizer_set(s, &fn, s->x, 1e-6, 0.1);
        int status = GSL_CONTINUE;
        for (; it < 20000 && status == GSL_CONTINUE; it++) {
            if (gsl_multimin_fdfminimizer_iterate(s)) break;
            status = gsl_multimin_test_gradient(s->gradient, 1e-14);
        }
        if (status == GSL_SUCCESS) break;
    }
    memcpy(Th, s->x->data, N * sizeof *Th);
    *iters = it;
    gsl_multimin_fdfminimizer_free(s);
    gsl_vector_free(x);
    return 0;
}

/* The fixed-beta field with the ridge: theta' = F(theta) - rho (0, 0, U, v). */
typedef struct {
    gmf_clsflow *f;
    double ridge;
} ridged;

static int ridged_rhs(double t, const double *y, double *ydot, void *user) {
    (void)t;
    ridged *r = user;
    if (gmf_clsflow_rhs(r->f, y, ydot)) return -1;
    const gmf_clsflow_layout *lo = gmf_clsflow_layout_of(r->f);
    for (size_t e = lo->U; e < lo->dim; e++)
        ydot[e] -= r->ridge * y[e];
    return 0;
}

static double worst_loss = 0.0, worst_param = 0.0;

static int run_case(const fcase *fc, int *ok) {
    const size_t n = fc->n, d = fc->d, K = fc->K, L = fc->nclass - 1, M = K * (d + 1), N = L * M;
    double t0 = vh_now();
    double *X;
    uint8_t *y;
    if (gmf_clsflow_blobs(n, d, fc->nclass, fc->sep, fc->seed, &X, &y)) return -1;
    gmf_clsflow *f;
    if (gmf_clsflow_new(&f, fc->cov, K, L, n, d, X, y)) {
        fprintf(stderr, "fixed_beta: %s\n", gmf_errmsg());
        return -1;
    }
    const gmf_clsflow_layout *lo = gmf_clsflow_layout_of(f);
    double *th = calloc(lo->dim, sizeof *th), *th0 = calloc(lo->dim, sizeof *th0);
    gmf_clsflow_init_paper(lo, fc->gamma, fc->seed + 500, th);
    for (size_t e = 0; e < K * d; e++)
        th[lo->mu + e] *= fc->muscale / fc->gamma;
    memcpy(th0, th, lo->dim * sizeof *th);
    /* features phi_i = (1/K) [P_ik, A_ik]_k from the frozen beta-marginal */
    double *Phi = calloc(n * M, sizeof *Phi), *A = calloc(n, sizeof *A),
           *P = calloc(n * d, sizeof *P);
    for (size_t k = 0; k < K; k++) {
        if (gmf_clsflow_moments(f, th, k, A, P)) return -1;
        for (size_t i = 0; i < n; i++) {
            for (size_t j = 0; j < d; j++)
                Phi[i * M + k * (d + 1) + j] = P[i * d + j] / (double)K;
            Phi[i * M + k * (d + 1) + d] = A[i] / (double)K;
        }
    }
    convex cv = {.n = n, .M = M, .L = L, .Phi = Phi, .y = y, .ridge = 0.0};
    /* conditioning of the unregularized problem at its own minimum (reported) */
    double *Th0 = calloc(N, sizeof *Th0), g0, lmin0 = 0.0, lmax0 = 0.0;
    if (fc->ridge > 0.0 && newton(&cv, Th0, &g0) >= 0) hess_spectrum(&cv, Th0, &lmin0, &lmax0);
    free(Th0);
    cv.ridge = fc->ridge;
    double *ThN = calloc(N, sizeof *ThN), *ThB = calloc(N, sizeof *ThB),
           *ThF = calloc(N, sizeof *ThF);
    double gN;
    int itN = newton(&cv, ThN, &gN);
    if (itN < 0) return -1;
    double lossN = cvx_eval(&cv, ThN, NULL, NULL), lmin, lmax;
    hess_spectrum(&cv, ThN, &lmin, &lmax);
    int itB;
    bfgs(&cv, ThB, &itB);
    double lossB = cvx_eval(&cv, ThB, NULL, NULL);

    /* the fixed-beta flow */
    gmf_clsflow_set_fixed_beta(f, 1);
    const double T = 40.0 / lmin;
    const double tout[2] = {0.0, T};
    gmf_ode_opts o = gmf_ode_defaults();
    o.method = GMF_ODE_CVODE_BDF;
    o.rtol = 1e-12, o.atol = 1e-15, o.max_steps = 1000000;
    gmf_ode_stats st = {0};
    ridged rd = {.f = f, .ridge = fc->ridge};
    if (gmf_ode_solve(lo->dim, ridged_rhs, &rd, th, tout, 2, &o, NULL, NULL, &st)) {
        fprintf(stderr, "fixed_beta: %s: CVODE: %s\n", fc->label, gmf_errmsg());
        return -1;
    }
    int frozen = 1;
    for (size_t e = 0; e < lo->U; e++)
        if (th[e] != th0[e]) frozen = 0;
    double lossF, rr = 0.0;
    gmf_clsflow_loss(f, th, &lossF);
    for (size_t e = lo->U; e < lo->dim; e++)
        rr += th[e] * th[e];
    lossF += 0.5 * fc->ridge * rr;
    for (size_t k = 0; k < K; k++) {
        const double *U = gmf_clsflow_U(lo, th, k), *v = gmf_clsflow_v(lo, th, k);
        for (size_t l = 0; l < L; l++) {
            for (size_t j = 0; j < d; j++)
                ThF[l * M + k * (d + 1) + j] = U[l * d + j];
            ThF[l * M + k * (d + 1) + d] = v[l];
        }
    }
    /* the convex route's loss at the flow's point must equal the flow's own loss (same model) */
    double lossFc = cvx_eval(&cv, ThF, NULL, NULL);
    double dTF = 0.0, dTB = 0.0, sc = maxabs(ThN, N), dist0 = 0.0;
    for (size_t e = 0; e < N; e++) {
        dTF = fmax(dTF, fabs(ThF[e] - ThN[e]));
        dTB = fmax(dTB, fabs(ThB[e] - ThN[e]));
    }
    for (size_t k = 0; k < K; k++) {
        const double *U = gmf_clsflow_U(lo, th0, k), *v = gmf_clsflow_v(lo, th0, k);
        for (size_t l = 0; l < L; l++) {
            for (size_t j = 0; j < d; j++)
                dist0 = fmax(dist0, fabs(U[l * d + j] - ThN[l * M + k * (d + 1) + j]));
            dist0 = fmax(dist0, fabs(v[l] - ThN[l * M + k * (d + 1) + d]));
        }
    }
    double rlF = fabs(lossF - lossN) / lossN, rlB = fabs(lossB - lossN) / lossN, rpF = dTF / sc,
           rpB = dTB / sc, rlC = fabs(lossFc - lossF) / lossF;
    int cok = gN <= 1e-12 && frozen && rlF <= TOL_LOSS && rpF <= TOL_PARAM && rlB <= TOL_LOSS &&
              rpB <= TOL_PARAM_BFGS && rlC <= 1e-13;
    *ok = *ok && cok;
    worst_loss = fmax(worst_loss, rlF);
    worst_param = fmax(worst_param, rpF);
    printf("%-16s %4zu %2zu %2zu %2zu %-4s %3zu %9.3e %9.3e %13.10f %2d %8.1e %5d %8.1e %8.1e "
           "%9.3g %6ld %8.1e %8.1e %7.1e %5.2f %s\n",
           fc->label, n, d, fc->nclass, K, fc->cov == GMF_CLSFLOW_FULL ? "full" : "diag", N, lmin,
           lmax, lossN, itN, gN, itB, rlB, rpB, T, st.nsteps, rlF, rpF, dist0 / sc, vh_now() - t0,
           cok ? "ok" : "FAIL");
    if (fc->ridge > 0.0)
        printf("%-16s   ridge rho = %g; without it lam_min = %.2e, lam_max = %.2e (cond %.1e)\n",
               "", fc->ridge, lmin0, lmax0, lmax0 / lmin0);
    if (!frozen) printf("  FAIL: the frozen blocks (mu, C / sigma) moved\n");
    if (gN > 1e-12) printf("  FAIL: Newton did not converge (|grad| %.1e)\n", gN);
    if (rlC > 1e-13) printf("  FAIL: convex route and clsflow disagree on the loss (%.2e)\n", rlC);
    gmf_clsflow_free(f);
    free(X), free(y), free(th), free(th0), free(Phi), free(A), free(P), free(ThN), free(ThB),
        free(ThF);
    return 0;
}

int main(int argc, char **argv) {
    unsigned long seed = 0;
    const vh_opt opts[] = {{"--seed", VH_ULONG, &seed, NULL, NULL}};
    vh_parse(argc, argv, "fixed_beta", "[--seed S]", opts, 1);
    const fcase cases[] = {
        {"K1-d3-c3-full", 300, 3, 3, 1, GMF_CLSFLOW_FULL, 1.0, 1.0, 0.5, 0.0, 21},
        {"K1-d5-c4-diag", 400, 5, 4, 1, GMF_CLSFLOW_DIAG, 0.7, 1.0, 0.3, 0.0, 22},
        {"K1-d2-c5-diag", 300, 2, 5, 1, GMF_CLSFLOW_DIAG, 1.0, 1.0, 0.3, 0.0, 23},
        {"K2-d3-c3-full", 300, 3, 3, 2, GMF_CLSFLOW_FULL, 1.0, 1.0, 1.5, 1e-3, 24},
        {"K3-d4-c4-diag", 300, 4, 4, 3, GMF_CLSFLOW_DIAG, 1.0, 0.5, 1.0, 1e-3, 25},
    };
    printf(
        "fixed_beta: fixed-beta flow (CVODE BDF) vs damped Newton (LAPACKE_dposv) vs GSL BFGS\n");
    printf("%-16s %4s %2s %2s %2s %-4s %3s %9s %9s %13s %2s %8s %5s %8s %8s %9s %6s %8s %8s %7s "
           "%5s\n",
           "case", "n", "d", "cl", "K", "cov", "dim", "lam_min", "lam_max", "loss*", "it", "|grad|",
           "bfgs", "dloss", "dTheta", "T", "steps", "dloss", "dTheta", "start", "sec");
    printf("%-16s %61s %-30s %-29s\n", "", "---------------- Newton ---------------",
           "---------- BFGS ----------", "------------- flow -------------");
    vh_run run = vh_start("fixed_beta");
    int ok = 1;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        fcase fc = cases[c];
        if (seed) fc.seed = seed + c;
        if (run_case(&fc, &ok)) {
            vh_case_failed(&run);
            break;
        }
    }
    printf("(dloss: |loss - loss*| / loss*; dTheta: max |Theta - Theta*| / max |Theta*|; start: "
           "the flow's initial dTheta)\n");
    return vh_finish(&run, ok,
                     "the flow reaches the Newton minimum: max dloss %.1e (pass <= %.0e), max "
                     "dTheta %.1e (pass <= %.0e)",
                     worst_loss, TOL_LOSS, worst_param, TOL_PARAM);
}
