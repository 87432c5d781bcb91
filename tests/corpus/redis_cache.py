"""Redis backend with its own connection id (``xcom_cache``, DB 3 in the corpus), envelope rows, >= 512 B."""

import json

import redis
from airflow.sdk import BaseHook
from airflow.sdk.bases.xcom import BaseXCom
from airflow.sdk.serde import deserialize, serialize

CONN_ID = "xcom_cache"


def _client():
    conn = BaseHook.get_connection(CONN_ID)
    return redis.Redis(host=conn.host, port=conn.port, db=int(conn.schema or 0))


class RedisCacheXCom(BaseXCom):
    @staticmethod
    def serialize_value(value, *, key=None, task_id=None, dag_id=None, run_id=None, map_index=None, **kwargs):
        text = json.dumps(serialize(value), ensure_ascii=False)
        if len(text.encode("utf-8")) < 512:
            return ["v", serialize(value)]
        name = f"xcom:{dag_id}:{run_id}:{task_id}:{map_index}:{key}"
        _client().set(name, text)
        return ["r", name]

    @staticmethod
    def deserialize_value(result):
        tag, body = result.value
        if tag == "r":
            text = _client().get(body)
            if text is None:
                raise KeyError(f"xcom value {body} is gone from redis")
            return deserialize(json.loads(text))
        return deserialize(body)

    @classmethod
    def purge(cls, xcom, *args):
        tag, body = xcom.value
        if tag == "r":
            _client().delete(body)
