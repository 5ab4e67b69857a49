/* nn_pool.c -- thread pool for the nn module (see nn_internal.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "gmflow/common.h"
#include "nn_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* Spin iterations before blocking (a pause is ~10-60 cycles: ~10-80 microseconds in all). */
#define SPIN_ITERS 4000

/* The barrier: one arrival counter per thread, each on its own cache line.  A thread arriving at
 * its g-th barrier stores g into its own counter and waits until every other counter has reached
 * g (a counter is at most one barrier ahead: the next barrier needs this thread too).  Why not
 * one shared counter: there every arrival is an atomic add on a line that the waiting threads
 * poll, and the last one takes the mutex to bump the generation -- three or four line transfers
 * and a lock per crossing on the path of the waiting thread; here each arrival is one plain store
 * to a line that only its owner writes and the waiter sees it after one transfer
 * (docs/PERFORMANCE.md, "Two threads for the GM trainer": 5 crossings per training step).
 * Blocking after SPIN_ITERS: a waiter registers in `sleepers` under the mutex before it
 * re-checks the counters; an arriving thread stores its counter, then wakes the sleepers if
 * there are any (both sequentially consistent: either the waiter sees the new counter or the
 * arriving thread sees the sleeper, and its broadcast, under the mutex, cannot come before the
 * waiter's cond_wait). */
typedef struct arrival {
    _Alignas(64) atomic_uint v;
} arrival;

typedef struct barrier {
    int n;
    arrival *arr;
    atomic_int sleepers; /* read by every arrival, written only around a sleep */
    pthread_mutex_t mu;
    pthread_cond_t cv;
} barrier;

struct gmf_nn_pool {
    int n;
    pthread_t *th;
    barrier bar;
    gmf_nn_job job;
    void *ctx;
    int quit;
};

int gmf_nn_test_delay_tid = -1;
unsigned gmf_nn_test_delay_us = 0;

void gmf_nn_test_delay(void) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000L + (t.tv_nsec - t0.tv_nsec) / 1000L <
           (long)gmf_nn_test_delay_us);
}

/* The calling thread's index in the pool whose job it runs (workers: their tid; the thread in
 * gmf_nn_pool_run: 0, saved and restored around the job). */
static _Thread_local int pool_tid;

/* Have all counters reached g?  (unsigned difference: the counters wrap) */
static int all_arrived(const barrier *b, unsigned g) {
    for (int u = 0; u < b->n; u++)
        if ((int)(atomic_load(&b->arr[u].v) - g) < 0) return 0;
    return 1;
}

/* The barrier in two halves (barrier_wait = arrive, then await): a thread may do work that no
 * other thread waits for between them (gmf_nn_pool_arrive). */
static unsigned barrier_arrive(barrier *b, int tid) {
    const unsigned g = atomic_load_explicit(&b->arr[tid].v, memory_order_relaxed) + 1u;
    atomic_store(&b->arr[tid].v, g);
    if (atomic_load(&b->sleepers) > 0) {
        pthread_mutex_lock(&b->mu);
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
    }
    return g;
}

static void barrier_await(barrier *b, unsigned g) {
    for (int i = 0; i < SPIN_ITERS; i++) {
        if (all_arrived(b, g)) return;
        CPU_RELAX();
    }
    pthread_mutex_lock(&b->mu);
    atomic_fetch_add(&b->sleepers, 1);
    while (!all_arrived(b, g))
        pthread_cond_wait(&b->cv, &b->mu);
    atomic_fetch_sub(&b->sleepers, 1);
    pthread_mutex_unlock(&b->mu);
}

static void barrier_wait(barrier *b, int tid) {
    barrier_await(b, barrier_arrive(b, tid));
}

typedef struct worker_arg {
    struct gmf_nn_pool *p;
    int tid;
} worker_arg;

static void *worker(void *arg) {
    worker_arg *w = arg;
    struct gmf_nn_pool *p = w->p;
    int tid = w->tid;
    free(w);
    pool_tid = tid;
    for (;;) {
        barrier_wait(&p->bar, tid); /* start of a job (or quit) */
        GMF_NN_PROF_MARK(tid, 11);
        if (p->quit) break;
        p->job(p->ctx, tid, p->n);
        barrier_wait(&p->bar, tid); /* end of the job */
        GMF_NN_PROF_MARK(tid, 9);
    }
    return NULL;
}

int gmf_nn_pool_new(struct gmf_nn_pool **out, int nthreads) {
    *out = NULL;
    if (nthreads < 1)
        return gmf_error(GMF_EINVAL, "thread pool: need >= 1 thread (got %d)", nthreads);
    struct gmf_nn_pool *p = gmf_calloc(1, sizeof *p, "thread pool");
    if (!p) return GMF_ENOMEM;
    p->n = nthreads;
    p->bar.n = nthreads;
    p->bar.arr = aligned_alloc(64, (size_t)nthreads * sizeof *p->bar.arr);
    if (!p->bar.arr) {
        free(p);
        return gmf_error(GMF_ENOMEM, "thread pool: out of memory");
    }
    for (int t = 0; t < nthreads; t++)
        atomic_init(&p->bar.arr[t].v, 0u);
    atomic_init(&p->bar.sleepers, 0);
    pthread_mutex_init(&p->bar.mu, NULL);
    pthread_cond_init(&p->bar.cv, NULL);
    p->th = gmf_calloc((size_t)nthreads, sizeof *p->th, "thread pool");
    if (!p->th) {
        free(p->bar.arr);
        free(p);
        return GMF_ENOMEM;
    }
    for (int t = 1; t < nthreads; t++) {
        worker_arg *w = malloc(sizeof *w);
        if (!w || (w->p = p, w->tid = t, pthread_create(&p->th[t], NULL, worker, w) != 0)) {
            free(w);
            p->n = p->bar.n = t; /* the threads started so far */
            gmf_nn_pool_free(p);
            return gmf_error(GMF_ENOMEM, "thread pool: could not start thread %d of %d", t,
                             nthreads);
        }
    }
    *out = p;
    return GMF_OK;
}

void gmf_nn_pool_free(struct gmf_nn_pool *p) {
    if (!p) return;
    if (p->n > 1) {
        p->quit = 1;
        barrier_wait(&p->bar, 0);
        for (int t = 1; t < p->n; t++)
            pthread_join(p->th[t], NULL);
    }
    pthread_mutex_destroy(&p->bar.mu);
    pthread_cond_destroy(&p->bar.cv);
    free(p->bar.arr);
    free(p->th);
    free(p);
}

int gmf_nn_pool_size(const struct gmf_nn_pool *p) {
    return p->n;
}

void gmf_nn_pool_run(struct gmf_nn_pool *p, gmf_nn_job job, void *ctx) {
    if (p->n == 1) {
        job(ctx, 0, 1);
        return;
    }
    p->job = job;
    p->ctx = ctx;
    const int saved = pool_tid; /* (a worker of another pool driving this one) */
    pool_tid = 0;
    GMF_NN_PROF_MARK(0, 10);
    barrier_wait(&p->bar, 0);
    GMF_NN_PROF_MARK(0, 11);
    job(ctx, 0, p->n);
    barrier_wait(&p->bar, 0);
    GMF_NN_PROF_MARK(0, 9);
    pool_tid = saved;
}

void gmf_nn_pool_barrier(struct gmf_nn_pool *p) {
    if (p->n > 1) barrier_wait(&p->bar, pool_tid);
}

unsigned gmf_nn_pool_arrive(struct gmf_nn_pool *p) {
    return p->n > 1 ? barrier_arrive(&p->bar, pool_tid) : 0u;
}

void gmf_nn_pool_await(struct gmf_nn_pool *p, unsigned g) {
    if (p->n > 1) barrier_await(&p->bar, g);
}

static atomic_int blas_threads_set = 0; /* 0: never set by us */

void gmf_nn_blas_threads(int n) {
    if (atomic_exchange(&blas_threads_set, n) != n) openblas_set_num_threads(n);
}

#ifdef GMF_NN_PROF
#include <stdio.h>
#include <time.h>
#define PROF_T 8
#define PROF_P 16
static unsigned long long prof_last[PROF_T], prof_acc[PROF_T][PROF_P], prof_cnt[PROF_T][PROF_P];
static __thread int prof_tid;
void gmf_nn_prof_mark(int t, int ph) {
    if (t < 0) t = prof_tid; /* inside a kernel: the thread of the last mark */
    prof_tid = t;
    if (t >= PROF_T) return;
    struct timespec ts; /* this thread's CPU time (immune to preemption), or -DGMF_NN_PROF_WALL */
#ifdef GMF_NN_PROF_WALL
    clock_gettime(CLOCK_MONOTONIC, &ts);
#else
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
#endif
    unsigned long long now =
        (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
    if (ph >= 0 && prof_last[t]) prof_acc[t][ph] += now - prof_last[t], prof_cnt[t][ph]++;
    prof_last[t] = now;
}
__attribute__((destructor)) static void prof_dump(void) {
    for (int t = 0; t < PROF_T; t++)
        for (int p = 0; p < PROF_P; p++)
            if (prof_cnt[t][p])
                fprintf(stderr, "prof t=%d ph=%d n=%llu ms=%.2f\n", t, p, prof_cnt[t][p],
                        prof_acc[t][p] / 1e6);
}
#endif
