"""Phase-2 readiness gate, the run: ``Gate`` joins the plumbing (transport.py), the read-only checks
(checks.py) and the probes (probes.py) and runs the checks asked for in their order; ``run`` is
what library/parking_v6_readiness.py calls (options checked, connection closed, secrets scrubbed).
"""
import time

from ..smoke import CheckFailed, scrub
from .checks import ReadChecks
from .contract import normalise_options
from .probes import WriteProbes
from .transport import GateBase


class Gate(ReadChecks, WriteProbes, GateBase):
    """One readiness gate run: the checks asked for, in order; probes undone before retention."""

    # ---- run ------------------------------------------------------------------------------------

    def run(self):
        checks = self.o["checks"]
        if "health" in checks:
            self.record("health", self.check_health)
        if "login" in checks:
            self.record("login", self.check_login)
        users = self.tenant_users()
        if "tenants" in checks:
            if not users:
                self.record("tenants", lambda: (_ for _ in ()).throw(
                    CheckFailed("no active tenant has an active user in parking_v6")))
            for user in users:
                self.record(f"tenant:{user['slug']}", lambda u=user: self.check_tenant(u))
        live = self.live_backend() if self.o["live_host"] else None
        writes = [c for c in ("occupancy", "reservation") if c in checks]
        if str(live or "").startswith("6."):
            for name in writes:   # probes would race live uplinks and bookings: read-only from here on
                self.skip(name, f"V6 already serves {self.http.vhost(self.o['live_host'])} ({live}): "
                                "no probe writes on the live system")
            writes = []
        try:
            if "occupancy" in writes:
                self.record("occupancy", lambda: self.check_occupancy(users))
            if "reservation" in writes:
                self.record("reservation", lambda: self.check_reservation(users))
        finally:
            self.put_back()
        if "retention" in checks:
            self.record("retention", self.check_retention)
        failed = [r["name"] for r in self.results if not r["passed"]]
        return {"passed": not failed, "checks": self.results, "failed_checks": failed,
                "api_host": self.http.vhost(self.api), "api_version": self.version}


def run(params, db_factory, clock=time.time):
    opts = normalise_options(params)
    gate = Gate(opts, db_factory, clock)
    try:
        result = gate.run()
    finally:
        if gate._conn is not None:
            gate._conn.close()
    return scrub(result, [opts["jwt_secret"], opts["login_password"]])
