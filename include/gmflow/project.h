/* gmflow/project.h -- a GM layer's trajectory on the top-2 principal plane of its mixture
 * marginalized over beta (the paper's Figure 4; prefix gmf_project).
 *
 * The mixture rho_beta = (1/K) sum_k N(mu_k, Sigma_k) has covariance (law of total covariance)
 *     S = (1/K) sum_k (Sigma_k + (mu_k - mbar)(mu_k - mbar)^T),   mbar = (1/K) sum_k mu_k.
 * Its top two eigenvectors P (2 x d, rows descending by eigenvalue) span the plane; each row's
 * sign is fixed so that its entry of largest magnitude is positive (independent of LAPACK's
 * choice).  A component projects to the mean P mu_k and the covariance P Sigma_k P^T; an FC
 * neuron beta_j to P beta_j.
 *
 * Snapshots are the files `gmflow train --snapshot-every N` writes (gmf_train_write_snapshot):
 * epoch_NNNN_mu.npy (K x d) with epoch_NNNN_sigma.npy (K x d, diagonal layer) or
 * epoch_NNNN_C.npy (K x d x d, Sigma_k = C_k C_k^T, full layer); epoch_NNNN_beta.npy (m x d) for
 * an FC network.  Every size read from a file is overflow-checked and K = 0 or d = 0 is refused
 * with a message naming the file.
 */
#ifndef GMFLOW_PROJECT_H
#define GMFLOW_PROJECT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One GM snapshot: means (K x d) and sigma (K x d, full = 0) or C (K x d x d, full = 1). */
typedef struct gmf_project_snap {
    size_t K, d;
    int full;
    double *mu, *sig;
} gmf_project_snap;

/* Read mu_path and sig_path (sigma or C as `full` says) into s; K and d, when non-zero, are the
 * shapes the files must have (0: take them from mu_path).  Entries must be finite.  On failure
 * s holds nothing to free and the message names the file. */
int gmf_project_snap_read(gmf_project_snap *s, const char *mu_path, const char *sig_path, int full,
                          size_t K, size_t d);
void gmf_project_snap_free(gmf_project_snap *s);

/* An array of shape (rows, cols) read from an .npy (rows = 0: any number >= 1), finite. */
int gmf_project_read_matrix(const char *path, size_t cols, double **out, size_t *rows);

/* The mixture covariance S (d x d row-major; both triangles filled) and its trace. */
int gmf_project_mixture_cov(double *S, double *trace, const gmf_project_snap *s);

/* Top-2 eigenpairs of the symmetric d x d matrix S (overwritten), d >= 2: P (2 x d) with the
 * sign convention above, lam[0] >= lam[1]. */
int gmf_project_top2(double *P, double lam[2], double *S, size_t d);

/* The plane of a snapshot: P (2 x d), lam[2], trace of S (gmf_project_mixture_cov + top2). */
int gmf_project_plane(double *P, double lam[2], double *trace, const gmf_project_snap *s);

/* Projected components: out (K x 5) rows (mx, my, cxx, cxy, cyy). */
int gmf_project_gm(double *out, const gmf_project_snap *s, const double *P);

/* Projected points: out (m x 2) = B P^T for B (m x d). */
void gmf_project_points(double *out, const double *B, size_t m, size_t d, const double *P);

/* The snapshot files of one parameter group in a directory, sorted by epoch.  A file belongs to
 * the list when its name is epoch_<digits>_<group>.npy (digits: 1 to 19 decimal digits; the
 * trainer writes at least four, zero-padded).  Two names for the same epoch (epoch_1_mu.npy and
 * epoch_0001_mu.npy) are an error naming both.  Other names starting with "epoch_" and ending
 * in "_<group>.npy" are skipped: *nskipped counts them and `skipped` (may be NULL) receives the
 * first one's name. */
typedef struct gmf_project_epoch {
    size_t epoch;
    char name[256]; /* file name within the directory */
} gmf_project_epoch;
int gmf_project_list_epochs(gmf_project_epoch **list, size_t *n, size_t *nskipped, char *skipped,
                            size_t skipped_size, const char *dir, const char *group);

/* The name of the group `group` beside the snapshot file `name` of group `from`:
 * ("epoch_0003_mu.npy", "mu", "sigma") -> "epoch_0003_sigma.npy". */
int gmf_project_sibling(char *out, size_t size, const char *name, const char *from,
                        const char *group);

#ifdef __cplusplus
}
#endif
#endif
