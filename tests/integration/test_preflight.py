"""Phase 0 (playbooks/00-preflight.yml) against the running lab: it passes on the V5 lab, answers
the plan's open questions from real sources (an open session on parking_platform, requests
through Traefik), changes nothing, and fails, listing every failed check, when something is
wrong, still writing its report.

Every run writes its report into a temporary directory (-e parking_reports_dir), so the
project's reports/ folder is left alone.
"""
import json
import os
import time
import uuid

import psycopg2
import pytest

import labutil as L
import p1util as U
from labdb import lab_pg_params, recap, run_playbook

PLAYBOOK = "playbooks/00-preflight.yml"
TOP_KEYS = ["phase", "title", "status", "check_mode", "generated_at", "duration_s", "summary", "checks", "facts", "name"]
CHECKS = {"docker_api", "memory", "traefik", "disk_backup", "database_chirpstack", "database_v5", "database_v6",
          "database_platform", "postgresql_version", "chirpstack_schema", "schema", "postgresql_client"}


def connect(db, **kwargs):
    conn = psycopg2.connect(dbname=db, connect_timeout=5, **lab_pg_params(), **kwargs)
    conn.autocommit = True
    return conn


def platform_fingerprint():
    """Content checksum of every parking_platform table, its write counters, and the relations of
    parking_platform and chirpstack (nothing created, nothing dropped). V5 and V6 are left out:
    the lab's uplink stream and the phases write there while the preflight runs."""
    tables = U.rows("parking_platform", "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables ORDER BY 1")
    sums = {}
    for (table,) in tables:
        sums[table] = U.rows("parking_platform", f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                                              f"FROM {table} t")[0]
    counters = U.rows("parking_platform", "SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables")[0][0]
    relations = {db: U.rows(db, "SELECT count(*), md5(string_agg(oid::text || relname, ',' ORDER BY oid)) FROM pg_class "
                             "WHERE relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)")
                 for db in ("chirpstack", "parking_platform")}
    return sums, counters, relations


def preflight(tmp_path, *extra, check=True):
    """Phase 0's checks. Its first step (the target's packages, apt) is left out here: the molecule
    scenarios run it (production on the target's own python3) and check that a second run installs
    nothing."""
    proc, seconds = run_playbook(PLAYBOOK, "-e", f"parking_reports_dir={tmp_path}", "-e", "parking_prepare_target=false",
                                 *extra, check=check)
    report_path = tmp_path / "phase0-preflight.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    markdown = (tmp_path / "phase0-preflight.md").read_text() if report else None
    return proc, seconds, report, markdown


def by_name(report):
    return {c["name"]: c for c in report["checks"]}


@pytest.fixture(scope="module")
def v5_lab():
    """The passing run needs the V5 lab as phase 0 finds it: every database, Traefik running."""
    dbs = {r[0] for r in U.rows("postgres", "SELECT datname FROM pg_database")}
    missing = {"chirpstack", "parking_v5", "parking_v6", "parking_platform"} - dbs
    if missing:
        pytest.skip(f"the lab has been decommissioned meanwhile (missing {sorted(missing)}): no passing preflight")


def test_preflight_passes_answers_the_open_questions_and_changes_nothing(v5_lab, tmp_path):
    before = platform_fingerprint()
    marker = f"/preflight-{uuid.uuid4().hex[:8]}"
    for _ in range(3):  # traffic to a legacy service through Traefik, seen in its access log
        assert L.traefik("www", marker).status in (200, 404)
    legacy = connect("parking_platform", application_name="legacy-v4-worker")  # someone still uses it
    try:
        proc, seconds, report, markdown = preflight(tmp_path)
    finally:
        legacy.close()
    time.sleep(1.5)  # statistics are flushed asynchronously
    after = platform_fingerprint()

    assert recap(proc.stdout)["changed"] == 0 and recap(proc.stdout)["failed"] == 0
    assert list(report) == TOP_KEYS
    assert report["phase"] == 0 and report["title"] == "Preflight" and report["status"] == "passed"
    assert report["check_mode"] is False and report["generated_at"].endswith("Z")
    assert 0 < report["duration_s"] < seconds
    assert 3 <= len(report["summary"]) <= 8
    checks = by_name(report)
    assert set(checks) == CHECKS and all(c["ok"] for c in checks.values()), checks
    print(f"\n[preflight] playbook {seconds:.1f}s, report duration {report['duration_s']}s")

    facts = report["facts"]
    answers = facts["open_questions"]
    assert answers["parking_platform_in_use"].startswith("in use: "), answers
    assert "parking_user/legacy-v4-worker" in answers["parking_platform_in_use"]
    names = [s["application_name"] for s in facts["parking_platform"]["sessions"]]
    assert "legacy-v4-worker" in names and "parking-migrate (platform)" not in names  # not its own session
    assert facts["parking_platform"]["last_write_table"]

    assert "parking-website" in facts["traffic"]["with_traffic"], facts["traffic"]["answer"]
    assert facts["traffic"]["legacy"]["parking-website"]["requests"] >= 3
    assert answers["legacy_services_with_traffic"].startswith("parking-website (")

    v5_rows = {f"{s}.{t}": n for s, t, n in (
        (r[0], r[1], U.rows("parking_v5", f'SELECT count(*) FROM "{r[0]}"."{r[1]}"')[0][0])
        for r in U.rows("parking_v5", "SELECT schemaname, relname FROM pg_stat_user_tables WHERE relname "
                                   "IN ('tenants', 'sites', 'sensor_devices', 'users')"))}
    reported = {f"{t['schema']}.{t['table']}": t["rows"] for t in facts["v5"]["tables"]}
    assert all(reported[k] == v for k, v in v5_rows.items()), (v5_rows, reported)
    size = U.rows("postgres", "SELECT pg_database_size('parking_platform')")[0][0]
    assert facts["database_sizes"]["parking_platform"] == size
    assert facts["backup"]["needed_bytes"] == 2 * (facts["database_sizes"]["parking_v5"] + size)
    assert f"{facts['v5']['rows']} rows in {len(facts['v5']['tables'])} tables" in answers["v5_data_size"]

    assert "| check | result | detail |" in markdown and "## Open questions answered" in markdown
    assert before == after, "the preflight changed parking_platform or a database's relations"


def test_check_mode_runs_the_same_and_says_so(v5_lab, tmp_path):
    proc, _, report, _ = preflight(tmp_path, "--check")
    assert recap(proc.stdout)["changed"] == 0
    assert report["status"] == "passed" and report["check_mode"] is True
    assert set(by_name(report)) == CHECKS


def test_missing_access_log_is_unknown_not_a_failure(v5_lab, tmp_path):
    path = f"/nonexistent/{uuid.uuid4().hex}/access.log"
    _, _, report, _ = preflight(tmp_path, "-e", f"parking_traefik_access_log={path}")
    assert report["status"] == "passed"
    assert report["facts"]["open_questions"]["legacy_services_with_traffic"] == f"unknown (no access log at {path})"


def test_missing_database_fails_clearly_and_still_reports_the_rest(tmp_path):
    proc, _, report, markdown = preflight(tmp_path, "-e", "preflight_db_platform=parking_platform_gone", check=False)
    assert proc.returncode != 0
    assert "preflight FAILED" in proc.stdout and "database_platform" in proc.stdout
    assert 'database "parking_platform_gone" does not exist' in proc.stdout
    assert "Check platform.db" in proc.stdout
    assert report["status"] == "failed"
    checks = by_name(report)
    assert checks["database_platform"]["ok"] is False
    assert checks["database_v5"]["ok"] is True  # the other checks ran
    assert checks["disk_backup"]["ok"] is False and "parking_platform_gone unknown" in checks["disk_backup"]["detail"]
    assert report["facts"]["open_questions"]["parking_platform_in_use"] == \
        "unknown (parking_platform_gone could not be reached)"
    assert "**FAILED**" in markdown
    assert recap(proc.stdout)["changed"] == 0


def test_wrong_password_fails_every_database_without_leaking_it(tmp_path):
    secret = f"wrong-{uuid.uuid4().hex}"
    proc, _, report, _ = preflight(tmp_path, "-e", f"parking_pg_owner_password={secret}", check=False)
    assert proc.returncode != 0
    checks = by_name(report)
    for name in ("database_chirpstack", "database_v5", "database_v6", "database_platform"):
        assert checks[name]["ok"] is False
        assert "password authentication failed" in checks[name]["detail"], checks[name]
    assert checks["schema"]["detail"] == "not checked: V5 or V6 unreachable"
    assert checks["postgresql_version"]["ok"] is False
    assert secret not in proc.stdout and secret not in json.dumps(report)


def test_every_failed_check_is_listed_not_just_the_first(tmp_path):
    proc, _, report, _ = preflight(
        tmp_path, "-e", "preflight_min_memory_mb=99999999", "-e", "preflight_min_docker_api=9.99",
        "-e", "preflight_backup_factor=1000000", "-e", "preflight_traefik_container=parking-traefik-absent",
        "-e", "preflight_db_v6=parking_platform", "-e", "preflight_db_chirpstack=parking_v5", check=False)
    assert proc.returncode != 0
    failed = {c["name"]: c["detail"] for c in report["checks"] if not c["ok"]}
    assert {"memory", "docker_api", "disk_backup", "traefik", "schema", "chirpstack_schema"} <= set(failed), failed
    assert "below the minimum 99999999 MB" in failed["memory"]
    assert "older than the minimum 9.99" in failed["docker_api"]
    assert "needed" in failed["disk_backup"] and "free" in failed["disk_backup"] and "more on" in failed["disk_backup"]
    assert "parking-traefik-absent not found" in failed["traefik"]
    assert "target (V6): table tenants is missing" in failed["schema"]
    assert "lacks tables" in failed["chirpstack_schema"]
    assert report["facts"]["schema_differences"], "the differences are listed one by one"
    message = proc.stdout[proc.stdout.index("preflight FAILED"):]
    for name in ("memory", "docker_api", "disk_backup", "traefik", "schema", "chirpstack_schema"):
        assert f"{name}: " in message
    assert report["status"] == "failed" and os.path.exists(tmp_path / "phase0-preflight.md")
