"""Options of the smoke checks: the constants every part shares (check names, BACKENDS, each
backend's ROUTES, probe and reservation schemes, limits), option parsing and validation
(normalise_options, host rules) and the time-derived probe fCnt and reservation windows.

Part of the package module_utils/parking/smoke (see its __init__). Plain Python.
"""
import datetime as dt
import os
import re
import uuid

from ..errors import ConfigError

CHECKS = ("routing", "health", "login", "devices", "spaces", "reservation", "websocket", "webhook", "host_rules",
          "error_rate")
READ_CHECKS = ("routing", "health", "login", "devices", "spaces", "host_rules", "error_rate")   # the check-mode set
DEFAULT_CHECKS = CHECKS[1:-1]  # routing and error_rate run only when asked (cutover steps)
WRITE_CHECKS = ("reservation", "websocket", "webhook")
BACKENDS = {"v5": "5.", "v6": "6."}                                 # /health version prefixes
# Each backend's contract for the checks (V6: docs/v6-contract.md; the real V6 has none of V5's
# /api/v1 routes but its V5-compatible uplink). Lists: (path, key of the list in the body or None
# for a bare list, page size or None when unpaged).
ROUTES = {
    "v5": {"login": "/api/v1/auth/login", "login_form": False,
           "devices": ("/api/v1/devices", None, None), "spaces": ("/api/v1/spaces", None, None),
           "reservations": ("/api/v1/reservations", None, None),
           "reserve": ("POST", "/api/v1/reservations"), "cancel": ("POST", "/api/v1/reservations/{id}/cancel"),
           "ws_update": "space_update"},
    "v6": {"login": "/api/auth/login", "login_form": True,
           "devices": ("/api/v6/devices", "items", 100), "spaces": ("/api/v6/spaces", "spaces", 500),
           "reservations": ("/api/v6/reservations", "reservations", 200),
           "reserve": ("POST", "/api/v6/reservations/"), "cancel": ("PUT", "/api/v6/reservations/{id}/cancel"),
           "ws_update": "space:update"},
}
# A probe's ``data`` readable alike as base64 (ChirpStack's encoding: first byte 0xD3 / 0x00, bit 0 =
# occupied) and as the hex the real V6 at ea5b72f reads ("01" = occupied, "AA" = free).
DUAL_DATA = {True: "01AA", False: "AAAA"}
MAX_PAGES = 1000
DATABASES = {"v5": "parking_v5", "v6": "parking_v6"}
NEEDS_LOGIN = ("login", "devices", "spaces", "reservation", "websocket")
NEEDS_PROBE = ("websocket", "webhook")

# fCnt of the probe uplinks, derived from wall-clock time exactly as the lab simulator does
# (lab/services/simulator/sim.py): 8 per second since 2025-01-01, so any fCnt a device was sent
# before now is below the base, and two runs a quarter second apart never share one.
FCNT_EPOCH = 1735689600
FCNT_PER_SECOND = 8
FCNT_MAX = 2**31 - 2            # V5 and V6 store fCnt in an int4: stay below 2^31-1
PROBES_PER_RUN = 2              # websocket + webhook

# Reservation windows: each wall-clock second since FCNT_EPOCH owns a block of RESERVATION_SLOTS
# one-minute windows starting 2100-01-01, so two runs never ask for overlapping windows; a 409
# (someone booked that minute) moves to the next window of the run's own block.
RESERVATION_BASE = dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)
RESERVATION_MINUTES = 1
RESERVATION_SLOTS = 2

EUI_RE = re.compile(r"^[0-9A-F]{16}$")
USER_AGENT = "parking-migrate-smoke/1.0"
MAX_BODY = 32 * 1024 * 1024
POLL_INTERVAL = 0.2
ROUTING_HEADER = "X-Parking-Cutover"        # set by the cutover routers (cutover-routing.yml.j2)
REDACTED = "********"

# Probe event identity (ChirpStack ids are UUIDs; V5/V6 read devEui, profile, fCnt, data, rxInfo).
PROBE_PROFILE = "browan_tbms100_motion"
PROBE_FPORT = 102
PROBE_GATEWAY = "0016c001ff5a0ce0"
_NS = uuid.UUID("6f1d3c3e-2f0b-4c55-9a43-70617261636b")
PROBE_TENANT_ID = str(uuid.uuid5(_NS, "tenant"))
PROBE_APPLICATION_ID = str(uuid.uuid5(_NS, "application"))
PROBE_PROFILE_ID = str(uuid.uuid5(_NS, "device-profile"))


def version_prefix(backend):
    return BACKENDS[backend]


def default_database(backend):
    return DATABASES[backend]


def default_host_rules(api_host="api"):
    """Lab and production defaults (after phase 2: the V6 hosts exist beside V5)."""
    basic = {"path": "/", "status": 401, "auth": "basic"}
    rules = {
        "api-v6": {"path": "/health", "status": 200, "content_type": "application/json",
                   "version_prefix": "6."},
        "app": {"path": "/", "status": 200, "content_type": "text/html"},
        "www": {"path": "/", "status": 200},
        "db-v6": dict(basic),
        "files-v6": dict(basic),
        "adminer": dict(basic),
        "chirpstack": {"path": "/", "status": 200},
    }
    rules[api_host] = {"path": "/health", "status": 200, "content_type": "application/json",
                       "version_prefix": "expected"}
    return rules


RULE_KEYS = {"path", "status", "content_type", "version_prefix", "auth", "body_contains"}


def normalise_host_rule(host, rule):
    """Validate one expectation; returns it with defaults (path /, status [200])."""
    if rule is None:
        rule = {}
    if not isinstance(rule, dict):
        raise ConfigError(f"host_rules.{host} must be a dict of expectations, got {type(rule).__name__}")
    unknown = sorted(set(rule) - RULE_KEYS)
    if unknown:
        raise ConfigError(f"host_rules.{host}: unknown key(s) {', '.join(unknown)}; "
                          f"allowed: {', '.join(sorted(RULE_KEYS))}")
    status = rule.get("status", 200)
    statuses = status if isinstance(status, (list, tuple)) else [status]
    try:
        statuses = [int(s) for s in statuses]
    except (TypeError, ValueError):
        raise ConfigError(f"host_rules.{host}.status must be an HTTP status or a list of them") from None
    if not statuses or any(not 100 <= s <= 599 for s in statuses):
        raise ConfigError(f"host_rules.{host}.status must be an HTTP status or a list of them")
    path = str(rule.get("path") or "/")
    if not path.startswith("/"):
        raise ConfigError(f"host_rules.{host}.path must start with '/'")
    auth = rule.get("auth")
    if auth is not None and str(auth).lower() not in ("basic", "bearer"):
        raise ConfigError(f"host_rules.{host}.auth must be basic or bearer")
    out = {"path": path, "status": statuses}
    for key in ("content_type", "version_prefix", "body_contains"):
        if rule.get(key) not in (None, ""):
            out[key] = str(rule[key])
    if auth is not None:
        out["auth"] = str(auth).lower()
    return out


def validate_host(name, value):
    if not isinstance(value, str) or not re.match(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$", value or ""):
        raise ConfigError(f"{name} must be a DNS name (letters, digits, dots, hyphens), got {value!r}")
    return value.lower()


def normalise_options(params):
    """Check the module options and return plain, defaulted values (raises ConfigError)."""
    p = dict(params)
    backend = p.get("expect_backend")
    if backend not in BACKENDS:
        raise ConfigError(f"expect_backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    opts = {
        "domain": validate_host("domain", p.get("domain")),
        "api_host": validate_host("api_host", p.get("api_host") or "api"),
        "connect_host": (p.get("connect_host") or "").strip(),
        "connect_port": int(p.get("connect_port") or 443),
        "ca_file": p.get("ca_file") or None,
        "expect_backend": backend,
        "login_email": (p.get("login_email") or "").strip(),
        "login_password": p.get("login_password") or "",
        "probe_dev_eui": (p.get("probe_dev_eui") or "").strip().upper() or None,
        "probe_fcnt_base": p.get("probe_fcnt_base"),
        "timeout": float(p.get("timeout") or 10.0),
        "error_rate_requests": int(p.get("error_rate_requests") or 40),
        "error_rate_max": float(p.get("error_rate_max") or 0.0),
        "expect_routing": p.get("expect_routing"),
        "routing_timeout": float(p.get("routing_timeout") or 30.0),
        "failover_grace": float(10.0 if p.get("failover_grace") is None else p.get("failover_grace")),
    }
    if not 1 <= opts["connect_port"] <= 65535:
        raise ConfigError(f"connect_port must be 1-65535, got {opts['connect_port']}")
    if opts["timeout"] <= 0:
        raise ConfigError("timeout must be positive")
    if opts["failover_grace"] < 0:
        raise ConfigError("failover_grace must be 0 or more seconds")
    if opts["ca_file"] and not os.path.isfile(opts["ca_file"]):
        raise ConfigError(f"ca_file {opts['ca_file']!r} does not exist")
    checks = p.get("checks")
    checks = list(DEFAULT_CHECKS) if not checks else [str(c) for c in checks]
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise ConfigError(f"checks: unknown {', '.join(unknown)}; known: {', '.join(CHECKS)}")
    opts["checks"] = [c for c in CHECKS if c in checks]       # fixed order
    if opts["probe_dev_eui"] is not None and not EUI_RE.match(opts["probe_dev_eui"]):
        raise ConfigError(f"probe_dev_eui must be 16 hex digits, got {p.get('probe_dev_eui')!r}")
    wanted = set(opts["checks"])
    if wanted & set(NEEDS_LOGIN) and not (opts["login_email"] and opts["login_password"]):
        raise ConfigError("login_email and login_password are required for the checks "
                          + ", ".join(c for c in opts["checks"] if c in NEEDS_LOGIN))
    if wanted & set(NEEDS_PROBE) and not opts["probe_dev_eui"]:
        raise ConfigError("probe_dev_eui is required for the checks "
                          + ", ".join(c for c in opts["checks"] if c in NEEDS_PROBE))
    base = opts["probe_fcnt_base"]
    if base is not None:
        base = int(base)
        if base < 0 or base + PROBES_PER_RUN - 1 > FCNT_MAX:
            raise ConfigError(f"probe_fcnt_base must be 0..{FCNT_MAX - PROBES_PER_RUN + 1}, got {base}")
        opts["probe_fcnt_base"] = base
    rules = p.get("host_rules")
    if rules is None:
        rules = default_host_rules(opts["api_host"])
    if not isinstance(rules, dict):
        raise ConfigError("host_rules must be a dict of host -> expectation")
    opts["host_rules"] = {validate_host(f"host_rules key {h!r}", str(h)): normalise_host_rule(h, r)
                          for h, r in sorted(rules.items())}
    return opts


# --------------------------------------------------------------------------------------------
# Time-derived probe fCnt and reservation windows (unit-tested)
# --------------------------------------------------------------------------------------------

def fcnt_ceiling(now):
    return min(int((now - FCNT_EPOCH) * FCNT_PER_SECOND), FCNT_MAX)


def fcnt_base(now):
    """First probe fCnt of a run at ``now`` (epoch seconds); raises ConfigError once the time
    scheme runs out of int4 (2033), when probe_fcnt_base must be given."""
    base = fcnt_ceiling(now) + 1
    if base + PROBES_PER_RUN - 1 > FCNT_MAX:
        raise ConfigError("the time-derived fCnt would pass 2^31-1: set probe_fcnt_base")
    return base


def reservation_window(now, attempt=0):
    """(start, end) of the one-minute window of a run at ``now`` (epoch seconds), try ``attempt``."""
    if not 0 <= attempt < RESERVATION_SLOTS:
        raise ValueError("attempt must be 0..%d" % (RESERVATION_SLOTS - 1))
    block = max(int(now) - FCNT_EPOCH, 0)
    start = RESERVATION_BASE + dt.timedelta(minutes=(block * RESERVATION_SLOTS + attempt) * RESERVATION_MINUTES)
    return start, start + dt.timedelta(minutes=RESERVATION_MINUTES)
