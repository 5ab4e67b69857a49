/* test_outset.c -- output sets replaced as a whole and stale temporaries (gmflow/outset.h), and
 * the reason of a failed write (gmf_io_commit), each checked on the file system itself:
 *
 *   - a first set appears complete under its name; a second set replaces it as a whole (a file
 *     only the first set had is gone, a file the user put there is kept, same inode contents);
 *   - a set written through a symbolic link replaces the link's target, the link stays;
 *   - a set freed without commit leaves the old set untouched and no staging directory;
 *   - clean_stale removes `<prefix>.tmp.<pid>` files and directories of a dead pid, keeps those
 *     of a live pid (this process's parent) and of this process, restores a `<prefix>.old.<pid>`
 *     whose set is missing;
 *   - "." and a path through a regular file are refused with a message;
 *   - gmf_io_commit of a stream that hit a full device (/dev/full) reports "No space left on
 *     device" and the file name, not a generic I/O error.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gmflow/common.h"
#include "gmflow/io.h"
#include "gmflow/outset.h"
#include "testutil.h"

static char root[256];

static void put(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    if (!fp) {
        perror(path);
        exit(1);
    }
    fputs(text, fp);
    fclose(fp);
}

static int has(const char *path, const char *text) {
    char buf[256] = {0};
    FILE *fp = fopen(path, "r");
    if (!fp) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return !strcmp(buf, text);
}

static int exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

/* entries of dir whose name starts with prefix */
static int count_prefix(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        n += !strncmp(e->d_name, prefix, strlen(prefix));
    if (d) closedir(d);
    return n;
}

static const char *const names[] = {"a.txt", "b.txt", NULL};

static int write_set(const char *dir, const char *a, const char *b, int commit) {
    gmf_outset *s;
    char p[4200];
    int rc = gmf_outset_new(&s, dir, names);
    if (rc) return rc;
    gmf_outset_path(s, "a.txt", p, sizeof p);
    put(p, a);
    if (b) {
        gmf_outset_path(s, "b.txt", p, sizeof p);
        put(p, b);
    }
    if (commit) rc = gmf_outset_commit(s);
    gmf_outset_free(s);
    return rc;
}

static void test_swap(void) {
    char dir[300], p[400];
    snprintf(dir, sizeof dir, "%s/sub/out", root);
    CHECK(write_set(dir, "A1", "B1", 1) == GMF_OK, "first set: %s", gmf_errmsg());
    snprintf(p, sizeof p, "%s/a.txt", dir);
    CHECK(has(p, "A1"), "first set in place");
    snprintf(p, sizeof p, "%s/notes.md", dir);
    put(p, "mine");
    CHECK(write_set(dir, "A2", NULL, 1) == GMF_OK, "second set: %s", gmf_errmsg());
    snprintf(p, sizeof p, "%s/a.txt", dir);
    CHECK(has(p, "A2"), "second set in place");
    snprintf(p, sizeof p, "%s/b.txt", dir);
    CHECK(!exists(p), "b.txt of the first set is gone (no mixing)");
    snprintf(p, sizeof p, "%s/notes.md", dir);
    CHECK(has(p, "mine"), "the user's file is kept");
    CHECK(write_set(dir, "A3", "B3", 0) == GMF_OK, "uncommitted set");
    snprintf(p, sizeof p, "%s/a.txt", dir);
    CHECK(has(p, "A2"), "an uncommitted set replaces nothing");
    snprintf(p, sizeof p, "%s/sub", root);
    CHECK(count_prefix(p, "out.") == 0, "no staging or old directory left");
}

static void test_symlink(void) {
    char target[300], link_[300], p[400];
    snprintf(target, sizeof target, "%s/target", root);
    snprintf(link_, sizeof link_, "%s/link", root);
    CHECK(write_set(target, "T1", "T1", 1) == GMF_OK, "target set: %s", gmf_errmsg());
    CHECK(symlink(target, link_) == 0, "symlink");
    CHECK(write_set(link_, "T2", NULL, 1) == GMF_OK, "set through the link: %s", gmf_errmsg());
    struct stat st;
    CHECK(lstat(link_, &st) == 0 && S_ISLNK(st.st_mode), "the link is still a link");
    snprintf(p, sizeof p, "%s/a.txt", target);
    CHECK(has(p, "T2"), "the link's target holds the new set");
    snprintf(p, sizeof p, "%s/b.txt", target);
    CHECK(!exists(p), "and only the new set");
}

static long dead_pid(void) {
    pid_t c = fork();
    if (c == 0) _exit(0);
    waitpid(c, NULL, 0);
    return (long)c;
}

static void test_stale(void) {
    char dir[300], p[400];
    snprintf(dir, sizeof dir, "%s/stale", root);
    mkdir(dir, 0777);
    long dead = dead_pid(), live = (long)getppid();
    snprintf(p, sizeof p, "%s/ck.bin.tmp.%ld", dir, dead);
    put(p, "x");
    snprintf(p, sizeof p, "%s/ck.bin.tmp.%ld", dir, live);
    put(p, "x");
    snprintf(p, sizeof p, "%s/ck.bin.tmp.%ld", dir, (long)getpid());
    put(p, "x");
    snprintf(p, sizeof p, "%s/out.tmp.%ld", dir, dead);
    mkdir(p, 0777);
    snprintf(p, sizeof p, "%s/out.tmp.%ld/t.npy", dir, dead);
    put(p, "x");
    snprintf(p, sizeof p, "%s/set.old.%ld", dir, dead);
    mkdir(p, 0777);
    snprintf(p, sizeof p, "%s/set.old.%ld/a.txt", dir, dead);
    put(p, "old");
    snprintf(p, sizeof p, "%s/keep.tmp.x1", dir);
    put(p, "x");
    size_t n = 0;
    CHECK(gmf_outset_clean_stale(dir, "out", &n) == GMF_OK && n == 1, "prefix out: %zu removed", n);
    CHECK(count_prefix(dir, "ck.bin.tmp.") == 3, "prefix 'out' leaves other names alone");
    CHECK(gmf_outset_clean_stale(dir, NULL, &n) == GMF_OK && n == 2, "any prefix: %zu (want 2)", n);
    snprintf(p, sizeof p, "%s/ck.bin.tmp.%ld", dir, dead);
    CHECK(!exists(p), "dead pid's temporary removed");
    snprintf(p, sizeof p, "%s/ck.bin.tmp.%ld", dir, live);
    CHECK(exists(p), "live pid's temporary kept");
    snprintf(p, sizeof p, "%s/ck.bin.tmp.%ld", dir, (long)getpid());
    CHECK(exists(p), "own temporary kept");
    snprintf(p, sizeof p, "%s/set/a.txt", dir);
    CHECK(has(p, "old"), "an old set whose set is missing is restored");
    snprintf(p, sizeof p, "%s/keep.tmp.x1", dir);
    CHECK(exists(p), "a name without a pid is kept");
    CHECK(gmf_outset_clean_stale("/nonexistent/dir", NULL, &n) == GMF_OK && n == 0,
          "a missing directory is fine");
}

static void test_refused(void) {
    gmf_outset *s = NULL;
    char p[400];
    CHECK(gmf_outset_new(&s, ".", names) == GMF_EINVAL && !s, "'.' refused: %s", gmf_errmsg());
    snprintf(p, sizeof p, "%s/file", root);
    put(p, "x");
    snprintf(p, sizeof p, "%s/file/out", root);
    CHECK(gmf_outset_new(&s, p, names) != GMF_OK && strstr(gmf_errmsg(), "not a directory"),
          "parent is a file: %s", gmf_errmsg());
    snprintf(p, sizeof p, "%s/file", root);
    CHECK(gmf_outset_new(&s, p, names) != GMF_OK && strstr(gmf_errmsg(), "not a directory"),
          "set is a file: %s", gmf_errmsg());
}

static void test_full_device(void) {
    FILE *full = fopen("/dev/full", "w");
    if (!full) {
        printf("  /dev/full not available: commit errno check skipped\n");
        return;
    }
    char p[400];
    snprintf(p, sizeof p, "%s/full.bin", root);
    gmf_io_file f;
    CHECK(gmf_io_open(&f, p) == GMF_OK, "open: %s", gmf_errmsg());
    fclose(f.fp);
    remove(f.tmp);
    f.fp = full; /* every write now fails as on a full disk */
    for (int i = 0; i < 20000; i++)
        fprintf(f.fp, "%d,", i);
    CHECK(gmf_io_commit(&f) == GMF_EIO && strstr(gmf_errmsg(), "No space left on device") &&
              strstr(gmf_errmsg(), "full.bin"),
          "full device: '%s'", gmf_errmsg());
    CHECK(!exists(p), "nothing under the final name");
}

int main(void) {
    snprintf(root, sizeof root, "%s/gmflow_outset.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_swap();
    test_symlink();
    test_stale();
    test_refused();
    test_full_device();
    int rc = tu_finish("test_outset");
    if (rc == 0) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    }
    return rc;
}
