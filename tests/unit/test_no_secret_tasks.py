"""Static rule: no task registers or prints a container's environment.

community.docker.docker_container_info returns the whole inspect data (Config.Env: DATABASE_URL
with its password, JWT_SECRET_KEY) and docker_container returns it too after a change; at -v
Ansible prints it. Every such task in a phase's role or playbook carries no_log: true, and what
goes on (messages, module arguments) passes through parking_container_public or
parking_container_health. A removal (state absent) too: at -vvv its result shows the removed
container's environment (the production scenario's secret scan found it). The lab role and the
molecule playbooks are held to the same rule: the production scenario runs them at -vvv.
"""
import glob
import os

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECRET_MODULES = {"community.docker.docker_container_info", "community.docker.docker_container"}


def task_files():
    patterns = ["roles/*/tasks/*.yml", "playbooks/*.yml", "molecule/*/*.yml", "molecule/*/tasks/*.yml"]
    return sorted(f for p in patterns for f in glob.glob(os.path.join(ROOT, p)) if not f.endswith("molecule.yml"))


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
                   "        env: {A: b}\n"
                   "- name: Removed\n  community.docker.docker_container:\n    name: v\n    state: absent\n"
                   "- name: Templated\n  community.docker.docker_container:\n    name: w\n"
                   "  no_log: \"{{ x is defined }}\"\n")
    assert offenders(str(bad)) == ["Read it", "Nested", "Removed", "Templated"]
