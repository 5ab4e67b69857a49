/* test_nn_lowrank.c -- the low-rank covariance GM layer (gm-lowrank, Sigma_k = diag(sigma_k^2) +
 * V_k V_k^T) against independent routes.
 *
 *  1. Its backward pass against central finite differences in double, every parameter block
 *     (mu, sigma, U, v, V) and dX, through f = sum_il R_il H_il (R random): random shapes
 *     including r = d; sigma = 0 with V != 0 (s^2 = |V^T x|^2 alone); a degenerate component
 *     (sigma_0 = 0, V_0 = 0: s = 0) and an input x = 0.  Figure of merit as in test_nn_grad.c:
 *     err = max_e |g_e - fd_e| / max_e |fd_e| <= 1e-6 (a correct gradient gives ~1e-9, a wrong
 *     term O(1)).
 *  2. Analytic cases against the diagonal layer (gmf_nn_gm_*, separate code): V = 0 gives the
 *     diagonal layer's output and gradients (to 1e-14) and a V gradient of exactly 0 (the
 *     stationary point); V with columns c e_j on coordinate axes is the diagonal layer with
 *     sigma_j'^2 = sigma_j^2 + c^2 (output to 1e-13, and dL/dc = dL/dsigma_j' c / sigma_j').
 *  3. Whole networks through gmf_nn_loss_grad_d: every group against finite differences at 1
 *     and 2 threads; the accumulator; the pool (3 threads) against 1; float32 against float64;
 *     the step (gmf_nn_sgd_step) against loss_grad + sgd_apply bitwise, two steps, each group
 *     frozen in turn (a frozen group bitwise unchanged); the gathering step against the plain
 *     one bitwise.
 *  4. The model: parameter count, groups, views, rank limits, init (the diagonal blocks are the
 *     diagonal model's draws bitwise; V's sample variance vs rho gamma^2 / r), checkpoints
 *     (round trip; another rank refused), snapshot shapes.
 */
#include <stdint.h>
#include <unistd.h>

#include "gmflow/common.h"
#include "gmflow/nn.h"
#include "gmflow/train.h"
#include "testutil.h"
#include "tu_net.h"

#define TOL 1e-6

static tu_worst worst;

/* ---- central differences (as test_nn_grad.c) ---------------------------------------------- */

typedef tu_objective objective;

static double check_fd(const char *what, double *v, size_t n, const double *g, objective f,
                       void *ctx, double scale, const unsigned char *skip) {
    return tu_check_fd(what, v, n, g, f, ctx, scale, 0.0, skip, TOL, &worst);
}

/* ---- the layer ------------------------------------------------------------------------------ */

typedef struct lr_ctx {
    size_t B, d, K, L, r, np;
    double *X, *P, *R, *H;
    gmf_nn_gmlr_cache_d c;
} lr_ctx;

static lr_ctx lr_new(size_t B, size_t d, size_t K, size_t L, size_t r, gsl_rng *g) {
    lr_ctx c = {.B = B, .d = d, .K = K, .L = L, .r = r, .np = gmf_nn_gmlr_nparams(d, K, L, r)};
    c.X = tu_xmalloc(B * d * sizeof(double));
    c.P = tu_xmalloc(c.np * sizeof(double));
    c.R = tu_xmalloc(B * L * sizeof(double));
    c.H = tu_xmalloc(B * L * sizeof(double));
    tu_randn(g, B * d, 1.0, c.X);
    tu_randn(g, c.np, 0.7, c.P);
    tu_randn(g, B * L, 1.0, c.R);
    if (gmf_nn_gmlr_cache_init_d(&c.c, B, d, K, L, r)) {
        fprintf(stderr, "cache init: %s\n", gmf_errmsg());
        exit(2);
    }
    return c;
}

static void lr_free(lr_ctx *c) {
    gmf_nn_gmlr_cache_free_d(&c->c);
    free(c->X), free(c->P), free(c->R), free(c->H);
}

static double lr_obj(void *vc) {
    lr_ctx *c = vc;
    gmf_nn_gmlr_forward_d(c->H, &c->c, c->X, c->P, c->B, c->d, c->K, c->L, c->r);
    double f = 0.0;
    for (size_t e = 0; e < c->B * c->L; e++)
        f += c->R[e] * c->H[e];
    return f;
}

static void lr_grad(lr_ctx *c, double *dP, double *dX) {
    lr_obj(c);
    gmf_nn_gmlr_backward_d(dP, dX, &c->c, c->R, c->X, c->P, c->B, c->d, c->K, c->L, c->r);
}

static void lr_check(lr_ctx *c, const char *tag, const unsigned char *xskip) {
    const size_t d = c->d, K = c->K, L = c->L, r = c->r;
    double *dP = tu_xmalloc(c->np * sizeof(double)), *dX = tu_xmalloc(c->B * d * sizeof(double));
    lr_grad(c, dP, dX);
    const char *name[5] = {"mu", "sigma", "U", "v", "V"};
    const size_t n[5] = {K * d, K * d, K * L * d, K * L, K * r * d};
    char what[160];
    for (size_t b = 0, off = 0; b < 5; off += n[b], b++) {
        snprintf(what, sizeof what, "%s d/d%s", tag, name[b]);
        check_fd(what, c->P + off, n[b], dP + off, lr_obj, c, 0.1, NULL);
    }
    CHECK(5 > 0 && c->np == n[0] + n[1] + n[2] + n[3] + n[4], "%s: blocks do not tile P", tag);
    snprintf(what, sizeof what, "%s d/dX", tag);
    check_fd(what, c->X, c->B * d, dX, lr_obj, c, 0.1, xskip);
    free(dP), free(dX);
}

static void layer_fd(gsl_rng *g) {
    const size_t shapes[][5] = {{5, 4, 3, 2, 1}, {7, 6, 2, 3, 2}, {2, 3, 2, 2, 3}, {4, 9, 4, 5, 3}};
    for (size_t t = 0; t < 4; t++) {
        const size_t *s = shapes[t];
        lr_ctx c = lr_new(s[0], s[1], s[2], s[3], s[4], g);
        char tag[80];
        snprintf(tag, sizeof tag, "B=%zu d=%zu K=%zu L=%zu r=%zu", s[0], s[1], s[2], s[3], s[4]);
        lr_check(&c, tag, NULL);
        lr_free(&c);
    }
    { /* sigma = 0 everywhere: the covariance is V V^T alone (rank 2 < d = 5) */
        lr_ctx c = lr_new(4, 5, 2, 3, 2, g);
        memset(c.P + c.K * c.d, 0, c.K * c.d * sizeof(double));
        lr_check(&c, "sigma=0 (Sigma = V V^T)", NULL);
        lr_free(&c);
    }
    { /* component 0 degenerate (sigma_0 = 0, V_0 = 0: s = 0, flat in them away from m = 0) and
       * input 1 zero (h = 0; not differentiable in x there: skipped) */
        const size_t B = 3, d = 4, K = 2, L = 3, r = 2;
        lr_ctx c = lr_new(B, d, K, L, r, g);
        double *sigma = c.P + K * d, *V = c.P + K * (2 * d + L * d + L);
        memset(sigma, 0, d * sizeof(double));
        memset(V, 0, r * d * sizeof(double));
        memset(c.X + d, 0, d * sizeof(double));
        unsigned char skip[3 * 4] = {0};
        memset(skip + d, 1, d);
        lr_check(&c, "s=0 (sigma_0=0, V_0=0, x_1=0)", skip);
        double dP[c.np], dX[B * d];
        lr_grad(&c, dP, dX);
        double flat = 0.0;
        for (size_t j = 0; j < d; j++)
            flat = fmax(flat, fabs(dP[K * d + j]));
        for (size_t e = 0; e < r * d; e++)
            flat = fmax(flat, fabs(dP[K * (2 * d + L * d + L) + e]));
        CHECK(flat == 0.0, "s=0: d/dsigma_0 and d/dV_0 must be exactly 0 (got %g)", flat);
        for (size_t l = 0; l < L; l++)
            CHECK(c.H[L + l] == 0.0, "x=0: h must be 0 (got %g)", c.H[L + l]);
        lr_free(&c);
    }
}

/* ---- analytic cases against the diagonal layer ---------------------------------------------- */

static double diag_forward(double *H, const double *X, const double *P, size_t B, size_t d,
                           size_t K, size_t L, double *dP, const double *R) {
    gmf_nn_gm_cache_d c;
    if (gmf_nn_gm_cache_init_d(&c, B, d, K, L)) exit(2);
    gmf_nn_gm_forward_d(H, &c, X, P, B, d, K, L);
    if (dP) gmf_nn_gm_backward_d(dP, NULL, &c, R, X, P, B, d, K, L);
    gmf_nn_gm_cache_free_d(&c);
    return 0.0;
}

static void analytic(gsl_rng *g) {
    const size_t B = 6, d = 7, K = 3, L = 4, r = 3, nd = gmf_nn_gm_nparams(d, K, L);
    lr_ctx c = lr_new(B, d, K, L, r, g);
    double *V = c.P + nd, Hd[B * L], dPd[nd], dP[c.np];
    /* V = 0: the diagonal layer, and a zero V gradient */
    memset(V, 0, K * r * d * sizeof(double));
    lr_grad(&c, dP, NULL);
    diag_forward(Hd, c.X, c.P, B, d, K, L, dPd, c.R);
    const double eh = tu_vec_relerr(c.H, Hd, B * L, 1e-300),
                 eg = tu_vec_relerr(dP, dPd, nd, 1e-300);
    const double gv = tu_max_abs(dP + nd, K * r * d);
    CHECK(eh <= 1e-14 && eg <= 1e-14, "V = 0 vs diagonal layer: output %.3g, gradient %.3g", eh,
          eg);
    CHECK(gv == 0.0, "V = 0: the V gradient must be exactly 0 (stationary point), got %g", gv);
    printf("  %-52s output %.2e, gradient %.2e, |dV| = %g\n", "V = 0 vs the diagonal layer", eh, eg,
           gv);
    tu_worst_update(&worst, eh > eg ? eh : eg, "V = 0 vs diagonal");
    /* V columns on coordinate axes: column q of V_k = c_kq e_{j(k, q)}, j distinct in q */
    double Pd[nd], cval[K * r];
    size_t jax[K * r];
    memcpy(Pd, c.P, nd * sizeof(double));
    for (size_t k = 0; k < K; k++)
        for (size_t q = 0; q < r; q++) {
            const size_t j = (2 * q + k) % d, e = k * r + q;
            cval[e] = 0.3 + 0.5 * gsl_rng_uniform(g);
            jax[e] = j;
            V[(k * r + q) * d + j] = cval[e];
            double *sj = Pd + K * d + k * d + j; /* sigma_j'^2 = sigma_j^2 + c^2 */
            *sj = sqrt(*sj * *sj + cval[e] * cval[e]);
        }
    lr_grad(&c, dP, NULL);
    diag_forward(Hd, c.X, Pd, B, d, K, L, dPd, c.R);
    const double ea = tu_vec_relerr(c.H, Hd, B * L, 1e-300);
    double ec = 0.0, gmax = 0.0; /* dL/dc = dL/dsigma' * c / sigma' */
    for (size_t k = 0; k < K; k++)
        for (size_t q = 0; q < r; q++) {
            const size_t e = k * r + q, j = jax[e];
            const double want = dPd[K * d + k * d + j] * cval[e] / Pd[K * d + k * d + j];
            const double got = dP[nd + (k * r + q) * d + j];
            ec = fmax(ec, fabs(got - want)), gmax = fmax(gmax, fabs(want));
        }
    ec /= gmax;
    CHECK(ea <= 1e-13 && ec <= 1e-12,
          "axis-aligned V vs diagonal with sigma'^2 = sigma^2 + c^2: "
          "output %.3g, dL/dc %.3g",
          ea, ec);
    printf("  %-52s output %.2e, dL/dc %.2e\n", "axis-aligned V vs diagonal, larger sigma", ea, ec);
    tu_worst_update(&worst, ea > ec ? ea : ec, "axis-aligned V vs diagonal");
    lr_free(&c);
}

/* ---- whole networks ----------------------------------------------------------------------- */

static void model_new(gmf_nn_model *m, size_t d, size_t L, size_t K, size_t r, double rho,
                      uint64_t seed) {
    if (gmf_nn_model_init(m, GMF_NN_GMLR, d, L, K, r, 0)) {
        fprintf(stderr, "model init: %s\n", gmf_errmsg());
        exit(2);
    }
    gmf_nn_rng rng;
    gmf_nn_rng_seed(&rng, seed, 0);
    if (gmf_nn_init_gm_lowrank(m, 0.5, rho, &rng)) exit(2);
}

static void net_fd(int nthreads, gsl_rng *g) {
    gmf_nn_model m;
    model_new(&m, 5, 3, 3, 2, 1.0, gsl_rng_get(g)); /* d 5, L 3, K 3, rank 2 */
    char desc[96], what[128];
    gmf_nn_model_describe(&m, desc, sizeof desc);
    snprintf(what, sizeof what, "net %s", desc);
    tu_net c;
    tu_net_init(&c, &m, 6, nthreads, g, what);
    tu_net_check_groups(&c, desc, nthreads, 0.0, TOL, &worst);
    tu_net_check_accumulate(&c, what);
    tu_net_free(&c);
    gmf_nn_model_free(&m);
}

/* Model a and b equal (bitwise) after `steps` steps: b by gmf_nn_sgd_step, a by loss_grad +
 * sgd_apply; in float (prec 32) or double. */
static int steps_equal(int prec, const gmf_nn_model *m0, const double *X, const float *Xf,
                       const uint8_t *y, size_t B, const double *lr, int nthreads) {
    gmf_nn_model a, b;
    gmf_nn_model_init(&a, GMF_NN_GMLR, m0->d, m0->L, m0->K, m0->rank, 0);
    gmf_nn_model_init(&b, GMF_NN_GMLR, m0->d, m0->L, m0->K, m0->rank, 0);
    memcpy(a.params, m0->params, m0->nparams * sizeof(double));
    memcpy(b.params, m0->params, m0->nparams * sizeof(double));
    if (prec == 64) {
        gmf_nn_ws_d *wa, *wb;
        TU_OK(gmf_nn_ws_new_d(&wa, &a, B, nthreads));
        TU_OK(gmf_nn_ws_new_d(&wb, &b, B, nthreads));
        for (int s = 0; s < 2; s++) {
            gmf_nn_loss_grad_d(wa, X, y, B, 1.0 / (double)B, 0);
            gmf_nn_sgd_apply_d(wa, lr, 0);
            gmf_nn_sgd_step_d(wb, X, y, B, lr);
        }
        gmf_nn_ws_store_d(wa), gmf_nn_ws_store_d(wb);
        gmf_nn_ws_free_d(wa), gmf_nn_ws_free_d(wb);
    } else {
        gmf_nn_ws_f *wa, *wb;
        TU_OK(gmf_nn_ws_new_f(&wa, &a, B, nthreads));
        TU_OK(gmf_nn_ws_new_f(&wb, &b, B, nthreads));
        for (int s = 0; s < 2; s++) {
            gmf_nn_loss_grad_f(wa, Xf, y, B, 1.0 / (double)B, 0);
            gmf_nn_sgd_apply_f(wa, lr, 0);
            gmf_nn_sgd_step_f(wb, Xf, y, B, lr);
        }
        gmf_nn_ws_store_f(wa), gmf_nn_ws_store_f(wb);
        gmf_nn_ws_free_f(wa), gmf_nn_ws_free_f(wb);
    }
    int same = !memcmp(a.params, b.params, a.nparams * sizeof(double));
    /* frozen groups: bitwise unchanged (in float32: the float copy of the start) */
    for (size_t g = 0; g < a.ngroups; g++)
        for (size_t e = b.group[g].off; lr[g] == 0.0 && e < b.group[g].off + b.group[g].n; e++)
            same &= b.params[e] == (prec == 64 ? m0->params[e] : (double)(float)m0->params[e]);
    gmf_nn_model_free(&a), gmf_nn_model_free(&b);
    return same;
}

static void net_paths(gsl_rng *g) {
    const size_t d = 40, L = 9, K = 5, r = 3, B = 16;
    gmf_nn_model m;
    model_new(&m, d, L, K, r, 1.0, 7);
    double X[B * d];
    float Xf[B * d];
    uint8_t y[B];
    tu_randn(g, B * d, 1.0, X);
    for (size_t e = 0; e < B * d; e++)
        X[e] /= sqrt((double)d), Xf[e] = (float)X[e];
    for (size_t i = 0; i < B; i++)
        y[i] = (uint8_t)gsl_rng_uniform_int(g, L + 1);
    gmf_nn_ws_d *s1, *s3;
    gmf_nn_ws_f *f2;
    TU_OK(gmf_nn_ws_new_d(&s1, &m, B, 1));
    TU_OK(gmf_nn_ws_new_d(&s3, &m, B, 3));
    TU_OK(gmf_nn_ws_new_f(&f2, &m, B, 2));
    const double l1 = gmf_nn_loss_grad_d(s1, X, y, B, 1.0 / B, 0);
    const double l3 = gmf_nn_loss_grad_d(s3, X, y, B, 1.0 / B, 0);
    const double lf = gmf_nn_loss_grad_f(f2, Xf, y, B, 1.0 / B, 0);
    const double pe = tu_vec_relerr(gmf_nn_ws_grad_d(s3), gmf_nn_ws_grad_d(s1), m.nparams, 1e-12);
    CHECK(fabs(l3 - l1) <= 1e-14 * fabs(l1) && pe <= 1e-13,
          "pool (3 threads) vs 1: loss %.17g vs %.17g, gradient %g", l3, l1, pe);
    double *gf = tu_xmalloc(m.nparams * sizeof(double));
    const float *gf32 = gmf_nn_ws_grad_f(f2);
    for (size_t e = 0; e < m.nparams; e++)
        gf[e] = gf32[e];
    const double fe = tu_vec_relerr(gf, gmf_nn_ws_grad_d(s1), m.nparams, 1e-12);
    /* forward agreement on the logits */
    double *h1 = gmf_nn_ws_logits_d(s1);
    float *hf32 = gmf_nn_ws_logits_f(f2);
    gmf_nn_forward_d(h1, s1, X, B);
    gmf_nn_forward_f(hf32, f2, Xf, B);
    double hf[B * L];
    for (size_t e = 0; e < B * L; e++)
        hf[e] = hf32[e];
    const double he = tu_vec_relerr(hf, h1, B * L, 1e-12);
    CHECK(he <= 1e-5 && fabs(lf - l1) <= 1e-5 * fabs(l1) && fe <= 1e-4,
          "float vs double: logits %.3g, loss %.3g, gradient %.3g", he, fabs(lf - l1) / l1, fe);
    printf("  %-52s logits %.2e, loss %.2e, gradient %.2e\n", "float32 vs float64 (d=40 K=5 r=3)",
           he, fabs(lf - l1) / fabs(l1), fe);
    printf("  %-52s gradient %.2e\n", "pool 3 threads vs 1", pe);
    free(gf);
    gmf_nn_ws_free_d(s1), gmf_nn_ws_free_d(s3), gmf_nn_ws_free_f(f2);
    /* the step = loss_grad + apply, bitwise, each group frozen in turn, 1 and 2 threads */
    double lr[GMF_NN_MAX_GROUPS];
    for (int prec = 32; prec <= 64; prec += 32)
        for (int frozen = -1; frozen < (int)m.ngroups; frozen++) {
            for (size_t gi = 0; gi < m.ngroups; gi++)
                lr[gi] = (int)gi == frozen ? 0.0 : (gi == 1 || gi == 4 ? 0.5 : 0.1);
            const int ok = steps_equal(prec, &m, X, Xf, y, B, lr, 1 + (frozen & 1));
            CHECK(ok, "float%d: sgd_step differs from loss_grad + sgd_apply (frozen group %d)",
                  prec, frozen);
        }
    /* the gathering step equals the plain step on the same rows, bitwise */
    {
        const size_t n = 3 * B;
        float data[n * d], Xg[B * d];
        uint8_t lab[n], yb[B];
        size_t idx[B];
        for (size_t e = 0; e < n * d; e++)
            data[e] = (float)(gsl_ran_gaussian(g, 1.0) / sqrt(d));
        for (size_t i = 0; i < n; i++)
            lab[i] = (uint8_t)gsl_rng_uniform_int(g, L + 1);
        for (size_t i = 0; i < B; i++) {
            idx[i] = (7 * i + 3) % n;
            memcpy(Xg + i * d, data + idx[i] * d, d * sizeof(float));
            yb[i] = lab[idx[i]];
        }
        gmf_nn_model ma, mb;
        model_new(&ma, d, L, K, r, 1.0, 3), model_new(&mb, d, L, K, r, 1.0, 3);
        gmf_nn_ws_f *wa, *wb;
        TU_OK(gmf_nn_ws_new_f(&wa, &ma, B, 2));
        TU_OK(gmf_nn_ws_new_f(&wb, &mb, B, 2));
        const double lra[5] = {0.1, 1.0, 0.1, 0.1, 0.05};
        const double la = gmf_nn_sgd_step_rows_f(wa, data, lab, idx, B, lra);
        const double lb = gmf_nn_sgd_step_f(wb, Xg, yb, B, lra);
        gmf_nn_ws_store_f(wa), gmf_nn_ws_store_f(wb);
        CHECK(la == lb && !memcmp(ma.params, mb.params, ma.nparams * sizeof(double)),
              "gathering step differs from the plain step (loss %.17g vs %.17g)", la, lb);
        gmf_nn_ws_free_f(wa), gmf_nn_ws_free_f(wb);
        gmf_nn_model_free(&ma), gmf_nn_model_free(&mb);
    }
    gmf_nn_model_free(&m);
}

/* ---- the model: shapes, groups, init, checkpoints ------------------------------------------ */

static void model_api(void) {
    const size_t d = 30, L = 4, K = 6, r = 3;
    gmf_nn_model m, m2;
    gmf_nn_kind kind;
    CHECK(gmf_nn_kind_parse("gm-lowrank", &kind) == 0 && kind == GMF_NN_GMLR &&
              !strcmp(gmf_nn_kind_name(GMF_NN_GMLR), "gm-lowrank"),
          "kind name gm-lowrank does not round-trip");
    CHECK(gmf_nn_model_init(&m, GMF_NN_GMLR, d, L, K, 0, 0) == GMF_EINVAL, "rank 0 accepted");
    CHECK(gmf_nn_model_init(&m, GMF_NN_GMLR, d, L, K, d + 1, 0) == GMF_EINVAL, "rank > d accepted");
    model_new(&m, d, L, K, r, 0.4, 11);
    CHECK(m.rank == r && m.width == 0 && m.nparams == K * (2 * d + L * d + L + r * d) &&
              m.nparams == gmf_nn_gmlr_nparams(d, K, L, r) && m.ngroups == 5,
          "model shape: rank %zu nparams %zu groups %zu", m.rank, m.nparams, m.ngroups);
    const gmf_nn_net_params_d v = gmf_nn_net_view_d(&m, m.params);
    const int gV = gmf_nn_model_group(&m, "lowrank");
    CHECK(gV == GMF_NN_GROUP_LOWRANK && m.group[gV].off == K * (2 * d + L * d + L) &&
              v.V == m.params + m.group[gV].off && m.group[gV].n == K * r * d &&
              !m.group[gV].sigma && m.group[gV].beta && v.gm[0].v == m.params + K * (2 * d + L * d),
          "groups / views of gm-lowrank");
    /* learning rates: V at --lr by default, at lr_lowrank when set, 0 with --fixed-beta */
    gmf_train_opts o = gmf_train_defaults();
    double lr[GMF_NN_MAX_GROUPS];
    gmf_train_group_lr(&m, &o, lr);
    CHECK(lr[GMF_NN_GROUP_LOWRANK] == o.lr && lr[GMF_NN_GROUP_SIGMA] == o.lr_sigma,
          "default V rate %g (want lr %g)", lr[GMF_NN_GROUP_LOWRANK], o.lr);
    o.lr_lowrank = 0.25;
    gmf_train_group_lr(&m, &o, lr);
    CHECK(lr[GMF_NN_GROUP_LOWRANK] == 0.25 && lr[GMF_NN_GROUP_U] == o.lr, "lr_lowrank not used");
    o.fixed_beta = 1;
    gmf_train_group_lr(&m, &o, lr);
    CHECK(lr[GMF_NN_GROUP_LOWRANK] == 0.0 && lr[GMF_NN_GROUP_MU] == 0.0 && lr[GMF_NN_GROUP_U] > 0,
          "--fixed-beta does not freeze V");
    size_t shape[3];
    CHECK(gmf_train_group_shape(&m, GMF_NN_GROUP_LOWRANK, shape) == 3 && shape[0] == K &&
              shape[1] == r && shape[2] == d,
          "snapshot shape of V");
    /* init: the diagonal blocks are the diagonal model's draws, V ~ N(0, rho gamma^2 / r) */
    gmf_nn_model_init(&m2, GMF_NN_GM, d, L, K, 0, 0);
    gmf_nn_rng rng;
    gmf_nn_rng_seed(&rng, 11, 0);
    gmf_nn_init_gm(&m2, 0.5, &rng);
    CHECK(!memcmp(m2.params, m.params, m2.nparams * sizeof(double)),
          "gm-lowrank init: diagonal blocks differ from the diagonal model's");
    double s2 = 0.0, mean = 0.0;
    const size_t nV = K * r * d;
    for (size_t e = 0; e < nV; e++)
        mean += v.V[e], s2 += v.V[e] * v.V[e];
    mean /= (double)nV, s2 /= (double)nV;
    const double want = 0.4 * 0.25 / (double)r; /* rho gamma^2 / r */
    /* sample variance of n = 540 normals: relative SE sqrt(2/n) = 0.061; 4 SE */
    CHECK(fabs(s2 / want - 1) <= 4 * sqrt(2.0 / (double)nV) && fabs(mean) <= 4 * sqrt(want / nV),
          "V init: variance %.4g (want %.4g), mean %.3g", s2, want, mean);
    printf("  %-52s var %.4g (want %.4g), mean %.2g\n", "V init N(0, rho gamma^2 / r)", s2, want,
           mean);
    gmf_nn_model_free(&m2);
    /* checkpoints: round trip, the header's model, another rank refused */
    char path[] = "/tmp/gmflow_lowrank_ckXXXXXX";
    const int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd >= 0) close(fd);
    CHECK(gmf_train_save_checkpoint(path, &m, 3, 5) == 0, "save: %s", gmf_errmsg());
    gmf_nn_model hm;
    CHECK(gmf_train_checkpoint_model(path, &hm) == 0 && hm.kind == GMF_NN_GMLR && hm.rank == r &&
              hm.nparams == m.nparams,
          "checkpoint header model");
    gmf_nn_model_free(&hm);
    model_new(&m2, d, L, K, r, 0.4, 12);
    uint64_t ep = 0, sd = 0;
    CHECK(gmf_train_load_checkpoint(path, &m2, &ep, &sd) == 0 && ep == 3 && sd == 5 &&
              !memcmp(m2.params, m.params, m.nparams * sizeof(double)),
          "checkpoint round trip");
    gmf_nn_model_free(&m2);
    model_new(&m2, d, L, K, r - 1, 0.4, 12);
    CHECK(gmf_train_load_checkpoint(path, &m2, NULL, NULL) == GMF_EFORMAT &&
              strstr(gmf_errmsg(), "r=3") && strstr(gmf_errmsg(), "r=2"),
          "checkpoint of rank 3 loaded as rank 2 (%s)", gmf_errmsg());
    gmf_nn_model_free(&m2);
    remove(path);
    gmf_nn_model_free(&m);
}

int main(void) {
    gsl_rng *g = tu_rng(20261130);
    tu_worst_init(&worst);
    printf("low-rank GM layer, finite differences (seed %lu):\n", tu_seed());
    layer_fd(g);
    printf("analytic cases:\n");
    analytic(g);
    printf("networks:\n");
    net_fd(1, g);
    net_fd(2, g);
    net_paths(g);
    printf("model:\n");
    model_api();
    gsl_rng_free(g);
    printf("worst error: %.3g (%s)\n", worst.value, worst.what);
    return tu_finish("test_nn_lowrank");
}
