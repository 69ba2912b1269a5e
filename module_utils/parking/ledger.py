"""The migration ledger: a schema of its own in the target database.

runs          one row per run: id, phase, mode, state, status, watermarks, counts
id_map        V5 id -> V6 id per entity, with the action taken (inserted | matched)
before_images the V6 rows the tool updated, as they were (restored by rollback)
rejects       V5 rows that could not be placed, with the reason
objects       database objects the tool created or altered, with the SQL that undoes them
history_ranges  id ranges of V5 history copied with their ids kept (state_changes), bulk path
row_state     per V6 row the tool keeps in step with V5 (device link, space state, reservation
              status): the V5 value it last carried and the V6 value it last wrote. A re-run
              applies a V5 change only when V6 still holds what the tool wrote (V6's edits win)
decisions     per run, what an operator must see: rows skipped and why, devices placed by rule
              or left unplaced, V6 names kept, conflicts where V6 won

Every run holds a transaction-level advisory lock on the target, so two runs never overlap.
"""
import json
import uuid

from .errors import LockBusy

SCHEMA = "parking_migrate"
# Ordering columns of the ledger are not sequences: nextval is not transactional, so a check-mode
# or failed run would move them. Microseconds of the wall clock order the rows of a run instead.
ORDINAL = "((extract(epoch FROM clock_timestamp()) * 1000000)::bigint)"
LOCK_KEY_SQL = "hashtext('parking-migrate')"

DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.runs (
    run_id      uuid PRIMARY KEY,
    phase       text NOT NULL,
    mode        text NOT NULL,
    state       text NOT NULL,
    status      text NOT NULL,
    check_mode  boolean NOT NULL DEFAULT false,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    watermarks  jsonb NOT NULL DEFAULT '{{}}',
    counts      jsonb NOT NULL DEFAULT '{{}}',
    message     text
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.id_map (
    entity    text NOT NULL,
    v5_id     text NOT NULL,
    v6_id     text NOT NULL,
    action    text NOT NULL CHECK (action IN ('inserted', 'matched')),
    run_id    uuid NOT NULL,
    PRIMARY KEY (entity, v5_id)
);
CREATE INDEX IF NOT EXISTS id_map_v6 ON {SCHEMA}.id_map (entity, v6_id);
CREATE TABLE IF NOT EXISTS {SCHEMA}.before_images (
    seq      bigint NOT NULL DEFAULT {ORDINAL},
    run_id   uuid NOT NULL,
    tbl      text NOT NULL,
    row_id   text NOT NULL,
    before   jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.rejects (
    run_id   uuid NOT NULL,
    entity   text NOT NULL,
    v5_id    text NOT NULL,
    reason   text NOT NULL,
    detail   jsonb,
    PRIMARY KEY (run_id, entity, v5_id)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.history_ranges (
    run_id   uuid NOT NULL,
    tbl      text NOT NULL,
    lo       bigint NOT NULL,
    hi       bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.row_state (
    entity   text NOT NULL,
    v6_id    text NOT NULL,
    v5_sig   text,
    v6_sig   text,
    run_id   uuid NOT NULL,
    PRIMARY KEY (entity, v6_id)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.decisions (
    seq      bigint NOT NULL DEFAULT {ORDINAL},
    run_id   uuid NOT NULL,
    entity   text NOT NULL,
    v5_id    text,
    decision text NOT NULL,
    detail   text NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_run ON {SCHEMA}.decisions (run_id);
CREATE TABLE IF NOT EXISTS {SCHEMA}.objects (
    seq      bigint NOT NULL DEFAULT {ORDINAL},
    run_id   uuid NOT NULL,
    kind     text NOT NULL,
    name     text NOT NULL,
    undo_sql text NOT NULL
);
"""


def ensure(cur):
    cur.execute(DDL)


def lock(cur):
    """Take the run lock for the current transaction or raise LockBusy."""
    cur.execute(f"SELECT pg_try_advisory_xact_lock({LOCK_KEY_SQL})")
    if not cur.fetchone()[0]:
        cur.execute(f"SELECT pid, application_name, now() - xact_start FROM pg_stat_activity a "
                    f"JOIN pg_locks l USING (pid) WHERE l.locktype = 'advisory' "
                    f"AND l.objid = ({LOCK_KEY_SQL})::oid LIMIT 1")
        holder = cur.fetchone()
        who = f" (pid {holder[0]}, {holder[1]}, running for {holder[2]})" if holder else ""
        raise LockBusy(f"another parking-migrate run holds the migration lock{who}; "
                       "wait for it to finish, or stop it, then run again")


def new_run_id():
    return str(uuid.uuid4())


def start(cur, run_id, phase, mode, state, check_mode):
    cur.execute(f"INSERT INTO {SCHEMA}.runs (run_id, phase, mode, state, status, check_mode) "
                "VALUES (%s, %s, %s, %s, 'running', %s)", (run_id, phase, mode, state, check_mode))


def finish(cur, run_id, status, counts, watermarks, message=None):
    cur.execute(f"UPDATE {SCHEMA}.runs SET status = %s, finished_at = clock_timestamp(), counts = %s, "
                "watermarks = %s, message = %s WHERE run_id = %s",
                (status, json.dumps(counts, default=str), json.dumps(watermarks, default=str), message, run_id))


def record_failure(conn, run_id, phase, mode, state, message):
    """After a rollback: record the failed run on its own (autocommit) so the ledger shows it."""
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.runs",))
            if cur.fetchone()[0] is None:
                return
            cur.execute(f"INSERT INTO {SCHEMA}.runs (run_id, phase, mode, state, status, finished_at, message) "
                        "VALUES (%s, %s, %s, %s, 'failed', clock_timestamp(), %s) ON CONFLICT (run_id) DO NOTHING",
                        (run_id, phase, mode, state, message[:4000]))
        conn.commit()
    except Exception:  # the ledger is best effort after a failure; the error itself is reported
        conn.rollback()


def last_watermarks(cur, phase):
    """Watermarks of the last successful non-check run of a phase ({} when none)."""
    cur.execute(f"SELECT watermarks FROM {SCHEMA}.runs WHERE phase = %s AND status = 'succeeded' "
                "AND NOT check_mode AND state = 'present' ORDER BY finished_at DESC LIMIT 1", (phase,))
    row = cur.fetchone()
    return row[0] if row else {}


def exists(cur):
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.runs",))
    return cur.fetchone()[0]
