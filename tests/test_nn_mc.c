/* test_nn_mc.c -- the closed-form GM layers of nn.h against Monte Carlo sampling of neurons.
 *
 * A GM layer is the expectation of a fully connected network's output over neurons drawn from
 * the mixture: h(x) = (1/K) sum_k E_{beta ~ N(mu_k, Sigma_k)} [(U_k beta + v_k) relu(beta . x)].
 * For each case, NDRAW = 2^18 (> 1e5) neurons are drawn per component (stratified over k, GSL's
 * mt19937, independent of the library's own generator), and for every output entry (i, l)
 *     z = |h_closed - h_mc| / (SE + 1e-13),   SE = sqrt(sum_k var_k / NDRAW) / K,
 * must be <= 5.  There are ~60 entries in all, so a correct closed form fails with probability
 * ~1e-5; the seed is fixed, so the result is deterministic.  Cases: the diagonal layer (generic
 * and with sigma near 0 / an input with s = 0, where the MC variance is 0 and the closed form
 * must be exact), the full-covariance layer (C_k with a zero column), the regression layer
 * (joint Gaussians over (omega, beta), sqloss.h's closed forms), and the library's own Monte
 * Carlo reduction gmf_nn_fc_from_gm (a width-2^18 FC network from the GM layer: its output is a
 * Monte Carlo estimate of the GM layer's, with k drawn uniformly).  The worst z is printed last.
 */
#include "gmflow/nn.h"
#include "testutil.h"

#define NDRAW (1L << 18)
#define ZMAX  5.0

static tu_worst worst;

/* Compare closed-form H (B x L) with stratified MC sums. */
static void compare(const char *tag, const double *H, const double *sum, const double *sum2,
                    size_t K, size_t B, size_t L) {
    tu_check_strat_mc(tag, H, sum, sum2, K, B, L, NDRAW, ZMAX, &worst);
    printf("  %-44s worst z so far %.2f\n", tag, worst.value);
}

/* Diagonal (full = 0) or full-covariance (full = 1) classification layer. */
static void layer_case(const char *tag, int full, size_t B, size_t d, size_t K, size_t L, double *X,
                       double *P, gsl_rng *r) {
    double H[B * L];
    if (full) {
        gmf_nn_gmfull_cache_d c;
        gmf_nn_gmfull_cache_init_d(&c, B, d, K, L);
        gmf_nn_gmfull_forward_d(H, &c, X, P, B, d, K, L);
        gmf_nn_gmfull_cache_free_d(&c);
    } else {
        gmf_nn_gm_cache_d c;
        gmf_nn_gm_cache_init_d(&c, B, d, K, L);
        gmf_nn_gm_forward_d(H, &c, X, P, B, d, K, L);
        gmf_nn_gm_cache_free_d(&c);
    }
    const double *mu = P, *cov = P + K * d, *U = cov + (full ? K * d * d : K * d),
                 *v = U + K * L * d;
    double *sum = calloc(K * B * L, sizeof(double)), *sum2 = calloc(K * B * L, sizeof(double));
    double beta[d], z[d], omega[L];
    for (size_t k = 0; k < K; k++)
        for (long n = 0; n < NDRAW; n++) {
            tu_randn(r, d, 1.0, z);
            for (size_t a = 0; a < d; a++) {
                double acc = mu[k * d + a];
                if (full)
                    for (size_t e = 0; e < d; e++)
                        acc += cov[k * d * d + a * d + e] * z[e];
                else
                    acc += cov[k * d + a] * z[a];
                beta[a] = acc;
            }
            tu_mc_neuron_add(beta, U + k * L * d, v + k * L, X, B, d, L, omega, sum + k * B * L,
                             sum2 + k * B * L);
        }
    compare(tag, H, sum, sum2, K, B, L);
    free(sum), free(sum2);
}

/* The library's Monte Carlo reduction: an FC network of NDRAW neurons drawn from the layer. */
static void reduction_case(size_t B, size_t d, size_t K, size_t L, double *X, double *P) {
    gmf_nn_model gm, fc;
    gmf_nn_model_init(&gm, GMF_NN_GM, d, L, K, 0, 0);
    memcpy(gm.params, P, gm.nparams * sizeof(double));
    gmf_nn_model_init(&fc, GMF_NN_FC, d, L, 0, NDRAW, 0);
    gmf_nn_rng rng;
    gmf_nn_rng_seed(&rng, 99, 1);
    CHECK(gmf_nn_fc_from_gm(&fc, &gm, GMF_NN_FROM_GM_SAMPLE, &rng) == 0, "fc_from_gm failed");
    double H[B * L];
    gmf_nn_gm_cache_d c;
    gmf_nn_gm_cache_init_d(&c, B, d, K, L);
    gmf_nn_gm_forward_d(H, &c, X, P, B, d, K, L);
    gmf_nn_gm_cache_free_d(&c);
    /* FC output and the per-neuron spread (for the SE of a plain, unstratified mean) */
    tu_check_fc_mc(H, fc.params, NDRAW, X, B, d, L, ZMAX, &worst);
    /* and the library's own forward of that network gives the same mean */
    gmf_nn_ws_d *ws;
    TU_OK(gmf_nn_ws_new_d(&ws, &fc, B, 1));
    gmf_nn_forward_d(gmf_nn_ws_logits_d(ws), ws, X, B);
    double Hfc[B * L];
    memcpy(Hfc, gmf_nn_ws_logits_d(ws), sizeof Hfc);
    gmf_nn_ws_free_d(ws);
    double maxz = 0.0;
    for (size_t e = 0; e < B * L; e++)
        maxz = fmax(maxz, fabs(Hfc[e] - H[e]));
    printf("  %-44s worst z so far %.2f (max |h_fc - h_gm| = %.3g)\n",
           "gmf_nn_fc_from_gm, m = 2^18 neurons", worst.value, maxz);
    /* width-K means init: beta_k = mu_k, omega_k = U_k mu_k + v_k, exactly */
    gmf_nn_model fk;
    gmf_nn_model_init(&fk, GMF_NN_FC, d, L, 0, K, 0);
    CHECK(gmf_nn_fc_from_gm(&fk, &gm, GMF_NN_FROM_GM_MEANS, NULL) == 0, "means init failed");
    double e = 0.0;
    for (size_t k = 0; k < K; k++) {
        for (size_t a = 0; a < d; a++)
            e = fmax(e, fabs(fk.params[k * d + a] - P[k * d + a]));
        for (size_t l = 0; l < L; l++) {
            double want = P[2 * K * d + K * L * d + k * L + l];
            for (size_t a = 0; a < d; a++)
                want += P[2 * K * d + (k * L + l) * d + a] * P[k * d + a];
            e = fmax(e, fabs(fk.params[K * d + k * L + l] - want));
        }
    }
    CHECK(e <= 1e-14 && fk.fc_scale == 1.0 / (double)K, "width-K means init: error %g", e);
    gmf_nn_model_free(&fk), gmf_nn_model_free(&fc), gmf_nn_model_free(&gm);
}

/* The regression layer: theta = (omega, beta) ~ N(mu_k, C_k C_k^T), f = omega relu(beta . x). */
static void regression_case(gsl_rng *r) {
    const size_t n = 4, d = 3, D = 4, K = 2;
    double X[n * d], y[n], P[K * (D + D * D)], pred[n];
    tu_randn(r, n * d, 1.0, X);
    tu_randn(r, n, 1.0, y);
    tu_randn(r, K * (D + D * D), 0.6, P);
    gmf_nn_gmreg *g;
    CHECK(gmf_nn_gmreg_new(&g, K, n, d, X, y) == 0, "gmreg new");
    CHECK(gmf_nn_gmreg_forward(pred, NULL, g, P) == 0, "gmreg forward");
    gmf_nn_gmreg_free(g);
    double *sum = calloc(K * n, sizeof(double)), *sum2 = calloc(K * n, sizeof(double));
    double z[D], th[D];
    for (size_t k = 0; k < K; k++) {
        const double *mu = P + k * D, *C = P + K * D + k * D * D;
        for (long s = 0; s < NDRAW; s++) {
            tu_randn(r, D, 1.0, z);
            for (size_t a = 0; a < D; a++) {
                double acc = mu[a];
                for (size_t b = 0; b < D; b++)
                    acc += C[a * D + b] * z[b];
                th[a] = acc;
            }
            for (size_t i = 0; i < n; i++) {
                double u = 0.0;
                for (size_t a = 0; a < d; a++)
                    u += th[1 + a] * X[i * d + a];
                const double f = u > 0 ? th[0] * u : 0.0;
                sum[k * n + i] += f, sum2[k * n + i] += f * f;
            }
        }
    }
    compare("regression layer (joint omega, beta)", pred, sum, sum2, K, n, 1);
    free(sum), free(sum2);
}

int main(void) {
    gsl_rng *r = tu_rng(424242);
    tu_worst_init(&worst);
    {
        const size_t B = 4, d = 6, K = 3, L = 2;
        double X[B * d], P[K * (2 * d + L * d + L)];
        tu_randn(r, B * d, 1.0, X);
        tu_randn(r, K * (2 * d + L * d + L), 0.5, P);
        layer_case("gm diagonal, generic", 0, B, d, K, L, X, P, r);
        reduction_case(B, d, K, L, X, P);
        /* sigma near 0 for component 0, and an input with s = 0 for component 1 */
        for (size_t j = 0; j < d; j++)
            P[K * d + j] = 1e-3;
        for (size_t j = 0; j < d; j += 2)
            P[K * d + d + j] = 0.0; /* sigma_1 zero on even j */
        for (size_t j = 0; j < d; j += 2)
            X[3 * d + j + 1] = 0.0; /* x_3 zero on odd j */
        layer_case("gm diagonal, sigma~0 and s=0", 0, B, d, K, L, X, P, r);
    }
    {
        const size_t B = 3, d = 4, K = 2, L = 3;
        double X[B * d], P[K * (d + d * d + L * d + L)];
        tu_randn(r, B * d, 1.0, X);
        tu_randn(r, K * (d + d * d + L * d + L), 0.5, P);
        for (size_t a = 0; a < d; a++)
            P[K * d + a * d + 1] = 0.0; /* C_0 column 1 zero */
        layer_case("gm full covariance", 1, B, d, K, L, X, P, r);
    }
    regression_case(r);
    gsl_rng_free(r);
    printf("worst z: %.3f (%s)\n", worst.value, worst.what);
    return tu_finish("test_nn_mc");
}
