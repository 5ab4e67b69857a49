#!/usr/bin/env bash
# cls_variants.sh -- the experiment driver examples/cls_variants.sh (issue 15 part 2): option
# errors (exit 2 with a message naming the option; exit 1 for a missing binary or data), --help,
# and a --quick smoke run (a few seconds) whose outputs are checked independently of the driver:
# one epochs.csv per variant, data set and seed with the asked number of epochs, each variant's
# gmflow options in commands.csv as the variant name says (--cov lowrank --rank r, --weights
# learned), a low-rank and a learned-weights run that differ from the diagonal run of the same
# seed (so the option reached the trainer), and a rerun that skips every finished run.
# Skipped (77) without ../shared/data/mnist.
#
#   tests/cls_variants.sh <path to gmflow> [build dir]      (run from the repository root)
set -u
. "$(dirname "${BASH_SOURCE[0]}")/cli_common.sh" || exit 1
cli_start cls_variants "$@"
DRV=examples/cls_variants.sh
# expect RC PATTERN ARGS...: the driver exits RC and its stderr matches PATTERN
expect() {
    local want=$1 pat=$2
    shift 2
    "$DRV" --gmflow "$GMFLOW" --results "$TMP/r" --work "$TMP/w" "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    [ $rc -eq "$want" ] || bad "$* exited $rc, expected $want: $(head -2 "$TMP/err")"
    grep -q -- "$pat" "$TMP/err" || bad "$*: stderr lacks '$pat': $(head -2 "$TMP/err")"
}

"$DRV" --help >"$TMP/help" 2>&1 || bad "--help exited $?"
for w in --quick --seeds --epochs --variants --datasets --results lowrank_r diag_weights_K; do
    grep -q -- "$w" "$TMP/help" || bad "--help does not mention $w"
done
expect 2 "option --epochs needs a value" --epochs
expect 2 "option --seeds needs a value" --seeds
expect 2 "epochs must be a positive integer" --epochs 0
expect 2 "trials must be a positive integer" --seeds x
expect 2 "unknown option '--bogus'" --bogus
expect 2 "bad variant name 'lowrank_K4'" --variants lowrank_K4
expect 2 "bad variant name 'diag_K0'" --variants diag_K0
expect 2 "unknown data set 'cifar'" --variants diag_K4 --datasets cifar
"$DRV" --gmflow "$TMP/nope" --results "$TMP/r" >/dev/null 2>"$TMP/err"
rc=$?
[ $rc -eq 1 ] && grep -q "no gmflow binary at $TMP/nope" "$TMP/err" || bad "missing binary: rc $rc: $(cat "$TMP/err")"
"$DRV" --gmflow "$GMFLOW" --data "$TMP/nodata" --results "$TMP/r" >/dev/null 2>"$TMP/err"
rc=$?
[ $rc -eq 1 ] && grep -q "no data directory $TMP/nodata/mnist" "$TMP/err" || bad "missing data: rc $rc: $(cat "$TMP/err")"

if [ ! -d ../shared/data/mnist ] || [ ! -d ../shared/data/fashion-mnist ]; then
    [ $fails -eq 0 ] || exit 1
    echo "cls_variants: option checks passed; SKIP the quick run: no ../shared/data"
    exit 77
fi

# the quick run leaves out a variant whose option this gmflow lacks (a branch with one feature)
QV="diag_K4 lowrank_r2_K4 diag_weights_K4 diag_K5"
HELP=$("$GMFLOW" train --help 2>&1)
grep -q -- --cov <<<"$HELP" || { QV=${QV/lowrank_r2_K4 /}; echo "cls_variants: note: no --cov: no low-rank run"; }
grep -q -- --weights <<<"$HELP" || { QV=${QV/diag_weights_K4 /}; echo "cls_variants: note: no --weights: no learned-weights run"; }
NQ=$((2 * 2 * $(wc -w <<<"$QV")))
t0=$(date +%s)
if ! "$DRV" --quick --gmflow "$GMFLOW" --results "$TMP/q" --work "$TMP/qw" >"$TMP/q.log" 2>&1; then
    tail -5 "$TMP/q.log" >&2
    echo "cls_variants: FAIL: the --quick run failed ($fails other failure(s))" >&2
    exit 1
fi
t1=$(date +%s)
R=$TMP/q/cls_variants
for ds in mnist fashion; do
    for v in $QV; do
        for s in 1 2; do
            f=$R/$ds/$v/seed$s.csv
            if [ ! -s "$f" ]; then
                bad "no $f"
                continue
            fi
            awk -F, 'NR == 1 { ok = ($1 == "epoch" && $4 == "test_error" && $5 == "seconds"); next }
                     { n++; if ($1 != n || $4 < 0 || $4 > 1 || $5 <= 0) ok = 0 }
                     END { exit !(ok && n == 2) }' "$f" || bad "$f: not 2 epochs of sane rows"
        done
        cmd=$(grep -- "/$ds/$v/seed1\"" "$R/commands.csv")
        case $v in
        diag_K4 | diag_K5) want="--model gm --K ${v#diag_K} --epochs 2" ;;
        lowrank_r2_K4) want="--model gm --K 4 --cov lowrank --rank 2 --epochs 2" ;;
        diag_weights_K4) want="--model gm --K 4 --weights learned --epochs 2" ;;
        esac
        grep -q -- "$want" <<<"$cmd" || bad "$ds/$v: command lacks '$want': $cmd"
        grep -q -- "--train-limit 2000 --test-limit 500" <<<"$cmd" || bad "$ds/$v: no quick limits: $cmd"
    done
    # the variant options reach the trainer: other losses than the diagonal run of the same seed
    for v in $QV; do
        case $v in diag_K*) continue ;; esac
        cmp -s <(cut -d, -f2-4 "$R/$ds/diag_K4/seed1.csv") <(cut -d, -f2-4 "$R/$ds/$v/seed1.csv") &&
            bad "$ds: $v seed 1 has the diagonal run's losses"
    done
done
n=$(grep -c '^0,' "$R/commands.csv")
[ "$n" -eq $NQ ] || bad "commands.csv has $n successful runs, expected $NQ"
"$DRV" --quick --gmflow "$GMFLOW" --results "$TMP/q" --work "$TMP/qw" >"$TMP/q2.log" 2>&1 || bad "rerun failed"
n=$(grep -c "skip .* (exists)" "$TMP/q2.log")
[ "$n" -eq $NQ ] || bad "rerun skipped $n runs, expected $NQ"

if [ $fails -ne 0 ]; then
    echo "cls_variants: $fails failure(s)"
    exit 1
fi
echo "cls_variants: PASS ($QV: quick run $((t1 - t0)) s)"
