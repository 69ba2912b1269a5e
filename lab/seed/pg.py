"""PostgreSQL helpers: connections, SQL files, INSERT of row dicts, streaming COPY."""
import datetime as dt
import decimal
import hashlib
import pathlib
import uuid

import psycopg2
import psycopg2.extras

SQL_DIR = pathlib.Path(__file__).resolve().parent.parent / "sql"
LEGACY_MARKER = "-- @legacy-rows"
COPY_CHUNK = 1 << 16

psycopg2.extras.register_uuid()


class SeedError(Exception):
    """An error to report to the user as one line, then exit non-zero."""


def connect(params, dbname, user, password):
    """Open a connection with UTC session time zone; translate failures to SeedError."""
    try:
        conn = psycopg2.connect(dbname=dbname, user=user, password=password, connect_timeout=10,
                                options="-c TimeZone=UTC", **params)
    except psycopg2.OperationalError as exc:
        reason = " ".join(str(exc).split())
        raise SeedError(f"cannot connect to {params['host']}:{params['port']} database "
                        f"{dbname} as {user}: {reason}") from exc
    return conn


def sql_text(name):
    """Return the text of lab/sql/<name>."""
    return (SQL_DIR / name).read_text(encoding="utf-8")


def sql_sha256(name):
    """Return the sha256 hex digest of lab/sql/<name> and of the seed's data code: a database
    seeded by another version of either is 'other-parameters' (reseeded with --reset)."""
    digest = hashlib.sha256((SQL_DIR / name).read_bytes())
    for module in sorted(pathlib.Path(__file__).parent.glob("*.py")):
        digest.update(module.read_bytes())
    return digest.hexdigest()


def split_legacy(text):
    """Split a schema file at the line "-- @legacy-rows" into (before, after); after may be ''."""
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.strip() == LEGACY_MARKER:
            return "".join(lines[:index]), "".join(lines[index + 1:])
    return text, ""


def adapt(value):
    """Wrap dicts as JSON; leave every other Python value to psycopg2."""
    if isinstance(value, dict):
        return psycopg2.extras.Json(value)
    return value


def insert_rows(cur, table, rows):
    """INSERT ``rows`` (dicts sharing the same keys) into ``table``; return the row count."""
    if not rows:
        return 0
    columns = list(rows[0])
    for row in rows:
        if list(row) != columns:
            raise ValueError(f"{table}: rows do not share the same columns")
    column_list = ", ".join(f'"{c}"' for c in columns)
    values = [tuple(adapt(row[c]) for c in columns) for row in rows]
    psycopg2.extras.execute_values(
        cur, f"INSERT INTO {table} ({column_list}) VALUES %s", values, page_size=500)
    return len(rows)


def copy_value(value):
    """Render one value in COPY text format."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (int, float, decimal.Decimal, uuid.UUID)):
        return str(value)
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


class CopyStream:
    """A read()-able file over a generator of row tuples, for cursor.copy_expert.

    Rows are rendered lazily, one chunk at a time, so a table is never held in memory.
    """

    def __init__(self, rows):
        self._rows = iter(rows)
        self._buffer = b""
        self.count = 0

    def read(self, size=COPY_CHUNK):
        """Return up to about ``size`` bytes of COPY text ('' at the end)."""
        parts = [self._buffer]
        length = len(self._buffer)
        while length < size:
            row = next(self._rows, None)
            if row is None:
                break
            line = ("\t".join(copy_value(v) for v in row) + "\n").encode()
            parts.append(line)
            length += len(line)
            self.count += 1
        data = b"".join(parts)
        self._buffer = data[size:]
        return data[:size]



def copy_rows(cur, table, columns, rows):
    """COPY the row tuples produced by ``rows`` into ``table``; return the row count."""
    stream = CopyStream(rows)
    column_list = ", ".join(f'"{c}"' for c in columns)
    cur.copy_expert(f"COPY {table} ({column_list}) FROM STDIN", stream, size=COPY_CHUNK)
    return stream.count
