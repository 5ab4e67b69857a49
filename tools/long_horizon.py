#!/usr/bin/python3
"""long_horizon.py -- the bookkeeping of examples/long_horizon.sh (docs/RESULTS.md, "Long horizons").

usage: tools/long_horizon.py [-h | --help] COMMAND ARGS...
  long_horizon.py init RUN K GAMMA GM.json PARTICLES.json
  long_horizon.py plateaus RUN OUTDIR
  long_horizon.py polishline LOG
  long_horizon.py runinfo RUN
  long_horizon.py summary RESULTS_DIR

  long_horizon.py init RUN K GAMMA GM.json PARTICLES.json
      from RUN/mu.npy (its first output = gmflow flow's random initialization, -K K --seed S),
      two bw state files with the SAME means: Sigma_k = GAMMA^2 I (the Gaussian mixture, as
      gmflow's own init) and Sigma_k = 0 (K particles: the width-K network in the mean-field
      scaling, which the closed forms cover exactly at s = 0, see docs/FLOWS.md).
  long_horizon.py plateaus RUN OUTDIR
      the plateaus of RUN's loss on the log-time axis: runs of output times where the slope
      |d log L / d log t| < 0.25 (at least 1/4 of a decade long, once L has halved) after which the loss still falls
      by 10x or more (so not the final convergence); for each, the output state at the flattest
      point is written to OUTDIR/plateau_<i>_state.json.  Prints one line per plateau:
      "PLATEAU i t_from t_to t_pick loss_pick slope_pick".
  long_horizon.py polishline LOG
      the numbers of a `gmflow flow --polish` report (its stdout) as one CSV row:
      steps,grad_from,grad_to,grad_rel,loss,converged,eig_min,eig_max,gauge,index,zeros,verdict
  long_horizon.py runinfo RUN
      from RUN/run.json: t_final, loss_end, wall_s and the events ("collapse k0 t=823; ...") as
      one CSV row (the events quoted).
  long_horizon.py summary RESULTS_DIR
      summary.csv and summary.md from RESULTS_DIR/runs.csv and RESULTS_DIR/polish.csv.

Only NumPy and the csv/json modules.  Use /usr/bin/python3.
"""
import csv
import json
import os
import re
import sys

import numpy as np

from scriptargs import script_cli

PROG = "long_horizon.py"
usage_exit = script_cli(__doc__, PROG)[0]


def die(msg):
    sys.exit(f"long_horizon.py: {msg}")


def load_npy(path):
    try:
        return np.load(path)
    except (OSError, ValueError) as e:
        die(f"{path}: {e}")


def write_state(path, t, mu, S):
    K, D = mu.shape
    st = {"format": "gmflow-state", "version": 1, "form": "bw", "t": float(t), "K": K,
          "d": D - 1, "mu": mu.tolist(), "Sigma": S.tolist()}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(st, f, indent=1)  # repr(float): every double round-trips
    os.replace(tmp, path)


def cmd_init(run, K, gamma, gm, part):
    mu = load_npy(os.path.join(run, "mu.npy"))[0]
    if mu.shape[0] != int(K):
        die(f"{run}: K = {mu.shape[0]}, expected {K}")
    D = mu.shape[1]
    g2 = float(gamma) ** 2
    write_state(gm, 0.0, mu, np.array([g2 * np.eye(D)] * mu.shape[0]))
    write_state(part, 0.0, mu, np.zeros((mu.shape[0], D, D)))


def read_traj(run):
    path = os.path.join(run, "trajectory.csv")
    try:
        a = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    except (OSError, ValueError) as e:
        die(f"{path}: {e}")
    return a[:, 0], a[:, 1]


def plateaus(t, L, flat=0.25, min_decades=0.25, drop=10.0, fallen=2.0):
    """(i0, i1, ipick, slope) for each plateau of L on the log-t axis (outputs t > 0), counted only
    once L has fallen FALLEN times below L(t0) (before, t is below the flow's first time scale and
    any curve looks flat on a log axis)."""
    pos = np.nonzero((t > 0) & (L > 0))[0]
    if len(pos) < 5:
        return []
    lt, lL = np.log10(t[pos]), np.log10(L[pos])
    s = np.gradient(lL, lt)
    out, i = [], 0
    while i < len(pos):
        if abs(s[i]) >= flat or lL[i] > np.log10(L[0] / fallen):
            i += 1
            continue
        j = i
        while j + 1 < len(pos) and abs(s[j + 1]) < flat and lL[j + 1] <= np.log10(L[0] / fallen):
            j += 1
        later = lL[j + 1:].min() if j + 1 < len(pos) else np.inf
        if lt[j] - lt[i] >= min_decades and later <= lL[j] - np.log10(drop):
            k = i + int(np.argmin(np.abs(s[i:j + 1])))
            out.append((pos[i], pos[j], pos[k], s[k]))
        i = j + 1
    return out


def cmd_plateaus(run, outdir):
    t, L = read_traj(run)
    mu, S = load_npy(os.path.join(run, "mu.npy")), load_npy(os.path.join(run, "Sigma.npy"))
    os.makedirs(outdir, exist_ok=True)
    for n, (i0, i1, k, s) in enumerate(plateaus(t, L), 1):
        write_state(os.path.join(outdir, f"plateau_{n}_state.json"), t[k], mu[k], S[k])
        print(f"PLATEAU {n} {t[i0]!r} {t[i1]!r} {t[k]!r} {L[k]!r} {s:.4f}")


def cmd_polishline(log):
    try:
        txt = open(log).read()
    except OSError as e:
        die(f"{log}: {e}")
    m = re.search(r"polish\s+(\d+) Newton steps, \|grad l\| (\S+) -> (\S+) \(relative (\S+)\), "
                  r"loss (\S+)", txt)
    h = re.search(r"Hessian eigenvalues (\S+) \.\. (\S+); (\d+) gauge directions removed; "
                  r"index (\d+) \((\d+) zero[^)]*\) -> ([a-z ]+)", txt)
    if not m or not h:
        die(f"{log}: no polish report in it")
    conv = "NOT converged" not in txt
    print(",".join([*m.groups(), str(conv).lower(), *h.groups()[:5], h.group(6).strip()]))


def cmd_runinfo(run):
    path = os.path.join(run, "run.json")
    try:
        with open(path) as f:
            r = json.load(f)
    except (OSError, ValueError) as e:
        die(f"{path}: {e}")
    ev = "; ".join(e["kind"] + ("" if e["component"] < 0 else f" k{e['component']}") +
                   f" t={e['t']:.4g}" for e in r["events"])
    print(f"{r['t_final']!r},{r['loss_end']!r},\"{ev or 'none'}\",{r['wall_s']}")


def read_csv(path):
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except OSError as e:
        die(f"{path}: {e}")


def cmd_summary(res):
    runs = read_csv(os.path.join(res, "runs.csv"))
    pol = read_csv(os.path.join(res, "polish.csv"))
    rows = []
    for r in runs:
        P = [p for p in pol if p["run"] == r["run"]]
        fin = [p for p in P if p["where"] == "end"]
        pl = [p for p in P if p["where"] != "end"]
        fmt = lambda p: (f"{p['verdict']}, index {p['index']} ({p['zeros']} zero), "
                         f"|g| {float(p['grad_to']):.1e}" + ("" if p["converged"] == "true"
                                                             else " NOT converged"))
        rows.append({
            "run": r["run"], "K": r["K"], "kind": r["kind"], "t_end": r["t_end"],
            "loss_end": r["loss_end"], "events": r["events"], "wall_s": r["wall_s"], "t_singular": r["t_singular"],
            "end_polish": fmt(fin[0]) if fin else "",
            "plateaus": "; ".join(f"t {float(p['t']):.3g}: L {float(p['loss']):.4g}, {fmt(p)}"
                                  for p in pl)})
    with open(os.path.join(res, "summary.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = ["| run | K | t reached | final loss | events | end: polish | plateaus: polish | wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sing = f" (singular at {float(r['t_singular']):.6g})" if r["t_singular"] else ""
        lines.append(f"| {r['run']} | {r['K']} | {float(r['t_end']):.4g}{sing} | "
                     f"{float(r['loss_end']):.4g} | {r['events']} | {r['end_polish']} | "
                     f"{r['plateaus'] or 'none'} | {r['wall_s']} |")
    md = "\n".join(lines) + "\n"
    with open(os.path.join(res, "summary.md"), "w") as f:
        f.write(md)
    print(md, end="")


def main():
    a = sys.argv[1:]
    cmds = {"init": (cmd_init, 5), "plateaus": (cmd_plateaus, 2), "polishline": (cmd_polishline, 1),
            "runinfo": (cmd_runinfo, 1),
            "summary": (cmd_summary, 1)}
    for x in a:
        if x in ("-h", "--help"):
            usage_exit()
        if x.startswith("-") and len(x) > 1:
            usage_exit(f"unknown option '{x}'")
    if not a:
        usage_exit("no command given")
    if a[0] not in cmds:
        usage_exit(f"unknown command '{a[0]}'")
    if len(a) - 1 != cmds[a[0]][1]:
        usage_exit(f"{a[0]}: expected {cmds[a[0]][1]} argument(s), got {len(a) - 1}")
    if a[0] == "init":
        try:
            ok = int(a[2]) > 0 and float(a[3]) > 0
        except ValueError:
            ok = False
        if not ok:
            usage_exit(f"init: K must be a positive integer and GAMMA a positive number "
                       f"(got K = '{a[2]}', GAMMA = '{a[3]}')")
    cmds[a[0]][0](*a[1:])


if __name__ == "__main__":
    main()
