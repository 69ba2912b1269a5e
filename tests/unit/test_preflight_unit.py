"""Unit tests of the phase-0 preflight's pure parts (module_utils/parking/preflight/): version,
memory, disk and Traefik checks, the Traefik access-log counting, the legacy-traffic answer and
the report's shape. No database, no Docker."""
import datetime as dt
import json
import os

import pytest

from parking import preflight as P

NOW = dt.datetime(2026, 11, 26, 12, 0, 0, tzinfo=dt.timezone.utc)
GIB = 1024 ** 3
LEGACY = {"parking-website": ["website"], "parking-kuando-ui": ["kuando"],
          "parking-contact-api": ["contact-api"], "parking-device-manager": ["devices"]}


def line(router, service, when, **extra):
    entry = {"RouterName": router, "ServiceName": service, "StartUTC": when.strftime("%Y-%m-%dT%H:%M:%S.%f123Z"),
             "DownstreamStatus": 200, "RequestHost": "x"}
    entry.update(extra)
    return json.dumps(entry)


# ---------------------------------------------------------------- versions

@pytest.mark.parametrize("have,want,ok", [
    ("1.41", "1.41", True), ("1.43", "1.41", True), ("1.9", "1.41", False), ("1.40", "1.41", False),
    ("2.0", "1.41", True), ("1.41.1", "1.41", True), ("20.10.24+dfsg1", "20.10", True),
])
def test_version_at_least_compares_numerically(have, want, ok):
    assert P.version_at_least(have, want) is ok


def test_parse_version_of_postgres_text():
    assert P.parse_version("15.18 (Debian 15.18-0+deb12u1)") == (15, 18)
    with pytest.raises(ValueError):
        P.parse_version("latest")


def test_docker_api_check_messages():
    assert P.check_docker_api("1.41", "1.41")["ok"]
    old = P.check_docker_api("1.40", "1.41")
    assert not old["ok"] and "1.40 is older than the minimum 1.41" in old["detail"]
    unknown = P.check_docker_api("", "1.41")
    assert not unknown["ok"] and "did not answer" in unknown["detail"]


def test_memory_check():
    assert P.check_memory(4096, 2048)["ok"]
    low = P.check_memory(1024, 2048)
    assert not low["ok"] and "1024 MB total, below the minimum 2048 MB" in low["detail"]
    assert not P.check_memory(None, 2048)["ok"]


@pytest.mark.parametrize("num,ok", [(150018, True), (160004, True), (140011, False)])
def test_pg_version_check(num, ok):
    result = P.check_pg_version(num, 15)
    assert result["ok"] is ok
    assert f"PostgreSQL {num // 10000}." in result["detail"]
    assert not P.check_pg_version(None, 15)["ok"]


@pytest.mark.parametrize("text,server,ok,says", [
    ("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)", 150018, True, "pg_dump 15.18 for a PostgreSQL 15 server"),
    ("pg_dump (PostgreSQL) 16.4", 150018, True, "pg_dump 16.4"),
    ("pg_dump (PostgreSQL) 15.18", 160004, False, "install postgresql-client-16"),
    ("", 150018, False, "pg_dump not found on the target: install postgresql-client-15"),
    ("pg_dump (PostgreSQL) 15.18", None, False, "no database could be reached"),
])
def test_pg_client_check(text, server, ok, says):
    result = P.check_pg_client(text, server)
    assert result["ok"] is ok and result["name"] == "postgresql_client"
    assert says in result["detail"]


# ---------------------------------------------------------------- disk

MOUNTS = [{"mount": "/", "size_available": 10 * GIB}, {"mount": "/var", "size_available": 3 * GIB},
          {"mount": "/var/backups-old", "size_available": 100 * GIB}]


def test_mount_for_takes_the_longest_prefix_not_a_string_prefix():
    assert P.mount_for("/var/backups/parking-migrate", MOUNTS)["mount"] == "/var"
    assert P.mount_for("/var/backups-old/x", MOUNTS)["mount"] == "/var/backups-old"
    assert P.mount_for("/var/backups-older/x", MOUNTS)["mount"] == "/var"  # not a string prefix
    assert P.mount_for("/srv/x", MOUNTS)["mount"] == "/"
    assert P.mount_for("/var", MOUNTS)["mount"] == "/var"


def test_disk_check_needs_factor_times_the_sizes():
    ok, needed, free = P.check_disk("/var/backups/pm", MOUNTS, {"parking_v5": GIB, "parking_platform": GIB // 2}, 2)
    assert ok["ok"] and needed == 3 * GIB and free == 3 * GIB
    bad, needed, free = P.check_disk("/var/backups/pm", MOUNTS, {"parking_v5": 2 * GIB}, 2)
    assert not bad["ok"] and needed == 4 * GIB
    assert "needed 4.0 GiB" in bad["detail"] and "free 3.0 GiB" in bad["detail"] and "1.0 GiB more" in bad["detail"]


def test_disk_check_fails_when_a_size_or_the_mount_is_unknown():
    unknown, _, _ = P.check_disk("/var/backups/pm", MOUNTS, {"parking_v5": GIB, "parking_platform": None}, 2)
    assert not unknown["ok"] and "parking_platform unknown" in unknown["detail"]
    nomount, _, free = P.check_disk("/var/backups/pm", [], {"parking_v5": GIB}, 2)
    assert not nomount["ok"] and free is None


# ---------------------------------------------------------------- Traefik container

def container(status="running", health="healthy", cmd=("--providers.file.directory=/config/dynamic",)):
    state = {"Status": status}
    if health:
        state["Health"] = {"Status": health}
    return {"State": state, "Config": {"Cmd": list(cmd), "Labels": {}}, "Args": []}


def test_traefik_check():
    args = ["--providers.file.directory"]
    assert P.check_traefik(container(), required_args=args)["ok"]
    assert "not found" in P.check_traefik(None)["detail"]
    assert "exited, not running" in P.check_traefik(container(status="exited"), required_args=args)["detail"]
    assert "unhealthy" in P.check_traefik(container(health="unhealthy"))["detail"]
    single = P.check_traefik(container(cmd=["--providers.file.filename=/config/dynamic.yml"]), required_args=args)
    assert not single["ok"] and "--providers.file.directory" in single["detail"]


# ---------------------------------------------------------------- access log

def test_count_access_log_counts_only_the_window():
    lines = [
        line("website-www@docker", "website@docker", NOW - dt.timedelta(hours=1)),
        line("website-root@docker", "website@docker", NOW - dt.timedelta(hours=2)),
        line("kuando@docker", "kuando@docker", NOW - dt.timedelta(hours=25)),     # outside 24 h
        line("api@docker", "api@docker", NOW - dt.timedelta(minutes=1)),
        "not json", "", json.dumps(["a list"]), json.dumps({"RouterName": "x"}),  # no time
    ]
    counts = P.count_access_log(lines, NOW, 24)
    assert counts["requests"] == 3
    assert counts["services"] == {"api@docker": 1, "website@docker": 2}
    assert counts["routers"] == {"api@docker": 1, "website-root@docker": 1, "website-www@docker": 1}
    assert counts["unparsable"] == 3 and counts["lines"] == 7
    assert counts["first_seen"].startswith("2026-11-25T11:00:00")
    assert P.count_access_log(lines, NOW, 48)["services"]["kuando@docker"] == 1


def test_count_access_log_falls_back_to_time_field():
    entry = json.dumps({"RouterName": "r@docker", "ServiceName": "s@docker", "time": "2026-11-26T11:30:00Z"})
    assert P.count_access_log([entry], NOW, 1)["services"] == {"s@docker": 1}


def test_legacy_traffic_names_the_legacy_services_with_traffic(tmp_path):
    log = tmp_path / "access.log"
    log.write_text("\n".join([
        line("website-www@docker", "website@docker", NOW - dt.timedelta(hours=1)),
        line("website-root@docker", "website@docker", NOW - dt.timedelta(hours=3)),
        line("contact-api@docker", "contact-api@docker", NOW - dt.timedelta(hours=30)),
        line("api@docker", "api@docker", NOW - dt.timedelta(minutes=5)),
    ]) + "\n")
    result = P.legacy_traffic(str(log), LEGACY, NOW, 24)
    assert result["known"] and result["with_traffic"] == ["parking-website"]
    assert result["legacy"]["parking-website"]["requests"] == 2
    assert result["legacy"]["parking-contact-api"]["requests"] == 0
    assert result["answer"].startswith("parking-website (2) in the last 24 h")
    assert "log starts at" not in result["answer"]  # the log reaches back further than the window


def test_legacy_traffic_none_and_partial_window(tmp_path):
    log = tmp_path / "access.log"
    log.write_text(line("api@docker", "api@docker", NOW - dt.timedelta(hours=2)) + "\n")
    result = P.legacy_traffic(str(log), LEGACY, NOW, 24)
    assert result["with_traffic"] == []
    assert result["answer"].startswith("none in the last 24 h (1 requests to other services)")
    assert "covers less than 24 h" in result["answer"]


def test_legacy_traffic_missing_log_is_unknown_not_an_error(tmp_path):
    missing = str(tmp_path / "nope.log")
    result = P.legacy_traffic(missing, LEGACY, NOW, 24)
    assert result["known"] is False and result["answer"] == f"unknown (no access log at {missing})"
    assert P.legacy_traffic("", LEGACY, NOW, 24)["answer"] == "unknown (no access log at (not configured))"


def test_legacy_traffic_reads_only_the_tail(tmp_path):
    log = tmp_path / "access.log"
    old = [line("website@docker", "website@docker", NOW - dt.timedelta(hours=1))] * 50
    new = [line("api@docker", "api@docker", NOW - dt.timedelta(minutes=1))] * 5
    log.write_text("\n".join(old + new) + "\n")
    tail = sum(len(x) + 1 for x in new) + 10  # the last five lines and part of one more
    result = P.legacy_traffic(str(log), LEGACY, NOW, 24, max_bytes=tail)
    assert result["counts"]["truncated"] and result["counts"]["services"] == {"api@docker": 5}
    assert result["counts"]["unparsable"] == 0  # the partial first line was dropped
    assert "only the last" in result["answer"]


def test_legacy_names_adds_routers_and_services_from_labels():
    labels = {"parking-website": {"traefik.enable": "true",
                                  "traefik.http.routers.website-www.rule": "Host(`www.x`)",
                                  "traefik.http.routers.website-www.service": "site@docker",
                                  "traefik.http.services.website.loadbalancer.server.port": "80"}}
    names = P.legacy_names({"parking-website": ["website"], "parking-kuando-ui": ["kuando"]}, labels)
    assert names["parking-website"] == {"services": ["site", "website"], "routers": ["website-www"]}
    assert names["parking-kuando-ui"] == {"services": ["kuando"], "routers": []}


# ---------------------------------------------------------------- report

def test_build_report_shape_and_status():
    checks = [P.check("memory", True, "ok"), P.check("disk_backup", False, "needed 4 GiB, free 1 GiB")]
    facts = {"host": {"docker_api_version": "1.41", "docker_server_version": "20.10", "memory_mb": 4096},
             "database_sizes": {"parking_v5": GIB}, "backup": {"dir": "/b", "needed_bytes": 2 * GIB, "free_bytes": GIB},
             "v5": {"rows": 10, "tables": [{"schema": "public", "table": "t", "rows": 10, "size_bytes": 8192}],
                    "size_bytes": GIB},
             "open_questions": {"parking_platform_in_use": "no sign of current use: ...",
                                "legacy_services_with_traffic": "unknown (no access log at /x)",
                                "v5_data_size": "1.0 GiB"}}
    report = P.build_report(checks, facts, check_mode=True, started=100.0, finished=103.456, now=NOW)
    assert list(report) == ["phase", "title", "status", "check_mode", "generated_at", "duration_s", "summary",
                            "checks", "facts"]
    assert report["phase"] == 0 and report["title"] == "Preflight" and report["status"] == "failed"
    assert report["check_mode"] is True and report["generated_at"] == "2026-11-26T12:00:00Z"
    assert report["duration_s"] == 3.46
    assert 3 <= len(report["summary"]) <= 8 and all("\n" not in s for s in report["summary"])
    assert report["summary"][0] == "1/2 checks passed; failed: disk_backup"
    assert all(set(c) == {"name", "ok", "detail"} for c in report["checks"])
    json.dumps(report)  # JSON-safe
    passed = P.build_report(checks[:1], facts, False, 0.0, 1.0, NOW)
    assert passed["status"] == "passed"


def test_markdown_has_checks_table_and_open_questions():
    checks = [P.check("memory", True, "a | b"), P.check("schema", False, "2 difference(s)")]
    facts = {"open_questions": {"parking_platform_in_use": "in use: 1 open connection(s)",
                                "legacy_services_with_traffic": "none in the last 24 h",
                                "v5_data_size": "12 MiB"}}
    text = P.render_markdown(P.build_report(checks, facts, False, 0.0, 1.0, NOW))
    assert text.startswith("# Phase 0 — Preflight: FAILED")
    assert "| check | result | detail |" in text
    assert "| memory | ok | a \\| b |" in text and "| schema | **FAILED** | 2 difference(s) |" in text
    assert "## Open questions answered" in text
    assert "`parking_platform`?** in use: 1 open connection(s)" in text


def test_usage_answer():
    u = {"session_count": 1, "sessions": [{"user": "parking_user", "application_name": "v4-worker"}],
         "writes_since_stats_reset": 12, "stats_reset": None, "last_write": "2026-11-01T00:00:00+00:00",
         "last_write_table": "ingest.raw_uplinks"}
    text = P.usage_answer(u, "parking_platform")
    assert text.startswith("in use: 1 open connection(s) (parking_user/v4-worker)")
    assert "12 rows written" in text and "ingest.raw_uplinks" in text
    idle = dict(u, session_count=0, sessions=[])
    assert P.usage_answer(idle, "parking_platform").startswith("no sign of current use: no other connections")
    assert P.usage_answer(None, "parking_platform") == "unknown (parking_platform could not be reached)"


class FakeConn:
    server_version = 150018

    def set_session(self, **kwargs):
        pass

    def close(self):
        pass


def test_open_databases_reports_each_failure_with_its_reason():
    from parking.errors import ConnectError

    def connect(params, role):
        if params["db"] == "parking_platform_missing":
            raise ConnectError(f"unable to connect to the {role} database: does not exist. Check {role}.db")
        return FakeConn()

    conns, status = P.open_databases({"chirpstack": {"db": "chirpstack"}, "source": {"db": "parking_v5"},
                                      "target": {"db": "parking_v6"}, "platform": {"db": "parking_platform_missing"}},
                                     connect)
    assert set(conns) == {"chirpstack", "source", "target"}
    assert status["platform"]["ok"] is False and "Check platform.db" in status["platform"]["error"]
    assert status["source"] == {"db": "parking_v5", "role": "V5", "where": status["source"]["where"], "ok": True,
                                "error": None, "server_version_num": 150018}
    assert "password" not in json.dumps(status)


def test_disk_space_is_measured_on_the_nearest_existing_directory(tmp_path):
    real = os.statvfs(str(tmp_path))
    space = P.disk_space(str(tmp_path / "not" / "yet" / "there"))
    assert abs(space["size_available"] - real.f_bavail * real.f_frsize) < 64 * 1024 * 1024
    assert os.path.ismount(space["mount"]) and str(tmp_path).startswith(space["mount"])
    assert P.disk_space("") is None and P.disk_space("relative/dir") is None


def test_disk_space_wins_over_the_mount_facts_that_skip_tmpfs():
    # the facts see / with plenty; the directory is really on a 64 KB tmpfs
    small = {"mount": "/var/backups", "size_available": 64 * 1024}
    bad, needed, free = P.check_disk("/var/backups/pm", MOUNTS, {"parking_v5": GIB}, 2, small)
    assert not bad["ok"] and free == 64 * 1024 and "/var/backups" in bad["detail"]


@pytest.mark.parametrize("path", ["", "/", "relative", "//"])
def test_a_backup_directory_that_is_not_a_directory_below_root_fails(path):
    bad, _, _ = P.check_disk(path, MOUNTS, {"parking_v5": GIB}, 2)
    assert not bad["ok"] and "parking_backup_dir" in bad["detail"]
