/* test_gauss_mc.c -- the closed forms of gauss.h against Monte Carlo, finite differences and
 * their analytic degenerate limits.
 *
 * For theta ~ N(mu, Sigma) in R^D (D = d + 1), theta = (omega, beta), Y = xt . theta, xt = (0, x),
 * every quantity below is estimated from NDRAW draws theta = mu + L z (Sigma = L L^T, from
 * Cholesky, or an eigen-factor / an explicit factor for singular Sigma), all in one pass:
 *
 *   A      = E relu(Y)                       Ef   = E f = E[omega relu(Y)]
 *   grad   = E grad f  = E[(relu(Y), omega 1{Y>0} x)]               (D entries)
 *   stein  = E[grad f (x) (theta - mu)]                              (D x D entries)
 *   B = E[omega 1{Y>0}],  D = E[omega^2 1{Y>0}],  P_j = E[relu(Y) beta_j],
 *   Q_j = E[omega 1{Y>0} beta_j]                                     (gmf_gauss_blocks1)
 *   st1    = E[f (theta - mu)]               = Sigma E grad f        (first-order Stein)
 *   st2    = E[f ((theta-mu)(theta-mu)^T - Sigma)] = Sigma E[hess f] Sigma   (second order)
 *
 * st1 and st2 are the Stein identities of the flows checked by MC independently of the closed
 * form of stein: st2 is the only MC-estimable handle on E[hess f], whose delta term
 * (kap / s) xt xt^T cannot be averaged directly.
 *
 * Tolerance (per quantity): |closed - mc| <= 5 * SE + atol, SE the standard error of the MC mean
 * from the same draws, atol = 1e-12 (scaled down in the deep-tail case, where every quantity is
 * ~1e-88 and 1e-12 would make the test vacuous).  About 1,100 quantities are tested in all (some
 * 800 not identically zero), so with a correct closed form the chance that any |z| exceeds 5 is
 * ~5e-4; the seed is fixed (GMF_TEST_SEED overrides it; 40 seeds soaked: worst |z| 3.9), so the
 * outcome is deterministic.  The worst z = |closed - mc| / (SE + atol/5) is printed last.  The MC
 * resolution is ~1e-3 relative; finer errors are the business of check_tail_accuracy (long double
 * reference) and of test_gauss_paper (the paper's independent route, to 1e-12).
 *
 * E[hess f] is also checked closed-form against closed-form (E[hess f] Sigma == stein, to 1e-12
 * relative) and against central differences of E grad f in mu (d/dmu E grad f = E hess f, to
 * 1e-6 relative).  Degenerate inputs (x = 0, Sigma singular along xt, Sigma = 0) must give finite
 * outputs equal to their analytic limits (Phi = 1{m > 0}, phi = 0).
 *
 * Far-tail means (t = m/s = -6, -20) are sampled by exponential tilting: theta ~ N(mu + lam c,
 * Sigma) with c = Sigma xt and weight w = exp(-lam (Y - m) + lam^2 s^2 / 2), which is exact also
 * for singular Sigma (no Sigma^{-1} appears) and makes the rare event Y > 0 common.
 */
#include "gmflow/gauss.h"
#include "testutil.h"

#include <gsl/gsl_cdf.h>

#define NDRAW  (1L << 20) /* >= 1e6 draws per case */
#define ZTOL   5.0
#define ATOL   1e-12
#define FD_TOL 1e-6
#define HS_TOL 1e-12
#define SEED   20240611UL

enum { DMAX = 6, DM1 = DMAX + 1 };

typedef struct mc_case {
    char name[80];
    size_t d;
    double x[DMAX], mu[DM1], Sigma[DM1 * DM1];
    double L[DM1 * DM1]; /* Sigma = L L^T (the MC draws use L) */
    int tilt;            /* importance sampling: tilt Y's mean to tilt_t * s */
    double tilt_t;
    double atol;
    long ndraw;
} mc_case;

/* Offsets of each quantity in the flat vectors of closed-form values and MC estimates. */
typedef struct layout {
    size_t A, Ef, grad, stein, B, D, P, Q, st1, st2, n;
} layout;

static layout make_layout(size_t d) {
    size_t D = d + 1, k = 0;
    layout l;
    l.A = k++;
    l.Ef = k++;
    l.grad = k, k += D;
    l.stein = k, k += D * D;
    l.B = k++;
    l.D = k++;
    l.P = k, k += d;
    l.Q = k, k += d;
    l.st1 = k, k += D;
    l.st2 = k, k += D * D;
    l.n = k;
    return l;
}

static void qname(const layout *l, size_t d, size_t i, char *buf, size_t n) {
    size_t D = d + 1;
    if (i == l->A)
        snprintf(buf, n, "A");
    else if (i == l->Ef)
        snprintf(buf, n, "Ef");
    else if (i < l->stein)
        snprintf(buf, n, "grad[%zu]", i - l->grad);
    else if (i < l->B)
        snprintf(buf, n, "stein[%zu][%zu]", (i - l->stein) / D, (i - l->stein) % D);
    else if (i == l->B)
        snprintf(buf, n, "B");
    else if (i == l->D)
        snprintf(buf, n, "D");
    else if (i < l->Q)
        snprintf(buf, n, "P[%zu]", i - l->P);
    else if (i < l->st1)
        snprintf(buf, n, "Q[%zu]", i - l->Q);
    else if (i < l->st2)
        snprintf(buf, n, "st1[%zu]", i - l->st1);
    else
        snprintf(buf, n, "st2[%zu][%zu]", (i - l->st2) / D, (i - l->st2) % D);
}

static tu_worst worst_z, worst_fd, worst_hs, worst_lim;

/* ------------------------------------------------------------------ closed forms */

/* Everything the library says, in the layout above.  Also returns hess (D x D) and p. */
static void closed_vector(const mc_case *c, const layout *l, double *v, double *hess,
                          gmf_gauss_point *p) {
    size_t d = c->d, D = d + 1;
    double grad[DM1], stein[DM1 * DM1], cc[DM1], P[DMAX], Q[DMAX], tmp[DM1 * DM1];
    gmf_gauss_blocks bl;
    gmf_gauss_eval1(d, c->x, c->mu, c->Sigma, p, grad, hess, stein, cc);
    gmf_gauss_blocks1(d, c->x, c->mu, c->Sigma, &bl, P, Q);
    v[l->A] = p->A;
    v[l->Ef] = p->Ef;
    memcpy(v + l->grad, grad, D * sizeof *v);
    memcpy(v + l->stein, stein, D * D * sizeof *v);
    v[l->B] = bl.B;
    v[l->D] = bl.D;
    memcpy(v + l->P, P, d * sizeof *v);
    memcpy(v + l->Q, Q, d * sizeof *v);
    tu_matmul(D, D, 1, c->Sigma, grad, v + l->st1); /* Sigma E grad f */
    tu_matmul(D, D, D, c->Sigma, hess, tmp);        /* Sigma E[hess f] Sigma */
    tu_matmul(D, D, D, tmp, c->Sigma, v + l->st2);
    /* the blocks restate scalars of eval1: they must agree exactly */
    CHECK(bl.A == p->A && bl.B == p->g && bl.C == p->Ef, "%s: blocks1 A,B,C != eval1 A,g,Ef",
          c->name);
}

/* ------------------------------------------------------------------ Monte Carlo */

typedef struct mc_ctx {
    const mc_case *c;
    const layout *l;
    double m, s2, lam, h[DM1];
} mc_ctx;

/* One draw: fills q (all quantities, weighted) and returns 1, or returns 0 when Y <= 0 (then every
 * quantity is 0: each contains relu(Y) or 1{Y > 0}). */
static int draw_q(const mc_ctx *ctx, gsl_rng *r, double *q) {
    const mc_case *c = ctx->c;
    const layout *l = ctx->l;
    size_t d = c->d, D = d + 1;
    double z[DM1] = {0.0}, dth[DM1] = {0.0};
    for (size_t a = 0; a < D; a++)
        z[a] = gsl_ran_gaussian_ziggurat(r, 1.0);
    for (size_t a = 0; a < D; a++) {
        double acc = ctx->h[a];
        for (size_t k = 0; k < D; k++)
            acc += c->L[a * D + k] * z[k];
        dth[a] = acc; /* theta - mu */
    }
    double yd = 0.0;
    for (size_t j = 0; j < d; j++)
        yd += c->x[j] * dth[j + 1];
    double Y = ctx->m + yd;
    if (!(Y > 0.0)) return 0;
    double w = c->tilt ? exp(-ctx->lam * yd + 0.5 * ctx->lam * ctx->lam * ctx->s2) : 1.0;
    double om = c->mu[0] + dth[0], f = om * Y;
    double *g = q + l->grad;
    q[l->A] = w * Y;
    q[l->Ef] = w * f;
    g[0] = w * Y;
    for (size_t j = 0; j < d; j++)
        g[j + 1] = w * om * c->x[j];
    for (size_t a = 0; a < D; a++)
        for (size_t b = 0; b < D; b++)
            q[l->stein + a * D + b] = g[a] * dth[b];
    q[l->B] = w * om;
    q[l->D] = w * om * om;
    for (size_t j = 0; j < d; j++) {
        double bj = c->mu[j + 1] + dth[j + 1];
        q[l->P + j] = w * Y * bj;
        q[l->Q + j] = w * om * bj;
    }
    double wf = w * f;
    for (size_t a = 0; a < D; a++) {
        q[l->st1 + a] = wf * dth[a];
        for (size_t b = 0; b < D; b++)
            q[l->st2 + a * D + b] = wf * (dth[a] * dth[b] - c->Sigma[a * D + b]);
    }
    return 1;
}

/* MC means and standard errors of all quantities.  Sums are shifted by a pilot mean K (the
 * "shifted data" variance algorithm) so that mean^2 >> variance does not cancel. */
static void mc_vector(const mc_case *c, const layout *l, gsl_rng *r, double *mean, double *se) {
    size_t d = c->d, D = d + 1, n = l->n;
    mc_ctx ctx = {.c = c, .l = l};
    double cc[DM1];
    for (size_t a = 0; a < D; a++) {
        double acc = 0.0;
        for (size_t j = 0; j < d; j++)
            acc += c->Sigma[a * D + j + 1] * c->x[j];
        cc[a] = acc;
    }
    ctx.m = 0.0;
    ctx.s2 = 0.0;
    for (size_t j = 0; j < d; j++) {
        ctx.m += c->x[j] * c->mu[j + 1];
        ctx.s2 += c->x[j] * cc[j + 1];
    }
    ctx.lam = 0.0;
    if (c->tilt) ctx.lam = (c->tilt_t * sqrt(ctx.s2) - ctx.m) / ctx.s2;
    for (size_t a = 0; a < D; a++)
        ctx.h[a] = ctx.lam * cc[a];

    double *q = tu_xmalloc(n * sizeof *q), *K = tu_xmalloc(n * sizeof *K);
    double *s1 = tu_xmalloc(n * sizeof *s1), *s2 = tu_xmalloc(n * sizeof *s2);
    memset(K, 0, n * sizeof *K);
    const long npilot = 512;
    for (long i = 0; i < npilot; i++)
        if (draw_q(&ctx, r, q))
            for (size_t k = 0; k < n; k++)
                K[k] += q[k] / npilot;
    memset(s1, 0, n * sizeof *s1);
    memset(s2, 0, n * sizeof *s2);
    long n0 = 0, N = c->ndraw;
    for (long i = 0; i < N; i++) {
        if (!draw_q(&ctx, r, q)) {
            n0++;
            continue;
        }
        for (size_t k = 0; k < n; k++) {
            double v = q[k] - K[k];
            s1[k] += v;
            s2[k] += v * v;
        }
    }
    for (size_t k = 0; k < n; k++) {
        double S1 = s1[k] - n0 * K[k], S2 = s2[k] + n0 * K[k] * K[k];
        double var = (S2 - S1 * S1 / N) / (N - 1);
        mean[k] = K[k] + S1 / N;
        se[k] = var > 0.0 ? sqrt(var / N) : 0.0;
    }
    free(s2);
    free(s1);
    free(K);
    free(q);
}

/* ------------------------------------------------------------------ the checks */

/* E[hess f] Sigma == stein (closed vs closed) and central differences of E grad f in mu. */
static void check_hessian(const mc_case *c, const double *hess, const gmf_gauss_point *p) {
    size_t d = c->d, D = d + 1;
    double HS[DM1 * DM1], stein[DM1 * DM1];
    gmf_gauss_eval1(d, c->x, c->mu, c->Sigma, NULL, NULL, NULL, stein, NULL);
    tu_matmul(D, D, D, hess, c->Sigma, HS);
    /* normwise, against the scale max|H| max|Sigma| of the product's terms */
    double scale = tu_max_abs(hess, D * D) * tu_max_abs(c->Sigma, D * D) * D;
    double e = tu_max_abs_diff(HS, stein, D * D) / (scale > 0 ? scale : 1.0);
    CHECK(e <= HS_TOL, "%s: E[hess f] Sigma vs stein rel err %.3g", c->name, e);
    tu_worst_update(&worst_hs, e, "%s", c->name);

    if (!(p->s > 0.0)) return; /* E grad f is not differentiable in mu when s == 0 */
    double xmax = tu_max_abs(c->x, d);
    double FD[DM1 * DM1];
    for (size_t k = 0; k < D; k++) {
        /* E grad f is linear in mu_w.  Along beta it varies on the scale s / (|x| max(1, |t|))
         * (phi(t) has relative derivatives ~ t): step 1e-4 / max(1, |t|) in t.  In the far-tail
         * branch (|m| >= 38 s, phi == 0) it is affine in m up to |m|: step 1e-4 |m| in m. */
        double dm = p->phi > 0.0 ? 1e-4 * p->s / fmax(1.0, fabs(p->t)) : 1e-4 * fabs(p->m);
        double h = k == 0 ? 1e-3 : dm / xmax;
        double mp[DM1], mm[DM1], gp[DM1], gm[DM1];
        memcpy(mp, c->mu, D * sizeof *mp);
        memcpy(mm, c->mu, D * sizeof *mm);
        mp[k] += h;
        mm[k] -= h;
        h = 0.5 * (mp[k] - mm[k]); /* the step actually taken */
        gmf_gauss_eval1(d, c->x, mp, c->Sigma, NULL, gp, NULL, NULL, NULL);
        gmf_gauss_eval1(d, c->x, mm, c->Sigma, NULL, gm, NULL, NULL, NULL);
        for (size_t a = 0; a < D; a++)
            FD[a * D + k] = (gp[a] - gm[a]) / (2.0 * h);
    }
    double efd = tu_vec_relerr(FD, hess, D * D, 0.0);
    CHECK(efd <= FD_TOL, "%s: d/dmu E grad f vs E hess f rel err %.3g", c->name, efd);
    tu_worst_update(&worst_fd, efd, "%s", c->name);
}

/* Closed forms against MC for one case; prints one line. */
static void check_mc(const mc_case *c, gsl_rng *r) {
    size_t d = c->d, D = d + 1;
    layout l = make_layout(d);
    double *ref = tu_xmalloc(l.n * sizeof *ref), *mean = tu_xmalloc(l.n * sizeof *mean);
    double *se = tu_xmalloc(l.n * sizeof *se), hess[DM1 * DM1];
    gmf_gauss_point p;
    closed_vector(c, &l, ref, hess, &p);
    CHECK(tu_all_finite(ref, l.n) && tu_all_finite(hess, D * D), "%s: non-finite closed form",
          c->name);
    /* the header's bound |u0| = |c_0| / s <= sqrt(Sigma_00) (Cauchy-Schwarz), to rounding */
    CHECK(fabs(p.u0) <= sqrt(c->Sigma[0]) * (1.0 + 1e-12) + 1e-300,
          "%s: |u0| = %.17g exceeds sqrt(Sigma_00) = %.17g", c->name, fabs(p.u0),
          sqrt(c->Sigma[0]));
    mc_vector(c, &l, r, mean, se);
    double zmax = 0.0;
    size_t imax = 0;
    char nm[64];
    for (size_t i = 0; i < l.n; i++) {
        double diff = fabs(ref[i] - mean[i]);
        double z = diff / (se[i] + c->atol / ZTOL);
        qname(&l, d, i, nm, sizeof nm);
        CHECK(diff <= ZTOL * se[i] + c->atol, "%s: %s closed %.17g mc %.17g +- %.3g (z = %.2f)",
              c->name, nm, ref[i], mean[i], se[i], z);
        if (!(z <= zmax)) zmax = z, imax = i;
    }
    qname(&l, d, imax, nm, sizeof nm);
    tu_worst_update(&worst_z, zmax, "%s, %s", c->name, nm);
    check_hessian(c, hess, &p);
    printf("  %-34s d=%zu s=%-9.3g t=%-9.3g %4zu quantities  worst z %5.2f (%s)\n", c->name, d, p.s,
           p.t, l.n, zmax, nm);
    free(se);
    free(mean);
    free(ref);
}

/* Degenerate inputs with s == 0 exactly (or to rounding): every output is finite and equals its
 * analytic limit Y = m a.s., Phi = 1{m > 0}, phi = 0:
 *   A = relu(m), Ef = mu_w relu(m) + c_0 Phi, grad = (relu(m), mu_w Phi x),
 *   hess = Phi (e0 xt^T + xt e0^T), stein = xt (Phi Sigma e0)^T (+ e0 (Phi c)^T),
 *   B = mu_w Phi, D = (mu_w^2 + Sigma_00) Phi, P_j = relu(m) mu_j + Phi c_j,
 *   Q_j = Phi (mu_w mu_j + Sigma_j0).
 * rtol is the allowed relative error against max(|value|, 1) (0 when s is exactly 0 in exact
 * arithmetic and the library's operations reduce to the same ones; small otherwise). */
static void check_limits(const mc_case *c, double rtol) {
    size_t d = c->d, D = d + 1;
    gmf_gauss_point p;
    gmf_gauss_blocks bl;
    double grad[DM1], hess[DM1 * DM1], stein[DM1 * DM1], cc[DM1], P[DMAX], Q[DMAX];
    gmf_gauss_eval1(d, c->x, c->mu, c->Sigma, &p, grad, hess, stein, cc);
    gmf_gauss_blocks1(d, c->x, c->mu, c->Sigma, &bl, P, Q);
    double sc[] = {p.m,  p.s, p.t,   p.Phi, p.phi, p.u0, p.A,
                   p.Ef, p.g, p.kap, bl.A,  bl.B,  bl.C, bl.D};
    CHECK(tu_all_finite(sc, sizeof sc / sizeof *sc) && tu_all_finite(grad, D) &&
              tu_all_finite(hess, D * D) && tu_all_finite(stein, D * D) && tu_all_finite(cc, D) &&
              tu_all_finite(P, d) && tu_all_finite(Q, d),
          "%s: non-finite output in a degenerate case", c->name);

    /* the limits, computed here from mu, Sigma and x alone */
    double m = 0.0, xt[DM1] = {0.0}, c_[DM1];
    for (size_t j = 0; j < d; j++)
        m += c->x[j] * c->mu[j + 1], xt[j + 1] = c->x[j];
    tu_matmul(D, D, 1, c->Sigma, xt, c_);
    double Phi = m > 0.0 ? 1.0 : 0.0, relu = m > 0.0 ? m : 0.0, muw = c->mu[0];
    double eg[DM1], eh[DM1 * DM1], es[DM1 * DM1], eP[DMAX], eQ[DMAX];
    eg[0] = relu;
    for (size_t j = 0; j < d; j++)
        eg[j + 1] = muw * Phi * c->x[j];
    for (size_t a = 0; a < D; a++)
        for (size_t b = 0; b < D; b++) {
            eh[a * D + b] = Phi * ((a == 0) * xt[b] + xt[a] * (b == 0));
            es[a * D + b] = (a == 0) * Phi * c_[b] + xt[a] * Phi * c->Sigma[b * D];
        }
    for (size_t j = 0; j < d; j++) {
        eP[j] = relu * c->mu[j + 1] + Phi * c_[j + 1];
        eQ[j] = Phi * (muw * c->mu[j + 1] + c->Sigma[(j + 1) * D]);
    }
    /* the header's conventions for the scalars: t = u0 = kap = 0 when s == 0 */
    CHECK(tu_relerr(p.m, m, 1.0) <= 4 * DBL_EPSILON, "%s: p.m %.17g vs x . mu_beta %.17g", c->name,
          p.m, m);
    if (p.s == 0.0)
        CHECK(p.t == 0.0 && p.u0 == 0.0 && p.kap == 0.0,
              "%s: s == 0 but t = %g, u0 = %g, kap = %g (header: all 0)", c->name, p.t, p.u0,
              p.kap);
    double e = 0.0;
#define LIM(got, want) e = fmax(e, tu_relerr((got), (want), 1.0))
    LIM(p.Phi, Phi);
    LIM(p.phi, 0.0);
    LIM(p.A, relu);
    LIM(p.Ef, muw * relu + c_[0] * Phi);
    LIM(p.g, muw * Phi);
    LIM(bl.B, muw * Phi);
    LIM(bl.D, (muw * muw + c->Sigma[0]) * Phi);
    for (size_t a = 0; a < D; a++)
        LIM(grad[a], eg[a]);
    for (size_t a = 0; a < D * D; a++)
        LIM(hess[a], eh[a]), LIM(stein[a], es[a]);
    for (size_t j = 0; j < d; j++)
        LIM(P[j], eP[j]), LIM(Q[j], eQ[j]);
#undef LIM
    CHECK(e <= rtol, "%s: degenerate outputs differ from their limits by %.3g (allowed %.3g)",
          c->name, e, rtol);
    tu_worst_update(&worst_lim, e, "%s", c->name);
    printf("  %-34s limits: max rel err %.3g\n", c->name, e);
}

/* Sigma = 0: a point mass, so every expectation is the integrand at mu (computed here from f's
 * definition, not from the closed form's formulas). */
static void check_point_mass(const mc_case *c) {
    size_t d = c->d, D = d + 1;
    gmf_gauss_point p;
    gmf_gauss_blocks bl;
    double grad[DM1], hess[DM1 * DM1], stein[DM1 * DM1], P[DMAX], Q[DMAX];
    gmf_gauss_eval1(d, c->x, c->mu, c->Sigma, &p, grad, hess, stein, NULL);
    gmf_gauss_blocks1(d, c->x, c->mu, c->Sigma, &bl, P, Q);
    double y = 0.0;
    for (size_t j = 0; j < d; j++)
        y += c->mu[j + 1] * c->x[j];
    double w = c->mu[0], r = y > 0 ? y : 0.0, ind = y > 0;
    double e = 0.0;
    e = fmax(e, tu_relerr(p.Ef, w * r, 1.0)); /* f(x, mu) */
    e = fmax(e, tu_relerr(grad[0], r, 1.0));  /* grad f(x, mu) */
    for (size_t j = 0; j < d; j++)
        e = fmax(e, tu_relerr(grad[j + 1], w * ind * c->x[j], 1.0));
    e = fmax(e, tu_max_abs(stein, D * D)); /* theta - mu = 0 */
    e = fmax(e, tu_relerr(bl.B, w * ind, 1.0));
    e = fmax(e, tu_relerr(bl.D, w * w * ind, 1.0));
    for (size_t j = 0; j < d; j++) {
        e = fmax(e, tu_relerr(P[j], r * c->mu[j + 1], 1.0));
        e = fmax(e, tu_relerr(Q[j], w * ind * c->mu[j + 1], 1.0));
    }
    /* hess f(x, mu) away from the kink: 1{y>0} (e0 xt^T + xt e0^T) */
    for (size_t a = 0; a < D; a++)
        for (size_t b = 0; b < D; b++) {
            double xa = a ? c->x[a - 1] : 0.0, xb = b ? c->x[b - 1] : 0.0;
            e = fmax(e, tu_relerr(hess[a * D + b], ind * ((a == 0) * xb + xa * (b == 0)), 1.0));
        }
    CHECK(e <= 4 * DBL_EPSILON, "%s: point mass differs from f(x, mu) etc. by %.3g", c->name, e);
    tu_worst_update(&worst_lim, e, "%s", c->name);
    printf("  %-34s point mass: max rel err %.3g\n", c->name, e);
}

/* Tail accuracy against an extended-precision (long double) evaluation of the same scalars, for
 * d = 1 and t = m/s on a grid over [-37, 6] (phi(t) stays a normal number): the MC checks have a
 * resolution of ~1e-3 only, while here any cancellation (1 - Phi(-t), erf instead of erfc, ...)
 * shows.  The lower tail is intrinsically ill-conditioned: the argument t / sqrt(2) alone carries
 * a relative error ~ t^2 eps into Phi, and A = s (phi + t Phi) cancels by another ~ t^2, so the
 * allowed relative error is 4e-15 (1 + t^4) against max(|value|, the scale of its terms). */
static void check_tail_accuracy(void) {
    if (LDBL_MANT_DIG < 64) {
        printf("  tail accuracy: skipped (long double has only %d bits)\n", LDBL_MANT_DIG);
        return;
    }
    static const double par[2][4] = {{0.4, 0.6, 0.8, 1.3}, {-1.1, -0.9, 1.7, 0.02}};
    const long double r2 = sqrtl(2.0L), rpi2 = sqrtl(2.0L * 3.141592653589793238462643383279503L);
    double emax = 0.0, tmax = 0.0;
    for (int ip = 0; ip < 2; ip++)
        for (int it = 0; it <= 860; it++) {
            double t = -37.0 + 0.05 * it, muw = par[ip][0], rho = par[ip][1], sw = par[ip][2];
            double s = par[ip][3], x[1] = {1.0}, mu[2] = {muw, t * s};
            double S[4] = {sw * sw, rho * sw * s, rho * sw * s, s * s}, P[1], Q[1];
            gmf_gauss_point p;
            gmf_gauss_blocks bl;
            gmf_gauss_eval1(1, x, mu, S, &p, NULL, NULL, NULL, NULL);
            gmf_gauss_blocks1(1, x, mu, S, &bl, P, Q);
            /* reference from the stored inputs, in long double */
            long double sl = sqrtl((long double)S[3]), T = (long double)mu[1] / sl;
            long double Ph = 0.5L * erfcl(-T / r2), ph = expl(-0.5L * T * T) / rpi2;
            long double u0 = (long double)S[1] / sl, m = mu[1];
            long double ref[5] = {m * Ph + sl * ph, muw * (m * Ph + sl * ph) + S[1] * Ph,
                                  muw * Ph + u0 * ph, ph * (muw - u0 * T),
                                  muw * muw * Ph + 2 * muw * u0 * ph + Ph * S[0] -
                                      u0 * u0 * T * ph};
            long double scl[5] = {
                fabsl(m) * Ph + sl * ph, fabsl(muw) * (fabsl(m) * Ph + sl * ph) + fabsl(S[1]) * Ph,
                fabsl(muw) * Ph + fabsl(u0) * ph, ph * (fabsl(muw) + fabsl(u0 * T)),
                muw * muw * Ph + fabsl(2 * muw * u0) * ph + Ph * S[0] + u0 * u0 * fabsl(T) * ph};
            double got[5] = {p.A, p.Ef, p.g, p.kap, bl.D};
            for (int k = 0; k < 5; k++) {
                double e = (double)(fabsl(got[k] - ref[k]) / fmaxl(fabsl(ref[k]), scl[k] * 1e-3L)) /
                           (1.0 + t * t * t * t);
                if (e > emax) emax = e, tmax = t;
            }
        }
    CHECK(emax <= 4e-15, "tail accuracy vs long double: %.3g (1 + t^4) at t = %g", emax, tmax);
    printf("  A, Ef, g, kap, D vs long double, t in [-37, 6]: max rel err %.3g (1 + t^4) at "
           "t = %g\n",
           emax, tmax);
}

/* ------------------------------------------------------------------ cases */

static void init_case(mc_case *c, const char *name, size_t d) {
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->d = d;
    c->atol = ATOL;
    c->ndraw = NDRAW;
}

/* Random x ~ N(0, I), mu ~ N(0, I), Sigma SPD with condition number cond; L by Cholesky. */
static void set_t(mc_case *c, double t);

/* Random x ~ N(0, I), mu ~ N(0, I), Sigma SPD with condition number cond; L by Cholesky.  Then
 * mu_beta is shifted along x so that t = m/s is uniform in [-2, 2]: a random Sigma can make s
 * small and put the mean deep in a tail, where plain MC sees no Y > 0 at all (the tails have
 * their own, tilted, cases). */
static void random_case(mc_case *c, gsl_rng *r, const char *name, size_t d, double cond) {
    size_t D = d + 1;
    init_case(c, name, d);
    tu_randn(r, d, 1.0, c->x);
    tu_randn(r, D, 1.0, c->mu);
    tu_rand_spd(r, D, cond, 1.0, c->Sigma, NULL);
    tu_psd_factor(D, c->Sigma, c->L);
    set_t(c, 4.0 * gsl_rng_uniform(r) - 2.0);
}

/* Shift mu_beta along x so that m = xt . mu = t s. */
static void set_t(mc_case *c, double t) {
    tu_set_t(c->d, c->x, c->Sigma, c->mu, t);
}

/* Sigma = L L^T with L the Cholesky factor of a random SPD matrix whose row k+1 (beta_k) is
 * rescaled to norm s / |x_k|, and x = x_k e_k: then s^2 = x_k^2 Sigma_{k+1,k+1} is s^2 up to
 * one rounding (no cancellation), and u = Sigma xt / s = x_k L L_{k+1}^T / s stays O(1). */
static void near_degenerate_case(mc_case *c, gsl_rng *r, const char *name, size_t d, size_t k,
                                 double xk, double s, double t) {
    size_t D = d + 1;
    init_case(c, name, d);
    double S0[DM1 * DM1];
    tu_rand_spd(r, D, 10.0, 1.0, S0, NULL);
    tu_psd_factor(D, S0, c->L);
    double nr = 0.0;
    for (size_t a = 0; a < D; a++)
        nr += c->L[(k + 1) * D + a] * c->L[(k + 1) * D + a];
    for (size_t a = 0; a < D; a++)
        c->L[(k + 1) * D + a] *= s / fabs(xk) / sqrt(nr);
    tu_gram(D, D, c->L, c->Sigma);
    c->x[k] = xk;
    tu_randn(r, D, 1.0, c->mu);
    c->mu[k + 1] = t * s / xk;
}

int main(void) {
    gsl_rng *r = tu_rng(SEED);
    tu_worst_init(&worst_z);
    tu_worst_init(&worst_fd);
    tu_worst_init(&worst_hs);
    tu_worst_init(&worst_lim);
    mc_case c;
    printf("test_gauss_mc: seed %lu, %ld draws per case, tolerance |closed - mc| <= %g SE + %g\n",
           tu_seed(), NDRAW, ZTOL, ATOL);

    /* the normal cdf in the lower tail, where the far-tail cases live: relative accuracy (the
     * rounding of t / sqrt(2) alone costs ~ t^2 eps) */
    double ecdf = 0.0;
    for (double t = -37.5; t <= 8.5; t += 0.37) {
        ecdf = fmax(ecdf, tu_relerr(gmf_gauss_cdf(t), gsl_cdf_ugaussian_P(t), 0.0));
        ecdf = fmax(ecdf, tu_relerr(gmf_gauss_pdf(t), gsl_ran_ugaussian_pdf(t), 0.0));
    }
    CHECK(ecdf <= 1e-12, "gmf_gauss_cdf/pdf relative error %.3g vs GSL on [-37.5, 8.5]", ecdf);
    printf("  gmf_gauss_cdf/pdf vs GSL on [-37.5, 8.5]: max rel err %.3g\n", ecdf);
    check_tail_accuracy();

    /* random, well-conditioned */
    static const size_t dims[] = {1, 3, 6};
    for (size_t i = 0; i < 3; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "random d=%zu cond=10", dims[i]);
        tu_rng_stream(r, 100 + i);
        random_case(&c, r, nm, dims[i], 10.0);
        check_mc(&c, r);
    }

    /* ill-conditioned: cond(Sigma) = 1e8, random orientation */
    tu_rng_stream(r, 2);
    random_case(&c, r, "ill-conditioned cond=1e8", 4, 1e8);
    check_mc(&c, r);

    /* ill-conditioned with xt along the weakest eigenvector: s = 1e-4 |x|, u = c/s small but
     * computed from c = Sigma xt ~ 1e-8 */
    {
        size_t d = 3, D = 4;
        tu_rng_stream(r, 3);
        init_case(&c, "cond=1e8, xt on weakest eigvec", d);
        tu_randn(r, d, 1.0, c.x);
        tu_randn(r, D, 1.0, c.mu);
        double xt[DM1] = {0.0}, Q[DM1 * DM1], lam[DM1];
        for (size_t j = 0; j < d; j++)
            xt[j + 1] = c.x[j];
        tu_rand_orthogonal_with(r, D, xt, Q);
        tu_geom_spectrum(D, 1e8, 1.0, lam);
        double l0 = lam[0];
        lam[0] = lam[D - 1], lam[D - 1] = l0; /* smallest eigenvalue on xt */
        tu_spectral(D, Q, lam, c.Sigma, NULL);
        tu_psd_factor(D, c.Sigma, c.L);
        set_t(&c, 0.7);
        check_mc(&c, r);
    }

    /* mean far in a tail: t = +6 (plain MC), t = -6 and t = -20 (tilted MC) */
    tu_rng_stream(r, 4);
    random_case(&c, r, "tail t=+6", 3, 10.0);
    set_t(&c, 6.0);
    check_mc(&c, r);
    tu_rng_stream(r, 5);
    random_case(&c, r, "tail t=-6 (tilted)", 3, 10.0);
    set_t(&c, -6.0);
    c.tilt = 1, c.tilt_t = 0.5;
    check_mc(&c, r);
    tu_rng_stream(r, 6);
    random_case(&c, r, "tail t=-20 (tilted)", 2, 10.0);
    set_t(&c, -20.0);
    c.tilt = 1, c.tilt_t = 0.5;
    c.atol = 1e-100; /* all quantities ~ phi(20) ~ 1e-88: a pure 5-SE test */
    check_mc(&c, r);

    /* degenerate: x = 0 (Y = 0 a.s.; every quantity is exactly 0) */
    tu_rng_stream(r, 7);
    random_case(&c, r, "x = 0", 3, 10.0);
    memset(c.x, 0, sizeof c.x);
    c.ndraw = 1L << 12; /* every draw gives exactly 0 */
    check_mc(&c, r);
    check_limits(&c, 0.0);

    /* degenerate: Sigma singular along xt = (0, x), x general, so Sigma xt = 0 only to rounding
     * and the computed s^2 is rounding noise: once clamped to 0 and once positive (~1e-16, so
     * u = c / s is noise / noise); m > 0 and m < 0 (|m| >> s).  MC from the exact-rank factor. */
    for (int sg = 0; sg < 4; sg++) {
        static const char *nm[] = {"Sigma xt ~ 0, s2 -> 0, m > 0", "Sigma xt ~ 0, s2 -> 0, m < 0",
                                   "Sigma xt ~ 0, s2 ~ +eps, m > 0",
                                   "Sigma xt ~ 0, s2 ~ +eps, m < 0"};
        size_t d = 4, D = 5;
        gmf_gauss_point p;
        tu_rng_stream(r, 200 + (unsigned long)sg);
        init_case(&c, nm[sg], d);
        for (int tries = 0; tries < 200; tries++) { /* until the rounding has the wanted sign */
            tu_randn(r, d, 1.0, c.x);
            tu_randn(r, D, 1.0, c.mu);
            double xt[DM1] = {0.0}, m = 0.0;
            for (size_t j = 0; j < d; j++)
                xt[j + 1] = c.x[j], m += c.x[j] * c.mu[j + 1];
            if ((m > 0) == (sg & 1))
                for (size_t j = 0; j < D; j++)
                    c.mu[j] = -c.mu[j];
            tu_rand_psd_null(r, D, xt, 10.0, 1.0, c.Sigma, c.L);
            gmf_gauss_eval1(d, c.x, c.mu, c.Sigma, &p, NULL, NULL, NULL, NULL);
            if ((p.s > 0.0) == (sg >= 2)) break;
        }
        CHECK((p.s > 0.0) == (sg >= 2), "%s: no instance found", c.name);
        check_mc(&c, r);
        check_limits(&c, 1e-12);
    }

    /* degenerate: Sigma singular along an axis-aligned xt (row/col of beta_1 exactly zero), so
     * c = 0 and s = 0 exactly; the limits must hold exactly */
    for (int sg = 0; sg < 2; sg++) {
        size_t d = 3, D = 4;
        tu_rng_stream(r, 300 + (unsigned long)sg);
        init_case(&c, sg ? "Sigma e_2 = 0 exactly, m < 0" : "Sigma e_2 = 0 exactly, m > 0", d);
        double S0[DM1 * DM1];
        tu_rand_spd(r, D, 10.0, 1.0, S0, NULL);
        tu_psd_factor(D, S0, c.L);
        for (size_t a = 0; a < D; a++)
            c.L[2 * D + a] = 0.0;
        tu_gram(D, D, c.L, c.Sigma);
        c.x[1] = 1.5;
        tu_randn(r, D, 1.0, c.mu);
        c.mu[2] = sg ? -0.8 : 0.8;
        check_mc(&c, r);
        check_limits(&c, 0.0);
    }

    /* degenerate: Sigma = 0 (point mass at mu) */
    for (int sg = 0; sg < 2; sg++) {
        tu_rng_stream(r, 400 + (unsigned long)sg);
        random_case(&c, r, sg ? "Sigma = 0, m < 0" : "Sigma = 0, m > 0", 3, 10.0);
        memset(c.Sigma, 0, sizeof c.Sigma);
        memset(c.L, 0, sizeof c.L);
        set_t(&c, 0.0);                        /* m = 0 to rounding ... */
        c.mu[2] += (sg ? -0.5 : 0.5) / c.x[1]; /* ... then m = +-0.5 */
        c.ndraw = 1L << 12;                    /* every draw is mu */
        check_mc(&c, r);
        check_limits(&c, 0.0);
        check_point_mass(&c);
    }

    /* near-degenerate: s = 1e-7 with t = 0.5 (m = 5e-8: the kink inside the spread) and with
     * m = 1 (t = 1e7: far-tail branch) */
    tu_rng_stream(r, 11);
    near_degenerate_case(&c, r, "s = 1e-7, t = 0.5", 3, 1, 2.0, 1e-7, 0.5);
    check_mc(&c, r);
    tu_rng_stream(r, 12);
    near_degenerate_case(&c, r, "s = 1e-7, t = -1.3", 3, 0, -0.5, 1e-7, -1.3);
    check_mc(&c, r);
    tu_rng_stream(r, 13);
    near_degenerate_case(&c, r, "s = 1e-7, m = 1 (t = 1e7)", 3, 2, 1.0, 1e-7, 1e7);
    check_mc(&c, r);

    gsl_rng_free(r);
    printf("worst E[hess f] Sigma vs stein rel err: %.3g (%s)\n", worst_hs.value, worst_hs.what);
    printf("worst d/dmu E grad f vs E hess f rel err: %.3g (%s)\n", worst_fd.value, worst_fd.what);
    printf("worst degenerate-limit rel err: %.3g (%s)\n", worst_lim.value, worst_lim.what);
    int rc = tu_finish("test_gauss_mc");
    printf("worst |z| = %.3f (%s); tolerance %.1f\n", worst_z.value, worst_z.what, ZTOL);
    return rc;
}
