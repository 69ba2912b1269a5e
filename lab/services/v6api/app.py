#!/usr/bin/env python3
"""V6 API stand-in for the lab (plays ``parking-api-v6``, port 8000).

The real V6 image cannot be pulled in the lab. This service serves the same paths as the V5
stand-in (``lab/services/v5api/app.py``), so Traefik can move the ``api`` host from V5 to V6
without clients noticing, and it writes the V6 tables the way V6 does (v6-schema.md):

* ``GET /health`` (200, no dependency check, as V6), ``GET /health/ready`` (200/503, DB query),
  ``GET /webhooks/health``.
* ``POST /api/v1/auth/login`` (also ``/api/v6/auth/login``) -> HS256 JWT (sub, user_id,
  tenant_id, role, is_platform_admin, iat, exp). users -> user_memberships -> tenants, all active.
* ``GET /api/v1/spaces|devices|reservations``, ``POST /api/v1/reservations``,
  ``POST /api/v1/reservations/{id}/cancel``: tenant isolation is left to PostgreSQL row-level
  security. Every transaction sets ``app.current_tenant_id`` / ``app.is_platform_admin`` with
  ``set_config(..., true)`` (= SET LOCAL); no query filters on tenant_id, so a broken policy
  shows up as a leak instead of being hidden.
* ``POST /api/v1/uplink`` (V5-compatible ChirpStack HTTP integration target) and
  ``POST /webhooks/chirpstack/uplink``: sensor_readings, last_seen_at, space sensor/current state,
  orphan_devices; ``data`` is decoded as base64 (real V6 wrongly read it as hex).
* ``GET /ws?token=<JWT>``: RFC 6455 websocket (standard library only), channels spaces, devices,
  alerts, metrics; uplinks push ``space_update`` to the ``spaces`` subscribers of the tenant.

It must connect as a non-owner, non-BYPASSRLS role (phase 1 creates ``parking_v6_app`` and the
``parking_migrate_tenant_isolation`` policies); as the owner ``parking_user`` it would see every
tenant.

Standard library plus the Debian packages python3-psycopg2 and python3-bcrypt only.

Environment: DATABASE_URL, JWT_SECRET_KEY (>= 32 chars), JWT_ALGORITHM (HS256),
ACCESS_TOKEN_EXPIRE_MINUTES (60), CHIRPSTACK_WEBHOOK_SECRET (optional: X-Signature required on
uplinks), PLATFORM_TENANT_ID (all-zero UUID), PORT (8000), LOG_LEVEL (INFO),
BIND (0.0.0.0; 127.0.0.1 for local runs).
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
    import psycopg2
    import psycopg2.errors
except ImportError:  # pragma: no cover - only in environments without the drivers
    psycopg2 = None

VERSION = "6.0.0-lab"
FAULT_FILE = os.environ.get("LAB_FAULT_FILE", "/tmp/parking-lab-unhealthy")
LOG = logging.getLogger("v6api")

DEFAULT_PLATFORM_TENANT_ID = "00000000-0000-0000-0000-000000000000"
DEFAULT_TOKEN_MINUTES = 60        # V6 root compose: ACCESS_TOKEN_EXPIRE_MINUTES=60
EUI_RE = re.compile(r"^[0-9A-F]{16}$")
INT4_MAX = 2**31 - 1
MAX_RESERVATION = dt.timedelta(hours=24)   # reservations CHECK valid_duration

# V6 role ranks (backend/src/core/tenant_context_v6.py); login picks the highest, then tenant name.
ROLE_RANK = {"viewer": 1, "operator": 2, "admin": 3, "owner": 4}
PLATFORM_ADMIN_ROLES = ("owner", "admin")
# current_state values a sensor may overwrite; reserved/maintenance are operator decisions.
SENSOR_OVERRIDABLE = ("free", "occupied", "unknown")

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_CHANNELS = ("spaces", "devices", "alerts", "metrics")
WS_MAX_MESSAGE = 64 * 1024        # client messages are tiny JSON commands
WS_IDLE_SECONDS = 30              # no frame for this long -> server ping
WS_QUEUE_MAX = 1000               # outbound frames per client before it is dropped as too slow
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def utc_now():
    return dt.datetime.now(dt.timezone.utc)


def naive_utc(value):
    """V6's own columns are ``timestamp without time zone`` holding UTC (datetime.utcnow())."""
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None)


def is_uuid(value):
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------
# JWT (HS256): encode/decode/verify_password are in common/svc.py (shared with V5)
# --------------------------------------------------------------------------------------------

def make_access_token(user_id, tenant_id, role, is_platform_admin, secret, ttl_seconds, now=None):
    issued = int(time.time() if now is None else now)
    claims = {"sub": str(user_id), "user_id": str(user_id), "tenant_id": str(tenant_id),
              "role": role, "is_platform_admin": bool(is_platform_admin),
              "iat": issued, "exp": issued + int(ttl_seconds)}
    return jwt_encode(claims, secret)


def token_identity(claims):
    """(user_id, tenant_id, is_platform_admin) of verified claims; JWTError when unusable.
    V6 closes a websocket with 1008 on a missing sub or tenant_id; the REST API answers 401."""
    user_id = claims.get("sub") or claims.get("user_id")
    tenant_id = claims.get("tenant_id")
    if not user_id or not tenant_id or not is_uuid(user_id) or not is_uuid(tenant_id):
        raise JWTError("token lacks a valid sub/tenant_id")
    return str(user_id), str(tenant_id), claims.get("is_platform_admin") is True


def pick_membership(rows, wanted_tenant=None):
    """V6 login: the active membership with the highest role rank, then by tenant name.
    ``wanted_tenant`` (id or slug, lab addition) selects one membership explicitly."""
    if wanted_tenant:
        rows = [r for r in rows if wanted_tenant in (str(r["tenant_id"]), r.get("slug"))]
    ranked = sorted(rows, key=lambda r: (-ROLE_RANK.get(r["role"], 0), r["name"] or "",
                                         str(r["tenant_id"])))
    return ranked[0] if ranked else None


def is_platform_admin(rows):
    """Derived, not stored: owner/admin membership in a tenant of type 'platform'."""
    return any(r["type"] == "platform" and r["role"] in PLATFORM_ADMIN_ROLES for r in rows)


def verify_signature(secret, body, header):
    """``X-Signature`` = hex HMAC-SHA256 of the raw body (``sha256=`` prefix tolerated)."""
    if not header:
        return False
    given = header.strip().lower()
    if given.startswith("sha256="):
        given = given[len("sha256="):]
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(given.encode("ascii", "replace"), expected.encode("ascii"))


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
        raise BadRequest("malformed JSON") from exc
    if not isinstance(event, dict):
        raise BadRequest("event must be a JSON object")
    device_info = event.get("deviceInfo")
    dev_eui = device_info.get("devEui") if isinstance(device_info, dict) else None
    if not isinstance(dev_eui, str) or not dev_eui.strip():
        raise BadRequest("Missing devEui in uplink")
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
    dedup_id = event.get("deduplicationId")
    return {
        "dev_eui": dev_eui,
        "fcnt": fcnt,
        "payload": payload,
        "occupied": decode_occupancy(payload),
        "time": parse_event_time(event.get("time")),
        "rssi": svc.number(first_rx.get("rssi"), float),
        "snr": svc.number(first_rx.get("snr"), float),
        "deduplication_id": dedup_id if isinstance(dedup_id, str) and dedup_id else None,
        "raw": text,
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


def ws_reply(message, channels=WS_CHANNELS):
    """Answer one client JSON command (V6 routers/websocket.py protocol). Returns
    (reply dict, channel to add, channel to remove)."""
    try:
        command = json.loads(message)
    except (ValueError, UnicodeDecodeError):
        return {"type": "error", "message": "invalid JSON"}, None, None
    if not isinstance(command, dict):
        return {"type": "error", "message": "JSON object expected"}, None, None
    kind, channel = command.get("type"), command.get("channel")
    if kind == "ping":
        return {"type": "pong", "timestamp": utc_now().isoformat()}, None, None
    if kind in ("subscribe", "unsubscribe"):
        if channel not in channels:
            return {"type": "error", "message": "unknown channel %r" % (channel,),
                    "channels": list(channels)}, None, None
        if kind == "subscribe":
            return {"type": "subscribed", "channel": channel}, channel, None
        return {"type": "unsubscribed", "channel": channel}, None, channel
    return {"type": "error", "message": "unknown message type %r" % (kind,)}, None, None


# --------------------------------------------------------------------------------------------
# WebSocket connections and the per-tenant registry
# --------------------------------------------------------------------------------------------

class WebSocketConnection:
    """One upgraded socket. The handler thread reads (``serve``); a writer thread sends the
    queued frames, so a slow client never blocks an uplink broadcast."""

    def __init__(self, sock, user_id, tenant_id, sees_all, pending=b""):
        self.sock = sock
        self.user_id, self.tenant_id, self.sees_all = user_id, tenant_id, sees_all
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
        """Read until close/EOF; ``on_text(str)`` handles each complete text message."""
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
                if opcode == OP_BINARY:
                    self.send_json({"type": "error", "message": "binary frames are not supported"})
                    continue
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise WebSocketError(1007, "invalid UTF-8") from exc
                on_text(text)
        except WebSocketError as exc:
            self.close(exc.code, exc.reason)
        finally:
            self.close()
            self._writer.join(timeout=5)
            self.abort()


class Registry:
    """Thread-safe set of live websocket connections, per tenant."""

    def __init__(self):
        self._lock = threading.Lock()
        self._by_tenant = collections.defaultdict(set)
        self._all_tenants = set()   # platform admins viewing the platform tenant

    def add(self, conn):
        with self._lock:
            (self._all_tenants if conn.sees_all else self._by_tenant[conn.tenant_id]).add(conn)

    def remove(self, conn):
        with self._lock:
            self._all_tenants.discard(conn)
            conns = self._by_tenant.get(conn.tenant_id)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del self._by_tenant[conn.tenant_id]

    def count(self):
        with self._lock:
            return len(self._all_tenants) + sum(len(c) for c in self._by_tenant.values())

    def broadcast(self, tenant_id, channel, message):
        """Queue ``message`` for every subscriber of ``channel`` that may see ``tenant_id``."""
        with self._lock:
            targets = [c for c in list(self._by_tenant.get(str(tenant_id), ())) + list(self._all_tenants)
                       if channel in c.channels]
        if not targets:
            return 0
        frame = encode_frame(OP_TEXT, json.dumps(message, default=json_default))
        return sum(1 for conn in targets if conn.send_frame(frame))

    def close_all(self, code=1001, reason="server shutting down"):
        with self._lock:
            conns = list(self._all_tenants) + [c for s in self._by_tenant.values() for c in s]
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

    def transaction(self, tenant_id=None, platform_admin=False):
        """``with db.transaction(tenant, admin) as cur:`` -> one transaction whose first
        statement sets the RLS context with set_config(..., true), i.e. SET LOCAL; it doubles
        as the liveness check of the pooled connection."""
        context = (str(tenant_id) if tenant_id else "", "true" if platform_admin else "false")
        return svc.Transaction(self, SET_CONTEXT, context)


SET_CONTEXT = ("SELECT set_config('app.current_tenant_id', %s, true),"
               " set_config('app.is_platform_admin', %s, true)")


# --------------------------------------------------------------------------------------------
# Uplink processing (one transaction per uplink, system context)
# --------------------------------------------------------------------------------------------

# Locks the device row: uplinks of one device are serialised, so the (dev_eui, fcnt) check
# below cannot race with a concurrent copy of the same uplink.
TOUCH_SENSOR = """
    UPDATE sensor_devices SET last_seen_at = %s WHERE dev_eui = %s
    RETURNING id, tenant_id, assigned_space_id
"""
TOUCH_DISPLAY = """
    UPDATE display_devices SET last_seen_at = %s WHERE dev_eui = %s RETURNING id
"""
# sensor_readings has no unique key (v6-schema.md §8.2): de-duplication is done here.
# device_id first: idx_sensor_readings_device is the only usable index.
READING_EXISTS = ("SELECT 1 FROM sensor_readings"
                  " WHERE device_id = %s AND dev_eui = %s AND fcnt = %s LIMIT 1")
INSERT_READING = """
    INSERT INTO sensor_readings
        (tenant_id, device_id, dev_eui, fcnt, occupied, rssi, snr, raw_payload, received_at, created_at)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    RETURNING id
"""
LOCK_SPACE = """
    SELECT id, code, tenant_id, current_state, sensor_state FROM spaces
     WHERE id = %s AND deleted_at IS NULL FOR UPDATE
"""
UPDATE_SPACE = """
    UPDATE spaces SET sensor_state = %s, current_state = %s,
           state_changed_at = CASE WHEN %s THEN %s ELSE state_changed_at END
     WHERE id = %s
"""
UPSERT_ORPHAN = """
    INSERT INTO orphan_devices (dev_eui, first_seen, last_seen, message_count, last_payload, created_at)
    VALUES (%s, %s, %s, 1, %s, %s)
    ON CONFLICT (dev_eui) DO UPDATE SET
        last_seen = EXCLUDED.last_seen,
        message_count = COALESCE(orphan_devices.message_count, 0) + 1,
        last_payload = EXCLUDED.last_payload
    RETURNING message_count
"""


def process_uplink(cur, up, now=None):
    """Write what V6 writes for one uplink. Returns (response body, websocket message|None);
    the caller broadcasts the message after the commit."""
    eui = up["dev_eui"]
    now = naive_utc(now or utc_now())
    received_at = naive_utc(up["time"]) if up["time"] else now
    result = {"dev_eui": eui, "fcnt": up["fcnt"]}

    cur.execute(TOUCH_SENSOR, (now, eui))
    device = cur.fetchone()
    if device is None:
        # Lab fix: a display's status frame is not an orphan (real V6 consults sensor_devices only).
        cur.execute(TOUCH_DISPLAY, (now, eui))
        if cur.fetchone() is not None:
            result.update(status="processed", device_kind="display", reading_stored=False)
            return result, None
        cur.execute(UPSERT_ORPHAN, (eui, now, now, up["raw"], now))
        result.update(status="orphan", message_count=cur.fetchone()["message_count"])
        return result, None

    result.update(status="processed", device_kind="sensor", device_id=device["id"],
                  tenant_id=device["tenant_id"], occupied=up["occupied"], reading_stored=False)
    if up["fcnt"] is None:
        return result, None  # join/status event or out-of-range fCnt: nothing to store
    cur.execute(READING_EXISTS, (device["id"], eui, up["fcnt"]))
    if cur.fetchone() is not None:
        result["status"] = "duplicate"
        return result, None
    cur.execute(INSERT_READING, (device["tenant_id"], device["id"], eui, up["fcnt"], up["occupied"],
                                 up["rssi"], up["snr"], up["raw"], received_at, now))
    result.update(reading_id=cur.fetchone()["id"], reading_stored=True)

    if up["occupied"] is None or not device["assigned_space_id"]:
        return result, None
    cur.execute(LOCK_SPACE, (device["assigned_space_id"],))
    space = cur.fetchone()
    if space is None:
        return result, None
    sensor_state = "occupied" if up["occupied"] else "free"
    previous = space["current_state"]
    state = sensor_state if (previous or "unknown") in SENSOR_OVERRIDABLE else previous
    changed = state != previous
    if changed or space["sensor_state"] != sensor_state:
        cur.execute(UPDATE_SPACE, (sensor_state, state, changed, now, space["id"]))
    result.update(space_id=space["id"], space_code=space["code"], state=state,
                  previous_state=previous, changed=changed)
    message = {"type": "space_update", "space_id": space["id"], "space_code": space["code"],
               "state": state, "sensor_state": sensor_state, "previous_state": previous,
               "changed": changed, "tenant_id": space["tenant_id"], "dev_eui": eui,
               "fcnt": up["fcnt"], "time": (up["time"] or utc_now()).isoformat()}
    return result, message


# --------------------------------------------------------------------------------------------
# HTTP layer
# --------------------------------------------------------------------------------------------

class Caller:
    """The authenticated user behind a request."""

    def __init__(self, user_id, tenant_id, platform_view):
        self.user_id, self.tenant_id, self.platform_view = user_id, tenant_id, platform_view


class App(svc.Router):
    """Routes and handlers; holds the configuration, the database and the websocket registry."""

    def __init__(self, db, jwt_secret, webhook_secret=None, platform_tenant=DEFAULT_PLATFORM_TENANT_ID,
                 token_ttl=DEFAULT_TOKEN_MINUTES * 60, registry=None):
        self.db = db
        self.jwt_secret = jwt_secret
        self.webhook_secret = webhook_secret or None
        self.platform_tenant = str(platform_tenant)
        self.token_ttl = token_ttl
        self.registry = registry or Registry()
        self.routes = [
            ("GET", re.compile(r"^/health$"), self.health),
            ("GET", re.compile(r"^/health/ready$"), self.ready),
            ("GET", re.compile(r"^/webhooks/health$"), self.webhooks_health),
            ("POST", re.compile(r"^/api/v[16]/auth/login$"), self.login),
            ("GET", re.compile(r"^/api/v1/spaces/?$"), self.list_spaces),
            ("GET", re.compile(r"^/api/v1/devices/?$"), self.list_devices),
            ("GET", re.compile(r"^/api/v1/reservations/?$"), self.list_reservations),
            ("POST", re.compile(r"^/api/v1/reservations/?$"), self.create_reservation),
            ("POST", re.compile(r"^/api/v1/reservations/([0-9a-fA-F-]{36})/cancel$"),
             self.cancel_reservation),
            ("POST", re.compile(r"^/api/v1/uplink/?$"), self.uplink),
            ("POST", re.compile(r"^/webhooks/chirpstack/uplink/?$"), self.uplink),
        ]

    # ---- health -----------------------------------------------------------------------------

    def health(self, request):
        # Lab fault injection: while this file exists the health check fails, but every other
        # endpoint keeps serving (like a V6 whose dependency went away); tests create it with
        # `docker exec parking-api-v6 touch /tmp/parking-lab-unhealthy`.
        if os.path.exists(FAULT_FILE):
            return 503, {"status": "unhealthy", "version": VERSION, "reason": "lab fault injection"}
        return 200, {"status": "healthy", "version": VERSION}

    def webhooks_health(self, request):
        return 200, {"status": "healthy", "service": "parking-webhooks", "version": VERSION}

    def ready(self, request):
        try:
            with self.db.transaction() as cur:
                cur.execute("SELECT 1")
            return 200, {"status": "ready"}
        except Exception as exc:  # any failure means "not ready"
            return 503, {"status": "not_ready", "detail": one_line(exc)[:200]}

    # ---- authentication ---------------------------------------------------------------------

    MEMBERSHIPS = """
        SELECT m.tenant_id, m.role, t.name, t.slug, t.type
          FROM user_memberships m JOIN tenants t ON t.id = m.tenant_id
         WHERE m.user_id = %s AND m.is_active IS TRUE AND t.is_active IS TRUE
    """

    def login(self, request):
        body = request.json_body()
        email, password = body.get("email"), body.get("password")
        if not isinstance(email, str) or not isinstance(password, str) or not email.strip():
            raise HTTPError(422, "email and password are required")
        email = email.strip().lower()
        wanted = body.get("tenant_id") or body.get("tenant_slug")
        with self.db.transaction() as cur:  # users/memberships/tenants have no RLS
            cur.execute("SELECT id, hashed_password FROM users WHERE lower(email) = %s"
                        " AND is_active IS TRUE ORDER BY (email = %s) DESC, created_at LIMIT 1",
                        (email, email))
            user = cur.fetchone()
            if not user or not verify_password(password, user["hashed_password"]):
                raise HTTPError(401, "Incorrect email or password")
            cur.execute(self.MEMBERSHIPS, (user["id"],))
            rows = cur.fetchall()
            membership = pick_membership(rows, str(wanted) if wanted else None)
            if membership is None:
                raise HTTPError(401, "No active tenant membership found")
            cur.execute("UPDATE users SET last_login_at = now() WHERE id = %s", (user["id"],))
        platform_admin = is_platform_admin(rows)
        token = make_access_token(user["id"], membership["tenant_id"], membership["role"],
                                  platform_admin, self.jwt_secret, self.token_ttl)
        return 200, {"access_token": token, "token_type": "bearer", "tenant_id": membership["tenant_id"],
                     "role": membership["role"], "user_id": user["id"],
                     "is_platform_admin": platform_admin, "expires_in": self.token_ttl}

    def _caller(self, request):
        header = request.headers.get("Authorization") or ""
        if not header.startswith("Bearer "):
            raise HTTPError(401, "Not authenticated")
        try:
            claims = jwt_decode(header[len("Bearer "):].strip(), self.jwt_secret)
            user_id, tenant_id, admin = token_identity(claims)
        except JWTError as exc:
            raise HTTPError(401, "Could not validate credentials: %s" % exc) from exc
        # V6 semantics (is_viewing_platform_tenant): a platform admin sees every tenant only
        # while the token's tenant is the platform tenant; otherwise RLS confines them too.
        return Caller(user_id, tenant_id, admin and tenant_id == self.platform_tenant)

    def _scoped(self, caller):
        return self.db.transaction(caller.tenant_id, caller.platform_view)

    def _check_membership(self, cur, caller):
        """As V6 does per request: user, membership and tenant must still be active."""
        cur.execute("SELECT m.role, t.type FROM users u"
                    " JOIN user_memberships m ON m.user_id = u.id AND m.tenant_id = %s"
                    " JOIN tenants t ON t.id = m.tenant_id"
                    " WHERE u.id = %s AND u.is_active IS TRUE AND m.is_active IS TRUE"
                    " AND t.is_active IS TRUE", (caller.tenant_id, caller.user_id))
        row = cur.fetchone()
        if row is None:
            raise HTTPError(401, "No active membership for this tenant")
        if caller.platform_view and not (row["type"] == "platform"
                                         and row["role"] in PLATFORM_ADMIN_ROLES):
            raise HTTPError(401, "Platform admin rights are no longer valid")

    # ---- tenant-scoped reads (no tenant filter: RLS does it) --------------------------------

    SPACE_COLUMNS = ("id, name, code, display_name, building, floor, zone, site_id, tenant_id,"
                     " sensor_eui, display_eui, sensor_device_id, display_device_id, current_state,"
                     " sensor_state, display_state, state_changed_at, enabled, auto_release_minutes,"
                     " state AS legacy_state, metadata, created_at, updated_at")

    def list_spaces(self, request):
        caller = self._caller(request)
        with self._scoped(caller) as cur:
            self._check_membership(cur, caller)
            cur.execute("SELECT " + self.SPACE_COLUMNS + " FROM spaces WHERE deleted_at IS NULL"
                        " ORDER BY code, id")
            return 200, cur.fetchall()

    def list_devices(self, request):
        caller = self._caller(request)
        with self._scoped(caller) as cur:
            self._check_membership(cur, caller)
            cur.execute("""
                SELECT d.id, d.dev_eui, 'sensor' AS category, d.name, d.device_type, d.manufacturer,
                       d.model, d.status, d.lifecycle_state, d.enabled, d.last_seen_at, d.tenant_id,
                       d.assigned_space_id AS space_id, s.code AS space_code
                  FROM sensor_devices d LEFT JOIN spaces s ON s.id = d.assigned_space_id
                UNION ALL
                SELECT d.id, d.dev_eui, 'display', d.name, d.device_type, d.manufacturer,
                       d.model, d.status, d.lifecycle_state, d.enabled, d.last_seen_at, d.tenant_id,
                       d.assigned_space_id, s.code
                  FROM display_devices d LEFT JOIN spaces s ON s.id = d.assigned_space_id
                ORDER BY category, dev_eui""")
            return 200, cur.fetchall()

    RESERVATION_COLUMNS = ("id, space_id, tenant_id, user_id, user_email, user_name, start_time,"
                           " end_time, status, metadata, cancelled_at, cancelled_by,"
                           " cancellation_reason, created_at, updated_at")

    def list_reservations(self, request):
        caller = self._caller(request)
        status = request.query.get("status", [None])[0]
        with self._scoped(caller) as cur:
            self._check_membership(cur, caller)
            cur.execute("SELECT " + self.RESERVATION_COLUMNS + " FROM reservations"
                        " WHERE (%s::text IS NULL OR status = %s) ORDER BY start_time, id",
                        (status, status))
            return 200, cur.fetchall()

    # ---- reservation writes -----------------------------------------------------------------

    def create_reservation(self, request):
        caller = self._caller(request)
        body = request.json_body()
        space_id = body.get("space_id")
        start, end = parse_event_time(body.get("start_time")), parse_event_time(body.get("end_time"))
        email = body.get("user_email")
        if not is_uuid(space_id):
            raise HTTPError(422, "space_id must be a UUID")
        if start is None or end is None:
            raise HTTPError(422, "start_time and end_time must be ISO 8601 date-times")
        if end <= start:
            raise HTTPError(422, "end_time must be after start_time")
        if end - start > MAX_RESERVATION:
            raise HTTPError(422, "a reservation lasts at most 24 hours")
        if email is not None and not isinstance(email, str):
            raise HTTPError(422, "user_email must be a string")
        try:
            with self._scoped(caller) as cur:
                self._check_membership(cur, caller)
                # Invisible (other tenant, RLS) = absent. The row lock serialises the overlap
                # check of concurrent requests for the same space (V6 has no exclusion constraint).
                cur.execute("SELECT id, tenant_id FROM spaces WHERE id = %s AND deleted_at IS NULL"
                            " FOR UPDATE", (space_id,))
                space = cur.fetchone()
                if space is None:
                    raise HTTPError(404, "Space not found")
                cur.execute("SELECT id FROM reservations WHERE space_id = %s AND status = 'active'"
                            " AND start_time < %s AND end_time > %s LIMIT 1", (space_id, end, start))
                clash = cur.fetchone()
                if clash is not None:
                    raise HTTPError(409, "Space already reserved for an overlapping period"
                                         " (reservation %s)" % clash["id"])
                # The token's tenant; a platform admin in the platform view books in the space's.
                tenant = space["tenant_id"] if caller.platform_view else caller.tenant_id
                cur.execute("INSERT INTO reservations (space_id, tenant_id, user_id, user_email,"
                            " start_time, end_time, status, metadata)"
                            " VALUES (%s, %s, %s, %s, %s, %s, 'active', %s)"
                            " RETURNING " + self.RESERVATION_COLUMNS,
                            (space_id, tenant, caller.user_id, email.strip().lower() if email else None,
                             start, end, json.dumps({"request_id": str(uuid.uuid4())})))
                return 201, cur.fetchone()
        except psycopg2.errors.CheckViolation as exc:
            raise HTTPError(422, "Invalid reservation: %s" % exc.diag.constraint_name) from exc

    def cancel_reservation(self, request, reservation_id):
        caller = self._caller(request)
        body = request.json_body() if request.body else {}
        reason = body.get("reason") or body.get("cancellation_reason")
        with self._scoped(caller) as cur:
            self._check_membership(cur, caller)
            cur.execute("SELECT status FROM reservations WHERE id = %s FOR UPDATE", (reservation_id,))
            row = cur.fetchone()
            if row is None:
                raise HTTPError(404, "Reservation not found")
            if row["status"] != "active":
                raise HTTPError(409, "Reservation is already %s" % row["status"])
            cur.execute("UPDATE reservations SET status = 'cancelled', cancelled_at = %s,"
                        " cancelled_by = %s, cancellation_reason = %s WHERE id = %s"
                        " RETURNING " + self.RESERVATION_COLUMNS,
                        (naive_utc(utc_now()), caller.user_id,
                         reason if isinstance(reason, str) else None, reservation_id))
            return 200, cur.fetchone()

    # ---- ChirpStack receiver ----------------------------------------------------------------

    def uplink(self, request):
        """ChirpStack HTTP integration receiver; the ``event`` query parameter is ignored."""
        started = time.monotonic()
        if self.webhook_secret and not verify_signature(
                self.webhook_secret, request.body, request.headers.get("X-Signature")):
            raise HTTPError(401, "Invalid webhook signature")
        try:
            up = parse_uplink(request.body)
        except BadRequest as exc:
            raise HTTPError(400, str(exc)) from exc

        def work():
            with self.db.transaction(None, platform_admin=True) as cur:  # system context
                return process_uplink(cur, up)

        result, message = svc.run_uplink(LOG, up, work)
        if message is not None:  # after the commit
            result["ws_delivered"] = self.registry.broadcast(message["tenant_id"], "spaces", message)
        result["processing_time_ms"] = round((time.monotonic() - started) * 1000, 2)
        return 200, result

    # ---- websocket --------------------------------------------------------------------------

    def ws_identity(self, query):
        """(user_id, tenant_id, sees_all) from ``?token=``; JWTError when invalid."""
        token = (query.get("token") or [""])[0]
        if not token:
            raise JWTError("missing token")
        user_id, tenant_id, admin = token_identity(jwt_decode(token, self.jwt_secret))
        return user_id, tenant_id, admin and tenant_id == self.platform_tenant

    def ws_session(self, conn):
        self.registry.add(conn)
        try:
            conn.send_json({"type": "connected", "tenant_id": conn.tenant_id, "user_id": conn.user_id,
                            "channels": list(WS_CHANNELS), "timestamp": utc_now().isoformat()})

            def on_text(text):
                reply, add, remove = ws_reply(text)
                if add:
                    conn.channels.add(add)
                if remove:
                    conn.channels.discard(remove)
                conn.send_json(reply)

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
        try:
            self.wfile.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                              % ws_accept_key(key)).encode("ascii"))
            self.wfile.flush()
        except OSError:
            return self._access(split.path, 499, started)
        self._access(split.path, 101, started)
        sock = self.connection
        if identity is None:  # V6: close with 1008 on a missing/invalid token
            try:
                sock.sendall(encode_frame(OP_CLOSE, close_payload(1008, "invalid token: %s" % error)))
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            LOG.info("websocket rejected: %s", error)
            return None
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



def main():
    svc.configure_logging()
    secret = svc.env_jwt_secret(LOG)
    if secret is None:
        return 2
    algorithm = os.environ.get("JWT_ALGORITHM", "HS256") or "HS256"
    if algorithm.upper() != "HS256":
        LOG.error("JWT_ALGORITHM %s is not supported (HS256 only)", algorithm)
        return 2
    dsn = svc.env_database_url(LOG)
    if dsn is None:
        return 2
    platform_tenant = os.environ.get("PLATFORM_TENANT_ID") or DEFAULT_PLATFORM_TENANT_ID
    if not is_uuid(platform_tenant):
        LOG.error("PLATFORM_TENANT_ID %r is not a UUID", platform_tenant)
        return 2
    try:
        token_minutes = int(os.environ.get("ACCESS_TOKEN_EXPIRE_MINUTES") or DEFAULT_TOKEN_MINUTES)
    except ValueError:
        LOG.error("ACCESS_TOKEN_EXPIRE_MINUTES must be an integer")
        return 2
    webhook_secret = os.environ.get("CHIRPSTACK_WEBHOOK_SECRET") or None

    db = Database(dsn)
    try:
        with db.transaction() as cur:
            cur.execute("SELECT current_user AS role, r.rolsuper OR r.rolbypassrls AS bypass"
                        " FROM pg_roles r WHERE r.rolname = current_user")
            row = cur.fetchone()
        LOG.info("database reachable as %s", row["role"])
        if row["bypass"]:
            LOG.warning("role %s bypasses row-level security: tenant isolation is NOT enforced",
                        row["role"])
    except Exception as exc:
        LOG.warning("database not reachable yet (%s); /health/ready reports 503", one_line(exc))

    app = App(db, secret, webhook_secret, platform_tenant, token_minutes * 60)
    Handler.app = app
    server, port = svc.make_server(Handler)

    def close_websockets():
        closed = app.registry.close_all()
        if closed:
            LOG.info("closing %d websocket(s)", closed)

    svc.stop_on_signals(server, LOG, close_websockets)
    LOG.info("V6 API stand-in %s listening on port %d (webhook signature %s)", VERSION, port,
             "required" if webhook_secret else "not checked")
    server.serve_forever(poll_interval=0.2)
    app.registry.close_all()  # clients that connected during shutdown
    server.server_close()     # waits for in-flight requests and websocket threads
    db.close()
    LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
