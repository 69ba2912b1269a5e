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


@pytest.mark.parametrize("v5,v6", [("OCCUPIED", True), ("occupied", True), ("Free", False), ("FREE", False),
                                   (None, None), ("", None), ("RESERVED", None), ("unknown", None)])
def test_occupied(v5, v6):
    assert mapping.occupied(v5) is v6


def test_occupancy_reverse_and_sql_come_from_one_table():
    from parking import sqlfrag
    assert mapping.v5_occupancy_state(True) == "OCCUPIED" and mapping.v5_occupancy_state(False) == "FREE"
    assert mapping.v5_occupancy_state(None) is None
    assert all(mapping.occupied(mapping.v5_occupancy_state(b)) is b for b in (True, False))
    assert sqlfrag.occupied("s.occupancy_state") == \
        "(CASE upper(s.occupancy_state) WHEN 'OCCUPIED' THEN true WHEN 'FREE' THEN false ELSE NULL END)"
    assert sqlfrag.v5_occupancy_state("r.occupied") == \
        "(CASE r.occupied WHEN true THEN 'OCCUPIED' WHEN false THEN 'FREE' ELSE NULL END)"


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


# --- rules for the real V6 application ------------------------------------------------------------

def _t(day, hour=12):
    import datetime as dt
    return dt.datetime(2026, 11, day, hour, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("v5", ["pending", "confirmed", "active", "CONFIRMED"])
def test_reservation_ended_is_completed_not_active(v5):
    assert mapping.reservation_status(v5, end_time=_t(20), now=_t(26)) == "completed"
    assert mapping.reservation_status(v5, end_time=_t(26), now=_t(26)) == "completed"  # ends at the run's time
    assert mapping.reservation_status(v5, end_time=_t(27), now=_t(26)) == "active"     # window still open
    assert mapping.reservation_status(v5) == "active"                                   # no time: the plain map


@pytest.mark.parametrize("v5,v6", [("cancelled", "cancelled"), ("no_show", "no_show"), ("expired", "completed"),
                                   ("completed", "completed")])
def test_reservation_ended_rule_leaves_final_statuses(v5, v6):
    assert mapping.reservation_status(v5, end_time=_t(20), now=_t(26)) == v6


def test_reservation_status_sql_matches_python():
    from parking import sqlfrag
    sql = sqlfrag.reservation_status("status", "end_time")
    assert "'completed'" in sql and "end_time <= %(now)s::timestamptz" in sql
    assert sqlfrag.reservation_status("status") == mapping.sql_case(
        "lower(status)", mapping.RESERVATION_STATUS, mapping.RESERVATION_STATUS_DEFAULT)


def test_primary_membership_is_where_v5_logs_in_oldest_then_id():
    same = _t(1)
    ms = [dict(id="b", role="viewer", is_active=True, created_at=_t(1)),
          dict(id="c", role="admin", is_active=True, created_at=_t(2))]
    assert mapping.primary_membership(ms)["id"] == "b"                  # V5's login: oldest, not highest role
    ms = [dict(id="a", role="owner", is_active=True, tenant_active=False, created_at=_t(1)),
          dict(id="b", role="viewer", is_active=True, created_at=_t(2))]
    assert mapping.primary_membership(ms)["id"] == "b"                  # V5's login skips inactive tenants
    ms = [dict(id="b", role="owner", is_active=True, created_at=_t(2)),
          dict(id="a", role="owner", is_active=True, created_at=_t(3))]
    assert mapping.primary_membership(ms)["id"] == "b"                  # oldest
    ms = [dict(id="b", role="owner", is_active=True, created_at=same),
          dict(id="a", role="owner", is_active=True, created_at=same)]
    assert mapping.primary_membership(ms)["id"] == "a"                  # then the id
    ms = [dict(id="a", role="platform_admin", is_active=True, created_at=same),
          dict(id="b", role="owner", is_active=True, created_at=same)]
    assert mapping.primary_membership(ms)["id"] == "a"                  # platform_admin ranks first
    ms = [dict(id="a", role="owner", is_active=False, created_at=same),
          dict(id="b", role="viewer", is_active=True, created_at=same)]
    assert mapping.primary_membership(ms)["id"] == "b"                  # an active one first
    assert mapping.primary_membership([]) is None


def test_login_order_makes_the_primary_strictly_latest():
    import datetime as dt
    same = _t(1)
    assert mapping.login_order(same, [same]) == same + dt.timedelta(milliseconds=1)   # a tie never stays
    assert mapping.login_order(_t(1), [_t(3), _t(2)]) == _t(3) + dt.timedelta(milliseconds=1)
    assert mapping.login_order(_t(5), [_t(3)]) == _t(5)                                 # already latest
    assert mapping.login_order(_t(5), []) == _t(5)


def test_history_cutoff_and_kept():
    import datetime as dt
    now = _t(26)
    cutoff = mapping.history_cutoff(now, 90)
    assert cutoff == now - dt.timedelta(days=90)
    assert mapping.history_cutoff(now, 0) is None and mapping.history_cutoff(now, None) is None
    assert mapping.history_kept(cutoff, cutoff) and mapping.history_kept(now, cutoff)
    assert not mapping.history_kept(cutoff - dt.timedelta(seconds=1), cutoff)
    assert mapping.history_kept(None, cutoff)           # no time: left to the rejects
    assert mapping.history_kept(cutoff - dt.timedelta(days=900), None)


def test_history_cutoff_sql_is_the_same_definition():
    from parking import sqlfrag
    cutoff = mapping.history_cutoff(_t(26), 90)
    assert sqlfrag.history_kept('"timestamp"', cutoff) == \
        f"(\"timestamp\" IS NULL OR \"timestamp\" >= '{cutoff.isoformat()}'::timestamptz)"
    assert sqlfrag.history_expired('"timestamp"', cutoff) == f"(\"timestamp\" < '{cutoff.isoformat()}'::timestamptz)"
    assert sqlfrag.history_kept("x", None) == "true" and sqlfrag.history_expired("x", None) == "false"


@pytest.mark.parametrize("prev,days,recorded", [(None, 90, 90), (None, 0, 0), (90, 0, 90), (90, 30, 30),
                                                (30, 90, 30), (0, 90, 90), (0, 0, 0)])
def test_retention_recorded_is_the_shortest_applied(prev, days, recorded):
    assert mapping.retention_recorded(prev, days) == recorded


def test_placeholder_password_hash_never_verifies():
    import bcrypt
    from passlib.hash import bcrypt as passlib_bcrypt
    h = mapping.unusable_password_hash("anonymous-bookings:x@y.invalid")
    assert h.startswith("$2b$12$") and len(h) == 60 and passlib_bcrypt.identify(h)
    assert h == mapping.unusable_password_hash("anonymous-bookings:x@y.invalid")   # same row every run
    assert h != mapping.unusable_password_hash("anonymous-bookings:z@y.invalid")
    assert not passlib_bcrypt.verify("lab-password", h)
    for guess in ("", "lab-password", "password"):
        assert not bcrypt.checkpw(guess.encode(), h.encode())
