#!/usr/bin/python3
"""stationary_scipy.py -- SciPy's stiff solvers run to a stationary point of the Theorem 4 flow
(the peer of gmflow in bench/run_stationary_bench.sh), and the gradient norm of gmflow's outputs.

The right-hand side is bench/flow_numpy.py's (the closed forms of include/gmflow/gauss.h, NumPy);
the state is v = [mu_1..mu_K | Sigma_1..Sigma_K] (BW form), and the "gradient norm" is the
Euclidean norm of the flow's vector field, ||F(v)||_2 = ||(mu', Sigma')||_2.

  stationary_scipy.py solve DIR --method BDF|Radau|LSODA [--tol 1e-8] [--t-max 1e7]
                      [--rtol 1e-8] [--atol 1e-10] [--tag NAME]
      reads DIR/data.csv and DIR/init.json (written by bench/stationary_toy), integrates with
      solve_ivp until ||F(v)|| <= tol (a terminal event, direction -1) or t-max, and writes
      DIR/<tag>.json (t, gradient norm, loss, counts, CPU and wall seconds of solve_ivp, status)
      and DIR/<tag>_state.json (a gmflow state file, usable with `gmflow flow --init`);
      tag default scipy_<method>.  Prints one RESULT line.
  stationary_scipy.py gradnorm DIR OUTDIR [--tol 1e-8]
      for gmflow's outputs in OUTDIR (t.npy, mu.npy, Sigma.npy) on DIR's data: ||F|| at every
      output time, the first time it is <= tol and the output time after it.  Prints GRAD.
  stationary_scipy.py gradstate DIR STATE.json
      ||F|| at a state file (e.g. gmflow's state.json) on DIR's data.  Prints one GRADSTATE line.
  stationary_scipy.py compare A.json B.json
      two state files: max |a - b| and its ratio to max |b| over (mu, Sigma).  Prints COMPARE.

Use /usr/bin/python3 (Debian's NumPy and SciPy).
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
from scipy.integrate import solve_ivp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flow_numpy import ArgumentParser, Flow, blas_library  # noqa: E402


def load_data(d):
    path = os.path.join(d, "data.csv")
    try:
        a = np.loadtxt(path, delimiter=",", comments="#", skiprows=1, ndmin=2)
    except (OSError, ValueError) as e:
        sys.exit(f"stationary_scipy: {path}: {e}")
    return a[:, :-1], a[:, -1]


def load_state(path):
    try:
        with open(path) as f:
            s = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"stationary_scipy: {path}: {e}")
    if s.get("format") != "gmflow-state" or s.get("form") != "bw":
        sys.exit(f"stationary_scipy: {path}: expected a gmflow-state in the bw form")
    mu, S = np.array(s["mu"], dtype=float), np.array(s["Sigma"], dtype=float)
    return float(s["t"]), mu, S


def write_state(path, t, mu, S):
    K, D = mu.shape
    s = {"format": "gmflow-state", "version": 1, "form": "bw", "t": t, "K": K, "d": D - 1,
         "mu": mu.tolist(), "Sigma": S.tolist()}
    with open(path + ".tmp", "w") as f:
        json.dump(s, f, indent=1)  # json writes repr(float): round-trips every double
    os.replace(path + ".tmp", path)


def cmd_solve(a):
    X, y = load_data(a.dir)
    t0, mu0, S0 = load_state(os.path.join(a.dir, "init.json"))
    K = mu0.shape[0]
    flow = Flow(X, y, K)
    v0 = np.concatenate((mu0.ravel(), S0.ravel()))
    nev = [0]

    def event(t, v):
        nev[0] += 1
        return np.linalg.norm(flow(t, v)) - a.tol

    event.terminal, event.direction = True, -1
    c0, w0 = time.process_time(), time.perf_counter()
    sol = solve_ivp(flow, (t0, t0 + a.t_max), v0, method=a.method, rtol=a.rtol, atol=a.atol,
                    events=event)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    v, t = sol.y[:, -1], float(sol.t[-1])
    if sol.status == 1 and len(sol.y_events[0]):
        v, t = sol.y_events[0][0], float(sol.t_events[0][0])
    gn = float(np.linalg.norm(flow(t, v)))
    mu, S = flow.unpack(v)
    tag = a.tag or f"scipy_{a.method}"
    write_state(os.path.join(a.dir, f"{tag}_state.json"), t, mu, S)
    res = {"method": a.method, "tol": a.tol, "rtol": a.rtol, "atol": a.atol, "t": t,
           "reached": bool(sol.status == 1 and gn <= a.tol * (1 + 1e-6)), "gradnorm": gn,
           "loss": flow.loss(v), "nfev": int(sol.nfev), "njev": int(sol.njev), "nlu": int(sol.nlu),
           "nfev_total": flow.nfev, "nevent": nev[0], "steps": len(sol.t) - 1, "cpu_s": cpu,
           "wall_s": wall, "status": int(sol.status), "message": sol.message,
           "blas": blas_library()}
    with open(os.path.join(a.dir, f"{tag}.json"), "w") as f:
        json.dump(res, f, indent=1)
    print("RESULT " + " ".join(f"{k}={res[k]}" for k in
                               ("method", "reached", "t", "gradnorm", "loss", "nfev_total", "njev",
                                "nlu", "steps", "cpu_s", "wall_s", "status")))


def cmd_gradnorm(a):
    X, y = load_data(a.dir)
    t = np.load(os.path.join(a.out, "t.npy"))
    mu, S = np.load(os.path.join(a.out, "mu.npy")), np.load(os.path.join(a.out, "Sigma.npy"))
    flow = Flow(X, y, mu.shape[1])
    gn = np.array([np.linalg.norm(flow(0.0, np.concatenate((m.ravel(), s.ravel()))))
                   for m, s in zip(mu, S)])
    hit = np.nonzero(gn <= a.tol)[0]
    first = int(hit[0]) if len(hit) else -1
    nxt = t[min(first + 1, len(t) - 1)] if first >= 0 else math.nan
    print(f"GRAD first_index={first} t_first={t[first] if first >= 0 else math.nan!r} t_next={nxt!r} "
          f"gradnorm_first={gn[first] if first >= 0 else math.nan:.3e} t_last={t[-1]!r} "
          f"gradnorm_last={gn[-1]:.3e} min_gradnorm={gn.min():.3e}")


def cmd_gradstate(a):
    X, y = load_data(a.dir)
    t, mu, S = load_state(a.state)
    flow = Flow(X, y, mu.shape[0])
    gn = np.linalg.norm(flow(t, np.concatenate((mu.ravel(), S.ravel()))))
    print(f"GRADSTATE t={t!r} gradnorm={gn:.6e}")


def cmd_compare(a):
    _, ma, Sa = load_state(a.a)
    _, mb, Sb = load_state(a.b)
    va, vb = np.concatenate((ma.ravel(), Sa.ravel())), np.concatenate((mb.ravel(), Sb.ravel()))
    if va.shape != vb.shape:
        sys.exit("stationary_scipy: compare: the states have different sizes")
    d = float(np.abs(va - vb).max())
    print(f"COMPARE max_abs_diff={d:.3e} rel_diff={d / float(np.abs(vb).max()):.3e}")


def main():
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("solve")
    s.add_argument("dir")
    s.add_argument("--method", choices=["BDF", "Radau", "LSODA"], required=True)
    s.add_argument("--tol", type=float, default=1e-8)
    s.add_argument("--t-max", type=float, default=1e7)
    s.add_argument("--rtol", type=float, default=1e-8)
    s.add_argument("--atol", type=float, default=1e-10)
    s.add_argument("--tag")
    g = sub.add_parser("gradnorm")
    g.add_argument("dir")
    g.add_argument("out")
    g.add_argument("--tol", type=float, default=1e-8)
    g = sub.add_parser("gradstate")
    g.add_argument("dir")
    g.add_argument("state")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    a = p.parse_args()
    {"solve": cmd_solve, "gradnorm": cmd_gradnorm, "gradstate": cmd_gradstate,
     "compare": cmd_compare}[a.cmd](a)


if __name__ == "__main__":
    main()
