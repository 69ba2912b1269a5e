#!/usr/bin/env python3
"""Benchmark: phase-1 history migration vs a raw COPY pipe of the same rows, same server.

  .venv/bin/python bench/history_migration.py [--scales 1000,10000] [--repeat 1]

For each scale (lab/seed.py --scale; 10000 = ~1.05 M history rows) it seeds scratch copies
(suffix _bench<scale>) on the lab server, then in one run:
  baseline  psql "COPY (SELECT * FROM sensor_readings|state_changes) TO STDOUT" piped into
            psql "COPY <copy of the table> FROM STDIN" in a fresh copy of parking_v6 (same server)
  module    the phase-1 engine, in a child process, on another fresh copy of parking_v6; its
            history steps are timed from the engine's own timings; peak RSS from the child
and prints the ratio module/baseline (goal <= 1.25) and the peak RSS (goal <= 200 MB, flat).
Not a test: numbers depend on the machine; the ratio is what to compare.
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
HISTORY_STEPS = ("stage sensor_readings", "sensor_readings", "stage state_changes", "state_changes")

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import psycopg2
from parking import ledger, migrate
P = json.loads(sys.argv[2])
src = psycopg2.connect(dbname=sys.argv[3], options="-c TimeZone=UTC", **P)
tgt = psycopg2.connect(dbname=sys.argv[4], options="-c TimeZone=UTC", **P)
t0 = time.time()
r = migrate.migrate(src, tgt, ledger.new_run_id(), "00000000-0000-0000-0000-000000000000",
                    allow_rejects=True, app_role=None)
tgt.commit()
print(json.dumps({"seconds": time.time() - t0, "timings": r["timings"], "counts": r["counts"],
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def psql_env():
    p = lab_pg_params()
    return dict(os.environ, PGHOST=p["host"], PGPORT=str(p["port"]), PGUSER=p["user"], PGPASSWORD=p["password"])


def raw_pipe(v5db, v6db):
    """Seconds for psql COPY TO STDOUT | psql COPY FROM STDIN of every history table."""
    from parking import staging
    env = psql_env()
    for t in HISTORY:  # the columns the module reads, into a V5-shaped table with a primary key
        cols, ddl = staging.SOURCES[t]
        subprocess.run(["psql", "-qX", "-d", v6db, "-c", f"CREATE TABLE raw_{t} ({ddl}, PRIMARY KEY (id))"],
                       env=env, check=True, capture_output=True)
    t0 = time.time()
    for t in HISTORY:
        cols, _ = staging.SOURCES[t]
        out = subprocess.Popen(["psql", "-qX", "-d", v5db, "-c", f"COPY (SELECT {cols} FROM {t}) TO STDOUT"],
                               env=env, stdout=subprocess.PIPE)
        subprocess.run(["psql", "-qX", "-d", v6db, "-c", f"COPY raw_{t} FROM STDIN"], env=env,
                       stdin=out.stdout, check=True, capture_output=True)
        out.stdout.close()
        assert out.wait() == 0
    return time.time() - t0


def source_like_ddl(v5db, table, name):
    """CREATE TABLE + CREATE INDEX statements for `name`, defined like V5's `table` (columns and
    indexes; no triggers, no foreign keys)."""
    conn = U.connect(v5db)
    try:
        cur = conn.cursor()
        cur.execute("""SELECT string_agg(quote_ident(column_name) || ' ' || format_type(a.atttypid, a.atttypmod),
                                         ', ' ORDER BY ordinal_position)
                       FROM information_schema.columns c JOIN pg_attribute a ON a.attrelid = %s::regclass
                         AND a.attname = c.column_name WHERE c.table_name = %s AND c.table_schema = 'public'""",
                    (table, table))
        ddl = [f"CREATE TABLE {name} ({cur.fetchone()[0]})"]
        cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = %s",
                    (table,))
        for idx, d in cur.fetchall():
            ddl.append(d.replace(f"INDEX {idx} ON public.{table}", f"INDEX {name}_{idx} ON public.{name}"))
        return ddl
    finally:
        conn.close()


def raw_pipe_like_source(v5db, v6db):
    """Seconds for psql COPY TO STDOUT | psql COPY FROM STDIN of every history table into a
    table defined like its source (same columns and indexes)."""
    env = psql_env()
    for t in HISTORY:
        for sql in source_like_ddl(v5db, t, f"like_{t}"):
            subprocess.run(["psql", "-qX", "-d", v6db, "-c", sql], env=env, check=True, capture_output=True)
    t0 = time.time()
    for t in HISTORY:
        out = subprocess.Popen(["psql", "-qX", "-d", v5db, "-c", f"COPY {t} TO STDOUT"], env=env,
                               stdout=subprocess.PIPE)
        subprocess.run(["psql", "-qX", "-d", v6db, "-c", f"COPY like_{t} FROM STDIN"], env=env,
                       stdin=out.stdout, check=True, capture_output=True)
        out.stdout.close()
        assert out.wait() == 0
    return time.time() - t0


def module_run(v5db, v6db):
    p = lab_pg_params()
    out = subprocess.run([sys.executable, "-c", CHILD, os.path.join(ROOT, "module_utils"), json.dumps(p), v5db, v6db],
                         capture_output=True, text=True, check=True)
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
    ap.add_argument("--scales", default="1000,10000")
    ap.add_argument("--repeat", type=int, default=1)
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
            base_db = U.clone_v6(suffix, f"parking_v6{suffix}_raw")
            mod_db = U.clone_v6(suffix, f"parking_v6{suffix}_mod")
            try:  # each timed step starts after a checkpoint, so none pays for the previous one's writes
                U.admin_sql("CHECKPOINT")
                raw = raw_pipe(v5db, base_db)
                U.admin_sql("CHECKPOINT")
                like = raw_pipe_like_source(v5db, base_db)
                U.admin_sql("CHECKPOINT")
                res = module_run(v5db, mod_db)
            finally:
                U.drop(base_db)
                U.drop(mod_db)
            hist = sum(res["timings"].get(k, 0) for k in HISTORY_STEPS)
            rows.append({"scale": scale, "history_rows": sum(n.values()), "raw_s": raw, "like_source_s": like,
                         "module_history_s": hist, "ratio_like_source": hist / like,
                         "module_total_s": res["seconds"], "ratio": hist / raw, "peak_rss_mb": res["maxrss_kb"] / 1024,
                         "migrated": {t: res["counts"][t].get("inserted") for t in HISTORY}})
            print(f"[bench] scale {scale} run {i + 1}: raw {raw:.2f}s module {hist:.2f}s", file=sys.stderr, flush=True)
    print("baseline A: raw COPY pipe into a bare table (same columns, primary key only): the floor")
    print("baseline B: raw COPY pipe into a table defined like the V5 source (same columns and indexes)")
    print("module:     the phase-1 engine's history steps into V6's tables (their FKs and indexes)")
    print(f"{'history rows':>13} {'A s':>6} {'B s':>6} {'module s':>9} {'mod/A':>6} {'mod/B':>6} {'peak RSS MB':>12}"
          "   (goal: ratio <= 1.25; RSS <= 200 MB, flat)")
    for r in rows:
        print(f"{r['history_rows']:>13,} {r['raw_s']:>6.2f} {r['like_source_s']:>6.2f} {r['module_history_s']:>9.2f} "
              f"{r['ratio']:>6.2f} {r['ratio_like_source']:>6.2f} {r['peak_rss_mb']:>12.1f}")
    print(json.dumps(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
