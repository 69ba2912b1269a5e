"""Unit tests of the V6 API stand-in's pure helpers (no database, no network).

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
    def test_round_trip_carries_v6_claims(self):
        token = app.make_access_token(USER, TENANT, "owner", True, SECRET, TTL, now=1_000)
        claims = app.jwt_decode(token, SECRET, now=1_001)
        assert claims == {"sub": USER, "user_id": USER, "tenant_id": TENANT, "role": "owner",
                          "is_platform_admin": True, "iat": 1_000, "exp": 1_000 + TTL}
        assert app.token_identity(claims) == (USER, TENANT, True)

    def test_signature_is_hmac_sha256_over_header_and_claims(self):
        token = app.make_access_token(USER, TENANT, "viewer", False, SECRET, TTL)
        head, body, sig = token.split(".")
        assert json.loads(app.b64url_decode(head)) == {"alg": "HS256", "typ": "JWT"}
        expected = hmac.new(SECRET.encode(), (head + "." + body).encode(), hashlib.sha256).digest()
        assert app.b64url_decode(sig) == expected and "=" not in token

    def test_tampered_tenant_is_rejected(self):
        token = app.make_access_token(USER, TENANT, "viewer", False, SECRET, TTL)
        head, body, sig = token.split(".")
        claims = json.loads(app.b64url_decode(body))
        claims["tenant_id"] = "00000000-0000-0000-0000-000000000000"
        claims["is_platform_admin"] = True
        forged = ".".join([head, app.b64url_encode(json.dumps(claims).encode()), sig])
        with pytest.raises(app.JWTError, match="signature"):
            app.jwt_decode(forged, SECRET)

    def test_wrong_secret_and_alg_none_are_rejected(self):
        token = app.make_access_token(USER, TENANT, "viewer", False, SECRET, TTL)
        with pytest.raises(app.JWTError):
            app.jwt_decode(token, "o" * 32)
        head = app.b64url_encode(b'{"alg":"none","typ":"JWT"}')
        body = app.b64url_encode(b'{"sub":"u","exp":9999999999}')
        with pytest.raises(app.JWTError):
            app.jwt_decode(head + "." + body + ".", SECRET)

    def test_expired_token_is_rejected(self):
        token = app.make_access_token(USER, TENANT, "viewer", False, SECRET, TTL, now=1_000)
        app.jwt_decode(token, SECRET, now=1_000 + TTL - 1)
        with pytest.raises(app.JWTError, match="expired"):
            app.jwt_decode(token, SECRET, now=1_000 + TTL)

    @pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "!!.??.**", "e30.e30.e30"])
    def test_garbage_is_rejected(self, token):
        with pytest.raises(app.JWTError):
            app.jwt_decode(token, SECRET)

    @pytest.mark.parametrize("claims", [{}, {"sub": USER}, {"tenant_id": TENANT},
                                        {"sub": "not-a-uuid", "tenant_id": TENANT}])
    def test_identity_needs_sub_and_tenant(self, claims):
        with pytest.raises(app.JWTError):
            app.token_identity(claims)

    def test_v5_token_is_accepted_without_platform_rights(self):
        # A V5 token (no is_platform_admin claim) signed with the same secret stays valid.
        assert app.token_identity({"sub": USER, "tenant_id": TENANT, "role": "platform_admin"}) == \
            (USER, TENANT, False)


class TestLoginRules:
    ROWS = [
        {"tenant_id": "t-b", "role": "owner", "name": "Verdegris", "slug": "verdegris",
         "type": "customer"},
        {"tenant_id": "t-p", "role": "owner", "name": "Platform", "slug": "platform", "type": "platform"},
        {"tenant_id": "t-a", "role": "viewer", "name": "Acme", "slug": "acme", "type": "customer"},
    ]

    def test_highest_role_then_tenant_name(self):
        assert app.pick_membership(self.ROWS)["tenant_id"] == "t-p"
        assert app.pick_membership(self.ROWS[::2])["tenant_id"] == "t-b"

    def test_explicit_tenant_by_id_or_slug(self):
        assert app.pick_membership(self.ROWS, "acme")["tenant_id"] == "t-a"
        assert app.pick_membership(self.ROWS, "t-b")["tenant_id"] == "t-b"
        assert app.pick_membership(self.ROWS, "nope") is None
        assert app.pick_membership([]) is None

    def test_platform_admin_is_owner_or_admin_of_a_platform_tenant(self):
        assert app.is_platform_admin(self.ROWS)
        assert not app.is_platform_admin([dict(self.ROWS[1], role="operator")])
        assert not app.is_platform_admin(self.ROWS[::2])


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

    def test_protocol_replies(self):
        reply, add, remove = app.ws_reply('{"type": "subscribe", "channel": "spaces"}')
        assert reply == {"type": "subscribed", "channel": "spaces"} and add == "spaces" and remove is None
        reply, add, remove = app.ws_reply('{"type": "unsubscribe", "channel": "alerts"}')
        assert reply == {"type": "unsubscribed", "channel": "alerts"} and remove == "alerts"
        assert app.ws_reply('{"type": "ping"}')[0]["type"] == "pong"
        for bad in ('{"type": "subscribe", "channel": "nope"}', "not json", "[]", '{"type": "x"}'):
            assert app.ws_reply(bad)[0]["type"] == "error"

    def test_registry_routes_by_tenant_and_channel(self):
        class Fake:
            def __init__(self, tenant, sees_all=False):
                self.tenant_id, self.sees_all, self.channels, self.frames = tenant, sees_all, set(), []

            def send_frame(self, frame):
                self.frames.append(frame)
                return True

        registry = app.Registry()
        mine, other, idle, admin = Fake(TENANT), Fake("t-2"), Fake(TENANT), Fake("p", sees_all=True)
        mine.channels.add("spaces"), other.channels.add("spaces"), admin.channels.add("spaces")
        for conn in (mine, other, idle, admin):
            registry.add(conn)
        assert registry.broadcast(TENANT, "spaces", {"type": "space_update"}) == 2
        assert len(mine.frames) == 1 and not other.frames and not idle.frames and len(admin.frames) == 1
        assert json.loads(app.decode_frame(mine.frames[0], require_mask=False)[0].payload) == \
            {"type": "space_update"}
        registry.remove(mine)
        assert registry.broadcast(TENANT, "spaces", {}) == 1 and registry.count() == 3


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
        assert up["deduplication_id"] == event["deduplicationId"]
        assert up["raw"] == body.decode() and event["deduplicationId"] in up["raw"]
        assert app.naive_utc(up["time"]) == dt.datetime(2025, 10, 23, 13, 18, 34, 204118)

    @pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[]", b"{}", b'{"deviceInfo": {}}',
                                      b'{"deviceInfo": {"devEui": ""}}', b'{"deviceInfo": "x"}',
                                      b'{"deviceInfo": {"devEui": "xyz"}}'])
    def test_bad_uplinks_are_rejected(self, body):
        with pytest.raises(app.BadRequest):
            app.parse_uplink(body)

    def test_missing_dev_eui_message(self):
        with pytest.raises(app.BadRequest, match="devEui"):
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

    def test_signature_check(self):
        body = json.dumps(up_event()).encode()
        good = hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
        assert app.verify_signature("hook-secret", body, good)
        assert app.verify_signature("hook-secret", body, good.upper())
        assert app.verify_signature("hook-secret", body, "sha256=" + good)
        assert not app.verify_signature("hook-secret", body + b" ", good)
        assert not app.verify_signature("other-secret", body, good)
        assert not app.verify_signature("hook-secret", body, None)
        assert not app.verify_signature("hook-secret", body, "")
        assert not app.verify_signature("hook-secret", body, "é" * 64)


class TestProcessUplink:
    """process_uplink against a scripted cursor: checks the decisions, not the SQL."""

    class Cursor:
        def __init__(self, answers):
            self.answers, self.sql = list(answers), []

        def execute(self, sql, params=None):
            self.sql.append((" ".join(sql.split()), params))

        def fetchone(self):
            return self.answers.pop(0)

    DEV = {"id": "dev-1", "tenant_id": TENANT, "assigned_space_id": "sp-1"}

    def run(self, answers, **event):
        up = app.parse_uplink(json.dumps(dict(up_event(), **event)).encode())
        cur = self.Cursor(answers)
        result, message = app.process_uplink(cur, up, now=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
        return result, message, cur.sql

    def test_reading_space_update_and_message(self):
        space = {"id": "sp-1", "code": "P1-01", "tenant_id": TENANT, "current_state": "free",
                 "sensor_state": "free"}
        result, message, sql = self.run([self.DEV, None, {"id": "r-1"}, space])
        assert result["status"] == "processed" and result["changed"] is True
        insert = next(p for s, p in sql if s.startswith("INSERT INTO sensor_readings"))
        assert insert[:5] == (TENANT, "dev-1", "58A0CB00001196F3", 42, True)
        assert insert[8] == dt.datetime(2025, 10, 23, 13, 18, 34, 204118)  # received_at, naive UTC
        update = next(p for s, p in sql if s.startswith("UPDATE spaces"))
        assert update[:3] == ("occupied", "occupied", True)
        assert message["type"] == "space_update" and message["state"] == "occupied"
        assert message["space_code"] == "P1-01" and message["fcnt"] == 42
        assert not any("tenant_id =" in s for s, _ in sql)  # isolation is RLS's job

    def test_reserved_space_keeps_its_state(self):
        space = {"id": "sp-1", "code": "P1-01", "tenant_id": TENANT, "current_state": "reserved",
                 "sensor_state": "free"}
        result, message, sql = self.run([self.DEV, None, {"id": "r-1"}, space])
        assert result["state"] == "reserved" and result["changed"] is False
        update = next(p for s, p in sql if s.startswith("UPDATE spaces"))
        assert update[:3] == ("occupied", "reserved", False)
        assert message["state"] == "reserved" and message["sensor_state"] == "occupied"

    def test_duplicate(self):
        result, message, sql = self.run([self.DEV, {"?column?": 1}])
        assert result["status"] == "duplicate" and message is None
        assert not any(s.startswith("INSERT") for s, _ in sql)

    def test_orphan(self):
        result, message, sql = self.run([None, None, {"message_count": 3}])
        assert result == {"dev_eui": "58A0CB00001196F3", "fcnt": 42, "status": "orphan",
                          "message_count": 3}
        orphan = next(p for s, p in sql if s.startswith("INSERT INTO orphan_devices"))
        assert json.loads(orphan[3])["fCnt"] == 42 and message is None

    def test_display_status_frame_is_not_an_orphan(self):
        result, message, sql = self.run([None, {"id": "disp-1"}])
        assert result["status"] == "processed" and result["device_kind"] == "display"
        assert not any("orphan_devices" in s for s, _ in sql)


def test_module_has_no_v5_import():
    source = (SERVICES / "v6api" / "app.py").read_text()
    assert "v5api" not in source.split('"""', 2)[2]
    assert os.path.basename(app.__file__) == "app.py" and app.VERSION == "6.0.0-lab"


def test_token_lifetime_is_relative_to_issue_time():
    token = app.make_access_token(USER, TENANT, "owner", False, SECRET, 60)
    claims = app.jwt_decode(token, SECRET)
    assert claims["exp"] - claims["iat"] == 60 and abs(claims["iat"] - time.time()) < 5
