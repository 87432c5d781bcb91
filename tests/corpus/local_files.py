"""Tutorial-style backend on ``ObjectStoragePath("file://...")``: a local folder, >= 256 B, named by run."""

import json
import tempfile

from airflow.sdk import ObjectStoragePath
from airflow.sdk.bases.xcom import BaseXCom
from airflow.sdk.serde import deserialize, serialize

BASE = ObjectStoragePath(f"file://{tempfile.mkdtemp(prefix='xcom-files-')}")


class LocalFilesXCom(BaseXCom):
    @staticmethod
    def serialize_value(value, *, key=None, task_id=None, dag_id=None, run_id=None, map_index=None, **kwargs):
        data = json.dumps(serialize(value), ensure_ascii=False).encode()
        if len(data) < 256:
            return {"inline": serialize(value)}
        path = BASE / dag_id / run_id.replace(":", "_") / f"{task_id}.{map_index}.{key}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return {"file": str(path)}

    @staticmethod
    def deserialize_value(result):
        stored = result.value
        if "file" in stored:
            return deserialize(json.loads(ObjectStoragePath(stored["file"]).read_bytes()))
        return deserialize(stored["inline"])

    @classmethod
    def purge(cls, xcom, *args):
        if isinstance(xcom.value, dict) and "file" in xcom.value:
            ObjectStoragePath(xcom.value["file"]).unlink(missing_ok=True)
