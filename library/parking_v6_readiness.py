#!/usr/bin/python
# -*- coding: utf-8 -*-
# parking-migrate: phase 2 readiness gate of the deployed V6 on the migrated data.
# Thin module; the gate lives in the package module_utils/parking/readiness/.

DOCUMENTATION = r"""
module: parking_v6_readiness
short_description: Prove the deployed V6 serves the migrated data before any V5 traffic moves
version_added: "1.0.0"
description:
  - The readiness gate at the end of phase 2. It talks to V6 through Traefik on V6's own host
    (O(api_host), default C(api-v6)), HTTPS with the certificate verified, using only the real V6
    contract (C(docs/v6-contract.md)), and reads O(target) (C(parking_v6), as its owner) to know
    what V6 must show.
  - C(health) - C(GET /health) answers a healthy C(6.x).
  - C(login) - C(POST /api/auth/login) (form fields C(username), C(password)) with O(login_email)
    gives a token C(GET /api/auth/me) accepts; C(GET /api/v6/spaces) without a token is 401.
  - C(tenant:<slug>) - for every active tenant with an active user, a token for one of its users
    (the highest role) signed with O(jwt_secret), as V6's login issues them, since operators do not
    know users' passwords; C(/api/auth/me) must accept it for that tenant, and the devices, spaces,
    sites and reservations V6 lists, page by page, must be exactly the tenant's rows in
    O(target) by id (nothing missing, nothing of another tenant; soft-deleted spaces may be listed).
  - C(occupancy) - an uplink (C(POST /api/v1/uplink), the URL ChirpStack uses) for a migrated sensor
    on a live space (O(probe_dev_eui) when it qualifies) must flip that space's C(current_state) in
    O(target), answered 2xx and not as an orphan; the tenant's websocket (C(/ws?token=)), subscribed
    to C(spaces), must receive the update.
  - C(reservation) - a one-hour reservation ten years ahead on a space of a tenant is created
    (C(POST /api/v6/reservations/)), read back, cancelled (C(PUT .../cancel)).
  - C(retention) - every reading phase 1 migrated is still in O(target) (V6 deletes readings older
    than its retention when it starts).
  - Leaves no trace - the probe reading, any orphan row it caused, the space's state, the device's
    C(last_seen_at) and the reservation are put back or deleted in O(target) afterwards, also when a
    check failed (a failed clean-up is a failed check).
  - Fails listing every failed check with the request and the response it got. It changes no routing;
    V5 keeps serving every request.
extends_documentation_fragment:
  - parking.target
options:
  domain:
    description: DNS domain of the platform.
    type: str
    required: true
  api_host:
    description: Host (under O(domain)) of the V6 API, before the cutover V6's own name.
    type: str
    default: api-v6
  live_host:
    description:
      - The public API host (under O(domain)) that moves at the cutover. When it already answers a C(6.x)
        version, V6 serves live traffic and the writing checks (C(occupancy), C(reservation)) are
        skipped, so no probe races a live uplink or booking. Empty = always run them.
    type: str
    default: api
  connect_host:
    description: Where TCP connections go (SNI, certificate and Host header stay C(<host>.<domain>)). Empty = DNS.
    type: str
    default: ""
  connect_port:
    description: TCP port of O(connect_host).
    type: int
    default: 443
  ca_file:
    description: CA bundle to verify the certificate with (default the system CAs).
    type: path
  jwt_secret:
    description:
      - The V6 deployment's C(JWT_SECRET_KEY), to sign one short-lived token per tenant. Never logged.
      - Required with O(state=present).
    type: str
  token_minutes:
    description: Lifetime of those tokens.
    type: int
    default: 10
  login_email:
    description: Account the C(login) check logs in with.
    type: str
  login_password:
    description: Its password. Never logged.
    type: str
  probe_dev_eui:
    description: Sensor preferred for the C(occupancy) probe (any migrated sensor on a live space otherwise).
    type: str
  platform_tenant_id:
    description: V6's platform tenant (its owners and admins see every tenant's devices).
    type: str
    default: 00000000-0000-0000-0000-000000000000
  state:
    description:
      - C(present) runs the gate. C(absent) (rollback-2) only deletes readings of probe uplinks (tagged
        C(parking-migrate-readiness)) that a V6 stored after the gate had cleaned up, e.g. retried from its
        spool after failing them; the other options but O(target) are then ignored.
    type: str
    default: present
    choices: [present, absent]
  checks:
    description: Checks to run.
    type: list
    elements: str
    choices: [health, login, tenants, occupancy, reservation, retention]
    default: [health, login, tenants, occupancy, reservation, retention]
  timeout:
    description: Seconds for each request, and for each wait (space state, websocket message).
    type: float
    default: 10.0
notes:
  - Check mode runs nothing and reports C(skipped) (the gate writes probes, which it then removes).
author: parking-migrate
"""

EXAMPLES = r"""
- name: Readiness gate of V6 on api-v6 before any traffic moves
  parking_v6_readiness:
    domain: verdegris.eu
    jwt_secret: "{{ vault_parking_v6_jwt_secret_key }}"
    login_email: ops@verdegris.eu
    login_password: "{{ vault_smoke_password }}"
    probe_dev_eui: 58A0CB00001196F3
    target:
      login_host: db.verdegris.eu
      login_user: parking_user
      login_password: "{{ vault_parking_pg_owner_password }}"
  register: readiness
"""

RETURN = r"""
passed:
  description: Whether every check passed (the module fails otherwise).
  returned: always
  type: bool
  sample: false
checks:
  description: Every check with C(name), C(passed), C(detail), C(ms) and C(facts); a failed one's facts hold
    C(exchanges), the requests and responses (bodies cut at 400 characters) that failed it.
  returned: when the checks ran
  type: list
  elements: dict
  sample: [{"name": "tenant:acme-parking", "passed": false, "ms": 92.1,
            "detail": "GET /api/v6/reservations?page=1&page_size=200 answered 500: 2 validation errors",
            "facts": {"exchanges": [{"request": "GET /api/v6/reservations?page=1&page_size=200",
                                     "status": 500, "response": "{\"detail\":\"2 validation errors\"}"}]}}]
failed_checks:
  description: Names of the failed checks.
  returned: always
  type: list
  elements: str
  sample: ["occupancy", "tenant:acme-parking"]
api_host:
  description: The host checked.
  returned: when the checks ran
  type: str
  sample: api-v6.verdegris.eu
deleted_probe_readings:
  description: With O(state=absent), how many late probe readings were deleted.
  returned: with state=absent
  type: int
  sample: 1
api_version:
  description: Version V6's C(/health) answered.
  returned: when the checks ran
  type: str
  sample: 6.0.0
"""

import functools
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.parking.connection import HAS_PSYCOPG2, connect, connection_option
from ansible.module_utils.parking.errors import ParkingError
from ansible.module_utils.parking import readiness
from ansible.module_utils.parking.smoke import scrub


def main():
    module = AnsibleModule(argument_spec=dict(
        domain=dict(type="str", required=True),
        api_host=dict(type="str", default="api-v6"),
        live_host=dict(type="str", default="api"),
        connect_host=dict(type="str", default=""),
        connect_port=dict(type="int", default=443),
        ca_file=dict(type="path"),
        jwt_secret=dict(type="str", no_log=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        token_minutes=dict(type="int", default=10),
        login_email=dict(type="str"),
        login_password=dict(type="str", no_log=True),
        probe_dev_eui=dict(type="str"),
        platform_tenant_id=dict(type="str", default="00000000-0000-0000-0000-000000000000"),
        checks=dict(type="list", elements="str", choices=list(readiness.CHECKS), default=list(readiness.CHECKS)),
        timeout=dict(type="float", default=10.0),
        target=connection_option("parking_v6"),
    ), supports_check_mode=True)
    p = module.params
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), passed=False, failed_checks=[])
    if p["state"] == "absent":
        deleted = 0 if module.check_mode else readiness.clean(functools.partial(connect, p["target"], "target"))
        module.exit_json(changed=deleted > 0, deleted_probe_readings=deleted, passed=True, failed_checks=[])
    if module.check_mode:
        module.exit_json(changed=False, passed=True, skipped=True, failed_checks=[],
                         msg="check mode: the readiness gate writes probes, so it does not run")
    secrets = [p["jwt_secret"], p["login_password"], p["target"].get("login_password")]
    try:
        result = readiness.run(p, functools.partial(connect, p["target"], "target"))
    except ParkingError as exc:
        module.fail_json(msg=scrub(str(exc), secrets), passed=False, failed_checks=[])
    except Exception as exc:
        module.fail_json(msg=scrub(f"readiness gate could not run: {exc}", secrets), passed=False,
                         failed_checks=[], exception=scrub(traceback.format_exc(), secrets))
    result = scrub(result, secrets)
    if not result["passed"]:
        module.fail_json(msg=readiness.failure_message(result), changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
