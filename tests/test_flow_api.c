/* test_flow_api.c -- the opaque gmf_flow's lifecycle, setters and accessors (gmflow/flow.h).
 *
 * On a small toy (n 40, d 2, K 3):
 *   - gmf_flow_new refuses a null output, K = 0, an unknown kind, and leaves *out NULL;
 *     gmf_flow_free(NULL) is fine;
 *   - the accessors return what the flow was made with (kind, K, D, alpha 1, wfr_flat 0) and the
 *     oracle it was given (same ctx);
 *   - gmf_flow_set_alpha / gmf_flow_set_wfr_flat refuse a bad value naming it, and a kind they
 *     do not apply to naming it, and leave the setting unchanged;
 *   - the counters: nrhs counts gmf_flow_rhs calls, njvp counts JVPs (gmf_flow_jac adds N);
 *   - gmf_flow_mu / gmf_flow_mat / gmf_flow_off agree with the offset helpers (K leading entries
 *     for the WFR kinds); the oracle's loss right after gmf_flow_rhs equals gmf_flow_loss;
 *   - the settings reach the right-hand side: alpha 0 gives w' = 0 bitwise, alpha 2 gives twice
 *     alpha 1's w', and wfr_flat 1 scales mu' of component k by K w_k against wfr_flat 0.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/flow.h"
#include "gmflow/sqloss.h"
#include "gmflow/toy.h"
#include "testutil.h"
#include "tu_toy.h"

#define K 3

static double sentinel; /* its address stands for a stale non-NULL pointer */

static void check_lifecycle(gmf_oracle o) {
    gmf_flow *f = (gmf_flow *)(void *)&sentinel; /* must be overwritten with NULL */
    CHECK(gmf_flow_new(NULL, GMF_FLOW_BW, K, o) == GMF_EINVAL, "null output refused");
    CHECK(gmf_flow_new(&f, GMF_FLOW_BW, 0, o) == GMF_EINVAL && !f, "K = 0 refused, *out NULL");
    f = (gmf_flow *)(void *)&sentinel;
    CHECK(gmf_flow_new(&f, (gmf_flow_kind)7, K, o) == GMF_EINVAL && !f && strstr(gmf_errmsg(), "7"),
          "unknown kind refused naming it: '%s'", gmf_errmsg());
    gmf_flow_free(NULL);
    CHECK(gmf_flow_new(&f, GMF_FLOW_EUCLID, K, o) == GMF_OK && f, "new: %s", gmf_errmsg());
    if (!f) return;
    CHECK(gmf_flow_kind_of(f) == GMF_FLOW_EUCLID && gmf_flow_K(f) == K && gmf_flow_D(f) == o.D,
          "kind, K, D");
    CHECK(gmf_flow_alpha(f) == 1.0 && gmf_flow_wfr_flat(f) == 0, "defaults alpha 1, flat 0");
    CHECK(gmf_flow_oracle(f)->ctx == o.ctx && gmf_flow_oracle(f)->D == o.D, "oracle copied");
    CHECK(gmf_flow_nrhs(f) == 0 && gmf_flow_njvp(f) == 0, "counters start at 0");
    CHECK(gmf_flow_off(f) == 0 && gmf_flow_dim(f) == K * (o.D + o.D * o.D), "layout");
    CHECK(gmf_flow_set_alpha(f, 2.0) == GMF_EINVAL && strstr(gmf_errmsg(), "kind 1"),
          "alpha refused for the Euclidean kind: '%s'", gmf_errmsg());
    CHECK(gmf_flow_set_wfr_flat(f, 1) == GMF_EINVAL && strstr(gmf_errmsg(), "kind 1"),
          "wfr_flat refused for the Euclidean kind: '%s'", gmf_errmsg());
    CHECK(gmf_flow_alpha(f) == 1.0 && gmf_flow_wfr_flat(f) == 0, "settings unchanged");
    gmf_flow_free(f);
}

static void check_counters(gmf_oracle o, const double *y) {
    gmf_flow *f = NULL;
    CHECK(gmf_flow_new(&f, GMF_FLOW_BW, K, o) == GMF_OK, "new: %s", gmf_errmsg());
    if (!f) return;
    const size_t N = gmf_flow_dim(f), D = gmf_flow_D(f);
    double *F = tu_xmalloc(N * sizeof(double)), *J = tu_xmalloc(N * N * sizeof(double));
    double loss = NAN, loss2 = NAN;
    CHECK(gmf_flow_rhs(f, y, F) == GMF_OK && gmf_flow_rhs(f, y, F) == GMF_OK, "rhs");
    loss = gmf_flow_last_loss(f);
    CHECK(gmf_flow_loss(f, y, &loss2) == GMF_OK && loss == loss2,
          "oracle loss after rhs %.17g "
          "equals gmf_flow_loss %.17g",
          loss, loss2);
    CHECK(gmf_flow_nrhs(f) == 2, "nrhs %ld after 2 rhs calls", gmf_flow_nrhs(f));
    CHECK(gmf_flow_jvp(f, y, F, J) == GMF_OK && gmf_flow_njvp(f) == 1, "njvp 1 after one jvp");
    CHECK(gmf_flow_jac(f, y, J) == GMF_OK && gmf_flow_njvp(f) == (long)(1 + N),
          "njvp %ld after a dense Jacobian (want %zu)", gmf_flow_njvp(f), 1 + N);
    double *yy = (double *)y;
    for (size_t k = 0; k < K; k++)
        CHECK(gmf_flow_mu(f, yy, k) == yy + gmf_flow_mu_offset(K, D, k) &&
                  gmf_flow_mat(f, yy, k) == yy + gmf_flow_mat_offset(K, D, k),
              "views of component %zu", k);
    free(F), free(J);
    gmf_flow_free(f);
}

static void check_wfr(gmf_oracle o, const double *y) {
    const size_t D = o.D, M = K * (D + D * D), N = K + M;
    double *yw = tu_xmalloc(N * sizeof(double)), *F[4];
    const double w[K] = {0.5, 0.3, 0.2};
    memcpy(yw, w, sizeof w);
    memcpy(yw + K, y, M * sizeof(double));
    gmf_flow *f = NULL;
    CHECK(gmf_flow_new(&f, GMF_FLOW_WFR_BW, K, o) == GMF_OK, "new wfr: %s", gmf_errmsg());
    if (!f) return;
    CHECK(gmf_flow_off(f) == K && gmf_flow_dim(f) == N && gmf_flow_mu(f, yw, 1) == yw + K + D &&
              gmf_flow_mat(f, yw, 1) == yw + K + K * D + D * D,
          "WFR layout: K leading weights");
    CHECK(gmf_flow_set_alpha(f, -0.5) == GMF_EINVAL && strstr(gmf_errmsg(), "-0.5"),
          "negative alpha refused naming it: '%s'", gmf_errmsg());
    CHECK(gmf_flow_set_alpha(f, NAN) == GMF_EINVAL && gmf_flow_alpha(f) == 1.0, "NaN refused");
    CHECK(gmf_flow_set_wfr_flat(f, 2) == GMF_EINVAL && strstr(gmf_errmsg(), "got 2"),
          "wfr_flat 2 refused naming it: '%s'", gmf_errmsg());
    CHECK(gmf_flow_wfr_flat(f) == 0, "wfr_flat unchanged");
    const double alphas[3] = {0.0, 1.0, 2.0};
    for (int a = 0; a < 4; a++) {
        F[a] = tu_xmalloc(N * sizeof(double));
        CHECK(gmf_flow_set_alpha(f, alphas[a < 3 ? a : 1]) == GMF_OK &&
                  gmf_flow_alpha(f) == alphas[a < 3 ? a : 1],
              "set alpha");
        if (a == 3) CHECK(gmf_flow_set_wfr_flat(f, 1) == GMF_OK && gmf_flow_wfr_flat(f), "flat");
        CHECK(gmf_flow_rhs(f, yw, F[a]) == GMF_OK, "wfr rhs %d: %s", a, gmf_errmsg());
    }
    double e0 = 0.0, e2 = 0.0, eflat = 0.0;
    for (size_t k = 0; k < K; k++) {
        e0 = fmax(e0, fabs(F[0][k]));
        e2 = fmax(e2, fabs(F[2][k] - 2.0 * F[1][k]) / fabs(F[1][k]));
        for (size_t i = K + k * D; i < K + (k + 1) * D; i++) /* mu_k' */
            eflat = fmax(eflat, fabs(F[3][i] - (double)K * w[k] * F[1][i]) / fabs(F[1][i]));
    }
    CHECK(e0 == 0.0, "alpha 0: w' = 0 (max |w'| %.3g)", e0);
    CHECK(e2 <= 1e-14, "alpha 2: w' twice alpha 1's (rel %.3g)", e2);
    CHECK(eflat <= 1e-14, "wfr_flat 1: mu_k' scaled by K w_k (rel %.3g)", eflat);
    for (int a = 0; a < 4; a++)
        free(F[a]);
    free(yw);
    gmf_flow_free(f);
}

int main(void) {
    tu_toy toy = tu_toy_new(40, 2, 9);
    const size_t D = toy.d + 1, M = K * (D + D * D);
    double *y = tu_xmalloc(M * sizeof(double));
    CHECK(gmf_toy_init_mixture(K, D, 0.5, 3, y, NULL, y + K * D) == GMF_OK, "mixture");
    const gmf_oracle o = gmf_sqloss_oracle(toy.sq);
    check_lifecycle(o);
    check_counters(o, y);
    check_wfr(o, y);
    free(y);
    tu_toy_free(&toy);
    return tu_finish("test_flow_api");
}
