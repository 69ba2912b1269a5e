"""Command line of lab/seed.py: parse, run, print the result, one-line errors."""
import argparse
import datetime as dt
import json
import os
import sys

import psycopg2

from .pg import SeedError
from .runner import Options, run

DEFAULT_INTEGRATION_URL = "http://api:8000/api/v1/uplink"


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="lab/seed.py",
        description="Create and seed the lab databases chirpstack, parking_v5, parking_v6 and "
                    "parking_platform. Idempotent; deterministic for a given seed/scale/anchor.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=55432)
    parser.add_argument("--admin-user", default="parking",
                        help="superuser used to create roles and databases (default: parking)")
    # Passwords: the option, else the environment (keeps them out of the process list).
    parser.add_argument("--admin-password", default=os.environ.get("PARKING_LAB_ADMIN_PASSWORD"),
                        help="superuser password (or env PARKING_LAB_ADMIN_PASSWORD)")
    parser.add_argument("--owner-password", default=os.environ.get("PARKING_LAB_OWNER_PASSWORD"),
                        help="password set for parking_user, the owner of the lab databases "
                             "(or env PARKING_LAB_OWNER_PASSWORD)")
    parser.add_argument("--app-password", default=os.environ.get("PARKING_LAB_APP_PASSWORD"),
                        help="password set for parking_app (V5's RLS role; or env "
                             "PARKING_LAB_APP_PASSWORD); omit to leave it as is")
    parser.add_argument("--scale", type=int, default=1,
                        help="history size: 105 V5 history rows per unit (default 1)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--anchor", type=dt.date.fromisoformat, default=None,
                        help="date all timestamps are relative to, YYYY-MM-DD (default: the anchor "
                             "the lab databases were seeded with, else today UTC)")
    parser.add_argument("--integration-url", default=DEFAULT_INTEGRATION_URL,
                        help="event_endpoint_url of ChirpStack's HTTP integrations")
    parser.add_argument("--reset", action="store_true",
                        help="drop and recreate the four databases first")
    parser.add_argument("--db-suffix", default="",
                        help="append this to every database name (scratch copies for tests)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--secrets-file", default=None,
                        help="JSON file with admin_password, owner_password, app_password (the lab role "
                             "writes one, mode 0600: neither the process list nor a -vvv log shows them)")
    args = parser.parse_args(argv)
    if args.secrets_file:
        with open(args.secrets_file, encoding="utf-8") as handle:
            secrets = json.load(handle)
        for key in ("admin_password", "owner_password", "app_password"):
            if secrets.get(key) and not getattr(args, key):
                setattr(args, key, secrets[key])
    if not args.admin_password or not args.owner_password:
        parser.error("--admin-password and --owner-password (or PARKING_LAB_ADMIN_PASSWORD and "
                     "PARKING_LAB_OWNER_PASSWORD) are required")
    if args.scale < 1:
        parser.error("--scale must be at least 1")
    if args.seed < 0:
        parser.error("--seed must not be negative")
    if args.db_suffix and not args.db_suffix.replace("_", "").isalnum():
        parser.error("--db-suffix may contain only letters, digits and '_'")
    return args


def options_from(args):
    return Options(host=args.host, port=args.port, admin_user=args.admin_user,
                   admin_password=args.admin_password, owner_password=args.owner_password,
                   app_password=args.app_password, seed=args.seed, scale=args.scale,
                   anchor=args.anchor, integration_url=args.integration_url, reset=args.reset,
                   db_suffix=args.db_suffix)


def print_result(result, as_json):
    if as_json:
        print(json.dumps(result, sort_keys=True))
        return
    for dbname, status in result["databases"].items():
        print(f"{dbname}: {status}")
        for table, count in sorted(result.get("counts", {}).get(dbname, {}).items()):
            print(f"    {table}: {count}")
    print(f"changed: {str(result['changed']).lower()} ({result['seconds']} s)")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        result = run(options_from(args))
    except SeedError as exc:
        print(f"seed: error: {exc}", file=sys.stderr)
        return 1
    except psycopg2.Error as exc:
        print(f"seed: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print_result(result, args.json)
    return 0
