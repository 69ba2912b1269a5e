"""History's bulk load against real PostgreSQL (database only: no Docker, no Ansible).

A full run on a V6 nobody else uses drops the history tables' plain indexes and foreign keys,
loads, and builds them again inside the run's transaction (migrate/bulk.py). Proven here:
definitions identical after the run and after rollback-1, the same rows as the live path (and
binary COPY the same rows as text), a SIGKILL in the middle leaves V6's indexes and rows as they
were, and delta runs, another session on V6 or a lock not granted keep the indexes live.

Runs on scratch copies seeded by lab/seed.py (suffixes _p1 and _p1k), like test_phase1.py; the
seed is small, so the tests lower the bulk threshold (history_bulk_min_rows=0).
"""
import signal

import pytest

import p1util as U
from labdb import query
from labutil import wait_for
from parking import migrate, pgcopy, rollback, session
from parking.migrate import bulk

SUFFIX = "_p1"
V5 = f"parking_v5{SUFFIX}"
HISTORY = ("sensor_readings", "state_changes")


@pytest.fixture(scope="module")
def source():
    U.seeded(SUFFIX)
    return V5


@pytest.fixture
def v6(source, request):
    yield from U.fresh_copy(SUFFIX, f"parking_v6_hb_{request.node.name[5:35].lower()}")


def definitions(db):
    conn = U.connect(db)
    try:
        return {t: bulk.definitions(conn.cursor(), t) for t in HISTORY}
    finally:
        conn.close()


def history_checksums(db):
    sums = U.checksums(db)
    return {t: sums[t] for t in HISTORY}


def ddl_issued(result, words):
    return [q for q in result["executed_queries"] if q.startswith(words)]


def test_bulk_run_leaves_definitions_identical_same_rows_as_live_and_rollback_restores(v6, source, monkeypatch):
    pristine_defs, pristine_sums = definitions(v6), U.checksums(v6)
    assert pristine_defs["sensor_readings"] and pristine_defs["state_changes"]
    result = U.run_engine(source, v6, allow_rejects=True, history_bulk_min_rows=0, gate=migrate.oracle_gate)
    assert result["gate"]["passed"], result["gate"]["differences"][:5]
    for t in HISTORY:
        load = result["history_load"][t]
        assert load["path"] == "bulk", load
        assert load["indexes_rebuilt"] and load["foreign_keys_validated"], load
        assert load["keys_rebuilt"] == [f"{t}_pkey"] and not load["kept_live"], load
        assert load["maintenance_work_mem"].startswith(f"{bulk.BUILD_MEMORY} for the rebuild"), load
    assert len(ddl_issued(result, "DROP INDEX")) == 4
    assert any("DROP CONSTRAINT \"sensor_readings_pkey\"" in q for q in result["executed_queries"])
    assert len(ddl_issued(result, "ALTER TABLE sensor_readings ADD CONSTRAINT")) == 3  # the key, 2 foreign keys
    assert any("WITH (FORMAT binary)" in q for q in result["executed_queries"])
    assert result["v6_wal_bytes"] > 0 and result["lock_held_seconds"] > 0
    assert definitions(v6) == pristine_defs

    # the same run the live way, text COPY: the same history rows
    live_db = U.clone_v6(SUFFIX, "parking_v6_hb_live")
    try:
        monkeypatch.setattr(pgcopy, "binary_select", lambda *a, **k: None)
        live = U.run_engine(source, live_db, allow_rejects=True, history_bulk_min_rows=None)
        assert {t: v["path"] for t, v in live["history_load"].items()} == {t: "live" for t in HISTORY}
        assert not ddl_issued(live, "DROP INDEX") and not any("FORMAT binary" in q for q in live["executed_queries"])
        assert history_checksums(live_db) == history_checksums(v6)
        assert live["counts"]["sensor_readings"] == result["counts"]["sensor_readings"]
    finally:
        U.drop(live_db)

    res = session.transactional(U.params(v6), rollback.rollback, False, state="absent", mode="rollback")
    assert res["changed"]
    assert definitions(v6) == pristine_defs
    assert U.checksums(v6) == pristine_sums


def test_sigkill_while_indexes_are_dropped_leaves_v6_indexes_and_rows_unchanged():
    suffix = "_p1k"
    U.seeded(suffix, scale=1000)  # ~105 k history rows
    victim = U.clone_v6(suffix, "parking_v6_hb_kill")
    try:
        pristine_defs, pristine_sums = definitions(victim), U.checksums(victim)
        proc = U.killable_run(f"parking_v5{suffix}", victim,
                              "history_bulk_min_rows=0, progress=lambda line: print(line, flush=True)")
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("sensor_readings: bulk load") and "dropped" in line:
                break
        else:
            raise AssertionError(f"the run never dropped sensor_readings' indexes: {seen[-5:]} "
                                 f"{proc.stderr.read()[-2000:]}")
        # inside the run's transaction the indexes are gone and the COPY is starting: kill it there
        held = U.rows("postgres", """SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                                     WHERE a.datname = %s AND l.mode = 'AccessExclusiveLock'
                                       AND l.relation IS NOT NULL""", (victim,))[0][0]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert held > 0, "the run held no exclusive lock: the drops were not in progress"
        assert "committed" not in "".join(seen)
        wait_for(lambda: not U.rows("postgres", "SELECT 1 FROM pg_stat_activity WHERE datname = %s", (victim,)),
                 timeout=30, interval=0.1)
        assert definitions(victim) == pristine_defs
        assert U.checksums(victim) == pristine_sums
        # and a run after it completes, definitions intact
        again = U.run_engine(f"parking_v5{suffix}", victim, allow_rejects=True, history_bulk_min_rows=0)
        assert again["history_load"]["sensor_readings"]["path"] == "bulk"
        assert definitions(victim) == pristine_defs
    finally:
        U.drop(victim)


def test_delta_keeps_live_indexes_and_issues_no_drop(source):
    v5db = "parking_v5_hb_delta"
    U.admin_sql(f"DROP DATABASE IF EXISTS {v5db} WITH (FORCE)",
                f"CREATE DATABASE {v5db} TEMPLATE {V5} OWNER parking_user")
    v6db = U.clone_v6(SUFFIX, "parking_v6_hb_delta")
    try:
        defs = definitions(v6db)
        U.run_engine(v5db, v6db, allow_rejects=True, history_bulk_min_rows=0)
        c5 = U.connect(v5db, autocommit=True)
        eui = "58A0CB00001196F3"  # a live sensor of the seed (test_phase1.LIVE_SENSORS)
        query(c5, "INSERT INTO sensor_readings (device_eui, occupancy_state, fcnt, \"timestamp\") "
                  "VALUES (%s, 'OCCUPIED', 999998, now()) RETURNING id", (eui,))
        query(c5, "INSERT INTO state_changes (space_id, previous_state, new_state, source, tenant_id) "
                  "SELECT id, 'FREE', 'OCCUPIED', 'sensor', tenant_id FROM spaces WHERE sensor_eui = %s "
                  "AND deleted_at IS NULL RETURNING id", (eui,))
        c5.close()
        delta = U.run_engine(v5db, v6db, mode="delta", allow_rejects=True, history_bulk_min_rows=0)
        assert delta["counts"]["sensor_readings"]["inserted"] == 1
        assert delta["counts"]["state_changes"]["inserted"] == 1
        for t in HISTORY:
            assert delta["history_load"][t]["path"] == "live" and "delta run" in delta["history_load"][t]["reason"]
        again = U.run_engine(v5db, v6db, mode="delta", allow_rejects=True, history_bulk_min_rows=0)
        assert again["history_load"]["state_changes"]["reason"] == "nothing above the watermark"
        assert not ddl_issued(again, "DROP INDEX")
        assert not ddl_issued(delta, "DROP INDEX") and not ddl_issued(delta, "ALTER TABLE sensor_readings")
        assert definitions(v6db) == defs
    finally:
        U.drop(v6db)
        U.drop(v5db)


def test_another_session_on_v6_keeps_live_indexes(v6, source):
    defs = definitions(v6)
    other = U.connect(v6, autocommit=True)  # e.g. the V6 application, idle
    try:
        result = U.run_engine(source, v6, allow_rejects=True, history_bulk_min_rows=0)
    finally:
        other.close()
    for t in HISTORY:
        assert result["history_load"][t]["path"] == "live"
        assert "1 other session(s) connected to V6" in result["history_load"][t]["reason"]
    assert not ddl_issued(result, "DROP INDEX")
    assert definitions(v6) == defs


def test_a_lock_not_granted_in_time_falls_back_to_live_and_drops_nothing(v6, source, monkeypatch):
    """A session that the rule did not see (it connected after the check) reads sensor_readings:
    the drop waits LOCK_TIMEOUT, the savepoint is rolled back, the table loads live."""
    monkeypatch.setattr(bulk, "OTHER_SESSIONS_SQL", "SELECT 0")
    monkeypatch.setattr(bulk, "LOCK_TIMEOUT", "300ms")
    defs = definitions(v6)
    reader = U.connect(v6)
    try:
        reader.cursor().execute("SELECT count(*) FROM sensor_readings")  # holds ACCESS SHARE until it ends
        result = U.run_engine(source, v6, allow_rejects=True, history_bulk_min_rows=0, gate=migrate.oracle_gate)
    finally:
        reader.close()
    load = result["history_load"]
    assert load["sensor_readings"]["path"] == "live" and "not granted within 300ms" in load["sensor_readings"]["reason"]
    assert load["state_changes"]["path"] == "bulk"
    assert result["gate"]["passed"]
    assert definitions(v6) == defs


def test_the_module_reports_wal_lock_time_and_the_path_in_check_mode_too(v6, source):
    before = U.checksums(v6)
    args = {"source": U.params(source), "target": U.params(v6), "allow_rejects": True}
    rc, res = U.module("parking_tenant_migration", args, check=True)
    assert rc == 0, res.get("msg")
    assert res["v6_wal_bytes"] > 0 and res["lock_held_seconds"] >= res["seconds"] * 0.5
    assert "lock_acquired_monotonic" not in res
    assert {t: v["path"] for t, v in res["history_load"].items()} == {t: "live" for t in HISTORY}  # tiny seed
    assert any(line.split(" ", 1)[1].startswith("rolled back (check mode): advisory lock held ")
               for line in res["progress"]), res["progress"][-3:]
    assert U.checksums(v6) == before


def test_unusual_indexes_and_keys_come_back_as_they_were(v6, source):
    """A partial index with '%' in its predicate, a quoted name, a NOT VALID key are dropped and
    built again identical; an index with a comment stays live (its comment would be lost)."""
    conn = U.connect(v6, autocommit=True)
    cur = conn.cursor()
    cur.execute("""CREATE INDEX "Idx %odd" ON sensor_readings (dev_eui) WHERE raw_payload LIKE '%x%'""")
    cur.execute("CREATE INDEX idx_commented ON sensor_readings (fcnt)")
    cur.execute("COMMENT ON INDEX idx_commented IS 'kept by the DBA'")
    cur.execute("ALTER TABLE state_changes ADD CONSTRAINT fk_test_not_valid FOREIGN KEY (space_id) "
                "REFERENCES spaces (id) NOT VALID")
    conn.close()
    defs = definitions(v6)
    result = U.run_engine(source, v6, allow_rejects=True, history_bulk_min_rows=0)
    load = result["history_load"]
    assert "Idx %odd" in load["sensor_readings"]["indexes_rebuilt"]
    assert "idx_commented (has a comment)" in load["sensor_readings"]["kept_live"]
    assert "fk_test_not_valid" in load["state_changes"]["foreign_keys_validated"]
    assert definitions(v6) == defs
    assert U.rows(v6, "SELECT obj_description('idx_commented'::regclass, 'pg_class')") == [("kept by the DBA",)]


def test_state_change_ids_taken_in_v6_keep_the_primary_key_live_for_the_staged_path(v6, source):
    """V6 holds a state change with an id V5 also uses: the rows go through staging and ON CONFLICT
    (history.direct_state_changes), which needs the primary key, so the bulk load keeps it."""
    conn = U.connect(v6, autocommit=True)
    lo = U.rows(source, "SELECT min(id) FROM state_changes")[0][0]
    query(conn, "INSERT INTO state_changes (id, space_id, new_state, source) SELECT %s, id, 'free', 'v6' "
                "FROM spaces ORDER BY id LIMIT 1 RETURNING id", (lo,))
    conn.close()
    defs = definitions(v6)
    result = U.run_engine(source, v6, allow_rejects=True, history_bulk_min_rows=0)
    load = result["history_load"]["state_changes"]
    assert load["path"] == "bulk" and not load["keys_rebuilt"], load
    assert "state_changes_pkey (the run needs it during the load (ON CONFLICT))" in load["kept_live"]
    assert load["indexes_rebuilt"], load
    assert any(r["v5_id"] == str(lo) and "taken in V6" in r["reason"] for r in result["rejects"]), result["rejects"][:5]
    assert definitions(v6) == defs


def test_state_change_ids_taken_in_v6_go_through_staging(v6, source):
    """V6 holds a state change with an id V5 also uses: the rows go through staging, where
    ON CONFLICT and the reject 'taken in V6' handle it (history.direct_state_changes). That path
    read V5 with the direct path's condition, written for the alias `s` staging does not have."""
    conn = U.connect(v6, autocommit=True)
    lo = U.rows(source, "SELECT min(id) FROM state_changes")[0][0]
    query(conn, "INSERT INTO state_changes (id, space_id, new_state, source) SELECT %s, id, 'free', 'v6' "
                "FROM spaces ORDER BY id LIMIT 1 RETURNING id", (lo,))
    conn.close()
    result = U.run_engine(source, v6, allow_rejects=True)
    assert any(r["v5_id"] == str(lo) and "taken in V6" in r["reason"] for r in result["rejects"]), result["rejects"][:5]
    assert result["counts"]["state_changes"]["inserted"] == U.rows(source, "SELECT count(*) FROM state_changes")[0][0] - 1
