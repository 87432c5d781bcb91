"""The Redis a test sees: fakeredis served over TCP on loopback.

Serving fakeredis on a real socket means a backend nobody wrote for xcomsim
reaches it unchanged, through ``RedisHook("redis_default")`` or a plain
``redis.Redis(host, port)``. One server lives for the whole session; between
tests it is wiped (FLUSHALL, SCRIPT FLUSH), so clients a backend caches keep
working and see an empty server.
"""

from __future__ import annotations

import threading

import redis


class RedisStore:
    def __init__(self) -> None:
        from fakeredis import TcpFakeServer

        self._server = TcpFakeServer(("127.0.0.1", 0))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="xcomsim-redis"
        )
        self._thread.start()
        self.host, self.port = self._server.server_address[:2]
        self.url = f"redis://{self.host}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, db=0)

    def reset(self) -> None:
        with self.client() as client:
            client.flushall()
            client.script_flush()

    def connection_uri(self) -> str:
        """The ``redis_default`` connection in Airflow's URI form."""
        return f"redis://{self.host}:{self.port}/0"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
