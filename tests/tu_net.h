/* tu_net.h -- a whole network on a random batch, for the gradient tests of the nn layers
 * (test_nn_grad.c, test_nn_lowrank.c, test_nn_weights.c); header only, everything static inline,
 * on top of testutil.h.
 *
 *   tu_net_init       X (B x d) ~ N(0, 1), labels uniform in 0..L (drawn in that order from r), a
 *                     double workspace for nthreads, and g = the gradient of the mean batch loss
 *                     at the model's parameters (CHECKed finite);
 *   tu_net_loss       the mean batch loss at the model's current parameters (a tu_objective:
 *                     perturb m->params, call it);
 *   tu_net_check_groups   every parameter group's g against tu_check_fd (step 1e-6 max(|p|, 0.1)),
 *                     labelled "net <desc> T=<threads> d/d<group>";
 *   tu_net_check_accumulate   two accumulating loss_grad calls give gacc = 2 g (1e-12 relative);
 *   tu_net_free       frees the batch, g and the workspace (not the model).
 */
#ifndef GMFLOW_TU_NET_H
#define GMFLOW_TU_NET_H

#include <stdint.h>

#include "gmflow/common.h"
#include "gmflow/nn.h"
#include "testutil.h"

typedef struct tu_net {
    gmf_nn_model *m;
    gmf_nn_ws_d *ws;
    double *X;  /* B x d */
    uint8_t *y; /* B */
    size_t B;
    double *g; /* m->nparams: d(mean loss)/d params at the start */
} tu_net;

static inline void tu_net_init(tu_net *c, gmf_nn_model *m, size_t B, int nthreads, gsl_rng *r,
                               const char *what) {
    c->m = m, c->B = B;
    c->X = tu_xmalloc(B * m->d * sizeof *c->X);
    c->y = tu_xmalloc(B * sizeof *c->y);
    tu_randn(r, B * m->d, 1.0, c->X);
    for (size_t i = 0; i < B; i++)
        c->y[i] = (uint8_t)gsl_rng_uniform_int(r, m->L + 1);
    TU_OK(gmf_nn_ws_new_d(&c->ws, m, B, nthreads));
    const double loss = gmf_nn_loss_grad_d(c->ws, c->X, c->y, B, 1.0 / (double)B, 0);
    CHECK(isfinite(loss), "%s: loss not finite", what);
    c->g = tu_xmalloc(m->nparams * sizeof *c->g);
    memcpy(c->g, gmf_nn_ws_grad_d(c->ws), m->nparams * sizeof *c->g);
}

static inline double tu_net_loss(void *vc) {
    tu_net *c = vc;
    gmf_nn_ws_load_d(c->ws);
    double *H = gmf_nn_ws_logits_d(c->ws);
    gmf_nn_forward_d(H, c->ws, c->X, c->B);
    return gmf_nn_refloss_d(NULL, NULL, H, c->y, 1.0, c->B, c->m->L) / (double)c->B;
}

static inline void tu_net_check_groups(tu_net *c, const char *desc, int nthreads, double hfix,
                                       double tol, tu_worst *w) {
    const gmf_nn_model *m = c->m;
    char what[160];
    for (size_t gi = 0; gi < m->ngroups; gi++) {
        snprintf(what, sizeof what, "net %s T=%d d/d%s", desc, nthreads, m->group[gi].name);
        tu_check_fd(what, m->params + m->group[gi].off, m->group[gi].n, c->g + m->group[gi].off,
                    tu_net_loss, c, 0.1, hfix, NULL, tol, w);
    }
}

static inline void tu_net_check_accumulate(tu_net *c, const char *what) {
    const size_t B = c->B, n = c->m->nparams;
    gmf_nn_ws_load_d(c->ws);
    gmf_nn_loss_grad_d(c->ws, c->X, c->y, B, 1.0 / (double)B, 1);
    gmf_nn_loss_grad_d(c->ws, c->X, c->y, B, 1.0 / (double)B, 1);
    const double *gacc = gmf_nn_ws_grad_acc_d(c->ws);
    double acc = 0.0;
    for (size_t e = 0; e < n; e++)
        acc = fmax(acc, fabs(gacc[e] - 2 * c->g[e]));
    CHECK(acc <= 1e-12 * (1 + tu_max_abs(c->g, n)), "%s: accumulate error %g", what, acc);
}

static inline void tu_net_free(tu_net *c) {
    gmf_nn_ws_free_d(c->ws);
    free(c->g);
    free(c->y);
    free(c->X);
}

#endif
