"""Phase 4's plain logic: fingerprint comparison, file checksums, the saved container
definition turned back into docker_container options (what rollback-4 recreates), and the
decommission's state machine (module_utils/parking/decommission.py) over a fake ledger and fake
fingerprints: every transition and every refusal, without a database."""
import hashlib
import importlib.util
import os

import pytest

from parking import backup, decommission
from parking.errors import ParkingError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("parking_containers",
                                               os.path.join(ROOT, "filter_plugins", "parking_containers.py"))
containers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(containers)

FP = {
    "public.tenants": {"rows": 5, "checksum": "a" * 32},
    "public.sensor_readings": {"rows": 1000, "checksum": "b" * 32},
    "public.sensor_readings_id_seq": {"rows": 0, "checksum": "seq:1000:True"},
}


def test_identical_fingerprints_have_no_differences():
    assert backup.differences(FP, dict(FP)) == []
    backup.require_equal(FP, dict(FP), "x", "live", "restored", "advice")


def test_every_kind_of_difference_is_listed():
    other = {k: dict(v) for k, v in FP.items()}
    other["public.tenants"]["rows"] = 4
    other["public.sensor_readings"]["checksum"] = "c" * 32
    del other["public.sensor_readings_id_seq"]
    other["public.extra"] = {"rows": 1, "checksum": "d" * 32}
    diffs = {d["relation"]: d["problem"] for d in backup.differences(FP, other, "live", "restored")}
    assert diffs == {"public.tenants": "rows differ", "public.sensor_readings": "content differs",
                     "public.sensor_readings_id_seq": "only in live", "public.extra": "only in restored"}
    with pytest.raises(backup.BackupMismatch) as exc:
        backup.require_equal(FP, other, "the copy of parking_v5", "live", "restored", "Nothing was removed.")
    assert "4 relation(s) differ" in str(exc.value) and "public.tenants: rows differ" in str(exc.value)
    assert str(exc.value).endswith("Nothing was removed.") and len(exc.value.differences) == 4


def test_summary_counts_tables_not_sequences_and_is_order_independent():
    s = backup.summary(FP)
    assert s["tables"] == 2 and s["rows"] == 1005
    assert backup.summary(dict(reversed(list(FP.items())))) == s
    changed = dict(FP, **{"public.tenants": {"rows": 5, "checksum": "e" * 32}})
    assert backup.summary(changed)["fingerprint"] != s["fingerprint"]


def test_sha256_file_streams(tmp_path):
    p = tmp_path / "dump.pgc"
    data = os.urandom(3 * 1024 * 1024 + 17)
    p.write_bytes(data)
    assert backup.sha256_file(str(p), chunk=65536) == hashlib.sha256(data).hexdigest()


INSPECT = {
    "Id": "4f1c2d3e4a5b6c7d8e9f",
    "Name": "/parking-api",
    "Config": {
        "Image": "parking-lab/python:latest",
        "Cmd": ["python3", "/opt/lab/services/v5api/app.py"],
        "Entrypoint": None,
        "Env": ["DATABASE_URL=postgresql://u:p=w@h/db", "PATH=/usr/bin", "EMPTY="],
        "Labels": {"traefik.enable": "true", "traefik.http.routers.api.rule": "Host(`api.verdegris.test`)"},
        "Healthcheck": {"Test": ["CMD", "curl", "-f", "http://127.0.0.1:8000/health"], "Interval": 3000000000,
                        "Timeout": 1500000000, "Retries": 3},
        "User": "",
        "WorkingDir": "/opt/lab",
    },
    "HostConfig": {
        "PortBindings": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "58001"}], "9000/tcp": [{"HostPort": "9000"}]},
        "Binds": ["/var/lib/parking-lab/x:/x:ro"],
        "Mounts": [{"Type": "volume", "Source": "parking-data", "Target": "/data"}],
        "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
        "NetworkMode": "parking-v5_parking-network",
    },
    "NetworkSettings": {"Networks": {"parking-v5_parking-network": {"Aliases": ["parking-api", "4f1c2d3e4a5b", "api"]}}},
}


def test_container_spec_recreates_what_was_inspected():
    spec = containers.container_spec(INSPECT)
    assert spec["name"] == "parking-api" and spec["image"] == "parking-lab/python:latest"
    assert spec["command"] == ["python3", "/opt/lab/services/v5api/app.py"] and spec["entrypoint"] is None
    # values keep their own '=' and empty values survive
    assert spec["env"] == {"DATABASE_URL": "postgresql://u:p=w@h/db", "PATH": "/usr/bin", "EMPTY": ""}
    assert spec["labels"]["traefik.http.routers.api.rule"] == "Host(`api.verdegris.test`)"
    assert spec["published_ports"] == ["127.0.0.1:58001:8000/tcp", "9000:9000/tcp"]
    assert spec["volumes"] == ["/var/lib/parking-lab/x:/x:ro"]
    assert spec["mounts"] == [{"type": "volume", "target": "/data", "source": "parking-data"}]
    # the container id and its own name are not aliases to recreate
    assert spec["networks"] == [{"name": "parking-v5_parking-network", "aliases": ["api"]}]
    assert spec["restart_policy"] == "unless-stopped"
    assert spec["healthcheck"] == {"test": ["CMD", "curl", "-f", "http://127.0.0.1:8000/health"],
                                   "interval": "3s", "timeout": "1500ms", "retries": 3}
    assert spec["user"] is None and spec["working_dir"] == "/opt/lab"


def test_container_spec_minimal_and_host_network():
    spec = containers.container_spec({"Name": "/x", "Config": {"Image": "i"},
                                      "HostConfig": {"NetworkMode": "host"}, "NetworkSettings": {"Networks": {"host": {}}}})
    assert spec["networks"] == [] and spec["healthcheck"] is None and spec["restart_policy"] == "no"
    assert spec["env"] == {} and spec["published_ports"] == [] and spec["mounts"] == []
    assert containers.FilterModule().filters()["parking_container_spec"] is containers.container_spec


def test_container_public_keeps_state_and_labels_and_drops_every_secret():
    import copy
    inspect = copy.deepcopy(INSPECT)
    inspect["State"] = {"Status": "running", "Running": True, "StartedAt": "2026-12-01T00:00:00Z",
                        "Health": {"Status": "unhealthy", "FailingStreak": 3,
                                   "Log": [{"Output": "old"}, {"Output": " curl: (7) refused \n"}]}}
    public = containers.container_public({"exists": True, "container": inspect})
    text = repr(public)
    assert "p=w" not in text and "DATABASE_URL" not in text and "HostConfig" not in text
    assert public["Config"]["Labels"]["traefik.http.routers.api.rule"] == "Host(`api.verdegris.test`)"
    assert public["State"]["Health"] == {"Status": "unhealthy", "FailingStreak": 3, "Output": "curl: (7) refused"}
    assert containers.container_public(None) is None
    assert containers.container_public({"exists": False, "container": None}) is None


@pytest.mark.parametrize("info, word", [
    ({"exists": False, "container": None}, "missing"),
    (None, "missing"),
    ({"exists": True, "container": {"State": {"Status": "exited"}}}, "exited"),
    ({"exists": True, "container": {"State": {"Status": "running"}}}, "running without a health check"),
    ({"exists": True, "container": {"State": {"Status": "running", "Health": {"Status": "starting"}}}}, "starting"),
    ({"State": {"Status": "running", "Health": {"Status": "healthy"}}}, "healthy"),
])
def test_container_health_is_one_word(info, word):
    assert containers.container_health(info) == word


# --------------------------------------------------------------------------- the state machine

V5 = {"public.tenants": {"rows": 5, "checksum": "a" * 32}}
PLATFORM = {"public.users": {"rows": 2, "checksum": "f" * 32}}
DBS = ["parking_v5", "parking_platform"]


class FakeLedger:
    """backup.py's ledger functions over in-memory rows; the cursor argument is ignored. Same
    rules as the SQL: a file (sha256) is recorded once, a state equal to the latest is not
    recorded again, the newest backup of a database wins."""

    def __init__(self, backups=(), states=(), existing=DBS, switched=False):
        self.backups = [dict(b) for b in backups]
        self.states = [dict(s) for s in states]
        self.existing = set(existing)     # the databases the ledger's (target) login sees
        self.switched = switched

    def add_backup(self, db, checksums, sha256=None):
        rec = {"id": len(self.backups) + 1, "db": db, "path": f"/backups/{db}-{len(self.backups) + 1}.pgc",
               "sha256": sha256 or f"sha-{db}-{len(self.backups) + 1}", "size_bytes": 10,
               "table_checksums": checksums}
        self.backups.append(rec)
        return rec

    def latest_backups(self, cur, databases):
        out = {}
        for db in databases:
            recs = [b for b in self.backups if b["db"] == db]
            if recs:
                out[db] = dict(recs[-1])
        return out

    def recorded_backup(self, cur, sha256):
        return next((dict(b) for b in self.backups if b["sha256"] == sha256), None)

    def record_backup(self, cur, db, path, sha256, size_bytes, tables, retention_days):
        if any(b["sha256"] == sha256 for b in self.backups):
            return False
        self.backups.append({"id": len(self.backups) + 1, "db": db, "path": path, "sha256": sha256,
                             "size_bytes": size_bytes, "table_checksums": tables, "retention_days": retention_days})
        return True

    def backups_by_id(self, cur, ids):
        return {b["db"]: dict(b) for b in self.backups if b["id"] in (ids or [])}

    def latest_state(self, cur):
        return dict(self.states[-1]) if self.states else None

    def set_state(self, cur, status, databases, backup_ids, containers, containers_file):
        if self.states and self.states[-1]["status"] == status:
            return False
        self.states.append({"id": len(self.states) + 1, "status": status, "databases": list(databases),
                            "backup_ids": list(backup_ids), "containers": list(containers),
                            "containers_file": containers_file})
        return True

    def existing_databases(self, cur, names):
        return {n: n in self.existing for n in names}

    def cutover_switched(self, cur):
        return self.switched


class Fingerprints:
    """fingerprint(server, db) from a dict; remembers which databases were fingerprinted."""

    def __init__(self, **by_db):
        self.by_db = by_db
        self.asked = []

    def __call__(self, server, db):
        self.asked.append(db)
        return self.by_db[db]


def params(state="info", **kw):
    p = dict(state=state, databases=list(DBS), backup=None, retention_days=90, backup_dir=None, backup_factor=2.0,
             containers=[], containers_file=None, target={"db": "parking_v6"}, server={"db": "postgres"})
    p.update(kw)
    return p


@pytest.fixture
def dump(tmp_path):
    path = tmp_path / "parking_v5.pgc"
    path.write_bytes(b"PGDMP fake dump")
    return str(path)


def backup_opts(path, compare_with="live"):
    return {"db": "parking_v5", "path": path, "restored_db": "parking_v5_restore_check", "compare_with": compare_with}


def decommissioned(ledger):
    """A ledger where both databases were backed up and V5 decommissioned (state done)."""
    ids = [ledger.add_backup("parking_v5", V5)["id"], ledger.add_backup("parking_platform", PLATFORM)["id"]]
    ledger.set_state(None, "done", DBS, ids, ["parking-api"], "/backups/containers.json")
    return ids


def test_info_checks_and_records_nothing():
    ledger, fp = FakeLedger(), Fingerprints()
    present = {"parking_v5": True, "parking_platform": False}
    assert decommission.apply_state(None, params(), present, fp, ledger) == (False, None, present)
    assert decommission.apply_state(None, params(server=None), None, fp, ledger) == (False, None, None)
    assert fp.asked == [] and ledger.backups == [] and ledger.states == []


def test_backup_verified_records_the_file_when_the_restored_copy_equals_the_live_database(dump):
    ledger = FakeLedger()
    fp = Fingerprints(parking_v5=V5, parking_v5_restore_check=dict(V5))
    changed, verified, _ = decommission.apply_state(None, params("backup_verified", backup=backup_opts(dump),
                                                                 retention_days=30), None, fp, ledger)
    sha = hashlib.sha256(b"PGDMP fake dump").hexdigest()
    assert changed is True and fp.asked == ["parking_v5", "parking_v5_restore_check"]
    assert verified == dict(backup.summary(V5), db="parking_v5", sha256=sha, size_bytes=len(b"PGDMP fake dump"))
    assert ledger.backups == [{"id": 1, "db": "parking_v5", "path": dump, "sha256": sha, "size_bytes": 15,
                               "table_checksums": V5, "retention_days": 30}]
    # the same file again: verified again, not recorded twice
    changed, verified2, _ = decommission.apply_state(None, params("backup_verified", backup=backup_opts(dump)),
                                                     None, fp, ledger)
    assert changed is False and verified2 == verified and len(ledger.backups) == 1


def test_backup_verified_refuses_a_restored_copy_that_differs_and_records_nothing(dump):
    ledger = FakeLedger()
    fp = Fingerprints(parking_v5=V5, parking_v5_restore_check={})
    with pytest.raises(backup.BackupMismatch) as exc:
        decommission.apply_state(None, params("backup_verified", backup=backup_opts(dump)), None, fp, ledger)
    assert "the copy of parking_v5 restored from" in str(exc.value) and "not faithful" in str(exc.value)
    assert exc.value.differences == [{"relation": "public.tenants", "problem": "only in live"}]
    assert ledger.backups == []


def test_backup_verified_against_the_recorded_fingerprint_needs_no_live_database(dump):
    ledger = FakeLedger()
    sha = backup.sha256_file(dump)
    ledger.add_backup("parking_v5", V5, sha256=sha)
    fp = Fingerprints(parking_v5_restore_check=dict(V5))     # parking_v5 itself is gone
    changed, verified, present = decommission.apply_state(
        None, params("backup_verified", backup=backup_opts(dump, "recorded")), None, fp, ledger)
    assert (changed, present) == (False, None) and fp.asked == ["parking_v5_restore_check"]
    assert verified == dict(backup.summary(V5), db="parking_v5", sha256=sha, size_bytes=15)
    assert len(ledger.backups) == 1


@pytest.mark.parametrize("recorded_db", [None, "parking_platform"], ids=["unknown file", "file of another database"])
def test_backup_verified_recorded_refuses_a_file_that_is_not_a_verified_backup_of_the_database(dump, recorded_db):
    ledger = FakeLedger()
    if recorded_db:
        ledger.add_backup(recorded_db, PLATFORM, sha256=backup.sha256_file(dump))
    fp = Fingerprints(parking_v5_restore_check=dict(V5))
    with pytest.raises(backup.BackupMismatch) as exc:
        decommission.apply_state(None, params("backup_verified", backup=backup_opts(dump, "recorded")), None, fp,
                                 ledger)
    assert str(exc.value).startswith(f"{dump} (sha256 {backup.sha256_file(dump)}) is not a verified backup of "
                                     "parking_v5 recorded in the V6 ledger")
    assert fp.asked == []


def test_backup_verified_recorded_refuses_a_file_that_does_not_restore_to_what_was_verified(dump):
    ledger = FakeLedger()
    ledger.add_backup("parking_v5", V5, sha256=backup.sha256_file(dump))
    fp = Fingerprints(parking_v5_restore_check={"public.tenants": {"rows": 4, "checksum": "a" * 32}})
    with pytest.raises(backup.BackupMismatch) as exc:
        decommission.apply_state(None, params("backup_verified", backup=backup_opts(dump, "recorded")), None, fp,
                                 ledger)
    assert "public.tenants: rows differ" in str(exc.value)
    assert str(exc.value).endswith("The backup file does not restore to what was verified.")


def test_unchanged_since_backup_passes_skips_absent_databases_and_reports_them_through_the_ledger():
    ledger = FakeLedger(existing=["parking_v5"])     # parking_platform already dropped
    ledger.add_backup("parking_v5", {"old": {"rows": 1, "checksum": "0"}})
    ledger.add_backup("parking_v5", V5)              # the newest backup is the one compared
    fp = Fingerprints(parking_v5=dict(V5))
    server_sees = {"parking_v5": True, "parking_platform": True}
    changed, verified, present = decommission.apply_state(None, params("unchanged_since_backup"), server_sees, fp,
                                                          ledger)
    assert (changed, verified) == (False, None) and fp.asked == ["parking_v5"]
    assert present == {"parking_v5": True, "parking_platform": False}
    assert ledger.states == []


def test_unchanged_since_backup_refuses_a_present_database_without_a_backup():
    ledger = FakeLedger()
    ledger.add_backup("parking_v5", V5)
    fp = Fingerprints(parking_v5=dict(V5), parking_platform=dict(PLATFORM))
    with pytest.raises(backup.BackupMismatch) as exc:
        decommission.apply_state(None, params("unchanged_since_backup"), None, fp, ledger)
    assert str(exc.value).startswith("parking_platform has no verified backup in the ledger")
    assert exc.value.differences == []


def test_unchanged_since_backup_refuses_a_database_written_since_its_backup():
    ledger = FakeLedger()
    ledger.add_backup("parking_v5", V5)
    ledger.add_backup("parking_platform", PLATFORM)
    fp = Fingerprints(parking_v5={"public.tenants": {"rows": 5, "checksum": "9" * 32}},
                      parking_platform=dict(PLATFORM))
    with pytest.raises(backup.BackupMismatch) as exc:
        decommission.apply_state(None, params("unchanged_since_backup"), None, fp, ledger)
    assert str(exc.value).startswith("parking_v5 changed since its backup /backups/parking_v5-1.pgc: 1 relation(s)")
    assert "nothing was dropped" in str(exc.value)
    assert [d["problem"] for d in exc.value.differences] == ["content differs"]


def test_done_refuses_without_a_verified_backup_of_every_database():
    ledger = FakeLedger()
    ledger.add_backup("parking_platform", PLATFORM)
    with pytest.raises(backup.BackupMismatch) as exc:
        decommission.apply_state(None, params("done"), None, Fingerprints(), ledger)
    assert str(exc.value) == ("no verified backup of parking_v5 in the ledger: refusing to record the "
                              "decommission")
    assert ledger.states == []


def test_done_records_the_newest_backups_once():
    ledger = FakeLedger()
    ledger.add_backup("parking_v5", {})
    v5 = ledger.add_backup("parking_v5", V5)
    platform = ledger.add_backup("parking_platform", PLATFORM)
    p = params("done", containers=["parking-api", "parking-mqtt"], containers_file="/backups/containers.json")
    fp = Fingerprints()
    assert decommission.apply_state(None, p, None, fp, ledger) == (True, None, None)
    assert ledger.states == [{"id": 1, "status": "done", "databases": DBS, "backup_ids": [v5["id"], platform["id"]],
                              "containers": ["parking-api", "parking-mqtt"],
                              "containers_file": "/backups/containers.json"}]
    assert decommission.apply_state(None, p, None, fp, ledger)[0] is False and len(ledger.states) == 1
    assert fp.asked == []


def test_restored_refuses_when_no_decommission_was_recorded():
    with pytest.raises(ParkingError) as exc:
        decommission.apply_state(None, params("restored"), None, Fingerprints(), FakeLedger())
    assert str(exc.value) == "no decommission recorded in the V6 ledger: there is nothing to restore"
    assert not isinstance(exc.value, backup.BackupMismatch)


def test_restored_refuses_an_incomplete_restore_and_stays_done():
    ledger = FakeLedger()
    decommissioned(ledger)
    fp = Fingerprints(parking_v5=dict(V5), parking_platform={})
    with pytest.raises(backup.BackupMismatch) as exc:
        decommission.apply_state(None, params("restored"), None, fp, ledger)
    assert str(exc.value).startswith("parking_platform as restored from /backups/parking_platform-2.pgc")
    assert str(exc.value).endswith("The restore is incomplete: V5 was not started; restore the file again.")
    assert [s["status"] for s in ledger.states] == ["done"]


def test_restored_compares_with_the_backups_the_decommission_used_and_records_the_rollback_once():
    ledger = FakeLedger()
    ids = decommissioned(ledger)
    ledger.add_backup("parking_v5", {"newer": {"rows": 1, "checksum": "1"}})   # not the one decommission used
    fp = Fingerprints(parking_v5=dict(V5), parking_platform=dict(PLATFORM))
    p = params("restored", databases=["parking_v5"])     # the recorded databases are checked, not these
    assert decommission.apply_state(None, p, None, fp, ledger) == (True, None, None)
    assert fp.asked == DBS
    assert ledger.states[-1] == {"id": 2, "status": "rolled_back", "databases": DBS, "backup_ids": ids,
                                 "containers": ["parking-api"], "containers_file": "/backups/containers.json"}
    assert decommission.apply_state(None, p, None, fp, ledger)[0] is False and len(ledger.states) == 2


def test_done_again_after_a_rollback():
    ledger = FakeLedger()
    decommissioned(ledger)
    ledger.set_state(None, "rolled_back", DBS, [1, 2], ["parking-api"], "/backups/containers.json")
    assert decommission.apply_state(None, params("done"), None, Fingerprints(), ledger)[0] is True
    assert [s["status"] for s in ledger.states] == ["done", "rolled_back", "done"]


def test_report_without_a_record():
    ledger = FakeLedger(existing=["parking_v5"])
    assert decommission.report(None, params(), None, ledger) == {
        "status": "none", "record": {}, "databases": {"parking_v5": True, "parking_platform": False},
        "cutover_switched": False, "backups": {}, "used_backups": {}}


def test_report_after_the_decommission_keeps_checksums_out():
    ledger = FakeLedger(switched=True)
    decommissioned(ledger)
    ledger.add_backup("parking_v5", V5, sha256="newer")
    present = {"parking_v5": False, "parking_platform": False}
    out = decommission.report(None, params(), present, ledger)
    assert out["status"] == "done" and out["record"]["backup_ids"] == [1, 2]
    assert out["databases"] is present and out["cutover_switched"] is True
    assert out["backups"]["parking_v5"]["sha256"] == "newer"
    assert out["used_backups"]["parking_v5"]["sha256"] == "sha-parking_v5-1"
    assert not any("table_checksums" in rec for group in ("backups", "used_backups") for rec in out[group].values())


class FakeCursor:
    def __init__(self, sizes=None):
        self.sizes = sizes or {}
        self.executed = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql, params=None):
        self.executed.append((sql, params))

    def fetchone(self):
        return (self.sizes[self.executed[-1][1][0]],)


class FakeConnection:
    server_version = 150018

    def __init__(self):
        self.cur = FakeCursor({"parking_v5": 1000})
        self.events = []

    def cursor(self):
        return self.cur

    def commit(self):
        self.events.append("commit")

    def rollback(self):
        self.events.append("rollback")

    def close(self):
        self.events.append("close")


def test_backup_space_measures_only_the_databases_still_present(tmp_path):
    cur = FakeCursor({"parking_v5": 1000})
    out = decommission.backup_space(cur, {"parking_v5": True, "parking_platform": False}, str(tmp_path), 2.0)
    assert cur.executed == [("SELECT pg_database_size(%s)", ("parking_v5",))]
    assert out["dir"] == str(tmp_path) and out["needed_bytes"] == 2000 and out["ok"] is True
    assert out["free_bytes"] > 0 and out["mount"]


@pytest.fixture
def wired(monkeypatch):
    """run() on fake connections: the target's and the server's."""
    conn = FakeConnection()
    monkeypatch.setattr(decommission, "connect", lambda params, what, **kw: conn)
    monkeypatch.setattr(decommission, "server_databases", lambda server, dbs: {db: True for db in dbs})
    monkeypatch.setattr(decommission, "fingerprint_of", Fingerprints(parking_v5=V5, parking_platform=PLATFORM))
    return conn


@pytest.mark.parametrize("check_mode, ending", [(False, "commit"), (True, "rollback")])
def test_run_commits_or_rolls_back_in_check_mode(wired, check_mode, ending):
    ledger = FakeLedger()
    ledger.add_backup("parking_v5", V5)
    ledger.add_backup("parking_platform", PLATFORM)
    changed, result = decommission.run(params("done"), check_mode, ledger)
    assert changed is True and wired.events == [ending, "close"]
    assert result["status"] == "done" and result["verified"] is None
    assert result["databases"] == {"parking_v5": True, "parking_platform": True}
    assert "backup_space" not in result and "server_version_num" not in result


def test_run_rolls_back_a_refusal(wired):
    with pytest.raises(backup.BackupMismatch):
        decommission.run(params("done"), False, FakeLedger())
    assert wired.events == ["rollback", "close"]


def test_run_with_backup_dir_adds_the_space_and_the_server_version(wired, tmp_path):
    changed, result = decommission.run(params(server=None, backup_dir=str(tmp_path)), False,
                                       FakeLedger(existing=["parking_v5"]))
    assert changed is False and result["server_version_num"] == 150018
    assert result["backup_space"]["needed_bytes"] == 2000
    assert result["databases"] == {"parking_v5": True, "parking_platform": False}


def test_the_engine_has_no_ansible_imports():
    import ast
    with open(decommission.__file__) as f:
        tree = ast.parse(f.read())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert imported and not [m for m in imported if m.startswith("ansible")]
