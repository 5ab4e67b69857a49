#!/usr/bin/python3
"""PyTorch peer of `gmflow train --model fc`: a two-layer fully connected ReLU network (width m).

Same data, loss (L = 9 outputs, reference class 0 with logit 0) and SGD (batch 64) as
bench/torch_gm.py.  Two initializations, for the paper's Figure 3:

  --init default   nn.Linear(d, m) -> ReLU -> nn.Linear(m, L), with biases (--no-bias: without,
                   as gmflow's FC baseline) and PyTorch's default init (Kaiming-uniform weights,
                   a = sqrt(5); uniform biases).  Standard scaling (no 1/m).
  --init matching  the mean-field network h(x) = (1/m) sum_j omega_j relu(beta_j . x), no biases,
                   with neuron j drawn from the initial GM layer of torch_gm.py (K components,
                   same gamma): k uniform in [K], beta_j ~ N(mu_k, diag(sigma_k^2)),
                   omega_j = U_k beta_j + v_k, where mu, U, v ~ N(0, gamma^2), sigma = gamma.

All weights use one learning rate (--lr, default 0.1, as in the paper).
GEMM flops per sample: forward 2 m (d + L); backward 2 m d (first-layer weights; no input
gradient) + 4 m L (second-layer weights and hidden gradient): 2 m (2 d + 3 L) per sample,
= 1.91e11 per MNIST epoch at m = 1000.
"""

import sys
import time

from torch_common import (
    Timer,
    common_args,
    environment,
    end_epoch,
    load_split,
    set_threads_env,
    write_outputs,
)


def parse_args():
    ap = common_args(__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=1000)
    ap.add_argument("--init", default="default", choices=["default", "matching"])
    ap.add_argument("--K", type=int, default=20, help="components of the matching init")
    ap.add_argument("--gamma", type=float, default=0.5, help="scale of the matching init")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--no-bias", action="store_true", help="default init without biases")
    return ap.parse_args()


# The arguments first (--help and usage errors answer at once, without loading torch), then the
# thread variables, then torch.
ARGS = parse_args() if __name__ == "__main__" else None
set_threads_env()
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

L = 9


class MeanField(nn.Module):
    """h(x) = (1/m) Omega relu(Beta x); Beta m x d, Omega L x m."""

    def __init__(self, beta, omega):
        super().__init__()
        self.beta = nn.Parameter(beta)
        self.omega = nn.Parameter(omega)

    def forward(self, x):
        return F.relu(x @ self.beta.t()) @ self.omega.t() * (1.0 / self.beta.shape[0])


def matching_init(d, m, K, gamma, dtype, gen):
    def normal(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * gamma

    mu, U, v = normal(K, d), normal(K, L, d), normal(K, L)
    sigma = torch.full((K, d), gamma, dtype=torch.float64)
    k = torch.randint(0, K, (m,), generator=gen)
    beta = mu[k] + sigma[k] * torch.randn(m, d, generator=gen, dtype=torch.float64)
    omega = torch.einsum("jld,jd->jl", U[k], beta) + v[k]  # m x L
    return MeanField(beta.to(dtype), omega.t().contiguous().to(dtype))


def main():
    args = ARGS
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    t0 = time.perf_counter()
    root = f"{args.data}/{args.dataset}"
    xtr, ytr = load_split(root, "train", args.limit)
    xte, yte = load_split(root, "t10k", args.test_limit)
    Xtr, Ytr = torch.from_numpy(xtr).to(dtype), torch.from_numpy(ytr)
    Xte, Yte = torch.from_numpy(xte).to(dtype), torch.from_numpy(yte)
    load_s = time.perf_counter() - t0
    n, d = Xtr.shape
    m = args.width
    if args.init == "default":
        bias = not args.no_bias
        net = nn.Sequential(nn.Linear(d, m, bias=bias), nn.ReLU(), nn.Linear(m, L, bias=bias))
        net = net.to(dtype)
    else:
        net = matching_init(d, m, args.K, args.gamma, dtype, gen)
    opt = torch.optim.SGD(net.parameters(), lr=args.lr)

    def logits(x):
        return F.pad(net(x), (1, 0))

    flops = 2 * m * (2 * d + 3 * L) * n
    nobias = "_nobias" if args.no_bias and args.init == "default" else ""
    name = f"torch_fc_{args.dataset}_m{m}_{args.init}{nobias}_{args.dtype}_t{args.threads}"
    if not args.quiet:
        print(
            f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.dtype}; "
            f"{args.dataset}: {n} train x {d}, {Xte.shape[0]} test (loaded in {load_s:.2f} s); "
            f"width {m}, init {args.init}, lr {args.lr}, batch {args.batch}; "
            f"GEMM flops/epoch {flops:.3e}",
            flush=True,
        )
    rows = []
    B = args.batch
    for epoch in range(1, args.epochs + 1):
        with Timer() as tm:
            perm = torch.randperm(n, generator=gen)
            Xs, Ys = Xtr[perm], Ytr[perm]
            total = torch.zeros((), dtype=torch.float64)
            for i in range(0, n, B):
                xb, yb = Xs[i : i + B], Ys[i : i + B]
                loss = F.cross_entropy(logits(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach() * xb.shape[0]
            train_loss = float(total) / n
        if not end_epoch(
            torch, args, rows, epoch, tm.s, train_loss, flops, logits, Xte, Yte, tm.cpu
        ):
            return 1
    summary = {
        "model": "fc",
        "init": args.init,
        "bias": args.init == "default" and not args.no_bias,
        "dataset": args.dataset,
        "n_train": n,
        "n_test": int(Xte.shape[0]),
        "d": d,
        "width": m,
        "L": L,
        "batch": B,
        "lr": args.lr,
        "K": args.K,
        "gamma": args.gamma,
        "dtype": args.dtype,
        "threads": args.threads,
        "seed": args.seed,
        "flops_per_epoch": flops,
        "flops_formula": "2 n m (2 d + 3 L)",
        "best_epoch_seconds": min(r["seconds"] for r in rows),
        # process CPU seconds (all threads) of an epoch's training plus its test evaluation
        "best_epoch_eval_cpu_seconds": min(r["cpu_seconds"] + r["eval_cpu_seconds"] for r in rows),
        "final_test_error": rows[-1]["test_error"],
        "epochs": rows,
        "env": environment(torch),
        "command": " ".join(["/usr/bin/python3"] + sys.argv),
    }
    csv_path, json_path = write_outputs(args, name, rows, summary)
    if not args.quiet:
        print(f"wrote {csv_path} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
