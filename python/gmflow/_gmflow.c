/* _gmflow.c -- the CPython extension gmflow._gmflow over libgmflow: module, errors, array
 * conversion, and the flows (flow, rhs).  The closed forms of one component, the toys, initial
 * mixtures, checkpoints and IDX files are in _gmflow_extra.c.
 *
 * Threads and signals: the integration runs with the GIL released (Py_BEGIN_ALLOW_THREADS), on
 * private copies of every input, so independent calls run in parallel.  The solver's callbacks
 * cannot run Python code without the GIL; every GMFPY_POLL_S seconds of wall time the right-hand
 * side adaptor (and the observer) takes the GIL (PyGILState_Ensure) just long enough for
 * PyErr_CheckSignals, which runs Python's SIGINT handler.  If that raises (KeyboardInterrupt),
 * the adaptor keeps the exception and returns a fatal code, the solver stops, and the exception
 * is re-raised once the GIL is back: Ctrl-C interrupts a solve within GMFPY_POLL_S plus one
 * right-hand side evaluation.
 */
#define GMFPY_IMPORT_ARRAY
#include "_gmflow.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "gmflow/common.h"
#include "gmflow/flow.h"
#include "gmflow/ode.h"
#include "gmflow/sqloss.h"

#define GMFPY_POLL_S 0.2 /* seconds between signal checks during a solve */

PyObject *gmfpy_SolverError = NULL;

/* ------------------------------------------------------------------------------------------ */
/* errors and conversions                                                                      */

PyObject *gmfpy_raise(int code, const char *what) {
    char msg[1400];
    if (what)
        snprintf(msg, sizeof msg, "%s: %s", what, gmf_errmsg());
    else
        snprintf(msg, sizeof msg, "%s", gmf_errmsg());
    PyObject *type = PyExc_ValueError;
    if (code == GMF_ENOMEM)
        type = PyExc_MemoryError;
    else if (code == GMF_EIO)
        type = PyExc_OSError;
    else if (code == GMF_ESOLVER || code == GMF_EDIVERGE)
        type = gmfpy_SolverError;
    PyErr_SetString(type, msg);
    return NULL;
}

static void shape_str(char *buf, size_t len, int ndim, const npy_intp *shape) {
    size_t at = (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < ndim && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%ld", i ? ", " : "", (long)shape[i]);
    if (at < len) snprintf(buf + at, len - at, ndim == 1 ? ",)" : ")");
}

/* "could not convert ..." -> TypeError naming the argument, with numpy's reason. */
static PyArrayObject *convert_failed(const char *name) {
    PyObject *et, *ev, *etb;
    PyErr_Fetch(&et, &ev, &etb);
    PyObject *why = ev ? PyObject_Str(ev) : NULL;
    PyErr_Format(PyExc_TypeError, "%s: cannot be converted to a float64 array: %S", name,
                 why ? why : Py_None);
    Py_XDECREF(why);
    Py_XDECREF(et), Py_XDECREF(ev), Py_XDECREF(etb);
    return NULL;
}

PyArrayObject *gmfpy_f64(PyObject *obj, const char *name, int ndim, const npy_intp *want,
                         const char *form, int check_finite) {
    if (obj == Py_None) {
        PyErr_Format(PyExc_TypeError, "%s: expected a float array of shape %s, got None", name,
                     form);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(obj, NPY_DOUBLE, 0, 0, NPY_ARRAY_IN_ARRAY);
    if (!a) return convert_failed(name);
    int ok = PyArray_NDIM(a) == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = want[i] < 0 || PyArray_DIM(a, i) == want[i];
    if (!ok) {
        char got[160], exp[160];
        shape_str(got, sizeof got, PyArray_NDIM(a), PyArray_DIMS(a));
        npy_intp w[8];
        for (int i = 0; i < ndim && i < 8; i++)
            w[i] = want[i] < 0 ? PyArray_NDIM(a) == ndim ? PyArray_DIM(a, i) : -1 : want[i];
        shape_str(exp, sizeof exp, ndim, w);
        PyErr_Format(PyExc_ValueError, "%s: expected shape %s = %s, got %s", name, form, exp, got);
        Py_DECREF(a);
        return NULL;
    }
    if (check_finite && !gmf_all_finite(PyArray_DATA(a), (size_t)PyArray_SIZE(a))) {
        PyErr_Format(PyExc_ValueError, "%s: contains non-finite values (NaN or infinity)", name);
        Py_DECREF(a);
        return NULL;
    }
    return a;
}

PyObject *gmfpy_errorf(PyObject *type, const char *fmt, ...) {
    char msg[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    PyErr_SetString(type, msg);
    return NULL;
}

PyArrayObject *gmfpy_zeros(int ndim, const npy_intp *shape) {
    return (PyArrayObject *)PyArray_ZEROS(ndim, (npy_intp *)shape, NPY_DOUBLE, 0);
}

int gmfpy_size(PyObject *obj, const char *name, unsigned long long lo, unsigned long long hi,
               size_t *out) {
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s: expected an integer, got %s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (overflow || v < 0 || (unsigned long long)v < lo || (unsigned long long)v > hi) {
        PyErr_Format(PyExc_ValueError, "%s: must be an integer in [%llu, %llu], got %S", name, lo,
                     hi, obj);
        return -1;
    }
    *out = (size_t)v;
    return 0;
}

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------------------------------ */
/* FlowResult                                                                                  */

typedef struct {
    PyObject_HEAD PyObject *t, *mu, *Sigma, *C, *loss, *stats, *form, *method;
} FlowResult;

static void result_dealloc(FlowResult *r) {
    Py_XDECREF(r->t), Py_XDECREF(r->mu), Py_XDECREF(r->Sigma), Py_XDECREF(r->C);
    Py_XDECREF(r->loss), Py_XDECREF(r->stats), Py_XDECREF(r->form), Py_XDECREF(r->method);
    PyObject_Free(r);
}

static PyObject *result_repr(FlowResult *r) {
    PyArrayObject *mu = (PyArrayObject *)r->mu, *loss = (PyArrayObject *)r->loss;
    const npy_intp T = PyArray_DIM(mu, 0);
    const double *L = PyArray_DATA(loss), *t = PyArray_DATA((PyArrayObject *)r->t);
    char buf[256];
    if (T > 0)
        snprintf(buf, sizeof buf, ", loss %.6g at t = %g -> %.6g at t = %g", L[0], t[0], L[T - 1],
                 t[T - 1]);
    else
        buf[0] = 0;
    return PyUnicode_FromFormat("FlowResult(form=%R, method=%R, T=%zd, K=%zd, D=%zd%s)", r->form,
                                r->method, (Py_ssize_t)T, (Py_ssize_t)PyArray_DIM(mu, 1),
                                (Py_ssize_t)PyArray_DIM(mu, 2), buf);
}

static PyMemberDef result_members[] = {
    {"t", T_OBJECT, offsetof(FlowResult, t), READONLY, "output times (T,)"},
    {"mu", T_OBJECT, offsetof(FlowResult, mu), READONLY, "means mu_k(t): (T, K, D)"},
    {"Sigma", T_OBJECT, offsetof(FlowResult, Sigma), READONLY,
     "covariances Sigma_k(t): (T, K, D, D) (euclid form: C C^T)"},
    {"C", T_OBJECT, offsetof(FlowResult, C), READONLY,
     "square roots C_k(t): (T, K, D, D) for the euclid form, else None"},
    {"loss", T_OBJECT, offsetof(FlowResult, loss), READONLY, "loss L(rho_t): (T,)"},
    {"stats", T_OBJECT, offsetof(FlowResult, stats), READONLY,
     "solver counters: nsteps, nfevals, netfails, nniters, nncfails, nliters, qlast, hlast, "
     "nrhs, wall_s"},
    {"form", T_OBJECT, offsetof(FlowResult, form), READONLY, "'bw' or 'euclid'"},
    {"method", T_OBJECT, offsetof(FlowResult, method), READONLY, "the ODE method used"},
    {NULL, 0, 0, 0, NULL}};

static PyTypeObject FlowResultType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gmflow.FlowResult",
    .tp_basicsize = sizeof(FlowResult),
    .tp_dealloc = (destructor)result_dealloc,
    .tp_repr = (reprfunc)result_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("The trajectory of a gmflow.flow solve at its output times (read-only "
                        "attributes t, mu, Sigma, C, loss, stats, form, method)."),
    .tp_members = result_members,
};

/* ------------------------------------------------------------------------------------------ */
/* the problem: data and initial state                                                         */

typedef struct problem {
    PyArrayObject *X, *y;
    size_t n, d, D;
    gmf_sqloss *sq;
} problem;

static void problem_close(problem *p) {
    Py_XDECREF(p->X), Py_XDECREF(p->y);
    gmf_sqloss_free(p->sq);
    memset(p, 0, sizeof *p);
}

/* X (n, d), y (n,) -> the squared-loss oracle.  0 or -1 with an exception. */
static int problem_open(problem *p, PyObject *Xo, PyObject *yo) {
    memset(p, 0, sizeof *p);
    const npy_intp wX[2] = {-1, -1};
    if (!(p->X = gmfpy_f64(Xo, "X", 2, wX, "(n, d)", 0))) return -1;
    p->n = (size_t)PyArray_DIM(p->X, 0), p->d = (size_t)PyArray_DIM(p->X, 1), p->D = p->d + 1;
    const npy_intp wy[1] = {(npy_intp)p->n};
    if (!(p->y = gmfpy_f64(yo, "y", 1, wy, "(n,)", 0))) return problem_close(p), -1;
    const double *X = PyArray_DATA(p->X), *y = PyArray_DATA(p->y);
    const char *who = !gmf_all_finite(X, p->n * p->d) ? "X" : "y";
    int rc = gmf_sqloss_new(&p->sq, p->n, p->d, X, y);
    if (rc) return gmfpy_raise(rc, p->n && p->d ? who : "X"), problem_close(p), -1;
    return 0;
}

typedef struct state {
    gmf_flow_kind kind;
    size_t K, D, N;
    double *y; /* K (D + D^2): [mu | Sigma] (bw) or [mu | C] (euclid) */
} state;

static int flow_kind(const char *form, gmf_flow_kind *kind) {
    if (!strcmp(form, "bw"))
        *kind = GMF_FLOW_BW;
    else if (!strcmp(form, "euclid"))
        *kind = GMF_FLOW_EUCLID;
    else {
        PyErr_Format(PyExc_ValueError, "form: unknown form '%s' (choose 'bw' or 'euclid')", form);
        return -1;
    }
    return 0;
}

/* Validate a state vector with the library's check; the message names the argument (the means
 * when they are not finite, else the matrices). */
static int check_state(gmf_flow_kind kind, size_t K, size_t D, const double *y, const char *mu_name,
                       const char *mat_name) {
    int rc = gmf_flow_check_state(kind, K, D, y);
    if (!rc) return 0;
    gmfpy_raise(rc, gmf_all_finite(y, K * D) ? mat_name : mu_name);
    return -1;
}

/* Euclidean form from C0 and, when given too, Sigma0 (which must then be C0 C0^T). */
static int state_from_C(state *s, PyObject *So, PyObject *Co, const char *names[3]) {
    const size_t K = s->K, D = s->D;
    const npy_intp w[3] = {(npy_intp)K, (npy_intp)D, (npy_intp)D};
    PyArrayObject *C = gmfpy_f64(Co, names[2], 3, w, "(K, D, D)", 0);
    if (!C) return -1;
    memcpy(s->y + K * D, PyArray_DATA(C), K * D * D * sizeof(double));
    Py_DECREF(C);
    if (check_state(GMF_FLOW_EUCLID, K, D, s->y, names[0], names[2])) return -1;
    if (So == Py_None) return 0;
    PyArrayObject *S = gmfpy_f64(So, names[1], 3, w, "(K, D, D)", 1);
    if (!S) return -1;
    double *bw = PyMem_Malloc(s->N * sizeof(double));
    if (!bw) return Py_DECREF(S), PyErr_NoMemory(), -1;
    gmf_flow_euclid_to_bw(K, D, s->y, bw);
    const double *Sg = PyArray_DATA(S), *P = bw + K * D;
    int rc = 0;
    for (size_t k = 0; k < K && !rc; k++) {
        double ds = 0, ns = 0;
        for (size_t i = 0; i < D * D; i++) {
            const double a = Sg[k * D * D + i], b = P[k * D * D + i];
            ds += (a - b) * (a - b), ns += a * a;
        }
        if (!(ds <= 1e-20 * ns)) {
            gmfpy_errorf(PyExc_ValueError,
                         "%s: component %zu is not %s %s^T (relative Frobenius difference %.3g); "
                         "with form='euclid' pass %s=None and give %s",
                         names[1], k, names[2], names[2], ns > 0 ? sqrt(ds / ns) : sqrt(ds),
                         names[1], names[2]);
            rc = -1;
        }
    }
    PyMem_Free(bw);
    Py_DECREF(S);
    return rc;
}

/* The initial state of the given form from the Python arguments (names: mean, covariance,
 * square root).  0 or -1 with an exception; s->y is PyMem-allocated. */
static int state_open(state *s, gmf_flow_kind kind, size_t D, PyObject *muo, PyObject *So,
                      PyObject *Co, const char *names[3]) {
    memset(s, 0, sizeof *s);
    s->kind = kind, s->D = D;
    const npy_intp wmu[2] = {-1, (npy_intp)D};
    PyArrayObject *mu = gmfpy_f64(muo, names[0], 2, wmu, "(K, D)", 0);
    if (!mu) return -1;
    s->K = (size_t)PyArray_DIM(mu, 0);
    s->N = s->K * (D + D * D);
    if (s->K == 0) {
        Py_DECREF(mu);
        PyErr_Format(PyExc_ValueError, "%s: the mixture needs at least one component (K >= 1)",
                     names[0]);
        return -1;
    }
    if (!(s->y = PyMem_Malloc(s->N * sizeof(double)))) return Py_DECREF(mu), PyErr_NoMemory(), -1;
    memcpy(s->y, PyArray_DATA(mu), s->K * D * sizeof(double));
    Py_DECREF(mu);
    int rc;
    if (kind == GMF_FLOW_EUCLID && Co != Py_None) {
        rc = state_from_C(s, So, Co, names);
    } else if (Co != Py_None) {
        PyErr_Format(PyExc_ValueError, "%s: only used with form='euclid' (the bw form takes %s)",
                     names[2], names[1]);
        rc = -1;
    } else {
        const npy_intp w[3] = {(npy_intp)s->K, (npy_intp)D, (npy_intp)D};
        PyArrayObject *S = gmfpy_f64(So, names[1], 3, w, "(K, D, D)", 0);
        rc = S ? 0 : -1;
        if (S) memcpy(s->y + s->K * D, PyArray_DATA(S), s->K * D * D * sizeof(double));
        Py_XDECREF(S);
        if (!rc) rc = check_state(GMF_FLOW_BW, s->K, D, s->y, names[0], names[1]);
        if (!rc && kind == GMF_FLOW_EUCLID) {
            PyErr_Format(PyExc_ValueError,
                         "%s: form='euclid' needs the square roots (C0 with Sigma0 = C0 C0^T)",
                         names[2]);
            rc = -1;
        }
    }
    if (rc) PyMem_Free(s->y), s->y = NULL;
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* one solve: recorder, signal polling                                                          */

typedef struct job {
    gmf_flow flow;
    size_t K, D, skip, T, done; /* record output j >= skip as row j - skip; done rows so far */
    int euclid;
    double *t, *mu, *Sigma, *C, *loss, *scratch; /* result buffers (T rows) */
    double next_poll;
    double t_rhs; /* the largest time at which the right-hand side was evaluated */
    int interrupted;
    PyObject *et, *ev, *etb; /* the exception PyErr_CheckSignals raised */
    int obs_rc;
    char msg[1024];
    gmf_ode_stats st;
    long nrhs;
    double wall;
} job;

/* Every GMFPY_POLL_S seconds: take the GIL and run the signal handlers.  1 if they raised. */
static int poll_signals(job *b) {
    if (b->interrupted) return 1;
    const double now = mono_now();
    if (now < b->next_poll) return 0;
    b->next_poll = now + GMFPY_POLL_S;
    PyGILState_STATE g = PyGILState_Ensure();
    if (PyErr_CheckSignals() < 0) {
        PyErr_Fetch(&b->et, &b->ev, &b->etb);
        b->interrupted = 1;
    }
    PyGILState_Release(g);
    return b->interrupted;
}

static int rhs_adaptor(double t, const double *y, double *ydot, void *user) {
    job *b = user;
    if (poll_signals(b)) return -1; /* fatal: the solver stops */
    if (t > b->t_rhs) b->t_rhs = t;
    return gmf_flow_ode_rhs(t, y, ydot, &b->flow);
}

static int observe(size_t j, double t, const double *y, void *user) {
    job *b = user;
    if (j < b->skip) return poll_signals(b);
    const size_t i = j - b->skip, K = b->K, D = b->D, KD = K * D, KDD = K * D * D;
    b->t[i] = t;
    memcpy(b->mu + i * KD, y, KD * sizeof(double));
    if (b->euclid) {
        memcpy(b->C + i * KDD, y + KD, KDD * sizeof(double));
        gmf_flow_euclid_to_bw(K, D, y, b->scratch);
        memcpy(b->Sigma + i * KDD, b->scratch + KD, KDD * sizeof(double));
    } else {
        memcpy(b->Sigma + i * KDD, y + KD, KDD * sizeof(double));
    }
    int rc = gmf_flow_loss(&b->flow, y, &b->loss[i]);
    if (rc == GMF_OK && !isfinite(b->loss[i]))
        rc = gmf_error(GMF_EDIVERGE, "the loss is not finite at t = %g", t);
    if (rc) {
        b->obs_rc = rc;
        snprintf(b->msg, sizeof b->msg, "%s", gmf_errmsg());
        return 1;
    }
    b->done = i + 1;
    return poll_signals(b);
}

/* Integrate y0 over tout with the GIL released, recording into b.  Returns the library status;
 * the caller looks at b->interrupted and b->obs_rc first. */
static int job_run(job *b, gmf_flow_kind kind, gmf_oracle oracle, const double *y0,
                   const double *tout, size_t ntout, const gmf_ode_opts *opts) {
    const size_t N = b->K * (b->D + b->D * b->D);
    double *y = PyMem_RawMalloc(N * sizeof(double));
    if (!y) return gmf_error(GMF_ENOMEM, "out of memory for the state (%zu doubles)", N);
    memcpy(y, y0, N * sizeof(double));
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    const double start = mono_now();
    b->next_poll = start + GMFPY_POLL_S;
    rc = gmf_flow_init(&b->flow, kind, b->K, oracle);
    if (!rc) {
        rc = gmf_ode_solve(N, rhs_adaptor, b, y, tout, ntout, opts, observe, b, &b->st);
        b->nrhs = b->flow.nrhs;
        gmf_flow_free(&b->flow);
    }
    if (rc && !b->obs_rc) snprintf(b->msg, sizeof b->msg, "%s", gmf_errmsg());
    b->wall = mono_now() - start;
    Py_END_ALLOW_THREADS;
    PyMem_RawFree(y);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* gmflow.flow                                                                                 */

/* method (None: the library default), rtol, atol, max_steps (None: the library default). */
static int ode_options(PyObject *method, double rtol, double atol, PyObject *max_steps,
                       gmf_ode_opts *o) {
    *o = gmf_ode_defaults();
    if (method != Py_None) {
        const char *name = PyUnicode_Check(method) ? PyUnicode_AsUTF8(method) : NULL;
        if (!name) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_TypeError, "method: expected a string, got %s",
                             Py_TYPE(method)->tp_name);
            return -1;
        }
        int m = gmf_ode_method_parse(name);
        if (m < 0) {
            char list[256] = "";
            for (int i = 0; strcmp(gmf_ode_method_name((gmf_ode_method)i), "?") && i < 32; i++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s'%s'", i ? ", " : "",
                         gmf_ode_method_name((gmf_ode_method)i));
            PyErr_Format(PyExc_ValueError, "method: unknown method '%s' (choose %s)", name, list);
            return -1;
        }
        o->method = (gmf_ode_method)m;
    }
    if (!(rtol > 0) || !isfinite(rtol)) {
        gmfpy_errorf(PyExc_ValueError, "rtol: must be finite and > 0, got %g", rtol);
        return -1;
    }
    if (!(atol >= 0) || !isfinite(atol)) {
        gmfpy_errorf(PyExc_ValueError, "atol: must be finite and >= 0, got %g", atol);
        return -1;
    }
    o->rtol = rtol, o->atol = atol;
    if (max_steps != Py_None) {
        size_t v;
        if (gmfpy_size(max_steps, "max_steps", 1, 0x7fffffffULL, &v)) return -1;
        o->max_steps = (long)v;
    }
    return 0;
}

/* t_eval (T,) -> the solver's output times, with 0 in front when t_eval[0] > 0 (*skip = 1). */
static double *output_times(PyObject *to, size_t *T, size_t *skip) {
    const npy_intp w[1] = {-1};
    PyArrayObject *a = gmfpy_f64(to, "t_eval", 1, w, "(T,)", 1);
    if (!a) return NULL;
    const double *t = PyArray_DATA(a);
    *T = (size_t)PyArray_DIM(a, 0);
    const char *bad = *T == 0 ? "needs at least one time" : !(t[0] >= 0) ? "starts before 0" : NULL;
    for (size_t j = 1; !bad && j < *T; j++)
        if (!(t[j] > t[j - 1])) bad = "must be strictly increasing";
    if (bad) {
        PyErr_Format(PyExc_ValueError,
                     "t_eval: %s (the flow starts at t = 0 from the initial state)", bad);
        Py_DECREF(a);
        return NULL;
    }
    *skip = t[0] > 0;
    double *tout = PyMem_Malloc((*T + *skip) * sizeof(double));
    if (tout) {
        tout[0] = 0.0;
        memcpy(tout + *skip, t, *T * sizeof(double));
    } else {
        PyErr_NoMemory();
    }
    Py_DECREF(a);
    return tout;
}

static PyObject *stats_dict(const job *b) {
    const gmf_ode_stats *s = &b->st;
    return Py_BuildValue("{s:l,s:l,s:l,s:l,s:l,s:l,s:i,s:d,s:l,s:d}", "nsteps", s->nsteps,
                         "nfevals", s->nfevals, "netfails", s->netfails, "nniters", s->nniters,
                         "nncfails", s->nncfails, "nliters", s->nliters, "qlast", s->qlast, "hlast",
                         s->hlast, "nrhs", b->nrhs, "wall_s", b->wall);
}

/* A FlowResult of the first `rows` rows of the arrays (all of them: rows = T). */
static PyObject *make_result(PyObject *arr[5], size_t rows, size_t T, const job *b,
                             gmf_flow_kind kind, const gmf_ode_opts *o) {
    FlowResult *r = PyObject_New(FlowResult, &FlowResultType);
    if (!r) return NULL;
    PyObject **f[5] = {&r->t, &r->mu, &r->Sigma, &r->C, &r->loss};
    r->t = r->mu = r->Sigma = r->C = r->loss = r->stats = r->form = r->method = NULL;
    for (int i = 0; i < 5; i++) {
        if (!arr[i])
            *f[i] = Py_NewRef(Py_None);
        else if (rows == T)
            *f[i] = Py_NewRef(arr[i]);
        else
            *f[i] = PySequence_GetSlice(arr[i], 0, (Py_ssize_t)rows);
    }
    r->stats = stats_dict(b);
    r->form = PyUnicode_FromString(kind == GMF_FLOW_EUCLID ? "euclid" : "bw");
    r->method = PyUnicode_FromString(gmf_ode_method_name(o->method));
    for (int i = 0; i < 5; i++)
        if (!*f[i]) return Py_DECREF(r), NULL;
    if (!r->stats || !r->form || !r->method) return Py_DECREF(r), NULL;
    return (PyObject *)r;
}

/* gmflow.SolverError(msg) with .t (the last output time reached), .t_solver (the furthest time
 * the solver evaluated the right-hand side at) and .result (the trajectory up to .t, or None). */
static PyObject *raise_solver(const char *msg, double t, double t_solver, PyObject *partial) {
    PyObject *exc = PyObject_CallFunction(gmfpy_SolverError, "s", msg);
    if (!exc) return NULL;
    PyObject *tt = PyFloat_FromDouble(t), *ts = PyFloat_FromDouble(t_solver);
    if (tt && ts && PyObject_SetAttrString(exc, "t", tt) == 0 &&
        PyObject_SetAttrString(exc, "t_solver", ts) == 0 &&
        PyObject_SetAttrString(exc, "result", partial ? partial : Py_None) == 0)
        PyErr_SetObject(gmfpy_SolverError, exc);
    Py_XDECREF(tt), Py_XDECREF(ts);
    Py_DECREF(exc);
    return NULL;
}

/* Integrate state s of problem p over tout (ntout times; the first `skip` not recorded) and
 * return a FlowResult, or NULL with KeyboardInterrupt, SolverError, ValueError, MemoryError. */
static PyObject *solve(problem *p, const state *s, const double *tout, size_t ntout, size_t skip,
                       const gmf_ode_opts *o) {
    const size_t K = s->K, D = s->D, T = ntout - skip;
    const npy_intp s1[1] = {(npy_intp)T}, s3[3] = {(npy_intp)T, (npy_intp)K, (npy_intp)D},
                   s4[4] = {(npy_intp)T, (npy_intp)K, (npy_intp)D, (npy_intp)D};
    const int euclid = s->kind == GMF_FLOW_EUCLID;
    PyObject *arr[5] = {(PyObject *)gmfpy_zeros(1, s1), (PyObject *)gmfpy_zeros(3, s3),
                        (PyObject *)gmfpy_zeros(4, s4),
                        euclid ? (PyObject *)gmfpy_zeros(4, s4) : NULL,
                        (PyObject *)gmfpy_zeros(1, s1)};
    job b = {.K = K, .D = D, .skip = skip, .T = T, .euclid = euclid, .t_rhs = tout[0]};
    PyObject *res = NULL;
    if (!arr[0] || !arr[1] || !arr[2] || (euclid && !arr[3]) || !arr[4]) goto done;
    if (!(b.scratch = PyMem_RawMalloc(s->N * sizeof(double)))) {
        PyErr_NoMemory();
        goto done;
    }
    double **buf[5] = {&b.t, &b.mu, &b.Sigma, &b.C, &b.loss};
    for (int i = 0; i < 5; i++)
        *buf[i] = arr[i] ? PyArray_DATA((PyArrayObject *)arr[i]) : NULL;
    int rc = job_run(&b, s->kind, gmf_sqloss_oracle(p->sq), s->y, tout, ntout, o);
    if (b.interrupted) {
        PyErr_Restore(b.et, b.ev, b.etb);
    } else if (!b.obs_rc && rc == GMF_ENOMEM) {
        PyErr_SetString(PyExc_MemoryError, b.msg);
    } else if (b.obs_rc || rc || b.done != T) {
        char msg[1200];
        snprintf(msg, sizeof msg, "%s", b.obs_rc || rc ? b.msg : "integration stopped early");
        PyObject *partial = b.done ? make_result(arr, b.done, T, &b, s->kind, o) : NULL;
        if (partial || !PyErr_Occurred())
            raise_solver(msg, b.done ? b.t[b.done - 1] : tout[0], fmax(b.t_rhs, tout[0]), partial);
        Py_XDECREF(partial);
    } else {
        res = make_result(arr, T, T, &b, s->kind, o);
    }
done:
    for (int i = 0; i < 5; i++)
        Py_XDECREF(arr[i]);
    PyMem_RawFree(b.scratch);
    return res;
}

PyDoc_STRVAR(
    flow_doc,
    "flow(X, y, mu0, Sigma0, t_eval, *, form='bw', method=None, rtol=1e-8, atol=1e-10, C0=None, "
    "max_steps=None)\n--\n\n"
    "Integrate the exact gradient flow of the squared loss over Gaussian mixtures.\n\n"
    "L(rho) = (1/n) sum_i (y_i - E_rho f(x_i, theta))^2, f(x, theta) = omega relu(beta . x),\n"
    "rho = (1/K) sum_k N(mu_k, Sigma_k) over theta = (omega, beta) in R^D, D = d + 1, with\n"
    "closed-form expectations and an adaptive ODE solver (the same code as `gmflow flow`).\n\n"
    "Parameters\n----------\n"
    "X : (n, d) inputs.  y : (n,) targets.\n"
    "mu0 : (K, D) initial means.  Sigma0 : (K, D, D) initial covariances, symmetric positive\n"
    "    semidefinite (may be None with form='euclid' and C0).\n"
    "t_eval : (T,) output times, strictly increasing, t_eval[0] >= 0; the flow starts at t = 0\n"
    "    (any increasing times, not only evenly spaced ones).\n"
    "form : 'bw' (Theorems 3/4: the Bures-Wasserstein flow over (mu, Sigma)) or 'euclid'\n"
    "    (Theorem 1: the Euclidean flow over (mu, C), Sigma = C C^T, which at time t equals the\n"
    "    bw flow at t / K).  'euclid' needs C0.\n"
    "method : ODE method name ('adams', 'bdf', 'rk8pd', 'rkf45', ...); None: the library's\n"
    "    default (gmflow.DEFAULT_METHOD).\n"
    "rtol, atol : tolerances (|err_i| <= atol + rtol |y_i|).\n"
    "C0 : (K, D, D) initial square roots for form='euclid'.\n"
    "max_steps : internal steps allowed per output interval (None: the library's default).\n\n"
    "Returns\n-------\n"
    "FlowResult with t (T,), mu (T, K, D), Sigma (T, K, D, D), C (T, K, D, D) or None, loss (T,),\n"
    "stats (dict of the solver's counters), form, method.\n\n"
    "Any float array layout is accepted (converted to C-contiguous float64).  Bad shapes,\n"
    "non-finite values, an asymmetric or non-PSD Sigma0 raise ValueError naming the argument;\n"
    "a solver failure raises gmflow.SolverError with .t (the last output time reached),\n"
    ".t_solver (the furthest time the solver evaluated the flow at) and .result (the\n"
    "trajectory up to .t).  The GIL is released during the solve; Ctrl-C\n"
    "raises KeyboardInterrupt within about 0.2 s.");

static PyObject *py_flow(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"X",      "y",    "mu0",  "Sigma0", "t_eval",    "form",
                             "method", "rtol", "atol", "C0",     "max_steps", NULL};
    PyObject *Xo, *yo, *muo, *So, *to, *method = Py_None, *Co = Py_None, *msteps = Py_None;
    const char *form = "bw";
    const gmf_ode_opts def = gmf_ode_defaults();
    double rtol = def.rtol, atol = def.atol;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOO|$sOddOO:flow", kwlist, &Xo, &yo, &muo, &So,
                                     &to, &form, &method, &rtol, &atol, &Co, &msteps))
        return NULL;
    gmf_flow_kind kind;
    gmf_ode_opts o;
    if (flow_kind(form, &kind) || ode_options(method, rtol, atol, msteps, &o)) return NULL;
    problem p;
    if (problem_open(&p, Xo, yo)) return NULL;
    state s;
    const char *names[3] = {"mu0", "Sigma0", "C0"};
    PyObject *res = NULL;
    size_t T, skip;
    double *tout = NULL;
    if (!state_open(&s, kind, p.D, muo, So, Co, names) && (tout = output_times(to, &T, &skip)))
        res = solve(&p, &s, tout, T + skip, skip, &o);
    PyMem_Free(tout);
    PyMem_Free(s.y);
    problem_close(&p);
    return res;
}

/* ------------------------------------------------------------------------------------------ */
/* gmflow.rhs                                                                                  */

PyDoc_STRVAR(rhs_doc,
             "rhs(X, y, mu, Sigma, form='bw')\n--\n\n"
             "The flow's right-hand side at one state, for inspection.\n\n"
             "form='bw': the state is (mu (K, D), Sigma (K, D, D)); returns (mu_dot, Sigma_dot, "
             "loss) with\n"
             "  mu_dot_k = -E_k grad dL,  Sigma_dot_k = -(E_k[hess dL] Sigma_k + Sigma_k "
             "E_k[hess dL]).\n"
             "form='euclid': the fourth argument is C (K, D, D), Sigma_k = C_k C_k^T; returns "
             "(mu_dot, C_dot, loss)\n"
             "  with mu_dot_k = -(1/K) E_k grad dL,  C_dot_k = -(1/K) E_k[hess dL] C_k.\n"
             "loss is L(rho) at the state.  dL is the first variation of the squared loss.");

static PyObject *py_rhs(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"X", "y", "mu", "Sigma", "form", NULL};
    PyObject *Xo, *yo, *muo, *So;
    const char *form = "bw";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOO|s:rhs", kwlist, &Xo, &yo, &muo, &So, &form))
        return NULL;
    gmf_flow_kind kind;
    if (flow_kind(form, &kind)) return NULL;
    problem p;
    if (problem_open(&p, Xo, yo)) return NULL;
    state s;
    const char *names[3] = {"mu", "Sigma", "C"};
    PyObject *res = NULL, *dmu = NULL, *dmat = NULL;
    int rc = kind == GMF_FLOW_EUCLID ? state_open(&s, kind, p.D, muo, Py_None, So, names)
                                     : state_open(&s, kind, p.D, muo, So, Py_None, names);
    if (rc) goto done;
    const npy_intp s2[2] = {(npy_intp)s.K, (npy_intp)s.D},
                   s3[3] = {(npy_intp)s.K, (npy_intp)s.D, (npy_intp)s.D};
    dmu = (PyObject *)gmfpy_zeros(2, s2), dmat = (PyObject *)gmfpy_zeros(3, s3);
    double *ydot = PyMem_RawMalloc(s.N * sizeof(double)), loss = 0;
    if (!dmu || !dmat || !ydot) {
        PyMem_RawFree(ydot);
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto done;
    }
    gmf_flow f;
    Py_BEGIN_ALLOW_THREADS;
    rc = gmf_flow_init(&f, kind, s.K, gmf_sqloss_oracle(p.sq));
    if (!rc) {
        rc = gmf_flow_rhs(&f, s.y, ydot);
        if (!rc) rc = gmf_flow_loss(&f, s.y, &loss);
        gmf_flow_free(&f);
    }
    Py_END_ALLOW_THREADS;
    if (rc) {
        gmfpy_raise(rc, NULL);
    } else {
        memcpy(PyArray_DATA((PyArrayObject *)dmu), ydot, s.K * s.D * sizeof(double));
        memcpy(PyArray_DATA((PyArrayObject *)dmat), ydot + s.K * s.D,
               s.K * s.D * s.D * sizeof(double));
        res = Py_BuildValue("(OOd)", dmu, dmat, loss);
    }
    PyMem_RawFree(ydot);
done:
    Py_XDECREF(dmu), Py_XDECREF(dmat);
    PyMem_Free(s.y);
    problem_close(&p);
    return res;
}

/* ------------------------------------------------------------------------------------------ */
/* the module                                                                                  */

static PyMethodDef methods[] = {
    {"flow", (PyCFunction)(void (*)(void))py_flow, METH_VARARGS | METH_KEYWORDS, flow_doc},
    {"rhs", (PyCFunction)(void (*)(void))py_rhs, METH_VARARGS | METH_KEYWORDS, rhs_doc},
    {"expectations", (PyCFunction)(void (*)(void))gmfpy_expectations, METH_VARARGS | METH_KEYWORDS,
     gmfpy_expectations_doc},
    {"toy", (PyCFunction)(void (*)(void))gmfpy_toy, METH_VARARGS | METH_KEYWORDS, gmfpy_toy_doc},
    {"init", (PyCFunction)(void (*)(void))gmfpy_init, METH_VARARGS | METH_KEYWORDS, gmfpy_init_doc},
    {"load_checkpoint", (PyCFunction)(void (*)(void))gmfpy_load_checkpoint,
     METH_VARARGS | METH_KEYWORDS, gmfpy_load_checkpoint_doc},
    {"load_idx", (PyCFunction)(void (*)(void))gmfpy_load_idx, METH_VARARGS | METH_KEYWORDS,
     gmfpy_load_idx_doc},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "gmflow._gmflow",
    .m_doc = "gmflow._gmflow: the C extension behind the gmflow package (import gmflow instead).",
    .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__gmflow(void) {
    import_array();
    if (PyType_Ready(&FlowResultType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    gmfpy_SolverError = PyErr_NewExceptionWithDoc(
        "gmflow.SolverError",
        "The ODE solver failed or the flow diverged.  Attributes: t, the last output time "
        "reached; t_solver, the furthest time the solver evaluated the flow at (within one step "
        "of where it stopped); result, the FlowResult up to t (or None).",
        PyExc_RuntimeError, NULL);
    const gmf_ode_opts def = gmf_ode_defaults();
    if (!gmfpy_SolverError || PyModule_AddObjectRef(m, "SolverError", gmfpy_SolverError) < 0 ||
        PyModule_AddObjectRef(m, "FlowResult", (PyObject *)&FlowResultType) < 0 ||
        PyModule_AddStringConstant(m, "DEFAULT_METHOD", gmf_ode_method_name(def.method)) < 0 ||
        PyModule_AddStringConstant(m, "__version__", GMFPY_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
