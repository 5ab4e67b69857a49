#!/usr/bin/env bash
# run_train_bench.sh -- training speed: `gmflow train` vs the PyTorch peer (bench/torch_gm.py) on
# the same MNIST epoch (one GM layer, K = 20, L = 9, batch 64, lr sigma 1 / rest 0.1, gamma 1/2),
# on this machine, in one run, at 1 and 2 threads each.
#
#   bench/run_train_bench.sh [--epochs 1] [--threads "1 2"] [--dtypes "float32 float64"]
#                            [--precisions "32 64"] (gmflow's --precision)
#                            [--impls "autograd manual"] [--limit 0] [--repeat 1] [--K 20]
#                            [--build build] [--data ../shared/data] [--no-gmflow] [--no-torch]
#                            [--wait-quiet SECONDS]
#
# On a shared machine, --wait-quiet S waits (up to S seconds) before each run until the CPUs are
# >= 90% idle over 3 s (niced processes count as idle); every row records the 1-minute load
# average and that busy share just before it ran.
#
# Prints every configuration's best epoch time, the ratio of gmflow's best epoch to PyTorch's
# best setting (goal <= 0.2), and the achieved GFLOP/s against the machine's peak, and writes
# bench/results/train_bench_<stamp>.csv (plus each run's own CSV/JSON/log in
# bench/results/train_bench_<stamp>/).
#
# FLOPs per epoch (GM layer, n samples, d inputs, K components, L outputs; 2 flops per
# multiply-add; GEMMs only, the O(n K L) elementwise work is left out):
#   forward   m = X mu^T, s^2 = (X*X)(sigma^2)^T, G = X W^T (W_k = U_k diag(sigma_k^2))
#             2 n d K (L + 2)
#   backward  dmu = dm^T X, dsigma^2 = ds2^T (X*X), dW = dG^T X  (no dX: first layer)
#             2 n d K (L + 2)
#   total     F = 4 n d K (L + 2) = 4 * 60000 * 784 * 20 * 11 = 4.14e10 for MNIST at K = 20.
# The issue's "about 6e10" is the same work counted without reusing dW for the sigma gradient
# (a separate dsigma GEMM through U: 2 n d K (3L + 4) = 5.85e10), or by the 6 x params rule
# that includes an input gradient a first layer does not need (6 n d K (L + 2) = 6.21e10).
# GFLOP/s below use F (the useful work); "nominal 6e10" rates are also printed.
#
# Peak: theoretical = threads * clock * flops/cycle/core, with the clock measured by
# bench/blas_peak.c (boost clock under load; /proc/cpuinfo's "cpu MHz" is only the nominal rate)
# and PEAK_SP_FLOPS_PER_CYCLE (default 32: two 256-bit FMA pipes, e.g. AMD Zen 4 -- whose
# AVX-512 runs on the same 256-bit pipes -- or Intel Haswell..Skylake client; float64 is half);
# and practical = the best OpenBLAS GEMM rate on a large square matrix (bench/blas_peak.c).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build
DATA=$ROOT/../shared/data
EPOCHS=1
THREADS="1 2"
DTYPES="float32 float64"
PRECISIONS="32 64"
IMPLS="autograd manual"
LIMIT=0
REPEAT=1
K=20
RUN_GMFLOW=1
RUN_TORCH=1
WAIT_QUIET=0
PY=/usr/bin/python3

while [ $# -gt 0 ]; do
    case "$1" in
    --epochs) EPOCHS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --dtypes) DTYPES=$2; shift 2 ;;
    --precisions) PRECISIONS=$2; shift 2 ;;
    --impls) IMPLS=$2; shift 2 ;;
    --limit) LIMIT=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --K) K=$2; shift 2 ;;
    --build) BUILD=$(cd "$2" && pwd); shift 2 ;;
    --data) DATA=$(cd "$2" && pwd); shift 2 ;;
    --no-gmflow) RUN_GMFLOW=0; shift ;;
    --no-torch) RUN_TORCH=0; shift ;;
    --wait-quiet) WAIT_QUIET=$2; shift 2 ;;
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "run_train_bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

STAMP=$(date +%Y%m%d-%H%M%S)
RES=$ROOT/bench/results
RUNDIR=$RES/train_bench_$STAMP
OUT=$RES/train_bench_$STAMP.csv
mkdir -p "$RUNDIR"
ROWS=$RUNDIR/rows.csv
echo "tool,impl,dtype,threads,rep,n_train,epochs,epoch_seconds,test_error,train_loss,load" >"$ROWS"

# busy share of all CPUs over 3 s, in percent (from /proc/stat), not counting niced processes
# (at nice 19 they get ~1.5% of a core against a normal-priority benchmark)
busy_pct() {
    local a b
    a=($(head -1 /proc/stat))
    sleep 3
    b=($(head -1 /proc/stat))
    local tot=0 i
    for i in 1 2 3 4 5 6 7 8; do tot=$((tot + b[i] - a[i])); done
    local free=$((b[4] - a[4] + b[5] - a[5] + b[2] - a[2]))
    echo $(((100 * (tot - free)) / (tot > 0 ? tot : 1)))
}
# "load1/busy%" just before a run; with --wait-quiet, first wait for a quiet machine
load1() {
    local busy waited=0
    busy=$(busy_pct)
    while [ "$WAIT_QUIET" != 0 ] && [ "$busy" -gt 10 ] && [ "$waited" -lt "$WAIT_QUIET" ]; do
        sleep 2
        waited=$((waited + 5))
        busy=$(busy_pct)
    done
    echo "$(cut -d' ' -f1 /proc/loadavg)/${busy}%"
}
GMFLOW=$BUILD/gmflow
BLAS_PEAK=$BUILD/bench/blas_peak

echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) cores," \
    "$(grep -m1 'cpu MHz' /proc/cpuinfo | cut -d: -f2 | tr -d ' ') MHz; load $(cat /proc/loadavg)"
echo "== git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo '+dirty'); results in $OUT"

# ---- BLAS peak ---------------------------------------------------------------------------------
if [ -x "$BLAS_PEAK" ]; then
    for t in $THREADS; do
        OPENBLAS_NUM_THREADS=$t "$BLAS_PEAK" --threads "$t" --n 2048 --reps 3 | tee -a "$RUNDIR/blas_peak.txt"
    done
else
    echo "(no $BLAS_PEAK: build it with cmake --build $BUILD --target bench_blas_peak)"
fi

# ---- gmflow train ------------------------------------------------------------------------------
# `gmflow train` writes <out>/epochs.csv: epoch,train_loss,test_loss,test_error,seconds,
# samples_per_s (epoch 0 = the initial evaluation; seconds = the training part of the epoch).
if [ "$RUN_GMFLOW" = 1 ]; then
    if [ -x "$GMFLOW" ] && "$GMFLOW" train --help >/dev/null 2>&1; then
        for rep in $(seq 1 "$REPEAT"); do
            for prec in $PRECISIONS; do
                for t in $THREADS; do
                    dir=$RUNDIR/gmflow_p${prec}_t${t}_r$rep
                    log=$dir.log
                    rm -rf "$dir"
                    l=$(load1)
                    cmd=("$GMFLOW" train --model gm --K "$K" --epochs "$EPOCHS" --threads "$t"
                        --precision "$prec" --data "$DATA/mnist" --train-limit "$LIMIT"
                        --seed 1 --out "$dir" --quiet)
                    echo "== ${cmd[*]}"
                    if ! OPENBLAS_NUM_THREADS=$t "${cmd[@]}" >"$log" 2>&1; then
                        echo "   gmflow train failed:"
                        tail -5 "$log"
                        continue
                    fi
                    cat "$log"
                    "$PY" - "$dir/epochs.csv" "$prec" "$t" "$rep" "$l" >>"$ROWS" <<'EOF'
import csv, sys
path, prec, t, rep, l = sys.argv[1:]
rows = [r for r in csv.DictReader(open(path)) if int(r["epoch"]) >= 1]
best = min(float(r["seconds"]) for r in rows)
last = rows[-1]
dt = "float32" if prec == "32" else "float64"
print(f"gmflow,native,{dt},{t},{rep},,{len(rows)},{best},{last['test_error']},"
      f"{last['train_loss']},{l}")
EOF
                done
            done
        done
    else
        echo "== gmflow train not available ($GMFLOW train --help failed): PyTorch side only"
    fi
fi

# ---- PyTorch -----------------------------------------------------------------------------------
if [ "$RUN_TORCH" = 1 ]; then
    for rep in $(seq 1 "$REPEAT"); do
        for dt in $DTYPES; do
            for impl in $IMPLS; do
                for t in $THREADS; do
                    base=$RUNDIR/torch_${impl}_${dt}_t${t}_r$rep
                    l=$(load1)
                    cmd=("$PY" "$ROOT/bench/torch_gm.py" --K "$K" --epochs "$EPOCHS" --threads "$t"
                        --dtype "$dt" --impl "$impl" --limit "$LIMIT" --seed 0
                        --data "$DATA" --csv "$base.csv")
                    echo "== ${cmd[*]}"
                    "${cmd[@]}" 2>&1 | tee "$base.log"
                    "$PY" - "$base.json" "$rep" "$l" >>"$ROWS" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
last = s["epochs"][-1]
print(f"pytorch,{s['impl']},{s['dtype']},{s['threads']},{sys.argv[2]},{s['n_train']},"
      f"{len(s['epochs'])},{s['best_epoch_seconds']},{last['test_error']},{last['train_loss']},"
      f"{sys.argv[3]}")
EOF
                done
            done
        done
    done
fi

# ---- summary -----------------------------------------------------------------------------------
"$PY" - "$ROWS" "$OUT" "$RUNDIR/blas_peak.txt" "$K" "$LIMIT" <<'EOF'
import csv, os, re, sys
rows_path, out_path, blas_path, K, limit = sys.argv[1:]
K, limit = int(K), int(limit)
n = limit if limit else 60000
d, L = 784, 9
F = 4 * n * d * K * (L + 2)
F_nominal = 6e10 * n / 60000
mhz = float(re.search(r"cpu MHz\s*:\s*([\d.]+)", open("/proc/cpuinfo").read()).group(1))
per_cycle = float(os.environ.get("PEAK_SP_FLOPS_PER_CYCLE", "32"))
blas = {}
clock_src = "/proc/cpuinfo nominal"
if os.path.exists(blas_path):
    for line in open(blas_path):
        m = re.search(r"clock_ghz=([\d.]+)", line)
        if m:
            mhz = max(mhz if clock_src != "/proc/cpuinfo nominal" else 0, 1e3 * float(m.group(1)))
            clock_src = "measured under load (blas_peak)"
        m = re.search(r"dtype=(\w+) shape=square\S* threads=(\d+) gflops=([\d.]+)", line)
        if m:
            blas[(m.group(1), int(m.group(2)))] = float(m.group(3))
rows = list(csv.DictReader(open(rows_path)))
best = {}
for r in rows:
    key = (r["tool"], r["impl"], r["dtype"], int(r["threads"]))
    sec = float(r["epoch_seconds"])
    if key not in best or sec < float(best[key]["epoch_seconds"]):
        best[key] = r
print(f"\nGM layer, MNIST, K = {K}, n = {n}: F = 4 n d K (L+2) = {F:.3e} GEMM flop per epoch "
      f"(nominal 6e10-scale: {F_nominal:.2e})")
print(f"peak: {mhz / 1e3:.3f} GHz ({clock_src}) x {per_cycle:g} SP flop/cycle/core "
      f"(DP half; PEAK_SP_FLOPS_PER_CYCLE) x threads; %BLAS: of OpenBLAS's large-GEMM rate")
hdr = (f"{'tool':8} {'impl':9} {'dtype':8} {'thr':>3} {'epoch s':>8} {'GFLOP/s':>8} "
       f"{'%peak':>6} {'%BLAS':>6} {'nom6e10':>8} {'test err':>8} {'load/busy':>9}")
print(hdr)
out = []
for key in sorted(best):
    r = best[key]
    tool, impl, dt, t = key
    sec = float(r["epoch_seconds"])
    gf = F / sec / 1e9
    peak = t * mhz / 1e3 * per_cycle / (2 if dt == "float64" else 1)
    bl = blas.get((dt, t))
    err = r["test_error"]
    errs = f"{100 * float(err):.2f}%" if err not in ("", "nan") else "-"
    print(f"{tool:8} {impl:9} {dt:8} {t:3d} {sec:8.3f} {gf:8.1f} {100 * gf / peak:5.1f}% "
          f"{(f'{100 * gf / bl:5.1f}%' if bl else '    -'):>6} {F_nominal / sec / 1e9:8.1f} "
          f"{errs:>8} {r['load']:>9}")
    out.append({"tool": tool, "impl": impl, "dtype": dt, "threads": t, "n_train": n,
                "epochs": r["epochs"], "epoch_seconds": sec, "gflops": round(gf, 2),
                "flops_per_epoch": F, "pct_nominal_peak": round(100 * gf / peak, 1),
                "blas_square_gflops": bl or "", "pct_blas_peak": round(100 * gf / bl, 1) if bl else "",
                "test_error": err, "train_loss": r["train_loss"], "load_busy_before": r["load"]})
torch_rows = [r for k, r in best.items() if k[0] == "pytorch"]
gm_rows = [r for k, r in best.items() if k[0] == "gmflow"]
if torch_rows:
    tb = min(torch_rows, key=lambda r: float(r["epoch_seconds"]))
    print(f"\nPyTorch best setting: {tb['impl']} {tb['dtype']} {tb['threads']} thread(s), "
          f"{float(tb['epoch_seconds']):.3f} s/epoch")
    if gm_rows:
        gb = min(gm_rows, key=lambda r: float(r["epoch_seconds"]))
        ratio = float(gb["epoch_seconds"]) / float(tb["epoch_seconds"])
        print(f"gmflow best: {gb['threads']} thread(s), {float(gb['epoch_seconds']):.3f} s/epoch")
        print(f"ratio gmflow / PyTorch best = {ratio:.3f} (goal <= 0.2: "
              f"{'met' if ratio <= 0.2 else 'NOT met'})")
        for o in out:
            o["ratio_to_torch_best"] = round(o["epoch_seconds"] / float(tb["epoch_seconds"]), 4)
if out:
    with open(out_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(out[0].keys()) + (["ratio_to_torch_best"]
                           if "ratio_to_torch_best" not in out[0] else []), extrasaction="ignore")
        w.writeheader()
        w.writerows(out)
    print(f"\nwrote {out_path}")
EOF
