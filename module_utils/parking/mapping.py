"""V5 -> V6 value mapping rules (reference/v5-to-v6-mapping.md §3).

Each rule is data (a dict) with a Python function for unit tests and reports, and a
SQL rendering (`sql_case`) the engine uses set-based on staging tables. Both come
from the same dict, so the migration and the verification gate cannot drift apart.
"""
import hashlib
import re
import uuid

PLATFORM_TENANT_ID = "00000000-0000-0000-0000-000000000000"

# §3.2 space state: V6 current_state is the lowercase of V5's state
SPACE_STATE = {"FREE": "free", "OCCUPIED": "occupied", "RESERVED": "reserved", "MAINTENANCE": "maintenance"}
SPACE_STATE_DEFAULT = "unknown"

# §3.3 reservation status (V6's L0 CHECK: active, completed, cancelled, no_show)
RESERVATION_STATUS = {
    "pending": "active", "confirmed": "active", "active": "active",
    "cancelled": "cancelled", "expired": "completed", "completed": "completed", "no_show": "no_show",
}
RESERVATION_STATUS_DEFAULT = "completed"

# §3.4 membership roles: V5's platform_admin becomes owner in the platform tenant
MEMBERSHIP_ROLE = {"owner": "owner", "admin": "admin", "operator": "operator", "viewer": "viewer",
                   "platform_admin": "owner"}

# §3.4 reading occupancy
READING_OCCUPIED = {"OCCUPIED": True, "FREE": False}


def space_state(v5_state):
    return SPACE_STATE.get((v5_state or "").upper(), SPACE_STATE_DEFAULT)


def reservation_status(v5_status):
    return RESERVATION_STATUS.get((v5_status or "").lower(), RESERVATION_STATUS_DEFAULT)


def membership(v5_role, v5_tenant_id, platform_tenant_id=PLATFORM_TENANT_ID):
    """(role, tenant) of the V6 membership for a V5 one: platform admins move to the platform tenant."""
    role = MEMBERSHIP_ROLE.get(v5_role)
    if role is None:
        return None, None
    tenant = platform_tenant_id if v5_role == "platform_admin" else v5_tenant_id
    return role, tenant


def device_state(v5_status, linked):
    """§3.1: (status, lifecycle_state, enabled) of a V6 device from V5 status and its space link.

    The link decides (V5 has ACTIVE_BUT_UNASSIGNED and ORPHAN_BUT_ASSIGNED rows);
    decommissioned devices stay decommissioned and disabled.
    """
    if v5_status == "decommissioned":
        return ("unassigned", "decommissioned", False) if not linked else ("assigned", "decommissioned", False)
    if linked:
        return "assigned", "operational", True
    return "unassigned", "provisioned", True


def tenant_type(tenant_id, platform_tenant_id=PLATFORM_TENANT_ID):
    return "platform" if str(tenant_id) == platform_tenant_id else "customer"


_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def slugify(name):
    """V6's site slug rule (fix-v6-schema.sql): lowercase, runs of non-alphanumerics -> '-'."""
    slug = _NON_ALNUM.sub("-", (name or "").lower()).strip("-")
    return slug or "site"


def split_name(name):
    """V6 first_name/last_name: first word / second word (as V6's fix script did)."""
    parts = (name or "").split()
    return (parts[0] if parts else None, parts[1] if len(parts) > 1 else None)


def derived_uuid(kind, v5_key):
    """Deterministic V6 id for a row the migration creates from a V5 row without a uuid
    (history rows) or whose V5 id is taken in V6. Stable across runs: the natural key of
    idempotence."""
    return str(uuid.UUID(hashlib.md5(f"parking-migrate:{kind}:{v5_key}".encode()).hexdigest()))


def sequential_uuid(kind, v5_int_id):
    """Deterministic V6 id for a V5 row with an integer id (history): a fixed per-kind prefix and
    the id in hex, so ids increase with the V5 id and a bulk load appends to the primary-key
    index instead of writing all over it. Unique per (kind, id)."""
    prefix = hashlib.md5(f"parking-migrate:{kind}".encode()).hexdigest()[:16]
    return str(uuid.UUID(prefix + format(int(v5_int_id), "016x")))


def sql_sequential_uuid(kind, int_expr):
    """sequential_uuid in SQL."""
    prefix = hashlib.md5(f"parking-migrate:{kind}".encode()).hexdigest()[:16]
    return f"('{prefix}' || lpad(to_hex({int_expr}), 16, '0'))::uuid"


def sql_derived_uuid(kind, key_expr):
    """The same id computed in SQL: md5('parking-migrate:<kind>:' || key)::uuid."""
    return f"md5('parking-migrate:{kind}:' || ({key_expr})::text)::uuid"


def sql_literal(value):
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    return "'" + str(value).replace("'", "''") + "'"


def sql_case(expr, mapping, default):
    """Render a value map as a SQL CASE over `expr`."""
    whens = " ".join(f"WHEN {sql_literal(k)} THEN {sql_literal(v)}" for k, v in mapping.items())
    return f"(CASE {expr} {whens} ELSE {sql_literal(default)} END)"
