#!/bin/bash
# interrupts (TLB shootdowns, function calls, reschedules) during one run
irq() { awk '/TLB:|CAL:|RES:|LOC:/ {printf "%s %d %d  ", $1, $2, $3}' /proc/interrupts; echo; }
for args in "--K 10 --threads 1" "--threads 2"; do
  cs=$([ "$args" = "--threads 2" ] && echo 0,1 || echo 1)
  irq; perf stat -e page-faults,context-switches,cpu-migrations taskset -c $cs build/bench/train_phases $args --epochs 3 --no-eval 2>&1 | grep -E 'wall|faults|switches|migrations'; irq
done
