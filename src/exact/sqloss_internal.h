/* sqloss_internal.h -- what src/exact/sqloss_jvp.c needs of the squared-loss oracle (not public).
 * The oracle's struct stays private to sqloss.c; the derivative code reads the data through
 * these accessors and keeps its own workspace, so sqloss.c's blocked pass is untouched. */
#ifndef GMFLOW_SQLOSS_INTERNAL_H
#define GMFLOW_SQLOSS_INTERNAL_H

#include "gmflow/sqloss.h"

/* The inputs (n x d row-major) and the targets (n) held by the oracle. */
const double *gmf_sqloss_X_(const gmf_sqloss *s);
const double *gmf_sqloss_y_(const gmf_sqloss *s);

/* sqloss_jvp.c's workspace and cache, owned by the oracle: where it lives, and its destructor
 * (called by gmf_sqloss_free; NULL is fine). */
struct gmf_sqloss_jv;
struct gmf_sqloss_jv **gmf_sqloss_jv_(gmf_sqloss *s);
void gmf_sqloss_jv_free_(struct gmf_sqloss_jv *w);

/* The oracle's jvp member (gmf_oracle.jvp; ctx = gmf_sqloss *), in sqloss_jvp.c. */
int gmf_sqloss_jvp_(void *ctx, size_t K, const double *mu, const double *Sigma, const double *C,
                    const double *dmu, const double *dR, double *dgrad, double *dhessR);

#endif
