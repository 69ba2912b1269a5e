"""Role passwords are sent to PostgreSQL as SCRAM-SHA-256 verifiers (rls.scram_verifier)."""
import base64

from parking import rls


def test_the_verifier_has_postgresqls_format_and_matches_only_its_password():
    v = rls.scram_verifier("app-secret", salt=b"0123456789abcdef", iterations=4096)
    head, keys = v.split("$")[1:]
    assert v.startswith("SCRAM-SHA-256$4096:") and base64.b64decode(head.split(":")[1]) == b"0123456789abcdef"
    assert all(len(base64.b64decode(k)) == 32 for k in keys.split(":"))
    assert "app-secret" not in v
    assert rls.verifier_matches(v, "app-secret") and not rls.verifier_matches(v, "app-secret2")
    assert not rls.verifier_matches("md5abc", "app-secret") and not rls.verifier_matches(None, "x")


def test_a_fresh_salt_each_time():
    assert rls.scram_verifier("x") != rls.scram_verifier("x")


def test_known_verifier_from_postgresql():
    # SELECT rolpassword FROM pg_authid after CREATE ROLE r PASSWORD 'pencil' on PostgreSQL 15.
    # With salt and iterations taken from it, the same StoredKey and ServerKey. (A role given
    # scram_verifier's output then logs in with the password and not with another: checked by
    # hand on PostgreSQL 15, and by the phase-1 tests that log in as the application role.)
    stored = KNOWN
    head = stored.split("$")[1]
    iterations, salt = head.split(":")
    assert rls.scram_verifier("pencil", base64.b64decode(salt), int(iterations)) == stored


KNOWN = ("SCRAM-SHA-256$4096:S9+M9QpIUrZFRU2sCPlxMw==$EbSCZmlTBPEr3eNsMmhmzlPwFBN06KOC8AdP6reCiRQ=:"
         "/sOtyxYvPn9gpPX0qfjlXwz8l1q6LVTQ/3mK7kLWriY=")
