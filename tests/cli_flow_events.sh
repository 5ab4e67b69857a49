#!/usr/bin/env bash
# cli_flow_events.sh -- `gmflow flow` over long horizons (issue 10) and the monotone loss (issue 9):
#   usage: bash tests/cli_flow_events.sh <path-to-gmflow> [<build-dir>]
# method auto (switches to BDF on a long horizon and agrees with BDF run on its own), output
# times (--t-out list and file, --log-times: the times asked for, and the state at t = 5 the
# same as on the default grid: outputs come from dense output and do not change the steps),
# events (a loss crossing: the state written at the event has that loss when evaluated again
# by a fresh run, and rk8pd's bisection finds the same time; stop and continue; the event state
# continues with --init), a component collapse and the stall on the bench toy (needs
# build/bench/bench_rhs and NumPy, else that part is skipped), the loss-increase failure, and
# bad option combinations (exit 2 naming the option), --loss-atol recorded in run.json.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/cli_common.sh" || exit 1
cli_start cli_flow_events "$@"
run() {
    local name=$1
    shift
    "$GMFLOW" flow -q "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
}
# expect NAME CODE NEEDLE -- args: exit status CODE and stderr mentions NEEDLE
expect() {
    local name=$1 code=$2 needle=$3
    shift 4
    run "$name" "$@"
    local rc=$?
    check "$name: exit $code (got $rc: $(head -c 300 "$TMP/$name.err"))" test $rc -eq "$code"
    check "$name: stderr mentions '$needle': $(head -c 300 "$TMP/$name.err")" grep -qF -- "$needle" "$TMP/$name.err"
}
# json FILE EXPR: a Python expression over r = the parsed file
json() { /usr/bin/python3 -c "import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if ($2) else 1)" "$1"; }
rel_close() { awk -v a="$1" -v b="$2" -v tol="$3" 'BEGIN { d = a - b; if (d < 0) d = -d;
    m = b < 0 ? -b : b; exit !(d <= tol * m) }'; }
jget() { /usr/bin/python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(repr($2))" "$1"; }
have_numpy=0
if /usr/bin/python3 -c 'import numpy' >/dev/null 2>&1; then have_numpy=1; fi

# ------------------------------------------------------------------ method auto
run auto --t-end 2000 --n-out 5 --out "$TMP/auto"
check "auto at t-end 2000 exits 0 ($(cat "$TMP/auto.err"))" test $? -eq 0
check "auto switched to bdf (run.json auto_switches, method_last)" \
    json "$TMP/auto/run.json" 'len(r["auto_switches"]) == 1 and 0 < r["auto_switches"][0] < 2000 and r["method_last"] == "bdf" and r["solver"]["method"] == "auto"'
check "auto: summary names the switch" grep -q "switched adams -> bdf" "$TMP/auto.out"
run bdf --t-end 2000 --n-out 5 --method bdf --out "$TMP/bdf"
la=$(jget "$TMP/auto/run.json" 'r["loss_end"]')
lb=$(jget "$TMP/bdf/run.json" 'r["loss_end"]')
check "auto and bdf agree at t = 2000 (loss $la vs $lb)" rel_close "$la" "$lb" 1e-6
run short --out "$TMP/short"
check "auto does not switch on the default short run" json "$TMP/short/run.json" 'r["auto_switches"] == [] and r["method_last"] == "adams"'

# ------------------------------------------------------------------ output times
run tout --t-out 0.5,1,2.5,5 --out "$TMP/tout"
check "--t-out exits 0 ($(cat "$TMP/tout.err"))" test $? -eq 0
check "--t-out: times 0 (added), 0.5, 1, 2.5, 5" test "$(cut -d, -f1 "$TMP/tout/trajectory.csv" | tr '\n' ' ')" = "t 0 0.5 1 2.5 5 "
check "--t-out: same final state as the default grid (dense output does not cut steps)" \
    test "$(jget "$TMP/tout/run.json" 'r["loss_end"]')" = "$(jget "$TMP/short/run.json" 'r["loss_end"]')"
printf '# times\n0.25\n1, 5\n' >"$TMP/times.txt"
run toutf --t-out "@$TMP/times.txt" --out "$TMP/toutf"
check "--t-out @FILE: times 0, 0.25, 1, 5" test "$(cut -d, -f1 "$TMP/toutf/trajectory.csv" | tr '\n' ' ')" = "t 0 0.25 1 5 "
run logt --log-times 4 --t-first 0.01 --t-end 10 --out "$TMP/logt"
check "--log-times 4: times 0, 0.01, 0.1, 1, 10" \
    json "$TMP/logt/run.json" 'r["n_out"] == 5 and r["t_final"] == 10'
check "--log-times 4: trajectory rows 0, 0.01, 0.1, 1, 10" /usr/bin/python3 -c "
import sys; t = [float(l.split(',')[0]) for l in open(sys.argv[1]).readlines()[1:]]
want = [0, 0.01, 0.1, 1, 10]
sys.exit(0 if len(t) == 5 and all(abs(a - b) <= 1e-14 * b for a, b in zip(t, want)) else 1)" "$TMP/logt/trajectory.csv"

# ------------------------------------------------------------------ events
run evloss --event-loss 0.05 --out "$TMP/evloss"
check "--event-loss exits 0 ($(cat "$TMP/evloss.err"))" test $? -eq 0
check "loss event recorded and the run stopped there" \
    json "$TMP/evloss/run.json" 'r["stopped_by_event"] and len(r["events"]) == 1 and r["events"][0]["kind"] == "loss" and r["events"][0]["state"] == "event_1_state.json" and r["t_final"] == r["events"][0]["t"]'
check "event state file written" test -s "$TMP/evloss/event_1_state.json"
# an independent evaluation of the loss at the event state: a fresh run from it
run evinit --data-seed 1 --init "$TMP/evloss/event_1_state.json" --t-end 1e-12 --n-out 2 --out "$TMP/evinit"
check "the event state is usable with --init ($(cat "$TMP/evinit.err"))" test $? -eq 0
l0=$(jget "$TMP/evinit/run.json" 'r["loss_start"]')
check "loss at the event state is 0.05 ($l0)" rel_close "$l0" 0.05 1e-9
te=$(jget "$TMP/evloss/run.json" 'r["events"][0]["t"]')
run evrk --event-loss 0.05 --method rk8pd --out "$TMP/evrk"
tr=$(jget "$TMP/evrk/run.json" 'r["events"][0]["t"]')
check "rk8pd (bisection by step retakes) finds the same event time ($te vs $tr)" rel_close "$te" "$tr" 1e-6
run evcont --event-loss 0.05 --on-event continue --out "$TMP/evcont"
check "--on-event continue: recorded, ran to the end" \
    json "$TMP/evcont/run.json" 'not r["stopped_by_event"] and len(r["events"]) == 1 and r["t_final"] == 5'
run evgrad --stop-grad 1e-3 --t-end 2000 --out "$TMP/evgrad"
check "--stop-grad: a gradient-norm event" json "$TMP/evgrad/run.json" 'r["events"][0]["kind"] == "grad" and abs(r["events"][0]["value"] - 1e-3) < 1e-9'

# ------------------------------------------------------------------ the loss must not increase
expect loose 1 "loss increased" -- --rtol 1e10 --atol 1e10 --out "$TMP/loose"

# ------------------------------------------------------------------ bench toy: collapse, stall
if [ $have_numpy -eq 1 ] && [ -x "$BUILD/bench/bench_rhs" ]; then
    "$BUILD/bench/bench_rhs" flow --n 200 --d 3 --K 4 --dir "$TMP/bt" --T 1e-9 --method adams >/dev/null &&
        /usr/bin/python3 tools/bench_toy_to_cli.py "$TMP/bt" >/dev/null
    BT="--data $TMP/bt/data.csv --init $TMP/bt/init.json"
    # shellcheck disable=SC2086
    run collapse $BT --t-end 500 --collapse 1e-6 --out "$TMP/collapse"
    check "collapse run exits 0 ($(cat "$TMP/collapse.err"))" test $? -eq 0
    check "collapse: the word collapse in the report" grep -q "component 0 collapse" "$TMP/collapse.out"
    check "collapse: event kind, component, ratio" \
        json "$TMP/collapse/run.json" 'r["events"][0]["kind"] == "collapse" and r["events"][0]["component"] == 0 and abs(r["events"][0]["value"] - 1e-6) < 1e-9 and 250 < r["events"][0]["t"] < 320'
    start=$(date +%s)
    # shellcheck disable=SC2086
    "$GMFLOW" flow $BT --t-end 500 --stall-steps 3000 --out "$TMP/stall" >"$TMP/stall.out" 2>"$TMP/stall.err"
    rc=$?
    took=$(($(date +%s) - start))
    check "stall: exit 1 (got $rc)" test $rc -eq 1
    check "stall: stopped within 60 s of wall time (took $took s)" test $took -le 60
    check "stall: message names no progress, the time and the component" \
        grep -q "no progress at t = 3[89][0-9].*Component 0 looks singular" "$TMP/stall.err"
    check "stall: progress lines between output times" grep -q "^  \.\.\. t = " "$TMP/stall.err"
else
    echo "cli_flow_events: bench toy part skipped (needs $BUILD/bench/bench_rhs and NumPy)"
fi

# ------------------------------------------------------------------ usage errors
expect u1 2 "--t-out" -- --t-out 1,2 --t-end 3 --out "$TMP/u"
expect u2 2 "--t-out" -- --t-out 1,0.5 --out "$TMP/u"
expect u3 2 "No such file" -- --t-out @"$TMP/none.txt" --out "$TMP/u"
expect u4 2 "--collapse" -- --collapse 2 --out "$TMP/u"
expect u5 2 "--on-event" -- --on-event maybe --out "$TMP/u"
expect u6 2 "--t-first" -- --t-first 0.1 --out "$TMP/u"
expect u7 2 "--check-thm1" -- --stop-grad 1e-3 --check-thm1 --out "$TMP/u"
expect u8 2 "--n-out" -- --log-times 3 --n-out 4 --out "$TMP/u"
expect u9 2 "--loss-atol" -- --loss-atol -1 --out "$TMP/u"
expect u10 2 "--loss-atol" -- --loss-atol nan --out "$TMP/u"
# --loss-atol reaches the library (run.json records it; its effect: tests/test_ode_driver)
if run la --t-end 1 --n-out 3 --loss-atol 1e-16 --out "$TMP/la"; then
    check "--loss-atol 1e-16 in run.json" json "$TMP/la/run.json" 'r["solver"]["loss_atol"] == 1e-16'
else
    bad "--loss-atol 1e-16: $(head -c 300 "$TMP/la.err")"
fi

echo "cli_flow_events: $checks checks, $fails failures"
[ $fails -eq 0 ]
