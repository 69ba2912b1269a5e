"""The phase-1 run: migrate(...) and its oracle gate (phase 1 engine, see __init__).

migrate() takes the ledger lock, checks the live schemas and the platform tenant, stages V5,
runs the entities in dependency order (registry, links), then the history above and just below
the watermarks (history), RLS, the counts before and after, the result and the gate, and last
the rows V6's webhook locks on every uplink (links.sync_hot_state), so a serving V6 never waits
for the run's history copy or gate to release them. The steps are called as attributes of their modules (registry.migrate_sites, history.direct_readings, ...),
looked up at each call as before the split, so a test can wrap one in its module.
"""
import time

from .. import ledger, mapping, oracle, quote, rls, schema, sqlfrag as F, staging
from ..errors import ConfigError, GateFailed, RejectsPresent
from . import bulk, history, links, registry
from .history import HISTORY_OVERLAP, RETAINED, RETENTION_MARK, TS
from .run import L, Run

PHASE = "phase1"

V6_TABLES = ("tenants", "users", "user_memberships", "sites", "spaces", "sensor_devices", "display_devices",
             "device_assignments", "reservations", "orphan_devices", "sensor_readings", "state_changes")


# WAL inserted so far on V6's server (write-ahead log: every database of that server; the
# insert position, which counts what this transaction wrote even before it is flushed)
WAL_SQL = "SELECT pg_current_wal_insert_lsn()::text"


def v6_counts(run):
    return {t: run.scalar(f"SELECT count(*) FROM {t}") for t in V6_TABLES}


def check_platform_tenant(run):
    if run.scalar("SELECT count(*) FROM tenants WHERE id = %(platform)s::uuid") != 1:
        raise ConfigError(f"the platform tenant {run.platform} is absent from the target database: create it "
                          "in V6 (name Platform, slug platform, type platform) or set platform_tenant_id")


def migrate(src_conn, tgt_conn, run_id, platform, mode="full", history_since=None, allow_rejects=False,
            app_role=None, app_role_password=None, progress=None,
            history_retention_days=mapping.HISTORY_RETENTION_DAYS, anonymous_user_email=None, gate=None,
            history_bulk_min_rows=bulk.BULK_MIN_ROWS):
    """The whole phase-1 run inside the target's current transaction. Returns the result dict.

    history_retention_days: readings older than the run's time minus this many days are not
    migrated (V6's cleanup deletes them); 0 migrates all of them.

    gate: a function(run, result) -> gate result dict, called last inside the run's transaction
    (before the caller commits); a gate that does not pass raises GateFailed, so a failing state
    is never committed.

    history_bulk_min_rows: a history table loads by the bulk path (bulk.py: indexes and foreign
    keys built again after the load, in this transaction) when V6 is not serving and at least
    this many rows come; None turns the bulk path off. result["history_load"] says which path
    each table took and why.

    The caller commits (or rolls back in check mode) and owns the connections. The result's
    "lock_acquired_monotonic" is when the advisory lock was taken (time.monotonic()), for the
    caller to report how long it was held once it commits (session.transactional does).
    """
    t_start = time.time()
    src_conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    run = Run(src_conn, tgt_conn, run_id, platform, progress)
    if anonymous_user_email:
        run.anonymous_email = anonymous_user_email
    ledger.lock(run.cur)  # before any DDL: two runs never race on the ledger's creation
    locked_at = time.monotonic()
    wal_start = run.scalar(WAL_SQL)
    ledger.ensure(run.cur)
    optional = schema.check(run.src, run.cur)
    check_platform_tenant(run)
    marks = ledger.last_watermarks(run.cur, PHASE)
    if mode == "delta" and not marks:
        raise ConfigError("mode=delta needs an earlier successful full run to start from; run mode=full first")
    ledger.start(run.cur, run_id, PHASE, mode, "present", False)
    before = v6_counts(run)

    def step(name, fn, *args):
        t0 = time.time()
        fn(*args)
        run.timings[name] = round(time.time() - t0, 3)
        run.progress(f"{name}: {run.counts.get(name, {})} in {run.timings[name]}s")

    def timed(label, fn):
        t0 = time.time()
        fn()
        run.timings[label] = round(time.time() - t0, 3)
        run.progress(f"{label}: {run.timings[label]}s")

    def staged(name, where=None):
        t0 = time.time()
        n = staging.stage(run, name, optional, where)
        run.timings[f"stage {name}"] = round(time.time() - t0, 3)
        run.count(name, "read", n)
        return n

    for name in ("tenants", "users", "user_memberships", "sites", "spaces", "sensor_devices", "display_devices",
                 "reservations", "orphan_devices"):
        staged(name)
    step("tenants", registry.migrate_tenants, run)
    step("users", registry.migrate_users, run)
    step("user_memberships", registry.migrate_memberships, run)
    step("sites", registry.migrate_sites, run)
    step("spaces", registry.migrate_spaces, run)
    step("sensor_devices", registry.migrate_devices, run, "sensor_devices")
    step("display_devices", registry.migrate_devices, run, "display_devices")
    step("space_links", links.link_spaces, run)
    step("device_assignments", links.migrate_assignments, run)
    step("reservations", registry.migrate_reservations, run)
    step("orphan_devices", registry.migrate_orphans, run)
    step("orphan_devices", links.resolve_orphans, run)
    step("reservation_state", links.sync_reservations, run)

    new_marks = dict(marks)
    since = f' AND s."timestamp" >= {quote.literal(run.src, history_since)}::timestamptz' if history_since else ""
    cutoff = mapping.history_cutoff(run.now, history_retention_days)
    new_marks[RETENTION_MARK] = mapping.retention_recorded(marks.get(RETENTION_MARK), history_retention_days)
    snap = run.src.connection.cursor()
    snap.execute("SELECT pg_current_snapshot()::text")  # the snapshot every V5 read of this run shares
    new_marks[F.SNAPSHOT_MARK] = snap.fetchone()[0]
    new_marks[F.SOURCE_MARK] = F.source_identity(snap)
    for table, staged_fn in (("sensor_readings", history.migrate_readings),
                             ("state_changes", history.migrate_state_changes)):
        wm = int(marks.get(table, 0))
        src = run.src.connection.cursor()
        src.execute(f"SELECT coalesce(max(id), 0) FROM {table}")
        top = int(src.fetchone()[0])
        # V6 deletes readings older than its retention: those stay in V5 (and phase 4's backup)
        retained = table in RETAINED and cutoff is not None
        kept = f" AND {F.history_kept(TS, cutoff)}" if retained else ""
        t0 = time.time()
        where = f"s.id > {wm}{since}"
        run.expected[table] = max(0, top - wm)  # ids above the watermark: about the rows to load
        if top > wm and retained:
            src.execute(f"SELECT count(*) FILTER (WHERE {F.history_expired('s.' + TS, cutoff)}), "
                        f"count(*) FILTER (WHERE {F.history_kept('s.' + TS, cutoff)}) "
                        f"FROM {table} s WHERE {where} AND s.id <= {top}")
            skipped, run.expected[table] = (int(n) for n in src.fetchone())
            if skipped:
                run.count(table, "skipped_retention", skipped)
            where += f" AND {F.history_kept('s.' + TS, cutoff)}"
        if wm > 0:
            # rows at or below the watermark committed after the last run's snapshot: re-read a
            # window below it through staging, where ON CONFLICT skips what is already there
            # (before a bulk load drops the keys ON CONFLICT needs)
            staged(table, f"id > {max(0, wm - HISTORY_OVERLAP)} AND id <= {wm}{since.replace('s.', '')}{kept}")
            step(table, staged_fn, run)
        load, taken = None, False
        if top <= wm:
            run.history_load[table] = {"path": bulk.LIVE, "reason": "nothing above the watermark"}
        else:
            # state_changes keep V5's ids: where V6 holds some in the range, the staged path and
            # its ON CONFLICT take them, which needs the primary key
            taken = table == "state_changes" and history.ids_taken(run, table, wm, top) > 0
            load = bulk.decide(run, table, mode, run.expected[table], history_bulk_min_rows, taken)
            if load is None:
                run.progress(f"{table}: live load ({run.history_load[table]['reason']})")
            elif not bulk.suspend(run, load):
                load = None
        if top > wm:
            if table == "sensor_readings":
                step(table, history.direct_readings, run, where)
            else:
                step(table, history.direct_state_changes, run, where, wm, top, taken)
        if load is not None:
            bulk.restore(run, load, timed)
        new_marks[table] = max(wm, top)
        seconds = time.time() - t0
        moved = run.counts.get(table, {}).get("inserted", 0)
        run.timings[f"history {table}"] = round(seconds, 3)
        run.progress(f"{table}: {moved} rows migrated in {seconds:.1f}s ({moved / max(seconds, 1e-6):.0f} rows/s, "
                     f"{run.history_load[table]['path']} load)")

    if app_role:
        step("rls", rls.ensure, run, app_role, app_role_password)

    after = v6_counts(run)
    rejects = run.rows(f"SELECT entity, v5_id, reason FROM {L}.rejects WHERE run_id = %(run)s ORDER BY 1, 2 LIMIT 200")
    reject_total = run.scalar(f"SELECT count(*) FROM {L}.rejects WHERE run_id = %(run)s")
    by_reason = run.rows(f"SELECT entity, regexp_replace(reason, $q$'.*'$q$, $q$'...'$q$) AS r, count(*) "
                         f"FROM {L}.rejects WHERE run_id = %(run)s GROUP BY 1, 2 ORDER BY 1, 3 DESC")
    decisions = run.rows(f"""SELECT entity, v5_id, decision, detail FROM {L}.decisions WHERE run_id = %(run)s
                             ORDER BY decision, entity, v5_id LIMIT 1000""")
    decision_counts = run.rows(f"""SELECT decision, entity, count(*) FROM {L}.decisions WHERE run_id = %(run)s
                                   GROUP BY 1, 2 ORDER BY 1, 2""")
    result = {
        "run_id": run_id, "mode": mode, "changed": None, "counts": run.counts,
        "rejects": [{"entity": e, "v5_id": i, "reason": r} for e, i, r in rejects],
        "rejects_total": reject_total,
        "rejects_by_reason": [{"entity": e, "reason": r, "count": n} for e, r, n in by_reason],
        "warnings": run.warnings, "watermarks": new_marks, "timings": run.timings,
        "tenant_is_active_differences": run.tenant_differences,
        "decisions": [{"entity": e, "v5_id": i, "decision": d, "detail": t} for e, i, d, t in decisions],
        "decision_counts": [{"decision": d, "entity": e, "count": n} for d, e, n in decision_counts],
        "history_retention_days": int(history_retention_days or 0),
        "history_cutoff": cutoff.isoformat() if cutoff is not None else None,
        "history_load": run.history_load,
        "diff": {"before": before, "after": after}, "executed_queries": run.queries,
        "seconds": round(time.time() - t_start, 3),
    }
    if rejects and not allow_rejects:
        raise RejectsPresent(f"{reject_total} V5 rows could not be placed (first: {rejects[0][0]} "
                             f"{rejects[0][1]}: {rejects[0][2]}); nothing was written. Fix the source data, or "
                             "set allow_rejects: true to migrate the rest and keep them in the report", result)
    if gate is not None:
        t0 = time.time()
        result["gate"] = gate(run, result)
        run.timings["gate"] = round(time.time() - t0, 3)
        run.progress(f"gate (independent oracle): {'passed' if result['gate']['passed'] else 'FAILED'} "
                     f"in {run.timings['gate']}s")
        if not result["gate"]["passed"]:
            raise GateFailed("the verification gate failed inside the run, so nothing was committed: "
                             + oracle.summary(result["gate"]), result)
    # last before the commit: the rows V6's webhook locks on every uplink (links.sync_hot_state)
    step("hot_state", links.sync_hot_state, run)
    # what this run did, not row counts: V6 may be live and writing on its own
    result["changed"] = any(v for e in run.counts.values() for k, v in e.items()
                            if k in ("inserted", "created", "resolved", "password_set", "placeholder_created")
                            or k.endswith(("linked", "synced", "closed", "reordered")))
    ledger.finish(run.cur, run_id, "succeeded", run.counts, new_marks)
    result["v6_wal_bytes"] = int(run.scalar(f"SELECT pg_wal_lsn_diff(({WAL_SQL})::pg_lsn, %(w)s::pg_lsn)",
                                            {"w": wal_start}))
    result["lock_held_seconds"] = round(time.monotonic() - locked_at, 3)
    result["lock_acquired_monotonic"] = locked_at
    run.progress(f"V6 WAL written: {result['v6_wal_bytes'] / 1048576:.1f} MB (server-wide, since the lock was "
                 f"taken); advisory lock held {result['lock_held_seconds']}s so far (until commit)")
    return result


def oracle_gate(run, result):
    """The gate for migrate(gate=...): the independent oracle over this run's uncommitted writes."""
    cutoff = result.get("history_cutoff")
    return oracle.check(run.src, run.cur, run.platform, run_id=run.run_id, watermarks=result["watermarks"],
                        now=run.now, retention_cutoff=cutoff, anonymous_email=run.anonymous_email)
