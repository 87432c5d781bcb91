"""The Redis a test sees: fakeredis served over TCP on loopback (a child process), or a real server.

Serving fakeredis on a real socket means a backend nobody wrote for xcomsim
reaches it unchanged, through ``RedisHook("redis_default")`` or a plain
``redis.Redis(host, port)``. One server lives for the whole session; between
tests it is wiped (FLUSHALL, SCRIPT FLUSH), so clients a backend caches keep
working and see an empty server.

On a real server (``RedisServer``) the test owns one DB index, not the server:
``redis://host:6379/N`` gives DB N to a run (N + k to the k-th xdist worker),
which must be empty when the session starts, and is emptied before and after
every test.
"""

from __future__ import annotations

import functools
import json
import socket
import urllib.parse
from typing import Any

from xcomsim.env.naming import mask_url, worker_number
from xcomsim.errors import ServiceError

CONNECT_TIMEOUT = 3
COMMAND_TIMEOUT = 30
CHECK_TIMEOUT = 5  # a server that accepts but never answers


class RedisStore:
    """fakeredis's TCP server in a child process (``child_server``), wiped between tests."""

    def __init__(self) -> None:
        from xcomsim.env.child_server import ChildServer

        self._server = ChildServer("fakeredis")
        self.host, self.port = self._server.host, self._server.port
        self.url = f"redis://{self.host}:{self.port}/0"

    def client(self) -> Any:
        import redis

        return redis.Redis(host=self.host, port=self.port, db=0)

    def reset(self) -> None:
        """FLUSHALL and SCRIPT FLUSH, spoken in RESP on a plain socket: a session whose tests never
        use Redis does not import redis-py for it."""
        self._server.wait_ready()
        with socket.create_connection((self.host, self.port), timeout=COMMAND_TIMEOUT) as conn:
            conn.sendall(b"*1\r\n$8\r\nFLUSHALL\r\n*2\r\n$6\r\nSCRIPT\r\n$5\r\nFLUSH\r\n")
            replies = b""
            while replies.count(b"\r\n") < 2:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                replies += chunk
        if replies != b"+OK\r\n+OK\r\n":
            raise ServiceError(f"xcomsim: the embedded Redis at {self.url} did not empty itself: {replies!r}")

    def finish(self) -> None:
        """End of a test: nothing to do, the next test's ``reset`` wipes the server."""

    def connection_uri(self) -> str:
        """The ``redis_default`` connection in Airflow's URI form."""
        return f"redis://{self.host}:{self.port}/0"

    def close(self) -> None:
        self._server.close()


@functools.cache
def one_database_redis() -> type:
    """The test's client class on a shared server: FLUSHALL empties only the test's DB index."""
    import redis

    class OneDatabaseRedis(redis.Redis):
        def flushall(self, asynchronous: bool = False, **kwargs: Any) -> Any:
            return self.flushdb(asynchronous, **kwargs)

    return OneDatabaseRedis


class RedisServer:
    """A real Redis reached through ``redis://[user:password@]host:port[/db]`` (``rediss://`` for TLS)."""

    def __init__(self, url: str):
        import redis

        self.shown = mask_url(url)
        try:
            pool = redis.ConnectionPool.from_url(url)
        except ValueError as exc:
            raise ServiceError(f"xcomsim redis {self.shown} is not a redis:// URL ({exc})") from None
        parts = urllib.parse.urlsplit(url)
        query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "db"]
        # from_url lets the URL's DB index win over db=; the client's URL has none.
        self._raw = urllib.parse.urlunsplit(parts._replace(path="", query=urllib.parse.urlencode(query)))
        self._kwargs = pool.connection_kwargs
        self._ssl = url.startswith("rediss://")
        self.db = int(pool.connection_kwargs.get("db") or 0) + worker_number()
        self.host = self._kwargs.get("host", "localhost")
        self.port = int(self._kwargs.get("port", 6379))
        self.url = f"{'rediss' if self._ssl else 'redis'}://{self.host}:{self.port}/{self.db}"  # no password

    def client(self, timeout: float = COMMAND_TIMEOUT) -> Any:
        return one_database_redis().from_url(self._raw, db=self.db, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=timeout)

    def check(self) -> None:
        """Fail fast, naming the URL and what to fix; the DB index must exist and be empty."""
        import redis

        try:
            with self.client(timeout=CHECK_TIMEOUT) as client:
                client.ping()
                keys = client.dbsize()
        except redis.AuthenticationError as exc:
            raise ServiceError(f"xcomsim redis {self.shown}: the server refused the credentials; fix user/password in the URL ({exc})") from None
        except redis.ResponseError as exc:
            if "DB index" in str(exc) or "invalid DB" in str(exc):
                raise ServiceError(
                    f"xcomsim redis {self.shown}: DB index {self.db} does not exist on the server ({exc}); "
                    "give a lower index in the URL (each xdist worker uses the next one)"
                ) from None
            if any(word in str(exc) for word in ("NOAUTH", "WRONGPASS", "AUTH")):
                raise ServiceError(f"xcomsim redis {self.shown}: the server wants a password; put it in the URL ({exc})") from None
            raise ServiceError(f"xcomsim redis {self.shown}: {exc}") from None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise ServiceError(
                f"xcomsim redis {self.shown}: no Redis answered within {CHECK_TIMEOUT}s; "
                f"start the server or fix host and port ({exc})"
            ) from None
        if keys:
            raise ServiceError(
                f"xcomsim redis {self.shown}: DB index {self.db} holds {keys} key(s), and xcomsim empties its DB "
                "index after every test; give it an unused index (redis://host:port/N), or FLUSHDB it if the keys "
                "are a crashed run's"
            )

    def reset(self) -> None:
        with self.client() as client:
            client.flushdb()

    def finish(self) -> None:
        """End of a test: leave the DB index empty."""
        self.reset()

    def connection_uri(self) -> str:
        """The ``redis_default`` connection (Airflow's JSON form), on this process's DB index."""
        extra: dict[str, Any] = {"db": self.db}
        if self._ssl:
            extra["ssl"] = True
        conn = {"conn_type": "redis", "host": self.host, "port": self.port, "extra": extra}
        if self._kwargs.get("username"):
            conn["login"] = self._kwargs["username"]
        if self._kwargs.get("password"):
            conn["password"] = self._kwargs["password"]
        return json.dumps(conn)

    def close(self) -> None:
        self.reset()
