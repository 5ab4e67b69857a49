/* train_phases.c -- CPU and wall time of the phases of MNIST training through the library:
 * loading (train + t10k), then each epoch of one GM layer (K = 20, batch 64, the paper's
 * learning rates, float32), with the test error after each.  The measurement behind
 * docs/PERFORMANCE.md section 8; CPU time (CLOCK_PROCESS_CPUTIME_ID, all threads) is what stays
 * comparable on a machine loaded by other jobs.  Run two builds' copies interleaved (A B A B,
 * `taskset -c N`) to compare them.
 *
 *   build/bench/train_phases [--data DIR] [--epochs 3] [--threads 1] [--seed 1] [--float]
 *                            [--no-eval] [--K 20]
 *
 * --float loads the float32 data set (gmf_dataset_load) instead of the compact uint8 one that
 * `gmflow train` uses (gmf_dataset_load_u8); both train bitwise the same.  --no-eval skips the
 * test-set evaluation (test_error=nan), so that a -DGMF_NN_PROF build's phase totals are the
 * epochs' alone.  --K sets the layer's number of components (default: gmf_nn_spec_default's 20;
 * K = 10 on 1 thread is the work of one thread of a 2-thread K = 20 run, without the exchanges).
 * Output lines:
 *   train_phases form=u8 load_cpu=S load_wall=S
 *   train_phases epoch=E cpu=S wall=S loss=L test_error=R
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gmflow/gmflow.h"
#include "harness.h"

static double clk(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int fail(const char *what) {
    fprintf(stderr, "train_phases: %s: %s\n", what, gmf_errmsg());
    return 1;
}

int main(int argc, char **argv) {
    const char *root = getenv("GMFLOW_DATA");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/mnist", root && *root ? root : "../shared/data");
    unsigned long ue = 3, ut = 1, us = 1, uk = 0;
    int use_float = 0, no_eval = 0;
    const char *data = NULL;
    const vh_opt opts[] = {{"--data", VH_STRING, &data, NULL, NULL},
                           {"--epochs", VH_ULONG, &ue, NULL, NULL},
                           {"--threads", VH_ULONG, &ut, NULL, NULL},
                           {"--seed", VH_ULONG, &us, NULL, NULL},
                           {"--float", VH_FLAG, &use_float, NULL, NULL},
                           {"--no-eval", VH_FLAG, &no_eval, NULL, NULL},
                           {"--K", VH_ULONG, &uk, NULL, NULL}};
    vh_parse(argc, argv, "train_phases",
             "[--data DIR] [--epochs N] [--threads N] [--seed N] [--float] [--no-eval] [--K N]",
             opts, 7);
    if (ue > 1000 || ut < 1 || ut > 256) vh_usage_error("need epochs <= 1000, 1 <= threads <= 256");
    if (uk > 4096) vh_usage_error("need K <= 4096 (0: the default)");
    if (data) snprintf(dir, sizeof dir, "%s", data);
    const long epochs = (long)ue, threads = (long)ut, seed = (long)us;
    const int eval = !no_eval;
    gmf_dataset tr = {0}, te = {0};
    double c0 = clk(CLOCK_PROCESS_CPUTIME_ID), w0 = clk(CLOCK_MONOTONIC);
    int (*load)(const char *, const char *, size_t, gmf_dataset *) =
        use_float ? gmf_dataset_load : gmf_dataset_load_u8;
    if (load(dir, "train", 0, &tr) || load(dir, "t10k", 0, &te)) return fail(dir);
    printf("train_phases form=%s load_cpu=%.4f load_wall=%.4f\n", use_float ? "float" : "u8",
           clk(CLOCK_PROCESS_CPUTIME_ID) - c0, clk(CLOCK_MONOTONIC) - w0);
    gmf_nn_spec spec;
    gmf_nn_spec_default(&spec);
    if (uk) spec.K = (size_t)uk;
    gmf_nn_model m;
    if (gmf_nn_model_build(&m, &spec, tr.d, 9, (uint64_t)seed)) return fail("model");
    gmf_train_opts o = gmf_train_defaults();
    o.threads = (int)threads, o.seed = (uint64_t)seed;
    gmf_train *t;
    if (gmf_train_new(&t, &m, &o)) return fail("trainer");
    int rc = 0;
    for (long e = 1; e <= epochs && !rc; e++) {
        double loss, err = eval ? 0 : NAN;
        c0 = clk(CLOCK_PROCESS_CPUTIME_ID), w0 = clk(CLOCK_MONOTONIC);
        rc = gmf_train_epoch(t, &tr, (size_t)e, &loss, NULL, NULL, NULL);
        const double c = clk(CLOCK_PROCESS_CPUTIME_ID) - c0, w = clk(CLOCK_MONOTONIC) - w0;
        if (!rc && eval) rc = gmf_train_evaluate(t, &te, NULL, &err);
        if (!rc)
            printf("train_phases epoch=%ld cpu=%.4f wall=%.4f loss=%.9f test_error=%.4f\n", e, c, w,
                   loss, err);
    }
    gmf_train_free(t);
    gmf_nn_model_free(&m);
    gmf_dataset_free(&tr), gmf_dataset_free(&te);
    return rc ? fail("training") : 0;
}
