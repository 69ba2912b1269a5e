"""Phases 2 and 3 under load on the real lab: 50 uplinks/s (ChirpStack simulator) and 20 API
requests/s through Traefik, while V6 is deployed, a cutover is reverted automatically because
V6 turns unhealthy, the real cutover runs, and rollback-3 hands traffic back to V5.
0 failed requests, 0 lost uplinks (every attempt 2xx and its row in V5 or V6)."""
import json
import os
import subprocess
import time

import pytest

pytestmark = pytest.mark.lab_mutating

import uplinks
from labdb import ROOT, recap, run_playbook
from labutil import sim, wait_for
from traffic import ROUTING, ApiClient, backend, v5_serving_since, v6_weight

@pytest.fixture(scope="module")
def loaded_lab():
    """The simulator at 50 uplinks/s and the API client at 20 req/s, then phases 1 and 2 under load."""
    run_playbook("playbooks/rollback.yml", "--tags", "rollback-3")  # routing on V5 whatever ran before
    sim("/sim/control", {"running": True, "rate": 50, "reset_totals": True})
    client = ApiClient(rate=20)
    client.start()
    t0 = time.time()
    run_playbook("playbooks/01-migrate-data.yml")
    run_playbook("playbooks/02-deploy-v6.yml")
    yield {"client": client, "t0": t0}
    client.stop()
    sim("/sim/control", {"rate": 20})
    subprocess.run(["docker", "exec", "parking-api-v6", "rm", "-f", "/tmp/parking-lab-unhealthy"], capture_output=True)


def test_cutover_under_load_with_automatic_revert_and_rollback_3(loaded_lab):
    figures = {}
    # 1. V6 turns unhealthy in the middle of a cutover: routing goes back to V5 on its own
    env = dict(os.environ, PATH=os.path.join(ROOT, ".venv", "bin") + os.pathsep + os.environ["PATH"])
    proc = subprocess.Popen(["ansible-playbook", "playbooks/03-cutover.yml"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: v6_weight() == 10 or proc.poll() is not None, timeout=120, interval=0.1)
    assert proc.poll() is None, proc.stdout.read()[-3000:]
    subprocess.run(["docker", "exec", "parking-api-v6", "touch", "/tmp/parking-lab-unhealthy"], check=True)
    t_fault = time.time()
    figures["v5_serving_after_fault_s"] = round(v5_serving_since(t_fault), 2)
    out = proc.communicate(timeout=300)[0]
    figures["revert_done_s"] = round(time.time() - t_fault, 2)
    assert proc.returncode != 0
    assert "Cutover reverted" in out, out[-3000:]
    assert v6_weight() == 0
    assert figures["v5_serving_after_fault_s"] <= 5, figures
    subprocess.run(["docker", "exec", "parking-api-v6", "rm", "-f", "/tmp/parking-lab-unhealthy"], check=True)
    wait_for(lambda: subprocess.run(["docker", "inspect", "-f", "{{.State.Health.Status}}", "parking-api-v6"],
                                    capture_output=True, text=True).stdout.strip() == "healthy", timeout=60)

    # 2. the real cutover
    t_switch = time.time()
    proc, figures["cutover_s"] = run_playbook("playbooks/03-cutover.yml")
    assert v6_weight() == 100 and backend() == "6"
    # second runs change nothing
    again, _ = run_playbook("playbooks/03-cutover.yml")
    assert recap(again.stdout)["changed"] == 0, again.stdout[-4000:]
    again, _ = run_playbook("playbooks/02-deploy-v6.yml")
    assert recap(again.stdout)["changed"] == 0, again.stdout[-4000:]
    time.sleep(3)

    # 3. rollback-3: back to V5, what V6 received copied back
    proc, figures["rollback3_s"] = run_playbook("playbooks/rollback.yml", "--tags", "rollback-3")
    assert not os.path.exists(ROUTING)
    assert backend() == "5"
    assert "sensor_readings" in proc.stdout

    client = loaded_lab["client"]
    t_end = time.time()
    time.sleep(7)  # uplinks in flight finish (5 s timeout)
    summary = client.summary(since=loaded_lab["t0"], until=t_end)
    account = uplinks.account(loaded_lab["t0"], t_end)
    figures.update(api=summary, uplinks={k: v for k, v in account.items() if k != "examples"},
                   switch_window_api=client.summary(since=t_switch, until=t_switch + figures["cutover_s"]))
    print("\n[cutover] " + json.dumps(figures))
    assert summary["failed"] == 0, summary
    assert account["not_2xx"] == 0 and account["lost"] == 0, account
    assert account["in_v6"] > 0 and account["in_v5"] > 0
