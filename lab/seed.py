#!/usr/bin/env python3
"""Seed the lab's PostgreSQL databases (chirpstack, parking_v5, parking_v6, parking_platform).

    python lab/seed.py --host 127.0.0.1 --port 55432 --admin-user parking \
        --admin-password X --owner-password Y --app-password Z \
        [--scale 1] [--seed 42] [--anchor 2026-11-26] \
        [--integration-url http://api:8000/api/v1/uplink] [--reset] [--json]

The code lives in the package lab/seed/ (this script's directory comes first on sys.path, and a
package directory wins over a module of the same name). See lab/SCHEMA_CHOICES.md.
"""
import sys

from seed.cli import main

if __name__ == "__main__":
    sys.exit(main())
