"""Identifiers and literals in SQL text, quoted by psycopg2 (psycopg2.sql) for the connection of
the cursor given, never by hand.

The one exception is mapping.sql_literal, for SQL the engine builds before it has a connection
(rule tables rendered as CASE, module-level constants): psycopg2's adapters without a connection
double backslashes without the E'' prefix, which changes the value when
standard_conforming_strings is on. That quoter only doubles quotes, which is exact with
standard_conforming_strings on, and connection.connect sets it on every session.
"""
from .connection import psycopg2


def ident(cur, *names):
    """A (qualified) identifier: ident(cur, "public", "spaces") -> "public"."spaces"."""
    return psycopg2.sql.Identifier(*names).as_string(cur)


def literal(cur, value):
    """A literal for the cursor's connection (None -> NULL)."""
    return psycopg2.sql.Literal(value).as_string(cur)
