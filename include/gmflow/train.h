/* gmflow/train.h -- the SGD trainer of the discrete mode: epochs, shuffles, per-group learning
 * rates, full-batch gradient descent, evaluation, checkpoints and parameter snapshots (prefix
 * gmf_train).
 *
 * Reproducibility: a run is a pure function of (model, options, data, seed, thread count).  The
 * initialization draws from stream 0 of gmf_nn_rng(seed), epoch e's shuffle from stream 1000 + e
 * (so resuming at an epoch boundary replays exactly), and every reduction has a fixed order: the
 * GEMMs run with a fixed OpenBLAS thread count (1 inside the GM thread pool), the GM layer sums
 * its components in index order, the batch loss is summed in sample order.  Same seed and same
 * --threads give bitwise identical parameters; a different thread count may change the last bits.
 *
 * Precision: 32 (default) runs the float instantiation of nn.h (float32 GEMMs, double per-sample
 * scalars, double master parameters); 64 runs the double one.
 */
#ifndef GMFLOW_TRAIN_H
#define GMFLOW_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "gmflow/dataset.h"
#include "gmflow/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gmf_train_opts {
    size_t batch;      /* SGD batch size (64); the last batch of an epoch may be smaller */
    double lr;         /* learning rate of every group but sigma / C (0.1) */
    double lr_sigma;   /* learning rate of sigma (diagonal) and C (full covariance) (1.0) */
    int fixed_beta;    /* 1: learning rate 0 for the beta groups (mu, sigma, C; FC beta) */
    double lr2_scale;  /* gm-stack: the second layer's learning rates are lr and lr_sigma times
                        * this (1.0): its input has unit norm, the first layer's norm sqrt(d-1) */
    int full_batch;    /* 1: one gradient-descent step per epoch on the whole training set */
    double lr_lowrank; /* gm-lowrank: learning rate of V; < 0 (default -1): lr's */
    uint64_t seed;     /* (1) */
    int threads;       /* (1) */
    int precision;     /* 32 or 64 (32) */
    size_t eval_batch; /* rows per forward pass in evaluation and full-batch mode (500) */
    /* Divergence that stays finite (gmf_train_epoch returns GMF_EDIVERGE after the epoch):   */
    double diverge_growth;   /* the RMS of the parameters exceeds this many times max(its  */
                             /* value at gmf_train_new, 1) (1e3; 0: off)                    */
    size_t diverge_patience; /* the epoch's mean training loss is stuck at the chance      */
                             /* level ln(L + 1) (within 1e-6 relative, and within that of  */
                             /* the epoch before), or at or above it after an epoch below  */
                             /* half of it, this many epochs in a row (2; 0: off; off when */
                             /* every group's learning rate is 0)                          */
    /* Learned mixture weights (a model with gmf_nn_model_set_weights; ignored otherwise):    */
    double lr_weights;             /* the logits' learning rate; < 0: automatic (-1): lr for  */
                                   /* euclid, lr / K for fr (both the WFR flow's alpha = 1 at */
                                   /* equal weights, docs/TRAINING.md)                        */
    gmf_nn_wgeom weights_geometry; /* the logits' step: euclid (default) or fr                */
    int per_mass;                  /* 1: component k's mu, sigma / C, U, v learn at rate     */
                                   /* lr / (K w_k) (per-unit-mass transport, as WFR) (0)     */
} gmf_train_opts;

/* The paper's settings: batch 64, lr 0.1, lr-sigma 1, float32, seed 1, one thread. */
gmf_train_opts gmf_train_defaults(void);

/* The learning rate of gm-lowrank's V group under o (lr_lowrank, or lr when negative: at
 * lr_sigma = 1 V diverges, docs/TRAINING.md). */
double gmf_train_lr_lowrank(const gmf_train_opts *o);

/* Per-group learning rates for m under o (lr[g] for g < m->ngroups). */
void gmf_train_group_lr(const gmf_nn_model *m, const gmf_train_opts *o, double *lr);

typedef struct gmf_train gmf_train; /* workspace, buffers, shuffle order */

/* Progress callback, called once per step with the running mean loss of the epoch so far and
 * the throughput of the epoch so far.  Where the trainer runs several steps as one pool job (the
 * GM layer on more than one thread, docs/PERFORMANCE.md "Two threads"), the calls for a chunk of
 * up to 64 steps come together after the chunk, so the throughput of the steps inside it reads
 * low. */
typedef void (*gmf_train_progress_fn)(void *user, size_t epoch, size_t step, size_t nsteps,
                                      double mean_loss, double samples_per_s);

int gmf_train_new(gmf_train **out, gmf_nn_model *m, const gmf_train_opts *o);
void gmf_train_free(gmf_train *t);

/* One epoch (1-based number `epoch`, which seeds its shuffle) over `data`.  *mean_loss is the
 * mean training loss over the epoch's samples (SGD: as seen by each step before its update;
 * full batch: at the parameters before the step).  At the end m->params holds the trained
 * parameters.  A non-finite loss stops the epoch before that step's update, with GMF_EDIVERGE
 * and a message naming the epoch and step; m->params then still holds the parameters of the
 * end of the previous epoch.  A divergence that stays finite (opts diverge_growth,
 * diverge_patience) is detected at the end of the epoch: GMF_EDIVERGE with a message saying
 * which test fired; m->params then holds that epoch's (diverged) parameters, which a caller
 * should not checkpoint.  *seconds (may be NULL) is the wall time of the epoch. */
int gmf_train_epoch(gmf_train *t, const gmf_dataset *data, size_t epoch, double *mean_loss,
                    double *seconds, gmf_train_progress_fn progress, void *user);

/* Mean loss and misclassification rate of the model on `data` (in t's precision). */
int gmf_train_evaluate(gmf_train *t, const gmf_dataset *data, double *mean_loss, double *error);

/* Evaluate any model (e.g. a Monte Carlo reduction) with a temporary workspace. */
int gmf_train_evaluate_model(gmf_nn_model *m, const gmf_train_opts *o, const gmf_dataset *data,
                             double *mean_loss, double *error);

/* One evaluated Monte Carlo reduction (gmf_train_mc_evaluate). */
typedef struct gmf_train_mc_row {
    size_t width, repeat;         /* the reduction's width m and its repeat index */
    double test_loss, test_error; /* on the data set given */
} gmf_train_mc_row;

/* Evaluate the Monte Carlo reductions of gm (gmf_nn_mc_draw from o->seed): width widths[i],
 * repeats 0 .. repeats - 1, on data, into rows[i * repeats + r] (nw * repeats rows).  Errors
 * name the width. */
int gmf_train_mc_evaluate(const gmf_nn_model *gm, const gmf_train_opts *o, const gmf_dataset *data,
                          const size_t *widths, size_t nw, size_t repeats, gmf_train_mc_row *rows);

/* Make a dataset usable for a model with L logits: labels must be <= L and d must match. */
int gmf_train_check_data(const gmf_nn_model *m, const gmf_dataset *data, const char *what);

/* ---- checkpoints --------------------------------------------------------------------------
 * Binary, little-endian (docs/TRAINING.md):
 *   "GMFLOWCK" | u32 version = 1 | u32 header bytes | char kind[16] | u64 d, L, K, width, Lmid |
 *   f64 fc_scale | u64 nparams | u64 epoch | u64 seed | f64 params[nparams] | u64 FNV-1a of all
 *   preceding bytes.
 * Written atomically (gmf_io_open / gmf_io_commit: a temporary renamed into place), so a crash or
 * a failure never leaves a partial checkpoint; a non-finite parameter refuses to be saved.
 * Loading checks magic, version, size, checksum, finiteness, and that the checkpoint's model
 * (kind and shapes, and fc_scale) is the one `m` was initialized as; otherwise GMF_EFORMAT with
 * a message naming the file and both models. */
int gmf_train_save_checkpoint(const char *path, const gmf_nn_model *m, uint64_t epoch,
                              uint64_t seed);
int gmf_train_load_checkpoint(const char *path, gmf_nn_model *m, uint64_t *epoch, uint64_t *seed);
/* Initialize m (allocated, zero parameters) as the model the checkpoint at `path` holds, reading
 * its header only (version 1 or 2); then gmf_train_load_checkpoint(_run)(path, m, ...) validates
 * the whole file and fills the parameters.  For readers that do not know the model in advance (the
 * Python package's gmflow.load_checkpoint).  The caller frees m with gmf_nn_model_free. */
int gmf_train_checkpoint_model(const char *path, gmf_nn_model *m);

/* ---- run records -----------------------------------------------------------------------------
 * The hyperparameters that define a training run, as a flat JSON object with one "key": value
 * per line (docs/FORMATS.md): model (gmf_nn_model_describe) and its spec (kind, K, mid, width,
 * fc_init, fc_scale, gamma), dataset (the caller's name for it), train_n, train_d and
 * train_checksum (gmf_train_data_checksum, 16 hex digits), batch, lr, lr_sigma, lr2_scale,
 * fixed_beta, full_batch, seed, threads, precision; with learned mixture weights only, also
 * weights, weights_geometry, lr_weights (in effect), transport_lr.  Numbers are the shortest of
 * %.15g to
 * %.17g that reads back exactly, so equal values give equal text.  Returns GMF_EINVAL if buf is too
 * small (4096 bytes are enough). */
int gmf_train_run_record(char *buf, size_t size, const gmf_nn_spec *spec, const gmf_nn_model *m,
                         const gmf_train_opts *o, const char *dataset, const gmf_dataset *train);
/* FNV-1a (64-bit) over n, d, the float samples (as 32-bit words) and the labels. */
uint64_t gmf_train_data_checksum(const gmf_dataset *ds);
/* Compare two records key by key, skipping the keys in `ignore` (NULL-terminated; may be NULL).
 * Returns the number of differences and writes "key: A -> B" lines (truncated to size) to diff;
 * a key present in one record only counts as a difference ("(absent)"). */
size_t gmf_train_run_diff(char *diff, size_t size, const char *a, const char *b,
                          const char *const *ignore);

/* Checkpoints with a run record (version 2: the v1 layout with "u32 record bytes | record"
 * between the parameters and the checksum).  Loading returns the record in *run (malloc'd, free
 * it) or NULL for a version 1 checkpoint, which has none. */
int gmf_train_save_checkpoint_run(const char *path, const gmf_nn_model *m, uint64_t epoch,
                                  uint64_t seed, const char *run);
int gmf_train_load_checkpoint_run(const char *path, gmf_nn_model *m, uint64_t *epoch,
                                  uint64_t *seed, char **run);

/* Parameter snapshot: one .npy (float64) per group in `dir`, named
 * "epoch_%04zu_<group>.npy", shaped as the group (mu: K x d, sigma: K x d, C: K x d x d,
 * U: K x L x d, v: K x L; FC beta: m x d, omega: m x L; stack: mu1 ... v2; learned weights:
 * a: K, stack a1, a2). */
int gmf_train_write_snapshot(const char *dir, const gmf_nn_model *m, size_t epoch);

/* The shape of parameter group g of m, as its snapshot .npy has it (see above); returns the
 * number of dimensions (1 for the logits a, else 2 or 3) and fills shape[0..ndim). */
size_t gmf_train_group_shape(const gmf_nn_model *m, size_t g, size_t shape[3]);

#ifdef __cplusplus
}
#endif
#endif
