/* flow_toy.c -- integrate the Gaussian-mixture flow (Theorem 4) of a small regression problem
 * given as plain arrays, through the public API, and read the trajectory.
 *
 * Data: n = 40 inputs x_i in R^2 on a spiral, targets y_i = relu(x_i1) - 0.5 relu(x_i2).
 * Model: K = 2 Gaussian components over theta = (omega, beta) in R^3, f(x, theta) =
 * omega relu(beta . x).  The squared-loss oracle (gmflow/sqloss.h) gives the Bures-Wasserstein
 * flow of (mu_k, Sigma_k) (gmflow/flow.h), integrated by CVODE (gmflow/ode.h) with an observer
 * that records the loss and the means at 11 output times.
 *
 * Checks (exit 1 if one fails):
 *   - the loss never increases along the recorded trajectory (a gradient flow), and falls;
 *   - an independent, coarse integrator -- forward Euler with step 1e-3 on the same right-hand
 *     side -- lands on the same state at t = T to 1e-3 (Euler's O(h) error), and
 *     every Sigma_k(T) is still symmetric positive definite.
 *
 *   build/examples/flow_toy
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/gmflow.h"

#define N_SAMPLES 40
#define DIM_X     2
#define K_COMP    2
#define N_OUT     11
#define T_END     2.0

typedef struct {
    gmf_flow *flow;
    double loss[N_OUT];
    double mu0[N_OUT]; /* first coordinate (omega) of mu_0 at each output time */
} recorder;

/* Observer: called by gmf_ode_solve at every output time with the state y. */
static int record(size_t j, double t, const double *y, void *user) {
    (void)t;
    recorder *r = user;
    r->mu0[j] = gmf_flow_mu(r->flow, (double *)y, 0)[0];
    return gmf_flow_loss(r->flow, y, &r->loss[j]);
}

/* Forward Euler from t = 0 to T_END with step h (the coarse, independent route). */
static int euler(gmf_flow *f, double *y, double h) {
    const size_t N = gmf_flow_dim(f);
    double *dy = malloc(N * sizeof *dy);
    if (!dy) return GMF_ENOMEM;
    int rc = GMF_OK;
    for (long s = 0; s < lround(T_END / h) && !rc; s++) {
        rc = gmf_flow_rhs(f, y, dy);
        for (size_t i = 0; i < N; i++)
            y[i] += h * dy[i];
    }
    free(dy);
    return rc;
}

int main(void) {
    double X[N_SAMPLES * DIM_X], yv[N_SAMPLES];
    for (int i = 0; i < N_SAMPLES; i++) {
        double a = 0.4 * i, r = 0.2 + 0.05 * i;
        X[i * DIM_X] = r * cos(a), X[i * DIM_X + 1] = r * sin(a);
        yv[i] = fmax(X[i * DIM_X], 0.0) - 0.5 * fmax(X[i * DIM_X + 1], 0.0);
    }
    gmf_sqloss *sq = NULL;
    gmf_flow *flow = NULL;
    int rc = gmf_sqloss_new(&sq, N_SAMPLES, DIM_X, X, yv);
    if (!rc) rc = gmf_flow_new(&flow, GMF_FLOW_BW, K_COMP, gmf_sqloss_oracle(sq));
    if (rc) {
        fprintf(stderr, "flow_toy: %s: %s\n", gmf_strerror(rc), gmf_errmsg());
        gmf_sqloss_free(sq);
        return 1;
    }
    const size_t N = gmf_flow_dim(flow), D = gmf_flow_D(flow);
    double *y = calloc(N, sizeof *y), *ye = calloc(N, sizeof *ye);
    if (!y || !ye) return 1;
    /* the paper's initialization, gamma = 1/2: mu entries N(0, 1/4), Sigma_k = I / 4 */
    rc = gmf_toy_init_mixture(K_COMP, D, 0.5, 3, y, NULL, gmf_flow_mat(flow, y, 0));
    memcpy(ye, y, N * sizeof *y);

    double tout[N_OUT];
    for (int j = 0; j < N_OUT; j++)
        tout[j] = T_END * j / (N_OUT - 1);
    gmf_ode_opts o = gmf_ode_defaults(); /* CVODE Adams */
    o.rtol = 1e-10, o.atol = 1e-12;
    recorder rec = {.flow = flow};
    gmf_ode_stats st;
    if (!rc) rc = gmf_ode_solve(N, gmf_flow_ode_rhs, flow, y, tout, N_OUT, &o, record, &rec, &st);
    if (!rc) rc = euler(flow, ye, 1e-3);
    if (!rc) rc = gmf_flow_check_state(GMF_FLOW_BW, K_COMP, D, y);
    if (rc) {
        fprintf(stderr, "flow_toy: %s: %s\n", gmf_strerror(rc), gmf_errmsg());
        return 1;
    }

    int monotone = 1;
    printf("%6s %14s %12s\n", "t", "loss", "mu_0 omega");
    for (int j = 0; j < N_OUT; j++) {
        printf("%6.2f %14.8e %12.6f\n", tout[j], rec.loss[j], rec.mu0[j]);
        if (j && !(rec.loss[j] <= rec.loss[j - 1])) monotone = 0;
    }
    double diff = 0.0;
    for (size_t i = 0; i < N; i++)
        diff = fmax(diff, fabs(y[i] - ye[i]));
    printf("CVODE: %ld steps, %ld RHS evaluations; max |CVODE - Euler(h = 1e-3)| at t = %g: "
           "%.2e\n",
           st.nsteps, st.nfevals, T_END, diff);
    int pass = monotone && rec.loss[N_OUT - 1] < rec.loss[0] && diff < 1e-3;
    printf("flow_toy: loss %.4e -> %.4e, %s\n", rec.loss[0], rec.loss[N_OUT - 1],
           pass ? "PASS" : "FAIL");
    free(y), free(ye);
    gmf_flow_free(flow);
    gmf_sqloss_free(sq);
    return pass ? 0 : 1;
}
