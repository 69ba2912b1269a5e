"""Shared pytest fixtures: connections to the lab PostgreSQL server.

Connection parameters come from the environment so the same tests run against
the lab container (default: 127.0.0.1:55432) or any scratch server:
PARKING_LAB_PG_HOST, PARKING_LAB_PG_PORT, PARKING_LAB_PG_USER, PARKING_LAB_PG_PASSWORD.
"""
import os

import psycopg2
import pytest


def lab_pg_params():
    return {
        "host": os.environ.get("PARKING_LAB_PG_HOST", "127.0.0.1"),
        "port": int(os.environ.get("PARKING_LAB_PG_PORT", "55432")),
        "user": os.environ.get("PARKING_LAB_PG_USER", "parking_user"),
        "password": os.environ.get("PARKING_LAB_PG_PASSWORD", "parking-user-lab"),
    }


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


def query(conn, sql, params=None):
    """Run a query and return all rows."""
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def scalar(conn, sql, params=None):
    rows = query(conn, sql, params)
    return rows[0][0] if rows else None


# --- The Docker lab -------------------------------------------------------

import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_playbook(*args, check=True):
    """Run ansible-playbook from the repo root; return (CompletedProcess, seconds)."""
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    env["PATH"] = os.path.join(ROOT, ".venv", "bin") + os.pathsep + env.get("PATH", "")
    t0 = time.time()
    proc = subprocess.run(["ansible-playbook", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    elapsed = time.time() - t0
    if check and proc.returncode != 0:
        raise AssertionError(f"ansible-playbook {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")
    return proc, elapsed


def recap(stdout):
    """Parse the PLAY RECAP line of the single host: {'ok': n, 'changed': n, ...}."""
    for line in stdout.splitlines():
        if line.startswith("lab-host") and "changed=" in line:
            return {k: int(v) for k, v in (kv.split("=") for kv in line.split(":", 1)[1].split())}
    raise AssertionError("no PLAY RECAP for lab-host in output")


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
    """Tests marked lab_teardown run last (they remove the lab)."""
    items.sort(key=lambda item: item.get_closest_marker("lab_teardown") is not None)
