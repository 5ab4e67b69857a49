/* io.c -- files at the edges: CSV data, NPY arrays, JSON mixture states (docs/FORMATS.md).
 *
 * Writers go through gmf_io_open/gmf_io_commit (temporary + fflush + fsync + rename), so a file
 * under its final name is always complete.  Readers validate everything they read and name the
 * file, line and column (CSV, JSON) or the key (state schema) in their errors.
 */
#define _POSIX_C_SOURCE 200809L

#include "gmflow/io.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fault.h"
#include "gmflow/common.h"
#include "gmflow/par.h"

/* ------------------------------------------------------------------------------------------ */
/* atomic writer                                                                               */

int gmf_io_open(gmf_io_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    if (!path || !*path) return gmf_error(GMF_EINVAL, "empty output file name");
    int np = snprintf(f->path, sizeof f->path, "%s", path);
    int nt = snprintf(f->tmp, sizeof f->tmp, "%s.tmp.%ld", path, (long)getpid());
    if (np < 0 || (size_t)np >= sizeof f->path || nt < 0 || (size_t)nt >= sizeof f->tmp) {
        memset(f, 0, sizeof *f);
        return gmf_error(GMF_EINVAL, "output file name too long: %.200s...", path);
    }
    f->fp = fopen(f->tmp, "wb");
    if (!f->fp) {
        int e = errno;
        gmf_error(GMF_EIO, "cannot write %s: cannot create temporary file %s: %s", f->path, f->tmp,
                  strerror(e));
        memset(f, 0, sizeof *f);
        return GMF_EIO;
    }
    return GMF_OK;
}

/* Best effort: make the rename durable by syncing the containing directory. */
static void sync_parent_dir(const char *path) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

int gmf_io_commit(gmf_io_file *f) {
    if (!f->fp) return gmf_error(GMF_EINVAL, "cannot commit %s: file is not open", f->path);
    /* The reason of a failed write: stdio keeps only an error flag, so take errno from the
     * flush of what is still buffered (the same write failing again: ENOSPC, EDQUOT, EIO), else
     * from the last failed write before the commit (errno on entry), else EIO. */
    const char *what = NULL;
    int e0 = errno, e = 0, injected = gmf_io_fault_point();
    errno = 0;
    if (injected) {
        what = "write error (injected by GMFLOW_TEST_FAIL_WRITE)", e = injected;
    } else if (fflush(f->fp) != 0) {
        what = "write error", e = errno ? errno : EIO;
    } else if (ferror(f->fp)) {
        what = "write error", e = e0 ? e0 : EIO;
    } else if (fsync(fileno(f->fp)) != 0 && errno != EINVAL && errno != EROFS) {
        what = "fsync failed", e = errno;
    }
    if (fclose(f->fp) != 0 && !what) what = "close failed", e = errno;
    f->fp = NULL;
    if (what) {
        remove(f->tmp);
        f->tmp[0] = '\0';
        return gmf_error(GMF_EIO, "cannot write %s: %s: %s", f->path, what, strerror(e));
    }
    if (rename(f->tmp, f->path) != 0) {
        e = errno;
        remove(f->tmp);
        f->tmp[0] = '\0';
        return gmf_error(GMF_EIO, "cannot write %s: rename from temporary failed: %s", f->path,
                         strerror(e));
    }
    f->tmp[0] = '\0';
    sync_parent_dir(f->path);
    return GMF_OK;
}

void gmf_io_abort(gmf_io_file *f) {
    if (f->fp) fclose(f->fp);
    f->fp = NULL;
    if (f->tmp[0]) remove(f->tmp);
    f->tmp[0] = '\0';
}

/* ------------------------------------------------------------------------------------------ */
/* CSV                                                                                         */

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Trim [*b, *e) in place of surrounding blanks. */
static void trim(const char **b, const char **e) {
    while (*b < *e && is_space(**b))
        (*b)++;
    while (*e > *b && is_space((*e)[-1]))
        (*e)--;
}

/* Parse [b, e) as a double: 1 on success (whole field consumed), 0 otherwise.  The field lies
 * inside a NUL-terminated line buffer, so it is terminated in place for strtod (no length limit
 * on a field beyond the line's). */
static int parse_field(const char *b, const char *e, double *v) {
    if (b == e) return 0;
    char *ee = (char *)e, save = *ee, *end;
    *ee = '\0';
    errno = 0;
    *v = strtod(b, &end);
    *ee = save;
    return end == e;
}

/* Read one line (with its '\n', if any) into *buf, NUL-terminated.  Returns 1 for a line, 0 at
 * end of file, GMF_EIO on a read error (errno kept in *err), GMF_ENOMEM, or GMF_EFORMAT for a
 * line longer than GMF_IO_CSV_MAX_LINE bytes (nothing more is read then). */
static int csv_getline(FILE *fp, char **buf, size_t *cap, size_t *len, int *err) {
    size_t n = 0;
    int c;
    *len = 0;
    *err = 0;
    errno = 0;
    while ((c = getc_unlocked(fp)) != EOF) {
        if (n + 2 > *cap) {
            if (n > GMF_IO_CSV_MAX_LINE) return GMF_EFORMAT;
            size_t nc = *cap ? 2 * *cap : 256;
            if (nc > GMF_IO_CSV_MAX_LINE + 2) nc = GMF_IO_CSV_MAX_LINE + 2;
            char *nb = realloc(*buf, nc);
            if (!nb) return GMF_ENOMEM;
            *buf = nb, *cap = nc;
        }
        (*buf)[n++] = (char)c;
        if (c == '\n') break;
    }
    if (c == EOF && ferror(fp)) {
        *err = errno ? errno : EIO;
        return GMF_EIO;
    }
    if (n > GMF_IO_CSV_MAX_LINE) return GMF_EFORMAT;
    if (n == 0) return 0;
    (*buf)[n] = '\0';
    *len = n;
    return 1;
}

typedef struct dvec {
    double *v;
    size_t n, cap;
} dvec;

static int dvec_push(dvec *a, double x) {
    if (a->n == a->cap) {
        size_t cap, bytes;
        if (gmf_mul_size(a->cap ? a->cap : 512, 2, &cap) ||
            gmf_mul_size(cap, sizeof(double), &bytes))
            return GMF_ENOMEM;
        double *v = realloc(a->v, bytes);
        if (!v) return GMF_ENOMEM;
        a->v = v, a->cap = cap;
    }
    a->v[a->n++] = x;
    return GMF_OK;
}

/* Printable excerpt of a field for error messages. */
static void excerpt(char *out, size_t outsz, const char *b, const char *e) {
    size_t len = (size_t)(e - b), max = outsz - 4;
    if (len <= max) {
        memcpy(out, b, len);
        out[len] = '\0';
    } else {
        memcpy(out, b, max);
        memcpy(out + max, "...", 4);
    }
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f) *p = '?';
}

int gmf_io_read_csv(const char *path, size_t *n_out, size_t *d_out, double **X_out,
                    double **y_out) {
    *n_out = *d_out = 0;
    *X_out = *y_out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return gmf_error(GMF_EIO, "cannot open %s: %s", path, strerror(errno));

    char *line = NULL;
    size_t linecap = 0, lineno = 0, ncol = 0, ncol_line = 0, nrows = 0;
    int header_line = 0; /* line number of the header, 0 if none */
    int content_seen = 0, rc = GMF_OK;
    dvec vals = {0};
    size_t len;
    double *row = NULL;
    size_t rowcap = 0;
    int got, err;
    while ((got = csv_getline(fp, &line, &linecap, &len, &err)) != 0) {
        if (got < 0) {
            if (got == GMF_EIO)
                rc = gmf_error(GMF_EIO, "%s: read error at line %zu: %s", path, lineno + 1,
                               strerror(err));
            else if (got == GMF_ENOMEM)
                rc = gmf_error(GMF_ENOMEM, "%s: out of memory reading line %zu", path, lineno + 1);
            else
                rc = gmf_error(GMF_EFORMAT,
                               "%s: line %zu is longer than %d bytes (the CSV line limit; not a "
                               "text CSV file?)",
                               path, lineno + 1, GMF_IO_CSV_MAX_LINE);
            goto done;
        }
        lineno++;
        if (len != strlen(line)) {
            rc = gmf_error(GMF_EFORMAT, "%s: line %zu: contains a NUL byte (not a text CSV file)",
                           path, lineno);
            goto done;
        }
        const char *b = line, *e = line + len;
        trim(&b, &e);
        if (b == e || *b == '#') continue;

        /* split into fields */
        size_t nf = 0, nnum = 0, bad_col = 0;
        const char *bad_b = NULL, *bad_e = NULL;
        const char *p = b;
        for (;;) {
            const char *fe = p;
            while (fe < e && *fe != ',')
                fe++;
            const char *tb = p, *te = fe;
            trim(&tb, &te);
            if (nf == rowcap) {
                size_t cap = rowcap ? 2 * rowcap : 16, bytes;
                double *r = gmf_mul_size(cap, sizeof(double), &bytes) ? NULL : realloc(row, bytes);
                if (!r) {
                    rc = gmf_error(GMF_ENOMEM, "%s: out of memory reading line %zu", path, lineno);
                    goto done;
                }
                row = r, rowcap = cap;
            }
            double v = 0;
            if (parse_field(tb, te, &v)) {
                nnum++;
            } else if (!bad_b) {
                bad_b = tb, bad_e = te, bad_col = nf + 1;
            }
            row[nf++] = v;
            if (fe == e) break;
            p = fe + 1;
        }

        if (!content_seen && nnum == 0) { /* a header line: no field is a number */
            content_seen = 1;
            header_line = (int)lineno;
            ncol = nf, ncol_line = lineno;
            if (ncol < 2) {
                rc = gmf_error(GMF_EFORMAT,
                               "%s: line %zu: the header has %zu column; need x_1..x_d and y "
                               "(at least 2 columns)",
                               path, lineno, ncol);
                goto done;
            }
            continue;
        }
        content_seen = 1;
        if (bad_b) {
            char ex[48];
            excerpt(ex, sizeof ex, bad_b, bad_e);
            if (bad_b == bad_e)
                rc = gmf_error(GMF_EFORMAT, "%s: line %zu, column %zu: empty field", path, lineno,
                               bad_col);
            else
                rc = gmf_error(GMF_EFORMAT,
                               "%s: line %zu, column %zu: cannot parse \"%s\" as a number", path,
                               lineno, bad_col, ex);
            goto done;
        }
        for (size_t j = 0; j < nf; j++) {
            if (!isfinite(row[j])) {
                rc = gmf_error(GMF_EFORMAT, "%s: line %zu, column %zu: non-finite value (%g)", path,
                               lineno, j + 1, row[j]);
                goto done;
            }
        }
        if (ncol == 0) {
            ncol = nf, ncol_line = lineno;
            if (ncol < 2) {
                rc = gmf_error(GMF_EFORMAT,
                               "%s: line %zu: only 1 column; need x_1..x_d and y (the last "
                               "column is y), so at least 2 columns",
                               path, lineno);
                goto done;
            }
        } else if (nf != ncol) {
            rc =
                gmf_error(GMF_EFORMAT, "%s: line %zu: %zu columns, expected %zu (as on line %zu%s)",
                          path, lineno, nf, ncol, ncol_line,
                          header_line && (size_t)header_line == ncol_line ? ", the header" : "");
            goto done;
        }
        for (size_t j = 0; j < nf; j++) {
            if (dvec_push(&vals, row[j]) != GMF_OK) {
                rc = gmf_error(GMF_ENOMEM, "%s: out of memory at line %zu", path, lineno);
                goto done;
            }
        }
        nrows++;
    }
    if (nrows == 0) {
        if (lineno == 0)
            rc = gmf_error(GMF_EFORMAT, "%s: empty file (expected rows x_1,...,x_d,y)", path);
        else
            rc = gmf_error(GMF_EFORMAT, "%s: no data rows in %zu line%s (only %s)", path, lineno,
                           lineno == 1 ? "" : "s",
                           header_line ? "a header, blank or comment lines"
                                       : "blank or comment lines");
        goto done;
    }
    {
        size_t d = ncol - 1, xbytes;
        if (gmf_mul_size3(nrows, d, sizeof(double), &xbytes)) {
            rc = gmf_error(GMF_ENOMEM, "%s: %zu x %zu data overflow the address space", path, nrows,
                           d);
            goto done;
        }
        double *X = malloc(xbytes);
        double *y = malloc(nrows * sizeof(double));
        if (!X || !y) {
            free(X), free(y);
            rc = gmf_error(GMF_ENOMEM, "%s: out of memory for %zu x %zu data", path, nrows, d);
            goto done;
        }
        for (size_t i = 0; i < nrows; i++) {
            memcpy(X + i * d, vals.v + i * ncol, d * sizeof(double));
            y[i] = vals.v[i * ncol + d];
        }
        *n_out = nrows, *d_out = d, *X_out = X, *y_out = y;
    }
done:
    free(line);
    free(row);
    free(vals.v);
    fclose(fp);
    return rc;
}

int gmf_io_write_csv_data(const char *path, size_t n, size_t d, const double *X, const double *y) {
    if (n == 0 || d == 0) return gmf_error(GMF_EINVAL, "%s: refusing to write empty data", path);
    if (!gmf_all_finite(X, n * d) || !gmf_all_finite(y, n))
        return gmf_error(GMF_EINVAL, "%s: refusing to write non-finite data", path);
    gmf_io_file f;
    int rc = gmf_io_open(&f, path);
    if (rc) return rc;
    for (size_t j = 0; j < d; j++)
        fprintf(f.fp, "x%zu,", j + 1);
    fprintf(f.fp, "y\n");
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < d; j++)
            fprintf(f.fp, "%.17g,", X[i * d + j]);
        fprintf(f.fp, "%.17g\n", y[i]);
    }
    return gmf_io_commit(&f);
}

/* ------------------------------------------------------------------------------------------ */
/* NPY                                                                                         */

static int host_is_little_endian(void) {
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

static void swap8(double *x) {
    unsigned char b[8], t;
    memcpy(b, x, 8);
    for (int i = 0; i < 4; i++)
        t = b[i], b[i] = b[7 - i], b[7 - i] = t;
    memcpy(x, b, 8);
}

/* Product of the dims; 0 on overflow of size_t element or byte count (with *ok = 0). */
static size_t shape_count(size_t ndim, const size_t *shape, int *ok) {
    size_t c = 1, bytes;
    *ok = 1;
    for (size_t i = 0; i < ndim; i++) {
        if (gmf_mul_size(c, shape[i], &c) || gmf_mul_size(c, sizeof(double), &bytes)) {
            *ok = 0;
            return 0;
        }
    }
    return c;
}

/* Read exactly `count` doubles of an NPY payload that starts at byte `off` of fp into a fresh
 * buffer.  The allocation follows the bytes actually present, never the header alone: a regular
 * file's size is checked first (fstat); any other file (a pipe) is read into a buffer that grows
 * as data arrives.  Trailing bytes are an error. */
/* Reads values first .. first + count - 1 of a payload of `total` values at byte `off` (the
 * stream is at `off`); first > 0 seeks (a rank's row block, gmf_io_read_npy_rows). */
static int npy_payload(FILE *fp, const char *path, size_t off, size_t total, size_t first,
                       size_t count, double **out) {
    const size_t need = count * sizeof(double); /* no overflow: checked by shape_count */
    struct stat st;
    *out = NULL;
    if (fstat(fileno(fp), &st) != 0)
        return gmf_error(GMF_EIO, "%s: cannot stat: %s", path, strerror(errno));
    if (S_ISREG(st.st_mode)) {
        unsigned long long have = (unsigned long long)st.st_size > off ? st.st_size - off : 0;
        if (have != total * sizeof(double))
            return gmf_error(GMF_EFORMAT,
                             "%s: NPY payload size mismatch: the header's shape needs %zu values "
                             "(%zu bytes) after the %zu-byte header, the file has %llu bytes (%s)",
                             path, total, total * sizeof(double), off, have,
                             have < total * sizeof(double) ? "truncated" : "trailing bytes");
    }
    if (first && fseeko(fp, (off_t)(off + first * sizeof(double)), SEEK_SET) != 0)
        return gmf_error(GMF_EIO, "%s: cannot seek to value %zu: %s", path, first, strerror(errno));
    size_t cap = need < ((size_t)1 << 20) ? need : ((size_t)1 << 20), n = 0;
    unsigned char *b = malloc(cap ? cap : 1);
    if (!b) return gmf_error(GMF_ENOMEM, "%s: out of memory for %zu values", path, count);
    for (;;) {
        size_t want = cap - n, got = want ? fread(b + n, 1, want, fp) : 0;
        n += got;
        if (got < want) break;
        if (n == need) break;
        size_t nc = cap > need / 2 ? need : 2 * cap;
        unsigned char *nb = realloc(b, nc);
        if (!nb) {
            free(b);
            return gmf_error(GMF_ENOMEM, "%s: out of memory for %zu values", path, count);
        }
        b = nb, cap = nc;
    }
    int rc = GMF_OK;
    if (ferror(fp))
        rc = gmf_error(GMF_EIO, "%s: read error: %s", path, strerror(errno));
    else if (n < need)
        rc = gmf_error(GMF_EFORMAT, "%s: truncated NPY file: expected %zu values, got %zu bytes",
                       path, count, n);
    else if (first + count == total && fgetc(fp) != EOF)
        rc = gmf_error(GMF_EFORMAT, "%s: trailing bytes after %zu values", path, count);
    if (rc) {
        free(b);
        return rc;
    }
    *out = (double *)(void *)b;
    return GMF_OK;
}

int gmf_io_write_npy(const char *path, const double *data, size_t ndim, const size_t *shape) {
    if (ndim > 8) return gmf_error(GMF_EINVAL, "%s: %zu dimensions (at most 8)", path, ndim);
    int ok;
    size_t count = shape_count(ndim, shape, &ok);
    if (!ok) return gmf_error(GMF_EINVAL, "%s: array size overflows", path);
    if (count && !data) return gmf_error(GMF_EINVAL, "%s: no data", path);

    char dict[512];
    int len = snprintf(dict, sizeof dict, "{'descr': '<f8', 'fortran_order': False, 'shape': (");
    for (size_t i = 0; i < ndim; i++)
        len += snprintf(dict + len, sizeof dict - (size_t)len, "%s%zu", i ? ", " : "", shape[i]);
    len += snprintf(dict + len, sizeof dict - (size_t)len, "%s), }", ndim == 1 ? "," : "");
    /* pad with spaces so that magic (6) + version (2) + length (2) + header is a multiple of 64,
     * the header ending in '\n' */
    size_t total = 10 + (size_t)len + 1;
    size_t padded = (total + 63) / 64 * 64;
    size_t hlen = padded - 10;
    char header[640];
    memcpy(header, dict, (size_t)len);
    memset(header + len, ' ', hlen - (size_t)len - 1);
    header[hlen - 1] = '\n';

    gmf_io_file f;
    int rc = gmf_io_open(&f, path);
    if (rc) return rc;
    unsigned char pre[10] = {0x93,
                             'N',
                             'U',
                             'M',
                             'P',
                             'Y',
                             1,
                             0,
                             (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
    fwrite(pre, 1, sizeof pre, f.fp);
    fwrite(header, 1, hlen, f.fp);
    if (host_is_little_endian()) {
        if (count) fwrite(data, sizeof(double), count, f.fp);
    } else {
        for (size_t i = 0; i < count; i++) {
            double v = data[i];
            swap8(&v);
            fwrite(&v, sizeof v, 1, f.fp);
        }
    }
    return gmf_io_commit(&f);
}

/* Minimal parser of the NPY header: a Python dict literal with keys descr, fortran_order and
 * shape. */
typedef struct npyhdr {
    const char *s, *path;
    size_t pos, len;
} npyhdr;

static void nh_ws(npyhdr *h) {
    while (h->pos < h->len && is_space(h->s[h->pos]))
        h->pos++;
}

static int nh_fail(npyhdr *h, const char *what) {
    return gmf_error(GMF_EFORMAT, "%s: malformed NPY header (%s at offset %zu): %.*s", h->path,
                     what, h->pos, (int)(h->len > 200 ? 200 : h->len), h->s);
}

static int nh_string(npyhdr *h, char *out, size_t outsz) {
    nh_ws(h);
    if (h->pos >= h->len || (h->s[h->pos] != '\'' && h->s[h->pos] != '"'))
        return nh_fail(h, "expected a quoted string");
    char q = h->s[h->pos++];
    size_t k = 0;
    while (h->pos < h->len && h->s[h->pos] != q) {
        if (k + 1 >= outsz) return nh_fail(h, "string too long");
        out[k++] = h->s[h->pos++];
    }
    if (h->pos >= h->len) return nh_fail(h, "unterminated string");
    h->pos++;
    out[k] = '\0';
    return GMF_OK;
}

static int nh_char(npyhdr *h, char c) {
    nh_ws(h);
    if (h->pos < h->len && h->s[h->pos] == c) {
        h->pos++;
        return 1;
    }
    return 0;
}

/* rows: read only rows row0 .. row0 + nrows - 1 (of shape[0]); else the whole array. */
static int read_npy(const char *path, int rows, size_t row0, size_t nrows, double **data_out,
                    size_t *ndim_out, size_t shape_out[8]) {
    *data_out = NULL;
    *ndim_out = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return gmf_error(GMF_EIO, "cannot open %s: %s", path, strerror(errno));
    int rc = GMF_OK;
    char *header = NULL;
    double *data = NULL;
    unsigned char pre[8];
    if (fread(pre, 1, 8, fp) != 8 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        rc = gmf_error(GMF_EFORMAT, "%s: not an NPY file (bad magic)", path);
        goto done;
    }
    size_t hlen;
    if (pre[6] == 1) {
        unsigned char l[2];
        if (fread(l, 1, 2, fp) != 2) goto truncated;
        hlen = (size_t)l[0] | (size_t)l[1] << 8;
    } else if (pre[6] == 2 || pre[6] == 3) {
        unsigned char l[4];
        if (fread(l, 1, 4, fp) != 4) goto truncated;
        hlen = (size_t)l[0] | (size_t)l[1] << 8 | (size_t)l[2] << 16 | (size_t)l[3] << 24;
    } else {
        rc = gmf_error(GMF_EFORMAT, "%s: unsupported NPY format version %d.%d", path, pre[6],
                       pre[7]);
        goto done;
    }
    if (hlen > (1u << 20)) {
        rc = gmf_error(GMF_EFORMAT, "%s: NPY header length %zu is implausible", path, hlen);
        goto done;
    }
    header = malloc(hlen + 1);
    if (!header) {
        rc = gmf_error(GMF_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    if (fread(header, 1, hlen, fp) != hlen) goto truncated;
    header[hlen] = '\0';

    npyhdr h = {header, path, 0, hlen};
    char descr[64] = "", key[64];
    int have_descr = 0, have_fortran = 0, have_shape = 0, fortran = 0;
    size_t ndim = 0, shape[8] = {0};
    if (!nh_char(&h, '{')) {
        rc = nh_fail(&h, "expected '{'");
        goto done;
    }
    while (!nh_char(&h, '}')) {
        if ((rc = nh_string(&h, key, sizeof key))) goto done;
        if (!nh_char(&h, ':')) {
            rc = nh_fail(&h, "expected ':'");
            goto done;
        }
        if (!strcmp(key, "descr")) {
            if ((rc = nh_string(&h, descr, sizeof descr))) goto done;
            have_descr = 1;
        } else if (!strcmp(key, "fortran_order")) {
            nh_ws(&h);
            if (h.len - h.pos >= 4 && !strncmp(h.s + h.pos, "True", 4))
                fortran = 1, h.pos += 4;
            else if (h.len - h.pos >= 5 && !strncmp(h.s + h.pos, "False", 5))
                h.pos += 5;
            else {
                rc = nh_fail(&h, "fortran_order must be True or False");
                goto done;
            }
            have_fortran = 1;
        } else if (!strcmp(key, "shape")) {
            if (!nh_char(&h, '(')) {
                rc = nh_fail(&h, "expected '(' for shape");
                goto done;
            }
            while (!nh_char(&h, ')')) {
                nh_ws(&h);
                if (h.pos >= h.len || h.s[h.pos] < '0' || h.s[h.pos] > '9') {
                    rc = nh_fail(&h, "expected a dimension");
                    goto done;
                }
                if (ndim == 8) {
                    rc = gmf_error(GMF_EFORMAT, "%s: more than 8 dimensions", path);
                    goto done;
                }
                size_t v = 0;
                while (h.pos < h.len && h.s[h.pos] >= '0' && h.s[h.pos] <= '9') {
                    size_t dg = (size_t)(h.s[h.pos++] - '0');
                    if (v > (SIZE_MAX - dg) / 10) {
                        rc = nh_fail(&h, "dimension too large");
                        goto done;
                    }
                    v = v * 10 + dg;
                }
                shape[ndim++] = v;
                if (!nh_char(&h, ',')) {
                    if (!nh_char(&h, ')')) {
                        rc = nh_fail(&h, "expected ',' or ')' in shape");
                        goto done;
                    }
                    break;
                }
            }
            have_shape = 1;
        } else {
            rc = gmf_error(GMF_EFORMAT, "%s: unexpected key '%s' in NPY header", path, key);
            goto done;
        }
        if (!nh_char(&h, ',')) {
            if (!nh_char(&h, '}')) {
                rc = nh_fail(&h, "expected ',' or '}'");
                goto done;
            }
            break;
        }
    }
    nh_ws(&h);
    if (h.pos != h.len) {
        rc = nh_fail(&h, "trailing characters after the dict");
        goto done;
    }
    if (!have_descr || !have_fortran || !have_shape) {
        rc = gmf_error(GMF_EFORMAT, "%s: NPY header lacks '%s'", path,
                       !have_descr     ? "descr"
                       : !have_fortran ? "fortran_order"
                                       : "shape");
        goto done;
    }
    if (strcmp(descr, "<f8") != 0) {
        rc = gmf_error(GMF_EFORMAT,
                       "%s: dtype '%s' is not supported: gmflow reads little-endian float64 "
                       "('<f8') only (in numpy: a.astype('<f8'))",
                       path, descr);
        goto done;
    }
    if (fortran) {
        rc = gmf_error(GMF_EFORMAT,
                       "%s: Fortran-order array is not supported: gmflow reads C order only "
                       "(in numpy: np.ascontiguousarray(a))",
                       path);
        goto done;
    }
    int ok;
    size_t count = shape_count(ndim, shape, &ok);
    if (!ok) {
        rc = gmf_error(GMF_EFORMAT, "%s: array size overflows", path);
        goto done;
    }
    size_t first = 0, want = count;
    if (rows) { /* a row block: the first dimension is the rows */
        if (ndim == 0 || row0 > shape[0] || nrows > shape[0] - row0) {
            rc = gmf_error(GMF_EINVAL, "%s: rows %zu..%zu requested, the array has %zu", path, row0,
                           row0 + nrows, ndim ? shape[0] : 0);
            goto done;
        }
        const size_t per = shape[0] ? count / shape[0] : 0;
        first = row0 * per, want = nrows * per;
    }
    if ((rc = npy_payload(fp, path, (pre[6] == 1 ? 10 : 12) + hlen, count, first, want, &data)))
        goto done;
    if (!host_is_little_endian())
        for (size_t i = 0; i < want; i++)
            swap8(&data[i]);
    *data_out = data;
    data = NULL;
    *ndim_out = ndim;
    for (size_t i = 0; i < 8; i++)
        shape_out[i] = i < ndim ? shape[i] : 0;
    goto done;
truncated:
    rc = gmf_error(GMF_EFORMAT, "%s: truncated NPY header", path);
done:
    free(header);
    free(data);
    fclose(fp);
    return rc;
}

int gmf_io_read_npy(const char *path, double **data, size_t *ndim, size_t shape[8]) {
    return read_npy(path, 0, 0, 0, data, ndim, shape);
}

int gmf_io_read_npy_rows(const char *path, size_t row0, size_t nrows, double **data, size_t *ndim,
                         size_t shape[8]) {
    return read_npy(path, 1, row0, nrows, data, ndim, shape);
}

int gmf_io_read_xy_npy(const char *path, int rank, int size, size_t *n, size_t *d, size_t *i0,
                       size_t *nloc, double **X, double **y) {
    *X = *y = NULL;
    double *a = NULL;
    size_t ndim, shape[8];
    int rc = gmf_io_read_npy_rows(path, 0, 0, &a, &ndim, shape); /* the header: the shape */
    free(a);
    a = NULL;
    if (rc) return rc;
    if (ndim != 2 || shape[0] < 1 || shape[1] < 2)
        return gmf_error(GMF_EFORMAT,
                         "%s: expected a 2-d array of shape (n, d + 1) with rows x_1..x_d, y "
                         "(n >= 1, d >= 1); got %zu dimensions%s",
                         path, ndim, ndim == 2 ? " with n < 1 or fewer than 2 columns" : "");
    *n = shape[0], *d = shape[1] - 1;
    gmf_par_block(*n, rank, size, i0, nloc);
    if ((rc = gmf_io_read_npy_rows(path, *i0, *nloc, &a, &ndim, shape))) return rc;
    /* y out, then X compacted in place (row i moves down to i d <= i (d + 1)): the peak is the
     * block plus y, not two copies of it */
    const size_t m = *nloc, dd = *d;
    *y = malloc((m ? m : 1) * sizeof(double));
    if (!*y) {
        free(a);
        return gmf_error(GMF_ENOMEM, "%s: out of memory for %zu rows", path, m);
    }
    for (size_t i = 0; i < m; i++)
        (*y)[i] = a[i * (dd + 1) + dd];
    for (size_t i = 1; i < m; i++)
        memmove(a + i * dd, a + i * (dd + 1), dd * sizeof(double));
    double *shrunk = m ? realloc(a, m * dd * sizeof(double)) : NULL;
    *X = shrunk ? shrunk : a; /* a failed shrink keeps the larger block */
    return GMF_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* JSON: a small strict parser (RFC 8259 values; no NaN/Infinity) into a tree                  */

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;

typedef struct jval {
    jtype type;
    size_t line, col;
    double num;
    int boolean;
    char *str;          /* J_STR */
    size_t n;           /* J_ARR, J_OBJ: number of items */
    struct jval *items; /* J_ARR elements, J_OBJ values */
    char **keys;        /* J_OBJ keys */
} jval;

static void jfree(jval *v) {
    if (v->type == J_STR) free(v->str);
    if (v->type == J_ARR || v->type == J_OBJ) {
        for (size_t i = 0; i < v->n; i++) {
            jfree(&v->items[i]);
            if (v->keys) free(v->keys[i]);
        }
        free(v->items);
        free(v->keys);
    }
    memset(v, 0, sizeof *v);
}

typedef struct jparser {
    const char *s, *path;
    size_t len, pos, line, linestart;
    int depth;
} jparser;

static size_t jp_col(const jparser *p) {
    return p->pos - p->linestart + 1;
}

static int jp_fail(const jparser *p, const char *what) {
    return gmf_error(GMF_EFORMAT, "%s: line %zu, column %zu: %s%s", p->path, p->line, jp_col(p),
                     what, p->pos >= p->len ? " (unexpected end of file: truncated?)" : "");
}

static void jp_ws(jparser *p) {
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c == '\n')
            p->line++, p->linestart = p->pos + 1;
        else if (c != ' ' && c != '\t' && c != '\r')
            break;
        p->pos++;
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int jp_hex4(jparser *p, unsigned *u) {
    if (p->len - p->pos < 4) return jp_fail(p, "truncated \\u escape");
    *u = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p->s[p->pos + (size_t)i]);
        if (h < 0) return jp_fail(p, "bad \\u escape");
        *u = *u * 16 + (unsigned)h;
    }
    p->pos += 4;
    return GMF_OK;
}

static int jp_string(jparser *p, char **out) {
    /* p->s[p->pos] == '"' */
    p->pos++;
    size_t cap = 16, k = 0;
    char *buf = malloc(cap);
    if (!buf) return gmf_error(GMF_ENOMEM, "%s: out of memory", p->path);
    int rc = GMF_OK;
    for (;;) {
        if (p->pos >= p->len) {
            rc = jp_fail(p, "unterminated string");
            break;
        }
        unsigned char c = (unsigned char)p->s[p->pos];
        if (k + 5 > cap) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                rc = gmf_error(GMF_ENOMEM, "%s: out of memory", p->path);
                break;
            }
            buf = nb;
        }
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20) {
            rc = jp_fail(p, "control character in string");
            break;
        }
        if (c != '\\') {
            buf[k++] = (char)c;
            p->pos++;
            continue;
        }
        p->pos++;
        if (p->pos >= p->len) {
            rc = jp_fail(p, "unterminated string");
            break;
        }
        char e = p->s[p->pos++];
        switch (e) {
        case '"':
            buf[k++] = '"';
            break;
        case '\\':
            buf[k++] = '\\';
            break;
        case '/':
            buf[k++] = '/';
            break;
        case 'b':
            buf[k++] = '\b';
            break;
        case 'f':
            buf[k++] = '\f';
            break;
        case 'n':
            buf[k++] = '\n';
            break;
        case 'r':
            buf[k++] = '\r';
            break;
        case 't':
            buf[k++] = '\t';
            break;
        case 'u': {
            unsigned u;
            if ((rc = jp_hex4(p, &u))) break;
            if (u >= 0xD800 && u < 0xDC00) { /* surrogate pair */
                unsigned lo;
                if (p->len - p->pos < 6 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
                    rc = jp_fail(p, "unpaired surrogate in \\u escape");
                    break;
                }
                p->pos += 2;
                if ((rc = jp_hex4(p, &lo))) break;
                if (lo < 0xDC00 || lo >= 0xE000) {
                    rc = jp_fail(p, "bad low surrogate in \\u escape");
                    break;
                }
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            } else if (u >= 0xDC00 && u < 0xE000) {
                rc = jp_fail(p, "unpaired surrogate in \\u escape");
                break;
            }
            if (u == 0) {
                rc = jp_fail(p, "\\u0000 in string");
                break;
            }
            if (u < 0x80)
                buf[k++] = (char)u;
            else if (u < 0x800) {
                buf[k++] = (char)(0xC0 | (u >> 6));
                buf[k++] = (char)(0x80 | (u & 0x3F));
            } else if (u < 0x10000) {
                buf[k++] = (char)(0xE0 | (u >> 12));
                buf[k++] = (char)(0x80 | ((u >> 6) & 0x3F));
                buf[k++] = (char)(0x80 | (u & 0x3F));
            } else {
                buf[k++] = (char)(0xF0 | (u >> 18));
                buf[k++] = (char)(0x80 | ((u >> 12) & 0x3F));
                buf[k++] = (char)(0x80 | ((u >> 6) & 0x3F));
                buf[k++] = (char)(0x80 | (u & 0x3F));
            }
            break;
        }
        default:
            p->pos--, rc = jp_fail(p, "invalid escape in string");
        }
        if (rc) break;
    }
    if (rc) {
        free(buf);
        return rc;
    }
    buf[k] = '\0';
    *out = buf;
    return GMF_OK;
}

static int is_digit(char c) {
    return c >= '0' && c <= '9';
}

static int jp_number(jparser *p, double *out) {
    size_t start = p->pos, i = p->pos;
    const char *s = p->s;
    if (i < p->len && s[i] == '-') i++;
    if (i < p->len && (s[i] == 'I' || s[i] == 'N'))
        return jp_fail(p, "non-finite number (NaN/Infinity is not valid JSON)");
    if (i >= p->len || !is_digit(s[i])) return jp_fail(p, "invalid number");
    if (s[i] == '0')
        i++;
    else
        while (i < p->len && is_digit(s[i]))
            i++;
    if (i < p->len && s[i] == '.') {
        i++;
        if (i >= p->len || !is_digit(s[i])) {
            p->pos = i;
            return jp_fail(p, "invalid number: digit expected after '.'");
        }
        while (i < p->len && is_digit(s[i]))
            i++;
    }
    if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < p->len && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= p->len || !is_digit(s[i])) {
            p->pos = i;
            return jp_fail(p, "invalid number: digit expected in exponent");
        }
        while (i < p->len && is_digit(s[i]))
            i++;
    }
    char *end;
    double v = strtod(s + start, &end);
    if (end != s + i) return jp_fail(p, "invalid number");
    if (!isfinite(v)) return jp_fail(p, "number out of the range of a double");
    *out = v;
    p->pos = i;
    return GMF_OK;
}

static int jp_value(jparser *p, jval *v);

static int jp_push(jparser *p, jval *v, size_t *cap) {
    if (v->n == *cap) {
        size_t nc = *cap ? 2 * *cap : 4;
        jval *items = realloc(v->items, nc * sizeof *items);
        if (!items) return gmf_error(GMF_ENOMEM, "%s: out of memory", p->path);
        v->items = items;
        if (v->type == J_OBJ) {
            char **keys = realloc(v->keys, nc * sizeof *keys);
            if (!keys) return gmf_error(GMF_ENOMEM, "%s: out of memory", p->path);
            v->keys = keys;
        }
        *cap = nc;
    }
    memset(&v->items[v->n], 0, sizeof v->items[v->n]);
    if (v->type == J_OBJ) v->keys[v->n] = NULL;
    v->n++;
    return GMF_OK;
}

static int jp_container(jparser *p, jval *v, int obj) {
    if (++p->depth > 64) return jp_fail(p, "nesting deeper than 64 levels");
    v->type = obj ? J_OBJ : J_ARR;
    p->pos++; /* '{' or '[' */
    size_t cap = 0;
    char close = obj ? '}' : ']';
    jp_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        p->depth--;
        return GMF_OK;
    }
    for (;;) {
        int rc;
        jp_ws(p);
        char *key = NULL;
        if (obj) {
            if (p->pos >= p->len || p->s[p->pos] != '"')
                return jp_fail(p, "expected a string key in object");
            size_t kl = p->line, kc = jp_col(p);
            if ((rc = jp_string(p, &key))) return rc;
            for (size_t i = 0; i < v->n; i++) {
                if (!strcmp(v->keys[i], key)) {
                    gmf_error(GMF_EFORMAT, "%s: line %zu, column %zu: duplicate key \"%s\"",
                              p->path, kl, kc, key);
                    free(key);
                    return GMF_EFORMAT;
                }
            }
            jp_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') {
                free(key);
                return jp_fail(p, "expected ':' after key");
            }
            p->pos++;
            jp_ws(p);
        }
        if ((rc = jp_push(p, v, &cap))) {
            free(key);
            return rc;
        }
        if (obj) v->keys[v->n - 1] = key;
        if ((rc = jp_value(p, &v->items[v->n - 1]))) return rc;
        jp_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == close) {
            p->pos++;
            break;
        }
        return jp_fail(p, obj ? "expected ',' or '}' in object" : "expected ',' or ']' in array");
    }
    p->depth--;
    return GMF_OK;
}

static int jp_value(jparser *p, jval *v) {
    jp_ws(p);
    v->line = p->line, v->col = jp_col(p);
    if (p->pos >= p->len) return jp_fail(p, "expected a JSON value");
    char c = p->s[p->pos];
    if (c == '{') return jp_container(p, v, 1);
    if (c == '[') return jp_container(p, v, 0);
    if (c == '"') {
        v->type = J_STR;
        return jp_string(p, &v->str);
    }
    if (c == '-' || is_digit(c) || c == 'N' || c == 'I') {
        v->type = J_NUM;
        return jp_number(p, &v->num);
    }
    static const struct {
        const char *word;
        jtype type;
        int b;
    } lits[] = {{"true", J_BOOL, 1}, {"false", J_BOOL, 0}, {"null", J_NULL, 0}};
    for (size_t i = 0; i < 3; i++) {
        size_t l = strlen(lits[i].word);
        if (p->len - p->pos >= l && !strncmp(p->s + p->pos, lits[i].word, l)) {
            v->type = lits[i].type, v->boolean = lits[i].b;
            p->pos += l;
            return GMF_OK;
        }
    }
    return jp_fail(p, "unexpected character (expected a JSON value)");
}

/* Read a whole file (NUL-terminated). */
static int slurp(const char *path, char **buf, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return gmf_error(GMF_EIO, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    if (!b) {
        fclose(fp);
        return gmf_error(GMF_ENOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n + 1 >= cap) {
            if (cap > ((size_t)1 << 32)) {
                free(b);
                fclose(fp);
                return gmf_error(GMF_EFORMAT, "%s: file too large", path);
            }
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                fclose(fp);
                return gmf_error(GMF_ENOMEM, "%s: out of memory", path);
            }
            b = nb, cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - 1 - n, fp);
        if (memchr(b + n, '\0', r)) { /* fail early (e.g. /dev/zero) instead of reading on */
            free(b);
            fclose(fp);
            return gmf_error(GMF_EFORMAT, "%s: contains a NUL byte (not a JSON text file)", path);
        }
        n += r;
        if (r == 0) break;
    }
    if (ferror(fp)) {
        int e = errno;
        free(b);
        fclose(fp);
        return gmf_error(GMF_EIO, "%s: read error: %s", path, strerror(e));
    }
    fclose(fp);
    b[n] = '\0';
    if (strlen(b) != n) {
        free(b);
        return gmf_error(GMF_EFORMAT, "%s: contains a NUL byte (not a JSON text file)", path);
    }
    *buf = b, *len = n;
    return GMF_OK;
}

static int json_parse_file(const char *path, jval *root) {
    memset(root, 0, sizeof *root);
    char *buf = NULL;
    size_t len = 0;
    int rc = slurp(path, &buf, &len);
    if (rc) return rc;
    jparser p = {buf, path, len, 0, 1, 0, 0};
    jp_ws(&p);
    if (p.pos == len) {
        free(buf);
        return gmf_error(GMF_EFORMAT, "%s: empty file (expected a JSON object)", path);
    }
    if (buf[p.pos] != '{') {
        rc = jp_fail(&p, "expected a JSON object '{'");
    } else if (!(rc = jp_value(&p, root))) {
        jp_ws(&p);
        if (p.pos != len) rc = jp_fail(&p, "trailing characters after the JSON object");
    }
    if (rc) jfree(root);
    free(buf);
    return rc;
}

static const jval *jget(const jval *obj, const char *key) {
    for (size_t i = 0; i < obj->n; i++)
        if (!strcmp(obj->keys[i], key)) return &obj->items[i];
    return NULL;
}

static const char *jtype_name(jtype t) {
    switch (t) {
    case J_NULL:
        return "null";
    case J_BOOL:
        return "a boolean";
    case J_NUM:
        return "a number";
    case J_STR:
        return "a string";
    case J_ARR:
        return "an array";
    default:
        return "an object";
    }
}

/* ------------------------------------------------------------------------------------------ */
/* state JSON                                                                                  */

static int state_dims_ok(const gmf_io_state *s, const char *path) {
    if (s->K < 1 || s->d < 1)
        return gmf_error(GMF_EINVAL, "%s: state needs K >= 1 and d >= 1 (got K = %zu, d = %zu)",
                         path, s->K, s->d);
    if (s->D != s->d + 1)
        return gmf_error(GMF_EINVAL, "%s: state has D = %zu, must be d + 1 = %zu", path, s->D,
                         s->d + 1);
    size_t n;
    if (gmf_mul_size3(s->K, s->D, s->D, &n) || n > ((size_t)1 << 40) / sizeof(double))
        return gmf_error(GMF_EINVAL, "%s: state too large (K = %zu, D = %zu)", path, s->K, s->D);
    return GMF_OK;
}

static void write_matrix_list(FILE *fp, const char *key, size_t K, size_t D, const double *A,
                              int last) {
    fprintf(fp, "  \"%s\": [\n", key);
    for (size_t k = 0; k < K; k++) {
        fprintf(fp, "    [\n");
        for (size_t i = 0; i < D; i++) {
            fprintf(fp, "      [");
            for (size_t j = 0; j < D; j++)
                fprintf(fp, "%s%.17g", j ? ", " : "", A[(k * D + i) * D + j]);
            fprintf(fp, "]%s\n", i + 1 < D ? "," : "");
        }
        fprintf(fp, "    ]%s\n", k + 1 < K ? "," : "");
    }
    fprintf(fp, "  ]%s\n", last ? "" : ",");
}

/* Mixture weights: finite, >= -GMF_IO_W_TOL, summing to 1 within GMF_IO_W_TOL. */
#define GMF_IO_W_TOL 1e-12
static int state_weights_ok(const char *path, size_t K, const double *w) {
    double sum = 0.0;
    for (size_t k = 0; k < K; k++) {
        if (!isfinite(w[k]) || w[k] < -GMF_IO_W_TOL)
            return gmf_error(GMF_EINVAL, "%s: key \"w\"[%zu] = %g is not a finite weight >= 0",
                             path, k, w[k]);
        sum += w[k];
    }
    if (!(fabs(sum - 1.0) <= GMF_IO_W_TOL))
        return gmf_error(GMF_EINVAL, "%s: key \"w\": the weights sum to %.17g, not 1 (within %g)",
                         path, sum, GMF_IO_W_TOL);
    return GMF_OK;
}

int gmf_io_write_state(const char *path, const gmf_io_state *s) {
    int rc = state_dims_ok(s, path);
    if (rc) return rc;
    size_t K = s->K, D = s->D;
    if (!s->mu || !s->Sigma || (s->euclid && !s->C))
        return gmf_error(GMF_EINVAL, "%s: state is missing %s", path,
                         !s->mu      ? "mu"
                         : !s->Sigma ? "Sigma"
                                     : "C");
    if (!isfinite(s->t)) return gmf_error(GMF_EINVAL, "%s: state time t is not finite", path);
    if (!gmf_all_finite(s->mu, K * D) || !gmf_all_finite(s->Sigma, K * D * D) ||
        (s->euclid && !gmf_all_finite(s->C, K * D * D)))
        return gmf_error(GMF_EINVAL, "%s: refusing to write a state with non-finite entries", path);
    if (s->w && (rc = state_weights_ok(path, K, s->w))) return rc;
    gmf_io_file f;
    if ((rc = gmf_io_open(&f, path))) return rc;
    FILE *fp = f.fp;
    fprintf(fp, "{\n  \"format\": \"gmflow-state\",\n  \"version\": 1,\n");
    fprintf(fp, "  \"form\": \"%s\",\n  \"t\": %.17g,\n  \"K\": %zu,\n  \"d\": %zu,\n",
            s->euclid ? "euclid" : "bw", s->t, K, s->d);
    fprintf(fp, "  \"mu\": [\n");
    for (size_t k = 0; k < K; k++) {
        fprintf(fp, "    [");
        for (size_t j = 0; j < D; j++)
            fprintf(fp, "%s%.17g", j ? ", " : "", s->mu[k * D + j]);
        fprintf(fp, "]%s\n", k + 1 < K ? "," : "");
    }
    fprintf(fp, "  ],\n");
    write_matrix_list(fp, "Sigma", K, D, s->Sigma, !s->euclid && !s->w);
    if (s->euclid) write_matrix_list(fp, "C", K, D, s->C, !s->w);
    if (s->w) { /* mixture weights (WFR runs, docs/WFR.md) */
        fprintf(fp, "  \"w\": [");
        for (size_t k = 0; k < K; k++)
            fprintf(fp, "%s%.17g", k ? ", " : "", s->w[k]);
        fprintf(fp, "]\n");
    }
    fprintf(fp, "}\n");
    return gmf_io_commit(&f);
}

void gmf_io_state_free(gmf_io_state *s) {
    free(s->mu);
    free(s->Sigma);
    free(s->C);
    free(s->w);
    memset(s, 0, sizeof *s);
}

/* Number of numbers in a JSON tree (what a file can fill; bounds the allocations). */
static size_t jcount_numbers(const jval *v) {
    if (v->type == J_NUM) return 1;
    size_t c = 0;
    if (v->type == J_ARR || v->type == J_OBJ)
        for (size_t i = 0; i < v->n; i++)
            c += jcount_numbers(&v->items[i]);
    return c;
}

/* A positive integer (integral number >= 1, <= max). */
static int state_posint(const char *path, const jval *root, const char *key, size_t max,
                        size_t *out) {
    const jval *v = jget(root, key);
    if (!v) return gmf_error(GMF_EFORMAT, "%s: missing key \"%s\"", path, key);
    if (v->type != J_NUM)
        return gmf_error(GMF_EFORMAT, "%s: key \"%s\" (line %zu): expected an integer, got %s",
                         path, key, v->line, jtype_name(v->type));
    if (v->num != floor(v->num) || v->num < 1 || v->num > (double)max)
        return gmf_error(GMF_EFORMAT,
                         "%s: key \"%s\" (line %zu): expected an integer in [1, %zu], got %.17g",
                         path, key, v->line, max, v->num);
    *out = (size_t)v->num;
    return GMF_OK;
}

/* Fill out[0..len) from a nested array of shape dims[0..nd) (row-major). */
static int state_tensor(const char *path, const char *key, const jval *v, size_t nd,
                        const size_t *dims, const char *const *dimnames, double *out, char *idx,
                        size_t idxlen) {
    if (v->type != J_ARR)
        return gmf_error(GMF_EFORMAT, "%s: key \"%s\"%s (line %zu): expected an array, got %s",
                         path, key, idx, v->line, jtype_name(v->type));
    if (v->n != dims[0])
        return gmf_error(GMF_EFORMAT,
                         "%s: key \"%s\"%s (line %zu): expected %zu entries (%s), got %zu", path,
                         key, idx, v->line, dims[0], dimnames[0], v->n);
    size_t stride = 1;
    for (size_t i = 1; i < nd; i++)
        stride *= dims[i];
    size_t base = strlen(idx);
    for (size_t i = 0; i < v->n; i++) {
        snprintf(idx + base, idxlen - base, "[%zu]", i);
        const jval *e = &v->items[i];
        if (nd == 1) {
            if (e->type != J_NUM)
                return gmf_error(GMF_EFORMAT,
                                 "%s: key \"%s\"%s (line %zu, column %zu): expected a number, "
                                 "got %s",
                                 path, key, idx, e->line, e->col, jtype_name(e->type));
            out[i] = e->num;
        } else {
            int rc = state_tensor(path, key, e, nd - 1, dims + 1, dimnames + 1, out + i * stride,
                                  idx, idxlen);
            if (rc) return rc;
        }
    }
    idx[base] = '\0';
    return GMF_OK;
}

int gmf_io_read_state(const char *path, gmf_io_state *out) {
    memset(out, 0, sizeof *out);
    jval root;
    int rc = json_parse_file(path, &root);
    if (rc) return rc;
    gmf_io_state s = {0};
    static const char *const known[] = {"format", "version", "form",  "t", "K",
                                        "d",      "mu",      "Sigma", "C", "w"};
    for (size_t i = 0; i < root.n; i++) {
        int ok = 0;
        for (size_t j = 0; j < sizeof known / sizeof known[0]; j++)
            ok |= !strcmp(root.keys[i], known[j]);
        if (!ok) {
            rc = gmf_error(GMF_EFORMAT, "%s: unknown key \"%s\" (line %zu) in a gmflow state", path,
                           root.keys[i], root.items[i].line);
            goto fail;
        }
    }
    const jval *v = jget(&root, "format");
    if (!v) {
        rc = gmf_error(GMF_EFORMAT, "%s: missing key \"format\" (not a gmflow state file?)", path);
        goto fail;
    }
    if (v->type != J_STR || strcmp(v->str, "gmflow-state") != 0) {
        rc = gmf_error(GMF_EFORMAT, "%s: key \"format\": expected \"gmflow-state\", got %s%s%s",
                       path, v->type == J_STR ? "\"" : jtype_name(v->type),
                       v->type == J_STR ? v->str : "", v->type == J_STR ? "\"" : "");
        goto fail;
    }
    v = jget(&root, "version");
    if (!v) {
        rc = gmf_error(GMF_EFORMAT, "%s: missing key \"version\"", path);
        goto fail;
    }
    if (v->type != J_NUM || v->num != 1) {
        if (v->type == J_NUM)
            rc = gmf_error(GMF_EFORMAT,
                           "%s: key \"version\": unsupported version %g (this gmflow reads 1)",
                           path, v->num);
        else
            rc = gmf_error(GMF_EFORMAT, "%s: key \"version\": expected 1, got %s", path,
                           jtype_name(v->type));
        goto fail;
    }
    v = jget(&root, "form");
    if (!v) {
        rc = gmf_error(GMF_EFORMAT, "%s: missing key \"form\"", path);
        goto fail;
    }
    if (v->type != J_STR || (strcmp(v->str, "bw") && strcmp(v->str, "euclid"))) {
        rc = gmf_error(GMF_EFORMAT, "%s: key \"form\": expected \"bw\" or \"euclid\", got %s%s%s",
                       path, v->type == J_STR ? "\"" : jtype_name(v->type),
                       v->type == J_STR ? v->str : "", v->type == J_STR ? "\"" : "");
        goto fail;
    }
    s.euclid = !strcmp(v->str, "euclid");
    v = jget(&root, "t");
    if (!v) {
        rc = gmf_error(GMF_EFORMAT, "%s: missing key \"t\"", path);
        goto fail;
    }
    if (v->type != J_NUM) {
        rc = gmf_error(GMF_EFORMAT, "%s: key \"t\": expected a number, got %s", path,
                       jtype_name(v->type));
        goto fail;
    }
    s.t = v->num;
    if ((rc = state_posint(path, &root, "K", 1000000, &s.K))) goto fail;
    if ((rc = state_posint(path, &root, "d", 100000, &s.d))) goto fail;
    s.D = s.d + 1;
    if ((rc = state_dims_ok(&s, path))) {
        rc = GMF_EFORMAT;
        goto fail;
    }
    size_t K = s.K, D = s.D;
    const jval *jC = jget(&root, "C");
    if (s.euclid && !jC) {
        rc = gmf_error(GMF_EFORMAT, "%s: missing key \"C\" (required with form \"euclid\")", path);
        goto fail;
    }
    if (!s.euclid && jC) {
        rc = gmf_error(GMF_EFORMAT, "%s: key \"C\" is only allowed with form \"euclid\"", path);
        goto fail;
    }
    /* Allocate only what the file can fill: K*D + (1 or 2) K*D*D numbers must be present
     * (state_dims_ok bounded K*D*D, so these sums do not overflow). */
    const size_t need = K * D + (s.euclid ? 2 : 1) * K * D * D, have = jcount_numbers(&root);
    if (have < need) {
        rc = gmf_error(GMF_EFORMAT,
                       "%s: K = %zu and d = %zu need %zu numbers in \"mu\", \"Sigma\"%s, the "
                       "file holds %zu numbers in all (truncated, or K/d wrong?)",
                       path, K, s.d, need, s.euclid ? " and \"C\"" : "", have);
        goto fail;
    }
    s.mu = gmf_calloc(K * D, sizeof(double), "state mu");
    s.Sigma = gmf_calloc(K * D * D, sizeof(double), "state Sigma");
    if (s.euclid) s.C = gmf_calloc(K * D * D, sizeof(double), "state C");
    if (!s.mu || !s.Sigma || (s.euclid && !s.C)) {
        rc = gmf_error(GMF_ENOMEM, "%s: out of memory for a state of K = %zu, d = %zu", path, K,
                       s.d);
        goto fail;
    }
    char idx[128];
    size_t dims[3] = {K, D, D};
    static const char *const names_mu[] = {"K", "D = d+1"};
    static const char *const names_mat[] = {"K", "D = d+1", "D = d+1"};
    static const char *const keys[3] = {"mu", "Sigma", "C"};
    double *dst[3] = {s.mu, s.Sigma, s.C};
    for (int i = 0; i < 3; i++) {
        if (i == 2 && !s.euclid) break;
        v = jget(&root, keys[i]);
        if (!v) {
            rc = gmf_error(GMF_EFORMAT, "%s: missing key \"%s\"", path, keys[i]);
            goto fail;
        }
        idx[0] = '\0';
        rc = state_tensor(path, keys[i], v, i == 0 ? 2 : 3, dims, i == 0 ? names_mu : names_mat,
                          dst[i], idx, sizeof idx);
        if (rc) goto fail;
    }
    if ((v = jget(&root, "w"))) { /* optional mixture weights (WFR runs) */
        static const char *const names_w[] = {"K"};
        s.w = gmf_calloc(K, sizeof(double), "state w");
        if (!s.w) {
            rc = GMF_ENOMEM;
            goto fail;
        }
        idx[0] = '\0';
        if ((rc = state_tensor(path, "w", v, 1, dims, names_w, s.w, idx, sizeof idx))) goto fail;
        if ((rc = state_weights_ok(path, K, s.w))) {
            rc = GMF_EFORMAT;
            goto fail;
        }
    }
    if (s.euclid) { /* the redundant Sigma must be C C^T */
        for (size_t k = 0; k < K; k++) {
            const double *C = s.C + k * D * D, *S = s.Sigma + k * D * D;
            double diff = 0, norm = 0;
            for (size_t i = 0; i < D; i++)
                for (size_t j = 0; j < D; j++) {
                    double cc = 0;
                    for (size_t l = 0; l < D; l++)
                        cc += C[i * D + l] * C[j * D + l];
                    diff += (S[i * D + j] - cc) * (S[i * D + j] - cc);
                    norm += cc * cc;
                }
            if (sqrt(diff) > 1e-10 * sqrt(norm) + 1e-300) {
                rc = gmf_error(GMF_EFORMAT,
                               "%s: key \"Sigma\"[%zu] is not C[%zu] C[%zu]^T (relative "
                               "difference %.3g): Sigma and C disagree",
                               path, k, k, k, sqrt(diff) / (sqrt(norm) + 1e-300));
                goto fail;
            }
        }
    }
    jfree(&root);
    *out = s;
    return GMF_OK;
fail:
    jfree(&root);
    gmf_io_state_free(&s);
    return rc;
}

void gmf_io_json_string(FILE *fp, const char *s) {
    fputc('"', fp);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(fp, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(fp, "\\u%04x", *p);
        else
            fputc(*p, fp);
    }
    fputc('"', fp);
}
