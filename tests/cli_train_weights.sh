#!/usr/bin/env bash
# cli_train_weights.sh -- `gmflow train --weights learned` end to end (MNIST subset; exit 77 =
# skipped when the data are missing):
#   - bad values exit 2 with a message naming the option: --lr-weights nan / -1 / abc,
#     --weights-geometry unknown, --weights unknown, --transport-lr unknown, the weights options
#     without --weights learned, --weights learned with --model fc;
#   - --help lists every option;
#   - a short run with learned weights (euclid, fr, per-mass) lowers the training loss from epoch 1
#     to epoch 3 and moves the logits (snapshot epoch_NNNN_a.npy of shape (K,), weights on the
#     simplex), and run.json records the weights settings; a fixed-weight run.json has no weights
#     key (fixed-weight run records are those of before);
#   - --resume continues a learned-weight run to the uninterrupted run's checkpoint, bitwise;
#     resuming with another --weights-geometry is refused listing it; --eval-only without
#     --weights learned refuses the checkpoint naming both models (exit 1);
#   - gm-stack (a1, a2) and gm-full run with learned weights; --mc-neurons draws from the weights;
#   - the Python package's load_checkpoint returns the logits "a" (when the module is built).
#
#   tests/cli_train_weights.sh <path to gmflow> [build dir]      (run from the repository root)
set -u
. "$(dirname "${BASH_SOURCE[0]}")/cli_common.sh" || exit 1
cli_start cli_train_weights "$@"
DATA=$(realpath -m ../shared/data/mnist)
cli_require_dir "$DATA"
PY=/usr/bin/python3
C=(train -q --data "$DATA" --train-limit 1500 --test-limit 300 -K 6)

usage() { # usage OPTION-NAME ARGS...: exit 2, the message names the option
    local name=$1; shift
    "$GMFLOW" "${C[@]}" --out "$TMP/u" "$@" > /dev/null 2> "$TMP/u.err"
    local rc=$?
    [ $rc -eq 2 ] || bad "$*: exit $rc (want 2)"
    grep -q -- "$name" "$TMP/u.err" || bad "$*: message does not name $name: $(cat "$TMP/u.err")"
}
usage --lr-weights --weights learned --lr-weights nan
usage --lr-weights --weights learned --lr-weights -1
usage --lr-weights --weights learned --lr-weights abc
usage --weights-geometry --weights learned --weights-geometry sphere
usage --weights --weights heavy
usage --transport-lr --weights learned --transport-lr fast
usage --lr-weights --lr-weights 0.1
usage --weights-geometry --weights-geometry fr
usage --transport-lr --transport-lr per-mass
usage --weights --weights learned --model fc
usage --weights --weights learned --cov lowrank --rank 2
[ ! -e "$TMP/u" ] || bad "a usage error created the output directory"

"$GMFLOW" train --help > "$TMP/help"
for o in --weights --lr-weights --weights-geometry --transport-lr; do
    grep -q -- "^  $o " "$TMP/help" || bad "--help does not list $o"
done

# training with learned weights lowers the loss and moves the weights
for g in "euclid" "fr" "euclid --transport-lr per-mass"; do
    # shellcheck disable=SC2086
    "$GMFLOW" "${C[@]}" --epochs 3 --weights learned --weights-geometry $g --snapshot-every 3 \
        --out "$TMP/r" > /dev/null || { bad "run $g failed"; continue; }
    $PY - "$TMP/r" "$g" << 'PYEOF' || bad "run $g: loss or weights"
import json, sys
import numpy as np
out, g = sys.argv[1], sys.argv[2]
e = np.genfromtxt(out + "/epochs.csv", delimiter=",", names=True)
assert e["train_loss"][-1] < e["train_loss"][0] - 0.05, e["train_loss"]
a0, a = np.load(out + "/snapshots/epoch_0000_a.npy"), np.load(out + "/snapshots/epoch_0003_a.npy")
assert a.shape == (6,) and np.all(a0 == 0) and np.ptp(a) > 1e-4, (a0, a)
w = np.exp(a - a.max()); w /= w.sum()
assert abs(w.sum() - 1) <= 1e-12 and np.all(w > 0)
run = json.load(open(out + "/run.json"))["run"]
assert run["weights"] == "learned" and run["weights_geometry"] == g.split()[0], run
assert run["transport_lr"] == ("per-mass" if "per-mass" in g else "plain"), run
assert run["lr_weights"] == (0.1 if g.startswith("euclid") else 0.1 / 6), run
print(f"  {g}: train loss {e['train_loss'][0]:.3f} -> {e['train_loss'][-1]:.3f}, "
      f"weights {w.min():.3f}..{w.max():.3f}")
PYEOF
done
"$GMFLOW" "${C[@]}" --epochs 1 --out "$TMP/fixed" > /dev/null || bad "fixed run failed"
grep -q '"weights' "$TMP/fixed/run.json" && bad "fixed-weight run.json has a weights key"

# resume = uninterrupted, bitwise; another geometry refused; eval-only needs --weights learned
L=(--weights learned --weights-geometry fr --lr-weights 0.05)
"$GMFLOW" "${C[@]}" "${L[@]}" --epochs 2 --out "$TMP/full" > /dev/null || bad "uninterrupted run"
"$GMFLOW" "${C[@]}" "${L[@]}" --epochs 1 --out "$TMP/res" > /dev/null || bad "first half"
"$GMFLOW" "${C[@]}" "${L[@]}" --epochs 2 --out "$TMP/res" --resume > /dev/null || bad "resume"
cmp -s "$TMP/full/checkpoint.gmck" "$TMP/res/checkpoint.gmck" || bad "resumed checkpoint differs"
cp "$TMP/res/checkpoint.gmck" "$TMP/ck.before"
"$GMFLOW" "${C[@]}" --weights learned --epochs 3 --out "$TMP/res" --resume > /dev/null 2> "$TMP/r.err"
[ $? -eq 1 ] && grep -q 'weights_geometry: "fr" -> "euclid"' "$TMP/r.err" ||
    bad "resume with another geometry: $(cat "$TMP/r.err")"
cmp -s "$TMP/ck.before" "$TMP/res/checkpoint.gmck" || bad "refused resume changed the checkpoint"
"$GMFLOW" "${C[@]}" --eval-only --out "$TMP/res" > /dev/null 2> "$TMP/e.err"
[ $? -eq 1 ] && grep -q "weights=learned" "$TMP/e.err" || bad "eval-only fixed: $(cat "$TMP/e.err")"
"$GMFLOW" "${C[@]}" --weights learned --eval-only --out "$TMP/res" --mc-neurons 50 > /dev/null ||
    bad "eval-only with learned weights and --mc-neurons"

# the Python package reads the logits (when built: <build>/python)
B=${2:-}
# (not importable in a sanitizer build, whose ASan runtime would have to be preloaded: skipped)
if [ -n "$B" ] && PYTHONPATH="$B/python" $PY -c "import gmflow" > /dev/null 2>&1; then
    PYTHONPATH="$B/python" $PY - "$TMP/res/checkpoint.gmck" << 'PYEOF' || bad "Python load_checkpoint: no a"
import sys
import gmflow
c = gmflow.load_checkpoint(sys.argv[1])
assert c["groups"][-1] == "a" and c["a"].shape == (6,) and c["a"].std() > 0, c["groups"]
PYEOF
fi

# the other GM kinds
"$GMFLOW" "${C[@]}" --model gm-stack --mid 10 -K 3 --epochs 1 --weights learned --snapshot-every 1 \
    --out "$TMP/st" > /dev/null || bad "gm-stack with learned weights"
[ -e "$TMP/st/snapshots/epoch_0001_a1.npy" ] && [ -e "$TMP/st/snapshots/epoch_0001_a2.npy" ] ||
    bad "gm-stack: no a1 / a2 snapshots"
"$GMFLOW" train -q --data "$DATA" --train-limit 300 --test-limit 100 --model gm-full -K 2 --lr-sigma 0.01 \
    --epochs 1 --weights learned --out "$TMP/gf" > /dev/null || bad "gm-full with learned weights"

[ $fails -eq 0 ] && echo "cli_train_weights: all checks passed" || echo "cli_train_weights: $fails failures"
[ $fails -eq 0 ]
