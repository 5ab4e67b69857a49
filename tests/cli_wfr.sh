#!/usr/bin/env bash
# cli_wfr.sh -- `gmflow flow --geometry wfr` (docs/WFR.md) end to end.
#   usage: bash tests/cli_wfr.sh <path-to-gmflow>
# - --geometry wfr --fr-weight 0 from equal weights is the W flow: its mu/Sigma trajectories equal
#   the default run's to 1e-9 relative (an independent route: the W code path), weights stay 1/K;
# - a WFR run writes w.npy (T x K) on the simplex (|sum - 1| <= 1e-12, >= 0), "w" in state.json,
#   "geometry"/"fr_weight" in run.json, and the weights move (alpha 5);
# - 1 + 1 = 2: continuing the WFR run from its state.json for t = 1 lands where a run of t = 2
#   does (1e-6 relative); an old state without "w" starts a WFR run with equal weights;
# - bad input exits 2 (usage) or 1 (a state with learned weights given to the W flow).
set -u
. "$(dirname "${BASH_SOURCE[0]}")/cli_common.sh" || exit 1
cli_start cli_wfr "$@"
PY=/usr/bin/python3
export OPENBLAS_NUM_THREADS=1
run() { "$GMFLOW" flow -q -K 3 --rtol 1e-11 --atol 1e-13 "$@" >/dev/null 2>"$TMP/err"; }

run --t-end 2 --n-out 5 --out "$TMP/w" || bad "W run: $(cat "$TMP/err")"
run --t-end 2 --n-out 5 --geometry wfr --fr-weight 0 --out "$TMP/w0" || bad "alpha 0: $(cat "$TMP/err")"
run --t-end 2 --n-out 5 --geometry wfr --fr-weight 5 --out "$TMP/a" || bad "alpha 5: $(cat "$TMP/err")"
run --t-end 1 --n-out 3 --geometry wfr --fr-weight 5 --out "$TMP/h" || bad "half: $(cat "$TMP/err")"
run --t-end 1 --n-out 3 --geometry wfr --fr-weight 5 --init "$TMP/h/state.json" --out "$TMP/h2" ||
    bad "continue: $(cat "$TMP/err")"
run --t-end 1 --n-out 3 --geometry wfr --init "$TMP/w/state.json" --out "$TMP/old" ||
    bad "old state: $(cat "$TMP/err")"
$PY - "$TMP" <<'PY' || bad "numerical checks (above)"
import json, sys
import numpy as np
T = sys.argv[1]
ok = True
def req(c, msg):
    global ok
    if not c:
        print("  " + msg, file=sys.stderr); ok = False
for f in ("mu", "Sigma"):
    a, b = np.load(f"{T}/w/{f}.npy"), np.load(f"{T}/w0/{f}.npy")
    e = np.abs(a - b).max() / np.abs(a).max()
    req(e <= 1e-9, f"alpha 0 vs W: {f} differs by {e:.2e}")
w0 = np.load(f"{T}/w0/w.npy")
req(np.abs(w0 - 1 / 3).max() <= 1e-15, "alpha 0: weights moved")
w = np.load(f"{T}/a/w.npy")
req(w.shape == (5, 3), f"w.npy shape {w.shape}")
req(np.abs(w.sum(1) - 1).max() <= 1e-12 and w.min() >= 0, "weights off the simplex")
req(np.abs(w[-1] - 1 / 3).max() > 1e-3, "alpha 5: weights did not move")
s = json.load(open(f"{T}/a/state.json"))
req(np.allclose(s["w"], w[-1], rtol=0, atol=0), "state.json w != last w.npy row")
r = json.load(open(f"{T}/a/run.json"))
req(r.get("geometry") == "wfr" and r.get("fr_weight") == 5, "run.json geometry/fr_weight")
s2 = json.load(open(f"{T}/h2/state.json"))
for k in ("w", "mu", "Sigma"):
    a, b = np.array(s[k]), np.array(s2[k])
    e = np.abs(a - b).max() / np.abs(a).max()
    req(e <= 1e-6, f"1 + 1 = 2: {k} differs by {e:.2e}")
req(abs(s2["t"] - 2) < 1e-12, "continued run's t")
so = json.load(open(f"{T}/old/state.json"))
req(abs(sum(so["w"]) - 1) <= 1e-12, "old state: weights")
sys.exit(0 if ok else 1)
PY
expect() { # expect CODE NEEDLE args...
    local code=$1 needle=$2
    shift 2
    "$GMFLOW" flow -q -K 2 --t-end 0.1 --n-out 2 --out "$TMP/bad" "$@" >/dev/null 2>"$TMP/err"
    local rc=$?
    [ $rc = "$code" ] && grep -q -- "$needle" "$TMP/err" || bad "$* -> exit $rc, $(cat "$TMP/err")"
}
expect 2 "--geometry" --geometry sinkhorn
expect 2 "--fr-weight" --geometry wfr --fr-weight -1
expect 2 "--fr-weight" --geometry wfr --fr-weight nan
expect 2 "--fr-weight needs" --fr-weight 1
expect 2 "Sigma form only" --geometry wfr --form euclid
expect 2 "check-thm1" --geometry wfr --check-thm1
expect 2 "polish" --geometry wfr --polish
expect 2 "exact Jacobian" --geometry wfr --method bdf --jacobian dense
"$GMFLOW" flow -q --t-end 0.1 --n-out 2 --init "$TMP/a/state.json" --out "$TMP/bad" >/dev/null 2>"$TMP/err"
rc=$?
[ $rc = 1 ] && grep -q "learned weights" "$TMP/err" || bad "W run from a WFR state: exit $rc"
sed 's/"w": \[/"w": [0.5, /' "$TMP/a/state.json" >"$TMP/badw.json"
"$GMFLOW" flow -q --geometry wfr --t-end 0.1 --n-out 2 --init "$TMP/badw.json" --out "$TMP/bad" \
    >/dev/null 2>"$TMP/err"
rc=$?
[ $rc = 1 ] && grep -q "badw.json" "$TMP/err" || bad "state with 4 weights for K = 3: exit $rc"
$PY -c "import json,sys; s=json.load(open(sys.argv[1])); s['w'][0]+=0.1; json.dump(s,open(sys.argv[2],'w'))" \
    "$TMP/a/state.json" "$TMP/sumw.json"
"$GMFLOW" flow -q --geometry wfr --t-end 0.1 --n-out 2 --init "$TMP/sumw.json" --out "$TMP/bad" \
    >/dev/null 2>&1 2>"$TMP/err"
rc=$?
[ $rc = 1 ] && grep -q "sum to" "$TMP/err" || bad "state with weights summing to 1.1: exit $rc"
if [ $fails = 0 ]; then echo "cli_wfr: pass"; else echo "cli_wfr: $fails FAILED"; exit 1; fi
