"""The oracle's own rules (module_utils/parking/oracle.py), without a database."""
import datetime as dt

from parking import oracle

T = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


def test_eui_rule_is_the_reference_one():
    assert oracle.norm_eui("58a0cb00-0010-3b22") == "58A0CB0000103B22"
    assert oracle.norm_eui("58:A0:CB:00:00:10:3B:22") == "58A0CB0000103B22"
    assert oracle.norm_eui("A8404100018E4D") is None
    assert oracle.norm_eui("") is None and oracle.norm_eui(None) is None


def test_status_table_is_its_own():
    from parking import mapping
    assert oracle.STATUS is not mapping.RESERVATION_STATUS
    assert oracle.STATUS["expired"] == "completed" and oracle.STATUS["pending"] == "active"


def space(sid, site, deleted=False, updated=T, sensor_eui=None, fk=None):
    # (id, site_id, code, deleted_at, updated_at, sensor_eui, display_eui, sensor_device_id, display_device_id)
    return (sid, site, sid, T if deleted else None, updated, sensor_eui, None, fk, None)


def oracle_with(spaces, site_tenant):
    o = oracle.Oracle(None, None)
    o.v5_spaces = spaces
    o.v5_site_tenant = site_tenant
    return o


def test_placement_prefers_eui_and_id_then_eui_then_recent_then_id():
    eui, dev = "58A0CB0000103B22", "dev-1"
    o = oracle_with([space("s1", "a", fk=dev), space("s2", "b", sensor_eui=eui.lower())],
                    {"a": "t1", "b": "t2"})
    assert o.placement("sensor_devices", dev, eui) == ("s2", {"t1", "t2"})  # EUI beats a stale id
    o = oracle_with([space("s1", "a", sensor_eui=eui), space("s2", "a", sensor_eui=eui, fk=dev)], {"a": "t1"})
    assert o.placement("sensor_devices", dev, eui)[0] == "s2"
    o = oracle_with([space("s1", "a", sensor_eui=eui), space("s2", "a", sensor_eui=eui, updated=T + dt.timedelta(1))],
                    {"a": "t1"})
    assert o.placement("sensor_devices", dev, eui)[0] == "s2"
    o = oracle_with([space("s2", "a", sensor_eui=eui), space("s1", "a", sensor_eui=eui)], {"a": "t1"})
    assert o.placement("sensor_devices", dev, eui)[0] == "s1"


def test_soft_deleted_spaces_place_nothing():
    o = oracle_with([space("s1", "a", deleted=True, sensor_eui="58A0CB0000104C33")], {"a": "t1"})
    assert o.placement("sensor_devices", "d", "58A0CB0000104C33") == (None, [])


def test_summary_names_the_first_differences():
    o = oracle.Oracle(None, None)
    for i in range(7):
        o.diff("sites", "t", f"site {i} missing")
    text = oracle.summary(o.result(), limit=2)
    assert text.startswith("7 differences") and "site 0 missing" in text and "(and 5 more)" in text
