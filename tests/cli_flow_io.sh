#!/usr/bin/env bash
# cli_flow_io.sh -- `gmflow flow`'s output set under injected failures and crashes, stale
# temporaries, and the up-front checks of option values (exit status 2) and of --init states.
#   usage: bash tests/cli_flow_io.sh <path-to-gmflow> [<build-dir>]
# The fault hooks (gmflow/outset.h): GMFLOW_TEST_FAIL_WRITE=k fails the k-th commit point of the
# process as a full disk would; GMFLOW_TEST_CRASH_WRITE=k kills it (SIGKILL) there.  A bw run
# has 6 files (commit points 1-6), then the swap (7) and the removal of the old set (8).
set -u
. "$(dirname "${BASH_SOURCE[0]}")/cli_common.sh" || exit 1
cli_start cli_flow_io "$@"
unset GMFLOW_TEST_FAIL_WRITE GMFLOW_TEST_CRASH_WRITE

run() { # run NAME args...: stdout/stderr in $TMP/NAME.{out,err}, exit status in $rc
    local name=$1
    shift
    "$GMFLOW" flow -q "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
    rc=$?
}
sums() { (cd "$1" && for f in $(ls | sort); do cksum "$f"; done); }
# the set's files without the timing columns/fields, to compare two runs of the same flow
content() { (cd "$1" && cksum t.npy mu.npy Sigma.npy state.json && cut -d, -f1,2,4 trajectory.csv); }

A=(--t-end 0.5 --n-out 5 --seed 2)
B=(--t-end 0.5 --n-out 5 --seed 3)

# ------------------------------------------------------------------ reference sets
run refB --out "$TMP/refB" "${B[@]}"
check "reference run B exits 0 ($(cat "$TMP/refB.err"))" test $rc -eq 0
out="$TMP/set/out"
run A --out "$out" "${A[@]}"
check "run A exits 0 ($(cat "$TMP/A.err"))" test $rc -eq 0
check "no staging directory left after a good run" test -z "$(ls "$TMP/set" | grep -v '^out$')"
echo "my notes" >"$out/notes.txt"
sumA=$(sums "$out")

# ------------------------------------------------------------------ injected write failures
for k in 1 2 3 4 5 6 7; do
    GMFLOW_TEST_FAIL_WRITE=$k run fail$k --out "$out" "${B[@]}"
    check "failure at commit point $k: exit 1 (got $rc)" test $rc -eq 1
    check "failure at $k: message has strerror ($(cat "$TMP/fail$k.err"))" \
        grep -q "No space left on device" "$TMP/fail$k.err"
    check "failure at $k: message names --out" grep -q -- "--out $out" "$TMP/fail$k.err"
    check "failure at $k: the old set is intact, no mixing" test "$(sums "$out")" = "$sumA"
    check "failure at $k: no staging directory left" test -z "$(ls "$TMP/set" | grep -v '^out$')"
done
check "failure in a file names the file" grep -q "t.npy" "$TMP/fail1.err"

# ------------------------------------------------------------------ injected crashes
for k in 1 4 6 7; do
    GMFLOW_TEST_CRASH_WRITE=$k run crash$k --out "$out" "${B[@]}"
    check "crash at commit point $k: killed (status $rc)" test $rc -eq 137
    check "crash at $k: the old set is intact" test "$(sums "$out")" = "$sumA"
done
check "crashes left staging directories behind" test -n "$(ls "$TMP/set" | grep '^out\.tmp\.')"
GMFLOW_TEST_CRASH_WRITE=8 run crash8 --out "$out" "${B[@]}"
check "crash after the swap: killed (status $rc)" test $rc -eq 137
check "crash after the swap: the whole new set is in place" \
    test "$(content "$out")" = "$(content "$TMP/refB")"
check "crash after the swap: the user's file is kept" grep -q "my notes" "$out/notes.txt"
# the next run removes the dead processes' temporaries and replaces the set
run A2 --out "$out" "${A[@]}"
check "run after the crashes exits 0 ($(cat "$TMP/A2.err"))" test $rc -eq 0
check "stale staging directories of dead processes removed" \
    test -z "$(ls "$TMP/set" | grep -v '^out$')"
run A3 --out "$TMP/A3" "${A[@]}"
check "run after crashes equals a fresh run A" test "$(content "$out")" = "$(content "$TMP/A3")"

# a stale per-file temporary inside the set and a live process's staging directory
sleep 30 &
live=$!
mkdir "$TMP/set/out.tmp.$live"
(exit 0) &
dead=$!
wait $dead
: >"$out/t.npy.tmp.$dead"
run A4 --out "$out" "${A[@]}"
check "run with stale temporaries exits 0 ($(cat "$TMP/A4.err"))" test $rc -eq 0
check "a dead process's file temporary removed" test ! -e "$out/t.npy.tmp.$dead"
check "a live process's staging directory kept" test -d "$TMP/set/out.tmp.$live"
kill $live 2>/dev/null
wait $live 2>/dev/null

# euclid then bw: C.npy must not survive into the bw set
run eu --out "$TMP/mix" --form euclid --t-end 0.5 --n-out 3
run bw --out "$TMP/mix" --t-end 0.5 --n-out 3
check "bw set over an euclid set: exit 0" test $rc -eq 0
check "bw set over an euclid set: no C.npy left from the euclid run" test ! -e "$TMP/mix/C.npy"

# ------------------------------------------------------------------ option values: exit 2
expect() { # expect NAME STATUS NEEDLE [NOT-NEEDLE] -- args...
    local name=$1 want=$2 needle=$3 not=
    shift 3
    if [ "$1" != "--" ]; then
        not=$1
        shift
    fi
    shift
    run "$name" --out "$out" "$@"
    check "$name: exit $want (got $rc: $(head -1 "$TMP/$name.err"))" test $rc -eq "$want"
    check "$name: stderr mentions '$needle'" grep -qF -- "$needle" "$TMP/$name.err"
    if [ -n "$not" ]; then
        check "$name: stderr does not say '$not'" test -z "$(grep -F -- "$not" "$TMP/$name.err")"
    fi
}
sumA=$(sums "$out")
expect tend_huge 2 "--t-end" "loss is not finite" -- --t-end 1e300
expect atol0_adams 2 "--atol 0" -- --atol 0
expect atol0_bdf 2 "--atol 0" -- --atol 0 --method bdf
expect rtol_neg 2 "--rtol" -- --rtol -1
expect nout_bad 2 "--n-out" -- --n-out 1
expect gamma_bad 2 "--gamma" -- --gamma 0
expect method_bad 2 "--method" -- --method foo
expect k_bad 2 "--components" -- -K abc
expect noise_bad 2 "--noise" -- --noise -1
expect dot 1 "'.'" -- --t-end 0.1 --out .
cat >"$TMP/big.json" <<'JSON'
{"format": "gmflow-state", "version": 1, "form": "bw", "t": 0, "K": 1, "d": 3,
 "mu": [[0.1, 0.2, 0.3, 0.4]],
 "Sigma": [[[1e308, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]]}
JSON
expect sigma_huge 1 "big.json" "tout too far back" -- --init "$TMP/big.json" --t-end 1
check "sigma_huge: message names Sigma" grep -q "Sigma entry" "$TMP/sigma_huge.err"
check "the rejected runs left the set intact" test "$(sums "$out")" = "$sumA"
run atol0_rk --out "$TMP/atol0" --atol 0 --method rk8pd --t-end 0.2 --n-out 3
check "--atol 0 with rk8pd still runs (exit $rc: $(cat "$TMP/atol0_rk.err"))" test $rc -eq 0

if [ $fails -eq 0 ]; then
    echo "cli_flow_io: ok ($checks checks)"
    exit 0
fi
cli_keep_tmp=1
echo "cli_flow_io: FAIL ($fails of $checks checks failed; files in $TMP)"
exit 1
