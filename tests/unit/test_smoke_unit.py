"""Unit tests of the phase-3 smoke engine's pure parts (module_utils/parking/smoke/).

No network, no database. Where the lab's API stand-ins define the other side of a protocol
(websocket frames, the uplink parser), they are loaded by path and used as the peer, so the
client is checked against the server it talks to in the lab.
"""
import base64
import datetime as dt
import importlib.util
import json
import random
import re
import time
import uuid
from pathlib import Path

import pytest

from parking import smoke
from parking.errors import ConfigError

SERVICES = Path(__file__).resolve().parents[2] / "lab" / "services"
NOW = dt.datetime(2026, 11, 26, 12, 0, 0, tzinfo=dt.timezone.utc).timestamp()
EUI = "58A0CB00001196F3"


def load(name, relative):
    spec = importlib.util.spec_from_file_location(name, SERVICES / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


v5 = load("lab_v5api_app_smoke", "v5api/app.py")
v6 = load("lab_v6api_app_smoke", "v6api/app.py")


def options(**over):
    base = {"domain": "verdegris.test", "connect_host": "127.0.0.1", "connect_port": 58443,
            "expect_backend": "v5", "login_email": "ops@verdegris.eu", "login_password": "lab-password",
            "probe_dev_eui": EUI}
    base.update(over)
    return base


# --- websocket handshake --------------------------------------------------------------------

def test_ws_accept_matches_rfc6455_example():
    # RFC 6455 section 1.3
    assert smoke.ws_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_ws_accept_matches_the_lab_server():
    key = smoke.ws_key()
    assert smoke.ws_accept(key) == v6.ws_accept_key(key)


def test_ws_key_is_16_random_bytes_base64():
    key = smoke.ws_key()
    assert len(base64.b64decode(key, validate=True)) == 16
    assert smoke.ws_key(lambda n: bytes(range(n))) == base64.b64encode(bytes(range(16))).decode()
    assert len({smoke.ws_key() for _ in range(20)}) == 20


def test_handshake_request_has_the_upgrade_headers():
    raw = smoke.handshake_request("api.verdegris.test", "/ws?token=abc", "a2V5a2V5a2V5a2V5a2V5aw==").decode()
    assert raw.startswith("GET /ws?token=abc HTTP/1.1\r\n")
    for line in ("Host: api.verdegris.test", "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: a2V5a2V5a2V5a2V5a2V5aw==", "Sec-WebSocket-Version: 13"):
        assert "\r\n" + line + "\r\n" in raw
    assert raw.endswith("\r\n\r\n")


def test_handshake_response_accepted_and_refused():
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    ok = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    assert smoke.parse_handshake_response(ok, key)["upgrade"] == "websocket"
    with pytest.raises(smoke.WebSocketError, match="HTTP 404"):
        smoke.parse_handshake_response(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json", key)
    with pytest.raises(smoke.WebSocketError, match="Sec-WebSocket-Accept"):
        smoke.parse_handshake_response(ok.replace(b"s3pP", b"AAAA"), key)
    with pytest.raises(smoke.WebSocketError, match="Upgrade"):
        smoke.parse_handshake_response(ok.replace(b"Upgrade: websocket\r\n", b""), key)


# --- websocket frames -----------------------------------------------------------------------

def test_encode_masked_hello_matches_rfc6455_example():
    # RFC 6455 section 5.7: a single-frame masked text message "Hello"
    frame = smoke.encode_frame(smoke.OP_TEXT, "Hello", mask_key=bytes([0x37, 0xfa, 0x21, 0x3d]))
    assert frame == bytes([0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58])


@pytest.mark.parametrize("size,header_len", [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)])
def test_encode_is_always_masked_with_the_right_length_field(size, header_len):
    payload = bytes(random.Random(size).getrandbits(8) for _ in range(size))
    frame = smoke.encode_frame(smoke.OP_BINARY, payload)
    assert frame[1] & 0x80, "client frames must carry the mask bit"
    mask = frame[header_len:header_len + 4]
    assert smoke.apply_mask(frame[header_len + 4:], mask) == payload
    # the lab server (which requires masking) reads it back
    parsed, used = v6.decode_frame(frame, require_mask=True, max_size=1 << 20)
    assert (parsed.fin, parsed.opcode, parsed.payload, used) == (True, smoke.OP_BINARY, payload, len(frame))


def test_encode_uses_a_fresh_random_mask():
    masks = {smoke.encode_frame(smoke.OP_TEXT, "x")[2:6] for _ in range(20)}
    assert len(masks) > 1
    with pytest.raises(ValueError):
        smoke.encode_frame(smoke.OP_TEXT, "x", mask_key=b"abc")


def test_decode_unmasked_server_frames():
    assert smoke.decode_frame(bytes([0x81, 0x05]) + b"Hello") == ((True, smoke.OP_TEXT, b"Hello"), 7)
    big = b"y" * 300
    server = v6.encode_frame(v6.OP_TEXT, big)                  # what the lab server sends
    assert smoke.decode_frame(server + b"rest") == ((True, smoke.OP_TEXT, big), len(server))
    huge = b"z" * 70000
    assert smoke.decode_frame(v6.encode_frame(v6.OP_BINARY, huge))[0][2] == huge
    close = v6.encode_frame(v6.OP_CLOSE, v6.close_payload(1008, "invalid token"))
    (fin, opcode, payload), _ = smoke.decode_frame(close)
    assert opcode == smoke.OP_CLOSE and payload[:2] == (1008).to_bytes(2, "big")


def test_decode_needs_more_bytes():
    frame = v6.encode_frame(v6.OP_TEXT, b"a" * 200)
    for cut in (0, 1, 3, len(frame) - 1):
        assert smoke.decode_frame(frame[:cut]) is None


def test_decode_fragments_and_control_frames():
    first = bytes([0x01, 0x03]) + b"abc"                       # text, not final
    (fin, opcode, payload), used = smoke.decode_frame(first)
    assert (fin, opcode, payload, used) == (False, smoke.OP_TEXT, b"abc", 5)
    ping = bytes([0x89, 0x02]) + b"hi"
    assert smoke.decode_frame(ping)[0] == (True, smoke.OP_PING, b"hi")


@pytest.mark.parametrize("raw,match", [
    (bytes([0x81, 0x85, 1, 2, 3, 4]) + b"Hello", "masked"),
    (bytes([0xC1, 0x00]), "reserved"),
    (bytes([0x83, 0x00]), "opcode"),
    (bytes([0x09, 0x00]), "control"),
    (bytes([0x89, 126, 0, 200]) + b"p" * 200, "control"),
])
def test_decode_rejects_protocol_errors(raw, match):
    with pytest.raises(smoke.WebSocketError, match=match):
        smoke.decode_frame(raw)


def test_decode_refuses_oversized_frames():
    with pytest.raises(smoke.WebSocketError, match="too large"):
        smoke.decode_frame(bytes([0x82, 127]) + (1 << 40).to_bytes(8, "big"))


# --- the ChirpStack up event ----------------------------------------------------------------

def _keys(value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            if key != "tags":
                yield from _keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item)


def test_up_event_shape():
    ev = smoke.build_up_event(EUI, 4242, True, time_ns=1764158314_204118533, rng=random.Random(1))
    assert set(ev) == {"deduplicationId", "time", "deviceInfo", "devAddr", "adr", "dr", "fCnt", "fPort",
                       "confirmed", "data", "rxInfo", "txInfo", "regionConfigId"}
    assert all(re.match(r"^[a-z][A-Za-z0-9]*$", k) for k in _keys(ev)), "pbjson lowerCamelCase"
    info = ev["deviceInfo"]
    assert info["devEui"] == EUI.lower() and re.match(r"^[0-9a-f]{16}$", info["devEui"])
    assert info["deviceProfileName"] == "browan_tbms100_motion"
    for key in ("tenantId", "applicationId", "deviceProfileId"):
        uuid.UUID(info[key])
    uuid.UUID(ev["deduplicationId"])
    assert re.match(r"^[0-9a-f]{8}$", ev["devAddr"])
    assert re.match(r"^[0-9a-f]{16}$", ev["rxInfo"][0]["gatewayId"])
    assert base64.b64decode(ev["data"], validate=True) == b"\x01"
    assert base64.b64decode(smoke.build_up_event(EUI, 1, False)["data"]) == b"\x00"
    assert ev["fCnt"] == 4242 and isinstance(ev["fCnt"], int)
    assert ev["time"] == "2025-11-26T11:58:34.204118533+00:00"
    assert ev["rxInfo"][0]["nsTime"] == ev["time"]
    assert ev["adr"] is True and ev["confirmed"] is False and ev["fPort"] == 102
    assert "object" not in ev, "unset nested messages are omitted"
    json.dumps(ev)


def test_up_event_ids_are_unique_and_can_be_given():
    assert len({smoke.build_up_event(EUI, 1, True)["deduplicationId"] for _ in range(50)}) == 50
    fixed = "6d2b9c1e-0f4a-4c3e-9b7d-2a1f0e9d8c7b"
    assert smoke.build_up_event(EUI, 1, True, deduplication_id=fixed)["deduplicationId"] == fixed


@pytest.mark.parametrize("ns,text", [
    (1764158314_000000000, "2025-11-26T11:58:34+00:00"),
    (1764158314_123000000, "2025-11-26T11:58:34.123+00:00"),
    (1764158314_123456000, "2025-11-26T11:58:34.123456+00:00"),
    (1764158314_123456789, "2025-11-26T11:58:34.123456789+00:00"),
])
def test_rfc3339_like_chrono(ns, text):
    assert smoke.format_rfc3339(ns) == text
    assert not text.endswith("Z")


def test_up_event_is_read_by_both_lab_receivers():
    ev = smoke.build_up_event("58a0cb00001196f3", 77, True, rng=random.Random(2))
    body = json.dumps(ev).encode()
    up5 = v5.parse_uplink(body)
    assert (up5["dev_eui"], up5["fcnt"], up5["payload"], up5["deduplication_id"]) == (EUI, 77, b"\x01",
                                                                                       ev["deduplicationId"])
    assert v5.decode_sensor_payload(up5["profile_name"], up5["payload"])["occupancy"] == "OCCUPIED"
    up6 = v6.parse_uplink(body)
    assert (up6["dev_eui"], up6["fcnt"], up6["occupied"]) == (EUI, 77, True)
    assert ev["deduplicationId"] in up6["raw"]
    assert up6["time"] is not None and up5["time"] == up6["time"]


# --- fCnt and reservation windows ----------------------------------------------------------

def test_fcnt_base_stays_below_int4_and_never_repeats():
    base = smoke.fcnt_base(NOW)
    assert 0 < base < 2**31 - 1
    assert base + smoke.PROBES_PER_RUN - 1 <= smoke.FCNT_MAX
    later = smoke.fcnt_base(NOW + 0.25)
    assert later >= base + smoke.PROBES_PER_RUN, "a run 0.25 s later starts above this run's probes"
    # above anything the lab simulator (same scheme) can have sent by now
    sim = load("lab_simulator_sim_smoke", "simulator/sim.py")
    assert base > sim.fcnt_ceiling(NOW)
    assert smoke.fcnt_base(time.time()) < 2**31 - 1


def test_fcnt_base_refuses_to_overflow():
    end = smoke.FCNT_EPOCH + (2**31) / smoke.FCNT_PER_SECOND
    with pytest.raises(ConfigError, match="probe_fcnt_base"):
        smoke.fcnt_base(end)


def test_reservation_windows_never_overlap_and_last_at_most_24h():
    windows = [smoke.reservation_window(NOW + s, a) for s in range(5) for a in range(smoke.RESERVATION_SLOTS)]
    for start, end in windows:
        assert dt.timedelta(0) < end - start <= dt.timedelta(hours=24)
        assert start.year >= 2100 and start.tzinfo is not None
    ordered = sorted(windows)
    assert all(a[1] <= b[0] for a, b in zip(ordered, ordered[1:]))
    assert smoke.reservation_window(NOW + 0.9) == smoke.reservation_window(NOW)
    with pytest.raises(ValueError):
        smoke.reservation_window(NOW, smoke.RESERVATION_SLOTS)


# --- host rules -----------------------------------------------------------------------------

def rule(host="h", **kw):
    return smoke.normalise_host_rule(host, kw)


def test_default_rules_follow_the_api_host():
    rules = smoke.default_host_rules()
    assert rules["api"]["version_prefix"] == "expected" and rules["api-v6"]["version_prefix"] == "6."
    assert {h for h, r in rules.items() if r.get("status") == 401} == {"db-v6", "files-v6", "adminer"}
    assert "api" not in smoke.default_host_rules("api-v6")
    assert smoke.default_host_rules("api-v6")["api-v6"]["version_prefix"] == "expected"


def test_health_rule_with_the_expected_version():
    r = rule(path="/health", content_type="application/json", version_prefix="expected")
    body = json.dumps({"status": "healthy", "version": "5.8.0-lab"}).encode()
    headers = {"content-type": "application/json"}
    assert smoke.evaluate_host_rule(r, 200, headers, body, "5.") == (True, "200 application/json")
    ok, detail = smoke.evaluate_host_rule(r, 200, headers, body, "6.")
    assert not ok and "version 5.8.0-lab, expected 6.x" in detail
    ok, detail = smoke.evaluate_host_rule(r, 200, headers, b"<html>", "5.")
    assert not ok and "no JSON version" in detail


def test_status_content_type_auth_and_body_rules():
    html = {"content-type": "text/html; charset=utf-8"}
    assert smoke.evaluate_host_rule(rule(content_type="text/html"), 200, html, b"<h1>", "5.")[0]
    ok, detail = smoke.evaluate_host_rule(rule(content_type="text/html"), 404, {"content-type": "text/plain"},
                                          b"404 page not found", "5.")
    assert not ok and "status 404, expected 200" in detail and "content type" in detail
    basic = rule(status=401, auth="basic")
    assert smoke.evaluate_host_rule(basic, 401, {"www-authenticate": 'Basic realm="x"'}, b"", "5.")[0]
    ok, detail = smoke.evaluate_host_rule(basic, 200, {}, b"adminer", "5.")
    assert not ok and "status 200, expected 401" in detail and "WWW-Authenticate" in detail
    assert smoke.evaluate_host_rule(rule(status=[200, 302]), 302, {}, b"", "5.")[0]
    assert not smoke.evaluate_host_rule(rule(body_contains="ChirpStack"), 200, {}, b"other", "5.")[0]


@pytest.mark.parametrize("bad,match", [
    ({"stauts": 200}, "unknown key"),
    ({"status": "ok"}, "status"),
    ({"status": 99}, "status"),
    ({"path": "health"}, "path"),
    ({"auth": "digest"}, "auth"),
    ("200", "dict"),
])
def test_bad_host_rules_are_config_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        smoke.normalise_host_rule("app", bad)


def test_rule_defaults():
    assert smoke.normalise_host_rule("www", None) == {"path": "/", "status": [200]}


# --- options --------------------------------------------------------------------------------

def test_options_defaults_and_order():
    o = smoke.normalise_options(options(checks=["webhook", "health"], probe_dev_eui=" 58a0cb00001196f3 "))
    assert o["checks"] == ["health", "webhook"]
    assert o["probe_dev_eui"] == EUI and o["api_host"] == "api" and o["timeout"] == 10.0
    assert o["host_rules"]["api"]["version_prefix"] == "expected"
    assert smoke.normalise_options(options())["checks"] == list(smoke.DEFAULT_CHECKS)
    assert "routing" not in smoke.DEFAULT_CHECKS and "error_rate" not in smoke.DEFAULT_CHECKS


@pytest.mark.parametrize("over,match", [
    ({"expect_backend": "v7"}, "expect_backend"),
    ({"domain": "bad domain"}, "domain"),
    ({"login_password": ""}, "login_password"),
    ({"probe_dev_eui": None}, "probe_dev_eui is required"),
    ({"probe_dev_eui": "58A0CB0000"}, "16 hex"),
    ({"checks": ["health", "smoke"]}, "unknown smoke"),
    ({"probe_fcnt_base": 2**31 - 1}, "probe_fcnt_base"),
    ({"connect_port": 70000}, "connect_port"),
    ({"ca_file": "/nonexistent/ca.crt"}, "ca_file"),
    ({"host_rules": {"api": {"status": "x"}}}, "host_rules.api"),
])
def test_bad_options(over, match):
    with pytest.raises(ConfigError, match=match):
        smoke.normalise_options(options(**over))


def test_read_checks_need_no_probe_and_health_no_login():
    smoke.normalise_options(options(probe_dev_eui=None, checks=["health", "login", "spaces"]))
    smoke.normalise_options(options(login_email="", login_password="", probe_dev_eui=None,
                                    checks=["health", "host_rules"]))


# --- probe occupancy, token claims ----------------------------------------------------------

@pytest.mark.parametrize("space,occupied", [
    (None, False),
    ({"state": "FREE"}, False),
    ({"state": "OCCUPIED"}, True),
    ({"state": "MAINTENANCE"}, True),          # V5 refuses MAINTENANCE -> OCCUPIED: no change
    ({"current_state": "reserved", "sensor_state": "occupied"}, True),
    ({"current_state": "occupied", "sensor_state": "free"}, False),
    ({"current_state": "unknown", "sensor_state": None}, False),
])
def test_probe_reports_what_the_space_shows(space, occupied):
    assert smoke.probe_occupancy(space) is occupied


def test_jwt_claims_unverified():
    token = v5.make_access_token("u-1", "t-1", "operator", "x" * 32)
    assert smoke.jwt_claims(token)["tenant_id"] == "t-1"
    assert smoke.jwt_claims("garbage") == {}


# --- results --------------------------------------------------------------------------------

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


def test_results_never_carry_the_password_or_the_token():
    checks = [
        smoke.check_result("login", False, "rejected lab-password for ops", 10.0, {"echo": "lab-password"}),
        smoke.check_result("websocket", False, f"closed /ws?token={TOKEN}", 5.0, {"url": f"/ws?token={TOKEN}"}),
        smoke.check_result("health", True, "ok", 1.23456),
        smoke.check_result("webhook", None, "check mode", None, skipped=True),
    ]
    out = smoke.summarise(checks, ["lab-password", TOKEN, None], {"note": f"Bearer {TOKEN}"})
    text = json.dumps(out)
    assert "lab-password" not in text and TOKEN not in text
    assert smoke.REDACTED in out["checks"][0]["detail"] and smoke.REDACTED in out["note"]
    assert out["failed_checks"] == ["login", "websocket"] and out["skipped_checks"] == ["webhook"]
    assert out["passed"] is False
    assert out["checks"][2]["ms"] == 1.2 and out["checks"][3]["passed"] is None
    message = smoke.failure_message(out)
    assert message.startswith("smoke checks FAILED, 2 of 4: login (") and "websocket (" in message
    assert "lab-password" not in message


def test_all_passed_or_skipped_is_a_pass():
    out = smoke.summarise([smoke.check_result("health", True, "ok", 1.0),
                           smoke.check_result("websocket", None, "V5", None, skipped=True)])
    assert out["passed"] is True and out["failed_checks"] == []


def test_check_mode_skips_the_writing_checks_without_touching_the_network():
    opts = smoke.normalise_options(options(checks=["reservation", "websocket", "webhook"]))
    out = smoke.SmokeRun(opts).run(check_mode=True)
    assert out["skipped_checks"] == ["reservation", "websocket", "webhook"]
    assert all("check mode" in c["detail"] for c in out["checks"])
    assert out["passed"] is True and out["check_mode"] is True and out["probe"]["uplinks"] == []


def test_websocket_is_skipped_for_v5():
    run = smoke.SmokeRun(smoke.normalise_options(options(checks=["websocket"])))
    out = run.run()
    assert out["skipped_checks"] == ["websocket"] and "V5 has no websocket" in out["checks"][0]["detail"]


def test_writes_are_skipped_after_a_wrong_backend():
    run = smoke.SmokeRun(smoke.normalise_options(options(expect_backend="v6")))
    run.wrong_backend = "5.8.0-lab"
    for name in smoke.WRITE_CHECKS:
        assert "not V6" in run.skip_reason(name, False)
    assert run.skip_reason("spaces", False) is None


class _Headers:
    """Answers /health with a routing header that changes after a few polls (Traefik loading)."""

    def __init__(self, values):
        self.values = list(values)

    def request(self, host, method, path, body=None, token=None, form=None):
        value = self.values.pop(0) if len(self.values) > 1 else self.values[0]
        headers = {} if value is None else {"x-parking-cutover": value}
        return smoke.Response(200, headers, b'{"status": "healthy", "version": "5.8.0"}', 1.0)

    def vhost(self, host):
        return f"{host}.example.test"


def _routing_run(values, want, timeout=2.0):
    run = smoke.SmokeRun(smoke.normalise_options(options(checks=["routing"], expect_routing=want,
                                                         routing_timeout=timeout)))
    run.http = _Headers(values)
    return run.run()


def test_routing_waits_until_traefik_serves_the_new_file():
    out = _routing_run([None, "v6=0", "v6=0", "v6=10"], "v6=10")
    check = out["checks"][0]
    assert check["passed"] and check["facts"]["polls"] == 4 and check["facts"]["routing"] == "v6=10"


def test_routing_waits_for_the_header_to_go_when_the_file_is_removed():
    assert _routing_run(["v6=0", None], "")["checks"][0]["passed"]


def test_routing_fails_with_what_traefik_serves_when_the_file_never_loads():
    out = _routing_run([None], "v6=100", timeout=0.3)
    check = out["checks"][0]
    assert check["passed"] is False and "'v6=100'" in check["detail"] and "Traefik's log" in check["detail"]


class _Versions:
    """Answers /health with the given versions in turn (Traefik's failover: V5 answers while V6's
    active health check has it out), the last one from then on."""

    def __init__(self, versions):
        self.versions, self.calls = list(versions), 0

    def request(self, host, method, path, body=None, token=None, form=None):
        self.calls += 1
        version = self.versions.pop(0) if len(self.versions) > 1 else self.versions[0]
        return smoke.Response(200, {}, json.dumps({"status": "healthy", "version": version}).encode(), 1.0)

    def vhost(self, host):
        return f"{host}.example.test"


def _health_run(versions, grace):
    run = smoke.SmokeRun(smoke.normalise_options(options(checks=["health"], expect_backend="v6",
                                                         failover_grace=grace)))
    run.http = _Versions(versions)
    return run, run.run()["checks"][0]


def test_health_asks_again_while_traefiks_failover_answers_from_the_other_backend():
    run, check = _health_run(["5.8.0", "5.8.0", "6.0.0"], grace=5)
    assert check["passed"] and check["facts"]["other_backend_answers"] == 2 and run.http.calls == 3
    assert "answered 2 times" in check["detail"] and run.wrong_backend is None


def test_health_fails_when_the_other_backend_answers_for_the_whole_grace():
    t0 = time.monotonic()
    run, check = _health_run(["5.8.0"], grace=0.5)
    assert check["passed"] is False and "is not V6" in check["detail"] and run.wrong_backend == "5.8.0"
    assert 0.5 <= time.monotonic() - t0 < 3 and run.http.calls >= 2


def test_health_without_grace_fails_at_the_first_other_answer():
    run, check = _health_run(["5.8.0", "6.0.0"], grace=0)
    assert check["passed"] is False and run.http.calls == 1


def test_failover_grace_must_not_be_negative():
    with pytest.raises(ConfigError, match="failover_grace"):
        smoke.normalise_options(options(failover_grace=-1))
