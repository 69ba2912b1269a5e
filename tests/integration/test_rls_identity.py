"""Phase 1's policies for the RLS application role (parking_v6_app), on scratch copies: every
tenant table the real V6 touches (downlink_queue included) and the identity tables. With the
role, a tenant's session cannot read another tenant's users, memberships or password hashes;
the login lookup sees only the email being logged in (docs/v6-contract.md, section 3)."""
import psycopg2
import pytest

import p1util as U
from parking import rls

SUFFIX = "_p1"


@pytest.fixture(scope="module")
def v6():
    U.seeded(SUFFIX)
    db = U.clone_v6(SUFFIX, "parking_v6_rls_identity")
    U.run_engine(f"parking_v5{SUFFIX}", db, allow_rejects=True, app_role="parking_v6_app")
    yield db
    U.drop(db)


def as_app(db, settings):
    """Rows seen as the application role with these session settings (SET ROLE in the owner's
    transaction, as the gate does); returns a function running one query."""
    conn = U.connect(db)

    def run(sql, params=None):
        with conn.cursor() as cur:
            cur.execute("SET LOCAL ROLE parking_v6_app")
            for name, value in settings.items():
                cur.execute("SELECT set_config(%s, %s, true)", (name, value))
            cur.execute(sql, params)
            rows = cur.fetchall()
        conn.rollback()
        return rows
    return run, conn




def test_every_tenant_table_of_the_real_v6_has_the_policy(v6):
    have = {t for (t,) in U.rows(v6, "SELECT tablename FROM pg_policies WHERE policyname = %s", (rls.POLICY,))}
    present = {t for (t,) in U.rows(v6, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"downlink_queue", "users", "user_memberships", "tenants"} <= have
    assert {t for t in rls.RLS_TABLES if t in present} <= have


def test_a_tenant_session_reads_only_its_own_users_and_memberships(v6):
    tenant, = U.rows(v6, """SELECT m.tenant_id::text FROM user_memberships m GROUP BY 1
                           HAVING count(*) >= 1 ORDER BY count(*) DESC LIMIT 1""")[0]
    run, conn = as_app(v6, {"app.current_tenant_id": tenant})
    try:
        users = {u for (u,) in run("SELECT id::text FROM users")}
        members = {u for (u,) in U.rows(v6, "SELECT user_id::text FROM user_memberships WHERE tenant_id = %s",
                                       (tenant,))}
        assert users == members and users, "exactly the tenant's members"
        assert {t for (t,) in run("SELECT DISTINCT tenant_id::text FROM user_memberships")} == {tenant}
        assert {t for (t,) in run("SELECT id::text FROM tenants")} == {tenant}
        assert run("SELECT count(*) FROM downlink_queue WHERE tenant_id <> %s::uuid", (tenant,)) == [(0,)]
    finally:
        conn.close()


def test_no_context_reads_nothing_and_a_login_lookup_sees_one_email(v6):
    email, user = U.rows(v6, "SELECT email, id::text FROM users ORDER BY email LIMIT 1")[0]
    run, conn = as_app(v6, {})
    try:
        assert run("SELECT count(*) FROM users") == [(0,)]
        assert run("SELECT count(*) FROM user_memberships") == [(0,)]
        assert run("SELECT count(*) FROM tenants") == [(0,)]
    finally:
        conn.close()
    run, conn = as_app(v6, {"app.login_email": email.upper()})
    try:
        assert run("SELECT id::text FROM users") == [(user,)]
    finally:
        conn.close()
    run, conn = as_app(v6, {"app.current_user_id": user})
    try:
        mine = {t for (t,) in U.rows(v6, "SELECT tenant_id::text FROM user_memberships WHERE user_id = %s", (user,))}
        assert {t for (t,) in run("SELECT tenant_id::text FROM user_memberships")} == mine
        assert {t for (t,) in run("SELECT id::text FROM tenants")} == mine
    finally:
        conn.close()


def test_the_role_cannot_write_into_another_tenant(v6):
    tenants = [t for (t,) in U.rows(v6, "SELECT id::text FROM tenants ORDER BY 1 LIMIT 2")]
    run, conn = as_app(v6, {"app.current_tenant_id": tenants[0]})
    try:
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            run("INSERT INTO downlink_queue (tenant_id, dev_eui, command_type) VALUES (%s, '0000000000000001', 'x')"
                " RETURNING id", (tenants[1],))
    finally:
        conn.close()


def test_password_check_without_superuser_keeps_the_transaction_usable(lab):
    """rls.password_matches reads pg_authid, which only a superuser may: for a non-superuser owner
    the refusal is answered False inside a savepoint, and the run's transaction goes on."""
    U.admin_sql("DROP ROLE IF EXISTS parking_t_plain",
                "CREATE ROLE parking_t_plain LOGIN PASSWORD 'plain-secret' NOSUPERUSER")
    try:
        p = U.lab_pg_params()
        conn = psycopg2.connect(dbname="postgres", host=p["host"], port=p["port"], user="parking_t_plain",
                                password="plain-secret")
        try:
            cur = conn.cursor()
            cur.execute("SELECT 1")
            assert rls.password_matches(cur, "parking_t_plain", "plain-secret") is False
            cur.execute("SELECT 2")  # would raise "current transaction is aborted" without the savepoint
            assert cur.fetchone() == (2,)
        finally:
            conn.close()
    finally:
        U.admin_sql("DROP ROLE IF EXISTS parking_t_plain")
