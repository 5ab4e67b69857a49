#!/usr/bin/env bash
# fig6_monte_carlo.sh -- Figure 6: train a K = 20 GM layer for 20 epochs, then draw m neurons
# (omega, beta) from the trained mixture, form the fully connected network of width m (mean-field
# scaling 1/m) and evaluate it without training; test error vs m, one draw per trial and m, over
# independent trials (each trial its own trained layer).  MNIST and Fashion-MNIST.
#
#   full:   5 trials, 20 epochs, m = 10, 30, 100, 300, 1000, 3000, 10000
#   quick:  2 trials, 2 epochs, m = 10, 100, 1000, 10000 training / 2000 test images
#
# Output: <results>/fig6/<mnist|fashion>/seed<s>.csv (training) and seed<s>_mc.csv
#         (m,repeat,test_loss,test_error; the GM layer's own error is the last row of seed<s>.csv)
source "$(dirname "$0")/lib.sh"
parse_common "$@"
if [ "$QUICK" = 1 ]; then
    TRIALS=${TRIALS:-2} EPOCHS=${EPOCHS:-2} MS=10,100,1000 LIMITS="--train-limit 10000 --test-limit 2000"
else
    TRIALS=${TRIALS:-5} EPOCHS=${EPOCHS:-20} MS=10,30,100,300,1000,3000,10000 LIMITS=""
fi
begin_fig fig6
for ds in mnist fashion; do
    for s in $(seq 1 "$TRIALS"); do
        job "$FIG_RES/$ds/seed$s" -- train --model gm --K 20 --epochs "$EPOCHS" --seed "$s" \
            --mc-neurons "$MS" --mc-repeats 1 --data "$(ds_dir $ds)" $LIMITS
    done
done
run_jobs
