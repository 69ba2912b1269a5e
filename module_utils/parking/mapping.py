"""V5 -> V6 value mapping rules (reference/v5-to-v6-mapping.md §3).

Each rule is data (a dict) with a Python function for unit tests and reports, and a
SQL rendering (`sql_case`) the engine uses set-based on staging tables; both come from the
same dict. The rules sqlfrag.py writes in SQL by hand (slug, device state, history cutoff,
EUI, ids) are run on PostgreSQL against these functions by tests/integration/test_mapping_sql.py,
which lists the inputs where the two still differ. The verification gate does not use these
rules: oracle.py restates them on purpose, so that a wrong rule here fails the gate.
"""
import datetime as dt
import hashlib
import re
import uuid

PLATFORM_TENANT_ID = "00000000-0000-0000-0000-000000000000"

# §3.2 space state: V6 current_state is the lowercase of V5's state
SPACE_STATE = {"FREE": "free", "OCCUPIED": "occupied", "RESERVED": "reserved", "MAINTENANCE": "maintenance"}
SPACE_STATE_DEFAULT = "unknown"

# Reading occupancy: V6 sensor_readings.occupied from V5 occupancy_state (any case); any other
# value, or none, is NULL. Rollback-3 (backsync) maps it back with the reverse table.
OCCUPANCY = {"OCCUPIED": True, "FREE": False}
OCCUPANCY_V5 = {occupied: state for state, occupied in OCCUPANCY.items()}

# §3.3 reservation status (V6's L0 CHECK: active, completed, cancelled, no_show)
RESERVATION_STATUS = {
    "pending": "active", "confirmed": "active", "active": "active",
    "cancelled": "cancelled", "expired": "completed", "completed": "completed", "no_show": "no_show",
}
RESERVATION_STATUS_DEFAULT = "completed"
# A reservation whose window has ended (end_time <= the run's time) is never left 'active': V6's
# expiry job would write 'expired', which its CHECK rejects. It is closed as 'completed'.
RESERVATION_ONGOING = "active"
RESERVATION_ENDED_STATUS = "completed"

# Owner of the V5 bookings without a V6 user (anonymous, or an email no V6 user has): V6's
# reservation list requires a non-null user_id. One inactive user that can never log in.
ANONYMOUS_USER_EMAIL = "v5-anonymous-bookings@parking-migrate.invalid"
ANONYMOUS_USER_NAME = "V5 anonymous bookings"
ANONYMOUS_USER_METADATA = {"created_by": "parking-migrate",
                           "purpose": "user_id of V5 bookings made without a V6 user (the booking "
                                      "email stays in reservations.user_email)"}

# A row an earlier run migrated that V6 has deleted since: V6's deletion wins (not re-created)
V6_DELETED_REASON = "migrated by an earlier run, then deleted in V6: not re-created (V6's deletion wins)"

# V6's cleanup deletes sensor_readings with received_at older than this (background_jobs.py)
HISTORY_RETENTION_DAYS = 90

# §3.4 membership roles: V5's platform_admin becomes owner in the platform tenant
MEMBERSHIP_ROLE = {"owner": "owner", "admin": "admin", "operator": "operator", "viewer": "viewer",
                   "platform_admin": "owner"}
# The user's V5 tenant is where V5's login lands: the oldest active membership, except for a
# platform admin, who lands in the platform view (V6: owner in the platform tenant). Rank first.
MEMBERSHIP_RANK = {"platform_admin": 1}
# V6 login takes the membership with the latest created_at: the primary one is made the latest
# by this margin above the others
LOGIN_ORDER_STEP = dt.timedelta(milliseconds=1)



def space_state(v5_state):
    return SPACE_STATE.get((v5_state or "").upper(), SPACE_STATE_DEFAULT)


def occupied(v5_occupancy_state):
    """V6 sensor_readings.occupied of a V5 reading: True, False, or None (unknown or missing)."""
    return OCCUPANCY.get((v5_occupancy_state or "").upper())


def v5_occupancy_state(v6_occupied):
    """The reverse (rollback-3): V5 occupancy_state of a V6 reading, None when occupied is NULL."""
    return OCCUPANCY_V5.get(v6_occupied)


def reservation_status(v5_status, end_time=None, now=None):
    """V6 status of a V5 reservation; one whose window has ended (end_time <= now) is never active."""
    status = RESERVATION_STATUS.get((v5_status or "").lower(), RESERVATION_STATUS_DEFAULT)
    if status == RESERVATION_ONGOING and end_time is not None and now is not None and end_time <= now:
        return RESERVATION_ENDED_STATUS
    return status


def primary_membership(memberships):
    """The V5 membership that decides where a user lands at login, as V5's login picks it: active
    first, in an active tenant first, a platform_admin one first, then the oldest created_at, then
    the id. `memberships`: dicts with is_active, tenant_active, role, created_at, id. (V5 users have
    no tenant column: tenancy is memberships.)"""
    def key(m):
        created = m.get("created_at")
        return (0 if m.get("is_active") is False else -1, 0 if m.get("tenant_active") is False else -1,
                -MEMBERSHIP_RANK.get(m.get("role"), 0),
                (0, created) if created is not None else (1, dt.datetime.max), str(m.get("id")))
    return min(memberships, key=key) if memberships else None


def login_order(primary_at, others_at):
    """created_at the primary membership needs so it is strictly the latest of the user's
    memberships: kept when already later than every other one, else max(others) + 1 ms."""
    top = max((t for t in others_at if t is not None), default=None)
    if top is None or (primary_at is not None and primary_at > top):
        return primary_at
    return top + LOGIN_ORDER_STEP


def history_cutoff(now, retention_days):
    """History older than this is not migrated (V6 would delete it): now - retention_days.
    None when retention_days is 0 or unset (migrate all of it)."""
    if not retention_days or int(retention_days) <= 0:
        return None
    return now - dt.timedelta(days=int(retention_days))


def history_kept(moment, cutoff):
    """A history row at `moment` is migrated: no cutoff, no time (left to the rejects), or not older."""
    return cutoff is None or moment is None or moment >= cutoff


def retention_recorded(previous_days, days):
    """The retention a run records for the gate: the shortest one any run applied (rows it skipped
    stay skipped, the watermark is past them); 0 only when no run applied one."""
    applied = [int(d) for d in (previous_days, days) if d and int(d) > 0]
    return min(applied) if applied else 0


_BCRYPT = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def unusable_password_hash(key):
    """A bcrypt-shaped hash of no password at all: salt and digest are derived from `key` (so the
    row is the same in every run), not computed by bcrypt from any secret. V6's passlib parses it
    and no password verifies against it."""
    digest = hashlib.sha512(f"parking-migrate:no-password:{key}".encode()).digest()
    chars = [_BCRYPT[b % 64] for b in digest]
    salt = "".join(chars[:21]) + _BCRYPT[::16][digest[21] % 4]
    body = "".join(chars[22:52]) + _BCRYPT[::4][digest[52] % 16]
    return "$2b$12$" + salt + body


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
    """A literal in SQL built without a connection (rule tables, module-level constants). The one
    quoter not from psycopg2, on purpose: see quote.py (exact with standard_conforming_strings on,
    which every connection sets)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    return "'" + str(value).replace("'", "''") + "'"


def sql_case(expr, mapping, default):
    """Render a value map as a SQL CASE over `expr`."""
    whens = " ".join(f"WHEN {sql_literal(k)} THEN {sql_literal(v)}" for k, v in mapping.items())
    return f"(CASE {expr} {whens} ELSE {sql_literal(default)} END)"
