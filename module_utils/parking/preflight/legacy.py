"""Phase 0 preflight, the open question "which legacy services received traffic recently":
requests per Traefik router and service counted from the tail of Traefik's JSON access log, and
matched with the configured legacy services and their containers' traefik labels.

Plain Python; reads the access log only (module_utils/parking/accesslog.py reads the lines).
"""
import datetime as dt
import json
import os

from ..accesslog import parse_time, read_tail, strip_provider
from .checks import human_bytes


def count_access_log(lines, now, window_hours):
    """Count requests per router and per service (provider suffix kept) started within the window.

    lines: iterable of JSON lines (Traefik accesslog.format=json). Returns a dict with
    routers, services, requests (in window), lines, unparsable, first_seen and last_seen (ISO)."""
    since = now - dt.timedelta(hours=float(window_hours))
    routers, services = {}, {}
    total = in_window = bad = 0
    first = last = None
    for line in lines:
        line = line.strip()
        if not line:
            continue
        total += 1
        try:
            entry = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if not isinstance(entry, dict):
            bad += 1
            continue
        when = parse_time(entry.get("StartUTC")) or parse_time(entry.get("time"))
        if when is None:
            bad += 1
            continue
        first = when if first is None or when < first else first
        last = when if last is None or when > last else last
        if when < since or when > now + dt.timedelta(minutes=5):
            continue
        in_window += 1
        router = entry.get("RouterName") or "(no router)"
        service = entry.get("ServiceName") or "(no service)"
        routers[router] = routers.get(router, 0) + 1
        services[service] = services.get(service, 0) + 1
    return {"lines": total, "unparsable": bad, "requests": in_window,
            "routers": dict(sorted(routers.items())), "services": dict(sorted(services.items())),
            "first_seen": first.isoformat() if first else None, "last_seen": last.isoformat() if last else None,
            "window_hours": float(window_hours), "since": since.isoformat()}


def legacy_names(legacy, containers=None):
    """{container: {'services': [...], 'routers': [...]}}: the configured Traefik service names, plus
    the routers and services a container's own traefik labels declare (containers: name -> labels)."""
    out = {}
    for container, names in (legacy or {}).items():
        services = set(names or [])
        routers = set()
        for key, value in ((containers or {}).get(container) or {}).items():
            parts = key.split(".")
            if len(parts) >= 4 and parts[:2] == ["traefik", "http"]:
                if parts[2] == "services":
                    services.add(parts[3])
                elif parts[2] == "routers":
                    routers.add(parts[3])
                    if parts[4:] == ["service"] and value:
                        services.add(strip_provider(value))
        out[container] = {"services": sorted(services), "routers": sorted(routers)}
    return out


def legacy_traffic(path, legacy, now, window_hours, max_bytes=256 * 1024 * 1024, containers=None):
    """Answer 'which legacy services received traffic recently' from Traefik's access log.

    Never raises for a missing or unreadable log: the answer is then 'unknown (...)'."""
    names = legacy_names(legacy, containers)
    result = {"access_log": path, "window_hours": float(window_hours), "legacy": {}, "with_traffic": [],
              "answer": None, "known": False}
    if not path or not os.path.isfile(path):
        result["answer"] = f"unknown (no access log at {path or '(not configured)'})"
        return result
    try:
        lines, truncated = read_tail(path, max_bytes)
    except OSError as exc:
        result["answer"] = f"unknown (access log {path} unreadable: {exc.strerror or exc})"
        return result
    counts = count_access_log(lines, now, window_hours)
    counts["truncated"] = truncated
    result.update(counts=counts, known=True)
    for container, n in names.items():
        services = {s: v for s, v in counts["services"].items() if strip_provider(s) in n["services"]}
        routers = {r: v for r, v in counts["routers"].items() if strip_provider(r) in n["routers"]}
        hits = max(sum(services.values()), sum(routers.values()))
        result["legacy"][container] = {"requests": hits, "services": services, "routers": routers,
                                       "traefik_services": n["services"]}
        if hits:
            result["with_traffic"].append(container)
    hours = f"{float(window_hours):g} h"
    partial = ""
    if counts["first_seen"] and parse_time(counts["first_seen"]) > parse_time(counts["since"]):
        partial = f" (the log starts at {counts['first_seen']}, so it covers less than {hours})"
    if truncated:
        partial += f" (only the last {human_bytes(max_bytes)} of the log were read)"
    if result["with_traffic"]:
        listed = ", ".join(f"{c} ({result['legacy'][c]['requests']})" for c in result["with_traffic"])
        result["answer"] = f"{listed} in the last {hours}{partial}"
    else:
        result["answer"] = f"none in the last {hours} ({counts['requests']} requests to other services){partial}"
    return result
