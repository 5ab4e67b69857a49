/* outset.c -- output sets replaced atomically as a whole; stale temporaries of dead processes
 * (gmflow/outset.h describes the scheme and what a crash at each point leaves). */
#define _GNU_SOURCE /* renameat2, RENAME_EXCHANGE */

#include "gmflow/outset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fault.h"
#include "gmflow/common.h"

#define PATH_CAP 4096

struct gmf_outset {
    char dir[PATH_CAP];    /* the set's directory, no trailing slash */
    char parent[PATH_CAP]; /* its parent ("." if none) */
    char base[PATH_CAP];   /* its last component */
    char stage[PATH_CAP];  /* dir.tmp.<pid> */
    const char *const *names;
    int staged, committed;
};

/* ------------------------------------------------------------------------------------------ */
/* small file-system helpers                                                                   */

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* fsync a directory; errors EINVAL/EROFS (no fsync on this file system) are ignored. */
static int sync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return gmf_error(GMF_EIO, "cannot open directory %s: %s", path, strerror(errno));
    int rc = GMF_OK;
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
        rc = gmf_error(GMF_EIO, "cannot sync directory %s: %s", path, strerror(errno));
    close(fd);
    return rc;
}

/* mkdir -p */
static int make_dirs(const char *dir) {
    char buf[PATH_CAP];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return gmf_error(GMF_EINVAL, "directory name too long: %.200s...", dir);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char save = *p;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return gmf_error(GMF_EIO, "cannot create directory %s: %s", buf, strerror(errno));
        *p = save;
        if (!save) break;
    }
    if (!is_dir(dir)) return gmf_error(GMF_EIO, "%s exists and is not a directory", dir);
    return GMF_OK;
}

/* Remove a flat directory and its entries; sub-directories are refused. */
static int remove_flat_dir(const char *path) {
    DIR *d = opendir(path);
    if (!d) return gmf_error(GMF_EIO, "cannot open directory %s: %s", path, strerror(errno));
    int rc = GMF_OK;
    struct dirent *e;
    char p[PATH_CAP];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (snprintf(p, sizeof p, "%s/%s", path, e->d_name) >= (int)sizeof p) continue;
        if (unlink(p) != 0 && rc == GMF_OK)
            rc = gmf_error(GMF_EIO, "cannot remove %s: %s", p, strerror(errno));
    }
    closedir(d);
    if (rc == GMF_OK && rmdir(path) != 0)
        rc = gmf_error(GMF_EIO, "cannot remove directory %s: %s", path, strerror(errno));
    return rc;
}

/* 1 if name is one of the NULL-terminated names. */
static int in_names(const char *const *names, const char *name) {
    for (; names && *names; names++)
        if (!strcmp(*names, name)) return 1;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* stale temporaries                                                                           */

/* If name is "<prefix>.<kind>.<pid>" (prefix NULL: any non-empty prefix) with kind "tmp" or
 * "old", the pid; else 0.  *old tells the kind; *plen the prefix length. */
static long stale_pid(const char *name, const char *prefix, int *old, size_t *plen) {
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name || !dot[1]) return 0;
    char *end;
    errno = 0;
    long pid = strtol(dot + 1, &end, 10);
    if (*end || errno || pid <= 0 || dot[1] == '+' || dot[1] == '-') return 0;
    size_t n = (size_t)(dot - name);
    if (n > 4 && !strncmp(dot - 4, ".tmp", 4))
        *old = 0;
    else if (n > 4 && !strncmp(dot - 4, ".old", 4))
        *old = 1;
    else
        return 0;
    *plen = n - 4;
    if (prefix && (strlen(prefix) != *plen || strncmp(name, prefix, *plen))) return 0;
    return pid;
}

static int pid_dead(long pid) {
    return pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* Remove (or restore, for an .old.<pid> whose set is missing) one stale entry. */
static int clean_one(const char *dir, const char *name, int old, size_t plen) {
    char p[PATH_CAP], orig[PATH_CAP];
    if (snprintf(p, sizeof p, "%s/%s", dir, name) >= (int)sizeof p) return GMF_OK;
    if (old && snprintf(orig, sizeof orig, "%s/%.*s", dir, (int)plen, name) < (int)sizeof orig) {
        struct stat st;
        if (lstat(orig, &st) != 0 && errno == ENOENT) {
            if (rename(p, orig) != 0)
                return gmf_error(GMF_EIO, "cannot restore %s to %s: %s", p, orig, strerror(errno));
            return GMF_OK;
        }
    }
    struct stat st;
    if (lstat(p, &st) != 0) return GMF_OK; /* gone meanwhile */
    if (S_ISDIR(st.st_mode)) return remove_flat_dir(p);
    if (unlink(p) != 0 && errno != ENOENT)
        return gmf_error(GMF_EIO, "cannot remove stale temporary %s: %s", p, strerror(errno));
    return GMF_OK;
}

int gmf_outset_clean_stale(const char *dir, const char *prefix, size_t *nremoved) {
    if (nremoved) *nremoved = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return GMF_OK;
        return gmf_error(GMF_EIO, "cannot open directory %s: %s", dir, strerror(errno));
    }
    int rc = GMF_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int old = 0;
        size_t plen = 0;
        long pid = stale_pid(e->d_name, prefix, &old, &plen);
        if (!pid || !pid_dead(pid)) continue;
        int r = clean_one(dir, e->d_name, old, plen);
        if (r && rc == GMF_OK) rc = r;
        if (!r && nremoved) (*nremoved)++;
    }
    closedir(d);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* the set                                                                                     */

static int split_resolved(gmf_outset *s, const char *dir) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    if (n == 0 || n >= PATH_CAP - 32)
        return gmf_error(GMF_EINVAL, "output directory name %s", n ? "too long" : "empty");
    memcpy(s->dir, dir, n);
    s->dir[n] = '\0';
    char *slash = strrchr(s->dir, '/');
    const char *base = slash ? slash + 1 : s->dir;
    if (!strcmp(base, ".") || !strcmp(base, "..") || !*base || !strcmp(s->dir, "/"))
        return gmf_error(GMF_EINVAL,
                         "output directory %s: its files are replaced as a set by swapping the "
                         "directory, so it must be named by a last component other than '.' or "
                         "'..' (e.g. %s/out)",
                         dir, s->dir);
    snprintf(s->base, sizeof s->base, "%s", base);
    if (!slash)
        snprintf(s->parent, sizeof s->parent, ".");
    else if (slash == s->dir)
        snprintf(s->parent, sizeof s->parent, "/");
    else
        snprintf(s->parent, sizeof s->parent, "%.*s", (int)(slash - s->dir), s->dir);
    if (snprintf(s->stage, sizeof s->stage, "%s.tmp.%ld", s->dir, (long)getpid()) >=
        (int)sizeof s->stage)
        return gmf_error(GMF_EINVAL, "output directory name too long: %.200s...", dir);
    return GMF_OK;
}

/* Split dir (trailing slashes dropped; a symbolic link replaced by the path it resolves to, so
 * that the swap replaces the directory, not the link) into parent and base. */
static int split_path(gmf_outset *s, const char *dir) {
    struct stat st;
    char *real = NULL;
    if (lstat(dir, &st) == 0 && S_ISLNK(st.st_mode)) {
        real = realpath(dir, NULL);
        if (!real)
            return gmf_error(GMF_EIO, "cannot resolve the symbolic link %s: %s", dir,
                             strerror(errno));
        dir = real;
    }
    int rc = split_resolved(s, dir);
    free(real);
    return rc;
}

/* An existing set directory must be a directory without sub-directories (other than stale
 * temporaries, cleaned here). */
static int check_existing(const gmf_outset *s) {
    struct stat st;
    if (lstat(s->dir, &st) != 0) return GMF_OK; /* new */
    if (!S_ISDIR(st.st_mode)) return gmf_error(GMF_EIO, "%s exists and is not a directory", s->dir);
    (void)gmf_outset_clean_stale(s->dir, NULL, NULL); /* best effort */
    int rc = GMF_OK;
    DIR *d = opendir(s->dir);
    if (!d) return gmf_error(GMF_EIO, "cannot open directory %s: %s", s->dir, strerror(errno));
    struct dirent *e;
    char p[PATH_CAP];
    while ((e = readdir(d)) != NULL && rc == GMF_OK) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (snprintf(p, sizeof p, "%s/%s", s->dir, e->d_name) >= (int)sizeof p) continue;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rc = gmf_error(GMF_EINVAL,
                           "%s holds the sub-directory %s; an output directory is replaced as a "
                           "whole, and sub-directories are not carried over: use a new directory",
                           s->dir, e->d_name);
    }
    closedir(d);
    return rc;
}

int gmf_outset_new(gmf_outset **out, const char *dir, const char *const *names) {
    *out = NULL;
    gmf_outset *s = calloc(1, sizeof *s);
    if (!s) return gmf_error(GMF_ENOMEM, "out of memory for an output set");
    s->names = names;
    int rc = split_path(s, dir);
    if (!rc) rc = make_dirs(s->parent);
    if (!rc) (void)gmf_outset_clean_stale(s->parent, s->base, NULL); /* best effort */
    if (!rc) rc = check_existing(s);
    if (!rc && mkdir(s->stage, 0777) != 0)
        rc = gmf_error(GMF_EIO, "cannot create the staging directory %s: %s", s->stage,
                       strerror(errno));
    if (rc) {
        free(s);
        return rc;
    }
    s->staged = 1;
    *out = s;
    return GMF_OK;
}

void gmf_outset_free(gmf_outset *s) {
    if (!s) return;
    if (s->staged && !s->committed) (void)remove_flat_dir(s->stage);
    free(s);
}

const char *gmf_outset_dir(const gmf_outset *s) {
    return s->stage;
}

int gmf_outset_path(const gmf_outset *s, const char *name, char *buf, size_t bufsz) {
    int n = snprintf(buf, bufsz, "%s/%s", s->stage, name);
    if (n < 0 || (size_t)n >= bufsz)
        return gmf_error(GMF_EINVAL, "output path too long: %s/%s", s->stage, name);
    return GMF_OK;
}

/* Hard-link into the staging directory the entries of the old set that the new one does not
 * own (a user's notes, a plot), so the swap keeps them. */
static int carry_foreign(const gmf_outset *s) {
    DIR *d = opendir(s->dir);
    if (!d)
        return errno == ENOENT
                   ? GMF_OK
                   : gmf_error(GMF_EIO, "cannot open directory %s: %s", s->dir, strerror(errno));
    int rc = GMF_OK;
    struct dirent *e;
    char from[PATH_CAP], to[PATH_CAP];
    while (rc == GMF_OK && (e = readdir(d)) != NULL) {
        int old;
        size_t plen;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || in_names(s->names, e->d_name) ||
            stale_pid(e->d_name, NULL, &old, &plen))
            continue;
        if (snprintf(from, sizeof from, "%s/%s", s->dir, e->d_name) >= (int)sizeof from ||
            snprintf(to, sizeof to, "%s/%s", s->stage, e->d_name) >= (int)sizeof to)
            rc = gmf_error(GMF_EINVAL, "path too long: %s/%s", s->dir, e->d_name);
        else if (link(from, to) != 0 && errno != EEXIST)
            rc = gmf_error(GMF_EIO, "cannot keep %s in the new output set (link to %s): %s", from,
                           to, strerror(errno));
    }
    closedir(d);
    return rc;
}

/* The swap itself: exchange, or (new set / no RENAME_EXCHANGE) rename. */
static int swap_in(gmf_outset *s) {
    int injected = gmf_io_fault_point();
    if (injected)
        return gmf_error(GMF_EIO,
                         "cannot replace %s: swap failed: %s (injected by "
                         "GMFLOW_TEST_FAIL_WRITE)",
                         s->dir, strerror(injected));
    if (renameat2(AT_FDCWD, s->stage, AT_FDCWD, s->dir, RENAME_EXCHANGE) == 0) return 1;
    int e = errno;
    if (e == ENOENT && !is_dir(s->dir) && rename(s->stage, s->dir) == 0) return 0; /* first set */
    if (e != EINVAL && e != ENOSYS && e != ENOTSUP)
        return gmf_error(GMF_EIO, "cannot replace %s with %s: %s", s->dir, s->stage, strerror(e));
    /* no RENAME_EXCHANGE here: two renames (outset.h: what a crash between them leaves) */
    char old[PATH_CAP];
    if (snprintf(old, sizeof old, "%s.old.%ld", s->dir, (long)getpid()) >= (int)sizeof old)
        return gmf_error(GMF_EINVAL, "output directory name too long: %.200s...", s->dir);
    if (rename(s->dir, old) != 0)
        return gmf_error(GMF_EIO, "cannot move %s to %s: %s", s->dir, old, strerror(errno));
    if (rename(s->stage, s->dir) != 0) {
        e = errno;
        (void)rename(old, s->dir);
        return gmf_error(GMF_EIO, "cannot rename %s to %s: %s", s->stage, s->dir, strerror(e));
    }
    snprintf(s->stage, sizeof s->stage, "%s", old); /* the old set, removed next */
    return 1;
}

int gmf_outset_commit(gmf_outset *s) {
    if (!s->staged || s->committed)
        return gmf_error(GMF_EINVAL, "output set %s: nothing staged to commit", s->dir);
    int rc = carry_foreign(s);
    if (!rc) rc = sync_dir(s->stage);
    if (rc) return rc;
    int swapped = swap_in(s);
    if (swapped < 0) return swapped;
    s->committed = 1;
    /* The new set is in place: what follows is best effort (a failure cannot be undone and is
     * not the run's failure; a leftover old set is removed by the next clean-up). */
    (void)sync_dir(s->parent);
    if (swapped) { /* the old set now sits under the staging name */
        (void)gmf_io_fault_point();
        (void)remove_flat_dir(s->stage);
    }
    return GMF_OK;
}
