"""Shared pytest fixtures: connections to the lab PostgreSQL server and the Docker lab itself.

Helpers (connection parameters, query, scalar, run_playbook, recap) live in labdb.py.
"""
import os

import psycopg2
import pytest

from labdb import lab_pg_params, recap, run_playbook


@pytest.fixture(scope="session")
def pg_params():
    return lab_pg_params()


@pytest.fixture
def lab_db(pg_params):
    """Return connect(dbname) -> autocommit psycopg2 connection; all closed at teardown."""
    conns = []

    def connect(dbname):
        conn = psycopg2.connect(dbname=dbname, connect_timeout=5, **pg_params)
        conn.autocommit = True
        conns.append(conn)
        return conn

    yield connect
    for conn in conns:
        conn.close()


@pytest.fixture(scope="session")
def lab():
    """The lab, brought up from nothing once per session (tag down, then up).

    PARKING_LAB_REUSE=1 keeps an existing lab (only runs `up`, which is idempotent).
    Returns a dict with the bring-up timings.
    """
    info = {}
    if os.environ.get("PARKING_LAB_REUSE") != "1":
        _, info["down_seconds"] = run_playbook("playbooks/lab.yml", "--tags", "down")
    proc, info["up_seconds"] = run_playbook("playbooks/lab.yml")
    info["up_recap"] = recap(proc.stdout)
    info["up_stdout"] = proc.stdout
    print(f"\n[lab] up in {info['up_seconds']:.1f}s")
    return info


def pytest_collection_modifyitems(items):
    """Order on the shared lab: tests of the pristine seed (tests/lab) first, everything else,
    then tests that change the lab's own databases (marker lab_mutating), then lab_teardown."""
    def rank(item):
        if item.get_closest_marker("lab_teardown"):
            return 3
        if item.get_closest_marker("lab_mutating"):
            return 2
        return 0 if "/tests/lab/" in str(item.fspath) else 1
    items.sort(key=rank)
