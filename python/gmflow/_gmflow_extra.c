/* _gmflow_extra.c -- gmflow.expectations (the closed forms of one component), gmflow.toy and
 * gmflow.init (the CLI's data and initial mixtures), gmflow.load_checkpoint and
 * gmflow.load_idx (training files), over libgmflow. */
#include "_gmflow.h"

#include <stdlib.h>
#include <string.h>

#include "gmflow/common.h"
#include "gmflow/flow.h"
#include "gmflow/gauss.h"
#include "gmflow/idx.h"
#include "gmflow/nn.h"
#include "gmflow/toy.h"
#include "gmflow/train.h"

/* ------------------------------------------------------------------------------------------ */
/* gmflow.expectations                                                                         */

const char gmfpy_expectations_doc[] =
    "expectations(x, mu, Sigma)\n--\n\n"
    "Closed-form expectations of f(x, theta) = omega relu(beta . x) under one Gaussian\n"
    "theta = (omega, beta) ~ N(mu, Sigma), D = d + 1 (include/gmflow/gauss.h,\n"
    "docs/CLOSED_FORMS.md), for checking against your own Monte Carlo.\n\n"
    "x : (d,) one input, or (n, d) several.  mu : (D,).  Sigma : (D, D) symmetric PSD.\n\n"
    "Returns a dict; with x of shape (n, d) every entry gets a leading axis n:\n"
    "  Ef     E f(x, theta)\n"
    "  grad   (D,)   E grad_theta f\n"
    "  hess   (D, D) E hess_theta f (the delta term absent where s = 0)\n"
    "  stein  (D, D) E[grad f (theta - mu)^T] = E[hess f] Sigma (Stein's identity)\n"
    "  m, s, t, Phi, phi, u0, A, g, kap: the scalars of Y = (0, x) . theta ~ N(m, s^2),\n"
    "  t = m / s, Phi = Phi(t), phi = phi(t), u0 = Cov(omega, Y) / s, A = E relu(Y),\n"
    "  g = E[omega 1{Y > 0}], kap = s E[omega delta(Y)].";

static const char *scalar_names[] = {"m", "s", "t", "Phi", "phi", "u0", "A", "g", "kap"};
#define NSCALARS 9

static void scalars_of(const gmf_gauss_point *p, double out[NSCALARS]) {
    const double v[NSCALARS] = {p->m, p->s, p->t, p->Phi, p->phi, p->u0, p->A, p->g, p->kap};
    memcpy(out, v, sizeof v);
}

/* The result dict: arrays with a leading n axis (batched) or squeezed. */
static PyObject *expectations_dict(PyObject *arr[], const char *const names[], int count,
                                   int batched) {
    PyObject *d = PyDict_New();
    for (int i = 0; d && i < count; i++) {
        PyObject *v = batched ? Py_NewRef(arr[i])
                      : PyArray_NDIM((PyArrayObject *)arr[i]) == 1
                          ? PyFloat_FromDouble(*(double *)PyArray_DATA((PyArrayObject *)arr[i]))
                          : PySequence_GetItem(arr[i], 0);
        if (!v || PyDict_SetItemString(d, names[i], v) < 0) Py_CLEAR(d);
        Py_XDECREF(v);
    }
    return d;
}

PyObject *gmfpy_expectations(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"x", "mu", "Sigma", NULL};
    PyObject *xo, *muo, *So;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO:expectations", kwlist, &xo, &muo, &So))
        return NULL;
    /* x's own dimension decides: (n, d) is a batch, anything else must be (d,) */
    const npy_intp any2[2] = {-1, -1};
    PyArrayObject *xa =
        xo == Py_None ? NULL
                      : (PyArrayObject *)PyArray_FROMANY(xo, NPY_DOUBLE, 0, 0, NPY_ARRAY_IN_ARRAY);
    const int batched = xa && PyArray_NDIM(xa) == 2;
    Py_XDECREF(xa);
    PyErr_Clear(); /* gmfpy_f64 reports a bad x with its name */
    PyArrayObject *x = gmfpy_f64(xo, "x", batched ? 2 : 1, any2, batched ? "(n, d)" : "(d,)", 1);
    if (!x) return NULL;
    const npy_intp n = batched ? PyArray_DIM(x, 0) : 1, d = PyArray_DIM(x, batched);
    const npy_intp D = d + 1, w1[1] = {D}, w2[2] = {D, D};
    PyArrayObject *mu = gmfpy_f64(muo, "mu", 1, w1, "(D,)", 0);
    PyArrayObject *S = mu ? gmfpy_f64(So, "Sigma", 2, w2, "(D, D)", 0) : NULL;
    PyObject *arr[4 + NSCALARS] = {NULL}, *res = NULL;
    double *y = S ? PyMem_Malloc((size_t)(D + D * D) * sizeof(double)) : NULL;
    if (S && !y) PyErr_NoMemory();
    if (!y || d < 1) {
        if (y) PyErr_SetString(PyExc_ValueError, "x: needs at least one entry (d >= 1)");
        goto done;
    }
    memcpy(y, PyArray_DATA(mu), (size_t)D * sizeof(double));
    memcpy(y + D, PyArray_DATA(S), (size_t)(D * D) * sizeof(double));
    int rc = gmf_flow_check_state(GMF_FLOW_BW, 1, (size_t)D, y);
    if (rc) {
        gmfpy_raise(rc, gmf_all_finite(y, (size_t)D) ? "Sigma" : "mu");
        goto done;
    }
    const npy_intp s1[1] = {n}, s2[2] = {n, D}, s3[3] = {n, D, D};
    arr[0] = (PyObject *)gmfpy_zeros(1, s1), arr[1] = (PyObject *)gmfpy_zeros(2, s2);
    arr[2] = (PyObject *)gmfpy_zeros(3, s3), arr[3] = (PyObject *)gmfpy_zeros(3, s3);
    for (int i = 0; i < NSCALARS; i++)
        arr[4 + i] = (PyObject *)gmfpy_zeros(1, s1);
    for (int i = 0; i < 4 + NSCALARS; i++)
        if (!arr[i]) goto done;
    double *out[4 + NSCALARS];
    for (int i = 0; i < 4 + NSCALARS; i++)
        out[i] = PyArray_DATA((PyArrayObject *)arr[i]);
    const double *X = PyArray_DATA(x);
    for (npy_intp i = 0; i < n; i++) {
        gmf_gauss_point p;
        gmf_gauss_eval1((size_t)d, X + i * d, y, y + D, &p, out[1] + i * D, out[2] + i * D * D,
                        out[3] + i * D * D, NULL);
        out[0][i] = p.Ef;
        double sc[NSCALARS];
        scalars_of(&p, sc);
        for (int k = 0; k < NSCALARS; k++)
            out[4 + k][i] = sc[k];
    }
    const char *names[4 + NSCALARS] = {"Ef", "grad", "hess", "stein"};
    for (int i = 0; i < NSCALARS; i++)
        names[4 + i] = scalar_names[i];
    res = expectations_dict(arr, names, 4 + NSCALARS, batched);
done:
    for (int i = 0; i < 4 + NSCALARS; i++)
        Py_XDECREF(arr[i]);
    PyMem_Free(y);
    Py_XDECREF(x), Py_XDECREF(mu), Py_XDECREF(S);
    return res;
}

/* ------------------------------------------------------------------------------------------ */
/* gmflow.toy, gmflow.init                                                                     */

const char gmfpy_toy_doc[] =
    "toy(n=200, d=3, teacher='relu', width=4, noise=0.05, seed=1)\n--\n\n"
    "The built-in regression toys of `gmflow flow` (same generator and seed, so the same data):\n"
    "inputs x_i ~ N(0, I_d), targets y_i = teacher(x_i) + noise N(0, 1), with teacher\n"
    "'relu' (a random ReLU network of `width` neurons) or 'mixture' (a planted Gaussian mixture\n"
    "of `width` components, targets in closed form).  Returns (X (n, d), y (n,)).";

PyObject *gmfpy_toy(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"n", "d", "teacher", "width", "noise", "seed", NULL};
    gmf_toy_opts o = gmf_toy_defaults();
    PyObject *no = NULL, *dobj = NULL, *wo = NULL, *so = NULL;
    const char *teacher = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OOsOdO:toy", kwlist, &no, &dobj, &teacher, &wo,
                                     &o.noise, &so))
        return NULL;
    size_t seed = o.seed;
    if ((no && gmfpy_size(no, "n", 1, 1ULL << 40, &o.n)) ||
        (dobj && gmfpy_size(dobj, "d", 1, 100000, &o.d)) ||
        (wo && gmfpy_size(wo, "width", 1, 1000000, &o.width)) ||
        (so && gmfpy_size(so, "seed", 0, 0xffffffffULL, &seed)))
        return NULL;
    o.seed = (unsigned long)seed;
    if (teacher && !strcmp(teacher, "mixture"))
        o.teacher = GMF_TOY_MIXTURE;
    else if (teacher && strcmp(teacher, "relu"))
        return PyErr_Format(PyExc_ValueError,
                            "teacher: unknown teacher '%s' (choose 'relu' or 'mixture')", teacher);
    double *X = NULL, *y = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = gmf_toy_make(&o, &X, &y);
    Py_END_ALLOW_THREADS;
    if (rc) return gmfpy_raise(rc, NULL);
    const npy_intp sX[2] = {(npy_intp)o.n, (npy_intp)o.d}, sy[1] = {(npy_intp)o.n};
    PyArrayObject *aX = gmfpy_zeros(2, sX), *ay = gmfpy_zeros(1, sy);
    PyObject *res = NULL;
    if (aX && ay) {
        memcpy(PyArray_DATA(aX), X, o.n * o.d * sizeof(double));
        memcpy(PyArray_DATA(ay), y, o.n * sizeof(double));
        res = PyTuple_Pack(2, aX, ay);
    }
    free(X), free(y);
    Py_XDECREF(aX), Py_XDECREF(ay);
    return res;
}

const char gmfpy_init_doc[] =
    "init(K, d, gamma=0.5, seed=2, return_C=False)\n--\n\n"
    "The paper's random initial mixture, as `gmflow flow` draws it (-K, --gamma, --seed): the\n"
    "entries of mu_k ~ N(0, gamma^2), Sigma_k = gamma^2 I, C_k = gamma I, over theta in R^D,\n"
    "D = d + 1 (d is the input dimension).  Returns (mu0 (K, D), Sigma0 (K, D, D)), and C0\n"
    "(K, D, D) third with return_C=True (the square roots the CLI's euclid form starts from).";

PyObject *gmfpy_init(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"K", "d", "gamma", "seed", "return_C", NULL};
    PyObject *Ko, *dobj, *so = NULL;
    double gamma = 0.5;
    int with_C = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|dOp:init", kwlist, &Ko, &dobj, &gamma, &so,
                                     &with_C))
        return NULL;
    size_t K, d, seed = 2;
    if (gmfpy_size(Ko, "K", 1, 1000000, &K) || gmfpy_size(dobj, "d", 1, 100000, &d) ||
        (so && gmfpy_size(so, "seed", 0, 0xffffffffULL, &seed)))
        return NULL;
    const size_t D = d + 1;
    const npy_intp s2[2] = {(npy_intp)K, (npy_intp)D},
                   s3[3] = {(npy_intp)K, (npy_intp)D, (npy_intp)D};
    PyArrayObject *mu = gmfpy_zeros(2, s2), *S = gmfpy_zeros(3, s3), *C = gmfpy_zeros(3, s3);
    PyObject *res = NULL;
    if (mu && S && C) {
        int rc = gmf_toy_init_mixture(K, D, gamma, (unsigned long)seed, PyArray_DATA(mu),
                                      PyArray_DATA(C), PyArray_DATA(S));
        if (rc)
            gmfpy_raise(rc, "gamma");
        else
            res = with_C ? PyTuple_Pack(3, mu, S, C) : PyTuple_Pack(2, mu, S);
    }
    Py_XDECREF(mu), Py_XDECREF(S), Py_XDECREF(C);
    return res;
}

/* ------------------------------------------------------------------------------------------ */
/* gmflow.load_checkpoint                                                                      */

const char gmfpy_load_checkpoint_doc[] =
    "load_checkpoint(path)\n--\n\n"
    "Read a `gmflow train` checkpoint (validated: magic, version, size, checksum, finiteness).\n"
    "Returns a dict: 'kind' ('gm', 'gm-full', 'fc', 'gm-stack' or 'gm-lowrank'), 'd', 'L', 'K',\n"
    "'width', 'Lmid', 'rank' (gm-lowrank's r, else 0), 'fc_scale', 'epoch', 'seed', 'nparams',\n"
    "'params' (the flat parameter vector),\n"
    "'groups' (the group names in order) and one array per group, shaped as in the snapshots\n"
    "(mu (K, d), sigma (K, d), C (K, d, d), U (K, L, d), v (K, L); fc: beta (m, d), omega\n"
    "(m, L); gm-stack: mu1 ... v2; gm-lowrank: also lowrank (K, r, d), row q of component k\n"
    "the column q of V_k), and 'run': the run record of the training run (its\n"
    "hyperparameters, a dict; None for a version 1 checkpoint, which has none).  A bad file\n"
    "raises ValueError (OSError if unreadable).";

/* Group arrays (copies) into dict `res`, and the list of names. */
static int add_groups(PyObject *res, const gmf_nn_model *m) {
    PyObject *names = PyList_New(0);
    if (!names || PyDict_SetItemString(res, "groups", names) < 0) return Py_XDECREF(names), -1;
    Py_DECREF(names);
    for (size_t g = 0; g < m->ngroups; g++) {
        size_t shape[3];
        const size_t nd = gmf_train_group_shape(m, g, shape);
        npy_intp s[3];
        size_t count = 1;
        for (size_t i = 0; i < nd; i++)
            s[i] = (npy_intp)shape[i], count *= shape[i];
        const gmf_nn_group *gr = &m->group[g];
        if (count != gr->n || gr->off + gr->n > m->nparams) {
            PyErr_Format(PyExc_ValueError, "checkpoint: group %s has inconsistent sizes", gr->name);
            return -1;
        }
        PyArrayObject *a = gmfpy_zeros((int)nd, s);
        if (!a) return -1;
        memcpy(PyArray_DATA(a), m->params + gr->off, gr->n * sizeof(double));
        PyObject *nm = PyUnicode_FromString(gr->name);
        int bad = !nm || PyList_Append(names, nm) < 0 || PyDict_SetItem(res, nm, (PyObject *)a) < 0;
        Py_XDECREF(nm), Py_DECREF(a);
        if (bad) return -1;
    }
    return 0;
}

/* The run record (JSON text) as a dict, or None. */
static PyObject *run_record(const char *path, const char *run) {
    if (!run) return Py_NewRef(Py_None);
    PyObject *json = PyImport_ImportModule("json"), *d = NULL;
    if (json) d = PyObject_CallMethod(json, "loads", "s", run);
    Py_XDECREF(json);
    if (!d || !PyDict_Check(d)) {
        Py_XDECREF(d);
        PyErr_Clear();
        return gmfpy_errorf(PyExc_ValueError, "checkpoint %s: the run record is not a JSON object",
                            path);
    }
    return d;
}

static PyObject *checkpoint_dict(const gmf_nn_model *m, uint64_t epoch, uint64_t seed) {
    const npy_intp s[1] = {(npy_intp)m->nparams};
    PyArrayObject *params = gmfpy_zeros(1, s);
    if (!params) return NULL;
    memcpy(PyArray_DATA(params), m->params, m->nparams * sizeof(double));
    PyObject *res = Py_BuildValue(
        "{s:s,s:n,s:n,s:n,s:n,s:n,s:n,s:d,s:K,s:K,s:n,s:O}", "kind", gmf_nn_kind_name(m->kind), "d",
        (Py_ssize_t)m->d, "L", (Py_ssize_t)m->L, "K", (Py_ssize_t)m->K, "width",
        (Py_ssize_t)m->width, "Lmid", (Py_ssize_t)m->Lmid, "rank", (Py_ssize_t)m->rank, "fc_scale",
        m->fc_scale, "epoch", (unsigned long long)epoch, "seed", (unsigned long long)seed,
        "nparams", (Py_ssize_t)m->nparams, "params", (PyObject *)params);
    Py_DECREF(params);
    if (res && add_groups(res, m) < 0) Py_CLEAR(res);
    return res;
}

PyObject *gmfpy_load_checkpoint(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"path", NULL};
    PyObject *pathb = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&:load_checkpoint", kwlist, PyUnicode_FSConverter,
                                     &pathb))
        return NULL;
    const char *path = PyBytes_AS_STRING(pathb);
    gmf_nn_model m;
    uint64_t epoch = 0, seed = 0;
    char *run = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = gmf_train_checkpoint_model(path, &m);
    if (!rc) rc = gmf_train_load_checkpoint_run(path, &m, &epoch, &seed, &run);
    Py_END_ALLOW_THREADS;
    PyObject *res = rc ? gmfpy_raise(rc, NULL) : checkpoint_dict(&m, epoch, seed);
    PyObject *rec = res ? run_record(path, run) : NULL;
    if (res && (!rec || PyDict_SetItemString(res, "run", rec) < 0)) Py_CLEAR(res);
    Py_XDECREF(rec);
    free(run);
    gmf_nn_model_free(&m);
    Py_DECREF(pathb);
    return res;
}

/* ------------------------------------------------------------------------------------------ */
/* gmflow.load_idx                                                                             */

const char gmfpy_load_idx_doc[] =
    "load_idx(path, kind=None)\n--\n\n"
    "Read an MNIST-style IDX file, gzip-compressed or raw (validated: magic, dimensions, exact\n"
    "payload size).  kind: 'images' -> uint8 array (count, rows, cols); 'labels' -> uint8 array\n"
    "(count,); None: whichever the file is.  A bad file raises ValueError naming it (OSError if\n"
    "it cannot be read).";

static PyObject *u8_array(int nd, const npy_intp *shape, const uint8_t *data) {
    PyArrayObject *a = (PyArrayObject *)PyArray_ZEROS(nd, (npy_intp *)shape, NPY_UINT8, 0);
    if (a) memcpy(PyArray_DATA(a), data, (size_t)PyArray_SIZE(a));
    return (PyObject *)a;
}

/* Try images (want 3) or labels (want 1); 0 with *out set, or a library error code with the
 * message in msg. */
static int read_idx(const char *path, int want, PyObject **out, char *msg, size_t len) {
    gmf_idx_images im = {0};
    uint8_t *labels = NULL;
    size_t count = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = want == 3 ? gmf_idx_read_images(path, &im) : gmf_idx_read_labels(path, &count, &labels);
    if (rc) snprintf(msg, len, "%s", gmf_errmsg());
    Py_END_ALLOW_THREADS;
    if (rc) return rc;
    const npy_intp s3[3] = {(npy_intp)im.count, (npy_intp)im.rows, (npy_intp)im.cols},
                   s1[1] = {(npy_intp)count};
    *out = want == 3 ? u8_array(3, s3, im.pixels) : u8_array(1, s1, labels);
    gmf_idx_images_free(&im);
    free(labels);
    return *out ? 0 : GMF_ENOMEM;
}

PyObject *gmfpy_load_idx(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"path", "kind", NULL};
    PyObject *pathb = NULL, *res = NULL;
    const char *kind = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|z:load_idx", kwlist, PyUnicode_FSConverter,
                                     &pathb, &kind))
        return NULL;
    const char *path = PyBytes_AS_STRING(pathb);
    char m1[1100] = "", m2[1100] = "";
    int rc;
    if (kind && strcmp(kind, "images") && strcmp(kind, "labels")) {
        PyErr_Format(PyExc_ValueError,
                     "kind: unknown kind '%s' (choose 'images', 'labels' or None)", kind);
    } else if (kind) {
        rc = read_idx(path, kind[0] == 'i' ? 3 : 1, &res, m1, sizeof m1);
        if (rc && !PyErr_Occurred())
            gmfpy_errorf(rc == GMF_EIO ? PyExc_OSError : PyExc_ValueError, "%s", m1);
    } else if ((rc = read_idx(path, 3, &res, m1, sizeof m1)) && !PyErr_Occurred()) {
        if (rc == GMF_EIO) {
            gmfpy_errorf(PyExc_OSError, "%s", m1);
        } else if ((rc = read_idx(path, 1, &res, m2, sizeof m2)) && !PyErr_Occurred()) {
            gmfpy_errorf(rc == GMF_EIO ? PyExc_OSError : PyExc_ValueError,
                         "neither IDX images nor labels: as images: %s; as labels: %s", m1, m2);
        }
    }
    Py_DECREF(pathb);
    return res;
}
