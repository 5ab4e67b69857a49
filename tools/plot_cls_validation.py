#!/usr/bin/python3
"""Plots for the discrete-vs-exact cross-checks (docs/VALIDATION.md).

Runs three validate programs with --csv, which write

    results/validation/gd_to_flow.csv       regression: the GM regression layer's full-batch GD vs
                                            the Euclidean flow and the mixture flow at t/K
    results/validation/gd_to_flow_cls.csv   full-batch GD and the discrete trainer vs the flow:
                                            err(eta), err_trainer(eta) per case
    results/validation/sgd_mean.csv         mean of R SGD runs vs the flow: gap, noise, bias

and renders

    docs/img/gd_to_flow.png
    docs/img/gd_to_flow_cls.png
    docs/img/sgd_mean.png

usage: tools/plot_cls_validation.py [-h | --help] [--no-run] [BUILD_DIR]
    /usr/bin/python3 tools/plot_cls_validation.py [BUILD_DIR]        (default: build)
    /usr/bin/python3 tools/plot_cls_validation.py --no-run           (plot existing CSVs)
  (from the project root, after building the validate programs)
Needs matplotlib (Debian: apt-get install -y python3-matplotlib).
"""
import csv
import os
import subprocess
import sys

from scriptargs import script_cli

PROG = "plot_cls_validation.py"
usage_exit, positional = script_cli(__doc__, PROG)


if __name__ == "__main__":
    ARGS = positional(sys.argv[1:], options=("--no-run",))  # before matplotlib: --help is instant
    if len(ARGS) > 1:
        usage_exit(f"expected at most one argument BUILD_DIR, got {len(ARGS)}")

import matplotlib  # noqa: E402
import matplotlib.ticker  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RES = os.path.join(ROOT, "results", "validation")
IMG = os.path.join(ROOT, "docs", "img")


def run(build, prog, csv_path):
    exe = os.path.join(ROOT, build, "validate", prog)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    subprocess.run([exe, "--csv", csv_path], check=True, cwd=ROOT, env=env,
                   stdout=subprocess.DEVNULL)


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def slope_guide(ax, xs, y0, label="slope 1"):
    lo, hi = min(xs), max(xs)
    ax.plot([lo, hi], [y0 * lo / hi, y0], "k:", lw=1, label=label)


def plot_gd_reg(path, out):
    rows = read(path)
    eta = [float(r["eta"]) for r in rows]
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    ax.loglog(eta, [float(r["err_euclid"]) for r in rows], "o-",
              label="max |(mu, C)_N - (mu, C)^E(T)|  (Euclidean flow)")
    ax.loglog(eta, [float(r["err_sigma"]) for r in rows], "s-",
              label="max |C C^T - Sigma^BW(T/K)|  (mixture flow)")
    slope_guide(ax, eta, 2 * max(float(r["err_euclid"]) for r in rows))
    ax.set_xlabel("step eta")
    ax.set_ylabel("error at T = 1")
    ax.set_title("Full-batch GD (GM regression layer) -> exact flows")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_gd(path, out):
    rows = read(path)
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for case in dict.fromkeys(r["case"] for r in rows):
        rs = [r for r in rows if r["case"] == case]
        eta = [float(r["eta"]) for r in rs]
        err = [float(r["err"]) for r in rs]
        line, = ax.loglog(eta, err, "o-", label=case + ": GD on clsflow's gradient")
        if "err_trainer" in rs[0]:
            ax.loglog(eta, [float(r["err_trainer"]) for r in rs], "x", ms=9,
                      color=line.get_color(), label=case + ": discrete trainer")
    top = max(float(r["err"]) for r in rows)
    slope_guide(ax, [float(r["eta"]) for r in rows], 2 * top)
    ax.set_xlabel("step eta")
    ax.set_ylabel("max |theta_N - theta_flow(T)|")
    ax.set_title("Full-batch GD -> classification flow (T = 3)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_sgd(path, out):
    rows = read(path)
    eta = [float(r["eta"]) for r in rows]
    gap = [float(r["gap"]) for r in rows]
    noise = [float(r["noise"]) for r in rows]
    bias = [float(r["bias"]) for r in rows]
    gd = [float(r["gd_err"]) for r in rows]
    drift = [float(r["mean_minus_gd"]) for r in rows]
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    ax.errorbar(eta, gap, yerr=noise, fmt="o-", capsize=3, label="|mean of R SGD runs - flow|")
    ax.loglog(eta, bias, "s--", label="bias = sqrt(gap^2 - noise^2)")
    ax.loglog(eta, gd, "^-", label="|GD - flow|")
    ax.loglog(eta, drift, "v:", label="|mean SGD - GD| (noise drift)")
    ax.loglog(eta, noise, "x", color="gray", label="Monte Carlo noise of the mean")
    slope_guide(ax, eta, 2 * max(gap))
    labels = ", ".join("R=%s" % r["R"] for r in rows)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(eta)
    ax.set_xticklabels(["%g" % e for e in eta])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("step eta (batch B = %s)" % rows[0]["B"])
    ax.set_ylabel("distance at T = 2")
    ax.set_title("Minibatch SGD mean vs flow\n(%s)" % labels, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main():
    build = ARGS[0] if ARGS else "build"
    os.makedirs(RES, exist_ok=True)
    os.makedirs(IMG, exist_ok=True)
    reg_csv = os.path.join(RES, "gd_to_flow.csv")
    gd_csv = os.path.join(RES, "gd_to_flow_cls.csv")
    sgd_csv = os.path.join(RES, "sgd_mean.csv")
    if "--no-run" not in sys.argv:
        run(build, "gd_to_flow", reg_csv)
        run(build, "gd_to_flow_cls", gd_csv)
        run(build, "sgd_mean", sgd_csv)
    outs = [os.path.join(IMG, f) for f in ("gd_to_flow.png", "gd_to_flow_cls.png", "sgd_mean.png")]
    plot_gd_reg(reg_csv, outs[0])
    plot_gd(gd_csv, outs[1])
    plot_sgd(sgd_csv, outs[2])
    print("wrote", ", ".join(os.path.relpath(o, ROOT) for o in outs))


if __name__ == "__main__":
    main()
