"""What landed, in every store a backend can reach, as an Observation.

Not only the test's own bucket and Redis DB: a backend nobody wrote for
xcomsim writes where its own configuration says. So the kit lists every bucket
on the embedded S3 (on a shared endpoint: the test's bucket and every bucket
the process's S3 clients touched), every Redis DB index of the embedded
server (on a shared server: the test's own, and every other index the
process's Redis clients connected to on that server), and every local directory an
fsspec ``file://`` path wrote into (``ObjectStoragePath("file://...")``), each
object with its size. Names: ``s3://bucket/key``, ``redis:key`` (DB 0),
``redis/N:key`` (DB N), ``file:///path``.
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path
from typing import Any

from xcomsim.checks import Observation

REDIS_DATABASES = 16  # Redis's default ``databases``
_touched_buckets: set[str] = set()
_touched_dirs: set[str] = set()
_touched_redis: set[tuple[str, int, int]] = set()  # (host, port, DB index) of every Redis connection made
_installed = False
_lock = threading.Lock()


def watch() -> None:
    """Record, process-wide, the buckets S3 clients name, the Redis DB indexes clients connect to, and the
    local directories fsspec writes into."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    from botocore.client import BaseClient

    _record_calls(BaseClient)
    try:
        from aiobotocore.client import AioBaseClient
    except ImportError:  # s3fs is not installed: no async client to watch
        pass
    else:
        _record_calls(AioBaseClient)
    try:
        from redis.connection import Connection
    except ImportError:
        pass
    else:
        _record_connections(Connection)
    try:
        from fsspec.implementations.local import LocalFileSystem
    except ImportError:
        return
    original = LocalFileSystem._open

    @functools.wraps(original)
    def opened(self: Any, path: Any, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
        if any(flag in mode for flag in "wax"):
            _touched_dirs.add(str(Path(self._strip_protocol(path)).parent))
        return original(self, path, mode, *args, **kwargs)

    LocalFileSystem._open = opened


def _record_calls(client_class: Any) -> None:
    original = client_class._make_api_call

    @functools.wraps(original)
    def call(self: Any, operation: str, params: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        bucket = params.get("Bucket") if isinstance(params, dict) else None
        if isinstance(bucket, str) and getattr(self.meta, "service_model", None) is not None \
                and self.meta.service_model.service_name == "s3":  # fmt: skip
            _touched_buckets.add(bucket)
        return original(self, operation, params, *args, **kwargs)

    client_class._make_api_call = call


def _record_connections(connection_class: Any) -> None:
    original = connection_class.__init__

    @functools.wraps(original)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        host = getattr(self, "host", None) or getattr(self, "_host", None)
        if host is not None:
            _touched_redis.add((str(host), int(getattr(self, "port", 0) or 0), int(getattr(self, "db", 0) or 0)))

    connection_class.__init__ = init


_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _same_host(a: str, b: str) -> bool:
    return a == b or (a in _LOOPBACK and b in _LOOPBACK)


def watch_directory(path: str | os.PathLike[str]) -> None:
    """Observe ``path`` too (a per-test local store the test hands to its backend)."""
    _touched_dirs.add(str(Path(path)))


def _buckets(env: Any) -> list[str]:
    from xcomsim.env.s3_store import S3Store

    if isinstance(env.simulation.s3, S3Store):  # embedded: the whole endpoint is this test's
        return sorted(b["Name"] for b in env.s3.list_buckets().get("Buckets", []))
    return sorted({env.bucket} | _touched_buckets)


def _s3_sizes(env: Any) -> dict[str, int]:
    from botocore.exceptions import ClientError

    from xcomsim.env.s3_store import S3Store

    if isinstance(env.simulation.s3, S3Store):  # embedded: every bucket's objects in one request
        return env.simulation.s3.objects()
    sizes = {}
    paginator = env.s3.get_paginator("list_objects_v2")
    for bucket in _buckets(env):
        try:
            for page in paginator.paginate(Bucket=bucket):
                for obj in page.get("Contents", []):
                    sizes[f"s3://{bucket}/{obj['Key']}"] = obj["Size"]
        except ClientError:  # a touched bucket that does not exist (or is not ours to list)
            continue
    return sizes


@functools.lru_cache(maxsize=None)
def _redis_client(host: str, port: int, db: int) -> Any:
    import redis

    return redis.Redis(host=host, port=port, db=db, socket_timeout=10)


def _redis_databases(env: Any) -> list[tuple[int, Any]]:
    from xcomsim.env.redis_store import RedisStore

    server = env.simulation.redis
    if isinstance(server, RedisStore):  # embedded: every DB index is this test's
        return [(db, _redis_client(server.host, server.port, db)) for db in range(REDIS_DATABASES)]
    # Shared: the test's own DB (named as DB 0), and every other index a client of this process used there
    # (a backend's own connection id, ``redis://host:port/3``). Index 0 is the test's name, so it is left out.
    pool = env.redis.connection_pool
    touched = sorted({db for host, port, db in list(_touched_redis) if port == server.port
                      and _same_host(host, server.host) and db not in (0, server.db)})  # fmt: skip
    return [(0, env.redis)] + [(db, redis_db(pool, db)) for db in touched]


@functools.lru_cache(maxsize=None)
def redis_db(pool: Any, db: int) -> Any:
    """A client of DB ``db`` on the server of ``pool``, with its credentials and TLS."""
    import redis

    return redis.Redis(connection_pool=redis.ConnectionPool(
        connection_class=pool.connection_class, **{**pool.connection_kwargs, "db": db}))  # fmt: skip


def _redis_sizes(env: Any) -> dict[str, int]:
    sizes = {}
    import redis

    for db, client in _redis_databases(env):
        try:
            if db and not client.dbsize():
                continue
        except redis.ResponseError:  # an index a client of this process asked for, which the server does not have
            continue
        for key in client.keys("*"):
            name = f"redis:{key.decode()}" if db == 0 else f"redis/{db}:{key.decode()}"
            sizes[name] = _redis_size(client, key)
    return sizes


def _file_sizes() -> dict[str, int]:
    sizes = {}
    for folder in sorted(_touched_dirs):
        for root, _, files in os.walk(folder):
            for name in files:
                path = os.path.join(root, name)
                try:
                    sizes[f"file://{path}"] = os.path.getsize(path)
                except OSError:  # deleted while listing
                    continue
    return sizes


def store_sizes(env: Any) -> dict[str, int]:
    """Every object of every store the backend can reach, and its size in bytes."""
    watch()
    return {**_s3_sizes(env), **_redis_sizes(env), **_file_sizes()}


def plant(env: Any, name: str, body: bytes) -> None:
    """Write an object that no XCom wrote, named as ``store_sizes`` names objects (a user's file beside them)."""
    from xcomsim.checks.values import object_key

    if name.startswith("s3://"):
        bucket = name.split("/", 3)[2]
        _touched_buckets.add(bucket)  # observed from now on, on a shared endpoint too
        env.s3.put_object(Bucket=bucket, Key=object_key(name), Body=body)
    elif name.startswith("redis"):
        db = int(name.partition(":")[0].partition("/")[2] or 0)
        client = env.redis if db == 0 else dict(_redis_databases(env))[db]
        client.set(object_key(name), body)
    elif name.startswith("file://"):
        path = Path(object_key(name))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    else:
        raise ValueError(f"no store is named by {name!r}: expected s3://bucket/key, redis[/N]:key or file:///path")


def store_objects(env: Any) -> set[str]:
    return set(store_sizes(env))


def object_size(env: Any, name: str) -> int | None:
    """The size of one object named as ``store_sizes`` names it, or None if it does not exist."""
    from botocore.exceptions import ClientError

    from xcomsim.checks.values import object_key

    if name.startswith("s3://"):
        try:
            return int(env.s3.head_object(Bucket=name.split("/", 3)[2], Key=object_key(name))["ContentLength"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NoSuchBucket"):
                return None
            raise
    if name.startswith("redis"):
        db = int(name.partition(":")[0].partition("/")[2] or 0)
        client = env.redis if db == 0 else dict(_redis_databases(env)).get(db)
        key = object_key(name)
        return None if client is None or not client.exists(key) else _redis_size(client, key)
    try:
        return os.path.getsize(object_key(name))
    except OSError:
        return None


def _redis_size(client: Any, key: Any) -> int:
    try:
        return int(client.strlen(key))
    except Exception:  # noqa: BLE001 - not a string value: counted, size unknown
        return 0


def observe_references(env: Any, run_id: str, prefix: str = "") -> Observation:
    """The run's rows (of keys starting with ``prefix``) and, of the stores, only the objects those rows
    name (``checks.values.references``): all the dangling-reference check reads, one look-up per
    reference instead of a listing of every store (the model test checks it after every step)."""
    from xcomsim.checks.values import references

    rows = [row for row in env.xcom_rows() if row["run_id"] == run_id and row["key"].startswith(prefix)]
    names = sorted({name for row in rows for name in references(row["value"], env.bucket)})
    sizes = {name: object_size(env, name) for name in names}
    return Observation(rows=rows, objects={n: s for n, s in sizes.items() if s is not None}, bucket=env.bucket)


def observe(env: Any, run_id: str | None = None, **fields: Any) -> Observation:
    """The rows (of one DAG run, or all) and the stores as they are now, plus any other Observation fields."""
    rows = [row for row in env.xcom_rows() if run_id is None or row["run_id"] == run_id]
    return Observation(rows=rows, objects=store_sizes(env), bucket=env.bucket, **fields)


def stored_values(env: Any, dag_id: str, run_id: str) -> dict[str, Any]:
    """Key -> the backend's deserialised value, for every row of the run (``runner.read_xcoms``)."""
    records = read_rows(env, dag_id, run_id)
    broken = [f"{r.key}: {r.error}" for r in records if r.error]
    if broken:
        raise AssertionError(f"the backend cannot read back what it stored: {broken}")
    return {r.key: r.value for r in records}


def read_rows(env: Any, dag_id: str, run_id: str) -> list[Any]:
    """Every row of the run read back through the backend (``runner.read_xcoms``), errors kept per row."""
    from sqlalchemy.orm import Session

    from xcomsim.runner import read_xcoms

    with Session(env.engine) as session:
        return read_xcoms(session, env.backend, dag_id, run_id)
