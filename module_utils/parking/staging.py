"""What the migration reads from V5, and how it lands in staging tables on the target.

Each source is one `COPY (SELECT ...) TO STDOUT` streamed into a TEMP table of the target's
transaction (dropped at commit). The mapping then runs set-based in SQL on the target.
The columns read are declared once in v5columns.py (which schema.py's live check also derives from).
"""
from . import pgcopy
from .v5columns import V5_COLUMNS, select_item, staged_name


def _source(columns):
    """(V5 select list, staging column DDL) of declared columns; an optional column is a
    placeholder {name}, filled by select_sql."""
    select = ", ".join("{%s}" % c.name if c.optional else select_item(c) for c in columns)
    return select, ", ".join(f"{staged_name(c)} {c.type}" for c in columns)


# name -> (V5 select list, staging column DDL), derived from the one declaration of the V5
# columns (v5columns.py: add a V5 column there). Optional V5 columns are NULL when absent.
SOURCES = {name: _source(columns) for name, columns in V5_COLUMNS.items()}


def select_sql(name, optional, where=None):
    """The V5 SELECT for source `name`, with absent optional columns as typed NULLs."""
    cols, _ = SOURCES[name]
    present = optional.get(name, set())
    fill = {c.name: c.name if c.name in present else f"NULL::{c.type} AS {c.name}"
            for c in V5_COLUMNS[name] if c.optional}
    sql = f"SELECT {cols.format(**fill)} FROM {name}"
    if where:
        sql += f" WHERE {where}"
    return sql


def stage(run, name, optional, where=None):
    """Stream V5 rows of `name` into TEMP table stg_<name>; return the row count."""
    _, ddl = SOURCES[name]
    table = f"stg_{name}"
    run.execute(f"CREATE TEMP TABLE {table} ({ddl}) ON COMMIT DROP")
    sql = select_sql(name, optional, where)
    copy_in = f"COPY {table} FROM STDIN"
    run.note(f"COPY ({sql}) TO STDOUT  ->  {copy_in}")
    n = pgcopy.stream(run.src, sql, run.cur, copy_in)
    run.execute(f"ANALYZE {table}")
    return n
