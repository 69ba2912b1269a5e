"""Unit tests of the pure mapping rules (module_utils/parking/eui.py, mapping.py)."""
import pytest

from parking import mapping
from parking.eui import eui_reject_reason, normalize_eui


@pytest.mark.parametrize("raw,expected", [
    ("58a0cb00001196f3", "58A0CB00001196F3"),
    ("58A0CB00001196F3", "58A0CB00001196F3"),
    ("58:a0:cb:00:00:11:96:f3", "58A0CB00001196F3"),
    ("58-A0-CB-00-00-11-96-F3", "58A0CB00001196F3"),
    (b"\x00\x16\xc0\x01\xff\x10\xa2\x35", "0016C001FF10A235"),
    ("58A0CB00001196F", None),        # 15 digits
    ("58A0CB00001196FG", None),       # not hex
    ("", None),
    (None, None),
])
def test_normalize_eui(raw, expected):
    assert normalize_eui(raw) == expected


def test_eui_reject_reasons():
    assert eui_reject_reason(None) == "missing EUI"
    assert eui_reject_reason("  ") == "missing EUI"
    assert "malformed EUI" in eui_reject_reason("XYZ")
    assert eui_reject_reason("0011223344556677") is None


@pytest.mark.parametrize("v5,v6", [("FREE", "free"), ("OCCUPIED", "occupied"), ("RESERVED", "reserved"),
                                   ("MAINTENANCE", "maintenance"), (None, "unknown"), ("weird", "unknown")])
def test_space_state(v5, v6):
    assert mapping.space_state(v5) == v6


@pytest.mark.parametrize("v5,v6", [("pending", "active"), ("confirmed", "active"), ("active", "active"),
                                   ("cancelled", "cancelled"), ("expired", "completed"),
                                   ("completed", "completed"), ("no_show", "no_show")])
def test_reservation_status(v5, v6):
    assert mapping.reservation_status(v5) == v6


def test_reservation_status_targets_fit_v6_check():
    assert set(mapping.RESERVATION_STATUS.values()) <= {"active", "completed", "cancelled", "no_show"}


def test_platform_admin_becomes_owner_in_platform_tenant():
    assert mapping.membership("platform_admin", "t1") == ("owner", mapping.PLATFORM_TENANT_ID)
    assert mapping.membership("viewer", "t1") == ("viewer", "t1")
    assert mapping.membership("bogus", "t1") == (None, None)


@pytest.mark.parametrize("status,linked,expected", [
    ("active", True, ("assigned", "operational", True)),
    ("active", False, ("unassigned", "provisioned", True)),      # ACTIVE_BUT_UNASSIGNED
    ("orphan", True, ("assigned", "operational", True)),         # ORPHAN_BUT_ASSIGNED
    ("orphan", False, ("unassigned", "provisioned", True)),
    ("inactive", False, ("unassigned", "provisioned", True)),
    ("decommissioned", False, ("unassigned", "decommissioned", False)),
])
def test_device_state_follows_the_link(status, linked, expected):
    assert mapping.device_state(status, linked) == expected


def test_tenant_type():
    assert mapping.tenant_type(mapping.PLATFORM_TENANT_ID) == "platform"
    assert mapping.tenant_type("00000000-0000-0000-0000-000000000001") == "customer"


@pytest.mark.parametrize("name,slug", [("Main Site", "main-site"), ("Main-Site", "main-site"),
                                       ("  Gare du Nord / P2 ", "gare-du-nord-p2"), ("", "site")])
def test_slugify(name, slug):
    assert mapping.slugify(name) == slug


def test_split_name():
    assert mapping.split_name("Ada Lovelace King") == ("Ada", "Lovelace")
    assert mapping.split_name("Plato") == ("Plato", None)
    assert mapping.split_name("") == (None, None)


def test_derived_uuid_is_stable_and_distinct():
    a = mapping.derived_uuid("sensor_readings", 1)
    assert a == mapping.derived_uuid("sensor_readings", 1)
    assert a != mapping.derived_uuid("sensor_readings", 2)
    assert a != mapping.derived_uuid("state_changes", 1)


def test_sql_case_renders_every_pair_and_escapes():
    sql = mapping.sql_case("s.state", {"FREE": "free", "O'X": "o"}, "unknown")
    assert "WHEN 'FREE' THEN 'free'" in sql and "WHEN 'O''X' THEN 'o'" in sql
    assert sql.endswith("ELSE 'unknown' END)")


def test_sequential_uuid_is_stable_unique_and_increasing():
    a, b = mapping.sequential_uuid("sensor_readings", 1), mapping.sequential_uuid("sensor_readings", 2)
    assert a == mapping.sequential_uuid("sensor_readings", 1)
    assert a < b < mapping.sequential_uuid("sensor_readings", 10 ** 12)
    assert mapping.sequential_uuid("state_changes", 1) != a
    assert mapping.sql_sequential_uuid("sensor_readings", "s.id").startswith("('" + a.replace("-", "")[:16])
