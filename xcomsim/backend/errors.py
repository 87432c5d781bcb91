"""Errors the reference backend raises. Each message names what was refused and why."""

from __future__ import annotations


class ExclusiveXComError(Exception):
    """Base class of every error the ExclusiveXCom backend raises."""


class XComOverwriteError(ExclusiveXComError):
    """A second push of an XCom that was already written (push-once)."""


class XComFencedError(XComOverwriteError):
    """A push of a try that is over: a later try of the task instance holds the XCom (its try number fences this one)."""


class XComScopeError(ExclusiveXComError, PermissionError):
    """A push or pull the DAG's policy does not allow (key scoping)."""


class XComPolicyError(ExclusiveXComError, ValueError):
    """A malformed policy, or one naming tasks the DAG does not have; raised at DAG-parse time."""


class XComValueError(ExclusiveXComError, ValueError):
    """A value that cannot be stored: not serialisable, or a key Airflow cannot hold."""


class XComStoreError(ExclusiveXComError):
    """The object store is unusable: not configured, unreachable, bucket missing, object missing."""
