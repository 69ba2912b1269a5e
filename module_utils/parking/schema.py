"""Live-schema check: the columns the mapping reads (V5) and writes (V6), with their types.

The repositories' DDL is not the live schema (reference/v5-schema.md §9, v6-schema.md §0), so
every run reads the live catalogs first and fails, listing every difference, when a column it
needs is missing or has another type. Optional columns are used when present.
"""
from .errors import SchemaMismatch
from .v5columns import V5_COLUMNS

# information_schema.columns.data_type families that are interchangeable for the mapping
_FAMILIES = {
    "character varying": "text", "text": "text", "character": "text",
    "timestamp with time zone": "timestamptz", "timestamp without time zone": "timestamp",
    "integer": "int", "bigint": "int", "smallint": "int",
    "numeric": "number", "double precision": "number", "real": "number",
}


def family(data_type):
    """The family of an information_schema data_type (or of a staging type in v5columns)."""
    return _FAMILIES.get(data_type, data_type)


def _v5(optional):
    """{table: {column: family}} of the declared V5 columns (v5columns), required or optional ones."""
    tables = {}
    for table, columns in V5_COLUMNS.items():
        picked = {c.name: family(c.type) for c in columns if c.optional == optional}
        if picked:
            tables[table] = picked
    return tables


# table -> {column: expected type family}; the mapping reads exactly these from V5. Declared once
# in v5columns.py (with staging's select list and DDL): add a V5 column there, not here.
V5_REQUIRED = _v5(optional=False)
# present on some live V5 databases only ([DOC] columns no migration creates)
V5_OPTIONAL = _v5(optional=True)

# the mapping writes exactly these in V6
V6_REQUIRED = {
    "tenants": {"id": "uuid", "name": "text", "slug": "text", "metadata": "jsonb", "settings": "jsonb",
                "is_active": "boolean", "created_at": "timestamptz", "updated_at": "timestamptz",
                "type": "text", "subscription_tier": "text"},
    "users": {"id": "uuid", "email": "text", "name": "text", "hashed_password": "text", "metadata": "jsonb",
              "is_active": "boolean", "email_verified": "boolean", "created_at": "timestamptz",
              "updated_at": "timestamptz", "last_login_at": "timestamptz", "first_name": "text",
              "last_name": "text"},
    "user_memberships": {"id": "uuid", "user_id": "uuid", "tenant_id": "uuid", "role": "text",
                         "metadata": "jsonb", "is_active": "boolean", "created_at": "timestamptz",
                         "updated_at": "timestamptz"},
    "sites": {"id": "uuid", "tenant_id": "uuid", "name": "text", "timezone": "text", "location": "jsonb",
              "metadata": "jsonb", "is_active": "boolean", "created_at": "timestamptz",
              "updated_at": "timestamptz", "slug": "text"},
    "spaces": {"id": "uuid", "name": "text", "code": "text", "building": "text", "floor": "text",
               "zone": "text", "gps_latitude": "number", "gps_longitude": "number", "sensor_eui": "text",
               "display_eui": "text", "state": "text", "metadata": "jsonb", "created_at": "timestamptz",
               "updated_at": "timestamptz", "deleted_at": "timestamptz", "site_id": "uuid", "tenant_id": "uuid",
               "sensor_device_id": "uuid", "display_device_id": "uuid", "current_state": "text",
               "display_name": "text"},
    "sensor_devices": {"id": "uuid", "tenant_id": "uuid", "dev_eui": "text", "name": "text", "status": "text",
                       "lifecycle_state": "text", "assigned_space_id": "uuid", "assigned_at": "timestamp",
                       "last_seen_at": "timestamp", "enabled": "boolean", "config": "jsonb",
                       "created_at": "timestamp", "updated_at": "timestamp", "device_type": "text",
                       "manufacturer": "text", "model": "text"},
    "display_devices": {"id": "uuid", "tenant_id": "uuid", "dev_eui": "text", "name": "text", "status": "text",
                        "lifecycle_state": "text", "assigned_space_id": "uuid", "assigned_at": "timestamp",
                        "last_seen_at": "timestamp", "enabled": "boolean", "config": "jsonb",
                        "created_at": "timestamp", "updated_at": "timestamp", "device_type": "text",
                        "manufacturer": "text", "model": "text"},
    "device_assignments": {"id": "uuid", "tenant_id": "uuid", "device_type": "text", "device_id": "uuid",
                           "dev_eui": "text", "space_id": "uuid", "assigned_at": "timestamp",
                           "unassigned_at": "timestamp", "assignment_reason": "text",
                           "unassignment_reason": "text"},
    "reservations": {"id": "uuid", "space_id": "uuid", "start_time": "timestamptz", "end_time": "timestamptz",
                     "user_email": "text", "user_phone": "text", "status": "text", "metadata": "jsonb",
                     "created_at": "timestamptz", "updated_at": "timestamptz", "tenant_id": "uuid",
                     "user_id": "uuid"},
    "sensor_readings": {"id": "uuid", "tenant_id": "uuid", "device_id": "uuid", "dev_eui": "text",
                        "fcnt": "int", "occupied": "boolean", "rssi": "number", "snr": "number",
                        "raw_payload": "text", "received_at": "timestamp", "created_at": "timestamp"},
    "state_changes": {"id": "int", "space_id": "uuid", "previous_state": "text", "new_state": "text",
                      "source": "text", "request_id": "text", "metadata": "jsonb", "timestamp": "timestamptz"},
    "orphan_devices": {"id": "uuid", "dev_eui": "text", "first_seen": "timestamp", "last_seen": "timestamp",
                       "message_count": "int", "last_payload": "text"},
}


def live_columns(cur, tables):
    """{table: {column: family}} of the given tables in schema public."""
    cur.execute("SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = ANY(%s)", (list(tables),))
    live = {}
    for table, column, data_type in cur.fetchall():
        live.setdefault(table, {})[column] = family(data_type)
    return live


def differences(live, required, side):
    """Every missing table/column or type difference, as readable strings."""
    diffs = []
    for table, columns in required.items():
        if table not in live:
            diffs.append(f"{side}: table {table} is missing")
            continue
        for column, want in columns.items():
            have = live[table].get(column)
            if have is None:
                diffs.append(f"{side}: column {table}.{column} is missing (expected {want})")
            elif have != want:
                diffs.append(f"{side}: column {table}.{column} is {have}, expected {want}")
    return diffs


def check(source_cur, target_cur):
    """Raise SchemaMismatch listing every difference; return the optional V5 columns present."""
    v5 = live_columns(source_cur, V5_REQUIRED)
    v6 = live_columns(target_cur, V6_REQUIRED)
    diffs = differences(v5, V5_REQUIRED, "source (V5)") + differences(v6, V6_REQUIRED, "target (V6)")
    if diffs:
        raise SchemaMismatch("the live schema differs from what the V5->V6 mapping needs: "
                             + "; ".join(diffs), diffs)
    optional = {}
    for table, columns in V5_OPTIONAL.items():
        optional[table] = {c for c, want in columns.items() if v5.get(table, {}).get(c) == want}
    return optional
