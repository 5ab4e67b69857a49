#!/bin/bash
P=/tmp/why-exp/bench/train_phases
cd /work/wt/s24-why
summ() { awk -v L="$2" '/^prof/ {split($2,a,"=");split($3,b,"=");split($5,c,"=");ms[a[2]","b[2]]=c[2]}
       /epoch=/ {for(i=1;i<=NF;i++) if($i~/^wall=/){split($i,w,"=");ws=ws" "w[2]}}
       END {printf "%s ph12 %s/%s ph8 %s/%s ph13 %s/%s ph3 %s/%s walls%s\n",L,ms["0,12"],ms["1,12"],ms["0,8"],ms["1,8"],ms["0,13"],ms["1,13"],ms["0,3"],ms["1,3"],ws}' "$1"; }
for r in 1 2 3; do
  echo "# round $r $(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg)"
  for dl in "" "1 150" "0 150"; do
    GMF_PROF_DELAY="$dl" taskset -c 0,1 $P --threads 2 --epochs 3 --no-eval >/tmp/why-d 2>&1; summ /tmp/why-d "delay[$dl]"
  done
done
