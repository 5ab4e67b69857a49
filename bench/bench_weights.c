/* bench_weights.c -- CPU time of the GM layer's fused SGD step (gmf_nn_sgd_step_rows_f), the
 * trainer's inner loop, with fixed and (where the library has them) learned mixture weights
 * (docs/TRAINING.md, "Learned mixture weights").  Thread CPU time, so that waiting for a loaded
 * core does not count; run pinned (taskset -c N) and interleave builds A B A B.
 *
 *   bench_weights [steps (2000)] [K (20)]      prints: fixed <us/step> [learned <us/step>]
 *
 * Synthetic MNIST-shaped data (d = 784, L = 9, batch 64, 60000 x 784 floats would be 188 MB; a
 * 4096-row pool is drawn from instead), 1 thread, float32, the paper's rates.  The same source
 * builds against a library without learned weights (it then times the fixed step only), so the
 * fixed path of two commits can be compared. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "gmflow/nn.h"
#include "harness.h"

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double run(int learned, size_t steps, size_t K) {
    const size_t d = 784, L = 9, B = 64, n = 4096;
    gmf_nn_model m;
    if (gmf_nn_model_init(&m, GMF_NN_GM, d, L, K, 0, 0)) return -1;
#if GMF_NN_MAX_GROUPS >= 16
    if (learned && gmf_nn_model_set_weights(&m, GMF_NN_WEIGHTS_LEARNED)) return -1;
#else
    if (learned) return -1;
#endif
    gmf_nn_rng rng;
    gmf_nn_rng_seed(&rng, 1, 0);
    gmf_nn_init_gm(&m, 0.5, &rng);
    float *data = malloc(n * d * sizeof(float));
    uint8_t *lab = malloc(n);
    size_t *idx = malloc(n * sizeof(size_t));
    if (!data || !lab || !idx) return -1;
    for (size_t e = 0; e < n * d; e++)
        data[e] = (float)(gmf_nn_rng_normal(&rng) / 28.0);
    for (size_t i = 0; i < n; i++)
        lab[i] = (uint8_t)gmf_nn_rng_below(&rng, L + 1), idx[i] = i;
    gmf_nn_rng_shuffle(&rng, idx, n);
    double lr[GMF_NN_MAX_GROUPS];
    for (size_t g = 0; g < m.ngroups; g++)
        lr[g] = m.group[g].sigma ? 1.0 : 0.1;
    gmf_nn_ws_f *ws;
    if (gmf_nn_ws_new_f(&ws, &m, B, 1)) return -1;
    double loss = 0.0;
    for (size_t s = 0; s < 50; s++) /* warm up */
        loss += gmf_nn_sgd_step_rows_f(ws, data, lab, idx + (s * B) % (n - B), B, lr);
    const double t0 = cpu_s();
    for (size_t s = 0; s < steps; s++)
        loss += gmf_nn_sgd_step_rows_f(ws, data, lab, idx + (s * B) % (n - B), B, lr);
    const double t = cpu_s() - t0;
    if (loss != loss) fprintf(stderr, "bench_weights: NaN loss\n");
    gmf_nn_ws_free_f(ws);
    gmf_nn_model_free(&m);
    free(data), free(lab), free(idx);
    return 1e6 * t / (double)steps;
}

int main(int argc, char **argv) {
    vh_prog_name = "bench_weights", vh_prog_usage = "[STEPS (2000)] [K (20)]";
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: %s %s\n", vh_prog_name, vh_prog_usage);
        return 0;
    }
    if (argc > 3) vh_usage_error("at most 2 arguments, got %d", argc - 1);
    const size_t steps = argc > 1 ? (size_t)vh_ulong_value("STEPS", argv[1], 100000000) : 2000;
    const size_t K = argc > 2 ? (size_t)vh_ulong_value("K", argv[2], 1000) : 20;
    if (steps < 1 || K < 1) vh_usage_error("STEPS and K must be at least 1");
    printf("fixed %.2f", run(0, steps, K));
#if GMF_NN_MAX_GROUPS >= 16
    printf(" learned %.2f", run(1, steps, K));
#endif
    printf("\n");
    return 0;
}
