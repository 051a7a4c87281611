"""Real processes on a real database: `manage.py qcluster` and `manage.py jobs_scheduler` started
against the pytest test database, with short heartbeats, grace and requeue bounds so faults are
detected in seconds. Each test gets its own queue name (and Redis list)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

import tests.execution.actions  # noqa: F401  (registers the test actions in this process too)

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("JOBS_PG_BIN", "/usr/lib/postgresql/15/bin"))
REDIS_URL = os.environ.get("JOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

# Seconds: short enough for quick fault tests, long enough for a loaded 2-core machine.
FAST_SETTINGS = {
    "JOBS_HEARTBEAT_SECONDS": "0.5",
    "JOBS_STALL_GRACE_SECONDS": "3",
    "JOBS_REQUEUE_AFTER_SECONDS": "4",
    "JOBS_DISPATCH_INTERVAL": "0.2",
    "JOBS_SWEEP_INTERVAL": "0.5",
    "JOBS_DB_RETRY_SECONDS": "30",
    "JOBS_ORM_POLL": "0.05",
    "JOBS_EXTRA_ACTION_MODULES": "tests.execution.actions",
    "JOBS_Q_LOG_LEVEL": "WARNING",
}


def wait_until(
    condition: Callable[[], Any], *, timeout: float, what: str, logs: Callable[[], str] = str
) -> Any:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{logs()}")
        time.sleep(0.1)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a qcluster is a tree of processes)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)
        if sig == signal.SIGKILL:
            self.popen.wait(10)

    def stop(self, timeout: float = 20) -> None:
        if self.popen.poll() is None:
            # The main process only, as a process manager would: qcluster then stops its tree.
            self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        # Whatever is left of the tree (a worker stuck in a job) goes too.
        self.kill(signal.SIGKILL)


@dataclass
class Execution:
    """Starts and stops the processes of one test and knows their environment."""

    env: dict[str, str]
    workdir: Path
    procs: list[Proc] = field(default_factory=list)

    @property
    def runs(self) -> Path:
        """Where the test_record action writes its execution log."""
        path = self.workdir / "runs"
        path.mkdir(exist_ok=True)
        return path

    def start(self, name: str, *args: str, **env: str) -> Proc:
        log = self.workdir / f"{name}-{len(self.procs)}.log"
        popen = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={**self.env, **env},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def cluster(self, workers: int = 2, **env: str) -> Proc:
        return self.start("qcluster", "qcluster", JOBS_WORKERS=str(workers), **env)

    def scheduler(self) -> Proc:
        return self.start("scheduler", "jobs_scheduler")

    def logs(self) -> str:
        parts = []
        for proc in self.procs:
            text = proc.log.read_text(errors="replace") if proc.log.exists() else ""
            parts.append(f"--- {proc.log.name} (exit {proc.popen.poll()}) ---\n{text[-3000:]}")
        return "\n".join(parts)

    def wait(self, condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
        return wait_until(condition, timeout=timeout, what=what, logs=self.logs)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def database_url(settings_dict: dict[str, Any]) -> str:
    """A DATABASE_URL for the database this process is connected to (the pytest test DB)."""
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(settings_dict['NAME']).resolve()}"
    auth = settings_dict["USER"] or "postgres"
    if settings_dict.get("PASSWORD"):
        auth += f":{settings_dict['PASSWORD']}"
    host = settings_dict["HOST"] or "127.0.0.1"
    port = settings_dict["PORT"] or "5432"
    return f"postgres://{auth}@{host}:{port}/{settings_dict['NAME']}"


def use_broker(monkeypatch: pytest.MonkeyPatch, *, queue: str, redis_url: str | None) -> None:
    """Point this process's producer (django-q2's Conf, read at import) at the test's queue,
    as the child processes are by their environment."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "CLUSTER_NAME", queue)
    monkeypatch.setattr(Conf, "PREFIX", queue)
    from jobs.execution.broker import LANED_REDIS, ORDERED_ORM

    monkeypatch.setattr(Conf, "BROKER_CLASS", LANED_REDIS if redis_url else ORDERED_ORM)
    monkeypatch.setattr(Conf, "ORM", None if redis_url else "default")
    monkeypatch.setattr(Conf, "REDIS", redis_url or {})


@pytest.fixture(params=["orm"])
def broker(request) -> str:
    return request.param


@contextlib.contextmanager
def open_execution(
    monkeypatch: pytest.MonkeyPatch,
    workdir: Path,
    *,
    broker: str,
    redis_url: str = REDIS_URL,
    database: str | None = None,
) -> Iterator[Execution]:
    """An Execution on `broker` ("orm" or "redis", at `redis_url`) against `database` (a
    DATABASE_URL; by default the one this process is connected to, the test database)."""
    queue = f"t{uuid.uuid4().hex[:12]}"
    redis_url = redis_url if broker == "redis" else None
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env.update(FAST_SETTINGS)
    env.update(
        DATABASE_URL=database or database_url(connection.settings_dict),
        JOBS_QUEUE_NAME=queue,
        PYTHONUNBUFFERED="1",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    use_broker(monkeypatch, queue=queue, redis_url=redis_url)
    execution = Execution(env=env, workdir=workdir)
    try:
        yield execution
    finally:
        execution.stop_all()
        if redis_url:
            from django_q.brokers import get_broker

            with contextlib.suppress(Exception):  # a test may have stopped its Redis server
                get_broker().delete_queue()  # the line and the lane ahead (LanedRedis)


@pytest.fixture
def execution(
    transactional_db, broker: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Execution]:
    """Processes against the test database; stopped before the database is flushed."""
    with open_execution(monkeypatch, tmp_path, broker=broker) as execution:
        yield execution


# --- a private PostgreSQL server --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """A throwaway PostgreSQL cluster (initdb) on a free port, run as the `postgres` OS user
    when we are root, so a test can stop and start it without touching the shared server."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="jobs-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        )

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *self.as_user,
                str(PG_BIN / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.dir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=100",
            ],
            stdout=(self.dir / "postgres.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_until(self.accepts, timeout=30, what="the private PostgreSQL to accept connections")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            # SIGINT to the postmaster (runuser does not pass signals on): PostgreSQL's fast
            # shutdown, which cuts every client connection.
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGINT)
            self.proc.wait(30)

    def restart(self) -> None:
        self.stop()
        self.start()

    def accepts(self) -> bool:
        return (
            subprocess.run(
                [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
            ).returncode
            == 0
        )

    def url(self, name: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def postgres_server() -> Iterator[PostgresServer]:
    from tests.conftest import is_postgres, require

    if not is_postgres():
        pytest.skip("restarting the database server is a PostgreSQL test (DATABASE_URL is SQLite)")
    require(
        (PG_BIN / "initdb").exists(),
        f"PostgreSQL server binaries not found in {PG_BIN} (set JOBS_PG_BIN)",
    )
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


def pytest_terminal_summary(terminalreporter) -> None:
    """The fault suite's counts (tests/execution/test_faults.py), one line per fault and broker."""
    from tests.execution.faults import REPORTS

    if REPORTS:
        terminalreporter.section("faults survived")
        for report in REPORTS:
            terminalreporter.write_line(report.line())
