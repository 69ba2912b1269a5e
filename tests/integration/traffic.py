"""Client traffic through Traefik for cutover tests and benchmarks (127.0.0.1 only).

ApiClient: a steady rate of authenticated GETs of the tenant's spaces on the api host (as the
lab's ops user), in the contract of the backend that serves it (V5: JSON login on
/api/v1/auth/login, /api/v1/spaces; V6: form login on /api/auth/login, /api/v6/spaces - see
docs/v6-contract.md). A 401 or 404 triggers one new login, which finds the backend (V5 and V6
sign tokens with their own keys and have their own routes, so clients log in again after a
switch, as real ones reload), and one retry; a failure is a 5xx, a connection error, or a 401/404
right after logging in. Every request is recorded with its time, status, latency and backend.
"""
import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time

from labdb import NICE, ROOT
from labutil import STATE_DIR, traefik, wait_for


class ApiClient(threading.Thread):
    CONTRACTS = (  # (login path, form login?, spaces path), V6 first: the cutover's destination
        ("/api/auth/login", True, "/api/v6/spaces"),
        ("/api/v1/auth/login", False, "/api/v1/spaces"),
    )

    def __init__(self, rate=20.0, email="ops@verdegris.eu", password="lab-password"):
        super().__init__(daemon=True)
        self.interval = 1.0 / rate
        self.email, self.password = email, password
        self.path = self.CONTRACTS[-1][2]
        self.token = None
        self.records = []  # (t, status, ms, outcome)
        self.reauths = 0
        self.cookies = {}  # kept and sent back, as a browser does (Traefik's sticky cookie)
        self._halt = threading.Event()

    def _headers(self):
        h = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return h

    def _keep_cookies(self, r):
        for value in r.headers.getlist("Set-Cookie") if hasattr(r.headers, "getlist") else []:
            name, _, rest = value.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]

    def login(self):
        """Log in with the contract of whichever backend answers (a 404 means the other one)."""
        cookie = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        status = None
        for path, form, spaces in self.CONTRACTS:
            if form:
                r = traefik("api", path, "POST", form={"username": self.email, "password": self.password},
                            timeout=10, headers=cookie)
            else:
                r = traefik("api", path, "POST", {"email": self.email, "password": self.password}, timeout=10,
                            headers=cookie)
            self._keep_cookies(r)
            status = r.status
            if status != 404:
                self.token = json.loads(r.data)["access_token"] if status == 200 else None
                self.path = spaces
                return status
        self.token = None
        return status

    def one(self):
        t0 = time.time()
        try:
            r = traefik("api", self.path, headers=self._headers())
            self._keep_cookies(r)
            status = r.status
            if status in (401, 404):
                self.reauths += 1
                self.login()
                r = traefik("api", self.path, headers=self._headers())
                self._keep_cookies(r)
                status = r.status
            outcome = "ok" if status == 200 else f"failed: HTTP {status}: {r.data[:120]!r}"
        except Exception as exc:  # connection error, TLS error, timeout
            status, outcome = None, f"failed: {type(exc).__name__}: {exc}"[:200]
        self.records.append((t0, status, (time.time() - t0) * 1000, outcome))

    def run(self):
        self.login()
        nxt = time.time()
        while not self._halt.is_set():
            self.one()
            nxt += self.interval
            time.sleep(max(0.0, nxt - time.time()))

    def stop(self):
        self._halt.set()
        self.join(timeout=15)

    def summary(self, since=None, until=None):
        rec = [r for r in self.records if (since is None or r[0] >= since) and (until is None or r[0] <= until)]
        failed = [r for r in rec if r[3] != "ok"]
        lat = sorted(r[2] for r in rec) or [0]
        return {"requests": len(rec), "failed": len(failed), "reauths": self.reauths,
                "p50_ms": round(lat[len(lat) // 2], 1), "max_ms": round(lat[-1], 1),
                "failures": [r[3] for r in failed][:10]}


ROUTING = os.path.join(STATE_DIR, "traefik", "dynamic", "cutover-routing.yml")
# the task phase 3 starts its final delta and gate with (roles/cutover/tasks/deploy.yml)
FINAL_GATE_TASK = "Catch up what V5 wrote during the switch"


def backend():
    """Version prefix of whoever answers the api host now ('5' or '6'), None on error."""
    try:
        r = traefik("api", "/health", timeout=3)
        return json.loads(r.data)["version"][0] if r.status == 200 else None
    except Exception:
        return None


def v6_weight():
    if not os.path.exists(ROUTING):
        return None
    found = re.search(r"# v6_weight: (\d+)", open(ROUTING).read())
    return int(found.group(1)) if found else None


ACCESS_LOG = os.path.join(STATE_DIR, "traefik", "logs", "access.log")


def v6_left_behind(t_fault, t_end, hosts=("api.", "parking-")):
    """Seconds from t_fault until requests on the cutover hosts stopped touching V6, from Traefik's
    access log: the start of the last request after t_fault that V6 served or that needed a retry
    (it was sent to V6 first). 0.0 when none did. Also returns that request count."""
    from parking.accesslog import iter_window
    last, touched = None, 0
    for e in iter_window(ACCESS_LOG, t_fault, t_end, 512 * 1024 * 1024):
        if not str(e.get("RequestHost", "")).startswith(hosts):
            continue
        if "v6" in str(e.get("ServiceName", "")) or int(e.get("RetryAttempts") or 0) > 0:
            touched += 1
            last = e["_t"] if last is None else max(last, e["_t"])
    return (0.0 if last is None else round(last - t_fault, 2)), touched


def edge_trouble(t0, t1, hosts=("api.", "parking-"), slow_s=2.0):
    """What Traefik's access log says about the cutover hosts in [t0, t1], for a failed case's
    figures (CI shows only them): requests that failed (status >= 500 or 499: the client gave up)
    or took over slow_s, counted by service and status, with the start of the first and last."""
    from parking.accesslog import iter_window
    from parking.traffic import failed
    out = {}
    for e in iter_window(ACCESS_LOG, t0, t1, 512 * 1024 * 1024):
        if not str(e.get("RequestHost", "")).startswith(hosts):
            continue
        status = int(e.get("DownstreamStatus") or 0)
        took = float(e.get("Duration") or 0) / 1e9
        if not failed(status) and took < slow_s:
            continue
        key = f"{e.get('ServiceName') or e.get('RouterName') or '?'} {status} retries={e.get('RetryAttempts') or 0}"
        row = out.setdefault(key, {"n": 0, "first": round(e["_t"] - t0, 1), "max_s": 0.0})
        row["n"] += 1
        row["last"] = round(e["_t"] - t0, 1)
        row["max_s"] = max(row["max_s"], round(took, 2))
    return out


def window(client, t0, t1):
    """The API client's figures between t0 and t1: requests, failed, p99 and worst latency (ms)."""
    rec = [r for r in client.records if t0 <= r[0] <= t1]
    lat = sorted(r[2] for r in rec) or [0.0]
    return {"requests": len(rec), "failed": sum(r[3] != "ok" for r in rec),
            "p99_ms": round(lat[max(0, -(-len(lat) * 99 // 100) - 1)], 1), "max_ms": round(lat[-1], 1),
            "failures": [r[3] for r in rec if r[3] != "ok"][:5]}


def beyond_baseline(baseline_failed, baseline_n, failed, n):
    """Failures beyond what the baseline's failure share predicts for n requests (>= 0)."""
    allowed = (baseline_failed * n) // baseline_n if baseline_n else 0
    return max(0, failed - allowed)


class Play:
    """ansible-playbook in the background; its output is read as it comes, so a test can act when
    the play reaches a task (`reached(text)`). Every play started is in `Play.started` until a
    test's clean-up has seen it end (`stop_all`): a test that fails while its play still runs
    must not leave that play to act in the next test."""

    started = []

    def __init__(self, *args):
        env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
        env["PATH"] = os.path.join(ROOT, ".venv", "bin") + os.pathsep + env.get("PATH", "")
        self.t0 = time.time()
        self.proc = subprocess.Popen([*NICE, "ansible-playbook", *args], cwd=ROOT, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        Play.started.append(self)
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def out(self):
        return "".join(self.lines)

    def reached(self, text):
        return any(text in line for line in self.lines)

    def running(self):
        return self.proc.poll() is None

    def wait(self, timeout=1500):
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return self.proc.returncode

    def until(self, predicate, timeout=900, interval=0.05):
        """labutil.wait_for(predicate) while the play runs. The play ending first, or the time-out,
        fails with the play's output so far (a slow machine shows which task took the time)."""
        met = []  # the predicate is checked once per poll (a step can pass between two checks)
        try:
            wait_for(lambda: met.append(bool(predicate())) or met[-1] or not self.running(),
                     timeout=timeout, interval=interval)
        except AssertionError:
            raise AssertionError(f"condition not met within {timeout} s, the play still runs:\n"
                                 + self.out[-4000:]) from None
        if not met[-1]:
            raise AssertionError(f"the play ended (rc {self.proc.returncode}) before the condition:\n"
                                 + self.out[-4000:])
        return True

    def stop(self):
        """Terminate the play and everything it started (its own session); True if it was running."""
        if not self.running():
            return False
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=30)
                break
            except subprocess.TimeoutExpired:
                continue
        return True

    @classmethod
    def stop_all(cls):
        """Stop every play still running; return how many had to be stopped."""
        stopped = sum(play.stop() for play in cls.started)
        cls.started.clear()
        return stopped


def container_healthy(name, timeout=90):
    """Start the container if it is not running and wait until Docker calls it healthy."""
    state = lambda: subprocess.run(["docker", "inspect", "-f", "{{.State.Running}} {{.State.Health.Status}}", name],
                                   capture_output=True, text=True).stdout.split()
    if state()[:1] != ["true"]:
        subprocess.run(["docker", "start", name], check=True, capture_output=True)
    deadline = time.time() + timeout
    while state()[1:] != ["healthy"]:
        if time.time() > deadline:
            raise AssertionError(f"{name} not healthy after {timeout} s: {state()}")
        time.sleep(0.5)


def all_healthy():
    """Undo what a cutover case may have done to the containers (V6's health fault, a kill, a
    restart) and wait until V5, V6 and Traefik report healthy."""
    subprocess.run(["docker", "exec", "parking-api-v6", "rm", "-f", "/tmp/parking-lab-unhealthy"],
                   capture_output=True)
    for name in ("parking-api", "parking-api-v6", "parking-traefik"):
        container_healthy(name)
