/* cli_common.c -- messages and option values shared by the subcommands (src/cli.h). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

int gmf_cli_fail(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int gmf_cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see '%s --help')\n", cmd);
    va_end(ap);
    return 2;
}

int gmf_cli_version(const char *cmd) {
    (void)cmd;
    printf("gmflow %s\n", GMF_VERSION_STRING);
    return 0;
}

int gmf_cli_parse_double(const char *cmd, const char *opt, const char *arg, double *out) {
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (end == arg || *end != '\0')
        return gmf_cli_fail(cmd, "%s: cannot parse '%s' as a number", opt, arg);
    if (!isfinite(v)) return gmf_cli_fail(cmd, "%s: value '%s' is not finite", opt, arg);
    *out = v;
    return 0;
}

int gmf_cli_parse_count(const char *cmd, const char *opt, const char *arg, unsigned long long min,
                        unsigned long long max, unsigned long long *out) {
    const char *p = arg;
    while (*p == ' ')
        p++;
    if (*p == '-')
        return gmf_cli_fail(cmd, "%s: must be an integer >= %llu (got '%s')", opt, min, arg);
    char *end;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 10);
    if (end == p || *end != '\0')
        return gmf_cli_fail(cmd, "%s: cannot parse '%s' as an integer", opt, arg);
    if (errno == ERANGE || v > max)
        return gmf_cli_fail(cmd, "%s: %s is too large (at most %llu)", opt, arg, max);
    if (v < min) return gmf_cli_fail(cmd, "%s: must be >= %llu (got %s)", opt, min, arg);
    *out = v;
    return 0;
}

int gmf_cli_make_dirs(const char *cmd, const char *dir) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return gmf_cli_fail(cmd, "directory name too long: %s", dir);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char save = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return gmf_cli_fail(cmd, "cannot create directory %s: %s", buf, strerror(errno));
            *p = save;
            if (!save) break;
        }
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return gmf_cli_fail(cmd, "%s exists and is not a directory", dir);
    return 0;
}
