/* sqloss_jvp.c -- directional derivatives of the squared-loss oracle (gmf_oracle.jvp).
 *
 * The oracle's outputs for component k (sqloss.c, with w_i = R_k^T xt_i, rho_i = -(2/n) r_i,
 * z_i = rho_i Phi_i, q_i = kap_i / s_i) are
 *
 *   grad_k  = sum_i rho_i (A_i, g_i x_i)
 *   M_k     = E_k[hess dL] R_k = sum_i [ z_i e0 w_i^T + xt_i (rho_i q_i w_i + z_i R_{k,0:})^T ].
 *
 * Along a direction (dmu, dR) every per-sample scalar moves through its inputs
 *   dm = xt . dmu_k,  dmu_w = dmu_k[0],  dw = dR_k^T xt,
 *   Sigma form:  s^2 = xt . w,  c0 = w_0           ->  ds2 = xt . dw,        dc0 = dw_0
 *   (mu, C) form: s^2 = |w|^2, c0 = R_{k,0:} . w   ->  ds2 = 2 w . dw,       dc0 = dR_{k,0:} . w
 *                                                                                + R_{k,0:} . dw
 * and, with ds = ds2 / (2 s), dt = (dm - t ds) / s, du0 = (dc0 - u0 ds) / s (docs/FLOWS.md):
 *   dPhi = phi dt,   dA = Phi dm + phi ds,
 *   dEf  = A dmu_w + mu_w dA + Phi dc0 + c0 phi dt,
 *   dg   = Phi dmu_w + (mu_w - u0 t) phi dt + phi du0,
 *   dkap = phi dmu_w - (t kap + phi u0) dt - phi t du0,   dq = (dkap - q ds) / s;
 * in the degenerate / far-tail limit of gauss.h (phi = 0) only dA = Phi dm, dEf = A dmu_w +
 * mu_w Phi dm + Phi dc0 and dg = Phi dmu_w remain.  The residuals couple all components:
 *   dr_i = -(1/K) sum_k dEf_ik,  drho_i = -(2/n) dr_i,
 * and the outputs' derivatives are
 *   dgrad_k = sum_i [drho_i (A_i, g_i x_i) + rho_i (dA_i, dg_i x_i)]
 *   dM_k    = sum_i [ e0 (dz_i w_i + z_i dw_i)^T
 *                     + xt_i (d(rho q)_i w_i + rho_i q_i dw_i + dz_i R_{k,0:} + z_i dR_{k,0:})^T ].
 *
 * Layout: the blocked pass of sqloss.c, once more with the direction.  Per block of nb samples
 * two GEMMs give every component's w, m (T = X_b Rcat) and dw, dm (dT = X_b dRcat); the closed
 * forms and their derivatives run per sample; the xt-rows of dM and dgrad[1:] are one GEMM
 * G += X_b^T dT' with dT' overwritten in place by the rows above.
 *
 * Cache: the closed-form values (Phi, phi, A, g, kap, ...) and the residuals depend on the state
 * only, and CVODE's Krylov solver asks for many JVPs at one state (as does gmf_flow_jac, N of
 * them), so the per-sample values of the last state are kept (n K 10 + n doubles, when that is at
 * most JV_CACHE_MAX) with a copy of the state as key; a JVP at the cached state then costs three
 * small GEMMs and arithmetic, no erfc/exp.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/gauss.h"
#include "sqloss_internal.h"

#define JV_TILE_DOUBLES (256 * 1024 / 8)
#define JV_MIN_BLOCK    32
#define JV_CACHE_MAX    ((size_t)8 << 20) /* doubles (64 MiB) */

/* Cached per-(sample, component) values, in this order. */
enum { V_PHI_, V_phi, V_A, V_G, V_KAP, V_Q, V_S, V_T, V_U0, V_C0, JV_NVAL };

struct gmf_sqloss_jv {
    size_t K, ld, nb, Kcap, n;
    int euclid, valid;
    double *Rcat, *dRcat, *T, *dT, *G, *dH0, *dg0;
    double *val; /* n x K x JV_NVAL closed forms at the key state (NULL: not cached) */
    double *rho; /* n: -(2/n) r_i at the key state */
    double *key; /* K D + K D^2: mu and R of the cached values */
    double *pv;  /* K x JV_NVAL: one sample's values when not cached */
    double *der; /* K x 4: one sample's dA, dg, dPhi, dq */
};

/* One call's view of the data and the point. */
typedef struct {
    struct gmf_sqloss_jv *w;
    size_t n, d, D, K;
    const double *X, *y, *R, *dR, *mu, *dmu;
} jv_call;

void gmf_sqloss_jv_free_(struct gmf_sqloss_jv *w) {
    if (!w) return;
    free(w->Rcat), free(w->dRcat), free(w->T), free(w->dT), free(w->G), free(w->dH0);
    free(w->dg0), free(w->val), free(w->rho), free(w->key), free(w->pv), free(w->der);
    free(w);
}

/* The workspace for K components (reallocated when K grows; the cache is dropped then). */
static int jv_reserve(gmf_sqloss *s, size_t K, struct gmf_sqloss_jv **out) {
    struct gmf_sqloss_jv **slot = gmf_sqloss_jv_(s), *w = *slot;
    const size_t n = gmf_sqloss_n(s), d = gmf_sqloss_d(s), D = d + 1, ld = K * D + K;
    if (w && w->Kcap >= K) {
        if (w->K != K) w->valid = 0; /* the cache's layout depends on K */
        w->K = K, w->ld = ld;
        *out = w;
        return GMF_OK;
    }
    gmf_sqloss_jv_free_(w);
    *slot = w = gmf_calloc(1, sizeof *w, "squared loss JVP");
    if (!w) return GMF_ENOMEM;
    size_t nb = JV_TILE_DOUBLES / ld;
    nb = nb < JV_MIN_BLOCK ? JV_MIN_BLOCK : nb;
    nb = nb > n ? n : nb;
    w->K = w->Kcap = K, w->ld = ld, w->nb = nb, w->n = n;
    w->Rcat = gmf_calloc(d * ld, sizeof(double), "squared loss JVP");
    w->dRcat = gmf_calloc(d * ld, sizeof(double), "squared loss JVP");
    w->T = gmf_calloc(nb * ld, sizeof(double), "squared loss JVP");
    w->dT = gmf_calloc(nb * ld, sizeof(double), "squared loss JVP");
    w->G = gmf_calloc(d * ld, sizeof(double), "squared loss JVP");
    w->dH0 = gmf_calloc(K * D, sizeof(double), "squared loss JVP");
    w->dg0 = gmf_calloc(K, sizeof(double), "squared loss JVP");
    w->key = gmf_calloc(K * D + K * D * D, sizeof(double), "squared loss JVP");
    w->pv = gmf_calloc(K * JV_NVAL, sizeof(double), "squared loss JVP");
    w->der = gmf_calloc(K * 4, sizeof(double), "squared loss JVP");
    w->rho = gmf_calloc(n, sizeof(double), "squared loss JVP");
    if (n * K * JV_NVAL <= JV_CACHE_MAX) /* else values are recomputed per call (val NULL) */
        w->val = gmf_calloc(n * K * JV_NVAL, sizeof(double), "squared loss JVP cache");
    if (!w->Rcat || !w->dRcat || !w->T || !w->dT || !w->G || !w->dH0 || !w->dg0 || !w->key ||
        !w->pv || !w->der || !w->rho || (n * K * JV_NVAL <= JV_CACHE_MAX && !w->val)) {
        gmf_sqloss_jv_free_(w);
        *slot = NULL;
        return GMF_ENOMEM;
    }
    *out = w;
    return GMF_OK;
}

/* s^2 and c0 of component k from its row w (and x): see the header comment. */
static void s2_c0(const jv_call *c, const double *x, size_t k, const double *wk, double *s2,
                  double *c0) {
    const size_t D = c->D;
    *s2 = *c0 = 0.0;
    if (c->w->euclid) {
        const double *R0 = c->R + k * D * D;
        for (size_t b = 0; b < D; b++)
            *s2 += wk[b] * wk[b], *c0 += R0[b] * wk[b];
    } else {
        for (size_t j = 0; j < c->d; j++)
            *s2 += x[j] * wk[j + 1];
        *c0 = wk[0];
    }
}

/* The closed forms of sample i for all components (row t of the value tile: w, m) into v
 * (K x JV_NVAL); returns rho_i. */
static double sample_values(const jv_call *c, size_t i, const double *t, double *v) {
    const size_t D = c->D, K = c->K, KD = K * D;
    const double *x = c->X + i * c->d;
    double h = 0.0;
    for (size_t k = 0; k < K; k++, v += JV_NVAL) {
        double s2, c0;
        s2_c0(c, x, k, t + k * D, &s2, &c0);
        gmf_gauss_point p;
        gmf_gauss_scalars(t[KD + k], s2, c0, c->mu[k * D], &p);
        v[V_PHI_] = p.Phi, v[V_phi] = p.phi, v[V_A] = p.A, v[V_G] = p.g, v[V_KAP] = p.kap;
        v[V_Q] = p.s > 0.0 ? p.kap / p.s : 0.0, v[V_S] = p.s, v[V_T] = p.t, v[V_U0] = p.u0;
        v[V_C0] = c0;
        h += p.Ef;
    }
    return -2.0 / (double)c->n * (c->y[i] - h / (double)K);
}

/* Derivatives of one component's values along (dm, ds2, dc0, dmu_w): see the header comment.
 * Returns dE f; sets dA, dg, dPhi, dq. */
static double point_jvp(const double *v, double mu_w, double dm, double ds2, double dc0,
                        double dmu_w, double *dA, double *dg, double *dPhi, double *dq) {
    const double Phi = v[V_PHI_], phi = v[V_phi], A = v[V_A], s = v[V_S];
    if (!(s > 0.0 && phi > 0.0)) { /* Y = m almost surely: Phi constant, phi = kap = q = 0 */
        *dA = Phi * dm, *dg = Phi * dmu_w, *dPhi = *dq = 0.0;
        return A * dmu_w + mu_w * Phi * dm + Phi * dc0;
    }
    const double t = v[V_T], u0 = v[V_U0], kap = v[V_KAP], c0 = v[V_C0];
    const double ds = ds2 / (2.0 * s), dt = (dm - t * ds) / s, du0 = (dc0 - u0 * ds) / s;
    *dPhi = phi * dt;
    *dA = Phi * dm + phi * ds;
    *dg = Phi * dmu_w + (mu_w - u0 * t) * phi * dt + phi * du0;
    const double dkap = phi * dmu_w - (t * kap + phi * u0) * dt - phi * t * du0;
    *dq = (dkap - v[V_Q] * ds) / s;
    return A * dmu_w + mu_w * *dA + Phi * dc0 + c0 * phi * dt;
}

/* One sample's derivatives for all K components from its rows t (w, m) and dt (dw, dm) and its
 * values v; overwrites dt with the row that the accumulation GEMM needs. */
static void sample_jvp(const jv_call *c, size_t i, const double *t, double *dt, const double *v,
                       double rho) {
    struct gmf_sqloss_jv *w = c->w;
    const size_t d = c->d, D = c->D, K = c->K, KD = K * D;
    const double *x = c->X + i * d;
    double dh = 0.0, *der = w->der; /* dA, dg, dPhi, dq per component */
    for (size_t k = 0; k < K; k++) {
        const double *wk = t + k * D, *dwk = dt + k * D;
        const double *R0 = c->R + k * D * D, *dR0 = c->dR + k * D * D;
        double ds2 = 0.0, dc0 = 0.0, *o = der + 4 * k;
        if (w->euclid) {
            for (size_t b = 0; b < D; b++) {
                ds2 += 2.0 * wk[b] * dwk[b];
                dc0 += dR0[b] * wk[b] + R0[b] * dwk[b];
            }
        } else {
            for (size_t j = 0; j < d; j++)
                ds2 += x[j] * dwk[j + 1];
            dc0 = dwk[0];
        }
        dh += point_jvp(v + k * JV_NVAL, c->mu[k * D], dt[KD + k], ds2, dc0, c->dmu[k * D], &o[0],
                        &o[1], &o[2], &o[3]);
    }
    const double drho = -2.0 / (double)c->n * (-dh / (double)K);
    for (size_t k = 0; k < K; k++) {
        const double *vk = v + k * JV_NVAL, *o = der + 4 * k;
        const double *wk = t + k * D, *R0 = c->R + k * D * D, *dR0 = c->dR + k * D * D;
        double *dwk = dt + k * D, *h0 = w->dH0 + k * D;
        const double z = rho * vk[V_PHI_], dz = drho * vk[V_PHI_] + rho * o[2];
        const double rq = rho * vk[V_Q], drq = drho * vk[V_Q] + rho * o[3];
        for (size_t b = 0; b < D; b++) {
            const double dwb = dwk[b];
            h0[b] += dz * wk[b] + z * dwb; /* row 0 of dM */
            dwk[b] = drq * wk[b] + rq * dwb + dz * R0[b] + z * dR0[b];
        }
        w->dg0[k] += drho * vk[V_A] + rho * o[0];
        dt[KD + k] = drho * vk[V_G] + rho * o[1]; /* times x_i: dgrad[1:] */
    }
}

/* Rcat row j: rows j + 1 of every R_k, then mu_k[j + 1] (the layout of sqloss.c). */
static void pack(const jv_call *c, const double *R, const double *mu, double *Rcat) {
    const size_t D = c->D, K = c->K, KD = K * D, ld = c->w->ld;
    for (size_t j = 0; j < c->d; j++) {
        double *row = Rcat + j * ld;
        for (size_t k = 0; k < K; k++) {
            memcpy(row + k * D, R + k * D * D + (j + 1) * D, D * sizeof(double));
            row[KD + k] = mu[k * D + j + 1];
        }
    }
}

/* Whether the cache holds the values at (mu, R) of this kind; makes it the key otherwise. */
static int cache_hit(const jv_call *c) {
    struct gmf_sqloss_jv *w = c->w;
    const size_t KD = c->K * c->D, KDD = KD * c->D;
    if (!w->val) return 0;
    if (w->valid && !memcmp(w->key, c->mu, KD * sizeof(double)) &&
        !memcmp(w->key + KD, c->R, KDD * sizeof(double)))
        return 1;
    memcpy(w->key, c->mu, KD * sizeof(double));
    memcpy(w->key + KD, c->R, KDD * sizeof(double));
    w->valid = 0; /* set once the values are complete */
    return 0;
}

/* The blocked pass: T = X_b Rcat, dT = X_b dRcat, per-sample values (cached or not) and
 * derivatives, G += X_b^T dT'. */
static void blocked_pass(const jv_call *c, int hit) {
    struct gmf_sqloss_jv *w = c->w;
    const size_t n = c->n, d = c->d, ld = w->ld, K = c->K;
    for (size_t i0 = 0; i0 < n; i0 += w->nb) {
        const size_t nb = i0 + w->nb <= n ? w->nb : n - i0;
        const double *Xb = c->X + i0 * d;
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nb, (int)ld, (int)d, 1.0, Xb,
                    (int)d, w->Rcat, (int)ld, 0.0, w->T, (int)ld);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nb, (int)ld, (int)d, 1.0, Xb,
                    (int)d, w->dRcat, (int)ld, 0.0, w->dT, (int)ld);
        for (size_t ii = 0, i = i0; ii < nb; ii++, i++) {
            double *v = w->val ? w->val + i * K * JV_NVAL : w->pv;
            if (!hit) w->rho[i] = sample_values(c, i, w->T + ii * ld, v);
            sample_jvp(c, i, w->T + ii * ld, w->dT + ii * ld, v, w->rho[i]);
        }
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)ld, (int)nb, 1.0, Xb,
                    (int)d, w->dT, (int)ld, i0 ? 1.0 : 0.0, w->G, (int)ld);
    }
    if (w->val) w->valid = 1;
}

int gmf_sqloss_jvp_(void *ctx, size_t K, const double *mu, const double *Sigma, const double *C,
                    const double *dmu, const double *dR, double *dgrad, double *dhessR) {
    gmf_sqloss *s = ctx;
    if (K == 0) return gmf_error(GMF_EINVAL, "squared loss JVP: mixture has no components");
    struct gmf_sqloss_jv *w;
    int rc = jv_reserve(s, K, &w);
    if (rc) return rc;
    jv_call c = {.w = w, .n = gmf_sqloss_n(s), .d = gmf_sqloss_d(s), .K = K};
    c.D = c.d + 1, c.X = gmf_sqloss_X_(s), c.y = gmf_sqloss_y_(s);
    c.R = C ? C : Sigma, c.dR = dR, c.mu = mu, c.dmu = dmu;
    if (w->euclid != (C != NULL)) w->valid = 0;
    w->euclid = C != NULL;
    const size_t d = c.d, D = c.D, KD = K * D, ld = w->ld;
    const int hit = cache_hit(&c);
    pack(&c, c.R, mu, w->Rcat);
    pack(&c, dR, dmu, w->dRcat);
    memset(w->dH0, 0, KD * sizeof(double));
    memset(w->dg0, 0, K * sizeof(double));
    blocked_pass(&c, hit);
    for (size_t k = 0; k < K; k++) {
        double *dg = dgrad + k * D, *dM = dhessR + k * D * D;
        dg[0] = w->dg0[k];
        memcpy(dM, w->dH0 + k * D, D * sizeof(double));
        for (size_t j = 0; j < d; j++) {
            dg[j + 1] = w->G[j * ld + KD + k];
            memcpy(dM + (j + 1) * D, w->G + j * ld + k * D, D * sizeof(double));
        }
    }
    if (!gmf_all_finite(dgrad, KD) || !gmf_all_finite(dhessR, KD * D))
        return gmf_error(GMF_EDIVERGE, "squared loss JVP: derivative is not finite");
    return GMF_OK;
}
