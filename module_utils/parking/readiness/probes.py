"""Phase-2 readiness gate, the probes that write: an uplink of a migrated sensor that must flip its
space in parking_v6 and reach the tenant's websocket (occupancy), and a reservation created, read
back and cancelled (reservation). Each records how to undo what it wrote; ``put_back`` undoes it
all in parking_v6 at the end, and ``clean`` (rollback-2) deletes probe readings a V6 stored late.

``WriteProbes`` is a mixin of gate.Gate: it uses GateBase's call, expect, query and execute.
"""
import datetime as dt
import json
import time
import uuid
from urllib.parse import quote

from ..smoke import CheckFailed, WebSocketClient, build_up_event, fcnt_base
from .contract import DELETE_PROBE_READINGS, POLL_INTERVAL, PROBE_DATA, PROBE_TAG


class WriteProbes:
    """The checks that write and undo: occupancy, reservation; put_back undoes them."""

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

    # cleanup -----------------------------------------------------------------------------------

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
