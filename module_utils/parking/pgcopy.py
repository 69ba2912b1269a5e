"""Streaming COPY between two connections, without holding rows in Python.

The source's `COPY (SELECT ...) TO STDOUT` runs in a thread writing into an OS pipe; the
target's `COPY ... FROM STDIN` reads the other end in CHUNK-byte reads. Memory stays at the
pipe's buffer size however large the table is.

Binary format (`binary_select`, then `stream(..., binary=True)`): the server skips every
column's text output and input (timestamps, uuids and floats cost most), about 40 % of a
COPY's time measured on the history tables. It is used only when it is exact: both servers of
the same major version, and every target column of a built-in base type. Each source column of
another type than its target column's is converted on the source through text (its output,
then the target type's input: what a text COPY does) so that the bytes are the target type's
own; the target applies its length and precision limits (typmod) on receipt, as it does for text.

A `Meter` given to `stream` counts the rows as they pass (one message per row from the source)
and writes a progress line every `every` seconds: rows so far, rows/s, and an ETA when the
caller knows about how many rows to expect.
"""
import os
import threading
import time

CHUNK = 1 << 16  # bytes per read of the target's COPY FROM STDIN (psycopg2's default is 8 KiB)


def _duration(seconds):
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Meter:
    """Rows of one COPY stream, rows/s and ETA, written to `log` (a function of one line).

    expected: about how many rows the stream will carry (None: no ETA). An estimate that turns
    out low shows no ETA once passed ("ETA unknown"), never a negative one.
    """

    def __init__(self, label, log, expected=None, every=5.0, clock=time.monotonic):
        self.label = label
        self.log = log
        self.expected = expected
        self.every = every
        self.clock = clock
        self.rows = 0
        self.t0 = clock()
        self.next_at = self.t0 + every

    def add(self, rows):
        self.rows += rows
        now = self.clock()
        if now >= self.next_at:
            self.next_at = now + self.every
            self.log(self.line(now))

    def rate(self, now=None):
        elapsed = (self.clock() if now is None else now) - self.t0
        return self.rows / elapsed if elapsed > 0 else 0.0

    def done(self, rows):
        """The last line: the rows the target took, the time, the mean rate."""
        now = self.clock()
        self.rows = rows
        return f"{self.label}: {rows:,} rows in {now - self.t0:.1f}s ({self.rate(now):,.0f} rows/s)"

    def line(self, now=None):
        now = self.clock() if now is None else now
        rate = self.rate(now)
        text = f"{self.label}: {self.rows:,} rows"
        if self.expected:
            text += f" of ~{self.expected:,}"
        text += f", {rate:,.0f} rows/s"
        if self.expected and rate > 0:
            left = self.expected - self.rows
            text += f", ETA {_duration(left / rate)}" if left > 0 else ", ETA unknown (more rows than estimated)"
        return text


class _Counting:
    """The source side's file: psycopg2 writes one row per call (COPY's messages); every
    EVERY_ROWS rows the meter is told (a progress line when its time has come)."""
    EVERY_ROWS = 4096

    def __init__(self, out, meter):
        self._write = out.write
        self._meter = meter
        self._n = 0

    def write(self, data):
        self._n += 1
        if self._n == self.EVERY_ROWS:
            self._meter.add(self._n)
            self._n = 0
        return self._write(data)

    def flush(self):
        self._meter.rows += self._n
        self._n = 0


class _PipeReader:
    def __init__(self, fd):
        self._f = os.fdopen(fd, "rb", buffering=CHUNK)

    def read(self, size=-1):
        return self._f.read(size)

    def readline(self, size=-1):
        return self._f.readline(size)

    def close(self):
        self._f.close()


def stream(source_cur, select_sql, target_cur, copy_in_sql, meter=None, binary=False):
    """COPY rows of `select_sql` on the source into `copy_in_sql` on the target.

    Returns the number of rows the target received. Errors on either side are raised here
    (the other side is unblocked by closing the pipe). `meter`: a Meter counting the rows.
    binary: both sides in binary format (the select typed by binary_select).
    """
    rfd, wfd = os.pipe()
    reader = _PipeReader(rfd)
    failure = []
    fmt = " WITH (FORMAT binary)" if binary else ""

    def produce():
        try:
            with os.fdopen(wfd, "wb", buffering=CHUNK) as out:
                sink = out if meter is None else _Counting(out, meter)
                source_cur.copy_expert(f"COPY ({select_sql}) TO STDOUT{fmt}", sink)
                if meter is not None:
                    sink.flush()
        except BrokenPipeError:
            pass  # the target stopped reading: its own error is the one reported
        except Exception as exc:  # re-raised in the caller's thread
            failure.append(exc)

    producer = threading.Thread(target=produce, name="parking-copy-out", daemon=True)
    producer.start()
    try:
        target_cur.copy_expert(copy_in_sql + fmt, reader, size=CHUNK)
    finally:
        reader.close()
        producer.join()
    if failure:
        raise failure[0]
    return target_cur.rowcount


# --------------------------------------------------------------------------------------------
# binary format: when it is exact, and the select that makes it so
# --------------------------------------------------------------------------------------------

FIRST_NORMAL_OID = 16384  # below: the types initdb creates (built-in), the same in every database

TARGET_TYPES_SQL = """
SELECT a.attname, a.atttypid, format_type(a.atttypid, NULL),
       a.atttypid < %(first)s AND t.typtype = 'b' AND t.typcategory <> 'A'
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = %(tbl)s::regclass AND a.attname = ANY(%(names)s) AND a.attnum > 0 AND NOT a.attisdropped"""

MAJOR_SQL = "SELECT current_setting('server_version_num')::int / 10000"


def casts(source_oids, target, same_major):
    """Per column, the cast that gives the source value the target type's binary form ('' when
    the types are the same), or None when binary is not exact: another major version, a column
    count that differs, a target type that is not a built-in base type (an enum, a domain, an
    array, a type of an extension: their binary forms name OIDs or differ between databases).
    target: [(type oid, type name, built-in base type)] in column order."""
    if not same_major or len(source_oids) != len(target):
        return None
    out = []
    for oid, (t_oid, t_name, builtin) in zip(source_oids, target):
        if not builtin:
            return None
        out.append("" if oid == t_oid else f"::text::{t_name}")
    return out


def typed_select(select_sql, cast_list):
    """`select_sql` with each output column cast as `cast_list` says (for a binary COPY)."""
    cols = [f"c{i}" for i in range(1, len(cast_list) + 1)]
    items = ", ".join(f"x.{c}{cast}" for c, cast in zip(cols, cast_list))
    return f"SELECT {items} FROM ({select_sql}) x({', '.join(cols)})"


def binary_select(source_cur, target_cur, select_sql, table, columns):
    """The select to stream in binary into `table` (`columns`: its column names, in the
    select's order), or None when binary would not be exact (then stream text)."""
    source_cur.execute(f"SELECT * FROM ({select_sql}) x LIMIT 0")
    source_oids = [d.type_code for d in source_cur.description]
    target_cur.execute(TARGET_TYPES_SQL, {"first": FIRST_NORMAL_OID, "tbl": table, "names": list(columns)})
    found = {name: (oid, type_name, builtin) for name, oid, type_name, builtin in target_cur.fetchall()}
    if any(c not in found for c in columns):
        return None
    source_cur.execute(MAJOR_SQL)
    src_major = source_cur.fetchone()[0]
    target_cur.execute(MAJOR_SQL)
    cast_list = casts(source_oids, [found[c] for c in columns], src_major == target_cur.fetchone()[0])
    return None if cast_list is None else typed_select(select_sql, cast_list)
