"""Streaming COPY between two connections, without holding rows in Python.

The source's `COPY (SELECT ...) TO STDOUT` runs in a thread writing into an OS pipe; the
target's `COPY ... FROM STDIN` reads the other end. Memory stays at the pipe's buffer size
however large the table is.
"""
import os
import threading


class _PipeReader:
    def __init__(self, fd):
        self._f = os.fdopen(fd, "rb", buffering=1 << 16)

    def read(self, size=-1):
        return self._f.read(size)

    def readline(self, size=-1):
        return self._f.readline(size)

    def close(self):
        self._f.close()


def stream(source_cur, select_sql, target_cur, copy_in_sql, progress=None):
    """COPY rows of `select_sql` on the source into `copy_in_sql` on the target.

    Returns the number of rows the target received. Errors on either side are raised here
    (the other side is unblocked by closing the pipe).
    """
    rfd, wfd = os.pipe()
    reader = _PipeReader(rfd)
    failure = []

    def produce():
        try:
            with os.fdopen(wfd, "wb", buffering=1 << 16) as out:
                source_cur.copy_expert(f"COPY ({select_sql}) TO STDOUT", out)
        except BrokenPipeError:
            pass  # the target stopped reading: its own error is the one reported
        except Exception as exc:  # re-raised in the caller's thread
            failure.append(exc)

    producer = threading.Thread(target=produce, name="parking-copy-out", daemon=True)
    producer.start()
    try:
        target_cur.copy_expert(copy_in_sql, reader)
    finally:
        reader.close()
        producer.join()
    if failure:
        raise failure[0]
    return target_cur.rowcount
