#!/usr/bin/env bash
# run_lowrank_bench.sh -- seconds per MNIST training epoch of the low-rank covariance GM layer
# (--cov lowrank --rank r) against the diagonal layer, side by side: one thread pinned to one
# CPU, the configurations interleaved within each repeat (diag r1 r2 ... diag r1 r2 ...), the
# median per configuration and the median of the per-repeat ratios to the diagonal run of the
# same repeat.  K = 20, batch 64, float32, the paper's settings otherwise.  Two clocks: wall, the
# training time of the epoch (epochs.csv's "seconds": no data loading, no evaluation), and cpu,
# the process's user + system CPU time minus that of an --epochs 0 run of the same model (data
# loading, init, evaluation of 100 test images) -- CPU time does not count the time the process
# waits for the core, so it is the steadier figure on a machine shared with other jobs.
#   usage: bench/run_lowrank_bench.sh [-h | --help] [--out CSV | --in-repo] [gmflow] [repeats]
#                                     [cpu] [ranks...]
#   (defaults: build/gmflow 5 1 "1 2 4 8"); writes ${TMPDIR:-/tmp}/gmflow_lowrank_bench_<date>.csv,
#   or CSV (--out), or bench/results/lowrank_bench_<date>.csv (--in-repo)
set -eu
# me, usage, usage_error, positional_args: the scripts' convention
# shellcheck source-path=SCRIPTDIR source=../tools/scriptargs.sh
. "$(dirname "$0")/../tools/scriptargs.sh"
OUT="" INREPO=0 args=()
while [ $# -gt 0 ]; do
    case "$1" in
    --out) [ $# -ge 2 ] && [ -n "$2" ] || usage_error "--out needs a file name"; OUT=$2; shift ;;
    --in-repo) INREPO=1 ;;
    *) args+=("$1") ;;
    esac
    shift
done
[ -z "$OUT" ] || [ "$INREPO" = 0 ] || usage_error "--out and --in-repo: choose one"
positional_args ${args[@]+"${args[@]}"}
G=${pos[0]:-build/gmflow}
N=${pos[1]:-5}
CPU=${pos[2]:-1}
RANKS=${pos[*]:3}
RANKS=${RANKS:-1 2 4 8}
[[ $N =~ ^[1-9][0-9]*$ ]] || usage_error "repeats must be a positive integer (got '$N')"
[[ $CPU =~ ^[0-9]+$ ]] || usage_error "cpu must be a core number (got '$CPU')"
for r in $RANKS; do
    [[ $r =~ ^[1-9][0-9]*$ ]] || usage_error "a rank must be a positive integer (got '$r')"
done
[ -x "$G" ] || { echo "$me: $G: not found or not executable" >&2; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/gmflow_lowrank_bench.XXXXXX")
trap 'rm -rf "$T"' EXIT
STAMP=$(date -u +%Y%m%d-%H%M%S)
if [ "$INREPO" = 1 ]; then mkdir -p bench/results && OUT=bench/results/lowrank_bench_$STAMP.csv; fi
OUT=${OUT:-${TMPDIR:-/tmp}/gmflow_lowrank_bench_$STAMP.csv}
echo "repeat,config,rank,seconds,cpu_seconds,load1" > "$OUT"
export OPENBLAS_NUM_THREADS=1
cpu() { # user + system seconds of the command
    /usr/bin/time -f "%U %S" -o "$T/time" "$@" > /dev/null || exit 1
    awk '{print $1 + $2}' "$T/time"
}
for rep in $(seq 1 "$N"); do
    for cfg in diag $RANKS; do
        if [ "$cfg" = diag ]; then A=(); r=0; else A=(--cov lowrank --rank "$cfg"); r=$cfg; fi
        B=(taskset -c "$CPU" "$G" train -q --test-limit 100 "${A[@]}" --out "$T/o")
        c0=$(cpu "${B[@]}" --epochs 0)
        c1=$(cpu "${B[@]}" --epochs 1)
        s=$(tail -1 "$T/o/epochs.csv" | cut -d, -f5)
        echo "$rep,$cfg,$r,$s,$(awk -v a="$c1" -v b="$c0" 'BEGIN {print a - b}'),$(cut -d' ' -f1 /proc/loadavg)" >> "$OUT"
    done
done
/usr/bin/python3 - "$OUT" << 'PY'
import csv, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1])))
cfgs = list(dict.fromkeys(r["config"] for r in rows))
reps = sorted({r["repeat"] for r in rows})
for clock in ("seconds", "cpu_seconds"):
    t = {(r["repeat"], r["config"]): float(r[clock]) for r in rows}
    print(f"{clock}: config, median per epoch, ratio to diag (median of per-repeat ratios, range)")
    for c in cfgs:
        s = [t[(p, c)] for p in reps]
        q = [t[(p, c)] / t[(p, "diag")] for p in reps]
        print(f"  {c:>6}  {st.median(s):7.3f}  {st.median(q):.2f} ({min(q):.2f}-{max(q):.2f})")
print("load average during the runs:", min(float(r["load1"]) for r in rows), "-",
      max(float(r["load1"]) for r in rows), "; csv:", sys.argv[1])
PY
