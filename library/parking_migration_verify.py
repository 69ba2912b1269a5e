#!/usr/bin/python
# -*- coding: utf-8 -*-
# parking-migrate: phase 1 verification gate.

DOCUMENTATION = r"""
module: parking_migration_verify
short_description: Fail-closed verification gate of the V5 -> V6 data migration
version_added: "1.0.0"
description:
  - Compares V6 with what V5 says it must hold, computed by an independent oracle (module_utils
    C(parking/oracle.py), written from the mapping reference; it never calls the migration engine
    or its plan), per tenant - tenants, users by lower(email), memberships, sites, spaces, sensor
    and display EUIs with their tenant and space, reservations (window, status class, user),
    readings per device and state changes per space. Rows V6 had are checked for presence and
    placement; edits made in V6 after phase 1 to what the tool wrote are kept and listed
    (RV(v6_edits_kept)). The same oracle also runs inside every migration run before it commits.
  - Compares the history per tenant by count and content checksum (V5 read directly).
  - Checks that every device has a tenant, that platform-tenant devices are all unassigned, that
    every space's device link resolves to a device of the same tenant (both directions), that every
    EUI is 16 uppercase hex, that migrated users can log in (active membership), and that no V6
    orphan is a registered device.
  - Checks row-level security as the application role, not the owner, with
    C(app.current_tenant_id) set to each tenant in turn, that rows of other tenants are invisible
    and every row of the tenant is visible, and that nothing is visible with no tenant set.
  - Returns its report as Markdown (a per-tenant table) and fails, listing the failed checks,
    unless every check passed.
  - Read only on both databases.
options:
  platform_tenant_id:
    description: The V6 platform tenant.
    type: str
    default: "00000000-0000-0000-0000-000000000000"
  app_role:
    description: The V6 application role RLS must apply to.
    type: str
    default: parking_v6_app
  app_role_password:
    description:
      - When given, the RLS check logs in as O(app_role) with this password.
      - Otherwise it connects as the target user and runs C(SET ROLE) to O(app_role); RLS applies to
        the current role either way.
    type: str
  history_retention_days:
    description:
      - Readings older than now minus this many days are left out of the history comparison on
        both sides (the migration's own cutoff; V6 deletes them).
      - Default the retention the migration runs applied (kept in the ledger). C(0) compares all.
    type: int
extends_documentation_fragment:
  - parking.no_diff
  - parking.source
  - parking.target
attributes:
  check_mode:
    support: full
    description: Read only; runs the same in check mode.
seealso:
  - module: parking_tenant_migration
author:
  - parking-migrate
"""

EXAMPLES = r"""
- name: Verify phase 1 (fail closed)
  parking_migration_verify:
    source: "{{ v5_connection }}"
    target: "{{ v6_connection }}"
  register: gate

- name: Keep the gate's report on the controller
  parking_report:
    dir: "{{ parking_reports_dir }}"
    files:
      phase1-verify.md: "{{ gate.markdown }}"
"""

RETURN = r"""
passed:
  description: Whether every check passed (the module fails otherwise).
  returned: always
  type: bool
  sample: true
failed_checks:
  description: The checks that failed, with details.
  returned: always
  type: list
  elements: dict
  sample: [{"check": "rls_isolation", "passed": false, "detail": "spaces: tenant ... sees 3 rows of other tenants"}]
checks:
  description: Every check with its result and figures.
  returned: always
  type: list
  elements: dict
  sample: [{"check": "devices_have_tenant", "passed": true, "detail": null, "offending": 0}]
oracle_differences:
  description: What the oracle found V6 lacking or holding wrongly (entity, tenant, difference), first 500.
  returned: success
  type: list
  elements: dict
  sample: [{"entity": "sensor_devices", "tenant": "7723...", "difference": "sensor 58A0CB0000103B22 (V5 cb2b...)
           is in V6 tenant 0000..., V5 places it in tenant 7723..."}]
v6_edits_kept:
  description: Values V6 changed after phase 1 where the tool had written them (V6 wins; not compared).
  returned: success
  type: list
  elements: dict
  sample: [{"entity": "sensor_devices", "eui": "58A0CB00001196F3", "field": "assigned_space_id",
            "v5_says": "space 'P1-01' of site ...", "v6_has": "5b1e..."}]
per_tenant:
  description: Per tenant slug and entity, rows expected from V5 after mapping, rows found in V6, checksum match.
  returned: always
  type: dict
  sample: {"acme-parking": {"sensor_devices": {"expected": 1, "actual": 1, "checksum_ok": true}}}
markdown:
  description:
    - The gate's report as Markdown (per-tenant table, every check). Returned rather than written on
      the managed host, so the play keeps it on the controller.
  returned: always
  type: str
  sample: "# Phase 1 verification: PASSED\n\nChecks passed: 12/12; rejects: 3; 4.2 s\n..."
history_cutoff:
  description: Readings older than this (ISO 8601) were left out of the history comparison; null for none.
  returned: success
  type: str
  sample: "2026-09-01T17:03:36.123456+00:00"
history_retention_days:
  description: The retention applied (days, 0 = none).
  returned: success
  type: int
  sample: 90
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.parking.connection import HAS_PSYCOPG2, connect, connection_option
from ansible.module_utils.parking.errors import ParkingError
from ansible.module_utils.parking import ledger, verify
from ansible.module_utils.parking.session import require_uuid


def has_committed_run(conn):
    with conn.cursor() as cur:
        found = ledger.exists(cur) and bool(ledger.last_watermarks(cur, "phase1"))
    conn.rollback()
    return found


def main():
    module = AnsibleModule(argument_spec=dict(
        source=connection_option("parking_v5"),
        target=connection_option("parking_v6"),
        platform_tenant_id=dict(type="str", default="00000000-0000-0000-0000-000000000000"),
        app_role=dict(type="str", default="parking_v6_app"),
        app_role_password=dict(type="str", no_log=True),
        history_retention_days=dict(type="int"),
    ), supports_check_mode=True)
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"))
    p = module.params
    conns = []
    try:
        platform = require_uuid(p["platform_tenant_id"], "platform_tenant_id")
        tgt = connect(p["target"], "target")
        conns.append(tgt)
        src = connect(p["source"], "source")
        conns.append(src)
        if module.check_mode and not has_committed_run(tgt):
            # before phase 1 committed, the application role it creates does not exist either
            module.exit_json(changed=False, skipped=True, passed=None, failed_checks=[],
                             msg="check mode: no committed phase-1 run to verify yet (the migration was rolled back)")
        login = None
        if p["app_role_password"]:
            login = connect(dict(p["target"], login_user=p["app_role"], login_password=p["app_role_password"]),
                            "application role")
            conns.append(login)
        result = verify.verify(src, tgt, ledger.new_run_id(), platform, p["app_role"], login,
                               history_retention_days=p["history_retention_days"])
    except ParkingError as exc:
        module.fail_json(msg=str(exc), passed=False, failed_checks=[])
    except Exception as exc:
        module.fail_json(msg=f"verification could not run: {exc}", passed=False, failed_checks=[],
                         exception=traceback.format_exc())
    finally:
        for conn in conns:
            conn.close()
    out = dict(changed=False, passed=result["passed"], failed_checks=result["failed"], checks=result["checks"],
               per_tenant=result["per_tenant"], rejects=result["rejects"], watermarks=result["watermarks"],
               markdown=result["markdown"], seconds=result["seconds"],
               history_retention_days=result["history_retention_days"], history_cutoff=result["history_cutoff"],
               oracle_differences=result["oracle"]["differences"], v6_edits_kept=result["oracle"]["v6_edits_kept"])
    if not result["passed"]:
        names = ", ".join(f"{c['check']} ({c.get('detail')})" for c in result["failed"])
        module.fail_json(msg=f"verification gate FAILED, {len(result['failed'])} check(s): {names}", **out)
    module.exit_json(**out)


if __name__ == "__main__":
    main()
