"""Phase 1 data fixes for the real V6 application, against real PostgreSQL (scratch databases).

V6's contract: readings older than 90 days are deleted, the reservation expiry job and CHECK
accept only active|completed|cancelled|no_show, the reservation list needs a user_id, and
login picks the membership with the latest created_at. The V5 copy gets general edge cases
on top of the lab seed: an ended and an open 'confirmed' booking, an anonymous booking, a user
with two memberships created at the same instant, an inactive new tenant, old readings.
"""
import datetime as dt

import psycopg2
import pytest

import p1util as U
from labdb import lab_pg_params, query, scalar
from labutil import wait_for

SUFFIX = "_p1"
V5 = "parking_v5_p1_rules"
EMAIL = "v5-anonymous-bookings@parking-migrate.invalid"
OLD_READINGS = 3
LIVE = "58A0CB00001196F3"


def v5_admin(db):
    """Superuser on a V5 copy: V5 forces RLS on its tables, even for their owner."""
    conn = psycopg2.connect(dbname=db, options="-c TimeZone=UTC",
                            **dict(lab_pg_params(), user=U.ADMIN_USER, password=U.ADMIN_PASSWORD))
    conn.autocommit = True
    return conn


def add_edge_cases(db):
    c = v5_admin(db)
    try:
        tenant = dict(query(c, "SELECT slug, id FROM tenants"))
        # a live space with no seeded booking in the window the bookings below take (V5 refuses
        # overlaps), whatever the time of day the seed's relative bookings fall on
        space = scalar(c, "SELECT s.id FROM spaces s JOIN sites x ON x.id = s.site_id WHERE x.tenant_id = %s "
                          "AND s.deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM reservations r WHERE "
                          "r.space_id = s.id AND r.end_time > now() - interval '4 hours' "
                          "AND r.start_time < now() + interval '26 hours') ORDER BY s.code LIMIT 1",
                       (tenant["verdegris"],))
        assert space, "the seed leaves no verdegris space free for a day: change the edge cases"
        # a tenant inactive in V5 that V6 does not have
        query(c, "INSERT INTO tenants (id, name, slug, is_active, created_at, updated_at) VALUES "
                 "('7e000000-0000-4000-8000-000000000001', 'Closed Parking', 'closed-parking', false, "
                 "now() - interval '400 days', now() - interval '30 days') RETURNING id")
        # a user with two memberships created at the same instant (V5's login breaks the tie by id)
        query(c, "INSERT INTO users (id, email, name, password_hash, created_at) VALUES "
                 "('7e000000-0000-4000-8000-000000000002', 'twin@example.com', 'Twin Tenants', 'x', "
                 "'2026-01-01T00:00:00Z') RETURNING id")
        for mid, slug, role in (("7e000000-0000-4000-8000-000000000003", "verdegris", "admin"),
                                ("7e000000-0000-4000-8000-000000000004", "default", "viewer")):
            query(c, "INSERT INTO user_memberships (id, user_id, tenant_id, role, created_at, updated_at) VALUES "
                     "(%s, '7e000000-0000-4000-8000-000000000002', %s, %s, '2026-01-01T00:00:00Z', "
                     "'2026-01-01T00:00:00Z') RETURNING id", (mid, tenant[slug], role))
        # bookings: ended 'confirmed', open 'confirmed' (ongoing), anonymous in the future
        for rid, start, end, email in (
                ("7e000000-0000-4000-8000-000000000005", "now() - interval '3 hours'", "now() - interval '2 hours'",
                 "twin@example.com"),
                ("7e000000-0000-4000-8000-000000000006", "now() - interval '1 hour'", "now() + interval '2 hours'",
                 "twin@example.com"),
                ("7e000000-0000-4000-8000-000000000007", "now() + interval '1 day'", "now() + interval '25 hours'",
                 "nobody-in-v6@example.org")):
            query(c, f"INSERT INTO reservations (id, space_id, start_time, end_time, user_email, status, tenant_id) "
                     f"VALUES (%s, %s, {start}, {end}, %s, 'confirmed', %s) RETURNING id",
                  (rid, space, email, tenant["verdegris"]))
        # readings older than V6's retention, and one recent reading
        for n in range(OLD_READINGS):
            query(c, "INSERT INTO sensor_readings (device_eui, occupancy_state, fcnt, \"timestamp\", tenant_id) "
                     "VALUES (%s, 'FREE', %s, now() - interval '120 days', %s) RETURNING id",
                  (LIVE, 800000 + n, tenant["verdegris"]))
        query(c, "INSERT INTO sensor_readings (device_eui, occupancy_state, fcnt, \"timestamp\", tenant_id) "
                 "VALUES (%s, 'OCCUPIED', 800100, now() - interval '10 days', %s) RETURNING id",
              (LIVE, tenant["verdegris"]))
    finally:
        c.close()


@pytest.fixture(scope="module")
def source():
    U.seeded(SUFFIX)
    U.admin_sql(f"DROP DATABASE IF EXISTS {V5} WITH (FORCE)",
                f"CREATE DATABASE {V5} TEMPLATE parking_v5{SUFFIX} OWNER parking_user")
    add_edge_cases(V5)
    yield V5
    U.drop(V5)


@pytest.fixture(scope="module")
def migrated(source):
    yield from U.migrated_copy(source, SUFFIX, "parking_v6_p1_rules")


@pytest.fixture
def fresh_v6(source, request):
    yield from U.fresh_copy(SUFFIX, f"parking_v6_p1r_{request.node.name[5:36].lower()}")


def v5(sql, params=None):
    conn = v5_admin(V5)
    try:
        return query(conn, sql, params)
    finally:
        conn.close()


# --- 1. reservations already ended are final in V6 -------------------------------------------------

def test_ended_reservations_are_completed_open_ones_stay_active(migrated):
    c = migrated["conn"]
    assert scalar(c, "SELECT status FROM reservations WHERE id = '7e000000-0000-4000-8000-000000000005'") == "completed"
    assert scalar(c, "SELECT metadata->>'v5_status' FROM reservations "
                     "WHERE id = '7e000000-0000-4000-8000-000000000005'") == "confirmed"
    assert scalar(c, "SELECT status FROM reservations WHERE id = '7e000000-0000-4000-8000-000000000007'") == "active"
    # general: no migrated reservation whose window ended is left active
    assert scalar(c, "SELECT count(*) FROM reservations r JOIN parking_migrate.id_map m ON m.entity = "
                     "'reservations' AND m.v6_id = r.id::text WHERE r.status = 'active' AND r.end_time <= "
                     "(SELECT started_at FROM parking_migrate.runs WHERE run_id = %s)",
                  (migrated["result"]["run_id"],)) == 0
    ended = v5("SELECT count(*) FROM reservations r JOIN spaces s ON s.id = r.space_id AND s.deleted_at IS NULL "
               "WHERE r.status IN ('pending', 'confirmed', 'active') AND r.end_time <= now()")[0][0]
    assert migrated["result"]["counts"]["reservations"]["ended_closed"] == ended
    assert scalar(c, "SELECT status FROM reservations WHERE id = '7e000000-0000-4000-8000-000000000006'") == "active"
    assert scalar(c, "SELECT count(*) FROM reservations WHERE status NOT IN "
                     "('active', 'completed', 'cancelled', 'no_show')") == 0


def test_delta_closes_a_reservation_that_ended_since(source):
    v5db, v6db = "parking_v5_p1r_delta", U.clone_v6(SUFFIX, "parking_v6_p1r_delta")
    U.admin_sql(f"DROP DATABASE IF EXISTS {v5db} WITH (FORCE)",
                f"CREATE DATABASE {v5db} TEMPLATE {V5} OWNER parking_user")
    try:
        c5 = v5_admin(v5db)
        rid = "7e000000-0000-4000-8000-0000000000d1"
        query(c5, "INSERT INTO reservations (id, space_id, start_time, end_time, user_email, status, tenant_id) "
                  "SELECT %s, s.id, now() - interval '1 hour', now() + interval '2 seconds', NULL, 'pending', "
                  "x.tenant_id FROM spaces s JOIN sites x ON x.id = s.site_id WHERE s.deleted_at IS NULL "
                  "AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.space_id = s.id AND r.end_time > now() "
                  "- interval '2 hours' AND r.start_time < now() + interval '1 hour') ORDER BY s.code LIMIT 1 "
                  "RETURNING id", (rid,))
        c5.close()
        U.run_engine(v5db, v6db, allow_rejects=True)
        c6 = U.connect(v6db, autocommit=True)
        assert scalar(c6, "SELECT status FROM reservations WHERE id = %s", (rid,)) == "active"
        wait_for(lambda: scalar(c6, "SELECT end_time < now() FROM reservations WHERE id = %s", (rid,)),
                 timeout=30, interval=0.2)                      # its window has ended
        delta = U.run_engine(v5db, v6db, mode="delta", allow_rejects=True)
        assert delta["counts"]["reservations"]["ended_closed"] >= 1
        assert scalar(c6, "SELECT status FROM reservations WHERE id = %s", (rid,)) == "completed"
        again = U.run_engine(v5db, v6db, mode="delta", allow_rejects=True)
        assert again["changed"] is False, again["counts"]
        c6.close()
    finally:
        U.drop(v6db)
        U.drop(v5db)


# --- 2. every reservation has a V6 user ---------------------------------------------------------------

def test_anonymous_bookings_get_the_placeholder_user(migrated):
    c = migrated["conn"]
    assert scalar(c, "SELECT count(*) FROM reservations WHERE user_id IS NULL") == 0
    (uid, active, meta, pw), = query(c, "SELECT id::text, is_active, metadata, hashed_password FROM users "
                                        "WHERE email = %s", (EMAIL,))
    assert active is False and meta["created_by"] == "parking-migrate" and pw.startswith("$2b$")
    assert scalar(c, "SELECT count(*) FROM user_memberships WHERE user_id = %s", (uid,)) == 0
    assert scalar(c, "SELECT user_email FROM reservations WHERE id = '7e000000-0000-4000-8000-000000000007'") == \
        "nobody-in-v6@example.org"
    assert scalar(c, "SELECT user_id::text FROM reservations WHERE id = '7e000000-0000-4000-8000-000000000007'") == uid
    nulls = scalar(c, "SELECT count(*) FROM reservations WHERE user_id = %s AND user_email IS NULL", (uid,))
    assert nulls == v5("SELECT count(*) FROM reservations WHERE user_email IS NULL")[0][0]
    counts = migrated["result"]["counts"]
    assert counts["users"]["placeholder_created"] == 1
    assert counts["reservations"]["anonymous_user"] == scalar(
        c, "SELECT count(*) FROM reservations WHERE user_id = %s", (uid,))
    assert scalar(c, "SELECT action FROM parking_migrate.id_map WHERE entity = 'users' AND v6_id = %s", (uid,)) == \
        "inserted"


def test_placeholder_email_is_configurable_and_created_once(fresh_v6, source):
    first = U.run_engine(source, fresh_v6, allow_rejects=True, anonymous_user_email="Walk-Ins@Example.invalid")
    c = U.connect(fresh_v6, autocommit=True)
    assert scalar(c, "SELECT count(*) FROM users WHERE email = 'walk-ins@example.invalid' AND NOT is_active") == 1
    assert scalar(c, "SELECT count(*) FROM users WHERE email = %s", (EMAIL,)) == 0
    assert first["counts"]["users"]["placeholder_created"] == 1
    again = U.run_engine(source, fresh_v6, allow_rejects=True, anonymous_user_email="Walk-Ins@Example.invalid")
    assert "placeholder_created" not in again["counts"].get("users", {}) and again["changed"] is False
    c.close()


# --- 3. login lands on the primary V5 tenant ------------------------------------------------------------

def _memberships(c, email):
    return query(c, "SELECT t.slug, m.created_at FROM user_memberships m JOIN users u ON u.id = m.user_id "
                    "JOIN tenants t ON t.id = m.tenant_id WHERE lower(u.email) = %s "
                    "ORDER BY m.created_at DESC", (email,))


def v5_login_tenant(email):
    """Where V5's login lands (lab/services/v5api: a platform admin in the platform view, else the
    oldest active membership of an active tenant, then the id)."""
    rows = v5("""SELECT t.slug, t.id::text FROM user_memberships m JOIN users u ON u.id = m.user_id
                  JOIN tenants t ON t.id = CASE WHEN m.role = 'platform_admin'
                                                THEN '00000000-0000-0000-0000-000000000000'::uuid ELSE m.tenant_id END
                 WHERE lower(u.email) = %s AND m.is_active IS NOT FALSE AND t.is_active IS NOT FALSE
                 ORDER BY (m.role = 'platform_admin') DESC, m.created_at, m.id LIMIT 1""", (email,))
    return rows[0]


def test_two_memberships_at_the_same_instant_login_lands_on_the_primary(migrated):
    c = migrated["conn"]
    rows = _memberships(c, "twin@example.com")
    assert v5_login_tenant("twin@example.com")[0] == "verdegris"  # same instant: the lower membership id
    assert [r[0] for r in rows] == ["verdegris", "default"]
    assert rows[0][1] > rows[1][1]                                # strictly: no tie remains
    assert rows[0][1] - rows[1][1] == dt.timedelta(milliseconds=1)
    # V6's login query
    assert scalar(c, "SELECT t.slug FROM user_memberships m JOIN users u ON u.id = m.user_id JOIN tenants t "
                     "ON t.id = m.tenant_id WHERE u.email = 'twin@example.com' AND m.is_active "
                     "ORDER BY m.created_at DESC LIMIT 1") == "verdegris"
    assert scalar(c, "SELECT m.metadata->>'v5_created_at' FROM user_memberships m JOIN users u ON u.id = m.user_id "
                     "JOIN tenants t ON t.id = m.tenant_id WHERE u.email = 'twin@example.com' "
                     "AND t.slug = 'verdegris'") is not None


def test_no_user_has_a_tie_at_the_top_and_v6_rows_are_not_rewritten(migrated):
    c = migrated["conn"]
    assert scalar(c, """SELECT count(*) FROM (SELECT user_id, created_at FROM user_memberships
                        GROUP BY 1, 2 HAVING count(*) > 1 AND created_at =
                        (SELECT max(x.created_at) FROM user_memberships x WHERE x.user_id = user_memberships.user_id))
                        t""") == 0
    before = U.connect(U.clone_v6(SUFFIX, "parking_v6_p1r_pristine"), autocommit=True)
    try:
        pristine = dict(query(before, "SELECT id::text, created_at FROM user_memberships"))
    finally:
        before.close()
        U.drop("parking_v6_p1r_pristine")
    now = dict(query(c, "SELECT id::text, created_at FROM user_memberships WHERE id::text = ANY(%s)",
                     (list(pristine),)))
    assert now == pristine
    # every migrated user lands in V6 where V5's login landed
    for (email,) in v5("SELECT lower(email) FROM users u WHERE EXISTS (SELECT 1 FROM user_memberships m"
                       " WHERE m.user_id = u.id AND m.is_active IS NOT FALSE)"):
        got = query(c, "SELECT t.slug, t.id::text FROM user_memberships m JOIN users u ON u.id = m.user_id "
                       "JOIN tenants t ON t.id = m.tenant_id WHERE lower(u.email) = %s AND m.is_active "
                       "ORDER BY m.created_at DESC LIMIT 1", (email,))   # V6's login query
        if got:
            slug, tenant_id = v5_login_tenant(email)
            assert got[0][1] == tenant_id or got[0][0] == slug, (email, got, slug)
    # admin: platform_admin (the platform tenant, a membership V6 had) ranks first
    assert _memberships(c, "admin@verdegris.eu")[0][0] == "platform"


# --- 4. tenant is_active -------------------------------------------------------------------------------

def test_inserted_tenant_keeps_v5_is_active_matched_one_is_reported(migrated):
    c = migrated["conn"]
    assert scalar(c, "SELECT is_active FROM tenants WHERE slug = 'closed-parking'") is False
    diffs = migrated["result"]["tenant_is_active_differences"]
    city = [d for d in diffs if d["slug"] == "city-parking"]
    assert city == [{"tenant_id": city[0]["tenant_id"], "slug": "city-parking", "v5_is_active": False,
                     "v6_is_active": True}]
    assert scalar(c, "SELECT is_active FROM tenants WHERE slug = 'city-parking'") is True   # V6's value kept
    assert all(d["slug"] != "closed-parking" for d in diffs)
    assert migrated["result"]["counts"]["tenants"]["is_active_differs"] == len(diffs)


# --- 5. history older than V6's retention -------------------------------------------------------------

def test_old_readings_are_skipped_and_counted(migrated):
    c = migrated["conn"]
    res = migrated["result"]
    assert res["history_retention_days"] == 90 and res["history_cutoff"]
    old5 = v5("SELECT count(*) FROM sensor_readings WHERE \"timestamp\" < now() - interval '90 days'")[0][0]
    assert old5 >= OLD_READINGS
    assert res["counts"]["sensor_readings"]["skipped_retention"] == old5
    assert scalar(c, "SELECT count(*) FROM sensor_readings WHERE received_at < "
                     "(now() AT TIME ZONE 'UTC') - interval '90 days'") == 0
    assert scalar(c, "SELECT count(*) FROM sensor_readings WHERE dev_eui = %s AND fcnt = 800100", (LIVE,)) == 1
    assert "state_changes" not in res["counts"] or "skipped_retention" not in res["counts"]["state_changes"]


def test_gate_passes_with_the_same_cutoff(migrated, source):
    from parking import ledger, verify
    src, tgt = U.connect(source), U.connect(migrated["db"])
    try:
        result = verify.verify(src, tgt, ledger.new_run_id(), U.PLATFORM, "parking_v6_app")
    finally:
        src.close()
        tgt.close()
    assert result["passed"], result["failed"]
    assert result["history_retention_days"] == 90


def test_retention_zero_migrates_everything_and_the_gate_compares_all(fresh_v6, source):
    from parking import ledger, verify
    res = U.run_engine(source, fresh_v6, allow_rejects=True, app_role="parking_v6_app", history_retention_days=0)
    assert res["history_cutoff"] is None and "skipped_retention" not in res["counts"]["sensor_readings"]
    c = U.connect(fresh_v6, autocommit=True)
    assert scalar(c, "SELECT count(*) FROM sensor_readings WHERE dev_eui = %s AND fcnt BETWEEN 800000 AND 800099",
                  (LIVE,)) == OLD_READINGS
    c.close()
    src, tgt = U.connect(source), U.connect(fresh_v6)
    try:
        gate = verify.verify(src, tgt, ledger.new_run_id(), U.PLATFORM, "parking_v6_app")
    finally:
        src.close()
        tgt.close()
    assert gate["passed"], gate["failed"]
    assert gate["history_retention_days"] == 0


def test_delta_skips_old_readings_too(source):
    v5db, v6db = "parking_v5_p1r_dhist", U.clone_v6(SUFFIX, "parking_v6_p1r_dhist")
    U.admin_sql(f"DROP DATABASE IF EXISTS {v5db} WITH (FORCE)",
                f"CREATE DATABASE {v5db} TEMPLATE {V5} OWNER parking_user")
    try:
        U.run_engine(v5db, v6db, allow_rejects=True, app_role="parking_v6_app")
        c5 = v5_admin(v5db)
        query(c5, "INSERT INTO sensor_readings (device_eui, occupancy_state, fcnt, \"timestamp\") VALUES "
                  "(%s, 'FREE', 800200, now() - interval '100 days'), (%s, 'FREE', 800201, now()) RETURNING id",
                  (LIVE, LIVE))
        c5.close()
        delta = U.run_engine(v5db, v6db, mode="delta", allow_rejects=True)
        assert delta["counts"]["sensor_readings"]["inserted"] == 1
        assert delta["counts"]["sensor_readings"]["skipped_retention"] == 1
        c6 = U.connect(v6db, autocommit=True)
        assert scalar(c6, "SELECT count(*) FROM sensor_readings WHERE fcnt IN (800200, 800201)") == 1
        c6.close()
        from parking import ledger, verify
        src, tgt = U.connect(v5db), U.connect(v6db)
        try:
            gate = verify.verify(src, tgt, ledger.new_run_id(), U.PLATFORM, "parking_v6_app")
        finally:
            src.close()
            tgt.close()
        assert gate["passed"], gate["failed"]
    finally:
        U.drop(v6db)
        U.drop(v5db)


# --- constraints: check mode truthful, second run unchanged, rollback-1 exact ------------------------

def test_check_mode_gives_the_same_counts_and_writes_nothing(fresh_v6, source):
    before = U.checksums(fresh_v6)
    dry = U.run_engine(source, fresh_v6, commit=False, allow_rejects=True, app_role="parking_v6_app")
    assert U.checksums(fresh_v6) == before
    real = U.run_engine(source, fresh_v6, allow_rejects=True, app_role="parking_v6_app")
    assert dry["changed"] and real["changed"]
    assert dry["counts"] == real["counts"]
    assert dry["tenant_is_active_differences"] == real["tenant_is_active_differences"]


def test_rerun_changes_nothing(migrated, source):
    before = U.checksums(migrated["db"])
    again = U.run_engine(source, migrated["db"], allow_rejects=True, app_role="parking_v6_app")
    assert again["changed"] is False, again["counts"]
    assert U.checksums(migrated["db"]) == before


def test_rollback_removes_the_placeholder_and_restores_v6_exactly(fresh_v6, source):
    before = U.checksums(fresh_v6)
    U.run_engine(source, fresh_v6, allow_rejects=True, app_role="parking_v6_app")
    rc, res = U.module("parking_tenant_migration", {"target": U.params(fresh_v6), "state": "absent"})
    assert rc == 0 and res["changed"]
    assert U.checksums(fresh_v6) == before
    c = U.connect(fresh_v6, autocommit=True)
    assert scalar(c, "SELECT count(*) FROM users WHERE email = %s", (EMAIL,)) == 0
    c.close()
