/* load_mnist.c -- CPU and wall time of loading MNIST (train + t10k, images and labels) through
 * the library, once per process (fresh pages, as `gmflow train` pays them), with the loaded
 * data's checksums (gmf_train_data_checksum) so that two builds or two paths can be checked to
 * load bitwise the same.  Run builds or variants interleaved (A B A B), pinned to one core:
 *
 *   taskset -c 1 build/bench/load_mnist            # the compact uint8 form (`gmflow train`)
 *   taskset -c 1 build/bench/load_mnist --float    # gmf_dataset_load (float32 rows)
 *   GMFLOW_IDX_INFLATE=zlib build/bench/load_mnist # zlib's streaming inflate instead of libdeflate
 *   taskset -c 0,1 build/bench/load_mnist --threads 2   # gmf_dataset_load_sets: both sets at once
 *                                                       # (--threads 1: the same call, serial)
 *
 * Compiled with -DLOAD_MNIST_FLOAT_ONLY it needs only gmf_dataset_load and
 * gmf_train_data_checksum, so the same file links against an older libgmflow.a (the issue 14
 * baseline, bbf0027, predates the compact form): cc -O2 -DLOAD_MNIST_FLOAT_ONLY -I<old>/include
 * -Itests bench/load_mnist.c <old>/build/libgmflow.a + its dependencies.
 * Output: load_mnist form=u8|float load_cpu=S load_wall=S train=<checksum> t10k=<checksum>
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gmflow/common.h"
#ifdef LOAD_MNIST_FLOAT_ONLY
#include "gmflow/idx.h" /* an older tree: gmf_dataset_* were declared there before dataset.h */
#else
#include "gmflow/dataset.h"
#endif
#include "gmflow/train.h"
#include "harness.h"

static double clk(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    const char *root = getenv("GMFLOW_DATA");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/mnist", root && *root ? root : "../shared/data");
    int use_float = 0, threads = 0;
    unsigned long ut = 0;
    const char *data = NULL;
    const vh_opt opts[] = {{"--float", VH_FLAG, &use_float, NULL, NULL},
                           {"--threads", VH_ULONG, &ut, NULL, NULL},
                           {"--data", VH_STRING, &data, NULL, NULL}};
    vh_parse(argc, argv, "load_mnist", "[--data DIR] [--float] [--threads N]", opts, 3);
    if (ut > 64) vh_usage_error("--threads: at most 64, got %lu", ut);
    threads = (int)ut;
    if (data) snprintf(dir, sizeof dir, "%s", data);
    gmf_dataset tr = {0}, te = {0};
    const double c0 = clk(CLOCK_PROCESS_CPUTIME_ID), w0 = clk(CLOCK_MONOTONIC);
    int rc;
#ifdef LOAD_MNIST_FLOAT_ONLY
    if (!use_float || threads) {
        fprintf(stderr,
                "load_mnist: built with LOAD_MNIST_FLOAT_ONLY: only --float, no --threads\n");
        return 2;
    }
    rc = gmf_dataset_load(dir, "train", 0, &tr) || gmf_dataset_load(dir, "t10k", 0, &te);
#else
    int (*load)(const char *, const char *, size_t, gmf_dataset *) =
        use_float ? gmf_dataset_load : gmf_dataset_load_u8;
    if (threads > 0) { /* both sets through gmf_dataset_load_sets on up to N threads */
        const char *const prefix[2] = {"train", "t10k"};
        gmf_dataset both[2];
        rc = gmf_dataset_load_sets(dir, 2, prefix, NULL, !use_float, threads, both);
        tr = both[0], te = both[1];
    } else {
        rc = load(dir, "train", 0, &tr) || load(dir, "t10k", 0, &te);
    }
#endif
    const double c1 = clk(CLOCK_PROCESS_CPUTIME_ID), w1 = clk(CLOCK_MONOTONIC);
    if (rc) {
        fprintf(stderr, "load_mnist: %s: %s\n", dir, gmf_errmsg());
        return 1;
    }
    printf(
        "load_mnist form=%s threads=%d load_cpu=%.4f load_wall=%.4f train=%016llx t10k=%016llx\n",
        use_float ? "float" : "u8", threads, c1 - c0, w1 - w0,
        (unsigned long long)gmf_train_data_checksum(&tr),
        (unsigned long long)gmf_train_data_checksum(&te));
    gmf_dataset_free(&tr);
    gmf_dataset_free(&te);
    return 0;
}
