#!/usr/bin/env bash
# cli_project.sh -- `gmflow project` (Figure 4's projection) against an independent NumPy route:
# a tiny GM run (diagonal and full covariance) and a width-K FC run write snapshots; NumPy forms
# the mixture covariance by a different route (second moment minus squared mean; the C code
# uses centred means and SYRK), takes its top-2 eigenvectors with numpy.linalg.eigh and
# reprojects every mean, covariance and neuron; the two must agree to 1e-8 (the sign convention
# too).  Bad input: missing directory, no snapshots, a corrupt .npy, --epoch absent -> exit 1 naming it.
#
#   tests/cli_project.sh <path to gmflow> [build dir]      (run from the repository root)
set -u
. "$(dirname "${BASH_SOURCE[0]}")/cli_common.sh" || exit 1
cli_start cli_project "$@"
DATA=../shared/data/mnist
cli_require_dir "$DATA"
common=(--data "$DATA" --train-limit 600 --test-limit 200 --epochs 3 --snapshot-every 1
    --K 3 --seed 5 --quiet)
"$GMFLOW" train --model gm "${common[@]}" --out "$TMP/gm" >/dev/null 2>&1 || bad "gm training"
"$GMFLOW" train --model fc --fc-init means "${common[@]}" --out "$TMP/fc" >/dev/null 2>&1 ||
    bad "fc training"
"$GMFLOW" train --model gm-full --data "$DATA" --train-limit 300 --test-limit 100 --epochs 2 \
    --snapshot-every 1 --K 2 --seed 3 --lr-sigma 0.01 --quiet --out "$TMP/full" >/dev/null 2>&1 ||
    bad "gm-full training"
"$GMFLOW" project --gm "$TMP/gm/snapshots" --fc "$TMP/fc/snapshots" --out "$TMP/pg" >/dev/null ||
    bad "project gm"
"$GMFLOW" project --gm "$TMP/full/snapshots" --epoch 1 --out "$TMP/pf" >/dev/null ||
    bad "project gm-full"

/usr/bin/python3 - "$TMP" <<'PY' || bad "NumPy cross-check"
import csv, glob, sys
import numpy as np
tmp = sys.argv[1]

def check(snap, out, ref_epoch, full, fcsnap=None):
    mu = np.load(f"{snap}/epoch_{ref_epoch:04d}_mu.npy")
    K, d = mu.shape
    if full:
        C = np.load(f"{snap}/epoch_{ref_epoch:04d}_C.npy")
        Sig = np.einsum("kab,kcb->kac", C, C)
    else:
        s = np.load(f"{snap}/epoch_{ref_epoch:04d}_sigma.npy")
        Sig = np.array([np.diag(x * x) for x in s])
    # second moment minus squared mean of the mixture (a different route from the C code's
    # centred SYRK)
    M2 = np.mean(Sig + np.einsum("ka,kb->kab", mu, mu), axis=0)
    m = mu.mean(axis=0)
    S = M2 - np.outer(m, m)
    w, V = np.linalg.eigh(S)
    P = V[:, ::-1][:, :2].T.copy()
    for r in range(2):
        if P[r, np.argmax(np.abs(P[r]))] < 0:
            P[r] *= -1
    Pc = np.load(f"{out}/pcs.npy")
    assert Pc.shape == (2, d), Pc.shape
    e = np.max(np.abs(Pc - P))
    assert e < 1e-8, f"principal directions differ by {e}"
    pcs = list(csv.DictReader(open(f"{out}/pcs.csv")))
    for r in range(2):
        lam = float(pcs[r]["eigenvalue"])
        assert abs(lam - w[-1 - r]) <= 1e-9 * w[-1], (lam, w[-1 - r])
    rows = list(csv.DictReader(open(f"{out}/trajectory.csv")))
    n_gm = 0
    for f in sorted(glob.glob(f"{snap}/epoch_*_mu.npy")):
        ep = int(f.split("epoch_")[1][:4])
        mu = np.load(f)
        if full:
            C = np.load(f.replace("_mu.npy", "_C.npy"))
            Sig = np.einsum("kab,kcb->kac", C, C)
        else:
            s = np.load(f.replace("_mu.npy", "_sigma.npy"))
            Sig = np.array([np.diag(x * x) for x in s])
        for k in range(K):
            row = [r for r in rows if r["source"] == "gm" and int(r["epoch"]) == ep and int(r["k"]) == k]
            assert len(row) == 1, (ep, k)
            r = row[0]
            got = np.array([float(r[c]) for c in ("mx", "my", "cxx", "cxy", "cyy")])
            pm = P @ mu[k]
            pc = P @ Sig[k] @ P.T
            want = np.array([pm[0], pm[1], pc[0, 0], pc[0, 1], pc[1, 1]])
            err = np.max(np.abs(got - want)) / max(1.0, np.max(np.abs(want)))
            assert err < 1e-8, (ep, k, got, want)
            n_gm += 1
    n_fc = 0
    if fcsnap:
        for f in sorted(glob.glob(f"{fcsnap}/epoch_*_beta.npy")):
            ep = int(f.split("epoch_")[1][:4])
            B = np.load(f)
            for j in range(B.shape[0]):
                r = [r for r in rows if r["source"] == "fc" and int(r["epoch"]) == ep and int(r["k"]) == j]
                assert len(r) == 1
                got = np.array([float(r[0]["mx"]), float(r[0]["my"])])
                err = np.max(np.abs(got - P @ B[j])) / max(1.0, np.max(np.abs(P @ B[j])))
                assert err < 1e-8, (ep, j, got, P @ B[j])
                n_fc += 1
        # the width-K means init starts at the GM means: same points at epoch 0
        g0 = sorted([(int(r["k"]), float(r["mx"]), float(r["my"])) for r in rows if r["source"] == "gm" and r["epoch"] == "0"])
        f0 = sorted([(int(r["k"]), float(r["mx"]), float(r["my"])) for r in rows if r["source"] == "fc" and r["epoch"] == "0"])
        assert len(g0) == len(f0) and all(abs(a[1] - b[1]) < 1e-6 and abs(a[2] - b[2]) < 1e-6 for a, b in zip(g0, f0)), (g0, f0)
    assert n_gm > 0 and len(rows) == n_gm + n_fc, (len(rows), n_gm, n_fc)
    print(f"cli_project: {out}: {n_gm} GM and {n_fc} FC rows agree with NumPy (directions {e:.1e})")

check(f"{tmp}/gm/snapshots", f"{tmp}/pg", 3, False, f"{tmp}/fc/snapshots")
check(f"{tmp}/full/snapshots", f"{tmp}/pf", 1, True)
PY

expect_fail() { # PATTERN CMD...: exit 1, stderr matching PATTERN
    local pat=$1
    shift
    "$@" >/dev/null 2>"$TMP/err"
    local st=$?
    [ $st -eq 1 ] || { bad "exit $st (want 1): $*"; return; }
    grep -Eq -- "$pat" "$TMP/err" || bad "stderr of '$*' does not match /$pat/: $(cat "$TMP/err")"
}
expect_fail "$TMP/nope" "$GMFLOW" project --gm "$TMP/nope"
mkdir -p "$TMP/empty"
expect_fail "no GM snapshots.*empty" "$GMFLOW" project --gm "$TMP/empty"
expect_fail "epoch_0099_mu.npy" "$GMFLOW" project --gm "$TMP/gm/snapshots" --epoch 99 --out "$TMP/x"
cp -r "$TMP/gm/snapshots" "$TMP/corrupt"
head -c 100 "$TMP/gm/snapshots/epoch_0002_sigma.npy" >"$TMP/corrupt/epoch_0002_sigma.npy"
cp "$TMP/pg/trajectory.csv" "$TMP/keep.csv"
expect_fail "epoch_0002_sigma.npy" "$GMFLOW" project --gm "$TMP/corrupt" --out "$TMP/pg"
cmp -s "$TMP/keep.csv" "$TMP/pg/trajectory.csv" || bad "a failed run changed the previous trajectory.csv"
ls "$TMP/pg" | grep -q tmp && bad "a temporary file was left in $TMP/pg"
"$GMFLOW" project >/dev/null 2>&1
[ $? -eq 2 ] || bad "missing --gm should be a usage error (exit 2)"
"$GMFLOW" project --help | grep -q "principal" || bad "--help"

if [ $fails -ne 0 ]; then
    echo "cli_project: $fails failure(s)"
    exit 1
fi
echo "cli_project: PASS"
