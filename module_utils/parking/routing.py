# -*- coding: utf-8 -*-
"""Publish one file of Traefik's file-provider directory atomically (module parking_traefik_file).

Traefik watches the whole directory and loads every *.yml, *.yaml and *.toml in it. Rewriting a
file in place let it read half a file (6,005 x 503 in 12 s on the lab machine), and a temporary
file named like the live one (as a plain atomic move makes, `.ansible_tmp...cutover-routing.yml`)
is loaded too and defines every router twice. So the new content goes to a hidden temporary
file whose name Traefik ignores (no such extension), is flushed to disk, then renamed over the
live file: rename(2) within one directory is atomic, Traefik sees the old file or the new one.

Plain Python (PyYAML optional, for validation), unit-tested in tests/unit/test_routing.py.
"""
import os

try:
    import yaml
except ImportError:  # pragma: no cover - the content is then published unvalidated
    yaml = None

from .errors import ConfigError

EXTENSIONS = (".yml", ".yaml", ".toml")
LEFTOVERS = (".{name}.pending", ".{name}.swap")   # an earlier publishing scheme's hidden files


def check_name(name):
    if not name or "/" in name or name.startswith(".") or not name.endswith(EXTENSIONS):
        raise ConfigError(f"name must be a plain file name ending in {', '.join(EXTENSIONS)} "
                          f"(Traefik loads only those), got {name!r}")


def validate(name, content):
    """YAML content must parse to a mapping (Traefik rejects the whole file otherwise)."""
    if yaml is None or not name.endswith((".yml", ".yaml")):
        return
    try:
        data = yaml.safe_load(content)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name} is not valid YAML, nothing was published: {exc}")
    if not isinstance(data, dict):
        raise ConfigError(f"{name} must hold a YAML mapping (http:, tls:, ...), nothing was published")


def read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def publish(directory, name, content=None, state="present", mode=0o644, check_mode=False):
    """Make <directory>/<name> hold content (state present) or not exist (absent).

    Returns {changed, path, before, after}; before/after are the file's text (None = absent)."""
    check_name(name)
    if state not in ("present", "absent"):
        raise ConfigError(f"state must be present or absent, got {state!r}")
    if not os.path.isdir(directory):
        raise ConfigError(f"{directory} is not a directory: point it at the directory Traefik watches "
                          "(--providers.file.directory)")
    path = os.path.join(directory, name)
    before = read(path)
    after = None
    if state == "present":
        if content is None:
            raise ConfigError("state=present needs content")
        validate(name, content)
        after = content
    changed = before != after
    if not check_mode:
        for leftover in LEFTOVERS:
            stale = os.path.join(directory, leftover.format(name=name))
            if os.path.exists(stale):
                os.unlink(stale)
        if changed and after is None:
            os.unlink(path)
        elif changed:
            tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
            try:
                with open(tmp, "w", encoding="utf-8") as handle:
                    handle.write(after)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.chmod(tmp, mode)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    return {"changed": changed, "path": path, "before": before, "after": after}
