/* test_train_run.c -- the trainer's run records, record-carrying checkpoints and finite-divergence
 * tests (train.h), and model building from a spec (nn.h) on synthetic data (no MNIST needed).
 *
 *   - Divergence that stays finite: an FC network with all weights zero is a fixed point of SGD
 *     (h = 0, every gradient 0), so its loss is exactly ln 10 every epoch: the chance-level test
 *     must fire at epoch 1 + patience and not earlier, not with patience 0, not with every
 *     learning rate 0.  Full-batch GD at lr 1e6 from a random FC init has a finite loss at the
 *     first step and parameters ~1e5 times their initial RMS after it: the growth test must
 *     fire at epoch 1 with the loss still finite.  A network trained below ln(10) / 2 and then
 *     fed two epochs of relabelled data collapses above chance: the collapse test fires at the
 *     second; a single relabelled epoch is a transient and must not fire.  A learnable problem at
 * the default rates must trip neither.
 *   - Records: equal options give equal text; each changed option is listed by name with both
 *     values; ignored keys are skipped; the data checksum changes with one pixel or one label.
 *   - Checkpoints: version 1 (no record) loads with run = NULL; version 2 round-trips the record
 *     and the parameters bitwise; a truncated or corrupted record is refused.
 *   - gmf_nn_model_build: same seed -> same parameters; the FC means init has width K; the FC
 *     scale rule (standard for kaiming, mean-field otherwise).
 *   - gmf_train_mc_evaluate: at sigma = 0 every reduction of a one-component layer is the layer's
 * function. */
#include <stdint.h>

#include "gmflow/common.h"
#include "gmflow/nn.h"
#include "gmflow/train.h"
#include "testutil.h"

/* n samples in d dims, labels 0..9 from the sign pattern of two coordinates (learnable). */
static void synth(gmf_dataset *ds, size_t n, size_t d, gsl_rng *rng) {
    ds->n = n, ds->d = d, ds->nclass = 10;
    ds->x = calloc(n * d, sizeof(float));
    ds->label = calloc(n, 1);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < d; j++)
            ds->x[i * d + j] = (float)gsl_ran_gaussian(rng, 1.0);
        ds->label[i] = (uint8_t)((ds->x[i * d] > 0) * 5 + (ds->x[i * d + 1] > 0.5f) * 3 +
                                 (ds->x[i * d + 2] > 0));
    }
}

/* Train up to `epochs`; returns the epoch at which gmf_train_epoch failed (0: none). */
static size_t run_until_fail(gmf_nn_model *m, const gmf_train_opts *o, const gmf_dataset *ds,
                             size_t epochs, int *rc_out, double *loss_out) {
    gmf_train *t;
    *rc_out = gmf_train_new(&t, m, o);
    if (*rc_out) return 0;
    size_t at = 0;
    for (size_t e = 1; e <= epochs && !at; e++) {
        double loss = NAN;
        int rc = gmf_train_epoch(t, ds, e, &loss, NULL, NULL, NULL);
        *loss_out = loss;
        if (rc) *rc_out = rc, at = e;
    }
    gmf_train_free(t);
    return at;
}

static void divergence(const gmf_dataset *ds) {
    gmf_train_opts o;
    o = gmf_train_defaults();
    gmf_nn_model m;
    int rc = 0;
    double loss = 0;
    /* the zero FC network: loss exactly ln 10, forever */
    for (int variant = 0; variant < 3; variant++) {
        gmf_nn_model_init(&m, GMF_NN_FC, ds->d, 9, 0, 8, 0);
        gmf_train_opts v = o;
        if (variant == 1) v.diverge_patience = 0;
        if (variant == 2) v.lr = v.lr_sigma = 0;
        const size_t at = run_until_fail(&m, &v, ds, 6, &rc, &loss);
        if (variant == 0) {
            CHECK(at == 1 + o.diverge_patience && rc == GMF_EDIVERGE &&
                      strstr(gmf_errmsg(), "chance level ln(10) = 2.302585"),
                  "dead network: stopped at epoch %zu (want %zu), rc %d: %s", at,
                  1 + o.diverge_patience, rc, gmf_errmsg());
            CHECK_CLOSE(loss, log(10.0), 1e-14, 0, "dead network loss");
            printf("dead network: %s\n", gmf_errmsg());
        } else {
            CHECK(at == 0 && rc == 0, "dead network, %s: stopped at epoch %zu: %s",
                  variant == 1 ? "patience 0" : "lr 0", at, gmf_errmsg());
        }
        gmf_nn_model_free(&m);
    }
    /* full-batch GD at lr 1e6: finite, exploding parameters */
    gmf_nn_spec sp;
    gmf_nn_spec_default(&sp);
    sp.kind = GMF_NN_FC, sp.width = 8;
    CHECK(gmf_nn_model_build(&m, &sp, ds->d, 9, 3) == 0, "build: %s", gmf_errmsg());
    gmf_train_opts v = o;
    v.full_batch = 1, v.precision = 64, v.lr = 1e6;
    size_t at = run_until_fail(&m, &v, ds, 4, &rc, &loss);
    CHECK(at == 1 && rc == GMF_EDIVERGE && isfinite(loss) && strstr(gmf_errmsg(), "RMS grew"),
          "lr 1e6: stopped at epoch %zu, loss %g: %s", at, loss, gmf_errmsg());
    printf("lr 1e6 full batch: %s\n", gmf_errmsg());
    gmf_nn_model_free(&m);
    v.diverge_growth = 0, v.diverge_patience = 0;
    CHECK(gmf_nn_model_build(&m, &sp, ds->d, 9, 3) == 0, "build: %s", gmf_errmsg());
    at = run_until_fail(&m, &v, ds, 1, &rc, &loss);
    CHECK(at == 0, "checks off: still stopped: %s", gmf_errmsg());
    gmf_nn_model_free(&m);
    /* collapse: an FC network trained to a loss below ln(10) / 2, then fed two epochs of
     * relabelled data (labels + 5, then + 2 mod 10: noise to it) sits above chance twice: the
     * test fires at the second; one relabelled epoch followed by the real labels is a transient
     * it recovers from, and must not fire */
    for (int transient = 0; transient < 2; transient++) {
        gmf_dataset sh5 = *ds, sh2 = *ds;
        sh5.label = calloc(ds->n, 1), sh2.label = calloc(ds->n, 1);
        for (size_t i = 0; i < ds->n; i++)
            sh5.label[i] = (uint8_t)((ds->label[i] + 5) % 10),
            sh2.label[i] = (uint8_t)((ds->label[i] + 2) % 10);
        gmf_nn_spec_default(&sp);
        sp.kind = GMF_NN_FC, sp.width = 64;
        CHECK(gmf_nn_model_build(&m, &sp, ds->d, 9, 5) == 0, "build: %s", gmf_errmsg());
        v = o, v.lr = 0.5;
        gmf_train *t;
        CHECK(gmf_train_new(&t, &m, &v) == 0, "trainer");
        double l20 = NAN, l21 = NAN;
        at = 0;
        for (size_t e = 1; e <= 24 && !at; e++) {
            const gmf_dataset *data = e <= 20 ? ds : e == 21 ? &sh5 : transient ? ds : &sh2;
            rc = gmf_train_epoch(t, data, e, &loss, NULL, NULL, NULL);
            if (e == 20) l20 = loss;
            if (e == 21) l21 = loss;
            if (rc) at = e;
        }
        if (transient) {
            CHECK(at == 0, "transient relabelling: stopped at epoch %zu: %s", at, gmf_errmsg());
        } else {
            CHECK(l20 < 0.5 * log(10.0) && l21 >= log(10.0), "setup: losses %g, %g", l20, l21);
            CHECK(at == 22 && rc == GMF_EDIVERGE && strstr(gmf_errmsg(), "below half of it"),
                  "collapse: stopped at epoch %zu: %s", at, gmf_errmsg());
            printf("collapse (losses %.3f -> %.3f, %.3f): %s\n", l20, l21, loss, gmf_errmsg());
        }
        gmf_train_free(t);
        gmf_nn_model_free(&m);
        free(sh5.label), free(sh2.label);
    }
    /* a learnable problem at the default rates: no false alarm, and it learns */
    const gmf_nn_kind kinds[] = {GMF_NN_GM, GMF_NN_FC, GMF_NN_GMSTACK};
    for (int k = 0; k < 3; k++) {
        gmf_nn_spec_default(&sp);
        sp.kind = kinds[k], sp.K = 4, sp.width = 32, sp.mid = 6;
        CHECK(gmf_nn_model_build(&m, &sp, ds->d, 9, 5) == 0, "build: %s", gmf_errmsg());
        at = run_until_fail(&m, &o, ds, 8, &rc, &loss);
        CHECK(at == 0 && loss < log(10.0), "%s: stopped at %zu (loss %g): %s",
              gmf_nn_kind_name(kinds[k]), at, loss, gmf_errmsg());
        gmf_nn_model_free(&m);
    }
}

static void records(const gmf_dataset *ds) {
    gmf_nn_spec sp;
    gmf_nn_spec_default(&sp);
    sp.K = 3;
    gmf_nn_model m;
    CHECK(gmf_nn_model_build(&m, &sp, ds->d, 9, 1) == 0, "build");
    gmf_train_opts o, o2;
    o = gmf_train_defaults();
    char a[4096], b[4096], diff[1024];
    CHECK(gmf_train_run_record(a, sizeof a, &sp, &m, &o, "synth", ds) == 0, "record");
    CHECK(gmf_train_run_record(b, sizeof b, &sp, &m, &o, "synth", ds) == 0 && !strcmp(a, b),
          "equal options, different records");
    CHECK(gmf_train_run_diff(diff, sizeof diff, a, b, NULL) == 0, "self-diff: %s", diff);
    o2 = o, o2.lr = 5, o2.batch = 7, o2.threads = 2;
    CHECK(gmf_train_run_record(b, sizeof b, &sp, &m, &o2, "other", ds) == 0, "record 2");
    size_t n = gmf_train_run_diff(diff, sizeof diff, a, b, NULL);
    CHECK(n == 4 && strstr(diff, "lr: 0.1 -> 5") && strstr(diff, "batch: 64 -> 7") &&
              strstr(diff, "dataset: \"synth\" -> \"other\"") && strstr(diff, "threads: 1 -> 2"),
          "diff (%zu):\n%s", n, diff);
    static const char *const ign[] = {"threads", NULL};
    CHECK(gmf_train_run_diff(NULL, 0, a, b, ign) == 3, "ignore list");
    printf("record diff:\n%s\n", diff);
    CHECK(gmf_train_run_diff(diff, sizeof diff, a, "{\n  \"extra\": 1\n}\n", NULL) > 10 &&
              strstr(diff, "(absent)"),
          "absent keys: %s", diff);
    CHECK(gmf_train_run_record(b, 100, &sp, &m, &o, "synth", ds) == GMF_EINVAL, "short buffer");
    /* the data checksum */
    const uint64_t h0 = gmf_train_data_checksum(ds);
    ds->x[17] = nextafterf(ds->x[17], 1e9f);
    const uint64_t h1 = gmf_train_data_checksum(ds);
    ds->x[17] = nextafterf(ds->x[17], -1e9f);
    ds->label[3] ^= 1;
    const uint64_t h2 = gmf_train_data_checksum(ds);
    ds->label[3] ^= 1;
    CHECK(h0 != h1 && h0 != h2 && h0 == gmf_train_data_checksum(ds), "checksum");
    gmf_nn_model_free(&m);
}

static void checkpoints(const gmf_dataset *ds) {
    const char *path = "/tmp/gmflow_test_train_run.gmck";
    gmf_nn_spec sp;
    gmf_nn_spec_default(&sp);
    sp.K = 2;
    gmf_nn_model m, r;
    gmf_nn_model_build(&m, &sp, ds->d, 9, 4);
    gmf_nn_model_build(&r, &sp, ds->d, 9, 5);
    char *run = (char *)"x";
    uint64_t ep = 0;
    CHECK(gmf_train_save_checkpoint(path, &m, 3, 4) == 0, "save v1");
    CHECK(gmf_train_load_checkpoint_run(path, &r, &ep, NULL, &run) == 0 && run == NULL && ep == 3,
          "v1 load: %s", gmf_errmsg());
    const char *rec = "{\n  \"lr\": 0.1\n}\n";
    CHECK(gmf_train_save_checkpoint_run(path, &m, 4, 4, rec) == 0, "save v2");
    CHECK(gmf_train_load_checkpoint_run(path, &r, &ep, NULL, &run) == 0 && run &&
              !strcmp(run, rec) && ep == 4 &&
              !memcmp(m.params, r.params, m.nparams * sizeof(double)),
          "v2 round trip: %s", gmf_errmsg());
    free(run);
    CHECK(gmf_train_load_checkpoint(path, &r, &ep, NULL) == 0 && ep == 4, "v2 via the v1 API");
    FILE *fp = fopen(path, "rb");
    unsigned char buf[1 << 16];
    const size_t len = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    CHECK(buf[8] == 2, "version field %d", buf[8]);
    const char *bad = "/tmp/gmflow_test_train_run_bad.gmck";
    fp = fopen(bad, "wb");
    fwrite(buf, 1, len - 5, fp);
    fclose(fp);
    int rc = gmf_train_load_checkpoint_run(bad, &r, NULL, NULL, &run);
    CHECK(rc == GMF_EFORMAT && strstr(gmf_errmsg(), "run record"), "truncated v2: %s",
          gmf_errmsg());
    buf[len - 12] ^= 1; /* a byte of the record */
    fp = fopen(bad, "wb");
    fwrite(buf, 1, len, fp);
    fclose(fp);
    rc = gmf_train_load_checkpoint_run(bad, &r, NULL, NULL, &run);
    CHECK(rc == GMF_EFORMAT && strstr(gmf_errmsg(), "checksum"), "corrupt record: %s",
          gmf_errmsg());
    remove(bad), remove(path);
    gmf_nn_model_free(&m), gmf_nn_model_free(&r);
}

static void build(void) {
    gmf_nn_spec sp;
    gmf_nn_spec_default(&sp);
    gmf_nn_model a, b;
    sp.kind = GMF_NN_FC, sp.fc_init = GMF_NN_FC_INIT_MEANS, sp.K = 5, sp.width = 999;
    CHECK(gmf_nn_model_build(&a, &sp, 7, 9, 2) == 0 && a.width == 5 && a.fc_scale == 1.0 / 5,
          "means: width %zu scale %g", a.width, a.fc_scale);
    /* means: beta_k = mu_k of the mixture drawn from stream 0 */
    gmf_nn_model gm;
    gmf_nn_model_init(&gm, GMF_NN_GM, 7, 9, 5, 0, 0);
    gmf_nn_rng rng;
    gmf_nn_rng_seed(&rng, 2, GMF_NN_STREAM_INIT);
    gmf_nn_init_gm(&gm, sp.gamma, &rng);
    CHECK(!memcmp(a.params, gm.params, 5 * 7 * sizeof(double)), "means: beta != mu");
    gmf_nn_model_free(&gm), gmf_nn_model_free(&a);
    sp.fc_init = GMF_NN_FC_INIT_KAIMING, sp.width = 6;
    gmf_nn_model_build(&a, &sp, 7, 9, 2);
    gmf_nn_model_build(&b, &sp, 7, 9, 2);
    CHECK(a.fc_scale == 1.0 && !memcmp(a.params, b.params, a.nparams * sizeof(double)),
          "kaiming: scale %g / not deterministic", a.fc_scale);
    gmf_nn_model_free(&a), gmf_nn_model_free(&b);
    sp.fc_init = GMF_NN_FC_INIT_MATCHING, sp.fc_scale = GMF_NN_FC_SCALE_STANDARD;
    gmf_nn_model_build(&a, &sp, 7, 9, 2);
    CHECK(a.fc_scale == 1.0 && a.width == 6, "matching, standard: scale %g", a.fc_scale);
    gmf_nn_model_free(&a);
    gmf_nn_fc_init fi;
    CHECK(gmf_nn_fc_init_parse("bogus", &fi) == GMF_EINVAL, "bad fc init accepted");
}

/* gmf_train_mc_evaluate against two independent facts.  With one component and sigma = 0 every
 * neuron is beta = mu, omega = U mu + v, so any Monte Carlo reduction computes the GM layer's
 * own function: its loss and error must equal the layer's (float32 evaluation, other
 * summation order: 1e-5 relative).  With sigma > 0 the draws differ: the repeats of one width
 * give different losses, and a width refused by the model builder fails naming the width. */
static void mc_reduce(const gmf_dataset *ds) {
    gmf_train_opts o = gmf_train_defaults();
    gmf_nn_model gm;
    gmf_nn_model_init(&gm, GMF_NN_GM, ds->d, 9, 1, 0, 0);
    gmf_nn_rng rng;
    gmf_nn_rng_seed(&rng, 5, GMF_NN_STREAM_INIT);
    gmf_nn_init_gm(&gm, 0.5, &rng);
    gmf_nn_net_params_d v = gmf_nn_net_view_d(&gm, gm.params);
    for (size_t e = 0; e < ds->d; e++)
        v.gm[0].sigma[e] = 0.0;
    double gl, ge;
    CHECK(gmf_train_evaluate_model(&gm, &o, ds, &gl, &ge) == 0, "GM evaluation: %s", gmf_errmsg());
    const size_t widths[] = {1, 7, 40};
    gmf_train_mc_row rows[3 * 2];
    CHECK(gmf_train_mc_evaluate(&gm, &o, ds, widths, 3, 2, rows) == 0, "sigma 0: %s", gmf_errmsg());
    for (size_t q = 0; q < 6; q++) {
        CHECK(rows[q].width == widths[q / 2] && rows[q].repeat == q % 2, "row %zu: m %zu r %zu", q,
              rows[q].width, rows[q].repeat);
        CHECK(fabs(rows[q].test_loss - gl) <= 1e-5 * gl && rows[q].test_error == ge,
              "sigma 0, m=%zu: loss %.9g error %g vs the GM layer's %.9g %g", rows[q].width,
              rows[q].test_loss, rows[q].test_error, gl, ge);
    }
    for (size_t e = 0; e < ds->d; e++)
        v.gm[0].sigma[e] = 0.5;
    CHECK(gmf_train_mc_evaluate(&gm, &o, ds, widths + 1, 1, 2, rows) == 0, "sigma 0.5: %s",
          gmf_errmsg());
    CHECK(rows[0].test_loss != rows[1].test_loss, "sigma 0.5: repeats 0 and 1 equal (%.9g)",
          rows[0].test_loss);
    const size_t zero = 0;
    CHECK(gmf_train_mc_evaluate(&gm, &o, ds, &zero, 1, 1, rows) != 0 && strstr(gmf_errmsg(), "m=0"),
          "width 0: %s", gmf_errmsg());
    gmf_nn_model_free(&gm);
}

int main(void) {
    gsl_rng *rng = tu_rng(23);
    gmf_dataset ds = {0};
    synth(&ds, 600, 12, rng);
    divergence(&ds);
    records(&ds);
    checkpoints(&ds);
    build();
    mc_reduce(&ds);
    free(ds.x), free(ds.label);
    gsl_rng_free(rng);
    return tu_finish("test_train_run");
}
