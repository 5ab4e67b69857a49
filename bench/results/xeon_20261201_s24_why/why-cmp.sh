#!/bin/bash
# alternate prof builds on 2 threads K=20: /tmp/why-cmp.sh R build1 build2 ...
R=$1; shift
cd /work/wt/s24-why
summ() { awk -v L="$2" '/^prof/ {split($2,a,"=");split($3,b,"=");split($5,c,"=");ms[a[2]","b[2]]=c[2]}
       /epoch=/ {for(i=1;i<=NF;i++) if($i~/^wall=/){split($i,w,"=");ws=ws" "w[2]} for(i=1;i<=NF;i++) if($i~/^loss=/) lo=lo" "$i}
       END {printf "%-14s ph12 %s/%s ph8 %s/%s ph7 %s/%s ph13 %s/%s ph3 %s/%s ph5 %s/%s ph6 %s/%s ph14 %s/%s walls%s\n",L,ms["0,12"],ms["1,12"],ms["0,8"],ms["1,8"],ms["0,7"],ms["1,7"],ms["0,13"],ms["1,13"],ms["0,3"],ms["1,3"],ms["0,5"],ms["1,5"],ms["0,6"],ms["1,6"],ms["0,14"],ms["1,14"],ws}' "$1"; }
for r in $(seq 1 $R); do
  echo "# round $r $(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg)"
  for b in "$@"; do
    taskset -c 0,1 $b/bench/train_phases --threads 2 --epochs 3 --no-eval >/tmp/why-c 2>&1; summ /tmp/why-c "$(basename $b)"
  done
done
