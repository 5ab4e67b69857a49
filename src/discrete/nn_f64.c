/* nn_f64.c -- the float64 instantiation of nn_tmpl.h (suffix _d): the reference the tests
 * check against finite differences, and the trainer's --precision 64. */
#define real   double
#define SUFFIX _d
#define GEMM   cblas_dgemm
#include "nn_tmpl.h"
