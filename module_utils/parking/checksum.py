"""Content checksums of tables: order-independent, streaming (no giant strings in memory).

checksum = (row count, sum of the first 60 bits of md5(row as text)) over the rows; equal
content gives equal checksums whatever the physical order. Used by the verification gate,
rollback checks and tests.
"""

ROW_HASH = "('x' || substr(md5({row}::text), 1, 15))::bit(60)::bigint"


def sql_checksum(row_expr, from_sql, where=None, group_by=None):
    """SELECT [group,] count(*), sum(hash) FROM ... — the canonical checksum query."""
    h = ROW_HASH.format(row=row_expr)
    sel = f"{group_by}, " if group_by else ""
    sql = f"SELECT {sel}count(*), coalesce(sum({h}), 0)::text FROM {from_sql}"
    if where:
        sql += f" WHERE {where}"
    if group_by:
        sql += f" GROUP BY {group_by}"
    return sql


def table_checksum(cur, table, schema="public"):
    cur.execute(sql_checksum("t", f"{schema}.{table} t"))
    n, s = cur.fetchone()
    return f"{n}:{s}"


def database_checksums(cur, schema="public"):
    """{table: 'count:sum'} for every base table of a schema."""
    cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (schema,))
    return {t: table_checksum(cur, t, schema) for (t,) in cur.fetchall()}
