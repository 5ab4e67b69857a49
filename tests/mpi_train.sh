#!/usr/bin/env bash
# mpi_train.sh -- data-parallel `gmflow train` (issue 13, docs/SCALE.md).
#   usage: bash tests/mpi_train.sh <path-to-gmflow> [<build-dir>]
# 2 epochs of a 600-image MNIST subset in float64 under `mpirun -np 2` and `-np 3`
# (oversubscribed) must give the parameters of the 1-process run to <= 1e-10 relative (every
# snapshot array), the same epochs.csv losses to 1e-9, and run.json "ranks": P.  The 1-process
# run takes the fused SGD path, the P-rank runs the plain gradient + reduction + update path: an
# independent route to the same update.  Without the gradient reduction (tried) the parameters
# differ by about 5e-3 relative and the comparison fails.  Full batch (--full-batch) on 2 ranks too.  A rank that fails to read the data
# (GMFLOW_TEST_FAIL_RANK) must stop every rank with its message and a non-zero exit.
# Skipped (77) without mpirun, without MPI in gmflow, or without MNIST in ../shared/data.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/cli_common.sh" || exit 1
cli_start mpi_train "$@"
cli_mpi_env
DATA=../shared/data/mnist
cli_require_dir "$DATA"
A=(train -q --data "$DATA" --precision 64 -K 4 --epochs 2 --train-limit 600 --test-limit 200
    --batch 64 --lr 0.02 --snapshot-every 2)

"$GMFLOW" "${A[@]}" --out "$TMP/p1" > /dev/null || bad "1 process"
for P in 2 3; do
    "${MPIRUN[@]}" -np $P "$GMFLOW" "${A[@]}" --out "$TMP/p$P" > /dev/null 2> "$TMP/err$P" ||
        { [ $P = 2 ] && { cat "$TMP/err$P"; echo "SKIP: mpirun cannot start 2 ranks here"; exit 77; }; }
    [ $P = 2 ] && ! grep -q '"ranks": 2' "$TMP/p2/run.json" && { echo "SKIP: gmflow built without MPI"; exit 77; }
    /usr/bin/python3 - "$TMP/p1" "$TMP/p$P" "$P" << 'PY' || bad "$P ranks: differs from the 1-process run"
import glob, json, os, sys
import numpy as np
a, b, P = sys.argv[1], sys.argv[2], int(sys.argv[3])
assert json.load(open(os.path.join(a, "run.json")))["ranks"] == 1
assert json.load(open(os.path.join(b, "run.json")))["ranks"] == P
files = sorted(glob.glob(os.path.join(a, "snapshots", "epoch_0002_*.npy")))
assert len(files) >= 3, files
worst = 0.0
for f in files:
    x, y = np.load(f), np.load(os.path.join(b, "snapshots", os.path.basename(f)))
    assert x.shape == y.shape and x.dtype == np.float64
    e = np.max(np.abs(x - y)) / np.max(np.abs(x))
    worst = max(worst, e)
    assert e <= 1e-10, (os.path.basename(f), e)
ea = np.genfromtxt(os.path.join(a, "epochs.csv"), delimiter=",", names=True)
eb = np.genfromtxt(os.path.join(b, "epochs.csv"), delimiter=",", names=True)
for k in ("epoch", "train_loss", "test_loss", "test_error"):
    assert np.allclose(ea[k], eb[k], rtol=1e-9, atol=0), (k, ea[k], eb[k])
print(f"  {P} ranks vs 1: parameters' worst relative difference {worst:.2e}")
PY
done

# full-batch gradient descent: each rank sums its block of the n samples, then the reduction
F=(train -q --data "$DATA" --precision 64 -K 4 --epochs 2 --train-limit 600 --test-limit 200
    --full-batch --lr 0.05 --snapshot-every 2)
"$GMFLOW" "${F[@]}" --out "$TMP/f1" > /dev/null || bad "full batch, 1 process"
"${MPIRUN[@]}" -np 2 "$GMFLOW" "${F[@]}" --out "$TMP/f2" > /dev/null || bad "full batch, 2 ranks"
/usr/bin/python3 - "$TMP/f1" "$TMP/f2" << 'PY' || bad "full batch, 2 ranks: differs from 1 process"
import glob, os, sys
import numpy as np
files = sorted(glob.glob(os.path.join(sys.argv[1], "snapshots", "epoch_0002_*.npy")))
assert len(files) >= 3, files
for f in files:
    x, y = np.load(f), np.load(os.path.join(sys.argv[2], "snapshots", os.path.basename(f)))
    assert np.max(np.abs(x - y)) <= 1e-10 * np.max(np.abs(x)), os.path.basename(f)
PY

# learned mixture weights (fr step of the logits, per-mass transport): the 1-process run takes
# the fused step (logits updated from g_k - gbar directly), the 2 ranks the reduced gradient
# divided by w_k -- two routes to the same update.  577 images: the last batch of an epoch has
# one row, so 2 of the 3 ranks compute no gradient for it and still need the current weights
W=(--weights learned --weights-geometry fr --lr-weights 0.01 --transport-lr per-mass
    --train-limit 577)
"$GMFLOW" "${A[@]}" "${W[@]}" --out "$TMP/w1" > /dev/null || bad "learned weights, 1 process"
"${MPIRUN[@]}" -np 3 "$GMFLOW" "${A[@]}" "${W[@]}" --out "$TMP/w2" > /dev/null ||
    bad "learned weights, 3 ranks"
/usr/bin/python3 - "$TMP/w1" "$TMP/w2" << 'PY' || bad "learned weights, 3 ranks: differs from 1 process"
import glob, os, sys
import numpy as np
files = sorted(glob.glob(os.path.join(sys.argv[1], "snapshots", "epoch_0002_*.npy")))
assert any(f.endswith("_a.npy") for f in files), files
worst = 0.0
for f in files:
    x, y = np.load(f), np.load(os.path.join(sys.argv[2], "snapshots", os.path.basename(f)))
    e = np.max(np.abs(x - y)) / np.max(np.abs(x))
    worst = max(worst, e)
    assert e <= 1e-10, (os.path.basename(f), e)
a = np.load(os.path.join(sys.argv[1], "snapshots", "epoch_0002_a.npy"))
assert np.ptp(a) > 1e-3, a  # the weights moved
print(f"  learned weights (fr, per-mass), 3 ranks vs 1: worst relative difference {worst:.2e}")
PY

GMFLOW_TEST_FAIL_RANK=1 "${MPIRUN[@]}" -np 2 -x GMFLOW_TEST_FAIL_RANK "$GMFLOW" "${A[@]}" \
    --out "$TMP/fail" > /dev/null 2> "$TMP/fail.err"
rc=$?
if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then bad "failing rank: exit $rc (want non-zero, no hang)"; fi
grep -q "rank 1 of 2: cannot read the data" "$TMP/fail.err" || bad "failing rank: no message"
[ ! -e "$TMP/fail/run.json" ] || bad "failing rank: run.json written"

[ $fails -eq 0 ] && echo "mpi_train: all checks passed" || echo "mpi_train: $fails failures"
[ $fails -eq 0 ]
