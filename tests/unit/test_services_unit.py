"""Unit tests of the lab stand-in services' pure helpers (no database, no network).

The services are single files meant to be copied into containers, so they are loaded by path.
"""
import base64
import datetime as dt
import importlib.util
import json
import random
import re
import time
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "lab" / "services"


def load(name, relative):
    spec = importlib.util.spec_from_file_location(name, SERVICES / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


app = load("lab_v5api_app", "v5api/app.py")
sim = load("lab_simulator_sim", "simulator/sim.py")
web = load("lab_web_serve", "web/serve.py")

SECRET = "s" * 32
RFC3339_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?\+00:00$")

DEVICE = {
    "dev_eui": "58a0cb00001196f3", "name": "lab-sensor-01", "enabled_class": "A",
    "device_tags": {"bay": "A1"}, "dev_addr": None,
    "application_id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "application_name": "parking",
    "application_tags": {"bay": "app", "site": "lab"},
    "tenant_id": "3f0c6a52-8d1e-4b7a-a1c2-5e6f7a8b9c0d", "tenant_name": "Lab Tenant",
    "profile_id": "0b1c2d3e-4f5a-4b6c-9d7e-8f9a0b1c2d3e", "profile_name": "browan_tbms100_motion",
    "profile_tags": {}, "region_config_id": "eu868",
}
GATEWAY = {"gateway_id": "0016C001FF10A235", "latitude": 48.8566, "longitude": 2.3522, "altitude": 0.0}


# ---- JWT ---------------------------------------------------------------------------------------

class TestJWT:
    def test_round_trip(self):
        token = app.make_access_token("u-1", "t-1", "owner", SECRET, now=1_000)
        claims = app.jwt_decode(token, SECRET, now=1_001)
        assert claims["sub"] == "u-1" and claims["user_id"] == "u-1"
        assert claims["tenant_id"] == "t-1" and claims["role"] == "owner"
        assert claims["exp"] == 1_000 + app.TOKEN_TTL_SECONDS

    def test_header_is_hs256_and_unpadded(self):
        token = app.make_access_token("u", "t", "viewer", SECRET)
        assert "=" not in token and token.count(".") == 2
        assert json.loads(app.b64url_decode(token.split(".")[0])) == {"alg": "HS256", "typ": "JWT"}

    def test_matches_a_reference_hs256_signature(self):
        # RFC 7515 A.1-style check: signature = HMAC-SHA256 over "header.claims".
        import hashlib
        import hmac
        token = app.jwt_encode({"sub": "x", "exp": 2_000_000_000}, SECRET)
        head, body, sig = token.split(".")
        expected = hmac.new(SECRET.encode(), (head + "." + body).encode(), hashlib.sha256).digest()
        assert app.b64url_decode(sig) == expected

    def test_tampered_claims_are_rejected(self):
        token = app.make_access_token("u", "t-1", "viewer", SECRET)
        head, body, sig = token.split(".")
        claims = json.loads(app.b64url_decode(body))
        claims["tenant_id"] = "t-2"
        forged = ".".join([head, app.b64url_encode(json.dumps(claims).encode()), sig])
        with pytest.raises(app.JWTError):
            app.jwt_decode(forged, SECRET)

    @pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "!!.??.**", "e30.e30.e30"])
    def test_garbage_is_rejected(self, token):
        with pytest.raises(app.JWTError):
            app.jwt_decode(token, SECRET)

    def test_wrong_secret_is_rejected(self):
        token = app.make_access_token("u", "t", "viewer", SECRET)
        with pytest.raises(app.JWTError):
            app.jwt_decode(token, "o" * 32)

    def test_alg_none_is_rejected(self):
        head = app.b64url_encode(b'{"alg":"none","typ":"JWT"}')
        body = app.b64url_encode(b'{"sub":"u","exp":9999999999}')
        with pytest.raises(app.JWTError):
            app.jwt_decode(head + "." + body + ".", SECRET)

    def test_expired_token_is_rejected(self):
        token = app.make_access_token("u", "t", "viewer", SECRET, now=1_000)
        with pytest.raises(app.JWTError, match="expired"):
            app.jwt_decode(token, SECRET, now=1_000 + app.TOKEN_TTL_SECONDS)


# ---- payload decoding and uplink parsing -----------------------------------------------------------

class TestDecode:
    @pytest.mark.parametrize("payload,state", [(b"\x01", "OCCUPIED"), (b"\x00", "FREE"),
                                               (b"\x03", "OCCUPIED"), (b"\xfe", "FREE")])
    def test_occupancy_is_bit_zero(self, payload, state):
        assert app.decode_sensor_payload("browan_tbms100_motion", payload)["occupancy"] == state

    def test_browan_battery_and_temperature(self):
        decoded = app.decode_sensor_payload("browan_tbms100_motion", bytes([0x01, 0x24, 0x3B]))
        assert decoded == {"occupancy": "OCCUPIED", "battery": 0.36, "temperature": 27.0}

    def test_other_profiles_use_the_same_rule(self):
        assert app.decode_sensor_payload("some_other_sensor", b"\x01")["occupancy"] == "OCCUPIED"

    def test_empty_payload_has_no_occupancy(self):
        assert app.decode_sensor_payload("browan_tbms100_motion", b"")["occupancy"] is None

    def test_parse_uplink_reads_what_v5_reads(self):
        event = sim.build_up_event(DEVICE, GATEWAY, 42, b"\x01", 102, 1_761_225_514_204_118_533,
                                   random.Random(1))
        up = app.parse_uplink(json.dumps(event).encode())
        assert up["dev_eui"] == "58A0CB00001196F3"
        assert up["profile_name"] == "browan_tbms100_motion"
        assert up["fcnt"] == 42 and up["fport"] == 102 and up["payload"] == b"\x01"
        assert up["time"] == dt.datetime(2025, 10, 23, 13, 18, 34, 204118, tzinfo=dt.timezone.utc)
        assert up["rssi"] == event["rxInfo"][0]["rssi"] and up["snr"] == event["rxInfo"][0]["snr"]
        assert up["deduplication_id"] == event["deduplicationId"]

    @pytest.mark.parametrize("body", [b"{not json", b"[]", b"{}", b'{"deviceInfo": {}}',
                                      b'{"deviceInfo": {"devEui": "xyz"}}'])
    def test_bad_uplinks_are_rejected(self, body):
        with pytest.raises(app.BadRequest):
            app.parse_uplink(body)

    def test_out_of_range_fcnt_is_dropped_not_fatal(self):
        body = json.dumps({"deviceInfo": {"devEui": "0011223344556677"}, "fCnt": 2**32 - 1})
        assert app.parse_uplink(body.encode())["fcnt"] is None

    @pytest.mark.parametrize("text", ["2025-10-23T13:18:34.204118533+00:00", "2025-10-23T13:18:34.204118Z",
                                      "2025-10-23T13:18:34.204118533Z"])
    def test_event_time_accepts_both_offset_spellings(self, text):
        assert app.parse_event_time(text) == dt.datetime(2025, 10, 23, 13, 18, 34, 204118,
                                                         tzinfo=dt.timezone.utc)

    def test_event_time_garbage_is_none(self):
        assert app.parse_event_time("yesterday") is None and app.parse_event_time(None) is None


# ---- up-event builder ----------------------------------------------------------------------------

class TestUpEvent:
    @pytest.fixture
    def event(self):
        return sim.build_up_event(DEVICE, GATEWAY, 123, b"\x01", 102, time.time_ns(), random.Random(7))

    def test_top_level_fields_with_defaults(self, event):
        assert set(event) == {"deduplicationId", "time", "deviceInfo", "devAddr", "adr", "dr", "fCnt",
                              "fPort", "confirmed", "data", "rxInfo", "txInfo", "regionConfigId"}
        assert event["confirmed"] is False and event["fCnt"] == 123 and event["fPort"] == 102
        assert "object" not in event  # no codec -> omitted, never null

    def test_device_info(self, event):
        info = event["deviceInfo"]
        assert set(info) == {"tenantId", "tenantName", "applicationId", "applicationName",
                             "deviceProfileId", "deviceProfileName", "deviceName", "devEui",
                             "deviceClassEnabled", "tags"}
        assert info["devEui"] == "58a0cb00001196f3"
        assert info["deviceClassEnabled"] == "CLASS_A"
        assert info["tags"] == {"bay": "A1", "site": "lab"}  # app, then profile, then device tags

    def test_hex_case_and_base64(self, event):
        assert event["rxInfo"][0]["gatewayId"] == "0016c001ff10a235"
        assert re.fullmatch(r"[0-9a-f]{8}", event["devAddr"])
        assert base64.b64decode(event["data"]) == b"\x01" and event["data"] == "AQ=="
        base64.b64decode(event["rxInfo"][0]["context"], validate=True)

    def test_uuid_and_timestamps(self, event):
        import uuid
        assert str(uuid.UUID(event["deduplicationId"])) == event["deduplicationId"]
        assert RFC3339_RE.match(event["time"]) and RFC3339_RE.match(event["rxInfo"][0]["nsTime"])

    def test_rx_and_tx_info(self, event):
        rx = event["rxInfo"][0]
        assert isinstance(rx["rssi"], int) and isinstance(rx["snr"], float)
        assert rx["crcStatus"] == "CRC_OK"
        assert rx["location"] == {"latitude": 48.8566, "longitude": 2.3522}  # zero altitude omitted
        assert rx.get("channel", 1) != 0  # gw-package zero values are omitted
        lora = event["txInfo"]["modulation"]["lora"]
        assert lora == {"bandwidth": 125000, "spreadingFactor": 7, "codeRate": "CR_4_5"}
        assert event["txInfo"]["frequency"] in sim.EU868_FREQUENCIES

    @pytest.mark.parametrize("ns,text", [
        (1_761_225_514_000_000_000, "2025-10-23T13:18:34+00:00"),
        (1_761_225_514_123_000_000, "2025-10-23T13:18:34.123+00:00"),
        (1_761_225_514_123_456_000, "2025-10-23T13:18:34.123456+00:00"),
        (1_761_225_514_123_456_789, "2025-10-23T13:18:34.123456789+00:00"),
    ])
    def test_rfc3339_like_chrono(self, ns, text):
        assert sim.format_rfc3339(ns) == text

    @pytest.mark.parametrize("url,expected", [
        ("http://api:8000/api/v1/uplink", "http://api:8000/api/v1/uplink?event=up"),
        ("http://api:8000/api/v1/uplink?token=abc", "http://api:8000/api/v1/uplink?token=abc&event=up"),
    ])
    def test_event_url(self, url, expected):
        assert sim.event_url(url) == expected

    def test_endpoint_list(self):
        assert sim.parse_endpoints(" http://a/x , http://b/y,,") == ["http://a/x", "http://b/y"]
        assert sim.parse_endpoints(None) == []

    def test_payloads(self):
        assert sim.sensor_payload(True) == b"\x01" and sim.sensor_payload(False) == b"\x00"
        assert len(sim.kuando_payload(3)) == 8 and sim.kuando_payload(3)[0] == 3
        assert sim.is_kuando({"dev_eui": "2020203907290902", "profile_name": "x"})
        assert sim.is_kuando({"dev_eui": "0011223344556677", "profile_name": "plenom_kuando_busylight"})


class TestSnapshot:
    def test_only_devices_with_a_json_http_integration_are_targeted(self):
        other = dict(DEVICE, dev_eui="0011223344556677", application_id="other-app")
        integrations = [
            {"application_id": DEVICE["application_id"], "configuration": {"Http": {
                "event_endpoint_url": "http://a/up, http://b/up", "headers": {"X-T": "1"}, "json": True}}},
            {"application_id": "other-app", "configuration": {"Http": {
                "event_endpoint_url": "http://c/up", "headers": {}, "json": False}}},
        ]
        gateways = [{"tenant_id": DEVICE["tenant_id"], **GATEWAY}]
        snapshot = sim.build_snapshot(integrations, [DEVICE, other], gateways)
        assert [d["dev_eui"] for d in snapshot["devices"]] == [DEVICE["dev_eui"]]
        assert snapshot["devices"][0]["urls"] == ["http://a/up", "http://b/up"]
        assert snapshot["devices"][0]["headers"] == {"X-T": "1"}
        assert snapshot["endpoints"] == ["http://a/up", "http://b/up"]


# ---- fCnt ------------------------------------------------------------------------------------------

class TestFcnt:
    def test_base_is_eight_per_second_since_2025(self):
        assert sim.fcnt_ceiling(sim.FCNT_EPOCH + 100) == 800
        assert sim.fcnt_base(sim.FCNT_EPOCH + 100) == 801

    def test_base_is_monotonic_and_above_any_earlier_ceiling(self):
        now = time.time()
        assert sim.fcnt_base(now + 0.125) > sim.fcnt_base(now) > sim.fcnt_ceiling(now)
        # Whatever an earlier run sent (<= its ceiling) stays below a later run's base.
        assert sim.fcnt_base(now) > sim.fcnt_ceiling(now - 0.001)

    def test_stays_below_int4(self):
        assert sim.fcnt_ceiling(sim.FCNT_EPOCH + 10**10) < 2**31 - 1
        assert sim.fcnt_base(time.time()) < 2**31 - 1

    def test_pacer_never_runs_a_device_ahead_of_the_clock(self):
        stub_reader = type("R", (), {"stop_event": None, "snapshot": {"devices": [DEVICE]}})()
        simulator = sim.Simulator.__new__(sim.Simulator)
        simulator.reader, simulator.position = stub_reader, 0
        simulator.fcnt, simulator.occupied, simulator.rng = {}, {}, random.Random(0)
        now = sim.FCNT_EPOCH + 1000.0
        assert simulator._next_device([DEVICE], now) is None      # base is one above the ceiling
        later = now + 1.0
        picked = 0
        while simulator._next_device([DEVICE], later) is not None:
            simulator.fcnt[DEVICE["dev_eui"]] += 1
            picked += 1
        assert picked == 8                                          # 8 per second at most


# ---- attempt records -------------------------------------------------------------------------------

class TestRecords:
    def test_json_lines_format(self, tmp_path):
        path = tmp_path / "sub" / "attempts.jsonl"
        recorder = sim.Recorder(str(path))
        recorder.record(1.5, "58a0cb00001196f3", 7, "d-1", "http://a/up?event=up", 200, 3.14159, None)
        recorder.record(2.5, "58a0cb00001196f3", 8, "d-2", "http://a/up?event=up", None, 5000.0, "timeout")
        recorder.record(3.5, "58a0cb00001196f3", 9, "d-3", "http://a/up?event=up", 500, 1.0, "HTTP 500")
        recorder.close()
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert [set(line) for line in lines] == [{"seq", "ts", "dev_eui", "fcnt", "deduplication_id",
                                                  "url", "status", "latency_ms", "error"}] * 3
        assert lines[0] == {"seq": 1, "ts": 1.5, "dev_eui": "58A0CB00001196F3", "fcnt": 7,
                            "deduplication_id": "d-1", "url": "http://a/up?event=up", "status": 200,
                            "latency_ms": 3.14, "error": None}
        assert lines[1]["status"] is None and lines[1]["error"] == "timeout"
        assert recorder.totals == {"sent": 3, "ok_2xx": 1, "other_status": 1, "conn_errors": 1,
                                   "pool_saturated": 0, "fcnt_throttled": 0}

    def test_ring_buffer_since(self):
        recorder = sim.Recorder(None)
        for i in range(5):
            recorder.record(float(i), "0011223344556677", i, "d", "u", 200, 1.0, None)
        assert [r["seq"] for r in recorder.since(0, 100)] == [1, 2, 3, 4, 5]
        assert [r["seq"] for r in recorder.since(3, 100)] == [4, 5]
        assert [r["seq"] for r in recorder.since(1, 2)] == [2, 3]
        assert recorder.since(5, 100) == []


# ---- static web server -----------------------------------------------------------------------------

class TestWebConfig:
    def test_modes(self):
        assert web.Config({"MODE": "unhealthy"}).mode == "unhealthy"
        with pytest.raises(ValueError):
            web.Config({"MODE": "broken"})

    def test_proxy_mapping(self):
        config = web.Config({"PROXY_API_PREFIX": "/api/", "PROXY_API_TARGET": "http://api:8000/api/"})
        assert config.proxy_url("/api/v1/spaces?x=1") == "http://api:8000/api/v1/spaces?x=1"
        assert config.proxy_url("/index.html") is None

    def test_page_names_the_service(self):
        assert b"parking-website" in web.Config({"SERVICE_NAME": "parking-website"}).page()


class TestSimulatorConnections:
    """The simulator keeps connections alive like ChirpStack's single reqwest client, and a
    connection the server closed while idle never costs an event."""

    def serve(self):
        import http.server
        import threading
        seen = []

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                seen.append(self.client_address[1])
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a):
                pass
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, seen

    def test_events_reuse_one_connection(self):
        server, seen = self.serve()
        pool = sim.ConnectionPool()
        url = f"http://127.0.0.1:{server.server_address[1]}/up?event=up"
        try:
            for _ in range(3):
                assert sim.post_event(url, {"Content-Type": "application/json"}, b"{}", pool) == (200, None)
        finally:
            server.shutdown()
            server.server_close()
        assert len(seen) == 3 and len(set(seen)) == 1

    def test_idle_connections_closed_by_the_server_are_replaced(self):
        server, seen = self.serve()
        pool = sim.ConnectionPool()
        url = f"http://127.0.0.1:{server.server_address[1]}/up?event=up"
        try:
            for _ in range(2):  # two idle connections in the pool
                conns = [pool.get(("http", "127.0.0.1", server.server_address[1]))[0] for _ in range(2)]
                for c in conns:
                    c.request("POST", "/up", body=b"{}", headers={"Content-Type": "application/json"})
                    c.getresponse().read()
                    pool.put(("http", "127.0.0.1", server.server_address[1]), c)
                for conns_ in pool.idle.values():
                    for c, _ in conns_:
                        c.sock.close()   # as if the server had closed them (a restart)
                assert sim.post_event(url, {"Content-Type": "application/json"}, b"{}", pool) == (200, None)
        finally:
            server.shutdown()
            server.server_close()
