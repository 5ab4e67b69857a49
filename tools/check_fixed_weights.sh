#!/usr/bin/env bash
# check_fixed_weights.sh -- fixed-weight training must be bitwise what it was before learned
# mixture weights existed (docs/TRAINING.md, "Learned mixture weights").
#   usage: tools/check_fixed_weights.sh [-h | --help] OLD_GMFLOW NEW_GMFLOW [DATA_DIR]
#   (DATA_DIR default ../shared/data/mnist)
#
# OLD_GMFLOW: a gmflow binary built from a commit before the change (e.g. bbf0027); NEW_GMFLOW:
# this tree's.  Trains each configuration below for 2 epochs on a 1000-image MNIST subset with
# both and requires byte-identical checkpoints (every parameter, float64) and identical losses
# and errors in epochs.csv.  Exit 0 when all are identical.
set -u
# me, usage, usage_error, positional_args: the scripts' convention
# shellcheck source-path=SCRIPTDIR source=scriptargs.sh
. "$(dirname "$0")/scriptargs.sh"
positional_args "$@"
{ [ ${#pos[@]} -ge 2 ] && [ ${#pos[@]} -le 3 ]; } ||
    usage_error "expected OLD_GMFLOW NEW_GMFLOW [DATA_DIR], got ${#pos[@]} argument(s)"
OLD=${pos[0]} NEW=${pos[1]} DATA=${pos[2]:-../shared/data/mnist}
for b in "$OLD" "$NEW"; do
    command -v "$b" >/dev/null || { echo "$me: $b: not found or not executable" >&2; exit 1; }
done
T=$(mktemp -d /tmp/gmflow_fixed_weights.XXXXXX)
trap 'rm -rf "$T"' EXIT
C=(train --epochs 2 --train-limit 1000 --test-limit 200 --quiet --data "$DATA")
fail=0
i=0
while read -r cfg; do
    i=$((i + 1))
    for b in old new; do
        bin=$OLD
        [ $b = new ] && bin=$NEW
        # shellcheck disable=SC2086
        "$bin" "${C[@]}" $cfg --out "$T/${b}_$i" > /dev/null 2>&1 || { echo "FAIL: $b run: $cfg"; fail=1; }
    done
    if cmp -s "$T/old_$i/checkpoint.gmck" "$T/new_$i/checkpoint.gmck" &&
        cmp -s <(cut -d, -f1-4 "$T/old_$i/epochs.csv") <(cut -d, -f1-4 "$T/new_$i/epochs.csv"); then
        echo "identical: $cfg"
    else
        echo "DIFFER:    $cfg"
        fail=1
    fi
done << 'CFG'
--components 5
--components 5 --threads 2
--components 5 --precision 64
--components 5 --full-batch
--components 5 --fixed-beta
--model gm-full --components 2 --lr-sigma 0.01 --epochs 1
--model gm-stack --components 3 --mid 20
--model fc --width 50
CFG
exit $fail
