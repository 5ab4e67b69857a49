/* gmflow/common.h -- error reporting and small shared helpers.
 *
 * Every fallible library function returns an int status: GMF_OK (0) on success, a negative
 * GMF_E* code otherwise.  The human-readable reason (naming the input and the problem) is kept
 * in a thread-local buffer read with gmf_errmsg(); it stays valid until the next failure on the
 * same thread.
 */
#ifndef GMFLOW_COMMON_H
#define GMFLOW_COMMON_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    GMF_OK = 0,
    GMF_EINVAL = -1,  /* bad argument: dimension mismatch, non-finite value, ... */
    GMF_ENOMEM = -2,  /* allocation failed */
    GMF_EIO = -3,     /* file could not be opened, read or written */
    GMF_EFORMAT = -4, /* file content malformed */
    GMF_ENOTPD = -5,  /* covariance not positive (semi)definite */
    GMF_ESOLVER = -6, /* ODE solver failure */
    GMF_EDIVERGE = -7 /* non-finite loss or state */
};

/* Record an error message (printf-style) and return `code` (so: return gmf_error(...)). */
int gmf_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The last recorded error message on this thread ("" if none). */
const char *gmf_errmsg(void);
/* Short name of an error code ("invalid argument", ...). */
const char *gmf_strerror(int code);

/* calloc that records a GMF_ENOMEM message naming `what` on failure. */
void *gmf_calloc(size_t count, size_t size, const char *what);

/* Overflow-checked size products: *out = a*b (a*b*c); return 0 on success and non-zero on
 * overflow of size_t (then *out is left unchanged).  Use for every size computed from file
 * contents or user input before allocating or indexing with it. */
int gmf_mul_size(size_t a, size_t b, size_t *out);
int gmf_mul_size3(size_t a, size_t b, size_t c, size_t *out);

/* 1 if all n entries are finite. */
int gmf_all_finite(const double *x, size_t n);

#ifdef __cplusplus
}
#endif
#endif
