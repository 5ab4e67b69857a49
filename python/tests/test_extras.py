"""gmflow.expectations against Monte Carlo; gmflow.toy and gmflow.init; load_checkpoint and
load_idx against files written here from their documented formats (and, when the MNIST files are
in ../shared/data, against a real `gmflow train` run and its snapshots)."""
import gzip
import struct

import numpy as np
import pytest

import gmflow
from conftest import ROOT, run_cli


def random_component(rng, d):
    D = d + 1
    A = rng.standard_normal((D, D)) * 0.5
    return rng.standard_normal(D) * 0.7, A @ A.T + 0.1 * np.eye(D)


def test_expectations_monte_carlo():
    """E f, E grad f and the Stein form E[grad f (theta - mu)^T] against 200,000 draws, each
    entry within 5 standard errors; E[hess f] Sigma equals the Stein form (Stein's identity)."""
    rng = np.random.default_rng(12)
    d, M = 3, 200_000
    mu, Sigma = random_component(rng, d)
    xs = rng.standard_normal((2, d))
    th = rng.multivariate_normal(mu, Sigma, size=M)
    e = gmflow.expectations(xs, mu, Sigma)
    for i, x in enumerate(xs):
        Y = th[:, 1:] @ x
        on = (Y > 0).astype(float)
        f = th[:, 0] * np.maximum(Y, 0)
        grad = np.column_stack([np.maximum(Y, 0), (th[:, 0] * on)[:, None] * x])
        stein = grad[:, :, None] * (th - mu)[:, None, :]
        for name, samples in (("Ef", f), ("grad", grad), ("stein", stein)):
            mc = samples.mean(axis=0)
            se = samples.std(axis=0) / np.sqrt(M)
            assert np.all(np.abs(e[name][i] - mc) <= 5 * se + 1e-12), (name, e[name][i], mc, se)
        np.testing.assert_allclose(e["hess"][i] @ Sigma, e["stein"][i], rtol=1e-12, atol=1e-14)
        assert e["m"][i] == pytest.approx(mu[1:] @ x)
        assert e["s"][i] == pytest.approx(np.sqrt(x @ Sigma[1:, 1:] @ x))
    one = gmflow.expectations(xs[1], mu, Sigma)  # one input: no leading axis
    assert isinstance(one["Ef"], float) and one["grad"].shape == (d + 1,)
    assert one["Ef"] == e["Ef"][1] and np.array_equal(one["stein"], e["stein"][1])


def test_expectations_degenerate_limit():
    """s = 0 (x = 0): Y = m = 0 almost surely, f = 0: every expectation is 0."""
    mu, Sigma = random_component(np.random.default_rng(1), 2)
    e = gmflow.expectations(np.zeros(2), mu, Sigma)
    assert e["s"] == 0 and e["Ef"] == 0 and not np.any(e["hess"]) and not np.any(e["stein"])


def test_toy_and_init():
    X, y = gmflow.toy()
    assert X.shape == (200, 3) and y.shape == (200,) and X.dtype == np.float64
    X2, y2 = gmflow.toy(n=200, d=3, teacher="relu", width=4, noise=0.05, seed=1)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)  # the documented defaults
    assert not np.array_equal(gmflow.toy(seed=2)[0], X)
    Xb, _ = gmflow.toy(n=20000, d=2, seed=3)
    assert abs(Xb.mean()) < 0.03 and abs(Xb.std() - 1) < 0.03  # x ~ N(0, I)
    mu, S, C = gmflow.init(400, 4, gamma=0.3, seed=5, return_C=True)
    assert mu.shape == (400, 5) and S.shape == (400, 5, 5) and C.shape == (400, 5, 5)
    assert np.array_equal(S, np.broadcast_to(0.09 * np.eye(5), S.shape))
    assert np.array_equal(C, np.broadcast_to(0.3 * np.eye(5), C.shape))
    assert abs(mu.std() - 0.3) < 0.02 and abs(mu.mean()) < 0.02
    assert np.array_equal(gmflow.init(3, 2)[0], gmflow.init(3, 2, gamma=0.5, seed=2)[0])


def fnv1a(b):
    h = 0xcbf29ce484222325
    for c in b:
        h = ((h ^ c) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def write_checkpoint(path, kind, d, L, K, width, Lmid, fc_scale, params, epoch, seed):
    """docs/TRAINING.md's layout, little-endian."""
    body = b"GMFLOWCK" + struct.pack("<II", 1, 104) + kind.encode().ljust(16, b"\0")
    body += struct.pack("<5Qd3Q", d, L, K, width, Lmid, fc_scale, len(params), epoch, seed)
    body += np.asarray(params, "<f8").tobytes()
    path.write_bytes(body + struct.pack("<Q", fnv1a(body)))
    return body


def test_load_checkpoint_from_the_documented_format(tmp_path):
    rng = np.random.default_rng(4)
    d, L, K = 5, 2, 3
    sizes = {"mu": (K, d), "sigma": (K, d), "U": (K, L, d), "v": (K, L)}
    parts = {k: rng.standard_normal(s) for k, s in sizes.items()}
    params = np.concatenate([parts[k].ravel() for k in sizes])
    p = tmp_path / "gm.gmck"
    body = write_checkpoint(p, "gm", d, L, K, 0, 0, 0.0, params, 7, 99)
    ck = gmflow.load_checkpoint(p)
    assert (ck["kind"], ck["d"], ck["L"], ck["K"], ck["epoch"], ck["seed"]) == ("gm", d, L, K, 7, 99)
    assert ck["groups"] == list(sizes) and np.array_equal(ck["params"], params)
    assert ck["run"] is None  # version 1: no run record
    for k in sizes:
        assert np.array_equal(ck[k], parts[k]), k
    # fc: beta (m, d) | omega (m, L) and its own fc_scale
    m = 4
    beta, omega = rng.standard_normal((m, d)), rng.standard_normal((m, L))
    write_checkpoint(tmp_path / "fc.gmck", "fc", d, L, 0, m, 0, 1.0,
                     np.concatenate([beta.ravel(), omega.ravel()]), 1, 2)
    fc = gmflow.load_checkpoint(str(tmp_path / "fc.gmck").encode())
    assert fc["fc_scale"] == 1.0 and np.array_equal(fc["beta"], beta)
    assert np.array_equal(fc["omega"], omega)
    # corrupt: one flipped parameter bit, truncated, bad magic, a header asking for 2^40 params
    bad = bytearray(p.read_bytes())
    bad[200] ^= 1
    (tmp_path / "flip.gmck").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="flip.gmck: checksum mismatch"):
        gmflow.load_checkpoint(tmp_path / "flip.gmck")
    (tmp_path / "short.gmck").write_bytes(p.read_bytes()[:-9])
    with pytest.raises(ValueError, match="short.gmck: .*(size|corrupt)"):
        gmflow.load_checkpoint(tmp_path / "short.gmck")
    (tmp_path / "magic.gmck").write_bytes(b"NOTACKPT" + body[8:])
    with pytest.raises(ValueError, match="magic.gmck: not a gmflow checkpoint"):
        gmflow.load_checkpoint(tmp_path / "magic.gmck")
    write_checkpoint(tmp_path / "huge.gmck", "gm", 1 << 20, 1 << 20, 1 << 20, 0, 0, 0.0,
                     params, 0, 0)
    with pytest.raises(ValueError, match="huge.gmck: .*does not fit"):
        gmflow.load_checkpoint(tmp_path / "huge.gmck")


def idx_bytes(arr):
    arr = np.asarray(arr, np.uint8)
    return struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) \
        + arr.tobytes()


def test_load_idx(tmp_path):
    rng = np.random.default_rng(0)
    im = rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)
    lab = rng.integers(0, 10, 5, dtype=np.uint8)
    (tmp_path / "im.idx").write_bytes(idx_bytes(im))
    (tmp_path / "lab.idx.gz").write_bytes(gzip.compress(idx_bytes(lab)))
    a = gmflow.load_idx(tmp_path / "im.idx")
    assert a.dtype == np.uint8 and np.array_equal(a, im)
    assert np.array_equal(gmflow.load_idx(tmp_path / "lab.idx.gz"), lab)
    assert np.array_equal(gmflow.load_idx(tmp_path / "lab.idx.gz", kind="labels"), lab)
    with pytest.raises(ValueError, match="lab.idx.gz: wrong IDX magic"):
        gmflow.load_idx(tmp_path / "lab.idx.gz", kind="images")
    (tmp_path / "cut.idx").write_bytes(idx_bytes(im)[:-1])
    with pytest.raises(ValueError, match="neither IDX images nor labels: as images: .*cut.idx"):
        gmflow.load_idx(tmp_path / "cut.idx")


MNIST = ROOT.parent / "shared" / "data" / "mnist"


@pytest.mark.skipif(not (MNIST / "t10k-labels-idx1-ubyte.gz").exists(),
                    reason="no MNIST in ../shared/data")
def test_real_training_files(tmp_path, cli):
    """A real `gmflow train` checkpoint equals its own last snapshot files, and the MNIST test
    labels read by gmflow equal a gzip + struct parse here."""
    raw = gzip.decompress((MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes())
    assert struct.unpack(">II", raw[:8]) == (2049, 10000)
    labels = gmflow.load_idx(MNIST / "t10k-labels-idx1-ubyte.gz")
    assert np.array_equal(labels, np.frombuffer(raw[8:], np.uint8))
    for model in ("gm-full", "gm-stack", "gm-lowrank"):
        out = tmp_path / model
        run_cli(cli, "train", "--data", MNIST, "--model", model, "--K", 2, "--mid", 5, "--epochs",
                1, "--train-limit", 64, "--test-limit", 10, "--snapshot-every", 1, "--out", out)
        ck = gmflow.load_checkpoint(out / "checkpoint.gmck")
        assert ck["kind"] == model and ck["epoch"] == 1 and ck["d"] == 784
        assert ck["rank"] == (1 if model == "gm-lowrank" else 0)  # the default --rank 1
        assert ck["run"]["kind"] == model and ck["run"]["train_n"] == 64  # the run record
        for g in ck["groups"]:
            assert np.array_equal(ck[g], np.load(out / "snapshots" / f"epoch_0001_{g}.npy")), g
