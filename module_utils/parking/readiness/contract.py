"""Phase-2 readiness gate, what it holds V6 to (docs/v6-contract.md): the check names, V6's page
sizes and list keys, the probe uplink's payload and tag, the options as the gate uses them, the
access tokens it signs as V6's login does, a request/response excerpt, which user stands for a
tenant, ids listed against ids held, and the message of a failed gate.

Pure functions of their arguments: no HTTP, no database.
"""
import base64
import hashlib
import hmac
import json
import time

from .. import mapping
from ..errors import ConfigError
from ..smoke import validate_host

CHECKS = ("health", "login", "tenants", "occupancy", "reservation", "retention")
PAGE_SIZES = {"devices": 100, "spaces": 500, "sites": 500, "reservations": 200}   # V6's maxima
LIST_KEYS = {"devices": "items", "spaces": "spaces", "sites": "sites", "reservations": "reservations"}
MAX_PAGES = 1000
POLL_INTERVAL = 0.2
# The probe's ``data``: readable alike as base64 (ChirpStack's encoding: first byte 0xD3 / 0x00,
# bit 0 = occupied) and as the hex the real V6 at ea5b72f reads ("01" = occupied, "AA" = free).
PROBE_DATA = {True: "01AA", False: "AAAA"}
# Tag of every probe uplink (deviceInfo.tags.source): a V6 that failed a probe may retry it from
# its spool after the gate cleaned up; ``clean`` (rollback-2) removes such late readings too.
PROBE_TAG = "parking-migrate-readiness"
DELETE_PROBE_READINGS = "DELETE FROM sensor_readings WHERE strpos(raw_payload::text, %s) > 0"
ROLE_RANK = {"owner": 4, "admin": 3, "operator": 2, "viewer": 1}
EXCERPT = 400


def normalise_options(params):
    p = dict(params)
    opts = {
        "domain": validate_host("domain", p.get("domain")),
        "api_host": validate_host("api_host", p.get("api_host") or "api-v6"),
        "live_host": validate_host("live_host", p["live_host"]) if p.get("live_host") else "",
        "connect_host": (p.get("connect_host") or "").strip(),
        "connect_port": int(p.get("connect_port") or 443),
        "ca_file": p.get("ca_file") or None,
        "jwt_secret": p.get("jwt_secret") or "",
        "token_minutes": int(p.get("token_minutes") or 10),
        "login_email": (p.get("login_email") or "").strip(),
        "login_password": p.get("login_password") or "",
        "probe_dev_eui": (p.get("probe_dev_eui") or "").strip().upper() or None,
        "platform_tenant_id": str(p.get("platform_tenant_id") or mapping.PLATFORM_TENANT_ID),
        "timeout": float(10.0 if p.get("timeout") is None else p["timeout"]),
        "checks": [c for c in CHECKS if c in (p.get("checks") or CHECKS)],
    }
    if len(opts["jwt_secret"]) < 32:
        raise ConfigError("jwt_secret must be the V6 deployment's JWT_SECRET_KEY (at least 32 characters)")
    if opts["timeout"] <= 0:
        raise ConfigError("timeout must be positive")
    if "login" in opts["checks"] and not (opts["login_email"] and opts["login_password"]):
        raise ConfigError("login_email and login_password are required for the login check")
    return opts


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def access_token(secret, user_id, tenant_id, email, role, minutes, now=None):
    """An HS256 access token with the claims V6's login issues (sub, tenant_id, email, role, exp,
    iat, type) - what V6's tenant-context dependency verifies and looks up."""
    issued = int(time.time() if now is None else now)
    claims = {"sub": str(user_id), "tenant_id": str(tenant_id), "email": email, "role": role,
              "exp": issued + 60 * int(minutes), "iat": issued, "type": "access"}
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


def exchange(method, path, resp=None, body=None, error=None):
    """Request and response of one HTTP exchange, for a failed check (bodies cut short)."""
    out = {"request": f"{method} {path}"}
    if body is not None:
        out["request_body"] = body if isinstance(body, str) else json.dumps(body, default=str)[:EXCERPT]
    if resp is not None:
        out["status"] = resp.status
        out["response"] = resp.body[:EXCERPT].decode("utf-8", "replace")
    if error is not None:
        out["error"] = str(error)
    return out


def pick_users(rows):
    """One user per tenant: the highest role, then the oldest membership, then the user id."""
    best = {}
    for r in rows:
        key = (-ROLE_RANK.get(r["role"], 0), str(r["created_at"]), str(r["user_id"]))
        if r["tenant_id"] not in best or key < best[r["tenant_id"]][0]:
            best[r["tenant_id"]] = (key, r)
    return [v[1] for _, v in sorted(best.items(), key=lambda kv: kv[1][1]["slug"] or "")]


def compare_ids(entity, got, expected, optional=()):
    """Problems between the ids an API listed and those V6 holds for the tenant."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected) - set(optional))
    out = []
    if missing:
        out.append(f"{entity}: {len(missing)} of {len(expected)} missing (e.g. {', '.join(missing[:3])})")
    if extra:
        out.append(f"{entity}: {len(extra)} not of this tenant (e.g. {', '.join(extra[:3])})")
    return out


def failure_message(result):
    lines = [f"V6 is not ready on {result['api_host']}: {len(result['failed_checks'])} check(s) failed."
             " Nothing moved: V5 still serves every request."]
    for r in result["checks"]:
        if r["passed"]:
            continue
        lines.append(f"- {r['name']}: {r['detail']}")
        for ex in (r.get("facts") or {}).get("exchanges", [])[:4]:
            lines.append(f"    {ex.get('request')} -> {ex.get('status', ex.get('error'))}"
                         + (f": {ex['response'][:200]}" if ex.get("response") else ""))
    return "\n".join(lines)
