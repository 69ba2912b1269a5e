"""Host freezes: moments when the machine ran nothing at all (a virtual machine paused by its
hypervisor: steal time), which no software on it can be blamed for.

  python3 tests/integration/hostwatch.py OUT [--threshold 0.5]

A separate process (no GIL shared with the test) wakes every 20 ms at normal priority and
appends one JSON line to OUT for every wake-up that came more than --threshold seconds late:
{"start": epoch, "seconds": gap, "steal_s": steal time the kernel counted meanwhile}. A process
that only sleeps is runnable at once when its timer fires; on a host merely saturated by busy
processes (the cutover test's CPU hog, the migration itself), the scheduler still runs it within
tens of milliseconds. A gap of a second means the whole host stood still.

From Python: `with hostwatch.running(path): ...`; `gaps(path, t0, t1)`; `frozen_s(gaps, t0, t1)`.
"""
import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time

TICK_S = 0.02


def steal_s():
    """Steal time of all CPUs so far (seconds), from /proc/stat (0.0 where unknown)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--threshold", type=float, default=0.5)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    last, last_wall, last_steal = time.monotonic(), time.time(), steal_s()
    with open(args.out, "a") as out:
        while True:
            time.sleep(TICK_S)
            now, wall, steal = time.monotonic(), time.time(), steal_s()
            gap = now - last - TICK_S
            if gap > args.threshold:
                out.write(json.dumps({"start": round(last_wall + TICK_S, 3), "seconds": round(gap, 3),
                                      "steal_s": round(steal - last_steal, 2)}) + "\n")
                out.flush()
            last, last_wall, last_steal = now, wall, steal


@contextlib.contextmanager
def running(path, threshold=0.5):
    """Watch the host for the duration of the with-block (gaps appended to path)."""
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), path, "--threshold", str(threshold)])
    try:
        yield path
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def gaps(path, t0, t1):
    """The freezes that overlap [t0, t1]: [(start, end)]."""
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            g = json.loads(line)
            start, end = g["start"], g["start"] + g["seconds"]
            if end >= t0 and start <= t1:
                out.append((start, end))
    return out


def frozen_s(freezes, t0, t1):
    """Seconds of [t0, t1] during which the host was frozen."""
    return sum(max(0.0, min(end, t1) - max(start, t0)) for start, end in freezes)


def host_caused(freezes, start, end, min_s=1.0):
    """A failure over [start, end] (a request's send to its time-out) is the host's when the host
    stood still for at least half of that time, and at least min_s."""
    frozen = frozen_s(freezes, start, end)
    return frozen >= min_s and frozen >= 0.5 * (end - start)


if __name__ == "__main__":
    main()
