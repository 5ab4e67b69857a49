/* _gmflow.h -- shared pieces of the CPython extension gmflow._gmflow (internal).
 *
 * The extension is split in two files: _gmflow.c (module, errors, array conversion, the flows)
 * and _gmflow_extra.c (closed forms of one component, toys, initial mixtures, checkpoints, IDX).
 * Every function here takes and returns Python objects with the GIL held unless it says so.
 */
#ifndef GMFLOW_PY_H
#define GMFLOW_PY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#define NPY_NO_DEPRECATED_API  NPY_1_7_API_VERSION
#define PY_ARRAY_UNIQUE_SYMBOL gmflow_ARRAY_API
#ifndef GMFPY_IMPORT_ARRAY
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>

/* gmflow.SolverError (set in module init). */
extern PyObject *gmfpy_SolverError;

/* Raise the exception matching a library error code (ValueError for bad input, OSError for I/O,
 * MemoryError, gmflow.SolverError for solver failures and divergence) with the library's message
 * gmf_errmsg(), prefixed by "what: " when what is not NULL.  Returns NULL. */
PyObject *gmfpy_raise(int code, const char *what);

/* obj as a C-contiguous, aligned float64 array (a new reference; a copy unless obj already is
 * one).  ndim dimensions; want[i] >= 0 fixes dimension i, -1 leaves it free; `form` names the
 * shape for the message, e.g. "(K, D)".  Wrong dimensions or shape: ValueError naming `name`; not
 * convertible: TypeError naming `name`.  Non-finite entries: ValueError if check_finite. */
PyArrayObject *gmfpy_f64(PyObject *obj, const char *name, int ndim, const npy_intp *want,
                         const char *form, int check_finite);

/* Set an exception with a printf-style message (floats allowed, unlike PyErr_Format); NULL. */
PyObject *gmfpy_errorf(PyObject *type, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A new zeroed float64 array of the given shape. */
PyArrayObject *gmfpy_zeros(int ndim, const npy_intp *shape);

/* Python long >= lo as size_t (ValueError naming `name` otherwise); 0 or -1. */
int gmfpy_size(PyObject *obj, const char *name, unsigned long long lo, unsigned long long hi,
               size_t *out);

/* _gmflow_extra.c */
PyObject *gmfpy_expectations(PyObject *self, PyObject *args, PyObject *kw);
PyObject *gmfpy_toy(PyObject *self, PyObject *args, PyObject *kw);
PyObject *gmfpy_init(PyObject *self, PyObject *args, PyObject *kw);
PyObject *gmfpy_load_checkpoint(PyObject *self, PyObject *args, PyObject *kw);
PyObject *gmfpy_load_idx(PyObject *self, PyObject *args, PyObject *kw);
extern const char gmfpy_expectations_doc[], gmfpy_toy_doc[], gmfpy_init_doc[],
    gmfpy_load_checkpoint_doc[], gmfpy_load_idx_doc[];

#endif
