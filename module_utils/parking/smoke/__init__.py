"""Phase-3 smoke checks: the live platform, through Traefik, as its users and ChirpStack see it.

PRIVATE to parking-migrate; the engine of library/parking_smoke.py. Plain Python: standard
library only. The database confirmation of the webhook check uses a psycopg2 connection that the
caller's factory opens (module_utils/parking/connection.py); nothing here imports Ansible.

Every request opens its own TLS connection to ``connect_host:connect_port`` (default: the
virtual host itself, port 443) with SNI and ``Host`` = ``<host>.<domain>``; the certificate is
verified against ``ca_file`` (or the system CAs) for that name. Checks:

* ``health``      ``GET /health`` on the API host: 200, JSON, ``version`` of the expected backend.
Each backend is checked with its own contract (``ROUTES``: V5's ``/api/v1`` routes, the real
V6's ``/api/auth`` and paged ``/api/v6`` routes, docs/v6-contract.md).

* ``login``       the login route gives a bearer token (tenant, role from it); an
                  unauthenticated spaces list is refused (401).
* ``devices``     the devices list: the probe sensor in it, no other tenant's row.
* ``spaces``      the spaces list: non-empty, the probe on one of them, no other tenant's row.
* ``reservation`` create a one-minute reservation on one of those spaces in a window far in the
                  future (never the same twice), see it listed, cancel it; with a target
                  database, then delete it (no smoke reservation stays in the data).
* ``websocket``   V6 only: RFC 6455 client on ``/ws?token=``, ``connected`` -> subscribe
                  ``spaces`` -> ``subscribed``; then a probe uplink must come back as a
                  ``space:update`` naming the probe EUI and fCnt, for the login's tenant.
* ``webhook``     a ChirpStack v4 ``up`` event for the probe on ``POST /api/v1/uplink?event=up``
                  is accepted and processed; with a target database, the reading is polled for
                  there (device, tenant, occupancy, V6: the event's deduplicationId).
* ``host_rules``  one GET per host with its expectation (status, content type, version, auth).

Results never contain the login password or the access token (``scrub``).
"""
import base64
import datetime as dt
import hashlib
import http.client
import json
import os
import random
import re
import socket
import ssl
import time
import uuid
from urllib.parse import quote, urlencode

from ..errors import ConfigError, ParkingError

CHECKS = ("routing", "health", "login", "devices", "spaces", "reservation", "websocket", "webhook", "host_rules",
          "error_rate")
READ_CHECKS = ("routing", "health", "login", "devices", "spaces", "host_rules", "error_rate")   # the check-mode set
DEFAULT_CHECKS = CHECKS[1:-1]  # routing and error_rate run only when asked (cutover steps)
WRITE_CHECKS = ("reservation", "websocket", "webhook")
BACKENDS = {"v5": "5.", "v6": "6."}                                 # /health version prefixes
# Each backend's contract for the checks (V6: docs/v6-contract.md; the real V6 has none of V5's
# /api/v1 routes but its V5-compatible uplink). Lists: (path, key of the list in the body or None
# for a bare list, page size or None when unpaged).
ROUTES = {
    "v5": {"login": "/api/v1/auth/login", "login_form": False,
           "devices": ("/api/v1/devices", None, None), "spaces": ("/api/v1/spaces", None, None),
           "reservations": ("/api/v1/reservations", None, None),
           "reserve": ("POST", "/api/v1/reservations"), "cancel": ("POST", "/api/v1/reservations/{id}/cancel"),
           "ws_update": "space_update"},
    "v6": {"login": "/api/auth/login", "login_form": True,
           "devices": ("/api/v6/devices", "items", 100), "spaces": ("/api/v6/spaces", "spaces", 500),
           "reservations": ("/api/v6/reservations", "reservations", 200),
           "reserve": ("POST", "/api/v6/reservations/"), "cancel": ("PUT", "/api/v6/reservations/{id}/cancel"),
           "ws_update": "space:update"},
}
# A probe's ``data`` readable alike as base64 (ChirpStack's encoding: first byte 0xD3 / 0x00, bit 0 =
# occupied) and as the hex the real V6 at ea5b72f reads ("01" = occupied, "AA" = free).
DUAL_DATA = {True: "01AA", False: "AAAA"}
MAX_PAGES = 1000
DATABASES = {"v5": "parking_v5", "v6": "parking_v6"}
NEEDS_LOGIN = ("login", "devices", "spaces", "reservation", "websocket")
NEEDS_PROBE = ("websocket", "webhook")

# fCnt of the probe uplinks, derived from wall-clock time exactly as the lab simulator does
# (lab/services/simulator/sim.py): 8 per second since 2025-01-01, so any fCnt a device was sent
# before now is below the base, and two runs a quarter second apart never share one.
FCNT_EPOCH = 1735689600
FCNT_PER_SECOND = 8
FCNT_MAX = 2**31 - 2            # V5 and V6 store fCnt in an int4: stay below 2^31-1
PROBES_PER_RUN = 2              # websocket + webhook

# Reservation windows: each wall-clock second since FCNT_EPOCH owns a block of RESERVATION_SLOTS
# one-minute windows starting 2100-01-01, so two runs never ask for overlapping windows; a 409
# (someone booked that minute) moves to the next window of the run's own block.
RESERVATION_BASE = dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)
RESERVATION_MINUTES = 1
RESERVATION_SLOTS = 2

EUI_RE = re.compile(r"^[0-9A-F]{16}$")
USER_AGENT = "parking-migrate-smoke/1.0"
MAX_BODY = 32 * 1024 * 1024
POLL_INTERVAL = 0.2
ROUTING_HEADER = "X-Parking-Cutover"        # set by the cutover routers (cutover-routing.yml.j2)
REDACTED = "********"

# Probe event identity (ChirpStack ids are UUIDs; V5/V6 read devEui, profile, fCnt, data, rxInfo).
PROBE_PROFILE = "browan_tbms100_motion"
PROBE_FPORT = 102
PROBE_GATEWAY = "0016c001ff5a0ce0"
_NS = uuid.UUID("6f1d3c3e-2f0b-4c55-9a43-70617261636b")
PROBE_TENANT_ID = str(uuid.uuid5(_NS, "tenant"))
PROBE_APPLICATION_ID = str(uuid.uuid5(_NS, "application"))
PROBE_PROFILE_ID = str(uuid.uuid5(_NS, "device-profile"))


class CheckFailed(ParkingError):
    """One check found the platform not as expected; the message is the check's detail."""

    def __init__(self, message, facts=None):
        super().__init__(message)
        self.facts = facts or {}


class WebSocketError(CheckFailed):
    """The websocket peer broke RFC 6455 or closed the connection."""


# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------

def version_prefix(backend):
    return BACKENDS[backend]


def default_database(backend):
    return DATABASES[backend]


def default_host_rules(api_host="api"):
    """Lab and production defaults (after phase 2: the V6 hosts exist beside V5)."""
    basic = {"path": "/", "status": 401, "auth": "basic"}
    rules = {
        "api-v6": {"path": "/health", "status": 200, "content_type": "application/json",
                   "version_prefix": "6."},
        "app": {"path": "/", "status": 200, "content_type": "text/html"},
        "www": {"path": "/", "status": 200},
        "db-v6": dict(basic),
        "files-v6": dict(basic),
        "adminer": dict(basic),
        "chirpstack": {"path": "/", "status": 200},
    }
    rules[api_host] = {"path": "/health", "status": 200, "content_type": "application/json",
                       "version_prefix": "expected"}
    return rules


RULE_KEYS = {"path", "status", "content_type", "version_prefix", "auth", "body_contains"}


def normalise_host_rule(host, rule):
    """Validate one expectation; returns it with defaults (path /, status [200])."""
    if rule is None:
        rule = {}
    if not isinstance(rule, dict):
        raise ConfigError(f"host_rules.{host} must be a dict of expectations, got {type(rule).__name__}")
    unknown = sorted(set(rule) - RULE_KEYS)
    if unknown:
        raise ConfigError(f"host_rules.{host}: unknown key(s) {', '.join(unknown)}; "
                          f"allowed: {', '.join(sorted(RULE_KEYS))}")
    status = rule.get("status", 200)
    statuses = status if isinstance(status, (list, tuple)) else [status]
    try:
        statuses = [int(s) for s in statuses]
    except (TypeError, ValueError):
        raise ConfigError(f"host_rules.{host}.status must be an HTTP status or a list of them") from None
    if not statuses or any(not 100 <= s <= 599 for s in statuses):
        raise ConfigError(f"host_rules.{host}.status must be an HTTP status or a list of them")
    path = str(rule.get("path") or "/")
    if not path.startswith("/"):
        raise ConfigError(f"host_rules.{host}.path must start with '/'")
    auth = rule.get("auth")
    if auth is not None and str(auth).lower() not in ("basic", "bearer"):
        raise ConfigError(f"host_rules.{host}.auth must be basic or bearer")
    out = {"path": path, "status": statuses}
    for key in ("content_type", "version_prefix", "body_contains"):
        if rule.get(key) not in (None, ""):
            out[key] = str(rule[key])
    if auth is not None:
        out["auth"] = str(auth).lower()
    return out


def validate_host(name, value):
    if not isinstance(value, str) or not re.match(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$", value or ""):
        raise ConfigError(f"{name} must be a DNS name (letters, digits, dots, hyphens), got {value!r}")
    return value.lower()


def normalise_options(params):
    """Check the module options and return plain, defaulted values (raises ConfigError)."""
    p = dict(params)
    backend = p.get("expect_backend")
    if backend not in BACKENDS:
        raise ConfigError(f"expect_backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    opts = {
        "domain": validate_host("domain", p.get("domain")),
        "api_host": validate_host("api_host", p.get("api_host") or "api"),
        "connect_host": (p.get("connect_host") or "").strip(),
        "connect_port": int(p.get("connect_port") or 443),
        "ca_file": p.get("ca_file") or None,
        "expect_backend": backend,
        "login_email": (p.get("login_email") or "").strip(),
        "login_password": p.get("login_password") or "",
        "probe_dev_eui": (p.get("probe_dev_eui") or "").strip().upper() or None,
        "probe_fcnt_base": p.get("probe_fcnt_base"),
        "timeout": float(p.get("timeout") or 10.0),
        "error_rate_requests": int(p.get("error_rate_requests") or 40),
        "error_rate_max": float(p.get("error_rate_max") or 0.0),
        "expect_routing": p.get("expect_routing"),
        "routing_timeout": float(p.get("routing_timeout") or 30.0),
    }
    if not 1 <= opts["connect_port"] <= 65535:
        raise ConfigError(f"connect_port must be 1-65535, got {opts['connect_port']}")
    if opts["timeout"] <= 0:
        raise ConfigError("timeout must be positive")
    if opts["ca_file"] and not os.path.isfile(opts["ca_file"]):
        raise ConfigError(f"ca_file {opts['ca_file']!r} does not exist")
    checks = p.get("checks")
    checks = list(DEFAULT_CHECKS) if not checks else [str(c) for c in checks]
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise ConfigError(f"checks: unknown {', '.join(unknown)}; known: {', '.join(CHECKS)}")
    opts["checks"] = [c for c in CHECKS if c in checks]       # fixed order
    if opts["probe_dev_eui"] is not None and not EUI_RE.match(opts["probe_dev_eui"]):
        raise ConfigError(f"probe_dev_eui must be 16 hex digits, got {p.get('probe_dev_eui')!r}")
    wanted = set(opts["checks"])
    if wanted & set(NEEDS_LOGIN) and not (opts["login_email"] and opts["login_password"]):
        raise ConfigError("login_email and login_password are required for the checks "
                          + ", ".join(c for c in opts["checks"] if c in NEEDS_LOGIN))
    if wanted & set(NEEDS_PROBE) and not opts["probe_dev_eui"]:
        raise ConfigError("probe_dev_eui is required for the checks "
                          + ", ".join(c for c in opts["checks"] if c in NEEDS_PROBE))
    base = opts["probe_fcnt_base"]
    if base is not None:
        base = int(base)
        if base < 0 or base + PROBES_PER_RUN - 1 > FCNT_MAX:
            raise ConfigError(f"probe_fcnt_base must be 0..{FCNT_MAX - PROBES_PER_RUN + 1}, got {base}")
        opts["probe_fcnt_base"] = base
    rules = p.get("host_rules")
    if rules is None:
        rules = default_host_rules(opts["api_host"])
    if not isinstance(rules, dict):
        raise ConfigError("host_rules must be a dict of host -> expectation")
    opts["host_rules"] = {validate_host(f"host_rules key {h!r}", str(h)): normalise_host_rule(h, r)
                          for h, r in sorted(rules.items())}
    return opts


# --------------------------------------------------------------------------------------------
# Pure helpers (unit-tested)
# --------------------------------------------------------------------------------------------

def fcnt_ceiling(now):
    return min(int((now - FCNT_EPOCH) * FCNT_PER_SECOND), FCNT_MAX)


def fcnt_base(now):
    """First probe fCnt of a run at ``now`` (epoch seconds); raises ConfigError once the time
    scheme runs out of int4 (2033), when probe_fcnt_base must be given."""
    base = fcnt_ceiling(now) + 1
    if base + PROBES_PER_RUN - 1 > FCNT_MAX:
        raise ConfigError("the time-derived fCnt would pass 2^31-1: set probe_fcnt_base")
    return base


def reservation_window(now, attempt=0):
    """(start, end) of the one-minute window of a run at ``now`` (epoch seconds), try ``attempt``."""
    if not 0 <= attempt < RESERVATION_SLOTS:
        raise ValueError("attempt must be 0..%d" % (RESERVATION_SLOTS - 1))
    block = max(int(now) - FCNT_EPOCH, 0)
    start = RESERVATION_BASE + dt.timedelta(minutes=(block * RESERVATION_SLOTS + attempt) * RESERVATION_MINUTES)
    return start, start + dt.timedelta(minutes=RESERVATION_MINUTES)


def format_rfc3339(ns):
    """chrono ``to_rfc3339()``: 0, 3, 6 or 9 fraction digits, ``+00:00`` offset (ChirpStack v4)."""
    seconds, nanos = divmod(int(ns), 1_000_000_000)
    base = dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos == 0:
        fraction = ""
    elif nanos % 1_000_000 == 0:
        fraction = ".%03d" % (nanos // 1_000_000)
    elif nanos % 1_000 == 0:
        fraction = ".%06d" % (nanos // 1_000)
    else:
        fraction = ".%09d" % nanos
    return base + fraction + "+00:00"


def build_up_event(dev_eui, fcnt, occupied, time_ns=None, deduplication_id=None, rng=None):
    """A ChirpStack v4 ``UplinkEvent`` as the HTTP integration posts it (pbjson: lowerCamelCase,
    top-level defaults present, unset nested messages omitted, lowercase hex ids, base64 ``data``,
    ``+00:00`` times; shared/reference/chirpstack-v4.md section 5). ``data`` is one Browan
    occupancy byte (bit 0 = occupied)."""
    rng = rng or random.Random()
    time_ns = time.time_ns() if time_ns is None else time_ns
    stamp = format_rfc3339(time_ns)
    eui = dev_eui.strip().lower()
    channel = 3
    return {
        "deduplicationId": deduplication_id or str(uuid.uuid4()),
        "time": stamp,
        "deviceInfo": {
            "tenantId": PROBE_TENANT_ID,
            "tenantName": "parking-smoke",
            "applicationId": PROBE_APPLICATION_ID,
            "applicationName": "parking",
            "deviceProfileId": PROBE_PROFILE_ID,
            "deviceProfileName": PROBE_PROFILE,
            "deviceName": "smoke-probe-" + eui[-6:],
            "devEui": eui,
            "deviceClassEnabled": "CLASS_A",
            "tags": {"source": "parking-smoke"},
        },
        "devAddr": ("26" + eui[-6:]).lower(),
        "adr": True,
        "dr": 5,
        "fCnt": int(fcnt),
        "fPort": PROBE_FPORT,
        "confirmed": False,
        "data": base64.b64encode(bytes([0x01 if occupied else 0x00])).decode("ascii"),
        "rxInfo": [{
            "gatewayId": PROBE_GATEWAY,
            "uplinkId": rng.randrange(1, 2**32),
            "nsTime": stamp,
            "rssi": rng.randint(-110, -70),
            "snr": round(rng.uniform(-5.0, 10.0), 1),
            "channel": channel,
            "context": base64.b64encode(rng.getrandbits(32).to_bytes(4, "big")).decode("ascii"),
            "crcStatus": "CRC_OK",
        }],
        "txInfo": {
            "frequency": 867100000,
            "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 7, "codeRate": "CR_4_5"}},
        },
        "regionConfigId": "eu868",
    }


def probe_occupancy(space):
    """Occupancy the probe reports: what its space shows, so the probe changes no live state.

    V6 spaces carry the sensor's own ``sensor_state``; otherwise the space state is used
    (V5 ``state``, V6 ``current_state``): OCCUPIED -> occupied, FREE/unknown -> free, and
    MAINTENANCE -> occupied, which V5's state machine refuses (MAINTENANCE -> OCCUPIED is not a
    valid transition), so a space in maintenance stays in maintenance. A V5 RESERVED space does
    change (both FREE and OCCUPIED are valid transitions): prefer a probe on a free or occupied space.
    """
    if not isinstance(space, dict):
        return False
    sensor = str(space.get("sensor_state") or "").lower()
    if sensor in ("occupied", "free"):
        return sensor == "occupied"
    state = str(space.get("state") or space.get("current_state") or "").lower()
    return state in ("occupied", "maintenance")


def jwt_claims(token):
    """The claims of a JWT, unverified (the server verifies; we only read tenant and role)."""
    try:
        part = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError, TypeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def scrub(value, secrets):
    """``value`` (any JSON-like structure) with every secret string replaced by ********."""
    secrets = sorted({s for s in secrets if isinstance(s, str) and len(s) >= 4}, key=len, reverse=True)
    if not secrets:
        return value

    def walk(v):
        if isinstance(v, str):
            for s in secrets:
                if s in v:
                    v = v.replace(s, REDACTED)
            return v
        if isinstance(v, dict):
            return {walk(k): walk(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x) for x in v]
        return v
    return walk(value)


def check_result(name, passed, detail, ms, facts=None, skipped=False):
    return {"name": name, "passed": None if skipped else bool(passed), "skipped": skipped,
            "detail": detail, "ms": None if ms is None else round(ms, 1), "facts": facts or {}}


def summarise(checks, secrets=(), extra=None):
    """The engine's result: checks, names of the failed and skipped ones, passed overall."""
    checks = scrub(list(checks), secrets)
    failed = [c["name"] for c in checks if not c["skipped"] and not c["passed"]]
    skipped = [c["name"] for c in checks if c["skipped"]]
    out = {"passed": not failed, "checks": checks,
           "failed_checks": failed, "skipped_checks": skipped}
    out.update(scrub(extra or {}, secrets))
    return out


def failure_message(result):
    parts = [f"{c['name']} ({c['detail']})" for c in result["checks"] if c["name"] in result["failed_checks"]]
    return f"smoke checks FAILED, {len(parts)} of {len(result['checks'])}: " + "; ".join(parts)


def _short(body, limit=200):
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else str(body)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def evaluate_host_rule(rule, status, headers, body, expected_prefix):
    """Does one GET answer match its (normalised) rule? Returns (passed, detail).
    ``headers``: dict with lower-case names; ``expected_prefix``: version prefix of the backend."""
    problems = []
    if status not in rule["status"]:
        want = rule["status"][0] if len(rule["status"]) == 1 else rule["status"]
        problems.append(f"status {status}, expected {want}")
    ctype = headers.get("content-type", "")
    if rule.get("content_type") and rule["content_type"].lower() not in ctype.lower():
        problems.append(f"content type {ctype or 'none'!r}, expected {rule['content_type']!r}")
    if rule.get("auth"):
        challenge = headers.get("www-authenticate", "")
        if not challenge.lower().startswith(rule["auth"]):
            problems.append(f"WWW-Authenticate {challenge or 'missing'!r}, expected {rule['auth'].title()}")
    if rule.get("version_prefix"):
        prefix = expected_prefix if rule["version_prefix"] == "expected" else rule["version_prefix"]
        try:
            version = json.loads(body).get("version")
        except (ValueError, AttributeError, UnicodeDecodeError):
            version = None
        if not isinstance(version, str):
            problems.append(f"no JSON version in {_short(body, 80)!r}")
        elif not version.startswith(prefix):
            problems.append(f"version {version}, expected {prefix}x")
    if rule.get("body_contains") and rule["body_contains"].encode() not in (body or b""):
        problems.append(f"body lacks {rule['body_contains']!r}")
    if problems:
        return False, "; ".join(problems)
    return True, f"{status}" + (f" {ctype.split(';')[0]}" if ctype else "")


# --------------------------------------------------------------------------------------------
# WebSocket framing (RFC 6455), client side
# --------------------------------------------------------------------------------------------

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
WS_MAX_FRAME = 16 * 1024 * 1024


def ws_key(random_bytes=os.urandom):
    """Sec-WebSocket-Key: base64 of 16 random bytes."""
    return base64.b64encode(random_bytes(16)).decode("ascii")


def ws_accept(key):
    """Sec-WebSocket-Accept the server must answer for ``key``."""
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode("ascii")).digest()).decode("ascii")


def apply_mask(data, mask_key):
    """XOR with the repeated 4-byte key (on one big integer: fast for any size)."""
    if not data:
        return b""
    n = len(data)
    key = (bytes(mask_key) * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def encode_frame(opcode, payload=b"", mask_key=None, fin=True):
    """One frame. A client must mask: pass ``mask_key`` (4 bytes) or get a random one."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    mask_key = os.urandom(4) if mask_key is None else bytes(mask_key)
    if len(mask_key) != 4:
        raise ValueError("mask_key must be 4 bytes")
    head = bytearray([(0x80 if fin else 0) | (opcode & 0x0F)])
    n = len(payload)
    if n < 126:
        head.append(0x80 | n)
    elif n < 65536:
        head.append(0x80 | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(0x80 | 127)
        head += n.to_bytes(8, "big")
    return bytes(head) + mask_key + apply_mask(payload, mask_key)


def decode_frame(buf, max_size=WS_MAX_FRAME):
    """Parse one server frame at the start of ``buf``: ``((fin, opcode, payload), consumed)`` or
    None when more bytes are needed. Server frames must not be masked (RFC 6455 5.1)."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    if b0 & 0x70:
        raise WebSocketError("websocket protocol error: reserved bits set")
    fin, opcode, n = bool(b0 & 0x80), b0 & 0x0F, b1 & 0x7F
    if opcode not in (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
        raise WebSocketError(f"websocket protocol error: unknown opcode {opcode}")
    if b1 & 0x80:
        raise WebSocketError("websocket protocol error: the server sent a masked frame")
    if opcode >= OP_CLOSE and (not fin or n > 125):
        raise WebSocketError("websocket protocol error: bad control frame")
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, pos = int.from_bytes(buf[2:4], "big"), 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, pos = int.from_bytes(buf[2:10], "big"), 10
    if n > max_size:
        raise WebSocketError(f"websocket frame of {n} bytes is too large")
    if len(buf) < pos + n:
        return None
    return (fin, opcode, bytes(buf[pos:pos + n])), pos + n


def handshake_request(vhost, path, key):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (path, vhost, USER_AGENT, key)).encode("ascii")


def parse_handshake_response(raw, key):
    """Check the server's answer to the upgrade (bytes up to the blank line); raises CheckFailed."""
    text = raw.decode("iso-8859-1")
    lines = text.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise WebSocketError(f"not an HTTP answer to the websocket upgrade: {_short(lines[0], 80)!r}")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    status = int(parts[1]) if parts[1].isdigit() else 0
    if status != 101:
        raise WebSocketError(f"websocket upgrade refused: HTTP {status} {parts[2] if len(parts) > 2 else ''}".rstrip())
    if headers.get("upgrade", "").lower() != "websocket":
        raise WebSocketError("websocket upgrade answered 101 without 'Upgrade: websocket'")
    if headers.get("sec-websocket-accept") != ws_accept(key):
        raise WebSocketError("websocket upgrade answered a wrong Sec-WebSocket-Accept")
    return headers


# --------------------------------------------------------------------------------------------
# Transport: TLS to connect_host:connect_port, SNI/Host = <host>.<domain>
# --------------------------------------------------------------------------------------------

class Response:
    def __init__(self, status, headers, body, ms):
        self.status, self.headers, self.body, self.ms = status, headers, body, ms

    def json(self, what):
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise CheckFailed(f"{what} answered {self.status} with non-JSON {_short(self.body, 120)!r}") from None

    def detail(self):
        """The API's error text (FastAPI-style ``detail``) or the start of the body."""
        try:
            data = json.loads(self.body)
            if isinstance(data, dict) and data.get("detail"):
                return _short(str(data["detail"]))
        except (ValueError, UnicodeDecodeError):
            pass
        return _short(self.body)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to ``vhost`` whose TCP connection goes to ``address`` (SNI and check = vhost)."""

    def __init__(self, vhost, address, context, timeout):
        super().__init__(vhost, address[1], timeout=timeout, context=context)
        self._smoke_address = address
        self._smoke_context = context

    def connect(self):
        sock = socket.create_connection(self._smoke_address, self.timeout)
        try:
            self.sock = self._smoke_context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


class Transport:
    def __init__(self, domain, connect_host="", connect_port=443, ca_file=None, timeout=10.0):
        self.domain = domain
        self.connect_host = connect_host
        self.connect_port = connect_port
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=ca_file or None)
        self.context.set_alpn_protocols(["http/1.1"])

    def vhost(self, host):
        return f"{host}.{self.domain}"

    def address(self, host):
        return (self.connect_host or self.vhost(host), self.connect_port)

    def _where(self, host):
        addr = self.address(host)
        via = "" if addr[0] == self.vhost(host) else f" via {addr[0]}:{addr[1]}"
        return f"{self.vhost(host)}{via}"

    def _translate(self, host, exc):
        where = self._where(host)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return CheckFailed(f"TLS certificate of {where} not trusted: {exc.verify_message or exc}")
        if isinstance(exc, ssl.SSLError):
            return CheckFailed(f"TLS with {where} failed: {exc}")
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return CheckFailed(f"no answer from {where} within {self.timeout:g}s")
        if isinstance(exc, http.client.HTTPException):
            return CheckFailed(f"bad HTTP answer from {where}: {type(exc).__name__} {exc}")
        return CheckFailed(f"cannot reach {where}: {exc}")

    def request(self, host, method, path, body=None, token=None, form=None):
        """One request: ``body`` is sent as JSON, ``form`` as an HTML form (V6's OAuth2 login)."""
        headers = {"Host": self.vhost(host), "User-Agent": USER_AGENT, "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        elif form is not None:
            data = urlencode(form).encode("ascii")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if token:
            headers["Authorization"] = "Bearer " + token
        conn = _PinnedHTTPSConnection(self.vhost(host), self.address(host), self.context, self.timeout)
        started = time.monotonic()
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read(MAX_BODY)
            got = {k.lower(): v for k, v in resp.getheaders()}
            return Response(resp.status, got, payload, (time.monotonic() - started) * 1000)
        except (OSError, http.client.HTTPException) as exc:
            raise self._translate(host, exc) from None
        finally:
            conn.close()

    def open_tls(self, host, timeout):
        try:
            sock = socket.create_connection(self.address(host), timeout)
        except OSError as exc:
            raise self._translate(host, exc) from None
        try:
            return self.context.wrap_socket(sock, server_hostname=self.vhost(host))
        except OSError as exc:
            sock.close()
            raise self._translate(host, exc) from None


class WebSocketClient:
    """A minimal RFC 6455 client over a connected TLS socket (text frames, ping/pong, close)."""

    def __init__(self, sock, pending=b""):
        self.sock = sock
        self.buf = bytearray(pending)
        self.received = 0
        self.closed = False

    @classmethod
    def connect(cls, transport, host, path, timeout):
        sock = transport.open_tls(host, timeout)
        key = ws_key()
        try:
            sock.sendall(handshake_request(transport.vhost(host), path, key))
            raw = bytearray()
            deadline = time.monotonic() + timeout
            while b"\r\n\r\n" not in raw:
                if len(raw) > 65536:
                    raise WebSocketError("websocket upgrade answer has no end of headers")
                sock.settimeout(max(deadline - time.monotonic(), 0.01))
                chunk = sock.recv(65536)
                if not chunk:
                    raise WebSocketError("connection closed during the websocket upgrade")
                raw += chunk
            head, rest = bytes(raw).split(b"\r\n\r\n", 1)
            parse_handshake_response(head, key)
        except (socket.timeout, TimeoutError):
            sock.close()
            raise WebSocketError(f"no answer to the websocket upgrade within {timeout:g}s") from None
        except OSError as exc:
            sock.close()
            raise WebSocketError(f"websocket upgrade failed: {exc}") from None
        except BaseException:
            sock.close()
            raise
        return cls(sock, rest)

    def send(self, opcode, payload=b""):
        try:
            self.sock.sendall(encode_frame(opcode, payload))
        except OSError as exc:
            self.closed = True
            raise WebSocketError(f"the websocket connection broke: {exc}") from None

    def send_json(self, message):
        self.send(OP_TEXT, json.dumps(message))

    def _next_frame(self, deadline):
        while True:
            parsed = decode_frame(self.buf)
            if parsed is not None:
                frame, used = parsed
                del self.buf[:used]
                return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                return None
            except OSError as exc:
                self.closed = True
                raise WebSocketError(f"the websocket connection broke: {exc}") from None
            if not chunk:
                self.closed = True
                raise WebSocketError("the server closed the websocket connection without a close frame")
            self.buf += chunk

    def recv_text(self, deadline):
        """Next complete text message, or None at the deadline. Answers pings; raises on close."""
        parts = []
        while True:
            frame = self._next_frame(deadline)
            if frame is None:
                return None
            fin, opcode, payload = frame
            if opcode == OP_PING:
                self.send(OP_PONG, payload)
                continue
            if opcode == OP_PONG:
                continue
            if opcode == OP_CLOSE:
                self.closed = True
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                reason = payload[2:].decode("utf-8", "replace")
                raise WebSocketError(f"the server closed the websocket: {code} {reason}".rstrip())
            parts.append(payload)
            if fin:
                self.received += 1
                if opcode == OP_BINARY:
                    parts = []
                    continue
                return b"".join(parts).decode("utf-8", "replace")

    def wait_for(self, predicate, deadline, seen=None):
        """First JSON message for which ``predicate`` holds, or None at the deadline; the
        others are appended to ``seen``."""
        while True:
            text = self.recv_text(deadline)
            if text is None:
                return None
            try:
                message = json.loads(text)
            except ValueError:
                message = {"type": "non-json", "text": text[:100]}
            if isinstance(message, dict) and predicate(message):
                return message
            if seen is not None:
                seen.append(message)

    def close(self):
        try:
            if not self.closed:
                self.send(OP_CLOSE, (1000).to_bytes(2, "big"))
        except WebSocketError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------

def _is_list(value):
    return isinstance(value, list)


def ws_payload(message):
    """The space fields of a websocket update: V6 nests them under ``data``, V5-style flat."""
    data = message.get("data") if isinstance(message, dict) else None
    return data if isinstance(data, dict) else (message if isinstance(message, dict) else {})


def _tenant_leaks(rows, tenant_id):
    return sorted({str(r.get("tenant_id")) for r in rows
                   if isinstance(r, dict) and r.get("tenant_id") is not None
                   and str(r.get("tenant_id")) != str(tenant_id)})


class SmokeRun:
    """One run of the checks. ``db_factory`` opens the target database connection (or None)."""

    def __init__(self, opts, db_factory=None, clock=time.time, rng=None):
        self.o = opts
        self.http = Transport(opts["domain"], opts["connect_host"], opts["connect_port"],
                              opts["ca_file"], opts["timeout"])
        self.db_factory = db_factory
        self.clock = clock
        self.rng = rng or random.Random()
        self.prefix = version_prefix(opts["expect_backend"])
        self.api = opts["api_host"]
        self.started_at = clock()
        self.next_fcnt = opts["probe_fcnt_base"]
        if self.next_fcnt is None and set(opts["checks"]) & set(NEEDS_PROBE):
            self.next_fcnt = fcnt_base(self.started_at)
        self.fcnt_base = self.next_fcnt
        self.token = None
        self.session = None
        self.login_error = None
        self.spaces_cache = None
        self.devices_cache = None
        self.routes = ROUTES[opts["expect_backend"]]
        self.api_version = None
        self.probes = []
        self.db_name = None
        self.wrong_backend = None

    # ---- shared steps -----------------------------------------------------------------------

    def login(self):
        """Log in once; later calls reuse the session or re-raise the first failure."""
        if self.session is not None:
            return self.session
        if self.login_error is not None:
            raise CheckFailed(f"needs a login, which failed: {self.login_error}")
        path = self.routes["login"]
        try:
            if self.routes["login_form"]:     # OAuth2 password form: username + password
                resp = self.http.request(self.api, "POST", path, form={
                    "username": self.o["login_email"], "password": self.o["login_password"]})
            else:
                resp = self.http.request(self.api, "POST", path,
                                         {"email": self.o["login_email"], "password": self.o["login_password"]})
            if resp.status != 200:
                raise CheckFailed(f"POST {path} as {self.o['login_email']} answered {resp.status}: {resp.detail()}")
            data = resp.json(f"POST {path}")
            token = data.get("access_token") if isinstance(data, dict) else None
            if not isinstance(token, str) or not token:
                raise CheckFailed(f"POST {path} answered 200 without an access_token")
        except CheckFailed as exc:
            self.login_error = str(exc)
            raise
        self.token = token
        claims = jwt_claims(token)
        user = data.get("user") if isinstance(data.get("user"), dict) else {}   # V6 nests the user
        role = data.get("role") or user.get("role") or claims.get("role")
        self.session = {
            "user_id": str(data.get("user_id") or user.get("id") or claims.get("user_id") or claims.get("sub") or ""),
            "tenant_id": str(data.get("tenant_id") or user.get("tenant_id") or claims.get("tenant_id") or ""),
            "role": role,
            "platform_admin": bool(data.get("is_platform_admin") or user.get("is_platform_admin")
                                   or claims.get("is_platform_admin") or role == "platform_admin"),
            "token_type": data.get("token_type"),
            "expires_in": data.get("expires_in"),
            "ms": resp.ms,
        }
        return self.session

    def get_list(self, what, query=""):
        """Every row of one of the backend's lists (``what``: devices, spaces, reservations), page by
        page where the backend pages (V6 caps page_size)."""
        session = self.login()
        base, key, size = self.routes[what]
        rows, page = [], 1
        while page <= MAX_PAGES:
            params = [query] if query else []
            if size:
                params += [f"page={page}", f"page_size={size}"]
            path = base + ("?" + "&".join(params) if params else "")
            resp = self.http.request(self.api, "GET", path, token=self.token)
            if resp.status != 200:
                raise CheckFailed(f"GET {path} answered {resp.status}: {resp.detail()}")
            body = resp.json(f"GET {path}")
            items = body.get(key) if key and isinstance(body, dict) else body
            if not _is_list(items):
                raise CheckFailed(f"GET {path} did not answer a JSON list" + (f" under {key!r}" if key else ""))
            rows += items
            total = body.get("total") if isinstance(body, dict) else None
            if not size or not items or len(items) < size or (isinstance(total, int) and len(rows) >= total):
                return session, rows
            page += 1
        raise CheckFailed(f"GET {base}: more than {MAX_PAGES} pages")

    def spaces(self):
        if self.spaces_cache is None:
            self.spaces_cache = self.get_list("spaces")[1]
        return self.spaces_cache

    def probe_device(self):
        if self.devices_cache is None:
            self.devices_cache = self.get_list("devices")[1]
        hits = [r for r in self.devices_cache if isinstance(r, dict)
                and str(r.get("dev_eui") or "").upper() == self.o["probe_dev_eui"]]
        return hits[0] if hits else None

    def probe_space(self):
        """The space the probe sensor sits on (from the login's spaces), or None. V5 spaces name
        their sensor's EUI; V6 spaces do not, so its devices list gives the probe's space id."""
        try:
            rows = self.spaces()
            device = self.probe_device() if self.o["expect_backend"] == "v6" else None
        except CheckFailed:
            return None
        for row in rows:
            if not isinstance(row, dict):
                continue
            if device is not None and str(row.get("id")) == str(device.get("space_id") or ""):
                return row
            if str(row.get("sensor_eui") or "").upper() == self.o["probe_dev_eui"]:
                return row
        return None

    def probe_occupied(self):
        return probe_occupancy(self.probe_space())

    def send_uplink(self):
        """POST one probe ``up`` event to the API host as ChirpStack's HTTP integration does."""
        fcnt = self.next_fcnt
        self.next_fcnt += 1
        occupied = self.probe_occupied()
        event = build_up_event(self.o["probe_dev_eui"], fcnt, occupied, rng=self.rng)
        if self.o["expect_backend"] == "v6":
            event["data"] = DUAL_DATA[bool(occupied)]
        resp = self.http.request(self.api, "POST", "/api/v1/uplink?event=up", event)
        probe = {"fcnt": fcnt, "deduplication_id": event["deduplicationId"], "occupied": occupied,
                 "http_status": resp.status}
        self.probes.append(probe)
        if not 200 <= resp.status < 300:
            raise CheckFailed(f"POST /api/v1/uplink?event=up (fCnt {fcnt}) answered {resp.status}: "
                              f"{resp.detail()}", {"probe": probe})
        try:
            body = json.loads(resp.body)
        except (ValueError, UnicodeDecodeError):
            body = {}
        body = body if isinstance(body, dict) else {}
        kind, status = body.get("device_kind"), body.get("status")
        probe.update(api_status=status, device_kind=kind, ms=round(resp.ms, 1))
        if status == "orphan" or kind == "orphan":
            raise CheckFailed(f"the API does not know {self.o['probe_dev_eui']}: the uplink was stored "
                              "as an orphan device", {"probe": probe})
        if status == "duplicate" or body.get("duplicate") is True:
            raise CheckFailed(f"the API dropped the probe uplink as a duplicate of fCnt {fcnt} "
                              "(set probe_fcnt_base higher)", {"probe": probe})
        if kind is not None and kind != "sensor":
            raise CheckFailed(f"the API handled {self.o['probe_dev_eui']} as a {kind}, not a sensor",
                              {"probe": probe})
        return event, probe, body

    # ---- checks -----------------------------------------------------------------------------

    def check_health(self):
        resp = self.http.request(self.api, "GET", "/health")
        if resp.status != 200:
            raise CheckFailed(f"GET /health on {self.http.vhost(self.api)} answered {resp.status}: {resp.detail()}")
        data = resp.json("GET /health")
        version = data.get("version") if isinstance(data, dict) else None
        status = data.get("status") if isinstance(data, dict) else None
        self.api_version = version
        facts = {"version": version, "status": status, "host": self.http.vhost(self.api)}
        if not isinstance(version, str) or not version.startswith(self.prefix):
            self.wrong_backend = version
            raise CheckFailed(f"{self.http.vhost(self.api)} is not {self.o['expect_backend'].upper()}: "
                              f"/health version {version!r}, expected {self.prefix}x", facts)
        if status != "healthy":
            raise CheckFailed(f"{self.http.vhost(self.api)} /health status {status!r} (version {version})", facts)
        return f"{self.http.vhost(self.api)} answers {version}, {status}", facts

    def check_login(self):
        session = self.login()
        facts = {k: session[k] for k in ("user_id", "tenant_id", "role", "platform_admin", "expires_in")}
        if not session["tenant_id"]:
            raise CheckFailed("the login answered no tenant (neither in the body nor in the token)", facts)
        if str(session.get("token_type") or "bearer").lower() != "bearer":
            raise CheckFailed(f"token_type {session['token_type']!r}, expected bearer", facts)
        spaces_path = self.routes["spaces"][0]
        anonymous = self.http.request(self.api, "GET", spaces_path)
        facts["anonymous_status"] = anonymous.status
        if anonymous.status != 401:
            raise CheckFailed(f"GET {spaces_path} without a token answered {anonymous.status}, expected 401",
                              facts)
        return (f"{self.o['login_email']} logged in (tenant {session['tenant_id']}, role {session['role']});"
                f" no token -> 401"), facts

    def check_devices(self):
        session, rows = self.get_list("devices")
        self.devices_cache = rows
        sensors = [r for r in rows if isinstance(r, dict) and r.get("category", "sensor") == "sensor"]
        facts = {"count": len(rows), "sensors": len(sensors), "displays": len(rows) - len(sensors)}
        leaks = [] if session["platform_admin"] else _tenant_leaks(rows, session["tenant_id"])
        if leaks:
            raise CheckFailed(f"GET {self.routes['devices'][0]} shows rows of other tenants: {', '.join(leaks)}",
                              facts)
        probe = self.o["probe_dev_eui"]
        if probe:
            hit = [r for r in sensors if str(r.get("dev_eui") or "").upper() == probe]
            facts["probe_space"] = hit[0].get("space_code") if hit else None
            if not hit:
                raise CheckFailed(f"the probe sensor {probe} is not among the {len(rows)} devices of tenant "
                                  f"{session['tenant_id']}", facts)
        return (f"{len(rows)} devices ({facts['sensors']} sensors, {facts['displays']} displays)"
                + (f"; probe {probe} on {facts['probe_space']}" if probe else "")), facts

    def check_spaces(self):
        session = self.login()
        rows = self.spaces()
        states = {}
        for r in rows:
            if isinstance(r, dict):
                state = str(r.get("current_state") or r.get("state") or "unknown").lower()
                states[state] = states.get(state, 0) + 1
        facts = {"count": len(rows), "states": states}
        if not rows:
            raise CheckFailed(f"GET {self.routes['spaces'][0]} answered no space for tenant {session['tenant_id']}",
                              facts)
        leaks = [] if session["platform_admin"] else _tenant_leaks(rows, session["tenant_id"])
        if leaks:
            raise CheckFailed(f"GET {self.routes['spaces'][0]} shows rows of other tenants: {', '.join(leaks)}",
                              facts)
        probe = self.o["probe_dev_eui"]
        if probe:
            space = self.probe_space()
            facts["probe_space"] = space.get("code") if space else None
            if space is None:
                raise CheckFailed(f"no space of tenant {session['tenant_id']} has the probe sensor {probe}", facts)
        return f"{len(rows)} spaces " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())), facts

    def pick_space(self):
        rows = [r for r in self.spaces() if isinstance(r, dict) and r.get("id") and not r.get("deleted_at")]
        usable = [r for r in rows if str(r.get("current_state") or r.get("state") or "").lower() != "maintenance"
                  and r.get("enabled") is not False]
        pool = sorted(usable or rows, key=lambda r: (str(r.get("code") or ""), str(r["id"])))
        if not pool:
            raise CheckFailed("no space to reserve: the tenant sees no live space")
        return pool[0]

    def check_reservation(self):
        session = self.login()
        space = self.pick_space()
        facts = {"space_id": str(space["id"]), "space_code": space.get("code")}
        method, path = self.routes["reserve"]
        created = None
        for attempt in range(RESERVATION_SLOTS):
            start, end = reservation_window(self.started_at, attempt)
            body = {"space_id": str(space["id"]), "start_time": start.isoformat(),
                    "end_time": end.isoformat(), "user_email": self.o["login_email"],
                    "request_id": f"parking-smoke-{int(self.started_at)}-{attempt}"}
            resp = self.http.request(self.api, method, path, body, token=self.token)
            facts.update(start_time=start.isoformat(), end_time=end.isoformat(), create_status=resp.status)
            if resp.status == 409 or (resp.status == 400 and "not available" in resp.detail()):
                continue          # V5 answers 409 on a clash, V6 400 "Space is not available ..."
            if resp.status not in (200, 201):
                raise CheckFailed(f"{method} {path} on {space.get('code')} answered {resp.status}: "
                                  f"{resp.detail()}", facts)
            created = resp.json(f"{method} {path}")
            break
        if created is None:
            raise CheckFailed(f"every window tried on {space.get('code')} was taken", facts)
        rid = created.get("id") if isinstance(created, dict) else None
        facts.update(reservation_id=rid, created_state=created.get("status") if isinstance(created, dict) else None)
        if not rid:
            raise CheckFailed(f"{method} {path} answered no reservation id", facts)
        try:
            problems = self.reservation_round_trip(created, space, rid, facts)
        finally:
            facts["deleted"] = self.delete_reservation(rid, session)
        if problems:
            raise CheckFailed("reservation check: " + "; ".join(problems), facts)
        return (f"reserved {space.get('code')} {facts['start_time']} for {RESERVATION_MINUTES} min, listed, "
                f"cancelled" + (", deleted" if facts["deleted"] else "")), facts

    def reservation_round_trip(self, created, space, rid, facts):
        """List the new reservation, then cancel it; the problems found."""
        problems = []
        if str(created.get("space_id")) != str(space["id"]):
            problems.append(f"created on space {created.get('space_id')}, asked {space['id']}")
        status = created.get("status")
        try:
            _, rows = self.get_list("reservations", "status=" + quote(str(status or "")))
            facts["listed"] = True
            if not any(isinstance(r, dict) and str(r.get("id")) == str(rid) for r in rows):
                problems.append(f"reservation {rid} is not listed by GET {self.routes['reservations'][0]}")
        except CheckFailed as exc:
            problems.append(str(exc))
        method, path = self.routes["cancel"]
        path = path.format(id=rid)
        cancel = self.http.request(self.api, method, path, {}, token=self.token)
        facts["cancel_status"] = cancel.status
        cancelled = cancel.json(f"{method} {path}") if cancel.status == 200 else {}
        final = cancelled.get("status") if isinstance(cancelled, dict) else None
        if final is None and isinstance(cancelled, dict) and isinstance(cancelled.get("reservation"), dict):
            final = cancelled["reservation"].get("status")
        facts["final_state"] = final
        if cancel.status != 200:
            problems.append(f"cancel answered {cancel.status}: {cancel.detail()} (reservation {rid} is left "
                            f"{status}; cancel it by hand)")
        elif final not in ("cancelled", None):
            problems.append(f"cancel left status {final!r}")
        return problems

    def delete_reservation(self, rid, session):
        """Remove the smoke reservation from the target database (no trace stays); False without one."""
        if self.db_factory is None:
            return False
        conn = self.db_factory()
        try:
            with conn.cursor() as cur:
                if not session["platform_admin"]:   # V5 forces row-level security on its owner too
                    setting = "app.current_tenant_id" if self.o["expect_backend"] == "v6" else "app.current_tenant"
                    cur.execute("SELECT set_config(%s, %s, true)", (setting, session["tenant_id"]))
                cur.execute("DELETE FROM reservations WHERE id = %s", (str(rid),))
                deleted = cur.rowcount == 1
            conn.commit()
            return deleted
        finally:
            conn.close()

    def check_websocket(self):
        session = self.login()
        probe = self.o["probe_dev_eui"]
        timeout = self.o["timeout"]
        started = time.monotonic()
        deadline = started + timeout
        client = WebSocketClient.connect(self.http, self.api, "/ws?token=" + quote(self.token, safe=""), timeout)
        seen = []
        facts = {"host": self.http.vhost(self.api)}
        try:
            hello = client.wait_for(lambda m: m.get("type") == "connected", deadline, seen)
            if hello is None:
                raise CheckFailed(f"no 'connected' message within {timeout:g}s", facts)
            facts["connected_tenant"] = hello.get("tenant_id")
            client.send_json({"type": "subscribe", "channel": "spaces"})
            ack = client.wait_for(lambda m: m.get("type") in ("subscribed", "error"), deadline, seen)
            if ack is None or ack.get("type") != "subscribed" or ack.get("channel") != "spaces":
                raise CheckFailed(f"subscribe to 'spaces' answered {ack!r}", facts)
            sent_at = time.monotonic()      # the API broadcasts before it answers the POST
            _, sent, _ = self.send_uplink()
            facts["fcnt"] = sent["fcnt"]
            facts["deduplication_id"] = sent["deduplication_id"]
            kind = self.routes["ws_update"]
            update = client.wait_for(
                lambda m: (m.get("type") == kind and str(ws_payload(m).get("dev_eui") or "").upper() == probe
                           and ws_payload(m).get("fcnt") == sent["fcnt"]),
                sent_at + timeout, seen)
            facts["other_messages"] = len(seen)
            if update is None:
                raise CheckFailed(f"no {kind} for {probe} fCnt {sent['fcnt']} within {timeout:g}s "
                                  f"({len(seen)} other messages)", facts)
            data = ws_payload(update)
            facts.update(latency_ms=round((time.monotonic() - sent_at) * 1000, 1),
                         space_code=data.get("space_code") or data.get("code"), state=data.get("state"),
                         update_tenant=data.get("tenant_id"))
            if (not session["platform_admin"] and data.get("tenant_id") is not None
                    and str(data.get("tenant_id")) != session["tenant_id"]):
                raise CheckFailed(f"{kind} for tenant {data.get('tenant_id')}, logged in to "
                                  f"{session['tenant_id']}", facts)
        finally:
            client.close()
        facts["session_ms"] = round((time.monotonic() - started) * 1000, 1)
        return (f"subscribed to spaces; {kind} for {probe} on {facts['space_code']} "
                f"{facts['latency_ms']} ms after posting the uplink"), facts

    def check_webhook(self):
        tenant = None
        if self.o["login_email"] and self.o["login_password"]:
            try:
                session = self.login()
                tenant = None if session["platform_admin"] else session["tenant_id"]
            except CheckFailed:
                tenant = None           # the login check reports it; the webhook needs no token
        event, probe, body = self.send_uplink()
        facts = {"probe": probe}
        if self.o["expect_backend"] == "v6" and body.get("reading_stored") is False:
            raise CheckFailed(f"V6 processed the probe (fCnt {probe['fcnt']}) but stored no reading", facts)
        if self.db_factory is None:
            return (f"uplink fCnt {probe['fcnt']} accepted ({probe.get('api_status')}); "
                    "not confirmed in the database (no target given)"), facts
        row = self.poll_reading(event, probe, tenant, facts)
        facts["stored"] = row
        return (f"uplink fCnt {probe['fcnt']} stored in {self.db_name} for tenant {row['tenant_id']} "
                f"after {row['after_ms']} ms"), facts

    V5_READING = ("SELECT tenant_id::text, occupancy_state, space_id::text FROM sensor_readings"
                  " WHERE device_eui = %s AND fcnt = %s")
    V6_READING = ("SELECT r.tenant_id::text, r.occupied, d.tenant_id::text FROM sensor_devices d"
                  " JOIN sensor_readings r ON r.device_id = d.id"
                  " WHERE d.dev_eui = %s AND r.dev_eui = %s AND r.fcnt = %s AND strpos(r.raw_payload, %s) > 0")

    def poll_reading(self, event, probe, tenant, facts):
        """Poll the target (<= timeout) for the probe's reading; check device, tenant, payload."""
        eui, fcnt, occupied = self.o["probe_dev_eui"], probe["fcnt"], probe["occupied"]
        v6 = self.o["expect_backend"] == "v6"
        started = time.monotonic()
        deadline = started + self.o["timeout"]
        conn = self.db_factory()
        try:
            self.db_name = conn.get_dsn_parameters().get("dbname")
            while True:
                with conn.cursor() as cur:
                    if tenant:   # a non-superuser owner is subject to FORCEd row-level security
                        setting = "app.current_tenant_id" if v6 else "app.current_tenant"
                        cur.execute("SELECT set_config(%s, %s, true)", (setting, tenant))
                    if v6:
                        cur.execute(self.V6_READING, (eui, eui, fcnt, event["deduplicationId"]))
                    else:
                        cur.execute(self.V5_READING, (eui, fcnt))
                    rows = cur.fetchall()
                conn.rollback()
                if rows or time.monotonic() >= deadline:
                    break
                time.sleep(POLL_INTERVAL)
        finally:
            conn.close()
        after = round((time.monotonic() - started) * 1000, 1)
        if not rows:
            what = f"with deduplicationId {event['deduplicationId']}" if v6 else f"fCnt {fcnt}"
            raise CheckFailed(f"no sensor_readings row for {eui} {what} in {self.db_name} within "
                              f"{self.o['timeout']:g}s", facts)
        if len(rows) > 1:
            raise CheckFailed(f"{len(rows)} sensor_readings rows for {eui} fCnt {fcnt}", facts)
        problems = []
        if v6:
            row_tenant, row_occupied, device_tenant = rows[0]
            stored = {"tenant_id": row_tenant, "occupied": row_occupied, "device_tenant": device_tenant}
            if row_tenant != device_tenant:
                problems.append(f"reading tenant {row_tenant} is not the device's tenant {device_tenant}")
            if row_occupied is not occupied:
                problems.append(f"occupied {row_occupied}, sent {occupied}")
        else:
            row_tenant, state, space_id = rows[0]
            stored = {"tenant_id": row_tenant, "occupancy_state": state, "space_id": space_id}
            want = "OCCUPIED" if occupied else "FREE"
            if state != want:
                problems.append(f"occupancy_state {state}, sent {want}")
        if tenant and row_tenant != tenant:
            problems.append(f"reading tenant {row_tenant}, probe's tenant (login) {tenant}")
        stored["after_ms"] = after
        facts["stored"] = stored
        if problems:
            raise CheckFailed("probe reading stored wrongly: " + "; ".join(problems), facts)
        return stored

    def check_host_rules(self):
        results, failed = {}, []
        for host, rule in self.o["host_rules"].items():
            try:
                resp = self.http.request(host, "GET", rule["path"])
                ok, detail = evaluate_host_rule(rule, resp.status, resp.headers, resp.body, self.prefix)
                results[host] = {"passed": ok, "status": resp.status, "detail": detail, "path": rule["path"]}
            except CheckFailed as exc:
                ok, detail = False, str(exc)
                results[host] = {"passed": False, "status": None, "detail": detail, "path": rule["path"]}
            if not ok:
                failed.append(f"{self.http.vhost(host)}{rule['path']}: {detail}")
        facts = {"hosts": results}
        if failed:
            raise CheckFailed(f"{len(failed)} of {len(results)} hosts not as expected: " + "; ".join(failed), facts)
        return f"{len(results)} hosts as expected", facts

    def check_routing(self):
        """Wait until Traefik serves the routing file the play just wrote: the cutover routers add
        ROUTING_HEADER (e.g. "v6=10"); expect_routing "" waits until no response carries it (the
        file is gone, V5's own routers answer). A poll every POLL_INTERVAL, not a fixed pause."""
        want = self.o["expect_routing"]
        if want is None:
            raise CheckFailed("the routing check needs expect_routing (the header value, or '' for none)")
        started, seen, polls = time.monotonic(), None, 0
        deadline = started + self.o["routing_timeout"]
        while True:
            polls += 1
            try:
                resp = self.http.request(self.api, "GET", "/health")
                seen = resp.headers.get(ROUTING_HEADER.lower(), "")
            except CheckFailed as exc:
                seen = f"(no answer: {str(exc)[:80]})"
            if seen == want:
                took = time.monotonic() - started
                facts = {"routing": want, "seconds": round(took, 3), "polls": polls}
                return f"Traefik serves {want or 'no cutover routing'} after {took:.2f} s", facts
            if time.monotonic() >= deadline:
                raise CheckFailed(
                    f"Traefik did not load the routing within {self.o['routing_timeout']:g} s: "
                    f"{self.http.vhost(self.api)} answers with {ROUTING_HEADER} {seen!r}, expected {want!r}. "
                    "Look at Traefik's log for an error in the file-provider directory (a rejected file "
                    "leaves V5's own routers in charge)", {"routing": seen, "expected": want, "polls": polls})
            time.sleep(POLL_INTERVAL / 2)

    def check_error_rate(self):
        """Client-side error rate of the api host through Traefik, whichever backend answers
        (a canary step mixes them): GET /health back to back, no pause (the whole phase's client
        traffic is gated separately, parking_traffic); an error is a connection failure or a
        status >= 400."""
        n, errors, statuses = self.o["error_rate_requests"], [], {}
        for i in range(n):
            try:
                resp = self.http.request(self.api, "GET", "/health")
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
                if resp.status >= 400:
                    errors.append(f"HTTP {resp.status}")
            except CheckFailed as exc:
                errors.append(str(exc)[:120])
        rate = len(errors) / n
        facts = {"requests": n, "errors": len(errors), "rate": rate, "statuses": statuses, "examples": errors[:5]}
        if rate > self.o["error_rate_max"]:
            raise CheckFailed(f"error rate {rate:.1%} over {n} requests exceeds {self.o['error_rate_max']:.1%}", facts)
        return f"{len(errors)} errors in {n} requests ({rate:.1%})", facts

    # ---- driver -----------------------------------------------------------------------------

    def skip_reason(self, name, check_mode):
        if check_mode and name not in READ_CHECKS:
            return "check mode: only read checks run (this one writes)"
        if name == "websocket" and self.o["expect_backend"] == "v5":
            return "V5 has no websocket endpoint (infrastructure.md section 10)"
        if name in WRITE_CHECKS and self.wrong_backend is not None:
            return (f"not run: {self.http.vhost(self.api)} answers version {self.wrong_backend!r}, not "
                    f"{self.o['expect_backend'].upper()} (see health); nothing written to the wrong backend")
        return None

    def run(self, check_mode=False):
        results = []
        for name in self.o["checks"]:
            reason = self.skip_reason(name, check_mode)
            if reason:
                results.append(check_result(name, None, reason, None, skipped=True))
                continue
            started = time.monotonic()
            try:
                detail, facts = getattr(self, "check_" + name)()
                passed = True
            except CheckFailed as exc:
                passed, detail, facts = False, str(exc), exc.facts
            except ParkingError as exc:       # e.g. the target database cannot be reached
                passed, detail, facts = False, str(exc), {}
            except Exception as exc:  # a bug or an unforeseen answer: report it, keep checking
                passed, detail, facts = False, f"unexpected {type(exc).__name__}: {exc}", {}
            results.append(check_result(name, passed, detail, (time.monotonic() - started) * 1000, facts))
        extra = {"backend": self.o["expect_backend"], "api_host": self.http.vhost(self.api),
                 "api_version": self.api_version, "check_mode": bool(check_mode),
                 "probe": {"dev_eui": self.o["probe_dev_eui"], "fcnt_base": self.fcnt_base,
                           "uplinks": self.probes}}
        return summarise(results, [self.o["login_password"], self.token], extra)


def run(params, check_mode=False, db_factory=None):
    """Validate the options and run the checks; raises ConfigError on bad options."""
    return SmokeRun(normalise_options(params), db_factory=db_factory).run(check_mode)
