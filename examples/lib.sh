# examples/lib.sh -- shared by the experiment drivers examples/fig*.sh (sourced, not run).
#
# Every driver accepts:
#   --quick            the small configuration (minutes; what CI runs)
#   --trials N         independent trials (seeds 1..N)
#   --epochs E         epochs per run
#   --jobs J           runs in parallel (default: the number of cores); each run is 1 thread
#   --results DIR      where the CSV outputs go (default: results/full, or with --quick the
#                      untracked out/quick, so that a quick run never touches committed files)
#   --work DIR         scratch space for checkpoints and snapshots (default out/experiments)
#   --gmflow PATH      the gmflow binary (default build/gmflow)
#   --data DIR         the directory holding mnist/ and fashion-mnist/ (default ../shared/data)
# and writes, besides its CSVs, <results>/<fig>/commands.csv: one row per gmflow command with
# its wall time in seconds and exit status (status,seconds,command).
set -euo pipefail

EX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=0
TRIALS=""
EPOCHS=""
JOBS=$(nproc 2>/dev/null || echo 2)
RESULTS=""
WORK=""
GMFLOW=$EX_ROOT/build/gmflow
DATA=$EX_ROOT/../shared/data

# header_comment FILE: the comment block at the top of FILE (after the #! line), unprefixed.
header_comment() {
    awk 'NR == 1 && /^#!/ { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$1"
}

# usage_synopsis: the driver's usage line (its own options in DRIVER_OPTS, set by the driver),
# then the options every driver takes (this file's header).
usage_synopsis() {
    echo "usage: examples/$(basename "$0") [-h | --help] ${DRIVER_OPTS:+$DRIVER_OPTS }[--quick] [options below]"
    echo
    header_comment "$EX_ROOT/examples/lib.sh" | sed -n '/^Every driver accepts:/,$p'
}
# usage (-h, --help; stdout): the synopsis, then the driver's header.
usage() {
    usage_synopsis
    echo
    header_comment "$0"
}
# usage_error MSG: "driver.sh: MSG" and the synopsis on stderr, exit 2 (the gmflow CLI's status
# for a usage error).
usage_error() {
    echo "$(basename "$0"): $*" >&2
    usage_synopsis >&2
    exit 2
}

# parse_common "$@": sets the variables above; prints help (the driver's header) on -h.
parse_common() {
    while [ $# -gt 0 ]; do
        case "$1" in
        --trials | --epochs | --jobs | --results | --work | --gmflow | --data)
            if [ $# -lt 2 ] || [ -z "$2" ]; then
                usage_error "option $1 needs a value"
            fi
            ;;
        esac
        case "$1" in
        --quick) QUICK=1; shift ;;
        --trials) TRIALS=$2; shift 2 ;;
        --epochs) EPOCHS=$2; shift 2 ;;
        --jobs) JOBS=$2; shift 2 ;;
        --results) RESULTS=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        --gmflow) GMFLOW=$2; shift 2 ;;
        --data) DATA=$2; shift 2 ;;
        -h | --help)
            usage
            exit 0
            ;;
        -*) usage_error "unknown option '$1'" ;;
        *) usage_error "unexpected argument '$1'" ;;
        esac
    done
    [[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || usage_error "--jobs must be a positive integer (got '$JOBS')"
    if [ -n "$TRIALS" ] && ! [[ "$TRIALS" =~ ^[1-9][0-9]*$ ]]; then
        usage_error "--trials must be a positive integer (got '$TRIALS')"
    fi
    if [ -n "$EPOCHS" ] && ! [[ "$EPOCHS" =~ ^[1-9][0-9]*$ ]]; then
        usage_error "--epochs must be a positive integer (got '$EPOCHS')"
    fi
    local mode=full
    [ "$QUICK" = 1 ] && mode=quick
    if [ "$QUICK" = 1 ]; then
        RESULTS=${RESULTS:-$EX_ROOT/out/quick} # untracked (.gitignore): results/quick is committed
    else
        RESULTS=${RESULTS:-$EX_ROOT/results/full}
    fi
    WORK=${WORK:-$EX_ROOT/out/experiments/$mode}
    [ -x "$GMFLOW" ] || { echo "$(basename "$0"): no gmflow binary at $GMFLOW (run tools/setup.sh)" >&2; exit 1; }
    export OPENBLAS_NUM_THREADS=1
}

# Figure 2's K = 10 runs double as Figure 5's "trained beta" and Figure 7's "one layer" curves:
# the same options and seeds give bitwise the same run, so those drivers queue them under
# Figure 2's name and skip them when Figure 2 already ran.
fig2_epochs() { [ "$QUICK" = 1 ] && echo 5 || echo 200; }
fig2_limits() { [ "$QUICK" = 1 ] && echo "--train-limit 10000 --test-limit 2000" || true; }

# dataset names on the command line and in file names
ds_dir() { [ "$1" = mnist ] && echo "$DATA/mnist" || echo "$DATA/fashion-mnist"; }
ds_opt() { [ "$1" = mnist ] && echo mnist || echo fashion; }

# begin_fig NAME: results and work directories for one figure, fresh job list
begin_fig() {
    # the data are checked here, once a driver has checked all its options (usage errors exit 2
    # before a missing data directory exits 1)
    [ -d "$DATA/mnist" ] || { echo "$(basename "$0"): no data directory $DATA/mnist" >&2; exit 1; }
    FIG=$1
    FIG_RES=$RESULTS/$FIG
    FIG_WORK=$WORK/$FIG
    mkdir -p "$FIG_RES" "$FIG_WORK"
    JOBLIST=$(mktemp "${TMPDIR:-/tmp}/gmflow_jobs.XXXXXX")
    [ -f "$FIG_RES/commands.csv" ] || echo "status,seconds,command" >"$FIG_RES/commands.csv"
    FIG_T0=$(date +%s)
}

# job CSV_DEST -- gmflow ARGS...: queue one gmflow run whose epochs.csv (and mc.csv if any) is
# copied to CSV_DEST(.csv / _mc.csv) once it succeeds.  The run's --out is derived from the
# destination.  Runs whose destination already holds the requested epochs are skipped; one with
# fewer epochs continues from its checkpoint (--resume) when the work directory still has it.
# So rerunning a driver resumes the figure, and raising --epochs extends it.
job() {
    local dest=$1
    shift 2
    printf '%s\t%s\n' "$dest" "$*" >>"$JOBLIST"
}

# run_jobs: run the queued jobs, JOBS at a time; fails if any failed.
run_jobs() {
    local n
    n=$(wc -l <"$JOBLIST")
    echo "$FIG: $n runs, $JOBS at a time, results in $FIG_RES" >&2
    export GMFLOW FIG_RES FIG_WORK RESULTS WORK EX_ROOT
    local rc=0
    tr '\n' '\0' <"$JOBLIST" | xargs -0 -P "$JOBS" -n 1 bash -c '
        IFS=$(printf "\t") read -r dest args <<<"$1"
        rel=${dest#"$RESULTS"/}
        out=$WORK/$rel
        want=$(sed -n "s/.*--epochs \([0-9]*\).*/\1/p" <<<"$args")
        resume=""
        if [ -f "$dest.csv" ]; then
            have=$(tail -1 "$dest.csv" | cut -d, -f1)
            if [ -z "$want" ] || [ "$have" -ge "$want" ] 2>/dev/null; then
                echo "  skip $rel (exists)" >&2
                exit 0
            fi
            # fewer epochs than asked: continue from the checkpoint (bitwise the same as an
            # uninterrupted run), else start over
            [ -f "$out/checkpoint.gmck" ] && resume="--resume"
        fi
        [ -z "$resume" ] && rm -rf "$out"
        mkdir -p "$(dirname "$dest")" "$out"
        t0=$(date +%s.%N)
        # shellcheck disable=SC2086
        "$GMFLOW" $args $resume --out "$out" --quiet >"$out.log" 2>&1
        st=$?
        t1=$(date +%s.%N)
        secs=$(awk -v a="$t0" -v b="$t1" "BEGIN { print b - a }")
        printf "%d,%.1f,\"gmflow %s%s --out %s\"\n" $st "$secs" "${args//$EX_ROOT\//}" "${resume:+ $resume}" "${out#"$EX_ROOT"/}" >>"$FIG_RES/commands.csv"
        if [ $st -ne 0 ]; then
            echo "  FAILED ($st): gmflow $args" >&2
            tail -3 "$out.log" >&2
            exit 1
        fi
        cp "$out/epochs.csv" "$dest.csv.tmp" && mv "$dest.csv.tmp" "$dest.csv"
        [ -f "$out/mc.csv" ] && cp "$out/mc.csv" "${dest}_mc.csv"
        echo "  done $(basename "$(dirname "$dest")")/$(basename "$dest") in ${secs}s: $(tail -1 "$out.log")" >&2
    ' _ || rc=1
    rm -f "$JOBLIST"
    echo "$FIG: finished in $(($(date +%s) - FIG_T0)) s" >&2
    return $rc
}
