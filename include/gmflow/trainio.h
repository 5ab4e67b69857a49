/* gmflow/trainio.h -- the text files of a training run (prefix gmf_trainio): run.json and
 * epochs.csv, formats in docs/FORMATS.md and docs/TRAINING.md.  Checkpoints and snapshots are
 * gmflow/train.h's.  Every error names the file and, for a system error, carries strerror(errno).
 */
#ifndef GMFLOW_TRAINIO_H
#define GMFLOW_TRAINIO_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What run.json says: the command line, where the data and checkpoint are, the run record
 * (gmf_train_run_record, a JSON object) and where the run stands. */
typedef struct gmf_trainio_run {
    int argc;
    char **argv;
    const char *data_dir, *checkpoint;
    size_t test_limit, epochs;
    const char *record;           /* JSON object text */
    const char *status;           /* "running", "complete", "diverged", "failed" */
    const char *message;          /* the error, or NULL */
    size_t last_epoch;            /* last completed epoch */
    double test_loss, test_error; /* non-finite: written as -1 */
    int ranks;
} gmf_trainio_run;

/* run.json at path, written atomically. */
int gmf_trainio_write_run(const char *path, const gmf_trainio_run *r);

/* Append one row to epochs.csv (the header first when the file is new). */
int gmf_trainio_epochs_row(const char *path, size_t epoch, double train_loss, double test_loss,
                           double test_error, double seconds, double samples_per_s);

/* Append one row to mc.csv, m,repeat,test_loss,test_error (the header first when the file is
 * new): one Monte Carlo reduction's evaluation. */
int gmf_trainio_mc_row(const char *path, size_t width, size_t repeat, double test_loss,
                       double test_error);

/* Keep the header and the rows of epochs <= last (a resumed run rewrites the later ones);
 * atomic.  A missing file is not an error. */
int gmf_trainio_epochs_truncate(const char *path, size_t last);

#ifdef __cplusplus
}
#endif

#endif
