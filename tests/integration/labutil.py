"""Helpers for talking to the lab through its published ports on 127.0.0.1."""
import json
import os
import time
from urllib.parse import urlencode

import urllib3

DOMAIN = os.environ.get("PARKING_LAB_DOMAIN", "verdegris.test")
STATE_DIR = os.environ.get("PARKING_LAB_STATE_DIR", "/var/lib/parking-lab")
HTTPS_PORT = int(os.environ.get("PARKING_LAB_HTTPS_PORT", "58443"))
HTTP_PORT = int(os.environ.get("PARKING_LAB_HTTP_PORT", "58080"))
SIM_PORT = int(os.environ.get("PARKING_LAB_SIM_PORT", "58081"))
CA_FILE = os.path.join(STATE_DIR, "traefik", "certs", "ca.crt")


def traefik(host, path, method="GET", body=None, headers=None, timeout=10, form=None):
    """Request https://<host><path> through Traefik on 127.0.0.1, verifying the lab CA and SNI;
    ``body`` goes as JSON, ``form`` as an HTML form (V6's login)."""
    fqdn = f"{host}.{DOMAIN}" if host else DOMAIN
    pool = urllib3.HTTPSConnectionPool(
        "127.0.0.1", HTTPS_PORT, server_hostname=fqdn, assert_hostname=fqdn,
        ca_certs=CA_FILE, cert_reqs="CERT_REQUIRED", timeout=timeout, retries=False)
    hdrs = {"Host": fqdn, **(headers or {})}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    elif form is not None:
        data = urlencode(form).encode()
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
    return pool.request(method, path, body=data, headers=hdrs)


def sim(path, body=None):
    """Call the ChirpStack simulator's control API (published on 127.0.0.1)."""
    http = urllib3.PoolManager(timeout=10, retries=False)
    url = f"http://127.0.0.1:{SIM_PORT}{path}"
    if body is None:
        r = http.request("GET", url)
    else:
        r = http.request("POST", url, body=json.dumps(body).encode(),
                         headers={"Content-Type": "application/json"})
    assert r.status == 200, (path, r.status, r.data[:200])
    return json.loads(r.data)


def wait_for(predicate, timeout=30, interval=0.5):
    """Poll predicate() until truthy; return its value or raise after timeout."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
