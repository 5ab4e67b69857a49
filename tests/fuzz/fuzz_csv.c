/* fuzz_csv.c -- libFuzzer target: gmf_io_read_csv on arbitrary bytes. */
#define _POSIX_C_SOURCE 200809L
#include "fuzz_common.h"
#include "gmflow/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_write("data.csv", data, size);
    size_t n, d;
    double *X, *y;
    int rc = gmf_io_read_csv(path, &n, &d, &X, &y);
    fz_check_error(rc, path);
    if (rc == GMF_OK) {
        if (n == 0 || d == 0 || !gmf_all_finite(X, n * d) || !gmf_all_finite(y, n)) abort();
        free(X), free(y);
    }
    return 0;
}
