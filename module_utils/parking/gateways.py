# PRIVATE: the parking-migrate engine. Plain Python (no Ansible imports) so it is
# importable and unit-testable on its own; the modules in library/ are thin wrappers.
"""ChirpStack v4 gateways -> V6 ``gateways`` (phase 1; v5-to-v6-mapping.md §2.8, gotchas J47-J49).

Two entry points, both plain Python returning JSON-safe dicts:

* ``import_gateways(...)``  (state present): reads ChirpStack's ``gateway`` + ``tenant`` tables,
  decides each gateway's V6 owner, and inserts or updates V6 rows, deduplicated on
  (tenant_id, upper(gateway_id)) because the L0 table has no unique key. Every write is
  recorded in ``parking_migrate.gateway_import_ledger`` (inserted row ids, before-images of
  updated rows).
* ``remove_gateways(...)``  (state absent): replays the ledger newest first — restores the
  before-images of updated rows, deletes exactly the rows it inserted — then clears it.

Both run in ONE transaction on the target, opened with
``pg_try_advisory_xact_lock(hashtext('parking-migrate'))``; ``dry_run`` (check mode) runs the
same code and rolls back, so predicted and real counts come from one code path. Errors are
typed (errors.py); anything raised carries ``progress`` (run id, phase, counts so far).

The pure functions (id conversion, status, location, owner and site rules, tenant_map
resolution, column adaptation) take plain data and are unit-tested on their own.
"""
import datetime as dt
import json
import uuid

from . import connection, ledger, rollback
from .errors import ConfigError, ParkingError, SchemaMismatch
from .eui import normalize_eui
from .mapping import PLATFORM_TENANT_ID
from .statements import Statements

TARGET_TABLE = "gateways"
PHASE = rollback.GATEWAYS            # the ledger's runs.phase of gateway imports and their undo
CONFIG_KEY = "chirpstack"
DEFAULT_ONLINE_WINDOW = 300          # seconds; V5's "online when seen within 5 minutes"

TEXT_TYPES = ("character varying", "text", "character")
NUMBER_TYPES = ("double precision", "real", "numeric")
TIME_TYPES = ("timestamp without time zone", "timestamp with time zone")
JSON_TYPES = ("jsonb", "json")

# Columns the import cannot work without, and the types it can write into them.
REQUIRED_COLUMNS = {
    "id": ("uuid",),
    "tenant_id": ("uuid",),
    "gateway_id": TEXT_TYPES,
    "name": TEXT_TYPES,
    "status": TEXT_TYPES,
    "config": ("jsonb",),
}
# Minimum character length of required text columns (16 hex digits; 'offline').
REQUIRED_MIN_LENGTH = {"gateway_id": 16, "status": 7}
# Columns written only where the live table has them (L1 003 / the API's expectations, J49).
OPTIONAL_COLUMNS = {
    "description": TEXT_TYPES,
    "latitude": NUMBER_TYPES,
    "longitude": NUMBER_TYPES,
    "altitude": NUMBER_TYPES,
    "last_seen_at": TIME_TYPES,
    "location": JSON_TYPES + TEXT_TYPES,
    "site_id": ("uuid",),
    "created_at": TIME_TYPES,   # insert only: ChirpStack's created_at
    "updated_at": TIME_TYPES,   # set on every write
}
# Optional columns whose value comes from ChirpStack and is compared for idempotence.
CONTENT_COLUMNS = ("description", "latitude", "longitude", "altitude", "last_seen_at", "location")

# ChirpStack columns present in every v4 release (chirpstack-v4.md §2.1-§2.2).
SQL_CS_GATEWAYS = """
SELECT g.gateway_id, g.tenant_id::text AS tenant_id, t.name AS tenant_name, g.name,
       g.description, g.latitude, g.longitude, g.altitude, g.last_seen_at,
       g.stats_interval_secs, g.tags, g.properties, g.created_at, g.updated_at
FROM gateway g JOIN tenant t ON t.id = g.tenant_id
ORDER BY g.gateway_id
"""
SQL_CS_TENANTS = "SELECT t.id::text, t.name FROM tenant t ORDER BY t.name, t.id"
SQL_CS_DEVICES = """
SELECT a.tenant_id::text, d.dev_eui
FROM device d JOIN application a ON a.id = d.application_id
"""

SQL_LOCK_TIMEOUT = "SET LOCAL lock_timeout = '30s'"
SQL_NOW = "SELECT now()"
SQL_TABLE_SCHEMA = """
SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass(%s)
"""
SQL_COLUMNS = """
SELECT column_name, data_type, character_maximum_length, is_nullable = 'YES',
       column_default IS NOT NULL OR is_identity = 'YES' OR is_generated <> 'NEVER'
FROM information_schema.columns
WHERE table_schema = %s AND table_name = %s
ORDER BY ordinal_position
"""
SQL_RLS = """
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
       pg_get_userbyid(c.relowner) = current_user, r.rolsuper OR r.rolbypassrls
FROM pg_class c, pg_roles r
WHERE c.oid = to_regclass(%s) AND r.rolname = current_user
"""
SQL_V6_TENANTS = "SELECT id::text, slug, name, is_active FROM tenants ORDER BY slug"
SQL_V6_SITES = "SELECT id::text, tenant_id::text, name FROM sites"
SQL_V6_DEVICE_TENANTS = """
SELECT upper(dev_eui), tenant_id::text FROM {table}
WHERE upper(dev_eui) = ANY(%s) AND tenant_id <> %s::uuid
"""
# V6-native uplinks: ChirpStack's up event names its gateways in rxInfo[].gatewayId (lowercase
# hex). raw_payload is text and may hold anything, so ids are extracted by pattern rather than
# by casting (a cast would abort the transaction on the first malformed payload).
SQL_V6_READING_TENANTS = r"""
SELECT DISTINCT upper(m.id[1]), r.tenant_id::text
FROM sensor_readings r
CROSS JOIN LATERAL regexp_matches(r.raw_payload, '"gatewayId"\s*:\s*"([0-9A-Fa-f]{16})"', 'g') AS m(id)
WHERE r.raw_payload LIKE '%%gatewayId%%' AND r.tenant_id <> %s::uuid
"""
SQL_COUNT = "SELECT count(*) FROM gateways"
SQL_LEDGER_INSERTED = f"""
SELECT v6_id FROM {ledger.SCHEMA}.id_map WHERE entity = 'gateways' AND action = 'inserted'
"""
SQL_LEDGER_INSERT = f"""
INSERT INTO {ledger.SCHEMA}.id_map (entity, v5_id, v6_id, action, run_id)
VALUES ('gateways', %s || ':' || %s, %s, 'inserted', %s)
"""
SQL_LEDGER_UPDATE = f"""
INSERT INTO {ledger.SCHEMA}.before_images (run_id, tbl, row_id, before) VALUES (%s, 'gateways', %s, %s::jsonb)
"""


class ImportFailed(ParkingError):
    """A database statement failed during the run (the transaction was rolled back)."""


# --------------------------------------------------------------------------------------------
# Pure rules
# --------------------------------------------------------------------------------------------

def gateway_id_hex(raw):
    """ChirpStack gateway_id (bytea) -> (16 uppercase hex digits, None) or (None, reject reason)."""
    if raw is None:
        return None, "gateway_id is NULL"
    if isinstance(raw, (bytes, bytearray, memoryview)):
        data = bytes(raw)
        if len(data) != 8:
            return None, (f"gateway_id {data.hex()!r} is {len(data)} bytes; an EUI-64 gateway id "
                          f"has 8 (16 hex digits)")
        return data.hex().upper(), None
    text = normalize_eui(raw)
    if text is None:
        return None, f"gateway_id {str(raw)!r} is not 16 hex digits"
    return text, None


def location(latitude, longitude, altitude):
    """ChirpStack position -> {latitude, longitude, altitude} or None.

    ChirpStack stores 0.0/0.0 when the position is unknown (chirpstack-v4.md §2.2): lat = lon = 0
    means "no position", not the Gulf of Guinea.
    """
    if latitude is None or longitude is None:
        return None
    if float(latitude) == 0.0 and float(longitude) == 0.0:
        return None
    return {"latitude": float(latitude), "longitude": float(longitude),
            "altitude": float(altitude) if altitude is not None else None}


def gateway_status(last_seen_at, now, online_window=DEFAULT_ONLINE_WINDOW):
    """'online' when seen within online_window seconds of now (V5's rule), else 'offline'.

    Never seen (NULL) is offline. A last_seen_at in the future (clock skew) counts as online.
    """
    if last_seen_at is None:
        return "offline"
    age = (_aware(now) - _aware(last_seen_at)).total_seconds()
    return "online" if age <= online_window else "offline"


def _aware(value):
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)


def is_uuid(value):
    try:
        uuid.UUID(str(value))
    except (ValueError, AttributeError, TypeError):
        return False
    return True


def canonical_uuid(value):
    return str(uuid.UUID(str(value)))


def resolve_tenant_map(tenant_map, cs_tenants, v6_tenants):
    """Resolve tenant_map against both databases.

    tenant_map: {ChirpStack tenant id or name: V6 tenant id or slug}.
    cs_tenants: [(id, name)]; v6_tenants: [(id, slug)] (extra tuple items ignored).
    Returns ({cs_tenant_id: {"tenant_id", "rule", "key", "value"}}, warnings).
    A key is matched as a ChirpStack tenant id first, else as its (unique) name; the map entry
    keyed by id wins over one keyed by the same tenant's name. A value is a V6 tenant id, else
    a slug. Unknown keys or values raise ConfigError (fail closed: a typo would otherwise send
    a customer's gateways to the platform pool).
    """
    tenant_map = tenant_map or {}
    cs_by_id = {canonical_uuid(t[0]): t[1] for t in cs_tenants}
    cs_by_name = {}
    for tid, name in ((canonical_uuid(t[0]), t[1]) for t in cs_tenants):
        cs_by_name.setdefault(name, []).append(tid)
    v6_ids = {canonical_uuid(t[0]): t[1] for t in v6_tenants}
    v6_by_slug = {t[1]: canonical_uuid(t[0]) for t in v6_tenants}
    slugs = ", ".join(sorted(v6_by_slug)) or "(none)"

    resolved, warnings = {}, []
    for key in sorted(tenant_map, key=str):
        value = tenant_map[key]
        key_text = str(key).strip()
        if is_uuid(key_text) and canonical_uuid(key_text) in cs_by_id:
            cs_id, rule = canonical_uuid(key_text), "tenant_map_id"
        elif key_text in cs_by_name:
            ids = cs_by_name[key_text]
            if len(ids) > 1:
                raise ConfigError(f"tenant_map key {key_text!r} names {len(ids)} ChirpStack tenants "
                                  f"({', '.join(sorted(ids))}); use the tenant id as key")
            cs_id, rule = ids[0], "tenant_map_name"
        else:
            known = "; ".join(f"{name} ({tid})" for tid, name in sorted(cs_by_id.items(),
                                                                         key=lambda i: i[1]))
            raise ConfigError(f"tenant_map key {key_text!r} is neither the id nor the name of a "
                              f"ChirpStack tenant. ChirpStack tenants: {known or '(none)'}")
        value_text = "" if value is None else str(value).strip()
        if is_uuid(value_text) and canonical_uuid(value_text) in v6_ids:
            v6_id = canonical_uuid(value_text)
        elif value_text in v6_by_slug:
            v6_id = v6_by_slug[value_text]
        else:
            raise ConfigError(f"tenant_map[{key_text!r}] = {value_text!r} is neither the id nor the "
                              f"slug of a V6 tenant. V6 tenant slugs: {slugs}")
        entry = {"tenant_id": v6_id, "rule": rule, "key": key_text, "value": value_text}
        previous = resolved.get(cs_id)
        if previous is None or (rule == "tenant_map_id" and previous["rule"] == "tenant_map_name"):
            if previous is not None and previous["tenant_id"] != v6_id:
                warnings.append(f"tenant_map keys {previous['key']!r} and {key_text!r} name the same "
                                f"ChirpStack tenant; the id key wins ({value_text!r})")
            resolved[cs_id] = entry
        elif previous["tenant_id"] != v6_id:
            warnings.append(f"tenant_map keys {previous['key']!r} and {key_text!r} name the same "
                            f"ChirpStack tenant; the id key wins ({previous['value']!r})")
    return resolved, warnings


def heard_tenants(cs_tenant_id, gateway_hex, device_tenants, reading_tenants, platform_tenant_id):
    """V6 tenants of the devices a gateway hears (platform excluded), sorted.

    device_tenants: {ChirpStack tenant id: set of V6 tenant ids of its devices found in V6};
    reading_tenants: {gateway hex: set of V6 tenant ids of V6 readings received through it}.
    """
    heard = set(device_tenants.get(cs_tenant_id, ())) | set(reading_tenants.get(gateway_hex, ()))
    heard.discard(platform_tenant_id)
    return sorted(heard)


def resolve_owner(cs_tenant_id, explicit, heard, platform_tenant_id):
    """(V6 tenant id, owner_rule) of a gateway.

    1. tenant_map entry for its ChirpStack tenant (rule tenant_map_id / tenant_map_name);
    2. the single V6 tenant of the devices it hears (heard_devices);
    3. the platform tenant: nobody heard (platform_no_devices) or several tenants
       (platform_ambiguous).
    """
    entry = explicit.get(cs_tenant_id)
    if entry is not None:
        return entry["tenant_id"], entry["rule"]
    if len(heard) == 1:
        return heard[0], "heard_devices"
    if not heard:
        return platform_tenant_id, "platform_no_devices"
    return platform_tenant_id, "platform_ambiguous"


def resolve_site(tags, description, tenant_id, sites):
    """(site id, site_rule) of a gateway in its chosen V6 tenant, or (None, None).

    V5's gateway UI stores the site in tags (site_id, site_name) and the site name in the
    description. sites: [(id, tenant_id, name)]. Only a site of the chosen tenant is used.
    """
    tags = tags or {}
    own = [(canonical_uuid(s[0]), s[2]) for s in sites if canonical_uuid(s[1]) == tenant_id]
    tag_id = str(tags.get("site_id") or "").strip()
    if tag_id and is_uuid(tag_id):
        for site_id, _ in own:
            if site_id == canonical_uuid(tag_id):
                return site_id, "tag_site_id"
    for value, rule in ((tags.get("site_name"), "tag_site_name"), (description, "description")):
        wanted = str(value or "").strip().casefold()
        if not wanted:
            continue
        matches = [site_id for site_id, name in own if (name or "").strip().casefold() == wanted]
        if len(matches) == 1:
            return matches[0], rule
    return None, None


def plan_columns(live_columns):
    """Adapt to the live ``gateways`` table.

    live_columns: [{"name", "data_type", "max_length", "nullable", "has_default"}].
    Returns {"columns": {name: data_type}, "max_length": {...}, "optional": [names written],
    "skipped": [{"column", "data_type", "reason"}]}. Raises SchemaMismatch listing every
    difference when a required column is missing or of another type, or when a NOT NULL column
    without default would be left empty by the import.
    """
    cols = {c["name"]: c for c in live_columns}
    differences = []
    for name, types in REQUIRED_COLUMNS.items():
        col = cols.get(name)
        if col is None:
            differences.append({"column": name, "expected": " or ".join(types), "found": "missing"})
        elif col["data_type"] not in types:
            differences.append({"column": name, "expected": " or ".join(types),
                                "found": col["data_type"]})
        elif (col.get("max_length") or 1 << 30) < REQUIRED_MIN_LENGTH.get(name, 0):
            differences.append({"column": name,
                                "expected": f"{col['data_type']}({REQUIRED_MIN_LENGTH[name]}) or longer",
                                "found": f"{col['data_type']}({col['max_length']})"})
    optional, skipped = [], []
    for name, types in OPTIONAL_COLUMNS.items():
        col = cols.get(name)
        if col is None:
            continue
        if col["data_type"] in types:
            optional.append(name)
        else:
            skipped.append({"column": name, "data_type": col["data_type"],
                            "reason": f"expected {' or '.join(types)}; value kept in config only"})
    written = set(REQUIRED_COLUMNS) | set(optional)
    for name, col in cols.items():
        if name not in written and not col.get("nullable", True) and not col.get("has_default"):
            differences.append({"column": name, "expected": "nullable or with a default "
                                "(the import does not fill it)", "found": "NOT NULL without default"})
    if differences:
        raise SchemaMismatch(
            "the live gateways table does not have the shape the import needs: "
            + "; ".join(f"{d['column']}: expected {d['expected']}, found {d['found']}"
                        for d in differences),
            differences)
    return {"columns": {n: c["data_type"] for n, c in cols.items()},
            "max_length": {n: c.get("max_length") for n, c in cols.items()},
            "optional": optional, "skipped": skipped}


def _iso(value):
    if value is None:
        return None
    return _aware(value).astimezone(dt.timezone.utc).isoformat()


def chirpstack_config(gw, gateway_hex, position):
    """The ``config.chirpstack`` document: everything ChirpStack knows, whatever the columns."""
    doc = {
        "gateway_id": gateway_hex,
        "tenant_id": gw["tenant_id"],
        "tenant_name": gw["tenant_name"],
        "description": gw.get("description") or "",
        "location": position,
        "altitude": float(gw["altitude"]) if gw.get("altitude") is not None else None,
        "last_seen_at": _iso(gw.get("last_seen_at")),
        "stats_interval_secs": gw.get("stats_interval_secs"),
        "tags": gw.get("tags") or {},
        "properties": gw.get("properties") or {},
    }
    return json.loads(json.dumps(doc, sort_keys=True))


def _time_value(value, data_type):
    if value is None:
        return None
    value = _aware(value).astimezone(dt.timezone.utc)
    return value.replace(tzinfo=None) if data_type == "timestamp without time zone" else value


def desired_row(gw, gateway_hex, tenant_id, status, site_id, plan):
    """Column -> value the import wants for one gateway (required + optional content columns)."""
    position = location(gw.get("latitude"), gw.get("longitude"), gw.get("altitude"))
    name = (gw.get("name") or "").strip() or gateway_hex
    row = {
        "tenant_id": tenant_id,
        "gateway_id": gateway_hex,
        "name": name,
        "status": status,
        "config": chirpstack_config(gw, gateway_hex, position),
    }
    types = plan["columns"]
    values = {
        "description": gw.get("description") or None,
        "latitude": position["latitude"] if position else None,
        "longitude": position["longitude"] if position else None,
        "altitude": position["altitude"] if position else None,
        "last_seen_at": _time_value(gw.get("last_seen_at"), types.get("last_seen_at")),
        "location": position,
    }
    for col in CONTENT_COLUMNS:
        if col in plan["optional"]:
            row[col] = values[col]
    if "site_id" in plan["optional"]:
        row["site_id"] = site_id
    return row


def length_problems(row, plan):
    """Reasons a desired row does not fit the live column lengths (name too long, ...)."""
    problems = []
    for col in ("name", "gateway_id", "description"):
        limit = plan["max_length"].get(col)
        value = row.get(col)
        if limit and isinstance(value, str) and len(value) > limit:
            problems.append(f"{col} is {len(value)} characters; gateways.{col} holds {limit}")
    return problems


def _comparable(col, value, data_type):
    if value is None:
        return None
    if col == "location" or (col == "config"):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return value
        return json.loads(json.dumps(value, sort_keys=True))
    if data_type in NUMBER_TYPES:
        return float(value)
    if data_type in TIME_TYPES and isinstance(value, dt.datetime):
        return _aware(value).astimezone(dt.timezone.utc)
    if data_type == "uuid":
        return canonical_uuid(value)
    return value


def row_differences(existing, desired, plan):
    """Columns whose content differs between an existing V6 row and the desired one.

    config is compared on its ``chirpstack`` key only (other keys belong to V6). site_id is
    compared only when the import resolved one (it never clears a site V6 users set).
    """
    types = plan["columns"]
    diffs = []
    for col, want in desired.items():
        if col == "config":
            have = (existing.get("config") or {})
            if isinstance(have, str):
                have = json.loads(have)
            if _comparable("config", have.get(CONFIG_KEY), "jsonb") != _comparable("config", want,
                                                                                  "jsonb"):
                diffs.append(col)
            continue
        if col == "site_id" and want is None:
            continue
        if col == "gateway_id":
            if existing.get(col) != want:     # also normalises a lowercase V6 id
                diffs.append(col)
            continue
        if _comparable(col, existing.get(col), types.get(col)) != _comparable(col, want,
                                                                              types.get(col)):
            diffs.append(col)
    return diffs


def _sql_value(col, value, data_type):
    """(placeholder, parameter) for writing one value into a column of the given type."""
    if col == "config":
        return "jsonb_build_object('chirpstack', %s::jsonb)", json.dumps(value, sort_keys=True)
    if col == "location":
        if value is None:
            return "%s", None
        text = json.dumps(value, sort_keys=True)
        return ("%s::" + data_type if data_type in JSON_TYPES else "%s"), text
    if data_type == "uuid":
        return "%s::uuid", value
    return "%s", value


# --------------------------------------------------------------------------------------------
# Database plumbing
# --------------------------------------------------------------------------------------------

def _session(conn, queries):
    """The import's recorder on one database: a cursor per statement (the ledger's calls take
    their own on ``.conn``), one log for both databases, each text logged once."""
    return Statements(conn, log=queries, unique=True, cursor_per_statement=True)


def _db_errors():
    return (connection.psycopg2.Error,) if connection.psycopg2 is not None else ()


def _close(conn):
    """Roll back whatever is open and close; never masks the error being raised."""
    if conn is None:
        return
    try:
        conn.rollback()
    except _db_errors():
        pass
    finally:
        conn.close()


def _lock(target):
    """The migration's one lock (ledger.lock), with a bound on waiting for table locks after it."""
    target.execute(SQL_LOCK_TIMEOUT)
    ledger.lock(target.conn.cursor())


def _live_columns(target, table):
    schema = target.scalar(SQL_TABLE_SCHEMA, (table,))
    if schema is None:
        raise SchemaMismatch(f"the target database has no table {table!r}; phase 1 needs the V6 "
                             f"schema in place", [{"table": table, "found": "missing"}])
    rows = target.all(SQL_COLUMNS, (schema, table))
    return [{"name": r[0], "data_type": r[1], "max_length": r[2], "nullable": r[3],
             "has_default": r[4]} for r in rows]


def _table_exists(target, table):
    return target.scalar(SQL_TABLE_SCHEMA, (table,)) is not None


def _check_rls(target, table):
    """Fail closed when row-level security would hide rows from this login (v6-schema.md §6)."""
    row = target.one(SQL_RLS, (table,))
    if row is None:
        return
    relname, enabled, forced, owner, bypass = row
    if enabled and not bypass and (not owner or forced):
        raise ConfigError(f"row-level security on {relname} applies to this login, so it would see "
                          f"only part of the rows (v6-schema.md §6); connect as the owner of the V6 "
                          f"tables (parking_user) or a superuser")


def _validate_options(platform_tenant_id, online_window, tenant_map):
    if not is_uuid(platform_tenant_id):
        raise ConfigError(f"platform_tenant_id {str(platform_tenant_id)!r} is not a UUID "
                          f"(the V6 platform tenant is {PLATFORM_TENANT_ID})")
    if online_window is None or int(online_window) <= 0:
        raise ConfigError(f"online_window must be a positive number of seconds, got {online_window!r}")
    if tenant_map is not None and not isinstance(tenant_map, dict):
        raise ConfigError("tenant_map must be a dictionary {ChirpStack tenant id or name: V6 tenant "
                          "id or slug}")
    return canonical_uuid(platform_tenant_id)


def _progress(run_id, phase, counts):
    return {"run_id": run_id, "phase": phase, "counts": dict(counts), "rolled_back": True}


# --------------------------------------------------------------------------------------------
# state: present
# --------------------------------------------------------------------------------------------

def import_gateways(chirpstack_params, target_params, tenant_map=None,
                    platform_tenant_id=PLATFORM_TENANT_ID, online_window=DEFAULT_ONLINE_WINDOW,
                    dry_run=False, connect=None):
    """Import every ChirpStack gateway into V6. Returns the module result (JSON-safe dict)."""
    connect = connect or connection.connect
    run_id = str(uuid.uuid4())
    counts = {"inserted": 0, "updated": 0, "unchanged": 0, "rejected": 0}
    state = {"phase": "validate"}
    queries = []
    cs_conn = target_conn = None
    committed = False
    try:
        platform = _validate_options(platform_tenant_id, online_window, tenant_map)
        state["phase"] = "connect"
        cs_conn = connect(chirpstack_params, "chirpstack")
        cs_conn.set_session(readonly=True, isolation_level="REPEATABLE READ")
        target_conn = connect(target_params, "target")
        cs, target = _session(cs_conn, queries), _session(target_conn, queries)

        state["phase"] = "lock"
        _lock(target)
        state["phase"] = "introspect"
        for table in ("gateways", "sensor_devices", "display_devices"):
            _check_rls(target, table)
        plan = plan_columns(_live_columns(target, TARGET_TABLE))
        now = target.scalar(SQL_NOW)

        state["phase"] = "read"
        v6_tenants = target.all(SQL_V6_TENANTS)
        v6_slug = {canonical_uuid(t[0]): t[1] for t in v6_tenants}
        inactive = {canonical_uuid(t[0]) for t in v6_tenants if t[3] is False}
        if platform not in v6_slug:
            raise ConfigError(f"the platform tenant {platform} does not exist in the target's tenants "
                              f"table; set platform_tenant_id to the V6 platform tenant (V6 tenant "
                              f"slugs: {', '.join(sorted(v6_slug.values())) or '(none)'})")
        sites = target.all(SQL_V6_SITES) if _table_exists(target, "sites") else []
        cs_tenants = cs.all(SQL_CS_TENANTS)
        explicit, warnings = resolve_tenant_map(tenant_map, cs_tenants, v6_tenants)
        cs_rows = cs.all(SQL_CS_GATEWAYS)
        names = ("gateway_id", "tenant_id", "tenant_name", "name", "description", "latitude",
                 "longitude", "altitude", "last_seen_at", "stats_interval_secs", "tags",
                 "properties", "created_at", "updated_at")
        gateways = [dict(zip(names, r)) for r in cs_rows]
        for gw in gateways:
            gw["tenant_id"] = canonical_uuid(gw["tenant_id"])

        state["phase"] = "owners"
        device_tenants = _device_tenants(cs, target, platform, warnings)
        reading_tenants = _reading_tenants(target, platform, warnings)

        state["phase"] = "plan"
        imported, rejects, wanted = [], [], []
        for gw in gateways:
            gateway_hex, reason = gateway_id_hex(gw["gateway_id"])
            if reason:
                rejects.append({"gateway_id": bytes(gw["gateway_id"] or b"").hex(), "name": gw["name"],
                                "chirpstack_tenant": gw["tenant_name"], "reason": reason})
                continue
            heard = heard_tenants(gw["tenant_id"], gateway_hex, device_tenants, reading_tenants,
                                  platform)
            owner, rule = resolve_owner(gw["tenant_id"], explicit, heard, platform)
            site_id, site_rule = resolve_site(gw["tags"], gw["description"], owner, sites)
            status = gateway_status(gw["last_seen_at"], now, int(online_window))
            row = desired_row(gw, gateway_hex, owner, status, site_id, plan)
            problems = length_problems(row, plan)
            if problems:
                rejects.append({"gateway_id": gateway_hex, "name": gw["name"],
                                "chirpstack_tenant": gw["tenant_name"], "reason": "; ".join(problems)})
                continue
            if owner in inactive:
                warnings.append(f"gateway {gateway_hex} goes to V6 tenant {v6_slug[owner]!r}, "
                                f"which is inactive")
            wanted.append((gw, row))
            imported.append({
                "gateway_id": gateway_hex, "name": row["name"],
                "chirpstack_tenant": gw["tenant_name"], "chirpstack_tenant_id": gw["tenant_id"],
                "v6_tenant_id": owner, "v6_tenant_slug": v6_slug.get(owner),
                "owner_rule": rule, "heard_tenants": [v6_slug.get(t, t) for t in heard],
                "status": status, "site_id": site_id, "site_rule": site_rule,
                "action": None, "gateway_row_id": None,
            })
        counts["rejected"] = len(rejects)

        state["phase"] = "write"
        before_count = target.scalar(SQL_COUNT)
        if _write(target, plan, run_id, wanted, imported, counts, warnings):
            ledger.finish(target.conn.cursor(), run_id, "succeeded", counts, {})
        after_count = target.scalar(SQL_COUNT)

        if dry_run:
            target_conn.rollback()
        else:
            target_conn.commit()
            committed = True
        changed = counts["inserted"] + counts["updated"] > 0
        return {
            "changed": changed, "run_id": run_id, "imported": imported, "counts": counts,
            "rejects": rejects, "warnings": warnings, "executed_queries": queries,
            "schema": {"written_columns": sorted(set(REQUIRED_COLUMNS) | set(plan["optional"])),
                       "skipped_columns": plan["skipped"]},
            "diff": {"before": {"gateways": before_count}, "after": {"gateways": after_count}},
        }
    except ParkingError as exc:
        exc.progress = _progress(run_id, state["phase"], counts)
        raise
    except _db_errors() as exc:
        detail = " ".join(str(exc).split())
        err = ImportFailed(f"gateway import failed during {state['phase']}: {detail}; the target "
                           f"transaction was rolled back, nothing was written")
        err.progress = _progress(run_id, state["phase"], counts)
        raise err from exc
    finally:
        _close(cs_conn)
        if not committed:
            _close(target_conn)
        elif target_conn is not None:
            target_conn.close()


def _device_tenants(cs, target, platform, warnings):
    """{ChirpStack tenant id: set of V6 tenant ids of its devices present in V6 (not platform)}."""
    by_eui = {}
    for tenant_id, dev_eui in cs.all(SQL_CS_DEVICES):
        eui = normalize_eui(dev_eui)
        if eui:
            by_eui.setdefault(eui, set()).add(canonical_uuid(tenant_id))
    result = {}
    if not by_eui:
        return result
    for table in ("sensor_devices", "display_devices"):
        if not _table_exists(target, table):
            warnings.append(f"the target has no {table} table; its devices cannot decide owners")
            continue
        for eui, v6_tenant in target.all(SQL_V6_DEVICE_TENANTS.format(table=table),
                                         (sorted(by_eui), platform)):
            for cs_tenant in by_eui.get(eui, ()):
                result.setdefault(cs_tenant, set()).add(canonical_uuid(v6_tenant))
    return result


def _reading_tenants(target, platform, warnings):
    """{gateway hex: set of V6 tenant ids of V6 readings received through it (not platform)}."""
    if not _table_exists(target, "sensor_readings"):
        warnings.append("the target has no sensor_readings table; V6 uplinks cannot decide owners")
        return {}
    result = {}
    for gateway_hex, tenant_id in target.all(SQL_V6_READING_TENANTS, (platform,)):
        result.setdefault(gateway_hex, set()).add(canonical_uuid(tenant_id))
    return result


def _existing_rows(target, plan, gateway_ids):
    """Existing V6 rows for these gateway ids (case-insensitive), as dicts with 'image'."""
    cols = ["tenant_id", "gateway_id", "name", "status", "config"] + \
        [c for c in CONTENT_COLUMNS + ("site_id",) if c in plan["optional"]]
    order = "g.created_at, g.id" if "created_at" in plan["columns"] else "g.id"
    sql = (f"SELECT g.id::text, to_jsonb(g)::text, {', '.join('g.' + c for c in cols)} "
           f"FROM gateways g WHERE upper(g.gateway_id) = ANY(%s) ORDER BY {order}")
    rows = []
    for rec in target.all(sql, (sorted(gateway_ids),)):
        row = dict(zip(cols, rec[2:]))
        row["id"], row["image"] = rec[0], rec[1]
        row["tenant_id"] = canonical_uuid(row["tenant_id"])
        rows.append(row)
    return rows


def _ensure_ledger(target, run_id, state):
    """Before the first write: the ledger, created or brought up to date, and this run in it."""
    if not state["ready"]:
        cur = target.conn.cursor()
        ledger.ensure(cur)
        ledger.start(cur, run_id, PHASE, "import", "present", False)
        state["ready"] = True


def _write(target, plan, run_id, wanted, imported, counts, warnings):
    """Insert, update or leave each wanted row; record every write in the ledger. True if it wrote."""
    if not wanted:
        return False
    existing = _existing_rows(target, plan, [row["gateway_id"] for _, row in wanted])
    state = {"ready": False}
    ours = {r[0] for r in target.all(SQL_LEDGER_INSERTED)} if ledger.exists(target.conn.cursor()) else set()
    by_gateway = {}
    for row in existing:
        by_gateway.setdefault(row["gateway_id"].upper(), []).append(row)

    for (gw, want), item in zip(wanted, imported):
        candidates = by_gateway.get(want["gateway_id"], [])
        same = [r for r in candidates if r["tenant_id"] == want["tenant_id"]]
        if len(same) > 1:
            warnings.append(f"V6 has {len(same)} rows for gateway {want['gateway_id']} in tenant "
                            f"{item['v6_tenant_slug']!r} (no unique key, J48); the oldest "
                            f"({same[0]['id']}) is kept in sync, the others are left alone")
        mine_elsewhere = [r for r in candidates if r["id"] in ours
                          and r["tenant_id"] != want["tenant_id"]]
        if same and mine_elsewhere:
            warnings.append(f"gateway {want['gateway_id']}: row(s) "
                            f"{', '.join(r['id'] for r in mine_elsewhere)} inserted by an earlier run "
                            f"under another tenant remain; state=absent removes them")
        moved = mine_elsewhere if not same else []
        current = same[0] if same else (moved[0] if moved else None)
        if current is None:
            row_id = str(uuid.uuid4())
            _ensure_ledger(target, run_id, state)
            _insert(target, plan, row_id, gw, want)
            target.execute(SQL_LEDGER_INSERT, (want["gateway_id"], row_id, row_id, run_id))
            item["action"], item["gateway_row_id"] = "inserted", row_id
            counts["inserted"] += 1
            continue
        item["gateway_row_id"] = current["id"]
        # Re-homing one of our own rows (tenant_map changed): a site of the old tenant must
        # not follow it, so site_id is written even when None.
        rehome = current["tenant_id"] != want["tenant_id"]
        diffs = row_differences(current, want, plan)
        if rehome and "tenant_id" not in diffs:
            diffs.append("tenant_id")
        if not diffs:
            item["action"] = "unchanged"
            counts["unchanged"] += 1
            continue
        _ensure_ledger(target, run_id, state)
        _update(target, plan, current["id"], want, clear_site=rehome)
        target.execute(SQL_LEDGER_UPDATE, (run_id, current["id"], current["image"]))
        item["action"], item["changed_columns"] = "updated", sorted(diffs)
        counts["updated"] += 1
    return state["ready"]


def _insert(target, plan, row_id, gw, want):
    types = plan["columns"]
    cols, marks, params = ["id"], ["%s::uuid"], [row_id]
    for col, value in want.items():
        mark, param = _sql_value(col, value, types.get(col))
        cols.append(col)
        marks.append(mark)
        params.append(param)
    if "created_at" in plan["optional"]:
        cols.append("created_at")
        marks.append("%s")
        params.append(_time_value(gw.get("created_at"), types["created_at"]))
    if "updated_at" in plan["optional"]:
        cols.append("updated_at")
        marks.append(_now_sql(types["updated_at"]))
    target.execute(f"INSERT INTO gateways ({', '.join(cols)}) VALUES ({', '.join(marks)})", params)


def _update(target, plan, row_id, want, clear_site=False):
    types = plan["columns"]
    sets, params = [], []
    for col, value in want.items():
        if col == "site_id" and value is None and not clear_site:
            continue    # keep a site V6 users assigned when ChirpStack names none
        if col == "config":
            sets.append("config = coalesce(config, '{}'::jsonb) || "
                        "jsonb_build_object('chirpstack', %s::jsonb)")
            params.append(json.dumps(value, sort_keys=True))
            continue
        mark, param = _sql_value(col, value, types.get(col))
        sets.append(f"{col} = {mark}")
        params.append(param)
    if "updated_at" in plan["optional"]:
        sets.append(f"updated_at = {_now_sql(types['updated_at'])}")
    params.append(row_id)
    target.execute(f"UPDATE gateways SET {', '.join(sets)} WHERE id = %s::uuid", params)


def _now_sql(data_type):
    return "(now() AT TIME ZONE 'UTC')" if data_type == "timestamp without time zone" else "now()"


# --------------------------------------------------------------------------------------------
# state: absent
# --------------------------------------------------------------------------------------------

def remove_gateways(target_params, dry_run=False, connect=None):
    """Undo every recorded import through rollback-1's own path (rollback.undo_gateways): rows it
    updated restored as they were, rows it inserted deleted."""
    connect = connect or connection.connect
    run_id = str(uuid.uuid4())
    counts = {"deleted": 0, "restored": 0, "missing": 0}
    state = {"phase": "connect"}
    queries, warnings = [], []
    target_conn = None
    committed = False
    try:
        target_conn = connect(target_params, "target")
        target = _session(target_conn, queries)
        cur = target_conn.cursor()
        state["phase"] = "lock"
        _lock(target)
        state["phase"] = "introspect"
        _check_rls(target, TARGET_TABLE)
        before_count = target.scalar(SQL_COUNT)
        runs = []
        if ledger.exists(cur):
            rollback.refuse_while_v6_serves(cur)
            runs, found = rollback.gateway_records(cur)
            if runs:
                state["phase"] = "restore"
                ledger.begin(cur)
                ledger.start(cur, run_id, PHASE, "rollback", "absent", dry_run)
                undone = rollback.undo_gateways(cur, target.execute)
                counts["restored"], counts["deleted"] = undone["gateways_restored"], undone["gateways"]
                gone = (found["inserted"] - found["inserted_present"], found["updated"] - found["updated_present"])
                counts["missing"] = sum(gone)
                if gone[0]:
                    warnings.append(f"{gone[0]} gateway row(s) phase 1 inserted were already deleted")
                if gone[1]:
                    warnings.append(f"{gone[1]} gateway row(s) phase 1 updated no longer exist; nothing to restore")
                ledger.finish(cur, run_id, "succeeded", counts, {})
        after_count = target.scalar(SQL_COUNT)
        if dry_run:
            target_conn.rollback()
        else:
            target_conn.commit()
            committed = True
        return {
            "changed": counts["deleted"] + counts["restored"] > 0 or bool(runs),
            "run_id": run_id, "rolled_back_runs": runs, "counts": counts, "warnings": warnings,
            "executed_queries": queries, "imported": [], "rejects": [],
            "diff": {"before": {"gateways": before_count}, "after": {"gateways": after_count}},
        }
    except ParkingError as exc:
        exc.progress = _progress(run_id, state["phase"], counts)
        raise
    except _db_errors() as exc:
        detail = " ".join(str(exc).split())
        err = ImportFailed(f"gateway rollback failed during {state['phase']}: {detail}; the target "
                           f"transaction was rolled back, nothing was changed")
        err.progress = _progress(run_id, state["phase"], counts)
        raise err from exc
    finally:
        if not committed:
            _close(target_conn)
        elif target_conn is not None:
            target_conn.close()
