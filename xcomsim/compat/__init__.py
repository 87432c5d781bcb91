"""What differs between the Airflow versions xcomsim runs on: each difference named once, here.

The rest of xcomsim reads as if there were one Airflow. Each difference is handled in one
module of this package, probed from what is installed (never from a version table); the
versions named are those it was found on. ``differences()`` says which apply to the installed
Airflow (``xcomsim compat`` prints it; CI's matrix prints it for every cell).

This package is the lowest layer above ``xcomsim.errors``: it imports nothing else of xcomsim.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Difference:
    """One way an older supported Airflow differs from the newest, and how xcomsim meets it."""

    name: str
    versions: str  # the Airflow versions it was found on
    what: str
    handled: str  # where, and how
    applies: Callable[[], bool]  # on the installed Airflow (imports it)


def _moved(name: str) -> Callable[[], bool]:
    def applies() -> bool:
        from xcomsim.compat import names

        newest = names.HOMES[name][0]
        return names.home(name)[1] != f"{newest[0]}.{newest[1]}"

    return applies


def _run_task_without_client() -> bool:
    from xcomsim.compat import supervisor

    return not supervisor.takes_client()


def _new_app_per_call() -> bool:
    from xcomsim.compat import execution_api

    return not execution_api.airflow_keeps_one_app()


def _ti_id_text() -> bool:
    from xcomsim.compat import models

    return models.ti_id_is_text()


def _dag_bag_without_bundle_name() -> bool:
    from xcomsim.compat import dagbag

    return not dagbag.takes_bundle_name()


def _starlette_without_deprecation_class() -> bool:
    import importlib

    return not hasattr(importlib.import_module("starlette.exceptions"), "StarletteDeprecationWarning")


def _starlette_request_without_send() -> bool:
    from xcomsim.compat import middleware

    return not middleware.request_takes_send()


def _fastapi_security_scopes() -> bool:
    import dataclasses

    from fastapi.dependencies.models import Dependant

    return "parent_oauth_scopes" not in {field.name for field in dataclasses.fields(Dependant)}


DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        "task-sdk-homes", "3.1",
        "serde, configuration and import_string live in airflow.serialization.serde, airflow.configuration "
        "and airflow.utils.module_loading (the task SDK has its own from 3.2)",
        "compat.names: each name looked up in its newest home first", _moved("serialize"),
    ),
    Difference(
        "dag-bag-home", "3.1", "DagBag and BundleDagBag live in airflow.models.dagbag (airflow.dag_processing.dagbag from 3.2)",
        "compat.names", _moved("DagBag"),
    ),
    Difference(
        "dag-bag-bundle-name", "3.1", "a DagBag takes no bundle_name (it checks DAGs' executors against the bundle from 3.2)",
        "compat.dagbag.bundle_dag_bag: the name is passed where the bag takes it", _dag_bag_without_bundle_name,
    ),
    Difference(
        "ti-id-text", "3.1", "task instance ids are String(36) columns (Uuid from 3.2): SQLite cannot bind a uuid.UUID",
        "compat.models.task_instance_key: the key in the column's own Python type", _ti_id_text,
    ),
    Difference(
        "dag-serialization-name", "3.1", "the scheduler's DAG serialiser is SerializedDAG (DagSerialization from 3.2)",
        "compat.names", _moved("DagSerialization"),
    ),
    Difference(
        "supervise-task-name", "3.1, 3.2", "a worker's entry point is supervise() (supervise_task() from 3.3)",
        "compat.names", _moved("supervise_task"),
    ),
    Difference(
        "run-task-client", "3.1, 3.2",
        "run_task_in_process() takes no client: InProcessTestSupervisor.start always asks _api_client() for one",
        "compat.supervisor: the same start() on a subclass whose _api_client() answers with xcomsim's client",
        _run_task_without_client,
    ),
    Difference(
        "api-server-per-call", "3.1, 3.2",
        "in_process_api_server() builds a new app on every call (one per process, cached, from 3.3)",
        "compat.execution_api.api_server: Airflow's function cached in its own module, as 3.3 has it",
        _new_app_per_call,
    ),
    Difference(
        "lifespan-not-awaited", "3.1, 3.2",
        "the in-process app's lifespan (its svcs registry) is scheduled on a2wsgi's loop, not awaited, so an "
        "inline request right after gets HTTP 500 ('State' object has no attribute 'svcs_registry')",
        "compat.execution_api.started_transport: waits (bounded) for the registry; at once where it is there",
        _new_app_per_call,  # the same Airflow change (3.3's InProcessExecutionAPI) fixed both
    ),
    Difference(
        "starlette-warning-class", "3.1",
        "its starlette (0.48) has no StarletteDeprecationWarning: a filterwarnings line naming it is a usage error",
        "noise.warning_filters: only classes the installed dependencies have", _starlette_without_deprecation_class,
    ),
    Difference(
        "starlette-cached-request", "3.1",
        "its starlette (0.48) builds BaseHTTPMiddleware's request from scope and receive (and send, from 1.0)",
        "compat.middleware.cached_request, for the inline call_next", _starlette_request_without_send,
    ),
    Difference(
        "fastapi-dependant-arguments", "3.1",
        "its FastAPI (0.117) passes security_scopes to get_dependant (parent_oauth_scopes and scope later)",
        "env.execution_api: the remembered dependants are keyed on either", _fastapi_security_scopes,
    ),
)


def differences() -> list[tuple[Difference, bool]]:
    """Each difference and whether it applies to the installed Airflow."""
    return [(difference, difference.applies()) for difference in DIFFERENCES]
