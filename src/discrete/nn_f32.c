/* nn_f32.c -- the float32 instantiation of nn_tmpl.h (suffix _f): what the trainer runs. */
#define real   float
#define SUFFIX _f
#define GEMM   cblas_sgemm
#include "nn_tmpl.h"
