/* cli_train.c -- `gmflow train`: train (or evaluate) a GM-layer or fully connected classifier on
 * MNIST / Fashion-MNIST with SGD, and reduce a trained GM layer to fully connected networks by
 * Monte Carlo (Figure 6).
 *
 * Pipeline: parse options -> load data (IDX) -> model (fresh init, or --resume / --eval-only from
 * the checkpoint) -> epoch 0 evaluation and checkpoint -> per epoch: train, evaluate, CSV row,
 * checkpoint, snapshot -> Monte Carlo reductions.  Files in --out (docs/TRAINING.md):
 *   checkpoint.gmck   binary checkpoint of the last completed epoch (atomic)
 *   epochs.csv        epoch,train_loss,test_loss,test_error,seconds,samples_per_s
 *   snapshots/        epoch_NNNN_<group>.npy every --snapshot-every epochs (and epoch 0)
 *   mc.csv            m,repeat,test_loss,test_error (Monte Carlo reductions)
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "gmflow/common.h"
#include "gmflow/idx.h"
#include "gmflow/io.h"
#include "gmflow/nn.h"
#include "gmflow/train.h"

#define CMD            "gmflow train"
#define STREAM_MC      2000u
#define STREAM_FC_INIT 3000u
#define MAX_MC         32

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
        "                     network), gm-stack (GM d -> mid, unit norm, GM mid -> L)\n"
        "  --K N              Gaussian components per GM layer (20)\n"
        "  --mid N            gm-stack: width of the middle layer (100)\n"
        "  --width N          fc: number of neurons (1000)\n"
        "  --fc-init I        fc: kaiming (PyTorch default nn.Linear init; default),\n"
        "                     matching (neurons drawn from the initial GM mixture with --K and\n"
        "                     --gamma), means (width K: beta_k = mu_k, omega_k = U_k mu_k + v_k)\n"
        "  --fc-scale S       fc: output scale, standard (1, PyTorch's nn.Linear; default for\n"
        "                     kaiming) or mean-field (1/width; default for matching, means)\n"
        "  --gamma G          GM init scale: mu, U, v ~ N(0, G^2), sigma = G (0.5)\n"
        "\n"
        "training:\n"
        "  --epochs N         epochs to reach (20); with --resume, the total\n"
        "  --batch N          SGD batch size (64)\n"
        "  --lr R             learning rate of mu, U, v, fc weights (0.1)\n"
        "  --lr-sigma R       learning rate of sigma / C (1.0)\n"
        "  --lr2-scale S      gm-stack: the second GM layer learns at S times --lr and\n"
        "                     --lr-sigma (1.0; its input has unit norm, the first's sqrt(d-1))\n"
        "  --fixed-beta       freeze the beta marginal (mu, sigma, C; fc beta): lr 0\n"
        "  --full-batch       full-batch gradient descent: one step per epoch\n"
        "  --seed N           seed of init, shuffles and Monte Carlo draws (1)\n"
        "  --threads N        threads (1): GM components split over N threads; other models:\n"
        "                     OpenBLAS threads.  Same seed and N -> bitwise same run\n"
        "  --precision P      32 (float32 GEMMs, default) or 64\n"
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
        "  --out DIR          output directory (out/train)\n"
        "  --checkpoint PATH  checkpoint file (DIR/checkpoint.gmck)\n"
        "  --resume           continue from the checkpoint (same model options required)\n"
        "  --eval-only        evaluate the checkpoint on the test set; no training\n"
        "  --snapshot-every N write parameter snapshots (.npy) every N epochs (0 = never)\n"
        "  --mc-neurons LIST  after training (or with --eval-only): draw m neurons from the\n"
        "                     GM layer for each m in the comma-separated LIST, form the fc\n"
        "                     network and evaluate it (Figure 6)\n"
        "  --mc-repeats R     independent draws per m (1)\n"
        "  --quiet            no progress line\n"
        "  --help\n"
        "\n"
        "A non-finite loss stops training with a message naming the epoch and step and exit\n"
        "status 1; the last checkpoint (of the last completed epoch) is left intact.\n");
}

/* ---- option values ------------------------------------------------------------------------- */

enum { FC_KAIMING, FC_MATCHING, FC_MEANS };
enum { SCALE_DEFAULT, SCALE_STANDARD, SCALE_MEANFIELD };

typedef struct options {
    gmf_nn_kind kind;
    size_t K, mid, width;
    int fc_init, fc_scale;
    double gamma;
    size_t epochs;
    gmf_train_opts t;
    const char *dataset, *data;
    size_t train_limit, test_limit;
    const char *out, *checkpoint;
    int resume, eval_only, quiet;
    size_t snapshot_every;
    size_t mc[MAX_MC], nmc, mc_repeats;
} options;

enum {
    O_MODEL = 256,
    O_K,
    O_MID,
    O_WIDTH,
    O_FC_INIT,
    O_FC_SCALE,
    O_GAMMA,
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
    O_DATASET,
    O_DATA,
    O_TRAIN_LIMIT,
    O_TEST_LIMIT,
    O_LIMIT,
    O_OUT,
    O_CHECKPOINT,
    O_RESUME,
    O_EVAL_ONLY,
    O_SNAPSHOT,
    O_MC,
    O_MC_REPEATS,
};

static const struct option long_opts[] = {{"model", required_argument, NULL, O_MODEL},
                                          {"K", required_argument, NULL, O_K},
                                          {"mid", required_argument, NULL, O_MID},
                                          {"width", required_argument, NULL, O_WIDTH},
                                          {"fc-init", required_argument, NULL, O_FC_INIT},
                                          {"fc-scale", required_argument, NULL, O_FC_SCALE},
                                          {"gamma", required_argument, NULL, O_GAMMA},
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
                                          {"dataset", required_argument, NULL, O_DATASET},
                                          {"data", required_argument, NULL, O_DATA},
                                          {"train-limit", required_argument, NULL, O_TRAIN_LIMIT},
                                          {"test-limit", required_argument, NULL, O_TEST_LIMIT},
                                          {"limit", required_argument, NULL, O_LIMIT},
                                          {"out", required_argument, NULL, O_OUT},
                                          {"checkpoint", required_argument, NULL, O_CHECKPOINT},
                                          {"resume", no_argument, NULL, O_RESUME},
                                          {"eval-only", no_argument, NULL, O_EVAL_ONLY},
                                          {"snapshot-every", required_argument, NULL, O_SNAPSHOT},
                                          {"mc-neurons", required_argument, NULL, O_MC},
                                          {"mc-repeats", required_argument, NULL, O_MC_REPEATS},
                                          {"quiet", no_argument, NULL, 'q'},
                                          {"help", no_argument, NULL, 'h'},
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

/* Returns -1 to go on, else the exit status (0 for --help). */
static int parse_options(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    o->kind = GMF_NN_GM;
    o->K = 20, o->mid = 100, o->width = 1000;
    o->gamma = 0.5;
    o->epochs = 20;
    gmf_train_opts_default(&o->t);
    o->dataset = "mnist";
    o->out = "out/train";
    o->mc_repeats = 1;
    optind = 1;
    opterr = 0;
    int c;
    unsigned long long v;
    while ((c = getopt_long(argc, argv, ":hq", long_opts, NULL)) != -1) {
        const char *opt = optind > 0 && optind <= argc ? argv[optind - 1] : "option";
        switch (c) {
        case 'h':
            help(stdout);
            return 0;
        case 'q':
            o->quiet = 1;
            break;
        case O_MODEL:
            if (gmf_nn_kind_parse(optarg, &o->kind))
                return usage_error("--model: %s", gmf_errmsg());
            break;
        case O_K:
            if (parse_count("--K", optarg, 1, 100000, &v)) return 2;
            o->K = (size_t)v;
            break;
        case O_MID:
            if (parse_count("--mid", optarg, 1, 100000, &v)) return 2;
            o->mid = (size_t)v;
            break;
        case O_WIDTH:
            if (parse_count("--width", optarg, 1, 10000000, &v)) return 2;
            o->width = (size_t)v;
            break;
        case O_FC_INIT:
            if (!strcmp(optarg, "kaiming"))
                o->fc_init = FC_KAIMING;
            else if (!strcmp(optarg, "matching"))
                o->fc_init = FC_MATCHING;
            else if (!strcmp(optarg, "means"))
                o->fc_init = FC_MEANS;
            else
                return usage_error("--fc-init: expected kaiming, matching or means (got '%s')",
                                   optarg);
            break;
        case O_FC_SCALE:
            if (!strcmp(optarg, "standard"))
                o->fc_scale = SCALE_STANDARD;
            else if (!strcmp(optarg, "mean-field"))
                o->fc_scale = SCALE_MEANFIELD;
            else
                return usage_error("--fc-scale: expected standard or mean-field (got '%s')",
                                   optarg);
            break;
        case O_GAMMA:
            if (parse_double("--gamma", optarg, &o->gamma)) return 2;
            if (o->gamma < 0) return usage_error("--gamma must be >= 0");
            break;
        case O_EPOCHS:
            if (parse_count("--epochs", optarg, 0, 1000000, &v)) return 2;
            o->epochs = (size_t)v;
            break;
        case O_BATCH:
            if (parse_count("--batch", optarg, 1, 1000000, &v)) return 2;
            o->t.batch = (size_t)v;
            break;
        case O_LR:
            if (parse_double("--lr", optarg, &o->t.lr)) return 2;
            if (o->t.lr < 0) return usage_error("--lr must be >= 0");
            break;
        case O_LR_SIGMA:
            if (parse_double("--lr-sigma", optarg, &o->t.lr_sigma)) return 2;
            if (o->t.lr_sigma < 0) return usage_error("--lr-sigma must be >= 0");
            break;
        case O_LR2_SCALE:
            if (parse_double("--lr2-scale", optarg, &o->t.lr2_scale)) return 2;
            if (o->t.lr2_scale < 0) return usage_error("--lr2-scale must be >= 0");
            break;
        case O_FIXED_BETA:
            o->t.fixed_beta = 1;
            break;
        case O_FULL_BATCH:
            o->t.full_batch = 1;
            break;
        case O_SEED:
            if (parse_count("--seed", optarg, 0, ULLONG_MAX, &v)) return 2;
            o->t.seed = v;
            break;
        case O_THREADS:
            if (parse_count("--threads", optarg, 1, 256, &v)) return 2;
            o->t.threads = (int)v;
            break;
        case O_PRECISION:
            if (parse_count("--precision", optarg, 32, 64, &v) || (v != 32 && v != 64))
                return usage_error("--precision must be 32 or 64");
            o->t.precision = (int)v;
            break;
        case O_DATASET:
            if (strcmp(optarg, "mnist") && strcmp(optarg, "fashion"))
                return usage_error("--dataset: expected mnist or fashion (got '%s')", optarg);
            o->dataset = optarg;
            break;
        case O_DATA:
            o->data = optarg;
            break;
        case O_TRAIN_LIMIT:
        case O_LIMIT:
            if (parse_count("--train-limit", optarg, 0, SIZE_MAX, &v)) return 2;
            o->train_limit = (size_t)v;
            break;
        case O_TEST_LIMIT:
            if (parse_count("--test-limit", optarg, 0, SIZE_MAX, &v)) return 2;
            o->test_limit = (size_t)v;
            break;
        case O_OUT:
            o->out = optarg;
            break;
        case O_CHECKPOINT:
            o->checkpoint = optarg;
            break;
        case O_RESUME:
            o->resume = 1;
            break;
        case O_EVAL_ONLY:
            o->eval_only = 1;
            break;
        case O_SNAPSHOT:
            if (parse_count("--snapshot-every", optarg, 0, 1000000, &v)) return 2;
            o->snapshot_every = (size_t)v;
            break;
        case O_MC:
            if (parse_mc_list(optarg, o)) return 2;
            break;
        case O_MC_REPEATS:
            if (parse_count("--mc-repeats", optarg, 1, 10000, &v)) return 2;
            o->mc_repeats = (size_t)v;
            break;
        case ':':
            return usage_error("%s needs a value", opt);
        default:
            return usage_error("unknown option '%s'", opt);
        }
    }
    if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
    if (o->resume && o->eval_only)
        return usage_error("--resume and --eval-only exclude each other");
    if (o->nmc && o->kind != GMF_NN_GM && o->kind != GMF_NN_GMFULL)
        return usage_error("--mc-neurons needs --model gm or gm-full");
    if (o->t.lr2_scale != 1.0 && o->kind != GMF_NN_GMSTACK)
        return usage_error("--lr2-scale applies to --model gm-stack only");
    if (o->kind == GMF_NN_FC && o->fc_init == FC_MEANS) o->width = o->K;
    return -1;
}

/* ---- helpers ------------------------------------------------------------------------------- */

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The data directory: --data, $GMFLOW_DATA/<sub>, ../shared/data/<sub> from the working
 * directory, or from the repository holding this executable (<repo>/<build>/gmflow). */
static int find_data(const options *o, char *out, size_t size) {
    const char *sub = !strcmp(o->dataset, "fashion") ? "fashion-mnist" : "mnist";
    if (o->data) {
        snprintf(out, size, "%s", o->data);
        return 0;
    }
    const char *env = getenv("GMFLOW_DATA");
    if (env && *env) {
        snprintf(out, size, "%s/%s", env, sub);
        if (is_dir(out)) return 0;
    }
    snprintf(out, size, "../shared/data/%s", sub);
    if (is_dir(out)) return 0;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        for (int up = 0; up < 2; up++) { /* strip "gmflow", then the build directory */
            char *slash = strrchr(exe, '/');
            if (slash) *slash = '\0';
        }
        if ((size_t)snprintf(out, size, "%s/../shared/data/%s", exe, sub) < size && is_dir(out))
            return 0;
    }
    return fail("cannot find the %s data: give --data DIR (tried $GMFLOW_DATA/%s and "
                "../shared/data/%s)",
                o->dataset, sub, sub);
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

/* Keep the header and the rows with epoch <= last of an existing epochs.csv (resume). */
static int truncate_csv(const char *path, size_t last) {
    FILE *fp = fopen(path, "r");
    if (!fp) return 0;
    gmf_io_file f;
    if (gmf_io_open(&f, path)) {
        fclose(fp);
        return fail("%s", gmf_errmsg());
    }
    char line[1024];
    int first = 1;
    while (fgets(line, sizeof line, fp)) {
        char *end;
        unsigned long long e = strtoull(line, &end, 10);
        if (first || (end != line && *end == ',' && e <= last)) fputs(line, f.fp);
        first = 0;
    }
    fclose(fp);
    if (gmf_io_commit(&f)) return fail("%s", gmf_errmsg());
    return 0;
}

static int csv_row(const char *path, size_t epoch, double train_loss, double test_loss,
                   double test_err, double secs, double rate) {
    struct stat st;
    const int fresh = stat(path, &st) != 0;
    FILE *fp = fopen(path, "a");
    if (!fp) return fail("cannot write %s: %s", path, strerror(errno));
    if (fresh) fputs("epoch,train_loss,test_loss,test_error,seconds,samples_per_s\n", fp);
    fprintf(fp, "%zu,%.9g,%.9g,%.6g,%.4f,%.1f\n", epoch, train_loss, test_loss, test_err, secs,
            rate);
    if (fclose(fp) != 0) return fail("cannot write %s: %s", path, strerror(errno));
    return 0;
}

/* Build the model the options describe, initialized from the seed. */
static int build_model(const options *o, size_t d, size_t L, gmf_nn_model *m) {
    gmf_nn_rng rng;
    gmf_nn_rng_seed(&rng, o->t.seed, 0);
    int rc = gmf_nn_model_init(m, o->kind, d, L, o->K, o->width, o->mid);
    if (rc) return fail("%s", gmf_errmsg());
    if (o->kind != GMF_NN_FC) {
        gmf_nn_init_gm(m, o->gamma, &rng);
    } else if (o->fc_init == FC_KAIMING) {
        gmf_nn_init_fc_kaiming(m, &rng);
    } else {
        gmf_nn_model gm;
        if (gmf_nn_model_init(&gm, GMF_NN_GM, d, L, o->K, 0, 0)) return fail("%s", gmf_errmsg());
        gmf_nn_init_gm(&gm, o->gamma, &rng);
        gmf_nn_rng r2;
        gmf_nn_rng_seed(&r2, o->t.seed, STREAM_FC_INIT);
        rc = gmf_nn_fc_from_gm(
            m, &gm, o->fc_init == FC_MEANS ? GMF_NN_FROM_GM_MEANS : GMF_NN_FROM_GM_SAMPLE, &r2);
        gmf_nn_model_free(&gm);
        if (rc) return fail("%s", gmf_errmsg());
    }
    if (o->kind == GMF_NN_FC) {
        int scale = o->fc_scale;
        if (scale == SCALE_DEFAULT)
            scale = o->fc_init == FC_KAIMING ? SCALE_STANDARD : SCALE_MEANFIELD;
        m->fc_scale = scale == SCALE_STANDARD ? 1.0 : 1.0 / (double)m->width;
    }
    return 0;
}

static int run_mc(const options *o, gmf_nn_model *gm, const gmf_dataset *test, const char *out) {
    char path[4200];
    snprintf(path, sizeof path, "%s/mc.csv", out);
    struct stat st;
    const int fresh = stat(path, &st) != 0;
    FILE *fp = fopen(path, "a");
    if (!fp) return fail("cannot write %s: %s", path, strerror(errno));
    if (fresh) fputs("m,repeat,test_loss,test_error\n", fp);
    double gl, ge;
    int rc = gmf_train_evaluate_model(gm, &o->t, test, &gl, &ge);
    if (rc) {
        fclose(fp);
        return fail("%s", gmf_errmsg());
    }
    printf("mc: GM layer itself: test_error %.4f test_loss %.5f\n", ge, gl);
    for (size_t i = 0; i < o->nmc; i++)
        for (size_t r = 0; r < o->mc_repeats; r++) {
            gmf_nn_model fc;
            if (gmf_nn_model_init(&fc, GMF_NN_FC, gm->d, gm->L, 0, o->mc[i], 0)) {
                fclose(fp);
                return fail("%s", gmf_errmsg());
            }
            gmf_nn_rng rng;
            gmf_nn_rng_seed(&rng, o->t.seed, STREAM_MC + 7919u * r + 104729u * o->mc[i]);
            double l = NAN, e = NAN;
            rc = gmf_nn_fc_from_gm(&fc, gm, GMF_NN_FROM_GM_SAMPLE, &rng);
            if (!rc) rc = gmf_train_evaluate_model(&fc, &o->t, test, &l, &e);
            gmf_nn_model_free(&fc);
            if (rc) {
                fclose(fp);
                return fail("Monte Carlo reduction m=%zu: %s", o->mc[i], gmf_errmsg());
            }
            printf("mc: m=%zu repeat=%zu test_error %.4f test_loss %.5f\n", o->mc[i], r, e, l);
            fprintf(fp, "%zu,%zu,%.9g,%.6g\n", o->mc[i], r, l, e);
        }
    if (fclose(fp) != 0) return fail("cannot write %s", path);
    return 0;
}

/* ---- the command --------------------------------------------------------------------------- */

int gmf_cli_train(int argc, char **argv) {
    options o;
    int st = parse_options(argc, argv, &o);
    if (st >= 0) return st;
    char datadir[4096];
    if (find_data(&o, datadir, sizeof datadir)) return 1;

    gmf_dataset train = {0}, test = {0};
    int rc = 0, status = 1;
    gmf_nn_model m = {0};
    gmf_train *t = NULL;
    if (!o.eval_only && (rc = gmf_dataset_load(datadir, "train", o.train_limit, &train))) {
        fail("%s", gmf_errmsg());
        goto done;
    }
    if ((rc = gmf_dataset_load(datadir, "t10k", o.test_limit, &test))) {
        fail("%s", gmf_errmsg());
        goto done;
    }
    const size_t d = test.d, L = test.nclass > 1 ? test.nclass - 1 : 9;
    if (o.kind == GMF_NN_GMFULL && d > 256)
        fprintf(stderr, CMD ": warning: gm-full with d = %zu has %zu parameters per component\n", d,
                d * d);
    if (build_model(&o, d, L, &m)) goto done;

    if (make_dirs(o.out)) goto done;
    char ckpt[4200], csv[4200], snapdir[4200];
    snprintf(ckpt, sizeof ckpt, "%s", o.checkpoint ? o.checkpoint : "");
    if (!o.checkpoint) snprintf(ckpt, sizeof ckpt, "%s/checkpoint.gmck", o.out);
    snprintf(csv, sizeof csv, "%s/epochs.csv", o.out);
    snprintf(snapdir, sizeof snapdir, "%s/snapshots", o.out);

    uint64_t start = 0, ck_seed = o.t.seed;
    if (o.resume || o.eval_only) {
        if ((rc = gmf_train_load_checkpoint(ckpt, &m, &start, &ck_seed))) {
            fail("%s", gmf_errmsg());
            goto done;
        }
        if (ck_seed != o.t.seed)
            fprintf(stderr,
                    CMD ": note: checkpoint was trained with --seed %llu; continuing with "
                        "--seed %llu\n",
                    (unsigned long long)ck_seed, (unsigned long long)o.t.seed);
    }
    char desc[160];
    gmf_nn_model_describe(&m, desc, sizeof desc);
    if ((rc = gmf_train_new(&t, &m, &o.t))) {
        fail("%s", gmf_errmsg());
        goto done;
    }
    double tl, te;
    if (o.eval_only) {
        if ((rc = gmf_train_evaluate(t, &test, &tl, &te))) {
            fail("%s", gmf_errmsg());
            goto done;
        }
        printf("eval: model %s, checkpoint %s (epoch %llu): test_loss %.6f test_error %.4f "
               "(%zu test images)\n",
               desc, ckpt, (unsigned long long)start, tl, te, test.n);
        if (o.nmc && run_mc(&o, &m, &test, o.out)) goto done;
        status = 0;
        goto done;
    }
    if ((rc = gmf_train_check_data(&m, &train, "training data")) ||
        (rc = gmf_train_check_data(&m, &test, "test data"))) {
        fail("%s", gmf_errmsg());
        goto done;
    }
    if (!o.quiet)
        fprintf(stderr,
                CMD ": model %s (%zu parameters), %s: %zu train / %zu test images, batch %zu, lr "
                    "%g, lr-sigma %g, %s%s%d thread(s), float%d\n",
                desc, m.nparams, o.dataset, train.n, test.n, o.t.batch, o.t.lr, o.t.lr_sigma,
                o.t.fixed_beta ? "fixed beta, " : "", o.t.full_batch ? "full batch, " : "",
                o.t.threads, o.t.precision);
    if (o.snapshot_every && make_dirs(snapdir)) goto done;
    if (start == 0) {
        /* epoch 0: the initialization, evaluated (stderr only: epochs.csv has one row per
         * trained epoch) and checkpointed */
        remove(csv);
        if ((rc = gmf_train_evaluate(t, &test, &tl, &te))) {
            fail("%s", gmf_errmsg());
            goto done;
        }
        if (!o.quiet)
            fprintf(stderr, "epoch 0/%zu: test_loss %.5f test_error %.2f%% (initialization)\n",
                    o.epochs, tl, 100 * te);
        if ((rc = gmf_train_save_checkpoint(ckpt, &m, 0, o.t.seed))) {
            fail("%s", gmf_errmsg());
            goto done;
        }
        if (o.snapshot_every && (rc = gmf_train_write_snapshot(snapdir, &m, 0))) {
            fail("%s", gmf_errmsg());
            goto done;
        }
    } else {
        if (truncate_csv(csv, start)) goto done;
        if (!o.quiet)
            fprintf(stderr, CMD ": resuming from %s at epoch %llu\n", ckpt,
                    (unsigned long long)start);
    }
    progress_state ps = {.tty = !o.quiet && isatty(2), .last = 0.0};
    for (size_t e = (size_t)start + 1; e <= o.epochs; e++) {
        double loss, secs;
        rc = gmf_train_epoch(t, &train, e, &loss, &secs, progress, &ps);
        if (ps.tty) fputc('\n', stderr);
        if (rc) {
            fail("%s; stopping (lr %g, lr-sigma %g). The last good checkpoint %s (epoch %zu) is "
                 "intact.",
                 gmf_errmsg(), o.t.lr, o.t.lr_sigma, ckpt, e - 1);
            goto done;
        }
        if ((rc = gmf_train_evaluate(t, &test, &tl, &te))) {
            fail("%s", gmf_errmsg());
            goto done;
        }
        const double rate = (double)train.n / secs;
        if (csv_row(csv, e, loss, tl, te, secs, rate)) goto done;
        if ((rc = gmf_train_save_checkpoint(ckpt, &m, e, o.t.seed))) {
            fail("epoch %zu: %s", e, gmf_errmsg());
            goto done;
        }
        if (o.snapshot_every && e % o.snapshot_every == 0 &&
            (rc = gmf_train_write_snapshot(snapdir, &m, e))) {
            fail("%s", gmf_errmsg());
            goto done;
        }
        if (!o.quiet)
            fprintf(stderr,
                    "epoch %zu/%zu: train_loss %.5f test_loss %.5f test_error %.2f%% (%.2f s, "
                    "%.0f samples/s)\n",
                    e, o.epochs, loss, tl, 100 * te, secs, rate);
    }
    if (o.nmc && run_mc(&o, &m, &test, o.out)) goto done;
    if ((rc = gmf_train_evaluate(t, &test, &tl, &te))) {
        fail("%s", gmf_errmsg());
        goto done;
    }
    printf("model %s: test_error %.4f test_loss %.6f after %zu epochs (%s)\n", desc, te, tl,
           o.epochs > start ? o.epochs : (size_t)start, ckpt);
    status = 0;
done:
    gmf_train_free(t);
    gmf_nn_model_free(&m);
    gmf_dataset_free(&train);
    gmf_dataset_free(&test);
    return status;
}
