#!/usr/bin/env python3
"""CPU hog: saturate every core, as other work on a busy production host would.

  .venv/bin/python bench/cpu_hog.py [--procs N] [--seconds S]

Starts N busy processes (default: one per core the machine has), each spinning in pure Python
at normal priority, so the kernel shares every core between them and the lab's containers.
Runs until --seconds have passed (default: until stopped) or it receives SIGTERM/SIGINT; its
children die with it. The cutover test and bench/cutover.py start it for their baseline window
and keep it running through the migration: a zero-loss claim is measured on a saturated host,
against a baseline measured under the same load in the same run.

From Python: `with cpu_hog.running(): ...` (module function below).
"""
import argparse
import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time


def spin(deadline):
    x = 0
    while deadline is None or time.time() < deadline:
        for _ in range(100_000):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 1, help="busy processes (default: cores)")
    ap.add_argument("--seconds", type=float, default=0, help="stop after this long (default: until stopped)")
    args = ap.parse_args(argv)
    deadline = time.time() + args.seconds if args.seconds > 0 else None
    procs = [multiprocessing.Process(target=spin, args=(deadline,), daemon=True) for _ in range(args.procs)]
    for p in procs:
        p.start()

    def stop(*_):
        for p in procs:
            p.terminate()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"[cpu_hog] {args.procs} busy processes (pid {os.getpid()})", flush=True)
    for p in procs:
        p.join()


@contextlib.contextmanager
def running(procs=None):
    """Run the hog in a child process for the duration of the with-block."""
    cmd = [sys.executable, os.path.abspath(__file__)] + (["--procs", str(procs)] if procs else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # let the busy processes start before anything is measured
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
