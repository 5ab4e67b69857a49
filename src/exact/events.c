/* events.c -- event functions (gradient norm, loss crossing, component collapse), the monotone
 * loss and the stall diagnosis of the mixture flows, as hooks of the ODE driver (ode.h). */
#include "gmflow/events.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events_internal.h"
#include "gmflow/common.h"

const char *gmf_events_kind_name(gmf_event_kind k) {
    switch (k) {
    case GMF_EVENT_GRAD:
        return "grad";
    case GMF_EVENT_LOSS:
        return "loss";
    case GMF_EVENT_COLLAPSE:
        return "collapse";
    }
    return "?";
}

int gmf_events_new(gmf_events **out, gmf_flow_kind kind, size_t K, gmf_oracle oracle,
                   const gmf_events_opts *o) {
    if (!out) return gmf_error(GMF_EINVAL, "events: null output");
    *out = NULL;
    if (!o) return gmf_error(GMF_EINVAL, "events: null options");
    if (!(o->grad_tol >= 0) || !(o->collapse_ratio >= 0) ||
        (o->loss_on && !isfinite(o->loss_value)))
        return gmf_error(GMF_EINVAL, "events: need grad_tol >= 0, collapse_ratio >= 0 and a finite "
                                     "loss value");
    gmf_events *e = gmf_calloc(1, sizeof *e, "events");
    if (!e) return GMF_ENOMEM;
    e->o = *o;
    if (!e->o.max_events) e->o.max_events = 1000;
    int rc = gmf_flow_new(&e->flow, kind, K, oracle);
    if (rc) {
        free(e);
        return rc;
    }
    const size_t D = gmf_flow_D(e->flow);
    e->N = gmf_flow_dim(e->flow);
    e->ng = (o->grad_tol > 0) + (o->loss_on != 0) + (o->collapse_ratio > 0 ? K : 0);
    e->gkind = gmf_calloc(e->ng + 1, sizeof(gmf_event_kind), "event functions");
    e->gcomp = gmf_calloc(e->ng + 1, sizeof(long), "event functions");
    e->gdir = gmf_calloc(e->ng + 1, sizeof(int), "event functions");
    e->work = gmf_calloc(e->N + 2 * D * D + D, sizeof(double), "event workspace");
    e->ev = gmf_calloc(e->o.max_events, sizeof(gmf_event), "events");
    if (!e->gkind || !e->gcomp || !e->gdir || !e->work || !e->ev) {
        gmf_events_free(e);
        return GMF_ENOMEM;
    }
    size_t i = 0;
    if (o->grad_tol > 0) e->gkind[i] = GMF_EVENT_GRAD, e->gcomp[i] = -1, e->gdir[i++] = -1;
    if (o->loss_on) e->gkind[i] = GMF_EVENT_LOSS, e->gcomp[i] = -1, e->gdir[i++] = 0;
    for (size_t k = 0; o->collapse_ratio > 0 && k < K; k++)
        e->gkind[i] = GMF_EVENT_COLLAPSE, e->gcomp[i] = (long)k, e->gdir[i++] = -1;
    *out = e;
    return GMF_OK;
}

void gmf_events_free(gmf_events *e) {
    if (!e) return;
    for (size_t j = 0; e->ev && j < e->nev; j++)
        free(e->ev[j].y);
    free(e->gkind), free(e->gcomp), free(e->gdir), free(e->work), free(e->ev);
    gmf_flow_free(e->flow);
    free(e);
}

size_t gmf_events_count(const gmf_events *e) {
    return e ? e->nev : 0;
}
const gmf_event *gmf_events_get(const gmf_events *e, size_t i) {
    return i < gmf_events_count(e) ? &e->ev[i] : NULL;
}
size_t gmf_events_ndropped(const gmf_events *e) {
    return e ? e->ndropped : 0;
}

int gmf_events_eig(gmf_events *e, const double *y, size_t k, double *lmin, double *lmax) {
    const size_t K = gmf_flow_K(e->flow), D = gmf_flow_D(e->flow);
    double *S = e->work + e->N, *ev = S + 2 * D * D;
    const double *M = y + gmf_flow_mat_offset(K, D, k);
    if (gmf_flow_kind_of(e->flow) == GMF_FLOW_EUCLID) /* C C^T (upper triangle, all dsyev reads) */
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)D, (int)D, 1.0, M, (int)D, 0.0, S,
                    (int)D);
    else
        memcpy(S, M, D * D * sizeof(double));
    lapack_int info =
        LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'N', 'U', (lapack_int)D, S, (lapack_int)D, ev);
    if (info != 0)
        return gmf_error(GMF_ENOTPD, "events: eigenvalues of component %zu failed (LAPACK info %d)",
                         k, (int)info);
    *lmin = ev[0], *lmax = ev[D - 1];
    return GMF_OK;
}

static double ratio(double lmin, double lmax) {
    return lmax > 0 ? lmin / lmax : 0.0;
}

static int ev_roots(double t, const double *y, double *g, void *user) {
    (void)t;
    gmf_events *e = user;
    double loss = NAN, gnorm = NAN;
    int rc = GMF_OK;
    if (e->o.grad_tol > 0) { /* F(y), and the loss from the same oracle preparation */
        if ((rc = gmf_flow_rhs(e->flow, y, e->work)) != GMF_OK) return rc;
        gnorm = cblas_dnrm2((int)e->N, e->work, 1);
        loss = gmf_flow_last_loss(e->flow);
    } else if (e->o.loss_on && (rc = gmf_flow_loss(e->flow, y, &loss)) != GMF_OK) {
        return rc;
    }
    for (size_t i = 0; i < e->ng; i++) {
        double lmin = 0, lmax = 0;
        switch (e->gkind[i]) {
        case GMF_EVENT_GRAD:
            g[i] = gnorm - e->o.grad_tol;
            break;
        case GMF_EVENT_LOSS:
            g[i] = loss - e->o.loss_value;
            break;
        case GMF_EVENT_COLLAPSE:
            if ((rc = gmf_events_eig(e, y, (size_t)e->gcomp[i], &lmin, &lmax)) != GMF_OK) return rc;
            g[i] = ratio(lmin, lmax) - e->o.collapse_ratio;
            break;
        }
    }
    return GMF_OK;
}

/* The event's own value (||F||, the loss or the ratio) at y. */
static int ev_value(gmf_events *e, gmf_event_kind kind, long k, const double *y, double *v) {
    double lmin = 0, lmax = 0;
    int rc = GMF_OK;
    switch (kind) {
    case GMF_EVENT_GRAD:
        rc = gmf_flow_rhs(e->flow, y, e->work);
        *v = cblas_dnrm2((int)e->N, e->work, 1);
        break;
    case GMF_EVENT_LOSS:
        rc = gmf_flow_loss(e->flow, y, v);
        break;
    case GMF_EVENT_COLLAPSE:
        rc = gmf_events_eig(e, y, (size_t)k, &lmin, &lmax);
        *v = ratio(lmin, lmax);
        break;
    }
    return rc;
}

static int ev_on_root(double t, const double *y, const int *which, void *user) {
    gmf_events *e = user;
    for (size_t i = 0; i < e->ng; i++) {
        if (!which[i]) continue;
        if (e->nev >= e->o.max_events) {
            e->ndropped++;
            continue;
        }
        gmf_event *ev = &e->ev[e->nev];
        ev->kind = e->gkind[i], ev->component = e->gcomp[i], ev->t = t, ev->direction = which[i];
        int rc = ev_value(e, ev->kind, ev->component, y, &ev->value);
        if (rc) return rc;
        ev->y = malloc(e->N * sizeof(double));
        if (!ev->y) return gmf_error(GMF_ENOMEM, "out of memory recording an event");
        memcpy(ev->y, y, e->N * sizeof(double));
        e->nev++;
    }
    return e->o.stop ? 1 : 0;
}

static int ev_loss(double t, const double *y, double *value, void *user) {
    (void)t;
    gmf_events *e = user;
    return gmf_flow_loss(e->flow, y, value);
}

/* The stall diagnosis: the component whose Sigma_k is closest to singular. */
static void ev_diagnose(double t, const double *y, char *buf, size_t len, void *user) {
    (void)t;
    gmf_events *e = user;
    double best = INFINITY, bmin = 0, bmax = 0;
    long bk = -1;
    for (size_t k = 0; k < gmf_flow_K(e->flow); k++) {
        double lmin = 0, lmax = 0;
        if (gmf_events_eig(e, y, k, &lmin, &lmax) != GMF_OK) continue;
        if (ratio(lmin, lmax) < best)
            best = ratio(lmin, lmax), bk = (long)k, bmin = lmin, bmax = lmax;
    }
    if (bk < 0) {
        snprintf(buf, len, "(the covariances' eigenvalues could not be computed)");
        return;
    }
    const char *m = gmf_flow_kind_of(e->flow) == GMF_FLOW_EUCLID ? "C_k C_k^T" : "Sigma_k";
    snprintf(buf, len,
             "Component %ld looks %s: the smallest eigenvalue of its %s is %.3g, %.3g times the "
             "largest (%.3g)%s.",
             bk, best < 1e-4 ? "singular (collapsing)" : "the most nearly singular", m, bmin, best,
             bmax, best < 1e-4 ? "; a component collapse event (e.g. ratio 1e-6) stops there" : "");
}

void gmf_events_attach(gmf_events *e, gmf_ode_opts *ode) {
    ode->scalar = ev_loss;
    ode->scalar_name = "loss";
    ode->diagnose = ev_diagnose;
    ode->hook_user = e;
    ode->nroots = e->ng;
    ode->root_dir = e->ng ? e->gdir : NULL;
    ode->roots = e->ng ? ev_roots : NULL;
    ode->on_root = e->ng ? ev_on_root : NULL;
}

void gmf_events_describe(const gmf_events *e, const gmf_event *ev, char *buf, size_t len) {
    switch (ev->kind) {
    case GMF_EVENT_GRAD:
        snprintf(buf, len, "stationary point: ||F(y)|| = %.6g fell below %g at t = %.10g",
                 ev->value, e->o.grad_tol, ev->t);
        break;
    case GMF_EVENT_LOSS:
        snprintf(buf, len, "loss crossed %.10g (%s) at t = %.10g: loss %.10g", e->o.loss_value,
                 ev->direction < 0 ? "falling" : "rising", ev->t, ev->value);
        break;
    case GMF_EVENT_COLLAPSE:
        snprintf(buf, len,
                 "component %ld collapse: lambda_min/lambda_max of %s_%ld = %.3g fell below %g at "
                 "t = %.10g",
                 ev->component, gmf_flow_kind_of(e->flow) == GMF_FLOW_EUCLID ? "C C^T" : "Sigma",
                 ev->component, ev->value, e->o.collapse_ratio, ev->t);
        break;
    }
}
