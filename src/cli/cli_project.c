/* cli_project.c -- `gmflow project`: project a GM layer's training trajectory (and, optionally, a
 * fully connected network's neurons) onto the top-2 principal subspace of the final mixture,
 * marginalized over beta (the paper's Figure 4).
 *
 * Input: the snapshot directories that `gmflow train --snapshot-every N` writes
 * (epoch_NNNN_mu.npy with epoch_NNNN_sigma.npy for the diagonal layer or epoch_NNNN_C.npy for the
 * full one; epoch_NNNN_beta.npy for an FC network).
 *
 * The mixture rho_beta = (1/K) sum_k N(mu_k, Sigma_k) has covariance
 *     S = (1/K) sum_k (Sigma_k + (mu_k - mbar)(mu_k - mbar)^T),   mbar = (1/K) sum_k mu_k,
 * (law of total covariance), formed with two SYRKs (the centred means; for the full layer the
 * stacked square roots) plus a diagonal, and its top two eigenvectors P (2 x d) come from LAPACK's
 * dsyevr (only those two are computed).  Each eigenvector's sign is fixed so that its entry of
 * largest magnitude is positive, so the plane's orientation does not depend on LAPACK's choice.
 * Every snapshot is then projected: mean P mu_k, covariance P Sigma_k P^T (the ellipse), and each
 * FC neuron P beta_j.  Files (written atomically) in --out:
 *   trajectory.csv   source,epoch,k,mx,my,cxx,cxy,cyy   (source gm or fc; fc rows have c = 0)
 *   pcs.csv          rank,eigenvalue,fraction   (fraction of trace S)
 *   pcs.npy          (2, d) the principal directions
 */
#define _POSIX_C_SOURCE 200809L

#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <lapacke.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "gmflow/common.h"
#include "gmflow/io.h"

#define CMD "gmflow project"

static void help(void) {
    printf("usage: " CMD " --gm DIR [--fc DIR] [--epoch E] [--out DIR]\n\n"
           "Project a GM layer's trajectory onto the top-2 principal subspace of its final\n"
           "mixture marginalized over beta (Figure 4 of the paper), and optionally an FC\n"
           "network's neurons onto the same plane.\n\n"
           "  --gm DIR     snapshot directory of a GM run (gmflow train --model gm|gm-full\n"
           "               --snapshot-every N writes <out>/snapshots)\n"
           "  --fc DIR     snapshot directory of an FC run (its beta_j are projected)\n"
           "  --epoch E    the GM snapshot whose mixture defines the plane (default: the last)\n"
           "  --out DIR    output directory, created if needed (default out/project)\n"
           "  -h, --help   this help\n\n"
           "Files in DIR (atomic): trajectory.csv (source,epoch,k,mx,my,cxx,cxy,cyy: projected\n"
           "means and covariances; FC rows have zero covariance), pcs.csv (rank,eigenvalue,\n"
           "fraction of the total variance), pcs.npy (2 x d principal directions).\n"
           "Exit status: 0 success, 1 failure (missing or inconsistent snapshots), 2 usage.\n");
}

/* Sorted list of the epochs for which DIR holds epoch_NNNN_<group>.npy. */
static int list_epochs(const char *dir, const char *group, size_t **epochs, size_t *n) {
    DIR *dp = opendir(dir);
    if (!dp) return fail("cannot open snapshot directory %s: %s", dir, strerror(errno));
    size_t cap = 16, cnt = 0;
    size_t *e = malloc(cap * sizeof *e);
    if (!e) {
        closedir(dp);
        return fail("out of memory");
    }
    char suffix[64];
    snprintf(suffix, sizeof suffix, "_%s.npy", group);
    struct dirent *de;
    while ((de = readdir(dp))) {
        unsigned long long v;
        int pos = 0;
        if (sscanf(de->d_name, "epoch_%llu%n", &v, &pos) != 1 || strcmp(de->d_name + pos, suffix))
            continue;
        if (cnt == cap) {
            size_t *t = realloc(e, 2 * cap * sizeof *e);
            if (!t) {
                free(e);
                closedir(dp);
                return fail("out of memory");
            }
            e = t, cap *= 2;
        }
        e[cnt++] = (size_t)v;
    }
    closedir(dp);
    for (size_t i = 1; i < cnt; i++) /* insertion sort: a few hundred epochs at most */
        for (size_t j = i; j > 0 && e[j - 1] > e[j]; j--) {
            size_t t = e[j];
            e[j] = e[j - 1], e[j - 1] = t;
        }
    *epochs = e, *n = cnt;
    return 0;
}

/* Read DIR/epoch_NNNN_<group>.npy and check its shape: rows x cols (x cols2 if cols2 > 0). */
static int read_group(const char *dir, size_t epoch, const char *group, size_t rows, size_t cols,
                      size_t cols2, double **out, size_t *rows_out, size_t *cols_out) {
    char path[4200];
    snprintf(path, sizeof path, "%s/epoch_%04zu_%s.npy", dir, epoch, group);
    size_t nd, sh[8];
    if (gmf_io_read_npy(path, out, &nd, sh)) return fail("%s", gmf_errmsg());
    const size_t want = cols2 ? 3 : 2;
    int bad = nd != want || (rows && sh[0] != rows) || (cols && sh[1] != cols) ||
              (cols2 && sh[2] != cols2);
    if (cols2 && nd == 3 && sh[1] != sh[2]) bad = 1;
    if (bad) {
        free(*out);
        *out = NULL;
        return fail("%s: unexpected shape (ndim %zu, %zu x %zu)", path, nd, sh[0],
                    nd > 1 ? sh[1] : 0);
    }
    for (size_t i = 0, m = sh[0] * sh[1] * (cols2 ? sh[2] : 1); i < m; i++)
        if (!isfinite((*out)[i])) {
            free(*out);
            *out = NULL;
            return fail("%s: non-finite entry at flat index %zu", path, i);
        }
    if (rows_out) *rows_out = sh[0];
    if (cols_out) *cols_out = sh[1];
    return 0;
}

/* One GM snapshot: means (K x d) and either sigma (K x d) or C (K x d x d). */
typedef struct {
    size_t K, d;
    int full;
    double *mu, *sig; /* sig: sigma (diag) or C (full) */
} gm_snap;

static int read_gm(const char *dir, size_t epoch, int full, size_t K, size_t d, gm_snap *s) {
    memset(s, 0, sizeof *s);
    s->full = full;
    if (read_group(dir, epoch, "mu", K, d, 0, &s->mu, &s->K, &s->d)) return 1;
    if (read_group(dir, epoch, full ? "C" : "sigma", s->K, s->d, full ? s->d : 0, &s->sig, NULL,
                   NULL)) {
        free(s->mu);
        s->mu = NULL;
        return 1;
    }
    return 0;
}

static void free_gm(gm_snap *s) {
    free(s->mu);
    free(s->sig);
}

/* Mixture covariance S (d x d, lower triangle filled) of a snapshot. */
static int mixture_cov(const gm_snap *s, double *S, double *total_var) {
    const size_t K = s->K, d = s->d;
    double *Mc = malloc(K * d * sizeof *Mc);
    if (!Mc) return fail("out of memory");
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
    for (size_t j = 0; j < d; j++)
        tr += S[j * d + j];
    *total_var = tr;
    return 0;
}

/* Top-2 eigenpairs of S (descending): P (2 x d), lam[2]. */
static int top2(double *S, size_t d, double *P, double lam[2]) {
    if (d < 2)
        return fail("the input dimension is %zu; a 2-dimensional projection needs d >= 2", d);
    double w[2];
    double *Z = malloc(d * 2 * sizeof *Z);
    lapack_int *isuppz = malloc(4 * sizeof *isuppz);
    if (!Z || !isuppz) {
        free(Z);
        free(isuppz);
        return fail("out of memory");
    }
    lapack_int m = 0;
    lapack_int info =
        LAPACKE_dsyevr(LAPACK_ROW_MAJOR, 'V', 'I', 'L', (lapack_int)d, S, (lapack_int)d, 0, 0,
                       (lapack_int)d - 1, (lapack_int)d, 0.0, &m, w, Z, 2, isuppz);
    free(isuppz);
    if (info != 0 || m != 2) {
        free(Z);
        return fail("LAPACKE_dsyevr failed on the mixture covariance (info %d, %d eigenpairs)",
                    (int)info, (int)m);
    }
    /* dsyevr returns ascending order: column 1 is the largest. */
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
    free(Z);
    return 0;
}

/* Append the projected components of one GM snapshot. */
static int project_gm(FILE *fp, const gm_snap *s, size_t epoch, const double *P) {
    const size_t K = s->K, d = s->d;
    double *T = s->full ? malloc(2 * d * sizeof *T) : NULL;
    if (s->full && !T) return fail("out of memory");
    for (size_t k = 0; k < K; k++) {
        const double *mu = s->mu + k * d;
        double mx = cblas_ddot((int)d, P, 1, mu, 1), my = cblas_ddot((int)d, P + d, 1, mu, 1);
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
        fprintf(fp, "gm,%zu,%zu,%.10g,%.10g,%.10g,%.10g,%.10g\n", epoch, k, mx, my, cxx, cxy, cyy);
    }
    free(T);
    return 0;
}

int gmf_cli_project(int argc, char **argv) {
    const char *gmdir = NULL, *fcdir = NULL, *out = "out/project";
    long long epoch_opt = -1;
    static const struct option longopts[] = {
        {"gm", required_argument, 0, 'g'},    {"fc", required_argument, 0, 'f'},
        {"epoch", required_argument, 0, 'e'}, {"out", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'g':
            gmdir = optarg;
            break;
        case 'f':
            fcdir = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'e': {
            char *end;
            errno = 0;
            epoch_opt = strtoll(optarg, &end, 10);
            if (errno || *end || end == optarg || epoch_opt < 0)
                return usage_error("--epoch: expected a non-negative integer (got '%s')", optarg);
            break;
        }
        case 'h':
            help();
            return 0;
        default:
            return usage_error("unknown or incomplete option '%s'",
                               optind > 0 && optind <= argc ? argv[optind - 1] : "?");
        }
    }
    if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
    if (!gmdir) return usage_error("--gm DIR is required");

    size_t *ep = NULL, nep = 0, *fep = NULL, nfep = 0;
    if (list_epochs(gmdir, "mu", &ep, &nep)) return 1;
    int rc = 1;
    double *S = NULL, *P = NULL;
    gm_snap s = {0};
    gmf_io_file ft = {0}, fpc = {0};
    int ft_open = 0;
    if (nep == 0) {
        fail("no GM snapshots (epoch_NNNN_mu.npy) in %s", gmdir);
        goto done;
    }
    char probe[4200];
    struct stat st;
    snprintf(probe, sizeof probe, "%s/epoch_%04zu_sigma.npy", gmdir, ep[0]);
    const int full = stat(probe, &st) != 0;
    const size_t ref = epoch_opt >= 0 ? (size_t)epoch_opt : ep[nep - 1];
    if (read_gm(gmdir, ref, full, 0, 0, &s)) goto done;
    const size_t K = s.K, d = s.d;
    S = malloc(d * d * sizeof *S);
    P = malloc(2 * d * sizeof *P);
    if (!S || !P) {
        fail("out of memory");
        goto done;
    }
    double total = 0, lam[2] = {0, 0};
    if (mixture_cov(&s, S, &total) || top2(S, d, P, lam)) goto done;
    free_gm(&s);
    memset(&s, 0, sizeof s);

    if (make_dirs(out)) goto done;
    char path[4200];
    snprintf(path, sizeof path, "%s/trajectory.csv", out);
    if (gmf_io_open(&ft, path)) {
        fail("%s", gmf_errmsg());
        goto done;
    }
    ft_open = 1;
    fputs("source,epoch,k,mx,my,cxx,cxy,cyy\n", ft.fp);
    for (size_t i = 0; i < nep; i++) {
        if (read_gm(gmdir, ep[i], full, K, d, &s)) goto done;
        int r = project_gm(ft.fp, &s, ep[i], P);
        free_gm(&s);
        memset(&s, 0, sizeof s);
        if (r) goto done;
    }
    if (fcdir) {
        if (list_epochs(fcdir, "beta", &fep, &nfep)) goto done;
        if (nfep == 0) {
            fail("no FC snapshots (epoch_NNNN_beta.npy) in %s", fcdir);
            goto done;
        }
        for (size_t i = 0; i < nfep; i++) {
            double *B = NULL;
            size_t m = 0;
            if (read_group(fcdir, fep[i], "beta", 0, d, 0, &B, &m, NULL)) goto done;
            for (size_t j = 0; j < m; j++)
                fprintf(ft.fp, "fc,%zu,%zu,%.10g,%.10g,0,0,0\n", fep[i], j,
                        cblas_ddot((int)d, P, 1, B + j * d, 1),
                        cblas_ddot((int)d, P + d, 1, B + j * d, 1));
            free(B);
        }
    }
    if (gmf_io_commit(&ft)) {
        ft_open = 0;
        fail("%s", gmf_errmsg());
        goto done;
    }
    ft_open = 0;
    snprintf(path, sizeof path, "%s/pcs.csv", out);
    if (gmf_io_open(&fpc, path)) {
        fail("%s", gmf_errmsg());
        goto done;
    }
    fputs("rank,eigenvalue,fraction\n", fpc.fp);
    for (int r = 0; r < 2; r++)
        fprintf(fpc.fp, "%d,%.10g,%.10g\n", r + 1, lam[r], total > 0 ? lam[r] / total : 0.0);
    if (gmf_io_commit(&fpc)) {
        fail("%s", gmf_errmsg());
        goto done;
    }
    snprintf(path, sizeof path, "%s/pcs.npy", out);
    const size_t shape[2] = {2, d};
    if (gmf_io_write_npy(path, P, 2, shape)) {
        fail("%s", gmf_errmsg());
        goto done;
    }
    printf("%s: K = %zu, d = %zu, %s covariance; plane from epoch %zu: eigenvalues %.6g, %.6g "
           "(%.1f%% of the variance); %zu GM snapshots%s%zu FC snapshots -> %s/\n",
           CMD, K, d, full ? "full" : "diagonal", ref, lam[0], lam[1],
           total > 0 ? 100 * (lam[0] + lam[1]) / total : 0.0, nep, fcdir ? ", " : ", ", nfep, out);
    rc = 0;
done:
    if (ft_open) gmf_io_abort(&ft);
    free_gm(&s);
    free(S);
    free(P);
    free(ep);
    free(fep);
    return rc;
}
