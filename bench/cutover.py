#!/usr/bin/env python3
"""Benchmark: the phase-3 switch under load, on the running lab (127.0.0.1 only).

  .venv/bin/python bench/cutover.py [--baseline 15]

With the ChirpStack simulator at 50 uplinks/s and an API client at 20 requests/s through
Traefik, in one run: a baseline window with nothing switching, the cutover (03-cutover.yml),
rollback-3 (traffic handed back), then a cutover during which V6 turns unhealthy (automatic
revert). Prints failed requests, lost uplinks, worst and p99 latency per window against the
baseline, switch time and revert times. Needs the lab up (playbooks/lab.yml) with phases 1-2.
Not a test: numbers depend on the machine.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "integration"),
                os.path.join(ROOT, "module_utils")]
import uplinks  # noqa: E402
from labdb import run_playbook  # noqa: E402
from labutil import sim, wait_for  # noqa: E402
from traffic import ApiClient, backend, v5_serving_since, v6_weight  # noqa: E402


def window(client, t0, t1):
    rec = [r for r in client.records if t0 <= r[0] <= t1]
    lat = sorted(r[2] for r in rec) or [0.0]
    return {"requests": len(rec), "failed": sum(r[3] != "ok" for r in rec),
            "p99_ms": round(lat[int(len(lat) * 0.99) - 1 if len(lat) > 1 else 0], 1), "max_ms": round(lat[-1], 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=float, default=15.0, help="seconds of baseline traffic")
    args = ap.parse_args()
    run_playbook("playbooks/rollback.yml", "--tags", "rollback-3")
    run_playbook("playbooks/02-deploy-v6.yml")
    sim("/sim/control", {"running": True, "rate": 50, "reset_totals": True})
    client = ApiClient(rate=20)
    client.start()
    t_start = time.time()
    time.sleep(args.baseline)
    t_b = time.time()
    _, switch_s = run_playbook("playbooks/03-cutover.yml")
    t_c = time.time()
    assert backend() == "6"
    time.sleep(3)
    t_r0 = time.time()
    _, rollback_s = run_playbook("playbooks/rollback.yml", "--tags", "rollback-3")
    t_r = time.time()
    env = dict(os.environ, PATH=os.path.join(ROOT, ".venv", "bin") + os.pathsep + os.environ["PATH"])
    proc = subprocess.Popen(["ansible-playbook", "playbooks/03-cutover.yml"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: v6_weight() == 10, timeout=120, interval=0.1)
    subprocess.run(["docker", "exec", "parking-api-v6", "touch", "/tmp/parking-lab-unhealthy"], check=True)
    t_f = time.time()
    v5_after_fault = v5_serving_since(t_f)
    proc.wait()
    revert_s = time.time() - t_f
    subprocess.run(["docker", "exec", "parking-api-v6", "rm", "-f", "/tmp/parking-lab-unhealthy"], check=True)
    t_end = time.time()
    client.stop()
    time.sleep(6)
    sim("/sim/control", {"rate": 20})
    acc = uplinks.account(t_start, t_end)
    rows = [("baseline", window(client, t_start, t_b)), ("cutover", window(client, t_b, t_c)),
            ("rollback-3", window(client, t_r0, t_r)), ("fault+revert", window(client, t_f, t_end))]
    base = rows[0][1]["max_ms"] or 1.0
    print(f"{'window':<14} {'requests':>9} {'failed':>7} {'p99 ms':>8} {'max ms':>8} {'max/baseline':>13}")
    for name, w in rows:
        print(f"{name:<14} {w['requests']:>9} {w['failed']:>7} {w['p99_ms']:>8} {w['max_ms']:>8} "
              f"{w['max_ms'] / base:>13.2f}")
    print(f"uplinks: {acc['attempts']} attempts, {acc['not_2xx']} not 2xx, {acc['lost']} lost "
          f"({acc['in_v5']} rows in V5, {acc['in_v6']} in V6)")
    print(f"switch (03-cutover.yml, canary 10 % -> 100 %): {switch_s:.1f} s; rollback-3: {rollback_s:.1f} s")
    print(f"automatic revert: V5 serving every request {v5_after_fault:.2f} s after V6 turned unhealthy; "
          f"play reverted and failed after {revert_s:.1f} s")
    print(json.dumps({"windows": dict(rows), "uplinks": {k: v for k, v in acc.items() if k != "examples"},
                      "switch_s": switch_s, "rollback3_s": rollback_s, "v5_after_fault_s": v5_after_fault,
                      "revert_s": revert_s}), file=sys.stderr)


if __name__ == "__main__":
    main()
