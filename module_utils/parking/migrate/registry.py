"""The entities phase 1 inserts, in dependency order (phase 1 engine, see __init__).

tenants, users, memberships (and the login order of a user's memberships), sites, spaces,
sensor and display devices (placed on a space by the rule, DEVICE_KINDS), reservations (and the
placeholder user of anonymous bookings), orphan devices. Each builds its plan m_<entity>,
inserts the `insert` rows set-based and records the plan in the ledger.
"""
import json

from .. import mapping, sqlfrag as F
from .run import L, PREV_REASON, decide, plan, prev_state, record_plan, remember


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
