/* flowio.c -- the files of a flow run (gmflow/flowio.h, formats in docs/FORMATS.md). */
#include "gmflow/flowio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/io.h"

const char *const gmf_flowio_names[] = {
    "trajectory.csv",
    "t.npy",
    "mu.npy",
    "Sigma.npy",
    "C.npy",
    "state.json",
    "run.json",
    "spectrum.csv", /* `gmflow flow --polish` (gmflow/stationary.h) */
    "w.npy",        /* `gmflow flow --geometry wfr` (docs/WFR.md) */
    "event_1_state.json",
    "event_2_state.json",
    "event_3_state.json",
    "event_4_state.json",
    "event_5_state.json",
    "event_6_state.json",
    "event_7_state.json",
    "event_8_state.json",
    "event_9_state.json",
    "event_10_state.json",
    "event_11_state.json",
    "event_12_state.json",
    "event_13_state.json",
    "event_14_state.json",
    "event_15_state.json",
    "event_16_state.json",
    "event_17_state.json",
    "event_18_state.json",
    "event_19_state.json",
    "event_20_state.json",
    NULL};

static const char *form_name(gmf_flow_kind k) {
    return k == GMF_FLOW_EUCLID ? "euclid" : "bw";
}

int gmf_flowio_write_csv(const char *path, const gmf_traj *tr) {
    gmf_io_file f;
    int rc = gmf_io_open(&f, path);
    if (rc) return rc;
    const double *t = gmf_traj_t(tr), *loss = gmf_traj_loss(tr), *wall = gmf_traj_wall(tr);
    const long *nrhs = gmf_traj_nrhs(tr);
    fprintf(f.fp, "t,loss,wall_s,nrhs\n");
    for (size_t j = 0; j < gmf_traj_done(tr); j++)
        fprintf(f.fp, "%.17g,%.17g,%.6f,%ld\n", t[j], loss[j], wall[j], nrhs[j]);
    return gmf_io_commit(&f);
}

static int join(char *out, size_t outsz, const char *dir, const char *name) {
    int n = snprintf(out, outsz, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= outsz)
        return gmf_error(GMF_EINVAL, "output path too long: %s/%s", dir, name);
    return GMF_OK;
}

int gmf_flowio_write_npy(const char *dir, const gmf_traj *tr) {
    char p[4200];
    const size_t T = gmf_traj_done(tr), K = gmf_traj_K(tr), D = gmf_traj_D(tr);
    size_t s1[1] = {T}, s3[3] = {T, K, D}, s4[4] = {T, K, D, D};
    int rc = join(p, sizeof p, dir, "t.npy");
    if (!rc) rc = gmf_io_write_npy(p, gmf_traj_t(tr), 1, s1);
    if (!rc) rc = join(p, sizeof p, dir, "mu.npy");
    if (!rc) rc = gmf_io_write_npy(p, gmf_traj_mu(tr), 3, s3);
    if (!rc) rc = join(p, sizeof p, dir, "Sigma.npy");
    if (!rc) rc = gmf_io_write_npy(p, gmf_traj_Sigma(tr), 4, s4);
    if (!rc && gmf_traj_C(tr)) rc = join(p, sizeof p, dir, "C.npy");
    if (!rc && gmf_traj_C(tr)) rc = gmf_io_write_npy(p, gmf_traj_C(tr), 4, s4);
    size_t s2[2] = {T, K};
    if (!rc && gmf_traj_w(tr)) rc = join(p, sizeof p, dir, "w.npy");
    if (!rc && gmf_traj_w(tr)) rc = gmf_io_write_npy(p, gmf_traj_w(tr), 2, s2);
    return rc;
}

int gmf_flowio_write_state(const char *path, const gmf_traj *tr) {
    const size_t T = gmf_traj_done(tr), K = gmf_traj_K(tr), D = gmf_traj_D(tr);
    if (T == 0) return gmf_error(GMF_EINVAL, "cannot write %s: empty trajectory", path);
    const size_t last = T - 1;
    const double *C = gmf_traj_C(tr);
    gmf_io_state s = {.K = K,
                      .d = D - 1,
                      .D = D,
                      .t = gmf_traj_t(tr)[last],
                      .euclid = C != NULL,
                      .mu = (double *)gmf_traj_mu(tr) + last * K * D,
                      .Sigma = (double *)gmf_traj_Sigma(tr) + last * K * D * D,
                      .C = C ? (double *)C + last * K * D * D : NULL,
                      .w = gmf_traj_w(tr) ? (double *)gmf_traj_w(tr) + last * K : NULL};
    return gmf_io_write_state(path, &s);
}

/* ------------------------------------------------------------------------------------------ */
/* run.json                                                                                    */

static void json_stats(FILE *fp, const gmf_ode_stats *s, double wall, const char *indent) {
    fprintf(fp,
            "{\n%s  \"nsteps\": %ld,\n%s  \"nfevals\": %ld,\n%s  \"netfails\": %ld,\n"
            "%s  \"nniters\": %ld,\n%s  \"nncfails\": %ld,\n%s  \"nliters\": %ld,\n"
            "%s  \"qlast\": %d,\n%s  \"hlast\": %.17g,\n%s  \"wall_s\": %.6f\n%s}",
            indent, s->nsteps, indent, s->nfevals, indent, s->netfails, indent, s->nniters, indent,
            s->nncfails, indent, s->nliters, indent, s->qlast, indent, s->hlast, indent, wall,
            indent);
}

/* "argv", "form", "data", "init" */
static void run_inputs(FILE *fp, const gmf_traj *tr, const gmf_flowio_run *r) {
    fprintf(fp, "  \"gmflow_version\": \"%s\",\n  \"command\": \"flow\",\n  \"argv\": [",
            r->version ? r->version : "");
    for (int i = 0; i < r->argc; i++) {
        if (i) fputs(", ", fp);
        gmf_io_json_string(fp, r->argv[i]);
    }
    fprintf(fp, "],\n  \"form\": \"%s\",\n", form_name(gmf_traj_kind(tr)));
    if (gmf_traj_w(tr)) /* WFR runs (docs/WFR.md): the geometry and its Fisher-Rao weight */
        fprintf(fp, "  \"geometry\": \"wfr\",\n  \"fr_weight\": %.17g,\n", r->fr_weight);
    if (r->data_path) {
        const size_t L = strlen(r->data_path);
        fprintf(fp, "  \"data\": {\"source\": \"%s\", \"path\": ",
                L > 4 && !strcmp(r->data_path + L - 4, ".npy") ? "npy" : "csv");
        gmf_io_json_string(fp, r->data_path);
        fprintf(fp, "},\n");
    } else {
        fprintf(fp,
                "  \"data\": {\"source\": \"toy\", \"teacher\": \"%s\", \"n\": %zu, \"d\": %zu, "
                "\"width\": %zu, \"noise\": %.17g, \"seed\": %lu},\n",
                r->toy.teacher == GMF_TOY_MIXTURE ? "mixture" : "relu", r->toy.n, r->toy.d,
                r->toy.width, r->toy.noise, r->toy.seed);
    }
    if (r->init_path) {
        fprintf(fp, "  \"init\": {\"source\": \"file\", \"path\": ");
        gmf_io_json_string(fp, r->init_path);
        fprintf(fp, ", \"form\": \"%s\", \"t\": %.17g},\n", r->init_form ? r->init_form : "",
                r->init_t);
    } else {
        fprintf(fp, "  \"init\": {\"source\": \"random\", \"gamma\": %.17g, \"seed\": %lu},\n",
                r->gamma, r->seed);
    }
}

/* "method_last", "auto_switches", "stopped_by_event", "events" */
static void run_events(FILE *fp, const gmf_flowio_run *r) {
    const gmf_ode_stats *st = &r->stats;
    const gmf_events *e = r->events;
    const size_t nev = gmf_events_count(e), ndropped = gmf_events_ndropped(e);
    fprintf(fp, "  \"method_last\": \"%s\",\n  \"auto_switches\": [",
            gmf_ode_method_name(st->method_last));
    for (int i = 0; i < st->nswitch && i < GMF_ODE_MAX_SWITCH; i++)
        fprintf(fp, "%s%.17g", i ? ", " : "", st->t_switch[i]);
    fprintf(fp, "],\n  \"stopped_by_event\": %s,\n  \"events\": [",
            st->stopped && nev ? "true" : "false");
    for (size_t j = 0; j < nev; j++) {
        const gmf_event *ev = gmf_events_get(e, j);
        char desc[512], file[64] = "null";
        gmf_events_describe(e, ev, desc, sizeof desc);
        if (j < GMF_FLOWIO_MAX_EVENT_FILES)
            snprintf(file, sizeof file, "\"event_%zu_state.json\"", j + 1);
        fprintf(fp,
                "%s\n    {\"kind\": \"%s\", \"component\": %ld, \"t\": %.17g, \"value\": %.17g, "
                "\"direction\": %d, \"state\": %s, \"message\": ",
                j ? "," : "", gmf_events_kind_name(ev->kind), ev->component, ev->t, ev->value,
                ev->direction, file);
        gmf_io_json_string(fp, desc);
        fputc('}', fp);
    }
    fprintf(fp, "%s],\n", nev ? "\n  " : "");
    if (ndropped) fprintf(fp, "  \"events_not_recorded\": %zu,\n", ndropped);
}

/* sizes, solver, times, losses, statistics, the Theorem 1 check, the file list */
static void run_results(FILE *fp, const gmf_traj *tr, const gmf_flowio_run *r) {
    const size_t T = gmf_traj_done(tr), K = gmf_traj_K(tr), D = gmf_traj_D(tr);
    const int euclid = gmf_traj_kind(tr) == GMF_FLOW_EUCLID;
    const double *t = gmf_traj_t(tr), *loss = gmf_traj_loss(tr);
    fprintf(fp, "  \"ranks\": %d,\n", r->ranks > 0 ? r->ranks : 1);
    fprintf(fp, "  \"n\": %zu,\n  \"d\": %zu,\n  \"K\": %zu,\n  \"D\": %zu,\n", r->n, D - 1, K, D);
    fprintf(fp,
            "  \"solver\": {\"method\": \"%s\", \"gsl_norm\": \"%s\", \"rtol\": %.17g, "
            "\"atol\": %.17g, \"max_steps\": %ld, \"loss_atol\": %.17g, "
            "\"tolerances_tightened_for_check\": %s},\n",
            gmf_ode_method_name(r->ode.method), gmf_ode_norm_name((gmf_ode_norm)r->ode.gsl_norm),
            r->ode.rtol, r->ode.atol, r->ode.max_steps, r->ode.scalar_atol,
            r->tightened ? "true" : "false");
    fprintf(fp, "  \"t0\": %.17g,\n  \"t_end\": %.17g,\n  \"t_final\": %.17g,\n  \"n_out\": %zu,\n",
            r->t0, r->t_end, t[T - 1], gmf_traj_T(tr));
    fprintf(fp, "  \"loss_start\": %.17g,\n  \"loss_end\": %.17g,\n", loss[0], loss[T - 1]);
    fprintf(fp, "  \"stats\": ");
    json_stats(fp, &r->stats, r->wall, "  ");
    fprintf(fp, ",\n  \"wall_s\": %.6f,\n", r->wall_total);
    run_events(fp, r);
    if (r->checked) {
        fprintf(fp,
                "  \"check_thm1\": {\n    \"other_form\": \"%s\",\n    \"sigma_rel_err\": %.17g,\n"
                "    \"mu_rel_err\": %.17g,\n    \"tol\": %g,\n    \"pass\": %s,\n    \"stats\": ",
                euclid ? "bw" : "euclid", r->err_sigma, r->err_mu, r->tol,
                r->pass ? "true" : "false");
        json_stats(fp, &r->check_stats, r->check_wall, "    ");
        fprintf(fp, "\n  },\n");
    } else {
        fprintf(fp, "  \"check_thm1\": null,\n");
    }
    fprintf(fp,
            "  \"files\": [\"trajectory.csv\", \"t.npy\", \"mu.npy\", \"Sigma.npy\", %s"
            "\"state.json\", ",
            euclid ? "\"C.npy\", " : "");
    const size_t nev = r->events ? gmf_events_count(r->events) : 0;
    for (size_t j = 0; j < nev && j < GMF_FLOWIO_MAX_EVENT_FILES; j++)
        fprintf(fp, "\"event_%zu_state.json\", ", j + 1);
    fprintf(fp, "\"run.json\"]\n}\n");
}

int gmf_flowio_write_run(const char *path, const gmf_traj *tr, const gmf_flowio_run *run) {
    if (gmf_traj_done(tr) == 0)
        return gmf_error(GMF_EINVAL, "cannot write %s: empty trajectory", path);
    gmf_io_file f;
    int rc = gmf_io_open(&f, path);
    if (rc) return rc;
    fprintf(f.fp, "{\n  \"format\": \"gmflow-run\",\n  \"version\": 1,\n");
    run_inputs(f.fp, tr, run);
    run_results(f.fp, tr, run);
    return gmf_io_commit(&f);
}

/* event_<j>_state.json for the first GMF_FLOWIO_MAX_EVENT_FILES events. */
static int write_event_states(gmf_outset *set, const gmf_traj *tr, const gmf_events *e) {
    const size_t K = gmf_traj_K(tr), D = gmf_traj_D(tr), N = K * (D + D * D);
    const int euclid = gmf_traj_kind(tr) == GMF_FLOW_EUCLID;
    double *bw = euclid ? malloc(N * sizeof(double)) : NULL;
    if (euclid && !bw) return gmf_error(GMF_ENOMEM, "out of memory writing the event states");
    int rc = GMF_OK;
    const size_t nev = gmf_events_count(e);
    for (size_t j = 0; rc == GMF_OK && j < nev && j < GMF_FLOWIO_MAX_EVENT_FILES; j++) {
        const gmf_event *ev = gmf_events_get(e, j);
        const double *y = ev->y;
        if (euclid) gmf_flow_euclid_to_bw(K, D, y, bw);
        gmf_io_state s = {.K = K,
                          .d = D - 1,
                          .D = D,
                          .t = ev->t,
                          .euclid = euclid,
                          .mu = (double *)y,
                          .Sigma = (double *)(euclid ? bw : y) + K * D,
                          .C = euclid ? (double *)y + K * D : NULL};
        char name[64], p[4200];
        snprintf(name, sizeof name, "event_%zu_state.json", j + 1);
        rc = gmf_outset_path(set, name, p, sizeof p);
        if (!rc) rc = gmf_io_write_state(p, &s);
    }
    free(bw);
    return rc;
}

int gmf_flowio_write_set(gmf_outset *set, const gmf_traj *tr, const gmf_flowio_run *run) {
    char p[4200];
    int rc = gmf_flowio_write_npy(gmf_outset_dir(set), tr);
    if (!rc) rc = gmf_outset_path(set, "trajectory.csv", p, sizeof p);
    if (!rc) rc = gmf_flowio_write_csv(p, tr);
    if (!rc) rc = gmf_outset_path(set, "state.json", p, sizeof p);
    if (!rc) rc = gmf_flowio_write_state(p, tr);
    if (!rc && run->events) rc = write_event_states(set, tr, run->events);
    if (!rc) rc = gmf_outset_path(set, "run.json", p, sizeof p);
    if (!rc) rc = gmf_flowio_write_run(p, tr, run);
    if (!rc) rc = gmf_outset_commit(set);
    return rc;
}
