"""Small XCom backends the tests install to see which backend Airflow really used."""

from __future__ import annotations

from typing import Any

from airflow.sdk.bases.xcom import BaseXCom


class _Wrapped:
    def __init__(self, value: Any):
        self.value = value


class TaggingXCom(BaseXCom):
    """Stores ``{"tag": TAG, "value": ...}`` and refuses to read another backend's tag."""

    TAG = "base"

    @classmethod
    def serialize_value(cls, value: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return {"tag": cls.TAG, "value": BaseXCom.serialize_value(value)}

    @classmethod
    def deserialize_value(cls, result: Any) -> Any:  # type: ignore[override]
        stored = result.value
        if not isinstance(stored, dict) or stored.get("tag") != cls.TAG:
            raise ValueError(f"{cls.__name__} cannot read {stored!r}: written by another backend")
        return BaseXCom.deserialize_value(_Wrapped(stored["value"]))


class TaggingXComA(TaggingXCom):
    TAG = "A"


class TaggingXComB(TaggingXCom):
    TAG = "B"


class NotAnXComBackend:
    """Deliberately not a BaseXCom subclass."""


def _redis_guards() -> type:
    from xcomsim.backend import ExclusiveXCom

    class RedisGuardsXCom(ExclusiveXCom):
        """The reference with its push-once guards in Redis and its values in S3 (``[xcomsim] guard_path``)."""

        xcomsim_contract = {**ExclusiveXCom.xcomsim_contract,
                            "config": {**ExclusiveXCom.xcomsim_contract["config"],
                                       "xcomsim.guard_path": "redis://redis_default/xcom"}}  # fmt: skip

    return RedisGuardsXCom


RedisGuardsXCom = _redis_guards()
