#!/usr/bin/python
# -*- coding: utf-8 -*-
# parking-migrate: rollback-3, what V6 received after the cutover back into V5.

DOCUMENTATION = r"""
module: parking_v6_backsync
short_description: Copy what V6 received after the cutover back into V5 (rollback-3)
version_added: "1.0.0"
description:
  - After routing went back to V5, copies to V5 what V6 received since the cutover started, so
    nothing is lost, uplinks (readings and devices' last uplink), space states (with a V5
    state change row), reservations created in V6 or cancelled there, users created in V6 with
    their memberships, and orphan devices V6 saw.
  - Reads V6 in one snapshot and writes V5 in one transaction; every statement is idempotent
    (V5's own unique keys and exclusion constraints decide), so a second run writes nothing.
  - Reservations V5 refuses (overlap with one V5 took meanwhile) are counted as
    C(not_synced_conflict) and must be resolved by hand.
  - The V5 <-> V6 id map comes from the phase-1 ledger in V6 (schema C(parking_migrate)).
options:
  v6:
    description: Connection to V6 (C(parking_v6)), read only. Same keys as the other modules' connections.
    type: dict
    default: {}
  v5:
    description: Connection to V5 (C(parking_v5)), written in one transaction.
    type: dict
    default: {}
  since:
    description:
      - Start of the period to copy back (ISO 8601 with offset).
      - Default, the cutover's start recorded in the V6 ledger (C(parking_migrate.cutover_state)).
    type: str
  probe_dev_eui:
    description: EUI of the cutover's probe device; orphan records of it are not copied (its readings are).
    type: str
extends_documentation_fragment:
  - parking.no_diff
attributes:
  check_mode:
    support: full
    description: The real run inside a V5 transaction that is rolled back; the same counts are returned.
seealso:
  - module: parking_tenant_migration
notes:
  - Each connection is a dictionary with C(login_host), C(login_port), C(login_user),
    C(login_password) (never logged), C(db), C(ssl_mode) and C(connect_timeout).
requirements:
  - psycopg2
author:
  - parking-migrate
"""

EXAMPLES = r"""
- name: Copy what V6 received back to V5 (rollback-3)
  parking_v6_backsync:
    v6: "{{ v6_connection }}"
    v5: "{{ v5_connection }}"
    probe_dev_eui: 0000C0FFEE000001
"""

RETURN = r"""
counts:
  description: Per entity, rows written to V5.
  returned: always
  type: dict
  sample: {"sensor_readings": {"inserted": 412}, "reservations": {"inserted": 2, "not_synced_conflict": 0}}
since:
  description: Start of the copied period.
  returned: always
  type: str
  sample: "2026-11-26T12:40:03.512+00:00"
executed_queries:
  description: Statements issued on V5, with placeholders.
  returned: always
  type: list
  elements: str
  sample: ["INSERT INTO sensor_readings (...) SELECT ... ON CONFLICT (tenant_id, device_eui, fcnt) ..."]
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.parking.connection import HAS_PSYCOPG2, connect, connection_option
from ansible.module_utils.parking.errors import ParkingError
from ansible.module_utils.parking import backsync, ledger
from ansible.module_utils.parking.session import transactional


def cutover_start(params):
    """When the cutover started, from the V6 ledger (None when no cutover is recorded)."""
    conn = connect(params, "v6")
    try:
        with conn.cursor() as cur:
            return (ledger.cutover_state(cur).get("started") or {}).get("at")
    finally:
        conn.close()


def main():
    module = AnsibleModule(argument_spec=dict(
        v6=connection_option("parking_v6"),
        v5=connection_option("parking_v5"),
        since=dict(type="str"),
        probe_dev_eui=dict(type="str"),
    ), supports_check_mode=True)
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"))
    p = module.params
    try:
        since = p["since"] or cutover_start(p["v6"])
        if not since:
            module.exit_json(changed=False, counts={}, since=None, executed_queries=[],
                             msg="no cutover recorded in the V6 ledger and no since given: nothing to copy back")
        result = transactional(p["v5"], lambda v5, v6, run_id: backsync.backsync(v6, v5, since, p["probe_dev_eui"]),
                               module.check_mode, sources=[(p["v6"], "v6")], phase="phase3", mode="backsync")
    except ParkingError as exc:
        module.fail_json(msg=str(exc))
    except Exception as exc:
        module.fail_json(msg=f"back-sync failed and was rolled back, nothing was written to V5: {exc}",
                         exception=traceback.format_exc())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
