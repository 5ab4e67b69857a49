#!/bin/bash
# run_epoch_ab.sh -- two builds' 1-thread training epochs interleaved (A B A B ...), each round
# followed by the same core's SGEMM 2048^3 rate: the per-round speed ratio A / B and each
# build's share of that round's SGEMM rate (issue 14's target: the epoch at >= 75 % of it).
# The measurement behind docs/PERFORMANCE.md section 10.5.
#
# usage: bench/run_epoch_ab.sh [--rounds 6] [--epochs 3] [--cpu 1] [--data DIR] [--threads2]
#                               [--pair] BUILD_A BUILD_B
#   BUILD_A, BUILD_B  CMake build directories holding bench/train_phases (BUILD_B also
#                     bench/blas_peak)
#   --rounds   interleaved rounds (default 6)
#   --epochs   epochs per run; the run's best epoch (wall) is taken (default 3)
#   --cpu      the core every run is pinned to (default 1)
#   --data     the MNIST directory (default ../shared/data/mnist)
#   --threads2 also run both builds on 2 threads in every round (unpinned, after the 1-thread
#              runs) and report each build's speed-up, its 1-thread epoch over its 2-thread
#              epoch in the same round (issue 14's second target: >= 1.8x)
#   --pair     also run two 1-thread trainings of BUILD_B at once, pinned to cores 0 and 1, and
#              report the machine's ceiling for 2 threads: 2 x B's 1-thread epoch alone over the
#              slower of the pair's (what two cores give work that shares nothing)
# Per round it prints "round R A|B|A2|B2 best_epoch_wall S load L" and "round R sgemm G"; then the
# medians and ranges.  An epoch is F = 4 n d K (L + 2) = 4.14e10 flop (MNIST, K = 20, L = 9).
# Run on an otherwise idle machine; the load average is printed with every run.  Writes nothing.
set -euo pipefail
rounds=6 epochs=3 cpu=1 data=../shared/data/mnist two=0 pair=0
# usage [STATUS]: the usage lines of the header; on stdout for -h (status 0), else on stderr
usage() {
    if [ "${1:-2}" = 0 ]; then
        sed -n '7,20p' "$0" | sed 's/^# \{0,1\}//'
    else
        sed -n '7,20p' "$0" | sed 's/^# \{0,1\}//' >&2
    fi
    exit "${1:-2}"
}
args=()
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) rounds=${2:?--rounds needs a value}; shift 2 ;;
    --epochs) epochs=${2:?--epochs needs a value}; shift 2 ;;
    --cpu) cpu=${2:?--cpu needs a value}; shift 2 ;;
    --data) data=${2:?--data needs a value}; shift 2 ;;
    --threads2) two=1; shift ;;
    --pair) pair=1; shift ;;
    -h | --help) usage 0 ;;
    -*) echo "run_epoch_ab.sh: unknown option $1" >&2; usage ;;
    *) args+=("$1"); shift ;;
    esac
done
[ ${#args[@]} -eq 2 ] || { echo "run_epoch_ab.sh: give two build directories" >&2; usage; }
A=${args[0]} B=${args[1]}
for f in "$A/bench/train_phases" "$B/bench/train_phases" "$B/bench/blas_peak"; do
    [ -x "$f" ] || { echo "run_epoch_ab.sh: $f: not found or not executable" >&2; exit 1; }
done
[ -d "$data" ] || { echo "run_epoch_ab.sh: $data: no such directory (--data)" >&2; exit 1; }
echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-); core $cpu; A=$A B=$B"
out=$(mktemp)
p0=$(mktemp) p1=$(mktemp)
trap 'rm -f "$out" "$p0" "$p1"' EXIT
best() { sed -n 's/.*epoch=.* wall=\([0-9.]*\).*/\1/p' "$1" | sort -n | head -1; }
for r in $(seq "$rounds"); do
    for side in A B; do
        dir=$A
        [ $side = B ] && dir=$B
        t=$(taskset -c "$cpu" "$dir/bench/train_phases" --data "$data" --epochs "$epochs" 2>&1 |
            sed -n 's/.*epoch=.* wall=\([0-9.]*\).*/\1/p' | sort -n | head -1)
        [ -n "$t" ] || { echo "run_epoch_ab.sh: $dir/bench/train_phases printed no epoch" >&2; exit 1; }
        echo "round $r $side best_epoch_wall $t load $(cut -d' ' -f1 /proc/loadavg)" | tee -a "$out"
    done
    for side in A B; do
        [ "$two" = 1 ] || break
        dir=$A
        [ $side = B ] && dir=$B
        t=$("$dir/bench/train_phases" --data "$data" --epochs "$epochs" --threads 2 2>&1 |
            sed -n 's/.*epoch=.* wall=\([0-9.]*\).*/\1/p' | sort -n | head -1)
        [ -n "$t" ] || { echo "run_epoch_ab.sh: $dir/bench/train_phases printed no epoch" >&2; exit 1; }
        echo "round $r ${side}2 best_epoch_wall $t load $(cut -d' ' -f1 /proc/loadavg)" | tee -a "$out"
    done
    if [ "$pair" = 1 ]; then
        taskset -c 0 "$B/bench/train_phases" --data "$data" --epochs "$epochs" > "$p0" 2>&1 &
        pid=$!
        taskset -c 1 "$B/bench/train_phases" --data "$data" --epochs "$epochs" > "$p1" 2>&1 || true
        wait "$pid" || true
        t0=$(best "$p0") t1=$(best "$p1")
        [ -n "$t0" ] && [ -n "$t1" ] || { echo "run_epoch_ab.sh: a paired run printed no epoch" >&2; exit 1; }
        echo "round $r Bpair best_epoch_wall $t0 $t1 load $(cut -d' ' -f1 /proc/loadavg)" | tee -a "$out"
    fi
    g=$(taskset -c "$cpu" "$B/bench/blas_peak" --threads 1 2>&1 |
        sed -n 's/.*dtype=float32 shape=square:2048x2048x2048 .*gflops=\([0-9.]*\).*/\1/p')
    echo "round $r sgemm $g" | tee -a "$out"
done
awk -v F=4.14e10 '
    $1 == "round" && $3 == "A" { a[$2] = $5 }
    $1 == "round" && $3 == "B" { b[$2] = $5 }
    $1 == "round" && $3 == "sgemm" { s[$2] = $4 }
    $1 == "round" && $3 == "A2" { a2[$2] = $5 }
    $1 == "round" && $3 == "B2" { b2[$2] = $5 }
    $1 == "round" && $3 == "Bpair" { bp[$2] = $5 > $6 ? $5 : $6 }
    function med(v, n,    i, j, x) {
        for (i = 2; i <= n; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
        return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    END {
        n = 0
        for (r in a) {
            n++; ra[n] = a[r] / b[r]; sa[n] = F / a[r] / 1e9 / s[r]; sb[n] = F / b[r] / 1e9 / s[r]
            ea[n] = a[r]; eb[n] = b[r]
            if (r in a2) { n2++; pa[n2] = a[r] / a2[r]; pb[n2] = b[r] / b2[r] }
            if (r in bp) { n3++; pc[n3] = 2 * b[r] / bp[r] }
        }
        mr = med(ra, n); ma = med(ea, n); mb = med(eb, n); msa = med(sa, n); msb = med(sb, n)
        printf "A/B epoch ratio: median %.3f (%.3f-%.3f) over %d rounds\n", mr, ra[1], ra[n], n
        printf "epoch median: A %.4f s, B %.4f s\n", ma, mb
        printf "share of the round'"'"'s SGEMM: A median %.1f %% (%.1f-%.1f), B median %.1f %% (%.1f-%.1f)\n",
            100 * msa, 100 * sa[1], 100 * sa[n], 100 * msb, 100 * sb[1], 100 * sb[n]
        if (n2) {
            mpa = med(pa, n2); mpb = med(pb, n2)
            printf "2-thread speed-up (1-thread / 2-thread epoch, same round): A median %.3f (%.3f-%.3f), B median %.3f (%.3f-%.3f)\n",
                mpa, pa[1], pa[n2], mpb, pb[1], pb[n2]
        }
        if (n3) {
            m3 = med(pc, n3)
            printf "2-thread ceiling (2 x B alone / the slower of two B runs at once, same round): median %.3f (%.3f-%.3f)\n",
                m3, pc[1], pc[n3]
        }
    }' "$out"
