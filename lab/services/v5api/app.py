#!/usr/bin/env python3
"""V5 API stand-in for the lab (container ``parking-api``, DNS alias ``api``, port 8000).

Reproduces the parts of the V5 Smart Parking API that the migration touches:

* ``GET /health`` (always 200, ``healthy``/``degraded``) and ``GET /health/ready`` (200/503).
* ``POST /api/v1/auth/login`` -> HS256 JWT (sub, user_id, tenant_id, role, iat, exp).
* ``GET /api/v1/spaces|devices|reservations`` scoped to the token's tenant.
* ``POST /api/v1/reservations`` and ``POST /api/v1/reservations/{id}/cancel``.
* ``POST /api/v1/uplink``: the ChirpStack HTTP-integration receiver, writing what V5 writes
  (sensor_readings with fCnt dedup, spaces.state + state_changes, device last_seen_at,
  orphan_devices upserts).

Standard library plus the Debian packages python3-psycopg2 and python3-bcrypt only.

Environment: DATABASE_URL, JWT_SECRET_KEY (>= 32 chars), PORT (8000), LOG_LEVEL (INFO),
BIND (0.0.0.0; 127.0.0.1 for local runs).
"""
import base64
import binascii
import datetime as dt
import json
import logging
import os
import re
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import svc  # noqa: E402  (lab/services/common, shared with the V6 stand-in)
from common.svc import (  # noqa: E402,F401  (re-exported: tests use app.<name>)
    HTTPError, JWTError, Request, b64url_decode, b64url_encode, json_default, jwt_decode,
    jwt_encode, one_line, parse_event_time, verify_password)

try:  # the pure helpers (JWT, payload decoding) are unit-tested without the drivers
    import psycopg2
    import psycopg2.errors
except ImportError:  # pragma: no cover - only in environments without the drivers
    psycopg2 = None

VERSION = "5.8.0-lab"
LOG = logging.getLogger("v5api")

PLATFORM_TENANT_ID = "00000000-0000-0000-0000-000000000000"
KUANDO_PREFIX = "202020"          # V5 treats DevEUIs starting 202020 as Kuando displays
BROWAN_PROFILE = "browan_tbms100_motion"
TOKEN_TTL_SECONDS = 24 * 3600     # V5: JWT_ACCESS_TOKEN_EXPIRE_MINUTES = 60 * 24
EUI_RE = re.compile(r"^[0-9A-F]{16}$")
INT4_MAX = 2**31 - 1

# V5 StateManager.VALID_TRANSITIONS (sensor-driven changes must follow it).
VALID_TRANSITIONS = {
    "FREE": ("OCCUPIED", "RESERVED", "MAINTENANCE"),
    "OCCUPIED": ("FREE", "MAINTENANCE"),
    "RESERVED": ("OCCUPIED", "FREE", "MAINTENANCE"),
    "MAINTENANCE": ("FREE",),
}


# --------------------------------------------------------------------------------------------
# JWT (HS256): encode/decode/verify_password are in common/svc.py
# --------------------------------------------------------------------------------------------

def make_access_token(user_id, tenant_id, role, secret, now=None):
    issued = int(time.time() if now is None else now)
    claims = {"sub": str(user_id), "user_id": str(user_id), "tenant_id": str(tenant_id),
              "role": role, "iat": issued, "exp": issued + TOKEN_TTL_SECONDS}
    return jwt_encode(claims, secret)


# --------------------------------------------------------------------------------------------
# Uplink parsing and payload decoding (pure functions)
# --------------------------------------------------------------------------------------------

class BadRequest(Exception):
    """The uplink body cannot be processed at all (HTTP 400)."""


def decode_sensor_payload(profile_name, payload):
    """Decode a sensor payload into {"occupancy", "battery", "temperature"}.

    ``browan_tbms100_motion`` (Browan TABS motion/occupancy): byte 0 bit 0 = occupied;
    byte 1 = battery, V5 stores ``byte / 100`` (V5 ``BrowanTabsHandler``); byte 2 bits 0-6 =
    temperature + 32 degC (Browan TBMS100 frame format).
    Every other sensor profile is decoded with the same rule, since V5 has no other occupancy
    handler. An empty payload (MAC-only frame, fPort 0) carries no occupancy: ``None``.
    """
    result = {"occupancy": None, "battery": None, "temperature": None}
    if not payload:
        return result
    result["occupancy"] = "OCCUPIED" if payload[0] & 0x01 else "FREE"
    if len(payload) >= 2:
        result["battery"] = round(payload[1] / 100.0, 2)
    if len(payload) >= 3:
        result["temperature"] = float((payload[2] & 0x7F) - 32)
    return result


def parse_uplink(body):
    """Extract the fields V5 reads from a ChirpStack v4 ``up`` event (raises BadRequest)."""
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("malformed JSON") from exc
    if not isinstance(event, dict):
        raise BadRequest("event must be a JSON object")
    device_info = event.get("deviceInfo")
    dev_eui = device_info.get("devEui") if isinstance(device_info, dict) else None
    if not isinstance(dev_eui, str) or not dev_eui:
        raise BadRequest("Missing device EUI in uplink")
    dev_eui = dev_eui.strip().upper()
    if not EUI_RE.match(dev_eui):
        raise BadRequest("devEui must be 16 hex digits")

    data = event.get("data") or ""
    try:
        payload = base64.b64decode(data) if isinstance(data, str) else b""
    except (binascii.Error, ValueError):
        payload = b""

    rx_info = event.get("rxInfo")
    first_rx = rx_info[0] if isinstance(rx_info, list) and rx_info else {}
    if not isinstance(first_rx, dict):
        first_rx = {}
    fcnt = svc.number(event.get("fCnt"), int)
    if fcnt is not None and not 0 <= fcnt <= INT4_MAX:
        fcnt = None  # sensor_readings.fcnt is int4: keep the reading, lose the dedup key
    dedup_id = event.get("deduplicationId")
    if not isinstance(dedup_id, str) or not dedup_id:
        dedup_id = str(uuid.uuid4())
    return {
        "dev_eui": dev_eui,
        "device_name": device_info.get("deviceName"),
        "profile_name": device_info.get("deviceProfileName") or "",
        "fcnt": fcnt,
        "fport": svc.number(event.get("fPort"), int),
        "data_b64": data if isinstance(data, str) else "",
        "payload": payload,
        "time": parse_event_time(event.get("time")),
        "rssi": svc.number(first_rx.get("rssi"), int),
        "snr": svc.number(first_rx.get("snr"), float),
        "deduplication_id": dedup_id,
    }


def is_display_profile(profile_name, dev_eui):
    return dev_eui.startswith(KUANDO_PREFIX) or "kuando" in profile_name.lower()


# --------------------------------------------------------------------------------------------
# Database access
# --------------------------------------------------------------------------------------------

class Database(svc.Database):
    """The shared pool (common/svc.py); ``transaction()`` checks the connection with SELECT 1."""
    application_name = "parking-api-lab"


def set_tenant(cur, tenant_id):
    """SET LOCAL app.current_tenant, as V5 does for every tenant-scoped transaction."""
    cur.execute("SELECT set_config('app.current_tenant', %s, true)", (str(tenant_id),))


# --------------------------------------------------------------------------------------------
# Uplink processing (one transaction per uplink)
# --------------------------------------------------------------------------------------------

INSERT_READING = """
    INSERT INTO sensor_readings
        (device_eui, space_id, occupancy_state, battery, temperature, rssi, snr, "timestamp", fcnt)
    VALUES (%s, %s, %s, %s, %s, %s, %s, COALESCE(%s, now()), %s)
    ON CONFLICT (tenant_id, device_eui, fcnt) WHERE fcnt IS NOT NULL DO NOTHING
    RETURNING id
"""

UPSERT_ORPHAN = """
    INSERT INTO orphan_devices
        (dev_eui, first_seen, last_seen, uplink_count, last_payload, last_rssi, last_snr)
    VALUES (%s, now(), now(), 1, %s, %s, %s)
    ON CONFLICT (dev_eui) DO UPDATE SET
        last_seen = now(),
        uplink_count = COALESCE(orphan_devices.uplink_count, 0) + 1,
        last_payload = EXCLUDED.last_payload,
        last_rssi = EXCLUDED.last_rssi,
        last_snr = EXCLUDED.last_snr
    RETURNING uplink_count
"""


# The uplink transaction's first statement (also the pooled connection's liveness check): what
# the EUI is, and its space, read without a lock.
CLASSIFY_UPLINK = """
    SELECT EXISTS (SELECT 1 FROM sensor_devices WHERE dev_eui = %(eui)s) AS sensor,
           EXISTS (SELECT 1 FROM display_devices WHERE dev_eui = %(eui)s) AS display,
           sp.id AS space_id, sp.tenant_id
    FROM (SELECT 1) one
    LEFT JOIN LATERAL (SELECT id, tenant_id FROM spaces
                       WHERE sensor_eui = %(eui)s AND deleted_at IS NULL ORDER BY id LIMIT 1) sp ON true
"""

# A sensor-driven state change in one statement: the space's row is locked (READ COMMITTED returns
# its newest version), changed only along StateManager.VALID_TRANSITIONS, and logged. NO KEY
# UPDATE, the lock an UPDATE of a non-key column takes: FOR UPDATE would also wait for the key-share
# locks that other uplinks' readings (foreign keys to the space) hold while they wait for the
# device's row, which this transaction holds - a deadlock.
CHANGE_STATE = """
    WITH locked AS (SELECT id, state FROM spaces WHERE id = %(space)s FOR NO KEY UPDATE),
         changed AS (UPDATE spaces s SET state = %(new)s, updated_at = now() FROM locked
                     WHERE s.id = locked.id AND locked.state = ANY(%(from)s)
                     RETURNING locked.state AS previous)
    INSERT INTO state_changes
        (space_id, previous_state, new_state, source, request_id, metadata, "timestamp")
    SELECT %(space)s, previous, %(new)s, 'sensor', %(rid)s, %(meta)s, COALESCE(%(ts)s, now())
    FROM changed
    RETURNING previous_state
"""


def process_uplink(cur, up):
    """Write what V5 writes for one uplink; return the response body. ``cur`` holds the result of
    CLASSIFY_UPLINK (the transaction's first statement).

    Rows other uplinks also update (the device, its space) are locked last, in two statements
    right before the commit - device, then space - so the uplinks of one device queue on those
    locks for as short a time as possible: on a busy host a lock held across the whole handler
    made one device's uplinks queue, fill the connection pool and stall every other request."""
    eui = up["dev_eui"]
    known = cur.fetchone()
    result = {"status": "processed", "device_eui": eui, "request_id": up["deduplication_id"]}

    # A Kuando busylight may sit in both registries: its uplinks are display status frames.
    if known["display"] and (is_display_profile(up["profile_name"], eui) or not known["sensor"]):
        cur.execute("UPDATE display_devices SET last_seen_at = now() WHERE dev_eui = %s", (eui,))
        result["device_kind"] = "display"
        return result

    if not known["sensor"]:
        # V5 (src/orphan_devices.py) stores the base64 text's bytes, not the decoded payload.
        payload_text = psycopg2.Binary(up["data_b64"].encode("ascii", "replace"))
        cur.execute(UPSERT_ORPHAN, (eui, payload_text, up["rssi"], up["snr"]))
        result.update(device_kind="orphan", uplink_count=cur.fetchone()["uplink_count"])
        return result

    result["device_kind"] = "sensor"
    decoded = decode_sensor_payload(up["profile_name"], up["payload"])
    space_id = known["space_id"]
    if space_id and known["tenant_id"]:
        set_tenant(cur, known["tenant_id"])

    inserted = False
    if decoded["occupancy"] is not None:
        cur.execute(INSERT_READING, (eui, space_id, decoded["occupancy"],
                                     decoded["battery"], decoded["temperature"], up["rssi"],
                                     up["snr"], up["time"], up["fcnt"]))
        inserted = cur.fetchone() is not None
    cur.execute("UPDATE sensor_devices SET last_seen_at = now() WHERE dev_eui = %s", (eui,))

    result.update(space_id=space_id, occupancy=decoded["occupancy"],
                  duplicate=decoded["occupancy"] is not None and not inserted, state_changed=False)
    if not (space_id and inserted):
        return result
    new = decoded["occupancy"]
    allowed = [state for state, targets in VALID_TRANSITIONS.items() if new in targets and state != new]
    cur.execute(CHANGE_STATE, {"space": space_id, "new": new, "from": allowed,
                               "rid": up["deduplication_id"][:50], "ts": up["time"],
                               "meta": json.dumps({"fcnt": up["fcnt"], "dev_eui": eui})})
    changed = cur.fetchone()
    if changed:
        result.update(previous_state=changed["previous_state"], state=new, state_changed=True)
    return result


# --------------------------------------------------------------------------------------------
# HTTP layer
# --------------------------------------------------------------------------------------------

class App(svc.Router):
    """Routes and handlers; holds the configuration and the database."""

    def __init__(self, db, jwt_secret):
        self.db = db
        self.jwt_secret = jwt_secret
        self.routes = [
            ("GET", re.compile(r"^/health$"), self.health),
            ("GET", re.compile(r"^/health/ready$"), self.ready),
            ("POST", re.compile(r"^/api/v1/auth/login$"), self.login),
            ("GET", re.compile(r"^/api/v1/spaces/?$"), self.list_spaces),
            ("GET", re.compile(r"^/api/v1/devices/?$"), self.list_devices),
            ("GET", re.compile(r"^/api/v1/reservations/?$"), self.list_reservations),
            ("POST", re.compile(r"^/api/v1/reservations/?$"), self.create_reservation),
            ("POST", re.compile(r"^/api/v1/reservations/([0-9a-fA-F-]{36})/cancel$"),
             self.cancel_reservation),
            ("POST", re.compile(r"^/api/v1/uplink/?$"), self.uplink),
        ]

    # ---- health -----------------------------------------------------------------------------

    def _db_check(self):
        try:
            with self.db.transaction() as cur:
                cur.execute("SELECT 1")
            return "healthy"
        except Exception as exc:  # any failure means "not reachable"
            return "unhealthy: %s" % one_line(exc)[:100]

    def health(self, request):
        database = self._db_check()
        status = "healthy" if database == "healthy" else "degraded"
        return 200, {"status": status, "checks": {"database": database}, "version": VERSION,
                     "timestamp": dt.datetime.now(dt.timezone.utc).isoformat()}

    def ready(self, request):
        database = self._db_check()
        if database == "healthy":
            return 200, {"status": "ready", "checks": {"database": "ready"}}
        return 503, {"status": "not_ready", "checks": {"database": database}}

    # ---- authentication ---------------------------------------------------------------------

    def login(self, request):
        body = request.json_body()
        email, password = body.get("email"), body.get("password")
        if not isinstance(email, str) or not isinstance(password, str):
            raise HTTPError(422, "email and password are required")
        with self.db.transaction() as cur:
            cur.execute("SELECT id, password_hash, is_active FROM users WHERE lower(email) = %s",
                        (email.strip().lower(),))
            user = cur.fetchone()
            if (not user or user["is_active"] is False
                    or not verify_password(password, user["password_hash"])):
                raise HTTPError(401, "Invalid email or password")
            membership = self._primary_membership(cur, user["id"])
            if membership is None:
                raise HTTPError(401, "No active tenant membership found")
            cur.execute("UPDATE users SET last_login_at = now() WHERE id = %s", (user["id"],))
        token = make_access_token(user["id"], membership["tenant_id"], membership["role"],
                                  self.jwt_secret)
        return 200, {"access_token": token, "token_type": "bearer", "expires_in": TOKEN_TTL_SECONDS,
                     "user_id": user["id"], "tenant_id": membership["tenant_id"],
                     "role": membership["role"]}

    @staticmethod
    def _primary_membership(cur, user_id):
        """V5 login: platform admins get the first active tenant by name, others their
        oldest active membership of an active tenant."""
        cur.execute("SELECT role FROM user_memberships WHERE user_id = %s AND tenant_id = %s"
                    " AND is_active IS NOT FALSE", (user_id, PLATFORM_TENANT_ID))
        row = cur.fetchone()
        if row and row["role"] == "platform_admin":
            cur.execute("SELECT id AS tenant_id, 'platform_admin' AS role FROM tenants"
                        " WHERE is_active IS NOT FALSE ORDER BY name LIMIT 1")
            return cur.fetchone()
        cur.execute("SELECT um.tenant_id, um.role FROM user_memberships um"
                    " JOIN tenants t ON t.id = um.tenant_id"
                    " WHERE um.user_id = %s AND um.is_active IS NOT FALSE AND t.is_active IS NOT FALSE"
                    " ORDER BY um.created_at, um.id LIMIT 1", (user_id,))
        return cur.fetchone()

    def _claims(self, request, required=True):
        header = request.headers.get("Authorization") or ""
        if not header.startswith("Bearer "):
            if required:
                raise HTTPError(401, "Authentication required")
            return None
        try:
            return jwt_decode(header[len("Bearer "):].strip(), self.jwt_secret)
        except JWTError as exc:
            raise HTTPError(401, "Invalid token: %s" % exc) from exc

    def _authorize(self, cur, claims):
        """Check (as V5 does per request) that the membership behind a token is still active;
        set the RLS tenant; return the tenant id."""
        tenant_id = claims.get("tenant_id")
        user_id = claims.get("sub") or claims.get("user_id")
        try:
            uuid.UUID(str(tenant_id))
            uuid.UUID(str(user_id))
        except ValueError as exc:
            raise HTTPError(401, "Invalid token claims") from exc
        if claims.get("role") != "platform_admin":
            cur.execute("SELECT 1 FROM user_memberships um JOIN users u ON u.id = um.user_id"
                        " WHERE um.user_id = %s AND um.tenant_id = %s"
                        " AND um.is_active IS NOT FALSE AND u.is_active IS NOT FALSE",
                        (user_id, tenant_id))
            if cur.fetchone() is None:
                raise HTTPError(401, "Membership is no longer active")
        set_tenant(cur, tenant_id)
        return tenant_id

    # ---- tenant-scoped reads ----------------------------------------------------------------

    def list_spaces(self, request):
        claims = self._claims(request)
        with self.db.transaction() as cur:
            tenant_id = self._authorize(cur, claims)
            cur.execute("SELECT id, name, code, building, floor, zone, gps_latitude, gps_longitude,"
                        " sensor_eui, display_eui, state, metadata, site_id, tenant_id,"
                        " created_at, updated_at FROM spaces"
                        " WHERE tenant_id = %s AND deleted_at IS NULL ORDER BY code, id", (tenant_id,))
            return 200, cur.fetchall()

    def list_devices(self, request):
        """V5 rule: registry rows whose EUI is referenced by a non-deleted space of the tenant."""
        claims = self._claims(request)
        with self.db.transaction() as cur:
            tenant_id = self._authorize(cur, claims)
            cur.execute("""
                SELECT d.id, d.dev_eui, 'sensor' AS category, d.device_type, d.status, d.enabled,
                       d.last_seen_at, s.id AS space_id, s.code AS space_code
                  FROM sensor_devices d
                  JOIN spaces s ON s.sensor_eui = d.dev_eui AND s.deleted_at IS NULL AND s.tenant_id = %s
                UNION ALL
                SELECT d.id, d.dev_eui, 'display', d.device_type, d.status, d.enabled,
                       d.last_seen_at, s.id, s.code
                  FROM display_devices d
                  JOIN spaces s ON s.display_eui = d.dev_eui AND s.deleted_at IS NULL AND s.tenant_id = %s
                ORDER BY category, dev_eui""", (tenant_id, tenant_id))
            return 200, cur.fetchall()

    RESERVATION_COLUMNS = ("id, space_id, start_time, end_time, user_email, user_phone, status,"
                           " metadata, request_id, tenant_id, created_at, updated_at")

    def list_reservations(self, request):
        claims = self._claims(request)
        status = request.query.get("status", [None])[0]
        with self.db.transaction() as cur:
            tenant_id = self._authorize(cur, claims)
            cur.execute("SELECT " + self.RESERVATION_COLUMNS + " FROM reservations"
                        " WHERE tenant_id = %s AND (%s::text IS NULL OR status = %s)"
                        " ORDER BY start_time, id", (tenant_id, status, status))
            return 200, cur.fetchall()

    # ---- reservation writes -----------------------------------------------------------------

    def create_reservation(self, request):
        """Authorization is optional here: without a token the tenant comes from the space;
        with one, the space must belong to the token's tenant."""
        claims = self._claims(request, required=False)
        body = request.json_body()
        space_id = body.get("space_id")
        start, end = parse_event_time(body.get("start_time")), parse_event_time(body.get("end_time"))
        email = body.get("user_email")
        try:
            uuid.UUID(str(space_id))
        except ValueError as exc:
            raise HTTPError(422, "space_id must be a UUID") from exc
        if start is None or end is None:
            raise HTTPError(422, "start_time and end_time must be ISO 8601 date-times")
        if email is not None and not isinstance(email, str):
            raise HTTPError(422, "user_email must be a string")
        try:
            with self.db.transaction() as cur:
                token_tenant = self._authorize(cur, claims) if claims else None
                cur.execute("SELECT tenant_id FROM spaces WHERE id = %s AND deleted_at IS NULL",
                            (space_id,))
                space = cur.fetchone()
                if not space or (token_tenant and str(space["tenant_id"]) != str(token_tenant)):
                    raise HTTPError(404, "Space not found")
                set_tenant(cur, space["tenant_id"])
                cur.execute("INSERT INTO reservations (space_id, start_time, end_time, user_email,"
                            " status, tenant_id, metadata)"
                            " VALUES (%s, %s, %s, %s, 'confirmed', %s, %s)"
                            " RETURNING " + self.RESERVATION_COLUMNS,
                            (space_id, start, end, email.lower() if email else None, space["tenant_id"],
                             json.dumps({"reservation_type": "standard", "external_system": "lab"})))
                return 201, cur.fetchone()
        except psycopg2.errors.ExclusionViolation as exc:
            raise HTTPError(409, "Space already reserved for an overlapping period") from exc
        except psycopg2.errors.CheckViolation as exc:
            raise HTTPError(422, "Invalid reservation window: %s" % exc.diag.constraint_name) from exc

    def cancel_reservation(self, request, reservation_id):
        claims = self._claims(request, required=False)
        with self.db.transaction() as cur:
            token_tenant = self._authorize(cur, claims) if claims else None
            cur.execute("SELECT tenant_id, status FROM reservations WHERE id = %s FOR UPDATE",
                        (reservation_id,))
            row = cur.fetchone()
            if not row or (token_tenant and str(row["tenant_id"]) != str(token_tenant)):
                raise HTTPError(404, "Reservation not found")
            if row["status"] not in ("pending", "confirmed", "active"):
                raise HTTPError(409, "Reservation is already %s" % row["status"])
            set_tenant(cur, row["tenant_id"])
            cur.execute("UPDATE reservations SET status = 'cancelled', updated_at = now()"
                        " WHERE id = %s RETURNING " + self.RESERVATION_COLUMNS, (reservation_id,))
            return 200, cur.fetchone()

    # ---- ChirpStack receiver ----------------------------------------------------------------

    def uplink(self, request):
        """ChirpStack HTTP integration receiver. The ``event`` query parameter is ignored, as
        in V5: join/status/log events land here too and are handled like uplinks."""
        started = time.monotonic()
        try:
            up = parse_uplink(request.body)
        except BadRequest as exc:
            raise HTTPError(400, str(exc)) from exc

        def work():
            with self.db.transaction(CLASSIFY_UPLINK, {"eui": up["dev_eui"]}) as cur:
                return process_uplink(cur, up)

        result = svc.run_uplink(LOG, up, work)
        result["processing_time_ms"] = round((time.monotonic() - started) * 1000, 2)
        return 200, result


class Handler(svc.JSONHandler):
    server_version = "parking-api-lab/" + VERSION
    timeout = 30  # seconds a client may take to send its request
    log = LOG
    app = None  # set in main()


def main():
    svc.configure_logging()
    secret = svc.env_jwt_secret(LOG)
    if secret is None:
        return 2
    dsn = svc.env_database_url(LOG)
    if dsn is None:
        return 2
    db = Database(dsn)
    try:
        with db.transaction() as cur:
            cur.execute("SELECT 1")
        LOG.info("database reachable")
    except Exception as exc:
        LOG.warning("database not reachable yet (%s); /health reports degraded", exc)

    Handler.app = App(db, secret)
    server, port = svc.make_server(Handler)
    svc.stop_on_signals(server, LOG)
    LOG.info("V5 API stand-in %s listening on port %d", VERSION, port)
    server.serve_forever(poll_interval=0.2)
    server.server_close()  # waits for in-flight requests
    db.close()
    LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
