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
"""
import json
import time

from . import ledger, mapping, oracle, rls, schema, sqlfrag as F, staging
from . import pgcopy
from .errors import ConfigError, GateFailed, ParkingError, RejectsPresent

PHASE = "phase1"
L = F.LEDGER

V6_TABLES = ("tenants", "users", "user_memberships", "sites", "spaces", "sensor_devices", "display_devices",
             "device_assignments", "reservations", "orphan_devices", "sensor_readings", "state_changes")
HISTORY_OVERLAP = 10000  # ids re-read below the watermark: rows committed late are caught
# History V6 deletes after its retention (background_jobs.py: sensor_readings by received_at only)
RETAINED = ("sensor_readings",)
TS = '"timestamp"'
RETENTION_MARK = "history_retention_days"  # kept with the watermarks: the gate applies the same cutoff


class Run:
    """Cursors, the run id and what the run did (queries, counts, rejects, warnings)."""

    def __init__(self, src_conn, tgt_conn, run_id, platform, progress=None):
        self.src = src_conn.cursor()
        self.cur = tgt_conn.cursor()
        self.run_id = run_id
        self.platform = platform
        self.queries = []
        self.counts = {}
        self.warnings = []
        self.timings = {}
        self.progress = progress or (lambda msg: None)
        self.cur.execute("SELECT now()")
        self.now = self.cur.fetchone()[0]  # the run's time: the target transaction's start
        self.params = {"run": run_id, "platform": platform, "now": self.now}
        self.anonymous_email = mapping.ANONYMOUS_USER_EMAIL
        self.tenant_differences = []

    def execute(self, sql, params=None):
        self.queries.append(" ".join(sql.split()))
        self.cur.execute(sql, self.params if params is None else params)
        return self.cur.rowcount

    def scalar(self, sql, params=None):
        self.execute(sql, params)
        row = self.cur.fetchone()
        return row[0] if row else None

    def rows(self, sql, params=None):
        self.execute(sql, params)
        return self.cur.fetchall()

    def count(self, entity, key, n):
        self.counts.setdefault(entity, {}).setdefault(key, 0)
        self.counts[entity][key] += n


# --------------------------------------------------------------------------------------------
# generic apply: id map, rejects, counts
# --------------------------------------------------------------------------------------------

def record_plan(run, entity):
    """Id-map rows for insert/match, rejects, and the counts of the plan m_<entity>."""
    run.execute(f"""
        INSERT INTO {L}.id_map (entity, v5_id, v6_id, action, run_id)
        SELECT '{entity}', v5_id, v6_id::text,
               CASE action WHEN 'insert' THEN 'inserted' ELSE 'matched' END, %(run)s
        FROM m_{entity} WHERE action IN ('insert', 'match')
        ON CONFLICT (entity, v5_id) DO NOTHING""")
    run.execute(f"""
        INSERT INTO {L}.rejects (run_id, entity, v5_id, reason)
        SELECT %(run)s, '{entity}', v5_id, reason FROM m_{entity} WHERE action = 'reject'
        ON CONFLICT DO NOTHING""")
    run.execute(f"""
        INSERT INTO {L}.decisions (run_id, entity, v5_id, decision, detail)
        SELECT %(run)s, '{entity}', v5_id, 'not_migrated', reason FROM m_{entity}
        WHERE action = 'skip' AND reason IS NOT NULL""")
    for action, n in run.rows(f"SELECT action, count(*) FROM m_{entity} GROUP BY action"):
        key = {"insert": "inserted", "match": "matched", "mapped": "already_migrated",
               "reject": "rejected", "skip": "skipped"}[action]
        run.count(entity, key, n)


def decide(run, entity, decision, select_sql):
    """Record decisions (v5_id, detail) from a SELECT for this run; returns how many."""
    n = run.execute(f"""INSERT INTO {L}.decisions (run_id, entity, v5_id, decision, detail)
                        SELECT %(run)s, '{entity}', d.v5_id, '{decision}', d.detail
                        FROM ({select_sql}) d(v5_id, detail)""")
    if n:
        run.count(entity, decision, n)
    return n


def plan(run, entity, select_sql):
    run.execute(f"CREATE TEMP TABLE m_{entity} ON COMMIT DROP AS {select_sql}")
    run.execute(f"ANALYZE m_{entity}")


def prev_state(entity, table):
    """CASE pieces for rows mapped by an earlier run: still there -> mapped; deleted in V6 -> skip
    (V6's deletion wins: not re-created, listed as a decision with PREV_REASON)."""
    return (f"WHEN prev_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {table} x WHERE x.id = prev_id) "
            f"THEN 'skip' WHEN prev_id IS NOT NULL THEN 'mapped'")


# the reason of a 'skip' by prev_state (rows still there are 'mapped' and their reason is unused)
PREV_REASON = f"WHEN prev_id IS NOT NULL THEN {mapping.sql_literal(mapping.V6_DELETED_REASON)}"


# --------------------------------------------------------------------------------------------
# entities
# --------------------------------------------------------------------------------------------

def migrate_tenants(run):
    plan(run, "tenants", f"""
        WITH c AS (
            SELECT s.*, prev.v6_id::uuid AS prev_id, byid.id AS byid, byslug.id AS byslug
            FROM stg_tenants s {F.prev_join('tenants')}
            LEFT JOIN tenants byid ON byid.id = s.id
            LEFT JOIN tenants byslug ON byslug.slug = s.slug)
        SELECT c.*, id::text AS v5_id,
            CASE WHEN prev_id IS NOT NULL THEN prev_id
                 WHEN byid IS NOT NULL THEN byid WHEN byslug IS NOT NULL THEN byslug ELSE id END AS v6_id,
            CASE {prev_state('tenants', 'tenants')}
                 WHEN byid IS NOT NULL AND byslug IS NOT NULL AND byslug <> byid THEN 'reject'
                 WHEN byid IS NOT NULL OR byslug IS NOT NULL THEN 'match'
                 ELSE 'insert' END AS action,
            CASE {PREV_REASON}
                 WHEN byid IS NOT NULL AND byslug IS NOT NULL AND byslug <> byid
                 THEN 'id matches V6 tenant ' || byid || ' but slug ' || quote_literal(slug)
                      || ' belongs to V6 tenant ' || byslug END AS reason
        FROM c""")
    run.execute("""
        INSERT INTO tenants (id, name, slug, metadata, settings, is_active, created_at, updated_at,
                             type, subscription_tier)
        SELECT v6_id, name, slug, coalesce(metadata, '{}'), coalesce(settings, '{}'), coalesce(is_active, true),
               coalesce(created_at, now()), coalesce(updated_at, now()),
               CASE WHEN v6_id = %(platform)s::uuid THEN 'platform' ELSE 'customer' END, 'basic'
        FROM m_tenants WHERE action = 'insert'""")
    record_plan(run, "tenants")
    # a tenant V6 already had keeps V6's is_active (V6 may have its reasons); the difference is reported
    for tenant, slug, v5_active, v6_active in run.rows("""
            SELECT m.v6_id::text, t.slug, coalesce(m.is_active, true), coalesce(t.is_active, true)
            FROM m_tenants m JOIN tenants t ON t.id = m.v6_id
            WHERE m.action IN ('match', 'mapped') AND coalesce(m.is_active, true) <> coalesce(t.is_active, true)
            ORDER BY 1"""):
        run.tenant_differences.append({"tenant_id": tenant, "slug": slug, "v5_is_active": v5_active,
                                       "v6_is_active": v6_active})
    if run.tenant_differences:
        run.count("tenants", "is_active_differs", len(run.tenant_differences))
    decide(run, "tenants", "v6_name_kept", """
        SELECT m.v5_id, 'V6 tenant ' || t.id || ' (slug ' || t.slug || ') keeps its name ' || quote_literal(t.name)
               || '; V5 calls it ' || quote_literal(m.name)
        FROM m_tenants m JOIN tenants t ON t.id = m.v6_id
        WHERE m.action IN ('match', 'mapped') AND t.name IS DISTINCT FROM m.name""")


def migrate_users(run):
    plan(run, "users", f"""
        WITH c AS (
            SELECT s.*, lower(s.email) AS email_l, prev.v6_id::uuid AS prev_id,
                   (SELECT count(*) FROM users u WHERE lower(u.email) = lower(s.email)) AS n_email,
                   (SELECT min(u.id::text)::uuid FROM users u WHERE lower(u.email) = lower(s.email)) AS byemail,
                   EXISTS (SELECT 1 FROM users u WHERE u.id = s.id) AS id_taken
            FROM stg_users s {F.prev_join('users')})
        SELECT c.*, id::text AS v5_id,
            CASE WHEN prev_id IS NOT NULL THEN prev_id WHEN n_email = 1 THEN byemail
                 WHEN id_taken THEN {F.derived('users', 'id')} ELSE id END AS v6_id,
            CASE {prev_state('users', 'users')}
                 WHEN n_email > 1 THEN 'reject' WHEN n_email = 1 THEN 'match' ELSE 'insert' END AS action,
            CASE {PREV_REASON}
                 WHEN n_email > 1 THEN n_email || ' V6 users share this email case-insensitively' END AS reason
        FROM c""")
    run.execute("""
        INSERT INTO users (id, email, name, hashed_password, metadata, is_active, email_verified, created_at,
                           updated_at, last_login_at, first_name, last_name)
        SELECT v6_id, email_l, name, password_hash, coalesce(metadata, '{}'), coalesce(is_active, true),
               coalesce(email_verified, false), coalesce(created_at, now()), coalesce(updated_at, now()),
               last_login_at,
               nullif((regexp_split_to_array(btrim(name), '\\s+'))[1], ''),
               (regexp_split_to_array(btrim(name), '\\s+'))[2]
        FROM m_users WHERE action = 'insert'""")
    record_plan(run, "users")


def migrate_memberships(run):
    role = F.membership_role("s.role")
    plan(run, "user_memberships", f"""
        WITH c AS (
            SELECT s.*, mu.v6_id::uuid AS user_v6,
                   CASE WHEN s.role = 'platform_admin' THEN %(platform)s::uuid ELSE mt.v6_id::uuid END AS tenant_v6,
                   {role} AS role_v6, prev.v6_id::uuid AS prev_id,
                   EXISTS (SELECT 1 FROM user_memberships x WHERE x.id = s.id) AS id_taken
            FROM stg_user_memberships s {F.prev_join('user_memberships')}
            {F.mapped('users', 'mu', 's.user_id')} {F.mapped('tenants', 'mt', 's.tenant_id')}),
        d AS (
            SELECT c.*,
                   (SELECT x.id FROM user_memberships x WHERE x.user_id = c.user_v6
                      AND x.tenant_id = c.tenant_v6) AS existing,
                   first_value(CASE WHEN id_taken THEN {F.derived('user_memberships', 'id')} ELSE id END)
                       OVER w AS first_id,
                   row_number() OVER w AS dup
            FROM c WINDOW w AS (PARTITION BY user_v6, tenant_v6 ORDER BY
                 CASE role_v6 WHEN 'owner' THEN 4 WHEN 'admin' THEN 3 WHEN 'operator' THEN 2 ELSE 1 END DESC,
                 is_active DESC NULLS LAST, id))
        SELECT d.*, id::text AS v5_id,
            CASE WHEN prev_id IS NOT NULL THEN prev_id WHEN existing IS NOT NULL THEN existing
                 ELSE first_id END AS v6_id,
            CASE {prev_state('user_memberships', 'user_memberships')}
                 WHEN user_v6 IS NULL OR tenant_v6 IS NULL OR role_v6 IS NULL THEN 'reject'
                 WHEN existing IS NOT NULL OR dup > 1 THEN 'match' ELSE 'insert' END AS action,
            CASE {PREV_REASON}
                 WHEN user_v6 IS NULL THEN 'its user was not migrated'
                 WHEN tenant_v6 IS NULL THEN 'its tenant was not migrated'
                 WHEN role_v6 IS NULL THEN 'unknown role ' || quote_literal(role) END AS reason
        FROM d""")
    run.execute("""
        INSERT INTO user_memberships (id, user_id, tenant_id, role, metadata, is_active, created_at, updated_at)
        SELECT v6_id, user_v6, tenant_v6, role_v6,
               coalesce(metadata, '{}') || CASE WHEN role = 'platform_admin'
                   THEN jsonb_build_object('v5_role', 'platform_admin') ELSE '{}' END,
               coalesce(is_active, true), coalesce(created_at, now()), coalesce(updated_at, now())
        FROM m_user_memberships WHERE action = 'insert'""")
    record_plan(run, "user_memberships")
    order_logins(run)


def order_logins(run):
    """V6's login takes a user's membership with the latest created_at: the one in the user's
    primary V5 tenant (mapping.primary_membership: active, tenant active in V5, platform admin,
    oldest, id) must be
    strictly the latest. Only memberships phase 1 inserted are moved: the primary one above the
    others (max + 1 ms), or, when the primary one is a row V6 had, the inserted ones below it.
    The V5 created_at of a moved row stays in its metadata (v5_created_at)."""
    rank = F.membership_rank("m.role")
    step = f"interval '{int(mapping.LOGIN_ORDER_STEP.total_seconds() * 1000)} milliseconds'"
    ours = (f"EXISTS (SELECT 1 FROM {L}.id_map i WHERE i.entity = 'user_memberships' AND i.action = 'inserted' "
            f"AND i.v6_id = {{id}}::text)")
    run.execute(f"""
        CREATE TEMP TABLE login_order ON COMMIT DROP AS
        WITH p AS (
            SELECT DISTINCT ON (m.user_v6) m.user_v6, m.v6_id AS primary_id, m.tenant_v6
            FROM m_user_memberships m WHERE m.action IN ('insert', 'match', 'mapped')
            ORDER BY m.user_v6, coalesce(m.is_active, true) DESC,
                     coalesce((SELECT st.is_active FROM stg_tenants st WHERE st.id = m.tenant_id), true) DESC,
                     {rank} DESC, m.created_at ASC NULLS LAST, m.id)
        SELECT p.*, um.created_at AS primary_at, {ours.format(id='p.primary_id')} AS ours,
               (SELECT max(x.created_at) FROM user_memberships x WHERE x.user_id = p.user_v6
                  AND x.id <> p.primary_id) AS others_at
        FROM p JOIN user_memberships um ON um.id = p.primary_id""")
    moved = ("metadata = coalesce(t.metadata, '{}') || jsonb_build_object('v5_created_at', "
             "coalesce(t.metadata->'v5_created_at', to_jsonb(t.created_at)))")
    n = run.execute(f"""
        UPDATE user_memberships t SET created_at = o.others_at + {step}, {moved}
        FROM login_order o WHERE t.id = o.primary_id AND o.ours AND o.others_at IS NOT NULL
          AND (t.created_at IS NULL OR t.created_at <= o.others_at)""")
    n += run.execute(f"""
        UPDATE user_memberships t SET created_at = o.primary_at - {step}, {moved}
        FROM login_order o WHERE t.user_id = o.user_v6 AND t.id <> o.primary_id AND NOT o.ours
          AND o.primary_at IS NOT NULL AND t.created_at >= o.primary_at AND {ours.format(id='t.id')}""")
    run.count("user_memberships", "login_reordered", n)
    for user, tenant, other in run.rows(f"""
            SELECT o.user_v6, o.tenant_v6, x.tenant_id FROM login_order o
            JOIN user_memberships x ON x.user_id = o.user_v6 AND x.id <> o.primary_id
            WHERE NOT o.ours AND x.created_at >= o.primary_at AND NOT {ours.format(id='x.id')} ORDER BY 1, 3"""):
        run.warnings.append(f"user {user}: V6 membership in tenant {other} is not older than the one in the "
                            f"primary V5 tenant {tenant}, both rows V6 had (not rewritten): V6's login picks "
                            "the newest")


def migrate_sites(run):
    plan(run, "sites", f"""
        WITH c AS (
            SELECT s.*, mt.v6_id::uuid AS tenant_v6, prev.v6_id::uuid AS prev_id,
                   byid.id AS byid, byid.tenant_id AS byid_tenant,
                   (SELECT x.id FROM sites x WHERE x.tenant_id = mt.v6_id::uuid AND x.name = s.name) AS byname,
                   {F.slugify('s.name')} AS base_slug
            FROM stg_sites s {F.prev_join('sites')} {F.mapped('tenants', 'mt', 's.tenant_id')}
            LEFT JOIN sites byid ON byid.id = s.id),
        d AS (
            SELECT c.*,
                CASE {prev_state('sites', 'sites')}
                     WHEN tenant_v6 IS NULL THEN 'reject'
                     WHEN byid IS NOT NULL AND byid_tenant = tenant_v6 THEN 'match'
                     WHEN byname IS NOT NULL THEN 'match' ELSE 'insert' END AS action0
            FROM c),
        e AS (
            SELECT d.*,
                   row_number() OVER (PARTITION BY tenant_v6, name, action0 ORDER BY id) AS name_dup,
                   row_number() OVER (PARTITION BY tenant_v6, base_slug, action0 ORDER BY id) AS slug_dup,
                   EXISTS (SELECT 1 FROM sites x WHERE x.tenant_id = d.tenant_v6 AND x.slug = d.base_slug)
                       AS slug_taken
            FROM d)
        SELECT e.*, id::text AS v5_id,
            CASE WHEN prev_id IS NOT NULL THEN prev_id
                 WHEN action0 = 'match' AND byid IS NOT NULL AND byid_tenant = tenant_v6 THEN byid
                 WHEN action0 = 'match' THEN byname
                 WHEN byid IS NOT NULL THEN {F.derived('sites', 'id')} ELSE id END AS v6_id,
            CASE WHEN action0 = 'insert' AND name_dup > 1 THEN 'reject' ELSE action0 END AS action,
            CASE {PREV_REASON}
                 WHEN tenant_v6 IS NULL THEN 'its tenant was not migrated'
                 WHEN action0 = 'insert' AND name_dup > 1
                 THEN 'another V5 site named ' || quote_literal(name) || ' lands in the same V6 tenant' END AS reason,
            CASE WHEN slug_taken OR slug_dup > 1 THEN base_slug || '-' || left(md5(id::text), 6)
                 ELSE base_slug END AS slug
        FROM e""")
    run.execute("""
        INSERT INTO sites (id, tenant_id, name, timezone, location, metadata, is_active, created_at, updated_at,
                           slug)
        SELECT v6_id, tenant_v6, name, coalesce(timezone, 'UTC'), location, coalesce(metadata, '{}'),
               coalesce(is_active, true), coalesce(created_at, now()), coalesce(updated_at, now()), slug
        FROM m_sites WHERE action = 'insert'""")
    record_plan(run, "sites")


def migrate_spaces(run):
    plan(run, "spaces", f"""
        WITH c AS (
            SELECT s.*, ms.v6_id::uuid AS site_v6, prev.v6_id::uuid AS prev_id,
                   byid.id AS byid, byid.site_id AS byid_site,
                   CASE WHEN s.deleted_at IS NULL THEN
                       (SELECT x.id FROM spaces x WHERE x.site_id = ms.v6_id::uuid AND x.code = s.code
                          AND x.deleted_at IS NULL) END AS bycode,
                   {F.eui('s.sensor_eui')} AS sensor_eui_n, {F.eui('s.display_eui')} AS display_eui_n
            FROM stg_spaces s {F.prev_join('spaces')} {F.mapped('sites', 'ms', 's.site_id')}
            LEFT JOIN spaces byid ON byid.id = s.id)
        SELECT c.*, id::text AS v5_id,
            CASE WHEN prev_id IS NOT NULL THEN prev_id
                 WHEN byid IS NOT NULL AND byid_site = site_v6 THEN byid
                 WHEN bycode IS NOT NULL THEN bycode
                 WHEN byid IS NOT NULL THEN {F.derived('spaces', 'id')} ELSE id END AS v6_id,
            CASE {prev_state('spaces', 'spaces')}
                 WHEN site_v6 IS NULL THEN 'reject'
                 WHEN (byid IS NOT NULL AND byid_site = site_v6) OR bycode IS NOT NULL THEN 'match'
                 ELSE 'insert' END AS action,
            CASE {PREV_REASON} WHEN site_v6 IS NULL THEN 'its site was not migrated' END AS reason,
            -- V6's unique_sensor_eui covers every row: an EUI another V6 space holds is not copied
            CASE WHEN EXISTS (SELECT 1 FROM spaces x WHERE x.sensor_eui = sensor_eui_n)
                 THEN NULL ELSE sensor_eui_n END AS sensor_eui_ins
        FROM c""")
    state = F.space_state("state")
    run.execute(f"""
        INSERT INTO spaces (id, name, code, building, floor, zone, gps_latitude, gps_longitude, sensor_eui,
                            display_eui, state, metadata, created_at, updated_at, deleted_at, site_id,
                            current_state, display_name)
        SELECT v6_id, name, code, building, floor, zone, gps_latitude, gps_longitude, sensor_eui_ins,
               display_eui_n, state, metadata, coalesce(created_at, now()), coalesce(updated_at, now()),
               deleted_at, site_v6, {state}, name
        FROM m_spaces WHERE action = 'insert'""")
    record_plan(run, "spaces")
    remember(run, "spaces", "m.state", "t.current_state", "m.action IN ('insert', 'match')")


DEVICE_KINDS = {"sensor_devices": ("sensor", "sensor_eui", "sensor_device_id"),
                "display_devices": ("display", "display_eui", "display_device_id")}


def migrate_devices(run, table):
    """Devices: tenant via space -> site -> tenant, linked by EUI (as V5 does) or by FK."""
    kind, eui_col, fk_col = DEVICE_KINDS[table]
    status, lifecycle, enabled = F.device_status("status", "linked")
    run.execute(f"""
        CREATE TEMP TABLE cand_{table} ON COMMIT DROP AS
        SELECT d.id AS dev_id, sp.id AS space_v5, sp.created_at AS space_created, sp.deleted_at,
               sp.updated_at, ({F.eui('sp.' + eui_col)} = {F.eui('d.dev_eui')}) IS TRUE AS by_eui,
               (sp.{fk_col} = d.id) IS TRUE AS by_fk, st.tenant_id AS site_tenant
        FROM stg_{table} d JOIN stg_spaces sp
          ON ({F.eui('sp.' + eui_col)} = {F.eui('d.dev_eui')}) OR sp.{fk_col} = d.id
        LEFT JOIN stg_sites st ON st.id = sp.site_id""")
    plan(run, table, f"""
        WITH pick AS (
            SELECT DISTINCT ON (dev_id) dev_id, space_v5, space_created, count(*) OVER (PARTITION BY dev_id) AS n_live
            FROM cand_{table} WHERE deleted_at IS NULL
            ORDER BY dev_id, (by_eui AND by_fk) DESC, by_eui DESC, updated_at DESC NULLS LAST, space_v5),
        ten AS (
            SELECT c.dev_id, count(DISTINCT c.site_tenant) AS n_tenants,
                   string_agg(c.space_v5::text || ' (V5 tenant ' || coalesce(c.site_tenant::text, '?') || ')', ', '
                              ORDER BY c.space_v5) FILTER (WHERE c.space_v5 <> p.space_v5) AS losing_spaces
            FROM cand_{table} c JOIN pick p ON p.dev_id = c.dev_id WHERE c.deleted_at IS NULL GROUP BY c.dev_id),
        c AS (
            SELECT s.*, {F.eui('s.dev_eui')} AS eui, prev.v6_id::uuid AS prev_id,
                   p.space_v5, p.n_live, p.space_created, msp.v6_id::uuid AS space_v6, sp6.tenant_id AS space_tenant,
                   coalesce(ten.n_tenants, 0) AS n_tenants, ten.losing_spaces,
                   (SELECT count(*) FROM cand_{table} x WHERE x.dev_id = s.id AND x.deleted_at IS NOT NULL)
                       AS n_deleted,
                   EXISTS (SELECT 1 FROM {table} x WHERE x.id = s.id) AS id_taken
            FROM stg_{table} s {F.prev_join(table)}
            LEFT JOIN pick p ON p.dev_id = s.id
            LEFT JOIN ten ON ten.dev_id = s.id
            {F.mapped('spaces', 'msp', 'p.space_v5')}
            LEFT JOIN spaces sp6 ON sp6.id = msp.v6_id::uuid),
        d AS (
            SELECT c.*, ex.id AS existing, ex.tenant_id AS existing_tenant,
                   (space_v6 IS NOT NULL AND space_tenant IS NOT NULL) AS linked,
                   coalesce(CASE WHEN space_v6 IS NOT NULL THEN space_tenant END, %(platform)s::uuid) AS tenant_v6,
                   row_number() OVER (PARTITION BY c.eui ORDER BY (c.dev_eui = c.eui) DESC,
                                      c.updated_at DESC NULLS LAST, c.id) AS eui_rank
            FROM c LEFT JOIN {table} ex ON ex.dev_eui = c.eui)
        SELECT d.*, id::text AS v5_id,
            CASE WHEN prev_id IS NOT NULL THEN prev_id WHEN existing IS NOT NULL THEN existing
                 WHEN id_taken THEN {F.derived(table, 'id')} ELSE id END AS v6_id,
            CASE {prev_state(table, table)}
                 WHEN eui IS NULL OR eui_rank > 1 THEN 'reject'
                 WHEN existing IS NOT NULL AND existing_tenant = tenant_v6 THEN 'match'
                 WHEN existing IS NOT NULL THEN 'reject' ELSE 'insert' END AS action,
            CASE {PREV_REASON}
                 WHEN eui IS NULL THEN {F.eui_reason('dev_eui')}
                 WHEN eui_rank > 1 THEN 'duplicate EUI ' || eui || ' after normalisation'
                 WHEN existing IS NOT NULL AND existing_tenant <> tenant_v6
                 THEN 'dev_eui ' || eui || ' exists in V6 under tenant ' || existing_tenant
                      || ' but V5 places it in tenant ' || tenant_v6 END AS reason,
            {status} AS status_v6, {lifecycle} AS lifecycle_v6, {enabled} AS enabled_v6
        FROM d""")
    config = ("coalesce(capabilities, '{}') || jsonb_strip_nulls(jsonb_build_object("
              "'payload_decoder', payload_decoder, 'device_type_id', device_type_id))") if kind == "sensor" else \
             ("jsonb_strip_nulls(jsonb_build_object('display_codes', display_codes, 'fport', fport, "
              "'confirmed_downlinks', confirmed_downlinks, 'device_type_id', device_type_id))")
    run.execute(f"""
        INSERT INTO {table} (id, tenant_id, dev_eui, name, status, lifecycle_state, assigned_space_id, assigned_at,
                             last_seen_at, enabled, config, created_at, updated_at, device_type, manufacturer, model)
        SELECT v6_id, tenant_v6, eui, device_name, status_v6, lifecycle_v6,
               CASE WHEN linked THEN space_v6 END,
               CASE WHEN linked THEN {F.utc_naive('coalesce(space_created, created_at)')} END,
               {F.utc_naive('last_seen_at')}, coalesce(enabled, true) AND enabled_v6, {config},
               {F.utc_naive('coalesce(created_at, now())')}, {F.utc_naive('coalesce(updated_at, now())')},
               device_type, manufacturer, device_model
        FROM m_{table} WHERE action = 'insert'""")
    record_plan(run, table)
    decide(run, table, "placed_by_rule", f"""
        SELECT v5_id, '{kind} ' || eui || ' is linked from ' || n_live || ' live V5 spaces of ' || n_tenants
               || ' tenant(s): placed on V5 space ' || space_v5 || ' (tenant ' || coalesce(tenant_v6::text, '?')
               || ') by the rule (EUI and id link, then EUI link, then the most recently updated space, then '
               || 'the lowest space id); losing it: ' || losing_spaces
        FROM m_{table} WHERE action <> 'reject' AND n_live > 1""")
    decide(run, table, "unplaced", f"""
        SELECT v5_id, '{kind} ' || eui || ': ' || CASE
                   WHEN coalesce(n_live, 0) = 0 AND n_deleted > 0
                   THEN 'linked only from soft-deleted V5 spaces'
                   WHEN space_v5 IS NOT NULL THEN 'its V5 space ' || space_v5 || ' was not migrated'
                   ELSE 'no live V5 space links it' END || ': platform tenant, unassigned'
        FROM m_{table} WHERE action <> 'reject' AND NOT linked AND eui IS NOT NULL""")
    for v5_id, eui, n_live, n_deleted, space_v5 in run.rows(f"""
            SELECT v5_id, eui, n_live, n_deleted, space_v5 FROM m_{table}
            WHERE action <> 'reject' AND (n_live > 1 OR (coalesce(n_live, 0) = 0 AND n_deleted > 0))"""):
        if n_live and n_live > 1:
            run.warnings.append(f"{kind} {eui} (V5 {v5_id}) is linked from {n_live} live V5 spaces; chose "
                                f"{space_v5} (rule: EUI and FK, then EUI, then most recently updated)")
        else:
            run.warnings.append(f"{kind} {eui} (V5 {v5_id}) is linked only from soft-deleted spaces: "
                                "unplaced, in the platform tenant")


def save_before_images(run, table, ids_sql):
    """Keep the current row of every V6 row about to be updated that the tool did not insert."""
    run.execute(f"""
        INSERT INTO {L}.before_images (run_id, tbl, row_id, before)
        SELECT %(run)s, '{table}', t.id::text, to_jsonb(t) FROM {table} t
        WHERE t.id IN ({ids_sql})
          AND NOT EXISTS (SELECT 1 FROM {L}.id_map m WHERE m.v6_id = t.id::text AND m.action = 'inserted'
                          AND m.entity = '{table}')
          AND NOT EXISTS (SELECT 1 FROM {L}.before_images b WHERE b.tbl = '{table}' AND b.row_id = t.id::text)""")


def record_state(run, entity, rows_sql):
    """row_state of V6 rows, from `rows_sql` giving (v6_id, v5_sig, v6_sig): the V5 value carried,
    the V6 value now (what the tool wrote or found). A later run applies a V5 change only while V6
    still holds that V6 value; otherwise the change is V6's and wins."""
    run.execute(f"""
        INSERT INTO {L}.row_state (entity, v6_id, v5_sig, v6_sig, run_id)
        SELECT DISTINCT ON (r.v6_id) '{entity}', r.v6_id::text, r.v5_sig::text, coalesce(r.v6_sig::text, ''), %(run)s
        FROM ({rows_sql}) r(v6_id, v5_sig, v6_sig) ORDER BY r.v6_id
        ON CONFLICT (entity, v6_id) DO UPDATE SET v5_sig = EXCLUDED.v5_sig, v6_sig = EXCLUDED.v6_sig,
                                                  run_id = EXCLUDED.run_id""")


def note_conflicts(run, entity, plan, id_col, detail_sql):
    """Rows of the plan table `plan` whose decision is conflict (both sides changed): V6 wins, each
    is a conflict_v6_kept decision, and V5's new value is noted so it is reported once (the V6
    value the tool wrote stays in row_state, so the gate still sees V6's edit)."""
    decide(run, entity, "conflict_v6_kept", f"SELECT v5_id, {detail_sql} FROM {plan} WHERE decision = 'conflict'")
    run.execute(f"""UPDATE {L}.row_state r SET v5_sig = w.v5_sig FROM {plan} w
                    WHERE w.decision = 'conflict' AND r.entity = '{entity}' AND r.v6_id = w.{id_col}::text""")


def remember(run, entity, v5_sig, v6_sig, where):
    """row_state of the V6 rows of m_<entity> matching `where` (first contact)."""
    record_state(run, entity, f"SELECT t.id, {v5_sig}, {v6_sig} FROM m_{entity} m JOIN {entity} t "
                              f"ON t.id = m.v6_id WHERE {where}")


def link_plan(run, table):
    """Per placed-or-not device, what this run does with its link (lp_<table>.decision):
    apply (first contact, or V5 changed it and V6 still holds what the tool wrote), keep (V5
    unchanged: V6's value stays, edited or not), conflict (both changed: V6 wins, reported),
    tenant_changed (V5 moved it to another tenant: V6 has no such move, the gate reports it)."""
    v5_sig = "coalesce(CASE WHEN m.linked THEN m.space_v6::text END, '')"
    run.execute(f"""
        CREATE TEMP TABLE lp_{table} ON COMMIT DROP AS
        SELECT m.v6_id AS dev_v6, m.v5_id, m.eui, m.linked, m.space_v6,
               {F.utc_naive('coalesce(m.space_created, m.created_at)')} AS assigned_at,
               {v5_sig} AS v5_sig, coalesce(d.assigned_space_id::text, '') AS v6_now,
               CASE WHEN m.action IN ('insert', 'match') OR rs.v6_id IS NULL THEN 'apply'
                    WHEN rs.v5_sig = {v5_sig} THEN 'keep'
                    WHEN m.linked AND m.space_tenant IS DISTINCT FROM d.tenant_id THEN 'tenant_changed'
                    WHEN rs.v6_sig = coalesce(d.assigned_space_id::text, '') THEN 'apply'
                    ELSE 'conflict' END AS decision
        FROM m_{table} m JOIN {table} d ON d.id = m.v6_id
        LEFT JOIN {L}.row_state rs ON rs.entity = '{table}' AND rs.v6_id = m.v6_id::text
        WHERE m.action IN ('insert', 'match', 'mapped')""")


def link_spaces(run):
    """Both directions of every placed device's link: spaces.<kind>_device_id and assigned_space_id,
    where link_plan says apply. A device V5 moved leaves its old space (both columns cleared)."""
    for table, (kind, eui_col, fk_col) in DEVICE_KINDS.items():
        link_plan(run, table)
        want = f"SELECT space_v6, dev_v6, eui, assigned_at FROM lp_{table} WHERE linked AND decision = 'apply'"
        # a sensor EUI another space holds cannot be set (V6 unique_sensor_eui): reject that link
        conflict = ("EXISTS (SELECT 1 FROM spaces o WHERE o.sensor_eui = w.eui AND o.id <> w.space_v6 "
                    f"AND o.{fk_col} IS DISTINCT FROM w.dev_v6)" if kind == "sensor" else "false")
        run.execute(f"""
            INSERT INTO {L}.rejects (run_id, entity, v5_id, reason)
            SELECT %(run)s, 'space_links', w.space_v6::text || ':{kind}',
                   'space ' || w.space_v6 || ' cannot take {kind} EUI ' || w.eui || ': another V6 space holds it'
            FROM ({want}) w WHERE {conflict} ON CONFLICT DO NOTHING""")
        run.count("space_links", "rejected", run.cur.rowcount)
        # the spaces that hold an applied device elsewhere let go of it (V5 moved or unplaced it)
        left = (f"SELECT s.id FROM spaces s JOIN lp_{table} w ON s.{fk_col} = w.dev_v6 "
                f"WHERE w.decision = 'apply' AND s.id IS DISTINCT FROM (CASE WHEN w.linked THEN w.space_v6 END)")
        save_before_images(run, "spaces", left)
        n = run.execute(f"UPDATE spaces SET {fk_col} = NULL, {eui_col} = NULL WHERE id IN ({left})")
        if n:
            run.count("space_links", f"{kind}_spaces_unlinked", n)
        differs = (f"SELECT w.space_v6 FROM ({want}) w JOIN spaces s ON s.id = w.space_v6 "
                   f"WHERE NOT {conflict} AND (s.{fk_col} IS DISTINCT FROM w.dev_v6 "
                   f"OR s.{eui_col} IS DISTINCT FROM w.eui)")
        save_before_images(run, "spaces", differs)
        n = run.execute(f"""
            UPDATE spaces s SET {fk_col} = w.dev_v6, {eui_col} = w.eui
            FROM ({want}) w WHERE s.id = w.space_v6 AND NOT {conflict}
              AND (s.{fk_col} IS DISTINCT FROM w.dev_v6 OR s.{eui_col} IS DISTINCT FROM w.eui)""")
        run.count("space_links", f"{kind}_spaces_linked", n)
        differs = (f"SELECT w.dev_v6 FROM ({want}) w JOIN {table} d ON d.id = w.dev_v6 "
                   f"WHERE d.assigned_space_id IS DISTINCT FROM w.space_v6")
        save_before_images(run, table, differs)
        n = run.execute(f"""
            UPDATE {table} d SET assigned_space_id = w.space_v6, assigned_at = w.assigned_at,
                   status = 'assigned', lifecycle_state = 'operational'
            FROM ({want}) w WHERE d.id = w.dev_v6 AND d.assigned_space_id IS DISTINCT FROM w.space_v6""")
        run.count("space_links", f"{kind}_devices_linked", n)
        gone = (f"SELECT d.id FROM {table} d JOIN lp_{table} w ON w.dev_v6 = d.id "
                f"WHERE w.decision = 'apply' AND NOT w.linked AND d.assigned_space_id IS NOT NULL")
        save_before_images(run, table, gone)
        n = run.execute(f"""UPDATE {table} SET assigned_space_id = NULL, assigned_at = NULL, status = 'unassigned'
                            WHERE id IN ({gone})""")
        if n:
            run.count("space_links", f"{kind}_devices_unlinked", n)
        record_state(run, table, f"SELECT w.dev_v6, w.v5_sig, d.assigned_space_id FROM lp_{table} w "
                                 f"JOIN {table} d ON d.id = w.dev_v6 WHERE w.decision = 'apply'")
        note_conflicts(run, table, f"lp_{table}", "dev_v6", f"""
            '{kind} ' || eui || ': V5 now places it on ' || coalesce(nullif(v5_sig, ''), 'no space')
            || ', V6 moved it to ' || coalesce(nullif(v6_now, ''), 'no space') || ' after phase 1: V6 kept'""")
        decide(run, table, "tenant_changed", f"""
            SELECT v5_id, '{kind} ' || eui || ': V5 moved it to space ' || space_v6 || ' of another tenant since '
                   || 'the last run; V6 has no such move (devices keep their tenant): not applied'
            FROM lp_{table} WHERE decision = 'tenant_changed'""")


def migrate_assignments(run):
    """device_assignments from V5's links, for the devices whose link this run applied: one open row
    per current link, a closed one per link that only a soft-deleted space still holds (assignment
    history). A device V5 moved closes the open rows the tool wrote for its old space."""
    total = 0
    for table, (kind, _, _) in DEVICE_KINDS.items():
        closed = run.execute(f"""
            UPDATE device_assignments a SET unassigned_at = %(now)s::timestamptz AT TIME ZONE 'UTC',
                   unassignment_reason = 'moved in V5 (parking-migrate)'
            FROM lp_{table} w
            WHERE w.decision = 'apply' AND a.device_id = w.dev_v6 AND a.unassigned_at IS NULL
              AND a.space_id IS DISTINCT FROM (CASE WHEN w.linked THEN w.space_v6 END)
              AND EXISTS (SELECT 1 FROM {L}.id_map i WHERE i.entity = 'device_assignments'
                          AND i.action = 'inserted' AND i.v6_id = a.id::text)""")
        if closed:
            run.count("device_assignments", "closed", closed)
        key = f"'{kind}:' || m.v5_id || ':' || c.space_v5"
        total += run.execute(f"""
            WITH rows AS (
                SELECT {F.derived('device_assignments', key)} AS id, sp.tenant_id, '{kind}' AS device_type,
                       m.v6_id AS device_id, m.eui AS dev_eui, ms.v6_id::uuid AS space_id,
                       {F.utc_naive('coalesce(c.space_created, m.created_at)')} AS assigned_at,
                       CASE WHEN c.deleted_at IS NOT NULL THEN {F.utc_naive('c.deleted_at')} END AS unassigned_at,
                       CASE WHEN c.deleted_at IS NOT NULL THEN 'V5 space soft-deleted' END AS unassignment_reason
                FROM m_{table} m JOIN cand_{table} c ON c.dev_id = m.id
                JOIN lp_{table} w ON w.dev_v6 = m.v6_id AND w.decision = 'apply'
                {F.mapped('spaces', 'ms', 'c.space_v5')}
                JOIN spaces sp ON sp.id = ms.v6_id::uuid
                WHERE m.action IN ('insert', 'match', 'mapped')
                  AND ((c.deleted_at IS NULL AND c.space_v5 = m.space_v5) OR c.deleted_at IS NOT NULL)),
            ins AS (
                INSERT INTO device_assignments (id, tenant_id, device_type, device_id, dev_eui, space_id,
                                                assigned_at, unassigned_at, assignment_reason, unassignment_reason)
                SELECT id, tenant_id, device_type, device_id, dev_eui, space_id, assigned_at, unassigned_at,
                       'migrated from V5 by parking-migrate', unassignment_reason FROM rows
                ON CONFLICT (id) DO NOTHING RETURNING id)
            INSERT INTO {L}.id_map (entity, v5_id, v6_id, action, run_id)
            SELECT 'device_assignments', id::text, id::text, 'inserted', %(run)s FROM ins
            ON CONFLICT (entity, v5_id) DO NOTHING""")
    run.count("device_assignments", "inserted", total)


def migrate_reservations(run):
    """Reservations: V6 status by §3.3, an ended window never 'active' (closed as completed), and
    every row gets a user: by lower(email), else the placeholder user of anonymous bookings."""
    status = F.reservation_status("status", "end_time")
    plan(run, "reservations", f"""
        WITH c AS (
            SELECT s.*, prev.v6_id::uuid AS prev_id, ms.v6_id::uuid AS space_v6, sp.tenant_id AS tenant_v6,
                   (SELECT min(u.id::text)::uuid FROM users u WHERE lower(u.email) = lower(s.user_email)
                    HAVING count(*) = 1) AS user_v6,
                   EXISTS (SELECT 1 FROM reservations x WHERE x.id = s.id) AS id_taken,
                   sp5.deleted_at AS space_deleted_at
            FROM stg_reservations s {F.prev_join('reservations')} {F.mapped('spaces', 'ms', 's.space_id')}
            LEFT JOIN spaces sp ON sp.id = ms.v6_id::uuid
            LEFT JOIN stg_spaces sp5 ON sp5.id = s.space_id)
        SELECT c.*, id::text AS v5_id,
            CASE WHEN prev_id IS NOT NULL THEN prev_id WHEN id_taken THEN {F.derived('reservations', 'id')}
                 ELSE id END AS v6_id,
            CASE {prev_state('reservations', 'reservations')}
                 WHEN space_deleted_at IS NOT NULL THEN 'skip'
                 WHEN space_v6 IS NULL THEN 'reject' ELSE 'insert' END AS action,
            CASE {PREV_REASON}
                 WHEN space_deleted_at IS NOT NULL
                 THEN 'reservation ' || id || ' (' || start_time || ' - ' || end_time || ', V5 status '
                      || coalesce(status, 'none') || ') is on V5 space ' || space_id || ', soft-deleted at '
                      || space_deleted_at || ': not migrated as a live reservation (it stays in V5 and in '
                      || 'phase 4''s backup)'
                 WHEN space_v6 IS NULL THEN 'its space was not migrated' END AS reason,
            {status} AS status_v6, {F.reservation_status("status")} AS status_open
        FROM c""")
    anonymous = None
    if run.scalar("SELECT count(*) FROM m_reservations WHERE action = 'insert' AND user_v6 IS NULL"):
        anonymous = anonymous_user(run)
    run.execute("""
        INSERT INTO reservations (id, space_id, start_time, end_time, user_email, user_phone, status, metadata,
                                  created_at, updated_at, tenant_id, user_id)
        SELECT v6_id, space_v6, start_time, end_time, lower(user_email), user_phone, status_v6,
               coalesce(metadata, '{}') || jsonb_build_object('request_id', request_id::text, 'v5_status', status),
               coalesce(created_at, now()), coalesce(updated_at, now()), tenant_v6, coalesce(user_v6, %(anon)s::uuid)
        FROM m_reservations WHERE action = 'insert'""", dict(run.params, anon=anonymous))
    record_plan(run, "reservations")
    remember(run, "reservations", "m.status", "t.status", "m.action = 'insert'")
    for key, cond in (("ended_closed", "status_v6 <> status_open"), ("anonymous_user", "user_v6 IS NULL")):
        n = run.scalar(f"SELECT count(*) FROM m_reservations WHERE action = 'insert' AND {cond}")
        if n:
            run.count("reservations", key, n)


def anonymous_user(run):
    """The V6 user that owns V5 bookings without one (created once, inactive, no membership,
    a password hash of no password); recorded in the id map so rollback-1 removes it."""
    found = run.rows("SELECT id FROM users WHERE lower(email) = lower(%(email)s) ORDER BY id",
                     {"email": run.anonymous_email})
    if found:
        return found[0][0]
    key = "anonymous-bookings:" + run.anonymous_email.lower()
    user = mapping.derived_uuid("users", key)
    # created with the first booking it owns (the same row in every run over the same data)
    run.execute(f"""
        WITH ins AS (
            INSERT INTO users (id, email, name, hashed_password, metadata, is_active, email_verified, created_at,
                               updated_at)
            SELECT %(id)s::uuid, lower(%(email)s), %(name)s, %(hash)s, %(meta)s::jsonb, false, false, t, t
            FROM (SELECT coalesce(min(created_at), now()) AS t FROM m_reservations
                  WHERE user_v6 IS NULL AND action IN ('insert', 'mapped')) f
            RETURNING id)
        INSERT INTO {L}.id_map (entity, v5_id, v6_id, action, run_id)
        SELECT 'users', %(key)s, id::text, 'inserted', %(run)s FROM ins
        ON CONFLICT (entity, v5_id) DO UPDATE SET v6_id = EXCLUDED.v6_id, action = 'inserted',
                                                  run_id = EXCLUDED.run_id""",
                dict(run.params, id=user, email=run.anonymous_email, name=mapping.ANONYMOUS_USER_NAME,
                     hash=mapping.unusable_password_hash(key), key=key,
                     meta=json.dumps(mapping.ANONYMOUS_USER_METADATA)))
    run.count("users", "placeholder_created", 1)
    run.warnings.append(f"V5 bookings without a V6 user belong to the placeholder user {run.anonymous_email} "
                        f"({user}, inactive, cannot log in); their booking email stays in user_email")
    return user


def migrate_orphans(run):
    plan(run, "orphan_devices", f"""
        WITH c AS (
            SELECT s.*, {F.eui('s.dev_eui')} AS eui, prev.v6_id::uuid AS prev_id,
                   EXISTS (SELECT 1 FROM orphan_devices x WHERE x.id = s.id) AS id_taken
            FROM stg_orphan_devices s {F.prev_join('orphan_devices')}),
        d AS (
            SELECT c.*, (SELECT x.id FROM orphan_devices x WHERE x.dev_eui = c.eui) AS existing,
                   (EXISTS (SELECT 1 FROM sensor_devices x WHERE x.dev_eui = c.eui)
                    OR EXISTS (SELECT 1 FROM display_devices x WHERE x.dev_eui = c.eui)) AS registered,
                   row_number() OVER (PARTITION BY eui ORDER BY last_seen DESC NULLS LAST, id) AS eui_rank
            FROM c)
        SELECT d.*, id::text AS v5_id,
            CASE WHEN prev_id IS NOT NULL THEN prev_id WHEN existing IS NOT NULL THEN existing
                 WHEN id_taken THEN {F.derived('orphan_devices', 'id')} ELSE id END AS v6_id,
            CASE {prev_state('orphan_devices', 'orphan_devices')}
                 WHEN eui IS NULL THEN 'reject'
                 WHEN registered OR eui_rank > 1 THEN 'skip'
                 WHEN existing IS NOT NULL THEN 'match' ELSE 'insert' END AS action,
            CASE {PREV_REASON} WHEN eui IS NULL THEN {F.eui_reason('dev_eui')} END AS reason
        FROM d""")
    run.execute(f"""
        INSERT INTO orphan_devices (id, dev_eui, first_seen, last_seen, message_count, last_payload, created_at)
        SELECT v6_id, eui, {F.utc_naive('coalesce(first_seen, last_seen, now())')},
               {F.utc_naive('coalesce(last_seen, first_seen, now())')}, coalesce(uplink_count, 1),
               encode(last_payload, 'hex'), {F.utc_naive('coalesce(first_seen, now())')}
        FROM m_orphan_devices WHERE action = 'insert'""")
    record_plan(run, "orphan_devices")


def guarded(run, entity, v5_sig, v6_sig, differs, legacy):
    """TEMP table g_<entity>: per mapped row, apply | keep | same | conflict for a V5 value the tool
    keeps in step (row_state): V5 unchanged since the last run -> keep (V6's value stays, edited or
    not); V5 changed and V6 still holds what the tool wrote -> apply; both changed -> conflict, V6
    wins. Rows with no row_state yet (an earlier version's runs) follow `legacy`."""
    run.execute(f"""
        CREATE TEMP TABLE g_{entity} ON COMMIT DROP AS
        SELECT DISTINCT ON (t.id) t.id, m.v5_id, ({v5_sig})::text AS v5_sig, coalesce(({v6_sig})::text, '') AS v6_now,
               rs.v6_id IS NOT NULL AS known,
               CASE WHEN rs.v6_id IS NULL THEN CASE WHEN {legacy} AND {differs} THEN 'apply' ELSE 'keep' END
                    WHEN rs.v5_sig IS NOT DISTINCT FROM ({v5_sig})::text THEN 'keep'
                    WHEN NOT {differs} THEN 'same'
                    WHEN rs.v6_sig IS NOT DISTINCT FROM coalesce(({v6_sig})::text, '') THEN 'apply'
                    ELSE 'conflict' END AS decision
        FROM m_{entity} m JOIN {entity} t ON t.id = m.v6_id
        LEFT JOIN {L}.row_state rs ON rs.entity = '{entity}' AND rs.v6_id = t.id::text
        WHERE m.action = 'mapped' ORDER BY t.id, m.v5_id""")
    return f"SELECT id FROM g_{entity} WHERE decision = 'apply'"


def settle(run, entity, v6_sig, label):
    """After a guarded sync: row_state follows what was applied (or first recorded); a conflict is
    reported once (V5's new value noted, the V6 value the tool wrote kept for the gate)."""
    record_state(run, entity, f"SELECT g.id, g.v5_sig, {v6_sig} FROM g_{entity} g JOIN {entity} t ON t.id = g.id "
                              f"WHERE g.decision IN ('apply', 'same') OR NOT g.known")
    note_conflicts(run, entity, f"g_{entity}", "id", f"""
        '{label} ' || id || ': V5 changed it to ' || quote_literal(v5_sig) || ' and V6 to '
        || quote_literal(v6_now) || ' since the last run: V6 kept'""")


def sync_live_state(run):
    """What V5 keeps updating while live: a space's state, a device's last uplink, a reservation's
    status. A space's state and a reservation's status follow V5 only while V6 still holds what
    the tool wrote (guarded: V6's edits win, a conflict is reported); a device's last uplink only
    moves forward. Before-images keep rollback exact."""
    state = F.space_state("m.state")
    newer = "m.updated_at > coalesce(t.updated_at, '-infinity')"
    targets = guarded(run, "spaces", "m.state", "t.current_state",
                      f"(t.state IS DISTINCT FROM m.state OR t.current_state IS DISTINCT FROM {state})", newer)
    save_before_images(run, "spaces", targets)
    run.count("spaces", "state_synced", run.execute(f"""
        UPDATE spaces t SET state = m.state, current_state = {state},
               state_changed_at = {F.utc_naive('m.updated_at')}
        FROM m_spaces m WHERE t.id IN ({targets}) AND m.v6_id = t.id"""))
    settle(run, "spaces", "t.current_state", "space")
    for table in DEVICE_KINDS:
        seen = (f"SELECT t.id FROM {table} t JOIN m_{table} m ON m.v6_id = t.id WHERE m.action = 'mapped' "
                f"AND {F.utc_naive('m.last_seen_at')} > coalesce(t.last_seen_at, '-infinity')")
        save_before_images(run, table, seen)
        run.count(table, "last_seen_synced", run.execute(f"""
            UPDATE {table} t SET last_seen_at = {F.utc_naive('m.last_seen_at')}
            FROM m_{table} m WHERE t.id IN ({seen}) AND m.v6_id = t.id"""))
    status = F.reservation_status("m.status", "m.end_time")
    changed = guarded(run, "reservations", "m.status", "t.status", f"t.status IS DISTINCT FROM {status}", newer)
    save_before_images(run, "reservations", changed)
    run.count("reservations", "status_synced", run.execute(f"""
        UPDATE reservations t SET status = {status},
               metadata = coalesce(t.metadata, '{{}}') || jsonb_build_object('v5_status', m.status)
        FROM m_reservations m WHERE t.id IN ({changed}) AND m.v6_id = t.id"""))
    # migrated while its window was open, ended since and still ongoing for V5: closed like a new one
    ongoing = mapping.sql_literal(mapping.RESERVATION_ONGOING)
    ended = (f"SELECT t.id FROM reservations t JOIN m_reservations m ON m.v6_id = t.id WHERE m.action = 'mapped' "
             f"AND t.status = {ongoing} AND t.end_time <= %(now)s::timestamptz "
             f"AND {F.reservation_status('m.status')} = {ongoing}")
    save_before_images(run, "reservations", ended)
    closed = run.rows(f"""UPDATE reservations t SET status = {mapping.sql_literal(mapping.RESERVATION_ENDED_STATUS)}
                          WHERE t.id IN ({ended}) RETURNING t.id""")
    if closed:
        run.count("reservations", "ended_closed", len(closed))
        # the tool wrote it: row_state follows, so the gate does not take it for a V6 edit
        run.execute(f"""UPDATE {L}.row_state SET v6_sig = %(s)s WHERE entity = 'reservations'
                        AND v6_id = ANY(%(ids)s)""",
                    dict(run.params, s=mapping.RESERVATION_ENDED_STATUS, ids=[str(r[0]) for r in closed]))
    settle(run, "reservations", "t.status", "reservation")
    # migrated without a user (by an earlier version): the user found now, else the placeholder
    nouser = ("SELECT t.id FROM reservations t JOIN m_reservations m ON m.v6_id = t.id "
              "WHERE m.action = 'mapped' AND t.user_id IS NULL")
    if run.scalar(f"SELECT count(*) FROM ({nouser}) x"):
        anonymous = anonymous_user(run)
        save_before_images(run, "reservations", nouser)
        run.count("reservations", "user_linked", run.execute(f"""
            UPDATE reservations t SET user_id = coalesce(m.user_v6, %(anon)s::uuid)
            FROM m_reservations m WHERE t.id IN ({nouser}) AND m.v6_id = t.id""", dict(run.params, anon=anonymous)))


def resolve_orphans(run):
    """V6 orphan rows whose EUI is now a registered sensor are resolved (removed): V6 lists as
    orphans the uplinks of sensors it did not know. Display EUIs are left: V6's webhook consults
    only sensor_devices (docs/v6-contract.md), so it writes an orphan row for every display frame
    again - resolving them would change nothing and keep the gate from ever seeing a complete
    migration while displays send. Before-images let rollback put resolved rows back."""
    registered = ("SELECT o.id FROM orphan_devices o WHERE EXISTS (SELECT 1 FROM sensor_devices d "
                  "WHERE d.dev_eui = o.dev_eui)")
    save_before_images(run, "orphan_devices", registered)
    run.count("orphan_devices", "resolved", run.execute(f"DELETE FROM orphan_devices WHERE id IN ({registered})"))


def migrate_readings(run):
    """V5 readings -> V6 readings: device by EUI, tenant = the device's V6 tenant, fcnt required.
    The V6 id is derived from the V5 id (idempotent); raw_payload keeps the V5 row and marks it."""
    occupied = "CASE upper(s.occupancy_state) WHEN 'OCCUPIED' THEN true WHEN 'FREE' THEN false END"
    n = run.scalar(f"""
        WITH ins AS (
            INSERT INTO sensor_readings (id, tenant_id, device_id, dev_eui, fcnt, occupied, rssi, snr, raw_payload,
                                         received_at, created_at)
            SELECT {F.sequential('sensor_readings', 's.id')}, d.tenant_id, d.id, d.dev_eui, s.fcnt, {occupied},
                   s.rssi, s.snr, {F.READING_PAYLOAD}, {F.utc_naive('s.ts')}, {F.utc_naive('s.ts')}
            FROM stg_sensor_readings s JOIN sensor_devices d ON d.dev_eui = upper(s.device_eui)
            WHERE s.fcnt IS NOT NULL AND s.ts IS NOT NULL
            ON CONFLICT (id) DO NOTHING RETURNING 1)
        SELECT count(*) FROM ins""")
    run.count("sensor_readings", "inserted", n)
    rej = run.execute(f"""
        INSERT INTO {L}.rejects (run_id, entity, v5_id, reason)
        SELECT %(run)s, 'sensor_readings', s.id::text,
               CASE WHEN d.id IS NULL THEN 'no V6 sensor device with EUI ' || quote_literal(s.device_eui)
                    WHEN s.fcnt IS NULL THEN 'fcnt missing: V6 requires a frame counter'
                    ELSE 'timestamp missing' END
        FROM stg_sensor_readings s LEFT JOIN sensor_devices d ON d.dev_eui = upper(s.device_eui)
        WHERE d.id IS NULL OR s.fcnt IS NULL OR s.ts IS NULL
        ON CONFLICT DO NOTHING""")
    run.count("sensor_readings", "rejected", rej)


def migrate_state_changes(run):
    n = run.scalar(f"""
        WITH ins AS (
            INSERT INTO state_changes (id, space_id, previous_state, new_state, source, request_id, metadata,
                                       "timestamp")
            SELECT s.id, m.v6_id::uuid, s.previous_state, s.new_state, s.source, s.request_id, s.metadata, s.ts
            FROM stg_state_changes s {F.mapped('spaces', 'm', 's.space_id')}
            WHERE m.v6_id IS NOT NULL
            ON CONFLICT (id) DO NOTHING RETURNING id),
        led AS (
            INSERT INTO {L}.id_map (entity, v5_id, v6_id, action, run_id)
            SELECT 'state_changes', id::text, id::text, 'inserted', %(run)s FROM ins RETURNING 1)
        SELECT count(*) FROM led""")
    run.count("state_changes", "inserted", n)
    rej = run.execute(f"""
        INSERT INTO {L}.rejects (run_id, entity, v5_id, reason)
        SELECT %(run)s, 'state_changes', s.id::text,
               CASE WHEN m.v6_id IS NULL THEN 'its space was not migrated'
                    ELSE 'id ' || s.id || ' is taken in V6 by another state change' END
        FROM stg_state_changes s {F.mapped('spaces', 'm', 's.space_id')}
        WHERE m.v6_id IS NULL OR (EXISTS (SELECT 1 FROM state_changes x WHERE x.id = s.id)
              AND NOT EXISTS (SELECT 1 FROM {L}.id_map i WHERE i.entity = 'state_changes' AND i.v5_id = s.id::text)
              AND NOT EXISTS (SELECT 1 FROM {L}.history_ranges r WHERE r.tbl = 'state_changes'
                              AND s.id > r.lo AND s.id <= r.hi))
        ON CONFLICT DO NOTHING""")
    run.count("state_changes", "rejected", rej)
    if n:
        advance_sequence(run)


READING_COLUMNS = "id, tenant_id, device_id, dev_eui, fcnt, occupied, rssi, snr, raw_payload, received_at, created_at"
STATE_COLUMNS = 'id, space_id, previous_state, new_state, source, request_id, metadata, "timestamp"'


def is_superuser(run):
    return bool(run.scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"))


def values_list(rows, types):
    """A VALUES list literal for a small map shipped into the source SELECT (devices, spaces)."""
    def lit(v, t):
        return "NULL" if v is None else "'" + str(v).replace("'", "''") + "'::" + t
    return ", ".join("(" + ", ".join(lit(v, t) for v, t in zip(row, types)) + ")" for row in rows)


def bulk_copy(run, table, select_sql, columns, fk_check_sql):
    """Stream mapped V5 rows straight into a V6 table.

    As a superuser the per-row FK triggers are skipped for this session only
    (session_replication_role = replica; other sessions are unaffected and nothing is locked)
    and referential integrity is then proven set-based: any violation fails the run, which
    rolls everything back. Otherwise the triggers check each row as usual.
    """
    deferred = is_superuser(run)
    if deferred:
        run.execute("SET LOCAL session_replication_role = replica")
    copy_in = f"COPY {table} ({columns}) FROM STDIN"
    run.queries.append(f"COPY ({' '.join(select_sql.split())[:400]}...) TO STDOUT  ->  {copy_in}")
    n = pgcopy.stream(run.src, select_sql, run.cur, copy_in)
    if deferred:
        run.execute("SET LOCAL session_replication_role = origin")
        bad = run.scalar(fk_check_sql)
        if bad:
            raise ParkingError(f"{bad} rows loaded into {table} break a foreign key; the run is rolled back")
    return n


def copy_rejects(run, entity, select_sql):
    """Stream reject rows (run_id, entity, v5_id, reason) from the source into the ledger."""
    copy_in = f"COPY {L}.rejects (run_id, entity, v5_id, reason) FROM STDIN"
    run.queries.append(f"COPY ({' '.join(select_sql.split())[:300]}...) TO STDOUT  ->  {copy_in}")
    return pgcopy.stream(run.src, select_sql, run.cur, copy_in)


def direct_readings(run, where):
    """New V5 readings (above the watermark) -> V6 in one streamed COPY, mapped on the source."""
    devices = run.rows("SELECT dev_eui, id::text, tenant_id::text FROM sensor_devices")
    occupied = "CASE upper(s.occupancy_state) WHEN 'OCCUPIED' THEN true WHEN 'FREE' THEN false END"
    device_map = (f"(VALUES {values_list(devices, ('text', 'uuid', 'uuid'))}) m(eui, device_id, tenant_id)"
                  if devices else "(SELECT NULL::text, NULL::uuid, NULL::uuid WHERE false) m(eui, device_id, tenant_id)")
    select = f"""
        SELECT {F.sequential('sensor_readings', 's.id')}, m.tenant_id, m.device_id, m.eui, s.fcnt, {occupied},
               s.rssi, s.snr, {F.READING_PAYLOAD}, {F.utc_naive('s."timestamp"')}, {F.utc_naive('s."timestamp"')}
        FROM sensor_readings s JOIN {device_map} ON m.eui = upper(s.device_eui)
        WHERE s.fcnt IS NOT NULL AND s."timestamp" IS NOT NULL AND {where}"""
    n = bulk_copy(run, "sensor_readings", select, READING_COLUMNS, """
        SELECT count(*) FROM sensor_readings r
        WHERE NOT EXISTS (SELECT 1 FROM sensor_devices d WHERE d.id = r.device_id)
           OR NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = r.tenant_id)""")
    run.count("sensor_readings", "inserted", n)
    rej = copy_rejects(run, "sensor_readings", f"""
        SELECT {mapping.sql_literal(run.run_id)}::uuid, 'sensor_readings', s.id::text,
               CASE WHEN m.eui IS NULL THEN 'no V6 sensor device with EUI ' || quote_literal(s.device_eui)
                    WHEN s.fcnt IS NULL THEN 'fcnt missing: V6 requires a frame counter'
                    ELSE 'timestamp missing' END
        FROM sensor_readings s LEFT JOIN {device_map} ON m.eui = upper(s.device_eui)
        WHERE (m.eui IS NULL OR s.fcnt IS NULL OR s."timestamp" IS NULL) AND {where}""")
    run.count("sensor_readings", "rejected", rej)


def direct_state_changes(run, where, lo, hi):
    """New V5 state changes -> V6 keeping their ids (one streamed COPY); the id range goes to the ledger."""
    taken = run.scalar("SELECT count(*) FROM state_changes WHERE id > %(lo)s AND id <= %(hi)s", {"lo": lo, "hi": hi})
    if taken:  # V6 has rows in that id range: the row-by-row path handles the conflicts
        staging.stage(run, "state_changes", {}, where)
        return migrate_state_changes(run)
    spaces = run.rows(f"SELECT v5_id, v6_id FROM {L}.id_map WHERE entity = 'spaces'")
    space_map = (f"(VALUES {values_list(spaces, ('uuid', 'uuid'))}) m(v5, v6)" if spaces
                 else "(SELECT NULL::uuid, NULL::uuid WHERE false) m(v5, v6)")
    select = f"""
        SELECT s.id, m.v6, s.previous_state, s.new_state, s.source, s.request_id, s.metadata, s."timestamp"
        FROM state_changes s JOIN {space_map} ON m.v5 = s.space_id WHERE {where}"""
    n = bulk_copy(run, "state_changes", select, STATE_COLUMNS, """
        SELECT count(*) FROM state_changes c WHERE NOT EXISTS (SELECT 1 FROM spaces s WHERE s.id = c.space_id)""")
    run.count("state_changes", "inserted", n)
    if n:
        run.execute(f"INSERT INTO {L}.history_ranges (run_id, tbl, lo, hi) VALUES (%(run)s, 'state_changes', "
                    f"%(lo)s, %(hi)s)", dict(run.params, lo=lo, hi=hi))
    rej = copy_rejects(run, "state_changes", f"""
        SELECT {mapping.sql_literal(run.run_id)}::uuid, 'state_changes', s.id::text, 'its space was not migrated'
        FROM state_changes s LEFT JOIN {space_map} ON m.v5 = s.space_id WHERE m.v5 IS NULL AND {where}""")
    run.count("state_changes", "rejected", rej)
    advance_sequence(run)


def advance_sequence(run):
    """Keep V6's state_changes sequence ahead of the copied ids; rollback puts it back.

    ALTER SEQUENCE ... RESTART is transactional (setval is not): check mode and a failed run
    leave the sequence where it was, and the undo recorded here is exact (last_value, is_called)."""
    seq = run.scalar("SELECT pg_get_serial_sequence('state_changes', 'id')")
    if not seq:
        return
    last, called = run.rows(f"SELECT last_value, is_called FROM {seq}")[0]
    top = run.scalar("SELECT max(id) FROM state_changes")
    if top and top > last:
        undo = f"ALTER SEQUENCE {seq} RESTART WITH {last}" + (f"; SELECT nextval('{seq}')" if called else "")
        run.execute(f"""INSERT INTO {L}.objects (run_id, kind, name, undo_sql)
                        SELECT %(run)s, 'sequence', '{seq}', %(undo)s
                        WHERE NOT EXISTS (SELECT 1 FROM {L}.objects WHERE kind = 'sequence' AND name = '{seq}')""",
                    dict(run.params, undo=undo))
        run.execute(f"ALTER SEQUENCE {seq} RESTART WITH {top}")
        run.execute(f"SELECT nextval('{seq}')")


def psycopg_literal(value):
    return "'" + str(value).replace("'", "''") + "'"


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------

def v6_counts(run):
    return {t: run.scalar(f"SELECT count(*) FROM {t}") for t in V6_TABLES}


def check_platform_tenant(run):
    if run.scalar("SELECT count(*) FROM tenants WHERE id = %(platform)s::uuid") != 1:
        raise ConfigError(f"the platform tenant {run.platform} is absent from the target database: create it "
                          "in V6 (name Platform, slug platform, type platform) or set platform_tenant_id")


def migrate(src_conn, tgt_conn, run_id, platform, mode="full", history_since=None, allow_rejects=False,
            app_role=None, app_role_password=None, progress=None,
            history_retention_days=mapping.HISTORY_RETENTION_DAYS, anonymous_user_email=None, gate=None):
    """The whole phase-1 run inside the target's current transaction. Returns the result dict.

    history_retention_days: readings older than the run's time minus this many days are not
    migrated (V6's cleanup deletes them); 0 migrates all of them.

    gate: a function(run, result) -> gate result dict, called last inside the run's transaction
    (before the caller commits); a gate that does not pass raises GateFailed, so a failing state
    is never committed.

    The caller commits (or rolls back in check mode) and owns the connections.
    """
    t_start = time.time()
    src_conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    run = Run(src_conn, tgt_conn, run_id, platform, progress)
    if anonymous_user_email:
        run.anonymous_email = anonymous_user_email
    ledger.lock(run.cur)  # before any DDL: two runs never race on the ledger's creation
    ledger.ensure(run.cur)
    optional = schema.check(run.src, run.cur)
    check_platform_tenant(run)
    marks = ledger.last_watermarks(run.cur, PHASE)
    if mode == "delta" and not marks:
        raise ConfigError("mode=delta needs an earlier successful full run to start from; run mode=full first")
    ledger.start(run.cur, run_id, PHASE, mode, "present", False)
    before = v6_counts(run)

    def step(name, fn, *args):
        t0 = time.time()
        fn(*args)
        run.timings[name] = round(time.time() - t0, 3)
        run.progress(f"{name}: {run.counts.get(name, {})} in {run.timings[name]}s")

    def staged(name, where=None):
        t0 = time.time()
        n = staging.stage(run, name, optional, where)
        run.timings[f"stage {name}"] = round(time.time() - t0, 3)
        run.count(name, "read", n)
        return n

    for name in ("tenants", "users", "user_memberships", "sites", "spaces", "sensor_devices", "display_devices",
                 "reservations", "orphan_devices"):
        staged(name)
    step("tenants", migrate_tenants, run)
    step("users", migrate_users, run)
    step("user_memberships", migrate_memberships, run)
    step("sites", migrate_sites, run)
    step("spaces", migrate_spaces, run)
    step("sensor_devices", migrate_devices, run, "sensor_devices")
    step("display_devices", migrate_devices, run, "display_devices")
    step("space_links", link_spaces, run)
    step("device_assignments", migrate_assignments, run)
    step("reservations", migrate_reservations, run)
    step("orphan_devices", migrate_orphans, run)
    step("orphan_devices", resolve_orphans, run)
    step("live_state", sync_live_state, run)

    new_marks = dict(marks)
    since = f' AND s."timestamp" >= {psycopg_literal(history_since)}::timestamptz' if history_since else ""
    cutoff = mapping.history_cutoff(run.now, history_retention_days)
    new_marks[RETENTION_MARK] = mapping.retention_recorded(marks.get(RETENTION_MARK), history_retention_days)
    snap = run.src.connection.cursor()
    snap.execute("SELECT pg_current_snapshot()::text")  # the snapshot every V5 read of this run shares
    new_marks[F.SNAPSHOT_MARK] = snap.fetchone()[0]
    for table, staged_fn in (("sensor_readings", migrate_readings), ("state_changes", migrate_state_changes)):
        wm = int(marks.get(table, 0))
        src = run.src.connection.cursor()
        src.execute(f"SELECT coalesce(max(id), 0) FROM {table}")
        top = int(src.fetchone()[0])
        # V6 deletes readings older than its retention: those stay in V5 (and phase 4's backup)
        retained = table in RETAINED and cutoff is not None
        kept = f" AND {F.history_kept(TS, cutoff)}" if retained else ""
        t0 = time.time()
        if wm > 0:
            # rows at or below the watermark committed after the last run's snapshot: re-read a
            # window below it through staging, where ON CONFLICT skips what is already there
            staged(table, f"id > {max(0, wm - HISTORY_OVERLAP)} AND id <= {wm}{since.replace('s.', '')}{kept}")
            step(table, staged_fn, run)
        if top > wm:
            where = f"s.id > {wm}{since}"
            if retained:
                src.execute(f"SELECT count(*) FROM {table} s WHERE {where} AND s.id <= {top} "
                            f"AND {F.history_expired('s.' + TS, cutoff)}")
                skipped = int(src.fetchone()[0])
                if skipped:
                    run.count(table, "skipped_retention", skipped)
                where += f" AND {F.history_kept('s.' + TS, cutoff)}"
            if table == "sensor_readings":
                step(table, direct_readings, run, where)
            else:
                step(table, direct_state_changes, run, where, wm, top)
        new_marks[table] = max(wm, top)
        seconds = time.time() - t0
        moved = run.counts.get(table, {}).get("inserted", 0)
        run.timings[f"history {table}"] = round(seconds, 3)
        run.progress(f"{table}: {moved} rows migrated in {seconds:.1f}s ({moved / max(seconds, 1e-6):.0f} rows/s)")

    if app_role:
        step("rls", rls.ensure, run, app_role, app_role_password)

    after = v6_counts(run)
    rejects = run.rows(f"SELECT entity, v5_id, reason FROM {L}.rejects WHERE run_id = %(run)s ORDER BY 1, 2 LIMIT 200")
    reject_total = run.scalar(f"SELECT count(*) FROM {L}.rejects WHERE run_id = %(run)s")
    by_reason = run.rows(f"SELECT entity, regexp_replace(reason, $q$'.*'$q$, $q$'...'$q$) AS r, count(*) "
                         f"FROM {L}.rejects WHERE run_id = %(run)s GROUP BY 1, 2 ORDER BY 1, 3 DESC")
    # what this run did, not row counts: V6 may be live and writing on its own
    changed = any(v for e in run.counts.values() for k, v in e.items()
                  if k in ("inserted", "created", "resolved", "password_set", "placeholder_created")
                  or k.endswith(("linked", "synced", "closed", "reordered")))
    decisions = run.rows(f"""SELECT entity, v5_id, decision, detail FROM {L}.decisions WHERE run_id = %(run)s
                             ORDER BY decision, entity, v5_id LIMIT 1000""")
    decision_counts = run.rows(f"""SELECT decision, entity, count(*) FROM {L}.decisions WHERE run_id = %(run)s
                                   GROUP BY 1, 2 ORDER BY 1, 2""")
    status = "succeeded"
    ledger.finish(run.cur, run_id, status, run.counts, new_marks)
    result = {
        "run_id": run_id, "mode": mode, "changed": changed, "counts": run.counts,
        "rejects": [{"entity": e, "v5_id": i, "reason": r} for e, i, r in rejects],
        "rejects_total": reject_total,
        "rejects_by_reason": [{"entity": e, "reason": r, "count": n} for e, r, n in by_reason],
        "warnings": run.warnings, "watermarks": new_marks, "timings": run.timings,
        "tenant_is_active_differences": run.tenant_differences,
        "decisions": [{"entity": e, "v5_id": i, "decision": d, "detail": t} for e, i, d, t in decisions],
        "decision_counts": [{"decision": d, "entity": e, "count": n} for d, e, n in decision_counts],
        "history_retention_days": int(history_retention_days or 0),
        "history_cutoff": cutoff.isoformat() if cutoff is not None else None,
        "diff": {"before": before, "after": after}, "executed_queries": run.queries,
        "seconds": round(time.time() - t_start, 3),
    }
    if rejects and not allow_rejects:
        raise RejectsPresent(f"{reject_total} V5 rows could not be placed (first: {rejects[0][0]} "
                             f"{rejects[0][1]}: {rejects[0][2]}); nothing was written. Fix the source data, or "
                             "set allow_rejects: true to migrate the rest and keep them in the report", result)
    if gate is not None:
        t0 = time.time()
        result["gate"] = gate(run, result)
        run.timings["gate"] = round(time.time() - t0, 3)
        run.progress(f"gate (independent oracle): {'passed' if result['gate']['passed'] else 'FAILED'} "
                     f"in {run.timings['gate']}s")
        if not result["gate"]["passed"]:
            raise GateFailed("the verification gate failed inside the run, so nothing was committed: "
                             + oracle.summary(result["gate"]), result)
    return result


def oracle_gate(run, result):
    """The gate for migrate(gate=...): the independent oracle over this run's uncommitted writes."""
    cutoff = result.get("history_cutoff")
    return oracle.check(run.src, run.cur, run.platform, run_id=run.run_id, watermarks=result["watermarks"],
                        now=run.now, retention_cutoff=cutoff, anonymous_email=run.anonymous_email)
