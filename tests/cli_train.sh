#!/usr/bin/env bash
# cli_train.sh -- `gmflow train` end to end: good runs (resume equals an uninterrupted run,
# snapshots, Monte Carlo reduction, eval-only) and bad input (usage errors, missing / truncated /
# corrupt IDX files, a count mismatch, a checkpoint from another model, a diverging learning
# rate).  Every bad case must exit non-zero with a message naming the file or the epoch and step,
# and leave the last good checkpoint byte-identical.
#
#   tests/cli_train.sh <path to gmflow> [build dir]      (run from the repository root)
set -u
. "$(dirname "${BASH_SOURCE[0]}")/cli_common.sh" || exit 1
cli_start cli_train "$@"
DATA=../shared/data/mnist
cli_require_dir "$DATA"

# expect STATUS PATTERN -- CMD...: exit status STATUS (or "nonzero") and stderr matching PATTERN
expect() {
    local want=$1 pat=$2
    shift 3
    "$@" >"$TMP/out" 2>"$TMP/err"
    local st=$?
    if [ "$want" = nonzero ]; then
        [ $st -ne 0 ] || { bad "expected failure: $*"; return; }
    else
        [ $st -eq "$want" ] || { bad "exit $st (want $want): $* -- $(tail -3 "$TMP/err")"; return; }
    fi
    if [ -n "$pat" ] && ! grep -Eq -- "$pat" "$TMP/err"; then
        bad "stderr of '$*' does not match /$pat/: $(cat "$TMP/err")"
        return
    fi
    ok
}

SMALL=(--train-limit 300 --test-limit 200 --K 3 --quiet)

# ---- good runs ------------------------------------------------------------------------------
expect 0 '' -- "$GMFLOW" train --help
expect 0 '' -- "$GMFLOW" train "${SMALL[@]}" --epochs 2 --out "$TMP/a" --snapshot-every 1
[ -f "$TMP/a/checkpoint.gmck" ] && ok || bad "no checkpoint written"
[ "$(wc -l <"$TMP/a/epochs.csv")" -eq 3 ] && ok || bad "epochs.csv should have header + 2 rows"
head -1 "$TMP/a/epochs.csv" | grep -q '^epoch,train_loss,test_loss,test_error,seconds' && ok ||
    bad "epochs.csv header"
if head -c 128 "$TMP/a/snapshots/epoch_0002_U.npy" | grep -aq "'shape': (3, 9, 784)"; then ok; else
    bad "snapshot U shape"; fi
[ -f "$TMP/a/snapshots/epoch_0000_sigma.npy" ] && ok || bad "no epoch-0 snapshot"

# resume: 1 epoch + resume to 2 equals 2 epochs straight, bitwise
expect 0 '' -- "$GMFLOW" train "${SMALL[@]}" --epochs 1 --out "$TMP/b"
expect 0 '' -- "$GMFLOW" train "${SMALL[@]}" --epochs 2 --out "$TMP/b" --resume
cmp -s "$TMP/a/checkpoint.gmck" "$TMP/b/checkpoint.gmck" && ok ||
    bad "resumed run differs from the uninterrupted one"
[ "$(wc -l <"$TMP/b/epochs.csv")" -eq 3 ] && ok || bad "resumed epochs.csv should have 2 rows"
cmp -s <(cut -d, -f1-4 "$TMP/a/epochs.csv") <(cut -d, -f1-4 "$TMP/b/epochs.csv") && ok ||
    bad "resumed epochs.csv differs from the uninterrupted one"

# eval-only and the Monte Carlo reduction
expect 0 '' -- "$GMFLOW" train "${SMALL[@]}" --out "$TMP/a" --eval-only --mc-neurons 50,500
grep -q 'test_error' "$TMP/out" && ok || bad "eval-only printed no test error"
[ "$(wc -l <"$TMP/a/mc.csv")" -eq 3 ] && ok || bad "mc.csv should have header + 2 rows"

# other models run
expect 0 '' -- "$GMFLOW" train --train-limit 200 --test-limit 100 --epochs 1 --quiet --model fc \
    --width 20 --out "$TMP/fc"
expect 0 '' -- "$GMFLOW" train --train-limit 200 --test-limit 100 --epochs 1 --quiet --model fc \
    --fc-init matching --width 20 --K 3 --out "$TMP/fcm"
expect 0 '' -- "$GMFLOW" train --train-limit 200 --test-limit 100 --epochs 1 --quiet \
    --model gm-stack --K 2 --mid 10 --out "$TMP/st"
expect 0 '' -- "$GMFLOW" train --train-limit 200 --test-limit 100 --epochs 1 --quiet \
    --full-batch --threads 2 --precision 64 --out "$TMP/fb"

# ---- usage errors (exit 2) --------------------------------------------------------------------
expect 2 'unknown option' -- "$GMFLOW" train --bogus
expect 2 'unknown model' -- "$GMFLOW" train --model bogus
expect 2 'cannot parse' -- "$GMFLOW" train --lr abc
expect 2 'must be >= 1' -- "$GMFLOW" train --K 0
expect 2 'exclude' -- "$GMFLOW" train --resume --eval-only
expect 2 'gm-stack only' -- "$GMFLOW" train --lr2-scale 3
expect 2 'lr2-scale must be >= 0' -- "$GMFLOW" train --model gm-stack --lr2-scale -1
expect 2 'needs --model gm' -- "$GMFLOW" train --model fc --mc-neurons 10

# ---- bad data ---------------------------------------------------------------------------------
mk() { # a data dir with the real test files as both train and test
    mkdir -p "$1"
    for p in train t10k; do
        cp "$DATA/t10k-images-idx3-ubyte.gz" "$1/$p-images-idx3-ubyte.gz"
        cp "$DATA/t10k-labels-idx1-ubyte.gz" "$1/$p-labels-idx1-ubyte.gz"
    done
}
expect 1 'not found' -- "$GMFLOW" train --data "$TMP/nodata" --out "$TMP/x"
mk "$TMP/trunc"
gzip -dc "$DATA/t10k-images-idx3-ubyte.gz" | head -c 100000 >"$TMP/trunc/train-images-idx3-ubyte"
rm "$TMP/trunc/train-images-idx3-ubyte.gz"
expect 1 'train-images-idx3-ubyte' -- "$GMFLOW" train --data "$TMP/trunc" --out "$TMP/x"
mk "$TMP/magic"
gzip -dc "$DATA/t10k-images-idx3-ubyte.gz" >"$TMP/magic/train-images-idx3-ubyte"
printf '\x00\x00\x08\x04' | dd of="$TMP/magic/train-images-idx3-ubyte" conv=notrunc 2>/dev/null
rm "$TMP/magic/train-images-idx3-ubyte.gz"
expect 1 'magic' -- "$GMFLOW" train --data "$TMP/magic" --out "$TMP/x"
mk "$TMP/count"
gzip -dc "$DATA/t10k-labels-idx1-ubyte.gz" | head -c 5008 >"$TMP/count/t10k-labels-idx1-ubyte"
printf '\x00\x00\x13\x88' | dd of="$TMP/count/t10k-labels-idx1-ubyte" bs=1 seek=4 conv=notrunc 2>/dev/null
rm "$TMP/count/t10k-labels-idx1-ubyte.gz"
expect 1 'labels' -- "$GMFLOW" train --data "$TMP/count" --out "$TMP/x"
mk "$TMP/gz"
head -c 50000 "$DATA/t10k-images-idx3-ubyte.gz" >"$TMP/gz/train-images-idx3-ubyte.gz"
expect 1 'train-images' -- "$GMFLOW" train --data "$TMP/gz" --out "$TMP/x"

# ---- checkpoints ------------------------------------------------------------------------------
expect 1 'cannot open' -- "$GMFLOW" train "${SMALL[@]}" --out "$TMP/none" --eval-only
cp "$TMP/a/checkpoint.gmck" "$TMP/keep.gmck"
expect 1 "holds model 'gm d=784 L=9 K=3'" -- "$GMFLOW" train "${SMALL[@]}" --K 4 --out "$TMP/a" \
    --resume --epochs 3
expect 1 "holds model" -- "$GMFLOW" train "${SMALL[@]}" --model fc --out "$TMP/a" --eval-only
cmp -s "$TMP/a/checkpoint.gmck" "$TMP/keep.gmck" && ok || bad "checkpoint changed by a rejected run"
head -c 1000 "$TMP/keep.gmck" >"$TMP/short.gmck"
expect 1 'truncated' -- "$GMFLOW" train "${SMALL[@]}" --checkpoint "$TMP/short.gmck" --eval-only \
    --out "$TMP/a"

# ---- divergence: stops with epoch and step, the last good checkpoint intact ----------------
cp "$TMP/a/checkpoint.gmck" "$TMP/keep.gmck"
expect 1 'non-finite loss .* at epoch 3, step [0-9]+ of [0-9]+' -- "$GMFLOW" train "${SMALL[@]}" \
    --out "$TMP/a" --resume-force --epochs 5 --lr 1e9 --lr-sigma 1e9
grep -q 'last good checkpoint' "$TMP/err" && ok || bad "no checkpoint mention: $(cat "$TMP/err")"
cmp -s "$TMP/a/checkpoint.gmck" "$TMP/keep.gmck" && ok || bad "divergence changed the checkpoint"
expect 0 '' -- "$GMFLOW" train "${SMALL[@]}" --out "$TMP/a" --eval-only
grep -q 'epoch 2' "$TMP/out" && ok || bad "the intact checkpoint is not epoch 2: $(cat "$TMP/out")"

echo "cli_train: $((checks - fails)) of $checks checks passed"
[ $fails -eq 0 ]
