#!/usr/bin/env bash
# run_stationary_bench.sh -- time to reach a stationary point (||F(v)||_2 <= TOL, F the Theorem 4
# BW vector field (mu', Sigma')) on long-horizon toys: gmflow against SciPy's stiff solvers
# (solve_ivp BDF, Radau, LSODA with bench/flow_numpy.py's right-hand side), interleaved
# (gmflow, SciPy, gmflow, SciPy, ... per round), every run pinned to one core, one BLAS thread.
#
# Toys (bench/stationary_toy writes DIR/data.csv + DIR/init.json, read by both sides, so they
# integrate exactly the same problem):
#   builtin  gmflow flow's built-in toy: n 200, d 3, K 3 (D 4, relu teacher of width 4)
#   d6       n 20, d 6, K 2 (D 7): overparameterized, converges to an interpolating point
#   d20      n 80, d 20, K 2 (D 21, state size N = K (D + D^2) = 924): same, D >= 20
#
# gmflow side.  If `gmflow flow --help` offers --stop-grad (the stationary-point event), gmflow
# runs with `--stop-grad TOL --t-end T_MAX` and stops itself.  Otherwise the stop is emulated:
# an untimed calibration run to T_CAL (1.25 x SciPy's stopping time, or T_MAX) with 401 output
# times gives the first output time t* with ||F|| <= TOL (computed by stationary_scipy.py
# gradnorm, the same F as SciPy's event), and the timed run integrates to the next output time
# (`--t-end t --n-out 2`), so its time overstates gmflow's (it stops up to T_CAL/200 late).
# gmflow runs with its default method (no --method: `auto` once it exists) and with bdf.
# Times are process CPU seconds (user + sys, getrusage) of the whole gmflow process, and of solve_ivp
# alone on the SciPy side (the machine is shared; CPU time is not inflated by other load).
# Agreement: max |v_gmflow - v_scipy| over the final states (and relative to max |v|).
#
# usage: bench/run_stationary_bench.sh [--toys builtin,d6,d20] [--rounds R] [--tol TOL]
#            [--t-max T] [--methods BDF,Radau,LSODA] [--cpu N] [--timeout S] [--build DIR]
#            [--out CSV] [--keep]
#   defaults: all three toys, 2 rounds, tol 1e-8, t-max 2e4 (builtin) or 1e5 (d6, d20), cpu 1,
#   timeout 600 s per run,
#   build = build (must hold gmflow and bench/stationary_toy), rtol 1e-8 / atol 1e-10 on both
#   sides; CSV default ${TMPDIR:-/tmp}/gmflow_stationary_<date>.csv (bench/results/ only when
#   asked with --out).
set -euo pipefail

cd "$(dirname "$0")/.."
TOYS=builtin,d6,d20 ROUNDS=2 TOL=1e-8 TMAX_OPT="" METHODS=BDF,Radau,LSODA CPU=1 TIMEOUT=600
BUILD=build OUT="" KEEP=0 RTOL=1e-8 ATOL=1e-10
PY=/usr/bin/python3
while [ $# -gt 0 ]; do
    case "$1" in
    --toys) TOYS="$2"; shift ;;
    --rounds) ROUNDS="$2"; shift ;;
    --tol) TOL="$2"; shift ;;
    --t-max) TMAX_OPT="$2"; shift ;;
    --methods) METHODS="$2"; shift ;;
    --cpu) CPU="$2"; shift ;;
    --timeout) TIMEOUT="$2"; shift ;;
    --build) BUILD="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --keep) KEEP=1; shift 0 ;;
    -h | --help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_stationary_bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
G="$BUILD/gmflow" MK="$BUILD/bench/stationary_toy" SP=bench/stationary_scipy.py
for f in "$G" "$MK"; do
    [ -x "$f" ] || { echo "run_stationary_bench.sh: $f: not found (cmake --build $BUILD)" >&2; exit 1; }
done
OUT="${OUT:-${TMPDIR:-/tmp}/gmflow_stationary_$(date +%Y%m%d-%H%M%S).csv}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gmflow_stationary.XXXXXX")"
[ "$KEEP" = 1 ] && echo "# work directory: $WORK" || trap 'rm -rf "$WORK"' EXIT
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
PIN=(taskset -c "$CPU")
STOPGRAD=0
"$G" flow --help | grep -q -- --stop-grad && STOPGRAD=1
CPUNAME="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

echo "# time to ||F|| <= $TOL: gmflow $(git rev-parse --short HEAD) (stop: $([ $STOPGRAD = 1 ] && echo --stop-grad || echo emulated)) vs SciPy $($PY -c 'import scipy;print(scipy.__version__)') $METHODS; rtol $RTOL atol $ATOL"
echo "# cpu: $CPUNAME, $(getconf _NPROCESSORS_ONLN) cores, pinned to $CPU; load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "toy,n,d,K,N,round,side,method,reached,t_stop,gradnorm,cpu_s,nrhs,max_abs_diff_vs_scipy,rel_diff_vs_scipy,stop,cpu" >"$OUT"

# gmflow: run with method $1 ("default" = no --method) to time $2; sets GCPU GNRHS; dir $3
run_gmflow() {
    local m=()
    [ "$1" = default ] || m=(--method "$1")
    local stop=(--t-end "$2" --n-out 2)
    [ "$STOPGRAD" = 1 ] && stop=(--t-end "$TMAX" --stop-grad "$TOL" --n-out 2)
    # CPU seconds (user + sys) of the gmflow process, from getrusage (microsecond resolution)
    if ! GCPU=$(timeout "$TIMEOUT" "${PIN[@]}" $PY -c 'import resource, subprocess, sys
with open(sys.argv[1], "w") as log:
    rc = subprocess.run(sys.argv[2:], stdout=log, stderr=log).returncode
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{u.ru_utime + u.ru_stime:.4f}")
sys.exit(rc)' "$3.log" "$G" flow --data "$D/data.csv" --init "$D/init.json" \
        "${m[@]}" "${stop[@]}" --max-steps 10000000 -q --out "$3"); then
        GCPU=nan GNRHS=0
        return 1
    fi
    GNRHS=$(sed -n 's/.*"nfevals": *\([0-9]*\).*/\1/p' "$3/run.json" | head -1)
}

IFS=, read -ra TOYL <<<"$TOYS"
IFS=, read -ra METHL <<<"$METHODS"
for toy in "${TOYL[@]}"; do
    case "$toy" in
    builtin) opts=() TM=2e4 ;;
    d6) opts=(--n 20 --d 6 --K 2) TM=1e5 ;;
    d20) opts=(--n 80 --d 20 --K 2) TM=1e5 ;;
    *) echo "run_stationary_bench.sh: unknown toy $toy (builtin, d6, d20)" >&2; exit 2 ;;
    esac
    TMAX="${TMAX_OPT:-$TM}"
    D="$WORK/$toy"
    "$MK" --out "$D" "${opts[@]}"
    read -r n d K < <($PY -c "import json,sys;s=json.load(open(sys.argv[1]));print(sum(1 for _ in open(sys.argv[2]))-1, s['d'], s['K'])" "$D/init.json" "$D/data.csv")
    N=$((K * ((d + 1) + (d + 1) * (d + 1))))
    TSTOP="" BEST=""
    for r in $(seq "$ROUNDS"); do
        # SciPy, every method (its stopping time calibrates the emulated gmflow stop)
        for m in "${METHL[@]}"; do
            res=$(timeout "$TIMEOUT" "${PIN[@]}" env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
                $PY "$SP" solve "$D" --method "$m" --tol "$TOL" --t-max "$TMAX" --rtol "$RTOL" \
                --atol "$ATOL" | grep '^RESULT' || echo "RESULT method=$m reached=timeout")
            reached=$(field "$res" reached)
            if [ "$reached" = True ] && [ -z "$TSTOP" ]; then
                TSTOP=$(field "$res" t) BEST="$D/scipy_${m}_state.json" # the reference state
            fi
            echo "$toy,$n,$d,$K,$N,$r,scipy,$m,$reached,$(field "$res" t),$(field "$res" gradnorm),$(field "$res" cpu_s),$(field "$res" nfev_total),,,event,\"$CPUNAME\"" >>"$OUT"
            echo "  $toy round $r scipy $m: reached=$reached t=$(field "$res" t) cpu=$(field "$res" cpu_s) s"
        done
        for gm in default bdf; do
            O="$WORK/$toy.$gm"
            TG="$TMAX" how=--stop-grad
            if [ "$STOPGRAD" = 0 ]; then # emulated: calibrate once per toy and method
                how=emulated
                if [ ! -f "$O.tstar" ]; then
                    TCAL=$($PY -c "import sys;print(min(1.25*float(sys.argv[1]), float(sys.argv[2])) if sys.argv[1] else sys.argv[2])" "$TSTOP" "$TMAX")
                    m=(); [ "$gm" = default ] || m=(--method "$gm")
                    if timeout "$TIMEOUT" "$G" flow --data "$D/data.csv" --init "$D/init.json" "${m[@]}" \
                        --t-end "$TCAL" --n-out 401 --max-steps 10000000 -q --out "$O.cal" >"$O.cal.log" 2>&1; then
                        gl=$($PY "$SP" gradnorm "$D" "$O.cal" --tol "$TOL")
                        tf=$(field "$gl" t_next) # the grid time after the first hit
                        [ "$tf" = nan ] && tf=$TCAL
                        echo "$tf" >"$O.tstar"
                        echo "  $toy $gm calibration to $TCAL: $gl"
                    else
                        echo "nan" >"$O.tstar"
                        echo "  $toy $gm calibration to $TCAL failed: $(tail -1 "$O.cal.log")"
                    fi
                fi
                TG=$(cat "$O.tstar")
            fi
            if [ "$TG" != nan ] && run_gmflow "$gm" "$TG" "$O"; then
                gl=$($PY "$SP" gradstate "$D" "$O/state.json") # the final (or event) state
                gn=$(field "$gl" gradnorm)
                reached=$($PY -c "import sys;print(float(sys.argv[1]) <= float(sys.argv[2]))" "$gn" "$TOL")
                tl=$(field "$gl" t)
                cmp=""
                [ -n "$BEST" ] && cmp=$($PY "$SP" compare "$O/state.json" "$BEST")
                echo "$toy,$n,$d,$K,$N,$r,gmflow,$gm,$reached,$tl,$gn,$GCPU,$GNRHS,$(field "$cmp" max_abs_diff),$(field "$cmp" rel_diff),$how,\"$CPUNAME\"" >>"$OUT"
                echo "  $toy round $r gmflow $gm: reached=$reached t=$tl |F|=$gn cpu=$GCPU s $cmp"
            else
                echo "$toy,$n,$d,$K,$N,$r,gmflow,$gm,failed,,,,,,,$how,\"$CPUNAME\"" >>"$OUT"
                echo "  $toy round $r gmflow $gm: failed ($(tail -1 "$O.log" 2>/dev/null || echo 'no stopping time'))"
            fi
        done
    done
done
echo "# load at end: $(cut -d' ' -f1-3 /proc/loadavg); CSV: $OUT"
$PY - "$OUT" <<'PY'
import csv, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1])))
def med(R):
    v = [float(r["cpu_s"]) for r in R if r["reached"] == "True"]
    return st.median(v) if len(v) == len(R) and v else float("nan")
print(f"{'toy':>8} {'N':>5} {'scipy best':>18} {'cpu s':>8} {'gmflow default':>15} {'bdf':>8} {'best/default':>13} {'best/bdf':>9} {'max diff':>9}")
for toy in dict.fromkeys(r["toy"] for r in rows):
    R = [r for r in rows if r["toy"] == toy]
    sc = {m: med([r for r in R if r["side"] == "scipy" and r["method"] == m])
          for m in dict.fromkeys(r["method"] for r in R if r["side"] == "scipy")}
    ok = {m: v for m, v in sc.items() if v == v}
    bm = min(ok, key=ok.get) if ok else "none"
    best = ok.get(bm, float("nan"))
    gd = med([r for r in R if r["side"] == "gmflow" and r["method"] == "default"])
    gb = med([r for r in R if r["side"] == "gmflow" and r["method"] == "bdf"])
    diffs = [float(r["max_abs_diff_vs_scipy"]) for r in R if r["side"] == "gmflow" and r["max_abs_diff_vs_scipy"]]
    print(f"{toy:>8} {R[0]['N']:>5} {bm:>18} {best:8.3f} {gd:15.3f} {gb:8.3f} {best/gd:13.2f} {best/gb:9.2f} {max(diffs) if diffs else float('nan'):9.1e}")
print("(medians of process CPU seconds over the rounds; nan = a run did not reach the tolerance)")
PY
