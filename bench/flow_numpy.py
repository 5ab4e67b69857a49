#!/usr/bin/python3
"""flow_numpy.py -- the Theorem 4 Gaussian-mixture flow in NumPy/SciPy: gmflow's peer.

The same flow as gmflow's GMF_FLOW_BW form with the squared loss (src/exact/sqloss.c, src/exact/flow.c),
written from the closed forms of DESIGN.md / include/gmflow/gauss.h, vectorized over samples and
components with NumPy (scipy.special.ndtr for Phi), integrated by scipy.integrate.solve_ivp.

  flow_numpy.py solve DIR --T T --method DOP853|RK45|LSODA --rtol R --atol A [--tag NAME]
                          [--repeat R]
      reads DIR/{X,y,mu0,Sigma0}.npy (written by `bench_rhs flow`), integrates from 0 to T,
      writes DIR/{mu,Sigma}_<tag>.npy (tag default py_<method>) and prints one RESULT line.
  flow_numpy.py compare DIR TAG_A:TAG_B... [--rtol R --atol A]
      prints the agreement of final states (DIR/{mu,Sigma}_<tag>.npy), one COMPARE line a pair.
  flow_numpy.py rhs DIR [--out FILE] [--reps R] [--naive]
      the right-hand side at the initial state: its time, its agreement with DIR/rhs_c.npy (the C
      RHS, written by `bench_rhs flow`), and with --naive the time of a per-sample Python loop.

Method peers (same rtol/atol, error test |err_i| <= atol + rtol |y_i| in both):
  GSL rk8pd (Prince-Dormand 8(7), 13 stages)   <->  DOP853 (Dormand-Prince 8(5,3), 12 stages)
  GSL rkf45 (Runge-Kutta-Fehlberg 4(5))         <->  RK45 (Dormand-Prince 5(4))
  CVODE Adams (variable-order Adams-Moulton,    <->  LSODA (ODEPACK; starts in variable-order
    fixed-point iteration)                              Adams with functional iteration, switches
                                                        to BDF only if it detects stiffness)
The norms differ: GSL and LSODA take the max over components, CVODE and SciPy's RK methods the
root mean square; step counts are reported so that the cost per step can be compared too.
"""
import argparse
import math
import os
import sys
import time

import numpy as np
from scipy.integrate import solve_ivp
from scipy.special import ndtr

# the scripts' command-line convention (tools/scriptargs.py)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from scriptargs import ArgumentParser  # noqa: E402

T_MAX = 38.0  # gauss.c's GMF_T_MAX: beyond |t| = 38, Phi is 0 or 1 and phi underflows
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class Flow:
    """Theorem 4 right-hand side for the state v = [mu_1..mu_K | Sigma_1..Sigma_K]."""

    def __init__(self, X, y, K):
        self.X = np.ascontiguousarray(X, dtype=np.float64)
        self.y = np.ascontiguousarray(y, dtype=np.float64)
        self.n, self.d = self.X.shape
        self.K, self.D = K, self.d + 1
        self.nfev = 0

    def unpack(self, v):
        K, D = self.K, self.D
        return v[: K * D].reshape(K, D), v[K * D :].reshape(K, D, D)

    def closed_forms(self, mu, S):
        """Per (component, sample) scalars; arrays of shape (K, n), W of shape (K, n, D)."""
        X = self.X
        m = (X @ mu[:, 1:].T).T  # (K, n): m = xt . mu
        W = np.matmul(X, S[:, 1:, :])  # (K, n, D): rows c = Sigma xt (Sigma symmetric)
        s2 = np.einsum("nd,knd->kn", X, W[:, :, 1:])  # s^2 = xt . c
        c0 = W[:, :, 0]
        s = np.sqrt(np.maximum(s2, 0.0))
        ok = (s > 0.0) & (np.abs(m) < T_MAX * s)
        pos = s > 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(ok, m / s, 0.0)
            u0 = np.where(pos, c0 / s, 0.0)
        # degenerate or far-tail limit: Y = m almost surely, Phi = 1{m > 0}, phi = 0
        Phi = np.where(ok, ndtr(t), (m > 0.0).astype(np.float64))
        phi = np.where(ok, np.exp(-0.5 * t * t) * INV_SQRT_2PI, 0.0)
        muw = mu[:, :1]
        A = m * Phi + s * phi  # E relu(Y)
        Ef = muw * A + c0 * Phi  # E f
        g = muw * Phi + u0 * phi  # E[omega 1{Y > 0}]
        kap = phi * (muw - u0 * t)  # s E[omega delta(Y)]
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.where(pos, kap / s, 0.0)
        return W, Phi, A, g, q, Ef

    def loss(self, v):
        mu, S = self.unpack(v)
        Ef = self.closed_forms(mu, S)[-1]
        r = self.y - Ef.mean(axis=0)
        return float(np.mean(r * r))

    def __call__(self, t, v):
        self.nfev += 1
        X, n = self.X, self.n
        mu, S = self.unpack(v)
        W, Phi, A, g, q, Ef = self.closed_forms(mu, S)
        r = self.y - Ef.mean(axis=0)  # residuals r_i = y_i - h(x_i)
        rho = (-2.0 / n) * r  # dL = sum_i rho_i f(x_i, .)
        # E_k grad dL = sum_i rho_i (A_i, g_i x_i)
        grad = np.empty_like(mu)
        grad[:, 0] = A @ rho
        grad[:, 1:] = (g * rho) @ X
        # Stein form H_k = E_k[hess dL] Sigma_k = sum_i rho_i (e0 a_i^T + xt_i b_i^T),
        # a = Phi c, b = Phi Sigma e0 + (kap / s) c
        zp = Phi * rho  # (K, n)
        H = np.empty_like(S)
        H[:, 0, :] = np.matmul(zp[:, None, :], W)[:, 0, :]
        H[:, 1:, :] = np.matmul(X.T, (rho * q)[:, :, None] * W)
        H[:, 1:, :] += (zp @ X)[:, :, None] * S[:, None, 0, :]
        # mu' = -grad, Sigma' = -(H + H^T)
        return np.concatenate((-grad.ravel(), -(H + H.transpose(0, 2, 1)).ravel()))


def blas_library():
    """The BLAS shared object NumPy has loaded (from /proc/self/maps)."""
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
        return ",".join(sorted(os.path.basename(x) for x in libs)) or "?"
    except OSError:
        return "?"


def load_problem(d):
    X, y = np.load(os.path.join(d, "X.npy")), np.load(os.path.join(d, "y.npy"))
    mu0, S0 = np.load(os.path.join(d, "mu0.npy")), np.load(os.path.join(d, "Sigma0.npy"))
    if X.ndim != 2 or y.shape != (X.shape[0],) or mu0.ndim != 2 or mu0.shape[1] != X.shape[1] + 1:
        sys.exit(f"flow_numpy: inconsistent problem files in {d}")
    K, D = mu0.shape
    if S0.shape != (K, D, D):
        sys.exit(f"flow_numpy: Sigma0.npy has shape {S0.shape}, expected {(K, D, D)}")
    return X, y, mu0, S0


def cmd_solve(a):
    X, y, mu0, S0 = load_problem(a.dir)
    K, D = mu0.shape
    flow = Flow(X, y, K)
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "?")
    v0 = np.concatenate((mu0.ravel(), S0.ravel()))
    # LSODA: a zero-bandwidth Jacobian keeps the workspace of its stiff (BDF) branch O(N); the
    # default dense one is O(N^2) and overflows LSODA's integer sizes at N = 51510.  The Adams
    # branch never uses a Jacobian; njev = 0 in the RESULT line shows LSODA stayed there.
    extra = {"lband": 0, "uband": 0} if a.method == "LSODA" else {}
    best, best_cpu, sol, spent = math.inf, math.inf, None, 0.0
    for _ in range(a.repeat):  # up to --repeat runs, stop once 2 s have been spent
        flow.nfev = 0
        t0, c0 = time.perf_counter(), time.process_time()
        sol = solve_ivp(flow, (0.0, a.T), v0, method=a.method, rtol=a.rtol, atol=a.atol, **extra)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        best, best_cpu, spent = min(best, dt), min(best_cpu, dc), spent + dt
        if not sol.success:
            sys.exit(f"flow_numpy: solve_ivp failed: {sol.message}")
        if spent > 2.0:
            break
    vT = sol.y[:, -1]
    # the RHS alone at the final state: best of 3 batches, timed by the same clock as the C side
    # (process CPU time with one BLAS thread, where time slicing by others does not count)
    clock = time.process_time if threads == "1" else time.perf_counter
    reps = max(1, int(0.2 / max(best / max(sol.nfev, 1), 1e-6)))
    t_rhs = math.inf
    for _ in range(3):
        t0 = clock()
        for _ in range(reps):
            flow(a.T, vT)
        t_rhs = min(t_rhs, (clock() - t0) / reps)
    tag = a.tag or f"py_{a.method}"
    muT, ST = flow.unpack(vT)
    np.save(os.path.join(a.dir, f"mu_{tag}.npy"), muT)
    np.save(os.path.join(a.dir, f"Sigma_{tag}.npy"), ST)
    n, d = X.shape
    print(
        f"RESULT impl=scipy method={a.method} n={n} d={d} K={K} T={a.T:g} rtol={a.rtol:g} "
        f"atol={a.atol:g} threads={threads} "
        f"wall_s={best:.6e} cpu_s={best_cpu:.6e} nfev={sol.nfev} nsteps={len(sol.t) - 1} njev={sol.njev} "
        f"rhs_s={t_rhs:.6e} loss0={flow.loss(v0):.10g} lossT={flow.loss(vT):.10g} "
        f"blas={blas_library()}"
    )


def load_state(d, tag):
    mu = np.load(os.path.join(d, f"mu_{tag}.npy"))
    S = np.load(os.path.join(d, f"Sigma_{tag}.npy"))
    return np.concatenate((mu.ravel(), S.ravel())), mu.size


def cmd_compare(a):
    for spec in a.pairs:
        ta, _, tb = spec.partition(":")
        if not tb:
            sys.exit(f"flow_numpy: compare wants TAG_A:TAG_B pairs, got {spec!r}")
        va, nm = load_state(a.dir, ta)
        vb, _ = load_state(a.dir, tb)
        if va.shape != vb.shape:
            sys.exit(f"flow_numpy: states {ta} and {tb} differ in shape")
        diff = np.abs(va - vb)

        def rel(sl):
            return float(diff[sl].max() / max(np.abs(vb[sl]).max(), 1e-300))

        weighted = float((diff / (a.atol + a.rtol * np.abs(vb))).max())
        print(
            f"COMPARE a={ta} b={tb} max_abs={diff.max():.3e} rel={rel(slice(None)):.3e} "
            f"rel_mu={rel(slice(0, nm)):.3e} rel_Sigma={rel(slice(nm, None)):.3e} "
            f"weighted={weighted:.3e}"
        )


def naive_rhs(X, y, mu, S):
    """Per-(component, sample) loops in plain Python: the implementation that vectorization and
    C replace.  Only for timing one evaluation (rhs --naive)."""
    n, d = X.shape
    K, D = mu.shape
    stats = []
    h = np.zeros(n)
    for k in range(K):
        row = []
        for i in range(n):
            x = X[i]
            c = S[k][:, 1:] @ x
            m, s2, c0, muw = float(mu[k, 1:] @ x), float(x @ c[1:]), float(c[0]), float(mu[k, 0])
            s = math.sqrt(max(s2, 0.0))
            if s > 0 and abs(m) < T_MAX * s:
                t = m / s
                Phi, phi, u0 = 0.5 * math.erfc(-t / math.sqrt(2)), math.exp(-0.5 * t * t) * INV_SQRT_2PI, c0 / s
            else:
                t, Phi, phi, u0 = 0.0, float(m > 0), 0.0, (c0 / s if s > 0 else 0.0)
            A = m * Phi + s * phi
            q = phi * (muw - u0 * t) / s if s > 0 else 0.0
            row.append((c, Phi, A, muw * Phi + u0 * phi, q))
            h[i] += (muw * A + c0 * Phi) / K
        stats.append(row)
    rho = (-2.0 / n) * (y - h)
    out_mu, out_S = np.zeros((K, D)), np.zeros((K, D, D))
    for k in range(K):
        grad, H = np.zeros(D), np.zeros((D, D))
        for i in range(n):
            c, Phi, A, g, q = stats[k][i]
            xt = np.concatenate(([0.0], X[i]))
            grad += rho[i] * np.concatenate(([A], g * X[i]))
            a_ = Phi * c
            b_ = Phi * S[k][:, 0] + q * c
            H[0] += rho[i] * a_
            H += rho[i] * np.outer(xt, b_)
        out_mu[k], out_S[k] = -grad, -(H + H.T)
    return np.concatenate((out_mu.ravel(), out_S.ravel()))


def cmd_rhs(a):
    X, y, mu0, S0 = load_problem(a.dir)
    flow = Flow(X, y, mu0.shape[0])
    v0 = np.concatenate((mu0.ravel(), S0.ravel()))
    v = flow(0.0, v0)
    # process CPU time with one BLAS thread (not inflated by other processes), else wall clock
    clock = time.process_time if os.environ.get("OPENBLAS_NUM_THREADS") == "1" else time.perf_counter
    reps, t_vec = max(1, a.reps), math.inf
    for _ in range(3):
        t0 = clock()
        for _ in range(reps):
            flow(0.0, v0)
        t_vec = min(t_vec, (clock() - t0) / reps)
    line = f"RHS vectorized_s={t_vec:.6e}"
    if a.naive:
        t0 = clock()
        vn = naive_rhs(X, y, mu0, S0)
        t_naive = clock() - t0
        line += f" naive_s={t_naive:.6e} naive_rel_diff={np.abs(vn - v).max() / np.abs(v).max():.3e}"
    c_path = os.path.join(a.dir, "rhs_c.npy")
    if os.path.exists(c_path):
        vc = np.load(c_path)
        line += f" c_rel_diff={np.abs(vc - v).max() / np.abs(vc).max():.3e}"
    out = a.out or os.path.join(a.dir, "rhs_py.npy")
    np.save(out, v)
    print(line)


def main():
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("solve")
    s.add_argument("dir")
    s.add_argument("--T", type=float, required=True)
    s.add_argument("--method", choices=["RK45", "DOP853", "LSODA", "RK23", "Radau", "BDF"],
                   default="DOP853")
    s.add_argument("--rtol", type=float, default=1e-8)
    s.add_argument("--atol", type=float, default=1e-10)
    s.add_argument("--tag")
    s.add_argument("--repeat", type=int, default=1)
    c = sub.add_parser("compare")
    c.add_argument("dir")
    c.add_argument("pairs", nargs="+", metavar="TAG_A:TAG_B")
    c.add_argument("--rtol", type=float, default=1e-8)
    c.add_argument("--atol", type=float, default=1e-10)
    r = sub.add_parser("rhs")
    r.add_argument("dir")
    r.add_argument("--out")
    r.add_argument("--reps", type=int, default=10, help="vectorized evaluations per timing batch")
    r.add_argument("--naive", action="store_true", help="also time one per-sample Python loop")
    a = p.parse_args()
    {"solve": cmd_solve, "compare": cmd_compare, "rhs": cmd_rhs}[a.cmd](a)


if __name__ == "__main__":
    main()
