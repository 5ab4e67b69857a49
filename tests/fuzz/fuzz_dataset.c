/* fuzz_dataset.c -- libFuzzer target: gmf_dataset_load on a data-set directory made from the
 * input.  Layout: byte 0 = limit (0 = all), bytes 1-2 = length of the image file (little-endian),
 * then the image file, then the label file (both raw IDX; gzip is fuzz_idx_gz's job). */
#define _POSIX_C_SOURCE 200809L
#include "fuzz_common.h"
#include "gmflow/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    size_t ilen = (size_t)data[1] | (size_t)data[2] << 8;
    if (ilen > size - 3) ilen = size - 3;
    fz_write("train-images-idx3-ubyte", data + 3, ilen);
    fz_write("train-labels-idx1-ubyte", data + 3 + ilen, size - 3 - ilen);
    gmf_dataset ds;
    int rc = gmf_dataset_load(fz_dir(), "train", data[0], &ds);
    fz_check_error(rc, fz_dir());
    if (rc == GMF_OK) {
        if (ds.n == 0 || ds.d == 0 || (data[0] && ds.n > data[0])) abort();
        for (size_t i = 0; i < ds.n; i++)
            if (ds.label[i] >= ds.nclass) abort();
        gmf_dataset_free(&ds);
    }
    return 0;
}
