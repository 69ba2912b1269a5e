"""Phase 0 preflight, the database checks and facts: reach every database (ChirpStack, V5, V6,
parking_platform) read-only, their sizes and server version, V5's tables, ChirpStack's schema,
V5 and V6 against what the mapping expects (module_utils/parking/schema.py), and whether
anything still uses parking_platform.

Takes psycopg2 connections (or a connect function) and only reads through them.
"""
import datetime as dt
import re

from .. import quote, schema
from ..connection import connect, describe
from ..errors import ParkingError, SchemaMismatch
from .checks import check, check_pg_version

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
                cur.execute("SELECT count(*) FROM %s" % quote.ident(cur, t["schema"], t["table"]))
                t["rows"] = int(cur.fetchone()[0])
            else:
                t["rows"] = max(int(t["estimate"]), 0)
            t["size_bytes"] = int(t["size_bytes"])
            del t["estimate"]
    return tables


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
            expr = ", ".join("max(%s)" % quote.ident(cur, c) for c in cols)
            cur.execute("SELECT %s FROM %s" % (expr, quote.ident(cur, schema_name, table)))
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
                cur.execute("SELECT count(*) FROM %s" % quote.ident(cur, table))
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
