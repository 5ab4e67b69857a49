"""Shared loading and plotting for the figure notebooks (notebooks/*.ipynb).

Results directory: $GMFLOW_RESULTS (relative paths are taken from the repository root); by
default the first of results/full (committed), out/quick (where `examples/run_all.sh --quick`
writes; untracked) and results/quick (committed) that holds the figure.  Figures go to
$GMFLOW_FIGDIR (default docs/img).  Only numpy, matplotlib (Agg) and csv: no pandas.
"""
import csv
import glob
import os
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATASETS = [("mnist", "MNIST"), ("fashion", "Fashion-MNIST")]


def _from_root(p):
    p = Path(p)
    return p if p.is_absolute() else ROOT / p


def _holds(res, fig):
    d = res / fig
    return d.is_dir() and any(
        f.name != "commands.csv" for f in d.rglob("*.csv"))


def import_gmflow():
    """The gmflow Python package (docs/PYTHON.md): as installed or on PYTHONPATH, else from the
    repository's build tree ($GMFLOW_BUILD, default build/, relative to the repository root)."""
    try:
        import gmflow
    except ImportError:
        build = _from_root(os.environ.get("GMFLOW_BUILD", "build")) / "python"
        sys.path.insert(0, str(build))
        try:
            import gmflow
        except ImportError as e:
            raise ImportError(f"the gmflow package is neither importable nor built in {build}: "
                              "run tools/setup.sh (or set PYTHONPATH)") from e
    return gmflow


def results_dir(fig):
    """The results directory (the one holding <fig>/) this notebook reads."""
    env = os.environ.get("GMFLOW_RESULTS")
    if env:
        res = _from_root(env)
        if not _holds(res, fig):
            raise FileNotFoundError(f"GMFLOW_RESULTS={env}: no {fig}/ results in {res}")
    else:
        tried = [ROOT / "results" / "full", ROOT / "out" / "quick", ROOT / "results" / "quick"]
        res = next((r for r in tried if _holds(r, fig)), None)
        if res is None:
            raise FileNotFoundError(
                f"no {fig}/ results in results/full, out/quick or results/quick "
                "(run examples/run_all.sh --quick, or set GMFLOW_RESULTS)")
    print(f"{fig}: reading {res}")
    return res


def source_label(res):
    """Short name of the results directory for figure annotations."""
    try:
        return str(Path(res).resolve().relative_to(ROOT))
    except ValueError:
        return str(res)


def fig_dir():
    d = _from_root(os.environ.get("GMFLOW_FIGDIR", "docs/img"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def save(fig, name):
    path = fig_dir() / name
    fig.savefig(path, dpi=130, bbox_inches="tight")
    print(f"wrote {path}")
    return path


def read_csv(path):
    """CSV -> dict column -> numpy array (float where every entry parses, else str)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path}: empty")
    head, body = rows[0], rows[1:]
    out = {}
    for j, name in enumerate(head):
        col = [r[j] for r in body]
        try:
            out[name] = np.array([float(x) for x in col])
        except ValueError:
            out[name] = np.array(col)
    return out


def _seed(path):
    m = re.search(r"seed(\d+)", os.path.basename(path))
    return int(m.group(1)) if m else -1


def seed_files(d, suffix=".csv"):
    """seed<s><suffix> files in d, by seed (seed1.csv, ... but not seed1_mc.csv)."""
    files = [f for f in glob.glob(os.path.join(str(d), "seed*" + suffix))
             if re.fullmatch(r"seed\d+" + re.escape(suffix), os.path.basename(f))]
    if not files:
        raise FileNotFoundError(f"no seed*{suffix} in {d}")
    return sorted(files, key=_seed)


def mean_se(a, axis=0):
    """Mean and one standard error (sample std / sqrt(n)) over trials; se = 0 for one trial."""
    a = np.asarray(a, dtype=float)
    n = a.shape[axis]
    m = a.mean(axis=axis)
    se = a.std(axis=axis, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(m)
    return m, se


def curve(d, col="test_error", max_epoch=None):
    """Epoch curves of the seed*.csv runs in d: dict(epoch, mean, se, n, runs).

    Runs of different lengths are cut to the shortest (and to max_epoch if given)."""
    runs = [read_csv(f) for f in seed_files(d)]
    E = min(len(r["epoch"]) for r in runs)
    if max_epoch is not None:
        E = min(E, int(max_epoch))
    if any(len(r["epoch"]) != E for r in runs) and max_epoch is None:
        print(f"  note: {d}: runs of different lengths, cut to {E} epochs")
    Y = np.array([r[col][:E] for r in runs])
    m, se = mean_se(Y)
    return dict(epoch=runs[0]["epoch"][:E], mean=m, se=se, n=len(runs), runs=runs)


def plot_curve(ax, c, label, scale=100.0, **kw):
    """Mean +- 1 s.e. error bars (test error in percent by default)."""
    n = len(c["epoch"])
    every = max(1, n // 25)
    ax.errorbar(c["epoch"], scale * c["mean"], yerr=scale * c["se"], label=f"{label} (n={c['n']})",
                capsize=2, lw=1.3, marker="o" if n <= 30 else None, ms=3, errorevery=every, **kw)


def two_panels(ylabel="test error (%)", xlabel="epoch", figsize=(11, 4)):
    fig, axes = plt.subplots(1, 2, figsize=figsize)
    for ax, (_, title) in zip(axes, DATASETS):
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if xlabel == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, axes


def annotate_source(fig, res):
    fig.text(0.995, 0.005, f"data: {source_label(res)}", ha="right", va="bottom",
             fontsize=7, color="0.4")


def pm(m, se, scale=100.0, digits=2):
    return f"{scale * m:.{digits}f} +- {scale * se:.{digits}f}"


def table(headers, rows):
    """Print a fixed-width text table."""
    rows = [[str(x) for x in r] + [""] * (len(headers) - len(r)) for r in rows]
    w = [max(len(h), *(len(r[j]) for r in rows)) if rows else len(h)
         for j, h in enumerate(headers)]
    line = lambda r: "  ".join(x.ljust(w[j]) for j, x in enumerate(r))  # noqa: E731
    print(line(headers))
    print(line(["-" * x for x in w]))
    for r in rows:
        print(line(r))


def final_row(c, name, ds_title):
    """A table row: dataset, curve, trials, epochs, final test error (%) mean +- s.e."""
    return [ds_title, name, c["n"], int(c["epoch"][-1]), pm(c["mean"][-1], c["se"][-1])]


FINAL_HEADERS = ["dataset", "curve", "trials", "epoch", "final test error % (mean +- s.e.)"]


def show(path):
    """Display a saved PNG in the notebook (figures are drawn with Agg, not inline)."""
    try:
        from IPython.display import Image
        return Image(filename=str(path))
    except ImportError:
        return None


def command_opt(res, fig, name, default=None):
    """The value of option NAME in the first row of <res>/<fig>/commands.csv that has it."""
    path = Path(res) / fig / "commands.csv"
    if not path.is_file():
        return default
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            words = row.get("command", "").split()
            if name in words and words.index(name) + 1 < len(words):
                return words[words.index(name) + 1]
    return default


def k_dirs(parent):
    """K<K> subdirectories of parent that hold seed*.csv runs, by K (a run in progress can
    leave an empty one: skipped with a note)."""
    out = []
    for d in sorted(Path(parent).glob("K*"), key=lambda p: int(p.name[1:])):
        if any(re.fullmatch(r"seed\d+\.csv", f.name) for f in d.iterdir()):
            out.append(d)
        else:
            print(f"  note: {d}: no finished runs yet, skipped")
    return out
