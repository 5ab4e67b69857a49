/* toy.c -- regression toys (ReLU-network and planted-mixture teachers) and the paper's random
 * initial mixture.  All randomness from GSL's mt19937.
 *
 * Draw order (fixed, so that a seed names one data set):
 *   teacher parameters (relu: a_1..a_m then b_1..b_m row by row; mixture: mu*_1..mu*_m),
 *   then the inputs x_1..x_n row by row, then the noises e_1..e_n.
 */
#include "gmflow/toy.h"

#include <math.h>
#include <stdlib.h>

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

#include "gmflow/common.h"
#include "gmflow/gauss.h"

gmf_toy_opts gmf_toy_defaults(void) {
    gmf_toy_opts o = {
        .n = 200, .d = 3, .teacher = GMF_TOY_RELU, .width = 4, .noise = 0.05, .seed = 1};
    return o;
}

int gmf_toy_make(const gmf_toy_opts *o, double **X_out, double **y_out) {
    *X_out = *y_out = NULL;
    if (o->n < 1 || o->d < 1 || o->width < 1)
        return gmf_error(GMF_EINVAL,
                         "toy data: need n >= 1, d >= 1, width >= 1 (got %zu, %zu, %zu)", o->n,
                         o->d, o->width);
    if (o->teacher != GMF_TOY_RELU && o->teacher != GMF_TOY_MIXTURE)
        return gmf_error(GMF_EINVAL, "toy data: unknown teacher %d", (int)o->teacher);
    if (!(o->noise >= 0) || !isfinite(o->noise))
        return gmf_error(GMF_EINVAL, "toy data: noise must be finite and >= 0 (got %g)", o->noise);
    size_t n = o->n, d = o->d, m = o->width, D = d + 1;
    if (n > ((size_t)1 << 34) / d || m > ((size_t)1 << 26) / (D * D))
        return gmf_error(GMF_EINVAL, "toy data: problem too large (n = %zu, d = %zu, width = %zu)",
                         n, d, m);

    int rc = GMF_OK;
    double *X = gmf_calloc(n * d, sizeof(double), "toy inputs");
    double *y = gmf_calloc(n, sizeof(double), "toy targets");
    double *pa = NULL, *pb = NULL, *Sigma = NULL;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (!X || !y || !r) {
        rc = gmf_error(GMF_ENOMEM, "toy data: out of memory");
        goto done;
    }
    gsl_rng_set(r, o->seed);

    if (o->teacher == GMF_TOY_RELU) {
        pa = gmf_calloc(m, sizeof(double), "teacher a");
        pb = gmf_calloc(m * d, sizeof(double), "teacher b");
        if (!pa || !pb) {
            rc = GMF_ENOMEM;
            goto done;
        }
        for (size_t j = 0; j < m; j++)
            pa[j] = gsl_ran_gaussian(r, 2.0); /* N(0, 4) */
        double sb = 1.0 / sqrt((double)d);    /* N(0, I/d) */
        for (size_t j = 0; j < m * d; j++)
            pb[j] = gsl_ran_gaussian(r, sb);
    } else {
        pa = gmf_calloc(m * D, sizeof(double), "teacher mu*");
        Sigma = gmf_calloc(D * D, sizeof(double), "teacher Sigma*");
        if (!pa || !Sigma) {
            rc = GMF_ENOMEM;
            goto done;
        }
        for (size_t j = 0; j < m * D; j++)
            pa[j] = gsl_ran_gaussian(r, 1.0);
        for (size_t i = 0; i < D; i++)
            Sigma[i * D + i] = 0.25; /* I_D / 4 */
    }
    for (size_t i = 0; i < n * d; i++)
        X[i] = gsl_ran_gaussian(r, 1.0);

    for (size_t i = 0; i < n; i++) {
        const double *x = X + i * d;
        double h = 0;
        if (o->teacher == GMF_TOY_RELU) {
            for (size_t j = 0; j < m; j++) {
                double z = 0;
                for (size_t l = 0; l < d; l++)
                    z += pb[j * d + l] * x[l];
                h += pa[j] * (z > 0 ? z : 0);
            }
        } else {
            for (size_t j = 0; j < m; j++) {
                gmf_gauss_point p;
                gmf_gauss_eval1(d, x, pa + j * D, Sigma, &p, NULL, NULL, NULL, NULL);
                h += p.Ef;
            }
        }
        y[i] = h / (double)m;
    }
    for (size_t i = 0; i < n; i++)
        y[i] += o->noise * gsl_ran_gaussian(r, 1.0);
    if (!gmf_all_finite(y, n)) {
        rc = gmf_error(GMF_EDIVERGE, "toy data: non-finite targets");
        goto done;
    }
    *X_out = X, *y_out = y;
    X = y = NULL;
done:
    if (r) gsl_rng_free(r);
    free(X);
    free(y);
    free(pa);
    free(pb);
    free(Sigma);
    return rc;
}

int gmf_toy_init_mixture(size_t K, size_t D, double gamma, unsigned long seed, double *mu,
                         double *C, double *Sigma) {
    if (K < 1 || D < 1) return gmf_error(GMF_EINVAL, "init mixture: need K >= 1 and D >= 1");
    if (!(gamma > 0) || !isfinite(gamma))
        return gmf_error(GMF_EINVAL, "init mixture: gamma must be finite and > 0 (got %g)", gamma);
    if (!mu) return gmf_error(GMF_EINVAL, "init mixture: mu is NULL");
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (!r) return gmf_error(GMF_ENOMEM, "init mixture: out of memory");
    gsl_rng_set(r, seed);
    for (size_t i = 0; i < K * D; i++)
        mu[i] = gsl_ran_gaussian(r, gamma);
    gsl_rng_free(r);
    for (size_t k = 0; k < K; k++)
        for (size_t i = 0; i < D; i++)
            for (size_t j = 0; j < D; j++) {
                size_t at = (k * D + i) * D + j;
                if (C) C[at] = i == j ? gamma : 0.0;
                if (Sigma) Sigma[at] = i == j ? gamma * gamma : 0.0;
            }
    return GMF_OK;
}
