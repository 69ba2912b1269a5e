# PRIVATE: the parking-migrate engine. Plain Python (no Ansible imports) so it is
# importable and unit-testable on its own; the modules in library/ are thin wrappers.
"""The gateway import's rules: pure functions on plain data, no database (unit-tested on their own).

Ids (gateway_id_hex), status (gateway_status), position (location), the owner of a gateway
(resolve_tenant_map, heard_tenants, resolve_owner) and its site (resolve_site), adapting to the
live ``gateways`` columns (plan_columns), the row the import wants (chirpstack_config,
desired_row, length_problems), idempotence (row_differences) and how a value is written
(_sql_value, _time_value, _now_sql); the module's options (_validate_options).
"""
import datetime as dt
import json
import uuid

from ..errors import ConfigError, SchemaMismatch
from ..eui import normalize_eui
from ..mapping import PLATFORM_TENANT_ID

TARGET_TABLE = "gateways"
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


def _now_sql(data_type):
    return "(now() AT TIME ZONE 'UTC')" if data_type == "timestamp without time zone" else "now()"
