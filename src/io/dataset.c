/* idx.c -- MNIST-style IDX files (gzip or raw) and the in-memory classification data set.
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
 *
 * Per-image normalization (gmf_dataset_load): every image x in R^d (d = rows * cols, pixel
 * values as read, 0..255) becomes (x - mean(x)) / sd(x) with the SAMPLE standard deviation
 * sd(x) = sqrt(sum_j (x_j - mean)^2 / (d - 1)).  The paper (Section 5) says only "normalized to
 * have zero mean and unit standard deviation"; its code is PyTorch (not available to us), whose
 * per-tensor x.std() is the unbiased (n - 1) estimator, so that is what we match.  The population
 * convention would scale every image by sqrt(d / (d - 1)) = 1.00064 for d = 784 -- immaterial
 * for training.  With the sample convention every image has ||x||^2 = d - 1 (tests check it).
 * The 1/255 scaling of raw pixels cancels in the standardization, so it is not applied.  A
 * constant image (sd = 0) becomes all zeros.  Mean and sd are accumulated in double.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "gmflow/idx.h"
#include "gmflow/common.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif
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

/* ---- the data set ---------------------------------------------------------------------- */

/* Images [0, nb) (nb <= 8) of x (d bytes each): mean[q], inv[q] exactly as gmf_dataset_u8_stats
 * computes them.  The sum of bytes is an integer below 2^53 whatever the order (so exact in
 * uint64 as in double); (x - mean)^2 depends on the byte value only (a 256-entry table per
 * image, same expression); each image's ss is summed in pixel order, as its own chain of
 * dependent additions -- the nb chains interleaved, so that they overlap in the pipeline. */
static void u8_stats8(const uint8_t *x, size_t nb, size_t d, double *mean, double *inv) {
    double c2[8][256], ss[8];
    const uint8_t *row[8];
    for (size_t q = 0; q < nb; q++) {
        row[q] = x + q * d;
        uint64_t isum = 0;
        for (size_t j0 = 0; j0 < d; j0 += 1u << 16) { /* 32-bit partial sums: 2^16 * 255 < 2^32 */
            const size_t j1 = d - j0 < (1u << 16) ? d : j0 + (1u << 16);
            uint32_t part = 0;
            for (size_t j = j0; j < j1; j++)
                part += row[q][j];
            isum += part;
        }
        const double m = d ? (double)isum / (double)d : 0.0;
        for (int v = 0; v < 256; v++) {
            const double c = v - m;
            c2[q][v] = c * c;
        }
        mean[q] = m;
        ss[q] = 0;
    }
    if (nb == 8) { /* eight chains in registers */
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
        for (size_t j = 0; j < d; j++) {
            s0 += c2[0][row[0][j]], s1 += c2[1][row[1][j]], s2 += c2[2][row[2][j]];
            s3 += c2[3][row[3][j]], s4 += c2[4][row[4][j]], s5 += c2[5][row[5][j]];
            s6 += c2[6][row[6][j]], s7 += c2[7][row[7][j]];
        }
        ss[0] = s0, ss[1] = s1, ss[2] = s2, ss[3] = s3, ss[4] = s4, ss[5] = s5, ss[6] = s6;
        ss[7] = s7;
    } else {
        for (size_t j = 0; j < d; j++)
            for (size_t q = 0; q < nb; q++)
                ss[q] += c2[q][row[q][j]];
    }
    for (size_t q = 0; q < nb; q++) {
        const double sd = d > 1 ? sqrt(ss[q] / (double)(d - 1)) : 0.0;
        inv[q] = sd > 0 ? 1.0 / sd : 0.0; /* constant image -> zeros */
    }
}

void gmf_dataset_u8_stats(const uint8_t *x, size_t d, double *mean, double *inv) {
    u8_stats8(x, 1, d, mean, inv);
}

#if defined(__AVX512F__) && defined(__AVX512DQ__)
/* Images [0, 8 NG) of x (d bytes each), as u8_stats8 computes them, bitwise: the same integer
 * sums for the means; then image q's ss in lane q % 8 of vector q / 8, its (v - mean)^2 formed
 * as the tables do ((double)v - mean, squared: exact conversions, one rounding each, no FMA) and
 * added in pixel order -- one chain per image, 8 NG chains in flight instead of eight, and no
 * table reads.  The bytes of 8 images at pixels j..j+7 come in one 64-bit gather (lane q: image
 * q's 8 bytes), pixel j + k is byte k of each lane. */
static inline __attribute__((always_inline)) void
u8_stats_simd(const uint8_t *x, size_t d, const int NG, double *mean, double *inv) {
    double ss[32];
    for (int q = 0; q < 8 * NG; q++) {
        const uint8_t *row = x + (size_t)q * d;
        uint64_t isum = 0;
        for (size_t j0 = 0; j0 < d; j0 += 1u << 16) { /* as u8_stats8 */
            const size_t j1 = d - j0 < (1u << 16) ? d : j0 + (1u << 16);
            uint32_t part = 0;
            for (size_t j = j0; j < j1; j++)
                part += row[j];
            isum += part;
        }
        mean[q] = d ? (double)isum / (double)d : 0.0;
    }
    const long long sd1 = (long long)d;
    const __m512i vidx =
        _mm512_set_epi64(7 * sd1, 6 * sd1, 5 * sd1, 4 * sd1, 3 * sd1, 2 * sd1, sd1, 0);
    const __m512i ff = _mm512_set1_epi64(0xff);
    __m512d m[4], acc[4];
    for (int g = 0; g < NG; g++)
        m[g] = _mm512_loadu_pd(mean + 8 * g), acc[g] = _mm512_setzero_pd();
    size_t j = 0;
    for (; j + 8 <= d; j += 8) {
        __m512i v[4];
        for (int g = 0; g < NG; g++)
            v[g] = _mm512_i64gather_epi64(vidx, (const void *)(x + (size_t)8 * g * d + j), 1);
        for (int k = 0; k < 8; k++)
            for (int g = 0; g < NG; g++) {
                const __m512i b = _mm512_and_si512(_mm512_srli_epi64(v[g], 8 * k), ff);
                const __m512d c = _mm512_sub_pd(_mm512_cvtepi64_pd(b), m[g]);
                acc[g] = _mm512_add_pd(acc[g], _mm512_mul_pd(c, c));
            }
    }
    for (; j < d; j++) /* the last d % 8 pixels */
        for (int g = 0; g < NG; g++) {
            const uint8_t *p = x + (size_t)8 * g * d + j;
            const __m512i b = _mm512_set_epi64(p[7 * d], p[6 * d], p[5 * d], p[4 * d], p[3 * d],
                                               p[2 * d], p[d], p[0]);
            const __m512d c = _mm512_sub_pd(_mm512_cvtepi64_pd(b), m[g]);
            acc[g] = _mm512_add_pd(acc[g], _mm512_mul_pd(c, c));
        }
    for (int g = 0; g < NG; g++)
        _mm512_storeu_pd(ss + 8 * g, acc[g]);
    for (int q = 0; q < 8 * NG; q++) {
        const double sd = d > 1 ? sqrt(ss[q] / (double)(d - 1)) : 0.0;
        inv[q] = sd > 0 ? 1.0 / sd : 0.0;
    }
}
#endif

/* Images [0, nb) (nb <= 32) of x: mean[q], inv[q] as u8_stats8 gives them. */
static void u8_stats32(const uint8_t *x, size_t nb, size_t d, double *mean, double *inv) {
    size_t q = 0;
#if defined(__AVX512F__) && defined(__AVX512DQ__)
    if (nb == 32) {
        u8_stats_simd(x, d, 4, mean, inv);
        return;
    }
    for (; q + 8 <= nb; q += 8)
        u8_stats_simd(x + q * d, d, 1, mean + q, inv + q);
#endif
    for (; q < nb; q += 8)
        u8_stats8(x + q * d, nb - q < 8 ? nb - q : 8, d, mean + q, inv + q);
}

/* scale[2 i], scale[2 i + 1] = mean and 1/sd of image i of n, 32 at a time. */
static void u8_stats_all(const uint8_t *px, size_t n, size_t d, double *scale) {
    for (size_t i = 0; i < n; i += 32) {
        const size_t nb = n - i < 32 ? n - i : 32;
        double mean[32], inv[32];
        u8_stats32(px + i * d, nb, d, mean, inv);
        for (size_t q = 0; q < nb; q++)
            scale[2 * (i + q)] = mean[q], scale[2 * (i + q) + 1] = inv[q];
    }
}

void gmf_dataset_standardize_u8(float *dst, const uint8_t *src, size_t n, size_t d) {
    /* Bitwise the same as the direct double formula: the outputs depend on the byte value only
     * (a 256-entry table of gmf_dataset_u8_value). */
    float out[256];
    for (size_t i0 = 0; i0 < n; i0 += 32) {
        const size_t nb = n - i0 < 32 ? n - i0 : 32;
        double mean[32], inv[32];
        u8_stats32(src + i0 * d, nb, d, mean, inv);
        for (size_t q = 0; q < nb; q++) {
            const uint8_t *x = src + (i0 + q) * d;
            float *y = dst + (i0 + q) * d;
            for (int v = 0; v < 256; v++)
                out[v] = gmf_dataset_u8_value((uint8_t)v, mean[q], inv[q]);
            for (size_t j = 0; j < d; j++)
                y[j] = out[x[j]];
        }
    }
}

void gmf_dataset_u8_row(float *dst, const uint8_t *x, size_t d, double mean, double inv) {
    size_t j = 0;
#ifdef __AVX512F__
    /* 16 bytes -> 16 int32 -> two halves of 8 doubles: (v - mean) * inv -> float, as below;
     * the compiler's own vectorization of the loop below runs at about half this speed (it
     * widens through 128-bit halves on port 5) */
    const __m512d m = _mm512_set1_pd(mean), iv = _mm512_set1_pd(inv);
    for (; j + 16 <= d; j += 16) {
        const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(x + j)));
        const __m512d lo = _mm512_cvtepi32_pd(_mm512_castsi512_si256(v));
        const __m512d hi = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(v, 1));
        const __m256 a = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_sub_pd(lo, m), iv));
        const __m256 b = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_sub_pd(hi, m), iv));
        _mm256_storeu_ps(dst + j, a);
        _mm256_storeu_ps(dst + j + 8, b);
    }
#endif
    for (; j < d; j++)
        dst[j] = gmf_dataset_u8_value(x[j], mean, inv);
}

void gmf_dataset_row(const gmf_dataset *ds, size_t i, float *dst) {
    const size_t d = ds->d;
    if (ds->x) {
        memcpy(dst, ds->x + i * d, d * sizeof(float));
        return;
    }
    gmf_dataset_u8_row(dst, ds->px + i * d, d, ds->scale[2 * i], ds->scale[2 * i + 1]);
}

/* Try "<dir>/<name>.gz", then "<dir>/<name>".  On success *path is a malloc'ed path that exists.
 */
static int find_file(const char *dir, const char *name, char **path) {
    *path = NULL;
    size_t len = strlen(dir) + strlen(name) + 8;
    char *gz = malloc(len), *raw = malloc(len);
    if (!gz || !raw) {
        free(gz);
        free(raw);
        return gmf_error(GMF_ENOMEM, "out of memory for a file name");
    }
    snprintf(gz, len, "%s/%s.gz", dir, name);
    snprintf(raw, len, "%s/%s", dir, name);
    struct stat st;
    if (stat(gz, &st) == 0) {
        *path = gz;
        free(raw);
        return GMF_OK;
    }
    if (stat(raw, &st) == 0) {
        *path = raw;
        free(gz);
        return GMF_OK;
    }
    int rc = gmf_error(GMF_EIO, "%s: not found (nor %s): %s", gz, raw, strerror(errno));
    free(gz);
    free(raw);
    return rc;
}

/* One data set being loaded, in two phases: dataset_read (the files, their checks, the output
 * buffers), then dataset_fill over any ranges of images (each image's statistics, or its float
 * row, depend on that image alone, so ranges may go to different threads in any order and give
 * bitwise the same set). */
typedef struct ds_job {
    const char *dir, *prefix;
    size_t limit;
    int compact;
    gmf_dataset *out;
    uint8_t *src; /* the bytes dataset_fill reads: out->px, or (float form) the file's pixels */
    int rc;       /* dataset_read's result; its message in msg (threads: gmf_errmsg is theirs) */
    char msg[1024];
} ds_job;

/* The float form, or (compact) the bytes with per-image (mean, 1/sd): the pixel buffer becomes
 * ds->px itself (no copy).  On failure *out is freed and cleared. */
static int dataset_read(ds_job *j) {
    const char *dir = j->dir, *prefix = j->prefix;
    const size_t limit = j->limit;
    const int compact = j->compact;
    gmf_dataset *out = j->out;
    j->src = NULL;
    if (!out) return gmf_error(GMF_EINVAL, "gmf_dataset_load: null output");
    memset(out, 0, sizeof *out);
    if (!dir || !prefix) return gmf_error(GMF_EINVAL, "gmf_dataset_load: null directory or prefix");

    char name[256];
    char *ipath = NULL, *lpath = NULL;
    gmf_idx_images im = {0};
    uint8_t *lab = NULL;
    size_t nlab = 0;
    int rc;

    if ((size_t)snprintf(name, sizeof name, "%s-images-idx3-ubyte", prefix) >= sizeof name) {
        rc = gmf_error(GMF_EINVAL, "gmf_dataset_load: prefix too long");
        goto done;
    }
    if ((rc = find_file(dir, name, &ipath))) goto done;
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", prefix);
    if ((rc = find_file(dir, name, &lpath))) goto done;
    if ((rc = gmf_idx_read_images(ipath, &im))) goto done;
    if ((rc = gmf_idx_read_labels(lpath, &nlab, &lab))) goto done;
    if (im.count != nlab) {
        rc = gmf_error(GMF_EFORMAT, "%s has %zu images but %s has %zu labels", ipath, im.count,
                       lpath, nlab);
        goto done;
    }
    if (im.count == 0) {
        rc = gmf_error(GMF_EFORMAT, "%s: no images", ipath);
        goto done;
    }
    for (size_t i = 0; i < nlab; i++)
        if (lab[i] >= 10) {
            rc = gmf_error(GMF_EFORMAT, "%s: label %u of sample %zu is out of range (0..9)", lpath,
                           lab[i], i);
            goto done;
        }

    const size_t n = (limit && limit < im.count) ? limit : im.count;
    const size_t d = im.rows * im.cols; /* <= count*rows*cols bytes read: no overflow */
    size_t xbytes;
    if (gmf_mul_size3(n, d, sizeof(float), &xbytes)) {
        rc = gmf_error(GMF_ENOMEM, "%s: data set too large", ipath);
        goto done;
    }
    out->label = malloc(n);
    if (compact) {
        out->scale = malloc(2 * n * sizeof(double));
        if (out->scale && n < im.count) { /* keep the first n images only */
            uint8_t *px = realloc(im.pixels, n * d);
            if (px) im.pixels = px;
        }
        out->px = im.pixels;
        im.pixels = NULL;
    } else {
        out->x = malloc(xbytes);
    }
    if (!(compact ? out->scale != NULL : out->x != NULL) || !out->label) {
        rc = gmf_error(GMF_ENOMEM, "out of memory for %zu x %zu samples of %s", n, d, ipath);
        goto done;
    }
    j->src = compact ? out->px : im.pixels;
    im.pixels = NULL; /* the float form's source: dataset_done frees it */
    memcpy(out->label, lab, n);
    out->n = n;
    out->d = d;
    out->nclass = 10;
    rc = GMF_OK;
done:
    if (rc) gmf_dataset_free(out);
    gmf_idx_images_free(&im);
    free(lab);
    free(ipath);
    free(lpath);
    return rc;
}

/* Images [i0, i1) of a set dataset_read has prepared. */
static void dataset_fill(const ds_job *j, size_t i0, size_t i1) {
    const gmf_dataset *o = j->out;
    const size_t d = o->d;
    if (j->compact)
        u8_stats_all(j->src + i0 * d, i1 - i0, d, o->scale + 2 * i0);
    else
        gmf_dataset_standardize_u8(o->x + i0 * d, j->src + i0 * d, i1 - i0, d);
}

static void dataset_done(ds_job *j) {
    if (!j->compact) free(j->src);
    j->src = NULL;
}

static int dataset_load(const char *dir, const char *prefix, size_t limit, int compact,
                        gmf_dataset *out) {
    ds_job j = {.dir = dir, .prefix = prefix, .limit = limit, .compact = compact, .out = out};
    int rc = dataset_read(&j);
    if (rc) return rc;
    dataset_fill(&j, 0, out->n);
    dataset_done(&j);
    return GMF_OK;
}

int gmf_dataset_load(const char *dir, const char *prefix, size_t limit, gmf_dataset *out) {
    return dataset_load(dir, prefix, limit, 0, out);
}

int gmf_dataset_load_u8(const char *dir, const char *prefix, size_t limit, gmf_dataset *out) {
    return dataset_load(dir, prefix, limit, 1, out);
}

/* ---- several sets at once, in threads ----------------------------------------------------- */

enum { SETS_CHUNK = 2048 }; /* images per dataset_fill task */

typedef struct sets_ctx {
    ds_job *job;
    size_t nsets;
    atomic_size_t next; /* the next task: a set to read (phase 1), a chunk to fill (phase 2) */
    int phase;
} sets_ctx;

static void *sets_worker(void *arg) {
    sets_ctx *c = arg;
    for (;;) {
        size_t t = atomic_fetch_add(&c->next, 1);
        if (c->phase == 1) {
            if (t >= c->nsets) break;
            ds_job *j = &c->job[t];
            j->rc = dataset_read(j);
            if (j->rc) snprintf(j->msg, sizeof j->msg, "%s", gmf_errmsg());
            continue;
        }
        size_t s = 0; /* chunk t: the set it falls in */
        for (; s < c->nsets; s++) {
            const size_t k = (c->job[s].out->n + SETS_CHUNK - 1) / SETS_CHUNK;
            if (t < k) break;
            t -= k;
        }
        if (s == c->nsets) break;
        const size_t i0 = t * SETS_CHUNK, n = c->job[s].out->n;
        dataset_fill(&c->job[s], i0, n - i0 < SETS_CHUNK ? n : i0 + SETS_CHUNK);
    }
    return NULL;
}

/* Run the phase on nth threads (the caller's and nth - 1 more; a thread that cannot be started
 * leaves its share to the others). */
static void sets_run(sets_ctx *c, int phase, int nth) {
    pthread_t th[GMF_DATASET_SETS_MAX];
    int started = 0;
    c->phase = phase;
    atomic_store(&c->next, 0);
    for (int t = 1; t < nth; t++)
        if (pthread_create(&th[started], NULL, sets_worker, c) == 0) started++;
    sets_worker(c);
    for (int t = 0; t < started; t++)
        pthread_join(th[t], NULL);
}

/* The CPUs this process may run on (its affinity mask; taskset), at least 1. */
static int allowed_cpus(void) {
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
#endif
    return 1;
}

int gmf_dataset_load_sets(const char *dir, size_t nsets, const char *const *prefix,
                          const size_t *limit, int compact, int threads, gmf_dataset *out) {
    if (!out || (nsets && !prefix) || nsets > GMF_DATASET_SETS_MAX)
        return gmf_error(GMF_EINVAL,
                         "gmf_dataset_load_sets: null output or prefixes, or more "
                         "than %d sets",
                         GMF_DATASET_SETS_MAX);
    ds_job job[GMF_DATASET_SETS_MAX];
    for (size_t s = 0; s < nsets; s++)
        job[s] = (ds_job){.dir = dir,
                          .prefix = prefix[s],
                          .limit = limit ? limit[s] : 0,
                          .compact = compact,
                          .out = &out[s]};
    int nth = threads < 1 ? 1 : threads;
    const int cpus = allowed_cpus();
    if (nth > cpus) nth = cpus;
    if (nth > GMF_DATASET_SETS_MAX) nth = GMF_DATASET_SETS_MAX;
    sets_ctx c = {.job = job, .nsets = nsets};
    sets_run(&c, 1, nth > (int)nsets ? (int)nsets : nth);
    for (size_t s = 0; s < nsets; s++) /* the first failing set in order, whatever the timing */
        if (job[s].rc) {
            const int rc = job[s].rc;
            for (size_t k = 0; k < nsets; k++) {
                dataset_done(&job[k]);
                gmf_dataset_free(&out[k]);
            }
            return gmf_error(rc, "%s", job[s].msg);
        }
    sets_run(&c, 2, nth);
    for (size_t s = 0; s < nsets; s++)
        dataset_done(&job[s]);
    return GMF_OK;
}

void gmf_dataset_free(gmf_dataset *ds) {
    if (!ds) return;
    free(ds->x);
    free(ds->label);
    free(ds->px);
    free(ds->scale);
    memset(ds, 0, sizeof *ds);
}

/* ---- where the data sets are ---------------------------------------------------------------- */

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* out = the formatted path; 0, or GMF_EINVAL (recorded) when it does not fit */
static int put_path(char *out, size_t size, const char *fmt, const char *a, const char *b) {
    const int n = snprintf(out, size, fmt, a, b);
    if (n < 0 || (size_t)n >= size)
        return gmf_error(GMF_EINVAL, "data directory: the path for %s is longer than %zu bytes", b,
                         size ? size - 1 : 0);
    return 0;
}

int gmf_dataset_find(const char *given, const char *name, char *out, size_t size) {
    if (!out || !size || !name || !*name)
        return gmf_error(GMF_EINVAL, "gmf_dataset_find: no data set name or output buffer");
    if (given) return put_path(out, size, "%s%s", given, "");
    const char *env = getenv("GMFLOW_DATA");
    int rc;
    if (env && *env) {
        if ((rc = put_path(out, size, "%s/%s", env, name))) return rc;
        if (is_dir(out)) return 0;
    }
    if ((rc = put_path(out, size, "%s/%s", "../shared/data", name))) return rc;
    if (is_dir(out)) return 0;
    char exe[4096];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        for (int up = 0; up < 2; up++) { /* strip the executable's name, then its build folder */
            char *slash = strrchr(exe, '/');
            if (slash) *slash = '\0';
        }
        if ((rc = put_path(out, size, "%s/../shared/data/%s", exe, name))) return rc;
        if (is_dir(out)) return 0;
    }
    out[0] = '\0';
    return gmf_error(GMF_EIO,
                     "cannot find the %s data: give its directory (tried $GMFLOW_DATA/%s%s, "
                     "../shared/data/%s and ../shared/data/%s beside the executable's build "
                     "folder)",
                     name, name, env && *env ? "" : " (GMFLOW_DATA unset)", name, name);
}
