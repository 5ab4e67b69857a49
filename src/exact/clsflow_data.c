/* clsflow_data.c -- the paper's random initialization of a classification state and the
 * Gaussian-blob classification toy (GSL mt19937; kept apart from clsflow.c because GSL's
 * randist header and OpenBLAS's cblas.h cannot share a translation unit). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

#include "gmflow/clsflow.h"
#include "gmflow/common.h"

int gmf_clsflow_init_paper(const gmf_clsflow_layout *lo, double gamma, unsigned long seed,
                           double *theta) {
    if (!(gamma >= 0) || !isfinite(gamma))
        return gmf_error(GMF_EINVAL, "initialization: gamma must be finite and >= 0 (got %g)",
                         gamma);
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (!r) return gmf_error(GMF_ENOMEM, "initialization: out of memory");
    gsl_rng_set(r, seed);
    const size_t K = lo->K, d = lo->d, L = lo->L;
    for (size_t e = 0; e < K * d; e++)
        theta[lo->mu + e] = gsl_ran_gaussian(r, gamma);
    for (size_t e = 0; e < K * L * d; e++)
        theta[lo->U + e] = gsl_ran_gaussian(r, gamma);
    for (size_t e = 0; e < K * L; e++)
        theta[lo->v + e] = gsl_ran_gaussian(r, gamma);
    for (size_t k = 0; k < K; k++) {
        double *cv = theta + lo->covo + k * lo->ncov;
        if (lo->cov == GMF_CLSFLOW_FULL) {
            memset(cv, 0, d * d * sizeof(double));
            for (size_t j = 0; j < d; j++)
                cv[j * d + j] = gamma;
        } else {
            for (size_t j = 0; j < d; j++)
                cv[j] = gamma;
        }
    }
    gsl_rng_free(r);
    return GMF_OK;
}

int gmf_clsflow_blobs(size_t n, size_t d, size_t nclass, double sep, unsigned long seed,
                      double **X_out, uint8_t **y_out) {
    *X_out = NULL;
    *y_out = NULL;
    if (!n || !d || nclass < 2 || nclass > 256 || !(sep >= 0) || !isfinite(sep))
        return gmf_error(GMF_EINVAL,
                         "blobs: need n, d >= 1, 2 <= nclass <= 256 and a finite sep >= 0 (got "
                         "n=%zu, d=%zu, nclass=%zu, sep=%g)",
                         n, d, nclass, sep);
    double *X = gmf_calloc(n * d, sizeof(double), "blob inputs");
    uint8_t *y = gmf_calloc(n, 1, "blob labels");
    double *ctr = gmf_calloc(nclass * d, sizeof(double), "blob centres");
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (!X || !y || !ctr || !r) {
        free(X), free(y), free(ctr);
        if (r) gsl_rng_free(r);
        return gmf_error(GMF_ENOMEM, "blobs: out of memory");
    }
    gsl_rng_set(r, seed);
    for (size_t e = 0; e < nclass * d; e++)
        ctr[e] = gsl_ran_gaussian(r, sep);
    for (size_t i = 0; i < n; i++) {
        y[i] = (uint8_t)(i % nclass);
        for (size_t j = 0; j < d; j++)
            X[i * d + j] = ctr[y[i] * d + j] + gsl_ran_gaussian(r, 1.0);
    }
    gsl_rng_free(r);
    free(ctr);
    *X_out = X;
    *y_out = y;
    return GMF_OK;
}
