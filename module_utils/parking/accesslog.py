"""Reading Traefik's JSON access log (--accesslog.format=json, one object per line).

Shared by the preflight (recent traffic per service) and the cutover's traffic watch (what clients
saw during a time window). Plain Python, stdlib only. Logs can be several GB: iter_window finds
its start by binary search on byte offsets and streams from there, it never loads the file.
"""
import datetime as dt
import json
import os
import re

_FRACTION = re.compile(r"\.(\d+)")
# How far the order of lines may stray from the order of their start times: a line is written
# when its request ends, so a slow request appears after faster ones that started later.
SLACK_S = 120.0
# Unparsable lines tolerated in a row while probing a time at an offset
_PROBE_LINES = 64


def parse_time(value):
    """Traefik's StartUTC / time fields -> aware UTC datetime (None when unparsable)."""
    if not value or not isinstance(value, str):
        return None
    text = value.strip().replace("Z", "+00:00")
    # Go prints 0-9 fractional digits; Python 3.9's fromisoformat takes exactly 3 or 6
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc)


def epoch(value):
    """ISO text, datetime or number -> epoch seconds (float); None when unparsable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).timestamp()
    try:
        return float(value)
    except (TypeError, ValueError):
        when = parse_time(value)
        return when.timestamp() if when else None


def entry_time(entry, first="StartUTC", second="time"):
    """Epoch seconds of an entry: its request's start (StartUTC), else when it was logged (time)."""
    when = parse_time(entry.get(first)) or parse_time(entry.get(second))
    return when.timestamp() if when else None


def strip_provider(name):
    """'website@docker' -> 'website'."""
    return (name or "").split("@", 1)[0]


def read_tail(path, max_bytes):
    """Lines of the last max_bytes of path (the first, partial line dropped); (lines, truncated)."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        truncated = size > max_bytes
        if truncated:
            handle.seek(size - max_bytes)
            handle.readline()
        data = handle.read()
    return data.decode("utf-8", errors="replace").splitlines(), truncated


def _parse(raw, stats):
    stats["parsed"] += 1
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def _line_start(handle, offset):
    """Offset of the first line starting at or after offset."""
    if offset <= 0:
        return 0
    handle.seek(offset - 1)
    handle.readline()
    return handle.tell()


def _time_after(handle, offset, stats):
    """When the first parsable line at or after offset was logged (None at the end of the file)."""
    handle.seek(_line_start(handle, offset))
    for _ in range(_PROBE_LINES):
        raw = handle.readline()
        if not raw:
            return None
        entry = _parse(raw, stats)
        # `time` is when the line was written, the order of the file; StartUTC may be older
        when = entry_time(entry, "time", "StartUTC") if entry else None
        if when is not None:
            return when
    return None


def find_offset(handle, size, when, stats):
    """Byte offset of the first line logged at or after `when`, by binary search on offsets."""
    lo, hi = 0, size
    while lo < hi:
        mid = (lo + hi) // 2
        stats["probes"] += 1
        t = _time_after(handle, mid, stats)
        if t is None or t >= when:
            hi = mid
        else:
            lo = mid + 1
    return _line_start(handle, lo)


def iter_window(path, since, until, max_bytes, stats=None, start=None):
    """Yield the entries (dicts) of the access log whose StartUTC (else `time`) lies in [since, until].

    since/until are epoch seconds. Each yielded entry carries `_t`, that time as epoch seconds.
    Reading starts SLACK_S before `since` (found by binary search) or at byte offset `start` (where
    an earlier read ended: stats['end_offset']) and stops SLACK_S after `until`, at the end of the
    file, or after max_bytes bytes (stats['truncated']). A last line without its newline is being
    written: it is left for the next read. Unparsable lines are skipped and counted.
    stats (a dict, optional) receives: size, start_offset, bytes_read, lines, unparsable, parsed
    (JSON decodes, probes included), probes, truncated, first, last (epoch of the first and last
    entry yielded), log_start (when the log's first line was written, when that is inside the slack
    or later: a log rotated or turned on during the window; else None)."""
    st = {"size": 0, "start_offset": 0, "end_offset": 0, "bytes_read": 0, "lines": 0, "unparsable": 0, "parsed": 0,
          "probes": 0, "truncated": False, "first": None, "last": None, "log_start": None}
    if stats is not None:
        stats.clear()
        stats.update(st)
        st = stats
    with open(path, "rb") as handle:
        st["size"] = size = os.fstat(handle.fileno()).st_size
        if start is None:
            start = find_offset(handle, size, since - SLACK_S, st)
            if start == 0:
                st["log_start"] = _time_after(handle, 0, st)
        st["start_offset"] = st["end_offset"] = start
        handle.seek(start)
        while True:
            raw = handle.readline()
            if not raw.endswith(b"\n"):
                return
            if st["bytes_read"] + len(raw) > max_bytes:
                st["truncated"] = True
                return
            st["bytes_read"] += len(raw)
            st["end_offset"] += len(raw)
            if not raw.strip():
                continue
            st["lines"] += 1
            entry = _parse(raw, st)
            when = entry_time(entry) if entry is not None else None
            if when is None:
                st["unparsable"] += 1
                continue
            if since <= when <= until:
                entry["_t"] = when
                st["first"] = when if st["first"] is None else min(st["first"], when)
                st["last"] = when if st["last"] is None else max(st["last"], when)
                yield entry
            elif when > until + SLACK_S:
                return
