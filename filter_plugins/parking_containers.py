"""Filters on a container's `docker inspect` data (community.docker.docker_container_info's `container`).

`parking_container_public`: the same data without what may hold a secret (the environment, the
host configuration, mounts): what a health gate, a message or a module argument may show.

`parking_container_health`: one word for its health (healthy, unhealthy, starting, missing...).

`parking_container_spec`: the data as community.docker.docker_container options.

Phase 4 saves the inspect data of every container it removes; rollback-4 recreates each one
with these options (same image, command, environment, labels -- Traefik's routers among them --,
ports, mounts, networks with their aliases, restart policy and health check).
"""


def _duration(ns):
    """Docker's nanoseconds as docker_container's duration string."""
    if not ns:
        return None
    seconds = ns / 1e9
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{int(ns / 1e6)}ms"


def _healthcheck(hc):
    if not hc or not hc.get("Test"):
        return None
    out = {"test": hc["Test"]}
    for key, name in (("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "start_period")):
        value = _duration(hc.get(key))
        if value:
            out[name] = value
    if hc.get("Retries"):
        out["retries"] = hc["Retries"]
    return out


def _ports(bindings):
    out = []
    for container_port, hosts in sorted((bindings or {}).items()):
        for h in hosts or []:
            ip, port = h.get("HostIp") or "", h.get("HostPort") or ""
            out.append(f"{ip}:{port}:{container_port}" if ip else f"{port}:{container_port}")
    return out


def _mounts(mounts):
    """Named volumes and tmpfs from HostConfig.Mounts (compose's long syntax)."""
    out = []
    for m in mounts or []:
        item = {"type": (m.get("Type") or "volume").lower(), "target": m["Target"]}
        if m.get("Source"):
            item["source"] = m["Source"]
        if m.get("ReadOnly"):
            item["read_only"] = True
        out.append(item)
    return out


def _networks(inspect):
    short_id = (inspect.get("Id") or "")[:12]
    out = []
    for name, net in sorted((inspect.get("NetworkSettings", {}).get("Networks") or {}).items()):
        aliases = [a for a in (net.get("Aliases") or []) if a != short_id and a != inspect.get("Name", "").lstrip("/")]
        item = {"name": name}
        if aliases:
            item["aliases"] = aliases
        out.append(item)
    return out


def container_spec(inspect):
    """docker_container options recreating the inspected container."""
    config = inspect.get("Config") or {}
    host = inspect.get("HostConfig") or {}
    env = {}
    for pair in config.get("Env") or []:
        key, _, value = pair.partition("=")
        env[key] = value
    network_mode = host.get("NetworkMode") or "default"
    spec = {
        "name": inspect["Name"].lstrip("/"),
        "image": config["Image"],
        "command": config.get("Cmd"),
        "entrypoint": config.get("Entrypoint"),
        "env": env,
        "labels": config.get("Labels") or {},
        "published_ports": _ports(host.get("PortBindings")),
        "volumes": list(host.get("Binds") or []),
        "mounts": _mounts(host.get("Mounts")),
        "network_mode": network_mode,
        "networks": _networks(inspect) if network_mode not in ("host", "none") else [],
        "restart_policy": (host.get("RestartPolicy") or {}).get("Name") or "no",
        "healthcheck": _healthcheck(config.get("Healthcheck")),
        "user": config.get("User") or None,
        "working_dir": config.get("WorkingDir") or None,
    }
    return spec


def container_public(inspect):
    """Name, image, command, labels and state (health with its last check's output) of the
    inspected container; None stays None. Never the environment (DATABASE_URL, JWT keys)."""
    if not inspect:
        return None
    if "container" in inspect and "exists" in inspect:  # a whole docker_container_info result
        return container_public(inspect.get("container"))
    config = inspect.get("Config") or {}
    state = inspect.get("State") or {}
    out_state = {k: state[k] for k in ("Status", "Running", "ExitCode", "StartedAt") if k in state}
    health = state.get("Health")
    if health:
        log = health.get("Log") or []
        out_state["Health"] = {"Status": health.get("Status"), "FailingStreak": health.get("FailingStreak"),
                               "Output": ((log[-1].get("Output") or "").strip()[:300] if log else "")}
    return {
        "Name": inspect.get("Name"),
        "Image": inspect.get("Image"),
        "Args": list(inspect.get("Args") or []),
        "RestartCount": inspect.get("RestartCount"),
        "Config": {"Image": config.get("Image"), "Cmd": config.get("Cmd"), "Labels": config.get("Labels") or {}},
        "State": out_state,
    }


def container_health(info):
    """One word for a container's health, from docker_container_info's result or its inspect data:
    healthy, unhealthy, starting, missing, or the state of a container without a health check."""
    if info and "exists" in info:
        info = info.get("container") if info.get("exists") else None
    if not info:
        return "missing"
    state = info.get("State") or {}
    if state.get("Status") != "running":
        return state.get("Status") or "not running"
    return (state.get("Health") or {}).get("Status") or "running without a health check"


class FilterModule:
    def filters(self):
        return {"parking_container_spec": container_spec, "parking_container_public": container_public,
                "parking_container_health": container_health}
