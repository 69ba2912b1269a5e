"""Phase 0 preflight: read-only checks of the V5 host and its databases, and the facts that answer
the migration plan's open questions (is parking_platform still used, which legacy services got
traffic, how big V5 is).

Plain Python: the pure parts (version/disk/memory comparisons, Traefik access-log counting,
report shaping, Markdown) take plain values; the database part takes psycopg2 connections that
it only reads through (read-only sessions). Nothing here writes anywhere.
"""
import datetime as dt
import json
import os
import re
import time

from . import schema
from .accesslog import parse_time, read_tail, strip_provider
from .connection import connect, describe
from .errors import ParkingError, SchemaMismatch

# option key -> what it is (order of the report)
DATABASE_ROLES = (
    ("chirpstack", "ChirpStack"),
    ("source", "V5"),
    ("target", "V6"),
    ("platform", "legacy V4 (parking_platform)"),
)
# ChirpStack v4 tables the migration reads (chirpstack-v4.md §2)
CHIRPSTACK_TABLES = ("tenant", "application", "application_integration", "device", "device_profile", "gateway")
# Columns whose maximum is a row's last write (by name, timestamp types only)
LAST_WRITE_COLUMN = re.compile(
    r"^(updated|created|modified|inserted|received|processed|sent|changed|deleted|seen)_(at|on)$"
    r"|^(last_seen|last_seen_at|last_update|timestamp|ts)$")
TIMESTAMP_TYPES = ("timestamp with time zone", "timestamp without time zone", "date")


# --------------------------------------------------------------------------- pure comparisons

def parse_version(text):
    """'1.41' -> (1, 41); '20.10.24+dfsg1' -> (20, 10, 24); '15.18 (Debian 15.18-0+deb12u1)' -> (15, 18)."""
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", str(text or ""))
    if not match:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(p) for p in match.group(1).split("."))


def version_at_least(have, want):
    """Compare dotted versions numerically ('1.9' < '1.41'); missing parts count as 0."""
    a, b = list(parse_version(have)), list(parse_version(want))
    width = max(len(a), len(b))
    return a + [0] * (width - len(a)) >= b + [0] * (width - len(b))


def check(name, ok, detail):
    return {"name": name, "ok": bool(ok), "detail": detail}


def human_bytes(n):
    if n is None:
        return "unknown"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def check_docker_api(have, minimum):
    if not have:
        return check("docker_api", False, "Docker API version unknown: the Docker daemon did not answer on its socket. "
                                          "Start dockerd (or fix preflight_docker_socket) and run again.")
    if version_at_least(have, minimum):
        return check("docker_api", True, f"Docker API {have} (minimum {minimum})")
    return check("docker_api", False, f"Docker API {have} is older than the minimum {minimum}: upgrade the Docker "
                                      f"engine (Debian 12 docker.io 20.10 speaks 1.41).")


def check_memory(total_mb, minimum_mb):
    if total_mb is None:
        return check("memory", False, "total memory unknown (hardware facts not gathered)")
    if int(total_mb) >= int(minimum_mb):
        return check("memory", True, f"{int(total_mb)} MB total (minimum {int(minimum_mb)} MB)")
    return check("memory", False, f"{int(total_mb)} MB total, below the minimum {int(minimum_mb)} MB: V6 runs beside "
                                  f"V5 during the migration; add memory or lower preflight_min_memory_mb knowingly.")


def mount_for(path, mounts):
    """The mount (ansible_facts.mounts entry) holding path: longest mount point that is a prefix."""
    path = os.path.normpath(path or "/")
    best = None
    for m in mounts or []:
        point = os.path.normpath(m.get("mount") or "")
        if not point.startswith("/"):
            continue
        if path == point or path.startswith(point.rstrip("/") + "/"):
            if best is None or len(point) > len(os.path.normpath(best["mount"])):
                best = m
    return best


def disk_space(path, statvfs=os.statvfs, exists=os.path.isdir, ismount=os.path.ismount):
    """{"mount", "size_available"} of the filesystem that will hold path, measured where it runs
    (the target): the nearest existing directory of path, so a tmpfs or any mount the host
    facts leave out counts. None when path is not absolute."""
    if not path or not os.path.isabs(path):
        return None
    probe = os.path.normpath(path)
    while not exists(probe) and probe != "/":
        probe = os.path.dirname(probe)
    st = statvfs(probe)
    point = probe
    while not ismount(point) and point != "/":
        point = os.path.dirname(point)
    return {"mount": point, "size_available": st.f_bavail * st.f_frsize}


def check_disk(backup_dir, mounts, db_sizes, factor, space=None):
    """Free space where the backups go must be >= factor x (sum of db_sizes, bytes).
    space: disk_space(backup_dir) measured on the target; else the mount facts."""
    known = {k: v for k, v in (db_sizes or {}).items() if v is not None}
    missing = sorted(set(db_sizes or {}) - set(known))
    needed = int(factor * sum(known.values()))
    if not backup_dir or not os.path.isabs(backup_dir) or os.path.normpath(backup_dir).strip("/") == "":
        return check("disk_backup", False, f"backup directory {backup_dir!r} is not an absolute directory below /: "
                                           f"set parking_backup_dir (e.g. /var/backups/parking-migrate)"), needed, None
    mount = space or mount_for(backup_dir, mounts)
    if mount is None or mount.get("size_available") is None:
        return check("disk_backup", False, f"no mount found for the backup directory {backup_dir} in the host facts"), needed, None
    free = int(mount["size_available"])
    what = " + ".join(sorted(known)) or "nothing"
    text = (f"{backup_dir} (mount {mount['mount']}): needed {human_bytes(needed)} = {factor:g} x ({what}), "
            f"free {human_bytes(free)}")
    if missing:
        return check("disk_backup", False, text + f"; size of {', '.join(missing)} unknown (database unreachable)"), needed, free
    if free >= needed:
        return check("disk_backup", True, text), needed, free
    return check("disk_backup", False, text + f": free {human_bytes(needed - free)} more on {mount['mount']} or point "
                                             f"preflight_backup_dir at a larger filesystem"), needed, free


def check_pg_version(server_version_num, minimum_major):
    if not server_version_num:
        return check("postgresql_version", False, "PostgreSQL version unknown: no database could be reached")
    major = int(server_version_num) // 10000
    text = f"PostgreSQL {major}.{int(server_version_num) % 10000} (minimum major {int(minimum_major)})"
    if major >= int(minimum_major):
        return check("postgresql_version", True, text)
    return check("postgresql_version", False, text + f": upgrade the server to {int(minimum_major)} or newer first")


def check_pg_client(pg_dump_version, server_version_num):
    """pg_dump on the target (phase 4 dumps with it) against the server: it must be the server's
    major or newer (an older pg_dump refuses the server); phase 0 installs the server's major.
    pg_dump_version: the output of `pg_dump --version`, "" when pg_dump is not installed."""
    if not server_version_num:
        return check("postgresql_client", False, "pg_dump not compared: no database could be reached")
    server = int(server_version_num) // 10000
    found = re.search(r"(\d+)(?:\.(\d+))?", pg_dump_version or "")
    if not found:
        return check("postgresql_client", False, f"pg_dump not found on the target: install postgresql-client-{server} "
                                                 "(phase 0 does, with preflight_prepare_target: true)")
    major = int(found.group(1))
    text = f"pg_dump {found.group(0)} for a PostgreSQL {server} server"
    if major >= server:
        return check("postgresql_client", True, text)
    return check("postgresql_client", False, text + f": pg_dump {major} cannot dump a newer server; install "
                                                    f"postgresql-client-{server} on the target (phase 0 does)")


def pg_dump_version(module):
    """`pg_dump --version` on the host running the module ("" when pg_dump is not installed)."""
    pg_dump = module.get_bin_path("pg_dump")
    return module.run_command([pg_dump, "--version"])[1].strip() if pg_dump else ""


def check_traefik(container, name="parking-traefik", required_args=()):
    """container: docker_container_info's `container` (or None when it does not exist)."""
    if not container:
        return check("traefik", False, f"container {name} not found (it does not exist, or Docker did not answer): "
                                       f"V5's Traefik must be running (fix preflight_traefik_container if it has "
                                       f"another name)")
    state = container.get("State") or {}
    status = state.get("Status")
    health = (state.get("Health") or {}).get("Status")
    if status != "running":
        return check("traefik", False, f"container {name} is {status}, not running: start it before any phase")
    if health and health != "healthy":
        return check("traefik", False, f"container {name} is running but {health}: check `docker logs {name}`")
    args = list((container.get("Config") or {}).get("Cmd") or []) + list(container.get("Args") or [])
    absent = [a for a in required_args if not any(x == a or x.startswith(a + "=") for x in args)]
    if absent:
        return check("traefik", False, f"container {name} runs without {', '.join(absent)}: add it to Traefik's command "
                                       f"(the migration writes routes into a watched file-provider directory)")
    return check("traefik", True, f"container {name} running" + (f", {health}" if health else ""))


# --------------------------------------------------------------------------- Traefik access log

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


# --------------------------------------------------------------------------- databases

def _rows(cur, sql, params=None):
    cur.execute(sql, params)
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _iso(value):
    if isinstance(value, (dt.datetime, dt.date)):
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc)
        return value.isoformat()
    return value


def _utc(value):
    """date/naive/aware -> aware UTC datetime (naive values are taken as UTC: sessions run in UTC)."""
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _jsonable(rows):
    return [{k: (_iso(v) if isinstance(v, (dt.datetime, dt.date)) else
                 (str(v) if v is not None and not isinstance(v, (int, float, str, bool)) else v))
             for k, v in r.items()} for r in rows]


def open_databases(connections, connect_fn=connect):
    """Try every connection; return ({key: conn}, {key: {'db', 'ok', 'error', ...}})."""
    conns, status = {}, {}
    for key, label in DATABASE_ROLES:
        params = connections.get(key)
        if params is None:
            continue
        entry = {"db": params.get("db"), "role": label, "where": describe(params)}
        try:
            conn = connect_fn(params, key)
            conn.set_session(readonly=True, autocommit=True)
        except ParkingError as exc:
            entry.update(ok=False, error=str(exc))
        else:
            conns[key] = conn
            entry.update(ok=True, error=None, server_version_num=conn.server_version)
        status[key] = entry
    return conns, status


def database_size(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT current_database(), pg_database_size(current_database()), "
                    "current_setting('server_version')")
        name, size, version = cur.fetchone()
    return {"name": name, "size_bytes": int(size), "server_version": version}


def table_stats(conn, exact=True):
    """Every user table: schema, table, rows (exact count or estimate), total size in bytes."""
    with conn.cursor() as cur:
        tables = _rows(cur, """
            SELECT n.nspname AS schema, c.relname AS table, c.reltuples::bigint AS estimate,
                   pg_total_relation_size(c.oid) AS size_bytes
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
              AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
            ORDER BY 1, 2""")
        for t in tables:
            if exact:
                cur.execute("SELECT count(*) FROM %s.%s" % (_ident(t["schema"]), _ident(t["table"])))
                t["rows"] = int(cur.fetchone()[0])
            else:
                t["rows"] = max(int(t["estimate"]), 0)
            t["size_bytes"] = int(t["size_bytes"])
            del t["estimate"]
    return tables


def _ident(name):
    return '"' + name.replace('"', '""') + '"'


def usage(conn):
    """Is anything still using this database? Sessions other than ours, write counters since the
    statistics reset, last (auto)vacuum/analyze, and the newest timestamp-ish value per table."""
    with conn.cursor() as cur:
        sessions = _rows(cur, """
            SELECT pid, usename AS user, application_name, client_addr::text AS client_addr, state,
                   backend_start, query_start, state_change
            FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()
            ORDER BY backend_start""")
        db = _rows(cur, """
            SELECT stats_reset, xact_commit, tup_inserted, tup_updated, tup_deleted
            FROM pg_stat_database WHERE datname = current_database()""")[0]
        tables = _rows(cur, """
            SELECT schemaname AS schema, relname AS table, n_tup_ins AS inserted, n_tup_upd AS updated,
                   n_tup_del AS deleted, n_live_tup AS live_rows,
                   last_vacuum, last_autovacuum, last_analyze, last_autoanalyze
            FROM pg_stat_user_tables ORDER BY 1, 2""")
        columns = _rows(cur, """
            SELECT table_schema AS schema, table_name AS table, column_name AS column
            FROM information_schema.columns
            WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND data_type = ANY(%s)
            ORDER BY 1, 2, 3""", (list(TIMESTAMP_TYPES),))
        stamp_cols = {}
        for c in columns:
            if LAST_WRITE_COLUMN.match(c["column"]):
                stamp_cols.setdefault((c["schema"], c["table"]), []).append(c["column"])
        by_table = {(t["schema"], t["table"]): t for t in tables}
        newest = None
        for (schema_name, table), cols in sorted(stamp_cols.items()):
            expr = ", ".join("max(%s)" % _ident(c) for c in cols)
            cur.execute("SELECT %s FROM %s.%s" % (expr, _ident(schema_name), _ident(table)))
            stamps = {c: _utc(v) for c, v in zip(cols, cur.fetchone()) if v is not None}
            column = max(stamps, key=stamps.get) if stamps else None
            last = stamps.get(column)
            entry = by_table.setdefault((schema_name, table), {"schema": schema_name, "table": table})
            entry["last_write"] = _iso(last)
            entry["last_write_column"] = column
            if last and (newest is None or last > newest[0]):
                newest = (last, f"{schema_name}.{table}")
    writes = sum(int(t.get("inserted") or 0) + int(t.get("updated") or 0) + int(t.get("deleted") or 0)
                 for t in tables)
    return {"sessions": _jsonable(sessions), "session_count": len(sessions),
            "stats_reset": _iso(db["stats_reset"]), "writes_since_stats_reset": writes,
            "tables": _jsonable(list(by_table.values())),
            "last_write": _iso(newest[0]) if newest else None, "last_write_table": newest[1] if newest else None}


def usage_answer(u, db_name):
    if u is None:
        return f"unknown ({db_name} could not be reached)"
    parts = []
    if u["session_count"]:
        who = sorted({f"{s['user']}/{s['application_name'] or '-'}" for s in u["sessions"]})
        parts.append(f"{u['session_count']} open connection(s) ({', '.join(who)})")
    else:
        parts.append("no other connections")
    parts.append(f"{u['writes_since_stats_reset']} rows written since the statistics reset "
                 f"({u['stats_reset'] or 'server start'})")
    if u["last_write"]:
        parts.append(f"newest row timestamp {u['last_write']} in {u['last_write_table']}")
    verdict = "in use" if u["session_count"] else "no sign of current use"
    return f"{verdict}: " + "; ".join(parts)


def chirpstack_facts(conn):
    with conn.cursor() as cur:
        present = {r["table"] for r in _rows(cur, """
            SELECT table_name AS table FROM information_schema.tables
            WHERE table_schema = 'public' AND table_type = 'BASE TABLE'""")}
        facts = {"tables": len(present), "missing_tables": [t for t in CHIRPSTACK_TABLES if t not in present],
                 "counts": {}, "schema_migration": None}
        for table in ("tenant", "application", "device", "gateway"):
            if table in present:
                cur.execute("SELECT count(*) FROM %s" % _ident(table))
                facts["counts"][table] = int(cur.fetchone()[0])
        if "__diesel_schema_migrations" in present:
            cur.execute("SELECT max(version) FROM __diesel_schema_migrations")
            facts["schema_migration"] = cur.fetchone()[0]
    return facts


def schema_differences(src_conn, tgt_conn):
    """[] when V5 and V6 are what the mapping expects (module_utils/parking/schema.py), else the list."""
    with src_conn.cursor() as src, tgt_conn.cursor() as tgt:
        try:
            schema.check(src, tgt)
        except SchemaMismatch as exc:
            return list(exc.differences)
    return []


def gather(connections, min_pg_major=15, exact_counts=True, connect_fn=connect):
    """Every database check and fact. Returns (checks, facts); never raises for a failed check."""
    checks, facts = [], {}
    conns, status = open_databases(connections, connect_fn)
    try:
        for key, label in DATABASE_ROLES:
            if key not in status:
                continue
            s = status[key]
            name = "database_" + {"source": "v5", "target": "v6"}.get(key, key)
            checks.append(check(name, s["ok"], f"{label} {s['db']}: reachable" if s["ok"] else s["error"]))
        versions = sorted({s["server_version_num"] for s in status.values() if s.get("ok")})
        checks.append(check_pg_version(versions[0] if versions else None, min_pg_major))
        sizes = {}
        for key, conn in conns.items():
            info = database_size(conn)
            status[key].update(size_bytes=info["size_bytes"], server_version=info["server_version"])
            sizes[status[key]["db"]] = info["size_bytes"]
        facts["databases"] = status
        facts["database_sizes"] = sizes
        if "chirpstack" in conns:
            cs = chirpstack_facts(conns["chirpstack"])
            facts["chirpstack"] = cs
            ok = not cs["missing_tables"]
            checks.append(check("chirpstack_schema", ok,
                                f"{cs['tables']} tables, {cs['counts'].get('device', 0)} devices, "
                                f"{cs['counts'].get('gateway', 0)} gateways, migration {cs['schema_migration']}" if ok
                                else "ChirpStack database lacks tables " + ", ".join(cs["missing_tables"])
                                + ": is this a ChirpStack v4 database?"))
        if "source" in conns:
            tables = table_stats(conns["source"], exact=exact_counts)
            facts["v5"] = {"size_bytes": status["source"]["size_bytes"], "tables": tables,
                           "rows": sum(t["rows"] for t in tables)}
        if "source" in conns and "target" in conns:
            diffs = schema_differences(conns["source"], conns["target"])
            facts["schema_differences"] = diffs
            checks.append(check("schema", not diffs,
                                "V5 and V6 live schemas match what the mapping reads and writes" if not diffs else
                                f"{len(diffs)} difference(s) from what the mapping expects: " + "; ".join(diffs)))
        else:
            checks.append(check("schema", False, "not checked: V5 or V6 unreachable"))
        if "platform" in conns:
            facts["parking_platform"] = usage(conns["platform"])
    finally:
        for conn in conns.values():
            conn.close()
    return checks, facts


# --------------------------------------------------------------------------- report

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
