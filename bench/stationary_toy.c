/* stationary_toy.c -- write a regression toy and its initial mixture as files, so that gmflow
 * (`gmflow flow --data DIR/data.csv --init DIR/init.json`) and SciPy (bench/stationary_scipy.py)
 * integrate exactly the same problem (bench/run_stationary_bench.sh).
 *
 *   stationary_toy --out DIR [--n N] [--d d] [--K K] [--teacher relu|mixture] [--width M]
 *                  [--noise S] [--data-seed S] [--seed S] [--gamma G] [--particles 1]
 *
 * --particles 1 sets every Sigma_k to 0 after drawing the means (the width-K network in the
 * mean-field scaling; docs/FLOWS.md "Particles"): the means are those of the mixture.
 * The data and the mixture come from toy.h with `gmflow flow`'s defaults (n 200, d 3, K 3, relu
 * teacher of width 4, noise 0.05, data seed 1, init seed 2, gamma 0.5), so with no size options
 * DIR holds the built-in toy of `gmflow flow`.  DIR/init.json is a bw state at t = 0
 * (docs/FORMATS.md); the numbers are printed with %.17g, so both sides read the same doubles.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gmflow/common.h"
#include "gmflow/io.h"
#include "gmflow/toy.h"
#include "harness.h"

int main(int argc, char **argv) {
    gmf_toy_opts t = gmf_toy_defaults();
    size_t K = 3;
    unsigned long seed = 2;
    double gamma = 0.5;
    unsigned long particles = 0;
    int teacher = t.teacher == GMF_TOY_MIXTURE;
    const char *out = NULL;
    static const char *const teachers[] = {"relu", "mixture", NULL};
    const vh_opt opts[] = {{"--out", VH_STRING, &out, NULL, NULL},
                           {"--n", VH_SIZE, &t.n, NULL, NULL},
                           {"--d", VH_SIZE, &t.d, NULL, NULL},
                           {"--K", VH_SIZE, &K, NULL, NULL},
                           {"--width", VH_SIZE, &t.width, NULL, NULL},
                           {"--noise", VH_DOUBLE, &t.noise, NULL, NULL},
                           {"--data-seed", VH_ULONG, &t.seed, NULL, NULL},
                           {"--seed", VH_ULONG, &seed, NULL, NULL},
                           {"--gamma", VH_DOUBLE, &gamma, NULL, NULL},
                           {"--particles", VH_ULONG, &particles, NULL, NULL},
                           {"--teacher", VH_CHOICE, &teacher, teachers, NULL}};
    vh_parse(argc, argv, "stationary_toy",
             "--out DIR [--n N] [--d d] [--K K] [--teacher relu|mixture] [--width M] [--noise S]\n"
             "                      [--data-seed S] [--seed S] [--gamma G] [--particles 0|1]\n"
             "writes DIR/data.csv and DIR/init.json (defaults: gmflow flow's built-in toy)",
             opts, sizeof opts / sizeof opts[0]);
    t.teacher = teacher ? GMF_TOY_MIXTURE : GMF_TOY_RELU;
    if (!out) vh_usage_error("--out is required");
    if (K == 0 || particles > 1) vh_usage_error("need K >= 1 and --particles 0 or 1");
    if (mkdir(out, 0777) && errno != EEXIST) {
        fprintf(stderr, "stationary_toy: %s: %s\n", out, strerror(errno));
        return 1;
    }
    double *X = NULL, *y = NULL;
    const size_t D = t.d + 1;
    double *mu = calloc(K * D, sizeof *mu), *Sigma = calloc(K * D * D, sizeof *Sigma);
    char path[4096];
    int rc = !mu || !Sigma ? GMF_ENOMEM : gmf_toy_make(&t, &X, &y);
    if (!rc) rc = gmf_toy_init_mixture(K, D, gamma, seed, mu, NULL, Sigma);
    if (!rc && particles) memset(Sigma, 0, K * D * D * sizeof *Sigma);
    if (!rc) {
        snprintf(path, sizeof path, "%s/data.csv", out);
        rc = gmf_io_write_csv_data(path, t.n, t.d, X, y);
    }
    if (!rc) {
        gmf_io_state s = {.K = K, .d = t.d, .D = D, .t = 0.0, .mu = mu, .Sigma = Sigma};
        snprintf(path, sizeof path, "%s/init.json", out);
        rc = gmf_io_write_state(path, &s);
    }
    if (rc) fprintf(stderr, "stationary_toy: %s\n", gmf_errmsg());
    free(X), free(y), free(mu), free(Sigma);
    return rc ? 1 : 0;
}
