/* flow_internal.h -- the layout of gmf_flow (gmflow/flow.h) and the helpers shared by flow.c,
 * flow_jac.c and wfr.c.  Internal to src/exact/; callers use the accessors in gmflow/flow.h. */
#ifndef GMFLOW_FLOW_INTERNAL_H
#define GMFLOW_FLOW_INTERNAL_H

#include "gmflow/flow.h"

struct gmf_flow {
    gmf_flow_kind kind;
    size_t K, D;
    gmf_oracle oracle;
    double *work; /* K (D + D^2): the BW state [mu | C C^T] (Euclidean form); then D x D */
    long nrhs;    /* right-hand side evaluations so far */
    long njvp;    /* Jacobian-vector products so far (gmf_flow_jvp; gmf_flow_jac adds N each) */
    double alpha; /* WFR kinds: the Fisher-Rao weight (>= 0; gmf_flow_new sets 1) */
    int wfr_flat; /* GMF_FLOW_WFR_BW only: 1 = transport speed scaled by K w_k (the image of
                   * GMF_FLOW_WFR_EUCLID, docs/WFR.md); 0 (default) = the WFR flow */
};

/* The WFR right-hand side and loss (called by gmf_flow_rhs / gmf_flow_loss; wfr.c). */
int gmf_flow_wfr_rhs_(gmf_flow *f, const double *y, double *ydot);
int gmf_flow_wfr_loss_(gmf_flow *f, const double *y, double *loss);
int gmf_flow_check_weights_(gmf_flow_kind kind, size_t K, const double *y);

#endif
