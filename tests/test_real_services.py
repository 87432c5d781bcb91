"""Real servers: PostgreSQL, redis-server and an S3 endpoint given with --xcomsim-db/-redis/-s3-endpoint.

Tests that need a real server skip, saying which option is missing, on the
embedded default; the bad-input tests run everywhere (a closed port and a
server that never answers are made here on loopback).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import defaultdict
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from xcomsim.conformance import stored_values
from xcomsim.env.environment import check_services
from xcomsim.env.naming import mask_url, worker_number
from xcomsim.errors import ConfigError, ServiceError
from xcomsim.settings import HarnessSettings

SECRET = "s3cr3t-never-printed"


def _needs(simulation, *services):
    missing = [s for s in services if s not in simulation.settings.real_services]
    options = {"postgresql": "--xcomsim-db", "redis": "--xcomsim-redis", "s3": "--xcomsim-s3-endpoint"}
    if missing:
        pytest.skip("needs real servers: " + ", ".join(f"{options[m]}=..." for m in missing))


# --- bad input, on any tier -------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _silent_server():
    """A loopback port whose backlog completes the TCP handshake, then nothing is ever said."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def _services(port: int) -> dict[str, HarnessSettings]:
    return {
        "db": HarnessSettings(db_url=f"postgresql+psycopg://xcomsim:{SECRET}@127.0.0.1:{port}/postgres"),
        "redis": HarnessSettings(redis_url=f"redis://:{SECRET}@127.0.0.1:{port}/0"),
        "s3": HarnessSettings(s3_endpoint=f"http://key:{SECRET}@127.0.0.1:{port}"),
    }


@pytest.mark.parametrize("service", ["db", "redis", "s3"])
def test_unreachable_server_is_named_with_its_password_masked(service):
    port = _closed_port()
    started = time.monotonic()
    with pytest.raises(ServiceError) as caught:
        check_services(_services(port)[service])
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "***" in message and SECRET not in message
    assert "start the server or fix host and port" in message
    assert time.monotonic() - started < 10


def test_a_server_that_never_answers_fails_within_seconds():
    errors: dict[str, Exception | None] = {}

    def check(name, settings):
        try:
            check_services(settings)
            errors[name] = None
        except Exception as exc:  # noqa: BLE001 - compared below
            errors[name] = exc

    with _silent_server() as port:
        started = time.monotonic()
        threads = [threading.Thread(target=check, args=item) for item in _services(port).items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        elapsed = time.monotonic() - started
    assert set(errors) == {"db", "redis", "s3"}
    for name, error in errors.items():
        assert isinstance(error, ServiceError) and "start the server or fix host and port" in str(error), (name, error)
    assert elapsed < 15


def test_bad_server_stops_the_session_at_start(clean_pytester):
    clean_pytester.makepyfile("def test_never_runs(xcomsim_env):\n    raise AssertionError('ran')\n")
    port = _closed_port()
    url = f"postgresql+psycopg://xcomsim:{SECRET}@127.0.0.1:{port}/postgres"
    result = clean_pytester.runpytest_subprocess("--xcomsim", f"--xcomsim-db={url}")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*xcomsim: xcomsim db postgresql+psycopg://xcomsim:***@127.0.0.1:{port}/postgres: no PostgreSQL answered*"]
    )
    assert SECRET not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("db_url", "mysql://u:p@h/db", "xcomsim db url 'mysql://u:***@h/db' is not a URL such as postgresql+psycopg://"),
        ("redis_url", "http://h:6379", "xcomsim redis url 'http://h:6379' is not a URL such as redis://"),
        ("s3_endpoint", "s3://bucket", "xcomsim s3 endpoint 's3://bucket' is not a URL such as http://"),
    ],
)
def test_malformed_service_urls(setting, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        HarnessSettings(**{setting: value})


def test_config_naming_the_bucket_points_at_the_tests_own_bucket_on_a_shared_endpoint():
    """A backend's own ``bucket`` option and ``s3://`` paths both follow the test's bucket; other values stay."""
    settings = HarnessSettings(config={"s3_xcom.bucket": "xcomsim", "common.io.xcom_objectstorage_path": "s3://aws@xcomsim/x",
                                       "team.name": "xcomsim-team"})  # fmt: skip
    env = settings.config_env("xcomsim-gw0-7")
    assert env["AIRFLOW__S3_XCOM__BUCKET"] == "xcomsim-gw0-7"
    assert env["AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_PATH"] == "s3://aws@xcomsim-gw0-7/x"
    assert env["AIRFLOW__TEAM__NAME"] == "xcomsim-team"
    assert settings.config_env("xcomsim")["AIRFLOW__S3_XCOM__BUCKET"] == "xcomsim"


def test_mask_url():
    assert mask_url("redis://user:pw@host:1/2") == "redis://user:***@host:1/2"
    assert mask_url("http://127.0.0.1:9000") == "http://127.0.0.1:9000"


def _server_answering(*errors: str):
    """A PostgresServer whose statements fail with ``errors`` in turn, then succeed."""
    from xcomsim.env.postgres_db import PostgresServer

    server = object.__new__(PostgresServer)
    sent: list[str] = []

    def execute(statement: str) -> None:
        sent.append(statement)
        if len(sent) <= len(errors):
            raise ServiceError(f"xcomsim db x: {statement!r} failed: {errors[len(sent) - 1]}")

    server.execute = execute  # type: ignore[method-assign]
    return server, sent


AUTOVACUUM = "must be a member of the role whose process is being terminated or member of pg_signal_backend"


def test_a_drop_waits_for_an_autovacuum_worker_it_may_not_end():
    """Seen in CI: a non-superuser's DROP ... WITH (FORCE) cannot end the superuser's autovacuum worker."""
    server, sent = _server_answering(AUTOVACUUM, AUTOVACUUM)
    server.drop_database("xcomsim_t_1")
    assert sent == ['DROP DATABASE IF EXISTS "xcomsim_t_1" WITH (FORCE)'] * 3


def test_a_drop_that_stays_blocked_or_fails_otherwise_is_an_error(monkeypatch):
    from xcomsim.env import postgres_db

    server, sent = _server_answering("permission denied to drop database")
    with pytest.raises(ServiceError, match="permission denied"):
        server.drop_database("xcomsim_t_1")
    assert len(sent) == 1  # not retried: waiting cannot mend it
    monkeypatch.setattr(postgres_db, "DROP_WAIT", 0.3)
    server, sent = _server_answering(*[AUTOVACUUM] * 1000)
    started = time.monotonic()
    with pytest.raises(ServiceError, match="pg_signal_backend"):
        server.drop_database("xcomsim_t_1")
    assert time.monotonic() - started < 5 and len(sent) > 1


def test_a_marker_cannot_move_a_test_to_another_server(xcomsim_simulation):
    with pytest.raises(ConfigError, match="belong to the session"):
        with xcomsim_simulation.environment(db_url="postgresql+psycopg://u@h/db"):
            pass


# --- bad input that needs the real server ------------------------------------------------


def test_wrong_password_is_refused_by_name(xcomsim_simulation):
    _needs(xcomsim_simulation, "postgresql")
    url = make_url(xcomsim_simulation.settings.db_url).set(password=SECRET).render_as_string(hide_password=False)
    try:
        check_services(HarnessSettings(db_url=url))
    except ServiceError as exc:
        assert "refused the user name or password; fix the credentials" in str(exc)
        assert SECRET not in str(exc) and "***" in str(exc)
    else:
        pytest.skip("this server trusts loopback connections: any password is accepted")


@pytest.fixture
def role_without_createdb(xcomsim_simulation):
    _needs(xcomsim_simulation, "postgresql")
    admin = create_engine(xcomsim_simulation.settings.db_url.replace("postgresql://", "postgresql+psycopg://", 1),
                          isolation_level="AUTOCOMMIT", poolclass=NullPool)  # fmt: skip
    role = f"xcomsim_nocreatedb_{int(time.time() * 1000) % 10**9}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN NOCREATEDB PASSWORD 'role-pw'"))
    try:
        yield make_url(xcomsim_simulation.settings.db_url).set(username=role, password="role-pw")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


def test_role_without_createdb_is_told_what_to_grant(role_without_createdb):
    url = role_without_createdb.render_as_string(hide_password=False)
    with pytest.raises(ServiceError, match=f"may not create databases.*ALTER ROLE {role_without_createdb.username} CREATEDB"):
        check_services(HarnessSettings(db_url=url))


def test_redis_db_index_that_holds_keys_or_does_not_exist(xcomsim_simulation):
    _needs(xcomsim_simulation, "redis")
    base = make_url(xcomsim_simulation.settings.redis_url.replace("redis", "postgresql", 1))
    server = f"redis://{base.host}:{base.port or 6379}"
    shift = worker_number()  # an xdist worker uses the URL's index plus its number
    with pytest.raises(ServiceError, match=f"DB index {9999 + shift} does not exist"):
        check_services(HarnessSettings(redis_url=f"{server}/9999"))
    import redis

    spare = redis.Redis(host=base.host, port=base.port or 6379, db=15)
    spare.set("someone-elses", "data")
    try:
        with pytest.raises(ServiceError, match="DB index 15 holds 1 key"):
            check_services(HarnessSettings(redis_url=f"{server}/{15 - shift}"))
    finally:
        spare.delete("someone-elses")
        spare.close()


# --- isolation on the real servers --------------------------------------------------------


def _databases(simulation) -> set[str]:
    engine = create_engine(simulation.template.server.url_of("postgres"), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return set(conn.execute(text("SELECT datname FROM pg_database")).scalars())
    finally:
        engine.dispose()


def test_each_test_has_its_own_postgres_database_dropped_after(xcomsim_env, xcomsim_simulation):
    _needs(xcomsim_simulation, "postgresql")
    from xcomsim.scheduler.workload import workload_dag

    first = xcomsim_env.engine.url.database
    assert first.startswith("xcomsim_") and first != xcomsim_simulation.template.name
    assert xcomsim_env.run_dag(workload_dag("pg_probe")).succeeded
    xcomsim_env.reset()
    second = xcomsim_env.engine.url.database
    databases = _databases(xcomsim_simulation)
    assert first not in databases and second in databases and xcomsim_simulation.template.name in databases
    template = create_engine(xcomsim_simulation.template.server.url_of(xcomsim_simulation.template.name), poolclass=NullPool)
    try:
        with template.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM dag_run")).scalar_one() == 0
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        template.dispose()
    from airflow.utils.db import _REVISION_HEADS_MAP

    assert version == list(_REVISION_HEADS_MAP.values())[-1]


def test_each_test_has_its_own_bucket_and_redis_db(xcomsim_env, xcomsim_simulation):
    _needs(xcomsim_simulation, "redis", "s3")
    assert xcomsim_env.bucket.startswith(f"{xcomsim_simulation.settings.bucket}-")
    assert xcomsim_env.redis.connection_pool.connection_kwargs["db"] == xcomsim_simulation.redis.db
    xcomsim_env.redis.set("k", "v")
    xcomsim_env.s3.put_object(Bucket=xcomsim_env.bucket, Key="o", Body=b"x")
    xcomsim_env.redis.flushall()  # the test's client: only its own DB index
    assert xcomsim_env.redis.dbsize() == 0
    xcomsim_env.reset()
    assert xcomsim_env.s3.list_objects_v2(Bucket=xcomsim_env.bucket)["KeyCount"] == 0


# --- stress: free-running threads on PostgreSQL and redis-server ------------------------

WORKERS = 8
CLAIMS = 50


class _Timed:
    """Wraps a claim store: when each attempt started and ended, and whether it won."""

    def __init__(self, store):
        self.store = store
        self.attempts: dict[str, list[tuple[float, float, bool]]] = defaultdict(list)
        self._lock = threading.Lock()

    def try_claim(self, claim_id, worker_id, lease_seconds=None):
        started = time.perf_counter()
        claim = self.store.try_claim(claim_id, worker_id, lease_seconds=lease_seconds)
        with self._lock:
            self.attempts[claim_id].append((started, time.perf_counter(), claim is not None))
        return claim

    def races(self) -> int:
        """Claims where two or more attempts were in flight at the same moment."""
        count = 0
        for attempts in self.attempts.values():
            spans = sorted(attempts)
            if any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])):
                count += 1
        return count


def _claim_stress(xcomsim_env, store, claim_ids):
    from xcomsim.scheduler.workload import stress_workload, workload_dag
    from xcomsim.strategies import Claim

    timed = _Timed(store)
    workload = [[Claim(c) for c in claim_ids] for _ in range(WORKERS)]  # everyone rushes the same claim
    started = time.perf_counter()
    history = stress_workload(workload, dag=workload_dag("xcomsim_stress"), claim_store=timed, timeout=300)
    seconds = time.perf_counter() - started
    winners = {c: [s.worker for s in history.steps if s.op.claim_id == c and s.result] for c in claim_ids}
    assert len(history.steps) == WORKERS * len(claim_ids) and not any(s.error for s in history.steps), history.describe()
    return winners, timed.races(), seconds


def _report(request, **figures):
    request.node.user_properties.extend(figures.items())
    print(f"\n{request.node.name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


@pytest.mark.parametrize("store", ["postgresql", "redis"])
def test_stress_every_claim_has_exactly_one_winner(xcomsim_env, xcomsim_simulation, store, request):
    _needs(xcomsim_simulation, store)
    from xcomsim.backend.claims import RedisClaimStore, SqlClaimStore

    claims = SqlClaimStore(xcomsim_env.engine) if store == "postgresql" else RedisClaimStore(xcomsim_env.redis)
    claim_ids = [f"c{i}" for i in range(CLAIMS)]
    winners, races, seconds = _claim_stress(xcomsim_env, claims, claim_ids)

    _report(request, workers=WORKERS, claims=CLAIMS, races=races, seconds=round(seconds, 2),
            winners_per_claim=sorted({len(w) for w in winners.values()}))  # fmt: skip
    assert all(len(w) == 1 for w in winners.values()), winners
    assert races > 0  # the attempts really overlapped: a race the store had to decide


def _seed_available(engine, claim_ids):
    from xcomsim.backend.claims import claim_table, metadata

    metadata.create_all(engine, tables=[claim_table])
    with engine.begin() as conn:
        conn.execute(claim_table.delete())
        conn.execute(claim_table.insert(), [{"claim_id": c, "status": "available"} for c in claim_ids])


@pytest.mark.parametrize("store", ["postgresql", "redis"])
def test_stress_catches_the_check_then_act_claim_store(xcomsim_env, xcomsim_simulation, store, request):
    _needs(xcomsim_simulation, store)
    from xcomsim.mutants.claims import CheckThenActClaimStore, RedisGetThenSetClaimStore

    claim_ids = [f"c{i}" for i in range(CLAIMS)]
    for round_ in range(1, 6):
        if store == "postgresql":
            # The rows exist, so the mutant takes its portable path (SELECT, then UPDATE).
            _seed_available(xcomsim_env.engine, claim_ids)
            mutant = CheckThenActClaimStore(xcomsim_env.engine, create_table=False)
        else:
            xcomsim_env.redis.flushdb()
            mutant = RedisGetThenSetClaimStore(xcomsim_env.redis)
        winners, races, _ = _claim_stress(xcomsim_env, mutant, claim_ids)
        doubles = {c: w for c, w in winners.items() if len(w) > 1}
        if doubles:
            break
    _report(request, workers=WORKERS, claims=CLAIMS, rounds=round_, races=races, claims_with_several_winners=len(doubles),
            most_winners=max((len(w) for w in winners.values()), default=0))  # fmt: skip
    assert doubles, f"check-then-act not caught in {round_} rounds of {WORKERS} workers x {CLAIMS} claims"


@pytest.mark.parametrize("guard", ["redis", "s3"])
def test_stress_push_once_one_winner_per_key(xcomsim_env, xcomsim_simulation, guard, request):
    _needs(xcomsim_simulation, "postgresql", guard)
    from xcomsim.backend import XComPolicy
    from xcomsim.scheduler.workload import WORKLOAD_TASK_ID, stress_workload, workload_dag
    from xcomsim.strategies import Push

    if guard == "redis":
        xcomsim_env.set_config({"xcomsim.xcom_objectstorage_path": "redis://redis_default/xcom"})
    keys = [f"k{i}" for i in range(20)]
    dag = workload_dag(f"xcomsim_push_stress_{guard}")
    XComPolicy(pushes={WORKLOAD_TASK_ID: keys}).attach(dag)
    workload = [[Push(k, {"worker": n, "key": k}) for k in keys] for n in range(WORKERS)]
    started = time.perf_counter()
    history = stress_workload(workload, dag=dag, timeout=300)
    seconds = time.perf_counter() - started

    succeeded = {k: [s.worker for s in history.steps if s.op.key == k and s.error is None] for k in keys}
    refusals = {s.error_type for s in history.steps if s.error is not None}
    stored = stored_values(xcomsim_env, dag.dag_id, history.run_id)
    _report(request, workers=WORKERS, keys=len(keys), seconds=round(seconds, 2),
            winners_per_key=sorted({len(w) for w in succeeded.values()}), refusals=sorted(refusals))  # fmt: skip
    assert all(len(w) == 1 for w in succeeded.values()), succeeded
    assert refusals == {"XComOverwriteError"}
    for key, (winner,) in succeeded.items():
        assert stored[key] == {"worker": int(winner[1:]), "key": key}
