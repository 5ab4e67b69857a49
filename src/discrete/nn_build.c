/* nn_build.c -- a model from a spec: the initialization policy and the RNG streams of the
 * training pipeline (nn.h: gmf_nn_spec, gmf_nn_model_build, gmf_nn_mc_draw). */
#include <stdio.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/nn.h"

static const char *fc_init_names[] = {"kaiming", "matching", "means"};
static const char *fc_scale_names[] = {"default", "standard", "mean-field"};

void gmf_nn_spec_default(gmf_nn_spec *s) {
    memset(s, 0, sizeof *s);
    s->kind = GMF_NN_GM;
    s->K = 20;
    s->mid = 100;
    s->width = 1000;
    s->fc_init = GMF_NN_FC_INIT_KAIMING;
    s->fc_scale = GMF_NN_FC_SCALE_DEFAULT;
    s->gamma = 0.5;
    s->rank = 1;
    s->lowrank_init = GMF_NN_LOWRANK_INIT;
}

const char *gmf_nn_fc_init_name(gmf_nn_fc_init i) {
    return (unsigned)i < 3 ? fc_init_names[i] : "unknown";
}

const char *gmf_nn_fc_scale_name(gmf_nn_fc_scale_rule r) {
    return (unsigned)r < 3 ? fc_scale_names[r] : "unknown";
}

int gmf_nn_fc_init_parse(const char *name, gmf_nn_fc_init *out) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, fc_init_names[i])) {
            *out = (gmf_nn_fc_init)i;
            return GMF_OK;
        }
    return gmf_error(GMF_EINVAL, "expected kaiming, matching or means (got '%s')", name);
}

int gmf_nn_fc_scale_parse(const char *name, gmf_nn_fc_scale_rule *out) {
    for (int i = 1; i < 3; i++) /* "default" is not a user spelling */
        if (!strcmp(name, fc_scale_names[i])) {
            *out = (gmf_nn_fc_scale_rule)i;
            return GMF_OK;
        }
    return gmf_error(GMF_EINVAL, "expected standard or mean-field (got '%s')", name);
}

size_t gmf_nn_spec_width(const gmf_nn_spec *s) {
    return s->kind == GMF_NN_FC && s->fc_init == GMF_NN_FC_INIT_MEANS ? s->K : s->width;
}

double gmf_nn_spec_fc_scale(const gmf_nn_spec *s) {
    gmf_nn_fc_scale_rule r = s->fc_scale;
    if (r == GMF_NN_FC_SCALE_DEFAULT)
        r = s->fc_init == GMF_NN_FC_INIT_KAIMING ? GMF_NN_FC_SCALE_STANDARD
                                                 : GMF_NN_FC_SCALE_MEANFIELD;
    return r == GMF_NN_FC_SCALE_STANDARD ? 1.0 : 1.0 / (double)gmf_nn_spec_width(s);
}

/* FC initialized from a diagonal GM mixture drawn from `rng` (matching: sampled neurons from
 * stream GMF_NN_STREAM_FC_INIT; means: width K at the means). */
static int fc_from_mixture(gmf_nn_model *m, const gmf_nn_spec *s, gmf_nn_rng *rng, uint64_t seed) {
    gmf_nn_model gm;
    int rc = gmf_nn_model_init(&gm, GMF_NN_GM, m->d, m->L, s->K, 0, 0);
    if (rc) return rc;
    gmf_nn_init_gm(&gm, s->gamma, rng);
    gmf_nn_rng r2;
    gmf_nn_rng_seed(&r2, seed, GMF_NN_STREAM_FC_INIT);
    rc = gmf_nn_fc_from_gm(
        m, &gm, s->fc_init == GMF_NN_FC_INIT_MEANS ? GMF_NN_FROM_GM_MEANS : GMF_NN_FROM_GM_SAMPLE,
        &r2);
    gmf_nn_model_free(&gm);
    return rc;
}

int gmf_nn_model_build(gmf_nn_model *m, const gmf_nn_spec *s, size_t d, size_t L, uint64_t seed) {
    memset(m, 0, sizeof *m); /* zeroed on every failure, as gmf_nn_model_init leaves it */
    if ((unsigned)s->fc_init > 2 || (unsigned)s->fc_scale > 2)
        return gmf_error(GMF_EINVAL, "model spec: unknown fc init or scale rule");
    const int lowrank = s->kind == GMF_NN_GMLR; /* its rank goes in the width argument */
    int rc =
        gmf_nn_model_init(m, s->kind, d, L, s->K, lowrank ? s->rank : gmf_nn_spec_width(s), s->mid);
    if (rc) return rc;
    if (s->weights != GMF_NN_WEIGHTS_FIXED && (rc = gmf_nn_model_set_weights(m, s->weights))) {
        gmf_nn_model_free(m);
        return rc;
    }
    gmf_nn_rng rng;
    gmf_nn_rng_seed(&rng, seed, GMF_NN_STREAM_INIT);
    if (lowrank)
        rc = gmf_nn_init_gm_lowrank(m, s->gamma, s->lowrank_init, &rng);
    else if (s->kind != GMF_NN_FC)
        rc = gmf_nn_init_gm(m, s->gamma, &rng);
    else if (s->fc_init == GMF_NN_FC_INIT_KAIMING)
        rc = gmf_nn_init_fc_kaiming(m, &rng);
    else
        rc = fc_from_mixture(m, s, &rng, seed);
    if (rc) {
        gmf_nn_model_free(m);
        return rc;
    }
    if (s->kind == GMF_NN_FC) m->fc_scale = gmf_nn_spec_fc_scale(s);
    return GMF_OK;
}

int gmf_nn_mc_draw(gmf_nn_model *fc, const gmf_nn_model *gm, size_t width, uint64_t seed,
                   size_t repeat) {
    int rc = gmf_nn_model_init(fc, GMF_NN_FC, gm->d, gm->L, 0, width, 0);
    if (rc) return rc;
    gmf_nn_rng rng;
    gmf_nn_rng_seed(&rng, seed, GMF_NN_STREAM_MC + 7919u * repeat + 104729u * width);
    rc = gmf_nn_fc_from_gm(fc, gm, GMF_NN_FROM_GM_SAMPLE, &rng);
    if (rc) gmf_nn_model_free(fc);
    return rc;
}
