#!/usr/bin/env python3
"""Look for the inventory's secret values in everything a run printed or wrote.

    secret_scan.py --secrets inventory/lab/group_vars/all/secrets.yml  LOG_OR_DIR [...]

Every string value of the secrets files (passwords, JWT keys, ...) is searched as written,
URL-encoded (as in a database URL) and base64-encoded at each of the three alignments (as inside
a slurped file), in every line of every file given (directories recursively). Prints one line per
hit naming the file, the line and the secret's name (never its value), then the totals; exit 1
on any hit, 2 when there is nothing to scan.
"""
import argparse
import base64
import os
import sys
import urllib.parse

import yaml

MIN_LENGTH = 6  # shorter values would match by chance


def load_secrets(paths):
    secrets = {}
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
        for name, value in data.items():
            if isinstance(value, str) and len(value) >= MIN_LENGTH:
                secrets[name] = value
    return secrets


def base64_forms(value):
    """The part of base64(x + value + y) that depends on value alone, for each alignment."""
    raw = value.encode()
    forms = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        lead = (shift * 4 + 2) // 3            # characters touched by the shift bytes
        tail = 4 if (shift + len(raw)) % 3 else 0  # the last group holds padding
        core = encoded[lead:len(encoded) - tail]
        if len(core) >= 8:
            forms.append(core)
    return forms


def forms_of(secrets):
    """[(needle, name, form)] for every secret."""
    needles = []
    for name, value in secrets.items():
        seen = set()
        for form, needle in [("plain", value), ("url-encoded", urllib.parse.quote(value, safe=""))] + [
                ("base64", b) for b in base64_forms(value)]:
            if needle not in seen:
                seen.add(needle)
                needles.append((needle, name, form))
    return needles


def files_under(paths):
    for path in paths:
        if os.path.isdir(path):
            for root, _dirs, names in os.walk(path):
                for name in sorted(names):
                    yield os.path.join(root, name)
        elif os.path.isfile(path):
            yield path


def scan(paths, needles):
    """Returns (files, lines, hits); hits = [(file, line number, secret name, form)]."""
    files = lines = 0
    hits = []
    for path in files_under(paths):
        files += 1
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                lines += 1
                for needle, name, form in needles:
                    if needle in line:
                        hits.append((path, number, name, form))
    return files, lines, hits


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", action="append", required=True, help="a YAML file of secret values")
    parser.add_argument("paths", nargs="+", help="logs and report directories")
    args = parser.parse_args(argv)
    secrets = load_secrets(args.secrets)
    needles = forms_of(secrets)
    files, lines, hits = scan(args.paths, needles)
    for path, number, name, form in hits:
        print(f"SECRET {name} ({form}) in {path}:{number}")
    print(f"[secret-scan] {lines} lines in {files} files, {len(secrets)} secrets in {len(needles)} forms: "
          f"{len(hits)} hits")
    if not secrets or not lines:
        print("[secret-scan] ERROR: nothing to scan or no secrets to look for", file=sys.stderr)
        return 2
    return 1 if hits else 0


if __name__ == "__main__":
    sys.exit(main())
