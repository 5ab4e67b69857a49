#!/usr/bin/env bash
# fig5_fixed_beta.sh -- Figure 5: training with the marginal over beta fixed at its
# initialization (--fixed-beta: learning rates of mu and sigma zero; only U and v move) against
# training everything, K = 10, MNIST and Fashion-MNIST, over independent trials.  The
# trained-beta curves are Figure 2's K = 10 runs (same options and seeds; queued here under
# Figure 2's name when it has not run yet).
#
#   full:   5 trials, 50 epochs
#   quick:  2 trials, 5 epochs, 10000 training / 2000 test images
#
# Output: <results>/fig5/<mnist|fashion>/fixed/seed<s>.csv (trained: <results>/fig2/*/K10/)
source "$(dirname "$0")/lib.sh"
parse_common "$@"
if [ "$QUICK" = 1 ]; then
    TRIALS=${TRIALS:-2} EPOCHS=${EPOCHS:-5} LIMITS="--train-limit 10000 --test-limit 2000"
else
    TRIALS=${TRIALS:-5} EPOCHS=${EPOCHS:-50} LIMITS=""
fi
begin_fig fig5
for ds in mnist fashion; do
    for s in $(seq 1 "$TRIALS"); do
        job "$FIG_RES/$ds/fixed/seed$s" -- train --model gm --K 10 --epochs "$EPOCHS" \
            --seed "$s" --data "$(ds_dir $ds)" $LIMITS --fixed-beta
        job "$RESULTS/fig2/$ds/K10/seed$s" -- train --model gm --K 10 --epochs "$(fig2_epochs)" \
            --seed "$s" --data "$(ds_dir $ds)" $(fig2_limits)
    done
done
run_jobs
