"""Ids come from a sequence before commit: under load a V5 reading with a lower id can commit after
one with a higher id. A migration run's watermark (max id it saw) then sits above a row it could
not see. The delta's overlap window catches that row; the verification gate must compare only
what the run's snapshot saw (sqlfrag.seen_by with the snapshot recorded beside the watermarks),
or it fails a correct migration (CI, 2026-12-01: "1297 readings in V6, V5 has 1298 up to id 11768")."""
import os
import subprocess

import psycopg2
import pytest

import p1util as U
from parking.sqlfrag import SNAPSHOT_MARK, SOURCE_MARK, seen_by, seen_by_run, source_identity

DB = "parking_late_commit_test"


@pytest.fixture
def scratch():
    U.admin_sql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", f"CREATE DATABASE {DB}")
    conn = psycopg2.connect(dbname=DB, **dict(U.lab_pg_params(), user=U.ADMIN_USER, password=U.ADMIN_PASSWORD))
    conn.autocommit = True
    conn.cursor().execute("CREATE TABLE readings (id bigserial PRIMARY KEY, v text)")
    conn.close()
    yield DB
    U.drop(DB)


def connect(db):
    return psycopg2.connect(dbname=db, **dict(U.lab_pg_params(), user=U.ADMIN_USER, password=U.ADMIN_PASSWORD))


def test_the_gate_sees_what_the_run_saw_not_a_row_committed_after(scratch):
    slow, fast, run, gate = (connect(scratch) for _ in range(4))
    try:
        slow.cursor().execute("INSERT INTO readings (v) VALUES ('slow') RETURNING id")  # id 1, open
        c = fast.cursor()
        c.execute("INSERT INTO readings (v) VALUES ('fast')")  # id 2, committed first
        fast.commit()
        run.set_session(isolation_level="REPEATABLE READ", readonly=True)
        r = run.cursor()
        r.execute("SELECT max(id), pg_current_snapshot()::text FROM readings")
        watermark, snapshot = r.fetchone()
        assert watermark == 2
        slow.commit()  # id 1 commits after the run's snapshot, below its watermark
        g = gate.cursor()
        g.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
        ref = g.fetchone()[0]
        g.execute(f"SELECT array_agg(id ORDER BY id) FROM readings WHERE id <= %s AND {seen_by(snapshot, ref)}",
                  (watermark,))
        assert g.fetchone()[0] == [2]  # what the run migrated
        g.execute("SELECT array_agg(id ORDER BY id) FROM readings WHERE id <= %s", (watermark,))
        assert g.fetchone()[0] == [1, 2]  # the late row: the next delta's overlap catches it
        g.execute(f"SELECT count(*) FROM readings WHERE {seen_by('', ref)}")
        assert g.fetchone()[0] == 2  # no snapshot recorded (an older ledger): every row
    finally:
        for conn in (slow, fast, run, gate):
            conn.close()


def test_a_restored_copy_is_checked_for_every_row_it_holds(scratch):
    """A copy restored from a dump (phase 4's backup, restored and gated in molecule) has new xmins
    on every row: against the run's snapshot none would count as seen, and the gate would expect
    0 readings (CI, 2026-12-01: "expected 0 rows, found 1031"). The run records which database its
    snapshot belongs to; on any other database every row up to the watermark counts."""
    copy = f"{scratch}_restored"
    run = connect(scratch)
    try:
        c = run.cursor()
        c.execute("INSERT INTO readings (v) VALUES ('a'), ('b')")
        run.commit()
        c.execute("SELECT max(id), pg_current_snapshot()::text FROM readings")
        watermark, snapshot = c.fetchone()
        marks = {SNAPSHOT_MARK: snapshot, SOURCE_MARK: source_identity(c)}
        run.commit()
    finally:
        run.close()
    U.admin_sql(f"DROP DATABASE IF EXISTS {copy} WITH (FORCE)", f"CREATE DATABASE {copy}")
    try:
        p = U.lab_pg_params()
        env = dict(os.environ, PGPASSWORD=U.ADMIN_PASSWORD)
        conn_args = ["-h", p["host"], "-p", str(p["port"]), "-U", U.ADMIN_USER]
        dump = subprocess.run(["pg_dump", "-Fc", *conn_args, "-d", scratch], env=env, check=True,
                              capture_output=True).stdout
        subprocess.run(["pg_restore", "--exit-on-error", *conn_args, "-d", copy], input=dump, env=env,
                       check=True, capture_output=True)
        for db, expected in ((scratch, 2), (copy, 2)):
            conn = connect(db)
            try:
                g = conn.cursor()
                g.execute(f"SELECT count(*) FROM readings WHERE id <= %s AND {seen_by_run(g, marks)}",
                          (watermark,))
                assert g.fetchone()[0] == expected, db
            finally:
                conn.close()
        # the restored rows' xmins are not those the snapshot saw: without the database check, 0
        conn = connect(copy)
        try:
            g = conn.cursor()
            g.execute(f"SELECT count(*) FROM readings WHERE id <= %s AND {seen_by_run(g, {SNAPSHOT_MARK: snapshot})}",
                      (watermark,))
            assert g.fetchone()[0] == 0
        finally:
            conn.close()
    finally:
        U.drop(copy)
