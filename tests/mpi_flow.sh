#!/usr/bin/env bash
# mpi_flow.sh -- data-parallel `gmflow flow` (issue 13, docs/SCALE.md).
#   usage: bash tests/mpi_flow.sh <path-to-gmflow> [<build-dir>]
# The same runs under `mpirun -np 2` and `-np 3` (oversubscribed) must reproduce the 1-process
# run: final state (mu.npy, Sigma.npy / C.npy) and the trajectory's losses to <= 1e-12 relative,
# identical output times, step and RHS counts.  The 1-process run uses the unsharded oracle, so a
# wrong shard (a row lost or counted twice, the 1/n scale taken from the local n, a missing
# reduction) changes the loss at t = 0 by far more than that.  A rank that fails to read its
# shard (GMFLOW_TEST_FAIL_RANK) must stop every rank with its message, exit non-zero, and leave
# no run.json.  Skipped (77) when mpirun is missing or gmflow was built without MPI.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/cli_common.sh" || exit 1
cli_start mpi_flow "$@"
cli_mpi_env

"${MPIRUN[@]}" -np 2 "$GMFLOW" flow -q --n 50 --t-end 0.1 --out "$TMP/probe" > /dev/null 2> "$TMP/probe.err" ||
    { cat "$TMP/probe.err"; echo "SKIP: mpirun cannot start 2 ranks here"; exit 77; }
grep -q '"ranks": 2' "$TMP/probe/run.json" || { echo "SKIP: gmflow built without MPI"; exit 77; }

# compare DIR_REF DIR: state and trajectory to 1e-12 relative, same counts, ranks recorded
compare() {
    /usr/bin/python3 - "$1" "$2" "$3" << 'PY' || bad "$3 ranks: differs from the 1-process run"
import json, sys, os
import numpy as np
a, b, P = sys.argv[1], sys.argv[2], int(sys.argv[3])
ja, jb = (json.load(open(os.path.join(d, "run.json"))) for d in (a, b))
assert ja["ranks"] == 1 and jb["ranks"] == P, (ja["ranks"], jb["ranks"])
for k in ("nsteps", "nfevals", "netfails", "nniters"):
    assert ja["stats"][k] == jb["stats"][k], (k, ja["stats"][k], jb["stats"][k])
ta = np.genfromtxt(os.path.join(a, "trajectory.csv"), delimiter=",", names=True)
tb = np.genfromtxt(os.path.join(b, "trajectory.csv"), delimiter=",", names=True)
assert np.array_equal(ta["t"], tb["t"]) and np.array_equal(ta["nrhs"], tb["nrhs"])
worst = 0.0
def rel(x, y):
    global worst
    e = np.max(np.abs(x - y)) / max(np.max(np.abs(x)), 1e-300)
    worst = max(worst, e)
    return e
assert rel(ta["loss"], tb["loss"]) <= 1e-12
for f in ("mu.npy", "Sigma.npy", "C.npy"):
    if os.path.exists(os.path.join(a, f)):
        x, y = np.load(os.path.join(a, f)), np.load(os.path.join(b, f))
        assert x.shape == y.shape
        for j in range(x.shape[0]):  # every output time, not only the final state
            assert rel(x[j], y[j]) <= 1e-12, (f, j)
print(f"  {sys.argv[3]} ranks vs 1: worst relative difference {worst:.2e}")
PY
}

# the built-in toy (bw) and a CSV of 301 rows (not divisible by 2 or 3; euclid form)
/usr/bin/python3 -c "
import numpy as np
r = np.random.default_rng(7); X = r.standard_normal((301, 3)); y = np.tanh(X @ [1.0, -0.5, 0.25])
np.savetxt('$TMP/data.csv', np.column_stack([X, y]), delimiter=',', fmt='%.17g', header='x1,x2,x3,y', comments='')
np.save('$TMP/data.npy', np.column_stack([X, y])); np.save('$TMP/tiny.npy', np.column_stack([X, y])[:2])"
"$GMFLOW" flow -q --n 400 --t-end 2 --out "$TMP/toy1" > /dev/null || bad "toy, 1 process"
"$GMFLOW" flow -q --data "$TMP/data.csv" --form euclid -K 3 --t-end 1 --out "$TMP/csv1" > /dev/null ||
    bad "csv, 1 process"
for P in 2 3; do
    "${MPIRUN[@]}" -np $P "$GMFLOW" flow -q --n 400 --t-end 2 --out "$TMP/toy$P" > /dev/null &&
        compare "$TMP/toy1" "$TMP/toy$P" $P || bad "toy, $P ranks"
    "${MPIRUN[@]}" -np $P "$GMFLOW" flow -q --data "$TMP/data.csv" --form euclid -K 3 --t-end 1 \
        --out "$TMP/csv$P" > /dev/null && compare "$TMP/csv1" "$TMP/csv$P" $P || bad "csv, $P ranks"
done

# .npy (each rank reads only its rows): serially bitwise the CSV run; 3 ranks to rounding;
# 2 rows over 3 ranks (one rank holds none)
"$GMFLOW" flow -q --data "$TMP/data.npy" --form euclid -K 3 --t-end 1 --out "$TMP/npy1" > /dev/null &&
    cmp -s "$TMP/csv1/C.npy" "$TMP/npy1/C.npy" || bad "npy, 1 process: not bitwise the CSV run"
"${MPIRUN[@]}" -np 3 "$GMFLOW" flow -q --data "$TMP/data.npy" --form euclid -K 3 --t-end 1 \
    --out "$TMP/npy3" > /dev/null && compare "$TMP/csv1" "$TMP/npy3" 3 || bad "npy, 3 ranks"
"$GMFLOW" flow -q --data "$TMP/tiny.npy" --t-end 1 --out "$TMP/tiny1" > /dev/null || bad "tiny, 1 process"
"${MPIRUN[@]}" -np 3 "$GMFLOW" flow -q --data "$TMP/tiny.npy" --t-end 1 --out "$TMP/tiny3" > /dev/null &&
    compare "$TMP/tiny1" "$TMP/tiny3" 3 || bad "tiny (a rank with no rows), 3 ranks"
# a truncated .npy: every rank stops with the reader's message
head -c 1000 "$TMP/data.npy" > "$TMP/trunc.npy"
"${MPIRUN[@]}" -np 2 "$GMFLOW" flow -q --data "$TMP/trunc.npy" --out "$TMP/trunc" > /dev/null 2> "$TMP/trunc.err" &&
    bad "truncated npy: exit 0"
grep -q "trunc.npy: NPY payload size mismatch" "$TMP/trunc.err" || bad "truncated npy: no message"

# a rank that cannot read its shard stops all ranks with its message
GMFLOW_TEST_FAIL_RANK=1 "${MPIRUN[@]}" -np 3 -x GMFLOW_TEST_FAIL_RANK "$GMFLOW" flow -q \
    --data "$TMP/data.csv" --out "$TMP/fail" > "$TMP/fail.out" 2> "$TMP/fail.err"
rc=$?
if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then bad "failing shard: exit $rc (want non-zero, no hang)"; fi
grep -q "rank 1 of 3: cannot read its shard" "$TMP/fail.err" || bad "failing shard: no message"
[ ! -e "$TMP/fail/run.json" ] || bad "failing shard: run.json written"

[ $fails -eq 0 ] && echo "mpi_flow: all checks passed" || echo "mpi_flow: $fails failures"
[ $fails -eq 0 ]
