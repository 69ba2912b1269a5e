"""`site.yml --check` over the whole migration on the pristine lab: every phase says what it would
do, the run summary lists all five, and nothing changes: V6's content, the containers, no
ledger, no backups, V5's databases all there."""
import json
import os
import subprocess

import p1util as U
from labdb import recap, run_playbook
from labutil import STATE_DIR


def v6_fingerprint():
    """Every table's rows and content. Sequences are left out: a rolled-back transaction still
    advances them (PostgreSQL never rolls nextval back), which changes no row."""
    return U.fingerprint("parking_v6", sequences=False)


def containers():
    out = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}} {{.Image}} {{.CreatedAt}}"],
                         capture_output=True, text=True, check=True)
    return sorted(out.stdout.splitlines())


def test_site_check_says_what_every_phase_would_do_and_changes_nothing(tmp_path):
    before_v6, before_containers = v6_fingerprint(), containers()
    proc, seconds = run_playbook("playbooks/site.yml", "--check", "--diff", "-e", f"parking_reports_dir={tmp_path}")
    assert recap(proc.stdout)["failed"] == 0
    assert v6_fingerprint() == before_v6
    assert "parking_migrate.runs" not in before_v6 and "parking_migrate.runs" not in v6_fingerprint()
    assert containers() == before_containers
    assert not os.path.exists(os.path.join(STATE_DIR, "backups"))
    conn = U.admin()
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_database WHERE datname IN ('parking_v5', 'parking_platform')")
        assert cur.fetchone()[0] == 2
    conn.close()
    # every phase reported, in check mode, with what it would do
    summary = json.loads((tmp_path / "run-summary.json").read_text())
    assert [r["phase"] for r in summary] == [0, 1, 2, 3, 4] and all(r["check_mode"] for r in summary)
    by_phase = {r["phase"]: r for r in summary}
    assert by_phase[0]["status"] == "passed"
    assert "Rows that would move" in by_phase[1]["summary"][0] and "inserted" in by_phase[1]["summary"][0]
    assert "would be started" in by_phase[2]["summary"][0]
    assert by_phase[3]["status"] == "skipped" and "would switch" in by_phase[3]["summary"][0]
    assert "Would stop containers" in by_phase[4]["summary"][0]
    assert "Would dump parking_v5" in proc.stdout
    print(f"site.yml --check: {seconds:.1f} s")
