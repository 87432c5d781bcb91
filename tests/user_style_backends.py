"""XCom backends written the way a user writes one (provider hooks, no xcomsim imports), for the scheduler tests.

``S3HookPerPushXCom`` builds a new ``S3Hook`` on every push and pull, as blog
tutorials do. Reading ``S3Hook.conn_config`` (a ``functools.cached_property``)
fetches the connection through the supervisor and masks its secret
(``MaskSecret``) while, on Python 3.11, holding one lock shared by every
instance of the class: a scheduler that pauses a worker there blocks every
other worker that builds a hook.
"""

from __future__ import annotations

import json
from typing import Any

from airflow.sdk.bases.xcom import BaseXCom

PREFIX = "s3hook_xcom"


def _bucket() -> str:
    from airflow.configuration import conf

    return conf.get("s3_xcom", "bucket", fallback="xcomsim")


class S3HookPerPushXCom(BaseXCom):
    """Every value goes to S3 under its coordinate; push-once by a conditional put (``If-None-Match``)."""

    @classmethod
    def serialize_value(cls, value: Any, *, key: str | None = None, task_id: str | None = None,
                        dag_id: str | None = None, run_id: str | None = None,
                        map_index: int | None = None, **kwargs: Any) -> Any:  # type: ignore[override]  # fmt: skip
        from botocore.exceptions import ClientError

        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from airflow.sdk.serde import serialize

        hook = S3Hook(aws_conn_id="aws_default")
        _ = hook.conn_config  # the tutorial logs the region; this is where the class-wide lock is held
        name = f"{PREFIX}/{dag_id}/{run_id}/{task_id}/{map_index}/{key}"
        body = json.dumps(serialize(value)).encode()
        try:
            hook.get_conn().put_object(Bucket=_bucket(), Key=name, Body=body, IfNoneMatch="*")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise ValueError(f"XCom {key!r} of {task_id!r} was already pushed") from None
            raise
        return f"s3://{_bucket()}/{name}"

    @classmethod
    def deserialize_value(cls, result: Any) -> Any:  # type: ignore[override]
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from airflow.sdk.serde import deserialize

        stored = result.value
        prefix = f"s3://{_bucket()}/"
        if isinstance(stored, str) and stored.startswith(prefix):
            body = S3Hook(aws_conn_id="aws_default").read_key(stored[len(prefix):], _bucket())
            return deserialize(json.loads(body))
        return deserialize(stored)
