"""Errors the harness raises for bad input, each naming its cause.

They derive from one base so a pytest plugin can show them as a short message
instead of a traceback through Airflow's internals.
"""

from __future__ import annotations


class XcomsimError(Exception):
    """Base class: a problem with the harness's input or environment."""


class Interrupt(BaseException):
    """Raised by the harness inside running code (the run timeout) to end a run.

    A BaseException, so task code's ``except Exception`` cannot swallow it; the harness
    reports where it struck, so Airflow's own log of it is noise (``xcomsim.noise``).
    """


class ConfigError(XcomsimError):
    """A harness option or setting is malformed."""


class BackendImportError(XcomsimError):
    """The XCom backend path cannot be imported or is not a BaseXCom subclass."""


class DagImportError(XcomsimError):
    """A DAG file in the dags folder failed to import."""


class DagNotFoundError(XcomsimError):
    """No DAG with the requested id exists in the dags folder."""


class DagRunStuckError(XcomsimError):
    """A DAG run stopped making progress: tasks are left that can never run."""


class ServiceError(XcomsimError):
    """A real server given to the harness (PostgreSQL, Redis, S3) cannot be used as it is."""


class DagSerializationError(XcomsimError):
    """A DAG cannot be serialised into the metadata DB (as the DAG processor would refuse it)."""
