/* validate/sgd_mean.c -- the mean of many independent minibatch-SGD runs tracks the
 * classification flow, with a gap that shrinks at first order in the step.
 *
 * SGD with step eta and batch B, indices drawn uniformly WITH replacement (so each minibatch
 * gradient is an unbiased estimate of the full gradient):
 *     theta_{j+1} = theta_j - eta grad loss_batch(theta_j)     (gmf_clsflow_grad_batch)
 * R independent runs (run r seeded with seed * 100003 + r), N = T / eta steps each, from the same
 * theta_0.  With theta(T) the flow (CVODE, rtol 1e-12) and m_R the mean of the R final iterates,
 *     gap(eta)   = || m_R - theta(T) ||_2
 *     noise(eta) = sqrt(sum_e se_e^2),  se_e = sample sd of theta_N,e / sqrt(R)
 *                  (the expected size of the Monte Carlo part of the gap: E||m_R - E m_R||^2 =
 *                  sum_e Var(theta_N,e) / R)
 *     bias(eta)  = sqrt(max(gap^2 - noise^2, 0))   (gap^2 - noise^2 is unbiased for
 *                  || E theta_N - theta(T) ||^2)
 * E theta_N - theta(T) = O(eta): the Euler error of gradient descent plus the drift the noise
 * induces through the curvature of the gradient (also O(eta): each step's noise has variance
 * O(eta^2), N = T / eta steps).  The noise of the mean scales as sqrt(eta / R) (the iterate's
 * variance is O(eta T / B)), so to keep the Monte Carlo error below the bias the number of runs
 * grows as eta shrinks: R = R0 eta0 / eta makes noise / bias independent of eta.
 * Also printed: || theta_N^GD - theta(T) || for plain gradient descent at the same eta, and
 * || m_R - theta_N^GD || (the noise-induced drift, itself O(eta)).
 *
 * CI configuration: blobs n = 120, d = 2, 3 classes, K = 2, full covariance (24 parameters),
 * T = 2, B = 8, eta = 0.2, 0.1, 0.05, 0.025 with R = 1500, 3000, 6000, 12000 runs (~3 s).
 * Pass: at every eta the gap exceeds 3 noise (the bias is resolved; measured ~7), and the order
 * fitted to bias(eta) is within 1.00 +- 0.15 (at gap / noise ~ 7 each bias estimate carries ~15%
 * Monte Carlo error, which limits the fitted order to about +- 0.1).  --csv writes the table.
 *
 * Usage: sgd_mean [--T T] [--eta0 E] [--R0 R] [--B B] [--seed S] [--csv PATH]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_rng.h>

#include "gmflow/clsflow.h"
#include "gmflow/common.h"
#include "gmflow/ode.h"
#include "harness.h"

#define NETA      4
#define TOL_ORDER 0.15
#define MIN_SNR   3.0

static double dist2(const double *a, const double *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (a[i] - b[i]) * (a[i] - b[i]);
    return sqrt(s);
}

/* One row of the table: R independent SGD runs of T / eta steps (batch B, with replacement, run
 * r seeded seed * 100003 + r) from th0, their mean against the flow's yf, and plain GD at the
 * same step.  gap = |mean - yf|, noise = the Monte Carlo size of the gap, bias = sqrt(gap^2 -
 * noise^2). */
typedef struct {
    gmf_clsflow *f;
    size_t N, n, B;
    double T;
    unsigned long seed;
    const double *th0, *yf;
    gsl_rng *rng;
} sgd_setup;

static int sgd_row(const sgd_setup *s, double eta, size_t R, FILE *out, double *gap, double *noise,
                   double *bias) {
    const size_t N = s->N, B = s->B;
    double t0 = vh_now();
    const long steps = lround(s->T / eta);
    double *z = calloc(N, sizeof *z), *g = calloc(N, sizeof *g), *sum = calloc(N, sizeof *sum),
           *sq = calloc(N, sizeof *sq), *mean = calloc(N, sizeof *mean),
           *gd = calloc(N, sizeof *gd);
    size_t *idx = calloc(B, sizeof *idx);
    int rc = z && g && sum && sq && mean && gd && idx ? GMF_OK : GMF_ENOMEM;
    for (size_t r = 0; r < R && !rc; r++) {
        gsl_rng_set(s->rng, s->seed * 100003UL + r);
        memcpy(z, s->th0, N * sizeof *z);
        for (long j = 0; j < steps && !rc; j++) {
            for (size_t b = 0; b < B; b++)
                idx[b] = (size_t)gsl_rng_uniform_int(s->rng, s->n);
            rc = gmf_clsflow_grad_batch(s->f, z, B, idx, NULL, g);
            for (size_t i = 0; i < N; i++)
                z[i] -= eta * g[i];
        }
        for (size_t i = 0; i < N; i++)
            sum[i] += z[i], sq[i] += z[i] * z[i];
    }
    double var_mean = 0.0;
    for (size_t i = 0; i < N && !rc; i++) {
        mean[i] = sum[i] / (double)R;
        double v = (sq[i] / (double)R - mean[i] * mean[i]) * (double)R / (double)(R - 1);
        var_mean += fmax(v, 0.0) / (double)R;
    }
    /* plain gradient descent at the same step */
    if (!rc) memcpy(gd, s->th0, N * sizeof *gd);
    for (long j = 0; j < steps && !rc; j++) {
        rc = gmf_clsflow_grad(s->f, gd, NULL, g);
        for (size_t i = 0; i < N; i++)
            gd[i] -= eta * g[i];
    }
    if (!rc) {
        *gap = dist2(mean, s->yf, N);
        *noise = sqrt(var_mean);
        *bias = sqrt(fmax(*gap * *gap - var_mean, 0.0));
        const double gde = dist2(gd, s->yf, N), mgd = dist2(mean, gd, N);
        printf("%9.4f %6zu %6ld %11.4e %11.4e %11.4e %7.1f %11.4e %11.4e %6.2f\n", eta, R, steps,
               *gap, *noise, *bias, *gap / *noise, gde, mgd, vh_now() - t0);
        if (out)
            fprintf(out, "%.10g,%zu,%zu,%ld,%.10g,%.10g,%.10g,%.10g,%.10g\n", eta, R, B, steps,
                    *gap, *noise, *bias, gde, mgd);
    }
    free(z), free(g), free(sum), free(sq), free(mean), free(gd), free(idx);
    return rc;
}

static int fail(const char *what) {
    fprintf(stderr, "sgd_mean: %s: %s\n", what, gmf_errmsg());
    return 1;
}

int main(int argc, char **argv) {
    double T = 2.0, eta0 = 0.2;
    size_t R0 = 1500, B = 8;
    unsigned long seed = 41;
    const char *csv = NULL;
    const vh_opt opts[] = {
        {"--T", VH_DOUBLE, &T, NULL, NULL},      {"--eta0", VH_DOUBLE, &eta0, NULL, NULL},
        {"--R0", VH_SIZE, &R0, NULL, NULL},      {"--B", VH_SIZE, &B, NULL, NULL},
        {"--seed", VH_ULONG, &seed, NULL, NULL}, {"--csv", VH_STRING, &csv, NULL, NULL},
    };
    vh_parse(argc, argv, "sgd_mean", "[--T T] [--eta0 E] [--R0 R] [--B B] [--seed S] [--csv PATH]",
             opts, sizeof opts / sizeof opts[0]);
    if (!(T > 0) || !(eta0 > 0) || eta0 > T || R0 < 10 || B < 1)
        vh_usage_error("need 0 < eta0 <= T, R0 >= 10, B >= 1");
    vh_run run = vh_start("sgd_mean");
    const size_t n = 120, d = 2, nclass = 3, K = 2, L = nclass - 1;
    double *X;
    uint8_t *y;
    if (gmf_clsflow_blobs(n, d, nclass, 1.5, seed, &X, &y)) return fail("blobs");
    gmf_clsflow *f;
    if (gmf_clsflow_new(&f, GMF_CLSFLOW_FULL, K, L, n, d, X, y)) return fail("flow");
    const gmf_clsflow_layout *lo = gmf_clsflow_layout_of(f);
    const size_t N = lo->dim;
    double *th0 = calloc(N, sizeof *th0), *yf = calloc(N, sizeof *yf);
    gmf_clsflow_init_paper(lo, 0.5, seed + 7, th0);
    memcpy(yf, th0, N * sizeof *yf);
    gmf_ode_opts o = gmf_ode_defaults();
    o.rtol = 1e-12, o.atol = 1e-14;
    const double te[2] = {0.0, T};
    if (gmf_ode_solve(N, gmf_clsflow_ode_rhs, f, yf, te, 2, &o, NULL, NULL, NULL))
        return fail("flow integration");
    double L0, LT;
    gmf_clsflow_loss(f, th0, &L0);
    gmf_clsflow_loss(f, yf, &LT);
    printf("sgd_mean: minibatch SGD (B = %zu of n = %zu, with replacement) vs the flow at T = %g\n",
           B, n, T);
    printf("blobs: d = %zu, %zu classes, K = %zu, full covariance, %zu parameters; loss %.5f -> "
           "%.5f, |theta(T) - theta(0)| = %.3f\n",
           d, nclass, K, N, L0, LT, dist2(yf, th0, N));
    printf("%9s %6s %6s %11s %11s %11s %7s %11s %11s %6s\n", "eta", "R", "steps", "gap", "noise",
           "bias", "gap/noi", "GD err", "mean-GD", "sec");
    FILE *out = vh_csv_open(csv, "eta,R,B,steps,gap,noise,bias,gd_err,mean_minus_gd");
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    double eta[NETA], bias[NETA], gap[NETA], noise[NETA];
    int ok = 1;
    const sgd_setup su = {f, N, n, B, T, seed, th0, yf, rng};
    for (int e = 0; e < NETA; e++) {
        eta[e] = eta0 / (double)(1 << e);
        if (sgd_row(&su, eta[e], R0 << e, out, &gap[e], &noise[e], &bias[e]))
            return fail("SGD or GD step");
        if (!(gap[e] > MIN_SNR * noise[e])) ok = 0;
    }
    if (out) fclose(out);
    double p = bias[NETA - 1] > 0 ? vh_loglog_slope(eta, bias, NETA) : NAN;
    double pg = vh_loglog_slope(eta, gap, NETA);
    ok = ok && fabs(p - 1.0) <= TOL_ORDER;
    printf("(gap = |mean_R - flow|, noise = Monte Carlo size of the gap, bias = sqrt(gap^2 - "
           "noise^2); GD err = |GD - flow|; mean-GD = noise-induced drift)\n");
    printf("fitted order of the bias %.3f, of the raw gap %.3f; every gap > %.0f noise: %s\n", p,
           pg, MIN_SNR, ok ? "yes" : "no");
    int status = vh_finish(
        &run, ok, "order of |E theta_SGD - flow| in eta %.3f (pass 1.00 +- %.2f)", p, TOL_ORDER);
    gsl_rng_free(rng);
    gmf_clsflow_free(f);
    free(X), free(y), free(th0), free(yf);
    return status;
}
