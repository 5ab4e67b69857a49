#!/usr/bin/env python3
"""bench_toy_to_cli.py -- turn the problem that `bench_rhs flow` writes (X.npy, y.npy, mu0.npy,
Sigma0.npy in DIR) into inputs of `gmflow flow`: DIR/data.csv (--data) and DIR/init.json (--init,
a bw state at t = 0).

usage: tools/bench_toy_to_cli.py [-h | --help] DIR

    build/bench/bench_rhs flow --n 200 --d 3 --K 4 --dir DIR --T 1e-9 --method adams
    python3 tools/bench_toy_to_cli.py DIR
    build/gmflow flow --data DIR/data.csv --init DIR/init.json --t-end 500 --log-times 60
"""
import json
import os
import sys

from scriptargs import script_cli

PROG = "bench_toy_to_cli.py"
usage_exit, positional = script_cli(__doc__, PROG)


def main():
    pos = positional(sys.argv[1:])
    if len(pos) != 1:
        usage_exit(f"expected one argument DIR, got {len(pos)}")
    d = pos[0]
    import numpy as np
    X = np.load(os.path.join(d, "X.npy"))
    y = np.load(os.path.join(d, "y.npy"))
    mu = np.load(os.path.join(d, "mu0.npy"))
    S = np.load(os.path.join(d, "Sigma0.npy"))
    with open(os.path.join(d, "data.csv"), "w") as f:
        for xi, yi in zip(X, y):
            f.write(",".join(repr(float(v)) for v in list(xi) + [yi]) + "\n")
    state = {"format": "gmflow-state", "version": 1, "form": "bw", "t": 0,
             "K": int(mu.shape[0]), "d": int(X.shape[1]),
             "mu": mu.tolist(), "Sigma": S.tolist()}
    with open(os.path.join(d, "init.json"), "w") as f:
        json.dump(state, f, indent=1)
    print("wrote %s/data.csv (n = %d, d = %d) and %s/init.json (K = %d)"
          % (d, X.shape[0], X.shape[1], d, mu.shape[0]))


if __name__ == "__main__":
    main()
