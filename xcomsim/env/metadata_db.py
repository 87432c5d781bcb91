"""The Airflow metadata DB: migrated once into a template, cloned per test into memory.

A full ``airflow db migrate`` on SQLite costs seconds; SQLite's backup API copies
the migrated schema into a fresh in-memory database in about a millisecond. The
clone is reached through one connection shared by every thread, because Airflow's
in-process Execution API serves requests from another thread, and a per-thread
in-memory database (``SingletonThreadPool``) would be a different, empty one. The
pool lends that connection to one borrower at a time, so concurrent threads each
get whole transactions, never interleaved statements.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import QueuePool


BORROW_TIMEOUT = 60.0


class _KeepOpenConnection(sqlite3.Connection):
    """An in-memory DB dies with its last connection; Airflow sometimes disposes engines.

    ``close`` is ignored so such a dispose cannot wipe the test's database;
    ``discard`` really closes it at the end of the test.
    """

    def close(self) -> None:
        pass

    def discard(self) -> None:
        super().close()


class TemplateDatabase:
    """A file database holding the fully migrated Airflow schema, read only after build."""

    def __init__(self, path: Path, migrate_seconds: float):
        self.path = path
        self.migrate_seconds = migrate_seconds
        self._source = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    @classmethod
    def migrate(cls) -> TemplateDatabase:
        """Migrate the database Airflow's settings point at (the private home's file)."""
        from airflow import settings
        from airflow.dag_processing.bundles.manager import DagBundlesManager
        from airflow.utils import db
        from airflow.utils.session import create_session

        path = Path(settings.SQL_ALCHEMY_CONN.removeprefix("sqlite:///"))
        started = time.perf_counter()
        db.initdb()
        with create_session() as session:
            DagBundlesManager().sync_bundles_to_db(session=session)
        elapsed = time.perf_counter() - started
        settings.dispose_orm(do_log=False)
        return cls(path, elapsed)

    def clone(self) -> MetadataDatabase:
        """A fresh in-memory copy of the template; nothing written to it is seen elsewhere."""
        conn = sqlite3.connect(":memory:", check_same_thread=False, factory=_KeepOpenConnection)
        self._source.backup(conn)
        return MetadataDatabase(conn)

    def close(self) -> None:
        self._source.close()


class MetadataDatabase:
    """One test's metadata DB and the SQLAlchemy engine over it."""

    def __init__(self, conn: _KeepOpenConnection):
        self._conn = conn
        # One connection, lent to one borrower at a time: threads take turns, so each
        # transaction is isolated (a StaticPool would let threads interleave inside
        # one transaction).
        self.engine: Engine = create_engine(
            "sqlite://", creator=lambda: conn, poolclass=QueuePool, pool_size=1, max_overflow=0,
            pool_timeout=BORROW_TIMEOUT, future=True,
        )  # fmt: skip

    def install(self) -> None:
        """Point Airflow's engine and session factories at this database."""
        point_airflow_at(self.engine)

    def close(self) -> None:
        from airflow import settings

        if settings.engine is self.engine:
            settings.dispose_orm(do_log=False)
        self.engine.dispose()
        self._conn.discard()


def point_airflow_at(engine: Engine) -> None:
    """Make ``engine`` Airflow's metadata DB: ``settings.engine``, ``Session``, ``NonScopedSession``."""
    from sqlalchemy.orm import scoped_session, sessionmaker

    from airflow import settings
    from airflow.utils.orm_event_handlers import setup_event_handlers

    settings.dispose_orm(do_log=False)
    setup_event_handlers(engine)
    settings.engine = engine
    settings.NonScopedSession = sessionmaker(engine, autocommit=False, autoflush=False, expire_on_commit=False)
    settings.Session = scoped_session(settings.NonScopedSession)
    # The async engine would open the template, not this test's database.
    settings.async_engine = None
    settings.AsyncSession = None
