#!/usr/bin/python
# -*- coding: utf-8 -*-
# parking-migrate: one file of Traefik's file-provider directory, published atomically.

DOCUMENTATION = r"""
module: parking_traefik_file
short_description: Publish or remove one Traefik file-provider file atomically
version_added: "1.0.0"
description:
  - Writes O(content) to O(directory)/O(name) so that Traefik, which watches the directory, only
    ever reads the old file or the new one - never half a file, never a temporary copy named like
    the live one. The content goes to a hidden file Traefik ignores, is flushed, then renamed over
    the live file (rename(2) is atomic within a directory).
  - YAML content is parsed first (it must be a mapping): invalid content is refused and nothing changes.
  - Nothing is written when the live file already holds O(content) (idempotent); V(absent) removes it.
options:
  directory:
    description: The directory Traefik watches (C(--providers.file.directory)).
    type: path
    required: true
  name:
    description: File name in O(directory), ending in C(.yml), C(.yaml) or C(.toml).
    type: str
    required: true
  content:
    description: The file's text (usually rendered with C(lookup('ansible.builtin.template', ...))). Required for V(present).
    type: str
  state:
    description: V(present) publishes O(content); V(absent) removes the file (Traefik drops its routes at once).
    type: str
    choices: [present, absent]
    default: present
  mode:
    description: Permissions of the published file.
    type: raw
    default: "0644"
attributes:
  check_mode:
    support: full
    description: Reports whether the file would change (with the diff), writes nothing.
  diff_mode:
    support: full
  platform:
    platforms: posix
seealso:
  - module: parking_smoke
    description: Its C(routing) check waits until Traefik serves the file published here.
author:
  - parking-migrate
"""

EXAMPLES = r"""
- name: Publish the cutover routing
  parking_traefik_file:
    directory: /opt/v5-smart-parking/config/traefik/dynamic
    name: cutover-routing.yml
    content: "{{ lookup('ansible.builtin.template', 'cutover-routing.yml.j2') }}"

- name: Hand the routes back (remove the file)
  parking_traefik_file:
    directory: /opt/v5-smart-parking/config/traefik/dynamic
    name: cutover-routing.yml
    state: absent
"""

RETURN = r"""
path:
  description: The live file.
  returned: always
  type: str
  sample: /opt/v5-smart-parking/config/traefik/dynamic/cutover-routing.yml
existed:
  description: Whether the file existed before.
  returned: always
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.parking.errors import ParkingError
from ansible.module_utils.parking.routing import publish


def main():
    module = AnsibleModule(argument_spec=dict(
        directory=dict(type="path", required=True),
        name=dict(type="str", required=True),
        content=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        mode=dict(type="raw", default="0644"),
    ), required_if=[("state", "present", ["content"])], supports_check_mode=True)
    p = module.params
    try:
        mode = int(str(p["mode"]), 8) if not isinstance(p["mode"], int) else p["mode"]
        out = publish(p["directory"], p["name"], p["content"], p["state"], mode, module.check_mode)
    except (ParkingError, OSError, ValueError) as exc:
        module.fail_json(msg=f"{p['name']}: {exc}")
    result = {"changed": out["changed"], "path": out["path"], "existed": out["before"] is not None}
    if module._diff and out["changed"]:
        result["diff"] = {"before": out["before"] or "", "after": out["after"] or "",
                          "before_header": out["path"], "after_header": out["path"]}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
