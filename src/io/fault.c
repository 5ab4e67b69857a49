/* fault.c -- fault-injection test hooks of the writers (documented in gmflow/outset.h).
 * Process-wide state: a counter of commit points and the two environment variables, read once. */
#define _POSIX_C_SOURCE 200809L

#include "fault.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>

static long env_index(const char *name) {
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    long v = strtol(s, &end, 10);
    return *end == '\0' && v > 0 ? v : 0;
}

int gmf_io_fault_point(void) {
    static int init;
    static long fail_at, crash_at, count;
    if (!init) {
        fail_at = env_index("GMFLOW_TEST_FAIL_WRITE");
        crash_at = env_index("GMFLOW_TEST_CRASH_WRITE");
        init = 1;
    }
    if (!fail_at && !crash_at) return 0;
    count++;
    if (count == crash_at) raise(SIGKILL);
    return count == fail_at ? ENOSPC : 0;
}
