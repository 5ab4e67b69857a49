/* test_par.c -- the serial side of the data-parallel pieces (issue 13; the MPI runs themselves
 * are tests/mpi_flow.sh):
 *   - gmf_par_block: every row owned by exactly one rank, in order, block sizes within one;
 *   - gmf_sqloss_borrow and gmf_sqloss_shard with one rank give gmf_sqloss_new's gradients,
 *     Stein forms and loss bitwise (the serial path is unchanged);
 *   - the oracle of a shard sums as the whole: the sum of two half oracles' G-type outputs,
 *     rescaled, equals the whole to rounding (checks the 1/n_total scale independently of MPI);
 *   - gmf_io_read_npy_rows returns exactly the rows of a whole-array read (seek vs stream), and
 *     rejects a range past the end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gmflow/common.h"
#include "gmflow/io.h"
#include "gmflow/par.h"
#include "gmflow/sqloss.h"
#include "gmflow/toy.h"
#include "testutil.h"

static void test_block(void) {
    for (int P = 1; P <= 7; P++)
        for (size_t n = 0; n <= 20; n++) {
            size_t next = 0, lo = n, hi = 0;
            for (int r = 0; r < P; r++) {
                size_t i0, c;
                gmf_par_block(n, r, P, &i0, &c);
                CHECK(i0 == next, "block P=%d n=%zu rank %d starts at %zu, want %zu", P, n, r, i0,
                      next);
                next = i0 + c;
                lo = c < lo ? c : lo, hi = c > hi ? c : hi;
            }
            CHECK(next == n && hi - lo <= 1, "block P=%d n=%zu: covers %zu, sizes %zu..%zu", P, n,
                  next, lo, hi);
        }
}

/* grad (K x D) and hessR (K x D x D) of oracle o at the mixture */
static void outputs(gmf_oracle o, size_t K, size_t D, const double *mu, const double *S, double *g,
                    double *H, double *loss) {
    CHECK(o.prepare(o.ctx, K, mu, S, NULL) == 0, "prepare: %s", gmf_errmsg());
    for (size_t k = 0; k < K; k++)
        CHECK(o.component(o.ctx, k, g + k * D, H + k * D * D) == 0, "component");
    *loss = o.loss(o.ctx);
}

static void test_oracles(void) {
    gmf_toy_opts t = gmf_toy_defaults();
    t.n = 257, t.d = 4;
    const size_t n = t.n, d = t.d, D = d + 1, K = 3, NG = K * D, NH = K * D * D;
    double *X, *y;
    CHECK(gmf_toy_make(&t, &X, &y) == 0, "toy: %s", gmf_errmsg());
    double mu[3 * 5], C[3 * 25], S[3 * 25];
    CHECK(gmf_toy_init_mixture(K, D, 0.5, 3, mu, C, S) == 0, "init");
    double g[4][15], H[4][75], L[4];
    gmf_sqloss *a = NULL, *b = NULL, *c = NULL, *h1 = NULL, *h2 = NULL;
    CHECK(gmf_sqloss_new(&a, n, d, X, y) == 0, "new");
    CHECK(gmf_sqloss_borrow(&b, n, d, X, y) == 0, "borrow");
    CHECK(gmf_sqloss_shard(&c, n, n, d, X, y) == 0, "shard");
    outputs(gmf_sqloss_oracle(a), K, D, mu, S, g[0], H[0], &L[0]);
    outputs(gmf_sqloss_oracle(b), K, D, mu, S, g[1], H[1], &L[1]);
    outputs(gmf_sqloss_oracle(c), K, D, mu, S, g[2], H[2], &L[2]);
    for (int v = 1; v <= 2; v++)
        CHECK(!memcmp(g[0], g[v], sizeof g[0]) && !memcmp(H[0], H[v], sizeof H[0]) && L[0] == L[v],
              "%s is not bitwise gmf_sqloss_new", v == 1 ? "borrow" : "shard (1 rank)");
    CHECK(gmf_sqloss_oracle(c).jvp == NULL && gmf_sqloss_oracle(a).jvp != NULL, "jvp members");
    /* two halves as separate serial oracles over n_h rows: their outputs are (n_h / n) times
     * the shard's, so  (n1 out1 + n2 out2) / n  is the whole to rounding */
    const size_t n1 = 100, n2 = n - n1;
    CHECK(gmf_sqloss_new(&h1, n1, d, X, y) == 0 &&
              gmf_sqloss_new(&h2, n2, d, X + n1 * d, y + n1) == 0,
          "halves");
    double g1[15], g2[15], H1[75], H2[75], L1, L2, ws[90], wh[90];
    outputs(gmf_sqloss_oracle(h1), K, D, mu, S, g1, H1, &L1);
    outputs(gmf_sqloss_oracle(h2), K, D, mu, S, g2, H2, &L2);
    for (size_t i = 0; i < NG; i++)
        ws[i] = (n1 * g1[i] + n2 * g2[i]) / (double)n, wh[i] = g[0][i];
    for (size_t i = 0; i < NH && NG + i < 90; i++)
        ws[NG + i] = (n1 * H1[i] + n2 * H2[i]) / (double)n, wh[NG + i] = H[0][i];
    CHECK(tu_vec_relerr(ws, wh, 90, 1e-300) <= 1e-12, "halves vs whole: %.3e",
          tu_vec_relerr(ws, wh, 90, 1e-300));
    CHECK(tu_close((n1 * L1 + n2 * L2) / (double)n, L[0], 1e-13, 0), "halves loss");
    gmf_sqloss_free(a), gmf_sqloss_free(b), gmf_sqloss_free(c), gmf_sqloss_free(h1);
    gmf_sqloss_free(h2);
    free(X), free(y);
}

static void test_npy_rows(void) {
    const size_t n = 37, w = 5;
    double *A = tu_xmalloc(n * w * sizeof(double));
    for (size_t i = 0; i < n * w; i++)
        A[i] = (double)i * 0.5 - 3.0;
    char path[] = "/tmp/gmflow_test_par_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd >= 0) close(fd);
    size_t shape[2] = {n, w}, sh[8], nd;
    CHECK(gmf_io_write_npy(path, A, 2, shape) == 0, "write: %s", gmf_errmsg());
    for (size_t r0 = 0; r0 <= n; r0 += 6)
        for (size_t m = 0; r0 + m <= n && m <= 13; m += 4) {
            double *B = NULL;
            CHECK(gmf_io_read_npy_rows(path, r0, m, &B, &nd, sh) == 0, "rows %zu+%zu: %s", r0, m,
                  gmf_errmsg());
            CHECK(nd == 2 && sh[0] == n && sh[1] == w, "rows: shape");
            CHECK(B && (m == 0 || !memcmp(B, A + r0 * w, m * w * sizeof(double))),
                  "rows %zu+%zu differ from the array", r0, m);
            free(B);
        }
    double *B = NULL;
    CHECK(gmf_io_read_npy_rows(path, 30, 8, &B, &nd, sh) != 0 && !B, "range past the end accepted");
    remove(path);
    free(A);
}

int main(void) {
    test_block();
    test_oracles();
    test_npy_rows();
    return tu_finish("test_par");
}
