"""Every SQL fragment of sqlfrag.py that has a Python twin (mapping.py, eui.py), run on PostgreSQL over
a table of edge-case inputs: the value the engine computes in SQL must be the value the unit-tested
Python rule computes, for every input. A difference fails, naming the input and both values.

Needs only a PostgreSQL server (tests/labdb.py's lab_pg_params(); no Docker, no seed): a scratch
database parking_map_sqltest, created as the admin login (PARKING_LAB_PG_ADMIN_USER/_PASSWORD) with
the lab's locale (C.UTF-8, initdb --locale of lab/images/postgres: upper/lower depend on it) and
dropped at the end. Differences known today are listed in DISAGREEMENTS, each an xfail(strict=True)
case with its reason: the engine keeps its behaviour until someone decides which side is right, and
a case that starts to agree fails (XPASS) so that it is removed from the list.
"""
import datetime as dt
import uuid

import psycopg2
import pytest

import p1util as U
from labdb import lab_pg_params
from parking import eui, mapping, sqlfrag as F

DB = "parking_map_sqltest"
LOCALE = "C.UTF-8"
UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)
US = dt.timedelta(microseconds=1)


@pytest.fixture(scope="module")
def pg():
    owner = lab_pg_params()["user"]
    U.admin_sql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)",
               f"CREATE DATABASE {DB} OWNER {owner} TEMPLATE template0 ENCODING 'UTF8' "
               f"LC_COLLATE '{LOCALE}' LC_CTYPE '{LOCALE}'")
    conn = psycopg2.connect(dbname=DB, connect_timeout=5, options="-c TimeZone=UTC", **lab_pg_params())
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()
        U.admin_sql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def evaluate(pg, exprs, columns, rows, timezone="UTC"):
    """Each SQL expression of `exprs` over each input row, in input order: [(value, ...), ...].
    `columns`: (name, PostgreSQL type) of the input table t the expressions read."""
    names = ", ".join(name for name, _ in columns)
    arrays = ", ".join(f"%s::{pg_type}[]" for _, pg_type in columns)
    sql = (f"SELECT {', '.join(exprs)} FROM unnest({arrays}) WITH ORDINALITY AS t({names}, ord) "
           f"ORDER BY ord")
    with pg.cursor() as cur:
        cur.execute("SET TimeZone = %s", (timezone,))
        cur.execute(sql, [[row[i] for row in rows] for i in range(len(columns))])
        return [r if len(exprs) > 1 else r[0] for r in cur.fetchall()]


def assert_same(fragment, rows, sql_values, py_values):
    bad = [f"  input {row!r}: SQL {s!r}, Python {p!r}"
           for row, s, p in zip(rows, sql_values, py_values) if s != p]
    assert not bad, f"{fragment}: SQL and its Python twin differ on {len(bad)} of {len(rows)} inputs:\n" \
                    + "\n".join(bad)


# --- the inputs ---------------------------------------------------------------------------------

NAMES = [None, "", " ", "-", "---", "Main Site", "Main-Site", "  Gare du Nord / P2 ", "ÉCOLE Privée", "Café",
         "Straße", "123", "a__b", "UPPER lower", "tab\tsep", "new\nline", "lot 🚗 émoji", "O'Brien's lot",
         "Kelvin \u212a", "Ａｂｃ", "ΟΔΟΣ 5", "a" * 300, "-x-", "%(now)s", "back\\slash"]
SPACE_STATES = [None, "", "FREE", "free", "Occupied", "RESERVED", "maintenance", "MAINTENANCE ", " FREE",
                "unknown", "occupıed", "reſerved", "ß", "ﬀ"]
OCCUPANCY = [None, "", "OCCUPIED", "occupied", "Occupied", "Free", "FREE", " FREE", "RESERVED", "1", "true",
             "occupıed", "x"]
RESERVATION = [None, "", "pending", "PENDING", "confirmed", "CONFIRMED", "Active", "active", "cancelled",
               "expired", "completed", "no_show", "NO_SHOW", "no-show", "weird", " active"]
ROLES = [None, "", "owner", "admin", "operator", "viewer", "platform_admin", "Owner", "PLATFORM_ADMIN",
         "superuser", " owner"]
DEVICE_STATUSES = [None, "", "active", "inactive", "orphan", "decommissioned", "DECOMMISSIONED", "weird"]
END_TIMES = [None, NOW - dt.timedelta(days=1), NOW - US, NOW, NOW.astimezone(dt.timezone(dt.timedelta(hours=2))),
             NOW + US, NOW + dt.timedelta(days=1)]
EUIS = [None, "", " ", "   ", "0011223344556677", "58a0CB00001196f3", "00:11:22:33:44:55:66:77",
        "00-11-22-33-44-55-66-77", "00 11 22 33 44 55 66 77", "00\t11\t22\t33\t44\t55\t66\t77",
        "\n0011223344556677", "0011223344556677\r", "0011223344556677\x0b", "0011223344556677\u2028",
        " 0011223344556677 ", "00:11-22 33:44-55 66:77", "001122334455667", "00112233445566778",
        "g011223344556677", "0x0011223344556677", "00:11:22:33:44:55:66:7", "XYZ", "é", "::::", "--",
        "\u00e000112233445566"]
RETENTION = [None, mapping.history_cutoff(NOW, 90), mapping.history_cutoff(NOW, 1),
             dt.datetime(2026, 8, 28, 17, 45, 0, 999999, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))]
TIMEZONES = ["UTC", "Asia/Kathmandu", "America/St_Johns"]


def moments(cutoff):
    """Times around a cutoff: just before, at, just after (in another offset too), far off, none."""
    c = cutoff or NOW
    other = dt.timezone(dt.timedelta(hours=-3, minutes=-30))
    return [None, c - US, c, c + US, c.astimezone(other), (c - US).astimezone(other), c - dt.timedelta(days=900),
            c + dt.timedelta(days=900), dt.datetime(1970, 1, 1, tzinfo=UTC)]


def utc_naive(moment):
    return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None)


# --- value rules --------------------------------------------------------------------------------

def test_slugify(pg):
    rows = [(n,) for n in NAMES]
    assert_same("slugify", rows, evaluate(pg, [F.slugify("v")], [("v", "text")], rows),
                [mapping.slugify(n) for n, in rows])


def test_device_status(pg):
    rows = [(s, linked) for s in DEVICE_STATUSES for linked in (True, False, None)]
    assert_same("device_status", rows,
                evaluate(pg, list(F.device_status("s", "linked")), [("s", "text"), ("linked", "boolean")], rows),
                [mapping.device_state(s, linked) for s, linked in rows])


def test_space_state(pg):
    rows = [(s,) for s in SPACE_STATES]
    assert_same("space_state", rows, evaluate(pg, [F.space_state("v")], [("v", "text")], rows),
                [mapping.space_state(s) for s, in rows])


def test_occupied(pg):
    rows = [(s,) for s in OCCUPANCY]
    assert_same("occupied", rows, evaluate(pg, [F.occupied("v")], [("v", "text")], rows),
                [mapping.occupied(s) for s, in rows])


def test_v5_occupancy_state(pg):
    rows = [(True,), (False,), (None,)]
    assert_same("v5_occupancy_state", rows, evaluate(pg, [F.v5_occupancy_state("v")], [("v", "boolean")], rows),
                [mapping.v5_occupancy_state(b) for b, in rows])


def test_occupancy_round_trip(pg):
    """rollback-3's reverse maps each V6 value back to a V5 state the forward rule maps to it."""
    rows = [(b,) for b in (True, False)]
    assert evaluate(pg, [F.occupied(F.v5_occupancy_state("v"))], [("v", "boolean")], rows) == [True, False]


def test_reservation_status(pg):
    rows = [(s,) for s in RESERVATION]
    assert_same("reservation_status", rows, evaluate(pg, [F.reservation_status("v")], [("v", "text")], rows),
                [mapping.reservation_status(s) for s, in rows])


def test_reservation_status_with_end_col(pg):
    """end_time == now is ended; no end time or no now leaves the plain map."""
    rows = [(s, e, n) for s in RESERVATION for e in END_TIMES for n in (NOW, None)]
    assert_same("reservation_status(end_col)", rows,
                evaluate(pg, [F.reservation_status("v", "e", now="n")],
                         [("v", "text"), ("e", "timestamptz"), ("n", "timestamptz")], rows),
                [mapping.reservation_status(s, e, n) for s, e, n in rows])


def test_membership_rank(pg):
    rows = [(r,) for r in ROLES]
    assert_same("membership_rank", rows, evaluate(pg, [F.membership_rank("v")], [("v", "text")], rows),
                [mapping.MEMBERSHIP_RANK.get(r, 0) for r, in rows])


def test_membership_role(pg):
    rows = [(r,) for r in ROLES]
    sql = evaluate(pg, [F.membership_role("v")], [("v", "text")], rows)
    assert_same("membership_role", rows, sql, [mapping.MEMBERSHIP_ROLE.get(r) for r, in rows])
    assert_same("membership_role vs membership()", rows, sql,
                [mapping.membership(r, "00000000-0000-0000-0000-000000000001")[0] for r, in rows])


# --- history retention --------------------------------------------------------------------------

@pytest.mark.parametrize("timezone", TIMEZONES)
@pytest.mark.parametrize("cutoff", RETENTION, ids=["no-cutoff", "90-days", "1-day", "offset+0530"])
def test_history_kept(pg, cutoff, timezone):
    rows = [(m,) for m in moments(cutoff)]
    assert_same(f"history_kept (cutoff {cutoff}, TimeZone {timezone})", rows,
                evaluate(pg, [F.history_kept("v", cutoff)], [("v", "timestamptz")], rows, timezone),
                [mapping.history_kept(m, cutoff) for m, in rows])


@pytest.mark.parametrize("timezone", TIMEZONES)
@pytest.mark.parametrize("cutoff", RETENTION, ids=["no-cutoff", "90-days", "1-day", "offset+0530"])
def test_history_expired(pg, cutoff, timezone):
    """The complement of history_kept for rows with a time, as the engine uses it (in WHERE)."""
    rows = [(m,) for m in moments(cutoff)]
    assert_same(f"history_expired (cutoff {cutoff}, TimeZone {timezone})", rows,
                evaluate(pg, [f"({F.history_expired('v', cutoff)}) IS TRUE"], [("v", "timestamptz")], rows,
                         timezone),
                [m is not None and not mapping.history_kept(m, cutoff) for m, in rows])


@pytest.mark.parametrize("timezone", TIMEZONES)
@pytest.mark.parametrize("cutoff", RETENTION, ids=["no-cutoff", "90-days", "1-day", "offset+0530"])
def test_history_kept_v6(pg, cutoff, timezone):
    """Over V6's naive-UTC received_at (NOT NULL in V6: a missing time is a DISAGREEMENTS case)."""
    rows = [(utc_naive(m), m) for m in moments(cutoff) if m is not None]
    assert_same(f"history_kept_v6 (cutoff {cutoff}, TimeZone {timezone})", rows,
                evaluate(pg, [F.history_kept_v6("v", cutoff)], [("v", "timestamp"), ("aware", "timestamptz")], rows,
                         timezone),
                [mapping.history_kept(m, cutoff) for _, m in rows])


# --- EUIs ---------------------------------------------------------------------------------------

def test_eui(pg):
    rows = [(v,) for v in EUIS]
    assert_same("eui", rows, evaluate(pg, [F.eui("v")], [("v", "text")], rows),
                [eui.normalize_eui(v) for v, in rows])


def test_eui_reason(pg):
    """The reason is only taken for a row whose EUI does not normalise (CASE ... WHEN eui IS NULL)."""
    rows = [(v,) for v in EUIS if eui.normalize_eui(v) is None]
    assert_same("eui_reason", rows, evaluate(pg, [F.eui_reason("v")], [("v", "text")], rows),
                [eui.eui_reject_reason(v) for v, in rows])


# --- ids ----------------------------------------------------------------------------------------

KINDS = ["users", "user_memberships", "sites", "spaces", "reservations", "orphan_devices", "sensor_devices",
         "display_devices", "device_assignments"]
UUIDS = ["00000000-0000-0000-0000-000000000000", "0f3c1a52-9d0b-4c55-8e8a-0123456789ab",
         "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"]


def test_derived_uuid_of_uuid_keys(pg):
    """The engine derives from uuid columns (users.id, ...): uuid::text is lowercase, as str(UUID)."""
    rows = [(k, u) for k in KINDS for u in UUIDS]
    sql = evaluate(pg, ["CASE k " + " ".join(f"WHEN '{k}' THEN {F.derived(k, 'u')}" for k in KINDS) + " END"],
                   [("k", "text"), ("u", "uuid")], rows)
    assert_same("derived (uuid keys)", rows, sql, [mapping.derived_uuid(k, uuid.UUID(u)) for k, u in rows])


def test_derived_uuid_of_text_and_int_keys(pg):
    keys = ["", "x", "sensor:" + UUIDS[1] + ":" + UUIDS[0], "display:1:2", "é ünïcode", "quote'd", "back\\slash"]
    rows = [(k,) for k in keys]
    assert_same("derived (text keys)", rows, evaluate(pg, [F.derived("device_assignments", "v")], [("v", "text")],
                                                       rows),
                [mapping.derived_uuid("device_assignments", k) for k, in rows])
    rows = [(i,) for i in (0, 1, 2 ** 31, 2 ** 63 - 1)]
    assert_same("derived (int keys)", rows, evaluate(pg, [F.derived("state_changes", "v")], [("v", "bigint")],
                                                      rows),
                [mapping.derived_uuid("state_changes", i) for i, in rows])


@pytest.mark.parametrize("int_type", ["integer", "bigint"])
def test_sequential_uuid(pg, int_type):
    ids = [0, 1, 15, 16, 255, 2 ** 31 - 1] + ([2 ** 31, 2 ** 53 + 1, 2 ** 63 - 1] if int_type == "bigint" else [])
    for kind in ("sensor_readings", "state_changes"):
        rows = [(i,) for i in ids]
        assert_same(f"sequential ({kind}, {int_type})", rows,
                    evaluate(pg, [F.sequential(kind, "v")], [("v", int_type)], rows),
                    [mapping.sequential_uuid(kind, i) for i, in rows])


# --- known differences --------------------------------------------------------------------------

def _case(fragment, value, reason):
    return pytest.param(fragment, value, id=f"{fragment}-{value!r}",
                        marks=pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason))


_TURKISH_I = ("Python's str.lower() turns U+0130 (İ) into 'i' + U+0307 (two characters); PostgreSQL's "
              "lower() in C.UTF-8 gives 'i'")
_UNICODE_SPACE = ("a separator Python's \\s matches and PostgreSQL's [[:space:]] (C.UTF-8) does not: the engine "
                  "rejects the EUI, normalize_eui (gateways, unit tests) accepts it")
_BLANK = ("eui_reject_reason strips all Unicode whitespace (str.strip) before 'missing EUI'; the SQL trims "
          "spaces only (btrim) and says 'malformed EUI ...'")
_QUOTING = ("the reason quotes the value with Python repr() vs PostgreSQL quote_literal(): they differ on quotes, "
            "backslashes and non-printable characters")
DISAGREEMENTS = [
    _case("slugify", "İstanbul", _TURKISH_I + ": slug 'i-stanbul' vs 'istanbul'"),
    _case("reservation_status", "ACTİVE", _TURKISH_I + ": 'completed' vs 'active'"),
    _case("eui", "00\u00a011223344556677", _UNICODE_SPACE + " (NO-BREAK SPACE)"),
    _case("eui", "0011223344556677\x1c", _UNICODE_SPACE + " (U+001C, Python's \\s covers U+001C-U+001F)"),
    _case("eui", "0011223344556677\x85", _UNICODE_SPACE + " (NEXT LINE, U+0085)"),
    _case("eui", "\ufb0000112233445566", "Python's str.upper() turns the ligature U+FB00 (ﬀ) into 'FF'; "
                                         "PostgreSQL's upper() leaves it"),
    _case("eui_reason", "\t", _BLANK),
    _case("eui_reason", "\u2003", _BLANK + " (EM SPACE)"),
    _case("eui_reason", "a'b", _QUOTING + ": \"a'b\" vs 'a''b'"),
    _case("eui_reason", "a\\b", _QUOTING + ": 'a\\\\b' vs E'a\\\\b'"),
    _case("eui_reason", "xy\u00a0z", _QUOTING + ": '\\xa0' escaped by repr only"),
    _case("history_kept_v6", None, "no time: mapping.history_kept keeps the row, the SQL's comparison is NULL "
                                   "(not kept). Unreachable: V6's received_at is NOT NULL and the migration "
                                   "requires a time"),
]
CUTOFF = RETENTION[1]
_ONE = {
    "slugify": (lambda col: F.slugify(col), mapping.slugify, "text"),
    "reservation_status": (lambda col: F.reservation_status(col), mapping.reservation_status, "text"),
    "eui": (lambda col: F.eui(col), eui.normalize_eui, "text"),
    "eui_reason": (lambda col: F.eui_reason(col), eui.eui_reject_reason, "text"),
    "history_kept_v6": (lambda col: F.history_kept_v6(col, CUTOFF), lambda m: mapping.history_kept(m, CUTOFF),
                        "timestamp"),
}


@pytest.mark.parametrize("fragment,value", DISAGREEMENTS)
def test_known_disagreement(pg, fragment, value):
    sql_of, python, pg_type = _ONE[fragment]
    rows = [(value,)]
    assert_same(fragment, rows, evaluate(pg, [sql_of("v")], [("v", pg_type)], rows), [python(value)])


# --- coverage -----------------------------------------------------------------------------------

# reservation_ended through reservation_status(end_col)
COVERED = {"slugify", "device_status", "space_state", "occupied", "v5_occupancy_state", "reservation_status",
           "reservation_ended", "membership_rank", "membership_role", "history_kept", "history_expired",
           "history_kept_v6", "eui", "eui_reason", "derived", "sequential"}
NO_TWIN = {"utc_naive", "seen_by", "seen_by_run", "source_identity", "prev_join", "mapped"}


def test_every_fragment_is_checked_here_or_has_no_python_twin():
    """A new sqlfrag function is either checked above against its Python twin or listed in NO_TWIN."""
    functions = {name for name, value in vars(F).items()
                 if callable(value) and not name.startswith("_") and getattr(value, "__module__", "") == F.__name__}
    assert functions - COVERED - NO_TWIN == set()
    assert COVERED | NO_TWIN <= functions
