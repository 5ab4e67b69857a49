/* test_nn_train.c -- the trainer end to end on real MNIST (../shared/data/mnist), plus its
 * reproducibility, options and checkpoints.
 *
 *  1. Accuracy: one GM layer (K = 20, gamma = 1/2, batch 64, lr 0.1 / lr-sigma 1: the paper's
 *     setting), 6 epochs over the 60,000 training images, evaluated on the first 2,000 test
 *     images, must reach < 15% test error (measured 8.0-9.8% over seeds 1-6; ~7 s on one core).
 *     The loss must also fall from the initialization's.
 *  2. Determinism: two runs with the same seed and thread count (1, and 2 with the component
 *     pool) give bitwise identical parameters; another seed gives different ones.
 *  3. Options: --fixed-beta leaves mu and sigma bitwise unchanged (at their float32 rounding: the
 *     trainer's working precision) and moves U and v;
 *     full-batch gradient descent decreases the training loss; float64 and float32 stay close
 *     over a short run.
 *  4. Checkpoints: save/load round trip (bitwise), rejection of another model's checkpoint, of a
 *     truncated and of a corrupted file, and refusal to save non-finite parameters (the old file
 *     stays).
 *  5. Divergence: a huge learning rate gives GMF_EDIVERGE naming the epoch and step.
 * Skipped (prints SKIP, exit 77: ctest reports it skipped) when the data directory is missing.
 */
#include <time.h>

#include "gmflow/common.h"
#include "gmflow/dataset.h"
#include "gmflow/train.h"
#include "testutil.h"

#define DATA "../shared/data/mnist"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fresh_gm(gmf_nn_model *m, size_t d, size_t K, uint64_t seed) {
    gmf_nn_model_init(m, GMF_NN_GM, d, 9, K, 0, 0);
    gmf_nn_rng r;
    gmf_nn_rng_seed(&r, seed, 0);
    gmf_nn_init_gm(m, 0.5, &r);
}

/* Train `epochs` epochs; returns the final mean epoch loss (NaN on failure). */
static double train_run(gmf_nn_model *m, const gmf_train_opts *o, const gmf_dataset *tr,
                        size_t epochs) {
    gmf_train *t;
    if (gmf_train_new(&t, m, o)) return NAN;
    double loss = NAN;
    for (size_t e = 1; e <= epochs; e++)
        if (gmf_train_epoch(t, tr, e, &loss, NULL, NULL, NULL)) {
            loss = NAN;
            break;
        }
    gmf_train_free(t);
    return loss;
}

static void accuracy(const gmf_dataset *train, const gmf_dataset *test) {
    gmf_nn_model m;
    fresh_gm(&m, train->d, 20, 1);
    gmf_train_opts o;
    o = gmf_train_defaults();
    gmf_train *t;
    CHECK(gmf_train_new(&t, &m, &o) == 0, "trainer: %s", gmf_errmsg());
    double l0, e0, loss = NAN, err = NAN, secs = 0.0;
    gmf_train_evaluate(t, test, &l0, &e0);
    const double t0 = now_s();
    for (size_t e = 1; e <= 6; e++) {
        double s;
        CHECK(gmf_train_epoch(t, train, e, &loss, &s, NULL, NULL) == 0, "epoch %zu: %s", e,
              gmf_errmsg());
        secs += s;
    }
    gmf_train_evaluate(t, test, NULL, &err);
    printf("accuracy: GM K=20, 6 epochs x 60000: test error %.2f%% (init %.2f%%), last train "
           "loss %.4f, %.1f s (%.0f samples/s)\n",
           100 * err, 100 * e0, loss, now_s() - t0, 6.0 * (double)train->n / secs);
    CHECK(err < 0.15, "GM K=20 after 6 epochs: test error %.4f, want < 0.15", err);
    CHECK(loss < l0, "training loss %g did not fall below the initial %g", loss, l0);
    gmf_train_free(t);
    gmf_nn_model_free(&m);
}

static void determinism(const gmf_dataset *train) {
    gmf_dataset sub = *train;
    sub.n = 3000;
    gmf_train_opts o;
    o = gmf_train_defaults();
    o.seed = 7;
    for (int threads = 1; threads <= 2; threads++) {
        o.threads = threads;
        gmf_nn_model a, b;
        fresh_gm(&a, sub.d, 6, 7);
        fresh_gm(&b, sub.d, 6, 7);
        double la = train_run(&a, &o, &sub, 2), lb = train_run(&b, &o, &sub, 2);
        CHECK(isfinite(la) && la == lb, "threads %d: losses %.17g vs %.17g", threads, la, lb);
        CHECK(!memcmp(a.params, b.params, a.nparams * sizeof(double)),
              "threads %d: same seed, different parameters", threads);
        gmf_nn_model_free(&b);
        o.seed = 8;
        fresh_gm(&b, sub.d, 6, 7); /* same init, different shuffles */
        train_run(&b, &o, &sub, 2);
        CHECK(memcmp(a.params, b.params, a.nparams * sizeof(double)) != 0,
              "threads %d: another seed gave identical parameters", threads);
        o.seed = 7;
        gmf_nn_model_free(&a), gmf_nn_model_free(&b);
    }
    printf("determinism: same seed and thread count -> bitwise identical (1 and 2 threads)\n");
}

/* The compact data set (bytes + per-image mean, 1/sd; gmf_dataset_load_u8) against the float one
 * gmf_dataset_load stores: every row bitwise the same floats, the same data checksum, and
 * training on either gives bitwise the same parameters and evaluation (SGD at 1 and 2 threads,
 * float32 and float64; full batch).  Fails if the on-the-fly standardization of a gathered row
 * differs in a single bit from the stored one. */
static void compact_form(const gmf_dataset *train) {
    gmf_dataset sub = *train, cpt;
    sub.n = 3000;
    CHECK(gmf_dataset_load_u8(DATA, "train", 3000, &cpt) == 0, "compact load: %s", gmf_errmsg());
    CHECK(cpt.x == NULL && cpt.px && cpt.scale && cpt.n == 3000, "compact form fields");
    float *row = malloc(cpt.d * sizeof *row);
    size_t bad = 0;
    for (size_t i = 0; row && i < cpt.n; i++) {
        gmf_dataset_row(&cpt, i, row);
        bad += memcmp(row, sub.x + i * sub.d, sub.d * sizeof *row) != 0;
    }
    free(row);
    CHECK(bad == 0, "compact form: %zu of %zu rows differ from the float form", bad, cpt.n);
    CHECK(gmf_train_data_checksum(&cpt) == gmf_train_data_checksum(&sub), "data checksums differ");
    const struct {
        int threads, precision, full;
    } runs[] = {{1, 32, 0}, {2, 32, 0}, {1, 64, 0}, {1, 32, 1}};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        gmf_train_opts o = gmf_train_defaults();
        o.threads = runs[r].threads, o.precision = runs[r].precision, o.full_batch = runs[r].full;
        gmf_nn_model a, b;
        fresh_gm(&a, sub.d, 6, 3);
        fresh_gm(&b, sub.d, 6, 3);
        const double la = train_run(&a, &o, &sub, 1), lb = train_run(&b, &o, &cpt, 1);
        double ea = NAN, eb = NAN, ga = NAN, gb = NAN;
        gmf_train_evaluate_model(&a, &o, &sub, &ga, &ea);
        gmf_train_evaluate_model(&b, &o, &cpt, &gb, &eb);
        CHECK(isfinite(la) && la == lb && ga == gb && ea == eb,
              "run %zu: loss %.17g vs %.17g, eval %.17g vs %.17g", r, la, lb, ga, gb);
        CHECK(!memcmp(a.params, b.params, a.nparams * sizeof(double)),
              "run %zu (threads %d, float%d, full batch %d): compact data, different parameters", r,
              runs[r].threads, runs[r].precision, runs[r].full);
        gmf_nn_model_free(&a), gmf_nn_model_free(&b);
    }
    gmf_dataset_free(&cpt);
    printf("compact form: rows, checksum, training and evaluation bitwise as the float form\n");
}

static void options_checks(const gmf_dataset *train, const gmf_dataset *test) {
    gmf_dataset sub = *train;
    sub.n = 2000;
    gmf_train_opts o;
    o = gmf_train_defaults();
    /* fixed beta */
    gmf_nn_model m, m0;
    fresh_gm(&m, sub.d, 4, 3);
    fresh_gm(&m0, sub.d, 4, 3);
    o.fixed_beta = 1;
    CHECK(isfinite(train_run(&m, &o, &sub, 1)), "fixed-beta run failed");
    const gmf_nn_group *g = m.group;
    size_t changed = 0; /* float32 training: frozen = the float rounding of the initial value */
    for (size_t e = 0; e < g[0].n + g[1].n; e++)
        changed += m.params[e] != (double)(float)m0.params[e];
    CHECK(changed == 0, "--fixed-beta changed %zu entries of mu or sigma", changed);
    CHECK(memcmp(m.params + g[2].off, m0.params + g[2].off, g[2].n * sizeof(double)) != 0,
          "--fixed-beta did not train U");
    o.fixed_beta = 0;
    gmf_nn_model_free(&m);
    /* --lr2-scale: the second GM layer of gm-stack (and only it) learns at the scaled rates,
     * and with scale 0 its parameters stay bitwise at their float32 rounding */
    {
        gmf_nn_model st;
        gmf_nn_model_init(&st, GMF_NN_GMSTACK, sub.d, 9, 3, 0, 7);
        gmf_nn_rng r;
        gmf_nn_rng_seed(&r, 4, 0);
        gmf_nn_init_gm(&st, 0.5, &r);
        gmf_train_opts os = o;
        os.lr2_scale = 3.0;
        double lr[GMF_NN_MAX_GROUPS];
        gmf_train_group_lr(&st, &os, lr);
        CHECK(st.ngroups == 8, "gm-stack has %zu groups, expected 8", st.ngroups);
        for (size_t g = 0; g < st.ngroups; g++) {
            const double base = st.group[g].sigma ? os.lr_sigma : os.lr;
            const double want = g >= 4 ? 3.0 * base : base;
            CHECK(lr[g] == want && st.group[g].layer == (g >= 4 ? 2 : 1),
                  "group %s: lr %g (want %g), layer %d", st.group[g].name, lr[g], want,
                  st.group[g].layer);
        }
        os.lr2_scale = 0.0;
        gmf_nn_model st0;
        gmf_nn_model_init(&st0, GMF_NN_GMSTACK, sub.d, 9, 3, 0, 7);
        memcpy(st0.params, st.params, st.nparams * sizeof(double));
        CHECK(isfinite(train_run(&st, &os, &sub, 1)), "gm-stack run with --lr2-scale 0 failed");
        size_t moved2 = 0, moved1 = 0;
        for (size_t e = 0; e < st.nparams; e++) {
            const int l2 = e >= st.group[4].off;
            const int same = st.params[e] == (double)(float)st0.params[e];
            if (l2)
                moved2 += !same;
            else
                moved1 += !same;
        }
        CHECK(moved2 == 0, "--lr2-scale 0 moved %zu parameters of layer 2", moved2);
        CHECK(moved1 > 0, "--lr2-scale 0 froze layer 1 too");
        gmf_nn_model_free(&st);
        gmf_nn_model_free(&st0);
    }
    /* full-batch gradient descent: the loss before each step decreases */
    fresh_gm(&m, sub.d, 4, 3);
    o.full_batch = 1;
    o.lr = 0.05, o.lr_sigma = 0.05;
    gmf_train *t;
    gmf_train_new(&t, &m, &o);
    double prev = INFINITY, l;
    int mono = 1;
    for (size_t e = 1; e <= 8; e++) {
        CHECK(gmf_train_epoch(t, &sub, e, &l, NULL, NULL, NULL) == 0, "full batch: %s",
              gmf_errmsg());
        if (!(l < prev)) mono = 0;
        prev = l;
    }
    double lend;
    gmf_train_evaluate(t, &sub, &lend, NULL);
    CHECK(mono && lend < prev, "full-batch GD: loss not decreasing (last %g, after %g)", prev,
          lend);
    printf("full batch: 8 GD steps, training loss -> %.5f (monotone)\n", lend);
    gmf_train_free(t);
    gmf_nn_model_free(&m);
    /* float64 vs float32 over one short epoch */
    o = gmf_train_defaults();
    gmf_nn_model a, b;
    fresh_gm(&a, sub.d, 4, 5);
    fresh_gm(&b, sub.d, 4, 5);
    o.precision = 64;
    double l64 = train_run(&a, &o, &sub, 1);
    o.precision = 32;
    double l32 = train_run(&b, &o, &sub, 1);
    double e64, e32;
    gmf_train_evaluate_model(&a, &o, test, NULL, &e64);
    gmf_train_evaluate_model(&b, &o, test, NULL, &e32);
    const double rel = tu_vec_relerr(b.params, a.params, a.nparams, 1e-12);
    printf("precision: 1 epoch x 2000, loss f64 %.6f f32 %.6f, parameters rel diff %.2e, test "
           "error %.4f vs %.4f\n",
           l64, l32, rel, e64, e32);
    CHECK(fabs(l64 - l32) <= 1e-3 * fabs(l64) && rel < 1e-2,
          "float32 drifted from float64: loss %g vs %g, parameters %g", l32, l64, rel);
    gmf_nn_model_free(&a), gmf_nn_model_free(&b), gmf_nn_model_free(&m0);
}

static void checkpoints(void) {
    const char *path = "/tmp/gmflow_test_nn_train.gmck";
    gmf_nn_model m, r;
    fresh_gm(&m, 12, 3, 11);
    CHECK(gmf_train_save_checkpoint(path, &m, 5, 99) == 0, "save: %s", gmf_errmsg());
    gmf_nn_model_init(&r, GMF_NN_GM, 12, 9, 3, 0, 0);
    uint64_t ep = 0, sd = 0;
    CHECK(gmf_train_load_checkpoint(path, &r, &ep, &sd) == 0, "load: %s", gmf_errmsg());
    CHECK(ep == 5 && sd == 99 && !memcmp(m.params, r.params, m.nparams * sizeof(double)),
          "round trip: epoch %llu seed %llu", (unsigned long long)ep, (unsigned long long)sd);
    gmf_nn_model_free(&r);
    /* another model: K differs; another kind */
    gmf_nn_model_init(&r, GMF_NN_GM, 12, 9, 4, 0, 0);
    int rc = gmf_train_load_checkpoint(path, &r, NULL, NULL);
    CHECK(rc == GMF_EFORMAT && strstr(gmf_errmsg(), "gm d=12 L=9 K=3") &&
              strstr(gmf_errmsg(), "K=4"),
          "other K: rc %d, '%s'", rc, gmf_errmsg());
    printf("checkpoint from another model: %s\n", gmf_errmsg());
    gmf_nn_model_free(&r);
    gmf_nn_model_init(&r, GMF_NN_FC, 12, 9, 0, 3, 0);
    rc = gmf_train_load_checkpoint(path, &r, NULL, NULL);
    CHECK(rc == GMF_EFORMAT && strstr(gmf_errmsg(), "fc d=12"), "other kind: '%s'", gmf_errmsg());
    gmf_nn_model_free(&r);
    /* truncated and corrupted copies */
    FILE *fp = fopen(path, "rb");
    unsigned char buf[1 << 14];
    size_t len = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    const char *bad = "/tmp/gmflow_test_nn_train_bad.gmck";
    gmf_nn_model_init(&r, GMF_NN_GM, 12, 9, 3, 0, 0);
    fp = fopen(bad, "wb");
    fwrite(buf, 1, len - 100, fp);
    fclose(fp);
    rc = gmf_train_load_checkpoint(bad, &r, NULL, NULL);
    CHECK(rc == GMF_EFORMAT && strstr(gmf_errmsg(), "truncated"), "truncated: '%s'", gmf_errmsg());
    buf[len / 2] ^= 0x10;
    fp = fopen(bad, "wb");
    fwrite(buf, 1, len, fp);
    fclose(fp);
    rc = gmf_train_load_checkpoint(bad, &r, NULL, NULL);
    CHECK(rc == GMF_EFORMAT && strstr(gmf_errmsg(), "checksum"), "corrupt: '%s'", gmf_errmsg());
    memcpy(buf, "NOTACKPT", 8);
    fp = fopen(bad, "wb");
    fwrite(buf, 1, len, fp);
    fclose(fp);
    rc = gmf_train_load_checkpoint(bad, &r, NULL, NULL);
    CHECK(rc == GMF_EFORMAT && strstr(gmf_errmsg(), "magic"), "bad magic: '%s'", gmf_errmsg());
    /* non-finite parameters are not saved and the old file stays */
    m.params[3] = NAN;
    rc = gmf_train_save_checkpoint(path, &m, 6, 99);
    CHECK(rc == GMF_EDIVERGE, "saving NaN parameters: rc %d", rc);
    CHECK(gmf_train_load_checkpoint(path, &r, &ep, NULL) == 0 && ep == 5,
          "old checkpoint not intact after a refused save");
    remove(bad), remove(path);
    gmf_nn_model_free(&r), gmf_nn_model_free(&m);
}

static void divergence(const gmf_dataset *train) {
    gmf_dataset sub = *train;
    sub.n = 2000;
    gmf_nn_model m;
    fresh_gm(&m, sub.d, 4, 3);
    gmf_train_opts o;
    o = gmf_train_defaults();
    o.lr = 1e8, o.lr_sigma = 1e8;
    gmf_train *t;
    gmf_train_new(&t, &m, &o);
    double l;
    int rc = 0;
    for (size_t e = 1; e <= 3 && !rc; e++)
        rc = gmf_train_epoch(t, &sub, e, &l, NULL, NULL, NULL);
    CHECK(rc == GMF_EDIVERGE && strstr(gmf_errmsg(), "epoch") && strstr(gmf_errmsg(), "step"),
          "lr 1e8: rc %d '%s'", rc, gmf_errmsg());
    printf("divergence: %s\n", gmf_errmsg());
    gmf_train_free(t);
    gmf_nn_model_free(&m);
}

int main(void) {
    gmf_dataset train, test;
    if (gmf_dataset_load(DATA, "train", 0, &train) || gmf_dataset_load(DATA, "t10k", 2000, &test)) {
        printf("test_nn_train: SKIP (no MNIST at %s: %s)\n", DATA, gmf_errmsg());
        return 77;
    }
    checkpoints();
    divergence(&train);
    options_checks(&train, &test);
    determinism(&train);
    compact_form(&train);
    accuracy(&train, &test);
    gmf_dataset_free(&train), gmf_dataset_free(&test);
    return tu_finish("test_nn_train");
}
