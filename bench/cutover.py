#!/usr/bin/env python3
"""Benchmark: the phase-3 switch under load on a busy host, on the running lab (127.0.0.1 only).

  .venv/bin/python bench/cutover.py [--baseline 20] [--no-hog] [--only NAME ...]

With the ChirpStack simulator at 50 uplinks/s, an API client at 20 requests/s through Traefik and
a CPU hog on every core (bench/cpu_hog.py; --no-hog for an idle machine), in one run: a baseline
window with nothing switching, the cutover (03-cutover.yml), rollback-3, then one cutover per fault
(each reverts automatically): V6 unhealthy at 10 %, V6 killed at 10 %, at 100 % and during the
final gate, Traefik restarted at 10 % (--only NAME for some of them). Prints
per window: requests, failed, p99 and worst latency against the baseline's, uplinks sent / not
2xx / lost, and after each fault the seconds until Traefik answered and until no request touched
V6. Needs the lab up (playbooks/lab.yml) with phases 1-2. Not a test: the numbers depend on the
machine.
"""
import argparse
import contextlib
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "integration"),
                os.path.join(ROOT, "module_utils"), os.path.join(ROOT, "bench")]
import cpu_hog  # noqa: E402
import uplinks  # noqa: E402
from labdb import run_playbook  # noqa: E402
from labutil import sim, wait_for  # noqa: E402
from traffic import (FINAL_GATE_TASK, ApiClient, Play, all_healthy, backend, v6_left_behind,  # noqa: E402
                     v6_weight, window)


def fault_run(when, fault):
    """A cutover with a fault when the ramp reaches `when` (a V6 weight in %, or "final gate": the
    play starts its final delta): (t0, t_fault, t_end, seconds until no request touched V6,
    seconds until Traefik answered again)."""
    t0 = time.time()
    play = Play("playbooks/03-cutover.yml")
    if when == "final gate":
        play.until(lambda: play.reached(FINAL_GATE_TASK))
    else:
        wait_for(lambda: v6_weight() == when or not play.running(), timeout=240, interval=0.05)
    t_command = time.time()  # a restart returns once Traefik is back: count from the command's start
    subprocess.run(fault, check=True, capture_output=True)
    t_fault = time.time()
    wait_for(lambda: backend() is not None, timeout=60, interval=0.05)
    t_back = time.time()
    play.wait()
    all_healthy()
    t_end = time.time()
    return t0, t_fault, t_end, {"v6_left_behind_s": v6_left_behind(t_fault, t_end)[0],
                                "answering_again_s": round(t_back - t_command, 2)}


FAULTS = (  # (window name, when, command)
    ("unhealthy at 10 %", 10, ["docker", "exec", "parking-api-v6", "touch", "/tmp/parking-lab-unhealthy"]),
    ("kill at 10 %", 10, ["docker", "kill", "parking-api-v6"]),
    ("kill at 100 %", 100, ["docker", "kill", "parking-api-v6"]),
    ("kill at final gate", "final gate", ["docker", "kill", "parking-api-v6"]),
    ("Traefik restart", 10, ["docker", "restart", "parking-traefik"]),
)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=float, default=20.0, help="seconds of baseline traffic")
    ap.add_argument("--no-hog", action="store_true", help="measure on an idle machine")
    ap.add_argument("--only", action="append", choices=[f[0] for f in FAULTS],
                    help="run only this fault case (repeatable; default: all)")
    args = ap.parse_args()
    run_playbook("playbooks/rollback.yml", "--tags", "rollback-3")
    run_playbook("playbooks/02-deploy-v6.yml")
    with contextlib.ExitStack() as stack:
        if not args.no_hog:
            stack.enter_context(cpu_hog.running())
        sim("/sim/control", {"running": True, "rate": 50, "reset_totals": True})
        client = ApiClient(rate=20)
        client.start()
        time.sleep(3)
        windows, faults = {}, {}
        t = time.time()
        time.sleep(args.baseline)
        windows["baseline"] = (t, time.time())
        t = time.time()
        _, switch_s = run_playbook("playbooks/03-cutover.yml")
        windows["cutover"] = (t, time.time())
        assert backend() == "6"
        time.sleep(3)
        t = time.time()
        _, rollback_s = run_playbook("playbooks/rollback.yml", "--tags", "rollback-3")
        windows["rollback-3"] = (t, time.time())
        for name, when, command in FAULTS:
            if args.only and name not in args.only:
                continue
            t0, _, te, faults[name] = fault_run(when, command)
            windows[name] = (t0, te)
        time.sleep(6)  # uplinks in flight finish (5 s time-out)
        client.stop()
        sim("/sim/control", {"rate": 20})
    rows = {name: dict(window(client, a, b), **uplinks.counts(uplinks.account(a, b)))
            for name, (a, b) in windows.items()}
    base = rows["baseline"]
    print(f"load: 50 uplinks/s, 20 API requests/s, CPU hog: {'no' if args.no_hog else os.cpu_count()} busy processes")
    print(f"{'window':<18} {'requests':>8} {'failed':>6} {'p99 ms':>8} {'max ms':>8} {'p99/base':>8} "
          f"{'uplinks':>7} {'not 2xx':>7} {'lost':>5}")
    for name, w in rows.items():
        print(f"{name:<18} {w['requests']:>8} {w['failed']:>6} {w['p99_ms']:>8} {w['max_ms']:>8} "
              f"{w['p99_ms'] / (base['p99_ms'] or 1):>8.2f} {w['attempts']:>7} {w['not_2xx']:>7} {w['lost']:>5}")
    print(f"switch (03-cutover.yml): {switch_s:.1f} s; rollback-3: {rollback_s:.1f} s")
    for name, f in faults.items():
        print(f"{name}: Traefik answered {f['answering_again_s']:.2f} s after the fault began; no request "
              f"touched V6 (served or retried) later than {f['v6_left_behind_s']:.2f} s after it")
    print(json.dumps({"windows": rows, "switch_s": switch_s, "rollback3_s": rollback_s, "faults": faults},
                     default=str), file=sys.stderr)


if __name__ == "__main__":
    main()
