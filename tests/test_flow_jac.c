/* test_flow_jac.c -- the exact Jacobian wired into CVODE's BDF (ode.c attach_linsol).
 *
 * On a small toy (n 60, d 2, K 2, both forms, t in [0, 30]):
 *   - BDF with each linear solver (dq, jvp, dense, auto) reaches the same final state as GSL's
 *     rk8pd at rtol 1e-10 (an independent explicit integrator), to 1e-6 relative (measured 5e-9);
 *   - the statistics show which solver ran: exact JVPs counted by the flow (gmf_flow_njvp) equal
 *     CVODE's Jtimes count for jvp, dense Jacobian evaluations > 0 for dense, no JVPs of the
 *     flow for dq; auto picks dense for N <= GMF_ODE_DENSE_MAX with a Jacobian, jvp without one;
 *   - jvp without an exact JVP is refused with a message; an oracle without jvp makes
 *     gmf_flow_jvp fail;
 *   - the JVP is linear and its cache is keyed on the state: J(y) v at y, then at another y',
 *     then at y again gives the first answer bitwise, and differs at y'.
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
#include "testutil.h"
#include "tu_toy.h"

#define NT 4

static int solve(gmf_flow *f, const double *y0, int method, int jacobian, int with_jac, double *y,
                 gmf_ode_stats *st) {
    const size_t N = gmf_flow_dim(f);
    const double tout[NT] = {0, 1, 10, 30};
    gmf_ode_opts o = gmf_ode_defaults();
    o.method = method;
    o.rtol = method == GMF_ODE_GSL_RK8PD ? 1e-10 : 1e-8;
    o.atol = 1e-12;
    o.jvp = gmf_flow_ode_jvp;
    o.jac = with_jac ? gmf_flow_ode_jac : NULL;
    o.jacobian = jacobian;
    memcpy(y, y0, N * sizeof *y);
    return gmf_ode_solve(N, gmf_flow_ode_rhs, f, y, tout, NT, &o, NULL, NULL, st);
}

static void check_form(gmf_sqloss *sq, gmf_flow_kind kind, size_t K, size_t D) {
    const char *name = kind == GMF_FLOW_BW ? "bw" : "euclid";
    gmf_flow *f;
    CHECK(gmf_flow_new(&f, kind, K, gmf_sqloss_oracle(sq)) == GMF_OK, "init: %s", gmf_errmsg());
    if (!f) return;
    const size_t N = gmf_flow_dim(f);
    double *y0 = tu_xmalloc(N * sizeof *y0), *ref = tu_xmalloc(N * sizeof *ref);
    double *y = tu_xmalloc(N * sizeof *y);
    CHECK(gmf_toy_init_mixture(K, D, 0.5, 3, y0, kind == GMF_FLOW_EUCLID ? y0 + K * D : NULL,
                               kind == GMF_FLOW_BW ? y0 + K * D : NULL) == GMF_OK,
          "init mixture");
    gmf_ode_stats st;
    CHECK(solve(f, y0, GMF_ODE_GSL_RK8PD, 0, 0, ref, &st) == GMF_OK, "rk8pd: %s", gmf_errmsg());
    const struct {
        int jacobian, with_jac, expect;
    } runs[] = {{GMF_ODE_JAC_DQ, 1, GMF_ODE_JAC_DQ},
                {GMF_ODE_JAC_JVP, 1, GMF_ODE_JAC_JVP},
                {GMF_ODE_JAC_DENSE, 1, GMF_ODE_JAC_DENSE},
                {GMF_ODE_JAC_AUTO, 1, GMF_ODE_JAC_DENSE},
                {GMF_ODE_JAC_AUTO, 0, GMF_ODE_JAC_JVP}};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        const char *jn = gmf_ode_jacobian_name(runs[r].jacobian);
        long jv0 = gmf_flow_njvp(f);
        int rc = solve(f, y0, GMF_ODE_CVODE_BDF, runs[r].jacobian, runs[r].with_jac, y, &st);
        CHECK(rc == GMF_OK, "%s %s: %s", name, jn, gmf_errmsg());
        double err = tu_max_abs_diff(y, ref, N) / tu_max_abs(ref, N);
        CHECK(err <= 1e-6, "%s %s: final state differs from rk8pd by %.3e", name, jn, err);
        CHECK(st.jacobian == runs[r].expect, "%s %s: used %s, expected %s", name, jn,
              gmf_ode_jacobian_name(st.jacobian), gmf_ode_jacobian_name(runs[r].expect));
        long njvp = gmf_flow_njvp(f) - jv0;
        if (runs[r].expect == GMF_ODE_JAC_DQ)
            CHECK(njvp == 0 && st.njvevals > 0, "%s dq: %ld exact JVPs, %ld DQ", name, njvp,
                  st.njvevals);
        if (runs[r].expect == GMF_ODE_JAC_JVP)
            CHECK(njvp == st.njvevals && njvp > 0, "%s %s: flow counted %ld JVPs, CVODE %ld", name,
                  jn, njvp, st.njvevals);
        if (runs[r].expect == GMF_ODE_JAC_DENSE)
            CHECK(st.njevals > 0 && njvp == st.njevals * (long)N, "%s %s: %ld Jacobians, %ld JVPs",
                  name, jn, st.njevals, njvp);
        printf("%-6s %-5s -> %-5s steps %5ld rhs %6ld jvp %6ld jac %3ld  |y - rk8pd| %.2e\n", name,
               jn, gmf_ode_jacobian_name(st.jacobian), st.nsteps, st.nfevals, st.njvevals,
               st.njevals, err);
    }
    /* jvp demanded without an exact JVP: refused */
    gmf_ode_opts o = gmf_ode_defaults();
    o.method = GMF_ODE_CVODE_BDF, o.jacobian = GMF_ODE_JAC_JVP;
    const double tout[2] = {0, 1};
    memcpy(y, y0, N * sizeof *y);
    CHECK(gmf_ode_solve(N, gmf_flow_ode_rhs, f, y, tout, 2, &o, NULL, NULL, NULL) == GMF_EINVAL &&
              strstr(gmf_errmsg(), "jvp"),
          "%s: jvp without a JVP: '%s'", name, gmf_errmsg());
    /* the cache follows the state */
    double *v = tu_xmalloc(N * sizeof *v), *a = tu_xmalloc(N * sizeof *a);
    double *b = tu_xmalloc(N * sizeof *b), *c = tu_xmalloc(N * sizeof *c);
    gsl_rng *rng = tu_rng(5);
    tu_randn(rng, N, 1.0, v);
    CHECK(gmf_flow_jvp(f, y0, v, a) == GMF_OK, "jvp at y0");
    CHECK(gmf_flow_jvp(f, ref, v, b) == GMF_OK, "jvp at y(30)");
    CHECK(gmf_flow_jvp(f, y0, v, c) == GMF_OK, "jvp at y0 again");
    CHECK(memcmp(a, c, N * sizeof *a) == 0, "%s: JVP at y0 changed after another state", name);
    CHECK(tu_max_abs_diff(a, b, N) > 1e-6 * tu_max_abs(a, N), "%s: JVP ignores the state", name);
    gsl_rng_free(rng);
    free(c), free(b), free(a), free(v);
    free(y), free(ref), free(y0);
    gmf_flow_free(f);
}

int main(void) {
    tu_toy toy = tu_toy_new(60, 2, 4);
    check_form(toy.sq, GMF_FLOW_BW, 2, toy.d + 1);
    check_form(toy.sq, GMF_FLOW_EUCLID, 2, toy.d + 1);
    /* an oracle without jvp */
    gmf_oracle o = gmf_sqloss_oracle(toy.sq);
    o.jvp = NULL;
    gmf_flow *f;
    CHECK(gmf_flow_new(&f, GMF_FLOW_BW, 1, o) == GMF_OK, "init");
    double y[12] = {0.1, 0.2, 0.3, 1, 0, 0, 0, 1, 0, 0, 0, 1}, v[12] = {1}, jv[12];
    CHECK(f && gmf_flow_jvp(f, y, v, jv) == GMF_EINVAL && strstr(gmf_errmsg(), "no Jacobian"),
          "no jvp: '%s'", gmf_errmsg());
    gmf_flow_free(f);
    tu_toy_free(&toy);
    return tu_finish("test_flow_jac");
}
