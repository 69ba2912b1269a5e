# PRIVATE: the parking-migrate engine. Plain Python (no Ansible imports) so it is
# importable and unit-testable on its own; the modules in library/ are thin wrappers.
"""The one statement recorder: run SQL on a connection and record what ran.

Every module returns ``executed_queries``: the text of each statement it ran, whitespace
collapsed, never the values (they travel as parameters). ``Statements`` is the only code that
runs and records a statement; the phase-1 run (``migrate.Run``), rollback-3 (``backsync.Sync``),
rollback-1 (``rollback.rollback``) and the gateway import use it.

Two ways to hold cursors:

* one cursor (the default): every statement runs on ``self.cur``, which the caller may also use
  for statements it does not record (catalog reads, COPY streams);
* ``cursor_per_statement=True``: each statement gets a cursor of its own, closed once its rows
  are read (the gateway import, whose ledger calls take cursors of their own on ``self.conn``).

Options: ``log`` (a list shared by several recorders, e.g. the two databases of the gateway
import), ``unique`` (a text already in the log is not added again), ``params`` (parameters used
when a statement is given none; the phase-1 run's ``%(run)s``, ``%(now)s``...).
"""


def collapse(sql):
    """A statement's recorded text: its words separated by single spaces."""
    return " ".join(sql.split())


class Statements:
    """Runs statements on a connection and records their text (``queries``)."""

    def __init__(self, conn, log=None, unique=False, params=None, cursor_per_statement=False):
        self.conn = conn
        self.cur = None if cursor_per_statement else conn.cursor()
        self.queries = [] if log is None else log
        self.unique = unique
        self.params = params

    # recording ---------------------------------------------------------------------------------

    def note(self, text):
        """Record a line as given: a COPY stream, a statement shown redacted."""
        if not (self.unique and text in self.queries):
            self.queries.append(text)

    # running -----------------------------------------------------------------------------------

    def _run(self, sql, params, shown=None):
        """Record the statement (``shown`` instead of its text, when given), then run it; the cursor."""
        self.note(collapse(sql) if shown is None else shown)
        cur = self.cur if self.cur is not None else self.conn.cursor()
        try:
            cur.execute(sql, self.params if params is None else params)
        except BaseException:
            self._done(cur)
            raise
        return cur

    def _done(self, cur):
        if cur is not self.cur:
            cur.close()

    def execute(self, sql, params=None, shown=None):
        """Run a statement; the number of rows it affected (the cursor's rowcount)."""
        cur = self._run(sql, params, shown)
        try:
            return cur.rowcount
        finally:
            self._done(cur)

    def rows(self, sql, params=None):
        """Run a query; all its rows."""
        cur = self._run(sql, params)
        try:
            return cur.fetchall()
        finally:
            self._done(cur)

    all = rows

    def one(self, sql, params=None):
        """Run a query; its first row, or None."""
        cur = self._run(sql, params)
        try:
            return cur.fetchone()
        finally:
            self._done(cur)

    def scalar(self, sql, params=None):
        """Run a query; the first column of its first row, or None."""
        row = self.one(sql, params)
        return row[0] if row else None
