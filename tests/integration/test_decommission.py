"""Phase 4 and rollback-4 on scratch resources: seeded copies of the V5 databases
(parking_v5_p4, parking_platform_p4), a scratch V6 ledger (parking_v6_p4l) and scratch
containers standing in for V5's, so the lab's own V5 stays whole for the other tests.

What must hold: no confirmation (or the wrong host), routing still on V5 or V6 unhealthy ->
refused, nothing changed. With it: dumps restored into scratch databases and compared before
anything goes; containers saved then stopped (restart policy no, kept until the backups'
retention ends); databases dropped; a re-run changes nothing. rollback-4 refuses a tampered backup
file, then restores both databases to exactly what was verified and starts the same containers
again (full inspect equal). After the retention, phase 4 removes the stopped containers and
rollback-4 recreates them from their saved definitions. A live database that changed after its
backup is never dropped; a restored copy that differs is never recorded.
"""
import json
import os
import subprocess
import time

import pytest

import p1util as U
from labdb import ROOT, recap, run_playbook

SUFFIX = "_p4"
DBS = [f"parking_v5{SUFFIX}", f"parking_platform{SUFFIX}"]
LEDGER = f"parking_v6{SUFFIX}l"
IMAGE = "parking-lab/python:latest"
V5_CONTAINERS = ["parking-p4-api", "parking-p4-legacy"]
V6_CONTAINER = "parking-p4-v6"
HEALTH = "curl -fsS -o /dev/null http://127.0.0.1:8000/"


def docker(*args, check=True):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def start_container(name, labels=None, healthy=True):
    docker("rm", "-f", name, check=False)
    cmd = ["run", "-d", "--name", name, "--restart", "unless-stopped", "--label", "org.parking-migrate.test=p4",
           "-e", "DATABASE_URL=postgresql://parking_app:secret-in-env@parking-postgres/parking_v5",
           "--health-cmd", HEALTH if healthy else "false", "--health-interval", "1s",
           "--health-retries", "3", "-p", "127.0.0.1::8000"]
    for k, v in (labels or {}).items():
        cmd += ["--label", f"{k}={v}"]
    docker(*cmd, IMAGE, "python3", "-m", "http.server", "8000")


def health(name):
    out = docker("inspect", "-f", "{{.State.Health.Status}}", name, check=False)
    return out.stdout.strip() if out.returncode == 0 else "missing"


def run_state(name):
    """'<status> <restart policy>' of a container, or 'missing'."""
    out = docker("inspect", "-f", "{{.State.Status}} {{.HostConfig.RestartPolicy.Name}}", name, check=False)
    return out.stdout.strip() if out.returncode == 0 else "missing"


def wait_healthy(names, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(health(n) == "healthy" for n in names):
            return
        time.sleep(0.5)
    raise AssertionError({n: health(n) for n in names})


def _exists(name):
    conn = U.admin()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,))
            return cur.fetchone()[0] == 1
    finally:
        conn.close()


def ledger_sql(sql, params=None):
    conn = U.connect(LEDGER, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def backups_recorded():
    if ledger_sql("SELECT to_regclass('parking_migrate.backups') IS NULL")[0][0]:
        return 0
    return ledger_sql("SELECT count(*) FROM parking_migrate.backups")[0][0]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """Seeded scratch V5 databases, a scratch ledger with a completed cutover, scratch containers."""
    U.seeded(SUFFIX)
    U.clone_v6(SUFFIX, LEDGER)
    ledger_sql("CREATE SCHEMA IF NOT EXISTS parking_migrate; "
               "CREATE TABLE IF NOT EXISTS parking_migrate.cutover_state (key text PRIMARY KEY, value jsonb NOT NULL, "
               "updated_at timestamptz NOT NULL DEFAULT now()); "
               "INSERT INTO parking_migrate.cutover_state VALUES ('switched', '{}') ON CONFLICT DO NOTHING")
    start_container(V5_CONTAINERS[0], labels={"traefik.enable": "true",
                                              "traefik.http.routers.p4.rule": "Host(`p4.verdegris.test`)"})
    start_container(V5_CONTAINERS[1], healthy=False)
    start_container(V6_CONTAINER)
    wait_healthy([V5_CONTAINERS[0], V6_CONTAINER])
    work = tmp_path_factory.mktemp("p4")
    p = U.params("x")
    pg = {k: p[k] for k in ("login_host", "login_port")}
    extra = {
        "decommission_databases": DBS,
        "decommission_containers": V5_CONTAINERS,
        "decommission_wait_healthy": [V5_CONTAINERS[0]],
        "decommission_v6_api_container": V6_CONTAINER,
        "decommission_backup_dir": str(work / "backups"),
        "decommission_pg_ledger": dict(pg, login_user=p["login_user"], login_password=p["login_password"], db=LEDGER),
        "parking_reports_dir": str(work / "reports"),
        # the lab's edge serves the lab's own V5/V6, not these scratch containers: asked in its own test
        "decommission_edge_check": False,
    }
    vars_file = work / "vars.json"
    vars_file.write_text(json.dumps(extra))
    before = {db: U.fingerprint(db) for db in DBS}
    inspect = {n: json.loads(docker("inspect", n).stdout)[0] for n in V5_CONTAINERS}
    yield {"vars": f"@{vars_file}", "work": work, "before": before, "inspect": inspect}
    for n in V5_CONTAINERS + [V6_CONTAINER]:
        docker("rm", "-f", n, check=False)
    for db in DBS + [LEDGER] + [d + "_restore_check" for d in DBS]:
        U.drop(db)


def phase4(scratch, *extra, check=True):
    return run_playbook("playbooks/04-decommission.yml", "-e", scratch["vars"], *extra, check=check)


def assert_untouched(scratch):
    assert all(_exists(db) for db in DBS)
    assert health(V5_CONTAINERS[0]) == "healthy" and health(V5_CONTAINERS[1]) != "missing"
    assert not (scratch["work"] / "backups").exists() or not any((scratch["work"] / "backups").rglob("*.pgc"))
    assert backups_recorded() == 0
    assert {db: U.fingerprint(db) for db in DBS} == scratch["before"]


def test_refuses_without_the_confirmation(scratch):
    proc, _ = phase4(scratch, check=False)
    assert proc.returncode != 0
    assert "-e confirm_decommission=lab-host" in proc.stdout and "Nothing was changed" in proc.stdout
    proc, _ = phase4(scratch, "-e", "confirm_decommission=prod-host", check=False)
    assert proc.returncode != 0 and "You gave prod-host" in proc.stdout
    assert_untouched(scratch)


def test_check_mode_says_what_would_go_and_changes_nothing(scratch):
    proc, _ = phase4(scratch, "--check")
    assert "Would dump" in proc.stdout and "Would stop containers" in proc.stdout
    assert_untouched(scratch)


def test_refuses_while_routing_is_on_v5_or_v6_unhealthy(scratch):
    ledger_sql("DELETE FROM parking_migrate.cutover_state WHERE key = 'switched'")
    try:
        proc, _ = phase4(scratch, "-e", "confirm_decommission=lab-host", check=False)
        assert proc.returncode != 0 and "Routing is not on V6" in proc.stdout
    finally:
        ledger_sql("INSERT INTO parking_migrate.cutover_state VALUES ('switched', '{}') ON CONFLICT DO NOTHING")
    docker("stop", V6_CONTAINER)
    try:
        proc, _ = phase4(scratch, "-e", "confirm_decommission=lab-host", check=False)
        assert proc.returncode != 0 and "V5 stays until V6 is healthy" in proc.stdout
    finally:
        docker("start", V6_CONTAINER)
        wait_healthy([V6_CONTAINER])
    assert_untouched(scratch)


def test_refuses_when_the_live_edge_does_not_answer_from_v6(scratch):
    """The ledger says switched and V6's container is healthy, but through Traefik the api host
    does not answer from V6 (here: a host name Traefik does not route, so 404)."""
    edge = {"domain": "verdegris.test", "api_host": "not-routed", "connect_host": "127.0.0.1",
            "connect_port": 58443, "ca_file": "/var/lib/parking-lab/traefik/certs/ca.crt"}
    proc, _ = phase4(scratch, "-e", "confirm_decommission=lab-host", "-e",
                     json.dumps({"decommission_edge_check": True, "decommission_edge": edge}), check=False)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "says routing is on V6, but through Traefik not-routed.verdegris.test does not answer from V6" in proc.stdout
    assert "Nothing was changed" in proc.stdout
    assert_untouched(scratch)


def run_module(args):
    env = dict(os.environ, PATH=os.path.join(ROOT, ".venv", "bin") + os.pathsep + os.environ["PATH"],
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json")
    proc = subprocess.run(["ansible", "lab-host", "-m", "parking_decommission", "-a", json.dumps(args)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    try:
        out, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])  # profile_tasks adds lines
    except ValueError:
        raise AssertionError(f"ansible -m parking_decommission: {proc.stdout[-3000:]} {proc.stderr[-3000:]}") from None
    return out["plays"][0]["tasks"][0]["hosts"]["lab-host"]


def module_args(state, **extra):
    p = U.params("x")
    admin = {"login_host": p["login_host"], "login_port": p["login_port"], "login_user": U.ADMIN_USER,
             "login_password": U.ADMIN_PASSWORD}
    return dict(dict(state=state, databases=DBS, target=dict(U.params(LEDGER)), server=admin), **extra)


def test_a_differing_restore_is_never_recorded_and_a_changed_live_db_never_dropped(scratch, tmp_path):
    live, copy = DBS[1], f"{DBS[1]}_restore_check"
    dump = tmp_path / "platform.pgc"
    dump.write_bytes(b"not really a dump, the module only hashes it")
    U.admin_sql(f"DROP DATABASE IF EXISTS {copy} WITH (FORCE)", f"CREATE DATABASE {copy} TEMPLATE {live}")
    conn = U.connect(copy, autocommit=True)
    with conn.cursor() as cur:  # the copy lacks a row: a faulty restore
        table = "transform.processed_uplinks"  # a leaf table of the legacy schemas, seeded with rows
        cur.execute(f"DELETE FROM {table} WHERE ctid = (SELECT ctid FROM {table} LIMIT 1)")
        assert cur.rowcount == 1
    conn.close()
    res = run_module(module_args("backup_verified", backup={"db": live, "path": str(dump), "restored_db": copy}))
    assert res.get("failed") and f"{table}: rows differ" in res["msg"], res
    assert backups_recorded() == 0
    # a faithful copy is recorded once; then the live database changes -> the drop check refuses
    U.admin_sql(f"DROP DATABASE {copy} WITH (FORCE)", f"CREATE DATABASE {copy} TEMPLATE {live}")
    res = run_module(module_args("backup_verified", backup={"db": live, "path": str(dump), "restored_db": copy}))
    assert res["changed"] is True and res["verified"]["rows"] > 0, res
    assert run_module(module_args("backup_verified", backup={"db": live, "path": str(dump),
                                                             "restored_db": copy}))["changed"] is False
    conn = U.connect(live, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"DELETE FROM {table} WHERE ctid = (SELECT ctid FROM {table} LIMIT 1)")
    conn.close()
    res = run_module(module_args("unchanged_since_backup", databases=[live]))
    assert res.get("failed") and "changed since its backup" in res["msg"] and table in res["msg"], res
    assert _exists(live)
    # leave the scratch as the next test expects it: no backups recorded, live as it was
    ledger_sql("DELETE FROM parking_migrate.backups; DELETE FROM parking_migrate.decommission")
    U.admin_sql(f"DROP DATABASE {live} WITH (FORCE)", f"CREATE DATABASE {live} TEMPLATE {copy} OWNER parking_user",
                f"DROP DATABASE {copy} WITH (FORCE)")
    assert U.fingerprint(live) == scratch["before"][live]


def test_decommission_then_rollback4(scratch):
    proc, seconds = phase4(scratch, "-e", "confirm_decommission=lab-host")
    assert recap(proc.stdout)["failed"] == 0
    assert not any(_exists(db) for db in DBS)
    assert all(run_state(n) == "exited no" for n in V5_CONTAINERS), {n: run_state(n) for n in V5_CONTAINERS}
    rows = ledger_sql("SELECT db, path, sha256, retention_until - current_date FROM parking_migrate.backups ORDER BY db")
    assert [r[0] for r in rows] == sorted(DBS) and all(r[3] == 90 for r in rows)
    for db, path, sha, _ in rows:
        assert os.path.exists(path) and U_sha256(path) == sha
    state = ledger_sql("SELECT status, containers FROM parking_migrate.decommission ORDER BY id DESC LIMIT 1")[0]
    assert state == ("done", V5_CONTAINERS)
    saved = scratch["work"] / "backups" / "containers"
    assert sorted(os.listdir(saved)) == sorted(f"{n}.json" for n in V5_CONTAINERS)
    assert oct(os.stat(saved / f"{V5_CONTAINERS[0]}.json").st_mode & 0o777) == "0o600"
    assert "secret-in-env" not in proc.stdout  # the saved environment never reaches the log
    report = json.loads((scratch["work"] / "reports" / "phase4-decommission.json").read_text())
    assert report["status"] == "passed" and report["phase"] == 4 and len(report["sections"]["Backups"]) == 2
    again, _ = phase4(scratch, "-e", "confirm_decommission=lab-host")
    assert recap(again.stdout)["changed"] == 0

    # rollback-4 refuses a backup file that is not the verified one, and changes nothing
    path = rows[0][1]
    original = open(path, "rb").read()
    with open(path, "ab") as f:
        f.write(b"tampered")
    try:
        proc, _ = run_playbook("playbooks/rollback-4.yml", "-e", scratch["vars"], check=False)
        assert proc.returncode != 0 and "not the file phase 4 verified" in proc.stdout
        assert not any(_exists(db) for db in DBS)
    finally:
        with open(path, "wb") as f:
            f.write(original)

    proc, _ = run_playbook("playbooks/rollback-4.yml", "-e", scratch["vars"])
    assert {db: U.fingerprint(db) for db in DBS} == scratch["before"]
    wait_healthy([V5_CONTAINERS[0]])
    for n in V5_CONTAINERS:
        # the same container, as it was: everything but its run state
        now = json.loads(docker("inspect", n).stdout)[0]
        was = scratch["inspect"][n]
        for key in ("Id", "Name", "Image", "Config", "HostConfig", "Mounts", "Args", "Path"):
            assert now[key] == was[key], (n, key)
        assert now["NetworkSettings"]["Networks"].keys() == was["NetworkSettings"]["Networks"].keys()
    assert ledger_sql("SELECT status FROM parking_migrate.decommission ORDER BY id DESC LIMIT 1")[0][0] == "rolled_back"
    again, _ = run_playbook("playbooks/rollback-4.yml", "-e", scratch["vars"])
    assert recap(again.stdout)["changed"] == 0


def test_after_the_retention_phase4_removes_the_containers_and_rollback4_recreates_them(scratch):
    phase4(scratch, "-e", "confirm_decommission=lab-host")
    ledger_sql("UPDATE parking_migrate.backups SET retention_until = current_date - 1")
    proc, _ = phase4(scratch, "-e", "confirm_decommission=lab-host")
    assert recap(proc.stdout)["changed"] > 0
    assert all(run_state(n) == "missing" for n in V5_CONTAINERS)
    run_playbook("playbooks/rollback-4.yml", "-e", scratch["vars"])
    wait_healthy([V5_CONTAINERS[0]])
    for n in V5_CONTAINERS:
        now = json.loads(docker("inspect", n).stdout)[0]
        was = scratch["inspect"][n]
        assert now["Id"] != was["Id"]                   # recreated from the saved definition
        assert now["Config"]["Labels"] == was["Config"]["Labels"]
        assert now["Config"]["Env"] == was["Config"]["Env"]
        assert now["Config"]["Cmd"] == was["Config"]["Cmd"]
        assert now["HostConfig"]["PortBindings"] == was["HostConfig"]["PortBindings"]
        assert now["HostConfig"]["RestartPolicy"] == was["HostConfig"]["RestartPolicy"]
    assert {db: U.fingerprint(db) for db in DBS} == scratch["before"]


def U_sha256(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
