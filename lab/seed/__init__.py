"""Deterministic seed-data generator for the lab's four PostgreSQL databases.

Entry point: ``python lab/seed.py --help``. Modules:

* ``cli``       command line, JSON result, one-line errors
* ``runner``    per-database orchestration (state check, create, one transaction, ledger)
* ``pg``        connections, SQL files, INSERT and streaming COPY helpers
* ``world``     deterministic ids, clock and password hashes shared by all databases
* ``fleet``     the V5 estate (tenants, sites, spaces, devices) every database refers to by key
* ``v5``, ``v6``, ``chirpstack``, ``platform``   the rows of each database
* ``history``   bulk V5 history (sensor_readings, state_changes) streamed with COPY
* ``edge_cases`` the list of seeded edge cases (written to parking_v5.lab_meta.edge_cases)
"""
