"""How history is loaded into a V6 table: bulk or live (phase 1 engine, see __init__).

**bulk** (a full run into a V6 that is not serving yet, large load): what PostgreSQL loads
fastest, all inside the run's one transaction on V6:

  1. the table's indexes, its primary key and unique constraints (with their indexes) and its
     foreign keys are read from the catalog (names, pg_get_indexdef / pg_get_constraintdef) and
     dropped;
  2. COPY streams the rows into the bare heap: no index is maintained per row, and no per-row
     foreign-key trigger is queued (the only per-row triggers this avoids: PostgreSQL's own RI
     triggers, whose check step 3 makes set-based; the table's own triggers, if any, still
     fire);
  3. the keys are added again under their names (one sorted build of their index, which also
     proves them unique: a duplicate fails the run as it would have failed the COPY), each index
     is built again from its definition (maintenance_work_mem raised to BUILD_MEMORY for the
     builds when lower), and each foreign key added again under its name, which validates every
     row of the table in one join (a violation fails the run, which rolls everything back);
  4. the table's indexes, constraints and triggers are read again and compared with what they
     were: any difference fails the run.

DDL is transactional in PostgreSQL: an error, a failed gate, check mode or a SIGKILL at any
point rolls the drops back together with the rows, and V6 keeps its indexes and constraints
exactly as they were; after a commit they are byte-identical by definition and name, so
rollback-1 (which deletes rows, never DDL) leaves them as it found them too. Only statistics
PostgreSQL keeps per index object (pg_stat_user_indexes counters) start again from zero.

**V6 is not serving** (the rule, conservative; every condition must hold, otherwise the
table is loaded **live**, its indexes and foreign keys in place):

  - the run is a full run (delta runs are what phase 3 does while V6 serves);
  - no cutover is recorded in the ledger (`cutover_state`: started or switched);
  - no other client session is connected to V6's database, whatever its role (the V6
    application, an adminer, a psql: anything that could read or write meanwhile);
  - the locks the drops need (ACCESS EXCLUSIVE on the table and on the tables its foreign
    keys reference) are granted within LOCK_TIMEOUT: a session that connected after the check
    and holds one sends the load back to the live path (the savepoint is rolled back).

Worth it only for a large load: at least `min_rows` rows (BULK_MIN_ROWS by default; the
engine's history_bulk_min_rows=None turns the bulk path off) and no more rows already in the
table than the load brings (a rebuild sorts every row of the table). What is not plain stays
live: exclusion constraints, a key a foreign key rests on (of this table or another), a key the
load itself needs (state_changes' primary key when V6 holds rows in the id range: the staged
path's ON CONFLICT), a unique index without a constraint, invalid or not-ready indexes, the
replica identity index, the clustered index, one in a tablespace of its own, with a comment (on
the index or its constraint), or with per-column statistics targets; foreign keys with a
comment, or inherited (partitions). Partitioned or inherited tables are always loaded live.

**live**: COPY into the table as it is. As a superuser, on a table with no trigger of its own
enabled, the foreign-key triggers are skipped for this transaction (session_replication_role =
replica, which would also silence the table's own triggers: hence the condition) and the keys
are checked set-based after the COPY; otherwise every trigger fires per row.
"""
from .. import quote
from ..errors import ParkingError
from ..statements import collapse

BULK = "bulk"
LIVE = "live"
BULK_MIN_ROWS = 100_000
LOCK_TIMEOUT = "5s"  # above deadlock_timeout (1 s): an autovacuum in the way is cancelled first
LOCK_ERRORS = ("55P03", "40P01")  # lock_not_available, deadlock_detected: the live path then
SAVEPOINT = "parking_bulk_load"
BUILD_MEMORY = "512MB"  # maintenance_work_mem while the indexes are built again (restore)


def choose(mode, cutover, others, rows_to_load, rows_present, min_rows, table_ok=True):
    """(path, reason) for one table. cutover: the cutover keys recorded; others: other client
    sessions on V6; rows_present: rows the table holds (counted up to rows_to_load + 1);
    min_rows: None when the bulk path is turned off; table_ok: None or why the table itself
    cannot take it (not its owner, partitioned...)."""
    if mode != "full":
        return LIVE, f"{mode} run: V6 may be serving, its indexes and foreign keys stay live"
    if cutover:
        return LIVE, f"a cutover is recorded ({', '.join(sorted(cutover))}): V6 may be serving"
    if others:
        return LIVE, f"{others} other session(s) connected to V6: it may be serving"
    if min_rows is None:
        return LIVE, "bulk load turned off (history_bulk_min_rows=None)"
    if table_ok is not True:
        return LIVE, table_ok
    if rows_to_load < min_rows:
        return LIVE, f"about {rows_to_load:,} rows to load, fewer than {min_rows:,}: not worth rebuilding indexes"
    if rows_present > rows_to_load:
        return LIVE, (f"V6 already holds more rows than the ~{rows_to_load:,} to load: maintaining its indexes "
                      "costs less than rebuilding them")
    return BULK, (f"full run, V6 not serving (no cutover recorded, no other session on it), "
                  f"~{rows_to_load:,} rows to load into {rows_present:,}")


# --------------------------------------------------------------------------------------------
# the catalog
# --------------------------------------------------------------------------------------------

INDEX_SQL = """
SELECT c.relname, n.nspname, pg_get_indexdef(i.indexrelid), k.conname, k.contype::text, pg_get_constraintdef(k.oid),
       i.indisexclusion, NOT (i.indisvalid AND i.indisready AND i.indislive),
       i.indisreplident, i.indisclustered, c.reltablespace <> 0,
       obj_description(i.indexrelid, 'pg_class') IS NOT NULL OR obj_description(k.oid, 'pg_constraint') IS NOT NULL,
       EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = i.indexrelid AND a.attstattarget > 0),
       i.indisunique AND k.oid IS NULL,
       EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = i.indexrelid),
       EXISTS (SELECT 1 FROM pg_depend d WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = i.indexrelid
               AND d.classid <> 'pg_class'::regclass)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x')
WHERE i.indrelid = %(tbl)s::regclass ORDER BY c.relname"""

INDEX_FLAGS = ("exclusion", "not valid or not ready", "replica identity", "clustered", "own tablespace",
               "has a comment", "per-column statistics target", "unique without a constraint",
               "a foreign key rests on it", "another object depends on it")

FK_SQL = """
SELECT conname, pg_get_constraintdef(oid), obj_description(oid, 'pg_constraint') IS NOT NULL,
       conparentid <> 0 OR NOT conislocal
FROM pg_constraint WHERE conrelid = %(tbl)s::regclass AND contype = 'f' ORDER BY conname"""

TABLE_SQL = """
SELECT c.relkind, pg_has_role(current_user, c.relowner, 'USAGE'),
       EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = c.oid OR inhparent = c.oid)
FROM pg_class c WHERE c.oid = %(tbl)s::regclass"""

DEFINITIONS_SQL = """
SELECT 'index', c.relname, pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %(tbl)s::regclass
UNION ALL
SELECT 'constraint', conname, contype::text || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE conrelid = %(tbl)s::regclass
UNION ALL
SELECT 'trigger', tgname, pg_get_triggerdef(oid) || ' ' || tgenabled::text
FROM pg_trigger WHERE tgrelid = %(tbl)s::regclass AND NOT tgisinternal
ORDER BY 1, 2"""

USER_TRIGGERS_SQL = """
SELECT count(*) FROM pg_trigger WHERE tgrelid = %(tbl)s::regclass AND NOT tgisinternal AND tgenabled <> 'D'"""

OTHER_SESSIONS_SQL = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"""


def definitions(cur, table):
    """Every index, constraint and trigger of `table` as (kind, name, definition), sorted: what
    a bulk load must leave exactly as it found it (compared before and after; tests use it)."""
    cur.execute(DEFINITIONS_SQL, {"tbl": table})
    return [tuple(r) for r in cur.fetchall()]


def index_kept_because(flags, contype=None, keep_constraints=False):
    """Why an index stays live during a bulk load (None: it is dropped and built again).
    flags: the booleans of INDEX_SQL, in INDEX_FLAGS order; contype: the type of the constraint
    the index carries ('p' primary key, 'u' unique, 'x' exclusion; None for a plain index);
    keep_constraints: the run needs the table's keys during the load (ON CONFLICT)."""
    reasons = [name for name, on in zip(INDEX_FLAGS, flags) if on]
    if keep_constraints and contype in ("p", "u"):
        reasons.append("the run needs it during the load (ON CONFLICT)")
    return ", ".join(reasons) or None


def table_kept_because(relkind, owner, inherited):
    if relkind != "r":
        return "a partitioned or special table: loaded live"
    if inherited:
        return "a table with inheritance: loaded live"
    if not owner:
        return "the login is not the table's owner: it may not drop or build its indexes"
    return True


CONSTRAINT_KINDS = {"p": "primary key", "u": "unique constraint"}


class Plan:
    """What a bulk load of one table drops and builds again."""

    def __init__(self, table, indexes, foreign_keys, kept, keys=()):
        self.table = table
        self.indexes = indexes            # [(schema, name, CREATE INDEX ...)]: plain indexes
        self.foreign_keys = foreign_keys  # [(name, FOREIGN KEY ... REFERENCES ...)]
        self.keys = list(keys)            # [(name, contype, PRIMARY KEY (...) | UNIQUE (...))]: with their index
        self.kept = kept                  # [(name, why it stays live)]
        self.before = None

    def drop_sql(self, ident):
        """The statements that drop them; ident(*names) quotes an identifier."""
        out = [f"DROP INDEX {ident(schema, name)}" for schema, name, _ in self.indexes]
        dropped = [name for name, _ in self.foreign_keys] + [name for name, _, _ in self.keys]
        if dropped:
            out.append(f"ALTER TABLE {self.table} " + ", ".join(f"DROP CONSTRAINT {ident(name)}" for name in dropped))
        return out

    def build_sql(self, ident):
        """(label, statement) that build them again, from their own definitions and names: keys
        first (their index, which proves them unique), then indexes, then foreign keys."""
        out = [(f"{CONSTRAINT_KINDS[kind]} {name}", f"ALTER TABLE {self.table} ADD CONSTRAINT {ident(name)} {ddl}")
               for name, kind, ddl in self.keys]
        out += [(f"index {name}", ddl) for _, name, ddl in self.indexes]
        out += [(f"foreign key {name} (validates every row)", f"ALTER TABLE {self.table} ADD CONSTRAINT {ident(name)} {ddl}")
                for name, ddl in self.foreign_keys]
        return out


def plan(cur, table, keep_constraints=False):
    """The Plan of `table` from the catalog, or (None, why the table stays live)."""
    cur.execute(TABLE_SQL, {"tbl": table})
    ok = table_kept_because(*cur.fetchone())
    if ok is not True:
        return None, ok
    cur.execute(INDEX_SQL, {"tbl": table})
    indexes, keys, kept = [], [], []
    for name, schema, ddl, conname, contype, condef, *flags in cur.fetchall():
        why = index_kept_because(flags, contype, keep_constraints)
        if not why and contype == "x":
            why = "exclusion"
        if why:
            kept.append((conname or name, why))
        elif contype in CONSTRAINT_KINDS:
            keys.append((conname, contype, condef))
        else:
            indexes.append((schema, name, ddl))
    cur.execute(FK_SQL, {"tbl": table})
    fks = []
    for name, ddl, commented, inherited in cur.fetchall():
        if commented or inherited:
            kept.append((name, "has a comment" if commented else "inherited"))
        else:
            fks.append((name, ddl))
    return Plan(table, indexes, fks, kept, keys), None


# --------------------------------------------------------------------------------------------
# deciding, dropping, building again
# --------------------------------------------------------------------------------------------

def decide(run, table, mode, rows_to_load, min_rows, keep_constraints=False):
    """Choose the path of `table` (recorded in run.history_load[table]); the Plan when bulk,
    else None. Reads only the catalog and the ledger, and counts the table's rows only when
    everything else says bulk (up to rows_to_load + 1: bounded by the load).
    keep_constraints: the load will need the table's primary key and unique constraints (a
    staged path's ON CONFLICT): they stay live."""
    from ..backup import cutover_keys  # the ledger's cutover state (phase 3 records it)
    cutover = cutover_keys(run.cur) & {"started", "switched"}
    others = run.scalar(OTHER_SESSIONS_SQL)
    p, why = plan(run.cur, table, keep_constraints)
    path, reason = choose(mode, cutover, others, rows_to_load, 0, min_rows, why or True)
    if path == BULK:
        present = run.scalar(f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT %(n)s) t", {"n": rows_to_load + 1})
        path, reason = choose(mode, cutover, others, rows_to_load, present, min_rows, True)
    run.history_load[table] = {"path": path, "reason": reason}
    return p if path == BULK else None


def suspend(run, p):
    """Drop the plan's indexes and foreign keys under a savepoint with a lock timeout. False (and
    nothing dropped) when a lock is not granted in time: the table is then loaded live."""
    info = run.history_load[p.table]
    p.before = definitions(run.cur, p.table)
    run.execute(f"SAVEPOINT {SAVEPOINT}")
    old = run.scalar("SELECT current_setting('lock_timeout')")
    run.execute("SELECT set_config('lock_timeout', %(t)s, true)", {"t": LOCK_TIMEOUT})
    try:
        for sql in p.drop_sql(lambda *names: quote.ident(run.cur, *names)):
            ddl(run, sql)
    except Exception as exc:
        if getattr(exc, "pgcode", None) not in LOCK_ERRORS:
            raise
        run.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
        run.execute(f"RELEASE SAVEPOINT {SAVEPOINT}")
        info.update(path=LIVE, reason=f"a lock the bulk load needs was not granted within {LOCK_TIMEOUT} "
                                      f"(a session uses {p.table} or a table it references): loaded live")
        run.progress(f"{p.table}: {info['reason']}")
        return False
    run.execute("SELECT set_config('lock_timeout', %(t)s, true)", {"t": old})
    run.execute(f"RELEASE SAVEPOINT {SAVEPOINT}")
    info.update(keys_rebuilt=[name for name, _, _ in p.keys], indexes_rebuilt=[name for _, name, _ in p.indexes],
                foreign_keys_validated=[name for name, _ in p.foreign_keys],
                kept_live=[f"{name} ({why})" for name, why in p.kept])
    run.bulk_tables.add(p.table)
    run.progress(f"{p.table}: bulk load, dropped until the rows are in (in this transaction): keys "
                 f"{info['keys_rebuilt']}, indexes {info['indexes_rebuilt']}, foreign keys "
                 f"{info['foreign_keys_validated']} ({info['reason']})")
    return True


def ddl(run, sql):
    """Run DDL read from the catalog as it is: a '%' in it (a LIKE in a partial index, a name) is
    not a parameter placeholder (the run's statements are given parameters)."""
    return run.execute(sql.replace("%", "%%"), {}, shown=collapse(sql))


def restore(run, p, timed):
    """Build the plan's indexes and foreign keys again and prove the table's definitions are as
    they were; `timed(label, fn)` runs and times each statement (a progress line, a timing).

    The index builds sort in memory up to BUILD_MEMORY (maintenance_work_mem, raised for this
    transaction only when it is lower, and put back after): an index of 7 M rows sorted on disk
    in 64 MB took 20-25 % longer here."""
    old = run.scalar("SELECT current_setting('maintenance_work_mem')")
    raise_to = run.scalar("SELECT CASE WHEN pg_size_bytes(current_setting('maintenance_work_mem')) < "
                          "pg_size_bytes(%(m)s) THEN %(m)s END", {"m": BUILD_MEMORY})
    if raise_to:
        run.execute("SELECT set_config('maintenance_work_mem', %(m)s, true)", {"m": raise_to})
        run.history_load[p.table]["maintenance_work_mem"] = f"{raise_to} for the rebuild (was {old})"
    for label, sql in p.build_sql(lambda *names: quote.ident(run.cur, *names)):
        timed(f"{p.table}: {label}", lambda sql=sql: ddl(run, sql))
    if raise_to:
        run.execute("SELECT set_config('maintenance_work_mem', %(m)s, true)", {"m": old})
    run.bulk_tables.discard(p.table)
    after = definitions(run.cur, p.table)
    if after != p.before:
        gone = sorted(set(p.before) - set(after))
        new = sorted(set(after) - set(p.before))
        raise ParkingError(f"{p.table}: its indexes and constraints differ after the bulk load (missing {gone}, "
                           f"unexpected {new}); the run is rolled back, V6 keeps them as they were")


def user_triggers(run, table):
    return run.scalar(USER_TRIGGERS_SQL, {"tbl": table})
