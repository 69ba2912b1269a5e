"""What the smoke checks send and how they read what comes back: the probe's ChirpStack v4 ``up``
event (build_up_event) and its occupancy, the claims of a login's JWT, the fields of a websocket
update, other tenants' rows in a list, and the verdict on one host rule's answer.

Part of the package module_utils/parking/smoke (see its __init__). Plain Python.
"""
import base64
import datetime as dt
import json
import random
import time
import uuid

from .options import PROBE_APPLICATION_ID, PROBE_FPORT, PROBE_GATEWAY, PROBE_PROFILE, PROBE_PROFILE_ID, PROBE_TENANT_ID
from .results import _short


def format_rfc3339(ns):
    """chrono ``to_rfc3339()``: 0, 3, 6 or 9 fraction digits, ``+00:00`` offset (ChirpStack v4)."""
    seconds, nanos = divmod(int(ns), 1_000_000_000)
    base = dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos == 0:
        fraction = ""
    elif nanos % 1_000_000 == 0:
        fraction = ".%03d" % (nanos // 1_000_000)
    elif nanos % 1_000 == 0:
        fraction = ".%06d" % (nanos // 1_000)
    else:
        fraction = ".%09d" % nanos
    return base + fraction + "+00:00"


def build_up_event(dev_eui, fcnt, occupied, time_ns=None, deduplication_id=None, rng=None):
    """A ChirpStack v4 ``UplinkEvent`` as the HTTP integration posts it (pbjson: lowerCamelCase,
    top-level defaults present, unset nested messages omitted, lowercase hex ids, base64 ``data``,
    ``+00:00`` times; shared/reference/chirpstack-v4.md section 5). ``data`` is one Browan
    occupancy byte (bit 0 = occupied)."""
    rng = rng or random.Random()
    time_ns = time.time_ns() if time_ns is None else time_ns
    stamp = format_rfc3339(time_ns)
    eui = dev_eui.strip().lower()
    channel = 3
    return {
        "deduplicationId": deduplication_id or str(uuid.uuid4()),
        "time": stamp,
        "deviceInfo": {
            "tenantId": PROBE_TENANT_ID,
            "tenantName": "parking-smoke",
            "applicationId": PROBE_APPLICATION_ID,
            "applicationName": "parking",
            "deviceProfileId": PROBE_PROFILE_ID,
            "deviceProfileName": PROBE_PROFILE,
            "deviceName": "smoke-probe-" + eui[-6:],
            "devEui": eui,
            "deviceClassEnabled": "CLASS_A",
            "tags": {"source": "parking-smoke"},
        },
        "devAddr": ("26" + eui[-6:]).lower(),
        "adr": True,
        "dr": 5,
        "fCnt": int(fcnt),
        "fPort": PROBE_FPORT,
        "confirmed": False,
        "data": base64.b64encode(bytes([0x01 if occupied else 0x00])).decode("ascii"),
        "rxInfo": [{
            "gatewayId": PROBE_GATEWAY,
            "uplinkId": rng.randrange(1, 2**32),
            "nsTime": stamp,
            "rssi": rng.randint(-110, -70),
            "snr": round(rng.uniform(-5.0, 10.0), 1),
            "channel": channel,
            "context": base64.b64encode(rng.getrandbits(32).to_bytes(4, "big")).decode("ascii"),
            "crcStatus": "CRC_OK",
        }],
        "txInfo": {
            "frequency": 867100000,
            "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 7, "codeRate": "CR_4_5"}},
        },
        "regionConfigId": "eu868",
    }


def probe_occupancy(space):
    """Occupancy the probe reports: what its space shows, so the probe changes no live state.

    V6 spaces carry the sensor's own ``sensor_state``; otherwise the space state is used
    (V5 ``state``, V6 ``current_state``): OCCUPIED -> occupied, FREE/unknown -> free, and
    MAINTENANCE -> occupied, which V5's state machine refuses (MAINTENANCE -> OCCUPIED is not a
    valid transition), so a space in maintenance stays in maintenance. A V5 RESERVED space does
    change (both FREE and OCCUPIED are valid transitions): prefer a probe on a free or occupied space.
    """
    if not isinstance(space, dict):
        return False
    sensor = str(space.get("sensor_state") or "").lower()
    if sensor in ("occupied", "free"):
        return sensor == "occupied"
    state = str(space.get("state") or space.get("current_state") or "").lower()
    return state in ("occupied", "maintenance")


def jwt_claims(token):
    """The claims of a JWT, unverified (the server verifies; we only read tenant and role)."""
    try:
        part = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError, TypeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def evaluate_host_rule(rule, status, headers, body, expected_prefix):
    """Does one GET answer match its (normalised) rule? Returns (passed, detail).
    ``headers``: dict with lower-case names; ``expected_prefix``: version prefix of the backend."""
    problems = []
    if status not in rule["status"]:
        want = rule["status"][0] if len(rule["status"]) == 1 else rule["status"]
        problems.append(f"status {status}, expected {want}")
    ctype = headers.get("content-type", "")
    if rule.get("content_type") and rule["content_type"].lower() not in ctype.lower():
        problems.append(f"content type {ctype or 'none'!r}, expected {rule['content_type']!r}")
    if rule.get("auth"):
        challenge = headers.get("www-authenticate", "")
        if not challenge.lower().startswith(rule["auth"]):
            problems.append(f"WWW-Authenticate {challenge or 'missing'!r}, expected {rule['auth'].title()}")
    if rule.get("version_prefix"):
        prefix = expected_prefix if rule["version_prefix"] == "expected" else rule["version_prefix"]
        try:
            version = json.loads(body).get("version")
        except (ValueError, AttributeError, UnicodeDecodeError):
            version = None
        if not isinstance(version, str):
            problems.append(f"no JSON version in {_short(body, 80)!r}")
        elif not version.startswith(prefix):
            problems.append(f"version {version}, expected {prefix}x")
    if rule.get("body_contains") and rule["body_contains"].encode() not in (body or b""):
        problems.append(f"body lacks {rule['body_contains']!r}")
    if problems:
        return False, "; ".join(problems)
    return True, f"{status}" + (f" {ctype.split(';')[0]}" if ctype else "")


def _is_list(value):
    return isinstance(value, list)


def ws_payload(message):
    """The space fields of a websocket update: V6 nests them under ``data``, V5-style flat."""
    data = message.get("data") if isinstance(message, dict) else None
    return data if isinstance(data, dict) else (message if isinstance(message, dict) else {})


def _tenant_leaks(rows, tenant_id):
    return sorted({str(r.get("tenant_id")) for r in rows
                   if isinstance(r, dict) and r.get("tenant_id") is not None
                   and str(r.get("tenant_id")) != str(tenant_id)})
