# PRIVATE: the parking-migrate engine. Plain Python (no Ansible imports) so it is
# importable and unit-testable on its own; the modules in library/ are thin wrappers.
"""state absent: undo every recorded gateway import (remove_gateways), through rollback-1's own path."""
from .. import connection, ledger, rollback
from .plumbing import PHASE, GatewayRun, _check_rls, _lock, _session
from .rules import TARGET_TABLE
from .sql import SQL_COUNT


def remove_gateways(target_params, dry_run=False, connect=None):
    """Undo every recorded import through rollback-1's own path (rollback.undo_gateways): rows it
    updated restored as they were, rows it inserted deleted."""
    connect = connect or connection.connect
    counts = {"deleted": 0, "restored": 0, "missing": 0}
    queries, warnings = [], []
    with GatewayRun("gateway rollback", "nothing was changed", counts, "connect") as run:
        run_id, state = run.run_id, run.state
        target_conn = run.open(connect, target_params, "target")
        target = _session(target_conn, queries)
        cur = target_conn.cursor()
        state["phase"] = "lock"
        _lock(target)
        state["phase"] = "introspect"
        _check_rls(target, TARGET_TABLE)
        before_count = target.scalar(SQL_COUNT)
        runs = []
        if ledger.exists(cur):
            rollback.refuse_while_v6_serves(cur)
            runs, found = rollback.gateway_records(cur)
            if runs:
                state["phase"] = "restore"
                ledger.begin(cur)
                ledger.start(cur, run_id, PHASE, "rollback", "absent", dry_run)
                undone = rollback.undo_gateways(cur, target.execute)
                counts["restored"], counts["deleted"] = undone["gateways_restored"], undone["gateways"]
                gone = (found["inserted"] - found["inserted_present"], found["updated"] - found["updated_present"])
                counts["missing"] = sum(gone)
                if gone[0]:
                    warnings.append(f"{gone[0]} gateway row(s) phase 1 inserted were already deleted")
                if gone[1]:
                    warnings.append(f"{gone[1]} gateway row(s) phase 1 updated no longer exist; nothing to restore")
                ledger.finish(cur, run_id, "succeeded", counts, {})
        after_count = target.scalar(SQL_COUNT)
        run.finish(target_conn, dry_run)
        return {
            "changed": counts["deleted"] + counts["restored"] > 0 or bool(runs),
            "run_id": run_id, "rolled_back_runs": runs, "counts": counts, "warnings": warnings,
            "executed_queries": queries, "imported": [], "rejects": [],
            "diff": {"before": {"gateways": before_count}, "after": {"gateways": after_count}},
        }
