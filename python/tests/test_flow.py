"""gmflow.flow and gmflow.rhs against independent routes: the CLI (bitwise), a NumPy/SciPy
integration of the same flow (to the tolerance), finite differences of the loss (the euclid
form is a Euclidean gradient flow), and Theorem 1 (bw at t equals euclid at K t)."""
import csv
import json

import numpy as np
import pytest

import gmflow
from conftest import have_scipy, numpy_flow_module, run_cli


def write_problem(tmp, X, y, mu0, Sigma0, C0=None):
    """The CLI's inputs: a CSV (17 significant digits: exact) and a state.json at t = 0."""
    data = tmp / "data.csv"
    with open(data, "w") as f:
        f.write(",".join([f"x{j}" for j in range(X.shape[1])] + ["y"]) + "\n")
        for xi, yi in zip(X, y):
            f.write(",".join(repr(float(v)) for v in [*xi, yi]) + "\n")
    K, D = mu0.shape
    st = {"format": "gmflow-state", "version": 1, "form": "bw" if C0 is None else "euclid",
          "t": 0, "K": K, "d": D - 1, "mu": mu0.tolist(), "Sigma": Sigma0.tolist()}
    if C0 is not None:
        st["C"] = C0.tolist()
    state = tmp / "state.json"
    state.write_text(json.dumps(st))  # json writes repr(float): round-trips exactly
    return data, state


def cli_trajectory(out):
    with open(out / "trajectory.csv") as f:
        loss = np.array([float(r["loss"]) for r in csv.DictReader(f)])
    arrs = {k: np.load(out / f"{k}.npy") for k in ("t", "mu", "Sigma")}
    if (out / "C.npy").exists():
        arrs["C"] = np.load(out / "C.npy")
    return arrs, loss


@pytest.mark.parametrize("form,method,init", [("bw", "adams", "bw"), ("bw", "rk8pd", "bw"),
                                              ("euclid", "bdf", "euclid"),
                                              ("euclid", "rkf45", "euclid"),
                                              ("euclid", "adams", "bw")])
def test_equals_cli_bitwise(tmp_path, cli, small, form, method, init):
    """init 'euclid': the state file and gmflow.flow get C0; init 'bw' with form 'euclid': both
    start from the Cholesky factors of Sigma0 (the library's gmf_flow_bw_to_euclid)."""
    X, y, mu0, Sigma0, C0 = small
    if init == "euclid":
        Sigma0 = C0 @ np.swapaxes(C0, 1, 2)
    data, state = write_problem(tmp_path, X, y, mu0, Sigma0, C0 if init == "euclid" else None)
    T, n_out = 3.0, 7
    out = tmp_path / "out"
    run_cli(cli, "flow", "--data", data, "--init", state, "--form", form, "--method", method,
            "--rtol", "1e-9", "--atol", "1e-11", "--t-end", T, "--n-out", n_out, "--out", out, "-q")
    ref, loss = cli_trajectory(out)
    t_eval = T * np.arange(n_out) / (n_out - 1)  # the CLI's output times, the same operations
    kw = dict(form=form, method=method, rtol=1e-9, atol=1e-11)
    if init == "euclid":
        r = gmflow.flow(X, y, mu0, None, t_eval, C0=C0, **kw)
    else:
        r = gmflow.flow(X, y, mu0, Sigma0, t_eval, **kw)
    if form == "euclid":
        assert np.array_equal(r.C, ref["C"])
        assert init == "euclid" or np.all(np.triu(r.C[0], 1) == 0)  # Cholesky: lower triangular
    else:
        assert r.C is None
    assert np.array_equal(r.t, ref["t"])
    assert np.array_equal(r.mu, ref["mu"])
    assert np.array_equal(r.Sigma, ref["Sigma"])
    assert np.array_equal(r.loss, loss)
    assert (r.form, r.method) == (form, method)


def test_thm1_equals_cli_check(tmp_path, cli, small):
    """gmflow.thm1 is `gmflow flow --check-thm1`: the same bw trajectory and, as the maxima of
    its per-time discrepancies, the same Theorem 1 distances as run.json, bitwise."""
    X, y, mu0, Sigma0, _ = small
    data, state = write_problem(tmp_path, X, y, mu0, Sigma0)
    out = tmp_path / "out"
    run_cli(cli, "flow", "--data", data, "--init", state, "--check-thm1", "--t-end", 2,
            "--n-out", 5, "--out", out, "-q")
    ref, loss = cli_trajectory(out)
    chk = json.loads((out / "run.json").read_text())["check_thm1"]
    r = gmflow.thm1(X, y, mu0, Sigma0, 2.0 * np.arange(5) / 4)
    assert np.array_equal(r["bw"].Sigma, ref["Sigma"]) and np.array_equal(r["bw"].loss, loss)
    assert r["sigma_rel_err"].max() == chk["sigma_rel_err"]
    assert r["mu_rel_err"].max() == chk["mu_rel_err"]
    assert chk["pass"] and r["sigma_rel_err"].max() < 1e-8


def test_thm1_per_time(small):
    """The per-time discrepancies equal the formula evaluated here on the two trajectories, and
    the Euclidean run is at K times the bw times."""
    X, y, mu0, Sigma0, C0 = small
    K = mu0.shape[0]
    t = np.array([0.2, 0.9, 3.0])  # starting after 0: the results hold these times only
    r = gmflow.thm1(X, y, mu0, None, t, C0=C0, method="rk8pd")
    bw, eu = r["bw"], r["euclid"]
    assert r["t"].tolist() == t.tolist() and eu.t.tolist() == (K * t).tolist()
    es = np.max(np.linalg.norm(bw.Sigma - eu.Sigma, axis=(2, 3))
                / np.linalg.norm(bw.Sigma, axis=(2, 3)), axis=1)
    em = np.linalg.norm((bw.mu - eu.mu).reshape(3, -1), axis=1) / \
        np.linalg.norm(bw.mu.reshape(3, -1), axis=1)
    np.testing.assert_allclose(r["sigma_rel_err"], es, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(r["mu_rel_err"], em, rtol=1e-10, atol=1e-300)
    assert 0 < es.max() < 1e-8 and 0 < em.max() < 1e-8
    # bw from Sigma0 = C0 C0^T: the flow of that state
    ref = gmflow.flow(X, y, mu0, C0 @ np.swapaxes(C0, 1, 2), t, method="rk8pd", rtol=1e-11,
                      atol=1e-13)
    assert np.array_equal(ref.Sigma, bw.Sigma)


def test_toy_and_init_are_the_cli_ones(tmp_path, cli):
    """gmflow.toy + gmflow.init reproduce `gmflow flow`'s built-in toy and random mixture."""
    out = tmp_path / "out"
    run_cli(cli, "flow", "--n", 40, "--d", 2, "--teacher", "mixture", "--width", 3, "--noise",
            0.1, "--data-seed", 11, "-K", 2, "--gamma", 0.7, "--seed", 9, "--t-end", 1, "--n-out",
            3, "--out", out, "-q")
    ref, loss = cli_trajectory(out)
    X, y = gmflow.toy(n=40, d=2, teacher="mixture", width=3, noise=0.1, seed=11)
    mu0, Sigma0 = gmflow.init(2, 2, gamma=0.7, seed=9)
    r = gmflow.flow(X, y, mu0, Sigma0, [0.0, 0.5, 1.0])
    assert np.array_equal(r.mu, ref["mu"]) and np.array_equal(r.Sigma, ref["Sigma"])
    assert np.array_equal(r.loss, loss)


@pytest.mark.skipif(not have_scipy(), reason="SciPy not installed (python3-scipy)")
def test_agrees_with_scipy(small):
    """The same flow written independently in NumPy (bench/flow_numpy.py, from the closed forms)
    and integrated by SciPy's DOP853 at tighter tolerances: gmflow's trajectory agrees to its
    own tolerance: within 10 rtol relative to the state's scale (measured: adams 4e-9, bdf 1e-8,
    rk8pd 1.5e-11 at rtol 1e-8; rk8pd 8e-14 at rtol 1e-12)."""
    from scipy.integrate import solve_ivp
    X, y, mu0, Sigma0, _ = small
    K, D = mu0.shape
    t_eval = np.array([0.0, 0.1, 0.7, 2.0, 4.0])
    fl = numpy_flow_module().Flow(X, y, K)
    v0 = np.concatenate([mu0.ravel(), Sigma0.ravel()])
    sol = solve_ivp(fl, (0, t_eval[-1]), v0, method="DOP853", t_eval=t_eval, rtol=1e-12,
                    atol=1e-14)
    assert sol.success
    ref_mu = sol.y[: K * D].T.reshape(-1, K, D)
    ref_S = sol.y[K * D:].T.reshape(-1, K, D, D)
    scale = np.abs(sol.y).max()
    for method in ("adams", "bdf", "rk8pd"):
        r = gmflow.flow(X, y, mu0, Sigma0, t_eval, method=method, rtol=1e-8, atol=1e-10)
        assert np.abs(r.mu - ref_mu).max() <= 1e-7 * scale, method
        assert np.abs(r.Sigma - ref_S).max() <= 1e-7 * scale, method
        ref_loss = [fl.loss(v) for v in sol.y.T]
        np.testing.assert_allclose(r.loss, ref_loss, rtol=1e-6)
    # and at tight tolerances the agreement tightens accordingly
    r = gmflow.flow(X, y, mu0, Sigma0, t_eval, method="rk8pd", rtol=1e-12, atol=1e-14)
    assert np.abs(r.Sigma - ref_S).max() <= 1e-11 * scale
    assert np.abs(r.mu - ref_mu).max() <= 1e-11 * scale


def test_rhs_agrees_with_numpy(small):
    X, y, mu0, Sigma0, _ = small
    K, D = mu0.shape
    fl = numpy_flow_module().Flow(X, y, K)
    v = fl(0.0, np.concatenate([mu0.ravel(), Sigma0.ravel()]))
    dmu, dS, loss = gmflow.rhs(X, y, mu0, Sigma0)
    assert dmu.shape == (K, D) and dS.shape == (K, D, D)
    scale = np.abs(v).max()
    assert np.abs(dmu.ravel() - v[: K * D]).max() <= 1e-12 * scale
    assert np.abs(dS.ravel() - v[K * D:]).max() <= 1e-12 * scale
    assert abs(loss - fl.loss(np.concatenate([mu0.ravel(), Sigma0.ravel()]))) <= 1e-13


def test_euclid_rhs_is_minus_the_gradient(small):
    """Theorem 1's form is the Euclidean gradient flow of l(mu, C) = L(rho): its right-hand
    side equals minus central differences of the loss (the loss from NumPy, not gmflow)."""
    X, y, mu0, _, C0 = small
    K, D = mu0.shape
    rng = np.random.default_rng(3)
    C = C0 + 0.1 * np.tril(rng.standard_normal(C0.shape))
    fl = numpy_flow_module().Flow(X, y, K)

    def loss(mu, C):
        return fl.loss(np.concatenate([mu.ravel(), (C @ np.swapaxes(C, 1, 2)).ravel()]))

    dmu, dC, L = gmflow.rhs(X, y, mu0, C, form="euclid")
    assert abs(L - loss(mu0, C)) <= 1e-13
    h = 1e-5
    for arr, dot in ((mu0, dmu), (C, dC)):
        for idx in [(0, 0), (1, 2), (2, 1)] if arr.ndim == 2 else [(0, 1, 1), (1, 2, 0), (2, 0, 2)]:
            p, m = arr.copy(), arr.copy()
            p[idx] += h
            m[idx] -= h
            fd = (loss(p, C) - loss(m, C)) / (2 * h) if arr is mu0 else \
                (loss(mu0, p) - loss(mu0, m)) / (2 * h)
            assert abs(-fd - dot[idx]) <= 1e-7 * max(1.0, abs(fd)), (idx, fd, dot[idx])


def test_theorem1_bw_equals_euclid_at_K_t(small):
    X, y, mu0, _, C0 = small
    K = mu0.shape[0]
    Sigma0 = C0 @ np.swapaxes(C0, 1, 2)
    t = np.array([0.0, 0.3, 1.0, 2.5])
    kw = dict(rtol=1e-11, atol=1e-13)
    bw = gmflow.flow(X, y, mu0, Sigma0, t, **kw)
    eu = gmflow.flow(X, y, mu0, None, K * t, form="euclid", C0=C0, **kw)
    assert np.allclose(eu.t, K * bw.t, rtol=0, atol=0)
    rel = np.linalg.norm(bw.Sigma - eu.Sigma, axis=(2, 3)) / np.linalg.norm(bw.Sigma, axis=(2, 3))
    assert rel.max() < 1e-8
    assert np.abs(bw.mu - eu.mu).max() < 1e-8 * np.abs(bw.mu).max()
    np.testing.assert_array_equal(eu.Sigma, eu.C @ np.swapaxes(eu.C, 2, 3))


def test_arbitrary_output_times(small):
    """Uneven times, starting after 0: the values at those times equal (to the tolerance) a
    run that records a fine grid containing them."""
    X, y, mu0, Sigma0, _ = small
    t = np.array([0.05, 0.06, 1.3, 4.0])
    r = gmflow.flow(X, y, mu0, Sigma0, t, rtol=1e-11, atol=1e-13)
    assert r.t.tolist() == t.tolist() and r.mu.shape == (4, 3, 3)
    grid = np.union1d(np.linspace(0, 4, 9), t)
    g = gmflow.flow(X, y, mu0, Sigma0, grid, rtol=1e-11, atol=1e-13)
    sel = np.searchsorted(grid, t)
    assert np.abs(g.Sigma[sel] - r.Sigma).max() < 1e-8
    one = gmflow.flow(X, y, mu0, Sigma0, [0.0])
    assert one.t.tolist() == [0.0] and np.array_equal(one.mu[0], mu0)
    assert one.loss[0] == gmflow.rhs(X, y, mu0, Sigma0)[2]


def test_layouts_and_dtypes(small):
    """float32, Fortran order, non-contiguous slices and lists give the float64 C-order
    result (bitwise: the conversion to float64 is exact)."""
    X, y, mu0, Sigma0, _ = small
    t = [0.0, 0.5, 1.0]
    X32 = X.astype(np.float32)
    ref = gmflow.flow(X32.astype(np.float64), y, mu0, Sigma0, t)
    r32 = gmflow.flow(X32, y.astype(np.float32).astype(np.float64), mu0, Sigma0, t)
    r32b = gmflow.flow(X32, y, mu0, Sigma0, t)
    assert np.array_equal(r32b.Sigma, ref.Sigma)
    assert r32.mu.dtype == np.float64 and r32.mu.flags.c_contiguous
    ref = gmflow.flow(X, y, mu0, Sigma0, t)
    big = np.zeros((X.shape[0] * 2, X.shape[1] + 3))
    big[::2, 1:1 + X.shape[1]] = X
    variants = [
        (np.asfortranarray(X), y, mu0, np.asfortranarray(Sigma0)),
        (big[::2, 1:1 + X.shape[1]], np.repeat(y, 2)[::2], mu0.T.copy().T, Sigma0.transpose(0, 2, 1)),
        (X.tolist(), y.tolist(), mu0.tolist(), Sigma0.tolist()),
    ]
    for Xv, yv, mv, Sv in variants:
        r = gmflow.flow(Xv, yv, mv, Sv, t)
        assert np.array_equal(r.mu, ref.mu) and np.array_equal(r.Sigma, ref.Sigma)
    dmu, dS, _ = gmflow.rhs(np.asfortranarray(X32), y, mu0, Sigma0)
    assert dmu.dtype == np.float64 and dS.shape == Sigma0.shape


def test_result_object(small):
    X, y, mu0, Sigma0, _ = small
    r = gmflow.flow(X, y, mu0, Sigma0, np.linspace(0, 1, 5), method="rkf45")
    K, D = mu0.shape
    assert r.t.shape == (5,) and r.mu.shape == (5, K, D) and r.Sigma.shape == (5, K, D, D)
    assert r.loss.shape == (5,) and r.C is None
    assert set(r.stats) >= {"nsteps", "nfevals", "netfails", "nrhs", "wall_s", "hlast"}
    assert r.stats["nfevals"] > 0 and r.stats["nrhs"] > 0
    assert "FlowResult(form='bw', method='rkf45', T=5, K=3, D=3" in repr(r)
    with pytest.raises(AttributeError):
        r.t = None
    assert np.all(np.diff(r.loss) <= 1e-12)  # a gradient flow: the loss does not increase


def test_default_method_and_docs():
    import inspect
    sig = inspect.signature(gmflow.flow)
    assert list(sig.parameters)[:5] == ["X", "y", "mu0", "Sigma0", "t_eval"]
    assert sig.parameters["form"].kind is inspect.Parameter.KEYWORD_ONLY
    assert "SolverError" in gmflow.flow.__doc__ and "t_eval" in gmflow.flow.__doc__
    for f in (gmflow.rhs, gmflow.expectations, gmflow.toy, gmflow.init, gmflow.load_checkpoint,
              gmflow.load_idx):
        inspect.signature(f)
        assert len(f.__doc__) > 100
    assert isinstance(gmflow.DEFAULT_METHOD, str) and gmflow.DEFAULT_METHOD
