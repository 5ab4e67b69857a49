/* test_clsflow.c -- the classification flow's interface: layout, bad input, degenerate states.
 * (The numerics are checked by validate/cls_fd, cls_flow, fixed_beta, gd_to_flow_cls, sgd_mean.)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/clsflow.h"
#include "gmflow/common.h"
#include "gmflow/ode.h"
#include "testutil.h"

static void test_layout(void) {
    gmf_clsflow_layout f = gmf_clsflow_layout_make(GMF_CLSFLOW_FULL, 3, 4, 2);
    CHECK(f.ncov == 16 && f.mu == 0 && f.covo == 12 && f.U == 12 + 48 && f.v == 60 + 24 &&
              f.dim == 84 + 6,
          "full layout offsets");
    gmf_clsflow_layout g = gmf_clsflow_layout_make(GMF_CLSFLOW_DIAG, 2, 5, 3);
    CHECK(g.ncov == 5 && g.covo == 10 && g.U == 20 && g.v == 50 && g.dim == 56,
          "diagonal layout offsets");
    double th[56];
    CHECK(gmf_clsflow_U(&g, th, 1) == th + 35 && gmf_clsflow_v(&g, th, 1) == th + 53 &&
              gmf_clsflow_covp(&g, th, 1) == th + 15 && gmf_clsflow_mu(&g, th, 1) == th + 5,
          "views");
}

static void test_bad_input(void) {
    double X[6] = {1, 2, 3, 4, 5, 6};
    uint8_t y[3] = {0, 1, 2};
    gmf_clsflow *f = (gmf_clsflow *)1;
    CHECK(gmf_clsflow_new(&f, GMF_CLSFLOW_FULL, 0, 2, 3, 2, X, y) == GMF_EINVAL && f == NULL,
          "K = 0 rejected");
    CHECK(gmf_clsflow_new(&f, GMF_CLSFLOW_FULL, 1, 0, 3, 2, X, y) == GMF_EINVAL, "L = 0 rejected");
    CHECK(gmf_clsflow_new(&f, GMF_CLSFLOW_FULL, 1, 2, 0, 2, X, y) == GMF_EINVAL, "n = 0 rejected");
    CHECK(gmf_clsflow_new(&f, (gmf_clsflow_cov)7, 1, 2, 3, 2, X, y) == GMF_EINVAL,
          "unknown covariance kind rejected");
    CHECK(gmf_clsflow_new(&f, GMF_CLSFLOW_DIAG, 1, 1, 3, 2, X, y) == GMF_EINVAL &&
              strstr(gmf_errmsg(), "y[2]") != NULL,
          "label > L rejected, naming the sample: %s", gmf_errmsg());
    X[3] = NAN;
    CHECK(gmf_clsflow_new(&f, GMF_CLSFLOW_DIAG, 1, 2, 3, 2, X, y) == GMF_EINVAL &&
              strstr(gmf_errmsg(), "x[1][1]") != NULL,
          "non-finite input rejected, naming the entry: %s", gmf_errmsg());
    X[3] = 4;
    CHECK(gmf_clsflow_new(&f, GMF_CLSFLOW_DIAG, 1, 2, 3, 2, X, y) == GMF_OK, "good input accepted");
    const gmf_clsflow_layout *lo = gmf_clsflow_layout_of(f);
    double th[64] = {0}, g[64];
    gmf_clsflow_init_paper(lo, 0.5, 1, th);
    size_t idx[2] = {0, 3};
    CHECK(gmf_clsflow_grad_batch(f, th, 2, idx, NULL, g) == GMF_EINVAL, "index out of range");
    CHECK(gmf_clsflow_grad_batch(f, th, 0, idx, NULL, g) == GMF_EINVAL, "empty batch");
    double A[3];
    CHECK(gmf_clsflow_moments(f, th, 1, A, NULL) == GMF_EINVAL, "component out of range");
    th[lo->U] = INFINITY;
    double loss = 0;
    CHECK(gmf_clsflow_loss(f, th, &loss) == GMF_EDIVERGE && isnan(loss),
          "non-finite state: GMF_EDIVERGE");
    CHECK(gmf_clsflow_ode_rhs(0.0, th, g, f) < 0, "ODE adaptor: fatal on a non-finite state");
    CHECK(gmf_clsflow_init_paper(lo, -1.0, 1, th) == GMF_EINVAL, "negative gamma rejected");
    gmf_clsflow_free(f);
    gmf_clsflow_free(NULL);
    double *Xb;
    uint8_t *yb;
    CHECK(gmf_clsflow_blobs(10, 2, 1, 1.0, 1, &Xb, &yb) == GMF_EINVAL && Xb == NULL,
          "blobs: one class rejected");
}

/* Degenerate states: all-zero covariances (s = 0 for every input), zero inputs; huge logits. */
static void test_degenerate(void) {
    const size_t n = 4, d = 2, L = 2, K = 2;
    double X[8] = {0, 0, 1, -1, 2, 0.5, -1, 3};
    uint8_t y[4] = {0, 1, 2, 1};
    for (int cov = 0; cov < 2; cov++) {
        gmf_clsflow *f;
        if (gmf_clsflow_new(&f, (gmf_clsflow_cov)cov, K, L, n, d, X, y)) {
            CHECK(0, "new: %s", gmf_errmsg());
            return;
        }
        const gmf_clsflow_layout *lo = gmf_clsflow_layout_of(f);
        double th[64] = {0}, g[64], F[64];
        gmf_clsflow_init_paper(lo, 0.5, 3, th);
        for (size_t e = lo->covo; e < lo->U; e++)
            th[e] = 0.0; /* Sigma = 0: beta = mu exactly */
        double loss;
        CHECK(gmf_clsflow_grad(f, th, &loss, g) == GMF_OK && tu_all_finite(g, lo->dim) &&
                  isfinite(loss),
              "Sigma = 0: finite loss and gradient (cov %d)", cov);
        /* Sigma = 0: the model is the ReLU network with neurons beta = mu_k; the covariance
         * gradient is exactly 0 there (phi = 0 and u = 0 in the degenerate limit) */
        double cmax = 0.0;
        for (size_t e = lo->covo; e < lo->U; e++)
            cmax = fmax(cmax, fabs(g[e]));
        CHECK(cmax == 0.0, "Sigma = 0: zero covariance gradient (got %g)", cmax);
        /* huge logits: the loss stays finite (log-sum-exp) */
        for (size_t e = lo->v; e < lo->dim; e++)
            th[e] = 800.0;
        CHECK(gmf_clsflow_rhs(f, th, F) == GMF_OK && tu_all_finite(F, lo->dim),
              "logits ~ 800: finite field (cov %d)", cov);
        CHECK(gmf_clsflow_nrhs(f) == 1, "nrhs counts rhs calls");
        gmf_clsflow_set_fixed_beta(f, 1);
        CHECK(gmf_clsflow_fixed_beta(f) == 1, "fixed-beta flag");
        gmf_clsflow_free(f);
    }
}

int main(void) {
    test_layout();
    test_bad_input();
    test_degenerate();
    return tu_finish("test_clsflow");
}
