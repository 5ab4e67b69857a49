#!/usr/bin/env bash
# cli_train_lowrank.sh -- `gmflow train --cov lowrank --rank r` (the gm-lowrank layer) end to end:
# the options in --help; usage errors (exit 2, the option named): --rank 0, above d = 784, not a
# number, --rank / --lowrank-init / --lr-lowrank without --cov lowrank, --cov with a conflicting
# --model, a bad --cov; a short MNIST run whose training loss decreases epoch by epoch and whose
# test error at the last epoch is below the first's; the snapshot of V shaped (K, r, d); run.json's rank and V
# learning rate; resume equal to an uninterrupted run (byte-identical checkpoint); a resume with
# another --rank refused (exit 1, both ranks named); --eval-only and --mc-neurons on the
# checkpoint; gmflow project refuses its snapshots; --cov full is the gm-full model; --lowrank-init 0 is the diagonal model's run
# (epochs.csv losses identical: V = 0 is a stationary point and the init shares the draws).
#   tests/cli_train_lowrank.sh <path to gmflow> [build dir]      (run from the repository root)
set -u
. "$(dirname "${BASH_SOURCE[0]}")/cli_common.sh" || exit 1
cli_start cli_train_lowrank "$@"
DATA=../shared/data/mnist
cli_require_dir "$DATA"
# expect STATUS PATTERN -- CMD...: exit status STATUS and stderr matching PATTERN
expect() {
    local want=$1 pat=$2
    shift 3
    "$@" > "$TMP/out" 2> "$TMP/err"
    local st=$?
    [ $st -eq "$want" ] || { bad "exit $st (want $want): $* -- $(tail -3 "$TMP/err")"; return; }
    if [ -n "$pat" ] && ! grep -Eq -- "$pat" "$TMP/err"; then
        bad "stderr of '$*' does not match /$pat/: $(cat "$TMP/err")"
        return
    fi
    ok
}

# ---- help and usage errors ------------------------------------------------------------------
"$GMFLOW" train --help > "$TMP/help"
for o in --cov --rank --lowrank-init --lr-lowrank gm-lowrank; do
    grep -q -- "$o" "$TMP/help" && ok || bad "train --help does not mention $o"
done
S=(train --data "$DATA" --train-limit 640 --test-limit 300 --K 4 --quiet)
expect 2 '--rank' -- "$GMFLOW" "${S[@]}" --cov lowrank --rank 0 --out "$TMP/x"
expect 2 '--rank.*abc' -- "$GMFLOW" "${S[@]}" --cov lowrank --rank abc --out "$TMP/x"
expect 2 '--rank' -- "$GMFLOW" "${S[@]}" --cov lowrank --rank 2x --out "$TMP/x"
expect 2 '--rank 785 exceeds the input dimension d = 784' -- "$GMFLOW" "${S[@]}" --cov lowrank \
    --rank 785 --out "$TMP/x"
[ ! -e "$TMP/x" ] && ok || bad "--rank 785: output directory created"
expect 2 '--rank applies to --cov lowrank' -- "$GMFLOW" "${S[@]}" --rank 2 --out "$TMP/x"
expect 2 '--lowrank-init applies' -- "$GMFLOW" "${S[@]}" --lowrank-init 0.5 --out "$TMP/x"
expect 2 '--lr-lowrank applies' -- "$GMFLOW" "${S[@]}" --cov diag --lr-lowrank 0.5 --out "$TMP/x"
expect 2 '--lr-lowrank must be >= 0' -- "$GMFLOW" "${S[@]}" --cov lowrank --lr-lowrank -1 --out "$TMP/x"
expect 2 '--cov: expected diag, lowrank or full' -- "$GMFLOW" "${S[@]}" --cov banded --out "$TMP/x"
expect 2 '--cov lowrank conflicts with --model fc' -- "$GMFLOW" "${S[@]}" --model fc --cov lowrank \
    --out "$TMP/x"

# ---- a short run: the loss decreases ------------------------------------------------------------
R=(--cov lowrank --rank 3 --epochs 4 --lr-lowrank 0.1 --snapshot-every 2)
expect 0 '' -- "$GMFLOW" "${S[@]}" "${R[@]}" --out "$TMP/a"
/usr/bin/python3 - "$TMP/a" << 'PY' || bad "short run: loss, snapshots or run.json"
import json, os, sys
import numpy as np
a = sys.argv[1]
e = np.genfromtxt(os.path.join(a, "epochs.csv"), delimiter=",", names=True)
tl = e["train_loss"]
assert len(tl) == 4 and np.all(np.diff(tl) < 0), ("training loss does not decrease", tl)
assert e["test_error"][-1] < e["test_error"][0], ("test error", e["test_error"])
V0 = np.load(os.path.join(a, "snapshots", "epoch_0000_lowrank.npy"))
V4 = np.load(os.path.join(a, "snapshots", "epoch_0004_lowrank.npy"))
assert V0.shape == (4, 3, 784) and V4.shape == V0.shape, V0.shape
assert np.max(np.abs(V4 - V0)) > 0, "V did not move"
# init: V ~ N(0, rho gamma^2 / r) = N(0, 0.1 * 0.25 / 3)
assert abs(V0.var() / (0.1 * 0.25 / 3) - 1) < 0.05, V0.var()
for g in ("mu", "sigma", "U", "v"):
    assert os.path.exists(os.path.join(a, "snapshots", "epoch_0004_%s.npy" % g)), g
run = json.load(open(os.path.join(a, "run.json")))
r = run.get("run", run)
assert r["kind"] == "gm-lowrank" and r["rank"] == 3 and r["lr_lowrank"] == 0.1, r
assert r["lowrank_init"] == 0.1, r
print("  short run: train loss", " ".join("%.4f" % x for x in tl),
      "test error %.3f" % e["test_error"][-1])
PY

# gmflow project would drop V V^T: it refuses a gm-lowrank snapshot directory (exit 1)
expect 1 'gm-lowrank run.*not supported' -- "$GMFLOW" project --gm "$TMP/a/snapshots" --out "$TMP/pca"

# resume: 2 epochs + resume to 4 equals 4 straight, bitwise; another rank is refused
expect 0 '' -- "$GMFLOW" "${S[@]}" "${R[@]}" --epochs 2 --out "$TMP/b"
expect 0 '' -- "$GMFLOW" "${S[@]}" "${R[@]}" --resume --out "$TMP/b"
cmp -s "$TMP/a/checkpoint.gmck" "$TMP/b/checkpoint.gmck" && ok ||
    bad "resumed gm-lowrank run differs from the uninterrupted one"
cp "$TMP/b/checkpoint.gmck" "$TMP/ck.saved"
expect 1 "r=3.*r=2|rank: 3 -> 2" -- "$GMFLOW" "${S[@]}" "${R[@]}" --rank 2 --epochs 5 --resume --out "$TMP/b"
cmp -s "$TMP/b/checkpoint.gmck" "$TMP/ck.saved" && ok || bad "refused resume touched the checkpoint"
expect 0 '' -- "$GMFLOW" "${S[@]}" --cov lowrank --rank 3 --eval-only --mc-neurons 50 --out "$TMP/b"
grep -q "^50,0," "$TMP/b/mc.csv" && ok || bad "--mc-neurons on gm-lowrank: no mc.csv row"

# --cov full is gm-full; --lowrank-init 0 trains exactly as the diagonal model
expect 0 '' -- "$GMFLOW" train --data "$DATA" --train-limit 64 --test-limit 64 --K 1 --epochs 1 -q \
    --cov full --out "$TMP/f"
grep -q '"kind": "gm-full"' "$TMP/f/run.json" && ok || bad "--cov full is not gm-full"
expect 0 '' -- "$GMFLOW" "${S[@]}" --epochs 2 --out "$TMP/d"
expect 0 '' -- "$GMFLOW" "${S[@]}" --epochs 2 --cov lowrank --rank 2 --lowrank-init 0 --out "$TMP/z"
if cmp -s <(cut -d, -f1-4 "$TMP/d/epochs.csv") <(cut -d, -f1-4 "$TMP/z/epochs.csv"); then ok; else
    bad "--lowrank-init 0 differs from the diagonal run: $(paste -d'|' "$TMP/d/epochs.csv" "$TMP/z/epochs.csv")"
fi

echo "cli_train_lowrank: $checks checks, $fails failures"
[ $fails -eq 0 ]
