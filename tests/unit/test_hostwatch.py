"""Unit tests of the cutover test's host-freeze watch (tests/integration/hostwatch.py): the gap
arithmetic, the rule that charges a failure to the host, and a real watcher process that is
stopped (SIGSTOP) for a moment, as a paused virtual machine would be."""
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))
import hostwatch as H  # noqa: E402


def write(path, *gaps):
    with open(path, "w") as f:
        for start, seconds in gaps:
            f.write(json.dumps({"start": start, "seconds": seconds, "steal_s": 0.0}) + "\n")


def test_gaps_are_those_overlapping_the_window(tmp_path):
    p = str(tmp_path / "g.jsonl")
    write(p, (100.0, 2.0), (110.0, 0.6), (200.0, 5.0))
    assert H.gaps(p, 101.0, 111.0) == [(100.0, 102.0), (110.0, 110.6)]
    assert H.gaps(p, 150.0, 160.0) == []
    assert H.gaps(str(tmp_path / "none.jsonl"), 0, 1e12) == []


def test_frozen_seconds_are_clipped_to_the_window():
    freezes = [(100.0, 102.0), (110.0, 110.6)]
    assert abs(H.frozen_s(freezes, 101.0, 111.0) - 1.6) < 1e-9
    assert H.frozen_s(freezes, 103.0, 109.0) == 0.0


def test_a_failure_is_the_hosts_only_if_it_stood_still_half_the_time():
    freezes = [(100.0, 103.0)]
    assert H.host_caused(freezes, 99.0, 104.0)            # 3 s of 5 s
    assert not H.host_caused(freezes, 96.0, 104.0)        # 3 s of 8 s: the rest was slowness
    assert not H.host_caused([(100.0, 100.8)], 100.0, 101.0)  # under a second: never
    assert not H.host_caused([], 100.0, 105.0)


def test_a_stopped_watcher_records_the_gap(tmp_path):
    p = str(tmp_path / "w.jsonl")
    with H.running(p, threshold=0.5):
        time.sleep(0.5)
        pid = None
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    cmd = open(f"/proc/{name}/cmdline", "rb").read().split(b"\0")
                except OSError:
                    continue
                if p.encode() in cmd and any(c.endswith(b"hostwatch.py") for c in cmd):
                    pid = int(name)
        assert pid, "watcher process not found"
        t_stop = time.time()
        os.kill(pid, signal.SIGSTOP)
        time.sleep(1.5)
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.3)
    found = H.gaps(p, t_stop - 1, time.time())
    assert len(found) == 1, found
    start, end = found[0]
    assert abs(start - t_stop) < 0.3 and 1.2 < end - start < 2.5
