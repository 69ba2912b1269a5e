"""What phase 1 changes in rows V6 already holds (phase 1 engine, see __init__).

The space <-> device links (link_plan, link_spaces), device_assignments from those links, the
live-state sync of mapped rows (guarded, settle; a reservation's status: sync_reservations; a
device's last uplink and a space's state, the rows V6's webhook locks: sync_hot_state, written
last) and the resolution of orphan rows whose EUI is now a registered sensor. Every such change
keeps a before-image so rollback-1 restores it exactly.
"""
from .. import mapping, sqlfrag as F
from .registry import DEVICE_KINDS, anonymous_user
from .run import L, decide, note_conflicts, record_state, save_before_images

# a V5 row changed after the V6 row it maps to (the guard of the live-state syncs)
NEWER = "m.updated_at > coalesce(t.updated_at, '-infinity')"


def link_plan(run, table):
    """Per placed-or-not device, what this run does with its link (lp_<table>.decision):
    apply (first contact, or V5 changed it and V6 still holds what the tool wrote), keep (V5
    unchanged: V6's value stays, edited or not), conflict (both changed: V6 wins, reported),
    tenant_changed (V5 moved it to another tenant: V6 has no such move, the gate reports it)."""
    v5_sig = "coalesce(CASE WHEN m.linked THEN m.space_v6::text END, '')"
    run.execute(f"""
        CREATE TEMP TABLE lp_{table} ON COMMIT DROP AS
        SELECT m.v6_id AS dev_v6, m.v5_id, m.eui, m.linked, m.space_v6,
               {F.utc_naive('coalesce(m.space_created, m.created_at)')} AS assigned_at,
               {v5_sig} AS v5_sig, coalesce(d.assigned_space_id::text, '') AS v6_now,
               CASE WHEN m.action IN ('insert', 'match') OR rs.v6_id IS NULL THEN 'apply'
                    WHEN rs.v5_sig = {v5_sig} THEN 'keep'
                    WHEN m.linked AND m.space_tenant IS DISTINCT FROM d.tenant_id THEN 'tenant_changed'
                    WHEN rs.v6_sig = coalesce(d.assigned_space_id::text, '') THEN 'apply'
                    ELSE 'conflict' END AS decision
        FROM m_{table} m JOIN {table} d ON d.id = m.v6_id
        LEFT JOIN {L}.row_state rs ON rs.entity = '{table}' AND rs.v6_id = m.v6_id::text
        WHERE m.action IN ('insert', 'match', 'mapped')""")


def link_spaces(run):
    """Both directions of every placed device's link: spaces.<kind>_device_id and assigned_space_id,
    where link_plan says apply. A device V5 moved leaves its old space (both columns cleared)."""
    for table, (kind, eui_col, fk_col) in DEVICE_KINDS.items():
        link_plan(run, table)
        want = f"SELECT space_v6, dev_v6, eui, assigned_at FROM lp_{table} WHERE linked AND decision = 'apply'"
        # a sensor EUI another space holds cannot be set (V6 unique_sensor_eui): reject that link
        conflict = ("EXISTS (SELECT 1 FROM spaces o WHERE o.sensor_eui = w.eui AND o.id <> w.space_v6 "
                    f"AND o.{fk_col} IS DISTINCT FROM w.dev_v6)" if kind == "sensor" else "false")
        run.execute(f"""
            INSERT INTO {L}.rejects (run_id, entity, v5_id, reason)
            SELECT %(run)s, 'space_links', w.space_v6::text || ':{kind}',
                   'space ' || w.space_v6 || ' cannot take {kind} EUI ' || w.eui || ': another V6 space holds it'
            FROM ({want}) w WHERE {conflict} ON CONFLICT DO NOTHING""")
        run.count("space_links", "rejected", run.cur.rowcount)
        # the spaces that hold an applied device elsewhere let go of it (V5 moved or unplaced it)
        left = (f"SELECT s.id FROM spaces s JOIN lp_{table} w ON s.{fk_col} = w.dev_v6 "
                f"WHERE w.decision = 'apply' AND s.id IS DISTINCT FROM (CASE WHEN w.linked THEN w.space_v6 END)")
        save_before_images(run, "spaces", left)
        n = run.execute(f"UPDATE spaces SET {fk_col} = NULL, {eui_col} = NULL WHERE id IN ({left})")
        if n:
            run.count("space_links", f"{kind}_spaces_unlinked", n)
        differs = (f"SELECT w.space_v6 FROM ({want}) w JOIN spaces s ON s.id = w.space_v6 "
                   f"WHERE NOT {conflict} AND (s.{fk_col} IS DISTINCT FROM w.dev_v6 "
                   f"OR s.{eui_col} IS DISTINCT FROM w.eui)")
        save_before_images(run, "spaces", differs)
        n = run.execute(f"""
            UPDATE spaces s SET {fk_col} = w.dev_v6, {eui_col} = w.eui
            FROM ({want}) w WHERE s.id = w.space_v6 AND NOT {conflict}
              AND (s.{fk_col} IS DISTINCT FROM w.dev_v6 OR s.{eui_col} IS DISTINCT FROM w.eui)""")
        run.count("space_links", f"{kind}_spaces_linked", n)
        differs = (f"SELECT w.dev_v6 FROM ({want}) w JOIN {table} d ON d.id = w.dev_v6 "
                   f"WHERE d.assigned_space_id IS DISTINCT FROM w.space_v6")
        save_before_images(run, table, differs)
        n = run.execute(f"""
            UPDATE {table} d SET assigned_space_id = w.space_v6, assigned_at = w.assigned_at,
                   status = 'assigned', lifecycle_state = 'operational'
            FROM ({want}) w WHERE d.id = w.dev_v6 AND d.assigned_space_id IS DISTINCT FROM w.space_v6""")
        run.count("space_links", f"{kind}_devices_linked", n)
        gone = (f"SELECT d.id FROM {table} d JOIN lp_{table} w ON w.dev_v6 = d.id "
                f"WHERE w.decision = 'apply' AND NOT w.linked AND d.assigned_space_id IS NOT NULL")
        save_before_images(run, table, gone)
        n = run.execute(f"""UPDATE {table} SET assigned_space_id = NULL, assigned_at = NULL, status = 'unassigned'
                            WHERE id IN ({gone})""")
        if n:
            run.count("space_links", f"{kind}_devices_unlinked", n)
        record_state(run, table, f"SELECT w.dev_v6, w.v5_sig, d.assigned_space_id FROM lp_{table} w "
                                 f"JOIN {table} d ON d.id = w.dev_v6 WHERE w.decision = 'apply'")
        note_conflicts(run, table, f"lp_{table}", "dev_v6", f"""
            '{kind} ' || eui || ': V5 now places it on ' || coalesce(nullif(v5_sig, ''), 'no space')
            || ', V6 moved it to ' || coalesce(nullif(v6_now, ''), 'no space') || ' after phase 1: V6 kept'""")
        decide(run, table, "tenant_changed", f"""
            SELECT v5_id, '{kind} ' || eui || ': V5 moved it to space ' || space_v6 || ' of another tenant since '
                   || 'the last run; V6 has no such move (devices keep their tenant): not applied'
            FROM lp_{table} WHERE decision = 'tenant_changed'""")


def migrate_assignments(run):
    """device_assignments from V5's links, for the devices whose link this run applied: one open row
    per current link, a closed one per link that only a soft-deleted space still holds (assignment
    history). A device V5 moved closes the open rows the tool wrote for its old space."""
    total = 0
    for table, (kind, _, _) in DEVICE_KINDS.items():
        closed = run.execute(f"""
            UPDATE device_assignments a SET unassigned_at = %(now)s::timestamptz AT TIME ZONE 'UTC',
                   unassignment_reason = 'moved in V5 (parking-migrate)'
            FROM lp_{table} w
            WHERE w.decision = 'apply' AND a.device_id = w.dev_v6 AND a.unassigned_at IS NULL
              AND a.space_id IS DISTINCT FROM (CASE WHEN w.linked THEN w.space_v6 END)
              AND EXISTS (SELECT 1 FROM {L}.id_map i WHERE i.entity = 'device_assignments'
                          AND i.action = 'inserted' AND i.v6_id = a.id::text)""")
        if closed:
            run.count("device_assignments", "closed", closed)
        key = f"'{kind}:' || m.v5_id || ':' || c.space_v5"
        total += run.execute(f"""
            WITH rows AS (
                SELECT {F.derived('device_assignments', key)} AS id, sp.tenant_id, '{kind}' AS device_type,
                       m.v6_id AS device_id, m.eui AS dev_eui, ms.v6_id::uuid AS space_id,
                       {F.utc_naive('coalesce(c.space_created, m.created_at)')} AS assigned_at,
                       CASE WHEN c.deleted_at IS NOT NULL THEN {F.utc_naive('c.deleted_at')} END AS unassigned_at,
                       CASE WHEN c.deleted_at IS NOT NULL THEN 'V5 space soft-deleted' END AS unassignment_reason
                FROM m_{table} m JOIN cand_{table} c ON c.dev_id = m.id
                JOIN lp_{table} w ON w.dev_v6 = m.v6_id AND w.decision = 'apply'
                {F.mapped('spaces', 'ms', 'c.space_v5')}
                JOIN spaces sp ON sp.id = ms.v6_id::uuid
                WHERE m.action IN ('insert', 'match', 'mapped')
                  AND ((c.deleted_at IS NULL AND c.space_v5 = m.space_v5) OR c.deleted_at IS NOT NULL)),
            ins AS (
                INSERT INTO device_assignments (id, tenant_id, device_type, device_id, dev_eui, space_id,
                                                assigned_at, unassigned_at, assignment_reason, unassignment_reason)
                SELECT id, tenant_id, device_type, device_id, dev_eui, space_id, assigned_at, unassigned_at,
                       'migrated from V5 by parking-migrate', unassignment_reason FROM rows
                ON CONFLICT (id) DO NOTHING RETURNING id)
            INSERT INTO {L}.id_map (entity, v5_id, v6_id, action, run_id)
            SELECT 'device_assignments', id::text, id::text, 'inserted', %(run)s FROM ins
            ON CONFLICT (entity, v5_id) DO NOTHING""")
    run.count("device_assignments", "inserted", total)


def guarded(run, entity, v5_sig, v6_sig, differs, legacy):
    """TEMP table g_<entity>: per mapped row, apply | keep | same | conflict for a V5 value the tool
    keeps in step (row_state): V5 unchanged since the last run -> keep (V6's value stays, edited or
    not); V5 changed and V6 still holds what the tool wrote -> apply; both changed -> conflict, V6
    wins. Rows with no row_state yet (an earlier version's runs) follow `legacy`."""
    run.execute(f"""
        CREATE TEMP TABLE g_{entity} ON COMMIT DROP AS
        SELECT DISTINCT ON (t.id) t.id, m.v5_id, ({v5_sig})::text AS v5_sig, coalesce(({v6_sig})::text, '') AS v6_now,
               rs.v6_id IS NOT NULL AS known,
               CASE WHEN rs.v6_id IS NULL THEN CASE WHEN {legacy} AND {differs} THEN 'apply' ELSE 'keep' END
                    WHEN rs.v5_sig IS NOT DISTINCT FROM ({v5_sig})::text THEN 'keep'
                    WHEN NOT {differs} THEN 'same'
                    WHEN rs.v6_sig IS NOT DISTINCT FROM coalesce(({v6_sig})::text, '') THEN 'apply'
                    ELSE 'conflict' END AS decision
        FROM m_{entity} m JOIN {entity} t ON t.id = m.v6_id
        LEFT JOIN {L}.row_state rs ON rs.entity = '{entity}' AND rs.v6_id = t.id::text
        WHERE m.action = 'mapped' ORDER BY t.id, m.v5_id""")
    return f"SELECT id FROM g_{entity} WHERE decision = 'apply'"


def settle(run, entity, v6_sig, label):
    """After a guarded sync: row_state follows what was applied (or first recorded); a conflict is
    reported once (V5's new value noted, the V6 value the tool wrote kept for the gate)."""
    record_state(run, entity, f"SELECT g.id, g.v5_sig, {v6_sig} FROM g_{entity} g JOIN {entity} t ON t.id = g.id "
                              f"WHERE g.decision IN ('apply', 'same') OR NOT g.known")
    note_conflicts(run, entity, f"g_{entity}", "id", f"""
        '{label} ' || id || ': V5 changed it to ' || quote_literal(v5_sig) || ' and V6 to '
        || quote_literal(v6_now) || ' since the last run: V6 kept'""")


def sync_hot_state(run):
    """What V5 keeps updating on every uplink: a device's last uplink (only moves forward) and a
    space's state (follows V5 only while V6 still holds what the tool wrote: guarded, V6's edits
    win, a conflict is reported). Before-images keep rollback exact.

    These are the rows V6's webhook locks for every uplink it takes (UPDATE sensor_devices, then
    UPDATE spaces), so the run writes them last, after its gate and just before its commit: its
    row locks on them are held for milliseconds, not through the history copy and the gate (an
    uplink to a serving V6 waited for the run's commit: seconds on a busy host, past what
    ChirpStack waits for an answer). Devices first, then spaces: the order V6's webhook takes
    them, so the two never wait on each other in a cycle (a deadlock would fail one of them)."""
    for table in DEVICE_KINDS:
        seen = (f"SELECT t.id FROM {table} t JOIN m_{table} m ON m.v6_id = t.id WHERE m.action = 'mapped' "
                f"AND {F.utc_naive('m.last_seen_at')} > coalesce(t.last_seen_at, '-infinity')")
        save_before_images(run, table, seen)
        run.count(table, "last_seen_synced", run.execute(f"""
            UPDATE {table} t SET last_seen_at = {F.utc_naive('m.last_seen_at')}
            FROM m_{table} m WHERE t.id IN ({seen}) AND m.v6_id = t.id"""))
    state = F.space_state("m.state")
    targets = guarded(run, "spaces", "m.state", "t.current_state",
                      f"(t.state IS DISTINCT FROM m.state OR t.current_state IS DISTINCT FROM {state})", NEWER)
    save_before_images(run, "spaces", targets)
    run.count("spaces", "state_synced", run.execute(f"""
        UPDATE spaces t SET state = m.state, current_state = {state},
               state_changed_at = {F.utc_naive('m.updated_at')}
        FROM m_spaces m WHERE t.id IN ({targets}) AND m.v6_id = t.id"""))
    settle(run, "spaces", "t.current_state", "space")


def sync_reservations(run):
    """A reservation's status follows V5 while V6 still holds what the tool wrote (guarded: V6's
    edits win, a conflict is reported); one V5 still runs is closed once its window ended; one
    migrated without a user gets it. Before-images keep rollback exact. (The gate checks
    statuses: this runs before it.)"""
    status = F.reservation_status("m.status", "m.end_time")
    changed = guarded(run, "reservations", "m.status", "t.status", f"t.status IS DISTINCT FROM {status}", NEWER)
    save_before_images(run, "reservations", changed)
    run.count("reservations", "status_synced", run.execute(f"""
        UPDATE reservations t SET status = {status},
               metadata = coalesce(t.metadata, '{{}}') || jsonb_build_object('v5_status', m.status)
        FROM m_reservations m WHERE t.id IN ({changed}) AND m.v6_id = t.id"""))
    # migrated while its window was open, ended since and still ongoing for V5: closed like a new one
    ongoing = mapping.sql_literal(mapping.RESERVATION_ONGOING)
    ended = (f"SELECT t.id FROM reservations t JOIN m_reservations m ON m.v6_id = t.id WHERE m.action = 'mapped' "
             f"AND t.status = {ongoing} AND t.end_time <= %(now)s::timestamptz "
             f"AND {F.reservation_status('m.status')} = {ongoing}")
    save_before_images(run, "reservations", ended)
    closed = run.rows(f"""UPDATE reservations t SET status = {mapping.sql_literal(mapping.RESERVATION_ENDED_STATUS)}
                          WHERE t.id IN ({ended}) RETURNING t.id""")
    if closed:
        run.count("reservations", "ended_closed", len(closed))
        # the tool wrote it: row_state follows, so the gate does not take it for a V6 edit
        run.execute(f"""UPDATE {L}.row_state SET v6_sig = %(s)s WHERE entity = 'reservations'
                        AND v6_id = ANY(%(ids)s)""",
                    dict(run.params, s=mapping.RESERVATION_ENDED_STATUS, ids=[str(r[0]) for r in closed]))
    settle(run, "reservations", "t.status", "reservation")
    # migrated without a user (by an earlier version): the user found now, else the placeholder
    nouser = ("SELECT t.id FROM reservations t JOIN m_reservations m ON m.v6_id = t.id "
              "WHERE m.action = 'mapped' AND t.user_id IS NULL")
    if run.scalar(f"SELECT count(*) FROM ({nouser}) x"):
        anonymous = anonymous_user(run)
        save_before_images(run, "reservations", nouser)
        run.count("reservations", "user_linked", run.execute(f"""
            UPDATE reservations t SET user_id = coalesce(m.user_v6, %(anon)s::uuid)
            FROM m_reservations m WHERE t.id IN ({nouser}) AND m.v6_id = t.id""", dict(run.params, anon=anonymous)))


def resolve_orphans(run):
    """V6 orphan rows whose EUI is now a registered sensor are resolved (removed): V6 lists as
    orphans the uplinks of sensors it did not know. Display EUIs are left: V6's webhook consults
    only sensor_devices (docs/v6-contract.md), so it writes an orphan row for every display frame
    again - resolving them would change nothing and keep the gate from ever seeing a complete
    migration while displays send. Before-images let rollback put resolved rows back."""
    registered = ("SELECT o.id FROM orphan_devices o WHERE EXISTS (SELECT 1 FROM sensor_devices d "
                  "WHERE d.dev_eui = o.dev_eui)")
    save_before_images(run, "orphan_devices", registered)
    run.count("orphan_devices", "resolved", run.execute(f"DELETE FROM orphan_devices WHERE id IN ({registered})"))
