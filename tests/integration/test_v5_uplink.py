"""The lab V5's uplink handler on a scratch copy of the lab's V5 (never the lab's own database).

What V5 writes for one uplink (a reading, the device's last_seen, a state change along
StateManager.VALID_TRANSITIONS with its previous state), and that concurrent uplinks of one
device keep a consistent state_changes chain while the handler locks the device and its space
only in its last two statements.
"""
import base64
import json
import os
import sys
import threading
import time
import uuid

import pytest

import p1util
from labdb import ROOT, lab_pg_params

sys.path.insert(0, os.path.join(ROOT, "lab", "services"))
from v5api import app  # noqa: E402

SUFFIX = "_v5up"
DB = "parking_v5" + SUFFIX
# fCnts this run has not used before (the scratch database is kept between runs)
BASE = 10_000_000 + int(time.time() * 10) % 1_000_000_000


@pytest.fixture(scope="module")
def v5():
    p1util.seeded(SUFFIX)
    p = lab_pg_params()
    db = app.Database(f"host={p['host']} port={p['port']} user={p['user']} password={p['password']} dbname={DB}",
                      minconn=4, maxconn=4)
    yield db
    db.close()


def placed_sensor(state):
    """A live space with a sensor device, put in `state` (the test owns the scratch database)."""
    space, eui = p1util.rows(DB, """
        SELECT s.id, d.dev_eui FROM spaces s JOIN sensor_devices d ON d.dev_eui = s.sensor_eui
        WHERE s.deleted_at IS NULL ORDER BY s.id LIMIT 1""")[0]
    conn = p1util.connect(DB, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("UPDATE spaces SET state = %s WHERE id = %s", (state, space))
    conn.close()
    return space, eui


def uplink(eui, fcnt, occupied):
    body = json.dumps({"deduplicationId": str(uuid.uuid4()), "time": "2026-11-30T10:00:00Z",
                       "deviceInfo": {"devEui": eui, "deviceProfileName": "browan_tbms100_motion"},
                       "fCnt": fcnt, "fPort": 102, "data": base64.b64encode(bytes([int(occupied), 90, 55])).decode(),
                       "rxInfo": [{"rssi": -80, "snr": 7.5}]})
    return app.parse_uplink(body.encode())


def send(db, up):
    with db.transaction(app.CLASSIFY_UPLINK, {"eui": up["dev_eui"]}) as cur:
        return app.process_uplink(cur, up)


def changes(space, since_fcnt):
    return p1util.rows(DB, """
        SELECT previous_state, new_state, (metadata->>'fcnt')::bigint FROM state_changes
        WHERE space_id = %s AND (metadata->>'fcnt')::bigint >= %s ORDER BY id""", (space, since_fcnt))


def test_reading_last_seen_and_state_change(v5):
    space, eui = placed_sensor("FREE")
    fcnt = BASE + 1
    out = send(v5, uplink(eui, fcnt, True))
    assert out["device_kind"] == "sensor" and out["state_changed"] and out["previous_state"] == "FREE", out
    assert p1util.rows(DB, "SELECT state FROM spaces WHERE id = %s", (space,))[0][0] == "OCCUPIED"
    assert changes(space, fcnt) == [("FREE", "OCCUPIED", fcnt)]
    assert p1util.rows(DB, "SELECT count(*) FROM sensor_readings WHERE device_eui = %s AND fcnt = %s",
                       (eui, fcnt))[0][0] == 1
    assert p1util.rows(DB, "SELECT last_seen_at > now() - interval '1 minute' FROM sensor_devices "
                           "WHERE dev_eui = %s", (eui,))[0][0]
    # the same fCnt again: a duplicate, nothing changes
    again = send(v5, uplink(eui, fcnt, False))
    assert again["duplicate"] and not again["state_changed"], again
    assert changes(space, fcnt) == [("FREE", "OCCUPIED", fcnt)]


def test_only_valid_transitions(v5):
    space, eui = placed_sensor("MAINTENANCE")
    out = send(v5, uplink(eui, BASE + 1001, True))  # MAINTENANCE -> OCCUPIED is not allowed
    assert not out["state_changed"], out
    assert p1util.rows(DB, "SELECT state FROM spaces WHERE id = %s", (space,))[0][0] == "MAINTENANCE"
    assert changes(space, BASE + 1001) == []


def test_unknown_device_is_an_orphan(v5):
    eui = "FFFE" + uuid.uuid4().hex[:12].upper()
    out = send(v5, uplink(eui, 1, True))
    assert out["device_kind"] == "orphan" and out["uplink_count"] == 1, out


def test_concurrent_uplinks_of_one_device_keep_one_chain(v5):
    """8 threads, alternating occupancy: every logged change starts from the state the one
    before it ended in, and the space ends in the last logged state."""
    space, eui = placed_sensor("FREE")
    base = BASE + 2000
    errors = []

    def worker(k):
        for i in range(k, 80, 8):
            try:
                send(v5, uplink(eui, base + i, i % 2 == 0))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    chain = changes(space, base)
    assert chain and chain[0][0] == "FREE"
    for before, after in zip(chain, chain[1:]):
        assert after[0] == before[1], chain
    assert p1util.rows(DB, "SELECT state FROM spaces WHERE id = %s", (space,))[0][0] == chain[-1][1]
    assert p1util.rows(DB, "SELECT count(*) FROM sensor_readings WHERE device_eui = %s AND fcnt >= %s",
                       (eui, base))[0][0] == 80
