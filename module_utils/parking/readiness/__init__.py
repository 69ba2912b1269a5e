"""Phase-2 readiness gate: the deployed V6, through its own host, on the data phase 1 migrated.

PRIVATE to parking-migrate; the engine of library/parking_v6_readiness.py. It speaks only the
real V6 contract (docs/v6-contract.md) and reads ``parking_v6`` as its owner to know what V6
must show. Checks, each collected (the gate lists every failure with request and response):

* ``health``       ``GET /health`` answers 200, version 6.x, healthy.
* ``login``        ``POST /api/auth/login`` (OAuth2 form) with the smoke account gives a token that
                   ``GET /api/auth/me`` accepts; ``GET /api/v6/spaces`` without a token is 401.
* ``tenant:<slug>`` for every active tenant with an active user: a token for one of its migrated
                   users (signed with the deployment's JWT key: operators do not know users'
                   passwords), accepted by ``/api/auth/me`` for that tenant; then devices, spaces,
                   sites and reservations listed page by page and compared by id with
                   ``parking_v6`` (nothing missing, nothing of another tenant).
* ``occupancy``    an uplink for a migrated sensor on a space flips that space's ``current_state``
                   in ``parking_v6`` (2xx, no orphan); the websocket of the space's tenant receives
                   the update. Then everything the probe wrote is undone.
* ``reservation``  a reservation created on a space of a tenant, listed, cancelled, then deleted.
* ``retention``    V6's start-up cleanup deleted none of the readings phase 1 migrated.

Nothing it writes stays: probe readings, orphan rows, space states, device ``last_seen_at`` and
the reservation are put back or deleted in ``parking_v6`` (``undo``), also when a check fails.

By concern (this package re-exports every name the module and the unit tests use):

  contract.py   check names, V6's limits, the probe's payload, options, tokens, id comparison,
                the failure message (pure)
  transport.py  GateBase: HTTP requests and their evidence, paging, the parking_v6 connection,
                results
  checks.py     ReadChecks: health, login, every tenant's lists, retention
  probes.py     WriteProbes: occupancy and reservation probes, their undo, ``clean``
  gate.py       Gate (the three joined) and ``run``
"""
from .checks import ReadChecks
from .contract import (CHECKS, DELETE_PROBE_READINGS, EXCERPT, LIST_KEYS, MAX_PAGES, PAGE_SIZES, POLL_INTERVAL,
                       PROBE_DATA, PROBE_TAG, ROLE_RANK, access_token, b64url, compare_ids, exchange,
                       failure_message, normalise_options, pick_users)
from .gate import Gate, run
from .probes import WriteProbes, clean
from .transport import GateBase

__all__ = [
    "CHECKS", "DELETE_PROBE_READINGS", "EXCERPT", "LIST_KEYS", "MAX_PAGES", "PAGE_SIZES", "POLL_INTERVAL",
    "PROBE_DATA", "PROBE_TAG", "ROLE_RANK", "access_token", "b64url", "compare_ids", "exchange",
    "failure_message", "normalise_options", "pick_users",
    "Gate", "GateBase", "ReadChecks", "WriteProbes", "clean", "run",
]
