#!/usr/bin/env bash
# mpi_train_lowrank.sh -- the gm-lowrank layer (--cov lowrank) on the data-parallel path
# (mpirun, docs/SCALE.md) and on the thread pool (--threads 2), against the 1-process,
# 1-thread run: 2 epochs of 600 MNIST images in float64, every snapshot array of epoch 2 to
# <= 1e-10 relative, the epochs.csv losses to 1e-9.  The P-rank run takes the plain gradient +
# reduction + update path, the 1-process run the pool's step: independent routes to one update.
# Skipped (77) without mpirun, without MPI in gmflow, or without MNIST in ../shared/data.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/cli_common.sh" || exit 1
cli_start mpi_train_lowrank "$@"
cli_mpi_env
DATA=../shared/data/mnist
cli_require_dir "$DATA"
A=(train -q --data "$DATA" --precision 64 -K 4 --epochs 2 --train-limit 600 --test-limit 200
    --batch 64 --lr 0.02 --cov lowrank --rank 3 --lr-lowrank 0.05 --snapshot-every 2)
"$GMFLOW" "${A[@]}" --out "$TMP/p1" > /dev/null || bad "1 process"
"$GMFLOW" "${A[@]}" --threads 2 --out "$TMP/t2" > /dev/null || bad "2 threads"
"${MPIRUN[@]}" -np 2 "$GMFLOW" "${A[@]}" --out "$TMP/p2" > /dev/null 2> "$TMP/err" ||
    { cat "$TMP/err"; echo "SKIP: mpirun cannot start 2 ranks here"; exit 77; }
grep -q '"ranks": 2' "$TMP/p2/run.json" || { echo "SKIP: gmflow built without MPI"; exit 77; }
for o in p2 t2; do
    /usr/bin/python3 - "$TMP/p1" "$TMP/$o" << 'PY' || bad "$o differs from the 1-process run"
import glob, os, sys
import numpy as np
a, b = sys.argv[1], sys.argv[2]
files = sorted(glob.glob(os.path.join(a, "snapshots", "epoch_0002_*.npy")))
assert any(f.endswith("_lowrank.npy") for f in files) and len(files) == 5, files
worst = 0.0
for f in files:
    x, y = np.load(f), np.load(os.path.join(b, "snapshots", os.path.basename(f)))
    assert x.shape == y.shape
    e = np.max(np.abs(x - y)) / np.max(np.abs(x))
    worst = max(worst, e)
    assert e <= 1e-10, (os.path.basename(f), e)
ea = np.genfromtxt(os.path.join(a, "epochs.csv"), delimiter=",", names=True)
eb = np.genfromtxt(os.path.join(b, "epochs.csv"), delimiter=",", names=True)
for k in ("train_loss", "test_loss", "test_error"):
    assert np.allclose(ea[k], eb[k], rtol=1e-9, atol=0), (k, ea[k], eb[k])
print(f"  {os.path.basename(b)} vs 1 process: parameters' worst relative difference {worst:.2e}")
PY
done
[ $fails -eq 0 ] && echo "mpi_train_lowrank: all checks passed" || echo "mpi_train_lowrank: $fails failures"
[ $fails -eq 0 ]
