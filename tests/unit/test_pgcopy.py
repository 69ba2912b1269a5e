"""Unit tests of pgcopy.py (plain Python, no database): when a binary COPY is exact and the
typed select that makes it so, the progress meter (rows/s, ETA) and the counting sink."""
import pytest

from parking import pgcopy

# --- binary COPY: exact or not at all ---------------------------------------------------------

UUID, TEXT, VARCHAR, INT4, FLOAT8, NUMERIC, TS, JSONB = 2950, 25, 1043, 23, 701, 1700, 1114, 3802
TARGET = [(UUID, "uuid", True), (VARCHAR, "character varying", True), (FLOAT8, "double precision", True),
          (TS, "timestamp without time zone", True)]


def test_binary_casts_only_columns_of_another_type_through_text():
    assert pgcopy.casts([UUID, TEXT, NUMERIC, TS], TARGET, True) == [
        "", "::text::character varying", "::text::double precision", ""]
    assert pgcopy.casts([UUID, VARCHAR, FLOAT8, TS], TARGET, True) == ["", "", "", ""]


@pytest.mark.parametrize("source, target, same_major", [
    ([UUID, TEXT, NUMERIC, TS], TARGET, False),                          # another major version
    ([UUID, TEXT, NUMERIC], TARGET, True),                               # columns do not line up
    ([UUID, TEXT], [(UUID, "uuid", True), (16500, "parking_state", False)], True),  # enum, domain, array
])
def test_binary_is_refused_when_it_would_not_be_exact(source, target, same_major):
    assert pgcopy.casts(source, target, same_major) is None


def test_the_typed_select_wraps_the_mapping_and_names_no_column():
    sql = pgcopy.typed_select("SELECT a, b FROM t", ["", "::text::double precision"])
    assert sql == "SELECT x.c1, x.c2::text::double precision FROM (SELECT a, b FROM t) x(c1, c2)"


# --- progress: rows/s and ETA -------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_the_meter_writes_rows_per_second_and_an_eta_every_period():
    clock, lines = Clock(), []
    m = pgcopy.Meter("sensor_readings: COPY", lines.append, expected=1_000_000, every=5, clock=clock)
    clock.t += 4
    m.add(200_000)
    assert lines == []                       # not yet: every 5 s
    clock.t += 1
    m.add(50_000)
    assert lines == ["sensor_readings: COPY: 250,000 rows of ~1,000,000, 50,000 rows/s, ETA 15s"]
    clock.t += 95
    m.add(250_000)
    assert lines[-1] == "sensor_readings: COPY: 500,000 rows of ~1,000,000, 5,000 rows/s, ETA 1m40s"
    clock.t += 3600
    m.add(1)
    assert lines[-1].endswith("135 rows/s, ETA 1h01m")
    assert m.done(480_000) == "sensor_readings: COPY: 480,000 rows in 3700.0s (130 rows/s)"


def test_the_meter_never_shows_a_negative_eta_nor_one_without_an_estimate():
    clock, lines = Clock(), []
    m = pgcopy.Meter("t", lines.append, expected=10, every=1, clock=clock)
    clock.t += 1
    m.add(20)
    assert lines[-1] == "t: 20 rows of ~10, 20 rows/s, ETA unknown (more rows than estimated)"
    n = pgcopy.Meter("t", lines.append, every=1, clock=clock)
    clock.t += 2
    n.add(4)
    assert lines[-1] == "t: 4 rows, 2 rows/s"


def test_the_counting_sink_passes_every_row_on_and_tells_the_meter_in_batches():
    clock, lines, written = Clock(), [], []
    m = pgcopy.Meter("t", lines.append, every=1e9, clock=clock)
    sink = pgcopy._Counting(type("Out", (), {"write": staticmethod(written.append)})(), m)
    for i in range(pgcopy._Counting.EVERY_ROWS * 2 + 7):
        sink.write(b"row\n")
    assert m.rows == pgcopy._Counting.EVERY_ROWS * 2
    sink.flush()
    assert m.rows == len(written) == pgcopy._Counting.EVERY_ROWS * 2 + 7
