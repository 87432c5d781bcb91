"""The Airflow metadata DB: migrated once into a template, cloned per test into memory.

A full ``airflow db migrate`` on SQLite costs seconds; SQLite's backup API copies
the migrated schema into a fresh in-memory database in about a millisecond. The
clone is a named shared-cache in-memory database, so every thread (Airflow's
in-process Execution API serves requests from another one) reaches the same data
through its own connection; an anchor connection keeps it alive until the test ends.

The pool lends connections to one holder at a time, so concurrent holders each get
whole transactions, never interleaved statements. A holder is a thread, or one
request to the in-process Execution API (``REQUEST``): FastAPI runs a request's
route and its session dependency's teardown (the commit) on pool threads that may
serve another request in between, so a thread is not a request. The holder of the
lease may borrow again: Airflow's API handlers open a second session inside a request
(``trigger_dag`` looks for a duplicate run through its own session), and with one
connection in all that nested borrow would wait on itself. Connections read
uncommitted data, so such a nested session sees the outer one's writes instead of
failing on SQLite's table locks.

Storing a DAG as the DAG processor does writes a dozen tables (about 20 ms a test). A clone
that nothing has written to yet, asked to store DAGs a clone before it stored the same way, gets
that clone's database state copied in instead (``restore_stored``), again with the backup API.

One SQLAlchemy engine serves every clone of a template: a clone takes it over with a
fresh pool (and lease) pointed at its own database. An engine keeps its compiled-statement
cache, keyed by its dialect, for its whole life; a new engine per test started every test
with an empty one and compiled Airflow's ~30 statements of a DAG run all over again.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import QueuePool

from xcomsim.env import template_cache

BORROW_TIMEOUT = 60.0
STORED_STATES = 16  # database states with DAGs stored that a template keeps, least recently used dropped
# Sessions one holder may hold open at once (a request inside a request inside ...).
NESTED_BORROWS = 4
# The Execution API request being served, set per request by ``xcomsim.env.execution_api``;
# pool threads copy it into each call they make for that request.
REQUEST: ContextVar[object | None] = ContextVar("xcomsim_api_request", default=None)


def _holder() -> object:
    return REQUEST.get() or threading.get_ident()


class _Lease:
    """Which holder (an API request, else a thread) may use the database now; it may take it
    again (re-entrant by count).

    Not an RLock: a FastAPI dependency may hand a session back from another thread
    than the one that opened it, and the lease must still end.
    """

    def __init__(self, timeout: float):
        self.timeout = timeout
        self._cond = threading.Condition()
        self._owner: object | None = None
        self._count = 0

    def acquire(self) -> None:
        me = _holder()
        with self._cond:
            if not self._cond.wait_for(lambda: self._owner is None or self._owner == me, timeout=self.timeout):
                raise PoolTimeoutError(
                    f"the test's metadata DB stayed with another holder for {self.timeout:g}s "
                    "(a thread or request holds a session open while waiting on one that needs the DB)"
                )
            self._owner = me
            self._count += 1

    def release(self) -> None:
        with self._cond:
            self._count = max(0, self._count - 1)
            if self._count == 0:
                self._owner = None
                self._cond.notify_all()


class _LeasedPool(QueuePool):
    """A QueuePool whose checkouts go through a ``_Lease``."""

    def __init__(self, creator: Any, lease: _Lease, **kw: Any):
        super().__init__(creator, pool_size=NESTED_BORROWS, max_overflow=0, timeout=lease.timeout, **kw)
        self._lease = lease

    def _do_get(self) -> Any:
        self._lease.acquire()
        try:
            return super()._do_get()
        except BaseException:
            self._lease.release()
            raise

    def _do_return_conn(self, record: Any) -> None:
        try:
            super()._do_return_conn(record)
        finally:
            self._lease.release()

    def recreate(self, lease: _Lease | None = None) -> _LeasedPool:
        return self.__class__(
            self._creator, lease or self._lease, recycle=self._recycle, echo=self.echo,
            logging_name=self._orig_logging_name, reset_on_return=self._reset_on_return, pre_ping=self._pre_ping,
            dialect=self._dialect, _dispatch=self.dispatch,  # the engine's pool events (Airflow's PRAGMAs) stay
        )  # fmt: skip


class TemplateDatabase:
    """A file database holding the fully migrated Airflow schema, read only after build."""

    def __init__(self, path: Path, migrate_seconds: float):
        self.path = path
        self.migrate_seconds = migrate_seconds
        self._source = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self._current: MetadataDatabase | None = None
        self._stored: OrderedDict[str, sqlite3.Connection] = OrderedDict()
        self.engine: Engine = create_engine(
            "sqlite://", pool=_LeasedPool(self._connect, _Lease(BORROW_TIMEOUT)), future=True)

    def _connect(self) -> sqlite3.Connection:
        if self._current is None:
            raise RuntimeError("no metadata DB clone is open: the test's environment was closed")
        conn = sqlite3.connect(self._current.uri, uri=True, check_same_thread=False)
        conn.execute("PRAGMA read_uncommitted = true")
        return conn

    def _hand_engine_to(self, db: MetadataDatabase | None) -> None:
        """Point the engine at ``db``: a fresh pool and lease, so nothing of the previous clone lingers
        (a thread a timed-out test left holding the lease does not block the next test)."""
        old = self.engine.pool
        self.engine.pool = old.recreate(_Lease(BORROW_TIMEOUT))  # type: ignore[call-arg]
        old.dispose()
        self._current = db

    @classmethod
    def migrate(cls) -> TemplateDatabase:
        """The migrated template: kept from an earlier session with the same installation
        (``template_cache``), else migrated now into the file Airflow's settings point at."""
        cached = template_cache.cached_template()
        if cached is not None:
            return cls(cached, 0.0)
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
        return cls(template_cache.store(path) or path, elapsed)

    def clone(self) -> MetadataDatabase:
        """A fresh in-memory copy of the template; nothing written to it is seen elsewhere."""
        uri = f"file:xcomsim-{uuid.uuid4().hex}?mode=memory&cache=shared"
        anchor = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self._source.backup(anchor)
        db = MetadataDatabase(self, uri, anchor)
        self._hand_engine_to(db)
        return db

    def close(self) -> None:
        self._hand_engine_to(None)
        self.engine.dispose()
        self._source.close()
        for state in self._stored.values():
            state.close()
        self._stored.clear()


class MetadataDatabase:
    """One test's metadata DB; its template's engine points at it from ``clone()`` to ``close()``.

    One clone of a template is open at a time (a test's environment closes its clone before taking
    the next)."""

    def __init__(self, template: TemplateDatabase, uri: str, anchor: sqlite3.Connection):
        self._template = template
        self.uri = uri
        self._anchor = anchor  # the in-memory database lives as long as this connection
        self._clean_version = self._data_version()

    def _data_version(self) -> int:
        # Changes whenever another connection commits: the anchor itself never writes.
        return int(self._anchor.execute("PRAGMA data_version").fetchone()[0])

    def untouched(self) -> bool:
        """Nothing has been committed to this clone since it was made (or restored)."""
        return self._data_version() == self._clean_version

    def restore_stored(self, key: str) -> bool:
        """If this clone is untouched and a clone of the same template stored DAGs under ``key``,
        make this database that clone's state right after it stored them; False otherwise.

        The caller must hold no open transaction on it. ``key`` must name everything the store
        depends on (the serialised DAGs, their files, the configuration).
        """
        state = self._template._stored.get(key)
        if state is None or not self.untouched():
            return False
        try:
            state.backup(self._anchor)
        except sqlite3.OperationalError:  # another connection holds a transaction open: store instead
            return False
        self._template._stored.move_to_end(key)
        self._clean_version = -1  # it holds DAGs now: not a fresh clone any more
        return True

    def remember_stored(self, key: str) -> None:
        """Keep this database's state (DAGs just stored under ``key`` into an untouched clone)."""
        state = sqlite3.connect(":memory:", check_same_thread=False)
        self._anchor.backup(state)
        stored = self._template._stored
        if key in stored:
            stored.pop(key).close()
        stored[key] = state
        while len(stored) > STORED_STATES:
            stored.popitem(last=False)[1].close()

    @property
    def engine(self) -> Engine:
        if self._template._current is not self:
            raise RuntimeError("this metadata DB clone is closed, or another clone of its template was opened")
        return self._template.engine

    def install(self) -> None:
        """Point Airflow's engine and session factories at this database."""
        global _INSTALLED
        point_airflow_at(self.engine)
        _INSTALLED = weakref.ref(self)

    def close(self) -> None:
        from airflow import settings

        if self._template._current is self:
            if settings.engine is self._template.engine:
                settings.dispose_orm(do_log=False)
            self._template._hand_engine_to(None)
        self._anchor.close()


_HANDLED: weakref.WeakSet[Engine] = weakref.WeakSet()
_INSTALLED: weakref.ref[MetadataDatabase] | None = None


def installed_clone() -> MetadataDatabase | None:
    """The in-memory clone Airflow's engine points at now, if it is one (not a server DB, not a user's)."""
    from airflow import settings

    db = _INSTALLED() if _INSTALLED is not None else None
    if db is None or db._template._current is not db or settings.engine is not db._template.engine:
        return None
    return db


def point_airflow_at(engine: Engine) -> None:
    """Make ``engine`` Airflow's metadata DB: ``settings.engine``, ``Session``, ``NonScopedSession``."""
    from sqlalchemy.orm import scoped_session, sessionmaker

    from airflow import settings
    from airflow.utils.orm_event_handlers import setup_event_handlers

    settings.dispose_orm(do_log=False)
    if engine not in _HANDLED:  # an engine that serves many clones gets Airflow's handlers once
        setup_event_handlers(engine)
        _HANDLED.add(engine)
    settings.engine = engine
    settings.NonScopedSession = sessionmaker(engine, autocommit=False, autoflush=False, expire_on_commit=False)
    settings.Session = scoped_session(settings.NonScopedSession)
    # The async engine would open the template, not this test's database.
    settings.async_engine = None
    settings.AsyncSession = None
