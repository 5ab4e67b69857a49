#!/usr/bin/env bash
# fig3_fc_baseline.sh -- Figure 3: the two-layer fully connected ReLU network of width 1000 with
# PyTorch's default init (Kaiming uniform, nn.Linear scaling) and with neurons drawn from the
# initial K = 20 Gaussian mixture of the GM layer ("matching", mean-field scaling 1/m); test
# error vs epoch over independent trials, MNIST and Fashion-MNIST.  SGD, batch 64, lr 0.1.
#
#   full:   5 trials, 20 epochs
#   quick:  2 trials, 2 epochs, width 200, 10000 training / 2000 test images
#
# Output: <results>/fig3/<mnist|fashion>/<kaiming|matching>/seed<s>.csv
source "$(dirname "$0")/lib.sh"
parse_common "$@"
if [ "$QUICK" = 1 ]; then
    TRIALS=${TRIALS:-2} EPOCHS=${EPOCHS:-2} WIDTH=200 LIMITS="--train-limit 10000 --test-limit 2000"
else
    TRIALS=${TRIALS:-5} EPOCHS=${EPOCHS:-20} WIDTH=1000 LIMITS=""
fi
begin_fig fig3
for ds in mnist fashion; do
    for init in kaiming matching; do
        for s in $(seq 1 "$TRIALS"); do
            job "$FIG_RES/$ds/$init/seed$s" -- train --model fc --width "$WIDTH" --fc-init "$init" \
                --K 20 --epochs "$EPOCHS" --seed "$s" --data "$(ds_dir $ds)" $LIMITS
        done
    done
done
run_jobs
