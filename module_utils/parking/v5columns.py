"""The V5 columns the migration reads, declared once.

Each V5 source table lists its columns as in a CREATE TABLE: name, then the PostgreSQL type of
its staging column, then `optional` for a column present on some live V5 databases only ([DOC]
columns no migration creates; NULL when absent). The order is the order staging reads them.
Derived from this declaration:
  schema.V5_REQUIRED / V5_OPTIONAL   the live-schema check, by type family (schema.family)
  staging.SOURCES                    the V5 select list and the staging table's DDL
To read one more V5 column, add it here, then use it in the entity's SQL in migrate/
(registry.py; history.py for readings and state changes).
"""
from collections import namedtuple

Column = namedtuple("Column", "name type optional")

# Staging column types a declaration may use (schema.family maps each to the family the live
# check compares: integer/bigint -> int, numeric -> number; the others are their own family)
STAGING_TYPES = {"uuid", "text", "jsonb", "boolean", "timestamptz", "numeric", "integer", "bigint", "bytea"}
# V5 columns named after a SQL keyword: selected quoted, staged under another name
STAGED_AS = {"timestamp": "ts"}

_DECLARED = {
    "tenants": "id uuid, name text, slug text, metadata jsonb, settings jsonb, is_active boolean, "
               "created_at timestamptz, updated_at timestamptz",
    "users": "id uuid, email text, name text, password_hash text, metadata jsonb, is_active boolean, "
             "email_verified boolean, created_at timestamptz, updated_at timestamptz, last_login_at timestamptz",
    "user_memberships": "id uuid, user_id uuid, tenant_id uuid, role text, metadata jsonb, is_active boolean, "
                        "created_at timestamptz, updated_at timestamptz",
    "sites": "id uuid, tenant_id uuid, name text, timezone text, location jsonb, metadata jsonb, "
             "is_active boolean, created_at timestamptz, updated_at timestamptz",
    "spaces": "id uuid, name text, code text, building text, floor text, zone text, gps_latitude numeric, "
              "gps_longitude numeric, sensor_eui text, display_eui text, state text, metadata jsonb, "
              "created_at timestamptz, updated_at timestamptz, deleted_at timestamptz, site_id uuid, "
              "sensor_device_id uuid optional, display_device_id uuid optional",
    "sensor_devices": "id uuid, dev_eui text, device_type text, device_model text, manufacturer text, "
                      "capabilities jsonb, status text, enabled boolean, last_seen_at timestamptz, "
                      "created_at timestamptz, updated_at timestamptz, device_name text optional, "
                      "payload_decoder text optional, device_type_id uuid optional",
    "display_devices": "id uuid, dev_eui text, device_type text, device_model text, manufacturer text, "
                       "display_codes jsonb, fport integer, confirmed_downlinks boolean, status text, "
                       "enabled boolean, last_seen_at timestamptz, created_at timestamptz, "
                       "updated_at timestamptz, device_name text optional, device_type_id uuid optional",
    "reservations": "id uuid, space_id uuid, start_time timestamptz, end_time timestamptz, user_email text, "
                    "user_phone text, status text, metadata jsonb, created_at timestamptz, "
                    "updated_at timestamptz, request_id uuid",
    "sensor_readings": "id bigint, device_eui text, space_id uuid, occupancy_state text, battery numeric, "
                       "temperature numeric, rssi integer, snr numeric, timestamp timestamptz, fcnt integer",
    "state_changes": "id bigint, space_id uuid, previous_state text, new_state text, source text, "
                     "request_id text, metadata jsonb, timestamp timestamptz",
    "orphan_devices": "id uuid, dev_eui text, first_seen timestamptz, last_seen timestamptz, "
                      "uplink_count integer, last_payload bytea",
}


def _parse(table, spec):
    columns = []
    for item in spec.split(","):
        words = item.split()
        if len(words) not in (2, 3) or words[1] not in STAGING_TYPES or words[2:] not in ([], ["optional"]):
            raise ValueError(f"v5columns: bad column declaration {item.strip()!r} of table {table}")
        columns.append(Column(words[0], words[1], len(words) == 3))
    return tuple(columns)


# table -> (Column, ...)
V5_COLUMNS = {table: _parse(table, spec) for table, spec in _DECLARED.items()}


def select_item(column):
    """The column in the V5 select list (a keyword quoted)."""
    return f'"{column.name}"' if column.name in STAGED_AS else column.name


def staged_name(column):
    """The column's name in the staging table."""
    return STAGED_AS.get(column.name, column.name)
