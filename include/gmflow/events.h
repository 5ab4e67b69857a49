/* gmflow/events.h -- events and diagnostics of the mixture flows for the ODE driver
 * (prefix gmf_events).
 *
 * Event functions over a flow's state y (flow.h), located by the driver of ode.h:
 *   GMF_EVENT_GRAD      ||F(y)||_2 falls below grad_tol (F the flow's right-hand side: for the
 *                       Euclidean form the gradient of l(mu, C); near a stationary point);
 *   GMF_EVENT_LOSS      the loss L(rho) crosses loss_value (either direction);
 *   GMF_EVENT_COLLAPSE  lambda_min / lambda_max of Sigma_k (bw) or of C_k C_k^T (euclid) falls
 *                       below collapse_ratio for some component k (the component is narrowing
 *                       onto a lower-dimensional set).
 * Each event is recorded with its time, kind, component and a copy of the state there; the run
 * stops at the first one (stop = 1) or records and goes on.  gmf_events_attach also installs the
 * loss as the driver's monotone scalar and a stall diagnosis naming the most singular component.
 * With all events off it still gives the scalar and the diagnosis.
 */
#ifndef GMFLOW_EVENTS_H
#define GMFLOW_EVENTS_H

#include <stddef.h>

#include "gmflow/flow.h"
#include "gmflow/ode.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { GMF_EVENT_GRAD = 0, GMF_EVENT_LOSS = 1, GMF_EVENT_COLLAPSE = 2 } gmf_event_kind;

typedef struct gmf_event {
    gmf_event_kind kind;
    long component; /* collapse: the component k; -1 otherwise */
    double t;       /* on the flow's own clock */
    double value;   /* at the event: ||F(y)||_2, the loss, or lambda_min / lambda_max */
    int direction;  /* +1 rising, -1 falling */
    double *y;      /* the state at the event (gmf_flow_dim values), owned by the events */
} gmf_event;

typedef struct gmf_events_opts {
    double grad_tol; /* > 0: gradient-norm event */
    int loss_on;     /* 1: loss-crossing event at loss_value */
    double loss_value;
    double collapse_ratio; /* > 0: collapse event */
    int stop;              /* 1: stop at the first event; 0: record and continue */
    size_t max_events;     /* record at most this many (0: 1000); later ones are counted only */
} gmf_events_opts;

/* Opaque: the options, a flow of its own over the caller's oracle, the event functions' tables,
 * a workspace and the recorded events (src/exact/events_internal.h). */
typedef struct gmf_events gmf_events;

/* Events of the flow of `kind` with K components over `oracle` (borrowed: must outlive *out),
 * with the options o (copied; max_events 0 becomes 1000).  GMF_OK and *out, or an error code
 * (GMF_EINVAL: a null out or o, a negative grad_tol or collapse_ratio, a non-finite loss value,
 * or what gmf_flow_new refuses; GMF_ENOMEM) with *out = NULL. */
int gmf_events_new(gmf_events **out, gmf_flow_kind kind, size_t K, gmf_oracle oracle,
                   const gmf_events_opts *o);
/* Frees e and the recorded events' states (NULL is fine). */
void gmf_events_free(gmf_events *e);

/* Events recorded so far, in the order they happened (at most max_events); 0 for e = NULL (a run
 * without events). */
size_t gmf_events_count(const gmf_events *e);
/* The i-th recorded event (0-based), or NULL when i >= gmf_events_count(e).  The record and its
 * state y belong to e: valid until gmf_events_free(e). */
const gmf_event *gmf_events_get(const gmf_events *e, size_t i);
/* Events that happened after max_events were recorded: counted, not recorded (0 for NULL). */
size_t gmf_events_ndropped(const gmf_events *e);

/* Install the hooks into ode: scalar = the loss (must not increase), diagnose, and the event
 * functions with their directions and on_root (hook_user = e). */
void gmf_events_attach(gmf_events *e, gmf_ode_opts *ode);

/* "grad", "loss" or "collapse". */
const char *gmf_events_kind_name(gmf_event_kind k);

/* One line about an event (a collapse's contains the word "collapse"). */
void gmf_events_describe(const gmf_events *e, const gmf_event *ev, char *buf, size_t len);

/* Smallest and largest eigenvalue of Sigma_k (bw) or C_k C_k^T (euclid) at state y. */
int gmf_events_eig(gmf_events *e, const double *y, size_t k, double *lmin, double *lmax);

#ifdef __cplusplus
}
#endif
#endif
