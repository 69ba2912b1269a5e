"""The run and the helpers every entity shares (phase 1 engine, see __init__).

`Run` holds the cursors, the run id and what the run did (queries, counts, rejects, warnings).
The helpers build and record an entity's plan (plan, record_plan, decide, prev_state and
PREV_REASON) and keep what a later run and rollback-1 need for rows changed in place
(save_before_images, record_state, note_conflicts, remember).
"""
from .. import mapping, sqlfrag as F
from ..statements import Statements

L = F.LEDGER  # the ledger's schema, in the SQL of every module of the package


class Run(Statements):
    """Cursors, the run id and what the run did (queries, counts, rejects, warnings).

    Statements run on the target's cursor ``cur`` and are recorded in ``queries`` (Statements);
    a statement given no parameters gets the run's ``params`` (run, platform, now). ``src`` is the
    V5 cursor (COPY streams, recorded with ``note``).
    """

    def __init__(self, src_conn, tgt_conn, run_id, platform, progress=None):
        super().__init__(tgt_conn)
        self.src = src_conn.cursor()
        self.run_id = run_id
        self.platform = platform
        self.counts = {}
        self.warnings = []
        self.timings = {}
        self.progress = progress or (lambda msg: None)
        self.cur.execute("SELECT now()")
        self.now = self.cur.fetchone()[0]  # the run's time: the target transaction's start
        self.params = {"run": run_id, "platform": platform, "now": self.now}  # Statements' defaults
        self.anonymous_email = mapping.ANONYMOUS_USER_EMAIL
        self.tenant_differences = []
        self.history_load = {}    # per history table: the path (bulk | live) and why (bulk.py)
        self.bulk_tables = set()  # tables whose indexes and foreign keys are dropped right now
        self.expected = {}        # per history table: about how many rows its COPY brings (ETA)

    def count(self, entity, key, n):
        self.counts.setdefault(entity, {}).setdefault(key, 0)
        self.counts[entity][key] += n


# --------------------------------------------------------------------------------------------
# generic apply: id map, rejects, counts
# --------------------------------------------------------------------------------------------

def record_plan(run, entity):
    """Id-map rows for insert/match, rejects, and the counts of the plan m_<entity>."""
    run.execute(f"""
        INSERT INTO {L}.id_map (entity, v5_id, v6_id, action, run_id)
        SELECT '{entity}', v5_id, v6_id::text,
               CASE action WHEN 'insert' THEN 'inserted' ELSE 'matched' END, %(run)s
        FROM m_{entity} WHERE action IN ('insert', 'match')
        ON CONFLICT (entity, v5_id) DO NOTHING""")
    run.execute(f"""
        INSERT INTO {L}.rejects (run_id, entity, v5_id, reason)
        SELECT %(run)s, '{entity}', v5_id, reason FROM m_{entity} WHERE action = 'reject'
        ON CONFLICT DO NOTHING""")
    run.execute(f"""
        INSERT INTO {L}.decisions (run_id, entity, v5_id, decision, detail)
        SELECT %(run)s, '{entity}', v5_id, 'not_migrated', reason FROM m_{entity}
        WHERE action = 'skip' AND reason IS NOT NULL""")
    for action, n in run.rows(f"SELECT action, count(*) FROM m_{entity} GROUP BY action"):
        key = {"insert": "inserted", "match": "matched", "mapped": "already_migrated",
               "reject": "rejected", "skip": "skipped"}[action]
        run.count(entity, key, n)


def decide(run, entity, decision, select_sql):
    """Record decisions (v5_id, detail) from a SELECT for this run; returns how many."""
    n = run.execute(f"""INSERT INTO {L}.decisions (run_id, entity, v5_id, decision, detail)
                        SELECT %(run)s, '{entity}', d.v5_id, '{decision}', d.detail
                        FROM ({select_sql}) d(v5_id, detail)""")
    if n:
        run.count(entity, decision, n)
    return n


def plan(run, entity, select_sql):
    run.execute(f"CREATE TEMP TABLE m_{entity} ON COMMIT DROP AS {select_sql}")
    run.execute(f"ANALYZE m_{entity}")


def prev_state(entity, table):
    """CASE pieces for rows mapped by an earlier run: still there -> mapped; deleted in V6 -> skip
    (V6's deletion wins: not re-created, listed as a decision with PREV_REASON)."""
    return (f"WHEN prev_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {table} x WHERE x.id = prev_id) "
            f"THEN 'skip' WHEN prev_id IS NOT NULL THEN 'mapped'")


# the reason of a 'skip' by prev_state (rows still there are 'mapped' and their reason is unused)
PREV_REASON = f"WHEN prev_id IS NOT NULL THEN {mapping.sql_literal(mapping.V6_DELETED_REASON)}"


# --------------------------------------------------------------------------------------------
# before-images and row_state: rows changed in place
# --------------------------------------------------------------------------------------------

def save_before_images(run, table, ids_sql):
    """Keep the current row of every V6 row about to be updated that the tool did not insert."""
    run.execute(f"""
        INSERT INTO {L}.before_images (run_id, tbl, row_id, before)
        SELECT %(run)s, '{table}', t.id::text, to_jsonb(t) FROM {table} t
        WHERE t.id IN ({ids_sql})
          AND NOT EXISTS (SELECT 1 FROM {L}.id_map m WHERE m.v6_id = t.id::text AND m.action = 'inserted'
                          AND m.entity = '{table}')
          AND NOT EXISTS (SELECT 1 FROM {L}.before_images b WHERE b.tbl = '{table}' AND b.row_id = t.id::text)""")


def record_state(run, entity, rows_sql):
    """row_state of V6 rows, from `rows_sql` giving (v6_id, v5_sig, v6_sig): the V5 value carried,
    the V6 value now (what the tool wrote or found). A later run applies a V5 change only while V6
    still holds that V6 value; otherwise the change is V6's and wins."""
    run.execute(f"""
        INSERT INTO {L}.row_state (entity, v6_id, v5_sig, v6_sig, run_id)
        SELECT DISTINCT ON (r.v6_id) '{entity}', r.v6_id::text, r.v5_sig::text, coalesce(r.v6_sig::text, ''), %(run)s
        FROM ({rows_sql}) r(v6_id, v5_sig, v6_sig) ORDER BY r.v6_id
        ON CONFLICT (entity, v6_id) DO UPDATE SET v5_sig = EXCLUDED.v5_sig, v6_sig = EXCLUDED.v6_sig,
                                                  run_id = EXCLUDED.run_id""")


def note_conflicts(run, entity, plan, id_col, detail_sql):
    """Rows of the plan table `plan` whose decision is conflict (both sides changed): V6 wins, each
    is a conflict_v6_kept decision, and V5's new value is noted so it is reported once (the V6
    value the tool wrote stays in row_state, so the gate still sees V6's edit)."""
    decide(run, entity, "conflict_v6_kept", f"SELECT v5_id, {detail_sql} FROM {plan} WHERE decision = 'conflict'")
    run.execute(f"""UPDATE {L}.row_state r SET v5_sig = w.v5_sig FROM {plan} w
                    WHERE w.decision = 'conflict' AND r.entity = '{entity}' AND r.v6_id = w.{id_col}::text""")


def remember(run, entity, v5_sig, v6_sig, where):
    """row_state of the V6 rows of m_<entity> matching `where` (first contact)."""
    record_state(run, entity, f"SELECT t.id, {v5_sig}, {v6_sig} FROM m_{entity} m JOIN {entity} t "
                              f"ON t.id = m.v6_id WHERE {where}")
