"""lab/seed.py is deterministic, idempotent and fails clearly.

Seeds scratch copies of the four databases (names suffixed _det_a / _det_b / _det_c, so the lab's
own databases are untouched) at scale 1 and compares per-table content checksums. Needs the
superuser: PARKING_LAB_PG_ADMIN_USER (default parking), PARKING_LAB_PG_ADMIN_PASSWORD (default
lab-superuser-secret). parking_app's password is not passed, so it is left as it is.
"""
import json
import os
import pathlib
import subprocess
import sys

import psycopg2
import pytest

from labdb import lab_pg_params, query

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEED = ROOT / "lab" / "seed.py"
DATABASES = ("chirpstack", "parking_v5", "parking_v6", "parking_platform")
SUFFIXES = ("_det_a", "_det_b", "_det_c")
ANCHOR = "2026-11-26"
ADMIN_USER = os.environ.get("PARKING_LAB_PG_ADMIN_USER", "parking")
ADMIN_PASSWORD = os.environ.get("PARKING_LAB_PG_ADMIN_PASSWORD", "lab-superuser-secret")

TABLES_QUERY = """
SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables
WHERE table_type = 'BASE TABLE'
  AND table_schema NOT IN ('pg_catalog', 'information_schema', 'lab_meta')
ORDER BY 1
"""


def run_seed(*extra, admin_password=ADMIN_PASSWORD, seed=42):
    """Run lab/seed.py at scale 1 on the test server; return the CompletedProcess."""
    params = lab_pg_params()
    command = [sys.executable, str(SEED), "--host", params["host"], "--port", str(params["port"]),
               "--admin-user", ADMIN_USER, "--admin-password", admin_password,
               "--owner-password", params["password"], "--seed", str(seed), "--scale", "1",
               "--anchor", ANCHOR, "--json", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def seed_ok(*extra, seed=42):
    """Run the seed, require success, return its JSON result."""
    result = run_seed(*extra, seed=seed)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def checksums(suffix):
    """Return {db.table: md5 of all rows as text, in a fixed order} for one scratch copy."""
    params = lab_pg_params()
    sums = {}
    for db in DATABASES:
        conn = psycopg2.connect(dbname=db + suffix, connect_timeout=5, options="-c TimeZone=UTC",
                                **params)
        try:
            for (table,) in query(conn, TABLES_QUERY):
                sql = (f"SELECT count(*), "
                       f"md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) "
                       f"FROM {table} t")
                sums[f"{db}.{table}"] = query(conn, sql)[0]
        finally:
            conn.close()
    return sums


def drop_scratch_databases():
    params = dict(lab_pg_params(), user=ADMIN_USER, password=ADMIN_PASSWORD)
    conn = psycopg2.connect(dbname="postgres", connect_timeout=5, **params)
    conn.autocommit = True
    try:
        for suffix in SUFFIXES:
            for db in DATABASES:
                query_no_result(conn, f'DROP DATABASE IF EXISTS "{db}{suffix}" WITH (FORCE)')
    finally:
        conn.close()


def query_no_result(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)


@pytest.fixture(scope="module")
def seeded_twice():
    """Seed _det_a and _det_b with the same parameters (from scratch); drop them afterwards."""
    try:
        first = seed_ok("--reset", "--db-suffix", "_det_a")
        second = seed_ok("--reset", "--db-suffix", "_det_b")
        yield first, second
    finally:
        drop_scratch_databases()


def test_same_parameters_give_identical_content(seeded_twice):
    assert checksums("_det_a") == checksums("_det_b")


def test_checksums_cover_seeded_rows(seeded_twice):
    first, _ = seeded_twice
    sums = checksums("_det_a")
    seeded = first["counts"]["parking_v5_det_a"]["sensor_readings"]
    assert sums["parking_v5.public.sensor_readings"][0] == seeded > 0


def test_other_seed_gives_other_content(seeded_twice):
    seed_ok("--reset", "--db-suffix", "_det_c", seed=43)
    reference = checksums("_det_a")
    differing = {t for t, s in checksums("_det_c").items() if reference[t] != s}
    assert "parking_v5.public.users" in differing


def test_second_run_changes_nothing(seeded_twice):
    result = seed_ok("--db-suffix", "_det_a")
    assert result["changed"] is False and set(result["databases"].values()) == {"unchanged"}


def test_other_parameters_require_reset(seeded_twice):
    result = run_seed("--db-suffix", "_det_a", seed=7)
    assert result.returncode != 0 and "--reset" in result.stderr and result.stdout == ""


def test_wrong_password_is_a_clear_one_line_error():
    result = run_seed("--db-suffix", "_det_a", admin_password="not-the-password")
    lines = result.stderr.strip().splitlines()
    assert (result.returncode != 0 and len(lines) == 1 and lines[0].startswith("seed: error:")
            and "password authentication failed" in lines[0])
