"""Scratch copies of the lab databases for phase-1 tests (never the lab's own databases).

`seeded(suffix, scale)` seeds chirpstack<suffix>, parking_v5<suffix>, parking_v6<suffix>,
parking_platform<suffix> once (lab/seed.py is idempotent); `clone_v6(suffix, name)` makes a
fresh V6 from the pristine parking_v6<suffix> for a test that writes.
"""
import json
import os
import subprocess
import sys

import psycopg2

from labdb import ROOT, lab_pg_params

ADMIN_USER = os.environ.get("PARKING_LAB_PG_ADMIN_USER", "parking")
ADMIN_PASSWORD = os.environ.get("PARKING_LAB_PG_ADMIN_PASSWORD", "lab-superuser-secret")
PLATFORM = "00000000-0000-0000-0000-000000000000"
ANCHOR = "2026-11-26"
sys.path.insert(0, os.path.join(ROOT, "module_utils"))


def seeded(suffix, scale=1):
    p = lab_pg_params()
    env = dict(os.environ, PARKING_LAB_ADMIN_PASSWORD=ADMIN_PASSWORD, PARKING_LAB_OWNER_PASSWORD=p["password"])
    cmd = [sys.executable, os.path.join(ROOT, "lab", "seed.py"), "--host", p["host"], "--port", str(p["port"]),
           "--admin-user", ADMIN_USER, "--scale", str(scale), "--seed", "42", "--anchor", ANCHOR,
           "--db-suffix", suffix, "--json"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0 and "--reset" in out.stderr:
        out = subprocess.run(cmd + ["--reset"], env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def params(db, **over):
    p = lab_pg_params()
    return {"login_host": p["host"], "login_port": p["port"], "login_user": over.get("user", p["user"]),
            "login_password": over.get("password", p["password"]), "db": db}


def connect(db, autocommit=False):
    conn = psycopg2.connect(dbname=db, connect_timeout=5, options="-c TimeZone=UTC", **lab_pg_params())
    conn.autocommit = autocommit
    return conn


def rows(db, sql, params=None):
    """All rows of one query on database `db` (its own connection, closed after)."""
    conn = connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def admin():
    p = dict(lab_pg_params(), user=ADMIN_USER, password=ADMIN_PASSWORD)
    conn = psycopg2.connect(dbname="postgres", **p)
    conn.autocommit = True
    return conn


def admin_sql(*statements):
    conn = admin()
    try:
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
    finally:
        conn.close()


def clone_v6(suffix, name):
    """A fresh copy of the pristine parking_v6<suffix> named `name`."""
    admin_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)",
              f"CREATE DATABASE {name} TEMPLATE parking_v6{suffix} OWNER parking_user")
    return name


def drop(name):
    admin_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def migrated_copy(source, suffix, name):
    """Generator for a module fixture: a V6 copy `name` migrated once from `source`
    (allow_rejects: the seed holds rows that must be rejected), dropped afterwards."""
    db = clone_v6(suffix, name)
    before = checksums(db)
    result = run_engine(source, db, allow_rejects=True, app_role="parking_v6_app")
    conn = connect(db, autocommit=True)
    yield {"db": db, "conn": conn, "result": result, "before": before}
    conn.close()
    drop(db)


def fresh_copy(suffix, name):
    """Generator for a function fixture: a pristine V6 copy `name`, dropped afterwards."""
    db = clone_v6(suffix, name)
    yield db
    drop(db)


def fingerprint(db, sequences=True):
    """Phase 4's fingerprint of a database: per relation, rows and a content checksum.
    sequences=False leaves sequences out (a rolled-back transaction still advances them)."""
    from parking import backup
    conn = connect(db)
    try:
        with conn.cursor() as cur:
            fp = backup.fingerprint(cur)
    finally:
        conn.close()
    return fp if sequences else {k: v for k, v in fp.items() if not v["checksum"].startswith("seq:")}


def checksums(db, drop_cols=()):
    """{table: 'count:sum'} of schema public; drop_cols are left out of every row."""
    from parking.checksum import ROW_HASH
    conn = connect(db)
    try:
        cur = conn.cursor()
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        out = {}
        row = "(to_jsonb(t)" + "".join(f" - '{c}'" for c in drop_cols) + ")"
        for (t,) in cur.fetchall():
            cur.execute(f"SELECT count(*), coalesce(sum({ROW_HASH.format(row=row)}), 0) FROM public.{t} t")
            n, s = cur.fetchone()
            out[t] = f"{n}:{s}"
        return out
    finally:
        conn.close()


def run_engine(v5, v6, commit=True, **kw):
    """Run the phase-1 engine directly; returns its result (or raises)."""
    from parking import ledger, migrate
    src, tgt = connect(v5), connect(v6)
    try:
        result = migrate.migrate(src, tgt, ledger.new_run_id(), PLATFORM, **kw)
        (tgt.commit if commit else tgt.rollback)()
        return result
    finally:
        tgt.rollback()
        src.close()
        tgt.close()


def module(name, args, check=False):
    """Run a custom module through `ansible localhost -m` (the operator's path); returns (rc, json)."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.json")
    env["PATH"] = os.path.join(ROOT, ".venv", "bin") + os.pathsep + env["PATH"]
    cmd = ["ansible", "localhost", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}",
           "-m", name, "-a", json.dumps(args)] + (["--check"] if check else [])
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if "{" not in out.stdout:
        raise AssertionError(f"ansible printed no JSON (rc {out.returncode}): {out.stderr[-2000:]}")
    data = json.loads(out.stdout[out.stdout.index("{"):])
    res = data["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return out.returncode, res


KILLABLE_RUN = """
import sys
sys.path.insert(0, {mu!r})
import psycopg2
from parking import ledger, migrate
P = dict(host={host!r}, port={port}, user={user!r}, password={pw!r}, options="-c TimeZone=UTC")
src = psycopg2.connect(dbname={v5!r}, **P)
tgt = psycopg2.connect(dbname={v6!r}, **P)
print("connected", flush=True)
migrate.migrate(src, tgt, ledger.new_run_id(), {platform!r}, allow_rejects=True, {options})
tgt.commit()
print("committed", flush=True)
"""


def killable_run(v5, v6, options=""):
    """A phase-1 run of V5 `v5` into V6 `v6` in a child process, for SIGKILL tests: it prints
    "connected", then what the run prints (options, e.g. progress=...), then "committed"."""
    p = lab_pg_params()
    code = KILLABLE_RUN.format(mu=os.path.join(ROOT, "module_utils"), host=p["host"], port=p["port"], user=p["user"],
                               pw=p["password"], v5=v5, v6=v6, platform=PLATFORM, options=options)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
