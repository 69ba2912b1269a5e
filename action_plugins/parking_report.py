# -*- coding: utf-8 -*-
# parking-migrate: write report files on the controller, in the play's own process.
# Documentation: library/parking_report.py. Plain file writes (directory created, each file
# written to a hidden temporary name and renamed), no module run: on a saturated host a module
# run costs seconds, and a phase wrote its reports with three of them per file
# (ansible.builtin.file, then copy's stat and copy).
from __future__ import annotations

import os
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.action import ActionBase


def write_files(directory, files, mode=0o644):
    """Create directory, write every name -> text; return the paths written (sorted by name)."""
    for name in files:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"a report file name must be a plain name, got {name!r}")
    os.makedirs(directory, mode=0o755, exist_ok=True)
    written = []
    for name in sorted(files):
        path = os.path.join(directory, name)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(to_bytes(files[name]))
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        written.append(path)
    return written


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("dir", "files", "mode"))
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        directory, files = args.get("dir"), args.get("files")
        if not directory or not isinstance(files, dict) or not files:
            raise AnsibleActionFail("parking_report needs dir (a directory on the controller) and files "
                                    "(a non-empty dict of file name -> content)")
        mode = args.get("mode", "0644")
        try:
            mode = int(str(mode), 8) if not isinstance(mode, int) else mode
            paths = write_files(os.path.expanduser(to_text(directory)),
                                {to_text(k): to_text(v) for k, v in files.items()}, mode)
        except (OSError, ValueError) as exc:
            raise AnsibleActionFail(f"cannot write the reports in {directory}: {exc}. Check that the directory "
                                    f"is writable on the controller (parking_reports_dir)")
        result.update(changed=False, paths=paths)
        return result
