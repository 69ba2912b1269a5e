"""The phase-1 oracle: what V6 must hold, computed from V5 by a path of its own.

Written from reference/v5-to-v6-mapping.md, not from the engine: it imports neither
`migrate` nor the engine's SQL fragments or value tables (the rules it needs are restated
below, from the reference's sections), reads V5 and V6 with plain queries, matches rows by
natural keys (tenant id or slug, lower(email), site name per tenant, space code per site,
EUI, reservation window) and compares per tenant:

  tenants, users, memberships (tenant, email, role), sites, spaces (live and soft-deleted),
  sensor and display devices (EUI -> tenant and space), reservations (space, window, status
  class, user), readings per device and state changes per space up to the watermarks.

From the ledger it takes only facts, never the plan: which V6 rows the tool inserted (an
inserted row V5 does not explain is an extra), which V5 rows were rejects (the run fails on
them unless they are allowed; they are listed, not compared), and the value the tool last
wrote to a device link or a reservation status (a V6 value that differs from it is an edit
made in V6 after phase 1: V6 wins, the edit is listed and not compared).

Rows V6 had before phase 1 (matched, not inserted) are checked for presence, tenant and
placement; their own attributes (a kept name, a kept role) are V6's.
"""
import datetime as dt
import re

from .sqlfrag import seen_by_run

LEDGER = "parking_migrate"
PLATFORM = "00000000-0000-0000-0000-000000000000"
READING_MARKER_LIKE = '{"migrated_by" : "parking-migrate"%'

# reference §3.4: V5 role -> V6 role; platform_admin is an owner membership in the platform tenant
ROLE = {"owner": "owner", "admin": "admin", "operator": "operator", "viewer": "viewer", "platform_admin": "owner"}
ROLE_RANK = {"owner": 4, "admin": 3, "operator": 2, "viewer": 1}
# reference §3.3: V5 reservation status -> V6 (anything else: completed)
STATUS = {"pending": "active", "confirmed": "active", "active": "active", "cancelled": "cancelled",
          "expired": "completed", "completed": "completed", "no_show": "no_show"}
# reference §5 C16: 16 hex digits, uppercase; the usual separators are not part of an EUI
_HEX16 = re.compile(r"^[0-9A-F]{16}$")
_SEP = re.compile(r"[\s:\-]")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
DEVICE_TABLES = {"sensor_devices": ("sensor_eui", "sensor_device_id"),
                 "display_devices": ("display_eui", "display_device_id")}
MAX_LISTED = 50
ANONYMOUS_EMAIL = "v5-anonymous-bookings@parking-migrate.invalid"


def norm_eui(value):
    if value is None:
        return None
    text = _SEP.sub("", str(value)).upper()
    return text if _HEX16.match(text) else None


class Oracle:
    def __init__(self, src_cur, tgt_cur, platform=PLATFORM, run_id=None, watermarks=None, now=None,
                 retention_cutoff=None, anonymous_email=ANONYMOUS_EMAIL):
        self.src = src_cur
        self.tgt = tgt_cur
        self.platform = platform
        self.run_id = run_id
        self.watermarks = watermarks or {}
        self.now = now
        self.cutoff = retention_cutoff
        self.anonymous_email = (anonymous_email or ANONYMOUS_EMAIL).lower()
        self.differences = []     # (entity, tenant, text)
        self.excused = []         # rejects and skips: listed, not compared
        self.v6_edits = []        # V6 changed what the tool wrote: V6 wins
        self.per_tenant = {}      # tenant -> entity -> {"expected": n, "found": n}
        self.matched = {}         # entity -> V6 ids explained by V5

    # ---------------------------------------------------------------- helpers
    def q5(self, sql, params=None):
        self.src.execute(sql, params)
        return self.src.fetchall()

    def q6(self, sql, params=None):
        self.tgt.execute(sql, params)
        return self.tgt.fetchall()

    def v5_has(self, table, column):
        return bool(self.q5("SELECT 1 FROM information_schema.columns WHERE table_schema = 'public' "
                            "AND table_name = %s AND column_name = %s", (table, column)))

    def diff(self, entity, tenant, text):
        self.differences.append((entity, str(tenant), text))

    def tally(self, tenant, entity, key):
        cell = self.per_tenant.setdefault(str(tenant), {}).setdefault(entity, {"expected": 0, "found": 0})
        cell[key] += 1

    def found(self, entity, tenant, v6_id):
        self.tally(tenant, entity, "found")
        self.matched.setdefault(entity, set()).add(str(v6_id))

    # ---------------------------------------------------------------- ledger facts
    def load_ledger(self):
        self.inserted = {}
        self.inserted_from = {}  # (entity, V6 id) -> the V5 id it was inserted for
        self.identity = {}   # (entity, V5 id) -> V6 id: only to recognise a row V6 renamed
        for entity, v5_id, v6_id, action in self.q6(f"SELECT entity, v5_id, v6_id, action FROM {LEDGER}.id_map "
                                                    "WHERE entity IN ('tenants', 'sites', 'spaces', 'users') "
                                                    "OR action = 'inserted'"):
            if action == "inserted":
                self.inserted.setdefault(entity, set()).add(v6_id)
                self.inserted_from[(entity, v6_id)] = v5_id
            self.identity[(entity, v5_id)] = v6_id
        run = self.run_id or (self.q6(f"SELECT run_id::text FROM {LEDGER}.runs WHERE phase = 'phase1' "
                                      "AND status = 'succeeded' AND state = 'present' AND NOT check_mode "
                                      "ORDER BY finished_at DESC LIMIT 1") or [[None]])[0][0]
        self.rejected = {}
        self.v6_deleted = set()
        if run and self.q6(f"SELECT to_regclass('{LEDGER}.decisions') IS NOT NULL")[0][0]:
            # rows an earlier run migrated and V6 deleted since: V6's deletion wins (not re-created)
            self.v6_deleted = set(self.q6(f"SELECT entity, v5_id FROM {LEDGER}.decisions WHERE run_id = %s::uuid "
                                          "AND decision = 'not_migrated' AND detail LIKE %s",
                                          (run, "migrated by an earlier run, then deleted in V6%")))
        if run:
            for entity, v5_id, reason in self.q6(f"SELECT entity, v5_id, reason FROM {LEDGER}.rejects "
                                                 "WHERE run_id = %s::uuid", (run,)):
                self.rejected[(entity, v5_id)] = reason
        self.written = {}
        if self.q6(f"SELECT to_regclass('{LEDGER}.row_state') IS NOT NULL")[0][0]:
            for entity, v6_id, v6_sig, run in self.q6(f"SELECT entity, v6_id, v6_sig, run_id::text "
                                                      f"FROM {LEDGER}.row_state"):
                self.written[(entity, v6_id)] = (v6_sig, run)

    def excuse(self, entity, v5_id, what):
        if (entity, str(v5_id)) in self.v6_deleted:
            self.v6_edits.append({"entity": entity, "v5_id": str(v5_id), "v5_says": what, "v6_has": "deleted",
                                  "field": "row"})
            return True
        reason = self.rejected.get((entity, str(v5_id)))
        if reason is not None:
            self.excused.append({"entity": entity, "v5_id": str(v5_id), "what": what, "reason": reason})
            return True
        return False

    def renamed(self, entity, v5_id, key, rows):
        """The V6 row recorded for this V5 row when V6 changed its natural key (a V6 edit), else None."""
        v6_id = self.identity.get((entity, str(v5_id)))
        if v6_id is None or v6_id not in rows:
            return None
        self.v6_edits.append({"entity": entity, "v6_id": v6_id, "v5_id": str(v5_id), "v5_says": key,
                              "v6_has": rows[v6_id], "field": "natural key"})
        return v6_id

    def edited_in_v6(self, entity, v6_id, current):
        """True when V6's value differs from the one the tool last wrote (an edit V6 made)."""
        written = self.written.get((entity, str(v6_id)))
        if written is None or written[0] == ("" if current is None else str(current)):
            return False
        # what this very run wrote must be there: only an edit older than the run is V6's
        return self.run_id is None or written[1] != self.run_id

    # ---------------------------------------------------------------- entities
    def tenants(self):
        v6_by_id = {}
        v6_by_slug = {}
        for tid, slug, name in self.q6("SELECT id::text, slug, name FROM tenants"):
            v6_by_id[tid] = (tid, name)
            v6_by_slug[slug] = (tid, name)
        self.v6_tenant_names = {t: n for t, n in v6_by_id.values()}
        self.tenant = {}   # V5 tenant id -> V6 tenant id
        for tid, slug, name in self.q5("SELECT id::text, slug, name FROM tenants ORDER BY id"):
            if self.excuse("tenants", tid, f"tenant {slug}"):
                continue
            hit = v6_by_id.get(tid) or v6_by_slug.get(slug)
            if not hit:
                alt = self.renamed("tenants", tid, slug, {t: v[1] for t, v in v6_by_id.items()})
                hit = (alt, None) if alt else None
            self.tally(hit[0] if hit else tid, "tenants", "expected")
            if not hit:
                self.diff("tenants", tid, f"V5 tenant {slug!r} ({tid}) is not in V6 (no tenant with its id or slug)")
                continue
            self.tenant[tid] = hit[0]
            self.found("tenants", hit[0], hit[0])

    def users(self):
        v6 = {}
        for uid, email in self.q6("SELECT id::text, lower(email) FROM users"):
            v6.setdefault(email, []).append(uid)
        self.v6_users = v6
        self.user_email = {}   # V5 user id -> lower(email)
        for uid, email in self.q5("SELECT id::text, lower(email) FROM users ORDER BY id"):
            if self.excuse("users", uid, f"user {email}"):
                continue
            self.tally("(global)", "users", "expected")
            hits = v6.get(email, [])
            if not hits:
                alt = self.renamed("users", uid, email, {u: e for e, us in v6.items() for u in us})
                hits = [alt] if alt else []
                email = next((e for e, us in v6.items() if alt in us), email)
            if len(hits) != 1:
                self.diff("users", "(global)", f"V5 user {email} ({uid}): {len(hits)} V6 users have this email "
                                                "case-insensitively, expected exactly 1")
                continue
            self.user_email[uid] = email
            self.found("users", "(global)", hits[0])

    def memberships(self):
        want = {}   # (tenant_v6, email) -> (role, [v5 ids])
        for mid, uid, tid, role in self.q5("SELECT id::text, user_id::text, tenant_id::text, role "
                                           "FROM user_memberships ORDER BY id"):
            if self.excuse("user_memberships", mid, f"membership {mid}"):
                continue
            tenant = self.platform if role == "platform_admin" else self.tenant.get(tid)
            email = self.user_email.get(uid)
            v6_role = ROLE.get(role)
            if tenant is None or email is None or v6_role is None:
                self.diff("user_memberships", tenant or tid, f"V5 membership {mid} (user {uid}, role {role!r}) "
                          "cannot be placed and is not a reject")
                continue
            role0, ids = want.get((tenant, email), (None, []))
            if role0 is None or ROLE_RANK[v6_role] > ROLE_RANK[role0]:
                role0 = v6_role
            want[(tenant, email)] = (role0, ids + [mid])
        v6 = {(t, e): (mid, role) for mid, t, e, role in self.q6(
            "SELECT m.id::text, m.tenant_id::text, lower(u.email), m.role FROM user_memberships m "
            "JOIN users u ON u.id = m.user_id")}
        ours = self.inserted.get("user_memberships", set())
        for (tenant, email), (role, ids) in sorted(want.items()):
            self.tally(tenant, "user_memberships", "expected")
            hit = v6.get((tenant, email))
            if not hit:
                self.diff("user_memberships", tenant, f"membership of {email} in tenant {tenant} is missing in V6 "
                          f"(V5 {', '.join(ids)})")
                continue
            if hit[0] in ours and hit[1] != role:
                self.diff("user_memberships", tenant, f"membership of {email} in tenant {tenant}: role {hit[1]!r} "
                          f"in V6, V5 says {role!r} (V5 {', '.join(ids)})")
            self.found("user_memberships", tenant, hit[0])

    def sites(self):
        rows = self.q6("SELECT id::text, tenant_id::text, name FROM sites")
        v6 = {(t, n): sid for sid, t, n in rows}
        v6_tenant = {sid: t for sid, t, _ in rows}
        self.site = {}   # V5 site id -> (V6 site id, tenant, name)
        v5_sites = self.q5("SELECT id::text, tenant_id::text, name FROM sites ORDER BY id")
        self.v5_site_tenant = {sid: tid for sid, tid, _ in v5_sites}
        for sid, tid, name in v5_sites:
            if self.excuse("sites", sid, f"site {name!r}"):
                continue
            tenant = self.tenant.get(tid)
            self.tally(tenant or tid, "sites", "expected")
            hit = v6.get((tenant, name))
            if not hit:
                hit = self.renamed("sites", sid, name, {i: n for i, t, n in rows if t == tenant})
            if not hit:
                self.diff("sites", tenant or tid, f"V5 site {name!r} ({sid}) is not in V6 tenant {tenant or tid}")
                continue
            self.site[sid] = (hit, v6_tenant.get(hit, tenant), name)
            self.found("sites", tenant, hit)

    def spaces(self):
        v6_live = {}
        v6_deleted = {}
        v6_site = {}
        for spid, site, code, deleted in self.q6("SELECT id::text, site_id::text, code, deleted_at IS NOT NULL "
                                                 "FROM spaces"):
            (v6_deleted.setdefault((site, code), []) if deleted else v6_live.setdefault((site, code), [])).append(spid)
            v6_site[spid] = (site, code)
        self.space = {}   # V5 space id -> (V6 space id, tenant, label)
        self.v5_spaces = self.q5("SELECT id::text, site_id::text, code, deleted_at, updated_at, sensor_eui, "
                                 "display_eui, " + ", ".join(
                                     f"{c}::text" if self.v5_has("spaces", c) else "NULL::text"
                                     for c in ("sensor_device_id", "display_device_id")) + " FROM spaces ORDER BY id")
        used = set()
        for spid, site, code, deleted_at, _, _, _, _, _ in self.v5_spaces:
            if self.excuse("spaces", spid, f"space {code!r}"):
                continue
            placed = self.site.get(site)
            tenant = placed[1] if placed else None
            self.tally(tenant or "(unplaced)", "spaces", "expected")
            label = f"space {code!r} of site {placed[2] if placed else site}" + (" (soft-deleted)" if deleted_at else "")
            if not placed:
                self.diff("spaces", "(unplaced)", f"V5 {label} ({spid}): its site is not in V6 and it is not a reject")
                continue
            pool = (v6_deleted if deleted_at else v6_live).get((placed[0], code), [])
            free = [x for x in pool if x not in used]
            if not free:
                alt = self.renamed("spaces", spid, code, {i: c for i, (s6, c) in v6_site.items() if s6 == placed[0]})
                free = [alt] if alt and alt not in used else []
            if not free:
                self.diff("spaces", tenant, f"V5 {label} ({spid}) is not in V6")
                continue
            known = self.identity.get(("spaces", spid))
            pick = spid if spid in free else known if known in free else free[0]
            used.add(pick)
            self.space[spid] = (pick, tenant, label)
            self.found("spaces", tenant, pick)

    def placement(self, table, dev_id, eui):
        """Reference §4: candidates are live V5 spaces linking the device by EUI or by id; the
        tenant is the site's. Several candidates (§4.4, "pick by a stated rule"): the documented
        rule, whatever their tenants: EUI and id link first, then EUI link (V5's router links by
        EUI; an id alone is often stale), then the most recently updated space, then the space id."""
        eui_col, fk_col = DEVICE_TABLES[table]
        idx_eui, idx_fk = (5, 7) if table == "sensor_devices" else (6, 8)
        cands = []
        for row in self.v5_spaces:
            if row[3] is not None:
                continue
            by_eui = norm_eui(row[idx_eui]) == eui
            by_fk = row[idx_fk] == dev_id
            if by_eui or by_fk:
                cands.append((row, by_eui, by_fk))
        if not cands:
            return None, []
        site_tenants = {self.v5_site_tenant.get(r[1]) for r, _, _ in cands}
        ts = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
        cands.sort(key=lambda c: (not (c[1] and c[2]), not c[1], -(c[0][4] or ts).timestamp(), c[0][0]))
        return cands[0][0][0], site_tenants

    def devices(self, table):
        v6 = {e: (i, t, s) for i, e, t, s in self.q6(
            f"SELECT id::text, dev_eui, tenant_id::text, assigned_space_id::text FROM {table}")}
        space_tenant = dict(self.q6("SELECT id::text, tenant_id::text FROM spaces"))
        kind = table.split("_")[0]
        seen = {}
        for dev_id, raw in self.q5(f"SELECT id::text, dev_eui FROM {table} ORDER BY id"):
            if self.excuse(table, dev_id, f"{kind} {raw}"):
                continue
            eui = norm_eui(raw)
            space_v5, tenants = self.placement(table, dev_id, eui)
            if eui is None or eui in seen:
                why = "malformed EUI" if eui is None else f"EUI also on V5 device {seen[eui]}"
                self.diff(table, "(unplaced)", f"V5 {kind} {raw} ({dev_id}): {why}; must be a reject, is not")
                continue
            seen[eui] = dev_id
            placed = self.space.get(space_v5) if space_v5 else None
            tenant = placed[1] if placed else self.platform  # no live space (or its space a reject): unplaced
            self.tally(tenant, table, "expected")
            hit = v6.get(eui)
            if not hit:
                self.diff(table, tenant, f"{kind} {eui} (V5 {dev_id}) is not in V6")
                continue
            v6_id, v6_tenant, v6_space = hit
            where = placed[2] if placed else "no space (platform tenant, unassigned)"
            if self.edited_in_v6(table, v6_id, v6_space):
                self.v6_edits.append({"entity": table, "v6_id": v6_id, "eui": eui, "v5_id": dev_id,
                                      "v5_says": where, "v6_has": v6_space, "field": "assigned_space_id"})
                if v6_tenant != tenant:
                    self.diff(table, tenant, f"{kind} {eui} (V5 {dev_id}) is in V6 tenant {v6_tenant}, V5 places it "
                              f"in tenant {tenant}")
                self.found(table, v6_tenant, v6_id)
                continue
            if v6_tenant != tenant:
                self.diff(table, tenant, f"{kind} {eui} (V5 {dev_id}) is in V6 tenant {v6_tenant}, V5 places it in "
                          f"tenant {tenant} ({where})")
            want_space = placed[0] if placed else None
            if v6_space != want_space:
                self.diff(table, tenant, f"{kind} {eui} (V5 {dev_id}) is on V6 space {v6_space} "
                          f"(tenant {space_tenant.get(v6_space)}), V5 puts it on {where} ({want_space})")
            self.found(table, v6_tenant, v6_id)

    def reservations(self):
        now = self.now or self.q6("SELECT now()")[0][0]
        v6 = {}
        for rid, space, start, end, status, email, end_passed in self.q6(
                "SELECT r.id::text, r.space_id::text, r.start_time, r.end_time, r.status, lower(u.email), "
                "r.end_time <= %s FROM reservations r LEFT JOIN users u ON u.id = r.user_id", (now,)):
            v6.setdefault((space, start, end), []).append((rid, status, email, end_passed))
        deleted = {r[0] for r in self.v5_spaces if r[3] is not None}
        used = set()
        for rid, space, start, end, status, email in self.q5(
                "SELECT id::text, space_id::text, start_time, end_time, status, lower(user_email) "
                "FROM reservations ORDER BY id"):
            if space in deleted:
                continue  # reference §5 E30: not migrated as live; the engine lists the skip
            if self.excuse("reservations", rid, f"reservation {rid}"):
                continue
            placed = self.space.get(space)
            tenant = placed[1] if placed else None
            self.tally(tenant or "(unplaced)", "reservations", "expected")
            if not placed:
                self.diff("reservations", "(unplaced)", f"V5 reservation {rid}: its space is not in V6 and it is "
                          "not a reject")
                continue
            want_status = STATUS.get((status or "").lower(), "completed")
            want_user = email if email and len(self.v6_users.get(email, [])) == 1 else None
            cands = [c for c in v6.get((placed[0], start, end), []) if c[0] not in used]
            if not cands:
                self.diff("reservations", tenant, f"V5 reservation {rid} ({placed[2]}, {start} - {end}) has no V6 "
                          "reservation on that space with that window")
                continue
            best = sorted(cands, key=lambda c: (c[0] != rid, c[0]))[0]
            used.add(best[0])
            v6_id, v6_status, v6_email, end_passed = best
            ok_status = (v6_status == want_status
                         or (want_status == "active" and end_passed and v6_status == "completed"))
            if not ok_status:
                if self.edited_in_v6("reservations", v6_id, v6_status):
                    self.v6_edits.append({"entity": "reservations", "v6_id": v6_id, "v5_id": rid,
                                          "v5_says": want_status, "v6_has": v6_status, "field": "status"})
                else:
                    self.diff("reservations", tenant, f"V5 reservation {rid}: status {v6_status!r} in V6, V5's "
                              f"{status!r} maps to {want_status!r}")
            user_ok = v6_email == (want_user or self.anonymous_email)
            if not user_ok:
                self.diff("reservations", tenant, f"V5 reservation {rid}: user {v6_email} in V6, expected "
                          f"{want_user or 'the placeholder user of anonymous bookings'}")
            self.found("reservations", tenant, v6_id)

    def history(self):
        wm = int(self.watermarks.get("sensor_readings", 0) or 0)
        cutoff = self.cutoff
        kept = 'AND "timestamp" >= %(cut)s' if cutoff is not None else ""
        seen = seen_by_run(self.src, self.watermarks)  # rows the migration run's V5 snapshot saw
        v5 = {}
        for raw, n in self.q5(f"""SELECT device_eui, count(*) FROM sensor_readings WHERE id <= %(wm)s AND {seen}
                                  AND fcnt IS NOT NULL AND "timestamp" IS NOT NULL {kept} GROUP BY 1""",
                              {"wm": wm, "cut": cutoff}):
            eui = (raw or "").upper()  # §2.10: device by uppercase EUI
            v5[eui] = v5.get(eui, 0) + n
        kept6 = "AND received_at >= (%(cut)s::timestamptz AT TIME ZONE 'UTC')" if cutoff is not None else ""
        v6 = dict(self.q6(f"""SELECT dev_eui, count(*) FROM sensor_readings WHERE raw_payload LIKE %(like)s
                              AND (raw_payload::json->>'v5_id')::bigint <= %(wm)s {kept6} GROUP BY 1""",
                          {"like": READING_MARKER_LIKE, "wm": wm, "cut": cutoff}))
        dev_tenant = dict(self.q6("SELECT dev_eui, tenant_id::text FROM sensor_devices"))
        for eui, n in sorted(v5.items()):
            tenant = dev_tenant.get(eui)
            if tenant is None:
                continue  # no V6 device: the engine rejects these readings (listed as rejects)
            cell = self.per_tenant.setdefault(tenant, {}).setdefault("sensor_readings", {"expected": 0, "found": 0})
            cell["expected"] += n
            cell["found"] += v6.get(eui, 0)
            if v6.get(eui, 0) != n:
                self.diff("sensor_readings", tenant, f"sensor {eui}: {v6.get(eui, 0)} readings in V6, V5 has {n} "
                          f"up to id {wm}")
        wm_s = int(self.watermarks.get("state_changes", 0) or 0)
        v6_s = dict(self.q6("SELECT space_id::text, count(*) FROM state_changes WHERE id <= %s GROUP BY 1", (wm_s,)))
        for space, n in self.q5(f"SELECT space_id::text, count(*) FROM state_changes WHERE id <= %s AND {seen} "
                                "GROUP BY 1", (wm_s,)):
            placed = self.space.get(space)
            if not placed:
                continue
            cell = self.per_tenant.setdefault(placed[1], {}).setdefault("state_changes", {"expected": 0, "found": 0})
            cell["expected"] += n
            cell["found"] += v6_s.get(placed[0], 0)
            if v6_s.get(placed[0], 0) < n:
                self.diff("state_changes", placed[1], f"{placed[2]}: {v6_s.get(placed[0], 0)} state changes in V6, "
                          f"V5 has {n} up to id {wm_s}")

    def extras(self):
        """Rows the tool inserted that V5 does not explain (a duplicate, a row in the wrong place)."""
        tables = {"tenants": "tenants", "users": "users", "user_memberships": "user_memberships", "sites": "sites",
                  "spaces": "spaces", "sensor_devices": "sensor_devices", "display_devices": "display_devices",
                  "reservations": "reservations"}
        allowed = {("users", uid) for uid in self.v6_users.get(self.anonymous_email, [])}
        for entity, table in tables.items():
            extra = sorted(self.inserted.get(entity, set()) - self.matched.get(entity, set()))
            extra = [x for x in extra if (entity, x) not in allowed]
            if not extra:
                continue
            present = {r[0] for r in self.q6(f"SELECT id::text FROM {table} WHERE id::text = ANY(%s)", (extra,))}
            sources = {v6: self.inserted_from.get((entity, v6)) for v6 in present}
            in_v5 = {r[0] for r in self.q5(f"SELECT id::text FROM {table} WHERE id::text = ANY(%s)",
                                           ([v for v in sources.values() if v and _UUID.match(v)],))}
            for v6_id in sorted(present):
                v5_id = sources[v6_id]
                if v5_id and _UUID.match(v5_id) and v5_id not in in_v5:
                    # V5 deleted the row after an earlier run migrated it: V6 keeps its copy
                    self.v6_edits.append({"entity": entity, "v6_id": v6_id, "v5_id": v5_id, "v5_says": "deleted",
                                          "v6_has": "kept", "field": "row"})
                    continue
                self.diff(entity, "(any)", f"V6 {entity} row {v6_id} was inserted by the migration (for "
                          f"{v5_id}) but no V5 row explains it (duplicate or misplaced)")

    # ---------------------------------------------------------------- run
    def check(self):
        self.load_ledger()
        self.tenants()
        self.users()
        self.memberships()
        self.sites()
        self.spaces()
        self.devices("sensor_devices")
        self.devices("display_devices")
        self.reservations()
        self.history()
        self.extras()
        return self.result()

    def result(self):
        by_entity = {}
        for entity, _, _ in self.differences:
            by_entity[entity] = by_entity.get(entity, 0) + 1
        return {
            "passed": not self.differences,
            "differences": [{"entity": e, "tenant": t, "difference": d} for e, t, d in self.differences[:500]],
            "differences_total": len(self.differences),
            "differences_by_entity": by_entity,
            "per_tenant": self.per_tenant,
            "rejects_not_compared": self.excused[:500],
            "v6_edits_kept": self.v6_edits[:500],
            "v6_edits_total": len(self.v6_edits),
        }


def check(src_cur, tgt_cur, platform=PLATFORM, run_id=None, watermarks=None, now=None, retention_cutoff=None,
          anonymous_email=ANONYMOUS_EMAIL):
    """Compare V6 with what V5 says it must hold; returns the oracle's result dict (passed, differences...)."""
    return Oracle(src_cur, tgt_cur, platform, run_id, watermarks, now, retention_cutoff, anonymous_email).check()


def summary(result, limit=5):
    """One line naming the first differences, for an error message."""
    if result["passed"]:
        return "the oracle found V6 as V5 says it must be"
    first = "; ".join(f"{d['entity']}: {d['difference']}" for d in result["differences"][:limit])
    more = result["differences_total"] - min(limit, len(result["differences"]))
    return f"{result['differences_total']} differences from what V5 says V6 must hold: {first}" + (
        f" (and {more} more)" if more > 0 else "")
