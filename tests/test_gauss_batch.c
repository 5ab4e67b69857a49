/* test_gauss_batch.c -- gauss.h's batched scalars (gmf_gauss_batch: libmvec erfc/exp, four
 * points per call, used by the squared-loss oracle and the trainer's forward pass) against two
 * independent routes:
 *
 *   scalar  gmf_gauss_scalars point by point (glibc's scalar erfc/exp, < 1 ulp), every output
 *           (s, Phi, phi, A, Ef, g, q = kap / s);
 *   ldbl    Phi and phi from long double erfcl/expl at t = m / s (a third implementation).
 *
 * Measure: for products and sums the error is relative to the sum of the absolute values of the
 * terms (A = m Phi + s phi: |m Phi| + |s phi|, ...), so cancellation cannot make a correct value
 * fail; required <= 1e-13 (libmvec is within about 4 ulp, i.e. ~1e-15 relative).  A wrong lane
 * blend, a wrong limit or a reordered formula gives O(1) errors.  The limits must hold EXACTLY:
 * s = 0 (s2 = 0, s2 < 0 by rounding, x = 0) and the far tail |m| >= 38 s give Phi = 1{m > 0},
 * phi = 0, q = 0, as gmf_gauss_scalars.  Also: every n from 0 to 9 (the n mod 4 scalar remainder
 * and lane positions of the special points), NULL outputs (skipped), c0 = NULL (zero).
 */
#include <math.h>
#include <string.h>

#include "gmflow/gauss.h"
#include "testutil.h"

#define TOL 1e-13
#define N   203

static tu_worst worst;

static double err(double got, double want, double scale) {
    const double e = fabs(got - want);
    return e == 0.0 ? 0.0 : e / fmax(scale, 1e-300);
}

/* every output of gmf_gauss_batch at the n points against gmf_gauss_scalars */
static void against_scalar(const char *what, size_t n, const double *m, const double *s2,
                           const double *c0, double mu_w) {
    double o[7][N];
    const gmf_gauss_batch_out out = {o[0], o[1], o[2], o[3], o[4], o[5], o[6]};
    gmf_gauss_batch(n, m, s2, c0, mu_w, &out);
    for (size_t i = 0; i < n; i++) {
        gmf_gauss_point p;
        const double c = c0 ? c0[i] : 0.0;
        gmf_gauss_scalars(m[i], s2[i], c, mu_w, &p);
        const double q = p.s > 0.0 ? p.kap / p.s : 0.0;
        const double e[7] = {
            err(o[0][i], p.s, p.s),
            err(o[1][i], p.Phi, p.Phi),
            err(o[2][i], p.phi, p.phi),
            err(o[3][i], p.A, fabs(p.m * p.Phi) + fabs(p.s * p.phi)),
            err(o[4][i], p.Ef, fabs(mu_w * p.A) + fabs(c * p.Phi)),
            err(o[5][i], p.g, fabs(mu_w * p.Phi) + fabs(p.u0 * p.phi)),
            err(o[6][i], q, p.s > 0.0 ? p.phi * (fabs(mu_w) + fabs(p.u0 * p.t)) / p.s : 0.0)};
        static const char *name[7] = {"s", "Phi", "phi", "A", "Ef", "g", "q"};
        for (int j = 0; j < 7; j++) {
            tu_worst_update(&worst, e[j], "%s %s[%zu]", what, name[j], i);
            CHECK(e[j] <= TOL,
                  "%s point %zu (m %g, s2 %g, c0 %g): %s batch %.17g scalar-route "
                  "error %.3g",
                  what, i, m[i], s2[i], c, name[j], o[j][i], e[j]);
        }
        const int lim = !(p.s > 0.0 && fabs(m[i]) < 38.0 * p.s); /* the limit branch */
        if (lim)
            CHECK(o[1][i] == (m[i] > 0.0 ? 1.0 : 0.0) && o[2][i] == 0.0 && o[6][i] == 0.0,
                  "%s point %zu (m %g, s2 %g): limit not exact: Phi %g phi %g q %g", what, i, m[i],
                  s2[i], o[1][i], o[2][i], o[6][i]);
        else { /* Phi, phi by long double at t = m / s */
            const long double t = (long double)m[i] / (long double)p.s;
            const long double P = 0.5L * erfcl(-t / sqrtl(2.0L));
            const long double f = expl(-0.5L * t * t) / sqrtl(2.0L * 3.14159265358979323846L);
            const double eP = err(o[1][i], (double)P, (double)P),
                         ef = err(o[2][i], (double)f, (double)f);
            tu_worst_update(&worst, fmax(eP, ef) / (double)(1 + t * t),
                            "%s long double Phi/phi [%zu]", what, i);
            /* m / s itself is rounded (relative 1e-16), which moves phi by |t|^2 1e-16 */
            CHECK(eP <= TOL * (1 + t * t) && ef <= TOL * (1 + t * t),
                  "%s point %zu: Phi %.17g phi %.17g vs long double %.17Lg %.17Lg", what, i,
                  o[1][i], o[2][i], P, f);
        }
    }
}

static void fill(gsl_rng *r, double *m, double *s2, double *c0) {
    for (size_t i = 0; i < N; i++) {
        const double sd = exp(gsl_ran_flat(r, -12, 3));
        m[i] = sd * gsl_ran_flat(r, -45, 45) * (i % 3 ? 0.1 : 1.0);
        s2[i] = sd * sd;
        c0[i] = sd * gsl_ran_flat(r, -2, 2); /* |c0| <= s sqrt(Sigma_00), Sigma_00 = 4 */
    }
    /* the special points, at lanes 0..3 of the first vectors and in the remainder */
    const size_t at[8] = {0, 1, 2, 3, 5, 10, 200, 202};
    const double sm[8] = {1.0, -1.0, 0.0, 2.0, 38.0, -37.99, -50.0, 3.0};
    const double ss[8] = {0.0, 0.0, 0.0, -1e-30, 1.0, 1.0, 1e-4, 0.0};
    for (int j = 0; j < 8; j++) {
        m[at[j]] = sm[j], s2[at[j]] = ss[j];
        if (ss[j] <= 0.0) c0[at[j]] = 0.0; /* c = Sigma xt = 0 when s = 0 */
    }
}

int main(void) {
    gsl_rng *r = tu_rng(20261130);
    tu_worst_init(&worst);
    double m[N], s2[N], c0[N];
    fill(r, m, s2, c0);
    against_scalar("bulk, tails, limits", N, m, s2, c0, 0.7);
    against_scalar("c0 = NULL, mu_w = 0 (trainer)", N, m, s2, NULL, 0.0);
    against_scalar("mu_w < 0", N, m, s2, c0, -1.3);
    for (size_t n = 0; n <= 9; n++) /* lane positions and the scalar remainder */
        against_scalar("short n", n, m + 200 - (n > 3 ? n - 3 : 0), s2 + 200 - (n > 3 ? n - 3 : 0),
                       c0 + 200 - (n > 3 ? n - 3 : 0), 0.4);
    /* NULL outputs are skipped (a write through one would crash here, and under ASan) */
    double Phi[N];
    const gmf_gauss_batch_out only = {.Phi = Phi};
    gmf_gauss_batch(N, m, s2, c0, 0.7, &only);
    size_t bad = 0;
    for (size_t i = 0; i < N; i++) {
        gmf_gauss_point p;
        gmf_gauss_scalars(m[i], s2[i], c0[i], 0.7, &p);
        bad += err(Phi[i], p.Phi, p.Phi) > TOL;
    }
    CHECK(bad == 0, "Phi alone: %zu points differ", bad);
    gsl_rng_free(r);
    printf("test_gauss_batch: worst error %.3g (%s), tolerance %.0e\n", worst.value, worst.what,
           TOL);
    return tu_finish("test_gauss_batch");
}
