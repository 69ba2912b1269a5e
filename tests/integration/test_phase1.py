"""Phase 1 against real PostgreSQL: seed -> migrate -> verify, idempotence, check mode, rollback,
SIGKILL safety, bad input, and one test per gotcha of reference/v5-to-v6-mapping.md §5.

Runs on scratch copies seeded by lab/seed.py (suffix _p1), never on the lab's databases.
"""
import random
import signal
import time

import pytest

import p1util as U
from labdb import query, scalar
from labutil import wait_for

SUFFIX = "_p1"
V5 = f"parking_v5{SUFFIX}"
LIVE_SENSORS = ("58A0CB00001196F3", "58A0CB0000115B4E", "58A0CB000011590D")


@pytest.fixture(scope="module")
def source():
    U.seeded(SUFFIX)
    return V5


@pytest.fixture(scope="module")
def migrated(source):
    yield from U.migrated_copy(source, SUFFIX, "parking_v6_p1_m")


@pytest.fixture
def fresh_v6(source, request):
    yield from U.fresh_copy(SUFFIX, f"parking_v6_p1_{request.node.name[5:40].lower()}")


def v5(sql, params=None):
    conn = U.connect(V5, autocommit=True)
    try:
        return query(conn, sql, params)
    finally:
        conn.close()


def rejects(m, entity):
    return {r["v5_id"]: r["reason"] for r in m["result"]["rejects"] if r["entity"] == entity}


# --- seed -> migrate -> verify, idempotence, check mode, rollback -----------------------------

def test_migrate_then_verify_passes(migrated, source):
    from parking import ledger, verify
    src, tgt = U.connect(source), U.connect(migrated["db"])
    try:
        result = verify.verify(src, tgt, ledger.new_run_id(), U.PLATFORM, "parking_v6_app")
    finally:
        src.close()
        tgt.close()
    assert result["passed"], result["failed"]
    names = {c["check"] for c in result["checks"]}
    assert {"rls_isolation", "devices_have_tenant", "independent oracle (V6 as V5 says it must be)",
            "sensor_readings per tenant"} <= names
    assert result["oracle"]["passed"] and "sensor_devices" in {e for t in result["per_tenant"].values() for e in t}


def test_rerun_changes_nothing(migrated, source):
    before = U.checksums(migrated["db"])
    again = U.run_engine(source, migrated["db"], allow_rejects=True, app_role="parking_v6_app")
    assert again["changed"] is False, again["counts"]
    assert U.checksums(migrated["db"]) == before


def test_check_mode_writes_nothing_and_returns_the_same_counts(fresh_v6, source):
    before = U.checksums(fresh_v6)
    args = {"source": U.params(source), "target": U.params(fresh_v6), "allow_rejects": True}
    rc, dry = U.module("parking_tenant_migration", args, check=True)
    assert rc == 0 and dry["changed"] is True
    assert U.checksums(fresh_v6) == before
    rc, real = U.module("parking_tenant_migration", args)
    assert rc == 0
    assert dry["counts"] == real["counts"]


def test_rollback_restores_v6_pre_state_checksum(fresh_v6, source):
    before = U.checksums(fresh_v6)
    U.run_engine(source, fresh_v6, allow_rejects=True, app_role="parking_v6_app")
    assert U.checksums(fresh_v6) != before
    rc, res = U.module("parking_tenant_migration", {"target": U.params(fresh_v6), "state": "absent"})
    assert rc == 0 and res["changed"]
    assert U.checksums(fresh_v6) == before
    conn = U.connect(fresh_v6, autocommit=True)
    assert scalar(conn, "SELECT count(*) FROM pg_policies WHERE policyname = 'parking_migrate_tenant_isolation'") == 0
    conn.close()


def test_rejects_fail_the_run_unless_allowed_and_nothing_is_written(fresh_v6, source):
    before = U.checksums(fresh_v6)
    rc, res = U.module("parking_tenant_migration", {"source": U.params(source), "target": U.params(fresh_v6)})
    assert rc != 0
    assert "could not be placed" in res["msg"] and "allow_rejects" in res["msg"]
    assert U.checksums(fresh_v6) == before


def run_killable(v5, v6):
    return U.killable_run(v5, v6, 'app_role="parking_v6_app"')


def test_sigkill_at_a_random_point_then_rerun_gives_identical_result():
    """Killed at a random point (one transaction) -> V6 is untouched or fully migrated, never in
    between; a re-run then gives the same content as a clean run, nothing duplicated."""
    suffix = "_p1k"
    U.seeded(suffix, scale=1000)  # ~105 k history rows: the run takes about a second
    v5db = f"parking_v5{suffix}"
    ref = U.clone_v6(suffix, "parking_v6_p1k_ref")
    victim = U.clone_v6(suffix, "parking_v6_p1k_kill")
    try:
        pristine = U.checksums(victim)
        proc = run_killable(v5db, ref)
        assert proc.stdout.readline().strip() == "connected"
        t0 = time.time()
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
        duration = time.time() - t0
        complete = U.checksums(ref, ["updated_at"])
        rng = random.Random()
        mid_run = 0
        for _ in range(8):               # until two kills landed mid-run
            proc = run_killable(v5db, victim)
            assert proc.stdout.readline().strip() == "connected"
            delay = rng.uniform(0.05, 0.8) * duration
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            # the server notices the dead client and rolls its transaction back
            wait_for(lambda: not U.rows("postgres", "SELECT 1 FROM pg_stat_activity WHERE datname = %s", (victim,)),
                     timeout=30, interval=0.1)
            if U.checksums(victim, ["updated_at"]) == complete:
                # it had committed before the kill (maybe still exiting): a complete run, not a
                # half one; start again from a pristine copy
                victim = U.clone_v6(suffix, "parking_v6_p1k_kill")
                continue
            assert U.checksums(victim) == pristine, f"half-written state after SIGKILL at {delay:.2f}s"
            mid_run += 1
            if mid_run == 2:
                break
        assert mid_run >= 1, "no kill landed mid-run"
        proc = run_killable(v5db, victim)
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
        # updated_at of the V6 rows the links touch is set by trigger to the time of the run
        assert U.checksums(victim, ["updated_at"]) == complete
        conn = U.connect(victim, autocommit=True)
        assert scalar(conn, "SELECT count(*) - count(DISTINCT id) FROM sensor_readings") == 0
        assert scalar(conn, "SELECT count(*) FROM (SELECT dev_eui FROM sensor_devices GROUP BY 1 HAVING count(*) > 1) d") == 0
        conn.close()
    finally:
        U.drop(ref)
        U.drop(victim)


# --- bad input: a clear error, nothing written ---------------------------------------------------

def test_wrong_credentials(fresh_v6, source):
    before = U.checksums(fresh_v6)
    rc, res = U.module("parking_tenant_migration", {"source": U.params(source),
                                                    "target": U.params(fresh_v6, password="wrong")})
    assert rc != 0
    assert "unable to connect to the target" in res["msg"] and "password authentication failed" in res["msg"]
    assert "wrong" not in res["msg"]
    assert U.checksums(fresh_v6) == before


def test_missing_database(fresh_v6):
    before = U.checksums(fresh_v6)
    rc, res = U.module("parking_tenant_migration", {"source": U.params("parking_v5_does_not_exist"),
                                                    "target": U.params(fresh_v6)})
    assert rc != 0
    assert "parking_v5_does_not_exist" in res["msg"] and "must exist" in res["msg"]
    assert U.checksums(fresh_v6) == before


def test_platform_tenant_id_not_a_uuid(fresh_v6, source):
    before = U.checksums(fresh_v6)
    rc, res = U.module("parking_tenant_migration", {"source": U.params(source), "target": U.params(fresh_v6),
                                                    "platform_tenant_id": "platform"})
    assert rc != 0 and "platform_tenant_id must be a UUID" in res["msg"]
    assert U.checksums(fresh_v6) == before


def test_platform_tenant_absent_in_v6(fresh_v6, source):
    conn = U.connect(fresh_v6, autocommit=True)
    query(conn, "DELETE FROM tenants WHERE id = %s RETURNING id", (U.PLATFORM,))
    conn.close()
    before = U.checksums(fresh_v6)
    rc, res = U.module("parking_tenant_migration", {"source": U.params(source), "target": U.params(fresh_v6),
                                                    "allow_rejects": True})
    assert rc != 0 and "platform tenant" in res["msg"] and "absent" in res["msg"]
    assert U.checksums(fresh_v6) == before


def test_live_schema_difference_fails_showing_it(fresh_v6, source):
    """K50: the live schema differs from the files; the run reads the catalogs and fails closed."""
    conn = U.connect(fresh_v6, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE sensor_devices DROP COLUMN model")
        cur.execute("ALTER TABLE spaces ALTER COLUMN display_name TYPE integer USING NULL")
    conn.close()
    before = U.checksums(fresh_v6)
    rc, res = U.module("parking_tenant_migration", {"source": U.params(source), "target": U.params(fresh_v6),
                                                    "allow_rejects": True})
    assert rc != 0
    assert "target (V6): column sensor_devices.model is missing (expected text)" in res["differences"]
    assert "target (V6): column spaces.display_name is int, expected text" in res["differences"]
    assert U.checksums(fresh_v6) == before


def test_concurrent_run_is_refused_by_the_advisory_lock(fresh_v6, source):
    from parking import ledger
    from parking.errors import LockBusy
    holder = U.connect(fresh_v6)
    with holder.cursor() as cur:
        cur.execute(f"SELECT pg_advisory_xact_lock({ledger.LOCK_KEY_SQL})")
    try:
        with pytest.raises(LockBusy, match="holds the migration lock"):
            U.run_engine(source, fresh_v6, allow_rejects=True)
    finally:
        holder.rollback()
        holder.close()


# --- the real script's failures (§1, §5 A) -------------------------------------------------------

def test_a2_one_bad_row_does_not_discard_its_table(migrated):
    m = migrated
    assert any("malformed EUI" in r for r in rejects(m, "sensor_devices").values())
    assert m["result"]["counts"]["sensor_devices"]["inserted"] >= 10


def test_a3_spaces_with_device_fk_are_loaded_before_devices_and_linked(migrated):
    # A001 in FK form (sensor_device_id set in V5): in V6 the link is set in both directions
    rows = query(migrated["conn"], """
        SELECT s.code, d.dev_eui FROM spaces s JOIN sensor_devices d ON d.id = s.sensor_device_id
        WHERE d.assigned_space_id = s.id AND s.code = 'A001'""")
    assert rows


def test_a4_tenant_type_and_tier(migrated):
    c = migrated["conn"]
    assert scalar(c, "SELECT type FROM tenants WHERE id = %s", (U.PLATFORM,)) == "platform"
    assert scalar(c, "SELECT count(*) FROM tenants WHERE type IS NULL OR subscription_tier IS NULL") == 0


# --- §5 B: unique keys and collisions ------------------------------------------------------------

def test_b9_seed_spaces_a001_a002_b001_are_matched_not_duplicated(migrated):
    c = migrated["conn"]
    for code in ("A001", "A002", "B001"):
        assert scalar(c, "SELECT count(*) FROM spaces WHERE code = %s AND site_id = '00000000-0000-0000-0000-000000000001' "
                         "AND deleted_at IS NULL", (code,)) == 1
    assert migrated["result"]["counts"]["spaces"]["matched"] >= 3


def test_b10_tenant_slug_collision_is_matched_and_v6_names_are_kept(migrated):
    c = migrated["conn"]
    assert scalar(c, "SELECT count(*) FROM tenants WHERE slug = 'acme-parking'") == 1
    pristine = U.connect(f"parking_v6{SUFFIX}", autocommit=True)
    names = dict(query(pristine, "SELECT id::text, name FROM tenants"))
    pristine.close()
    assert dict(query(c, "SELECT id::text, name FROM tenants WHERE id::text = ANY(%s)", (list(names),))) == names
    v5_names = dict(v5("SELECT id::text, name FROM tenants"))
    assert any(v5_names.get(i) not in (None, n) for i, n in names.items())  # V5 disagrees on some: V6 wins


def test_b11_users_match_case_insensitively_and_taken_ids_are_remapped(migrated):
    c = migrated["conn"]
    assert scalar(c, "SELECT count(*) FROM users WHERE lower(email) = 'admin@verdegris.eu'") == 1
    assert scalar(c, "SELECT count(*) FROM users WHERE email <> lower(email) AND id IN "
                     "(SELECT v6_id::uuid FROM parking_migrate.id_map WHERE entity = 'users' AND action = 'inserted')") == 0
    # V5 user whose id V6 uses for another email: inserted under a new id, memberships follow it
    (v5_id, email), = v5("SELECT id::text, lower(email) FROM users WHERE lower(email) LIKE 'ops@%'")
    v6_id = scalar(c, "SELECT id::text FROM users WHERE email = %s", (email,))
    assert v6_id and v6_id != v5_id
    assert scalar(c, "SELECT count(*) FROM user_memberships WHERE user_id = %s", (v6_id,)) >= 1


def test_b12_sites_get_unique_slugs(migrated):
    c = migrated["conn"]
    assert scalar(c, "SELECT count(*) FROM sites WHERE slug IS NULL AND id IN (SELECT v6_id::uuid FROM "
                     "parking_migrate.id_map WHERE entity = 'sites' AND action = 'inserted')") == 0
    slugs = [r[0] for r in query(c, "SELECT slug FROM sites WHERE name IN ('Car Park #1', 'Car-Park 1')")]
    assert len(slugs) == 2 and len(set(slugs)) == 2


def test_b14_device_ids_are_kept_or_remapped_consistently(migrated):
    c = migrated["conn"]
    assert scalar(c, """SELECT count(*) FROM parking_migrate.id_map m LEFT JOIN sensor_devices d ON d.id = m.v6_id::uuid
                        WHERE m.entity = 'sensor_devices' AND d.id IS NULL""") == 0


def test_b15_rerun_does_not_overwrite_v6_work(migrated, source):
    c = migrated["conn"]
    dev = scalar(c, "SELECT id::text FROM sensor_devices WHERE dev_eui = %s", (LIVE_SENSORS[0],))
    query(c, "UPDATE sensor_devices SET name = 'renamed in V6' WHERE id = %s RETURNING 1", (dev,))
    U.run_engine(source, migrated["db"], allow_rejects=True, app_role="parking_v6_app")
    assert scalar(c, "SELECT name FROM sensor_devices WHERE id = %s", (dev,)) == "renamed in V6"


# --- §5 C: EUI format ---------------------------------------------------------------------------

def test_c16_every_v6_eui_is_16_uppercase_hex(migrated):
    assert scalar(migrated["conn"], """SELECT count(*) FROM (SELECT dev_eui e FROM sensor_devices UNION ALL
        SELECT dev_eui FROM display_devices UNION ALL SELECT sensor_eui FROM spaces UNION ALL
        SELECT display_eui FROM spaces) x WHERE e IS NOT NULL AND e !~ '^[0-9A-F]{16}$'""") == 0


def test_c16_lowercase_v5_eui_is_normalised_and_found(migrated):
    (eui,), = v5("SELECT dev_eui FROM sensor_devices WHERE dev_eui <> upper(dev_eui) LIMIT 1")
    assert scalar(migrated["conn"], "SELECT count(*) FROM sensor_devices WHERE dev_eui = %s", (eui.upper(),)) == 1


def test_c18_display_without_eui_is_a_reject_with_reason(migrated):
    assert "missing EUI" in rejects(migrated, "display_devices").values()


# --- §5 D: device ownership and state --------------------------------------------------------------

def test_d20_eui_linked_devices_get_their_space_site_tenant_not_the_platform(migrated):
    c = migrated["conn"]
    for eui in LIVE_SENSORS:
        row = query(c, """SELECT d.tenant_id, s.tenant_id, st.tenant_id FROM sensor_devices d
                          JOIN spaces s ON s.id = d.assigned_space_id JOIN sites st ON st.id = s.site_id
                          WHERE d.dev_eui = %s""", (eui,))
        assert row, eui
        dev_t, space_t, site_t = row[0]
        assert dev_t == space_t == site_t and str(dev_t) != U.PLATFORM


def test_d21_status_follows_the_link_not_v5_status(migrated):
    c = migrated["conn"]
    assert scalar(c, "SELECT count(*) FROM sensor_devices WHERE status = 'assigned' AND assigned_space_id IS NULL") == 0
    assert scalar(c, "SELECT count(*) FROM sensor_devices WHERE status = 'unassigned' AND assigned_space_id IS NOT NULL") == 0
    # V5 'active' with no space -> unassigned in the platform tenant
    ids = [r[0] for r in v5("""SELECT d.id::text FROM sensor_devices d WHERE d.status = 'active' AND NOT EXISTS
        (SELECT 1 FROM spaces s WHERE s.deleted_at IS NULL AND (upper(s.sensor_eui) = upper(d.dev_eui)
         OR s.sensor_device_id = d.id))""")]
    assert ids
    for v5_id in ids:
        assert query(c, """SELECT d.status, d.tenant_id::text FROM sensor_devices d JOIN parking_migrate.id_map m
                           ON m.v6_id::uuid = d.id AND m.entity = 'sensor_devices' WHERE m.v5_id = %s""",
                     (v5_id,))[0] == ("unassigned", U.PLATFORM)


def test_d22_decommissioned_devices_stay_decommissioned_and_disabled(migrated):
    rows = query(migrated["conn"], "SELECT lifecycle_state, enabled FROM sensor_devices d JOIN parking_migrate.id_map m "
                 "ON m.v6_id::uuid = d.id WHERE m.entity = 'sensor_devices' AND m.v5_id IN %s",
                 (tuple(r[0] for r in v5("SELECT id::text FROM sensor_devices WHERE status = 'decommissioned'")),))
    assert rows and all(r == ("decommissioned", False) for r in rows)


def test_d23_device_linked_from_two_spaces_is_placed_by_the_stated_rule(migrated):
    assert any("linked from 2 live V5 spaces" in w for w in migrated["result"]["warnings"])
    assert scalar(migrated["conn"], "SELECT count(*) FROM (SELECT sensor_device_id FROM spaces WHERE sensor_device_id "
                                    "IS NOT NULL GROUP BY 1 HAVING count(*) > 1) x") == 0


def test_d24_device_only_in_a_deleted_space_is_unplaced_with_closed_history(migrated):
    note = [w for w in migrated["result"]["warnings"] if "only from soft-deleted" in w]
    assert note
    eui = note[0].split()[1]
    c = migrated["conn"]
    assert query(c, "SELECT tenant_id::text, status FROM sensor_devices WHERE dev_eui = %s", (eui,))[0] == \
        (U.PLATFORM, "unassigned")
    assert scalar(c, "SELECT count(*) FROM device_assignments WHERE dev_eui = %s AND unassigned_at IS NOT NULL",
                  (eui,)) >= 1


def test_d25_platform_tenant_devices_are_all_unassigned(migrated):
    assert scalar(migrated["conn"], "SELECT count(*) FROM sensor_devices WHERE tenant_id = %s AND "
                                    "(status <> 'unassigned' OR assigned_space_id IS NOT NULL)", (U.PLATFORM,)) == 0


def test_d26_every_current_link_has_an_open_assignment_row(migrated):
    assert scalar(migrated["conn"], """SELECT count(*) FROM sensor_devices d WHERE d.assigned_space_id IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM device_assignments a WHERE a.device_id = d.id AND a.unassigned_at IS NULL
                        AND a.space_id = d.assigned_space_id)""") == 0


def test_d27_last_seen_is_kept(migrated):
    assert scalar(migrated["conn"], "SELECT count(*) FROM sensor_devices WHERE last_seen_at IS NOT NULL") >= 3


def test_d28_dual_role_kuando_is_in_both_registries(migrated):
    c = migrated["conn"]
    assert scalar(c, "SELECT count(*) FROM sensor_devices s JOIN display_devices d USING (dev_eui) "
                     "WHERE dev_eui LIKE '202020%'") >= 1


# --- §5 E, F, G, H, I -------------------------------------------------------------------------------

def test_e29_current_state_is_set_from_v5_state(migrated):
    assert scalar(migrated["conn"], "SELECT count(*) FROM spaces WHERE id IN (SELECT v6_id::uuid FROM "
                                    "parking_migrate.id_map WHERE entity = 'spaces' AND action = 'inserted') "
                                    "AND current_state <> lower(state)") == 0


def test_e30_soft_deleted_spaces_come_along_with_their_history(migrated):
    """Soft-deleted spaces come over (deleted) with their state history; their reservations are
    not migrated as live ones: each is skipped with its reason (issue 11)."""
    c = migrated["conn"]
    assert scalar(c, "SELECT count(*) FROM spaces WHERE deleted_at IS NOT NULL") >= 2
    assert scalar(c, "SELECT count(*) FROM reservations r JOIN spaces s ON s.id = r.space_id "
                     "WHERE s.deleted_at IS NOT NULL") == 0
    skipped = [d for d in migrated["result"]["decisions"] if d["entity"] == "reservations"
               and d["decision"] == "not_migrated" and "soft-deleted" in d["detail"]]
    assert skipped and migrated["result"]["counts"]["reservations"]["skipped"] == len(skipped)


def test_f32_migrated_users_can_log_in(migrated):
    # (the placeholder owner of anonymous bookings is the one user meant not to log in)
    assert scalar(migrated["conn"], """SELECT count(*) FROM users u WHERE u.id IN (SELECT v6_id::uuid FROM
        parking_migrate.id_map WHERE entity = 'users' AND v5_id NOT LIKE 'anonymous-bookings:%%')
        AND NOT EXISTS (SELECT 1 FROM user_memberships m
        WHERE m.user_id = u.id AND m.is_active)""") == 0


def test_f33_platform_admin_becomes_owner_in_the_platform_tenant(migrated):
    (email,), = v5("SELECT lower(u.email) FROM users u JOIN user_memberships m ON m.user_id = u.id "
                   "WHERE m.role = 'platform_admin' LIMIT 1")
    assert scalar(migrated["conn"], "SELECT m.role FROM user_memberships m JOIN users u ON u.id = m.user_id "
                                    "WHERE lower(u.email) = %s AND m.tenant_id = %s", (email, U.PLATFORM)) == "owner"


def test_g35_reservations_migrated_with_user_and_v6_status(migrated):
    c = migrated["conn"]
    # reservations on soft-deleted spaces are skipped (test_e30)
    n5 = v5("SELECT count(*) FROM reservations r JOIN spaces s ON s.id = r.space_id WHERE s.deleted_at IS NULL")[0][0]
    assert migrated["result"]["counts"]["reservations"]["inserted"] == n5
    assert scalar(c, "SELECT count(*) FROM reservations WHERE status NOT IN ('active', 'completed', 'cancelled', 'no_show')") == 0
    assert scalar(c, "SELECT count(*) FROM reservations WHERE user_id IS NOT NULL") >= 1
    assert scalar(c, "SELECT count(*) FROM reservations WHERE metadata ? 'request_id'") == n5


def test_h40_readings_without_fcnt_are_rejected_with_reason(migrated):
    assert any("fcnt missing" in r for r in rejects(migrated, "sensor_readings").values())


def test_h42_state_changes_keep_ids_and_the_sequence_is_advanced(migrated):
    c = migrated["conn"]
    assert scalar(c, "SELECT last_value FROM state_changes_id_seq") >= scalar(c, "SELECT max(id) FROM state_changes")


def test_i44_rls_applies_to_the_application_role(migrated):
    c = migrated["conn"]
    tenant = scalar(c, "SELECT tenant_id::text FROM sensor_devices WHERE dev_eui = %s", (LIVE_SENSORS[0],))
    with c.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SET LOCAL ROLE parking_v6_app")
        cur.execute("SELECT set_config('app.current_tenant_id', %s, true)", (tenant,))
        cur.execute("SELECT count(*), count(*) FILTER (WHERE tenant_id <> %s::uuid) FROM sensor_devices", (tenant,))
        visible, foreign = cur.fetchone()
        cur.execute("ROLLBACK")
    assert visible >= 1 and foreign == 0


def test_history_counts_match_per_tenant(migrated):
    c = migrated["conn"]
    cutoff = migrated["result"]["history_cutoff"]  # readings V6 would delete are not migrated
    n5 = v5("SELECT count(*) FROM sensor_readings r WHERE fcnt IS NOT NULL AND EXISTS (SELECT 1 FROM sensor_devices d "
            "WHERE upper(d.dev_eui) = upper(r.device_eui) AND upper(d.dev_eui) ~ '^[0-9A-F]{16}$') "
            "AND (%s::timestamptz IS NULL OR r.\"timestamp\" >= %s::timestamptz)", (cutoff, cutoff))[0][0]
    assert scalar(c, "SELECT count(*) FROM sensor_readings WHERE raw_payload LIKE '{\"migrated_by\"%'") == n5


# --- mode: delta (cutover catch-up) ---------------------------------------------------------------

def test_delta_needs_an_earlier_full_run(fresh_v6, source):
    from parking.errors import ConfigError
    with pytest.raises(ConfigError, match="needs an earlier successful full run"):
        U.run_engine(source, fresh_v6, mode="delta", allow_rejects=True)


def test_delta_moves_what_v5_wrote_since_and_never_overwrites_newer_v6_work(source):
    v5db = "parking_v5_p1_delta"
    U.admin_sql(f"DROP DATABASE IF EXISTS {v5db} WITH (FORCE)",
                f"CREATE DATABASE {v5db} TEMPLATE {V5} OWNER parking_user")
    v6db = U.clone_v6(SUFFIX, "parking_v6_p1_delta")
    try:
        U.run_engine(v5db, v6db, allow_rejects=True)
        c5, c6 = U.connect(v5db, autocommit=True), U.connect(v6db, autocommit=True)
        eui = LIVE_SENSORS[0]
        code = scalar(c5, "SELECT code FROM spaces WHERE sensor_eui = %s AND deleted_at IS NULL", (eui,))
        other = scalar(c5, "SELECT code FROM spaces WHERE sensor_eui = %s AND deleted_at IS NULL", (LIVE_SENSORS[1],))
        # V5 keeps working: a reading, a state change, a newer space state, a cancelled reservation
        query(c5, "INSERT INTO sensor_readings (device_eui, occupancy_state, fcnt, \"timestamp\") "
                  "VALUES (%s, 'OCCUPIED', 999999, now()) RETURNING id", (eui,))
        query(c5, "UPDATE spaces SET state = 'MAINTENANCE', updated_at = now() WHERE code = %s AND "
                  "deleted_at IS NULL RETURNING id", (code,))
        res_id = scalar(c5, "UPDATE reservations SET status = 'cancelled', updated_at = now() WHERE id = (SELECT id FROM "
                            "reservations r WHERE status = 'confirmed' AND EXISTS (SELECT 1 FROM spaces s WHERE "
                            "s.id = r.space_id AND s.deleted_at IS NULL) ORDER BY id LIMIT 1) RETURNING id::text")
        # another space: V5 wrote it, then V6 (live) changed it later (its trigger stamps updated_at)
        query(c5, "UPDATE spaces SET state = 'FREE', updated_at = now() WHERE code = %s AND deleted_at IS NULL "
                  "RETURNING id", (other,))
        time.sleep(0.05)
        query(c6, "UPDATE spaces SET current_state = 'reserved', state = 'RESERVED' "
                  "WHERE code = %s AND deleted_at IS NULL RETURNING id", (other,))
        delta = U.run_engine(v5db, v6db, mode="delta", allow_rejects=True)
        assert delta["counts"]["sensor_readings"]["inserted"] == 1
        assert scalar(c6, "SELECT count(*) FROM sensor_readings WHERE dev_eui = %s AND fcnt = 999999", (eui,)) == 1
        assert scalar(c6, "SELECT current_state FROM spaces WHERE code = %s AND deleted_at IS NULL", (code,)) == \
            "maintenance"
        assert scalar(c6, "SELECT status FROM reservations WHERE id = %s", (res_id,)) == "cancelled"
        assert scalar(c6, "SELECT current_state FROM spaces WHERE code = %s AND deleted_at IS NULL", (other,)) == \
            "reserved"  # V6's newer work stays
        again = U.run_engine(v5db, v6db, mode="delta", allow_rejects=True)
        assert again["changed"] is False, again["counts"]
        c5.close()
        c6.close()
    finally:
        U.drop(v6db)
        U.drop(v5db)


def test_tls_setting_wrong_says_which_setting_and_changes_nothing(fresh_v6, source):
    """verify-full with a CA file that is not there: a clear error naming the TLS settings."""
    before = U.checksums(fresh_v6)
    target = dict(U.params(fresh_v6), ssl_mode="verify-full", ca_cert="/nonexistent/parking-ca.crt")
    rc, res = U.module("parking_tenant_migration", {"source": U.params(source), "target": target})
    assert rc != 0
    assert "unable to connect to the target" in res["msg"] and "target.ssl_mode and target.ca_cert" in res["msg"], res["msg"]
    assert U.checksums(fresh_v6) == before
