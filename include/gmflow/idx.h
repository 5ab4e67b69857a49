/* gmflow/idx.h -- MNIST-style IDX files, gzip-compressed or raw (prefix gmf_idx).
 *
 * Validates the magic number (2051 images, 2049 labels; big-endian, type byte 0x08 = uint8),
 * the dimensions, and that the payload has exactly the advertised size (a truncated or
 * over-long file is an error naming the file and the byte counts).  gzip is detected by its
 * magic bytes, so "x.gz" and "x" both work.  The classification data set read from a pair of
 * these files (images and labels) is gmflow/dataset.h's.
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

/* How .gz payloads are decompressed: "libdeflate" (the whole file at once; anything libdeflate
 * does not accept -- a corrupt or truncated stream, a size other than the header's -- is read
 * again by zlib, whose error is reported), or "zlib" (streaming inflate: a build without
 * libdeflate, or GMFLOW_IDX_INFLATE=zlib in the environment); "libdeflate-only" with
 * GMFLOW_IDX_INFLATE=libdeflate-only (no zlib retry; for tests).  Both give the same bytes. */
const char *gmf_idx_gz_inflater(void);

#ifdef __cplusplus
}
#endif
#endif
