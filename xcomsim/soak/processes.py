"""Processes the soak starts: each in a process group of its own, every one marked, none left behind.

Every process the soak starts carries ``XCOMSIM_SOAK=<soak id>`` in its
environment, and so does everything those processes start in turn (Celery pool
children, the task processes Airflow forks, PostgreSQL backends): a process that
left its group (a task process outliving its killed pool child) is still found
by the mark. A reaper process, started first, waits on a pipe from the soak;
when the pipe closes (the soak ended, crashed or was killed with SIGKILL) it
kills every marked process and removes the soak's data directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xcomsim.soak.errors import SoakError

MARK = "XCOMSIM_SOAK"
ROLE = "XCOMSIM_SOAK_ROLE"


def inherited_env() -> dict[str, str]:
    """This process's environment less Airflow's, AWS's and pytest's own variables: the deployment's are set whole."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_", "PYTEST_", "XCOMSIM_SOAK"))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def wait_for_port(port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def marked(soak_id: str, role: str | None = None) -> list[int]:
    """Pids of live processes carrying this soak's mark (and ``role``, when given); never this process."""
    wanted = f"{MARK}={soak_id}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state == "Z" or wanted not in environ:
            continue
        if role is None or f"{ROLE}={role}".encode() in environ:
            found.append(int(entry))
    return found


def signal_marked(soak_id: str, sig: int, role: str | None = None) -> list[int]:
    pids = marked(soak_id, role)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    return pids


@dataclass
class Started:
    """One process the soak started, the leader of its own process group."""

    name: str
    popen: subprocess.Popen
    log: Path
    stop_signal: int = signal.SIGTERM

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the group, then SIGKILL once ``grace`` seconds are up; reaped either way."""
        if self.alive():
            self.signal_group(signal.SIGCONT)  # a paused group cannot act on SIGTERM
            self.signal_group(self.stop_signal)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:])


@dataclass
class Supervisor:
    """Starts marked processes in groups of their own, and stops all of them (and their strays)."""

    soak_id: str
    logs: Path
    started: list[Started] = field(default_factory=list)
    base_env: Mapping[str, str] = field(default_factory=dict)

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None, *,
              user: str | None = None, cwd: str | Path | None = None,
              stop_signal: int = signal.SIGTERM) -> Started:  # fmt: skip
        # SPT_NOENV: setproctitle (Celery's and Airflow's process titles) would otherwise write the title over
        # the environ area, and the worker, its pool and every task process would lose their mark
        full_env = {**inherited_env(), **self.base_env, **(env or {}), MARK: self.soak_id, ROLE: name,
                    "SPT_NOENV": "1"}  # fmt: skip
        command = list(argv)
        if user is not None:
            command = ["runuser", "-u", user, "--", "env", *[f"{k}={v}" for k, v in (
                (MARK, self.soak_id), (ROLE, name), ("SPT_NOENV", "1"))], *command]  # fmt: skip
        log = self.logs / f"{name}.log"
        with open(log, "ab") as out:
            try:
                popen = subprocess.Popen(command, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)  # fmt: skip
            except FileNotFoundError as exc:
                raise SoakError(f"cannot start {name}: {exc.filename} not found") from None
        process = Started(name, popen, log, stop_signal)
        self.started.append(process)
        return process

    def run(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None, *, timeout: float,
            user: str | None = None) -> str:  # fmt: skip
        """Run a command to its end (bounded); its output, or SoakError naming it and its last lines."""
        process = self.start(name, argv, env, user=user)
        try:
            code = process.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.stop(grace=2)
            raise SoakError(f"{name} did not finish within {timeout:.0f}s: {process.tail()}") from None
        finally:
            self.started.remove(process)
        if code != 0:
            raise SoakError(f"{name} failed (exit {code}): {process.tail()}")
        return process.log.read_text(errors="replace")

    def stop_all(self, grace: float = 10.0) -> None:
        """Every group asked to stop at once, then whatever is left after ``grace`` seconds killed."""
        for process in self.started:
            if process.alive():
                process.signal_group(signal.SIGCONT)
                process.signal_group(process.stop_signal)
        deadline = time.monotonic() + grace
        for process in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        for process in self.started:
            process.stop(grace=0)
        self.started.clear()
        deadline = time.monotonic() + 10
        while signal_marked(self.soak_id, signal.SIGKILL) and time.monotonic() < deadline:
            time.sleep(0.2)


class Reaper:
    """A process that outlives the soak only to clean up after it, whatever way the soak ends."""

    def __init__(self, soak_id: str, data_dir: Path):
        read, self._write = os.pipe()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "xcomsim.soak.processes", soak_id, str(data_dir), str(os.getpid())],
            stdin=read, start_new_session=True, close_fds=True,
        )  # fmt: skip
        os.close(read)

    def close(self, timeout: float = 30) -> None:
        """Tell the reaper the soak is over and wait for it to finish its sweep."""
        with contextlib.suppress(OSError):
            os.close(self._write)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=timeout)


def _reap(soak_id: str, data_dir: str) -> None:
    deadline = time.monotonic() + 20
    while signal_marked(soak_id, signal.SIGKILL) and time.monotonic() < deadline:
        time.sleep(0.2)
    import shutil

    shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.contextmanager
def signals_as_exit() -> Iterator[None]:
    """SIGTERM and SIGHUP end the soak like Ctrl-C does: through ``finally``, so everything is stopped."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    # The reaper: ignore the terminal's Ctrl-C (the soak handles it), wait for the pipe to close.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        while sys.stdin.buffer.read(1):
            pass
    _reap(sys.argv[1], sys.argv[2])
