/* fuzz_state.c -- libFuzzer target: gmf_io_read_state (JSON mixture state) on arbitrary bytes. */
#define _POSIX_C_SOURCE 200809L
#include "fuzz_common.h"
#include "gmflow/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_write("state.json", data, size);
    gmf_io_state s;
    int rc = gmf_io_read_state(path, &s);
    fz_check_error(rc, path);
    if (rc == GMF_OK) {
        if (s.K < 1 || s.d < 1 || s.D != s.d + 1 || !gmf_all_finite(s.mu, s.K * s.D)) abort();
        gmf_io_state_free(&s);
    }
    return 0;
}
