"""History: sensor readings and state changes (phase 1 engine, see __init__).

Rows above the watermark go straight from V5 to V6 in one streamed COPY each (direct_readings,
direct_state_changes, through bulk_copy and copy_rejects); rows re-read below it go through
staging (migrate_readings, migrate_state_changes), where ON CONFLICT skips what is there.
advance_sequence keeps V6's state_changes sequence ahead of the copied ids. The constants are
the history's: the re-read window, the table V6 deletes after its retention, the timestamp
column and the watermark key of the retention (the gate applies the same cutoff).
"""
from .. import mapping, pgcopy, quote, sqlfrag as F, staging
from ..errors import ParkingError
from . import bulk
from .run import L

HISTORY_OVERLAP = 10000  # ids re-read below the watermark: rows committed late are caught
# History V6 deletes after its retention (background_jobs.py: sensor_readings by received_at only)
RETAINED = ("sensor_readings",)
TS = '"timestamp"'
RETENTION_MARK = "history_retention_days"  # kept with the watermarks: the gate applies the same cutoff


def migrate_readings(run):
    """V5 readings -> V6 readings: device by EUI, tenant = the device's V6 tenant, fcnt required.
    The V6 id is derived from the V5 id (idempotent); raw_payload keeps the V5 row and marks it."""
    occupied = F.occupied("s.occupancy_state")
    n = run.scalar(f"""
        WITH ins AS (
            INSERT INTO sensor_readings (id, tenant_id, device_id, dev_eui, fcnt, occupied, rssi, snr, raw_payload,
                                         received_at, created_at)
            SELECT {F.sequential('sensor_readings', 's.id')}, d.tenant_id, d.id, d.dev_eui, s.fcnt, {occupied},
                   s.rssi, s.snr, {F.READING_PAYLOAD}, {F.utc_naive('s.ts')}, {F.utc_naive('s.ts')}
            FROM stg_sensor_readings s JOIN sensor_devices d ON d.dev_eui = upper(s.device_eui)
            WHERE s.fcnt IS NOT NULL AND s.ts IS NOT NULL
            ON CONFLICT (id) DO NOTHING RETURNING 1)
        SELECT count(*) FROM ins""")
    run.count("sensor_readings", "inserted", n)
    rej = run.execute(f"""
        INSERT INTO {L}.rejects (run_id, entity, v5_id, reason)
        SELECT %(run)s, 'sensor_readings', s.id::text,
               CASE WHEN d.id IS NULL THEN 'no V6 sensor device with EUI ' || quote_literal(s.device_eui)
                    WHEN s.fcnt IS NULL THEN 'fcnt missing: V6 requires a frame counter'
                    ELSE 'timestamp missing' END
        FROM stg_sensor_readings s LEFT JOIN sensor_devices d ON d.dev_eui = upper(s.device_eui)
        WHERE d.id IS NULL OR s.fcnt IS NULL OR s.ts IS NULL
        ON CONFLICT DO NOTHING""")
    run.count("sensor_readings", "rejected", rej)


def migrate_state_changes(run):
    n = run.scalar(f"""
        WITH ins AS (
            INSERT INTO state_changes (id, space_id, previous_state, new_state, source, request_id, metadata,
                                       "timestamp")
            SELECT s.id, m.v6_id::uuid, s.previous_state, s.new_state, s.source, s.request_id, s.metadata, s.ts
            FROM stg_state_changes s {F.mapped('spaces', 'm', 's.space_id')}
            WHERE m.v6_id IS NOT NULL
            ON CONFLICT (id) DO NOTHING RETURNING id),
        led AS (
            INSERT INTO {L}.id_map (entity, v5_id, v6_id, action, run_id)
            SELECT 'state_changes', id::text, id::text, 'inserted', %(run)s FROM ins RETURNING 1)
        SELECT count(*) FROM led""")
    run.count("state_changes", "inserted", n)
    rej = run.execute(f"""
        INSERT INTO {L}.rejects (run_id, entity, v5_id, reason)
        SELECT %(run)s, 'state_changes', s.id::text,
               CASE WHEN m.v6_id IS NULL THEN 'its space was not migrated'
                    ELSE 'id ' || s.id || ' is taken in V6 by another state change' END
        FROM stg_state_changes s {F.mapped('spaces', 'm', 's.space_id')}
        WHERE m.v6_id IS NULL OR (EXISTS (SELECT 1 FROM state_changes x WHERE x.id = s.id)
              AND NOT EXISTS (SELECT 1 FROM {L}.id_map i WHERE i.entity = 'state_changes' AND i.v5_id = s.id::text)
              AND NOT EXISTS (SELECT 1 FROM {L}.history_ranges r WHERE r.tbl = 'state_changes'
                              AND s.id > r.lo AND s.id <= r.hi))
        ON CONFLICT DO NOTHING""")
    run.count("state_changes", "rejected", rej)
    if n:
        advance_sequence(run)


READING_COLUMNS = "id, tenant_id, device_id, dev_eui, fcnt, occupied, rssi, snr, raw_payload, received_at, created_at"
STATE_COLUMNS = 'id, space_id, previous_state, new_state, source, request_id, metadata, "timestamp"'


def is_superuser(run):
    return bool(run.scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"))


def values_list(cur, rows, types):
    """A VALUES list literal for a small map shipped into the source SELECT (devices, spaces),
    quoted by psycopg2 for the connection of `cur` (the source)."""
    def lit(v, t):
        return "NULL" if v is None else f"{quote.literal(cur, v)}::{t}"
    return ", ".join("(" + ", ".join(lit(v, t) for v, t in zip(row, types)) + ")" for row in rows)


def bulk_copy(run, table, select_sql, columns, fk_check_sql):
    """Stream mapped V5 rows straight into a V6 table, with rows/s and an ETA in the progress log.

    Bulk path (bulk.py: the table's foreign keys and plain indexes are dropped until the rows
    are in, then built again, which validates the keys set-based): a plain COPY.
    Live path: as a superuser, on a table with no trigger of its own enabled, the per-row FK
    triggers are skipped for this transaction only (session_replication_role = replica would
    also silence the table's own triggers, hence that condition; other sessions are unaffected
    and nothing is locked) and referential integrity is then proven set-based: any violation
    fails the run, which rolls everything back. Otherwise every trigger checks each row as usual.
    """
    deferred = (table not in run.bulk_tables and is_superuser(run) and not bulk.user_triggers(run, table))
    if deferred:
        run.execute("SET LOCAL session_replication_role = replica")
    copy_in = f"COPY {table} ({columns}) FROM STDIN"
    typed = pgcopy.binary_select(run.src, run.cur, select_sql, table, [c.strip().strip('"') for c in columns.split(",")])
    fmt = " WITH (FORMAT binary)" if typed else ""
    run.note(f"COPY ({' '.join((typed or select_sql).split())[:400]}...) TO STDOUT{fmt}  ->  {copy_in}{fmt}")
    meter = pgcopy.Meter(f"{table}: COPY{' (binary)' if typed else ''}", run.progress, run.expected.get(table))
    n = pgcopy.stream(run.src, typed or select_sql, run.cur, copy_in, meter, binary=bool(typed))
    run.progress(meter.done(n))
    if deferred:
        run.execute("SET LOCAL session_replication_role = origin")
        bad = run.scalar(fk_check_sql)
        if bad:
            raise ParkingError(f"{bad} rows loaded into {table} break a foreign key; the run is rolled back")
    return n


def copy_rejects(run, entity, select_sql):
    """Stream reject rows (run_id, entity, v5_id, reason) from the source into the ledger."""
    copy_in = f"COPY {L}.rejects (run_id, entity, v5_id, reason) FROM STDIN"
    run.note(f"COPY ({' '.join(select_sql.split())[:300]}...) TO STDOUT  ->  {copy_in}")
    return pgcopy.stream(run.src, select_sql, run.cur, copy_in, pgcopy.Meter(f"{entity}: rejects", run.progress))


def direct_readings(run, where):
    """New V5 readings (above the watermark) -> V6 in one streamed COPY, mapped on the source."""
    devices = run.rows("SELECT dev_eui, id::text, tenant_id::text FROM sensor_devices")
    occupied = F.occupied("s.occupancy_state")
    device_map = (f"(VALUES {values_list(run.src, devices, ('text', 'uuid', 'uuid'))}) m(eui, device_id, tenant_id)"
                  if devices else "(SELECT NULL::text, NULL::uuid, NULL::uuid WHERE false) m(eui, device_id, tenant_id)")
    select = f"""
        SELECT {F.sequential('sensor_readings', 's.id')}, m.tenant_id, m.device_id, m.eui, s.fcnt, {occupied},
               s.rssi, s.snr, {F.READING_PAYLOAD}, {F.utc_naive('s."timestamp"')}, {F.utc_naive('s."timestamp"')}
        FROM sensor_readings s JOIN {device_map} ON m.eui = upper(s.device_eui)
        WHERE s.fcnt IS NOT NULL AND s."timestamp" IS NOT NULL AND {where}"""
    n = bulk_copy(run, "sensor_readings", select, READING_COLUMNS, """
        SELECT count(*) FROM sensor_readings r
        WHERE NOT EXISTS (SELECT 1 FROM sensor_devices d WHERE d.id = r.device_id)
           OR NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = r.tenant_id)""")
    run.count("sensor_readings", "inserted", n)
    rej = copy_rejects(run, "sensor_readings", f"""
        SELECT {mapping.sql_literal(run.run_id)}::uuid, 'sensor_readings', s.id::text,
               CASE WHEN m.eui IS NULL THEN 'no V6 sensor device with EUI ' || quote_literal(s.device_eui)
                    WHEN s.fcnt IS NULL THEN 'fcnt missing: V6 requires a frame counter'
                    ELSE 'timestamp missing' END
        FROM sensor_readings s LEFT JOIN {device_map} ON m.eui = upper(s.device_eui)
        WHERE (m.eui IS NULL OR s.fcnt IS NULL OR s."timestamp" IS NULL) AND {where}""")
    run.count("sensor_readings", "rejected", rej)


def ids_taken(run, table, lo, hi):
    """How many rows V6's `table` holds with an id in (lo, hi] (state_changes keep V5's ids)."""
    return run.scalar(f"SELECT count(*) FROM {table} WHERE id > %(lo)s AND id <= %(hi)s", {"lo": lo, "hi": hi})


def direct_state_changes(run, where, lo, hi, taken):
    """New V5 state changes -> V6 keeping their ids (one streamed COPY); the id range goes to the ledger.
    taken: V6 holds rows in that id range (ids_taken, counted by the caller before the load): the
    row-by-row path then handles the conflicts."""
    if taken:
        staging.stage(run, "state_changes", {}, where.replace("s.", ""))  # staging's select has no alias
        return migrate_state_changes(run)
    spaces = run.rows(f"SELECT v5_id, v6_id FROM {L}.id_map WHERE entity = 'spaces'")
    space_map = (f"(VALUES {values_list(run.src, spaces, ('uuid', 'uuid'))}) m(v5, v6)" if spaces
                 else "(SELECT NULL::uuid, NULL::uuid WHERE false) m(v5, v6)")
    select = f"""
        SELECT s.id, m.v6, s.previous_state, s.new_state, s.source, s.request_id, s.metadata, s."timestamp"
        FROM state_changes s JOIN {space_map} ON m.v5 = s.space_id WHERE {where}"""
    n = bulk_copy(run, "state_changes", select, STATE_COLUMNS, """
        SELECT count(*) FROM state_changes c WHERE NOT EXISTS (SELECT 1 FROM spaces s WHERE s.id = c.space_id)""")
    run.count("state_changes", "inserted", n)
    if n:
        run.execute(f"INSERT INTO {L}.history_ranges (run_id, tbl, lo, hi) VALUES (%(run)s, 'state_changes', "
                    f"%(lo)s, %(hi)s)", dict(run.params, lo=lo, hi=hi))
    rej = copy_rejects(run, "state_changes", f"""
        SELECT {mapping.sql_literal(run.run_id)}::uuid, 'state_changes', s.id::text, 'its space was not migrated'
        FROM state_changes s LEFT JOIN {space_map} ON m.v5 = s.space_id WHERE m.v5 IS NULL AND {where}""")
    run.count("state_changes", "rejected", rej)
    advance_sequence(run)


def advance_sequence(run):
    """Keep V6's state_changes sequence ahead of the copied ids; rollback puts it back.

    ALTER SEQUENCE ... RESTART is transactional (setval is not): check mode and a failed run
    leave the sequence where it was, and the undo recorded here is exact (last_value, is_called)."""
    seq = run.scalar("SELECT pg_get_serial_sequence('state_changes', 'id')")
    if not seq:
        return
    last, called = run.rows(f"SELECT last_value, is_called FROM {seq}")[0]
    top = run.scalar("SELECT max(id) FROM state_changes")
    if top and top > last:
        undo = f"ALTER SEQUENCE {seq} RESTART WITH {last}" + (f"; SELECT nextval('{seq}')" if called else "")
        run.execute(f"""INSERT INTO {L}.objects (run_id, kind, name, undo_sql)
                        SELECT %(run)s, 'sequence', '{seq}', %(undo)s
                        WHERE NOT EXISTS (SELECT 1 FROM {L}.objects WHERE kind = 'sequence' AND name = '{seq}')""",
                    dict(run.params, undo=undo))
        run.execute(f"ALTER SEQUENCE {seq} RESTART WITH {top}")
        run.execute(f"SELECT nextval('{seq}')")
