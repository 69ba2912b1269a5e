"""Rows of parking_platform, the legacy V4 database (naive timestamps, as V4 stored them).

The two V4 spaces flagged ``v4`` in fleet.SPACES keep the id V5 gave them when
migrate_v4_spaces.sql copied them (that script reuses V4's space_id). One archived and one
disabled space show what the copy skipped.
"""
from . import fleet

V4_SPACES = (
    # (code, name, archived, enabled, sensor deveui, state)
    ("P1-01", "Level 1 - Bay 01", False, True, fleet.SENSORS["live1"][0].lower(), "OCCUPIED"),
    ("P1-02", "Level 1 - Bay 02", False, True, fleet.SENSORS["live2"][0].lower(), "FREE"),
    ("P0-OLD", "Ground - old bay", True, True, "58a0cb00000f0e0d", "FREE"),
    ("P0-OFF", "Ground - disabled bay", False, False, None, "FREE"),
)


def v4_space_id(world, code):
    """V4 ids of migrated spaces are V5's ids; the others are V4-only."""
    if code in fleet.SPACES:
        return fleet.space_id(world, code)
    return world.id(f"v4.space.{code}")


def space_rows(world):
    rows = []
    for index, (code, name, archived, enabled, deveui, state) in enumerate(V4_SPACES):
        created = world.naive(world.at(days=-300 + index))
        rows.append(dict(
            space_id=v4_space_id(world, code), space_name=name, space_code=code,
            building="Main" if code.startswith("P1") else "Annex", floor=code[1], zone="P1",
            gps_latitude=None, gps_longitude=None, occupancy_sensor_deveui=deveui,
            display_device_deveui=None, current_state=state, space_metadata={"source": "v4"},
            notes="", location_description=f"{name}, ramp side", maintenance_mode=False,
            enabled=enabled, archived=archived, created_at=created,
            updated_at=world.naive(world.at(days=-200))))
    return rows


def device_rows(world):
    devices = ((fleet.SENSORS["live1"][0].lower(), "browan_tabs"),
               (fleet.SENSORS["live2"][0].lower(), "browan_tabs"),
               ("58a0cb00000f0e0d", "browan_tabs"),
               ("2020203705250102", "kuando_busylight"))
    return [dict(deveui=eui, device_type=kind, description=None, enabled=True,
                 created_at=world.naive(world.at(days=-310)))
            for eui, kind in devices]


def raw_uplink_rows(world):
    rng = world.rng("v4.uplinks")
    rows = []
    for index in range(20):
        eui = (fleet.SENSORS["live1"][0], fleet.SENSORS["live2"][0])[index % 2].lower()
        rows.append(dict(uplink_id=index + 1, deveui=eui,
                         received_at=world.naive(world.at(days=-210, minutes=index * 17)),
                         fport=102, fcnt=100 + index // 2,
                         payload_hex="01" if index % 3 else "00", rssi=rng.randint(-115, -70),
                         snr=round(rng.uniform(-5, 10), 1), gateway_eui="ac1f09fffe0a1b2c",
                         raw_json={"devEUI": eui, "fPort": 102}))
    return rows


def processed_rows(world):
    return [dict(id=row["uplink_id"], uplink_id=row["uplink_id"], deveui=row["deveui"],
                 occupancy="occupied" if row["payload_hex"] == "01" else "free",
                 battery_volts=3.4, temperature_c=17.0, processed_at=row["received_at"])
            for row in raw_uplink_rows(world)]


def actuation_rows(world):
    return [dict(id=index + 1, space_id=v4_space_id(world, "P1-01"),
                 display_deveui="2020203705250102", new_state=state,
                 payload_hex="FF00000000" if state == "OCCUPIED" else "0000FF0000",
                 sent_at=world.naive(world.at(days=-205, hours=index)),
                 created_at=world.naive(world.at(days=-205, hours=index)))
            for index, state in enumerate(("OCCUPIED", "FREE", "OCCUPIED", "FREE"))]


def reservation_rows(world):
    return [dict(id=world.id(f"v4.reservation.{index}"), space_id=v4_space_id(world, code),
                 reserved_by=who, starts_at=world.naive(world.at(days=-220 + index, hours=8)),
                 ends_at=world.naive(world.at(days=-220 + index, hours=10)), status=status,
                 created_at=world.naive(world.at(days=-221 + index)))
            for index, (code, who, status) in enumerate((("P1-01", "ops", "completed"),
                                                         ("P1-02", "visitor", "cancelled"),
                                                         ("P0-OLD", "ops", "completed")))]


def tables(world):
    """(table, rows) in foreign-key order."""
    return [
        ("parking_config.devices", device_rows(world)),
        ("parking_spaces.spaces", space_rows(world)),
        ("ingest.raw_uplinks", raw_uplink_rows(world)),
        ("transform.processed_uplinks", processed_rows(world)),
        ("parking_operations.actuations", actuation_rows(world)),
        ("parking_operations.reservations", reservation_rows(world)),
    ]


SEQUENCES = (("ingest.raw_uplinks", "uplink_id"), ("transform.processed_uplinks", "id"),
             ("parking_operations.actuations", "id"))
