"""Make V6's row-level security effective for a non-owner application role.

V6's policies name only parking_user, which owns the tables (FORCE is off), so they never
filter anything, and any other role sees nothing (reference/v5-to-v6-mapping.md §5 I 44-46).
Phase 1 creates (if missing) an application role, grants it table access, enables RLS on the
tenant-scoped tables and adds one policy per table for that role. The policy reads the tenant
with NULLIF so the '' left behind by SET LOCAL does not break the uuid cast (gotcha 46).
Every change is recorded in the ledger with the SQL that undoes it (rollback-1).

The role is an inventory choice for a V6 that sets the tenant context on every transaction;
the real V6 at ea5b72f never does (docs/v6-contract.md) and connects as the owner. For such a
V6 the identity tables are isolated too: ``users``, ``user_memberships`` and ``tenants`` are
visible only for the tenant in context, the user in context (``app.current_user_id``), the
email being logged in (``app.login_email``, the one lookup made before a user is known) or a
platform admin - so one tenant's session cannot read another tenant's password hashes.
"""
from . import quote
from .errors import ConfigError
from .sqlfrag import LEDGER as L

# tenant-scoped tables the application reads or writes (the real V6 also queues downlinks and
# keeps API keys per tenant): one tenant_id policy each.
RLS_TABLES = ("sites", "spaces", "sensor_devices", "display_devices", "gateways", "reservations",
              "device_assignments", "sensor_readings", "downlink_queue", "api_keys")
POLICY = "parking_migrate_tenant_isolation"
_TENANT = "NULLIF(current_setting('app.current_tenant_id', true), '')::uuid"
_USER = "NULLIF(current_setting('app.current_user_id', true), '')::uuid"
_LOGIN = "lower(NULLIF(current_setting('app.login_email', true), ''))"
_ADMIN = "COALESCE(NULLIF(current_setting('app.is_platform_admin', true), '')::boolean, false)"
CONDITION = f"tenant_id = {_TENANT} OR {_ADMIN}"
# identity tables: no tenant_id of their own. No policy refers back to a table whose policy
# refers to it (PostgreSQL rejects recursive policies): users -> user_memberships -> settings only.
IDENTITY_CONDITIONS = {
    "user_memberships": f"tenant_id = {_TENANT} OR user_id = {_USER} OR {_ADMIN}",
    "tenants": (f"id = {_TENANT} OR {_ADMIN} OR id IN (SELECT m.tenant_id FROM public.user_memberships m"
                f" WHERE m.user_id = {_USER})"),
    "users": (f"id = {_USER} OR lower(email) = {_LOGIN} OR {_ADMIN} OR id IN (SELECT m.user_id FROM"
              f" public.user_memberships m WHERE m.tenant_id = {_TENANT})"),
}


def policies():
    """(table, condition) of every policy phase 1 makes, in creation order."""
    return [(t, CONDITION) for t in RLS_TABLES] + list(IDENTITY_CONDITIONS.items())


def record(run, kind, name, undo_sql):
    run.execute(f"INSERT INTO {L}.objects (run_id, kind, name, undo_sql) VALUES (%(run)s, %(k)s, %(n)s, %(u)s)",
                dict(run.params, k=kind, n=name, u=undo_sql))
    run.count("rls", "created", 1)


SCRAM_ITERATIONS = 4096  # PostgreSQL's scram_iterations default


def _scram_keys(password, salt, iterations):
    import hashlib
    import hmac
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest(), server_key


def scram_verifier(password, salt=None, iterations=SCRAM_ITERATIONS):
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677):
    SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, all base64. Sent in ALTER ROLE
    instead of the password, the server stores it as is: the clear password never reaches the
    server, its statement log or pg_stat_activity. (ASCII passwords; PostgreSQL's SASLprep leaves
    them unchanged.)"""
    import base64
    import os
    salt = os.urandom(16) if salt is None else salt
    stored_key, server_key = _scram_keys(password, salt, iterations)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${int(iterations)}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def verifier_matches(stored, password):
    """Whether a stored SCRAM-SHA-256 verifier is the one of `password`."""
    import base64
    import hmac
    if not stored or not stored.startswith("SCRAM-SHA-256$"):
        return False
    try:
        head, keys = stored[len("SCRAM-SHA-256$"):].split("$")
        iterations, salt = head.split(":")
        stored_key = keys.split(":")[0]
        mine, _ = _scram_keys(password, base64.b64decode(salt), int(iterations))
        return hmac.compare_digest(base64.b64encode(mine).decode(), stored_key)
    except (ValueError, TypeError):
        return False


def password_matches(cur, role, password):
    """Whether `role`'s stored SCRAM-SHA-256 verifier matches `password` (needs superuser to read
    pg_authid; False when it cannot tell, so the password is then set)."""
    # reading pg_authid needs a superuser: a refusal must not abort the run's transaction
    cur.execute("SAVEPOINT parking_read_authid")
    try:
        cur.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))
        row = cur.fetchone()
        cur.execute("RELEASE SAVEPOINT parking_read_authid")
    except Exception:  # the driver's error (psycopg2 is imported by connection.py only)
        cur.execute("ROLLBACK TO SAVEPOINT parking_read_authid")
        return False
    return verifier_matches(row[0] if row else None, password)


def ensure(run, role, password=None):
    """Idempotent: only what is missing is created; returns nothing, counts under 'rls'."""
    r = quote.ident(run.cur, role)
    db = run.scalar("SELECT current_database()")
    if not run.scalar("SELECT count(*) FROM pg_roles WHERE rolname = %(r)s", {"r": role}):
        run.execute(f"CREATE ROLE {r} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE")
        record(run, "role", role, f"DROP OWNED BY {r}; DROP ROLE {r}")
    if password and not password_matches(run.cur, role, password):
        # the SCRAM verifier, not the password: nothing in clear reaches the server's logs
        run.execute(f"ALTER ROLE {r} PASSWORD %(p)s", {"p": scram_verifier(password)},
                    shown=f"ALTER ROLE {r} PASSWORD 'SCRAM-SHA-256$...'")
        run.count("rls", "password_set", 1)
    if run.scalar("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = %(r)s", {"r": role}):
        raise ConfigError(f"application role {role} is a superuser or has BYPASSRLS: row-level security can "
                          "never apply to it; choose another app_role")
    if not run.scalar("SELECT has_database_privilege(%(r)s, %(d)s, 'CONNECT')", {"r": role, "d": db}):
        run.execute(f"GRANT CONNECT ON DATABASE {quote.ident(run.cur, db)} TO {r}")
        record(run, "grant", f"connect {db}", f"REVOKE CONNECT ON DATABASE {quote.ident(run.cur, db)} FROM {r}")
    if not run.scalar("SELECT has_schema_privilege(%(r)s, 'public', 'USAGE')", {"r": role}):
        run.execute(f"GRANT USAGE ON SCHEMA public TO {r}")
        record(run, "grant", "usage public", f"REVOKE USAGE ON SCHEMA public FROM {r}")
    for (table,) in run.rows("""
            SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
              AND NOT has_table_privilege(%(r)s, c.oid, 'SELECT, INSERT, UPDATE, DELETE') ORDER BY 1""",
                             {"r": role}):
        run.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON public.{table} TO {r}")
        record(run, "grant", f"table {table}", f"REVOKE SELECT, INSERT, UPDATE, DELETE ON public.{table} FROM {r}")
    for (seq,) in run.rows("""
            SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind = 'S'
              AND NOT (CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(%(r)s, c.oid, 'USAGE')
                            ELSE true END) ORDER BY 1""", {"r": role}):
        run.execute(f"GRANT USAGE, SELECT ON SEQUENCE public.{seq} TO {r}")
        record(run, "grant", f"sequence {seq}", f"REVOKE USAGE, SELECT ON SEQUENCE public.{seq} FROM {r}")
    for table, condition in policies():
        if not run.scalar("SELECT to_regclass(%(t)s) IS NOT NULL", {"t": f"public.{table}"}):
            continue
        if not run.scalar("SELECT relrowsecurity FROM pg_class WHERE oid = %(t)s::regclass", {"t": f"public.{table}"}):
            run.execute(f"ALTER TABLE public.{table} ENABLE ROW LEVEL SECURITY")
            record(run, "rls", table, f"ALTER TABLE public.{table} DISABLE ROW LEVEL SECURITY")
        exists = run.scalar("SELECT count(*) FROM pg_policies WHERE schemaname = 'public' AND tablename = %(t)s "
                            "AND policyname = %(p)s", {"t": table, "p": POLICY})
        if not exists:
            run.execute(f"CREATE POLICY {POLICY} ON public.{table} FOR ALL TO {r} "
                        f"USING ({condition}) WITH CHECK ({condition})")
            record(run, "policy", f"{table}.{POLICY}", f"DROP POLICY IF EXISTS {POLICY} ON public.{table}")
