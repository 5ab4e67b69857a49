#!/usr/bin/env bash
# run_lowrank_bench.sh -- seconds per MNIST training epoch of the low-rank covariance GM layer
# (--cov lowrank --rank r) against the diagonal layer, side by side: one thread pinned to one
# CPU, the configurations interleaved within each repeat (diag r1 r2 ... diag r1 r2 ...), the
# median per configuration and the median of the per-repeat ratios to the diagonal run of the
# same repeat.  K = 20, batch 64, float32, the paper's settings otherwise; the training time of
# the epoch is epochs.csv's "seconds" (no data loading, no evaluation).
#   usage: bench/run_lowrank_bench.sh [gmflow] [repeats] [cpu] [ranks...]
#   (defaults: build/gmflow 5 1 "1 2 4 8"); writes bench/results/lowrank_bench_<date>.csv
set -eu
G=${1:-build/gmflow}
N=${2:-5}
CPU=${3:-1}
shift $(( $# > 3 ? 3 : $# ))
RANKS=${*:-1 2 4 8}
T=$(mktemp -d "${TMPDIR:-/tmp}/gmflow_lowrank_bench.XXXXXX")
trap 'rm -rf "$T"' EXIT
mkdir -p bench/results
OUT=bench/results/lowrank_bench_$(date -u +%Y%m%d-%H%M%S).csv
echo "repeat,config,rank,seconds,load1" > "$OUT"
export OPENBLAS_NUM_THREADS=1
for rep in $(seq 1 "$N"); do
    for cfg in diag $RANKS; do
        if [ "$cfg" = diag ]; then A=(); r=0; else A=(--cov lowrank --rank "$cfg"); r=$cfg; fi
        taskset -c "$CPU" "$G" train -q --epochs 1 --test-limit 100 "${A[@]}" --out "$T/o" > /dev/null
        s=$(tail -1 "$T/o/epochs.csv" | cut -d, -f5)
        echo "$rep,$cfg,$r,$s,$(cut -d' ' -f1 /proc/loadavg)" >> "$OUT"
    done
done
/usr/bin/python3 - "$OUT" << 'PY'
import csv, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1])))
cfgs = list(dict.fromkeys(r["config"] for r in rows))
t = {(r["repeat"], r["config"]): float(r["seconds"]) for r in rows}
reps = sorted({r["repeat"] for r in rows})
print("config  median s/epoch  ratio to diag (median of per-repeat ratios, min-max)")
for c in cfgs:
    s = [t[(p, c)] for p in reps]
    q = [t[(p, c)] / t[(p, "diag")] for p in reps]
    print(f"{c:>6}  {st.median(s):8.3f}        {st.median(q):.2f} ({min(q):.2f}-{max(q):.2f})")
print("load average during the runs:", min(float(r["load1"]) for r in rows), "-",
      max(float(r["load1"]) for r in rows), "; csv:", sys.argv[1])
PY
