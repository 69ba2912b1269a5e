#!/usr/bin/python
# -*- coding: utf-8 -*-
# parking-migrate: phase 1 data migration V5 -> V6.

DOCUMENTATION = r"""
module: parking_tenant_migration
short_description: Migrate the V5 Smart Parking database into V6, tenant-aware and deduplicated
version_added: "1.0.0"
description:
  - Moves V5 (C(parking_v5)) tenants, users with their memberships, sites, spaces, sensor and
    display devices, device assignment history, reservations, orphan devices and the
    state-change/reading history into V6 (C(parking_v6)).
  - Every device gets a tenant through space -> site -> tenant, linked by EUI as V5 does (or by
    the older FK columns); devices in no live space go to the platform tenant, unassigned.
  - Rows V6 already has are matched on their natural key (tenant id or slug, user email
    case-insensitively, site per tenant, space per site, device EUI) and not duplicated; a V5 ->
    V6 id map is kept in the ledger (schema C(parking_migrate) of the target).
  - Bulk data moves by COPY, streamed from the source into staging tables of the target's
    transaction, then set-based SQL. Memory stays flat as tables grow.
  - "History (readings, state changes) streams straight into V6's tables, in binary format when
    that is exact. In a full run on a V6 that is not serving yet (no cutover recorded in the ledger,
    no other client session connected to V6's database, the locks granted within 5 s) a history
    table loading at least 100,000 rows, and no fewer than it holds, takes the bulk path inside the
    run's transaction: its primary key, indexes and foreign keys are dropped, the rows copied, the
    key and indexes built again from their own definitions and the foreign keys re-added under
    their names (which validates every row set-based), then the table's indexes, constraints and
    triggers are compared with what they were. A failure or a kill rolls the drops back with the rows.
    Otherwise (delta runs, V6 in use) the table is loaded with its indexes live. RV(history_load)
    says which path each table took and why."
  - "Reports the V6 WAL written during the run (RV(v6_wal_bytes)) and how long the migration's
    advisory lock was held, from taking it to the commit or rollback (RV(lock_held_seconds))."
  - The live schemas are read first; a missing column or one of another type fails the run,
    listing every difference.
  - Makes V6 row-level security effective for a non-owner application role (O(app_role)).
  - O(state=absent) (rollback-1) removes exactly what the tool inserted, restores what it
    updated and undoes its grants and policies; rows V6 had before stay.
  - "Rules for the real V6 application: a reservation whose window has ended (end_time at or
    before the run's time) and whose V5 status maps to C(active) (pending, confirmed, active) is
    migrated as C(completed), V5's status kept in metadata C(v5_status); migrated reservations
    that end while still active are closed the same way by later runs (delta). Count:
    C(reservations.ended_closed)."
  - "A V5 booking without a V6 user (user_email NULL or matching no V6 user) gets the user_id of
    one placeholder user created when first needed (O(anonymous_user_email), name C(V5 anonymous
    bookings), inactive, a password hash of no password, no membership, metadata C(created_by:
    parking-migrate)); the booking email stays in C(user_email). The placeholder is in the ledger,
    so rollback-1 removes it. Counts: C(reservations.anonymous_user), C(users.placeholder_created)."
  - "V6's login takes the membership with the latest C(created_at). Among a user's memberships
    the one in the user's primary V5 tenant, where V5's login lands (active first, in a tenant active in V5 first, a
    platform_admin membership first, then the oldest, then the id; V5 users have no tenant column) is made strictly the latest: when phase 1 inserted it, it gets max(others) + 1 ms;
    when V6 already had it, the memberships phase 1 inserted for that user go 1 ms below it.
    Rows V6 had are never rewritten (a conflict among them is a warning). The V5 time is kept in
    metadata C(v5_created_at). Count: C(user_memberships.login_reordered)."
  - "Tenants phase 1 inserts keep V5's C(is_active) (NULL = true). A tenant V6 already had (same
    id or slug) keeps V6's value; each difference is listed in RV(tenant_is_active_differences)."
  - "Readings older than the run's time minus O(history_retention_days) are not migrated (V6's
    cleanup deletes C(sensor_readings) older than 90 days); they stay in V5 and in phase 4's backup
    and are counted in C(sensor_readings.skipped_retention). The gate applies the same cutoff."
  - One transaction on the target, so any error rolls everything back, sequences included
    (C(state_changes_id_seq) moves by the transactional C(ALTER SEQUENCE ... RESTART); check mode and a
    failed run leave it where it was, rollback-1 restores last_value and is_called exactly). A
    PostgreSQL advisory lock, taken before any ledger DDL, keeps two runs apart.
  - "V6's edits win. For what phase 1 keeps in step with V5 after the first run (a device's space link,
    a space's state, a reservation's status) the ledger (C(row_state)) holds the V5 value last carried
    and the V6 value last written. A re-run or a delta applies a V5 change only when V6 still holds what
    the tool wrote; when V6 changed it too, V6's value stays and the conflict is listed in
    RV(decisions) (C(conflict_v6_kept)). A value V5 did not change is never rewritten, so V6's own edits
    (a sensor moved to another space, a status changed) survive every re-run. Names, tenants' and
    sites' attributes and rows V6 had are never rewritten; assignment rows are written only for the
    links a run applies."
  - "Placement rule: a device linked from several live V5 spaces (by EUI or by the old id column, of
    one tenant or several) is placed on one, chosen in this order: linked by EUI and id, then by EUI
    (V5's router links by EUI; an id alone is often stale), then the most recently updated space,
    then the lowest space id. Every such device is in RV(decisions) (C(placed_by_rule)) with the space
    chosen and each space that loses it, with its tenant."
  - "Reservations on soft-deleted V5 spaces are not migrated (they would become live C(active) rows on a
    deleted space): each is skipped with its reason (RV(decisions) C(not_migrated), count
    C(reservations.skipped)). Devices linked only from soft-deleted spaces are unplaced (C(unplaced))."
options:
  state:
    description: C(present) migrates; C(absent) rolls phase 1 back from the ledger (V5 is not read).
    type: str
    choices: [present, absent]
    default: present
  mode:
    description:
      - C(full) migrates everything not migrated yet (history from O(history_since)).
      - C(delta) moves only what V5 wrote since the last run's watermark (used at cutover); it
        needs an earlier successful run.
    type: str
    choices: [full, delta]
    default: full
  history_since:
    description: Only history (readings, state changes) at or after this time (ISO 8601). Default all of it.
    type: str
  history_retention_days:
    description:
      - Readings (C(sensor_readings)) older than the run's time minus this many days are not
        migrated, V6 deletes them at start-up and daily. C(0) migrates all of them.
      - The shortest retention any run applied is kept in the ledger; the gate uses it.
    type: int
    default: 90
  anonymous_user_email:
    description: Email of the placeholder V6 user that owns V5 bookings without a V6 user.
    type: str
    default: v5-anonymous-bookings@parking-migrate.invalid
  allow_rejects:
    description:
      - Rows that cannot be placed safely (malformed EUI, a conflict with V6) are rejects with a reason.
      - When false (default) any reject fails the run and nothing is written.
    type: bool
    default: false
  platform_tenant_id:
    description: The V6 platform tenant, home of unplaced devices. Must exist in V6.
    type: str
    default: "00000000-0000-0000-0000-000000000000"
  app_role:
    description: V6 application role that RLS must apply to (created if missing). Empty to skip.
    type: str
    default: parking_v6_app
  app_role_password:
    description: Password given to O(app_role) when the module creates it.
    type: str
  progress_log:
    description:
      - Append one line per step to this file, for C(tail -f).
      - "History COPY steps write a line every 5 s with rows so far, rows/s and an ETA (against V5's
        row count, rejects included, so it errs long)."
    type: path
  gate:
    description:
      - Run the independent oracle (module_utils C(parking/oracle.py)) inside the run's transaction,
        after every write and before the commit. It computes from V5, by its own path written from
        the mapping reference, what V6 must hold per tenant (tenants, users by lower(email),
        memberships, sites, spaces, device EUIs with tenant and space, reservations with window,
        status class and user, readings per device, state changes per space) and compares.
      - Any difference fails the run and nothing is committed, in check mode too. Turn off only to
        investigate; M(parking_migration_verify) runs the same oracle again on the committed state.
    type: bool
    default: true
extends_documentation_fragment:
  - parking.source
  - parking.target
  - parking.attributes
seealso:
  - module: parking_migration_verify
  - module: chirpstack_gateway_import
notes:
  - Reads V5 as its owner or a superuser (V5 forces RLS on 10 tables); writes V6 as its owner.
author:
  - parking-migrate
"""

EXAMPLES = r"""
- name: Migrate V5 into V6 (phase 1)
  parking_tenant_migration:
    source:
      login_host: db.verdegris.eu
      login_user: parking_user
      login_password: "{{ vault_parking_pg_owner_password }}"
      db: parking_v5
    target:
      login_host: db.verdegris.eu
      login_user: parking_user
      login_password: "{{ vault_parking_pg_owner_password }}"
      db: parking_v6
    allow_rejects: true
  register: migration

- name: Show what moved (the result is the report; the data_migration role keeps it on the controller)
  ansible.builtin.debug:
    var: migration.counts

- name: Catch up what V5 wrote since the last run (cutover)
  parking_tenant_migration:
    source: "{{ v5_connection }}"
    target: "{{ v6_connection }}"
    mode: delta
    allow_rejects: true

- name: Roll phase 1 back (rollback-1)
  parking_tenant_migration:
    target: "{{ v6_connection }}"
    state: absent
"""

RETURN = r"""
run_id:
  description: Id of this run in the ledger (C(parking_migrate.runs)).
  returned: always
  type: str
  sample: 3f6c1a52-8d1e-4b7a-a1c2-5e6f7a8b9c0d
counts:
  description: Per entity, rows read, inserted, matched (V6 had them), already_migrated, rejected, skipped.
  returned: success
  type: dict
  sample: {"sensor_devices": {"read": 13, "inserted": 12, "rejected": 1}}
rejects:
  description: V5 rows that could not be placed, with the reason.
  returned: success
  type: list
  elements: dict
  sample: [{"entity": "sensor_devices", "v5_id": "cd44f574-a183-4840-b305-8bc3cfc287f1",
            "reason": "malformed EUI 'A8404100018E4D': expected 16 hex digits"}]
warnings_found:
  description: Placement decisions worth a look (device linked from several spaces, only from deleted ones).
  returned: success
  type: list
  elements: str
  sample: ["sensor 58A0CB0000103B22 (V5 cb2b...) is linked from 2 live V5 spaces; chose 9c11... (rule: ...)"]
watermarks:
  description: Highest V5 history ids migrated; the next run (and mode=delta) starts there.
  returned: success
  type: dict
  sample: {"sensor_readings": 1027, "state_changes": 92}
timings:
  description: Seconds per step.
  returned: success
  type: dict
  sample: {"stage sensor_readings": 0.41, "sensor_readings": 0.93}
diff:
  description: V6 row counts per table before and after (with --diff, or always in the result).
  returned: success
  type: dict
  sample: {"before": {"sensor_devices": 0}, "after": {"sensor_devices": 12}}
executed_queries:
  description: The statements issued, with placeholders (values and passwords never included).
  returned: success
  type: list
  elements: str
  sample: ["CREATE TEMP TABLE stg_tenants (...) ON COMMIT DROP"]
decisions:
  description:
    - What an operator must see, per V5 row (first 1000); kinds C(v6_name_kept) (a matched tenant keeps
      V6's name), C(placed_by_rule), C(unplaced) (with why), C(not_migrated) (a skip with its reason),
      C(conflict_v6_kept), C(tenant_changed) (V5 moved a device to another tenant after phase 1).
  returned: success
  type: list
  elements: dict
  sample: [{"entity": "reservations", "v5_id": "7e32...", "decision": "not_migrated",
            "detail": "reservation 7e32... is on V5 space 660d..., soft-deleted at ...: not migrated"}]
decision_counts:
  description: Decisions per kind and entity.
  returned: success
  type: list
  elements: dict
  sample: [{"decision": "placed_by_rule", "entity": "sensor_devices", "count": 1}]
gate:
  description: The in-run oracle's result (passed, differences, per_tenant, v6_edits_kept).
  returned: when O(gate=true)
  type: dict
  sample: {"passed": true, "differences": [], "per_tenant": {"7723...": {"sensor_devices": {"expected": 4, "found": 4}}}}
tenant_is_active_differences:
  description: Tenants V6 already had whose C(is_active) differs from V5's; V6's value is kept.
  returned: success
  type: list
  elements: dict
  sample: [{"tenant_id": "4c1f...", "slug": "city-parking", "v5_is_active": false, "v6_is_active": true}]
history_cutoff:
  description: Readings older than this (ISO 8601) were not migrated; null when O(history_retention_days=0).
  returned: success
  type: str
  sample: "2026-09-01T17:03:36.123456+00:00"
history_retention_days:
  description: The retention applied by this run (days, 0 = none).
  returned: success
  type: int
  sample: 90
history_load:
  description:
    - Per history table, how it was loaded, C(bulk) (key, indexes and foreign keys built again after
      the load, in the run's transaction) or C(live) (indexes in place), and why; for C(bulk) the keys
      and indexes rebuilt, the foreign keys validated, what stayed live and the maintenance_work_mem
      of the rebuild.
  returned: success
  type: dict
  sample: {"sensor_readings": {"path": "bulk", "reason": "full run, V6 not serving (no cutover recorded, no other
           session on it), ~800,005 rows to load into 0", "indexes_rebuilt": ["idx_sensor_readings_device",
           "idx_sensor_readings_received"], "foreign_keys_validated": ["sensor_readings_device_id_fkey",
           "sensor_readings_tenant_id_fkey"], "keys_rebuilt": ["sensor_readings_pkey"], "kept_live": [],
           "maintenance_work_mem": "512MB for the rebuild (was 64MB)"},
           "state_changes": {"path": "live", "reason": "delta run: V6 may be serving, its indexes and foreign
           keys stay live"}}
v6_wal_bytes:
  description:
    - Bytes of write-ahead log V6's server wrote from taking the lock to the end of the run (before the
      commit), the run's own plus anything other databases of that server wrote meanwhile.
  returned: success
  type: int
  sample: 372265104
lock_held_seconds:
  description: How long the run held the migration's advisory lock, from taking it to the commit (or the rollback of check mode).
  returned: success
  type: float
  sample: 15.2
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.parking.connection import HAS_PSYCOPG2, connection_option
from ansible.module_utils.parking.errors import GateFailed, ParkingError, RejectsPresent, SchemaMismatch
from ansible.module_utils.parking import migrate, rollback
from ansible.module_utils.parking.session import Progress, require_uuid, transactional


def argument_spec():
    return dict(
        source=connection_option("parking_v5"),
        target=connection_option("parking_v6"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        mode=dict(type="str", default="full", choices=["full", "delta"]),
        history_since=dict(type="str"),
        history_retention_days=dict(type="int", default=90),
        anonymous_user_email=dict(type="str", default="v5-anonymous-bookings@parking-migrate.invalid"),
        allow_rejects=dict(type="bool", default=False),
        platform_tenant_id=dict(type="str", default="00000000-0000-0000-0000-000000000000"),
        app_role=dict(type="str", default="parking_v6_app"),
        app_role_password=dict(type="str", no_log=True),
        progress_log=dict(type="path"),
        gate=dict(type="bool", default=True),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"))
    p = module.params
    progress = Progress(p["progress_log"])
    try:
        platform = require_uuid(p["platform_tenant_id"], "platform_tenant_id")
        if p["state"] == "absent":
            result = transactional(p["target"], lambda tgt, run_id: rollback.rollback(tgt, run_id),
                                   module.check_mode, state="absent", mode="rollback")
        else:
            def run(tgt, src, run_id):
                return migrate.migrate(src, tgt, run_id, platform, mode=p["mode"],
                                       history_since=p["history_since"], allow_rejects=p["allow_rejects"],
                                       app_role=p["app_role"] or None, app_role_password=p["app_role_password"],
                                       progress=progress,
                                       history_retention_days=p["history_retention_days"],
                                       anonymous_user_email=p["anonymous_user_email"],
                                       gate=migrate.oracle_gate if p["gate"] else None)
            result = transactional(p["target"], run, module.check_mode, sources=[(p["source"], "source")],
                                   mode=p["mode"])
    except GateFailed as exc:
        res = exc.result
        module.fail_json(msg=str(exc), run_id=getattr(exc, "run_id", None), gate=res.get("gate"),
                         counts=res.get("counts"), decisions=res.get("decisions"), progress=progress.lines)
    except RejectsPresent as exc:
        module.fail_json(msg=str(exc), run_id=getattr(exc, "run_id", None), rejects=exc.rejects.get("rejects"),
                         counts=exc.rejects.get("counts"), progress=progress.lines)
    except SchemaMismatch as exc:
        module.fail_json(msg=str(exc), differences=exc.differences, run_id=getattr(exc, "run_id", None))
    except ParkingError as exc:
        module.fail_json(msg=str(exc), run_id=getattr(exc, "run_id", None), progress=progress.lines)
    except Exception as exc:  # a driver or unexpected error: rolled back, reported with its trace
        module.fail_json(msg=f"phase 1 failed and was rolled back, nothing was written: {exc}",
                         run_id=getattr(exc, "run_id", None), progress=progress.lines,
                         exception=traceback.format_exc())
    if "lock_held_seconds" in result and "v6_wal_bytes" in result:
        progress(f"{'rolled back (check mode)' if module.check_mode else 'committed'}: advisory lock held "
                 f"{result['lock_held_seconds']}s, V6 WAL written {result['v6_wal_bytes'] / 1048576:.1f} MB")
    if "warnings" in result:
        result["warnings_found"] = result.pop("warnings")
    result["progress"] = progress.lines
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
