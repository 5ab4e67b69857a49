/* test_nn_lowrank_mc.c -- the low-rank covariance GM layer (gm-lowrank) against Monte Carlo
 * sampling of neurons, the route of tests/test_nn_mc.c.
 *
 * The layer is h(x) = (1/K) sum_k E[(U_k beta + v_k) relu(beta . x)] with beta ~ N(mu_k, Sigma_k),
 * Sigma_k = diag(sigma_k^2) + V_k V_k^T.  Here beta is drawn as mu_k + sigma_k * z + V_k z' with
 * z ~ N(0, I_d), z' ~ N(0, I_r) independent (covariance diag(sigma^2) + V V^T: never forming
 * Sigma_k or its factor), omega = U_k beta + v_k, NDRAW = 2^18 draws per component (stratified
 * over k, GSL's mt19937, independent of the library's generator).  For every output entry
 *     z = |h_closed - h_mc| / (SE + 1e-13),   SE = sqrt(sum_k var_k / NDRAW) / K,
 * must be <= 5 (about 50 entries: a correct closed form fails with probability ~1e-5; the seed
 * is fixed).  Cases: generic (r = 2 < d); sigma = 0 (Sigma = V V^T, rank 2 < d = 5) with an
 * input orthogonal to V_k's columns, where s = 0, the Monte Carlo variance of that input's
 * beta . x is 0 and the closed form must be exact (relu(m) (U mu + v)); r = d with a large V;
 * and the library's own Monte Carlo reduction gmf_nn_fc_from_gm on a gm-lowrank model (2^18
 * neurons, k drawn uniformly: a plain mean) against the closed form.
 */
#include "gmflow/common.h"
#include "gmflow/nn.h"
#include "testutil.h"

#define NDRAW (1L << 18)
#define ZMAX  5.0

static tu_worst worst;

static void closed(double *H, const double *X, const double *P, size_t B, size_t d, size_t K,
                   size_t L, size_t r) {
    gmf_nn_gmlr_cache_d c;
    if (gmf_nn_gmlr_cache_init_d(&c, B, d, K, L, r)) exit(2);
    gmf_nn_gmlr_forward_d(H, &c, X, P, B, d, K, L, r);
    gmf_nn_gmlr_cache_free_d(&c);
}

/* Stratified Monte Carlo of the layer, compared entry by entry with the closed form. */
static void mc_case(const char *tag, size_t B, size_t d, size_t K, size_t L, size_t r,
                    const double *X, const double *P, gsl_rng *g) {
    double H[B * L];
    closed(H, X, P, B, d, K, L, r);
    const double *mu = P, *sigma = P + K * d, *U = sigma + K * d, *v = U + K * L * d,
                 *V = v + K * L; /* V: K x r x d, row q of component k = column q of V_k */
    double *sum = calloc(K * B * L, sizeof(double)), *sum2 = calloc(K * B * L, sizeof(double));
    double beta[d], z[d], zr[r], omega[L];
    for (size_t k = 0; k < K; k++)
        for (long n = 0; n < NDRAW; n++) {
            tu_randn(g, d, 1.0, z);
            tu_randn(g, r, 1.0, zr);
            for (size_t a = 0; a < d; a++) {
                double b = mu[k * d + a] + sigma[k * d + a] * z[a];
                for (size_t q = 0; q < r; q++)
                    b += V[(k * r + q) * d + a] * zr[q];
                beta[a] = b;
            }
            tu_mc_neuron_add(beta, U + k * L * d, v + k * L, X, B, d, L, omega, sum + k * B * L,
                             sum2 + k * B * L);
        }
    tu_check_strat_mc(tag, H, sum, sum2, K, B, L, NDRAW, ZMAX, &worst);
    printf("  %-48s worst z so far %.2f\n", tag, worst.value);
    free(sum), free(sum2);
}

/* gmf_nn_fc_from_gm on a gm-lowrank model: NDRAW neurons, their mean output vs the closed form. */
static void reduction_case(size_t B, size_t d, size_t K, size_t L, size_t r, const double *X,
                           const double *P) {
    gmf_nn_model gm, fc;
    if (gmf_nn_model_init(&gm, GMF_NN_GMLR, d, L, K, r, 0) ||
        gmf_nn_model_init(&fc, GMF_NN_FC, d, L, 0, NDRAW, 0))
        exit(2);
    memcpy(gm.params, P, gm.nparams * sizeof(double));
    gmf_nn_rng rng;
    gmf_nn_rng_seed(&rng, 99, 1);
    CHECK(gmf_nn_fc_from_gm(&fc, &gm, GMF_NN_FROM_GM_SAMPLE, &rng) == 0, "fc_from_gm: %s",
          gmf_errmsg());
    double H[B * L];
    closed(H, X, P, B, d, K, L, r);
    tu_check_fc_mc(H, fc.params, NDRAW, X, B, d, L, ZMAX, &worst);
    printf("  %-48s worst z so far %.2f\n", "gmf_nn_fc_from_gm (gm-lowrank), 2^18 neurons",
           worst.value);
    gmf_nn_model_free(&fc), gmf_nn_model_free(&gm);
}

int main(void) {
    gsl_rng *g = tu_rng(151515);
    tu_worst_init(&worst);
    printf("low-rank GM layer vs Monte Carlo (seed %lu, %ld draws per component):\n", tu_seed(),
           (long)NDRAW);
    { /* generic */
        const size_t B = 4, d = 6, K = 3, L = 2, r = 2, np = gmf_nn_gmlr_nparams(d, K, L, r);
        double X[B * d], P[np];
        tu_randn(g, B * d, 1.0, X);
        tu_randn(g, np, 0.5, P);
        mc_case("generic (d=6 K=3 L=2 r=2)", B, d, K, L, r, X, P, g);
        reduction_case(B, d, K, L, r, X, P);
    }
    { /* sigma = 0: Sigma = V V^T; input 2 orthogonal to every V_k's columns: s = 0 */
        const size_t B = 3, d = 5, K = 2, L = 3, r = 2, np = gmf_nn_gmlr_nparams(d, K, L, r);
        double X[B * d], P[np];
        tu_randn(g, B * d, 1.0, X);
        tu_randn(g, np, 0.6, P);
        memset(P + K * d, 0, K * d * sizeof(double));
        double *V = P + K * (2 * d + L * d + L);
        for (size_t e = 0; e < K * r * d; e++) /* V's columns in span(e_0, e_1, e_2) */
            if (e % d >= 3) V[e] = 0.0;
        X[2 * d + 0] = X[2 * d + 1] = X[2 * d + 2] = 0.0; /* x_2 in span(e_3, e_4) */
        mc_case("sigma=0, Sigma = V V^T, an input with s = 0", B, d, K, L, r, X, P, g);
        double H[B * L];
        closed(H, X, P, B, d, K, L, r);
        double err = 0.0, want[L]; /* s = 0: h = (1/K) sum_k relu(m_k) (U_k mu_k + v_k) */
        for (size_t l = 0; l < L; l++) {
            want[l] = 0.0;
            for (size_t k = 0; k < K; k++) {
                double m = 0.0, a = P[K * (2 * d + L * d) + k * L + l];
                for (size_t j = 0; j < d; j++)
                    m += X[2 * d + j] * P[k * d + j],
                        a += P[2 * K * d + (k * L + l) * d + j] * P[k * d + j];
                want[l] += (m > 0 ? m : 0) * a / (double)K;
            }
            err = fmax(err, fabs(H[2 * L + l] - want[l]) / (fabs(want[l]) + 1e-300));
        }
        CHECK(err <= 1e-14, "s = 0: closed form %.3g from relu(m) (U mu + v)", err);
        printf("  %-48s relative error %.2e\n", "s = 0 exactly: relu(m) (U mu + v)", err);
    }
    { /* r = d, V larger than the diagonal part */
        const size_t B = 3, d = 3, K = 2, L = 2, r = 3, np = gmf_nn_gmlr_nparams(d, K, L, r);
        double X[B * d], P[np];
        tu_randn(g, B * d, 1.0, X);
        tu_randn(g, np, 0.5, P);
        for (size_t e = K * (2 * d + L * d + L); e < np; e++)
            P[e] *= 3.0;
        mc_case("r = d = 3, large V", B, d, K, L, r, X, P, g);
    }
    gsl_rng_free(g);
    printf("worst z: %.3f (%s)\n", worst.value, worst.what);
    return tu_finish("test_nn_lowrank_mc");
}
