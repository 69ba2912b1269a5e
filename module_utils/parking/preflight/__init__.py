"""Phase 0 preflight: read-only checks of the V5 host and its databases, and the facts that answer
the migration plan's open questions (is parking_platform still used, which legacy services got
traffic, how big V5 is). Nothing here writes anywhere.

The package re-exports every name library/parking_preflight.py, library/parking_decommission.py,
module_utils/parking/decommission.py and the unit tests use, so ``preflight.<name>`` works as
when this was one file. By concern:

  checks.py     host checks: versions, memory, disk space for the backups, Traefik, pg_dump (pure)
  legacy.py     Traefik access log: which legacy services received traffic recently
  databases.py  database checks and facts (read-only psycopg2 sessions), parking_platform usage
  report.py     ``run``: the whole preflight as one report; its summary and Markdown
"""
from ..accesslog import parse_time, read_tail, strip_provider
from .checks import (check, check_disk, check_docker_api, check_memory, check_pg_client, check_pg_version,
                     check_traefik, disk_space, human_bytes, mount_for, parse_version, pg_dump_version,
                     version_at_least)
from .databases import (CHIRPSTACK_TABLES, DATABASE_ROLES, LAST_WRITE_COLUMN, TIMESTAMP_TYPES, chirpstack_facts,
                        database_size, gather, open_databases, schema_differences, table_stats, usage,
                        usage_answer)
from .legacy import count_access_log, legacy_names, legacy_traffic
from .report import build_report, render_markdown, run, summary

__all__ = [
    "parse_time", "read_tail", "strip_provider",
    "check", "check_disk", "check_docker_api", "check_memory", "check_pg_client", "check_pg_version",
    "check_traefik", "disk_space", "human_bytes", "mount_for", "parse_version", "pg_dump_version",
    "version_at_least",
    "CHIRPSTACK_TABLES", "DATABASE_ROLES", "LAST_WRITE_COLUMN", "TIMESTAMP_TYPES", "chirpstack_facts",
    "database_size", "gather", "open_databases", "schema_differences", "table_stats", "usage", "usage_answer",
    "count_access_log", "legacy_names", "legacy_traffic",
    "build_report", "render_markdown", "run", "summary",
]
