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

static void usage(int code) {
    fprintf(code ? stderr : stdout,
            "usage: stationary_toy --out DIR [--n N] [--d d] [--K K] [--teacher relu|mixture]\n"
            "                      [--width M] [--noise S] [--data-seed S] [--seed S] [--gamma G]\n"
            "                      [--particles 1]\n"
            "writes DIR/data.csv and DIR/init.json (defaults: gmflow flow's built-in toy)\n");
    exit(code);
}

static double num(const char *opt, const char *s) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end) {
        fprintf(stderr, "stationary_toy: %s: cannot parse \"%s\" as a number\n", opt, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    gmf_toy_opts t = gmf_toy_defaults();
    size_t K = 3;
    unsigned long seed = 2;
    double gamma = 0.5;
    int particles = 0;
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) usage(0);
        if (i + 1 >= argc) usage(2);
        const char *v = argv[++i];
        if (!strcmp(a, "--out"))
            out = v;
        else if (!strcmp(a, "--n"))
            t.n = (size_t)num(a, v);
        else if (!strcmp(a, "--d"))
            t.d = (size_t)num(a, v);
        else if (!strcmp(a, "--K"))
            K = (size_t)num(a, v);
        else if (!strcmp(a, "--width"))
            t.width = (size_t)num(a, v);
        else if (!strcmp(a, "--noise"))
            t.noise = num(a, v);
        else if (!strcmp(a, "--data-seed"))
            t.seed = (unsigned long)num(a, v);
        else if (!strcmp(a, "--seed"))
            seed = (unsigned long)num(a, v);
        else if (!strcmp(a, "--gamma"))
            gamma = num(a, v);
        else if (!strcmp(a, "--particles"))
            particles = num(a, v) != 0;
        else if (!strcmp(a, "--teacher") && (!strcmp(v, "relu") || !strcmp(v, "mixture")))
            t.teacher = strcmp(v, "relu") ? GMF_TOY_MIXTURE : GMF_TOY_RELU;
        else {
            fprintf(stderr, "stationary_toy: bad option %s %s\n", a, v);
            usage(2);
        }
    }
    if (!out || K == 0) usage(2);
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
