"""Callers everywhere: each attack through a real DAG run, on the mutant that keeps the hole (it must lose) and
on ExclusiveXCom (it must not). The mutants are ``xcomsim.mutants.callers``."""

from __future__ import annotations

import numbers
from datetime import datetime
from types import SimpleNamespace

import pytest

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, task
from xcomsim.backend import XComPolicy
from xcomsim.mutants.callers import CALLERS

REFERENCE = "xcomsim.backend.ExclusiveXCom"
OFFLOAD = {"xcomsim.xcom_objectstorage_threshold": 1000}
SECRET = "s" * 5000  # offloaded


def against(mutant: str, **marker):
    """Parametrise over (the mutant, the reference); the test gets ``hole`` True for the mutant."""
    assert f"xcomsim.mutants.callers.{mutant}" in CALLERS
    return pytest.mark.parametrize(
        "hole",
        [
            pytest.param(True, marks=pytest.mark.xcomsim(backend=f"xcomsim.mutants.callers.{mutant}", **marker),
                         id=mutant),
            pytest.param(False, marks=pytest.mark.xcomsim(backend=REFERENCE, **marker), id="ExclusiveXCom"),
        ],
    )  # fmt: skip


def _xcom():
    from airflow.sdk.execution_time.xcom import XCom

    return XCom


# ------------------------------------------------------------------ delete and purge by a task that owns nothing
REFUSED: list[str] = []


def _owner(ti, **_):
    ti.xcom_push(key="report", value=SECRET)


def _vandal(ti, **_):
    """Pushes nothing; reads the owner's raw row (a raw GetXCom) and deletes the owner's value two ways."""
    xcom = _xcom()
    row = xcom._get_xcom_db_ref(key="report", dag_id=ti.dag_id, task_id="owner", run_id=ti.run_id, map_index=-1)
    coordinate = {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": "owner", "map_index": -1, "key": "report"}
    attempts = {
        "purge": lambda: xcom.purge(SimpleNamespace(**coordinate, value=row.value)),
        "delete": lambda: xcom.delete(**{k: v for k, v in coordinate.items()}),
    }
    for name, attempt in attempts.items():
        try:
            attempt()
        except Exception as exc:  # the refusal is judged below
            REFUSED.append(f"{name}: {type(exc).__name__}: {exc}")


def _read(ti, **_):
    return len(ti.xcom_pull(task_ids="owner", key="report"))


with DAG("callers_vandal", start_date=datetime(2024, 1, 1), schedule=None) as vandal_dag:
    PythonOperator(task_id="owner", python_callable=_owner) >> PythonOperator(
        task_id="vandal", python_callable=_vandal) >> PythonOperator(task_id="reader", python_callable=_read)

# retry_replaces: a delete by the owner really deletes, so a delete by anyone else must be refused, not kept
XComPolicy(pushes={"owner": ["report"], "reader": ["return_value"]}, pulls={"reader": {"owner": ["report"]}},
           retry_replaces=True).attach(vandal_dag)  # fmt: skip


@pytest.mark.parametrize("undeclared", ["allow", "deny"])
@against("UncheckedDeleteXCom", config=OFFLOAD)
def test_a_task_that_owns_nothing_deletes_no_other_tasks_value(run_dag, xcomsim_env, hole, undeclared):
    xcomsim_env.set_config({"xcomsim.undeclared_dags": undeclared})
    REFUSED.clear()
    result = run_dag(vandal_dag)

    if hole:
        assert not REFUSED
        assert not any(r.key == "report" for r in result.xcoms) or result.record("owner", "report").error
    else:
        assert result.succeeded, result.describe()
        assert result.xcom("reader") == len(SECRET)
        assert [r.split(":")[0:2] for r in REFUSED] == [["purge", " XComScopeError"], ["delete", " XComScopeError"]]
        assert all("task 'vandal'" in r and "not as task 'owner'" in r for r in REFUSED), REFUSED


# ------------------------------------------------------------------ map_index: one int, whatever type it came as
class Int64(numbers.Integral):
    """An integer as numpy gives one (``numpy.int64``): equal to the int, an ``__index__``, not JSON-serialisable."""

    def __init__(self, value: int):
        self.value = value

    def __index__(self) -> int:
        return self.value

    __int__ = __index__

    def __eq__(self, other: object) -> bool:
        return int(self) == other

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"np.int64({self.value})"

    # the rest of numbers.Integral, as int's
    def __abs__(self): return abs(self.value)  # noqa: E704
    def __add__(self, o): return self.value + o  # noqa: E704
    def __and__(self, o): return self.value & o  # noqa: E704
    def __ceil__(self): return self.value  # noqa: E704
    def __floor__(self): return self.value  # noqa: E704
    def __floordiv__(self, o): return self.value // o  # noqa: E704
    def __invert__(self): return ~self.value  # noqa: E704
    def __le__(self, o): return self.value <= o  # noqa: E704
    def __lshift__(self, o): return self.value << o  # noqa: E704
    def __lt__(self, o): return self.value < o  # noqa: E704
    def __mod__(self, o): return self.value % o  # noqa: E704
    def __mul__(self, o): return self.value * o  # noqa: E704
    def __neg__(self): return -self.value  # noqa: E704
    def __or__(self, o): return self.value | o  # noqa: E704
    def __pos__(self): return self.value  # noqa: E704
    def __pow__(self, o, m=None): return pow(self.value, o, m)  # noqa: E704
    def __radd__(self, o): return o + self.value  # noqa: E704
    def __rand__(self, o): return o & self.value  # noqa: E704
    def __rfloordiv__(self, o): return o // self.value  # noqa: E704
    def __rlshift__(self, o): return o << self.value  # noqa: E704
    def __rmod__(self, o): return o % self.value  # noqa: E704
    def __rmul__(self, o): return o * self.value  # noqa: E704
    def __ror__(self, o): return o | self.value  # noqa: E704
    def __round__(self, n=None): return self.value  # noqa: E704
    def __rpow__(self, o): return o**self.value  # noqa: E704
    def __rrshift__(self, o): return o >> self.value  # noqa: E704
    def __rshift__(self, o): return self.value >> o  # noqa: E704
    def __rtruediv__(self, o): return o / self.value  # noqa: E704
    def __rxor__(self, o): return o ^ self.value  # noqa: E704
    def __truediv__(self, o): return self.value / o  # noqa: E704
    def __trunc__(self): return self.value  # noqa: E704
    def __xor__(self, o): return self.value ^ o  # noqa: E704


ALIASES: list[str] = []


def _aliased_dag():
    with DAG("callers_map_index", start_date=datetime(2024, 1, 1), schedule=None) as dag:

        @task
        def shard(i, **context):
            ti = context["ti"]
            ti.xcom_push(key="k", value=f"first {i}")
            coordinate = {"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id}
            # the same coordinate, as another type: a bool for a mapped index, a float for an unmapped one
            for alias in (bool(ti.map_index), float(ti.map_index)):
                try:
                    _xcom().set("k", f"second {i} via {alias!r}", **coordinate, map_index=alias)
                    ALIASES.append(f"{i}: {alias!r} pushed")
                except Exception as exc:
                    ALIASES.append(f"{i}: {alias!r} {type(exc).__name__}")
            _xcom().set("n", i, **coordinate, map_index=Int64(ti.map_index))  # numpy's integer: the int it is
            return i

        shard.expand(i=[0, 1])
    XComPolicy(pushes={"shard": ["k", "n", "return_value"]}).attach(dag)
    return dag


map_index_dag = _aliased_dag()


@against("LooseMapIndexXCom", config=OFFLOAD)
def test_a_map_index_of_another_type_is_the_same_xcom_or_refused(run_dag, hole):
    ALIASES.clear()
    result = run_dag(map_index_dag)

    if hole:
        # True == 1 (False == 0) passes the pusher check and takes a guard of its own: the first value is replaced
        assert result.xcom("shard", "k", map_index=1).startswith("second 1 via ")
        assert type(result.error("shard", 0)).__name__ == "TypeError", result.describe()  # numpy's int: raw
    else:
        assert result.succeeded, result.describe()
        assert [result.xcom("shard", "k", map_index=i) for i in (0, 1)] == ["first 0", "first 1"]
        assert [result.xcom("shard", "n", map_index=i) for i in (0, 1)] == [0, 1]
        assert sorted(ALIASES) == ["0: 0.0 XComValueError", "0: False XComValueError",
                                   "1: 1.0 XComValueError", "1: True XComValueError"]  # fmt: skip


def _big_first_push_as_bool(ti, **_):
    try:
        _xcom().set("big", SECRET, dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=True)
    except Exception as exc:
        ALIASES.append(type(exc).__name__)
        ti.xcom_push(key="big", value=SECRET)


@task
def _mapped_big(i, **context):
    _big_first_push_as_bool(context["ti"])


with DAG("callers_gc_alias", start_date=datetime(2024, 1, 1), schedule=None) as gc_alias_dag:
    _mapped_big.override(task_id="shard").expand(i=[0, 1])

XComPolicy(pushes={"shard": ["big"]}).attach(gc_alias_dag)


@against("LooseMapIndexXCom", config={**OFFLOAD, "xcomsim.gc_grace_seconds": 0})
def test_gc_keeps_a_value_whatever_type_its_map_index_came_as(run_dag, xcomsim_env, hole):
    from airflow import settings
    from xcomsim.backend.config import load
    from xcomsim.runner.dag_run import read_xcoms

    ALIASES.clear()
    result = run_dag(gc_alias_dag)
    assert result.succeeded, result.describe()
    xcomsim_env.backend.sweep(load().path, xcomsim_env.engine, dry_run=False)
    session = settings.Session()
    try:
        records = {r.map_index: r for r in read_xcoms(session, xcomsim_env.backend, "callers_gc_alias", result.run_id)}
    finally:
        session.close()
    if hole:
        assert "missing" in str(records[1].error), records  # gc took the True-named object for an orphan
    else:
        assert ALIASES == ["XComValueError", "XComValueError"]
        assert [records[i].value for i in (0, 1)] == [SECRET, SECRET]


# ------------------------------------------------------------------ a callback pushing through a copied task instance
def _push_as_victim(context):
    try:
        context["ti"].model_copy(update={"task_id": "victim"}).xcom_push(key="report", value="forged in a callback")
    except Exception as exc:  # Airflow logs and swallows a callback's error: keep it to look at
        ALIASES.append(f"{type(exc).__name__}: {exc}")


def _victim_push(ti, **_):
    ti.xcom_push(key="report", value="the victim's own")


with DAG("callers_copied_ti", start_date=datetime(2024, 1, 1), schedule=None) as copied_ti_dag:
    PythonOperator(task_id="intruder", python_callable=lambda: None, on_success_callback=_push_as_victim) >> (
        PythonOperator(task_id="victim", python_callable=_victim_push))

XComPolicy(pushes={"victim": ["report"]}).attach(copied_ti_dag)


@against("CopiedIdentityXCom")
def test_a_callback_cannot_push_as_another_task_through_a_copied_task_instance(run_dag, hole):
    ALIASES.clear()
    result = run_dag(copied_ti_dag)

    if hole:
        assert ALIASES == []
        assert type(result.error("victim")).__name__ == "XComOverwriteError"
        assert result.xcom("victim", "report") == "forged in a callback"
    else:
        assert result.succeeded, result.describe()
        assert result.xcom("victim", "report") == "the victim's own"
        assert len(ALIASES) == 1 and ALIASES[0].startswith("XComScopeError: ")
        assert "task 'intruder'" in ALIASES[0] and "not as task 'victim'" in ALIASES[0]


# ------------------------------------------------------------------ a refused push leaves nothing behind
def _too_deep():
    value = "x"
    for _ in range(300):  # serialisable, but deeper than Airflow's SetXCom model validates
        value = [value]
    return value


def _push_with_fallback(ti, **_):
    try:
        ti.xcom_push(key="result", value=_too_deep())
    except Exception as exc:
        ALIASES.append(type(exc).__name__)
        ti.xcom_push(key="result", value="fallback")


with DAG("callers_refusal", start_date=datetime(2024, 1, 1), schedule=None) as refusal_dag:
    PythonOperator(task_id="pusher", python_callable=_push_with_fallback)

XComPolicy(pushes={"pusher": ["result"]}).attach(refusal_dag)


@against("GuardLeftOnRefusalXCom")
def test_a_push_refused_after_its_checks_leaves_nothing_behind(run_dag, hole):
    ALIASES.clear()
    result = run_dag(refusal_dag)

    assert ALIASES == ["ValidationError"]
    if hole:
        assert type(result.error("pusher")).__name__ == "XComOverwriteError"
        assert not any(r.key == "result" for r in result.xcoms)
    else:
        assert result.succeeded, result.describe()
        assert result.xcom("pusher", "result") == "fallback"


def test_every_callers_mutant_is_a_backend_with_a_named_guarantee_and_an_attack_here():
    from pathlib import Path

    from xcomsim.backend import ExclusiveXCom
    from xcomsim.checks import INVARIANTS
    from xcomsim.env.xcom_backend import load_backend

    here = Path(__file__).read_text()
    for path, guarantee in CALLERS.items():
        backend = load_backend(path)
        assert issubclass(backend, ExclusiveXCom) and backend is not ExclusiveXCom
        assert guarantee in INVARIANTS, path
        assert backend.__doc__, path
        assert f'against("{path.rpartition(".")[2]}"' in here, f"{path} has no attack test"
