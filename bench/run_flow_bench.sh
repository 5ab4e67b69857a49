#!/usr/bin/env bash
# run_flow_bench.sh -- gmflow (C) against NumPy/SciPy on the same Theorem 4 problems, interleaved.
#
# For each size (n, d, K) the C bench (bench_rhs flow) writes the problem as .npy and integrates
# the BW flow from 0 to T; bench/flow_numpy.py integrates the same problem with solve_ivp at the
# same rtol/atol.  Method pairs (like with like):
#     GSL rk8pd       <-> DOP853   (8th-order explicit Runge-Kutta pairs; GSL's max-norm control)
#     GSL rk8pd:rms   <-> DOP853   (the same with the RMS error norm, gmflow flow --gsl-norm rms,
#                                   SciPy's norm)
#     GSL rkf45(:rms) <-> RK45     (4(5) explicit Runge-Kutta pairs)
#     CVODE Adams     <-> LSODA    (variable-order Adams, functional iteration)
#     rk8pd:fixed     <-> DOP853   (GSL rk8pd with the old fixed initial step 1e-6 max(1, T))
# Every run is pinned to one core (taskset -c CPU) and the sides alternate within each round
# (C1 P1 C2 P2 ...; a SciPy method shared by several pairs runs once a round); --rounds rounds.
# Each run is the best of up to 3 solves in one process (stopping after 2 s).  Reported per pair:
# the median solve time of each side over the rounds (process CPU time with one BLAS thread --
# not inflated by other processes on a shared machine -- and the wall clock), the median and
# range of the per-round ratios SciPy / gmflow, RHS evaluations and steps, time per RHS
# evaluation, and the agreement of the final states (normwise max relative difference; the CSV
# also has the max of |a - b| / (atol + rtol |b|)); with a reference (C rk8pd at rtol 1e-12,
# atol 1e-14) each side's own error.  The CSV starts with "# " lines naming the CPU, its SIMD
# flags, clock, the load average and the git commit; every row has the mean 1-minute load.
#
# usage: bench/run_flow_bench.sh [--quick] [--size n,d,K]... [--rounds R] [--cpu N]
#            [--threads N] [--T T] [--rtol R] [--atol A] [--pairs "rk8pd:DOP853 ..."]
#            [--build DIR] [--out CSV | --in-repo] [--no-ref] [--keep]
#   --quick     sizes 200,3,4  1000,20,3  2000,10,5 and 2 rounds (about a minute)
#               (default sizes: 200,3,4 -- toy.h's default problem -- then 1000,10,5
#               2000,100,5  10000,50,10; 3 rounds; 10-20 minutes)
#   --size      a size of your own (repeatable; replaces the default list)
#   --rounds    interleaved rounds (default 3; --quick 2)
#   --cpu       the core every run is pinned to (default: the last online core)
#   --threads   OpenBLAS threads for both sides (default 1; > 1 pins to cores 0..N-1 and times
#               by the wall clock)
#   --pairs     space-separated C:SciPy pairs, C = rk8pd|rkf45|adams|bdf[:rms|:fixed]
#               (default "rk8pd:DOP853 rk8pd:rms:DOP853 rkf45:RK45 rkf45:rms:RK45 adams:LSODA
#               rk8pd:fixed:DOP853")
#   --build     a build directory holding bench/bench_rhs (used as it is; never built).  Without
#               it the bench builds this tree out of the repository, in
#               ${TMPDIR:-/tmp}/gmflow-bench-build-<uid> (cmake --build brings it up to date)
#   --out       CSV path (default ${TMPDIR:-/tmp}/gmflow_flow_bench_<date>.csv)
#   --in-repo   write bench/results/flow_bench.csv (flow_bench_quick.csv with --quick) instead
#   --no-ref    skip the tight-tolerance reference run
#   --keep      keep the .npy work directory (printed)
set -euo pipefail

# me, usage, usage_error, positional_args: the scripts' convention
# shellcheck source-path=SCRIPTDIR source=../tools/scriptargs.sh
. "$(dirname "$0")/../tools/scriptargs.sh"
cd "$(dirname "$0")/.."
. bench/bench_env.sh
QUICK=0 THREADS=1 T=1 RTOL=1e-8 ATOL=1e-10 OUT="" BUILD="" REF=1 KEEP=0 ROUNDS="" INREPO=0
CPU=$(($(getconf _NPROCESSORS_ONLN) - 1))
PAIRS_SPEC="rk8pd:DOP853 rk8pd:rms:DOP853 rkf45:RK45 rkf45:rms:RK45 adams:LSODA rk8pd:fixed:DOP853"
SIZES=()
PY=/usr/bin/python3
die2() { usage_error "$@"; }
need() { [ $# -ge 2 ] && [ -n "$2" ] || die2 "option $1 needs a value"; }
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --size) need "$@"; [[ $2 =~ ^[0-9]+,[0-9]+,[0-9]+$ ]] || die2 "--size $2: want n,d,K"; SIZES+=("${2//,/ }"); shift ;;
    --rounds) need "$@"; [[ $2 =~ ^[1-9][0-9]*$ ]] || die2 "--rounds $2: want a positive integer"; ROUNDS="$2"; shift ;;
    --cpu) need "$@"; [[ $2 =~ ^[0-9]+$ ]] || die2 "--cpu $2: want a core number"; CPU="$2"; shift ;;
    --threads) need "$@"; [[ $2 =~ ^[1-9][0-9]*$ ]] || die2 "--threads $2: want a positive integer"; THREADS="$2"; shift ;;
    --T) need "$@"; T="$2"; shift ;;
    --rtol) need "$@"; RTOL="$2"; shift ;;
    --atol) need "$@"; ATOL="$2"; shift ;;
    --pairs) need "$@"; PAIRS_SPEC="$2"; shift ;;
    --out) need "$@"; OUT="$2"; shift ;;
    --in-repo) INREPO=1 ;;
    --build) need "$@"; BUILD="$2"; shift ;;
    --no-ref) REF=0 ;;
    --keep) KEEP=1 ;;
    -h | --help) usage; exit 0 ;;
    *) die2 "unknown option '$1'" ;;
    esac
    shift
done
[ -n "$OUT" ] && [ "$INREPO" = 1 ] && die2 "give --out or --in-repo, not both"
taskset -c "$CPU" true 2>/dev/null || die2 "--cpu $CPU: taskset cannot pin to that core"
PAIRS=()
for p in $PAIRS_SPEC; do
    [[ $p =~ ^(rk8pd|rkf45|adams|bdf)(:rms|:fixed)?:(DOP853|RK45|LSODA|RK23|Radau|BDF)$ ]] ||
        die2 "--pairs: '$p' is not C[:rms|:fixed]:SciPy (C rk8pd|rkf45|adams|bdf)"
    PAIRS+=("${p%:*} ${p##*:}")
done

if [ -n "$BUILD" ]; then
    BIN="$BUILD/bench/bench_rhs"
    [ -x "$BIN" ] || { echo "run_flow_bench.sh: $BIN: not found (build it with cmake --build $BUILD --target bench_bench_rhs)" >&2; exit 1; }
else
    BUILD="${TMPDIR:-/tmp}/gmflow-bench-build-$(id -u)"
    echo "# building this tree out of the repository in $BUILD"
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BUILD" -j2 --target bench_bench_rhs >/dev/null
    BIN="$BUILD/bench/bench_rhs"
fi
if [ "$QUICK" = 1 ]; then
    [ ${#SIZES[@]} -gt 0 ] || SIZES=("200 3 4" "1000 20 3" "2000 10 5")
    ROUNDS="${ROUNDS:-2}"
    [ "$INREPO" = 1 ] && OUT=bench/results/flow_bench_quick.csv
else
    [ ${#SIZES[@]} -gt 0 ] || SIZES=("200 3 4" "1000 10 5" "2000 100 5" "10000 50 10")
    ROUNDS="${ROUNDS:-3}"
    [ "$INREPO" = 1 ] && OUT=bench/results/flow_bench.csv
fi
OUT="${OUT:-${TMPDIR:-/tmp}/gmflow_flow_bench_$(date +%Y%m%d-%H%M%S).csv}"
mkdir -p "$(dirname "$OUT")" || { echo "run_flow_bench.sh: cannot create the directory of $OUT" >&2; exit 1; }
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gmflow_flow_bench.XXXXXX")"
[ "$KEEP" = 1 ] || trap 'rm -rf "$WORK"' EXIT
export OPENBLAS_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS"
if [ "$THREADS" = 1 ]; then PIN=(taskset -c "$CPU"); else PIN=(taskset -c "0-$((THREADS - 1))"); fi
RAW="$WORK/raw.txt"
: >"$RAW"

# a C variant's tag and extra options: rk8pd -> c_rk8pd; rk8pd:rms -> c_rk8pd_rms --gsl-norm rms
ctag() { local m="${1%%:*}" v="${1#*:}"; [ "$v" = "$1" ] && echo "c_$m" || echo "c_${m}_$v"; }
cextra() {
    case "$1" in
    *:rms) echo "--gsl-norm rms --tag $(ctag "$1")" ;;
    *:fixed) echo "--h0 fixed --tag $(ctag "$1")" ;;
    *) echo "" ;;
    esac
}

{
    echo "# gmflow vs NumPy/SciPy: Theorem 4 BW flow, T=$T rtol=$RTOL atol=$ATOL, OpenBLAS threads=$THREADS, pinned: ${PIN[*]}, $ROUNDS interleaved rounds"
    bench_machine_lines .
    echo "# python $($PY -c 'import sys,numpy,scipy;print(sys.version.split()[0],"numpy",numpy.__version__,"scipy",scipy.__version__)')"
} | tee "$WORK/header.txt"
for size in "${SIZES[@]}"; do
    read -r n d K <<<"$size"
    dir="$WORK/n${n}_d${d}_K${K}"
    common=(--dir "$dir" --n "$n" --d "$d" --K "$K" --T "$T" --threads "$THREADS")
    echo "== $n,$d,$K: $ROUNDS rounds of: $(for p in "${PAIRS[@]}"; do printf '%s ' $p; done)"
    for r in $(seq "$ROUNDS"); do
        declare -A SEEN=()
        for pair in "${PAIRS[@]}"; do
            read -r cm pm <<<"$pair"
            for side in c py; do
                key="$side:$([ $side = c ] && echo "$cm" || echo "$pm")"
                [ -n "${SEEN[$key]:-}" ] && continue
                SEEN[$key]=1
                l=$(bench_load1)
                if [ $side = c ]; then
                    # shellcheck disable=SC2046
                    line="$("${PIN[@]}" "$BIN" flow "${common[@]}" --method "${cm%%:*}" --rtol "$RTOL" \
                        --atol "$ATOL" --repeat 3 $(cextra "$cm") | grep '^RESULT' || true)"
                else
                    line="$("${PIN[@]}" $PY bench/flow_numpy.py solve "$dir" --T "$T" --method "$pm" \
                        --rtol "$RTOL" --atol "$ATOL" --repeat 3 | grep '^RESULT' || true)"
                fi
                [ -n "$line" ] || echo "   $key failed at $n,$d,$K round $r" >&2
                echo "SIZE=$n,$d,$K ROUND=$r KEY=$key LOAD1=$l ${line:-FAILED}" >>"$RAW"
            done
        done
        unset SEEN
    done
    if [ "$REF" = 1 ]; then
        "${PIN[@]}" "$BIN" flow "${common[@]}" --method rk8pd --rtol 1e-12 --atol 1e-14 --tag ref >/dev/null
    fi
    specs=()
    for pair in "${PAIRS[@]}"; do
        read -r cm pm <<<"$pair"
        ct=$(ctag "$cm")
        [ -f "$dir/mu_$ct.npy" ] && [ -f "$dir/mu_py_$pm.npy" ] && specs+=("$ct:py_$pm")
        [ "$REF" = 1 ] && [ -f "$dir/mu_$ct.npy" ] && specs+=("$ct:ref")
        [ "$REF" = 1 ] && [ -f "$dir/mu_py_$pm.npy" ] && specs+=("py_$pm:ref")
    done
    if [ "${#specs[@]}" -gt 0 ]; then
        $PY bench/flow_numpy.py compare "$dir" "${specs[@]}" --rtol "$RTOL" --atol "$ATOL" |
            sed "s/^COMPARE /COMPARE SIZE=$n,$d,$K /" >>"$RAW"
    fi
done

# ---- summary: medians, per-round ratios, the CSV ------------------------------------------------
$PY - "$RAW" "$OUT" "$WORK/header.txt" "$THREADS" "$REF" "${PAIRS[@]}" <<'EOF'
import statistics as S, sys
raw, out, header, threads, ref = sys.argv[1:6]
pairs = [p.split() for p in sys.argv[6:]]
clk = "cpu_s" if threads == "1" else "wall_s"
runs, cmp = {}, {}
for line in open(raw):
    kv = dict(w.split("=", 1) for w in line.split() if "=" in w)
    if line.startswith("COMPARE"):
        cmp[(kv["SIZE"], kv["a"], kv["b"])] = kv
    elif "impl" in kv:
        runs.setdefault((kv["SIZE"], kv["KEY"]), {})[int(kv["ROUND"])] = kv
def ctag(cm):
    m, _, v = cm.partition(":")
    return f"c_{m}_{v}" if v else f"c_{m}"
cols = ("n,d,K,T,rtol,atol,threads,c_method,gsl_norm,py_method,rounds,c_cpu_s,py_cpu_s,"
        "c_wall_s,py_wall_s,speedup_median,speedup_min,speedup_max,speedup_wall_median,c_nfev,"
        "py_nfev,py_njev,c_steps,py_steps,c_rhs_s,py_rhs_s,rhs_ratio,rel_diff,weighted_diff,"
        "c_rel_err_ref,py_rel_err_ref,c_lossT,py_lossT,load1_mean").split(",")
rows = []
print(f"\n{'n,d,K':12} {'C method':11} {'SciPy':6} {'C ' + clk[:-2]:>8} {'Py ' + clk[:-2]:>8} "
      f"{'speedup (range)':>19} {'nfev C/Py':>11} {'steps C/Py':>10} {'RHS x':>6} {'rel diff':>9} "
      f"{'C err':>9} {'Py err':>9} {'load':>5}")
sizes = list(dict.fromkeys(k[0] for k in runs))
for size in sizes:
    for cm, pm in pairs:
        c, p = runs.get((size, "c:" + cm), {}), runs.get((size, "py:" + pm), {})
        rnds = sorted(set(c) & set(p))
        if not rnds:
            print(f"{size:12} {cm:11} {pm:6} FAILED")
            continue
        med = lambda d, k: S.median(float(d[r][k]) for r in rnds)
        ratios = [float(p[r][clk]) / float(c[r][clk]) for r in rnds]
        wr = S.median(float(p[r]["wall_s"]) / float(c[r]["wall_s"]) for r in rnds)
        last = rnds[-1]
        cc, pp = c[last], p[last]
        ct = ctag(cm)
        x = cmp.get((size, ct, "py_" + pm), {})
        ce = cmp.get((size, ct, "ref"), {}).get("rel", "nan")
        pe = cmp.get((size, "py_" + pm, "ref"), {}).get("rel", "nan")
        rr = med(p, "rhs_s") / med(c, "rhs_s")
        loads = [float(d[r]["LOAD1"]) for d in (c, p) for r in rnds]
        n, d, K = size.split(",")
        row = dict(n=n, d=d, K=K, T=cc["T"], rtol=cc["rtol"], atol=cc["atol"], threads=threads,
                   c_method=cm.split(":")[0] + (":fixed" if cm.endswith(":fixed") else ""),
                   gsl_norm=cc.get("gsl_norm", "") if cm.split(":")[0] in ("rk8pd", "rkf45") else "",
                   py_method=pm, rounds=len(rnds), c_cpu_s=f"{med(c, 'cpu_s'):.6g}",
                   py_cpu_s=f"{med(p, 'cpu_s'):.6g}", c_wall_s=f"{med(c, 'wall_s'):.6g}",
                   py_wall_s=f"{med(p, 'wall_s'):.6g}", speedup_median=f"{S.median(ratios):.3f}",
                   speedup_min=f"{min(ratios):.3f}", speedup_max=f"{max(ratios):.3f}",
                   speedup_wall_median=f"{wr:.3f}", c_nfev=cc["nfev"], py_nfev=pp["nfev"],
                   py_njev=pp.get("njev", ""), c_steps=cc["nsteps"], py_steps=pp["nsteps"],
                   c_rhs_s=f"{med(c, 'rhs_s'):.4g}", py_rhs_s=f"{med(p, 'rhs_s'):.4g}",
                   rhs_ratio=f"{rr:.2f}", rel_diff=x.get("rel", "nan"),
                   weighted_diff=x.get("weighted", "nan"), c_rel_err_ref=ce, py_rel_err_ref=pe,
                   c_lossT=cc["lossT"], py_lossT=pp["lossT"], load1_mean=f"{S.mean(loads):.2f}")
        rows.append(row)
        sp = f"{S.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
        print(f"{size:12} {cm:11} {pm:6} {med(c, clk):8.3f} {med(p, clk):8.3f} {sp:>19} "
              f"{cc['nfev']:>5}/{pp['nfev']:<5} {cc['nsteps']:>4}/{pp['nsteps']:<5} {rr:5.2f}x "
              f"{row['rel_diff']:>9} {ce:>9} {pe:>9} {row['load1_mean']:>5}")
with open(out, "w") as f:
    f.write(open(header).read())
    f.write(",".join(cols) + "\n")
    for r in rows:
        f.write(",".join(str(r[k]) for k in cols) + "\n")
print(f"\nspeedup = SciPy time / gmflow time for the whole solve ({clk}; median over the rounds and the"
      f"\nrange of the per-round ratios); RHS x = SciPy / gmflow time per RHS evaluation; rel diff ="
      f"\nmax|C - SciPy| / max|SciPy| over the final state; C err, Py err = the same against the"
      f"\nreference (C rk8pd, rtol 1e-12); load = mean 1-minute load average before the runs.")
print(f"wrote {out}")
EOF
echo "load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$KEEP" = 1 ] && echo "work directory: $WORK"
exit 0
