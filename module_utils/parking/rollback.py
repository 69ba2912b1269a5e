"""rollback-1: remove exactly what phase 1 inserted, restore what it updated, undo its DDL.

Rows V6 had before phase 1 stay. Works from the ledger only (V5 is not needed), inside the
caller's transaction (check mode rolls it back). Reverse dependency order.
"""
import time

from . import backup, ledger
from .errors import ParkingError
from .sqlfrag import LEDGER as L, READING_MARKER_LIKE
from .statements import Statements

# Rows V6 creates while it serves (cutover) that can hang on what phase 1 inserted. rollback-3
# has copied them back to V5, so rollback-1 removes them with their parents; other rows that
# point at an inserted row are unlinked (nullable reference) or stop the rollback.
EVENT_TABLES = ("sensor_readings", "state_changes", "reservations", "device_assignments", "orphan_devices",
                "gateways", "audit_log", "refresh_tokens", "api_keys", "notifications")

_FKS_SQL = """
SELECT c.conrelid::regclass::text, a.attname, af.attname, c.confdeltype, a.attnotnull
FROM pg_constraint c
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
JOIN pg_attribute af ON af.attrelid = c.confrelid AND af.attnum = c.confkey[1]
WHERE c.contype = 'f' AND c.confrelid = %s::regclass AND array_length(c.conkey, 1) = 1
  AND c.confdeltype IN ('a', 'r') AND c.conrelid <> c.confrelid
ORDER BY 1, 2
"""

DELETE_ORDER = ("device_assignments", "reservations", "orphan_devices", "spaces", "sensor_devices",
                "display_devices", "sites", "user_memberships", "users", "tenants")


def rollback(tgt_conn, run_id, phase="phase1"):
    t0 = time.time()
    st = Statements(tgt_conn)  # recorded statements (ex) and catalog reads (cur) share one cursor
    cur, ex, queries = st.cur, st.execute, st.queries
    counts = {}

    if not ledger.exists(cur):
        return {"changed": False, "counts": {}, "executed_queries": [], "run_id": run_id,
                "message": "no parking-migrate ledger in the target: nothing to roll back"}
    ledger.lock(cur)
    refuse_while_v6_serves(cur)
    ledger.start(cur, run_id, phase, "rollback", "absent", False)
    released = {"dependents_removed": 0, "dependents_unlinked": 0}

    def release(table, ids_sql, depth=0):
        """Remove or unlink rows V6 created since phase 1 that reference rows about to be deleted."""
        cur.execute(_FKS_SQL, (table,))
        for ref_table, ref_col, col, _deltype, notnull in cur.fetchall():
            if ref_table in EVENT_TABLES and depth < 3:
                sub = f"SELECT id FROM {ref_table} WHERE {ref_col} IN (SELECT {col} FROM {table} WHERE id IN ({ids_sql}))"
                release(ref_table, sub, depth + 1)
                released["dependents_removed"] += ex(
                    f"DELETE FROM {ref_table} WHERE {ref_col} IN (SELECT {col} FROM {table} WHERE id IN ({ids_sql}))")
            elif not notnull:
                released["dependents_unlinked"] += ex(
                    f"UPDATE {ref_table} SET {ref_col} = NULL WHERE {ref_col} IN "
                    f"(SELECT {col} FROM {table} WHERE id IN ({ids_sql}))")

    def inserted(table):
        return f"SELECT v6_id::uuid FROM {L}.id_map WHERE entity = '{table}' AND action = 'inserted'"

    counts.update(undo_gateways(cur, ex))
    counts["sensor_readings"] = ex("DELETE FROM sensor_readings WHERE raw_payload LIKE %s", (READING_MARKER_LIKE,))
    counts["state_changes"] = ex(f"""DELETE FROM state_changes WHERE id IN (SELECT v6_id::bigint FROM {L}.id_map
                                     WHERE entity = 'state_changes' AND action = 'inserted')""")
    counts["state_changes"] += ex(f"""DELETE FROM state_changes c USING {L}.history_ranges r
                                      WHERE r.tbl = 'state_changes' AND c.id > r.lo AND c.id <= r.hi""")
    for table in DELETE_ORDER[:3]:
        release(table, inserted(table))
        counts[table] = ex(f"""DELETE FROM {table} WHERE id IN (SELECT v6_id::uuid FROM {L}.id_map
                               WHERE entity = %s AND action = 'inserted')""", (table,))
    # restore the rows V6 had, as they were (triggers off so updated_at is restored too)
    ex("SET LOCAL session_replication_role = replica")
    restored = 0
    for tbl in ("spaces", "sensor_devices", "display_devices", "reservations"):  # updated in place
        restored += restore_images(cur, ex, tbl)
    ex("SET LOCAL session_replication_role = origin")
    # orphan rows V6 recorded while it served (every display frame, unknown EUIs): rollback-3 has
    # copied them to V5 (displays excepted: V5 knows its displays); V6 goes back to its state
    # before phase 1
    counts["orphan_devices_recorded_by_v6"] = ex(f"""
        DELETE FROM orphan_devices WHERE first_seen >= (SELECT min(started_at) AT TIME ZONE 'UTC' FROM {L}.runs
                                                        WHERE phase = %s AND status = 'succeeded' AND state = 'present')""",
                                                 (phase,))
    # rows the migration deleted (V6 orphans it resolved) come back as they were
    restored += ex(f"""
        INSERT INTO orphan_devices SELECT (jsonb_populate_record(NULL::orphan_devices, b.before)).*
        FROM {L}.before_images b WHERE b.tbl = 'orphan_devices' ON CONFLICT DO NOTHING""")
    counts["restored"] = restored
    # inserted devices may still be referenced by inserted spaces and the other way round
    ex(f"""UPDATE spaces SET sensor_device_id = NULL, display_device_id = NULL WHERE id IN
           (SELECT v6_id::uuid FROM {L}.id_map WHERE entity = 'spaces' AND action = 'inserted')""")
    for table in DELETE_ORDER[3:]:
        release(table, inserted(table))
        counts[table] = ex(f"""DELETE FROM {table} WHERE id IN (SELECT v6_id::uuid FROM {L}.id_map
                               WHERE entity = %s AND action = 'inserted')""", (table,))
    counts.update(released)
    cur.execute(f"SELECT undo_sql FROM {L}.objects ORDER BY seq DESC")
    undo = [row[0] for row in cur.fetchall()]
    for sql in undo:
        ex(sql)
    counts["objects_undone"] = len(undo)
    for t in ("id_map", "before_images", "rejects", "objects", "history_ranges", "row_state", "decisions"):
        ex(f"DELETE FROM {L}.{t}")
    ex(f"UPDATE {L}.runs SET status = 'rolled_back' WHERE phase = %s AND status = 'succeeded' AND state = 'present'",
       (phase,))
    changed = any(v for v in counts.values())
    ledger.finish(cur, run_id, "succeeded", counts, {})
    return {"changed": changed, "counts": counts, "executed_queries": queries, "run_id": run_id,
            "seconds": round(time.time() - t0, 3)}


def restore_images(cur, ex, tbl, entity=None):
    """Put back, as they were, the rows of `tbl` the tool updated (the oldest before-image of each
    row); rows it inserted itself (id_map `entity`) are skipped, they are deleted instead."""
    skip = ""
    params = [tbl]
    if entity:
        skip = f" AND row_id NOT IN (SELECT v6_id FROM {L}.id_map WHERE entity = %s AND action = 'inserted')"
        params.append(entity)
    return ex(f"""
        UPDATE {tbl} t SET ({cols(cur, tbl)}) = (SELECT {cols(cur, tbl, 'r.')}
            FROM jsonb_populate_record(NULL::{tbl}, b.before) r)
        FROM (SELECT DISTINCT ON (row_id) row_id, before FROM {L}.before_images WHERE tbl = %s{skip}
              ORDER BY row_id, seq) b
        WHERE t.id::text = b.row_id""", tuple(params))


GATEWAYS = "gateways"


def undo_gateways(cur, ex):
    """The gateways phase 1 imported (chirpstack_gateway_import): rows it updated restored, rows it
    inserted deleted, their ledger entries cleared. The same path as every other entity."""
    counts = {"gateways_restored": restore_images(cur, ex, GATEWAYS, GATEWAYS),
              "gateways": ex(f"""DELETE FROM {GATEWAYS} WHERE id IN (SELECT v6_id::uuid FROM {L}.id_map
                                 WHERE entity = %s AND action = 'inserted')""", (GATEWAYS,))}
    ex(f"DELETE FROM {L}.id_map WHERE entity = %s", (GATEWAYS,))
    ex(f"DELETE FROM {L}.before_images WHERE tbl = %s", (GATEWAYS,))
    ex(f"UPDATE {L}.runs SET status = 'rolled_back' WHERE phase = %s AND status = 'succeeded' AND state = 'present'",
       (GATEWAYS,))
    return counts


def gateway_records(cur):
    """What the ledger holds about imported gateways: (run ids oldest first, inserted rows, updated rows)."""
    cur.execute(f"""SELECT r.run_id::text FROM (SELECT run_id FROM {L}.id_map WHERE entity = %s
                                                 UNION SELECT run_id FROM {L}.before_images WHERE tbl = %s) r
                    LEFT JOIN {L}.runs USING (run_id) ORDER BY runs.started_at NULLS FIRST, r.run_id""",
                (GATEWAYS, GATEWAYS))
    runs = [r[0] for r in cur.fetchall()]
    cur.execute(f"SELECT count(*) FILTER (WHERE g.id IS NOT NULL), count(*) FROM {L}.id_map m "
                f"LEFT JOIN {GATEWAYS} g ON g.id::text = m.v6_id WHERE m.entity = %s AND m.action = 'inserted'",
                (GATEWAYS,))
    inserted_present, inserted = cur.fetchone()
    cur.execute(f"SELECT count(DISTINCT b.row_id) FILTER (WHERE g.id IS NOT NULL), count(DISTINCT b.row_id) "
                f"FROM {L}.before_images b LEFT JOIN {GATEWAYS} g ON g.id::text = b.row_id WHERE b.tbl = %s "
                f"AND b.row_id NOT IN (SELECT v6_id FROM {L}.id_map WHERE entity = %s AND action = 'inserted')",
                (GATEWAYS, GATEWAYS))
    updated_present, updated = cur.fetchone()
    return runs, {"inserted": inserted, "inserted_present": inserted_present,
                  "updated": updated, "updated_present": updated_present}


def refuse_while_v6_serves(cur):
    """rollback-1 removes data V6 serves: only once traffic is back on V5 and V5 exists."""
    state = backup.latest_state(cur)
    if state and state["status"] == "done":
        raise ParkingError("V5 is decommissioned (phase 4): rollback-1 would leave no copy of the data. "
                           "Run rollback-4, then rollback-3, first. Nothing was changed.")
    keys = sorted(backup.cutover_keys(cur) & {"started", "switched"})
    if keys:
        raise ParkingError(f"a cutover to V6 is recorded ({', '.join(keys)}): V6 may be serving traffic. "
                           "Run rollback-3 first (it hands traffic back to V5 and copies back what V6 "
                           "received). Nothing was changed.")


def cols(cur, table, prefix=""):
    cur.execute("SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position) FROM "
                "information_schema.columns WHERE table_schema = 'public' AND table_name = %s", (table,))
    names = cur.fetchone()[0].split(", ")
    return ", ".join(prefix + n for n in names)
