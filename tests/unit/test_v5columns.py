"""The V5 columns are declared once (parking/v5columns.py); schema.py's V5_REQUIRED/V5_OPTIONAL
and staging.py's SOURCES are derived from that declaration. The expected values below are the
literals both modules held before the declaration existed (commit 14fc89f): the derivation must
reproduce them exactly, so the schema check (and its messages) and the staging COPYs are unchanged.
"""
import itertools

import pytest

from parking import schema, staging, v5columns

# --- schema.py before the derivation (verbatim) --------------------------------------------------
EXPECTED_V5_REQUIRED = {
    "tenants": {"id": "uuid", "name": "text", "slug": "text", "metadata": "jsonb", "settings": "jsonb",
                "is_active": "boolean", "created_at": "timestamptz", "updated_at": "timestamptz"},
    "users": {"id": "uuid", "email": "text", "name": "text", "password_hash": "text", "metadata": "jsonb",
              "is_active": "boolean", "email_verified": "boolean", "created_at": "timestamptz",
              "updated_at": "timestamptz", "last_login_at": "timestamptz"},
    "user_memberships": {"id": "uuid", "user_id": "uuid", "tenant_id": "uuid", "role": "text",
                         "metadata": "jsonb", "is_active": "boolean", "created_at": "timestamptz",
                         "updated_at": "timestamptz"},
    "sites": {"id": "uuid", "tenant_id": "uuid", "name": "text", "timezone": "text", "location": "jsonb",
              "metadata": "jsonb", "is_active": "boolean", "created_at": "timestamptz",
              "updated_at": "timestamptz"},
    "spaces": {"id": "uuid", "name": "text", "code": "text", "building": "text", "floor": "text",
               "zone": "text", "gps_latitude": "number", "gps_longitude": "number", "sensor_eui": "text",
               "display_eui": "text", "state": "text", "metadata": "jsonb", "created_at": "timestamptz",
               "updated_at": "timestamptz", "deleted_at": "timestamptz", "site_id": "uuid"},
    "sensor_devices": {"id": "uuid", "dev_eui": "text", "device_type": "text", "device_model": "text",
                       "manufacturer": "text", "capabilities": "jsonb", "status": "text", "enabled": "boolean",
                       "last_seen_at": "timestamptz", "created_at": "timestamptz", "updated_at": "timestamptz"},
    "display_devices": {"id": "uuid", "dev_eui": "text", "device_type": "text", "device_model": "text",
                        "manufacturer": "text", "display_codes": "jsonb", "fport": "int",
                        "confirmed_downlinks": "boolean", "status": "text", "enabled": "boolean",
                        "last_seen_at": "timestamptz", "created_at": "timestamptz", "updated_at": "timestamptz"},
    "reservations": {"id": "uuid", "space_id": "uuid", "start_time": "timestamptz", "end_time": "timestamptz",
                     "user_email": "text", "user_phone": "text", "status": "text", "metadata": "jsonb",
                     "created_at": "timestamptz", "updated_at": "timestamptz", "request_id": "uuid"},
    "sensor_readings": {"id": "int", "device_eui": "text", "space_id": "uuid", "occupancy_state": "text",
                        "battery": "number", "temperature": "number", "rssi": "int", "snr": "number",
                        "timestamp": "timestamptz", "fcnt": "int"},
    "state_changes": {"id": "int", "space_id": "uuid", "previous_state": "text", "new_state": "text",
                      "source": "text", "request_id": "text", "metadata": "jsonb", "timestamp": "timestamptz"},
    "orphan_devices": {"id": "uuid", "dev_eui": "text", "first_seen": "timestamptz",
                       "last_seen": "timestamptz", "uplink_count": "int", "last_payload": "bytea"},
}
EXPECTED_V5_OPTIONAL = {
    "spaces": {"sensor_device_id": "uuid", "display_device_id": "uuid"},
    "sensor_devices": {"device_name": "text", "payload_decoder": "text", "device_type_id": "uuid"},
    "display_devices": {"device_name": "text", "device_type_id": "uuid"},
}


# --- staging.py before the derivation (verbatim) -------------------------------------------------
EXPECTED_SOURCES = {
    "tenants": ("id, name, slug, metadata, settings, is_active, created_at, updated_at",
                "id uuid, name text, slug text, metadata jsonb, settings jsonb, is_active boolean, "
                "created_at timestamptz, updated_at timestamptz"),
    "users": ("id, email, name, password_hash, metadata, is_active, email_verified, created_at, updated_at, "
              "last_login_at",
              "id uuid, email text, name text, password_hash text, metadata jsonb, is_active boolean, "
              "email_verified boolean, created_at timestamptz, updated_at timestamptz, last_login_at timestamptz"),
    "user_memberships": ("id, user_id, tenant_id, role, metadata, is_active, created_at, updated_at",
                         "id uuid, user_id uuid, tenant_id uuid, role text, metadata jsonb, is_active boolean, "
                         "created_at timestamptz, updated_at timestamptz"),
    "sites": ("id, tenant_id, name, timezone, location, metadata, is_active, created_at, updated_at",
              "id uuid, tenant_id uuid, name text, timezone text, location jsonb, metadata jsonb, "
              "is_active boolean, created_at timestamptz, updated_at timestamptz"),
    "spaces": ("id, name, code, building, floor, zone, gps_latitude, gps_longitude, sensor_eui, display_eui, "
               "state, metadata, created_at, updated_at, deleted_at, site_id, {sensor_device_id}, "
               "{display_device_id}",
               "id uuid, name text, code text, building text, floor text, zone text, gps_latitude numeric, "
               "gps_longitude numeric, sensor_eui text, display_eui text, state text, metadata jsonb, "
               "created_at timestamptz, updated_at timestamptz, deleted_at timestamptz, site_id uuid, "
               "sensor_device_id uuid, display_device_id uuid"),
    "sensor_devices": ("id, dev_eui, device_type, device_model, manufacturer, capabilities, status, enabled, "
                       "last_seen_at, created_at, updated_at, {device_name}, {payload_decoder}, {device_type_id}",
                       "id uuid, dev_eui text, device_type text, device_model text, manufacturer text, "
                       "capabilities jsonb, status text, enabled boolean, last_seen_at timestamptz, "
                       "created_at timestamptz, updated_at timestamptz, device_name text, payload_decoder text, "
                       "device_type_id uuid"),
    "display_devices": ("id, dev_eui, device_type, device_model, manufacturer, display_codes, fport, "
                        "confirmed_downlinks, status, enabled, last_seen_at, created_at, updated_at, "
                        "{device_name}, {device_type_id}",
                        "id uuid, dev_eui text, device_type text, device_model text, manufacturer text, "
                        "display_codes jsonb, fport integer, confirmed_downlinks boolean, status text, "
                        "enabled boolean, last_seen_at timestamptz, created_at timestamptz, "
                        "updated_at timestamptz, device_name text, device_type_id uuid"),
    "reservations": ("id, space_id, start_time, end_time, user_email, user_phone, status, metadata, created_at, "
                     "updated_at, request_id",
                     "id uuid, space_id uuid, start_time timestamptz, end_time timestamptz, user_email text, "
                     "user_phone text, status text, metadata jsonb, created_at timestamptz, "
                     "updated_at timestamptz, request_id uuid"),
    "orphan_devices": ("id, dev_eui, first_seen, last_seen, uplink_count, last_payload",
                       "id uuid, dev_eui text, first_seen timestamptz, last_seen timestamptz, "
                       "uplink_count integer, last_payload bytea"),
    "sensor_readings": ("id, device_eui, space_id, occupancy_state, battery, temperature, rssi, snr, "
                        "\"timestamp\", fcnt",
                        "id bigint, device_eui text, space_id uuid, occupancy_state text, battery numeric, "
                        "temperature numeric, rssi integer, snr numeric, ts timestamptz, fcnt integer"),
    "state_changes": ("id, space_id, previous_state, new_state, source, request_id, metadata, \"timestamp\"",
                      "id bigint, space_id uuid, previous_state text, new_state text, source text, "
                      "request_id text, metadata jsonb, ts timestamptz"),
}


def old_select_sql(name, optional, where=None):
    """staging.select_sql before the derivation (verbatim, over the literal SOURCES)."""
    cols, _ = EXPECTED_SOURCES[name]
    present = optional.get(name, set())
    fill = {}
    for col in ("sensor_device_id", "display_device_id", "device_name", "payload_decoder", "device_type_id"):
        if col in cols:
            kind = "text" if col in ("device_name", "payload_decoder") else "uuid"
            fill[col] = col if col in present else f"NULL::{kind} AS {col}"
    sql = f"SELECT {cols.format(**fill)} FROM {name}"
    if where:
        sql += f" WHERE {where}"
    return sql


def _order(tables):
    return [(table, list(columns)) for table, columns in tables.items()]


def test_v5_required_derived_equals_literal():
    assert schema.V5_REQUIRED == EXPECTED_V5_REQUIRED
    # schema.differences walks tables and columns in this order: the same messages, in the same order
    assert _order(schema.V5_REQUIRED) == _order(EXPECTED_V5_REQUIRED)


def test_v5_optional_derived_equals_literal():
    assert schema.V5_OPTIONAL == EXPECTED_V5_OPTIONAL
    assert _order(schema.V5_OPTIONAL) == _order(EXPECTED_V5_OPTIONAL)


def test_sources_derived_equals_literal():
    assert staging.SOURCES == EXPECTED_SOURCES   # staging.SOURCES is only ever looked up by name


def _optional_sets(name):
    cols = sorted(EXPECTED_V5_OPTIONAL.get(name, {}))
    return [set(c) for n in range(len(cols) + 1) for c in itertools.combinations(cols, n)]


@pytest.mark.parametrize("name", sorted(EXPECTED_SOURCES))
def test_select_sql_unchanged_for_every_set_of_optional_columns(name):
    for present in _optional_sets(name):
        for where in (None, "id > 5"):
            assert staging.select_sql(name, {name: present}, where) == old_select_sql(name, {name: present}, where)
    assert staging.select_sql(name, {}) == old_select_sql(name, {})


def test_every_declared_type_is_a_staging_type_with_a_schema_family():
    for table, columns in v5columns.V5_COLUMNS.items():
        for column in columns:
            assert column.type in v5columns.STAGING_TYPES, (table, column)
