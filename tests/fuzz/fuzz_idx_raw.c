/* fuzz_idx_raw.c -- libFuzzer target: the IDX image and label readers on arbitrary raw bytes
 * (the first byte selects images or labels). */
#define _POSIX_C_SOURCE 200809L
#include "fuzz_common.h"
#include "gmflow/idx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *path = fz_write("x-ubyte", data + 1, size - 1);
    if (data[0] & 1) {
        gmf_idx_images im;
        int rc = gmf_idx_read_images(path, &im);
        fz_check_error(rc, path);
        if (rc == GMF_OK) {
            if (im.count * im.rows * im.cols > size) abort();
            gmf_idx_images_free(&im);
        }
    } else {
        size_t n;
        uint8_t *lab;
        int rc = gmf_idx_read_labels(path, &n, &lab);
        fz_check_error(rc, path);
        if (rc == GMF_OK) {
            if (n > size) abort();
            free(lab);
        }
    }
    return 0;
}
