"""rollback-3: what V6 received after the cutover goes back to V5, so nothing is lost.

Reads V6 (one snapshot) and writes V5 in one transaction (check mode rolls it back):
  uplinks        V6 readings that are not migrated V5 rows, received since the cutover
                 -> V5 sensor_readings (V5's dedup key: nothing twice), devices' last_seen
  space state    V6 spaces changed since the cutover -> V5 spaces.state (+ a state_changes row)
  reservations   created in V6 -> V5 (V5's overlap exclusion decides; conflicts are reported);
                 migrated ones whose status changed in V6 -> V5 status
  users          created in V6 (with their memberships) -> V5
  orphans        V6 orphan devices seen since the cutover -> V5 orphan_devices
The V5<->V6 id map comes from the phase-1 ledger in V6. Every statement is idempotent, so a
second run writes nothing.
"""
import time

from . import ledger, mapping, pgcopy
from .sqlfrag import LEDGER as L, READING_MARKER_LIKE, v5_occupancy_state
from .statements import Statements

# V6 reservation status -> V5 (V5's CHECK allows both vocabularies; use V5's current one)
RESERVATION_STATUS_V5 = {"active": "confirmed", "cancelled": "cancelled", "completed": "expired",
                         "no_show": "no_show"}
SPACE_STATE_V5 = {"free": "FREE", "occupied": "OCCUPIED", "reserved": "RESERVED", "maintenance": "MAINTENANCE"}


class Sync(Statements):
    """Statements on V5 (``cur``, recorded in ``queries``), reads of V6 on ``src``, the counts."""

    def __init__(self, v6_conn, v5_conn):
        super().__init__(v5_conn)
        self.src = v6_conn.cursor()
        self.counts = {}

    def count(self, entity, key, n):
        self.counts.setdefault(entity, {})[key] = self.counts.get(entity, {}).get(key, 0) + n

    def stage(self, name, ddl, select_sql, params=None):
        """Stream a V6 SELECT into a TEMP table of the V5 transaction."""
        self.execute(f"CREATE TEMP TABLE {name} ({ddl}) ON COMMIT DROP")
        sql = self.src.mogrify(select_sql, params).decode() if params else select_sql
        self.note(f"COPY ({' '.join(sql.split())[:300]}) TO STDOUT -> COPY {name} FROM STDIN")
        return pgcopy.stream(self.src, sql, self.cur, f"COPY {name} FROM STDIN")


def backsync(v6_conn, v5_conn, since, probe_dev_eui=None):
    """Copy what V6 received since `since` (timestamptz text) back to V5. Returns the result.

    V5 is live while this runs (an automatic revert runs it with uplinks arriving): everything is
    first streamed from V6 into TEMP tables, which locks no V5 row; then the writes run in a short
    burst, those that lock rows V5's uplink handler also updates last, in its order (the device,
    then its space: the two cannot deadlock), and the caller commits at once. So a V5 request waits for at most that burst, never for the
    COPYs.
    """
    t0 = time.time()
    v6_conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    s = Sync(v6_conn, v5_conn)
    # the migration's one lock, in V5's database (advisory locks are per database): two copies
    # back never interleave their writes
    ledger.lock(s.cur)
    params = {"since": since, "probe": (probe_dev_eui or "").upper()}

    # 1. read V6 (one snapshot) into TEMP tables of the V5 transaction
    s.stage("bs_map", "entity text, v5_id text, v6_id text",
            f"SELECT entity, v5_id, v6_id FROM {L}.id_map WHERE entity IN ('tenants', 'users', 'spaces', 'sites')")
    # uplinks: V6-native readings (not migrated V5 rows) since the cutover, the probe device's too:
    # it is a real sensor, its real uplinks must reach V5 (a smoke probe reading is one more row)
    s.stage("bs_readings", "dev_eui text, fcnt integer, occupied boolean, rssi double precision, "
            "snr double precision, received_at timestamp",
            "SELECT dev_eui, fcnt, occupied, rssi, snr, received_at FROM sensor_readings "
            "WHERE raw_payload NOT LIKE %(like)s AND received_at >= (%(since)s::timestamptz AT TIME ZONE 'UTC')",
            dict(params, like=READING_MARKER_LIKE))
    # space state changed in V6 since the cutover
    s.stage("bs_spaces", "v6_id text, current_state text, changed_at timestamptz",
            "SELECT id::text, current_state, coalesce(state_changed_at AT TIME ZONE 'UTC', updated_at) FROM spaces "
            "WHERE coalesce(state_changed_at AT TIME ZONE 'UTC', updated_at) >= %(since)s::timestamptz", params)
    # users created in V6 (not migrated from V5), and their memberships
    s.stage("bs_users", "id uuid, email text, name text, hashed_password text, is_active boolean, created_at timestamptz",
            f"SELECT u.id, lower(u.email), u.name, u.hashed_password, u.is_active, u.created_at FROM users u "
            f"WHERE u.created_at >= %(since)s::timestamptz AND NOT EXISTS (SELECT 1 FROM {L}.id_map m "
            f"WHERE m.entity = 'users' AND m.v6_id = u.id::text)", params)
    s.stage("bs_memberships", "user_id uuid, tenant_v6 text, role text, is_active boolean",
            "SELECT m.user_id, m.tenant_id::text, m.role, m.is_active FROM user_memberships m "
            "JOIN users u ON u.id = m.user_id WHERE u.created_at >= %(since)s::timestamptz", params)
    # reservations: new in V6, and migrated ones changed in V6
    s.stage("bs_reservations", "id uuid, space_v6 text, start_time timestamptz, end_time timestamptz, "
            "user_email text, user_phone text, status text, request_id text, created_at timestamptz, "
            "updated_at timestamptz, migrated_v5_id text",
            f"SELECT r.id, r.space_id::text, r.start_time, r.end_time, coalesce(r.user_email, u.email), r.user_phone, "
            f"r.status, r.metadata->>'request_id', r.created_at, r.updated_at, m.v5_id "
            f"FROM reservations r LEFT JOIN users u ON u.id = r.user_id "
            f"LEFT JOIN {L}.id_map m ON m.entity = 'reservations' AND m.v6_id = r.id::text "
            f"WHERE r.created_at >= %(since)s::timestamptz OR r.updated_at >= %(since)s::timestamptz", params)
    # orphans V6 saw since the cutover
    s.stage("bs_orphans", "dev_eui text, first_seen timestamp, last_seen timestamp, message_count integer",
            "SELECT dev_eui, first_seen, last_seen, message_count FROM orphan_devices "
            "WHERE last_seen >= (%(since)s::timestamptz AT TIME ZONE 'UTC') AND dev_eui <> %(probe)s", params)
    v6_conn.rollback()
    # each reading's V5 space, looked up once per EUI rather than once per reading
    s.execute("""
        CREATE TEMP TABLE bs_reading_spaces ON COMMIT DROP AS
        SELECT DISTINCT ON (e.dev_eui) e.dev_eui, sp.id AS space_id
        FROM (SELECT DISTINCT dev_eui FROM bs_readings) e
        JOIN spaces sp ON upper(sp.sensor_eui) = e.dev_eui AND sp.deleted_at IS NULL
        ORDER BY e.dev_eui, sp.id""")
    state = mapping.sql_case("lower(b.current_state)", SPACE_STATE_V5, None)
    s.execute(f"""
        CREATE TEMP TABLE bs_space_changes ON COMMIT DROP AS
        SELECT sp.id, {state} AS new_state, b.changed_at
        FROM bs_spaces b JOIN bs_map m ON m.entity = 'spaces' AND m.v6_id = b.v6_id
        JOIN spaces sp ON sp.id = m.v5_id::uuid
        WHERE {state} IS NOT NULL AND sp.state IS DISTINCT FROM {state}""")

    # 2. write V5: new rows first (they lock nothing V5's handlers update) ...
    s.count("sensor_readings", "inserted", s.execute(f"""
        INSERT INTO sensor_readings (device_eui, space_id, occupancy_state, rssi, snr, "timestamp", fcnt)
        SELECT r.dev_eui, rs.space_id, {v5_occupancy_state("r.occupied")},
               round(r.rssi)::integer, r.snr, r.received_at AT TIME ZONE 'UTC', r.fcnt
        FROM bs_readings r LEFT JOIN bs_reading_spaces rs ON rs.dev_eui = r.dev_eui
        ON CONFLICT (tenant_id, device_eui, fcnt) WHERE fcnt IS NOT NULL DO NOTHING"""))
    s.count("users", "inserted", s.execute("""
        INSERT INTO users (id, email, name, password_hash, is_active, created_at)
        SELECT id, email, name, hashed_password, coalesce(is_active, true), created_at FROM bs_users
        ON CONFLICT DO NOTHING"""))
    s.count("user_memberships", "inserted", s.execute("""
        INSERT INTO user_memberships (user_id, tenant_id, role, is_active)
        SELECT b.user_id, coalesce(t.v5_id::uuid, b.tenant_v6::uuid), b.role, coalesce(b.is_active, true)
        FROM bs_memberships b JOIN users u ON u.id = b.user_id
        LEFT JOIN bs_map t ON t.entity = 'tenants' AND t.v6_id = b.tenant_v6
        WHERE EXISTS (SELECT 1 FROM tenants x WHERE x.id = coalesce(t.v5_id::uuid, b.tenant_v6::uuid))
        ON CONFLICT DO NOTHING"""))
    status = mapping.sql_case("b.status", RESERVATION_STATUS_V5, "expired")
    s.count("reservations", "inserted", s.execute(f"""
        INSERT INTO reservations (id, space_id, start_time, end_time, user_email, user_phone, status, metadata,
                                  created_at, updated_at, request_id, tenant_id)
        SELECT b.id, sp.id, b.start_time, b.end_time, b.user_email, b.user_phone, {status},
               '{{"synced_from": "v6", "by": "parking-migrate"}}', b.created_at, b.updated_at,
               CASE WHEN b.request_id ~ '^[0-9a-fA-F-]{{36}}$' THEN b.request_id::uuid ELSE gen_random_uuid() END,
               st.tenant_id
        FROM bs_reservations b JOIN bs_map m ON m.entity = 'spaces' AND m.v6_id = b.space_v6
        JOIN spaces sp ON sp.id = m.v5_id::uuid JOIN sites st ON st.id = sp.site_id
        WHERE b.migrated_v5_id IS NULL
        ON CONFLICT DO NOTHING"""))
    s.count("reservations", "not_synced_conflict", s.scalar(
        "SELECT count(*) FROM bs_reservations b WHERE b.migrated_v5_id IS NULL AND NOT EXISTS "
        "(SELECT 1 FROM reservations r WHERE r.id = b.id)"))
    s.count("orphan_devices", "upserted", s.execute("""
        INSERT INTO orphan_devices (dev_eui, first_seen, last_seen, uplink_count)
        SELECT dev_eui, first_seen AT TIME ZONE 'UTC', last_seen AT TIME ZONE 'UTC', message_count FROM bs_orphans o
        WHERE NOT EXISTS (SELECT 1 FROM sensor_devices d WHERE upper(d.dev_eui) = o.dev_eui)
          AND NOT EXISTS (SELECT 1 FROM display_devices d WHERE upper(d.dev_eui) = o.dev_eui)
        ON CONFLICT (dev_eui) DO UPDATE SET last_seen = EXCLUDED.last_seen
        WHERE orphan_devices.last_seen < EXCLUDED.last_seen"""))

    # ... then the updates of rows V5's handlers also update, held only until the commit that follows
    s.count("reservations", "status_synced", s.execute(f"""
        UPDATE reservations r SET status = {status}
        FROM bs_reservations b WHERE b.migrated_v5_id IS NOT NULL AND r.id = b.migrated_v5_id::uuid
          AND r.status IS DISTINCT FROM {status}
          AND NOT (r.status IN ('pending', 'confirmed', 'active') AND {status} = 'confirmed')"""))
    # devices before spaces, in the order V5's uplink handler locks them (the two cannot deadlock);
    # exact EUI match on purpose: updating a legacy lowercase row would fire V5's uppercase
    # trigger and rewrite its EUI; V5 never matched uplinks to such a row anyway
    s.count("sensor_devices", "last_seen_synced", s.execute("""
        UPDATE sensor_devices d SET last_seen_at = x.seen
        FROM (SELECT dev_eui, max(received_at) AT TIME ZONE 'UTC' AS seen FROM bs_readings GROUP BY 1) x
        WHERE d.dev_eui = x.dev_eui AND x.seen > coalesce(d.last_seen_at, '-infinity')"""))
    # previous_state is read by the UPDATE itself, so it is the state this transaction replaced
    s.count("spaces", "state_synced", s.execute("""
        WITH changed AS (
            UPDATE spaces sp SET state = c.new_state
            FROM bs_space_changes c, spaces old
            WHERE sp.id = c.id AND old.id = c.id AND sp.state IS DISTINCT FROM c.new_state
            RETURNING sp.id, old.state AS previous_state, c.new_state, c.changed_at)
        INSERT INTO state_changes (space_id, previous_state, new_state, source, metadata, "timestamp")
        SELECT id, previous_state, new_state, 'system', '{"synced_from": "v6", "by": "parking-migrate"}', changed_at
        FROM changed"""))
    changed = any(v for c in s.counts.values() for k, v in c.items() if k != "not_synced_conflict")
    return {"changed": changed, "counts": s.counts, "since": since, "executed_queries": s.queries,
            "seconds": round(time.time() - t0, 3)}
