"""Run an engine function in one target transaction: commit it, or roll it back in check mode.

Shared by the modules so each stays thin. Connections are closed whatever happens; a failed
run is rolled back (nothing half-written) and recorded in the ledger on its own.
"""
import os
import re
import time

from . import ledger
from .connection import connect
from .errors import ConfigError

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def require_uuid(value, option):
    if not UUID_RE.match(str(value or "")):
        raise ConfigError(f"{option} must be a UUID like 00000000-0000-0000-0000-000000000000, got {value!r}")
    return str(value).lower()


class Progress:
    """Progress lines with timestamps, to a file an operator can `tail -f` (optional)."""

    def __init__(self, path=None):
        self.path = path
        self.lines = []

    def __call__(self, msg):
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        self.lines.append(line)
        if self.path:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            with open(self.path, "a") as f:
                f.write(line + "\n")


def transactional(target_params, fn, check_mode, sources=(), phase="phase1", mode="full", state="present"):
    """Connect the target (and named sources), run fn(target, *sources, run_id), commit or roll back.

    sources: sequence of (params, role) opened read-only.
    A result with "lock_acquired_monotonic" (migrate) gets "lock_held_seconds" measured up to the
    commit or rollback, when the transaction's advisory lock is released.
    """
    run_id = ledger.new_run_id()
    opened = []
    tgt = connect(target_params, "target")
    opened.append(tgt)
    try:
        srcs = []
        for params, role in sources:
            conn = connect(params, role)
            opened.append(conn)
            srcs.append(conn)
        try:
            result = fn(tgt, *srcs, run_id)
        except Exception as exc:
            tgt.rollback()
            ledger.record_failure(tgt, run_id, phase, mode, state, str(exc))
            exc.run_id = run_id
            raise
        locked_at = result.pop("lock_acquired_monotonic", None)
        if check_mode:
            tgt.rollback()
        else:
            tgt.commit()
        if locked_at is not None:  # the advisory lock goes with the transaction: held until now
            result["lock_held_seconds"] = round(time.monotonic() - locked_at, 3)
        result["run_id"] = run_id
        return result
    finally:
        for conn in opened:
            conn.close()
