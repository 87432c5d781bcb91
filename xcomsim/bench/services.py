"""What a measurement ran against: real servers, or the embedded fakes.

Probed by behaviour, not by how the environment was configured: a Redis that
refuses ``INFO`` is fakeredis, an S3 endpoint that serves ``/moto-api/`` is
moto, and an SQLite metadata DB is embedded. Fakes run in this process or a
child process on loopback and answer without a network or a disk in between, so
their latencies are not proxies for real servers.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Service:
    role: str  # "metadata DB", "Redis", "S3"
    what: str
    fake: bool
    short: str = ""  # for a table cell: "fakeredis", "moto", "PostgreSQL"


def probe_db(engine: Any) -> Service:
    url = engine.url
    if url.get_backend_name() == "sqlite":
        where = "in memory" if url.database in (None, "", ":memory:") or "mode=memory" in str(url) else "file"
        return Service("metadata DB", f"SQLite {where} (embedded)", True, "SQLite")
    return Service("metadata DB", f"{url.get_backend_name()} at {url.host or 'localhost'}", False,
                   url.get_backend_name())


def probe_redis(client: Any) -> Service:
    import redis

    try:
        info = client.info("server")
    except redis.ResponseError:  # fakeredis implements no INFO
        return Service("Redis", "fakeredis", True, "fakeredis")
    return Service("Redis", f"redis-server {info.get('redis_version', '?')}", False, "redis-server")


def probe_s3(client: Any) -> Service:
    endpoint = client.meta.endpoint_url
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=5) as response:
            is_moto = response.status == 200
    except (urllib.error.URLError, OSError):
        is_moto = False
    if is_moto:
        return Service("S3", f"moto server at {endpoint}", True, "moto")
    return Service("S3", f"S3 at {endpoint}", False, "S3")


def probe(env: Any) -> list[Service]:
    return [probe_db(env.engine), probe_redis(env.redis), probe_s3(env.s3)]


def caveat(services: list[Service]) -> str | None:
    """The plain statement a report must carry when any figure came from a fake."""
    fakes = [s for s in services if s.fake]
    if not fakes:
        return None
    named = ", ".join(f"{s.role}: {s.what}" for s in fakes)
    return (
        f"Measured on fakes ({named}). Fakes are not latency proxies: they run inside this "
        "process (over loopback at most), with no real server, disk or network between, and share "
        "its GIL with the code being measured. For real "
        "figures point it at real servers (xcomsim bench --db/--redis/--s3-endpoint, or pytest "
        "--xcomsim-db/--xcomsim-redis/--xcomsim-s3-endpoint)."
    )
