#!/usr/bin/env python3
"""ChirpStack v4 stand-in for the lab (container ``parking-chirpstack``, port 8080).

Reads the per-application HTTP integrations, the enabled devices and the gateways straight
from the ``chirpstack`` database every second, and POSTs ChirpStack-shaped ``up`` events
(``?event=up``, JSON, lowerCamelCase, see shared/reference/chirpstack-v4.md section 5) at a
steady total rate, round-robin over the devices. Like ChirpStack it never waits for the
receiver: every event is handed to a worker pool, 5 s timeout, no retry, over keep-alive connections
shared by the workers (ChirpStack keeps one HTTP client). Every attempt is
recorded as one JSON line.

ChirpStack hands each event to a task of its own (chirpstack-v4.md section 5: ``tokio::spawn``),
so a slow receiver costs an event only when it does not answer 2xx within the 5 s timeout. The
pool is sized for that (SIM_WORKERS = 256 >= the lab's highest rate, 50/s, times 5 s): it refuses
an event ("dispatch pool saturated", recorded as a failed attempt) only when that many are
already in flight - answers slower than ChirpStack would wait for anyway - never earlier.

Environment: CHIRPSTACK_DSN, SIM_RATE (20 uplinks/s), SIM_RUNNING (true), SIM_RECORD_FILE
(/var/lib/simulator/attempts.jsonl), SIM_WORKERS (256), PORT (8080), LOG_LEVEL (INFO),
BIND (0.0.0.0).

HTTP on PORT: ``GET /`` (UI stand-in, the healthcheck target), ``GET /sim/stats``,
``POST /sim/control`` {"rate", "running", "reset_totals"}, ``GET /sim/attempts?since=&limit=``.
"""
import base64
import collections
import datetime as dt
import http.client
import itertools
import json
import logging
import os
import queue
import random
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

try:
    import psycopg2
    import psycopg2.extras
except ImportError:  # pragma: no cover - the pure helpers are unit-tested without it
    psycopg2 = None

LOG = logging.getLogger("simulator")

FCNT_EPOCH = 1735689600      # 2025-01-01T00:00:00Z
FCNT_PER_SECOND = 8          # fCnt budget per device per wall-clock second
FCNT_MAX = 2**31 - 2         # stay below 2^31-1 (V5 stores fCnt in an int4)
HTTP_TIMEOUT = 5.0           # ChirpStack: 5 s per request
RING_SIZE = 100_000
OCCUPANCY_FLIP_PROBABILITY = 0.1
BROWAN_FPORT, KUANDO_FPORT = 102, 15
EU868_FREQUENCIES = (868100000, 868300000, 868500000, 867100000,
                     867300000, 867500000, 867700000, 867900000)
FALLBACK_GATEWAY = {"gateway_id": "0016c001ff000001", "latitude": 0.0, "longitude": 0.0,
                    "altitude": 0.0}

UI_PAGE = (b"<!DOCTYPE html><html><head><title>ChirpStack (lab simulator)</title></head>"
           b"<body><h1>ChirpStack (lab simulator)</h1>"
           b"<p>See <a href=\"/sim/stats\">/sim/stats</a>.</p></body></html>\n")


# --------------------------------------------------------------------------------------------
# Pure helpers (unit-tested)
# --------------------------------------------------------------------------------------------

def fcnt_ceiling(now):
    """Highest fCnt a device may have used by wall-clock time ``now`` (epoch seconds)."""
    return min(int((now - FCNT_EPOCH) * FCNT_PER_SECOND), FCNT_MAX)


def fcnt_base(now):
    """First fCnt for a device first seen at ``now``.

    Any fCnt a previous run used was <= fcnt_ceiling(its send time) <= fcnt_ceiling(now), so a
    base one above the current ceiling is never a reused value, as long as no device is sent
    more than FCNT_PER_SECOND uplinks per second on average (the pacer enforces that).
    """
    return fcnt_ceiling(now) + 1


def format_rfc3339(ns):
    """chrono ``to_rfc3339()``: 0, 3, 6 or 9 fraction digits, ``+00:00`` offset."""
    seconds, nanos = divmod(ns, 1_000_000_000)
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


def event_url(url, event="up"):
    """Append ``event=<type>`` with ``?`` or ``&`` (ChirpStack integration/http.rs)."""
    return "%s%sevent=%s" % (url, "&" if "?" in url else "?", event)


def parse_endpoints(value):
    """``event_endpoint_url`` may hold several URLs separated by commas."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def is_kuando(device):
    return device["dev_eui"].startswith("202020") or "kuando" in device["profile_name"].lower()


def sensor_payload(occupied):
    """One byte, bit 0 = occupied (Browan TBMS100 status byte)."""
    return bytes([0x01 if occupied else 0x00])


def kuando_payload(downlinks_received, rgb=(0, 255, 0)):
    """Kuando busylight status frame as V5 parses it: counter, red, blue, green, options,
    auto-uplink, reserved, reserved."""
    red, green, blue = rgb
    return bytes([downlinks_received & 0xFF, red, blue, green, 0x00, 0x01, 0x00, 0x00])


def merge_tags(*maps):
    merged = {}
    for tags in maps:
        if isinstance(tags, dict):
            merged.update({str(k): str(v) for k, v in tags.items()})
    return merged


def _nonzero(**values):
    return {key: value for key, value in values.items() if value}


def build_up_event(device, gateway, fcnt, payload, fport, time_ns, rng):
    """Build a ChirpStack v4 ``UplinkEvent`` in pbjson form (top-level defaults present,
    unset nested messages omitted, gw-package defaults omitted)."""
    dr = 5
    channel = rng.randrange(len(EU868_FREQUENCIES))
    timestamp = format_rfc3339(time_ns)
    location = _nonzero(latitude=gateway.get("latitude"), longitude=gateway.get("longitude"),
                        altitude=gateway.get("altitude"))
    rx_info = {
        "gatewayId": gateway["gateway_id"].lower(),
        "uplinkId": rng.randrange(1, 2**32),
        "nsTime": timestamp,
        "rssi": rng.randint(-115, -60),
        "snr": round(rng.uniform(-7.5, 11.0), 1),
    }
    rx_info.update(_nonzero(channel=channel))
    rx_info.update({
        "location": location,
        "context": base64.b64encode(rng.getrandbits(32).to_bytes(4, "big")).decode("ascii"),
        "crcStatus": "CRC_OK",
    })
    return {
        "deduplicationId": str(uuid.uuid4()),
        "time": timestamp,
        "deviceInfo": {
            "tenantId": device["tenant_id"],
            "tenantName": device["tenant_name"],
            "applicationId": device["application_id"],
            "applicationName": device["application_name"],
            "deviceProfileId": device["profile_id"],
            "deviceProfileName": device["profile_name"],
            "deviceName": device["name"],
            "devEui": device["dev_eui"].lower(),
            "deviceClassEnabled": "CLASS_%s" % (device.get("enabled_class") or "A").strip().upper(),
            "tags": merge_tags(device.get("application_tags"), device.get("profile_tags"),
                               device.get("device_tags")),
        },
        "devAddr": (device.get("dev_addr") or ("26" + device["dev_eui"][-6:])).lower(),
        "adr": True,
        "dr": dr,
        "fCnt": fcnt,
        "fPort": fport,
        "confirmed": False,
        "data": base64.b64encode(payload).decode("ascii"),
        "rxInfo": [rx_info],
        "txInfo": {
            "frequency": EU868_FREQUENCIES[channel],
            "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 12 - dr,
                                    "codeRate": "CR_4_5"}},
        },
        "regionConfigId": device.get("region_config_id") or "eu868",
    }


def attempt_record(seq, ts, dev_eui, fcnt, deduplication_id, url, status, latency_ms, error):
    return {"seq": seq, "ts": round(ts, 6), "dev_eui": dev_eui.upper(), "fcnt": fcnt,
            "deduplication_id": deduplication_id, "url": url, "status": status,
            "latency_ms": None if latency_ms is None else round(latency_ms, 2), "error": error}


def parse_bool(value, default=False):
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


# --------------------------------------------------------------------------------------------
# ChirpStack database reader
# --------------------------------------------------------------------------------------------

INTEGRATIONS_SQL = """
    SELECT application_id::text AS application_id, configuration
      FROM application_integration WHERE kind = 'Http'
"""

# to_jsonb(row) -> 'col' reads columns that only newer ChirpStack versions have.
DEVICES_SQL = """
    SELECT encode(d.dev_eui, 'hex') AS dev_eui, d.name, d.enabled_class, d.tags AS device_tags,
           encode(d.dev_addr, 'hex') AS dev_addr,
           a.id::text AS application_id, a.name AS application_name,
           COALESCE(to_jsonb(a) -> 'tags', '{}'::jsonb) AS application_tags,
           t.id::text AS tenant_id, t.name AS tenant_name,
           dp.id::text AS profile_id, dp.name AS profile_name, dp.tags AS profile_tags,
           COALESCE(to_jsonb(dp) ->> 'region_config_id', lower(dp.region)) AS region_config_id
      FROM device d
      JOIN application a ON a.id = d.application_id
      JOIN tenant t ON t.id = a.tenant_id
      JOIN device_profile dp ON dp.id = d.device_profile_id
     WHERE NOT d.is_disabled
     ORDER BY d.dev_eui
"""

GATEWAYS_SQL = """
    SELECT DISTINCT ON (tenant_id) tenant_id::text AS tenant_id,
           encode(gateway_id, 'hex') AS gateway_id, latitude, longitude, altitude
      FROM gateway ORDER BY tenant_id, gateway_id
"""


def build_snapshot(integration_rows, device_rows, gateway_rows):
    """Combine the three reads into what the pacer needs: the devices that have a JSON Http
    integration, each with its endpoint URLs, headers and gateway."""
    integrations = {}
    for row in integration_rows:
        config = (row["configuration"] or {}).get("Http") or {}
        urls = parse_endpoints(config.get("event_endpoint_url"))
        if not urls or not parse_bool(config.get("json"), default=True):
            continue  # protobuf encoding is not simulated
        headers = {str(k): str(v) for k, v in (config.get("headers") or {}).items()}
        integrations[row["application_id"]] = (urls, headers)
    gateways = {row["tenant_id"]: dict(row) for row in gateway_rows}
    any_gateway = next(iter(gateways.values()), FALLBACK_GATEWAY)
    devices = []
    for row in device_rows:
        target = integrations.get(row["application_id"])
        if target is None:
            continue
        device = dict(row)
        device["urls"], device["headers"] = target
        # Public gateways: a tenant without a gateway of its own is heard by another one.
        device["gateway"] = gateways.get(row["tenant_id"], any_gateway)
        devices.append(device)
    endpoints = sorted({url for urls, _ in integrations.values() for url in urls})
    return {"devices": devices, "endpoints": endpoints}


class ConfigReader(threading.Thread):
    """Re-reads the chirpstack database every second; keeps the last good snapshot."""

    def __init__(self, dsn, stop_event, interval=1.0):
        super().__init__(name="config-reader", daemon=True)
        self.dsn = dsn
        self.stop_event = stop_event
        self.interval = interval
        self.snapshot = {"devices": [], "endpoints": []}
        self.error = None
        self.loaded = threading.Event()
        self._conn = None

    def read_once(self):
        if self._conn is None or self._conn.closed:
            self._conn = psycopg2.connect(self.dsn, connect_timeout=5,
                                          application_name="chirpstack-lab-simulator")
            self._conn.autocommit = True
        try:
            with self._conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(INTEGRATIONS_SQL)
                integrations = cur.fetchall()
                cur.execute(DEVICES_SQL)
                devices = cur.fetchall()
                cur.execute(GATEWAYS_SQL)
                gateways = cur.fetchall()
        except psycopg2.Error:
            self._conn.close()
            raise
        return build_snapshot(integrations, devices, gateways)

    def run(self):
        while not self.stop_event.is_set():
            try:
                snapshot = self.read_once()
                if snapshot["endpoints"] != self.snapshot["endpoints"]:
                    LOG.info("integration endpoints now %s (%d devices)", snapshot["endpoints"],
                             len(snapshot["devices"]))
                self.snapshot, self.error = snapshot, None
            except Exception as exc:
                if self.error is None:
                    LOG.warning("reading the chirpstack database failed: %s", exc)
                self.error = str(exc).strip()[:200]
            self.loaded.set()
            self.stop_event.wait(self.interval)
        if self._conn is not None:
            self._conn.close()


# --------------------------------------------------------------------------------------------
# Sending, recording, pacing
# --------------------------------------------------------------------------------------------

class ConnectionPool:
    """Idle keep-alive connections per (scheme, host, port), shared by every worker, as the one
    reqwest Client ChirpStack keeps for all HTTP integrations (integration/http.rs: a static
    Client, so hyper's connection pool): a connection is reused when one is idle, a new one is
    opened otherwise; idle ones are dropped after IDLE_TIMEOUT (hyper's default is 90 s)."""

    IDLE_TIMEOUT = 90.0
    MAX_IDLE = 64

    def __init__(self):
        self.lock = threading.Lock()
        self.idle = collections.defaultdict(list)   # key -> [(conn, last used)]

    def get(self, key):
        now = time.monotonic()
        with self.lock:
            stack = self.idle[key]
            while stack:
                conn, used = stack.pop()
                if now - used < self.IDLE_TIMEOUT:
                    return conn, True
                conn.close()
        scheme, host, port = key
        conn_class = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        return conn_class(host, port, timeout=HTTP_TIMEOUT), False

    def discard(self, key):
        """Drop every idle connection to key: one of them was found closed by the server, so the
        others (same server, same moment) are too - hyper notices such closes on its own."""
        with self.lock:
            stack, self.idle[key] = self.idle[key], []
        for conn, _ in stack:
            conn.close()

    def put(self, key, conn):
        with self.lock:
            stack = self.idle[key]
            if len(stack) < self.MAX_IDLE:
                stack.append((conn, time.monotonic()))
                return
        conn.close()


POOL = ConnectionPool()


def post_event(url, headers, body, pool=POOL):
    """One POST, no retry, no redirect, on a pooled keep-alive connection. Returns (status or None,
    error or None). Like hyper, a request that could not even be written on a reused connection
    (the server had closed it while idle) goes once on a new connection; nothing else is retried."""
    parts = urlsplit(url)
    key = (parts.scheme, parts.hostname, parts.port)
    path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    for _ in range(2):
        conn, reused = pool.get(key)
        try:
            conn.request("POST", path, body=body, headers=headers)
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            if reused:
                pool.discard(key)   # the retry opens a new connection
                continue
            return None, "%s: %s" % (type(exc).__name__, exc)
        try:
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            return None, "%s: %s" % (type(exc).__name__, exc)
        if response.will_close:
            conn.close()
        else:
            pool.put(key, conn)
        if 200 <= response.status < 300:
            return response.status, None
        return response.status, "HTTP %d %s" % (response.status, response.reason)
    return None, "ConnectionError: every pooled connection was closed"


class Recorder:
    """Totals, the in-memory ring buffer and the JSON-lines file (one flushed line each)."""

    COUNTERS = ("sent", "ok_2xx", "other_status", "conn_errors", "pool_saturated", "fcnt_throttled")

    def __init__(self, path):
        self.lock = threading.Lock()
        self.ring = collections.deque(maxlen=RING_SIZE)
        self.seq = 0
        self.totals = dict.fromkeys(self.COUNTERS, 0)
        self.file = None
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self.file = open(path, "a", encoding="utf-8")

    def record(self, ts, dev_eui, fcnt, deduplication_id, url, status, latency_ms, error,
               saturated=False):
        with self.lock:
            self.seq += 1
            entry = attempt_record(self.seq, ts, dev_eui, fcnt, deduplication_id, url, status,
                                   latency_ms, error)
            self.ring.append(entry)
            self.totals["sent"] += 1
            if status is None:
                self.totals["conn_errors"] += 1
                if saturated:
                    self.totals["pool_saturated"] += 1
            elif 200 <= status < 300:
                self.totals["ok_2xx"] += 1
            else:
                self.totals["other_status"] += 1
            if self.file is not None:
                self.file.write(json.dumps(entry, separators=(",", ":")) + "\n")
                self.file.flush()
        return entry

    def count(self, counter):
        with self.lock:
            self.totals[counter] += 1

    def reset(self):
        with self.lock:
            self.totals = dict.fromkeys(self.COUNTERS, 0)

    def since(self, since_seq, limit):
        with self.lock:
            if not self.ring:
                return []
            start = max(0, since_seq - self.ring[0]["seq"] + 1)
            return list(itertools.islice(self.ring, start, start + limit))

    def close(self):
        with self.lock:
            if self.file is not None:
                self.file.flush()
                self.file.close()
                self.file = None


class WorkerPool:
    """Fixed threads; ``try_submit`` never blocks and says False when every worker is busy."""

    def __init__(self, size):
        self.size = size
        self.jobs = queue.Queue()
        self.free = threading.Semaphore(size)
        self.busy = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._work, name="sender-%d" % i, daemon=True)
                        for i in range(size)]
        for thread in self.threads:
            thread.start()

    def try_submit(self, func, *args):
        if not self.free.acquire(blocking=False):
            return False
        with self.lock:
            self.busy += 1
        self.jobs.put((func, args))
        return True

    def _work(self):
        while True:
            job = self.jobs.get()
            if job is None:
                return
            func, args = job
            try:
                func(*args)
            except Exception:
                LOG.exception("sender job failed")
            finally:
                with self.lock:
                    self.busy -= 1
                self.free.release()

    def drain(self, timeout):
        deadline = time.monotonic() + timeout
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in self.threads:
            self.jobs.put(None)


class Simulator:
    def __init__(self, reader, recorder, rate, running, workers=256, rng=None):
        self.reader = reader
        self.recorder = recorder
        self.rate = float(rate)
        self.running = running
        self.pool = WorkerPool(workers)
        self.rng = rng or random.Random()
        self.stop_event = reader.stop_event
        self.started_at = dt.datetime.now(dt.timezone.utc).isoformat()
        self.position = 0
        self.fcnt = {}        # dev_eui -> next fCnt
        self.occupied = {}    # dev_eui -> bool
        self.downlinks = {}   # Kuando dev_eui -> status counter
        self.thread = threading.Thread(target=self._pace, name="pacer", daemon=True)

    # ---- control ----------------------------------------------------------------------------

    def stats(self):
        with self.recorder.lock:
            totals = dict(self.recorder.totals)
        snapshot = self.reader.snapshot
        totals.update(rate=self.rate, running=self.running, endpoints=snapshot["endpoints"],
                      devices=len(snapshot["devices"]), started_at=self.started_at,
                      in_flight=self.pool.busy, workers=self.pool.size,
                      last_seq=self.recorder.seq, config_error=self.reader.error)
        return totals

    def control(self, body):
        if "rate" in body:
            rate = body["rate"]
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate < 0:
                raise ValueError("rate must be a number >= 0")
            self.rate = float(rate)
        if "running" in body:
            self.running = parse_bool(body["running"])
        if parse_bool(body.get("reset_totals")):
            self.recorder.reset()
        LOG.info("control: rate=%s running=%s", self.rate, self.running)
        return self.stats()

    # ---- pacing -----------------------------------------------------------------------------

    def _pace(self):
        self.reader.loaded.wait(10)
        next_tick = time.monotonic()
        while not self.stop_event.is_set():
            rate = self.rate
            if not self.running or rate <= 0:
                self.stop_event.wait(0.1)
                next_tick = time.monotonic()
                continue
            now = time.monotonic()
            if next_tick > now:
                self.stop_event.wait(next_tick - now)
                continue
            if now - next_tick > 1.0:  # fell behind (e.g. a stall): do not burst to catch up
                next_tick = now
            next_tick += 1.0 / rate
            self.tick()

    def _next_device(self, devices, now):
        """Round-robin; skip a device whose fCnt would run ahead of the wall-clock budget."""
        ceiling = fcnt_ceiling(now)
        for _ in range(len(devices)):
            device = devices[self.position % len(devices)]
            self.position += 1
            eui = device["dev_eui"]
            if eui not in self.fcnt:
                self.fcnt[eui] = fcnt_base(now)
                self.occupied[eui] = self.rng.random() < 0.5
            if self.fcnt[eui] <= ceiling:
                return device
        return None

    def tick(self):
        devices = self.reader.snapshot["devices"]
        if not devices:
            return
        now = time.time()
        device = self._next_device(devices, now)
        if device is None:
            self.recorder.count("fcnt_throttled")
            return
        eui = device["dev_eui"]
        fcnt = self.fcnt[eui]
        self.fcnt[eui] = fcnt + 1
        if is_kuando(device):
            if self.rng.random() < 0.05:  # now and then the busylight got a downlink
                self.downlinks[eui] = self.downlinks.get(eui, 0) + 1
            payload, fport = kuando_payload(self.downlinks.get(eui, 0)), KUANDO_FPORT
        else:
            if self.rng.random() < OCCUPANCY_FLIP_PROBABILITY:
                self.occupied[eui] = not self.occupied[eui]
            payload, fport = sensor_payload(self.occupied[eui]), BROWAN_FPORT
        event = build_up_event(device, device["gateway"], fcnt, payload, fport, time.time_ns(),
                               self.rng)
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = dict(device["headers"])
        headers["Content-Type"] = "application/json"
        job = (eui, fcnt, event["deduplicationId"], device["urls"], headers, body)
        if not self.pool.try_submit(self._deliver, *job):
            for url in device["urls"]:
                self.recorder.record(time.time(), eui, fcnt, event["deduplicationId"],
                                     event_url(url), None, None,
                                     "client: dispatch pool saturated (%d workers busy)" % self.pool.size,
                                     saturated=True)

    def _deliver(self, eui, fcnt, deduplication_id, urls, headers, body):
        for url in urls:  # several URLs: posted one after the other, each independently
            target = event_url(url)
            sent_at = time.time()
            started = time.monotonic()
            status, error = post_event(target, headers, body)
            self.recorder.record(sent_at, eui, fcnt, deduplication_id, target, status,
                                 (time.monotonic() - started) * 1000, error)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stop_event.set()
        self.thread.join(timeout=2)
        self.pool.drain(timeout=HTTP_TIMEOUT + 1)
        self.recorder.close()


# --------------------------------------------------------------------------------------------
# Control / inspection HTTP server
# --------------------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    server_version = "chirpstack-lab-simulator"
    timeout = 30
    sim = None  # set in main()

    def _send(self, status, body, content_type="application/json"):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self):
        split = urlsplit(self.path)
        if split.path == "/":
            return self._send(200, UI_PAGE, "text/html; charset=utf-8")
        if split.path == "/sim/stats":
            return self._send(200, self.sim.stats())
        if split.path == "/sim/attempts":
            query = parse_qs(split.query)
            try:
                since = int(query.get("since", ["0"])[0])
                limit = min(max(int(query.get("limit", ["1000"])[0]), 0), RING_SIZE)
            except ValueError:
                return self._send(400, {"detail": "since and limit must be integers"})
            return self._send(200, self.sim.recorder.since(since, limit))
        return self._send(404, {"detail": "Not Found"})

    def do_POST(self):
        if urlsplit(self.path).path != "/sim/control":
            return self._send(404, {"detail": "Not Found"})
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}") if 0 <= length <= 65536 else None
            if not isinstance(body, dict):
                raise ValueError("JSON object expected")
            return self._send(200, self.sim.control(body))
        except ValueError as exc:
            return self._send(400, {"detail": str(exc)})

    def log_message(self, fmt, *args):
        LOG.debug("%s - %s", self.address_string(), fmt % args)


def main():
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(), stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    dsn = os.environ.get("CHIRPSTACK_DSN")
    if not dsn:
        LOG.error("CHIRPSTACK_DSN is not set")
        return 2
    stop_event = threading.Event()
    reader = ConfigReader(dsn, stop_event)
    recorder = Recorder(os.environ.get("SIM_RECORD_FILE", "/var/lib/simulator/attempts.jsonl"))
    sim = Simulator(reader, recorder, rate=float(os.environ.get("SIM_RATE", "20")),
                    running=parse_bool(os.environ.get("SIM_RUNNING"), default=True),
                    workers=int(os.environ.get("SIM_WORKERS", "256")))
    Handler.sim = sim
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer((os.environ.get("BIND", "0.0.0.0"), port), Handler)
    server.daemon_threads = True

    def stop(signum, frame):
        LOG.info("signal %d: stopping", signum)
        stop_event.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    reader.start()
    sim.start()
    LOG.info("ChirpStack lab simulator on port %d (rate %s/s, running %s)", port, sim.rate, sim.running)
    server.serve_forever(poll_interval=0.2)
    sim.stop()
    server.server_close()
    LOG.info("stopped: %s", json.dumps(sim.stats()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
