/* validate/wfr.c -- the Wasserstein-Fisher-Rao mixture flows (docs/WFR.md, flow.h kinds
 * GMF_FLOW_WFR_BW and GMF_FLOW_WFR_EUCLID) against independent routes.
 *
 *  1. mc       the oracle's weighted prediction h(x_i) = sum_k w_k E_k f(x_i) and its
 *              E_k[dL] = -(2/n) sum_i r_i E_k f(x_i, .) against Monte Carlo (theta = mu_k + C_k z),
 *              every entry within 5 standard errors;
 *  2. reduce   alpha = 0 and equal weights: the WFR right-hand sides equal today's BW / Euclidean
 *              ones to rounding (relative 1e-13) and w' = 0 exactly;
 *  3. energy   along CVODE trajectories (alpha = 1, unequal weights) dL/dt, by a central
 *              difference of L along the velocity, equals minus the squared metric norm of the
 *              velocity computed from the velocity alone:
 *                BW:     (1/alpha) sum w_k'^2 / w_k + sum w_k (|mu_k'|^2 + tr(S_k Sigma_k S_k)),
 *                        S_k solving S Sigma + Sigma S = Sigma_k' (Lyapunov, by eigenvectors);
 *                Euclid: (1/c) |a'|^2 + |mu'|^2 + |C'|^2,  c = alpha / (4K);
 *              relative 1e-6;
 *  4. simplex  at every output time of the BW runs |sum w - 1| <= 1e-12 and min w >= 0, and
 *              |a|^2 conserved by the Euclidean run (relative 1e-8);
 *  5. forms    the Euclidean form (|a| = 1) at time t against the BW-side image flow (wfr_flat)
 *              at t / K: w, mu, Sigma relative 1e-8 (the analogue of Theorem 1); control: the WFR
 *              flow proper (mass-weighted transport) must differ from it by > 1e-3 (docs/WFR.md:
 *              no Euclidean counterpart of the WFR flow exists for D >= 2);
 *  6. gd       gradient descent on l(a, mu, C) (explicit Euler of the Euclidean form) converges to
 *              the flow at order 1: error ratios for h, h/2, h/4 in [1.7, 2.3].
 *
 * Usage: wfr [--seed S] [--draws M].  Exit 0 when every check passes.
 */
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/flow.h"
#include "gmflow/ode.h"
#include "gmflow/sqloss.h"
#include "gmflow/toy.h"
#include "harness.h"
#include "testutil.h"

#define NOUT 6
static int g_fail = 0;

static void verdict(const char *what, int ok, const char *fmt, double a, double b) {
    printf("  %-8s %s  ", what, ok ? "pass" : "FAIL");
    printf(fmt, a, b);
    printf("\n");
    if (!ok) g_fail = 1;
}

typedef struct {
    size_t n, d, K, D;
    double *X, *y;
    gmf_sqloss *sq;
} problem;

static void problem_make(problem *p, size_t n, size_t d, size_t K, unsigned long seed) {
    gmf_toy_opts to = gmf_toy_defaults();
    to.n = n, to.d = d, to.seed = seed, to.teacher = GMF_TOY_RELU;
    p->n = n, p->d = d, p->K = K, p->D = d + 1;
    if (gmf_toy_make(&to, &p->X, &p->y) || gmf_sqloss_new(&p->sq, n, d, p->X, p->y)) {
        fprintf(stderr, "wfr: %s\n", gmf_errmsg());
        exit(1);
    }
}
static void problem_free(problem *p) {
    gmf_sqloss_free(p->sq);
    free(p->X);
    free(p->y);
}

/* Euclidean WFR state [a | mu | C]: a_k^2 proportional to 1 + k (|a| = 1, unequal weights; or
 * equal), mu random, C = 0.4 I + G (full, non-symmetric). */
static void init_euclid(const problem *p, int equal, unsigned long seed, double *y) {
    const size_t K = p->K, D = p->D;
    double s = 0.0;
    for (size_t k = 0; k < K; k++)
        s += equal ? 1.0 : 1.0 + (double)k;
    for (size_t k = 0; k < K; k++)
        y[k] = sqrt((equal ? 1.0 : 1.0 + (double)k) / s);
    if (gmf_toy_init_mixture(K, D, 0.5, seed, y + K, NULL, NULL)) exit(1);
    gsl_rng *r = tu_rng(seed + 7);
    double *C = y + K + K * D;
    for (size_t i = 0; i < K * D * D; i++)
        C[i] = ((i % (D * D)) % (D + 1) == 0 ? 0.4 : 0.0) +
               gsl_ran_gaussian_ziggurat(r, 0.3 / sqrt((double)D));
    gsl_rng_free(r);
}
/* The same mixture as a BW WFR state [w | mu | C C^T]. */
static void euclid_to_wbw(size_t K, size_t D, const double *ye, double *yb) {
    gmf_flow_weights(GMF_FLOW_WFR_EUCLID, K, ye, yb);
    gmf_flow_euclid_to_bw(K, D, ye + K, yb + K);
}

static void flow_make(gmf_flow **f, gmf_flow_kind kind, const problem *p, double alpha) {
    if (gmf_flow_new(f, kind, p->K, gmf_sqloss_oracle(p->sq)) ||
        (gmf_flow_is_wfr(kind) && gmf_flow_set_alpha(*f, alpha))) {
        fprintf(stderr, "wfr: %s\n", gmf_errmsg());
        exit(1);
    }
}

/* 1. Monte Carlo of h and E_k[dL] (w unequal). */
static void check_mc(unsigned long seed, size_t draws) {
    problem p;
    problem_make(&p, 40, 2, 3, seed);
    const size_t K = p.K, D = p.D, n = p.n, d = p.d, N = K + K * D + K * D * D;
    double *ye = tu_xmalloc(N * sizeof(double)), *yb = tu_xmalloc(N * sizeof(double));
    double *pred = tu_xmalloc(n * sizeof(double)), *r = tu_xmalloc(n * sizeof(double));
    double *hs1 = tu_xmalloc(n * sizeof(double)), *hs2 = tu_xmalloc(n * sizeof(double));
    double *hm = calloc(n, sizeof(double)), *hv = calloc(n, sizeof(double));
    init_euclid(&p, 0, seed + 1, ye);
    euclid_to_wbw(K, D, ye, yb);
    gmf_flow *f;
    flow_make(&f, GMF_FLOW_WFR_BW, &p, 1.0);
    double L, th[16], z[16];
    if (D > 16 || gmf_sqloss_eval_w(p.sq, K, yb, yb + K, yb + K + K * D, pred, &L) ||
        gmf_flow_loss(f, yb, &L)) /* prepares the oracle at yb for value() */
        exit(1);
    for (size_t i = 0; i < n; i++)
        r[i] = p.y[i] - pred[i];
    gsl_rng *rng = tu_rng(seed + 3);
    double zmax = 0.0, relse = 0.0;
    for (size_t k = 0; k < K; k++) {
        const double *mu = ye + K + k * D, *C = ye + K + gmf_flow_mat_offset(K, D, k), wk = yb[k];
        double v1 = 0.0, v2 = 0.0;
        memset(hs1, 0, n * sizeof(double));
        memset(hs2, 0, n * sizeof(double));
        for (size_t m = 0; m < draws; m++) {
            for (size_t a = 0; a < D; a++)
                z[a] = gsl_ran_gaussian_ziggurat(rng, 1.0);
            for (size_t a = 0; a < D; a++) {
                th[a] = mu[a];
                for (size_t b = 0; b < D; b++)
                    th[a] += C[a * D + b] * z[b];
            }
            double dl = 0.0;
            for (size_t i = 0; i < n; i++) {
                double u = 0.0;
                for (size_t j = 0; j < d; j++)
                    u += th[j + 1] * p.X[i * d + j];
                double fx = u > 0.0 ? th[0] * u : 0.0;
                hs1[i] += fx, hs2[i] += fx * fx;
                dl += -2.0 / (double)n * r[i] * fx;
            }
            v1 += dl, v2 += dl * dl;
        }
        double mean = v1 / (double)draws, se = sqrt((v2 / draws - mean * mean) / (double)draws);
        const gmf_oracle *orc = gmf_flow_oracle(f);
        zmax = fmax(zmax, fabs(mean - orc->value(orc->ctx, k)) / se);
        relse = fmax(relse, se / fabs(mean));
        for (size_t i = 0; i < n; i++) { /* h = sum_k w_k mean_k, var sum_k w_k^2 var_k / M */
            double mi = hs1[i] / (double)draws, vi = hs2[i] / (double)draws - mi * mi;
            hm[i] += wk * mi, hv[i] += wk * wk * vi / (double)draws;
        }
    }
    for (size_t i = 0; i < n; i++)
        zmax = fmax(zmax, fabs(hm[i] - pred[i]) / sqrt(hv[i] + 1e-300));
    verdict("mc", zmax <= 5.0, "max |z| %.2f over h(x_i) and E_k[dL] (<= 5; E_k[dL] rel s.e. %.1e)",
            zmax, relse);
    gsl_rng_free(rng);
    free(hm), free(hv), free(hs1), free(hs2), free(pred), free(r), free(ye), free(yb);
    gmf_flow_free(f);
    problem_free(&p);
}

/* 2. alpha = 0, equal weights: the WFR right-hand sides against today's. */
static void check_reduce(unsigned long seed) {
    problem p;
    problem_make(&p, 60, 3, 3, seed);
    const size_t K = p.K, D = p.D, M = K * D + K * D * D, N = K + M;
    double *ye = tu_xmalloc(N * sizeof(double)), *yb = tu_xmalloc(N * sizeof(double));
    double *f1 = tu_xmalloc(N * sizeof(double)), *f0 = tu_xmalloc(M * sizeof(double));
    init_euclid(&p, 1, seed + 1, ye);
    euclid_to_wbw(K, D, ye, yb);
    gmf_flow *fw, *fe, *fW, *fE;
    flow_make(&fw, GMF_FLOW_WFR_BW, &p, 0.0);
    flow_make(&fe, GMF_FLOW_WFR_EUCLID, &p, 0.0);
    flow_make(&fW, GMF_FLOW_BW, &p, 0.0);
    flow_make(&fE, GMF_FLOW_EUCLID, &p, 0.0);
    double worst = 0.0, wmax = 0.0;
    if (gmf_flow_rhs(fw, yb, f1) || gmf_flow_rhs(fW, yb + K, f0)) exit(1);
    worst = fmax(worst, tu_max_abs_diff(f1 + K, f0, M) / tu_max_abs(f0, M));
    wmax = fmax(wmax, tu_max_abs(f1, K));
    if (gmf_flow_rhs(fe, ye, f1) || gmf_flow_rhs(fE, ye + K, f0)) exit(1);
    worst = fmax(worst, tu_max_abs_diff(f1 + K, f0, M) / tu_max_abs(f0, M));
    wmax = fmax(wmax, tu_max_abs(f1, K));
    double L1, L0;
    if (gmf_flow_loss(fw, yb, &L1) || gmf_flow_loss(fW, yb + K, &L0)) exit(1);
    worst = fmax(worst, fabs(L1 - L0) / L0);
    verdict("reduce", worst <= 1e-13 && wmax == 0.0,
            "alpha = 0, w = 1/K: max rel diff to the W flows %.1e (<= 1e-13), max |w'| %.0e (= 0)",
            worst, wmax);
    /* the oracle's E_k[dL] also comes out of the unweighted prepare: sum_k v_k / K = -(2/n)
     * sum_i r_i h_i is a second identity (h = mean_k E_k f) */
    gmf_flow_free(fw), gmf_flow_free(fe), gmf_flow_free(fW), gmf_flow_free(fE);
    free(ye), free(yb), free(f1), free(f0);
    problem_free(&p);
}

static void integrate(gmf_flow *f, const double *y0, double T, vh_traj *tr) {
    const size_t N = gmf_flow_dim(f);
    double *y = tu_xmalloc(N * sizeof(double)), tout[NOUT];
    memcpy(y, y0, N * sizeof(double));
    for (size_t j = 0; j < NOUT; j++)
        tout[j] = T * (double)j / (double)(NOUT - 1);
    tr->N = N;
    tr->Y = tu_xmalloc(NOUT * N * sizeof(double));
    gmf_ode_opts o = gmf_ode_defaults();
    o.rtol = 1e-12, o.atol = 1e-14, o.max_steps = 1000000;
    if (gmf_ode_solve(N, gmf_flow_ode_rhs, f, y, tout, NOUT, &o, vh_traj_store, tr, NULL)) {
        fprintf(stderr, "wfr: integration failed: %s\n", gmf_errmsg());
        exit(1);
    }
    free(y);
}

/* tr(S Sigma S) for the S solving S Sigma + Sigma S = V (V symmetric): with Sigma = Q L Q^T and
 * Vt = Q^T V Q it is (1/2) sum_ab Vt_ab^2 / (l_a + l_b). */
static double bw_norm2(size_t D, const double *Sigma, const double *V) {
    double *Q = tu_xmalloc(D * D * sizeof(double)), *l = tu_xmalloc(D * sizeof(double));
    double *T = tu_xmalloc(D * D * sizeof(double)), *Vt = tu_xmalloc(D * D * sizeof(double));
    memcpy(Q, Sigma, D * D * sizeof(double));
    if (LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)D, Q, (lapack_int)D, l)) exit(1);
    tu_matmul(D, D, D, V, Q, T); /* T = V Q; Vt = Q^T T */
    for (size_t a = 0; a < D; a++)
        for (size_t b = 0; b < D; b++) {
            double s = 0.0;
            for (size_t c = 0; c < D; c++)
                s += Q[c * D + a] * T[c * D + b];
            Vt[a * D + b] = s;
        }
    double s = 0.0;
    for (size_t a = 0; a < D; a++)
        for (size_t b = 0; b < D; b++)
            s += 0.5 * Vt[a * D + b] * Vt[a * D + b] / (l[a] + l[b]);
    free(Q), free(l), free(T), free(Vt);
    return s;
}

/* The squared metric norm of the velocity F at y (see the header), from F alone. */
static double metric_norm2(gmf_flow *f, const double *y, const double *F) {
    const size_t K = gmf_flow_K(f), D = gmf_flow_D(f), N = gmf_flow_dim(f);
    const double alpha = gmf_flow_alpha(f);
    double s = 0.0;
    if (gmf_flow_kind_of(f) == GMF_FLOW_WFR_EUCLID) {
        for (size_t i = K; i < N; i++)
            s += F[i] * F[i];
        if (alpha > 0.0)
            for (size_t k = 0; k < K; k++)
                s += F[k] * F[k] * 4.0 * (double)K / alpha;
        return s;
    }
    for (size_t k = 0; k < K; k++) {
        if (alpha > 0.0 && y[k] > 0.0) s += F[k] * F[k] / (alpha * y[k]);
        const double *mu = F + K + k * D;
        double m2 = 0.0;
        for (size_t a = 0; a < D; a++)
            m2 += mu[a] * mu[a];
        const double wt =
            gmf_flow_wfr_flat(f) ? 1.0 / (double)K : y[k]; /* flat: metric (1/K) |.|^2 */
        s += wt * (m2 + bw_norm2(D, y + K + gmf_flow_mat_offset(K, D, k),
                                 F + K + gmf_flow_mat_offset(K, D, k)));
    }
    return s;
}

/* dL/dt at y by a central difference along F, against -|F|^2; returns the relative error. */
static double energy_err(gmf_flow *f, const double *y, double *F, double *yp) {
    const size_t N = gmf_flow_dim(f);
    double Lp, Lm;
    if (gmf_flow_rhs(f, y, F)) exit(1);
    const double e = 1e-5 / tu_max_abs(F, N);
    for (size_t i = 0; i < N; i++)
        yp[i] = y[i] + e * F[i];
    if (gmf_flow_loss(f, yp, &Lp)) exit(1);
    for (size_t i = 0; i < N; i++)
        yp[i] = y[i] - e * F[i];
    if (gmf_flow_loss(f, yp, &Lm)) exit(1);
    const double dLdt = (Lp - Lm) / (2.0 * e), n2 = metric_norm2(f, y, F);
    return fabs(dLdt + n2) / n2;
}

static double rel(size_t n, const double *a, const double *b) {
    return tu_max_abs_diff(a, b, n) / fmax(tu_max_abs(b, n), 1e-300);
}

/* 3.-5.: energy identity, simplex, and the Euclidean form against its BW-side image. */
static void check_flows(unsigned long seed, size_t K, double alpha, double T) {
    problem p;
    problem_make(&p, 80, 2, K, seed);
    const size_t D = p.D, N = K + K * D + K * D * D;
    double *ye = tu_xmalloc(N * sizeof(double)), *yb = tu_xmalloc(N * sizeof(double));
    double *F = tu_xmalloc(N * sizeof(double)), *yp = tu_xmalloc(N * sizeof(double));
    init_euclid(&p, 0, seed + 1, ye);
    euclid_to_wbw(K, D, ye, yb);
    gmf_flow *fe, *fw, *ff;
    flow_make(&fe, GMF_FLOW_WFR_EUCLID, &p, alpha);
    flow_make(&fw, GMF_FLOW_WFR_BW, &p, alpha);
    flow_make(&ff, GMF_FLOW_WFR_BW, &p, alpha);
    if (gmf_flow_set_wfr_flat(ff, 1)) {
        fprintf(stderr, "wfr: %s\n", gmf_errmsg());
        exit(1);
    }
    vh_traj te, tw, tf;
    integrate(fe, ye, T * (double)K, &te);
    integrate(fw, yb, T, &tw);
    integrate(ff, yb, T, &tf);
    double een[3] = {0.0, 0.0, 0.0}, L0, LT, sum = 0.0, wmin = INFINITY, a2 = 0.0, dform = 0.0,
           dctl = 0.0, moved = 0.0;
    for (size_t j = 0; j < NOUT; j++) {
        double *Ye = te.Y + j * N, *Yw = tw.Y + j * N, *Yf = tf.Y + j * N, s = 0.0, q = 0.0;
        een[0] = fmax(een[0], energy_err(fe, Ye, F, yp));
        een[1] = fmax(een[1], energy_err(fw, Yw, F, yp));
        een[2] = fmax(een[2], energy_err(ff, Yf, F, yp));
        for (size_t k = 0; k < K; k++) {
            s += Yw[k], q += Ye[k] * Ye[k];
            wmin = fmin(wmin, fmin(Yw[k], Yf[k]));
        }
        sum = fmax(sum, fabs(s - 1.0));
        s = 0.0;
        for (size_t k = 0; k < K; k++)
            s += Yf[k];
        sum = fmax(sum, fabs(s - 1.0));
        a2 = fmax(a2, fabs(q - 1.0));
        euclid_to_wbw(K, D, Ye, yp); /* [w | mu | C C^T] */
        dform = fmax(dform, fmax(rel(K, yp, Yf), rel(N - K, yp + K, Yf + K)));
        dctl = fmax(dctl, fmax(rel(K, yp, Yw), rel(N - K, yp + K, Yw + K)));
        moved = fmax(moved, rel(K, Yw, tw.Y));
    }
    if (gmf_flow_loss(fw, tw.Y, &L0) || gmf_flow_loss(fw, tw.Y + (NOUT - 1) * N, &LT)) exit(1);
    printf(" K = %zu, alpha = %g, BW time %g (w moved by %.2f relative; WFR L %.4g -> %.4g):\n", K,
           alpha, T, moved, L0, LT);
    printf("  (energy: Euclid %.1e, WFR %.1e, flat image %.1e)\n", een[0], een[1], een[2]);
    een[0] = fmax(een[0], fmax(een[1], een[2]));
    verdict("energy", een[0] <= 1e-6, "max |dL/dt + |v|^2| / |v|^2 = %.1e (<= %.0e)", een[0], 1e-6);
    verdict("simplex", sum <= 1e-12 && wmin >= 0.0,
            "max |sum w - 1| = %.1e (<= 1e-12), min w = %.3g (>= 0)", sum, wmin);
    verdict("norm a", a2 <= 1e-8, "max ||a|^2 - 1| = %.1e (<= %.0e)", a2, 1e-8);
    verdict("forms", dform <= 1e-8, "Euclid(t) vs flat BW image(t/K): %.1e (<= %.0e)", dform, 1e-8);
    verdict("control", dctl > 1e-3, "Euclid(t) vs the WFR flow(t/K): %.1e (> %.0e: they differ)",
            dctl, 1e-3);
    free(te.Y), free(tw.Y), free(tf.Y);
    gmf_flow_free(fe), gmf_flow_free(fw), gmf_flow_free(ff);
    free(ye), free(yb), free(F), free(yp);
    problem_free(&p);
}

/* 6. gradient descent on l(a, mu, C) -> the Euclidean flow at order 1. */
static void check_gd(unsigned long seed) {
    problem p;
    problem_make(&p, 50, 2, 2, seed);
    const size_t K = p.K, D = p.D, N = K + K * D + K * D * D;
    const double T = 2.0;
    double *y0 = tu_xmalloc(N * sizeof(double)), *y = tu_xmalloc(N * sizeof(double));
    double *F = tu_xmalloc(N * sizeof(double));
    init_euclid(&p, 0, seed + 1, y0);
    gmf_flow *f;
    flow_make(&f, GMF_FLOW_WFR_EUCLID, &p, 2.0);
    vh_traj tr;
    integrate(f, y0, T, &tr);
    const double *yT = tr.Y + (NOUT - 1) * N;
    double err[3];
    for (int m = 0; m < 3; m++) {
        const long steps = 20L << m;
        const double h = T / (double)steps;
        memcpy(y, y0, N * sizeof(double));
        for (long s = 0; s < steps; s++) {
            if (gmf_flow_rhs(f, y, F)) exit(1);
            for (size_t i = 0; i < N; i++)
                y[i] += h * F[i];
        }
        err[m] = tu_max_abs_diff(y, yT, N);
    }
    const double r1 = err[0] / err[1], r2 = err[1] / err[2];
    printf(" gradient descent, h = T/20, T/40, T/80: errors %.2e %.2e %.2e\n", err[0], err[1],
           err[2]);
    verdict("gd", r1 >= 1.7 && r1 <= 2.3 && r2 >= 1.7 && r2 <= 2.3,
            "error ratios %.3f %.3f (order 1: in [1.7, 2.3])", r1, r2);
    free(tr.Y), free(y0), free(y), free(F);
    gmf_flow_free(f);
    problem_free(&p);
}

int main(int argc, char **argv) {
    unsigned long seed = 5;
    size_t draws = 200000;
    const vh_opt opts[] = {
        {"--seed", VH_ULONG, &seed, NULL, NULL},
        {"--draws", VH_SIZE, &draws, NULL, NULL},
    };
    vh_parse(argc, argv, "wfr", "[--seed S] [--draws M]", opts, sizeof opts / sizeof opts[0]);
    if (draws < 100) vh_usage_error("--draws: need at least 100 draws");
    vh_run run = vh_start("wfr");
    printf("Wasserstein-Fisher-Rao mixture flows (docs/WFR.md)\n");
    check_mc(seed, draws);
    check_reduce(seed + 10);
    check_flows(seed + 20, 3, 1.0, 3.0);
    check_flows(seed + 30, 4, 5.0, 2.0);
    check_gd(seed + 40);
    return vh_finish(&run, !g_fail, "WFR flows: MC, reduction, energy, simplex, forms, gd");
}
