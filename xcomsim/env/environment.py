"""One object per session (Simulation) and one per test (Environment).

The session pays for what is slow once (Airflow import, schema migration, the
Redis and S3 servers); each test gets a fresh clone of the metadata DB, an
empty Redis, a reset S3 with its bucket, and its own XCom backend installed.

By default every store is embedded (in-memory SQLite clones, fakeredis, moto);
``HarnessSettings.db_url`` / ``redis_url`` / ``s3_endpoint`` swap in real
servers, each behind the same small interface, and ``check_services`` tries
them before anything slow starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from xcomsim.env import execution_api
from xcomsim.env.airflow_home import AirflowHome
from xcomsim.env.dag_folder import DagFolder
from xcomsim.env.env_vars import ScopedEnv
from xcomsim.env.heap import long_lived_startup
from xcomsim.env.metadata_db import TemplateDatabase
from xcomsim.env.postgres_db import PostgresServer, PostgresTemplate
from xcomsim.env.redis_store import RedisServer, RedisStore
from xcomsim.env.s3_store import S3Endpoint, S3Store
from xcomsim.env.xcom_backend import clear_module_caches, install_backend, load_backend
from xcomsim import noise
from xcomsim.errors import ConfigError
from xcomsim.settings import AIRFLOW_BACKEND, SESSION_ONLY, HarnessSettings


def check_services(settings: HarnessSettings) -> None:
    """Reach every real server in ``settings`` (short timeouts); a ServiceError says what to fix."""
    if settings.db_url:
        server = PostgresServer(settings.db_url)
        try:
            server.check()
        finally:
            server.close()
    if settings.redis_url:
        RedisServer(settings.redis_url).check()
    if settings.s3_endpoint:
        S3Endpoint(settings.s3_endpoint).check()


class Simulation:
    """The session-wide part of the harness."""

    def __init__(self, settings: HarnessSettings, home: AirflowHome | None = None):
        with long_lived_startup():  # Airflow's import and the API build: see xcomsim.env.heap
            self._start(settings, home)

    def _start(self, settings: HarnessSettings, home: AirflowHome | None) -> None:
        self.settings = settings
        # The home must exist before Airflow is imported; the plugin makes it early.
        self.home = home or AirflowHome(settings.dags_folder)
        self.home.set_env({"AIRFLOW__CORE__XCOM_BACKEND": AIRFLOW_BACKEND})
        self.redis: RedisStore | RedisServer
        self.s3: S3Store | S3Endpoint
        if settings.redis_url:
            self.redis = RedisServer(settings.redis_url)
            self.redis.check()
        else:
            self.redis = RedisStore()
        if settings.s3_endpoint:
            self.s3 = S3Endpoint(settings.s3_endpoint)
            self.s3.check()
        else:
            self.s3 = S3Store(settings.bucket)
        self.home.set_env(
            {"AIRFLOW_CONN_REDIS_DEFAULT": self.redis.connection_uri(), **self.s3.environment()}
        )
        # Each times itself: template.migrate_seconds.
        self.template: TemplateDatabase | PostgresTemplate
        if settings.db_url:
            server = PostgresServer(settings.db_url)
            server.check()
            self.template = PostgresTemplate.migrate(server)
        else:
            self.template = TemplateDatabase.migrate()
        self.dags = DagFolder(self.home.dags_folder)
        # Before anything else builds Airflow's in-process API app (a DAG's own dag.test() would):
        # built here, it serves the task SDK's version only (see execution_api).
        execution_api.mark_requests()
        from xcomsim.runner import type_adapters

        type_adapters.install()  # the task runner's side: its pydantic adapters built once
        noise.drop_harness_reported_logs()  # Airflow's logging is configured now, at its import

    @classmethod
    @contextlib.contextmanager
    def start(cls, settings: HarnessSettings | None = None) -> Iterator[Simulation]:
        sim = cls(settings or HarnessSettings())
        try:
            yield sim
        finally:
            sim.close()

    @contextlib.contextmanager
    def environment(self, **overrides: Any) -> Iterator[Environment]:
        """A fresh per-test environment; ``overrides`` change settings for this one only."""
        fixed = SESSION_ONLY & set(overrides)
        if fixed:
            raise ConfigError(f"xcomsim setting(s) {sorted(fixed)} belong to the session; set them with the --xcomsim-* options")
        env = Environment(self, self.settings.replace(**overrides) if overrides else self.settings)
        try:
            yield env
        finally:
            env.close()

    def close(self) -> None:
        self.template.close()
        self.redis.close()
        self.s3.close()
        self.home.close()


class Environment:
    """What one test sees: ``engine``, ``redis``, ``s3``, ``bucket``, ``backend``, ``run_dag``."""

    def __init__(self, simulation: Simulation, settings: HarnessSettings):
        self.simulation = simulation
        self.settings = settings
        self.backend: type = load_backend(settings.backend)
        self._db: Any = None
        self._previous_backend: type | None = None
        self._env = ScopedEnv()
        # On a shared S3 endpoint the bucket is this test's own, named after settings.bucket.
        self.bucket = simulation.s3.open_bucket(settings.bucket)
        # The reference backend's store (offloaded values, push-once guards); config may override.
        self._env.set({"AIRFLOW__XCOMSIM__XCOM_OBJECTSTORAGE_PATH": f"s3://aws_default@{self.bucket}/xcom"})
        self._env.set(settings.config_env(self.bucket))
        self._redis: Any = None
        self._s3: Any = None
        self._fresh = True
        self.reset()

    @property
    def redis(self) -> Any:
        """A Redis client on this test's Redis (made on first use: most tests never ask)."""
        if self._redis is None:
            self._redis = self.simulation.redis.client()
        return self._redis

    @property
    def s3(self) -> Any:
        """A boto3 S3 client on this test's S3 (made on first use: building one costs milliseconds)."""
        if self._s3 is None:
            self._s3 = self.simulation.s3.client()
        return self._s3

    @property
    def engine(self) -> Any:
        """The SQLAlchemy engine of this test's metadata DB."""
        assert self._db is not None
        return self._db.engine

    def reset(self) -> None:
        """Start over: a new DB clone, empty Redis and S3. Cheap enough to call per Hypothesis example."""
        if self._db is not None:
            self._db.close()
        self._db = self.simulation.template.clone()
        self._db.install()
        self.simulation.redis.reset()
        if not self._fresh:
            self.simulation.s3.empty(self.bucket)
        self._fresh = False
        previous = install_backend(self.backend)
        if self._previous_backend is None:
            self._previous_backend = previous
        clear_module_caches(self.backend)

    def run_dag(
        self,
        dag_or_id: Any,
        conf: Mapping[str, Any] | None = None,
        *,
        logical_date: datetime | None = None,
        worker_process: bool = False,
        time_travel: bool = True,
        run_triggered: bool = True,
    ) -> Any:
        """Run a DAG object, or the DAG with this id in the dags folder, to completion.

        ``worker_process=True`` runs each task in a forked task process that parses
        the DAG file itself, as a real worker does (DAGs from the dags folder only).
        ``time_travel=False`` makes sensor reschedules and time-based triggers wait
        real time; ``run_triggered=False`` leaves runs the DAG triggers unrun.
        """
        from xcomsim.runner import run_dag

        dag = self.simulation.dags.get(dag_or_id) if isinstance(dag_or_id, str) else dag_or_id
        return run_dag(
            dag,
            backend=self.backend,
            conf=conf,
            logical_date=logical_date,
            timeout=self.settings.run_timeout,
            worker_process=worker_process,
            log_dir=self.simulation.home.path / "logs",
            dags=self.simulation.dags.all,  # parsed only if the DAG reaches other DAGs
            time_travel=time_travel,
            run_triggered=run_triggered,
        )

    def xcom_rows(self) -> list[dict[str, Any]]:
        """Every row of the ``xcom`` table, as stored (no backend involved)."""
        from sqlalchemy import select

        from airflow.models.xcom import XComModel

        table = XComModel.__table__
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(select(table))]

    def set_config(self, config: Mapping[str, object]) -> None:
        """Set Airflow configuration (``{"section.option": value}``) until the end of this test."""
        self._env.set(self.settings.replace(config=config).config_env(self.bucket))

    def close(self) -> None:
        self._env.restore()
        if self._previous_backend is not None:
            install_backend(self._previous_backend)
        if self._redis is not None:
            self._redis.close()
        try:
            if self._db is not None:
                self._db.close()
                self._db = None
        finally:
            self.simulation.redis.finish()
            self.simulation.s3.close_bucket(self.bucket)
