# PRIVATE: the parking-migrate engine. Plain Python (no Ansible imports) so it is
# importable and unit-testable on its own; the modules in library/ are thin wrappers.
"""state present: import every ChirpStack gateway into V6 (import_gateways), in one target transaction."""
import json
import uuid

from .. import connection, ledger
from ..errors import ConfigError
from ..eui import normalize_eui
from ..mapping import PLATFORM_TENANT_ID
from .plumbing import PHASE, GatewayRun, _check_rls, _live_columns, _lock, _session, _table_exists
from .rules import (CONTENT_COLUMNS, DEFAULT_ONLINE_WINDOW, REQUIRED_COLUMNS, TARGET_TABLE, _now_sql,
                    _sql_value, _time_value, _validate_options, canonical_uuid, desired_row, gateway_id_hex,
                    gateway_status, heard_tenants, length_problems, plan_columns, resolve_owner, resolve_site,
                    resolve_tenant_map, row_differences)
from .sql import (SQL_COUNT, SQL_CS_DEVICES, SQL_CS_GATEWAYS, SQL_CS_TENANTS, SQL_LEDGER_INSERT,
                  SQL_LEDGER_INSERTED, SQL_LEDGER_UPDATE, SQL_NOW, SQL_V6_DEVICE_TENANTS,
                  SQL_V6_READING_TENANTS, SQL_V6_SITES, SQL_V6_TENANTS)


def import_gateways(chirpstack_params, target_params, tenant_map=None,
                    platform_tenant_id=PLATFORM_TENANT_ID, online_window=DEFAULT_ONLINE_WINDOW,
                    dry_run=False, connect=None):
    """Import every ChirpStack gateway into V6. Returns the module result (JSON-safe dict)."""
    connect = connect or connection.connect
    counts = {"inserted": 0, "updated": 0, "unchanged": 0, "rejected": 0}
    queries = []
    with GatewayRun("gateway import", "nothing was written", counts, "validate") as run:
        run_id, state = run.run_id, run.state
        platform = _validate_options(platform_tenant_id, online_window, tenant_map)
        state["phase"] = "connect"
        cs_conn = run.open(connect, chirpstack_params, "chirpstack")
        cs_conn.set_session(readonly=True, isolation_level="REPEATABLE READ")
        target_conn = run.open(connect, target_params, "target")
        cs, target = _session(cs_conn, queries), _session(target_conn, queries)

        state["phase"] = "lock"
        _lock(target)
        state["phase"] = "introspect"
        for table in ("gateways", "sensor_devices", "display_devices"):
            _check_rls(target, table)
        plan = plan_columns(_live_columns(target, TARGET_TABLE))
        now = target.scalar(SQL_NOW)

        state["phase"] = "read"
        v6_tenants = target.all(SQL_V6_TENANTS)
        v6_slug = {canonical_uuid(t[0]): t[1] for t in v6_tenants}
        inactive = {canonical_uuid(t[0]) for t in v6_tenants if t[3] is False}
        if platform not in v6_slug:
            raise ConfigError(f"the platform tenant {platform} does not exist in the target's tenants "
                              f"table; set platform_tenant_id to the V6 platform tenant (V6 tenant "
                              f"slugs: {', '.join(sorted(v6_slug.values())) or '(none)'})")
        sites = target.all(SQL_V6_SITES) if _table_exists(target, "sites") else []
        cs_tenants = cs.all(SQL_CS_TENANTS)
        explicit, warnings = resolve_tenant_map(tenant_map, cs_tenants, v6_tenants)
        cs_rows = cs.all(SQL_CS_GATEWAYS)
        names = ("gateway_id", "tenant_id", "tenant_name", "name", "description", "latitude",
                 "longitude", "altitude", "last_seen_at", "stats_interval_secs", "tags",
                 "properties", "created_at", "updated_at")
        gateways = [dict(zip(names, r)) for r in cs_rows]
        for gw in gateways:
            gw["tenant_id"] = canonical_uuid(gw["tenant_id"])

        state["phase"] = "owners"
        device_tenants = _device_tenants(cs, target, platform, warnings)
        reading_tenants = _reading_tenants(target, platform, warnings)

        state["phase"] = "plan"
        imported, rejects, wanted = [], [], []
        for gw in gateways:
            gateway_hex, reason = gateway_id_hex(gw["gateway_id"])
            if reason:
                rejects.append({"gateway_id": bytes(gw["gateway_id"] or b"").hex(), "name": gw["name"],
                                "chirpstack_tenant": gw["tenant_name"], "reason": reason})
                continue
            heard = heard_tenants(gw["tenant_id"], gateway_hex, device_tenants, reading_tenants,
                                  platform)
            owner, rule = resolve_owner(gw["tenant_id"], explicit, heard, platform)
            site_id, site_rule = resolve_site(gw["tags"], gw["description"], owner, sites)
            status = gateway_status(gw["last_seen_at"], now, int(online_window))
            row = desired_row(gw, gateway_hex, owner, status, site_id, plan)
            problems = length_problems(row, plan)
            if problems:
                rejects.append({"gateway_id": gateway_hex, "name": gw["name"],
                                "chirpstack_tenant": gw["tenant_name"], "reason": "; ".join(problems)})
                continue
            if owner in inactive:
                warnings.append(f"gateway {gateway_hex} goes to V6 tenant {v6_slug[owner]!r}, "
                                f"which is inactive")
            wanted.append((gw, row))
            imported.append({
                "gateway_id": gateway_hex, "name": row["name"],
                "chirpstack_tenant": gw["tenant_name"], "chirpstack_tenant_id": gw["tenant_id"],
                "v6_tenant_id": owner, "v6_tenant_slug": v6_slug.get(owner),
                "owner_rule": rule, "heard_tenants": [v6_slug.get(t, t) for t in heard],
                "status": status, "site_id": site_id, "site_rule": site_rule,
                "action": None, "gateway_row_id": None,
            })
        counts["rejected"] = len(rejects)

        state["phase"] = "write"
        before_count = target.scalar(SQL_COUNT)
        if _write(target, plan, run_id, wanted, imported, counts, warnings):
            ledger.finish(target.conn.cursor(), run_id, "succeeded", counts, {})
        after_count = target.scalar(SQL_COUNT)

        run.finish(target_conn, dry_run)
        changed = counts["inserted"] + counts["updated"] > 0
        return {
            "changed": changed, "run_id": run_id, "imported": imported, "counts": counts,
            "rejects": rejects, "warnings": warnings, "executed_queries": queries,
            "schema": {"written_columns": sorted(set(REQUIRED_COLUMNS) | set(plan["optional"])),
                       "skipped_columns": plan["skipped"]},
            "diff": {"before": {"gateways": before_count}, "after": {"gateways": after_count}},
        }


def _device_tenants(cs, target, platform, warnings):
    """{ChirpStack tenant id: set of V6 tenant ids of its devices present in V6 (not platform)}."""
    by_eui = {}
    for tenant_id, dev_eui in cs.all(SQL_CS_DEVICES):
        eui = normalize_eui(dev_eui)
        if eui:
            by_eui.setdefault(eui, set()).add(canonical_uuid(tenant_id))
    result = {}
    if not by_eui:
        return result
    for table in ("sensor_devices", "display_devices"):
        if not _table_exists(target, table):
            warnings.append(f"the target has no {table} table; its devices cannot decide owners")
            continue
        for eui, v6_tenant in target.all(SQL_V6_DEVICE_TENANTS.format(table=table),
                                         (sorted(by_eui), platform)):
            for cs_tenant in by_eui.get(eui, ()):
                result.setdefault(cs_tenant, set()).add(canonical_uuid(v6_tenant))
    return result


def _reading_tenants(target, platform, warnings):
    """{gateway hex: set of V6 tenant ids of V6 readings received through it (not platform)}."""
    if not _table_exists(target, "sensor_readings"):
        warnings.append("the target has no sensor_readings table; V6 uplinks cannot decide owners")
        return {}
    result = {}
    for gateway_hex, tenant_id in target.all(SQL_V6_READING_TENANTS, (platform,)):
        result.setdefault(gateway_hex, set()).add(canonical_uuid(tenant_id))
    return result


def _existing_rows(target, plan, gateway_ids):
    """Existing V6 rows for these gateway ids (case-insensitive), as dicts with 'image'."""
    cols = ["tenant_id", "gateway_id", "name", "status", "config"] + \
        [c for c in CONTENT_COLUMNS + ("site_id",) if c in plan["optional"]]
    order = "g.created_at, g.id" if "created_at" in plan["columns"] else "g.id"
    sql = (f"SELECT g.id::text, to_jsonb(g)::text, {', '.join('g.' + c for c in cols)} "
           f"FROM gateways g WHERE upper(g.gateway_id) = ANY(%s) ORDER BY {order}")
    rows = []
    for rec in target.all(sql, (sorted(gateway_ids),)):
        row = dict(zip(cols, rec[2:]))
        row["id"], row["image"] = rec[0], rec[1]
        row["tenant_id"] = canonical_uuid(row["tenant_id"])
        rows.append(row)
    return rows


def _ensure_ledger(target, run_id, state):
    """Before the first write: the ledger, created or brought up to date, and this run in it."""
    if not state["ready"]:
        cur = target.conn.cursor()
        ledger.ensure(cur)
        ledger.start(cur, run_id, PHASE, "import", "present", False)
        state["ready"] = True


def _write(target, plan, run_id, wanted, imported, counts, warnings):
    """Insert, update or leave each wanted row; record every write in the ledger. True if it wrote."""
    if not wanted:
        return False
    existing = _existing_rows(target, plan, [row["gateway_id"] for _, row in wanted])
    state = {"ready": False}
    ours = {r[0] for r in target.all(SQL_LEDGER_INSERTED)} if ledger.exists(target.conn.cursor()) else set()
    by_gateway = {}
    for row in existing:
        by_gateway.setdefault(row["gateway_id"].upper(), []).append(row)

    for (gw, want), item in zip(wanted, imported):
        candidates = by_gateway.get(want["gateway_id"], [])
        same = [r for r in candidates if r["tenant_id"] == want["tenant_id"]]
        if len(same) > 1:
            warnings.append(f"V6 has {len(same)} rows for gateway {want['gateway_id']} in tenant "
                            f"{item['v6_tenant_slug']!r} (no unique key, J48); the oldest "
                            f"({same[0]['id']}) is kept in sync, the others are left alone")
        mine_elsewhere = [r for r in candidates if r["id"] in ours
                          and r["tenant_id"] != want["tenant_id"]]
        if same and mine_elsewhere:
            warnings.append(f"gateway {want['gateway_id']}: row(s) "
                            f"{', '.join(r['id'] for r in mine_elsewhere)} inserted by an earlier run "
                            f"under another tenant remain; state=absent removes them")
        moved = mine_elsewhere if not same else []
        current = same[0] if same else (moved[0] if moved else None)
        if current is None:
            row_id = str(uuid.uuid4())
            _ensure_ledger(target, run_id, state)
            _insert(target, plan, row_id, gw, want)
            target.execute(SQL_LEDGER_INSERT, (want["gateway_id"], row_id, row_id, run_id))
            item["action"], item["gateway_row_id"] = "inserted", row_id
            counts["inserted"] += 1
            continue
        item["gateway_row_id"] = current["id"]
        # Re-homing one of our own rows (tenant_map changed): a site of the old tenant must
        # not follow it, so site_id is written even when None.
        rehome = current["tenant_id"] != want["tenant_id"]
        diffs = row_differences(current, want, plan)
        if rehome and "tenant_id" not in diffs:
            diffs.append("tenant_id")
        if not diffs:
            item["action"] = "unchanged"
            counts["unchanged"] += 1
            continue
        _ensure_ledger(target, run_id, state)
        _update(target, plan, current["id"], want, clear_site=rehome)
        target.execute(SQL_LEDGER_UPDATE, (run_id, current["id"], current["image"]))
        item["action"], item["changed_columns"] = "updated", sorted(diffs)
        counts["updated"] += 1
    return state["ready"]


def _insert(target, plan, row_id, gw, want):
    types = plan["columns"]
    cols, marks, params = ["id"], ["%s::uuid"], [row_id]
    for col, value in want.items():
        mark, param = _sql_value(col, value, types.get(col))
        cols.append(col)
        marks.append(mark)
        params.append(param)
    if "created_at" in plan["optional"]:
        cols.append("created_at")
        marks.append("%s")
        params.append(_time_value(gw.get("created_at"), types["created_at"]))
    if "updated_at" in plan["optional"]:
        cols.append("updated_at")
        marks.append(_now_sql(types["updated_at"]))
    target.execute(f"INSERT INTO gateways ({', '.join(cols)}) VALUES ({', '.join(marks)})", params)


def _update(target, plan, row_id, want, clear_site=False):
    types = plan["columns"]
    sets, params = [], []
    for col, value in want.items():
        if col == "site_id" and value is None and not clear_site:
            continue    # keep a site V6 users assigned when ChirpStack names none
        if col == "config":
            sets.append("config = coalesce(config, '{}'::jsonb) || "
                        "jsonb_build_object('chirpstack', %s::jsonb)")
            params.append(json.dumps(value, sort_keys=True))
            continue
        mark, param = _sql_value(col, value, types.get(col))
        sets.append(f"{col} = {mark}")
        params.append(param)
    if "updated_at" in plan["optional"]:
        sets.append(f"updated_at = {_now_sql(types['updated_at'])}")
    params.append(row_id)
    target.execute(f"UPDATE gateways SET {', '.join(sets)} WHERE id = %s::uuid", params)
