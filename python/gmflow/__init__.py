"""gmflow: exact gradient flows of Gaussian-mixture layers, from NumPy.

A CPython extension over libgmflow (the C library behind the `gmflow` command): the
Bures-Wasserstein gradient flow of the squared loss over Gaussian mixtures
rho = (1/K) sum_k N(mu_k, Sigma_k) on theta = (omega, beta) in R^D, D = d + 1, with closed-form
expectations and adaptive ODE solvers (Chewi, Rigollet, Yan, "Gaussian mixture layers for
neural networks"; docs/FLOWS.md and docs/PYTHON.md in the repository).

    >>> import gmflow
    >>> X, y = gmflow.toy(n=200, d=3, seed=1)
    >>> mu0, Sigma0 = gmflow.init(K=3, d=3, gamma=0.5, seed=2)
    >>> r = gmflow.flow(X, y, mu0, Sigma0, t_eval=[0, 1, 2, 5])
    >>> r.loss            # L(rho_t) at the output times

Functions: flow, thm1, rhs, expectations, toy, init, load_checkpoint, load_idx.
Errors: ValueError (bad input, naming the argument), gmflow.SolverError (solver failure or
divergence; .t and .result), OSError (unreadable files).
"""
from ._gmflow import (
    DEFAULT_METHOD,
    FlowResult,
    SolverError,
    __version__,
    expectations,
    flow,
    init,
    load_checkpoint,
    load_idx,
    rhs,
    thm1,
    toy,
)

__all__ = [
    "DEFAULT_METHOD",
    "FlowResult",
    "SolverError",
    "__version__",
    "expectations",
    "flow",
    "init",
    "load_checkpoint",
    "load_idx",
    "rhs",
    "thm1",
    "toy",
]
