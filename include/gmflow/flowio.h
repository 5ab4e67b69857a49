/* gmflow/flowio.h -- the files of a flow run (prefix gmf_flowio): trajectory.csv, t.npy, mu.npy,
 * Sigma.npy, C.npy (Euclidean form), state.json and run.json, formats in docs/FORMATS.md.
 *
 * gmf_flowio_write_set writes them all as one output set (gmflow/outset.h): a reader of the
 * directory sees the whole previous set or the whole new one, never a mixture.  The single-file
 * writers are atomic per file (gmflow/io.h).  Every error names the file and, for a system
 * error, carries strerror(errno).
 */
#ifndef GMFLOW_FLOWIO_H
#define GMFLOW_FLOWIO_H

#include <stddef.h>

#include "gmflow/events.h"
#include "gmflow/ode.h"
#include "gmflow/outset.h"
#include "gmflow/toy.h"
#include "gmflow/traj.h"

#ifdef __cplusplus
extern "C" {
#endif

/* trajectory.csv: header t,loss,wall_s,nrhs, then one row per recorded output time. */
int gmf_flowio_write_csv(const char *path, const gmf_traj *tr);
/* t.npy (T), mu.npy (T, K, D), Sigma.npy (T, K, D, D) and, for the Euclidean form, C.npy into
 * directory dir. */
int gmf_flowio_write_npy(const char *dir, const gmf_traj *tr);
/* state.json: the last recorded state (gmf_io_write_state), for input dimension d = D - 1. */
int gmf_flowio_write_state(const char *path, const gmf_traj *tr);

/* What run.json records besides the trajectory (its form, sizes, times and losses). */
typedef struct gmf_flowio_run {
    const char *version; /* gmflow version string */
    int argc;            /* the command line, recorded verbatim */
    char *const *argv;
    const char *data_path; /* CSV data file, or NULL: the built-in toy described by toy */
    gmf_toy_opts toy;
    size_t n;              /* samples */
    const char *init_path; /* --init state file, or NULL: random initial mixture */
    const char *init_form; /* the file's form, "bw" or "euclid" */
    double init_t;         /* the file's time */
    double gamma;          /* random initial mixture: scale and seed */
    unsigned long seed;
    gmf_ode_opts ode;    /* solver options */
    int tightened;       /* tolerances tightened for the Theorem 1 check */
    double t0, t_end;    /* integration over [t0, t0 + t_end] */
    gmf_ode_stats stats; /* main integration */
    double wall;         /* its wall seconds */
    double wall_total;   /* the whole run */
    int checked;         /* Theorem 1 check done: the fields below are set */
    double err_sigma, err_mu, tol;
    int pass;
    gmf_ode_stats check_stats;
    double check_wall;
    const gmf_events *events; /* NULL, or the run's events: run.json "events" and the state at
                               * each of the first GMF_FLOWIO_MAX_EVENT_FILES events in
                               * event_<j>_state.json, j = 1, 2, ... */
    int ranks;        /* MPI ranks the data was sharded over (0 is written as 1; docs/SCALE.md) */
    double fr_weight; /* WFR runs (trajectory with weights): the Fisher-Rao weight alpha */
} gmf_flowio_run;

#define GMF_FLOWIO_MAX_EVENT_FILES 20

/* run.json of a run that recorded tr. */
int gmf_flowio_write_run(const char *path, const gmf_traj *tr, const gmf_flowio_run *run);

/* The file names a flow output set may hold (NULL-terminated), for gmf_outset_new: the files
 * above, spectrum.csv of `gmflow flow --polish`, and the event state files (so that a new set
 * never keeps an old run's). */
extern const char *const gmf_flowio_names[];

/* Write all files into an output set made with gmf_outset_new(&set, dir, gmf_flowio_names) and
 * commit it (the caller frees the set).  On failure the previous contents of dir are intact. */
int gmf_flowio_write_set(gmf_outset *set, const gmf_traj *tr, const gmf_flowio_run *run);

#ifdef __cplusplus
}
#endif
#endif
