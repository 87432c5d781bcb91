"""The reference backend warmed in a Celery worker before it forks task processes.

Every Airflow task on Celery runs in a process forked from the worker's pool;
what the worker imported and parsed before the fork, the task has for free.
Airflow preloads its own expensive modules that way (the Celery ``import_modules``
signal); this module does the same for the backend's S3 client (boto3, the Amazon
provider's hook, botocore's S3 model), which otherwise cost each task's first push
over a CPU-second. Point the worker's Celery configuration here::

    [celery]
    celery_config_options = xcomsim.backend.warm.CELERY_CONFIG

``CELERY_CONFIG`` is Airflow's own default configuration object, unchanged (a
deployment with a configuration of its own imports this module from it instead).
"""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG as CELERY_CONFIG

from xcomsim.backend.stores import warm

warm()

__all__ = ["CELERY_CONFIG"]
