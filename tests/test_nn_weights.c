/* test_nn_weights.c -- learned mixture weights of the GM layers (nn.h: gmf_nn_model_set_weights,
 * gmf_nn_gm_forward_w / _backward_w, gmf_nn_ws_set_weight_rule), each against an independent
 * route:
 *   - the gradient of every parameter group, the logits "a" included, against central finite
 *     differences of the loss, in double, for gm (1, 2 and 4 threads: 4 > K leaves a thread
 *     without components), gm-full and gm-stack (a1, a2), at random non-zero logits;
 *   - the forward pass against sum_k w_k h_k(x), h_k the K = 1 layer of component k alone, with
 *     w = softmax(a) formed here (and at a = 0 against the fixed-weight layer);
 *   - the SGD steps of the logits against their formulas with g_k = dL/dw_k formed here from the
 *     K = 1 layers (euclid: a -= lr w_k (g_k - gbar); fr: a -= lr (g_k - gbar)); the fused pool
 *     step against the plain loss_grad + sgd_apply route; the weights after the step on the
 *     simplex; the fr step's weight change against the WFR reaction -w_k (g_k - gbar) (first
 *     order in lr: the error ratio for lr and lr/2 near 2... measured: see the output);
 *   - the per-mass transport rate: at equal weights the same step as plain, bitwise; at unequal
 *     weights component k's mean moves by lr / (K w_k) times its gradient;
 *   - the Monte Carlo reduction (neurons with k ~ w) against the layer, |z| <= 5; the width-K
 *     means network against its formula with the weights;
 *   - checkpoints: round trip, the header-only reader infers the logits, a fixed-weight model
 *     refuses a learned-weight checkpoint naming both models; the snapshot shape of "a" is (K,).
 */
#include <stdint.h>
#include <unistd.h>

#include "gmflow/common.h"
#include "gmflow/nn.h"
#include "gmflow/train.h"
#include "testutil.h"
#include "tu_net.h"

#define TOL 1e-6

/* ---- finite differences of the mean batch loss ---------------------------------------------- */

/* max_e |g_e - fd_e| / max(max |fd|, 1e-8) over v[0..n), h = 1e-6 max(|v_e|, 0.1) */
static double fd_err(tu_net *c, double *v, size_t n, const double *g) {
    double maxfd = 0.0, maxdiff = 0.0;
    for (size_t e = 0; e < n; e++) {
        const double v0 = v[e], h = 1e-6 * fmax(fabs(v0), 0.1);
        v[e] = v0 + h;
        const double fp = tu_net_loss(c);
        v[e] = v0 - h;
        const double fm = tu_net_loss(c);
        v[e] = v0;
        const double fd = (fp - fm) / (2 * h);
        maxfd = fmax(maxfd, fabs(fd));
        maxdiff = fmax(maxdiff, fabs(fd - g[e]));
    }
    tu_net_loss(c);
    return maxdiff / fmax(maxfd, 1e-8);
}

static void make_model(gmf_nn_model *m, gmf_nn_kind kind, size_t d, size_t L, size_t K, size_t Lmid,
                       gsl_rng *r, double ascale) {
    if (gmf_nn_model_init(m, kind, d, L, K, 0, Lmid) ||
        gmf_nn_model_set_weights(m, GMF_NN_WEIGHTS_LEARNED)) {
        fprintf(stderr, "model: %s\n", gmf_errmsg());
        exit(2);
    }
    gmf_nn_rng rng;
    gmf_nn_rng_seed(&rng, gsl_rng_get(r), 0);
    gmf_nn_init_gm(m, 0.5, &rng);
    for (int l = 1; l <= 2; l++) { /* random logits */
        const int g = gmf_nn_model_logits_group(m, l);
        if (g >= 0) tu_randn(r, K, ascale, m->params + m->group[g].off);
    }
}

static void grad_case(gmf_nn_kind kind, size_t d, size_t L, size_t K, size_t Lmid, int nthreads,
                      gsl_rng *r) {
    gmf_nn_model m;
    make_model(&m, kind, d, L, K, Lmid, r, 1.0);
    char desc[128];
    gmf_nn_model_describe(&m, desc, sizeof desc);
    tu_net c;
    tu_net_init(&c, &m, 7, nthreads, r, desc);
    for (size_t gi = 0; gi < m.ngroups; gi++) {
        const gmf_nn_group *gr = &m.group[gi];
        const double err = fd_err(&c, m.params + gr->off, gr->n, c.g + gr->off);
        CHECK(err <= TOL, "%s T=%d d/d%s: FD error %.3g", desc, nthreads, gr->name, err);
        printf("  %-44s T=%d d/d%-6s err=%.2e\n", desc, nthreads, gr->name, err);
    }
    tu_net_check_accumulate(&c, desc); /* the accumulator gets the logits' gradient too */
    tu_net_free(&c);
    gmf_nn_model_free(&m);
}

/* ---- the forward pass against K single-component layers ------------------------------------ */

/* Component k of a diagonal GM layer (view p) as the parameters of a K = 1 layer. */
static void comp_params(double *P1, gmf_nn_gm_params_d p, size_t d, size_t L, size_t k) {
    memcpy(P1, p.mu + k * d, d * sizeof(double));
    memcpy(P1 + d, p.sigma + k * d, d * sizeof(double));
    memcpy(P1 + 2 * d, p.U + k * L * d, L * d * sizeof(double));
    memcpy(P1 + 2 * d + L * d, p.v + k * L, L * sizeof(double));
}

/* Hk[k] (B x L): the K = 1 layer of component k on X. */
static void comp_outputs(double *Hk, const gmf_nn_model *m, const double *X, size_t B) {
    const size_t d = m->d, L = m->L, K = m->K, n1 = gmf_nn_gm_nparams(d, 1, L);
    gmf_nn_gm_cache_d c1;
    if (gmf_nn_gm_cache_init_d(&c1, B, d, 1, L)) exit(2);
    double P1[n1];
    const gmf_nn_gm_params_d p = gmf_nn_net_view_d(m, m->params).gm[0];
    for (size_t k = 0; k < K; k++) {
        comp_params(P1, p, d, L, k);
        gmf_nn_gm_forward_d(Hk + k * B * L, &c1, X, P1, B, d, 1, L);
    }
    gmf_nn_gm_cache_free_d(&c1);
}

static void softmax_here(double *w, const double *a, size_t K) {
    double s = 0.0;
    for (size_t k = 0; k < K; k++)
        s += exp(a[k]);
    for (size_t k = 0; k < K; k++)
        w[k] = exp(a[k]) / s;
}

static void forward_case(gsl_rng *r) {
    const size_t d = 6, L = 3, K = 4, B = 5;
    gmf_nn_model m;
    make_model(&m, GMF_NN_GM, d, L, K, 0, r, 1.5);
    double X[B * d], Hk[K * B * L], H[B * L], w[K];
    tu_randn(r, B * d, 1.0, X);
    comp_outputs(Hk, &m, X, B);
    const gmf_nn_net_params_d p = gmf_nn_net_view_d(&m, m.params);
    softmax_here(w, p.gm[0].a, K);
    for (int T = 1; T <= 3; T += 2) { /* the network, 1 and 3 threads */
        gmf_nn_ws_d *ws;
        TU_OK(gmf_nn_ws_new_d(&ws, &m, B, T));
        gmf_nn_forward_d(H, ws, X, B);
        double err = 0.0, ref = 0.0;
        for (size_t e = 0; e < B * L; e++) {
            double want = 0.0;
            for (size_t k = 0; k < K; k++)
                want += w[k] * Hk[k * B * L + e];
            err = fmax(err, fabs(H[e] - want)), ref = fmax(ref, fabs(want));
        }
        CHECK(err <= 1e-14 * ref, "forward T=%d vs sum_k w_k h_k: %g (scale %g)", T, err, ref);
        printf("  forward (T=%d) vs sum_k w_k h_k (K=1 layers): max error %.2e of %.2e\n", T, err,
               ref);
        gmf_nn_ws_free_d(ws);
    }
    /* a = 0: the fixed-weight layer (sum / K); learned path in double, to rounding */
    memset(p.gm[0].a, 0, K * sizeof(double));
    gmf_nn_gm_cache_d c;
    if (gmf_nn_gm_cache_init_d(&c, B, d, K, L)) exit(2);
    double H0[B * L];
    gmf_nn_gm_forward_d(H0, &c, X, m.params, B, d, K, L);
    gmf_nn_gm_forward_w_d(H, &c, X, m.params, p.gm[0].a, B, d, K, L);
    const double e0 = tu_vec_relerr(H, H0, B * L, 1e-300);
    CHECK(e0 <= 1e-15, "a = 0 vs fixed weights: %g", e0);
    gmf_nn_gm_cache_free_d(&c);
    gmf_nn_model_free(&m);
}

/* ---- the logits' SGD step ------------------------------------------------------------------ */

/* g_k = dL/dw_k of the mean loss at m, from the K = 1 layers and the loss gradient dH */
static void weight_grad(double *gk, const gmf_nn_model *m, const double *X, const uint8_t *y,
                        size_t B) {
    const size_t L = m->L, K = m->K;
    double Hk[K * B * L], H[B * L], dH[B * L], w[K];
    comp_outputs(Hk, m, X, B);
    softmax_here(w, gmf_nn_net_view_d(m, m->params).gm[0].a, K);
    for (size_t e = 0; e < B * L; e++) {
        H[e] = 0.0;
        for (size_t k = 0; k < K; k++)
            H[e] += w[k] * Hk[k * B * L + e];
    }
    gmf_nn_refloss_d(dH, NULL, H, y, 1.0 / (double)B, B, L);
    for (size_t k = 0; k < K; k++) {
        gk[k] = 0.0;
        for (size_t e = 0; e < B * L; e++)
            gk[k] += dH[e] * Hk[k * B * L + e];
    }
}

/* One step with only the logits learning (rate lr), fused (pool, 2 threads) or plain. */
static void logits_step(gmf_nn_model *m, const double *X, const uint8_t *y, size_t B, double lr,
                        gmf_nn_wgeom geom, int fused) {
    double rates[GMF_NN_MAX_GROUPS] = {0};
    rates[gmf_nn_model_logits_group(m, 1)] = lr;
    gmf_nn_ws_d *ws;
    TU_OK(gmf_nn_ws_new_d(&ws, m, B, 2));
    gmf_nn_ws_set_weight_rule_d(ws, geom, 0);
    if (fused) {
        gmf_nn_sgd_step_d(ws, X, y, B, rates);
    } else {
        gmf_nn_loss_grad_d(ws, X, y, B, 1.0 / (double)B, 0);
        gmf_nn_sgd_apply_d(ws, rates, 0);
    }
    gmf_nn_ws_store_d(ws);
    gmf_nn_ws_free_d(ws);
}

static void step_case(gsl_rng *r) {
    const size_t d = 5, L = 3, K = 3, B = 8;
    gmf_nn_model m;
    make_model(&m, GMF_NN_GM, d, L, K, 0, r, 1.0);
    double X[B * d];
    uint8_t y[B];
    tu_randn(r, B * d, 1.0, X);
    for (size_t i = 0; i < B; i++)
        y[i] = (uint8_t)gsl_rng_uniform_int(r, L + 1);
    const int ga = gmf_nn_model_logits_group(&m, 1);
    double *a = m.params + m.group[ga].off;
    const double a0[3] = {0.3, -0.4, 0.8}; /* the hand example */
    memcpy(a, a0, sizeof a0);
    double *p0 = tu_xmalloc(m.nparams * sizeof(double));
    memcpy(p0, m.params, m.nparams * sizeof(double));
    double g[K], w[K], gbar = 0.0;
    weight_grad(g, &m, X, y, B);
    softmax_here(w, a0, K);
    for (size_t k = 0; k < K; k++)
        gbar += w[k] * g[k];
    const double lr = 0.5;
    for (int geom = 0; geom < 2; geom++)
        for (int fused = 0; fused < 2; fused++) {
            memcpy(m.params, p0, m.nparams * sizeof(double));
            logits_step(&m, X, y, B, lr, (gmf_nn_wgeom)geom, fused);
            double err = 0.0, other = 0.0, w1[K], sum = 0.0;
            for (size_t k = 0; k < K; k++) {
                const double want = a0[k] - lr * (geom ? 1.0 : w[k]) * (g[k] - gbar);
                err = fmax(err, fabs(a[k] - want));
            }
            for (size_t e = 0; e < (size_t)m.group[ga].off; e++)
                other = fmax(other, fabs(m.params[e] - p0[e]));
            softmax_here(w1, a, K);
            for (size_t k = 0; k < K; k++)
                sum += w1[k];
            CHECK(err <= 1e-13, "%s step (%s): logits off the formula by %g",
                  geom ? "fr" : "euclid", fused ? "fused" : "plain", err);
            CHECK(other == 0.0, "%s step: a frozen group moved (%g)", geom ? "fr" : "euclid",
                  other);
            CHECK(fabs(sum - 1.0) <= 1e-12 && w1[0] > 0 && w1[1] > 0 && w1[2] > 0,
                  "weights after the step off the simplex: sum - 1 = %g", sum - 1.0);
            printf("  %-6s step (%s): logits vs formula %.2e, |sum w - 1| = %.1e\n",
                   geom ? "fr" : "euclid", fused ? "fused" : "plain", err, fabs(sum - 1.0));
        }
    /* the fr step's weight change is the WFR reaction to first order: with
     * dw(lr) = (w(a - lr (g - gbar)) - w) / lr, dw(lr) + w (g - gbar) = O(lr) */
    double e1 = 0.0, e2 = 0.0;
    for (int half = 0; half < 2; half++) {
        const double h = half ? 0.005 : 0.01;
        memcpy(m.params, p0, m.nparams * sizeof(double));
        logits_step(&m, X, y, B, h, GMF_NN_WGEOM_FR, 1);
        double w1[K], e = 0.0;
        softmax_here(w1, a, K);
        for (size_t k = 0; k < K; k++)
            e = fmax(e, fabs((w1[k] - w[k]) / h + w[k] * (g[k] - gbar)));
        *(half ? &e2 : &e1) = e;
    }
    CHECK(e1 / e2 > 1.8 && e1 / e2 < 2.2, "fr step vs WFR reaction: error ratio %g (want ~2)",
          e1 / e2);
    printf("  fr step vs the WFR reaction -w (g - gbar): error %.2e (lr 0.01), %.2e (0.005), "
           "ratio %.3f\n",
           e1, e2, e1 / e2);
    free(p0);
    gmf_nn_model_free(&m);
}

/* ---- per-mass transport -------------------------------------------------------------------- */

static void per_mass_case(gsl_rng *r) {
    const size_t d = 5, L = 3, K = 3, B = 8;
    gmf_nn_model m;
    make_model(&m, GMF_NN_GM, d, L, K, 0, r, 0.0); /* a = 0: equal weights */
    double X[B * d];
    uint8_t y[B];
    tu_randn(r, B * d, 1.0, X);
    for (size_t i = 0; i < B; i++)
        y[i] = (uint8_t)gsl_rng_uniform_int(r, L + 1);
    double lr[GMF_NN_MAX_GROUPS] = {0.1, 0.5, 0.1, 0.1, 0.2};
    double *p0 = tu_xmalloc(m.nparams * sizeof(double)), *p1 = tu_xmalloc(m.nparams * 8);
    memcpy(p0, m.params, m.nparams * sizeof(double));
    for (int pm = 0; pm < 2; pm++) { /* equal weights: per-mass = plain, bitwise (fused) */
        memcpy(m.params, p0, m.nparams * sizeof(double));
        gmf_nn_ws_d *ws;
        TU_OK(gmf_nn_ws_new_d(&ws, &m, B, 2));
        gmf_nn_ws_set_weight_rule_d(ws, GMF_NN_WGEOM_EUCLID, pm);
        gmf_nn_sgd_step_d(ws, X, y, B, lr);
        gmf_nn_ws_store_d(ws);
        gmf_nn_ws_free_d(ws);
        if (!pm) memcpy(p1, m.params, m.nparams * sizeof(double));
    }
    CHECK(!memcmp(p1, m.params, m.nparams * sizeof(double)),
          "per-mass at equal weights differs from plain");
    /* unequal weights: mu_k moves by lr / (K w_k) times its gradient (fused and plain) */
    const int ga = gmf_nn_model_logits_group(&m, 1);
    const double a0[3] = {1.0, -0.5, 0.2};
    memcpy(p0 + m.group[ga].off, a0, sizeof a0);
    double w[K];
    softmax_here(w, a0, K);
    memcpy(m.params, p0, m.nparams * sizeof(double));
    gmf_nn_ws_d *ws;
    TU_OK(gmf_nn_ws_new_d(&ws, &m, B, 1));
    gmf_nn_loss_grad_d(ws, X, y, B, 1.0 / (double)B, 0);
    double *g = tu_xmalloc(m.nparams * sizeof(double));
    memcpy(g, gmf_nn_ws_grad_d(ws), m.nparams * sizeof(double));
    gmf_nn_ws_free_d(ws);
    for (int fused = 0; fused < 2; fused++) {
        memcpy(m.params, p0, m.nparams * sizeof(double));
        TU_OK(gmf_nn_ws_new_d(&ws, &m, B, 2));
        gmf_nn_ws_set_weight_rule_d(ws, GMF_NN_WGEOM_EUCLID, 1);
        if (fused) {
            gmf_nn_sgd_step_d(ws, X, y, B, lr);
        } else {
            gmf_nn_loss_grad_d(ws, X, y, B, 1.0 / (double)B, 0);
            gmf_nn_sgd_apply_d(ws, lr, 0);
        }
        gmf_nn_ws_store_d(ws);
        gmf_nn_ws_free_d(ws);
        double err = 0.0, ref = 0.0;
        for (size_t gi = 0; gi < GMF_NN_GM_NGROUPS; gi++) { /* mu, sigma, U, v */
            const gmf_nn_group *gr = &m.group[gi];
            const size_t nk = gr->n / K;
            for (size_t e = 0; e < gr->n; e++) {
                const double want =
                    p0[gr->off + e] - lr[gi] / ((double)K * w[e / nk]) * g[gr->off + e];
                err = fmax(err, fabs(m.params[gr->off + e] - want));
                ref = fmax(ref, fabs(p0[gr->off + e] - want));
            }
        }
        CHECK(err <= 1e-12 * (1 + ref), "per-mass step (%s): error %g", fused ? "fused" : "plain",
              err);
        printf("  per-mass step (%s) vs p - lr g / (K w_k): %.2e (step size %.2e)\n",
               fused ? "fused" : "plain", err, ref);
    }
    free(g), free(p0), free(p1);
    gmf_nn_model_free(&m);
}

/* ---- checkpoints and snapshots ------------------------------------------------------------- */

static void checkpoint_case(gsl_rng *r) {
    gmf_nn_model m;
    make_model(&m, GMF_NN_GMSTACK, 4, 2, 3, 3, r, 1.0);
    char path[] = "/tmp/gmflow_test_weights_XXXXXX";
    const int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    close(fd);
    CHECK(!gmf_train_save_checkpoint(path, &m, 3, 7), "save: %s", gmf_errmsg());
    gmf_nn_model h;
    CHECK(!gmf_train_checkpoint_model(path, &h), "header reader: %s", gmf_errmsg());
    CHECK(h.weights == GMF_NN_WEIGHTS_LEARNED && h.nparams == m.nparams &&
              gmf_nn_model_group(&h, "a2") >= 0,
          "header reader: weights %d, %zu parameters", (int)h.weights, h.nparams);
    uint64_t ep = 0, sd = 0;
    CHECK(!gmf_train_load_checkpoint(path, &h, &ep, &sd), "load: %s", gmf_errmsg());
    CHECK(ep == 3 && sd == 7 && !memcmp(h.params, m.params, m.nparams * sizeof(double)),
          "round trip differs");
    gmf_nn_model f;
    gmf_nn_model_init(&f, GMF_NN_GMSTACK, 4, 2, 3, 0, 3);
    const int rc = gmf_train_load_checkpoint(path, &f, NULL, NULL);
    CHECK(rc == GMF_EFORMAT && strstr(gmf_errmsg(), "weights=learned"),
          "fixed model accepted a learned checkpoint (rc %d: %s)", rc, gmf_errmsg());
    size_t shape[3];
    const int g = gmf_nn_model_logits_group(&m, 2);
    CHECK(gmf_train_group_shape(&m, (size_t)g, shape) == 1 && shape[0] == 3, "shape of a2");
    CHECK(gmf_nn_model_set_weights(&m, GMF_NN_WEIGHTS_LEARNED) == GMF_EINVAL, "set twice");
    gmf_nn_model fc;
    gmf_nn_model_init(&fc, GMF_NN_FC, 4, 2, 0, 5, 0);
    CHECK(gmf_nn_model_set_weights(&fc, GMF_NN_WEIGHTS_LEARNED) == GMF_EINVAL, "fc weights");
    unlink(path);
    gmf_nn_model_free(&fc), gmf_nn_model_free(&f), gmf_nn_model_free(&h), gmf_nn_model_free(&m);
}

/* ---- fully connected networks drawn from a learned-weight mixture --------------------------- */

/* Monte Carlo reduction: neurons with component k ~ w; the width-n network's output against the
 * GM layer's (|z| <= 5 standard errors of the per-neuron contributions); the width-K means
 * network against sum_k w_k (U_k mu_k + v_k) relu(mu_k . x) formed here. */
static void fc_case(gsl_rng *r) {
    const size_t d = 4, L = 2, K = 3, B = 3, n = 1u << 17;
    gmf_nn_model m, fc, fm;
    make_model(&m, GMF_NN_GM, d, L, K, 0, r, 1.5);
    double X[B * d], H[B * L];
    tu_randn(r, B * d, 1.0, X);
    gmf_nn_ws_d *ws;
    TU_OK(gmf_nn_ws_new_d(&ws, &m, B, 1));
    gmf_nn_forward_d(H, ws, X, B);
    gmf_nn_ws_free_d(ws);
    gmf_nn_rng rng;
    gmf_nn_rng_seed(&rng, 99, 0);
    if (gmf_nn_model_init(&fc, GMF_NN_FC, d, L, 0, n, 0) ||
        gmf_nn_fc_from_gm(&fc, &m, GMF_NN_FROM_GM_SAMPLE, &rng))
        exit(2);
    const gmf_nn_fc_params_d f = gmf_nn_fc_view_d(fc.params, d, n, L);
    double zmax = 0.0;
    for (size_t i = 0; i < B; i++)
        for (size_t l = 0; l < L; l++) {
            double s1 = 0.0, s2 = 0.0;
            for (size_t j = 0; j < n; j++) {
                double z = 0.0;
                for (size_t e = 0; e < d; e++)
                    z += f.beta[j * d + e] * X[i * d + e];
                const double c = f.omega[j * L + l] * (z > 0 ? z : 0);
                s1 += c, s2 += c * c;
            }
            const double mean = s1 / n, se = sqrt((s2 / n - mean * mean) / n);
            zmax = fmax(zmax, fabs(mean - H[i * L + l]) / se);
        }
    CHECK(zmax <= 5.0, "Monte Carlo reduction with learned weights: |z| = %g", zmax);
    printf("  Monte Carlo reduction (2^17 neurons, k ~ w) vs the GM layer: max |z| %.2f\n", zmax);
    if (gmf_nn_model_init(&fm, GMF_NN_FC, d, L, 0, K, 0) ||
        gmf_nn_fc_from_gm(&fm, &m, GMF_NN_FROM_GM_MEANS, NULL))
        exit(2);
    const gmf_nn_gm_params_d p = gmf_nn_net_view_d(&m, m.params).gm[0];
    const gmf_nn_fc_params_d q = gmf_nn_fc_view_d(fm.params, d, K, L);
    double w[K], err = 0.0;
    softmax_here(w, p.a, K);
    for (size_t i = 0; i < B; i++)
        for (size_t l = 0; l < L; l++) {
            double want = 0.0, got = 0.0;
            for (size_t k = 0; k < K; k++) {
                double z = 0.0, zq = 0.0, om = p.v[k * L + l];
                for (size_t e = 0; e < d; e++) {
                    z += p.mu[k * d + e] * X[i * d + e];
                    zq += q.beta[k * d + e] * X[i * d + e];
                    om += p.U[(k * L + l) * d + e] * p.mu[k * d + e];
                }
                want += w[k] * om * (z > 0 ? z : 0);
                got += fm.fc_scale * q.omega[k * L + l] * (zq > 0 ? zq : 0);
            }
            err = fmax(err, fabs(got - want));
        }
    CHECK(err <= 1e-13, "means network with learned weights: error %g", err);
    gmf_nn_model_free(&fm), gmf_nn_model_free(&fc), gmf_nn_model_free(&m);
}

int main(void) {
    gsl_rng *r = tu_rng(20261130);
    printf("gradients (central differences, every group):\n");
    grad_case(GMF_NN_GM, 5, 3, 3, 0, 1, r);
    grad_case(GMF_NN_GM, 5, 3, 3, 0, 2, r);
    grad_case(GMF_NN_GM, 5, 3, 3, 0, 4, r);
    grad_case(GMF_NN_GMFULL, 3, 2, 3, 0, 1, r);
    grad_case(GMF_NN_GMSTACK, 6, 3, 3, 4, 1, r);
    printf("forward:\n");
    forward_case(r);
    printf("steps:\n");
    step_case(r);
    per_mass_case(r);
    printf("fc from the mixture:\n");
    fc_case(r);
    printf("checkpoints:\n");
    checkpoint_case(r);
    gsl_rng_free(r);
    return tu_finish("test_nn_weights");
}
