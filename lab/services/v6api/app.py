#!/usr/bin/env python3
"""V6 API stand-in for the lab (plays ``parking-api-v6``, port 8000).

The real V6 image (commit ea5b72f) cannot run in the lab, so this service serves the same HTTP
contract: routes, parameters, request encodings, response keys, status codes and
``{"detail": ...}`` errors. The reference is docs/v6-contract.md. It is written from scratch
(standard library plus the Debian packages python3-psycopg2 and python3-bcrypt, helpers shared
with the V5 stand-in in ``lab/services/common/svc.py``); no code of the real app is used.

Routes (FastAPI semantics: a path matched with another method answers 405 with ``Allow``; an
unknown path whose trailing-slash twin exists answers 307 to it; invalid parameters answer
422 with pydantic-style ``detail`` lists; authentication is checked before parameters):

* ``GET /health`` -> ``{"status": "healthy", "version": "6.0.0"}``; ``GET /webhooks/health``.
* ``POST /api/auth/login`` (form: ``username`` = email, ``password``), ``POST /api/auth/refresh``
  (JSON ``refresh_token``), ``GET /api/auth/me``, ``POST /api/auth/logout``,
  ``POST /api/auth/register``. HS256 JWTs: access = sub, tenant_id, email, role, exp, iat,
  type "access"; refresh = sub, tenant_id, exp, iat, type "refresh".
* Tenant routes (``Authorization: Bearer``; user + active membership + tenant looked up for the
  token's sub/tenant_id; platform admin = owner/admin of a tenant of type 'platform'):
  ``GET /api/v6/devices``, ``GET /api/v6/spaces``, ``GET /api/v6/spaces/{id}``,
  ``GET /api/v6/spaces/stats/occupancy``, ``GET /api/v6/sites``, ``GET /api/v6/sites/{id}``,
  ``GET /api/v6/reservations``, ``POST /api/v6/reservations/`` (201), ``GET
  /api/v6/reservations/{id}``, ``PUT /api/v6/reservations/{id}/cancel``, ``GET
  /api/v6/gateways``, ``GET /api/v6/gateways/{id}``, ``GET /api/v6/dashboard/data``.
  Tenant filtering is done in the queries, route by route as V6 does (devices and the gateway
  list show every tenant to a platform admin viewing the platform tenant; the other routes
  always filter on the token's tenant).
* ``POST /webhooks/chirpstack/uplink`` and ``POST /api/v1/uplink`` (ChirpStack HTTP
  integration): sensor_readings, last_seen_at, space state, orphan_devices. ``X-Signature``
  (hex HMAC-SHA256 of the body with CHIRPSTACK_WEBHOOK_SECRET) is checked only when the header
  is present, as V6 does.
* ``GET /ws?token=<JWT>``: RFC 6455 websocket; ``connected`` greeting, ``subscribe`` /
  ``unsubscribe`` / ``ping`` answered as V6 does.

Background jobs as V6: at start-up and every 24 h sensor_readings older than the retention
are deleted; every 60 s ended, not checked-in active reservations are closed and 'reserved'
spaces without a current active reservation become 'free'. A failing job is logged, never fatal.

Deliberate deviations from the real app (V6 as it should behave):

* Uplink ``data`` is decoded as base64 (ChirpStack v4), occupancy = bit 0 of byte 0; the real
  app reads it as hex, which fails on every real payload. No payload = occupancy unknown (NULL
  reading, no space change) where the real app writes "free".
* De-duplication is exact: a reading with the same device and fCnt is a duplicate; the real app
  treats every fCnt <= the newest reading's as a duplicate (a device reset silences it).
* An event without a usable fCnt (join/status events, fCnt outside int4) stores nothing and is
  answered ``{"status": "ignored", ...}``; a missing/invalid devEui answers 400 (real: 500).
* An occupancy change updates the space and answers 200 (the real UPDATE fails: one parameter
  used for a timestamp and a timestamptz column -> 500). Every reading of a sensor on a space
  (``data.changed`` says whether the state moved) is pushed to the tenant's websockets
  subscribed to ``spaces`` as ``{"type": "space:update", "channel": "spaces", "data": {...},
  "timestamp": ...}`` (the real app has this format but never broadcasts).
* Reservation metadata is served as a JSON object (the real list 500s: jsonb comes back as a
  string) and stored from a JSON object (the real insert 500s: dict for a jsonb parameter);
  time zone aware start/end times are accepted (the real app 500s comparing them with
  utcnow()); a CHECK violation (e.g. longer than 24 h) answers 400, not 500; nullable columns
  are served as null where the real response model would 500.
* The reservation expiry job writes 'completed': V6's CHECK rejects the real app's 'expired'
  (so the real job never changes anything).
* Gateways: the real router selects columns the V6 table lacks (location, last_seen_at) and
  500s. Here ``location`` and ``last_seen_at`` come from ``config.chirpstack`` (written by the
  gateway import), and ``include_offline=false`` keeps gateways whose ``status`` is 'online'.
* A websocket with a bad token gets the HTTP 403 handshake answer uvicorn gives when the real
  app closes (1008) before accepting. 401 answers always carry
  ``WWW-Authenticate: Bearer``. Form logins are URL-encoded only (no multipart).

Lab-only switch LAB_SET_TENANT_CONTEXT=true ("a V6 that sets the tenant context"): every
transaction first sets app.current_tenant_id, app.is_platform_admin and app.current_user_id
with set_config(..., true), the login lookup sets app.login_email (lowercased) before reading
users, and uplinks and jobs run with app.is_platform_admin=true. These are the settings phase
1's row-level security policies read. By default (like V6) no context is set. Every transaction
sets TimeZone UTC (V6's own columns hold naive UTC; asyncpg returns timestamptz in UTC).

Environment: DATABASE_URL (used as given; V6 connects as the table owner), JWT_SECRET_KEY
(>= 32 chars), JWT_ALGORITHM (HS256 only), ACCESS_TOKEN_EXPIRE_MINUTES (60),
REFRESH_TOKEN_EXPIRE_DAYS (30), CHIRPSTACK_WEBHOOK_SECRET (optional), LAB_SET_TENANT_CONTEXT
(false), LAB_RETENTION_DAYS (90), LAB_FAULT_FILE (/tmp/parking-lab-unhealthy: /health answers
503 while it exists), PORT (8000), BIND (0.0.0.0), LOG_LEVEL (INFO).
"""
import base64
import binascii
import collections
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import queue
import re
import socket
import sys
import threading
import time
import uuid
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import svc  # noqa: E402  (lab/services/common, shared with the V5 stand-in)
from common.svc import (  # noqa: E402,F401  (re-exported: tests use app.<name>)
    HTTPError, JWTError, Request, b64url_decode, b64url_encode, json_default, jwt_decode,
    jwt_encode, one_line, parse_event_time, verify_password)

try:  # the pure helpers (JWT, frames, payload decoding) are unit-tested without the drivers
    import bcrypt
    import psycopg2
    import psycopg2.errors
except ImportError:  # pragma: no cover - only in environments without the drivers
    bcrypt = psycopg2 = None

VERSION = "6.0.0"
FAULT_FILE = os.environ.get("LAB_FAULT_FILE", "/tmp/parking-lab-unhealthy")
LOG = logging.getLogger("v6api")

PLATFORM_TENANT_ID = "00000000-0000-0000-0000-000000000000"   # V6 is_viewing_platform_tenant
PLATFORM_ADMIN_ROLES = ("owner", "admin")
EUI_RE = re.compile(r"^[0-9A-F]{16}$")
INT4_MAX = 2**31 - 1
PYDANTIC_URL = "https://errors.pydantic.dev/2.5/v/"
SLUG_RE = re.compile(r"^[a-z0-9-]+$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
RESERVE_AHEAD = dt.timedelta(minutes=15)   # a reservation starting this soon marks the space

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_MAX_MESSAGE = 64 * 1024        # client messages are tiny JSON commands
WS_IDLE_SECONDS = 30              # no frame for this long -> server ping
WS_QUEUE_MAX = 1000               # outbound frames per client before it is dropped as too slow
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def utc_now():
    return dt.datetime.now(dt.timezone.utc)


def utcnow_naive():
    """V6's datetime.utcnow(): naive UTC."""
    return dt.datetime.utcnow()


def as_utc(value):
    """Aware UTC datetime of ``value`` (naive = UTC, as V6 stores it)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def iso(value):
    """Python's isoformat (what V6's own dict builders emit), None stays None."""
    return value.isoformat() if value is not None else None


def model_time(value):
    """A datetime as a pydantic v2 response model serialises it (UTC offset written ``Z``)."""
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def text_id(value):
    return str(value) if value is not None else None


# --------------------------------------------------------------------------------------------
# Request validation with FastAPI/pydantic-shaped 422 answers
# --------------------------------------------------------------------------------------------

def field_error(kind, loc, msg, value, ctx=None):
    error = {"type": kind, "loc": list(loc), "msg": msg, "input": value}
    if ctx is not None:
        error["ctx"] = ctx
    error["url"] = PYDANTIC_URL + kind
    return error


class Params:
    """Collects parameter errors; ``done()`` raises one 422 with all of them."""

    TRUE = ("1", "on", "t", "true", "y", "yes")
    FALSE = ("0", "off", "f", "false", "n", "no")

    def __init__(self, query=None):
        self.query = query or {}
        self.errors = []

    def raw(self, name):
        values = self.query.get(name)
        return values[-1] if values else None   # FastAPI keeps the last value

    def integer(self, name, default, ge=None, le=None, where="query"):
        text = self.raw(name)
        if text is None:
            return default
        try:
            value = int(text.strip())
        except ValueError:
            self.errors.append(field_error("int_parsing", (where, name), "Input should be a valid "
                                           "integer, unable to parse string as an integer", text))
            return default
        if ge is not None and value < ge:
            self.errors.append(field_error("greater_than_equal", (where, name), "Input should be "
                                           "greater than or equal to %d" % ge, text, {"ge": ge}))
        elif le is not None and value > le:
            self.errors.append(field_error("less_than_equal", (where, name), "Input should be "
                                           "less than or equal to %d" % le, text, {"le": le}))
        return value

    def boolean(self, name, default):
        text = self.raw(name)
        if text is None:
            return default
        if text.strip().lower() in self.TRUE:
            return True
        if text.strip().lower() in self.FALSE:
            return False
        self.errors.append(field_error("bool_parsing", ("query", name), "Input should be a valid "
                                       "boolean, unable to interpret input", text))
        return default

    def text(self, name):
        return self.raw(name)

    def uuid(self, name, text=None, where="query"):
        text = self.raw(name) if where == "query" else text
        if text is None:
            return None
        value = parse_uuid(text)
        if value is None:
            self.errors.append(field_error("uuid_parsing", (where, name), "Input should be a valid "
                                           "UUID, unable to parse string as a UUID", text))
        return value

    def datetime(self, name):
        text = self.raw(name)
        if text is None:
            return None
        value = parse_datetime(text)
        if value is None:
            self.errors.append(field_error("datetime_parsing", ("query", name), "Input should be a "
                                           "valid datetime, unable to parse string", text))
        return value

    def done(self):
        if self.errors:
            raise HTTPError(422, self.errors)


def parse_uuid(text):
    try:
        return str(uuid.UUID(str(text).strip()))
    except (ValueError, AttributeError):
        return None


def parse_datetime(value):
    """pydantic's lax datetime input: ISO 8601 text (``Z`` allowed) or Unix seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return dt.datetime.fromtimestamp(value, dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None


def json_body(body, optional=False):
    """The request's JSON object as FastAPI reads a pydantic body; None when ``optional`` and
    empty. Malformed/missing/non-object bodies -> 422 like FastAPI."""
    if not body:
        if optional:
            return None
        raise HTTPError(422, [field_error("missing", ("body",), "Field required", None)])
    try:
        value = json.loads(body)
    except UnicodeDecodeError as exc:
        raise HTTPError(422, [field_error("json_invalid", ("body", 0), "JSON decode error", {},
                                          {"error": str(exc)})]) from exc
    except ValueError as exc:
        raise HTTPError(422, [field_error("json_invalid", ("body", getattr(exc, "pos", 0)),
                                          "JSON decode error", {},
                                          {"error": getattr(exc, "msg", str(exc))})]) from exc
    if not isinstance(value, dict):
        raise HTTPError(422, [field_error("model_attributes_type", ("body",), "Input should be a "
                                          "valid dictionary or object to extract fields from",
                                          value)])
    return value


class Body:
    """Field checks of one JSON object body (pydantic order: the declared field order)."""

    def __init__(self, data):
        self.data = data
        self.errors = []
        self.values = {}

    def _missing(self, name):
        self.errors.append(field_error("missing", ("body", name), "Field required", self.data))

    def string(self, name, required=False, min_length=None, max_length=None, pattern=None):
        if name not in self.data or (self.data[name] is None and not required):
            if required:
                self._missing(name)
            self.values[name] = None
            return
        value = self.data[name]
        if not isinstance(value, str):
            self.errors.append(field_error("string_type", ("body", name),
                                           "Input should be a valid string", value))
        elif min_length is not None and len(value) < min_length:
            self.errors.append(field_error("string_too_short", ("body", name), "String should have "
                                           "at least %d characters" % min_length, value,
                                           {"min_length": min_length}))
        elif max_length is not None and len(value) > max_length:
            self.errors.append(field_error("string_too_long", ("body", name), "String should have "
                                           "at most %d characters" % max_length, value,
                                           {"max_length": max_length}))
        elif pattern is not None and not pattern.match(value):
            self.errors.append(field_error("string_pattern_mismatch", ("body", name), "String should "
                                           "match pattern '%s'" % pattern.pattern, value,
                                           {"pattern": pattern.pattern}))
        else:
            self.values[name] = value

    def email(self, name):
        self.string(name, required=True)
        if name in self.values and not EMAIL_RE.match(self.values[name]):
            del self.values[name]
            self.errors.append(field_error("value_error", ("body", name), "value is not a valid "
                                           "email address: The email address is not valid.",
                                           self.data[name], {"reason": "invalid email"}))

    def uuid(self, name):
        if name not in self.data:
            return self._missing(name)
        value = self.data[name]
        parsed = parse_uuid(value) if isinstance(value, str) else None
        if parsed is None:
            self.errors.append(field_error("uuid_parsing" if isinstance(value, str) else "uuid_type",
                                           ("body", name), "Input should be a valid UUID", value))
        else:
            self.values[name] = parsed

    def datetime(self, name):
        if name not in self.data:
            return self._missing(name)
        parsed = parse_datetime(self.data[name])
        if parsed is None:
            self.errors.append(field_error("datetime_parsing", ("body", name), "Input should be a "
                                           "valid datetime", self.data[name]))
        else:
            self.values[name] = parsed

    def mapping(self, name):
        value = self.data.get(name, {})
        if not isinstance(value, dict):
            self.errors.append(field_error("dict_type", ("body", name),
                                           "Input should be a valid dictionary", value))
        else:
            self.values[name] = dict(value)

    def error(self, name, message):
        self.values.pop(name, None)
        self.errors.append(field_error("value_error", ("body", name), "Value error, " + message,
                                       self.data.get(name), {"error": {}}))

    def done(self):
        if self.errors:
            raise HTTPError(422, self.errors)
        return self.values


def parse_reservation(body):
    """ReservationCreate: space_id, start_time, end_time (after start_time), user_email,
    user_name, notes, metadata ({}), request_id."""
    fields = Body(json_body(body))
    fields.uuid("space_id")
    fields.datetime("start_time")
    fields.datetime("end_time")
    start, end = fields.values.get("start_time"), fields.values.get("end_time")
    if start is not None and end is not None and not before(start, end):
        fields.error("end_time", "end_time must be after start_time")
    for name in ("user_email", "user_name", "notes"):
        fields.string(name)
    fields.mapping("metadata")
    fields.string("request_id")
    return fields.done()


def before(a, b):
    """a < b for datetimes that may mix naive (UTC) and aware values."""
    return as_utc(a) < as_utc(b)


def parse_login_form(request):
    """OAuth2PasswordRequestForm: URL-encoded ``username`` and ``password`` (required),
    ``grant_type`` (optional, must be "password")."""
    try:
        form = parse_qs(request.body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        form = {}
    errors = []
    grant = (form.get("grant_type") or [None])[-1]
    if grant is not None and grant != "password":
        errors.append(field_error("string_pattern_mismatch", ("body", "grant_type"),
                                  "String should match pattern 'password'", grant,
                                  {"pattern": "password"}))
    values = {}
    for name in ("username", "password"):
        value = (form.get(name) or [None])[-1]
        if value is None or value == "":   # FastAPI reads an empty form field as missing
            errors.append(field_error("missing", ("body", name), "Field required", None))
        values[name] = value
    if errors:
        raise HTTPError(422, errors)
    return values["username"], values["password"]


# --------------------------------------------------------------------------------------------
# JWT (HS256) as V6 issues them; encode/decode are in common/svc.py (shared with V5)
# --------------------------------------------------------------------------------------------

# svc.jwt_decode reasons -> python-jose's messages (V6 prefixes them with "Invalid token: ")
JOSE_MESSAGES = {"token expired": "Signature has expired.",
                 "bad signature": "Signature verification failed.",
                 "unsupported algorithm": "The specified alg value is not allowed",
                 "malformed token": "Not enough segments",
                 "malformed claims": "Invalid payload string"}


def decode_token(token, secret, now=None):
    """V6 core.security.decode_token: the claims, or JWTError("Invalid token: <jose reason>")."""
    try:
        return jwt_decode(token, secret, now)
    except JWTError as exc:
        raise JWTError("Invalid token: " + JOSE_MESSAGES.get(str(exc), str(exc))) from exc


def make_access_token(user_id, tenant_id, email, role, secret, ttl_seconds, now=None):
    issued = int(time.time() if now is None else now)
    claims = {"sub": str(user_id), "tenant_id": str(tenant_id), "email": email, "role": role,
              "exp": issued + int(ttl_seconds), "iat": issued, "type": "access"}
    return jwt_encode(claims, secret)


def make_refresh_token(user_id, tenant_id, secret, ttl_seconds, now=None):
    issued = int(time.time() if now is None else now)
    claims = {"sub": str(user_id), "tenant_id": str(tenant_id), "exp": issued + int(ttl_seconds),
              "iat": issued, "type": "refresh"}
    return jwt_encode(claims, secret)


def is_platform_admin(tenant_type, role):
    """Derived, not stored: owner/admin membership in a tenant of type 'platform'."""
    return tenant_type == "platform" and role in PLATFORM_ADMIN_ROLES


def user_dict(row):
    """The ``user`` object of login/refresh and the body of /api/auth/me."""
    return {"id": str(row["id"]), "email": row["email"], "username": row["username"],
            "tenant_id": str(row["tenant_id"]), "tenant_name": row["tenant_name"],
            "tenant_slug": row["tenant_slug"], "role": row["role"],
            "is_platform_admin": is_platform_admin(row["tenant_type"], row["role"]),
            "created_at": iso(row["created_at"])}


def bearer_token(header):
    """OAuth2PasswordBearer: the token of ``Authorization: Bearer <t>`` or None."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def verify_signature(secret, body, signature):
    """V6: without a configured secret every signature passes; otherwise the header must equal
    the hex HMAC-SHA256 of the raw body exactly."""
    if not secret:
        return True
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(signature.encode("utf-8", "replace"), expected.encode("ascii"))


# --------------------------------------------------------------------------------------------
# Uplink parsing and payload decoding (pure functions)
# --------------------------------------------------------------------------------------------

class BadRequest(Exception):
    """The uplink body cannot be processed at all (HTTP 400)."""


def decode_payload(data):
    """ChirpStack v4 sends ``data`` as standard base64 (chirpstack-v4.md §5.1). Returns bytes;
    b"" for a missing, empty or undecodable value (a MAC-only frame has ``data`` = "")."""
    if not isinstance(data, str) or not data:
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return b""


def decode_occupancy(payload):
    """Byte 0 bit 0 = occupied (Browan TBMS100); None when the frame carries no payload."""
    if not payload:
        return None
    return bool(payload[0] & 0x01)


def parse_uplink(body):
    """Extract what V6 reads from a ChirpStack v4 ``up`` event (raises BadRequest).

    ``fcnt`` is None when absent (join/status events reach the same URL) or outside int4
    (sensor_readings.fcnt is ``integer NOT NULL``): such events store no reading.
    """
    try:
        text = body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body
        event = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("Invalid JSON: %s" % exc) from exc
    if not isinstance(event, dict):
        raise BadRequest("Invalid JSON: an object is expected")
    device_info = event.get("deviceInfo")
    dev_eui = device_info.get("devEui") if isinstance(device_info, dict) else None
    if not isinstance(dev_eui, str) or not dev_eui.strip():
        raise BadRequest("Missing devEui in payload")
    dev_eui = dev_eui.strip().upper()
    if not EUI_RE.match(dev_eui):
        raise BadRequest("devEui must be 16 hex digits")

    payload = decode_payload(event.get("data"))
    rx_info = event.get("rxInfo")
    first_rx = rx_info[0] if isinstance(rx_info, list) and rx_info else {}
    if not isinstance(first_rx, dict):
        first_rx = {}
    fcnt = svc.number(event.get("fCnt"), int)
    if fcnt is not None and not 0 <= fcnt <= INT4_MAX:
        fcnt = None
    return {
        "dev_eui": dev_eui,
        "fcnt": fcnt,
        "payload": payload,
        "occupied": decode_occupancy(payload),
        "time": parse_event_time(event.get("time")),
        "rssi": svc.number(first_rx.get("rssi"), float),
        "snr": svc.number(first_rx.get("snr"), float),
        "raw": json.dumps(event),   # V6 stores json.dumps(payload)
    }


# --------------------------------------------------------------------------------------------
# WebSocket framing (RFC 6455), pure functions
# --------------------------------------------------------------------------------------------

class WebSocketError(Exception):
    """A protocol violation; ``code`` is the close code to send."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code
        self.reason = reason


Frame = collections.namedtuple("Frame", "fin opcode payload")


def ws_accept_key(key):
    """Sec-WebSocket-Accept = base64(sha1(key + GUID))."""
    digest = hashlib.sha1((key.strip() + WS_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def apply_mask(data, mask_key):
    """XOR with the 4-byte key (done on one big integer: fast enough for any frame size)."""
    if not data:
        return b""
    n = len(data)
    key = (mask_key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def encode_frame(opcode, payload=b"", fin=True, mask_key=None):
    """One frame; the server sends unmasked frames, a client passes a 4-byte ``mask_key``."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    head = bytearray([(0x80 if fin else 0) | (opcode & 0x0F)])
    mask_bit = 0x80 if mask_key is not None else 0
    n = len(payload)
    if n < 126:
        head.append(mask_bit | n)
    elif n < 65536:
        head.append(mask_bit | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(mask_bit | 127)
        head += n.to_bytes(8, "big")
    if mask_key is not None:
        return bytes(head) + mask_key + apply_mask(payload, mask_key)
    return bytes(head) + payload


def decode_frame(buf, require_mask=True, max_size=WS_MAX_MESSAGE):
    """Parse one frame at the start of ``buf``: ``(Frame, consumed)``, or None when more bytes
    are needed. Raises WebSocketError on a protocol violation (close codes 1002 / 1009)."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    if b0 & 0x70:
        raise WebSocketError(1002, "reserved bits set")
    fin, opcode, masked, n = bool(b0 & 0x80), b0 & 0x0F, bool(b1 & 0x80), b1 & 0x7F
    if opcode not in (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
        raise WebSocketError(1002, "unknown opcode %d" % opcode)
    if opcode >= OP_CLOSE and (not fin or n > 125):
        raise WebSocketError(1002, "bad control frame")
    if require_mask and not masked:
        raise WebSocketError(1002, "client frames must be masked")
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
        raise WebSocketError(1009, "frame too large")
    mask_key = None
    if masked:
        if len(buf) < pos + 4:
            return None
        mask_key, pos = bytes(buf[pos:pos + 4]), pos + 4
    if len(buf) < pos + n:
        return None
    payload = bytes(buf[pos:pos + n])
    if mask_key is not None:
        payload = apply_mask(payload, mask_key)
    return Frame(fin, opcode, payload), pos + n


def close_payload(code, reason=""):
    return code.to_bytes(2, "big") + reason.encode("utf-8")[:123]


def parse_close_payload(payload):
    if len(payload) < 2:
        return 1005, ""
    return int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8", "replace")


def ws_reply(message):
    """Answer one client text message as V6's routers/websocket.py does. Returns
    (reply dict or None, action, channel); action is "subscribe", "unsubscribe", "close" (the
    real handler dies on a message that is valid JSON but not an object) or None."""
    try:
        command = json.loads(message)
    except ValueError:
        return {"type": "error", "message": "Invalid JSON message"}, None, None
    if not isinstance(command, dict):
        return None, "close", None
    kind, channel = command.get("type"), command.get("channel")
    if kind in ("subscribe", "unsubscribe") and channel:
        try:
            hash(channel)
        except TypeError:
            return None, "close", None
        done = "subscribed" if kind == "subscribe" else "unsubscribed"
        text = "Subscribed to %s" if kind == "subscribe" else "Unsubscribed from %s"
        return {"type": done, "channel": channel, "message": text % (channel,)}, kind, channel
    if kind == "ping":
        return {"type": "pong", "timestamp": utcnow_naive().isoformat()}, None, None
    return {"type": "error", "message": "Unknown message type: %s" % (kind,)}, None, None


# --------------------------------------------------------------------------------------------
# WebSocket connections and the per-tenant registry
# --------------------------------------------------------------------------------------------

class WebSocketConnection:
    """One upgraded socket. The handler thread reads (``serve``); a writer thread sends the
    queued frames, so a slow client never blocks an uplink broadcast."""

    def __init__(self, sock, user_id, tenant_id, pending=b""):
        self.sock = sock
        self.user_id, self.tenant_id = user_id, tenant_id
        self.channels = set()
        self.outbox = queue.Queue(maxsize=WS_QUEUE_MAX)
        self.closed = threading.Event()      # the socket is shut down
        self._closing = False                 # a close frame is queued
        self._close_lock = threading.Lock()
        self._buf = bytearray(pending)
        self.sent = self.received = 0
        self._writer = threading.Thread(target=self._write_loop, daemon=True, name="ws-writer")
        self._writer.start()

    # ---- sending -----------------------------------------------------------------------------

    def send_frame(self, frame):
        if self._closing or self.closed.is_set():
            return False
        try:
            self.outbox.put_nowait(frame)
            return True
        except queue.Full:
            LOG.warning("websocket client of tenant %s is too slow; dropping it", self.tenant_id)
            self.abort()
            return False

    def send_json(self, message):
        return self.send_frame(encode_frame(OP_TEXT, json.dumps(message, default=json_default)))

    def close(self, code=1000, reason=""):
        """Queue a close frame (once); the writer shuts the socket down after sending it."""
        with self._close_lock:
            if self._closing:
                return
            self._closing = True
        try:
            self.outbox.put_nowait(encode_frame(OP_CLOSE, close_payload(code, reason)))
            self.outbox.put_nowait(None)  # the writer stops here
        except queue.Full:
            self.abort()  # a client that does not read gets no goodbye

    def abort(self):
        self.closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.outbox.put_nowait(None)  # wake an idle writer
        except queue.Full:
            pass  # a busy writer sees ``closed`` after its current frame

    def _write_loop(self):
        while True:
            frame = self.outbox.get()
            if frame is None or self.closed.is_set():
                break
            try:
                self.sock.sendall(frame)
                self.sent += 1
            except OSError:
                break
        self.abort()

    # ---- receiving ---------------------------------------------------------------------------

    def _read_frame(self):
        """The next frame, None on EOF. A quiet client gets a ping every WS_IDLE_SECONDS."""
        while True:
            parsed = decode_frame(self._buf)
            if parsed is not None:
                frame, consumed = parsed
                del self._buf[:consumed]
                return frame
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                if self._buf:
                    raise WebSocketError(1002, "incomplete frame")
                self.send_frame(encode_frame(OP_PING, b"keepalive"))
                continue
            except OSError:
                return None
            if not chunk:
                return None
            self._buf += chunk

    def serve(self, on_text):
        """Read until close/EOF; ``on_text(str)`` handles each complete text message and
        returns False to end the session (close 1000)."""
        fragments, fragment_op = [], None
        try:
            while not self.closed.is_set():
                frame = self._read_frame()
                if frame is None:
                    break
                self.received += 1
                if frame.opcode == OP_CLOSE:
                    code, _ = parse_close_payload(frame.payload)
                    self.close(1000 if code in (1005, 1006) else code)
                    break
                if frame.opcode == OP_PING:
                    self.send_frame(encode_frame(OP_PONG, frame.payload))
                    continue
                if frame.opcode == OP_PONG:
                    continue
                if frame.opcode == OP_CONT:
                    if fragment_op is None:
                        raise WebSocketError(1002, "unexpected continuation frame")
                    fragments.append(frame.payload)
                else:
                    if fragment_op is not None:
                        raise WebSocketError(1002, "expected a continuation frame")
                    fragment_op, fragments = frame.opcode, [frame.payload]
                if sum(map(len, fragments)) > WS_MAX_MESSAGE:
                    raise WebSocketError(1009, "message too large")
                if not frame.fin:
                    continue
                opcode, data = fragment_op, b"".join(fragments)
                fragment_op, fragments = None, []
                if opcode == OP_BINARY:  # V6's receive_text() fails on binary: session ends
                    break
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise WebSocketError(1007, "invalid UTF-8") from exc
                if on_text(text) is False:
                    break
        except WebSocketError as exc:
            self.close(exc.code, exc.reason)
        finally:
            self.close()
            self._writer.join(timeout=5)
            self.abort()


class Registry:
    """Thread-safe set of live websocket connections, per tenant (the token's tenant_id, as V6's
    ConnectionManager keys them: a platform admin gets only its own tenant's messages)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._by_tenant = collections.defaultdict(set)

    def add(self, conn):
        with self._lock:
            self._by_tenant[conn.tenant_id].add(conn)

    def remove(self, conn):
        with self._lock:
            conns = self._by_tenant.get(conn.tenant_id)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del self._by_tenant[conn.tenant_id]

    def count(self):
        with self._lock:
            return sum(len(c) for c in self._by_tenant.values())

    def broadcast(self, tenant_id, channel, message):
        """Queue ``message`` for every subscriber of ``channel`` that may see ``tenant_id``."""
        with self._lock:
            targets = [c for c in self._by_tenant.get(str(tenant_id), ()) if channel in c.channels]
        if not targets:
            return 0
        frame = encode_frame(OP_TEXT, json.dumps(message, default=json_default))
        return sum(1 for conn in targets if conn.send_frame(frame))

    def close_all(self, code=1001, reason="server shutting down"):
        with self._lock:
            conns = [c for s in self._by_tenant.values() for c in s]
        for conn in conns:
            conn.close(code, reason)
        return len(conns)


# --------------------------------------------------------------------------------------------
# Database access
# --------------------------------------------------------------------------------------------

class Database(svc.Database):
    """The shared pool (common/svc.py), lazily created so the API starts while PostgreSQL
    is still down."""

    application_name = "parking-api-v6-lab"

    def transaction(self, context=None):
        """``with db.transaction(context) as cur:`` -> one transaction. Its first statement (also
        the pooled connection's liveness check) sets TimeZone UTC and, when ``context`` =
        (tenant_id, is_platform_admin, user_id) is given, the lab's tenant context."""
        if context is None:
            return svc.Transaction(self, SET_UTC)
        tenant_id, admin, user_id = context
        return svc.Transaction(self, SET_CONTEXT, (tenant_id or "", "true" if admin else "false",
                                                   user_id or ""))


SET_UTC = "SELECT set_config('TimeZone', 'UTC', true)"
SET_CONTEXT = ("SELECT set_config('TimeZone', 'UTC', true),"
               " set_config('app.current_tenant_id', %s, true),"
               " set_config('app.is_platform_admin', %s, true),"
               " set_config('app.current_user_id', %s, true)")


def set_setting(cur, name, value):
    cur.execute("SELECT set_config(%s, %s, true)", (name, value))


# --------------------------------------------------------------------------------------------
# Uplink processing (one transaction per uplink)
# --------------------------------------------------------------------------------------------

# Like the real app, an uplink takes no lock until it writes: the device and its newest reading
# are read without one (the real app's access path: the EUI's newest reading by the received_at
# index; only an fCnt at or below it needs the exact check, a scan of the device's readings),
# the reading is inserted, then the device row and its space are updated, last, each in one
# statement: locks are held for two statements and the commit, so a host that starves this
# process for a moment does not queue the next uplinks of the device behind a held lock (the
# convoy that took the lab's V5 down on CI). As in the real app, two copies of one (EUI, fCnt)
# racing each other can both be stored: ChirpStack sends an uplink once.
FIND_DEVICE = ("SELECT d.id, d.tenant_id, d.assigned_space_id,"
               " (SELECT r.fcnt FROM sensor_readings r WHERE r.dev_eui = %s"
               "  ORDER BY r.received_at DESC LIMIT 1) AS newest_fcnt"
               " FROM sensor_devices d WHERE d.dev_eui = %s")
READING_EXISTS = "SELECT 1 FROM sensor_readings WHERE device_id = %s AND fcnt = %s LIMIT 1"
INSERT_READING = """
    INSERT INTO sensor_readings
        (tenant_id, device_id, dev_eui, fcnt, occupied, rssi, snr, raw_payload, received_at, created_at)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    RETURNING id
"""
TOUCH_DEVICE = "UPDATE sensor_devices SET last_seen_at = %s, updated_at = %s WHERE id = %s"
# the space's state, written only when it moves; the row as it was before, for the broadcast
SET_SPACE_STATE = """
    WITH old AS (SELECT id, code, current_state, sensor_state FROM spaces
                  WHERE id = %(space)s AND tenant_id = %(tenant)s),
         moved AS (UPDATE spaces s SET current_state = %(state)s, sensor_state = %(state)s,
                          state_changed_at = %(now)s, updated_at = %(now)s
                     FROM old WHERE s.id = old.id AND s.current_state IS DISTINCT FROM %(state)s
                   RETURNING s.id)
    SELECT old.code, old.current_state, old.sensor_state, EXISTS (SELECT 1 FROM moved) AS changed
      FROM old
"""
UPSERT_ORPHAN = """
    INSERT INTO orphan_devices (dev_eui, first_seen, last_seen, message_count, last_payload)
    VALUES (%s, %s, %s, 1, %s)
    ON CONFLICT (dev_eui) DO UPDATE SET
        last_seen = EXCLUDED.last_seen,
        message_count = orphan_devices.message_count + 1,
        last_payload = EXCLUDED.last_payload
"""


def reading_exists(cur, device, fcnt):
    """Exact de-duplication, cheaply: only an fCnt at or below the newest one can be a duplicate."""
    newest = device["newest_fcnt"]
    if newest is None or newest < fcnt:
        return False
    cur.execute(READING_EXISTS, (device["id"], fcnt))
    return cur.fetchone() is not None


def process_uplink(cur, up, now=None):
    """Write what V6 writes for one uplink. Returns (response body, (tenant_id, space:update
    data) or None); the caller broadcasts after the commit."""
    eui, fcnt = up["dev_eui"], up["fcnt"]
    now = now or utcnow_naive()
    cur.execute(FIND_DEVICE, (eui, eui))
    device = cur.fetchone()
    if device is None:
        cur.execute(UPSERT_ORPHAN, (eui, now, now, up["raw"]))
        return {"status": "orphan", "dev_eui": eui, "message": "Device not found in database"}, None
    if fcnt is None:
        return {"status": "ignored", "dev_eui": eui, "fcnt": None,
                "message": "No usable fCnt: nothing stored"}, None
    if reading_exists(cur, device, fcnt):
        return {"status": "duplicate", "dev_eui": eui, "fcnt": fcnt,
                "message": "Duplicate message (already processed)"}, None
    occupied = up["occupied"]
    cur.execute(INSERT_READING, (device["tenant_id"], device["id"], eui, fcnt, occupied, up["rssi"],
                                 up["snr"], up["raw"], now, now))
    reading_id = str(cur.fetchone()["id"])
    cur.execute(TOUCH_DEVICE, (now, now, device["id"]))
    space_id = device["assigned_space_id"]
    if not space_id:
        return {"status": "unassigned", "dev_eui": eui, "fcnt": fcnt,
                "message": "Device not assigned to any space", "reading_id": reading_id}, None
    result = {"status": "processed", "dev_eui": eui, "fcnt": fcnt, "space_id": str(space_id),
              "occupied": occupied, "reading_id": reading_id}
    if occupied is None:
        return result, None
    state = "occupied" if occupied else "free"
    cur.execute(SET_SPACE_STATE, {"space": space_id, "tenant": device["tenant_id"], "state": state,
                                  "now": now})
    space = cur.fetchone()
    if space is None:
        return result, None
    changed = space["changed"]
    # every sensor reading of a space is pushed (a dashboard shows it live), ``changed`` telling
    # whether the space's state moved
    data = {"space_id": str(space_id), "space_code": space["code"], "current_state": state,
            "previous_state": space["current_state"], "changed": changed, "sensor_state": state,
            "previous_sensor_state": space["sensor_state"], "occupied": occupied,
            "dev_eui": eui, "fcnt": fcnt, "reading_id": reading_id,
            "state_changed_at": now.isoformat() if changed else None}
    return result, (str(device["tenant_id"]), data)


def space_update_message(data):
    """The real app's (unused) broadcast_space_update envelope."""
    return {"type": "space:update", "channel": "spaces", "data": data,
            "timestamp": utcnow_naive().isoformat()}


# --------------------------------------------------------------------------------------------
# Background jobs (V6 services/background_jobs.py)
# --------------------------------------------------------------------------------------------

DELETE_OLD_READINGS = ("DELETE FROM sensor_readings"
                       " WHERE received_at < now() - make_interval(days => %s)")
# V6 writes 'expired', which its own CHECK valid_status rejects: the lab writes 'completed'.
EXPIRE_RESERVATIONS = """
    UPDATE reservations SET status = 'completed', updated_at = now()
     WHERE status = 'active' AND end_time < now() AND checked_in = false
"""
FREE_RESERVED_SPACES = """
    UPDATE spaces s SET current_state = 'free', state_changed_at = %s, updated_at = now()
     WHERE current_state = 'reserved'
       AND NOT EXISTS (SELECT 1 FROM reservations r
                        WHERE r.space_id = s.id AND r.status = 'active'
                          AND r.start_time <= now() AND r.end_time >= now())
"""


class Jobs:
    """Periodic jobs on daemon threads; a failing run is logged and retried next period."""

    def __init__(self, db, context, retention_days):
        self.db, self.context, self.retention_days = db, context, retention_days
        self.stop = threading.Event()

    def cleanup_readings(self):
        with self.db.transaction(self.context) as cur:
            cur.execute(DELETE_OLD_READINGS, (self.retention_days,))
            deleted = cur.rowcount
        LOG.info("retention job: deleted %d sensor_readings older than %d days", deleted,
                 self.retention_days)
        return deleted

    def expire_reservations(self):
        with self.db.transaction(self.context) as cur:
            cur.execute(EXPIRE_RESERVATIONS)
            expired = cur.rowcount
            cur.execute(FREE_RESERVED_SPACES, (utcnow_naive(),))
            freed = cur.rowcount
        if expired or freed:
            LOG.info("expiry job: %d reservation(s) set to 'completed' (V6 writes 'expired', which"
                     " its CHECK rejects), %d reserved space(s) set free", expired, freed)
        return expired, freed

    def _loop(self, job, interval):
        while not self.stop.is_set():
            try:
                job()
            except Exception as exc:  # never fatal: next period
                LOG.error("job %s failed: %s", job.__name__, one_line(exc))
            self.stop.wait(interval)

    def start(self):
        for job, interval in ((self.cleanup_readings, 86400), (self.expire_reservations, 60)):
            threading.Thread(target=self._loop, args=(job, interval), daemon=True,
                             name="job-" + job.__name__).start()


# --------------------------------------------------------------------------------------------
# Row -> JSON (the real app's dict builders and response models)
# --------------------------------------------------------------------------------------------

def device_to_dict(row):
    return {"id": str(row["id"]), "dev_eui": row["dev_eui"], "device_type": row["device_type"],
            "name": row["name"], "tenant_id": str(row["tenant_id"]), "status": row["status"],
            "lifecycle_state": row["lifecycle_state"], "space_id": text_id(row["assigned_space_id"]),
            "space_code": row["space_code"], "assigned_at": iso(row["assigned_at"]),
            "last_seen_at": iso(row["last_seen_at"]), "created_at": iso(row["created_at"]),
            "updated_at": iso(row["updated_at"])}


def space_to_dict(row, include_devices=False):
    result = {"id": str(row["id"]), "tenant_id": text_id(row["tenant_id"]),
              "site_id": text_id(row["site_id"]), "code": row["code"], "name": row["name"],
              "display_name": row["display_name"], "current_state": row["current_state"],
              "sensor_state": row["sensor_state"], "display_state": row["display_state"],
              "state_changed_at": iso(row["state_changed_at"]), "enabled": row["enabled"],
              "auto_release_minutes": row["auto_release_minutes"],
              "sensor_device_id": text_id(row["sensor_device_id"]),
              "display_device_id": text_id(row["display_device_id"]),
              "config": row["config"] if row["config"] is not None else {},
              "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"])}
    if include_devices:
        for kind in ("sensor", "display"):
            result[kind + "_device"] = {
                "dev_eui": row[kind + "_dev_eui"], "name": row[kind + "_device_name"],
                "status": row[kind + "_status"]} if row[kind + "_dev_eui"] else None
    return result


SPACE_MODEL_FIELDS = ("code", "name", "display_name", "enabled", "auto_release_minutes", "config",
                      "id", "tenant_id", "site_id", "sensor_device_id", "display_device_id",
                      "current_state", "sensor_state", "display_state", "state_changed_at",
                      "created_at", "updated_at")


def space_response(row):
    """SpaceResponse (GET /api/v6/spaces/{id}): the model's fields, pydantic datetimes."""
    data = space_to_dict(row)
    for name in ("state_changed_at", "created_at", "updated_at"):
        data[name] = model_time(row[name])
    return {name: data[name] for name in SPACE_MODEL_FIELDS}


def site_to_dict(row, include_stats=False):
    location = row["location"] if isinstance(row["location"], dict) else {}
    result = {"id": str(row["id"]), "tenant_id": str(row["tenant_id"]), "name": row["name"],
              "slug": row["slug"]}
    for name in ("address", "city", "state", "postal_code", "country", "latitude", "longitude"):
        result[name] = location.get(name)
    result.update(timezone=row["timezone"],
                  metadata=row["metadata"] if row["metadata"] is not None else {},
                  created_at=iso(row["created_at"]), updated_at=iso(row["updated_at"]))
    if include_stats:
        for name in ("space_count", "device_count", "gateway_count", "free_spaces", "occupied_spaces"):
            result[name] = row.get(name) or 0
    return result


def reservation_to_dict(row):
    """GET /api/v6/reservations/{id} (a plain dict: Python isoformat)."""
    return {"id": str(row["id"]), "tenant_id": text_id(row["tenant_id"]),
            "space_id": str(row["space_id"]), "space_code": row["space_code"],
            "user_id": text_id(row["user_id"]), "user_email": row["user_email"],
            "user_name": row["user_name"], "start_time": iso(row["start_time"]),
            "end_time": iso(row["end_time"]), "status": row["status"],
            "checked_in": row["checked_in"], "checked_in_at": iso(row["checked_in_at"]),
            "checked_out_at": iso(row["checked_out_at"]), "rate": row["rate"],
            "total_cost": row["total_cost"], "payment_status": row["payment_status"],
            "cancelled_at": iso(row["cancelled_at"]), "cancelled_by": text_id(row["cancelled_by"]),
            "cancellation_reason": row["cancellation_reason"], "notes": row["notes"],
            "metadata": row["metadata"] if row["metadata"] is not None else {},
            "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"])}


RESERVATION_MODEL_TIMES = ("start_time", "end_time", "checked_in_at", "checked_out_at",
                           "cancelled_at", "created_at", "updated_at")


def reservation_response(row):
    """ReservationResponse (list items): no space_code, pydantic datetimes."""
    data = reservation_to_dict(row)
    del data["space_code"]
    for name in RESERVATION_MODEL_TIMES:
        data[name] = model_time(row[name])
    return data


def gateway_to_dict(row, detail=False):
    result = {"id": str(row["id"]), "tenant_id": str(row["tenant_id"]),
              "gateway_id": row["gateway_id"], "name": row["name"], "location": row["location"],
              "last_seen_at": row["last_seen_at"], "created_at": iso(row["created_at"])}
    if detail:
        result["updated_at"] = iso(row["updated_at"])
    return result


def pages(total, page_size):
    return (total + page_size - 1) // page_size


def state_counts(row):
    """The free/occupied/... block V6 builds from a COUNT(*) FILTER row."""
    total, occupied = row["total"] or 0, row["occupied"] or 0
    return {"free": row["free"] or 0, "occupied": occupied, "reserved": row["reserved"] or 0,
            "maintenance": row["maintenance"] or 0, "unknown": row["unknown"] or 0,
            "available": row["free"] or 0,
            "occupancy_rate": round(occupied / total * 100 if total > 0 else 0, 2)}


STATE_COUNTS_SQL = """
    SELECT COUNT(*) AS total,
           COUNT(*) FILTER (WHERE current_state = 'free') AS free,
           COUNT(*) FILTER (WHERE current_state = 'occupied') AS occupied,
           COUNT(*) FILTER (WHERE current_state = 'reserved') AS reserved,
           COUNT(*) FILTER (WHERE current_state = 'maintenance') AS maintenance,
           COUNT(*) FILTER (WHERE current_state = 'unknown') AS unknown
      FROM spaces WHERE tenant_id = %s AND deleted_at IS NULL
"""
# --------------------------------------------------------------------------------------------
# HTTP layer
# --------------------------------------------------------------------------------------------

class TenantContext:
    """The real get_tenant_context_v6 result (the parts the routes use)."""

    def __init__(self, row):
        self.tenant_id, self.user_id = str(row["tenant_id"]), str(row["user_id"])
        self.role = row["role"]
        self.is_platform_admin = is_platform_admin(row["tenant_type"], row["role"])

    @property
    def platform_view(self):
        """is_platform_admin and is_viewing_platform_tenant: the unfiltered routes show all."""
        return self.is_platform_admin and self.tenant_id == PLATFORM_TENANT_ID


TENANT_SQL = """
    SELECT u.id AS user_id, u.email, um.role, um.tenant_id, t.type AS tenant_type
      FROM users u JOIN user_memberships um ON um.user_id = u.id
      JOIN tenants t ON t.id = um.tenant_id
     WHERE u.id = %s AND um.tenant_id = %s AND um.is_active = true
"""
LOGIN_SQL = """
    SELECT u.id, u.email, u.name AS username, u.hashed_password, u.created_at,
           um.tenant_id, um.role, t.name AS tenant_name, t.slug AS tenant_slug, t.type AS tenant_type
      FROM users u JOIN user_memberships um ON um.user_id = u.id
      JOIN tenants t ON t.id = um.tenant_id
     WHERE u.email = %s AND um.is_active = true AND u.is_active = true
     ORDER BY um.created_at DESC
     LIMIT 1
"""
TOKEN_USER_SQL = """
    SELECT u.id, u.email, u.name AS username, u.is_active, u.created_at,
           um.role, um.tenant_id, t.name AS tenant_name, t.slug AS tenant_slug, t.type AS tenant_type
      FROM users u JOIN user_memberships um ON um.user_id = u.id
      JOIN tenants t ON t.id = um.tenant_id
     WHERE u.id = %s AND um.tenant_id = %s AND um.is_active = true
"""
SPACE_SQL = """
    SELECT s.id, s.tenant_id, s.site_id, s.code, s.name, s.display_name, s.current_state,
           s.sensor_state, s.display_state, s.state_changed_at, s.enabled, s.auto_release_minutes,
           s.sensor_device_id, s.display_device_id, s.config, s.created_at, s.updated_at,
           sd.dev_eui AS sensor_dev_eui, sd.name AS sensor_device_name, sd.status AS sensor_status,
           dd.dev_eui AS display_dev_eui, dd.name AS display_device_name,
           dd.status AS display_status
      FROM spaces s
      LEFT JOIN sensor_devices sd ON sd.id = s.sensor_device_id
      LEFT JOIN display_devices dd ON dd.id = s.display_device_id
"""
RESERVATION_SQL = """
    SELECT r.id, r.tenant_id, r.space_id, r.user_id, r.user_email, r.user_name, r.start_time,
           r.end_time, r.status, r.checked_in, r.checked_in_at, r.checked_out_at, r.rate,
           r.total_cost, r.payment_status, r.cancelled_at, r.cancelled_by, r.cancellation_reason,
           r.notes, r.metadata, r.created_at, r.updated_at, s.code AS space_code
      FROM reservations r JOIN spaces s ON s.id = r.space_id
"""
# The V6 table has no location/last_seen_at columns: the gateway import keeps them in config.
GATEWAY_SQL = """
    SELECT id, tenant_id, gateway_id, name, config -> 'chirpstack' -> 'location' AS location,
           config -> 'chirpstack' ->> 'last_seen_at' AS last_seen_at, created_at, updated_at
      FROM gateways
"""


class App:
    """Routes and handlers; holds the configuration, the database and the websocket registry."""

    def __init__(self, db, jwt_secret, webhook_secret=None, access_minutes=60, refresh_days=30,
                 set_context=False, registry=None):
        self.db = db
        self.jwt_secret = jwt_secret
        self.webhook_secret = webhook_secret or ""
        self.access_ttl = int(access_minutes) * 60
        self.refresh_ttl = int(refresh_days) * 86400
        self.set_context = set_context
        self.registry = registry or Registry()
        uid = r"([^/]+)"
        # (method, path regex, handler, needs the tenant context)
        self.routes = [(m, re.compile("^" + p + "$"), f, a) for m, p, f, a in [
            ("GET", r"/health", self.health, False),
            ("POST", r"/api/auth/register", self.register, False),
            ("POST", r"/api/auth/login", self.login, False),
            ("POST", r"/api/auth/refresh", self.refresh, False),
            ("POST", r"/api/auth/logout", self.logout, False),
            ("GET", r"/api/auth/me", self.me, False),
            ("POST", r"/webhooks/chirpstack/uplink", self.uplink, False),
            ("GET", r"/webhooks/health", self.webhooks_health, False),
            ("POST", r"/api/v1/uplink", self.uplink, False),
            ("GET", r"/api/v6/devices", self.list_devices, True),
            ("GET", r"/api/v6/dashboard/data", self.dashboard, True),
            ("GET", r"/api/v6/gateways", self.list_gateways, True),
            ("GET", r"/api/v6/gateways/" + uid, self.get_gateway, True),
            ("GET", r"/api/v6/spaces", self.list_spaces, True),
            ("GET", r"/api/v6/spaces/" + uid, self.get_space, True),
            ("GET", r"/api/v6/spaces/stats/occupancy", self.space_stats, True),
            ("POST", r"/api/v6/reservations/", self.create_reservation, True),
            ("GET", r"/api/v6/reservations", self.list_reservations, True),
            ("GET", r"/api/v6/reservations/" + uid, self.get_reservation, True),
            ("PUT", r"/api/v6/reservations/" + uid + "/cancel", self.cancel_reservation, True),
            ("GET", r"/api/v6/sites", self.list_sites, True),
            ("GET", r"/api/v6/sites/" + uid, self.get_site, True),
        ]]

    # ---- routing (Starlette's: first full match, else 405 for a path match, else slash
    # redirect, else 404) ---------------------------------------------------------------------

    def dispatch(self, request):
        allowed = None
        for method, pattern, func, authed in self.routes:
            match = pattern.match(request.path)
            if not match:
                continue
            if method == request.method:
                if authed:
                    return self._with_tenant(request, func, match.groups())
                return func(request, *match.groups())
            allowed = allowed or method
        if allowed:
            raise HTTPError(405, "Method Not Allowed", [("Allow", allowed)])
        path = request.path
        twin = path[:-1] if path.endswith("/") else path + "/"
        if path != "/" and any(route[1].match(twin) for route in self.routes):
            location = "http://%s%s" % (request.headers.get("Host") or "localhost", twin)
            if request.raw_query:
                location += "?" + request.raw_query
            return 307, None, [("Location", location)]
        raise HTTPError(404, "Not Found")

    def _ctx(self, tenant_id, admin, user_id):
        return (tenant_id, admin, user_id) if self.set_context else None

    def _token_ids(self, request):
        """get_tenant_context_v6 before its query: header, token, sub and tenant_id."""
        header = request.headers.get("Authorization")
        if not header:
            raise HTTPError(401, "Missing authorization header")
        if not header.startswith("Bearer "):
            raise HTTPError(401, "Invalid authorization header format")
        try:
            claims = decode_token(header.split(" ")[1], self.jwt_secret)
            return str(uuid.UUID(claims["sub"])), str(uuid.UUID(claims["tenant_id"]))
        except KeyError as exc:
            raise HTTPError(401, "Authentication failed: %r" % exc.args[0]) from exc
        except (JWTError, TypeError, ValueError, AttributeError) as exc:
            raise HTTPError(401, "Authentication failed: %s" % exc) from exc

    def _with_tenant(self, request, func, groups):
        """Run a tenant route in one transaction, after the tenant-context lookup."""
        user_id, tenant_id = self._token_ids(request)
        with self.db.transaction(self._ctx(tenant_id, False, user_id)) as cur:
            cur.execute(TENANT_SQL, (user_id, tenant_id))
            row = cur.fetchone()
            if row is None:
                raise HTTPError(401, "User or tenant not found")
            tenant = TenantContext(row)
            if self.set_context and tenant.is_platform_admin:
                set_setting(cur, "app.is_platform_admin", "true")
            return func(cur, tenant, request, *groups)

    # ---- health -----------------------------------------------------------------------------

    def health(self, request):
        # Lab fault injection: while this file exists the health check fails, but every other
        # endpoint keeps serving (like a V6 whose dependency went away); tests create it with
        # `docker exec parking-api-v6 touch /tmp/parking-lab-unhealthy`.
        if os.path.exists(FAULT_FILE):
            return 503, {"status": "unhealthy", "version": VERSION, "reason": "lab fault injection"}
        return 200, {"status": "healthy", "version": VERSION}

    def webhooks_health(self, request):
        return 200, {"status": "healthy", "service": "parking-webhooks",
                     "timestamp": utcnow_naive().isoformat()}

    # ---- authentication ---------------------------------------------------------------------

    def _tokens(self, row):
        return {"access_token": make_access_token(row["id"], row["tenant_id"], row["email"],
                                                  row["role"], self.jwt_secret, self.access_ttl),
                "refresh_token": make_refresh_token(row["id"], row["tenant_id"], self.jwt_secret,
                                                    self.refresh_ttl),
                "token_type": "bearer", "expires_in": self.access_ttl, "user": user_dict(row)}

    def login(self, request):
        username, password = parse_login_form(request)
        with self.db.transaction(self._ctx("", False, "")) as cur:
            if self.set_context:  # the one lookup made before the user is known
                set_setting(cur, "app.login_email", username.lower())
                cur.execute("SELECT id FROM users WHERE email = %s", (username,))
                found = cur.fetchone()
                if found is not None:
                    set_setting(cur, "app.current_user_id", str(found["id"]))
            cur.execute(LOGIN_SQL, (username,))
            row = cur.fetchone()
        if row is None or not verify_password(password, row["hashed_password"]):
            raise HTTPError(401, "Incorrect email or password")
        return 200, self._tokens(row)

    def _token_user(self, user_id, tenant_id):
        with self.db.transaction(self._ctx(tenant_id, False, user_id)) as cur:
            cur.execute(TOKEN_USER_SQL, (user_id, tenant_id))
            row = cur.fetchone()
        if row is None:
            raise HTTPError(401, "User not found")
        if not row["is_active"]:
            raise HTTPError(403, "User account is disabled")
        return row

    def _token_subject(self, token, kind, invalid, failure):
        """(user id, tenant id) of a ``kind`` token ('access' / 'refresh'), with the real app's
        answers: 401 ``invalid`` when it does not verify, 401 for another type, 500 ``failure``
        when its ids are not UUIDs."""
        try:
            claims = decode_token(token, self.jwt_secret)
        except JWTError as exc:
            raise HTTPError(401, invalid) from exc
        if claims.get("type") != kind:
            raise HTTPError(401, "Invalid token type")
        try:
            return str(uuid.UUID(claims.get("sub"))), str(uuid.UUID(claims.get("tenant_id")))
        except (TypeError, ValueError, AttributeError) as exc:
            raise HTTPError(500, failure % exc) from exc

    def refresh(self, request):
        fields = Body(json_body(request.body))
        fields.string("refresh_token", required=True)
        ids = self._token_subject(fields.done()["refresh_token"], "refresh", "Invalid or expired refresh token",
                                  "Token refresh failed: %s")
        return 200, self._tokens(self._token_user(*ids))

    def me(self, request):
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            raise HTTPError(401, "Not authenticated")
        ids = self._token_subject(token, "access", "Invalid or expired token", "Failed to get user info: %s")
        return 200, user_dict(self._token_user(*ids))

    def logout(self, request):
        if bearer_token(request.headers.get("Authorization")) is None:
            raise HTTPError(401, "Not authenticated")
        return 200, {"success": True, "message": "Logged out successfully"}

    def register(self, request):
        fields = Body(json_body(request.body))
        fields.email("email")
        fields.string("password", required=True, min_length=8)
        fields.string("username", required=True, min_length=3, max_length=50)
        fields.string("tenant_name", required=True, min_length=3, max_length=255)
        fields.string("tenant_slug", required=True, min_length=3, max_length=100, pattern=SLUG_RE)
        data = fields.done()
        try:
            with self.db.transaction(self._ctx("", False, "")) as cur:
                cur.execute("SELECT id FROM users WHERE email = %s", (data["email"],))
                if cur.fetchone():
                    raise HTTPError(400, "Email already registered")
                cur.execute("SELECT id FROM tenants WHERE slug = %s", (data["tenant_slug"],))
                if cur.fetchone():
                    raise HTTPError(400, "Tenant slug already taken")
                now = utcnow_naive()
                cur.execute("INSERT INTO tenants (name, slug, type, is_active, subscription_tier,"
                            " created_at, updated_at) VALUES (%s, %s, 'customer', true, 'basic', %s,"
                            " %s) RETURNING id", (data["tenant_name"], data["tenant_slug"], now, now))
                tenant_id = cur.fetchone()["id"]
                hashed = bcrypt.hashpw(data["password"].encode(), bcrypt.gensalt(12)).decode()
                cur.execute("INSERT INTO users (email, name, hashed_password, is_active, created_at,"
                            " updated_at) VALUES (%s, %s, %s, true, %s, %s) RETURNING id",
                            (data["email"], data["username"], hashed, now, now))
                user_id = cur.fetchone()["id"]
                cur.execute("INSERT INTO user_memberships (user_id, tenant_id, role, is_active,"
                            " created_at, updated_at) VALUES (%s, %s, 'owner', true, %s, %s)",
                            (user_id, tenant_id, now, now))
                cur.execute(TOKEN_USER_SQL, (user_id, tenant_id))
                row = cur.fetchone()
        except HTTPError:
            raise
        except Exception as exc:
            raise HTTPError(500, "Registration failed: %s" % one_line(exc)) from exc
        return 201, self._tokens(row)

    # ---- devices, dashboard, gateways ---------------------------------------------------------

    def list_devices(self, cur, tenant, request):
        params = Params(request.query)
        status = params.text("status")
        include_stats = params.boolean("include_stats", False)
        page = params.integer("page", 1, ge=1)
        page_size = params.integer("page_size", 20, ge=1, le=100)
        params.done()
        where, args = "WHERE true", []
        if not tenant.platform_view:
            where += " AND sd.tenant_id = %s"
            args.append(tenant.tenant_id)
        if status:
            where += " AND sd.status = %s"
            args.append(status)
        cur.execute("SELECT COUNT(*) AS total FROM sensor_devices sd " + where, args)
        total = cur.fetchone()["total"]
        cur.execute("SELECT sd.id, sd.dev_eui, sd.name, sd.tenant_id, sd.status, sd.lifecycle_state,"
                    " sd.assigned_space_id, sd.assigned_at, sd.last_seen_at, sd.created_at,"
                    " sd.updated_at, sd.device_type, s.code AS space_code FROM sensor_devices sd"
                    " LEFT JOIN spaces s ON sd.assigned_space_id = s.id " + where +
                    " ORDER BY sd.created_at DESC, sd.id LIMIT %s OFFSET %s",
                    args + [page_size, (page - 1) * page_size])
        response = {"items": [device_to_dict(r) for r in cur.fetchall()], "total": total,
                    "page": page, "page_size": page_size, "pages": pages(total, page_size)}
        if include_stats:
            cur.execute("SELECT COUNT(*) AS total,"
                        " COUNT(*) FILTER (WHERE status = 'assigned') AS assigned,"
                        " COUNT(*) FILTER (WHERE status = 'unassigned') AS unassigned,"
                        " COUNT(*) FILTER (WHERE status = 'active') AS active,"
                        " COUNT(*) FILTER (WHERE status = 'inactive') AS inactive"
                        " FROM sensor_devices WHERE tenant_id = %s", (tenant.tenant_id,))
            response["stats"] = dict(cur.fetchone())
        return 200, response

    def dashboard(self, cur, tenant, request):
        cur.execute("SELECT COUNT(*) AS total,"
                    " COUNT(*) FILTER (WHERE status = 'assigned') AS assigned,"
                    " COUNT(*) FILTER (WHERE status = 'unassigned') AS unassigned,"
                    " COUNT(*) FILTER (WHERE status != 'assigned') AS inactive"
                    " FROM sensor_devices WHERE tenant_id = %s", (tenant.tenant_id,))
        sensors = cur.fetchone()
        cur.execute("SELECT COUNT(*) AS total,"
                    " COUNT(*) FILTER (WHERE status = 'assigned') AS assigned,"
                    " COUNT(*) FILTER (WHERE status = 'unassigned') AS unassigned"
                    " FROM display_devices WHERE tenant_id = %s", (tenant.tenant_id,))
        displays = cur.fetchone()
        cur.execute(STATE_COUNTS_SQL, (tenant.tenant_id,))
        counts = cur.fetchone()
        cur.execute("SELECT r.created_at, r.user_name, s.code, r.status FROM reservations r"
                    " JOIN spaces s ON s.id = r.space_id WHERE r.tenant_id = %s"
                    " ORDER BY r.created_at DESC LIMIT 10", (tenant.tenant_id,))
        activity = [{"type": "reservation", "timestamp": iso(r["created_at"]),
                     "user": r["user_name"], "space": r["code"], "status": r["status"]}
                    for r in cur.fetchall()]
        cur.execute("SELECT COUNT(*) AS n FROM downlink_queue"
                    " WHERE tenant_id = %s AND status IN ('queued', 'pending')", (tenant.tenant_id,))
        pending = cur.fetchone()["n"]
        return 200, {
            "devices": {
                "sensors": {"total": sensors["total"], "assigned": sensors["assigned"],
                            "unassigned": sensors["unassigned"], "active": sensors["assigned"],
                            "inactive": sensors["inactive"]},
                "displays": dict(displays),
                "total_devices": sensors["total"] + displays["total"]},
            "gateways": {"total": 0, "online": 0, "offline": 0},   # V6 returns this constant
            "spaces": dict({"total": counts["total"]}, **state_counts(counts)),
            "recent_activity": activity,
            "system_health": {"status": "healthy", "database": "ok", "pending_commands": pending},
            "generated_at": utcnow_naive().isoformat()}

    def list_gateways(self, cur, tenant, request):
        params = Params(request.query)
        include_offline = params.boolean("include_offline", True)
        site_id = params.uuid("site_id")
        params.done()
        where, args = " WHERE true", []
        if not tenant.platform_view:
            where += " AND tenant_id = %s"
            args.append(tenant.tenant_id)
        if not include_offline:
            where += " AND status = 'online'"
        if site_id:
            where += " AND site_id = %s"
            args.append(site_id)
        cur.execute(GATEWAY_SQL + where + " ORDER BY name, id", args)
        gateways = [gateway_to_dict(r) for r in cur.fetchall()]
        return 200, {"gateways": gateways, "count": len(gateways), "tenant_scope": tenant.tenant_id}

    def get_gateway(self, cur, tenant, request, gateway_id):
        params = Params()
        gateway_id = params.uuid("gateway_id", gateway_id, where="path")
        params.done()
        cur.execute(GATEWAY_SQL + " WHERE id = %s AND tenant_id = %s", (gateway_id, tenant.tenant_id))
        row = cur.fetchone()
        if row is None:
            raise HTTPError(404, "Gateway not found")
        return 200, gateway_to_dict(row, detail=True)

    # ---- spaces and sites ---------------------------------------------------------------------

    def list_spaces(self, cur, tenant, request):
        params = Params(request.query)
        site_id = params.uuid("site_id")
        current_state = params.text("current_state")
        include_devices = params.boolean("include_devices", False)
        page = params.integer("page", 1, ge=1)
        page_size = params.integer("page_size", 100, ge=1, le=500)
        params.done()
        where, args = " WHERE s.tenant_id = %s", [tenant.tenant_id]   # V6: no deleted_at filter
        if site_id:
            where += " AND s.site_id = %s"
            args.append(site_id)
        if current_state:
            where += " AND s.current_state = %s"
            args.append(current_state)
        cur.execute("SELECT COUNT(*) AS total FROM spaces s" + where, args)
        total = cur.fetchone()["total"]
        cur.execute(SPACE_SQL + where + " ORDER BY s.code, s.id LIMIT %s OFFSET %s",
                    args + [page_size, (page - 1) * page_size])
        return 200, {"spaces": [space_to_dict(r, include_devices) for r in cur.fetchall()],
                     "total": total, "page": page, "page_size": page_size,
                     "total_pages": pages(total, page_size), "tenant_id": tenant.tenant_id}

    def get_space(self, cur, tenant, request, space_id):
        params = Params()
        space_id = params.uuid("space_id", space_id, where="path")
        params.done()
        cur.execute(SPACE_SQL + " WHERE s.id = %s AND s.tenant_id = %s", (space_id, tenant.tenant_id))
        row = cur.fetchone()
        if row is None:
            raise HTTPError(404, "Space %s not found" % space_id)
        return 200, space_response(row)

    def space_stats(self, cur, tenant, request):
        params = Params(request.query)
        site_id = params.uuid("site_id")
        params.done()
        sql, args = STATE_COUNTS_SQL, [tenant.tenant_id]
        if site_id:
            sql, args = sql + " AND site_id = %s", args + [site_id]
        cur.execute(sql, args)
        counts = cur.fetchone()
        return 200, dict({"total_spaces": counts["total"]}, **state_counts(counts),
                         site_id=site_id, tenant_id=tenant.tenant_id)

    SITE_STATS = """
        (SELECT COUNT(*) FROM spaces WHERE site_id = s.id AND deleted_at IS NULL) AS space_count,
        (SELECT COUNT(*) FROM sensor_devices sd WHERE sd.assigned_space_id IN
            (SELECT id FROM spaces WHERE site_id = s.id)) AS device_count
    """

    def list_sites(self, cur, tenant, request):
        params = Params(request.query)
        include_stats = params.boolean("include_stats", False)
        page = params.integer("page", 1, ge=1)
        page_size = params.integer("page_size", 100, ge=1, le=500)
        params.done()
        cur.execute("SELECT COUNT(*) AS total FROM sites WHERE tenant_id = %s", (tenant.tenant_id,))
        total = cur.fetchone()["total"]
        stats = ", " + self.SITE_STATS if include_stats else ""
        cur.execute("SELECT s.*" + stats + " FROM sites s WHERE s.tenant_id = %s"
                    " ORDER BY s.name, s.id LIMIT %s OFFSET %s",
                    (tenant.tenant_id, page_size, (page - 1) * page_size))
        return 200, {"sites": [site_to_dict(r, include_stats) for r in cur.fetchall()],
                     "total": total, "page": page, "page_size": page_size,
                     "total_pages": pages(total, page_size), "tenant_id": tenant.tenant_id}

    def get_site(self, cur, tenant, request, site_id):
        params = Params()
        site_id = params.uuid("site_id", site_id, where="path")
        params.done()
        cur.execute("""
            SELECT s.*,
                (SELECT COUNT(*) FROM spaces WHERE site_id = s.id AND deleted_at IS NULL) AS space_count,
                (SELECT COUNT(*) FROM spaces WHERE site_id = s.id AND deleted_at IS NULL
                    AND current_state = 'free') AS free_spaces,
                (SELECT COUNT(*) FROM spaces WHERE site_id = s.id AND deleted_at IS NULL
                    AND current_state = 'occupied') AS occupied_spaces,
                (SELECT COUNT(*) FROM gateways WHERE site_id = s.id) AS gateway_count
              FROM sites s WHERE s.id = %s AND s.tenant_id = %s""", (site_id, tenant.tenant_id))
        row = cur.fetchone()
        if row is None:
            raise HTTPError(404, "Site %s not found" % site_id)
        return 200, site_to_dict(row, include_stats=True)

    # ---- reservations ---------------------------------------------------------------------------

    def list_reservations(self, cur, tenant, request):
        params = Params(request.query)
        space_id = params.uuid("space_id")
        status = params.text("status")
        start_date = params.datetime("start_date")
        end_date = params.datetime("end_date")
        page = params.integer("page", 1, ge=1)
        page_size = params.integer("page_size", 50, ge=1, le=200)
        params.done()
        where, args = " WHERE r.tenant_id = %s", [tenant.tenant_id]
        for value, clause in ((space_id, " AND r.space_id = %s"), (status, " AND r.status = %s"),
                              (start_date, " AND r.end_time >= %s"),
                              (end_date, " AND r.start_time <= %s")):
            if value:
                where += clause
                args.append(value)
        cur.execute("SELECT COUNT(*) AS total FROM reservations r JOIN spaces s ON s.id = r.space_id"
                    + where, args)
        total = cur.fetchone()["total"]
        cur.execute(RESERVATION_SQL + where + " ORDER BY r.start_time DESC, r.id LIMIT %s OFFSET %s",
                    args + [page_size, (page - 1) * page_size])
        return 200, {"reservations": [reservation_response(r) for r in cur.fetchall()],
                     "total": total, "page": page, "page_size": page_size}

    def get_reservation(self, cur, tenant, request, reservation_id):
        params = Params()
        reservation_id = params.uuid("reservation_id", reservation_id, where="path")
        params.done()
        cur.execute(RESERVATION_SQL + " WHERE r.id = %s AND r.tenant_id = %s",
                    (reservation_id, tenant.tenant_id))
        row = cur.fetchone()
        if row is None:
            raise HTTPError(404, "Reservation %s not found" % reservation_id)
        return 200, reservation_to_dict(row)

    def create_reservation(self, cur, tenant, request):
        data = parse_reservation(request.body)
        start, end, request_id = data["start_time"], data["end_time"], data["request_id"]
        if as_utc(start) < utc_now():
            raise HTTPError(400, "Cannot create reservation in the past")
        if request_id:
            # serialises concurrent requests with the same idempotency key
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (tenant.tenant_id + request_id,))
            cur.execute("SELECT id, space_id, start_time, end_time, status FROM reservations"
                        " WHERE tenant_id = %s AND metadata->>'request_id' = %s",
                        (tenant.tenant_id, request_id))
            existing = cur.fetchone()
            if existing is not None:
                return 201, {"id": str(existing["id"]), "space_id": str(existing["space_id"]),
                             "start_time": iso(existing["start_time"]),
                             "end_time": iso(existing["end_time"]), "status": existing["status"],
                             "is_duplicate": True,
                             "message": "Reservation already exists (idempotent request)"}
        # The row lock serialises the overlap check of concurrent requests for the same space.
        cur.execute("SELECT id, code, current_state, enabled FROM spaces"
                    " WHERE id = %s AND tenant_id = %s FOR UPDATE", (data["space_id"], tenant.tenant_id))
        space = cur.fetchone()
        if space is None:
            raise HTTPError(400, "Space %s not found or does not belong to your tenant"
                            % data["space_id"])
        if not space["enabled"]:
            raise HTTPError(400, "Space %s is not enabled for reservations" % space["code"])
        cur.execute("SELECT COUNT(*) AS n FROM reservations WHERE space_id = %s AND tenant_id = %s"
                    " AND status = 'active' AND start_time < %s AND end_time > %s",
                    (data["space_id"], tenant.tenant_id, end, start))
        conflicts = cur.fetchone()["n"]
        if conflicts:
            raise HTTPError(400, "Space is not available during the requested time. Conflicts: %d"
                            % conflicts)
        metadata = data["metadata"]
        if request_id:
            metadata["request_id"] = request_id
        now = utcnow_naive()
        try:
            cur.execute("INSERT INTO reservations (tenant_id, space_id, user_id, user_email,"
                        " user_name, start_time, end_time, status, notes, metadata, checked_in,"
                        " payment_status, created_at, updated_at)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, 'active', %s, %s, false, 'pending',"
                        " %s, %s) RETURNING id",
                        (tenant.tenant_id, data["space_id"], tenant.user_id, data["user_email"],
                         data["user_name"], start, end, data["notes"], json.dumps(metadata), now, now))
        except (psycopg2.errors.CheckViolation, psycopg2.errors.StringDataRightTruncation) as exc:
            raise HTTPError(400, "Invalid reservation: %s" % one_line(exc.pgerror or exc)) from exc
        reservation_id = str(cur.fetchone()["id"])
        if as_utc(start) <= utc_now() + RESERVE_AHEAD:
            cur.execute("UPDATE spaces SET current_state = 'reserved', state_changed_at = %s,"
                        " updated_at = %s WHERE id = %s"
                        " AND current_state NOT IN ('occupied', 'maintenance')",
                        (now, now, data["space_id"]))
        return 201, {"id": reservation_id, "space_id": data["space_id"], "space_code": space["code"],
                     "start_time": start.isoformat(), "end_time": end.isoformat(),
                     "status": "active", "is_duplicate": False,
                     "message": "Reservation created successfully"}

    def cancel_reservation(self, cur, tenant, request, reservation_id):
        params = Params()
        reservation_id = params.uuid("reservation_id", reservation_id, where="path")
        params.done()
        data = json_body(request.body, optional=True)
        reason = None
        if data is not None:
            fields = Body(data)
            fields.string("cancellation_reason", max_length=500)
            reason = fields.done()["cancellation_reason"]
        cur.execute("SELECT id, space_id, status FROM reservations WHERE id = %s AND tenant_id = %s"
                    " FOR UPDATE", (reservation_id, tenant.tenant_id))
        row = cur.fetchone()
        if row is None:
            raise HTTPError(400, "Reservation %s not found" % reservation_id)
        if row["status"] != "active":
            raise HTTPError(400, "Cannot cancel reservation with status: %s" % row["status"])
        now = utcnow_naive()
        cur.execute("UPDATE reservations SET status = 'cancelled', cancelled_at = %s,"
                    " cancelled_by = %s, cancellation_reason = %s, updated_at = %s WHERE id = %s",
                    (now, tenant.user_id, reason, now, reservation_id))
        cur.execute("UPDATE spaces SET current_state = 'free', state_changed_at = %s,"
                    " updated_at = %s WHERE id = %s AND current_state = 'reserved'",
                    (now, now, row["space_id"]))
        return 200, {"success": True, "reservation_id": reservation_id,
                     "message": "Reservation cancelled successfully"}

    # ---- ChirpStack receiver ----------------------------------------------------------------

    def uplink(self, request):
        """ChirpStack HTTP integration receiver; the ``event`` query parameter is ignored."""
        try:
            json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPError(400, "Invalid JSON: %s" % exc) from exc
        signature = request.headers.get("X-Signature")
        if signature and not verify_signature(self.webhook_secret, request.body, signature):
            raise HTTPError(401, "Invalid signature")
        try:
            up = parse_uplink(request.body)
        except BadRequest as exc:
            raise HTTPError(400, str(exc)) from exc

        def work():
            with self.db.transaction(self._ctx("", True, "")) as cur:  # system context
                return process_uplink(cur, up)

        result, change = svc.run_uplink(LOG, up, work)
        if change is not None:  # after the commit
            self.registry.broadcast(change[0], "spaces", space_update_message(change[1]))
        return 200, result

    # ---- websocket --------------------------------------------------------------------------

    def ws_identity(self, query):
        """(user_id, tenant_id) of ``?token=`` as V6 reads them; JWTError(close reason)."""
        token = (query.get("token") or [""])[-1]
        if not token:
            raise JWTError("Field required: token")
        try:
            claims = decode_token(token, self.jwt_secret)
        except JWTError as exc:
            raise JWTError("Authentication failed") from exc
        user_id, tenant_id = claims.get("sub"), claims.get("tenant_id")
        if not user_id or not tenant_id:
            raise JWTError("Invalid token payload")
        return str(user_id), str(tenant_id)

    def ws_session(self, conn):
        self.registry.add(conn)
        try:
            conn.send_json({"type": "connected", "message": "WebSocket connection established",
                            "tenant_id": conn.tenant_id, "timestamp": utcnow_naive().isoformat()})

            def on_text(text):
                reply, action, channel = ws_reply(text)
                if action == "close":
                    return False
                if action == "subscribe":
                    conn.channels.add(channel)
                elif action == "unsubscribe":
                    conn.channels.discard(channel)
                conn.send_json(reply)
                return True

            conn.serve(on_text)
        finally:
            self.registry.remove(conn)


class Handler(svc.JSONHandler):
    server_version = "parking-api-v6-lab/" + VERSION
    timeout = WS_IDLE_SECONDS  # request read timeout; websocket idle-ping interval
    disable_nagle_algorithm = True  # small websocket frames must not wait for delayed ACKs
    log = LOG
    app = None  # set in main()

    def _handle(self):
        started = time.monotonic()
        split = urlsplit(self.path)
        if self.command == "GET" and split.path == "/ws":
            return self._websocket(split, started)
        return self._serve_json(split, started)

    def _websocket(self, split, started):
        """RFC 6455 upgrade; the thread then serves the socket until it closes."""
        self.close_connection = True
        upgrade = (self.headers.get("Upgrade") or "").lower()
        connection = [t.strip().lower() for t in (self.headers.get("Connection") or "").split(",")]
        key = (self.headers.get("Sec-WebSocket-Key") or "").strip()
        if upgrade != "websocket" or "upgrade" not in connection:
            self._send_json(426, {"detail": "websocket upgrade required"},
                            [("Upgrade", "websocket"), ("Connection", "Upgrade")])
            return self._access(split.path, 426, started)
        if (self.headers.get("Sec-WebSocket-Version") or "").strip() != "13":
            self._send_json(426, {"detail": "unsupported websocket version"},
                            [("Sec-WebSocket-Version", "13")])
            return self._access(split.path, 426, started)
        try:
            if len(base64.b64decode(key, validate=True)) != 16:
                raise ValueError(key)
        except (binascii.Error, ValueError):
            self._send_json(400, {"detail": "bad Sec-WebSocket-Key"})
            return self._access(split.path, 400, started)
        try:
            identity, error = self.app.ws_identity(parse_qs(split.query)), None
        except JWTError as exc:
            identity, error = None, str(exc)
        if identity is None:
            # the real V6 closes (1008) before accepting; uvicorn answers such a handshake 403
            LOG.info("websocket rejected: %s", error)
            try:
                self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                self.wfile.flush()
            except OSError:
                pass
            return self._access(split.path, 403, started)
        try:
            self.wfile.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                              % ws_accept_key(key)).encode("ascii"))
            self.wfile.flush()
        except OSError:
            return self._access(split.path, 499, started)
        self._access(split.path, 101, started)
        sock = self.connection
        conn = WebSocketConnection(sock, *identity, pending=self._buffered_input())
        self.app.ws_session(conn)
        LOG.info("websocket closed: tenant %s, %.1fs, %d frames in, %d out", conn.tenant_id,
                 time.monotonic() - started, conn.received, conn.sent)
        return None

    def _buffered_input(self):
        """Bytes a client sent right behind its handshake (already read into rfile's buffer)."""
        timeout = self.connection.gettimeout()
        self.connection.setblocking(False)
        try:
            return self.rfile.read1(65536) or b""
        except OSError:
            return b""
        finally:
            self.connection.settimeout(timeout)




def env_flag(name):
    return (os.environ.get(name) or "").strip().lower() in ("1", "true", "yes", "on")


def env_int(name, default, minimum):
    """int(os.environ[name]) (default when unset); None (after logging why) when invalid."""
    try:
        value = int(os.environ.get(name) or default)
    except ValueError:
        value = None
    if value is None or value < minimum:
        LOG.error("%s must be an integer >= %d", name, minimum)
        return None
    return value


def main():
    svc.configure_logging()
    secret = svc.env_jwt_secret(LOG)
    dsn = svc.env_database_url(LOG)
    algorithm = os.environ.get("JWT_ALGORITHM", "HS256") or "HS256"
    if algorithm.upper() != "HS256":
        LOG.error("JWT_ALGORITHM %s is not supported (HS256 only)", algorithm)
        return 2
    access_minutes = env_int("ACCESS_TOKEN_EXPIRE_MINUTES", 60, 1)
    refresh_days = env_int("REFRESH_TOKEN_EXPIRE_DAYS", 30, 1)
    retention_days = env_int("LAB_RETENTION_DAYS", 90, 0)
    if None in (secret, dsn, access_minutes, refresh_days, retention_days):
        return 2
    set_context = env_flag("LAB_SET_TENANT_CONTEXT")
    webhook_secret = os.environ.get("CHIRPSTACK_WEBHOOK_SECRET") or ""

    db = Database(dsn)
    try:
        with db.transaction() as cur:
            cur.execute("SELECT current_user AS role")
            LOG.info("database reachable as %s", cur.fetchone()["role"])
    except Exception as exc:
        LOG.warning("database not reachable yet (%s)", one_line(exc))

    app = App(db, secret, webhook_secret, access_minutes, refresh_days, set_context)
    Handler.app = app
    server, port = svc.make_server(Handler)
    jobs = Jobs(db, app._ctx("", True, ""), retention_days)
    jobs.start()

    def before_shutdown():
        jobs.stop.set()
        closed = app.registry.close_all()
        if closed:
            LOG.info("closing %d websocket(s)", closed)

    svc.stop_on_signals(server, LOG, before_shutdown)
    LOG.info("V6 API stand-in %s listening on port %d (tenant context %s, webhook secret %s,"
             " retention %d days)", VERSION, port, "set" if set_context else "not set",
             "configured" if webhook_secret else "not configured", retention_days)
    server.serve_forever(poll_interval=0.2)
    app.registry.close_all()  # clients that connected during shutdown
    server.server_close()     # waits for in-flight requests and websocket threads
    db.close()
    LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
