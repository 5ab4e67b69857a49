/* consumer.c -- a program built against an *installed* gmflow (tests/consumer.sh builds it with
 * find_package(gmflow) and with pkg-config).  It prints the library's version and the squared
 * loss of one Gaussian component on a 2-sample toy, next to the same loss computed by hand from
 * the Gaussian-ReLU formula E relu(Y) = m Phi(m/s) + s phi(m/s) (only libm; no gmflow code).
 *
 *   theta = (omega, beta), f(x, theta) = omega relu(beta x), d = 1, K = 1,
 *   mu = (1.5, 0.5), Sigma = diag(0.3, 0.2): omega and beta independent, so
 *   h(x) = E f = mu_omega E relu(Y), Y = beta x ~ N(0.5 x, 0.2 x^2),
 *   L = (1/n) sum_i (y_i - h(x_i))^2.
 * Exit 0 when the two agree to 1e-12 and the version strings match, 1 otherwise.
 */
#include <gmflow/gmflow.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static double by_hand(double x) {
    double m = 0.5 * x, s = sqrt(0.2 * x * x), t = m / s;
    double Phi = 0.5 * erfc(-t / sqrt(2.0)), phi = 0.39894228040143268 * exp(-0.5 * t * t);
    return 1.5 * (m * Phi + s * phi);
}

int main(void) {
    const double X[2] = {1.0, -2.0}, y[2] = {0.4, 0.1};
    const double mu[2] = {1.5, 0.5}, Sigma[4] = {0.3, 0.0, 0.0, 0.2};
    gmf_sqloss *sq = NULL;
    double loss = NAN;
    int rc = gmf_sqloss_new(&sq, 2, 1, X, y);
    if (!rc) rc = gmf_sqloss_eval(sq, 1, mu, Sigma, NULL, &loss);
    gmf_sqloss_free(sq);
    if (rc) {
        fprintf(stderr, "consumer: %s: %s\n", gmf_strerror(rc), gmf_errmsg());
        return 1;
    }
    double r0 = y[0] - by_hand(X[0]), r1 = y[1] - by_hand(X[1]);
    double hand = (r0 * r0 + r1 * r1) / 2.0;
    printf("gmflow %s (headers %s)\n", gmf_version(), GMFLOW_VERSION_STRING);
    printf("loss %.15e by hand %.15e\n", loss, hand);
    int ok = strcmp(gmf_version(), GMFLOW_VERSION_STRING) == 0 && fabs(loss - hand) <= 1e-12 * hand;
    printf("%s\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
