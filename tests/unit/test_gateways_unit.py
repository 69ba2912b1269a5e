"""Unit tests of the pure rules of the ChirpStack gateway import (module_utils/parking/gateways/)."""
import datetime as dt

import pytest

from parking import gateways as gw
from parking.errors import ConfigError, SchemaMismatch
from parking.mapping import PLATFORM_TENANT_ID

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)

CS_VERDEGRIS = "581418fc-804b-472e-843e-454107b68ebf"
CS_ACME = "773b2828-caae-4940-b14a-a1313e10cacd"
CS_TWIN_A = "11111111-1111-4111-8111-111111111111"
CS_TWIN_B = "22222222-2222-4222-8222-222222222222"
CS_TENANTS = [(CS_VERDEGRIS, "Verdegris"), (CS_ACME, "Acme Parking"),
              (CS_TWIN_A, "Twin"), (CS_TWIN_B, "Twin")]

V6_DEMO = "af92fb7e-a64b-4ad5-8ac8-46e2ed515c9a"
V6_ACME = "7723ee83-8bd0-4745-b867-6a82af6ccb2f"
V6_CITY = "400edd20-e5ba-4e97-97b6-c0f9b83a02a2"
V6_TENANTS = [(PLATFORM_TENANT_ID, "platform"), (V6_DEMO, "demo-parking"),
              (V6_ACME, "acme-parking"), (V6_CITY, "city-parking")]


# --- gateway id -------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,expected", [
    (bytes.fromhex("ac1f09fffe0a1b2c"), "AC1F09FFFE0A1B2C"),
    (memoryview(bytes.fromhex("0016c001ff10a235")), "0016C001FF10A235"),
    (bytearray.fromhex("7076ff0056060d1e"), "7076FF0056060D1E"),
    ("ac1f09fffe0a1b2c", "AC1F09FFFE0A1B2C"),
])
def test_gateway_id_hex_valid(raw, expected):
    assert gw.gateway_id_hex(raw) == (expected, None)


@pytest.mark.parametrize("raw,needle", [
    (bytes.fromhex("00800000a000"), "is 6 bytes"),
    (bytes.fromhex("00112233445566778899"), "is 10 bytes"),
    (b"", "is 0 bytes"),
    (None, "NULL"),
    ("not-hex", "not 16 hex digits"),
])
def test_gateway_id_hex_rejects(raw, needle):
    value, reason = gw.gateway_id_hex(raw)
    assert value is None
    assert needle in reason


# --- location and status ------------------------------------------------------------------------

def test_location_zero_zero_means_no_position():
    assert gw.location(0.0, 0.0, 0.0) is None
    assert gw.location(0, 0, 35.0) is None


def test_location_kept_when_only_one_coordinate_is_zero():
    assert gw.location(0.0, 5.3698, 12.0) == {"latitude": 0.0, "longitude": 5.3698, "altitude": 12.0}
    assert gw.location(48.8566, 0.0, 35.0)["latitude"] == 48.8566


def test_location_missing_values():
    assert gw.location(None, 2.0, 1.0) is None
    assert gw.location(48.0, 2.0, None) == {"latitude": 48.0, "longitude": 2.0, "altitude": None}


@pytest.mark.parametrize("seconds_ago,window,expected", [
    (0, 300, "online"),
    (299, 300, "online"),
    (300, 300, "online"),
    (301, 300, "offline"),
    (172800, 300, "offline"),
    (600, 900, "online"),
    (-30, 300, "online"),      # clock skew: seen "in the future"
])
def test_gateway_status(seconds_ago, window, expected):
    assert gw.gateway_status(NOW - dt.timedelta(seconds=seconds_ago), NOW, window) == expected


def test_gateway_status_never_seen_is_offline():
    assert gw.gateway_status(None, NOW) == "offline"


def test_gateway_status_naive_timestamps_are_utc():
    assert gw.gateway_status(dt.datetime(2026, 11, 26, 11, 58), NOW) == "online"


# --- tenant_map ---------------------------------------------------------------------------------

def test_tenant_map_key_by_name_value_by_slug():
    resolved, warnings = gw.resolve_tenant_map({"Verdegris": "demo-parking"}, CS_TENANTS, V6_TENANTS)
    assert resolved == {CS_VERDEGRIS: {"tenant_id": V6_DEMO, "rule": "tenant_map_name",
                                       "key": "Verdegris", "value": "demo-parking"}}
    assert warnings == []


def test_tenant_map_key_by_id_value_by_id_any_case():
    resolved, _ = gw.resolve_tenant_map({CS_ACME.upper(): V6_ACME.upper()}, CS_TENANTS, V6_TENANTS)
    assert resolved[CS_ACME]["tenant_id"] == V6_ACME
    assert resolved[CS_ACME]["rule"] == "tenant_map_id"


def test_tenant_map_id_key_wins_over_name_key():
    resolved, warnings = gw.resolve_tenant_map(
        {"Verdegris": "city-parking", CS_VERDEGRIS: "demo-parking"}, CS_TENANTS, V6_TENANTS)
    assert resolved[CS_VERDEGRIS]["tenant_id"] == V6_DEMO
    assert resolved[CS_VERDEGRIS]["rule"] == "tenant_map_id"
    assert len(warnings) == 1 and "the id key wins" in warnings[0]


def test_tenant_map_to_platform_is_allowed():
    resolved, _ = gw.resolve_tenant_map({"Acme Parking": "platform"}, CS_TENANTS, V6_TENANTS)
    assert resolved[CS_ACME]["tenant_id"] == PLATFORM_TENANT_ID


def test_tenant_map_unknown_v6_value_names_key_value_and_slugs():
    with pytest.raises(ConfigError) as err:
        gw.resolve_tenant_map({"Verdegris": "verdegris"}, CS_TENANTS, V6_TENANTS)
    message = str(err.value)
    assert "tenant_map['Verdegris'] = 'verdegris'" in message
    assert "acme-parking, city-parking, demo-parking, platform" in message


def test_tenant_map_unknown_uuid_value():
    with pytest.raises(ConfigError, match="neither the id nor the slug of a V6 tenant"):
        gw.resolve_tenant_map({"Verdegris": "99999999-9999-4999-8999-999999999999"},
                              CS_TENANTS, V6_TENANTS)


def test_tenant_map_unknown_chirpstack_key_fails_listing_tenants():
    with pytest.raises(ConfigError) as err:
        gw.resolve_tenant_map({"Verdgris": "demo-parking"}, CS_TENANTS, V6_TENANTS)
    assert "'Verdgris' is neither the id nor the name of a ChirpStack tenant" in str(err.value)
    assert f"Verdegris ({CS_VERDEGRIS})" in str(err.value)


def test_tenant_map_ambiguous_chirpstack_name():
    with pytest.raises(ConfigError, match="names 2 ChirpStack tenants"):
        gw.resolve_tenant_map({"Twin": "demo-parking"}, CS_TENANTS, V6_TENANTS)
    resolved, _ = gw.resolve_tenant_map({CS_TWIN_A: "demo-parking"}, CS_TENANTS, V6_TENANTS)
    assert resolved[CS_TWIN_A]["tenant_id"] == V6_DEMO


def test_tenant_map_empty():
    assert gw.resolve_tenant_map({}, CS_TENANTS, V6_TENANTS) == ({}, [])
    assert gw.resolve_tenant_map(None, CS_TENANTS, V6_TENANTS) == ({}, [])


# --- owner rules --------------------------------------------------------------------------------

def test_heard_tenants_unions_devices_and_readings_without_platform():
    devices = {CS_ACME: {V6_ACME, PLATFORM_TENANT_ID}}
    readings = {"B827EBFFFE61A8C4": {V6_CITY}, "OTHER": {V6_DEMO}}
    heard = gw.heard_tenants(CS_ACME, "B827EBFFFE61A8C4", devices, readings, PLATFORM_TENANT_ID)
    assert heard == sorted([V6_ACME, V6_CITY])


def test_owner_explicit_map_wins_over_heard_devices():
    explicit = {CS_VERDEGRIS: {"tenant_id": V6_DEMO, "rule": "tenant_map_name"}}
    assert gw.resolve_owner(CS_VERDEGRIS, explicit, [V6_CITY], PLATFORM_TENANT_ID) == \
        (V6_DEMO, "tenant_map_name")


def test_owner_unique_heard_tenant():
    assert gw.resolve_owner(CS_ACME, {}, [V6_ACME], PLATFORM_TENANT_ID) == (V6_ACME, "heard_devices")


def test_owner_platform_when_nobody_heard():
    assert gw.resolve_owner(CS_ACME, {}, [], PLATFORM_TENANT_ID) == \
        (PLATFORM_TENANT_ID, "platform_no_devices")


def test_owner_platform_when_ambiguous():
    assert gw.resolve_owner(CS_ACME, {}, [V6_ACME, V6_CITY], PLATFORM_TENANT_ID) == \
        (PLATFORM_TENANT_ID, "platform_ambiguous")


def test_owner_rule_from_readings_only():
    heard = gw.heard_tenants(CS_VERDEGRIS, "7076FF0056060D1E", {}, {"7076FF0056060D1E": {V6_CITY}},
                             PLATFORM_TENANT_ID)
    assert gw.resolve_owner(CS_VERDEGRIS, {}, heard, PLATFORM_TENANT_ID) == (V6_CITY, "heard_devices")


# --- site -----------------------------------------------------------------------------------------

SITE_DEMO = "867bb25c-8992-43f9-9c56-cfbdf3463b95"
SITE_CITY = "08974533-49d4-4b66-8b3c-039e5352ab2e"
SITES = [(SITE_DEMO, V6_DEMO, "Verdegris Parking - Main Site"),
         (SITE_CITY, V6_CITY, "Main Parking Lot")]


def test_site_from_tag_site_id_in_chosen_tenant():
    tags = {"site_id": SITE_DEMO, "site_name": "whatever"}
    assert gw.resolve_site(tags, "", V6_DEMO, SITES) == (SITE_DEMO, "tag_site_id")


def test_site_of_another_tenant_is_not_used():
    assert gw.resolve_site({"site_id": SITE_CITY}, "", V6_DEMO, SITES) == (None, None)


def test_site_from_tag_site_name_then_description():
    assert gw.resolve_site({"site_name": "verdegris parking - main site "}, "", V6_DEMO, SITES) == \
        (SITE_DEMO, "tag_site_name")
    assert gw.resolve_site({}, "Main Parking Lot", V6_CITY, SITES) == (SITE_CITY, "description")
    assert gw.resolve_site({}, "On loan", V6_CITY, SITES) == (None, None)
    assert gw.resolve_site({"site_id": "not-a-uuid"}, "", V6_CITY, SITES) == (None, None)


# --- column adaptation --------------------------------------------------------------------------

def _col(name, data_type, max_length=None, nullable=True, has_default=False):
    return {"name": name, "data_type": data_type, "max_length": max_length, "nullable": nullable,
            "has_default": has_default}


L0 = [_col("id", "uuid", nullable=False, has_default=True),
      _col("tenant_id", "uuid", nullable=False),
      _col("gateway_id", "character varying", 16, nullable=False),
      _col("name", "character varying", 255, nullable=False),
      _col("site_id", "uuid"),
      _col("status", "character varying", 50, has_default=True),
      _col("config", "jsonb", has_default=True),
      _col("enabled", "boolean", has_default=True),
      _col("created_at", "timestamp without time zone", has_default=True),
      _col("updated_at", "timestamp without time zone", has_default=True)]


def test_plan_columns_l0_shape():
    plan = gw.plan_columns(L0)
    assert plan["optional"] == ["site_id", "created_at", "updated_at"]
    assert plan["skipped"] == []


def test_plan_columns_l1_shape_writes_real_columns():
    l1 = L0 + [_col("description", "text"), _col("latitude", "double precision"),
               _col("longitude", "double precision"),
               _col("last_seen_at", "timestamp without time zone"),
               _col("location", "jsonb"), _col("altitude", "real")]
    plan = gw.plan_columns(l1)
    assert set(plan["optional"]) == {"description", "latitude", "longitude", "last_seen_at",
                                     "location", "altitude", "site_id", "created_at", "updated_at"}


def test_plan_columns_unusable_optional_type_is_skipped():
    plan = gw.plan_columns(L0 + [_col("location", "point")])
    assert "location" not in plan["optional"]
    assert plan["skipped"][0]["column"] == "location"


def test_plan_columns_fails_closed_listing_every_difference():
    broken = [c for c in L0 if c["name"] != "config"]
    broken = [dict(c, data_type="text") if c["name"] == "tenant_id" else c for c in broken]
    broken.append(_col("model", "character varying", 100, nullable=False))
    with pytest.raises(SchemaMismatch) as err:
        gw.plan_columns(broken)
    diffs = {d["column"]: d for d in err.value.differences}
    assert diffs["config"]["found"] == "missing"
    assert diffs["tenant_id"] == {"column": "tenant_id", "expected": "uuid", "found": "text"}
    assert diffs["model"]["found"] == "NOT NULL without default"
    assert "config: expected jsonb, found missing" in str(err.value)


def test_plan_columns_too_short_gateway_id():
    short = [dict(c, max_length=12) if c["name"] == "gateway_id" else c for c in L0]
    with pytest.raises(SchemaMismatch, match="gateway_id: expected character varying\\(16\\)"):
        gw.plan_columns(short)


# --- desired rows and comparison ----------------------------------------------------------------

CS_ROW = {
    "gateway_id": bytes.fromhex("ac1f09fffe0a1b2c"), "tenant_id": CS_VERDEGRIS,
    "tenant_name": "Verdegris", "name": "Verdegris Main Gateway",
    "description": "Verdegris Parking - Main Site", "latitude": 48.8566, "longitude": 2.3522,
    "altitude": 35.0, "last_seen_at": dt.datetime(2026, 11, 25, 23, 59, 30, tzinfo=UTC),
    "stats_interval_secs": 30, "tags": {"site_id": SITE_DEMO}, "properties": {"a": "b"},
    "created_at": dt.datetime(2026, 9, 17, tzinfo=UTC),
}


def test_desired_row_l0_keeps_everything_in_config():
    plan = gw.plan_columns(L0)
    row = gw.desired_row(CS_ROW, "AC1F09FFFE0A1B2C", V6_DEMO, "offline", SITE_DEMO, plan)
    assert set(row) == {"tenant_id", "gateway_id", "name", "status", "config", "site_id"}
    config = row["config"]
    assert config["location"] == {"latitude": 48.8566, "longitude": 2.3522, "altitude": 35.0}
    assert config["description"] == "Verdegris Parking - Main Site"
    assert config["last_seen_at"] == "2026-11-25T23:59:30+00:00"
    assert config["tenant_name"] == "Verdegris" and config["tenant_id"] == CS_VERDEGRIS
    assert config["tags"] == {"site_id": SITE_DEMO} and config["properties"] == {"a": "b"}


def test_desired_row_l1_columns_and_naive_time():
    l1 = L0 + [_col("description", "text"), _col("latitude", "double precision"),
               _col("longitude", "double precision"),
               _col("last_seen_at", "timestamp without time zone")]
    plan = gw.plan_columns(l1)
    row = gw.desired_row(dict(CS_ROW, latitude=0.0, longitude=0.0, name="  "),
                         "AC1F09FFFE0A1B2C", V6_DEMO, "offline", None, plan)
    assert row["name"] == "AC1F09FFFE0A1B2C"                  # fallback to the id
    assert row["latitude"] is None and row["longitude"] is None   # 0/0 = no position
    assert row["last_seen_at"] == dt.datetime(2026, 11, 25, 23, 59, 30)
    assert row["config"]["location"] is None


def test_length_problems():
    plan = gw.plan_columns(L0)
    row = {"name": "x" * 300, "gateway_id": "AC1F09FFFE0A1B2C"}
    assert gw.length_problems(row, plan) == ["name is 300 characters; gateways.name holds 255"]


def test_row_differences():
    plan = gw.plan_columns(L0)
    want = gw.desired_row(CS_ROW, "AC1F09FFFE0A1B2C", V6_DEMO, "offline", None, plan)
    existing = dict(want, config={"chirpstack": want["config"], "v6_key": 1}, site_id=SITE_DEMO)
    assert gw.row_differences(existing, want, plan) == []      # other config keys and site kept
    assert gw.row_differences(dict(existing, name="Old"), want, plan) == ["name"]
    assert gw.row_differences(dict(existing, gateway_id="ac1f09fffe0a1b2c"), want, plan) == \
        ["gateway_id"]
    moved = dict(want["config"], last_seen_at="2026-11-26T00:00:00+00:00")
    assert gw.row_differences(dict(existing, config={"chirpstack": moved}), want, plan) == ["config"]


def test_validate_options():
    assert gw._validate_options(PLATFORM_TENANT_ID.upper(), 300, {}) == PLATFORM_TENANT_ID
    with pytest.raises(ConfigError, match="platform_tenant_id 'platform' is not a UUID"):
        gw._validate_options("platform", 300, {})
    with pytest.raises(ConfigError, match="online_window"):
        gw._validate_options(PLATFORM_TENANT_ID, 0, {})
    with pytest.raises(ConfigError, match="tenant_map must be a dictionary"):
        gw._validate_options(PLATFORM_TENANT_ID, 300, ["x"])


class _FakeSession:
    def __init__(self, row):
        self.row = row

    def one(self, sql, params=None):
        return self.row


@pytest.mark.parametrize("row,refused", [
    (("gateways", True, False, True, False), False),     # owner, RLS not forced: bypassed
    (("gateways", True, False, False, True), False),     # superuser / BYPASSRLS
    (("gateways", False, False, False, False), False),   # RLS off
    (("gateways", True, False, False, False), True),     # another role: would see 0 rows
    (("gateways", True, True, True, False), True),       # owner but FORCE
    (None, False),                                       # table absent: introspection reports it
])
def test_rls_check(row, refused):
    if refused:
        with pytest.raises(ConfigError, match="row-level security on gateways applies"):
            gw._check_rls(_FakeSession(row), "gateways")
    else:
        gw._check_rls(_FakeSession(row), "gateways")
