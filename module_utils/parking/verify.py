"""Phase-1 verification gate: fail-closed checks of V6 against V5.

The expected side is computed from V5 by the independent oracle (oracle.py: written from the
mapping reference, it never calls the engine or its plan). The same oracle also runs inside
every migration run before it commits (migrate.oracle_gate), so a failing state is never
committed; this module checks the committed state again, with what only a separate session
can check (RLS as the application role).

Checks (each one passes or fails with details):
  independent oracle: per tenant, tenants, users, memberships, sites, spaces, devices with
      their tenant and space, reservations, readings per device and state changes per space
  history per tenant: V5 readings/state changes up to the migrated watermark vs V6 (checksums)
  devices_have_tenant, platform_devices_unassigned, space_links_resolve, links_bidirectional,
  euis_normalised, users_can_log_in, orphans_not_registered
  rls_isolation: as the application role (not the owner), per tenant, rows of other tenants = 0
      and every row of the tenant visible; with no tenant set, nothing visible
"""
import time

from . import ledger, mapping, migrate, oracle, quote, rls, sqlfrag
from .checksum import ROW_HASH
from .errors import ParkingError
from .sqlfrag import LEDGER as L, READING_MARKER_LIKE, history_kept, history_kept_v6, seen_by_run

class Gate:
    def __init__(self):
        self.checks = []
        self.per_tenant = {}

    def add(self, name, ok, detail=None, **figures):
        self.checks.append({"check": name, "passed": bool(ok), "detail": detail, **figures})

    @property
    def failed(self):
        return [c for c in self.checks if not c["passed"]]


def _sum(rows):
    return {str(k): (int(n), str(s)) for k, n, s in rows}


def compare_history(run, gate, watermarks, cutoff=None):
    """V5 history up to the migrated watermark vs V6, per tenant (count + checksum). Readings
    older than the retention cutoff (the migration's own definition) are left out on both sides:
    the migration does not move them, V6 deletes them."""
    wm_r = int(watermarks.get("sensor_readings", 0))
    seen = seen_by_run(run.src.connection.cursor(), watermarks)  # ids commit out of order
    occupied = sqlfrag.occupied("occupancy_state")
    h_src = ROW_HASH.format(row=f"row(id, fcnt, upper(device_eui), {occupied})")
    per_eui = run.src.connection.cursor()
    per_eui.execute(f"""SELECT upper(device_eui), count(*), coalesce(sum({h_src}), 0)::text FROM sensor_readings
                        WHERE id <= %s AND {seen} AND fcnt IS NOT NULL AND "timestamp" IS NOT NULL
                          AND {history_kept(migrate.TS, cutoff)} GROUP BY 1""", (wm_r,))
    src_rows = per_eui.fetchall()
    run.execute("CREATE TEMP TABLE v_src_readings (eui text, n bigint, s numeric) ON COMMIT DROP")
    run.cur.executemany("INSERT INTO v_src_readings VALUES (%s, %s, %s)", src_rows)
    expected = _sum(run.rows("""
        SELECT d.tenant_id, sum(v.n)::bigint, sum(v.s)::text FROM v_src_readings v
        JOIN sensor_devices d ON d.dev_eui = v.eui GROUP BY 1"""))
    h_tgt = ROW_HASH.format(row="row((raw_payload::json->>'v5_id')::bigint, fcnt, dev_eui, occupied)")
    actual = _sum(run.rows(f"""
        SELECT tenant_id, count(*), coalesce(sum({h_tgt}), 0)::text FROM sensor_readings
        WHERE raw_payload LIKE %(like)s AND (raw_payload::json->>'v5_id')::bigint <= %(wm)s
          AND {history_kept_v6('received_at', cutoff)} GROUP BY 1""",
                           {"like": READING_MARKER_LIKE, "wm": wm_r}))
    record(gate, "sensor_readings", expected, actual)

    wm_s = int(watermarks.get("state_changes", 0))
    h = "row(id, previous_state, new_state, source, \"timestamp\")"
    per_space = run.src.connection.cursor()
    per_space.execute(f"""SELECT space_id::text, count(*), coalesce(sum({ROW_HASH.format(row=h)}), 0)::text
                          FROM state_changes WHERE id <= %s AND {seen} GROUP BY 1""", (wm_s,))
    run.execute("CREATE TEMP TABLE v_src_changes (space_v5 text, n bigint, s numeric) ON COMMIT DROP")
    run.cur.executemany("INSERT INTO v_src_changes VALUES (%s, %s, %s)", per_space.fetchall())
    expected = _sum(run.rows(f"""
        SELECT sp.tenant_id, sum(v.n)::bigint, sum(v.s)::text FROM v_src_changes v
        JOIN {L}.id_map m ON m.entity = 'spaces' AND m.v5_id = v.space_v5
        JOIN spaces sp ON sp.id = m.v6_id::uuid GROUP BY 1"""))
    actual = _sum(run.rows(f"""
        SELECT sp.tenant_id, count(*), coalesce(sum({ROW_HASH.format(row='row(c.id, c.previous_state, c.new_state, c.source, c."timestamp")')}), 0)::text
        FROM state_changes c JOIN spaces sp ON sp.id = c.space_id
        WHERE c.id <= %(wm)s AND (c.id IN (SELECT v6_id::bigint FROM {L}.id_map WHERE entity = 'state_changes')
              OR EXISTS (SELECT 1 FROM {L}.history_ranges r WHERE r.tbl = 'state_changes' AND c.id > r.lo
                         AND c.id <= r.hi))
        GROUP BY 1""", {"wm": wm_s}))
    record(gate, "state_changes", expected, actual)


def record(gate, entity, expected, actual):
    bad = []
    for tenant in sorted(set(expected) | set(actual)):
        e = expected.get(tenant, (0, "0"))
        a = actual.get(tenant, (0, "0"))
        cell = gate.per_tenant.setdefault(tenant, {}).setdefault(entity, {})
        cell.update(expected=e[0], actual=a[0], checksum_ok=e[1] == a[1])
        if e != a:
            bad.append(f"tenant {tenant}: expected {e[0]} rows, found {a[0]}"
                       + ("" if e[0] != a[0] else " (same count, different content)"))
    gate.add(f"{entity} per tenant", not bad, "; ".join(bad) or None,
             expected=sum(v[0] for v in expected.values()), actual=sum(v[0] for v in actual.values()))


INVARIANTS = {
    "devices_have_tenant": """
        SELECT count(*) FROM (SELECT tenant_id FROM sensor_devices UNION ALL SELECT tenant_id FROM display_devices) d
        WHERE d.tenant_id IS NULL OR NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = d.tenant_id)""",
    "platform_devices_unassigned": """
        SELECT count(*) FROM (SELECT tenant_id, status, assigned_space_id FROM sensor_devices
                              UNION ALL SELECT tenant_id, status, assigned_space_id FROM display_devices) d
        WHERE d.tenant_id = %(platform)s::uuid AND (d.status <> 'unassigned' OR d.assigned_space_id IS NOT NULL)""",
    "space_links_resolve": """
        SELECT count(*) FROM spaces s
        LEFT JOIN sensor_devices sd ON sd.id = s.sensor_device_id
        LEFT JOIN display_devices dd ON dd.id = s.display_device_id
        WHERE (s.sensor_device_id IS NOT NULL AND (sd.id IS NULL OR sd.tenant_id IS DISTINCT FROM s.tenant_id))
           OR (s.display_device_id IS NOT NULL AND (dd.id IS NULL OR dd.tenant_id IS DISTINCT FROM s.tenant_id))""",
    "links_bidirectional": """
        SELECT (SELECT count(*) FROM sensor_devices d JOIN spaces s ON s.id = d.assigned_space_id
                WHERE s.sensor_device_id IS DISTINCT FROM d.id)
             + (SELECT count(*) FROM display_devices d JOIN spaces s ON s.id = d.assigned_space_id
                WHERE s.display_device_id IS DISTINCT FROM d.id)
             + (SELECT count(*) FROM spaces s JOIN sensor_devices d ON d.id = s.sensor_device_id
                WHERE d.assigned_space_id IS DISTINCT FROM s.id)
             + (SELECT count(*) FROM spaces s JOIN display_devices d ON d.id = s.display_device_id
                WHERE d.assigned_space_id IS DISTINCT FROM s.id)""",
    "euis_normalised": """
        SELECT count(*) FROM (SELECT dev_eui AS e FROM sensor_devices UNION ALL SELECT dev_eui FROM display_devices
                              UNION ALL SELECT sensor_eui FROM spaces UNION ALL SELECT display_eui FROM spaces) x
        WHERE x.e IS NOT NULL AND x.e !~ '^[0-9A-F]{16}$'""",
    # every user the migration inserted has an active membership (V6's login needs one); the
    # placeholder owner of anonymous bookings is meant not to log in
    "users_can_log_in": f"""
        SELECT count(*) FROM {L}.id_map i JOIN users u ON u.id::text = i.v6_id
        WHERE i.entity = 'users' AND i.action = 'inserted' AND i.v5_id NOT LIKE 'anonymous-bookings:%%'
          AND NOT EXISTS (SELECT 1 FROM user_memberships m WHERE m.user_id = u.id AND m.is_active)""",
    # a registered sensor as an orphan is the original failure; displays are orphans by V6's own
    # webhook (it consults sensor_devices only), for every frame they send (resolve_orphans, migrate/links.py)
    "orphans_not_registered": """
        SELECT count(*) FROM orphan_devices o WHERE EXISTS (SELECT 1 FROM sensor_devices d WHERE d.dev_eui = o.dev_eui)""",
}


def check_invariants(run, gate):
    for name, sql in INVARIANTS.items():
        bad = run.scalar(sql)
        gate.add(name, bad == 0, None if bad == 0 else f"{bad} offending rows", offending=bad)


def check_rls(tgt_conn, gate, app_role, login=None):
    """As the application role: per tenant, other tenants' rows = 0 and own rows all visible.

    Owner and application role count in the same snapshot (exported from the owner's
    REPEATABLE READ transaction and adopted by the role's), so a live V6 cannot make them differ.
    Without a login, SET ROLE in the owner's transaction (RLS applies to the current role).
    """
    tgt_conn.rollback()
    tgt_conn.set_session(isolation_level="REPEATABLE READ")
    cur = tgt_conn.cursor()
    try:
        cur.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (app_role,))
        if not app_role or not cur.fetchone()[0]:
            gate.add("rls_isolation", False, f"application role {app_role!r} does not exist: phase 1 creates it")
            return
        tables = []
        for t in rls.RLS_TABLES:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{t}",))
            if cur.fetchone()[0]:
                tables.append(t)
        cur.execute("SELECT id::text FROM tenants ORDER BY 1")
        tenants = [r[0] for r in cur.fetchall()]
        owner = {}
        for t in tables:
            cur.execute(f"SELECT tenant_id::text, count(*) FROM {t} GROUP BY 1")
            owner[t] = dict(cur.fetchall())
        if login:
            cur.execute("SELECT pg_export_snapshot()")
            snapshot = cur.fetchone()[0]
            login.rollback()
            login.set_session(isolation_level="REPEATABLE READ")
            app = login.cursor()
            app.execute("SET TRANSACTION SNAPSHOT %s", (snapshot,))
        else:
            app = cur
            app.execute(f"SET LOCAL ROLE {quote.ident(cur, app_role)}")
        problems = []
        app.execute("SELECT set_config('app.current_tenant_id', '', true), set_config('app.is_platform_admin', '', true)")
        for t in tables:
            app.execute(f"SELECT count(*) FROM {t}")
            n = app.fetchone()[0]
            if n:
                problems.append(f"{t}: {n} rows visible with no tenant set")
        for tenant in tenants:
            app.execute("SELECT set_config('app.current_tenant_id', %s, true)", (tenant,))
            for t in tables:
                app.execute(f"SELECT count(*) FILTER (WHERE tenant_id IS DISTINCT FROM %s::uuid), "
                            f"count(*) FILTER (WHERE tenant_id = %s::uuid) FROM {t}", (tenant, tenant))
                other, own = app.fetchone()
                if other:
                    problems.append(f"{t}: tenant {tenant} sees {other} rows of other tenants")
                if own != owner[t].get(tenant, 0):
                    problems.append(f"{t}: tenant {tenant} sees {own} of its {owner[t].get(tenant, 0)} rows")
        gate.add("rls_isolation", not problems, "; ".join(problems[:20]) or None,
                 role=app_role, tenants=len(tenants), tables=tables,
                 how="logged in as the role, same snapshot as the owner" if login
                 else "SET ROLE to the role (RLS applies to current_user)")
    finally:
        if login:
            login.rollback()
            login.set_session(isolation_level="DEFAULT")
        tgt_conn.rollback()
        tgt_conn.set_session(isolation_level="DEFAULT")


def verify(src_conn, tgt_conn, run_id, platform, app_role, app_login=None,
           history_retention_days=None, anonymous_email=None):
    """history_retention_days: None = the retention the migration runs applied (ledger)."""
    t0 = time.time()
    gate = Gate()
    cur = tgt_conn.cursor()
    if not ledger.exists(cur):
        raise ParkingError("no phase-1 ledger in the target database: run the migration (phase 1) first")
    marks = ledger.last_watermarks(cur, migrate.PHASE)
    if not marks:
        raise ParkingError("no successful phase-1 run in the ledger: run the migration first")
    check_rls(tgt_conn, gate, app_role, app_login)  # first: its own snapshot
    if history_retention_days is None:
        history_retention_days = int(marks.get(migrate.RETENTION_MARK) or 0)
    src_conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    run = migrate.Run(src_conn, tgt_conn, run_id, platform)
    cutoff = mapping.history_cutoff(run.now, history_retention_days)
    found = oracle.check(run.src, run.cur, platform, watermarks=marks, now=run.now, retention_cutoff=cutoff,
                         anonymous_email=anonymous_email)
    gate.add("independent oracle (V6 as V5 says it must be)", found["passed"],
             None if found["passed"] else oracle.summary(found, 10),
             differences=found["differences_total"], v6_edits_kept=found["v6_edits_total"])
    for tenant, cells in found["per_tenant"].items():
        for entity, cell in cells.items():
            gate.per_tenant.setdefault(tenant, {})[entity] = {"expected": cell["expected"], "actual": cell["found"],
                                                              "checksum_ok": True}
    compare_history(run, gate, marks, cutoff)
    check_invariants(run, gate)
    slugs = dict(run.rows("SELECT id::text, slug FROM tenants"))
    rejects = run.rows(f"""SELECT r.entity, r.v5_id, r.reason FROM {L}.rejects r
                           WHERE r.run_id = (SELECT run_id FROM {L}.runs WHERE phase = 'phase1' AND status = 'succeeded'
                                             AND state = 'present' AND NOT check_mode
                                             ORDER BY finished_at DESC LIMIT 1) ORDER BY 1, 2 LIMIT 500""")
    tgt_conn.rollback()
    src_conn.rollback()
    result = {
        "passed": not gate.failed, "failed": gate.failed, "checks": gate.checks,
        "per_tenant": {slugs.get(t, t if t != "None" else "(global)"): v for t, v in gate.per_tenant.items()},
        "rejects": [{"entity": e, "v5_id": i, "reason": r} for e, i, r in rejects],
        "oracle": found, "watermarks": marks, "seconds": round(time.time() - t0, 3),
        "history_retention_days": history_retention_days,
        "history_cutoff": cutoff.isoformat() if cutoff is not None else None,
    }
    result["markdown"] = render_markdown(result)
    return result


def render_markdown(result):
    """The gate's report as Markdown. The module returns it; the role writes it on the controller."""
    entities = sorted({e for cells in result["per_tenant"].values() for e in cells})
    lines = [f"# Phase 1 verification: {'PASSED' if result['passed'] else 'FAILED'}", "",
             f"Checks passed: {sum(c['passed'] for c in result['checks'])}/{len(result['checks'])}; "
             f"rejects: {len(result['rejects'])}; {result['seconds']} s", "",
             "| tenant | " + " | ".join(entities) + " |", "|---" * (len(entities) + 1) + "|"]
    for tenant in sorted(result["per_tenant"]):
        row = result["per_tenant"][tenant]
        cells = []
        for e in entities:
            c = row.get(e)
            cells.append("" if not c else f"{c['actual']}/{c['expected']}" + ("" if c["checksum_ok"] else " ✗"))
        lines.append(f"| {tenant} | " + " | ".join(cells) + " |")
    retention = (f"Readings compared from {result['history_cutoff']} on (retention {result['history_retention_days']} "
                 "days): older ones are not migrated, V6 deletes them; they stay in V5 and in phase 4's backup."
                 if result.get("history_cutoff") else "Readings compared in full (no retention cutoff).")
    lines += ["", "Cells: rows in V6 / rows expected from V5 after mapping; ✗ = checksum differs.", retention, "",
              "| check | result | detail |", "|---|---|---|"]
    for c in result["checks"]:
        lines.append(f"| {c['check']} | {'pass' if c['passed'] else '**FAIL**'} | {c.get('detail') or ''} |")
    return "\n".join(lines) + "\n"
