# tests/cli_common.sh -- the preamble of the CLI test scripts (tests/cli_*.sh, tests/mpi_*.sh,
# tests/cls_variants.sh), sourced, not run (CMake leaves it out of the test list).  A script starts
#
#   set -u
#   . "$(dirname "${BASH_SOURCE[0]}")/cli_common.sh" || exit 1
#   cli_start NAME "$@"              # GMFLOW, BUILD, TMP (below)
#   cli_require_dir "$DATA"          # optional: skip the whole script without its data
#
# and keeps its own checks and its own summary line.  What it gets:
#
#   cli_start NAME ARGS...  NAME for the messages; GMFLOW = ARGS[1], the gmflow binary (made
#                           absolute: a script may cd); BUILD = ARGS[2] or "build"; TMP = a fresh
#                           directory ${TMPDIR:-/tmp}/gmflow_NAME.XXXXXX, removed at exit unless
#                           cli_keep_tmp=1 (set it to leave a failed run's files for a look).
#                           No binary given: a usage line and exit 2.
#   cli_require_dir DIR     DIR missing: "NAME: SKIP (no DIR)" and exit 77, which ctest reports as
#                           skipped (SKIP_RETURN_CODE 77), never as passed.
#   cli_require_cmd CMD     CMD not on the PATH: "NAME: SKIP (no CMD)" and exit 77.
#   cli_mpi_env             the MPI scripts' set-up: skip without mpirun; Open MPI allowed to run
#                           as root, BLAS on one thread, LeakSanitizer off unless ASAN_OPTIONS
#                           says otherwise; MPIRUN=(timeout 120 mpirun --oversubscribe).
#   checks, fails           the counts of checks and of failures, both 0 at the start;
#   ok                      count a check (one that passed, or one whose failures `fail` reported);
#   bad MESSAGE...          count a check that failed: "FAIL: MESSAGE" on stderr;
#   fail MESSAGE...         a failure of a check counted elsewhere (scripts that count their
#                           checks themselves): "FAIL: MESSAGE" on stderr, fails + 1 only;
#   check MESSAGE CMD...    run CMD: ok when it succeeds, else bad MESSAGE.
#
# BLAS runs on one thread unless the caller sets OPENBLAS_NUM_THREADS (ctest sets 1).

export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}

fails=0
checks=0
cli_keep_tmp=0

ok() { checks=$((checks + 1)); }
fail() {
    fails=$((fails + 1))
    echo "FAIL: $*" >&2
}
bad() {
    checks=$((checks + 1))
    fail "$@"
}
check() { # check MESSAGE CMD...
    local what=$1
    shift
    if "$@"; then ok; else bad "$what"; fi
}

cli_cleanup() {
    [ "$cli_keep_tmp" = 1 ] || rm -rf "$TMP"
}

cli_start() {
    cli_name=$1
    shift
    if [ $# -lt 1 ] || [ -z "$1" ]; then
        echo "usage: $cli_name.sh <path-to-gmflow> [<build-dir>]" >&2
        exit 2
    fi
    GMFLOW=$(realpath -m -- "$1")
    BUILD=${2:-build}
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/gmflow_$cli_name.XXXXXX") || exit 1
    trap cli_cleanup EXIT
}

cli_require_dir() {
    if [ ! -d "$1" ]; then
        echo "$cli_name: SKIP (no $1)"
        exit 77 # ctest: skipped
    fi
}

cli_require_cmd() {
    if ! command -v "$1" >/dev/null; then
        echo "$cli_name: SKIP (no $1)"
        exit 77 # ctest: skipped
    fi
}

cli_mpi_env() {
    cli_require_cmd mpirun
    export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    # ASan builds: Open MPI keeps allocations past MPI_Finalize, which LeakSanitizer would report
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
    MPIRUN=(timeout 120 mpirun --oversubscribe)
}
