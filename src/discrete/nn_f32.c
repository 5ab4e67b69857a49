/* nn_f32.c -- the float32 instantiation of nn_tmpl.h (suffix _f): what the trainer runs. */
#define real     float
#define SUFFIX   _f
#define GEMM     cblas_sgemm
#define REAL_F32 1 /* the GM layer may use gm_kern.c (nn_internal.h: GMF_NN_KERN) */
#include "nn_tmpl.h"
