#!/bin/bash
# two independent 1-thread trainings at once (cores 0 and 1) vs one alone: the machine's ceiling for 2 threads
TP=${1:-/tmp/base-bd04da4/build/bench/train_phases}
D=/work/shared/data/mnist
best() { grep "epoch=" "$1" | sed 's/.*wall=\([0-9.]*\).*/\1/' | sort -n | head -1; }
cd /work/main
for r in 1 2 3 4 5 6; do
  taskset -c 1 $TP --epochs 3 --no-eval --threads 1 > /tmp/ceil/a1 2>/dev/null
  taskset -c 0 $TP --epochs 3 --no-eval --threads 1 > /tmp/ceil/a0 2>/dev/null
  taskset -c 0 $TP --epochs 3 --no-eval --threads 1 > /tmp/ceil/c0 2>/dev/null & p=$!
  taskset -c 1 $TP --epochs 3 --no-eval --threads 1 > /tmp/ceil/c1 2>/dev/null
  wait $p
  taskset -c 0,1 $TP --epochs 3 --no-eval --threads 2 > /tmp/ceil/t2 2>/dev/null
  echo "round $r alone_cpu1 $(best /tmp/ceil/a1) alone_cpu0 $(best /tmp/ceil/a0) together_cpu0 $(best /tmp/ceil/c0) together_cpu1 $(best /tmp/ceil/c1) two_threads $(best /tmp/ceil/t2) load $(cut -d' ' -f1 /proc/loadavg)"
done
