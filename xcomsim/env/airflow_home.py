"""A private AIRFLOW_HOME and configuration, set before Airflow is imported.

Airflow reads AIRFLOW_HOME and builds its settings at import time, so the
environment variables here must be in place first. Everything is restored by
``AirflowHome.close`` so a library user's process is left as it was found.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path

from xcomsim.env.env_vars import ScopedEnv


def _airflow_config(home: Path, dags_folder: Path) -> dict[str, str]:
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGBAG_IMPORT_ERROR_TRACEBACKS": "True",
        "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP": ".*",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__DATABASE__CHECK_MIGRATIONS": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "False",
        "AIRFLOW__API__SECRET_KEY": "xcomsim-not-a-secret",
        "AIRFLOW__API_AUTH__JWT_SECRET": "xcomsim-not-a-secret-either-but-long-enough",
    }


class AirflowHome:
    """Owns the temporary AIRFLOW_HOME and the environment variables pointing at it."""

    def __init__(self, dags_folder: Path | None = None, extra_env: Mapping[str, str] | None = None):
        self.path = Path(tempfile.mkdtemp(prefix="xcomsim-home-"))
        self.dags_folder = (dags_folder or self.path / "dags").resolve()
        self.dags_folder.mkdir(parents=True, exist_ok=True)
        if "airflow.configuration" in sys.modules:
            warnings.warn(
                "Airflow was imported before xcomsim set up its AIRFLOW_HOME; settings read at "
                "import time (AIRFLOW_HOME itself) keep their earlier values. Import Airflow "
                "after the harness starts (for example, not at the top of conftest.py).",
                stacklevel=2,
            )
        self._env = ScopedEnv()
        self.set_env({**_airflow_config(self.path, self.dags_folder), **(extra_env or {})})

    def set_env(self, values: Mapping[str, str]) -> None:
        """Set environment variables until ``close``, which restores their earlier values."""
        self._env.set(values)

    def close(self) -> None:
        self._env.restore()
        shutil.rmtree(self.path, ignore_errors=True)
