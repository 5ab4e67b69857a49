#!/bin/bash
# Release build BUILD: per round, best-of-3-epochs wall of: K=20 1 thread (core 1), K=10 1 thread
# (core 1), two K=10 1-thread processes at once (cores 0 and 1; the slower of the pair), K=20 2
# threads (cores 0,1).  Bounds: a perfect components split can reach at most K20/K10pair.
B=$1/bench/train_phases; R=${2:-6}
cd /work/wt/s24-why
best() { awk '/epoch=/ {for(i=1;i<=NF;i++) if($i~/^wall=/){split($i,w,"="); if(m==""||w[2]<m)m=w[2]}} END{print m}' "$1"; }
for r in $(seq 1 $R); do
  $B --K 1 --epochs 1 --no-eval >/dev/null 2>&1   # warm the page cache
  taskset -c 1 $B --epochs 3 --no-eval >/tmp/why-b20 2>&1
  taskset -c 1 $B --K 10 --epochs 3 --no-eval >/tmp/why-b10 2>&1
  taskset -c 0 $B --K 10 --epochs 3 --no-eval >/tmp/why-bp0 2>&1 & taskset -c 1 $B --K 10 --epochs 3 --no-eval >/tmp/why-bp1 2>&1; wait
  taskset -c 0,1 $B --threads 2 --epochs 3 --no-eval >/tmp/why-b2 2>&1
  a=$(best /tmp/why-b20); b=$(best /tmp/why-b10); p0=$(best /tmp/why-bp0); p1=$(best /tmp/why-bp1); t2=$(best /tmp/why-b2)
  echo "round $r $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg) K20_1t $a K10_1t $b K10_pair $p0 $p1 K20_2t $t2" | awk '{printf "%s\n",$0}'
done
