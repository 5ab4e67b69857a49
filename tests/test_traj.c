/* test_traj.c -- the flow helpers moved out of the CLI, each against an independent route:
 *
 *   gmf_flow_bw_to_euclid   C lower triangular with a positive diagonal and C C^T = Sigma (the
 *                           product formed here by plain loops, not by the library's SYRK), on
 *                           random SPD matrices of condition up to 1e6; a non-PD Sigma named.
 *   gmf_flow_time_convert   the paper's rescaling t_E = K t_BW, both ways, and the identity.
 *   gmf_traj (recorder)     the same integration observed by a plain observer here that stores
 *                           raw states: the recorded mu, Sigma (= C C^T for euclid), C, t, loss
 *                           (gmf_flow_loss of the stored state) must agree bitwise.
 *   gmf_traj_thm1_distance  (a) equals a distance computed here from the arrays, (b) Theorem 1:
 *                           a BW and an Euclidean run at matching times agree to 1e-8, (c) the
 *                           control without the time rescaling must be far off (> 1e-3).
 *   gmf_traj_check_start    atol 0 with CVODE, an output interval beyond CVODE's first-step rule,
 *                           a huge or non-finite state entry: each rejected with its issue; a
 *                           sane start accepted.
 *   gmf_traj_time_grid      both ends exact, strictly increasing; indistinguishable times and an
 *                           overflowing end rejected.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/flow.h"
#include "gmflow/ode.h"
#include "gmflow/sqloss.h"
#include "gmflow/toy.h"
#include "gmflow/traj.h"
#include "testutil.h"

static void test_bw_to_euclid(gsl_rng *r) {
    const size_t K = 3, D = 5, N = K * (D + D * D);
    double *ys = tu_xmalloc(N * sizeof(double)), *yc = tu_xmalloc(N * sizeof(double));
    double conds[3] = {1.0, 1e3, 1e6};
    tu_randn(r, K * D, 1.0, ys);
    for (size_t k = 0; k < K; k++) {
        double *L = tu_xmalloc(D * D * sizeof(double));
        tu_rand_spd(r, D, conds[k], 2.0, ys + gmf_flow_mat_offset(K, D, k), L);
        free(L);
    }
    CHECK(gmf_flow_bw_to_euclid(K, D, ys, yc) == GMF_OK, "bw_to_euclid: %s", gmf_errmsg());
    CHECK(memcmp(ys, yc, K * D * sizeof(double)) == 0, "means copied");
    for (size_t k = 0; k < K; k++) {
        const double *C = yc + gmf_flow_mat_offset(K, D, k), *S = ys + gmf_flow_mat_offset(K, D, k);
        double worst = 0, scale = tu_max_abs(S, D * D);
        int lower = 1, posdiag = 1;
        for (size_t a = 0; a < D; a++) {
            posdiag &= C[a * D + a] > 0;
            for (size_t b = 0; b < D; b++) {
                if (b > a) lower &= C[a * D + b] == 0.0;
                double p = 0;
                for (size_t c = 0; c < D; c++)
                    p += C[a * D + c] * C[b * D + c];
                worst = fmax(worst, fabs(p - S[a * D + b]) / scale);
            }
        }
        CHECK(lower && posdiag, "component %zu: C lower triangular with a positive diagonal", k);
        CHECK(worst <= 1e-13, "component %zu (cond %g): max |C C^T - Sigma| / max |Sigma| = %.3g",
              k, conds[k], worst);
    }
    /* a Sigma with a negative eigenvalue in component 1 */
    double *S1 = ys + gmf_flow_mat_offset(K, D, 1);
    S1[0] = -1.0;
    int rc = gmf_flow_bw_to_euclid(K, D, ys, yc);
    CHECK(rc == GMF_ENOTPD && strstr(gmf_errmsg(), "component 1"),
          "non-PD Sigma: rc %d, message '%s'", rc, gmf_errmsg());
    free(ys), free(yc);
}

static void test_time_convert(void) {
    CHECK(gmf_flow_time_convert(2.5, GMF_FLOW_BW, GMF_FLOW_EUCLID, 4) == 10.0, "bw -> euclid");
    CHECK(gmf_flow_time_convert(10.0, GMF_FLOW_EUCLID, GMF_FLOW_BW, 4) == 2.5, "euclid -> bw");
    CHECK(gmf_flow_time_convert(3.0, GMF_FLOW_BW, GMF_FLOW_BW, 4) == 3.0, "bw -> bw");
    CHECK(gmf_flow_time_convert(3.0, GMF_FLOW_EUCLID, GMF_FLOW_EUCLID, 4) == 3.0, "identity");
}

/* a plain observer: raw states */
typedef struct {
    size_t N;
    double *Y, *t;
} raw;
static int store(size_t j, double t, const double *y, void *user) {
    raw *r = user;
    memcpy(r->Y + j * r->N, y, r->N * sizeof(double));
    r->t[j] = t;
    return 0;
}

typedef struct {
    size_t n, d, K, D;
    double *X, *yv, *ybw, *yeu;
    gmf_sqloss *sq;
} problem;

static void problem_make(problem *p) {
    gmf_toy_opts to = gmf_toy_defaults();
    to.n = 120, to.d = 2;
    p->n = to.n, p->d = to.d, p->K = 3, p->D = 3;
    const size_t K = p->K, D = p->D, N = K * (D + D * D);
    CHECK(gmf_toy_make(&to, &p->X, &p->yv) == GMF_OK, "toy: %s", gmf_errmsg());
    CHECK(gmf_sqloss_new(&p->sq, p->n, p->d, p->X, p->yv) == GMF_OK, "sqloss: %s", gmf_errmsg());
    p->ybw = tu_xmalloc(N * sizeof(double));
    p->yeu = tu_xmalloc(N * sizeof(double));
    CHECK(gmf_toy_init_mixture(K, D, 0.5, 7, p->ybw, p->yeu + gmf_flow_mat_offset(K, D, 0),
                               p->ybw + gmf_flow_mat_offset(K, D, 0)) == GMF_OK,
          "init");
    memcpy(p->yeu, p->ybw, K * D * sizeof(double));
}

static void problem_free(problem *p) {
    gmf_sqloss_free(p->sq);
    free(p->X), free(p->yv), free(p->ybw), free(p->yeu);
}

/* recorder vs a raw observer on the same integration */
static void test_recorder(problem *p, gmf_flow_kind kind) {
    const size_t K = p->K, D = p->D, N = K * (D + D * D), T = 6;
    const double *y0 = kind == GMF_FLOW_BW ? p->ybw : p->yeu;
    double tout[6];
    CHECK(gmf_traj_time_grid(0.0, 1.0, T, tout) == GMF_OK, "grid");
    gmf_ode_opts o = gmf_ode_defaults();
    gmf_traj *tr = NULL;
    CHECK(gmf_traj_new(&tr, kind, T, K, D) == GMF_OK, "new: %s", gmf_errmsg());
    gmf_ode_stats st;
    CHECK(gmf_traj_integrate(tr, gmf_sqloss_oracle(p->sq), y0, tout, &st, &o) == GMF_OK,
          "integrate: %s", gmf_errmsg());
    CHECK(gmf_traj_done(tr) == T && st.nsteps > 0, "all %zu times recorded", T);
    raw r = {N, tu_xmalloc(T * N * sizeof(double)), tu_xmalloc(T * sizeof(double))};
    gmf_flow *f;
    CHECK(gmf_flow_new(&f, kind, K, gmf_sqloss_oracle(p->sq)) == GMF_OK, "flow: %s", gmf_errmsg());
    if (!f) return;
    double *y = tu_xmalloc(N * sizeof(double)), *bw = tu_xmalloc(N * sizeof(double));
    memcpy(y, y0, N * sizeof(double));
    CHECK(gmf_ode_solve(N, gmf_flow_ode_rhs, f, y, tout, T, &o, store, &r, NULL) == GMF_OK,
          "raw solve: %s", gmf_errmsg());
    int same = 1;
    for (size_t j = 0; j < T; j++) {
        const double *Y = r.Y + j * N;
        if (kind == GMF_FLOW_EUCLID) {
            same &= !memcmp(gmf_traj_C(tr) + j * K * D * D, Y + gmf_flow_mat_offset(K, D, 0),
                            K * D * D * sizeof(double));
            gmf_flow_euclid_to_bw(K, D, Y, bw);
        } else {
            memcpy(bw, Y, N * sizeof(double));
        }
        same &= !memcmp(gmf_traj_mu(tr) + j * K * D, bw, K * D * sizeof(double));
        same &= !memcmp(gmf_traj_Sigma(tr) + j * K * D * D, bw + gmf_flow_mat_offset(K, D, 0),
                        K * D * D * sizeof(double));
        double loss = NAN;
        same &= gmf_flow_loss(f, Y, &loss) == GMF_OK;
        same &= loss == gmf_traj_loss(tr)[j] && r.t[j] == gmf_traj_t(tr)[j];
        same &= j == 0 || gmf_traj_nrhs(tr)[j] >= gmf_traj_nrhs(tr)[j - 1];
    }
    CHECK(same, "%s: recorded trajectory equals the raw states bitwise",
          kind == GMF_FLOW_BW ? "bw" : "euclid");
    CHECK((gmf_traj_C(tr) != NULL) == (kind == GMF_FLOW_EUCLID), "C recorded for euclid only");
    CHECK(gmf_traj_loss(tr)[T - 1] < gmf_traj_loss(tr)[0], "the loss decreases");
    gmf_flow_free(f);
    free(y), free(bw), free(r.Y), free(r.t);
    gmf_traj_free(tr);
}

/* the distance from the arrays, computed here */
static void own_distance(const gmf_traj *bw, const gmf_traj *eu, double *es, double *em) {
    const size_t T = gmf_traj_T(bw), K = gmf_traj_K(bw), D = gmf_traj_D(bw);
    *es = *em = 0;
    for (size_t j = 0; j < T; j++) {
        const double *a = gmf_traj_mu(bw) + j * K * D, *b = gmf_traj_mu(eu) + j * K * D;
        double dm = 0, nm = 0;
        for (size_t i = 0; i < K * D; i++)
            dm += (a[i] - b[i]) * (a[i] - b[i]), nm += a[i] * a[i];
        *em = fmax(*em, sqrt(dm / nm));
        for (size_t k = 0; k < K; k++) {
            const double *S = gmf_traj_Sigma(bw) + (j * K + k) * D * D;
            const double *C = gmf_traj_C(eu) + (j * K + k) * D * D;
            double d = 0, m = 0;
            for (size_t x = 0; x < D; x++)
                for (size_t y = 0; y < D; y++) {
                    double cc = 0;
                    for (size_t z = 0; z < D; z++)
                        cc += C[x * D + z] * C[y * D + z];
                    d += (S[x * D + y] - cc) * (S[x * D + y] - cc),
                        m += S[x * D + y] * S[x * D + y];
                }
            *es = fmax(*es, sqrt(d / m));
        }
    }
}

static void test_thm1(problem *p, int rescale) {
    const size_t K = p->K, D = p->D, T = 5;
    double tE[5], tB[5];
    CHECK(gmf_traj_time_grid(0.0, 3.0, T, tE) == GMF_OK, "grid");
    for (size_t j = 0; j < T; j++)
        tB[j] = rescale ? gmf_flow_time_convert(tE[j], GMF_FLOW_EUCLID, GMF_FLOW_BW, K) : tE[j];
    gmf_ode_opts o = gmf_ode_defaults();
    o.rtol = 1e-11, o.atol = 1e-13;
    gmf_traj *bw = NULL, *eu = NULL;
    gmf_traj_new(&bw, GMF_FLOW_BW, T, K, D);
    gmf_traj_new(&eu, GMF_FLOW_EUCLID, T, K, D);
    double *yb = tu_xmalloc(K * (D + D * D) * sizeof(double));
    gmf_flow_euclid_to_bw(K, D, p->yeu, yb);
    CHECK(gmf_traj_integrate(bw, gmf_sqloss_oracle(p->sq), yb, tB, NULL, &o) == GMF_OK, "bw: %s",
          gmf_errmsg());
    CHECK(gmf_traj_integrate(eu, gmf_sqloss_oracle(p->sq), p->yeu, tE, NULL, &o) == GMF_OK,
          "euclid: %s", gmf_errmsg());
    double es, em, os, om;
    CHECK(gmf_traj_thm1_distance(eu, bw, &es, &em) == GMF_OK, "distance: %s", gmf_errmsg());
    own_distance(bw, eu, &os, &om);
    CHECK_CLOSE(es, os, 1e-3, 1e-14, "Sigma distance vs the one computed here (C C^T by loops)");
    CHECK_CLOSE(em, om, 1e-12, 1e-300, "mu distance vs the one computed here");
    if (rescale)
        CHECK(es <= 1e-8 && em <= 1e-8, "Theorem 1: Sigma %.3g, mu %.3g <= 1e-8", es, em);
    else
        CHECK(es > 1e-3 && em > 1e-3, "control without rescaling: Sigma %.3g, mu %.3g > 1e-3", es,
              em);
    printf("  thm1 distance (%s): Sigma %.3e, mu %.3e\n", rescale ? "t_BW = t_E / K" : "control",
           es, em);
    CHECK(gmf_traj_thm1_distance(bw, bw, &es, &em) == GMF_EINVAL, "two bw trajectories refused");
    free(yb);
    gmf_traj_free(bw), gmf_traj_free(eu);
}

static void test_check_start(problem *p) {
    const size_t K = p->K, D = p->D, N = K * (D + D * D);
    gmf_oracle or = gmf_sqloss_oracle(p->sq);
    double tout[3] = {0, 1, 2}, big[3] = {0, 1e299, 2e299};
    gmf_ode_opts o = gmf_ode_defaults();
    gmf_traj_start_issue is;
    CHECK(gmf_traj_check_start(GMF_FLOW_BW, K, or, p->ybw, tout, 3, &o, &is) == GMF_OK &&
              is == GMF_TRAJ_START_OK,
          "sane start: %s", gmf_errmsg());
    o.atol = 0;
    CHECK(gmf_traj_check_start(GMF_FLOW_BW, K, or, p->ybw, tout, 3, &o, &is) == GMF_EINVAL &&
              is == GMF_TRAJ_START_TOLERANCE,
          "atol 0 with adams");
    o.method = GMF_ODE_GSL_RK8PD;
    CHECK(gmf_traj_check_start(GMF_FLOW_BW, K, or, p->ybw, tout, 3, &o, &is) == GMF_OK,
          "atol 0 with rk8pd: %s", gmf_errmsg());
    CHECK(gmf_traj_check_start(GMF_FLOW_BW, K, or, p->ybw, big, 3, &o, &is) == GMF_OK,
          "rk8pd has no first-step floor: %s", gmf_errmsg());
    o = gmf_ode_defaults();
    CHECK(gmf_traj_check_start(GMF_FLOW_BW, K, or, p->ybw, big, 3, &o, &is) == GMF_EINVAL &&
              is == GMF_TRAJ_START_TIMES && strstr(gmf_errmsg(), "first step"),
          "adams over [0, 1e299]: %s", gmf_errmsg());
    double *y = tu_xmalloc(N * sizeof(double));
    memcpy(y, p->ybw, N * sizeof(double));
    y[gmf_flow_mat_offset(K, D, 2)] = 1e308;
    CHECK(gmf_traj_check_start(GMF_FLOW_BW, K, or, y, tout, 3, &o, &is) == GMF_EINVAL &&
              is == GMF_TRAJ_START_STATE && strstr(gmf_errmsg(), "component 2"),
          "Sigma entry 1e308: %s", gmf_errmsg());
    y[gmf_flow_mat_offset(K, D, 2)] = NAN;
    CHECK(gmf_traj_check_start(GMF_FLOW_BW, K, or, y, tout, 3, &o, &is) == GMF_EINVAL &&
              is == GMF_TRAJ_START_STATE,
          "NaN entry");
    free(y);
}

static void test_grid(void) {
    double t[4];
    CHECK(gmf_traj_time_grid(1.0, 3.0, 4, t) == GMF_OK && t[0] == 1.0 && t[3] == 4.0 &&
              t[1] > t[0] && t[2] > t[1] && t[3] > t[2],
          "grid 1..4");
    CHECK(gmf_traj_time_grid(1e20, 1.0, 4, t) == GMF_EINVAL, "times too close at t0 = 1e20");
    CHECK(gmf_traj_time_grid(1e308, 1e308, 4, t) == GMF_EINVAL, "overflowing end");
}

int main(void) {
    gsl_rng *r = tu_rng(11);
    printf("test_traj: seed %lu\n", tu_seed());
    test_bw_to_euclid(r);
    test_time_convert();
    problem p = {0};
    problem_make(&p);
    test_recorder(&p, GMF_FLOW_BW);
    test_recorder(&p, GMF_FLOW_EUCLID);
    test_thm1(&p, 1);
    test_thm1(&p, 0);
    test_check_start(&p);
    test_grid();
    problem_free(&p);
    gsl_rng_free(r);
    return tu_finish("test_traj");
}
