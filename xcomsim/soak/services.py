"""The stores of a local deployment: PostgreSQL, redis-server and an S3 endpoint, all on loopback.

PostgreSQL and redis-server come from the distribution's packages (found on
disk, never downloaded); the S3 endpoint is moto's server behind
``xcomsim.soak.proxy``. Each runs in the foreground as a process group the
soak's supervisor owns, with its data in the soak's temporary directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from xcomsim.soak.errors import SoakError
from xcomsim.soak.processes import Started, Supervisor, free_port, wait_for_port

BUCKET = "xcomsim-soak"
INSTALL = "apt-get install -y postgresql redis-server faketime"


def _missing(what: str, package: str) -> SoakError:
    return SoakError(f"{what} not found: install the Debian package {package} ({INSTALL})")


def postgres_bin() -> Path:
    """The newest installed PostgreSQL server's bin directory (Debian keeps one per major version)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres") or shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    raise _missing("PostgreSQL (initdb, postgres)", "postgresql")


def redis_server() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise _missing("redis-server", "redis-server")
    return path


def faketime() -> str:
    path = shutil.which("faketime")
    if path is None:
        raise _missing("faketime (for the clock-skew fault)", "faketime")
    return path


def skewed(argv: list[str], seconds: int) -> list[str]:
    """``argv`` run with its clocks ``seconds`` off (``faketime``), the monotonic clock shifted too.

    With ``FAKETIME_DONT_FAKE_MONOTONIC=1``, libfaketime 0.9.10 fails every
    ``time.sleep`` with EINVAL (an absolute monotonic ``clock_nanosleep``): every
    task failed and the Celery consumer crashed on its first reconnect.
    """
    return [faketime(), "-f", f"{seconds:+d}s", *argv]


@dataclass
class Postgres:
    port: int
    password: str
    process: Started
    database: str = "airflow"
    user: str = "airflow"

    def url(self, driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"


def start_postgres(supervisor: Supervisor, data: Path, timeout: float = 60) -> Postgres:
    """initdb (as the ``postgres`` user when run as root: PostgreSQL refuses to run as root), then the server."""
    bin_dir = postgres_bin()
    user = None
    pg_dir = data / "pg"
    pg_dir.mkdir()
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            raise SoakError("running as root, PostgreSQL needs the 'postgres' user (the postgresql package "
                            f"creates it: {INSTALL})") from None  # fmt: skip
        user = "postgres"
        os.chmod(data, 0o711)
        os.chown(pg_dir, account.pw_uid, account.pw_gid)
    password = secrets.token_hex(12)
    pwfile = pg_dir / "pwfile"
    pwfile.write_text(password + "\n")
    if user:
        os.chown(pwfile, pwd.getpwnam(user).pw_uid, -1)
    supervisor.run("initdb", [str(bin_dir / "initdb"), "-D", str(pg_dir / "data"), "-U", "airflow",
                              f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                              "--no-sync"], timeout=timeout, user=user)  # fmt: skip
    port = free_port()
    process = supervisor.start("postgres", [
        str(bin_dir / "postgres"), "-D", str(pg_dir / "data"), "-p", str(port), "-k", str(pg_dir),
        "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
        "-c", "full_page_writes=off", "-c", "max_connections=300",
    ], user=user, stop_signal=signal.SIGINT)  # fmt: skip
    if not wait_for_port(port, time.monotonic() + timeout):
        raise SoakError(f"PostgreSQL did not listen on 127.0.0.1:{port} within {timeout:.0f}s: {process.tail()}")
    server = Postgres(port, password, process)
    _create_database(server, timeout)
    return server


def _create_database(server: Postgres, timeout: float) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(host="127.0.0.1", port=server.port, user=server.user, password=server.password,
                                 dbname="postgres", autocommit=True, connect_timeout=5) as conn:  # fmt: skip
                conn.execute(f'CREATE DATABASE "{server.database}"')
            return
        except psycopg.OperationalError as exc:  # still starting up
            if time.monotonic() > deadline:
                raise SoakError(f"PostgreSQL on port {server.port} refused connections: {exc}") from None
            time.sleep(0.3)


@dataclass
class Redis:
    port: int
    process: Started
    data: Path

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"


def start_redis(supervisor: Supervisor, data: Path, port: int | None = None, timeout: float = 30) -> Redis:
    """redis-server with an append-only file, so a restart (a fault) keeps what it held, as a real one does."""
    folder = data / "redis"
    folder.mkdir(exist_ok=True)
    port = port or free_port()
    process = supervisor.start("redis", [redis_server(), "--port", str(port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                                         "--dir", str(folder), "--daemonize", "no"])  # fmt: skip
    if not wait_for_port(port, time.monotonic() + timeout):
        raise SoakError(f"redis-server did not listen on 127.0.0.1:{port} within {timeout:.0f}s: {process.tail()}")
    return Redis(port, process, data)


@dataclass
class S3:
    port: int  # the endpoint the deployment uses: the forwarder's
    moto_port: int
    moto: Started
    proxy: Started

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_s3(supervisor: Supervisor, timeout: float = 60) -> S3:
    moto_port, port = free_port(), free_port()
    moto = supervisor.start("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)])
    proxy = start_proxy(supervisor, port, moto_port)
    if not wait_for_port(moto_port, time.monotonic() + timeout):
        raise SoakError(f"moto's S3 server did not listen within {timeout:.0f}s: {moto.tail()}")
    s3 = S3(port, moto_port, moto, proxy)
    _create_bucket(s3)
    return s3


def start_proxy(supervisor: Supervisor, port: int, target: int, timeout: float = 20) -> Started:
    proxy = supervisor.start("s3-endpoint", [sys.executable, "-m", "xcomsim.soak.proxy", str(port), str(target)])
    if not wait_for_port(port, time.monotonic() + timeout):
        raise SoakError(f"the S3 endpoint's forwarder did not listen on port {port}: {proxy.tail()}")
    return proxy


def s3_client(endpoint: str):  # noqa: ANN201 - a boto3 client
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="soak", aws_secret_access_key="soak",
                        region_name="us-east-1", config=Config(retries={"max_attempts": 2}, connect_timeout=5,
                                                               read_timeout=30))  # fmt: skip


def _create_bucket(s3: S3) -> None:
    client = s3_client(s3.endpoint)
    client.create_bucket(Bucket=BUCKET)
