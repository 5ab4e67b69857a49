/* test_gm_gauss.c -- the GM layer's float32 forward Gaussian scalars in AVX-512 lanes
 * (gmf_nn_kern_gm_gauss, src/discrete/gm_gauss.c) against gmf_gauss_scalars in double, and the
 * loss in lanes (gmf_nn_kern_refloss):
 *
 *   1. every output (s, Phi, phi, A = m Phi + s phi) within 1 float ulp of gmf_gauss_scalars'
 *      double result for the same float inputs (m, s^2) rounded to float, and at most 1 in 1000
 *      of them not bitwise equal to it.  Why this tolerance: the kernel does the reference's
 *      double operations in its order; only erfc and exp are libmvec's (a few double ulp, against
 *      < 1 for glibc's scalar calls), amplified at most t^2 + 1 <= 1445 times by the cancellation
 *      in A for t -> -38: under 2^-40 relative, so the two doubles round to the same float or to
 *      neighbours (one ulp apart), and only for values within 2^-40 of a rounding boundary;
 *   2. the same bound against the route it replaces in nn_tmpl.h's gm_fwd_scalars
 *      (gmf_gauss_batch per row, 4-lane libmvec), with the count of values that differ printed;
 *   3. any split of a range into pieces (the pool's threads split the rows) gives bitwise the
 *      one-pass results, and nothing outside [p0, p1) is written;
 *   4. the loss kernel gmf_nn_kern_refloss (same file) against gmf_nn_refloss_f and a long double
 *      log-sum-exp (tolerances at check_refloss), L in {1, 3, 8, 9, 17, 64}, B in {1, 5, 8, 13,
 *      64}, logits up to 0.1, 5, 40 and 1000 in size;
 *   5. (check_cols) the component-range form gmf_nn_kern_gm_gauss_cols (the one-barrier step's
 *      Gaussian scalars: components [k0, k1) of every row) bitwise the flat kernel at those
 *      points, nothing else written; also ranges of 17-40 components (K = 40, 64), whose
 *      per-row copy-out takes a second block of 16;
 *   6. (check_big_index) the component-range form past 2^31 floats of F (B K (L + 1) > 2^31 - 1,
 *      where 32-bit absolute lane indices wrapped): bitwise the flat kernel.
 *
 * Inputs: the GM cache's layout (m at F[p (L + 1)], the G entries in between filled with
 * garbage, s^2 at S2[p]) with K in {1, 3, 7, 8, 9, 20, 23}, L in {0, 1, 9, 17}, B in {1, 5, 64},
 * whole ranges, row ranges and point ranges starting and ending anywhere (every tail of 1..7
 * lanes); points: regular t = m / s in [-40, 40] (both sides of the clamp |t| = 38) at scales
 * s^2 from 1e-12 to 1e12, t in the far tails where phi and Phi underflow in float, s^2 = 0,
 * negative, denormal, m = 0, |m| = 38 s exactly, and s^2 = 1e30.  Skipped (exit 77) in builds
 * without AVX-512 (no GMF_NN_KERN). */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* mmap's MAP_ANONYMOUS, MAP_NORESERVE (check 6) */
#endif
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../src/discrete/nn_internal.h"
#include "gmflow/gauss.h"
#include "testutil.h"

#ifndef GMF_NN_KERN
int main(void) {
    printf("test_gm_gauss: SKIP: this build has no AVX-512 kernels (GMF_NN_KERN undefined)\n");
    return 77;
}
#else

/* distance in float ulps (adjacent floats: 1; +0 and -0: 0; NaN: huge) */
static int64_t ulps(float a, float b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b) ? 0 : INT64_MAX;
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    int64_t x = ia < 0 ? (int64_t)INT32_MIN - ia : ia, y = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
    return x > y ? x - y : y - x;
}

/* one (m, s^2) point of the kinds above */
static void point(gsl_rng *r, float *m, float *s2) {
    const double u = gsl_rng_uniform(r), v = gsl_rng_uniform(r) - 0.5;
    const double S2 = exp(55.3 * gsl_rng_uniform(r) - 27.6); /* 1e-12 .. 1e12 */
    double t = 80.0 * gsl_rng_uniform(r) - 40.0;             /* both sides of |t| = 38 */
    if (u < 0.05) {                                          /* s = 0 */
        *s2 = 0.0f, *m = (float)v;
    } else if (u < 0.07) { /* s^2 < 0: clamped to s = 0 */
        *s2 = (float)(v - 0.5), *m = (float)v;
    } else if (u < 0.09) { /* s^2 denormal in float */
        *s2 = 1e-42f, *m = (float)(1e-22 * v);
    } else if (u < 0.11) {
        *s2 = (float)S2, *m = 0.0f;
    } else if (u < 0.13) { /* |m| = 38 s exactly: the clamp's limit */
        *s2 = 4.0f, *m = v < 0 ? -76.0f : 76.0f;
    } else if (u < 0.15) {
        *s2 = 1e30f, *m = (float)(1e15 * t);
    } else {
        if (u < 0.30) t = (v < 0 ? -1 : 1) * (9.0 + 29.5 * gsl_rng_uniform(r)); /* far tails */
        *s2 = (float)S2, *m = (float)(t * sqrt((double)*s2));
    }
}

typedef struct {
    size_t B, K, L, n;
    float *F, *S2;
} gcase;

static void make_case(gcase *c, gsl_rng *r, size_t B, size_t K, size_t L) {
    c->B = B, c->K = K, c->L = L, c->n = B * K;
    c->F = tu_frand(r, c->n * (L + 1), 0); /* G entries: garbage the kernel must not read as m */
    c->S2 = malloc(c->n * sizeof(float));
    for (size_t p = 0; p < c->n; p++)
        point(r, &c->F[p * (L + 1)], &c->S2[p]);
}

#define NOUT 4
static const char *const oname[NOUT] = {"s", "Phi", "phi", "A"};

/* out[o][p] for p in [p0, p1) by the kernel; everything else keeps the fill pattern */
static void run_kernel(const gcase *c, size_t p0, size_t p1, float *out[NOUT]) {
    gmf_nn_kern_gm_gauss(p0, p1, c->L, c->F, c->S2, out[0], out[1], out[2], out[3]);
}

static float **alloc_out(size_t n) {
    float **o = malloc(NOUT * sizeof *o);
    for (int q = 0; q < NOUT; q++) {
        o[q] = malloc((n + 1) * sizeof(float));
        for (size_t p = 0; p <= n; p++)
            o[q][p] = -12345.0f; /* fill: never an output (s, Phi, phi, A >= 0 or ~0) */
    }
    return o;
}
static void free_out(float **o) {
    for (int q = 0; q < NOUT; q++)
        free(o[q]);
    free(o);
}

static long ncmp = 0, ndiff_ref = 0, ndiff_batch = 0;
static int64_t worst_ref = 0, worst_batch = 0;

/* checks 1 and 2 on [p0, p1) of o; fill outside */
static void check_values(const gcase *c, size_t p0, size_t p1, float **o, const char *tag) {
    const size_t K = c->K, L = c->L;
    for (size_t p = 0; p < c->n; p++) {
        if (p < p0 || p >= p1) {
            for (int q = 0; q < NOUT; q++)
                CHECK(o[q][p] == -12345.0f, "%s: %s[%zu] written outside [%zu, %zu)", tag, oname[q],
                      p, p0, p1);
            continue;
        }
        const double m = c->F[p * (L + 1)], s2 = c->S2[p];
        gmf_gauss_point g;
        gmf_gauss_scalars(m, s2, 0.0, 0.0, &g);
        const float ref[NOUT] = {(float)g.s, (float)g.Phi, (float)g.phi, (float)g.A};
        /* the previous route: the point's row through gmf_gauss_batch (blocks of 4 from k = 0) */
        const size_t i = p / K, k = p % K;
        double mr[K], sr[K], ob[NOUT][K];
        for (size_t kk = 0; kk < K; kk++)
            mr[kk] = c->F[(i * K + kk) * (L + 1)], sr[kk] = c->S2[i * K + kk];
        const gmf_gauss_batch_out go = {.s = ob[0], .Phi = ob[1], .phi = ob[2], .A = ob[3]};
        gmf_gauss_batch(K, mr, sr, NULL, 0.0, &go);
        for (int q = 0; q < NOUT; q++) {
            const int64_t dr = ulps(o[q][p], ref[q]), db = ulps(o[q][p], (float)ob[q][k]);
            ncmp++;
            ndiff_ref += dr != 0, ndiff_batch += db != 0;
            if (dr > worst_ref) worst_ref = dr;
            if (db > worst_batch) worst_batch = db;
            CHECK(dr <= 1, "%s: %s[%zu] = %.9g, gmf_gauss_scalars %.9g (%lld ulps; m %.9g s2 %.9g)",
                  tag, oname[q], p, o[q][p], ref[q], (long long)dr, m, s2);
            CHECK(db <= 1, "%s: %s[%zu] = %.9g, gmf_gauss_batch %.9g (%lld ulps; m %.9g s2 %.9g)",
                  tag, oname[q], p, o[q][p], (double)(float)ob[q][k], (long long)db, m, s2);
        }
    }
}

/* check 3: [p0, p1) in pieces cut at random points is bitwise one pass */
static void check_split(const gcase *c, gsl_rng *r, size_t p0, size_t p1, float **one,
                        const char *tag) {
    float **o = alloc_out(c->n);
    size_t a = p0;
    while (a < p1) {
        size_t b = a + 1 + gsl_rng_uniform_int(r, p1 - a);
        run_kernel(c, a, b, o);
        a = b;
    }
    for (int q = 0; q < NOUT; q++)
        CHECK(memcmp(o[q], one[q], (c->n + 1) * sizeof(float)) == 0,
              "%s: %s of [%zu, %zu) in pieces differs from one pass", tag, oname[q], p0, p1);
    free_out(o);
}

/* check 5: gmf_nn_kern_gm_gauss_cols on components [k0, k1) of every row is bitwise the flat
 * kernel's one pass at those points, and writes nothing else */
static size_t ncols = 0;
static void check_cols(const gcase *c, size_t k0, size_t k1, float **one, const char *tag) {
    float **o = alloc_out(c->n);
    gmf_nn_kern_gm_gauss_cols(c->B, c->K, k0, k1, c->L, c->F, c->S2, o[0], o[1], o[2], o[3]);
    size_t bad = 0;
    for (size_t p = 0; p < c->n; p++) {
        const size_t k = p % c->K;
        for (int q = 0; q < NOUT; q++)
            if (k >= k0 && k < k1 ? memcmp(&o[q][p], &one[q][p], sizeof(float)) != 0
                                  : o[q][p] != -12345.0f)
                bad++;
    }
    CHECK(bad == 0, "%s: cols [%zu, %zu): %zu values differ from one pass or written outside", tag,
          k0, k1, bad);
    ncols++;
    free_out(o);
}

/* check 6: 32-bit lane indices (review s24, item 3).  gmf_nn_kern_gm_gauss_cols once built
 * absolute point indices i K + k in int32 lanes and multiplied them by L + 1 for the gather of
 * the means: past B K (L + 1) = 2^31 they wrapped (out-of-bounds reads).  Here L + 1 = 2^20 and
 * K = 2, B = 1100, so the last rows' means lie beyond 2^31 floats (8.6 GiB) of F: a lazily backed
 * mapping (MAP_NORESERVE, no transparent huge pages: only the B K = 2200 pages written, about
 * 9 MB, are touched; with huge pages each would fault in 2 MiB).  The ranged form (k in
 * [1, 2)) must give the flat kernel's bits at every point; the flat form takes F + p (L + 1) in
 * size_t.  Skipped (with a note) if the mapping is refused. */
static void check_big_index(gsl_rng *r) {
    const size_t B = 1100, K = 2, L = ((size_t)1 << 20) - 1, R = L + 1, n = B * K;
    const size_t bytes = n * R * sizeof(float);
    if (n * R <= (size_t)INT32_MAX) abort(); /* the case must cross 2^31 */
    float *F = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (F == MAP_FAILED) {
        printf("test_gm_gauss: NOTE: check 6 skipped (mmap of %zu bytes refused)\n", bytes);
        return;
    }
    (void)madvise(F, bytes, MADV_NOHUGEPAGE); /* (advice only: THP "always" would cost GiBs) */
    float *S2 = malloc(n * sizeof(float));
    for (size_t p = 0; p < n; p++)
        point(r, &F[p * R], &S2[p]);
    float **one = alloc_out(n), **o = alloc_out(n);
    gmf_nn_kern_gm_gauss(0, n, L, F, S2, one[0], one[1], one[2], one[3]);
    gmf_nn_kern_gm_gauss_cols(B, K, 1, 2, L, F, S2, o[0], o[1], o[2], o[3]);
    size_t bad = 0;
    for (size_t p = 0; p < n; p++)
        for (int q = 0; q < NOUT; q++)
            if (p % K == 1 ? memcmp(&o[q][p], &one[q][p], sizeof(float)) != 0
                           : o[q][p] != -12345.0f)
                bad++;
    CHECK(bad == 0,
          "big index: B %zu K %zu L + 1 = 2^20 (B K (L + 1) = %zu > 2^31): cols [1, 2): %zu "
          "values differ from the flat kernel or written outside",
          B, K, n * R, bad);
    free_out(one), free_out(o), free(S2);
    munmap(F, bytes);
}

/* ---- gmf_nn_kern_refloss against gmf_nn_refloss_f (nn.h; the same operations with glibc's scalar
 * exp and log) and a long double log-sum-exp:
 *   lossv_i within 1e-14 (5 + |max(0, h_i)| + |h_{i,y_i}|) of both (libmvec's exp and log: a few
 *     double ulps of lse = mx + log(se), which the subtraction of h_y does not amplify beyond the
 *     magnitudes of its operands);
 *   dH within 1 float ulp or |dscale| 1e-14 of gmf_nn_refloss_f's (e_l / se to a few double ulps,
 *     minus 1 for the label: absolute error ~1e-16 |dscale|, rounded to float);
 *   the total is the kernel's lossv summed in row order; a split of the rows (the pool's threads)
 *     is bitwise one call; dH or lossv may be NULL. */
static long nl_cmp = 0, nl_diff = 0, nd_cmp = 0, nd_diff = 0;

static void check_refloss(gsl_rng *r, size_t B, size_t L, double scale) {
    float *H = malloc(B * L * sizeof(float)), *dH = malloc(B * L * sizeof(float)),
          *dR = malloc(B * L * sizeof(float)), *dS = malloc(B * L * sizeof(float));
    double *lv = malloc(B * sizeof(double)), *lr = malloc(B * sizeof(double)),
           *ls = malloc(B * sizeof(double));
    uint8_t *y = malloc(B);
    for (size_t e = 0; e < B * L; e++)
        H[e] = (float)(scale * (2.0 * gsl_rng_uniform(r) - 1.0));
    for (size_t i = 0; i < B; i++)
        y[i] = (uint8_t)gsl_rng_uniform_int(r, L + 1);
    const double ds = 1.0 / (double)B;
    const double tot = gmf_nn_kern_refloss(dH, lv, H, y, ds, B, L);
    const double totr = gmf_nn_refloss_f(dR, lr, H, y, ds, B, L);
    double sum = 0.0;
    for (size_t i = 0; i < B; i++) {
        const float *h = H + i * L;
        double mx = 0.0;
        for (size_t l = 0; l < L; l++)
            if (h[l] > mx) mx = h[l];
        const double hy = y[i] ? (double)h[y[i] - 1] : 0.0;
        long double se = expl(-(long double)mx);
        for (size_t l = 0; l < L; l++)
            se += expl((long double)h[l] - mx);
        const double ld = (double)((long double)mx + logl(se) - hy);
        const double tol = 1e-14 * (5.0 + fabs(mx) + fabs(hy));
        CHECK(fabs(lv[i] - lr[i]) <= tol, "refloss B %zu L %zu x%g row %zu: loss %.17g, C %.17g", B,
              L, scale, i, lv[i], lr[i]);
        CHECK(fabs(lv[i] - ld) <= tol,
              "refloss B %zu L %zu x%g row %zu: loss %.17g, long double %.17g", B, L, scale, i,
              lv[i], ld);
        nl_cmp++, nl_diff += lv[i] != lr[i];
        sum += lv[i];
    }
    CHECK(tot == sum, "refloss B %zu L %zu: total %.17g, sum of lossv %.17g", B, L, tot, sum);
    CHECK(fabs(tot - totr) <= 1e-14 * (5.0 + scale) * (double)B,
          "refloss B %zu L %zu: total %.17g, C %.17g", B, L, tot, totr);
    for (size_t e = 0; e < B * L; e++) {
        CHECK(ulps(dH[e], dR[e]) <= 1 || fabs((double)dH[e] - dR[e]) <= 1e-14 * ds,
              "refloss B %zu L %zu x%g: dH[%zu] = %.9g, C %.9g", B, L, scale, e, dH[e], dR[e]);
        nd_cmp++, nd_diff += dH[e] != dR[e];
    }
    /* rows split in two (and in pieces of 1-8 rows): bitwise one call; NULL outputs */
    size_t a = 0;
    while (a < B) {
        const size_t b = a + 1 + gsl_rng_uniform_int(r, B - a < 9 ? B - a : 9);
        gmf_nn_kern_refloss(dS + a * L, ls + a, H + a * L, y + a, ds, b - a, L);
        a = b;
    }
    CHECK(memcmp(dS, dH, B * L * sizeof(float)) == 0 && memcmp(ls, lv, B * sizeof(double)) == 0,
          "refloss B %zu L %zu: rows in pieces differ from one call", B, L);
    CHECK(gmf_nn_kern_refloss(NULL, NULL, H, y, ds, B, L) == tot,
          "refloss B %zu L %zu: total without outputs differs", B, L);
    free(H), free(dH), free(dR), free(dS), free(lv), free(lr), free(ls), free(y);
}

int main(void) {
    gsl_rng *r = tu_rng(21);
    printf("test_gm_gauss: seed %lu\n", tu_seed());
    const size_t Ks[] = {1, 3, 7, 8, 9, 20, 23}, Ls[] = {0, 1, 9, 17}, Bs[] = {1, 5, 64};
    size_t ncase = 0;
    for (size_t a = 0; a < sizeof Ks / sizeof *Ks; a++)
        for (size_t b = 0; b < sizeof Ls / sizeof *Ls; b++)
            for (size_t e = 0; e < sizeof Bs / sizeof *Bs; e++) {
                gcase c;
                make_case(&c, r, Bs[e], Ks[a], Ls[b]);
                char tag[96];
                /* ranges: all points; rows [i0, i1) as the pool splits them; points anywhere */
                size_t rg[4][2] = {{0, c.n},
                                   {c.B / 3 * c.K, (c.B - c.B / 4) * c.K},
                                   {gsl_rng_uniform_int(r, c.n), 0},
                                   {c.n > 9 ? 9 : 0, c.n > 9 ? c.n - 3 : c.n}};
                rg[2][1] = rg[2][0] + 1 + gsl_rng_uniform_int(r, c.n - rg[2][0]);
                for (int g = 0; g < 4; g++) {
                    const size_t p0 = rg[g][0], p1 = rg[g][1];
                    snprintf(tag, sizeof tag, "B %zu K %zu L %zu [%zu, %zu)", c.B, c.K, c.L, p0,
                             p1);
                    float **o = alloc_out(c.n);
                    run_kernel(&c, p0, p1, o);
                    check_values(&c, p0, p1, o, tag);
                    check_split(&c, r, p0, p1, o, tag);
                    if (g == 0) { /* the one-barrier step's component ranges (K/2 each side) */
                        check_cols(&c, 0, c.K / 2, o, tag);
                        check_cols(&c, c.K / 2, c.K, o, tag);
                        check_cols(&c, c.K / 3, c.K - c.K / 4, o, tag);
                        check_cols(&c, 0, c.K, o, tag);
                    }
                    free_out(o);
                    ncase++;
                }
                free(c.F);
                free(c.S2);
            }
    /* every tail length and start within a block of 8, on one long row-less range */
    {
        gcase c;
        make_case(&c, r, 1, 64, 9);
        for (size_t p0 = 0; p0 < 8; p0++)
            for (size_t len = 0; len <= 17; len++) {
                char tag[64];
                snprintf(tag, sizeof tag, "tails [%zu, %zu)", p0, p0 + len);
                float **o = alloc_out(c.n);
                run_kernel(&c, p0, p0 + len, o);
                check_values(&c, p0, p0 + len, o, tag);
                free_out(o);
                ncase++;
            }
        free(c.F);
        free(c.S2);
    }
    /* check 5 with more than 16 components in range: the ranged form copies each row's run out
     * in masked blocks of 16 floats, the second block (and a partial one) only past 16 */
    {
        const size_t Kc[] = {40, 64}, Bc[] = {1, 5, 13};
        const size_t cr[][2] = {{0, 20}, {20, 40}, {5, 45}, {3, 37}, {0, 33}};
        for (size_t a = 0; a < sizeof Kc / sizeof *Kc; a++)
            for (size_t e = 0; e < sizeof Bc / sizeof *Bc; e++) {
                gcase c;
                make_case(&c, r, Bc[e], Kc[a], 9);
                float **o = alloc_out(c.n);
                run_kernel(&c, 0, c.n, o);
                char tag[64];
                snprintf(tag, sizeof tag, "wide B %zu K %zu L 9", c.B, c.K);
                for (size_t q = 0; q < sizeof cr / sizeof *cr; q++)
                    if (cr[q][1] <= c.K) check_cols(&c, cr[q][0], cr[q][1], o, tag);
                free_out(o);
                free(c.F);
                free(c.S2);
            }
    }
    check_big_index(r);
    {
        const size_t Ls[] = {1, 3, 8, 9, 17, GMF_NN_REFLOSS_LMAX}, Bs[] = {1, 5, 8, 13, 64};
        const double sc[] = {0.1, 5.0, 40.0, 1000.0};
        for (size_t a = 0; a < sizeof Ls / sizeof *Ls; a++)
            for (size_t b = 0; b < sizeof Bs / sizeof *Bs; b++)
                for (size_t e = 0; e < sizeof sc / sizeof *sc; e++)
                    check_refloss(r, Bs[b], Ls[a], sc[e]);
        printf("test_gm_gauss: refloss: %ld of %ld losses and %ld of %ld dH entries not bitwise "
               "gmf_nn_refloss_f's\n",
               nl_diff, nl_cmp, nd_diff, nd_cmp);
    }
    CHECK(ndiff_ref * 1000 <= ncmp, "%ld of %ld values differ from gmf_gauss_scalars (> 1/1000)",
          ndiff_ref, ncmp);
    printf("test_gm_gauss: %zu component ranges (gm_gauss_cols) bitwise the flat kernel\n", ncols);
    printf("test_gm_gauss: %zu ranges, %ld values: %ld differ from gmf_gauss_scalars rounded to "
           "float (worst %lld ulp), %ld from gmf_gauss_batch's 4-lane route (worst %lld ulp)\n",
           ncase, ncmp, ndiff_ref, (long long)worst_ref, ndiff_batch, (long long)worst_batch);
    gsl_rng_free(r);
    return tu_finish("test_gm_gauss");
}
#endif
