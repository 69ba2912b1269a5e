"""module_utils/parking/routing.py: atomic publication of a Traefik file-provider file."""
import os

import pytest

from parking import routing
from parking.errors import ConfigError

DOC = "http:\n  routers:\n    a: {rule: Host(`x`), service: s}\n"


def listing(d):
    return sorted(os.listdir(d))


def test_publish_writes_then_changes_nothing(tmp_path):
    out = routing.publish(str(tmp_path), "cutover.yml", DOC)
    assert out["changed"] and out["before"] is None
    assert (tmp_path / "cutover.yml").read_text() == DOC
    assert oct((tmp_path / "cutover.yml").stat().st_mode & 0o777) == "0o644"
    again = routing.publish(str(tmp_path), "cutover.yml", DOC)
    assert not again["changed"] and listing(tmp_path) == ["cutover.yml"]


def test_publish_replaces_by_rename_leaving_no_temporary_file(tmp_path, monkeypatch):
    routing.publish(str(tmp_path), "cutover.yml", DOC)
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append((os.path.basename(src), os.path.basename(dst)))
        return real(src, dst)
    monkeypatch.setattr(routing.os, "replace", spy)
    routing.publish(str(tmp_path), "cutover.yml", DOC.replace("x", "y"))
    (src, dst), = seen
    # the temporary file is hidden and has no extension Traefik loads
    assert src.startswith(".") and not src.endswith(routing.EXTENSIONS) and dst == "cutover.yml"
    assert listing(tmp_path) == ["cutover.yml"] and "y" in (tmp_path / "cutover.yml").read_text()


def test_check_mode_reports_the_change_and_writes_nothing(tmp_path):
    out = routing.publish(str(tmp_path), "cutover.yml", DOC, check_mode=True)
    assert out["changed"] and out["after"] == DOC and listing(tmp_path) == []


def test_absent_removes_the_file_and_old_leftovers(tmp_path):
    routing.publish(str(tmp_path), "cutover.yml", DOC)
    (tmp_path / ".cutover.yml.pending").write_text(DOC)
    (tmp_path / ".cutover.yml.swap").write_text(DOC)
    assert routing.publish(str(tmp_path), "cutover.yml", state="absent")["changed"]
    assert listing(tmp_path) == []
    assert not routing.publish(str(tmp_path), "cutover.yml", state="absent")["changed"]


@pytest.mark.parametrize("content", ["http: [unclosed", "- a list\n- not a mapping\n"])
def test_invalid_yaml_is_refused_and_the_live_file_kept(tmp_path, content):
    routing.publish(str(tmp_path), "cutover.yml", DOC)
    with pytest.raises(ConfigError, match="nothing was published"):
        routing.publish(str(tmp_path), "cutover.yml", content)
    assert (tmp_path / "cutover.yml").read_text() == DOC and listing(tmp_path) == ["cutover.yml"]


@pytest.mark.parametrize("name", ["", "../x.yml", "sub/x.yml", ".hidden.yml", "notes.txt"])
def test_names_traefik_would_not_load_or_outside_the_directory_are_refused(tmp_path, name):
    with pytest.raises(ConfigError, match="file name"):
        routing.publish(str(tmp_path), name, DOC)


def test_a_missing_directory_says_what_to_point_at(tmp_path):
    with pytest.raises(ConfigError, match="providers.file.directory"):
        routing.publish(str(tmp_path / "nope"), "cutover.yml", DOC)
