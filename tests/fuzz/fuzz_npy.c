/* fuzz_npy.c -- libFuzzer target: gmf_io_read_npy on arbitrary bytes. */
#define _POSIX_C_SOURCE 200809L
#include "fuzz_common.h"
#include "gmflow/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_write("a.npy", data, size);
    double *a;
    size_t ndim, shape[8], count = 1;
    int rc = gmf_io_read_npy(path, &a, &ndim, shape);
    fz_check_error(rc, path);
    if (rc == GMF_OK) {
        for (size_t i = 0; i < ndim; i++)
            count *= shape[i];
        /* the payload was read from the file: it cannot be larger than the input */
        if (ndim > 8 || count > size / 8) abort();
        volatile double sink = 0;
        for (size_t i = 0; i < count; i++)
            sink += a[i]; /* touch every element (ASan checks the bounds) */
        (void)sink;
        free(a);
    }
    return 0;
}
