#!/usr/bin/python3
"""plot_wfr_study.py -- figure and summary table of examples/wfr_study (W vs WFR mixture flows).

usage: tools/plot_wfr_study.py [-h | --help] DIR [PNG]
  DIR holds loss.csv and weights.csv written by examples/wfr_study --out DIR.
  PNG (default docs/img/wfr_study.png): loss vs time (median over seeds, per K and alpha),
  effective number of components 1/sum w^2, and the weights of seed 1 at the largest K.
Prints a Markdown table: per K and alpha, the median loss at t = 1, 10, 100 and T, the median
ratio to the W run (alpha = 0) of the same seed at T, and the median final 1/sum w^2 and
smallest distance between two means.
"""
import csv
import sys
from collections import defaultdict

from scriptargs import script_cli

PROG = "plot_wfr_study.py"
usage_exit, positional = script_cli(__doc__, PROG)


if __name__ == "__main__":
    ARGS = positional(sys.argv[1:])  # before the imports below: --help is instant
    if not 1 <= len(ARGS) <= 2:
        usage_exit(f"expected DIR [PNG], got {len(ARGS)} argument(s)")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def load(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main():
    d = ARGS[0]
    png = ARGS[1] if len(ARGS) > 1 else "docs/img/wfr_study.png"
    rows = load(d + "/loss.csv")
    runs = defaultdict(list)  # (K, alpha, seed) -> [(t, loss, neff, dmin)]
    for r in rows:
        runs[(int(r["K"]), float(r["alpha"]), int(r["seed"]))].append(
            (float(r["t"]), float(r["loss"]), float(r["neff"]), float(r["dmin"])))
    Ks = sorted({k for k, _, _ in runs})
    alphas = sorted({a for _, a, _ in runs})
    seeds = sorted({s for _, _, s in runs})
    complete = {key: np.array(v) for key, v in runs.items()}
    nt = max(len(v) for v in complete.values())
    complete = {key: v for key, v in complete.items() if len(v) == nt}

    fig, ax = plt.subplots(2, len(Ks) + 1, figsize=(4.2 * (len(Ks) + 1), 7.5), squeeze=False)
    colors = dict(zip(alphas, ["k", "tab:blue", "tab:red", "tab:green", "tab:purple"]))
    print("| K | alpha | L(1) | L(10) | L(100) | L(T) | L(T) / L_W(T) | 1/sum w^2 at T | "
          "min mean distance at T | runs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for j, K in enumerate(Ks):
        for a in alphas:
            arr = [complete[(K, a, s)] for s in seeds if (K, a, s) in complete]
            if not arr:
                continue
            A = np.stack(arr)  # seeds x nt x 4
            t = A[0, :, 0]
            med = np.median(A[:, :, 1], axis=0)
            lab = "W (alpha = 0)" if a == 0 else f"WFR alpha = {a:g}"
            ax[0, j].loglog(t[1:], med[1:], color=colors[a], label=lab)
            for s in range(A.shape[0]):
                ax[0, j].loglog(t[1:], A[s, 1:, 1], color=colors[a], alpha=0.15, lw=0.7)
            ax[1, j].semilogx(t[1:], np.median(A[:, 1:, 2], axis=0), color=colors[a])
            ratio = [complete[(K, a, s)][-1, 1] / complete[(K, 0.0, s)][-1, 1] for s in seeds
                     if (K, a, s) in complete and (K, 0.0, s) in complete]

            def at(tq):
                i = int(np.argmin(np.abs(t - tq)))
                return np.median(A[:, i, 1])

            print(f"| {K} | {a:g} | {at(1):.4g} | {at(10):.4g} | {at(100):.4g} | {med[-1]:.4g} | "
                  f"{np.median(ratio) if ratio else float('nan'):.3f} | "
                  f"{np.median(A[:, -1, 2]):.2f} | {np.median(A[:, -1, 3]):.3f} | {A.shape[0]} |")
        ax[0, j].set_title(f"K = {K}: loss (median and seeds)")
        ax[0, j].set_xlabel("t (BW time)")
        ax[0, j].legend(fontsize=8)
        ax[1, j].set_title(f"K = {K}: effective components 1/sum w^2")
        ax[1, j].set_xlabel("t")
    # weights of seed 1 at the largest K with a complete WFR run
    w = load(d + "/weights.csv")
    Kmax, amax = Ks[-1], alphas[-1]
    ws = defaultdict(list)
    for r in w:
        if int(r["K"]) == Kmax and float(r["alpha"]) == amax and int(r["seed"]) == seeds[0]:
            ws[int(r["k"])].append((float(r["t"]), float(r["w"])))
    for k, v in sorted(ws.items()):
        v = np.array(v)
        ax[0, -1].semilogx(v[1:, 0], v[1:, 1], label=f"w_{k}")
    ax[0, -1].set_title(f"weights, K = {Kmax}, alpha = {amax:g}, seed {seeds[0]}")
    ax[0, -1].set_xlabel("t")
    ax[0, -1].legend(fontsize=7, ncol=2)
    ax[1, -1].axis("off")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"\nwrote {png}")


if __name__ == "__main__":
    main()
