#!/usr/bin/env bash
# flow_dynamics.sh -- the exact flow on a regression toy: the Gaussian-mixture (Bures-Wasserstein)
# flow over (mu_k, Sigma_k) and, integrated independently from the same initial state, the
# Euclidean flow over (mu_k, C_k) at K times the time (Theorem 1); loss vs time and the Theorem 1
# discrepancy over time (the notebook computes it from the saved trajectories); and full-batch
# gradient descent against the flow as the step eta halves (validate/gd_to_flow).
#
#   full:   toy n = 500, d = 5, teacher width 4, K = 4, t in [0, 20], 101 output times
#   quick:  toy n = 200, d = 3, K = 3, t in [0, 5], 51 output times
#
# Output: <results>/flow/{bw,euclid}/{trajectory.csv, t.npy, mu.npy, Sigma.npy, run.json},
#         <results>/flow/gd_to_flow.csv (eta,steps,err_euclid,err_Sigma)
source "$(dirname "$0")/lib.sh"
parse_common "$@"
if [ "$QUICK" = 1 ]; then
    TOY=(--n 200 --d 3 -K 3) T=5 NOUT=51 GD=(--n 150 --d 3 --K 3)
    KF=3
else
    TOY=(--n 500 --d 5 --width 4 -K 4) T=20 NOUT=101 GD=(--n 300 --d 5 --K 4)
    KF=4
fi
begin_fig flow
rm -f "$JOBLIST"
TE=$(awk -v t="$T" -v k="$KF" 'BEGIN { print t * k }')
run() { # name -- args...
    local name=$1
    shift 2
    local t0 t1
    t0=$(date +%s.%N)
    "$GMFLOW" flow "${TOY[@]}" "$@" --rtol 1e-11 --atol 1e-13 --n-out "$NOUT" \
        --out "$FIG_RES/$name" --quiet
    t1=$(date +%s.%N)
    printf '0,%.2f,"gmflow flow %s %s --rtol 1e-11 --atol 1e-13 --n-out %s --out %s"\n' \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "${TOY[*]}" "$*" "$NOUT" \
        "${FIG_RES#$EX_ROOT/}/$name" >>"$FIG_RES/commands.csv"
}
run bw -- --form bw --t-end "$T"
run euclid -- --form euclid --t-end "$TE"
rm -f "$FIG_RES"/*/state.json "$FIG_RES"/*/C.npy
GD_BIN=$(dirname "$GMFLOW")/validate/gd_to_flow
"$GD_BIN" "${GD[@]}" | tee "$FIG_WORK/gd_to_flow.log"
{
    echo "eta,steps,err_euclid,err_Sigma"
    awk '$1 ~ /^[0-9.]+e[-+][0-9]+$/ && NF == 4 { print $1 "," $2 "," $3 "," $4 }' "$FIG_WORK/gd_to_flow.log"
} >"$FIG_RES/gd_to_flow.csv.tmp" && mv "$FIG_RES/gd_to_flow.csv.tmp" "$FIG_RES/gd_to_flow.csv"
echo "0,0,\"$GD_BIN ${GD[*]}\"" >>"$FIG_RES/commands.csv"
echo "flow: results in $FIG_RES" >&2
