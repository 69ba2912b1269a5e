"""Client traffic through Traefik for cutover tests and benchmarks (127.0.0.1 only).

ApiClient: a steady rate of authenticated GETs on the api host (as the lab's ops user). A
401 triggers one login and one retry (V5 and V6 sign tokens with their own keys, so clients
log in again after a switch, as real ones do); a failure is a 5xx, a connection error or a 401
right after logging in. Every request is recorded with its time, status, latency and backend.
"""
import json
import threading
import time

from labutil import traefik


class ApiClient(threading.Thread):
    def __init__(self, rate=20.0, email="ops@verdegris.eu", password="lab-password", path="/api/v1/spaces"):
        super().__init__(daemon=True)
        self.interval = 1.0 / rate
        self.email, self.password, self.path = email, password, path
        self.token = None
        self.records = []  # (t, status, ms, outcome)
        self.reauths = 0
        self._stop = threading.Event()

    def login(self):
        r = traefik("api", "/api/v1/auth/login", "POST", {"email": self.email, "password": self.password}, timeout=10)
        self.token = json.loads(r.data)["access_token"] if r.status == 200 else None
        return r.status

    def one(self):
        t0 = time.time()
        try:
            r = traefik("api", self.path, headers={"Authorization": f"Bearer {self.token}"} if self.token else {})
            status = r.status
            if status == 401:
                self.reauths += 1
                self.login()
                r = traefik("api", self.path, headers={"Authorization": f"Bearer {self.token}"})
                status = r.status
            outcome = "ok" if status == 200 else "failed"
        except Exception as exc:  # connection error, TLS error, timeout
            status, outcome = None, f"failed: {type(exc).__name__}: {exc}"[:200]
        self.records.append((t0, status, (time.time() - t0) * 1000, outcome))

    def run(self):
        self.login()
        nxt = time.time()
        while not self._stop.is_set():
            self.one()
            nxt += self.interval
            time.sleep(max(0.0, nxt - time.time()))

    def stop(self):
        self._stop.set()
        self.join(timeout=15)

    def summary(self, since=None, until=None):
        rec = [r for r in self.records if (since is None or r[0] >= since) and (until is None or r[0] <= until)]
        failed = [r for r in rec if r[3] != "ok"]
        lat = sorted(r[2] for r in rec) or [0]
        return {"requests": len(rec), "failed": len(failed), "reauths": self.reauths,
                "p50_ms": round(lat[len(lat) // 2], 1), "max_ms": round(lat[-1], 1),
                "failures": [r[3] for r in failed][:10]}
