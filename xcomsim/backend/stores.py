"""Object stores the backend offloads values to and keeps push-once guards in.

Two implementations, S3 (boto3, through the Airflow connection) and Redis
(redis-py, through the Airflow connection), each with the one atomic primitive
push-once needs: create-if-absent (S3 ``If-None-Match: *``, Redis ``SET NX``)
and compare-and-swap (S3 ``If-Match``, a Redis Lua script) for the explicit
retry escape. Errors are turned into ``XComStoreError`` naming the store.
"""

from __future__ import annotations

import abc
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from xcomsim.backend.errors import XComStoreError

_CLIENTS: dict[tuple[str, str], Any] = {}
_BUCKET_RULE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_CLIENTS_LOCK = threading.Lock()


@dataclass(frozen=True)
class StoreLocation:
    """``scheme://conn_id@bucket/prefix`` for S3, ``redis://conn_id/prefix`` for Redis."""

    scheme: str
    conn_id: str
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, path: str) -> StoreLocation:
        parts = urlsplit(path)
        prefix = parts.path.strip("/")
        if parts.scheme == "s3":
            conn_id = parts.username or "aws_default"
            bucket = parts.netloc.rpartition("@")[2]  # as written: urlsplit's hostname lowercases it
            if not bucket:
                raise XComStoreError(f"object store path {path!r} names no bucket: use s3://CONN_ID@BUCKET/PREFIX")
            if not _BUCKET_RULE.fullmatch(bucket) or ".." in bucket:
                raise XComStoreError(
                    f"object store path {path!r}: bucket {bucket!r} breaks S3's naming rule (3-63 characters: "
                    "lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit); "
                    "write it exactly as it is named, capitals are never silently lowercased"
                )
            return cls("s3", conn_id, bucket, prefix)
        if parts.scheme == "redis":
            return cls("redis", parts.netloc or "redis_default", "", prefix)
        raise XComStoreError(
            f"object store path {path!r}: scheme must be s3:// (s3://CONN_ID@BUCKET/PREFIX) "
            "or redis:// (redis://CONN_ID/PREFIX)"
        )

    def same_place(self, other: StoreLocation) -> bool:
        """The same objects: scheme, bucket and prefix. The connection id is only how they are reached."""
        return (self.scheme, self.bucket, self.prefix) == (other.scheme, other.bucket, other.prefix)

    def __str__(self) -> str:
        where = f"{self.conn_id}@{self.bucket}" if self.scheme == "s3" else self.conn_id
        return f"{self.scheme}://{where}/{self.prefix}".rstrip("/")


@dataclass(frozen=True)
class StoredObject:
    name: str
    modified: float | None  # epoch seconds, on the store's clock
    version: str | None
    age: float | None = None  # seconds since it was written, on the store's own clock (None: unknown)
    token: str | None = None  # the version ``delete_if`` compares (S3's ETag)


class ObjectStore(abc.ABC):
    keeps_times = True  # whether objects carry a modification time on the store's clock (Redis: no)

    def __init__(self, location: StoreLocation):
        self.location = location

    def uri(self, name: str) -> str:
        return f"{self.location}/{name}"

    def _key(self, name: str) -> str:
        return f"{self.location.prefix}/{name}" if self.location.prefix else name

    @abc.abstractmethod
    def put(self, name: str, data: bytes) -> None: ...

    @abc.abstractmethod
    def get(self, name: str) -> bytes:
        """The object's bytes; XComStoreError if it does not exist."""

    @abc.abstractmethod
    def read(self, name: str) -> tuple[bytes, str] | None:
        """(bytes, version token for ``swap``) or None if absent."""

    @abc.abstractmethod
    def delete(self, name: str) -> None: ...

    @abc.abstractmethod
    def create(self, name: str, data: bytes) -> str | None:
        """Atomically create ``name`` if it does not exist: its version token (never empty), None if it did.

        The token is what ``read`` would return for it, so the writer can later
        swap it without reading it again."""

    @abc.abstractmethod
    def swap(self, name: str, token: str, data: bytes) -> str | None:
        """Atomically replace ``name`` if it still has version ``token``: the new version token, else None."""

    @abc.abstractmethod
    def names(self, under: str) -> Iterator[str]:
        """Names (relative to the prefix) of every object under ``under``."""

    def listing(self, under: str) -> Iterator[StoredObject]:
        """Every object under ``under``, with its last-modified time and version where the store keeps them."""
        for name in self.names(under):
            yield StoredObject(name, None, None)

    def version(self, name: str) -> str | None:
        """A token that changes whenever ``name`` is rewritten (None: absent, or the store keeps none)."""
        return None

    def now(self) -> float | None:
        """The store's own clock, in epoch seconds (None: it has none to read)."""
        return None

    def rehearse(self) -> None:
        """Before a fork, without a request: run the client's request path once, so a forked child inherits
        what it sets up (nothing by default: Redis's could only be rehearsed with a real round trip)."""

    @abc.abstractmethod
    def delete_if(self, name: str, token: str) -> bool:
        """Atomically delete ``name`` if it still has version ``token`` (as ``read`` or ``listing`` gave it)."""


class S3ObjectStore(ObjectStore):
    def _client(self) -> Any:
        return _cached_client("s3", self.location.conn_id, _make_s3_client)

    def _call(self, action: str, name: str, expected: tuple[str, ...] = (), **kwargs: Any) -> Any:
        """One S3 call; a ClientError whose code is in ``expected`` is the caller's to read, any other one
        (throttling such as SlowDown, access denied, ...) is an XComStoreError naming it."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client(), action)(Bucket=self.location.bucket, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            if code in expected:
                raise
            if code == "NoSuchBucket":
                raise XComStoreError(
                    f"S3 bucket {self.location.bucket!r} does not exist "
                    f"(connection {self.location.conn_id!r}); create it or fix [xcomsim] xcom_objectstorage_path"
                ) from None
            raise XComStoreError(
                f"S3 store {self.location} refused {action} of {name!r}: {code or 'error'} "
                f"({error.get('Message', exc)})"
            ) from exc
        except BotoCoreError as exc:
            raise XComStoreError(f"S3 store {self.location} unreachable during {action} of {name!r}: {exc}") from exc

    def put(self, name: str, data: bytes) -> None:
        self._call("put_object", name, Key=self._key(name), Body=data)

    def rehearse(self) -> None:
        """One ``PutObject`` through the client's request path (endpoint rules for this bucket, serialisation,
        parsing), unsigned and answered in this thread by a ``before-send`` handler: nothing leaves the process
        and no credentials are fetched (a worker's start never waits on the network for it). What botocore
        caches on the way, a task process forked afterwards inherits: its first upload cost 6.1 ms of CPU
        instead of 8.5 (a 2.8 KB value against moto's server, median of 25). Another thread's requests in the
        meantime are signed and sent as usual."""
        import botocore
        from botocore.awsrequest import AWSResponse

        rehearsing = threading.get_ident()

        class _Empty:
            def stream(self, *args: Any, **kwargs: Any) -> Iterator[bytes]:
                yield b""

            def read(self, *args: Any, **kwargs: Any) -> bytes:
                return b""

        def answer(request: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != rehearsing:
                return None
            return AWSResponse(request.url, 200, {"ETag": '"rehearsal"'}, _Empty())

        def unsigned(**kwargs: Any) -> Any:
            return botocore.UNSIGNED if threading.get_ident() == rehearsing else None

        events = self._client().meta.events
        hooks = (("before-send.s3.PutObject", answer), ("choose-signer.s3.PutObject", unsigned))
        for event, handler in hooks:
            events.register_first(event, handler, unique_id=f"xcomsim-rehearsal-{event}")
        try:
            self._call("put_object", "rehearsal", Key=self._key("rehearsal"), Body=b"x" * 2048)
        finally:
            for event, _ in hooks:
                events.unregister(event, unique_id=f"xcomsim-rehearsal-{event}")

    def get(self, name: str) -> bytes:
        found = self.read(name)
        if found is None:
            raise XComStoreError(f"object {self.uri(name)} is missing: the XCom row points to nothing")
        return found[0]

    def read(self, name: str) -> tuple[bytes, str] | None:
        from botocore.exceptions import ClientError

        try:
            response = self._call("get_object", name, ("NoSuchKey", "404"), Key=self._key(name))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return response["Body"].read(), response["ETag"]

    def delete(self, name: str) -> None:
        self._call("delete_object", name, Key=self._key(name))

    def create(self, name: str, data: bytes) -> str | None:
        return self._conditional_put(name, data, IfNoneMatch="*")

    def swap(self, name: str, token: str, data: bytes) -> str | None:
        return self._conditional_put(name, data, IfMatch=token)

    def _conditional_put(self, name: str, data: bytes, **condition: str) -> str | None:
        """The new ETag (the version ``read`` returns); None if the condition failed."""
        from botocore.exceptions import ClientError

        try:
            response = self._call("put_object", name, ("PreconditionFailed", "ConditionalRequestConflict",
                                                       "NoSuchKey"), Key=self._key(name), Body=data, **condition)  # fmt: skip
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"):
                return None
            raise
        return response.get("ETag") or self._etag_of(name)

    def _etag_of(self, name: str) -> str:
        """An endpoint whose PutObject reply names no ETag: read it (one more request)."""
        found = self.read(name)
        if found is None:
            raise XComStoreError(f"S3 store {self.location}: {name!r} is gone right after it was written")
        return found[1]

    def names(self, under: str) -> Iterator[str]:
        for stored in self.listing(under):
            yield stored.name

    def listing(self, under: str) -> Iterator[StoredObject]:
        start = self._key(under)
        strip = len(self._key(""))
        paginator = self._client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.location.bucket, Prefix=start):
            # S3's clock, as its reply says: an age from two of its own readings (Date has whole seconds, so an
            # age can read up to a second short, never long)
            now = _http_date(page)
            for obj in page.get("Contents", []):
                modified = obj["LastModified"].timestamp()
                yield StoredObject(obj["Key"][strip:], modified, f"{obj['ETag']}@{int(modified)}",
                                   None if now is None else max(0.0, now - modified), obj["ETag"])  # fmt: skip

    def delete_if(self, name: str, token: str) -> bool:
        """``DeleteObject`` with ``If-Match``; an endpoint without conditional deletes gets a re-read, then a delete."""
        from botocore.exceptions import ClientError

        try:
            self._call("delete_object", name, _NO_CONDITION + ("PreconditionFailed",), Key=self._key(name),
                       IfMatch=token)  # fmt: skip
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
                return False
            found = self.read(name)  # no conditional delete here: the narrowest check-then-act there is
            if found is None or found[1] != token:
                return False
            self.delete(name)
        return True

    def version(self, name: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            head = self._call("head_object", name, ("NoSuchKey", "404", "NotFound"), Key=self._key(name))
            return f"{head['ETag']}@{int(head['LastModified'].timestamp())}"  # seconds: what both calls give
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise


_NO_CONDITION = ("NotImplemented", "InvalidArgument", "InvalidRequest")


def _http_date(response: dict[str, Any]) -> float | None:
    from email.utils import parsedate_to_datetime

    raw = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        return parsedate_to_datetime(raw).timestamp() if raw else None
    except (TypeError, ValueError):
        return None


_DELETE_IF_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_CAS_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


class RedisObjectStore(ObjectStore):
    keeps_times = False

    def _client(self) -> Any:
        return _cached_client("redis", self.location.conn_id, _make_redis_client)

    def _call(self, action: str, name: str, *args: Any, **kwargs: Any) -> Any:
        import redis

        try:
            return getattr(self._client(), action)(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise XComStoreError(
                f"Redis store {self.location} unreachable during {action} of {name!r}: {exc}"
            ) from exc
        except redis.RedisError as exc:
            raise XComStoreError(f"Redis store {self.location} refused {action} of {name!r}: {exc}") from exc

    def put(self, name: str, data: bytes) -> None:
        self._call("set", name, self._key(name), data)

    def get(self, name: str) -> bytes:
        data = self._call("get", name, self._key(name))
        if data is None:
            raise XComStoreError(f"object {self.uri(name)} is missing: the XCom row points to nothing")
        return data

    def read(self, name: str) -> tuple[bytes, str] | None:
        data = self._call("get", name, self._key(name))
        return None if data is None else (data, data.hex())

    def delete(self, name: str) -> None:
        self._call("delete", name, self._key(name))

    def create(self, name: str, data: bytes) -> str | None:
        return data.hex() if self._call("set", name, self._key(name), data, nx=True) else None

    def swap(self, name: str, token: str, data: bytes) -> str | None:
        swapped = self._call("eval", name, _CAS_SCRIPT, 1, self._key(name), bytes.fromhex(token), data)
        return data.hex() if swapped else None

    def names(self, under: str) -> Iterator[str]:
        strip = len(self._key(""))
        for key in self._call("scan_iter", under, match=self._key(under) + "*"):
            yield key.decode()[strip:]

    def now(self) -> float | None:
        seconds, micros = self._call("time", "TIME")
        return seconds + micros / 1e6

    def delete_if(self, name: str, token: str) -> bool:
        return bool(self._call("eval", name, _DELETE_IF_SCRIPT, 1, self._key(name), bytes.fromhex(token)))


def open_store(path: str) -> ObjectStore:
    if not path:
        raise XComStoreError(
            "ExclusiveXCom has no object store: set [xcomsim] xcom_objectstorage_path "
            "(AIRFLOW__XCOMSIM__XCOM_OBJECTSTORAGE_PATH), e.g. s3://aws_default@my-bucket/xcom "
            "or redis://redis_default/xcom; it holds offloaded values and push-once guards"
        )
    location = StoreLocation.parse(path)
    return S3ObjectStore(location) if location.scheme == "s3" else RedisObjectStore(location)


def clear_client_cache() -> None:
    """Forget cached clients (after connections change, e.g. between test sessions)."""
    with _CLIENTS_LOCK:
        _CLIENTS.clear()


def _cached_client(kind: str, conn_id: str, factory: Any) -> Any:
    with _CLIENTS_LOCK:
        client = _CLIENTS.get((kind, conn_id))
        if client is None:
            client = _CLIENTS[(kind, conn_id)] = factory(conn_id)
        return client


def _make_s3_client(conn_id: str) -> Any:
    """A boto3 S3 client for the Airflow connection, as ``S3Hook.get_conn`` builds it, without its telemetry.

    The hook's own ``get_conn`` adds a user-agent field naming the operator that
    called it, found with ``inspect.stack()``, which reads the source of every
    frame: in a task process (a deep stack, every task a fresh process) that was
    most of a multi-second first push. The session (credentials, role, profile)
    and the endpoint still come from the hook, so the connection means the same.
    """
    try:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    except ImportError:
        raise XComStoreError(
            "an s3:// object store needs apache-airflow-providers-amazon, a dependency of xcomsim that is "
            "not installed here (pip install apache-airflow-providers-amazon)"
        ) from None
    hook = S3Hook(aws_conn_id=conn_id)
    session = hook.get_session(region_name=hook.region_name)
    session._session.register_component("data_loader", _botocore_loader())
    return session.client("s3", endpoint_url=hook.conn_config.get_service_endpoint_url(service_name="s3"),
                          config=hook.config, verify=hook.verify)  # fmt: skip


_LOADER: Any = None


def _botocore_loader() -> Any:
    """One botocore data loader for every client of the process: botocore's own is per session and parses the S3
    model and the endpoint tables (megabytes of JSON) again for each; a process forked after ``warm`` inherits
    them parsed."""
    global _LOADER
    if _LOADER is None:
        from botocore.loaders import create_loader

        _LOADER = create_loader()
    return _LOADER


def warm() -> None:
    """Do before a fork what every push's first S3 client needs: import boto3 and the Amazon provider's hook, and
    parse botocore's S3 model and endpoint data into the process's loader (no request, no connection).

    Measured in a fresh task process forked from a Celery pool: building the first client fell from about 1.4
    CPU-seconds to 0.02 when its parent had done this (``xcomsim.backend.warm`` does it in a Celery worker).
    """
    import boto3
    from airflow.providers.amazon.aws.hooks import s3  # noqa: F401 - imported for the children

    session = boto3.session.Session(aws_access_key_id="warm", aws_secret_access_key="warm", region_name="us-east-1")
    session._session.register_component("data_loader", _botocore_loader())
    session.client("s3", endpoint_url="http://127.0.0.1:9")
    warm_clients()


def warm_clients(paths: tuple[str, ...] | None = None) -> list[str]:
    """Build the clients of the configured stores (``paths``: default, the values' and the guards') before a fork,
    so a task process inherits them instead of building one (a hook, a session, a client: about 0.1 CPU-second
    and a connection lookup through the supervisor per task), and rehearse an upload on each. Only where this
    process resolves the connection itself (an environment variable or a secrets backend); otherwise each task
    builds its own as before. A client that sent no request holds no socket, so every forked child opens its own.
    Returns the stores warmed."""
    import logging

    from xcomsim.backend.config import load

    if paths is None:
        try:
            config = load()
        except Exception:  # noqa: BLE001 - a configuration error is the task's to report, where it names the task
            return []
        paths = (config.path, config.guard_path)
    from airflow.sdk import BaseHook

    warmed = []
    for path in dict.fromkeys(p for p in paths if p):
        try:
            store = open_store(path)
            # resolvable here, or skipped: the AWS hook would quietly build a client without the connection
            BaseHook.get_connection(store.location.conn_id)
            store._client()
        except Exception as exc:  # noqa: BLE001 - warming is an optimisation: the task builds its client itself
            logging.getLogger(__name__).info("xcomsim: %s not warmed before the fork (%s)", path, exc)
            continue
        try:
            store.rehearse()
        except Exception as exc:  # noqa: BLE001 - the client is built; only its first upload stays dearer
            logging.getLogger(__name__).info("xcomsim: %s warmed without its rehearsal (%s)", path, exc)
        warmed.append(path)
    return warmed


def _make_redis_client(conn_id: str) -> Any:
    import redis

    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:
        raise XComStoreError(f"Redis connection {conn_id!r} is not defined: {exc}") from None
    extra = conn.extra_dejson
    return redis.Redis(
        host=conn.host or "localhost",
        port=int(conn.port or 6379),
        db=int(extra.get("db", 0)),
        username=conn.login or None,
        password=conn.password or None,
        ssl=bool(extra.get("ssl", False)),
        socket_connect_timeout=float(extra.get("socket_connect_timeout", 5)),
        socket_timeout=float(extra.get("socket_timeout", 30)),
    )
