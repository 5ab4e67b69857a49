/* wfr_study.c -- Wasserstein (fixed equal weights) vs Wasserstein-Fisher-Rao (learned weights)
 * mixture flows on regression toys, at equal K and from the same initial mixture (docs/WFR.md,
 * docs/RESULTS.md "WFR vs W").
 *
 * For each seed, K and alpha in the list: the toy (ReLU teacher of width 4, d = 3, n = 200, noise
 * 0.05), the paper's initialization (gamma = 1/2) with weights 1/K, GMF_FLOW_WFR_BW integrated
 * with CVODE BDF (rtol 1e-8) to T at log-spaced output times.  alpha = 0 is today's W flow
 * (Theorem 3; docs/WFR.md shows the WFR flow reduces to it).  Per output time it writes
 *   loss.csv:    seed,K,alpha,t,loss,neff,dmin
 *                (neff = 1 / sum w_k^2, the effective number of components; dmin = the smallest
 *                distance between two means: a collapse of components shows as dmin -> 0)
 *   weights.csv: seed,K,alpha,t,k,w
 *   stalled.csv: seed,K,alpha,t_reached  (runs that exceeded STEP_BUDGET steps in one interval)
 *
 *   examples/wfr_study                               smoke run (1 seed, K = 3, T = 20); checks
 *                                                    that L never increases and w stays on the
 *                                                    simplex, exit 0
 *   examples/wfr_study --out DIR [--seeds S] [--K a,b] [--alpha a,b,c] [--T T]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/flow.h"
#include "gmflow/ode.h"
#include "gmflow/sqloss.h"
#include "gmflow/toy.h"

#define NOUT 61
/* Internal BDF steps allowed per output interval: a run that needs more is recorded as stalled
 * (stalled.csv) -- the W flow's covariances degenerate and the right-hand side loses smoothness
 * there (the closed forms' s -> 0 limit), which makes any integrator crawl. */
#define STEP_BUDGET 20000

typedef struct {
    FILE *fl, *fw;
    gmf_flow *f;
    unsigned long seed;
    double alpha, Lprev;
    int bad;      /* loss increased or weights left the simplex */
    double tlast; /* last output time reached */
} obs_ctx;

static double dmin_means(const gmf_flow *f, const double *y) {
    const size_t K = gmf_flow_K(f), D = gmf_flow_D(f);
    double dm = INFINITY;
    for (size_t a = 0; a < K; a++)
        for (size_t b = a + 1; b < K; b++) {
            double s = 0.0;
            for (size_t i = 0; i < D; i++) {
                double e = y[K + a * D + i] - y[K + b * D + i];
                s += e * e;
            }
            dm = fmin(dm, sqrt(s));
        }
    return K > 1 ? dm : 0.0;
}

static int observe(size_t j, double t, const double *y, void *user) {
    (void)j;
    obs_ctx *o = user;
    const size_t K = gmf_flow_K(o->f);
    double L, s = 0.0, q = 0.0, wmin = INFINITY;
    if (gmf_flow_loss(o->f, y, &L)) return 1;
    for (size_t k = 0; k < K; k++)
        s += y[k], q += y[k] * y[k], wmin = fmin(wmin, y[k]);
    if (L > o->Lprev * (1.0 + 1e-7) || fabs(s - 1.0) > 1e-12 || wmin < 0.0) o->bad = 1;
    o->Lprev = L;
    o->tlast = t;
    if (o->fl)
        fprintf(o->fl, "%lu,%zu,%g,%.6g,%.10g,%.6g,%.6g\n", o->seed, K, o->alpha, t, L, 1.0 / q,
                dmin_means(o->f, y));
    if (o->fw)
        for (size_t k = 0; k < K; k++)
            fprintf(o->fw, "%lu,%zu,%g,%.6g,%zu,%.10g\n", o->seed, K, o->alpha, t, k, y[k]);
    return 0;
}

static int run(unsigned long seed, size_t K, double alpha, double T, FILE *fl, FILE *fw, FILE *fs,
               int *bad) {
    gmf_toy_opts to = gmf_toy_defaults();
    to.n = 200, to.d = 3, to.width = 4, to.noise = 0.05, to.seed = seed;
    const size_t D = to.d + 1;
    double *X = NULL, *yv = NULL, *y = NULL, tout[NOUT];
    gmf_sqloss *sq = NULL;
    gmf_flow *f = NULL;
    int rc = gmf_toy_make(&to, &X, &yv);
    if (!rc) rc = gmf_sqloss_new(&sq, to.n, to.d, X, yv);
    if (!rc) rc = gmf_flow_new(&f, GMF_FLOW_WFR_BW, K, gmf_sqloss_oracle(sq));
    if (!rc) rc = gmf_flow_set_alpha(f, alpha);
    if (!rc && !(y = gmf_calloc(gmf_flow_dim(f), sizeof(double), "study state"))) rc = GMF_ENOMEM;
    if (!rc) rc = gmf_toy_init_mixture(K, D, 0.5, seed + 100, y + K, NULL, y + K + K * D);
    if (rc) goto done;
    for (size_t k = 0; k < K; k++)
        y[k] = 1.0 / (double)K;
    tout[0] = 0.0; /* 0, then log-spaced from 1e-2 to T */
    for (size_t j = 1; j < NOUT; j++)
        tout[j] = 1e-2 * pow(T / 1e-2, (double)(j - 1) / (double)(NOUT - 2));
    gmf_ode_opts o = gmf_ode_defaults();
    o.method = GMF_ODE_CVODE_BDF; /* the W runs get stiff as covariances degenerate */
    o.rtol = 1e-8, o.atol = 1e-10, o.max_steps = STEP_BUDGET;
    obs_ctx oc = {fl, fw, f, seed, alpha, INFINITY, 0, 0.0};
    rc = gmf_ode_solve(gmf_flow_dim(f), gmf_flow_ode_rhs, f, y, tout, NOUT, &o, observe, &oc, NULL);
    *bad |= oc.bad;
    if (rc) { /* a stall: recorded, not fatal (the study reports how often each flow stalls) */
        printf("wfr_study: seed %lu K %zu alpha %g stalled after t = %g: %s\n", seed, K, alpha,
               oc.tlast, gmf_errmsg());
        if (fs) fprintf(fs, "%lu,%zu,%g,%.6g\n", seed, K, alpha, oc.tlast);
        rc = GMF_OK;
    }
done:
    if (rc)
        fprintf(stderr, "wfr_study: seed %lu K %zu alpha %g: %s\n", seed, K, alpha, gmf_errmsg());
    free(y);
    gmf_flow_free(f);
    gmf_sqloss_free(sq);
    free(X);
    free(yv);
    return rc;
}

/* Comma-separated list of numbers into v (at most 8); returns the count, 0 on a bad list. */
static size_t parse_list(const char *s, double *v) {
    size_t n = 0;
    char *end;
    while (n < 8) {
        v[n++] = strtod(s, &end);
        if (end == s) return 0;
        if (*end == '\0') return n;
        if (*end != ',') return 0;
        s = end + 1;
    }
    return 0;
}

static void usage(FILE *f) {
    fputs("usage: wfr_study [--out DIR] [--seeds S] [--K a,b,...] [--alpha a,b,...] [--T T]\n"
          "  W (alpha = 0) vs WFR mixture flows on ReLU-teacher toys (docs/WFR.md)\n"
          "  --out DIR      write loss.csv, weights.csv, stalled.csv there (default: a smoke run\n"
          "                 that checks the loss never increases; nothing written)\n"
          "  --seeds S      toys per (K, alpha), S >= 1 (default 1)\n"
          "  --K a,b,...    numbers of components, at most 8 (default 3)\n"
          "  --alpha a,...  Fisher-Rao weights, at most 8 (default 0,1,10)\n"
          "  --T T          final time, > 0.01 (default 20)\n",
          f);
}

/* A bad option value: names the option and the value, exit status 2. */
static int bad_value(const char *opt, const char *v) {
    fprintf(stderr, "wfr_study: bad value '%s' for %s\n", v, opt);
    usage(stderr);
    return 2;
}

int main(int argc, char **argv) {
    const char *out = NULL;
    unsigned long seeds = 1;
    double Ks[8] = {3}, alphas[8] = {0, 1, 10}, T = 20.0;
    size_t nK = 1, na = 3;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--out") && strcmp(a, "--seeds") && strcmp(a, "--T") && strcmp(a, "--K") &&
            strcmp(a, "--alpha")) {
            fprintf(stderr, "wfr_study: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        if (!v) {
            fprintf(stderr, "wfr_study: option %s needs a value\n", a);
            usage(stderr);
            return 2;
        }
        char *end = NULL;
        if (!strcmp(a, "--out")) {
            out = v;
        } else if (!strcmp(a, "--seeds")) {
            seeds = strtoul(v, &end, 10);
            if (end == v || *end || !seeds || v[0] == '-') return bad_value(a, v);
        } else if (!strcmp(a, "--T")) {
            T = strtod(v, &end);
            if (end == v || *end || !(T > 1e-2) || !isfinite(T)) return bad_value(a, v);
        } else if (!strcmp(a, "--K")) {
            if (!(nK = parse_list(v, Ks))) return bad_value(a, v);
            for (size_t j = 0; j < nK; j++)
                if (!(Ks[j] >= 1 && Ks[j] == floor(Ks[j]))) return bad_value(a, v);
        } else {
            if (!(na = parse_list(v, alphas))) return bad_value(a, v);
            for (size_t j = 0; j < na; j++)
                if (!(alphas[j] >= 0 && isfinite(alphas[j]))) return bad_value(a, v);
        }
    }
    FILE *fl = NULL, *fw = NULL, *fs = NULL;
    if (out) {
        char p[4096];
        snprintf(p, sizeof p, "%s/loss.csv", out);
        fl = fopen(p, "w");
        if (!fl) {
            fprintf(stderr, "wfr_study: %s: cannot open\n", p);
            return 1;
        }
        snprintf(p, sizeof p, "%s/weights.csv", out);
        fw = fopen(p, "w");
        if (!fw) {
            fprintf(stderr, "wfr_study: %s: cannot open\n", p);
            fclose(fl);
            return 1;
        }
        snprintf(p, sizeof p, "%s/stalled.csv", out);
        fs = fopen(p, "w");
        if (!fs) {
            fprintf(stderr, "wfr_study: %s: cannot open\n", p);
            fclose(fl), fclose(fw);
            return 1;
        }
        fprintf(fs, "seed,K,alpha,t_reached\n");
        fprintf(fl, "seed,K,alpha,t,loss,neff,dmin\n");
        fprintf(fw, "seed,K,alpha,t,k,w\n");
    }
    int bad = 0, rc = 0;
    for (unsigned long s = 1; s <= seeds && !rc; s++)
        for (size_t ik = 0; ik < nK && !rc; ik++)
            for (size_t ia = 0; ia < na && !rc; ia++)
                rc = run(s, (size_t)Ks[ik], alphas[ia], T, fl, fw, fs, &bad);
    if (fl && fclose(fl)) rc = 1;
    if (fw && fclose(fw)) rc = 1;
    if (fs && fclose(fs)) rc = 1;
    if (rc) return 1;
    printf("wfr_study: %s (loss non-increasing and weights on the simplex: %s)\n",
           out ? out : "smoke run", bad ? "NO" : "yes");
    return bad ? 1 : 0;
}
