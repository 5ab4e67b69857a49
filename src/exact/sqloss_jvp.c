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
 * G += X_b^T dT' with dT' overwritten in place by the rows above.  Cost about twice an RHS.
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

/* Per-(sample, component) values and derivatives kept between the two loops over k. */
typedef struct {
    double A, g, Phi, q;     /* values */
    double dA, dg, dPhi, dq; /* derivatives along the direction */
} jv_point;

typedef struct {
    size_t n, d, D, K, ld, nb; /* ld = K D + K: row length of the tiles */
    int euclid;
    const double *X, *y, *R, *dR, *mu, *dmu;
    double *Rcat, *dRcat, *T, *dT, *G, *dH0, *dg0;
    jv_point *P;
} jv_work;

/* Values of gauss.h and their derivatives along (dm, ds2, dc0, dmu_w); returns E f and dE f. */
static void point_jvp(double m, double s2, double c0, double mu_w, double dm, double ds2,
                      double dc0, double dmu_w, jv_point *o, double *Ef, double *dEf) {
    gmf_gauss_point p;
    gmf_gauss_scalars(m, s2, c0, mu_w, &p);
    o->A = p.A, o->g = p.g, o->Phi = p.Phi;
    *Ef = p.Ef;
    if (p.s > 0.0 && p.phi > 0.0) {
        const double s = p.s, t = p.t, u0 = p.u0, phi = p.phi;
        const double ds = ds2 / (2.0 * s), dt = (dm - t * ds) / s, du0 = (dc0 - u0 * ds) / s;
        o->q = p.kap / s;
        o->dPhi = phi * dt;
        o->dA = p.Phi * dm + phi * ds;
        *dEf = p.A * dmu_w + mu_w * o->dA + p.Phi * dc0 + c0 * phi * dt;
        o->dg = p.Phi * dmu_w + (mu_w - u0 * t) * phi * dt + phi * du0;
        const double dkap = phi * dmu_w - (t * p.kap + phi * u0) * dt - phi * t * du0;
        o->dq = (dkap - o->q * ds) / s;
    } else { /* Y = m almost surely: Phi constant, phi = kap = q = 0 */
        o->q = o->dPhi = o->dq = 0.0;
        o->dA = p.Phi * dm;
        *dEf = p.A * dmu_w + mu_w * p.Phi * dm + p.Phi * dc0;
        o->dg = p.Phi * dmu_w;
    }
}

/* One sample: the closed forms and derivatives for all K components from its rows t (w, m) and
 * dt (dw, dm) of the tiles; overwrites dt with the row that the accumulation GEMM needs. */
static void sample_jvp(jv_work *w, size_t i, const double *t, double *dt) {
    const size_t d = w->d, D = w->D, K = w->K, KD = K * D;
    const double *x = w->X + i * d;
    double h = 0.0, dh = 0.0;
    for (size_t k = 0; k < K; k++) {
        const double *wk = t + k * D, *dwk = dt + k * D;
        const double *R0 = w->R + k * D * D, *dR0 = w->dR + k * D * D;
        double s2 = 0.0, ds2 = 0.0, c0, dc0;
        if (w->euclid) {
            c0 = dc0 = 0.0;
            for (size_t b = 0; b < D; b++) {
                s2 += wk[b] * wk[b];
                ds2 += 2.0 * wk[b] * dwk[b];
                c0 += R0[b] * wk[b];
                dc0 += dR0[b] * wk[b] + R0[b] * dwk[b];
            }
        } else {
            for (size_t j = 0; j < d; j++) {
                s2 += x[j] * wk[j + 1];
                ds2 += x[j] * dwk[j + 1];
            }
            c0 = wk[0], dc0 = dwk[0];
        }
        double Ef, dEf;
        point_jvp(t[KD + k], s2, c0, w->mu[k * D], dt[KD + k], ds2, dc0, w->dmu[k * D], &w->P[k],
                  &Ef, &dEf);
        h += Ef, dh += dEf;
    }
    const double scale = -2.0 / (double)w->n;
    const double rho = scale * (w->y[i] - h / (double)K), drho = scale * (-dh / (double)K);
    for (size_t k = 0; k < K; k++) {
        const jv_point *p = &w->P[k];
        const double *wk = t + k * D, *R0 = w->R + k * D * D, *dR0 = w->dR + k * D * D;
        double *dwk = dt + k * D, *h0 = w->dH0 + k * D;
        const double z = rho * p->Phi, dz = drho * p->Phi + rho * p->dPhi;
        const double rq = rho * p->q, drq = drho * p->q + rho * p->dq;
        for (size_t b = 0; b < D; b++) {
            const double dwb = dwk[b];
            h0[b] += dz * wk[b] + z * dwb; /* row 0 of dM */
            dwk[b] = drq * wk[b] + rq * dwb + dz * R0[b] + z * dR0[b];
        }
        w->dg0[k] += drho * p->A + rho * p->dA;
        dt[KD + k] = drho * p->g + rho * p->dg; /* times x_i: dgrad[1:] */
    }
}

static void work_free(jv_work *w) {
    free(w->Rcat);
    free(w->dRcat);
    free(w->T);
    free(w->dT);
    free(w->G);
    free(w->dH0);
    free(w->dg0);
    free(w->P);
}

static int work_alloc(jv_work *w) {
    const size_t d = w->d, K = w->K, ld = w->ld;
    size_t nb = JV_TILE_DOUBLES / ld;
    if (nb < JV_MIN_BLOCK) nb = JV_MIN_BLOCK;
    if (nb > w->n) nb = w->n;
    w->nb = nb;
    w->Rcat = gmf_calloc(d * ld, sizeof(double), "squared loss JVP");
    w->dRcat = gmf_calloc(d * ld, sizeof(double), "squared loss JVP");
    w->T = gmf_calloc(nb * ld, sizeof(double), "squared loss JVP");
    w->dT = gmf_calloc(nb * ld, sizeof(double), "squared loss JVP");
    w->G = gmf_calloc(d * ld, sizeof(double), "squared loss JVP");
    w->dH0 = gmf_calloc(K * w->D, sizeof(double), "squared loss JVP");
    w->dg0 = gmf_calloc(K, sizeof(double), "squared loss JVP");
    w->P = gmf_calloc(K, sizeof(jv_point), "squared loss JVP");
    if (!w->Rcat || !w->dRcat || !w->T || !w->dT || !w->G || !w->dH0 || !w->dg0 || !w->P) {
        work_free(w);
        return GMF_ENOMEM;
    }
    return GMF_OK;
}

/* Rcat row j: rows j + 1 of every R_k, then mu_k[j + 1] (the layout of sqloss.c). */
static void pack(const jv_work *w, const double *R, const double *mu, double *Rcat) {
    const size_t D = w->D, K = w->K, KD = K * D;
    for (size_t j = 0; j < w->d; j++) {
        double *row = Rcat + j * w->ld;
        for (size_t k = 0; k < K; k++) {
            memcpy(row + k * D, R + k * D * D + (j + 1) * D, D * sizeof(double));
            row[KD + k] = mu[k * D + j + 1];
        }
    }
}

int gmf_sqloss_jvp_(void *ctx, size_t K, const double *mu, const double *Sigma, const double *C,
                    const double *dmu, const double *dR, double *dgrad, double *dhessR) {
    const gmf_sqloss *s = ctx;
    if (K == 0) return gmf_error(GMF_EINVAL, "squared loss JVP: mixture has no components");
    jv_work w = {.n = gmf_sqloss_n(s), .d = gmf_sqloss_d(s), .K = K, .euclid = C != NULL};
    w.D = w.d + 1, w.ld = K * w.D + K;
    w.X = gmf_sqloss_X_(s), w.y = gmf_sqloss_y_(s);
    w.R = C ? C : Sigma, w.dR = dR, w.mu = mu, w.dmu = dmu;
    int rc = work_alloc(&w);
    if (rc) return rc;
    const size_t n = w.n, d = w.d, D = w.D, KD = K * D, ld = w.ld;
    pack(&w, w.R, mu, w.Rcat);
    pack(&w, dR, dmu, w.dRcat);
    for (size_t i0 = 0; i0 < n; i0 += w.nb) {
        const size_t nb = i0 + w.nb <= n ? w.nb : n - i0;
        const double *Xb = w.X + i0 * d;
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nb, (int)ld, (int)d, 1.0, Xb,
                    (int)d, w.Rcat, (int)ld, 0.0, w.T, (int)ld);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nb, (int)ld, (int)d, 1.0, Xb,
                    (int)d, w.dRcat, (int)ld, 0.0, w.dT, (int)ld);
        for (size_t ii = 0; ii < nb; ii++)
            sample_jvp(&w, i0 + ii, w.T + ii * ld, w.dT + ii * ld);
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)ld, (int)nb, 1.0, Xb,
                    (int)d, w.dT, (int)ld, i0 ? 1.0 : 0.0, w.G, (int)ld);
    }
    for (size_t k = 0; k < K; k++) {
        double *dg = dgrad + k * D, *dM = dhessR + k * D * D;
        dg[0] = w.dg0[k];
        memcpy(dM, w.dH0 + k * D, D * sizeof(double));
        for (size_t j = 0; j < d; j++) {
            dg[j + 1] = w.G[j * ld + KD + k];
            memcpy(dM + (j + 1) * D, w.G + j * ld + k * D, D * sizeof(double));
        }
    }
    work_free(&w);
    if (!gmf_all_finite(dgrad, KD) || !gmf_all_finite(dhessR, KD * D))
        return gmf_error(GMF_EDIVERGE, "squared loss JVP: derivative is not finite");
    return GMF_OK;
}
