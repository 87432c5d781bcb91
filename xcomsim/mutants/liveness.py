"""Backends that keep their values but not their promises after a failure: retries, cleanup, sweeps.

Each one is correct on the happy path and breaks exactly one liveness or
cleanup guarantee (see ``catalogue``): a guard that outlives the push it
guarded, an undo that runs after the row was committed, a purge that deletes
whatever a row names, a sweeper that lists references before objects.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.bases.xcom import BaseXCom

from xcomsim.backend.xcom import ExclusiveXCom
from xcomsim.mutants.xcom import _S3OffloadMutant


def _store_bucket() -> str:
    """The bucket of the reference store's path, where a test environment puts its objects."""
    from urllib.parse import urlsplit

    from airflow.configuration import conf

    path = conf.get("xcomsim", "xcom_objectstorage_path", fallback="s3://aws_default@xcomsim/xcom")
    return urlsplit(path).hostname or "xcomsim"


class GuardThenRowXCom(BaseXCom):
    """Push-once by an atomic guard object (``If-None-Match``), then the row; the guard is never taken back.

    A push that dies or fails after the guard leaves it behind, and Airflow's
    clear of a retried task's keys does not remove it either: the next try is
    refused although no value is stored.
    """

    @classmethod
    def set(cls, key: str, value: Any, *, dag_id: str, task_id: str, run_id: str, map_index: int = -1,
            **kwargs: Any) -> None:  # fmt: skip
        import boto3
        from botocore.exceptions import ClientError

        guard = f"guards/{dag_id}/{run_id}/{task_id}/{map_index}/{key}"
        try:
            boto3.client("s3").put_object(Bucket=_store_bucket(), Key=guard, Body=b"1", IfNoneMatch="*")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
                raise ValueError(f"XCom {key!r} of task {task_id!r} was already pushed") from None
            raise
        super().set(key, value, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=map_index, **kwargs)


class UndoAfterLostReplyXCom(_S3OffloadMutant):
    """Uploads, writes the row, and deletes the object if writing the row raised — even when the row landed."""

    @classmethod
    def set(cls, key: str, value: Any, *, dag_id: str, task_id: str, run_id: str, map_index: int = -1,
            **kwargs: Any) -> None:  # fmt: skip
        import boto3

        stored = cls.serialize_value(value, key=key, task_id=task_id, dag_id=dag_id, run_id=run_id,
                                     map_index=map_index)  # fmt: skip
        try:
            BaseXCom.set(key, stored, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=map_index, **kwargs)
        except Exception:
            prefix = f"s3://{cls._bucket()}/"
            if isinstance(stored, str) and stored.startswith(prefix):  # the bug: the reply was lost, not the row
                boto3.client("s3").delete_object(Bucket=cls._bucket(), Key=stored[len(prefix):])
            raise

    @classmethod
    def _bucket(cls) -> str:
        return _store_bucket()


class PurgeWhateverRowNamesXCom(ExclusiveXCom):
    """Purge deletes the object a row's reference names, in whatever store and under whatever name it says."""

    @classmethod
    def purge(cls, xcom: Any, *args: Any) -> None:
        from xcomsim.backend import codec
        from xcomsim.backend.stores import open_store

        stored = getattr(xcom, "value", None)
        if codec.is_reference(stored):
            ref = codec.Reference.parse(stored)
            open_store(ref.store_path).delete(ref.name)  # the bug: a forged reference deletes a stranger's object


def list_then_delete(env: Any) -> Any:
    """A sweeper that reads the referenced names, then lists the objects and deletes the difference.

    A push that uploads its object and writes its row between the two reads
    loses its value: the listing sees an object no reference it read names.
    """
    from xcomsim.backend.config import load
    from xcomsim.backend.gc import referenced_names
    from xcomsim.backend.stores import open_store

    store = open_store(load().path)
    referenced = referenced_names(env.engine, store)
    orphans = sorted(set(store.names("values/")) - referenced)
    for name in orphans:
        store.delete(name)
    return orphans


class ListThenDeleteSweeperXCom(ExclusiveXCom):
    """The reference backend, swept by ``list_then_delete``."""

    xcomsim_sweeper = "xcomsim.mutants.liveness:list_then_delete"
