"""Static rule: no task registers or prints a container's environment.

community.docker.docker_container_info returns the whole inspect data (Config.Env: DATABASE_URL
with its password, JWT_SECRET_KEY) and docker_container returns it too after a change; at -v
Ansible prints it. Every such task in a phase's role or playbook carries no_log: true, and what
goes on (messages, module arguments) passes through parking_container_public or
parking_container_health. The lab role is exempt: it runs the lab's own containers, not a phase.
"""
import glob
import os

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECRET_MODULES = {"community.docker.docker_container_info", "community.docker.docker_container"}


def task_files():
    files = glob.glob(os.path.join(ROOT, "roles", "*", "tasks", "*.yml")) + glob.glob(os.path.join(ROOT, "playbooks", "*.yml"))
    return sorted(f for f in files if os.sep + os.path.join("roles", "lab") + os.sep not in f)


def walk(tasks):
    for task in tasks or []:
        if not isinstance(task, dict):
            continue
        yield task
        for key in ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers"):
            if isinstance(task.get(key), list):
                yield from walk(task[key])


def offenders(path):
    with open(path) as f:
        doc = yaml.safe_load(f) or []
    found = []
    for task in walk(doc if isinstance(doc, list) else []):
        module = next((m for m in SECRET_MODULES if m in task), None)
        if module is None:
            continue
        if module == "community.docker.docker_container" and (task[module] or {}).get("state") == "absent":
            continue  # a removal returns no inspect data
        if task.get("no_log") is not True:
            found.append(task.get("name", module))
    return found


@pytest.mark.parametrize("path", task_files(), ids=lambda p: os.path.relpath(p, ROOT))
def test_container_data_is_never_logged(path):
    assert offenders(path) == [], f"{os.path.relpath(path, ROOT)}: add no_log: true (container environment)"


def test_the_rule_finds_a_task_that_logs_the_environment(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("- name: Read it\n  community.docker.docker_container_info:\n    name: x\n  register: r\n"
                   "- name: Fine\n  community.docker.docker_container_info:\n    name: y\n  no_log: true\n"
                   "- block:\n    - name: Nested\n      community.docker.docker_container:\n        name: z\n"
                   "        env: {A: b}\n")
    assert offenders(str(bad)) == ["Read it", "Nested"]
