"""rollback-1: remove exactly what phase 1 inserted, restore what it updated, undo its DDL.

Rows V6 had before phase 1 stay. Works from the ledger only (V5 is not needed), inside the
caller's transaction (check mode rolls it back). Reverse dependency order.
"""
import time

from . import ledger
from .sqlfrag import LEDGER as L, READING_MARKER_LIKE

DELETE_ORDER = ("device_assignments", "reservations", "orphan_devices", "spaces", "sensor_devices",
                "display_devices", "sites", "user_memberships", "users", "tenants")


def rollback(tgt_conn, run_id, phase="phase1"):
    t0 = time.time()
    cur = tgt_conn.cursor()
    queries, counts = [], {}

    def ex(sql, params=None):
        queries.append(" ".join(sql.split()))
        cur.execute(sql, params)
        return cur.rowcount

    if not ledger.exists(cur):
        return {"changed": False, "counts": {}, "executed_queries": [], "run_id": run_id,
                "message": "no parking-migrate ledger in the target: nothing to roll back"}
    ledger.lock(cur)
    ledger.start(cur, run_id, phase, "rollback", "absent", False)
    counts["sensor_readings"] = ex("DELETE FROM sensor_readings WHERE raw_payload LIKE %s", (READING_MARKER_LIKE,))
    counts["state_changes"] = ex(f"""DELETE FROM state_changes WHERE id IN (SELECT v6_id::bigint FROM {L}.id_map
                                     WHERE entity = 'state_changes' AND action = 'inserted')""")
    counts["state_changes"] += ex(f"""DELETE FROM state_changes c USING {L}.history_ranges r
                                      WHERE r.tbl = 'state_changes' AND c.id > r.lo AND c.id <= r.hi""")
    for table in DELETE_ORDER[:3]:
        counts[table] = ex(f"""DELETE FROM {table} WHERE id IN (SELECT v6_id::uuid FROM {L}.id_map
                               WHERE entity = %s AND action = 'inserted')""", (table,))
    # restore the rows V6 had, as they were (triggers off so updated_at is restored too)
    ex("SET LOCAL session_replication_role = replica")
    restored = 0
    for tbl in ("spaces", "sensor_devices", "display_devices", "reservations"):  # updated in place
        restored += ex(f"""
            UPDATE {tbl} t SET ({cols(cur, tbl)}) = (SELECT {cols(cur, tbl, 'r.')}
                FROM jsonb_populate_record(NULL::{tbl}, b.before) r)
            FROM (SELECT DISTINCT ON (row_id) row_id, before FROM {L}.before_images WHERE tbl = %s
                  ORDER BY row_id, seq) b
            WHERE t.id::text = b.row_id""", (tbl,))
    ex("SET LOCAL session_replication_role = origin")
    # rows the migration deleted (V6 orphans it resolved) come back as they were
    restored += ex(f"""
        INSERT INTO orphan_devices SELECT (jsonb_populate_record(NULL::orphan_devices, b.before)).*
        FROM {L}.before_images b WHERE b.tbl = 'orphan_devices' ON CONFLICT DO NOTHING""")
    counts["restored"] = restored
    # inserted devices may still be referenced by inserted spaces and the other way round
    ex(f"""UPDATE spaces SET sensor_device_id = NULL, display_device_id = NULL WHERE id IN
           (SELECT v6_id::uuid FROM {L}.id_map WHERE entity = 'spaces' AND action = 'inserted')""")
    for table in DELETE_ORDER[3:]:
        counts[table] = ex(f"""DELETE FROM {table} WHERE id IN (SELECT v6_id::uuid FROM {L}.id_map
                               WHERE entity = %s AND action = 'inserted')""", (table,))
    cur.execute(f"SELECT undo_sql FROM {L}.objects ORDER BY seq DESC")
    undo = [row[0] for row in cur.fetchall()]
    for sql in undo:
        ex(sql)
    counts["objects_undone"] = len(undo)
    for t in ("id_map", "before_images", "rejects", "objects", "history_ranges"):
        ex(f"DELETE FROM {L}.{t}")
    ex(f"UPDATE {L}.runs SET status = 'rolled_back' WHERE phase = %s AND status = 'succeeded' AND state = 'present'",
       (phase,))
    changed = any(v for v in counts.values())
    ledger.finish(cur, run_id, "succeeded", counts, {})
    return {"changed": changed, "counts": counts, "executed_queries": queries, "run_id": run_id,
            "seconds": round(time.time() - t0, 3)}


def cols(cur, table, prefix=""):
    cur.execute("SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position) FROM "
                "information_schema.columns WHERE table_schema = 'public' AND table_name = %s", (table,))
    names = cur.fetchone()[0].split(", ")
    return ", ".join(prefix + n for n in names)
