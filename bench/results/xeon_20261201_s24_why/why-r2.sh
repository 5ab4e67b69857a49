#!/bin/bash
awk '/ A2 best/ {a[$2]=$5} / B2 best/ {b[$2]=$5} END {for (r in a) printf "%.4f\n", a[r]/b[r]}' "$1" | sort -n | awk '{v[NR]=$1; if ($1>1) f++} END {n=NR; m=(n%2? v[(n+1)/2] : (v[n/2]+v[n/2+1])/2); printf "A2/B2 median %.3f (%.3f-%.3f), B faster in %d of %d\n", m, v[1], v[n], f, n}'
