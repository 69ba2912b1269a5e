"""Rows of parking_v6 as the migration plan found it (2025-10-24): 8 tenants, 3 users with owner
memberships, 3 sites, 9 spaces, 1 API key, 0 devices (v6-schema.md §3.1, §10; MIGRATION_PLAN.md).

V6 was bootstrapped by running V5's own 001/002 migrations, so it carries V5's seed rows: tenant
and site …0001 with the same ids, spaces A001/A002/B001 with different ids. The cutover of
2025-10-23 left the three live sensors in orphan_devices. Clock: bootstrap three days before the
anchor, the eighth tenant (self-registered after the dump) two days before.
"""
from . import fleet, v5
from .world import DEFAULT_SITE, DEFAULT_TENANT

BOOTSTRAP_DAYS = -3

# slug -> (name, type, subscription tier, minutes after bootstrap)
TENANTS = {
    "default": ("Default Organization", "customer", "basic", 0),
    "platform": ("Platform", "platform", "enterprise", 2),
    "test-company": ("Test Company", "customer", "basic", 20),
    "test-company-2": ("Test Company 2", "customer", "basic", 24),
    "acme-parking": ("Acme Parking", "customer", "professional", 31),
    "city-parking": ("City Parking", "customer", "basic", 38),
    "demo-parking": ("Demo Parking", "trial", "basic", 45),
    "smoke-test": ("Smoke Test Org", "customer", "basic", 1740),   # registered after the dump
}

# key -> (email, name, owner of tenant slug, minutes after bootstrap)
USERS = {
    "admin": ("admin@verdegris.eu", "Lab Admin", "platform", 5),       # V5: Admin@verdegris.eu
    "demo": ("demo@demo-parking.com", "Demo Owner", "demo-parking", 46),  # id of V5 user 'ops'
    "smoke": ("owner@smoke-test.example", "Smoke Tester", "smoke-test", 1741),
}

# key -> (slug of its tenant, name, site slug as L2 generated it)
SITES = {
    "default": ("default", "Default Site", "default-site"),
    "city-main": ("city-parking", "Main Parking Lot", "main-parking-lot"),
    "demo-main": ("demo-parking", "Main Site", "main-site"),
}

# code -> (site key, name, current_state, minutes after bootstrap)
SPACES = {
    "A001": ("default", "A001", "unknown", 1),
    "A002": ("default", "A002", "unknown", 1),
    "B001": ("default", "B001", "unknown", 1),
    "A1": ("city-main", "Lot A - 1", "free", 40),
    "B5": ("city-main", "Lot B - 5", "occupied", 41),
    "C10": ("demo-main", "Bay C10", "free", 50),
    "E20": ("demo-main", "Bay E20", "unknown", 51),
    "TEST-001": ("demo-main", "Test space 1", "free", 55),
    "TEST-002": ("demo-main", "Test space 2", "maintenance", 56),
}


def _when(world, minutes):
    return world.at(days=BOOTSTRAP_DAYS, hours=9, minutes=9 + minutes)


def user_id(world, key):
    """V6 user ids; 'demo' reuses the id of V5 user 'ops' (same id, other email)."""
    if key == "demo":
        return v5.user_id(world, "ops")
    return world.id(f"v6.user.{key}")


def site_id(world, key):
    return DEFAULT_SITE if key == "default" else world.id(f"v6.site.{key}")


def tenant_rows(world):
    return [dict(id=fleet.v6_tenant_id(world, slug), name=name, slug=slug, metadata={},
                 settings={}, is_active=True, created_at=_when(world, minutes),
                 updated_at=_when(world, minutes), type=kind, subscription_tier=tier)
            for slug, (name, kind, tier, minutes) in TENANTS.items()]


def user_rows(world):
    rows = []
    for key, (email, name, _, minutes) in USERS.items():
        first, _, rest = name.partition(" ")
        rows.append(dict(id=user_id(world, key), email=email, name=name,
                         hashed_password=world.bcrypt_hash(f"v6.user.{key}"), metadata={},
                         is_active=True, email_verified=False, created_at=_when(world, minutes),
                         updated_at=_when(world, minutes),
                         last_login_at=world.at(days=-2, hours=11),
                         first_name=first, last_name=rest.split(" ")[0] or None, role=None))
    return rows


def membership_rows(world):
    return [dict(id=world.id(f"v6.membership.{key}"), user_id=user_id(world, key),
                 tenant_id=fleet.v6_tenant_id(world, slug), role="owner", metadata={},
                 is_active=True, created_at=_when(world, minutes), updated_at=_when(world, minutes))
            for key, (_, _, slug, minutes) in USERS.items()]


def site_rows(world):
    rows = []
    for key, (slug_of_tenant, name, slug) in SITES.items():
        location = {"city": "Default", "country": "Unknown"} if key == "default" else {
            "address": "1 Lab Street", "city": "Paris", "country": "FR"}
        rows.append(dict(id=site_id(world, key),
                         tenant_id=fleet.v6_tenant_id(world, slug_of_tenant),
                         name=name, timezone="UTC", location=location, metadata={},
                         is_active=True, created_at=_when(world, 0 if key == "default" else 39),
                         updated_at=_when(world, 0 if key == "default" else 39), slug=slug))
    return rows


def space_rows(world):
    rows = []
    for code, (site, name, current, minutes) in SPACES.items():
        tenant_slug = SITES[site][0]
        rows.append(dict(
            id=world.id(f"v6.space.{code}"), name=name, code=code,
            building="Building A" if code.startswith("A0") else None, floor=None, zone=None,
            gps_latitude=None, gps_longitude=None, sensor_eui=None, display_eui=None,
            state="FREE", metadata=None, created_at=_when(world, minutes),
            updated_at=_when(world, minutes), deleted_at=None, site_id=site_id(world, site),
            tenant_id=fleet.v6_tenant_id(world, tenant_slug), sensor_device_id=None,
            display_device_id=None, current_state=current, sensor_state=None, display_state=None,
            state_changed_at=None, enabled=True, auto_release_minutes=None, config={},
            display_name=name))
    return rows


def api_key_rows(world):
    return [dict(id=world.id("v6.api-key.dev"), key_hash=v5.DEV_KEY_PLACEHOLDER_HASH,
                 key_name="Development Key", last_used_at=None, is_active=True,
                 created_at=_when(world, 0), tenant_id=DEFAULT_TENANT)]


def orphan_device_rows(world):
    """The live sensors, recorded as orphans by V6's webhook after the cutover."""
    rows = []
    for index, eui in enumerate(fleet.LIVE_SENSOR_EUIS):
        first = world.at(days=-2, hours=13, minutes=16 + index)
        rows.append(dict(id=world.id(f"v6.orphan.{eui}"), dev_eui=eui,
                         first_seen=world.naive(first),
                         last_seen=world.naive(world.at(days=-1, hours=9, minutes=index)),
                         message_count=1900 + index * 37,
                         last_payload='{"fPort": 102, "data": "0100f61a03"}',
                         created_at=world.naive(first)))
    return rows


def tables(world):
    """(table, rows) in foreign-key order."""
    return [
        ("tenants", tenant_rows(world)),
        ("users", user_rows(world)),
        ("user_memberships", membership_rows(world)),
        ("sites", site_rows(world)),
        ("spaces", space_rows(world)),
        ("api_keys", api_key_rows(world)),
        ("orphan_devices", orphan_device_rows(world)),
    ]

