"""Every seeded edge case, checked in the lab databases themselves (one test, one assertion each).

The tests never read lab_meta.edge_cases to decide what holds; they query the data. Run against a
seeded server: PARKING_LAB_PG_PORT=55439 pytest tests/lab/test_seed_edge_cases.py
"""
import os

import pytest

from labdb import query, scalar

LIVE_SENSORS = ("58A0CB00001196F3", "58A0CB0000115B4E", "58A0CB000011590D")
PLATFORM_TENANT = "00000000-0000-0000-0000-000000000000"
DEFAULT_TENANT = "00000000-0000-0000-0000-000000000001"
RESERVATION_STATUSES = ("pending", "confirmed", "cancelled", "expired",
                        "active", "completed", "no_show")
V5_FORCED_RLS = {"tenants", "sites", "spaces", "reservations", "api_keys", "webhook_secrets",
                 "sensor_readings", "audit_log", "state_changes", "actuations"}
INTEGRATION_URL = os.environ.get("PARKING_LAB_INTEGRATION_URL", "http://api:8000/api/v1/uplink")

# A registry device and every space that links it, by EUI (any case) or by id.
V5_SENSOR_LINKS = """
SELECT d.id, d.dev_eui, d.status, d.enabled, s.id AS space_id, s.deleted_at,
       (s.sensor_device_id = d.id) AS by_fk,
       (upper(s.sensor_eui) = upper(d.dev_eui)) AS by_eui
FROM sensor_devices d
LEFT JOIN spaces s ON upper(s.sensor_eui) = upper(d.dev_eui) OR s.sensor_device_id = d.id
"""
V5_DISPLAY_LINKS = """
SELECT d.id, d.dev_eui, d.status, s.id AS space_id, s.deleted_at
FROM display_devices d
LEFT JOIN spaces s ON (d.dev_eui <> '' AND upper(s.display_eui) = upper(d.dev_eui))
                   OR s.display_device_id = d.id
"""
SLUG = "trim(both '-' from regexp_replace(lower({col}), '[^a-z0-9]+', '-', 'g'))"


@pytest.fixture
def v5(lab_db):
    return lab_db("parking_v5")


@pytest.fixture
def v6(lab_db):
    return lab_db("parking_v6")


@pytest.fixture
def cs(lab_db):
    return lab_db("chirpstack")


@pytest.fixture
def v4(lab_db):
    return lab_db("parking_platform")


def rows_as_set(conn, sql, params=None):
    return set(query(conn, sql, params))


# --- tenants, users, memberships -------------------------------------------------------------

def test_tenant_slug_collision(v5, v6):
    v5_tenants = rows_as_set(v5, "SELECT slug, id FROM tenants")
    v6_ids_by_slug = dict(query(v6, "SELECT slug, id FROM tenants"))
    clashes = [slug for slug, tid in v5_tenants
               if slug in v6_ids_by_slug and v6_ids_by_slug[slug] != tid]
    assert clashes, "no V5 tenant reuses a V6 slug under another id"


def test_shared_tenant_ids(v5, v6):
    sql = "SELECT id::text FROM tenants"
    shared = rows_as_set(v5, sql) & rows_as_set(v6, sql)
    assert {(PLATFORM_TENANT,), (DEFAULT_TENANT,)} <= shared


def test_inactive_tenant(v5):
    assert scalar(v5, "SELECT count(*) FROM tenants WHERE is_active IS FALSE") >= 1


def test_user_email_case_collision(v5, v6):
    v5_emails = {e for (e,) in query(v5, "SELECT email FROM users")}
    v6_emails = {e for (e,) in query(v6, "SELECT email FROM users")}
    pairs = [(a, b) for a in v5_emails for b in v6_emails if a.lower() == b.lower() and a != b]
    assert pairs, "no email differs only in case between V5 and V6"


def test_user_id_collision_other_email(v5, v6):
    v6_users = dict(query(v6, "SELECT id, lower(email) FROM users"))
    clashes = [uid for uid, email in query(v5, "SELECT id, lower(email) FROM users")
               if uid in v6_users and v6_users[uid] != email]
    assert clashes, "no V5 user id is used in V6 by another email"


def test_platform_admin_membership(v5):
    assert scalar(v5, "SELECT count(*) FROM user_memberships WHERE role = 'platform_admin' "
                      "AND tenant_id = %s", (PLATFORM_TENANT,)) >= 1


# --- sites -----------------------------------------------------------------------------------

def test_site_same_id(v5, v6):
    sql = "SELECT id, tenant_id FROM sites"
    shared = rows_as_set(v5, sql) & rows_as_set(v6, sql)
    assert shared


def test_site_same_tenant_name_other_id(v5, v6):
    v6_sites = {(t, n): i for i, t, n in query(v6, "SELECT id, tenant_id, name FROM sites")}
    clashes = [(t, n) for i, t, n in query(v5, "SELECT id, tenant_id, name FROM sites")
               if (t, n) in v6_sites and v6_sites[(t, n)] != i]
    assert clashes


def test_site_names_same_slug(v5):
    sql = (f"SELECT tenant_id, {SLUG.format(col='name')} FROM sites "
           f"GROUP BY 1, 2 HAVING count(DISTINCT name) > 1")
    assert query(v5, sql)


# --- spaces ----------------------------------------------------------------------------------

def test_seed_spaces_collision(v5, v6):
    sql = ("SELECT tenant_id, site_id, code, id FROM spaces "
           "WHERE deleted_at IS NULL AND code IN ('A001', 'A002', 'B001')")
    v6_ids = {(t, s, c): i for t, s, c, i in query(v6, sql)}
    clashes = {c for t, s, c, i in query(v5, sql) if (t, s, c) in v6_ids and v6_ids[(t, s, c)] != i}
    assert clashes == {"A001", "A002", "B001"}


def test_soft_deleted_spaces(v5):
    assert scalar(v5, "SELECT count(*) FROM spaces WHERE deleted_at IS NOT NULL") >= 1


def test_null_euis(v5):
    assert scalar(v5, "SELECT count(*) FROM spaces WHERE deleted_at IS NULL "
                      "AND sensor_eui IS NULL AND display_eui IS NULL") >= 1


# --- device links ----------------------------------------------------------------------------

def test_device_only_deleted_space(v5):
    sql = (f"SELECT id FROM ({V5_SENSOR_LINKS}) l GROUP BY id "
           f"HAVING count(space_id) > 0 AND bool_and(deleted_at IS NOT NULL)")
    assert query(v5, sql)


def test_orphan_device_without_space(v5):
    sql = (f"SELECT id FROM ({V5_SENSOR_LINKS}) l WHERE status = 'orphan' "
           f"GROUP BY id HAVING count(space_id) = 0")
    assert query(v5, sql)


def test_active_device_without_space(v5):
    sql = (f"SELECT id FROM ({V5_SENSOR_LINKS}) l WHERE status = 'active' "
           f"GROUP BY id HAVING count(space_id) = 0")
    assert query(v5, sql)


def test_display_in_live_and_deleted_space(v5):
    sql = (f"SELECT id FROM ({V5_DISPLAY_LINKS}) l GROUP BY id "
           f"HAVING bool_or(space_id IS NOT NULL AND deleted_at IS NULL) "
           f"AND bool_or(deleted_at IS NOT NULL)")
    assert query(v5, sql)


def test_sensor_linked_by_fk_and_by_eui(v5):
    sql = ("SELECT d.id FROM sensor_devices d "
           "JOIN spaces a ON a.sensor_device_id = d.id "
           "JOIN spaces b ON upper(b.sensor_eui) = upper(d.dev_eui) AND b.id <> a.id")
    assert query(v5, sql)


def test_space_fk_link(v5):
    assert scalar(v5, "SELECT count(*) FROM spaces WHERE sensor_device_id IS NOT NULL") >= 1


def test_orphan_but_assigned(v5):
    sql = (f"SELECT id FROM ({V5_SENSOR_LINKS}) l "
           f"WHERE status = 'orphan' AND space_id IS NOT NULL AND deleted_at IS NULL")
    assert query(v5, sql)


def test_decommissioned_still_linked(v5):
    sql = (f"SELECT id FROM ({V5_SENSOR_LINKS}) l "
           f"WHERE status = 'decommissioned' AND space_id IS NOT NULL AND deleted_at IS NULL")
    assert query(v5, sql)


def test_live_sensors_linked_by_eui_only(v5):
    sql = ("SELECT count(DISTINCT sp.sensor_eui) "
           "FROM spaces sp JOIN sites si ON si.id = sp.site_id "
           "WHERE sp.sensor_eui = ANY(%s) AND sp.sensor_device_id IS NULL "
           "AND sp.deleted_at IS NULL AND si.tenant_id NOT IN (%s, %s)")
    assert scalar(v5, sql, (list(LIVE_SENSORS), PLATFORM_TENANT, DEFAULT_TENANT)) == 3


# --- EUI formats -----------------------------------------------------------------------------

def test_lowercase_registry_eui(v5):
    sql = ("SELECT d.dev_eui FROM sensor_devices d "
           "JOIN spaces s ON s.sensor_eui = upper(d.dev_eui) WHERE d.dev_eui <> upper(d.dev_eui)")
    assert query(v5, sql)


def test_lowercase_euis_in_history(v5):
    readings = scalar(v5, "SELECT count(*) FROM sensor_readings "
                          "WHERE device_eui <> upper(device_eui)")
    orphans = scalar(v5, "SELECT count(*) FROM orphan_devices WHERE dev_eui <> upper(dev_eui)")
    assert readings > 0 and orphans > 0


def test_malformed_eui(v5):
    sql = ("SELECT dev_eui FROM sensor_devices WHERE dev_eui <> '' "
           "AND dev_eui !~ '^[0-9A-Fa-f]{16}$' "
           "AND dev_eui IN (SELECT dev_eui FROM orphan_devices)")
    assert query(v5, sql)


def test_display_without_eui(v5):
    sql = ("SELECT d.id FROM display_devices d JOIN spaces s ON s.display_device_id = d.id "
           "WHERE d.dev_eui = ''")
    assert query(v5, sql)


def test_dual_role_kuando(v5):
    sql = ("SELECT s.dev_eui FROM sensor_devices s JOIN display_devices d ON d.dev_eui = s.dev_eui "
           "WHERE s.dev_eui LIKE '202020%'")
    assert query(v5, sql)


# --- reservations and history ----------------------------------------------------------------

def test_reservations_every_status(v5):
    anchor = scalar(v5, "SELECT anchor FROM lab_meta.seed_state")
    seen = rows_as_set(v5, "SELECT status, start_time > %s::date FROM reservations", (anchor,))
    wanted = {(status, future) for status in RESERVATION_STATUSES for future in (True, False)}
    assert wanted <= seen


def test_reservation_on_deleted_space(v5):
    assert scalar(v5, "SELECT count(*) FROM reservations r JOIN spaces s ON s.id = r.space_id "
                      "WHERE s.deleted_at IS NOT NULL") >= 1


def test_future_reservation_on_deleted_space(v5):
    anchor = scalar(v5, "SELECT anchor FROM lab_meta.seed_state")
    assert scalar(v5, "SELECT count(*) FROM reservations r JOIN spaces s ON s.id = r.space_id "
                      "WHERE s.deleted_at IS NOT NULL AND r.status IN ('pending', 'confirmed') "
                      "AND r.start_time > %s::date", (anchor,)) >= 1


def test_display_on_live_spaces_of_two_tenants(v5):
    assert query(v5, f"""SELECT l.id FROM ({V5_DISPLAY_LINKS}) l JOIN spaces sp ON sp.id = l.space_id
                         JOIN sites st ON st.id = sp.site_id WHERE l.deleted_at IS NULL
                         GROUP BY l.id HAVING count(DISTINCT st.tenant_id) > 1""")


def test_readings_null_fcnt(v5):
    assert scalar(v5, "SELECT count(*) FROM sensor_readings WHERE fcnt IS NULL") >= 1


def test_readings_fcnt_reset(v5):
    # A later reading with a lower fcnt than the one before it (robust to live uplinks).
    sql = ("SELECT 1 FROM (SELECT fcnt, lag(fcnt) OVER (PARTITION BY device_eui "
           "ORDER BY \"timestamp\", id) AS prev FROM sensor_readings WHERE fcnt IS NOT NULL) r "
           "WHERE r.prev > r.fcnt LIMIT 1")
    assert query(v5, sql)


def test_readings_unknown_eui(v5):
    sql = ("SELECT DISTINCT upper(r.device_eui) FROM sensor_readings r "
           "WHERE NOT EXISTS (SELECT 1 FROM sensor_devices d "
           "                  WHERE upper(d.dev_eui) = upper(r.device_eui)) "
           "AND NOT EXISTS (SELECT 1 FROM display_devices d "
           "                WHERE upper(d.dev_eui) = upper(r.device_eui))")
    assert query(v5, sql)


def test_history_on_deleted_space(v5):
    assert scalar(v5, "SELECT count(*) FROM state_changes c JOIN spaces s ON s.id = c.space_id "
                      "WHERE s.deleted_at IS NOT NULL") >= 1


# --- keys and orphans ------------------------------------------------------------------------

def test_api_key_hash_collision(v5, v6):
    v6_keys = dict(query(v6, "SELECT key_hash, id FROM api_keys"))
    clashes = [h for h, i in query(v5, "SELECT key_hash, id FROM api_keys")
               if h in v6_keys and v6_keys[h] != i]
    assert clashes


def test_api_key_without_tenant(v5):
    assert scalar(v5, "SELECT count(*) FROM api_keys WHERE tenant_id IS NULL") >= 1


def test_v6_orphans_are_v5_devices(v5, v6):
    v6_orphans = {e for (e,) in query(v6, "SELECT upper(dev_eui) FROM orphan_devices")}
    v5_devices = {e for (e,) in query(v5, "SELECT upper(dev_eui) FROM sensor_devices")}
    assert set(LIVE_SENSORS) <= (v6_orphans & v5_devices)


# --- ChirpStack ------------------------------------------------------------------------------

def test_gateways_under_several_tenants(cs):
    assert scalar(cs, "SELECT count(DISTINCT tenant_id) FROM gateway") >= 3


def test_gateway_zero_position(cs):
    assert scalar(cs, "SELECT count(*) FROM gateway WHERE latitude = 0 AND longitude = 0") >= 1


def test_gateway_never_seen(cs):
    assert scalar(cs, "SELECT count(*) FROM gateway WHERE last_seen_at IS NULL") >= 1


def test_gateway_site_tags(cs, v5):
    tagged = query(cs, "SELECT tags->>'site_id', tags->>'site_name', description FROM gateway "
                       "WHERE tags ? 'site_id' AND tags ? 'site_name'")
    v5_sites = {str(i): n for i, n in query(v5, "SELECT id, name FROM sites")}
    matching = [t for t in tagged if v5_sites.get(t[0]) == t[1] == t[2]]
    assert matching


def test_chirpstack_devices_unknown_to_v5(cs, v5):
    cs_euis = {e for (e,) in query(cs, "SELECT upper(encode(dev_eui, 'hex')) FROM device")}
    # Not in V5's registries (once they uplink, the live lab records them as orphans).
    v5_euis = {e for (e,) in query(v5, "SELECT upper(dev_eui) FROM sensor_devices UNION "
                                        "SELECT upper(dev_eui) FROM display_devices")}
    assert len(cs_euis - v5_euis) >= 2


# --- legacy V4 -------------------------------------------------------------------------------

def test_v4_space_reused_id(v4, v5):
    v4_ids = {i for (i,) in query(v4, "SELECT space_id FROM parking_spaces.spaces")}
    v5_ids = {i for (i,) in query(v5, "SELECT id FROM spaces")}
    assert v4_ids & v5_ids


# --- shape: V6 as the plan found it ----------------------------------------------------------

def test_v6_counts(v6):
    counts = query(v6, "SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM sites), "
                       "(SELECT count(*) FROM spaces), (SELECT count(*) FROM sensor_devices), "
                       "(SELECT count(*) FROM display_devices)")[0]
    assert counts == (8, 3, 9, 0, 0)


def test_v6_users_have_owner_memberships(v6):
    sql = ("SELECT count(DISTINCT u.id) FROM users u JOIN user_memberships m ON m.user_id = u.id "
           "WHERE m.role = 'owner' AND m.is_active")
    assert scalar(v6, sql) == scalar(v6, "SELECT count(*) FROM users") == 3


def test_v6_policies_only_to_parking_user(v6):
    roles = rows_as_set(v6, "SELECT polroles::regrole[]::text FROM pg_policy")
    assert roles == {("{parking_user}",)}


def test_v6_no_forced_rls(v6):
    assert scalar(v6, "SELECT count(*) FROM pg_class WHERE relforcerowsecurity") == 0


def test_v6_sites_rls_without_policy(v6):
    sql = ("SELECT c.relrowsecurity, (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) "
           "FROM pg_class c WHERE c.oid = 'public.sites'::regclass")
    assert query(v6, sql) == [(True, 0)]


def test_v6_gateways_without_unique_key(v6):
    sql = ("SELECT count(*) FROM pg_index WHERE indrelid = 'public.gateways'::regclass "
           "AND indisunique AND NOT indisprimary")
    assert scalar(v6, sql) == 0


def test_v6_reservation_check_rejects_expired(v6):
    sql = ("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
           "WHERE conrelid = 'public.reservations'::regclass AND conname = 'valid_status'")
    assert "expired" not in scalar(v6, sql)


def test_v6_timestamps_mixed(v6):
    sql = ("SELECT table_name, data_type FROM information_schema.columns "
           "WHERE table_schema = 'public' AND column_name = 'created_at' "
           "AND table_name IN ('tenants', 'sensor_devices')")
    assert dict(query(v6, sql)) == {"tenants": "timestamp with time zone",
                                    "sensor_devices": "timestamp without time zone"}


def test_v6_renamed_and_added_columns(v6):
    sql = ("SELECT table_name || '.' || column_name FROM information_schema.columns "
           "WHERE table_schema = 'public' AND (table_name, column_name) IN ("
           "('users', 'hashed_password'), ('sites', 'slug'), ('sensor_devices', 'model'), "
           "('sensor_devices', 'manufacturer'), ('sensor_devices', 'device_type'), "
           "('sensor_devices', 'chirpstack_device_id'), "
           "('sensor_devices', 'chirpstack_sync_status'), "
           "('users', 'password_hash'))")
    assert len(query(v6, sql)) == 7


def test_v6_hand_made_tables_exist(v6):
    sql = "SELECT to_regclass('public.downlink_queue'), to_regclass('public.chirpstack_sync')"
    assert None not in query(v6, sql)[0]


# --- shape: V5 live repairs ------------------------------------------------------------------

def test_v5_forced_rls(v5):
    forced = {n for (n,) in query(v5, "SELECT relname FROM pg_class WHERE relforcerowsecurity")}
    assert forced == V5_FORCED_RLS


def test_v5_policies_use_app_current_tenant(v5):
    sql = ("SELECT count(*) FROM pg_policy "
           "WHERE pg_get_expr(polqual, polrelid) LIKE '%app.current_tenant''%'")
    assert scalar(v5, sql) == len(V5_FORCED_RLS)


def test_v5_registry_eui_checks_not_valid(v5):
    sql = ("SELECT conname, convalidated FROM pg_constraint "
           "WHERE conname IN ('chk_sensor_dev_eui_hex', 'chk_display_dev_eui_hex', "
           "'chk_spaces_eui_hex')")
    assert dict(query(v5, sql)) == {"chk_sensor_dev_eui_hex": False,
                                    "chk_display_dev_eui_hex": False, "chk_spaces_eui_hex": True}


def test_v5_buggy_eui_upper_triggers_absent(v5):
    sql = "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'trg\\_%\\_eui\\_upper'"
    assert scalar(v5, sql) == 0


def test_v5_hand_repaired_shapes(v5):
    sql = ("SELECT to_regclass('public.display_policies') IS NOT NULL, "
           "(SELECT data_type FROM information_schema.columns WHERE table_name = 'refresh_tokens' "
           " AND column_name = 'id'), "
           "(SELECT count(*) FROM information_schema.columns WHERE table_name = 'refresh_tokens' "
           " AND column_name = 'tenant_id'), "
           "(SELECT count(*) FROM information_schema.columns WHERE table_name = 'api_keys' "
           " AND column_name = 'revoked_at')")
    assert query(v5, sql) == [(True, "integer", 0, 0)]


def test_v5_app_role_grants(v5):
    assert scalar(v5, "SELECT has_table_privilege('parking_app', 'public.spaces', 'SELECT') "
                      "AND has_database_privilege('parking_app', current_database(), 'CONNECT')")


def test_v5_sizes(v5):
    sql = ("SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM users), "
           "(SELECT count(*) FROM sites), (SELECT count(*) FROM sensor_devices), "
           "(SELECT count(*) FROM display_devices)")
    assert query(v5, sql) == [(5, 3, 7, 13, 3)]


def test_v5_history_rows(v5):
    assert scalar(v5, "SELECT (SELECT count(*) FROM sensor_readings) "
                      "+ (SELECT count(*) FROM state_changes)") >= 100


# --- shape: ChirpStack and V4 ----------------------------------------------------------------

def test_chirpstack_http_integration_url(cs):
    sql = ("SELECT count(*) FROM application a JOIN application_integration i "
           "ON i.application_id = a.id AND i.kind = 'Http' "
           "WHERE i.configuration -> 'Http' ->> 'event_endpoint_url' = %s "
           "AND (i.configuration -> 'Http' ->> 'json')::boolean")
    applications = scalar(cs, "SELECT count(*) FROM application")
    assert scalar(cs, sql, (INTEGRATION_URL,)) == applications >= 3


def test_chirpstack_tenants_and_profiles(cs):
    sql = ("SELECT (SELECT count(*) FROM tenant WHERE name = 'ChirpStack'), "
           "(SELECT count(*) FROM tenant), "
           "(SELECT array_agg(DISTINCT name ORDER BY name) FROM device_profile)")
    assert query(cs, sql) == [(1, 4, ["browan_tbms100_motion", "plenom_kuando_busylight"])]


def test_chirpstack_has_every_valid_v5_device(cs, v5):
    cs_euis = {e for (e,) in query(cs, "SELECT upper(encode(dev_eui, 'hex')) FROM device")}
    v5_valid = {e for (e,) in query(v5, "SELECT upper(dev_eui) FROM sensor_devices "
                                        "WHERE dev_eui ~ '^[0-9A-Fa-f]{16}$' UNION "
                                        "SELECT upper(dev_eui) FROM display_devices "
                                        "WHERE dev_eui ~ '^[0-9A-Fa-f]{16}$'")}
    assert v5_valid <= cs_euis


def test_platform_legacy_schemas(v4):
    sql = ("SELECT array_agg(nspname ORDER BY nspname) FROM pg_namespace WHERE nspname IN "
           "('ingest', 'transform', 'parking_config', 'parking_spaces', 'parking_operations')")
    assert scalar(v4, sql) == ["ingest", "parking_config", "parking_operations",
                               "parking_spaces", "transform"]


def test_every_listed_edge_case_has_a_test(v5):
    """lab_meta.edge_cases is for humans; this keeps it and this module in step."""
    listed = {n for (n,) in query(v5, "SELECT name FROM lab_meta.edge_cases")}
    assert {f"test_{n}" for n in listed} <= set(globals())
