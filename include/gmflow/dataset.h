/* gmflow/dataset.h -- a classification data set in memory: MNIST-style IDX image and label
 * files (gmflow/idx.h) loaded as standardized float rows or in the compact byte form, one set or
 * several on threads, and where a data set's directory is (prefix gmf_dataset).
 *
 * Every image is standardized to zero mean and unit sample standard deviation (Section 5 of the
 * paper; a constant image becomes zeros).  The float form holds the rows; the compact form holds
 * the bytes and each image's (mean, 1/sd), and gmf_dataset_row gives bitwise the same floats.
 * The trainer (gmflow/train.h) takes either form.
 */
#ifndef GMFLOW_DATASET_H
#define GMFLOW_DATASET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A classification data set in memory: n samples of dimension d (float, row-major), labels. */
typedef struct gmf_dataset {
    size_t n, d;
    float *x;       /* n x d */
    uint8_t *label; /* n, values 0..nclass-1 */
    size_t nclass;
    /* Compact form (gmf_dataset_load_u8): x is NULL; the raw pixels px (n x d bytes) and each
     * image's mean and 1/sd in scale[2 i], scale[2 i + 1]; gmf_dataset_row gives row i as the
     * same floats gmf_dataset_load would hold (bitwise). */
    uint8_t *px;
    double *scale;
} gmf_dataset;

/* Load "<dir>/<prefix>-images-idx3-ubyte[.gz]" and the matching labels (prefix "train" or
 * "t10k"), check that the counts match and labels are < 10, keep the first `limit` samples
 * (0 = all), and normalize every image to zero mean and unit standard deviation (Section 5 of
 * the paper; a constant image becomes all zeros). */
int gmf_dataset_load(const char *dir, const char *prefix, size_t limit, gmf_dataset *out);
void gmf_dataset_free(gmf_dataset *ds);

/* The per-image normalization gmf_dataset_load applies: dst[i] = (src[i] - mean) / sd for each of
 * the n images of d pixels, with the sample standard deviation sd = sqrt(sum (x - mean)^2 /
 * (d - 1)) -- PyTorch's x.std() default, the likely convention of the paper's PyTorch code -- so
 * each row has mean 0 and squared norm d - 1.  Constant rows become zeros.  dst is n x d floats. */
void gmf_dataset_standardize_u8(float *dst, const uint8_t *src, size_t n, size_t d);

/* The compact load: as gmf_dataset_load, but the images stay bytes (4x less memory) with their
 * per-image (mean, 1/sd) (gmf_dataset_u8_stats); every consumer reads rows through
 * gmf_dataset_row, which yields bitwise the floats gmf_dataset_load stores. */
int gmf_dataset_load_u8(const char *dir, const char *prefix, size_t limit, gmf_dataset *out);

/* Load nsets sets of dir at once -- out[s] = set prefix[s] ("train", "t10k") with limit[s] (limit
 * NULL: all) as gmf_dataset_load_u8 (compact = 1) or gmf_dataset_load (compact = 0) give it,
 * bitwise -- on up to `threads` threads, no more than the CPUs the process may run on (its
 * affinity mask; 1: one set after the other): the files of the sets are read in parallel, then
 * the per-image standardization is split over the threads.  All or nothing: on failure every
 * out[s] is freed and the error (code and message) is that of the first set, in order, that
 * failed, whichever thread read it.  At most GMF_DATASET_SETS_MAX sets. */
#define GMF_DATASET_SETS_MAX 8
int gmf_dataset_load_sets(const char *dir, size_t nsets, const char *const *prefix,
                          const size_t *limit, int compact, int threads, gmf_dataset *out);

/* One image's mean and 1/sd (0 for a constant image) as gmf_dataset_standardize_u8 computes
 * them; pixel v then standardizes to gmf_dataset_u8_value(v, mean, inv). */
void gmf_dataset_u8_stats(const uint8_t *x, size_t d, double *mean, double *inv);

static inline float gmf_dataset_u8_value(uint8_t v, double mean, double inv) {
    return (float)(((double)v - mean) * inv);
}

/* dst[j] = gmf_dataset_u8_value(x[j], mean, inv) for j < d (AVX-512 when the build has it:
 * the same double operations 8 lanes at a time, so bitwise the same floats). */
void gmf_dataset_u8_row(float *dst, const uint8_t *x, size_t d, double mean, double inv);

/* dst[0..d) = row i of ds as floats (either form). */
void gmf_dataset_row(const gmf_dataset *ds, size_t i, float *dst);

/* The directory of data set `name` ("mnist", "fashion-mnist"): `given` when not NULL (used as
 * is, not checked), else the first existing directory of $GMFLOW_DATA/<name>,
 * ../shared/data/<name> (from the working directory) and <repo>/../shared/data/<name>, where
 * <repo> is two levels above the running executable (<repo>/<build>/gmflow).  Writes it to out
 * (size bytes) and returns 0; GMF_EIO when none exists (the message names what was tried),
 * GMF_EINVAL when the path does not fit in size. */
int gmf_dataset_find(const char *given, const char *name, char *out, size_t size);

#ifdef __cplusplus
}
#endif
#endif
