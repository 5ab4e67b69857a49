/* test_nn_pool_split.c -- the GM kind's thread pool (nn_tmpl.h gm_job_run: the forward split over
 * rows or components, GM_FWD_ROWS; the backward and the updates over components) against the
 * serial layer API, for 1, 2, 3 and 8 threads (8 > the batch and > K: threads with no rows and no
 * components), fixed and learned mixture weights, float64 and float32:
 *   - the forward logits H (gmf_nn_forward) against gmf_nn_gm_forward_w:
 *       float64 max |dH| <= 1e-13 max |H|, float32 <= 1e-5 max |H| (against the float64 reference);
 *   - loss and gradient (gmf_nn_loss_grad) against gmf_nn_gm_forward_w + gmf_nn_refloss +
 *     gmf_nn_gm_backward_w: float64 loss rel 1e-13, gradient normwise rel 1e-12;
 *     float32 loss rel 1e-5, gradient rel 1e-4;
 *   - the fused SGD step (gmf_nn_sgd_step) equals gmf_nn_loss_grad + gmf_nn_sgd_apply bitwise,
 * twice in a row, and (float32 with the AVX-512 kernels) the 1-thread fused steps bitwise (the
 * second step reads the parameter-derived cache the first one refreshed), and the gathering step
 * (gmf_nn_sgd_step_rows) equals the plain one on rows gathered by hand, bitwise;
 *   - several steps in one call (ops.sgd_steps_ds: one pool job for all of them on more than one
 * thread, nn_tmpl.h gm_steps_run) equal as many single steps (sgd_step_ds) bitwise, parameters
 * and losses, on float and byte (compact) data sets, and stop after a non-finite loss with
 * that step not applied; also with the threads' components uneven on a byte data set of d = 784
 * (uneven_steps_case: one thread runs ahead into the next step's gather, by chance and then
 * every step, each thread in turn held back 200 us by nn_internal.h's test hook; every thread
 * converting into one X fails all 30 held-back cases, every run; K = 20 on 2 threads covers the
 * one-barrier step, nn_tmpl.h gm_step1b, whose partial sums single-buffered fail here; and with
 * U's learning rate 0, its fallback backward instead of the fused kernel). The
 * tolerances are rounding-level: the pool sums in another order than the layer API only where a
 * GEMM is split differently. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/discrete/nn_internal.h" /* GMF_NN_KERN */
#include "gmflow/gmflow.h"
#include "testutil.h"

/* float32 with the AVX-512 kernels: every thread count gives bitwise the 1-thread parameters
 * (the forward from each thread's own X^T, nn_tmpl.h GM_FWD_MT 2; not with GM_FWD_MT=1, nt on
 * X, another sum order; OpenBLAS builds split its GEMMs by thread) */
#if defined(GMF_NN_KERN) && (!defined(GM_FWD_MT) || GM_FWD_MT != 1)
#define THREADS_BITWISE 1
#else
#define THREADS_BITWISE 0
#endif

static void make_model(gmf_nn_model *m, size_t d, size_t L, size_t K, int learned, gsl_rng *r) {
    if (gmf_nn_model_init(m, GMF_NN_GM, d, L, K, 0, 0) ||
        (learned && gmf_nn_model_set_weights(m, GMF_NN_WEIGHTS_LEARNED))) {
        fprintf(stderr, "model: %s\n", gmf_errmsg());
        exit(2);
    }
    gmf_nn_rng rng;
    gmf_nn_rng_seed(&rng, gsl_rng_get(r), 0);
    gmf_nn_init_gm(m, 0.5, &rng);
    const int g = gmf_nn_model_logits_group(m, 1);
    if (g >= 0) tu_randn(r, K, 1.0, m->params + m->group[g].off);
}

/* The serial reference in float64: H, the summed loss and its gradient (scaled by 1/B) in the
 * layout of P (the layer's blocks, then the logits when learned). */
static double reference(const gmf_nn_model *m, const double *X, const uint8_t *y, size_t B,
                        double *H, double *grad) {
    const size_t d = m->d, K = m->K, L = m->L;
    const int g = gmf_nn_model_logits_group(m, 1);
    const double *logit = g >= 0 ? m->params + m->group[g].off : NULL;
    gmf_nn_gm_cache_d c;
    if (gmf_nn_gm_cache_init_d(&c, B, d, K, L)) exit(2);
    double *dH = tu_xmalloc(B * L * sizeof(double)), *lossv = tu_xmalloc(B * sizeof(double));
    memset(grad, 0, m->nparams * sizeof(double));
    gmf_nn_gm_forward_w_d(H, &c, X, m->params, logit, B, d, K, L);
    const double loss = gmf_nn_refloss_d(dH, lossv, H, y, 1.0 / (double)B, B, L);
    gmf_nn_gm_backward_w_d(grad, g >= 0 ? grad + m->group[g].off : NULL, NULL, &c, dH, X, m->params,
                           B, d, K, L);
    free(dH), free(lossv);
    gmf_nn_gm_cache_free_d(&c);
    return loss;
}

static double max_abs(const double *a, size_t n) {
    double v = 0.0;
    for (size_t e = 0; e < n; e++)
        v = fmax(v, fabs(a[e]));
    return v;
}

static tu_worst worst64, worst32;

/* ops->sgd_steps_ds (NS steps in one call) against NS calls of ops->sgd_step_ds on the model m,
 * rows idx[s B ..) of ds for step s: bitwise the same parameters and losses.  With nan_step >= 0
 * that step's batch holds a NaN: the call must stop there (returning nan_step + 1) with the
 * parameters of the steps before it. */
static void steps_case(const gmf_nn_model *m, const gmf_dataset *ds, const size_t *idx, size_t B,
                       int T, int prec, int nan_step, int u_frozen, const char *what) {
    enum { NS = 5 };
    const gmf_nn_ops *ops = prec ? &gmf_nn_ops_f : &gmf_nn_ops_d;
    double lr[8] = {0.1, 1.0, 0.1, 0.1, 0.3, 0.3, 0.3, 0.3};
    /* u_frozen: U's rate 0, where the fused backward kernel declines (nn_tmpl.h gm_bwd_fused)
     * and the steps take the fallback products + per-component updates */
    if (u_frozen) lr[GMF_NN_GROUP_U] = 0.0;
    const size_t n = m->nparams;
    gmf_nn_model ma, mb;
    gmf_nn_model_init(&ma, GMF_NN_GM, m->d, m->L, m->K, 0, 0);
    gmf_nn_model_init(&mb, GMF_NN_GM, m->d, m->L, m->K, 0, 0);
    if (m->weights == GMF_NN_WEIGHTS_LEARNED) {
        gmf_nn_model_set_weights(&ma, GMF_NN_WEIGHTS_LEARNED);
        gmf_nn_model_set_weights(&mb, GMF_NN_WEIGHTS_LEARNED);
    }
    memcpy(ma.params, m->params, n * sizeof(double));
    memcpy(mb.params, m->params, n * sizeof(double));
    void *a, *b;
    if (ops->ws_new(&a, &ma, B, T) || ops->ws_new(&b, &mb, B, T)) exit(2);
    double la[NS], lb[NS];
    const size_t ka = ops->sgd_steps_ds(a, ds, idx, B, NS, lr, la);
    size_t kb = 0;
    while (kb < NS) {
        lb[kb] = ops->sgd_step_ds(b, ds, idx + kb * B, B, lr);
        if (!isfinite(lb[kb++])) break;
    }
    ops->ws_store(a), ops->ws_store(b);
    const size_t want = nan_step >= 0 ? (size_t)nan_step + 1 : NS;
    CHECK(ka == want && kb == want,
          "%s float%d: %d steps in one call ran %zu, single %zu (want %zu)", what, prec ? 32 : 64,
          NS, ka, kb, want);
    CHECK(!memcmp(la, lb, (ka < kb ? ka : kb) * sizeof(double)),
          "%s float%d: the losses of steps in one call differ from single steps (bitwise)", what,
          prec ? 32 : 64);
    CHECK(!memcmp(ma.params, mb.params, n * sizeof(double)),
          "%s float%d: steps in one call differ from single steps (bitwise)", what, prec ? 32 : 64);
    CHECK(nan_step == 0 || memcmp(ma.params, m->params, n * sizeof(double)) != 0,
          "%s float%d: the steps in one call moved nothing", what, prec ? 32 : 64);
    ops->ws_free(a), ops->ws_free(b);
    gmf_nn_model_free(&ma), gmf_nn_model_free(&mb);
}

/* One (B, K, learned) case at T threads, both precisions. */
static void split_case(size_t B, size_t K, int learned, int T, gsl_rng *r) {
    const size_t d = 37, L = 4; /* d odd: no GEMM dimension a multiple of a vector width */
    gmf_nn_model m;
    make_model(&m, d, L, K, learned, r);
    const size_t n = m.nparams;
    double *X = tu_xmalloc(B * d * sizeof(double)), *H = tu_xmalloc(B * L * sizeof(double));
    double *Hr = tu_xmalloc(B * L * sizeof(double)), *gr = tu_xmalloc(n * sizeof(double));
    double *g = tu_xmalloc(n * sizeof(double));
    float *Xf = tu_xmalloc(B * d * sizeof(float)), *Hf = tu_xmalloc(B * L * sizeof(float));
    uint8_t *y = tu_xmalloc(B);
    tu_randn(r, B * d, 1.0 / sqrt((double)d), X);
    for (size_t e = 0; e < B * d; e++)
        Xf[e] = (float)X[e];
    for (size_t i = 0; i < B; i++)
        y[i] = (uint8_t)gsl_rng_uniform_int(r, L + 1);
    const double lref = reference(&m, X, y, B, Hr, gr);
    const double hs = max_abs(Hr, B * L);
    char what[96];
    snprintf(what, sizeof what, "B=%zu K=%zu %s T=%d", B, K, learned ? "learned" : "fixed", T);

    /* float64 */
    gmf_nn_ws_d *wd;
    TU_OK(gmf_nn_ws_new_d(&wd, &m, B, T));
    gmf_nn_forward_d(H, wd, X, B);
    double he = tu_max_abs_diff(H, Hr, B * L);
    CHECK(he <= 1e-13 * hs, "%s float64 forward vs layer API: %g (scale %g)", what, he, hs);
    double l = gmf_nn_loss_grad_d(wd, X, y, B, 1.0 / (double)B, 0);
    CHECK_CLOSE(l, lref, 1e-13, 0.0, "%s float64 loss vs layer API", what);
    double ge = tu_vec_relerr(gmf_nn_ws_grad_d(wd), gr, n, 1e-12);
    CHECK(ge <= 1e-12, "%s float64 gradient vs layer API: %g", what, ge);
    tu_worst_update(&worst64, fmax(ge, he / hs), "%s", what);
    gmf_nn_ws_free_d(wd);

    /* float32, against the float64 reference */
    gmf_nn_ws_f *wf;
    TU_OK(gmf_nn_ws_new_f(&wf, &m, B, T));
    gmf_nn_forward_f(Hf, wf, Xf, B);
    he = 0.0;
    for (size_t e = 0; e < B * L; e++)
        he = fmax(he, fabs((double)Hf[e] - Hr[e]));
    CHECK(he <= 1e-5 * hs, "%s float32 forward vs float64 layer API: %g (scale %g)", what, he, hs);
    l = gmf_nn_loss_grad_f(wf, Xf, y, B, 1.0 / (double)B, 0);
    CHECK_CLOSE(l, lref, 1e-5, 0.0, "%s float32 loss vs float64 layer API", what);
    const float *gf = gmf_nn_ws_grad_f(wf);
    for (size_t e = 0; e < n; e++)
        g[e] = gf[e];
    ge = tu_vec_relerr(g, gr, n, 1e-12);
    CHECK(ge <= 1e-4, "%s float32 gradient vs float64 layer API: %g", what, ge);
    tu_worst_update(&worst32, fmax(ge, he / hs), "%s", what);
    gmf_nn_ws_free_f(wf);

    /* fused step == loss_grad + apply, bitwise, twice; the gathering step == the plain one */
    const double lr[8] = {0.1, 1.0, 0.1, 0.1, 0.3, 0.3, 0.3, 0.3};
    for (int prec = 0; prec < 2; prec++) {
        gmf_nn_model ma, mb, mc;
        gmf_nn_model_init(&ma, GMF_NN_GM, d, L, K, 0, 0);
        gmf_nn_model_init(&mb, GMF_NN_GM, d, L, K, 0, 0);
        gmf_nn_model_init(&mc, GMF_NN_GM, d, L, K, 0, 0);
        if (learned) {
            gmf_nn_model_set_weights(&ma, GMF_NN_WEIGHTS_LEARNED);
            gmf_nn_model_set_weights(&mb, GMF_NN_WEIGHTS_LEARNED);
            gmf_nn_model_set_weights(&mc, GMF_NN_WEIGHTS_LEARNED);
        }
        memcpy(ma.params, m.params, n * sizeof(double));
        memcpy(mb.params, m.params, n * sizeof(double));
        memcpy(mc.params, m.params, n * sizeof(double));
        /* a data set of 2B rows; the batch is rows idx = (5 i + 1) mod 2B, gathered by hand */
        const size_t nd = 2 * B;
        float *data = tu_xmalloc(nd * d * sizeof(float));
        uint8_t *lab = tu_xmalloc(nd), *yb = tu_xmalloc(B);
        size_t *idx = tu_xmalloc(B * sizeof(size_t));
        for (size_t e = 0; e < nd * d; e++)
            data[e] = (float)(gsl_ran_gaussian(r, 1.0) / sqrt((double)d));
        for (size_t i = 0; i < nd; i++)
            lab[i] = (uint8_t)gsl_rng_uniform_int(r, L + 1);
        for (size_t i = 0; i < B; i++)
            idx[i] = (5 * i + 1) % nd, yb[i] = lab[idx[i]];
        if (prec == 0) {
            gmf_nn_ws_d *a, *b, *c;
            TU_OK(gmf_nn_ws_new_d(&a, &ma, B, T));
            TU_OK(gmf_nn_ws_new_d(&b, &mb, B, T));
            TU_OK(gmf_nn_ws_new_d(&c, &mc, B, T));
            for (size_t i = 0; i < B; i++)
                for (size_t j = 0; j < d; j++)
                    X[i * d + j] = (double)data[idx[i] * d + j];
            for (int s = 0; s < 2; s++) {
                gmf_nn_sgd_step_d(a, X, yb, B, lr);
                gmf_nn_loss_grad_d(b, X, yb, B, 1.0 / (double)B, 0);
                gmf_nn_sgd_apply_d(b, lr, 0);
                gmf_nn_sgd_step_rows_d(c, data, lab, idx, B, lr);
            }
            gmf_nn_ws_store_d(a), gmf_nn_ws_store_d(b), gmf_nn_ws_store_d(c);
            gmf_nn_ws_free_d(a), gmf_nn_ws_free_d(b), gmf_nn_ws_free_d(c);
        } else {
            gmf_nn_ws_f *a, *b, *c;
            TU_OK(gmf_nn_ws_new_f(&a, &ma, B, T));
            TU_OK(gmf_nn_ws_new_f(&b, &mb, B, T));
            TU_OK(gmf_nn_ws_new_f(&c, &mc, B, T));
            for (size_t i = 0; i < B; i++)
                memcpy(Xf + i * d, data + idx[i] * d, d * sizeof(float));
            for (int s = 0; s < 2; s++) {
                gmf_nn_sgd_step_f(a, Xf, yb, B, lr);
                gmf_nn_loss_grad_f(b, Xf, yb, B, 1.0 / (double)B, 0);
                gmf_nn_sgd_apply_f(b, lr, 0);
                gmf_nn_sgd_step_rows_f(c, data, lab, idx, B, lr);
            }
            gmf_nn_ws_store_f(a), gmf_nn_ws_store_f(b), gmf_nn_ws_store_f(c);
            gmf_nn_ws_free_f(a), gmf_nn_ws_free_f(b), gmf_nn_ws_free_f(c);
        }
#if THREADS_BITWISE
        if (prec == 1 && T > 1) { /* the same two fused float32 steps on 1 thread */
            gmf_nn_model m1;
            gmf_nn_model_init(&m1, GMF_NN_GM, d, L, K, 0, 0);
            if (learned) gmf_nn_model_set_weights(&m1, GMF_NN_WEIGHTS_LEARNED);
            memcpy(m1.params, m.params, n * sizeof(double));
            gmf_nn_ws_f *one;
            TU_OK(gmf_nn_ws_new_f(&one, &m1, B, 1));
            for (int s = 0; s < 2; s++)
                gmf_nn_sgd_step_f(one, Xf, yb, B, lr);
            gmf_nn_ws_store_f(one), gmf_nn_ws_free_f(one);
            CHECK(!memcmp(ma.params, m1.params, n * sizeof(double)),
                  "%s float32: two fused steps on %d threads differ from 1 thread (bitwise)", what,
                  T);
            gmf_nn_model_free(&m1);
        }
#endif
        CHECK(!memcmp(ma.params, mb.params, n * sizeof(double)),
              "%s float%d: two fused steps differ from loss_grad + apply (bitwise)", what,
              prec ? 32 : 64);
        CHECK(!memcmp(ma.params, mc.params, n * sizeof(double)),
              "%s float%d: two gathering steps differ from the plain steps (bitwise)", what,
              prec ? 32 : 64);
        CHECK(memcmp(ma.params, m.params, n * sizeof(double)) != 0, "%s: the steps moved nothing",
              what);
        /* 5 steps in one call against 5 single steps: float rows, byte rows, a NaN at step 3 */
        {
            const size_t ns = 5, nr = 3 * B + 1;
            size_t *sidx = tu_xmalloc(ns * B * sizeof(size_t));
            for (size_t e = 0; e < ns * B; e++)
                sidx[e] = (7 * e + 3) % nr;
            float *sx = tu_xmalloc(nr * d * sizeof(float));
            uint8_t *px = tu_xmalloc(nr * d), *sl = tu_xmalloc(nr);
            double *sc = tu_xmalloc(2 * nr * sizeof(double));
            for (size_t e = 0; e < nr * d; e++)
                sx[e] = (float)(gsl_ran_gaussian(r, 1.0) / sqrt((double)d)),
                px[e] = (uint8_t)gsl_rng_uniform_int(r, 256);
            for (size_t i = 0; i < nr; i++) {
                sl[i] = (uint8_t)gsl_rng_uniform_int(r, L + 1);
                sc[2 * i] = 100.0 + 10.0 * gsl_rng_uniform(r);
                sc[2 * i + 1] = 1.0 / (80.0 + 20.0 * gsl_rng_uniform(r)) / sqrt((double)d);
            }
            gmf_dataset fds = {.n = nr, .d = d, .x = sx, .label = sl, .nclass = L + 1};
            gmf_dataset bds = {
                .n = nr, .d = d, .label = sl, .nclass = L + 1, .px = px, .scale = sc};
            steps_case(&m, &fds, sidx, B, T, prec, -1, 0, what);
            steps_case(&m, &bds, sidx, B, T, prec, -1, 0, what);
            sx[sidx[3 * B + B / 2] * d + d / 2] = NAN; /* a row of step 3 */
            for (size_t e = 0; e < 3 * B; e++)         /* (not in the steps before it) */
                if (sidx[e] == sidx[3 * B + B / 2]) sidx[e] = sidx[3 * B + B / 2] == 0 ? 1 : 0;
            steps_case(&m, &fds, sidx, B, T, prec, 3, 0, what);
            sc[2 * sidx[3 * B + B / 2] + 1] = NAN; /* the same row of the byte set: its scale */
            steps_case(&m, &bds, sidx, B, T, prec, 3, 0, what);
            free(sidx), free(sx), free(px), free(sl), free(sc);
        }
        free(data), free(lab), free(yb), free(idx);
        gmf_nn_model_free(&ma), gmf_nn_model_free(&mb), gmf_nn_model_free(&mc);
    }
    free(X), free(H), free(Hr), free(gr), free(g), free(Xf), free(Hf), free(y);
    gmf_nn_model_free(&m);
}

/* Steps in one call with the threads' components uneven (K = 3 on 2 threads, K = 5 on 3: one
 * thread has one component less and leaves each step's backward first) on a byte data set with
 * d = 784: that thread then stages and converts the next batch while the others are still in the
 * backward, so that a gather that read another thread's rows before they are staged (no barrier
 * between) would convert stale ones here (nn_tmpl.h gm_steps_run's comment).  Bitwise against
 * single steps, float32 and float64.  u_frozen: U's learning rate 0 (review s24 item 7: on 2
 * threads the one-barrier step's fallback backward, gm_step1b's gm_bwd_prod + gm_bwd_param1,
 * which the fused kernel otherwise always takes). */
static void uneven_steps_case(size_t K, int T, int u_frozen, gsl_rng *r) {
    const size_t d = 784, L = 9, B = 64, ns = 5, nr = 4 * B + 3;
    char what[64];
    snprintf(what, sizeof what, "uneven B=%zu K=%zu d=%zu T=%d%s", B, K, d, T,
             u_frozen ? " lr[U]=0" : "");
    gmf_nn_model m;
    make_model(&m, d, L, K, 0, r);
    size_t *sidx = tu_xmalloc(ns * B * sizeof(size_t));
    for (size_t e = 0; e < ns * B; e++)
        sidx[e] = (11 * e + 5) % nr;
    uint8_t *px = tu_xmalloc(nr * d), *sl = tu_xmalloc(nr);
    double *sc = tu_xmalloc(2 * nr * sizeof(double));
    for (size_t e = 0; e < nr * d; e++)
        px[e] = (uint8_t)gsl_rng_uniform_int(r, 256);
    for (size_t i = 0; i < nr; i++) {
        sl[i] = (uint8_t)gsl_rng_uniform_int(r, L + 1);
        sc[2 * i] = 100.0 + 10.0 * gsl_rng_uniform(r);
        sc[2 * i + 1] = 1.0 / (80.0 + 20.0 * gsl_rng_uniform(r)) / sqrt((double)d);
    }
    const gmf_dataset bds = {.n = nr, .d = d, .label = sl, .nclass = L + 1, .px = px, .scale = sc};
    /* then with each thread in turn held back 200 us before its fused backward (nn_internal.h's
     * test hook; on 2 threads, gm_step1b, right after the barrier, before its reads of the other
     * thread's partial output sum): the others always run ahead into the next step's gather,
     * conversion and forward products (and gm_step1b's next write of hp) while it still reads
     * step s's data */
    for (int late = -1; late < T; late++) {
        gmf_nn_test_delay_tid = late, gmf_nn_test_delay_us = 200;
        char w2[96];
        snprintf(w2, sizeof w2, "%s late=%d", what, late);
        for (int prec = 0; prec < 2; prec++)
            steps_case(&m, &bds, sidx, B, T, prec, -1, u_frozen, w2);
    }
    gmf_nn_test_delay_tid = -1;
    free(sidx), free(px), free(sl), free(sc);
    gmf_nn_model_free(&m);
}

int main(void) {
    gsl_rng *r = tu_rng(20261201);
    printf("test_nn_pool_split (seed %lu)\n", tu_seed());
    tu_worst_init(&worst64), tu_worst_init(&worst32);
    const size_t cases[][2] = {{7, 5}, {2, 5}, {16, 3}, {64, 20}}; /* (B, K) */
    const int threads[] = {1, 2, 3, 8};
    unsigned long stream = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int learned = 0; learned < 2; learned++)
            for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
                tu_rng_stream(r, ++stream);
                split_case(cases[c][0], cases[c][1], learned, threads[t], r);
            }
    for (int rep = 0; rep < 3; rep++) {
        tu_rng_stream(r, ++stream);
        uneven_steps_case(3, 2, 0, r);
        tu_rng_stream(r, ++stream);
        uneven_steps_case(5, 3, 0, r);
        tu_rng_stream(r, ++stream); /* the trainer's K on 2 threads: gm_step1b, 10 + 10 */
        uneven_steps_case(20, 2, 0, r);
        tu_rng_stream(r, ++stream); /* the same with gm_step1b's fallback backward */
        uneven_steps_case(20, 2, 1, r);
    }
    printf("  worst float64 (gradient or forward) vs layer API: %.2e (%s)\n", worst64.value,
           worst64.what);
    printf("  worst float32 (gradient or forward) vs float64 layer API: %.2e (%s)\n", worst32.value,
           worst32.what);
    gsl_rng_free(r);
    return tu_finish("test_nn_pool_split");
}
