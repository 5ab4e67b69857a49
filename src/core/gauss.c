/* gauss.c -- closed-form Gaussian-ReLU expectations in the conditional form of gauss.h.
 *
 * Derivation (docs/CLOSED_FORMS.md): conditioning on Y = xt . theta ~ N(m, s^2),
 *   E[theta | Y] = mu + c (Y - m) / s^2,   Cov(theta | Y) = Sigma - c c^T / s^2,
 * and Stein's lemma E[(theta - mu) g(Y)] = c E[g'(Y)] give every expectation with no division
 * by any variance but s, and with c entering only as u = c / s, which is bounded.
 */
#include "gmflow/gauss.h"

#include <math.h>
#include <string.h>

/* Beyond |t| = 38 the normal pdf underflows to < 1e-300 and Phi is 0 or 1 to double precision;
 * clamping also keeps t * phi(t) from forming inf * 0 when s is denormal. */
#define GMF_T_MAX 38.0

double gmf_gauss_cdf(double t) {
    return 0.5 * erfc(-t * M_SQRT1_2);
}
double gmf_gauss_pdf(double t) {
    return exp(-0.5 * t * t) * (0.5 * M_2_SQRTPI * M_SQRT1_2);
}

void gmf_gauss_scalars(double m, double s2, double c0, double mu_w, gmf_gauss_point *p) {
    double s = s2 > 0.0 ? sqrt(s2) : 0.0;
    p->m = m;
    p->s = s;
    if (s > 0.0 && fabs(m) < GMF_T_MAX * s) {
        p->t = m / s;
        p->Phi = gmf_gauss_cdf(p->t);
        p->phi = gmf_gauss_pdf(p->t);
        p->u0 = c0 / s;
    } else {
        /* Degenerate or far-tail limit: Y = m almost surely to double precision.  u0 stays
         * bounded (|c0| <= s sqrt(Sigma_00)) but only ever multiplies phi = 0 here. */
        p->t = s > 0.0 ? (m > 0 ? GMF_T_MAX : -GMF_T_MAX) : 0.0;
        p->Phi = m > 0.0 ? 1.0 : 0.0;
        p->phi = 0.0;
        p->u0 = s > 0.0 ? c0 / s : 0.0;
    }
    p->A = m * p->Phi + s * p->phi;
    p->Ef = mu_w * p->A + c0 * p->Phi;
    p->g = mu_w * p->Phi + p->u0 * p->phi;
    p->kap = p->phi * (mu_w - p->u0 * p->t);
}

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
/* glibc's vector math library (x86_64 vector function ABI; erfc since glibc 2.35, linked through
 * libm.so's AS_NEEDED libmvec). */
__m256d _ZGVdN4v_erfc(__m256d x);
__m256d _ZGVdN4v_exp(__m256d x);
#define GMF_HAVE_LIBMVEC 1

static inline void store4(double *dst, size_t i, __m256d v) {
    if (dst) _mm256_storeu_pd(dst + i, v);
}

/* Points i .. i + 3 of gmf_gauss_batch: gmf_gauss_scalars lane by lane, operation for operation
 * (separate multiplies and adds, as the scalar code compiles under -std=c11), except erfc/exp. */
static void batch4(size_t i, const double *m, const double *s2, const double *c0, double mu_w,
                   const gmf_gauss_batch_out *o) {
    const __m256d zero = _mm256_setzero_pd(), one = _mm256_set1_pd(1.0), half = _mm256_set1_pd(0.5),
                  tmax = _mm256_set1_pd(GMF_T_MAX), ntmax = _mm256_set1_pd(-GMF_T_MAX),
                  nrt2 = _mm256_set1_pd(-M_SQRT1_2), nhalf = _mm256_set1_pd(-0.5),
                  ipdf = _mm256_set1_pd(0.5 * M_2_SQRTPI * M_SQRT1_2), w = _mm256_set1_pd(mu_w),
                  absmask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
    const __m256d mv = _mm256_loadu_pd(m + i), cv = c0 ? _mm256_loadu_pd(c0 + i) : zero;
    /* s = s2 > 0 ? sqrt(s2) : 0 (max_pd returns its second operand for NaN or -0) */
    const __m256d sv = _mm256_sqrt_pd(_mm256_max_pd(_mm256_loadu_pd(s2 + i), zero));
    const __m256d spos = _mm256_cmp_pd(sv, zero, _CMP_GT_OQ),
                  sdiv = _mm256_blendv_pd(one, sv, spos);
    const __m256d mpos = _mm256_cmp_pd(mv, zero, _CMP_GT_OQ);
    /* regular: s > 0 and |m| < T_MAX s; otherwise Y = m almost surely (t = +-T_MAX, or 0) */
    const __m256d reg = _mm256_and_pd(
        spos, _mm256_cmp_pd(_mm256_and_pd(mv, absmask), _mm256_mul_pd(tmax, sv), _CMP_LT_OQ));
    const __m256d tlim = _mm256_and_pd(spos, _mm256_blendv_pd(ntmax, tmax, mpos));
    const __m256d t = _mm256_blendv_pd(tlim, _mm256_div_pd(mv, sdiv), reg);
    const __m256d P = _mm256_mul_pd(half, _ZGVdN4v_erfc(_mm256_mul_pd(nrt2, t)));
    const __m256d p = _mm256_mul_pd(_ZGVdN4v_exp(_mm256_mul_pd(_mm256_mul_pd(nhalf, t), t)), ipdf);
    const __m256d Phi = _mm256_blendv_pd(_mm256_and_pd(mpos, one), P, reg);
    const __m256d phi = _mm256_and_pd(reg, p);
    const __m256d A = _mm256_add_pd(_mm256_mul_pd(mv, Phi), _mm256_mul_pd(sv, phi));
    store4(o->s, i, sv);
    store4(o->Phi, i, Phi);
    store4(o->phi, i, phi);
    store4(o->A, i, A);
    if (o->Ef) store4(o->Ef, i, _mm256_add_pd(_mm256_mul_pd(w, A), _mm256_mul_pd(cv, Phi)));
    if (!o->g && !o->q) return; /* the trainer's case: no u0 = c0 / s */
    const __m256d u0 = _mm256_and_pd(spos, _mm256_div_pd(cv, sdiv));
    if (o->g) store4(o->g, i, _mm256_add_pd(_mm256_mul_pd(w, Phi), _mm256_mul_pd(u0, phi)));
    if (o->q) {
        const __m256d kap = _mm256_mul_pd(phi, _mm256_sub_pd(w, _mm256_mul_pd(u0, t)));
        store4(o->q, i, _mm256_and_pd(spos, _mm256_div_pd(kap, sdiv)));
    }
}
#endif

void gmf_gauss_batch(size_t n, const double *m, const double *s2, const double *c0, double mu_w,
                     const gmf_gauss_batch_out *out) {
    size_t i = 0;
#ifdef GMF_HAVE_LIBMVEC
    for (; i + 4 <= n; i += 4)
        batch4(i, m, s2, c0, mu_w, out);
#endif
    for (; i < n; i++) {
        gmf_gauss_point p;
        gmf_gauss_scalars(m[i], s2[i], c0 ? c0[i] : 0.0, mu_w, &p);
        if (out->s) out->s[i] = p.s;
        if (out->Phi) out->Phi[i] = p.Phi;
        if (out->phi) out->phi[i] = p.phi;
        if (out->A) out->A[i] = p.A;
        if (out->Ef) out->Ef[i] = p.Ef;
        if (out->g) out->g[i] = p.g;
        if (out->q) out->q[i] = p.s > 0.0 ? p.kap / p.s : 0.0;
    }
}

void gmf_gauss_eval1(size_t d, const double *x, const double *mu, const double *Sigma,
                     gmf_gauss_point *pout, double *grad, double *hess, double *stein,
                     double *cout) {
    const size_t D = d + 1;
    double cbuf[D];
    double *c = cout ? cout : cbuf;
    /* c = Sigma xt, xt = (0, x);  m = xt . mu;  s^2 = xt . c */
    double m = 0.0, s2 = 0.0;
    for (size_t a = 0; a < D; a++) {
        double acc = 0.0;
        for (size_t j = 0; j < d; j++)
            acc += Sigma[a * D + j + 1] * x[j];
        c[a] = acc;
    }
    for (size_t j = 0; j < d; j++) {
        m += x[j] * mu[j + 1];
        s2 += x[j] * c[j + 1];
    }
    gmf_gauss_point p;
    gmf_gauss_scalars(m, s2, c[0], mu[0], &p);
    if (pout) *pout = p;
    if (grad) {
        grad[0] = p.A;
        for (size_t j = 0; j < d; j++)
            grad[j + 1] = p.g * x[j];
    }
    if (hess) {
        /* Phi (e0 xt^T + xt e0^T) + (kap / s) xt xt^T; the last term is absent when s == 0. */
        double q = p.s > 0.0 ? p.kap / p.s : 0.0;
        memset(hess, 0, D * D * sizeof *hess);
        for (size_t j = 0; j < d; j++) {
            hess[j + 1] = p.Phi * x[j];
            hess[(j + 1) * D] = p.Phi * x[j];
            for (size_t l = 0; l < d; l++)
                hess[(j + 1) * D + l + 1] = q * x[j] * x[l];
        }
    }
    if (stein) {
        /* e0 a^T + xt b^T,  a = Phi c,  b = Phi Sigma e0 + kap u,  u = c / s */
        double us = p.s > 0.0 ? p.kap / p.s : 0.0;
        for (size_t b = 0; b < D; b++)
            stein[b] = p.Phi * c[b];
        for (size_t j = 0; j < d; j++)
            for (size_t b = 0; b < D; b++)
                stein[(j + 1) * D + b] = x[j] * (p.Phi * Sigma[b * D] + us * c[b]);
    }
}

void gmf_gauss_blocks1(size_t d, const double *x, const double *mu, const double *Sigma,
                       gmf_gauss_blocks *out, double *P, double *Q) {
    const size_t D = d + 1;
    double c[D];
    gmf_gauss_point p;
    gmf_gauss_eval1(d, x, mu, Sigma, &p, NULL, NULL, NULL, c);
    const double mu_w = mu[0];
    /* E[omega^2 1{Y>0}] = mu_w^2 Phi + 2 mu_w E[1{Y>0}(omega - mu_w)]
     *                    + E[1{Y>0} (omega - mu_w)^2]
     *                  = mu_w^2 Phi + 2 mu_w u0 phi + Phi Sigma_00 - u0^2 t phi */
    out->A = p.A;
    out->B = p.g;
    out->C = p.Ef;
    out->D = mu_w * mu_w * p.Phi + 2.0 * mu_w * p.u0 * p.phi + p.Phi * Sigma[0] -
             p.u0 * p.u0 * p.t * p.phi;
    double us = p.s > 0.0 ? p.kap / p.s : 0.0;
    for (size_t j = 0; j < d; j++) {
        /* P_j = E[relu(Y) beta_j] = mu_j A + c_j Phi
         * Q_j = E[omega 1{Y>0} beta_j] = mu_j g + b_j,  b = Phi Sigma e0 + kap u */
        P[j] = mu[j + 1] * p.A + c[j + 1] * p.Phi;
        Q[j] = mu[j + 1] * p.g + p.Phi * Sigma[(j + 1) * D] + us * c[j + 1];
    }
}
