"""Helpers shared by the V5 and V6 API stand-ins (``v5api/app.py``, ``v6api/app.py``).

Only code that is the same in both services lives here: HS256 JWTs, ChirpStack event time and
number parsing, the psycopg2 connection pool, and the JSON-over-HTTP plumbing (request,
handler, server, SIGTERM shutdown). Endpoints, SQL and business rules stay in each app.

Standard library plus the Debian packages python3-psycopg2 and python3-bcrypt only.
"""
import base64
import binascii
import datetime as dt
import decimal
import hashlib
import hmac
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

try:  # the pure helpers (JWT, time parsing) are unit-tested without the drivers
    import bcrypt
    import psycopg2
    import psycopg2.extras
    import psycopg2.pool
except ImportError:  # pragma: no cover - only in environments without the drivers
    bcrypt = None
    psycopg2 = None

MAX_BODY_BYTES = 1024 * 1024
# The pool keeps every connection it opens (min = max, opened on first use): psycopg2's pool closes
# a returned connection above minconn, so a busy service reconnected per request. With TLS and
# SCRAM on every connect, under a CPU hog V5 answered uplinks in 10 s (17 new sessions/s).
POOL_MIN, POOL_MAX = 20, 20
POOL_WAIT_SECONDS = 10


def one_line(exc):
    return " ".join(str(exc).split())


# --------------------------------------------------------------------------------------------
# JWT (HS256) with hmac/base64 only
# --------------------------------------------------------------------------------------------

class JWTError(Exception):
    """The token is malformed, has a bad signature, or is expired."""


def b64url_encode(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    if isinstance(text, str):
        text = text.encode("ascii")
    return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))


def jwt_encode(claims, secret):
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = "%s.%s" % (
        b64url_encode(json.dumps(header, separators=(",", ":")).encode()),
        b64url_encode(json.dumps(claims, separators=(",", ":")).encode()),
    )
    signature = hmac.new(secret.encode(), signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url_encode(signature)


def jwt_decode(token, secret, now=None):
    """Verify an HS256 token and return its claims; raise JWTError otherwise."""
    try:
        header_b64, claims_b64, signature_b64 = token.split(".")
        header = json.loads(b64url_decode(header_b64))
        signature = b64url_decode(signature_b64)
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise JWTError("malformed token") from exc
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise JWTError("unsupported algorithm")
    expected = hmac.new(secret.encode(), ("%s.%s" % (header_b64, claims_b64)).encode("ascii"),
                        hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        raise JWTError("bad signature")
    try:
        claims = json.loads(b64url_decode(claims_b64))
    except (ValueError, binascii.Error) as exc:
        raise JWTError("malformed claims") from exc
    if not isinstance(claims, dict):
        raise JWTError("malformed claims")
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or exp <= (time.time() if now is None else now):
        raise JWTError("token expired")
    return claims


def verify_password(password, password_hash):
    """bcrypt check that treats an unusable stored hash as a mismatch (V5 and V6 do the same)."""
    try:
        return bcrypt.checkpw(password.encode(), (password_hash or "").encode())
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------
# ChirpStack event fields
# --------------------------------------------------------------------------------------------

_FRACTION_RE = re.compile(r"\.(\d+)")


def parse_event_time(value):
    """Parse an RFC 3339 time (``Z`` or ``+00:00``, any number of fraction digits)."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    text = _FRACTION_RE.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text, count=1)
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed


def number(value, kind):
    """``kind(value)`` for a JSON number (bool excluded), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return kind(value)


# --------------------------------------------------------------------------------------------
# Database access
# --------------------------------------------------------------------------------------------

class Database:
    """A ThreadedConnectionPool that waits for a free connection instead of failing.

    The pool is created lazily so the API starts (and reports its degraded/not-ready state)
    while PostgreSQL is still down.
    """

    application_name = None  # set by each service (pg_stat_activity.application_name)

    def __init__(self, dsn, minconn=POOL_MIN, maxconn=POOL_MAX):
        self.dsn = dsn
        self.minconn = minconn
        self.maxconn = maxconn
        self._pool = None
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(maxconn)

    def _get_pool(self):
        with self._lock:
            if self._pool is None:
                self._pool = psycopg2.pool.ThreadedConnectionPool(
                    self.minconn, self.maxconn, self.dsn,
                    connect_timeout=5, application_name=self.application_name)
            return self._pool

    def transaction(self, first_sql="SELECT 1", first_params=None):
        """``with db.transaction() as cur:`` -> one transaction, committed on success. The
        transaction's first statement (``first_sql``, also the connection's liveness check) has
        run when the block starts; its rows are ``cur.fetchone()``."""
        return Transaction(self, first_sql, first_params)

    def close(self):
        with self._lock:
            if self._pool is not None:
                self._pool.closeall()
                self._pool = None


class Transaction:
    """One pooled connection for one transaction, committed on success, rolled back otherwise.

    ``first_sql``/``first_params`` is the transaction's first statement; it doubles as the
    liveness check (after a PostgreSQL restart every idle pooled connection is dead and is
    replaced here).
    """

    def __init__(self, db, first_sql="SELECT 1", first_params=None):
        self.db = db
        self.first_sql, self.first_params = first_sql, first_params
        self.conn = None

    def __enter__(self):
        if not self.db._slots.acquire(timeout=POOL_WAIT_SECONDS):
            raise RuntimeError("no database connection free after %ss" % POOL_WAIT_SECONDS)
        try:
            self.conn, cur = self._healthy_connection(self.db._get_pool())
            return cur
        except Exception:
            self.conn = None
            self.db._slots.release()
            raise

    def _healthy_connection(self, pool):
        for _ in range(self.db.maxconn + 1):
            conn = pool.getconn()
            try:
                cur = conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
                cur.execute(self.first_sql, self.first_params)
                return conn, cur
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                pool.putconn(conn, close=True)
        raise RuntimeError("no working database connection")

    def __exit__(self, exc_type, exc, tb):
        broken = False
        try:
            if exc_type is None:
                self.conn.commit()
            else:
                self.conn.rollback()
        except psycopg2.Error:
            broken = True
        broken = broken or self.conn.closed or isinstance(
            exc, (psycopg2.OperationalError, psycopg2.InterfaceError))
        try:
            self.db._get_pool().putconn(self.conn, close=bool(broken))
        finally:
            self.db._slots.release()
        return False


def run_uplink(log, up, work):
    """Run ``work()`` (one uplink transaction) and return its result, retrying once on a
    connection error: a pooled connection left over from before a PostgreSQL restart fails on
    first use; the transaction was rolled back, so one retry on a fresh one is safe.
    Any other failure (or a second one) is logged and answered with HTTP 500."""
    for attempt in (1, 2):
        try:
            return work()
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            if attempt == 1:
                log.warning("uplink from %s: %s; retrying once", up["dev_eui"], one_line(exc))
                continue
            log.exception("uplink from %s (fCnt %s) failed", up["dev_eui"], up["fcnt"])
            raise HTTPError(500, "uplink processing failed") from exc
        except Exception as exc:
            log.exception("uplink from %s (fCnt %s) failed", up["dev_eui"], up["fcnt"])
            raise HTTPError(500, "uplink processing failed") from exc
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# HTTP layer
# --------------------------------------------------------------------------------------------

class HTTPError(Exception):
    """An error answer ``{"detail": detail}``; ``headers`` are extra (name, value) pairs."""

    def __init__(self, status, detail, headers=()):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = tuple(headers)


def json_default(value):
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError("not JSON serialisable: %r" % type(value))


class Request:
    def __init__(self, method, path, query, headers, body, raw_query=""):
        self.method, self.path, self.query = method, path, query
        self.headers, self.body, self.raw_query = headers, body, raw_query

    def json_body(self):
        try:
            value = json.loads(self.body or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPError(400, "malformed JSON") from exc
        if not isinstance(value, dict):
            raise HTTPError(400, "JSON object expected")
        return value


class Router:
    """Base of an App: ``self.routes`` is a list of (method, compiled path regex, handler)."""

    routes = ()

    def dispatch(self, request):
        path_matched = False
        for method, pattern, func in self.routes:
            match = pattern.match(request.path)
            if not match:
                continue
            path_matched = True
            if method == request.method:
                return func(request, *match.groups())
        if path_matched:
            raise HTTPError(405, "Method Not Allowed")
        raise HTTPError(404, "Not Found")


class JSONHandler(BaseHTTPRequestHandler):
    """Reads the body, dispatches to ``app``, answers JSON and writes one access line to
    ``log``. Subclasses set ``server_version``, ``timeout``, ``log`` and (in main) ``app``."""

    app = None
    log = logging.getLogger(__name__)

    def _access(self, path, status, started):
        self.log.info("%s %s %d %.1fms", self.command, path, status,
                      (time.monotonic() - started) * 1000)

    def _handle(self):
        self._serve_json(urlsplit(self.path), time.monotonic())

    def _serve_json(self, split, started):
        status, headers = 500, ()
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                raise HTTPError(413, "request body too large")
            body = self.rfile.read(length) if length > 0 else b""
            request = Request(self.command, split.path, parse_qs(split.query), self.headers, body,
                              split.query)
            # (status, payload) or (status, payload, headers); payload None = empty body
            status, payload, *extra = self.app.dispatch(request)
            headers = extra[0] if extra else ()
        except HTTPError as exc:
            status, payload, headers = exc.status, {"detail": exc.detail}, exc.headers
        except Exception:
            self.log.exception("%s %s failed", self.command, split.path)
            status, payload = 500, {"detail": "Internal Server Error"}
        self._send_json(status, payload, headers)
        self._access(split.path, status, started)

    def _send_json(self, status, payload, headers=()):
        data = b"" if payload is None else json.dumps(payload, default=json_default).encode()
        try:
            self.send_response(status)
            if payload is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 401:
                self.send_header("WWW-Authenticate", "Bearer")
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self):
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def log_message(self, fmt, *args):  # the access line is written by _access
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = False       # server_close() waits for in-flight requests
    request_queue_size = 128


# --------------------------------------------------------------------------------------------
# Process setup
# --------------------------------------------------------------------------------------------

def configure_logging():
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(), stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")


def env_jwt_secret(log):
    """JWT_SECRET_KEY, or None (after logging why) when missing or shorter than 32 chars."""
    secret = os.environ.get("JWT_SECRET_KEY", "")
    if len(secret) < 32:
        log.error("JWT_SECRET_KEY is missing or too short (minimum 32 characters)")
        return None
    return secret


def env_database_url(log):
    """DATABASE_URL, or None (after logging why) when unset."""
    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        log.error("DATABASE_URL is not set")
        return None
    return dsn


def make_server(handler):
    """A Server on BIND (0.0.0.0) and PORT (8000); returns (server, port)."""
    port = int(os.environ.get("PORT", "8000"))
    return Server((os.environ.get("BIND", "0.0.0.0"), port), handler), port


def stop_on_signals(server, log, before_shutdown=None):
    """SIGTERM/SIGINT: log, run ``before_shutdown()``, then stop ``serve_forever`` (from another
    thread: shutdown() waits for the serve loop, which runs in this one)."""

    def stop(signum, frame):
        log.info("signal %d: shutting down", signum)
        if before_shutdown is not None:
            before_shutdown()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
