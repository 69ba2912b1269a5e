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
backups       phase 4: one row per verified dump (database, path, sha256, fingerprint, retention)
decommission  phase 4: one row per state change (done -> rolled_back), containers removed
cutover_state phase 3: started, switched, webhook_original (the ChirpStack URLs it replaced)
ledger_version  the versions below that were applied

All the ledger's DDL is here, as numbered versions (`VERSIONS`): `ensure` applies the ones the
target lacks. A released version is never edited; a change is a new version appended.

Every run that writes holds a transaction-level advisory lock on the target, taken before
anything is created (`begin`), so two runs never overlap, not even on the ledger's creation.
"""
import json
import uuid

from .errors import LockBusy

SCHEMA = "parking_migrate"
# Ordering columns of the ledger are not sequences: nextval is not transactional, so a check-mode
# or failed run would move them. Microseconds of the wall clock order the rows of a run instead.
ORDINAL = "((extract(epoch FROM clock_timestamp()) * 1000000)::bigint)"
LOCK_KEY_SQL = "hashtext('parking-migrate')"

_V1 = f"""
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
CREATE TABLE IF NOT EXISTS {SCHEMA}.backups (
    id              bigserial PRIMARY KEY,
    db              text NOT NULL,
    path            text NOT NULL,
    sha256          text NOT NULL UNIQUE,
    size_bytes      bigint NOT NULL,
    tables          integer NOT NULL,
    rows            bigint NOT NULL,
    fingerprint     text NOT NULL,
    table_checksums jsonb NOT NULL,
    verified_at     timestamptz NOT NULL DEFAULT now(),
    retention_until date NOT NULL
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.decommission (
    id              bigserial PRIMARY KEY,
    status          text NOT NULL CHECK (status IN ('done', 'rolled_back')),
    databases       text[] NOT NULL,
    backup_ids      bigint[] NOT NULL,
    containers      text[] NOT NULL,
    containers_file text,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.cutover_state (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""

# Gateway imports are recorded like every other row phase 1 writes: an inserted gateway in id_map
# (entity 'gateways', keyed <gateway id>:<row id>, as V6 may hold a gateway once per tenant), an
# updated one's before-image in before_images. Ledgers written before this version kept them in a
# table of their own.
_V2 = f"""
DO $$
BEGIN
  IF to_regclass('{SCHEMA}.gateway_import_ledger') IS NOT NULL THEN
    INSERT INTO {SCHEMA}.id_map (entity, v5_id, v6_id, action, run_id)
    SELECT 'gateways', upper(gateway_id) || ':' || gateway_row_id, gateway_row_id, 'inserted', run_id
    FROM {SCHEMA}.gateway_import_ledger WHERE action = 'inserted'
    ON CONFLICT (entity, v5_id) DO NOTHING;
    INSERT INTO {SCHEMA}.before_images (run_id, tbl, row_id, before)
    SELECT run_id, 'gateways', gateway_row_id::text, before
    FROM {SCHEMA}.gateway_import_ledger WHERE action = 'updated' ORDER BY imported_at;
    DROP TABLE {SCHEMA}.gateway_import_ledger;
  END IF;
END $$;
"""

VERSIONS = (_V1, _V2)
_VERSION_TABLE = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.ledger_version (
    version    integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


def ensure(cur):
    """Bring the ledger to the current version; the caller holds the lock (`begin`).
    Returns the versions applied (empty when the ledger was current)."""
    cur.execute(_VERSION_TABLE)
    cur.execute(f"SELECT coalesce(max(version), 0) FROM {SCHEMA}.ledger_version")
    current = cur.fetchone()[0]
    applied = []
    for number, ddl in enumerate(VERSIONS, start=1):
        if number > current:
            cur.execute(ddl)
            cur.execute(f"INSERT INTO {SCHEMA}.ledger_version (version) VALUES (%s)", (number,))
            applied.append(number)
    return applied


def begin(cur):
    """What every writing run does first: the lock, then the ledger (created or brought up to date)."""
    lock(cur)
    return ensure(cur)


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


# --------------------------------------------------------------------------------------------
# Phase 3's state (cutover_state): read by anyone, written under the lock
# --------------------------------------------------------------------------------------------

CUTOVER_KEYS = ("started", "switched", "webhook_original")


def cutover_state(cur):
    """{key: value} of the cutover's recorded state; {} when nothing (or no ledger) is recorded."""
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.cutover_state",))
    if not cur.fetchone()[0]:
        return {}
    cur.execute(f"SELECT key, value FROM {SCHEMA}.cutover_state ORDER BY key")
    return {key: value for key, value in cur.fetchall()}


def record_cutover(cur, key, value=None, replace=False):
    """Record `key` (value: JSON-safe data; default {"at": the transaction's time}). The first
    record is kept unless replace: a retried cutover keeps its first start. True if written."""
    begin(cur)
    payload = json.dumps(value, default=str) if value is not None else None
    conflict = "DO UPDATE SET value = EXCLUDED.value, updated_at = now() " \
               f"WHERE {SCHEMA}.cutover_state.value IS DISTINCT FROM EXCLUDED.value" if replace else "DO NOTHING"
    cur.execute(f"INSERT INTO {SCHEMA}.cutover_state (key, value) "
                f"VALUES (%s, coalesce(%s::jsonb, jsonb_build_object('at', now()))) ON CONFLICT (key) {conflict}",
                (key, payload))
    return cur.rowcount > 0


def clear_cutover(cur, keys=None):
    """Remove the given keys (all when None); returns how many were recorded."""
    if not cutover_state(cur):
        return 0
    begin(cur)
    if keys is None:
        cur.execute(f"DELETE FROM {SCHEMA}.cutover_state")
    else:
        cur.execute(f"DELETE FROM {SCHEMA}.cutover_state WHERE key = ANY(%s)", (list(keys),))
    return cur.rowcount
