"""The individual smoke checks (SmokeRun.check_<name>), the driver that runs them in order,
skipping what must not run, and ``run``, the entry point of library/parking_smoke.py.

Part of the package module_utils/parking/smoke (see its __init__). Plain Python.
"""
import time
from urllib.parse import quote

from ..errors import ParkingError
from .options import (POLL_INTERVAL, READ_CHECKS, RESERVATION_MINUTES, RESERVATION_SLOTS, ROUTING_HEADER,
                      WRITE_CHECKS, normalise_options, reservation_window)
from .payloads import _tenant_leaks, evaluate_host_rule, ws_payload
from .results import CheckFailed, check_result, summarise
from .steps import SmokeSteps
from .websocket import WebSocketClient


class SmokeRun(SmokeSteps):
    """One run of the checks. ``db_factory`` opens the target database connection (or None)."""

    # ---- checks -----------------------------------------------------------------------------

    def check_health(self):
        """GET /health answers 200, the expected backend's version, healthy. Another backend's
        answer is asked again for up to failover_grace seconds: Traefik's failover sends V6's share
        to V5 while V6's active health check fails (one /health slower than its time-out on a busy
        host takes V6 out until the next check passes), which costs no request; a V6 that stays
        out fails the check."""
        started, fallbacks = time.monotonic(), 0
        while True:
            resp = self.http.request(self.api, "GET", "/health")
            if resp.status != 200:
                raise CheckFailed(f"GET /health on {self.http.vhost(self.api)} answered {resp.status}: {resp.detail()}")
            data = resp.json("GET /health")
            version = data.get("version") if isinstance(data, dict) else None
            status = data.get("status") if isinstance(data, dict) else None
            self.api_version = version
            waited = round(time.monotonic() - started, 3)
            facts = {"version": version, "status": status, "host": self.http.vhost(self.api),
                     "other_backend_answers": fallbacks, "waited_s": waited}
            if isinstance(version, str) and version.startswith(self.prefix):
                break
            fallbacks += 1
            if waited >= self.o["failover_grace"]:
                self.wrong_backend = version
                raise CheckFailed(f"{self.http.vhost(self.api)} is not {self.o['expect_backend'].upper()}: "
                                  f"/health version {version!r}, expected {self.prefix}x (asked {fallbacks} times "
                                  f"in {waited:g} s)", facts)
            time.sleep(POLL_INTERVAL)
        if status != "healthy":
            raise CheckFailed(f"{self.http.vhost(self.api)} /health status {status!r} (version {version})", facts)
        after = f" (another backend answered {fallbacks} times in {waited:g} s first: Traefik's failover)" if fallbacks else ""
        return f"{self.http.vhost(self.api)} answers {version}, {status}{after}", facts

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
