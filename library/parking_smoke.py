#!/usr/bin/python
# -*- coding: utf-8 -*-
# parking-migrate: phase 3 smoke checks of the live platform through Traefik.

DOCUMENTATION = r"""
module: parking_smoke
short_description: Smoke-check the live parking platform (V5 or V6) through Traefik
version_added: "1.0.0"
description:
  - Runs the phase-3 functional checks of the migration plan against the API that answers on
    the public API host, as its users and ChirpStack reach it (HTTPS through Traefik, certificate
    verified).
  - C(health) - C(GET /health) answers 200 and a version of O(expect_backend) (C(5.) or C(6.)),
    status healthy; another backend's answer is asked again for up to O(failover_grace) seconds
    (Traefik's failover while V6's health check recovers).
  - Each backend is checked with its own contract - V5's C(/api/v1) routes; the real V6's
    C(POST /api/auth/login) (form fields C(username), C(password)) and paged C(/api/v6) lists
    (C(docs/v6-contract.md)).
  - C(login) - the login route gives a bearer token (its tenant and role are reported, never the
    token); the spaces list without a token is refused with 401.
  - C(devices) and C(spaces) - the tenant's lists answer (every page), the probe sensor is among the
    devices and on one of the spaces, and no row of another tenant shows (unless the login is a
    platform admin).
  - C(reservation) - reserves one of the tenant's spaces for one minute in a window far in the
    future that depends on the time (two runs never ask for overlapping windows; a clash moves to
    the run's spare window), finds it listed, cancels it. Both must succeed. With O(target), the
    reservation is then deleted, so no smoke reservation stays in the data.
  - C(websocket) (V6 only, skipped for V5, which has none) - opens C(wss://<api host>/ws?token=)
    with a standard-library RFC 6455 client (random key, masked frames), waits for C(connected),
    subscribes to C(spaces), posts a probe uplink and waits (at most O(timeout)) for a
    C(space:update) naming the probe EUI and fCnt, for the login's tenant.
  - C(webhook) - posts a ChirpStack v4 C(up) event for O(probe_dev_eui) to
    C(POST /api/v1/uplink?event=up) on the API host, as the HTTP integration does (unique
    deduplicationId, fCnt from O(probe_fcnt_base), C(data) = one occupancy byte); the API must
    process it as a known sensor. With O(target), polls that database (at most O(timeout)) until
    the reading is there - V5, C(sensor_readings) row of the EUI with that fCnt and occupancy; V6,
    the row whose C(raw_payload) holds the event's deduplicationId, with the device's tenant and
    the occupancy sent - and checks that its tenant is the login's.
  - C(host_rules) - one GET per host of O(host_rules), compared with its expectation.
  - C(routing) - waits (polling every 0.1 s, at most O(routing_timeout)) until the api host's answers
    carry the C(X-Parking-Cutover) header value O(expect_routing) that the cutover routing file sets
    (empty - until none does), that is until Traefik really serves the file the play wrote. Not in the default list.
  - C(error_rate) - O(error_rate_requests) GETs of /health on the api host, back to back,
    whichever backend answers (canary steps mix them); fails above O(error_rate_max). Not in the default list.
  - Every check is reported with C(name), C(passed), C(skipped), C(detail), C(ms) and C(facts).
    The module fails, listing the failed checks, unless every check that ran passed.
  - Read-mostly - it writes one reservation (then cancels and, with O(target), deletes it) and one probe uplink per
    C(websocket)/C(webhook) check, and reports C(changed=false). When C(health) finds another
    backend than O(expect_backend) on O(api_host), those three writing checks are skipped (the
    module fails on C(health)), so nothing is written to the wrong system.
options:
  domain:
    description: DNS domain of the platform; host C(api) is C(api.<domain>).
    type: str
    required: true
  api_host:
    description:
      - Host (under O(domain)) whose API is checked. C(api) is the public name that moves at the
        cutover; C(api-v6) checks V6 on its own name before the cutover.
    type: str
    default: api
  connect_host:
    description:
      - Where TCP connections go. Empty (default) resolves C(<host>.<domain>) normally.
      - TLS SNI, certificate verification and the C(Host) header always use C(<host>.<domain>).
        The lab publishes Traefik's HTTPS on C(127.0.0.1:58443).
    type: str
    default: ""
  connect_port:
    description: TCP port of O(connect_host) (Traefik's HTTPS entrypoint).
    type: int
    default: 443
  ca_file:
    description:
      - PEM file of the certificate authorities to verify Traefik's certificate with. Default the
        system CAs. Verification is never disabled.
    type: path
  expect_backend:
    description: Which API must be answering on O(api_host); V5's C(/health) version starts C(5.), V6's C(6.).
    type: str
    required: true
    choices: [v5, v6]
  login_email:
    description: A user with an active membership that can log in on the expected backend.
    type: str
  login_password:
    description: Password of O(login_email). Never logged or returned.
    type: str
  probe_dev_eui:
    description:
      - DevEUI (16 hex digits) of a sensor registered on the expected backend and assigned to a
        space of the login's tenant. Required for the C(websocket) and C(webhook) checks.
      - The probe reports the occupancy its space already shows, so a free or occupied space
        keeps its state (a V5 space in C(RESERVED) state would change; do not use one).
    type: str
  probe_fcnt_base:
    description:
      - fCnt of the first probe uplink; later ones count up (at most 2 per run).
      - Default derived from the time (8 per second since 2025-01-01, as the lab simulator), so it
        never repeats and is above any fCnt the device was sent before; stays below 2^31-1.
    type: int
  target:
    description:
      - Connection to the database of the expected backend (O(target.db) defaults to
        C(parking_v5) or C(parking_v6) after O(expect_backend)), read only, to confirm the
        C(webhook) probe landed there. Without it the C(webhook) check stops at the API's answer.
      - Log in as the owner or a superuser; the tenant setting is made for forced row-level security.
    type: dict
    suboptions:
      login_host:
        description: Host of the PostgreSQL server.
        type: str
        default: 127.0.0.1
      login_port:
        description: Port of the PostgreSQL server.
        type: int
        default: 5432
      login_user:
        description: Role to log in as.
        type: str
        default: parking_user
      login_password:
        description: Password of O(target.login_user). Never logged or returned.
        type: str
        default: ""
      db:
        description: Database name; empty means the expected backend's database.
        type: str
        default: ""
      ssl_mode:
        description: libpq sslmode.
        type: str
        default: prefer
        choices: [allow, disable, prefer, require, verify-ca, verify-full]
      connect_timeout:
        description: Seconds to wait for the connection.
        type: int
        default: 10
  host_rules:
    description:
      - Host (under O(domain)) -> expectation of one GET; replaces the default entirely.
      - "Expectation keys: C(path) (default C(/)), C(status) (a status or a list, default 200),
        C(content_type) (substring), C(version_prefix) (JSON C(version) must start with it;
        C(expected) = that of O(expect_backend)), C(auth) (C(basic): a C(WWW-Authenticate: Basic)
        challenge), C(body_contains)."
      - "Default (after phase 2, V6 hosts beside V5): O(api_host) -> C(/health) JSON with the
        expected version; C(api-v6) -> C(/health) version C(6.); C(app) -> 200 C(text/html);
        C(www) -> 200; C(chirpstack) -> 200; C(db-v6), C(files-v6), C(adminer) -> 401 with a
        basic-auth challenge."
    type: dict
  checks:
    description: Checks to run (always in the order listed here). Default all.
    type: list
    elements: str
    choices: [routing, health, login, devices, spaces, reservation, websocket, webhook, host_rules, error_rate]
    default: [health, login, devices, spaces, reservation, websocket, webhook, host_rules]
  timeout:
    description: Seconds per HTTP request, and the longest wait for the websocket message and the database row.
    type: float
    default: 10
  error_rate_requests:
    description: Requests the C(error_rate) check sends to the api host (GET /health, back to back).
    type: int
    default: 40
  error_rate_max:
    description: Highest share of failed requests (status >= 400 or no answer) the C(error_rate) check accepts.
    type: float
    default: 0.0
  expect_routing:
    description: Value of the C(X-Parking-Cutover) response header the C(routing) check waits for (V('') = absent).
    type: str
  routing_timeout:
    description: Longest wait of the C(routing) check, in seconds.
    type: float
    default: 30
  failover_grace:
    description:
      - How long the C(health) check asks again while another backend than O(expect_backend) answers,
        in seconds (V(0) - not at all).
      - Traefik's failover sends V6's share to V5 while V6's active health check fails; on a busy
        host one slow C(/health) takes V6 out until the next check passes, at no cost to clients.
    type: float
    default: 10
attributes:
  check_mode:
    support: partial
    details: >-
      Runs only the read checks (health, login, devices, spaces, host_rules); reservation,
      websocket and webhook write and are reported as skipped.
  diff_mode:
    support: none
  platform:
    platforms: posix
    description: Runs on any host that reaches Traefik (and the target database when given).
notes:
  - The login (an access token) is shared by every check that needs it; when it fails, those
    checks fail naming it.
  - Standard library only (http.client, ssl, a small RFC 6455 client); psycopg2 only with O(target).
  - Traffic goes to O(connect_host) only - never to the public names when a lab address is given.
requirements:
  - psycopg2 on the host that runs the module, when O(target) is given
seealso:
  - module: parking_migration_verify
author:
  - parking-migrate
"""

EXAMPLES = r"""
- name: Smoke-check V5 on the public API host (lab)
  parking_smoke:
    domain: verdegris.test
    connect_host: 127.0.0.1
    connect_port: 58443
    ca_file: /var/lib/parking-lab/traefik/certs/ca.crt
    expect_backend: v5
    login_email: ops@verdegris.eu
    login_password: "{{ vault_smoke_password }}"
    probe_dev_eui: 58A0CB00001196F3
    target:
      login_host: 127.0.0.1
      login_port: 55432
      login_user: parking_user
      login_password: "{{ vault_parking_user_password }}"

- name: Smoke-check V6 on its own host name before the cutover
  parking_smoke:
    domain: verdegris.eu
    api_host: api-v6
    expect_backend: v6
    login_email: ops@verdegris.eu
    login_password: "{{ vault_smoke_password }}"
    probe_dev_eui: 58A0CB00001196F3
    target: "{{ v6_connection }}"
    host_rules:
      api-v6: {path: /health, status: 200, version_prefix: expected}
      app: {status: 200, content_type: text/html}

- name: Read-only checks after the cutover (no reservation, no uplink)
  parking_smoke:
    domain: verdegris.eu
    expect_backend: v6
    login_email: ops@verdegris.eu
    login_password: "{{ vault_smoke_password }}"
    probe_dev_eui: 58A0CB00001196F3
    checks: [health, login, devices, spaces, host_rules]
  register: smoke
"""

RETURN = r"""
passed:
  description: Whether every check that ran passed (the module fails otherwise).
  returned: always
  type: bool
  sample: true
checks:
  description:
    - Every requested check in order, with C(passed) (null when skipped), C(skipped), C(detail),
      C(ms) and C(facts) (figures of that check; never the password or the token).
  returned: when the checks ran (also when one failed)
  type: list
  elements: dict
  sample: [{"name": "health", "passed": true, "skipped": false, "ms": 47.5,
            "detail": "api.verdegris.test answers 5.8.0-lab, healthy",
            "facts": {"version": "5.8.0-lab", "status": "healthy", "host": "api.verdegris.test"}},
           {"name": "websocket", "passed": null, "skipped": true, "ms": null, "facts": {},
            "detail": "V5 has no websocket endpoint (infrastructure.md section 10)"}]
failed_checks:
  description: Names of the checks that failed.
  returned: always
  type: list
  elements: str
  sample: ["health"]
skipped_checks:
  description: Names of the checks that did not run (check mode, websocket on V5, writes after a wrong backend).
  returned: when the checks ran (also when one failed)
  type: list
  elements: str
  sample: ["websocket"]
backend:
  description: The expected backend.
  returned: when the checks ran (also when one failed)
  type: str
  sample: v5
api_host:
  description: The API host checked.
  returned: when the checks ran (also when one failed)
  type: str
  sample: api.verdegris.test
api_version:
  description: Version the API host's C(/health) answered (null when the health check did not run or got none).
  returned: when the checks ran (also when one failed)
  type: str
  sample: 5.8.0-lab
check_mode:
  description: Whether the run was in check mode (read checks only).
  returned: when the checks ran (also when one failed)
  type: bool
  sample: false
probe:
  description: The probe sensor, the first fCnt of the run and every probe uplink sent.
  returned: when the checks ran (also when one failed)
  type: dict
  sample: {"dev_eui": "58A0CB00001196F3", "fcnt_base": 480050996,
           "uplinks": [{"fcnt": 480050996, "deduplication_id": "5314f6bc-b8c5-4962-862b-9af0dc60d862",
                        "occupied": false, "http_status": 200, "api_status": "processed",
                        "device_kind": "sensor", "ms": 47.7}]}
"""

import functools
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.parking.connection import HAS_PSYCOPG2, connect
from ansible.module_utils.parking.errors import ParkingError
from ansible.module_utils.parking import smoke
from ansible.module_utils.parking.specs import smoke_spec


def main():
    module = AnsibleModule(argument_spec=dict(
        smoke_spec(),
        host_rules=dict(type="dict"),
        checks=dict(type="list", elements="str", choices=list(smoke.CHECKS), default=list(smoke.DEFAULT_CHECKS)),
        expect_routing=dict(type="str"),
    ), supports_check_mode=True)
    p = module.params
    db_factory = None
    if p["target"] is not None:
        if not HAS_PSYCOPG2:
            module.fail_json(msg=missing_required_lib("psycopg2"), passed=False, failed_checks=[])
        target = dict(p["target"], db=p["target"].get("db") or smoke.default_database(p["expect_backend"]))
        db_factory = functools.partial(connect, target, "target")
    secrets = [p["login_password"]]
    try:
        result = smoke.run(p, check_mode=module.check_mode, db_factory=db_factory)
    except ParkingError as exc:
        module.fail_json(msg=smoke.scrub(str(exc), secrets), passed=False, failed_checks=[])
    except Exception as exc:
        module.fail_json(msg=smoke.scrub(f"smoke checks could not run: {exc}", secrets), passed=False,
                         failed_checks=[], exception=smoke.scrub(traceback.format_exc(), secrets))
    if not result["passed"]:
        module.fail_json(msg=smoke.failure_message(result), changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
