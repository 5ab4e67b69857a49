/* nn_model.c -- random numbers, model shapes and parameter groups, initializations, and fully
 * connected networks drawn from a GM layer (matching init, Figure 4 width-K init, Figure 6 Monte
 * Carlo reduction). */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/gauss.h"
#include "gmflow/nn.h"
#include "nn_internal.h"

/* ---- random numbers ------------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void gmf_nn_rng_seed(gmf_nn_rng *r, uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (0xD1B54A32D192ED03ull * (stream + 1));
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

uint64_t gmf_nn_rng_u64(gmf_nn_rng *r) {
    uint64_t *s = r->s;
    const uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3], s[2] ^= t, s[3] = rotl(s[3], 45);
    return out;
}

double gmf_nn_rng_uniform(gmf_nn_rng *r) {
    return (double)(gmf_nn_rng_u64(r) >> 11) * 0x1p-53;
}

double gmf_nn_rng_normal(gmf_nn_rng *r) {
    double u1 = 1.0 - gmf_nn_rng_uniform(r); /* (0, 1]: log is finite */
    double u2 = gmf_nn_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

uint64_t gmf_nn_rng_below(gmf_nn_rng *r, uint64_t n) {
    const uint64_t lim = UINT64_MAX - UINT64_MAX % n; /* accept [0, lim): a multiple of n */
    uint64_t x;
    do
        x = gmf_nn_rng_u64(r);
    while (x >= lim);
    return x % n;
}

void gmf_nn_rng_shuffle(gmf_nn_rng *r, size_t *idx, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)gmf_nn_rng_below(r, i);
        size_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}

/* ---- shapes -------------------------------------------------------------------------------- */

size_t gmf_nn_gm_nparams(size_t d, size_t K, size_t L) {
    return K * (2 * d + L * d + L);
}
size_t gmf_nn_gmfull_nparams(size_t d, size_t K, size_t L) {
    return K * (d + d * d + L * d + L);
}
size_t gmf_nn_fc_nparams(size_t d, size_t m, size_t L) {
    return m * (d + L);
}
size_t gmf_nn_gmlr_nparams(size_t d, size_t K, size_t L, size_t r) {
    return K * (2 * d + L * d + L + r * d);
}

static const char *kind_names[] = {"gm", "gm-full", "fc", "gm-stack", "gm-lowrank"};
#define NKINDS (sizeof kind_names / sizeof kind_names[0])

const char *gmf_nn_kind_name(gmf_nn_kind kind) {
    return (unsigned)kind < NKINDS ? kind_names[kind] : "unknown";
}

int gmf_nn_kind_parse(const char *name, gmf_nn_kind *out) {
    for (unsigned k = 0; k < NKINDS; k++)
        if (!strcmp(name, kind_names[k])) {
            *out = (gmf_nn_kind)k;
            return GMF_OK;
        }
    return gmf_error(GMF_EINVAL,
                     "unknown model '%s' (expected gm, gm-full, fc, gm-stack or gm-lowrank)", name);
}

/* Append group `id` (its index: groups are added in gmf_nn_group_id order, so that the index and
 * the views of nn.h agree). */
static void add_group(gmf_nn_model *m, size_t id, const char *name, size_t n, int sigma, int beta) {
    assert(m->ngroups == id && id < GMF_NN_MAX_GROUPS);
    (void)id;
    gmf_nn_group *g = &m->group[m->ngroups++];
    snprintf(g->name, sizeof g->name, "%s", name);
    g->layer = 1;
    g->off = m->nparams;
    g->n = n;
    g->sigma = sigma;
    g->beta = beta;
    m->nparams += n;
}

/* One GM layer's groups, starting at index g0 (0, or GMF_NN_GM_NGROUPS for gm-stack's second). */
static void add_gm_groups(gmf_nn_model *m, size_t g0, size_t d, size_t K, size_t L, const char *sfx,
                          int full) {
    char name[16];
    snprintf(name, sizeof name, "mu%s", sfx);
    add_group(m, g0 + GMF_NN_GROUP_MU, name, K * d, 0, 1);
    snprintf(name, sizeof name, "%s%s", full ? "C" : "sigma", sfx);
    add_group(m, g0 + GMF_NN_GROUP_SIGMA, name, full ? K * d * d : K * d, 1, 1);
    snprintf(name, sizeof name, "U%s", sfx);
    add_group(m, g0 + GMF_NN_GROUP_U, name, K * L * d, 0, 0);
    snprintf(name, sizeof name, "v%s", sfx);
    add_group(m, g0 + GMF_NN_GROUP_V, name, K * L, 0, 0);
}

/* a b + c into *out; nonzero (and *out untouched) when it does not fit size_t. */
static int mul_add_size(size_t a, size_t b, size_t c, size_t *out) {
    size_t p;
    if (gmf_mul_size(a, b, &p) || p > SIZE_MAX - c) return 1;
    *out = p + c;
    return 0;
}

/* One GM layer's parameter count K (2 d + L d + L) (+ K d d with full covariances, + K r d for
 * the low-rank factors), checked: nonzero when it does not fit size_t. */
static int gm_count(size_t d, size_t K, size_t L, size_t dd, size_t r, size_t *out) {
    size_t per;
    if (d > SIZE_MAX / 2 || mul_add_size(L, d, 2 * d, &per) || per > SIZE_MAX - L ||
        mul_add_size(r, d, per + L, &per) || per > SIZE_MAX - dd)
        return 1;
    return gmf_mul_size(K, per + dd, out);
}

/* The model's parameter count fits size_t with room for 64 bytes a parameter (the trainer keeps
 * the doubles, their gradient and accumulator, and float copies)?  Checked before any group is
 * added, so that no group size below can wrap. */
static int nparams_check(gmf_nn_kind kind, size_t d, size_t L, size_t K, size_t width,
                         size_t Lmid) {
    size_t n = 0, n2 = 0, dd = 0;
    int bad;
    switch (kind) {
    case GMF_NN_GM:
        bad = gm_count(d, K, L, 0, 0, &n);
        break;
    case GMF_NN_GMFULL:
        bad = gmf_mul_size(d, d, &dd) || gm_count(d, K, L, dd, 0, &n);
        break;
    case GMF_NN_GMLR: /* (a rank outside [1, d] is the caller's error to report) */
        if (width == 0 || width > d) return GMF_OK;
        bad = gm_count(d, K, L, 0, width, &n);
        break;
    case GMF_NN_FC:
        bad = d > SIZE_MAX - L || gmf_mul_size(width, d + L, &n);
        break;
    case GMF_NN_GMSTACK:
        bad =
            gm_count(d, K, Lmid, 0, 0, &n) || gm_count(Lmid, K, L, 0, 0, &n2) || n > SIZE_MAX - n2;
        n += bad ? 0 : n2;
        break;
    default:
        return GMF_OK; /* (the caller rejects the kind) */
    }
    if (bad || n > SIZE_MAX / 64)
        return gmf_error(GMF_EINVAL,
                         "model %s (d=%zu, L=%zu, K=%zu, width=%zu, mid=%zu): the parameter "
                         "count overflows size_t",
                         gmf_nn_kind_name(kind), d, L, K, width, Lmid);
    return GMF_OK;
}

int gmf_nn_model_init(gmf_nn_model *m, gmf_nn_kind kind, size_t d, size_t L, size_t K, size_t width,
                      size_t Lmid) {
    memset(m, 0, sizeof *m);
    if (d == 0 || L == 0) return gmf_error(GMF_EINVAL, "model: need d >= 1 and L >= 1");
    if (nparams_check(kind, d, L, K, width, Lmid)) return GMF_EINVAL;
    m->kind = kind;
    m->d = d;
    m->L = L;
    switch (kind) {
    case GMF_NN_GM:
    case GMF_NN_GMFULL:
        if (K == 0) return gmf_error(GMF_EINVAL, "model %s: need K >= 1", gmf_nn_kind_name(kind));
        m->K = K;
        add_gm_groups(m, 0, d, K, L, "", kind == GMF_NN_GMFULL);
        break;
    case GMF_NN_GMLR: /* the diagonal layer's groups, then V (a beta group; rate: train.h) */
        if (K == 0) return gmf_error(GMF_EINVAL, "model gm-lowrank: need K >= 1");
        if (width == 0 || width > d)
            return gmf_error(GMF_EINVAL,
                             "model gm-lowrank: need a rank 1 <= r <= d = %zu (got %zu)", d, width);
        m->K = K;
        m->rank = width;
        add_gm_groups(m, 0, d, K, L, "", 0);
        add_group(m, GMF_NN_GROUP_LOWRANK, "lowrank", K * width * d, 0, 1);
        break;
    case GMF_NN_FC:
        if (width == 0) return gmf_error(GMF_EINVAL, "model fc: need width >= 1");
        m->width = width;
        m->fc_scale = 1.0 / (double)width;
        add_group(m, GMF_NN_GROUP_BETA, "beta", width * d, 0, 1);
        add_group(m, GMF_NN_GROUP_OMEGA, "omega", width * L, 0, 0);
        break;
    case GMF_NN_GMSTACK:
        if (K == 0 || Lmid == 0)
            return gmf_error(GMF_EINVAL, "model gm-stack: need K >= 1 and a middle width >= 1");
        m->K = K;
        m->Lmid = Lmid;
        add_gm_groups(m, 0, d, K, Lmid, "1", 0);
        add_gm_groups(m, GMF_NN_GROUP_L2(0), Lmid, K, L, "2", 0);
        for (size_t g = GMF_NN_GROUP_L2(0); g < m->ngroups; g++)
            m->group[g].layer = 2;
        break;
    default:
        return gmf_error(GMF_EINVAL, "model: unknown kind %d", (int)kind);
    }
    m->params = gmf_calloc(m->nparams, sizeof(double), "model parameters");
    return m->params ? GMF_OK : GMF_ENOMEM;
}

void gmf_nn_model_free(gmf_nn_model *m) {
    if (!m) return;
    free(m->params);
    memset(m, 0, sizeof *m);
}

char *gmf_nn_model_describe(const gmf_nn_model *m, char *buf, size_t size) {
    switch (m->kind) {
    case GMF_NN_GM:
    case GMF_NN_GMFULL:
        snprintf(buf, size, "%s d=%zu L=%zu K=%zu", gmf_nn_kind_name(m->kind), m->d, m->L, m->K);
        break;
    case GMF_NN_FC:
        snprintf(buf, size, "fc d=%zu L=%zu width=%zu scale=%.17g", m->d, m->L, m->width,
                 m->fc_scale);
        break;
    case GMF_NN_GMSTACK:
        snprintf(buf, size, "gm-stack d=%zu L=%zu K=%zu mid=%zu", m->d, m->L, m->K, m->Lmid);
        break;
    case GMF_NN_GMLR:
        snprintf(buf, size, "gm-lowrank d=%zu L=%zu K=%zu r=%zu", m->d, m->L, m->K, m->rank);
        break;
    default:
        snprintf(buf, size, "unknown");
    }
    if (m->weights == GMF_NN_WEIGHTS_LEARNED) {
        const size_t n = strlen(buf);
        snprintf(buf + n, size - n, " weights=learned");
    }
    return buf;
}

int gmf_nn_model_group(const gmf_nn_model *m, const char *name) {
    for (size_t g = 0; g < m->ngroups; g++)
        if (!strcmp(m->group[g].name, name)) return (int)g;
    return -1;
}

/* ---- learned mixture weights ---------------------------------------------------------------- */

static const char *weights_names[] = {"fixed", "learned"}, *wgeom_names[] = {"euclid", "fr"};

const char *gmf_nn_weights_name(gmf_nn_weights w) {
    return (unsigned)w < 2 ? weights_names[w] : "unknown";
}

int gmf_nn_weights_parse(const char *name, gmf_nn_weights *out) {
    for (int i = 0; i < 2; i++)
        if (!strcmp(name, weights_names[i])) {
            *out = (gmf_nn_weights)i;
            return GMF_OK;
        }
    return gmf_error(GMF_EINVAL, "expected fixed or learned (got '%s')", name);
}

const char *gmf_nn_wgeom_name(gmf_nn_wgeom g) {
    return (unsigned)g < 2 ? wgeom_names[g] : "unknown";
}

int gmf_nn_wgeom_parse(const char *name, gmf_nn_wgeom *out) {
    for (int i = 0; i < 2; i++)
        if (!strcmp(name, wgeom_names[i])) {
            *out = (gmf_nn_wgeom)i;
            return GMF_OK;
        }
    return gmf_error(GMF_EINVAL, "expected euclid or fr (got '%s')", name);
}

int gmf_nn_model_set_weights(gmf_nn_model *m, gmf_nn_weights w) {
    if (w == GMF_NN_WEIGHTS_FIXED && m->weights == GMF_NN_WEIGHTS_FIXED) return GMF_OK;
    if (w != GMF_NN_WEIGHTS_LEARNED || m->weights != GMF_NN_WEIGHTS_FIXED)
        return gmf_error(GMF_EINVAL, "model: learned weights can only be added to a model with "
                                     "fixed weights");
    if (m->kind == GMF_NN_FC || m->kind == GMF_NN_GMLR)
        return gmf_error(GMF_EINVAL,
                         "model %s: learned mixture weights need gm, gm-full or gm-stack (%s)",
                         gmf_nn_kind_name(m->kind),
                         m->kind == GMF_NN_FC ? "fc has no mixture" : "not implemented");
    const size_t nlayers = m->kind == GMF_NN_GMSTACK ? 2 : 1, n0 = m->nparams;
    double *p = realloc(m->params, (n0 + nlayers * m->K) * sizeof(double));
    if (!p) return gmf_error(GMF_ENOMEM, "model parameters: out of memory");
    m->params = p;
    for (size_t l = 1; l <= nlayers; l++) { /* a (beta-marginal: frozen by --fixed-beta) */
        add_group(m, m->ngroups, nlayers == 1 ? "a" : l == 1 ? "a1" : "a2", m->K, 0, 1);
        m->group[m->ngroups - 1].layer = (int)l;
        m->group[m->ngroups - 1].logits = 1;
    }
    memset(m->params + n0, 0, nlayers * m->K * sizeof(double));
    m->weights = GMF_NN_WEIGHTS_LEARNED;
    return GMF_OK;
}

int gmf_nn_model_logits_group(const gmf_nn_model *m, int layer) {
    for (size_t g = 0; g < m->ngroups; g++)
        if (m->group[g].logits && m->group[g].layer == layer) return (int)g;
    return -1;
}

/* w = softmax(a) over K logits, in double (max subtracted: no overflow). */
void gmf_nn_softmax(double *w, const double *a, size_t K) {
    double mx = a[0], sum = 0.0;
    for (size_t k = 1; k < K; k++)
        if (a[k] > mx) mx = a[k];
    for (size_t k = 0; k < K; k++)
        sum += w[k] = exp(a[k] - mx);
    for (size_t k = 0; k < K; k++)
        w[k] /= sum;
}

/* ---- initializations ----------------------------------------------------------------------- */

/* One GM layer's parameters, through its view p (layout of nn.h). */
static void init_gm_layer(gmf_nn_gm_params_d p, size_t d, size_t K, size_t L, int full,
                          double gamma, gmf_nn_rng *rng) {
    const size_t nmu = K * d, ncov = full ? K * d * d : K * d, nU = K * L * d, nv = K * L;
    double *mu = p.mu, *cov = full ? p.C : p.sigma, *U = p.U, *v = p.v;
    for (size_t e = 0; e < nmu; e++)
        mu[e] = gamma * gmf_nn_rng_normal(rng);
    for (size_t e = 0; e < nU; e++)
        U[e] = gamma * gmf_nn_rng_normal(rng);
    for (size_t e = 0; e < nv; e++)
        v[e] = gamma * gmf_nn_rng_normal(rng);
    if (full) {
        memset(cov, 0, ncov * sizeof(double));
        for (size_t k = 0; k < K; k++)
            for (size_t j = 0; j < d; j++)
                cov[k * d * d + j * d + j] = gamma; /* C = gamma I */
    } else {
        for (size_t e = 0; e < ncov; e++)
            cov[e] = gamma; /* sigma = gamma */
    }
}

int gmf_nn_init_gm(gmf_nn_model *m, double gamma, gmf_nn_rng *rng) {
    if (!(gamma >= 0.0) || !isfinite(gamma))
        return gmf_error(GMF_EINVAL, "GM init: gamma must be finite and >= 0 (got %g)", gamma);
    const gmf_nn_net_params_d p = gmf_nn_net_view_d(m, m->params);
    for (int l = 0; l < 2; l++) /* learned weights start equal: a = 0 */
        if (p.gm[l].a) memset(p.gm[l].a, 0, m->K * sizeof(double));
    switch (m->kind) {
    case GMF_NN_GM:
    case GMF_NN_GMFULL:
        init_gm_layer(p.gm[0], m->d, m->K, m->L, m->kind == GMF_NN_GMFULL, gamma, rng);
        return GMF_OK;
    case GMF_NN_GMSTACK:
        init_gm_layer(p.gm[0], m->d, m->K, m->Lmid, 0, gamma, rng);
        init_gm_layer(p.gm[1], m->Lmid, m->K, m->L, 0, gamma, rng);
        return GMF_OK;
    case GMF_NN_GMLR:
        return gmf_nn_init_gm_lowrank(m, gamma, GMF_NN_LOWRANK_INIT, rng);
    default:
        return gmf_error(GMF_EINVAL, "GM init: model %s has no GM layer",
                         gmf_nn_kind_name(m->kind));
    }
}

int gmf_nn_init_gm_lowrank(gmf_nn_model *m, double gamma, double rho, gmf_nn_rng *rng) {
    if (m->kind != GMF_NN_GMLR)
        return gmf_error(GMF_EINVAL, "low-rank GM init: model is not gm-lowrank");
    if (!(gamma >= 0.0) || !isfinite(gamma) || !(rho >= 0.0) || !isfinite(rho))
        return gmf_error(GMF_EINVAL,
                         "low-rank GM init: gamma and rho must be finite and >= 0 (got %g, %g)",
                         gamma, rho);
    const gmf_nn_net_params_d p = gmf_nn_net_view_d(m, m->params);
    init_gm_layer(p.gm[0], m->d, m->K, m->L, 0, gamma, rng);
    /* V entries N(0, rho gamma^2 / r): E |V_k^T x|^2 = r (rho gamma^2 / r) |x|^2 */
    const double sd = gamma * sqrt(rho / (double)m->rank);
    for (size_t e = 0; e < m->K * m->rank * m->d; e++)
        p.V[e] = sd * gmf_nn_rng_normal(rng);
    return GMF_OK;
}

int gmf_nn_init_fc_kaiming(gmf_nn_model *fc, gmf_nn_rng *rng) {
    if (fc->kind != GMF_NN_FC) return gmf_error(GMF_EINVAL, "Kaiming init: model is not fc");
    const size_t d = fc->d, m = fc->width, L = fc->L;
    const double b1 = 1.0 / sqrt((double)d), b2 = 1.0 / sqrt((double)m);
    const gmf_nn_fc_params_d p = gmf_nn_fc_view_d(fc->params, d, m, L);
    for (size_t e = 0; e < m * d; e++)
        p.beta[e] = b1 * (2.0 * gmf_nn_rng_uniform(rng) - 1.0);
    for (size_t e = 0; e < m * L; e++)
        p.omega[e] = b2 * (2.0 * gmf_nn_rng_uniform(rng) - 1.0);
    return GMF_OK;
}

int gmf_nn_fc_from_gm(gmf_nn_model *fc, const gmf_nn_model *gm, gmf_nn_from_gm_mode mode,
                      gmf_nn_rng *rng) {
    if (fc->kind != GMF_NN_FC ||
        (gm->kind != GMF_NN_GM && gm->kind != GMF_NN_GMFULL && gm->kind != GMF_NN_GMLR))
        return gmf_error(GMF_EINVAL,
                         "FC from GM: need an fc model and a gm, gm-full or gm-lowrank model");
    if (fc->d != gm->d || fc->L != gm->L)
        return gmf_error(GMF_EINVAL, "FC from GM: shapes differ (fc d=%zu L=%zu, gm d=%zu L=%zu)",
                         fc->d, fc->L, gm->d, gm->L);
    const size_t d = gm->d, K = gm->K, L = gm->L, m = fc->width;
    const int full = gm->kind == GMF_NN_GMFULL;
    if (mode == GMF_NN_FROM_GM_MEANS && m != K)
        return gmf_error(GMF_EINVAL, "FC from GM means: width %zu must equal K = %zu", m, K);
    const gmf_nn_gm_params_d g = gmf_nn_gm_view_d(gm->params, d, K, L, full);
    const gmf_nn_fc_params_d f = gmf_nn_fc_view_d(fc->params, d, m, L);
    const double *mu = g.mu, *cov = full ? g.C : g.sigma, *U = g.U, *v = g.v;
    double *beta = f.beta, *omega = f.omega;
    const double *Vt = gm->kind == GMF_NN_GMLR ? gmf_nn_net_view_d(gm, gm->params).V : NULL;
    const size_t r = gm->rank;
    double z[d], w[K], cdf[K];
    const int learned = gm->weights == GMF_NN_WEIGHTS_LEARNED;
    if (learned) { /* learned weights: k ~ w (sample), omega_k scaled by K w_k (means) */
        gmf_nn_softmax(w, gm->params + gm->group[gmf_nn_model_logits_group(gm, 1)].off, K);
        for (size_t k = 0; k < K; k++)
            cdf[k] = (k ? cdf[k - 1] : 0.0) + w[k];
    }
    for (size_t j = 0; j < m; j++) {
        size_t k = j;
        if (mode != GMF_NN_FROM_GM_MEANS && !learned) k = (size_t)gmf_nn_rng_below(rng, K);
        if (mode != GMF_NN_FROM_GM_MEANS && learned) { /* inverse CDF */
            const double u = gmf_nn_rng_uniform(rng) * cdf[K - 1];
            for (k = 0; k + 1 < K && cdf[k] <= u; k++)
                ;
        }
        double *b = beta + j * d;
        if (mode == GMF_NN_FROM_GM_MEANS) {
            memcpy(b, mu + k * d, d * sizeof(double)); /* beta_k = mu_k */
        } else if (full) {                             /* beta = mu_k + C_k z */
            for (size_t e = 0; e < d; e++)
                z[e] = gmf_nn_rng_normal(rng);
            for (size_t a = 0; a < d; a++) {
                double acc = mu[k * d + a];
                for (size_t e = 0; e < d; e++)
                    acc += cov[k * d * d + a * d + e] * z[e];
                b[a] = acc;
            }
        } else { /* beta = mu_k + sigma_k * z (+ V_k z', gm-lowrank) */
            for (size_t a = 0; a < d; a++)
                b[a] = mu[k * d + a] + cov[k * d + a] * gmf_nn_rng_normal(rng);
            for (size_t q = 0; Vt && q < r; q++) {
                const double zq = gmf_nn_rng_normal(rng), *vq = Vt + (k * r + q) * d;
                for (size_t a = 0; a < d; a++)
                    b[a] += vq[a] * zq;
            }
        }
        for (size_t l = 0; l < L; l++) { /* omega = U_k beta + v_k = E[omega | beta] */
            double acc = v[k * L + l];
            for (size_t a = 0; a < d; a++)
                acc += U[(k * L + l) * d + a] * b[a];
            omega[j * L + l] =
                mode == GMF_NN_FROM_GM_MEANS && learned ? (double)K * w[k] * acc : acc;
        }
    }
    fc->fc_scale = 1.0 / (double)m;
    return GMF_OK;
}
