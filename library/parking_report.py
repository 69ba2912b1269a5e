#!/usr/bin/python
# -*- coding: utf-8 -*-
# parking-migrate: documentation of the action plugin action_plugins/parking_report.py, which
# does the work on the controller (no module runs on the target).

from __future__ import annotations

DOCUMENTATION = r"""
---
module: parking_report
short_description: Write a phase's report files on the controller
version_added: "1.0.0"
description:
  - Creates O(dir) on the controller and writes each of O(files) into it (a hidden temporary file, then a
    rename, so a reader never sees half a report). Runs in the play's own process - no module run - so
    writing a report costs next to nothing on a saturated host.
  - Reports are outputs, not managed state - written in check mode too and never counted as a change.
options:
  dir:
    description: Directory on the controller (C(parking_reports_dir)); created when missing.
    type: path
    required: true
  files:
    description: File name (no directory part) -> content.
    type: dict
    required: true
  mode:
    description: Mode of the files written.
    type: raw
    default: "0644"
attributes:
  check_mode:
    support: full
    details: Writes the reports in check mode too (they say they were made in check mode).
  diff_mode:
    support: none
  platform:
    platforms: posix
    description: Runs on the controller only.
author:
  - parking-migrate
"""

EXAMPLES = r"""
- name: Write the phase 1 delta's result
  parking_report:
    dir: "{{ parking_reports_dir }}"
    files:
      phase1-delta.json: "{{ data_migration_result | to_nice_json }}"
"""

RETURN = r"""
paths:
  description: The files written, on the controller.
  returned: always
  type: list
  elements: str
  sample: [/home/ops/parking-migrate/reports/phase1-delta.json]
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec=dict(dir=dict(type="path", required=True),
                                              files=dict(type="dict", required=True),
                                              mode=dict(type="raw", default="0644")))
    module.fail_json(msg="parking_report runs on the controller as an action plugin (action_plugins/); "
                         "set action_plugins in ansible.cfg")


if __name__ == "__main__":
    main()
