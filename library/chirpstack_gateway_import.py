#!/usr/bin/python
# -*- coding: utf-8 -*-
# parking-migrate: phase 1, ChirpStack gateways -> V6 gateways. Thin module: documentation,
# argument spec, check mode and error translation; the engine is module_utils/parking/gateways/.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: chirpstack_gateway_import
short_description: Import ChirpStack v4 gateways into the V6 gateways table, or undo the import
version_added: "0.1.0"
description:
  - Reads every gateway of a ChirpStack v4 database (C(gateway) joined to C(tenant), using only
    columns present in every v4 release) and writes it into V6's C(gateways) table.
  - The gateway id (C(bytea), 8 bytes) becomes 16 uppercase hex digits; a gateway whose id is not
    8 bytes, or whose values do not fit the live columns, is rejected with a reason and not written.
  - "The V6 owner is decided per gateway, first rule that applies: 1) O(tenant_map), matching the
    ChirpStack tenant by id, else by name (rule C(tenant_map_id) / C(tenant_map_name)); 2) the V6
    tenant of the devices the gateway hears, when exactly one tenant results (C(heard_devices));
    3) the platform tenant (C(platform_no_devices) when nobody is heard, C(platform_ambiguous)
    when several tenants are)."
  - "A gateway hears: the ChirpStack devices of its own ChirpStack tenant (device -> application ->
    tenant) that exist in V6 C(sensor_devices) or C(display_devices) under the same uppercase EUI,
    and every V6 C(sensor_readings) row whose C(raw_payload) names the gateway in
    C(rxInfo[].gatewayId). Devices and readings of the platform tenant are ignored."
  - Status is C(online) when ChirpStack saw the gateway within O(online_window) seconds of the
    target server's clock, else C(offline) (also when never seen). Latitude = longitude = 0 means
    no position.
  - V5's gateway UI tags (C(site_id), C(site_name)) or a description equal to a site name set
    C(site_id) when that site exists in V6 under the chosen tenant; a site V6 users assigned is
    never cleared.
  - The live C(gateways) table is introspected. C(description), C(latitude), C(longitude),
    C(altitude), C(last_seen_at), C(location), C(site_id), C(created_at) and C(updated_at) are
    written only where such columns exist; everything ChirpStack knows (description, location,
    altitude, last seen, tags, properties, ChirpStack tenant) is always kept in C(config) under the
    key C(chirpstack). The run fails, listing the differences, when C(id), C(tenant_id),
    C(gateway_id), C(name), C(status) or C(config) is missing or of another type, or when a
    NOT NULL column without default would be left empty.
  - Idempotent on (tenant_id, upper(gateway_id)); the V6 table has no unique key, so existing rows
    are looked up. An existing row is updated only when its content differs, and its before-image
    is recorded. A row inserted by an earlier run under another tenant (O(tenant_map) changed) is
    moved rather than duplicated.
  - Every write is recorded in C(parking_migrate.gateway_import_ledger) (created on first write).
    O(state=absent) restores the before-images of updated rows (newest first), deletes exactly the
    rows the import inserted, then clears the ledger. Rows that existed before stay.
  - One transaction on the target for the whole run. It starts by taking the transaction-level
    advisory lock keyed on C(hashtext('parking-migrate')) without waiting; when another run holds
    it the module fails at once. Any error rolls everything back.
options:
  tenant_map:
    description:
      - Explicit owners. Keys are ChirpStack tenant ids or names, values V6 tenant ids or slugs.
      - A key that names no ChirpStack tenant, a name shared by several ChirpStack tenants, or a
        value that names no V6 tenant fails the run (nothing is written); the message names the
        key and value and lists what exists. When a tenant appears both by id and by name, the id
        entry wins.
    type: dict
    default: {}
  platform_tenant_id:
    description:
      - Id of the V6 platform tenant, owner of gateways no other rule places. Must be a UUID that
        exists in the target's C(tenants) table.
    type: str
    default: "00000000-0000-0000-0000-000000000000"
  state:
    description:
      - C(present) imports; C(absent) undoes every recorded import.
    type: str
    default: present
    choices: [present, absent]
  online_window:
    description:
      - A gateway seen by ChirpStack at most this many seconds ago is C(online) (V5's rule).
    type: int
    default: 300
extends_documentation_fragment:
  - parking.chirpstack
  - parking.target
  - parking.attributes
attributes:
  idempotent:
    support: partial
    details: >-
      A second run reports C(changed=false) unless ChirpStack changed in between. C(status) and
      C(config.chirpstack.last_seen_at) follow ChirpStack's last-seen time, so a live gateway
      whose stats arrive between runs, or one that crosses O(online_window), is updated again.
notes:
  - O(chirpstack) is read in one read-only REPEATABLE READ snapshot. Log in to O(target) as the
    owner of the V6 tables or a superuser; when row-level security would hide rows from the
    login, the module refuses to run.
  - Run it after the data migration, so that V6 devices exist to decide owners.
  - Check mode runs the real import inside the transaction and rolls it back, so the counts are
    those of a real run.
  - Timestamps are written in UTC (naive for C(timestamp without time zone) columns).
seealso:
  - name: V6 gateways table
    description: Reference of the L0 and L1 shapes (v6-schema.md section 5.3).
    link: https://github.com/cpaumelle/v6-smart-parking
author:
  - parking-migrate
"""

EXAMPLES = r"""
- name: Import ChirpStack gateways into V6
  chirpstack_gateway_import:
    chirpstack:
      login_host: 127.0.0.1
      login_port: 5432
      login_user: parking_user
      login_password: "{{ parking_pg_owner_password }}"
      db: chirpstack
    target:
      login_host: 127.0.0.1
      login_port: 5432
      login_user: parking_user
      login_password: "{{ parking_pg_owner_password }}"
      db: parking_v6
    tenant_map:
      Verdegris: verdegris                                # ChirpStack tenant name -> V6 slug
      773b2828-caae-4940-b14a-a1313e10cacd: acme-parking  # ChirpStack tenant id -> V6 slug
    platform_tenant_id: "00000000-0000-0000-0000-000000000000"
    online_window: 300
  no_log: true
  register: gateway_import

- name: Undo the gateway import
  chirpstack_gateway_import:
    target:
      login_user: parking_user
      login_password: "{{ parking_pg_owner_password }}"
      db: parking_v6
    state: absent
  no_log: true
"""

RETURN = r"""
changed:
  description: Whether rows were (or, in check mode, would be) inserted, updated, deleted or restored.
  returned: always
  type: bool
  sample: true
run_id:
  description: Id of this run; the ledger rows of an import carry it.
  returned: always
  type: str
  sample: 5b0f6f64-8f5e-4f43-9b0e-2f8a3a8f1c11
imported:
  description: One entry per gateway that was placed (rejected gateways are in RV(rejects)). Empty for O(state=absent).
  returned: always
  type: list
  elements: dict
  contains:
    gateway_id:
      description: 16 uppercase hex digits.
      type: str
      sample: AC1F09FFFE0A1B2C
    name:
      description: Name written (ChirpStack's, or the id when empty).
      type: str
      sample: Verdegris Main Gateway
    chirpstack_tenant:
      description: Name of the ChirpStack tenant.
      type: str
      sample: Verdegris
    chirpstack_tenant_id:
      description: Id of the ChirpStack tenant.
      type: str
      sample: 581418fc-804b-472e-843e-454107b68ebf
    v6_tenant_id:
      description: Owner in V6.
      type: str
      sample: af92fb7e-a64b-4ad5-8ac8-46e2ed515c9a
    v6_tenant_slug:
      description: Slug of the owner.
      type: str
      sample: demo-parking
    owner_rule:
      description: Rule that decided the owner.
      type: str
      choices: [tenant_map_id, tenant_map_name, heard_devices, platform_no_devices, platform_ambiguous]
      sample: tenant_map_name
    heard_tenants:
      description: Slugs of the V6 tenants of the devices the gateway hears (platform excluded).
      type: list
      elements: str
      sample: [acme-parking]
    status:
      description: Status written.
      type: str
      choices: [online, offline]
      sample: offline
    site_id:
      description: V6 site resolved from V5's tags or the description, or null.
      type: str
      sample: 867bb25c-8992-43f9-9c56-cfbdf3463b95
    site_rule:
      description: How the site was found (C(tag_site_id), C(tag_site_name), C(description)) or null.
      type: str
      sample: tag_site_id
    action:
      description: What happened to the V6 row.
      type: str
      choices: [inserted, updated, unchanged]
      sample: inserted
    gateway_row_id:
      description: Id of the V6 gateways row.
      type: str
      sample: 0f1e9a55-7a43-4c1e-a0b6-0e2f3c9d4b21
    changed_columns:
      description: Columns whose content differed (only when RV(imported[].action=updated)).
      type: list
      elements: str
      sample: [name, status]
counts:
  description: >-
    Rows per outcome. O(state=present): C(inserted), C(updated), C(unchanged), C(rejected).
    O(state=absent): C(deleted), C(restored), C(missing) (ledger entries whose row is gone).
  returned: always
  type: dict
  sample: {inserted: 4, updated: 1, unchanged: 0, rejected: 1}
rejects:
  description: Gateways not written, with the reason.
  returned: always
  type: list
  elements: dict
  sample:
    - gateway_id: "00800000a000"
      name: Broken Gateway
      chirpstack_tenant: ChirpStack
      reason: gateway_id '00800000a000' is 6 bytes; an EUI-64 gateway id has 8 (16 hex digits)
executed_queries:
  description: Statements issued on both databases, each once, in order, with placeholders (never values).
  returned: always
  type: list
  elements: str
  sample:
    - SELECT pg_try_advisory_xact_lock(hashtext(%s))
    - INSERT INTO parking_migrate.gateway_import_ledger (run_id, gateway_row_id, tenant_id, gateway_id, action, before, imported_at) VALUES (%s, %s, %s, %s, %s, %s::jsonb, now())
schema:
  description: How the import adapted to the live gateways table.
  returned: success and O(state=present)
  type: dict
  sample:
    written_columns: [config, created_at, gateway_id, id, name, site_id, status, tenant_id, updated_at]
    skipped_columns: []
rolled_back_runs:
  description: Run ids whose ledger entries were undone.
  returned: success and O(state=absent)
  type: list
  elements: str
  sample: [5b0f6f64-8f5e-4f43-9b0e-2f8a3a8f1c11]
diff:
  description: Number of rows in gateways before and after (in check mode, after = what a real run leaves).
  returned: when diff mode is on
  type: dict
  sample: {before: {gateways: 0}, after: {gateways: 5}}
phase:
  description: Step that failed (validate, connect, lock, introspect, read, owners, plan, write, restore).
  returned: failure
  type: str
  sample: lock
differences:
  description: Columns of the live gateways table that do not match what the import needs.
  returned: failure of the schema check
  type: list
  elements: dict
  sample: [{column: config, expected: jsonb, found: missing}]
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible.module_utils.parking.connection import HAS_PSYCOPG2, connection_option
from ansible.module_utils.parking.errors import ParkingError, SchemaMismatch
from ansible.module_utils.parking.gateways import (DEFAULT_ONLINE_WINDOW, import_gateways,
                                                   remove_gateways)
from ansible.module_utils.parking.mapping import PLATFORM_TENANT_ID


def argument_spec():
    return {
        "chirpstack": connection_option("chirpstack"),
        "target": connection_option("parking_v6"),
        "tenant_map": {"type": "dict", "default": {}},
        "platform_tenant_id": {"type": "str", "default": PLATFORM_TENANT_ID},
        "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
        "online_window": {"type": "int", "default": DEFAULT_ONLINE_WINDOW},
    }


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"))
    params = module.params
    try:
        if params["state"] == "absent":
            result = remove_gateways(params["target"], dry_run=module.check_mode)
        else:
            result = import_gateways(params["chirpstack"], params["target"],
                                     tenant_map=params["tenant_map"],
                                     platform_tenant_id=params["platform_tenant_id"],
                                     online_window=params["online_window"],
                                     dry_run=module.check_mode)
    except ParkingError as exc:
        extra = dict(getattr(exc, "progress", {}))
        if isinstance(exc, SchemaMismatch):
            extra["differences"] = exc.differences
        module.fail_json(msg=str(exc), exception=traceback.format_exc(), **extra)
    except Exception as exc:  # a bug: the engine has rolled back; report it with its traceback
        module.fail_json(msg=f"unexpected error in the gateway import ({type(exc).__name__}): {exc}",
                         exception=traceback.format_exc())
    for warning in result.pop("warnings", []):
        module.warn(warning)
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
