/* fuzz_checkpoint.c -- libFuzzer target: gmf_train_load_checkpoint into a small model.
 * Byte 0 selects the model (bits 0-1: gm, gm-full, fc, gm-stack) and whether the FNV-1a
 * checksum of the rest is fixed up before writing (bit 2), so that mutations get past the
 * checksum to the header-field, run-record (version 2) and parameter validation. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>

#include "fuzz_common.h"
#include "gmflow/nn.h"
#include "gmflow/train.h"

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const gmf_nn_kind kinds[4] = {GMF_NN_GM, GMF_NN_GMFULL, GMF_NN_FC, GMF_NN_GMSTACK};
    gmf_nn_model m;
    if (gmf_nn_model_init(&m, kinds[data[0] & 3], 3, 2, 2, 2, 2) != GMF_OK) abort();
    uint8_t *b = malloc(size);
    if (!b) abort();
    memcpy(b, data + 1, size - 1);
    size_t n = size - 1;
    if ((data[0] & 4) && n >= 8) {
        uint64_t h = fnv1a(b, n - 8);
        for (int i = 0; i < 8; i++)
            b[n - 8 + (size_t)i] = (uint8_t)(h >> (8 * i));
    }
    const char *path = fz_write("checkpoint.gmck", b, n);
    free(b);
    uint64_t epoch = 0, seed = 0;
    char *run = NULL;
    int rc = gmf_train_load_checkpoint_run(path, &m, &epoch, &seed, &run);
    fz_check_error(rc, path);
    if (rc == GMF_OK) {
        if (epoch > 1000000 || !gmf_all_finite(m.params, m.nparams)) abort();
        if (run && strlen(run) > 65536) abort();
        free(run);
    }
    gmf_nn_model_free(&m);
    return 0;
}
