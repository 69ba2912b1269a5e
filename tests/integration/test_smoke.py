"""parking_smoke against the running lab, through Traefik on 127.0.0.1 (the operator's path:
`ansible localhost -m parking_smoke`).

The lab serves V5 on the `api` host; V6 answers on `api-v6` once phase 2 ran. The V5 tests run
when `api` answers 5.x; the V6 test runs phases 1 and 2 first when an earlier test left V6 out
(never skipped: CI must exercise it), and rolls back what it deployed. The login is found in the
database as the API would pick it: a user whose primary tenant holds the probe sensor.
"""
import json
import os
import ssl
import subprocess

import pytest

import labutil as L
import p1util as U
from labdb import ROOT, lab_pg_params, run_playbook

PROBE = "58A0CB00001196F3"
PASSWORD = "lab-password"                         # every seeded lab user's password


def served(host):
    """'v5' / 'v6' from the host's /health version, or None when it does not answer one."""
    try:
        r = L.traefik(host, "/health", timeout=5)
        version = json.loads(r.data).get("version", "") if r.status == 200 else ""
    except Exception:  # not routed, not up: no backend
        return None
    return {"5": "v5", "6": "v6"}.get(version[:1])


def target(db):
    p = lab_pg_params()
    return {"login_host": p["host"], "login_port": p["port"], "login_user": p["user"],
            "login_password": p["password"], "db": db}


def base_args(backend, email, api_host="api", **extra):
    args = {"domain": L.DOMAIN, "api_host": api_host, "connect_host": "127.0.0.1",
            "connect_port": L.HTTPS_PORT, "ca_file": L.CA_FILE, "expect_backend": backend,
            "login_email": email, "login_password": PASSWORD, "probe_dev_eui": PROBE}
    args.update(extra)
    return args


def host_rules(api_host):
    """The default rules when V6 is deployed beside V5; the V5-only hosts otherwise."""
    if served("api-v6") == "v6":
        return None
    return {api_host: {"path": "/health", "status": 200, "content_type": "application/json",
                       "version_prefix": "expected"},
            "www": {"status": 200}, "adminer": {"status": 401, "auth": "basic"},
            "chirpstack": {"status": 200, "content_type": "text/html"}}


def by_name(result):
    return {c["name"]: c for c in result["checks"]}


def assert_no_secrets(result):
    text = json.dumps(result)
    assert PASSWORD not in text
    assert "eyJ" not in text, "a JWT (base64 of '{\"') leaked into the result"


@pytest.fixture(scope="module")
def v5_user():
    """A V5 user whose login lands in the probe's tenant (V5: oldest active membership)."""
    found = U.rows("parking_v5", """
        WITH primary_m AS (
            SELECT DISTINCT ON (um.user_id) um.user_id, um.tenant_id
              FROM user_memberships um JOIN tenants t ON t.id = um.tenant_id
             WHERE um.is_active IS NOT FALSE AND t.is_active IS NOT FALSE
             ORDER BY um.user_id, um.created_at, um.id)
        SELECT u.email, p.tenant_id::text FROM users u JOIN primary_m p ON p.user_id = u.id
         WHERE p.tenant_id = (SELECT tenant_id FROM spaces WHERE sensor_eui = %s AND deleted_at IS NULL)
           AND u.is_active IS NOT FALSE AND u.password_hash LIKE '$2b$%%'
           AND NOT EXISTS (SELECT 1 FROM user_memberships x WHERE x.user_id = u.id
                            AND x.role = 'platform_admin' AND x.is_active IS NOT FALSE)
         ORDER BY u.email LIMIT 1""", (PROBE,))
    assert found, "the seed has no plain V5 user in the probe sensor's tenant"
    return {"email": found[0][0], "tenant_id": found[0][1]}


@pytest.fixture(scope="module")
def v5_api():
    if served("api") != "v5":
        pytest.skip("the api host does not serve V5 (cutover in place?)")


def test_module_documentation_renders():
    out = subprocess.run([f"{ROOT}/.venv/bin/ansible-doc", "-M", "library", "parking_smoke"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "expect_backend" in out.stdout and "RETURN VALUES" in out.stdout


def test_v5_every_check_passes_websocket_skipped(v5_api, v5_user):
    args = base_args("v5", v5_user["email"], target=target("parking_v5"))
    rules = host_rules("api")
    if rules is not None:
        args["host_rules"] = rules
    rc, res = U.module("parking_smoke", args)
    assert rc == 0, res.get("msg")
    checks = by_name(res)
    assert list(checks) == ["health", "login", "devices", "spaces", "reservation", "websocket", "webhook",
                            "host_rules"]
    assert res["passed"] is True and res["failed_checks"] == [] and res["skipped_checks"] == ["websocket"]
    assert res["changed"] is False
    assert all(c["passed"] for n, c in checks.items() if n != "websocket"), checks
    assert checks["websocket"]["skipped"] and "V5 has no websocket" in checks["websocket"]["detail"]
    assert res["api_version"].startswith("5.")
    assert checks["login"]["facts"]["tenant_id"] == v5_user["tenant_id"]
    assert checks["spaces"]["facts"]["probe_space"] and checks["devices"]["facts"]["probe_space"]

    # the reservation was created, listed and cancelled, then deleted: no smoke booking stays in V5
    facts = checks["reservation"]["facts"]
    assert facts["final_state"] == "cancelled" and facts["listed"] and facts["deleted"] is True
    assert U.rows("parking_v5", "SELECT count(*) FROM reservations WHERE id = %s", (facts["reservation_id"],)) == [(0,)]

    # the probe reading is in V5 with the probe's fCnt, the occupancy sent and the tenant
    probe = checks["webhook"]["facts"]["probe"]
    assert probe["api_status"] == "processed" and probe["device_kind"] == "sensor"
    stored = U.rows("parking_v5", "SELECT occupancy_state, tenant_id::text FROM sensor_readings"
                                " WHERE device_eui = %s AND fcnt = %s", (PROBE, probe["fcnt"]))
    assert stored == [("OCCUPIED" if probe["occupied"] else "FREE", v5_user["tenant_id"])]
    assert 0 < res["probe"]["fcnt_base"] < 2**31 - 1
    assert [u["fcnt"] for u in res["probe"]["uplinks"]] == [probe["fcnt"]]
    assert_no_secrets(res)


def test_v5_a_second_run_uses_new_fcnt_and_window(v5_api, v5_user):
    args = base_args("v5", v5_user["email"], checks=["reservation", "webhook"], target=target("parking_v5"))
    first = U.module("parking_smoke", args)[1]
    second = U.module("parking_smoke", args)[1]
    assert first["passed"] and second["passed"], (first.get("msg"), second.get("msg"))
    f1, f2 = (by_name(r)["webhook"]["facts"]["probe"]["fcnt"] for r in (first, second))
    assert f2 > f1
    w1, w2 = (by_name(r)["reservation"]["facts"]["start_time"] for r in (first, second))
    assert w1 != w2


def test_check_mode_runs_only_read_checks(v5_api, v5_user):
    args = base_args("v5", v5_user["email"], checks=["health", "login", "spaces", "reservation", "webhook"])
    before = U.rows("parking_v5", "SELECT count(*) FROM reservations")[0][0]
    rc, res = U.module("parking_smoke", args, check=True)
    assert rc == 0, res.get("msg")
    assert res["check_mode"] is True and res["skipped_checks"] == ["reservation", "webhook"]
    assert res["probe"]["uplinks"] == []
    assert U.rows("parking_v5", "SELECT count(*) FROM reservations")[0][0] == before
    assert_no_secrets(res)


def test_wrong_backend_fails_naming_health(v5_api, v5_user):
    args = base_args("v6", v5_user["email"], timeout=3)
    rc, res = U.module("parking_smoke", args)
    assert rc != 0 and res.get("failed")
    assert "health" in res["failed_checks"]
    assert "health (" in res["msg"] and "is not V6" in res["msg"]
    checks = by_name(res)
    # nothing written to the backend that should not be there
    assert {"reservation", "websocket", "webhook"} <= set(res["skipped_checks"])
    assert "not V6" in checks["webhook"]["detail"] and res["probe"]["uplinks"] == []
    assert_no_secrets(res)


def test_bad_options_and_a_refused_login_fail():
    rc, res = U.module("parking_smoke", base_args("v5", "ops@verdegris.eu", probe_dev_eui="XYZ"))
    assert rc != 0 and "probe_dev_eui must be 16 hex digits" in res["msg"]
    rc, res = U.module("parking_smoke", base_args("v5", "nobody@example.org", checks=["login"]))
    assert rc != 0 and res["failed_checks"] == ["login"] and "401" in res["msg"]
    assert_no_secrets(res)


def test_untrusted_certificate_fails_the_checks(v5_api):
    """The system CAs do not know the lab CA: verification must fail, never be skipped."""
    bundle = ssl.get_default_verify_paths().cafile
    if not bundle or not os.path.exists(bundle):
        pytest.skip("no system CA bundle to stand in for a wrong CA")
    rc, res = U.module("parking_smoke", base_args("v5", "ops@verdegris.eu", ca_file=bundle, checks=["health"]))
    assert rc != 0 and res["failed_checks"] == ["health"]
    assert "TLS certificate of api." in res["msg"] and "not trusted" in res["msg"]


def probe_device():
    return U.rows("parking_v6", "SELECT tenant_id::text FROM sensor_devices WHERE dev_eui = %s"
                                " AND assigned_space_id IS NOT NULL", (PROBE,))


@pytest.fixture(scope="module")
def v6_deployed():
    """V6 migrated and deployed on api-v6 (phases 1 and 2, run here when an earlier test left the
    lab without them); what this fixture deployed is rolled back afterwards (rollback-2)."""
    deployed = False
    if not probe_device():
        run_playbook("playbooks/01-migrate-data.yml")
    if served("api-v6") != "v6":
        run_playbook("playbooks/02-deploy-v6.yml")
        deployed = True
    assert served("api-v6") == "v6", "phase 2 passed but api-v6 does not answer 6.x"
    yield
    if deployed:
        run_playbook("playbooks/rollback.yml", "--tags", "rollback-2")


@pytest.fixture(scope="module")
def v6_user(v6_deployed):
    """A V6 user whose login picks the probe device's tenant (V6: the newest active membership)."""
    device = probe_device()
    assert device, "phase 1 passed but the probe sensor is not assigned in V6"
    memberships = U.rows("parking_v6", """
        SELECT u.email, m.tenant_id::text, t.type, m.created_at
          FROM users u JOIN user_memberships m ON m.user_id = u.id JOIN tenants t ON t.id = m.tenant_id
         WHERE u.is_active AND m.is_active ORDER BY u.email""")
    per_user = {}
    for email, tenant, kind, created in memberships:
        per_user.setdefault(email, []).append((created, tenant, kind))
    for email, ms in sorted(per_user.items()):
        if any(kind == "platform" for *_, kind in ms):
            continue
        chosen = max(ms)
        if chosen[1] == device[0][0]:
            return {"email": email, "tenant_id": chosen[1]}
    pytest.fail("no plain V6 user lands in the probe's tenant: the lab seed must give one")


def test_v6_on_its_own_host_every_check_passes(v6_user):
    args = base_args("v6", v6_user["email"], api_host="api-v6", target=target("parking_v6"))
    rc, res = U.module("parking_smoke", args)
    assert rc == 0, res.get("msg")
    checks = by_name(res)
    assert res["passed"] and res["skipped_checks"] == [] and all(c["passed"] for c in checks.values())
    assert res["api_host"] == f"api-v6.{L.DOMAIN}" and res["api_version"].startswith("6.")
    ws = checks["websocket"]["facts"]
    assert ws["space_code"] == checks["spaces"]["facts"]["probe_space"]
    stored = checks["webhook"]["facts"]["stored"]
    assert stored["tenant_id"] == stored["device_tenant"] == v6_user["tenant_id"]
    dedup = checks["webhook"]["facts"]["probe"]["deduplication_id"]
    assert U.rows("parking_v6", "SELECT count(*) FROM sensor_readings WHERE dev_eui = %s"
                              " AND strpos(raw_payload, %s) > 0", (PROBE, dedup)) == [(1,)]
    assert_no_secrets(res)


def test_error_rate_passes_on_a_served_host_and_fails_on_a_broken_one():
    """The canary gate's error-rate check: 0 errors through Traefik to a healthy api host;
    a host Traefik cannot serve (contact-api is unhealthy by design) is all errors."""
    ok_args = dict(base_args(served("api") or "v5", "nobody@invalid"),
                   checks=["error_rate"], error_rate_requests=10)
    rc, res = U.module("parking_smoke", ok_args)
    assert rc == 0, res.get("msg")
    assert by_name(res)["error_rate"]["facts"]["errors"] == 0
    bad_args = dict(ok_args, api_host="contact")
    rc, res = U.module("parking_smoke", bad_args)
    assert rc != 0
    assert "error rate 100.0%" in by_name(res)["error_rate"]["detail"]
