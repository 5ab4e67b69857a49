/* test_events_api.c -- the opaque gmf_events' lifecycle and accessors (gmflow/events.h).
 *
 * On a small toy (n 40, d 2, K 3, the BW form):
 *   - gmf_events_new refuses a null output, null options, a negative grad_tol, a non-finite loss
 *     value and K = 0 (from the flow), and leaves *out NULL; gmf_events_free(NULL) is fine, and
 *     NULL reads as no events (count 0, ndropped 0, no event 0); a fresh object has the same;
 *   - gmf_events_attach installs one event function per event (grad, loss, then the collapse of
 *     each component) with their directions;
 *   - the recording, driven through the installed on_root hook with chosen `which` flags and
 *     max_events 3: four events give count 3 and ndropped 1, and gmf_events_get returns each
 *     record in order with its kind, component, time, direction, a copy of the state (equal
 *     values, not the caller's pointer) and its value against independent references (||F(y)||
 *     summed by hand from gmf_flow_rhs, gmf_flow_loss, and lambda_min / lambda_max = 1/4 of a
 *     diagonal Sigma_1 set by the test); NULL past the end; on_root returns 1 with stop = 1;
 *   - end to end: a loss-crossing event with stop = 1 under gmf_traj_integrate is recorded once,
 *     at the trajectory's last time, falling, with the loss value asked for.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/events.h"
#include "gmflow/flow.h"
#include "gmflow/ode.h"
#include "gmflow/sqloss.h"
#include "gmflow/toy.h"
#include "gmflow/traj.h"
#include "testutil.h"
#include "tu_toy.h"

#define K 3

static double sentinel; /* its address stands for a stale non-NULL pointer */

static void check_lifecycle(gmf_oracle o) {
    const gmf_events_opts ok = {.grad_tol = 1e-3, .stop = 1};
    gmf_events *e = (gmf_events *)(void *)&sentinel; /* must be overwritten with NULL */
    CHECK(gmf_events_new(NULL, GMF_FLOW_BW, K, o, &ok) == GMF_EINVAL, "null output refused");
    CHECK(gmf_events_new(&e, GMF_FLOW_BW, K, o, NULL) == GMF_EINVAL && !e,
          "null options refused, *out NULL");
    gmf_events_opts bad = ok;
    bad.grad_tol = -1.0;
    e = (gmf_events *)(void *)&sentinel;
    CHECK(gmf_events_new(&e, GMF_FLOW_BW, K, o, &bad) == GMF_EINVAL && !e &&
              strstr(gmf_errmsg(), "grad_tol"),
          "negative grad_tol refused naming it: '%s'", gmf_errmsg());
    bad = ok;
    bad.loss_on = 1, bad.loss_value = NAN;
    e = (gmf_events *)(void *)&sentinel;
    CHECK(gmf_events_new(&e, GMF_FLOW_BW, K, o, &bad) == GMF_EINVAL && !e,
          "non-finite loss value refused, *out NULL");
    e = (gmf_events *)(void *)&sentinel;
    CHECK(gmf_events_new(&e, GMF_FLOW_BW, 0, o, &ok) == GMF_EINVAL && !e,
          "K = 0 refused (by the flow), *out NULL");
    gmf_events_free(NULL);
    CHECK(gmf_events_count(NULL) == 0 && gmf_events_ndropped(NULL) == 0 && !gmf_events_get(NULL, 0),
          "no events object (a run without events): count 0, ndropped 0, no event 0");
    CHECK(gmf_events_new(&e, GMF_FLOW_BW, K, o, &ok) == GMF_OK && e, "new: %s", gmf_errmsg());
    if (!e) return;
    CHECK(gmf_events_count(e) == 0 && gmf_events_ndropped(e) == 0 && !gmf_events_get(e, 0),
          "a fresh object: count 0, ndropped 0, no event 0");
    gmf_events_free(e);
}

/* ||F(y)||_2 summed by hand, and the loss, from a flow of the test's own. */
static void reference(gmf_oracle o, const double *y, double *gnorm, double *loss) {
    gmf_flow *f = NULL;
    *gnorm = *loss = NAN;
    CHECK(gmf_flow_new(&f, GMF_FLOW_BW, K, o) == GMF_OK, "flow: %s", gmf_errmsg());
    if (!f) return;
    const size_t N = gmf_flow_dim(f);
    double *F = tu_xmalloc(N * sizeof(double)), s = 0.0;
    CHECK(gmf_flow_rhs(f, y, F) == GMF_OK, "rhs: %s", gmf_errmsg());
    for (size_t i = 0; i < N; i++)
        s += F[i] * F[i];
    *gnorm = sqrt(s);
    CHECK(gmf_flow_loss(f, y, loss) == GMF_OK, "loss: %s", gmf_errmsg());
    free(F);
    gmf_flow_free(f);
}

static void check_record(const gmf_event *ev, gmf_event_kind kind, long comp, double t, int dir,
                         const double *y, size_t N, const char *what) {
    CHECK(ev != NULL, "%s: recorded", what);
    if (!ev) return;
    CHECK(ev->kind == kind && ev->component == comp && ev->t == t && ev->direction == dir,
          "%s: kind %d (want %d), component %ld (want %ld), t %g (want %g), direction %d (want %d)",
          what, (int)ev->kind, (int)kind, ev->component, comp, ev->t, t, ev->direction, dir);
    CHECK(ev->y && ev->y != y && memcmp(ev->y, y, N * sizeof(double)) == 0,
          "%s: a copy of the state", what);
}

static void check_recording(gmf_oracle o, const double *y, const double *y2) {
    const size_t D = o.D, N = K * (D + D * D);
    gmf_events_opts eo = {.grad_tol = 1e-3,
                          .loss_on = 1,
                          .loss_value = 0.05,
                          .collapse_ratio = 0.5,
                          .stop = 0,
                          .max_events = 3};
    gmf_events *e = NULL;
    CHECK(gmf_events_new(&e, GMF_FLOW_BW, K, o, &eo) == GMF_OK, "new: %s", gmf_errmsg());
    if (!e) return;
    gmf_ode_opts ode = gmf_ode_defaults();
    gmf_events_attach(e, &ode);
    const int want_dir[2 + K] = {-1, 0, -1, -1, -1};
    CHECK(ode.nroots == 2 + K && ode.root_dir && ode.roots && ode.on_root && ode.scalar &&
              ode.hook_user == e,
          "attach: %zu event functions (want %d) and the hooks", ode.nroots, 2 + K);
    if (ode.nroots != 2 + K || !ode.on_root || !ode.root_dir) {
        gmf_events_free(e);
        return;
    }
    CHECK(memcmp(ode.root_dir, want_dir, sizeof want_dir) == 0, "directions grad, loss, collapse");
    const int w1[2 + K] = {-1, +1, 0, 0, 0}; /* grad falling, loss rising at t = 1.5 */
    const int w2[2 + K] = {0, 0, 0, -1, -1}; /* components 1 and 2 collapse at t = 2.5 */
    CHECK(ode.on_root(1.5, y, w1, ode.hook_user) == 0, "on_root goes on (stop 0)");
    CHECK(gmf_events_count(e) == 2 && gmf_events_ndropped(e) == 0,
          "count %zu (want 2), dropped %zu", gmf_events_count(e), gmf_events_ndropped(e));
    CHECK(ode.on_root(2.5, y2, w2, ode.hook_user) == 0, "on_root goes on (stop 0)");
    CHECK(gmf_events_count(e) == 3 && gmf_events_ndropped(e) == 1,
          "count %zu (want 3: max_events), dropped %zu (want 1)", gmf_events_count(e),
          gmf_events_ndropped(e));
    double gnorm, loss, gnorm2, loss2;
    reference(o, y, &gnorm, &loss);
    reference(o, y2, &gnorm2, &loss2);
    const gmf_event *e0 = gmf_events_get(e, 0), *e1 = gmf_events_get(e, 1),
                    *e2 = gmf_events_get(e, 2);
    check_record(e0, GMF_EVENT_GRAD, -1, 1.5, -1, y, N, "event 0");
    check_record(e1, GMF_EVENT_LOSS, -1, 1.5, +1, y, N, "event 1");
    check_record(e2, GMF_EVENT_COLLAPSE, 1, 2.5, -1, y2, N, "event 2");
    if (e0) CHECK_CLOSE(e0->value, gnorm, 1e-13, 0.0, "event 0: ||F(y)||");
    if (e1) CHECK_CLOSE(e1->value, loss, 1e-15, 0.0, "event 1: the loss");
    if (e2) CHECK_CLOSE(e2->value, 0.25, 1e-15, 0.0, "event 2: lambda_min / lambda_max of Sigma_1");
    CHECK(!gmf_events_get(e, 3) && !gmf_events_get(e, SIZE_MAX), "no event past the end");
    char desc[256] = "";
    if (e2) gmf_events_describe(e, e2, desc, sizeof desc);
    CHECK(strstr(desc, "component 1 collapse") != NULL, "describe: '%s'", desc);
    gmf_events_free(e);

    eo.stop = 1, eo.max_events = 0; /* 0: the default 1000 */
    CHECK(gmf_events_new(&e, GMF_FLOW_BW, K, o, &eo) == GMF_OK, "new: %s", gmf_errmsg());
    if (!e) return;
    gmf_events_attach(e, &ode);
    CHECK(ode.on_root(0.5, y2, w2, ode.hook_user) == 1, "on_root stops (stop 1)");
    CHECK(gmf_events_count(e) == 2 && gmf_events_ndropped(e) == 0, "stop: count %zu (want 2)",
          gmf_events_count(e));
    check_record(gmf_events_get(e, 1), GMF_EVENT_COLLAPSE, 2, 0.5, -1, y2, N, "stop: event 1");
    gmf_events_free(e);
}

static void check_integrate(gmf_oracle o, const double *y) {
    const size_t D = o.D;
    double gnorm, loss0;
    reference(o, y, &gnorm, &loss0);
    const double target = 0.9 * loss0, tout[3] = {0.0, 5.0, 10.0};
    gmf_events_opts eo = {.loss_on = 1, .loss_value = target, .stop = 1};
    gmf_events *e = NULL;
    gmf_traj *tr = NULL;
    CHECK(gmf_events_new(&e, GMF_FLOW_BW, K, o, &eo) == GMF_OK, "new: %s", gmf_errmsg());
    CHECK(gmf_traj_new(&tr, GMF_FLOW_BW, 3, K, D) == GMF_OK, "traj: %s", gmf_errmsg());
    if (!e || !tr) {
        gmf_events_free(e), gmf_traj_free(tr);
        return;
    }
    gmf_ode_opts ode = gmf_ode_defaults();
    ode.rtol = 1e-10, ode.atol = 1e-12;
    gmf_events_attach(e, &ode);
    gmf_ode_stats st;
    CHECK(gmf_traj_integrate(tr, o, y, tout, &st, &ode) == GMF_OK, "integrate: %s", gmf_errmsg());
    const gmf_event *ev = gmf_events_get(e, 0);
    CHECK(st.stopped && gmf_events_count(e) == 1 && gmf_events_ndropped(e) == 0 && ev,
          "one event, stopped (count %zu, stopped %d)", gmf_events_count(e), st.stopped);
    if (ev) {
        const size_t T = gmf_traj_done(tr);
        CHECK(ev->kind == GMF_EVENT_LOSS && ev->direction == -1 && ev->component == -1,
              "a falling loss crossing");
        CHECK(T >= 2 && ev->t == gmf_traj_t(tr)[T - 1] && ev->t > 0 && ev->t < 10,
              "at the trajectory's last time %g (event %g)", gmf_traj_t(tr)[T - 1], ev->t);
        CHECK_CLOSE(ev->value, target, 1e-8, 0.0, "the loss at the event");
    }
    gmf_traj_free(tr);
    gmf_events_free(e);
}

int main(void) {
    tu_toy toy = tu_toy_new(40, 2, 9);
    const size_t D = toy.d + 1, M = K * (D + D * D);
    double *y = tu_xmalloc(M * sizeof(double)), *y2 = tu_xmalloc(M * sizeof(double));
    CHECK(gmf_toy_init_mixture(K, D, 0.5, 3, y, NULL, y + K * D) == GMF_OK, "mixture");
    memcpy(y2, y, M * sizeof(double));
    double *S1 = y2 + gmf_flow_mat_offset(K, D, 1); /* Sigma_1 = diag(4, 2, 1): ratio 1/4 */
    memset(S1, 0, D * D * sizeof(double));
    for (size_t i = 0; i < D; i++)
        S1[i * D + i] = (double)(1u << (D - 1 - i));
    const gmf_oracle o = gmf_sqloss_oracle(toy.sq);
    check_lifecycle(o);
    check_recording(o, y, y2);
    check_integrate(o, y);
    free(y), free(y2);
    tu_toy_free(&toy);
    return tu_finish("test_events_api");
}
