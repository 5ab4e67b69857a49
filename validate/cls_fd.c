/* validate/cls_fd.c -- the classification flow's vector field against finite differences of the
 * closed-form loss, and the closed forms against Monte Carlo.
 *
 * (1) Finite differences.  The field of gmf_clsflow_rhs must be exactly -grad loss(theta) for
 *     theta = (mu, C or sigma, U, v) (clsflow.h).  Each entry of the gradient is compared with a
 *     central difference of gmf_clsflow_loss, Richardson-extrapolated over the steps h and h/2
 *     (error O(h^4)).  The step is scaled per entry to the scale on which the loss varies:
 *     h = eps max(sqrt(Sigma_jj), 1e-3) for mu_j and for the entries of row j of C,
 *     h = eps max(|sigma_j|, 1e-3) for sigma_j, h = eps for U and v (eps = 1e-2).  Figure per
 *     case and block: max_e |field_e + fd_e| / max_e |fd_e|.  Pass: <= 1e-7.  Two error sources:
 *     truncation ~(h / scale)^4 = eps^4 (the plain cases: ~5e-11), and rounding eps_mach L / h,
 *     which dominates on the thin components (steps ~1e-5 against a loss ~1): ~1e-9 relative.
 *     Both scale as expected (rounding as 1/eps: --eps 2e-3 gives ~2e-8, 1e-4 ~3e-7), which is
 *     how they are told apart from a modelling error (O(1): see docs/CLASSIFICATION_FLOW.md).
 *     The cases cover both parametrizations, several (n, d, L, K), a thin component (C = 1e-3 x
 *     a random matrix, or sigma ~ 1e-3: s ~ 1e-3 |x|, Phi(m/s) a steep step), a rank-deficient C
 *     with inputs in the null space of C^T (s ~ 1e-16), sigma_j = 0 with inputs along e_j (s = 0
 *     exactly, the degenerate branch), zero inputs and inputs of size 1e-9.
 *     Also checked in every case: the fixed-beta field equals the full field on (U, v) and is
 *     exactly zero on (mu, C / sigma); the minibatch gradient over idx = 0..n-1 equals the
 *     full-batch gradient to 1e-14; with repeated indices [i, i, j] it equals (2 g_i + g_j) / 3
 *     (g_i the one-sample gradient) to 1e-12.
 *
 * (2) Monte Carlo.  Draw beta = mu_k + C_k eps (FULL) or mu_k + sigma_k * eps (DIAG), eps ~
 *     N(0, I), M times per component, and estimate with no closed form at all
 *       h(x_i)_l        = (1/K) sum_k E[(U_k beta + v_k)_l relu(beta . x_i)]   vs
 * gmf_clsflow_logits loss            = loss(h_MC) (delta method: s.e. of sum_i r_i . h_MC(x_i))  vs
 * the loss grad_U, grad_v  = (1/K) E[r_i (beta relu(beta . x_i))^T], (1/K) E[r_i relu] grad_mu =
 * (1/K) E[grad F(beta)] grad_C          = (1/K) E[grad F(beta) eps^T]    (pathwise derivative of E
 * F(mu + C eps)) grad_sigma_j    = (1/K) E[grad F(beta)_j eps_j] with F(beta) = sum_i (w_i . beta +
 * b_i) relu(beta . x_i), w_i = U_k^T r_i, b_i = r_i . v_k, r_i = (softmax([0, h_i]) - e_{y_i}) / n
 * from the closed-form logits: the chain rule written as expectations of the pathwise gradient.
 * Every estimate is a mean of i.i.d. draws; the z-score of each entry is (MC - closed form) / s.e.
 * Pass: max |z| <= 5 (under correctness the ~150 z-scores are ~N(0, 1), so the largest is ~3; P(any
 * > 5) ~ 1e-4; the seed is fixed). The loss's delta-method bias is O(1/M), far below its s.e.
 * O(1/sqrt(M)).
 *
 * Usage: cls_fd [--eps E] [--draws M] [--seed S]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/clsflow.h"
#include "gmflow/common.h"
#include "harness.h"
#include "testutil.h"

#define FD_TOL 1e-7
#define MC_TOL 5.0
#define MAXK   4

typedef enum { C_PLAIN = 0, C_THIN, C_RANKDEF, C_ZEROSIG } comp_kind;
static const char *comp_name[] = {"plain", "thin", "rank-def", "sigma_j=0"};

typedef struct {
    const char *label;
    gmf_clsflow_cov cov;
    size_t n, d, L, K;
    comp_kind kind[MAXK];
    int tiny_inputs; /* a few zero rows and rows of size 1e-9 */
} fcase;

/* Build data and a state for a case.  Returns the data (X n x d, y n) and theta. */
static void make_case(const fcase *c, gsl_rng *r, const gmf_clsflow_layout *lo, double *X,
                      uint8_t *y, double *th) {
    const size_t n = c->n, d = c->d, L = c->L, K = c->K;
    tu_randn(r, n * d, 1.0, X);
    for (size_t i = 0; i < n; i++)
        y[i] = (uint8_t)gsl_rng_uniform_int(r, L + 1);
    tu_randn(r, K * d, 0.7, th + lo->mu);
    tu_randn(r, K * L * d, 0.8, th + lo->U);
    tu_randn(r, K * L, 0.5, th + lo->v);
    double *Q = tu_xmalloc(d * d * sizeof *Q);
    size_t next_row = 0; /* rows of X overwritten by the special kinds */
    for (size_t k = 0; k < K; k++) {
        double *cv = gmf_clsflow_covp(lo, th, k);
        double *mu = gmf_clsflow_mu(lo, th, k);
        if (lo->cov == GMF_CLSFLOW_FULL) {
            /* C = Q diag(lam) R^T-like: a random orthogonal Q times a diagonal, then a random
             * orthogonal on the right, so C is full and non-triangular */
            tu_rand_orthogonal(r, d, Q);
            double *Q2 = tu_xmalloc(d * d * sizeof *Q2);
            tu_rand_orthogonal(r, d, Q2);
            double lam[16];
            for (size_t j = 0; j < d; j++)
                lam[j] = 0.3 + 0.5 * gsl_rng_uniform(r);
            if (c->kind[k] == C_RANKDEF) lam[d - 1] = 0.0;
            double scale = c->kind[k] == C_THIN ? 1e-3 : 1.0;
            for (size_t a = 0; a < d; a++)
                for (size_t b = 0; b < d; b++) {
                    double acc = 0.0;
                    for (size_t j = 0; j < d; j++)
                        acc += Q[a * d + j] * lam[j] * Q2[b * d + j];
                    cv[a * d + b] = scale * acc;
                }
            if (c->kind[k] == C_RANKDEF)
                /* rows along Q e_{d-1}: C^T x = Q2 diag(lam) Q^T x = 0 up to rounding */
                for (size_t rep = 0; rep < 3 && next_row < n; rep++, next_row++) {
                    double sc = 0.5 + rep;
                    for (size_t a = 0; a < d; a++)
                        X[next_row * d + a] = sc * Q[a * d + d - 1];
                }
            free(Q2);
        } else {
            for (size_t j = 0; j < d; j++)
                cv[j] = (gsl_rng_uniform(r) < 0.5 ? -1.0 : 1.0) * (0.3 + 0.5 * gsl_rng_uniform(r));
            if (c->kind[k] == C_THIN)
                for (size_t j = 0; j < d; j++)
                    cv[j] *= 1e-3;
            if (c->kind[k] == C_ZEROSIG) {
                cv[0] = 0.0;
                /* rows along e_0: s = |sigma_0 x_0| = 0 exactly, m = mu_0 x_0 != 0 */
                if (fabs(mu[0]) < 0.2) mu[0] = 0.5;
                for (size_t rep = 0; rep < 3 && next_row < n; rep++, next_row++) {
                    for (size_t a = 0; a < d; a++)
                        X[next_row * d + a] = 0.0;
                    X[next_row * d] = rep == 1 ? -1.0 : 1.5;
                }
            }
        }
    }
    if (c->tiny_inputs)
        for (size_t rep = 0; rep < 4 && next_row < n; rep++, next_row++)
            for (size_t a = 0; a < d; a++)
                X[next_row * d + a] = rep < 2 ? 0.0 : 1e-9 * X[next_row * d + a];
    free(Q);
}

/* Per-entry finite-difference step. */
static double step_for(const gmf_clsflow_layout *lo, const double *th, size_t e, double eps) {
    const size_t d = lo->d;
    if (e >= lo->U) return eps;
    if (e < lo->covo) {
        size_t k = e / d, j = e % d;
        const double *cv = th + lo->covo + k * lo->ncov;
        double v = 0.0;
        if (lo->cov == GMF_CLSFLOW_FULL)
            for (size_t b = 0; b < d; b++)
                v += cv[j * d + b] * cv[j * d + b];
        else
            v = cv[j] * cv[j];
        return eps * fmax(sqrt(v), 1e-3);
    }
    size_t k = (e - lo->covo) / lo->ncov, w = (e - lo->covo) % lo->ncov;
    const double *cv = th + lo->covo + k * lo->ncov;
    if (lo->cov == GMF_CLSFLOW_DIAG) return eps * fmax(fabs(cv[w]), 1e-3);
    size_t j = w / d;
    double v = 0.0;
    for (size_t b = 0; b < d; b++)
        v += cv[j * d + b] * cv[j * d + b];
    return eps * fmax(sqrt(v), 1e-3);
}

static double loss_at(gmf_clsflow *f, double *th, size_t e, double delta) {
    double keep = th[e], l;
    th[e] = keep + delta;
    if (gmf_clsflow_loss(f, th, &l)) {
        fprintf(stderr, "cls_fd: loss failed: %s\n", gmf_errmsg());
        exit(1);
    }
    th[e] = keep;
    return l;
}

/* Richardson-extrapolated central difference of the loss in entry e. */
static double fd_entry(gmf_clsflow *f, double *th, size_t e, double h) {
    double d1 = (loss_at(f, th, e, h) - loss_at(f, th, e, -h)) / (2.0 * h);
    double d2 = (loss_at(f, th, e, h / 2) - loss_at(f, th, e, -h / 2)) / h;
    return (4.0 * d2 - d1) / 3.0;
}

static const char *block_name(gmf_clsflow_cov cov, int b) {
    static const char *full[] = {"mu", "C", "U", "v"}, *diag[] = {"mu", "sigma", "U", "v"};
    return cov == GMF_CLSFLOW_FULL ? full[b] : diag[b];
}

/* FD case; returns the worst block error (or +inf on a failed side check). */
static double run_fd(const fcase *c, unsigned long seed, double eps, gsl_rng *r) {
    gmf_clsflow_layout lo = gmf_clsflow_layout_make(c->cov, c->K, c->d, c->L);
    double *X = tu_xmalloc(c->n * c->d * sizeof *X), *th = tu_xmalloc(lo.dim * sizeof *th);
    uint8_t *y = tu_xmalloc(c->n);
    tu_rng_stream(r, seed);
    make_case(c, r, &lo, X, y, th);
    gmf_clsflow *f;
    if (gmf_clsflow_new(&f, c->cov, c->K, c->L, c->n, c->d, X, y)) {
        fprintf(stderr, "cls_fd: %s\n", gmf_errmsg());
        exit(1);
    }
    /* smallest s over components and samples (diagnostic) */
    double smin = INFINITY;
    for (size_t k = 0; k < c->K; k++)
        for (size_t i = 0; i < c->n; i++) {
            const double *x = X + i * c->d, *cv = gmf_clsflow_covp(&lo, th, k);
            double s2 = 0.0, xx = 0.0;
            for (size_t j = 0; j < c->d; j++) {
                double z = 0.0;
                if (c->cov == GMF_CLSFLOW_FULL)
                    for (size_t a = 0; a < c->d; a++)
                        z += x[a] * cv[a * c->d + j];
                else
                    z = cv[j] * x[j];
                s2 += z * z;
                xx += x[j] * x[j];
            }
            if (xx > 0.01) smin = fmin(smin, sqrt(s2));
        }
    double *F = tu_xmalloc(lo.dim * sizeof *F), *Ff = tu_xmalloc(lo.dim * sizeof *Ff),
           *g = tu_xmalloc(lo.dim * sizeof *g), *g2 = tu_xmalloc(lo.dim * sizeof *g2),
           *ref = tu_xmalloc(lo.dim * sizeof *ref);
    if (gmf_clsflow_rhs(f, th, F)) {
        fprintf(stderr, "cls_fd: rhs: %s\n", gmf_errmsg());
        exit(1);
    }
    for (size_t e = 0; e < lo.dim; e++)
        ref[e] = fd_entry(f, th, e, step_for(&lo, th, e, eps));
    /* side checks: fixed beta, minibatch path */
    int side_ok = 1;
    gmf_clsflow_set_fixed_beta(f, 1);
    if (gmf_clsflow_rhs(f, th, Ff)) exit(1);
    gmf_clsflow_set_fixed_beta(f, 0);
    for (size_t e = 0; e < lo.dim; e++)
        if (e < lo.U ? Ff[e] != 0.0 : Ff[e] != F[e]) side_ok = 0;
    size_t *idx = tu_xmalloc(c->n * sizeof *idx);
    for (size_t i = 0; i < c->n; i++)
        idx[i] = i;
    double lb, lf;
    if (gmf_clsflow_grad_batch(f, th, c->n, idx, &lb, g) || gmf_clsflow_grad(f, th, &lf, g2))
        exit(1);
    double dmax = 0.0, gmax = 0.0;
    for (size_t e = 0; e < lo.dim; e++) {
        dmax = fmax(dmax, fabs(g[e] - g2[e]));
        gmax = fmax(gmax, fabs(g2[e]));
        if (g2[e] != -F[e]) side_ok = 0; /* grad and rhs share one code path */
    }
    if (dmax > 1e-14 * gmax || fabs(lb - lf) > 1e-14 * fabs(lf)) side_ok = 0;
    /* repeated indices: grad over [i, i, j] = (2 g_i + g_j) / 3 */
    size_t i0 = 1 % c->n, j0 = (c->n - 1), trip[3] = {i0, i0, j0};
    double *gi = tu_xmalloc(lo.dim * sizeof *gi), *gj = tu_xmalloc(lo.dim * sizeof *gj);
    if (gmf_clsflow_grad_batch(f, th, 3, trip, NULL, g) ||
        gmf_clsflow_grad_batch(f, th, 1, &i0, NULL, gi) ||
        gmf_clsflow_grad_batch(f, th, 1, &j0, NULL, gj))
        exit(1);
    dmax = gmax = 0.0;
    for (size_t e = 0; e < lo.dim; e++) {
        double w = (2.0 * gi[e] + gj[e]) / 3.0;
        dmax = fmax(dmax, fabs(g[e] - w));
        gmax = fmax(gmax, fabs(w));
    }
    if (dmax > 1e-12 * gmax) side_ok = 0;

    size_t bstart[5] = {lo.mu, lo.covo, lo.U, lo.v, lo.dim};
    double worst = 0.0;
    char kinds[64] = "";
    for (size_t k = 0; k < c->K; k++) {
        strcat(kinds, comp_name[c->kind[k]]);
        if (k + 1 < c->K) strcat(kinds, ",");
    }
    for (int b = 0; b < 4; b++) {
        double num = 0.0, den = 0.0;
        for (size_t e = bstart[b]; e < bstart[b + 1]; e++) {
            num = fmax(num, fabs(F[e] + ref[e]));
            den = fmax(den, fabs(ref[e]));
        }
        double rel = den > 0 ? num / den : num;
        worst = fmax(worst, rel);
        if (b == 0)
            printf("%-20s %-4s %4zu %2zu %2zu %2zu %9.2e  %-5s %11.3e %10.2e   %s%s\n", c->label,
                   c->cov == GMF_CLSFLOW_FULL ? "full" : "diag", c->n, c->d, c->L, c->K, smin,
                   block_name(c->cov, b), den, rel, kinds, c->tiny_inputs ? " +tiny-x" : "");
        else
            printf("%-20s %-4s %4s %2s %2s %2s %9s  %-5s %11.3e %10.2e\n", "", "", "", "", "", "",
                   "", block_name(c->cov, b), den, rel);
    }
    printf("%-20s side checks (fixed beta, minibatch path): %s\n", "", side_ok ? "ok" : "FAIL");
    gmf_clsflow_free(f);
    free(X), free(y), free(th), free(F), free(Ff), free(g), free(g2), free(ref), free(idx),
        free(gi), free(gj);
    return side_ok ? worst : INFINITY;
}

/* ------------------------------------------------------------------------------ Monte Carlo */

typedef struct {
    double sum, sumsq;
} acc;

/* MC case; returns max |z|. */
static double run_mc(const fcase *c, unsigned long seed, size_t M, gsl_rng *r) {
    const size_t n = c->n, d = c->d, L = c->L, K = c->K;
    gmf_clsflow_layout lo = gmf_clsflow_layout_make(c->cov, K, d, L);
    double *X = tu_xmalloc(n * d * sizeof *X), *th = tu_xmalloc(lo.dim * sizeof *th);
    uint8_t *y = tu_xmalloc(n);
    tu_rng_stream(r, seed);
    make_case(c, r, &lo, X, y, th);
    gmf_clsflow *f;
    if (gmf_clsflow_new(&f, c->cov, K, L, n, d, X, y)) exit(1);
    double *H = tu_xmalloc(n * L * sizeof *H), *grad = tu_xmalloc(lo.dim * sizeof *grad),
           *R = tu_xmalloc(n * L * sizeof *R);
    double loss;
    if (gmf_clsflow_logits(f, th, H) || gmf_clsflow_grad(f, th, &loss, grad)) exit(1);
    for (size_t i = 0; i < n; i++) {
        double mx = 0.0, se;
        for (size_t l = 0; l < L; l++)
            mx = fmax(mx, H[i * L + l]);
        se = exp(-mx);
        for (size_t l = 0; l < L; l++)
            se += exp(H[i * L + l] - mx);
        for (size_t l = 0; l < L; l++)
            R[i * L + l] = (exp(H[i * L + l] - mx) / se - (y[i] == l + 1)) / (double)n;
    }
    /* Per component k: accumulators (sum, sum of squares over draws) for
     *   h contributions (n L), loss linearization q = sum_i r_i . f_i (1), and the gradient
     *   blocks of component k (dim of mu + cov + U + v of component k). */
    const size_t nb = d + lo.ncov + L * d + L;
    acc *ah = calloc(K * n * L, sizeof *ah), *aq = calloc(K, sizeof *aq),
        *ag = calloc(K * nb, sizeof *ag);
    double *beta = tu_xmalloc(d * sizeof *beta), *eps = tu_xmalloc(d * sizeof *eps),
           *val = tu_xmalloc(nb * sizeof *val), *gF = tu_xmalloc(d * sizeof *gF),
           *om = tu_xmalloc(L * sizeof *om);
    for (size_t k = 0; k < K; k++) {
        const double *mu = gmf_clsflow_mu(&lo, th, k), *cv = gmf_clsflow_covp(&lo, th, k),
                     *U = gmf_clsflow_U(&lo, th, k), *v = gmf_clsflow_v(&lo, th, k);
        for (size_t draw = 0; draw < M; draw++) {
            tu_randn(r, d, 1.0, eps);
            for (size_t a = 0; a < d; a++) {
                double z = 0.0;
                if (c->cov == GMF_CLSFLOW_FULL)
                    for (size_t b = 0; b < d; b++)
                        z += cv[a * d + b] * eps[b];
                else
                    z = cv[a] * eps[a];
                beta[a] = mu[a] + z;
            }
            for (size_t l = 0; l < L; l++) {
                om[l] = v[l];
                for (size_t a = 0; a < d; a++)
                    om[l] += U[l * d + a] * beta[a];
            }
            memset(val, 0, nb * sizeof *val);
            memset(gF, 0, d * sizeof *gF);
            double q = 0.0;
            double *vU = val + d + lo.ncov, *vv = vU + L * d;
            for (size_t i = 0; i < n; i++) {
                const double *x = X + i * d, *ri = R + i * L;
                double Y = 0.0;
                for (size_t a = 0; a < d; a++)
                    Y += beta[a] * x[a];
                double relu = Y > 0 ? Y : 0.0;
                double rom = 0.0; /* r_i . (U beta + v) = w_i . beta + b_i */
                for (size_t l = 0; l < L; l++) {
                    double hv = om[l] * relu;
                    acc *p = &ah[(k * n + i) * L + l];
                    p->sum += hv, p->sumsq += hv * hv;
                    rom += ri[l] * om[l];
                }
                q += rom * relu;
                for (size_t l = 0; l < L; l++) {
                    vv[l] += ri[l] * relu;
                    for (size_t a = 0; a < d; a++)
                        vU[l * d + a] += ri[l] * beta[a] * relu;
                }
                /* grad F = w relu + (w . beta + b) 1{Y > 0} x,  w = U^T r_i */
                for (size_t a = 0; a < d; a++) {
                    double w = 0.0;
                    for (size_t l = 0; l < L; l++)
                        w += U[l * d + a] * ri[l];
                    gF[a] += w * relu + (Y > 0 ? rom * x[a] : 0.0);
                }
            }
            for (size_t a = 0; a < d; a++)
                val[a] = gF[a];
            if (c->cov == GMF_CLSFLOW_FULL)
                for (size_t a = 0; a < d; a++)
                    for (size_t b = 0; b < d; b++)
                        val[d + a * d + b] = gF[a] * eps[b];
            else
                for (size_t a = 0; a < d; a++)
                    val[d + a] = gF[a] * eps[a];
            for (size_t e = 0; e < nb; e++) {
                double w = val[e] / (double)K;
                ag[k * nb + e].sum += w, ag[k * nb + e].sumsq += w * w;
            }
            aq[k].sum += q, aq[k].sumsq += q * q;
        }
    }
    double Md = (double)M, zmax_h = 0, zmax_g = 0, z_loss;
    /* h: (1/K) sum_k mean_k, variance (1/K^2) sum_k var_k / M */
    double *hmc = tu_xmalloc(n * L * sizeof *hmc);
    for (size_t e = 0; e < n * L; e++) {
        double mean = 0, var = 0;
        for (size_t k = 0; k < K; k++) {
            acc *p = &ah[k * n * L + e];
            double mk = p->sum / Md, vk = (p->sumsq / Md - mk * mk) * Md / (Md - 1);
            mean += mk / (double)K;
            var += vk / ((double)K * K * Md);
        }
        hmc[e] = mean;
        double se = sqrt(var);
        double z = se > 0 ? (mean - H[e]) / se : (mean == H[e] ? 0.0 : INFINITY);
        zmax_h = fmax(zmax_h, fabs(z));
    }
    /* loss(h_MC) vs loss: s.e. of the linearization sum_i r_i . h_MC_i */
    double lmc = 0.0, varq = 0.0;
    for (size_t i = 0; i < n; i++) {
        double mx = 0.0, se;
        for (size_t l = 0; l < L; l++)
            mx = fmax(mx, hmc[i * L + l]);
        se = exp(-mx);
        for (size_t l = 0; l < L; l++)
            se += exp(hmc[i * L + l] - mx);
        lmc += (mx + log(se) - (y[i] ? hmc[i * L + y[i] - 1] : 0.0)) / (double)n;
    }
    for (size_t k = 0; k < K; k++) {
        double mk = aq[k].sum / Md, vk = (aq[k].sumsq / Md - mk * mk) * Md / (Md - 1);
        varq += vk / ((double)K * K * Md);
    }
    z_loss = (lmc - loss) / sqrt(varq);
    /* gradient blocks */
    for (size_t k = 0; k < K; k++)
        for (size_t e = 0; e < nb; e++) {
            size_t ge;
            if (e < d)
                ge = lo.mu + k * d + e;
            else if (e < d + lo.ncov)
                ge = lo.covo + k * lo.ncov + (e - d);
            else if (e < d + lo.ncov + L * d)
                ge = lo.U + k * L * d + (e - d - lo.ncov);
            else
                ge = lo.v + k * L + (e - d - lo.ncov - L * d);
            acc *p = &ag[k * nb + e];
            double mean = p->sum / Md, var = (p->sumsq / Md - mean * mean) / (Md - 1);
            double se = sqrt(fmax(var, 0.0));
            double z =
                se > 0 ? (mean - grad[ge]) / se : (fabs(mean - grad[ge]) <= 1e-14 ? 0.0 : INFINITY);
            zmax_g = fmax(zmax_g, fabs(z));
        }
    printf("%-20s %-4s %4zu %2zu %2zu %2zu %8zu   h %3zu: %5.2f   loss: %5.2f   grad %3zu: %5.2f\n",
           c->label, c->cov == GMF_CLSFLOW_FULL ? "full" : "diag", n, d, L, K, M, n * L, zmax_h,
           fabs(z_loss), K * nb, zmax_g);
    gmf_clsflow_free(f);
    free(X), free(y), free(th), free(H), free(grad), free(R), free(ah), free(aq), free(ag),
        free(beta), free(eps), free(val), free(gF), free(om), free(hmc);
    return fmax(fmax(zmax_h, fabs(z_loss)), zmax_g);
}

int main(int argc, char **argv) {
    double eps = 1e-2;
    size_t M = 200000;
    unsigned long seed = 11;
    const vh_opt opts[] = {
        {"--eps", VH_DOUBLE, &eps, NULL, NULL},
        {"--draws", VH_SIZE, &M, NULL, NULL},
        {"--seed", VH_ULONG, &seed, NULL, NULL},
    };
    vh_parse(argc, argv, "cls_fd", "[--eps E] [--draws M] [--seed S]", opts,
             sizeof opts / sizeof opts[0]);
    if (!(eps > 0) || M < 100) vh_usage_error("need eps > 0 and draws >= 100");
    gsl_rng *r = tu_rng(seed);
    vh_run run = vh_start("cls_fd");
    double t0 = vh_now();
    const fcase fd_cases[] = {
        {"K1-d2-L2-full", GMF_CLSFLOW_FULL, 40, 2, 2, 1, {C_PLAIN}, 0},
        {"K2-d3-L3-diag", GMF_CLSFLOW_DIAG, 60, 3, 3, 2, {C_PLAIN, C_PLAIN}, 0},
        {"K3-d4-L2-full-thin", GMF_CLSFLOW_FULL, 50, 4, 2, 3, {C_THIN, C_RANKDEF, C_PLAIN}, 1},
        {"K2-d5-L3-diag-thin", GMF_CLSFLOW_DIAG, 80, 5, 3, 2, {C_THIN, C_ZEROSIG}, 1},
        {"K4-d3-L4-full-mixed",
         GMF_CLSFLOW_FULL,
         100,
         3,
         4,
         4,
         {C_PLAIN, C_THIN, C_RANKDEF, C_PLAIN},
         1},
        {"K3-d6-L1-diag-mixed", GMF_CLSFLOW_DIAG, 70, 6, 1, 3, {C_PLAIN, C_ZEROSIG, C_THIN}, 1},
    };
    printf("cls_fd: closed-form field vs Richardson central differences of the loss (eps %g, "
           "seed %lu)\n",
           eps, tu_seed());
    printf("%-20s %-4s %4s %2s %2s %2s %9s  %-5s %11s %10s   %s\n", "case", "cov", "n", "d", "L",
           "K", "min s", "block", "max|grad|", "rel err", "components");
    double fdworst = 0.0;
    for (size_t c = 0; c < sizeof fd_cases / sizeof fd_cases[0]; c++)
        fdworst = fmax(fdworst, run_fd(&fd_cases[c], 100 + c, eps, r));
    double t1 = vh_now();
    const fcase mc_cases[] = {
        {"K1-d2-L2-full", GMF_CLSFLOW_FULL, 12, 2, 2, 1, {C_PLAIN}, 0},
        {"K2-d3-L2-diag", GMF_CLSFLOW_DIAG, 12, 3, 2, 2, {C_PLAIN, C_PLAIN}, 0},
        {"K2-d3-L3-full", GMF_CLSFLOW_FULL, 10, 3, 3, 2, {C_PLAIN, C_RANKDEF}, 0},
    };
    printf("\nMonte Carlo: max |z| per quantity (draws per component, count of entries)\n");
    printf("%-20s %-4s %4s %2s %2s %2s %8s\n", "case", "cov", "n", "d", "L", "K", "draws");
    double zworst = 0.0;
    for (size_t c = 0; c < sizeof mc_cases / sizeof mc_cases[0]; c++)
        zworst = fmax(zworst, run_mc(&mc_cases[c], 200 + c, M, r));
    double t2 = vh_now();
    gsl_rng_free(r);
    printf("(finite differences %.2f s, Monte Carlo %.2f s)\n", t1 - t0, t2 - t1);
    return vh_finish(&run, fdworst <= FD_TOL && zworst <= MC_TOL,
                     "max FD relative error %.2e (pass <= %.0e), max MC |z| %.2f (pass <= %.0f)",
                     fdworst, FD_TOL, zworst, MC_TOL);
}
