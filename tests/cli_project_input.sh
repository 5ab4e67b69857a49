#!/usr/bin/env bash
# cli_project_input.sh -- `gmflow project` on bad and degenerate snapshots (issue 9 items 1, 2,
# 10): the issue's two 128-byte .npy files of shape (0, 1518500250) (K = 0; before: d*d wrapped
# size_t and dsyrk wrote past a 291 MB buffer, SIGSEGV), d = 0, a snapshot directory with the
# same epoch spelled twice (epoch_1_mu.npy and epoch_0001_mu.npy: an error naming both), stray
# names (skipped with a note), and the degenerate all-zero mixture of `train --gamma 0` (before:
# dsyevr wrote N eigenvalues into a 2-entry stack buffer; ASan aborts, release printed garbage):
# its eigenvalues must be exactly 0.  Bad input exits 1 naming the file; nothing is written.
#
#   tests/cli_project_input.sh <path to gmflow> [build dir]      (run from the repository root)
set -u
. "$(dirname "${BASH_SOURCE[0]}")/cli_common.sh" || exit 1
cli_start cli_project_input "$@"
DATA=../shared/data/mnist
expect() { # STATUS PATTERN CMD...
    local want=$1 pat=$2
    shift 2
    checks=$((checks + 1))
    "$@" >"$TMP/out" 2>"$TMP/err"
    local st=$?
    [ $st -eq "$want" ] || { fail "exit $st (want $want): $* -- $(tail -3 "$TMP/err")"; return; }
    [ -z "$pat" ] || grep -Eq -- "$pat" "$TMP/err" ||
        fail "stderr of '$*' does not match /$pat/: $(cat "$TMP/err")"
}

/usr/bin/python3 - "$TMP" <<'PY' || { echo "cli_project_input: cannot write test files"; exit 1; }
import os, sys
import numpy as np
t = sys.argv[1]
def put(d, name, a):
    os.makedirs(f"{t}/{d}", exist_ok=True)
    np.save(f"{t}/{d}/{name}", a)
put("k0", "epoch_0000_mu.npy", np.zeros((0, 1518500250)))
put("k0", "epoch_0000_sigma.npy", np.zeros((0, 1518500250)))
assert os.path.getsize(f"{t}/k0/epoch_0000_mu.npy") == 128
put("d0", "epoch_0000_mu.npy", np.zeros((3, 0)))
put("d0", "epoch_0000_sigma.npy", np.zeros((3, 0)))
rng = np.random.default_rng(1)
for e in ("0000", "0001", "1"):
    put("dup", f"epoch_{e}_mu.npy", rng.normal(size=(3, 4)))
    put("dup", f"epoch_{e}_sigma.npy", np.abs(rng.normal(size=(3, 4))))
for e in ("0000", "0002"):
    put("stray", f"epoch_{e}_mu.npy", rng.normal(size=(3, 4)))
    put("stray", f"epoch_{e}_sigma.npy", np.abs(rng.normal(size=(3, 4))))
for junk in ("epoch_x_mu.npy", "epoch_-1_mu.npy", "epoch_99999999999999999999_mu.npy"):
    open(f"{t}/stray/{junk}", "w").close()
PY

expect 1 "k0/epoch_0000_mu.npy.*K = 0" "$GMFLOW" project --gm "$TMP/k0" --out "$TMP/o1"
[ -e "$TMP/o1" ] && fail "a refused K = 0 run created its output directory"
expect 1 "d0/epoch_0000_mu.npy: dimension 1 of its shape is 0" "$GMFLOW" project --gm "$TMP/d0" \
    --out "$TMP/o2"
expect 1 "epoch 1 has two snapshot files, epoch_(1|0001)_mu.npy and epoch_(1|0001)_mu.npy" \
    "$GMFLOW" project --gm "$TMP/dup" --out "$TMP/o3"
expect 0 "skipped 3 file\(s\).*not named epoch_<digits>_mu.npy" "$GMFLOW" project \
    --gm "$TMP/stray" --out "$TMP/o4"
checks=$((checks + 1))
[ "$(grep -c '^gm,' "$TMP/o4/trajectory.csv")" -eq 6 ] || fail "stray: want 2 epochs x 3 rows"

# the degenerate mixture of --gamma 0 (every parameter 0 at epoch 0)
if [ -d "$DATA" ]; then
    expect 0 "" "$GMFLOW" train --data "$DATA" --gamma 0 --snapshot-every 1 --epochs 1 --K 3 \
        --train-limit 200 --test-limit 100 --quiet --out "$TMP/g0"
    expect 0 "" "$GMFLOW" project --gm "$TMP/g0/snapshots" --epoch 0 --out "$TMP/p0"
    checks=$((checks + 1))
    grep -q "eigenvalues 0, 0" "$TMP/out" && [ "$(sed -n 2p "$TMP/p0/pcs.csv")" = "1,0,0" ] ||
        fail "zero mixture: $(cat "$TMP/out") / $(cat "$TMP/p0/pcs.csv" 2>&1)"
else
    echo "cli_project_input: (no $DATA: the --gamma 0 case is not run)"
fi

echo "cli_project_input: $((checks - fails)) of $checks checks passed"
[ $fails -eq 0 ]
