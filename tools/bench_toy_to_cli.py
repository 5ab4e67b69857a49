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

PROG = "bench_toy_to_cli.py"

def usage_exit(msg=None):
    """-h / --help: this file's docstring on stdout, exit 0.  A usage error: "PROG: MSG" and the
    usage lines of the docstring (from "usage:" to the next blank line) on stderr, exit 2."""
    if msg is None:
        print(__doc__.strip())
        sys.exit(0)
    lines = __doc__.strip().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().lower().startswith("usage:"))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    print(f"{PROG}: {msg}", file=sys.stderr)
    print("\n".join(lines[start:end]), file=sys.stderr)
    sys.exit(2)


def positional(argv, options=()):
    """The arguments of argv that are not options; -h / --help anywhere prints the help, an
    option not in OPTIONS is a usage error."""
    pos = []
    for a in argv:
        if a in ("-h", "--help"):
            usage_exit()
        if a.startswith("-") and len(a) > 1 and a not in options:
            usage_exit(f"unknown option '{a}'")
        if a not in options:
            pos.append(a)
    return pos


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
