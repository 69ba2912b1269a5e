# PRIVATE: the parking-migrate engine. Plain Python (no Ansible imports) so it is
# importable and unit-testable on its own; the modules in library/ are thin wrappers.
"""Database plumbing of the gateway import: its recorder, the lock, introspection, errors, closing."""
from .. import connection, ledger, rollback
from ..errors import ConfigError, ParkingError, SchemaMismatch
from ..statements import Statements
from .sql import SQL_COLUMNS, SQL_LOCK_TIMEOUT, SQL_RLS, SQL_TABLE_SCHEMA

PHASE = rollback.GATEWAYS            # the ledger's runs.phase of gateway imports and their undo


class ImportFailed(ParkingError):
    """A database statement failed during the run (the transaction was rolled back)."""


def _session(conn, queries):
    """The import's recorder on one database: a cursor per statement (the ledger's calls take
    their own on ``.conn``), one log for both databases, each text logged once."""
    return Statements(conn, log=queries, unique=True, cursor_per_statement=True)


def _db_errors():
    return (connection.psycopg2.Error,) if connection.psycopg2 is not None else ()


def _close(conn):
    """Roll back whatever is open and close; never masks the error being raised."""
    if conn is None:
        return
    try:
        conn.rollback()
    except _db_errors():
        pass
    finally:
        conn.close()


def _lock(target):
    """The migration's one lock (ledger.lock), with a bound on waiting for table locks after it."""
    target.execute(SQL_LOCK_TIMEOUT)
    ledger.lock(target.conn.cursor())


def _live_columns(target, table):
    schema = target.scalar(SQL_TABLE_SCHEMA, (table,))
    if schema is None:
        raise SchemaMismatch(f"the target database has no table {table!r}; phase 1 needs the V6 "
                             f"schema in place", [{"table": table, "found": "missing"}])
    rows = target.all(SQL_COLUMNS, (schema, table))
    return [{"name": r[0], "data_type": r[1], "max_length": r[2], "nullable": r[3],
             "has_default": r[4]} for r in rows]


def _table_exists(target, table):
    return target.scalar(SQL_TABLE_SCHEMA, (table,)) is not None


def _check_rls(target, table):
    """Fail closed when row-level security would hide rows from this login (v6-schema.md §6)."""
    row = target.one(SQL_RLS, (table,))
    if row is None:
        return
    relname, enabled, forced, owner, bypass = row
    if enabled and not bypass and (not owner or forced):
        raise ConfigError(f"row-level security on {relname} applies to this login, so it would see "
                          f"only part of the rows (v6-schema.md §6); connect as the owner of the V6 "
                          f"tables (parking_user) or a superuser")


def _progress(run_id, phase, counts):
    return {"run_id": run_id, "phase": phase, "counts": dict(counts), "rolled_back": True}
