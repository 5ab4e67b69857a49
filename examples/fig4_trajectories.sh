#!/usr/bin/env bash
# fig4_trajectories.sh -- Figure 4: K = 5 GM layer trained for 200 epochs from gamma = 1/2 and
# gamma = 1/256, snapshots every epoch; the components' means and covariance ellipses
# (marginalized over beta) projected on the top-2 principal subspace of the final mixture
# (`gmflow project`, LAPACK dsyevr), and the neurons of a width-K FC network initialized at
# beta_k = mu_k, omega_k = U_k mu_k + v_k (the same seed, so the same initial mixture) and
# trained by the same SGD (lr 0.1), projected on the same plane.  MNIST and Fashion-MNIST.
#
#   full:   200 epochs, seed 1
#   quick:  4 epochs, 10000 training / 2000 test images
#
# Output: <results>/fig4/<mnist|fashion>/gamma<0.5|0.00390625>/{gm.csv, fc.csv,
#         trajectory.csv, pcs.csv}  (epochs.csv of both runs; the projection of both)
source "$(dirname "$0")/lib.sh"
parse_common "$@"
if [ "$QUICK" = 1 ]; then
    EPOCHS=${EPOCHS:-4} LIMITS="--train-limit 10000 --test-limit 2000"
else
    EPOCHS=${EPOCHS:-200} LIMITS=""
fi
GAMMAS="0.5 0.00390625"
begin_fig fig4
for ds in mnist fashion; do
    for g in $GAMMAS; do
        common=(--K 5 --gamma "$g" --epochs "$EPOCHS" --seed 1 --snapshot-every 1
            --data "$(ds_dir $ds)" $LIMITS)
        job "$FIG_RES/$ds/gamma$g/gm" -- train --model gm "${common[@]}"
        job "$FIG_RES/$ds/gamma$g/fc" -- train --model fc --fc-init means --width 5 "${common[@]}"
    done
done
run_jobs
for ds in mnist fashion; do
    for g in $GAMMAS; do
        dir=$FIG_RES/$ds/gamma$g
        [ -f "$dir/trajectory.csv" ] && continue
        "$GMFLOW" project --gm "$FIG_WORK/$ds/gamma$g/gm/snapshots" \
            --fc "$FIG_WORK/$ds/gamma$g/fc/snapshots" --out "$dir"
        echo "0,0,\"gmflow project --gm $FIG_WORK/$ds/gamma$g/gm/snapshots --fc $FIG_WORK/$ds/gamma$g/fc/snapshots --out $dir\"" >>"$FIG_RES/commands.csv"
        rm -f "$dir/pcs.npy"
    done
done
