# PRIVATE: the parking-migrate engine. Plain Python (no Ansible imports) so it is
# importable and unit-testable on its own; the modules in library/ are thin wrappers.
"""ChirpStack v4 gateways -> V6 ``gateways`` (phase 1; v5-to-v6-mapping.md §2.8, gotchas J47-J49).

Two entry points, both plain Python returning JSON-safe dicts:

* ``import_gateways(...)``  (state present): reads ChirpStack's ``gateway`` + ``tenant`` tables,
  decides each gateway's V6 owner, and inserts or updates V6 rows, deduplicated on
  (tenant_id, upper(gateway_id)) because the L0 table has no unique key. Every write is
  recorded in the migration's ledger (ledger.py: ``id_map`` for inserted rows, ``before_images``
  for updated ones, a ``runs`` row of phase ``gateways``).
* ``remove_gateways(...)``  (state absent): rollback-1's own path (``rollback.undo_gateways``):
  restores the before-images of updated rows, deletes exactly the rows it inserted, clears
  their ledger entries.

Both run in ONE transaction on the target, under the migration's one lock (``ledger.lock``);
``dry_run`` (check mode) runs the same code and rolls back, so predicted and real counts come
from one code path. Errors are typed (errors.py); anything raised carries ``progress`` (run id,
phase, counts so far). Every statement goes through one recorder (statements.py), so
``executed_queries`` lists each text once.

The package, by concern:

  rules.py     the pure rules (id conversion, status, location, owner and site rules, tenant_map
               resolution, column adaptation, the desired row, idempotence), unit-tested alone
  sql.py       the SQL text
  plumbing.py  the recorder, the lock, introspection (columns, RLS), errors, closing
  importer.py  state present: import_gateways
  removal.py   state absent: remove_gateways

The names below are this package's interface (library/chirpstack_gateway_import.py, the unit
tests); the private ones are re-exported for the tests of the rules and the plumbing.
"""
from .importer import (_device_tenants, _ensure_ledger, _existing_rows, _insert, _reading_tenants, _update,
                       _write, import_gateways)
from .plumbing import (PHASE, ImportFailed, _check_rls, _close, _db_errors, _live_columns, _lock, _progress,
                       _session, _table_exists)
from .removal import remove_gateways
from .rules import (CONFIG_KEY, CONTENT_COLUMNS, DEFAULT_ONLINE_WINDOW, JSON_TYPES, NUMBER_TYPES,
                    OPTIONAL_COLUMNS, REQUIRED_COLUMNS, REQUIRED_MIN_LENGTH, TARGET_TABLE, TEXT_TYPES,
                    TIME_TYPES, _aware, _comparable, _iso, _now_sql, _sql_value, _time_value,
                    _validate_options, canonical_uuid, chirpstack_config, desired_row, gateway_id_hex,
                    gateway_status, heard_tenants, is_uuid, length_problems, location, plan_columns,
                    resolve_owner, resolve_site, resolve_tenant_map, row_differences)
from .sql import (SQL_COLUMNS, SQL_COUNT, SQL_CS_DEVICES, SQL_CS_GATEWAYS, SQL_CS_TENANTS,
                  SQL_LEDGER_INSERT, SQL_LEDGER_INSERTED, SQL_LEDGER_UPDATE, SQL_LOCK_TIMEOUT, SQL_NOW,
                  SQL_RLS, SQL_TABLE_SCHEMA, SQL_V6_DEVICE_TENANTS, SQL_V6_READING_TENANTS,
                  SQL_V6_SITES, SQL_V6_TENANTS)

__all__ = [
    # entry points and options
    "import_gateways", "remove_gateways", "ImportFailed", "DEFAULT_ONLINE_WINDOW", "PHASE", "TARGET_TABLE",
    # rules
    "CONFIG_KEY", "CONTENT_COLUMNS", "JSON_TYPES", "NUMBER_TYPES", "OPTIONAL_COLUMNS", "REQUIRED_COLUMNS",
    "REQUIRED_MIN_LENGTH", "TEXT_TYPES", "TIME_TYPES", "canonical_uuid", "chirpstack_config", "desired_row",
    "gateway_id_hex", "gateway_status", "heard_tenants", "is_uuid", "length_problems", "location",
    "plan_columns", "resolve_owner", "resolve_site", "resolve_tenant_map", "row_differences",
    "_aware", "_comparable", "_iso", "_now_sql", "_sql_value", "_time_value", "_validate_options",
    # SQL
    "SQL_COLUMNS", "SQL_COUNT", "SQL_CS_DEVICES", "SQL_CS_GATEWAYS", "SQL_CS_TENANTS", "SQL_LEDGER_INSERT",
    "SQL_LEDGER_INSERTED", "SQL_LEDGER_UPDATE", "SQL_LOCK_TIMEOUT", "SQL_NOW", "SQL_RLS", "SQL_TABLE_SCHEMA",
    "SQL_V6_DEVICE_TENANTS", "SQL_V6_READING_TENANTS", "SQL_V6_SITES", "SQL_V6_TENANTS",
    # plumbing and the import's steps
    "_check_rls", "_close", "_db_errors", "_live_columns", "_lock", "_progress", "_session", "_table_exists",
    "_device_tenants", "_ensure_ledger", "_existing_rows", "_insert", "_reading_tenants", "_update", "_write",
]
