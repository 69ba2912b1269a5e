"""Phase 3 traffic watch: what clients saw through Traefik while routing moved from V5 to V6.

Reads Traefik's JSON access log over the phase and a baseline window just before it, counts what
failed (status 499, >= 500), gates on "no more failures than the baseline's share", and draws
the timeline as a hand-written SVG for the report. Plain Python, stdlib only.
"""
import collections
import datetime as dt
import http.client
import json
import math
import os
import re
import socket
import tempfile
import time
from xml.sax.saxutils import escape

from .accesslog import entry_time, epoch, iter_window

Record = collections.namedtuple("Record", "t kind status ms backend retries")
DEFAULTS = {"until": None, "baseline_seconds": 300.0, "hosts": [], "uplink_paths": ["/api/v1/uplink"],
            "backends": {"v6": "v6", "v5": ""}, "bucket": 1.0, "max_bytes": 512 * 1024 * 1024, "svg_path": None,
            "title": "Phase 3 - cutover - what clients saw", "weights": [], "events": [], "traefik_started_at": None,
            "traefik_container": None, "docker_socket": "/var/run/docker.sock", "fail": True, "chart": False}
HINTS = {499: "clients gave up waiting",
         502: "backend refused or reset the connection", 503: "no healthy backend server",
         504: "backend did not answer in time"}
_PORT = re.compile(r":\d+$")


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=5.0):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def container_started_at(name, docker_socket="/var/run/docker.sock"):
    """State.StartedAt of a container, from the Docker Engine API on its unix socket (one GET, no
    extra module run in the play). Raises ValueError with what to check."""
    conn = _UnixHTTPConnection(docker_socket)
    try:
        conn.request("GET", f"/containers/{name}/json")
        resp = conn.getresponse()
        body = resp.read()
    except OSError as exc:
        raise ValueError(f"cannot ask Docker ({docker_socket}) when {name} started: {exc}")
    finally:
        conn.close()
    if resp.status != 200:
        raise ValueError(f"Docker has no container {name} ({resp.status}): set the Traefik container's name")
    return json.loads(body)["State"]["StartedAt"]


def failed(status):
    """499 (the client gave up) and 5xx. Status 0 is no failure: Traefik logs it for a connection
    it handed over (a websocket upgrade, e.g. V6's /ws, closed later), never for a failed forward
    (that is a 502/504)."""
    return status == 499 or status >= 500


def _hostset(hosts):
    return frozenset(h.strip().lower().rstrip(".") for h in hosts or ())


def classify(entry, hosts, uplink_paths, backends):
    """An access-log entry -> Record(t, kind, status, ms, backend, retries); None when its RequestHost
    (port stripped, lower case) is not one of hosts (empty hosts = every host) or it has no time."""
    if not isinstance(hosts, frozenset):
        hosts = _hostset(hosts)
    host = _PORT.sub("", str(entry.get("RequestHost") or "").lower()).rstrip(".")
    if hosts and host not in hosts:
        return None
    t = entry.get("_t") or entry_time(entry)
    if t is None:
        return None
    path = str(entry.get("RequestPath") or "")
    kind = "uplink" if any(path.startswith(p) for p in uplink_paths or ()) else "api"
    service = str(entry.get("ServiceName") or "")
    backend = next((name for name, sub in (backends or {}).items() if (sub or "") in service), "other")
    return Record(float(t), kind, _int(entry.get("DownstreamStatus")), _int(entry.get("Duration")) / 1e6, backend,
                  _int(entry.get("RetryAttempts")))


def _int(value):
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def percentile(values, p):
    """Nearest-rank percentile of values (sorted or not); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(1, math.ceil(p / 100.0 * len(ordered))) - 1], 3)


def summarize(records, since, until, bucket=1.0):
    """{'totals': {...}, 'timeline': [one row per bucket from since to until, empty ones included]}."""
    n = max(1, math.ceil((until - since) / bucket - 1e-9))
    rows = [{"t": round(i * bucket, 3), "requests": 0, "failed": 0, "uplinks": 0, "uplinks_failed": 0,
             "p99_ms": None, "max_ms": None, "v5": 0, "v6": 0} for i in range(n)]
    per_bucket = [[] for _ in range(n)]
    totals = {"seconds": round(until - since, 3), "requests": 0, "failed": 0, "uplinks": 0, "uplinks_failed": 0,
              "retries": 0, "backends": {}, "statuses": {}}
    for r in records:
        if not since <= r.t <= until:
            continue
        i = min(int((r.t - since) // bucket), n - 1)
        row, bad = rows[i], failed(r.status)
        per_bucket[i].append(r.ms)
        for target in (row, totals):
            target["requests"] += 1
            target["failed"] += bad
            target["uplinks"] += r.kind == "uplink"
            target["uplinks_failed"] += bad and r.kind == "uplink"
        row[r.backend] = row.get(r.backend, 0) + 1
        totals["backends"][r.backend] = totals["backends"].get(r.backend, 0) + 1
        totals["retries"] += r.retries
        if bad:
            totals["statuses"][str(r.status)] = totals["statuses"].get(str(r.status), 0) + 1
    for row, values in zip(rows, per_bucket):
        if values:
            row["p99_ms"], row["max_ms"] = percentile(values, 99), round(max(values), 3)
    every = [ms for values in per_bucket for ms in values]
    totals.update(p50_ms=percentile(every, 50), p99_ms=percentile(every, 99),
                  max_ms=round(max(every), 3) if every else None,
                  statuses=dict(sorted(totals["statuses"].items(), key=lambda kv: (-kv[1], kv[0]))))
    return {"totals": totals, "timeline": rows}


def _share(failed_, requests):
    return f"{failed_} of {requests} requests" + (f" ({100.0 * failed_ / requests:.2f}%)" if requests else "")


def gate(baseline, phase, access_log=None):
    """Allowed failures = floor(baseline failure share x phase requests); passed when none beyond."""
    b_req = (baseline or {}).get("requests", 0)
    b_failed = (baseline or {}).get("failed", 0)
    allowed = b_failed * phase["requests"] // b_req if b_req else 0
    excess = max(0, phase["failed"] - allowed)
    seen = (f"{_share(phase['failed'], phase['requests'])} failed during the phase, "
            f"{phase['uplinks_failed']} of {phase['uplinks']} uplinks among them")
    before = f" ({baseline['seconds']:g} s before the phase)" if baseline and "seconds" in baseline else ""
    if b_req:
        base = f"the baseline{before} had {_share(b_failed, b_req)} failed, which allows {allowed}"
    else:
        base = f"there is no baseline (no requests{before or ' before the phase'}), so none may fail"
    statuses = ", ".join(f"{s} x{n} ({HINTS.get(int(s), 'backend answered an error')})"
                         for s, n in list(phase.get("statuses", {}).items())[:4])
    where = f"the access log {access_log}" if access_log else "Traefik's access log"
    if not phase["failed"]:
        message = f"no request failed during the phase ({phase['requests']} requests, {phase['uplinks']} uplinks)"
    elif not excess:
        message = f"{seen}; {base}: within the baseline. Statuses: {statuses}"
    else:
        message = (f"the migration added failures: {seen}; {base}, so {excess} too many. Statuses: {statuses}. "
                   f"Look at {where} (DownstreamStatus, ServiceName tells V5 from V6) and at the logs of the "
                   f"backend those requests went to")
    return {"passed": not excess, "allowed": allowed, "excess": excess, "message": message}


def _iso(t):
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _marks(items, key, since, what):
    out = []
    for item in items or ():
        t = epoch((item or {}).get("t"))
        if t is None or key not in item:
            raise ValueError(f"each of {what} needs a time t (epoch or ISO) and {key}: {item!r}")
        out.append({"t": round(t - since, 3), key: int(item[key]) if key == "weight" else str(item[key])})
    return sorted(out, key=lambda m: m["t"])


class Watcher:
    """What clients saw from `since` on against the baseline window just before, read incrementally:
    each poll reads only what the access log gained since the previous one (complete lines), so a
    gate run at every cutover step costs the new lines, not the baseline again. See DEFAULTS for
    the options; raises ValueError on invalid ones. A log rotated or truncated between polls is
    read again from the new file's window."""

    def __init__(self, options):
        o = dict(DEFAULTS, **{k: v for k, v in options.items() if v is not None})
        self.o, self.path = o, o.get("access_log")
        self.since = epoch(o.get("since"))
        self.until = epoch(o["until"]) if o["until"] is not None else None
        if self.since is None or (o["until"] is not None and self.until is None):
            raise ValueError(f"since ({o.get('since')!r}) and until ({o['until']!r}) must be epoch seconds or "
                             f"ISO 8601 times")
        if self.until is not None and self.until <= self.since:
            raise ValueError(f"the window ends ({_iso(self.until)}) before it starts ({_iso(self.since)}): check "
                             f"since and until")
        if float(o["bucket"]) <= 0 or float(o["baseline_seconds"]) < 0 or int(o["max_bytes"]) <= 0:
            raise ValueError("bucket and max_bytes must be greater than 0, baseline_seconds at least 0")
        self.bucket, self.base_s = float(o["bucket"]), float(o["baseline_seconds"])
        self.hosts, self.baseline, self.phase, self.examples = _hostset(o["hosts"]), [], [], []
        self.offset, self.identity = None, None
        self.read = {"size": 0, "start_offset": 0, "bytes_read": 0, "lines": 0, "unparsable": 0, "truncated": False,
                     "log_start": None, "polls": 0}

    def _consume(self, until):
        """Classify what the log gained since the last poll."""
        info = os.stat(self.path)
        identity = (info.st_dev, info.st_ino)
        if self.offset is not None and (identity != self.identity or info.st_size < self.offset):
            self.offset = None                         # rotated or truncated: the new file's window
        budget = int(self.o["max_bytes"]) - self.read["bytes_read"]
        if budget <= 0:
            self.read["truncated"] = True
            return
        stats = {}
        read_until = until if self.until is not None else math.inf
        for entry in iter_window(self.path, self.since - self.base_s, read_until, budget, stats, start=self.offset):
            r = classify(entry, self.hosts, self.o["uplink_paths"], self.o["backends"])
            if r is None:
                continue
            (self.baseline if r.t < self.since else self.phase).append(r)
            if r.t >= self.since and failed(r.status) and len(self.examples) < 5:
                path = str(entry.get("RequestPath") or "").split("?", 1)[0]  # a query may hold a token
                self.examples.append({"time": entry.get("StartUTC") or entry.get("time"),
                                      "host": entry.get("RequestHost"), "path": path, "status": r.status,
                                      "service": entry.get("ServiceName"), "ms": round(r.ms, 3)})
        if self.offset is None:
            self.read["start_offset"] = stats["start_offset"]
            if stats["log_start"] is not None:
                self.read["log_start"] = stats["log_start"]
        self.offset, self.identity = stats["end_offset"], identity
        self.read["size"] = stats["size"]
        for key in ("bytes_read", "lines", "unparsable"):
            self.read[key] += stats[key]
        self.read["truncated"] = self.read["truncated"] or stats["truncated"]

    def poll(self, now=None, weights=None, events=None):
        """The result (see the module's RETURN) for the window from since to until (default: now);
        weights/events (for the chart) replace the options' when given."""
        o, since, base_s = self.o, self.since, self.base_s
        until = self.until if self.until is not None else (now if now is not None else time.time())
        if until <= since:
            raise ValueError(f"the window ends ({_iso(until)}) before it starts ({_iso(since)}): check since and until")
        weights = _marks(o["weights"] if weights is None else weights, "weight", since, "weights")
        events = _marks(o["events"] if events is None else events, "label", since, "events")
        started_at = o["traefik_started_at"]
        if started_at is None and o["traefik_container"]:
            started_at = container_started_at(o["traefik_container"], o["docker_socket"])
        started = epoch(started_at)
        restarted = started is not None and since < started <= until
        result = {"access_log": self.path, "known": False, "passed": False, "failed": False,
                  "window": {"since": _iso(since), "until": _iso(until), "seconds": round(until - since, 3)},
                  "baseline": None, "phase": None, "gate": None, "timeline": [], "statuses": {}, "examples": [],
                  "svg": None, "svg_document": None, "traefik_restarted": restarted, "read": None}
        if not self.path or not os.path.isfile(self.path):
            result["msg"] = (f"cannot see what clients saw: no access log at {self.path or '(not configured)'}; set "
                             f"parking_traefik_access_log and turn on Traefik's JSON access log")
            result["failed"] = bool(o["fail"])
            return result
        self._consume(until)
        self.read["polls"] += 1
        summary = summarize(self.phase, since, until, self.bucket)
        totals = summary["totals"]
        base = summarize(self.baseline, since - base_s, since, base_s)["totals"] if base_s else None
        verdict = gate(base, totals, self.path)
        reasons = []
        if restarted:
            reasons.append(f"Traefik restarted during the phase (at {_iso(started)}): requests refused while it was "
                           f"down never reached the access log, so the log cannot show everything clients saw")
        if self.read["truncated"]:
            reasons.append(f"only {self.read['bytes_read']} bytes of the window were read (max_bytes): raise "
                           f"max_bytes or shorten the window")
        if reasons:
            verdict.update(passed=False, message="; ".join(reasons + [verdict["message"]]))
        late = self.read["log_start"] if (self.read["log_start"] or 0) > since - base_s else None
        if late:
            # no request logged before then: a quiet service, or a log rotated or turned on late
            verdict["message"] += (f" (the access log starts at {_iso(late)}, after the "
                                   f"{'phase' if late > since else 'baseline'} started: nothing before that was "
                                   f"seen; an older log file may hold the rest)")
        read = {k: self.read[k] for k in ("size", "start_offset", "bytes_read", "lines", "unparsable", "truncated",
                                          "polls")}
        result.update(known=True, passed=verdict["passed"], gate=verdict, baseline=base, phase=totals,
                      timeline=summary["timeline"], statuses=dict(list(totals["statuses"].items())[:10]),
                      examples=list(self.examples), msg=verdict["message"], read=dict(read, log_start=late and _iso(late)))
        result["failed"] = bool(o["fail"]) and not verdict["passed"]
        if o["svg_path"] or o["chart"]:
            span = f"{_iso(since)[:10]} {_iso(since)[11:19]}-{_iso(until)[11:19]} UTC"
            title = (f"{o['title']}, {span}: {totals['requests']} requests, {totals['failed']} failed, "
                     f"{totals['uplinks']} uplinks ({'passed' if verdict['passed'] else 'FAILED'})")
            document = render_svg(summary["timeline"], weights, events, title, bucket=self.bucket)
            result["svg"] = write_atomic(o["svg_path"], document) if o["svg_path"] else None
            result["svg_document"] = document if o["chart"] else None
        return result


def watch(options, now=None):
    """One look at what clients saw from `since` to `until` (epoch; until defaults to now) against
    the baseline window just before (Watcher, one poll). Raises ValueError on invalid options."""
    return Watcher(options).poll(now)


def write_atomic(path, text, mode=0o644):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".svg")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


# --------------------------------------------------------------------------- SVG

COLOURS = {"v5": "#4e79a7", "v6": "#59a14f", "failed": "#e15759", "p99": "#f28e2b", "max": "#555555",
           "answered": "#76b7b2", "weight": "#8e44ad", "grid": "#e4e4e4", "event": "#333333"}


def _ticks(vmax, n=4):
    """(axis top, ticks) with a 1-2-5 step."""
    if not vmax or vmax <= 0:
        return 1.0, [0.0, 0.5, 1.0]
    raw = vmax / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    top = step * math.ceil(vmax / step - 1e-9)
    return top, [i * step for i in range(int(round(top / step)) + 1)]


def _num(v):
    if v >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.3g}"


def _clock(t, span):
    return f"{int(t) // 60}:{int(t) % 60:02d}" if span > 180 else _num(t)


def _runs(values):
    """[(first index, end index, value)] of consecutive equal values."""
    runs = []
    for i, v in enumerate(values):
        if runs and runs[-1][2] == v:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1, v])
    return runs


def _text(x, y, s, size=11, anchor="start", weight="normal", fill="#222"):
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" '
            f'fill="{fill}">{escape(str(s))}</text>')


def render_svg(timeline, weights, events, title, width=960, bucket=None):
    """Four stacked panels sharing the x axis (seconds since the phase started): requests/s per backend
    with failures, p99/max latency, uplinks answered/failed per second, V6's weight %. weights and
    events are [{'t': seconds since the phase started, 'weight'|'label': ...}]."""
    rows = list(timeline) or [{"t": 0.0}]
    if bucket is None:
        bucket = rows[1]["t"] - rows[0]["t"] if len(rows) > 1 else 1.0
    span = len(rows) * bucket
    left, right, ph, gap = 64, 16, 110, 44
    pw = width - left - right
    top0 = 84
    height = top0 + 4 * (ph + gap) + 20

    def x(t):
        return left + pw * min(max(t, 0.0), span) / span

    def col(key, rate=True):
        return [(r.get(key) or 0) / (bucket if rate else 1.0) for r in rows]

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif">',
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
           _text(width / 2, 22, title, 14, "middle", "bold")]
    # x ticks on clock-friendly steps, about eight of them
    step = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600) if span / s <= 10), 7200)
    xticks = [i * step for i in range(int(span // step) + 1)]

    def panel(k, name, vmax, legend, fixed=None):
        y0 = top0 + k * (ph + gap)
        top, ticks = fixed or _ticks(vmax)
        out.append(f'<g class="panel" id="panel-{k + 1}">')
        out.append(_text(left, y0 - 8, name, 12, weight="bold"))
        lx = left + pw
        for colour, label, style in reversed(legend):
            lx -= 7 * len(label) + 8
            out.append(_text(lx, y0 - 8, label, 11))
            lx -= 16
            if style == "line":
                out.append(f'<line x1="{lx:.1f}" y1="{y0 - 12:.1f}" x2="{lx + 12:.1f}" y2="{y0 - 12:.1f}" '
                           f'stroke="{colour}" stroke-width="2"/>')
            else:
                out.append(f'<rect x="{lx:.1f}" y="{y0 - 17:.1f}" width="12" height="10" fill="{colour}"/>')
            lx -= 10
        for v in ticks:
            yy = y0 + ph - ph * v / top
            out.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{left + pw}" y2="{yy:.1f}" stroke="{COLOURS["grid"]}"/>')
            out.append(_text(left - 6, yy + 4, _num(v), 10, "end"))
        for t in xticks:
            out.append(f'<line x1="{x(t):.1f}" y1="{y0}" x2="{x(t):.1f}" y2="{y0 + ph}" stroke="{COLOURS["grid"]}"/>')
        out.append(f'<rect x="{left}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#999999"/>')
        return lambda v: y0 + ph - ph * min(max(v, 0.0), top) / top

    def area(y, lower, upper, colour, opacity=1.0):
        pts = [(x(a * bucket), y(v)) for a, b, v in _runs(upper) for a in (a, b)]
        pts += [(x(b * bucket), y(v)) for a, b, v in reversed(_runs(lower)) for b in (b, a)]
        d = " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
        out.append(f'<polygon points="{d}" fill="{colour}" fill-opacity="{opacity}" stroke="none"/>')

    # (1) requests/s by backend, failed in red
    v5, v6, bad = col("v5"), col("v6"), col("failed")
    stacked = [a + b for a, b in zip(v5, v6)]
    y = panel(0, "Requests/s", max(col("requests") + [0]),
              [(COLOURS["v5"], "V5", "box"), (COLOURS["v6"], "V6", "box"), (COLOURS["failed"], "failed", "box")])
    zero = [0.0] * len(rows)
    area(y, zero, v5, COLOURS["v5"])
    area(y, v5, stacked, COLOURS["v6"])
    area(y, zero, bad, COLOURS["failed"], 0.9)
    out.append("</g>")
    # (2) latency
    p99, mx = [r.get("p99_ms") for r in rows], [r.get("max_ms") for r in rows]
    y = panel(1, "Latency (ms)", max([v for v in mx if v is not None] + [0]),
              [(COLOURS["p99"], "p99", "line"), (COLOURS["max"], "max", "line")])
    for values, colour in ((mx, COLOURS["max"]), (p99, COLOURS["p99"])):
        segment = []
        for i, v in enumerate(values + [None]):
            if v is not None:
                segment.append(f"{x((i + 0.5) * bucket):.1f},{y(v):.1f}")
            elif segment:
                if len(segment) == 1:
                    segment.append(segment[0])
                out.append(f'<polyline points="{" ".join(segment)}" fill="none" stroke="{colour}" '
                           f'stroke-width="1.5" stroke-linecap="round"/>')
                segment = []
    out.append("</g>")
    # (3) uplinks
    answered = [a - b for a, b in zip(col("uplinks"), col("uplinks_failed"))]
    y = panel(2, "Uplinks/s", max(col("uplinks") + [0]),
              [(COLOURS["answered"], "answered", "box"), (COLOURS["failed"], "failed/lost", "box")])
    area(y, zero, answered, COLOURS["answered"])
    area(y, answered, col("uplinks"), COLOURS["failed"])
    out.append("</g>")
    # (4) V6's weight, a step function: each point holds until the next
    y = panel(3, "V6 weight %", 100, [(COLOURS["weight"], "V6 share", "line")], (100, [0, 25, 50, 75, 100]))
    marks = sorted(weights or [], key=lambda w: w["t"])
    before = [w for w in marks if w["t"] <= 0]
    steps = ([{"t": 0.0, "weight": before[-1]["weight"]}] if before else []) + [w for w in marks if 0 < w["t"] < span]
    if steps:
        pts = []
        for i, w in enumerate(steps):
            end = steps[i + 1]["t"] if i + 1 < len(steps) else span
            pts += [(x(w["t"]), y(w["weight"])), (x(end), y(w["weight"]))]
        out.append(f'<polyline points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in pts)}" fill="none" '
                   f'stroke="{COLOURS["weight"]}" stroke-width="2"/>')
    out.append("</g>")
    bottom = top0 + 3 * (ph + gap) + ph
    for t in xticks:
        out.append(_text(x(t), bottom + 14, _clock(t, span), 10, "middle"))
    out.append(_text(left + pw / 2, bottom + 30, ("minutes:seconds" if span > 180 else "seconds")
                     + " since the phase started", 11, "middle"))
    # events: dashed lines across every panel, labels staggered on three rows above the first panel
    shown = [e for e in sorted(events or [], key=lambda e: e["t"]) if 0 <= e["t"] <= span]
    for i, e in enumerate(shown):
        ex = x(e["t"])
        label = str(e["label"])
        label = label if len(label) <= 28 else label[:27] + "…"
        out.append(f'<line class="event" x1="{ex:.1f}" y1="{38 + 12 * (i % 3) + 2:.1f}" x2="{ex:.1f}" y2="{bottom}" '
                   f'stroke="{COLOURS["event"]}" stroke-width="1" stroke-dasharray="4 3"/>')
        anchor = "end" if ex > left + pw * 0.8 else "start"
        out.append(_text(ex + (-3 if anchor == "end" else 3), 38 + 12 * (i % 3), label, 10, anchor))
    out.append("</svg>")
    return "\n".join(out) + "\n"
