"""The kit on backends it never saw (``tests/corpus``), with nothing declared: every verdict as expected.

One pytester session runs the contract on all of them (the ci profile with a
small example budget; the model test is left out: it judges the guarantees the
targeted tests judge, and the reference's own kit run and test_conformance_model
test it); discovery must find each threshold to the byte,
and every guarantee of the table, the liveness family included, gets the verdict
``EXPECTED`` gives it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from corpus import EXPECTED, STORES_CONFTEST, reported
from corpus.own_bucket import TeamS3XCom

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def corpus_pytester(clean_pytester, monkeypatch):
    """The subprocess imports this checkout's xcomsim (not whichever one is installed) and the corpus."""
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}:{ROOT / 'tests'}")
    return clean_pytester

CONFTEST = STORES_CONFTEST + '''
@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    from hypothesis import settings

    settings.register_profile("corpus", settings(), max_examples=5)
    settings.load_profile("corpus")
'''

MODULE = '''
import pytest
from xcomsim.conformance import XComBackendContract

BACKENDS = {backends!r}

for index, path in enumerate(BACKENDS):
    name = f"TestCorpus{{index}}"
    globals()[name] = pytest.mark.xcomsim(backend=path)(
        type(name, (XComBackendContract,), {{"push_once_unless_declared": None}}))
'''


def _tables(output: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(
        r"xcomsim conformance verdict for (\S+):\n(.*?)(?=\n=+ |\Z)", output, re.S)}  # fmt: skip


# Every family but the model test.
SELECTION = "not agrees_with_the_model"


# Two sessions, so that under ``-n 2`` each worker runs one: the first ten backends, then the newer ones.
HALVES = {"first": list(EXPECTED)[:10], "second": list(EXPECTED)[10:]}


@pytest.mark.long
@pytest.mark.once
@pytest.mark.parametrize("half", sorted(HALVES))
def test_every_corpus_backend_gets_its_expected_verdicts(corpus_pytester, half):
    backends = HALVES[half]
    corpus_pytester.makeconftest(CONFTEST)
    corpus_pytester.makepyfile(test_corpus=MODULE.format(backends=backends))
    result = corpus_pytester.runpytest_subprocess(
        "--xcomsim", "--xcomsim-profile=ci", "-p", "no:randomly", "-k", SELECTION, timeout=900
    )
    output = result.stdout.str()
    tables = _tables(output)
    assert set(tables) == set(backends), output[-3000:]
    assert "stuck" not in output.lower() and "Timeout" not in output
    wrong = {}
    for backend in backends:
        expected_line, verdicts = EXPECTED[backend]
        table = tables[backend]
        if f"discovered: {expected_line}" not in table:
            wrong[backend] = f"discovery: {table.splitlines()[0]}"
        for guarantee, verdict in verdicts.items():
            if reported(table, guarantee) != verdict:
                wrong[f"{backend} {guarantee}"] = f"expected {verdict}, reported {reported(table, guarantee)}"
        for guarantee in ("push-scope", "pull-scope", "exactly-one-claim-winner", "no-lost-claim"):
            if reported(table, guarantee) != "not claimed":
                wrong[f"{backend} {guarantee}"] = reported(table, guarantee)
    assert not wrong, "\n".join(f"{k}: {v}" for k, v in wrong.items()) + "\n" + output[-6000:]


class MisdeclaredTeamS3XCom(TeamS3XCom):
    """The team's backend, declaring a threshold it does not have (it offloads from 4097 bytes)."""

    xcomsim_contract = {"offload": ({}, 1024)}


@pytest.mark.xcomsim(backend="test_corpus_verdicts.MisdeclaredTeamS3XCom")
def test_a_declared_threshold_is_held_to_the_discovered_one(xcomsim_env):
    from xcomsim.checks import InvariantViolation
    from xcomsim.conformance import XComBackendContract, declared, discover

    xcomsim_env.s3.create_bucket(Bucket="team-xcom-store")
    found = discover(xcomsim_env)
    assert (found.offloads, found.threshold) == (True, 4097), found.describe()
    kit = XComBackendContract()
    with pytest.raises(InvariantViolation, match=r"\[offload-threshold\] declared 1024, behaves as 4097 "):
        kit.test_declared_threshold_is_the_discovered_one(declared(xcomsim_env.backend), found)
    truthful = declared(type("TruthfulTeamS3XCom", (TeamS3XCom,), {"xcomsim_contract": {"offload": ({}, 4097)}}))
    kit.test_declared_threshold_is_the_discovered_one(truthful, found)  # the right number passes


RUN = "manual__2024-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("row", "refers"),
    [
        ({"ref": f"xcom_s3://dag/{RUN}/worker/-1/big"}, True),  # tidy_on_error's row: neither its key nor file name
        ({"ref": f"xcom_s3://dag/{RUN}/worker/-1/big_other"}, False),  # another XCom's row
        ({"ref": f"xcom_s3://dag/{RUN}/other_worker/-1/big"}, False),
        ({"ref": f"xcom_s3://other_dag/{RUN}/worker/-1/big"}, False),
    ],
)
def test_a_row_names_its_object_without_the_objects_folder_or_extension(row, refers):
    from xcomsim.conformance.references import refers_to

    assert refers_to(row, f"s3://tidy-xcom/xcom/dag/{RUN}/worker/-1/big.json") is refers


def test_on_a_shared_redis_server_the_db_indexes_a_backend_connects_to_are_observed(xcomsim_env):
    """``redis_cache`` writes to DB 3 of the test's server; on a real server (``--xcomsim-redis``) the kit
    lists the test's own DB index and those its process's clients used, not the other indexes."""
    from types import SimpleNamespace

    import redis

    from xcomsim.conformance import stores
    from xcomsim.env.redis_store import RedisServer, RedisStore

    embedded = xcomsim_env.simulation.redis
    if not isinstance(embedded, RedisStore):
        pytest.skip("the embedded server stands in for a shared one; a real one's other DB indexes are not ours")
    shared = RedisServer(f"redis://{embedded.host}:{embedded.port}/0")  # the embedded server, seen as shared
    env = SimpleNamespace(simulation=SimpleNamespace(redis=shared), redis=shared.client())
    stores.watch()
    assert not any(name.startswith("redis/3:") for name in stores._redis_sizes(env))
    backend = redis.Redis(host=embedded.host, port=embedded.port, db=3, socket_timeout=10)  # its own connection id
    backend.set("xcom:d:r:t:-1:k", b"12345")
    redis.Redis(host=embedded.host, port=embedded.port, db=7)  # never connected: not listed
    try:
        sizes = stores._redis_sizes(env)
        assert sizes.get("redis/3:xcom:d:r:t:-1:k") == 5, sizes
        assert not any(name.startswith("redis/7:") for name in sizes)
    finally:
        backend.delete("xcom:d:r:t:-1:k")
