"""Helpers shared by the tests: lab PostgreSQL connection parameters, queries, playbook runs.

Connection parameters come from the environment so the same tests run against the lab
container (default: 127.0.0.1:55432) or any scratch server:
PARKING_LAB_PG_HOST, PARKING_LAB_PG_PORT, PARKING_LAB_PG_USER, PARKING_LAB_PG_PASSWORD.
"""
import os
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lab_pg_params():
    return {
        "host": os.environ.get("PARKING_LAB_PG_HOST", "127.0.0.1"),
        "port": int(os.environ.get("PARKING_LAB_PG_PORT", "55432")),
        "user": os.environ.get("PARKING_LAB_PG_USER", "parking_user"),
        "password": os.environ.get("PARKING_LAB_PG_PASSWORD", "parking-user-lab"),
    }


def query(conn, sql, params=None):
    """Run a query and return all rows."""
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def scalar(conn, sql, params=None):
    rows = query(conn, sql, params)
    return rows[0][0] if rows else None


# The controller runs on the Docker host in the lab: like an operator on a shared host (README),
# the migration yields the CPU to the platform it migrates (nice 10). Measured on this 2-core
# machine under a CPU hog: 20 module runs raised the API's p99 from 113 to 686 ms at nice 0 and
# left it at baseline (133 -> 143 ms) at nice 10, in the same time.
NICE = ["nice", "-n", os.environ.get("PARKING_NICE", "10")]


def run_playbook(*args, check=True):
    """Run ansible-playbook from the repo root (niced, see NICE); return (CompletedProcess, seconds)."""
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    env["PATH"] = os.path.join(ROOT, ".venv", "bin") + os.pathsep + env.get("PATH", "")
    t0 = time.time()
    proc = subprocess.run([*NICE, "ansible-playbook", *args], cwd=ROOT, env=env,
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
