"""The secret scan scripts/test runs over the production scenario's -vvv output and reports:
it must find a planted secret in each form a run can print it, and name it without its value."""
import base64
import importlib.util
import os
import urllib.parse

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
spec = importlib.util.spec_from_file_location("secret_scan", os.path.join(ROOT, "scripts", "secret_scan.py"))
S = importlib.util.module_from_spec(spec)
spec.loader.exec_module(S)

SECRET = "pa ss/w:rd@lab-0123"


@pytest.fixture
def secrets_file(tmp_path):
    path = tmp_path / "secrets.yml"
    path.write_text(f'db_password: "{SECRET}"\nshort: abc\nport: 5432\n')
    return str(path)


@pytest.mark.parametrize("text", [
    f"login_password={SECRET} ",
    f"postgresql://app:{urllib.parse.quote(SECRET, safe='')}@db/parking_v6",
    "content: " + base64.b64encode(b"DATABASE_URL=x\n" + SECRET.encode() + b"\n").decode(),
    "content: " + base64.b64encode(b"K=" + SECRET.encode()).decode(),
    "content: " + base64.b64encode(b"=" + SECRET.encode() + b"!").decode(),
])
def test_finds_each_form_and_names_it_without_the_value(tmp_path, secrets_file, capsys, text):
    log = tmp_path / "run.log"
    log.write_text("ok: [lab-host]\n" + text + "\nchanged=0\n")
    assert S.main(["--secrets", secrets_file, str(log)]) == 1
    out = capsys.readouterr().out
    assert f"SECRET db_password" in out and f"{log}:2" in out
    assert SECRET not in out and "1 secrets" in out


def test_clean_output_passes_and_reports_its_totals(tmp_path, secrets_file, capsys):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "phase1-data.md").write_text("login_password: VALUE_SPECIFIED_IN_NO_LOG_PARAMETER\n" * 3)
    log = tmp_path / "run.log"
    log.write_text("abc\n5432\n")  # short values are not secrets
    assert S.main(["--secrets", secrets_file, str(log), str(reports)]) == 0
    assert "5 lines in 2 files, 1 secrets in" in capsys.readouterr().out


def test_nothing_to_scan_is_an_error(tmp_path, secrets_file):
    assert S.main(["--secrets", secrets_file, str(tmp_path / "missing.log")]) == 2
