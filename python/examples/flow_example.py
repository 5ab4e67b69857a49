# docs/PYTHON.md's worked example (run by python/tests/test_docs.py; its output is in the docs).
import numpy as np
import gmflow

X, y = gmflow.toy(n=200, d=3, seed=1)                  # the CLI's default toy: (200, 3), (200,)
mu0, Sigma0, C0 = gmflow.init(K=3, d=3, gamma=0.5, seed=2, return_C=True)  # as `gmflow flow`
t = np.concatenate([[0.0], np.geomspace(0.01, 5, 5)])   # any increasing output times
r = gmflow.flow(X, y, mu0, Sigma0, t, rtol=1e-11, atol=1e-13)
print(r)
print("loss ", np.array2string(r.loss, precision=6))
print("stats", {k: r.stats[k] for k in ("nsteps", "nfevals", "netfails")})

# Theorem 1: the Euclidean flow over (mu, C) at K t is the Bures-Wasserstein flow at t
th = gmflow.thm1(X, y, mu0, Sigma0, t)                 # both flows, as `flow --check-thm1`
print("Theorem 1: ||Sigma_bw(t) - C C^T(3t)||_F / ||Sigma_bw(t)||_F =",
      np.array2string(th["sigma_rel_err"], precision=2))

# the closed forms of one component against Monte Carlo
e = gmflow.expectations(X[0], mu0[0], Sigma0[0])
draws = np.random.default_rng(0).multivariate_normal(mu0[0], Sigma0[0], size=1_000_000)
f = draws[:, 0] * np.maximum(draws[:, 1:] @ X[0], 0)
print(f"E f = {e['Ef']:.6f} (closed form), {f.mean():.6f} +- {f.std() / 1e3:.6f} (Monte Carlo)")

# bad input names the argument
bad = Sigma0.copy()
bad[1, 0, 2] += 0.1
try:
    gmflow.flow(X, y, mu0, bad, t)
except ValueError as err:
    print("ValueError:", err)
try:
    gmflow.flow(X, y, mu0, Sigma0, [0, 0.5, 1, 1e4], max_steps=60)
except gmflow.SolverError as err:
    print("SolverError:", err)
    print(f"  last output time reached {err.t}, result.t = {err.result.t}")
