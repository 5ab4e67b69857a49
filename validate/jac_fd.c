/* validate/jac_fd.c -- the exact Jacobian of the flows' right-hand side against finite differences.
 *
 * For both forms (GMF_FLOW_BW, state [mu | Sigma]; GMF_FLOW_EUCLID, state [mu | C]) with the
 * squared-loss oracle:
 *
 *   JVP:   gmf_flow_jvp(y, v) vs central differences of gmf_flow_rhs along v,
 *          (F(y + h v) - F(y - h v)) / 2h at h and h/2, Richardson-extrapolated (error O(h^4)),
 *          h the one of 1e-3, 1e-4, 1e-5, 1e-6 whose extrapolation error estimate
 *          |D(h/2) - D(h)| / 3 is smallest (state and directions are O(1)), 4 random directions
 *          per case.  In the BW form the Sigma_k block of v is C_k E C_k^T with E a random
 *          (non-symmetric) matrix, so Sigma_k + h dSigma_k = C_k (I + h E) C_k^T keeps its
 *          quadratic forms positive even when Sigma_k is near-singular; in the Euclidean form v
 *          is Gaussian.
 *   Dense: gmf_flow_jac column by column vs the same differences along the unit vectors (cases
 *          whose Sigma_k are all well-conditioned: a unit step on a Sigma entry is then harmless),
 *          and in the Euclidean form the symmetry of J = -Hess l: max|J - J^T| / max|J|.
 *
 * States: random means, Sigma_k = C_k C_k^T with C_k = L Q (Q random orthogonal) and the spectrum
 * of Sigma_k well-conditioned (cond 10), near-singular (cond 1e6), or thin in beta (sd 1e-2):
 * several K and D.  Figure: max over entries |exact - fd| / max|fd| per check; pass when every
 * figure is <= 1e-8 (measured: at most 5e-10 with the default seed, all cases; a relative 1e-4
 * error in one term of dq, the kink's derivative, already gives 4e-5), and the Euclidean
 * asymmetry <= 1e-12.
 *
 * Usage: jac_fd [--seed S]      exit 0 on pass, 1 on failure.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/flow.h"
#include "gmflow/sqloss.h"
#include "gmflow/toy.h"
#include "harness.h"
#include "testutil.h"
#include "vfd.h"

#define PASS_TOL 1e-8
#define NDIR     4
#define FD_H     1e-3

typedef struct {
    const char *label;
    size_t n, d, K;
    vfd_cov cov; /* of every component */
    unsigned long seed;
} jcase;

static void make_state(const jcase *c, gsl_rng *r, double *y) {
    vfd_cov cov[c->K];
    for (size_t k = 0; k < c->K; k++)
        cov[k] = c->cov;
    vfd_state(r, c->K, c->d + 1, cov, y);
}

/* F(y + t v) as a function of t, for vfd_richardson. */
typedef struct {
    gmf_flow *f;
    const double *y, *v;
    double *yp;
} rhsline;

static int rhs_along(void *vp, double t, double *F) {
    rhsline *p = vp;
    const size_t N = gmf_flow_dim(p->f);
    for (size_t i = 0; i < N; i++)
        p->yp[i] = p->y[i] + t * p->v[i];
    return gmf_flow_rhs(p->f, p->yp, F);
}

/* Central differences of F along v at h and h/2, Richardson-extrapolated, into fd (N); returns
 * the error estimate max|D(h/2) - D(h)| / 3 / max|fd| (of the plain difference at h/2), or
 * INFINITY if the RHS failed.  work: 5N doubles. */
static double fd_at(gmf_flow *f, const double *y, const double *v, double h, double *fd,
                    double *work) {
    const size_t N = gmf_flow_dim(f);
    rhsline p = {f, y, v, work};
    double *est = work + N;
    if (vfd_richardson(rhs_along, &p, N, h, fd, est, work + 2 * N)) return INFINITY;
    double e = 0; /* fmax: an entry whose estimate is NaN does not count */
    for (size_t i = 0; i < N; i++)
        e = fmax(e, est[i]);
    const double scale = tu_max_abs(fd, N);
    return e / (scale > 0 ? scale : 1.0);
}

/* fd_at over the steps FD_H, FD_H / 10, ..., FD_H / 1000, keeping the one with the smallest
 * error estimate (a near-singular state varies on the scale of its smallest s, so a fixed step
 * can be too coarse there and too fine elsewhere); the choice never looks at the exact JVP.
 * Returns 0, or 1 if the RHS failed at every step. */
static int fd_along(gmf_flow *f, const double *y, const double *v, double *fd, double *work) {
    const size_t N = gmf_flow_dim(f);
    double *best = work + 5 * N, bestest = INFINITY, h = FD_H;
    for (int j = 0; j < 4; j++, h /= 10) {
        const double est = fd_at(f, y, v, h, fd, work);
        if (est < bestest) {
            bestest = est;
            memcpy(best, fd, N * sizeof *fd);
        }
    }
    memcpy(fd, best, N * sizeof *fd);
    return isfinite(bestest) ? 0 : 1;
}

static double relerr(size_t N, const double *a, const double *ref) {
    const double scale = tu_max_abs(ref, N);
    return tu_max_abs_diff(a, ref, N) / (scale > 0 ? scale : 1.0);
}

/* Direction for the form: Gaussian, or in the BW form [dmu | C_k E_k C_k^T]. */
static void direction(gmf_flow *f, const double *yE, gsl_rng *r, double *v, double *E) {
    const size_t K = gmf_flow_K(f), D = gmf_flow_D(f), N = gmf_flow_dim(f);
    tu_randn(r, N, 1.0, v);
    if (gmf_flow_kind_of(f) == GMF_FLOW_EUCLID) return;
    for (size_t k = 0; k < K; k++) {
        const double *C = yE + gmf_flow_mat_offset(K, D, k);
        double *dS = v + gmf_flow_mat_offset(K, D, k), *T = E + D * D;
        tu_randn(r, D * D, 1.0, E);
        tu_matmul(D, D, D, C, E, T);
        for (size_t a = 0; a < D; a++) /* dS = T C^T */
            for (size_t b = 0; b < D; b++) {
                double acc = 0;
                for (size_t l = 0; l < D; l++)
                    acc += T[a * D + l] * C[b * D + l];
                dS[a * D + b] = acc;
            }
    }
}

/* The JVP checks and (for well-conditioned cases) the dense checks of one form. */
static double check_form(const jcase *c, gmf_flow *f, const double *yE, const double *y, gsl_rng *r,
                         double *densemax, double *symmax) {
    const size_t N = gmf_flow_dim(f), D = gmf_flow_D(f);
    double *v = tu_xmalloc(N * sizeof *v), *jv = tu_xmalloc(N * sizeof *jv);
    double *fd = tu_xmalloc(N * sizeof *fd), *work = tu_xmalloc(6 * N * sizeof *work);
    double *E = tu_xmalloc(2 * D * D * sizeof *E), worst = 0;
    for (int j = 0; j < NDIR; j++) {
        direction(f, yE, r, v, E);
        int rc = gmf_flow_jvp(f, y, v, jv);
        CHECK(rc == GMF_OK, "%s: gmf_flow_jvp failed: %s", c->label, gmf_errmsg());
        CHECK(fd_along(f, y, v, fd, work) == 0, "%s: RHS failed: %s", c->label, gmf_errmsg());
        worst = fmax(worst, relerr(N, jv, fd));
    }
    if (c->cov == VFD_COV_FULL) {
        double *J = tu_xmalloc(N * N * sizeof *J), *Jfd = tu_xmalloc(N * N * sizeof *Jfd);
        CHECK(gmf_flow_jac(f, y, J) == GMF_OK, "%s: gmf_flow_jac failed: %s", c->label,
              gmf_errmsg());
        memset(v, 0, N * sizeof *v);
        for (size_t j = 0; j < N; j++) {
            v[j] = 1.0;
            CHECK(fd_along(f, y, v, fd, work) == 0, "%s: RHS failed", c->label);
            v[j] = 0.0;
            for (size_t i = 0; i < N; i++)
                Jfd[i * N + j] = fd[i];
        }
        *densemax = fmax(*densemax, relerr(N * N, J, Jfd));
        if (gmf_flow_kind_of(f) == GMF_FLOW_EUCLID) {
            double asym = 0, scale = tu_max_abs(J, N * N);
            for (size_t i = 0; i < N; i++)
                for (size_t j = 0; j < i; j++)
                    asym = fmax(asym, fabs(J[i * N + j] - J[j * N + i]));
            *symmax = fmax(*symmax, asym / scale);
        }
        free(Jfd);
        free(J);
    }
    free(E);
    free(work);
    free(fd);
    free(jv);
    free(v);
    return worst;
}

static int run_case(const jcase *c, double *worst) {
    const size_t K = c->K, D = c->d + 1;
    vfd_problem pb;
    int rc = vfd_problem_init(&pb, c->n, c->d, K, GMF_TOY_RELU, c->seed);
    if (rc) {
        fprintf(stderr, "jac_fd: %s: %s\n", c->label, gmf_errmsg());
        worst[0] = INFINITY;
    } else {
        const size_t N = gmf_flow_dim(pb.fE);
        double *yE = tu_xmalloc(N * sizeof *yE), *yB = tu_xmalloc(N * sizeof *yB);
        gsl_rng *r = tu_rng(c->seed + 7000);
        make_state(c, r, yE);
        gmf_flow_euclid_to_bw(K, D, yE, yB);
        double dense = 0, sym = 0;
        double eE = check_form(c, pb.fE, yE, yE, r, &dense, &sym);
        double eB = check_form(c, pb.fB, yE, yB, r, &dense, &sym);
        printf("%-26s K=%zu D=%zu N=%4zu  jvp euclid %.2e  jvp bw %.2e", c->label, K, D, N, eE, eB);
        if (c->cov == VFD_COV_FULL) printf("  dense %.2e  asym %.2e", dense, sym);
        printf("\n");
        worst[0] = fmax(worst[0], fmax(eE, eB));
        worst[1] = fmax(worst[1], dense);
        worst[2] = fmax(worst[2], sym);
        gsl_rng_free(r);
        free(yB);
        free(yE);
    }
    vfd_problem_free(&pb);
    return rc;
}

int main(int argc, char **argv) {
    unsigned long seed = 11;
    const vh_opt opts[] = {{"--seed", VH_ULONG, &seed, NULL, NULL}};
    vh_parse(argc, argv, "jac_fd", "[--seed S]", opts, 1);
    vh_run run = vh_start("jac_fd");
    const jcase cases[] = {
        {"K=1 well-conditioned", 60, 2, 1, VFD_COV_FULL, seed},
        {"K=2 well-conditioned", 80, 3, 2, VFD_COV_FULL, seed + 1},
        {"K=3 well-conditioned", 100, 3, 3, VFD_COV_FULL, seed + 2},
        {"K=2 near-singular 1e6", 80, 3, 2, VFD_COV_NEAR, seed + 3},
        {"K=4 near-singular 1e6", 120, 5, 4, VFD_COV_NEAR, seed + 4},
        {"K=3 thin beta (sd 1e-2)", 100, 4, 3, VFD_COV_THIN, seed + 5},
        {"K=2 D=9 well-conditioned", 150, 8, 2, VFD_COV_FULL, seed + 6},
    };
    double worst[3] = {0, 0, 0}; /* JVP, dense, asymmetry */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK(run_case(&cases[i], worst) == GMF_OK, "%s: setup failed", cases[i].label);
    CHECK(worst[0] <= PASS_TOL, "JVP vs finite differences: %.3e > %.0e", worst[0], PASS_TOL);
    CHECK(worst[1] <= PASS_TOL, "dense J vs finite differences: %.3e > %.0e", worst[1], PASS_TOL);
    CHECK(worst[2] <= 1e-12, "Euclidean J not symmetric: %.3e > 1e-12", worst[2]);
    return vh_finish(&run, tu_failures() == 0,
                     "max relative error: JVP %.3e, dense %.3e (pass <= %.0e); Euclidean asymmetry "
                     "%.3e (pass <= 1e-12)",
                     worst[0], worst[1], PASS_TOL, worst[2]);
}
