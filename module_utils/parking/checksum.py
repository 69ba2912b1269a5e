"""Content checksums of rows: order-independent, streaming (no giant strings in memory).

checksum = (row count, sum of the first 60 bits of md5(row as text)) over the rows; equal
content gives equal checksums whatever the physical order. Used by the verification gate
and the tests.
"""

ROW_HASH = "('x' || substr(md5({row}::text), 1, 15))::bit(60)::bigint"
