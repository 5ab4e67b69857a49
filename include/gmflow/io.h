/* gmflow/io.h -- files at the edges: CSV data, NPY arrays, JSON states (prefix gmf_io).
 *
 * Every writer is atomic: it writes `path.tmp.<pid>` and renames it over `path` only once the
 * whole file is written and flushed, so a failure never leaves a partial file under `path`.
 * Every reader validates what it reads and names the file, line and column in its errors.
 * Formats are documented in docs/FORMATS.md.
 */
#ifndef GMFLOW_IO_H
#define GMFLOW_IO_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Regression data: one sample per line, x_1,...,x_d,y (comma-separated, all finite).  An optional
 * first line that does not parse as numbers is a header.  Blank lines and lines starting with '#'
 * are skipped.  A line may hold at most GMF_IO_CSV_MAX_LINE bytes (longer: an error naming the
 * file and line); a field has no length limit of its own.  A read error or an allocation failure
 * is reported as such (never taken for the end of the file).  Allocates *X (n x d) and *y (n). */
#define GMF_IO_CSV_MAX_LINE (1 << 20) /* bytes per CSV line, '\n' included (1 MiB) */
int gmf_io_read_csv(const char *path, size_t *n, size_t *d, double **X, double **y);
int gmf_io_write_csv_data(const char *path, size_t n, size_t d, const double *X, const double *y);

/* Atomic file writing: open a temporary beside `path`; commit renames it into place (after
 * fflush/fsync and checking for write errors); abort removes it. */
typedef struct gmf_io_file {
    FILE *fp;
    char path[4096];
    char tmp[4096];
} gmf_io_file;
int gmf_io_open(gmf_io_file *f, const char *path);
int gmf_io_commit(gmf_io_file *f);
void gmf_io_abort(gmf_io_file *f);

/* NPY (format 1.0, little-endian '<f8', C order). */
int gmf_io_write_npy(const char *path, const double *data, size_t ndim, const size_t *shape);

/* Write s to fp as a JSON string literal (quotes, backslashes and control characters escaped);
 * the run.json writers of flow and train share it. */
void gmf_io_json_string(FILE *fp, const char *s);
/* Reads a '<f8' C-order array; allocates *data; shape has room for 8 dims. */
int gmf_io_read_npy(const char *path, double **data, size_t *ndim, size_t shape[8]);
/* The same, reading only rows row0 .. row0 + nrows - 1 of the first dimension (one seek, so an
 * MPI rank reads only its own block; docs/SCALE.md).  shape is the whole file's shape; *data
 * holds nrows x shape[1] x ... values (allocated even when nrows = 0). */
int gmf_io_read_npy_rows(const char *path, size_t row0, size_t nrows, double **data, size_t *ndim,
                         size_t shape[8]);
/* Regression data as one (n, d + 1) '<f8' array, rows x_1..x_d, y (docs/FORMATS.md): reads only
 * the block of rows [*i0, *i0 + *nloc) that `rank` of `size` owns (gmf_par_block; rank 0 of 1
 * reads all), split into X (nloc x d) and y (nloc), allocated.  *n, *d: the whole file's. */
int gmf_io_read_xy_npy(const char *path, int rank, int size, size_t *n, size_t *d, size_t *i0,
                       size_t *nloc, double **X, double **y);

/* Mixture state (JSON, docs/FORMATS.md):
 *   {"format": "gmflow-state", "version": 1, "form": "bw" | "euclid", "t": ..., "K": ..,
 *    "d": .., "mu": [[..D..] x K], "Sigma": [[[D x D]] x K], "C": [[[D x D]] x K] (euclid only)}
 * Sigma is always present (for euclid it is C C^T).  Reading accepts either form: with "C" the
 * caller gets C too (else *C = NULL).  Numbers are written with 17 significant digits, so a
 * state round-trips exactly.  Optional "w": [..K..], the mixture weights of a
 * Wasserstein-Fisher-Rao run (docs/WFR.md): finite, >= 0 (to -1e-12) and summing to 1 within 1e-12;
 * a file without it reads with w = NULL (equal weights 1/K); written when w != NULL. */
typedef struct gmf_io_state {
    size_t K, d, D;
    double t;
    int euclid;    /* 1 if C is present */
    double *mu;    /* K x D */
    double *Sigma; /* K x D x D */
    double *C;     /* K x D x D or NULL */
    double *w;     /* K mixture weights, or NULL (equal weights) */
} gmf_io_state;
int gmf_io_write_state(const char *path, const gmf_io_state *s);
int gmf_io_read_state(const char *path, gmf_io_state *s);
void gmf_io_state_free(gmf_io_state *s);

#ifdef __cplusplus
}
#endif
#endif
