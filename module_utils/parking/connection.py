"""Connection options shared by every parking-migrate module, and connecting with clear errors.

Modules take one dict of community.postgresql-style options per database they use
(`source`, `target`, `chirpstack`): login_host, login_port, login_user,
login_password (no_log), db, ssl_mode, ca_cert, ssl_cert, ssl_key (TLS, as
community.postgresql names them). `connection_spec(db)` is the suboption spec;
`connect(params, role)` returns a psycopg2 connection or raises ConnectError.
"""
from .errors import ConnectError

try:
    import psycopg2
    import psycopg2.extensions
    import psycopg2.sql
    HAS_PSYCOPG2 = True
except ImportError:  # reported by the module with missing_required_lib
    psycopg2 = None
    HAS_PSYCOPG2 = False

MIN_SERVER_VERSION = 120000  # PostgreSQL 12: pg_snapshot, generated columns, COPY (SELECT)


TLS_FILES = {"ca_cert": "sslrootcert", "ssl_cert": "sslcert", "ssl_key": "sslkey"}


def connection_spec(default_db):
    """Suboption spec of one connection (an Ansible argument spec, as plain data)."""
    return {
        "login_host": {"type": "str", "default": "127.0.0.1"},
        "login_port": {"type": "int", "default": 5432},
        "login_user": {"type": "str", "default": "parking_user"},
        "login_password": {"type": "str", "no_log": True, "default": ""},
        "db": {"type": "str", "default": default_db},
        "ssl_mode": {"type": "str", "default": "prefer",
                     "choices": ["allow", "disable", "prefer", "require", "verify-ca", "verify-full"]},
        "ca_cert": {"type": "str", "default": "", "aliases": ["ssl_rootcert"]},
        "ssl_cert": {"type": "str", "default": ""},
        "ssl_key": {"type": "str", "default": "", "no_log": False},
        "connect_timeout": {"type": "int", "default": 10},
    }


def connection_option(default_db, description=None):
    """A top-level module option holding one connection."""
    return {"type": "dict", "default": {}, "options": connection_spec(default_db)}


def describe(params):
    """Human description of a connection, never including the password."""
    return f"database {params.get('db')!r} on {params.get('login_host')}:{params.get('login_port')} " \
           f"as {params.get('login_user')!r}"


def connect(params, role, autocommit=False):
    """Open a connection; role names it in errors ('source', 'target', ...)."""
    if not HAS_PSYCOPG2:
        raise ConnectError("psycopg2 is required on the host running the module")
    kwargs = {
        "host": params.get("login_host"), "port": params.get("login_port"),
        "user": params.get("login_user"), "dbname": params.get("db"),
        "sslmode": params.get("ssl_mode") or "prefer",
        "connect_timeout": params.get("connect_timeout") or 10,
        "application_name": f"parking-migrate ({role})",
        # standard_conforming_strings: what mapping.sql_literal's quoting relies on (quote.py)
        "options": "-c TimeZone=UTC -c standard_conforming_strings=on",
    }
    if params.get("login_password"):
        kwargs["password"] = params["login_password"]
    for option, libpq in TLS_FILES.items():  # '' = libpq's default (~/.postgresql/...)
        if params.get(option):
            kwargs[libpq] = params[option]
    try:
        conn = psycopg2.connect(**kwargs)
    except psycopg2.OperationalError as exc:
        detail = " ".join(str(exc).split())
        hint = ""
        if "does not exist" in detail and "database" in detail:
            hint = f" Check {role}.db: the database must exist before this phase runs."
        elif "password authentication failed" in detail or "authentication" in detail:
            hint = f" Check {role}.login_user and {role}.login_password (vault)."
        elif "certificate" in detail or "SSL" in detail or "ssl" in detail:
            hint = (f" Check {role}.ssl_mode and {role}.ca_cert (the CA that signed the server's certificate; "
                    f"verify-full also needs login_host to be a name in the certificate).")
        elif "could not connect" in detail or "Connection refused" in detail or "timeout" in detail:
            hint = f" Check {role}.login_host/login_port and that the server accepts connections."
        raise ConnectError(f"unable to connect to the {role} {describe(params)}: {detail}.{hint}") from None
    conn.autocommit = autocommit
    version = conn.server_version
    if version < MIN_SERVER_VERSION:
        conn.close()
        raise ConnectError(f"the {role} server runs PostgreSQL {version}; parking-migrate needs "
                           f"{MIN_SERVER_VERSION // 10000} or newer")
    return conn

