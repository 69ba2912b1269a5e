"""Phase 1 as the operator runs it: the playbooks (01-migrate-data.yml, rollback.yml --tags
rollback-1) through ansible-playbook, with a database-only inventory written to tmp_path.

That inventory holds only what phase 1 needs: the parking host (local connection), the
PostgreSQL server and the owner login — nothing about Docker images or containers, and no
superuser unless a test gives one. Its databases are private copies seeded with the suffix _pb
(never the lab's own parking_v5/parking_v6), named through the roles' connection variables.

- the delta command runs the catch-up once, then the gate, then writes the report;
- rollback-1 through rollback.yml works with that inventory and gives V6 back as it was;
- the guard (has phase 4 removed V5?) needs no superuser, and a login that fails stops the phase
  with the reason instead of being taken for "not decommissioned".
"""
import json
import os
import re

import pytest

import p1util as U
from labdb import lab_pg_params, run_playbook

SUFFIX = "_pb"
V5 = f"parking_v5{SUFFIX}"
CHIRPSTACK = f"chirpstack{SUFFIX}"
PLATFORM_DB = f"parking_platform{SUFFIX}"
HOST = "phase1-db-only"
PHASE1 = "playbooks/01-migrate-data.yml"
DELTA_TASK = "data_migration : Catch up what V5 wrote since the last run"
FULL_TASK = "data_migration : Migrate V5 into V6, full run (progress log on the target, data_migration_progress_log)"
VERIFY_TASK = "data_migration : Verify phase 1 with the fail-closed gate"
REPORT_TASK = "report : Write the JSON and Markdown reports of phase 1"


@pytest.fixture(scope="module")
def source():
    U.seeded(SUFFIX)
    return V5


@pytest.fixture
def v6(source, request):
    yield from U.fresh_copy(SUFFIX, f"parking_v6_pb_{request.node.name[5:30].lower()}")


def inventory(tmp_path, v6db, v5db=V5, **extra):
    """A database-only inventory on the private copies; returns the -i argument."""
    pg = lab_pg_params()
    owner = {"login_host": "{{ parking_pg_host }}", "login_port": "{{ parking_pg_port | int }}",
             "login_user": "{{ parking_pg_owner_user }}", "login_password": "{{ parking_pg_owner_password }}"}
    group_vars = {
        "parking_pg_host": pg["host"], "parking_pg_port": pg["port"],
        "parking_pg_owner_user": pg["user"], "parking_pg_owner_password": pg["password"],
        "parking_allow_rejects": True,  # the seed holds rows that must be rejected
        "parking_reports_dir": str(tmp_path / "reports"),
        # the private copies instead of the lab's databases
        "data_migration_source": dict(owner, db=v5db),
        "data_migration_target": dict(owner, db=v6db),
        "gateway_import_chirpstack_db": CHIRPSTACK,
        "gateway_import_target_db": v6db,
        "decommission_pg_ledger": dict(owner, db=v6db),
        "decommission_databases": [v5db, PLATFORM_DB],
        **extra,
    }
    dbs = [v5db, v6db, CHIRPSTACK, PLATFORM_DB]
    assert all(db.endswith(SUFFIX) or f"{SUFFIX}_" in db for db in dbs), dbs  # never the lab's own
    inv = tmp_path / "inventory"
    (inv / "group_vars").mkdir(parents=True, exist_ok=True)
    (inv / "hosts.yml").write_text(json.dumps({"parking": {"hosts": {HOST: {
        "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}}}))
    (inv / "group_vars" / "all.yml").write_text(json.dumps(group_vars, indent=1))
    return str(inv)


def playbook(inv, *args):
    proc, seconds = run_playbook("-i", inv, *args, check=False)
    print(f"[{' '.join(args)}] rc={proc.returncode} in {seconds:.1f}s")
    return proc


def recap(proc):
    for line in proc.stdout.splitlines():
        if line.startswith(HOST) and "changed=" in line:
            return {k: int(v) for k, v in (kv.split("=") for kv in line.split(":", 1)[1].split())}
    raise AssertionError(f"no PLAY RECAP for {HOST}:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")


def tasks(proc):
    """Names of the tasks that ran, in order (from the TASK [...] headers)."""
    return re.findall(r"^TASK \[(.+?)\] \*+$", proc.stdout, re.M)


def ok(proc):
    assert proc.returncode == 0, f"rc {proc.returncode}:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    assert recap(proc)["failed"] == 0
    return proc


def failure(proc):
    """The failing task's message as the operator reads it (one line)."""
    assert proc.returncode != 0, proc.stdout[-4000:]
    return " ".join((proc.stdout + proc.stderr).split())


# --- (a) the delta command: catch-up once, then the gate, then the report ----------------------

def test_delta_command_runs_the_catch_up_once_then_the_gate_then_the_report(source, v6, tmp_path):
    v5db = f"parking_v5{SUFFIX}_delta"  # this test writes to V5: its own copy
    U.admin_sql(f"DROP DATABASE IF EXISTS {v5db} WITH (FORCE)",
                f"CREATE DATABASE {v5db} TEMPLATE {V5} OWNER parking_user")
    try:
        inv = inventory(tmp_path, v6, v5db=v5db)
        full = ok(playbook(inv, PHASE1))
        assert tasks(full).count(FULL_TASK) == 1 and DELTA_TASK not in tasks(full)
        assert (tmp_path / "reports" / "phase1-data.json").exists()
        # V5 keeps working after the full run: one new reading for a live sensor
        eui = U.rows(v5db, "SELECT upper(dev_eui) FROM sensor_devices WHERE upper(dev_eui) ~ '^[0-9A-F]{16}$' "
                           "ORDER BY dev_eui LIMIT 1")[0][0]
        conn = U.connect(v5db, autocommit=True)
        with conn.cursor() as cur:
            cur.execute("INSERT INTO sensor_readings (device_eui, occupancy_state, fcnt, \"timestamp\") "
                        "VALUES (%s, 'OCCUPIED', 987654, now())", (eui,))
        conn.close()

        delta = ok(playbook(inv, PHASE1, "-e", "parking_phase1_mode=delta"))
        names = tasks(delta)
        assert names.count(DELTA_TASK) == 1, names
        assert FULL_TASK not in names
        assert names.count(VERIFY_TASK) == 1 and names.count(REPORT_TASK) == 1
        assert names.index(DELTA_TASK) < names.index(VERIFY_TASK) < names.index(REPORT_TASK), names
        assert recap(delta)["rescued"] == 0
        # the catch-up moved the new reading, the gate passed, the delta report is written
        moved = json.loads((tmp_path / "reports" / "phase1-delta.json").read_text())
        assert moved["mode"] == "delta" and moved["counts"]["sensor_readings"]["inserted"] == 1
        assert U.rows(v6, "SELECT count(*) FROM sensor_readings WHERE fcnt = 987654")[0][0] == 1
        report = json.loads((tmp_path / "reports" / "phase1-data-delta.json").read_text())
        assert report["status"] == "passed" and report["phase"] == 1 and not report["check_mode"]
        assert report["title"].startswith("Data catch-up (delta)")
        assert (tmp_path / "reports" / "phase1-data-delta.md").exists()
        assert "phase1-data-delta.md" in delta.stdout
        assert "gate passed: " in delta.stdout
    finally:
        U.drop(v5db)


def test_unknown_mode_and_the_old_delta_command_are_refused_before_anything_runs(source, v6, tmp_path):
    inv = inventory(tmp_path, v6)
    before = U.checksums(v6)
    bad = playbook(inv, PHASE1, "-e", "parking_phase1_mode=catchup")
    assert "parking_phase1_mode must be full" in failure(bad) and "not 'catchup'" in failure(bad)
    old = playbook(inv, PHASE1, "-e", "data_migration_action=delta")
    assert "-e parking_phase1_mode=delta" in failure(old)
    for proc in (bad, old):
        assert tasks(proc) == ["Note when phase 1 started", "Check the phase 1 mode"]
    assert U.checksums(v6) == before


# --- (b) rollback-1 with a database-only inventory ----------------------------------------------

def test_rollback_1_through_rollback_yml_with_a_db_only_inventory(source, v6, tmp_path):
    before = U.checksums(v6)
    inv = inventory(tmp_path, v6)
    ok(playbook(inv, PHASE1))
    assert U.checksums(v6) != before
    assert U.rows(v6, "SELECT count(*) FROM gateways")[0][0] > 0

    back = ok(playbook(inv, "playbooks/rollback.yml", "--tags", "rollback-1"))
    assert "is undefined" not in back.stdout
    names = tasks(back)
    assert "data_migration : Roll phase 1 back (remove what it inserted, restore what it updated)" in names
    assert "gateway_import : Run the gateway import with state absent" in names
    assert recap(back)["changed"] > 0
    # the other rollbacks' plays (V6 containers, routing, V5 restore) did nothing
    assert not any(n.startswith(("v6_stack : Include", "cutover : Include", "decommission : Include")) for n in names)
    assert U.checksums(v6) == before
    assert U.rows(v6, "SELECT count(*) FROM pg_policies WHERE policyname = 'parking_migrate_tenant_isolation'")[0][0] == 0
    # the playbook of its own works with the same inventory too (nothing left to undo)
    again = ok(playbook(inv, "playbooks/rollback-1.yml"))
    assert recap(again)["changed"] == 0 and U.checksums(v6) == before


# --- (c) the decommission guard: owner login only, a failing login is an error ---------------

def test_phase1_needs_no_superuser_and_a_wrong_superuser_password_stops_it(source, v6, tmp_path):
    before = U.checksums(v6)
    secret = "wrong-superuser-password-0f3c"
    wrong = playbook(inventory(tmp_path, v6, parking_pg_admin_user=U.ADMIN_USER, parking_pg_admin_password=secret),
                     PHASE1)
    msg = failure(wrong)
    assert "Cannot tell whether V5 was decommissioned" in msg
    assert f'password authentication failed for user "{U.ADMIN_USER}"' in msg
    assert "parking_pg_admin_user, parking_pg_admin_password" in msg
    assert secret not in wrong.stdout + wrong.stderr
    assert "data_migration : Include tasks for action deploy" not in tasks(wrong)
    assert U.checksums(v6) == before

    inv = inventory(tmp_path, v6)  # no superuser variables at all
    assert "parking_pg_admin" not in open(os.path.join(inv, "group_vars", "all.yml")).read()
    run = ok(playbook(inv, PHASE1))
    assert tasks(run).count(FULL_TASK) == 1
    assert json.loads((tmp_path / "reports" / "phase1-data.json").read_text())["status"] == "passed"


def test_a_failing_owner_login_stops_phase1_instead_of_passing_as_not_decommissioned(source, v6, tmp_path):
    before = U.checksums(v6)
    secret = "wrong-owner-password-7a1d"
    proc = playbook(inventory(tmp_path, v6), PHASE1, "-e", f"parking_pg_owner_password={secret}")
    msg = failure(proc)
    assert "Cannot tell whether V5 was decommissioned" in msg and "password authentication failed" in msg
    assert "Check target.login_user and target.login_password" in msg
    assert secret not in proc.stdout + proc.stderr
    unreachable = playbook(inventory(tmp_path, v6), PHASE1, "-e", "parking_pg_port=1")
    assert "Cannot tell whether V5 was decommissioned" in failure(unreachable)
    assert "Check target.login_host/login_port" in failure(unreachable)
    for p in (proc, unreachable):
        assert "data_migration : Include tasks for action deploy" not in tasks(p)
    assert U.checksums(v6) == before


def test_a_decommission_recorded_in_the_ledger_ends_phase1_with_the_owner_login(source, v6, tmp_path):
    from parking import backup
    conn = U.connect(v6)
    with conn.cursor() as cur:
        backup.set_state(cur, "done", [V5, PLATFORM_DB], [], [], None)
    conn.commit()
    conn.close()
    before = U.checksums(v6)
    proc = ok(playbook(inventory(tmp_path, v6), PHASE1))
    assert "V5 was decommissioned at" in proc.stdout
    assert not any(n.startswith("data_migration") for n in tasks(proc))
    assert recap(proc)["changed"] == 0
    assert U.checksums(v6) == before


def test_site_yml_phase1_tag_with_a_db_only_inventory(source, v6, tmp_path):
    """`site.yml --tags phase1` needs only phase 1's variables too (the other phases' roles are
    not even validated)."""
    inv = inventory(tmp_path, v6)
    run = ok(playbook(inv, "playbooks/site.yml", "--tags", "phase1"))
    names = tasks(run)
    assert FULL_TASK in names and VERIFY_TASK in names
    assert "is undefined" not in run.stdout
    # the other phases' tasks never run (their argument checks show as headers, skipped by the `when`)
    ran = [n for n in names if n.startswith(("preflight :", "v6_stack :", "cutover :", "traffic"))
           and "Validating arguments" not in n]
    assert not ran, ran
