"""Shared pieces of the PyTorch peers (bench/torch_gm.py, bench/torch_fc.py).

Data: MNIST-style IDX files read directly with gzip + numpy (no torchvision, no downloads),
validated like gmflow's src/io/idx.c (magic, type byte, exact payload size), standardized per image
to zero mean and unit *sample* standard deviation (torch.std's default, unbiased) -- the same
convention as gmflow's gmf_dataset_load.

Threads: torch.set_num_threads sets the OpenMP pool; Debian's torch does its GEMMs through the
system libblas (OpenBLAS, pthreads), which has its own pool, so OPENBLAS_NUM_THREADS and
OMP_NUM_THREADS must be set before torch is imported: call set_threads_env() first.
"""

import csv
import gzip
import json
import math
import os
import platform
import sys
import time

# the scripts' command-line convention (tools/scriptargs.py)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from scriptargs import ArgumentParser  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data"))


def set_threads_env(argv=None):
    """Peek at --threads in argv and export the thread-count variables before torch loads."""
    argv = sys.argv[1:] if argv is None else argv
    n = None
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            n = argv[i + 1]
        elif a.startswith("--threads="):
            n = a.split("=", 1)[1]
    if n is not None:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(int(n))


def read_idx(path, want_dims):
    import numpy as np

    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)  # checks the CRC-32 and length trailer
    if len(raw) < 4:
        raise ValueError(f"{path}: not an IDX file ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] != want_dims:
        magic = int.from_bytes(raw[:4], "big")
        raise ValueError(f"{path}: IDX magic {magic}, expected {2048 + want_dims}")
    hlen = 4 + 4 * want_dims
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(want_dims)]
    total = 1
    for d in dims:
        total *= d
    if len(raw) - hlen != total:
        raise ValueError(
            f"{path}: payload has {len(raw) - hlen} bytes, header {dims} needs {total}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=hlen).reshape(dims)


def find(dirpath, name):
    for p in (os.path.join(dirpath, name + ".gz"), os.path.join(dirpath, name)):
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"{os.path.join(dirpath, name)}[.gz] not found")


def load_split(dirpath, prefix, limit=0):
    """(x float64 n x 784 standardized per image, y int64 n) as numpy arrays."""
    import numpy as np

    im = read_idx(find(dirpath, f"{prefix}-images-idx3-ubyte"), 3)
    lab = read_idx(find(dirpath, f"{prefix}-labels-idx1-ubyte"), 1)
    if im.shape[0] != lab.shape[0]:
        raise ValueError(f"{dirpath}/{prefix}: {im.shape[0]} images vs {lab.shape[0]} labels")
    if lab.max() >= 10:
        raise ValueError(f"{dirpath}/{prefix}: label {lab.max()} out of range")
    n = im.shape[0] if not limit else min(limit, im.shape[0])
    x = im[:n].reshape(n, -1).astype(np.float64)
    x -= x.mean(axis=1, keepdims=True)
    sd = x.std(axis=1, ddof=1, keepdims=True)  # unbiased, like torch.std
    x = np.divide(x, sd, out=np.zeros_like(x), where=sd > 0)
    return x, lab[:n].astype(np.int64)


def common_args(description):
    p = ArgumentParser(description=description)
    p.add_argument("--dataset", default="mnist", help="mnist | fashion-mnist (under --data)")
    p.add_argument("--data", default=DEFAULT_DATA, help="data root (default ../shared/data)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--limit", type=int, default=0, help="first N training samples (0 = all)")
    p.add_argument("--test-limit", type=int, default=0, help="first N test samples (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-eval", action="store_true", help="skip the per-epoch test evaluation")
    p.add_argument("--csv", default="", help="per-epoch CSV (default: $TMPDIR or /tmp, gmflow_<name>.csv: outside the "
                   "repository)")
    p.add_argument("--json", default="", help="summary JSON (default: next to the CSV)")
    p.add_argument("--quiet", action="store_true")
    return p


def environment(torch):
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", ""),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", ""),
    }


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def write_outputs(args, name, rows, summary):
    tmp = os.environ.get("TMPDIR") or "/tmp"
    csv_path = args.csv or os.path.join(tmp, "gmflow_" + name + ".csv")
    json_path = args.json or os.path.splitext(csv_path)[0] + ".json"
    os.makedirs(os.path.dirname(os.path.abspath(csv_path)), exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    with open(json_path, "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    return csv_path, json_path


def evaluate(torch, forward, x, y, batch=2000):
    """Test error (fraction misclassified) and mean loss; logits from forward(xb) -> (B, 10)."""
    import torch.nn.functional as F

    wrong, loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            logits = forward(x[i : i + batch])
            yb = y[i : i + batch]
            wrong += int((logits.argmax(1) != yb).sum())
            loss += float(F.cross_entropy(logits, yb, reduction="sum"))
    return wrong / x.shape[0], loss / x.shape[0]


def end_epoch(torch, args, rows, epoch, seconds, train_loss, flops, forward, Xte, Yte,
              cpu_seconds=float("nan")):
    """After an epoch's training: refuse a non-finite loss (False), else evaluate on the test set
    (unless --no-eval), append the epoch's row to rows and print its progress line (True)."""
    if not math.isfinite(train_loss):
        print(f"epoch {epoch}: non-finite training loss", file=sys.stderr)
        return False
    test_err, test_loss, ev_s, ev_cpu = float("nan"), float("nan"), 0.0, 0.0
    if not args.no_eval:
        with Timer() as te:
            test_err, test_loss = evaluate(torch, forward, Xte, Yte)
        ev_s, ev_cpu = te.s, te.cpu
    rows.append(
        {
            "epoch": epoch,
            "seconds": round(seconds, 4),
            "train_loss": round(train_loss, 6),
            "test_error": round(test_err, 6),
            "test_loss": round(test_loss, 6),
            "eval_seconds": round(ev_s, 4),
            "cpu_seconds": round(cpu_seconds, 4),
            "eval_cpu_seconds": round(ev_cpu, 4),
            "gflops": round(flops / seconds / 1e9, 3),
        }
    )
    if not args.quiet:
        print(
            f"epoch {epoch:3d}  {seconds:7.2f} s  train loss {train_loss:.5f}  "
            f"test error {100 * test_err:6.2f}%  ({flops / seconds / 1e9:.1f} GFLOP/s; "
            f"eval {ev_s:.2f} s)",
            flush=True,
        )
    return True


class Timer:
    """Wall seconds (.s) and process CPU seconds, all threads (.cpu), of the with-block."""

    def __enter__(self):
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.s = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.c0
