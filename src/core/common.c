/* common.c -- thread-local error messages. */
#include "gmflow/common.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static _Thread_local char errbuf[1024];

int gmf_error(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    return code;
}

const char *gmf_errmsg(void) {
    return errbuf;
}

const char *gmf_strerror(int code) {
    switch (code) {
    case GMF_OK:
        return "success";
    case GMF_EINVAL:
        return "invalid argument";
    case GMF_ENOMEM:
        return "out of memory";
    case GMF_EIO:
        return "I/O error";
    case GMF_EFORMAT:
        return "malformed input";
    case GMF_ENOTPD:
        return "covariance not positive definite";
    case GMF_ESOLVER:
        return "ODE solver failure";
    case GMF_EDIVERGE:
        return "divergence (non-finite values)";
    default:
        return "unknown error";
    }
}

void *gmf_calloc(size_t count, size_t size, const char *what) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        gmf_error(GMF_ENOMEM, "out of memory allocating %zu x %zu bytes for %s", count, size, what);
    return p;
}

int gmf_all_finite(const double *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

int gmf_mul_size(size_t a, size_t b, size_t *out) {
    if (b != 0 && a > SIZE_MAX / b) return 1;
    *out = a * b;
    return 0;
}

int gmf_mul_size3(size_t a, size_t b, size_t c, size_t *out) {
    size_t ab;
    if (gmf_mul_size(a, b, &ab)) return 1;
    return gmf_mul_size(ab, c, out);
}
