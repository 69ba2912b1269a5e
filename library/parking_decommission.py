#!/usr/bin/python
# -*- coding: utf-8 -*-
# parking-migrate: phase 4 backups and the decommission's state, kept in the V6 ledger.
# Thin module: documentation, argument spec and result; what each state checks and records
# lives in module_utils/parking/decommission.py (fingerprints and the ledger in backup.py).

DOCUMENTATION = r"""
module: parking_decommission
short_description: Verify V5's backups and keep the decommission's state in the V6 ledger (phase 4)
version_added: "1.0.0"
description:
  - A database's fingerprint is, per table, its row count and a content checksum (md5 over the
    sorted md5 of every row), plus every sequence's position; the server computes it, one line
    per table reaches the module.
  - O(state=info) reads the ledger, which databases exist and whether phase 3 switched routing. It
    needs only the O(target) login (V6's owner, which phases 0-3 use anyway); a missing ledger or no
    record means C(status=none). When O(server) is given its login is used too (which databases exist
    is asked of it), so a superuser login that does not work fails the module instead of passing
    unnoticed. Any login that fails (wrong password, unreachable host, missing database) fails it.
  - O(state=backup_verified) compares a copy restored from a dump file with the live database
    and records the file (path, sha256, size, fingerprint, retention date) when they are equal;
    it fails listing every table that differs otherwise.
  - O(state=unchanged_since_backup) fails when a live database no longer equals its newest
    verified backup (checked right before the databases are dropped).
  - O(state=done) records that V5 was decommissioned; O(state=restored) checks each restored
    database against the backup the decommission used and records the rollback.
options:
  state:
    description: What to check or record, see the description.
    type: str
    choices: [info, backup_verified, unchanged_since_backup, done, restored]
    default: info
  databases:
    description: The databases phase 4 backs up and drops.
    type: list
    elements: str
    default: [parking_v5, parking_platform]
  backup:
    description: For O(state=backup_verified), the dump file and where it was restored.
    type: dict
    suboptions:
      db:
        description: The live database that was dumped.
        type: str
        required: true
      path:
        description: Path of the dump file on the host running the module.
        type: path
        required: true
      restored_db:
        description: Scratch database the dump file was restored into.
        type: str
        required: true
      compare_with:
        description:
          - C(live), the live database (phase 4, before anything is removed; the backup is recorded).
          - C(recorded), the fingerprint recorded for this file (a restore test later, after the
            live database is gone; the file's sha256 must be the recorded one; nothing is recorded).
        type: str
        choices: [live, recorded]
        default: live
  retention_days:
    description: Days a verified backup must be kept; recorded as its retention date.
    type: int
    default: 90
  backup_dir:
    description:
      - Where the dumps will be written. When given, the result's RV(backup_space) says whether the
        filesystem that will hold it (its nearest existing directory, measured on the host running
        the module, tmpfs included) has O(backup_factor) times the size of the databases still present.
      - It must be an absolute directory below C(/).
    type: str
  backup_factor:
    description: Free space needed at O(backup_dir), as a multiple of the databases' size.
    type: float
    default: 2.0
  containers:
    description: For O(state=done), the containers that were removed.
    type: list
    elements: str
    default: []
  containers_file:
    description: For O(state=done), where their definitions were saved (rollback-4 recreates them).
    type: path
  server:
    description:
      - Connection to the PostgreSQL server holding the V5 databases, as its superuser (dumps and
        restores are compared as a role that can read every table); O(server.db) is replaced by each
        database in turn.
      - Required for O(state=backup_verified), O(state=unchanged_since_backup) and O(state=restored).
      - Optional for O(state=info); when given, its login is checked (on O(server.db), default
        C(postgres)) and a failing login fails the module.
    type: dict
extends_documentation_fragment:
  - parking.no_diff
  - parking.target
  - parking.server
attributes:
  check_mode:
    support: full
    description: Every check runs; nothing is recorded in the ledger.
seealso:
  - module: community.postgresql.postgresql_db
notes:
  - The ledger lives in V6 (schema C(parking_migrate)), the database that stays.
author:
  - parking-migrate
"""

EXAMPLES = r"""
- name: Read whether V5 was decommissioned, with V6's owner login only
  parking_decommission:
    state: info
    target: "{{ v6_connection }}"
  register: decommission_state

- name: Verify the restored copy of parking_v5 and record the backup
  parking_decommission:
    state: backup_verified
    target: "{{ v6_connection }}"
    server: "{{ admin_connection }}"
    backup:
      db: parking_v5
      path: /var/backups/parking-migrate/20261126T140000Z/parking_v5.pgc
      restored_db: parking_v5_restore_check
    retention_days: 90

- name: Fail if V5 changed since its backup
  parking_decommission:
    state: unchanged_since_backup
    target: "{{ v6_connection }}"
    server: "{{ admin_connection }}"
"""

RETURN = r"""
status:
  description: Latest decommission state in the ledger (C(none), C(done), C(rolled_back)).
  returned: always
  type: str
  sample: done
record:
  description: The latest decommission record.
  returned: always
  type: dict
  sample: {"id": 1, "status": "done", "databases": ["parking_v5", "parking_platform"], "backup_ids": [3, 4],
           "containers": ["parking-api"], "containers_file": "/var/backups/parking-migrate/x/containers.json",
           "at": "2026-11-26T14:02:11+00:00"}
databases:
  description: Whether each database exists (asked of O(server) when given, else through O(target)).
  returned: always
  type: dict
  sample: {"parking_v5": true, "parking_platform": false}
cutover_switched:
  description: True when phase 3 switched routing to V6 (and no rollback-3 undid it).
  returned: always
  type: bool
  sample: true
backups:
  description: Newest verified backup per database (without per-table checksums).
  returned: always
  type: dict
  sample: {"parking_v5": {"id": 3, "path": "/var/backups/parking-migrate/x/parking_v5.pgc", "sha256": "9f2c...",
           "size_bytes": 48211, "tables": 14, "rows": 1523, "fingerprint": "5d41...",
           "verified_at": "2026-11-26T14:01:58+00:00", "retention_until": "2027-02-24"}}
used_backups:
  description: The backups the latest decommission used (what rollback-4 restores), per database.
  returned: always
  type: dict
  sample: {"parking_v5": {"id": 3, "path": "/var/backups/parking-migrate/x/parking_v5.pgc", "sha256": "9f2c..."}}
backup_space:
  description: With O(backup_dir), whether the dumps fit (C(ok)), what they need and what is free.
  returned: when backup_dir is given
  type: dict
  sample: {"dir": "/var/backups/parking-migrate", "ok": false, "mount": "/var/backups", "needed_bytes": 31457280,
           "free_bytes": 65536, "detail": "/var/backups/parking-migrate (mount /var/backups): needed 30.0 MiB = 2 x
           (parking_platform + parking_v5), free 64.0 KiB: free 30.0 MiB more on /var/backups or point
           preflight_backup_dir at a larger filesystem"}
pg_client:
  description:
    - With O(backup_dir), C(pg_dump --version) on the target compared with the server's major version
      (C(ok) false when pg_dump is missing or older than the server).
  returned: when backup_dir is given
  type: dict
  sample: {"name": "postgresql_client", "ok": true, "detail": "pg_dump 15.18 for a PostgreSQL 15 server"}
verified:
  description: For O(state=backup_verified), the restored copy's totals (equal to the live database's).
  returned: when state is backup_verified
  type: dict
  sample: {"db": "parking_v5", "tables": 14, "rows": 1523, "fingerprint": "5d41...", "sha256": "9f2c...",
           "size_bytes": 48211}
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.parking import backup, decommission, preflight
from ansible.module_utils.parking.connection import HAS_PSYCOPG2, connection_option
from ansible.module_utils.parking.errors import ParkingError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="info",
                       choices=["info", "backup_verified", "unchanged_since_backup", "done", "restored"]),
            databases=dict(type="list", elements="str", default=["parking_v5", "parking_platform"]),
            backup=dict(type="dict", options=dict(
                db=dict(type="str", required=True),
                path=dict(type="path", required=True),
                restored_db=dict(type="str", required=True),
                compare_with=dict(type="str", default="live", choices=["live", "recorded"]),
            )),
            retention_days=dict(type="int", default=90),
            backup_dir=dict(type="str"),
            backup_factor=dict(type="float", default=2.0),
            containers=dict(type="list", elements="str", default=[]),
            containers_file=dict(type="path"),
            target=connection_option("parking_v6"),
            server=dict(connection_option("postgres"), default=None),
        ),
        required_if=[("state", "backup_verified", ["backup", "server"]),
                     ("state", "unchanged_since_backup", ["server"]),
                     ("state", "restored", ["server"])],
        supports_check_mode=True,
    )
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"))
    try:
        changed, result = decommission.run(module.params, module.check_mode)
        if module.params["backup_dir"] is not None:  # the pg_dump that will dump, here on the target
            result["pg_client"] = preflight.check_pg_client(preflight.pg_dump_version(module),
                                                            result.pop("server_version_num"))
    except backup.BackupMismatch as exc:
        module.fail_json(msg=str(exc), differences=exc.differences)
    except ParkingError as exc:
        module.fail_json(msg=str(exc))
    except Exception as exc:
        module.fail_json(msg=f"phase 4 ledger step failed, nothing was recorded: {exc}",
                         exception=traceback.format_exc())
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
