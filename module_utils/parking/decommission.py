"""Phase 4 and rollback-4: what each ``state`` of library/parking_decommission.py checks and
records in the V6 ledger (the decommission's state machine), and the facts every run returns.

Plain Python, no Ansible. ``run`` opens the connections and owns the one ledger transaction
(rolled back in check mode or on any error); ``apply_state`` is the state machine and
``report`` the facts. Both reach the ledger only through ``records`` (module backup.py unless a
test passes a fake) and fingerprint a database only through ``fingerprint``, so every transition
and every refusal is unit-tested without a database (tests/unit/test_decommission_unit.py).

States (``p["state"]``), each refusing with BackupMismatch or ParkingError before it records:
  info                    nothing checked or recorded
  backup_verified         live: a restored copy equal to the live database -> the file is recorded
                          recorded: a restored copy equal to the fingerprint recorded for the file
  unchanged_since_backup  every database still present equals its newest verified backup
  done                    every database has a verified backup -> decommission ``done``
  restored                every restored database equals the backup the decommission used
                          -> ``rolled_back``
"""
import os

from . import backup, preflight
from .connection import connect
from .errors import ParkingError


def fingerprint_of(server, db):
    """backup.fingerprint of database db on the server (a read-only, repeatable-read session)."""
    conn = connect(dict(server, db=db), f"database {db}")
    try:
        conn.set_session(readonly=True, isolation_level="REPEATABLE READ")
        with conn.cursor() as cur:
            return backup.fingerprint(cur)
    finally:
        conn.close()


def server_databases(server, databases):
    """Which databases exist, asked of the server with the O(server) login (a login that fails raises)."""
    conn = connect(server, "server", autocommit=True)
    try:
        with conn.cursor() as cur:
            return backup.existing_databases(cur, databases)
    finally:
        conn.close()


def backup_space(cur, present, backup_dir, factor):
    """Is there room for the dumps? Free space of the filesystem that will hold backup_dir,
    measured here on the target (tmpfs included), against factor x the databases still present."""
    sizes = {}
    for db in sorted(db for db, there in present.items() if there):
        cur.execute("SELECT pg_database_size(%s)", (db,))
        sizes[db] = cur.fetchone()[0]
    try:
        space = preflight.disk_space(backup_dir)
    except OSError:
        space = None
    check, needed, free = preflight.check_disk(backup_dir, [], sizes, factor, space)
    return {"dir": backup_dir, "ok": check["ok"], "detail": check["detail"], "needed_bytes": needed,
            "free_bytes": free, "mount": (space or {}).get("mount")}


def public(backups):
    """Recorded backups without their per-table checksums (what the module returns)."""
    return {db: {k: v for k, v in rec.items() if k != "table_checksums"} for db, rec in backups.items()}


def apply_state(cur, p, present, fingerprint=fingerprint_of, records=backup):
    """Check, then record, what p["state"] asks (the module's parameters).

    present: which databases exist as the O(server) login sees them, None without O(server).
    fingerprint(server, db): a database's fingerprint; records: backup.py's ledger functions.
    Returns (changed, verified, present): verified is the restored copy's totals for
    backup_verified (else None); present is what the result reports as ``databases``
    (unchanged_since_backup re-reads it through the ledger's own login).
    Raises BackupMismatch or ParkingError for a refusal, before anything is recorded."""
    verified = None
    changed = False
    state = p["state"]
    if state == "backup_verified" and p["backup"]["compare_with"] == "recorded":
        b = p["backup"]
        sha = backup.sha256_file(b["path"])
        rec = records.recorded_backup(cur, sha)
        if not rec or rec["db"] != b["db"]:
            raise backup.BackupMismatch(f"{b['path']} (sha256 {sha}) is not a verified backup of {b['db']} "
                                        "recorded in the V6 ledger", [])
        restored = fingerprint(p["server"], b["restored_db"])
        backup.require_equal(rec["table_checksums"], restored, f"the copy of {b['db']} restored from {b['path']}",
                             "recorded", "restored", "The backup file does not restore to what was verified.")
        verified = dict(backup.summary(restored), db=b["db"], sha256=sha, size_bytes=os.path.getsize(b["path"]))
    elif state == "backup_verified":
        b = p["backup"]
        live = fingerprint(p["server"], b["db"])
        restored = fingerprint(p["server"], b["restored_db"])
        backup.require_equal(live, restored, f"the copy of {b['db']} restored from {b['path']}",
                             "live", "restored",
                             "The backup is not faithful (or the database was written during the dump): "
                             "nothing was recorded or removed; stop the writers and run phase 4 again.")
        sha = backup.sha256_file(b["path"])
        size = os.path.getsize(b["path"])
        changed = records.record_backup(cur, b["db"], b["path"], sha, size, live, p["retention_days"])
        verified = dict(backup.summary(live), db=b["db"], sha256=sha, size_bytes=size)
    elif state == "unchanged_since_backup":
        recorded = records.latest_backups(cur, p["databases"])
        present = records.existing_databases(cur, p["databases"])
        for db in p["databases"]:
            if not present[db]:
                continue
            if db not in recorded:
                raise backup.BackupMismatch(f"{db} has no verified backup in the ledger: run phase 4 "
                                            "from the start (it backs up before it removes anything)", [])
            backup.require_equal(recorded[db]["table_checksums"], fingerprint(p["server"], db),
                                 f"{db} changed since its backup {recorded[db]['path']}", "backup", "live",
                                 "Something still writes to it: nothing was dropped. Find the writer "
                                 "(pg_stat_activity), stop it and run phase 4 again for a new backup.")
    elif state == "done":
        recorded = records.latest_backups(cur, p["databases"])
        missing = [db for db in p["databases"] if db not in recorded]
        if missing:
            raise backup.BackupMismatch(f"no verified backup of {', '.join(missing)} in the ledger: "
                                        "refusing to record the decommission", [])
        changed = records.set_state(cur, "done", p["databases"], [recorded[db]["id"] for db in p["databases"]],
                                   p["containers"], p["containers_file"])
    elif state == "restored":
        current = records.latest_state(cur)
        if not current:
            raise ParkingError("no decommission recorded in the V6 ledger: there is nothing to restore")
        used = records.backups_by_id(cur, current["backup_ids"])
        for db in current["databases"]:
            backup.require_equal(used[db]["table_checksums"], fingerprint(p["server"], db),
                                 f"{db} as restored from {used[db]['path']}", "backup", "restored",
                                 "The restore is incomplete: V5 was not started; restore the file again.")
        changed = records.set_state(cur, "rolled_back", current["databases"], current["backup_ids"],
                                   current["containers"], current["containers_file"])
    return changed, verified, present


def report(cur, p, present, records=backup):
    """What every run returns: the latest decommission state and record, which databases exist
    (present when the server was asked, else through the ledger's login), whether phase 3
    switched routing, the newest verified backups and those the latest decommission used."""
    record = records.latest_state(cur)
    return dict(
        status=record["status"] if record else "none",
        record=record or {},
        databases=present if present is not None else records.existing_databases(cur, p["databases"]),
        cutover_switched=records.cutover_switched(cur),
        backups=public(records.latest_backups(cur, p["databases"])),
        used_backups=public(records.backups_by_id(cur, record["backup_ids"])) if record else {},
    )


def run(p, check_mode, records=backup):
    """Returns (changed, result); writes to the ledger in one transaction, rolled back in check mode.

    With p["backup_dir"], result also holds backup_space and server_version_num (the server's
    version, for the caller's pg_dump comparison)."""
    conn = connect(p["target"], "target")
    try:
        with conn.cursor() as cur:
            # state=info needs no superuser; a given one is used, so a login that fails is an error
            present = server_databases(p["server"], p["databases"]) if p["server"] else None
            changed, verified, present = apply_state(cur, p, present, fingerprint_of, records)
            result = {"verified": verified}
            if p["backup_dir"] is not None:
                result["backup_space"] = backup_space(
                    cur, present if present is not None else records.existing_databases(cur, p["databases"]),
                    p["backup_dir"], p["backup_factor"])
                result["server_version_num"] = conn.server_version
            result.update(report(cur, p, present, records))
        if check_mode:
            conn.rollback()
        else:
            conn.commit()
        return changed, result
    except Exception:
        conn.rollback()
        raise
    finally:
        conn.close()
