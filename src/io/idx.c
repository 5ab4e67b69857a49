/* idx.c -- MNIST-style IDX files, gzip-compressed or raw (gmflow/idx.h; the data set built on
 * them is dataset.c).
 *
 * File format (Y. LeCun's IDX): a 4-byte big-endian magic 0x00 0x00 <type> <ndims>, then ndims
 * big-endian uint32 sizes, then the payload, row-major.  MNIST uses type 0x08 (uint8) with
 * ndims 3 for images (magic 2051 = 0x00000803: count, rows, cols) and ndims 1 for labels
 * (magic 2049 = 0x00000801: count).  The payload must be exactly count * rows * cols bytes:
 * a shorter (truncated) or longer (trailing bytes) file is an error that names the file and
 * both byte counts.
 *
 * gzip is recognised by its magic bytes (1f 8b), not by the file name.  The IDX header is read
 * with zlib's inflate in streaming mode and checked; then, in a build with libdeflate, the whole
 * regular file is read into memory and decompressed at once by libdeflate (gz_whole: 2-3x
 * zlib's speed), member by member, into a buffer of the size the header declares.  Whatever
 * libdeflate does not accept, or any size or limit it does not fit (corrupt or truncated stream,
 * wrong size, trailing bytes, > 1 GiB, out of memory), is left to zlib's streaming inflate,
 * which goes on from where it stands and reports its precise error -- so both paths accept the
 * same files, give the same bytes and the same messages (tests/test_idx.c, tests/fuzz).  zlib
 * writes straight into the destination buffer (no copy of the whole file).  Both check the gzip
 * CRC-32 and length trailer of every member (and the header CRC where FHCRC is set), so a corrupt
 * .gz (flipped bytes, a truncated stream) is an error, not silently wrong pixels.  Concatenated
 * gzip members (as `cat a.gz b.gz` makes) are read as one stream, like gzip -d does; anything
 * after the last member that is not another gzip member is an error.
 */
#include "gmflow/idx.h"
#include "gmflow/common.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#ifdef GMFLOW_HAVE_LIBDEFLATE
#include <libdeflate.h>
#endif

enum { IDX_MAGIC_IMAGES = 2051, IDX_MAGIC_LABELS = 2049, IDX_TYPE_UBYTE = 0x08 };
enum { IDX_INBUF = 1 << 16 };
#define IDX_PREALLOC_MAX ((size_t)1 << 30)
#define IDX_GZ_RATIO     ((size_t)64)
#define IDX_WHOLE_MAX    ((size_t)1 << 30) /* largest .gz read whole for libdeflate */
enum { IDX_FALLBACK = 1 };                 /* gz_whole: use the streaming path instead */

/* ---- a byte source: raw file or (multi-member) gzip stream ----------------------------- */

typedef struct idx_src {
    const char *path;
    FILE *fp;
    int gz;            /* 1: gzip-compressed */
    int zinit;         /* inflateInit2 done */
    int zend;          /* the last gzip member ended cleanly and no more input followed */
    z_stream zs;       /* inflate state (gz only) */
    unsigned char *in; /* compressed input buffer (gz only) */
    size_t members;    /* gzip members started */
    size_t fsize;      /* the file's size if it is a regular file, else 0 */
} idx_src;

static void src_close(idx_src *s) {
    if (s->zinit) inflateEnd(&s->zs);
    free(s->in);
    if (s->fp) fclose(s->fp);
    memset(s, 0, sizeof *s);
}

static int src_open(idx_src *s, const char *path) {
    memset(s, 0, sizeof *s);
    s->path = path;
    s->fp = fopen(path, "rb");
    if (!s->fp) return gmf_error(GMF_EIO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char m[2];
    size_t got = fread(m, 1, 2, s->fp);
    if (ferror(s->fp)) {
        int e = gmf_error(GMF_EIO, "%s: read error: %s", path, strerror(errno));
        src_close(s);
        return e;
    }
    s->gz = (got == 2 && m[0] == 0x1f && m[1] == 0x8b);
    struct stat st;
    if (fstat(fileno(s->fp), &st) == 0 && S_ISREG(st.st_mode)) s->fsize = (size_t)st.st_size;
    rewind(s->fp);
    if (s->gz) {
        s->in = malloc(IDX_INBUF);
        if (!s->in) {
            src_close(s);
            return gmf_error(GMF_ENOMEM, "%s: out of memory for the gzip input buffer", path);
        }
        /* 16 + MAX_WBITS: gzip wrapper only (header, CRC-32 and ISIZE trailer checked). */
        if (inflateInit2(&s->zs, 16 + MAX_WBITS) != Z_OK) {
            src_close(s);
            return gmf_error(GMF_ENOMEM, "%s: cannot initialise zlib inflate", path);
        }
        s->zinit = 1;
        s->members = 1;
    }
    return GMF_OK;
}

/* Refill the compressed input buffer if it is empty.  Returns bytes available (0 at EOF) or a
 * negative error code. */
static long src_fill(idx_src *s) {
    if (s->zs.avail_in > 0) return (long)s->zs.avail_in;
    size_t got = fread(s->in, 1, IDX_INBUF, s->fp);
    if (ferror(s->fp)) return gmf_error(GMF_EIO, "%s: read error: %s", s->path, strerror(errno));
    s->zs.next_in = s->in;
    s->zs.avail_in = (uInt)got;
    return (long)got;
}

/* Read up to n bytes (decompressed) into dst; *got receives the count, which is < n only at the
 * end of the data.  Returns GMF_OK or an error (corrupt / truncated gzip, I/O error). */
static int src_read(idx_src *s, void *dst, size_t n, size_t *got) {
    *got = 0;
    if (!s->gz) {
        *got = fread(dst, 1, n, s->fp);
        if (ferror(s->fp))
            return gmf_error(GMF_EIO, "%s: read error: %s", s->path, strerror(errno));
        return GMF_OK;
    }
    unsigned char *out = dst;
    while (*got < n && !s->zend) {
        long avail = src_fill(s);
        if (avail < 0) return (int)avail;
        if (avail == 0)
            return gmf_error(GMF_EFORMAT,
                             "%s: corrupt gzip file: compressed data ends before the end of the "
                             "gzip stream (truncated .gz?)",
                             s->path);
        size_t want = n - *got;
        uInt chunk = want > (size_t)UINT32_MAX / 2 ? UINT32_MAX / 2 : (uInt)want;
        s->zs.next_out = out + *got;
        s->zs.avail_out = chunk;
        int rc = inflate(&s->zs, Z_NO_FLUSH);
        *got += chunk - s->zs.avail_out;
        if (rc == Z_STREAM_END) {
            /* One member done (its CRC-32 and length verified).  Another member may follow. */
            avail = src_fill(s);
            if (avail < 0) return (int)avail;
            if (avail == 0) {
                s->zend = 1;
            } else if (s->zs.next_in[0] != 0x1f) {
                /* Count the trailing bytes for the message. */
                unsigned long long extra = s->zs.avail_in;
                unsigned char buf[4096];
                size_t r;
                while ((r = fread(buf, 1, sizeof buf, s->fp)) > 0)
                    extra += r;
                return gmf_error(GMF_EFORMAT,
                                 "%s: corrupt gzip file: %llu trailing bytes after the gzip stream",
                                 s->path, extra);
            } else {
                inflateReset(&s->zs);
                s->members++;
            }
        } else if (rc == Z_BUF_ERROR) {
            /* No progress possible: input exhausted mid-stream; src_fill detects EOF next. */
            continue;
        } else if (rc != Z_OK) {
            const char *why = s->zs.msg ? s->zs.msg : "inflate failed";
            return gmf_error(rc == Z_MEM_ERROR ? GMF_ENOMEM : GMF_EFORMAT,
                             "%s: corrupt gzip file: %s (gzip member %zu, after %lu decompressed "
                             "bytes)",
                             s->path, why, s->members, (unsigned long)s->zs.total_out);
        }
    }
    return GMF_OK;
}

/* Count (and discard) everything left in the source: the size of trailing data. */
static int src_count_rest(idx_src *s, unsigned long long *count) {
    unsigned char buf[1 << 14];
    *count = 0;
    for (;;) {
        size_t got;
        int rc = src_read(s, buf, sizeof buf, &got);
        if (rc) return rc;
        *count += got;
        if (got < sizeof buf) return GMF_OK;
    }
}

/* A buffer for n payload bytes: from 4 MiB on, 2 MiB-aligned and marked for transparent huge
 * pages, so that filling it takes 512 times fewer page faults (MNIST's 47 MB of pixels: about
 * 11,500 faults of 4 KiB otherwise).  free() releases it. */
static uint8_t *payload_alloc(size_t n) {
    const size_t huge = (size_t)1 << 21;
    if (n < 2 * huge) return malloc(n ? n : 1);
    void *p = NULL;
    if (posix_memalign(&p, huge, n) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, n, MADV_HUGEPAGE); /* advice only: no huge pages is not an error */
#endif
    return p;
}

/* Read up to n bytes into a fresh buffer.  The callers have checked n against the file (a raw
 * file's size; deflate's 1032:1 bound for gzip), so up to IDX_PREALLOC_MAX it is allocated at
 * once if the file plausibly holds it; otherwise the buffer grows as data arrives (from 1 MiB,
 * doubling), so that a header declaring more than the file holds never makes us allocate for the
 * declared size.  *got < n: the data ended early. */
static int src_read_alloc(idx_src *s, size_t n, const char *what, uint8_t **out, size_t *got) {
    size_t cap = n < ((size_t)1 << 20) ? n : ((size_t)1 << 20), have = 0;
    uint8_t *b = NULL;
    /* a size that the file plausibly holds: all of it at once (a raw regular file's size was
     * checked exactly; gzip: at most IDX_GZ_RATIO times the compressed size -- MNIST's images
     * inflate 4.9x, Fashion-MNIST's 1.8x) */
    const int plausible = s->fsize && (!s->gz || n / IDX_GZ_RATIO <= s->fsize);
    if (plausible && n <= IDX_PREALLOC_MAX)
        b = payload_alloc(cap = n);
    else
        b = malloc(cap ? cap : 1);
    *out = NULL;
    *got = 0;
    for (;;) {
        if (!b)
            return gmf_error(GMF_ENOMEM, "%s: out of memory for %zu bytes of IDX %s", s->path, cap,
                             what);
        size_t r;
        int rc = src_read(s, b + have, cap - have, &r);
        if (rc) {
            free(b);
            return rc;
        }
        have += r;
        if (have < cap || cap == n) break;
        size_t nc = cap > n / 2 ? n : 2 * cap;
        uint8_t *nb = realloc(b, nc);
        if (!nb) free(b);
        b = nb, cap = nc;
    }
    *out = b;
    *got = have;
    return GMF_OK;
}

/* deflate expands at most 1032:1, so a gzip file of c bytes cannot hold more than 1032 c bytes
 * (plus slack): a header declaring more is rejected before any allocation. */
static int idx_check_gz_size(idx_src *s, size_t total, size_t hlen, const char *what) {
    struct stat st;
    if (!s->gz || fstat(fileno(s->fp), &st) != 0 || !S_ISREG(st.st_mode)) return GMF_OK;
    size_t bound;
    if (gmf_mul_size((size_t)st.st_size, 1032, &bound)) return GMF_OK;
    (void)hlen; /* the header is inflated data too; the 1024-byte slack covers it */
    if (total > bound && total - bound > 1024)
        return gmf_error(GMF_EFORMAT,
                         "%s: IDX %s header declares %zu bytes of payload, more than the "
                         "%lld-byte gzip file can hold (deflate expands at most 1032:1; "
                         "truncated or corrupt file)",
                         s->path, what, total, (long long)st.st_size);
    return GMF_OK;
}

/* ---- whole-file gzip with libdeflate ---------------------------------------------------- */

/* Which inflater reads .gz payloads: 2 = libdeflate with zlib as the fallback (the default
 * when built with libdeflate), 1 = libdeflate alone (GMFLOW_IDX_INFLATE=libdeflate-only: a
 * failure is reported, not retried with zlib), 0 = zlib's streaming inflate (a build without
 * libdeflate, or GMFLOW_IDX_INFLATE=zlib).  The environment switch is for the tests, which
 * compare the paths in one binary. */
static int idx_inflater(void) {
#ifdef GMFLOW_HAVE_LIBDEFLATE
    const char *e = getenv("GMFLOW_IDX_INFLATE");
    if (e && strcmp(e, "zlib") == 0) return 0;
    if (e && strcmp(e, "libdeflate-only") == 0) return 1;
    return 2;
#else
    return 0;
#endif
}

const char *gmf_idx_gz_inflater(void) {
    static const char *const name[] = {"zlib", "libdeflate-only", "libdeflate"};
    return name[idx_inflater()];
}

#ifdef GMFLOW_HAVE_LIBDEFLATE
/* A gzip member header at p (n bytes) with FHCRC set: 1 if its CRC-16 (the low half of the
 * CRC-32 of the header bytes before it) is right, as zlib checks and libdeflate does not. */
static int gz_hcrc_ok(const uint8_t *p, size_t n) {
    const unsigned flg = p[3];
    size_t k = 10;
    if (n < k) return 0;
    if (flg & 0x04) { /* FEXTRA: a 2-byte little-endian length, then that many bytes */
        if (n - k < 2) return 0;
        const size_t x = (size_t)p[k] | (size_t)p[k + 1] << 8;
        if (n - k - 2 < x) return 0;
        k += 2 + x;
    }
    for (unsigned f = 0x08; f <= 0x10; f <<= 1) /* FNAME, FCOMMENT: zero-terminated */
        if (flg & f) {
            const uint8_t *z = memchr(p + k, 0, n - k);
            if (!z) return 0;
            k = (size_t)(z - p) + 1;
        }
    if (n - k < 2) return 0;
    return (libdeflate_crc32(0, p, k) & 0xffff) == ((unsigned)p[k] | (unsigned)p[k + 1] << 8);
}

/* The whole gzip file s (a regular file of s->fsize bytes) decompressed at once by libdeflate
 * into a fresh buffer: its first hlen bytes must be hdr (the IDX header the streaming reader has
 * already read and checked), the rest exactly `total` payload bytes, which end up at the start of
 * *out.  Every gzip member is decompressed in turn (libdeflate_gzip_decompress_ex reports the
 * bytes each consumed), each checked against its CRC-32 and ISIZE by libdeflate, into the room
 * left in the buffer of hlen + total bytes, so a member that holds more fails.
 * Returns GMF_OK, an I/O error, or IDX_FALLBACK for anything else -- a corrupt or truncated
 * stream, a size other than the header's, trailing bytes, a wrong header CRC (FHCRC: checked
 * here, libdeflate skips it), a size beyond the limits, out of memory: the caller then
 * goes on with zlib's streaming inflate from where it stands, which reads the same file again
 * and gives its precise error (or, if libdeflate refused something zlib accepts, the data).
 * strict (libdeflate-only): an error naming the file and the reason instead of IDX_FALLBACK. */
static int gz_whole(idx_src *s, const unsigned char *hdr, size_t hlen, size_t total, int strict,
                    uint8_t **out) {
    const size_t c = s->fsize;
    *out = NULL;
    int rc = IDX_FALLBACK;
    char why[160] = "";
    uint8_t *in = NULL, *buf = NULL;
    struct libdeflate_decompressor *d = NULL;
    size_t off = 0, prod = 0, member = 0;
    /* the streaming path's own rule for a buffer at once: plausible for the file, <= 1 GiB */
    if (!c || c > IDX_WHOLE_MAX || total > IDX_PREALLOC_MAX - hlen || total / IDX_GZ_RATIO > c) {
        snprintf(why, sizeof why, "%zu payload bytes from a %zu-byte file: not read whole", total,
                 c);
        goto done;
    }
    const size_t n = hlen + total;
    if (!(in = payload_alloc(c))) {
        snprintf(why, sizeof why, "out of memory for the %zu-byte file", c);
        goto done;
    }
    size_t have = 0; /* pread: the stdio stream's position stays where the fallback needs it */
    while (have < c) {
        ssize_t r = pread(fileno(s->fp), in + have, c - have, (off_t)have);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = gmf_error(GMF_EIO, "%s: read error: %s", s->path, strerror(errno));
            goto done;
        }
        if (r == 0) { /* the file shrank: let the streaming path judge it */
            snprintf(why, sizeof why, "the file shrank to %zu bytes while read", have);
            goto done;
        }
        have += (size_t)r;
    }
    buf = payload_alloc(n);
    d = libdeflate_alloc_decompressor();
    if (!buf || !d) {
        snprintf(why, sizeof why, "out of memory for %zu bytes", n);
        goto done;
    }
    while (off < c) {
        member++;
        /* a member starts with 1f 8b (else: trailing bytes, as zlib's path says) */
        if (c - off < 4 || in[off] != 0x1f) {
            snprintf(why, sizeof why, "%zu trailing bytes after the gzip stream", c - off);
            goto done;
        }
        if ((in[off + 3] & 0x02) && !gz_hcrc_ok(in + off, c - off)) {
            snprintf(why, sizeof why, "gzip member %zu: header crc mismatch", member);
            goto done;
        }
        size_t used = 0, got = 0;
        enum libdeflate_result r =
            libdeflate_gzip_decompress_ex(d, in + off, c - off, buf + prod, n - prod, &used, &got);
        if (r != LIBDEFLATE_SUCCESS || used == 0) { /* used == 0: never, but no endless loop */
            snprintf(why, sizeof why, "gzip member %zu (at byte %zu of the file): %s", member, off,
                     r == LIBDEFLATE_INSUFFICIENT_SPACE
                         ? "decodes to more bytes than the IDX header declares"
                         : "corrupt or truncated deflate data, or CRC-32 / length mismatch");
            goto done;
        }
        off += used;
        prod += got;
    }
    if (prod != n || memcmp(buf, hdr, hlen) != 0) {
        snprintf(why, sizeof why, "%zu decompressed bytes, the IDX header declares %zu", prod, n);
        goto done;
    }
    memmove(buf, buf + hlen, total);
    *out = buf;
    buf = NULL;
    rc = GMF_OK;
done:
    if (rc == IDX_FALLBACK && strict)
        rc = gmf_error(GMF_EFORMAT, "%s: corrupt gzip file (libdeflate, no zlib fallback): %s",
                       s->path, why);
    libdeflate_free_decompressor(d);
    free(buf);
    free(in);
    return rc;
}
#endif

/* ---- the IDX container ---------------------------------------------------------------- */

static uint32_t be32(const unsigned char *b) {
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

/* Read an IDX file of `want_dims` dimensions (3: images, 1: labels), type uint8.
 * On success dims[0..want_dims-1] hold the sizes and *payload (malloc'ed, *nbytes bytes) the
 * data.  `what` ("images" / "labels") is used in messages. */
static int idx_read(const char *path, unsigned want_dims, const char *what, size_t dims[3],
                    uint8_t **payload, size_t *nbytes) {
    *payload = NULL;
    *nbytes = 0;
    if (!path) return gmf_error(GMF_EINVAL, "IDX %s: null path", what);
    idx_src s;
    int rc = src_open(&s, path);
    if (rc) return rc;

    const unsigned want_magic = want_dims == 3 ? IDX_MAGIC_IMAGES : IDX_MAGIC_LABELS;
    unsigned char hdr[16];
    size_t hlen = 4 + 4 * (size_t)want_dims, got;
    uint8_t *data = NULL;
    if ((rc = src_read(&s, hdr, 4, &got))) goto fail;
    if (got < 4) {
        rc = gmf_error(GMF_EFORMAT,
                       "%s: not an IDX %s file: only %zu bytes, shorter than the 4-byte magic",
                       path, what, got);
        goto fail;
    }
    uint32_t magic = be32(hdr);
    if (hdr[0] != 0 || hdr[1] != 0) {
        rc = gmf_error(GMF_EFORMAT,
                       "%s: not an IDX file: magic number 0x%08x (%u), expected %u (IDX %s: "
                       "00 00 08 %02x)",
                       path, (unsigned)magic, (unsigned)magic, want_magic, what, want_dims);
        goto fail;
    }
    if (hdr[2] != IDX_TYPE_UBYTE) {
        rc = gmf_error(GMF_EFORMAT,
                       "%s: IDX data type byte 0x%02x is not supported, expected 0x08 "
                       "(unsigned byte); magic %u, expected %u",
                       path, hdr[2], (unsigned)magic, want_magic);
        goto fail;
    }
    if (hdr[3] != want_dims) {
        const char *hint = magic == IDX_MAGIC_IMAGES   ? " (an image file)"
                           : magic == IDX_MAGIC_LABELS ? " (a label file)"
                                                       : "";
        rc = gmf_error(GMF_EFORMAT,
                       "%s: wrong IDX magic number %u%s with %u dimensions, expected %u (IDX %s, "
                       "%u dimensions)",
                       path, (unsigned)magic, hint, hdr[3], want_magic, what, want_dims);
        goto fail;
    }
    if ((rc = src_read(&s, hdr + 4, hlen - 4, &got))) goto fail;
    if (got < hlen - 4) {
        rc = gmf_error(GMF_EFORMAT, "%s: truncated IDX header: expected %zu bytes, file has %zu",
                       path, hlen, 4 + got);
        goto fail;
    }
    size_t total = 1;
    for (unsigned i = 0; i < want_dims; i++) {
        dims[i] = be32(hdr + 4 + 4 * i);
        if (i > 0 && dims[i] == 0) {
            rc = gmf_error(GMF_EFORMAT, "%s: IDX dimension %u is zero", path, i);
            goto fail;
        }
        if (gmf_mul_size(total, dims[i], &total)) {
            rc = gmf_error(GMF_EFORMAT, "%s: IDX dimensions overflow the address space", path);
            goto fail;
        }
    }

    /* A raw file's size is known up front: check it before allocating anything. */
    if (!s.gz) {
        struct stat st;
        if (fstat(fileno(s.fp), &st) == 0 && S_ISREG(st.st_mode)) {
            unsigned long long have = (unsigned long long)st.st_size - hlen;
            if ((unsigned long long)st.st_size < hlen || have != (unsigned long long)total) {
                char dimstr[64];
                if (want_dims == 3)
                    snprintf(dimstr, sizeof dimstr, "%zu x %zu x %zu", dims[0], dims[1], dims[2]);
                else
                    snprintf(dimstr, sizeof dimstr, "%zu", dims[0]);
                const int longer = have > (unsigned long long)total;
                rc = gmf_error(GMF_EFORMAT,
                               "%s: IDX %s payload size mismatch: the header's dimensions (%s) "
                               "need %zu bytes after the %zu-byte header, the file has %llu "
                               "(%llu %s)",
                               path, what, dimstr, total, hlen, have,
                               longer ? have - total : total - have,
                               longer ? "trailing bytes" : "bytes missing: truncated");
                goto fail;
            }
        }
    }

    if ((rc = idx_check_gz_size(&s, total, hlen, what))) goto fail;
#ifdef GMFLOW_HAVE_LIBDEFLATE
    const int inflater = idx_inflater();
    if (s.gz && inflater) {
        rc = gz_whole(&s, hdr, hlen, total, inflater == 1, &data);
        if (rc == GMF_OK) goto ok;
        if (rc != IDX_FALLBACK) goto fail;
    }
#endif
    if ((rc = src_read_alloc(&s, total, what, &data, &got))) goto fail;
    if (got < total) {
        rc = gmf_error(GMF_EFORMAT,
                       "%s: truncated IDX %s payload: expected %zu bytes after the %zu-byte "
                       "header, got %zu (%zu missing)",
                       path, what, total, hlen, got, total - got);
        goto fail;
    }
    unsigned long long extra = 0;
    if ((rc = src_count_rest(&s, &extra))) goto fail;
    if (extra) {
        rc = gmf_error(GMF_EFORMAT,
                       "%s: IDX %s payload too long: expected %zu bytes after the %zu-byte "
                       "header, got %llu (%llu trailing bytes)",
                       path, what, total, hlen, (unsigned long long)total + extra, extra);
        goto fail;
    }
#ifdef GMFLOW_HAVE_LIBDEFLATE
ok:
#endif
    src_close(&s);
    *payload = data;
    *nbytes = total;
    return GMF_OK;
fail:
    free(data);
    src_close(&s);
    return rc;
}

int gmf_idx_read_images(const char *path, gmf_idx_images *out) {
    if (!out) return gmf_error(GMF_EINVAL, "gmf_idx_read_images: null output");
    memset(out, 0, sizeof *out);
    size_t dims[3] = {0, 0, 0}, nbytes;
    uint8_t *px;
    int rc = idx_read(path, 3, "images", dims, &px, &nbytes);
    if (rc) return rc;
    out->count = dims[0];
    out->rows = dims[1];
    out->cols = dims[2];
    out->pixels = px;
    return GMF_OK;
}

int gmf_idx_read_labels(const char *path, size_t *count, uint8_t **labels) {
    if (!count || !labels) return gmf_error(GMF_EINVAL, "gmf_idx_read_labels: null output");
    *count = 0;
    *labels = NULL;
    size_t dims[3] = {0, 0, 0}, nbytes;
    uint8_t *lab;
    int rc = idx_read(path, 1, "labels", dims, &lab, &nbytes);
    if (rc) return rc;
    *count = dims[0];
    *labels = lab;
    return GMF_OK;
}

void gmf_idx_images_free(gmf_idx_images *im) {
    if (!im) return;
    free(im->pixels);
    memset(im, 0, sizeof *im);
}
