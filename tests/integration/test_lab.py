"""The lab: comes up from nothing, serves V5 through Traefik, takes simulator
uplinks, is idempotent, and `--tags down` removes exactly what it made."""
import json
import os
import subprocess

import pytest

from labdb import recap, run_playbook, scalar
from labutil import CA_FILE, DOMAIN, HTTP_PORT, sim, traefik, wait_for

# Production container names (reference/infrastructure.md §3)
HEALTHY = [
    "parking-postgres", "parking-redis", "parking-mosquitto", "parking-traefik", "parking-api",
    "parking-chirpstack", "parking-gateway-bridge", "parking-adminer", "parking-device-manager",
    "parking-filebrowser", "parking-website", "parking-kuando-ui",
]
UNHEALTHY_BY_DESIGN = ["parking-contact-api"]
NETWORK = "parking-v5_parking-network"


def inspect(name):
    out = subprocess.run(["docker", "inspect", name], capture_output=True, text=True)
    return json.loads(out.stdout)[0] if out.returncode == 0 else None


def health(name):
    info = inspect(name)
    return info and info["State"].get("Health", {}).get("Status")


def test_lab_comes_up_from_nothing_all_healthy(lab):
    for name in HEALTHY:
        assert health(name) == "healthy", name
    info = inspect(NETWORK)
    attached = {c["Name"] for c in info["Containers"].values()}
    assert set(HEALTHY + UNHEALTHY_BY_DESIGN) <= attached


def test_contact_api_is_unhealthy_by_design(lab):
    assert wait_for(lambda: health("parking-contact-api") == "unhealthy", timeout=30)


def test_v5_api_answers_through_traefik(lab):
    r = traefik("api", "/health")
    assert r.status == 200
    assert json.loads(r.data)["status"] == "healthy"


def test_http_redirects_to_https(lab):
    import urllib3
    r = urllib3.PoolManager(retries=False).request(
        "GET", f"http://127.0.0.1:{HTTP_PORT}/health", headers={"Host": f"api.{DOMAIN}"}, redirect=False)
    assert r.status in (301, 302, 307, 308)
    assert r.headers["Location"].startswith(f"https://api.{DOMAIN}")


def test_lab_certificate_is_signed_by_lab_ca(lab):
    assert os.path.exists(CA_FILE)
    # traefik() verifies the chain and the host name; a wrong cert raises SSLError
    assert traefik("api", "/health").status == 200


def test_v5_login_and_tenant_scoped_reads_through_traefik(lab, lab_db):
    v5 = lab_db("parking_v5")
    email = scalar(v5, """
        SELECT u.email FROM users u JOIN user_memberships m ON m.user_id = u.id AND m.is_active
        JOIN tenants t ON t.id = m.tenant_id AND t.is_active
        WHERE u.is_active AND m.role <> 'platform_admin' ORDER BY u.email LIMIT 1""")
    r = traefik("api", "/api/v1/auth/login", "POST", {"email": email, "password": "lab-password"})
    assert r.status == 200, r.data
    token = json.loads(r.data)["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    for path in ("/api/v1/spaces", "/api/v1/devices", "/api/v1/reservations"):
        r = traefik("api", path, headers=auth)
        assert r.status == 200, (path, r.data[:200])
        assert isinstance(json.loads(r.data), (list, dict))
    assert traefik("api", "/api/v1/spaces").status == 401


def test_other_v5_host_rules_answer(lab):
    assert traefik("www", "/").status == 200
    assert traefik("devices", "/healthz").status == 200
    assert traefik("chirpstack", "/").status == 200
    assert traefik("adminer", "/").status == 401  # admin-auth@file


def test_simulator_uplinks_land_in_parking_v5(lab, lab_db):
    v5 = lab_db("parking_v5")
    before = scalar(v5, "SELECT count(*) FROM sensor_readings")
    sim("/sim/control", {"running": True, "reset_totals": True})
    stats = wait_for(lambda: (lambda s: s if s["sent"] >= 100 else None)(sim("/sim/stats")), timeout=60)
    after = scalar(v5, "SELECT count(*) FROM sensor_readings")
    assert stats["sent"] >= 100, stats
    assert stats["conn_errors"] == 0 and stats["other_status"] == 0, stats
    assert stats["ok_2xx"] == stats["sent"] or stats["sent"] - stats["ok_2xx"] <= 32, stats  # in flight
    assert after > before


def test_lab_playbook_second_run_changes_nothing(lab):
    proc, seconds = run_playbook("playbooks/lab.yml")
    print(f"\n[lab] second run in {seconds:.1f}s")
    assert recap(proc.stdout)["changed"] == 0, proc.stdout[-4000:]


@pytest.mark.lab_teardown
def test_down_removes_everything_it_made_and_nothing_else(lab):
    canary = "parking-canary"
    subprocess.run(["docker", "network", "create", f"{canary}-net"], check=True, capture_output=True)
    subprocess.run(["docker", "volume", "create", f"{canary}-vol"], check=True, capture_output=True)
    subprocess.run(["docker", "create", "--name", canary, "parking-lab/base:latest", "true"],
                   check=True, capture_output=True)
    try:
        run_playbook("playbooks/lab.yml", "--tags", "down")
        left = subprocess.run(["docker", "ps", "-a", "-q", "--filter", "label=org.parking-migrate.lab"],
                              capture_output=True, text=True).stdout.split()
        assert left == []
        for name in HEALTHY + UNHEALTHY_BY_DESIGN + [NETWORK, "smart-parking_postgres_data"]:
            assert inspect(name) is None, name
        assert not os.path.exists("/var/lib/parking-lab")
        for name in (canary, f"{canary}-net", f"{canary}-vol"):
            assert inspect(name) is not None, name
    finally:
        subprocess.run(["docker", "rm", "-f", canary], capture_output=True)
        subprocess.run(["docker", "network", "rm", f"{canary}-net"], capture_output=True)
        subprocess.run(["docker", "volume", "rm", f"{canary}-vol"], capture_output=True)
