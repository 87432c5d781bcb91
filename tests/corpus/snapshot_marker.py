"""An Airflow 3 backend that carries its own objects: a Snapshot is stored as a dict marked ``__snapshot__``."""

from dataclasses import asdict, dataclass

from airflow.sdk.bases.xcom import BaseXCom


@dataclass
class Snapshot:
    table: str
    version: int


class SnapshotXCom(BaseXCom):
    @staticmethod
    def serialize_value(value, *, key=None, task_id=None, dag_id=None, run_id=None, map_index=None, **kwargs):
        if isinstance(value, Snapshot):
            value = {"__snapshot__": True, **asdict(value)}
        return BaseXCom.serialize_value(value)

    @staticmethod
    def deserialize_value(result):
        value = BaseXCom.deserialize_value(result)
        if isinstance(value, dict) and value.get("__snapshot__"):
            return Snapshot(table=value["table"], version=value["version"])
        return value
