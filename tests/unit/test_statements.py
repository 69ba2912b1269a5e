"""Unit tests of the one statement recorder (module_utils/parking/statements.py), on a fake
connection: what runs, with which parameters, on which cursor, and what is recorded."""
import pytest

from parking.statements import Statements, collapse


class FakeCursor:
    def __init__(self, conn):
        self.conn = conn
        self.closed = False
        self.rowcount = -1
        self._rows = []

    def execute(self, sql, params=None):
        assert not self.closed, "statement on a closed cursor"
        self.conn.executed.append((self, sql, params))
        if "fail" in sql:
            raise RuntimeError("boom")
        self._rows = list(self.conn.results.pop(0)) if self.conn.results else []
        self.rowcount = len(self._rows)

    def fetchall(self):
        rows, self._rows = self._rows, []
        return rows

    def fetchone(self):
        return self._rows.pop(0) if self._rows else None

    def close(self):
        self.closed = True


class FakeConn:
    def __init__(self, *results):
        self.results = list(results)   # the rows of each statement, in order
        self.executed = []              # (cursor, sql, params)
        self.cursors = []

    def cursor(self):
        cur = FakeCursor(self)
        self.cursors.append(cur)
        return cur


def test_collapse():
    assert collapse("\n  SELECT a,\n\t b   FROM t\n WHERE x = %s  ") == "SELECT a, b FROM t WHERE x = %s"


def test_one_cursor_execute_rows_one_scalar():
    conn = FakeConn([(1,), (2,)], [("a", 1)], [(7,)], [], [(3,)])
    st = Statements(conn)
    assert len(conn.cursors) == 1 and st.cur is conn.cursors[0] and st.conn is conn
    assert st.execute("UPDATE t\n   SET x = 1", (5,)) == 2
    assert st.rows("SELECT a, b FROM t WHERE c = %(c)s", {"c": "secret"}) == [("a", 1)]
    assert st.one("SELECT 7") == (7,)
    assert st.scalar("SELECT nothing") is None
    assert st.all("SELECT 3") == [(3,)]
    assert len(conn.cursors) == 1 and not st.cur.closed        # the one cursor, kept open
    assert [e[0] for e in conn.executed] == [st.cur] * 5
    assert [e[2] for e in conn.executed] == [(5,), {"c": "secret"}, None, None, None]
    # texts, whitespace collapsed, never the values
    assert st.queries == ["UPDATE t SET x = 1", "SELECT a, b FROM t WHERE c = %(c)s", "SELECT 7",
                          "SELECT nothing", "SELECT 3"]
    assert not any("secret" in q for q in st.queries)


def test_every_statement_recorded_by_default_even_repeated():
    st = Statements(FakeConn())
    st.execute("SELECT 1")
    st.execute("SELECT  1")
    assert st.queries == ["SELECT 1", "SELECT 1"]


def test_unique_log_shared_by_two_recorders():
    log = []
    a = Statements(FakeConn(), log=log, unique=True)
    b = Statements(FakeConn(), log=log, unique=True)
    a.execute("SELECT 1")
    b.execute("SELECT\n 1")
    b.execute("SELECT 2")
    a.note("COPY x")
    a.note("COPY x")
    assert a.queries is log and b.queries is log
    assert log == ["SELECT 1", "SELECT 2", "COPY x"]


def test_default_params_when_none_given():
    conn = FakeConn()
    st = Statements(conn, params={"run": "r1"})
    st.execute("SELECT %(run)s")
    st.execute("SELECT %(x)s", {"x": 1})
    st.execute("SELECT 1", ())
    assert [e[2] for e in conn.executed] == [{"run": "r1"}, {"x": 1}, ()]
    # a subclass may set its defaults after construction (migrate.Run)
    st.params = {"run": "r2"}
    st.scalar("SELECT %(run)s")
    assert conn.executed[-1][2] == {"run": "r2"}


def test_cursor_per_statement():
    conn = FakeConn([(1,), (2,)], [(5,)], [(6,), (7,)], [])
    st = Statements(conn, cursor_per_statement=True)
    assert st.cur is None and conn.cursors == []
    assert st.all("SELECT x") == [(1,), (2,)]
    assert st.scalar("SELECT 5") == 5
    assert st.one("SELECT y") == (6,)
    assert st.execute("DELETE FROM t") == 0
    assert len(conn.cursors) == 4 and all(c.closed for c in conn.cursors)
    assert [e[0] for e in conn.executed] == conn.cursors
    # a cursor of the caller's own (ledger calls) is not recorded
    conn.cursor().execute("SELECT hidden")
    assert st.queries == ["SELECT x", "SELECT 5", "SELECT y", "DELETE FROM t"]


def test_note_is_verbatim_and_in_order():
    st = Statements(FakeConn())
    st.execute("CREATE TEMP TABLE s (a int)")
    st.note("COPY (SELECT a  FROM t) TO STDOUT  ->  COPY s FROM STDIN")
    st.execute("ANALYZE s")
    assert st.queries == ["CREATE TEMP TABLE s (a int)",
                          "COPY (SELECT a  FROM t) TO STDOUT  ->  COPY s FROM STDIN", "ANALYZE s"]


def test_shown_replaces_the_recorded_text():
    conn = FakeConn()
    st = Statements(conn)
    st.execute("ALTER ROLE r PASSWORD %(p)s", {"p": "SCRAM-SHA-256$4096:real"},
               shown="ALTER ROLE r PASSWORD 'SCRAM-SHA-256$...'")
    assert conn.executed[0][1:] == ("ALTER ROLE r PASSWORD %(p)s", {"p": "SCRAM-SHA-256$4096:real"})
    assert st.queries == ["ALTER ROLE r PASSWORD 'SCRAM-SHA-256$...'"]


def test_a_failing_statement_is_recorded_before_it_runs_and_its_cursor_closed():
    conn = FakeConn()
    st = Statements(conn, cursor_per_statement=True)
    with pytest.raises(RuntimeError):
        st.execute("SELECT fail")
    assert st.queries == ["SELECT fail"]
    with pytest.raises(RuntimeError):
        st.rows("SELECT fail again")
    assert st.queries == ["SELECT fail", "SELECT fail again"]
    assert len(conn.cursors) == 2 and all(c.closed for c in conn.cursors)
    # on the one cursor: recorded too, the cursor stays (the caller's transaction decides)
    one = Statements(conn)
    with pytest.raises(RuntimeError):
        one.execute("SELECT fail")
    assert one.queries == ["SELECT fail"] and not one.cur.closed


def test_subclass_keeps_its_own_attributes():
    class Run(Statements):
        def __init__(self, conn):
            super().__init__(conn)
            self.params = {"run": "x"}
            self.counts = {}

    conn = FakeConn([(1,)])
    run = Run(conn)
    assert run.scalar("SELECT count(*) FROM t WHERE run_id = %(run)s") == 1
    assert conn.executed[0][2] == {"run": "x"} and run.queries == ["SELECT count(*) FROM t WHERE run_id = %(run)s"]
