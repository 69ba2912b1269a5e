#!/usr/bin/python
# -*- coding: utf-8 -*-
# parking-migrate: phase 3, V6's share of traffic raised step by step, each step gated, in one
# module run. Thin module: documentation, argument spec and result; the ramp lives in
# module_utils/parking/ramp.py, the checks in smoke/, what clients saw in traffic.py.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: parking_cutover_ramp
short_description: Raise V6's share of API and webhook traffic step by step, each step gated, in one run
version_added: "1.0.0"
description:
  - For each of O(steps) in order - publishes its routing file O(directory)/O(name) atomically (hidden
    temporary file, then rename, as M(parking_traefik_file)), waits until Traefik serves it (the C(routing)
    check of M(parking_smoke) polls for the file's C(X-Parking-Cutover) header value), runs the step's
    smoke checks through Traefik, then gates on what clients saw since the phase started (Traefik's access
    log against the baseline before it, as M(parking_traffic), read incrementally - each step reads only
    the new lines).
  - The first failed gate stops the ramp - no later step is published - and the module fails with the step,
    the gate that failed and what it saw; the play then reverts the routing. On success V6 serves the last
    step's share.
  - One module run for the whole ramp, not several tasks per step - on a saturated host each Ansible task
    costs seconds, and those seconds made most of the time between the canary step and the full switch.
options:
  directory:
    description: Directory Traefik's file provider watches (C(--providers.file.directory)).
    type: path
    required: true
  name:
    description: The routing file in O(directory) (ends in C(.yml), C(.yaml) or C(.toml)).
    type: str
    required: true
  steps:
    description: The steps, V6's share rising.
    type: list
    elements: dict
    required: true
    suboptions:
      weight:
        description: V6's share at this step, percent (0-100, each step above the one before).
        type: int
        required: true
      content:
        description: The routing file for this step (rendered by the play).
        type: str
        required: true
      checks:
        description: The M(parking_smoke) checks gating this step (C(routing) first, to wait for Traefik).
        type: list
        elements: str
        default: [routing, host_rules, error_rate]
      host_rules:
        description: The C(host_rules) expectation of this step (see M(parking_smoke)).
        type: dict
      expect_routing:
        description: The C(X-Parking-Cutover) value this step's file sets. Default C(v6=<weight>).
        type: str
  smoke:
    description:
      - How the checks reach the platform - the options of M(parking_smoke) C(domain), C(api_host), C(connect_host),
        C(connect_port), C(ca_file), C(expect_backend), C(login_email), C(login_password) (never logged),
        C(probe_dev_eui), C(probe_fcnt_base), C(target), C(timeout), C(error_rate_requests),
        C(error_rate_max), C(routing_timeout).
    type: dict
    required: true
  traffic:
    description:
      - What clients saw, gated after every step - the options of M(parking_traffic) C(access_log), C(since)
        (when the phase started), C(baseline_seconds), C(hosts), C(uplink_paths), C(backends), C(max_bytes),
        C(traefik_container), C(docker_socket).
      - Omitted - the steps are gated by their checks only.
    type: dict
  started:
    description: When the phase started (epoch seconds), for the steps' C(seconds_since_start).
    type: float
attributes:
  check_mode:
    support: full
    details: Says whether each step's file would change; publishes nothing, runs no check.
  diff_mode:
    support: full
    details: The routing file before the ramp and after its last step.
  platform:
    platforms: posix
    description: Runs on the host where Traefik's dynamic directory and access log are.
notes:
  - Standard library only, psycopg2 when C(smoke.target) is given (the webhook check confirms the reading landed).
seealso:
  - module: parking_smoke
  - module: parking_traffic
  - module: parking_traefik_file
author:
  - parking-migrate
"""

EXAMPLES = r"""
- name: Shift traffic to V6, 10 % then 100 %, each step gated
  parking_cutover_ramp:
    directory: /opt/traefik/dynamic
    name: cutover-routing.yml
    started: "{{ cutover_started }}"
    steps:
      - weight: 10
        content: "{{ routing_documents['10'] }}"
        checks: [routing, host_rules, error_rate]
        host_rules:
          api-v6: {path: /health, status: 200, version_prefix: "6."}
      - weight: 100
        content: "{{ routing_documents['100'] }}"
        checks: [routing, health, webhook, error_rate]
    smoke:
      domain: verdegris.eu
      expect_backend: v6
      login_email: ops@verdegris.eu
      login_password: "{{ vault_smoke_password }}"
      probe_dev_eui: 58A0CB00001196F3
      error_rate_requests: 20
    traffic:
      access_log: /var/log/traefik/access.log
      since: "{{ cutover_started }}"
      hosts: [api.verdegris.eu, parking-ingest.verdegris.eu]
      uplink_paths: [/api/v1/uplink]
      traefik_container: traefik
  register: ramp
"""

RETURN = r"""
passed:
  description: Whether every step passed its gates.
  returned: always
  type: bool
  sample: true
reached:
  description: The last step published (V6's share that Traefik may be serving now).
  returned: always
  type: int
  sample: 100
failed_step:
  description: The step whose gate failed (null when none did).
  returned: always
  type: int
  sample: null
steps:
  description: One row per step published - share, when Traefik served it, seconds since the phase started, what the gates said.
  returned: always
  type: list
  elements: dict
  sample: [{"v6_share_percent": 10, "at": "12:18:02", "seconds_since_start": 41.3,
            "gate": "Traefik serves v6=10 after 0.21 s; 1 hosts as expected; 0 errors in 20 requests (0.0%)",
            "clients": "no request failed during the phase (1830 requests, 1204 uplinks)"}]
weights:
  description: V6's share over time (epoch C(t), C(weight)), for the timeline chart.
  returned: always
  type: list
  elements: dict
  sample: [{"t": 1796112482.3, "weight": 10}, {"t": 1796112485.9, "weight": 100}]
events:
  description: The steps as labelled marks for the timeline chart.
  returned: always
  type: list
  elements: dict
  sample: [{"t": 1796112482.3, "label": "10 %"}]
smoke:
  description: The last step's smoke result (see M(parking_smoke)'s return values).
  returned: when a step was gated
  type: dict
  sample: {"passed": true, "failed_checks": [], "checks": []}
traffic:
  description: The last traffic gate (C(passed), C(msg), C(baseline), C(phase), C(gate), C(statuses), C(examples), C(read)).
  returned: when O(traffic) was given and a step got that far
  type: dict
  sample: {"passed": true, "msg": "no request failed during the phase (1830 requests, 1204 uplinks)"}
msg:
  description: What the ramp did, or which step failed and why.
  returned: always
  type: str
  sample: V6 serves 100 % after 2 step(s)
"""

import functools
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.parking import ramp, routing, smoke, traffic
from ansible.module_utils.parking.connection import HAS_PSYCOPG2, connect
from ansible.module_utils.parking.errors import ParkingError
from ansible.module_utils.parking.specs import smoke_spec, traffic_spec


def main():
    module = AnsibleModule(argument_spec=dict(
        directory=dict(type="path", required=True),
        name=dict(type="str", required=True),
        steps=dict(type="list", elements="dict", required=True, options=dict(
            weight=dict(type="int", required=True),
            content=dict(type="str", required=True),
            checks=dict(type="list", elements="str", choices=list(smoke.CHECKS),
                        default=["routing", "host_rules", "error_rate"]),
            host_rules=dict(type="dict"),
            expect_routing=dict(type="str"),
        )),
        smoke=dict(type="dict", required=True, options=smoke_spec()),
        traffic=dict(type="dict", options=traffic_spec()),
        started=dict(type="float"),
    ), supports_check_mode=True)
    p = module.params
    secrets = [p["smoke"]["login_password"]]
    before = routing.read(f"{p['directory']}/{p['name']}")

    def publish(step):
        return routing.publish(p["directory"], p["name"], step["content"], check_mode=module.check_mode)["changed"]

    db_factory = None
    if p["smoke"]["target"] is not None:
        if not HAS_PSYCOPG2:
            module.fail_json(msg=missing_required_lib("psycopg2"))
        target = dict(p["smoke"]["target"])
        target["db"] = target.get("db") or smoke.default_database(p["smoke"]["expect_backend"])
        db_factory = functools.partial(connect, target, "target")

    def smoke_params(step):
        return dict(p["smoke"], checks=step["checks"], host_rules=step["host_rules"],
                    expect_routing=step["expect_routing"])

    def check(step):
        return smoke.run(smoke_params(step), db_factory=db_factory)

    watcher = None

    def watch(weights, events):
        return watcher.poll(weights=weights, events=events)

    try:   # every option checked before the first file is published
        if p["traffic"] and not module.check_mode:
            watcher = traffic.Watcher(dict(p["traffic"], fail=True))
        steps = ramp.normalise_steps(p["steps"])
        routing.check_name(p["name"])
        for step in steps:
            routing.validate(p["name"], step["content"])
            smoke.normalise_options(smoke_params(step))
        out = ramp.run(steps, publish, None if module.check_mode else check,
                       watch if watcher is not None else None, started=p["started"])
    except (ParkingError, OSError, ValueError) as exc:
        module.fail_json(msg=smoke.scrub(f"cutover ramp: {exc}", secrets))
    except Exception as exc:
        module.fail_json(msg=smoke.scrub(f"cutover ramp could not run: {exc}", secrets),
                         exception=smoke.scrub(traceback.format_exc(), secrets))
    out = smoke.scrub(out, secrets)
    if module._diff and out["changed"]:
        reached = [s for s in steps if s["weight"] == out["reached"]]
        out["diff"] = {"before": before or "", "after": reached[0]["content"] if reached else before or "",
                       "before_header": p["name"], "after_header": p["name"]}
    if not out["passed"]:
        module.fail_json(**out)
    module.exit_json(**out)


if __name__ == "__main__":
    main()
