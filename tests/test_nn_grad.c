/* test_nn_grad.c -- every backward pass of nn.h against central finite differences, in double.
 *
 * Each layer is checked through a scalar objective f = sum_il R_il H_il (R random), whose
 * gradient w.r.t. H is R: the backward pass gives df/dP and df/dX, and each entry is compared with
 * the central difference (f(p + h) - f(p - h)) / (2h), h = 1e-6 max(|p|, scale) (scale: the
 * magnitude of the entries of that block).  Figure of merit per gradient vector:
 *     err = max_e |g_e - fd_e| / max(max_e |fd_e|, 1e-8);   pass: err <= 1e-6.
 * A correct gradient gives ~1e-9 (truncation h^2 ~ 1e-12, rounding eps f / h ~ 1e-10); a wrong
 * term gives O(1).  Cases: random small shapes; sigma near 0 with m ~ s (|t| = O(1), gradients of
 * size 1/s); s == 0 exactly (a component with sigma = 0; an input x = 0) where the backward pass
 * must return the analytic limits (finite, and 0 where the function is flat); the full-covariance
 * layer; the FC layer; the unit-norm normalization; the reference-class loss (also against a
 * direct softmax over [0, h], and at |h| = 1e3 where a naive softmax overflows); and whole
 * networks of every kind (loss and gradient through gmf_nn_loss_grad_d), serial and with the
 * thread pool, plus the float instantiation against the double one.
 */
#include <stdint.h>

#include "../src/discrete/nn_internal.h"
#include "gmflow/common.h"
#include "gmflow/gauss.h"

#include "gmflow/nn.h"
#include "testutil.h"
#include "tu_net.h"

#define TOL 1e-6

static tu_worst worst;

/* ---- a generic checker: g (analytic) against central differences of f over v[0..n) -------- */

typedef tu_objective objective;

/* Step: h = 1e-6 max(|p|, scale), or the fixed step hfix when hfix > 0 (for functions that vary
 * on a scale much smaller than their parameters, such as m/s with s ~ 1e-4). */
static double hfix = 0.0;

static double check_fd(const char *what, double *v, size_t n, const double *g, objective f,
                       void *ctx, double scale, const unsigned char *skip) {
    return tu_check_fd(what, v, n, g, f, ctx, scale, hfix, skip, TOL, &worst);
}

/* ---- layer objective: f = sum R * H ------------------------------------------------------- */

enum { LAYER_GM, LAYER_FULL, LAYER_FC, LAYER_NORM };

typedef struct layer_ctx {
    int type;
    size_t B, d, K, L; /* FC: K = width */
    double *X, *P, *R, *H;
    double scale; /* FC output scale */
    gmf_nn_gm_cache_d gm;
    gmf_nn_gmfull_cache_d full;
    gmf_nn_fc_cache_d fc;
    double *nrm;
} layer_ctx;

static void layer_forward(layer_ctx *c) {
    switch (c->type) {
    case LAYER_GM:
        gmf_nn_gm_forward_d(c->H, &c->gm, c->X, c->P, c->B, c->d, c->K, c->L);
        break;
    case LAYER_FULL:
        gmf_nn_gmfull_forward_d(c->H, &c->full, c->X, c->P, c->B, c->d, c->K, c->L);
        break;
    case LAYER_FC:
        gmf_nn_fc_forward_d(c->H, &c->fc, c->X, c->P, c->scale, c->B, c->d, c->K, c->L);
        break;
    case LAYER_NORM:
        gmf_nn_unitnorm_forward_d(c->H, c->nrm, c->X, c->B, c->d);
        break;
    }
}

static double layer_obj(void *vc) {
    layer_ctx *c = vc;
    layer_forward(c);
    const size_t nout = c->B * (c->type == LAYER_NORM ? c->d : c->L);
    double f = 0.0;
    for (size_t e = 0; e < nout; e++)
        f += c->R[e] * c->H[e];
    return f;
}

static size_t layer_nparams(const layer_ctx *c) {
    switch (c->type) {
    case LAYER_GM:
        return gmf_nn_gm_nparams(c->d, c->K, c->L);
    case LAYER_FULL:
        return gmf_nn_gmfull_nparams(c->d, c->K, c->L);
    case LAYER_FC:
        return gmf_nn_fc_nparams(c->d, c->K, c->L);
    default:
        return 0;
    }
}

static layer_ctx layer_new(int type, size_t B, size_t d, size_t K, size_t L, gsl_rng *r) {
    layer_ctx c = {.type = type, .B = B, .d = d, .K = K, .L = L, .scale = 1.0};
    const size_t nout = B * (type == LAYER_NORM ? d : L), np = layer_nparams(&c);
    c.X = tu_xmalloc(B * d * sizeof(double));
    c.P = tu_xmalloc((np ? np : 1) * sizeof(double));
    c.R = tu_xmalloc(nout * sizeof(double));
    c.H = tu_xmalloc(nout * sizeof(double));
    c.nrm = tu_xmalloc(B * sizeof(double));
    tu_randn(r, B * d, 1.0, c.X);
    tu_randn(r, np, 0.7, c.P);
    tu_randn(r, nout, 1.0, c.R);
    int rc = 0;
    if (type == LAYER_GM) rc = gmf_nn_gm_cache_init_d(&c.gm, B, d, K, L);
    if (type == LAYER_FULL) rc = gmf_nn_gmfull_cache_init_d(&c.full, B, d, K, L);
    if (type == LAYER_FC) rc = gmf_nn_fc_cache_init_d(&c.fc, B, d, K, L);
    if (rc) {
        fprintf(stderr, "cache init failed\n");
        exit(2);
    }
    return c;
}

static void layer_free(layer_ctx *c) {
    if (c->type == LAYER_GM) gmf_nn_gm_cache_free_d(&c->gm);
    if (c->type == LAYER_FULL) gmf_nn_gmfull_cache_free_d(&c->full);
    if (c->type == LAYER_FC) gmf_nn_fc_cache_free_d(&c->fc);
    free(c->X), free(c->P), free(c->R), free(c->H), free(c->nrm);
}

/* Analytic gradients of f w.r.t. P (dP) and X (dX). */
static void layer_grad(layer_ctx *c, double *dP, double *dX) {
    layer_forward(c);
    switch (c->type) {
    case LAYER_GM:
        gmf_nn_gm_backward_d(dP, dX, &c->gm, c->R, c->X, c->P, c->B, c->d, c->K, c->L);
        break;
    case LAYER_FULL:
        gmf_nn_gmfull_backward_d(dP, dX, &c->full, c->R, c->X, c->P, c->B, c->d, c->K, c->L);
        break;
    case LAYER_FC:
        gmf_nn_fc_backward_d(dP, dX, &c->fc, c->R, c->X, c->P, c->scale, c->B, c->d, c->K, c->L);
        break;
    case LAYER_NORM:
        gmf_nn_unitnorm_backward_d(dX, c->R, c->H, c->nrm, c->B, c->d);
        break;
    }
}

/* Check dP block by block (names from the layout) and dX. */
static void layer_check(layer_ctx *c, const char *tag, double pscale, double xscale,
                        const unsigned char *xskip) {
    const size_t np = layer_nparams(c), d = c->d, K = c->K, L = c->L;
    double *dP = tu_xmalloc((np ? np : 1) * sizeof(double));
    double *dX = tu_xmalloc(c->B * d * sizeof(double));
    layer_grad(c, dP, dX);
    char what[128];
    struct {
        const char *name;
        size_t n;
    } blocks[4];
    size_t nb = 0;
    if (c->type == LAYER_GM || c->type == LAYER_FULL) {
        blocks[0].name = "mu", blocks[0].n = K * d;
        blocks[1].name = c->type == LAYER_GM ? "sigma" : "C";
        blocks[1].n = c->type == LAYER_GM ? K * d : K * d * d;
        blocks[2].name = "U", blocks[2].n = K * L * d;
        blocks[3].name = "v", blocks[3].n = K * L;
        nb = 4;
    } else if (c->type == LAYER_FC) {
        blocks[0].name = "beta", blocks[0].n = K * d;
        blocks[1].name = "omega", blocks[1].n = K * L;
        nb = 2;
    }
    size_t off = 0;
    for (size_t b = 0; b < nb; b++) {
        snprintf(what, sizeof what, "%s d/d%s", tag, blocks[b].name);
        check_fd(what, c->P + off, blocks[b].n, dP + off, layer_obj, c, pscale, NULL);
        off += blocks[b].n;
    }
    snprintf(what, sizeof what, "%s d/dX", tag);
    check_fd(what, c->X, c->B * d, dX, layer_obj, c, xscale, xskip);
    free(dP), free(dX);
}

/* ---- the cases ---------------------------------------------------------------------------- */

static void gm_cases(gsl_rng *r) {
    /* generic: several random shapes */
    const size_t shapes[][4] = {{5, 4, 3, 2}, {7, 6, 2, 3}, {1, 3, 1, 1}, {4, 9, 4, 5}};
    for (size_t t = 0; t < 4; t++) {
        layer_ctx c =
            layer_new(LAYER_GM, shapes[t][0], shapes[t][1], shapes[t][2], shapes[t][3], r);
        char tag[64];
        snprintf(tag, sizeof tag, "gm B=%zu d=%zu K=%zu L=%zu", shapes[t][0], shapes[t][1],
                 shapes[t][2], shapes[t][3]);
        layer_check(&c, tag, 0.1, 0.1, NULL);
        layer_free(&c);
    }

    /* sigma near 0 with m ~ s: |t| = O(1) while s ~ 1e-4, so gradients are O(1/s) */
    {
        const size_t B = 4, d = 5, K = 3, L = 2;
        layer_ctx c = layer_new(LAYER_GM, B, d, K, L, r);
        double *mu = c.P, *sigma = c.P + K * d;
        for (size_t e = 0; e < K * d; e++)
            sigma[e] = 1e-4 * (0.5 + gsl_rng_uniform(r));
        /* make x_i . mu_k = t_target * s_ik for sample 0 and every k: project mu_k */
        const double *x = c.X;
        double xx = 0.0;
        for (size_t j = 0; j < d; j++)
            xx += x[j] * x[j];
        for (size_t k = 0; k < K; k++) {
            double s2 = 0.0, m = 0.0;
            for (size_t j = 0; j < d; j++)
                s2 += sigma[k * d + j] * sigma[k * d + j] * x[j] * x[j], m += x[j] * mu[k * d + j];
            const double target = (0.3 + 0.4 * (double)k - 0.6) * sqrt(s2);
            for (size_t j = 0; j < d; j++)
                mu[k * d + j] += (target - m) / xx * x[j];
        }
        hfix = 1e-8; /* h / s ~ 5e-5: truncation ~1e-10, rounding ~1e-7 of O(1) gradients */
        layer_check(&c, "gm sigma~1e-4, m~s", 1e-4, 1e-4, NULL);
        hfix = 0.0;
        layer_free(&c);
    }

    /* s == 0 exactly: component 0 has sigma = 0 (flat in sigma_0 away from m = 0: gradient 0) and
     * row 1 of X is 0 (h = 0 for all parameters; not differentiable in x there: skipped) */
    {
        const size_t B = 3, d = 4, K = 2, L = 3;
        layer_ctx c = layer_new(LAYER_GM, B, d, K, L, r);
        double *sigma = c.P + K * d;
        for (size_t j = 0; j < d; j++)
            sigma[j] = 0.0;
        for (size_t j = 0; j < d; j++)
            c.X[1 * d + j] = 0.0;
        unsigned char skip[12] = {0};
        for (size_t j = 0; j < d; j++)
            skip[1 * d + j] = 1;
        layer_check(&c, "gm s=0 (sigma_0=0, x_1=0)", 0.1, 0.1, skip);
        /* the analytic limits: finite, zero gradient for sigma_0 */
        const size_t np = layer_nparams(&c);
        double dP[np], dX[B * d];
        layer_grad(&c, dP, dX);
        double ds0 = 0.0;
        for (size_t j = 0; j < d; j++)
            ds0 = fmax(ds0, fabs(dP[K * d + j]));
        CHECK(ds0 == 0.0, "gm s=0: d/dsigma_0 must be exactly 0 (got %g)", ds0);
        CHECK(tu_all_finite(c.H, B * L), "gm s=0: output not finite");
        for (size_t l = 0; l < L; l++)
            CHECK(c.H[1 * L + l] == 0.0, "gm x=0: h must be 0 (got %g)", c.H[1 * L + l]);
        layer_free(&c);
    }

    /* s == 0 with m != 0 through disjoint supports: sigma_kj = 0 where x_j != 0 and x_j = 0 where
     * sigma_kj != 0 */
    {
        const size_t B = 2, d = 6, K = 2, L = 2;
        layer_ctx c = layer_new(LAYER_GM, B, d, K, L, r);
        double *sigma = c.P + K * d;
        for (size_t k = 0; k < K; k++)
            for (size_t j = 0; j < d; j++)
                if (j % 2 == 0) sigma[k * d + j] = 0.0;
        for (size_t i = 0; i < B; i++)
            for (size_t j = 1; j < d; j += 2)
                c.X[i * d + j] = 0.0;
        /* d/dx_j at x_j = 0 with sigma_j != 0 is the non-differentiable cone of s: skip those */
        unsigned char skip[12] = {0};
        for (size_t i = 0; i < B; i++)
            for (size_t j = 1; j < d; j += 2)
                skip[i * d + j] = 1;
        layer_check(&c, "gm s=0 (disjoint supports)", 0.1, 0.1, skip);
        layer_free(&c);
    }
}

static void other_layer_cases(gsl_rng *r) {
    {
        layer_ctx c = layer_new(LAYER_FULL, 5, 3, 2, 2, r);
        layer_check(&c, "gm-full B=5 d=3 K=2 L=2", 0.1, 0.1, NULL);
        layer_free(&c);
    }
    {
        layer_ctx c = layer_new(LAYER_FULL, 3, 4, 3, 3, r);
        /* a rank-deficient C_0 (first column zero) */
        for (size_t a = 0; a < 4; a++)
            c.P[3 * 4 + a * 4 + 0] = 0.0;
        layer_check(&c, "gm-full B=3 d=4 K=3 L=3 (rank-deficient C_0)", 0.1, 0.1, NULL);
        layer_free(&c);
    }
    {
        layer_ctx c = layer_new(LAYER_FC, 6, 5, 7, 3, r);
        c.scale = 1.0 / 7.0;
        layer_check(&c, "fc B=6 d=5 m=7 L=3", 0.1, 0.1, NULL);
        layer_free(&c);
    }
    {
        layer_ctx c = layer_new(LAYER_NORM, 4, 6, 0, 0, r);
        layer_check(&c, "unitnorm B=4 n=6", 0.1, 0.1, NULL);
        /* tiny input rows: y = z / eps, dz = dy / eps (linear): still exact */
        layer_free(&c);
    }
}

/* ---- the loss ----------------------------------------------------------------------------- */

typedef struct loss_ctx {
    double *H;
    uint8_t *y;
    size_t B, L;
} loss_ctx;

static double loss_obj(void *vc) {
    loss_ctx *c = vc;
    return gmf_nn_refloss_d(NULL, NULL, c->H, c->y, 1.0, c->B, c->L);
}

/* The loss and its gradient against finite differences and a direct softmax, L logits (L above
 * 256: gmf_nn_refloss's path that does not keep exp(h_l - max) between the sum and the softmax). */
static void loss_case_L(gsl_rng *r, size_t L) {
    enum { B = 8 };
    double *H = malloc(B * L * sizeof(double)), *dH = malloc(B * L * sizeof(double)), lossv[B];
    uint8_t y[B];
    tu_randn(r, B * L, 2.0, H);
    for (size_t i = 0; i < B; i++)
        y[i] = (uint8_t)(i % (L + 1)); /* includes the reference 0 */
    loss_ctx c = {H, y, B, L};
    double total = gmf_nn_refloss_d(dH, lossv, H, y, 1.0, B, L);
    check_fd("refloss d/dH", H, B * L, dH, loss_obj, &c, 1.0, NULL);
    /* against a direct softmax over the L + 1 logits [0, h] */
    double sum = 0.0, maxerr = 0.0;
    for (size_t i = 0; i < B; i++) {
        double z[L + 1], Z = 0.0;
        z[0] = 0.0;
        for (size_t l = 0; l < L; l++)
            z[l + 1] = H[i * L + l];
        for (size_t l = 0; l <= L; l++)
            Z += exp(z[l]);
        const double li = -log(exp(z[y[i]]) / Z);
        sum += li;
        maxerr = fmax(maxerr, fabs(li - lossv[i]) / fabs(li));
        for (size_t l = 0; l < L; l++) {
            const double want = exp(z[l + 1]) / Z - (y[i] == l + 1);
            maxerr = fmax(maxerr, fabs(dH[i * L + l] - want));
        }
    }
    CHECK(maxerr <= 1e-13, "refloss vs direct softmax (L = %zu): max error %.3g", L, maxerr);
    CHECK_CLOSE(total, sum, 1e-13, 0.0, "refloss total vs direct softmax (L = %zu)", L);
    tu_worst_update(&worst, maxerr, "refloss vs direct softmax");
    printf("  %-38s L = %3zu max error %.2e\n", "refloss vs direct softmax over [0, h]", L, maxerr);
    free(H), free(dH);
}

static void loss_cases(gsl_rng *r) {
    loss_case_L(r, 9);
    loss_case_L(r, 300);

    /* huge logits: a naive softmax overflows, the log-sum-exp does not */
    double Hb[2 * 3] = {1000.0, -1000.0, 0.0, -1000.0, -1000.0, -1000.0}, dHb[6], lv[2];
    uint8_t yb[2] = {1, 0};
    double tb = gmf_nn_refloss_d(dHb, lv, Hb, yb, 1.0, 2, 3);
    CHECK(isfinite(tb) && lv[0] < 1e-300 + 1e-12 && lv[1] < 1e-12,
          "refloss at |h| = 1000: losses %g %g", lv[0], lv[1]);
    /* row 0: softmax over [0, 1000, -1000, 0] = (e^-1000, 1, 0, e^-1000) */
    CHECK(fabs(dHb[0]) < 1e-12 && fabs(dHb[1]) < 1e-300 && fabs(dHb[2]) < 1e-300,
          "refloss at |h| = 1000: gradient %g %g %g", dHb[0], dHb[1], dHb[2]);
    uint8_t wrongy[2] = {3, 0};
    double tw = gmf_nn_refloss_d(NULL, lv, Hb, wrongy, 1.0, 2, 3);
    CHECK_CLOSE(lv[0], 1000.0, 1e-15, 0.0, "refloss at |h| = 1000, wrong class");
    (void)tw;
    /* non-finite logits propagate to a non-finite loss */
    double Hn[3] = {NAN, 0.0, 1.0}, Hi[3] = {INFINITY, 0.0, 1.0};
    uint8_t y0[1] = {0};
    CHECK(!isfinite(gmf_nn_refloss_d(NULL, NULL, Hn, y0, 1.0, 1, 3)), "NaN logit -> NaN loss");
    CHECK(!isfinite(gmf_nn_refloss_d(NULL, NULL, Hi, y0, 1.0, 1, 3)), "inf logit -> inf loss");
    /* prediction: argmax of [0, h], ties to the lowest class, NaN wrong */
    double Hp[4 * 2] = {-1.0, -2.0, 0.5, 0.7, 3.0, 3.0, NAN, 1.0};
    uint8_t yp[4] = {0, 2, 1, 2}, pred[4];
    size_t wrong = gmf_nn_predict_d(pred, Hp, yp, 4, 2);
    CHECK(pred[0] == 0 && pred[1] == 2 && pred[2] == 1 && pred[3] == 255 && wrong == 1,
          "predict: got %u %u %u %u wrong=%zu", pred[0], pred[1], pred[2], pred[3], wrong);
}

/* ---- whole networks ----------------------------------------------------------------------- */

static void net_case(gmf_nn_kind kind, size_t d, size_t L, size_t K, size_t width, size_t Lmid,
                     int nthreads, gsl_rng *r) {
    gmf_nn_model m;
    if (gmf_nn_model_init(&m, kind, d, L, K, width, Lmid)) {
        fprintf(stderr, "model init: %s\n", gmf_errmsg());
        exit(2);
    }
    gmf_nn_rng rng;
    gmf_nn_rng_seed(&rng, gsl_rng_get(r), 0);
    if (kind == GMF_NN_FC)
        gmf_nn_init_fc_kaiming(&m, &rng);
    else
        gmf_nn_init_gm(&m, 0.5, &rng);
    char desc[96], what[128];
    gmf_nn_model_describe(&m, desc, sizeof desc);
    snprintf(what, sizeof what, "net %s", desc);
    tu_net c;
    tu_net_init(&c, &m, 6, nthreads, r, what);
    tu_net_check_groups(&c, desc, nthreads, hfix, TOL, &worst);
    tu_net_check_accumulate(&c, what); /* in double */
    gmf_nn_ws_d *ws = c.ws;
    const double *g = c.g;
    /* SGD: a zero learning rate freezes its group exactly; the others move by -lr g */
    double lr[GMF_NN_MAX_GROUPS];
    for (size_t gi = 0; gi < m.ngroups; gi++)
        lr[gi] = gi == 0 ? 0.0 : 0.01;
    double *before = tu_xmalloc(m.nparams * sizeof(double));
    memcpy(before, m.params, m.nparams * sizeof(double));
    gmf_nn_sgd_apply_d(ws, lr, 1); /* from gacc = 2 g */
    gmf_nn_ws_store_d(ws);
    double frozen = 0.0, moved = 0.0;
    for (size_t gi = 0; gi < m.ngroups; gi++)
        for (size_t e = m.group[gi].off; e < m.group[gi].off + m.group[gi].n; e++) {
            if (gi == 0)
                frozen = fmax(frozen, fabs(m.params[e] - before[e]));
            else
                moved = fmax(moved, fabs(m.params[e] - (before[e] - 0.02 * g[e])));
        }
    CHECK(frozen == 0.0 && moved <= 1e-15 * (1 + tu_max_abs(before, m.nparams)),
          "net %s: SGD frozen %g moved-error %g", desc, frozen, moved);
    double gz = tu_max_abs(ws->gacc, m.nparams);
    CHECK(gz == 0.0, "net %s: accumulator not zeroed after apply (%g)", desc, gz);
    free(before);
    tu_net_free(&c);
    gmf_nn_model_free(&m);
}

/* The pool (components split over threads) against the serial path, and the float
 * instantiation against the double one, on a GM model of MNIST-like shape. */
static void pool_and_precision(gsl_rng *r) {
    const size_t d = 40, L = 9, K = 5, B = 16;
    gmf_nn_model m;
    gmf_nn_model_init(&m, GMF_NN_GM, d, L, K, 0, 0);
    gmf_nn_rng rng;
    gmf_nn_rng_seed(&rng, 7, 0);
    gmf_nn_init_gm(&m, 0.5, &rng);
    double X[B * d];
    float Xf[B * d];
    uint8_t y[B];
    tu_randn(r, B * d, 1.0, X);
    for (size_t e = 0; e < B * d; e++)
        X[e] /= sqrt((double)d), Xf[e] = (float)X[e];
    for (size_t i = 0; i < B; i++)
        y[i] = (uint8_t)gsl_rng_uniform_int(r, L + 1);
    gmf_nn_ws_d *s1, *s3;
    gmf_nn_ws_f *f1;
    TU_OK(gmf_nn_ws_new_d(&s1, &m, B, 1));
    TU_OK(gmf_nn_ws_new_d(&s3, &m, B, 3));
    TU_OK(gmf_nn_ws_new_f(&f1, &m, B, 2));
    double l1 = gmf_nn_loss_grad_d(s1, X, y, B, 1.0 / B, 0);
    double l3 = gmf_nn_loss_grad_d(s3, X, y, B, 1.0 / B, 0);
    double lf = gmf_nn_loss_grad_f(f1, Xf, y, B, 1.0 / B, 0);
    CHECK_CLOSE(l3, l1, 1e-14, 0.0, "pool (3 threads) loss vs serial");
    double pe = tu_vec_relerr(gmf_nn_ws_grad_d(s3), gmf_nn_ws_grad_d(s1), m.nparams, 1e-12);
    CHECK(pe <= 1e-13, "pool (3 threads) gradient vs serial: %g", pe);
    double gf[m.nparams];
    const float *gf32 = gmf_nn_ws_grad_f(f1);
    for (size_t e = 0; e < m.nparams; e++)
        gf[e] = gf32[e];
    double fe = tu_vec_relerr(gf, gmf_nn_ws_grad_d(s1), m.nparams, 1e-12);
    CHECK_CLOSE(lf, l1, 1e-5, 0.0, "float loss vs double");
    CHECK(fe <= 1e-4, "float gradient vs double: normwise relative error %g", fe);
    printf("  %-48s loss rel %.2e, gradient rel %.2e\n", "float32 vs float64 (GM, d=40, K=5)",
           fabs(lf - l1) / fabs(l1), fe);
    /* the fused pool SGD step equals loss_grad + sgd_apply */
    double lr[4] = {0.1, 1.0, 0.1, 0.1};
    gmf_nn_model m2;
    gmf_nn_model_init(&m2, GMF_NN_GM, d, L, K, 0, 0);
    memcpy(m2.params, m.params, m.nparams * sizeof(double));
    gmf_nn_ws_d *s2;
    TU_OK(gmf_nn_ws_new_d(&s2, &m2, B, 2));
    gmf_nn_sgd_step_d(s2, X, y, B, lr);
    gmf_nn_sgd_apply_d(s1, lr, 0);
    gmf_nn_ws_store_d(s2);
    gmf_nn_ws_store_d(s1);
    double se = tu_vec_relerr(m2.params, m.params, m.nparams, 1e-12);
    CHECK(se <= 1e-14, "fused pool SGD step vs loss_grad + apply: %g", se);
    /* a second step: the fused step refreshed the parameter-derived cache correctly */
    gmf_nn_sgd_step_d(s2, X, y, B, lr);
    gmf_nn_loss_grad_d(s1, X, y, B, 1.0 / B, 0);
    gmf_nn_sgd_apply_d(s1, lr, 0);
    gmf_nn_ws_store_d(s2);
    gmf_nn_ws_store_d(s1);
    se = tu_vec_relerr(m2.params, m.params, m.nparams, 1e-12);
    CHECK(se <= 1e-13, "two fused steps vs two loss_grad + apply: %g", se);
    /* the gathering step (rows idx of a float data set, gathered by the pool's threads) equals
     * the plain step on the same rows gathered by hand, bitwise, for GM (pool) and FC */
    {
        const size_t n = 3 * B;
        float data[n * d];
        uint8_t lab[n], yb[B];
        size_t idx[B];
        float Xg[B * d];
        for (size_t e = 0; e < n * d; e++)
            data[e] = (float)(gsl_ran_gaussian(r, 1.0) / sqrt(d));
        for (size_t i = 0; i < n; i++)
            lab[i] = (uint8_t)gsl_rng_uniform_int(r, L + 1);
        for (size_t i = 0; i < B; i++) {
            idx[i] = (7 * i + 3) % n;
            memcpy(Xg + i * d, data + idx[i] * d, d * sizeof(float));
            yb[i] = lab[idx[i]];
        }
        for (int kind = 0; kind < 2; kind++) {
            gmf_nn_model ma, mb;
            gmf_nn_rng ra, rb;
            gmf_nn_rng_seed(&ra, 3, 0), gmf_nn_rng_seed(&rb, 3, 0);
            if (kind == 0) {
                gmf_nn_model_init(&ma, GMF_NN_GM, d, L, K, 0, 0);
                gmf_nn_model_init(&mb, GMF_NN_GM, d, L, K, 0, 0);
                gmf_nn_init_gm(&ma, 0.5, &ra), gmf_nn_init_gm(&mb, 0.5, &rb);
            } else {
                gmf_nn_model_init(&ma, GMF_NN_FC, d, L, 0, 12, 0);
                gmf_nn_model_init(&mb, GMF_NN_FC, d, L, 0, 12, 0);
                gmf_nn_init_fc_kaiming(&ma, &ra), gmf_nn_init_fc_kaiming(&mb, &rb);
            }
            gmf_nn_ws_f *wa, *wb;
            TU_OK(gmf_nn_ws_new_f(&wa, &ma, B, 2));
            TU_OK(gmf_nn_ws_new_f(&wb, &mb, B, 2));
            double lra[4] = {0.1, 1.0, 0.1, 0.1};
            double la = gmf_nn_sgd_step_rows_f(wa, data, lab, idx, B, lra);
            double lb = gmf_nn_sgd_step_f(wb, Xg, yb, B, lra);
            gmf_nn_ws_store_f(wa), gmf_nn_ws_store_f(wb);
            CHECK(la == lb && !memcmp(ma.params, mb.params, ma.nparams * sizeof(double)),
                  "%s: gathering step differs from the plain step (loss %.17g vs %.17g)",
                  kind ? "fc" : "gm", la, lb);
            gmf_nn_ws_free_f(wa), gmf_nn_ws_free_f(wb);
            gmf_nn_model_free(&ma), gmf_nn_model_free(&mb);
        }
    }
    gmf_nn_ws_free_d(s1), gmf_nn_ws_free_d(s2), gmf_nn_ws_free_d(s3), gmf_nn_ws_free_f(f1);
    gmf_nn_model_free(&m), gmf_nn_model_free(&m2);
}

int main(void) {
    gsl_rng *r = tu_rng(20240611);
    tu_worst_init(&worst);
    printf("GM layer (diagonal):\n");
    gm_cases(r);
    printf("other layers:\n");
    other_layer_cases(r);
    printf("loss:\n");
    loss_cases(r);
    printf("networks:\n");
    net_case(GMF_NN_GM, 5, 3, 3, 0, 0, 1, r);
    net_case(GMF_NN_GM, 5, 3, 3, 0, 0, 2, r);
    net_case(GMF_NN_GMFULL, 3, 2, 2, 0, 0, 1, r);
    net_case(GMF_NN_FC, 5, 3, 0, 8, 0, 1, r);
    net_case(GMF_NN_GMSTACK, 6, 3, 2, 0, 4, 1, r);
    pool_and_precision(r);
    gsl_rng_free(r);
    printf("worst finite-difference error: %.3g (%s)\n", worst.value, worst.what);
    return tu_finish("test_nn_grad");
}
