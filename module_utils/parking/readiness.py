"""Phase-2 readiness gate: the deployed V6, through its own host, on the data phase 1 migrated.

PRIVATE to parking-migrate; the engine of library/parking_v6_readiness.py. It speaks only the
real V6 contract (docs/v6-contract.md) and reads ``parking_v6`` as its owner to know what V6
must show. Checks, each collected (the gate lists every failure with request and response):

* ``health``       ``GET /health`` answers 200, version 6.x, healthy.
* ``login``        ``POST /api/auth/login`` (OAuth2 form) with the smoke account gives a token that
                   ``GET /api/auth/me`` accepts; ``GET /api/v6/spaces`` without a token is 401.
* ``tenant:<slug>`` for every active tenant with an active user: a token for one of its migrated
                   users (signed with the deployment's JWT key: operators do not know users'
                   passwords), accepted by ``/api/auth/me`` for that tenant; then devices, spaces,
                   sites and reservations listed page by page and compared by id with
                   ``parking_v6`` (nothing missing, nothing of another tenant).
* ``occupancy``    an uplink for a migrated sensor on a space flips that space's ``current_state``
                   in ``parking_v6`` (2xx, no orphan); the websocket of the space's tenant receives
                   the update. Then everything the probe wrote is undone.
* ``reservation``  a reservation created on a space of a tenant, listed, cancelled, then deleted.
* ``retention``    V6's start-up cleanup deleted none of the readings phase 1 migrated.

Nothing it writes stays: probe readings, orphan rows, space states, device ``last_seen_at`` and
the reservation are put back or deleted in ``parking_v6`` (``undo``), also when a check fails.
"""
import base64
import datetime as dt
import hashlib
import hmac
import json
import time
import uuid
from urllib.parse import quote

from . import mapping
from .errors import ConfigError
from .smoke import (CheckFailed, Transport, WebSocketClient, build_up_event, fcnt_base, scrub,
                    validate_host)

CHECKS = ("health", "login", "tenants", "occupancy", "reservation", "retention")
PAGE_SIZES = {"devices": 100, "spaces": 500, "sites": 500, "reservations": 200}   # V6's maxima
LIST_KEYS = {"devices": "items", "spaces": "spaces", "sites": "sites", "reservations": "reservations"}
MAX_PAGES = 1000
POLL_INTERVAL = 0.2
# The probe's ``data``: readable alike as base64 (ChirpStack's encoding: first byte 0xD3 / 0x00,
# bit 0 = occupied) and as the hex the real V6 at ea5b72f reads ("01" = occupied, "AA" = free).
PROBE_DATA = {True: "01AA", False: "AAAA"}
# Tag of every probe uplink (deviceInfo.tags.source): a V6 that failed a probe may retry it from
# its spool after the gate cleaned up; ``clean`` (rollback-2) removes such late readings too.
PROBE_TAG = "parking-migrate-readiness"
DELETE_PROBE_READINGS = "DELETE FROM sensor_readings WHERE strpos(raw_payload::text, %s) > 0"
ROLE_RANK = {"owner": 4, "admin": 3, "operator": 2, "viewer": 1}
EXCERPT = 400


def normalise_options(params):
    p = dict(params)
    opts = {
        "domain": validate_host("domain", p.get("domain")),
        "api_host": validate_host("api_host", p.get("api_host") or "api-v6"),
        "live_host": validate_host("live_host", p["live_host"]) if p.get("live_host") else "",
        "connect_host": (p.get("connect_host") or "").strip(),
        "connect_port": int(p.get("connect_port") or 443),
        "ca_file": p.get("ca_file") or None,
        "jwt_secret": p.get("jwt_secret") or "",
        "token_minutes": int(p.get("token_minutes") or 10),
        "login_email": (p.get("login_email") or "").strip(),
        "login_password": p.get("login_password") or "",
        "probe_dev_eui": (p.get("probe_dev_eui") or "").strip().upper() or None,
        "platform_tenant_id": str(p.get("platform_tenant_id") or mapping.PLATFORM_TENANT_ID),
        "timeout": float(10.0 if p.get("timeout") is None else p["timeout"]),
        "checks": [c for c in CHECKS if c in (p.get("checks") or CHECKS)],
    }
    if len(opts["jwt_secret"]) < 32:
        raise ConfigError("jwt_secret must be the V6 deployment's JWT_SECRET_KEY (at least 32 characters)")
    if opts["timeout"] <= 0:
        raise ConfigError("timeout must be positive")
    if "login" in opts["checks"] and not (opts["login_email"] and opts["login_password"]):
        raise ConfigError("login_email and login_password are required for the login check")
    return opts


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def access_token(secret, user_id, tenant_id, email, role, minutes, now=None):
    """An HS256 access token with the claims V6's login issues (sub, tenant_id, email, role, exp,
    iat, type) - what V6's tenant-context dependency verifies and looks up."""
    issued = int(time.time() if now is None else now)
    claims = {"sub": str(user_id), "tenant_id": str(tenant_id), "email": email, "role": role,
              "exp": issued + 60 * int(minutes), "iat": issued, "type": "access"}
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


def exchange(method, path, resp=None, body=None, error=None):
    """Request and response of one HTTP exchange, for a failed check (bodies cut short)."""
    out = {"request": f"{method} {path}"}
    if body is not None:
        out["request_body"] = body if isinstance(body, str) else json.dumps(body, default=str)[:EXCERPT]
    if resp is not None:
        out["status"] = resp.status
        out["response"] = resp.body[:EXCERPT].decode("utf-8", "replace")
    if error is not None:
        out["error"] = str(error)
    return out


def pick_users(rows):
    """One user per tenant: the highest role, then the oldest membership, then the user id."""
    best = {}
    for r in rows:
        key = (-ROLE_RANK.get(r["role"], 0), str(r["created_at"]), str(r["user_id"]))
        if r["tenant_id"] not in best or key < best[r["tenant_id"]][0]:
            best[r["tenant_id"]] = (key, r)
    return [v[1] for _, v in sorted(best.items(), key=lambda kv: kv[1][1]["slug"] or "")]


def compare_ids(entity, got, expected, optional=()):
    """Problems between the ids an API listed and those V6 holds for the tenant."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected) - set(optional))
    out = []
    if missing:
        out.append(f"{entity}: {len(missing)} of {len(expected)} missing (e.g. {', '.join(missing[:3])})")
    if extra:
        out.append(f"{entity}: {len(extra)} not of this tenant (e.g. {', '.join(extra[:3])})")
    return out


class Gate:
    def __init__(self, opts, db_factory, clock=time.time):
        self.o = opts
        self.http = Transport(opts["domain"], opts["connect_host"], opts["connect_port"], opts["ca_file"],
                              opts["timeout"])
        self.api = opts["api_host"]
        self.db_factory = db_factory
        self.clock = clock
        self.results = []
        self.undo = []                 # (sql, params) run in reverse order at the end
        self.version = None
        self._conn = None

    # ---- plumbing -----------------------------------------------------------------------------

    def call(self, method, path, token=None, body=None, form=None):
        """(response, exchange) of one request; CheckFailed carries the exchange when unreachable."""
        try:
            resp = self.http.request(self.api, method, path, body, token=token, form=form)
        except CheckFailed as exc:
            raise CheckFailed(str(exc), {"exchanges": [exchange(method, path, body=body or form, error=exc)]})
        return resp, exchange(method, path, resp, body=body if form is None else {k: v for k, v in form.items()
                                                                                   if k != "password"})

    def expect(self, resp, ex, statuses, what):
        if resp.status not in statuses:
            raise CheckFailed(f"{what} answered {resp.status}: {resp.detail()}", {"exchanges": [ex]})
        try:
            return json.loads(resp.body)
        except (ValueError, UnicodeDecodeError):
            raise CheckFailed(f"{what} answered {resp.status} with no JSON body", {"exchanges": [ex]}) from None

    def conn(self):
        """One connection to the target for the whole run (closed by ``run``); each query or batch
        of statements is its own transaction, so every read sees what V6 has committed by then."""
        if self._conn is None or self._conn.closed:
            self._conn = self.db_factory()
        return self._conn

    def query(self, sql, params=None):
        conn = self.conn()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                cols = [c.name for c in cur.description]
                rows = [dict(zip(cols, r)) for r in cur.fetchall()]
            conn.commit()
            return rows
        except Exception:
            conn.rollback()
            raise

    def execute(self, statements):
        conn = self.conn()
        try:
            with conn.cursor() as cur:
                for sql, params in statements:
                    cur.execute(sql, params)
            conn.commit()
        except Exception:
            conn.rollback()
            raise

    def record(self, name, fn):
        started = time.monotonic()
        try:
            detail, facts = fn()
            passed = True
        except CheckFailed as exc:
            detail, facts, passed = str(exc), exc.facts or {}, False
        except Exception as exc:      # a bug or a database error must not hide the other checks
            detail, facts, passed = f"{type(exc).__name__}: {exc}", {}, False
        evidence = "; ".join(f"{e.get('request')} -> {e.get('status', e.get('error'))}"
                             + (f": {e['response'][:160]}" if e.get("response") else "")
                             for e in facts.get("exchanges", [])[:3])
        self.results.append({"name": name, "passed": passed, "detail": detail, "evidence": evidence,
                             "ms": round((time.monotonic() - started) * 1000, 1), "facts": facts})

    def skip(self, name, why):
        self.results.append({"name": name, "passed": True, "skipped": True, "detail": why, "evidence": "",
                             "ms": 0, "facts": {}})

    def live_backend(self):
        """Version the public API host answers (V5 before the cutover), or None when unreachable."""
        try:
            resp = self.http.request(self.o["live_host"], "GET", "/health")
            return json.loads(resp.body).get("version") if resp.status == 200 else None
        except (CheckFailed, ValueError, AttributeError):
            return None

    # ---- data from parking_v6 -------------------------------------------------------------------

    def tenant_users(self):
        rows = self.query("""
            SELECT t.id::text AS tenant_id, t.slug, t.type, u.id::text AS user_id, u.email, m.role, m.created_at
              FROM user_memberships m JOIN users u ON u.id = m.user_id JOIN tenants t ON t.id = m.tenant_id
             WHERE m.is_active IS TRUE AND u.is_active IS TRUE AND t.is_active IS TRUE""")
        return pick_users(rows)

    def token_for(self, user):
        return access_token(self.o["jwt_secret"], user["user_id"], user["tenant_id"], user["email"], user["role"],
                            self.o["token_minutes"], self.clock())

    def sees_all(self, user):
        return (user["type"] == "platform" and user["role"] in ("owner", "admin")
                and user["tenant_id"] == self.o["platform_tenant_id"])

    def list_all(self, entity, token, exchanges):
        """Every row of a V6 list, page by page (the real V6 caps page_size)."""
        rows, page, size = [], 1, PAGE_SIZES[entity]
        while page <= MAX_PAGES:
            path = f"/api/v6/{entity}?page={page}&page_size={size}"
            resp, ex = self.call("GET", path, token)
            exchanges.append(ex)
            data = self.expect(resp, ex, (200,), f"GET {path}")
            items = data.get(LIST_KEYS[entity]) if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise CheckFailed(f"GET {path} answered no {LIST_KEYS[entity]!r} list", {"exchanges": [ex]})
            rows += items
            total = data.get("total")
            if not items or len(items) < size or (isinstance(total, int) and len(rows) >= total):
                return rows
            page += 1
        raise CheckFailed(f"GET /api/v6/{entity}: more than {MAX_PAGES} pages")

    # ---- checks -------------------------------------------------------------------------------

    def check_health(self):
        """Waits (at most ``timeout``) while Traefik has not loaded V6's route yet (404/502/503)."""
        deadline = time.monotonic() + self.o["timeout"]
        while True:
            resp, ex = self.call("GET", "/health")
            if resp.status not in (404, 502, 503) or time.monotonic() >= deadline:
                break
            time.sleep(POLL_INTERVAL)
        data = self.expect(resp, ex, (200,), "GET /health")
        self.version = data.get("version") if isinstance(data, dict) else None
        if not str(self.version or "").startswith("6.") or data.get("status") != "healthy":
            raise CheckFailed(f"{self.http.vhost(self.api)} /health answered {data!r}, expected a healthy 6.x",
                              {"exchanges": [ex]})
        return f"{self.http.vhost(self.api)} answers {self.version}", {}

    def check_login(self):
        form = {"username": self.o["login_email"], "password": self.o["login_password"]}
        resp, ex = self.call("POST", "/api/auth/login", form=form)
        data = self.expect(resp, ex, (200,), f"POST /api/auth/login as {self.o['login_email']}")
        token = data.get("access_token") if isinstance(data, dict) else None
        user = data.get("user") if isinstance(data, dict) else None
        if not token or not isinstance(user, dict):
            raise CheckFailed("POST /api/auth/login answered 200 without access_token and user", {"exchanges": [ex]})
        resp, ex2 = self.call("GET", "/api/auth/me", token)
        me = self.expect(resp, ex2, (200,), "GET /api/auth/me with the login's token")
        resp, ex3 = self.call("GET", "/api/v6/spaces")
        if resp.status != 401:
            raise CheckFailed(f"GET /api/v6/spaces without a token answered {resp.status}, expected 401",
                              {"exchanges": [ex3]})
        return (f"{self.o['login_email']} logged in to {user.get('tenant_slug')} as {user.get('role')};"
                f" /api/auth/me agrees ({me.get('tenant_slug')}); no token -> 401"), {
                    "tenant_id": user.get("tenant_id"), "role": user.get("role")}

    def expected(self, user):
        t = {"t": user["tenant_id"]}
        mine = " WHERE tenant_id = %(t)s::uuid"
        # V6 lists every tenant's devices to a platform admin viewing the platform tenant; sites,
        # spaces and reservations always to the token's tenant only (docs/v6-contract.md)
        ids = {e: {r["id"] for r in self.query(f"SELECT id::text AS id FROM {table}{where}", t)}
               for e, table, where in (("devices", "sensor_devices", "" if self.sees_all(user) else mine),
                                       ("sites", "sites", mine), ("reservations", "reservations", mine))}
        spaces = self.query("SELECT id::text AS id, deleted_at IS NOT NULL AS deleted FROM spaces"
                            " WHERE tenant_id = %(t)s::uuid", t)
        ids["spaces"] = {r["id"] for r in spaces if not r["deleted"]}
        deleted = {r["id"] for r in spaces if r["deleted"]}
        migrated = self.query("""SELECT entity, count(*) AS n FROM parking_migrate.id_map m
                                  WHERE entity IN ('sensor_devices', 'spaces', 'sites', 'reservations')
                                  GROUP BY 1""") if self.ledger_exists() else []
        return ids, deleted, {r["entity"]: r["n"] for r in migrated}

    def ledger_exists(self):
        return bool(self.query("SELECT to_regclass('parking_migrate.id_map') IS NOT NULL AS ok")[0]["ok"])

    def check_tenant(self, user):
        token = self.token_for(user)
        exchanges = []
        resp, ex = self.call("GET", "/api/auth/me", token)
        exchanges.append(ex)
        me = self.expect(resp, ex, (200,), f"GET /api/auth/me as {user['email']}")
        problems = []
        if str(me.get("tenant_id")) != user["tenant_id"]:
            problems.append(f"/api/auth/me answered tenant {me.get('tenant_id')}, token for {user['tenant_id']}")
        expected, deleted, _ = self.expected(user)
        counts = {}
        evidence = []
        for entity in ("devices", "spaces", "sites", "reservations"):
            calls = []
            try:
                rows = self.list_all(entity, token, calls)
            except CheckFailed as exc:
                problems.append(str(exc))
                evidence += (exc.facts or {}).get("exchanges", [])
                continue
            got = {str(r.get("id")) for r in rows if isinstance(r, dict)}
            counts[entity] = f"{len(got)}/{len(expected[entity])}"
            wrong = compare_ids(entity, got, expected[entity], deleted if entity == "spaces" else ())
            problems += wrong
            evidence += calls[-1:] if wrong else []
        facts = {"user": user["email"], "role": user["role"], "listed": counts}
        if problems:
            raise CheckFailed("; ".join(problems), dict(facts, exchanges=evidence or exchanges))
        return (f"as {user['email']} ({user['role']}): " + ", ".join(f"{k} {v}" for k, v in counts.items())
                + " - same ids as parking_v6"), facts

    # occupancy ---------------------------------------------------------------------------------

    def probe_sensor(self, tenants):
        """A migrated sensor on a live space of a tenant that has users (the configured probe first)."""
        rows = self.query("""
            SELECT d.id::text AS device_id, d.dev_eui, d.tenant_id::text AS tenant_id, d.last_seen_at,
                   d.updated_at AS device_updated_at, s.id::text AS space_id, s.code, s.current_state,
                   s.sensor_state, s.state_changed_at, s.updated_at AS space_updated_at,
                   (SELECT max(r.fcnt) FROM sensor_readings r WHERE r.dev_eui = d.dev_eui) AS max_fcnt
              FROM sensor_devices d JOIN spaces s ON s.id = d.assigned_space_id AND s.deleted_at IS NULL
             WHERE d.tenant_id = ANY(%(t)s::uuid[]) AND s.current_state IN ('free', 'occupied', 'unknown')
             ORDER BY (d.dev_eui = %(p)s) DESC, d.dev_eui LIMIT 1""",
                          {"t": list(tenants), "p": self.o["probe_dev_eui"] or ""})
        return rows[0] if rows else None

    def check_occupancy(self, users):
        by_tenant = {u["tenant_id"]: u for u in users}
        probe = self.probe_sensor(by_tenant)
        if probe is None:
            raise CheckFailed("no migrated sensor sits on a live space of a tenant with users: nothing to probe")
        occupied = probe["current_state"] != "occupied"
        want = "occupied" if occupied else "free"
        orphan_before = self.query("SELECT 1 FROM orphan_devices WHERE dev_eui = %s", (probe["dev_eui"],))
        self.undo.append(("UPDATE spaces SET current_state = %s, sensor_state = %s, state_changed_at = %s,"
                          " updated_at = %s WHERE id = %s::uuid",
                          (probe["current_state"], probe["sensor_state"], probe["state_changed_at"],
                           probe["space_updated_at"], probe["space_id"])))
        self.undo.append(("UPDATE sensor_devices SET last_seen_at = %s, updated_at = %s WHERE id = %s::uuid",
                          (probe["last_seen_at"], probe["device_updated_at"], probe["device_id"])))
        fcnt = max(fcnt_base(self.clock()), (probe["max_fcnt"] or 0) + 1)
        self.undo.append((DELETE_PROBE_READINGS, (PROBE_TAG,)))
        if not orphan_before:
            self.undo.append(("DELETE FROM orphan_devices WHERE dev_eui = %s", (probe["dev_eui"],)))
        user = by_tenant[probe["tenant_id"]]
        facts = {"dev_eui": probe["dev_eui"], "space": probe["code"], "from": probe["current_state"], "to": want,
                 "fcnt": fcnt}
        problems, exchanges = [], []
        ws = None
        try:
            ws = WebSocketClient.connect(self.http, self.api, "/ws?token=" + quote(self.token_for(user), safe=""),
                                         self.o["timeout"])
            deadline = time.monotonic() + self.o["timeout"]
            if ws.wait_for(lambda m: m.get("type") == "connected", deadline) is None:
                problems.append("websocket: no 'connected' message")
            ws.send_json({"type": "subscribe", "channel": "spaces"})
            if ws.wait_for(lambda m: m.get("type") == "subscribed", deadline) is None:
                problems.append("websocket: subscribe to 'spaces' not acknowledged")
        except CheckFailed as exc:
            problems.append(f"websocket: {exc}")
            ws = None
        event = build_up_event(probe["dev_eui"], fcnt, occupied)
        event["data"] = PROBE_DATA[occupied]
        event["deviceInfo"]["tags"] = {"source": PROBE_TAG}
        path = "/api/v1/uplink?event=up"
        sent_at = time.monotonic()
        resp, ex = self.call("POST", path, body=event)
        exchanges.append(ex)
        answer = {}
        if not 200 <= resp.status < 300:
            problems.append(f"POST {path} answered {resp.status}: {resp.detail()}")
        else:
            try:
                answer = json.loads(resp.body)
            except (ValueError, UnicodeDecodeError):
                answer = {}
            if answer.get("status") == "orphan":
                problems.append(f"V6 stored the uplink of migrated sensor {probe['dev_eui']} as an orphan")
        state = self.poll_state(probe["space_id"], want)
        facts["space_state_after"] = state
        if state != want:
            problems.append(f"space {probe['code']} is {state!r} in parking_v6 after the uplink, expected {want!r}")
        if ws is not None:
            try:
                update = ws.wait_for(lambda m: probe["space_id"] in json.dumps(m, default=str)
                                     and m.get("type") not in ("connected", "subscribed"),
                                     sent_at + self.o["timeout"])
                if update is None:
                    problems.append(f"websocket: no update for space {probe['code']} within {self.o['timeout']:g}s")
                else:
                    facts["websocket"] = update.get("type")
            finally:
                ws.close()
        if problems:
            raise CheckFailed("; ".join(problems), dict(facts, exchanges=exchanges))
        return (f"uplink fCnt {fcnt} for {probe['dev_eui']} turned {probe['code']} {probe['current_state']} -> "
                f"{want}; websocket {facts.get('websocket')}; undone"), facts

    def poll_state(self, space_id, want):
        deadline = time.monotonic() + self.o["timeout"]
        while True:
            state = self.query("SELECT current_state FROM spaces WHERE id = %s::uuid", (space_id,))[0]["current_state"]
            if state == want or time.monotonic() >= deadline:
                return state
            time.sleep(POLL_INTERVAL)

    # reservation -------------------------------------------------------------------------------

    def check_reservation(self, users):
        by_tenant = {u["tenant_id"]: u for u in users}
        spaces = self.query("""SELECT id::text AS id, code, tenant_id::text AS tenant_id FROM spaces
                                WHERE tenant_id = ANY(%(t)s::uuid[]) AND deleted_at IS NULL AND enabled IS NOT FALSE
                                ORDER BY code, id LIMIT 1""", {"t": list(by_tenant)})
        if not spaces:
            raise CheckFailed("no enabled live space in a tenant with users: nothing to reserve")
        space = spaces[0]
        token = self.token_for(by_tenant[space["tenant_id"]])
        request_id = f"parking-migrate-readiness-{uuid.uuid4()}"
        self.undo.append(("DELETE FROM reservations WHERE metadata->>'request_id' = %s", (request_id,)))
        # a one-hour window 3650 days ahead, at a minute derived from the request id: far from any booking
        start = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3650)).replace(second=0, microsecond=0)
        start += dt.timedelta(minutes=int(uuid.UUID(request_id[-36:])) % 100000)
        body = {"space_id": space["id"], "start_time": start.isoformat(),
                "end_time": (start + dt.timedelta(hours=1)).isoformat(), "request_id": request_id,
                "notes": "parking-migrate readiness check (deleted right after)"}
        exchanges = []
        resp, ex = self.call("POST", "/api/v6/reservations/", token, body=body)
        exchanges.append(ex)
        created = self.expect(resp, ex, (200, 201), f"POST /api/v6/reservations/ on {space['code']}")
        rid = str(created.get("id") or "")
        problems = []
        if not rid:
            problems.append("POST /api/v6/reservations/ answered no id")
        else:
            resp, ex = self.call("GET", f"/api/v6/reservations/{rid}", token)
            exchanges.append(ex)
            if resp.status != 200:
                problems.append(f"GET /api/v6/reservations/{rid} answered {resp.status}: {resp.detail()}")
            resp, ex = self.call("PUT", f"/api/v6/reservations/{rid}/cancel", token,
                                 body={"cancellation_reason": "parking-migrate readiness check"})
            exchanges.append(ex)
            if resp.status != 200:
                problems.append(f"PUT /api/v6/reservations/{rid}/cancel answered {resp.status}: {resp.detail()}")
        rows = self.query("SELECT status FROM reservations WHERE metadata->>'request_id' = %s", (request_id,))
        if rid and [r["status"] for r in rows] != ["cancelled"]:
            problems.append(f"parking_v6 holds {[r['status'] for r in rows]} for it, expected ['cancelled']")
        if problems:
            raise CheckFailed("; ".join(problems), {"exchanges": exchanges})
        return f"reserved {space['code']} {start:%Y-%m-%d %H:%M}Z, read it back, cancelled it; deleted", {
            "space": space["code"]}

    # retention ---------------------------------------------------------------------------------

    def check_retention(self):
        if not self.ledger_exists():
            raise CheckFailed("parking_v6 has no phase-1 ledger: run phase 1 before phase 2")
        prefix = mapping.sequential_uuid("sensor_readings", 0)[:18]
        runs = self.query("""SELECT coalesce(sum((counts->'sensor_readings'->>'inserted')::bigint), 0) AS n
                               FROM parking_migrate.runs
                              WHERE phase = 'phase1' AND status = 'succeeded' AND state = 'present'
                                AND NOT check_mode""")
        inserted = int(runs[0]["n"])
        present = int(self.query("SELECT count(*) AS n FROM sensor_readings WHERE id::text LIKE %s",
                                 (prefix + "%",))[0]["n"])
        facts = {"migrated": inserted, "present": present}
        if present < inserted:
            raise CheckFailed(f"{inserted - present} of the {inserted} readings phase 1 migrated are gone from "
                              "parking_v6 (V6 deletes readings older than its retention when it starts)", facts)
        return f"all {inserted} migrated readings still in parking_v6", facts

    # ---- run ------------------------------------------------------------------------------------

    def run(self):
        checks = self.o["checks"]
        if "health" in checks:
            self.record("health", self.check_health)
        if "login" in checks:
            self.record("login", self.check_login)
        users = self.tenant_users()
        if "tenants" in checks:
            if not users:
                self.record("tenants", lambda: (_ for _ in ()).throw(
                    CheckFailed("no active tenant has an active user in parking_v6")))
            for user in users:
                self.record(f"tenant:{user['slug']}", lambda u=user: self.check_tenant(u))
        live = self.live_backend() if self.o["live_host"] else None
        writes = [c for c in ("occupancy", "reservation") if c in checks]
        if str(live or "").startswith("6."):
            for name in writes:   # probes would race live uplinks and bookings: read-only from here on
                self.skip(name, f"V6 already serves {self.http.vhost(self.o['live_host'])} ({live}): "
                                "no probe writes on the live system")
            writes = []
        try:
            if "occupancy" in writes:
                self.record("occupancy", lambda: self.check_occupancy(users))
            if "reservation" in writes:
                self.record("reservation", lambda: self.check_reservation(users))
        finally:
            self.put_back()
        if "retention" in checks:
            self.record("retention", self.check_retention)
        failed = [r["name"] for r in self.results if not r["passed"]]
        return {"passed": not failed, "checks": self.results, "failed_checks": failed,
                "api_host": self.http.vhost(self.api), "api_version": self.version}

    def put_back(self):
        """Undo what the probes wrote, newest first; a failure here is a failed check of its own."""
        if self.undo:
            self.record("cleanup", lambda: (self.execute(list(reversed(self.undo))),
                                            (f"{len(self.undo)} probe writes undone in parking_v6", {}))[1])


def clean(db_factory):
    """Readings of probe uplinks a V6 stored after the gate cleaned up (retried from its spool)."""
    conn = db_factory()
    try:
        with conn.cursor() as cur:
            cur.execute(DELETE_PROBE_READINGS, (PROBE_TAG,))
            deleted = cur.rowcount
        conn.commit()
        return deleted
    finally:
        conn.close()


def failure_message(result):
    lines = [f"V6 is not ready on {result['api_host']}: {len(result['failed_checks'])} check(s) failed."
             " Nothing moved: V5 still serves every request."]
    for r in result["checks"]:
        if r["passed"]:
            continue
        lines.append(f"- {r['name']}: {r['detail']}")
        for ex in (r.get("facts") or {}).get("exchanges", [])[:4]:
            lines.append(f"    {ex.get('request')} -> {ex.get('status', ex.get('error'))}"
                         + (f": {ex['response'][:200]}" if ex.get("response") else ""))
    return "\n".join(lines)


def run(params, db_factory, clock=time.time):
    opts = normalise_options(params)
    gate = Gate(opts, db_factory, clock)
    try:
        result = gate.run()
    finally:
        if gate._conn is not None:
            gate._conn.close()
    return scrub(result, [opts["jwt_secret"], opts["login_password"]])
