"""Deterministic building blocks shared by every database: ids, clock, hashes.

Everything random comes from ``random.Random`` seeded with the CLI seed. Each named stream
(``World.rng("v5.readings")``) and each named id (``World.id("v5.user.admin")``) gets its own
generator seeded with ``"<seed>:<name>"``, so one entity's value never depends on how many other
entities were generated before it: same (seed, scale, anchor) -> byte-identical rows.
"""
import datetime as dt
import random
import uuid

import bcrypt

LAB_PASSWORD = "lab-password"

# bcrypt's base64 alphabet; the 22nd salt character carries only 2 bits, so it must be one of
# the four characters whose low 4 bits are zero.
BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
BCRYPT_LAST_CHARS = ".Oeu"

PLATFORM_TENANT = uuid.UUID("00000000-0000-0000-0000-000000000000")
DEFAULT_TENANT = uuid.UUID("00000000-0000-0000-0000-000000000001")
DEFAULT_SITE = uuid.UUID("00000000-0000-0000-0000-000000000001")

UTC = dt.timezone.utc


class World:
    """Seed, scale and anchor, plus the deterministic helpers built on them."""

    def __init__(self, seed, scale, anchor, integration_url):
        self.seed = seed
        self.scale = scale
        self.anchor = dt.datetime(anchor.year, anchor.month, anchor.day, tzinfo=UTC)
        self.integration_url = integration_url
        self._hash_cache = {}

    def rng(self, name):
        """Return a random.Random private to ``name`` (same seed and name -> same stream)."""
        return random.Random(f"{self.seed}:{name}")

    def id(self, name, prefix=None):
        """Return the uuid4 of entity ``name``; ``prefix`` forces its first 8 hex digits."""
        value = uuid.UUID(int=self.rng(f"id:{name}").getrandbits(128), version=4)
        if prefix is None:
            return value
        return uuid.UUID(prefix + str(value)[8:])

    def at(self, days=0.0, hours=0.0, minutes=0.0, seconds=0.0):
        """Return the aware UTC datetime ``anchor + offset`` (negative = before the anchor)."""
        return self.anchor + dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)

    def naive(self, moment):
        """Return ``moment`` as naive UTC, the way V6 stores its own columns."""
        return moment.astimezone(UTC).replace(tzinfo=None)

    def bcrypt_hash(self, name, secret=LAB_PASSWORD):
        """Return bcrypt(secret) with a cost-12 salt drawn from the stream ``hash:<name>``."""
        key = (name, secret)
        if key not in self._hash_cache:
            rng = self.rng(f"hash:{name}")
            salt = "".join(rng.choice(BCRYPT_ALPHABET) for _ in range(21))
            salt += rng.choice(BCRYPT_LAST_CHARS)
            hashed = bcrypt.hashpw(secret.encode(), b"$2b$12$" + salt.encode())
            self._hash_cache[key] = hashed.decode()
        return self._hash_cache[key]

    def hex_token(self, name, length=64):
        """Return ``length`` lowercase hex digits drawn from the stream ``token:<name>``."""
        rng = self.rng(f"token:{name}")
        return "".join(rng.choice("0123456789abcdef") for _ in range(length))
