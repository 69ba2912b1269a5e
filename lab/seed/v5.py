"""Rows of parking_v5, sized like production (v5-schema.md §10) plus the edge cases.

``legacy_tables`` are loaded between the two halves of lab/sql/parking_v5.sql (before the EUI
CHECKs and upper-casing triggers existed); ``tables`` after the whole schema; the bulk history
is streamed by history.py. Every timestamp is explicit (no now() defaults), so reruns are
byte-identical.
"""
from . import fleet, history
from .world import DEFAULT_TENANT

ALL_SCOPES = ["spaces:read", "spaces:write", "devices:read", "devices:write",
              "reservations:read", "reservations:write", "webhook:ingest", "telemetry:read"]
BROWAN_CAPABILITIES = {"occupancy": True, "temperature": True, "battery": True}
DEV_KEY_PLACEHOLDER_HASH = "$2b$12$placeholder.hash.for.development.key.only"

KUANDO_CODES = {"FREE": "0000FF0000", "OCCUPIED": "FF00000000", "RESERVED": "FFA5000000",
                "MAINTENANCE": "80008000FF"}
EPAPER_CODES = {"FREE": "01", "OCCUPIED": "02", "RESERVED": "03", "MAINTENANCE": "04"}

# (user key, email, name, days since creation)
USERS = (
    ("admin", "Admin@verdegris.eu", "Lab Admin", 118),    # V6 has admin@verdegris.eu
    ("ops", "ops@verdegris.eu", "Operations Team", 88),   # id reused by a V6 user
    ("acme", "manager@acme-parking.com", "Acme Manager", 59),
)

# (user key, tenant key, role, is_active)
MEMBERSHIPS = (
    ("admin", "platform", "platform_admin", True),
    ("admin", "default", "owner", True),
    ("admin", "verdegris", "owner", True),
    ("ops", "verdegris", "operator", True),
    ("ops", "city", "viewer", True),
    ("acme", "acme", "owner", True),
    ("acme", "default", "viewer", False),
)

RESERVATION_STATUSES = ("pending", "confirmed", "cancelled", "expired",
                        "active", "completed", "no_show")
RESERVATION_SPACES = ("P1-01", "P1-02", "P1-03", "CP1-01", "AC-01", "A001", "MPL-01")


def user_id(world, key):
    return world.id(f"v5.user.{key}")


def tenant_rows(world):
    rows = []
    for key, (name, slug, active, age) in fleet.TENANTS.items():
        metadata = {"description": "Default tenant for existing data"} if key == "default" else {}
        if key == "platform":
            metadata = {"description": "Platform meta-tenant, created by hand"}
        rows.append(dict(id=fleet.tenant_id(world, key), name=name, slug=slug, metadata=metadata,
                         settings={}, is_active=active, created_at=world.at(days=-age),
                         updated_at=world.at(days=-age + (5 if not active else 0))))
    return rows


def user_rows(world):
    return [dict(id=user_id(world, key), email=email, name=name,
                 password_hash=world.bcrypt_hash(f"v5.user.{key}"), metadata={},
                 is_active=True, email_verified=key != "acme", created_at=world.at(days=-age),
                 updated_at=world.at(days=-age), last_login_at=world.at(days=-1, hours=8))
            for key, email, name, age in USERS]


def membership_rows(world):
    return [dict(id=world.id(f"v5.membership.{user}.{tenant}"), user_id=user_id(world, user),
                 tenant_id=fleet.tenant_id(world, tenant), role=role, metadata={},
                 is_active=active, created_at=world.at(days=-50), updated_at=world.at(days=-50))
            for user, tenant, role, active in MEMBERSHIPS]


def site_rows(world):
    rows = []
    for key, (tenant, name, tz, active) in fleet.SITES.items():
        age = fleet.TENANTS[tenant][3] - 1
        location = {"city": "Default", "country": "Unknown"} if key == "default" else {
            "address": f"{name} street 1", "city": "Paris" if tenant == "verdegris" else "London",
            "country": "FR" if tenant == "verdegris" else "GB"}
        rows.append(dict(id=fleet.site_id(world, key), tenant_id=fleet.tenant_id(world, tenant),
                         name=name, timezone=tz, location=location, metadata={},
                         is_active=active, created_at=world.at(days=-age),
                         updated_at=world.at(days=-age)))
    return rows


def device_type_rows(world):
    types = (
        ("browan_tbms100", "sensor", "Browan TBMS100 motion", "Browan", "BrowanTabsHandler",
         "confirmed", "browan_tbms100_motion"),
        ("kuando_busylight", "display", "Kuando Busylight IoT Omega", "Plenom",
         "KuandoBusylightHandler", "confirmed", "plenom_kuando_busylight"),
        ("epaper_display", "display", "E-paper bay display", "Generic", None, "confirmed", None),
        ("unknown_a84041", "sensor", "Auto-discovered A84041 device", None, None, "orphan", None),
    )
    return [dict(id=world.id(f"v5.device-type.{code}"), type_code=code, category=category,
                 name=name, manufacturer=maker, handler_class=handler, default_config={},
                 capabilities={"occupancy": True} if category == "sensor" else {},
                 enabled=status == "confirmed", status=status, chirpstack_profile_name=profile,
                 chirpstack_profile_id=None, sample_payload=None, sample_raw_payload=None,
                 confirmed_at=world.at(days=-100) if status == "confirmed" else None,
                 confirmed_by="admin@verdegris.eu" if status == "confirmed" else None,
                 notes=None, created_at=world.at(days=-110), updated_at=world.at(days=-100))
            for code, category, name, maker, handler, status, profile in types]


def _type_id(world, device_type):
    known = {"browan_tbms100", "kuando_busylight", "epaper_display"}
    code = device_type if device_type in known else "unknown_a84041"
    return world.id(f"v5.device-type.{code}")


def _last_seen(world, key, status):
    if key.startswith("live"):
        return world.at(seconds=-7)
    if status == "decommissioned":
        return world.at(days=-75)
    return world.at(days=-2, hours=-world.rng(f"seen:{key}").randint(0, 40))


def sensor_rows(world, legacy):
    """Sensor registry rows; ``legacy`` selects the pre-M011 rows or the others."""
    rows = []
    for index, (key, (eui, status, dtype, enabled, is_legacy)) in enumerate(fleet.SENSORS.items()):
        if is_legacy != legacy:
            continue
        browan = dtype == "browan_tbms100"
        rows.append(dict(
            id=fleet.sensor_id(world, key), dev_eui=eui, device_type=dtype,
            device_type_id=_type_id(world, dtype),
            device_model="TBMS100" if browan else None,
            manufacturer="Browan" if browan else ("Plenom" if dtype.startswith("kuando") else None),
            payload_decoder="BrowanTabsHandler" if browan else None,
            capabilities=BROWAN_CAPABILITIES if browan else {},
            status=status, enabled=enabled, last_seen_at=_last_seen(world, key, status),
            created_at=world.at(days=-100 + index * 4), updated_at=world.at(days=-30 + index),
            device_name=f"sensor-{key}"))
    return rows


def display_rows(world, legacy):
    """Display registry rows; ``legacy`` selects the pre-M011 rows or the others."""
    rows = []
    for index, (key, (eui, status, dtype, enabled, is_legacy)) in enumerate(fleet.DISPLAYS.items()):
        if is_legacy != legacy:
            continue
        kuando = dtype == "kuando_busylight"
        rows.append(dict(
            id=fleet.display_id(world, key), dev_eui=eui, device_type=dtype,
            device_type_id=_type_id(world, dtype),
            device_model="Busylight IoT Omega" if kuando else "EPD-2.9",
            manufacturer="Plenom" if kuando else "Generic",
            display_codes=KUANDO_CODES if kuando else EPAPER_CODES,
            fport=15 if kuando else 1, confirmed_downlinks=kuando, status=status,
            enabled=enabled,
            last_seen_at=_last_seen(world, f"display-{key}", status) if kuando else None,
            created_at=world.at(days=-95 + index * 5), updated_at=world.at(days=-25 + index),
            device_name=f"display-{key}"))
    return rows


def _space_eui(spec, role):
    """The EUI a space stores for ``role`` (sensor/display): uppercase, as M011 left it."""
    key = spec.get(role)
    if key is None:
        return None
    registry = fleet.SENSORS if role == "sensor" else fleet.DISPLAYS
    return registry[key][0].upper()


def space_rows(world):
    rows = []
    for code, spec in fleet.SPACES.items():
        metadata = None
        if spec.get("v4"):
            metadata = {"migrated_from_v4": True,
                        "v4_location_description": f"{spec['name']}, ramp side",
                        "v4_notes": "", "maintenance_mode": False}
        lat, lon = spec.get("gps", (None, None))
        sensor_fk = spec.get("sensor_fk")
        display_fk = spec.get("display_fk")
        deleted = spec.get("deleted")
        rows.append(dict(
            id=fleet.space_id(world, code), name=spec["name"], code=code,
            building=spec["building"], floor=spec["floor"], zone=spec["zone"],
            gps_latitude=lat, gps_longitude=lon,
            sensor_eui=_space_eui(spec, "sensor"), display_eui=_space_eui(spec, "display"),
            state=spec["state"], metadata=metadata,
            created_at=world.at(days=-spec["age"]), updated_at=world.at(days=-(deleted or 3)),
            deleted_at=world.at(days=-deleted) if deleted else None,
            site_id=fleet.site_id(world, spec["site"]),
            tenant_id=fleet.tenant_id(world, fleet.space_tenant_key(code)),
            sensor_device_id=fleet.sensor_id(world, sensor_fk) if sensor_fk else None,
            display_device_id=fleet.display_id(world, display_fk) if display_fk else None))
    return rows


def api_key_rows(world):
    return [
        dict(id=world.id("v5.api-key.dev"), key_hash=DEV_KEY_PLACEHOLDER_HASH,
             key_name="Development Key", last_used_at=None, is_active=True,
             created_at=world.at(days=-120), is_admin=False, tenant_id=DEFAULT_TENANT,
             scopes=ALL_SCOPES, revoked_by=None),
        dict(id=world.id("v5.api-key.verdegris"),
             key_hash=world.bcrypt_hash("v5.api-key.verdegris", world.hex_token("v5.api-key")),
             key_name="Verdegris integration", last_used_at=world.at(hours=-3), is_active=True,
             created_at=world.at(days=-80), is_admin=False,
             tenant_id=fleet.tenant_id(world, "verdegris"),
             scopes=["spaces:read", "spaces:write", "devices:read", "reservations:read",
                     "reservations:write", "webhook:ingest"], revoked_by=None),
        dict(id=world.id("v5.api-key.legacy-admin"),
             key_hash=world.bcrypt_hash("v5.api-key.legacy-admin", world.hex_token("v5.admin-key")),
             key_name="Legacy admin key", last_used_at=world.at(days=-70), is_active=False,
             created_at=world.at(days=-115), is_admin=True, tenant_id=None,
             scopes=["spaces:read", "devices:read"], revoked_by=user_id(world, "admin")),
    ]


def webhook_secret_rows(world):
    return [dict(id=world.id(f"v5.webhook-secret.{tenant}"),
                 tenant_id=fleet.tenant_id(world, tenant),
                 secret_hash=world.hex_token(f"v5.webhook-secret.{tenant}"), algorithm="HS256",
                 is_active=active, created_at=world.at(days=-days))
            for tenant, active, days in (("verdegris", True, 40), ("acme", False, 50))]


def display_policy_rows(world):
    base = dict(description=None, is_active=True, reserved_soon_threshold_sec=900,
                sensor_unknown_timeout_sec=60, debounce_window_sec=10, occupied_color="FF0000",
                free_color="00FF00", reserved_color="FFA500", reserved_soon_color="FFFF00",
                blocked_color="808080", out_of_service_color="800080",
                blink_reserved_soon=False, blink_pattern_ms=500, allow_sensor_override=True,
                updated_at=None, created_by=user_id(world, "admin"))
    default = dict(base, id=world.id("v5.display-policy.default"), tenant_id=DEFAULT_TENANT,
                   name="Default policy", created_at=world.at(days=-60))
    custom = dict(base, id=world.id("v5.display-policy.verdegris"),
                  tenant_id=fleet.tenant_id(world, "verdegris"), name="Verdegris blink policy",
                  description="Blink amber 15 minutes before a reservation",
                  blink_reserved_soon=True, reserved_soon_color="FFBF00",
                  created_at=world.at(days=-45), updated_at=world.at(days=-20))
    return [default, custom]


def debounce_rows(world):
    states = (("P1-01", "occupied", "occupied", None), ("P1-02", "vacant", "vacant", None),
              ("P1-03", "occupied", "vacant", "occupied"))
    rows = []
    for code, last, stable, pending in states:
        display = "OCCUPIED" if stable == "occupied" else "FREE"
        rows.append(dict(
            space_id=fleet.space_id(world, code), last_sensor_state=last,
            last_sensor_timestamp=world.at(seconds=-8), last_sensor_rssi=-97, last_sensor_snr=7.5,
            pending_sensor_state=pending, pending_since=world.at(seconds=-8) if pending else None,
            pending_count=1 if pending else 0, stable_sensor_state=stable,
            stable_since=world.at(hours=-2), last_display_state=display,
            last_display_color="FF0000" if display == "OCCUPIED" else "00FF00",
            last_display_blink=False, last_display_updated_at=world.at(hours=-2),
            updated_at=world.at(seconds=-8)))
    return rows


def override_rows(world):
    return [
        dict(id=world.id("v5.override.cp1b"), space_id=fleet.space_id(world, "CP1B-01"),
             tenant_id=fleet.tenant_id(world, "verdegris"), override_type="out_of_service",
             start_time=world.at(days=-6), end_time=None, reason="Barrier broken",
             notes="Waiting for contractor", created_by=user_id(world, "ops"),
             created_at=world.at(days=-6), is_active=True),
        dict(id=world.id("v5.override.mpl"), space_id=fleet.space_id(world, "MPL-01"),
             tenant_id=fleet.tenant_id(world, "city"), override_type="blocked",
             start_time=world.at(days=-40), end_time=world.at(days=-39), reason="Event",
             notes=None, created_by=user_id(world, "acme"), created_at=world.at(days=-41),
             is_active=False),
    ]


def reservation_rows(world):
    """Every status, once in the past and once in the future, plus one on a deleted space."""
    emails = ("admin@verdegris.eu", "ops@verdegris.eu", "visitor@example.com",
              "Manager@Acme-Parking.com", None)
    rows = []
    slots = [(status, when) for status in RESERVATION_STATUSES for when in ("past", "future")]
    for index, (status, when) in enumerate(slots):
        code = RESERVATION_SPACES[index % len(RESERVATION_SPACES)]
        day = -(index + 2) if when == "past" else index + 2
        start = world.at(days=day, hours=9)
        created = world.at(days=min(day, 0) - 3)
        rows.append(_reservation(world, f"{status}-{when}", code, start, start.replace(hour=11),
                                 status, emails[index % len(emails)], created))
    start = world.at(days=-15, hours=14)
    rows.append(_reservation(world, "deleted-space", "AC-02", start, start.replace(hour=16),
                             "completed", "visitor@example.com", world.at(days=-16)))
    # still confirmed, in the future, on a space deleted since: it must not become a live booking
    start = world.at(days=60, hours=8)
    rows.append(_reservation(world, "deleted-space-future", "AC-02", start, start.replace(hour=10),
                             "confirmed", "Manager@Acme-Parking.com", world.at(days=-12)))
    return rows


def _reservation(world, key, code, start, end, status, email, created):
    return dict(
        id=world.id(f"v5.reservation.{key}"), space_id=fleet.space_id(world, code),
        start_time=start, end_time=end, user_email=email,
        user_phone="+33600000000" if email else None, status=status,
        metadata={"external_system": "lab", "reservation_type": "standard",
                  "grace_period_minutes": 15},
        created_at=created, updated_at=created,
        request_id=world.id(f"v5.reservation-request.{key}"),
        tenant_id=fleet.tenant_id(world, fleet.space_tenant_key(code)))


def orphan_device_rows(world):
    orphans = (
        ("unknown", fleet.UNKNOWN_READING_EUI, 412, None),
        ("lowercase", "a84041000181c0de", 17, None),    # written by an older, non-normalising app
        ("registry-orphan", fleet.SENSORS["orphan"][0], 230, None),
        ("assigned", fleet.SENSORS["orphan-assigned"][0], 96, "CP1-01"),
        ("malformed", fleet.SENSORS["malformed"][0], 3, None),
    )
    rows = []
    for key, eui, count, space in orphans:
        rows.append(dict(
            id=world.id(f"v5.orphan.{key}"), dev_eui=eui, first_seen=world.at(days=-60),
            last_seen=world.at(hours=-world.rng(f"orphan:{key}").randint(1, 300)),
            uplink_count=count, last_payload=bytes.fromhex("0100f61a03"),
            last_rssi=-104, last_snr=5.5,
            assigned_to_space_id=fleet.space_id(world, space) if space else None,
            assigned_at=world.at(days=-39) if space else None))
    return rows


def actuation_rows(world):
    displays = (("kuando-dual", "P1-03"), ("kuando-two", "CP1-01"))
    triggers = ("sensor_uplink", "api_reservation", "manual_override", "reservation_expired")
    rows = []
    for index in range(8):
        display, code = displays[index % 2]
        trigger = triggers[index % len(triggers)]
        new_state = ("OCCUPIED", "RESERVED", "MAINTENANCE", "FREE")[index % 4]
        created = world.at(days=-index - 1, hours=10)
        sent = index != 5
        rows.append(dict(
            id=world.id(f"v5.actuation.{index}"), space_id=fleet.space_id(world, code),
            trigger_type=trigger, trigger_source="lab", previous_state="FREE", new_state=new_state,
            display_eui=fleet.DISPLAYS[display][0],
            display_device_id=fleet.display_id(world, display) if index % 3 else None,
            display_code=KUANDO_CODES[new_state], fport=15, confirmed=sent and index % 2 == 0,
            downlink_sent=sent,
            downlink_queue_id=str(world.id(f"v5.downlink.{index}")) if sent else None,
            downlink_error=None if sent else "ChirpStack timeout", response_time_ms=120 + index * 7,
            retry_count=0 if sent else 3, created_at=created,
            sent_at=world.at(days=-index - 1, hours=10, seconds=1) if sent else None,
            confirmed_at=None, tenant_id=fleet.tenant_id(world, fleet.space_tenant_key(code))))
    return rows


def audit_rows(world):
    events = (
        ("verdegris", "admin", "user", "user.login", "user", None),
        ("verdegris", "admin", "user", "space.create", "space", "P1-03"),
        ("verdegris", "ops", "user", "device.assign", "space", "P1-01"),
        ("verdegris", None, "api_key", "reservation.create", "reservation", None),
        ("default", "admin", "user", "space.update", "space", "A002"),
        ("acme", "acme", "user", "space.delete", "space", "AC-02"),
        ("default", None, "system", "device.status_reset", "device", None),
        ("verdegris", None, "webhook", "uplink.rejected", "device", None),
    )
    rows = []
    for index, (tenant, user, actor, action, resource, code) in enumerate(events):
        rows.append(dict(
            id=world.id(f"v5.audit.{index}"), created_at=world.at(days=-30 + index * 3),
            tenant_id=fleet.tenant_id(world, tenant),
            user_id=user_id(world, user) if user else None,
            api_key_id=world.id("v5.api-key.verdegris") if actor == "api_key" else None,
            actor_type=actor, actor_name=user or actor, action=action, resource_type=resource,
            resource_id=fleet.space_id(world, code) if code else None,
            ip_address="10.20.0.%d" % (10 + index), user_agent="lab-seed",
            request_id=str(world.id(f"v5.audit-request.{index}")), old_values=None,
            new_values={"action": action}, metadata={}, success=actor != "webhook",
            error_message="invalid signature" if actor == "webhook" else None))
    return rows


def refresh_token_rows(world):
    tokens = (("admin", -1, 6, None), ("ops", -10, -3, None), ("acme", -5, 2, -4))
    return [dict(id=index + 1, user_id=user_id(world, user),
                 token_hash=world.hex_token(f"v5.refresh.{index}"),
                 created_at=world.at(days=created), expires_at=world.at(days=expires),
                 last_used_at=world.at(days=created, hours=1),
                 revoked_at=world.at(days=revoked) if revoked is not None else None,
                 device_fingerprint=None, ip_address="10.20.0.5", user_agent="Mozilla/5.0")
            for index, (user, created, expires, revoked) in enumerate(tokens)]


def legacy_reading_rows(world):
    """Readings from before M011: lowercase EUIs, no space, default tenant."""
    legacy = (("58a0cb0000109b88", 3), ("a84041000181c0de", 2))
    rows = []
    for eui, count in legacy:
        for n in range(count):
            rows.append(dict(id=len(rows) + 1, device_eui=eui, space_id=None,
                             occupancy_state="FREE" if n % 2 else "OCCUPIED", battery=3.31,
                             temperature=18.5, rssi=-101, snr=4.0,
                             timestamp=world.at(days=-45, minutes=n * 10),
                             tenant_id=DEFAULT_TENANT, fcnt=10 + n))
    return rows


def legacy_tables(world):
    """(table, rows) loaded before the second half of the schema (pre-M008/M011 rows)."""
    return [
        ("device_types", device_type_rows(world)),
        ("sensor_devices", sensor_rows(world, legacy=True)),
        ("display_devices", display_rows(world, legacy=True)),
        ("sensor_readings", legacy_reading_rows(world)),
    ]


def tables(world):
    """(table, rows) loaded after the whole schema, in foreign-key order."""
    return [
        ("tenants", tenant_rows(world)),
        ("users", user_rows(world)),
        ("user_memberships", membership_rows(world)),
        ("sites", site_rows(world)),
        ("sensor_devices", sensor_rows(world, legacy=False)),
        ("display_devices", display_rows(world, legacy=False)),
        ("spaces", space_rows(world)),
        ("api_keys", api_key_rows(world)),
        ("webhook_secrets", webhook_secret_rows(world)),
        ("display_policies", display_policy_rows(world)),
        ("sensor_debounce_state", debounce_rows(world)),
        ("space_admin_overrides", override_rows(world)),
        ("reservations", reservation_rows(world)),
        ("orphan_devices", orphan_device_rows(world)),
        ("actuations", actuation_rows(world)),
        ("audit_log", audit_rows(world)),
        ("refresh_tokens", refresh_token_rows(world)),
    ]


def history_streams(world):
    """(table, columns, row generator) for the bulk history, loaded with COPY."""
    first_reading_id = len(legacy_reading_rows(world)) + 1
    return [
        ("sensor_readings", history.READING_COLUMNS, history.readings(world, first_reading_id)),
        ("state_changes", history.STATE_CHANGE_COLUMNS, history.state_changes(world, 1)),
    ]


SEQUENCES = (("sensor_readings", "id"), ("state_changes", "id"), ("refresh_tokens", "id"))
