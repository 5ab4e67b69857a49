#!/usr/bin/env bash
# run_rhs_ab.sh -- the flow's right-hand side (Theorem 4, squared loss) of two gmflow builds and of
# NumPy (bench/flow_numpy.py), interleaved: A B N A B N ..., all pinned to one core.
#
# A is a build of an older commit (--old-commit REV is exported with `git archive` and built in a
# temporary directory outside the repository, or --old-build DIR names one), B this tree's build
# (--build DIR, default build-bench; built if missing), N NumPy.  Per size and round: bench_rhs
# (one OpenBLAS thread, process CPU time, median us per evaluation, BW and Euclidean forms) for A
# and B, and `flow_numpy.py rhs` (BW form, best of 3 batches, process CPU time) for N.  Printed per
# size: the medians over the rounds and the median and range of the per-round ratios A/B and
# N/B; the RHS of A and B at the bench's initial state are compared (normwise max relative
# difference).  NumPy runs with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset.
#
# usage: bench/run_rhs_ab.sh [--old-commit REV | --old-build DIR] [--build DIR] [--rounds R]
#                            [--cpu N] [--min-time S] [--out CSV] [--size n,d,K]...
#   default sizes 200,3,3  200,3,4  2000,100,5  10000,50,10; --rounds 5; --cpu 1;
#   --min-time 0.3 (seconds per bench_rhs measurement); --out default
#   ${TMPDIR:-/tmp}/gmflow_rhs_ab_<date>.csv (bench/results/ only when asked with --out).
set -euo pipefail

# me, usage, usage_error, positional_args: the scripts' convention
# shellcheck source-path=SCRIPTDIR source=../tools/scriptargs.sh
. "$(dirname "$0")/../tools/scriptargs.sh"
cd "$(dirname "$0")/.."
OLD_REV="" OLD_BUILD="" BUILD=build-bench ROUNDS=5 CPU=1 MINT=0.3 OUT="" SIZES=()
PY=/usr/bin/python3
while [ $# -gt 0 ]; do
    case "$1" in
    --old-commit | --old-build | --build | --rounds | --cpu | --min-time | --out | --size)
        { [ $# -ge 2 ] && [ -n "$2" ]; } || usage_error "option $1 needs a value" ;;
    esac
    case "$1" in
    --old-commit) OLD_REV="$2"; shift ;;
    --old-build) OLD_BUILD="$2"; shift ;;
    --build) BUILD="$2"; shift ;;
    --rounds) [[ $2 =~ ^[1-9][0-9]*$ ]] || usage_error "--rounds $2: want a positive integer"; ROUNDS="$2"; shift ;;
    --cpu) [[ $2 =~ ^[0-9]+$ ]] || usage_error "--cpu $2: want a core number"; CPU="$2"; shift ;;
    --min-time) MINT="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --size) [[ $2 =~ ^[1-9][0-9]*,[1-9][0-9]*,[1-9][0-9]*$ ]] || usage_error "--size $2: want n,d,K"; SIZES+=("$2"); shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown option '$1'" ;;
    esac
    shift
done
[ ${#SIZES[@]} -gt 0 ] || SIZES=(200,3,3 200,3,4 2000,100,5 10000,50,10)
[ -n "$OLD_REV$OLD_BUILD" ] || usage_error "give --old-commit REV or --old-build DIR"
OUT="${OUT:-${TMPDIR:-/tmp}/gmflow_rhs_ab_$(date +%Y%m%d-%H%M%S).csv}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gmflow_rhs_ab.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

build() { # source dir, build dir
    cmake -S "$1" -B "$2" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$2" -j2 --target bench_bench_rhs >/dev/null
}
[ -x "$BUILD/bench/bench_rhs" ] || build . "$BUILD"
if [ -n "$OLD_REV" ]; then
    mkdir "$WORK/src"
    git archive "$OLD_REV" | tar -x -C "$WORK/src"
    OLD_BUILD="$WORK/build"
    build "$WORK/src" "$OLD_BUILD"
fi
A="$OLD_BUILD/bench/bench_rhs" B="$BUILD/bench/bench_rhs"
[ -x "$A" ] || { echo "run_rhs_ab.sh: $A: not found" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
PIN=(taskset -c "$CPU")

# the median us per evaluation of form F in a bench_rhs CSV
med() { awk -F, -v f="$2" 'NR > 1 && $1 == f { printf "%.4f", $8 * 1e6 }' "$1"; }

CPUNAME="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# RHS A/B/NumPy: A=${OLD_REV:-$OLD_BUILD} B=$(git rev-parse --short HEAD)$(git diff --quiet || echo +dirty)"
echo "# cpu: $CPUNAME, $(getconf _NPROCESSORS_ONLN) cores, pinned to $CPU; load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "size,round,old_bw_us,new_bw_us,old_euclid_us,new_euclid_us,numpy_bw_us,old_over_new_bw,numpy_over_new_bw,cpu" >"$OUT"
for sz in "${SIZES[@]}"; do
    IFS=, read -r n d K <<<"$sz"
    P="$WORK/p_${n}_${d}_${K}"
    mkdir -p "$P"
    # the problem as .npy for NumPy, and each build's RHS at the start (rhs_c.npy)
    "$A" flow --dir "$P" --n "$n" --d "$d" --K "$K" --T 1e-9 --tag a >/dev/null
    cp "$P/rhs_c.npy" "$P/rhs_a.npy"
    "$B" flow --dir "$P" --n "$n" --d "$d" --K "$K" --T 1e-9 --tag b >/dev/null
    diff=$($PY -c "import numpy as np,sys;a=np.load(sys.argv[1]);b=np.load(sys.argv[2]);print('%.2e'%(abs(a-b).max()/abs(a).max()))" "$P/rhs_a.npy" "$P/rhs_c.npy")
    echo "# $sz: RHS of A vs B at the initial state, normwise max relative difference $diff"
    for r in $(seq "$ROUNDS"); do
        "${PIN[@]}" "$A" --size "$sz" --threads 1 --no-sweep --no-breakdown --no-old --gemm 200 \
            --min-time "$MINT" --out "$WORK/a.csv" >/dev/null
        "${PIN[@]}" "$B" --size "$sz" --threads 1 --no-sweep --no-breakdown --no-old --gemm 200 \
            --min-time "$MINT" --out "$WORK/b.csv" >/dev/null
        reps=$((n * K < 5000 ? 2000 : 5))
        npy=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "${PIN[@]}" $PY bench/flow_numpy.py rhs "$P" \
            --reps "$reps" --out "$WORK/rhs_py.npy" | tr ' ' '\n' | sed -n 's/^vectorized_s=//p')
        ob=$(med "$WORK/a.csv" bw) nb=$(med "$WORK/b.csv" bw)
        oe=$(med "$WORK/a.csv" euclid) ne=$(med "$WORK/b.csv" euclid)
        nu=$(awk -v s="$npy" 'BEGIN{printf "%.4f", s * 1e6}')
        echo "\"$sz\",$r,$ob,$nb,$oe,$ne,$nu,$(awk -v a="$ob" -v b="$nb" 'BEGIN{printf "%.4f", a/b}'),$(awk -v a="$nu" -v b="$nb" 'BEGIN{printf "%.4f", a/b}'),\"$CPUNAME\"" >>"$OUT"
    done
done
echo "# load at end: $(cut -d' ' -f1-3 /proc/loadavg); CSV: $OUT"
$PY - "$OUT" <<'PY'
import csv, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print(f"{'size':>12} {'old bw us':>10} {'new bw us':>10} {'old/new bw':>18} {'old eu us':>10} {'new eu us':>10} {'old/new eu':>18} {'numpy us':>10} {'numpy/old':>18} {'numpy/new':>18}")
for size in dict.fromkeys(r["size"] for r in rows):
    R = [r for r in rows if r["size"] == size]
    col = lambda k: [float(r[k]) for r in R]
    def ratio(a, b):
        q = [x / y for x, y in zip(col(a), col(b))]
        return f"{st.median(q):.2f} ({min(q):.2f}-{max(q):.2f})"
    print(f"{size:>12} {st.median(col('old_bw_us')):10.1f} {st.median(col('new_bw_us')):10.1f} {ratio('old_bw_us','new_bw_us'):>18} "
          f"{st.median(col('old_euclid_us')):10.1f} {st.median(col('new_euclid_us')):10.1f} {ratio('old_euclid_us','new_euclid_us'):>18} "
          f"{st.median(col('numpy_bw_us')):10.1f} {ratio('numpy_bw_us','old_bw_us'):>18} {ratio('numpy_bw_us','new_bw_us'):>18}")
PY
