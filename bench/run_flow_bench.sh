#!/usr/bin/env bash
# run_flow_bench.sh -- gmflow (C) against NumPy/SciPy on the same Theorem 4 problems, side by side.
#
# For each size (n, d, K) the C bench (bench_rhs flow) writes the problem as .npy and integrates
# the BW flow from 0 to T; bench/flow_numpy.py integrates the same problem with solve_ivp at the
# same rtol/atol.  Method pairs (like with like):
#     GSL rk8pd   <-> DOP853      (8th-order explicit Runge-Kutta pairs)
#     GSL rkf45   <-> RK45        (4(5) explicit Runge-Kutta pairs)
#     CVODE Adams <-> LSODA       (variable-order Adams, functional iteration)
# plus "rk8pd:fixed" (GSL rk8pd with the old fixed initial step 1e-6 max(1, T) instead of the
# library's Hairer-Wanner estimate, see docs/PERFORMANCE.md) against DOP853.  Reported per pair: the solve times (best of up to 3 runs,
# stopping after 2 s; process CPU time with one BLAS thread, since the machine is shared, and the
# wall clock too) and their ratio, RHS evaluations and steps, time per RHS evaluation, and the
# agreement of the final states (normwise max relative difference; the CSV also has the max of
# |a - b| / (atol + rtol |b|)); with a reference (C rk8pd at rtol 1e-12, atol 1e-14) each side's
# own error is reported too.
#
# usage: bench/run_flow_bench.sh [--quick] [--threads N] [--T T] [--rtol R] [--atol A]
#                                [--out CSV] [--build DIR] [--no-ref] [--keep]
#   --quick     small sizes (200,3,4  1000,20,3  2000,10,5), for a run of about half a minute
#               (the default sizes: 200,3,4 -- toy.h's default problem -- then the three of
#               docs/PERFORMANCE.md, 1000,10,5  2000,100,5  10000,50,10; about 5 minutes)
#   --threads   OpenBLAS threads for both sides (default 1)
#   --out       CSV path (default bench/results/flow_bench.csv, or flow_bench_quick.csv)
#   --build     build directory holding bench/bench_rhs (default build-bench; built if missing)
#   --no-ref    skip the tight-tolerance reference run
#   --keep      keep the .npy work directory (printed)
set -euo pipefail

cd "$(dirname "$0")/.."
QUICK=0 THREADS=1 T=1 RTOL=1e-8 ATOL=1e-10 OUT="" BUILD=build-bench REF=1 KEEP=0
PY=/usr/bin/python3
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --threads) THREADS="$2"; shift ;;
    --T) T="$2"; shift ;;
    --rtol) RTOL="$2"; shift ;;
    --atol) ATOL="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --build) BUILD="$2"; shift ;;
    --no-ref) REF=0 ;;
    --keep) KEEP=1 ;;
    -h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_flow_bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

BIN="$BUILD/bench/bench_rhs"
if [ ! -x "$BIN" ]; then
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BUILD" -j2 --target bench_bench_rhs >/dev/null
fi
if [ "$QUICK" = 1 ]; then
    SIZES=("200 3 4" "1000 20 3" "2000 10 5")
    OUT="${OUT:-bench/results/flow_bench_quick.csv}"
else
    SIZES=("200 3 4" "1000 10 5" "2000 100 5" "10000 50 10")
    OUT="${OUT:-bench/results/flow_bench.csv}"
fi
PAIRS=("rk8pd DOP853" "rkf45 RK45" "adams LSODA" "rk8pd:fixed DOP853")
mkdir -p "$(dirname "$OUT")"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gmflow_flow_bench.XXXXXX")"
[ "$KEEP" = 1 ] || trap 'rm -rf "$WORK"' EXIT
export OPENBLAS_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS"

# value of key=... in a RESULT/COMPARE line
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

echo "# gmflow vs NumPy/SciPy: Theorem 4 BW flow, T=$T rtol=$RTOL atol=$ATOL," \
    "OpenBLAS threads=$THREADS ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
    "$(getconf _NPROCESSORS_ONLN) cores)"
echo "# load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# python $($PY -c 'import sys,numpy,scipy;print(sys.version.split()[0],"numpy",numpy.__version__,"scipy",scipy.__version__)')"
echo "n,d,K,T,rtol,atol,threads,c_method,py_method,c_wall_s,py_wall_s,c_cpu_s,py_cpu_s,speedup,speedup_wall,c_nfev,py_nfev,py_njev,c_steps,py_steps,c_rhs_s,py_rhs_s,rhs_ratio,rel_diff,weighted_diff,c_rel_err_ref,py_rel_err_ref,c_lossT,py_lossT" >"$OUT"

# With one BLAS thread the solves are timed by process CPU time (not inflated by other processes
# on this shared machine); with more, by the wall clock.  Both are in the CSV.
if [ "$THREADS" = 1 ]; then CLK=cpu; else CLK=wall; fi
printf '\n%-12s %-10s %-6s %8s %8s %7s %6s %11s %10s %7s %9s %9s %9s\n' "n,d,K" "C method" "SciPy" \
    "C $CLK" "Py $CLK" "speedup" "(wall)" "nfev C/Py" "steps C/Py" "RHS x" "rel diff" "C err" "Py err"
for size in "${SIZES[@]}"; do
    read -r n d K <<<"$size"
    dir="$WORK/n${n}_d${d}_K${K}"
    common=(--dir "$dir" --n "$n" --d "$d" --K "$K" --T "$T" --threads "$THREADS")
    declare -A CRES=() PRES=()
    for pair in "${PAIRS[@]}"; do
        read -r cm pm <<<"$pair"
        if [ -z "${CRES[$cm]:-}" ]; then
            m="${cm%%:*}" extra=()
            [ "$cm" != "$m" ] && extra=(--h0 fixed --tag "c_${m}_fixed")
            CRES[$cm]="$("$BIN" flow "${common[@]}" --method "$m" --rtol "$RTOL" --atol "$ATOL" \
                --repeat 3 "${extra[@]}" | grep '^RESULT' || true)"
        fi
        if [ -z "${PRES[$pm]:-}" ]; then
            PRES[$pm]="$($PY bench/flow_numpy.py solve "$dir" --T "$T" --method "$pm" \
                --rtol "$RTOL" --atol "$ATOL" --repeat 3 | grep '^RESULT' || true)"
        fi
    done
    if [ "$REF" = 1 ]; then
        "$BIN" flow "${common[@]}" --method rk8pd --rtol 1e-12 --atol 1e-14 --tag ref >/dev/null
    fi
    # all comparisons of this size in one Python call
    specs=()
    for pair in "${PAIRS[@]}"; do
        read -r cm pm <<<"$pair"
        m="${cm%%:*}" ctag="c_${cm%%:*}"
        [ "$cm" != "$m" ] && ctag="c_${m}_fixed"
        [ -f "$dir/mu_$ctag.npy" ] && [ -f "$dir/mu_py_$pm.npy" ] && specs+=("$ctag:py_$pm")
        [ "$REF" = 1 ] && [ -f "$dir/mu_$ctag.npy" ] && specs+=("$ctag:ref")
        [ "$REF" = 1 ] && [ -f "$dir/mu_py_$pm.npy" ] && specs+=("py_$pm:ref")
    done
    CMP=""
    [ "${#specs[@]}" -gt 0 ] &&
        CMP="$($PY bench/flow_numpy.py compare "$dir" "${specs[@]}" --rtol "$RTOL" --atol "$ATOL")"
    cmpline() { grep -m1 "^COMPARE a=$1 b=$2 " <<<"$CMP" || true; }
    for pair in "${PAIRS[@]}"; do
        read -r cm pm <<<"$pair"
        m="${cm%%:*}" ctag="c_${cm%%:*}"
        [ "$cm" != "$m" ] && ctag="c_${m}_fixed"
        c="${CRES[$cm]}" p="${PRES[$pm]}"
        if [ -z "$c" ] || [ -z "$p" ]; then
            printf '%-16s %-10s %-7s  FAILED (%s)\n' "$n,$d,$K" "$cm" "$pm" \
                "$([ -z "$c" ] && echo gmflow || echo SciPy)"
            echo "$n,$d,$K,$T,$RTOL,$ATOL,$THREADS,$cm,$pm,failed" >>"$OUT"
            continue
        fi
        cmp="$(cmpline "$ctag" "py_$pm")"
        cerr=nan perr=nan
        if [ "$REF" = 1 ]; then
            cerr="$(field "$(cmpline "$ctag" ref)" rel)"
            perr="$(field "$(cmpline "py_$pm" ref)" rel)"
        fi
        cw="$(field "$c" wall_s)" pw="$(field "$p" wall_s)"
        cc="$(field "$c" cpu_s)" pc="$(field "$p" cpu_s)"
        cr="$(field "$c" rhs_s)" pr="$(field "$p" rhs_s)"
        ct="$cw" pt="$pw"
        [ "$CLK" = cpu ] && ct="$cc" pt="$pc"
        sp="$(awk -v a="$pt" -v b="$ct" 'BEGIN{printf "%.2f", a/b}')"
        spw="$(awk -v a="$pw" -v b="$cw" 'BEGIN{printf "%.2f", a/b}')"
        rr="$(awk -v a="$pr" -v b="$cr" 'BEGIN{printf "%.2f", a/b}')"
        rel="$(field "$cmp" rel)" wd="$(field "$cmp" weighted)"
        printf '%-12s %-10s %-6s %8.3f %8.3f %6sx %5sx %5s/%-5s %4s/%-5s %6sx %9s %9s %9s\n' \
            "$n,$d,$K" "$cm" "$pm" "$ct" "$pt" "$sp" "$spw" "$(field "$c" nfev)" \
            "$(field "$p" nfev)" "$(field "$c" nsteps)" "$(field "$p" nsteps)" "$rr" "$rel" \
            "$cerr" "$perr"
        echo "$n,$d,$K,$T,$RTOL,$ATOL,$THREADS,$cm,$pm,$cw,$pw,$cc,$pc,$sp,$spw,$(field "$c" nfev),$(field "$p" nfev),$(field "$p" njev),$(field "$c" nsteps),$(field "$p" nsteps),$cr,$pr,$rr,$rel,$wd,$cerr,$perr,$(field "$c" lossT),$(field "$p" lossT)" >>"$OUT"
    done
    unset CRES PRES
done
echo
echo "speedup = SciPy time / gmflow time for the whole solve ($CLK; (wall) = by the wall clock);"
echo "RHS x = SciPy / gmflow time per RHS evaluation; rel diff = max|C - SciPy| / max|SciPy| over"
echo "the final state; C err, Py err = the same against the reference (C rk8pd, rtol 1e-12)."
echo "NumPy's BLAS: $(field "$p" blas | tr ',' '\n' | grep -m1 openblas || echo '?');" \
    "load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrote $OUT"
[ "$KEEP" = 1 ] && echo "work directory: $WORK"
exit 0
