/* gmflow/outset.h -- output sets replaced atomically as a whole, and removal of the stale
 * temporaries of dead processes (prefix gmf_outset).
 *
 * A command that writes several files describing one result (`gmflow flow`: trajectory.csv,
 * t.npy, mu.npy, Sigma.npy, C.npy, state.json, run.json) must never leave a mixture of an old
 * and a new result behind.  An output set does it with a staging directory:
 *
 *   1. gmf_outset_new(&set, "out/flow", names) creates the parents of out/flow if needed, removes
 *      stale temporaries (gmf_outset_clean_stale) and creates the fresh, empty staging
 *      directory out/flow.tmp.<pid> beside it.
 *   2. The caller writes every file into gmf_outset_dir(set) (each through gmf_io_open/commit:
 *      written, flushed, fsync'd, renamed).
 *   3. gmf_outset_commit(set) hard-links into the staging directory every entry of the old
 *      out/flow that is not one of `names` (files the user put there are kept), fsyncs the
 *      staging directory, and swaps it with out/flow in one renameat2(RENAME_EXCHANGE) (or, the
 *      first time, renames it to out/flow), fsyncs the parent, then removes the old set (which
 *      now sits under the staging name).  Once swapped the commit succeeds: syncing the parent
 *      and removing the old set are best effort (a leftover is removed by the next clean-up).
 *
 * A reader sees out/flow as either the whole old set or the whole new one.  What a crash leaves:
 *   - before the swap: out/flow is the old set, untouched; out/flow.tmp.<pid> holds a partial
 *     new set, removed by the next gmf_outset_new (or gmf_outset_clean_stale) of any process;
 *   - after the swap: out/flow is the whole new set; out/flow.tmp.<pid> holds the old one, removed
 *     the same way.
 * Where the file system has no RENAME_EXCHANGE (EINVAL/ENOSYS: e.g. some network file systems)
 * the swap is two renames: out/flow -> out/flow.old.<pid>, staging -> out/flow.  A crash between
 * them leaves no out/flow and the old set under out/flow.old.<pid>; the next clean-up renames it
 * back to out/flow (the old set) when out/flow is missing, else removes it.
 *
 * gmf_outset_free without a commit removes the staging directory (a failed run replaces
 * nothing).  Sub-directories in an existing output directory are refused (they cannot be
 * hard-linked); "." and "/" cannot be an output set; a symbolic link to a directory stands for
 * the directory it resolves to (the link stays).  Removing stale temporaries is best effort: a
 * failure there does not stop a new set.
 *
 * Test hooks (process-wide, read from the environment at the first write, for the fault-
 * injection tests only): GMFLOW_TEST_FAIL_WRITE=k makes the k-th commit point of the process
 * fail as a full disk would (ENOSPC); GMFLOW_TEST_CRASH_WRITE=k kills the process with SIGKILL
 * there.  Commit points are counted from 1: each gmf_io_commit, then the set's swap and, as the
 * next point, the removal of the old set after the swap (a failure injected there is ignored,
 * as a real one would be; a crash there leaves the new set in place and the old one staged).
 */
#ifndef GMFLOW_OUTSET_H
#define GMFLOW_OUTSET_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gmf_outset gmf_outset; /* opaque: paths of the set and of its staging directory */

/* Start a new set for directory `dir`; `names` (NULL-terminated) are the file names the set
 * writes, the ones replaced even when the new set lacks them.  Errors name the path and carry
 * strerror(errno). */
int gmf_outset_new(gmf_outset **set, const char *dir, const char *const *names);
/* Removes the staging directory unless committed; NULL is fine. */
void gmf_outset_free(gmf_outset *set);

/* The staging directory to write the files into. */
const char *gmf_outset_dir(const gmf_outset *set);
/* "<staging>/<name>" into buf; GMF_EINVAL if it does not fit. */
int gmf_outset_path(const gmf_outset *set, const char *name, char *buf, size_t bufsz);

/* Swap the staging directory into place (see above).  After a failure the old set is intact. */
int gmf_outset_commit(gmf_outset *set);

/* Remove the temporaries of dead processes: in directory dir, every entry named
 * `<prefix>.tmp.<pid>` or `<prefix>.old.<pid>` (prefix NULL: any `*.tmp.<pid>` /
 * `*.old.<pid>`) whose pid is not a live process (kill(pid, 0) fails with ESRCH) and is not
 * this process; a directory is removed with its (flat) contents.  A `<prefix>.old.<pid>` is
 * renamed back to `<prefix>` when that is missing (see the fallback above).  *nremoved (may be
 * NULL) counts what was removed or restored.  A missing dir is not an error.  A pid reused by
 * a live process keeps its temporary (the safe side); processes of another machine sharing the
 * directory are not seen. */
int gmf_outset_clean_stale(const char *dir, const char *prefix, size_t *nremoved);

#ifdef __cplusplus
}
#endif
#endif
