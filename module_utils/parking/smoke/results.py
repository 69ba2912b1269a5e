"""Results of the smoke checks: how a check fails (CheckFailed), one check's result, the run's
summary and failure message, and scrub, which keeps the password and the token out of them.

Part of the package module_utils/parking/smoke (see its __init__). Plain Python.
"""
from ..errors import ParkingError
from .options import REDACTED


class CheckFailed(ParkingError):
    """One check found the platform not as expected; the message is the check's detail."""

    def __init__(self, message, facts=None):
        super().__init__(message)
        self.facts = facts or {}


def scrub(value, secrets):
    """``value`` (any JSON-like structure) with every secret string replaced by ********."""
    secrets = sorted({s for s in secrets if isinstance(s, str) and len(s) >= 4}, key=len, reverse=True)
    if not secrets:
        return value

    def walk(v):
        if isinstance(v, str):
            for s in secrets:
                if s in v:
                    v = v.replace(s, REDACTED)
            return v
        if isinstance(v, dict):
            return {walk(k): walk(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x) for x in v]
        return v
    return walk(value)


def check_result(name, passed, detail, ms, facts=None, skipped=False):
    return {"name": name, "passed": None if skipped else bool(passed), "skipped": skipped,
            "detail": detail, "ms": None if ms is None else round(ms, 1), "facts": facts or {}}


def summarise(checks, secrets=(), extra=None):
    """The engine's result: checks, names of the failed and skipped ones, passed overall."""
    checks = scrub(list(checks), secrets)
    failed = [c["name"] for c in checks if not c["skipped"] and not c["passed"]]
    skipped = [c["name"] for c in checks if c["skipped"]]
    out = {"passed": not failed, "checks": checks,
           "failed_checks": failed, "skipped_checks": skipped}
    out.update(scrub(extra or {}, secrets))
    return out


def failure_message(result):
    parts = [f"{c['name']} ({c['detail']})" for c in result["checks"] if c["name"] in result["failed_checks"]]
    return f"smoke checks FAILED, {len(parts)} of {len(result['checks'])}: " + "; ".join(parts)


def _short(body, limit=200):
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else str(body)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
