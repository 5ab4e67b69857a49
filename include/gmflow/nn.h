/* gmflow/nn.h -- discrete mode: GM layers, baselines, the reference-class logistic loss and whole
 * networks, as explicit forward/backward pairs (prefix gmf_nn).
 *
 * Style (llm.c): every layer is a `_forward` / `_backward` pair with its shapes in the signature;
 * what the backward pass needs is cached explicitly by the forward pass in a per-layer cache
 * struct; every gradient term is commented at its line in src/discrete/nn_tmpl.h and derived in
 * docs/TRAINING.md.  Matrices are row-major; "B x d" means B rows of d entries.
 *
 * Precision.  The layer and network code is written once (src/discrete/nn_tmpl.h) and compiled
 * twice: for float (suffix _f, used for training: float32 GEMMs through OpenBLAS's cblas_sgemm) and
 * for double (suffix _d, used by the finite-difference tests and as the reference the float
 * path is compared with).  In both, the per-sample Gaussian scalars (m, s, Phi(m/s), phi(m/s)),
 * the output sums over components, the losses and full-batch gradient sums are accumulated in
 * double; the GEMM operands, caches and parameters are `real`.  A model's parameters
 * (gmf_nn_model.params) are double; a workspace holds the `real` copy that training updates
 * (gmf_nn_ws_load copies params in, gmf_nn_ws_store copies the trained values back).
 *
 * Parameter layouts (one flat vector per layer, in this order):
 *   GM (diagonal, eq. (5))    mu (K x d) | sigma (K x d) | U (K x L x d) | v (K x L)
 *   GM full covariance        mu (K x d) | C (K x d x d)  | U (K x L x d) | v (K x L)
 *   GM low-rank covariance    the diagonal layer's four blocks, then V (K x r x d):
 *                             Sigma_k = diag(sigma_k^2) + V_k V_k^T, V_k (d x r) has column c
 *                             = row c of component k's block of V
 *   fully connected (FC)      beta (m x d) | omega (m x L)
 *   GM regression             mu (K x D) | C (K x D x D),  D = d + 1, theta = (omega, beta)
 *                             (the GMF_FLOW_EUCLID state layout of flow.h)
 * A network with learned mixture weights (gmf_nn_model_set_weights) appends, after all of the
 * above, K logits a per GM layer (group "a"; gm-stack: "a1" then "a2"): w = softmax(a) replaces
 * the equal weights 1/K, h(x) = sum_k w_k out_k(x) (docs/TRAINING.md, "Learned mixture weights").
 */
#ifndef GMFLOW_NN_H
#define GMFLOW_NN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Random numbers: xoshiro256** seeded by splitmix64 from (seed, stream).  Streams separate
 * independent uses (initialization, epoch e's shuffle, Monte Carlo draws) so that each is a pure
 * function of the seed -- the basis of the trainer's bitwise reproducibility.
 */
typedef struct gmf_nn_rng {
    uint64_t s[4];
} gmf_nn_rng;

void gmf_nn_rng_seed(gmf_nn_rng *r, uint64_t seed, uint64_t stream);
uint64_t gmf_nn_rng_u64(gmf_nn_rng *r);
double gmf_nn_rng_uniform(gmf_nn_rng *r); /* [0, 1), 53 random bits */
double gmf_nn_rng_normal(gmf_nn_rng *r);  /* N(0, 1), Box-Muller, no cached second draw */
/* Uniform integer in [0, n), n >= 1 (unbiased, by rejection). */
uint64_t gmf_nn_rng_below(gmf_nn_rng *r, uint64_t n);
/* Fisher-Yates shuffle of idx[0..n). */
void gmf_nn_rng_shuffle(gmf_nn_rng *r, size_t *idx, size_t n);

/* ---------------------------------------------------------------------------------------------
 * Parameter counts of the layers (layouts in the header comment).
 */
size_t gmf_nn_gm_nparams(size_t d, size_t K, size_t L);
size_t gmf_nn_gmfull_nparams(size_t d, size_t K, size_t L);
size_t gmf_nn_gmlr_nparams(size_t d, size_t K, size_t L, size_t r); /* K (2d + Ld + L + rd) */
size_t gmf_nn_fc_nparams(size_t d, size_t m, size_t L);

/* Unit-norm normalization eps: y = z / max(|z|, eps), as torch.nn.functional.normalize. */
#define GMF_NN_NORM_EPS 1e-12

/* ---------------------------------------------------------------------------------------------
 * Networks.  A model is a kind, its shapes and one flat double parameter vector split into named
 * groups (for per-group learning rates).
 *
 *   GMF_NN_GM       one GM layer d -> L, diagonal covariance (eq. (5)); groups mu sigma U v
 *   GMF_NN_GMFULL   one GM layer d -> L, full covariance Sigma_k = C_k C_k^T; groups mu C U v
 *   GMF_NN_FC       h(x) = fc_scale sum_j omega_j relu(beta_j . x), width m; groups beta omega
 *                   (fc_scale = 1/m: mean-field scaling of Section 2; 1: PyTorch's nn.Linear
 *                   without bias; see docs/TRAINING.md)
 *   GMF_NN_GMSTACK  GM d -> Lmid, unit-norm normalization, GM Lmid -> L (Appendix B), both with
 *                   K components; groups mu1 sigma1 U1 v1 mu2 sigma2 U2 v2
 *   GMF_NN_GMLR     one GM layer d -> L, low-rank covariance Sigma_k = diag(sigma_k^2) + V_k V_k^T
 *                   of rank r (gmf_nn_model.rank, 1 <= r <= d); groups mu sigma U v lowrank
 *                   ("gm-lowrank"; docs/TRAINING.md)
 *
 * Output: L logits for L + 1 classes, class 0 the reference with logit 0 (Section 4.1).
 */
typedef enum gmf_nn_kind {
    GMF_NN_GM = 0,
    GMF_NN_GMFULL,
    GMF_NN_FC,
    GMF_NN_GMSTACK,
    GMF_NN_GMLR
} gmf_nn_kind;

#define GMF_NN_MAX_GROUPS 16

/* Parameter groups: each group's index in gmf_nn_model.group[] and in a per-group learning-rate
 * vector (lr[GMF_NN_GROUP_U] is U's).  One GM layer has GMF_NN_GM_NGROUPS groups in this order;
 * gm-stack's second layer has the same ones shifted by GMF_NN_GM_NGROUPS (GMF_NN_GROUP_L2). */
typedef enum gmf_nn_group_id {
    GMF_NN_GROUP_MU = 0,    /* GM: mu (K x d) */
    GMF_NN_GROUP_SIGMA = 1, /* GM: sigma (K x d); gm-full: C (K x d x d) */
    GMF_NN_GROUP_U = 2,     /* GM: U (K x L x d) */
    GMF_NN_GROUP_V = 3,     /* GM: v (K x L) */
    GMF_NN_GM_NGROUPS = 4,  /* groups per GM layer */
    GMF_NN_GROUP_BETA = 0,  /* FC: beta (m x d) */
    GMF_NN_GROUP_OMEGA = 1  /* FC: omega (m x L) */
} gmf_nn_group_id;
#define GMF_NN_GROUP_C     GMF_NN_GROUP_SIGMA
#define GMF_NN_GROUP_L2(g) (GMF_NN_GM_NGROUPS + (g)) /* group g of gm-stack's second layer */

/* gm-lowrank: the factor V (K x r x d), the group after v, named "lowrank" (trained with
 * gmf_train_opts.lr_lowrank, which defaults to lr; frozen by --fixed-beta) */
#define GMF_NN_GROUP_LOWRANK GMF_NN_GM_NGROUPS

typedef struct gmf_nn_group {
    char name[16];
    size_t off, n; /* params[off .. off + n) */
    int sigma;     /* 1: trained with the sigma learning rate (sigma, C) */
    int beta;      /* 1: part of the beta-marginal (frozen by --fixed-beta): mu, sigma, C, beta */
    int layer;     /* 1, or 2 for the second GM layer of gm-stack */
    int logits;    /* 1: the mixture-weight logits a of a GM layer (learned weights) */
} gmf_nn_group;

/* Mixture weights of the GM layers: fixed and equal (1/K, the paper's) or learned (softmax of K
 * logits per layer, a parameter group appended after the others).  Geometry of the logits' SGD
 * step: euclid (a -= lr dL/da, dL/da_k = w_k (g_k - sum_j w_j g_j), g_k = dL/dw_k) or fr (the
 * Fisher-Rao natural-gradient step a_k -= lr (g_k - sum_j w_j g_j)). */
typedef enum { GMF_NN_WEIGHTS_FIXED = 0, GMF_NN_WEIGHTS_LEARNED = 1 } gmf_nn_weights;
typedef enum { GMF_NN_WGEOM_EUCLID = 0, GMF_NN_WGEOM_FR = 1 } gmf_nn_wgeom;
const char *gmf_nn_weights_name(gmf_nn_weights w);               /* "fixed", "learned" */
int gmf_nn_weights_parse(const char *name, gmf_nn_weights *out); /* GMF_EINVAL if unknown */
const char *gmf_nn_wgeom_name(gmf_nn_wgeom g);                   /* "euclid", "fr" */
int gmf_nn_wgeom_parse(const char *name, gmf_nn_wgeom *out);     /* GMF_EINVAL if unknown */

typedef struct gmf_nn_model {
    gmf_nn_kind kind;
    size_t d, L;     /* input dimension, number of logits (classes - 1) */
    size_t K;        /* components (GM kinds) */
    size_t width;    /* FC width m */
    size_t Lmid;     /* GMSTACK: width of the normalized middle layer */
    size_t rank;     /* GMLR: rank r of the low-rank covariance term (columns of V_k) */
    double fc_scale; /* FC output multiplier */
    size_t nparams;
    double *params;
    size_t ngroups;
    gmf_nn_group group[GMF_NN_MAX_GROUPS];
    gmf_nn_weights weights; /* GM kinds: fixed (0, default) or learned mixture weights */
} gmf_nn_model;

/* A model is plain data (API house style, docs/ARCHITECTURE.md): its fields -- kind, shapes,
 * params with nparams, the groups -- are read (and params written) by its users; it owns only
 * params.  gmf_nn_model_init allocates a zero-initialized one.  Shapes not used by `kind` are
 * ignored and stored as 0 (fc_scale for FC defaults to 1/width; set it after init to change).
 * GMF_NN_GMLR takes its rank r in `width` (1 <= r <= d; stored in m->rank, m->width = 0).  On
 * failure *m is zeroed: nothing to free (gmf_nn_model_free on it is harmless). */
int gmf_nn_model_init(gmf_nn_model *m, gmf_nn_kind kind, size_t d, size_t L, size_t K, size_t width,
                      size_t Lmid);
void gmf_nn_model_free(gmf_nn_model *m); /* frees params and zeroes *m; NULL is fine */
const char *
gmf_nn_kind_name(gmf_nn_kind kind); /* "gm", "gm-full", "fc", "gm-stack", "gm-lowrank" */
int gmf_nn_kind_parse(const char *name, gmf_nn_kind *out); /* GMF_EINVAL if unknown */
/* "gm d=784 L=9 K=20" and the like; returns buf. */
char *gmf_nn_model_describe(const gmf_nn_model *m, char *buf, size_t size);
/* Group index by name, or -1. */
int gmf_nn_model_group(const gmf_nn_model *m, const char *name);
/* Learned mixture weights for a GM kind (gm, gm-full, gm-stack): appends one group of K logits
 * per GM layer ("a"; "a1", "a2"), zero (= equal weights: the model computes what it computed
 * before, up to rounding), after the existing parameters, which keep their values and offsets.
 * GMF_NN_WEIGHTS_FIXED on a fixed model does nothing; GMF_EINVAL for fc or a model that has
 * learned weights already. */
int gmf_nn_model_set_weights(gmf_nn_model *m, gmf_nn_weights w);
/* The group of GM layer `layer` (1 or 2)'s logits, or -1 (fixed weights, no such layer). */
int gmf_nn_model_logits_group(const gmf_nn_model *m, int layer);

/* The paper's initialization of every GM layer in m (GM, GMFULL, GMSTACK): entries of mu, U, v
 * i.i.d. N(0, gamma^2); sigma = gamma (diagonal) or C = gamma I (full). */
int gmf_nn_init_gm(gmf_nn_model *m, double gamma, gmf_nn_rng *rng);
/* gm-lowrank (GMF_NN_GMLR): mu, U, v, sigma exactly as gmf_nn_init_gm draws them for the diagonal
 * layer (the same draws from rng, so a diagonal and a low-rank model of one seed share them),
 * then the entries of V i.i.d. N(0, rho gamma^2 / r), in the order of the layout.  At init
 * E_V[x' Sigma_k x] = (1 + rho) gamma^2 |x|^2: rho is the low-rank term's share relative to the
 * diagonal's (docs/TRAINING.md).  V = 0 (rho = 0) is a stationary point in V: rho > 0 to learn
 * V.  gmf_nn_init_gm on a GMLR model uses rho = GMF_NN_LOWRANK_INIT. */
#define GMF_NN_LOWRANK_INIT 0.1
int gmf_nn_init_gm_lowrank(gmf_nn_model *m, double gamma, double rho, gmf_nn_rng *rng);
/* PyTorch's default nn.Linear init (kaiming_uniform_ with a = sqrt(5)): beta entries
 * U(-1/sqrt(d), 1/sqrt(d)), omega entries U(-1/sqrt(m), 1/sqrt(m)). */
int gmf_nn_init_fc_kaiming(gmf_nn_model *fc, gmf_nn_rng *rng);

/* Fully connected network from a GM layer (gm of kind GM, GMFULL or GMLR, same d and L as fc):
 *   GMF_NN_FROM_GM_SAMPLE  each neuron j: k uniform in [K], beta ~ N(mu_k, Sigma_k) (GMLR:
 *                          beta = mu_k + sigma_k * z + V_k z', z ~ N(0, I_d), z' ~ N(0, I_r)),
 *                          omega = U_k beta + v_k (= E[omega | beta]); fc_scale = 1/m.
 *                          The paper's "matching" init when gm is the initial mixture, and the
 *                          Monte Carlo reduction of Figure 6 when gm is trained.
 *   GMF_NN_FROM_GM_MEANS   width K, beta_k = mu_k, omega_k = U_k mu_k + v_k; fc_scale = 1/K
 *                          (Figure 4). */
typedef enum { GMF_NN_FROM_GM_SAMPLE = 0, GMF_NN_FROM_GM_MEANS = 1 } gmf_nn_from_gm_mode;
int gmf_nn_fc_from_gm(gmf_nn_model *fc, const gmf_nn_model *gm, gmf_nn_from_gm_mode mode,
                      gmf_nn_rng *rng);

/* ---------------------------------------------------------------------------------------------
 * Models from a spec (src/discrete/nn_build.c): the training pipeline's initialization policy and
 * its RNG streams, so that a C caller builds exactly the model `gmflow train` builds.
 *
 *   GM kinds: gmf_nn_init_gm(gamma) from stream GMF_NN_STREAM_INIT of the seed.
 *   gm-lowrank: gmf_nn_init_gm_lowrank(gamma, lowrank_init) from the same stream.
 *   FC, kaiming:  gmf_nn_init_fc_kaiming from stream GMF_NN_STREAM_INIT.
 *   FC, matching: a diagonal GM mixture (K, gamma) drawn from stream GMF_NN_STREAM_INIT, then
 *                 `width` neurons sampled from it (GMF_NN_FROM_GM_SAMPLE) from stream
 *                 GMF_NN_STREAM_FC_INIT.
 *   FC, means:    the same mixture, width K, neurons at its means (GMF_NN_FROM_GM_MEANS).
 *   FC output scale: standard 1, mean-field 1/width; the default rule is standard for kaiming
 *                 and mean-field for matching and means.
 * Monte Carlo reduction (Figure 6): repeat r of width m draws from stream
 * GMF_NN_STREAM_MC + 7919 r + 104729 m.  (Epoch e's shuffle uses stream 1000 + e, train.h.)
 */
#define GMF_NN_STREAM_INIT    0u
#define GMF_NN_STREAM_MC      2000u
#define GMF_NN_STREAM_FC_INIT 3000u

typedef enum {
    GMF_NN_FC_INIT_KAIMING = 0,
    GMF_NN_FC_INIT_MATCHING = 1,
    GMF_NN_FC_INIT_MEANS = 2
} gmf_nn_fc_init;
typedef enum {
    GMF_NN_FC_SCALE_DEFAULT = 0,
    GMF_NN_FC_SCALE_STANDARD = 1,
    GMF_NN_FC_SCALE_MEANFIELD = 2
} gmf_nn_fc_scale_rule;

typedef struct gmf_nn_spec {
    gmf_nn_kind kind;              /* (GMF_NN_GM) */
    size_t K;                      /* components per GM layer; FC matching/means: mixture K (20) */
    size_t mid;                    /* gm-stack middle width (100) */
    size_t width;                  /* FC width (1000; means: K, whatever this says) */
    gmf_nn_fc_init fc_init;        /* (kaiming) */
    gmf_nn_fc_scale_rule fc_scale; /* (default rule) */
    double gamma;                  /* GM init scale (0.5) */
    gmf_nn_weights weights;        /* GM kinds: fixed (default) or learned mixture weights */
    size_t rank;                   /* gm-lowrank: rank r (1) */
    double lowrank_init;           /* gm-lowrank: rho of gmf_nn_init_gm_lowrank (0.1) */
} gmf_nn_spec;

void gmf_nn_spec_default(gmf_nn_spec *s);
/* The FC width and output scale the spec gives (width K for the means init). */
size_t gmf_nn_spec_width(const gmf_nn_spec *s);
double gmf_nn_spec_fc_scale(const gmf_nn_spec *s);
const char *gmf_nn_fc_init_name(gmf_nn_fc_init i);        /* "kaiming", "matching", "means" */
const char *gmf_nn_fc_scale_name(gmf_nn_fc_scale_rule r); /* "default", "standard", ... */
int gmf_nn_fc_init_parse(const char *name, gmf_nn_fc_init *out);        /* GMF_EINVAL if unknown */
int gmf_nn_fc_scale_parse(const char *name, gmf_nn_fc_scale_rule *out); /* standard, mean-field */
/* Allocate and initialize m (d inputs, L logits) as the spec says from `seed`; free with
 * gmf_nn_model_free.  On failure *m is zeroed (nothing to free), as after gmf_nn_model_init. */
int gmf_nn_model_build(gmf_nn_model *m, const gmf_nn_spec *s, size_t d, size_t L, uint64_t seed);
/* Allocate fc and draw it as repeat `repeat` of the width-`width` Monte Carlo reduction of gm
 * (gm or gm-full) from `seed`; on failure *fc is zeroed (nothing to free). */
int gmf_nn_mc_draw(gmf_nn_model *fc, const gmf_nn_model *gm, size_t width, uint64_t seed,
                   size_t repeat);

/* ---------------------------------------------------------------------------------------------
 * Named parameter views (llm.c's ParameterTensors): pointers to each named block of a flat
 * parameter vector P (the layouts of the header comment), so that no code writes an offset by
 * hand.  P may be a model's double params (the _d views), a workspace's `real` copy or its
 * gradient dP.  GM layer: sigma (diagonal) or C (gm-full) is set, the other NULL.  A network's
 * view has gm[0] (GM, gm-full, gm-stack's first layer), gm[1] (gm-stack's second layer, input
 * Lmid) or fc; the blocks of a kind that lacks them are NULL.  The views and the model's groups
 * (gmf_nn_model.group[g].off) agree: group GMF_NN_GROUP_U of a GM model starts at view.gm[0].U.
 */
#define GMF_NN_VIEW_API(real, S)                                                                   \
    typedef struct gmf_nn_gm_params##S {                                                           \
        real *mu, *sigma, *C, *U, *v;                                                              \
        real *a; /* K mixture-weight logits (learned weights; NULL when fixed) */                  \
    } gmf_nn_gm_params##S;                                                                         \
    typedef struct gmf_nn_fc_params##S {                                                           \
        real *beta, *omega;                                                                        \
    } gmf_nn_fc_params##S;                                                                         \
    typedef struct gmf_nn_net_params##S {                                                          \
        gmf_nn_gm_params##S gm[2];                                                                 \
        gmf_nn_fc_params##S fc;                                                                    \
        real *V; /* gm-lowrank: V (K x r x d), after gm[0]'s v; NULL for the other kinds */        \
    } gmf_nn_net_params##S;                                                                        \
    /* One GM layer's blocks in P (full: C instead of sigma). */                                   \
    gmf_nn_gm_params##S gmf_nn_gm_view##S(real *P, size_t d, size_t K, size_t L, int full);        \
    /* The FC layer's blocks in P (width m). */                                                    \
    gmf_nn_fc_params##S gmf_nn_fc_view##S(real *P, size_t d, size_t m, size_t L);                  \
    /* The blocks of model m's parameters in P (a vector of m->nparams entries). */                \
    gmf_nn_net_params##S gmf_nn_net_view##S(const gmf_nn_model *m, real *P);

GMF_NN_VIEW_API(float, _f)
GMF_NN_VIEW_API(double, _d)

/* ---------------------------------------------------------------------------------------------
 * Precision-templated API: GMF_NN_API(real, S) declares the float (_f) and double (_d)
 * versions.  In every function: outputs first, then caches, then inputs, then shapes.
 *
 * The per-layer caches are plain data (llm.c's explicit caches: arrays with their sizes, which
 * the backward pass and callers read, e.g. the mixture weights' w and gw), filled by
 * gmf_nn_*_cache_init (on failure zeroed: nothing to free) and released by gmf_nn_*_cache_free
 * (NULL is fine).  A whole network's workspace, which also owns a thread pool, is opaque (below).
 */

#define GMF_NN_API(real, S)                                                                        \
    /* ---- GM classification layer, diagonal covariance (eq. (5)) -------------------------- */   \
    /* h(x) = (1/K) sum_k [a_k A_k(x) + W_k x Phi_k(x)],  a_k = U_k mu_k + v_k,                */  \
    /* W_k = U_k diag(sigma_k^2),  m = x.mu_k,  s^2 = sum_j sigma_kj^2 x_j^2,                  */  \
    /* A = m Phi(m/s) + s phi(m/s).  Forward = two GEMMs: F = X [mu_k; W_k]_k^T (B x K(L+1))   */  \
    /* and S2 = (X*X) (sigma^2)^T (B x K); backward two more (dX: two more).                   */  \
    typedef struct gmf_nn_gm_cache##S {                                                            \
        size_t Bmax, d, K, L;                                                                      \
        /* parameter-derived (written by forward, read by backward) */                             \
        real *muW;  /* K x (L+1) x d: row k(L+1) = mu_k, rows k(L+1)+1+l = W_k[l,:] */             \
        real *sig2; /* K x d: sigma^2 */                                                           \
        real *a;    /* K x L: U_k mu_k + v_k */                                                    \
        /* activations, Bmax rows */                                                               \
        real *X2;   /* B x d: X * X (not filled on AVX-512 float32 builds) */                      \
        real *XT;   /* X^T in panels of 64 rows (AVX-512 float32 builds; else NULL) */             \
        real *xtb;  /* the X^T of this pass: XT, or dmuW's storage when it fits (nn_tmpl.h) */     \
        size_t xt0; /* xtb's column of row 0 (0; a row view's first row) */                        \
        real *F;    /* B x K x (L+1): [m_ik, G_ik (L)], G_ik = W_k x_i */                          \
        real *S2;   /* B x K: s_ik^2 */                                                            \
        real *s, *Phi, *phi, *A; /* B x K */                                                       \
        /* backward scratch */                                                                     \
        real *dF;    /* B x K x (L+1): [dL/dm_ik, dL/dG_ik] */                                     \
        real *dS2;   /* B x K */                                                                   \
        real *dmuW;  /* K x (L+1) x d */                                                           \
        real *dsig2; /* K x d */                                                                   \
        /* mixture weights (gmf_nn_gm_forward_w with logits): learned = 1, w = softmax(a); the */  \
        /* backward pass leaves gw_k = dL/dw_k = sum_i dH_i . out_k(x_i) (double, K each) */       \
        int learned;                                                                               \
        double *w, *gw;                                                                            \
    } gmf_nn_gm_cache##S;                                                                          \
    int gmf_nn_gm_cache_init##S(gmf_nn_gm_cache##S *c, size_t Bmax, size_t d, size_t K, size_t L); \
    void gmf_nn_gm_cache_free##S(gmf_nn_gm_cache##S *c);                                           \
    /* H: B x L.  X: B x d.  P: gmf_nn_gm_nparams(d, K, L).  B <= c->Bmax. */                      \
    void gmf_nn_gm_forward##S(real *H, gmf_nn_gm_cache##S *c, const real *X, const real *P,        \
                              size_t B, size_t d, size_t K, size_t L);                             \
    /* dP (overwritten, layout of P), dX (B x d, overwritten; NULL to skip) from dH (B x L),       \
     * after gmf_nn_gm_forward on the same X and P. */                                             \
    void gmf_nn_gm_backward##S(real *dP, real *dX, gmf_nn_gm_cache##S *c, const real *dH,          \
                               const real *X, const real *P, size_t B, size_t d, size_t K,         \
                               size_t L);                                                          \
    /* The same layer with mixture weights w = softmax(logit) (K logits; NULL: equal weights,      \
     * exactly gmf_nn_gm_forward): h(x) = sum_k w_k out_k(x).  The backward pass (after the        \
     * forward on the same X, P, logit) also writes dlogit (K; NULL to skip; only with logits):    \
     * dL/da_k = w_k (g_k - sum_j w_j g_j), g_k = c->gw[k]. */                                     \
    void gmf_nn_gm_forward_w##S(real *H, gmf_nn_gm_cache##S *c, const real *X, const real *P,      \
                                const real *logit, size_t B, size_t d, size_t K, size_t L);        \
    void gmf_nn_gm_backward_w##S(real *dP, real *dlogit, real *dX, gmf_nn_gm_cache##S *c,          \
                                 const real *dH, const real *X, const real *P, size_t B, size_t d, \
                                 size_t K, size_t L);                                              \
                                                                                                   \
    /* ---- GM classification layer, full covariance Sigma_k = C_k C_k^T (small d) ---------- */   \
    /* h(x) = (1/K) sum_k [a_k A_k(x) + U_k Sigma_k x Phi_k(x)],  s^2 = |C_k^T x|^2.           */  \
    typedef struct gmf_nn_gmfull_cache##S {                                                        \
        size_t Bmax, d, K, L;                                                                      \
        real *a;                 /* K x L */                                                       \
        real *M;                 /* B x K: x_i . mu_k */                                           \
        real *Wc;                /* K x B x d: row i = (C_k^T x_i)^T */                            \
        real *Cc;                /* K x B x d: row i = (Sigma_k x_i)^T */                          \
        real *G;                 /* K x B x L: row i = (U_k Sigma_k x_i)^T */                      \
        real *s, *Phi, *phi, *A; /* B x K */                                                       \
        real *dG, *dCc, *dWc;    /* K x B x {L, d, d} backward scratch */                          \
        real *dM, *dS2;          /* B x K */                                                       \
        int learned;             /* mixture weights, as the diagonal layer's cache */              \
        double *w, *gw;          /* K each */                                                      \
    } gmf_nn_gmfull_cache##S;                                                                      \
    int gmf_nn_gmfull_cache_init##S(gmf_nn_gmfull_cache##S *c, size_t Bmax, size_t d, size_t K,    \
                                    size_t L);                                                     \
    void gmf_nn_gmfull_cache_free##S(gmf_nn_gmfull_cache##S *c);                                   \
    void gmf_nn_gmfull_forward##S(real *H, gmf_nn_gmfull_cache##S *c, const real *X,               \
                                  const real *P, size_t B, size_t d, size_t K, size_t L);          \
    void gmf_nn_gmfull_backward##S(real *dP, real *dX, gmf_nn_gmfull_cache##S *c, const real *dH,  \
                                   const real *X, const real *P, size_t B, size_t d, size_t K,     \
                                   size_t L);                                                      \
    /* With mixture weights, as gmf_nn_gm_forward_w / _backward_w. */                              \
    void gmf_nn_gmfull_forward_w##S(real *H, gmf_nn_gmfull_cache##S *c, const real *X,             \
                                    const real *P, const real *logit, size_t B, size_t d,          \
                                    size_t K, size_t L);                                           \
    void gmf_nn_gmfull_backward_w##S(real *dP, real *dlogit, real *dX, gmf_nn_gmfull_cache##S *c,  \
                                     const real *dH, const real *X, const real *P, size_t B,       \
                                     size_t d, size_t K, size_t L);                                \
                                                                                                   \
    /* ---- GM classification layer, low-rank Sigma_k = diag(sigma_k^2) + V_k V_k^T ------- */     \
    /* h(x) = (1/K) sum_k [a_k A_k(x) + Phi_k(x) G_k(x)],  G_k = U_k Sigma_k x = W_k x + Q_k t,    \
     * W_k = U_k diag(sigma_k^2), Q_k = U_k V_k (L x r), t = V_k^T x (r),                          \
     * s^2 = sum_j sigma_kj^2 x_j^2 + |t|^2.  Forward = two GEMMs, F = X E^T with the K(L+1+r)     \
     * rows E = [mu_k; W_k; V_k^T]_k and S2 = (X*X)(sigma^2)^T, plus O(B K L r) for Q_k t;         \
     * backward two more. */                                                                       \
    typedef struct gmf_nn_gmlr_cache##S {                                                          \
        size_t Bmax, d, K, L, r;                                                                   \
        /* parameter-derived (written by forward, read by backward) */                             \
        real *E;    /* K x (L+1+r) x d: rows [mu_k; W_k (L); V_k^T (r)] */                         \
        real *sig2; /* K x d: sigma^2 */                                                           \
        real *a;    /* K x L: U_k mu_k + v_k */                                                    \
        real *Q;    /* K x L x r: U_k V_k */                                                       \
        /* activations, Bmax rows */                                                               \
        real *X2;   /* B x d: X * X (not filled on AVX-512 float32 builds) */                      \
        real *XT;   /* X^T in panels of 64 rows (AVX-512 float32 builds; else NULL) */             \
        real *xtb;  /* the X^T of this pass: XT, or dmuW's storage when it fits (nn_tmpl.h) */     \
        size_t xt0; /* xtb's column of row 0 (0; a row view's first row) */                        \
        real *F;    /* B x K x (L+1+r): [m_ik, G_ik (L), t_ik (r)] */                              \
        real *S2;   /* B x K: diagonal part of s_ik^2 */                                           \
        real *s, *Phi, *phi, *A; /* B x K */                                                       \
        /* backward scratch */                                                                     \
        real *dF;    /* B x K x (L+1+r): [dL/dm_ik, dL/dG_ik, dL/dt_ik] */                         \
        real *dS2;   /* B x K */                                                                   \
        real *dE;    /* K x (L+1+r) x d */                                                         \
        real *dsig2; /* K x d */                                                                   \
        real *dQ;    /* K x L x r */                                                               \
        real *dUq;   /* K x L x d: dQ_k V_k^T */                                                   \
    } gmf_nn_gmlr_cache##S;                                                                        \
    int gmf_nn_gmlr_cache_init##S(gmf_nn_gmlr_cache##S *c, size_t Bmax, size_t d, size_t K,        \
                                  size_t L, size_t r);                                             \
    void gmf_nn_gmlr_cache_free##S(gmf_nn_gmlr_cache##S *c);                                       \
    /* H: B x L.  X: B x d.  P: gmf_nn_gmlr_nparams(d, K, L, r).  B <= c->Bmax. */                 \
    void gmf_nn_gmlr_forward##S(real *H, gmf_nn_gmlr_cache##S *c, const real *X, const real *P,    \
                                size_t B, size_t d, size_t K, size_t L, size_t r);                 \
    /* dP (overwritten), dX (B x d, overwritten; NULL to skip) from dH, after the forward. */      \
    void gmf_nn_gmlr_backward##S(real *dP, real *dX, gmf_nn_gmlr_cache##S *c, const real *dH,      \
                                 const real *X, const real *P, size_t B, size_t d, size_t K,       \
                                 size_t L, size_t r);                                              \
                                                                                                   \
    /* ---- fully connected ReLU layer: h(x) = scale sum_j omega_j relu(beta_j . x) ---------- */  \
    typedef struct gmf_nn_fc_cache##S {                                                            \
        size_t Bmax, d, m, L;                                                                      \
        real *R;  /* B x m: relu(X beta^T) */                                                      \
        real *dR; /* B x m: backward scratch */                                                    \
    } gmf_nn_fc_cache##S;                                                                          \
    int gmf_nn_fc_cache_init##S(gmf_nn_fc_cache##S *c, size_t Bmax, size_t d, size_t m, size_t L); \
    void gmf_nn_fc_cache_free##S(gmf_nn_fc_cache##S *c);                                           \
    void gmf_nn_fc_forward##S(real *H, gmf_nn_fc_cache##S *c, const real *X, const real *P,        \
                              real scale, size_t B, size_t d, size_t m, size_t L);                 \
    void gmf_nn_fc_backward##S(real *dP, real *dX, gmf_nn_fc_cache##S *c, const real *dH,          \
                               const real *X, const real *P, real scale, size_t B, size_t d,       \
                               size_t m, size_t L);                                                \
                                                                                                   \
    /* ---- unit-norm normalization y_i = z_i / max(|z_i|, GMF_NN_NORM_EPS) ------------------- */ \
    /* nrm (B) caches max(|z_i|, eps). */                                                          \
    void gmf_nn_unitnorm_forward##S(real *Y, real *nrm, const real *Z, size_t B, size_t n);        \
    void gmf_nn_unitnorm_backward##S(real *dZ, const real *dY, const real *Y, const real *nrm,     \
                                     size_t B, size_t n);                                          \
                                                                                                   \
    /* ---- multi-class logistic loss, L + 1 classes, class 0 the reference (logit 0) ------- */   \
    /* loss_i = log(1 + sum_l exp(h_il)) - h_{i,y_i}  (h_{i,0} := 0), by a log-sum-exp over    */  \
    /* [0, h_i].  Writes loss_i to lossv (B, may be NULL) and, if dH != NULL,                  */  \
    /* dH = dscale (softmax([0,h_i])_l - 1{y_i = l}), l = 1..L.  Returns sum_i loss_i (double; */  \
    /* +inf or NaN if some h is not finite).  Labels must be <= L.                             */  \
    double gmf_nn_refloss##S(real *dH, double *lossv, const real *H, const uint8_t *y,             \
                             double dscale, size_t B, size_t L);                                   \
    /* Predicted class (0..L) per row: argmax of [0, h_i] (ties: lowest class).  Returns the       \
     * number of rows whose prediction differs from y (y may be NULL: returns 0). */               \
    size_t gmf_nn_predict##S(uint8_t *pred, const real *H, const uint8_t *y, size_t B, size_t L);  \
                                                                                                   \
    /* ---- whole networks ------------------------------------------------------------------- */  \
    /* A workspace (opaque: it owns the `real` parameters, gradients, activations, the layers'     \
     * caches and, for GMF_NN_GM and GMF_NN_GMLR, a thread pool) for batches of up to Bmax         \
     * samples of model m (not owned: m must outlive the workspace).  nthreads >= 1                \
     * (smaller counts as 1): for GMF_NN_GM the components are split over a pool of nthreads       \
     * threads (OpenBLAS single-threaded inside them); for the other kinds OpenBLAS itself uses    \
     * nthreads threads (the process-wide OpenBLAS setting is made at each call into the           \
     * workspace).  Loads m->params into the working copy P.  *out = NULL and GMF_EINVAL (Bmax     \
     * = 0, unknown kind) or GMF_ENOMEM on failure. */                                             \
    /* GMF_NN_GMLR runs on the pool like GMF_NN_GM (below too: its step is fused the same way). */ \
    typedef struct gmf_nn_ws##S gmf_nn_ws##S;                                                      \
    int gmf_nn_ws_new##S(gmf_nn_ws##S **out, gmf_nn_model *m, size_t Bmax, int nthreads);          \
    void gmf_nn_ws_free##S(gmf_nn_ws##S *ws); /* NULL is fine */                                   \
    /* The workspace's arrays that callers read (valid until gmf_nn_ws_free): the gradient dP      \
     * (m->nparams; gmf_nn_loss_grad with accumulate = 0), the double gradient accumulator gacc    \
     * (m->nparams; accumulate = 1; the caller may zero it) and an output buffer H of Bmax x m->L  \
     * logits for gmf_nn_forward.  The working copy P of the parameters has no accessor:           \
     * gmf_nn_ws_store copies it to m->params, gmf_nn_ws_load copies m->params into it. */         \
    const real *gmf_nn_ws_grad##S(const gmf_nn_ws##S *ws);                                         \
    double *gmf_nn_ws_grad_acc##S(gmf_nn_ws##S *ws);                                               \
    real *gmf_nn_ws_logits##S(gmf_nn_ws##S *ws);                                                   \
    /* P <- (real) m->params (call after changing m->params by hand). */                           \
    void gmf_nn_ws_load##S(gmf_nn_ws##S *ws);                                                      \
    /* m->params <- P (after training: checkpoints and snapshots read m->params). */               \
    void gmf_nn_ws_store##S(gmf_nn_ws##S *ws);                                                     \
    /* The SGD rule for learned mixture weights (no effect with fixed weights): the logits' step   \
     * geometry, and per_mass = 1 to give component k's other parameters (mu, sigma / C, U, v)     \
     * the rate lr_g / (K w_k) (the WFR flow's per-unit-mass transport; docs/TRAINING.md). */      \
    void gmf_nn_ws_set_weight_rule##S(gmf_nn_ws##S *ws, gmf_nn_wgeom geom, int per_mass);          \
    /* Logits H (B x L) of X (B x d) at P; H may be gmf_nn_ws_logits(ws). */                       \
    void gmf_nn_forward##S(real *H, gmf_nn_ws##S *ws, const real *X, size_t B);                    \
    /* Forward, loss and backward: returns sum_i loss_i over the batch; if it is finite, sets      \
     * dP to (accumulate = 0) or adds to gacc (accumulate = 1, in double) the gradient             \
     * of dscale * sum_i loss_i (gmf_nn_ws_grad, gmf_nn_ws_grad_acc).  A non-finite return leaves  \
     * dP and gacc untouched. */                                                                   \
    double gmf_nn_loss_grad##S(gmf_nn_ws##S *ws, const real *X, const uint8_t *y, size_t B,        \
                               double dscale, int accumulate);                                     \
    /* SGD with per-group learning rates lr[g] (g < m->ngroups; 0 freezes a group exactly):        \
     * P -= lr[g] grad on the group's entries, grad = dP, or gacc when from_acc (which             \
     * is then zeroed).  m->params is not touched: gmf_nn_ws_store.  Learned weights (the rates    \
     * set by gmf_nn_ws_set_weight_rule, w of the last forward pass): fr divides the logits'       \
     * gradient by w_k (a_k -= lr (g_k - gbar)); per_mass divides component k's other rates by     \
     * K w_k; a component with w_k == 0 (underflow) is not moved. */                               \
    void gmf_nn_sgd_apply##S(gmf_nn_ws##S *ws, const double *lr, int from_acc);                    \
    /* One SGD step on the mean loss of a batch: gmf_nn_loss_grad(dscale = 1/B) then               \
     * gmf_nn_sgd_apply; for GMF_NN_GM fused (each component's parameters updated right after      \
     * their gradient, no dP written) and split over the pool.  Returns the batch's mean loss;     \
     * when it is not finite nothing is updated. */                                                \
    double gmf_nn_sgd_step##S(gmf_nn_ws##S *ws, const real *X, const uint8_t *y, size_t B,         \
                              const double *lr);                                                   \
    /* The same step on the batch of rows idx[0..B) of a float data set (m->d floats per row)      \
     * and their labels: the rows are gathered into the workspace's batch buffer (for GMF_NN_GM by \
     * the pool's threads, each its share of the rows, inside the step). */                        \
    double gmf_nn_sgd_step_rows##S(gmf_nn_ws##S *ws, const float *data, const uint8_t *labels,     \
                                   const size_t *idx, size_t B, const double *lr);

GMF_NN_API(float, _f)
GMF_NN_API(double, _d)

/* ---------------------------------------------------------------------------------------------
 * GM regression layer: K full joint Gaussians N(mu_k, C_k C_k^T) over theta = (omega, beta) in
 * R^D (D = d + 1), h(x) = (1/K) sum_k E_k[omega relu(beta . x)], squared loss
 * l(mu, C) = (1/n) sum_i (y_i - h(x_i))^2 over a fixed data set -- the discrete counterpart of
 * the exact flows.  It is built on the squared-loss oracle (sqloss.h) and the Euclidean flow
 * (flow.h): the gradient of l is exactly -gmf_flow_rhs(GMF_FLOW_EUCLID), so this layer and the
 * flows share one implementation of the closed forms.  Double precision only.
 *
 * Opaque (API house style, docs/ARCHITECTURE.md): the layer owns a workspace -- its copy of the
 * data in a squared-loss oracle, the flow's scratch and a gradient of K (D + D^2) doubles -- and
 * has no field a caller reads; P's layout is the Euclidean flow state's (gmf_flow_mu_offset /
 * gmf_flow_mat_offset with D = d + 1).
 */
typedef struct gmf_nn_gmreg gmf_nn_gmreg;

/* *out = a layer of K components over the data X: n x d, y: n (both copied); *out = NULL and an
 * error code (GMF_EINVAL for K = 0, or the oracle's) on failure. */
int gmf_nn_gmreg_new(gmf_nn_gmreg **out, size_t K, size_t n, size_t d, const double *X,
                     const double *y);
void gmf_nn_gmreg_free(gmf_nn_gmreg *g); /* NULL is fine */
/* Predictions (n, may be NULL) and loss (may be NULL) at P = [mu (K x D) | C (K x D x D)]. */
int gmf_nn_gmreg_forward(double *pred, double *loss, gmf_nn_gmreg *g, const double *P);
/* dP = gradient of the loss at P (same layout); loss (may be NULL). */
int gmf_nn_gmreg_backward(double *dP, double *loss, gmf_nn_gmreg *g, const double *P);
/* One full-batch gradient-descent step P -= lr dP; returns the loss before the step. */
int gmf_nn_gmreg_gd_step(double *P, double *loss, gmf_nn_gmreg *g, double lr);

#ifdef __cplusplus
}
#endif
#endif
