"""Pure parts of the phase-2 readiness gate (module_utils/parking/readiness/)."""
import base64
import hashlib
import hmac
import json

import pytest

from parking import readiness, smoke
from parking.errors import ConfigError

SECRET = "k" * 40


def claims(token):
    head, body, sig = token.split(".")
    want = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)) == want, "HS256 signature"
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def test_access_token_has_the_claims_v6_login_issues():
    c = claims(readiness.access_token(SECRET, "u-1", "t-1", "a@b.c", "owner", 10, now=1000))
    assert c == {"sub": "u-1", "tenant_id": "t-1", "email": "a@b.c", "role": "owner", "exp": 1600, "iat": 1000,
                 "type": "access"}


def test_one_user_per_tenant_highest_role_then_oldest():
    rows = [dict(tenant_id="t1", slug="b", user_id="u2", role="viewer", created_at="2026-01-01"),
            dict(tenant_id="t1", slug="b", user_id="u3", role="owner", created_at="2026-02-01"),
            dict(tenant_id="t1", slug="b", user_id="u1", role="owner", created_at="2026-03-01"),
            dict(tenant_id="t2", slug="a", user_id="u4", role="operator", created_at="2026-01-01")]
    picked = readiness.pick_users(rows)
    assert [(u["slug"], u["user_id"]) for u in picked] == [("a", "u4"), ("b", "u3")]


def test_compare_ids_names_missing_and_foreign_rows():
    assert readiness.compare_ids("spaces", {"a", "b", "d"}, {"a", "b"}, optional={"d"}) == []
    problems = readiness.compare_ids("spaces", {"a", "x"}, {"a", "b", "c"})
    assert problems[0].startswith("spaces: 2 of 3 missing (e.g. b, c)")
    assert problems[1].startswith("spaces: 1 not of this tenant (e.g. x)")


def test_probe_data_reads_the_same_as_base64_and_as_the_real_v6_hex():
    for occupied, data in readiness.PROBE_DATA.items():
        assert bool(base64.b64decode(data)[0] & 1) is occupied         # ChirpStack's base64, bit 0
        assert (int(data[:2], 16) == 1 if all(ch in "0123456789abcdefABCDEF" for ch in data[:2])
                else False) is occupied                                 # the real V6 at ea5b72f
    assert readiness.PROBE_DATA == smoke.DUAL_DATA


@pytest.mark.parametrize("over, message", [
    ({"jwt_secret": "short"}, "jwt_secret"),
    ({"timeout": 0}, "timeout"),
    ({"login_password": ""}, "login_email and login_password"),
    ({"domain": "bad domain"}, "domain"),
])
def test_bad_options_are_refused(over, message):
    params = {"domain": "verdegris.test", "jwt_secret": SECRET, "login_email": "a@b.c", "login_password": "x"}
    params.update(over)
    with pytest.raises(ConfigError, match=message):
        readiness.normalise_options(params)


def test_failure_message_lists_every_failed_check_with_its_exchange():
    result = {"api_host": "api-v6.x", "failed_checks": ["occupancy"], "checks": [
        {"name": "health", "passed": True, "detail": "ok", "facts": {}},
        {"name": "occupancy", "passed": False, "detail": "answered 500",
         "facts": {"exchanges": [{"request": "POST /api/v1/uplink", "status": 500, "response": "{\"detail\":\"x\"}"}]}}]}
    text = readiness.failure_message(result)
    assert "1 check(s) failed" in text and "- occupancy: answered 500" in text
    assert "POST /api/v1/uplink -> 500: {\"detail\":\"x\"}" in text and "health" not in text


class _Col:
    def __init__(self, name):
        self.name = name


class _FakeV6:
    """A parking_v6 connection without a phase-1 ledger and without users (no SQL is run)."""

    def __init__(self):
        self.closed = False
        self.queries = []
        self.description, self.rows = [], []

    def cursor(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql, params=None):
        self.queries.append(sql)
        ledger = "to_regclass" in sql
        self.description = [_Col("ok")] if ledger else [_Col("tenant_id"), _Col("slug")]
        self.rows = [(False,)] if ledger else []

    def fetchall(self):
        return self.rows

    def commit(self):
        pass

    def rollback(self):
        pass

    def close(self):
        self.closed = True


def test_the_gate_joins_plumbing_checks_and_probes():
    for name in ("call", "expect", "query", "execute", "record", "list_all", "check_health", "check_login",
                 "check_tenant", "check_retention", "check_occupancy", "check_reservation", "put_back", "run"):
        assert callable(getattr(readiness.Gate, name)), name
    conn = _FakeV6()
    result = readiness.run({"domain": "verdegris.test", "jwt_secret": SECRET, "live_host": "",
                            "checks": ["retention"]}, lambda: conn)
    assert result["api_host"] == "api-v6.verdegris.test" and result["failed_checks"] == ["retention"]
    assert result["checks"][0]["detail"] == "parking_v6 has no phase-1 ledger: run phase 1 before phase 2"
    assert len(conn.queries) == 2 and conn.closed
