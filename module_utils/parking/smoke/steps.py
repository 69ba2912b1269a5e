"""The state of one smoke run and the steps its checks share: log in once, read a backend's lists
page by page, find the probe's device and space, post the probe uplink.

SmokeSteps is the base of SmokeRun (checks.py), which adds the checks and the driver.
Part of the package module_utils/parking/smoke (see its __init__). Plain Python.
"""
import json
import random
import time

from .options import DUAL_DATA, MAX_PAGES, NEEDS_PROBE, ROUTES, fcnt_base, version_prefix
from .payloads import _is_list, build_up_event, jwt_claims, probe_occupancy
from .results import CheckFailed
from .transport import Transport


class SmokeSteps:
    """The state of one run and the steps the checks share (login, lists, the probe uplink)."""

    def __init__(self, opts, db_factory=None, clock=time.time, rng=None):
        self.o = opts
        self.http = Transport(opts["domain"], opts["connect_host"], opts["connect_port"],
                              opts["ca_file"], opts["timeout"])
        self.db_factory = db_factory
        self.clock = clock
        self.rng = rng or random.Random()
        self.prefix = version_prefix(opts["expect_backend"])
        self.api = opts["api_host"]
        self.started_at = clock()
        self.next_fcnt = opts["probe_fcnt_base"]
        if self.next_fcnt is None and set(opts["checks"]) & set(NEEDS_PROBE):
            self.next_fcnt = fcnt_base(self.started_at)
        self.fcnt_base = self.next_fcnt
        self.token = None
        self.session = None
        self.login_error = None
        self.spaces_cache = None
        self.devices_cache = None
        self.routes = ROUTES[opts["expect_backend"]]
        self.api_version = None
        self.probes = []
        self.db_name = None
        self.wrong_backend = None

    # ---- shared steps -----------------------------------------------------------------------

    def login(self):
        """Log in once; later calls reuse the session or re-raise the first failure."""
        if self.session is not None:
            return self.session
        if self.login_error is not None:
            raise CheckFailed(f"needs a login, which failed: {self.login_error}")
        path = self.routes["login"]
        try:
            if self.routes["login_form"]:     # OAuth2 password form: username + password
                resp = self.http.request(self.api, "POST", path, form={
                    "username": self.o["login_email"], "password": self.o["login_password"]})
            else:
                resp = self.http.request(self.api, "POST", path,
                                         {"email": self.o["login_email"], "password": self.o["login_password"]})
            if resp.status != 200:
                raise CheckFailed(f"POST {path} as {self.o['login_email']} answered {resp.status}: {resp.detail()}")
            data = resp.json(f"POST {path}")
            token = data.get("access_token") if isinstance(data, dict) else None
            if not isinstance(token, str) or not token:
                raise CheckFailed(f"POST {path} answered 200 without an access_token")
        except CheckFailed as exc:
            self.login_error = str(exc)
            raise
        self.token = token
        claims = jwt_claims(token)
        user = data.get("user") if isinstance(data.get("user"), dict) else {}   # V6 nests the user
        role = data.get("role") or user.get("role") or claims.get("role")
        self.session = {
            "user_id": str(data.get("user_id") or user.get("id") or claims.get("user_id") or claims.get("sub") or ""),
            "tenant_id": str(data.get("tenant_id") or user.get("tenant_id") or claims.get("tenant_id") or ""),
            "role": role,
            "platform_admin": bool(data.get("is_platform_admin") or user.get("is_platform_admin")
                                   or claims.get("is_platform_admin") or role == "platform_admin"),
            "token_type": data.get("token_type"),
            "expires_in": data.get("expires_in"),
            "ms": resp.ms,
        }
        return self.session

    def get_list(self, what, query=""):
        """Every row of one of the backend's lists (``what``: devices, spaces, reservations), page by
        page where the backend pages (V6 caps page_size)."""
        session = self.login()
        base, key, size = self.routes[what]
        rows, page = [], 1
        while page <= MAX_PAGES:
            params = [query] if query else []
            if size:
                params += [f"page={page}", f"page_size={size}"]
            path = base + ("?" + "&".join(params) if params else "")
            resp = self.http.request(self.api, "GET", path, token=self.token)
            if resp.status != 200:
                raise CheckFailed(f"GET {path} answered {resp.status}: {resp.detail()}")
            body = resp.json(f"GET {path}")
            items = body.get(key) if key and isinstance(body, dict) else body
            if not _is_list(items):
                raise CheckFailed(f"GET {path} did not answer a JSON list" + (f" under {key!r}" if key else ""))
            rows += items
            total = body.get("total") if isinstance(body, dict) else None
            if not size or not items or len(items) < size or (isinstance(total, int) and len(rows) >= total):
                return session, rows
            page += 1
        raise CheckFailed(f"GET {base}: more than {MAX_PAGES} pages")

    def spaces(self):
        if self.spaces_cache is None:
            self.spaces_cache = self.get_list("spaces")[1]
        return self.spaces_cache

    def probe_device(self):
        if self.devices_cache is None:
            self.devices_cache = self.get_list("devices")[1]
        hits = [r for r in self.devices_cache if isinstance(r, dict)
                and str(r.get("dev_eui") or "").upper() == self.o["probe_dev_eui"]]
        return hits[0] if hits else None

    def probe_space(self):
        """The space the probe sensor sits on (from the login's spaces), or None. V5 spaces name
        their sensor's EUI; V6 spaces do not, so its devices list gives the probe's space id."""
        try:
            rows = self.spaces()
            device = self.probe_device() if self.o["expect_backend"] == "v6" else None
        except CheckFailed:
            return None
        for row in rows:
            if not isinstance(row, dict):
                continue
            if device is not None and str(row.get("id")) == str(device.get("space_id") or ""):
                return row
            if str(row.get("sensor_eui") or "").upper() == self.o["probe_dev_eui"]:
                return row
        return None

    def probe_occupied(self):
        return probe_occupancy(self.probe_space())

    def send_uplink(self):
        """POST one probe ``up`` event to the API host as ChirpStack's HTTP integration does."""
        fcnt = self.next_fcnt
        self.next_fcnt += 1
        occupied = self.probe_occupied()
        event = build_up_event(self.o["probe_dev_eui"], fcnt, occupied, rng=self.rng)
        if self.o["expect_backend"] == "v6":
            event["data"] = DUAL_DATA[bool(occupied)]
        resp = self.http.request(self.api, "POST", "/api/v1/uplink?event=up", event)
        probe = {"fcnt": fcnt, "deduplication_id": event["deduplicationId"], "occupied": occupied,
                 "http_status": resp.status}
        self.probes.append(probe)
        if not 200 <= resp.status < 300:
            raise CheckFailed(f"POST /api/v1/uplink?event=up (fCnt {fcnt}) answered {resp.status}: "
                              f"{resp.detail()}", {"probe": probe})
        try:
            body = json.loads(resp.body)
        except (ValueError, UnicodeDecodeError):
            body = {}
        body = body if isinstance(body, dict) else {}
        kind, status = body.get("device_kind"), body.get("status")
        probe.update(api_status=status, device_kind=kind, ms=round(resp.ms, 1))
        if status == "orphan" or kind == "orphan":
            raise CheckFailed(f"the API does not know {self.o['probe_dev_eui']}: the uplink was stored "
                              "as an orphan device", {"probe": probe})
        if status == "duplicate" or body.get("duplicate") is True:
            raise CheckFailed(f"the API dropped the probe uplink as a duplicate of fCnt {fcnt} "
                              "(set probe_fcnt_base higher)", {"probe": probe})
        if kind is not None and kind != "sensor":
            raise CheckFailed(f"the API handled {self.o['probe_dev_eui']} as a {kind}, not a sensor",
                              {"probe": probe})
        return event, probe, body
