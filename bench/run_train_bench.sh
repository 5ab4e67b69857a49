#!/usr/bin/env bash
# run_train_bench.sh -- training speed: `gmflow train` vs its PyTorch peers on the same MNIST
# epoch, interleaved, pinned, like with like.
#
# Models (--models): gm = one GM layer (K = 20, L = 9, batch 64, lr sigma 1 / rest 0.1,
# gamma 1/2): `gmflow train --model gm` vs bench/torch_gm.py --impl manual and --impl autograd;
# fc = the two-layer ReLU network (width 1000, no biases, Kaiming init): `gmflow train --model
# fc` vs bench/torch_fc.py --no-bias.  float32 on both sides (--precision 64 / --dtype float64
# with --dtype float64).  The same --seed goes to both sides (the generators differ, so the runs
# start from different draws of the same initial law: their test errors are comparable, not
# equal).
#
# Each round runs, for each thread count T in --threads and each model: gmflow, then each
# PyTorch implementation (A B A B over the rounds), every run pinned with taskset to the same
# core(s) (T = 1: --cpu; T = 2: cores 0,1).  Before the first round and after the last,
# bench/blas_peak measures the same-run SGEMM rate (2048^3 and gmflow's GEMM shapes, N = K (L +
# 1) = 200) at each thread count.  Recorded per run: the best epoch time (the training part, as
# each program reports it), the whole process's wall and CPU time (user + sys, from
# /usr/bin/time: loading, initial evaluation, epochs, evaluation and Python start-up included),
# the test error after the last epoch, and the 1-minute load average before the run.  On a
# loaded machine the wall clock is inflated by time slicing, so the epoch's CPU time is recorded
# too (epoch_cpu_s: one epoch of training plus one test evaluation, all threads, alike on both
# sides): the PyTorch scripts measure it in-process (time.process_time); for gmflow, whose
# epochs.csv has wall times, each run is repeated with one more epoch and the difference of the
# two processes' CPU times is taken.
#
# Printed and written (summary.csv): per configuration the medians over the rounds; per pair
# (gmflow vs each PyTorch setting at the SAME thread count and model) the median and range of
# the per-round ratios gmflow / PyTorch of the epoch time and of the whole process (wall and
# CPU); then, labelled separately, the best-vs-best ratio (gmflow's fastest thread count vs
# PyTorch's fastest setting, possibly at different thread counts); and gmflow's GEMM rate
# F = 4 n d K (L + 2) flops per epoch (GM model) as a share of the same run's SGEMM rates (by
# the wall clock; and epoch CPU time against blas_peak's CPU-time rates, the cpu: columns):
# %SGEMM of the 2048^3 rate, %shapes of the rate blas_peak reaches on gmflow's own GEMM shapes
# (F / sum_i F_i / rate_i over the epoch's GEMMs).  Every CSV starts
# with "# " lines: CPU model, SIMD flags (AVX2, AVX-512 ...), clock (/proc/cpuinfo, lscpu), load
# average, git commit, and the SGEMM rates.
#
# usage: bench/run_train_bench.sh [--quick] [--rounds R] [--threads "1 2"] [--models "gm fc"]
#            [--impls "manual autograd"] [--dtype float32|float64] [--epochs E] [--limit N]
#            [--K K] [--seed S] [--cpu N] [--build DIR] [--data DIR] [--out DIR | --in-repo]
#            [--no-blas] [--no-torch] [--no-cpu-epoch]
#   --quick     1 round, --limit 10000, threads "1", models "gm", impls "manual" (~30 s)
#   --rounds    interleaved rounds (default 3)
#   --threads   thread counts, each compared like with like (default "1 2")
#   --models    gm and/or fc (default "gm")
#   --impls     torch_gm.py implementations (default "manual autograd")
#   --epochs    epochs per run (default 1; the best epoch is reported)
#   --limit     first N training images (default 0 = all 60000)
#   --cpu       the core 1-thread runs are pinned to (default: the last online core)
#   --build     build directory with gmflow and bench/blas_peak (default: build)
#   --data      data root holding mnist/ (default ../shared/data)
#   --out       results directory (default ${TMPDIR:-/tmp}/gmflow_train_bench_<date>)
#   --in-repo   write into bench/results/train_bench_<date>/ instead
#   --no-blas   skip bench/blas_peak (no "% of SGEMM")
#   --no-cpu-epoch  no second gmflow run with one more epoch (no gmflow epoch_cpu_s)
#   --no-torch  gmflow only (no ratios).  The PyTorch side needs /usr/bin/python3 with torch
#               (Debian: apt-get install python3-torch)
set -euo pipefail

# me, usage, usage_error, positional_args: the scripts' convention
# shellcheck source-path=SCRIPTDIR source=../tools/scriptargs.sh
. "$(dirname "$0")/../tools/scriptargs.sh"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/bench/bench_env.sh"
BUILD=$ROOT/build DATA=$ROOT/../shared/data EPOCHS=1 THREADS="1 2" MODELS=gm
IMPLS="manual autograd" DTYPE=float32 LIMIT=0 ROUNDS=3 K=20 SEED=1 OUT="" INREPO=0 BLAS=1 TORCH=1 CPUEP=1
CPU=$(($(getconf _NPROCESSORS_ONLN) - 1))
PY=/usr/bin/python3
die2() { usage_error "$@"; }
die1() { echo "run_train_bench.sh: $*" >&2; exit 1; }
need() { [ $# -ge 2 ] && [ -n "$2" ] || die2 "option $1 needs a value"; }
posint() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die2 "$1 $2: want a positive integer"; }
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) ROUNDS=1 LIMIT=10000 THREADS=1 MODELS=gm IMPLS=manual CPUEP=0 ;;
    --rounds) need "$@"; posint "$1" "$2"; ROUNDS=$2; shift ;;
    --threads) need "$@"; THREADS=$2; shift ;;
    --models) need "$@"; MODELS=$2; shift ;;
    --impls) need "$@"; IMPLS=$2; shift ;;
    --dtype) need "$@"; DTYPE=$2; shift ;;
    --epochs) need "$@"; posint "$1" "$2"; EPOCHS=$2; shift ;;
    --limit) need "$@"; [[ $2 =~ ^[0-9]+$ ]] || die2 "--limit $2: want a count (0 = all)"; LIMIT=$2; shift ;;
    --K) need "$@"; posint "$1" "$2"; K=$2; shift ;;
    --seed) need "$@"; [[ $2 =~ ^[0-9]+$ ]] || die2 "--seed $2: want a non-negative integer"; SEED=$2; shift ;;
    --cpu) need "$@"; [[ $2 =~ ^[0-9]+$ ]] || die2 "--cpu $2: want a core number"; CPU=$2; shift ;;
    --build) need "$@"; BUILD=$2; shift ;;
    --data) need "$@"; DATA=$2; shift ;;
    --out) need "$@"; OUT=$2; shift ;;
    --in-repo) INREPO=1 ;;
    --no-blas) BLAS=0 ;;
    --no-torch) TORCH=0 ;;
    --no-cpu-epoch) CPUEP=0 ;;
    -h | --help) usage; exit 0 ;;
    *) die2 "unknown option '$1'" ;;
    esac
    shift
done
for t in $THREADS; do posint --threads "$t"; done
for m in $MODELS; do [[ $m =~ ^(gm|fc)$ ]] || die2 "--models: '$m' is not gm or fc"; done
for i in $IMPLS; do [[ $i =~ ^(manual|autograd)$ ]] || die2 "--impls: '$i' is not manual or autograd"; done
[[ $DTYPE =~ ^float(32|64)$ ]] || die2 "--dtype $DTYPE: want float32 or float64"
[ -n "$OUT" ] && [ "$INREPO" = 1 ] && die2 "give --out or --in-repo, not both"
NCPU=$(getconf _NPROCESSORS_ONLN)
taskset -c "$CPU" true 2>/dev/null || die2 "--cpu $CPU: taskset cannot pin to that core"
for t in $THREADS; do [ "$t" -le "$NCPU" ] || die2 "--threads $t: this machine has $NCPU cores"; done
GMFLOW=$BUILD/gmflow BLAS_PEAK=$BUILD/bench/blas_peak
[ -x "$GMFLOW" ] || die1 "$GMFLOW: not found (build with cmake --build $BUILD, or give --build)"
[ "$BLAS" = 0 ] || [ -x "$BLAS_PEAK" ] ||
    die1 "$BLAS_PEAK: not found (cmake --build $BUILD --target bench_blas_peak, or --no-blas)"
[ -r "$DATA/mnist/train-images-idx3-ubyte" ] || [ -r "$DATA/mnist/train-images-idx3-ubyte.gz" ] ||
    die1 "$DATA/mnist/train-images-idx3-ubyte[.gz]: $(ls "$DATA/mnist/train-images-idx3-ubyte" 2>&1 | sed 's/.*: //')"
[ "$TORCH" = 0 ] || "$PY" -c 'import torch' 2>/dev/null ||
    die1 "PyTorch is not importable by $PY (Debian: apt-get install python3-torch), or use --no-torch"
[ -x /usr/bin/time ] || die1 "/usr/bin/time: not found (the whole-process times need it)"
STAMP=$(date +%Y%m%d-%H%M%S)
if [ "$INREPO" = 1 ]; then OUT=$ROOT/bench/results/train_bench_$STAMP; fi
OUT=${OUT:-${TMPDIR:-/tmp}/gmflow_train_bench_$STAMP}
mkdir -p "$OUT/runs" || die1 "cannot create $OUT"
PREC=${DTYPE#float}
RUNS=$OUT/runs.csv BLASF=$OUT/blas_peak.txt
: >"$BLASF"
echo "round,model,tool,impl,dtype,threads,epochs,epoch_s,proc_wall_s,proc_cpu_s,test_error,load1,epoch_cpu_s" >"$RUNS"
pin() { if [ "$1" = 1 ]; then echo "taskset -c $CPU"; else echo "taskset -c 0-$(($1 - 1))"; fi; }

{
    echo "# train bench: MNIST, K = $K, batch 64, $DTYPE, epochs $EPOCHS, limit $LIMIT, seed $SEED (both sides), $ROUNDS interleaved rounds, 1-thread runs on core $CPU"
    bench_machine_lines "$ROOT"
    echo "# torch $($PY -c 'import torch; print(torch.__version__)' 2>/dev/null || echo 'not importable')"
} | tee "$OUT/header.txt"

blas_round() {
    [ "$BLAS" = 1 ] || return 0
    local t
    for t in $THREADS; do
        echo "# blas_peak round $1, $t thread(s), load $(bench_load1)" >>"$BLASF"
        OPENBLAS_NUM_THREADS=$t $(pin "$t") "$BLAS_PEAK" --threads "$t" --n 2048 --reps 3 >>"$BLASF" ||
            echo "   blas_peak failed ($t threads)" >&2
    done
}

# the command "$@" with --epochs E+1 and its --out / --csv path suffixed _plus1, into PLUS1
plus1_cmd() {
    PLUS1=()
    local prev="" a
    for a in "$@"; do
        case "$prev" in
        --epochs) a=$((a + 1)) ;;
        --out) a=${a}_plus1 ;;
        --csv) a=${a%.csv}_plus1.csv ;;
        esac
        PLUS1+=("$a")
        prev=$a
    done
}

# process CPU seconds (user + sys) in a /usr/bin/time -f "%e %U %S" file
cpu_of() { awk 'END { print $2 + $3 }' "$1"; }

# one run: $1 round, $2 model, $3 tool, $4 impl, $5 threads; the command after "--"
one() {
    local r=$1 model=$2 tool=$3 impl=$4 t=$5 base l tf ecpu=""
    shift 6
    base=$OUT/runs/${model}_${tool}_${impl}_t${t}_r$r
    l=$(bench_load1)
    tf=$base.time
    echo "== round $r: $model $tool $impl, $t thread(s)"
    # shellcheck disable=SC2046  # $(pin) is the taskset command and its arguments
    if ! OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t /usr/bin/time -o "$tf" -f "%e %U %S" \
        $(pin "$t") "$@" >"$base.log" 2>&1; then
        echo "   failed (see $base.log):" >&2
        tail -3 "$base.log" >&2
        return 0
    fi
    if [ "$CPUEP" = 1 ] && [ "$tool" = gmflow ]; then
        plus1_cmd "$@"
        # shellcheck disable=SC2046
        if OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t /usr/bin/time -o "${base}_plus1.time" \
            -f "%e %U %S" $(pin "$t") "${PLUS1[@]}" >"${base}_plus1.log" 2>&1; then
            ecpu=$(awk -v a="$(cpu_of "${base}_plus1.time")" -v b="$(cpu_of "$tf")" \
                'BEGIN { printf "%.3f", a - b }')
        else
            echo "   the run with one more epoch failed (see ${base}_plus1.log)" >&2
        fi
    fi
    "$PY" - "$base" "$tool" "$r,$model,$tool,$impl,$DTYPE,$t,$EPOCHS" "$l" "$ecpu" >>"$RUNS" <<'EOF'
import csv, json, sys
base, tool, lead, load, ecpu = sys.argv[1:]
wall, user, sys_ = (float(x) for x in open(base + ".time").read().split()[-3:])
if tool == "gmflow":
    rows = [r for r in csv.DictReader(open(base + "/epochs.csv")) if int(r["epoch"]) >= 1]
    best, err = min(float(r["seconds"]) for r in rows), rows[-1]["test_error"]
else:
    s = json.load(open(base + ".json"))
    best, err = s["best_epoch_seconds"], s["epochs"][-1]["test_error"]
    c = s.get("best_epoch_eval_cpu_seconds")
    ecpu = f"{c:.3f}" if isinstance(c, (int, float)) and c == c else ""
print(f"{lead},{best:.4f},{wall:.3f},{user + sys_:.3f},{err},{load},{ecpu}")
EOF
    tail -1 "$RUNS" | awk -F, '{printf "   epoch %.3f s, process %.2f s wall / %.2f s cpu, test error %s, load %s, epoch cpu %s s\n", $8, $9, $10, $11, $12, $13}'
}

blas_round 0
for r in $(seq "$ROUNDS"); do
    for t in $THREADS; do
        for model in $MODELS; do
            if [ "$model" = gm ]; then
                one "$r" gm gmflow native "$t" -- "$GMFLOW" train --model gm --K "$K" --epochs "$EPOCHS" \
                    --threads "$t" --precision "$PREC" --data "$DATA/mnist" --train-limit "$LIMIT" \
                    --seed "$SEED" --out "$OUT/runs/gm_gmflow_native_t${t}_r$r" --quiet
                [ "$TORCH" = 0 ] || for impl in $IMPLS; do
                    one "$r" gm pytorch "$impl" "$t" -- "$PY" "$ROOT/bench/torch_gm.py" --K "$K" \
                        --epochs "$EPOCHS" --threads "$t" --dtype "$DTYPE" --impl "$impl" \
                        --limit "$LIMIT" --seed "$SEED" --data "$DATA" --quiet \
                        --csv "$OUT/runs/gm_pytorch_${impl}_t${t}_r$r.csv"
                done
            else
                one "$r" fc gmflow native "$t" -- "$GMFLOW" train --model fc --epochs "$EPOCHS" \
                    --threads "$t" --precision "$PREC" --data "$DATA/mnist" --train-limit "$LIMIT" \
                    --seed "$SEED" --out "$OUT/runs/fc_gmflow_native_t${t}_r$r" --quiet
                [ "$TORCH" = 0 ] || one "$r" fc pytorch nobias "$t" -- "$PY" "$ROOT/bench/torch_fc.py" --no-bias \
                    --epochs "$EPOCHS" --threads "$t" --dtype "$DTYPE" --limit "$LIMIT" \
                    --seed "$SEED" --data "$DATA" --quiet --csv "$OUT/runs/fc_pytorch_nobias_t${t}_r$r.csv"
            fi
        done
    done
done
blas_round end

# ---- summary -----------------------------------------------------------------------------------
"$PY" - "$OUT" "$K" "$LIMIT" <<'EOF'
import csv, re, statistics as S, sys
out, K, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
n, d, L = (limit or 60000), 784, 9
F = 4 * n * d * K * (L + 2)  # GM layer GEMM flops per epoch (bench/torch_gm.py)
runs = list(csv.DictReader(open(out + "/runs.csv")))
blas, blas_cpu = {}, {}
for line in open(out + "/blas_peak.txt"):
    m = re.search(r"dtype=(\w+) shape=(\w+)\S* threads=(\d+) gflops=([\d.]+)", line)
    if m:
        key = (m.group(1), m.group(2), int(m.group(3)))
        blas.setdefault(key, []).append(float(m.group(4)))
        c = re.search(r"gflops_cpu=([\d.]+)", line)
        if c:
            blas_cpu.setdefault(key, []).append(float(c.group(1)))
blas = {k: S.median(v) for k, v in blas.items()}
blas_cpu = {k: S.median(v) for k, v in blas_cpu.items()}
lines = [f"# blas_peak, wall clock (median of the runs before and after): " + ", ".join(
    f"{k[0]} {k[1]} {k[2]}t {v:.1f} GFLOP/s" for k, v in sorted(blas.items()))]
if blas_cpu:
    lines.append(f"# blas_peak, CPU time (median of the runs before and after): " + ", ".join(
        f"{k[0]} {k[1]} {k[2]}t {v:.1f} GFLOP/s" for k, v in sorted(blas_cpu.items())))


def shapes_rate(b, dt, t):
    """F / sum_i F_i / rate_i over the epoch's GEMMs at blas_peak's rates for gmflow's shapes:
    X[mu;W]^T and dF^T X (2 n d K (L+1) flops each), the two sigma GEMMs (2 n d K each) at the
    S2 shape's rate"""
    r3 = [b.get((dt, s, t)) for s in ("gm_fwd_XWt", "gm_bwd_dPtX", "gm_fwd_Xmut")]
    f1 = 2 * n * d * K * (L + 1)
    return F / (f1 / r3[0] + f1 / r3[1] + 4 * n * d * K / r3[2]) if all(r3) else None

cfg = {}
for r in runs:
    cfg.setdefault((r["model"], r["tool"], r["impl"], r["dtype"], int(r["threads"])), {})[
        int(r["round"])] = r
med = lambda rs, k: S.median(float(x[k]) for x in rs.values())
print(f"\n{'model':5} {'tool':8} {'impl':8} {'thr':>3} {'epoch s':>8} {'ep cpu':>7} "
      f"{'proc wall':>9} {'proc cpu':>8} {'test err':>8} {'GFLOP/s':>8} {'%SGEMM':>7} "
      f"{'%shapes':>7} {'cpu:GF/s':>8} {'%SGEMM':>7} {'%shapes':>7} {'load':>5}")
summ = []
for key in sorted(cfg):
    model, tool, impl, dt, t = key
    rs = cfg[key]
    ep = med(rs, "epoch_s")
    ec = [float(x["epoch_cpu_s"]) for x in rs.values() if x.get("epoch_cpu_s")]
    ecm = S.median(ec) if ec else None
    gf = F / ep / 1e9 if model == "gm" else float("nan")
    gfc = F / ecm / 1e9 if model == "gm" and ecm else None
    sq, sqc = blas.get((dt, "square", t)), blas_cpu.get((dt, "square", t))
    shp, shpc = shapes_rate(blas, dt, t), shapes_rate(blas_cpu, dt, t)
    errs = [float(x["test_error"]) for x in rs.values()]
    row = dict(model=model, tool=tool, impl=impl, dtype=dt, threads=t, rounds=len(rs),
               epoch_s=f"{ep:.4f}", proc_wall_s=f"{med(rs, 'proc_wall_s'):.3f}",
               proc_cpu_s=f"{med(rs, 'proc_cpu_s'):.3f}", epoch_cpu_s=f"{ecm:.3f}" if ecm else "",
               test_error_median=f"{S.median(errs):.4f}",
               gemm_gflops=f"{gf:.2f}" if model == "gm" else "",
               pct_sgemm_2048=f"{100 * gf / sq:.1f}" if sq and model == "gm" else "",
               pct_sgemm_shapes=f"{100 * gf / shp:.1f}" if shp and model == "gm" else "",
               gemm_gflops_cpu=f"{gfc:.2f}" if gfc else "",
               pct_sgemm_2048_cpu=f"{100 * gfc / sqc:.1f}" if gfc and sqc else "",
               pct_sgemm_shapes_cpu=f"{100 * gfc / shpc:.1f}" if gfc and shpc else "",
               load1_mean=f"{S.mean(float(x['load1']) for x in rs.values()):.2f}")
    summ.append(row)
    print(f"{model:5} {tool:8} {impl:8} {t:3d} {ep:8.3f} {row['epoch_cpu_s'] or '-':>7} "
          f"{float(row['proc_wall_s']):9.2f} {float(row['proc_cpu_s']):8.2f} "
          f"{100 * S.median(errs):7.2f}% {row['gemm_gflops'] or '-':>8} "
          f"{row['pct_sgemm_2048'] or '-':>7} {row['pct_sgemm_shapes'] or '-':>7} "
          f"{row['gemm_gflops_cpu'] or '-':>8} {row['pct_sgemm_2048_cpu'] or '-':>7} "
          f"{row['pct_sgemm_shapes_cpu'] or '-':>7} {row['load1_mean']:>5}")
# like with like: gmflow vs each PyTorch setting, same model and thread count, per round
pairs = []
print("\nlike with like (same model, same thread count), ratio gmflow / PyTorch, median (range) "
      "over the rounds:")
for key, rs in sorted(cfg.items()):
    model, tool, impl, dt, t = key
    if tool != "pytorch":
        continue
    g = cfg.get((model, "gmflow", "native", dt, t), {})
    rnds = sorted(set(g) & set(rs))
    if not rnds:
        continue
    rec = dict(model=model, threads=t, torch_impl=impl, rounds=len(rnds))
    txt = []
    for col, name in (("epoch_s", "epoch"), ("epoch_cpu_s", "epoch cpu"),
                      ("proc_wall_s", "process wall"), ("proc_cpu_s", "process cpu")):
        q = [float(g[r][col]) / float(rs[r][col]) for r in rnds if g[r][col] and rs[r][col]]
        if not q:
            continue
        rec[f"ratio_{col}_median"] = f"{S.median(q):.3f}"
        rec[f"ratio_{col}_min"], rec[f"ratio_{col}_max"] = f"{min(q):.3f}", f"{max(q):.3f}"
        txt.append(f"{name} {S.median(q):.3f} ({min(q):.3f}-{max(q):.3f})")
    ge = S.median(float(g[r]["test_error"]) for r in rnds)
    te = S.median(float(rs[r]["test_error"]) for r in rnds)
    rec["gmflow_test_error"], rec["torch_test_error"] = f"{ge:.4f}", f"{te:.4f}"
    pairs.append(rec)
    print(f"  {model} {t}t vs torch {impl}: " + ", ".join(txt) +
          f"; test error {100 * ge:.2f}% vs {100 * te:.2f}%")
best_lines = []
for model in sorted({k[0] for k in cfg}):
    gb = [(med(v, "epoch_s"), k) for k, v in cfg.items() if k[0] == model and k[1] == "gmflow"]
    tb = [(med(v, "epoch_s"), k) for k, v in cfg.items() if k[0] == model and k[1] == "pytorch"]
    if gb and tb:
        (ge, gk), (te, tk) = min(gb), min(tb)
        best_lines.append(f"# best-vs-best ({model}; NOT like with like when the thread counts "
                          f"differ): gmflow {gk[4]}t {ge:.3f} s / PyTorch {tk[2]} {tk[4]}t {te:.3f} s "
                          f"= {ge / te:.3f} (ratio of medians)")
print("\n" + "\n".join(lines + best_lines))
header = open(out + "/header.txt").read()
for name, rows in (("summary.csv", summ), ("pairs.csv", pairs)):
    if rows:
        with open(f"{out}/{name}", "w", newline="") as f:
            f.write(header + "\n".join(lines + best_lines) + "\n")
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            w.writeheader()
            w.writerows(rows)
# runs.csv gets the same header
body = open(out + "/runs.csv").read()
with open(out + "/runs.csv", "w") as f:
    f.write(header + "\n".join(lines) + "\n" + body)
print(f"\nwrote {out}/summary.csv, {out}/pairs.csv, {out}/runs.csv (runs/ has each run's log)")
EOF
