/* validate/fd.c -- the flows' vector fields against finite differences of the closed-form loss.
 *
 * Euclidean form (Theorem 1): with l(mu, C) = L(rho), Sigma_k = C_k C_k^T, the field is exactly
 *
 *     y' = -grad_{(mu, C)} l,
 *
 * checked entry by entry against central differences of gmf_flow_loss (Euclidean flow).
 *
 * BW form (Theorems 3/4): with L(mu, Sigma) = gmf_sqloss_eval and G_k = grad_{Sigma_k} L the
 * gradient over symmetric matrices (dL = sum_k <G_k, dSigma_k>_F for symmetric dSigma_k), the
 * first variation gives grad_{mu_k} L = (1/K) E_k grad dL and G_k = (1/(2K)) E_k hess dL, so the
 * BW field of flow.h is
 *
 *     mu_k'    = -E_k grad dL                 = -K grad_{mu_k} L
 *     Sigma_k' = -(H_k Sigma_k + Sigma_k H_k) = -2K (G_k Sigma_k + Sigma_k G_k),  H_k = 2K G_k.
 *
 * G_k by differences: a diagonal entry perturbs Sigma_aa alone (dL/de = G_aa); an off-diagonal
 * pair perturbs Sigma_ab and Sigma_ba together (Sigma stays symmetric), dL/de = 2 G_ab, so
 * G_ab = (dL/de) / 2.
 *
 * Differences: central, Richardson-extrapolated over steps h and h/2 (error O(h^4)), with the
 * step scaled per entry by the component's standard deviations, h = 1e-3 sqrt(Sigma_aa) for
 * mu_a and C_ab, h = 1e-3 sqrt(Sigma_aa Sigma_bb) for Sigma_ab (the loss varies on that scale).
 *
 * Figure: per case and block (mu, C or Sigma), max_e |field_e - fd_e| / max_e |fd_e|; pass when
 * the largest is <= 1e-7.  Also printed: the componentwise relative error over entries with
 * |fd_e| >= 1e-3 max|fd| ("comp rel"), and "cd err" = max_e |D_e(h/2) - D_e(h)| / 3 / max|fd|,
 * the estimated error of the plain central difference before extrapolation (the extrapolated
 * value is much better than that, which the measured error shows).
 *
 * Usage: fd [--n N] [--d D] [--K K] [--seed S] [--eps E]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/flow.h"
#include "gmflow/sqloss.h"
#include "gmflow/toy.h"
#include "harness.h"
#include "testutil.h"
#include "vfd.h"

#define PASS_TOL 1e-7
#define MAXK     8

static const char *cov_name[] = {"full", "near-sing", "singular", "thin-beta"};

typedef struct {
    const char *label;
    size_t n, d, K;
    gmf_toy_teacher teacher;
    vfd_cov cov[MAXK];
    unsigned long seed;
} fcase;

/* Loss as a function of the whole state vector y. */
typedef struct {
    gmf_flow *fE;   /* Euclidean: l(mu, C) */
    gmf_sqloss *sq; /* BW: L(mu, Sigma) */
    size_t K, D;
    int failed;
} lossctx;

static double loss_at(lossctx *c, const double *y) {
    double L = NAN;
    int rc = c->fE ? gmf_flow_loss(c->fE, y, &L)
                   : gmf_sqloss_eval(c->sq, c->K, y, y + c->K * c->D, NULL, &L);
    if (rc) {
        fprintf(stderr, "fd: loss evaluation failed: %s\n", gmf_errmsg());
        c->failed = 1;
    }
    return L;
}

/* L(y + t (e_i + e_j)) (j == i: e_i alone) as a function of t, for vfd_richardson. */
typedef struct {
    lossctx *c;
    double *y;
    size_t i, j;
} lossline;

static int loss_along(void *vp, double t, double *L) {
    lossline *p = vp;
    const double yi = p->y[p->i], yj = p->y[p->j];
    p->y[p->i] = yi + t;
    if (p->j != p->i) p->y[p->j] = yj + t;
    *L = loss_at(p->c, p->y);
    p->y[p->i] = yi, p->y[p->j] = yj;
    return 0; /* a failed evaluation is recorded in c->failed */
}

/* d/de L(y + e (e_i + e_j)) by central differences at h and h/2, Richardson-extrapolated;
 * *errest = |D(h/2) - D(h)| / 3 estimates the error of D(h/2). */
static double fd_dir(lossctx *c, double *y, size_t i, size_t j, double h, double *errest) {
    lossline p = {c, y, i, j};
    double d = NAN, work[3];
    *errest = NAN; /* stays so only if loss_along failed, which it never reports */
    vfd_richardson(loss_along, &p, 1, h, &d, errest, work);
    return d;
}

/* Error of a block: max|a - b| / max|b|, and componentwise over |b_e| >= 1e-3 max|b|. */
typedef struct {
    double norm, comp, maxref, errest;
} blockerr;

static blockerr compare(size_t n, const double *field, const double *ref, const double *est) {
    blockerr e = {0, 0, tu_max_abs(ref, n), 0};
    for (size_t i = 0; i < n; i++) {
        double d = fabs(field[i] - ref[i]);
        e.norm = fmax(e.norm, d);
        if (fabs(ref[i]) >= 1e-3 * e.maxref) e.comp = fmax(e.comp, d / fabs(ref[i]));
        e.errest = fmax(e.errest, est[i]);
    }
    e.norm = e.maxref > 0 ? e.norm / e.maxref : (e.norm > 0 ? INFINITY : 0);
    e.errest = e.maxref > 0 ? e.errest / e.maxref : 0;
    return e;
}

/* Initial Euclidean state [mu | C] with Sigma_k of the case's kinds (vfd_state). */
static void make_state(const fcase *c, size_t D, double *y) {
    gsl_rng *r = tu_rng(c->seed + 4000);
    vfd_state(r, c->K, D, c->cov, y);
    gsl_rng_free(r);
}

typedef struct {
    blockerr e[4]; /* Euclid mu, Euclid C, BW mu, BW Sigma */
    double mins;   /* min_i,k s_ik (sd of beta . x_i under component k) */
    int failed;
} fresult;

static int run_case(const fcase *c, double eps, fresult *res) {
    const size_t K = c->K, D = c->d + 1;
    memset(res, 0, sizeof *res);
    vfd_problem pb;
    int rc = vfd_problem_init(&pb, c->n, c->d, K, c->teacher, c->seed);
    if (rc) {
        fprintf(stderr, "%s: %s\n", c->label, gmf_errmsg());
        vfd_problem_free(&pb);
        return rc;
    }
    gmf_flow *fE = pb.fE, *fB = pb.fB;
    const double *X = pb.X;
    const size_t N = gmf_flow_dim(fE);
    double *yE = tu_xmalloc(N * sizeof *yE), *yB = tu_xmalloc(N * sizeof *yB);
    double *field = tu_xmalloc(N * sizeof *field), *ref = tu_xmalloc(N * sizeof *ref);
    double *est = tu_xmalloc(N * sizeof *est);
    double *G = tu_xmalloc(D * D * sizeof *G), *Gest = tu_xmalloc(D * D * sizeof *Gest);
    make_state(c, D, yE);
    gmf_flow_euclid_to_bw(K, D, yE, yB);

    res->mins = INFINITY;
    for (size_t k = 0; k < K; k++) {
        const double *S = yB + gmf_flow_mat_offset(K, D, k);
        for (size_t i = 0; i < c->n; i++) {
            double s2 = 0;
            for (size_t a = 0; a < c->d; a++)
                for (size_t b = 0; b < c->d; b++)
                    s2 += X[i * c->d + a] * S[(a + 1) * D + b + 1] * X[i * c->d + b];
            res->mins = fmin(res->mins, sqrt(fmax(s2, 0)));
        }
    }

    /* ---- Euclidean: y' = -grad l */
    lossctx lc = {.fE = fE, .K = K, .D = D};
    if ((rc = gmf_flow_rhs(fE, yE, field))) goto fail;
    for (size_t k = 0; k < K; k++) {
        const double *S = yB + gmf_flow_mat_offset(K, D, k);
        for (size_t a = 0; a < D; a++) {
            size_t i = k * D + a;
            ref[i] = -fd_dir(&lc, yE, i, i, eps * sqrt(S[a * D + a]), &est[i]);
            for (size_t b = 0; b < D; b++) {
                size_t e = gmf_flow_mat_offset(K, D, k) + a * D + b;
                ref[e] = -fd_dir(&lc, yE, e, e, eps * sqrt(S[a * D + a]), &est[e]);
            }
        }
    }
    res->e[0] = compare(K * D, field, ref, est);
    res->e[1] = compare(K * D * D, field + K * D, ref + K * D, est + K * D);

    /* ---- BW: mu' = -K grad_mu L, Sigma' = -2K (G Sigma + Sigma G) */
    lossctx lb = {.sq = pb.sq, .K = K, .D = D};
    if ((rc = gmf_flow_rhs(fB, yB, field))) goto fail;
    for (size_t k = 0; k < K; k++) {
        double *S = yB + gmf_flow_mat_offset(K, D, k);
        double Sd[D];
        for (size_t a = 0; a < D; a++)
            Sd[a] = sqrt(S[a * D + a]);
        for (size_t a = 0; a < D; a++) {
            size_t i = k * D + a;
            ref[i] = -(double)K * fd_dir(&lb, yB, i, i, eps * Sd[a], &est[i]);
            est[i] *= (double)K;
            for (size_t b = 0; b <= a; b++) {
                size_t ia = gmf_flow_mat_offset(K, D, k) + a * D + b,
                       ib = gmf_flow_mat_offset(K, D, k) + b * D + a;
                double e;
                double g = fd_dir(&lb, yB, ia, ib, eps * Sd[a] * Sd[b], &e);
                G[a * D + b] = G[b * D + a] = a == b ? g : g / 2;
                Gest[a * D + b] = Gest[b * D + a] = a == b ? e : e / 2;
            }
        }
        /* ref = -2K (G S + S G); its error estimate propagates |Gest| through the same product */
        for (size_t a = 0; a < D; a++)
            for (size_t b = 0; b < D; b++) {
                double v = 0, ve = 0;
                for (size_t l = 0; l < D; l++) {
                    v += G[a * D + l] * S[l * D + b] + S[a * D + l] * G[l * D + b];
                    ve +=
                        Gest[a * D + l] * fabs(S[l * D + b]) + fabs(S[a * D + l]) * Gest[l * D + b];
                }
                ref[gmf_flow_mat_offset(K, D, k) + a * D + b] = -2.0 * (double)K * v;
                est[gmf_flow_mat_offset(K, D, k) + a * D + b] = 2.0 * (double)K * ve;
            }
    }
    res->e[2] = compare(K * D, field, ref, est);
    res->e[3] = compare(K * D * D, field + K * D, ref + K * D, est + K * D);
    res->failed = lc.failed || lb.failed;
fail:
    free(Gest);
    free(G);
    free(est);
    free(ref);
    free(field);
    free(yB);
    free(yE);
    vfd_problem_free(&pb);
    return rc;
}

int main(int argc, char **argv) {
    static const fcase ci[] = {
        {"K1-d2-full", 60, 2, 1, GMF_TOY_RELU, {VFD_COV_FULL}, 31},
        {"K1-d1-thin", 40, 1, 1, GMF_TOY_RELU, {VFD_COV_THIN}, 32},
        {"K3-d3-full", 80, 3, 3, GMF_TOY_MIXTURE, {VFD_COV_FULL, VFD_COV_FULL, VFD_COV_FULL}, 33},
        {"K2-d4-nearsing", 80, 4, 2, GMF_TOY_RELU, {VFD_COV_NEAR, VFD_COV_SING}, 34},
        {"K4-d6-mixed",
         100,
         6,
         4,
         GMF_TOY_RELU,
         {VFD_COV_FULL, VFD_COV_NEAR, VFD_COV_SING, VFD_COV_THIN},
         35},
    };
    fcase custom = {"custom", 100, 3, 2, GMF_TOY_RELU, {VFD_COV_FULL}, 1};
    int use_custom = 0;
    double eps = 1e-3;
    const vh_opt opts[] = {
        {"--n", VH_SIZE, &custom.n, NULL, &use_custom},
        {"--d", VH_SIZE, &custom.d, NULL, &use_custom},
        {"--K", VH_SIZE, &custom.K, NULL, &use_custom},
        {"--seed", VH_ULONG, &custom.seed, NULL, NULL},
        {"--eps", VH_DOUBLE, &eps, NULL, NULL},
    };
    vh_parse(argc, argv, "fd", "[--n N] [--d D] [--K K] [--seed S] [--eps E]", opts,
             sizeof opts / sizeof opts[0]);
    if (custom.n < 1 || custom.d < 1 || custom.K < 1 || custom.K > MAXK || !(eps > 0))
        vh_usage_error("need n, d >= 1, 1 <= K <= %d and eps > 0", MAXK);
    const fcase *cases = use_custom ? &custom : ci;
    size_t ncases = use_custom ? 1 : sizeof ci / sizeof ci[0];

    printf("Vector fields vs Richardson-extrapolated central differences of the loss "
           "(step %g x component sd)\n",
           eps);
    printf("%-15s %4s %2s %2s %-8s %9s  %-12s %10s %10s %10s %10s\n", "case", "n", "d", "K",
           "teacher", "min s", "block", "max|grad|", "rel err", "comp rel", "cd err");
    static const char *blk[] = {"Euclid mu", "Euclid C", "BW mu", "BW Sigma"};
    vh_run run = vh_start("fd");
    double worst = 0;
    int fail = 0;
    for (size_t ic = 0; ic < ncases; ic++) {
        const fcase *c = &cases[ic];
        fresult r;
        if (vh_case(&run, c->label, run_case(c, eps, &r)) || r.failed) {
            fail = 1;
            continue;
        }
        printf("%-15s %4zu %2zu %2zu %-8s %9.2e", c->label, c->n, c->d, c->K,
               c->teacher == GMF_TOY_RELU ? "relu" : "mixture", r.mins);
        for (int b = 0; b < 4; b++) {
            if (b) printf("%-15s %4s %2s %2s %-8s %9s", "", "", "", "", "", "");
            printf("  %-12s %10.3e %10.2e %10.2e %10.2e\n", blk[b], r.e[b].maxref, r.e[b].norm,
                   r.e[b].comp, r.e[b].errest);
            if (!(r.e[b].norm <= worst)) worst = r.e[b].norm;
        }
        printf("%-15s   covariances:", "");
        for (size_t k = 0; k < c->K; k++)
            printf(" %s", cov_name[c->cov[k]]);
        printf("\n");
    }
    return vh_finish(&run, !fail && worst <= PASS_TOL, "max relative error %.2e (pass <= %.0e)",
                     fail ? INFINITY : worst, PASS_TOL);
}
