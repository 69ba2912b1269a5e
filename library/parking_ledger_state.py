#!/usr/bin/python
# -*- coding: utf-8 -*-
# parking-migrate: the cutover's recorded state in the V6 ledger (read, record, clear).

DOCUMENTATION = r"""
module: parking_ledger_state
short_description: Read, record or clear the cutover's state in the parking-migrate ledger
version_added: "1.0.0"
description:
  - The ledger (schema C(parking_migrate) in V6) records phase 3's progress, C(started) (the first
    start, which rollback-3 copies back from), C(switched) (routing moved to V6; phase 4 trusts
    it) and C(webhook_original) (the ChirpStack integration URLs the cutover replaced).
  - I(state=read) returns what is recorded; a ledger that does not exist yet reads as nothing
    recorded, while a connection or query that fails fails the task (never taken for "nothing").
  - I(state=present) records I(key) under the migration's advisory lock, creating or upgrading
    the ledger first; an existing record is kept unless I(replace=true).
  - I(state=absent) removes I(key), or every key when I(key) is omitted.
  - Decommission state (phase 4) is read and written by M(parking_decommission).
extends_documentation_fragment:
  - parking.target
options:
  state:
    description: What to do.
    type: str
    choices: [read, present, absent]
    default: read
  key:
    description: The state key. Required with I(state=present).
    type: str
    choices: [started, switched, webhook_original]
  value:
    description: JSON-safe data to record. Default, the time of recording as C(at) (the database's C(now())).
    type: raw
  replace:
    description: With I(state=present), overwrite a different recorded value.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Writes inside a transaction that is rolled back; C(changed) tells whether it would write.
  diff_mode:
    support: full
    description: The recorded keys before and after.
  platform:
    platforms: posix
seealso:
  - module: parking_decommission
  - module: parking_v6_backsync
author:
  - parking-migrate
"""

EXAMPLES = r"""
- name: Read the cutover state
  parking_ledger_state:
    target: "{{ v6_connection }}"
  register: cutover_state

- name: Record the start of the cutover (a retried cutover keeps the first one)
  parking_ledger_state:
    target: "{{ v6_connection }}"
    state: present
    key: started

- name: Keep the ChirpStack URLs the cutover replaces
  parking_ledger_state:
    target: "{{ v6_connection }}"
    state: present
    key: webhook_original
    value: [{"application_id": "6f1c...", "url": "http://parking-api:8000/api/v1/uplink"}]

- name: Clear every key (rollback-3)
  parking_ledger_state:
    target: "{{ v6_connection }}"
    state: absent
"""

RETURN = r"""
recorded:
  description: The recorded state after the task, by key.
  returned: always
  type: dict
  sample: {"started": {"at": "2026-11-30T10:02:11.415+00:00"}, "switched": {"at": "2026-11-30T10:04:02.101+00:00"}}
recorded_keys:
  description: The recorded keys after the task, sorted.
  returned: always
  type: list
  elements: str
  sample: ["started", "switched"]
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.parking import ledger
from ansible.module_utils.parking.connection import HAS_PSYCOPG2, connect, connection_option
from ansible.module_utils.parking.errors import ParkingError


def apply(conn, params):
    """(changed, before, after) of the request, inside the connection's transaction."""
    with conn.cursor() as cur:
        before = ledger.cutover_state(cur)
        changed = False
        if params["state"] == "present":
            changed = ledger.record_cutover(cur, params["key"], params["value"], params["replace"])
        elif params["state"] == "absent":
            changed = ledger.clear_cutover(cur, [params["key"]] if params["key"] else None) > 0
        after = ledger.cutover_state(cur) if changed else before
    return changed, before, after


def main():
    module = AnsibleModule(argument_spec=dict(
        target=connection_option("parking_v6"),
        state=dict(type="str", choices=["read", "present", "absent"], default="read"),
        key=dict(type="str", choices=list(ledger.CUTOVER_KEYS)),
        value=dict(type="raw"),
        replace=dict(type="bool", default=False),
    ), required_if=[("state", "present", ["key"])], supports_check_mode=True)
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"))
    p = module.params
    conn = None
    try:
        conn = connect(p["target"], "target")
        changed, before, after = apply(conn, p)
        if changed and not module.check_mode:
            conn.commit()
        else:
            conn.rollback()
    except ParkingError as exc:
        module.fail_json(msg=f"{exc} The cutover state was not changed.")
    except Exception as exc:
        module.fail_json(msg=f"cannot {'read' if p['state'] == 'read' else 'update'} the cutover state in the "
                             f"V6 ledger: {' '.join(str(exc).split())}. Nothing was changed.",
                         exception=traceback.format_exc())
    finally:
        if conn is not None:
            conn.close()
    module.exit_json(changed=changed, recorded=after, recorded_keys=sorted(after),
                     diff={"before": {"keys": sorted(before)}, "after": {"keys": sorted(after)}})


if __name__ == "__main__":
    main()
