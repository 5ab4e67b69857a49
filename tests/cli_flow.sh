#!/usr/bin/env bash
# cli_flow.sh -- end-to-end tests of `gmflow flow`.
#   usage: bash tests/cli_flow.sh <path-to-gmflow> [<build-dir>]
# Good runs (default, both forms, --check-thm1, CSV data), the state.json round trip (1 + 1 = 2,
# also across the bw/euclid time rescaling), and bad input: every case must exit non-zero with a
# message naming the file or the option, and must leave an existing good output directory intact.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/cli_common.sh" || exit 1
cli_start cli_flow "$@"

# run NAME args...: run gmflow flow quietly, stdout in $TMP/NAME.out, stderr in $TMP/NAME.err
run() {
    local name=$1
    shift
    "$GMFLOW" flow -q "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
}

# expect_fail NAME "needle" [exit-code] -- args...: non-zero exit (or exactly exit-code), and
# stderr mentions needle.
expect_fail() {
    local name=$1 needle=$2 want=
    shift 2
    if [ "$1" != "--" ]; then
        want=$1
        shift
    fi
    shift # --
    run "$name" "$@"
    local rc=$?
    if [ $rc -eq 0 ]; then
        bad "$name: expected failure, got exit 0"
    elif [ -n "$want" ] && [ $rc -ne "$want" ]; then
        bad "$name: expected exit $want, got $rc ($(head -1 "$TMP/$name.err"))"
    else
        ok
    fi
    if grep -qF -- "$needle" "$TMP/$name.err"; then ok; else
        bad "$name: stderr does not mention '$needle': $(cat "$TMP/$name.err")"
    fi
    if grep -q "^gmflow flow: " "$TMP/$name.err"; then ok; else
        bad "$name: message not prefixed 'gmflow flow: '"
    fi
}

last_loss() { tail -n 1 "$1/trajectory.csv" | cut -d, -f2; }
last_t() { tail -n 1 "$1/trajectory.csv" | cut -d, -f1; }
# rel_close a b tol: |a - b| <= tol |b|
rel_close() { awk -v a="$1" -v b="$2" -v tol="$3" 'BEGIN { d = a - b; if (d < 0) d = -d;
    m = b < 0 ? -b : b; exit !(d <= tol * m) }'; }

have_numpy=0
if /usr/bin/python3 -c 'import numpy' >/dev/null 2>&1; then have_numpy=1; fi

# ------------------------------------------------------------------ default run
run default --out "$TMP/def"
check "default run exits 0 ($(cat "$TMP/default.err"))" test $? -eq 0
for f in trajectory.csv t.npy mu.npy Sigma.npy state.json run.json; do
    check "default run wrote $f" test -s "$TMP/def/$f"
done
check "no C.npy for the bw form" test ! -e "$TMP/def/C.npy"
check "trajectory has a header and 51 rows" test "$(wc -l <"$TMP/def/trajectory.csv")" -eq 52
check "trajectory header" test "$(head -1 "$TMP/def/trajectory.csv")" = "t,loss,wall_s,nrhs"
check "final time 5" test "$(last_t "$TMP/def")" = 5
l0=$(sed -n 2p "$TMP/def/trajectory.csv" | cut -d, -f2)
l1=$(last_loss "$TMP/def")
check "loss decreases along the flow ($l0 -> $l1)" awk -v a="$l0" -v b="$l1" 'BEGIN { exit !(b < a) }'
check "no temporary files left" test -z "$(ls "$TMP/def" | grep '\.tmp\.')"
check "summary on stdout" grep -q "RHS evaluations" "$TMP/default.out"
check "quiet: no progress lines" test ! -s "$TMP/default.err"
"$GMFLOW" flow --out "$TMP/prog" --n-out 3 --t-end 0.1 >/dev/null 2>"$TMP/prog.err"
check "progress lines on stderr without --quiet" test "$(grep -c 'loss =' "$TMP/prog.err")" -eq 3
if [ $have_numpy -eq 1 ]; then
    check "npy shapes, symmetry, run.json keys" /usr/bin/python3 - "$TMP/def" <<'EOF'
import json, sys
import numpy as np
d = sys.argv[1]
t, mu, S = (np.load(f"{d}/{n}.npy") for n in ("t", "mu", "Sigma"))
assert t.shape == (51,) and mu.shape == (51, 3, 4) and S.shape == (51, 3, 4, 4), (t.shape, mu.shape, S.shape)
assert t[0] == 0 and t[-1] == 5
assert np.array_equal(S, np.swapaxes(S, 2, 3))
assert np.all(np.linalg.eigvalsh(S) > 0)
r = json.load(open(f"{d}/run.json"))
for k in ("form", "data", "init", "n", "d", "K", "D", "solver", "stats", "wall_s", "loss_start", "loss_end"):
    assert k in r, k
assert (r["n"], r["d"], r["K"], r["D"]) == (200, 3, 3, 4)
assert r["stats"]["nfevals"] > 0 and r["stats"]["nsteps"] > 0
tr = np.loadtxt(f"{d}/trajectory.csv", delimiter=",", skiprows=1)
assert tr[-1, 1] == r["loss_end"] and tr[0, 1] == r["loss_start"]
s = json.load(open(f"{d}/state.json"))
assert s["t"] == 5 and np.array_equal(np.array(s["Sigma"]), S[-1]) and np.array_equal(np.array(s["mu"]), mu[-1])
EOF
fi

# ------------------------------------------------------------------ Theorem 1
run thm1_bw --out "$TMP/thm1_bw" --check-thm1
check "--check-thm1 (bw) exits 0 ($(cat "$TMP/thm1_bw.err"))" test $? -eq 0
check "--check-thm1 (bw) prints PASS" grep -q PASS "$TMP/thm1_bw.out"
run thm1_eu --out "$TMP/thm1_eu" --check-thm1 --form euclid --method rk8pd --t-end 6
check "--check-thm1 (euclid, rk8pd) exits 0 ($(cat "$TMP/thm1_eu.err"))" test $? -eq 0
check "euclid form writes C.npy" test -s "$TMP/thm1_eu/C.npy"
# the check must be able to fail: loose tolerances cannot meet 1e-8
run thm1_loose --out "$TMP/thm1_loose" --check-thm1 --rtol 1e-4 --atol 1e-6
check "--check-thm1 with loose tolerances exits 1" test $? -eq 1
check "--check-thm1 with loose tolerances prints FAIL" grep -q FAIL "$TMP/thm1_loose.out"

# ------------------------------------------------------------------ state.json round trip
run r1 --out "$TMP/r1" --t-end 1 &&
    run r2 --out "$TMP/r2" --init "$TMP/r1/state.json" --t-end 1 &&
    run r12 --out "$TMP/r12" --t-end 2
check "round-trip runs exit 0 ($(cat "$TMP/r1.err" "$TMP/r2.err" "$TMP/r12.err"))" test $? -eq 0
check "continued run starts at t = 1" test "$(sed -n 2p "$TMP/r2/trajectory.csv" | cut -d, -f1)" = 1
check "continued run ends at t = 2" test "$(last_t "$TMP/r2")" = 2
check "1 + 1 = 2: final loss $(last_loss "$TMP/r2") vs $(last_loss "$TMP/r12") within 1e-6" \
    rel_close "$(last_loss "$TMP/r2")" "$(last_loss "$TMP/r12")" 1e-6
check "continued run starts at the first run's final loss" \
    rel_close "$(sed -n 2p "$TMP/r2/trajectory.csv" | cut -d, -f2)" "$(last_loss "$TMP/r1")" 1e-14
# across forms: bw t = 1 is euclid t = K = 3; 3 more euclid time units = 1 bw unit
run r2e --out "$TMP/r2e" --init "$TMP/r1/state.json" --form euclid --t-end 3
check "bw -> euclid continuation exits 0 ($(cat "$TMP/r2e.err"))" test $? -eq 0
check "euclid continuation ends at t = 6" test "$(last_t "$TMP/r2e")" = 6
check "euclid continuation matches bw at t = 2" \
    rel_close "$(last_loss "$TMP/r2e")" "$(last_loss "$TMP/r12")" 1e-6
run r3 --out "$TMP/r3" --init "$TMP/r2e/state.json" --t-end 1
check "euclid -> bw continuation exits 0 ($(cat "$TMP/r3.err"))" test $? -eq 0
check "euclid -> bw continuation starts at t = 2" \
    test "$(sed -n 2p "$TMP/r3/trajectory.csv" | cut -d, -f1)" = 2

# ------------------------------------------------------------------ CSV data
awk 'BEGIN { srand(7); print "x1,x2,y"; for (i = 0; i < 40; i++) { a = rand() - .5; b = rand() - .5;
    printf "%.6f,%.6f,%.6f\n", a, b, (a > 0 ? a : 0) - 0.5 * b } }' >"$TMP/ok.csv"
run csv --out "$TMP/csv" --data "$TMP/ok.csv" -K 2 --t-end 0.5 --n-out 5
check "CSV data run exits 0 ($(cat "$TMP/csv.err"))" test $? -eq 0
check "CSV run wrote state.json" test -s "$TMP/csv/state.json"

# ------------------------------------------------------------------ bad input
good="$TMP/good"
run good --out "$good" --t-end 0.5 --n-out 3
check "good run for the keep-intact checks exits 0" test $? -eq 0
sum_before=$(cat "$good"/* | cksum)

printf 'x1,x2,y\n1,2,3\n4,5\n' >"$TMP/ragged.csv"
printf '1,2,3\n4,abc,6\n' >"$TMP/nonnum.csv"
printf '1,2,3\n4,nan,6\n' >"$TMP/nan.csv"
: >"$TMP/empty.csv"
printf '1\n2\n' >"$TMP/onecol.csv"
head -c 300 "$TMP/r1/state.json" >"$TMP/trunc.json"
printf 'this is not json\n' >"$TMP/corrupt.json"
cat >"$TMP/notpd.json" <<'EOF'
{"format": "gmflow-state", "version": 1, "form": "bw", "t": 0, "K": 1, "d": 3,
 "mu": [[0.1, 0.2, 0.3, 0.4]],
 "Sigma": [[[1, 2, 0, 0], [2, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]]}
EOF
sed 's/\[1, 2, 0, 0\], \[2, 1, 0, 0\]/[1, 0, 0, 0], [0, 0, 0, 0]/' "$TMP/notpd.json" >"$TMP/singular.json"
sed 's/"version": 1/"version": 7/' "$TMP/notpd.json" >"$TMP/version.json"

expect_fail ragged "ragged.csv: line 3" -- --out "$good" --data "$TMP/ragged.csv"
expect_fail nonnum "nonnum.csv: line 2, column 2" -- --out "$good" --data "$TMP/nonnum.csv"
expect_fail nan "nan.csv: line 2, column 2" -- --out "$good" --data "$TMP/nan.csv"
expect_fail empty "empty.csv: empty file" -- --out "$good" --data "$TMP/empty.csv"
expect_fail onecol "onecol.csv: line 1" -- --out "$good" --data "$TMP/onecol.csv"
expect_fail nofile "missing.csv" -- --out "$good" --data "$TMP/missing.csv"
expect_fail dmismatch "state.json: the state has d = 3" -- \
    --out "$good" --data "$TMP/ok.csv" --init "$TMP/r1/state.json"
expect_fail dmismatch_toy "d = 3" -- --out "$good" --d 2 --init "$TMP/r1/state.json"
expect_fail Kconflict "K = 3" -- --out "$good" -K 2 --init "$TMP/r1/state.json"
expect_fail trunc "trunc.json" -- --out "$good" --init "$TMP/trunc.json"
check "truncated state: message says truncated" grep -q truncated "$TMP/trunc.err"
expect_fail corrupt "corrupt.json: line 1" -- --out "$good" --init "$TMP/corrupt.json"
expect_fail version "version.json" -- --out "$good" --init "$TMP/version.json"
expect_fail notpd "notpd.json" -- --out "$good" --init "$TMP/notpd.json"
check "non-PD state: message says positive" grep -q "positive" "$TMP/notpd.err"
expect_fail singular_euclid "singular.json" -- --out "$good" --init "$TMP/singular.json" --form euclid
expect_fail method "--method: unknown method 'foo'" -- --out "$good" --method foo
expect_fail rtol "--rtol" -- --out "$good" --rtol -1e-8
expect_fail atol "--atol" -- --out "$good" --atol -1
expect_fail rtol_nan "--rtol" -- --out "$good" --rtol nan
expect_fail K0 "--components" -- --out "$good" -K 0
expect_fail nout "--n-out" -- --out "$good" --n-out 1
expect_fail tend "--t-end" -- --out "$good" --t-end -1
expect_fail gamma "--gamma" -- --out "$good" --gamma 0
expect_fail form "--form" -- --out "$good" --form sqrt
expect_fail unknown_opt "--bogus" 2 -- --out "$good" --bogus
expect_fail missing_val "--rtol" 2 -- --out "$good" --rtol
expect_fail stray "stray" 2 -- --out "$good" stray
expect_fail data_and_toy "--n" 2 -- --out "$good" --data "$TMP/ok.csv" --n 10
expect_fail init_and_seed "--seed" 2 -- --out "$good" --init "$TMP/r1/state.json" --seed 4
expect_fail solver "solver failed" 1 -- --out "$good" --max-steps 2
expect_fail outdir "not a directory" 1 -- --out "$TMP/ok.csv"

check "failing runs left the good output intact" test "$(cat "$good"/* | cksum)" = "$sum_before"
check "failing runs left no temporary files" test -z "$(ls "$good" | grep -v -E '^(trajectory.csv|t.npy|mu.npy|Sigma.npy|state.json|run.json)$')"

# ------------------------------------------------------------------ --jacobian, --polish
expect_fail jacobian "--jacobian" -- --out "$good" --jacobian bogus
for j in dq jvp dense; do
    run "jac_$j" --method bdf --jacobian "$j" --t-end 5 --n-out 3 --out "$TMP/jac_$j"
    check "--jacobian $j runs" test $? -eq 0
    check "--jacobian $j is reported" grep -qF "jacobian $j" "$TMP/jac_$j.out"
done
check "--jacobian dq and dense agree on the final loss to 1e-6" python3 -c "
import sys
a, b = [float(open(sys.argv[i]).read().split('->')[1].split()[0]) for i in (1, 2)]
sys.exit(abs(a - b) > 1e-6 * abs(a))" "$TMP/jac_dq.out" "$TMP/jac_dense.out"
run polish --form euclid --method bdf --t-end 5 --n-out 3 --polish --out "$TMP/polish"
check "--polish runs" test $? -eq 0
check "--polish reports the index" grep -qE "index [0-9]+ .*-> (minimum|saddle|not a stationary point)" "$TMP/polish.out"
check "--polish writes spectrum.csv" test "$(head -1 "$TMP/polish/spectrum.csv")" = "set,i,eigenvalue"
check "spectrum.csv has N = 60 hessian rows" test "$(grep -c '^hessian,' "$TMP/polish/spectrum.csv")" -eq 60

# ------------------------------------------------------------------ --gsl-norm
# rk8pd's RMS error norm: recorded in run.json, final loss within the tolerances of the max-norm
# run and of CVODE, no more RHS calls with 2 outputs (steps not held by output times)
for nm in max rms; do
    run "norm_$nm" --method rk8pd --gsl-norm $nm --t-end 2 --n-out 2 --out "$TMP/norm_$nm"
    check "--gsl-norm $nm runs" test $? -eq 0
    check "run.json records gsl_norm $nm" grep -q "\"gsl_norm\": \"$nm\"" "$TMP/norm_$nm/run.json"
done
run norm_ref --method adams --rtol 1e-11 --atol 1e-13 --t-end 2 --n-out 2 --out "$TMP/norm_ref"
check "--gsl-norm: reference run" test $? -eq 0
check "--gsl-norm rms: final loss agrees with max and CVODE, fewer RHS calls" python3 - "$TMP" <<'PY'
import json, sys
r = {k: json.load(open(f"{sys.argv[1]}/norm_{k}/run.json")) for k in ("max", "rms", "ref")}
ref = r["ref"]["loss_end"]
ok = all(abs(r[k]["loss_end"] - ref) <= 1e-6 * abs(ref) for k in ("max", "rms"))
sys.exit(0 if ok and r["rms"]["stats"]["nfevals"] <= r["max"]["stats"]["nfevals"] else 1)
PY
expect_fail norm_bad "--gsl-norm" 2 -- --gsl-norm l2 --out "$TMP/norm_bad"

# ------------------------------------------------------------------ help
"$GMFLOW" flow --help >"$TMP/help.out" 2>&1
check "--help exits 0" test $? -eq 0
for w in --data --init --form --method --gsl-norm --rtol --check-thm1 --jacobian --polish trajectory.csv Sigma.npy state.json run.json "default 51"; do
    check "--help mentions $w" grep -qF -- "$w" "$TMP/help.out"
done

if [ $fails -eq 0 ]; then
    echo "cli_flow: ok ($checks checks)"
    exit 0
fi
cli_keep_tmp=1
echo "cli_flow: FAIL ($fails of $checks checks failed; files in $TMP)"
exit 1
