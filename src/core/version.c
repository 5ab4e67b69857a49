/* version.c -- the library's version (gmflow/version.h is generated from project(VERSION)). */
#include "gmflow/version.h"

const char *gmf_version(void) {
    return GMFLOW_VERSION_STRING;
}
