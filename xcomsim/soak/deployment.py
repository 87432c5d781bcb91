"""A real Airflow 3 deployment to soak: started here on loopback, or an existing one driven by URL.

The local one is what a small production install looks like: PostgreSQL as the
metadata DB, the Celery executor on a Redis broker with at least two
``airflow celery worker`` processes, Airflow's ``api-server``, ``scheduler``,
``dag-processor`` and ``triggerer``, and an S3 endpoint for offloaded values.
Airflow's timeouts are lowered (heartbeat timeout, queued timeout, DAG folder
refresh) so that faults play out in minutes instead of Airflow's defaults.
"""

from __future__ import annotations

import json
import secrets
import signal
import shutil
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xcomsim.soak import services
from xcomsim.soak.errors import SoakError
from xcomsim.soak.processes import (
    Reaper,
    Started,
    Supervisor,
    free_port,
    port_in_use,
    signal_marked,
    wait_for_port,
)

S3_CONN = "xcomsim_soak_s3"
REDIS_CONN = "xcomsim_soak_redis"
HEARTBEAT_TIMEOUT = 20  # seconds without a heartbeat before Airflow declares a task instance dead
GUARD_LEASE = 5  # the wall-clock mutants' guard lease (the reference has none): shorter than the retry delay
THRESHOLD = 1024


@dataclass(frozen=True)
class Settings:
    backend: str = "xcomsim.backend.ExclusiveXCom"
    workers: int = 2
    concurrency: int = 4
    skew_seconds: int = 0  # the last worker's clock offset (faketime); 0: none
    api_port: int | None = None
    extra_config: Mapping[str, str] = field(default_factory=dict)


class Deployment:
    """What the soak drives; ``LocalDeployment`` and ``ExternalDeployment`` fill it in."""

    api_url: str
    db_url: str  # SQLAlchemy URL of the metadata DB (psycopg)
    s3_endpoint: str
    dags_folder: Path
    history_dir: Path
    soak_id: str
    backend: str
    workers: list[str]
    skewed: dict[str, int]  # worker role -> clock offset in seconds

    def client(self) -> ApiClient:
        return ApiClient(self.api_url)

    def close(self) -> None:  # pragma: no cover - overridden
        pass


class ApiClient:
    """Airflow's public REST API (v2), with a token from the simple auth manager."""

    def __init__(self, base: str, timeout: float = 30):
        import httpx

        self.base = base.rstrip("/")
        self.http = httpx.Client(timeout=timeout)
        self._token: str | None = None

    def token(self) -> str:
        if self._token is None:
            response = self.http.post(f"{self.base}/auth/token", json={"username": "admin", "password": "admin"})
            if response.status_code >= 400:
                response = self.http.get(f"{self.base}/auth/token")
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return self._token

    def request(self, method: str, path: str, attempts: int = 4, **kwargs: Any) -> Any:
        """One API call; a timeout or a refused connection (an API server busy or restarting) is tried again
        up to ``attempts`` times, then is one line naming the call."""
        import httpx

        for attempt in range(attempts):
            try:
                response = self.http.request(method, f"{self.base}/api/v2/{path.lstrip('/')}",
                                             headers={"Authorization": f"Bearer {self.token()}"}, **kwargs)  # fmt: skip
                break
            except httpx.TransportError as exc:
                if attempt == attempts - 1:
                    raise SoakError(f"Airflow API {method} {path}: no answer after {attempts} attempts: "
                                    f"{type(exc).__name__} {exc}") from None  # fmt: skip
                time.sleep(2)
        if response.status_code >= 400:
            raise SoakError(f"Airflow API {method} {path}: HTTP {response.status_code} {response.text[:200]}")
        return response.json() if response.content else None

    def healthy(self) -> bool:
        import httpx

        try:
            return self.http.get(f"{self.base}/api/v2/monitor/health", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self.http.close()


def airflow_command() -> list[str]:
    beside = Path(sys.executable).parent / "airflow"
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "airflow"]


class LocalDeployment(Deployment):
    """Everything on this machine, in one temporary directory, stopped and removed by ``close``."""

    def __init__(self, settings: Settings, soak_id: str | None = None):
        self.settings = settings
        self.soak_id = soak_id or f"soak-{secrets.token_hex(4)}"
        self.backend = settings.backend
        self.data = Path(tempfile.mkdtemp(prefix="xcomsim-soak-"))
        self.reaper = Reaper(self.soak_id, self.data)
        (self.data / "logs").mkdir()
        self.supervisor = Supervisor(self.soak_id, self.data / "logs")
        self.dags_folder = self.data / "dags"
        self.history_dir = self.data / "history"
        self.dags_folder.mkdir()
        self.history_dir.mkdir()
        self.workers = [f"worker{i + 1}" for i in range(settings.workers)]
        self.skewed = {self.workers[-1]: settings.skew_seconds} if settings.skew_seconds else {}
        self.airflow: dict[str, Started] = {}
        self.started_in: dict[str, float] = {}

    # ------------------------------------------------------------------ start
    def start(self, timeout: float = 240) -> None:
        """Services, migration, then Airflow's processes; returns when the API answers and workers listen."""
        began = time.monotonic()
        if self.settings.workers < 1:
            raise SoakError(f"--workers {self.settings.workers}: at least one Celery worker is needed")
        if self.settings.api_port is not None and port_in_use(self.settings.api_port):
            raise SoakError(f"port {self.settings.api_port} (the API server's) is in use on 127.0.0.1")
        services.postgres_bin(), services.redis_server()  # missing packages: say so before starting anything
        if self.skewed:
            services.faketime()
        self.postgres = services.start_postgres(self.supervisor, self.data)
        self.redis = services.start_redis(self.supervisor, self.data)
        self.s3 = services.start_s3(self.supervisor)
        self.started_in["services"] = time.monotonic() - began
        self.api_port = self.settings.api_port or free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.db_url = self.postgres.url()
        self.s3_endpoint = self.s3.endpoint
        self.env = self.airflow_env()
        self.supervisor.base_env = self.env
        self.check_backend_imports()
        self.supervisor.run("airflow-db-migrate", [*airflow_command(), "db", "migrate"], timeout=timeout)
        self.started_in["migrated"] = time.monotonic() - began

    def start_airflow(self, timeout: float = 180) -> None:
        """Airflow's processes, after the DAG files are in place (the DAG processor's first pass sees them)."""
        began = time.monotonic()
        airflow = airflow_command()
        self.airflow["api-server"] = self.supervisor.start(
            "api-server", [*airflow, "api-server", "--host", "127.0.0.1", "--port", str(self.api_port)])
        for name in ("scheduler", "dag-processor", "triggerer"):
            self.airflow[name] = self.supervisor.start(name, [*airflow, name])
        for worker in self.workers:
            self.start_worker(worker)
        deadline = time.monotonic() + timeout
        self.wait_until(deadline, lambda: wait_for_port(self.api_port, time.monotonic() + 1), "the API server")
        client = self.client()
        try:
            self.wait_until(deadline, client.healthy, "the API server's health endpoint")
        finally:
            client.close()
        for worker in self.workers:
            self.wait_until(deadline, lambda w=worker: "ready." in self.airflow[w].log.read_text(errors="replace"),
                            f"Celery {worker}")  # fmt: skip
        self.started_in["airflow"] = time.monotonic() - began

    def switch_backend(self, backend: str, history_dir: Path) -> None:
        """Restart Airflow's processes (not the stores) with another XCom backend and history folder."""
        for name, process in self.airflow.items():
            process.stop()
            self.supervisor.started.remove(process)
            signal_marked(self.soak_id, signal.SIGKILL, role=name)  # task processes it forked
        self.airflow.clear()
        self.backend = backend
        history_dir.mkdir(exist_ok=True)
        self.history_dir = history_dir
        self.env.update({"AIRFLOW__CORE__XCOM_BACKEND": backend, "XCOMSIM_SOAK_HISTORY": str(history_dir)})
        self.check_backend_imports()
        self.start_airflow()

    def start_worker(self, worker: str) -> Started:
        argv = [*airflow_command(), "celery", "worker", "--concurrency", str(self.settings.concurrency),
                "--celery-hostname", f"{worker}@{self.soak_id}", "--skip-serve-logs"]  # fmt: skip
        if worker in self.skewed:
            argv = services.skewed(argv, self.skewed[worker])
        self.airflow[worker] = process = self.supervisor.start(worker, argv)
        return process

    def revive(self) -> list[tuple[str, int | None, str]]:
        """Start again every Airflow process that exited, as a service manager (systemd, Kubernetes) would.

        Airflow's scheduler exits on some database errors (a connection dropped
        mid-transaction); a deployment restarts it, and so does the soak.
        Returns (name, exit code, last log lines) of each one revived.
        """
        revived = []
        for name, process in list(self.airflow.items()):
            if process.alive():
                continue
            code, tail = process.popen.returncode, process.tail(3)
            if process in self.supervisor.started:
                self.supervisor.started.remove(process)
            if name in self.workers:
                self.start_worker(name)
            else:
                self.airflow[name] = self.supervisor.start(name, list(process.popen.args))
            revived.append((name, code, tail))
        return revived

    def wait_until(self, deadline: float, ready: Any, what: str) -> None:
        while not ready():
            dead = [p for p in self.airflow.values() if not p.alive()]
            if dead:
                raise SoakError(f"Airflow's {dead[0].name} exited while waiting for {what}: {dead[0].tail()}")
            if time.monotonic() > deadline:
                raise SoakError(f"{what} not ready in time (logs: {self.data / 'logs'})")
            time.sleep(0.5)

    def airflow_env(self) -> dict[str, str]:
        db = self.postgres.url()
        s3_conn = {"conn_type": "aws", "login": "soak", "password": "soak",
                   "extra": {"endpoint_url": self.s3.endpoint, "region_name": "us-east-1"}}  # fmt: skip
        env = {
            "AIRFLOW_HOME": str(self.data / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": "64",
            "AIRFLOW__CORE__PARALLELISM": "64",
            "AIRFLOW__CORE__XCOM_BACKEND": self.backend,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
            "AIRFLOW__CELERY__BROKER_URL": self.redis.url(0),
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{db}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.settings.concurrency),
            # Airflow's default Celery configuration, from a module that warms the reference backend's stores
            # in the worker before it forks task processes (docs/soak.md: the deployment)
            "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "xcomsim.soak.worker.CELERY_CONFIG",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "60",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
            "AIRFLOW__XCOMSIM__XCOM_OBJECTSTORAGE_PATH": f"s3://{S3_CONN}@{services.BUCKET}/xcom",
            "AIRFLOW__XCOMSIM__XCOM_OBJECTSTORAGE_THRESHOLD": str(THRESHOLD),
            # guards in Redis, values in S3: a guard operation is a Redis round trip (docs/backend.md)
            "AIRFLOW__XCOMSIM__GUARD_PATH": f"redis://{REDIS_CONN}/xcom",
            "AIRFLOW__XCOMSIM__GUARD_LEASE_SECONDS": str(GUARD_LEASE),
            "AIRFLOW__XCOMSIM__GC_GRACE_SECONDS": "30",
            "AIRFLOW__XCOMSIM__CLAIMS_SQL_CONN": db,
            f"AIRFLOW_CONN_{S3_CONN.upper()}": json.dumps(s3_conn),
            f"AIRFLOW_CONN_{REDIS_CONN.upper()}": self.redis.url(1),
            "AIRFLOW_CONN_REDIS_DEFAULT": self.redis.url(1),
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(s3_conn),
            # Where a backend written with plain boto3 (``boto3.client("s3")``, as tutorials and the catalogue's
            # S3 mutants write it) finds S3: the standard variables a real deployment sets; the mutants' bucket.
            "AWS_ENDPOINT_URL_S3": self.s3.endpoint,
            "AWS_ACCESS_KEY_ID": "soak",
            "AWS_SECRET_ACCESS_KEY": "soak",
            "AWS_DEFAULT_REGION": "us-east-1",
            "MUTANT_BUCKET": services.BUCKET,
            "XCOMSIM_SOAK_HISTORY": str(self.history_dir),
            "PYTHONUNBUFFERED": "1",
        }  # fmt: skip
        env.update({f"AIRFLOW__{k.replace('.', '__').upper()}": v for k, v in self.settings.extra_config.items()})
        return env

    def check_backend_imports(self) -> None:
        """The backend as a worker resolves it, in a process with the workers' environment."""
        code = ("from airflow.sdk.execution_time.xcom import resolve_xcom_backend as r; import sys; "
                "b = r(); sys.exit(0 if b.__module__ + '.' + b.__qualname__ == sys.argv[1] or "
                "b.__name__ == sys.argv[1].rpartition('.')[2] else 3)")  # fmt: skip
        try:
            self.supervisor.run("backend-import", [sys.executable, "-c", code, self.backend], timeout=120)
        except SoakError as exc:
            raise SoakError(f"the XCom backend {self.backend!r} does not import in the workers' environment: "
                            f"{str(exc).rpartition(': ')[2] or exc}") from None  # fmt: skip

    # ------------------------------------------------------------------ stop
    def close(self) -> None:
        """Stop everything started, in any state, and remove the data directory (bounded)."""
        try:
            self.supervisor.stop_all()
        finally:
            self.reaper.close()
            shutil.rmtree(self.data, ignore_errors=True)

    def save_logs(self, target: Path) -> None:
        """Copy every process's log (and the task logs Airflow wrote) out of the data directory before it goes."""
        target.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.data / "logs", target / "processes", dirs_exist_ok=True)
        tasks = self.data / "airflow" / "logs"
        if tasks.is_dir():
            shutil.copytree(tasks, target / "tasks", dirs_exist_ok=True)

    def memory_mib(self) -> float:
        """Resident memory of every process of the deployment, in MiB (PSS where the kernel gives it)."""
        from xcomsim.soak.processes import marked

        total = 0
        for pid in marked(self.soak_id):
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
            except OSError:
                continue
        return total / 1024


class ExternalDeployment(Deployment):
    """A deployment someone else runs: only DAGs named ``xcomsim_soak_<id>_*`` and their keys are touched.

    Its workers record their history where ``history_dir`` is (a folder every
    worker and this machine share, such as a network file system).
    """

    def __init__(self, api_url: str, db_url: str, s3_endpoint: str, dags_folder: str, history_dir: str,
                 backend: str, soak_id: str | None = None):  # fmt: skip
        self.api_url, self.db_url, self.s3_endpoint = api_url.rstrip("/"), db_url, s3_endpoint
        self.dags_folder, self.history_dir = Path(dags_folder), Path(history_dir)
        self.soak_id = soak_id or f"soak-{secrets.token_hex(4)}"
        self.backend = backend
        self.workers, self.skewed = [], {}

    def start(self, timeout: float = 30) -> None:
        client = self.client()
        try:
            if not client.healthy():
                raise SoakError(f"the Airflow deployment at {self.api_url} is unreachable (no answer from "
                                "/api/v2/monitor/health)")  # fmt: skip
        finally:
            client.close()
        for folder, what in ((self.dags_folder, "dags folder"), (self.history_dir, "history folder")):
            if not folder.is_dir():
                raise SoakError(f"the deployment's {what} {folder} does not exist on this machine")

    def start_airflow(self, timeout: float = 0) -> None:
        """Already running."""


def masked(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return url.replace(f":{parts.password}@", ":***@") if parts.password else url

