"""Rows of the chirpstack database (v4.15 shape; chirpstack-v4.md).

Every V5 registry device with a valid 16-hex EUI has a ChirpStack ``device`` row (a dual-role
Kuando EUI only once, dev_eui is the key), plus two devices V5 has never heard of. Each tenant has
an application "parking" with one HTTP integration pointing at ``--integration-url``; the lab's
uplink simulator reads it. Gateways sit under several tenants with the odd cases V5's UI and the
import must handle. ChirpStack has no column defaults: every NOT NULL column is supplied.
"""
from . import fleet, history

# Diesel versions of ChirpStack's migrations up to v4.15 (those whose directory names are known).
DIESEL_VERSIONS = (
    "00000000000000", "20220426153628", "20220511084032", "20220614130020", "20221102090533",
    "20230103201442", "20230206135050", "20230213103316", "20230216091535", "20230925105457",
    "20231019142614", "20231122120700", "20240207083424", "20240326134652", "20240430103242",
    "20240613122655", "20240916123034", "20241112135745", "20250113152218", "20250121093745",
    "20250605100843", "20250804085822", "20251001085546",
)

# key -> (name, description, days before the anchor it was created)
TENANTS = {
    "chirpstack": ("ChirpStack", "", 400),          # seeded by ChirpStack's initial migration
    "verdegris": ("Verdegris", "Verdegris parking customer", 90),
    "acme": ("Acme Parking", "", 60),
    "field-test": ("Field Test", "Gateways on loan", 30),
}

# ChirpStack tenant of each device (V5 device key, or a CHIRPSTACK_ONLY_EUIS key).
DEVICE_TENANT = {
    "live1": "verdegris", "live2": "verdegris", "live3": "verdegris",
    "orphan-assigned": "verdegris", "kuando-dual": "verdegris", "kuando-two": "verdegris",
    "two-spaces": "acme", "deleted-only": "acme",
    "fk-a001": "chirpstack", "orphan": "chirpstack", "wrongly-active": "chirpstack",
    "decommissioned": "chirpstack", "lowercase": "chirpstack",
    "cs-only-1": "verdegris", "cs-only-2": "chirpstack",
}

SENSOR_PROFILE = "browan_tbms100_motion"
DISPLAY_PROFILE = "plenom_kuando_busylight"


def tenant_id(world, key):
    return world.id(f"cs.tenant.{key}")


def application_id(world, key):
    return world.id(f"cs.application.{key}")


def profile_id(world, tenant, profile):
    return world.id(f"cs.profile.{tenant}.{profile}")


def diesel_rows(world):
    return [dict(version=version, run_on=world.naive(world.at(days=-400, minutes=index)))
            for index, version in enumerate(DIESEL_VERSIONS)]


def tenant_rows(world):
    return [dict(id=tenant_id(world, key), created_at=world.at(days=-age),
                 updated_at=world.at(days=-age), name=name, description=description,
                 can_have_gateways=True, max_device_count=0, max_gateway_count=0,
                 private_gateways_up=False, private_gateways_down=False, tags={})
            for key, (name, description, age) in TENANTS.items()]


def application_rows(world):
    return [dict(id=application_id(world, key), tenant_id=tenant_id(world, key),
                 created_at=world.at(days=-age + 1), updated_at=world.at(days=-age + 1),
                 name="parking", description="Smart parking uplinks", mqtt_tls_cert=None, tags={})
            for key, (_, _, age) in TENANTS.items()]


def integration_rows(world):
    configuration = {"Http": {"headers": {}, "json": True,
                              "event_endpoint_url": world.integration_url}}
    return [dict(application_id=application_id(world, key), kind="Http",
                 created_at=world.at(days=-age + 1), updated_at=world.at(days=-5),
                 configuration=configuration)
            for key, (_, _, age) in TENANTS.items()]


def _profile_tenants():
    return sorted(set(DEVICE_TENANT.values()))


def profile_rows(world):
    rows = []
    for tenant in _profile_tenants():
        for name, display in ((SENSOR_PROFILE, False), (DISPLAY_PROFILE, True)):
            rows.append(dict(
                id=profile_id(world, tenant, name), tenant_id=tenant_id(world, tenant),
                created_at=world.at(days=-85), updated_at=world.at(days=-85), name=name,
                region="EU868", mac_version="1.0.3" if not display else "1.0.2",
                reg_params_revision="A" if not display else "B", adr_algorithm_id="default",
                payload_codec_runtime="NONE", uplink_interval=3600 if not display else 86400,
                device_status_req_interval=1, supports_otaa=True, supports_class_b=False,
                supports_class_c=display, tags={}, payload_codec_script="",
                flush_queue_on_activate=True, description="", measurements={},
                auto_detect_measurements=True, region_config_id=None, allow_roaming=False,
                rx1_delay=0, abp_params=None, class_b_params=None,
                class_c_params={"timeout": 5} if display else None, relay_params=None,
                app_layer_params={}))
    return rows


def _chirpstack_devices():
    """Yield (key, eui, is_display) for every device ChirpStack knows."""
    seen = set()
    for registry, is_display in ((fleet.SENSORS, False), (fleet.DISPLAYS, True)):
        for key, (eui, *_rest) in registry.items():
            if not fleet.is_hex16(eui) or eui.upper() in seen:
                continue
            seen.add(eui.upper())
            yield key, eui, is_display or eui.upper().startswith("202020")
    for key, eui in fleet.CHIRPSTACK_ONLY_EUIS.items():
        yield key, eui, False


def _last_seen(world, rng, key):
    """Live sensors a few seconds ago, the retired one months ago, the unheard one never."""
    if key == "cs-only-2":
        return None
    if key.startswith("live"):
        return world.at(seconds=-7)
    if key == "decommissioned":
        return world.at(days=-75)
    return world.at(seconds=-rng.randint(600, 90000))


def device_rows(world):
    newest_fcnt = history.last_fcnt(world)
    rows = []
    for key, eui, is_display in _chirpstack_devices():
        rng = world.rng(f"cs.device.{key}")
        tenant = DEVICE_TENANT[key]
        never_seen = key == "cs-only-2"
        disabled = key == "decommissioned"
        rows.append(dict(
            dev_eui=bytes.fromhex(eui), application_id=application_id(world, tenant),
            device_profile_id=profile_id(world, tenant,
                                         DISPLAY_PROFILE if is_display else SENSOR_PROFILE),
            created_at=world.at(days=-80 + len(rows)), updated_at=world.at(days=-10),
            last_seen_at=_last_seen(world, rng, key),
            scheduler_run_after=None, name=f"{'display' if is_display else 'sensor'}-{key}",
            description="", external_power_source=is_display,
            battery_level=None if is_display else round(rng.uniform(60, 99), 2),
            margin=None if never_seen else rng.randint(2, 20), dr=None if never_seen else 5,
            latitude=None, longitude=None, altitude=None,
            dev_addr=None if never_seen else rng.getrandbits(32).to_bytes(4, "big"),
            enabled_class="C" if is_display else "A", skip_fcnt_check=False,
            is_disabled=disabled, tags={}, variables={}, join_eui=bytes(8),
            secondary_dev_addr=None, device_session=None, app_layer_params={},
            f_cnt_up=newest_fcnt.get(key, 0 if never_seen else rng.randint(100, 5000))))
    return rows


def gateway_rows(world):
    vg_site = fleet.SITES["vg-main"][1]
    gateways = (
        # (hex id, tenant, name, description, lat, lon, last seen (s before anchor) or None, tags)
        ("ac1f09fffe0a1b2c", "verdegris", "Verdegris Main Gateway", vg_site,
         48.8566, 2.3522, 30, {"site_id": str(fleet.site_id(world, "vg-main")),
                               "site_name": vg_site,
                               "assigned_at": world.at(days=-40).isoformat()}),
        ("ac1f09fffe0a1b2d", "verdegris", "Car Park Gateway", "", 0.0, 0.0, 120, {}),
        ("0016c001ff10a235", "chirpstack", "Lab Bench Gateway", "", 51.5072, -0.1276, None, {}),
        ("b827ebfffe61a8c4", "acme", "Acme Gateway", "", 51.5007, -0.1246, 172800, {}),
        ("7076ff0056060d1e", "field-test", "Field Test Gateway", "On loan",
         43.2965, 5.3698, 600, {}),
    )
    rows = []
    for hex_id, tenant, name, description, lat, lon, seen, tags in gateways:
        properties = {} if seen is None else {"region_config_id": "eu868",
                                             "region_common_name": "EU868"}
        rows.append(dict(
            gateway_id=bytes.fromhex(hex_id), tenant_id=tenant_id(world, tenant),
            created_at=world.at(days=-70), updated_at=world.at(days=-40),
            last_seen_at=None if seen is None else world.at(seconds=-seen), name=name,
            description=description, latitude=lat, longitude=lon,
            altitude=0.0 if lat == 0 else 35.0,
            stats_interval_secs=30, tls_certificate=None, tags=tags, properties=properties))
    return rows


def tables(world):
    """(table, rows) in foreign-key order."""
    return [
        ("__diesel_schema_migrations", diesel_rows(world)),
        ("tenant", tenant_rows(world)),
        ("application", application_rows(world)),
        ("application_integration", integration_rows(world)),
        ("device_profile", profile_rows(world)),
        ("device", device_rows(world)),
        ("gateway", gateway_rows(world)),
    ]
