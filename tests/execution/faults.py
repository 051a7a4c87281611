"""The fault suite's instruments (tests/execution/test_faults.py): what the `fault_record`
action wrote about each execution, the audit trail checked job by job, the count report, and
the faults themselves: a private Redis server, a TCP proxy that partitions a cluster from
PostgreSQL, a scheduler frozen and killed inside a transaction."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.db import InterfaceError, OperationalError, connection

from core.audit import AuditCommand
from core.models import AuditEvent
from jobs.models import AttemptOutcome, Job, JobAttempt
from jobs.states import SYSTEM_TRANSITIONS, JobStatus
from tests.execution.conftest import free_port, wait_until

S = JobStatus
A = AttemptOutcome

# --- what the recorder wrote ---------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One execution of a job's handler, as the fault_record action recorded it."""

    job_id: str
    attempt: int
    pid: int
    started_ns: int
    ended_ns: int | None  # None: the process died during the execution (kill -9)
    outcome: str | None  # "done", or the exception that ended it ("RunLost", ...)


def read_runs(directory: Path) -> list[Run]:
    """The executions recorded in `directory` (see tests.execution.actions.fault_record)."""
    ends = {}
    for end in directory.glob("*.end"):
        *base, ended, outcome, _ = end.name.split(".")
        ends[".".join(base)] = (int(ended), outcome)
    runs = []
    for start in directory.glob("*.start"):
        base = start.name.removesuffix(".start")
        job_id, attempt, pid, started = base.split(".")
        ended, outcome = ends.get(base, (None, None))
        runs.append(Run(job_id, int(attempt), int(pid), int(started), ended, outcome))
    return sorted(runs, key=lambda run: run.started_ns)


def double_runs(directory: Path, runs: list[Run]) -> set[str]:
    """Jobs that had two executions alive at the same moment: one found the other's flock held
    (the kernel drops a dead process's lock, so a killed run never counts), or two recorded
    intervals intersect."""
    jobs = {path.name.split(".")[0] for path in directory.glob("*.overlap")}
    by_job: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_job[run.job_id].append(run)
    for job_id, executions in by_job.items():
        for earlier, later in itertools.pairwise(executions):
            if earlier.ended_ns is not None and later.started_ns < earlier.ended_ns:
                jobs.add(job_id)
    return jobs


# --- the audit trail -------------------------------------------------------------------------

_ALLOWED = {
    (command.value, source.value, target.value)
    for command, transition in SYSTEM_TRANSITIONS.items()
    for source in transition.sources
    for target in transition.targets
} | {
    (AuditCommand.CREATE.value, "", S.QUEUED.value),
    (AuditCommand.CREATE.value, "", S.SCHEDULED.value),
}

# The event each closed attempt must have, by its outcome.
_CLOSED_BY = {
    A.SUCCEEDED: AuditCommand.SUCCEED,
    A.WORKER_LOST: AuditCommand.STALL,
    A.RETRY_SCHEDULED: AuditCommand.FAIL,
    A.FAILED: AuditCommand.FAIL,
    A.TIMEOUT: AuditCommand.FAIL,
}


def audit_problems(ids: list[str]) -> tuple[int, list[str]]:
    """Check every job's audit trail against its row and its attempts: each event is a
    transition of the state table, each starts where the one before left the job, the last
    leaves it in its current status, one claim per attempt, one closing event per closed
    attempt. Returns the number of transitions checked and what is wrong."""
    events: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for job_id, *event in (
        AuditEvent.objects.filter(job_id__in=ids)
        .order_by("id")
        .values_list("job_id", "command", "from_status", "to_status")
    ):
        events[job_id].append(tuple(event))
    attempts: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for job_id, number, outcome in (
        JobAttempt.objects.filter(job_id__in=ids)
        .order_by("number")
        .values_list("job_id", "number", "outcome")
    ):
        attempts[job_id].append((number, outcome))
    problems = []
    checked = 0
    for job_id, status, attempt_count in Job.objects.filter(pk__in=ids).values_list(
        "pk", "status", "attempt_count"
    ):
        trail = events[job_id]
        checked += len(trail)
        where = ""
        for command, source, target in trail:
            if (command, source, target) not in _ALLOWED:
                problems.append(f"{job_id}: {command} {source or '-'} -> {target} is no transition")
            if source != where:
                problems.append(f"{job_id}: {command} from {source or '-'}, but it was {where}")
            where = target
        if where != status:
            problems.append(f"{job_id}: the trail leaves it {where or 'nowhere'}, it is {status}")
        commands = Counter(command for command, *_ in trail)
        numbers = [number for number, _ in attempts[job_id]]
        if not commands[AuditCommand.CLAIM] == len(numbers) == attempt_count:
            problems.append(
                f"{job_id}: {commands[AuditCommand.CLAIM]} claims, {len(numbers)} attempts, "
                f"attempt_count {attempt_count}"
            )
        if numbers != list(range(1, len(numbers) + 1)):
            problems.append(f"{job_id}: attempts numbered {numbers}")
        closing = Counter(_CLOSED_BY[A(o)] for _, o in attempts[job_id] if A(o) in _CLOSED_BY)
        for command in {AuditCommand.SUCCEED, AuditCommand.STALL, AuditCommand.FAIL}:
            if closing[command] != commands[command]:
                problems.append(
                    f"{job_id}: {commands[command]} {command} event(s) for "
                    f"{closing[command]} attempt(s) closed that way"
                )
    return checked, problems


# --- the report ----------------------------------------------------------------------------


@dataclass
class FaultReport:
    fault: str
    broker: str
    jobs: int
    lost: int
    left_running: int
    double_runs: int
    executions: int
    transitions: int
    seconds: float
    notes: str = ""

    def line(self) -> str:
        return (
            f"{self.fault:<34} {self.broker:<6} jobs {self.jobs:>5}  lost {self.lost}  "
            f"running {self.left_running}  double runs {self.double_runs}  "
            f"executions {self.executions:>5}  transitions {self.transitions:>5}  "
            f"{self.seconds:5.1f}s  {self.notes}"
        )


# Filled by the tests, printed at the end of the session (conftest.pytest_terminal_summary).
REPORTS: list[FaultReport] = []


def survived(
    fault: str,
    broker: str,
    ids: list[str],
    runs_dir: Path,
    *,
    started: float,
    notes: str = "",
) -> FaultReport:
    """Count and assert, once every job is terminal: 0 jobs lost (each succeeded), 0 left
    running (no job, no open attempt), 0 concurrent double runs, every transition audited,
    and every execution an attempt on record (none ran twice under one attempt)."""
    statuses = Counter(Job.objects.filter(pk__in=ids).values_list("status", flat=True))
    open_attempts = JobAttempt.objects.filter(job_id__in=ids, outcome=A.RUNNING).count()
    runs = read_runs(runs_dir)
    doubled = double_runs(runs_dir, runs)
    checked, problems = audit_problems(ids)
    report = FaultReport(
        fault=fault,
        broker=broker,
        jobs=len(ids),
        lost=len(ids) - statuses[S.SUCCEEDED],
        left_running=statuses[S.RUNNING] + open_attempts,
        double_runs=len(doubled),
        executions=len(runs),
        transitions=checked,
        seconds=time.monotonic() - started,
        notes=notes,
    )
    REPORTS.append(report)
    print(f"\n{report.line()}")

    assert report.lost == 0, f"jobs not succeeded: {dict(statuses)}"
    assert report.left_running == 0, (statuses[S.RUNNING], open_attempts)
    assert not doubled, f"concurrent double runs: {sorted(doubled)[:10]}"
    assert not problems, "\n".join(problems[:20])
    executed = Counter((run.job_id, run.attempt) for run in runs)
    assert {job_id for job_id, _ in executed} == set(ids), "every job ran"
    twice = [key for key, n in executed.items() if n > 1]
    assert not twice, f"one attempt executed more than once: {twice[:10]}"
    recorded = set(JobAttempt.objects.filter(job_id__in=ids).values_list("job_id", "number"))
    assert set(executed) <= recorded, "every execution is an attempt on record"
    return report


def lost_attempts(ids: list[str]) -> set[tuple[str, int]]:
    return set(
        JobAttempt.objects.filter(job_id__in=ids, outcome=A.WORKER_LOST).values_list(
            "job_id", "number"
        )
    )


# --- a private Redis server ----------------------------------------------------------------


class RedisServer:
    """redis-server on a free port, without persistence: a restart empties it, as a crash of
    a Redis without AOF does."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log = workdir / "redis.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_until(self.accepts, timeout=15, what="the private Redis to accept connections")

    def accepts(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


# --- a partition between a cluster and PostgreSQL --------------------------------------------


class TcpProxy:
    """A TCP proxy in front of PostgreSQL that the test can cut:

    - `cut("blackhole")`: nothing passes any more, in either direction, and new connections
      hang: a network partition. What was sent waits and arrives after `heal()`, as TCP's
      retransmissions deliver it once the network is back;
    - `cut("reset")`: every connection is dropped and new ones are refused until `heal()`.
    """

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.mode = "forward"
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = False
        self.connections = 0
        self._threads = [threading.Thread(target=self._accept, daemon=True, name="proxy")]
        self._threads[0].start()

    def cut(self, mode: str) -> None:
        assert mode in {"blackhole", "reset"}, mode
        self.mode = mode
        self._flowing.clear()
        if mode == "reset":
            self._drop_all()

    def heal(self) -> None:
        self.mode = "forward"
        self._flowing.set()

    def close(self) -> None:
        self._closed = True
        self._flowing.set()
        self._drop_all()
        self.listener.close()
        for thread in self._threads:
            thread.join(5)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.mode == "reset":
                _reset(client)
                continue
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        self._flowing.wait()  # a connection opened during a blackhole hangs until it heals
        if self._closed or self.mode == "reset":
            _reset(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _reset(client)
            return
        upstream.settimeout(None)
        with self._lock:
            self._sockets |= {client, upstream}
            self.connections += 1
        for source, sink in ((client, upstream), (upstream, client)):
            thread = threading.Thread(target=self._pump, args=(source, sink), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                self._flowing.wait()  # held in a blackhole, delivered when it heals
                with self._lock:
                    if source not in self._sockets:  # dropped meanwhile
                        break
                sink.sendall(data)
        except OSError:
            pass
        self._drop(source, sink)

    def _drop(self, *sockets: socket.socket) -> None:
        with self._lock:
            sockets = tuple(s for s in sockets if s in self._sockets)
            self._sockets.difference_update(sockets)
        for sock in sockets:
            _reset(sock)

    def _drop_all(self) -> None:
        with self._lock:
            sockets = list(self._sockets)
        self._drop(*sockets)


def _reset(sock: socket.socket) -> None:
    """Close with a RST (linger 0), waking any thread blocked on the socket."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


# --- processes killed in the middle of something ---------------------------------------------


def kill_mid_execution(pid: int, job_id: str, attempt: int, runs_dir: Path) -> bool:
    """Freeze the worker process `pid` and kill -9 it if it is inside the handler of that run
    (the recorder wrote its start and not its end: nothing of its outcome was sent yet). False,
    and the process goes on, if it is not."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:  # gone meanwhile (recycled by its cluster)
        return False
    run = f"{job_id}.{attempt}.{pid}."
    inside = any(runs_dir.glob(f"{run}*.start")) and not any(runs_dir.glob(f"{run}*.end"))
    os.kill(pid, signal.SIGKILL if inside else signal.SIGCONT)
    return inside


def parent_of(pid: int) -> int:
    # /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces, never ")".
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def children_of(pid: int) -> set[int]:
    """The live processes whose parent is `pid` (a cluster's sentinel: its workers, monitor
    and pusher)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(stat.parent.name))
    return found


# --- a scheduler killed inside a transaction -------------------------------------------------


def transaction_of(application_name: str) -> str | None:
    """The statement of an open transaction of the process connected as `application_name`
    (libpq's PGAPPNAME), if it has one."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT state, query FROM pg_stat_activity "
            "WHERE application_name = %s AND xact_start IS NOT NULL",
            [application_name],
        )
        row = cursor.fetchone()
    return None if row is None else f"{row[0]}: {' '.join(row[1].split())[:80]}"


def kill_inside_a_transaction(
    pid: int, application_name: str, *, when: Callable[[], bool], timeout: float
) -> str:
    """Freeze the process, look at its database session, and kill -9 it if it is inside a
    transaction and `when()` holds (checked while it is frozen); otherwise let it go on a
    moment and look again. Returns what it was doing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        os.kill(pid, signal.SIGSTOP)
        doing = transaction_of(application_name)
        if doing and when():
            os.kill(pid, signal.SIGKILL)
            return doing
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.002)
    raise AssertionError(f"process {pid} never seen inside a transaction in {timeout}s")


# --- this process on another server ------------------------------------------------------------


def retrying(check):
    """Run a check from the test process, which also loses its connection in a restart."""
    try:
        return check()
    except (OperationalError, InterfaceError):
        connection.close()
        return False


class connected_to:
    """Point this process's default connection at another server for the block."""

    def __init__(self, port: int, name: str) -> None:
        self.changes = {"HOST": "127.0.0.1", "PORT": str(port), "NAME": name, "USER": "postgres"}

    def __enter__(self) -> None:
        connection.close()
        self.saved = {key: connection.settings_dict[key] for key in self.changes}
        connection.settings_dict.update(self.changes)

    def __exit__(self, *exc) -> None:
        connection.close()
        connection.settings_dict.update(self.saved)


# --- jobs ------------------------------------------------------------------------------------


def create_jobs(account, count: int, *, run_at=None, **payload) -> list[str]:
    """`count` fault_record jobs with `payload`, created as a client would (one batch)."""
    from core.actors import Actor
    from jobs import services
    from jobs.execution.actions.registry import JobSpec

    specs = [JobSpec("fault_record", dict(payload), run_at=run_at) for _ in range(count)]
    jobs = services.jobs_create(account=account, specs=specs, actor=Actor.system("test"))
    return [job.pk for job in jobs]


def status_counts(ids: list[str]) -> Counter:
    return Counter(Job.objects.filter(pk__in=ids).values_list("status", flat=True))


def all_succeeded(ids: list[str]) -> bool:
    return status_counts(ids)[S.SUCCEEDED] == len(ids)


def all_terminal(ids: list[str]) -> bool:
    from jobs.states import TERMINAL

    counts = status_counts(ids)
    return sum(n for status, n in counts.items() if status in TERMINAL) == len(ids)
