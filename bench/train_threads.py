#!/usr/bin/python3
"""train_threads.py -- 1- vs 2-thread epoch time of the GM trainer, builds interleaved.

usage: bench/train_threads.py [--rounds 4] [--epochs 3] [--fifo] BUILD_DIR [BUILD_DIR ...]

Each round runs, for every build (a CMake build directory holding bench/train_phases), a 1-thread
run pinned to core 1 (taskset -c 1) and a 2-thread run pinned to cores 0 and 1 (taskset -c 0,1,
--threads 2), --epochs E each, one after the other (A1 A2 B1 B2 ...).  Per run it takes the
median epoch wall and CPU time (CLOCK_PROCESS_CPUTIME_ID, both threads); per build it prints the
medians and the per-round speed-up wall(1 thread) / wall(2 threads) (median and range), with the
CPU model and the load average before, during and after.  Wall time is what the speed-up is
about, so only a run on an otherwise idle machine measures it: on a loaded one the 2-thread run
waits for the descheduled partner at every barrier, and the figures say so through the load
column.  --fifo runs every run under SCHED_FIFO (chrt -f 10; use --epochs 1) with a 0.6 s pause
after it, so that no run meets the kernel's real-time throttling (0.95 s per second): the other
jobs then do not run on the two cores while a run lasts, which stands in for an idle machine on
a loaded one (docs/PERFORMANCE.md, "Two threads for the GM trainer").  Run from the repository
root (the data at ../shared/data or $GMFLOW_DATA).  Writes nothing.
"""
import argparse
import os
import re
import statistics as st
import subprocess
import sys
import time

# the scripts' command-line convention (tools/scriptargs.py)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from scriptargs import ArgumentParser  # noqa: E402


def cpu_model():
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    return 'unknown'


def run(build, threads, epochs, fifo):
    exe = os.path.join(build, 'bench', 'train_phases')
    cmd = ['taskset', '-c', '0,1' if threads == 2 else '1', exe, '--epochs', str(epochs),
           '--threads', str(threads)]
    if fifo:
        cmd = ['chrt', '-f', '10'] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if fifo:
        time.sleep(0.6)
    ep = [(float(c), float(w)) for c, w in re.findall(r'epoch=\d+ cpu=([\d.]+) wall=([\d.]+)', out)]
    return st.median(w for _, w in ep), st.median(c for c, _ in ep)


def main(argv):
    p = ArgumentParser(prog='train_threads.py', description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       usage='bench/train_threads.py [--rounds 4] [--epochs 3] [--fifo] '
                             'BUILD_DIR [BUILD_DIR ...]')
    p.add_argument('--rounds', type=int, default=4, help='interleaved rounds (>= 1)')
    p.add_argument('--epochs', type=int, default=3, help='epochs per run (>= 1)')
    p.add_argument('--fifo', action='store_true', help='run every run under SCHED_FIFO')
    p.add_argument('builds', nargs='+', metavar='BUILD_DIR', help='CMake build directories')
    a = p.parse_args(argv)
    if a.rounds < 1 or a.epochs < 1:
        p.error(f'--rounds and --epochs must be at least 1 (got {a.rounds}, {a.epochs})')
    rounds, epochs, builds, fifo = a.rounds, a.epochs, a.builds, a.fifo
    for b in builds:
        if not os.access(os.path.join(b, 'bench', 'train_phases'), os.X_OK):
            print(f'train_threads.py: {b}: no bench/train_phases there (build it first)',
                  file=sys.stderr)
            return 1
    res = {(b, t): [] for b in builds for t in (1, 2)}
    loads = [os.getloadavg()[0]]
    for _ in range(rounds):
        for b in builds:
            for t in (1, 2):
                res[(b, t)].append(run(b, t, epochs, fifo))
        loads.append(os.getloadavg()[0])
    print(f'cpu: {cpu_model()}; rounds {rounds}, epochs {epochs}, '
          f'{"SCHED_FIFO" if fifo else "ordinary scheduling"}; load1 before {loads[0]:.2f}, '
          f'during min {min(loads[1:]):.2f} median {st.median(loads[1:]):.2f} max {max(loads[1:]):.2f}')
    for b in builds:
        for t in (1, 2):
            x = res[(b, t)]
            print(f'  {b}: {t} thread(s): epoch wall median {st.median(w for w, _ in x):.4f} s '
                  f'(min {min(w for w, _ in x):.4f}), cpu median {st.median(c for _, c in x):.4f} s')
        sp = [a[0] / c[0] for a, c in zip(res[(b, 1)], res[(b, 2)])]
        print(f'  {b}: speed-up wall(1)/wall(2) per round: median {st.median(sp):.3f}, '
              f'range {min(sp):.3f}-{max(sp):.3f}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
