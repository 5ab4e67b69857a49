/* gmflow/idx.h -- MNIST-style IDX files, gzip-compressed or raw (prefix gmf_idx).
 *
 * Validates the magic number (2051 images, 2049 labels; big-endian, type byte 0x08 = uint8),
 * the dimensions, and that the payload has exactly the advertised size (a truncated or
 * over-long file is an error naming the file and the byte counts).  gzip is detected by its
 * magic bytes, so "x.gz" and "x" both work.
 */
#ifndef GMFLOW_IDX_H
#define GMFLOW_IDX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gmf_idx_images {
    size_t count, rows, cols; /* count images of rows x cols pixels */
    uint8_t *pixels;          /* count x rows x cols */
} gmf_idx_images;

int gmf_idx_read_images(const char *path, gmf_idx_images *out);
int gmf_idx_read_labels(const char *path, size_t *count, uint8_t **labels);
void gmf_idx_images_free(gmf_idx_images *im);

/* A classification data set in memory: n samples of dimension d (float, row-major), labels. */
typedef struct gmf_dataset {
    size_t n, d;
    float *x;       /* n x d */
    uint8_t *label; /* n, values 0..nclass-1 */
    size_t nclass;
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

#ifdef __cplusplus
}
#endif
#endif
