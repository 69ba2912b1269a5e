"""Phase 1 engine: V5 (`parking_v5`) -> V6 (`parking_v6`), tenant-aware, deduplicated.

One run = one transaction on the target (check mode rolls it back) reading one consistent
snapshot of the source. Per entity, in dependency order:

  stage   COPY (SELECT ...) TO STDOUT on V5 -> COPY FROM STDIN into a TEMP table on V6
  plan    a TEMP table m_<entity>: for every V5 row its V6 id and an action
          mapped (done by an earlier run) | match (V6 already has it: natural key)
          | insert | reject (with the reason) | skip
  apply   INSERT the `insert` rows set-based; record id map, rejects and before-images

Nothing is updated in place except the space <-> device links of rows V6 already had, and
those keep a before-image so rollback (state=absent) restores them exactly. Rows the tool
inserted may be adjusted by later runs (login order of memberships, reservations that ended);
rollback removes them anyway.

The package, by concern:

  run.py       Run (cursors, run id, what the run did) and the helpers every entity shares:
               plan, record_plan, decide, prev_state, before-images and row_state
  registry.py  the entities phase 1 inserts: tenants, users, memberships (login order), sites,
               spaces, devices, reservations (placeholder user), orphan devices
  links.py     what changes in rows V6 holds: space <-> device links, device_assignments,
               live-state sync, resolved orphans
  history.py   readings and state changes: streamed COPY above the watermark, staging below it,
               the state_changes sequence
  bulk.py      how a history table is loaded: bulk (a full run into a V6 that is not serving:
               plain indexes and foreign keys dropped, COPY, built again and compared, all in the
               run's transaction) or live (indexes in place), the rule and why
  driver.py    migrate(...): the whole run in order, counts, platform-tenant check, result;
               oracle_gate

Other code uses the names re-exported here (library/parking_tenant_migration.py, verify.py,
tests/integration, bench/).
"""
from .driver import PHASE, migrate, oracle_gate
from .history import RETENTION_MARK, TS
from .run import Run

__all__ = ["PHASE", "RETENTION_MARK", "TS", "Run", "migrate", "oracle_gate"]
