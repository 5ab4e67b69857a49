/* test_nn_gmreg.c -- the GM regression layer (joint Gaussians over theta = (omega, beta), squared
 * loss): its gradient, which is minus the Euclidean flow's right-hand side (flow.h), against
 * central finite differences of its loss (pass: normwise relative error <= 1e-6, typical 1e-9),
 * including a rank-deficient C_k and a zero input; and full-batch gradient descent with a small
 * step decreasing the loss monotonically (a gradient of the wrong sign or scale would not). */
#include "gmflow/common.h"
#include "gmflow/nn.h"
#include "testutil.h"

static double loss_at(gmf_nn_gmreg *g, const double *P) {
    double l = NAN;
    if (gmf_nn_gmreg_forward(NULL, &l, g, P)) return NAN;
    return l;
}

static void fd_case(const char *tag, gmf_nn_gmreg *g, double *P, size_t np) {
    double dP[np], loss;
    CHECK(gmf_nn_gmreg_backward(dP, &loss, g, P) == 0, "%s: backward failed", tag);
    CHECK_CLOSE(loss, loss_at(g, P), 1e-14, 0.0, "%s: backward's loss = forward's", tag);
    double maxfd = 0.0, maxdiff = 0.0;
    for (size_t e = 0; e < np; e++) {
        const double p = P[e], h = 1e-6 * fmax(fabs(p), 0.1);
        P[e] = p + h;
        const double lp = loss_at(g, P);
        P[e] = p - h;
        const double lm = loss_at(g, P);
        P[e] = p;
        const double fd = (lp - lm) / (2 * h);
        maxfd = fmax(maxfd, fabs(fd));
        maxdiff = fmax(maxdiff, fabs(fd - dP[e]));
    }
    const double err = maxdiff / fmax(maxfd, 1e-8);
    CHECK(err <= 1e-6, "%s: finite-difference error %.3g", tag, err);
    printf("  %-40s n=%zu max|fd|=%.3g err=%.2e\n", tag, np, maxfd, err);
}

int main(void) {
    gsl_rng *r = tu_rng(31337);
    const size_t n = 12, d = 3, D = 4, K = 3, np = K * (D + D * D);
    double X[n * d], y[n], P[np];
    tu_randn(r, n * d, 1.0, X);
    tu_randn(r, n, 1.0, y);
    for (size_t j = 0; j < d; j++)
        X[5 * d + j] = 0.0; /* a zero input: s = 0 */
    tu_randn(r, np, 0.5, P);
    gmf_nn_gmreg *g;
    CHECK(gmf_nn_gmreg_new(&g, K, n, d, X, y) == 0, "new: %s", gmf_errmsg());
    fd_case("gm regression, generic", g, P, np);
    for (size_t a = 0; a < D; a++)
        P[K * D + a * D + 2] = 0.0; /* C_0 column 2 zero */
    fd_case("gm regression, rank-deficient C_0", g, P, np);
    /* gradient descent: monotone decrease at a small step */
    double prev = loss_at(g, P), first = prev, l = 0.0;
    int monotone = 1;
    for (int it = 0; it < 200; it++) {
        CHECK(gmf_nn_gmreg_gd_step(P, &l, g, 0.05) == 0, "gd step %d", it);
        CHECK_CLOSE(l, prev, 1e-13, 0.0, "gd step %d reports the loss before the step", it);
        const double now = loss_at(g, P);
        if (!(now <= prev)) monotone = 0;
        prev = now;
    }
    CHECK(monotone && prev < 0.9 * first, "gradient descent: loss %g -> %g (monotone %d)", first,
          prev, monotone);
    printf("  gradient descent (200 steps, lr 0.05): loss %.6g -> %.6g\n", first, prev);
    /* bad input: non-finite parameters */
    P[0] = NAN;
    CHECK(gmf_nn_gmreg_forward(NULL, NULL, g, P) != 0, "NaN parameters must be rejected");
    gmf_nn_gmreg_free(g);
    /* K = 0 is refused with no layer made; freeing NULL is fine */
    g = (gmf_nn_gmreg *)&r; /* any non-NULL value: must come back NULL */
    CHECK(gmf_nn_gmreg_new(&g, 0, n, d, X, y) == GMF_EINVAL && g == NULL, "K = 0 must be refused");
    gmf_nn_gmreg_free(NULL);
    gsl_rng_free(r);
    return tu_finish("test_nn_gmreg");
}
