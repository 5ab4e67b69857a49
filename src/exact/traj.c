/* traj.c -- trajectory recorder of a Gaussian-mixture flow and the Theorem 1 distance
 * (gmflow/traj.h). */
#define _POSIX_C_SOURCE 200809L

#include "gmflow/traj.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gmflow/common.h"

struct gmf_traj {
    gmf_flow_kind kind;
    size_t T, K, D;
    double *t, *loss, *wall; /* T */
    long *nrhs;              /* T */
    double *mu;              /* T x K x D */
    double *Sigma;           /* T x K x D x D */
    double *C;               /* T x K x D x D (euclid) */
    double *w;               /* T x K mixture weights (GMF_FLOW_WFR_BW), else NULL */
    double alpha;            /* GMF_FLOW_WFR_BW: the Fisher-Rao weight (default 1) */
    double *scratch;         /* K (D + D^2): the BW state of an Euclidean one */
    gmf_flow *flow;          /* attached flow (not owned) */
    double start, elapsed;
    size_t done;
    gmf_traj_progress progress;
    void *progress_user;
    int rc;         /* observer failure */
    char msg[1024]; /* its reason (gmf_ode_solve may overwrite gmf_errmsg) */
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void gmf_traj_free(gmf_traj *tr) {
    if (!tr) return;
    free(tr->t), free(tr->loss), free(tr->wall), free(tr->nrhs);
    free(tr->mu), free(tr->Sigma), free(tr->C), free(tr->scratch), free(tr->w);
    free(tr);
}

int gmf_traj_new(gmf_traj **out, gmf_flow_kind kind, size_t T, size_t K, size_t D) {
    *out = NULL;
    if (kind != GMF_FLOW_BW && kind != GMF_FLOW_EUCLID && kind != GMF_FLOW_WFR_BW)
        return gmf_error(GMF_EINVAL, "trajectory: unsupported flow kind %d", (int)kind);
    if (T == 0 || K == 0 || D == 0)
        return gmf_error(GMF_EINVAL, "trajectory: T = %zu, K = %zu, D = %zu must be >= 1", T, K, D);
    const size_t big = (size_t)-1 / sizeof(double);
    if (D > big / D || K > big / (D * D + D) || T > big / (K * (D * D + D)))
        return gmf_error(GMF_ENOMEM, "trajectory: %zu output times x K = %zu x D = %zu too large",
                         T, K, D);
    gmf_traj *tr = calloc(1, sizeof *tr);
    if (!tr) return gmf_error(GMF_ENOMEM, "out of memory for the trajectory");
    tr->kind = kind, tr->T = T, tr->K = K, tr->D = D;
    tr->t = calloc(T, sizeof(double));
    tr->loss = calloc(T, sizeof(double));
    tr->wall = calloc(T, sizeof(double));
    tr->nrhs = calloc(T, sizeof(long));
    tr->mu = calloc(T * K * D, sizeof(double));
    tr->Sigma = calloc(T * K * D * D, sizeof(double));
    if (kind == GMF_FLOW_EUCLID) tr->C = calloc(T * K * D * D, sizeof(double));
    tr->scratch = calloc(K * (D + D * D), sizeof(double));
    if (kind == GMF_FLOW_WFR_BW) tr->w = calloc(T * K, sizeof(double));
    tr->alpha = 1.0;
    if (!tr->t || !tr->loss || !tr->wall || !tr->nrhs || !tr->mu || !tr->Sigma ||
        (kind == GMF_FLOW_EUCLID && !tr->C) || (kind == GMF_FLOW_WFR_BW && !tr->w) ||
        !tr->scratch) {
        gmf_traj_free(tr);
        return gmf_error(GMF_ENOMEM,
                         "out of memory for the trajectory (%zu output times, K = %zu, D = %zu)", T,
                         K, D);
    }
    *out = tr;
    return GMF_OK;
}

void gmf_traj_set_progress(gmf_traj *tr, gmf_traj_progress fn, void *user) {
    tr->progress = fn, tr->progress_user = user;
}

int gmf_traj_attach(gmf_traj *tr, gmf_flow *flow) {
    if (flow && (gmf_flow_kind_of(flow) != tr->kind || gmf_flow_K(flow) != tr->K ||
                 gmf_flow_D(flow) != tr->D))
        return gmf_error(GMF_EINVAL,
                         "trajectory: flow (kind %d, K = %zu, D = %zu) does not match the "
                         "trajectory (kind %d, K = %zu, D = %zu)",
                         (int)gmf_flow_kind_of(flow), gmf_flow_K(flow), gmf_flow_D(flow),
                         (int)tr->kind, tr->K, tr->D);
    tr->flow = flow;
    tr->done = 0, tr->rc = 0, tr->msg[0] = '\0';
    tr->start = now();
    return GMF_OK;
}

int gmf_traj_observe(size_t j, double t, const double *y, void *user) {
    gmf_traj *tr = user;
    const size_t K = tr->K, D = tr->D, KD = K * D, KDD = K * D * D;
    int rc = GMF_OK;
    if (j >= tr->T || !tr->flow)
        rc = gmf_error(GMF_EINVAL, "trajectory: output time %zu of %zu%s", j + 1, tr->T,
                       tr->flow ? "" : " with no flow attached");
    if (rc == GMF_OK) {
        tr->t[j] = t;
        tr->wall[j] = now() - tr->start;
        tr->nrhs[j] = gmf_flow_nrhs(tr->flow);
        const double *yw = y;
        if (tr->w) { /* [w | mu | Sigma] */
            memcpy(tr->w + j * K, y, K * sizeof(double));
            y += K;
        }
        memcpy(tr->mu + j * KD, y, KD * sizeof(double));
        const double *mat = y + gmf_flow_mat_offset(K, D, 0);
        if (tr->kind == GMF_FLOW_EUCLID) {
            memcpy(tr->C + j * KDD, mat, KDD * sizeof(double));
            gmf_flow_euclid_to_bw(K, D, y, tr->scratch);
            memcpy(tr->Sigma + j * KDD, tr->scratch + gmf_flow_mat_offset(K, D, 0),
                   KDD * sizeof(double));
        } else {
            memcpy(tr->Sigma + j * KDD, mat, KDD * sizeof(double));
        }
        rc = gmf_flow_loss(tr->flow, yw, &tr->loss[j]);
        if (rc == GMF_OK && !isfinite(tr->loss[j]))
            rc = gmf_error(GMF_EDIVERGE, "the loss is not finite at t = %g", t);
    }
    if (rc) {
        tr->rc = rc;
        snprintf(tr->msg, sizeof tr->msg, "%s", gmf_errmsg());
        return 1;
    }
    tr->done = j + 1;
    if (tr->progress) tr->progress(tr, j, tr->progress_user);
    return 0;
}

/* The loss as the driver's monotone scalar (user = the gmf_flow). */
static int traj_loss(double t, const double *y, double *value, void *user) {
    (void)t;
    return gmf_flow_loss((gmf_flow *)user, y, value);
}

int gmf_traj_integrate(gmf_traj *tr, gmf_oracle oracle, const double *y0, const double *tout,
                       gmf_ode_stats *stats, const gmf_ode_opts *opts) {
    if (oracle.D != tr->D)
        return gmf_error(GMF_EINVAL, "trajectory: oracle dimension %zu, trajectory D = %zu",
                         oracle.D, tr->D);
    gmf_flow *flow;
    int rc = gmf_flow_new(&flow, tr->kind, tr->K, oracle);
    if (rc) return rc;
    if (tr->w) rc = gmf_flow_set_alpha(flow, tr->alpha);
    const size_t N = gmf_flow_dim(flow);
    double *y = rc ? NULL : gmf_calloc(N, sizeof(double), "the state");
    if (!rc && !y) rc = GMF_ENOMEM;
    if (!rc) memcpy(y, y0, N * sizeof(double));
    if (!rc) rc = gmf_traj_attach(tr, flow); /* the flow was made to match: cannot fail */
    if (rc) {
        free(y);
        gmf_flow_free(flow);
        return rc;
    }
    gmf_ode_stats local;
    if (!stats) stats = &local;
    gmf_ode_opts o = *opts;
    if (!o.scalar && !o.hook_user) /* the loss of a gradient flow must not increase */
        o.scalar = traj_loss, o.scalar_name = "loss", o.hook_user = flow;
    rc = gmf_ode_solve(N, gmf_flow_ode_rhs, flow, y, tout, tr->T, &o, gmf_traj_observe, tr, stats);
    tr->elapsed = now() - tr->start;
    tr->flow = NULL;
    free(y);
    gmf_flow_free(flow);
    char why[1024];
    if (rc) {
        snprintf(why, sizeof why, "%s", gmf_errmsg());
        return gmf_error(rc, "%s solver failed: %s", gmf_ode_method_name(opts->method), why);
    }
    if (tr->rc) return gmf_error(tr->rc, "integration stopped: %s", tr->msg);
    if (tr->done != tr->T && !stats->stopped)
        return gmf_error(GMF_ESOLVER, "integration stopped early: %zu of %zu output times",
                         tr->done, tr->T);
    return GMF_OK;
}

gmf_flow_kind gmf_traj_kind(const gmf_traj *tr) {
    return tr->kind;
}
size_t gmf_traj_T(const gmf_traj *tr) {
    return tr->T;
}
size_t gmf_traj_K(const gmf_traj *tr) {
    return tr->K;
}
size_t gmf_traj_D(const gmf_traj *tr) {
    return tr->D;
}
size_t gmf_traj_done(const gmf_traj *tr) {
    return tr->done;
}
const double *gmf_traj_t(const gmf_traj *tr) {
    return tr->t;
}
const double *gmf_traj_loss(const gmf_traj *tr) {
    return tr->loss;
}
const double *gmf_traj_wall(const gmf_traj *tr) {
    return tr->wall;
}
const long *gmf_traj_nrhs(const gmf_traj *tr) {
    return tr->nrhs;
}
const double *gmf_traj_mu(const gmf_traj *tr) {
    return tr->mu;
}
const double *gmf_traj_Sigma(const gmf_traj *tr) {
    return tr->Sigma;
}
const double *gmf_traj_C(const gmf_traj *tr) {
    return tr->C;
}
const double *gmf_traj_w(const gmf_traj *tr) {
    return tr->w;
}
int gmf_traj_set_alpha(gmf_traj *tr, double alpha) {
    if (!tr->w)
        return gmf_error(GMF_EINVAL, "trajectory: the Fisher-Rao weight needs the WFR flow");
    if (!isfinite(alpha) || alpha < 0.0)
        return gmf_error(GMF_EINVAL, "the Fisher-Rao weight must be finite and >= 0 (got %g)",
                         alpha);
    tr->alpha = alpha;
    return GMF_OK;
}
double gmf_traj_elapsed(const gmf_traj *tr) {
    return tr->elapsed;
}

/* ||a - b|| / ||a|| over n entries (||a|| = 0: the absolute difference). */
static double rel_diff(size_t n, const double *a, const double *b) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++)
        d += (a[i] - b[i]) * (a[i] - b[i]), m += a[i] * a[i];
    return m > 0 ? sqrt(d / m) : sqrt(d);
}

/* The pair (bw, euclid) of a Theorem 1 comparison, or GMF_EINVAL. */
static int thm1_pair(const gmf_traj *a, const gmf_traj *b, const gmf_traj **bw,
                     const gmf_traj **eu) {
    if (a->kind == b->kind || a->T != b->T || a->K != b->K || a->D != b->D)
        return gmf_error(GMF_EINVAL,
                         "Theorem 1 distance: needs one bw and one euclid trajectory of the same "
                         "sizes (got kinds %d/%d, T %zu/%zu, K %zu/%zu, D %zu/%zu)",
                         (int)a->kind, (int)b->kind, a->T, b->T, a->K, b->K, a->D, b->D);
    *bw = a->kind == GMF_FLOW_BW ? a : b, *eu = a->kind == GMF_FLOW_BW ? b : a;
    return GMF_OK;
}

/* Theorem 1 errors at output time j: the largest over k for Sigma, the stacked means for mu. */
static void thm1_at(const gmf_traj *bw, const gmf_traj *eu, size_t j, double *es, double *em) {
    const size_t K = bw->K, D = bw->D;
    *em = rel_diff(K * D, bw->mu + j * K * D, eu->mu + j * K * D);
    *es = 0;
    for (size_t k = 0; k < K; k++) {
        const size_t off = (j * K + k) * D * D;
        double r = rel_diff(D * D, bw->Sigma + off, eu->Sigma + off); /* eu: C C^T */
        if (!(r <= *es)) *es = r;
    }
}

int gmf_traj_thm1_distance(const gmf_traj *a, const gmf_traj *b, double *err_sigma,
                           double *err_mu) {
    const gmf_traj *bw = NULL, *eu = NULL;
    int rc = thm1_pair(a, b, &bw, &eu);
    if (rc) return rc;
    double es = 0, em = 0;
    for (size_t j = 0; j < bw->T; j++) {
        double s, m;
        thm1_at(bw, eu, j, &s, &m);
        if (!(s <= es)) es = s;
        if (!(m <= em)) em = m;
    }
    *err_sigma = es, *err_mu = em;
    return GMF_OK;
}

int gmf_traj_thm1_errors(const gmf_traj *a, const gmf_traj *b, double *err_sigma, double *err_mu) {
    const gmf_traj *bw = NULL, *eu = NULL;
    int rc = thm1_pair(a, b, &bw, &eu);
    if (rc) return rc;
    for (size_t j = 0; j < bw->T; j++)
        thm1_at(bw, eu, j, &err_sigma[j], &err_mu[j]);
    return GMF_OK;
}

int gmf_traj_time_grid(double t0, double span, size_t T, double *tout) {
    if (T < 2) return gmf_error(GMF_EINVAL, "output times: need at least 2 (got %zu)", T);
    if (!isfinite(t0) || !isfinite(span) || !isfinite(t0 + span) || !(span > 0))
        return gmf_error(GMF_EINVAL,
                         "output times: t0 = %g and span %g do not give a finite "
                         "interval",
                         t0, span);
    for (size_t j = 0; j < T; j++)
        tout[j] = t0 + span * (double)j / (double)(T - 1);
    tout[T - 1] = t0 + span;
    for (size_t j = 1; j < T; j++)
        if (!(tout[j] > tout[j - 1]))
            return gmf_error(GMF_EINVAL,
                             "a span of %g with %zu output times gives output times too close to "
                             "distinguish at t0 = %g",
                             span, T, t0);
    return GMF_OK;
}

static int is_cvode(gmf_ode_method m) {
    return m == GMF_ODE_CVODE_ADAMS || m == GMF_ODE_CVODE_BDF || m == GMF_ODE_AUTO;
}

static double max_abs(size_t n, const double *x) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(x[i]));
    return m;
}

/* loss and velocity at y0 finite; CVODE's smallest first step moves y0 by at most its size */
static int check_state(gmf_flow *f, const double *y0, const double *tout, size_t T,
                       const gmf_ode_opts *o, double *F, gmf_traj_start_issue *issue) {
    const size_t N = gmf_flow_dim(f);
    const size_t off = gmf_flow_off(f);
    for (size_t i = off; i < N; i++)
        if (!(fabs(y0[i]) <= GMF_TRAJ_STATE_MAX)) {
            *issue = GMF_TRAJ_START_STATE;
            const size_t ii = i - off;
            const size_t K = gmf_flow_K(f), D = gmf_flow_D(f);
            int mat = ii >= gmf_flow_mat_offset(K, D, 0);
            size_t k = mat ? (ii - gmf_flow_mat_offset(K, D, 0)) / (D * D) : ii / D;
            return gmf_error(
                GMF_EINVAL,
                "component %zu: %s entry %g is beyond %g in magnitude: the closed "
                "forms multiply entries pairwise (Sigma Sigma, C C^T, x^T Sigma x), "
                "which overflows near 1e154",
                k, mat ? (gmf_flow_kind_of(f) == GMF_FLOW_EUCLID ? "a C" : "a Sigma") : "a mean",
                y0[i], GMF_TRAJ_STATE_MAX);
        }
    double loss;
    int rc = gmf_flow_loss(f, y0, &loss);
    if (rc == GMF_OK && isfinite(loss)) rc = gmf_flow_rhs(f, y0, F);
    if (rc || !isfinite(loss) || !gmf_all_finite(F, N)) {
        char why[512];
        snprintf(why, sizeof why, "%s", rc ? gmf_errmsg() : "");
        *issue = GMF_TRAJ_START_STATE;
        return gmf_error(GMF_EINVAL,
                         "the initial state (largest |entry| %g) gives a non-finite %s%s%s: its "
                         "entries are too large for the closed-form expectations",
                         max_abs(N, y0), !isfinite(loss) || rc ? "loss" : "velocity",
                         rc ? ": " : "", why);
    }
    if (!is_cvode(o->method) || T < 2) return GMF_OK;
    const double hmin = 100.0 * DBL_EPSILON * fmax(fabs(tout[0]), fabs(tout[1]));
    const double move = hmin * max_abs(N, F), size = fmax(max_abs(N, y0), 1.0);
    if (!(move <= size)) {
        *issue = GMF_TRAJ_START_TIMES;
        return gmf_error(GMF_EINVAL,
                         "the first output interval [%g, %g] is too long for CVODE: its "
                         "initial-step rule takes a first step of at least 100 u x %g = %g, "
                         "which would move the state by %g, more than its size %g",
                         tout[0], tout[1], fmax(fabs(tout[0]), fabs(tout[1])), hmin, move, size);
    }
    return GMF_OK;
}

int gmf_traj_check_start(gmf_flow_kind kind, size_t K, gmf_oracle oracle, const double *y0,
                         const double *tout, size_t T, const gmf_ode_opts *o,
                         gmf_traj_start_issue *issue) {
    gmf_traj_start_issue dummy;
    if (!issue) issue = &dummy;
    *issue = GMF_TRAJ_START_TOLERANCE;
    if (!(o->rtol > 0) || !isfinite(o->rtol) || !(o->atol >= 0) || !isfinite(o->atol))
        return gmf_error(GMF_EINVAL,
                         "tolerances must be finite with rtol > 0 and atol >= 0 "
                         "(got rtol %g, atol %g)",
                         o->rtol, o->atol);
    if (is_cvode(o->method) && o->atol == 0)
        return gmf_error(GMF_EINVAL,
                         "atol 0 cannot work with CVODE (%s): its error weights "
                         "1 / (rtol |y_i| + atol) are infinite at every zero entry of the state "
                         "(such as the off-diagonal zeros of a diagonal Sigma)",
                         gmf_ode_method_name(o->method));
    *issue = GMF_TRAJ_START_TIMES;
    for (size_t j = 0; j < T; j++)
        if (!isfinite(tout[j]) || (j && !(tout[j] > tout[j - 1])))
            return gmf_error(GMF_EINVAL,
                             "output time %zu (%g) is not finite or not after the "
                             "previous one",
                             j, tout[j]);
    gmf_flow *f;
    int rc = gmf_flow_new(&f, kind, K, oracle);
    if (rc) return rc;
    double *F = gmf_calloc(gmf_flow_dim(f), sizeof(double), "the initial velocity");
    rc = F ? check_state(f, y0, tout, T, o, F, issue) : GMF_ENOMEM;
    free(F);
    gmf_flow_free(f);
    if (rc == GMF_OK) *issue = GMF_TRAJ_START_OK;
    return rc;
}
