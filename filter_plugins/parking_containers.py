"""Filter `parking_container_spec`: a container's `docker inspect` data as community.docker.docker_container options.

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


class FilterModule:
    def filters(self):
        return {"parking_container_spec": container_spec}
