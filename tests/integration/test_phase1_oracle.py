"""Phase 1 held to an independent oracle (issue 11).

The gate computes what V6 must hold from V5 by its own path (module_utils/parking/oracle.py)
and runs inside the migration's transaction. Mutation tests: each injects one deliberate
engine fault; the gate must fail, name the difference, and leave V6 exactly as before.
Then: V6's edits win on re-runs and deltas, deleted spaces' reservations are skipped with
a reason, check mode and failed runs move no sequence, rollback-1 puts sequences back.
"""
import contextlib
import uuid

import psycopg2.extras
import pytest

import p1util as U
from parking import mapping, migrate, rollback, session
from parking.errors import GateFailed

SUFFIX = "_orc"
V5 = f"parking_v5{SUFFIX}"


@pytest.fixture(scope="module")
def seeded(lab):
    return U.seeded(SUFFIX)


@pytest.fixture
def v6(seeded):
    yield from U.fresh_copy(SUFFIX, "parking_v6_orc_t")


def run(v6_db, commit=True, **kw):
    kw.setdefault("allow_rejects", True)
    return U.run_engine(V5, v6_db, commit=commit, gate=migrate.oracle_gate, **kw)


def step_module(name):
    """The module of the engine (the package parking.migrate) that holds step `name`.
    migrate.migrate calls each step as an attribute of its module, so a step is wrapped there."""
    return next(mod for mod in (migrate.registry, migrate.links, migrate.history) if name in vars(mod))


def after(name, fault):
    """Wrap engine step `name` so that `fault(run, *args)` runs right after it."""
    original = getattr(step_module(name), name)

    def wrapped(r, *args):
        original(r, *args)
        fault(r, *args)
    return wrapped


def one(r, sql):
    r.cur.execute(sql)
    row = r.cur.fetchone()
    assert row, f"the seed has no row for this fault: {sql}"
    return row


# --------------------------------------------------------------------------------------------
# mutations: (engine step, fault, what the gate's difference must name)
# --------------------------------------------------------------------------------------------

def wrong_tenant(r, table):
    if table != "sensor_devices":
        return
    dev, eui = one(r, "SELECT v6_id, eui FROM m_sensor_devices WHERE linked AND action = 'insert' ORDER BY v5_id")
    r.cur.execute("UPDATE m_sensor_devices SET tenant_v6 = %s::uuid WHERE v6_id = %s", (U.PLATFORM, dev))
    r.cur.execute("UPDATE sensor_devices SET tenant_id = %s::uuid WHERE id = %s", (U.PLATFORM, dev))
    r.fault = eui


def dropped_membership(r):
    mid, email = one(r, "SELECT m.v6_id, lower(u.email) FROM m_user_memberships m JOIN users u ON u.id = m.user_v6 "
                        "WHERE m.action = 'insert' ORDER BY m.v5_id")
    r.cur.execute("DELETE FROM user_memberships WHERE id = %s", (mid,))
    r.fault = email


def shifted_reservation(r):
    rid, v5_id = one(r, "SELECT v6_id, v5_id FROM m_reservations WHERE action = 'insert' ORDER BY v5_id")
    r.cur.execute("UPDATE reservations SET start_time = start_time + interval '1 hour', "
                  "end_time = end_time + interval '1 hour' WHERE id = %s", (rid,))
    r.fault = v5_id


def link_on_wrong_space(r, table):
    if table != "sensor_devices":
        return
    # the plan puts a sensor on another live space of the same tenant (an engine fault, not a V6 edit)
    dev, eui, wrong = one(r, """
        SELECT m.v6_id, m.eui, o.id FROM m_sensor_devices m JOIN spaces s ON s.id = m.space_v6
        JOIN spaces o ON o.tenant_id = s.tenant_id AND o.id <> s.id AND o.deleted_at IS NULL
             AND o.sensor_eui IS NULL AND o.sensor_device_id IS NULL
        WHERE m.linked AND m.action = 'insert' ORDER BY m.v5_id, o.id""")
    r.cur.execute("UPDATE m_sensor_devices SET space_v6 = %s WHERE v6_id = %s", (wrong, dev))
    r.fault = eui


def lost_reading(r, where):
    eui, = one(r, "SELECT dev_eui FROM sensor_readings WHERE raw_payload LIKE '{\"migrated_by\" : \"parking-migrate\"%' "
                  "ORDER BY dev_eui LIMIT 1")
    r.cur.execute("DELETE FROM sensor_readings WHERE id = (SELECT id FROM sensor_readings WHERE dev_eui = %s "
                  "ORDER BY received_at DESC LIMIT 1)", (eui,))
    r.fault = eui


def duplicated_site(r):
    v5_id, site, tenant = one(r, "SELECT v5_id, v6_id, tenant_v6 FROM m_sites WHERE action = 'insert' ORDER BY v5_id")
    dup = str(uuid.uuid4())
    other = U.PLATFORM if str(tenant) != U.PLATFORM else "00000000-0000-0000-0000-000000000001"
    r.cur.execute("""INSERT INTO sites (id, tenant_id, name, timezone, metadata, is_active, created_at, updated_at, slug)
                     SELECT %s::uuid, %s::uuid, name, timezone, metadata, is_active, created_at, updated_at, slug || '-dup'
                     FROM sites WHERE id = %s""", (dup, other, site))
    r.cur.execute("INSERT INTO parking_migrate.id_map (entity, v5_id, v6_id, action, run_id) "
                  "VALUES ('sites', %s, %s, 'inserted', %s)", (v5_id + "#dup", dup, r.run_id))
    r.fault = dup


def eui_not_normalised(r, table):
    if table != "sensor_devices":
        return
    dev, eui = one(r, "SELECT v6_id, eui FROM m_sensor_devices WHERE action = 'insert' ORDER BY v5_id")
    r.cur.execute("UPDATE sensor_devices SET dev_eui = lower(dev_eui) WHERE id = %s", (dev,))
    r.cur.execute("UPDATE m_sensor_devices SET eui = lower(eui) WHERE v6_id = %s", (dev,))
    r.fault = eui


MUTATIONS = {
    "device_in_wrong_tenant": ("migrate_devices", wrong_tenant, "sensor_devices", "tenant"),
    "dropped_membership": ("migrate_memberships", dropped_membership, "user_memberships", "missing"),
    "reservation_shifted_one_hour": ("migrate_reservations", shifted_reservation, "reservations", "window"),
    "link_on_wrong_space": ("migrate_devices", link_on_wrong_space, "sensor_devices", "V5 puts it on"),
    "lost_reading": ("direct_readings", lost_reading, "sensor_readings", "readings in V6"),
    "duplicated_site": ("migrate_sites", duplicated_site, "sites", "no V5 row explains it"),
    "eui_not_normalised": ("migrate_devices", eui_not_normalised, "sensor_devices", "not in V6"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_mutation_fails_the_gate_names_it_and_commits_nothing(v6, monkeypatch, name):
    step, fault, entity, words = MUTATIONS[name]
    monkeypatch.setattr(step_module(step), step, after(step, fault))
    seen = {}
    real_gate = migrate.oracle_gate

    def gate(r, result):
        seen["fault"] = getattr(r, "fault", None)
        return real_gate(r, result)
    before = U.fingerprint(v6)
    with pytest.raises(GateFailed) as err:
        U.run_engine(V5, v6, allow_rejects=True, gate=gate)
    assert seen["fault"], "the fault was not injected"
    gate_result = err.value.result["gate"]
    named = [d for d in gate_result["differences"] if d["entity"] == entity and words in d["difference"]
             and str(seen["fault"]).upper() in d["difference"].upper()]
    assert named, (name, seen["fault"], gate_result["differences"][:10])
    assert "nothing was committed" in str(err.value)
    assert U.fingerprint(v6) == before  # sequences included


def test_wrong_status_map_fails_the_gate(v6, monkeypatch):
    """The engine's status table is mapping.RESERVATION_STATUS; the oracle has its own (§3.3)."""
    monkeypatch.setattr(mapping, "RESERVATION_STATUS", dict(mapping.RESERVATION_STATUS, cancelled="completed"))
    before = U.fingerprint(v6)
    with pytest.raises(GateFailed) as err:
        run(v6)
    diffs = err.value.result["gate"]["differences"]
    assert any(d["entity"] == "reservations" and "'cancelled' maps to 'cancelled'" in d["difference"] for d in diffs)
    assert U.fingerprint(v6) == before


def test_no_fault_passes_with_figures_per_tenant(v6):
    result = run(v6)
    gate = result["gate"]
    assert gate["passed"], gate["differences"][:10]
    compared = {e for t in gate["per_tenant"].values() for e in t}
    assert {"tenants", "users", "user_memberships", "sites", "spaces", "sensor_devices", "display_devices",
            "reservations", "sensor_readings", "state_changes"} <= compared
    for tenant in gate["per_tenant"].values():
        for cell in tenant.values():
            assert cell["expected"] == cell["found"] or cell["found"] >= cell["expected"]


# --------------------------------------------------------------------------------------------
# V6's edits win
# --------------------------------------------------------------------------------------------

def move_in_v6(db, eui):
    """Move sensor `eui` to a free live space of its tenant, as V6's assign API leaves it."""
    conn = U.connect(db)
    with conn, conn.cursor() as cur:
        cur.execute("""SELECT d.id, d.assigned_space_id, o.id FROM sensor_devices d JOIN spaces s ON s.id = d.assigned_space_id
                       JOIN spaces o ON o.tenant_id = s.tenant_id AND o.id <> s.id AND o.deleted_at IS NULL
                            AND o.sensor_eui IS NULL AND o.sensor_device_id IS NULL
                       WHERE d.dev_eui = %s ORDER BY o.id LIMIT 1""", (eui,))
        dev, old, new = cur.fetchone()
        cur.execute("UPDATE spaces SET sensor_device_id = NULL, sensor_eui = NULL WHERE id = %s", (old,))
        cur.execute("UPDATE spaces SET sensor_device_id = %s, sensor_eui = %s WHERE id = %s", (dev, eui, new))
        cur.execute("UPDATE sensor_devices SET assigned_space_id = %s WHERE id = %s", (new, dev))
    conn.close()
    return str(old), str(new)


def links(db, eui):
    return U.rows(db, """SELECT d.assigned_space_id::text, (SELECT array_agg(id::text ORDER BY id) FROM spaces
                                                           WHERE sensor_device_id = d.id),
                                (SELECT count(*) FROM device_assignments a WHERE a.device_id = d.id
                                 AND a.unassigned_at IS NULL)
                         FROM sensor_devices d WHERE d.dev_eui = %s""", (eui,))[0]


def movable_sensor(db):
    return U.rows(db, """SELECT d.dev_eui FROM sensor_devices d JOIN spaces s ON s.id = d.assigned_space_id
                         WHERE EXISTS (SELECT 1 FROM spaces o WHERE o.tenant_id = s.tenant_id AND o.id <> s.id
                                       AND o.deleted_at IS NULL AND o.sensor_eui IS NULL
                                       AND o.sensor_device_id IS NULL)
                         ORDER BY d.dev_eui LIMIT 1""")[0][0]


@pytest.mark.parametrize("mode", ["full", "delta"])
def test_v6_edit_survives_rerun_and_delta_and_gate_lists_it(v6, mode):
    run(v6)
    eui = movable_sensor(v6)
    old, new = move_in_v6(v6, eui)
    edited = links(v6, eui)
    result = run(v6, mode=mode)
    assert links(v6, eui) == edited, "the re-run undid V6's edit"
    assert edited[0] == new and edited[1] == [new]
    gate = result["gate"]
    assert gate["passed"], gate["differences"][:5]
    assert any(e["eui"] == eui and e["v6_has"] == new for e in gate["v6_edits_kept"] if "eui" in e)


@contextlib.contextmanager
def moved_in_v5(eui):
    """V5 moves sensor `eui` to a free live space of the same site (its router links by EUI);
    yields that space's code and puts V5 back afterwards."""
    conn = U.connect(V5)
    v5_old = v5_new = None
    try:
        with conn, conn.cursor() as cur:
            cur.execute("""SELECT s.id, o.id, o.code FROM spaces s JOIN spaces o ON o.site_id = s.site_id
                           AND o.id <> s.id AND o.deleted_at IS NULL AND o.sensor_eui IS NULL
                           WHERE upper(s.sensor_eui) = %s AND s.deleted_at IS NULL ORDER BY o.id LIMIT 1""", (eui,))
            row = cur.fetchone()
            assert row, "the seed has a free space beside a placed sensor"
            v5_old, v5_new, code = row
            cur.execute("UPDATE spaces SET sensor_eui = NULL, updated_at = now() WHERE id = %s", (v5_old,))
            cur.execute("UPDATE spaces SET sensor_eui = %s, updated_at = now() WHERE id = %s", (eui, v5_new))
        yield code
    finally:
        if v5_old:
            with conn, conn.cursor() as cur:
                cur.execute("UPDATE spaces SET sensor_eui = NULL WHERE id = %s", (v5_new,))
                cur.execute("UPDATE spaces SET sensor_eui = %s WHERE id = %s", (eui, v5_old))
        conn.close()


def test_both_changed_v6_wins_and_the_conflict_is_reported(v6):
    run(v6)
    eui = movable_sensor(v6)
    old, new = move_in_v6(v6, eui)
    with moved_in_v5(eui):
        result = run(v6, mode="delta")
        assert links(v6, eui)[0] == new
        conflicts = [d for d in result["decisions"] if d["decision"] == "conflict_v6_kept" and eui in d["detail"]]
        assert conflicts, result["decision_counts"]
        assert result["gate"]["passed"], result["gate"]["differences"][:5]
        again = run(v6, mode="delta")  # reported once
        assert not [d for d in again["decisions"] if d["decision"] == "conflict_v6_kept"]


def test_v5_move_is_carried_when_v6_did_not_touch_it(v6):
    run(v6)
    eui = movable_sensor(v6)
    with moved_in_v5(eui) as code:
        result = run(v6, mode="delta")
        space, holders, open_rows = links(v6, eui)
        assert U.rows(v6, "SELECT code FROM spaces WHERE id = %s", (space,))[0][0] == code
        assert holders == [space] and open_rows == 1
        assert result["gate"]["passed"], result["gate"]["differences"][:5]


def test_v6_status_edit_survives_and_is_listed(v6):
    run(v6)
    rid = U.rows(v6, "SELECT id::text FROM reservations WHERE status = 'active' ORDER BY id LIMIT 1")[0][0]
    conn = U.connect(v6)
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE reservations SET status = 'cancelled' WHERE id = %s", (rid,))
    conn.close()
    result = run(v6)
    assert U.rows(v6, "SELECT status FROM reservations WHERE id = %s", (rid,))[0][0] == "cancelled"
    assert any(e["v6_id"] == rid and e["v6_has"] == "cancelled" for e in result["gate"]["v6_edits_kept"])


# --------------------------------------------------------------------------------------------
# deleted spaces, decisions, sequences
# --------------------------------------------------------------------------------------------

def test_reservations_on_soft_deleted_spaces_are_skipped_with_their_reason(v6):
    on_deleted = U.rows(V5, """SELECT r.id::text FROM reservations r JOIN spaces s ON s.id = r.space_id
                               WHERE s.deleted_at IS NOT NULL""")
    assert on_deleted, "the seed has a reservation on a soft-deleted space"
    result = run(v6)
    for (rid,) in on_deleted:
        assert not U.rows(v6, "SELECT 1 FROM reservations WHERE id = %s", (rid,))
        assert any(d["v5_id"] == rid and d["decision"] == "not_migrated" and "soft-deleted" in d["detail"]
                   for d in result["decisions"])
    assert result["counts"]["reservations"]["skipped"] == len(on_deleted)


def test_every_placement_decision_is_in_the_result(v6):
    result = run(v6)
    kinds = {d["decision"] for d in result["decisions"]}
    assert {"placed_by_rule", "unplaced", "v6_name_kept", "not_migrated"} <= kinds
    rule = [d for d in result["decisions"] if d["decision"] == "placed_by_rule"]
    assert all("losing it:" in d["detail"] for d in rule)


def seq(db):
    return U.rows(db, "SELECT last_value, is_called FROM state_changes_id_seq")[0]


def test_check_mode_and_failed_runs_move_no_sequence_and_rollback_restores_it(v6, monkeypatch):
    start = seq(v6)
    before = U.fingerprint(v6)
    run(v6, commit=False)  # check mode: the run's transaction is rolled back
    assert seq(v6) == start and U.fingerprint(v6) == before
    monkeypatch.setattr(step_module("migrate_sites"), "migrate_sites", after("migrate_sites", duplicated_site))
    with pytest.raises(GateFailed):
        run(v6)
    assert seq(v6) == start and U.fingerprint(v6) == before
    monkeypatch.undo()
    run(v6)
    assert seq(v6) != start
    # with the ledger in place: a check-mode run leaves the whole database as it was, ledger included
    moved, whole = seq(v6), U.fingerprint(v6)
    conn = U.connect(V5)
    with conn, conn.cursor() as cur:  # give it something to write
        cur.execute("SELECT id, state, updated_at FROM spaces WHERE deleted_at IS NULL")
        saved = cur.fetchall()
        cur.execute("UPDATE spaces SET state = CASE state WHEN 'FREE' THEN 'OCCUPIED' ELSE 'FREE' END, "
                    "updated_at = now() WHERE deleted_at IS NULL")
    try:
        assert run(v6, commit=False)["counts"]["spaces"].get("state_synced")
    finally:
        with conn, conn.cursor() as cur:
            cur.executemany("UPDATE spaces SET state = %s, updated_at = %s WHERE id = %s",
                            [(st, at, i) for i, st, at in saved])
        conn.close()
    assert seq(v6) == moved and U.fingerprint(v6) == whole
    result = session.transactional(U.params(v6), rollback.rollback, False, state="absent", mode="rollback")
    assert result["changed"]
    assert seq(v6) == start


def test_gate_failure_through_the_module_leaves_v6_unchanged(v6):
    """The operator's path: the module runs the gate before commit. A placed sensor moved to the
    platform tenant by SQL in V6 (no V6 API moves tenants) contradicts V5; the re-run's gate
    fails, names it, and the failing state gets nothing committed on top."""
    run(v6)
    eui = movable_sensor(v6)
    conn = U.connect(v6)
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE sensor_devices SET tenant_id = %s WHERE dev_eui = %s", (U.PLATFORM, eui))
    conn.close()
    before = U.fingerprint(v6)
    rc, res = U.module("parking_tenant_migration", {"source": U.params(V5), "target": U.params(v6),
                                                     "allow_rejects": True})
    assert rc != 0 and "verification gate failed" in res["msg"], res.get("msg")
    assert eui in res["msg"]
    assert any(eui in d["difference"] for d in res["gate"]["differences"])
    # V6 (schema public, sequences included) exactly as before; the ledger only records the failed run
    assert v6_only(U.fingerprint(v6)) == v6_only(before)
    assert U.rows(v6, "SELECT status FROM parking_migrate.runs ORDER BY started_at DESC LIMIT 1")[0][0] == "failed"


def v6_only(fp):
    return {k: v for k, v in fp.items() if not k.startswith("parking_migrate.")}


def test_seed_future_booking_on_a_deleted_space_never_becomes_live(v6):
    future = U.rows(V5, """SELECT r.id::text FROM reservations r JOIN spaces s ON s.id = r.space_id
                           WHERE s.deleted_at IS NOT NULL AND r.status IN ('pending', 'confirmed')
                             AND r.start_time > (SELECT anchor FROM lab_meta.seed_state LIMIT 1)""")
    assert future, "seed case future_reservation_on_deleted_space"
    result = run(v6)
    assert U.rows(v6, "SELECT count(*) FROM reservations r JOIN spaces s ON s.id = r.space_id "
                      "WHERE s.deleted_at IS NOT NULL")[0][0] == 0
    assert {d["v5_id"] for d in result["decisions"] if d["decision"] == "not_migrated"} >= {f for f, in future}


def test_seed_display_on_two_tenants_is_placed_by_the_rule_and_the_loser_named(v6):
    live = U.rows(V5, """SELECT upper(d.dev_eui), array_agg(sp.id::text ORDER BY sp.id)
                         FROM display_devices d JOIN spaces sp ON sp.deleted_at IS NULL
                              AND ((d.dev_eui <> '' AND upper(sp.display_eui) = upper(d.dev_eui))
                                   OR sp.display_device_id = d.id)
                         JOIN sites st ON st.id = sp.site_id
                         GROUP BY 1 HAVING count(DISTINCT st.tenant_id) > 1""")
    assert live, "seed case display_on_live_spaces_of_two_tenants"
    result = run(v6)
    for eui, spaces in live:
        rule = [d for d in result["decisions"] if d["decision"] == "placed_by_rule" and eui in d["detail"]]
        assert len(rule) == 1, result["decisions"]
        losers = [s for s in spaces if s in rule[0]["detail"].split("losing it:")[1]]
        assert len(losers) == len(spaces) - 1
        holders = U.rows(v6, """SELECT count(*) FROM spaces s JOIN display_devices d ON d.id = s.display_device_id
                                WHERE d.dev_eui = %s""", (eui,))[0][0]
        assert holders == 1
    assert result["gate"]["passed"]


def test_v6_deletion_wins_without_a_reject(v6):
    """A membership phase 1 inserted and V6 deleted since is not re-created and is no reject (a
    reject would fail a run without allow_rejects): a decision, and in the gate's V6 edits."""
    run(v6)
    (v5_id, v6_id), = U.rows(v6, """SELECT v5_id, v6_id FROM parking_migrate.id_map WHERE entity = 'user_memberships'
                                   AND action = 'inserted' ORDER BY v5_id LIMIT 1""")
    conn = U.connect(v6)
    with conn, conn.cursor() as cur:
        cur.execute("DELETE FROM user_memberships WHERE id = %s", (v6_id,))
    conn.close()
    result = run(v6)
    assert not U.rows(v6, "SELECT 1 FROM user_memberships WHERE id = %s", (v6_id,))
    assert any(d["v5_id"] == v5_id and "deleted in V6" in d["detail"] for d in result["decisions"])
    assert not [r for r in result["rejects"] if r["v5_id"] == v5_id]
    assert any(e["v5_id"] == v5_id and e["v6_has"] == "deleted" for e in result["gate"]["v6_edits_kept"])


def test_row_v5_deleted_after_phase1_is_kept_in_v6_and_listed(v6):
    run(v6)
    conn = U.connect(V5)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT * FROM reservations r WHERE EXISTS (SELECT 1 FROM spaces s WHERE s.id = r.space_id "
                    "AND s.deleted_at IS NULL) ORDER BY id LIMIT 1")
        cols = [c.name for c in cur.description]
        row = cur.fetchone()
        rid = str(row[cols.index("id")])
        cur.execute("DELETE FROM reservations WHERE id = %s", (rid,))
    try:
        result = run(v6)
        assert U.rows(v6, "SELECT count(*) FROM reservations WHERE id = %s", (rid,))[0][0] == 1
        assert result["gate"]["passed"], result["gate"]["differences"][:5]
        assert any(e["v5_id"] == rid and e["v5_says"] == "deleted" for e in result["gate"]["v6_edits_kept"])
    finally:
        with conn, conn.cursor() as cur:
            cur.execute(f"INSERT INTO reservations ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                        [psycopg2.extras.Json(v) if isinstance(v, dict) else v for v in row])
        conn.close()
