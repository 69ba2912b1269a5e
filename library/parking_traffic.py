#!/usr/bin/python
# -*- coding: utf-8 -*-
# parking-migrate: phase 3, what clients saw during the cutover. Thin module: documentation,
# argument spec and result; reading the access log, the gate and the chart live in
# module_utils/parking/traffic.py (and accesslog.py).

from __future__ import annotations

DOCUMENTATION = r"""
---
module: parking_traffic
short_description: What clients saw through Traefik during the cutover, gated on a baseline, with a timeline chart
version_added: "1.0.0"
description:
  - Reads Traefik's JSON access log (C(--accesslog.format=json)) O(access_log) for the requests to O(hosts)
    that started between O(since) and O(until), and for the O(baseline_seconds) just before O(since).
    The start of that window is found by binary search on byte offsets, so a log of several GB is not
    read from its beginning and never held in memory; unparsable lines are skipped and counted.
  - A request failed when Traefik answered it with 499 (the client gave up) or 500 and above
    (502/503/504 - Traefik could not get an answer from a backend); status 0 is a handed-over
    connection (websocket upgrade), not a failure. Requests whose path starts with one of
    O(uplink_paths) are uplinks; the backend of a request is the first of O(backends) whose substring
    occurs in its C(ServiceName).
  - The gate allows as many failed requests as the baseline's failure share times the phase's requests
    (rounded down; none without a baseline). It also fails when Traefik restarted during the phase
    (O(traefik_started_at) after O(since)) - requests refused while it was down never reach the log - and
    when O(max_bytes) stopped the reading before the end of the window.
  - With O(fail=true) (default) the module fails on a failed gate or a missing access log, with a message
    that says how many requests and uplinks failed, against the baseline, and where to look.
  - Draws the phase as an SVG (O(svg_path)) for the report - requests/s per backend with failures,
    p99/max latency, uplinks answered and lost per second, V6's weight over time - with O(events) marked.
options:
  access_log:
    description:
      - Traefik's JSON access log on the host running the module (C(parking_traefik_access_log)).
      - When missing the result says RV(known=false); with O(fail=true) that is a failure.
    type: path
  since:
    description: Start of the phase, epoch seconds (a fact set with C(now) when the phase began).
    type: float
    required: true
  until:
    description: End of the phase, epoch seconds; default now.
    type: float
  baseline_seconds:
    description: Length of the baseline window just before O(since), in seconds; 0 = no baseline (no failure allowed).
    type: float
    default: 300
  hosts:
    description: Host names (FQDNs) whose requests count, compared without port and case; empty = every host.
    type: list
    elements: str
    default: []
  uplink_paths:
    description: Request path prefixes of uplinks (what ChirpStack posts).
    type: list
    elements: str
    default: [/api/v1/uplink]
  backends:
    description:
      - Backend name -> substring of C(ServiceName), tried in order; an empty substring matches anything (the fallback).
        The chart draws C(v5) and C(v6); requests of no backend count as C(other).
    type: dict
    default: {v6: v6, v5: ""}
  bucket:
    description: Width of one timeline row and chart bar, in seconds.
    type: float
    default: 1.0
  max_bytes:
    description: Read at most this many bytes of the log from the start of the window (the gate fails beyond it).
    type: int
    default: 536870912
  svg_path:
    description: Where to write the timeline chart (SVG, mode 0644, replaced atomically). Omitted = no chart.
    type: path
  chart:
    description:
      - Return the chart's SVG document as RV(svg_document), e.g. to write it into the report directory on the
        controller (the module runs on the Docker host). Also in check mode.
    type: bool
    default: false
  title:
    description: Title of the chart (the window and the verdict are appended).
    type: str
    default: Phase 3 - cutover - what clients saw
  weights:
    description: V6's share of traffic over time, a step function - each C(weight) (0-100) holds from its C(t) (epoch or ISO 8601) on.
    type: list
    elements: dict
    default: []
  events:
    description: Moments to mark on the chart, each a C(t) (epoch or ISO 8601) and a short C(label).
    type: list
    elements: dict
    default: []
  traefik_container:
    description:
      - Name of the Traefik container; when O(traefik_started_at) is not given, its start time is read
        from the Docker Engine API on O(docker_socket) (a restart during the phase fails the gate).
    type: str
  docker_socket:
    description: Unix socket of the Docker Engine API (with O(traefik_container)).
    type: path
    default: /var/run/docker.sock
  traefik_started_at:
    description:
      - When the Traefik container started (ISO 8601, e.g. C(State.StartedAt) of C(docker_container_info), or epoch).
        After O(since) means Traefik restarted during the phase, and the gate fails.
    type: str
  fail:
    description: Fail the task on a failed gate or a missing access log; false only reports (RV(passed)).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Reads the log and reports the same; writes no chart (RV(svg) is null).
  diff_mode:
    support: none
  idempotent:
    support: full
    description: Changes nothing but the report chart; C(changed) is always false.
  platform:
    platforms: posix
    description: Run it on the Docker host, where Traefik writes its access log.
notes:
  - Traefik writes a line when a request ends, so reading goes on a little (2 minutes of log) past O(until) to catch
    requests that started before it; a request still open when the module runs is not counted.
seealso:
  - module: parking_preflight
author:
  - parking-migrate
"""

EXAMPLES = r"""
- name: Record when the cutover starts
  ansible.builtin.set_fact:
    cutover_started: "{{ now().timestamp() }}"

- name: What clients saw during the cutover, against the 5 minutes before it
  parking_traffic:
    access_log: "{{ parking_traefik_access_log }}"
    since: "{{ cutover_started }}"
    baseline_seconds: 300
    hosts: [api.verdegris.eu, lns.verdegris.eu]
    uplink_paths: [/api/v1/uplink]
    backends: {v6: cutover-v6, v5: ""}
    svg_path: reports/phase3-traffic.svg
    weights:
      - {t: "{{ cutover_started }}", weight: 10}
      - {t: "{{ step_50_at }}", weight: 50}
    events:
      - {t: "{{ step_50_at }}", label: weight 50}
    traefik_started_at: "{{ traefik_info.container.State.StartedAt }}"
  register: traffic
"""

RETURN = r"""
passed:
  description: Whether the gate passed (false when the log is missing).
  returned: always
  type: bool
  sample: false
known:
  description: Whether the access log could be read (false = no access log at O(access_log)).
  returned: always
  type: bool
  sample: true
msg:
  description: The verdict in operator words - failed requests and uplinks during the phase against the baseline, the statuses, where to look.
  returned: always
  type: str
  sample: "the migration added failures: 86 of 4801 requests (1.79%) failed during the phase, 23 of 1486 uplinks among them;
    the baseline (300 s before the phase) had 4 of 6000 requests (0.07%) failed, which allows 3, so 83 too many. Statuses: 502 x40 ..."
access_log:
  description: The access log read.
  returned: always
  type: str
  sample: /opt/v5-smart-parking/logs/traefik/access.log
window:
  description: The phase's window, C(since) and C(until) (ISO 8601 UTC) and C(seconds).
  returned: always
  type: dict
  sample: {since: "2026-11-30T23:20:00Z", until: "2026-11-30T23:24:00Z", seconds: 240.0}
baseline:
  description: Totals of the baseline window (same keys as RV(phase)); null without one.
  returned: when the log was read
  type: dict
  sample: {seconds: 300.0, requests: 6000, failed: 4, uplinks: 1800, uplinks_failed: 1, retries: 0,
           backends: {v5: 6000}, statuses: {"504": 4}, p50_ms: 14.0, p99_ms: 96.3, max_ms: 179.8}
phase:
  description: >-
    Totals of the phase: C(seconds), C(requests), C(failed), C(uplinks), C(uplinks_failed), C(retries), C(backends)
    (requests per backend), C(statuses) (failed requests per status), C(p50_ms), C(p99_ms), C(max_ms).
  returned: when the log was read
  type: dict
  sample: {seconds: 240.0, requests: 4801, failed: 86, uplinks: 1486, uplinks_failed: 23, retries: 0,
           backends: {v5: 2859, v6: 1942}, statuses: {"502": 40, "503": 40, "504": 6}, p50_ms: 15.0, p99_ms: 435.5, max_ms: 559.0}
gate:
  description: C(passed), C(allowed) (failures the baseline allows), C(excess) (failures beyond them), C(message).
  returned: when the log was read
  type: dict
  sample: {passed: false, allowed: 3, excess: 83, message: "the migration added failures: ..."}
timeline:
  description: One row per O(bucket) from O(since) to O(until), empty ones included - C(t) (seconds since O(since)), C(requests),
    C(failed), C(uplinks), C(uplinks_failed), C(p99_ms), C(max_ms) (null without requests), requests per backend (C(v5), C(v6), ...).
  returned: always
  type: list
  elements: dict
  sample: [{t: 0.0, requests: 20, failed: 0, uplinks: 6, uplinks_failed: 0, p99_ms: 61.2, max_ms: 61.2, v5: 20, v6: 0}]
statuses:
  description: Failed requests of the phase per status, the ten most frequent.
  returned: always
  type: dict
  sample: {"502": 40, "503": 40, "504": 6}
examples:
  description: Up to five failed requests of the phase - C(time), C(host), C(path), C(status), C(service), C(ms).
  returned: always
  type: list
  elements: dict
  sample: [{time: "2026-11-30T23:22:41.377682208Z", host: api.verdegris.eu, path: /api/v1/uplink, status: 502,
            service: cutover-v6@file, ms: 1.6}]
svg:
  description: Path of the chart written; null without O(svg_path), in check mode, or when the log is missing.
  returned: always
  type: str
  sample: reports/phase3-traffic.svg
svg_document:
  description: The chart as an SVG document, with O(chart=true); null otherwise or when the log is missing.
  returned: always
  type: str
  sample: "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"960\" height=\"740\" ...</svg>"
traefik_restarted:
  description: Whether Traefik started after O(since) (then the gate fails).
  returned: always
  type: bool
  sample: false
read:
  description: How the log was read - C(size), C(start_offset), C(bytes_read), C(lines), C(unparsable), C(truncated),
    C(log_start) (when the log's first line was written if that is after the baseline started - rotated or turned on late; else null).
  returned: when the log was read
  type: dict
  sample: {size: 3013158, start_offset: 1204480, bytes_read: 1808678, lines: 7201, unparsable: 1, truncated: false, log_start: null}
"""

import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.parking import traffic
from ansible.module_utils.parking.specs import traffic_spec


def main():
    module = AnsibleModule(argument_spec=dict(
        traffic_spec(),
        until=dict(type="float"),
        bucket=dict(type="float", default=1.0),
        svg_path=dict(type="path"),
        chart=dict(type="bool", default=False),
        title=dict(type="str", default="Phase 3 - cutover - what clients saw"),
        weights=dict(type="list", elements="dict", default=[]),
        events=dict(type="list", elements="dict", default=[]),
        traefik_started_at=dict(type="str"),
        fail=dict(type="bool", default=True),
    ), supports_check_mode=True)
    options = dict(module.params, svg_path=None if module.check_mode else module.params["svg_path"])
    try:
        result = traffic.watch(options)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    except Exception as exc:
        module.fail_json(msg=f"traffic watch could not run: {exc}", exception=traceback.format_exc())
    msg = result.pop("msg")
    if result.pop("failed"):
        module.fail_json(msg=msg, changed=False, **result)
    module.exit_json(changed=False, msg=msg, **result)


if __name__ == "__main__":
    main()
