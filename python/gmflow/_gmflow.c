/* _gmflow.c -- the CPython extension gmflow._gmflow over libgmflow: module, errors, array
 * conversion, and the flows (flow, rhs).  The closed forms of one component, the toys, initial
 * mixtures, checkpoints and IDX files are in _gmflow_extra.c.
 *
 * Threads and signals: the checks and the integration are the library's (gmf_traj_check_start,
 * gmf_traj_integrate: the same policy as `gmflow flow`), run with the GIL released
 * (Py_BEGIN_ALLOW_THREADS) on private copies of every input, so independent calls run in
 * parallel.  The solver's callbacks cannot run Python code without the GIL; the oracle the solver
 * sees wraps the squared loss, and every GMFPY_POLL_S seconds of wall time its prepare (called
 * once per right-hand side evaluation) takes the GIL (PyGILState_Ensure) just long enough for
 * PyErr_CheckSignals, which runs Python's SIGINT handler.  If that raises (KeyboardInterrupt),
 * prepare keeps the exception and fails, the flow's right-hand side turns that into a fatal
 * error, the solver stops, and the exception is re-raised once the GIL is back: Ctrl-C
 * interrupts a solve within GMFPY_POLL_S plus one right-hand side evaluation.
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
#include "gmflow/traj.h"

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
    size_t K, D, N;
    double *bw; /* [mu | Sigma] or NULL (PyMem) */
    double *eu; /* [mu | C] or NULL (PyMem) */
} state;

static void state_close(state *s) {
    PyMem_Free(s->bw), PyMem_Free(s->eu);
    s->bw = s->eu = NULL;
}

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

/* s->eu from the means (already in s->eu) and C0. */
static int state_C(state *s, PyObject *Co, const char *names[3]) {
    const size_t K = s->K, D = s->D;
    const npy_intp w[3] = {(npy_intp)K, (npy_intp)D, (npy_intp)D};
    PyArrayObject *C = gmfpy_f64(Co, names[2], 3, w, "(K, D, D)", 0);
    if (!C) return -1;
    memcpy(s->eu + gmf_flow_mat_offset(K, D, 0), PyArray_DATA(C), K * D * D * sizeof(double));
    Py_DECREF(C);
    return check_state(GMF_FLOW_EUCLID, K, D, s->eu, names[0], names[2]);
}

/* s->bw from the means (already in s->bw) and Sigma0. */
static int state_Sigma(state *s, PyObject *So, const char *names[3]) {
    const size_t K = s->K, D = s->D;
    const npy_intp w[3] = {(npy_intp)K, (npy_intp)D, (npy_intp)D};
    PyArrayObject *S = gmfpy_f64(So, names[1], 3, w, "(K, D, D)", 0);
    if (!S) return -1;
    memcpy(s->bw + gmf_flow_mat_offset(K, D, 0), PyArray_DATA(S), K * D * D * sizeof(double));
    Py_DECREF(S);
    return check_state(GMF_FLOW_BW, K, D, s->bw, names[0], names[1]);
}

/* Given both Sigma0 and C0: Sigma0 must be C0 C0^T (relative Frobenius 1e-10 per component). */
static int state_agree(const state *s, const char *names[3]) {
    const size_t K = s->K, D = s->D;
    double *P = PyMem_Malloc(s->N * sizeof(double));
    if (!P) return PyErr_NoMemory(), -1;
    gmf_flow_euclid_to_bw(K, D, s->eu, P);
    int rc = 0;
    for (size_t k = 0; k < K && !rc; k++) {
        const size_t off = gmf_flow_mat_offset(K, D, k);
        double ds = 0, ns = 0;
        for (size_t i = 0; i < D * D; i++) {
            const double a = s->bw[off + i], b = P[off + i];
            ds += (a - b) * (a - b), ns += a * a;
        }
        if (!(ds <= 1e-20 * ns)) {
            gmfpy_errorf(PyExc_ValueError,
                         "%s: component %zu is not %s %s^T (relative Frobenius difference %.3g); "
                         "give one of them (pass %s=None)",
                         names[1], k, names[2], names[2], ns > 0 ? sqrt(ds / ns) : sqrt(ds),
                         names[1]);
            rc = -1;
        }
    }
    PyMem_Free(P);
    return rc;
}

/* The other form from the one given: Sigma = C C^T, or C the Cholesky factor of Sigma. */
static int state_convert(state *s, const char *names[3]) {
    if (s->eu && !s->bw) {
        if (!(s->bw = PyMem_Malloc(s->N * sizeof(double)))) return PyErr_NoMemory(), -1;
        gmf_flow_euclid_to_bw(s->K, s->D, s->eu, s->bw);
        return 0;
    }
    if (!(s->eu = PyMem_Malloc(s->N * sizeof(double)))) return PyErr_NoMemory(), -1;
    int rc = gmf_flow_bw_to_euclid(s->K, s->D, s->bw, s->eu);
    if (!rc) return 0;
    char why[1024];
    snprintf(why, sizeof why, "%s", gmf_errmsg());
    return gmfpy_errorf(PyExc_ValueError,
                        "%s: %s, so it has no Cholesky factor for form='euclid' (use form='bw', "
                        "or give %s)",
                        names[1], why, names[2]),
           -1;
}

/* The initial state from the Python arguments (names: mean, covariance, square root) in the
 * forms asked for (need_bw, need_eu).  Sigma0 and C0 may each be None when the other is given;
 * C0 is refused when only the bw form is asked for.  0 or -1 with an exception. */
static int state_open(state *s, int need_bw, int need_eu, size_t D, PyObject *muo, PyObject *So,
                      PyObject *Co, const char *names[3]) {
    memset(s, 0, sizeof *s);
    s->D = D;
    if (Co != Py_None && !need_eu)
        return PyErr_Format(PyExc_ValueError,
                            "%s: only used with form='euclid' (the bw form takes %s)", names[2],
                            names[1]),
               -1;
    const npy_intp wmu[2] = {-1, (npy_intp)D};
    PyArrayObject *mu = gmfpy_f64(muo, names[0], 2, wmu, "(K, D)", 0);
    if (!mu) return -1;
    s->K = (size_t)PyArray_DIM(mu, 0), s->N = s->K * (D + D * D);
    int rc = 0;
    if (s->K == 0)
        rc = -1, PyErr_Format(PyExc_ValueError,
                              "%s: the mixture needs at least one component (K >= 1)", names[0]);
    if (!rc && So != Py_None && !(s->bw = PyMem_Malloc(s->N * sizeof(double)))) rc = -1;
    if (!rc && Co != Py_None && !(s->eu = PyMem_Malloc(s->N * sizeof(double)))) rc = -1;
    if (rc && !PyErr_Occurred()) PyErr_NoMemory();
    for (int i = 0; !rc && i < 2; i++)
        if (i ? s->eu : s->bw)
            memcpy(i ? s->eu : s->bw, PyArray_DATA(mu), s->K * D * sizeof(double));
    Py_DECREF(mu);
    if (!rc && !s->bw && !s->eu) /* neither given: say what the bw form needs */
        rc = -1, PyErr_Format(PyExc_TypeError,
                              "%s: expected a float array of shape (K, D, D), "
                              "got None%s",
                              names[1], need_eu ? " (and no C0)" : "");
    if (!rc && s->bw) rc = state_Sigma(s, So, names);
    if (!rc && s->eu) rc = state_C(s, Co, names);
    if (!rc && s->bw && s->eu) rc = state_agree(s, names);
    if (!rc && ((need_bw && !s->bw) || (need_eu && !s->eu))) rc = state_convert(s, names);
    if (rc) state_close(s);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* one integration: the library's policy (gmf_traj_check_start, gmf_traj_integrate) over an     */
/* oracle that polls for signals                                                                */

/* The squared loss with a signal poll in front of every evaluation: prepare runs once per
 * right-hand side and once per recorded loss, so polling there is polling in the RHS. */
typedef struct polled {
    gmf_oracle inner;
    double next_poll;
    int interrupted;
    PyObject *et, *ev, *etb; /* the exception PyErr_CheckSignals raised */
} polled;

/* Every GMFPY_POLL_S seconds: take the GIL and run the signal handlers.  1 if they raised. */
static int poll_signals(polled *p) {
    if (p->interrupted) return 1;
    const double now = mono_now();
    if (now < p->next_poll) return 0;
    p->next_poll = now + GMFPY_POLL_S;
    PyGILState_STATE g = PyGILState_Ensure();
    if (PyErr_CheckSignals() < 0) {
        PyErr_Fetch(&p->et, &p->ev, &p->etb);
        p->interrupted = 1;
    }
    PyGILState_Release(g);
    return p->interrupted;
}

static int polled_prepare(void *ctx, size_t K, const double *mu, const double *Sigma,
                          const double *C) {
    polled *p = ctx;
    if (poll_signals(p)) return gmf_error(GMF_ESOLVER, "interrupted (KeyboardInterrupt)");
    return p->inner.prepare(p->inner.ctx, K, mu, Sigma, C);
}
static int polled_component(void *ctx, size_t k, double *grad, double *hessR) {
    polled *p = ctx;
    return p->inner.component(p->inner.ctx, k, grad, hessR);
}
static double polled_loss(void *ctx) {
    polled *p = ctx;
    return p->inner.loss(p->inner.ctx);
}
static int polled_jvp(void *ctx, size_t K, const double *mu, const double *Sigma, const double *C,
                      const double *dmu, const double *dR, double *dgrad, double *dhessR) {
    polled *p = ctx;
    if (poll_signals(p)) return gmf_error(GMF_ESOLVER, "interrupted (KeyboardInterrupt)");
    return p->inner.jvp(p->inner.ctx, K, mu, Sigma, C, dmu, dR, dgrad, dhessR);
}

typedef struct run {
    gmf_traj *tr;
    gmf_ode_stats st;
    int rc;
    gmf_traj_start_issue issue; /* what gmf_traj_check_start blamed */
    polled pol;
    char msg[1024];
} run;

/* With the GIL released: check the start, then integrate y0 (of `kind`) over tout. */
static void run_solve(run *r, gmf_flow_kind kind, size_t K, gmf_oracle oracle, const double *y0,
                      const double *tout, size_t ntout, const gmf_ode_opts *o) {
    r->pol = (polled){.inner = oracle, .next_poll = mono_now() + GMFPY_POLL_S};
    gmf_oracle po = {.ctx = &r->pol,
                     .D = oracle.D,
                     .prepare = polled_prepare,
                     .component = polled_component,
                     .loss = polled_loss,
                     .jvp = oracle.jvp ? polled_jvp : NULL};
    r->issue = GMF_TRAJ_START_OK;
    r->rc = gmf_traj_check_start(kind, K, oracle, y0, tout, ntout, o, &r->issue);
    if (!r->rc) r->rc = gmf_traj_new(&r->tr, kind, ntout, K, oracle.D);
    if (!r->rc) r->rc = gmf_traj_integrate(r->tr, po, y0, tout, &r->st, o);
    if (r->rc) snprintf(r->msg, sizeof r->msg, "%s", gmf_errmsg());
}

static PyObject *stats_dict(const run *r) {
    const gmf_ode_stats *s = &r->st;
    const size_t done = gmf_traj_done(r->tr);
    return Py_BuildValue(
        "{s:l,s:l,s:l,s:l,s:l,s:l,s:i,s:d,s:l,s:l,s:s,s:l,s:d}", "nsteps", s->nsteps, "nfevals",
        s->nfevals, "netfails", s->netfails, "nniters", s->nniters, "nncfails", s->nncfails,
        "nliters", s->nliters, "qlast", s->qlast, "hlast", s->hlast, "njevals", s->njevals,
        "njvevals", s->njvevals, "jacobian", gmf_ode_jacobian_name((gmf_ode_jacobian)s->jacobian),
        "nrhs", done ? gmf_traj_nrhs(r->tr)[done - 1] : 0L, "wall_s", gmf_traj_elapsed(r->tr));
}

/* A new float64 array of `rows` rows of `per` values from src (copied). */
static PyObject *rows_array(const double *src, size_t rows, int nd, const npy_intp *tail) {
    npy_intp shape[4] = {(npy_intp)rows};
    size_t per = 1;
    for (int i = 1; i < nd; i++)
        shape[i] = tail[i - 1], per *= (size_t)tail[i - 1];
    PyArrayObject *a = gmfpy_zeros(nd, shape);
    if (a && rows) memcpy(PyArray_DATA(a), src, rows * per * sizeof(double));
    return (PyObject *)a;
}

/* A FlowResult of the trajectory's recorded rows from `skip` on. */
static PyObject *make_result(const run *r, size_t skip, const gmf_ode_opts *o) {
    const gmf_traj *tr = r->tr;
    const size_t K = gmf_traj_K(tr), D = gmf_traj_D(tr), done = gmf_traj_done(tr);
    const size_t rows = done > skip ? done - skip : 0, KD = K * D, KDD = K * D * D;
    const npy_intp kd[2] = {(npy_intp)K, (npy_intp)D},
                   kdd[3] = {(npy_intp)K, (npy_intp)D, (npy_intp)D};
    const int euclid = gmf_traj_kind(tr) == GMF_FLOW_EUCLID;
    FlowResult *res = PyObject_New(FlowResult, &FlowResultType);
    if (!res) return NULL;
    res->t = rows_array(gmf_traj_t(tr) + skip, rows, 1, NULL);
    res->mu = rows_array(gmf_traj_mu(tr) + skip * KD, rows, 3, kd);
    res->Sigma = rows_array(gmf_traj_Sigma(tr) + skip * KDD, rows, 4, kdd);
    res->C = euclid ? rows_array(gmf_traj_C(tr) + skip * KDD, rows, 4, kdd) : Py_NewRef(Py_None);
    res->loss = rows_array(gmf_traj_loss(tr) + skip, rows, 1, NULL);
    res->stats = stats_dict(r);
    res->form = PyUnicode_FromString(euclid ? "euclid" : "bw");
    res->method = PyUnicode_FromString(gmf_ode_method_name(o->method));
    if (!res->t || !res->mu || !res->Sigma || !res->C || !res->loss || !res->stats || !res->form ||
        !res->method)
        Py_CLEAR(res);
    return (PyObject *)res;
}

/* gmflow.SolverError(msg) with .t (the last output time reached) and .result (the trajectory up
 * to there, or None). */
static PyObject *raise_solver(const char *msg, double t, PyObject *partial) {
    PyObject *exc = PyObject_CallFunction(gmfpy_SolverError, "s", msg);
    if (!exc) return NULL;
    PyObject *tt = PyFloat_FromDouble(t);
    if (tt && PyObject_SetAttrString(exc, "t", tt) == 0 &&
        PyObject_SetAttrString(exc, "result", partial ? partial : Py_None) == 0)
        PyErr_SetObject(gmfpy_SolverError, exc);
    Py_XDECREF(tt);
    Py_DECREF(exc);
    return NULL;
}

/* After run_solve: 0, or -1 with KeyboardInterrupt (or whatever the signal handler raised),
 * ValueError naming the input gmf_traj_check_start blamed, SolverError, MemoryError. */
static int run_error(run *r, const double *tout, size_t skip, const gmf_ode_opts *o,
                     const char *state_name) {
    if (r->pol.interrupted) {
        PyErr_Restore(r->pol.et, r->pol.ev, r->pol.etb);
        r->pol.et = r->pol.ev = r->pol.etb = NULL;
        return -1;
    }
    if (!r->rc) return 0;
    const char *who = r->issue == GMF_TRAJ_START_TIMES       ? "t_eval"
                      : r->issue == GMF_TRAJ_START_TOLERANCE ? "rtol/atol"
                      : r->issue == GMF_TRAJ_START_STATE     ? state_name
                                                             : NULL;
    if (who || (r->rc != GMF_ESOLVER && r->rc != GMF_EDIVERGE)) {
        gmfpy_errorf(r->rc == GMF_ENOMEM ? PyExc_MemoryError : PyExc_ValueError, "%s%s%s",
                     who ? who : "", who ? ": " : "", r->msg);
        return -1;
    }
    const size_t done = r->tr ? gmf_traj_done(r->tr) : 0;
    PyObject *partial = done > skip ? make_result(r, skip, o) : NULL;
    if (partial || !PyErr_Occurred())
        raise_solver(r->msg, done > skip ? gmf_traj_t(r->tr)[done - 1] : tout[0], partial);
    Py_XDECREF(partial);
    return -1;
}

/* method (None: the library default), rtol, atol, max_steps (None: the library default). */
static int ode_options(PyObject *method, double rtol, double atol, PyObject *max_steps,
                       const char *jacobian, gmf_ode_opts *o) {
    *o = gmf_ode_defaults();
    o->jvp = gmf_flow_ode_jvp; /* exact Jacobian information for bdf, as `gmflow flow` */
    o->jac = gmf_flow_ode_jac;
    gmf_ode_jacobian jac;
    if (jacobian && gmf_ode_jacobian_parse(jacobian, &jac))
        return PyErr_Format(PyExc_ValueError,
                            "jacobian: unknown choice '%s' (choose 'auto', 'dq', 'jvp' or 'dense')",
                            jacobian),
               -1;
    if (jacobian) o->jacobian = (int)jac;
    if (method != Py_None) {
        const char *name = PyUnicode_Check(method) ? PyUnicode_AsUTF8(method) : NULL;
        if (!name) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_TypeError, "method: expected a string, got %s",
                             Py_TYPE(method)->tp_name);
            return -1;
        }
        gmf_ode_method m;
        if (gmf_ode_method_parse(name, &m)) {
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

PyDoc_STRVAR(
    flow_doc,
    "flow(X, y, mu0, Sigma0, t_eval, *, form='bw', method=None, rtol=1e-8, atol=1e-10, C0=None, "
    "max_steps=None, jacobian=None)\n--\n\n"
    "Integrate the exact gradient flow of the squared loss over Gaussian mixtures.\n\n"
    "L(rho) = (1/n) sum_i (y_i - E_rho f(x_i, theta))^2, f(x, theta) = omega relu(beta . x),\n"
    "rho = (1/K) sum_k N(mu_k, Sigma_k) over theta = (omega, beta) in R^D, D = d + 1, with\n"
    "closed-form expectations and an adaptive ODE solver (the same code as `gmflow flow`).\n\n"
    "Parameters\n----------\n"
    "X : (n, d) inputs.  y : (n,) targets.\n"
    "mu0 : (K, D) initial means.  Sigma0 : (K, D, D) initial covariances, symmetric positive\n"
    "    semidefinite (None with form='euclid' and C0).\n"
    "t_eval : (T,) output times, strictly increasing, t_eval[0] >= 0; the flow starts at t = 0\n"
    "    (any increasing times, not only evenly spaced ones).\n"
    "form : 'bw' (Theorems 3/4: the Bures-Wasserstein flow over (mu, Sigma)) or 'euclid'\n"
    "    (Theorem 1: the Euclidean flow over (mu, C), Sigma = C C^T, which at time t equals the\n"
    "    bw flow at t / K).  'euclid' starts from C0, else from the Cholesky factors of Sigma0.\n"
    "method : ODE method name ('adams', 'bdf', 'rk8pd', 'rkf45', ...); None: the library's\n"
    "    default (gmflow.DEFAULT_METHOD).\n"
    "rtol, atol : tolerances (|err_i| <= atol + rtol |y_i|).\n"
    "C0 : (K, D, D) initial square roots for form='euclid' (Sigma0 = C0 C0^T).\n"
    "max_steps : internal steps allowed per output interval (None: the library's default).\n"
    "jacobian : bdf's linear solver, as `gmflow flow --jacobian`: 'auto', 'dq', 'jvp' or\n"
    "    'dense' (None: the library's default, auto: exact Jacobians).\n\n"
    "Returns\n-------\n"
    "FlowResult with t (T,), mu (T, K, D), Sigma (T, K, D, D), C (T, K, D, D) or None, loss (T,),\n"
    "stats (dict of the solver's counters), form, method.\n\n"
    "Any float array layout is accepted (converted to C-contiguous float64).  Bad shapes,\n"
    "non-finite values, an asymmetric or non-PSD Sigma0 raise ValueError naming the argument;\n"
    "a solver failure raises gmflow.SolverError with .t (the last output time reached) and\n"
    ".result (the trajectory up to .t).  The checks before integrating and the integration\n"
    "are the library's (gmf_traj_check_start, gmf_traj_integrate), as in `gmflow flow`.  The\n"
    "GIL is released during the solve; Ctrl-C raises KeyboardInterrupt within about 0.2 s.");

static PyObject *py_flow(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"X",    "y",    "mu0", "Sigma0",    "t_eval",   "form", "method",
                             "rtol", "atol", "C0",  "max_steps", "jacobian", NULL};
    PyObject *Xo, *yo, *muo, *So, *to, *method = Py_None, *Co = Py_None, *msteps = Py_None;
    const char *form = "bw", *jac = NULL;
    const gmf_ode_opts def = gmf_ode_defaults();
    double rtol = def.rtol, atol = def.atol;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOO|$sOddOOz:flow", kwlist, &Xo, &yo, &muo, &So,
                                     &to, &form, &method, &rtol, &atol, &Co, &msteps, &jac))
        return NULL;
    gmf_flow_kind kind;
    gmf_ode_opts o;
    if (flow_kind(form, &kind) || ode_options(method, rtol, atol, msteps, jac, &o)) return NULL;
    problem p;
    if (problem_open(&p, Xo, yo)) return NULL;
    const int bw = kind == GMF_FLOW_BW;
    const char *names[3] = {"mu0", "Sigma0", "C0"};
    state s;
    run r = {0};
    PyObject *res = NULL;
    size_t T, skip;
    double *tout = NULL;
    if (!state_open(&s, bw, !bw, p.D, muo, So, Co, names) && (tout = output_times(to, &T, &skip))) {
        const gmf_oracle oracle = gmf_sqloss_oracle(p.sq);
        Py_BEGIN_ALLOW_THREADS;
        run_solve(&r, kind, s.K, oracle, bw ? s.bw : s.eu, tout, T + skip, &o);
        Py_END_ALLOW_THREADS;
        if (!run_error(&r, tout, skip, &o, bw ? "mu0, Sigma0" : "mu0, C0"))
            res = make_result(&r, skip, &o);
    }
    gmf_traj_free(r.tr);
    PyMem_Free(tout);
    state_close(&s);
    problem_close(&p);
    return res;
}

/* ------------------------------------------------------------------------------------------ */
/* gmflow.thm1                                                                                 */

PyDoc_STRVAR(
    thm1_doc,
    "thm1(X, y, mu0, Sigma0, t_eval, *, method=None, rtol=1e-11, atol=1e-13, C0=None, "
    "max_steps=None, jacobian=None)\n--\n\n"
    "Theorem 1 over time: the mixture (bw) flow from (mu0, Sigma0) at the times t_eval and,\n"
    "integrated independently, the Euclidean flow over (mu, C) from (mu0, C0) at K t_eval\n"
    "(C0 defaults to the Cholesky factors of Sigma0; Sigma0 may be None with C0, then\n"
    "Sigma0 = C0 C0^T), as `gmflow flow --check-thm1` does.  The tolerances default to that\n"
    "check's.\n\n"
    "Returns a dict: t (T,) the bw times; sigma_rel_err (T,) the largest over k of\n"
    "||Sigma_k(t) - C_k(K t) C_k(K t)^T||_F / ||Sigma_k(t)||_F; mu_rel_err (T,)\n"
    "||mu(t) - mu_euclid(K t)|| / ||mu(t)|| (all means stacked); bw and euclid, the two\n"
    "FlowResults.  Errors as gmflow.flow.");

/* The Theorem 1 result dict from the two finished runs (rows from skip on). */
static PyObject *thm1_dict(run *rb, run *re, size_t skip, const gmf_ode_opts *o) {
    const size_t n = gmf_traj_T(rb->tr), T = n - skip;
    const npy_intp sh[1] = {(npy_intp)T};
    double *es = PyMem_Malloc(2 * n * sizeof(double)), *em = es ? es + n : NULL;
    PyArrayObject *as = gmfpy_zeros(1, sh), *am = gmfpy_zeros(1, sh);
    PyObject *b = make_result(rb, skip, o), *e = b ? make_result(re, skip, o) : NULL, *d = NULL;
    if (!es) PyErr_NoMemory();
    if (es && as && am && b && e) {
        int rc = gmf_traj_thm1_errors(rb->tr, re->tr, es, em);
        if (rc) {
            gmfpy_raise(rc, NULL);
        } else {
            memcpy(PyArray_DATA(as), es + skip, T * sizeof(double));
            memcpy(PyArray_DATA(am), em + skip, T * sizeof(double));
            d = Py_BuildValue("{s:O,s:O,s:O,s:O,s:O}", "t", ((FlowResult *)b)->t, "sigma_rel_err",
                              as, "mu_rel_err", am, "bw", b, "euclid", e);
        }
    }
    PyMem_Free(es);
    Py_XDECREF(as), Py_XDECREF(am), Py_XDECREF(b), Py_XDECREF(e);
    return d;
}

static PyObject *py_thm1(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"X",    "y",    "mu0", "Sigma0",    "t_eval",   "method",
                             "rtol", "atol", "C0",  "max_steps", "jacobian", NULL};
    PyObject *Xo, *yo, *muo, *So, *to, *method = Py_None, *Co = Py_None, *msteps = Py_None;
    const char *jac = NULL;
    double rtol = 1e-11, atol = 1e-13;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOO|$OddOOz:thm1", kwlist, &Xo, &yo, &muo, &So,
                                     &to, &method, &rtol, &atol, &Co, &msteps, &jac))
        return NULL;
    gmf_ode_opts o;
    if (ode_options(method, rtol, atol, msteps, jac, &o)) return NULL;
    problem p;
    if (problem_open(&p, Xo, yo)) return NULL;
    const char *names[3] = {"mu0", "Sigma0", "C0"};
    state s;
    run rb = {0}, re = {0};
    PyObject *res = NULL;
    size_t T, skip;
    double *tout = NULL, *toutc = NULL;
    if (!state_open(&s, 1, 1, p.D, muo, So, Co, names) && (tout = output_times(to, &T, &skip))) {
        if (!(toutc = PyMem_Malloc((T + skip) * sizeof(double)))) PyErr_NoMemory();
        for (size_t j = 0; toutc && j < T + skip; j++)
            toutc[j] = gmf_flow_time_convert(tout[j], GMF_FLOW_BW, GMF_FLOW_EUCLID, s.K);
    }
    if (toutc) {
        const gmf_oracle oracle = gmf_sqloss_oracle(p.sq);
        Py_BEGIN_ALLOW_THREADS;
        run_solve(&rb, GMF_FLOW_BW, s.K, oracle, s.bw, tout, T + skip, &o);
        if (!rb.rc && !rb.pol.interrupted)
            run_solve(&re, GMF_FLOW_EUCLID, s.K, oracle, s.eu, toutc, T + skip, &o);
        Py_END_ALLOW_THREADS;
        if (!run_error(&rb, tout, skip, &o, "mu0, Sigma0") &&
            !run_error(&re, toutc, skip, &o, "mu0, C0"))
            res = thm1_dict(&rb, &re, skip, &o);
    }
    gmf_traj_free(rb.tr), gmf_traj_free(re.tr);
    PyMem_Free(tout), PyMem_Free(toutc);
    state_close(&s);
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
    const int bw = kind == GMF_FLOW_BW;
    int rc = state_open(&s, bw, !bw, p.D, muo, bw ? So : Py_None, bw ? Py_None : So, names);
    if (rc) goto done;
    const double *y0 = bw ? s.bw : s.eu;
    const npy_intp s2[2] = {(npy_intp)s.K, (npy_intp)s.D},
                   s3[3] = {(npy_intp)s.K, (npy_intp)s.D, (npy_intp)s.D};
    dmu = (PyObject *)gmfpy_zeros(2, s2), dmat = (PyObject *)gmfpy_zeros(3, s3);
    double *ydot = PyMem_RawMalloc(s.N * sizeof(double)), loss = 0;
    if (!dmu || !dmat || !ydot) {
        PyMem_RawFree(ydot);
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto done;
    }
    gmf_flow *f;
    Py_BEGIN_ALLOW_THREADS;
    rc = gmf_flow_new(&f, kind, s.K, gmf_sqloss_oracle(p.sq));
    if (!rc) {
        rc = gmf_flow_rhs(f, y0, ydot);
        if (!rc) rc = gmf_flow_loss(f, y0, &loss);
        gmf_flow_free(f);
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
    state_close(&s);
    problem_close(&p);
    return res;
}

/* ------------------------------------------------------------------------------------------ */
/* the module                                                                                  */

static PyMethodDef methods[] = {
    {"flow", (PyCFunction)(void (*)(void))py_flow, METH_VARARGS | METH_KEYWORDS, flow_doc},
    {"thm1", (PyCFunction)(void (*)(void))py_thm1, METH_VARARGS | METH_KEYWORDS, thm1_doc},
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
        "reached; result, the FlowResult up to t (or None).",
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
