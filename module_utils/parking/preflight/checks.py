"""Phase 0 preflight, the host checks: pure comparisons of what Ansible measured on the host
(Docker API version, memory, free space where the backups go, Traefik's container, pg_dump's
version) and of the PostgreSQL server's version, each a check {name, ok, detail}.

Plain values in, plain values out, except ``disk_space`` (statvfs on the host running it) and
``pg_dump_version`` (runs ``pg_dump --version`` through the module it is given).
"""
import os
import re


def parse_version(text):
    """'1.41' -> (1, 41); '20.10.24+dfsg1' -> (20, 10, 24); '15.18 (Debian 15.18-0+deb12u1)' -> (15, 18)."""
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", str(text or ""))
    if not match:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(p) for p in match.group(1).split("."))


def version_at_least(have, want):
    """Compare dotted versions numerically ('1.9' < '1.41'); missing parts count as 0."""
    a, b = list(parse_version(have)), list(parse_version(want))
    width = max(len(a), len(b))
    return a + [0] * (width - len(a)) >= b + [0] * (width - len(b))


def check(name, ok, detail):
    return {"name": name, "ok": bool(ok), "detail": detail}


def human_bytes(n):
    if n is None:
        return "unknown"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def check_docker_api(have, minimum):
    if not have:
        return check("docker_api", False, "Docker API version unknown: the Docker daemon did not answer on its socket. "
                                          "Start dockerd (or fix preflight_docker_socket) and run again.")
    if version_at_least(have, minimum):
        return check("docker_api", True, f"Docker API {have} (minimum {minimum})")
    return check("docker_api", False, f"Docker API {have} is older than the minimum {minimum}: upgrade the Docker "
                                      f"engine (Debian 12 docker.io 20.10 speaks 1.41).")


def check_memory(total_mb, minimum_mb):
    if total_mb is None:
        return check("memory", False, "total memory unknown (hardware facts not gathered)")
    if int(total_mb) >= int(minimum_mb):
        return check("memory", True, f"{int(total_mb)} MB total (minimum {int(minimum_mb)} MB)")
    return check("memory", False, f"{int(total_mb)} MB total, below the minimum {int(minimum_mb)} MB: V6 runs beside "
                                  f"V5 during the migration; add memory or lower preflight_min_memory_mb knowingly.")


def mount_for(path, mounts):
    """The mount (ansible_facts.mounts entry) holding path: longest mount point that is a prefix."""
    path = os.path.normpath(path or "/")
    best = None
    for m in mounts or []:
        point = os.path.normpath(m.get("mount") or "")
        if not point.startswith("/"):
            continue
        if path == point or path.startswith(point.rstrip("/") + "/"):
            if best is None or len(point) > len(os.path.normpath(best["mount"])):
                best = m
    return best


def disk_space(path, statvfs=os.statvfs, exists=os.path.isdir, ismount=os.path.ismount):
    """{"mount", "size_available"} of the filesystem that will hold path, measured where it runs
    (the target): the nearest existing directory of path, so a tmpfs or any mount the host
    facts leave out counts. None when path is not absolute."""
    if not path or not os.path.isabs(path):
        return None
    probe = os.path.normpath(path)
    while not exists(probe) and probe != "/":
        probe = os.path.dirname(probe)
    st = statvfs(probe)
    point = probe
    while not ismount(point) and point != "/":
        point = os.path.dirname(point)
    return {"mount": point, "size_available": st.f_bavail * st.f_frsize}


def check_disk(backup_dir, mounts, db_sizes, factor, space=None):
    """Free space where the backups go must be >= factor x (sum of db_sizes, bytes).
    space: disk_space(backup_dir) measured on the target; else the mount facts."""
    known = {k: v for k, v in (db_sizes or {}).items() if v is not None}
    missing = sorted(set(db_sizes or {}) - set(known))
    needed = int(factor * sum(known.values()))
    if not backup_dir or not os.path.isabs(backup_dir) or os.path.normpath(backup_dir).strip("/") == "":
        return check("disk_backup", False, f"backup directory {backup_dir!r} is not an absolute directory below /: "
                                           f"set parking_backup_dir (e.g. /var/backups/parking-migrate)"), needed, None
    mount = space or mount_for(backup_dir, mounts)
    if mount is None or mount.get("size_available") is None:
        return check("disk_backup", False, f"no mount found for the backup directory {backup_dir} in the host facts"), needed, None
    free = int(mount["size_available"])
    what = " + ".join(sorted(known)) or "nothing"
    text = (f"{backup_dir} (mount {mount['mount']}): needed {human_bytes(needed)} = {factor:g} x ({what}), "
            f"free {human_bytes(free)}")
    if missing:
        return check("disk_backup", False, text + f"; size of {', '.join(missing)} unknown (database unreachable)"), needed, free
    if free >= needed:
        return check("disk_backup", True, text), needed, free
    return check("disk_backup", False, text + f": free {human_bytes(needed - free)} more on {mount['mount']} or point "
                                             f"preflight_backup_dir at a larger filesystem"), needed, free


def check_pg_version(server_version_num, minimum_major):
    if not server_version_num:
        return check("postgresql_version", False, "PostgreSQL version unknown: no database could be reached")
    major = int(server_version_num) // 10000
    text = f"PostgreSQL {major}.{int(server_version_num) % 10000} (minimum major {int(minimum_major)})"
    if major >= int(minimum_major):
        return check("postgresql_version", True, text)
    return check("postgresql_version", False, text + f": upgrade the server to {int(minimum_major)} or newer first")


def check_pg_client(pg_dump_version, server_version_num):
    """pg_dump on the target (phase 4 dumps with it) against the server: it must be the server's
    major or newer (an older pg_dump refuses the server); phase 0 installs the server's major.
    pg_dump_version: the output of `pg_dump --version`, "" when pg_dump is not installed."""
    if not server_version_num:
        return check("postgresql_client", False, "pg_dump not compared: no database could be reached")
    server = int(server_version_num) // 10000
    found = re.search(r"(\d+)(?:\.(\d+))?", pg_dump_version or "")
    if not found:
        return check("postgresql_client", False, f"pg_dump not found on the target: install postgresql-client-{server} "
                                                 "(phase 0 does, with preflight_prepare_target: true)")
    major = int(found.group(1))
    text = f"pg_dump {found.group(0)} for a PostgreSQL {server} server"
    if major >= server:
        return check("postgresql_client", True, text)
    return check("postgresql_client", False, text + f": pg_dump {major} cannot dump a newer server; install "
                                                    f"postgresql-client-{server} on the target (phase 0 does)")


def pg_dump_version(module):
    """`pg_dump --version` on the host running the module ("" when pg_dump is not installed)."""
    pg_dump = module.get_bin_path("pg_dump")
    return module.run_command([pg_dump, "--version"])[1].strip() if pg_dump else ""


def check_traefik(container, name="parking-traefik", required_args=()):
    """container: docker_container_info's `container` (or None when it does not exist)."""
    if not container:
        return check("traefik", False, f"container {name} not found (it does not exist, or Docker did not answer): "
                                       f"V5's Traefik must be running (fix preflight_traefik_container if it has "
                                       f"another name)")
    state = container.get("State") or {}
    status = state.get("Status")
    health = (state.get("Health") or {}).get("Status")
    if status != "running":
        return check("traefik", False, f"container {name} is {status}, not running: start it before any phase")
    if health and health != "healthy":
        return check("traefik", False, f"container {name} is running but {health}: check `docker logs {name}`")
    args = list((container.get("Config") or {}).get("Cmd") or []) + list(container.get("Args") or [])
    absent = [a for a in required_args if not any(x == a or x.startswith(a + "=") for x in args)]
    if absent:
        return check("traefik", False, f"container {name} runs without {', '.join(absent)}: add it to Traefik's command "
                                       f"(the migration writes routes into a watched file-provider directory)")
    return check("traefik", True, f"container {name} running" + (f", {health}" if health else ""))
