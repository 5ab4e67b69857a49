/* replay.c -- main() for the fuzz targets in ordinary builds: runs LLVMFuzzerTestOneInput over
 * every file of the directories (or files) named on the command line, so the regression corpus
 * tests/fuzz/corpus/<target>/ is checked by ctest on every build without clang.
 *
 * Unless built with a sanitizer (which reserves a huge address space), the address space is
 * limited to what the process already maps plus 256 MB first: a reader that tried to allocate
 * for a header's declared size instead of the bytes present would get GMF_ENOMEM, which the
 * targets treat as a finding (abort).
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#if defined(__SANITIZE_ADDRESS__)
#define FZ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FZ_ASAN 1
#endif
#endif

static void limit_address_space(size_t extra_mb) {
#ifndef FZ_ASAN
    FILE *fp = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (!fp || fscanf(fp, "%lu", &pages) != 1) {
        if (fp) fclose(fp);
        return;
    }
    fclose(fp);
    long psz = sysconf(_SC_PAGESIZE);
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = (rlim_t)pages * (rlim_t)psz + (rlim_t)extra_mb * 1024 * 1024;
    if (setrlimit(RLIMIT_AS, &rl) != 0) perror("setrlimit");
    printf("replay: address space limited to the current %lu MB + %zu MB\n",
           (unsigned long)((size_t)pages * (size_t)psz >> 20), extra_mb);
#else
    (void)extra_mb;
    printf("replay: sanitizer build, no address-space limit\n");
#endif
}

static int run_file(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        return 1;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = malloc(cap);
    for (;;) {
        if (!b) {
            fprintf(stderr, "replay: out of memory reading %s\n", path);
            fclose(fp);
            return 1;
        }
        n += fread(b + n, 1, cap - n, fp);
        if (n < cap) break;
        uint8_t *nb = realloc(b, cap *= 2);
        if (!nb) free(b);
        b = nb;
    }
    fclose(fp);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    LLVMFuzzerTestOneInput(b, n);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("  %-60s %7zu bytes %8.3f s\n", path, n, s);
    free(b);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    limit_address_space(256);
    int bad = 0;
    size_t count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            bad |= run_file(argv[i]), count++;
            continue;
        }
        struct dirent **ents;
        int ne = scandir(argv[i], &ents, NULL, alphasort);
        if (ne < 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        for (int k = 0; k < ne; k++) {
            char p[4096];
            if (ents[k]->d_name[0] != '.') {
                snprintf(p, sizeof p, "%s/%s", argv[i], ents[k]->d_name);
                bad |= run_file(p), count++;
            }
            free(ents[k]);
        }
        free(ents);
    }
    printf("replay: %zu inputs, %s\n", count, bad ? "FAILED" : "all passed the reader contract");
    return bad;
}
