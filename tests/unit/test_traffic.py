"""Unit tests of the phase-3 traffic watch (module_utils/parking/traffic.py) and the access-log
reader it shares with the preflight (module_utils/parking/accesslog.py): classification, the
failure rule, bucketing, percentiles, the gate, restart and missing-log verdicts, the binary-search
window reading on a generated log, and the SVG chart. No Docker, no Traefik."""
import datetime as dt
import json
import os
import stat
import xml.etree.ElementTree as ET

import pytest

from parking import accesslog as A
from parking import preflight as P
from parking import traffic as T

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
HOSTS = ["api.verdegris.test"]
BACKENDS = {"v6": "v6", "v5": ""}
SVG = "{http://www.w3.org/2000/svg}"


def iso(t, digits=9):
    base = dt.datetime.fromtimestamp(t, dt.timezone.utc)
    frac = f"{base.microsecond:06d}000"[:digits]
    return base.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if digits else "") + "Z"


def entry(t, status=200, host="api.verdegris.test", path="/api/v6/spaces", service="api@docker", ms=2.0,
          logged=None, **extra):
    e = {"ClientAddr": "172.18.0.1:44114", "DownstreamStatus": status, "Duration": int(ms * 1e6),
         "RequestHost": host, "RequestMethod": "GET", "RequestPath": path, "RetryAttempts": 0,
         "ServiceName": service, "StartUTC": iso(t), "time": iso(logged if logged is not None else t, 0)}
    e.update(extra)
    return e


def write_log(path, entries, extra_lines=()):
    with open(path, "w") as handle:
        for e in entries:
            handle.write((e if isinstance(e, str) else json.dumps(e)) + "\n")
        for line in extra_lines:
            handle.write(line + "\n")
    return str(path)


def rec(t, status=200, kind="api", ms=1.0, backend="v5", retries=0):
    return T.Record(t, kind, status, ms, backend, retries)


# ---------------------------------------------------------------- classification and failure rule

def test_classify_the_real_lab_line():
    line = json.loads('{"ClientAddr":"172.18.0.1:44114","DownstreamContentSize":42,"DownstreamStatus":400,'
                      '"Duration":1627824,"OriginDuration":1587323,"OriginStatus":400,'
                      '"RequestHost":"api.verdegris.test","RequestMethod":"POST","RequestPath":"/api/v1/uplink",'
                      '"RetryAttempts":0,"RouterName":"api@docker","ServiceName":"api@docker",'
                      '"ServiceURL":"http://172.18.0.6:8000","StartUTC":"2026-11-30T23:22:41.377682208Z",'
                      '"entryPointName":"websecure","level":"info","msg":"","time":"2026-11-30T23:22:41Z"}')
    r = T.classify(line, HOSTS, ["/api/v1/uplink"], BACKENDS)
    assert r.kind == "uplink" and r.status == 400 and r.backend == "v5" and r.retries == 0
    assert r.ms == pytest.approx(1.627824)
    assert r.t == pytest.approx(dt.datetime(2026, 11, 30, 23, 22, 41, 377682, dt.timezone.utc).timestamp())


def test_classify_hosts_ports_case_and_backends():
    e = entry(T0, host="API.Verdegris.Test:443", service="cutover-v6@file", RetryAttempts=2)
    r = T.classify(e, HOSTS, ["/api/v1/uplink"], BACKENDS)
    assert (r.kind, r.backend, r.retries) == ("api", "v6", 2)
    assert T.classify(entry(T0, host="website.verdegris.test"), HOSTS, [], BACKENDS) is None
    assert T.classify(entry(T0, host="website.verdegris.test"), [], [], BACKENDS) is not None  # no hosts = all
    assert T.classify(entry(T0, service="cutover-v5@file"), HOSTS, [], BACKENDS).backend == "v5"
    # the first matching key wins, in order; nothing matching is "other"
    assert T.classify(entry(T0, service="cutover-v6@file"), HOSTS, [], {"v5": "", "v6": "v6"}).backend == "v5"
    assert T.classify(entry(T0, service="x@docker"), HOSTS, [], {"v6": "v6"}).backend == "other"


def test_classify_time_fallback_and_no_time():
    e = entry(T0 + 0.25)
    del e["StartUTC"]
    assert T.classify(e, HOSTS, [], BACKENDS).t == T0  # `time` has whole seconds
    del e["time"]
    assert T.classify(e, HOSTS, [], BACKENDS) is None
    no_status = entry(T0)
    del no_status["DownstreamStatus"]
    assert T.classify(no_status, HOSTS, [], BACKENDS).status == 0


@pytest.mark.parametrize("status,bad", [(0, False), (200, False), (302, False), (400, False), (404, False),
                                        (499, True), (500, True), (502, True), (503, True), (504, True)])
def test_failure_rule(status, bad):
    assert T.failed(status) is bad


# ---------------------------------------------------------------- percentiles and summary

def test_percentile_nearest_rank():
    values = list(range(100, 0, -1))  # 1..100, unsorted
    assert T.percentile(values, 99) == 99
    assert T.percentile(values, 50) == 50
    assert T.percentile(values, 100) == 100
    assert T.percentile([1, 2, 3, 4], 50) == 2
    assert T.percentile([7.5], 99) == 7.5
    assert T.percentile([], 99) is None


def test_summarize_buckets_include_empty_ones():
    records = [rec(T0 + 0.5, ms=10), rec(T0 + 0.7, 502, ms=30, backend="v6"), rec(T0 + 3.2, kind="uplink", ms=5),
               rec(T0 + 3.9, 499, kind="uplink", ms=7, backend="v6", retries=1),
               rec(T0 + 5.0, ms=1),  # exactly `until`: last bucket
               rec(T0 - 0.1), rec(T0 + 5.1)]  # outside
    s = T.summarize(records, T0, T0 + 5, 1.0)
    rows = s["timeline"]
    assert [r["t"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["requests"] for r in rows] == [2, 0, 0, 2, 1]
    assert [r["failed"] for r in rows] == [1, 0, 0, 1, 0]
    assert [r["uplinks_failed"] for r in rows] == [0, 0, 0, 1, 0]
    assert rows[0]["v5"] == 1 and rows[0]["v6"] == 1 and rows[1]["v5"] == 0
    assert rows[1]["p99_ms"] is None and rows[1]["max_ms"] is None
    assert rows[0]["p99_ms"] == 30 and rows[3]["max_ms"] == 7
    tot = s["totals"]
    assert (tot["requests"], tot["failed"], tot["uplinks"], tot["uplinks_failed"], tot["retries"]) == (5, 2, 2, 1, 1)
    assert tot["backends"] == {"v5": 3, "v6": 2}
    assert tot["statuses"] == {"499": 1, "502": 1}
    assert (tot["p50_ms"], tot["p99_ms"], tot["max_ms"]) == (7, 30, 30)


def test_summarize_partial_last_bucket_and_empty_input():
    s = T.summarize([], T0, T0 + 2.5, 1.0)
    assert len(s["timeline"]) == 3
    assert s["totals"]["requests"] == 0 and s["totals"]["p99_ms"] is None
    assert len(T.summarize([], T0, T0 + 10, 5.0)["timeline"]) == 2


# ---------------------------------------------------------------- gate

def totals(requests, failed_, uplinks=0, uplinks_failed=0, statuses=None, seconds=300.0):
    return {"requests": requests, "failed": failed_, "uplinks": uplinks, "uplinks_failed": uplinks_failed,
            "statuses": statuses or {}, "seconds": seconds}


def test_gate_allows_the_baseline_share_rounded_down():
    base = totals(1000, 2)
    ok = T.gate(base, totals(1500, 3, 400, 1, {"502": 3}))
    assert ok == {"passed": True, "allowed": 3, "excess": 0, "message": ok["message"]}
    assert "within the baseline" in ok["message"]
    bad = T.gate(base, totals(1499, 5, 400, 2, {"502": 4, "499": 1}), "/var/log/traefik/access.log")
    assert (bad["passed"], bad["allowed"], bad["excess"]) == (False, 2, 3)
    for text in ("5 of 1499 requests (0.33%) failed", "2 of 400 uplinks", "2 of 1000 requests (0.20%)",
                 "3 too many", "502 x4", "499 x1", "/var/log/traefik/access.log"):
        assert text in bad["message"], text


def test_gate_without_baseline_failures_or_baseline():
    assert T.gate(totals(1000, 0), totals(10_000, 0))["passed"]
    assert "no request failed" in T.gate(totals(1000, 0), totals(10_000, 0))["message"]
    one = T.gate(totals(1000, 0), totals(10_000, 1, statuses={"503": 1}))
    assert (one["passed"], one["allowed"], one["excess"]) == (False, 0, 1)
    for base in (None, totals(0, 0)):
        verdict = T.gate(base, totals(50, 1, statuses={"0": 1}))
        assert (verdict["passed"], verdict["allowed"]) == (False, 0)
        assert "no baseline" in verdict["message"]


# ---------------------------------------------------------------- watch

@pytest.fixture
def cutover_log(tmp_path):
    """10 min of baseline (1 req/s, one 504) then 4 min of phase (2 req/s) with a burst of 502s on V6."""
    entries = [entry(T0 - 600 + i, 504 if i == 100 else 200) for i in range(600)]
    for i in range(480):
        t = T0 + i * 0.5
        v6 = i % 2 == 1
        status = 502 if v6 and 200 <= i < 220 else 200
        entries.append(entry(t, status, path="/api/v1/uplink" if i % 4 == 0 else "/api/v6/spaces",
                             service="cutover-v6@file" if v6 else "cutover-v5@file"))
    entries.append(entry(T0 + 10, host="website.verdegris.test", status=500))  # another host: ignored
    return write_log(tmp_path / "access.log", entries)


def options(path, **extra):
    o = {"access_log": path, "since": T0, "until": T0 + 240, "baseline_seconds": 600, "hosts": HOSTS,
         "uplink_paths": ["/api/v1/uplink"], "backends": BACKENDS}
    o.update(extra)
    return o


def test_watch_fails_when_the_migration_added_failures(cutover_log, tmp_path):
    svg = tmp_path / "reports" / "phase3-traffic.svg"
    r = T.watch(options(cutover_log, svg_path=str(svg), weights=[{"t": T0, "weight": 50}],
                        events=[{"t": iso(T0 + 100), "label": "weight 50"}]))
    assert r["known"] and not r["passed"] and r["failed"] and not r["traefik_restarted"]
    assert r["baseline"]["requests"] == 600 and r["baseline"]["failed"] == 1
    assert r["phase"]["requests"] == 480 and r["phase"]["failed"] == 10
    assert r["phase"]["backends"] == {"v5": 240, "v6": 240}
    assert r["gate"]["allowed"] == 0 and r["gate"]["excess"] == 10  # 1/600 x 480 rounds down to 0
    assert r["statuses"] == {"502": 10}
    assert len(r["examples"]) == 5 and r["examples"][0]["service"] == "cutover-v6@file"
    assert r["examples"][0]["status"] == 502 and r["examples"][0]["path"] == "/api/v6/spaces"
    assert len(r["timeline"]) == 240 and [row["failed"] for row in r["timeline"][99:111]] == [0] + [1] * 10 + [0]
    assert r["timeline"][100]["v6"] == 1 and r["timeline"][100]["requests"] == 2
    assert r["window"] == {"since": "2027-01-15T08:00:00Z", "until": "2027-01-15T08:04:00Z", "seconds": 240.0}
    assert r["msg"] == r["gate"]["message"] and "the migration added failures" in r["msg"]
    assert r["svg"] == str(svg)
    assert stat.S_IMODE(os.stat(svg).st_mode) == 0o644
    assert os.listdir(svg.parent) == ["phase3-traffic.svg"]  # no temporary file left
    assert ET.parse(svg).getroot().tag == SVG + "svg"


def test_watch_passes_within_the_baseline_and_reports_only_without_fail(cutover_log):
    r = T.watch(options(cutover_log, until=T0 + 90))  # before the burst
    assert r["passed"] and not r["failed"] and r["gate"]["excess"] == 0 and r["svg"] is None
    r = T.watch(options(cutover_log, fail=False, chart=True))
    assert not r["passed"] and not r["failed"] and r["svg"] is None
    assert ET.fromstring(r["svg_document"]).tag == SVG + "svg"


def test_watch_traefik_restart_fails_the_gate(cutover_log):
    r = T.watch(options(cutover_log, until=T0 + 90, traefik_started_at=iso(T0 + 30)))
    assert r["traefik_restarted"] and not r["passed"] and r["failed"]
    assert "Traefik restarted during the phase" in r["msg"]
    before = T.watch(options(cutover_log, until=T0 + 90, traefik_started_at=str(T0 - 3600)))
    assert not before["traefik_restarted"] and before["passed"]


def test_watch_missing_log(tmp_path):
    missing = str(tmp_path / "nope.log")
    r = T.watch(options(missing))
    assert r["known"] is False and r["failed"] and not r["passed"] and r["gate"] is None
    assert r["msg"] == (f"cannot see what clients saw: no access log at {missing}; set parking_traefik_access_log "
                        f"and turn on Traefik's JSON access log")
    assert T.watch(options(missing, fail=False))["failed"] is False
    assert "(not configured)" in T.watch(options(None))["msg"]


def test_watch_says_when_the_log_starts_late(cutover_log, tmp_path):
    assert T.watch(options(cutover_log, until=T0 + 90))["read"]["log_start"] is None
    late = write_log(tmp_path / "late.log", [entry(T0 + 30 + i) for i in range(60)])
    r = T.watch(options(late, until=T0 + 90))
    assert r["read"]["log_start"] == "2027-01-15T08:00:30Z" and r["passed"]
    assert "the access log starts at 2027-01-15T08:00:30Z, after the phase started" in r["msg"]


def test_watch_rejects_bad_options(cutover_log):
    with pytest.raises(ValueError):
        T.watch(options(cutover_log, until=T0 - 1))
    with pytest.raises(ValueError):
        T.watch(options(cutover_log, bucket=0))
    with pytest.raises(ValueError):
        T.watch(options(cutover_log, events=[{"label": "no time"}]))


def test_watch_until_defaults_to_now(cutover_log):
    r = T.watch(options(cutover_log, until=None), now=T0 + 60)
    assert r["window"]["seconds"] == 60.0 and len(r["timeline"]) == 60


# ---------------------------------------------------------------- reading the window

@pytest.fixture(scope="module")
def big_log(tmp_path_factory):
    """50,000 requests, one a second, with an unparsable line and a slow request logged late."""
    lines = []
    for i in range(50_000):
        lines.append(json.dumps(entry(T0 + i, ms=3.0)))
        if i == 40_050:
            lines.append("{not json")
            # started at +40,010, logged 45 s later, after lines that started after it
            lines.append(json.dumps(entry(T0 + 40_010.5, ms=45_000, logged=T0 + 40_055, RequestPath="/slow")))
    return write_log(tmp_path_factory.mktemp("big") / "access.log", lines)


def test_iter_window_finds_the_window_by_binary_search(big_log):
    stats = {}
    got = list(A.iter_window(big_log, T0 + 40_000, T0 + 40_100, 1 << 30, stats))
    starts = [e["_t"] for e in got]
    assert starts[0] == T0 + 40_000 and max(starts) == T0 + 40_100
    assert len(got) == 102 and T0 + 40_010.5 in starts  # the slow request is not lost
    assert stats["unparsable"] == 1 and not stats["truncated"]
    assert stats["first"] == T0 + 40_000 and stats["last"] == T0 + 40_100
    size = os.path.getsize(big_log)
    # only the window and its slack were read and parsed, not the 40,000 lines before it
    assert stats["start_offset"] > size * 0.7
    assert stats["bytes_read"] < size * 0.02
    assert stats["parsed"] < 1_000 and stats["probes"] < 40


def test_iter_window_edges_and_max_bytes(big_log):
    assert [e["_t"] for e in A.iter_window(big_log, T0 - 100, T0 + 2, 1 << 30)] == [T0, T0 + 1, T0 + 2]
    assert [e["_t"] for e in A.iter_window(big_log, T0 + 49_998, T0 + 60_000, 1 << 30)] == [T0 + 49_998,
                                                                                            T0 + 49_999]
    assert list(A.iter_window(big_log, T0 + 70_000, T0 + 80_000, 1 << 30)) == []
    stats = {}
    assert len(list(A.iter_window(big_log, T0, T0 + 1000, 20_000, stats))) < 1000 and stats["truncated"]


def test_watch_reports_a_truncated_read(big_log):
    r = T.watch(options(big_log, since=T0 + 1000, until=T0 + 2000, baseline_seconds=0, max_bytes=50_000))
    assert r["read"]["truncated"] and not r["passed"] and "max_bytes" in r["msg"]


@pytest.mark.parametrize("text,micro", [("2026-11-30T23:22:41.377682208Z", 377682),
                                        ("2026-11-30T23:22:41.37768Z", 377680), ("2026-11-30T23:22:41.5Z", 500000),
                                        ("2026-11-30T23:22:41Z", 0), ("2026-11-30T23:22:41.1+01:00", 100000)])
def test_parse_time_takes_any_number_of_fraction_digits(text, micro):
    assert A.parse_time(text).microsecond == micro
    assert A.parse_time(text).tzinfo == dt.timezone.utc


def test_preflight_uses_the_shared_reader():
    assert P.parse_time is A.parse_time and P.read_tail is A.read_tail and P.strip_provider is A.strip_provider
    assert A.parse_time("yesterday") is None and A.epoch("not a time") is None
    assert A.epoch("1800000000.5") == 1_800_000_000.5 and A.epoch(iso(T0)) == T0


# ---------------------------------------------------------------- chart

def test_svg_is_xml_with_four_panels_and_escaped_event_labels():
    timeline = T.summarize([rec(T0 + i * 0.5, 502 if i == 7 else 200, "uplink" if i % 3 else "api", i, "v6" if i % 2
                                else "v5") for i in range(40)], T0, T0 + 30, 1.0)["timeline"]
    text = T.render_svg(timeline, [{"t": -5, "weight": 0}, {"t": 10, "weight": 50}],
                        [{"t": 10, "label": "weight 50 <&> \"now\""}, {"t": 20, "label": "V6 restarted"},
                         {"t": 99, "label": "after the end"}], "Cutover <test> & more")
    root = ET.fromstring(text)
    assert root.tag == SVG + "svg"
    panels = [g for g in root.iter(SVG + "g") if g.get("class") == "panel"]
    assert len(panels) == 4
    texts = [t.text for t in root.iter(SVG + "text")]
    assert "weight 50 <&> \"now\"" in texts and "V6 restarted" in texts and "after the end" not in texts
    assert "Cutover <test> & more" in texts
    for name in ("Requests/s", "Latency (ms)", "Uplinks/s", "V6 weight %", "V5", "V6", "failed", "p99", "max",
                 "answered", "failed/lost"):
        assert name in texts, name
    assert len([ln for ln in root.iter(SVG + "line") if ln.get("class") == "event"]) == 2
    assert "&lt;&amp;&gt;" in text


def test_svg_of_an_empty_phase_is_still_valid():
    rows = T.summarize([], T0, T0 + 3600, 10.0)["timeline"]
    root = ET.fromstring(T.render_svg(rows, [], [], "nothing"))
    assert len([g for g in root.iter(SVG + "g") if g.get("class") == "panel"]) == 4
    assert "0:00" in [t.text for t in root.iter(SVG + "text")]


def test_examples_never_carry_the_query_string(tmp_path):
    """V6's websocket takes its token in the query (/ws?token=...): the report must not show it."""
    log = tmp_path / "access.log"
    t = 1_800_000_000.0
    entry = {"StartUTC": dt.datetime.fromtimestamp(t + 5, dt.timezone.utc).isoformat().replace("+00:00", "Z"),
             "time": dt.datetime.fromtimestamp(t + 5, dt.timezone.utc).isoformat().replace("+00:00", "Z"),
             "RequestHost": "api.example.test", "RequestPath": "/api/v1/spaces?token=SECRET", "DownstreamStatus": 502,
             "Duration": 1000000, "ServiceName": "cutover-v6@file"}
    log.write_text(json.dumps(entry) + "\n")
    out = T.watch({"access_log": str(log), "since": t, "until": t + 10, "baseline_seconds": 0,
                   "hosts": ["api.example.test"], "fail": False})
    assert out["examples"] and all("SECRET" not in json.dumps(e) for e in out["examples"])
    assert out["examples"][0]["path"] == "/api/v1/spaces"


# ---------------------------------------------------------------- incremental watch (the cutover ramp)

def test_watcher_reads_only_what_the_log_gained_and_matches_a_one_shot_watch(tmp_path):
    path = tmp_path / "access.log"
    base = [entry(T0 - 300 + i, status=500 if i == 7 else 200) for i in range(300)]
    write_log(path, base + [entry(T0 + i) for i in range(20)])
    w = T.Watcher(options(str(path), until=None, baseline_seconds=300))
    first = w.poll(now=T0 + 20)
    assert first["passed"] and first["phase"]["requests"] == 20 and first["baseline"]["requests"] == 300
    read_once = first["read"]["bytes_read"]
    # the log grows: a failure, then a line still being written (no newline yet)
    with open(path, "a") as handle:
        handle.write(json.dumps(entry(T0 + 20, status=502, service="cutover-v6@file")) + "\n")
        handle.write(json.dumps(entry(T0 + 21))[:40])
    second = w.poll(now=T0 + 22)
    assert second["read"]["bytes_read"] - read_once == len(json.dumps(entry(T0 + 20, status=502,
                                                                           service="cutover-v6@file"))) + 1
    assert second["read"]["unparsable"] == 0 and second["read"]["polls"] == 2
    assert second["phase"]["requests"] == 21 and second["phase"]["failed"] == 1 and not second["passed"]
    assert second["examples"][0]["service"] == "cutover-v6@file"
    with open(path, "a") as handle:                      # the rest of the half-written line
        handle.write(json.dumps(entry(T0 + 21))[40:] + "\n")
    third = w.poll(now=T0 + 23)
    one_shot = T.watch(options(str(path), until=None, baseline_seconds=300), now=T0 + 23)
    assert third["phase"] == one_shot["phase"] and third["baseline"] == one_shot["baseline"]
    assert third["timeline"] == one_shot["timeline"] and third["phase"]["requests"] == 22


def test_watcher_reads_a_rotated_log_again_and_says_it_starts_late(tmp_path):
    path = tmp_path / "access.log"
    write_log(path, [entry(T0 - 100 + i) for i in range(110)])
    w = T.Watcher(options(str(path), until=None, baseline_seconds=100))
    assert w.poll(now=T0 + 10)["phase"]["requests"] == 10
    os.rename(path, tmp_path / "access.log.1")           # rotated: a new, shorter file
    write_log(path, [entry(T0 + 11 + i) for i in range(5)])
    r = w.poll(now=T0 + 17)
    assert r["phase"]["requests"] == 15 and r["baseline"]["requests"] == 100
    assert "the access log starts at" in r["msg"]


def test_watcher_max_bytes_counts_over_all_polls(tmp_path):
    path = tmp_path / "access.log"
    lines = [entry(T0 + i) for i in range(10)]
    write_log(path, lines)
    size = os.path.getsize(path)
    w = T.Watcher(options(str(path), until=None, baseline_seconds=0, max_bytes=size + 10))
    assert w.poll(now=T0 + 10)["passed"]
    with open(path, "a") as handle:
        handle.write(json.dumps(entry(T0 + 11)) + "\n")
    r = w.poll(now=T0 + 12)
    assert r["read"]["truncated"] and not r["passed"] and "max_bytes" in r["msg"]
