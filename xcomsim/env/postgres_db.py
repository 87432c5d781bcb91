"""The Airflow metadata DB on a real PostgreSQL server: one template per session, a copy per test.

``airflow db migrate`` runs once per session into a template database. Each test
gets ``CREATE DATABASE ... TEMPLATE`` (the server copies the migrated schema
without replaying a migration) and the database is dropped when the test ends,
so nothing a test writes survives it. Unlike the SQLite tier, the test's engine
has a real connection pool: concurrent threads hold concurrent transactions,
and claim races are decided by PostgreSQL's own row locking.

Names carry this process's tag (``xcomsim_<tag>_tpl``, ``xcomsim_<tag>_<n>``),
so sessions and xdist workers sharing a server never meet.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import NullPool

from xcomsim.env.env_vars import ScopedEnv
from xcomsim.env.metadata_db import point_airflow_at
from xcomsim.env.naming import next_number, process_tag
from xcomsim.errors import ServiceError

CONNECT_TIMEOUT = 5
# Enough for the in-process Execution API thread plus a stress run's workers, each
# holding its own transaction at the same time.
POOL_SIZE = 10
MAX_OVERFLOW = 20
MIN_SERVER_VERSION = 130000  # DROP DATABASE ... WITH (FORCE)
DROP_WAIT = 30.0  # seconds a drop waits for sessions it may not end (autovacuum) to leave
# What the server says while a session we may not terminate is still in the database.
_BUSY = ("pg_signal_backend", "is being accessed by other users")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresServer:
    """A PostgreSQL server reached through a SQLAlchemy URL; creates and drops databases on it."""

    def __init__(self, url: str):
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ServiceError(
                f"xcomsim db {url!r} is not a SQLAlchemy URL such as postgresql+psycopg://user:password@host:5432/postgres"
            ) from None
        if parsed.get_backend_name() != "postgresql":
            raise ServiceError(
                f"xcomsim db {parsed.render_as_string()} is not PostgreSQL; give postgresql+psycopg://user:password@host:5432/postgres"
            )
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        self.url: URL = parsed
        self.shown = parsed.render_as_string(hide_password=True)
        # The database named in the URL is only where CREATE/DROP DATABASE are issued from.
        try:
            self._admin = create_engine(
                parsed if parsed.database else parsed.set(database="postgres"),
                isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args=self._connect_args(),
            )  # fmt: skip
        except NoSuchModuleError:
            raise ServiceError(
                f"xcomsim db {self.shown}: no SQLAlchemy driver {parsed.drivername!r}; "
                "use postgresql+psycopg:// (pip install 'psycopg[binary]')"
            ) from None
        self.strategy_supported = False

    @staticmethod
    def _connect_args() -> dict[str, Any]:
        return {"connect_timeout": CONNECT_TIMEOUT, "application_name": "xcomsim"}

    def url_of(self, database: str) -> str:
        return self.url.set(database=database).render_as_string(hide_password=False)

    def check(self) -> None:
        """Fail fast, naming the URL and what to fix: unreachable, refused credentials, no CREATEDB."""
        try:
            with self._admin.connect() as conn:
                version = int(conn.execute(text("SHOW server_version_num")).scalar_one())
                may_create = conn.execute(
                    text("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user")
                ).scalar_one()
        except DBAPIError as exc:
            raise ServiceError(self._explain(exc)) from None
        if version < MIN_SERVER_VERSION:
            raise ServiceError(f"xcomsim db {self.shown}: PostgreSQL {version} is too old; xcomsim needs 13 or later")
        if not may_create:
            raise ServiceError(
                f"xcomsim db {self.shown}: the role {self.url.username!r} may not create databases, and xcomsim "
                f"creates one per test; grant it (ALTER ROLE {self.url.username} CREATEDB) or use a role that can"
            )
        self.strategy_supported = version >= 150000

    def _explain(self, exc: DBAPIError) -> str:
        full = str(exc.orig if exc.orig is not None else exc).strip()
        lowered = full.lower()
        message = " ".join(line.strip() for line in full.splitlines())
        if "password authentication failed" in lowered or "no password supplied" in lowered:
            fix = "the server refused the user name or password; fix the credentials in the URL"
        elif "role" in lowered and "does not exist" in lowered:
            fix = "no such role on the server; fix the user name in the URL"
        elif "database" in lowered and "does not exist" in lowered:
            fix = "the database in the URL does not exist; name one that does (postgres usually does)"
        elif "timeout" in lowered or "refused" in lowered or "could not translate" in lowered or "no route" in lowered:
            fix = f"no PostgreSQL answered within {CONNECT_TIMEOUT}s; start the server or fix host and port"
        else:
            fix = "cannot connect"
        return f"xcomsim db {self.shown}: {fix} ({message})"

    def execute(self, statement: str) -> None:
        try:
            with self._admin.connect() as conn:
                conn.execute(text(statement))
        except DBAPIError as exc:
            raise ServiceError(f"xcomsim db {self.shown}: {statement!r} failed: {str(exc.orig).strip()}") from None

    def create_database(self, name: str, template: str | None = None) -> None:
        statement = f"CREATE DATABASE {_quote(name)}"
        if template is not None:
            statement += f" TEMPLATE {_quote(template)}"
            if self.strategy_supported:
                statement += " STRATEGY FILE_COPY"
        self.execute(statement)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` and end its sessions; waits (bounded) for an autovacuum worker to leave it.

        FORCE may only end sessions of our own role: an autovacuum worker runs as the
        bootstrap superuser, so a role without ``pg_signal_backend`` cannot end it and the
        drop fails until the worker is done (milliseconds on a test's database).
        """
        statement = f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)"
        deadline = time.monotonic() + DROP_WAIT
        while True:
            try:
                self.execute(statement)
                return
            except ServiceError as exc:
                if not any(m in str(exc) for m in _BUSY) or time.monotonic() >= deadline:
                    raise
            time.sleep(0.05)

    def engine(self, database: str, **pool: Any) -> Engine:
        return create_engine(self.url_of(database), connect_args=self._connect_args(), future=True, **pool)

    def close(self) -> None:
        self._admin.dispose()


class PostgresTemplate:
    """This session's migrated template database; ``clone()`` gives each test its own copy."""

    def __init__(self, server: PostgresServer, name: str, migrate_seconds: float):
        self.server = server
        self.name = name
        self.migrate_seconds = migrate_seconds

    @classmethod
    def migrate(cls, server: PostgresServer) -> PostgresTemplate:
        """Create the template database and run Airflow's migration into it."""
        from airflow import settings
        from airflow.dag_processing.bundles.manager import DagBundlesManager
        from airflow.utils import db
        from airflow.utils.session import create_session

        name = f"xcomsim_{process_tag()}_tpl"
        server.create_database(name)
        env = ScopedEnv()
        previous = settings.SQL_ALCHEMY_CONN
        started = time.perf_counter()
        try:
            env.set({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": server.url_of(name)})
            settings.SQL_ALCHEMY_CONN = server.url_of(name)
            point_airflow_at(server.engine(name, poolclass=NullPool))
            db.initdb()
            with create_session() as session:
                DagBundlesManager().sync_bundles_to_db(session=session)
        except BaseException:
            settings.dispose_orm(do_log=False)
            server.drop_database(name)
            raise
        finally:
            env.restore()
            settings.SQL_ALCHEMY_CONN = previous
        elapsed = time.perf_counter() - started
        settings.dispose_orm(do_log=False)  # CREATE ... TEMPLATE needs the template free of sessions
        return cls(server, name, elapsed)

    def clone(self) -> PostgresDatabase:
        name = f"xcomsim_{process_tag()}_{next_number()}"
        self.server.create_database(name, template=self.name)
        return PostgresDatabase(self.server, name)

    def close(self) -> None:
        self.server.drop_database(self.name)
        self.server.close()


class PostgresDatabase:
    """One test's database on the server, with a real connection pool; dropped by ``close``."""

    def __init__(self, server: PostgresServer, name: str):
        self.server = server
        self.name = name
        self.engine: Engine = server.engine(name, pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW)
        self._env = ScopedEnv()
        self._previous_conn: str | None = None

    def install(self) -> None:
        """Point Airflow at this database (engine, sessions, and the URL it reports)."""
        from airflow import settings

        url = self.server.url_of(self.name)
        self._env.set({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url})
        if self._previous_conn is None:
            self._previous_conn = settings.SQL_ALCHEMY_CONN
        settings.SQL_ALCHEMY_CONN = url
        point_airflow_at(self.engine)

    def close(self) -> None:
        from airflow import settings

        if settings.engine is self.engine:
            settings.dispose_orm(do_log=False)
        if self._previous_conn is not None:
            settings.SQL_ALCHEMY_CONN = self._previous_conn
        self._env.restore()
        self.engine.dispose()
        self.server.drop_database(self.name)
