/* test_gauss_paper.c -- gmf_gauss_blocks1 / gmf_gauss_eval1 against the paper's own route
 * (Chewi, Rigollet, Yan, Appendix A.1.1), implemented here independently from the paper's text.
 *
 * The paper's route, for one input x and one coordinate j (1-based there, 0-based here): with
 * X = omega, Y = beta . x, Z = beta_j jointly Gaussian as in eq. (11),
 *
 *   alpha = rho12 s1 / s2,  gamma = rho23 s3 / s2,
 *   beta  = (rho13 s1 s3 - alpha rho23 s2 s3) / (s1^2 - 2 alpha rho12 s1 s2 + alpha^2 s2^2),
 *   A = mu2 + s2 phi(-mu2/s2) - mu2 Phi(-mu2/s2),
 *   E = mu1 - alpha mu2,
 *   F = 1 - Phi(-mu2/s2),
 *   G = (mu2^2 + s2^2) F + mu2 s2 phi(-mu2/s2),
 *   H = s1^2 - 2 alpha rho12 s1 s2 + alpha^2 s2^2 + (mu1 - alpha mu2)^2,
 *   M = mu3 - gamma mu2,
 *   N = mu3 - beta mu1 + alpha beta mu2 - gamma mu2,
 *   B = E F + alpha A,  C = A E + alpha G,  D = F H + alpha^2 G + 2 alpha A E,
 *   P_j = A M + gamma G,
 *   Q_j = E F N + alpha A N + beta F H + alpha beta A E + gamma A E + alpha gamma G,
 *
 * and the matrix form  E[grad f (x) (theta - mu)] = [[C, P^T], [D x, x Q^T]] - [A; B x] mu^T,
 * E grad f = [A; B x], E f = C.
 *
 * SLIP IN THE PAPER, eq. (11).  The printed 3x3 covariance of (X, Y, Z) is
 *     [ (s^w)^2            Sigma^{w,b} x          Sigma^{w,b} e_j        ]
 *     [ x^T Sigma^{b,w}    x^T Sigma^{b,w} x      x^T Sigma^{b,w} e_j    ]
 *     [ e_j^T Sigma^{b,w}  e_j^T Sigma^{b,w} x    e_j^T Sigma^{b,w} e_j  ]
 * The lower-right 2x2 block must use the beta-beta block Sigma^beta (d x d), not the cross
 * covariance Sigma^{beta,omega} (d x 1, for which "x^T Sigma^{b,w} x" is not even defined):
 *     var(Y) = x^T Sigma^b x,  cov(Y, Z) = x^T Sigma^b e_j,  var(Z) = e_j^T Sigma^b e_j,
 * since Y = beta . x and Z = beta_j involve beta only.  The formulas below use Sigma^beta; with
 * that reading the route agrees with Monte Carlo (check_route_mc: 2^20 draws, every block within
 * 5 standard errors) and with gmf_gauss_blocks1 to ~1e-14.  Every other formula of A.1.1 (A, B,
 * C, D, G, H, P, Q, M, N, alpha, beta, gamma, the matrix form) checked out as printed.
 *
 * The route is defined where s2 = sd(Y) > 0 and var(X - alpha Y) > 0 (it divides by both).
 * Note also that the beta-terms of its Q_j (E F N + alpha A N with N containing -beta E, and
 * beta F H + alpha beta A E) cancel to beta F (H - E^2) = F cov(Z, X - alpha Y) only in exact
 * arithmetic: as var(X - alpha Y) -> 0 (omega nearly a linear function of Y), beta grows and the
 * rounding error with it, like eps |beta| E^2: between eps / sqrt(v) and eps / v in
 * v = var(X - alpha Y) / var(X) (measured: 4e-12 at v = 1e-8).  check_stress measures this; the
 * library's conditional route has no such division.
 *
 * Tolerances: relative error against each block's natural (Cauchy-Schwarz) scale, e.g.
 * |P_j| <= (|mu3| + s3)(|mu2| + s2), at most 1e-12 on random well-posed cases; the MC check at
 * 5 SE + 1e-12.  The worst relative error is printed last.
 */
#include "gmflow/gauss.h"
#include "testutil.h"

#include <gsl/gsl_cdf.h>

#define SEED    20240612UL
#define REL_TOL 1e-12
#define ZTOL    5.0
#define NDRAW   (1L << 20)
#define NTRIALS 150

enum { DMAX = 8, DM1 = DMAX + 1 };

static tu_worst worst_rel, worst_mat, worst_z;

/* ------------------------------------------------------------------ the paper's route */

typedef struct paper_blocks {
    double A, B, C, D, P[DMAX], Q[DMAX];
    /* natural scales of each block, for relative errors */
    double sA, sB, sC, sD, sP[DMAX], sQ[DMAX];
    double varU_rel; /* var(X - alpha Y) / var(X), the route's conditioning */
} paper_blocks;

static double npdf(double t) {
    return gsl_ran_ugaussian_pdf(t);
}
static double ncdf(double t) {
    return gsl_cdf_ugaussian_P(t);
}

/* Appendix A.1.1 verbatim (with eq. (11) corrected as explained above). */
static void paper_route(size_t d, const double *x, const double *mu, const double *Sigma,
                        paper_blocks *o) {
    const size_t D = d + 1;
    const double *Sb = Sigma; /* Sigma^beta_{jk} = Sb[(j + 1) * D + k + 1] */
    /* the means of eq. (11) */
    double mu1 = mu[0], mu2 = 0.0;
    for (size_t k = 0; k < d; k++)
        mu2 += x[k] * mu[k + 1];
    /* the covariances of eq. (11): sigma_1^2, rho12 s1 s2 = Sigma^{w,b} x, s2^2 = x^T Sigma^b x */
    double s11 = Sigma[0], s12 = 0.0, s22 = 0.0;
    for (size_t k = 0; k < d; k++) {
        s12 += Sigma[k + 1] * x[k];
        for (size_t l = 0; l < d; l++)
            s22 += x[k] * Sb[(k + 1) * D + l + 1] * x[l];
    }
    double s1 = sqrt(s11), s2 = sqrt(s22);
    double rho12 = s12 / (s1 * s2);
    double alpha = rho12 * s1 / s2;
    double t = -mu2 / s2; /* the paper's argument -mu2/sigma2 */
    /* F = 1 - Phi(-mu2/s2), evaluated without cancellation as the upper tail Q(-mu2/s2) */
    double F = gsl_cdf_ugaussian_Q(t);
    double A = mu2 + s2 * npdf(t) - mu2 * ncdf(t);
    double E = mu1 - alpha * mu2;
    double G = (mu2 * mu2 + s22) * F + mu2 * s2 * npdf(t);
    double varU = s11 - 2.0 * alpha * rho12 * s1 * s2 + alpha * alpha * s22;
    double H = varU + (mu1 - alpha * mu2) * (mu1 - alpha * mu2);
    o->A = A;
    o->B = E * F + alpha * A;
    o->C = A * E + alpha * G;
    o->D = F * H + alpha * alpha * G + 2.0 * alpha * A * E;
    o->varU_rel = varU / s11;
    double aw = fabs(mu1) + s1, ay = fabs(mu2) + s2;
    o->sA = ay;
    o->sB = aw;
    o->sC = aw * ay;
    o->sD = mu1 * mu1 + s11;
    for (size_t j = 0; j < d; j++) {
        double mu3 = mu[j + 1];
        double s33 = Sb[(j + 1) * D + j + 1], s13 = Sigma[j + 1], s23 = 0.0;
        for (size_t k = 0; k < d; k++)
            s23 += x[k] * Sb[(k + 1) * D + j + 1];
        double s3 = sqrt(s33);
        double rho13 = s13 / (s1 * s3), rho23 = s23 / (s2 * s3);
        double gamma = rho23 * s3 / s2;
        double beta = (rho13 * s1 * s3 - alpha * rho23 * s2 * s3) /
                      (s11 - 2.0 * alpha * rho12 * s1 * s2 + alpha * alpha * s22);
        double M = mu3 - gamma * mu2;
        double N = mu3 - beta * mu1 + alpha * beta * mu2 - gamma * mu2;
        o->P[j] = A * M + gamma * G;
        o->Q[j] = E * F * N + alpha * A * N + beta * F * H + alpha * beta * A * E + gamma * A * E +
                  alpha * gamma * G;
        double az = fabs(mu3) + s3;
        o->sP[j] = az * ay;
        o->sQ[j] = aw * az;
    }
}

/* ------------------------------------------------------------------ comparisons */

/* Max relative error (against the natural scales) of gmf_gauss_blocks1 vs the paper's route. */
static double blocks_err(size_t d, const double *x, const double *mu, const double *Sigma,
                         const paper_blocks *pb, char *what, size_t nwhat) {
    gmf_gauss_blocks bl;
    double P[DMAX], Q[DMAX];
    gmf_gauss_blocks1(d, x, mu, Sigma, &bl, P, Q);
    double e = 0.0, v;
    snprintf(what, nwhat, "-");
#define ERR(got, want, scale, ...)                                                                 \
    do {                                                                                           \
        v = fabs((got) - (want)) / (scale);                                                        \
        if (!(v <= e)) e = v, snprintf(what, nwhat, __VA_ARGS__);                                  \
    } while (0)
    ERR(bl.A, pb->A, pb->sA, "A");
    ERR(bl.B, pb->B, pb->sB, "B");
    ERR(bl.C, pb->C, pb->sC, "C");
    ERR(bl.D, pb->D, pb->sD, "D");
    for (size_t j = 0; j < d; j++) {
        ERR(P[j], pb->P[j], pb->sP[j], "P[%zu]", j);
        ERR(Q[j], pb->Q[j], pb->sQ[j], "Q[%zu]", j);
    }
#undef ERR
    return e;
}

/* The paper's matrix form of E grad f, E f and E[grad f (x) (theta - mu)] against eval1.  Each
 * entry's error is taken relative to its natural scale: the larger of the scales of its two terms
 * ([[C, P^T], [D x, x Q^T]] and [A; B x] mu^T), built from the blocks' scales. */
static double matrix_err(size_t d, const double *x, const double *mu, const double *Sigma,
                         const paper_blocks *pb) {
    size_t D = d + 1;
    double S1[DM1 * DM1], Sc1[DM1 * DM1], gp[DM1], gs[DM1], grad[DM1], stein[DM1 * DM1];
    gmf_gauss_point p;
    gmf_gauss_eval1(d, x, mu, Sigma, &p, grad, NULL, stein, NULL);
    gp[0] = pb->A, gs[0] = pb->sA;
    for (size_t j = 0; j < d; j++)
        gp[j + 1] = pb->B * x[j], gs[j + 1] = pb->sB * fabs(x[j]);
    /* [[C, P^T], [D x, x Q^T]] and the scales of its entries */
    S1[0] = pb->C, Sc1[0] = pb->sC;
    for (size_t j = 0; j < d; j++) {
        S1[j + 1] = pb->P[j], Sc1[j + 1] = pb->sP[j];
        S1[(j + 1) * D] = pb->D * x[j], Sc1[(j + 1) * D] = pb->sD * fabs(x[j]);
        for (size_t k = 0; k < d; k++) {
            S1[(j + 1) * D + k + 1] = x[j] * pb->Q[k];
            Sc1[(j + 1) * D + k + 1] = fabs(x[j]) * pb->sQ[k];
        }
    }
    double e = 0.0;
    for (size_t a = 0; a < D; a++) {
        e = fmax(e, fabs(gp[a] - grad[a]) / gs[a]); /* E grad f = [A; B x] */
        for (size_t b = 0; b < D; b++) {
            double Sp = S1[a * D + b] - gp[a] * mu[b]; /* minus [A; B x] mu^T */
            double sc = fmax(Sc1[a * D + b], gs[a] * fabs(mu[b]));
            e = fmax(e, fabs(Sp - stein[a * D + b]) / sc);
        }
    }
    e = fmax(e, fabs(pb->C - p.Ef) / pb->sC); /* E f = C */
    return e;
}

/* ------------------------------------------------------------------ cases */

typedef struct pcase {
    size_t d;
    double x[DMAX], mu[DM1], Sigma[DM1 * DM1], L[DM1 * DM1];
} pcase;

static void random_case(gsl_rng *r, size_t d, double cond, double xscale, double sscale, pcase *c) {
    size_t D = d + 1;
    memset(c, 0, sizeof *c);
    c->d = d;
    tu_randn(r, d, xscale, c->x);
    tu_randn(r, D, sqrt(sscale), c->mu); /* mu on the scale of Sigma^(1/2): t = O(1) */
    tu_rand_spd(r, D, cond, sscale, c->Sigma, c->L);
}

/* Shift mu_beta along x so that t = m/s = (x . mu_beta) / sqrt(x^T Sigma^beta x) equals t. */
static void set_t(pcase *c, double t) {
    tu_set_t(c->d, c->x, c->Sigma, c->mu, t);
}

/* Random well-posed cases: d in 1..8, cond(Sigma) up to 1e3, scales of x and Sigma from 1e-3 to
 * 1e3 (the blocks are homogeneous, the route must not care).  Tolerance REL_TOL. */
static void check_random(gsl_rng *r) {
    static const size_t dims[] = {1, 2, 3, 5, 8};
    double emax = 0.0, mmax = 0.0, tmax = 0.0;
    for (size_t id = 0; id < sizeof dims / sizeof *dims; id++)
        for (int it = 0; it < NTRIALS; it++) {
            pcase c;
            double cond = pow(10.0, 3.0 * gsl_rng_uniform(r));
            double xs = pow(10.0, -3.0 + 6.0 * gsl_rng_uniform(r));
            double ss = pow(10.0, -3.0 + 6.0 * gsl_rng_uniform(r));
            random_case(r, dims[id], cond, xs, ss, &c);
            paper_blocks pb;
            paper_route(c.d, c.x, c.mu, c.Sigma, &pb);
            char what[32];
            double e = blocks_err(c.d, c.x, c.mu, c.Sigma, &pb, what, sizeof what);
            double em = matrix_err(c.d, c.x, c.mu, c.Sigma, &pb);
            gmf_gauss_point p;
            gmf_gauss_eval1(c.d, c.x, c.mu, c.Sigma, &p, NULL, NULL, NULL, NULL);
            CHECK(e <= REL_TOL, "random d=%zu trial %d: blocks1 vs paper rel err %.3g in %s", c.d,
                  it, e, what);
            CHECK(em <= REL_TOL, "random d=%zu trial %d: eval1 vs paper matrix form rel err %.3g",
                  c.d, it, em);
            tu_worst_update(&worst_rel, e, "random d=%zu trial %d, %s", c.d, it, what);
            tu_worst_update(&worst_mat, em, "random d=%zu trial %d", c.d, it);
            emax = fmax(emax, e);
            mmax = fmax(mmax, em);
            tmax = fmax(tmax, fabs(p.t));
        }
    printf("  random (%d cases, |t| <= %.2f): blocks max rel err %.3g, matrix form %.3g\n",
           (int)(NTRIALS * sizeof dims / sizeof *dims), tmax, emax, mmax);
}

/* Harder but still well-defined inputs: the mean in a tail (|t| = 5, 8) and omega nearly a
 * linear function of Y (var(X - alpha Y) / var(X) down to 1e-8).  The paper's route loses
 * accuracy like eps / (var(X - alpha Y) / var(X)) there (see the header comment); it is checked
 * against that bound, with the library as the reference, and the figures are printed. */
static void check_stress(gsl_rng *r) {
    /* tails: t = mu2 / s2 = +-5, +-8 */
    double etail = 0.0;
    static const double ts[] = {-8.0, -5.0, 5.0, 8.0};
    for (size_t it = 0; it < 4; it++)
        for (int rep = 0; rep < 20; rep++) {
            pcase c;
            random_case(r, 3, 10.0, 1.0, 1.0, &c);
            set_t(&c, ts[it]);
            paper_blocks pb;
            paper_route(3, c.x, c.mu, c.Sigma, &pb);
            char what[32];
            double e = blocks_err(3, c.x, c.mu, c.Sigma, &pb, what, sizeof what);
            e = fmax(e, matrix_err(3, c.x, c.mu, c.Sigma, &pb));
            CHECK(e <= REL_TOL, "tail t=%g rep %d: rel err %.3g in %s", ts[it], rep, e, what);
            tu_worst_update(&worst_rel, e, "tail t=%g rep %d, %s", ts[it], rep, what);
            etail = fmax(etail, e);
        }
    printf("  tails |t| = 5, 8 (80 cases): max rel err %.3g\n", etail);

    /* omega = a Y + small independent noise: var(X - alpha Y) / var(X) = v */
    for (int iv = 2; iv <= 8; iv += 2) {
        double v = pow(10.0, -iv), emax = 0.0;
        for (int rep = 0; rep < 20; rep++) {
            size_t d = 3, D = 4;
            pcase c;
            random_case(r, d, 10.0, 1.0, 1.0, &c);
            /* factor Lf (D x (D + 1)): the beta rows of the random factor, and omega's row
             * a * (x^T L_beta) plus its own noise in the extra column, so X = a Y + U with U
             * independent of Y and var(U) / var(X) = v */
            size_t R = D + 1;
            double Lf[DM1 * (DM1 + 1)] = {0.0}, a = 0.7, vy = 0.0;
            for (size_t i = 1; i < D; i++)
                for (size_t k = 0; k < D; k++)
                    Lf[i * R + k] = c.L[i * D + k];
            for (size_t k = 0; k < D; k++) {
                double acc = 0.0;
                for (size_t j = 0; j < d; j++)
                    acc += c.x[j] * c.L[(j + 1) * D + k];
                Lf[k] = a * acc;
                vy += acc * acc;
            }
            Lf[D] = sqrt(v / (1.0 - v) * a * a * vy);
            /* and beta gets the same extra column along a direction w orthogonal to x (so Y
             * does not see it): cov(Z_j, X - alpha Y) = Lf[D] w_j != 0, beta ~ w_j / Lf[D] */
            double w[DMAX], xw = 0.0, xx = 0.0;
            tu_randn(r, d, 1.0, w);
            for (size_t j = 0; j < d; j++)
                xw += c.x[j] * w[j], xx += c.x[j] * c.x[j];
            for (size_t j = 0; j < d; j++)
                Lf[(j + 1) * R + D] = w[j] - xw / xx * c.x[j];
            tu_gram(D, R, Lf, c.Sigma);
            paper_blocks pb;
            paper_route(d, c.x, c.mu, c.Sigma, &pb);
            char what[32];
            double e = blocks_err(d, c.x, c.mu, c.Sigma, &pb, what, sizeof what);
            double bound = 1e3 * DBL_EPSILON / pb.varU_rel;
            CHECK(e <= fmax(REL_TOL, bound),
                  "var(X - aY)/var(X) = %.3g rep %d: rel err %.3g in %s exceeds %.3g", pb.varU_rel,
                  rep, e, what, bound);
            emax = fmax(emax, e);
        }
        printf("  var(X - alpha Y)/var(X) = 1e-%d (20 cases): paper route max rel err %.3g "
               "(bound 1e3 eps / ratio = %.3g)\n",
               iv, emax, 1e3 * DBL_EPSILON / v);
    }
}

/* The corrected route against Monte Carlo, independently of the library: 2^20 draws, every
 * block within 5 standard errors (+ 1e-12). */
static void check_route_mc(gsl_rng *r) {
    size_t d = 3, D = 4, nq = 4 + 2 * d;
    pcase c;
    random_case(r, d, 10.0, 1.0, 1.0, &c);
    c.mu[0] += 0.5; /* keep mu_w away from 0 so B, C, Q are not all ~0 */
    set_t(&c, 0.3); /* and the mean of Y near the kink: plain MC needs P(Y > 0) = O(1) */
    paper_blocks pb;
    paper_route(d, c.x, c.mu, c.Sigma, &pb);
    double ref[4 + 2 * DMAX] = {pb.A, pb.B, pb.C, pb.D};
    for (size_t j = 0; j < d; j++)
        ref[4 + j] = pb.P[j], ref[4 + d + j] = pb.Q[j];
    double s1[4 + 2 * DMAX] = {0.0}, s2[4 + 2 * DMAX] = {0.0}, q[4 + 2 * DMAX];
    for (long n = 0; n < NDRAW; n++) {
        double z[DM1], th[DM1];
        for (size_t a = 0; a < D; a++)
            z[a] = gsl_ran_gaussian_ziggurat(r, 1.0);
        for (size_t a = 0; a < D; a++) {
            double acc = c.mu[a];
            for (size_t k = 0; k < D; k++)
                acc += c.L[a * D + k] * z[k];
            th[a] = acc;
        }
        double Y = 0.0;
        for (size_t j = 0; j < d; j++)
            Y += c.x[j] * th[j + 1];
        if (!(Y > 0.0)) continue;
        double w = th[0];
        q[0] = Y, q[1] = w, q[2] = w * Y, q[3] = w * w;
        for (size_t j = 0; j < d; j++)
            q[4 + j] = Y * th[j + 1], q[4 + d + j] = w * th[j + 1];
        for (size_t k = 0; k < nq; k++)
            s1[k] += q[k], s2[k] += q[k] * q[k];
    }
    double zmax = 0.0;
    for (size_t k = 0; k < nq; k++) {
        double mean = s1[k] / NDRAW;
        double var = (s2[k] - s1[k] * s1[k] / NDRAW) / (NDRAW - 1);
        double se = sqrt(var > 0 ? var / NDRAW : 0.0), diff = fabs(ref[k] - mean);
        double z = diff / (se + 1e-12 / ZTOL);
        CHECK(diff <= ZTOL * se + 1e-12,
              "paper route vs MC: block %zu paper %.12g mc %.12g +- %.3g", k, ref[k], mean, se);
        zmax = fmax(zmax, z);
    }
    tu_worst_update(&worst_z, zmax, "paper route vs MC");
    printf("  corrected paper route vs MC (%ld draws, %zu blocks): worst z %.2f\n", NDRAW, nq,
           zmax);
}

int main(void) {
    gsl_rng *r = tu_rng(SEED);
    tu_worst_init(&worst_rel);
    tu_worst_init(&worst_mat);
    tu_worst_init(&worst_z);
    printf("test_gauss_paper: seed %lu, the paper's Appendix A.1.1 route vs "
           "gmf_gauss_blocks1/eval1\n",
           tu_seed());
    tu_rng_stream(r, 1);
    check_route_mc(r);
    tu_rng_stream(r, 2);
    check_random(r);
    tu_rng_stream(r, 3);
    check_stress(r);
    gsl_rng_free(r);
    printf("worst paper-route MC |z|: %.2f (tolerance %.0f)\n", worst_z.value, ZTOL);
    printf("worst matrix-form rel err: %.3g (%s)\n", worst_mat.value, worst_mat.what);
    int rc = tu_finish("test_gauss_paper");
    printf("worst blocks rel err: %.3g (%s); tolerance %.0e\n", worst_rel.value, worst_rel.what,
           REL_TOL);
    return rc;
}
