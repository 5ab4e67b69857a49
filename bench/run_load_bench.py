#!/usr/bin/python3
"""run_load_bench.py -- MNIST loading (train + t10k, images and labels) of several builds or
variants, interleaved A B C A B C ..., each run a fresh process of bench/load_mnist (or a program
with the same output line) pinned with taskset.  Prints per variant the medians of load_cpu and
load_wall, and for each variant against the first the median and range of the per-round ratios
(variant / first) of both; checks that every run loaded the same data (the checksums).

  bench/run_load_bench.py --rounds 9 --cpu 1 \\
      'old=/tmp/load_bbf0027 --float' 'new=build/bench/load_mnist' \\
      'new-zlib=env GMFLOW_IDX_INFLATE=zlib build/bench/load_mnist'

Each variant is NAME=COMMAND (split on spaces).  --csv FILE writes every run (round, variant,
load_cpu, load_wall, 1-minute load average before the run).
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

# the scripts' command-line convention (tools/scriptargs.py)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from scriptargs import ArgumentParser  # noqa: E402


def main():
    ap = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--cpu", default="1", help="taskset -c list (default 1)")
    ap.add_argument("--csv")
    a = ap.parse_args()
    var = []
    for v in a.variants:
        name, _, cmd = v.partition("=")
        if not cmd:
            sys.exit("run_load_bench: variant %r is not NAME=COMMAND" % v)
        var.append((name, cmd.split()))
    runs = {n: [] for n, _ in var}
    rows = []
    sums = set()
    loads = []
    for r in range(a.rounds):
        for name, cmd in var:
            la = os.getloadavg()[0]
            loads.append(la)
            out = subprocess.run(["taskset", "-c", a.cpu] + cmd, capture_output=True, text=True)
            m = re.search(r"load_cpu=([\d.]+) load_wall=([\d.]+)(.*)", out.stdout)
            if out.returncode or not m:
                sys.exit("run_load_bench: %s failed: %s%s" % (name, out.stdout, out.stderr))
            cpu, wall = float(m.group(1)), float(m.group(2))
            sums.add(m.group(3).strip())
            runs[name].append((cpu, wall))
            rows.append((r, name, cpu, wall, la))
    if a.csv:
        with open(a.csv, "w") as f:
            f.write("round,variant,load_cpu_s,load_wall_s,loadavg1\n")
            for row in rows:
                f.write("%d,%s,%.4f,%.4f,%.2f\n" % row)
    print("rounds %d, cpu %s, load average %.1f-%.1f (median %.1f) during the runs" %
          (a.rounds, a.cpu, min(loads), max(loads), statistics.median(loads)))
    print("checksums: %s" % ("all runs the same: " + sums.pop() if len(sums) == 1 else
                             "DIFFER: %s" % sorted(sums)))
    base = var[0][0]
    for name, _ in var:
        c = [x[0] for x in runs[name]]
        w = [x[1] for x in runs[name]]
        line = "%-12s cpu median %.4f s (%.4f-%.4f)  wall median %.4f s" % (
            name, statistics.median(c), min(c), max(c), statistics.median(w))
        if name != base:
            rc = [x[0] / y[0] for x, y in zip(runs[name], runs[base])]
            rw = [x[1] / y[1] for x, y in zip(runs[name], runs[base])]
            line += "  /%s: cpu %.3f (%.3f-%.3f) = %.2fx, wall %.3f (%.3f-%.3f) = %.2fx" % (
                base, statistics.median(rc), min(rc), max(rc), 1 / statistics.median(rc),
                statistics.median(rw), min(rw), max(rw), 1 / statistics.median(rw))
        print(line)
    return 1 if len(sums) > 1 else 0


if __name__ == "__main__":
    sys.exit(main())
