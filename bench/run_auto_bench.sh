#!/usr/bin/env bash
# run_auto_bench.sh -- `gmflow flow --method auto` (the default) against adams, bdf and rk8pd on
# the built-in toy at long horizons (docs/FLOWS.md, "Method auto").  Pinned to one core, the
# methods interleaved (a b c d, a b c d, ...) so that a load change hits all of them.
#   usage: bench/run_auto_bench.sh [-h | --help] [GMFLOW] [CORE] [ROUNDS] [T_END...]
#   (defaults: build/gmflow, core 1, 3 rounds, T_END 2e4 2e5)
#
# The slow methods at 2e5 (adams about 3 min, rk8pd about 4 min) run once (round 1 only).
# Output: CSV on stdout: t_end,method,round,wall_s,user_s,nsteps,nfevals,loss_end
set -u
# me, usage, usage_error, positional_args: the scripts' convention
# shellcheck source-path=SCRIPTDIR source=../tools/scriptargs.sh
. "$(dirname "$0")/../tools/scriptargs.sh"
positional_args "$@"
G=${pos[0]:-build/gmflow}
CORE=${pos[1]:-1}
ROUNDS=${pos[2]:-3}
TENDS=${pos[*]:3}
TENDS=${TENDS:-2e4 2e5}
[[ $CORE =~ ^[0-9]+$ ]] || usage_error "CORE must be a core number (got '$CORE')"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || usage_error "ROUNDS must be a positive integer (got '$ROUNDS')"
for T in $TENDS; do
    { [[ $T =~ ^[0-9]+(\.[0-9]*)?([eE][+]?[0-9]+)?$ ]] && [[ ! $T =~ ^0*\.?0*([eE].*)?$ ]]; } ||
        usage_error "T_END must be a positive number (got '$T')"
done
[ -x "$G" ] || { echo "$me: $G: not found or not executable" >&2; exit 1; }
OUT=$(mktemp -d "${TMPDIR:-/tmp}/gmflow_auto_bench.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
export OPENBLAS_NUM_THREADS=1
echo "t_end,method,round,wall_s,user_s,nsteps,nfevals,loss_end"
for T in $TENDS; do
    for r in $(seq 1 "$ROUNDS"); do
        for m in adams bdf rk8pd auto; do
            if [ "$r" -gt 1 ] && [ "$T" = 2e5 ] && { [ $m = adams ] || [ $m = rk8pd ]; }; then
                continue
            fi
            /usr/bin/time -f "%e %U" -o "$OUT/time" taskset -c "$CORE" "$G" flow -q --t-end "$T" \
                --method $m --max-steps 100000000 --stall-steps 0 --stall-seconds 0 \
                --out "$OUT/run" >/dev/null 2>"$OUT/err" || { cat "$OUT/err" >&2; continue; }
            read -r wall user <"$OUT/time"
            /usr/bin/python3 - "$OUT/run/run.json" "$T" "$m" "$r" "$wall" "$user" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["stats"]
print(",".join(sys.argv[2:7] + [str(s["nsteps"]), str(s["nfevals"]), repr(r["loss_end"])]))
EOF
        done
    done
done
