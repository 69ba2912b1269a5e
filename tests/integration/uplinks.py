"""Account for every uplink the ChirpStack simulator sent (its attempts file on the host).

account(since, until) -> attempts that were not 2xx, and sensor uplinks whose reading is in
neither parking_v5 (device_eui, fcnt) nor parking_v6 (dev_eui, fcnt). Display, unknown and
legacy-lowercase devices write no reading in V5 by design; their attempts only have to be 2xx.

Also a command (molecule's verify runs it after phase 4 dropped parking_v5, against a copy
restored from the backup): python3 tests/integration/uplinks.py [--v5-db NAME] [--since EPOCH]
prints the account as JSON and exits 1 when an uplink was lost or not answered 2xx.
"""
import argparse
import json
import os
import sys
import time

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import p1util as U  # noqa: E402
from labdb import query  # noqa: E402
from labutil import STATE_DIR  # noqa: E402

ATTEMPTS = os.path.join(STATE_DIR, "simulator", "attempts.jsonl")


def attempts(since, until):
    out = []
    with open(ATTEMPTS) as f:
        for line in f:
            a = json.loads(line)
            if since <= a["ts"] <= until:
                out.append(a)
    return out


def account(since, until, v5_db="parking_v5", v5_only=False):
    """v5_only: every sensor V5 knows must have its readings in V5 (after rollback-3 copied back
    what V6 received); otherwise only sensors both know, in either database."""
    att = attempts(since, until)
    not_2xx = [a for a in att if not (a["status"] and 200 <= a["status"] < 300)]
    v5, v6 = U.connect(v5_db, autocommit=True), U.connect("parking_v6", autocommit=True)
    try:
        # sensors V5 can match: it looks uplinks up by the uppercased EUI, so a legacy lowercase
        # registry row (gotcha 19) gets its uplinks recorded as orphans, by V5's design
        sensors = {e for (e,) in query(v5, "SELECT dev_eui FROM sensor_devices WHERE dev_eui = upper(dev_eui)")}
        if not v5_only:
            sensors &= {e for (e,) in query(v6, "SELECT dev_eui FROM sensor_devices")}
        sensors -= {e for (e,) in query(v5, "SELECT upper(dev_eui) FROM display_devices")}  # displays win in V5
        wanted = {(a["dev_eui"], a["fcnt"]) for a in att if a["dev_eui"] in sensors}
        in_v5 = set(query(v5, "SELECT upper(device_eui), fcnt FROM sensor_readings WHERE fcnt = ANY(%s)",
                          ([f for _, f in wanted] or [-1],)))
        in_v6 = set(query(v6, "SELECT dev_eui, fcnt FROM sensor_readings WHERE fcnt = ANY(%s)",
                          ([f for _, f in wanted] or [-1],)))
    finally:
        v5.close()
        v6.close()
    missing = sorted(wanted - in_v5 - (set() if v5_only else in_v6))
    return {"attempts": len(att), "not_2xx": len(not_2xx), "sensor_uplinks": len(wanted),
            "in_v5": len(wanted & in_v5), "in_v6": len(wanted & in_v6), "lost": len(missing),
            "examples": (not_2xx[:3], missing[:5]), "not_2xx_attempts": not_2xx, "missing": missing}


def counts(acc):
    """An account without its lists (examples, every failed attempt, every missing reading)."""
    return {k: v for k, v in acc.items() if k not in ("examples", "not_2xx_attempts", "missing")}


def main():
    ap = argparse.ArgumentParser(description="Account for every uplink the lab simulator sent.")
    ap.add_argument("--v5-db", default="parking_v5", help="V5 database (or a copy restored from its backup)")
    ap.add_argument("--since", type=float, default=0.0, help="epoch seconds (default: every attempt)")
    ap.add_argument("--v5-only", action="store_true", help="every reading must be in V5 (after the rollbacks)")
    args = ap.parse_args()
    acc = account(args.since, time.time(), args.v5_db, args.v5_only)
    result = dict(counts(acc), examples=[list(x) for x in acc["examples"]])
    print(json.dumps(result, default=str))
    return 0 if result["lost"] == 0 and result["not_2xx"] == 0 and result["attempts"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
