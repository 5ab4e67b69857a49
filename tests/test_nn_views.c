/* test_nn_views.c -- the trainer's internals with one home each (issue 11 item 4):
 *
 *  1. Named parameter views (gmf_nn_net_view) against the layouts written out by hand from
 *     nn.h's header comment (mu at 0, sigma at K d, U at 2 K d, v at 2 K d + K L d, ...), and
 *     against the model's group table indexed by the enum (group[GMF_NN_GROUP_U] is "U", starts
 *     at view.gm[0].U, and the blocks tile [0, nparams)).  Fails if a group is added in another
 *     order, a view points at another block, or an offset formula is wrong.
 *  2. The views carry meaning: gmf_nn_init_gm writes sigma = gamma and C = gamma I through them;
 *     the group found by *name* must hold exactly that.
 *  3. One SGD update: the fused GM step (gmf_nn_sgd_step) and the plain path (gmf_nn_loss_grad +
 *     gmf_nn_sgd_apply) give BITWISE the same parameters over two steps, in float and double,
 *     with the same thread count (2), also with a frozen group (lr 0: bitwise unchanged).  A
 *     second copy of the update rule that differed in any operation would fail this.
 *  4. The precision table: gmf_nn_ops_f / _d report their precision and dispatch to the same
 *     functions as the direct calls (a step through the table = a direct step, bitwise).
 *  5. Lifecycles (docs/ARCHITECTURE.md, API house style): every _free of the nn module takes
 *     NULL; a failed gmf_nn_ws_new leaves *out = NULL; a failed gmf_nn_model_init or
 *     gmf_nn_model_build leaves a zeroed model (safe to free); the workspace's accessors return
 *     its own arrays (dP, gacc, H), and the workspace's gradient is the one loss_grad reports.
 */
#include <stdint.h>

#include "../src/discrete/nn_internal.h"
#include "gmflow/common.h"
#include "gmflow/nn.h"
#include "testutil.h"

/* Offset of pointer q in the model's params (as a size_t), or SIZE_MAX for NULL. */
static size_t off(const gmf_nn_model *m, const double *q) {
    return q ? (size_t)(q - m->params) : SIZE_MAX;
}

/* One GM layer at base b: hand-written offsets (nn.h: mu | sigma or C | U | v) vs the view and
 * the groups g0.. of the model. */
static void check_gm_layer(const gmf_nn_model *m, gmf_nn_gm_params_d v, size_t g0, size_t b,
                           size_t d, size_t K, size_t L, int full, const char *sfx) {
    const size_t ncov = full ? K * d * d : K * d;
    const size_t want[4] = {b, b + K * d, b + K * d + ncov, b + K * d + ncov + K * L * d};
    const size_t n[4] = {K * d, ncov, K * L * d, K * L};
    const double *got[4] = {v.mu, full ? v.C : v.sigma, v.U, v.v};
    const char *names[4] = {"mu", full ? "C" : "sigma", "U", "v"};
    CHECK((full ? v.sigma : v.C) == NULL, "%s layer%s: the other covariance view is not NULL",
          gmf_nn_kind_name(m->kind), sfx);
    for (size_t g = 0; g < 4; g++) {
        char name[16];
        snprintf(name, sizeof name, "%s%s", names[g], sfx);
        const gmf_nn_group *gr = &m->group[g0 + g];
        CHECK(off(m, got[g]) == want[g], "%s view %s at %zu, layout says %zu",
              gmf_nn_kind_name(m->kind), name, off(m, got[g]), want[g]);
        CHECK(gr->off == want[g] && gr->n == n[g] && !strcmp(gr->name, name),
              "%s group %zu is %s [%zu, +%zu), want %s [%zu, +%zu)", gmf_nn_kind_name(m->kind),
              g0 + g, gr->name, gr->off, gr->n, name, want[g], n[g]);
        CHECK(gmf_nn_model_group(m, name) == (int)(g0 + g), "group %s found at index %d, want %zu",
              name, gmf_nn_model_group(m, name), g0 + g);
    }
}

static void test_layouts(void) {
    const size_t d = 7, L = 3, K = 4, W = 5, Lmid = 6;
    gmf_nn_model m;
    for (int full = 0; full < 2; full++) {
        CHECK(!gmf_nn_model_init(&m, full ? GMF_NN_GMFULL : GMF_NN_GM, d, L, K, 0, 0), "init");
        gmf_nn_net_params_d v = gmf_nn_net_view_d(&m, m.params);
        check_gm_layer(&m, v.gm[0], 0, 0, d, K, L, full, "");
        CHECK(m.ngroups == GMF_NN_GM_NGROUPS && v.gm[1].mu == NULL && v.fc.beta == NULL,
              "%s: %zu groups, stray views", gmf_nn_kind_name(m.kind), m.ngroups);
        CHECK(off(&m, v.gm[0].v) + K * L == m.nparams, "%s: blocks do not tile the parameters",
              gmf_nn_kind_name(m.kind));
        gmf_nn_model_free(&m);
    }
    CHECK(!gmf_nn_model_init(&m, GMF_NN_FC, d, L, 0, W, 0), "init fc");
    gmf_nn_net_params_d v = gmf_nn_net_view_d(&m, m.params);
    CHECK(off(&m, v.fc.beta) == 0 && off(&m, v.fc.omega) == W * d && m.nparams == W * (d + L),
          "fc view: beta at %zu, omega at %zu", off(&m, v.fc.beta), off(&m, v.fc.omega));
    CHECK(m.group[GMF_NN_GROUP_BETA].off == 0 && !strcmp(m.group[GMF_NN_GROUP_BETA].name, "beta") &&
              m.group[GMF_NN_GROUP_OMEGA].off == W * d &&
              !strcmp(m.group[GMF_NN_GROUP_OMEGA].name, "omega"),
          "fc groups");
    CHECK(v.gm[0].mu == NULL, "fc: stray GM view");
    gmf_nn_model_free(&m);
    CHECK(!gmf_nn_model_init(&m, GMF_NN_GMSTACK, d, L, K, 0, Lmid), "init stack");
    v = gmf_nn_net_view_d(&m, m.params);
    const size_t n1 = K * (2 * d + Lmid * d + Lmid); /* layer 1: d -> Lmid */
    check_gm_layer(&m, v.gm[0], 0, 0, d, K, Lmid, 0, "1");
    check_gm_layer(&m, v.gm[1], GMF_NN_GROUP_L2(0), n1, Lmid, K, L, 0, "2");
    CHECK(off(&m, v.gm[1].v) + K * L == m.nparams, "stack: blocks do not tile the parameters");
    for (size_t g = 0; g < m.ngroups; g++)
        CHECK(m.group[g].layer == (g >= GMF_NN_GROUP_L2(0) ? 2 : 1), "stack group %zu layer %d", g,
              m.group[g].layer);
    gmf_nn_model_free(&m);
}

/* gmf_nn_init_gm writes through the views; the groups found by name hold what it wrote. */
static void test_init_semantics(void) {
    const size_t d = 5, L = 2, K = 3;
    const double gamma = 0.375;
    for (int full = 0; full < 2; full++) {
        gmf_nn_model m;
        gmf_nn_rng rng;
        gmf_nn_rng_seed(&rng, 7, 0);
        CHECK(!gmf_nn_model_init(&m, full ? GMF_NN_GMFULL : GMF_NN_GM, d, L, K, 0, 0), "init");
        CHECK(!gmf_nn_init_gm(&m, gamma, &rng), "init_gm");
        const gmf_nn_group *g = &m.group[gmf_nn_model_group(&m, full ? "C" : "sigma")];
        size_t bad = 0;
        for (size_t e = 0; e < g->n; e++) {
            const size_t j = e % (d * d);
            const double want = !full ? gamma : (j / d == j % d ? gamma : 0.0);
            bad += m.params[g->off + e] != want;
        }
        CHECK(bad == 0, "%s: %zu entries of the covariance group are not the init",
              full ? "C" : "sigma", bad);
        g = &m.group[gmf_nn_model_group(&m, "mu")];
        size_t neq = 0;
        for (size_t e = 0; e < g->n; e++)
            neq += m.params[g->off + e] == gamma || m.params[g->off + e] == 0.0;
        CHECK(neq == 0, "mu holds %zu entries equal to gamma or 0 (not N(0, gamma^2) draws)", neq);
        gmf_nn_model_free(&m);
    }
}

/* Data for the step tests. */
#define D  24
#define KC 5
#define LL 3
#define BB 16

static void make_data(gsl_rng *r, double *X, float *Xf, uint8_t *y) {
    for (size_t e = 0; e < BB * D; e++)
        X[e] = gsl_ran_gaussian(r, 1.0) / sqrt((double)D), Xf[e] = (float)X[e];
    for (size_t i = 0; i < BB; i++)
        y[i] = (uint8_t)gsl_rng_uniform_int(r, LL + 1);
}

/* Two fused steps vs two plain steps, bitwise, in precision `prec`; lr[frozen] = 0. */
static void test_one_update(gsl_rng *r, int prec, int frozen) {
    gmf_nn_model a, b;
    gmf_nn_rng rng;
    gmf_nn_rng_seed(&rng, 11, 0);
    CHECK(!gmf_nn_model_init(&a, GMF_NN_GM, D, LL, KC, 0, 0), "init");
    CHECK(!gmf_nn_init_gm(&a, 0.5, &rng), "init_gm");
    CHECK(!gmf_nn_model_init(&b, GMF_NN_GM, D, LL, KC, 0, 0), "init");
    memcpy(b.params, a.params, a.nparams * sizeof(double));
    double X[BB * D], lr[GMF_NN_GM_NGROUPS] = {0.1, 1.0, 0.2, 0.3};
    float Xf[BB * D];
    uint8_t y[BB];
    make_data(r, X, Xf, y);
    if (frozen >= 0) lr[frozen] = 0.0;
    const double *before = NULL;
    double save[a.nparams];
    for (size_t e = 0; e < a.nparams; e++) /* what the workspace holds before the steps */
        save[e] = prec == 32 ? (double)(float)a.params[e] : a.params[e];
    before = save;
    for (int s = 0; s < 2; s++) {
        if (prec == 32) {
            gmf_nn_ws_f *wa, *wb;
            CHECK(!gmf_nn_ws_new_f(&wa, &a, BB, 2) && !gmf_nn_ws_new_f(&wb, &b, BB, 2), "ws");
            gmf_nn_sgd_step_f(wa, Xf, y, BB, lr);
            const double l = gmf_nn_loss_grad_f(wb, Xf, y, BB, 1.0 / BB, 0);
            CHECK(isfinite(l), "loss");
            gmf_nn_sgd_apply_f(wb, lr, 0);
            gmf_nn_ws_store_f(wa), gmf_nn_ws_store_f(wb);
            gmf_nn_ws_free_f(wa), gmf_nn_ws_free_f(wb);
        } else {
            gmf_nn_ws_d *wa, *wb;
            CHECK(!gmf_nn_ws_new_d(&wa, &a, BB, 2) && !gmf_nn_ws_new_d(&wb, &b, BB, 2), "ws");
            gmf_nn_sgd_step_d(wa, X, y, BB, lr);
            const double l = gmf_nn_loss_grad_d(wb, X, y, BB, 1.0 / BB, 0);
            CHECK(isfinite(l), "loss");
            gmf_nn_sgd_apply_d(wb, lr, 0);
            gmf_nn_ws_store_d(wa), gmf_nn_ws_store_d(wb);
            gmf_nn_ws_free_d(wa), gmf_nn_ws_free_d(wb);
        }
    }
    size_t diff = 0, moved = 0, frozen_moved = 0;
    for (size_t e = 0; e < a.nparams; e++) {
        diff += memcmp(&a.params[e], &b.params[e], sizeof(double)) != 0;
        moved += a.params[e] != before[e];
    }
    if (frozen >= 0) {
        const gmf_nn_group *g = &a.group[frozen];
        for (size_t e = g->off; e < g->off + g->n; e++)
            frozen_moved += memcmp(&a.params[e], &before[e], sizeof(double)) != 0;
    }
    CHECK(diff == 0,
          "float%d, frozen %d: fused step and loss_grad + apply differ in %zu of %zu "
          "parameters",
          prec, frozen, diff, a.nparams);
    const size_t nfree = a.nparams - (frozen >= 0 ? a.group[frozen].n : 0);
    CHECK(moved > nfree / 2, "float%d: only %zu of %zu parameters moved", prec, moved, nfree);
    CHECK(frozen_moved == 0, "float%d: %zu entries of frozen group %d moved", prec, frozen_moved,
          frozen);
    gmf_nn_model_free(&a), gmf_nn_model_free(&b);
}

/* A step through the table equals the direct step, bitwise. */
static void test_ops(gsl_rng *r) {
    CHECK(gmf_nn_ops_f.precision == 32 && gmf_nn_ops_f.real_size == sizeof(float), "ops_f");
    CHECK(gmf_nn_ops_d.precision == 64 && gmf_nn_ops_d.real_size == sizeof(double), "ops_d");
    double X[BB * D];
    float Xf[BB * D];
    uint8_t y[BB];
    make_data(r, X, Xf, y);
    size_t idx[BB];
    for (size_t i = 0; i < BB; i++)
        idx[i] = (5 * i + 1) % BB;
    const double lr[GMF_NN_GM_NGROUPS] = {0.1, 1.0, 0.1, 0.1};
    for (int p = 0; p < 2; p++) {
        const gmf_nn_ops *ops = p ? &gmf_nn_ops_d : &gmf_nn_ops_f;
        gmf_nn_model a, b;
        gmf_nn_rng rng;
        gmf_nn_rng_seed(&rng, 3, 0);
        CHECK(!gmf_nn_model_init(&a, GMF_NN_GM, D, LL, KC, 0, 0), "init");
        CHECK(!gmf_nn_init_gm(&a, 0.5, &rng), "init_gm");
        CHECK(!gmf_nn_model_init(&b, GMF_NN_GM, D, LL, KC, 0, 0), "init");
        memcpy(b.params, a.params, a.nparams * sizeof(double));
        void *wa;
        CHECK(!ops->ws_new(&wa, &a, BB, 1), "ops ws_new");
        double la, lb;
        la = ops->sgd_step_rows(wa, Xf, y, idx, BB, lr);
        ops->ws_store(wa);
        if (p) {
            gmf_nn_ws_d *wb;
            CHECK(!gmf_nn_ws_new_d(&wb, &b, BB, 1), "ws");
            lb = gmf_nn_sgd_step_rows_d(wb, Xf, y, idx, BB, lr);
            gmf_nn_ws_store_d(wb);
            gmf_nn_ws_free_d(wb);
        } else {
            gmf_nn_ws_f *wb;
            CHECK(!gmf_nn_ws_new_f(&wb, &b, BB, 1), "ws");
            lb = gmf_nn_sgd_step_rows_f(wb, Xf, y, idx, BB, lr);
            gmf_nn_ws_store_f(wb);
            gmf_nn_ws_free_f(wb);
        }
        ops->ws_free(wa);
        CHECK(la == lb && !memcmp(a.params, b.params, a.nparams * sizeof(double)),
              "float%d: a step through the ops table differs from the direct step", ops->precision);
        gmf_nn_model_free(&a), gmf_nn_model_free(&b);
    }
}

/* Item 5. */
static void test_lifecycle(gsl_rng *r) {
    gmf_nn_ws_free_f(NULL), gmf_nn_ws_free_d(NULL), gmf_nn_model_free(NULL);
    gmf_nn_gm_cache_free_f(NULL), gmf_nn_gm_cache_free_d(NULL);
    gmf_nn_gmfull_cache_free_f(NULL), gmf_nn_gmfull_cache_free_d(NULL);
    gmf_nn_gmlr_cache_free_f(NULL), gmf_nn_gmlr_cache_free_d(NULL);
    gmf_nn_fc_cache_free_f(NULL), gmf_nn_fc_cache_free_d(NULL);

    gmf_nn_model bad;
    memset(&bad, 0xab, sizeof bad);
    CHECK(gmf_nn_model_init(&bad, GMF_NN_GM, 0, LL, KC, 0, 0) == GMF_EINVAL && !bad.params &&
              bad.nparams == 0 && bad.ngroups == 0,
          "failed model init: not a zeroed model");
    gmf_nn_model_free(&bad);
    gmf_nn_spec spec;
    gmf_nn_spec_default(&spec);
    spec.fc_init = (gmf_nn_fc_init)7;
    memset(&bad, 0xab, sizeof bad);
    CHECK(gmf_nn_model_build(&bad, &spec, D, LL, 1) == GMF_EINVAL && !bad.params &&
              bad.nparams == 0,
          "failed model build: not a zeroed model");
    gmf_nn_model_free(&bad);
    /* sizes whose products wrap size_t: refused with a message, never a short allocation */
    const size_t huge[][5] = {
        {GMF_NN_GM, 784, 9, SIZE_MAX / 8, 0},      {GMF_NN_GM, SIZE_MAX / 2 + 1, 9, 2, 0},
        {GMF_NN_GMFULL, (size_t)1 << 33, 9, 2, 0}, {GMF_NN_GMLR, 784, 9, SIZE_MAX / 1024, 1},
        {GMF_NN_FC, SIZE_MAX - 3, 9, 0, 1000},     {GMF_NN_GMSTACK, 784, 9, (size_t)1 << 50, 0}};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        memset(&bad, 0xab, sizeof bad);
        const int rc = gmf_nn_model_init(&bad, (gmf_nn_kind)huge[i][0], huge[i][1], huge[i][2],
                                         huge[i][3], huge[i][4], 100);
        CHECK(rc == GMF_EINVAL && !bad.params && bad.nparams == 0 &&
                  strstr(gmf_errmsg(), "overflows size_t"),
              "huge model %zu: rc %d, message '%s'", i, rc, gmf_errmsg());
        gmf_nn_model_free(&bad);
    }

    memset(&bad, 0xab, sizeof bad); /* a rank outside [1, d] is reported as that */
    CHECK(gmf_nn_model_init(&bad, GMF_NN_GMLR, 784, 9, 20, SIZE_MAX, 0) == GMF_EINVAL &&
              strstr(gmf_errmsg(), "rank"),
          "huge rank: message '%s'", gmf_errmsg());
    gmf_nn_model_free(&bad);
    { /* a cache called directly (no checked model) whose K (L + 1) d wraps: refused */
        gmf_nn_gm_cache_f gc;
        const size_t big = (size_t)1 << 32;
        CHECK(gmf_nn_gm_cache_init_f(&gc, 4, big, 1, big - 1) == GMF_EINVAL && !gc.muW &&
                  strstr(gmf_errmsg(), "overflow"),
              "huge direct cache: message '%s'", gmf_errmsg());
        gmf_nn_gm_cache_free_f(&gc);
    }

    gmf_nn_model m;
    gmf_nn_rng rng;
    gmf_nn_rng_seed(&rng, 5, 0);
    CHECK(!gmf_nn_model_init(&m, GMF_NN_GM, D, LL, KC, 0, 0), "init");
    CHECK(!gmf_nn_init_gm(&m, 0.5, &rng), "init_gm");
    char dummy;
    gmf_nn_ws_f *wf = (gmf_nn_ws_f *)(void *)&dummy;
    gmf_nn_ws_d *wd = (gmf_nn_ws_d *)(void *)&dummy;
    CHECK(gmf_nn_ws_new_f(&wf, &m, 0, 1) == GMF_EINVAL && !wf, "failed ws_new_f: *out not NULL");
    CHECK(gmf_nn_ws_new_d(&wd, &m, 0, 1) == GMF_EINVAL && !wd, "failed ws_new_d: *out not NULL");
    /* batch sizes whose sizes overflow size_t (the second: Bmax d wraps to a few floats, which
     * an unchecked product would allocate as the batch buffer): refused, *out NULL */
    const size_t hugeB[2] = {SIZE_MAX / 64, SIZE_MAX / D + 2};
    for (int t = 1; t <= 4; t++) {
        wf = (gmf_nn_ws_f *)(void *)&dummy;
        const int rc = gmf_nn_ws_new_f(&wf, &m, hugeB[(t - 1) / 2], 2 - t % 2);
        CHECK(rc != GMF_OK && !wf && strstr(gmf_errmsg(), "overflow"),
              "huge batch %zu, %d thread(s): rc %d, message '%s'", hugeB[(t - 1) / 2], 2 - t % 2,
              rc, gmf_errmsg());
    }

    double X[BB * D];
    float Xf[BB * D];
    uint8_t y[BB];
    make_data(r, X, Xf, y);
    CHECK(!gmf_nn_ws_new_f(&wf, &m, BB, 2) && !gmf_nn_ws_new_d(&wd, &m, BB, 1), "ws_new");
    CHECK(gmf_nn_ws_grad_f(wf) == wf->dP && gmf_nn_ws_grad_acc_f(wf) == wf->gacc &&
              gmf_nn_ws_logits_f(wf) == wf->H,
          "float workspace accessors: not the workspace's arrays");
    CHECK(gmf_nn_ws_grad_d(wd) == wd->dP && gmf_nn_ws_grad_acc_d(wd) == wd->gacc &&
              gmf_nn_ws_logits_d(wd) == wd->H,
          "double workspace accessors: not the workspace's arrays");
    /* the gradient the accessor shows is the one loss_grad computed: accumulated twice = 2 g */
    const double l = gmf_nn_loss_grad_d(wd, X, y, BB, 1.0 / BB, 0);
    CHECK(isfinite(l), "loss");
    double g[m.nparams];
    memcpy(g, gmf_nn_ws_grad_d(wd), sizeof g);
    double *acc = gmf_nn_ws_grad_acc_d(wd);
    memset(acc, 0, sizeof g);
    gmf_nn_loss_grad_d(wd, X, y, BB, 1.0 / BB, 1), gmf_nn_loss_grad_d(wd, X, y, BB, 1.0 / BB, 1);
    size_t off = 0, nz = 0;
    for (size_t e = 0; e < m.nparams; e++)
        off += fabs(acc[e] - 2 * g[e]) > 1e-12 * (1 + fabs(g[e])), nz += g[e] != 0.0;
    CHECK(off == 0 && nz > m.nparams / 2, "gacc != 2 dP in %zu entries (%zu nonzero)", off, nz);
    gmf_nn_ws_free_f(wf), gmf_nn_ws_free_d(wd);
    gmf_nn_model_free(&m);
    CHECK(!m.params && m.nparams == 0, "gmf_nn_model_free: model not zeroed");
}

int main(void) {
    gsl_rng *r = tu_rng(20261130);
    test_layouts();
    test_init_semantics();
    for (int prec = 32; prec <= 64; prec += 32)
        for (int frozen = -1; frozen < GMF_NN_GM_NGROUPS; frozen++)
            test_one_update(r, prec, frozen);
    test_ops(r);
    test_lifecycle(r);
    gsl_rng_free(r);
    printf("  views = hand layouts and groups; fused = plain SGD bitwise (float32, float64, each "
           "group frozen); ops table = direct calls; lifecycles\n");
    return tu_finish("test_nn_views");
}
