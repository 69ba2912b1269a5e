"""Unit tests of the V6 API stand-in (lab/services/v6api/app.py): pure helpers, the
FastAPI-like routing and validation, and the handlers against scripted cursors (no database,
no network). The contract it follows is docs/v6-contract.md.

The service is a single file meant to be copied into a container, so it is loaded by path.
"""
import datetime as dt
import hashlib
import hmac
import importlib.util
import json
import os
import random
import time
import uuid
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "lab" / "services"


def load(name, relative):
    spec = importlib.util.spec_from_file_location(name, SERVICES / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


app = load("lab_v6api_app", "v6api/app.py")
sim = load("lab_simulator_sim_v6", "simulator/sim.py")

SECRET = "s" * 32
USER, TENANT = "8f0c6a52-8d1e-4b7a-a1c2-5e6f7a8b9c0d", "43e691bb-fe85-415e-8376-c5e5b0dd9c32"
TTL = 3600
DEVICE = {
    "dev_eui": "58a0cb00001196f3", "name": "lab-sensor-01", "enabled_class": "A",
    "device_tags": {}, "dev_addr": None,
    "application_id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "application_name": "parking",
    "application_tags": {}, "tenant_id": "3f0c6a52-8d1e-4b7a-a1c2-5e6f7a8b9c0d",
    "tenant_name": "Lab Tenant", "profile_id": "0b1c2d3e-4f5a-4b6c-9d7e-8f9a0b1c2d3e",
    "profile_name": "browan_tbms100_motion", "profile_tags": {}, "region_config_id": "eu868",
}
GATEWAY = {"gateway_id": "0016c001ff10a235", "latitude": 48.8566, "longitude": 2.3522, "altitude": 0.0}


# ---- JWT ---------------------------------------------------------------------------------------

class TestJWT:
    def test_access_token_carries_v6_claims(self):
        token = app.make_access_token(USER, TENANT, "ops@x.eu", "owner", SECRET, TTL, now=1_000)
        claims = app.jwt_decode(token, SECRET, now=1_001)
        assert claims == {"sub": USER, "tenant_id": TENANT, "email": "ops@x.eu", "role": "owner",
                          "exp": 1_000 + TTL, "iat": 1_000, "type": "access"}

    def test_refresh_token_claims(self):
        token = app.make_refresh_token(USER, TENANT, SECRET, 30 * 86400, now=1_000)
        assert app.jwt_decode(token, SECRET, now=1_001) == {
            "sub": USER, "tenant_id": TENANT, "exp": 1_000 + 30 * 86400, "iat": 1_000,
            "type": "refresh"}

    def test_signature_is_hmac_sha256_over_header_and_claims(self):
        token = app.make_access_token(USER, TENANT, "a@b.c", "viewer", SECRET, TTL)
        head, body, sig = token.split(".")
        assert json.loads(app.b64url_decode(head)) == {"alg": "HS256", "typ": "JWT"}
        expected = hmac.new(SECRET.encode(), (head + "." + body).encode(), hashlib.sha256).digest()
        assert app.b64url_decode(sig) == expected and "=" not in token

    def test_tampered_tenant_is_rejected_with_jose_message(self):
        token = app.make_access_token(USER, TENANT, "a@b.c", "viewer", SECRET, TTL)
        head, body, sig = token.split(".")
        claims = json.loads(app.b64url_decode(body))
        claims["tenant_id"] = app.PLATFORM_TENANT_ID
        forged = ".".join([head, app.b64url_encode(json.dumps(claims).encode()), sig])
        with pytest.raises(app.JWTError, match="^Invalid token: Signature verification failed.$"):
            app.decode_token(forged, SECRET)

    def test_wrong_secret_and_alg_none_are_rejected(self):
        token = app.make_access_token(USER, TENANT, "a@b.c", "viewer", SECRET, TTL)
        with pytest.raises(app.JWTError):
            app.jwt_decode(token, "o" * 32)
        head = app.b64url_encode(b'{"alg":"none","typ":"JWT"}')
        body = token.split(".")[1]
        with pytest.raises(app.JWTError):
            app.jwt_decode(head + "." + body + ".", SECRET)

    def test_expiry(self):
        token = app.make_access_token(USER, TENANT, "a@b.c", "viewer", SECRET, TTL, now=1_000)
        app.jwt_decode(token, SECRET, now=1_000 + TTL - 1)
        with pytest.raises(app.JWTError, match="^Invalid token: Signature has expired.$"):
            app.decode_token(token, SECRET, now=1_000 + TTL)

    @pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "!!.??.**", "e30.e30.e30"])
    def test_garbage_is_rejected(self, token):
        with pytest.raises(app.JWTError, match="^Invalid token: "):
            app.decode_token(token, SECRET)

    def test_token_lifetime_is_relative_to_issue_time(self):
        token = app.make_access_token(USER, TENANT, "a@b.c", "owner", SECRET, 60)
        claims = app.jwt_decode(token, SECRET)
        assert claims["exp"] - claims["iat"] == 60 and abs(claims["iat"] - time.time()) < 5


class TestIdentity:
    def test_platform_admin_is_owner_or_admin_of_a_platform_tenant(self):
        assert app.is_platform_admin("platform", "owner") and app.is_platform_admin("platform", "admin")
        assert not app.is_platform_admin("platform", "operator")
        assert not app.is_platform_admin("customer", "owner")

    def test_platform_view_needs_the_platform_tenant(self):
        row = {"tenant_id": app.PLATFORM_TENANT_ID, "user_id": USER, "role": "owner",
               "tenant_type": "platform"}
        assert app.TenantContext(row).platform_view
        assert not app.TenantContext(dict(row, role="viewer")).platform_view
        assert not app.TenantContext(dict(row, tenant_id=TENANT)).platform_view

    def test_user_dict(self):
        row = {"id": uuid.UUID(USER), "email": "ops@x.eu", "username": "Ops", "tenant_id": uuid.UUID(TENANT),
               "tenant_name": "T", "tenant_slug": "t", "role": "admin", "tenant_type": "platform",
               "created_at": dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)}
        assert app.user_dict(row) == {
            "id": USER, "email": "ops@x.eu", "username": "Ops", "tenant_id": TENANT, "tenant_name": "T",
            "tenant_slug": "t", "role": "admin", "is_platform_admin": True,
            "created_at": "2025-01-02T03:04:05+00:00"}

    @pytest.mark.parametrize("header,token", [("Bearer abc", "abc"), ("bearer abc", "abc"),
                                              ("Bearer", None), ("Basic abc", None), (None, None)])
    def test_oauth2_bearer(self, header, token):
        assert app.bearer_token(header) == token


# ---- websocket framing -------------------------------------------------------------------------

class TestWebSocket:
    def test_accept_key_rfc6455_example(self):
        assert app.ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

    @pytest.mark.parametrize("size,header_len", [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)])
    def test_masked_client_frame_round_trip(self, size, header_len):
        payload = bytes(random.Random(size).getrandbits(8) for _ in range(size))
        mask = b"\x37\xfa\x21\x3d"
        frame = app.encode_frame(app.OP_TEXT, payload, mask_key=mask)
        assert len(frame) == header_len + 4 + size
        assert frame[1] & 0x80  # MASK bit
        if size:
            assert frame[header_len + 4:] != payload  # really masked
        decoded, consumed = app.decode_frame(frame, max_size=1 << 20)
        assert consumed == len(frame)
        assert decoded == app.Frame(True, app.OP_TEXT, payload)

    @pytest.mark.parametrize("size,prefix", [(125, b"\x81\x7d"), (126, b"\x81\x7e\x00\x7e"),
                                             (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00")])
    def test_server_frames_are_unmasked_with_rfc_length_encoding(self, size, prefix):
        frame = app.encode_frame(app.OP_TEXT, b"x" * size)
        assert frame.startswith(prefix) and len(frame) == len(prefix) + size
        assert app.decode_frame(frame, require_mask=False, max_size=1 << 20)[0].payload == b"x" * size

    def test_rfc6455_masked_hello_example(self):
        # RFC 6455 §5.7: a single-frame masked text message containing "Hello".
        frame = bytes.fromhex("818537fa213d7f9f4d5158")
        assert app.decode_frame(frame) == (app.Frame(True, app.OP_TEXT, b"Hello"), 11)
        assert app.encode_frame(app.OP_TEXT, "Hello", mask_key=bytes.fromhex("37fa213d")) == frame

    def test_incomplete_input_asks_for_more(self):
        frame = app.encode_frame(app.OP_TEXT, b"y" * 300, mask_key=b"abcd")
        for cut in (0, 1, 2, 3, 4, 7, len(frame) - 1):
            assert app.decode_frame(frame[:cut]) is None
        two = frame + app.encode_frame(app.OP_PING, b"p", mask_key=b"wxyz")
        first, used = app.decode_frame(two)
        assert first.payload == b"y" * 300
        assert app.decode_frame(two[used:])[0] == app.Frame(True, app.OP_PING, b"p")

    def test_unmasked_client_frame_is_a_protocol_error(self):
        with pytest.raises(app.WebSocketError) as err:
            app.decode_frame(app.encode_frame(app.OP_TEXT, b"hi"))
        assert err.value.code == 1002

    def test_oversized_frame_is_refused_before_it_arrives(self):
        head = app.encode_frame(app.OP_TEXT, b"z" * 70000, mask_key=b"abcd")[:14]
        with pytest.raises(app.WebSocketError) as err:
            app.decode_frame(head, max_size=65536)
        assert err.value.code == 1009

    @pytest.mark.parametrize("raw", [b"\xc1\x80abcd", b"\x83\x80abcd", b"\x09\x80abcd",
                                     b"\x89\xfe\x00\x80abcd"])
    def test_bad_frames(self, raw):
        # RSV bit, unknown opcode, fragmented ping, ping longer than 125 bytes
        with pytest.raises(app.WebSocketError):
            app.decode_frame(raw)

    def test_close_payload(self):
        assert app.parse_close_payload(app.close_payload(1008, "invalid token")) == (1008, "invalid token")
        assert app.parse_close_payload(b"") == (1005, "")

    def test_protocol_replies_as_v6(self):
        reply, action, channel = app.ws_reply('{"type": "subscribe", "channel": "spaces"}')
        assert reply == {"type": "subscribed", "channel": "spaces", "message": "Subscribed to spaces"}
        assert (action, channel) == ("subscribe", "spaces")
        reply, action, channel = app.ws_reply('{"type": "unsubscribe", "channel": "alerts"}')
        assert reply == {"type": "unsubscribed", "channel": "alerts",
                         "message": "Unsubscribed from alerts"} and action == "unsubscribe"
        # V6 accepts any channel name
        assert app.ws_reply('{"type": "subscribe", "channel": "nope"}')[0]["type"] == "subscribed"
        pong = app.ws_reply('{"type": "ping"}')[0]
        assert pong["type"] == "pong" and dt.datetime.fromisoformat(pong["timestamp"]).tzinfo is None
        assert app.ws_reply("not json")[0] == {"type": "error", "message": "Invalid JSON message"}
        assert app.ws_reply('{"type": "x"}')[0] == {"type": "error", "message": "Unknown message type: x"}
        assert app.ws_reply('{"type": "subscribe"}')[0]["message"] == "Unknown message type: subscribe"
        assert app.ws_reply("{}")[0]["message"] == "Unknown message type: None"
        for fatal in ("[]", "5", '{"type": "subscribe", "channel": ["a"]}'):
            assert app.ws_reply(fatal) == (None, "close", None)

    def test_registry_routes_by_tenant_and_channel(self):
        class Fake:
            def __init__(self, tenant):
                self.tenant_id, self.channels, self.frames = tenant, set(), []

            def send_frame(self, frame):
                self.frames.append(frame)
                return True

        registry = app.Registry()
        mine, other, idle, admin = Fake(TENANT), Fake("t-2"), Fake(TENANT), Fake(app.PLATFORM_TENANT_ID)
        mine.channels.add("spaces"), other.channels.add("spaces"), admin.channels.add("spaces")
        for conn in (mine, other, idle, admin):
            registry.add(conn)
        message = app.space_update_message({"space_id": "s"})
        assert registry.broadcast(TENANT, "spaces", message) == 1
        assert len(mine.frames) == 1 and not other.frames and not idle.frames and not admin.frames
        received = json.loads(app.decode_frame(mine.frames[0], require_mask=False)[0].payload)
        assert received["type"] == "space:update" and received["channel"] == "spaces"
        assert received["data"] == {"space_id": "s"} and "timestamp" in received
        registry.remove(mine)
        assert registry.broadcast(TENANT, "spaces", {}) == 0 and registry.count() == 3


# ---- uplinks -----------------------------------------------------------------------------------

def up_event(payload=b"\x01", fcnt=42):
    return sim.build_up_event(DEVICE, GATEWAY, fcnt, payload, 102, 1_761_225_514_204_118_533,
                              random.Random(1))


class TestUplink:
    @pytest.mark.parametrize("data,occupied", [("AQ==", True), ("AA==", False), ("Aw==", True),
                                               ("/g==", False), ("ASQ7", True)])
    def test_base64_occupancy_is_bit_zero_of_byte_zero(self, data, occupied):
        assert app.decode_occupancy(app.decode_payload(data)) is occupied

    @pytest.mark.parametrize("data", ["", None, "01", "not base64!", 5])
    def test_no_or_undecodable_payload_has_no_occupancy(self, data):
        assert app.decode_occupancy(app.decode_payload(data)) is None

    def test_base64_not_hex(self):
        # Real V6 read ``data`` with bytes.fromhex, which fails on every real ChirpStack payload.
        with pytest.raises(ValueError):
            bytes.fromhex("AQ==")
        assert app.decode_payload("AQ==") == b"\x01"
        assert app.decode_payload("MDE=") == b"01"  # base64 of the text "01": byte 0 = 0x30, free
        assert app.decode_occupancy(app.decode_payload("MDE=")) is False

    def test_parse_reads_what_v6_reads(self):
        event = up_event()
        body = json.dumps(event).encode()
        up = app.parse_uplink(body)
        assert up["dev_eui"] == "58A0CB00001196F3"
        assert up["fcnt"] == 42 and up["payload"] == b"\x01" and up["occupied"] is True
        assert up["time"] == dt.datetime(2025, 10, 23, 13, 18, 34, 204118, tzinfo=dt.timezone.utc)
        assert up["rssi"] == event["rxInfo"][0]["rssi"] and up["snr"] == event["rxInfo"][0]["snr"]
        assert json.loads(up["raw"]) == event   # V6 stores json.dumps(payload)

    @pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[]", b"{}", b'{"deviceInfo": {}}',
                                      b'{"deviceInfo": {"devEui": ""}}', b'{"deviceInfo": "x"}',
                                      b'{"deviceInfo": {"devEui": "xyz"}}'])
    def test_bad_uplinks_are_rejected(self, body):
        with pytest.raises(app.BadRequest):
            app.parse_uplink(body)

    def test_missing_dev_eui_message(self):
        with pytest.raises(app.BadRequest, match="^Missing devEui in payload$"):
            app.parse_uplink(json.dumps({"fCnt": 1, "data": "AQ=="}).encode())

    @pytest.mark.parametrize("fcnt", [None, -1, 2**31, 2**32 - 1, "7", True])
    def test_unstorable_fcnt_becomes_none(self, fcnt):
        event = up_event()
        event["fCnt"] = fcnt
        assert app.parse_uplink(json.dumps(event).encode())["fcnt"] is None

    def test_join_event_parses_without_reading_fields(self):
        join = {"deduplicationId": "d", "time": "2025-10-23T13:18:34+00:00",
                "deviceInfo": {"devEui": "0011223344556677"}, "devAddr": "260b1a2c"}
        up = app.parse_uplink(json.dumps(join).encode())
        assert up["fcnt"] is None and up["occupied"] is None and up["rssi"] is None

    def test_signature_check_as_v6(self):
        body = json.dumps(up_event()).encode()
        good = hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
        assert app.verify_signature("hook-secret", body, good)
        assert not app.verify_signature("hook-secret", body, good.upper())       # exact hex
        assert not app.verify_signature("hook-secret", body, "sha256=" + good)
        assert not app.verify_signature("hook-secret", body + b" ", good)
        assert not app.verify_signature("other-secret", body, good)
        assert not app.verify_signature("hook-secret", body, "é" * 64)
        assert app.verify_signature("", body, "anything")   # no secret configured: not checked


# ---- scripted database -------------------------------------------------------------------------

class Cursor:
    """Answers fetchone/fetchall from a script; records (sql, params) and the rowcount."""

    def __init__(self, answers=(), rowcounts=()):
        self.answers, self.rowcounts, self.sql = list(answers), list(rowcounts), []
        self.rowcount = 0

    def execute(self, sql, params=None):
        self.sql.append((" ".join(sql.split()), params))
        if self.rowcounts and not sql.lstrip().upper().startswith("SELECT"):
            self.rowcount = self.rowcounts.pop(0)

    def fetchone(self):
        return self.answers.pop(0)

    def fetchall(self):
        return self.answers.pop(0)

    def statements(self, prefix):
        return [(s, p) for s, p in self.sql if s.startswith(prefix)]


class FakeDB:
    def __init__(self, cursor):
        self.cursor, self.contexts = cursor, []

    def transaction(self, context=None):
        self.contexts.append(context)
        cursor = self.cursor

        class Tx:
            def __enter__(self):
                return cursor

            def __exit__(self, *exc):
                return False
        return Tx()


NOW = dt.datetime(2026, 1, 1, 12, 0, 0)


class TestProcessUplink:
    DEV = {"id": "dev-1", "tenant_id": TENANT, "assigned_space_id": "sp-1", "newest_fcnt": None}
    SPACE = {"code": "P1-01", "current_state": "free", "sensor_state": "free", "changed": True}

    def run(self, answers, payload=b"\x01", fcnt=42):
        up = app.parse_uplink(json.dumps(up_event(payload, fcnt)).encode())
        cur = Cursor(answers)
        result, change = app.process_uplink(cur, up, now=NOW)
        return result, change, cur

    def test_occupancy_change_updates_space_and_reports(self):
        result, change, cur = self.run([self.DEV, {"id": "r-1"}, self.SPACE])
        assert result == {"status": "processed", "dev_eui": "58A0CB00001196F3", "fcnt": 42,
                          "space_id": "sp-1", "occupied": True, "reading_id": "r-1"}
        insert = cur.statements("INSERT INTO sensor_readings")[0][1]
        assert insert[:5] == (TENANT, "dev-1", "58A0CB00001196F3", 42, True)
        assert insert[8] == insert[9] == NOW                    # received_at = now, as V6
        assert cur.statements("UPDATE sensor_devices")[0][1] == (NOW, NOW, "dev-1")
        assert cur.statements("SELECT d.id")[0][1] == ("58A0CB00001196F3", "58A0CB00001196F3")
        assert "FOR UPDATE" not in cur.statements("SELECT d.id")[0][0]
        assert cur.statements("WITH old")[0][1] == {"space": "sp-1", "tenant": TENANT, "state": "occupied",
                                                    "now": NOW}
        # the device row is locked (updated) only after the reading is in, the space after it
        order = [s.split()[0] + " " + s.split()[1] for s, _ in cur.sql]
        assert order == ["SELECT d.id,", "INSERT INTO", "UPDATE sensor_devices", "WITH old"]
        tenant, data = change
        assert tenant == TENANT and data["current_state"] == "occupied"
        assert data["previous_state"] == "free" and data["space_code"] == "P1-01" and data["fcnt"] == 42

    def test_unchanged_state_writes_no_space_but_is_pushed(self):
        space = dict(self.SPACE, current_state="occupied", changed=False)
        result, change, cur = self.run([self.DEV, {"id": "r-1"}, space])
        assert result["status"] == "processed" and change[1]["changed"] is False
        assert change[1]["current_state"] == "occupied" and change[1]["state_changed_at"] is None

    def test_sensor_overrides_reserved_as_v6(self):
        space = dict(self.SPACE, current_state="reserved")
        result, change, cur = self.run([self.DEV, {"id": "r-1"}, space], payload=b"\x00")
        assert cur.statements("WITH old")[0][1]["state"] == "free"
        assert change[1]["previous_state"] == "reserved"

    def test_no_payload_stores_unknown_occupancy(self):
        result, change, cur = self.run([self.DEV, {"id": "r-1"}], payload=b"")
        assert result["occupied"] is None and change is None
        assert cur.statements("INSERT INTO sensor_readings")[0][1][4] is None

    def test_unassigned(self):
        dev = dict(self.DEV, assigned_space_id=None)
        result, change, _ = self.run([dev, {"id": "r-9"}])
        assert result == {"status": "unassigned", "dev_eui": "58A0CB00001196F3", "fcnt": 42,
                          "message": "Device not assigned to any space", "reading_id": "r-9"}

    def test_duplicate_is_exact_device_and_fcnt(self):
        result, change, cur = self.run([dict(self.DEV, newest_fcnt=42), {"?column?": 1}])
        assert result == {"status": "duplicate", "dev_eui": "58A0CB00001196F3", "fcnt": 42,
                          "message": "Duplicate message (already processed)"}
        assert cur.statements("SELECT 1 FROM sensor_readings")[0][1] == ("dev-1", 42)
        assert not cur.statements("INSERT") and change is None

    def test_an_fcnt_above_the_newest_skips_the_exact_check(self):
        cur = Cursor([])
        assert app.reading_exists(cur, dict(self.DEV, newest_fcnt=41), 42) is False
        assert not cur.statements("SELECT 1 FROM sensor_readings")

    def test_an_older_fcnt_is_new_unless_that_exact_reading_exists(self):
        # out of order (ChirpStack does not keep the order): stored, unlike the real app
        dev = dict(self.DEV, newest_fcnt=50)
        assert app.reading_exists(Cursor([None]), dev, 42) is False
        assert app.reading_exists(Cursor([{"?column?": 1}]), dev, 42)

    def test_orphan(self):
        result, change, cur = self.run([None])
        assert result == {"status": "orphan", "dev_eui": "58A0CB00001196F3",
                          "message": "Device not found in database"}
        orphan = cur.statements("INSERT INTO orphan_devices")[0][1]
        assert orphan[:3] == ("58A0CB00001196F3", NOW, NOW) and json.loads(orphan[3])["fCnt"] == 42

    def test_event_without_fcnt_stores_nothing(self):
        result, change, cur = self.run([self.DEV], fcnt=None)
        assert result["status"] == "ignored" and not cur.statements("INSERT")


# ---- the HTTP contract -------------------------------------------------------------------------

class Headers(dict):
    def get(self, name, default=None):
        return next((v for k, v in self.items() if k.lower() == name.lower()), default)


def request(method, target, body=b"", **headers):
    path, _, raw = target.partition("?")
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    return app.Request(method, path, app.parse_qs(raw), Headers(headers), body, raw)


def make_app(answers=(), set_context=False, rowcounts=()):
    cur = Cursor(answers, rowcounts)
    db = FakeDB(cur)
    return app.App(db, SECRET, set_context=set_context), cur, db


def call(application, req):
    try:
        status, payload, *rest = application.dispatch(req)
        return status, payload, dict(rest[0]) if rest else {}
    except app.HTTPError as exc:
        return exc.status, {"detail": exc.detail}, dict(exc.headers)


TENANT_ROW = {"user_id": USER, "email": "ops@x.eu", "role": "owner", "tenant_id": TENANT,
              "tenant_type": "customer"}


def bearer(tenant=TENANT, **claims):
    # a day: parametrized tokens are made at collection, minutes before the test runs in a full suite
    token = app.jwt_encode(dict({"sub": USER, "tenant_id": tenant, "exp": int(time.time()) + 86400,
                                 "type": "access"}, **claims), SECRET)
    return "Bearer " + token


class TestRouting:
    def test_health_and_fault_file(self, tmp_path, monkeypatch):
        application, _, _ = make_app()
        assert call(application, request("GET", "/health"))[:2] == \
            (200, {"status": "healthy", "version": "6.0.0"})
        monkeypatch.setattr(app, "FAULT_FILE", str(tmp_path / "fault"))
        (tmp_path / "fault").touch()
        assert call(application, request("GET", "/health"))[0] == 503
        status, body, _ = call(application, request("GET", "/webhooks/health"))
        assert status == 200 and body["service"] == "parking-webhooks" and "timestamp" in body

    def test_post_without_slash_is_405_like_starlette(self):
        application, _, _ = make_app()
        assert call(application, request("POST", "/api/v6/reservations")) == \
            (405, {"detail": "Method Not Allowed"}, {"Allow": "GET"})

    def test_trailing_slash_redirects_307(self):
        application, _, _ = make_app()
        status, body, headers = call(application, request("GET", "/api/v6/devices/?page=2",
                                                          Host="api:8000"))
        assert (status, body, headers) == (307, None, {"Location": "http://api:8000/api/v6/devices?page=2"})
        assert call(application, request("GET", "/nothing"))[:2] == (404, {"detail": "Not Found"})

    @pytest.mark.parametrize("header,detail", [
        (None, "Missing authorization header"),
        ("Token abc", "Invalid authorization header format"),
        ("Bearer abc", "Authentication failed: Invalid token: Not enough segments"),
        (bearer(sub="x"), "Authentication failed: badly formed hexadecimal UUID string"),
        ("Bearer " + app.jwt_encode({"tenant_id": TENANT, "exp": 2**31}, SECRET),
         "Authentication failed: 'sub'"),
    ])
    def test_tenant_context_errors(self, header, detail):
        application, _, db = make_app()
        headers = {"Authorization": header} if header else {}
        assert call(application, request("GET", "/api/v6/devices", **headers))[:2] == \
            (401, {"detail": detail})
        assert not db.contexts   # no database work before the token is valid

    def test_unknown_membership_is_401_before_parameter_errors(self):
        application, _, _ = make_app([None])
        assert call(application, request("GET", "/api/v6/devices?page=0", Authorization=bearer()))[:2] \
            == (401, {"detail": "User or tenant not found"})

    def test_query_parameter_errors_are_pydantic_shaped(self):
        application, _, _ = make_app([TENANT_ROW])
        status, body, _ = call(application, request(
            "GET", "/api/v6/devices?page=0&page_size=101&include_stats=maybe", Authorization=bearer()))
        assert status == 422
        assert [(e["type"], e["loc"]) for e in body["detail"]] == [
            ("bool_parsing", ["query", "include_stats"]), ("greater_than_equal", ["query", "page"]),
            ("less_than_equal", ["query", "page_size"])]

    def test_devices_filter_and_platform_view(self):
        row = {"id": "d", "dev_eui": "E", "name": None, "tenant_id": TENANT, "status": "assigned",
               "lifecycle_state": "operational", "assigned_space_id": "s", "assigned_at": None,
               "last_seen_at": NOW, "created_at": NOW, "updated_at": None, "device_type": None,
               "space_code": "A1"}
        application, cur, _ = make_app([TENANT_ROW, {"total": 41}, [row]])
        status, body, _ = call(application, request("GET", "/api/v6/devices?status=assigned&page=3",
                                                    Authorization=bearer()))
        assert status == 200 and (body["total"], body["page"], body["pages"]) == (41, 3, 3)
        assert body["items"][0]["space_id"] == "s" and body["items"][0]["last_seen_at"] == NOW.isoformat()
        assert cur.sql[-1][1] == [TENANT, "assigned", 20, 40]
        admin = dict(TENANT_ROW, tenant_id=app.PLATFORM_TENANT_ID, tenant_type="platform")
        application, cur, _ = make_app([admin, {"total": 0}, []])
        call(application, request("GET", "/api/v6/devices", Authorization=bearer(app.PLATFORM_TENANT_ID)))
        assert "tenant_id =" not in cur.sql[-1][0] and cur.sql[-1][1] == [20, 0]

    def test_spaces_always_filter_on_the_token_tenant(self):
        admin = dict(TENANT_ROW, tenant_id=app.PLATFORM_TENANT_ID, tenant_type="platform")
        application, cur, _ = make_app([admin, {"total": 0}, []])
        status, body, _ = call(application, request("GET", "/api/v6/spaces",
                                                    Authorization=bearer(app.PLATFORM_TENANT_ID)))
        assert status == 200 and body == {"spaces": [], "total": 0, "page": 1, "page_size": 100,
                                          "total_pages": 0, "tenant_id": app.PLATFORM_TENANT_ID}
        assert cur.sql[-1][1] == [app.PLATFORM_TENANT_ID, 100, 0]


class TestLogin:
    ROW = {"id": uuid.UUID(USER), "email": "ops@x.eu", "username": "Ops", "created_at": NOW,
           "tenant_id": uuid.UUID(TENANT), "role": "owner", "tenant_name": "T", "tenant_slug": "t",
           "tenant_type": "customer", "hashed_password": None}

    def form(self, **fields):
        return request("POST", "/api/auth/login", "&".join("%s=%s" % kv for kv in fields.items()).encode())

    def test_missing_fields_are_422(self):
        application, _, _ = make_app()
        status, body, _ = call(application, self.form(username="ops@x.eu"))
        assert status == 422 and body["detail"][0]["loc"] == ["body", "password"]

    def test_tokens_and_user(self, monkeypatch):
        monkeypatch.setattr(app, "verify_password", lambda given, stored: given == "pw")
        application, cur, db = make_app([self.ROW])
        status, body, _ = call(application, self.form(username="ops@x.eu", password="pw"))
        assert status == 200 and body["token_type"] == "bearer" and body["expires_in"] == 3600
        assert body["user"]["id"] == USER and body["user"]["is_platform_admin"] is False
        claims = app.jwt_decode(body["access_token"], SECRET)
        assert (claims["sub"], claims["tenant_id"], claims["email"], claims["role"], claims["type"]) == \
            (USER, TENANT, "ops@x.eu", "owner", "access")
        assert app.jwt_decode(body["refresh_token"], SECRET)["type"] == "refresh"
        assert "ORDER BY um.created_at DESC LIMIT 1" in cur.sql[-1][0] and cur.sql[-1][1] == ("ops@x.eu",)
        assert db.contexts == [None]   # no tenant context by default

    def test_wrong_password(self, monkeypatch):
        monkeypatch.setattr(app, "verify_password", lambda given, stored: False)
        application, _, _ = make_app([self.ROW])
        assert call(application, self.form(username="ops@x.eu", password="x"))[:2] == \
            (401, {"detail": "Incorrect email or password"})

    def test_lab_tenant_context_sets_login_email_then_user(self, monkeypatch):
        monkeypatch.setattr(app, "verify_password", lambda given, stored: True)
        application, cur, db = make_app([{"id": USER}, self.ROW], set_context=True)
        call(application, self.form(username="Ops@X.eu", password="pw"))
        assert db.contexts == [("", False, "")]
        settings = [p for s, p in cur.sql if s.startswith("SELECT set_config(")]
        assert settings == [("app.login_email", "ops@x.eu"), ("app.current_user_id", USER)]

    def test_refresh_needs_a_refresh_token(self):
        application, _, _ = make_app()
        access = app.make_access_token(USER, TENANT, "a@b.c", "owner", SECRET, 60)
        assert call(application, request("POST", "/api/auth/refresh", {"refresh_token": access}))[:2] \
            == (401, {"detail": "Invalid token type"})
        assert call(application, request("POST", "/api/auth/refresh", {"refresh_token": "x"}))[:2] \
            == (401, {"detail": "Invalid or expired refresh token"})
        assert call(application, request("POST", "/api/auth/refresh", {}))[0] == 422

    def test_me_and_logout(self):
        application, _, _ = make_app([dict(self.ROW, is_active=False)])
        assert call(application, request("GET", "/api/auth/me"))[:2] == (401, {"detail": "Not authenticated"})
        assert call(application, request("GET", "/api/auth/me", Authorization=bearer()))[:2] == \
            (403, {"detail": "User account is disabled"})
        assert call(application, request("POST", "/api/auth/logout", Authorization="Bearer x"))[:2] == \
            (200, {"success": True, "message": "Logged out successfully"})


class TestReservations:
    SPACE = "11111111-2222-4333-8444-555555555555"

    def body(self, start_h=1, end_h=2, **extra):
        now = dt.datetime.now(dt.timezone.utc)
        return dict({"space_id": self.SPACE, "start_time": (now + dt.timedelta(hours=start_h)).isoformat(),
                     "end_time": (now + dt.timedelta(hours=end_h)).isoformat()}, **extra)

    def post(self, answers, body, **kwargs):
        application, cur, db = make_app([TENANT_ROW] + answers, **kwargs)
        result = call(application, request("POST", "/api/v6/reservations/", body, Authorization=bearer()))
        return result, cur, db

    def test_end_before_start_is_422(self):
        (status, body, _), _, _ = self.post([], self.body(2, 1))
        assert status == 422 and body["detail"][0]["loc"] == ["body", "end_time"]
        assert body["detail"][0]["msg"] == "Value error, end_time must be after start_time"

    def test_past_is_400(self):
        assert self.post([], self.body(-2, -1))[0][:2] == \
            (400, {"detail": "Cannot create reservation in the past"})

    def test_space_of_another_tenant_is_400(self):
        (status, body, _), _, _ = self.post([None], self.body())
        assert status == 400 and body["detail"].endswith("not found or does not belong to your tenant")

    def test_overlap_is_400(self):
        (status, body, _), _, _ = self.post([{"id": self.SPACE, "code": "A1", "current_state": "free",
                                              "enabled": True}, {"n": 1}], self.body())
        assert (status, body["detail"]) == (400, "Space is not available during the requested time. "
                                                 "Conflicts: 1")

    def test_created_with_request_id_in_metadata(self):
        space = {"id": self.SPACE, "code": "A1", "current_state": "free", "enabled": True}
        payload = self.body(request_id="req-1", metadata={"k": "v"})
        (status, body, _), cur, _ = self.post([None, space, {"n": 0}, {"id": "r-1"}], payload)
        assert status == 201 and body == {
            "id": "r-1", "space_id": self.SPACE, "space_code": "A1", "start_time": payload["start_time"],
            "end_time": payload["end_time"], "status": "active", "is_duplicate": False,
            "message": "Reservation created successfully"}
        insert = cur.statements("INSERT INTO reservations")[0][1]
        assert json.loads(insert[8]) == {"k": "v", "request_id": "req-1"} and insert[2] == USER
        assert not cur.statements("UPDATE spaces")   # starts in an hour: space not reserved yet

    def test_idempotent_replay(self):
        existing = {"id": "r-1", "space_id": self.SPACE, "start_time": NOW, "end_time": NOW,
                    "status": "active"}
        (status, body, _), cur, _ = self.post([existing], self.body(request_id="req-1"))
        assert status == 201 and body["is_duplicate"] is True and "space_code" not in body
        assert not cur.statements("INSERT")

    def test_list_serves_metadata_as_object(self):
        row = {"id": "r", "tenant_id": TENANT, "space_id": self.SPACE, "user_id": None, "user_email": None,
               "user_name": None, "start_time": NOW.replace(tzinfo=dt.timezone.utc), "end_time": NOW,
               "status": "active", "checked_in": False, "checked_in_at": None, "checked_out_at": None,
               "rate": None, "total_cost": None, "payment_status": "pending", "cancelled_at": None,
               "cancelled_by": None, "cancellation_reason": None, "notes": None,
               "metadata": {"request_id": "x"}, "created_at": NOW, "updated_at": None, "space_code": "A1"}
        application, _, _ = make_app([TENANT_ROW, {"total": 1}, [row]])
        status, body, _ = call(application, request("GET", "/api/v6/reservations", Authorization=bearer()))
        item = body["reservations"][0]
        assert status == 200 and set(body) == {"reservations", "total", "page", "page_size"}
        assert item["metadata"] == {"request_id": "x"} and "space_code" not in item
        assert item["start_time"] == "2026-01-01T12:00:00Z"

    def test_cancel(self):
        rid = "99999999-2222-4333-8444-555555555555"
        application, cur, _ = make_app([TENANT_ROW, {"id": rid, "space_id": self.SPACE, "status": "active"}])
        status, body, _ = call(application, request("PUT", "/api/v6/reservations/%s/cancel" % rid,
                                                    {"cancellation_reason": "r"}, Authorization=bearer()))
        assert (status, body) == (200, {"success": True, "reservation_id": rid,
                                        "message": "Reservation cancelled successfully"})
        assert cur.statements("UPDATE reservations")[0][1][1:3] == (USER, "r")
        application, _, _ = make_app([TENANT_ROW, {"id": rid, "space_id": self.SPACE, "status": "completed"}])
        assert call(application, request("PUT", "/api/v6/reservations/%s/cancel" % rid,
                                         Authorization=bearer()))[:2] == \
            (400, {"detail": "Cannot cancel reservation with status: completed"})


class TestWebhook:
    def test_invalid_json_and_signature(self):
        application, _, _ = make_app()
        application.webhook_secret = "hook"
        status, body, _ = call(application, request("POST", "/api/v1/uplink", b"{nope"))
        assert status == 400 and body["detail"].startswith("Invalid JSON: ")
        event = json.dumps(up_event()).encode()
        assert call(application, request("POST", "/webhooks/chirpstack/uplink", event,
                                         **{"X-Signature": "bad"}))[:2] == (401, {"detail": "Invalid signature"})

    def test_uplink_runs_as_platform_admin_with_lab_context(self):
        application, _, db = make_app([None], set_context=True)
        status, body, _ = call(application, request("POST", "/api/v1/uplink", json.dumps(up_event()).encode()))
        assert status == 200 and body["status"] == "orphan" and db.contexts == [("", True, "")]


class TestJobs:
    def test_expiry_writes_completed_and_frees_spaces(self):
        cur = Cursor(rowcounts=[2, 1])
        assert app.Jobs(FakeDB(cur), None, 90).expire_reservations() == (2, 1)
        assert "status = 'completed'" in cur.sql[0][0] and "checked_in = false" in cur.sql[0][0]
        assert "current_state = 'reserved'" in cur.sql[1][0]

    def test_retention_uses_the_configured_days(self):
        cur = Cursor(rowcounts=[5])
        assert app.Jobs(FakeDB(cur), None, 7).cleanup_readings() == 5
        assert cur.sql[0] == ("DELETE FROM sensor_readings WHERE received_at < now() - "
                              "make_interval(days => %s)", (7,))

    def test_a_failing_job_does_not_stop_the_loop(self):
        jobs = app.Jobs(None, None, 90)
        runs = []

        def job():
            runs.append(1)
            if len(runs) >= 2:
                jobs.stop.set()
            raise RuntimeError("db down")
        job.__name__ = "job"
        jobs._loop(job, 0)
        assert len(runs) == 2


def test_module_has_no_v5_import_and_names_the_contract():
    source = (SERVICES / "v6api" / "app.py").read_text()
    assert "v5api" not in source.split('"""', 2)[2]
    assert "docs/v6-contract.md" in app.__doc__ and app.VERSION == "6.0.0"
