"""Phase 4's plain logic: fingerprint comparison, file checksums, and the saved container
definition turned back into docker_container options (what rollback-4 recreates)."""
import hashlib
import importlib.util
import os

import pytest

from parking import backup

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("parking_containers",
                                               os.path.join(ROOT, "filter_plugins", "parking_containers.py"))
containers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(containers)

FP = {
    "public.tenants": {"rows": 5, "checksum": "a" * 32},
    "public.sensor_readings": {"rows": 1000, "checksum": "b" * 32},
    "public.sensor_readings_id_seq": {"rows": 0, "checksum": "seq:1000:True"},
}


def test_identical_fingerprints_have_no_differences():
    assert backup.differences(FP, dict(FP)) == []
    backup.require_equal(FP, dict(FP), "x", "live", "restored", "advice")


def test_every_kind_of_difference_is_listed():
    other = {k: dict(v) for k, v in FP.items()}
    other["public.tenants"]["rows"] = 4
    other["public.sensor_readings"]["checksum"] = "c" * 32
    del other["public.sensor_readings_id_seq"]
    other["public.extra"] = {"rows": 1, "checksum": "d" * 32}
    diffs = {d["relation"]: d["problem"] for d in backup.differences(FP, other, "live", "restored")}
    assert diffs == {"public.tenants": "rows differ", "public.sensor_readings": "content differs",
                     "public.sensor_readings_id_seq": "only in live", "public.extra": "only in restored"}
    with pytest.raises(backup.BackupMismatch) as exc:
        backup.require_equal(FP, other, "the copy of parking_v5", "live", "restored", "Nothing was removed.")
    assert "4 relation(s) differ" in str(exc.value) and "public.tenants: rows differ" in str(exc.value)
    assert str(exc.value).endswith("Nothing was removed.") and len(exc.value.differences) == 4


def test_summary_counts_tables_not_sequences_and_is_order_independent():
    s = backup.summary(FP)
    assert s["tables"] == 2 and s["rows"] == 1005
    assert backup.summary(dict(reversed(list(FP.items())))) == s
    changed = dict(FP, **{"public.tenants": {"rows": 5, "checksum": "e" * 32}})
    assert backup.summary(changed)["fingerprint"] != s["fingerprint"]


def test_sha256_file_streams(tmp_path):
    p = tmp_path / "dump.pgc"
    data = os.urandom(3 * 1024 * 1024 + 17)
    p.write_bytes(data)
    assert backup.sha256_file(str(p), chunk=65536) == hashlib.sha256(data).hexdigest()


def test_qident_quotes():
    assert backup.qident('we"ird') == '"we""ird"'


INSPECT = {
    "Id": "4f1c2d3e4a5b6c7d8e9f",
    "Name": "/parking-api",
    "Config": {
        "Image": "parking-lab/python:latest",
        "Cmd": ["python3", "/opt/lab/services/v5api/app.py"],
        "Entrypoint": None,
        "Env": ["DATABASE_URL=postgresql://u:p=w@h/db", "PATH=/usr/bin", "EMPTY="],
        "Labels": {"traefik.enable": "true", "traefik.http.routers.api.rule": "Host(`api.verdegris.test`)"},
        "Healthcheck": {"Test": ["CMD", "curl", "-f", "http://127.0.0.1:8000/health"], "Interval": 3000000000,
                        "Timeout": 1500000000, "Retries": 3},
        "User": "",
        "WorkingDir": "/opt/lab",
    },
    "HostConfig": {
        "PortBindings": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "58001"}], "9000/tcp": [{"HostPort": "9000"}]},
        "Binds": ["/var/lib/parking-lab/x:/x:ro"],
        "Mounts": [{"Type": "volume", "Source": "parking-data", "Target": "/data"}],
        "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
        "NetworkMode": "parking-v5_parking-network",
    },
    "NetworkSettings": {"Networks": {"parking-v5_parking-network": {"Aliases": ["parking-api", "4f1c2d3e4a5b", "api"]}}},
}


def test_container_spec_recreates_what_was_inspected():
    spec = containers.container_spec(INSPECT)
    assert spec["name"] == "parking-api" and spec["image"] == "parking-lab/python:latest"
    assert spec["command"] == ["python3", "/opt/lab/services/v5api/app.py"] and spec["entrypoint"] is None
    # values keep their own '=' and empty values survive
    assert spec["env"] == {"DATABASE_URL": "postgresql://u:p=w@h/db", "PATH": "/usr/bin", "EMPTY": ""}
    assert spec["labels"]["traefik.http.routers.api.rule"] == "Host(`api.verdegris.test`)"
    assert spec["published_ports"] == ["127.0.0.1:58001:8000/tcp", "9000:9000/tcp"]
    assert spec["volumes"] == ["/var/lib/parking-lab/x:/x:ro"]
    assert spec["mounts"] == [{"type": "volume", "target": "/data", "source": "parking-data"}]
    # the container id and its own name are not aliases to recreate
    assert spec["networks"] == [{"name": "parking-v5_parking-network", "aliases": ["api"]}]
    assert spec["restart_policy"] == "unless-stopped"
    assert spec["healthcheck"] == {"test": ["CMD", "curl", "-f", "http://127.0.0.1:8000/health"],
                                   "interval": "3s", "timeout": "1500ms", "retries": 3}
    assert spec["user"] is None and spec["working_dir"] == "/opt/lab"


def test_container_spec_minimal_and_host_network():
    spec = containers.container_spec({"Name": "/x", "Config": {"Image": "i"},
                                      "HostConfig": {"NetworkMode": "host"}, "NetworkSettings": {"Networks": {"host": {}}}})
    assert spec["networks"] == [] and spec["healthcheck"] is None and spec["restart_policy"] == "no"
    assert spec["env"] == {} and spec["published_ports"] == [] and spec["mounts"] == []
    assert containers.FilterModule().filters()["parking_container_spec"] is containers.container_spec


def test_container_public_keeps_state_and_labels_and_drops_every_secret():
    import copy
    inspect = copy.deepcopy(INSPECT)
    inspect["State"] = {"Status": "running", "Running": True, "StartedAt": "2026-12-01T00:00:00Z",
                        "Health": {"Status": "unhealthy", "FailingStreak": 3,
                                   "Log": [{"Output": "old"}, {"Output": " curl: (7) refused \n"}]}}
    public = containers.container_public({"exists": True, "container": inspect})
    text = repr(public)
    assert "p=w" not in text and "DATABASE_URL" not in text and "HostConfig" not in text
    assert public["Config"]["Labels"]["traefik.http.routers.api.rule"] == "Host(`api.verdegris.test`)"
    assert public["State"]["Health"] == {"Status": "unhealthy", "FailingStreak": 3, "Output": "curl: (7) refused"}
    assert containers.container_public(None) is None
    assert containers.container_public({"exists": False, "container": None}) is None


@pytest.mark.parametrize("info, word", [
    ({"exists": False, "container": None}, "missing"),
    (None, "missing"),
    ({"exists": True, "container": {"State": {"Status": "exited"}}}, "exited"),
    ({"exists": True, "container": {"State": {"Status": "running"}}}, "running without a health check"),
    ({"exists": True, "container": {"State": {"Status": "running", "Health": {"Status": "starting"}}}}, "starting"),
    ({"State": {"Status": "running", "Health": {"Status": "healthy"}}}, "healthy"),
])
def test_container_health_is_one_word(info, word):
    assert containers.container_health(info) == word
