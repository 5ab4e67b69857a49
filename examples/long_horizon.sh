#!/usr/bin/env bash
# long_horizon.sh -- the exact flows on a teacher-student regression toy, integrated to
# convergence on a log-time axis (docs/RESULTS.md, "Long horizons").
#
# Teacher: a width-2 ReLU network y = (1/2) sum_j a_j relu(b_j . x) (gmflow flow's toy, --teacher
# relu --width 2, noise 0: realizable by 2 particles), n = 200 inputs x ~ N(0, I_3).  Students, for
# each K: the Gaussian-mixture flow (K components, Sigma_k = gamma^2 I, gamma = 1/2) and the
# particle flow (Sigma_k = 0: the width-K network in the mean-field scaling), both from the SAME
# means (gmflow flow's random init, seed 2; the first K' means of K are those of K' < K).
# Each run: CVODE (auto), rtol 1e-10, atol 1e-12, log-spaced outputs from t = 0.01, events
# (--stop-grad 1e-6, --event-loss 1e-6, --collapse 1e-6 for mixtures; --on-event continue) and
# --polish at the end; then every plateau of the loss (tools/long_horizon.py plateaus) is polished
# from its output state (gmflow flow --init ... --polish).  A run that meets a finite-time
# singularity (the solver stops with an error naming the time t*) is rerun to 0.999 t*.
#
#   full:   K = 1, 2, 4, t in [0, 1e5], 120 output times
#   quick:  K = 1, 2, t in [0, 300], 60 output times (a few seconds)
#
# Output: <results>/long_horizon/{runs.csv, polish.csv, summary.csv, summary.md, commands.csv,
#         runs/<K><gm|p>/ (gmflow's output set, polish_<i>/ per plateau)}.  Exit 1 with a message
#         when a step fails.  The figure: notebooks/long_horizon.ipynb.
source "$(dirname "$0")/lib.sh"
parse_common "$@"
TOY=(--n 200 --d 3 --teacher relu --width 2 --noise 0 --data-seed 1)
SOLVER=(--rtol 1e-10 --atol 1e-12 --loss-atol 1e-18)
EVENTS=(--stop-grad 1e-6 --event-loss 1e-6 --on-event continue)
if [ "$QUICK" = 1 ]; then
    KS=(1 2) T=300 NL=60
else
    KS=(1 2 4) T=1e5 NL=120
fi
PY=/usr/bin/python3
TOOL=$EX_ROOT/tools/long_horizon.py
fail() {
    echo "long_horizon.sh: $*" >&2
    exit 1
}
begin_fig long_horizon
rm -f "$JOBLIST"
R=$FIG_RES/runs
echo "status,seconds,command" >"$FIG_RES/commands.csv" # every run is redone: a fresh list
rm -rf "$R" && mkdir -p "$R" "$FIG_WORK" || fail "cannot create $R"
echo "run,K,kind,t_end,t_singular,loss_end,events,wall_s" >"$FIG_RES/runs.csv"
echo "run,where,t,steps,grad_from,grad_to,grad_rel,loss,converged,eig_min,eig_max,gauge,index,zeros,verdict" \
    >"$FIG_RES/polish.csv"

# gm NAME LOG -- ARGS: gmflow flow with the toy and ARGS, stdout+stderr to LOG, a row in commands.csv
gm() {
    local log=$2 t0 t1 st
    shift 3
    t0=$(date +%s.%N)
    "$GMFLOW" flow "${TOY[@]}" "$@" >"$log" 2>&1
    st=$?
    t1=$(date +%s.%N)
    printf '%d,%.2f,"gmflow flow %s %s"\n' $st "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
        "${TOY[*]}" "${*//$EX_ROOT\//}" >>"$FIG_RES/commands.csv"
    return $st
}

# polish_row RUN WHERE T LOG: one row of polish.csv from a --polish report
polish_row() {
    local row
    row=$($PY "$TOOL" polishline "$4") || fail "$4: no polish report"
    echo "$1,$2,$3,$row" >>"$FIG_RES/polish.csv"
}

for K in "${KS[@]}"; do
    gm init "$FIG_WORK/init$K.log" -- -K "$K" --seed 2 --t-end 1e-9 --n-out 2 -q --out "$FIG_WORK/init$K" ||
        fail "K = $K: the initialization run failed: $(tail -1 "$FIG_WORK/init$K.log")"
    $PY "$TOOL" init "$FIG_WORK/init$K" "$K" 0.5 "$FIG_WORK/gm$K.json" "$FIG_WORK/p$K.json" ||
        fail "K = $K: cannot write the initial states"
    for kind in gm p; do
        name=$K$kind
        extra=()
        [ "$kind" = gm ] && extra=(--collapse 1e-6)
        args=(--init "$FIG_WORK/$kind$K.json" "${SOLVER[@]}" "${EVENTS[@]}" "${extra[@]}" --polish
            --log-times "$NL" --t-first 1e-2 -q --out "$R/$name")
        tsing=""
        if ! gm "$name" "$R/$name.log" -- --t-end "$T" "${args[@]}"; then
            # a finite-time singularity: the solver stops naming the time reached; rerun short of it
            tsing=$(grep -o 't = [0-9.e+-]*' "$R/$name.log" | awk '{ print $3 }' | sort -g | tail -1 || true)
            [ -n "$tsing" ] || fail "$name: gmflow flow failed: $(tail -1 "$R/$name.log")"
            echo "  $name: stopped near t = $tsing ($(grep -o 'the loss increased\|no progress\|step size collapsed' "$R/$name.log" | head -1)); rerun to 0.999 t" >&2
            mv "$R/$name.log" "$R/$name.singular.log"
            gm "$name" "$R/$name.log" -- --t-end "$(awk -v t="$tsing" 'BEGIN { printf "%.10g", 0.999 * t }')" \
                "${args[@]}" || fail "$name: the rerun to 0.999 t* failed: $(tail -1 "$R/$name.log")"
        fi
        info=$($PY "$TOOL" runinfo "$R/$name") || fail "$name: cannot read $R/$name/run.json"
        tend=${info%%,*} lend=$(cut -d, -f2 <<<"$info")
        echo "$name,$K,$kind,${info%%,*},$tsing,${info#*,}" >>"$FIG_RES/runs.csv"
        polish_row "$name" end "$tend" "$R/$name.log"
        # the plateaus: polish from the flattest output state of each
        $PY "$TOOL" plateaus "$R/$name" "$R/$name/plateaus" >"$R/$name.plateaus" ||
            fail "$name: plateau detection failed"
        while read -r _ i _ _ tp _ _; do
            gm "$name.p$i" "$R/$name/plateaus/polish_$i.log" -- --init "$R/$name/plateaus/plateau_${i}_state.json" \
                --t-end 1e-9 --n-out 2 --polish -q --out "$R/$name/plateaus/polish_$i" ||
                fail "$name: polish of plateau $i failed: $(tail -1 "$R/$name/plateaus/polish_$i.log")"
            polish_row "$name" "plateau_$i" "$tp" "$R/$name/plateaus/polish_$i.log"
        done <"$R/$name.plateaus"
        echo "  $name: t = $tend, loss $lend, $(wc -l <"$R/$name.plateaus") plateau(s)" >&2
    done
done
$PY "$TOOL" summary "$FIG_RES" || fail "summary failed"
echo "long_horizon: results in $FIG_RES" >&2
