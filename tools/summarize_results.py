#!/usr/bin/env python3
"""Summarize the experiment outputs (examples/fig*.sh) as Markdown tables for docs/RESULTS.md.

usage: tools/summarize_results.py [-h | --help] [RESULTS_DIR]     (default: results/full)

For every curve: the number of trials, epochs, the final test error (mean +- one standard error
over trials, as the paper's error bars), the best epoch's error (mean over trials of each trial's
minimum), and the wall time of the runs (from commands.csv: total and per run).  Standard library
only.
"""
import csv
import math
import os
import re
import sys
from collections import defaultdict

from scriptargs import script_cli

PROG = "summarize_results.py"
usage_exit, positional = script_cli(__doc__, PROG)


def mean_se(xs):
    n = len(xs)
    m = sum(xs) / n
    if n < 2:
        return m, float("nan")
    var = sum((x - m) ** 2 for x in xs) / (n - 1)
    return m, math.sqrt(var / n)


def pct(m, se):
    s = f"{100 * m:.2f}"
    return s + (f" ± {100 * se:.2f}" if not math.isnan(se) else "") + " %"


def read_epochs(path):
    with open(path) as f:
        return [r for r in csv.DictReader(f)]


def curve_rows(res, fig, label_of):
    """Group seed<s>.csv files below res/fig by their parent directories."""
    groups = defaultdict(list)
    base = os.path.join(res, fig)
    for root, _, files in os.walk(base):
        for fn in files:
            if re.fullmatch(r"seed\d+\.csv", fn):
                groups[os.path.relpath(root, res)].append(os.path.join(root, fn))
    out = []
    for key in sorted(groups):
        runs = [read_epochs(p) for p in sorted(groups[key])]
        runs = [r for r in runs if r]
        if not runs:
            continue
        E = min(len(r) for r in runs)
        final = [float(r[E - 1]["test_error"]) for r in runs]
        best = [min(float(x["test_error"]) for x in r[:E]) for r in runs]
        secs = [sum(float(x["seconds"]) for x in r[:E]) / E for r in runs]
        out.append((label_of(key), len(runs), E, mean_se(final), mean_se(best), sum(secs) / len(secs)))
    return out


def wall(res, fig):
    p = os.path.join(res, fig, "commands.csv")
    if not os.path.exists(p):
        return 0.0, 0
    with open(p) as f:
        rows = [r for r in csv.DictReader(f)]
    return sum(float(r["seconds"]) for r in rows), len(rows)


def table(rows):
    print("| curve | trials | epochs | final test error | best-epoch test error | train s/epoch |")
    print("|---|---|---|---|---|---|")
    for label, n, E, fin, best, spe in rows:
        print(f"| {label} | {n} | {E} | {pct(*fin)} | {pct(*best)} | {spe:.2f} |")


def main():
    pos = positional(sys.argv[1:])
    if len(pos) > 1:
        usage_exit(f"expected at most one argument RESULTS_DIR, got {len(pos)}")
    res = pos[0] if pos else "results/full"
    if not os.path.isdir(res):
        sys.exit(f"summarize_results: no directory {res}")
    for fig, title in [("fig2", "Figure 2: one GM layer, K = 5, 10, 20"),
                       ("fig3", "Figure 3: two-layer fully connected network"),
                       ("fig5", "Figure 5: fixed beta (trained beta: Figure 2, K = 10)"),
                       ("fig6", "Figure 6: the K = 20 layers behind the Monte Carlo reduction"),
                       ("fig7", "Figure 7: two stacked GM layers (one layer: Figure 2, K = 10)")]:
        rows = curve_rows(res, fig, lambda k: k.split("/", 1)[1])
        if not rows:
            continue
        t, n = wall(res, fig)
        print(f"\n### {title}\n")
        table(rows)
        print(f"\n{n} runs, {t / 60:.1f} min of run time in all (sum over runs; "
              f"`{res}/{fig}/commands.csv`).")
    # Figure 6: Monte Carlo reduction
    mc = defaultdict(lambda: defaultdict(list))
    base = os.path.join(res, "fig6")
    for root, _, files in os.walk(base):
        for fn in files:
            if fn.endswith("_mc.csv"):
                ds = os.path.basename(root)
                with open(os.path.join(root, fn)) as f:
                    for r in csv.DictReader(f):
                        mc[ds][int(r["m"])].append(float(r["test_error"]))
    if mc:
        print("\n### Figure 6: Monte Carlo reduction (test error of the width-m network)\n")
        ms = sorted({m for ds in mc for m in mc[ds]})
        print("| m | " + " | ".join(sorted(mc)) + " |")
        print("|---|" + "---|" * len(mc))
        for m in ms:
            print(f"| {m} | " + " | ".join(pct(*mean_se(mc[ds][m])) if mc[ds][m] else "-"
                                           for ds in sorted(mc)) + " |")
    # Figure 4: final errors of the trajectory runs
    f4 = os.path.join(res, "fig4")
    if os.path.isdir(f4):
        print("\n### Figure 4: trajectory runs (K = 5, one seed)\n")
        print("| data set | gamma | GM final test error | width-5 FC final test error | PC1+PC2 share |")
        print("|---|---|---|---|---|")
        for ds in sorted(os.listdir(f4)):
            d = os.path.join(f4, ds)
            if not os.path.isdir(d):
                continue
            for g in sorted(os.listdir(d)):
                gd = os.path.join(d, g)
                try:
                    gm = read_epochs(os.path.join(gd, "gm.csv"))[-1]["test_error"]
                    fc = read_epochs(os.path.join(gd, "fc.csv"))[-1]["test_error"]
                    with open(os.path.join(gd, "pcs.csv")) as f:
                        share = sum(float(r["fraction"]) for r in csv.DictReader(f))
                except (OSError, IndexError, KeyError):
                    continue
                print(f"| {ds} | {g[5:]} | {100 * float(gm):.2f} % | {100 * float(fc):.2f} % | "
                      f"{100 * share:.1f} % |")


if __name__ == "__main__":
    main()
