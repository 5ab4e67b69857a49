/* nn_gmreg.c -- the GM regression layer: K full joint Gaussians over theta = (omega, beta) with
 * the squared loss, as a discrete layer.  No closed form is re-derived here: the loss and the
 * predictions come from the squared-loss oracle (sqloss.c), and the gradient of
 * l(mu, C) = L(rho) is minus the Euclidean flow's right-hand side (flow.c, GMF_FLOW_EUCLID):
 * d/dt (mu, C) = -grad l(mu, C) (Theorem 1). */
#include <stdlib.h>

#include "gmflow/common.h"
#include "gmflow/flow.h"
#include "gmflow/nn.h"
#include "gmflow/sqloss.h"

struct gmf_nn_gmreg {
    size_t n, d, D, K;
    gmf_sqloss *sq;
    gmf_flow *flow; /* GMF_FLOW_EUCLID over sq's oracle */
    double *rhs;    /* K (D + D^2) scratch: the velocity; the forward pass's BW state */
};

int gmf_nn_gmreg_new(gmf_nn_gmreg **out, size_t K, size_t n, size_t d, const double *X,
                     const double *y) {
    if (!out) return gmf_error(GMF_EINVAL, "GM regression layer: null output");
    *out = NULL;
    if (K == 0) return gmf_error(GMF_EINVAL, "GM regression layer: need K >= 1");
    gmf_nn_gmreg *g = gmf_calloc(1, sizeof *g, "GM regression layer");
    if (!g) return GMF_ENOMEM;
    int rc = gmf_sqloss_new(&g->sq, n, d, X, y);
    if (rc) {
        free(g);
        return rc;
    }
    rc = gmf_flow_new(&g->flow, GMF_FLOW_EUCLID, K, gmf_sqloss_oracle(g->sq));
    if (rc) {
        gmf_sqloss_free(g->sq);
        free(g);
        return rc;
    }
    g->n = n, g->d = d, g->D = d + 1, g->K = K;
    g->rhs = gmf_calloc(gmf_flow_dim(g->flow), sizeof(double), "GM regression gradient");
    if (!g->rhs) {
        gmf_nn_gmreg_free(g);
        return GMF_ENOMEM;
    }
    *out = g;
    return GMF_OK;
}

void gmf_nn_gmreg_free(gmf_nn_gmreg *g) {
    if (!g) return;
    gmf_flow_free(g->flow);
    gmf_sqloss_free(g->sq);
    free(g->rhs);
    free(g);
}

int gmf_nn_gmreg_forward(double *pred, double *loss, gmf_nn_gmreg *g, const double *P) {
    /* the oracle evaluates at (mu, Sigma = C C^T): convert the Euclidean state */
    const size_t dim = gmf_flow_dim(g->flow);
    double *bw = g->rhs; /* K (D + D^2), used by the backward pass only after this returns */
    if (!gmf_all_finite(P, dim))
        return gmf_error(GMF_EDIVERGE, "GM regression layer: parameters are not finite");
    gmf_flow_euclid_to_bw(g->K, g->D, P, bw);
    return gmf_sqloss_eval(g->sq, g->K, bw, bw + g->K * g->D, pred, loss);
}

int gmf_nn_gmreg_backward(double *dP, double *loss, gmf_nn_gmreg *g, const double *P) {
    const size_t dim = gmf_flow_dim(g->flow);
    int rc = gmf_flow_rhs(g->flow, P, g->rhs);
    if (rc) return rc;
    for (size_t e = 0; e < dim; e++)
        dP[e] = -g->rhs[e]; /* grad l = -(d/dt of the flow) */
    if (loss) *loss = gmf_flow_last_loss(g->flow);
    return GMF_OK;
}

int gmf_nn_gmreg_gd_step(double *P, double *loss, gmf_nn_gmreg *g, double lr) {
    const size_t dim = gmf_flow_dim(g->flow);
    int rc = gmf_flow_rhs(g->flow, P, g->rhs);
    if (rc) return rc;
    if (loss) *loss = gmf_flow_last_loss(g->flow);
    for (size_t e = 0; e < dim; e++)
        P[e] += lr * g->rhs[e]; /* P -= lr grad */
    return GMF_OK;
}
