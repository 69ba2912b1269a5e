"""Unit tests of the cutover ramp (module_utils/parking/ramp.py): step order and validation, the
first failed gate stops the ramp before the next file is published, check mode, the timeline and
report rows. The three actions (publish, check, watch) are recorded stand-ins; the real ones are
exercised by tests/integration/test_cutover.py on the lab."""
import pytest

from parking import ramp
from parking.errors import ConfigError

T0 = 1_800_000_000.0


def steps(*weights):
    return ramp.normalise_steps([{"weight": w, "content": f"http: {{}} # {w}\n"} for w in weights])


def smoke_result(passed=True, seconds=0.5, detail="ok"):
    checks = [{"name": "routing", "passed": True, "skipped": False, "detail": f"served after {seconds}",
               "facts": {"seconds": seconds}},
              {"name": "error_rate", "passed": passed, "skipped": False, "detail": detail, "facts": {}}]
    return {"passed": passed, "checks": checks, "failed_checks": [] if passed else ["error_rate"],
            "skipped_checks": []}


class Recorder:
    def __init__(self, fail_check_at=None, fail_watch_at=None, watch_fails_first=False, raise_in_check=False):
        self.calls, self.now = [], T0
        self.fail_check_at, self.fail_watch_at = fail_check_at, fail_watch_at
        self.watch_fails_first, self.raise_in_check = watch_fails_first, raise_in_check
        self.published = []

    def clock(self):
        self.now += 1.0
        return self.now

    def publish(self, step):
        self.calls.append(("publish", step["weight"]))
        self.published.append(step["weight"])
        return True

    def check(self, step):
        self.calls.append(("check", step["weight"], step["expect_routing"]))
        if self.raise_in_check:
            raise RuntimeError("connection refused")
        return smoke_result(passed=step["weight"] != self.fail_check_at, detail="3 errors in 20 requests")

    def watch(self, weights, events):
        self.calls.append(("watch", [w["weight"] for w in weights]))
        first = len([c for c in self.calls if c[0] == "watch"]) == 1
        bad = (first and self.watch_fails_first) or (weights and weights[-1]["weight"] == self.fail_watch_at)
        return {"passed": not bad, "failed": bad, "msg": "2 uplinks failed" if bad else "no request failed",
                "timeline": [1, 2, 3]}


def test_every_step_published_checked_and_watched_in_order():
    r = Recorder()
    out = ramp.run(steps(10, 50, 100), r.publish, r.check, r.watch, started=T0, clock=r.clock)
    assert out["passed"] and out["changed"] and out["reached"] == 100 and out["failed_step"] is None
    assert r.calls == [("watch", []),
                       ("publish", 10), ("check", 10, "v6=10"), ("watch", [10]),
                       ("publish", 50), ("check", 50, "v6=50"), ("watch", [10, 50]),
                       ("publish", 100), ("check", 100, "v6=100"), ("watch", [10, 50, 100])]
    # the weight took effect when Traefik served it: published + the routing check's wait
    assert [w["t"] for w in out["weights"]] == [T0 + 1.5, T0 + 2.5, T0 + 3.5]
    assert [e["label"] for e in out["events"]] == ["10 %", "50 %", "100 %"]
    assert [row["seconds_since_start"] for row in out["steps"]] == [1.5, 2.5, 3.5]
    assert out["steps"][0]["gate"] == "served after 0.5; 3 errors in 20 requests"
    assert out["steps"][0]["clients"] == "no request failed"
    assert "timeline" not in out["traffic"] and out["msg"] == "V6 serves 100 % after 3 step(s)"


@pytest.mark.parametrize("kind", ["check", "watch"])
def test_the_first_failed_gate_stops_the_ramp_before_the_next_file(kind):
    r = Recorder(**{f"fail_{kind}_at": 10})
    out = ramp.run(steps(10, 100), r.publish, r.check, r.watch, clock=r.clock)
    assert not out["passed"] and out["failed_step"] == 10 and out["reached"] == 10
    assert r.published == [10]                       # 100 % never published
    assert out["msg"].startswith("step 10 %: ")
    assert ("error_rate (3 errors in 20 requests)" if kind == "check" else "what clients saw: 2 uplinks failed") \
        in out["msg"]
    assert len(out["steps"]) == 1 and out["weights"][0]["weight"] == 10


def test_failures_before_the_first_step_move_no_traffic():
    r = Recorder(watch_fails_first=True)
    out = ramp.run(steps(10, 100), r.publish, r.check, r.watch, clock=r.clock)
    assert not out["passed"] and r.published == [] and out["reached"] is None
    assert out["msg"] == "before the first step: what clients saw: 2 uplinks failed"


def test_checks_that_cannot_run_fail_the_step():
    r = Recorder(raise_in_check=True)
    out = ramp.run(steps(10, 100), r.publish, r.check, r.watch, clock=r.clock)
    assert not out["passed"] and out["failed_step"] == 10 and r.published == [10]
    assert out["msg"] == "step 10 %: the checks could not run: connection refused"


def test_check_mode_publishes_in_check_mode_and_gates_nothing():
    r = Recorder()
    out = ramp.run(steps(10, 100), r.publish, None, None, clock=r.clock)
    assert out["passed"] and r.calls == [("publish", 10), ("publish", 100)]
    assert [row["gate"] for row in out["steps"]] == ["not run (check mode)"] * 2 and out["weights"] == []
    assert out["msg"].endswith("(check mode: published nothing, gated nothing)")


def test_without_a_traffic_gate_the_checks_alone_gate():
    r = Recorder()
    out = ramp.run(steps(10, 100), r.publish, r.check, None, clock=r.clock)
    assert out["passed"] and [c[0] for c in r.calls] == ["publish", "check", "publish", "check"]
    assert out["traffic"] is None


@pytest.mark.parametrize("bad, message", [
    ([], "at least one step"),
    ([{"weight": 50, "content": "x: 1"}, {"weight": 10, "content": "x: 1"}], "must rise"),
    ([{"weight": 101, "content": "x: 1"}], "must rise within 0-100"),
    ([{"weight": "ten", "content": "x: 1"}], "whole percent"),
    ([{"weight": 10, "content": "  "}], "content (the routing file) is empty"),
])
def test_steps_are_validated(bad, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ramp.normalise_steps(bad)


def test_a_step_may_name_its_own_marker():
    assert ramp.normalise_steps([{"weight": 0, "content": "x: 1", "expect_routing": ""}])[0]["expect_routing"] == ""
