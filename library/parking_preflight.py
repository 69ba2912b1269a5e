#!/usr/bin/python
# -*- coding: utf-8 -*-
# parking-migrate: phase 0, preflight. Thin module: documentation, argument spec and result;
# the checks, the database reads, the access-log counting and the report live in the package
# module_utils/parking/preflight/ (checks.py, databases.py, legacy.py, report.py).

from __future__ import annotations

DOCUMENTATION = r"""
---
module: parking_preflight
short_description: Read-only preflight of the V5 host and its databases before the V5 -> V6 migration
version_added: "1.0.0"
description:
  - Connects to each of the four databases (ChirpStack, V5, V6, legacy C(parking_platform)) and reports,
    per database, whether it is reachable and why not (the driver's error and what to check).
  - Checks the PostgreSQL server version against O(min_pg_major), that the ChirpStack database holds the
    ChirpStack v4 tables the migration reads, and that the live V5 and V6 schemas are what the V5 -> V6
    mapping reads and writes (the same column list as the migration, C(module_utils/parking/schema.py));
    differences are listed one by one.
  - Evaluates the host facts the caller measured with collection modules (Docker API version, total
    memory, mounts, the Traefik container) against their minimums, and the free space where the
    backups go against O(backup_factor) times the size of O(backup_databases).
  - Answers the migration plan's open questions as facts. Is anything still using C(parking_platform)
    (sessions other than its own, rows inserted/updated/deleted since the statistics reset, last
    (auto)vacuum/analyze, the newest C(*_at)-style timestamp per table)? Which legacy services received
    traffic in the last O(window_hours) (requests per Traefik router and service in the JSON access log
    O(access_log); a missing log makes the answer C(unknown), it is not a failure)? How big is V5's data
    (database size, exact rows and size per table)?
  - Returns the whole phase-0 report (RV(report), RV(markdown)) for the caller to write. Never fails
    because a check failed, so every failed check can be reported at once; the caller fails on
    RV(passed). Fails only on invalid options or a missing psycopg2.
  - Changes nothing anywhere. Database sessions are read-only.
options:
  min_pg_major:
    description: Oldest PostgreSQL major version accepted.
    type: int
    default: 15
  exact_counts:
    description: Count V5's rows exactly (C(count(*))); false uses the planner's estimate (large servers).
    type: bool
    default: true
  docker_api_version:
    description: API version of the Docker daemon (C(ApiVersion) of its C(/version) endpoint); empty = unknown (fails).
    type: str
    default: ""
  docker_server_version:
    description: Version of the Docker engine, for the report.
    type: str
    default: ""
  min_docker_api:
    description: Oldest Docker API version accepted.
    type: str
    default: "1.41"
  memory_mb:
    description: Total memory of the host in MB (C(ansible_facts.memtotal_mb)); omitted = unknown (fails).
    type: int
  min_memory_mb:
    description: Least total memory accepted, in MB.
    type: int
    default: 2048
  mounts:
    description:
      - The host's mounts (C(ansible_facts.mounts)). Only a fallback - the module measures the free space of the
        filesystem holding O(backup_dir) (its nearest existing directory) itself, tmpfs included.
    type: list
    elements: dict
    default: []
  backup_dir:
    description: Directory the decommission phase writes its backups to (it need not exist yet).
    type: str
    default: /var/backups/parking-migrate
  backup_factor:
    description: Free space at O(backup_dir) must be at least this many times the size of O(backup_databases).
    type: float
    default: 2.0
  backup_databases:
    description: Databases the decommission phase dumps before dropping them.
    type: list
    elements: str
    default: [parking_v5, parking_platform]
  traefik:
    description:
      - The Traefik container as C(community.docker.docker_container_info) returns it (RV(community.docker.docker_container_info#module:container)),
        or null when it does not exist. It must be running (and healthy when it has a health check).
    type: dict
  traefik_container:
    description: Name of the Traefik container, for messages.
    type: str
    default: parking-traefik
  traefik_required_args:
    description: Flags Traefik's command must carry (e.g. C(--providers.file.directory), which later phases write to).
    type: list
    elements: str
    default: []
  legacy_services:
    description:
      - Legacy containers and the Traefik service names that route to them. Routers and services declared by
        the container's own C(traefik.http.*) labels (from O(legacy_containers)) are added.
    type: dict
    default: {}
  legacy_containers:
    description: C(docker_container_info) results of the legacy containers by name (null when absent), for state and labels.
    type: dict
    default: {}
  access_log:
    description:
      - Path of Traefik's access log (C(--accesslog.format=json)) on the host running the module.
      - When missing or unreadable the traffic answer is C(unknown (no access log at PATH)); no failure.
    type: path
  window_hours:
    description: Requests that started within this many hours count as recent traffic.
    type: float
    default: 24
  access_log_max_bytes:
    description: Read at most the last this many bytes of O(access_log) (the answer says so when the log is longer).
    type: int
    default: 268435456
  elapsed_s:
    description: Seconds the caller already spent on this preflight (gathering facts), added to C(duration_s).
    type: float
    default: 0
  pg_client_check:
    description:
      - Compare C(pg_dump --version) on the target (phase 4 dumps with it) with the server's major
        version; an older pg_dump or none at all fails the check C(postgresql_client).
    type: bool
    default: true
extends_documentation_fragment:
  - parking.chirpstack
  - parking.source
  - parking.target
  - parking.platform
attributes:
  check_mode:
    support: full
    description: Read only; runs the same in check mode (RV(report.check_mode) says which).
  diff_mode:
    support: none
  idempotent:
    support: full
    description: Changes nothing; C(changed) is always false.
  platform:
    platforms: posix
    description: Run it on the Docker host (it reads Traefik's access log there); it reaches the databases over the network.
notes:
  - Log in as the databases' owner (or a superuser). Another role sees other users' sessions in
    C(pg_stat_activity) without their client address and state.
  - The write counters of C(pg_stat_user_tables) count since the statistics were last reset (RV(facts.parking_platform.stats_reset),
    null = since the server's initialisation); the newest timestamp per table does not depend on them.
seealso:
  - module: parking_migration_verify
  - module: community.docker.docker_host_info
  - module: community.docker.docker_container_info
author:
  - parking-migrate
"""

EXAMPLES = r"""
- name: Run the preflight checks
  parking_preflight:
    chirpstack: "{{ pg | combine({'db': 'chirpstack'}) }}"
    source: "{{ pg | combine({'db': 'parking_v5'}) }}"
    target: "{{ pg | combine({'db': 'parking_v6'}) }}"
    platform: "{{ pg | combine({'db': 'parking_platform'}) }}"
    docker_api_version: "{{ docker_version.json.ApiVersion }}"
    docker_server_version: "{{ docker_version.json.Version }}"
    memory_mb: "{{ ansible_facts.memtotal_mb }}"
    mounts: "{{ ansible_facts.mounts }}"
    min_memory_mb: 2048
    backup_dir: /var/backups/parking-migrate
    traefik: "{{ traefik_info.container }}"
    traefik_required_args: [--providers.file.directory]
    legacy_services:
      parking-website: [website]
      parking-kuando-ui: [kuando]
      parking-contact-api: [contact-api]
      parking-device-manager: [devices]
    access_log: /opt/v5-smart-parking/logs/traefik/access.log
    window_hours: 24
  vars:
    pg:
      login_host: db.verdegris.eu
      login_port: 5432
      login_user: parking_user
      login_password: "{{ vault_parking_pg_owner_password }}"
  register: preflight

- name: Fail listing every failed check
  ansible.builtin.fail:
    msg: "{{ preflight.failed_checks | map(attribute='detail') | join('; ') }}"
  when: not preflight.passed
"""

RETURN = r"""
passed:
  description: Whether every check passed.
  returned: success
  type: bool
  sample: false
checks:
  description: Every check, in order, with its result and a one-line detail (what is wrong and what to do).
  returned: success
  type: list
  elements: dict
  sample:
    - {name: docker_api, ok: true, detail: "Docker API 1.41 (minimum 1.41)"}
    - {name: database_platform, ok: false, detail: "unable to connect to the platform database 'parking_platfrm' on 127.0.0.1:55432
        as 'parking_user': FATAL: database \"parking_platfrm\" does not exist. Check platform.db: the database must exist before
        this phase runs."}
failed_checks:
  description: The checks that failed (subset of RV(checks)).
  returned: success
  type: list
  elements: dict
  sample: [{name: memory, ok: false, detail: "1024 MB total, below the minimum 2048 MB: ..."}]
facts:
  description: >-
    What the preflight found: C(host), C(backup), C(databases) (per key: db, ok, error, server_version,
    size_bytes), C(database_sizes), C(chirpstack), C(v5) (size_bytes, rows, tables), C(schema_differences),
    C(parking_platform) (sessions, writes, per-table last write), C(traffic) (access log counts),
    C(legacy_containers), C(open_questions).
  returned: success
  type: dict
  sample:
    open_questions:
      parking_platform_in_use: "no sign of current use: no other connections; 0 rows written since the statistics reset (server start);
        newest row timestamp 2026-10-01T09:12:00+00:00 in parking_operations.actuations"
      legacy_services_with_traffic: "parking-website (12) in the last 24 h"
      v5_data_size: "11.2 MiB on disk, 9182 rows in 22 tables (largest: sensor_readings 6000, state_changes 2400, reservations 90)"
    database_sizes: {chirpstack: 8127011, parking_platform: 8012323, parking_v5: 11743779, parking_v6: 9874563}
report:
  description: >-
    The phase-0 report: C(phase) (0), C(title), C(status) (passed or failed), C(check_mode), C(generated_at)
    (ISO 8601 UTC), C(duration_s), C(summary) (3-8 one-line strings), C(checks), C(facts).
  returned: success
  type: dict
  sample: {phase: 0, title: Preflight, status: passed, check_mode: false, generated_at: "2026-11-26T12:00:00Z",
           duration_s: 3.42, summary: ["14/14 checks passed"], checks: [], facts: {}}
markdown:
  description: The report as Markdown (a table of checks, then the open questions answered).
  returned: success
  type: str
  sample: "# Phase 0 — Preflight: PASSED\n..."
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.parking.connection import HAS_PSYCOPG2, connection_option
from ansible.module_utils.parking import preflight


def main():
    module = AnsibleModule(argument_spec=dict(
        chirpstack=connection_option("chirpstack"),
        source=connection_option("parking_v5"),
        target=connection_option("parking_v6"),
        platform=connection_option("parking_platform"),
        min_pg_major=dict(type="int", default=15),
        exact_counts=dict(type="bool", default=True),
        docker_api_version=dict(type="str", default=""),
        docker_server_version=dict(type="str", default=""),
        min_docker_api=dict(type="str", default="1.41"),
        memory_mb=dict(type="int"),
        min_memory_mb=dict(type="int", default=2048),
        mounts=dict(type="list", elements="dict", default=[]),
        backup_dir=dict(type="str", default="/var/backups/parking-migrate"),
        backup_factor=dict(type="float", default=2.0),
        backup_databases=dict(type="list", elements="str", default=["parking_v5", "parking_platform"]),
        traefik=dict(type="dict"),
        traefik_container=dict(type="str", default="parking-traefik"),
        traefik_required_args=dict(type="list", elements="str", default=[]),
        legacy_services=dict(type="dict", default={}),
        legacy_containers=dict(type="dict", default={}),
        access_log=dict(type="path"),
        window_hours=dict(type="float", default=24),
        access_log_max_bytes=dict(type="int", default=256 * 1024 * 1024),
        elapsed_s=dict(type="float", default=0),
        pg_client_check=dict(type="bool", default=True),
    ), supports_check_mode=True)
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"))
    p = module.params
    if p["backup_factor"] <= 0 or p["window_hours"] <= 0:
        module.fail_json(msg="backup_factor and window_hours must be greater than 0")
    try:
        preflight.parse_version(p["min_docker_api"])
    except ValueError:
        module.fail_json(msg=f"min_docker_api {p['min_docker_api']!r} is not a version such as 1.41")
    connections = {key: p[key] for key in ("chirpstack", "source", "target", "platform")}
    host = {key: p[key] for key in ("docker_api_version", "docker_server_version", "memory_mb", "mounts", "traefik",
                                    "legacy_containers")}
    try:  # measured here, on the target: the filesystem that will really hold the dumps (tmpfs too)
        host["disk_space"] = preflight.disk_space(p["backup_dir"])
    except OSError:
        host["disk_space"] = None
    if p["pg_client_check"]:  # the pg_dump phase 4 will run, here on the target
        host["pg_dump_version"] = preflight.pg_dump_version(module)
    options = {key: p[key] for key in ("min_docker_api", "min_memory_mb", "min_pg_major", "backup_dir", "backup_factor",
                                       "backup_databases", "traefik_container", "traefik_required_args", "access_log",
                                       "window_hours", "access_log_max_bytes", "legacy_services", "elapsed_s",
                                       "exact_counts")}
    try:
        report = preflight.run(connections, host, options, check_mode=module.check_mode)
    except Exception as exc:
        module.fail_json(msg=f"preflight could not run: {exc}", exception=traceback.format_exc())
    failed = [c for c in report["checks"] if not c["ok"]]
    module.exit_json(changed=False, passed=not failed, checks=report["checks"], failed_checks=failed,
                     facts=report["facts"], report=report, markdown=preflight.render_markdown(report))


if __name__ == "__main__":
    main()
