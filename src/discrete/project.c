/* project.c -- the principal plane of a GM layer's mixture and projected snapshots (project.h). */
#define _POSIX_C_SOURCE 200809L

#include "gmflow/project.h"

#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <lapacke.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/io.h"

/* n doubles, with the product checked first; NULL (and a message naming `what`) on failure. */
static double *alloc_doubles(size_t a, size_t b, const char *what) {
    size_t n, bytes;
    if (gmf_mul_size(a, b, &n) || gmf_mul_size(n, sizeof(double), &bytes)) {
        gmf_error(GMF_EINVAL, "%s: %zu x %zu doubles overflow the address space", what, a, b);
        return NULL;
    }
    return gmf_calloc(n ? n : 1, sizeof(double), what);
}

/* ---- reading ------------------------------------------------------------------------------- */

/* Read path and check: ndim (2 or 3), sh[0] == rows (if rows), sh[1] == cols (if cols), square
 * trailing dims for ndim 3, no zero dimension, sizes usable by CBLAS (int), finite entries. */
static int read_array(const char *path, size_t ndim, size_t rows, size_t cols, double **out,
                      size_t sh[8]) {
    size_t nd;
    *out = NULL;
    if (gmf_io_read_npy(path, out, &nd, sh)) return GMF_EFORMAT;
    int rc = GMF_OK;
    size_t n = 1;
    if (nd != ndim || (rows && sh[0] != rows) || (cols && sh[1] != cols) ||
        (ndim == 3 && sh[1] != sh[2])) {
        rc = gmf_error(GMF_EFORMAT, "%s: unexpected shape (ndim %zu, %zu x %zu%s)", path, nd,
                       nd > 0 ? sh[0] : 0, nd > 1 ? sh[1] : 0, nd > 2 ? " x ..." : "");
        goto out;
    }
    for (size_t i = 0; i < nd; i++) {
        if (sh[i] == 0) {
            rc = gmf_error(GMF_EFORMAT, "%s: dimension %zu of its shape is 0 (K = 0 or d = 0)",
                           path, i);
            goto out;
        }
        if (sh[i] > INT_MAX || gmf_mul_size(n, sh[i], &n)) {
            rc = gmf_error(GMF_EFORMAT, "%s: shape too large", path);
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite((*out)[i])) {
            rc = gmf_error(GMF_EFORMAT, "%s: non-finite entry at flat index %zu", path, i);
            goto out;
        }
out:
    if (rc) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

int gmf_project_read_matrix(const char *path, size_t cols, double **out, size_t *rows) {
    size_t sh[8];
    int rc = read_array(path, 2, 0, cols, out, sh);
    if (!rc && rows) *rows = sh[0];
    return rc;
}

int gmf_project_snap_read(gmf_project_snap *s, const char *mu_path, const char *sig_path, int full,
                          size_t K, size_t d) {
    memset(s, 0, sizeof *s);
    size_t sh[8];
    int rc = read_array(mu_path, 2, K, d, &s->mu, sh);
    if (rc) return rc;
    s->K = sh[0], s->d = sh[1], s->full = full;
    rc = read_array(sig_path, full ? 3 : 2, s->K, s->d, &s->sig, sh);
    if (rc) gmf_project_snap_free(s);
    return rc;
}

void gmf_project_snap_free(gmf_project_snap *s) {
    free(s->mu);
    free(s->sig);
    memset(s, 0, sizeof *s);
}

/* ---- the plane ----------------------------------------------------------------------------- */

int gmf_project_mixture_cov(double *S, double *trace, const gmf_project_snap *s) {
    const size_t K = s->K, d = s->d;
    if (K == 0 || d == 0 || K > INT_MAX || d > INT_MAX)
        return gmf_error(GMF_EINVAL, "mixture covariance: K = %zu, d = %zu", K, d);
    double *Mc = alloc_doubles(K, d, "centred means");
    if (!Mc) return GMF_ENOMEM;
    for (size_t j = 0; j < d; j++) {
        double m = 0;
        for (size_t k = 0; k < K; k++)
            m += s->mu[k * d + j];
        m /= (double)K;
        for (size_t k = 0; k < K; k++)
            Mc[k * d + j] = s->mu[k * d + j] - m;
    }
    /* S = (1/K) Mc^T Mc (+ (1/K) sum_k C_k C_k^T) (+ diag((1/K) sum_k sigma_k^2)) */
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, (int)d, (int)K, 1.0 / (double)K, Mc, (int)d,
                0.0, S, (int)d);
    free(Mc);
    if (s->full) {
        for (size_t k = 0; k < K; k++)
            cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, (int)d, (int)d, 1.0 / (double)K,
                        s->sig + k * d * d, (int)d, 1.0, S, (int)d);
    } else {
        for (size_t k = 0; k < K; k++)
            for (size_t j = 0; j < d; j++)
                S[j * d + j] += s->sig[k * d + j] * s->sig[k * d + j] / (double)K;
    }
    double tr = 0;
    for (size_t i = 0; i < d; i++) {
        tr += S[i * d + i];
        for (size_t j = i + 1; j < d; j++)
            S[i * d + j] = S[j * d + i];
    }
    *trace = tr;
    return GMF_OK;
}

int gmf_project_top2(double *P, double lam[2], double *S, size_t d) {
    if (d < 2 || d > INT_MAX)
        return gmf_error(GMF_EINVAL,
                         "the input dimension is %zu; a 2-dimensional projection needs d >= 2", d);
    /* dsyevr's W must hold N eigenvalues even when only IL..IU are asked for (it uses W as
     * workspace, and degenerate matrices fill it); Z is N x M = d x 2 (row-major, ldz 2);
     * ISUPPZ has 2 max(1, M) = 4 entries.  LAPACKE queries and allocates WORK and IWORK. */
    double *w = alloc_doubles(d, 1, "eigenvalues");
    double *Z = alloc_doubles(d, 2, "eigenvectors");
    lapack_int isuppz[4];
    if (!w || !Z) {
        free(w), free(Z);
        return GMF_ENOMEM;
    }
    lapack_int m = 0;
    lapack_int info =
        LAPACKE_dsyevr(LAPACK_ROW_MAJOR, 'V', 'I', 'L', (lapack_int)d, S, (lapack_int)d, 0, 0,
                       (lapack_int)d - 1, (lapack_int)d, 0.0, &m, w, Z, 2, isuppz);
    int rc = GMF_OK;
    if (info != 0 || m != 2) {
        rc = gmf_error(GMF_ESOLVER,
                       "LAPACKE_dsyevr failed on the mixture covariance (info %d, %d eigenpairs)",
                       (int)info, (int)m);
        goto out;
    }
    /* ascending order: column 1 is the largest */
    for (int r = 0; r < 2; r++) {
        const int col = 1 - r;
        size_t arg = 0;
        for (size_t j = 1; j < d; j++)
            if (fabs(Z[j * 2 + col]) > fabs(Z[arg * 2 + col])) arg = j;
        const double sgn = Z[arg * 2 + col] < 0 ? -1.0 : 1.0;
        for (size_t j = 0; j < d; j++)
            P[r * d + j] = sgn * Z[j * 2 + col];
        lam[r] = w[col];
    }
out:
    free(w), free(Z);
    return rc;
}

int gmf_project_plane(double *P, double lam[2], double *trace, const gmf_project_snap *s) {
    double *S = alloc_doubles(s->d, s->d, "mixture covariance");
    if (!S) return GMF_ENOMEM;
    int rc = gmf_project_mixture_cov(S, trace, s);
    if (!rc) rc = gmf_project_top2(P, lam, S, s->d);
    free(S);
    return rc;
}

int gmf_project_gm(double *out, const gmf_project_snap *s, const double *P) {
    const size_t K = s->K, d = s->d;
    double *T = s->full ? alloc_doubles(2, d, "projection") : NULL;
    if (s->full && !T) return GMF_ENOMEM;
    for (size_t k = 0; k < K; k++) {
        const double *mu = s->mu + k * d;
        double *o = out + 5 * k;
        o[0] = cblas_ddot((int)d, P, 1, mu, 1);
        o[1] = cblas_ddot((int)d, P + d, 1, mu, 1);
        double cxx = 0, cxy = 0, cyy = 0;
        if (s->full) {
            /* T = P C_k (2 x d); P Sigma_k P^T = T T^T */
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, (int)d, (int)d, 1.0, P,
                        (int)d, s->sig + k * d * d, (int)d, 0.0, T, (int)d);
            cxx = cblas_ddot((int)d, T, 1, T, 1);
            cxy = cblas_ddot((int)d, T, 1, T + d, 1);
            cyy = cblas_ddot((int)d, T + d, 1, T + d, 1);
        } else {
            const double *sg = s->sig + k * d;
            for (size_t j = 0; j < d; j++) {
                const double v = sg[j] * sg[j];
                cxx += v * P[j] * P[j];
                cxy += v * P[j] * P[d + j];
                cyy += v * P[d + j] * P[d + j];
            }
        }
        o[2] = cxx, o[3] = cxy, o[4] = cyy;
    }
    free(T);
    return GMF_OK;
}

void gmf_project_points(double *out, const double *B, size_t m, size_t d, const double *P) {
    for (size_t j = 0; j < m; j++) {
        out[2 * j] = cblas_ddot((int)d, P, 1, B + j * d, 1);
        out[2 * j + 1] = cblas_ddot((int)d, P + d, 1, B + j * d, 1);
    }
}

/* ---- snapshot files ------------------------------------------------------------------------ */

/* 1 and *epoch if name is epoch_<1..19 digits>_<group>.npy; 0 if it is some other
 * epoch_*_<group>.npy (a stray); -1 if it is not a file of this group at all. */
static int parse_name(const char *name, const char *group, size_t *epoch) {
    char suffix[64];
    const int ns = snprintf(suffix, sizeof suffix, "_%s.npy", group);
    const size_t len = strlen(name);
    if (strncmp(name, "epoch_", 6) || ns <= 0 || len < 6 + (size_t)ns ||
        strcmp(name + len - (size_t)ns, suffix))
        return -1;
    const size_t nd = len - 6 - (size_t)ns;
    if (nd == 0 || nd > 19) return 0;
    unsigned long long v = 0;
    for (size_t i = 0; i < nd; i++) {
        const char c = name[6 + i];
        if (c < '0' || c > '9') return 0;
        v = 10 * v + (unsigned long long)(c - '0'); /* 19 digits fit in 64 bits */
    }
    if (v > SIZE_MAX) return 0;
    *epoch = (size_t)v;
    return 1;
}

static int cmp_epoch(const void *a, const void *b) {
    const gmf_project_epoch *x = a, *y = b;
    return (x->epoch > y->epoch) - (x->epoch < y->epoch);
}

int gmf_project_list_epochs(gmf_project_epoch **list, size_t *n, size_t *nskipped, char *skipped,
                            size_t skipped_size, const char *dir, const char *group) {
    *list = NULL, *n = 0, *nskipped = 0;
    if (skipped && skipped_size) skipped[0] = '\0';
    DIR *dp = opendir(dir);
    if (!dp)
        return gmf_error(GMF_EIO, "cannot open snapshot directory %s: %s", dir, strerror(errno));
    size_t cap = 0, cnt = 0;
    gmf_project_epoch *e = NULL;
    int rc = GMF_OK;
    struct dirent *de;
    while ((de = readdir(dp))) {
        size_t ep = 0;
        const int kind = parse_name(de->d_name, group, &ep);
        if (kind < 0) continue;
        if (kind == 0 || strlen(de->d_name) >= sizeof e->name) {
            if (*nskipped == 0 && skipped) snprintf(skipped, skipped_size, "%s", de->d_name);
            ++*nskipped;
            continue;
        }
        if (cnt == cap) {
            gmf_project_epoch *t = realloc(e, (cap = cap ? 2 * cap : 16) * sizeof *e);
            if (!t) {
                rc = gmf_error(GMF_ENOMEM, "%s: out of memory listing snapshots", dir);
                break;
            }
            e = t;
        }
        e[cnt].epoch = ep;
        snprintf(e[cnt].name, sizeof e[cnt].name, "%s", de->d_name);
        cnt++;
    }
    closedir(dp);
    if (!rc && cnt) qsort(e, cnt, sizeof *e, cmp_epoch);
    for (size_t i = 1; !rc && i < cnt; i++)
        if (e[i].epoch == e[i - 1].epoch)
            rc = gmf_error(GMF_EFORMAT, "%s: epoch %zu has two snapshot files, %s and %s", dir,
                           e[i].epoch, e[i - 1].name, e[i].name);
    if (rc) {
        free(e);
        return rc;
    }
    *list = e, *n = cnt;
    return GMF_OK;
}

int gmf_project_sibling(char *out, size_t size, const char *name, const char *from,
                        const char *group) {
    const size_t len = strlen(name), lf = strlen(from);
    if (len < lf + 5 || strcmp(name + len - 4, ".npy") || strncmp(name + len - lf - 4, from, lf) ||
        name[len - lf - 5] != '_')
        return gmf_error(GMF_EINVAL, "%s is not a snapshot file of group %s", name, from);
    const int w = snprintf(out, size, "%.*s%s.npy", (int)(len - lf - 4), name, group);
    if (w < 0 || (size_t)w >= size)
        return gmf_error(GMF_EINVAL, "snapshot name too long: %s", name);
    return GMF_OK;
}
