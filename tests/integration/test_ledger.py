"""The ledger (module_utils/parking/ledger.py) on real PostgreSQL: versions, the lock before any DDL,
the upgrade of a ledger written before versions existed, and the cutover state through
parking_ledger_state. A scratch database of its own (parking_ledger_test), dropped at the end."""
import json
import os
import subprocess
import threading

import psycopg2
import pytest

from labdb import ROOT, lab_pg_params
from parking import ledger
from parking.errors import LockBusy

DB = "parking_ledger_test"
ADMIN_USER = os.environ.get("PARKING_LAB_PG_ADMIN_USER", "parking")
ADMIN_PASSWORD = os.environ.get("PARKING_LAB_PG_ADMIN_PASSWORD", "lab-superuser-secret")
BIN = os.path.join(ROOT, ".venv", "bin")


def connect(dbname=DB, admin=False, autocommit=False):
    params = lab_pg_params()
    if admin:
        params = dict(params, user=ADMIN_USER, password=ADMIN_PASSWORD)
    conn = psycopg2.connect(dbname=dbname, connect_timeout=5, **params)
    conn.autocommit = autocommit
    return conn


def sql(statement, params=None):
    conn = connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


@pytest.fixture
def scratch():
    admin = connect("postgres", admin=True, autocommit=True)
    owner = lab_pg_params()["user"]
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{DB}" OWNER "{owner}"')
    yield
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    admin.close()


def test_versions_apply_once_in_order(scratch):
    conn = connect()
    with conn.cursor() as cur:
        assert ledger.begin(cur) == list(range(1, len(ledger.VERSIONS) + 1))
        assert ledger.begin(cur) == []
    conn.commit()
    conn.close()
    assert [r[0] for r in sql("SELECT version FROM parking_migrate.ledger_version ORDER BY 1")] == \
        list(range(1, len(ledger.VERSIONS) + 1))
    tables = {r[0] for r in sql("SELECT tablename FROM pg_tables WHERE schemaname = 'parking_migrate'")}
    assert {"runs", "id_map", "before_images", "backups", "decommission", "cutover_state"} <= tables
    assert "gateway_import_ledger" not in tables


def test_two_first_runs_at_once_one_waits_for_the_lock_never_a_catalog_error(scratch):
    """The lock comes before the ledger's CREATE SCHEMA: the second first-ever run gets the
    lock's message, not 'duplicate key value violates unique constraint pg_namespace_nspname_index'."""
    first = connect()
    cur = first.cursor()
    ledger.begin(cur)                      # holds the lock, the ledger created but not committed
    errors = []

    def second():
        conn = connect()
        try:
            with conn.cursor() as c:
                ledger.begin(c)
        except Exception as exc:  # what the second run reports
            errors.append(exc)
        finally:
            conn.close()
    thread = threading.Thread(target=second)
    thread.start()
    thread.join(30)
    first.commit()
    first.close()
    assert len(errors) == 1 and isinstance(errors[0], LockBusy), errors
    assert "another parking-migrate run holds the migration lock" in str(errors[0])
    # once the first committed, the next run finds the ledger current
    conn = connect()
    with conn.cursor() as c:
        assert ledger.begin(c) == []
    conn.rollback()
    conn.close()


def test_a_copy_back_waits_for_no_other_one(scratch):
    """Back-sync writes V5 under the same lock, taken in V5's database: a second copy back while
    one runs stops with the lock's message before reading or writing anything."""
    from parking import backsync
    holder = connect()
    holder.cursor().execute("SELECT pg_advisory_xact_lock(hashtext('parking-migrate'))")
    v6, v5 = connect(), connect()
    try:
        with pytest.raises(LockBusy, match="holds the migration lock"):
            backsync.backsync(v6, v5, "2026-11-30T00:00:00+00:00")
    finally:
        for conn in (v6, v5, holder):
            conn.close()


def test_a_ledger_from_before_versions_is_upgraded_and_its_gateway_records_kept(scratch):
    """A ledger written before versions (tables created one by one, gateway imports in their own
    table) becomes version 1 + 2: nothing lost, gateway records where rollback-1 reads them."""
    run1, run2 = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
    sql("""CREATE SCHEMA parking_migrate;
           CREATE TABLE parking_migrate.cutover_state (key text PRIMARY KEY, value jsonb NOT NULL,
                                                       updated_at timestamptz NOT NULL DEFAULT now());
           INSERT INTO parking_migrate.cutover_state VALUES ('started', '{"at": "2026-11-30T10:00:00+00:00"}');
           CREATE TABLE parking_migrate.gateway_import_ledger (
               run_id uuid NOT NULL, gateway_row_id uuid NOT NULL, tenant_id uuid NOT NULL,
               gateway_id text NOT NULL, action text NOT NULL, before jsonb,
               imported_at timestamptz NOT NULL DEFAULT now())""")
    sql("INSERT INTO parking_migrate.gateway_import_ledger VALUES "
        "(%s, 'aaaaaaaa-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000000', "
        " '0016c001ff10a235', 'inserted', NULL, now() - interval '1 hour'), "
        "(%s, 'aaaaaaaa-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000000', "
        " 'AC1F09FFFE0A1B2C', 'updated', '{\"name\": \"before\"}', now())", (run1, run2))
    conn = connect()
    with conn.cursor() as cur:
        assert ledger.begin(cur) == [1, 2]
        assert ledger.cutover_state(cur) == {"started": {"at": "2026-11-30T10:00:00+00:00"}}
    conn.commit()
    conn.close()
    assert sql("SELECT entity, v5_id, v6_id, action, run_id::text FROM parking_migrate.id_map") == [
        ("gateways", "0016C001FF10A235:aaaaaaaa-0000-0000-0000-000000000001",
         "aaaaaaaa-0000-0000-0000-000000000001", "inserted", run1)]
    assert sql("SELECT tbl, row_id, before, run_id::text FROM parking_migrate.before_images") == [
        ("gateways", "aaaaaaaa-0000-0000-0000-000000000002", {"name": "before"}, run2)]
    assert sql("SELECT to_regclass('parking_migrate.gateway_import_ledger')") == [(None,)]


def test_quote_uses_the_connection(scratch):
    """Identifiers and literals are quoted by psycopg2 for the connection (quote.py), and the
    engine's connectionless quoter (mapping.sql_literal) gives the same value, backslashes included,
    on a connection from connection.connect (standard_conforming_strings on)."""
    from parking import connection, mapping, quote
    p = lab_pg_params()
    conn = connection.connect({"login_host": p["host"], "login_port": p["port"], "login_user": p["user"],
                               "login_password": p["password"], "db": DB, "ssl_mode": "prefer"}, "target")
    try:
        with conn.cursor() as cur:
            assert quote.ident(cur, "public", 'we"ird') == '"public"."we""ird"'
            for value in ("plain", "it's", "back\\slash\\n", "é ü 漢", ""):
                cur.execute(f"SELECT {quote.literal(cur, value)}, {mapping.sql_literal(value)}")
                assert cur.fetchone() == (value, value)
            assert quote.literal(cur, None) == "NULL"
    finally:
        conn.close()


def module(args, check=False):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.minimal",
               ANSIBLE_DEPRECATION_WARNINGS="0")
    cmd = [os.path.join(BIN, "ansible"), "localhost", "-m", "parking_ledger_state", "-a", json.dumps(args)]
    if check:
        cmd += ["--check", "--diff"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    out = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return out, proc


def test_parking_ledger_state_reads_records_and_clears(scratch):
    p = lab_pg_params()
    target = {"login_host": p["host"], "login_port": p["port"], "login_user": p["user"],
              "login_password": p["password"], "db": DB}
    empty, _ = module({"target": target})
    assert not empty.get("failed") and empty["recorded"] == {} and not empty["changed"]
    # check mode: would record, records nothing (not even the ledger)
    would, _ = module({"target": target, "state": "present", "key": "started"}, check=True)
    assert would["changed"] and would["recorded_keys"] == ["started"]
    assert sql("SELECT to_regclass('parking_migrate.runs')") == [(None,)]
    first, _ = module({"target": target, "state": "present", "key": "started"})
    assert first["changed"] and "at" in first["recorded"]["started"]
    again, _ = module({"target": target, "state": "present", "key": "started"})
    assert not again["changed"] and again["recorded"] == first["recorded"]   # the first start is kept
    urls = [{"application_id": "6f1c0000-0000-0000-0000-000000000001", "url": "http://parking-api:8000/api/v1/uplink"}]
    saved, _ = module({"target": target, "state": "present", "key": "webhook_original", "value": urls})
    assert saved["changed"] and saved["recorded"]["webhook_original"] == urls
    cleared, _ = module({"target": target, "state": "absent"})
    assert cleared["changed"] and cleared["recorded"] == {}
    nothing, _ = module({"target": target, "state": "absent"})
    assert not nothing["changed"]
    # a read that fails fails the task: it is never taken for "nothing recorded"
    failed, proc = module({"target": dict(target, login_password="wrong-password")})
    assert failed.get("failed") and "password" in failed["msg"]
    assert "wrong-password" not in proc.stdout + proc.stderr
    unknown, _ = module({"target": target, "state": "present", "key": "finished"})
    assert unknown.get("failed") and "value of key must be one of" in unknown["msg"]
