"""What the migration reads from V5, and how it lands in staging tables on the target.

Each source is one `COPY (SELECT ...) TO STDOUT` streamed into a TEMP table of the target's
transaction (dropped at commit). The mapping then runs set-based in SQL on the target.
"""
from . import pgcopy

# name -> (V5 select list, staging column DDL). Optional V5 columns are NULL when absent.
SOURCES = {
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


def select_sql(name, optional, where=None):
    """The V5 SELECT for source `name`, with absent optional columns as typed NULLs."""
    cols, _ = SOURCES[name]
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


def stage(run, name, optional, where=None):
    """Stream V5 rows of `name` into TEMP table stg_<name>; return the row count."""
    _, ddl = SOURCES[name]
    table = f"stg_{name}"
    run.execute(f"CREATE TEMP TABLE {table} ({ddl}) ON COMMIT DROP")
    sql = select_sql(name, optional, where)
    copy_in = f"COPY {table} FROM STDIN"
    run.note(f"COPY ({sql}) TO STDOUT  ->  {copy_in}")
    n = pgcopy.stream(run.src, sql, run.cur, copy_in)
    run.execute(f"ANALYZE {table}")
    return n
