# PRIVATE: the parking-migrate engine. Plain Python (no Ansible imports) so it is
# importable and unit-testable on its own; the modules in library/ are thin wrappers.
"""The SQL text of the gateway import: ChirpStack reads, V6 reads and catalog queries, its ledger rows."""
from .. import ledger

# ChirpStack columns present in every v4 release (chirpstack-v4.md §2.1-§2.2).
SQL_CS_GATEWAYS = """
SELECT g.gateway_id, g.tenant_id::text AS tenant_id, t.name AS tenant_name, g.name,
       g.description, g.latitude, g.longitude, g.altitude, g.last_seen_at,
       g.stats_interval_secs, g.tags, g.properties, g.created_at, g.updated_at
FROM gateway g JOIN tenant t ON t.id = g.tenant_id
ORDER BY g.gateway_id
"""
SQL_CS_TENANTS = "SELECT t.id::text, t.name FROM tenant t ORDER BY t.name, t.id"
SQL_CS_DEVICES = """
SELECT a.tenant_id::text, d.dev_eui
FROM device d JOIN application a ON a.id = d.application_id
"""

SQL_LOCK_TIMEOUT = "SET LOCAL lock_timeout = '30s'"
SQL_NOW = "SELECT now()"
SQL_TABLE_SCHEMA = """
SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass(%s)
"""
SQL_COLUMNS = """
SELECT column_name, data_type, character_maximum_length, is_nullable = 'YES',
       column_default IS NOT NULL OR is_identity = 'YES' OR is_generated <> 'NEVER'
FROM information_schema.columns
WHERE table_schema = %s AND table_name = %s
ORDER BY ordinal_position
"""
SQL_RLS = """
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
       pg_get_userbyid(c.relowner) = current_user, r.rolsuper OR r.rolbypassrls
FROM pg_class c, pg_roles r
WHERE c.oid = to_regclass(%s) AND r.rolname = current_user
"""
SQL_V6_TENANTS = "SELECT id::text, slug, name, is_active FROM tenants ORDER BY slug"
SQL_V6_SITES = "SELECT id::text, tenant_id::text, name FROM sites"
SQL_V6_DEVICE_TENANTS = """
SELECT upper(dev_eui), tenant_id::text FROM {table}
WHERE upper(dev_eui) = ANY(%s) AND tenant_id <> %s::uuid
"""
# V6-native uplinks: ChirpStack's up event names its gateways in rxInfo[].gatewayId (lowercase
# hex). raw_payload is text and may hold anything, so ids are extracted by pattern rather than
# by casting (a cast would abort the transaction on the first malformed payload).
SQL_V6_READING_TENANTS = r"""
SELECT DISTINCT upper(m.id[1]), r.tenant_id::text
FROM sensor_readings r
CROSS JOIN LATERAL regexp_matches(r.raw_payload, '"gatewayId"\s*:\s*"([0-9A-Fa-f]{16})"', 'g') AS m(id)
WHERE r.raw_payload LIKE '%%gatewayId%%' AND r.tenant_id <> %s::uuid
"""
SQL_COUNT = "SELECT count(*) FROM gateways"
SQL_LEDGER_INSERTED = f"""
SELECT v6_id FROM {ledger.SCHEMA}.id_map WHERE entity = 'gateways' AND action = 'inserted'
"""
SQL_LEDGER_INSERT = f"""
INSERT INTO {ledger.SCHEMA}.id_map (entity, v5_id, v6_id, action, run_id)
VALUES ('gateways', %s || ':' || %s, %s, 'inserted', %s)
"""
SQL_LEDGER_UPDATE = f"""
INSERT INTO {ledger.SCHEMA}.before_images (run_id, tbl, row_id, before) VALUES (%s, 'gateways', %s, %s::jsonb)
"""
