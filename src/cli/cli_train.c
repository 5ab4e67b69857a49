/* cli_train.c -- `gmflow train`: train (or evaluate) a GM-layer or fully connected classifier on
 * MNIST / Fashion-MNIST with SGD, and reduce a trained GM layer to fully connected networks by
 * Monte Carlo (Figure 6).
 *
 * Pipeline: parse options -> load data (IDX) -> model (gmf_nn_model_build from the spec, or
 * --resume / --eval-only from the checkpoint, whose run record must match) -> epoch 0
 * evaluation and checkpoint -> per epoch: train, evaluate, CSV row, checkpoint, snapshot ->
 * Monte Carlo reductions.  The model policy, RNG streams, divergence tests and run records are
 * in the library (nn.h, train.h).  Files in --out (docs/TRAINING.md):
 *   checkpoint.gmck   binary checkpoint of the last completed epoch with the run record (atomic)
 *   run.json          the run's hyperparameters, command line and status
 *   epochs.csv        epoch,train_loss,test_loss,test_error,seconds,samples_per_s
 *   snapshots/        epoch_NNNN_<group>.npy every --snapshot-every epochs (and epoch 0)
 *   mc.csv            m,repeat,test_loss,test_error (Monte Carlo reductions)
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "gmflow/common.h"
#include "gmflow/dataset.h"
#include "gmflow/io.h"
#include "gmflow/nn.h"
#include "gmflow/outset.h"
#include "gmflow/par.h"
#include "gmflow/train.h"
#include "gmflow/trainio.h"

#define CMD    "gmflow train"
#define MAX_MC 32

static void help(FILE *fp) {
    fprintf(
        fp,
        "usage: " CMD " [options]\n"
        "\n"
        "Train a classifier with L + 1 = 10 classes (class 0 the reference, logit 0) by SGD\n"
        "on MNIST or Fashion-MNIST, evaluating the test error after every epoch.\n"
        "\n"
        "model:\n"
        "  --model M          gm (one GM layer, diagonal covariance, eq. (5); default),\n"
        "                     gm-full (full covariance; small d only), fc (two-layer ReLU\n"
        "                     network), gm-stack (GM d -> mid, unit norm, GM mid -> L),\n"
        "                     gm-lowrank (the same as --cov lowrank)\n"
        "  --components N     Gaussian components per GM layer (20); also -K N, --K N\n"
        "  --mid N            gm-stack: width of the middle layer (100)\n"
        "  --width N          fc: number of neurons (1000)\n"
        "  --fc-init I        fc: kaiming (PyTorch default nn.Linear init; default),\n"
        "                     matching (neurons drawn from the initial GM mixture with\n"
        "                     --components and --gamma), means (width K: beta_k = mu_k,\n"
        "                     omega_k = U_k mu_k + v_k)\n"
        "  --fc-scale S       fc: output scale, standard (1, PyTorch's nn.Linear; default for\n"
        "                     kaiming) or mean-field (1/width; default for matching, means)\n"
        "  --gamma G          GM init scale: mu, U, v ~ N(0, G^2), sigma = G (0.5)\n"
        "  --weights W        mixture weights of the GM layer(s): fixed (equal, 1/K; default)\n"
        "                     or learned (w = softmax(a), K logits a per GM layer, group\n"
        "                     \"a\" (gm-stack: a1, a2), starting at a = 0: equal weights)\n"
        "  --cov C            covariance of --model gm's components: diag (default, eq. (5)),\n"
        "                     lowrank (diag(sigma^2) + V V^T, V of rank --rank: the model\n"
        "                     gm-lowrank) or full (the model gm-full)\n"
        "  --rank R           --cov lowrank: rank of V, 1 <= R <= d (1)\n"
        "  --lowrank-init RHO --cov lowrank: V entries ~ N(0, RHO G^2 / R), so that at init\n"
        "                     E x'Sigma x = (1 + RHO) G^2 |x|^2 (0.1; 0 starts at V = 0,\n"
        "                     a stationary point in V)\n"
        "\n"
        "training:\n"
        "  --epochs N         epochs to reach (20); with --resume, the total\n"
        "  --batch N          SGD batch size (64)\n"
        "  --lr R             learning rate of mu, U, v, fc weights (0.1)\n"
        "  --lr-sigma R       learning rate of sigma / C (1.0)\n"
        "  --lr-lowrank R     --cov lowrank: learning rate of V (default: --lr; at 1, the\n"
        "                     --lr-sigma default, V diverges on MNIST)\n"
        "  --lr2-scale S      gm-stack: the second GM layer learns at S times --lr and\n"
        "                     --lr-sigma (1.0; its input has unit norm, the first's sqrt(d-1))\n"
        "  --fixed-beta       freeze the beta marginal (mu, sigma, C, weights a; fc beta): lr 0\n"
        "  --lr-weights R     --weights learned: learning rate of the logits a (default: --lr\n"
        "                     for euclid, --lr / K for fr: the WFR flow's alpha = 1 at equal\n"
        "                     weights, docs/TRAINING.md)\n"
        "  --weights-geometry G  --weights learned: the logits' step, euclid (a -= R dL/da,\n"
        "                     dL/da_k = w_k (g_k - sum_j w_j g_j); default) or fr (Fisher-Rao\n"
        "                     natural gradient a_k -= R (g_k - sum_j w_j g_j)), g_k = dL/dw_k\n"
        "  --transport-lr T   --weights learned: plain (default) or per-mass: component k's\n"
        "                     mu, sigma / C, U, v learn at rate lr / (K w_k), the WFR flow's\n"
        "                     per-unit-mass transport (same as plain at equal weights)\n"
        "  --full-batch       full-batch gradient descent: one step per epoch\n"
        "  --seed N           seed of init, shuffles and Monte Carlo draws (1)\n"
        "  --threads N        threads (1): GM components split over N threads; other models:\n"
        "                     OpenBLAS threads.  Same seed and N -> bitwise same run\n"
        "  --precision P      32 (float32 GEMMs, default) or 64\n"
        "  --no-divergence-check  do not stop a run whose parameters explode or whose loss\n"
        "                     stays at chance level (see Divergence below)\n"
        "\n"
        "data:\n"
        "  --dataset D        mnist (default) or fashion\n"
        "  --data DIR         directory with the IDX files (default: $GMFLOW_DATA/<dataset>,\n"
        "                     else ../shared/data/<mnist|fashion-mnist> from the working\n"
        "                     directory or from the repository of this executable)\n"
        "  --train-limit N    use the first N training images (0 = all)\n"
        "  --test-limit N     use the first N test images (0 = all)\n"
        "\n"
        "output and state:\n"
        "  --out DIR          output directory (out/train-<model>-<dataset>, e.g.\n"
        "                     out/train-gm-mnist)\n"
        "  --checkpoint PATH  checkpoint file (DIR/checkpoint.gmck)\n"
        "  --resume           continue from the checkpoint; the run's hyperparameters (data,\n"
        "                     model, batch, learning rates, seed, precision ...) must be the\n"
        "                     ones recorded in it, else exit 1 listing the differences\n"
        "  --resume-force     --resume even if the recorded hyperparameters differ\n"
        "  --eval-only        evaluate the checkpoint on the test set; no training\n"
        "  --snapshot-every N write parameter snapshots (.npy) every N epochs (0 = never)\n"
        "  --mc-neurons LIST  after training (or with --eval-only): draw m neurons from the\n"
        "                     GM layer for each m in the comma-separated LIST, form the fc\n"
        "                     network and evaluate it (Figure 6)\n"
        "  --mc-repeats R     independent draws per m (1)\n"
        "  --quiet            no progress line\n"
        "  -h, --help         this help\n"
        "  --version          print the version and exit\n"
        "\n"
        "Files in DIR:\n"
        "  checkpoint.gmck    the last completed epoch: parameters and the run record (atomic)\n"
        "  run.json           the run's hyperparameters, command line, status and final result\n"
        "  epochs.csv         epoch,train_loss,test_loss,test_error,seconds,samples_per_s\n"
        "  snapshots/         epoch_NNNN_<group>.npy (--snapshot-every; with epoch 0)\n"
        "  mc.csv             m,repeat,test_loss,test_error (--mc-neurons)\n"
        "\n"
        "Divergence: a non-finite loss stops training at once, naming the epoch and step; a\n"
        "finite divergence stops it after the epoch: the parameters' RMS above 1000 times\n"
        "max(initial, 1), or the mean training loss stuck at the chance level ln 10 for 2\n"
        "epochs (pinned to it, or back above it after having been below half of it).  The\n"
        "checkpoint of the last epoch before that is left intact.\n"
        "\n"
        "Exit status: 0 success; 1 runtime failure (missing or malformed data, checkpoint\n"
        "missing, corrupt or from another run, divergence, write error); 2 usage error\n"
        "(unknown option, bad or conflicting values).\n");
}

/* ---- options ------------------------------------------------------------------------------- */

typedef struct options {
    gmf_nn_spec spec;
    size_t epochs;
    gmf_train_opts t;
    const char *dataset, *data;
    size_t train_limit, test_limit;
    const char *out, *checkpoint;
    char out_default[64];
    int resume, resume_force, eval_only, quiet;
    size_t snapshot_every;
    size_t mc[MAX_MC], nmc, mc_repeats;
    const char *cov;           /* --cov as given, or NULL */
    gmf_nn_kind cov_kind;      /* the kind --cov names */
    int rank_set, lr_init_set; /* --rank, --lowrank-init given */
    int argc;
    char **argv;
    const char *wopt; /* the first option that needs --weights learned, if given */
} options;

enum {
    O_MODEL = 256,
    O_K,
    O_MID,
    O_WIDTH,
    O_FC_INIT,
    O_FC_SCALE,
    O_GAMMA,
    O_COV,
    O_RANK,
    O_LOWRANK_INIT,
    O_LR_LOWRANK,
    O_EPOCHS,
    O_BATCH,
    O_LR,
    O_LR_SIGMA,
    O_LR2_SCALE,
    O_FIXED_BETA,
    O_FULL_BATCH,
    O_SEED,
    O_THREADS,
    O_PRECISION,
    O_NO_DIVERGE,
    O_DATASET,
    O_DATA,
    O_TRAIN_LIMIT,
    O_TEST_LIMIT,
    O_OUT,
    O_CHECKPOINT,
    O_RESUME,
    O_RESUME_FORCE,
    O_EVAL_ONLY,
    O_SNAPSHOT,
    O_MC,
    O_MC_REPEATS,
    O_VERSION,
    O_WEIGHTS,
    O_LR_WEIGHTS,
    O_WGEOM,
    O_TRANSPORT_LR,
};

static const struct option long_opts[] = {{"model", required_argument, NULL, O_MODEL},
                                          {"components", required_argument, NULL, O_K},
                                          {"K", required_argument, NULL, O_K},
                                          {"mid", required_argument, NULL, O_MID},
                                          {"width", required_argument, NULL, O_WIDTH},
                                          {"fc-init", required_argument, NULL, O_FC_INIT},
                                          {"fc-scale", required_argument, NULL, O_FC_SCALE},
                                          {"gamma", required_argument, NULL, O_GAMMA},
                                          {"cov", required_argument, NULL, O_COV},
                                          {"rank", required_argument, NULL, O_RANK},
                                          {"lowrank-init", required_argument, NULL, O_LOWRANK_INIT},
                                          {"lr-lowrank", required_argument, NULL, O_LR_LOWRANK},
                                          {"epochs", required_argument, NULL, O_EPOCHS},
                                          {"batch", required_argument, NULL, O_BATCH},
                                          {"lr", required_argument, NULL, O_LR},
                                          {"lr-sigma", required_argument, NULL, O_LR_SIGMA},
                                          {"lr2-scale", required_argument, NULL, O_LR2_SCALE},
                                          {"fixed-beta", no_argument, NULL, O_FIXED_BETA},
                                          {"full-batch", no_argument, NULL, O_FULL_BATCH},
                                          {"seed", required_argument, NULL, O_SEED},
                                          {"threads", required_argument, NULL, O_THREADS},
                                          {"precision", required_argument, NULL, O_PRECISION},
                                          {"no-divergence-check", no_argument, NULL, O_NO_DIVERGE},
                                          {"dataset", required_argument, NULL, O_DATASET},
                                          {"data", required_argument, NULL, O_DATA},
                                          {"train-limit", required_argument, NULL, O_TRAIN_LIMIT},
                                          {"limit", required_argument, NULL, O_TRAIN_LIMIT},
                                          {"test-limit", required_argument, NULL, O_TEST_LIMIT},
                                          {"out", required_argument, NULL, O_OUT},
                                          {"checkpoint", required_argument, NULL, O_CHECKPOINT},
                                          {"resume", no_argument, NULL, O_RESUME},
                                          {"resume-force", no_argument, NULL, O_RESUME_FORCE},
                                          {"eval-only", no_argument, NULL, O_EVAL_ONLY},
                                          {"snapshot-every", required_argument, NULL, O_SNAPSHOT},
                                          {"mc-neurons", required_argument, NULL, O_MC},
                                          {"mc-repeats", required_argument, NULL, O_MC_REPEATS},
                                          {"quiet", no_argument, NULL, 'q'},
                                          {"help", no_argument, NULL, 'h'},
                                          {"version", no_argument, NULL, O_VERSION},
                                          {"weights", required_argument, NULL, O_WEIGHTS},
                                          {"lr-weights", required_argument, NULL, O_LR_WEIGHTS},
                                          {"weights-geometry", required_argument, NULL, O_WGEOM},
                                          {"transport-lr", required_argument, NULL, O_TRANSPORT_LR},
                                          {NULL, 0, NULL, 0}};

static int parse_mc_list(const char *arg, options *o) {
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", arg) >= (int)sizeof buf)
        return fail("--mc-neurons: list too long");
    o->nmc = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        unsigned long long v;
        if (o->nmc == MAX_MC) return fail("--mc-neurons: at most %d values", MAX_MC);
        if (parse_count("--mc-neurons", tok, 1, 100000000ull, &v)) return 1;
        o->mc[o->nmc++] = (size_t)v;
    }
    if (o->nmc == 0) return fail("--mc-neurons: empty list");
    return 0;
}

/* A size option into *dst within [min, max]; 2 (after the message) if bad. */
static int size_opt(const char *opt, const char *arg, unsigned long long min,
                    unsigned long long max, size_t *dst) {
    unsigned long long v;
    if (parse_count(opt, arg, min, max, &v)) return 2;
    *dst = (size_t)v;
    return 0;
}

/* A rate option (finite, >= 0) into *dst; 2 if bad. */
static int rate_opt(const char *opt, const char *arg, double *dst) {
    if (parse_double(opt, arg, dst)) return 2;
    if (*dst < 0) return usage_error("%s must be >= 0 (got %s)", opt, arg);
    return 0;
}

/* The model options; -1 if c is not one of them, else 0 or 2. */
static int model_option(options *o, int c, const char *arg) {
    switch (c) {
    case O_MODEL:
        return gmf_nn_kind_parse(arg, &o->spec.kind) ? usage_error("--model: %s", gmf_errmsg()) : 0;
    case O_K:
        return size_opt("--components", arg, 1, 100000, &o->spec.K);
    case O_MID:
        return size_opt("--mid", arg, 1, 100000, &o->spec.mid);
    case O_WIDTH:
        return size_opt("--width", arg, 1, 10000000, &o->spec.width);
    case O_FC_INIT:
        return gmf_nn_fc_init_parse(arg, &o->spec.fc_init)
                   ? usage_error("--fc-init: %s", gmf_errmsg())
                   : 0;
    case O_FC_SCALE:
        return gmf_nn_fc_scale_parse(arg, &o->spec.fc_scale)
                   ? usage_error("--fc-scale: %s", gmf_errmsg())
                   : 0;
    case O_GAMMA:
        return rate_opt("--gamma", arg, &o->spec.gamma);
    case O_COV: {
        static const gmf_nn_kind kinds[] = {GMF_NN_GM, GMF_NN_GMLR, GMF_NN_GMFULL};
        static const char *const names[] = {"diag", "lowrank", "full"};
        for (int i = 0; i < 3; i++)
            if (!strcmp(arg, names[i])) {
                o->cov = arg;
                o->cov_kind = kinds[i];
                return 0;
            }
        return usage_error("--cov: expected diag, lowrank or full (got '%s')", arg);
    }
    case O_RANK:
        o->rank_set = 1;
        return size_opt("--rank", arg, 1, 100000, &o->spec.rank);
    case O_LOWRANK_INIT:
        o->lr_init_set = 1;
        return rate_opt("--lowrank-init", arg, &o->spec.lowrank_init);
    case O_WEIGHTS:
        return gmf_nn_weights_parse(arg, &o->spec.weights)
                   ? usage_error("--weights: %s", gmf_errmsg())
                   : 0;
    }
    return -1;
}

/* The options of learned weights; -1 if c is not one of them, else 0 or 2. */
static int weights_option(options *o, int c, const char *arg) {
    switch (c) {
    case O_LR_WEIGHTS:
        if (!o->wopt) o->wopt = "--lr-weights";
        return rate_opt("--lr-weights", arg, &o->t.lr_weights);
    case O_WGEOM:
        if (!o->wopt) o->wopt = "--weights-geometry";
        return gmf_nn_wgeom_parse(arg, &o->t.weights_geometry)
                   ? usage_error("--weights-geometry: %s", gmf_errmsg())
                   : 0;
    case O_TRANSPORT_LR:
        if (!o->wopt) o->wopt = "--transport-lr";
        if (strcmp(arg, "plain") && strcmp(arg, "per-mass"))
            return usage_error("--transport-lr: expected plain or per-mass (got '%s')", arg);
        o->t.per_mass = !strcmp(arg, "per-mass");
        return 0;
    }
    return -1;
}

/* The training options; -1 if c is not one of them, else 0 or 2. */
static int train_option(options *o, int c, const char *arg) {
    unsigned long long v;
    switch (c) {
    case O_EPOCHS:
        return size_opt("--epochs", arg, 0, 1000000, &o->epochs);
    case O_BATCH:
        return size_opt("--batch", arg, 1, 1000000, &o->t.batch);
    case O_LR:
        return rate_opt("--lr", arg, &o->t.lr);
    case O_LR_SIGMA:
        return rate_opt("--lr-sigma", arg, &o->t.lr_sigma);
    case O_LR_LOWRANK:
        return rate_opt("--lr-lowrank", arg, &o->t.lr_lowrank);
    case O_LR2_SCALE:
        return rate_opt("--lr2-scale", arg, &o->t.lr2_scale);
    case O_FIXED_BETA:
        o->t.fixed_beta = 1;
        return 0;
    case O_FULL_BATCH:
        o->t.full_batch = 1;
        return 0;
    case O_SEED:
        if (parse_count("--seed", arg, 0, ULLONG_MAX, &v)) return 2;
        o->t.seed = v;
        return 0;
    case O_THREADS:
        if (parse_count("--threads", arg, 1, 256, &v)) return 2;
        o->t.threads = (int)v;
        return 0;
    case O_PRECISION:
        if (strcmp(arg, "32") && strcmp(arg, "64"))
            return usage_error("--precision must be 32 or 64 (got '%s')", arg);
        o->t.precision = atoi(arg);
        return 0;
    case O_NO_DIVERGE:
        o->t.diverge_growth = 0, o->t.diverge_patience = 0;
        return 0;
    }
    return -1;
}

/* Data, output and state options; -1 if c is not one of them, else 0 or 2. */
static int io_option(options *o, int c, const char *arg) {
    switch (c) {
    case O_DATASET:
        if (strcmp(arg, "mnist") && strcmp(arg, "fashion"))
            return usage_error("--dataset: expected mnist or fashion (got '%s')", arg);
        o->dataset = arg;
        return 0;
    case O_DATA:
        o->data = arg;
        return 0;
    case O_TRAIN_LIMIT:
        return size_opt("--train-limit", arg, 0, SIZE_MAX, &o->train_limit);
    case O_TEST_LIMIT:
        return size_opt("--test-limit", arg, 0, SIZE_MAX, &o->test_limit);
    case O_OUT:
        o->out = arg;
        return 0;
    case O_CHECKPOINT:
        o->checkpoint = arg;
        return 0;
    case O_RESUME:
        o->resume = 1;
        return 0;
    case O_RESUME_FORCE:
        o->resume = o->resume_force = 1;
        return 0;
    case O_EVAL_ONLY:
        o->eval_only = 1;
        return 0;
    case O_SNAPSHOT:
        return size_opt("--snapshot-every", arg, 0, 1000000, &o->snapshot_every);
    case O_MC:
        return parse_mc_list(arg, o) ? 2 : 0;
    case O_MC_REPEATS:
        return size_opt("--mc-repeats", arg, 1, 10000, &o->mc_repeats);
    case 'q':
        o->quiet = 1;
        return 0;
    }
    return -1;
}

static void default_options(options *o, int argc, char **argv) {
    memset(o, 0, sizeof *o);
    gmf_nn_spec_default(&o->spec);
    o->epochs = 20;
    o->t = gmf_train_defaults();
    o->dataset = "mnist";
    o->mc_repeats = 1;
    o->argc = argc, o->argv = argv;
}

/* --cov on --model gm (gm-full and gm-lowrank are --cov full and lowrank by another name), and
 * the low-rank options only with it; 0 or 2 (after the message). */
static int resolve_cov(options *o) {
    gmf_nn_kind *kind = &o->spec.kind;
    if (o->cov) {
        if (*kind != GMF_NN_GM && *kind != o->cov_kind)
            return usage_error("--cov %s conflicts with --model %s (--cov applies to --model gm)",
                               o->cov, gmf_nn_kind_name(*kind));
        *kind = o->cov_kind;
    }
    if (*kind != GMF_NN_GMLR && (o->rank_set || o->lr_init_set || o->t.lr_lowrank >= 0))
        return usage_error("%s applies to --cov lowrank only", o->rank_set      ? "--rank"
                                                               : o->lr_init_set ? "--lowrank-init"
                                                                                : "--lr-lowrank");
    return 0;
}

/* Returns -1 to go on, else the exit status (0 for --help / --version). */
static int parse_options(int argc, char **argv, options *o) {
    default_options(o, argc, argv);
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":hqK:", long_opts, NULL)) != -1) {
        const char *opt = optind > 0 && optind <= argc ? argv[optind - 1] : "option";
        if (c == 'h') {
            help(stdout);
            return 0;
        }
        if (c == O_VERSION) return gmf_cli_version(CMD);
        if (c == ':') return usage_error("%s needs a value", opt);
        const int st = model_option(o, c == 'K' ? O_K : c, optarg);
        const int st2 = st >= 0 ? st : train_option(o, c, optarg);
        const int st3 = st2 >= 0 ? st2 : io_option(o, c, optarg);
        const int st4 = st3 >= 0 ? st3 : weights_option(o, c, optarg);
        if (st4 < 0) return usage_error("unknown option '%s'", opt);
        if (st4 > 0) return 2;
    }
    if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
    if (o->resume && o->eval_only)
        return usage_error("--resume and --eval-only exclude each other");
    if (resolve_cov(o)) return 2;
    if (o->nmc && o->spec.kind != GMF_NN_GM && o->spec.kind != GMF_NN_GMFULL &&
        o->spec.kind != GMF_NN_GMLR)
        return usage_error("--mc-neurons needs --model gm, gm-full or gm-lowrank");
    if (o->t.lr2_scale != 1.0 && o->spec.kind != GMF_NN_GMSTACK)
        return usage_error("--lr2-scale applies to --model gm-stack only");
    if (o->spec.weights == GMF_NN_WEIGHTS_LEARNED &&
        (o->spec.kind == GMF_NN_FC || o->spec.kind == GMF_NN_GMLR))
        return usage_error("--weights learned needs --model gm, gm-full or gm-stack, not %s%s",
                           gmf_nn_kind_name(o->spec.kind),
                           o->spec.kind == GMF_NN_GMLR ? " (--cov lowrank: not implemented)" : "");
    if (o->wopt && o->spec.weights != GMF_NN_WEIGHTS_LEARNED)
        return usage_error("%s needs --weights learned", o->wopt);
    if (!o->out) {
        snprintf(o->out_default, sizeof o->out_default, "out/train-%s-%s",
                 gmf_nn_kind_name(o->spec.kind), o->dataset);
        o->out = o->out_default;
    }
    return -1;
}

/* ---- helpers ------------------------------------------------------------------------------- */

/* The data directory: --data, else the library's lookup (gmf_dataset_find: $GMFLOW_DATA/<sub>,
 * ../shared/data/<sub>, or beside the repository holding this executable). */
static int find_data(const options *o, char *out, size_t size) {
    const char *sub = !strcmp(o->dataset, "fashion") ? "fashion-mnist" : "mnist";
    if (gmf_dataset_find(o->data, sub, out, size))
        return fail("%s; or give --data DIR", gmf_errmsg());
    return 0;
}

typedef struct progress_state {
    int tty;
    double last;
} progress_state;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void progress(void *user, size_t epoch, size_t step, size_t nsteps, double loss,
                     double rate) {
    progress_state *p = user;
    if (!p->tty) return;
    double t = now_s();
    if (step != nsteps && t - p->last < 0.2) return;
    p->last = t;
    char bar[31];
    size_t fill = 30 * step / nsteps;
    for (size_t i = 0; i < 30; i++)
        bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[30] = '\0';
    fprintf(stderr, "\repoch %zu [%s] %3zu%% step %zu/%zu loss %.4f %.0f samples/s  ", epoch, bar,
            100 * step / nsteps, step, nsteps, loss, rate);
    fflush(stderr);
}

/* --mc: the Monte Carlo reductions (gmf_train_mc_evaluate), one row of mc.csv per width and
 * repeat. */
static int run_mc(const options *o, gmf_nn_model *gm, const gmf_dataset *test, const char *out) {
    char path[4200];
    snprintf(path, sizeof path, "%s/mc.csv", out);
    double gl, ge;
    if (gmf_train_evaluate_model(gm, &o->t, test, &gl, &ge)) return fail("%s", gmf_errmsg());
    printf("mc: GM layer itself: test_error %.4f test_loss %.5f\n", ge, gl);
    gmf_train_mc_row *rows = calloc(o->mc_repeats, sizeof *rows);
    if (!rows) return fail("--mc-repeats %zu: out of memory", o->mc_repeats);
    int rc = 0;
    for (size_t i = 0; i < o->nmc && !rc; i++) { /* one width at a time: rows as they come */
        if (gmf_train_mc_evaluate(gm, &o->t, test, o->mc + i, 1, o->mc_repeats, rows)) {
            rc = fail("%s", gmf_errmsg());
            break;
        }
        for (size_t r = 0; r < o->mc_repeats && !rc; r++) {
            printf("mc: m=%zu repeat=%zu test_error %.4f test_loss %.5f\n", rows[r].width,
                   rows[r].repeat, rows[r].test_error, rows[r].test_loss);
            if (gmf_trainio_mc_row(path, rows[r].width, rows[r].repeat, rows[r].test_loss,
                                   rows[r].test_error))
                rc = fail("%s", gmf_errmsg());
        }
    }
    free(rows);
    return rc;
}

/* ---- run record and run.json --------------------------------------------------------------- */

/* What run.json says beyond the record: where the run stands. */
typedef struct run_status {
    const char *status;  /* "running", "complete", "diverged", "failed" */
    const char *message; /* the error, or NULL */
    size_t epoch;        /* last completed epoch */
    double test_loss, test_error;
} run_status;

/* A trainio return code as the CLI's: 0, or 1 with the message printed. */
static int trainio_fail(int rc) {
    return rc ? fail("%s", gmf_errmsg()) : 0;
}

static int write_run_json(const options *o, const char *path, const char *datadir,
                          const char *record, const char *ckpt, const run_status *st) {
    const gmf_trainio_run r = {.argc = o->argc,
                               .argv = o->argv,
                               .data_dir = datadir,
                               .checkpoint = ckpt,
                               .test_limit = o->test_limit,
                               .epochs = o->epochs,
                               .record = record,
                               .status = st->status,
                               .message = st->message,
                               .last_epoch = st->epoch,
                               .test_loss = st->test_loss,
                               .test_error = st->test_error,
                               .ranks = gmf_par_size()};
    if (gmf_trainio_write_run(path, &r)) return fail("%s", gmf_errmsg());
    return 0;
}

/* --resume: the checkpoint's run record against this run's (threads may differ: a note). */
static int check_resume(const options *o, const char *ckpt, const char *saved, const char *now) {
    if (!saved) {
        fprintf(stderr,
                CMD ": note: %s has no run record (written by gmflow before run records); its "
                    "hyperparameters cannot be checked\n",
                ckpt);
        return 0;
    }
    static const char *const ignore[] = {"threads", NULL};
    char diff[2048];
    const size_t n = gmf_train_run_diff(diff, sizeof diff, saved, now, ignore);
    if (gmf_train_run_diff(NULL, 0, saved, now, NULL) > n)
        fprintf(stderr, CMD ": note: resuming with another --threads; the last bits may differ "
                            "from an uninterrupted run\n");
    if (n == 0) return 0;
    char indented[4096];
    size_t w = 0;
    for (const char *p = diff; *p && w + 8 < sizeof indented; p++) {
        if (p == diff || p[-1] == '\n') w += (size_t)snprintf(indented + w, 8, "  ");
        indented[w++] = *p;
    }
    indented[w] = '\0';
    if (o->resume_force) {
        fprintf(stderr,
                CMD ": note: --resume-force: %s was written by a run with %zu different "
                    "setting(s) (checkpoint -> now):\n%s\n",
                ckpt, n, indented);
        return 0;
    }
    return fail("--resume: %s was written by a different run; %zu setting(s) differ (checkpoint "
                "-> now):\n%s\nrerun with the checkpoint's settings, or pass --resume-force to "
                "continue with the new ones",
                ckpt, n, indented);
}

/* ---- the command --------------------------------------------------------------------------- */

typedef struct run {
    options o;
    char datadir[4096], ckpt[4200], csv[4200], snapdir[4200], runjson[4200];
    gmf_dataset train, test;
    gmf_nn_model m;
    gmf_train *t;
    char record[4096];
    uint64_t start; /* epoch of the checkpoint resumed from (0: fresh) */
    char desc[160];
    int rank, P; /* MPI (docs/SCALE.md): every rank trains; only rank 0 writes and prints */
} run;

/* 1 on every rank when `bad` is set on any rank (that rank printed why); collective. */
static int any_failed(const run *r, int bad) {
    if (!gmf_par_any(bad)) return 0;
    if (!bad)
        fail("rank %d of %d: stopping: another rank failed (its message above)", r->rank, r->P);
    return 1;
}

static int load_data(run *r) {
    const options *o = &r->o;
    if (find_data(o, r->datadir, sizeof r->datadir)) return 1;
    const char *hook = getenv("GMFLOW_TEST_FAIL_RANK"); /* test hook: this rank fails to read */
    if (hook && r->P > 1 && atoi(hook) == r->rank)
        return fail("--data: rank %d of %d: cannot read the data (simulated by "
                    "GMFLOW_TEST_FAIL_RANK)",
                    r->rank, r->P);
    /* one set after the other (loading them on 2 threads measured no faster: docs/PERFORMANCE.md
     * section 9, "Parallel sets") */
    if (!o->eval_only && gmf_dataset_load_u8(r->datadir, "train", o->train_limit, &r->train))
        return fail("%s", gmf_errmsg());
    if (gmf_dataset_load_u8(r->datadir, "t10k", o->test_limit, &r->test))
        return fail("%s", gmf_errmsg());
    return 0;
}

static int set_paths(run *r) {
    const options *o = &r->o;
    const size_t n = sizeof r->ckpt;
    int w = o->checkpoint ? snprintf(r->ckpt, n, "%s", o->checkpoint)
                          : snprintf(r->ckpt, n, "%s/checkpoint.gmck", o->out);
    if (w < 0 || (size_t)w >= n || snprintf(r->csv, n, "%s/epochs.csv", o->out) >= (int)n ||
        snprintf(r->snapdir, n, "%s/snapshots", o->out) >= (int)n ||
        snprintf(r->runjson, n, "%s/run.json", o->out) >= (int)n)
        return fail("--out / --checkpoint: path too long");
    return 0;
}

/* The model: built from the spec, then (--resume, --eval-only) the checkpoint's parameters, its
 * run record checked against this run's. */
static int setup_model(run *r) {
    const options *o = &r->o;
    const size_t d = r->test.d, L = r->test.nclass > 1 ? r->test.nclass - 1 : 9;
    if (o->spec.kind == GMF_NN_GMFULL && d > 256)
        fprintf(stderr, CMD ": warning: gm-full with d = %zu has %zu parameters per component\n", d,
                d * d);
    if (gmf_nn_model_build(&r->m, &o->spec, d, L, o->t.seed)) return fail("%s", gmf_errmsg());
    gmf_nn_model_describe(&r->m, r->desc, sizeof r->desc);
    if (!o->eval_only && gmf_train_run_record(r->record, sizeof r->record, &o->spec, &r->m, &o->t,
                                              o->dataset, &r->train))
        return fail("%s", gmf_errmsg());
    if (!o->resume && !o->eval_only) return 0;
    struct stat st;
    if (stat(r->ckpt, &st) != 0 && errno == ENOENT)
        return fail(o->resume ? "--resume: cannot open %s: no checkpoint exists yet; start the run "
                                "without --resume (it writes the checkpoint at epoch 0 and after "
                                "every epoch)"
                              : "--eval-only: cannot open %s: no checkpoint exists; train first "
                                "(same --out) or give --checkpoint PATH",
                    r->ckpt);
    uint64_t ck_seed = o->t.seed;
    char *saved = NULL;
    if (gmf_train_load_checkpoint_run(r->ckpt, &r->m, &r->start, &ck_seed, &saved))
        return fail("%s", gmf_errmsg());
    int rc = 0;
    if (o->resume) rc = check_resume(o, r->ckpt, saved, r->record);
    if (!rc && !saved && ck_seed != o->t.seed)
        fprintf(stderr,
                CMD
                ": note: checkpoint was trained with --seed %llu; continuing with --seed %llu\n",
                (unsigned long long)ck_seed, (unsigned long long)o->t.seed);
    free(saved);
    return rc;
}

static int eval_only(run *r) {
    const options *o = &r->o;
    double tl, te;
    if (r->rank) return 0; /* evaluation is serial: rank 0 alone */
    if (gmf_train_evaluate(r->t, &r->test, &tl, &te)) return fail("%s", gmf_errmsg());
    printf("eval: model %s, checkpoint %s (epoch %llu): test_loss %.6f test_error %.4f "
           "(%zu test images)\n",
           r->desc, r->ckpt, (unsigned long long)r->start, tl, te, r->test.n);
    if (o->nmc && run_mc(o, &r->m, &r->test, o->out)) return 1;
    return 0;
}

static int save_checkpoint(run *r, size_t epoch) {
    if (r->rank) return 0; /* rank 0 writes */
    if (gmf_train_save_checkpoint_run(r->ckpt, &r->m, epoch, r->o.t.seed, r->record))
        return fail("epoch %zu: %s", epoch, gmf_errmsg());
    if (r->o.snapshot_every && epoch % r->o.snapshot_every == 0 &&
        gmf_train_write_snapshot(r->snapdir, &r->m, epoch))
        return fail("%s", gmf_errmsg());
    return 0;
}

/* Remove the temporaries (*.tmp.<pid>, *.old.<pid>) that killed runs left in dir: the
 * checkpoint, run.json and snapshot writers stage through them.  A failure only warns. */
static void clean_stale(const char *dir) {
    size_t n = 0;
    if (gmf_outset_clean_stale(dir, NULL, &n))
        fprintf(stderr, CMD ": warning: %s\n", gmf_errmsg());
    else if (n)
        fprintf(stderr, CMD ": removed %zu stale temporary file(s) of dead processes in %s\n", n,
                dir);
}

/* Epoch 0 (fresh run: the initialization evaluated on stderr, checkpointed) or the resumed
 * run's epochs.csv cut back to the checkpoint. */
static int begin(run *r) {
    const options *o = &r->o;
    if (!o->quiet)
        fprintf(stderr,
                CMD ": model %s (%zu parameters), %s: %zu train / %zu test images, batch %zu, lr "
                    "%g, lr-sigma %g, %s%s%d thread(s), float%d\n",
                r->desc, r->m.nparams, o->dataset, r->train.n, r->test.n, o->t.batch, o->t.lr,
                o->t.lr_sigma, o->t.fixed_beta ? "fixed beta, " : "",
                o->t.full_batch ? "full batch, " : "", o->t.threads, o->t.precision);
    if (!o->quiet && r->m.weights == GMF_NN_WEIGHTS_LEARNED) {
        double lr[GMF_NN_MAX_GROUPS];
        gmf_train_group_lr(&r->m, &o->t, lr);
        fprintf(stderr, CMD ": learned mixture weights: %s step, lr-weights %g, %s transport\n",
                gmf_nn_wgeom_name(o->t.weights_geometry), lr[gmf_nn_model_logits_group(&r->m, 1)],
                o->t.per_mass ? "per-mass" : "plain");
    }
    if (any_failed(r, !r->rank && o->snapshot_every && make_dirs(r->snapdir))) return 1;
    if (!r->rank) { /* rank 0 owns the output directory */
        clean_stale(o->out);
        if (o->snapshot_every) clean_stale(r->snapdir);
    }
    if (r->start > 0) {
        if (any_failed(r, !r->rank && trainio_fail(gmf_trainio_epochs_truncate(r->csv, r->start))))
            return 1;
        if (!o->quiet)
            fprintf(stderr, CMD ": resuming from %s at epoch %llu\n", r->ckpt,
                    (unsigned long long)r->start);
        return 0;
    }
    if (!r->rank) remove(r->csv); /* epochs.csv has one row per trained epoch */
    double tl, te;
    if (gmf_train_evaluate(r->t, &r->test, &tl, &te)) return fail("%s", gmf_errmsg());
    if (!o->quiet)
        fprintf(stderr, "epoch 0/%zu: test_loss %.5f test_error %.2f%% (initialization)\n",
                o->epochs, tl, 100 * te);
    return any_failed(r, save_checkpoint(r, 0));
}

/* Epochs start+1 .. --epochs; st follows the last completed one. */
static int train_epochs(run *r, run_status *st) {
    const options *o = &r->o;
    progress_state ps = {.tty = !o->quiet && isatty(2), .last = 0.0};
    for (size_t e = (size_t)r->start + 1; e <= o->epochs; e++) {
        double loss, secs, tl, te;
        int rc = gmf_train_epoch(r->t, &r->train, e, &loss, &secs, progress, &ps);
        if (ps.tty) fputc('\n', stderr);
        if (rc) {
            st->status = rc == GMF_EDIVERGE ? "diverged" : "failed";
            return fail("%s; stopping (lr %g, lr-sigma %g). The last good checkpoint %s (epoch "
                        "%zu) is intact.",
                        gmf_errmsg(), o->t.lr, o->t.lr_sigma, r->ckpt, e - 1);
        }
        if (gmf_train_evaluate(r->t, &r->test, &tl, &te)) return fail("%s", gmf_errmsg());
        const double rate = (double)r->train.n / secs;
        if (any_failed(r, !r->rank && (trainio_fail(gmf_trainio_epochs_row(r->csv, e, loss, tl, te,
                                                                           secs, rate)) ||
                                       save_checkpoint(r, e))))
            return 1;
        *st = (run_status){"running", NULL, e, tl, te};
        if (!o->quiet)
            fprintf(stderr,
                    "epoch %zu/%zu: train_loss %.5f test_loss %.5f test_error %.2f%% (%.2f s, "
                    "%.0f samples/s)\n",
                    e, o->epochs, loss, tl, 100 * te, secs, rate);
    }
    return 0;
}

/* A fresh or resumed training run, with run.json before and after. */
static int train(run *r) {
    const options *o = &r->o;
    if (gmf_train_check_data(&r->m, &r->train, "training data") ||
        gmf_train_check_data(&r->m, &r->test, "test data"))
        return fail("%s", gmf_errmsg());
    run_status st = {"running", NULL, (size_t)r->start, NAN, NAN};
    if (any_failed(r, !r->rank &&
                          write_run_json(o, r->runjson, r->datadir, r->record, r->ckpt, &st)) ||
        begin(r))
        return 1;
    int rc = train_epochs(r, &st);
    if (!rc && o->nmc) rc = any_failed(r, !r->rank && run_mc(o, &r->m, &r->test, o->out));
    double tl = NAN, te = NAN;
    if (!rc && gmf_train_evaluate(r->t, &r->test, &tl, &te)) rc = fail("%s", gmf_errmsg());
    if (rc) {
        if (!strcmp(st.status, "running")) st.status = "failed";
        st.message = gmf_errmsg();
        if (!r->rank) write_run_json(o, r->runjson, r->datadir, r->record, r->ckpt, &st);
        return 1;
    }
    if (r->rank) return 0;
    st =
        (run_status){"complete", NULL, o->epochs > r->start ? o->epochs : (size_t)r->start, tl, te};
    if (write_run_json(o, r->runjson, r->datadir, r->record, r->ckpt, &st)) return 1;
    printf("model %s: test_error %.4f test_loss %.6f after %zu epochs (%s)\n", r->desc, te, tl,
           st.epoch, r->ckpt);
    return 0;
}

int gmf_cli_train(int argc, char **argv) {
    run *r = calloc(1, sizeof *r);
    if (!r) return fail("out of memory");
    int status = parse_options(argc, argv, &r->o);
    if (status >= 0) {
        free(r);
        return status;
    }
    status = 1;
    r->rank = gmf_par_rank(), r->P = gmf_par_size();
    if (r->rank) r->o.quiet = 1;
    int bad = load_data(r);
    if (!bad && r->o.spec.kind == GMF_NN_GMLR && r->o.spec.rank > r->test.d) {
        bad = usage_error("--rank %zu exceeds the input dimension d = %zu of the %s data", /* 2 */
                          r->o.spec.rank, r->test.d, r->o.dataset);
        status = 2;
    }
    bad = bad || set_paths(r) || (!r->rank && make_dirs(r->o.out)) || setup_model(r);
    if (!bad && gmf_train_new(&r->t, &r->m, &r->o.t)) bad = fail("%s", gmf_errmsg());
    if (any_failed(r, bad)) goto done;
    status = (r->o.eval_only ? eval_only(r) : train(r)) ? 1 : 0;
done:
    gmf_train_free(r->t);
    gmf_nn_model_free(&r->m);
    gmf_dataset_free(&r->train);
    gmf_dataset_free(&r->test);
    free(r);
    return status;
}
