#!/usr/bin/env bash
# fig2_test_error.sh -- Figure 2: one GM layer, K = 5, 10, 20, on MNIST and Fashion-MNIST,
# test error vs epoch over independent trials (seeds 1..N).  Paper's setting: batch 64,
# lr 0.1 (lr 1 for sigma), gamma 1/2.
#
#   full:   5 trials, 200 epochs, all 60000 training images, the 10000 test images
#   quick:  2 trials, 5 epochs, K = 5 and 10, 10000 training / 2000 test images
#
# Output: <results>/fig2/<mnist|fashion>/K<K>/seed<s>.csv (gmflow train's epochs.csv).
source "$(dirname "$0")/lib.sh"
parse_common "$@"
if [ "$QUICK" = 1 ]; then
    TRIALS=${TRIALS:-2} KS="5 10"
else
    TRIALS=${TRIALS:-5} KS="5 10 20"
fi
EPOCHS=${EPOCHS:-$(fig2_epochs)} LIMITS=$(fig2_limits)
begin_fig fig2
for ds in mnist fashion; do
    for K in $KS; do
        for s in $(seq 1 "$TRIALS"); do
            job "$FIG_RES/$ds/K$K/seed$s" -- train --model gm --K "$K" --epochs "$EPOCHS" \
                --seed "$s" --data "$(ds_dir $ds)" $LIMITS
        done
    done
done
run_jobs
