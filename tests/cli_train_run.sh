#!/usr/bin/env bash
# cli_train_run.sh -- `gmflow train`'s run records and divergence tests end to end (MNIST subset;
# exit 77 = skipped when the data are missing):
#   - --resume with no checkpoint says so and how to start (exit 1);
#   - run.json holds the hyperparameters and the status;
#   - --resume with another learning rate / batch / data set is refused, listing each difference
#     with both values, and leaves the checkpoint byte-identical; --resume-force continues;
#   - a checkpoint of the old format (version 1, no record: made here from a new one by an
#     independent Python route that drops the record and recomputes the FNV-1a checksum)
#     still resumes, with a note;
#   - finite divergence (--K 2 --lr 30 --precision 64 --full-batch: the loss locks at ln 10;
#     --lr 1e6: parameters explode) stops with exit 1 and a message, the last good checkpoint
#     loadable; --no-divergence-check restores the old behaviour (exit 0);
#   - the default output directory depends on the model and data set.
#
#   tests/cli_train_run.sh <path to gmflow> [build dir]      (run from the repository root)
set -u
. "$(dirname "${BASH_SOURCE[0]}")/cli_common.sh" || exit 1
cli_start cli_train_run "$@"
DATA=$(realpath -m ../shared/data/mnist)
FASHION=$(realpath -m ../shared/data/fashion-mnist)
cli_require_dir "$DATA"
expect() { # STATUS PATTERN CMD...: exit status and stderr matching PATTERN
    local want=$1 pat=$2
    shift 2
    checks=$((checks + 1))
    "$@" >"$TMP/out" 2>"$TMP/err"
    local st=$?
    [ $st -eq "$want" ] || { fail "exit $st (want $want): $* -- $(tail -4 "$TMP/err")"; return; }
    [ -z "$pat" ] || grep -Eq -- "$pat" "$TMP/err" ||
        fail "stderr of '$*' does not match /$pat/: $(cat "$TMP/err")"
}
S=(--data "$DATA" --train-limit 300 --test-limit 200 --K 3 --quiet)

# --resume before any checkpoint
expect 1 "no checkpoint exists yet.*without --resume" "$GMFLOW" train "${S[@]}" --out "$TMP/a" \
    --resume --epochs 1
[ -e "$TMP/a/checkpoint.gmck" ] && fail "a refused --resume wrote a checkpoint"

# stale temporaries of a dead process (pid 2^22 + 1 exceeds the kernel's pid_max: never alive)
# are removed at the start of the next run; a live process's (ours) are kept
mkdir -p "$TMP/st/snapshots"
echo x >"$TMP/st/checkpoint.gmck.tmp.4194305"
echo x >"$TMP/st/snapshots/epoch_0001_mu.npy.tmp.4194305"
echo x >"$TMP/st/run.json.tmp.$$"
expect 0 "removed 1 stale" "$GMFLOW" train --data "$DATA" --train-limit 300 --test-limit 200 \
    --K 3 --out "$TMP/st" --epochs 1 --snapshot-every 1
ok
[ -e "$TMP/st/checkpoint.gmck.tmp.4194305" ] && fail "a dead process's temporary was kept"
[ -e "$TMP/st/snapshots/epoch_0001_mu.npy.tmp.4194305" ] && fail "a dead snapshot temporary was kept"
[ -e "$TMP/st/run.json.tmp.$$" ] || fail "a live process's temporary was removed"

# a run and its record
expect 0 "" "$GMFLOW" train "${S[@]}" --out "$TMP/a" --epochs 1
/usr/bin/python3 - "$TMP/a/run.json" <<'PY' || fail "run.json"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["format"] == "gmflow-run" and r["command"] == "train", r
assert r["status"] == "complete" and r["last_epoch"] == 1, r
run = r["run"]
for k, v in {"kind": "gm", "K": 3, "lr": 0.1, "lr_sigma": 1, "batch": 64, "seed": 1,
             "precision": 32, "dataset": "mnist", "train_n": 300, "train_d": 784,
             "full_batch": False}.items():
    assert run[k] == v, (k, run[k], v)
assert len(run["train_checksum"]) == 16, run
assert 0 <= r["test_error"] <= 1, r
PY
ok
cp "$TMP/a/checkpoint.gmck" "$TMP/keep.gmck"

# a different run is refused, each difference listed; the checkpoint is untouched
expect 1 "2 setting\(s\) differ" "$GMFLOW" train "${S[@]}" --out "$TMP/a" --resume --epochs 2 \
    --lr 5 --batch 7
grep -q "lr: 0.1 -> 5" "$TMP/err" && grep -q "batch: 64 -> 7" "$TMP/err" &&
    grep -q -- "--resume-force" "$TMP/err" || fail "differences not listed: $(cat "$TMP/err")"
ok
if [ -d "$FASHION" ]; then
    expect 1 "dataset: \"mnist\" -> \"fashion\"" "$GMFLOW" train "${S[@]}" --data "$FASHION" \
        --dataset fashion --out "$TMP/a" --resume --epochs 2
    grep -q "train_checksum" "$TMP/err" || fail "data checksum difference not listed"
fi
expect 1 "train_n: 300 -> 301" "$GMFLOW" train "${S[@]}" --train-limit 301 --out "$TMP/a" \
    --resume --epochs 2
cmp -s "$TMP/keep.gmck" "$TMP/a/checkpoint.gmck" || fail "a refused resume changed the checkpoint"
ok
# --resume-force continues, with a note listing them
cp -r "$TMP/a" "$TMP/f"
expect 0 "resume-force.*1 different" "$GMFLOW" train "${S[@]}" --out "$TMP/f" --resume-force \
    --epochs 2 --lr 0.05
# another thread count is allowed (a note)
cp -r "$TMP/a" "$TMP/t"
expect 0 "another --threads" "$GMFLOW" train "${S[@]}" --out "$TMP/t" --resume --epochs 2 \
    --threads 2

# an old (version 1) checkpoint resumes, with a note, to the same parameters
/usr/bin/python3 - "$TMP/keep.gmck" "$TMP/v1.gmck" <<'PY' || fail "making a v1 checkpoint"
import struct, sys
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"GMFLOWCK" and struct.unpack_from("<I", b, 8)[0] == 2
n = struct.unpack_from("<Q", b, 80)[0]
end = 104 + 8 * n
rlen = struct.unpack_from("<I", b, end)[0]
assert len(b) == end + 4 + rlen + 8
v1 = bytearray(b[:end])
v1[8:12] = struct.pack("<I", 1)
h = 0xcbf29ce484222325
for c in v1:
    h = ((h ^ c) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
open(sys.argv[2], "wb").write(bytes(v1) + struct.pack("<Q", h))
PY
mkdir -p "$TMP/old" "$TMP/new"
cp "$TMP/v1.gmck" "$TMP/old/checkpoint.gmck"
cp "$TMP/keep.gmck" "$TMP/new/checkpoint.gmck"
expect 0 "no run record" "$GMFLOW" train "${S[@]}" --out "$TMP/old" --resume --epochs 2 \
    --snapshot-every 2
expect 0 "" "$GMFLOW" train "${S[@]}" --out "$TMP/new" --resume --epochs 2 --snapshot-every 2
for f in "$TMP/new/snapshots/"*; do
    cmp -s "$f" "$TMP/old/snapshots/$(basename "$f")" || fail "v1 resume differs: $(basename "$f")"
done
ok

# finite divergence: loss locked at chance level
D=(--data "$DATA" --train-limit 1000 --test-limit 200 --K 2 --quiet --precision 64 --full-batch)
expect 1 "diverged at epoch [0-9]+: the mean training loss 2.302585 has stayed at the chance \
level ln\(10\) = 2.302585 for 2 epochs without moving" "$GMFLOW" train "${D[@]}" --lr 30 --epochs 8 --out "$TMP/d"
grep -q "last good checkpoint" "$TMP/err" || fail "no checkpoint named: $(cat "$TMP/err")"
grep -q '"status": "diverged"' "$TMP/d/run.json" || fail "run.json status after divergence"
ep=$(sed -n 's/.*diverged at epoch \([0-9]*\).*/\1/p' "$TMP/err")
expect 0 "" "$GMFLOW" train "${D[@]}" --out "$TMP/d" --eval-only
grep -q "(epoch $((ep - 1)))" "$TMP/out" || fail "checkpoint is not epoch $((ep - 1)): $(cat "$TMP/out")"
ok
# exploding parameters: stops at epoch 1, epoch 0 intact
expect 1 "diverged at epoch 1: the parameters' RMS grew" "$GMFLOW" train "${D[@]}" --lr 1e6 \
    --epochs 4 --out "$TMP/e"
expect 0 "" "$GMFLOW" train "${D[@]}" --out "$TMP/e" --eval-only
grep -q "(epoch 0)" "$TMP/out" || fail "exploded run's checkpoint is not epoch 0"
# the old behaviour on request
expect 0 "" "$GMFLOW" train "${D[@]}" --lr 30 --epochs 4 --out "$TMP/n" --no-divergence-check

# default output directories do not collide
mkdir -p "$TMP/cwd"
(cd "$TMP/cwd" && "$GMFLOW" train "${S[@]}" --epochs 1 >/dev/null 2>&1 &&
    "$GMFLOW" train "${S[@]}" --model fc --width 10 --epochs 1 >/dev/null 2>&1) ||
    fail "default-directory runs failed"
[ -f "$TMP/cwd/out/train-gm-mnist/checkpoint.gmck" ] && [ -f "$TMP/cwd/out/train-fc-mnist/run.json" ] ||
    fail "default output directories: $(ls -R "$TMP/cwd/out" 2>&1 | head)"
ok

echo "cli_train_run: $((checks - fails)) of $checks checks passed"
[ $fails -eq 0 ]
