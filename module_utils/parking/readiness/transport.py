"""Phase-2 readiness gate, its plumbing: ``GateBase`` holds the options, the HTTPS transport to
V6's API host (through Traefik, module_utils/parking/smoke.py's Transport), each request with
its exchange kept as evidence, V6's lists read page by page, the one connection to parking_v6
(each query its own transaction), and the results of the checks as they are recorded.

The checks themselves are mixins on top of it (checks.py, probes.py), joined in gate.py.
"""
import json
import time

from ..smoke import CheckFailed, Transport
from .contract import LIST_KEYS, MAX_PAGES, PAGE_SIZES, exchange


class GateBase:
    """Options, HTTP to V6, the parking_v6 connection and the recorded results of one gate run."""

    def __init__(self, opts, db_factory, clock=time.time):
        self.o = opts
        self.http = Transport(opts["domain"], opts["connect_host"], opts["connect_port"], opts["ca_file"],
                              opts["timeout"])
        self.api = opts["api_host"]
        self.db_factory = db_factory
        self.clock = clock
        self.results = []
        self.undo = []                 # (sql, params) run in reverse order at the end
        self.version = None
        self._conn = None

    # ---- plumbing -----------------------------------------------------------------------------

    def call(self, method, path, token=None, body=None, form=None):
        """(response, exchange) of one request; CheckFailed carries the exchange when unreachable."""
        try:
            resp = self.http.request(self.api, method, path, body, token=token, form=form)
        except CheckFailed as exc:
            raise CheckFailed(str(exc), {"exchanges": [exchange(method, path, body=body or form, error=exc)]})
        return resp, exchange(method, path, resp, body=body if form is None else {k: v for k, v in form.items()
                                                                                   if k != "password"})

    def expect(self, resp, ex, statuses, what):
        if resp.status not in statuses:
            raise CheckFailed(f"{what} answered {resp.status}: {resp.detail()}", {"exchanges": [ex]})
        try:
            return json.loads(resp.body)
        except (ValueError, UnicodeDecodeError):
            raise CheckFailed(f"{what} answered {resp.status} with no JSON body", {"exchanges": [ex]}) from None

    def conn(self):
        """One connection to the target for the whole run (closed by ``run``); each query or batch
        of statements is its own transaction, so every read sees what V6 has committed by then."""
        if self._conn is None or self._conn.closed:
            self._conn = self.db_factory()
        return self._conn

    def query(self, sql, params=None):
        conn = self.conn()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                cols = [c.name for c in cur.description]
                rows = [dict(zip(cols, r)) for r in cur.fetchall()]
            conn.commit()
            return rows
        except Exception:
            conn.rollback()
            raise

    def execute(self, statements):
        conn = self.conn()
        try:
            with conn.cursor() as cur:
                for sql, params in statements:
                    cur.execute(sql, params)
            conn.commit()
        except Exception:
            conn.rollback()
            raise

    def record(self, name, fn):
        started = time.monotonic()
        try:
            detail, facts = fn()
            passed = True
        except CheckFailed as exc:
            detail, facts, passed = str(exc), exc.facts or {}, False
        except Exception as exc:      # a bug or a database error must not hide the other checks
            detail, facts, passed = f"{type(exc).__name__}: {exc}", {}, False
        evidence = "; ".join(f"{e.get('request')} -> {e.get('status', e.get('error'))}"
                             + (f": {e['response'][:160]}" if e.get("response") else "")
                             for e in facts.get("exchanges", [])[:3])
        self.results.append({"name": name, "passed": passed, "detail": detail, "evidence": evidence,
                             "ms": round((time.monotonic() - started) * 1000, 1), "facts": facts})

    def skip(self, name, why):
        self.results.append({"name": name, "passed": True, "skipped": True, "detail": why, "evidence": "",
                             "ms": 0, "facts": {}})

    def live_backend(self):
        """Version the public API host answers (V5 before the cutover), or None when unreachable."""
        try:
            resp = self.http.request(self.o["live_host"], "GET", "/health")
            return json.loads(resp.body).get("version") if resp.status == 200 else None
        except (CheckFailed, ValueError, AttributeError):
            return None

    def list_all(self, entity, token, exchanges):
        """Every row of a V6 list, page by page (the real V6 caps page_size)."""
        rows, page, size = [], 1, PAGE_SIZES[entity]
        while page <= MAX_PAGES:
            path = f"/api/v6/{entity}?page={page}&page_size={size}"
            resp, ex = self.call("GET", path, token)
            exchanges.append(ex)
            data = self.expect(resp, ex, (200,), f"GET {path}")
            items = data.get(LIST_KEYS[entity]) if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise CheckFailed(f"GET {path} answered no {LIST_KEYS[entity]!r} list", {"exchanges": [ex]})
            rows += items
            total = data.get("total")
            if not items or len(items) < size or (isinstance(total, int) and len(rows) >= total):
                return rows
            page += 1
        raise CheckFailed(f"GET /api/v6/{entity}: more than {MAX_PAGES} pages")
