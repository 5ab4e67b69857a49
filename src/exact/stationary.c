/* stationary.c -- Newton polish, Hessian spectrum and index of the Euclidean objective l(mu, C)
 * (stationary.h; the math in docs/FLOWS.md, "Stationary points"). */
#include "gmflow/stationary.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/io.h"

gmf_stationary_opts gmf_stationary_defaults(void) {
    gmf_stationary_opts o = {.max_iter = 50, .gtol = 1e-14, .mu0 = 1e-4};
    return o;
}

static double norm2(const double *v, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += v[i] * v[i];
    return sqrt(s);
}

static int need_euclid(const gmf_flow *f) {
    if (gmf_flow_kind_of(f) != GMF_FLOW_EUCLID)
        return gmf_error(GMF_EINVAL, "stationary points: need the Euclidean (mu, C) form");
    return GMF_OK;
}

int gmf_stationary_hessian(gmf_flow *f, const double *y, double *H) {
    const size_t N = gmf_flow_dim(f);
    int rc = need_euclid(f);
    if (!rc) rc = gmf_flow_jac(f, y, H);
    if (rc) return rc;
    for (size_t i = 0; i < N; i++) /* H = -(J + J^T) / 2 */
        for (size_t j = 0; j <= i; j++)
            H[i * N + j] = H[j * N + i] = -0.5 * (H[i * N + j] + H[j * N + i]);
    return GMF_OK;
}

/* Eigenvalues (ascending) and, if Z != NULL, eigenvectors (columns of Z, row-major N x N) of the
 * symmetric A (destroyed). */
static int syevr(size_t N, double *A, double *w, double *Z) {
    lapack_int m = 0;
    lapack_int *isuppz = malloc(2 * (N ? N : 1) * sizeof *isuppz);
    if (!isuppz) return gmf_error(GMF_ENOMEM, "stationary points: out of memory (eigenvalues)");
    double *z = Z ? Z : A; /* not referenced for jobz = 'N' */
    lapack_int info =
        LAPACKE_dsyevr(LAPACK_ROW_MAJOR, Z ? 'V' : 'N', 'A', 'U', (lapack_int)N, A, (lapack_int)N,
                       0.0, 0.0, 0, 0, 0.0, &m, w, z, (lapack_int)N, isuppz);
    free(isuppz);
    if (info != 0 || (size_t)m != N)
        return gmf_error(GMF_ESOLVER, "stationary points: LAPACK dsyevr failed (info %d)",
                         (int)info);
    return GMF_OK;
}

/* |grad l| at y (grad l = -F); g receives -F. */
static int grad_at(gmf_flow *f, const double *y, double *g, double *gn) {
    const size_t N = gmf_flow_dim(f);
    int rc = gmf_flow_rhs(f, y, g);
    if (rc) return rc;
    for (size_t i = 0; i < N; i++)
        g[i] = -g[i];
    *gn = norm2(g, N);
    return GMF_OK;
}

/* The damped Newton (Levenberg-Marquardt) step for g(y) = 0 with the symmetric H = V diag(lambda)
 * V^T:  (H^2 + delta^2 I) p = -H g,  p = -sum_i lambda_i / (lambda_i^2 + delta^2) (v_i . g) v_i.
 * Eigen-decomposition of H into (w, Z) first (H destroyed); returns max|lambda|. */
static int eig_of(size_t N, double *H, double *Z, double *w, double *lmax) {
    int rc = syevr(N, H, w, Z);
    if (!rc) *lmax = fmax(fabs(w[0]), fabs(w[N - 1]));
    return rc;
}

static void lm_step(size_t N, const double *Z, const double *w, const double *g, double delta2,
                    double *coef, double *p) {
    for (size_t e = 0; e < N; e++) { /* coef_e = v_e . g */
        double c = 0.0;
        for (size_t i = 0; i < N; i++)
            c += Z[i * N + e] * g[i];
        coef[e] = c;
    }
    for (size_t i = 0; i < N; i++) {
        double acc = 0.0;
        for (size_t e = 0; e < N; e++)
            acc += Z[i * N + e] * (w[e] / (w[e] * w[e] + delta2)) * coef[e];
        p[i] = -acc;
    }
}

/* Tries steps with damping delta^2 = mu |g|^2, mu *= 4 after each rejection, until |g| drops;
 * on success updates y, g, *gn and lowers mu.  Returns 1 when even mu = 1e20 fails (y kept). */
static int lm_iteration(gmf_flow *f, double *y, const double *Z, const double *w, double *g,
                        double *gn, double *mu, double *work, int *rc) {
    const size_t N = gmf_flow_dim(f);
    double *p = work, *yt = p + N, *gt = yt + N, *coef = gt + N;
    for (; *mu <= 1e20; *mu *= 4) {
        lm_step(N, Z, w, g, *mu * *gn * *gn, coef, p);
        for (size_t i = 0; i < N; i++)
            yt[i] = y[i] + p[i];
        double gtn;
        *rc = grad_at(f, yt, gt, &gtn);
        if (*rc == GMF_EDIVERGE) continue; /* non-finite: damp more */
        if (*rc) return 1;
        if (gtn < *gn) {
            memcpy(y, yt, N * sizeof *y);
            memcpy(g, gt, N * sizeof *g);
            *gn = gtn;
            *mu = fmax(*mu / 16, 1e-12);
            return 0;
        }
    }
    *rc = GMF_OK;
    return 1;
}

int gmf_stationary_newton(gmf_flow *f, double *y, const gmf_stationary_opts *opts,
                          gmf_stationary_result *res) {
    gmf_stationary_opts o = opts ? *opts : gmf_stationary_defaults();
    memset(res, 0, sizeof *res);
    int rc = need_euclid(f);
    if (rc) return rc;
    if (o.max_iter < 0 || o.max_iter > GMF_STATIONARY_MAXIT || !(o.gtol >= 0))
        return gmf_error(GMF_EINVAL, "Newton polish: need 0 <= max_iter <= %d and gtol >= 0",
                         GMF_STATIONARY_MAXIT);
    const size_t N = gmf_flow_dim(f);
    double *H = gmf_calloc(2 * N * N + 6 * N, sizeof(double), "Newton polish");
    if (!H) return GMF_ENOMEM;
    double *Z = H + N * N, *w = Z + N * N, *g = w + N, *work = g + N, gn = 0, lmax = 0;
    double mu = o.mu0;
    rc = grad_at(f, y, g, &gn);
    res->grad0 = res->hist[0] = gn;
    for (int it = 0; rc == GMF_OK; it++) {
        rc = gmf_stationary_hessian(f, y, H);
        if (!rc) rc = eig_of(N, H, Z, w, &lmax);
        if (rc) break;
        const double ynorm = norm2(y, N);
        res->grad_rel = gn / (lmax * (ynorm > 0 ? ynorm : 1.0));
        if (res->grad_rel <= o.gtol) res->converged = 1;
        if (res->converged || it >= o.max_iter) break;
        if (lm_iteration(f, y, Z, w, g, &gn, &mu, work, &rc)) break; /* at the rounding floor */
        res->iters = it + 1;
        res->hist[it + 1] = gn;
    }
    res->grad = gn;
    if (!rc) rc = gmf_flow_loss(f, y, &res->loss);
    free(H);
    return rc;
}

/* Orthonormal basis of the complement of the gauge directions: columns of U (N x N, row-major)
 * from the full SVD of the N x m matrix of the C_k A_ab; returns the rank in *r. */
static int gauge_complement(const gmf_flow *f, const double *y, double *U, size_t *r) {
    const size_t K = gmf_flow_K(f), D = gmf_flow_D(f), N = gmf_flow_dim(f), npair = D * (D - 1) / 2,
                 m = K * npair;
    double *G = gmf_calloc(N * m + m + m, sizeof(double), "gauge directions");
    if (!G) return GMF_ENOMEM;
    double *s = G + N * m, *sup = s + m;
    size_t col = 0;
    for (size_t k = 0; k < K; k++) {
        const double *C = y + gmf_flow_mat_offset(K, D, k);
        for (size_t a = 0; a < D; a++)
            for (size_t b = a + 1; b < D; b++, col++) {
                /* C A with A = E_ab - E_ba: column b of C A is C[:, a], column a is -C[:, b] */
                for (size_t i = 0; i < D; i++) {
                    const size_t row = gmf_flow_mat_offset(K, D, k) + i * D;
                    G[(row + b) * m + col] = C[i * D + a];
                    G[(row + a) * m + col] = -C[i * D + b];
                }
            }
    }
    double vt;
    lapack_int info = LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'A', 'N', (lapack_int)N, (lapack_int)m, G,
                                     (lapack_int)m, s, U, (lapack_int)N, &vt, 1, sup);
    *r = 0;
    if (info == 0)
        for (size_t i = 0; i < m; i++)
            *r += s[i] > 1e-10 * s[0];
    free(G);
    if (info != 0)
        return gmf_error(GMF_ESOLVER, "gauge directions: LAPACK dgesvd failed (info %d)",
                         (int)info);
    return GMF_OK;
}

/* Hr = U_perp^T H U_perp (nr x nr), U_perp = columns r.. of U; HU (N x nr) scratch. */
static void restrict_to(size_t N, size_t r, const double *H, const double *U, double *HU,
                        double *Hr) {
    const int n = (int)N, nr = (int)(N - r);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, nr, n, 1.0, H, n, U + r, n, 0.0, HU,
                nr);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nr, nr, n, 1.0, U + r, n, HU, nr, 0.0, Hr,
                nr);
    for (int i = 0; i < nr; i++) /* symmetric to rounding: make it exactly so */
        for (int j = 0; j < i; j++)
            Hr[i * nr + j] = Hr[j * nr + i] = 0.5 * (Hr[i * nr + j] + Hr[j * nr + i]);
}

int gmf_stationary_spectrum_compute(gmf_flow *f, const double *y, double zero_rtol,
                                    gmf_stationary_spectrum *s) {
    memset(s, 0, sizeof *s);
    int rc = need_euclid(f);
    if (rc) return rc;
    const size_t N = gmf_flow_dim(f);
    double *H = gmf_calloc(4 * N * N, sizeof(double), "Hessian spectrum");
    s->hess = gmf_calloc(2 * N, sizeof(double), "Hessian spectrum");
    if (!H || !s->hess) {
        free(H);
        gmf_stationary_spectrum_free(s);
        return GMF_ENOMEM;
    }
    double *A = H + N * N, *U = A + N * N, *HU = U + N * N;
    s->N = N;
    s->restr = s->hess + N;
    rc = gmf_stationary_hessian(f, y, H);
    if (!rc) memcpy(A, H, N * N * sizeof *A);
    if (!rc) rc = syevr(N, A, s->hess, NULL);
    if (!rc) rc = gauge_complement(f, y, U, &s->ngauge);
    if (!rc) {
        s->nr = N - s->ngauge;
        restrict_to(N, s->ngauge, H, U, HU, A);
        rc = syevr(s->nr, A, s->restr, NULL);
    }
    if (!rc) {
        s->tol = (zero_rtol > 0 ? zero_rtol : 1e-8) * fmax(fabs(s->hess[0]), fabs(s->hess[N - 1]));
        for (size_t i = 0; i < s->nr; i++) {
            s->index += s->restr[i] < -s->tol;
            s->nzero += fabs(s->restr[i]) <= s->tol;
        }
    }
    free(H);
    if (rc) gmf_stationary_spectrum_free(s);
    return rc;
}

void gmf_stationary_spectrum_free(gmf_stationary_spectrum *s) {
    free(s->hess);
    memset(s, 0, sizeof *s);
}

int gmf_stationary_spectrum_write(const char *path, const gmf_stationary_spectrum *s) {
    gmf_io_file out;
    int rc = gmf_io_open(&out, path);
    if (rc) return rc;
    fprintf(out.fp, "set,i,eigenvalue\n");
    for (size_t i = 0; i < s->N; i++)
        fprintf(out.fp, "hessian,%zu,%.17g\n", i, s->hess[i]);
    for (size_t i = 0; i < s->nr; i++)
        fprintf(out.fp, "restricted,%zu,%.17g\n", i, s->restr[i]);
    return gmf_io_commit(&out);
}

/* C_k = V diag(sqrt(max(lambda, 0))) for each Sigma_k of the BW state ys, into yc. */
static int factor_bw(size_t K, size_t D, const double *ys, double *yc) {
    double *A = gmf_calloc(2 * D * D + D, sizeof(double), "polish");
    if (!A) return GMF_ENOMEM;
    double *Z = A + D * D, *w = Z + D * D;
    int rc = GMF_OK;
    memcpy(yc, ys, K * D * sizeof(double));
    for (size_t k = 0; k < K && rc == GMF_OK; k++) {
        memcpy(A, ys + gmf_flow_mat_offset(K, D, k), D * D * sizeof(double));
        rc = syevr(D, A, w, Z);
        double *C = yc + gmf_flow_mat_offset(K, D, k);
        for (size_t i = 0; i < D && rc == GMF_OK; i++)
            for (size_t j = 0; j < D; j++)
                C[i * D + j] = Z[i * D + j] * sqrt(fmax(w[j], 0.0));
    }
    free(A);
    return rc;
}

int gmf_stationary_polish(gmf_oracle oracle, size_t K, gmf_flow_kind kind, const double *y,
                          const gmf_stationary_opts *o, double *yc, gmf_stationary_result *res,
                          gmf_stationary_spectrum *spec) {
    memset(spec, 0, sizeof *spec);
    gmf_flow *f;
    int rc = gmf_flow_new(&f, GMF_FLOW_EUCLID, K, oracle);
    if (rc) return rc;
    const size_t D = gmf_flow_D(f), N = gmf_flow_dim(f);
    if (kind == GMF_FLOW_BW)
        rc = factor_bw(K, D, y, yc);
    else
        memcpy(yc, y, N * sizeof(double));
    if (!rc) rc = gmf_stationary_newton(f, yc, o, res);
    if (!rc) rc = gmf_stationary_spectrum_compute(f, yc, 1e-8, spec);
    gmf_flow_free(f);
    return rc;
}
