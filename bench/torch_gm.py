#!/usr/bin/python3
"""PyTorch peer of `gmflow train --model gm`: one GM layer, diagonal parametrization (eq. (5)).

Per component k: mu_k, sigma_k in R^d, U_k in R^{L x d}, v_k in R^L.  With beta ~ N(mu_k,
diag(sigma_k^2)) and E[omega | beta] = U_k beta + v_k,

    m_k = x . mu_k,  s_k^2 = sum_j sigma_kj^2 x_j^2,  t = m/s,
    A_k = m Phi(t) + s phi(t)                    (= E relu(beta . x))
    h(x) = (1/K) sum_k [ (U_k mu_k + v_k) A_k + U_k (sigma_k^2 * x) Phi(t) ]

L = 9 outputs, logistic loss with reference class 0 (logit 0), i.e. cross-entropy over
[0, h_1..h_9], mean over the batch.  SGD, batch 64, lr 1.0 for sigma and 0.1 for mu, U, v.
Init: mu, U, v ~ N(0, gamma^2), sigma = gamma (gamma = 0.5).

The layer is written as two GEMMs per batch forward, vectorized over K:
    F  = X [mu_k; W_k]_k^T         (B x K (L+1)): m_k = x . mu_k and G_k = W_k x,
                                   W_k = U_k diag(sigma_k^2)
    s2 = (X*X) @ (sigma^2)^T       (B x K)
    h  = (A @ c + sum_k Phi_k G_k) / K,   c_k = U_k mu_k + v_k
--impl autograd (default; as in the paper's code: "we only need to implement the loss")
differentiates this with torch.autograd; --impl manual does the backward pass by hand (two more
GEMMs: d[mu; W] = dF^T X and dsigma^2 = ds2^T X^2) and updates the parameters in place with no
autograd graph -- what a performance-minded PyTorch user would do.  --check compares the two
gradients in float64.

FLOPs per epoch of the GEMMs (n samples, d inputs):  forward 2 n d K (L + 2), backward the same
(the input gradient is not needed for a first layer): 4 n d K (L + 2) = 4.14e10 for MNIST, K = 20.
"""

import math
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
    ap.add_argument("--K", type=int, default=20)
    ap.add_argument("--gamma", type=float, default=0.5)
    ap.add_argument("--lr", type=float, default=0.1, help="learning rate of mu, U, v")
    ap.add_argument("--lr-sigma", type=float, default=1.0)
    ap.add_argument("--impl", default="autograd", choices=["autograd", "manual"])
    ap.add_argument("--check", action="store_true", help="check manual vs autograd grads, exit")
    return ap.parse_args()


# The arguments first (--help and usage errors answer at once, without loading torch), then the
# thread variables, then torch.
ARGS = parse_args() if __name__ == "__main__" else None
set_threads_env()
import torch  # noqa: E402  (after the thread variables are set)
import torch.nn.functional as F  # noqa: E402

L = 9  # outputs: labels 1..9; label 0 is the reference class with logit 0
INV_SQRT2 = 1.0 / math.sqrt(2.0)
INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)


def gm_flops_per_sample(d, K, L):
    """GEMM flops of one forward + backward pass per sample (2 per multiply-add)."""
    return 4 * d * K * (L + 2)


class GM:
    def __init__(self, d, K, gamma, dtype, gen):
        def normal(*shape):
            return (torch.randn(*shape, generator=gen, dtype=torch.float64) * gamma).to(dtype)

        self.K = K
        self.mu = normal(K, d)
        self.U = normal(K, L, d)
        self.v = normal(K, L)
        self.sigma = torch.full((K, d), gamma, dtype=dtype)

    def params(self):
        return [self.mu, self.sigma, self.U, self.v]

    # -- forward, differentiable by autograd: h (B x L)
    def forward(self, x):
        K, mu, sigma, U, v = self.K, self.mu, self.sigma, self.U, self.v
        B, d = x.shape
        sig2 = sigma * sigma  # K x d
        # one GEMM for m and G: F = X [mu_k; W_k]_k^T, W_k = U_k diag(sigma_k^2)
        muW = torch.cat((mu[:, None, :], U * sig2[:, None, :]), 1).view(K * (L + 1), d)
        Fm = (x @ muW.t()).view(B, K, L + 1)
        m, G = Fm[:, :, 0], Fm[:, :, 1:]  # B x K, B x K x L
        s = ((x * x) @ sig2.t()).clamp_min(1e-30).sqrt()  # B x K
        t = m / s
        Phi = 0.5 * (1.0 + torch.erf(t * INV_SQRT2))
        phi = torch.exp(-0.5 * t * t) * INV_SQRT2PI
        A = m * Phi + s * phi  # E relu(beta . x)
        c = (U * mu[:, None, :]).sum(2) + v  # U_k mu_k + v_k, K x L
        h = A @ c + torch.bmm(Phi[:, None, :], G)[:, 0, :]  # + sum_k Phi_k G_k
        return h * (1.0 / K)

    def logits(self, x):
        return F.pad(self.forward(x), (1, 0))  # [0, h_1..h_9]

    # -- manual forward + backward of the mean cross-entropy, no autograd graph; returns the loss
    # and the gradients (mu, sigma, U, v).  Two GEMMs forward (m and G = W x in one,
    # F = X [mu_k; W_k]^T, and s^2), two backward (dF^T X and ds2^T X^2).
    def loss_and_grads(self, x, y):
        K, mu, sigma, U, v = self.K, self.mu, self.sigma, self.U, self.v
        B, d = x.shape
        sig2 = sigma * sigma
        x2 = x * x
        muW = torch.cat((mu[:, None, :], U * sig2[:, None, :]), 1)  # K x (L+1) x d
        Fm = torch.mm(x, muW.view(K * (L + 1), d).t()).view(B, K, L + 1)
        m, P = Fm[:, :, 0], Fm[:, :, 1:]  # P_k = W_k x
        s = torch.mm(x2, sig2.t()).clamp_min_(1e-30).sqrt_()
        t = m / s
        Phi = torch.erf(t * INV_SQRT2).add_(1.0).mul_(0.5)
        phi = torch.exp(t * t * -0.5).mul_(INV_SQRT2PI)
        A = torch.addcmul(s * phi, m, Phi)
        c = (U * mu[:, None, :]).sum(2).add_(v)  # U_k mu_k + v_k (faster than bmm here)
        h = torch.addmm(torch.bmm(Phi[:, None, :], P)[:, 0, :], A, c).mul_(1.0 / K)
        logits = F.pad(h, (1, 0))
        lse = torch.logsumexp(logits, dim=1)
        loss = (lse - logits.gather(1, y[:, None])[:, 0]).mean()
        # dL/dlogits = (softmax - onehot) / B; gh = dL/dh times the 1/K of h: B x L
        p = torch.exp(logits - lse[:, None])
        p.scatter_add_(1, y[:, None], torch.full((B, 1), -1.0, dtype=p.dtype))
        gh = p[:, 1:].mul_(1.0 / (B * K))
        dA = torch.mm(gh, c.t())  # B x K
        dc = torch.mm(A.t(), gh)  # K x L (= dv)
        dF = torch.empty(B, K, L + 1, dtype=x.dtype)  # [dL/dm, dL/dP]
        torch.mul(Phi[:, :, None], gh[:, None, :], out=dF[:, :, 1:])  # dP_k = Phi_k gh
        dPhi = torch.bmm(P, gh[:, :, None])[:, :, 0]  # B x K
        # A = m Phi(t) + s phi(t), t = m/s: dA/dm = Phi, dA/ds = phi;
        # dPhi/dm = phi/s, dPhi/ds = -t phi/s
        phis = phi / s
        dF[:, :, 0] = torch.addcmul(dA * Phi, dPhi, phis)  # dm
        ds2 = torch.addcmul(dA * phi, dPhi * phis, t, value=-1.0).div_(2.0 * s)  # ds / (2s)
        dmuW = torch.mm(dF.view(B, K * (L + 1)).t(), x).view(K, L + 1, d)
        dW = dmuW[:, 1:, :]  # K x L x d
        dmu = dmuW[:, 0, :] + torch.bmm(dc[:, None, :], U)[:, 0, :]  # + U_k^T dc_k (via c)
        dsig2 = torch.addmm((dW * U).sum(1), ds2.t(), x2)  # via W and via s^2
        dsigma = dsig2.mul_(sigma).mul_(2.0)
        dU = torch.addcmul(dW * sig2[:, None, :], dc[:, :, None], mu[:, None, :])
        return loss, (dmu, dsigma, dU, dc)


def check_grads(args):
    """Manual backward vs autograd, float64, on a small batch."""
    gen = torch.Generator().manual_seed(args.seed)
    d, K, B = 30, 4, 16
    net = GM(d, K, args.gamma, torch.float64, gen)
    x = torch.randn(B, d, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (B,), generator=gen)
    loss_m, grads = net.loss_and_grads(x, y)
    for p in net.params():
        p.requires_grad_(True)
    loss_a = F.cross_entropy(net.logits(x), y)
    loss_a.backward()
    worst = 0.0
    for name, p, g in zip(("mu", "sigma", "U", "v"), net.params(), grads):
        err = float((p.grad - g).abs().max() / p.grad.abs().max().clamp_min(1e-300))
        worst = max(worst, err)
        print(f"grad {name}: max |manual - autograd| / max|autograd| = {err:.2e}")
    print(f"loss: manual {float(loss_m):.15f} autograd {float(loss_a):.15f}")
    ok = worst < 1e-10 and abs(float(loss_m) - float(loss_a)) < 1e-12
    print("check:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


def main():
    args = ARGS
    torch.set_num_threads(args.threads)
    if args.check:
        return check_grads(args)
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
    net = GM(d, args.K, args.gamma, dtype, gen)
    lrs = (args.lr, args.lr_sigma, args.lr, args.lr)  # mu, sigma, U, v
    if args.impl == "autograd":
        for p in net.params():
            p.requires_grad_(True)
        opt = torch.optim.SGD(
            [
                {"params": [net.sigma], "lr": args.lr_sigma},
                {"params": [net.mu, net.U, net.v], "lr": args.lr},
            ],
            lr=args.lr,
        )

    flops = gm_flops_per_sample(d, args.K, L) * n
    name = f"torch_gm_{args.dataset}_K{args.K}_{args.dtype}_t{args.threads}_{args.impl}"
    if not args.quiet:
        print(
            f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.dtype}, "
            f"impl {args.impl}; {args.dataset}: {n} train x {d}, {Xte.shape[0]} test "
            f"(loaded in {load_s:.2f} s); K = {args.K}, L = {L}, batch {args.batch}; "
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
                if args.impl == "autograd":
                    loss = F.cross_entropy(net.logits(xb), yb)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                else:
                    with torch.no_grad():
                        loss, grads = net.loss_and_grads(xb, yb)
                        for p, g, lr in zip(net.params(), grads, lrs):
                            p.add_(g, alpha=-lr)
                total += loss.detach() * xb.shape[0]
            train_loss = float(total) / n
        if not end_epoch(
            torch, args, rows, epoch, tm.s, train_loss, flops, net.logits, Xte, Yte, tm.cpu
        ):
            return 1
    summary = {
        "model": "gm",
        "impl": args.impl,
        "dataset": args.dataset,
        "n_train": n,
        "n_test": int(Xte.shape[0]),
        "d": d,
        "K": args.K,
        "L": L,
        "batch": B,
        "lr": args.lr,
        "lr_sigma": args.lr_sigma,
        "gamma": args.gamma,
        "dtype": args.dtype,
        "threads": args.threads,
        "seed": args.seed,
        "flops_per_epoch": flops,
        "flops_formula": "4 n d K (L + 2)",
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
