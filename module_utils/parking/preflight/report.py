"""Phase 0 preflight, assembled: ``run`` joins the host checks, the database checks and facts
and the legacy-traffic answer into the phase-0 report (``build_report``: status, summary lines,
checks, facts, the open questions answered) and ``render_markdown`` writes it as Markdown.
"""
import datetime as dt
import time

from ..connection import connect
from .checks import (check_disk, check_docker_api, check_memory, check_pg_client, check_traefik,
                     human_bytes)
from .databases import gather, usage_answer
from .legacy import legacy_traffic


def build_report(checks, facts, check_mode, started, finished=None, now=None):
    """The phase-0 report: {phase, title, status, check_mode, generated_at, duration_s, summary, checks, facts}."""
    finished = time.time() if finished is None else finished
    now = now or dt.datetime.now(dt.timezone.utc)
    failed = [c for c in checks if not c["ok"]]
    report = {
        "phase": 0,
        "title": "Preflight",
        "status": "failed" if failed else "passed",
        "check_mode": bool(check_mode),
        "generated_at": now.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "duration_s": round(max(finished - started, 0.0), 2),
        "summary": summary(checks, facts),
        "checks": [{"name": c["name"], "ok": c["ok"], "detail": c["detail"]} for c in checks],
        "facts": facts,
    }
    return report


def summary(checks, facts):
    failed = [c["name"] for c in checks if not c["ok"]]
    lines = [f"{len(checks) - len(failed)}/{len(checks)} checks passed"
             + (f"; failed: {', '.join(failed)}" if failed else "")]
    host = facts.get("host") or {}
    if host:
        lines.append(f"Docker {host.get('docker_server_version') or '?'} (API {host.get('docker_api_version') or '?'}), "
                     f"{host.get('memory_mb') or '?'} MB RAM, PostgreSQL {_pg_version(facts)}")
    sizes = facts.get("database_sizes") or {}
    if sizes:
        lines.append("database sizes: " + ", ".join(f"{k} {human_bytes(v)}" for k, v in sorted(sizes.items())))
    disk = facts.get("backup") or {}
    if disk:
        lines.append(f"backup space at {disk.get('dir')}: needed {human_bytes(disk.get('needed_bytes'))}, "
                     f"free {human_bytes(disk.get('free_bytes'))}")
    v5 = facts.get("v5")
    if v5:
        lines.append(f"V5 data: {v5['rows']} rows in {len(v5['tables'])} tables, {human_bytes(v5['size_bytes'])}")
    answers = facts.get("open_questions") or {}
    if answers.get("parking_platform_in_use"):
        lines.append(f"parking_platform: {answers['parking_platform_in_use']}")
    if answers.get("legacy_services_with_traffic"):
        lines.append(f"legacy traffic: {answers['legacy_services_with_traffic']}")
    return [_shorten(line) for line in lines[:8]]


def _pg_version(facts):
    versions = sorted({d.get("server_version") for d in (facts.get("databases") or {}).values()
                       if d.get("server_version")})
    return ", ".join(versions) or "?"


def _shorten(text, width=200):
    return text if len(text) <= width else text[:width - 1] + "…"


def _cell(text):
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def render_markdown(report):
    """Readable Markdown: a table of checks, the open questions answered, sizes."""
    facts = report.get("facts") or {}
    out = [f"# Phase {report['phase']} — {report['title']}: {report['status'].upper()}", "",
           f"Generated {report['generated_at']} in {report['duration_s']} s"
           + (" (check mode)" if report["check_mode"] else "") + ".", ""]
    out += [f"- {line}" for line in report["summary"]] + ["", "## Checks", "", "| check | result | detail |",
                                                          "|---|---|---|"]
    for c in report["checks"]:
        out.append(f"| {_cell(c['name'])} | {'ok' if c['ok'] else '**FAILED**'} | {_cell(c['detail'])} |")
    answers = facts.get("open_questions") or {}
    out += ["", "## Open questions answered", ""]
    labels = (("parking_platform_in_use", "Is anything still using `parking_platform`?"),
              ("legacy_services_with_traffic", "Which legacy services received traffic recently?"),
              ("v5_data_size", "How big is V5's data?"))
    for key, question in labels:
        out.append(f"- **{question}** {answers.get(key, 'unknown')}")
    platform = facts.get("parking_platform")
    if platform:
        out += ["", "### parking_platform tables", "", "| table | inserted | updated | deleted | last write | "
                "last autovacuum/analyze |", "|---|---:|---:|---:|---|---|"]
        for t in platform["tables"]:
            maint = max([str(t.get(k)) for k in ("last_vacuum", "last_autovacuum", "last_analyze", "last_autoanalyze")
                         if t.get(k)] or ["-"])
            out.append(f"| {t['schema']}.{t['table']} | {t.get('inserted', '-')} | {t.get('updated', '-')} | "
                       f"{t.get('deleted', '-')} | {t.get('last_write') or '-'} | {maint} |")
        if platform["sessions"]:
            out += ["", "Open connections: " + ", ".join(
                f"{s['user']}/{s['application_name'] or '-'} from {s['client_addr'] or 'local'} ({s['state']})"
                for s in platform["sessions"])]
    traffic = facts.get("traffic") or {}
    if traffic.get("known"):
        out += ["", f"### Traefik requests per service, last {traffic['window_hours']:g} h", "",
                "| service | requests |", "|---|---:|"]
        for name, n in traffic["counts"]["services"].items():
            out.append(f"| {_cell(name)} | {n} |")
    v5 = facts.get("v5")
    if v5:
        out += ["", "### V5 tables", "", "| table | rows | size |", "|---|---:|---:|"]
        for t in v5["tables"]:
            out.append(f"| {t['schema']}.{t['table']} | {t['rows']} | {human_bytes(t['size_bytes'])} |")
    sizes = facts.get("database_sizes") or {}
    if sizes:
        out += ["", "### Databases", "", "| database | size |", "|---|---:|"]
        out += [f"| {k} | {human_bytes(v)} |" for k, v in sorted(sizes.items())]
    return "\n".join(out) + "\n"


def run(connections, host, options, check_mode=False, now=None, connect_fn=connect, clock=time.time):
    """The whole preflight from host facts measured by the caller (Ansible) plus the databases.

    host: docker_api_version, docker_server_version, memory_mb, mounts, traefik (container dict or
    None), legacy_containers ({name: container dict or None}).
    options: min_docker_api, min_memory_mb, min_pg_major, backup_dir, backup_factor,
    backup_databases, traefik_container, traefik_required_args, access_log, window_hours,
    access_log_max_bytes, legacy_services, elapsed_s, exact_counts."""
    started = clock() - float(options.get("elapsed_s") or 0)
    now = now or dt.datetime.now(dt.timezone.utc)
    checks = [check_docker_api(host.get("docker_api_version"), options["min_docker_api"]),
              check_memory(host.get("memory_mb"), options["min_memory_mb"]),
              check_traefik(host.get("traefik"), options.get("traefik_container", "parking-traefik"),
                            options.get("traefik_required_args") or ())]
    db_checks, facts = gather(connections, options["min_pg_major"], options.get("exact_counts", True), connect_fn)
    sizes = facts.get("database_sizes", {})
    wanted = {db: sizes.get(db) for db in options.get("backup_databases") or []}
    disk, needed, free = check_disk(options["backup_dir"], host.get("mounts"), wanted, options.get("backup_factor", 2),
                                    host.get("disk_space"))
    checks += [disk] + db_checks
    if "pg_dump_version" in host:
        server = [d.get("server_version_num") for d in (facts.get("databases") or {}).values() if d.get("ok")]
        checks.append(check_pg_client(host["pg_dump_version"], min(server) if server else None))
    containers = host.get("legacy_containers") or {}
    facts["host"] = {"docker_api_version": host.get("docker_api_version"),
                     "docker_server_version": host.get("docker_server_version"),
                     "memory_mb": host.get("memory_mb")}
    facts["backup"] = {"dir": options["backup_dir"], "databases": sorted(wanted), "needed_bytes": needed,
                       "free_bytes": free, "factor": options.get("backup_factor", 2)}
    facts["legacy_containers"] = {
        name: ({"status": (c.get("State") or {}).get("Status"),
                "health": ((c.get("State") or {}).get("Health") or {}).get("Status")} if c else {"status": "absent"})
        for name, c in containers.items()}
    labels = {name: ((c or {}).get("Config") or {}).get("Labels") or {} for name, c in containers.items()}
    traffic = legacy_traffic(options.get("access_log"), options.get("legacy_services") or {}, now,
                             options.get("window_hours", 24), options.get("access_log_max_bytes", 256 * 1024 * 1024),
                             labels)
    facts["traffic"] = traffic
    v5 = facts.get("v5")
    platform_db = (connections.get("platform") or {}).get("db", "parking_platform")
    facts["open_questions"] = {
        "parking_platform_in_use": usage_answer(facts.get("parking_platform"), platform_db),
        "legacy_services_with_traffic": traffic["answer"],
        "v5_data_size": (f"{human_bytes(v5['size_bytes'])} on disk, {v5['rows']} rows in {len(v5['tables'])} tables "
                         f"(largest: " + ", ".join(f"{t['table']} {t['rows']}" for t in sorted(
                             v5["tables"], key=lambda t: -t["rows"])[:3]) + ")") if v5 else "unknown (V5 unreachable)",
    }
    report = build_report(checks, facts, check_mode, started, clock(), now)
    return report
