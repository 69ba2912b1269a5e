#!/usr/bin/env python3
"""Benchmark: phase-1 history migration vs raw COPY pipes of the same rows, same server, same run.

  PARKING_LAB_PG_PORT=... nice -n 10 .venv/bin/python bench/history_migration.py \
      [--scales 10000,100000] [--repeat 1]

For each scale (lab/seed.py --scale: 10000 = ~1.05 M history rows, 100000 = ~10.5 M) it seeds
scratch copies (suffix _bench<scale>) on the lab server, then in one run, each timed step after
a CHECKPOINT so that none pays for the previous one's writes:

  module  the phase-1 engine, in a child process, on a fresh copy of parking_v6 (nobody else
          connected: a full run on a V6 that is not serving, so history takes the bulk path);
          its history steps timed by the engine ("history <table>": COPY, rejects, indexes and
          foreign keys built again), peak RSS of the child, V6 WAL and time under the lock
  fair    psql "COPY (the rows the module wrote) TO STDOUT" | psql "COPY ... FROM STDIN" into an
          identical copy of each V6 table in the same database: CREATE TABLE ... (LIKE <table>
          INCLUDING ALL) (columns, defaults, NOT NULL and CHECK constraints, every index) plus the
          table's foreign keys and triggers; what a plain load into V6's own table costs
  bare    the same pipe into a table with the same columns and a primary key only: the floor

and prints the module's time with its ratio to each (goal: module/fair <= 1.0), peak RSS (goal
<= 200 MB, flat) and, with two scales or more, how the module's time grew against the rows
(goal: 10 M / 1 M <= 11). Baselines use psql's default text format; the module streams binary
when that is exact (pgcopy.py). Not a test: numbers depend on the machine (on a shared one,
absolute times are noise); the ratios within one run are what to compare.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "integration"),
                os.path.join(ROOT, "module_utils")]
import p1util as U  # noqa: E402
from labdb import lab_pg_params  # noqa: E402

HISTORY = ("sensor_readings", "state_changes")
LOG_DIR = os.environ.get("PARKING_BENCH_LOG_DIR", "/tmp")

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import psycopg2
from parking import ledger, migrate
from parking.session import Progress
P = json.loads(sys.argv[2])
src = psycopg2.connect(dbname=sys.argv[3], options="-c TimeZone=UTC", **P)
tgt = psycopg2.connect(dbname=sys.argv[4], options="-c TimeZone=UTC", **P)
progress = Progress(sys.argv[5])
t0 = time.time()
r = migrate.migrate(src, tgt, ledger.new_run_id(), "00000000-0000-0000-0000-000000000000",
                    allow_rejects=True, app_role=None, progress=progress)
tgt.commit()
held = time.monotonic() - r["lock_acquired_monotonic"]
print(json.dumps({"seconds": time.time() - t0, "timings": r["timings"], "counts": r["counts"],
                  "history_load": r["history_load"], "wal_bytes": r["v6_wal_bytes"], "lock_s": held,
                  "eta_lines": sum(" ETA " in l for l in progress.lines),
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

# the rows the module wrote (a pristine V6 may hold rows of its own)
MIGRATED = {"sensor_readings": "raw_payload LIKE '{\"migrated_by\" : \"parking-migrate\"%'",
            "state_changes": "id IN (SELECT c.id FROM state_changes c JOIN parking_migrate.history_ranges r "
                             "ON r.tbl = 'state_changes' AND c.id > r.lo AND c.id <= r.hi)"}


def psql_env():
    p = lab_pg_params()
    return dict(os.environ, PGHOST=p["host"], PGPORT=str(p["port"]), PGUSER=p["user"], PGPASSWORD=p["password"])


def psql(db, sql):
    out = subprocess.run(["psql", "-qAtX", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql], env=psql_env(),
                         check=True, capture_output=True, text=True)
    return out.stdout


def fair_ddl(db, table, name):
    """An identical copy of V6's `table` named `name`: LIKE ... INCLUDING ALL, then the table's
    foreign keys (same definitions and names) and its own triggers."""
    ddl = [f"CREATE TABLE {name} (LIKE {table} INCLUDING ALL)"]
    conn = U.connect(db)
    try:
        cur = conn.cursor()
        cur.execute("SELECT quote_ident(conname), pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname", (table,))
        ddl += [f"ALTER TABLE {name} ADD CONSTRAINT {c} {d}" for c, d in cur.fetchall()]
        cur.execute("SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                    (table,))
        for (d,) in cur.fetchall():
            moved = d.replace(f" ON public.{table} ", f" ON public.{name} ")
            assert moved != d, d
            ddl.append(moved)
    finally:
        conn.close()
    return ddl


def raw_pipe(db, kind):
    """Seconds for psql COPY TO STDOUT | psql COPY FROM STDIN of the module's rows of every
    history table into bench_<kind>_<table> (fair: identical to V6's; bare: primary key only)."""
    columns = {}
    for t in HISTORY:
        name = f"bench_{kind}_{t}"
        ddl = fair_ddl(db, t, name) if kind == "fair" else [f"CREATE TABLE {name} (LIKE {t})",
                                                             f"ALTER TABLE {name} ADD PRIMARY KEY (id)"]
        for sql in [f"DROP TABLE IF EXISTS {name}"] + ddl:
            psql(db, sql)
        columns[t] = psql(db, f"SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute "
                              f"WHERE attrelid = '{t}'::regclass AND attnum > 0 AND NOT attisdropped").strip()
    U.admin_sql("CHECKPOINT")
    t0 = time.time()
    for t in HISTORY:
        out = subprocess.Popen(["psql", "-qX", "-d", db, "-c",
                                f"COPY (SELECT {columns[t]} FROM {t} WHERE {MIGRATED[t]}) TO STDOUT"],
                               env=psql_env(), stdout=subprocess.PIPE)
        subprocess.run(["psql", "-qX", "-v", "ON_ERROR_STOP=1", "-d", db, "-c",
                        f"COPY bench_{kind}_{t} ({columns[t]}) FROM STDIN"], env=psql_env(),
                       stdin=out.stdout, check=True, capture_output=True)
        out.stdout.close()
        assert out.wait() == 0
    seconds = time.time() - t0
    rows = sum(int(psql(db, f"SELECT count(*) FROM bench_{kind}_{t}")) for t in HISTORY)
    for t in HISTORY:
        psql(db, f"DROP TABLE bench_{kind}_{t}")
    return seconds, rows


def module_run(v5db, v6db, log):
    p = lab_pg_params()
    if os.path.exists(log):
        os.unlink(log)
    out = subprocess.run([sys.executable, "-c", CHILD, os.path.join(ROOT, "module_utils"), json.dumps(p), v5db, v6db,
                          log], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the module's run failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout)


def history_rows(v5db):
    conn = U.connect(v5db)
    try:
        cur = conn.cursor()
        return {t: (cur.execute(f"SELECT count(*) FROM {t}"), cur.fetchone()[0])[1] for t in HISTORY}
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="10000", help="lab seed scales, comma-separated (10000 = ~1.05 M rows)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the seeded V5/V6 scratch databases")
    args = ap.parse_args()
    rows = []
    for scale in [int(s) for s in args.scales.split(",")]:
        suffix = f"_bench{scale}"
        t0 = time.time()
        U.seeded(suffix, scale=scale)
        print(f"[bench] scale {scale}: seeded in {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
        v5db = f"parking_v5{suffix}"
        n = history_rows(v5db)
        for i in range(args.repeat):
            mod_db = U.clone_v6(suffix, f"parking_v6{suffix}_mod")
            log = os.path.join(LOG_DIR, f"bench-phase1-progress{suffix}.log")
            try:
                U.admin_sql("CHECKPOINT")
                res = module_run(v5db, mod_db, log)
                fair, fair_rows = raw_pipe(mod_db, "fair")
                bare, bare_rows = raw_pipe(mod_db, "bare")
            finally:
                U.drop(mod_db)
            hist = sum(res["timings"].get(f"history {t}", 0) for t in HISTORY)
            moved = sum(res["counts"][t].get("inserted", 0) for t in HISTORY)
            assert fair_rows == bare_rows == moved, (fair_rows, bare_rows, moved)
            rows.append({"scale": scale, "history_rows": sum(n.values()), "moved": moved, "fair_s": fair,
                         "bare_s": bare, "module_history_s": hist, "ratio_fair": hist / fair,
                         "ratio_bare": hist / bare, "module_total_s": res["seconds"],
                         "peak_rss_mb": res["maxrss_kb"] / 1024, "wal_mb": res["wal_bytes"] / 1048576,
                         "lock_s": res["lock_s"], "eta_lines": res["eta_lines"], "progress_log": log,
                         "paths": {t: v["path"] for t, v in res["history_load"].items()},
                         "timings": {k: v for k, v in res["timings"].items() if "sensor_readings" in k
                                     or "state_changes" in k}})
            print(f"[bench] scale {scale} run {i + 1}: module {hist:.2f}s fair {fair:.2f}s bare {bare:.2f}s",
                  file=sys.stderr, flush=True)
        if not args.keep:
            for db in ("chirpstack", "parking_v5", "parking_v6", "parking_platform"):
                U.drop(f"{db}{suffix}")
    print("module: the phase-1 engine's history steps into V6's tables (bulk path: indexes and FKs built after the load)")
    print("fair:   raw COPY pipe (psql | psql) of the same rows into an identical copy of V6's table (indexes, FKs, defaults)")
    print("bare:   the same pipe into the same columns with a primary key only (the floor)")
    print(f"{'V5 rows':>11} {'moved':>11} {'module s':>9} {'fair s':>8} {'bare s':>8} {'mod/fair':>9} {'mod/bare':>9} "
          f"{'RSS MB':>7} {'WAL MB':>7} {'lock s':>7}  path")
    for r in rows:
        paths = ",".join(sorted(set(r["paths"].values())))
        print(f"{r['history_rows']:>11,} {r['moved']:>11,} {r['module_history_s']:>9.2f} {r['fair_s']:>8.2f} "
              f"{r['bare_s']:>8.2f} {r['ratio_fair']:>9.2f} {r['ratio_bare']:>9.2f} {r['peak_rss_mb']:>7.1f} "
              f"{r['wal_mb']:>7.0f} {r['lock_s']:>7.1f}  {paths}")
    print("goals: mod/fair <= 1.0; peak RSS <= 200 MB; progress lines with rows/s and ETA:",
          ", ".join(f"{r['eta_lines']} in {r['progress_log']}" for r in rows))
    by_scale = {}
    for r in rows:
        by_scale.setdefault(r["scale"], []).append(r)
    if len(by_scale) > 1:
        lo, hi = min(by_scale), max(by_scale)
        t_lo = min(r["module_history_s"] for r in by_scale[lo])
        t_hi = min(r["module_history_s"] for r in by_scale[hi])
        f_lo = min(r["fair_s"] for r in by_scale[lo])
        f_hi = min(r["fair_s"] for r in by_scale[hi])
        rows_ratio = by_scale[hi][0]["history_rows"] / by_scale[lo][0]["history_rows"]
        print(f"growth {hi} / {lo} (rows x{rows_ratio:.1f}): module x{t_hi / t_lo:.2f}, fair x{f_hi / f_lo:.2f} "
              f"(goal: module <= 11)")
    print(json.dumps(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
