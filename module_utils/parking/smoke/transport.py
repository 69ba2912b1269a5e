"""HTTP transport of the smoke checks: every request opens its own TLS connection to
``connect_host:connect_port`` with SNI and ``Host`` = ``<host>.<domain>``, the certificate verified
for that name (Transport, Response); socket and TLS errors become CheckFailed.

Part of the package module_utils/parking/smoke (see its __init__). Plain Python.
"""
import http.client
import json
import socket
import ssl
import time
from urllib.parse import urlencode

from .options import MAX_BODY, USER_AGENT
from .results import CheckFailed, _short


class Response:
    def __init__(self, status, headers, body, ms):
        self.status, self.headers, self.body, self.ms = status, headers, body, ms

    def json(self, what):
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise CheckFailed(f"{what} answered {self.status} with non-JSON {_short(self.body, 120)!r}") from None

    def detail(self):
        """The API's error text (FastAPI-style ``detail``) or the start of the body."""
        try:
            data = json.loads(self.body)
            if isinstance(data, dict) and data.get("detail"):
                return _short(str(data["detail"]))
        except (ValueError, UnicodeDecodeError):
            pass
        return _short(self.body)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to ``vhost`` whose TCP connection goes to ``address`` (SNI and check = vhost)."""

    def __init__(self, vhost, address, context, timeout):
        super().__init__(vhost, address[1], timeout=timeout, context=context)
        self._smoke_address = address
        self._smoke_context = context

    def connect(self):
        sock = socket.create_connection(self._smoke_address, self.timeout)
        try:
            self.sock = self._smoke_context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


class Transport:
    def __init__(self, domain, connect_host="", connect_port=443, ca_file=None, timeout=10.0):
        self.domain = domain
        self.connect_host = connect_host
        self.connect_port = connect_port
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=ca_file or None)
        self.context.set_alpn_protocols(["http/1.1"])

    def vhost(self, host):
        return f"{host}.{self.domain}"

    def address(self, host):
        return (self.connect_host or self.vhost(host), self.connect_port)

    def _where(self, host):
        addr = self.address(host)
        via = "" if addr[0] == self.vhost(host) else f" via {addr[0]}:{addr[1]}"
        return f"{self.vhost(host)}{via}"

    def _translate(self, host, exc):
        where = self._where(host)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return CheckFailed(f"TLS certificate of {where} not trusted: {exc.verify_message or exc}")
        if isinstance(exc, ssl.SSLError):
            return CheckFailed(f"TLS with {where} failed: {exc}")
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return CheckFailed(f"no answer from {where} within {self.timeout:g}s")
        if isinstance(exc, http.client.HTTPException):
            return CheckFailed(f"bad HTTP answer from {where}: {type(exc).__name__} {exc}")
        return CheckFailed(f"cannot reach {where}: {exc}")

    def request(self, host, method, path, body=None, token=None, form=None):
        """One request: ``body`` is sent as JSON, ``form`` as an HTML form (V6's OAuth2 login)."""
        headers = {"Host": self.vhost(host), "User-Agent": USER_AGENT, "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        elif form is not None:
            data = urlencode(form).encode("ascii")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if token:
            headers["Authorization"] = "Bearer " + token
        conn = _PinnedHTTPSConnection(self.vhost(host), self.address(host), self.context, self.timeout)
        started = time.monotonic()
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read(MAX_BODY)
            got = {k.lower(): v for k, v in resp.getheaders()}
            return Response(resp.status, got, payload, (time.monotonic() - started) * 1000)
        except (OSError, http.client.HTTPException) as exc:
            raise self._translate(host, exc) from None
        finally:
            conn.close()

    def open_tls(self, host, timeout):
        try:
            sock = socket.create_connection(self.address(host), timeout)
        except OSError as exc:
            raise self._translate(host, exc) from None
        try:
            return self.context.wrap_socket(sock, server_hostname=self.vhost(host))
        except OSError as exc:
            sock.close()
            raise self._translate(host, exc) from None
