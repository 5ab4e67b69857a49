/* tests/tu_toy.h -- the flow tests' problem: the built-in regression toy (gmf_toy_make, its
 * defaults but n, d and the seed) and its squared-loss oracle.  tu_toy_new stops the test with
 * the library's message (exit status 1) when either cannot be made. */
#ifndef GMFLOW_TU_TOY_H
#define GMFLOW_TU_TOY_H

#include <stdlib.h>

#include "gmflow/sqloss.h"
#include "gmflow/toy.h"
#include "testutil.h"

typedef struct tu_toy {
    size_t n, d;    /* samples, input dimension (the flow's D is d + 1) */
    double *X, *y;  /* n x d inputs, n targets */
    gmf_sqloss *sq; /* the squared loss over them; gmf_sqloss_oracle(sq) for the flow */
} tu_toy;

static inline tu_toy tu_toy_new(size_t n, size_t d, unsigned long seed) {
    gmf_toy_opts to = gmf_toy_defaults();
    to.n = n, to.d = d, to.seed = seed;
    tu_toy t = {.n = n, .d = d};
    TU_OK(gmf_toy_make(&to, &t.X, &t.y));
    TU_OK(gmf_sqloss_new(&t.sq, n, d, t.X, t.y));
    return t;
}

static inline void tu_toy_free(tu_toy *t) {
    gmf_sqloss_free(t->sq);
    free(t->X), free(t->y);
}

#endif
