#!/usr/bin/env bash
# wfr_study.sh -- Wasserstein (equal, fixed weights) vs Wasserstein-Fisher-Rao (learned weights)
# mixture flows on regression toys at equal K (docs/WFR.md; docs/RESULTS.md "WFR vs W").
#
#   full:   seeds 1..5 (or --trials N), K = 2, 4, 8, alpha = 0 (W), 1, 10, t in [0, 1000]
#   quick:  seeds 1..2, K = 3, alpha = 0, 1, 10, t in [0, 20]
#
# Output: <results>/wfr/{loss.csv, weights.csv, stalled.csv, summary.md} and the figure
# (tools/plot_wfr_study.py): docs/img/wfr_study.png for the full run, <results>/wfr/wfr_study.png
# for --quick.
source "$(dirname "$0")/lib.sh"
parse_common "$@"
STUDY=$(dirname "$GMFLOW")/examples/wfr_study
[ -x "$STUDY" ] || { echo "wfr_study.sh: $STUDY not built (cmake --build build)" >&2; exit 1; }
if [ "$QUICK" = 1 ]; then
    ARGS=(--seeds "${TRIALS:-2}" --K 3 --alpha 0,1,10 --T 20)
    PNG=  # set below: beside the CSVs
else
    ARGS=(--seeds "${TRIALS:-5}" --K 2,4,8 --alpha 0,1,10 --T 1000)
    PNG=$EX_ROOT/docs/img/wfr_study.png
fi
begin_fig wfr
[ -n "$PNG" ] || PNG=$FIG_RES/wfr_study.png
"$STUDY" --out "$FIG_RES" "${ARGS[@]}"
mkdir -p "$(dirname "$PNG")"
/usr/bin/python3 "$EX_ROOT/tools/plot_wfr_study.py" "$FIG_RES" "$PNG" | tee "$FIG_RES/summary.md"
