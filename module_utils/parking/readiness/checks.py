"""Phase-2 readiness gate, the read-only checks: V6's /health, the smoke account's login, every
tenant's devices, spaces, sites and reservations listed through the API against the ids
parking_v6 holds, and the retention check (V6 kept every reading phase 1 migrated).

``ReadChecks`` is a mixin of gate.Gate: it uses GateBase's call, expect, query and list_all.
"""
import time

from .. import mapping
from ..smoke import CheckFailed
from .contract import POLL_INTERVAL, access_token, compare_ids, pick_users


class ReadChecks:
    """The checks that only read: health, login, tenant:<slug>, retention."""

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
