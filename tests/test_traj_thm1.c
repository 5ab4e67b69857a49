/* test_traj_thm1 -- gmf_traj_thm1_errors (Theorem 1 discrepancies per output time) against the
 * formula evaluated here on the recorded trajectories, and its maximum against
 * gmf_traj_thm1_distance; a mismatched pair is refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/flow.h"
#include "gmflow/sqloss.h"
#include "gmflow/toy.h"
#include "gmflow/traj.h"
#include "testutil.h"

#define T 5

static double frob_rel(size_t n, const double *a, const double *b) {
    double dd = 0, na = 0;
    for (size_t i = 0; i < n; i++)
        dd += (a[i] - b[i]) * (a[i] - b[i]), na += a[i] * a[i];
    return na > 0 ? sqrt(dd / na) : sqrt(dd);
}

int main(void) {
    gmf_toy_opts to = gmf_toy_defaults();
    to.n = 40, to.d = 2;
    const size_t K = 2, D = to.d + 1, N = K * (D + D * D);
    double *X, *y, ybw[N], yeu[N], tb[T], te[T], es[T], em[T];
    CHECK(gmf_toy_make(&to, &X, &y) == GMF_OK, "toy: %s", gmf_errmsg());
    CHECK(gmf_toy_init_mixture(K, D, 0.5, 3, ybw, yeu + K * D, ybw + K * D) == GMF_OK, "init");
    memcpy(yeu, ybw, K * D * sizeof(double));
    gmf_sqloss *sq;
    CHECK(gmf_sqloss_new(&sq, to.n, to.d, X, y) == GMF_OK, "sqloss: %s", gmf_errmsg());
    for (size_t j = 0; j < T; j++) {
        tb[j] = 0.5 * (double)j;
        te[j] = gmf_flow_time_convert(tb[j], GMF_FLOW_BW, GMF_FLOW_EUCLID, K);
    }
    gmf_ode_opts o = gmf_ode_defaults();
    o.rtol = 1e-11, o.atol = 1e-13;
    gmf_traj *bw = NULL, *eu = NULL;
    CHECK(gmf_traj_new(&bw, GMF_FLOW_BW, T, K, D) == GMF_OK, "new");
    CHECK(gmf_traj_new(&eu, GMF_FLOW_EUCLID, T, K, D) == GMF_OK, "new");
    CHECK(gmf_traj_integrate(bw, gmf_sqloss_oracle(sq), ybw, tb, NULL, &o) == GMF_OK, "bw: %s",
          gmf_errmsg());
    CHECK(gmf_traj_integrate(eu, gmf_sqloss_oracle(sq), yeu, te, NULL, &o) == GMF_OK, "eu: %s",
          gmf_errmsg());
    CHECK(gmf_traj_thm1_errors(eu, bw, es, em) == GMF_OK, "errors: %s", gmf_errmsg());
    double ms = 0, mm = 0, ds, dm;
    for (size_t j = 0; j < T; j++) {
        double ws = 0;
        for (size_t k = 0; k < K; k++) {
            const size_t off = (j * K + k) * D * D;
            ws = fmax(ws, frob_rel(D * D, gmf_traj_Sigma(bw) + off, gmf_traj_Sigma(eu) + off));
        }
        const double wm = frob_rel(K * D, gmf_traj_mu(bw) + j * K * D, gmf_traj_mu(eu) + j * K * D);
        CHECK_CLOSE(es[j], ws, 1e-12, 1e-300, "Sigma error at output %zu", j);
        CHECK_CLOSE(em[j], wm, 1e-12, 1e-300, "mu error at output %zu", j);
        CHECK(j == 0 || (es[j] > 0 && es[j] < 1e-8 && em[j] < 1e-8),
              "Theorem 1 at output %zu: %.3g %.3g", j, es[j], em[j]);
        ms = fmax(ms, es[j]), mm = fmax(mm, em[j]);
    }
    CHECK(gmf_traj_thm1_distance(bw, eu, &ds, &dm) == GMF_OK, "distance");
    CHECK(ds == ms && dm == mm, "distance %.17g %.17g = max of the errors %.17g %.17g", ds, dm, ms,
          mm);
    CHECK(gmf_traj_thm1_errors(bw, bw, es, em) == GMF_EINVAL, "two bw trajectories refused");
    printf("Theorem 1 over %d output times: largest Sigma error %.3e, mu error %.3e\n", T, ms, mm);
    gmf_traj_free(bw), gmf_traj_free(eu);
    gmf_sqloss_free(sq);
    free(X), free(y);
    return tu_finish("test_traj_thm1");
}
