/* test_project.c -- the mixture projection of Figure 4 (gmflow/project.h) against independent
 * routes: the mixture covariance against the second moment minus the squared mean (naive loops;
 * the library centres the means and uses SYRK), the top-2 eigenpairs against LAPACK's dsyev (QR
 * iteration; the library uses dsyevr's MRRR for two eigenpairs only) and against the analytic
 * spectra of degenerate matrices (zero, 0.25 I, all ones: dsyevr writes all N eigenvalues into W
 * for these, which overflowed the old 2-entry buffer under ASan), the projected covariances
 * against P Sigma_k P^T formed naively.  Bad snapshots: K = 0 (shape (0, 1518500250), the
 * issue's crash), d = 0, a d x d size that overflows size_t; snapshot listings with strays and
 * duplicate epochs. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gmflow/common.h"
#include "gmflow/io.h"
#include "gmflow/project.h"
#include "testutil.h"

/* S p = lam p for both rows of P, P P^T = I, eigenvalues as expected. */
static void check_pairs(const double *S0, size_t d, const double *P, const double lam[2],
                        const double want[2], const char *what) {
    double res = 0, orth = 0;
    for (int r = 0; r < 2; r++) {
        for (size_t i = 0; i < d; i++) {
            double acc = 0;
            for (size_t j = 0; j < d; j++)
                acc += S0[i * d + j] * P[r * d + j];
            res = fmax(res, fabs(acc - lam[r] * P[r * d + i]));
        }
        for (int q = 0; q < 2; q++) {
            double dot = 0;
            for (size_t j = 0; j < d; j++)
                dot += P[r * d + j] * P[q * d + j];
            orth = fmax(orth, fabs(dot - (r == q)));
        }
    }
    CHECK(res < 1e-13 * (double)d && orth < 1e-12, "%s: residual %g, orthonormality %g", what, res,
          orth);
    CHECK_CLOSE(lam[0], want[0], 1e-13, 1e-15 * (double)d * (double)d, "%s: largest eigenvalue",
                what);
    CHECK_CLOSE(lam[1], want[1], 1e-13, 1e-15 * (double)d * (double)d, "%s: second eigenvalue",
                what);
}

static void degenerate(void) {
    const size_t dims[] = {2, 3, 7, 40};
    for (size_t t = 0; t < 4; t++) {
        const size_t d = dims[t];
        double *S = calloc(d * d, sizeof *S), *S0 = calloc(d * d, sizeof *S0),
               *P = calloc(2 * d, sizeof *P);
        double lam[2];
        for (int kind = 0; kind < 3; kind++) {
            for (size_t i = 0; i < d * d; i++)
                S0[i] = kind == 0 ? 0.0 : kind == 1 ? (i % (d + 1) == 0 ? 0.25 : 0.0) : 1.0;
            memcpy(S, S0, d * d * sizeof *S);
            const double want[3][2] = {{0, 0}, {0.25, 0.25}, {(double)d, 0}};
            char what[64];
            snprintf(what, sizeof what, "%s, d = %zu",
                     kind == 0   ? "zero"
                     : kind == 1 ? "0.25 I"
                                 : "all ones",
                     d);
            int rc = gmf_project_top2(P, lam, S, d);
            CHECK(rc == 0, "%s: %s", what, gmf_errmsg());
            if (rc) continue;
            check_pairs(S0, d, P, lam, want[kind], what);
            if (kind == 2) { /* the top eigenvector is 1/sqrt(d) (1, ..., 1), sign convention + */
                double e = 0;
                for (size_t j = 0; j < d; j++)
                    e = fmax(e, fabs(P[j] - 1 / sqrt((double)d)));
                CHECK(e < 1e-12, "%s: top eigenvector off by %g", what, e);
            }
        }
        free(S), free(S0), free(P);
    }
    double one[1] = {1}, P1[2], lam[2];
    CHECK(gmf_project_top2(P1, lam, one, 1) == GMF_EINVAL && strstr(gmf_errmsg(), "d >= 2"),
          "d = 1 accepted: %s", gmf_errmsg());
}

/* A random snapshot against the naive routes. */
static void random_snapshot(int full, gsl_rng *rng) {
    const size_t K = 4, d = 6;
    gmf_project_snap s = {K, d, full, calloc(K * d, sizeof(double)),
                          calloc(full ? K * d * d : K * d, sizeof(double))};
    for (size_t i = 0; i < K * d; i++)
        s.mu[i] = gsl_ran_gaussian(rng, 1.0) + (i % d == 0 ? 3.0 : 0.0);
    for (size_t i = 0; i < (full ? K * d * d : K * d); i++)
        s.sig[i] = gsl_ran_gaussian(rng, 0.5);
    /* Sigma_k, naively */
    double *Sig = calloc(K * d * d, sizeof *Sig);
    for (size_t k = 0; k < K; k++)
        for (size_t a = 0; a < d; a++)
            for (size_t b = 0; b < d; b++) {
                double acc = 0;
                if (full)
                    for (size_t e = 0; e < d; e++)
                        acc += s.sig[k * d * d + a * d + e] * s.sig[k * d * d + b * d + e];
                else if (a == b)
                    acc = s.sig[k * d + a] * s.sig[k * d + a];
                Sig[k * d * d + a * d + b] = acc;
            }
    /* S = E[x x^T] - m m^T over the mixture */
    double S_ref[36] = {0}, m[6] = {0};
    for (size_t k = 0; k < K; k++)
        for (size_t a = 0; a < d; a++) {
            m[a] += s.mu[k * d + a] / K;
            for (size_t b = 0; b < d; b++)
                S_ref[a * d + b] +=
                    (Sig[k * d * d + a * d + b] + s.mu[k * d + a] * s.mu[k * d + b]) / K;
        }
    for (size_t a = 0; a < d; a++)
        for (size_t b = 0; b < d; b++)
            S_ref[a * d + b] -= m[a] * m[b];
    double S[36], tr = 0, tr_ref = 0;
    CHECK(gmf_project_mixture_cov(S, &tr, &s) == 0, "mixture_cov: %s", gmf_errmsg());
    double e = 0;
    for (size_t i = 0; i < d * d; i++)
        e = fmax(e, fabs(S[i] - S_ref[i]));
    for (size_t a = 0; a < d; a++)
        tr_ref += S_ref[a * d + a];
    CHECK(e < 1e-12 && fabs(tr - tr_ref) < 1e-12, "%s: covariance off by %g, trace %g vs %g",
          full ? "full" : "diagonal", e, tr, tr_ref);
    /* top-2 against dsyev of the reference matrix */
    double A[36], w[6], P[12], lam[2];
    memcpy(A, S_ref, sizeof A);
    CHECK(LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)d, A, (lapack_int)d, w) == 0,
          "dsyev");
    CHECK(gmf_project_plane(P, lam, &tr, &s) == 0, "plane: %s", gmf_errmsg());
    double ev = 0;
    for (int r = 0; r < 2; r++) {
        const size_t col = d - 1 - (size_t)r;
        size_t arg = 0;
        for (size_t j = 1; j < d; j++)
            if (fabs(A[j * d + col]) > fabs(A[arg * d + col])) arg = j;
        const double sg = A[arg * d + col] < 0 ? -1 : 1;
        for (size_t j = 0; j < d; j++)
            ev = fmax(ev, fabs(P[r * d + j] - sg * A[j * d + col]));
        CHECK_CLOSE(lam[r], w[col], 1e-12, 1e-14, "%s: eigenvalue %d", full ? "full" : "diag", r);
    }
    CHECK(ev < 1e-9, "%s: eigenvectors differ from dsyev's by %g", full ? "full" : "diag", ev);
    /* projected components */
    double out[20];
    CHECK(gmf_project_gm(out, &s, P) == 0, "project_gm");
    double pe = 0;
    for (size_t k = 0; k < K; k++) {
        double want[5] = {0};
        for (size_t a = 0; a < d; a++) {
            want[0] += P[a] * s.mu[k * d + a];
            want[1] += P[d + a] * s.mu[k * d + a];
            for (size_t b = 0; b < d; b++) {
                const double v = Sig[k * d * d + a * d + b];
                want[2] += P[a] * v * P[b];
                want[3] += P[a] * v * P[d + b];
                want[4] += P[d + a] * v * P[d + b];
            }
        }
        for (int c = 0; c < 5; c++)
            pe = fmax(pe, fabs(out[5 * k + c] - want[c]));
    }
    CHECK(pe < 1e-12, "%s: projections off by %g", full ? "full" : "diag", pe);
    printf("%s snapshot: covariance %.1e, eigenvectors %.1e (vs dsyev), projections %.1e\n",
           full ? "full" : "diagonal", e, ev, pe);
    free(s.mu), free(s.sig), free(Sig);
}

static void write_npy(const char *path, size_t nd, const size_t *shape) {
    static const double zeros[64];
    CHECK(gmf_io_write_npy(path, zeros, nd, shape) == 0, "writing %s: %s", path, gmf_errmsg());
}

static void bad_snapshots(const char *dir) {
    char mu[512], sig[512];
    gmf_project_snap s;
    snprintf(mu, sizeof mu, "%s/epoch_0000_mu.npy", dir);
    snprintf(sig, sizeof sig, "%s/epoch_0000_sigma.npy", dir);
    /* the two 128-byte files: shape (0, 1518500250), K = 0 */
    const size_t k0[2] = {0, 1518500250};
    write_npy(mu, 2, k0), write_npy(sig, 2, k0);
    int rc = gmf_project_snap_read(&s, mu, sig, 0, 0, 0);
    CHECK(rc != 0 && strstr(gmf_errmsg(), "epoch_0000_mu.npy") && strstr(gmf_errmsg(), "K = 0"),
          "K = 0 accepted (rc %d): %s", rc, gmf_errmsg());
    const size_t d0[2] = {3, 0};
    write_npy(mu, 2, d0), write_npy(sig, 2, d0);
    rc = gmf_project_snap_read(&s, mu, sig, 0, 0, 0);
    CHECK(rc != 0 && strstr(gmf_errmsg(), "epoch_0000_mu.npy"), "d = 0 accepted: %s", gmf_errmsg());
    const size_t ok[2] = {2, 3}, wrong[2] = {2, 4};
    write_npy(mu, 2, ok), write_npy(sig, 2, wrong);
    rc = gmf_project_snap_read(&s, mu, sig, 0, 0, 0);
    CHECK(rc != 0 && strstr(gmf_errmsg(), "epoch_0000_sigma.npy"), "shape mismatch: %s",
          gmf_errmsg());
    /* a d x d matrix whose size overflows: refused before anything is allocated or written */
    double dummy[4] = {0};
    gmf_project_snap big = {1, (size_t)1 << 33, 0, dummy, dummy};
    double P[2], lam[2], tr;
    rc = gmf_project_plane(P, lam, &tr, &big);
    CHECK(rc != 0 && strstr(gmf_errmsg(), "overflow"), "d x d overflow not caught: %s",
          gmf_errmsg());
    printf("bad snapshots refused: %s\n", gmf_errmsg());
    remove(mu), remove(sig);
}

static void touch(const char *dir, const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *fp = fopen(p, "w");
    if (fp) fclose(fp);
}

static void listing(const char *dir) {
    const char *names[] = {
        "epoch_0000_mu.npy",    "epoch_0002_mu.npy", "epoch_1_mu.npy",
        "epoch_x_mu.npy",       "epoch__mu.npy",     "epoch_-1_mu.npy",
        "epoch_0003_sigma.npy", "notes.txt",         "epoch_99999999999999999999_mu.npy"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        touch(dir, names[i]);
    gmf_project_epoch *ep = NULL;
    size_t n = 0, nskip = 0;
    char first[256];
    int rc = gmf_project_list_epochs(&ep, &n, &nskip, first, sizeof first, dir, "mu");
    CHECK(rc == 0 && n == 3 && ep[0].epoch == 0 && ep[1].epoch == 1 && ep[2].epoch == 2 &&
              !strcmp(ep[1].name, "epoch_1_mu.npy") && nskip == 4,
          "listing: rc %d n %zu skipped %zu (%s)", rc, n, nskip, gmf_errmsg());
    free(ep);
    touch(dir, "epoch_0001_mu.npy");
    rc = gmf_project_list_epochs(&ep, &n, &nskip, NULL, 0, dir, "mu");
    CHECK(rc == GMF_EFORMAT && strstr(gmf_errmsg(), "epoch_1_mu.npy") &&
              strstr(gmf_errmsg(), "epoch_0001_mu.npy") && ep == NULL,
          "duplicate epoch accepted: %s", gmf_errmsg());
    printf("duplicate epochs: %s\n", gmf_errmsg());
    char sib[64];
    CHECK(gmf_project_sibling(sib, sizeof sib, "epoch_1_mu.npy", "mu", "sigma") == 0 &&
              !strcmp(sib, "epoch_1_sigma.npy"),
          "sibling: %s", sib);
    CHECK(gmf_project_sibling(sib, sizeof sib, "epoch_1_xmu.npy", "mu", "C") != 0,
          "sibling of a file of another group");
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        remove(p);
    }
    char p[512];
    snprintf(p, sizeof p, "%s/epoch_0001_mu.npy", dir);
    remove(p);
}

int main(void) {
    gsl_rng *rng = tu_rng(17);
    degenerate();
    random_snapshot(0, rng);
    random_snapshot(1, rng);
    char dir[] = "/tmp/gmflow_test_project.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    bad_snapshots(dir);
    listing(dir);
    rmdir(dir);
    gsl_rng_free(rng);
    return tu_finish("test_project");
}
