/* dataset.c -- the in-memory classification data set (gmflow/dataset.h): MNIST-style IDX
 * image and label files (read by idx.c) checked against each other, kept as standardized float
 * rows or as bytes with per-image (mean, 1/sd), loaded one set or several sets on threads; and
 * where a data set's directory is.
 *
 * Per-image normalization (gmf_dataset_load): every image x in R^d (d = rows * cols, pixel
 * values as read, 0..255) becomes (x - mean(x)) / sd(x) with the SAMPLE standard deviation
 * sd(x) = sqrt(sum_j (x_j - mean)^2 / (d - 1)).  The paper (Section 5) says only "normalized to
 * have zero mean and unit standard deviation"; its code is PyTorch (not available to us), whose
 * per-tensor x.std() is the unbiased (n - 1) estimator, so that is what we match.  The population
 * convention would scale every image by sqrt(d / (d - 1)) = 1.00064 for d = 784 -- immaterial
 * for training.  With the sample convention every image has ||x||^2 = d - 1 (tests check it).
 * The 1/255 scaling of raw pixels cancels in the standardization, so it is not applied.  A
 * constant image (sd = 0) becomes all zeros.  Mean and sd are accumulated in double.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "gmflow/dataset.h"
#include "gmflow/common.h"
#include "gmflow/idx.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif
#include <sys/stat.h>
#include <unistd.h>

/* Images [0, nb) (nb <= 8) of x (d bytes each): mean[q], inv[q] exactly as gmf_dataset_u8_stats
 * computes them.  The sum of bytes is an integer below 2^53 whatever the order (so exact in
 * uint64 as in double); (x - mean)^2 depends on the byte value only (a 256-entry table per
 * image, same expression); each image's ss is summed in pixel order, as its own chain of
 * dependent additions -- the nb chains interleaved, so that they overlap in the pipeline. */
static void u8_stats8(const uint8_t *x, size_t nb, size_t d, double *mean, double *inv) {
    double c2[8][256], ss[8];
    const uint8_t *row[8];
    for (size_t q = 0; q < nb; q++) {
        row[q] = x + q * d;
        uint64_t isum = 0;
        for (size_t j0 = 0; j0 < d; j0 += 1u << 16) { /* 32-bit partial sums: 2^16 * 255 < 2^32 */
            const size_t j1 = d - j0 < (1u << 16) ? d : j0 + (1u << 16);
            uint32_t part = 0;
            for (size_t j = j0; j < j1; j++)
                part += row[q][j];
            isum += part;
        }
        const double m = d ? (double)isum / (double)d : 0.0;
        for (int v = 0; v < 256; v++) {
            const double c = v - m;
            c2[q][v] = c * c;
        }
        mean[q] = m;
        ss[q] = 0;
    }
    if (nb == 8) { /* eight chains in registers */
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
        for (size_t j = 0; j < d; j++) {
            s0 += c2[0][row[0][j]], s1 += c2[1][row[1][j]], s2 += c2[2][row[2][j]];
            s3 += c2[3][row[3][j]], s4 += c2[4][row[4][j]], s5 += c2[5][row[5][j]];
            s6 += c2[6][row[6][j]], s7 += c2[7][row[7][j]];
        }
        ss[0] = s0, ss[1] = s1, ss[2] = s2, ss[3] = s3, ss[4] = s4, ss[5] = s5, ss[6] = s6;
        ss[7] = s7;
    } else {
        for (size_t j = 0; j < d; j++)
            for (size_t q = 0; q < nb; q++)
                ss[q] += c2[q][row[q][j]];
    }
    for (size_t q = 0; q < nb; q++) {
        const double sd = d > 1 ? sqrt(ss[q] / (double)(d - 1)) : 0.0;
        inv[q] = sd > 0 ? 1.0 / sd : 0.0; /* constant image -> zeros */
    }
}

void gmf_dataset_u8_stats(const uint8_t *x, size_t d, double *mean, double *inv) {
    u8_stats8(x, 1, d, mean, inv);
}

#if defined(__AVX512F__) && defined(__AVX512DQ__)
/* Images [0, 8 NG) of x (d bytes each), as u8_stats8 computes them, bitwise: the same integer
 * sums for the means; then image q's ss in lane q % 8 of vector q / 8, its (v - mean)^2 formed
 * as the tables do ((double)v - mean, squared: exact conversions, one rounding each, no FMA) and
 * added in pixel order -- one chain per image, 8 NG chains in flight instead of eight, and no
 * table reads.  The bytes of 8 images at pixels j..j+7 come in one 64-bit gather (lane q: image
 * q's 8 bytes), pixel j + k is byte k of each lane. */
static inline __attribute__((always_inline)) void
u8_stats_simd(const uint8_t *x, size_t d, const int NG, double *mean, double *inv) {
    double ss[32];
    for (int q = 0; q < 8 * NG; q++) {
        const uint8_t *row = x + (size_t)q * d;
        uint64_t isum = 0;
        for (size_t j0 = 0; j0 < d; j0 += 1u << 16) { /* as u8_stats8 */
            const size_t j1 = d - j0 < (1u << 16) ? d : j0 + (1u << 16);
            uint32_t part = 0;
            for (size_t j = j0; j < j1; j++)
                part += row[j];
            isum += part;
        }
        mean[q] = d ? (double)isum / (double)d : 0.0;
    }
    const long long sd1 = (long long)d;
    const __m512i vidx =
        _mm512_set_epi64(7 * sd1, 6 * sd1, 5 * sd1, 4 * sd1, 3 * sd1, 2 * sd1, sd1, 0);
    const __m512i ff = _mm512_set1_epi64(0xff);
    __m512d m[4], acc[4];
    for (int g = 0; g < NG; g++)
        m[g] = _mm512_loadu_pd(mean + 8 * g), acc[g] = _mm512_setzero_pd();
    size_t j = 0;
    for (; j + 8 <= d; j += 8) {
        __m512i v[4];
        for (int g = 0; g < NG; g++)
            v[g] = _mm512_i64gather_epi64(vidx, (const void *)(x + (size_t)8 * g * d + j), 1);
        for (int k = 0; k < 8; k++)
            for (int g = 0; g < NG; g++) {
                const __m512i b = _mm512_and_si512(_mm512_srli_epi64(v[g], 8 * k), ff);
                const __m512d c = _mm512_sub_pd(_mm512_cvtepi64_pd(b), m[g]);
                acc[g] = _mm512_add_pd(acc[g], _mm512_mul_pd(c, c));
            }
    }
    for (; j < d; j++) /* the last d % 8 pixels */
        for (int g = 0; g < NG; g++) {
            const uint8_t *p = x + (size_t)8 * g * d + j;
            const __m512i b = _mm512_set_epi64(p[7 * d], p[6 * d], p[5 * d], p[4 * d], p[3 * d],
                                               p[2 * d], p[d], p[0]);
            const __m512d c = _mm512_sub_pd(_mm512_cvtepi64_pd(b), m[g]);
            acc[g] = _mm512_add_pd(acc[g], _mm512_mul_pd(c, c));
        }
    for (int g = 0; g < NG; g++)
        _mm512_storeu_pd(ss + 8 * g, acc[g]);
    for (int q = 0; q < 8 * NG; q++) {
        const double sd = d > 1 ? sqrt(ss[q] / (double)(d - 1)) : 0.0;
        inv[q] = sd > 0 ? 1.0 / sd : 0.0;
    }
}
#endif

/* Images [0, nb) (nb <= 32) of x: mean[q], inv[q] as u8_stats8 gives them. */
static void u8_stats32(const uint8_t *x, size_t nb, size_t d, double *mean, double *inv) {
    size_t q = 0;
#if defined(__AVX512F__) && defined(__AVX512DQ__)
    if (nb == 32) {
        u8_stats_simd(x, d, 4, mean, inv);
        return;
    }
    for (; q + 8 <= nb; q += 8)
        u8_stats_simd(x + q * d, d, 1, mean + q, inv + q);
#endif
    for (; q < nb; q += 8)
        u8_stats8(x + q * d, nb - q < 8 ? nb - q : 8, d, mean + q, inv + q);
}

/* scale[2 i], scale[2 i + 1] = mean and 1/sd of image i of n, 32 at a time. */
static void u8_stats_all(const uint8_t *px, size_t n, size_t d, double *scale) {
    for (size_t i = 0; i < n; i += 32) {
        const size_t nb = n - i < 32 ? n - i : 32;
        double mean[32], inv[32];
        u8_stats32(px + i * d, nb, d, mean, inv);
        for (size_t q = 0; q < nb; q++)
            scale[2 * (i + q)] = mean[q], scale[2 * (i + q) + 1] = inv[q];
    }
}

void gmf_dataset_standardize_u8(float *dst, const uint8_t *src, size_t n, size_t d) {
    /* Bitwise the same as the direct double formula: the outputs depend on the byte value only
     * (a 256-entry table of gmf_dataset_u8_value). */
    float out[256];
    for (size_t i0 = 0; i0 < n; i0 += 32) {
        const size_t nb = n - i0 < 32 ? n - i0 : 32;
        double mean[32], inv[32];
        u8_stats32(src + i0 * d, nb, d, mean, inv);
        for (size_t q = 0; q < nb; q++) {
            const uint8_t *x = src + (i0 + q) * d;
            float *y = dst + (i0 + q) * d;
            for (int v = 0; v < 256; v++)
                out[v] = gmf_dataset_u8_value((uint8_t)v, mean[q], inv[q]);
            for (size_t j = 0; j < d; j++)
                y[j] = out[x[j]];
        }
    }
}

void gmf_dataset_u8_row(float *dst, const uint8_t *x, size_t d, double mean, double inv) {
    size_t j = 0;
#ifdef __AVX512F__
    /* 16 bytes -> 16 int32 -> two halves of 8 doubles: (v - mean) * inv -> float, as below;
     * the compiler's own vectorization of the loop below runs at about half this speed (it
     * widens through 128-bit halves on port 5) */
    const __m512d m = _mm512_set1_pd(mean), iv = _mm512_set1_pd(inv);
    for (; j + 16 <= d; j += 16) {
        const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(x + j)));
        const __m512d lo = _mm512_cvtepi32_pd(_mm512_castsi512_si256(v));
        const __m512d hi = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(v, 1));
        const __m256 a = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_sub_pd(lo, m), iv));
        const __m256 b = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_sub_pd(hi, m), iv));
        _mm256_storeu_ps(dst + j, a);
        _mm256_storeu_ps(dst + j + 8, b);
    }
#endif
    for (; j < d; j++)
        dst[j] = gmf_dataset_u8_value(x[j], mean, inv);
}

void gmf_dataset_row(const gmf_dataset *ds, size_t i, float *dst) {
    const size_t d = ds->d;
    if (ds->x) {
        memcpy(dst, ds->x + i * d, d * sizeof(float));
        return;
    }
    gmf_dataset_u8_row(dst, ds->px + i * d, d, ds->scale[2 * i], ds->scale[2 * i + 1]);
}

/* Try "<dir>/<name>.gz", then "<dir>/<name>".  On success *path is a malloc'ed path that exists.
 */
static int find_file(const char *dir, const char *name, char **path) {
    *path = NULL;
    size_t len = strlen(dir) + strlen(name) + 8;
    char *gz = malloc(len), *raw = malloc(len);
    if (!gz || !raw) {
        free(gz);
        free(raw);
        return gmf_error(GMF_ENOMEM, "out of memory for a file name");
    }
    snprintf(gz, len, "%s/%s.gz", dir, name);
    snprintf(raw, len, "%s/%s", dir, name);
    struct stat st;
    if (stat(gz, &st) == 0) {
        *path = gz;
        free(raw);
        return GMF_OK;
    }
    if (stat(raw, &st) == 0) {
        *path = raw;
        free(gz);
        return GMF_OK;
    }
    int rc = gmf_error(GMF_EIO, "%s: not found (nor %s): %s", gz, raw, strerror(errno));
    free(gz);
    free(raw);
    return rc;
}

/* One data set being loaded, in two phases: dataset_read (the files, their checks, the output
 * buffers), then dataset_fill over any ranges of images (each image's statistics, or its float
 * row, depend on that image alone, so ranges may go to different threads in any order and give
 * bitwise the same set). */
typedef struct ds_job {
    const char *dir, *prefix;
    size_t limit;
    int compact;
    gmf_dataset *out;
    uint8_t *src; /* the bytes dataset_fill reads: out->px, or (float form) the file's pixels */
    int rc;       /* dataset_read's result; its message in msg (threads: gmf_errmsg is theirs) */
    char msg[1024];
} ds_job;

/* The float form, or (compact) the bytes with per-image (mean, 1/sd): the pixel buffer becomes
 * ds->px itself (no copy).  On failure *out is freed and cleared. */
static int dataset_read(ds_job *j) {
    const char *dir = j->dir, *prefix = j->prefix;
    const size_t limit = j->limit;
    const int compact = j->compact;
    gmf_dataset *out = j->out;
    j->src = NULL;
    if (!out) return gmf_error(GMF_EINVAL, "gmf_dataset_load: null output");
    memset(out, 0, sizeof *out);
    if (!dir || !prefix) return gmf_error(GMF_EINVAL, "gmf_dataset_load: null directory or prefix");

    char name[256];
    char *ipath = NULL, *lpath = NULL;
    gmf_idx_images im = {0};
    uint8_t *lab = NULL;
    size_t nlab = 0;
    int rc;

    if ((size_t)snprintf(name, sizeof name, "%s-images-idx3-ubyte", prefix) >= sizeof name) {
        rc = gmf_error(GMF_EINVAL, "gmf_dataset_load: prefix too long");
        goto done;
    }
    if ((rc = find_file(dir, name, &ipath))) goto done;
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", prefix);
    if ((rc = find_file(dir, name, &lpath))) goto done;
    if ((rc = gmf_idx_read_images(ipath, &im))) goto done;
    if ((rc = gmf_idx_read_labels(lpath, &nlab, &lab))) goto done;
    if (im.count != nlab) {
        rc = gmf_error(GMF_EFORMAT, "%s has %zu images but %s has %zu labels", ipath, im.count,
                       lpath, nlab);
        goto done;
    }
    if (im.count == 0) {
        rc = gmf_error(GMF_EFORMAT, "%s: no images", ipath);
        goto done;
    }
    for (size_t i = 0; i < nlab; i++)
        if (lab[i] >= 10) {
            rc = gmf_error(GMF_EFORMAT, "%s: label %u of sample %zu is out of range (0..9)", lpath,
                           lab[i], i);
            goto done;
        }

    const size_t n = (limit && limit < im.count) ? limit : im.count;
    const size_t d = im.rows * im.cols; /* <= count*rows*cols bytes read: no overflow */
    size_t xbytes;
    if (gmf_mul_size3(n, d, sizeof(float), &xbytes)) {
        rc = gmf_error(GMF_ENOMEM, "%s: data set too large", ipath);
        goto done;
    }
    out->label = malloc(n);
    if (compact) {
        out->scale = malloc(2 * n * sizeof(double));
        if (out->scale && n < im.count) { /* keep the first n images only */
            uint8_t *px = realloc(im.pixels, n * d);
            if (px) im.pixels = px;
        }
        out->px = im.pixels;
        im.pixels = NULL;
    } else {
        out->x = malloc(xbytes);
    }
    if (!(compact ? out->scale != NULL : out->x != NULL) || !out->label) {
        rc = gmf_error(GMF_ENOMEM, "out of memory for %zu x %zu samples of %s", n, d, ipath);
        goto done;
    }
    j->src = compact ? out->px : im.pixels;
    im.pixels = NULL; /* the float form's source: dataset_done frees it */
    memcpy(out->label, lab, n);
    out->n = n;
    out->d = d;
    out->nclass = 10;
    rc = GMF_OK;
done:
    if (rc) gmf_dataset_free(out);
    gmf_idx_images_free(&im);
    free(lab);
    free(ipath);
    free(lpath);
    return rc;
}

/* Images [i0, i1) of a set dataset_read has prepared. */
static void dataset_fill(const ds_job *j, size_t i0, size_t i1) {
    const gmf_dataset *o = j->out;
    const size_t d = o->d;
    if (j->compact)
        u8_stats_all(j->src + i0 * d, i1 - i0, d, o->scale + 2 * i0);
    else
        gmf_dataset_standardize_u8(o->x + i0 * d, j->src + i0 * d, i1 - i0, d);
}

static void dataset_done(ds_job *j) {
    if (!j->compact) free(j->src);
    j->src = NULL;
}

static int dataset_load(const char *dir, const char *prefix, size_t limit, int compact,
                        gmf_dataset *out) {
    ds_job j = {.dir = dir, .prefix = prefix, .limit = limit, .compact = compact, .out = out};
    int rc = dataset_read(&j);
    if (rc) return rc;
    dataset_fill(&j, 0, out->n);
    dataset_done(&j);
    return GMF_OK;
}

int gmf_dataset_load(const char *dir, const char *prefix, size_t limit, gmf_dataset *out) {
    return dataset_load(dir, prefix, limit, 0, out);
}

int gmf_dataset_load_u8(const char *dir, const char *prefix, size_t limit, gmf_dataset *out) {
    return dataset_load(dir, prefix, limit, 1, out);
}

/* ---- several sets at once, in threads ----------------------------------------------------- */

enum { SETS_CHUNK = 2048 }; /* images per dataset_fill task */

typedef struct sets_ctx {
    ds_job *job;
    size_t nsets;
    atomic_size_t next; /* the next task: a set to read (phase 1), a chunk to fill (phase 2) */
    int phase;
} sets_ctx;

static void *sets_worker(void *arg) {
    sets_ctx *c = arg;
    for (;;) {
        size_t t = atomic_fetch_add(&c->next, 1);
        if (c->phase == 1) {
            if (t >= c->nsets) break;
            ds_job *j = &c->job[t];
            j->rc = dataset_read(j);
            if (j->rc) snprintf(j->msg, sizeof j->msg, "%s", gmf_errmsg());
            continue;
        }
        size_t s = 0; /* chunk t: the set it falls in */
        for (; s < c->nsets; s++) {
            const size_t k = (c->job[s].out->n + SETS_CHUNK - 1) / SETS_CHUNK;
            if (t < k) break;
            t -= k;
        }
        if (s == c->nsets) break;
        const size_t i0 = t * SETS_CHUNK, n = c->job[s].out->n;
        dataset_fill(&c->job[s], i0, n - i0 < SETS_CHUNK ? n : i0 + SETS_CHUNK);
    }
    return NULL;
}

/* Run the phase on nth threads (the caller's and nth - 1 more; a thread that cannot be started
 * leaves its share to the others). */
static void sets_run(sets_ctx *c, int phase, int nth) {
    pthread_t th[GMF_DATASET_SETS_MAX];
    int started = 0;
    c->phase = phase;
    atomic_store(&c->next, 0);
    for (int t = 1; t < nth; t++)
        if (pthread_create(&th[started], NULL, sets_worker, c) == 0) started++;
    sets_worker(c);
    for (int t = 0; t < started; t++)
        pthread_join(th[t], NULL);
}

/* The CPUs this process may run on (its affinity mask; taskset), at least 1. */
static int allowed_cpus(void) {
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
#endif
    return 1;
}

int gmf_dataset_load_sets(const char *dir, size_t nsets, const char *const *prefix,
                          const size_t *limit, int compact, int threads, gmf_dataset *out) {
    if (!out || (nsets && !prefix) || nsets > GMF_DATASET_SETS_MAX)
        return gmf_error(GMF_EINVAL,
                         "gmf_dataset_load_sets: null output or prefixes, or more "
                         "than %d sets",
                         GMF_DATASET_SETS_MAX);
    ds_job job[GMF_DATASET_SETS_MAX];
    for (size_t s = 0; s < nsets; s++)
        job[s] = (ds_job){.dir = dir,
                          .prefix = prefix[s],
                          .limit = limit ? limit[s] : 0,
                          .compact = compact,
                          .out = &out[s]};
    int nth = threads < 1 ? 1 : threads;
    const int cpus = allowed_cpus();
    if (nth > cpus) nth = cpus;
    if (nth > GMF_DATASET_SETS_MAX) nth = GMF_DATASET_SETS_MAX;
    sets_ctx c = {.job = job, .nsets = nsets};
    sets_run(&c, 1, nth > (int)nsets ? (int)nsets : nth);
    for (size_t s = 0; s < nsets; s++) /* the first failing set in order, whatever the timing */
        if (job[s].rc) {
            const int rc = job[s].rc;
            for (size_t k = 0; k < nsets; k++) {
                dataset_done(&job[k]);
                gmf_dataset_free(&out[k]);
            }
            return gmf_error(rc, "%s", job[s].msg);
        }
    sets_run(&c, 2, nth);
    for (size_t s = 0; s < nsets; s++)
        dataset_done(&job[s]);
    return GMF_OK;
}

void gmf_dataset_free(gmf_dataset *ds) {
    if (!ds) return;
    free(ds->x);
    free(ds->label);
    free(ds->px);
    free(ds->scale);
    memset(ds, 0, sizeof *ds);
}

/* ---- where the data sets are ---------------------------------------------------------------- */

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* out = the formatted path; 0, or GMF_EINVAL (recorded) when it does not fit */
static int put_path(char *out, size_t size, const char *fmt, const char *a, const char *b) {
    const int n = snprintf(out, size, fmt, a, b);
    if (n < 0 || (size_t)n >= size)
        return gmf_error(GMF_EINVAL, "data directory: the path for %s is longer than %zu bytes", b,
                         size ? size - 1 : 0);
    return 0;
}

int gmf_dataset_find(const char *given, const char *name, char *out, size_t size) {
    if (!out || !size || !name || !*name)
        return gmf_error(GMF_EINVAL, "gmf_dataset_find: no data set name or output buffer");
    if (given) return put_path(out, size, "%s%s", given, "");
    const char *env = getenv("GMFLOW_DATA");
    int rc;
    if (env && *env) {
        if ((rc = put_path(out, size, "%s/%s", env, name))) return rc;
        if (is_dir(out)) return 0;
    }
    if ((rc = put_path(out, size, "%s/%s", "../shared/data", name))) return rc;
    if (is_dir(out)) return 0;
    char exe[4096];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        for (int up = 0; up < 2; up++) { /* strip the executable's name, then its build folder */
            char *slash = strrchr(exe, '/');
            if (slash) *slash = '\0';
        }
        if ((rc = put_path(out, size, "%s/../shared/data/%s", exe, name))) return rc;
        if (is_dir(out)) return 0;
    }
    out[0] = '\0';
    return gmf_error(GMF_EIO,
                     "cannot find the %s data: give its directory (tried $GMFLOW_DATA/%s%s, "
                     "../shared/data/%s and ../shared/data/%s beside the executable's build "
                     "folder)",
                     name, name, env && *env ? "" : " (GMFLOW_DATA unset)", name, name);
}
