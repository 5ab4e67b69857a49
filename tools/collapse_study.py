#!/usr/bin/env python3
"""collapse_study.py -- what a collapsing component of a gmflow flow run does (docs/FLOWS.md,
"The collapse").

usage: tools/collapse_study.py [-h | --help] RUN_DIR DATA.csv [OUT.png]

RUN_DIR is the --out directory of a `gmflow flow` run (t.npy, mu.npy, Sigma.npy); DATA.csv its
--data.  Prints, per component, lambda_min / lambda_max of Sigma_k at a few times and a fit of
log lambda_min against t; for the component that collapses most, the direction it collapses along
(the eigenvector of lambda_min) and the samples whose ReLU kinks it narrows onto: theta =
(omega, beta), the kink of sample x_i is the hyperplane beta . x_i = 0, i.e. the normal
n_i = (0, x_i) / |x_i|; the component straddles it with mean offset m_i = mu_k . n_i and width
s_i = sqrt(n_i' Sigma_k n_i).  Draws lambda_min(t) (log scale) for every component to OUT.png.
"""
import sys

from scriptargs import script_cli

PROG = "collapse_study.py"
usage_exit, positional = script_cli(__doc__, PROG)


def main():
    pos = positional(sys.argv[1:])
    if not 2 <= len(pos) <= 3:
        usage_exit(f"expected RUN_DIR DATA.csv [OUT.png], got {len(pos)} argument(s)")
    run, data = pos[0], pos[1]
    out = pos[2] if len(pos) > 2 else None
    import numpy as np
    t = np.load(f"{run}/t.npy")
    mu = np.load(f"{run}/mu.npy")
    S = np.load(f"{run}/Sigma.npy")
    X = np.loadtxt(data, delimiter=",")[:, :-1]
    ev = np.linalg.eigvalsh(S)  # (T, K, D), ascending
    ratio = ev[..., 0] / ev[..., -1]
    T, K, D = mu.shape
    print(f"{T} output times, t in [{t[0]:g}, {t[-1]:g}], K = {K}, D = {D}, n = {len(X)}")
    for k in range(K):
        sel = [j for j in range(T) if t[j] > 0][:: max(1, T // 8)]
        print(f"component {k}: lambda_min/lambda_max " +
              "  ".join(f"t={t[j]:.3g}: {ratio[j, k]:.2e}" for j in sel + [T - 1]))
    k = int(np.argmin(ratio[-1]))
    lam = ev[:, k, 0]
    late = (t > 0.3 * t[-1]) & (lam > 0)
    if late.sum() > 3:
        # log lambda_min against t: the slope grows if the decay is faster than exponential
        tt, ll = t[late], np.log(lam[late])
        half = len(tt) // 2
        s1 = np.polyfit(tt[:half], ll[:half], 1)[0]
        s2 = np.polyfit(tt[half:], ll[half:], 1)[0]
        print(f"component {k}: d log(lambda_min)/dt = {s1:.3g} over t in [{tt[0]:.3g}, {tt[half-1]:.3g}], "
              f"{s2:.3g} over [{tt[half]:.3g}, {tt[-1]:.3g}]")
    w, V = np.linalg.eigh(S[-1, k])
    v = V[:, 0]
    nrm = np.hstack([np.zeros((len(X), 1)), X]) / np.linalg.norm(X, axis=1)[:, None]
    m = nrm @ mu[-1, k]
    s = np.sqrt(np.einsum("ia,ab,ib->i", nrm, S[-1, k], nrm))
    cos = np.abs(nrm @ v)
    print(f"component {k} at t = {t[-1]:g}: mean {np.round(mu[-1, k], 4)}, eigenvalues {w}")
    print(f"  collapse direction v_min = {np.round(v, 4)} (omega entry {v[0]:.2e})")
    order = np.argsort(-cos)[:5]
    print("  samples whose kink normal is closest to v_min: i, |cos|, mean offset m_i, width s_i, m_i/s_i")
    for i in order:
        print(f"    {i:4d}  {cos[i]:.6f}  {m[i]: .3e}  {s[i]:.3e}  {m[i] / s[i]: .3g}")
    straddle = np.sum(np.abs(m / s) < 3)
    print(f"  samples whose kink the component straddles (|m_i/s_i| < 3): {straddle} of {len(X)}")
    if out:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.0))
        for c in range(K):
            pos = ev[:, c, 0] > 0
            ax.semilogy(t[pos], ev[pos, c, 0], label=f"component {c}")
        ax.set_xlabel("t (bw clock)")
        ax.set_ylabel(r"smallest eigenvalue of $\Sigma_k$ (> 0 only)")
        ax.set_title("smallest eigenvalues")
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
        i = order[0]
        n_i = nrm[i]
        s_t = np.sqrt(np.abs(np.einsum("a,jab,b->j", n_i, S[:, k], n_i)))
        m_t = mu[:, k] @ n_i
        ax2.semilogy(t, s_t, label=f"width $s$ across sample {i}'s kink")
        ax2.semilogy(t, np.abs(m_t), label="|mean offset| $|m|$ from it")
        ax2.set_xlabel("t (bw clock)")
        ax2.set_title(f"component {k} at the kink of sample {i}")
        ax2.legend()
        ax2.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out, dpi=110)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
