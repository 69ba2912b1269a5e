"""Phase-3 smoke checks: the live platform, through Traefik, as its users and ChirpStack see it.

PRIVATE to parking-migrate; the engine of library/parking_smoke.py. Plain Python: standard
library only. The database confirmation of the webhook check uses a psycopg2 connection that the
caller's factory opens (module_utils/parking/connection.py); nothing here imports Ansible.

Every request opens its own TLS connection to ``connect_host:connect_port`` (default: the
virtual host itself, port 443) with SNI and ``Host`` = ``<host>.<domain>``; the certificate is
verified against ``ca_file`` (or the system CAs) for that name. Checks:

* ``health``      ``GET /health`` on the API host: 200, JSON, ``version`` of the expected backend.
Each backend is checked with its own contract (``ROUTES``: V5's ``/api/v1`` routes, the real
V6's ``/api/auth`` and paged ``/api/v6`` routes, docs/v6-contract.md).

* ``login``       the login route gives a bearer token (tenant, role from it); an
                  unauthenticated spaces list is refused (401).
* ``devices``     the devices list: the probe sensor in it, no other tenant's row.
* ``spaces``      the spaces list: non-empty, the probe on one of them, no other tenant's row.
* ``reservation`` create a one-minute reservation on one of those spaces in a window far in the
                  future (never the same twice), see it listed, cancel it; with a target
                  database, then delete it (no smoke reservation stays in the data).
* ``websocket``   V6 only: RFC 6455 client on ``/ws?token=``, ``connected`` -> subscribe
                  ``spaces`` -> ``subscribed``; then a probe uplink must come back as a
                  ``space:update`` naming the probe EUI and fCnt, for the login's tenant.
* ``webhook``     a ChirpStack v4 ``up`` event for the probe on ``POST /api/v1/uplink?event=up``
                  is accepted and processed; with a target database, the reading is polled for
                  there (device, tenant, occupancy, V6: the event's deduplicationId).
* ``host_rules``  one GET per host with its expectation (status, content type, version, auth).

Results never contain the login password or the access token (``scrub``).

The package, by concern (each module says more in its own docstring):

* ``options``    constants (CHECKS, BACKENDS, ROUTES, probe and reservation schemes), option
                 parsing and validation, the time-derived probe fCnt and reservation windows.
* ``results``    CheckFailed, one check's result, the run's summary and failure message, ``scrub``.
* ``payloads``   the probe's ChirpStack event, JWT claims, websocket update fields, tenant leaks,
                 one host rule's verdict.
* ``transport``  HTTPS to ``connect_host:connect_port`` with SNI/Host = ``<host>.<domain>``.
* ``websocket``  RFC 6455 framing, handshake and the WebSocketClient.
* ``steps``      the state of a run and the steps the checks share (login, lists, probe uplink).
* ``checks``     the checks, the driver (SmokeRun) and ``run``.

This module re-exports the names the modules, the other module_utils and the tests use, so
``from ansible.module_utils.parking import smoke`` then ``smoke.run`` etc. work as before.
"""
from .options import (BACKENDS, CHECKS, DEFAULT_CHECKS, DUAL_DATA, FCNT_EPOCH, FCNT_MAX, FCNT_PER_SECOND,
                      PROBES_PER_RUN, REDACTED, RESERVATION_SLOTS, WRITE_CHECKS, default_database,
                      default_host_rules, fcnt_base, normalise_host_rule, normalise_options, reservation_window,
                      validate_host)
from .results import CheckFailed, check_result, failure_message, scrub, summarise
from .payloads import build_up_event, evaluate_host_rule, format_rfc3339, jwt_claims, probe_occupancy
from .transport import Response, Transport
from .websocket import (OP_BINARY, OP_CLOSE, OP_PING, OP_TEXT, WebSocketClient, WebSocketError, apply_mask,
                        decode_frame, encode_frame, handshake_request, parse_handshake_response, ws_accept, ws_key)
from .checks import SmokeRun, run

__all__ = [
    # options
    "BACKENDS", "CHECKS", "DEFAULT_CHECKS", "DUAL_DATA", "FCNT_EPOCH", "FCNT_MAX", "FCNT_PER_SECOND",
    "PROBES_PER_RUN", "REDACTED", "RESERVATION_SLOTS", "WRITE_CHECKS", "default_database", "default_host_rules",
    "fcnt_base", "normalise_host_rule", "normalise_options", "reservation_window", "validate_host",
    # results
    "CheckFailed", "check_result", "failure_message", "scrub", "summarise",
    # payloads
    "build_up_event", "evaluate_host_rule", "format_rfc3339", "jwt_claims", "probe_occupancy",
    # transport
    "Response", "Transport",
    # websocket
    "OP_BINARY", "OP_CLOSE", "OP_PING", "OP_TEXT", "WebSocketClient", "WebSocketError", "apply_mask",
    "decode_frame", "encode_frame", "handshake_request", "parse_handshake_response", "ws_accept", "ws_key",
    # checks
    "SmokeRun", "run",
]
