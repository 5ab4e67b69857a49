#!/bin/bash
# alternated: K=10 alone (core 1, core 0), K=10 pair (cores 0 and 1), K=20 2 threads; prof build
P=${1:-/tmp/why-prof}/bench/train_phases
R=${2:-3}
cd /work/wt/s24-why
summ() { # file label
  awk -v L="$2" '/^prof/ {split($2,a,"=");split($3,b,"=");split($5,c,"=");t=a[2];p=b[2];ms[t","p]=c[2]}
       /epoch=/ {for(i=1;i<=NF;i++) if($i~/^wall=/){split($i,w,"=");ws=ws" "w[2]}}
       END {printf "%s ph12 %s/%s ph8 %s/%s ph13 %s/%s ph7 %s/%s walls%s\n",L,ms["0,12"],ms["1,12"],ms["0,8"],ms["1,8"],ms["0,13"],ms["1,13"],ms["0,7"],ms["1,7"],ws}' "$1"
}
for r in $(seq 1 $R); do
  echo "# round $r $(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg)"
  taskset -c 1 $P --K 10 --epochs 3 --no-eval >/tmp/why-a1 2>&1; summ /tmp/why-a1 "K10-alone-cpu1"
  taskset -c 0 $P --K 10 --epochs 3 --no-eval >/tmp/why-a0 2>&1; summ /tmp/why-a0 "K10-alone-cpu0"
  taskset -c 0 $P --K 10 --epochs 3 --no-eval >/tmp/why-p0 2>&1 & taskset -c 1 $P --K 10 --epochs 3 --no-eval >/tmp/why-p1 2>&1; wait
  summ /tmp/why-p0 "K10-pair-cpu0"; summ /tmp/why-p1 "K10-pair-cpu1"
  taskset -c 0,1 $P --threads 2 --epochs 3 --no-eval >/tmp/why-t2 2>&1; summ /tmp/why-t2 "K20-2thr"
  taskset -c 1 $P --epochs 3 --no-eval >/tmp/why-k20 2>&1; summ /tmp/why-k20 "K20-1thr-cpu1"
done
