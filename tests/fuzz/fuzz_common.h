/* fuzz_common.h -- shared by the libFuzzer targets in tests/fuzz/ (one per reader).
 *
 * Every target writes the input to a file and calls a reader on it, then checks the contract that
 * issue 9 asks of every reader:
 *   - no crash, no sanitizer report (libFuzzer with ASan+UBSan finds those);
 *   - a failure names the file in its message (fz_check_error aborts otherwise);
 *   - a small input never needs a large allocation: GMF_ENOMEM is a finding (fz_check_error
 *     aborts), and libFuzzer's -malloc_limit_mb / the replay driver's address-space limit make an
 *     attempt at a large allocation fail.
 * GMFLOW_FUZZ_VERBOSE=1 in the environment prints each reader's verdict (for the replay).
 * The same sources build two ways: with clang -fsanitize=fuzzer (GMFLOW_FUZZ=ON, tools/fuzz.sh),
 * and with replay.c as main for the ctest regression run over tests/fuzz/corpus/<target>/.
 */
#ifndef GMFLOW_FUZZ_COMMON_H
#define GMFLOW_FUZZ_COMMON_H

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gmflow/common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fz_dir_[512];

/* Remove the private directory and what the targets wrote into it (atexit). */
static void fz_cleanup(void) {
    DIR *d = opendir(fz_dir_);
    struct dirent *e;
    char p[1024];
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", fz_dir_, e->d_name);
            remove(p);
        }
    if (d) closedir(d);
    rmdir(fz_dir_);
}

/* A private directory for this process (created once, under $TMPDIR or /tmp; removed at exit). */
static inline const char *fz_dir(void) {
    char *dir = fz_dir_;
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof fz_dir_, "%s/gmflow_fuzz.XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            abort();
        }
        atexit(fz_cleanup);
    }
    return dir;
}

/* Write bytes to fz_dir()/name; returns the path (static storage, one per name slot). */
static inline const char *fz_write(const char *name, const void *data, size_t size) {
    static char paths[4][640];
    static int slot;
    char *p = paths[slot = (slot + 1) % 4];
    snprintf(p, sizeof paths[0], "%s/%s", fz_dir(), name);
    FILE *fp = fopen(p, "wb");
    if (!fp || (size && fwrite(data, 1, size, fp) != size) || fclose(fp) != 0) {
        perror(p);
        abort();
    }
    return p;
}

/* The reader contract on failure: the message names `name` (a path or directory) and the
 * failure is not "out of memory" (inputs here are small). */
static inline void fz_check_error(int rc, const char *name) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("GMFLOW_FUZZ_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "    rc %d: %s\n", rc, rc ? gmf_errmsg() : "(accepted)");
    if (rc == GMF_OK) return;
    if (rc == GMF_ENOMEM) {
        fprintf(stderr, "FUZZ FINDING: out of memory on a small input: %s\n", gmf_errmsg());
        abort();
    }
    if (!strstr(gmf_errmsg(), name)) {
        fprintf(stderr, "FUZZ FINDING: error message does not name %s: %s\n", name, gmf_errmsg());
        abort();
    }
}

#endif
