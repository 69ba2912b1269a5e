# -*- coding: utf-8 -*-
"""Phase 3's ramp: V6's share of API and webhook traffic raised step by step in one module run
(parking_cutover_ramp).

Each step publishes its routing file (atomically, routing.publish), waits until Traefik serves it
and gates it with the smoke checks (smoke.run: the `routing` check polls for the file's marker
header, then V6's health, a webhook round trip, the canary's error rate...), then gates it on what
clients saw since the phase started (traffic.Watcher, read incrementally). The first failed gate
stops the ramp: no later step is published and the play reverts. One process for the whole ramp,
not several Ansible tasks per step: on a saturated host every task costs seconds, and those
seconds were most of the 10 % -> 100 % time.

Plain Python, unit-tested in tests/unit/test_ramp.py with the three actions injected.
"""
import datetime as dt
import time

from .errors import ConfigError
from .smoke import failure_message

# the marker header value each step's routing carries (cutover-routing.yml.j2), which the routing
# check waits for
DEFAULT_MARKER = "v6={weight}"
# keys of a traffic result kept per step (the timeline and the chart are for the end of the phase)
TRAFFIC_KEYS = ("passed", "msg", "baseline", "phase", "gate", "statuses", "examples", "traefik_restarted", "read")


def normalise_steps(steps):
    """Steps in order, weights 0-100 and rising; raises ConfigError."""
    out, last = [], -1
    if not steps:
        raise ConfigError("steps must list at least one step (weight and content)")
    for i, step in enumerate(steps):
        try:
            weight = int(step.get("weight"))
        except (TypeError, ValueError):
            raise ConfigError(f"step {i + 1}: weight must be a whole percent, got {step.get('weight')!r}")
        if not 0 <= weight <= 100 or weight <= last:
            raise ConfigError(f"step {i + 1}: weights must rise within 0-100, got {weight} after {last}")
        if not isinstance(step.get("content"), str) or not step["content"].strip():
            raise ConfigError(f"step {i + 1} ({weight} %): content (the routing file) is empty")
        marker = step.get("expect_routing")
        out.append(dict(step, weight=weight,
                        expect_routing=DEFAULT_MARKER.format(weight=weight) if marker is None else marker))
        last = weight
    return out


def _clock_text(t):
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%H:%M:%S")


def _routing_seconds(smoke_result):
    for check in smoke_result.get("checks") or ():
        if check.get("name") == "routing" and check.get("passed"):
            return float((check.get("facts") or {}).get("seconds") or 0.0)
    return 0.0


def run(steps, publish, check=None, watch=None, started=None, clock=time.time):
    """Raise V6's share step by step; stop at the first failed gate.

    publish(step) -> bool (the file changed); check(step) -> a smoke result (passed, checks, ...);
    watch(weights, events) -> a traffic result (passed, failed, msg, ...). check/watch None: not
    gated (check mode). Returns {passed, changed, reached, failed_step, msg, weights, events,
    steps, smoke, traffic}: weights/events as the timeline chart takes them (epoch t), steps one
    row per step for the report."""
    out = {"passed": False, "changed": False, "reached": None, "failed_step": None, "msg": "",
           "weights": [], "events": [], "steps": [], "smoke": None, "traffic": None}
    if check is not None and watch is not None:
        # read the baseline and the phase so far now, not inside the first step's gate; and move
        # no traffic while clients already see failures
        try:
            seen = watch(out["weights"], out["events"])
        except Exception as exc:
            out["msg"] = f"before the first step: cannot see what clients saw: {exc}"
            return out
        out["traffic"] = {k: seen.get(k) for k in TRAFFIC_KEYS}
        if seen.get("failed"):
            out["msg"] = f"before the first step: what clients saw: {seen.get('msg')}"
            return out
    for step in steps:
        weight = step["weight"]
        published = clock()
        out["changed"] = publish(step) or out["changed"]
        row = {"v6_share_percent": weight, "at": _clock_text(published),
               "seconds_since_start": round(published - started, 1) if started is not None else None}
        out["steps"].append(row)
        out["reached"] = weight
        if check is None:
            row["gate"] = "not run (check mode)"
            continue
        try:
            smoke = out["smoke"] = check(step)
        except Exception as exc:  # the checks could not run: the step is not proven, stop here
            out.update(failed_step=weight, msg=f"step {weight} %: the checks could not run: {exc}")
            return out
        loaded = published + _routing_seconds(smoke)
        out["weights"].append({"t": loaded, "weight": weight})
        out["events"].append({"t": loaded, "label": f"{weight} %"})
        row.update(at=_clock_text(loaded), gate="; ".join(str(c.get("detail")) for c in smoke.get("checks") or ()))
        if started is not None:
            row["seconds_since_start"] = round(loaded - started, 1)
        if not smoke.get("passed"):
            out.update(failed_step=weight, msg=f"step {weight} %: {failure_message(smoke)}")
            return out
        if watch is not None:
            try:
                seen = watch(out["weights"], out["events"])
            except Exception as exc:  # what clients saw is unknown: not proven either
                out.update(failed_step=weight, msg=f"step {weight} %: cannot see what clients saw: {exc}")
                return out
            out["traffic"] = {k: seen.get(k) for k in TRAFFIC_KEYS}
            row["clients"] = seen.get("msg")
            if seen.get("failed"):
                out.update(failed_step=weight, msg=f"step {weight} %: what clients saw: {seen.get('msg')}")
                return out
    out.update(passed=True, msg=f"V6 serves {out['reached']} % after {len(steps)} step(s)"
               + ("" if check is not None else " (check mode: published nothing, gated nothing)"))
    return out
