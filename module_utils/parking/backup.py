"""Phase 4: what a verified backup is, and the decommission's state in the V6 ledger.

A database's *fingerprint* is, per user table, its row count and a content checksum (md5 over
the md5 of every row's text form, in sorted order, so row order does not matter), plus every
sequence's position. A backup is *verified* when a copy restored from the dump file has the
same fingerprint as the live database; rollback-4 restores the file and checks the restored
database against the fingerprint recorded then.

Ledger (schema parking_migrate in parking_v6, the database that stays; DDL in ledger.py):
  backups       one row per verified dump file: database, path, sha256, size, fingerprint, retention
  decommission  one row per state change: done -> rolled_back, with the containers removed and
                where their definitions were saved
"""
import hashlib
import json

from .errors import ParkingError
from . import ledger, quote
from .ledger import SCHEMA

_TABLES_SQL = """
SELECT n.nspname, c.relname, c.relkind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'S') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2
"""


class BackupMismatch(ParkingError):
    """A restored copy (or the live database) differs from what it must equal."""

    def __init__(self, message, differences):
        super().__init__(message)
        self.differences = differences


def fingerprint(cur):
    """Per relation {"schema.name": {"rows": n, "checksum": md5}} of the connected database.

    Tables: count and sorted-row checksum, computed by the server (nothing but one line per
    table reaches Python). Sequences: their position as rows, checksum of last_value/is_called.
    """
    cur.execute(_TABLES_SQL)
    out = {}
    for schema, name, kind in cur.fetchall():
        rel = quote.ident(cur, schema, name)
        if kind == "S":
            cur.execute(f"SELECT last_value, is_called FROM {rel}")
            last, called = cur.fetchone()
            out[f"{schema}.{name}"] = {"rows": 0, "checksum": f"seq:{last}:{called}"}
            continue
        cur.execute(f"SELECT count(*), coalesce(md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))), '') "
                    f"FROM {rel} t")
        rows, checksum = cur.fetchone()
        out[f"{schema}.{name}"] = {"rows": int(rows), "checksum": checksum}
    return out


def summary(tables):
    """One checksum for the whole database, with its table and row totals."""
    lines = "\n".join(f"{k}:{v['rows']}:{v['checksum']}" for k, v in sorted(tables.items()))
    return {
        "tables": sum(1 for v in tables.values() if not v["checksum"].startswith("seq:")),
        "rows": sum(v["rows"] for v in tables.values()),
        "fingerprint": hashlib.md5(lines.encode()).hexdigest(),
    }


def differences(expected, actual, expected_name="live", actual_name="restored"):
    """Every relation whose rows or checksum differ, or that exists on one side only."""
    out = []
    for rel in sorted(set(expected) | set(actual)):
        e, a = expected.get(rel), actual.get(rel)
        if e is None or a is None:
            out.append({"relation": rel, "problem": f"only in {expected_name if a is None else actual_name}"})
        elif e != a:
            out.append({"relation": rel, "problem": "rows differ" if e["rows"] != a["rows"] else "content differs",
                        expected_name: e, actual_name: a})
    return out


def require_equal(expected, actual, what, expected_name, actual_name, advice):
    diffs = differences(expected, actual, expected_name, actual_name)
    if diffs:
        listed = "; ".join(f"{d['relation']}: {d['problem']}" for d in diffs[:10])
        more = f" (and {len(diffs) - 10} more)" if len(diffs) > 10 else ""
        raise BackupMismatch(f"{what}: {len(diffs)} relation(s) differ: {listed}{more}. {advice}", diffs)


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def ledger_exists(cur):
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.decommission",))
    return cur.fetchone()[0]


def record_backup(cur, db, path, sha256, size_bytes, tables, retention_days):
    """Insert the verified backup; a file already recorded (same sha256) is not recorded twice."""
    ledger.begin(cur)
    s = summary(tables)
    cur.execute(
        f"INSERT INTO {SCHEMA}.backups (db, path, sha256, size_bytes, tables, rows, fingerprint, "
        f"table_checksums, retention_until) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, "
        f"current_date + %s::int) ON CONFLICT (sha256) DO NOTHING RETURNING id",
        (db, path, sha256, size_bytes, s["tables"], s["rows"], s["fingerprint"], json.dumps(tables),
         retention_days))
    row = cur.fetchone()
    return row is not None


_BACKUP_COLUMNS = "id, db, path, sha256, size_bytes, tables, rows, fingerprint, verified_at, retention_until"


def _backup_row(row, cur):
    rec = dict(zip([d[0] for d in cur.description], row))
    for k in ("verified_at", "retention_until"):
        rec[k] = rec[k].isoformat() if rec.get(k) else None
    return rec


def latest_backups(cur, databases):
    """The newest verified backup of each database, with its per-table checksums."""
    if not ledger_exists(cur):
        return {}
    out = {}
    for db in databases:
        cur.execute(f"SELECT {_BACKUP_COLUMNS}, table_checksums FROM {SCHEMA}.backups WHERE db = %s "
                    f"ORDER BY id DESC LIMIT 1", (db,))
        row = cur.fetchone()
        if row:
            out[db] = _backup_row(row, cur)
    return out


def recorded_backup(cur, sha256):
    """The verified backup recorded for this file content, or None."""
    if not ledger_exists(cur):
        return None
    cur.execute(f"SELECT {_BACKUP_COLUMNS}, table_checksums FROM {SCHEMA}.backups WHERE sha256 = %s", (sha256,))
    row = cur.fetchone()
    return _backup_row(row, cur) if row else None


def backups_by_id(cur, ids):
    """Recorded backups by id (the ones a decommission used), keyed by database."""
    if not ids or not ledger_exists(cur):
        return {}
    cur.execute(f"SELECT {_BACKUP_COLUMNS}, table_checksums FROM {SCHEMA}.backups WHERE id = ANY(%s)",
                (list(ids),))
    return {rec["db"]: rec for rec in (_backup_row(r, cur) for r in cur.fetchall())}


def latest_state(cur):
    if not ledger_exists(cur):
        return None
    cur.execute(f"SELECT id, status, databases, backup_ids, containers, containers_file, at "
                f"FROM {SCHEMA}.decommission ORDER BY id DESC LIMIT 1")
    row = cur.fetchone()
    if not row:
        return None
    rec = dict(zip([d[0] for d in cur.description], row))
    rec["at"] = rec["at"].isoformat()
    rec["backup_ids"] = [int(i) for i in rec["backup_ids"]]
    return rec


def set_state(cur, status, databases, backup_ids, containers, containers_file):
    """Record a state change; returns False when the latest state already is this one."""
    ledger.begin(cur)
    current = latest_state(cur)
    if current and current["status"] == status:
        return False
    cur.execute(f"INSERT INTO {SCHEMA}.decommission (status, databases, backup_ids, containers, containers_file) "
                f"VALUES (%s, %s, %s, %s, %s)",
                (status, list(databases), list(backup_ids), list(containers), containers_file))
    return True


def existing_databases(cur, names):
    cur.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (list(names),))
    present = {r[0] for r in cur.fetchall()}
    return {n: n in present for n in names}


def cutover_keys(cur):
    """The cutover's recorded steps (phase 3: started, switched, ...); rollback-3 clears them."""
    return set(ledger.cutover_state(cur))


def cutover_switched(cur):
    """True when phase 3 switched routing to V6 and no rollback-3 undid it."""
    return "switched" in cutover_keys(cur)
