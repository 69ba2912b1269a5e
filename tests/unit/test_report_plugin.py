"""The parking_report action plugin's file writing (action_plugins/parking_report.py): the
directory is created, each file replaced whole with the mode asked, no temporary file left,
names with a directory part refused before anything is written."""
import importlib.util
import os
import stat

import pytest

SPEC = importlib.util.spec_from_file_location(
    "parking_report_action", os.path.join(os.path.dirname(__file__), "..", "..", "action_plugins", "parking_report.py"))
plugin = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(plugin)


def test_writes_every_file_whole_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "reports" / "deep"
    paths = plugin.write_files(str(target), {"b.md": "# B\n", "a.json": "{}\n"})
    assert paths == [str(target / "a.json"), str(target / "b.md")]
    assert (target / "b.md").read_text() == "# B\n"
    assert stat.S_IMODE(os.stat(target / "a.json").st_mode) == 0o644
    plugin.write_files(str(target), {"b.md": "# B again\n"}, mode=0o600)
    assert (target / "b.md").read_text() == "# B again\n"
    assert stat.S_IMODE(os.stat(target / "b.md").st_mode) == 0o600
    assert sorted(os.listdir(target)) == ["a.json", "b.md"]


@pytest.mark.parametrize("name", ["../escape.md", "sub/x.md", ".hidden", ""])
def test_refuses_names_that_are_not_plain(tmp_path, name):
    with pytest.raises(ValueError, match="plain name"):
        plugin.write_files(str(tmp_path / "reports"), {"ok.md": "x", name: "y"})
    assert not (tmp_path / "reports").exists()
