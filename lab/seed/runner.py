"""Seed the four lab databases: roles, per-database state check, create, one transaction each."""
import dataclasses
import datetime as dt
import time
from typing import Callable

import psycopg2

from . import chirpstack, edge_cases, platform, v5, v6
from .pg import SeedError, connect, copy_rows, insert_rows, split_legacy, sql_sha256, sql_text
from .world import World

OWNER = "parking_user"
APP_ROLE = "parking_app"
ADVISORY_LOCK_KEY = 5_543_200  # any constant: serialises concurrent seed runs on one server


def _nothing(_world):
    return []


@dataclasses.dataclass(frozen=True)
class DatabasePlan:
    """What goes into one database: its schema file and the functions that give its rows."""
    name: str
    schema: str
    tables: Callable
    legacy_tables: Callable = _nothing
    streams: Callable = _nothing
    sequences: tuple = ()
    with_edge_cases: bool = False


PLANS = (
    DatabasePlan("chirpstack", "chirpstack.sql", chirpstack.tables),
    DatabasePlan("parking_v5", "parking_v5.sql", v5.tables, legacy_tables=v5.legacy_tables,
                 streams=v5.history_streams, sequences=v5.SEQUENCES, with_edge_cases=True),
    DatabasePlan("parking_v6", "parking_v6.sql", v6.tables),
    DatabasePlan("parking_platform", "parking_platform.sql", platform.tables,
                 sequences=platform.SEQUENCES),
)

EMPTY_DB_QUERY = """
SELECT
  (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e'))
+ (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'public'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                      AND d.objid = p.oid AND d.deptype = 'e'))
+ (SELECT count(*) FROM pg_namespace
    WHERE nspname NOT IN ('public', 'information_schema') AND nspname NOT LIKE 'pg\\_%')
"""

COUNT_TABLES_QUERY = """
SELECT table_schema, table_name FROM information_schema.tables
WHERE table_type = 'BASE TABLE'
  AND table_schema NOT IN ('pg_catalog', 'information_schema', 'lab_meta')
ORDER BY table_schema, table_name
"""


@dataclasses.dataclass
class Options:
    """Everything the run needs from the command line."""
    host: str
    port: int
    admin_user: str
    admin_password: str
    owner_password: str
    app_password: str | None
    seed: int
    scale: int
    anchor: object
    integration_url: str
    reset: bool
    db_suffix: str = ""

    @property
    def params(self):
        return {"host": self.host, "port": self.port}

    def dbname(self, plan):
        return plan.name + self.db_suffix


def run(options):
    """Seed what is missing; return the result dict printed by the CLI."""
    started = time.monotonic()
    admin = connect(options.params, "postgres", options.admin_user, options.admin_password)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        roles_changed = ensure_roles(admin, options)
        if options.reset:
            for plan in PLANS:
                drop_database(admin, options.dbname(plan))
        if options.anchor is None:
            # no date asked for: keep the one the lab was seeded with (a lab seeded yesterday is
            # still the same lab after midnight), else today
            options = dataclasses.replace(options, anchor=stored_anchor(admin, options)
                                          or dt.datetime.now(dt.timezone.utc).date())
        states = {plan.name: database_state(admin, options, plan) for plan in PLANS}
        refuse_foreign_states(options, states)
        todo = [plan for plan in PLANS if states[plan.name] != "seeded"]
        counts = {}
        if todo:
            world = World(options.seed, options.scale, options.anchor, options.integration_url)
            for plan in todo:
                create_database(admin, options.dbname(plan))
                counts[options.dbname(plan)] = seed_database(options, plan, world)
    finally:
        admin.close()
    result = {
        "changed": bool(todo) or roles_changed or options.reset,
        "roles_changed": roles_changed,
        "databases": {options.dbname(p): ("seeded" if p in todo else "unchanged") for p in PLANS},
        "seed": options.seed, "scale": options.scale, "anchor": options.anchor.isoformat(),
        "seconds": round(time.monotonic() - started, 2),
    }
    if counts:
        result["counts"] = counts
    return result


# --- roles -----------------------------------------------------------------------------------

def _role_snapshot(cur):
    cur.execute("SELECT rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls "
                "FROM pg_roles WHERE rolname IN (%s, %s) ORDER BY rolname", (OWNER, APP_ROLE))
    return cur.fetchall()


def ensure_roles(admin, options):
    """Apply roles.sql, set the passwords that do not already work; True if anything changed."""
    with admin.cursor() as cur:
        before = _role_snapshot(cur)
        cur.execute(sql_text("roles.sql"))
        changed = _role_snapshot(cur) != before
        passwords = [(OWNER, options.owner_password), (APP_ROLE, options.app_password)]
        for role, password in passwords:
            if password is not None and not _password_works(options, role, password):
                cur.execute(f"ALTER ROLE {role} PASSWORD %s", (password,))
                changed = True
    return changed


def _password_works(options, role, password):
    try:
        conn = psycopg2.connect(dbname="postgres", user=role, password=password,
                                connect_timeout=10, **options.params)
    except psycopg2.OperationalError:
        return False
    conn.close()
    return True


# --- database lifecycle ----------------------------------------------------------------------

def _database_exists(admin, dbname):
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
        return cur.fetchone() is not None


def drop_database(admin, dbname):
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def create_database(admin, dbname):
    """Create ``dbname`` owned by parking_user, or hand an existing empty one to parking_user."""
    with admin.cursor() as cur:
        if _database_exists(admin, dbname):
            cur.execute(f'ALTER DATABASE "{dbname}" OWNER TO {OWNER}')
        else:
            cur.execute(f'CREATE DATABASE "{dbname}" OWNER {OWNER}')


def stored_anchor(admin, options):
    """The anchor date an existing lab database was seeded with (None when none was)."""
    for plan in PLANS:
        dbname = options.dbname(plan)
        if not _database_exists(admin, dbname):
            continue
        conn = connect(options.params, dbname, options.admin_user, options.admin_password)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT to_regclass('lab_meta.seed_state') IS NOT NULL")
                if cur.fetchone()[0]:
                    cur.execute("SELECT anchor FROM lab_meta.seed_state WHERE db = %s", (plan.name,))
                    row = cur.fetchone()
                    if row:
                        return row[0]
        finally:
            conn.close()
    return None


def database_state(admin, options, plan):
    """Return 'missing', 'empty', 'seeded', 'other-parameters' or 'foreign' for one database."""
    dbname = options.dbname(plan)
    if not _database_exists(admin, dbname):
        return "missing"
    conn = connect(options.params, dbname, options.admin_user, options.admin_password)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('lab_meta.seed_state') IS NOT NULL")
            if cur.fetchone()[0]:
                cur.execute("SELECT seed, scale, anchor, schema_sha256 FROM lab_meta.seed_state "
                            "WHERE db = %s", (plan.name,))
                row = cur.fetchone()
                wanted = (options.seed, options.scale, options.anchor, sql_sha256(plan.schema))
                return "seeded" if row == wanted else "other-parameters"
            cur.execute(EMPTY_DB_QUERY)
            return "empty" if cur.fetchone()[0] == 0 else "foreign"
    finally:
        conn.close()


def refuse_foreign_states(options, states):
    """Raise SeedError when a database holds data this run must not overwrite."""
    for plan in PLANS:
        state = states[plan.name]
        dbname = options.dbname(plan)
        if state == "other-parameters":
            raise SeedError(f"database {dbname} was seeded with other parameters or another "
                            f"schema version; rerun with --reset to drop and reseed the lab "
                            f"databases")
        if state == "foreign":
            raise SeedError(f"database {dbname} exists and is not empty but was not seeded by "
                            f"lab/seed.py; rerun with --reset to drop and reseed the lab databases")


# --- seeding ---------------------------------------------------------------------------------

def seed_database(options, plan, world):
    """Schema + rows + ledger of one database in ONE transaction; return {table: rows}."""
    dbname = options.dbname(plan)
    conn = connect(options.params, dbname, OWNER, options.owner_password)
    try:
        with conn.cursor() as cur:
            load(cur, plan, world)
            counts = count_rows(cur)
        conn.commit()
    except psycopg2.Error as exc:
        conn.rollback()
        message = " ".join(str(exc).split())
        raise SeedError(f"{dbname}: seeding failed and was rolled back: {message}") from exc
    finally:
        conn.close()
    return counts


def load(cur, plan, world):
    """Run the schema file and insert every row of ``plan``."""
    before, after = split_legacy(sql_text(plan.schema))
    cur.execute(before)
    for table, rows in plan.legacy_tables(world):
        insert_rows(cur, table, rows)
    if after.strip():
        cur.execute(after)
    for table, rows in plan.tables(world):
        insert_rows(cur, table, rows)
    for table, columns, rows in plan.streams(world):
        copy_rows(cur, table, columns, rows)
    for table, column in plan.sequences:
        cur.execute(f"SELECT setval(pg_get_serial_sequence(%s, %s), "
                    f"coalesce((SELECT max({column}) FROM {table}), 0) + 1, false)",
                    (table, column))
    cur.execute(sql_text("lab_meta.sql"))
    if plan.with_edge_cases:
        cur.execute(edge_cases.DDL)
        insert_rows(cur, "lab_meta.edge_cases", edge_cases.rows())
    cur.execute("INSERT INTO lab_meta.seed_state (db, seed, scale, anchor, schema_sha256) "
                "VALUES (%s, %s, %s, %s, %s)",
                (plan.name, world.seed, world.scale, world.anchor.date(), sql_sha256(plan.schema)))
    cur.execute("ANALYZE")


def count_rows(cur):
    """Return {table: row count} for every base table outside lab_meta."""
    cur.execute(COUNT_TABLES_QUERY)
    counts = {}
    for schema, table in cur.fetchall():
        name = table if schema == "public" else f"{schema}.{table}"
        cur.execute(f'SELECT count(*) FROM "{schema}"."{table}"')
        counts[name] = cur.fetchone()[0]
    return counts
