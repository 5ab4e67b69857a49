/* test_sqloss_oracle.c -- the blocked squared-loss oracle of src/exact/sqloss.c against two
 * straightforward references, on random, ill-conditioned and degenerate mixtures.
 *
 * The library's oracle (docs/PERFORMANCE.md, P1) makes one pass over blocks of nb samples with
 * two batched GEMMs per block and fused hand loops.  It is compared, output by output, with
 *
 *   naive   sample by sample through gauss.h's reference evaluation gmf_gauss_eval1 (no BLAS):
 *           h_i = (1/K) sum_k Ef_ik, r_i = y_i - h_i, rho_i = -(2/n) r_i, and per component
 *             grad  = sum_i rho_i E_k grad f(x_i)
 *             hessR = sum_i rho_i stein_ik                 (BW: R = Sigma_k)
 *                   = sum_i rho_i E_k[hess f(x_i)] C_k     (Euclidean: R = C_k)
 *           with E[hess f] = Phi (e0 xt^T + xt e0^T) + (kap/s) xt xt^T (the delta term absent when
 *           s == 0, as gauss.h says);
 *   old     the previous per-component implementation of src/exact/sqloss.c (2 K + 1 GEMMs, 3 K GEMVs,
 *           n K cblas_ddot/cblas_dscal calls), kept in tests/sqloss_old.h (bench/bench_rhs.c
 *           times the library beside it).
 *
 * Both are summed in a different order from the library, so they agree with it to rounding only.
 * The measure is normwise per output: max_e |lib_e - ref_e| / max_e |ref_e| over one component's
 * grad (D entries) or hessR (D x D), required <= 1e-13; also the loss and the predictions of
 * gmf_sqloss_eval.  When a reference output is identically zero (Sigma = 0 gives hessR = 0 in the
 * BW form) the library's must be zero too up to 1e-13 of the corresponding sum of |terms|.
 *
 * Block sizes: the library uses nb = max(32, 32768 / (K (D + 2))) samples per block (at most n).
 * The cases below include n = 1, n < nb, n = nb - 1, nb, nb + 1, and several blocks with a
 * remainder, which nb_of() computes from the same rule; if the rule changes, the coverage lines
 * printed below say so (the results are still checked).
 *
 * Cases: random well-conditioned; ill-conditioned (Sigma_k with cond 1e10, input columns scaled
 * over 6 orders of magnitude); degenerate (K = 1; rows x_i = 0; Sigma_k exactly singular along
 * some x_i, so s = 0 exactly; Sigma_k = 0, all point masses; the far tail |m| > 38 s); d = 1;
 * the number of components changing between prepares (buffer reuse); component() called twice
 * and out of order (it must be idempotent); component(K) rejected.
 */
/* cblas_* from OpenBLAS, declared by GSL's header (testutil.h pulls it in; OpenBLAS's cblas.h would
 * clash with it) */
#include <gsl/gsl_cblas.h>

#include "gmflow/common.h"
#include "gmflow/gauss.h"
#include "gmflow/sqloss.h"
#include "sqloss_old.h"
#include "testutil.h"

#define SEED 20261129UL
#define TOL  1e-13

static tu_worst worst_naive, worst_old;

static size_t nb_of(size_t n, size_t d, size_t K) {
    size_t ld = K * (d + 3), nb = 32768 / ld;
    if (nb < 32) nb = 32;
    return nb < n ? nb : n;
}

/* ---------------------------------------------------------------- naive: gauss.h per sample */

/* grad (K x D), hessR (K x D x D), and the sums of |terms| agrad, ahess (same shapes); r (n). */
static double naive(size_t n, size_t d, size_t K, const double *X, const double *y,
                    const double *mu, const double *Sigma, const double *C, double *grad,
                    double *hessR, double *agrad, double *ahess, double *r) {
    const size_t D = d + 1;
    double *gr = tu_xmalloc(D * sizeof(double)), *he = tu_xmalloc(D * D * sizeof(double)),
           *st = tu_xmalloc(D * D * sizeof(double)), *hr = tu_xmalloc(D * D * sizeof(double));
    double loss = 0.0;
    for (size_t i = 0; i < n; i++) {
        double h = 0.0;
        for (size_t k = 0; k < K; k++) {
            gmf_gauss_point p;
            gmf_gauss_eval1(d, X + i * d, mu + k * D, Sigma + k * D * D, &p, NULL, NULL, NULL,
                            NULL);
            h += p.Ef;
        }
        r[i] = y[i] - h / (double)K;
        loss += r[i] * r[i];
    }
    memset(grad, 0, K * D * sizeof(double));
    memset(hessR, 0, K * D * D * sizeof(double));
    memset(agrad, 0, K * D * sizeof(double));
    memset(ahess, 0, K * D * D * sizeof(double));
    for (size_t k = 0; k < K; k++)
        for (size_t i = 0; i < n; i++) {
            const double rho = -2.0 / (double)n * r[i];
            gmf_gauss_eval1(d, X + i * d, mu + k * D, Sigma + k * D * D, NULL, gr, he, st, NULL);
            const double *term = st;
            if (C) { /* E[hess f] C_k */
                tu_matmul(D, D, D, he, C + k * D * D, hr);
                term = hr;
            }
            for (size_t a = 0; a < D; a++) {
                grad[k * D + a] += rho * gr[a];
                agrad[k * D + a] += fabs(rho * gr[a]);
            }
            for (size_t a = 0; a < D * D; a++) {
                hessR[k * D * D + a] += rho * term[a];
                ahess[k * D * D + a] += fabs(rho * term[a]);
            }
        }
    free(gr), free(he), free(st), free(hr);
    return loss / (double)n;
}

/* ---------------------------------------------------------------- comparison */

/* Normwise relative difference of got against want (m entries); when want is identically zero,
 * relative to the largest sum of |terms| (or exact equality when that is zero too). */
static double rel(const double *got, const double *want, const double *aterm, size_t m) {
    double den = tu_max_abs(want, m);
    if (den == 0.0 && aterm) den = tu_max_abs(aterm, m);
    double num = tu_max_abs_diff(got, want, m);
    if (num == 0.0) return 0.0;
    return den > 0.0 ? num / den : INFINITY;
}

typedef struct {
    const char *name;
    size_t n, d, K;
    double *X, *y, *mu, *Sigma, *C; /* C (K x D x D) with Sigma_k = C_k C_k^T */
} problem;

static void problem_alloc(problem *p, const char *name, size_t n, size_t d, size_t K) {
    const size_t D = d + 1;
    p->name = name, p->n = n, p->d = d, p->K = K;
    p->X = tu_xmalloc(n * d * sizeof(double));
    p->y = tu_xmalloc(n * sizeof(double));
    p->mu = tu_xmalloc(K * D * sizeof(double));
    p->Sigma = tu_xmalloc(K * D * D * sizeof(double));
    p->C = tu_xmalloc(K * D * D * sizeof(double));
}

static void problem_free(problem *p) {
    free(p->X), free(p->y), free(p->mu), free(p->Sigma), free(p->C);
}

/* Sigma_k = C_k C_k^T (exactly symmetric) for every k. */
static void sigma_from_C(problem *p) {
    const size_t D = p->d + 1;
    for (size_t k = 0; k < p->K; k++)
        tu_gram(D, D, p->C + k * D * D, p->Sigma + k * D * D);
}

/* Random data: x ~ N(0, I), y ~ N(0, 1), mu ~ N(0, 1/4), C_k random with Sigma_k of condition
 * `cond` and scale `scale`. */
static void problem_random(gsl_rng *rng, problem *p, double cond, double scale) {
    const size_t n = p->n, d = p->d, D = d + 1, K = p->K;
    tu_randn(rng, n * d, 1.0, p->X);
    tu_randn(rng, n, 1.0, p->y);
    tu_randn(rng, K * D, 0.5, p->mu);
    for (size_t k = 0; k < K; k++)
        tu_rand_spd(rng, D, cond, scale, p->Sigma + k * D * D, p->C + k * D * D);
    sigma_from_C(p); /* so that C C^T == Sigma to rounding in both forms */
}

/* Run the library, the old oracle and the naive reference on p in both forms; check. */
static void check_problem(const problem *p) {
    const size_t n = p->n, d = p->d, D = d + 1, K = p->K;
    gmf_sqloss *sq = NULL;
    int rc = gmf_sqloss_new(&sq, n, d, p->X, p->y);
    CHECK(rc == GMF_OK, "%s: gmf_sqloss_new: %s", p->name, gmf_errmsg());
    if (rc) return;
    gmf_oracle o = gmf_sqloss_oracle(sq);
    CHECK(o.D == D, "%s: oracle D = %zu", p->name, o.D);
    double *grad = tu_xmalloc(K * D * sizeof(double)),
           *hess = tu_xmalloc(K * D * D * sizeof(double));
    double *ng = tu_xmalloc(K * D * sizeof(double)), *nh = tu_xmalloc(K * D * D * sizeof(double));
    double *ag = tu_xmalloc(K * D * sizeof(double)), *ah = tu_xmalloc(K * D * D * sizeof(double));
    double *og = tu_xmalloc(D * sizeof(double)), *oh = tu_xmalloc(D * D * sizeof(double));
    double *g2 = tu_xmalloc(D * sizeof(double)), *h2 = tu_xmalloc(D * D * sizeof(double));
    double *r = tu_xmalloc(n * sizeof(double)), *pred = tu_xmalloc(n * sizeof(double));
    sqold old;
    sqold_init(&old, n, d, p->X, p->y);
    for (int form = 0; form < 2; form++) {
        const char *fname = form ? "euclid" : "bw";
        const double *C = form ? p->C : NULL;
        rc = o.prepare(o.ctx, K, p->mu, p->Sigma, C);
        CHECK(rc == GMF_OK, "%s/%s: prepare: %s", p->name, fname, gmf_errmsg());
        if (rc) continue;
        /* components in reverse order, then component 0 again (idempotent, any order) */
        for (size_t kk = K; kk-- > 0;) {
            rc = o.component(o.ctx, kk, grad + kk * D, hess + kk * D * D);
            CHECK(rc == GMF_OK, "%s/%s: component %zu: %s", p->name, fname, kk, gmf_errmsg());
        }
        rc = o.component(o.ctx, 0, g2, h2);
        CHECK(rc == GMF_OK && !memcmp(g2, grad, D * sizeof(double)) &&
                  !memcmp(h2, hess, D * D * sizeof(double)),
              "%s/%s: component 0 called twice differs", p->name, fname);
        CHECK(o.component(o.ctx, K, g2, h2) == GMF_EINVAL, "%s/%s: component K accepted", p->name,
              fname);
        const double loss = o.loss(o.ctx);
        const double nloss = naive(n, d, K, p->X, p->y, p->mu, p->Sigma, C, ng, nh, ag, ah, r);
        CHECK(sqold_prepare(&old, K, p->mu, p->Sigma, C) == GMF_OK, "%s/%s: old oracle failed",
              p->name, fname);
        const double el = tu_relerr(loss, nloss, 1e-300), eo = tu_relerr(loss, old.loss, 1e-300);
        CHECK(el <= TOL && eo <= TOL, "%s/%s: loss %.17g, naive %.17g, old %.17g", p->name, fname,
              loss, nloss, old.loss);
        tu_worst_update(&worst_naive, el, "%s/%s loss", p->name, fname);
        tu_worst_update(&worst_old, eo, "%s/%s loss", p->name, fname);
        for (size_t k = 0; k < K; k++) {
            sqold_component(&old, k, og, oh);
            const double e[4] = {rel(grad + k * D, ng + k * D, ag + k * D, D),
                                 rel(hess + k * D * D, nh + k * D * D, ah + k * D * D, D * D),
                                 rel(grad + k * D, og, ag + k * D, D),
                                 rel(hess + k * D * D, oh, ah + k * D * D, D * D)};
            CHECK(e[0] <= TOL && e[1] <= TOL,
                  "%s/%s k=%zu: vs naive grad %.3g, hessR %.3g (n=%zu d=%zu K=%zu)", p->name, fname,
                  k, e[0], e[1], n, d, K);
            CHECK(e[2] <= TOL && e[3] <= TOL,
                  "%s/%s k=%zu: vs old grad %.3g, hessR %.3g (n=%zu d=%zu K=%zu)", p->name, fname,
                  k, e[2], e[3], n, d, K);
            CHECK(tu_all_finite(grad + k * D, D) && tu_all_finite(hess + k * D * D, D * D),
                  "%s/%s k=%zu: non-finite output", p->name, fname, k);
            tu_worst_update(&worst_naive, fmax(e[0], e[1]), "%s/%s k=%zu (n=%zu d=%zu K=%zu)",
                            p->name, fname, k, n, d, K);
            tu_worst_update(&worst_old, fmax(e[2], e[3]), "%s/%s k=%zu (n=%zu d=%zu K=%zu)",
                            p->name, fname, k, n, d, K);
        }
    }
    /* gmf_sqloss_eval: predictions y - r and the loss (BW form) */
    double loss;
    rc = gmf_sqloss_eval(sq, K, p->mu, p->Sigma, pred, &loss);
    CHECK(rc == GMF_OK, "%s: gmf_sqloss_eval: %s", p->name, gmf_errmsg());
    naive(n, d, K, p->X, p->y, p->mu, p->Sigma, NULL, ng, nh, ag, ah, r);
    for (size_t i = 0; i < n; i++)
        r[i] = p->y[i] - r[i]; /* the naive predictions */
    const double ep = tu_vec_relerr(pred, r, n, 1e-300);
    CHECK(ep <= TOL, "%s: predictions vs naive %.3g", p->name, ep);
    tu_worst_update(&worst_naive, ep, "%s predictions", p->name);
    sqold_free(&old);
    free(grad), free(hess), free(ng), free(nh), free(ag), free(ah), free(og), free(oh), free(g2),
        free(h2), free(r), free(pred);
    gmf_sqloss_free(sq);
}

/* ---------------------------------------------------------------- cases */

static void case_random(gsl_rng *rng, unsigned long stream, const char *name, size_t n, size_t d,
                        size_t K, double cond, double scale) {
    tu_rng_stream(rng, stream);
    problem p;
    problem_alloc(&p, name, n, d, K);
    problem_random(rng, &p, cond, scale);
    check_problem(&p);
    problem_free(&p);
}

/* Sizes around the block boundary for (d, K). */
static void block_sizes(gsl_rng *rng, unsigned long *stream, size_t d, size_t K) {
    const size_t nb = nb_of(1u << 30, d, K);
    const size_t ns[] = {1, nb - 1, nb, nb + 1, 3 * nb + 7};
    for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++) {
        const size_t n = ns[j], blocks = (n + nb_of(n, d, K) - 1) / nb_of(n, d, K);
        printf("  random d=%zu K=%zu n=%zu: block %zu, %zu block(s), last one %zu samples\n", d, K,
               n, nb_of(n, d, K), blocks, n - (blocks - 1) * nb_of(n, d, K));
        case_random(rng, (*stream)++, "random", n, d, K, 10.0, 0.25);
    }
}

/* Input columns scaled over 6 orders of magnitude, Sigma_k of condition 1e10. */
static void case_illcond(gsl_rng *rng, unsigned long stream, size_t n, size_t d, size_t K) {
    tu_rng_stream(rng, stream);
    problem p;
    problem_alloc(&p, "ill-conditioned", n, d, K);
    problem_random(rng, &p, 1e10, 1.0);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < d; j++)
            p.X[i * d + j] *= pow(10.0, -3.0 + 6.0 * (double)j / (double)(d > 1 ? d - 1 : 1));
    check_problem(&p);
    problem_free(&p);
}

/* Degenerate: rows x_i = 0; each C_k has exact zero rows 1 + j for j in a set Z_k of inputs, and
 * some x_i are supported on Z_k only, so that c = Sigma_k xt = 0 and s = 0 exactly; K = 1 among
 * them.  Then all Sigma_k = 0 (point masses), and the far tail. */
static void case_degenerate(gsl_rng *rng, unsigned long stream, size_t n, size_t d, size_t K) {
    const size_t D = d + 1;
    tu_rng_stream(rng, stream);
    problem p;
    problem_alloc(&p, "degenerate", n, d, K);
    problem_random(rng, &p, 100.0, 0.5);
    /* the first half of the inputs (j < d/2 + 1 ... ) are "dead" in every C_k: zero rows */
    const size_t half = d / 2 > 0 ? d / 2 : 1;
    for (size_t k = 0; k < K; k++)
        for (size_t j = 0; j < half; j++)
            for (size_t b = 0; b < D; b++)
                p.C[k * D * D + (1 + j) * D + b] = 0.0;
    sigma_from_C(&p);
    size_t nzero = 0, ndead = 0;
    for (size_t i = 0; i < n; i++) {
        double *x = p.X + i * d;
        if (i % 7 == 3) { /* x = 0 */
            memset(x, 0, d * sizeof(double));
            nzero++;
        } else if (i % 5 == 1 && half < d) { /* supported on the dead inputs: s = 0, m != 0 */
            for (size_t j = half; j < d; j++)
                x[j] = 0.0;
            ndead++;
        }
    }
    /* check that s is exactly 0 where intended (BW: c = Sigma xt) */
    size_t ns0 = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < K; k++) {
            gmf_gauss_point q;
            gmf_gauss_eval1(d, p.X + i * d, p.mu + k * D, p.Sigma + k * D * D, &q, NULL, NULL, NULL,
                            NULL);
            ns0 += q.s == 0.0;
        }
    CHECK(ns0 >= (nzero + (half < d ? ndead : 0)) * K,
          "degenerate: only %zu (sample, component) "
          "pairs with s = 0",
          ns0);
    printf("  degenerate n=%zu d=%zu K=%zu: %zu of %zu (sample, component) pairs have s = 0\n", n,
           d, K, ns0, n * K);
    check_problem(&p);

    /* all point masses: Sigma_k = C_k = 0 */
    p.name = "point masses";
    memset(p.C, 0, K * D * D * sizeof(double));
    memset(p.Sigma, 0, K * D * D * sizeof(double));
    check_problem(&p);

    /* far tail: tiny covariance, means of order 1, so |m| > 38 s for most samples */
    p.name = "far tail";
    tu_rng_stream(rng, stream + 1000);
    for (size_t k = 0; k < K; k++)
        tu_rand_spd(rng, D, 10.0, 1e-8, p.Sigma + k * D * D, p.C + k * D * D);
    sigma_from_C(&p);
    tu_randn(rng, K * D, 1.0, p.mu);
    size_t ntail = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < K; k++) {
            gmf_gauss_point q;
            gmf_gauss_eval1(d, p.X + i * d, p.mu + k * D, p.Sigma + k * D * D, &q, NULL, NULL, NULL,
                            NULL);
            ntail += q.s > 0.0 && fabs(q.m) >= 38.0 * q.s;
        }
    printf("  far tail n=%zu d=%zu K=%zu: %zu of %zu pairs beyond |t| = 38\n", n, d, K, ntail,
           n * K);
    CHECK(ntail > 0, "far tail: no pair beyond |t| = 38");
    check_problem(&p);
    problem_free(&p);
}

/* The number of components changes between prepares on one gmf_sqloss (buffers are reused or
 * grown); each prepare must match a fresh reference. */
static void case_changing_K(gsl_rng *rng, unsigned long stream) {
    const size_t n = 150, d = 6, D = d + 1, Ks[] = {5, 2, 9, 1};
    tu_rng_stream(rng, stream);
    problem p;
    problem_alloc(&p, "changing K", n, d, 9);
    problem_random(rng, &p, 10.0, 0.3);
    gmf_sqloss *sq = NULL;
    if (gmf_sqloss_new(&sq, n, d, p.X, p.y)) {
        CHECK(0, "changing K: gmf_sqloss_new: %s", gmf_errmsg());
        problem_free(&p);
        return;
    }
    gmf_oracle o = gmf_sqloss_oracle(sq);
    double *g = tu_xmalloc(D * sizeof(double)), *h = tu_xmalloc(D * D * sizeof(double));
    double *ng = tu_xmalloc(9 * D * sizeof(double)), *nh = tu_xmalloc(9 * D * D * sizeof(double));
    double *ag = tu_xmalloc(9 * D * sizeof(double)), *ah = tu_xmalloc(9 * D * D * sizeof(double));
    double *r = tu_xmalloc(n * sizeof(double));
    for (size_t j = 0; j < sizeof Ks / sizeof Ks[0]; j++) {
        const size_t K = Ks[j];
        int rc = o.prepare(o.ctx, K, p.mu, p.Sigma, NULL);
        CHECK(rc == GMF_OK, "changing K: prepare K=%zu: %s", K, gmf_errmsg());
        naive(n, d, K, p.X, p.y, p.mu, p.Sigma, NULL, ng, nh, ag, ah, r);
        for (size_t k = 0; k < K; k++) {
            o.component(o.ctx, k, g, h);
            const double e = fmax(rel(g, ng + k * D, ag + k * D, D),
                                  rel(h, nh + k * D * D, ah + k * D * D, D * D));
            CHECK(e <= TOL, "changing K: K=%zu k=%zu: %.3g", K, k, e);
            tu_worst_update(&worst_naive, e, "changing K: K=%zu k=%zu", K, k);
        }
    }
    free(g), free(h), free(ng), free(nh), free(ag), free(ah), free(r);
    gmf_sqloss_free(sq);
    problem_free(&p);
}

int main(void) {
    gsl_rng *rng = tu_rng(SEED);
    printf("test_sqloss_oracle: seed %lu, tolerance %.0e (normwise relative per output)\n",
           tu_seed(), TOL);
    tu_worst_init(&worst_naive);
    tu_worst_init(&worst_old);
    unsigned long stream = 1;
    /* around the block boundary: small D (large blocks), moderate, and large D (the 32 floor) */
    block_sizes(rng, &stream, 3, 4);
    block_sizes(rng, &stream, 20, 5);
    block_sizes(rng, &stream, 60, 8);
    case_random(rng, stream++, "random K=1", 333, 10, 1, 10.0, 0.25);
    case_random(rng, stream++, "random d=1", 517, 1, 3, 10.0, 0.25);
    case_random(rng, stream++, "random d=1 K=1", 40, 1, 1, 1.0, 1.0);
    case_illcond(rng, stream++, 700, 12, 4);
    case_illcond(rng, stream++, 90, 40, 1);
    case_degenerate(rng, stream++, 600, 8, 3);
    case_degenerate(rng, stream++, 77, 5, 1);
    case_degenerate(rng, stream++, 45, 1, 2);
    case_changing_K(rng, stream++);
    gsl_rng_free(rng);
    printf("worst vs naive (gauss.h per sample): %.3g  [%s]\n", worst_naive.value,
           worst_naive.what);
    printf("worst vs old per-component oracle:   %.3g  [%s]\n", worst_old.value, worst_old.what);
    return tu_finish("test_sqloss_oracle");
}
