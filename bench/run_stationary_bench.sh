#!/usr/bin/env bash
# run_stationary_bench.sh -- time to reach a stationary point (||F(v)||_2 <= TOL, F the Theorem 4
# BW vector field (mu', Sigma')) on long-horizon toys: gmflow against SciPy's stiff solvers
# (solve_ivp BDF, Radau, LSODA with bench/flow_numpy.py's right-hand side), like for like.
#
# Toys (bench/stationary_toy writes DIR/data.csv + DIR/init.json, read by both sides, so they
# integrate exactly the same problem):
#   builtin  gmflow flow's built-in toy: n 200, d 3, K 3 (D 4, relu teacher of width 4); it
#            collapses and has no stationary point within reach (docs/FLOWS.md)
#   d6       n 20, d 6, K 2 (D 7): overparameterized, converges to an interpolating point
#   d20      n 80, d 20, K 2 (D 21, state size N = K (D + D^2) = 924): same, D >= 20
#   ts1      the teacher-student toy of examples/long_horizon.sh (width-2 relu teacher, no noise,
#            n 200, d 3): K = 1 mixture, converges (t ~ 4.3e4) to the collapsed-covariance limit
#   ts2p     the same teacher, K = 2 particles (Sigma_k = 0): a plateau at a degenerate saddle,
#            then the teacher (t ~ 150); nonsmooth right-hand side (kinks crossing samples)
#
# Four timings per round, interleaved A B A B (SciPy, gmflow, SciPy, gmflow, ... per round),
# every process pinned to the same core (taskset -c CPU), one BLAS thread:
#   in-process solve   SciPy: solve_ivp alone (stationary_scipy.py: process_time / perf_counter
#                      around the call); gmflow: the library's solve alone (bench/stationary_solve:
#                      CLOCK_PROCESS_CPUTIME_ID / CLOCK_MONOTONIC around the events' set-up and
#                      gmf_traj_integrate, the same call `gmflow flow --stop-grad` makes)
#   whole process      CPU (user + sys, getrusage of the child) and wall of the whole command:
#                      SciPy: `python3 stationary_scipy.py solve` (interpreter start-up, imports,
#                      reading the toy, the solve, writing the state); gmflow: `gmflow flow --data
#                      --init --stop-grad TOL --t-end T_MAX --n-out 2 -q` (the CLI a user runs)
# Ratios per pair (SciPy's best method in that round over gmflow's default, auto), then their
# median; CPU seconds are the headline (robust to other load on a shared machine), wall beside.
# Agreement: max |v_gmflow - v_scipy| over the final states (and relative to max |v|), and the
# CLI's state against the in-process one (the same computation: 0 expected).
#
# usage: bench/run_stationary_bench.sh [--toys d6,d20,ts1,ts2p] [--rounds R] [--tol TOL]
#            [--t-max T] [--methods BDF,Radau,LSODA] [--gm-methods auto,bdf] [--cpu N]
#            [--timeout S] [--build DIR] [--out CSV] [--keep]
#   defaults: toys d6,d20,ts1,ts2p, 3 rounds, tol 1e-8, t-max 2e4 (builtin) or 1e5, SciPy BDF
#   (the fastest SciPy method in every earlier run; add Radau,LSODA to check), gmflow auto, cpu 1,
#   timeout 600 s per run, build = build (must hold gmflow, bench/stationary_toy and
#   bench/stationary_solve), rtol 1e-8 / atol 1e-10 on both sides; CSV default
#   ${TMPDIR:-/tmp}/gmflow_stationary_<date>.csv (bench/results/ only when asked with --out).
set -euo pipefail

# me, usage, usage_error, positional_args: the scripts' convention
# shellcheck source-path=SCRIPTDIR source=../tools/scriptargs.sh
. "$(dirname "$0")/../tools/scriptargs.sh"
cd "$(dirname "$0")/.."
TOYS=d6,d20,ts1,ts2p ROUNDS=3 TOL=1e-8 TMAX_OPT="" METHODS=BDF GMM=auto CPU=1 TIMEOUT=600
BUILD=build OUT="" KEEP=0 RTOL=1e-8 ATOL=1e-10
PY=/usr/bin/python3
while [ $# -gt 0 ]; do
    case "$1" in
    --keep) KEEP=1; shift; continue ;;
    -h | --help) usage; exit 0 ;;
    --toys | --rounds | --tol | --t-max | --methods | --gm-methods | --cpu | --timeout | --build | --out)
        { [ $# -ge 2 ] && [ -n "$2" ]; } || usage_error "option $1 needs a value" ;;
    *) usage_error "unknown option '$1'" ;;
    esac
    case "$1" in
    --toys) TOYS="$2" ;;
    --rounds) [[ $2 =~ ^[1-9][0-9]*$ ]] || usage_error "--rounds $2: want a positive integer"; ROUNDS="$2" ;;
    --tol) TOL="$2" ;;
    --t-max) TMAX_OPT="$2" ;;
    --methods) METHODS="$2" ;;
    --gm-methods) GMM="$2" ;;
    --cpu) [[ $2 =~ ^[0-9]+$ ]] || usage_error "--cpu $2: want a core number"; CPU="$2" ;;
    --timeout) [[ $2 =~ ^[1-9][0-9]*$ ]] || usage_error "--timeout $2: want a positive number of seconds"; TIMEOUT="$2" ;;
    --build) BUILD="$2" ;;
    --out) OUT="$2" ;;
    esac
    shift 2
done
G="$BUILD/gmflow" MK="$BUILD/bench/stationary_toy" SOLVE="$BUILD/bench/stationary_solve"
SP=bench/stationary_scipy.py
for f in "$G" "$MK" "$SOLVE"; do
    [ -x "$f" ] || { echo "run_stationary_bench.sh: $f: not found (cmake --build $BUILD)" >&2; exit 1; }
done
OUT="${OUT:-${TMPDIR:-/tmp}/gmflow_stationary_$(date +%Y%m%d-%H%M%S).csv}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gmflow_stationary.XXXXXX")"
[ "$KEEP" = 1 ] && echo "# work directory: $WORK" || trap 'rm -rf "$WORK"' EXIT
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
CPUNAME="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

# timed LOG CMD...: run CMD pinned, stdout+stderr to LOG; prints "cpu wall" of the child process
# (getrusage RUSAGE_CHILDREN: user + sys; wall around the fork); exit status of CMD
timed() {
    local log=$1
    shift
    timeout "$TIMEOUT" taskset -c "$CPU" $PY -c 'import resource, subprocess, sys, time
w = time.perf_counter()
with open(sys.argv[1], "w") as log:
    rc = subprocess.run(sys.argv[2:], stdout=log, stderr=log).returncode
w = time.perf_counter() - w
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{u.ru_utime + u.ru_stime:.4f} {w:.4f}")
sys.exit(rc)' "$log" "$@"
}

echo "# time to ||F|| <= $TOL: gmflow $(git rev-parse --short HEAD) vs SciPy $($PY -c 'import scipy;print(scipy.__version__)') $METHODS; rtol $RTOL atol $ATOL"
echo "# cpu: $CPUNAME, $(getconf _NPROCESSORS_ONLN) cores, every run pinned to $CPU; load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "toy,n,d,K,N,round,side,method,timing,reached,t_stop,gradnorm,cpu_s,wall_s,nrhs,max_abs_diff_vs_scipy,rel_diff_vs_scipy,cpu" >"$OUT"
row() { echo "$toy,$n,$d,$K,$N,$r,$1,\"$CPUNAME\"" >>"$OUT"; }

IFS=, read -ra TOYL <<<"$TOYS"
IFS=, read -ra METHL <<<"$METHODS"
IFS=, read -ra GML <<<"$GMM"
for toy in "${TOYL[@]}"; do
    case "$toy" in
    builtin) opts=() TM=2e4 ;;
    d6) opts=(--n 20 --d 6 --K 2) TM=1e5 ;;
    d20) opts=(--n 80 --d 20 --K 2) TM=1e5 ;;
    ts1) opts=(--width 2 --noise 0 --K 1) TM=1e5 ;;
    ts2p) opts=(--width 2 --noise 0 --K 2 --particles 1) TM=1e5 ;;
    *) echo "run_stationary_bench.sh: unknown toy $toy (builtin, d6, d20, ts1, ts2p)" >&2; exit 2 ;;
    esac
    TMAX="${TMAX_OPT:-$TM}"
    D="$WORK/$toy"
    "$MK" --out "$D" "${opts[@]}"
    read -r n d K < <($PY -c "import json,sys;s=json.load(open(sys.argv[1]));print(sum(1 for _ in open(sys.argv[2]))-1, s['d'], s['K'])" "$D/init.json" "$D/data.csv")
    N=$((K * ((d + 1) + (d + 1) * (d + 1))))
    for r in $(seq "$ROUNDS"); do
        BEST="" # SciPy's reference state this round: its first method that reached TOL
        for m in "${METHL[@]}"; do # A: SciPy (whole process timed around it; solve_ivp inside)
            if tw=$(timed "$D/scipy_$m.log" env -u OPENBLAS_CORETYPE $PY "$SP" solve "$D" --method "$m" \
                --tol "$TOL" --t-max "$TMAX" --rtol "$RTOL" --atol "$ATOL"); then
                res=$(grep '^RESULT' "$D/scipy_$m.log")
            else
                res="RESULT method=$m reached=failed" tw="nan nan"
            fi
            reached=$(field "$res" reached)
            [ "$reached" = True ] && [ -z "$BEST" ] && BEST="$D/scipy_${m}_state.json"
            row "scipy,$m,in-process,$reached,$(field "$res" t),$(field "$res" gradnorm),$(field "$res" cpu_s),$(field "$res" wall_s),$(field "$res" nfev_total),,"
            row "scipy,$m,whole-process,$reached,$(field "$res" t),$(field "$res" gradnorm),${tw% *},${tw#* },$(field "$res" nfev_total),,"
            echo "  $toy round $r scipy $m: reached=$reached t=$(field "$res" t) solve cpu=$(field "$res" cpu_s) s, whole process cpu/wall=$tw s"
        done
        for gm in "${GML[@]}"; do # B: gmflow in process (the library), then the CLI
            if tw=$(timed "$D/gm_$gm.log" "$SOLVE" "$D" --method "$gm" --tol "$TOL" --t-max "$TMAX" \
                --rtol "$RTOL" --atol "$ATOL"); then
                res=$(grep '^RESULT' "$D/gm_$gm.log")
                cmp=""
                [ -n "$BEST" ] && cmp=$($PY "$SP" compare "$D/gmflow_${gm}_state.json" "$BEST")
            else
                res="RESULT method=$gm reached=failed" cmp="" tw="nan nan"
                echo "  $toy round $r gmflow $gm failed: $(tail -1 "$D/gm_$gm.log")"
            fi
            reached=$(field "$res" reached)
            row "gmflow,$gm,in-process,$reached,$(field "$res" t),$(field "$res" gradnorm),$(field "$res" cpu_s),$(field "$res" wall_s),$(field "$res" nrhs),$(field "$cmp" max_abs_diff),$(field "$cmp" rel_diff)"
            O="$WORK/$toy.cli.$gm"
            if tw=$(timed "$O.log" "$G" flow --data "$D/data.csv" --init "$D/init.json" --method "$gm" \
                --stop-grad "$TOL" --t-end "$TMAX" --n-out 2 --rtol "$RTOL" --atol "$ATOL" \
                --max-steps 10000000 -q --out "$O"); then
                same=$($PY "$SP" compare "$O/state.json" "$D/gmflow_${gm}_state.json" 2>/dev/null || true)
                gl=$($PY "$SP" gradstate "$D" "$O/state.json")
                row "gmflow,$gm,whole-process,$reached,$(field "$gl" t),$(field "$gl" gradnorm),${tw% *},${tw#* },,$(field "$same" max_abs_diff),"
                echo "  $toy round $r gmflow $gm: reached=$reached t=$(field "$res" t) solve cpu=$(field "$res" cpu_s) s, CLI whole process cpu/wall=$tw s; vs scipy: $cmp; CLI vs in-process: $same"
            else
                row "gmflow,$gm,whole-process,failed,,,nan,nan,,,"
                echo "  $toy round $r gmflow CLI $gm failed: $(tail -1 "$O.log")"
            fi
        done
    done
done
echo "# load at end: $(cut -d' ' -f1-3 /proc/loadavg); CSV: $OUT"
$PY - "$OUT" <<'PY'
import csv, math, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1])))
f = lambda x: float(x) if x not in ("", "nan") else math.nan
print(f"{'toy':>6} {'N':>4} {'timing':>13} {'scipy best s':>13} {'gmflow auto s':>14} "
      f"{'ratio (median of pairs)':>24} {'pair range':>14} {'wall ratio':>11} {'max diff':>9}")
for toy in dict.fromkeys(r["toy"] for r in rows):
    R = [r for r in rows if r["toy"] == toy]
    for timing in ("in-process", "whole-process"):
        ratios, wr, sc, gm = [], [], [], []
        for rnd in sorted({r["round"] for r in R}):
            P = [r for r in R if r["round"] == rnd and r["timing"] == timing]
            s = [r for r in P if r["side"] == "scipy" and r["reached"] == "True"]
            g = [r for r in P if r["side"] == "gmflow" and r["method"] == "auto" and r["reached"] == "True"]
            if not s or not g:
                continue
            b = min(s, key=lambda r: f(r["cpu_s"]))
            sc.append(f(b["cpu_s"])), gm.append(f(g[0]["cpu_s"]))
            ratios.append(sc[-1] / gm[-1])
            wr.append(f(b["wall_s"]) / f(g[0]["wall_s"]))
        diffs = [f(r["max_abs_diff_vs_scipy"]) for r in R if r["side"] == "gmflow" and r["timing"] == "in-process" and r["max_abs_diff_vs_scipy"]]
        if not ratios:
            print(f"{toy:>6} {R[0]['N']:>4} {timing:>13}  no pair where both reached the tolerance")
            continue
        print(f"{toy:>6} {R[0]['N']:>4} {timing:>13} {st.median(sc):13.4f} {st.median(gm):14.4f} "
              f"{st.median(ratios):23.1f}x {min(ratios):6.1f}-{max(ratios):<6.1f} {st.median(wr):10.1f}x "
              f"{max(diffs) if diffs else math.nan:9.1e}")
print("(CPU seconds, medians over rounds; ratio = SciPy's best method / gmflow auto, per round, then"
      " the median; wall ratio the same for wall seconds)")
PY
