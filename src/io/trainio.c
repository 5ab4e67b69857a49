/* trainio.c -- run.json and epochs.csv of a training run (gmflow/trainio.h). */
#include "gmflow/trainio.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gmflow/common.h"
#include "gmflow/io.h"
#include "gmflow/version.h"

int gmf_trainio_write_run(const char *path, const gmf_trainio_run *r) {
    gmf_io_file f;
    const int rc = gmf_io_open(&f, path);
    if (rc) return rc;
    fprintf(f.fp, "{\n  \"format\": \"gmflow-run\",\n  \"version\": 1,\n");
    fprintf(f.fp, "  \"gmflow_version\": \"%s\",\n  \"command\": \"train\",\n  \"argv\": [",
            GMFLOW_VERSION_STRING);
    for (int i = 1; i < r->argc; i++) {
        if (i > 1) fputs(", ", f.fp);
        gmf_io_json_string(f.fp, r->argv[i]);
    }
    fputs("],\n  \"data_dir\": ", f.fp);
    gmf_io_json_string(f.fp, r->data_dir);
    fprintf(f.fp,
            ",\n  \"test_limit\": %zu,\n  \"epochs\": %zu,\n  \"checkpoint\": ", r->test_limit,
            r->epochs);
    gmf_io_json_string(f.fp, r->checkpoint);
    fprintf(f.fp, ",\n  \"status\": \"%s\",\n  \"message\": ", r->status);
    if (r->message)
        gmf_io_json_string(f.fp, r->message);
    else
        fputs("null", f.fp);
    fprintf(f.fp, ",\n  \"last_epoch\": %zu,\n  \"test_loss\": %.17g,\n  \"test_error\": %.17g,\n",
            r->last_epoch, isfinite(r->test_loss) ? r->test_loss : -1.0,
            isfinite(r->test_error) ? r->test_error : -1.0);
    fprintf(f.fp, "  \"ranks\": %d,\n", r->ranks);
    fprintf(f.fp, "  \"run\": %s}\n", r->record);
    return gmf_io_commit(&f);
}

/* Append one CSV row (printf-style) to path, the header line first when the file is new. */
static int append_row(const char *path, const char *header, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int append_row(const char *path, const char *header, const char *fmt, ...) {
    struct stat st;
    const int fresh = stat(path, &st) != 0;
    FILE *fp = fopen(path, "a");
    if (!fp) return gmf_error(GMF_EIO, "cannot write %s: %s", path, strerror(errno));
    if (fresh) fprintf(fp, "%s\n", header);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(fp, fmt, ap);
    va_end(ap);
    if (fclose(fp) != 0) return gmf_error(GMF_EIO, "cannot write %s: %s", path, strerror(errno));
    return GMF_OK;
}

int gmf_trainio_epochs_row(const char *path, size_t epoch, double train_loss, double test_loss,
                           double test_error, double seconds, double samples_per_s) {
    return append_row(path, "epoch,train_loss,test_loss,test_error,seconds,samples_per_s",
                      "%zu,%.9g,%.9g,%.6g,%.4f,%.1f\n", epoch, train_loss, test_loss, test_error,
                      seconds, samples_per_s);
}

int gmf_trainio_mc_row(const char *path, size_t width, size_t repeat, double test_loss,
                       double test_error) {
    return append_row(path, "m,repeat,test_loss,test_error", "%zu,%zu,%.9g,%.6g\n", width, repeat,
                      test_loss, test_error);
}

int gmf_trainio_epochs_truncate(const char *path, size_t last) {
    FILE *fp = fopen(path, "r");
    if (!fp) return GMF_OK;
    gmf_io_file f;
    int rc = gmf_io_open(&f, path);
    if (rc) {
        fclose(fp);
        return rc;
    }
    char line[1024];
    int first = 1;
    while (fgets(line, sizeof line, fp)) {
        char *end;
        unsigned long long e = strtoull(line, &end, 10);
        if (first || (end != line && *end == ',' && e <= last)) fputs(line, f.fp);
        first = 0;
    }
    fclose(fp);
    return gmf_io_commit(&f);
}
