# -*- coding: utf-8 -*-
"""Argument specs shared by more than one module (plain data, as AnsibleModule takes them).

parking_smoke and parking_cutover_ramp reach the platform the same way (smoke_spec); parking_traffic
and parking_cutover_ramp read Traefik's access log the same way (traffic_spec). One definition,
so an option added for one is there for the other.
"""
from .connection import connection_spec
from .smoke import BACKENDS


def smoke_spec():
    """Where and as whom the smoke checks reach the platform through Traefik."""
    return dict(
        domain=dict(type="str", required=True),
        api_host=dict(type="str", default="api"),
        connect_host=dict(type="str", default=""),
        connect_port=dict(type="int", default=443),
        ca_file=dict(type="path"),
        expect_backend=dict(type="str", required=True, choices=list(BACKENDS)),
        login_email=dict(type="str"),
        login_password=dict(type="str", no_log=True),
        probe_dev_eui=dict(type="str"),
        probe_fcnt_base=dict(type="int"),
        target=dict(type="dict", options=connection_spec("")),
        timeout=dict(type="float", default=10.0),
        error_rate_requests=dict(type="int", default=40),
        error_rate_max=dict(type="float", default=0.0),
        routing_timeout=dict(type="float", default=30.0),
        failover_grace=dict(type="float", default=10.0),
    )


def traffic_spec():
    """Which access log, which hosts and paths, which window: what clients saw."""
    return dict(
        access_log=dict(type="path"),
        since=dict(type="float", required=True),
        baseline_seconds=dict(type="float", default=300.0),
        hosts=dict(type="list", elements="str", default=[]),
        uplink_paths=dict(type="list", elements="str", default=["/api/v1/uplink"]),
        backends=dict(type="dict", default={"v6": "v6", "v5": ""}),
        max_bytes=dict(type="int", default=512 * 1024 * 1024),
        traefik_container=dict(type="str"),
        docker_socket=dict(type="path", default="/var/run/docker.sock"),
    )
