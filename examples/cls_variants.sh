#!/usr/bin/env bash
# cls_variants.sh -- richer GM classification layers (issue 15 part 2; docs/RESULTS.md
# "Richer GM layers"): the diagonal layer of the paper vs low-rank covariances
# Sigma_k = diag(sigma_k^2) + V_k V_k^T (rank r = 1, 2, 4, 8) vs learned mixture weights, on
# MNIST and Fashion-MNIST, at equal K (20) and at equal parameter count (the diagonal layer at
# the K whose parameter count matches low-rank rank r at K = 20), test error vs epoch.
# The paper's setting otherwise: batch 64, lr 0.1 (lr 1 for sigma), gamma 1/2, one thread per run.
#
#   full:   seeds 1..5, 20 epochs (--epochs raises it; finished runs are extended by --resume),
#           all 60000 training images, the 10000 test images, every variant below
#   quick:  seeds 1..2, 2 epochs, K = 4 (and 5), 2000 training / 500 test images (a variant
#           whose option this gmflow lacks is left out of the quick run, with a note)
#
# Variants (--variants LIST, comma-separated; names parsed, so others can be asked for):
#   diag_K<K>                    the paper's diagonal layer (eq. (5))
#   lowrank_r<r>_K<K>            --cov lowrank --rank r
#   diag_weights_K<K>            --weights learned (softmax logits; the default Euclidean step
#                                on the logits at --lr)
#   diag_wfr_K<K>                --weights learned --weights-geometry fr --transport-lr per-mass
#                                (Fisher-Rao step on the weights, per-mass transport: the
#                                discrete WFR flow of docs/WFR.md)
#   lowrank_r<r>_weights_K<K>, lowrank_r<r>_wfr_K<K>    both
# Full default: diag_K20, lowrank_r{1,2,4,8}_K20, diag_weights_K20, diag_wfr_K20, and the equal-parameter
# diagonal layers diag_K22, diag_K24, diag_K27, diag_K35 (d = 784, L = 9: a diagonal component
# has 2d + Ld + L = 8633 parameters, rank r adds r d; K = 20 (8633 + 784 r) / 8633 rounded).
#
# Options besides the common ones (every driver's, listed above):
#   --seeds N          same as --trials N (seeds 1..N)
#   --variants LIST    the variants to run (default: the list above, or the quick list)
#   --datasets LIST    mnist,fashion (default both)
#
# Output: <results>/cls_variants/<mnist|fashion>/<variant>/seed<s>.csv (gmflow train's
# epochs.csv, with the seconds of each epoch) and <results>/cls_variants/commands.csv.
# notebooks/cls_variants.ipynb draws them (docs/img/cls_variants.png).
source "$(dirname "$0")/lib.sh"
# shellcheck disable=SC2034 # read by lib.sh (usage_synopsis)
DRIVER_OPTS="[--seeds N] [--variants LIST] [--datasets LIST]"
ARGS=()
VARIANTS=""
DATASETS="mnist,fashion"
me=$(basename "$0")
while [ $# -gt 0 ]; do
    case "$1" in
    --seeds | --variants | --datasets)
        if [ $# -lt 2 ] || [ -z "$2" ]; then
            usage_error "option $1 needs a value"
        fi
        case "$1" in
        --seeds) ARGS+=(--trials "$2") ;;
        --variants) VARIANTS=$2 ;;
        --datasets) DATASETS=$2 ;;
        esac
        shift 2
        ;;
    *) ARGS+=("$1"); shift ;;
    esac
done
parse_common "${ARGS[@]+"${ARGS[@]}"}"

# the options the variants need must exist in this gmflow (features of issue 15 part 2)
HELP=$("$GMFLOW" train --help 2>&1) || true
if [ "$QUICK" = 1 ]; then
    TRIALS=${TRIALS:-2}
    if [ -z "$VARIANTS" ]; then
        VARIANTS=diag_K4,lowrank_r2_K4,diag_weights_K4,diag_K5
        # a smoke run on a gmflow that has only one of the two features runs what it can
        for o in --cov:lowrank_r2_K4 --weights:diag_weights_K4; do
            if ! grep -q -- "${o%%:*}" <<<"$HELP"; then
                echo "$me: note: --quick without ${o#*:}: $GMFLOW has no 'train ${o%%:*}'" >&2
                VARIANTS=${VARIANTS/${o#*:},/}
            fi
        done
    fi
    LIMITS="--train-limit 2000 --test-limit 500"
    EPOCHS=${EPOCHS:-2}
else
    TRIALS=${TRIALS:-5}
    VARIANTS=${VARIANTS:-diag_K20,lowrank_r1_K20,lowrank_r2_K20,lowrank_r4_K20,lowrank_r8_K20,diag_weights_K20,diag_wfr_K20,diag_K22,diag_K24,diag_K27,diag_K35}
    LIMITS=""
    EPOCHS=${EPOCHS:-20}
fi

# variant_args NAME: the gmflow train options of a variant (exit 2 on a malformed name)
variant_args() {
    local re='^(diag|lowrank_r([1-9][0-9]*))(_weights|_wfr)?_K([1-9][0-9]*)$'
    if ! [[ "$1" =~ $re ]]; then
        echo "$me: --variants: bad variant name '$1' (expected diag_K<K>, lowrank_r<r>_K<K>," \
            "diag_weights_K<K>, diag_wfr_K<K> or lowrank_r<r>_weights_K<K>)" >&2
        return 2
    fi
    local a="--model gm --K ${BASH_REMATCH[4]}"
    [ -n "${BASH_REMATCH[2]}" ] && a="$a --cov lowrank --rank ${BASH_REMATCH[2]}"
    [ -n "${BASH_REMATCH[3]}" ] && a="$a --weights learned"
    [ "${BASH_REMATCH[3]}" = _wfr ] && a="$a --weights-geometry fr --transport-lr per-mass"
    echo "$a"
}

need_opt() {
    grep -q -- "$1" <<<"$HELP" || {
        echo "$me: $GMFLOW has no 'train $1' (needed by variant $2): build a gmflow with $3" >&2
        exit 1
    }
}
declare -A VARGS
IFS=, read -r -a vlist <<<"$VARIANTS"
IFS=, read -r -a dlist <<<"$DATASETS"
[ ${#vlist[@]} -gt 0 ] || usage_error "--variants: empty list"
[ ${#dlist[@]} -gt 0 ] || usage_error "--datasets: empty list"
for v in "${vlist[@]}"; do
    VARGS[$v]=$(variant_args "$v") || { usage_synopsis >&2; exit 2; }
    case "$v" in lowrank*) need_opt --cov "$v" "the low-rank layer (--cov lowrank --rank r)" ;; esac
    case "$v" in *_weights_* | *_wfr_*) need_opt --weights "$v" "learned mixture weights (--weights learned)" ;; esac
done
for ds in "${dlist[@]}"; do
    case "$ds" in
    mnist | fashion) [ -d "$(ds_dir "$ds")" ] || { echo "$me: no data directory $(ds_dir "$ds")" >&2; exit 1; } ;;
    *) usage_error "--datasets: unknown data set '$ds' (mnist or fashion)" ;;
    esac
done

begin_fig cls_variants
for ds in "${dlist[@]}"; do
    for v in "${vlist[@]}"; do
        for s in $(seq 1 "$TRIALS"); do
            # shellcheck disable=SC2086
            job "$FIG_RES/$ds/$v/seed$s" -- train ${VARGS[$v]} --epochs "$EPOCHS" --seed "$s" \
                --threads 1 --data "$(ds_dir "$ds")" $LIMITS
        done
    done
done
run_jobs
