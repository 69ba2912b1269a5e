"""chirpstack_gateway_import and role gateway_import against real PostgreSQL.

A module fixture seeds scratch copies of the lab databases (suffix _gwtest) with lab/seed.py on
the server given by PARKING_LAB_PG_HOST/PORT, adds the few V6 rows the owner rules need (the
data migration has not run in these copies), and drops the copies at the end. The module runs
through `ansible localhost -m chirpstack_gateway_import` with the repository's ansible.cfg.

The tests run in file order and share the databases: bad inputs first (nothing written), then
check mode, the real import, the re-run, a tenant_map change, state=absent, the role.
"""
import json
import os
import pathlib
import subprocess
import sys

import psycopg2
import pytest

from labdb import lab_pg_params

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
SUFFIX = "_gwtest"
DATABASES = ("chirpstack", "parking_v5", "parking_v6", "parking_platform")
CS_DB, V6_DB = "chirpstack" + SUFFIX, "parking_v6" + SUFFIX
ADMIN_USER = os.environ.get("PARKING_LAB_PG_ADMIN_USER", "parking")
ADMIN_PASSWORD = os.environ.get("PARKING_LAB_PG_ADMIN_PASSWORD", "lab-superuser-secret")
PLATFORM = "00000000-0000-0000-0000-000000000000"

# Gateways of the lab seed (lab/seed/chirpstack.py), as V6 will hold them.
BENCH, FIELD, VG_MAIN, VG_CARPARK, ACME = ("0016C001FF10A235", "7076FF0056060D1E",
                                           "AC1F09FFFE0A1B2C", "AC1F09FFFE0A1B2D",
                                           "B827EBFFFE61A8C4")
BROKEN = "00800000a000"          # 6 bytes: added by the test, must be rejected

CHECKSUM = ("SELECT count(*), md5(coalesce(string_agg(g::text, E'\\n' ORDER BY g.id), '')) "
            "FROM gateways g")
LEDGER = "SELECT to_regclass('parking_migrate.runs') IS NOT NULL"
# the ledger's records of imported gateways (the same tables as every row phase 1 writes)
RECORDS = ("SELECT 'inserted', count(*) FROM parking_migrate.id_map WHERE entity = 'gateways' "
           "UNION ALL SELECT 'updated', count(*) FROM parking_migrate.before_images WHERE tbl = 'gateways'")


# --- helpers ------------------------------------------------------------------------------------

def connect(dbname, admin=False):
    params = lab_pg_params()
    if admin:
        params = dict(params, user=ADMIN_USER, password=ADMIN_PASSWORD)
    conn = psycopg2.connect(dbname=dbname, connect_timeout=5, options="-c TimeZone=UTC", **params)
    conn.autocommit = True
    return conn


def rows(dbname, sql, params=None):
    conn = connect(dbname)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def scalar(dbname, sql, params=None):
    return rows(dbname, sql, params)[0][0]


def checksum():
    return tuple(rows(V6_DB, CHECKSUM)[0])


def conn_args(db, **override):
    params = lab_pg_params()
    args = {"login_host": params["host"], "login_port": params["port"],
            "login_user": params["user"], "login_password": params["password"], "db": db}
    args.update(override)
    return args


def module_args(**override):
    args = {"chirpstack": conn_args(CS_DB), "target": conn_args(V6_DB),
            "tenant_map": {"Verdegris": "demo-parking"}}
    args.update(override)
    return args


def ansible_env():
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="0")
    env["PATH"] = str(BIN) + os.pathsep + env.get("PATH", "")
    return env


def run_module(args, check=False, diff=False):
    """Run the module ad hoc on localhost; return its result dict (failed ones included)."""
    env = dict(ansible_env(), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.minimal")
    command = [str(BIN / "ansible"), "localhost", "-m", "chirpstack_gateway_import",
               "-a", json.dumps(args)]
    if check:
        command.append("--check")
    if diff:
        command.append("--diff")
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    try:
        output = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"no JSON from ansible ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}") from None
    return output["plays"][0]["tasks"][0]["hosts"]["localhost"]


def by_gateway(result):
    return {item["gateway_id"]: item for item in result["imported"]}


def drop_scratch():
    conn = connect("postgres", admin=True)
    try:
        with conn.cursor() as cur:
            for db in DATABASES:
                cur.execute(f'DROP DATABASE IF EXISTS "{db}{SUFFIX}" WITH (FORCE)')
    finally:
        conn.close()


# --- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gwlab():
    """Seeded scratch databases plus the V6 rows the owner rules need; dropped at the end.

    Returns ids by name and the pre-import checksum of V6 gateways.
    """
    drop_scratch()
    params = lab_pg_params()
    env = dict(os.environ, PARKING_LAB_ADMIN_PASSWORD=ADMIN_PASSWORD,
               PARKING_LAB_OWNER_PASSWORD=params["password"])
    seed = subprocess.run(
        [sys.executable, str(ROOT / "lab" / "seed.py"), "--host", params["host"],
         "--port", str(params["port"]), "--admin-user", ADMIN_USER, "--db-suffix", SUFFIX,
         "--scale", "1", "--seed", "42", "--anchor", "2026-11-26", "--json"],
        capture_output=True, text=True, timeout=300, env=env, check=False)
    assert seed.returncode == 0, seed.stderr
    try:
        yield prepare()
    finally:
        drop_scratch()


def prepare():
    ids = {slug: tid for tid, slug in rows(V6_DB, "SELECT id::text, slug FROM tenants")}
    ids.update({f"cs:{name}": tid for tid, name in rows(CS_DB, "SELECT id::text, name FROM tenant")})
    vg_site = scalar(CS_DB, "SELECT tags->>'site_id' FROM gateway WHERE gateway_id = decode(%s, 'hex')",
                     (VG_MAIN.lower(),))
    ids["site:vg-main"] = vg_site
    # ChirpStack: a gateway whose id is not 8 bytes; the car-park gateway seen just now (online).
    rows(CS_DB, """
        INSERT INTO gateway (gateway_id, tenant_id, created_at, updated_at, last_seen_at, name,
            description, latitude, longitude, altitude, stats_interval_secs, tls_certificate,
            tags, properties)
        VALUES (decode(%s, 'hex'), %s, now(), now(), NULL, 'Broken Gateway', '', 0, 0, 0, 30,
            NULL, '{}', '{}')""", (BROKEN, ids["cs:ChirpStack"]))
    rows(CS_DB, "UPDATE gateway SET last_seen_at = now() WHERE gateway_id = decode(%s, 'hex')",
         (VG_CARPARK.lower(),))
    # V6 devices as the data migration would leave them (matched by uppercase EUI):
    devices = [
        ("sensor_devices", "58A0CB0000103B22", "acme-parking"),    # Acme's device -> heard_devices
        ("sensor_devices", "58A0CB00001196F3", "city-parking"),    # Verdegris's: tenant_map wins
        ("sensor_devices", "58A0CB0000105D44", "test-company"),    # ChirpStack tenant: two V6
        ("display_devices", "58A0CB0000106E55", "test-company-2"),  # tenants -> ambiguous
        ("sensor_devices", "58A0CB0000102A11", "platform"),        # platform devices are ignored
        ("sensor_devices", "0004A30B001C0F3E", "smoke-test"),      # V6-native, not in ChirpStack
    ]
    for table, eui, slug in devices:
        rows(V6_DB, f"INSERT INTO {table} (tenant_id, dev_eui) VALUES (%s, %s)", (ids[slug], eui))
    smoke_device = scalar(V6_DB, "SELECT id::text FROM sensor_devices WHERE dev_eui = %s",
                          ("0004A30B001C0F3E",))
    # V6-native uplinks: one heard through the field-test gateway, one unparsable payload.
    uplink = {"deviceInfo": {"devEui": "0004a30b001c0f3e"}, "fCnt": 7,
              "rxInfo": [{"gatewayId": FIELD.lower(), "rssi": -80, "snr": 7.5}]}
    for fcnt, payload in ((7, json.dumps(uplink)), (8, '{"rxInfo": [{"gatewayId": "not json')):
        rows(V6_DB, "INSERT INTO sensor_readings (tenant_id, device_id, dev_eui, fcnt, raw_payload) "
                    "VALUES (%s, %s, %s, %s, %s)",
             (ids["smoke-test"], smoke_device, "0004A30B001C0F3E", fcnt, payload))
    # The V5 site of the Verdegris gateway's tags, migrated under the mapped tenant.
    rows(V6_DB, "INSERT INTO sites (id, tenant_id, name, slug) VALUES (%s, %s, %s, %s)",
         (vg_site, ids["demo-parking"], "Verdegris Parking - Main Site", "verdegris-main"))
    # Pre-existing V6 gateways: the bench gateway registered by hand (lowercase id, other name,
    # a config key of V6's own) in the platform tenant; the Acme gateway in another tenant.
    rows(V6_DB, "INSERT INTO gateways (tenant_id, gateway_id, name, status, config, created_at, "
                "updated_at) VALUES (%s, %s, 'Old bench name', 'offline', '{\"v6\": \"keep\"}', "
                "'2026-11-20 10:00', '2026-11-20 10:00')", (PLATFORM, BENCH.lower()))
    rows(V6_DB, "INSERT INTO gateways (tenant_id, gateway_id, name, status, created_at, updated_at) "
                "VALUES (%s, %s, 'City copy of the Acme gateway', 'online', '2026-11-21 10:00', "
                "'2026-11-21 10:00')", (ids["city-parking"], ACME))
    ids["pre_checksum"] = checksum()
    return ids


@pytest.fixture
def unchanged(gwlab):
    """Assert that the test leaves V6 gateways as they were and writes no ledger."""
    before = checksum()
    ledger_before = scalar(V6_DB, LEDGER)
    yield
    assert checksum() == before
    assert scalar(V6_DB, LEDGER) == ledger_before


# --- bad inputs: clear error, nothing written ---------------------------------------------------

def test_wrong_password(unchanged):
    result = run_module(module_args(target=conn_args(V6_DB, login_password="not-the-password")))
    assert result["failed"]
    assert "unable to connect to the target database 'parking_v6_gwtest'" in result["msg"]
    assert "password authentication failed" in result["msg"]
    assert "not-the-password" not in json.dumps(result)


def test_missing_database(unchanged):
    result = run_module(module_args(chirpstack=conn_args("chirpstack_missing" + SUFFIX)))
    assert result["failed"]
    assert "unable to connect to the chirpstack database 'chirpstack_missing_gwtest'" in result["msg"]
    assert "does not exist" in result["msg"] and "Check chirpstack.db" in result["msg"]
    assert result["phase"] == "connect"


def test_platform_tenant_not_a_uuid(unchanged):
    result = run_module(module_args(platform_tenant_id="platform"))
    assert result["failed"]
    assert result["msg"].startswith("platform_tenant_id 'platform' is not a UUID")
    assert result["phase"] == "validate"


def test_platform_tenant_absent(unchanged):
    missing = "99999999-9999-4999-8999-999999999999"
    result = run_module(module_args(platform_tenant_id=missing))
    assert result["failed"]
    assert f"the platform tenant {missing} does not exist" in result["msg"]
    assert "platform, smoke-test" in result["msg"]


def test_unknown_v6_tenant_in_tenant_map(unchanged):
    result = run_module(module_args(tenant_map={"Verdegris": "verdegris"}))
    assert result["failed"]
    assert "tenant_map['Verdegris'] = 'verdegris' is neither the id nor the slug of a V6 tenant" \
        in result["msg"]
    assert ("V6 tenant slugs: acme-parking, city-parking, default, demo-parking, platform, "
            "smoke-test, test-company, test-company-2") in result["msg"]


def test_unknown_chirpstack_tenant_in_tenant_map(unchanged):
    result = run_module(module_args(tenant_map={"Verdegrs": "demo-parking"}))
    assert result["failed"]
    assert "tenant_map key 'Verdegrs' is neither the id nor the name of a ChirpStack tenant" \
        in result["msg"]
    assert "Verdegris (" in result["msg"]


def test_lock_busy(unchanged):
    holder = connect(V6_DB)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(hashtext('parking-migrate'))")
        result = run_module(module_args())
    finally:
        holder.close()
    assert result["failed"]
    assert "another parking-migrate run holds the migration lock" in result["msg"]
    assert result["phase"] == "lock"


def test_schema_mismatch_fails_closed(unchanged):
    rows(V6_DB, "ALTER TABLE gateways RENAME COLUMN config TO config_renamed")
    try:
        result = run_module(module_args())
    finally:
        rows(V6_DB, "ALTER TABLE gateways RENAME COLUMN config_renamed TO config")
    assert result["failed"]
    assert "config: expected jsonb, found missing" in result["msg"]
    assert {"column": "config", "expected": "jsonb", "found": "missing"} in result["differences"]


# --- the import ---------------------------------------------------------------------------------

EXPECTED_COUNTS = {"inserted": 4, "updated": 1, "unchanged": 0, "rejected": 1}


def test_check_mode_writes_nothing(unchanged):
    result = run_module(module_args(), check=True, diff=True)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    assert result["counts"] == EXPECTED_COUNTS
    assert result["diff"] == {"before": {"gateways": 2}, "after": {"gateways": 6}}


def test_real_run_imports_every_valid_gateway(gwlab):
    result = run_module(module_args(), diff=True)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    assert result["counts"] == EXPECTED_COUNTS
    assert result["diff"] == {"before": {"gateways": 2}, "after": {"gateways": 6}}
    assert [r["gateway_id"] for r in result["rejects"]] == [BROKEN]
    assert "is 6 bytes" in result["rejects"][0]["reason"]
    assert not any("parking-user-lab" in q for q in result["executed_queries"])
    assert any(q.startswith("INSERT INTO gateways") for q in result["executed_queries"])

    items = by_gateway(result)
    owners = {gid: (i["v6_tenant_slug"], i["owner_rule"], i["action"]) for gid, i in items.items()}
    assert owners == {
        VG_MAIN: ("demo-parking", "tenant_map_name", "inserted"),       # explicit map wins
        VG_CARPARK: ("demo-parking", "tenant_map_name", "inserted"),
        ACME: ("acme-parking", "heard_devices", "inserted"),            # unique device tenant
        FIELD: ("smoke-test", "heard_devices", "inserted"),             # V6-native uplink
        BENCH: ("platform", "platform_ambiguous", "updated"),           # two tenants heard
    }
    assert items[VG_MAIN]["heard_tenants"] == ["city-parking"]
    assert sorted(items[BENCH]["heard_tenants"]) == ["test-company", "test-company-2"]
    assert items[VG_MAIN]["site_id"] == gwlab["site:vg-main"]
    assert items[VG_MAIN]["site_rule"] == "tag_site_id"
    assert items[VG_CARPARK]["status"] == "online"
    assert items[ACME]["status"] == "offline"
    assert sorted(items[BENCH]["changed_columns"]) == ["config", "gateway_id", "name"]

    stored = {r[0]: r[1:] for r in rows(V6_DB, """
        SELECT gateway_id, tenant_id::text, name, status, site_id::text, config
        FROM gateways ORDER BY gateway_id, tenant_id""") if r[1] != gwlab["city-parking"]}
    assert sorted(stored) == sorted([BENCH, FIELD, VG_MAIN, VG_CARPARK, ACME])
    assert all(len(g) == 16 and g == g.upper() and int(g, 16) >= 0 for g in stored)
    assert stored[VG_MAIN][:4] == (gwlab["demo-parking"], "Verdegris Main Gateway", "offline",
                                   gwlab["site:vg-main"])
    config = stored[VG_MAIN][4]["chirpstack"]
    assert config["location"] == {"latitude": 48.8566, "longitude": 2.3522, "altitude": 35.0}
    assert config["tags"]["site_name"] == "Verdegris Parking - Main Site"
    assert config["tenant_name"] == "Verdegris"
    assert config["properties"]["region_common_name"] == "EU868"
    assert stored[VG_CARPARK][4]["chirpstack"]["location"] is None       # 0/0 = no position
    assert stored[BENCH][4]["chirpstack"]["last_seen_at"] is None        # never seen
    assert stored[BENCH][1:3] == ("Lab Bench Gateway", "offline")
    assert stored[BENCH][4]["v6"] == "keep"                              # V6's own config key kept
    # the V6-native copy of the Acme gateway in another tenant is left alone
    assert rows(V6_DB, "SELECT name FROM gateways WHERE tenant_id = %s",
                (gwlab["city-parking"],)) == [("City copy of the Acme gateway",)]
    assert rows(V6_DB, RECORDS) == [("inserted", 4), ("updated", 1)]
    assert rows(V6_DB, "SELECT phase, mode, status FROM parking_migrate.runs WHERE run_id = %s",
                (result["run_id"],)) == [("gateways", "import", "succeeded")]


def test_rerun_is_unchanged(gwlab):
    before = checksum()
    result = run_module(module_args())
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    assert result["counts"] == {"inserted": 0, "updated": 0, "unchanged": 5, "rejected": 1}
    assert not any(q.startswith(("INSERT", "UPDATE", "CREATE", "DELETE"))
                   for q in result["executed_queries"])
    assert checksum() == before


def test_changed_tenant_map_moves_rows_instead_of_duplicating(gwlab):
    count = checksum()[0]
    result = run_module(module_args(tenant_map={gwlab["cs:Verdegris"]: "city-parking"}))
    assert not result.get("failed"), result.get("msg")
    items = by_gateway(result)
    assert result["counts"] == {"inserted": 0, "updated": 2, "unchanged": 3, "rejected": 1}
    assert (items[VG_MAIN]["v6_tenant_slug"], items[VG_MAIN]["owner_rule"]) == \
        ("city-parking", "tenant_map_id")
    assert items[VG_MAIN]["site_id"] is None          # the site belongs to the previous tenant
    assert checksum()[0] == count
    assert rows(V6_DB, "SELECT site_id FROM gateways WHERE gateway_id = %s", (VG_MAIN,)) == [(None,)]


def test_absent_restores_pre_import_checksum(gwlab):
    # the bench gateway V6 had is restored; the 4 rows phase 1 inserted (2 of them re-homed by the
    # second run) are deleted
    check = run_module({"target": conn_args(V6_DB), "state": "absent"}, check=True)
    assert check["changed"] is True
    assert check["counts"] == {"deleted": 4, "restored": 1, "missing": 0}
    assert checksum() != gwlab["pre_checksum"]

    result = run_module({"target": conn_args(V6_DB), "state": "absent"}, diff=True)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    assert result["counts"] == {"deleted": 4, "restored": 1, "missing": 0}
    assert len(result["rolled_back_runs"]) == 2
    assert result["diff"] == {"before": {"gateways": 6}, "after": {"gateways": 2}}
    assert checksum() == gwlab["pre_checksum"]
    assert rows(V6_DB, RECORDS) == [("inserted", 0), ("updated", 0)]

    again = run_module({"target": conn_args(V6_DB), "state": "absent"})
    assert again["changed"] is False
    assert checksum() == gwlab["pre_checksum"]


# --- the role -----------------------------------------------------------------------------------

def run_role(tmp_path, **extra):
    playbook = tmp_path / "gateway_import.yml"
    playbook.write_text("---\n- name: Apply role gateway_import\n  hosts: localhost\n"
                        "  gather_facts: false\n  roles:\n    - role: gateway_import\n")
    params = lab_pg_params()
    variables = {"parking_pg_host": params["host"], "parking_pg_port": params["port"],
                 "parking_pg_owner_user": params["user"],
                 "parking_pg_owner_password": params["password"],
                 "gateway_import_chirpstack_db": CS_DB, "gateway_import_target_db": V6_DB,
                 "parking_gateway_tenant_map": {"Verdegris": "demo-parking"},
                 "parking_allow_rejects": False, **extra}
    varfile = tmp_path / "vars.json"
    varfile.write_text(json.dumps(variables))
    return subprocess.run([str(BIN / "ansible-playbook"), str(playbook), "-e", f"@{varfile}"],
                          cwd=ROOT, env=ansible_env(), capture_output=True, text=True,
                          timeout=180, check=False)


def test_role_deploy_and_rollback(gwlab, tmp_path):
    assert checksum() == gwlab["pre_checksum"]
    failed = run_role(tmp_path)                      # one reject: the deploy must fail ...
    assert failed.returncode != 0
    assert "1 ChirpStack gateway(s) could not be imported: 00800000a000: gateway_id" in failed.stdout
    assert "parking-user-lab" not in failed.stdout

    allowed = run_role(tmp_path, gateway_import_allow_rejects=True)   # ... unless allowed
    assert allowed.returncode == 0, allowed.stdout[-3000:]
    assert "changed=0" in allowed.stdout            # the failed deploy had imported already
    assert "5 gateway(s) placed, 1 rejected" in allowed.stdout

    broken = run_role(tmp_path, gateway_import_platform_tenant_id="nope")
    assert broken.returncode != 0
    assert "platform_tenant_id 'nope' is not a UUID" in broken.stdout

    rollback = run_role(tmp_path, gateway_import_action="rollback")
    assert rollback.returncode == 0, rollback.stdout[-3000:]
    assert "deleted: 4" in rollback.stdout and "restored: 1" in rollback.stdout
    assert checksum() == gwlab["pre_checksum"]


# --- a gateways table with L1's extra columns ---------------------------------------------------

L1_COLUMNS = ("description text", "latitude double precision", "longitude double precision",
              "altitude real", "last_seen_at timestamp", "location jsonb")


def test_real_columns_are_written_where_they_exist(gwlab):
    for column in L1_COLUMNS:
        rows(V6_DB, f"ALTER TABLE gateways ADD COLUMN {column}")
    try:
        before = checksum()
        result = run_module(module_args())
        assert not result.get("failed"), result.get("msg")
        assert result["counts"] == EXPECTED_COUNTS
        assert {"description", "latitude", "longitude", "altitude", "last_seen_at",
                "location"} <= set(result["schema"]["written_columns"])
        stored = {r[0]: r[1:] for r in rows(V6_DB, """
            SELECT gateway_id, description, latitude, longitude, altitude, last_seen_at, location
            FROM gateways WHERE config ? 'chirpstack'""")}
        assert stored[VG_MAIN][:4] == ("Verdegris Parking - Main Site", 48.8566, 2.3522, 35.0)
        assert stored[VG_MAIN][4].isoformat() == "2026-11-25T23:59:30"     # naive UTC
        assert stored[VG_MAIN][5] == {"latitude": 48.8566, "longitude": 2.3522, "altitude": 35.0}
        assert stored[VG_CARPARK][1:4] == (None, None, None)              # 0/0: no position
        assert stored[VG_CARPARK][5] is None
        assert stored[BENCH][0] is None and stored[BENCH][4] is None      # '' and never seen

        again = run_module(module_args())
        assert again["changed"] is False, again["imported"]
        absent = run_module({"target": conn_args(V6_DB), "state": "absent"})
        assert absent["counts"] == {"deleted": 4, "restored": 1, "missing": 0}
        assert checksum() == before
    finally:
        for column in L1_COLUMNS:
            rows(V6_DB, f"ALTER TABLE gateways DROP COLUMN IF EXISTS {column.split()[0]}")
    assert checksum() == gwlab["pre_checksum"]
