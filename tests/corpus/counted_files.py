"""Long lists go to local JSON files (more than 50 items: too many rows for the metadata DB), the rest inline."""

import json
import tempfile
from pathlib import Path

from airflow.sdk.bases.xcom import BaseXCom

XCOM_DIR = Path(tempfile.mkdtemp(prefix="xcom-rows-"))
MAX_ITEMS = 50


class CountedFilesXCom(BaseXCom):
    @staticmethod
    def serialize_value(value, *, key=None, task_id=None, dag_id=None, run_id=None, map_index=None, **kwargs):
        if isinstance(value, (list, tuple)) and len(value) > MAX_ITEMS:
            path = XCOM_DIR / dag_id / run_id.replace(":", "_") / f"{task_id}_{map_index}_{key}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(list(value), default=str))
            return BaseXCom.serialize_value(f"file://{path}")
        return BaseXCom.serialize_value(value)

    @staticmethod
    def deserialize_value(result):
        value = BaseXCom.deserialize_value(result)
        if isinstance(value, str) and value.startswith("file://"):
            return json.loads(Path(value[len("file://"):]).read_text())
        return value

    @classmethod
    def purge(cls, xcom, *args):
        value = xcom.value
        if isinstance(value, str) and value.startswith("file://"):
            Path(value[len("file://"):]).unlink(missing_ok=True)
