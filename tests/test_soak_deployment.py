"""The soak's deployment: one command up, everything down, bad input in one line with nothing left behind.

The tests marked ``soak`` start a real Celery deployment (about a minute on two cores) and run only when
selected: ``pytest -m soak tests/test_soak_deployment.py``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from xcomsim.cli import main
from xcomsim.soak import SoakError, services
from xcomsim.soak.deployment import ExternalDeployment, LocalDeployment, Settings
from xcomsim.soak.processes import marked, port_in_use


def _leftovers(deployment: LocalDeployment) -> tuple[list[int], bool]:
    return marked(deployment.soak_id), deployment.data.exists()


def test_a_missing_debian_package_is_named_with_the_command_that_installs_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(services.shutil, "which", lambda name: None)
    deployment = LocalDeployment(Settings())
    try:
        with pytest.raises(SoakError, match=r"redis-server not found: install the Debian package redis-server "
                                            r"\(apt-get install -y postgresql redis-server faketime\)"):  # fmt: skip
            deployment.start()
    finally:
        deployment.close()
    assert _leftovers(deployment) == ([], False)


def test_a_port_in_use_is_named_and_nothing_is_started():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        deployment = LocalDeployment(Settings(api_port=port))
        try:
            with pytest.raises(SoakError, match=rf"port {port} \(the API server's\) is in use"):
                deployment.start()
        finally:
            deployment.close()
    assert _leftovers(deployment) == ([], False)


def test_an_unreachable_external_deployment_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    code = main(["soak", "--airflow-url", f"http://127.0.0.1:{port}", "--db", "postgresql://x@127.0.0.1/y",
                 "--s3-endpoint", "http://127.0.0.1:1", "--dags-folder", str(tmp_path), "--history-dir", str(tmp_path)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == (f"xcomsim soak: the Airflow deployment at http://127.0.0.1:{port} is unreachable "
                       "(no answer from /api/v2/monitor/health)")  # fmt: skip


def test_an_external_deployment_needs_all_its_urls(capsys: pytest.CaptureFixture[str]):
    assert main(["soak", "--airflow-url", "http://127.0.0.1:1"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "--airflow-url needs --db, --s3-endpoint, --dags-folder, --history-dir too")


def test_nothing_outlives_a_soak_killed_with_sigkill(tmp_path: Path):
    """The reaper kills every marked process, even one that left its group, and removes the data directory."""
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from xcomsim.soak.processes import Reaper, Supervisor
        data = Path({str(tmp_path / 'data')!r}); data.mkdir()
        reaper = Reaper("soak-test-{os.getpid()}", data)
        supervisor = Supervisor("soak-test-{os.getpid()}", data)
        supervisor.start("sleeper", ["sleep", "300"])
        # a grandchild in a session of its own, as Airflow's task processes are
        supervisor.start("escaper", [sys.executable, "-c", "import os, time; os.setsid() if os.fork() == 0 else None; time.sleep(300)"])
        print("up", flush=True)
        time.sleep(300)
    """)  # fmt: skip
    soak = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert soak.stdout.readline().strip() == "up"
    soak_id = f"soak-test-{os.getpid()}"
    deadline = time.monotonic() + 10
    while len(marked(soak_id)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(marked(soak_id)) == 3  # sleep, the escaper and its child in a session of its own
    soak.send_signal(signal.SIGKILL)
    soak.wait(timeout=10)
    deadline = time.monotonic() + 30
    while (marked(soak_id) or (tmp_path / "data").exists()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marked(soak_id) == []
    assert not (tmp_path / "data").exists()


@pytest.mark.soak
def test_the_deployment_comes_up_with_two_celery_workers_and_goes_down_clean():
    deployment = LocalDeployment(Settings(workers=2))
    try:
        deployment.start()
        deployment.start_airflow()
        client = deployment.client()
        assert client.healthy()
        assert client.request("GET", "dags")["total_entries"] == 0
        client.close()
        roles = {name for name, p in deployment.airflow.items() if p.alive()}
        assert roles == {"api-server", "scheduler", "dag-processor", "triggerer", "worker1", "worker2"}
        ports = [deployment.api_port, deployment.postgres.port, deployment.redis.port, deployment.s3.port]
        print(f"deployment up: {deployment.started_in}, {deployment.memory_mib():.0f} MiB")
    finally:
        deployment.close()
    assert _leftovers(deployment) == ([], False)
    assert not any(port_in_use(p) for p in ports)


@pytest.mark.soak
def test_a_claim_store_survives_its_connections_being_dropped(tmp_path: Path):
    """PostgreSQL connections dropped under a task (the nemesis's ``drop-db``): the next claim reconnects."""
    import tempfile

    import psycopg

    from xcomsim.backend.claims import SqlClaimStore
    from xcomsim.soak.processes import Reaper, Supervisor

    data = Path(tempfile.mkdtemp(prefix="xcomsim-soak-"))  # PostgreSQL's own user must reach it
    soak_id = f"soak-test-pg-{os.getpid()}"
    reaper, supervisor = Reaper(soak_id, data), Supervisor(soak_id, tmp_path)
    try:
        pg = services.start_postgres(supervisor, data)
        store = SqlClaimStore(pg.url())
        assert store.try_claim("item0", "a", lease_seconds=30) is not None
        with psycopg.connect(host="127.0.0.1", port=pg.port, user=pg.user, password=pg.password, dbname="postgres",
                             autocommit=True) as conn:  # fmt: skip
            dropped = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s "
                                   "AND pid <> pg_backend_pid()", (pg.database,)).fetchone()[0]  # fmt: skip
        assert dropped >= 1  # the store's pooled connection
        assert store.try_claim("item1", "a", lease_seconds=30) is not None
        assert store.try_claim("item0", "b", lease_seconds=30) is None
    finally:
        supervisor.stop_all()
        reaper.close()
    assert marked(soak_id) == [] and not data.exists()


def test_a_process_that_sets_its_title_keeps_its_mark(tmp_path: Path):
    """Celery's worker, its pool and Airflow's task processes set process titles (setproctitle), which by default
    write over the environ area: without SPT_NOENV, a pause hit one process of a worker and strays went unseen."""
    from xcomsim.soak.processes import Supervisor

    soak_id = f"soak-test-title-{os.getpid()}"
    supervisor = Supervisor(soak_id, tmp_path)
    code = ("import os, sys, time, setproctitle; setproctitle.setproctitle('airflow supervisor: ' + 'x' * 300); "
            "pid = os.fork(); setproctitle.setproctitle('child ' + 'y' * 300) if pid == 0 else None; "
            "print('titled', flush=True); time.sleep(60)")  # fmt: skip
    try:
        started = supervisor.start("titled", [sys.executable, "-c", code])
        deadline = time.monotonic() + 20
        while "titled" not in started.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
        assert len(marked(soak_id, role="titled")) == 2  # the process and its forked child, both retitled
    finally:
        supervisor.stop_all(grace=2)
    assert marked(soak_id) == []


def test_airflow_options_reach_the_deployment_and_a_malformed_one_is_named(capsys: pytest.CaptureFixture[str]):
    """``--config section.key=value`` sets an Airflow option on the deployment it starts (values offloaded to
    Redis instead of S3, a threshold): after the soak's own, so it wins."""
    from xcomsim.cli import build_parser
    from xcomsim.soak import run

    args = build_parser().parse_args(["soak", "--config", "xcomsim.xcom_objectstorage_path=redis://c/values",
                                      "--config", "xcomsim.xcom_objectstorage_threshold=4096"])  # fmt: skip
    assert args.config == [("xcomsim.xcom_objectstorage_path", "redis://c/values"),
                           ("xcomsim.xcom_objectstorage_threshold", "4096")]  # fmt: skip
    deployment = run._deployment(run.Options(config=tuple(args.config)))
    deployment.close()
    assert deployment.settings.extra_config == dict(args.config)  # airflow_env() puts them after its own
    with pytest.raises(SystemExit):
        build_parser().parse_args(["soak", "--config", "threshold=4096"])
    assert "'threshold=4096' is not SECTION.KEY=VALUE" in capsys.readouterr().err
