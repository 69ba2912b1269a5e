# PRIVATE: the parking-migrate engine. Plain Python (no Ansible imports) so it is
# importable and unit-testable on its own; the modules in library/ are thin wrappers.
"""Database plumbing of the gateway import: its recorder, the lock, introspection, errors, closing."""
import uuid

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


class GatewayRun:
    """One import or undo: its run id, counts and current step (named in errors), its connections
    (rolled back unless committed, always closed) and its error handling: a ParkingError gets the
    run's progress, a database error becomes ImportFailed naming the step and `outcome`."""

    def __init__(self, action, outcome, counts, step):
        self.run_id = str(uuid.uuid4())
        self.action, self.outcome, self.counts = action, outcome, counts
        self.state = {"phase": step}
        self._conns, self._committed = [], []

    def open(self, connect, params, role):
        conn = connect(params, role)
        self._conns.append(conn)
        return conn

    def finish(self, conn, dry_run):
        """Roll back (check mode) or commit the transaction."""
        if dry_run:
            conn.rollback()
        else:
            conn.commit()
            self._committed.append(conn)

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        for conn in self._conns:
            if conn in self._committed:
                conn.close()
            else:
                _close(conn)
        if isinstance(exc, ParkingError):
            exc.progress = _progress(self.run_id, self.state["phase"], self.counts)
        elif exc is not None and isinstance(exc, _db_errors()):
            detail = " ".join(str(exc).split())
            err = ImportFailed(f"{self.action} failed during {self.state['phase']}: {detail}; the target "
                               f"transaction was rolled back, {self.outcome}")
            err.progress = _progress(self.run_id, self.state["phase"], self.counts)
            raise err from exc
        return False
