"""SQL fragments shared by the migration and the verification gate (defined once).

A fragment with a Python twin in mapping.py or eui.py computes the same value on every input:
tests/integration/test_mapping_sql.py runs each one on PostgreSQL against its twin (add a new
fragment there, or to its NO_TWIN list)."""
from . import mapping
from .eui import sql_normalize

LEDGER = "parking_migrate"


def slugify(col):
    """mapping.slugify in SQL."""
    return (f"coalesce(nullif(trim(both '-' from regexp_replace(lower({col}), '[^a-z0-9]+', '-', 'g')), ''), "
            f"'site')")


def utc_naive(col):
    """timestamptz -> timestamp without time zone in UTC (V6's device/reading columns)."""
    return f"({col} AT TIME ZONE 'UTC')"


def device_status(v5_status, linked):
    """mapping.device_state in SQL: (status, lifecycle_state, enabled) expressions."""
    status = f"(CASE WHEN {linked} THEN 'assigned' ELSE 'unassigned' END)"
    lifecycle = (f"(CASE WHEN {v5_status} = 'decommissioned' THEN 'decommissioned' "
                 f"WHEN {linked} THEN 'operational' ELSE 'provisioned' END)")
    enabled = f"(CASE WHEN {v5_status} = 'decommissioned' THEN false ELSE true END)"
    return status, lifecycle, enabled


def space_state(col):
    return mapping.sql_case(f"upper({col})", mapping.SPACE_STATE, mapping.SPACE_STATE_DEFAULT)


def occupied(col):
    """mapping.occupied in SQL: a V5 occupancy_state (any case) -> V6 occupied, NULL when unknown."""
    return mapping.sql_case(f"upper({col})", mapping.OCCUPANCY, None)


def v5_occupancy_state(col):
    """mapping.v5_occupancy_state in SQL (rollback-3): a V6 occupied boolean -> V5 occupancy_state."""
    return mapping.sql_case(col, mapping.OCCUPANCY_V5, None)


def reservation_status(col, end_col=None, now="%(now)s"):
    """mapping.reservation_status in SQL; with end_col, an ended window (end <= now) is never active."""
    base = mapping.sql_case(f"lower({col})", mapping.RESERVATION_STATUS, mapping.RESERVATION_STATUS_DEFAULT)
    if end_col is None:
        return base
    return reservation_ended(base, end_col, now)


def reservation_ended(status_sql, end_col, now="%(now)s"):
    """The ended-window rule over an already mapped V6 status expression."""
    return (f"(CASE WHEN {status_sql} = {mapping.sql_literal(mapping.RESERVATION_ONGOING)} "
            f"AND {end_col} <= {now}::timestamptz THEN {mapping.sql_literal(mapping.RESERVATION_ENDED_STATUS)} "
            f"ELSE {status_sql} END)")


def membership_rank(col):
    """mapping.MEMBERSHIP_RANK in SQL (0 for an unknown role)."""
    return f"{mapping.sql_case(col, mapping.MEMBERSHIP_RANK, 0)}::int"


def membership_role(col):
    return mapping.sql_case(col, mapping.MEMBERSHIP_ROLE, None)


def history_kept(col, cutoff):
    """mapping.history_kept in SQL over a V5 timestamptz column; `cutoff` a datetime or None."""
    if cutoff is None:
        return "true"
    return f"({col} IS NULL OR {col} >= {mapping.sql_literal(cutoff.isoformat())}::timestamptz)"


def history_expired(col, cutoff):
    """The complement of history_kept for rows with a time: older than the cutoff."""
    if cutoff is None:
        return "false"
    return f"({col} < {mapping.sql_literal(cutoff.isoformat())}::timestamptz)"


def history_kept_v6(col, cutoff):
    """history_kept over V6's naive-UTC received_at."""
    if cutoff is None:
        return "true"
    return f"({col} >= ({mapping.sql_literal(cutoff.isoformat())}::timestamptz AT TIME ZONE 'UTC'))"


SNAPSHOT_MARK = "source_snapshot"  # kept with the watermarks: the V5 snapshot a run read
SOURCE_MARK = "source_database"  # beside it: which database that snapshot's transaction ids belong to

# The cluster (pg_control_system's identifier, readable by any role) and the database's oid:
# transaction ids and xmin compare only within one cluster, and a database restored from a dump
# (phase 4's backup checked by molecule, an operator's copy) has new xmins on every row.
SOURCE_IDENTITY = ("SELECT (SELECT system_identifier FROM pg_control_system())::text || '/' || oid::text "
                   "FROM pg_database WHERE datname = current_database()")


def source_identity(cur):
    """The identity SOURCE_MARK records for the database `cur` reads."""
    cur.execute(SOURCE_IDENTITY)
    return cur.fetchone()[0]


def seen_by(snapshot, ref_xid8):
    """SQL: a V5 row was committed in `snapshot` (pg_current_snapshot() text a migration run recorded).

    Ids come from a sequence before commit, so a row at or below a run's watermark can commit
    after the run read V5 (the next delta's overlap window catches it); the gate compares what the
    run could see. The row's 32-bit xmin becomes a full xid8 with the epoch of ref_xid8 (the
    checking transaction's snapshot xmax, above every row it sees); xmin < 3 is frozen (visible).
    A row written in a subtransaction of a transaction still open at the snapshot counts as seen
    (pg_snapshot lists top-level xids): such a row can still fail the gate, never hide a loss."""
    if not snapshot:
        return "true"
    ref = int(ref_xid8)
    base = (ref >> 32) << 32
    full = f"({base} + xmin::text::bigint)"
    return (f"(xmin::text::bigint < 3 OR pg_visible_in_snapshot((CASE WHEN {full} > {ref} THEN {full} - 4294967296 "
            f"ELSE {full} END)::text::xid8, {mapping.sql_literal(snapshot)}::pg_snapshot))")


def seen_by_run(cur, watermarks):
    """seen_by for the snapshot a run recorded beside its watermarks, with this cursor's snapshot as
    the epoch reference; "true" (every row up to the watermark) when the run recorded none (an
    older ledger) or when `cur` reads another database than the run read (a restored copy: its
    rows' xmins say nothing about the run's snapshot; a copy is checked for everything it holds)."""
    snapshot = (watermarks or {}).get(SNAPSHOT_MARK)
    if not snapshot:
        return "true"
    recorded = (watermarks or {}).get(SOURCE_MARK)
    if recorded and recorded != source_identity(cur):
        return "true"
    cur.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
    return seen_by(snapshot, cur.fetchone()[0])


def eui(col):
    return sql_normalize(col)


def eui_reason(col):
    return (f"(CASE WHEN {col} IS NULL OR btrim({col}) = '' THEN 'missing EUI' "
            f"ELSE 'malformed EUI ' || quote_literal({col}) || ': expected 16 hex digits' END)")


def derived(kind, key_expr):
    return mapping.sql_derived_uuid(kind, key_expr)


def sequential(kind, int_expr):
    return mapping.sql_sequential_uuid(kind, int_expr)


def prev_join(entity, alias="prev", key="s.id"):
    """LEFT JOIN to the id map rows of earlier runs."""
    return (f"LEFT JOIN {LEDGER}.id_map {alias} ON {alias}.entity = '{entity}' "
            f"AND {alias}.v5_id = ({key})::text")


def mapped(entity, alias, key):
    return (f"LEFT JOIN {LEDGER}.id_map {alias} ON {alias}.entity = '{entity}' "
            f"AND {alias}.v5_id = ({key})::text")


READING_MARKER = "parking-migrate"
READING_PAYLOAD = ("json_build_object('migrated_by', '" + READING_MARKER + "', 'v5_id', s.id, "
                   "'occupancy_state', s.occupancy_state, 'battery', s.battery, "
                   "'temperature', s.temperature, 'v5_space_id', s.space_id)::text")
# json_build_object renders '{"migrated_by" : "parking-migrate", ...'
READING_MARKER_LIKE = '{"migrated_by" : "' + READING_MARKER + '"%'
