"""Shared fixtures of the gmflow package tests: the package, the CLI, the repository root."""
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import gmflow

ROOT = Path(__file__).resolve().parents[2]


def cli_path():
    """build/gmflow: $GMFLOW_CLI (set by ctest), else <repo>/build/gmflow."""
    p = os.environ.get("GMFLOW_CLI") or str(ROOT / "build" / "gmflow")
    return p if os.access(p, os.X_OK) else None


@pytest.fixture(scope="session")
def cli():
    p = cli_path()
    if p is None:
        pytest.skip("the gmflow CLI is not built (set GMFLOW_CLI)")
    return p


def run_cli(cli, *args):
    r = subprocess.run([cli, *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, f"gmflow {' '.join(map(str, args))} failed:\n{r.stderr}"
    return r


@pytest.fixture(scope="session")
def small():
    """A small problem: the relu toy (n = 60, d = 2) and a random K = 3 mixture."""
    X, y = gmflow.toy(n=60, d=2, seed=5)
    mu0, Sigma0, C0 = gmflow.init(3, 2, gamma=0.5, seed=7, return_C=True)
    return X, y, mu0, Sigma0, C0


def have_scipy():
    try:
        import scipy  # noqa: F401
        return True
    except ImportError:
        return False


def numpy_flow_module():
    """bench/flow_numpy.py: the independent NumPy/SciPy implementation of the bw flow."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("flow_numpy", ROOT / "bench" / "flow_numpy.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


__all__ = ["ROOT", "cli_path", "run_cli", "have_scipy", "numpy_flow_module", "np", "shutil"]
