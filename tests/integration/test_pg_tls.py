"""The lab's PostgreSQL serves TLS with a certificate of the lab CA (for 127.0.0.1, localhost and
its container names), as a production database host would: the shared connection options
connect with verify-full (by address and by name) and the session is encrypted; a CA that did
not sign the certificate, or a CA file that is missing, fail with a message naming the setting
to fix."""
import subprocess

import pytest

import p1util as U
from parking.connection import connect
from parking.errors import ParkingError

LAB_CA = "/var/lib/parking-lab/traefik/certs/ca.crt"


def tls_of(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        return cur.fetchone()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_verify_full_against_the_lab_ca_is_encrypted(host):
    conn = connect(dict(U.params("parking_v5"), login_host=host, ssl_mode="verify-full", ca_cert=LAB_CA), "source")
    try:
        ssl, version = tls_of(conn)
        assert ssl is True and version.startswith("TLSv1."), (ssl, version)
    finally:
        conn.close()


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    """A CA of its own, which did not sign the lab's PostgreSQL certificate."""
    d = tmp_path_factory.mktemp("ca")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"), "-days", "2",
                    "-subj", "/CN=not the lab CA"], check=True, capture_output=True)
    return str(d / "ca.crt")


def test_a_ca_that_did_not_sign_the_certificate_is_refused(other_ca):
    with pytest.raises(ParkingError) as err:
        connect(dict(U.params("parking_v5"), ssl_mode="verify-full", ca_cert=other_ca), "target")
    msg = str(err.value)
    assert "certificate verify failed" in msg and "Check target.ssl_mode and target.ca_cert" in msg, msg
    assert U.params("parking_v5")["login_password"] not in msg


def test_a_missing_ca_file_names_the_setting():
    with pytest.raises(ParkingError) as err:
        connect(dict(U.params("parking_v5"), ssl_mode="verify-full", ca_cert="/nonexistent/ca.crt"), "source")
    assert "Check source.ssl_mode and source.ca_cert" in str(err.value), str(err.value)
