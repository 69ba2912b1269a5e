"""The V5 estate shared by every database: tenants, sites, spaces and devices, by key.

Keys (not ids) tie the databases together: ``World.id("v5.space.P1-01")`` is the V5 id of that
space, the V4 row in parking_platform reuses it, ChirpStack's device names follow the device
keys. Comments name the edge case each odd row exists for (see edge_cases.py).
"""
from .world import DEFAULT_SITE, DEFAULT_TENANT, PLATFORM_TENANT

# V6 tenant ids keep the 8-digit prefixes recorded from the V6 dump (v6-schema.md §3.1).
V6_TENANT_PREFIXES = {
    "test-company": "11e69704",
    "test-company-2": "819aa601",
    "acme-parking": "7723ee83",
    "city-parking": "400edd20",
    "demo-parking": "af92fb7e",
}

LIVE_SENSOR_EUIS = ("58A0CB00001196F3", "58A0CB0000115B4E", "58A0CB000011590D")

# key -> (name, slug, is_active, days before the anchor it was created)
TENANTS = {
    "platform": ("Platform Admin", "platform-admin", True, 35),   # hand-made …0000
    "default": ("Default Organization", "default", True, 120),   # M002 seed …0001
    "verdegris": ("Verdegris Parking", "verdegris", True, 90),     # holds the live sensors
    "acme": ("Acme Parking", "acme-parking", True, 60),           # new id, slug V6 already uses
    "city": ("City Parking", "city-parking", False, 70),          # inactive; id shared with V6
}

# key -> (tenant key, name, timezone, is_active)
SITES = {
    "default": ("default", "Default Site", "UTC", True),
    "vg-main": ("verdegris", "Verdegris Parking - Main Site", "Europe/Paris", True),
    "vg-cp1": ("verdegris", "Car Park #1", "Europe/Paris", True),      # slug car-park-1 ...
    "vg-cp1b": ("verdegris", "Car-Park 1", "Europe/Paris", True),      # ... same slug
    "city-main": ("city", "Main Parking Lot", "Europe/Paris", True),   # V6 has it, other id
    "acme-main": ("acme", "Acme Parking - Main Site", "Europe/London", True),
    "platform-bench": ("platform", "Platform Test Bench", "UTC", False),
}

# Sensors: key -> (dev_eui as stored, status, device_type, enabled, legacy row?)
SENSORS = {
    "live1": (LIVE_SENSOR_EUIS[0], "active", "browan_tbms100", True, False),
    "live2": (LIVE_SENSOR_EUIS[1], "active", "browan_tbms100", True, False),   # fcnt reset
    "live3": (LIVE_SENSOR_EUIS[2], "active", "browan_tbms100", True, False),
    "fk-a001": ("58A0CB0000102A11", "active", "browan_tbms100", True, False),  # FK + EUI on A001
    "two-spaces": ("58A0CB0000103B22", "active", "browan_tbms100", True, False),  # A002+AC-01
    "deleted-only": ("58A0CB0000104C33", "active", "browan_tbms100", True, False),  # AC-02 only
    "orphan": ("58A0CB0000105D44", "orphan", "orphan", True, False),           # no space, correct
    "wrongly-active": ("58A0CB0000106E55", "active", "browan_tbms100", True, False),  # no space
    "orphan-assigned": ("58A0CB0000107F66", "orphan", "orphan", True, False),  # linked anyway
    "decommissioned": ("58A0CB0000108A77", "decommissioned", "browan_tbms100", False, False),
    "lowercase": ("58a0cb0000109b88", "inactive", "browan_tbms100", True, True),  # pre-M011 row
    "malformed": ("A8404100018E4D", "orphan", "orphan", True, True),           # 14 hex digits
    "kuando-dual": ("2020203705250102", "orphan", "kuando_busylight", True, False),  # dual role
}

# Displays: key -> (dev_eui as stored, status, device_type, enabled, legacy row?)
DISPLAYS = {
    "kuando-dual": ("2020203705250102", "active", "kuando_busylight", True, False),
    "kuando-two": ("202020390C0E0F10", "active", "kuando_busylight", True, False),  # 2 spaces
    "no-eui": ("", "inactive", "epaper_display", True, True),   # NOT NULL column: '' not NULL
}

# Spaces: key = code -> dict. sensor/display = device key linked by EUI; *_fk = linked by id.
SPACES = {
    "A001": dict(site="default", name="A001", building="Building A", floor="Ground", zone="North",
                 sensor="fk-a001", sensor_fk="fk-a001", state="FREE", age=120),
    "A002": dict(site="default", name="A002", building="Building A", floor="Ground", zone="North",
                 sensor_fk="two-spaces", state="FREE", age=120),    # stale FK, EUI cleared
    "B001": dict(site="default", name="B001", building="Building B", floor="Ground", zone="South",
                 sensor="lowercase", state="OCCUPIED", age=120),   # registry row is lowercase
    "P1-01": dict(site="vg-main", name="Level 1 - Bay 01", building="Main", floor="1", zone="P1",
                  sensor="live1", state="OCCUPIED", age=85, v4=True, gps=(48.85661400, 2.35222190)),
    "P1-02": dict(site="vg-main", name="Level 1 - Bay 02", building="Main", floor="1", zone="P1",
                  sensor="live2", state="FREE", age=85, v4=True, gps=(48.85663100, 2.35225400)),
    "P1-03": dict(site="vg-main", name="Level 1 - Bay 03", building="Main", floor="1", zone="P1",
                  sensor="live3", display="kuando-dual", state="FREE", age=80),
    "P1-04": dict(site="vg-main", name="Level 1 - Bay 04", building="Main", floor="1", zone="P1",
                  display="kuando-two", state="FREE", age=80, deleted=20),
    "CP1-01": dict(site="vg-cp1", name="Car Park 1 - Bay 01", building="CP1", floor="0", zone="A",
                   sensor="orphan-assigned", display="kuando-two", state="FREE", age=40),
    "CP1B-01": dict(site="vg-cp1b", name="Car-Park 1 - Bay 01", building="CP1B", floor="0",
                    zone="A", display_fk="no-eui", state="MAINTENANCE", age=38),
    "MPL-01": dict(site="city-main", name="Main Lot - 01", building="Lot", floor="0", zone="Z1",
                   sensor="decommissioned", state="FREE", age=65),
    "AC-01": dict(site="acme-main", name="Acme Bay 01", building="HQ", floor="-1", zone="B",
                  sensor="two-spaces", state="FREE", age=55),
    "AC-02": dict(site="acme-main", name="Acme Bay 02", building="HQ", floor="-1", zone="B",
                  sensor="deleted-only", state="FREE", age=55, deleted=10),
    # V5's display_eui is unique among live spaces, its display_device_id is not: kuando-two is
    # also linked (by id) from a live space of another tenant
    "AC-03": dict(site="acme-main", name="Acme Bay 03", building="HQ", floor="-1", zone="B",
                  display_fk="kuando-two", state="FREE", age=50),
}

# An EUI that sent readings (and is in orphan_devices) but is in no registry and no longer in
# ChirpStack; and two ChirpStack devices V5 has never heard of.
UNKNOWN_READING_EUI = "0004A30B001C0F3E"
CHIRPSTACK_ONLY_EUIS = {"cs-only-1": "A840417E61835A1B", "cs-only-2": "70B3D57ED005F2C3"}


def tenant_id(world, key):
    """Return the V5 id of tenant ``key`` (fixed ids for the seeded/hand-made/shared ones)."""
    if key == "platform":
        return PLATFORM_TENANT
    if key == "default":
        return DEFAULT_TENANT
    if key == "city":
        return v6_tenant_id(world, "city-parking")
    return world.id(f"v5.tenant.{key}")


def v6_tenant_id(world, slug):
    """Return the V6 id of the tenant with ``slug``."""
    if slug == "platform":
        return PLATFORM_TENANT
    if slug == "default":
        return DEFAULT_TENANT
    return world.id(f"v6.tenant.{slug}", prefix=V6_TENANT_PREFIXES.get(slug))


def site_id(world, key):
    """Return the V5 id of site ``key``."""
    if key == "default":
        return DEFAULT_SITE
    return world.id(f"v5.site.{key}")


def space_id(world, code):
    """Return the V5 id of space ``code``."""
    return world.id(f"v5.space.{code}")


def sensor_id(world, key):
    """Return the V5 id of sensor ``key``."""
    return world.id(f"v5.sensor.{key}")


def display_id(world, key):
    """Return the V5 id of display ``key``."""
    return world.id(f"v5.display.{key}")


def space_tenant_key(code):
    """Return the tenant key of space ``code`` (through its site)."""
    return SITES[SPACES[code]["site"]][0]


def is_hex16(eui):
    """True when ``eui`` is 16 hex digits (either case)."""
    return len(eui) == 16 and all(c in "0123456789abcdefABCDEF" for c in eui)
