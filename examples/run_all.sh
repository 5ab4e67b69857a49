#!/usr/bin/env bash
# run_all.sh -- every experiment driver in turn (Figures 2-7, the flow dynamics and the long-horizon study), passing the
# options on (--quick, --jobs, --results, --work, ...; see below).  Drivers skip runs whose CSV
# already exists, so rerunning resumes.
#
#   examples/run_all.sh --quick            # about a minute: out/quick/ (untracked)
#   examples/run_all.sh --jobs 2           # the full configurations: results/full/ (hours)
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
parse_common "$@" # checks the options once (and --help) before any driver runs
t0=$(date +%s)
for d in flow_dynamics long_horizon fig2_test_error fig3_fc_baseline fig4_trajectories fig5_fixed_beta \
    fig6_monte_carlo fig7_stacking; do
    echo "== $d $*" >&2
    "$here/$d.sh" "$@"
done
echo "run_all: all drivers finished in $(($(date +%s) - t0)) s" >&2
