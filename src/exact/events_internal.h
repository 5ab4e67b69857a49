/* events_internal.h -- the layout of gmf_events (gmflow/events.h).  Internal to src/exact/;
 * callers use gmf_events_new / _free and the accessors gmf_events_count / _get / _ndropped. */
#ifndef GMFLOW_EVENTS_INTERNAL_H
#define GMFLOW_EVENTS_INTERNAL_H

#include "gmflow/events.h"

struct gmf_events {
    gmf_events_opts o;
    gmf_flow *flow;        /* its own flow over the caller's oracle, for the event functions */
    size_t N, ng;          /* state length, number of event functions */
    gmf_event_kind *gkind; /* per event function */
    long *gcomp;
    int *gdir;
    double *work;  /* N + 2 D^2 + D */
    gmf_event *ev; /* recorded events (o.max_events slots) */
    size_t nev, ndropped;
};

#endif
