/* train.c -- the SGD trainer (see train.h): epochs over seeded shuffles, per-group learning rates,
 * full-batch gradient descent, evaluation, checkpoints and snapshots. */
#include "gmflow/train.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gmflow/common.h"
#include "gmflow/io.h"
#include "gmflow/par.h"
#include "nn_internal.h"

#define STREAM_EPOCH 1000u

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

gmf_train_opts gmf_train_defaults(void) {
    gmf_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = 64;
    o.lr = 0.1;
    o.lr_sigma = 1.0;
    o.lr2_scale = 1.0;
    o.lr_lowrank = -1.0; /* follow lr */
    o.seed = 1;
    o.threads = 1;
    o.precision = 32;
    o.eval_batch = 500;
    o.diverge_growth = 1e3;
    o.diverge_patience = 2;
    o.lr_weights = -1.0;
    return o;
}

/* The logits' learning rate (learned weights): --lr-weights, or automatic (train.h). */
static double lr_weights_of(const gmf_nn_model *m, const gmf_train_opts *o) {
    if (o->lr_weights >= 0) return o->lr_weights;
    return o->weights_geometry == GMF_NN_WGEOM_FR ? o->lr / (double)m->K : o->lr;
}

double gmf_train_lr_lowrank(const gmf_train_opts *o) {
    return o->lr_lowrank >= 0 ? o->lr_lowrank : o->lr;
}

void gmf_train_group_lr(const gmf_nn_model *m, const gmf_train_opts *o, double *lr) {
    for (size_t g = 0; g < m->ngroups; g++) {
        lr[g] = m->group[g].sigma ? o->lr_sigma : o->lr;
        if (m->group[g].logits) lr[g] = lr_weights_of(m, o); /* learned mixture weights */
        if (m->kind == GMF_NN_GMLR && g == GMF_NN_GROUP_LOWRANK) lr[g] = gmf_train_lr_lowrank(o);
        if (m->group[g].layer == 2) lr[g] *= o->lr2_scale;
        if (o->fixed_beta && m->group[g].beta) lr[g] = 0.0;
    }
}

struct gmf_train {
    gmf_nn_model *m;
    gmf_train_opts o;
    double lr[GMF_NN_MAX_GROUPS];
    size_t Bmax;
    const gmf_nn_ops *ops; /* the precision's entry points, chosen once by gmf_train_new */
    void *ws;              /* the workspace of that precision (gmf_nn_ws_f or _d) */
    void *Xb;              /* Bmax x d batch (float or double) */
    uint8_t *yb;           /* Bmax labels */
    size_t *order;         /* shuffle, capacity ncap */
    size_t ncap;
    double rms0;      /* RMS of the parameters at gmf_train_new */
    double prev_loss; /* mean training loss of the previous epoch (+inf before the first) */
    double best_loss; /* lowest mean training loss of an epoch so far (+inf before the first) */
    size_t stuck;     /* consecutive epochs at or above chance level without decreasing */
};

static double params_rms(const gmf_nn_model *m) {
    double s = 0;
    for (size_t i = 0; i < m->nparams; i++)
        s += m->params[i] * m->params[i];
    return m->nparams ? sqrt(s / (double)m->nparams) : 0.0;
}

int gmf_train_new(gmf_train **out, gmf_nn_model *m, const gmf_train_opts *o) {
    *out = NULL;
    if (o->batch == 0 || o->eval_batch == 0)
        return gmf_error(GMF_EINVAL, "trainer: batch sizes must be >= 1");
    if (o->precision != 32 && o->precision != 64)
        return gmf_error(GMF_EINVAL, "trainer: precision must be 32 or 64 (got %d)", o->precision);
    if (!(o->lr >= 0) || !(o->lr_sigma >= 0) || !isfinite(o->lr) || !isfinite(o->lr_sigma) ||
        !(o->lr2_scale >= 0) || !isfinite(o->lr2_scale) || !isfinite(o->lr_weights) ||
        !isfinite(o->lr_lowrank))
        return gmf_error(GMF_EINVAL, "trainer: learning rates must be finite and >= 0");
    if ((unsigned)o->weights_geometry > GMF_NN_WGEOM_FR)
        return gmf_error(GMF_EINVAL, "trainer: unknown weights geometry %d",
                         (int)o->weights_geometry);
    if (o->threads < 1 || o->threads > 256)
        return gmf_error(GMF_EINVAL, "trainer: threads must be in 1..256 (got %d)", o->threads);
    gmf_train *t = gmf_calloc(1, sizeof *t, "trainer");
    if (!t) return GMF_ENOMEM;
    t->m = m;
    t->o = *o;
    gmf_train_group_lr(m, o, t->lr);
    t->Bmax = o->batch > o->eval_batch ? o->batch : o->eval_batch;
    t->ops = o->precision == 64 ? &gmf_nn_ops_d : &gmf_nn_ops_f;
    t->rms0 = params_rms(m);
    t->prev_loss = t->best_loss = INFINITY;
    int rc = t->ops->ws_new(&t->ws, m, t->Bmax, o->threads);
    if (rc) {
        free(t);
        return rc;
    }
    t->ops->set_weight_rule(t->ws, o->weights_geometry, o->per_mass);
    t->Xb = gmf_calloc(t->Bmax * m->d, t->ops->real_size, "batch");
    t->yb = gmf_calloc(t->Bmax, 1, "batch labels");
    if (!t->Xb || !t->yb) {
        gmf_train_free(t);
        return GMF_ENOMEM;
    }
    *out = t;
    return GMF_OK;
}

void gmf_train_free(gmf_train *t) {
    if (!t) return;
    t->ops->ws_free(t->ws);
    free(t->Xb), free(t->yb), free(t->order);
    free(t);
}

int gmf_train_check_data(const gmf_nn_model *m, const gmf_dataset *data, const char *what) {
    if (data->n == 0) return gmf_error(GMF_EINVAL, "%s: no samples", what);
    if (data->d != m->d)
        return gmf_error(GMF_EINVAL, "%s: samples have dimension %zu, the model expects %zu", what,
                         data->d, m->d);
    for (size_t i = 0; i < data->n; i++)
        if (data->label[i] > m->L)
            return gmf_error(GMF_EINVAL,
                             "%s: sample %zu has label %u, but the model has %zu logits (labels "
                             "0..%zu)",
                             what, i, data->label[i], m->L, m->L);
    return GMF_OK;
}

/* Copy rows idx[0..B) (or rows first..first+B when idx == NULL) into the batch buffers. */
static void gather(gmf_train *t, const gmf_dataset *ds, const size_t *idx, size_t first, size_t B) {
    t->ops->gather(t->Xb, t->yb, ds, idx, first, B);
}

/* m->params <- the workspace's trained copy. */
static void store(gmf_train *t) {
    t->ops->ws_store(t->ws);
}

static double step(gmf_train *t, const gmf_dataset *ds, const size_t *idx, size_t B) {
    return t->ops->sgd_step_ds(t->ws, ds, idx, B, t->lr);
}

/* The workspace's double gradient accumulator (m->nparams entries). */
static double *acc_of(gmf_train *t) {
    return t->ops->grad_acc(t->ws);
}

/* Zero the accumulator (a step that is not applied). */
static void clear_acc(gmf_train *t) {
    memset(acc_of(t), 0, t->m->nparams * sizeof(double));
}

/* Data-parallel SGD step (docs/SCALE.md), used when gmf_par_size() > 1: this rank's contiguous
 * block of the batch idx[0..B) gives the gradient of (1/B) sum_i loss_i over its rows (the
 * plain path, accumulated in double), the gradients and loss sums are reduced with gmf_par_sum
 * (rank order, bitwise the same on every rank), and every rank applies the same update.  Returns
 * the batch's mean loss (non-finite: nothing updated, on every rank) in *loss. */
static int step_par(gmf_train *t, const gmf_dataset *ds, const size_t *idx, size_t B,
                    double *loss) {
    size_t i0, cnt;
    gmf_par_block(B, gmf_par_rank(), gmf_par_size(), &i0, &cnt);
    double l = 0.0;
    if (cnt) {
        gather(t, ds, idx + i0, 0, cnt);
        l = t->ops->loss_grad(t->ws, t->Xb, t->yb, cnt, 1.0 / (double)B, 1);
    }
    int rc = gmf_par_sum(acc_of(t), t->m->nparams);
    if (!rc) rc = gmf_par_sum(&l, 1);
    if (rc || !isfinite(l)) {
        clear_acc(t);
        *loss = rc ? NAN : l;
        return rc;
    }
    t->ops->sgd_apply(t->ws, t->lr, 1);
    *loss = l / (double)B;
    return GMF_OK;
}

/* Divergence that stays finite, after an epoch with mean training loss `loss` (train.h). */
static int check_divergence(gmf_train *t, size_t epoch, double loss) {
    const gmf_train_opts *o = &t->o;
    const double rms = params_rms(t->m), ref = t->rms0 > 1.0 ? t->rms0 : 1.0;
    if (o->diverge_growth > 0 && !(rms <= o->diverge_growth * ref))
        return gmf_error(GMF_EDIVERGE,
                         "training diverged at epoch %zu: the parameters' RMS grew from %.3g to "
                         "%.3g (limit %g x max(initial, 1)); lower the learning rates",
                         epoch, t->rms0, rms, o->diverge_growth);
    int learning = 0;
    for (size_t g = 0; g < t->m->ngroups; g++)
        learning |= t->lr[g] > 0;
    /* stuck at chance level: pinned to ln(L + 1) and not moving (a dead network: every output 0,
     * every gradient 0), or back at or above it after having been below half of it */
    const double chance = log((double)(t->m->L + 1));
    const double tol = 1e-6 * chance;
    const int pinned = fabs(loss - chance) <= tol && fabs(loss - t->prev_loss) <= tol;
    const int collapsed = t->best_loss < 0.5 * chance && loss >= chance;
    t->stuck = pinned || collapsed ? t->stuck + 1 : 0;
    t->prev_loss = loss;
    if (loss < t->best_loss) t->best_loss = loss;
    if (learning && o->diverge_patience > 0 && t->stuck >= o->diverge_patience)
        return gmf_error(
            GMF_EDIVERGE,
            "training diverged at epoch %zu: the mean training loss %.6f has stayed %s "
            "the chance level ln(%zu) = %.6f for %zu epochs%s (the network predicts "
            "no better than uniform); lower the learning rates",
            epoch, loss, collapsed ? "at or above" : "at", t->m->L + 1, chance, t->stuck,
            collapsed ? " after having been below half of it" : " without moving");
    return GMF_OK;
}

static int epoch_run(gmf_train *t, const gmf_dataset *data, size_t epoch, double *mean_loss,
                     double *seconds, gmf_train_progress_fn progress, void *user);

int gmf_train_epoch(gmf_train *t, const gmf_dataset *data, size_t epoch, double *mean_loss,
                    double *seconds, gmf_train_progress_fn progress, void *user) {
    int rc = epoch_run(t, data, epoch, mean_loss, seconds, progress, user);
    return rc ? rc : check_divergence(t, epoch, *mean_loss);
}

/* One epoch (gmf_train_epoch without the divergence tests). */
static int epoch_run(gmf_train *t, const gmf_dataset *data, size_t epoch, double *mean_loss,
                     double *seconds, gmf_train_progress_fn progress, void *user) {
    const size_t n = data->n;
    int rc = gmf_train_check_data(t->m, data, "training data");
    if (rc) return rc;
    const double t0 = now_s();
    double total = 0.0;
    if (t->o.full_batch) {
        /* one gradient-descent step on the mean loss over all n samples, accumulated in double */
        const double dscale = 1.0 / (double)n;
        size_t r0, rn; /* this rank's block of the samples (all of them when serial) */
        gmf_par_block(n, gmf_par_rank(), gmf_par_size(), &r0, &rn);
        for (size_t first = r0; first < r0 + rn; first += t->o.eval_batch) {
            const size_t B = r0 + rn - first < t->o.eval_batch ? r0 + rn - first : t->o.eval_batch;
            gather(t, data, NULL, first, B);
            const double l = t->ops->loss_grad(t->ws, t->Xb, t->yb, B, dscale, 1);
            total += l;
            if (!isfinite(l)) break;
        }
        if (gmf_par_size() > 1) { /* the others' gradients and losses, in rank order */
            rc = gmf_par_sum(acc_of(t), t->m->nparams);
            if (!rc) rc = gmf_par_sum(&total, 1);
            if (rc) return rc;
        }
        if (!isfinite(total)) {
            clear_acc(t);
            return gmf_error(GMF_EDIVERGE,
                             "non-finite loss at epoch %zu, step 1 of 1 (full batch); parameters "
                             "not updated",
                             epoch);
        }
        t->ops->sgd_apply(t->ws, t->lr, 1);
        store(t);
        *mean_loss = total / (double)n;
        if (seconds) *seconds = now_s() - t0;
        if (progress) progress(user, epoch, 1, 1, *mean_loss, (double)n / (now_s() - t0));
        return GMF_OK;
    }
    if (t->ncap < n) {
        free(t->order);
        t->order = gmf_calloc(n, sizeof(size_t), "shuffle order");
        if (!t->order) return GMF_ENOMEM;
        t->ncap = n;
    }
    for (size_t i = 0; i < n; i++)
        t->order[i] = i;
    gmf_nn_rng rng;
    gmf_nn_rng_seed(&rng, t->o.seed, STREAM_EPOCH + epoch);
    gmf_nn_rng_shuffle(&rng, t->order, n);
    const size_t bs = t->o.batch, nsteps = (n + bs - 1) / bs, nfull = n / bs;
    /* serial: the full batches in chunks of STEP_CHUNK steps, one ops->sgd_steps_ds call each
     * (on more than one thread one pool job per chunk: nn_tmpl.h gm_steps_run); each step's
     * loss is then checked and reported as below, after its chunk */
    enum { STEP_CHUNK = 64 };
    double chunk[STEP_CHUNK];
    size_t c0 = 0, c1 = 0; /* steps [c0, c1) run, their mean losses in chunk[] */
    for (size_t s = 0; s < nsteps; s++) {
        const size_t first = s * bs, B = n - first < bs ? n - first : bs;
        double l;
        if (gmf_par_size() > 1) {
            rc = step_par(t, data, t->order + first, B, &l);
            if (rc) return rc;
        } else {
            if (s >= c1 && s + 1 < nfull) {
                const size_t k = nfull - s < STEP_CHUNK ? nfull - s : STEP_CHUNK;
                c0 = s;
                c1 = s + t->ops->sgd_steps_ds(t->ws, data, t->order + first, bs, k, t->lr, chunk);
            }
            l = s < c1 ? chunk[s - c0] : step(t, data, t->order + first, B);
        }
        if (!isfinite(l))
            return gmf_error(GMF_EDIVERGE,
                             "non-finite loss (%g) at epoch %zu, step %zu of %zu (samples "
                             "%zu..%zu of the shuffled epoch); parameters not updated",
                             l, epoch, s + 1, nsteps, first, first + B - 1);
        total += l * (double)B;
        if (progress)
            progress(user, epoch, s + 1, nsteps, total / (double)(first + B),
                     (double)(first + B) / (now_s() - t0));
    }
    store(t);
    *mean_loss = total / (double)n;
    if (seconds) *seconds = now_s() - t0;
    return GMF_OK;
}

int gmf_train_evaluate(gmf_train *t, const gmf_dataset *data, double *mean_loss, double *error) {
    int rc = gmf_train_check_data(t->m, data, "evaluation data");
    if (rc) return rc;
    const size_t n = data->n;
    double loss = 0.0;
    size_t wrong = 0;
    for (size_t first = 0; first < n; first += t->o.eval_batch) {
        const size_t B = n - first < t->o.eval_batch ? n - first : t->o.eval_batch;
        gather(t, data, NULL, first, B);
        loss += t->ops->evaluate(t->ws, t->Xb, t->yb, B, &wrong);
    }
    if (mean_loss) *mean_loss = loss / (double)n;
    if (error) *error = (double)wrong / (double)n;
    return GMF_OK;
}

int gmf_train_evaluate_model(gmf_nn_model *m, const gmf_train_opts *o, const gmf_dataset *data,
                             double *mean_loss, double *error) {
    gmf_train *t;
    int rc = gmf_train_new(&t, m, o);
    if (rc) return rc;
    rc = gmf_train_evaluate(t, data, mean_loss, error);
    gmf_train_free(t);
    return rc;
}

int gmf_train_mc_evaluate(const gmf_nn_model *gm, const gmf_train_opts *o, const gmf_dataset *data,
                          const size_t *widths, size_t nw, size_t repeats, gmf_train_mc_row *rows) {
    for (size_t i = 0; i < nw; i++)
        for (size_t r = 0; r < repeats; r++) {
            gmf_nn_model fc;
            gmf_train_mc_row *row = rows + i * repeats + r;
            *row = (gmf_train_mc_row){widths[i], r, NAN, NAN};
            int rc = gmf_nn_mc_draw(&fc, gm, widths[i], o->seed, r);
            if (!rc) {
                rc = gmf_train_evaluate_model(&fc, o, data, &row->test_loss, &row->test_error);
                gmf_nn_model_free(&fc);
            }
            if (rc) {
                char why[512];
                snprintf(why, sizeof why, "%s", gmf_errmsg()); /* gmf_error reuses its buffer */
                return gmf_error(rc, "Monte Carlo reduction m=%zu: %s", widths[i], why);
            }
        }
    return GMF_OK;
}

/* ---- checkpoints --------------------------------------------------------------------------- */

#define CK_MAGIC       "GMFLOWCK"
#define CK_VERSION     1u /* no run record */
#define CK_VERSION_RUN 2u /* parameters, then u32 record bytes | record */
#define CK_MAX_RUN     (1u << 16)
#define CK_HEADER      (8 + 4 + 4 + 16 + 8 * 5 + 8 + 8 * 3) /* bytes before the parameters */
#define CK_MAX_EPOCH   1000000u /* the largest --epochs; a larger epoch field is corrupt */

static uint64_t fnv1a(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static void put_u32(unsigned char **p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        *(*p)++ = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char **p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        *(*p)++ = (unsigned char)(v >> (8 * i));
}
static void put_f64(unsigned char **p, double x) {
    uint64_t v;
    memcpy(&v, &x, 8);
    put_u64(p, v);
}
static uint32_t get_u32(const unsigned char **p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)(*(*p)++) << (8 * i);
    return v;
}
static uint64_t get_u64(const unsigned char **p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)(*(*p)++) << (8 * i);
    return v;
}
static double get_f64(const unsigned char **p) {
    uint64_t v = get_u64(p);
    double x;
    memcpy(&x, &v, 8);
    return x;
}

/* The header's width field: the FC width, or gm-lowrank's rank (which gmf_nn_model_init takes in
 * its width argument). */
static size_t ck_width(const gmf_nn_model *m) {
    return m->kind == GMF_NN_GMLR ? m->rank : m->width;
}

int gmf_train_save_checkpoint(const char *path, const gmf_nn_model *m, uint64_t epoch,
                              uint64_t seed) {
    return gmf_train_save_checkpoint_run(path, m, epoch, seed, NULL);
}

int gmf_train_load_checkpoint(const char *path, gmf_nn_model *m, uint64_t *epoch, uint64_t *seed) {
    return gmf_train_load_checkpoint_run(path, m, epoch, seed, NULL);
}

int gmf_train_save_checkpoint_run(const char *path, const gmf_nn_model *m, uint64_t epoch,
                                  uint64_t seed, const char *run) {
    const size_t rlen = run ? strlen(run) : 0;
    if (rlen > CK_MAX_RUN)
        return gmf_error(GMF_EINVAL, "checkpoint %s: run record of %zu bytes is too long", path,
                         rlen);
    for (size_t e = 0; e < m->nparams; e++)
        if (!isfinite(m->params[e]))
            return gmf_error(GMF_EDIVERGE,
                             "checkpoint %s: parameter %zu is not finite; not saved (the previous "
                             "checkpoint, if any, is kept)",
                             path, e);
    const size_t size = CK_HEADER + 8 * m->nparams + (run ? 4 + rlen : 0) + 8;
    unsigned char *buf = gmf_calloc(size, 1, "checkpoint buffer"), *p = buf;
    if (!buf) return GMF_ENOMEM;
    memcpy(p, CK_MAGIC, 8), p += 8;
    put_u32(&p, run ? CK_VERSION_RUN : CK_VERSION);
    put_u32(&p, (uint32_t)CK_HEADER);
    char kind[16] = {0};
    snprintf(kind, sizeof kind, "%s", gmf_nn_kind_name(m->kind));
    memcpy(p, kind, 16), p += 16;
    put_u64(&p, m->d), put_u64(&p, m->L), put_u64(&p, m->K), put_u64(&p, ck_width(m));
    put_u64(&p, m->Lmid);
    put_f64(&p, m->fc_scale);
    put_u64(&p, m->nparams), put_u64(&p, epoch), put_u64(&p, seed);
    for (size_t e = 0; e < m->nparams; e++)
        put_f64(&p, m->params[e]);
    if (run) {
        put_u32(&p, (uint32_t)rlen);
        memcpy(p, run, rlen), p += rlen;
    }
    put_u64(&p, fnv1a(buf, size - 8));
    gmf_io_file f;
    int rc = gmf_io_open(&f, path);
    if (!rc) {
        if (fwrite(buf, 1, size, f.fp) != size) {
            const int err = errno;
            gmf_io_abort(&f);
            rc = gmf_error(GMF_EIO, "checkpoint %s: write error: %s", path,
                           strerror(err ? err : EIO));
        } else {
            rc = gmf_io_commit(&f);
        }
    }
    free(buf);
    return rc;
}

/* Read the whole file, but never more than max + 1 bytes (a checkpoint's size is bounded by the
 * model it must hold, so a longer file is an error and /dev/zero cannot exhaust memory). */
static int read_file(const char *path, size_t max, unsigned char **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return gmf_error(GMF_EIO, "checkpoint %s: cannot open: %s", path, strerror(errno));
    size_t cap = max + 1 < ((size_t)1 << 16) ? max + 1 : ((size_t)1 << 16), n = 0;
    unsigned char *b = malloc(cap);
    while (b) {
        size_t got = fread(b + n, 1, cap - n, fp);
        n += got;
        if (n < cap || cap == max + 1) break;
        size_t nc = cap > (max + 1) / 2 ? max + 1 : 2 * cap;
        unsigned char *nb = realloc(b, nc);
        if (!nb) free(b);
        b = nb, cap = nc;
    }
    int err = ferror(fp) ? (errno ? errno : EIO) : 0;
    fclose(fp);
    if (!b) return gmf_error(GMF_ENOMEM, "checkpoint %s: out of memory", path);
    if (err) {
        free(b);
        return gmf_error(GMF_EIO, "checkpoint %s: read error: %s", path, strerror(err));
    }
    *buf = b;
    *len = n;
    return GMF_OK;
}

/* The run record of a version 2 checkpoint whose parameters end at `at`: *run (malloc'd); its
 * length must make the file exactly len bytes. */
static int ck_run_record(const char *path, const unsigned char *buf, size_t len, size_t at,
                         char **run) {
    if (len < at + 4 + 8)
        return gmf_error(GMF_EFORMAT, "checkpoint %s: truncated (no run record)", path);
    const unsigned char *q = buf + at;
    const uint32_t rlen = get_u32(&q);
    if (rlen > CK_MAX_RUN || len != at + 4 + (size_t)rlen + 8)
        return gmf_error(GMF_EFORMAT,
                         "checkpoint %s: size %zu bytes does not match its run record of %u bytes "
                         "(truncated or corrupt)",
                         path, len, rlen);
    if (!run) return GMF_OK;
    if (!(*run = gmf_calloc((size_t)rlen + 1, 1, "run record"))) return GMF_ENOMEM;
    memcpy(*run, q, rlen);
    return GMF_OK;
}

/* Learned mixture weights, from a checkpoint header's parameter count: K logits per GM layer
 * after the fixed-weight parameters (the header has no field for them: old files still read). */
static gmf_nn_weights ck_weights(const gmf_nn_model *ck, uint64_t np) {
    uint64_t n0 = 0, nl = 1;
    switch (ck->kind) {
    case GMF_NN_GM:
        n0 = gmf_nn_gm_nparams(ck->d, ck->K, ck->L);
        break;
    case GMF_NN_GMFULL:
        n0 = gmf_nn_gmfull_nparams(ck->d, ck->K, ck->L);
        break;
    case GMF_NN_GMSTACK:
        n0 = gmf_nn_gm_nparams(ck->d, ck->K, ck->Lmid) + gmf_nn_gm_nparams(ck->Lmid, ck->K, ck->L);
        nl = 2;
        break;
    default:
        return GMF_NN_WEIGHTS_FIXED;
    }
    return ck->K && np > n0 && np - n0 == nl * ck->K ? GMF_NN_WEIGHTS_LEARNED
                                                     : GMF_NN_WEIGHTS_FIXED;
}

int gmf_train_load_checkpoint_run(const char *path, gmf_nn_model *m, uint64_t *epoch,
                                  uint64_t *seed, char **run) {
    if (run) *run = NULL;
    char *rec = NULL;
    unsigned char *buf;
    size_t len, max; /* max: the size of a version 1 checkpoint of m (no run record) */
    if (gmf_mul_size(m->nparams, 8, &max) || max > SIZE_MAX - CK_HEADER - 16 - 4 - CK_MAX_RUN)
        return gmf_error(GMF_EINVAL, "checkpoint %s: model too large", path);
    max += CK_HEADER + 8;
    int rc = read_file(path, max + 4 + CK_MAX_RUN, &buf, &len);
    if (rc) return rc;
    const unsigned char *p = buf;
    char want[160], got[160];
    gmf_nn_model_describe(m, want, sizeof want);
    if (len < CK_HEADER + 8 || memcmp(p, CK_MAGIC, 8)) {
        rc = gmf_error(GMF_EFORMAT, "checkpoint %s: not a gmflow checkpoint (%s)", path,
                       len < CK_HEADER + 8 ? "too short" : "bad magic");
        goto out;
    }
    p += 8;
    uint32_t version = get_u32(&p), hdr = get_u32(&p);
    if ((version != CK_VERSION && version != CK_VERSION_RUN) || hdr != CK_HEADER) {
        rc = gmf_error(GMF_EFORMAT, "checkpoint %s: unsupported version %u (header %u bytes)", path,
                       version, hdr);
        goto out;
    }
    char kind[17] = {0};
    memcpy(kind, p, 16), p += 16;
    gmf_nn_model ck = {0};
    if (gmf_nn_kind_parse(kind, &ck.kind)) {
        rc = gmf_error(GMF_EFORMAT, "checkpoint %s: unknown model kind '%s'", path, kind);
        goto out;
    }
    ck.d = get_u64(&p), ck.L = get_u64(&p), ck.K = get_u64(&p), ck.width = get_u64(&p);
    ck.Lmid = get_u64(&p);
    ck.fc_scale = get_f64(&p);
    if (ck.kind == GMF_NN_GMLR) ck.rank = ck.width, ck.width = 0;
    const uint64_t np = get_u64(&p), ep = get_u64(&p), sd = get_u64(&p);
    ck.weights = ck_weights(&ck, np);
    gmf_nn_model_describe(&ck, got, sizeof got);
    if (ck.kind != m->kind || ck.d != m->d || ck.L != m->L || ck.K != m->K ||
        ck.width != m->width || ck.Lmid != m->Lmid || ck.rank != m->rank ||
        ck.weights != m->weights || (m->kind == GMF_NN_FC && ck.fc_scale != m->fc_scale)) {
        rc = gmf_error(GMF_EFORMAT, "checkpoint %s holds model '%s', not the requested '%s'", path,
                       got, want);
        goto out;
    }
    if (np != m->nparams || (version == CK_VERSION && len != max) || len < max) {
        rc = gmf_error(GMF_EFORMAT,
                       "checkpoint %s: size %zu bytes does not match %llu parameters (expected "
                       "%zu bytes; truncated or corrupt)",
                       path, len, (unsigned long long)np, max);
        goto out;
    }
    if (version == CK_VERSION_RUN &&
        (rc = ck_run_record(path, buf, len, CK_HEADER + 8 * np, run ? &rec : NULL)))
        goto out;
    const unsigned char *q = buf + len - 8;
    if (get_u64(&q) != fnv1a(buf, len - 8)) {
        rc = gmf_error(GMF_EFORMAT, "checkpoint %s: checksum mismatch (corrupt file)", path);
        goto out;
    }
    if (ep > CK_MAX_EPOCH || !isfinite(ck.fc_scale)) {
        rc = gmf_error(GMF_EFORMAT, "checkpoint %s: %s out of range (%s; corrupt file?)", path,
                       ep > CK_MAX_EPOCH ? "epoch" : "fc_scale",
                       ep > CK_MAX_EPOCH ? "more than 1000000 epochs" : "not finite");
        goto out;
    }
    for (size_t e = 0; e < np; e++) {
        const double x = get_f64(&p);
        if (!isfinite(x)) {
            rc = gmf_error(GMF_EFORMAT, "checkpoint %s: parameter %zu is not finite", path, e);
            goto out;
        }
        m->params[e] = x;
    }
    if (epoch) *epoch = ep;
    if (seed) *seed = sd;
    if (run) *run = rec, rec = NULL;
    rc = GMF_OK;
out:
    free(rec);
    free(buf);
    return rc;
}

/* ---- snapshots ----------------------------------------------------------------------------- */

int gmf_train_write_snapshot(const char *dir, const gmf_nn_model *m, size_t epoch) {
    for (size_t g = 0; g < m->ngroups; g++) {
        const gmf_nn_group *gr = &m->group[g];
        size_t shape[3];
        const size_t nd = gmf_train_group_shape(m, g, shape);
        char path[4096];
        snprintf(path, sizeof path, "%s/epoch_%04zu_%s.npy", dir, epoch, gr->name);
        int rc = gmf_io_write_npy(path, m->params + gr->off, nd, shape);
        if (rc) return rc;
    }
    return GMF_OK;
}

/* ---- run records --------------------------------------------------------------------------- */

uint64_t gmf_train_data_checksum(const gmf_dataset *ds) {
    uint64_t h = 0xcbf29ce484222325ull;
    const uint64_t prime = 0x100000001b3ull;
    h = (h ^ (uint64_t)ds->n) * prime;
    h = (h ^ (uint64_t)ds->d) * prime;
    for (size_t i = 0; ds->x && i < ds->n * ds->d; i++) {
        uint32_t w;
        memcpy(&w, &ds->x[i], 4);
        h = (h ^ w) * prime;
    }
    for (size_t i = 0; !ds->x && i < ds->n; i++) { /* compact form: the same floats' bits */
        uint32_t w[256];
        for (unsigned v = 0; v < 256; v++) {
            const float f =
                gmf_dataset_u8_value((uint8_t)v, ds->scale[2 * i], ds->scale[2 * i + 1]);
            memcpy(&w[v], &f, 4);
        }
        const uint8_t *px = ds->px + i * ds->d;
        for (size_t j = 0; j < ds->d; j++)
            h = (h ^ w[px[j]]) * prime;
    }
    for (size_t i = 0; i < ds->n; i++)
        h = (h ^ ds->label[i]) * prime;
    return h;
}

/* Append "  \"key\": value" lines; *len tracks the text, *rc turns GMF_EINVAL on overflow. */
typedef struct rec_buf {
    char *buf;
    size_t size, len;
    int rc;
} rec_buf;

__attribute__((format(printf, 3, 4))) static void rec_put(rec_buf *r, const char *key,
                                                          const char *fmt, ...) {
    if (r->rc) return;
    char val[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(val, sizeof val, fmt, ap);
    va_end(ap);
    const int w = snprintf(r->buf + r->len, r->size - r->len, "%s  \"%s\": %s",
                           r->len > 2 ? ",\n" : "", key, val);
    if (w < 0 || (size_t)w >= r->size - r->len)
        r->rc = GMF_EINVAL;
    else
        r->len += (size_t)w;
}

/* The shortest of %.15g, %.16g, %.17g that reads back as x (equal values, equal text). */
static const char *num(char *buf, size_t size, double x) {
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) break;
    }
    return buf;
}

int gmf_train_run_record(char *buf, size_t size, const gmf_nn_spec *spec, const gmf_nn_model *m,
                         const gmf_train_opts *o, const char *dataset, const gmf_dataset *train) {
    if (size < 4) return gmf_error(GMF_EINVAL, "run record: buffer too small");
    rec_buf r = {buf, size, 0, 0};
    snprintf(buf, size, "{\n");
    r.len = 2;
    char desc[160], nb[40];
    gmf_nn_model_describe(m, desc, sizeof desc);
    rec_put(&r, "model", "\"%s\"", desc);
    rec_put(&r, "kind", "\"%s\"", gmf_nn_kind_name(spec->kind));
    rec_put(&r, "K", "%zu", spec->K);
    rec_put(&r, "mid", "%zu", spec->mid);
    rec_put(&r, "width", "%zu", gmf_nn_spec_width(spec));
    rec_put(&r, "fc_init", "\"%s\"", gmf_nn_fc_init_name(spec->fc_init));
    rec_put(&r, "fc_scale", "\"%s\"", gmf_nn_fc_scale_name(spec->fc_scale));
    rec_put(&r, "gamma", "%s", num(nb, sizeof nb, spec->gamma));
    rec_put(&r, "dataset", "\"%s\"", dataset ? dataset : "");
    rec_put(&r, "train_n", "%zu", train ? train->n : 0);
    rec_put(&r, "train_d", "%zu", train ? train->d : 0);
    rec_put(&r, "train_checksum", "\"%016llx\"",
            train ? (unsigned long long)gmf_train_data_checksum(train) : 0ull);
    rec_put(&r, "batch", "%zu", o->batch);
    rec_put(&r, "lr", "%s", num(nb, sizeof nb, o->lr));
    rec_put(&r, "lr_sigma", "%s", num(nb, sizeof nb, o->lr_sigma));
    rec_put(&r, "lr2_scale", "%s", num(nb, sizeof nb, o->lr2_scale));
    rec_put(&r, "fixed_beta", "%s", o->fixed_beta ? "true" : "false");
    rec_put(&r, "full_batch", "%s", o->full_batch ? "true" : "false");
    rec_put(&r, "seed", "%llu", (unsigned long long)o->seed);
    rec_put(&r, "threads", "%d", o->threads);
    rec_put(&r, "precision", "%d", o->precision);
    if (m->weights == GMF_NN_WEIGHTS_LEARNED) { /* only then: fixed-weight records unchanged */
        rec_put(&r, "weights", "\"%s\"", gmf_nn_weights_name(m->weights));
        rec_put(&r, "weights_geometry", "\"%s\"", gmf_nn_wgeom_name(o->weights_geometry));
        rec_put(&r, "lr_weights", "%s", num(nb, sizeof nb, lr_weights_of(m, o)));
        rec_put(&r, "transport_lr", "\"%s\"", o->per_mass ? "per-mass" : "plain");
    }
    if (spec->kind == GMF_NN_GMLR) { /* only for this kind: older records stay comparable */
        rec_put(&r, "rank", "%zu", spec->rank);
        rec_put(&r, "lowrank_init", "%s", num(nb, sizeof nb, spec->lowrank_init));
        rec_put(&r, "lr_lowrank", "%s", num(nb, sizeof nb, gmf_train_lr_lowrank(o)));
    }
    if (!r.rc && r.size - r.len > 3) {
        memcpy(buf + r.len, "\n}\n", 4);
        return GMF_OK;
    }
    return gmf_error(GMF_EINVAL, "run record: buffer of %zu bytes too small", size);
}

/* The value of "key" in a record (one "key": value per line): its start and length, or NULL. */
static const char *rec_find(const char *rec, const char *key, size_t *vlen) {
    const size_t kl = strlen(key);
    for (const char *p = rec; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        const char *q = p;
        while (*q == ' ')
            q++;
        if (*q != '"' || strncmp(q + 1, key, kl) || q[1 + kl] != '"' || q[2 + kl] != ':') continue;
        q += 3 + kl;
        while (*q == ' ')
            q++;
        size_t n = strcspn(q, "\n");
        if (n && q[n - 1] == ',') n--;
        *vlen = n;
        return q;
    }
    return NULL;
}

/* Each key of `rec` in order: calls fn(key, user). */
static void rec_keys(const char *rec, void (*fn)(const char *key, void *user), void *user) {
    for (const char *p = rec; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        const char *q = p;
        while (*q == ' ')
            q++;
        if (*q != '"') continue;
        const char *e = strchr(q + 1, '"');
        if (!e || e[1] != ':' || (size_t)(e - q - 1) >= 64) continue;
        char key[64];
        memcpy(key, q + 1, (size_t)(e - q - 1));
        key[e - q - 1] = '\0';
        fn(key, user);
    }
}

typedef struct diff_ctx {
    char *out;
    size_t size, len, count;
    const char *a, *b;
    const char *const *ignore;
    int from_b; /* second pass: only keys absent from a */
} diff_ctx;

static void diff_key(const char *key, void *user) {
    diff_ctx *c = user;
    for (const char *const *ig = c->ignore; ig && *ig; ig++)
        if (!strcmp(*ig, key)) return;
    size_t la = 0, lb = 0;
    const char *va = rec_find(c->a, key, &la), *vb = rec_find(c->b, key, &lb);
    if (c->from_b && va) return;
    if (va && vb && la == lb && !memcmp(va, vb, la)) return;
    c->count++;
    if (c->len >= c->size) return;
    const int w =
        snprintf(c->out + c->len, c->size - c->len, "%s%s: %.*s -> %.*s", c->len ? "\n" : "", key,
                 va ? (int)la : 8, va ? va : "(absent)", vb ? (int)lb : 8, vb ? vb : "(absent)");
    if (w > 0) c->len += (size_t)w < c->size - c->len ? (size_t)w : c->size - c->len;
}

size_t gmf_train_run_diff(char *diff, size_t size, const char *a, const char *b,
                          const char *const *ignore) {
    diff_ctx c = {diff, size, 0, 0, a, b, ignore, 0};
    if (size) diff[0] = '\0';
    rec_keys(a, diff_key, &c);
    c.from_b = 1;
    rec_keys(b, diff_key, &c);
    return c.count;
}

size_t gmf_train_group_shape(const gmf_nn_model *m, size_t g, size_t shape[3]) {
    const gmf_nn_group *gr = &m->group[g];
    /* layer sizes of this group: stack layer 2 has input Lmid; layer 1 output Lmid */
    const int second = gr->layer == 2;
    const size_t din = second ? m->Lmid : m->d;
    const size_t lout = m->kind == GMF_NN_GMSTACK && !second ? m->Lmid : m->L;
    const size_t id = g % GMF_NN_GM_NGROUPS; /* the group within its layer */
    if (gr->logits) {                        /* a (K,): mixture-weight logits */
        shape[0] = m->K;
        return 1;
    }
    if (m->kind == GMF_NN_GMLR && g == GMF_NN_GROUP_LOWRANK) {
        shape[0] = m->K, shape[1] = m->rank, shape[2] = m->d; /* V: row q = column q of V_k */
        return 3;
    }
    if (m->kind == GMF_NN_FC) {
        shape[0] = m->width, shape[1] = id == GMF_NN_GROUP_BETA ? m->d : m->L;
        return 2;
    }
    if (id == GMF_NN_GROUP_U) {
        shape[0] = m->K, shape[1] = lout, shape[2] = din;
        return 3;
    }
    if (id == GMF_NN_GROUP_V) {
        shape[0] = m->K, shape[1] = lout;
        return 2;
    }
    if (id == GMF_NN_GROUP_SIGMA && m->kind == GMF_NN_GMFULL) {
        shape[0] = m->K, shape[1] = din, shape[2] = din; /* C */
        return 3;
    }
    shape[0] = m->K, shape[1] = din; /* mu, sigma */
    return 2;
}

/* The model a checkpoint holds, from its header alone (the full validation -- size, checksum,
 * finiteness -- is gmf_train_load_checkpoint's).  Every shape is at most the parameter count,
 * and the parameter count must fit the file, so a corrupt header cannot ask for a huge model. */
int gmf_train_checkpoint_model(const char *path, gmf_nn_model *m) {
    memset(m, 0, sizeof *m);
    FILE *fp = fopen(path, "rb");
    if (!fp) return gmf_error(GMF_EIO, "checkpoint %s: cannot open: %s", path, strerror(errno));
    unsigned char hdr[CK_HEADER];
    const size_t got = fread(hdr, 1, sizeof hdr, fp);
    long len = fseek(fp, 0, SEEK_END) == 0 ? ftell(fp) : -1;
    const int err = ferror(fp) || len < 0 ? (errno ? errno : EIO) : 0;
    fclose(fp);
    if (err) return gmf_error(GMF_EIO, "checkpoint %s: read error: %s", path, strerror(err));
    if (got < sizeof hdr || memcmp(hdr, CK_MAGIC, 8))
        return gmf_error(GMF_EFORMAT, "checkpoint %s: not a gmflow checkpoint (%s)", path,
                         got < sizeof hdr ? "too short" : "bad magic");
    const unsigned char *p = hdr + 8;
    const uint32_t version = get_u32(&p), hlen = get_u32(&p);
    if ((version != CK_VERSION && version != CK_VERSION_RUN) || hlen != CK_HEADER)
        return gmf_error(GMF_EFORMAT, "checkpoint %s: unsupported version %u (header %u bytes)",
                         path, version, hlen);
    char kind_name[17] = {0};
    memcpy(kind_name, p, 16), p += 16;
    gmf_nn_kind kind;
    if (gmf_nn_kind_parse(kind_name, &kind))
        return gmf_error(GMF_EFORMAT, "checkpoint %s: unknown model kind '%s'", path, kind_name);
    uint64_t dim[5];
    for (int i = 0; i < 5; i++)
        dim[i] = get_u64(&p);
    const double fc_scale = get_f64(&p);
    const uint64_t np = get_u64(&p);
    const uint64_t room = (uint64_t)len < CK_HEADER + 8 ? 0 : ((uint64_t)len - CK_HEADER - 8) / 8;
    int bad = np > room;
    for (int i = 0; i < 5; i++)
        bad |= dim[i] > np;
    if (bad)
        return gmf_error(GMF_EFORMAT,
                         "checkpoint %s: header of %llu parameters and shapes d=%llu L=%llu "
                         "K=%llu width=%llu mid=%llu does not fit the %ld-byte file (corrupt)",
                         path, (unsigned long long)np, (unsigned long long)dim[0],
                         (unsigned long long)dim[1], (unsigned long long)dim[2],
                         (unsigned long long)dim[3], (unsigned long long)dim[4], len);
    int rc = gmf_nn_model_init(m, kind, (size_t)dim[0], (size_t)dim[1], (size_t)dim[2],
                               (size_t)dim[3], (size_t)dim[4]);
    if (rc) {
        char why[512];
        snprintf(why, sizeof why, "%s", gmf_errmsg());
        gmf_nn_model_free(m);
        return gmf_error(GMF_EFORMAT, "checkpoint %s: %s", path, why);
    }
    if (kind == GMF_NN_FC) m->fc_scale = fc_scale;
    if (ck_weights(m, np) == GMF_NN_WEIGHTS_LEARNED &&
        (rc = gmf_nn_model_set_weights(m, GMF_NN_WEIGHTS_LEARNED))) {
        gmf_nn_model_free(m);
        return rc;
    }
    return GMF_OK;
}
