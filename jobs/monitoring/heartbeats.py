"""Process heartbeats: each django-q2 worker process and each scheduler says it is alive.

A worker process starts a daemon thread when django-q2 spawns it (its `post_spawn` signal,
connected in jobs.apps) that writes one UPDATE of its own row every
JOBS_PROCESS_HEARTBEAT_SECONDS, with the runs it finished since it started. The worker's hot
path only adds one to a counter in memory (`record_outcome`): no query per job. The scheduler
beats from its loop (`SchedulerBeat`), so a wedged loop stops beating too. A clean stop
stamps `stopped_at`; a killed process just stops beating, and is shown as gone once its last
beat is older than JOBS_PROCESS_GRACE_SECONDS. Beats carry the database's clock, as the jobs'
heartbeats do, so hosts whose clocks disagree are judged alike.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing import util as mp_util
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models.functions import Now
from django.utils import timezone

from jobs import sql
from jobs.models import Job, ProcessHeartbeat, ProcessKind
from jobs.states import JobStatus

logger = logging.getLogger(__name__)

# The outcomes of jobs.execution.worker.run_job that count as a finished run, and which of
# them count as failed ("skipped" is no run at all).
SUCCEEDED_OUTCOMES = frozenset({"succeeded"})
FAILED_OUTCOMES = frozenset({"failed", "retry_scheduled", "timeout", "lost", "quarantined"})

# Rows of processes gone for longer than this are deleted by the scheduler's rollup step.
KEEP_GONE = timedelta(days=7)


class _Beat:
    """The row of this process, written with one statement per beat."""

    def __init__(self, kind: ProcessKind, *, cluster_pid: int | None = None) -> None:
        self.kind = kind
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.cluster_pid = cluster_pid
        self.started_at = timezone.now()
        self.row_id: int | None = None
        self.done = 0
        self.failed = 0
        self._lock = threading.Lock()

    def count(self, outcome: str) -> None:
        with self._lock:
            if outcome in SUCCEEDED_OUTCOMES:
                self.done += 1
            elif outcome in FAILED_OUTCOMES:
                self.done += 1
                self.failed += 1

    def beat(self, *, stopping: bool = False) -> None:
        with self._lock:
            done, failed = self.done, self.failed
        values: dict[str, Any] = {"beat_at": Now(), "jobs_done": done, "jobs_failed": failed}
        if stopping:
            values["stopped_at"] = Now()
        if self.row_id is not None and ProcessHeartbeat.objects.filter(pk=self.row_id).update(
            **values
        ):
            return
        # The first beat, or the row was pruned while this process was away from the database.
        row, _ = ProcessHeartbeat.objects.update_or_create(
            host=self.host,
            pid=self.pid,
            started_at=self.started_at,
            defaults={
                **values,
                "kind": self.kind,
                "cluster_pid": self.cluster_pid,
                "queue": str(settings.Q_CLUSTER["name"]),
            },
        )
        self.row_id = row.pk


class _WorkerBeatThread(threading.Thread):
    def __init__(self, beat: _Beat, interval: float) -> None:
        super().__init__(name="jobs-process-heartbeat", daemon=True)
        self.beat = beat
        self.interval = interval

    def run(self) -> None:
        while True:
            try:
                self.beat.beat()
            except Exception as exc:
                # The database is away (a restart): beat again next time.
                logger.warning("process heartbeat failed: %s", exc)
            # One connection per worker process is the job heartbeat's, while a job runs; this
            # thread holds none between beats (a connect every few seconds costs less than a
            # second connection per worker for as long as it lives).
            with contextlib.suppress(Exception):
                connection.close()
            time.sleep(self.interval)


_worker_beat: _Beat | None = None
_worker_lock = threading.Lock()


def start_worker_beat(**_: object) -> None:
    """Start this worker process's heartbeat (django-q2's post_spawn, sent in each worker
    process it spawns). Once per process; never in django-q2's sync mode, where the "worker"
    is the caller's own process."""
    from django_q.conf import Conf

    global _worker_beat
    if Conf.SYNC:
        return
    with _worker_lock:
        if _worker_beat is None or _worker_beat.pid != os.getpid():
            beat = _Beat(ProcessKind.WORKER, cluster_pid=os.getppid())
            _WorkerBeatThread(beat, settings.JOBS_PROCESS_HEARTBEAT_SECONDS).start()
            # Run when the process ends normally (django-q2 stopping its workers), not when it
            # is killed: then it is shown as stopped rather than gone.
            mp_util.Finalize(None, _worker_stopped, args=(beat,), exitpriority=10)
            _worker_beat = beat


def _worker_stopped(beat: _Beat) -> None:
    with contextlib.suppress(Exception):
        close_old_connections()
        beat.beat(stopping=True)


def record_outcome(outcome: str) -> None:
    """Count one run of this worker process (in memory; the next beat writes it). Outside a
    cluster's worker process (a run in a test or a shell) there is no heartbeat to count in."""
    beat = _worker_beat
    if beat is not None and beat.pid == os.getpid():
        beat.count(outcome)


class SchedulerBeat:
    """The scheduler's heartbeat, written from its loop at most every interval."""

    def __init__(self) -> None:
        self._beat = _Beat(ProcessKind.SCHEDULER)
        self._next = 0.0

    def maybe_beat(self) -> None:
        if time.monotonic() >= self._next:
            self._beat.beat()
            self._next = time.monotonic() + settings.JOBS_PROCESS_HEARTBEAT_SECONDS

    def stopped(self) -> None:
        with contextlib.suppress(Exception):
            self._beat.beat(stopping=True)


# --- reading -----------------------------------------------------------------------------------


@dataclass
class RunningJob:
    job_id: str
    action: str
    account_id: str
    started_at: datetime | None


@dataclass
class ProcessRow:
    kind: str
    host: str
    pid: int
    started_at: datetime
    beat_at: datetime
    stopped_at: datetime | None
    jobs_done: int
    jobs_failed: int
    alive: bool
    running: list[RunningJob] = field(default_factory=list)

    @property
    def state(self) -> str:
        if self.alive:
            return "alive"
        return "stopped" if self.stopped_at else "gone"

    @property
    def gone_since(self) -> datetime | None:
        return None if self.alive else (self.stopped_at or self.beat_at)


@dataclass
class ClusterRow:
    host: str
    pid: int | None
    queue: str
    workers: list[ProcessRow]

    @property
    def alive(self) -> bool:
        return any(worker.alive for worker in self.workers)

    @property
    def started_at(self) -> datetime:
        return min(worker.started_at for worker in self.workers)

    @property
    def beat_at(self) -> datetime:
        return max(worker.beat_at for worker in self.workers)

    @property
    def state(self) -> str:
        if self.alive:
            return "alive"
        return "stopped" if all(w.stopped_at for w in self.workers) else "gone"

    @property
    def alive_workers(self) -> int:
        return sum(1 for worker in self.workers if worker.alive)


@dataclass
class Processes:
    now: datetime
    clusters: list[ClusterRow]
    schedulers: list[ProcessRow]
    grace: float

    @property
    def clusters_alive(self) -> int:
        return sum(1 for cluster in self.clusters if cluster.alive)

    @property
    def workers_alive(self) -> int:
        return sum(cluster.alive_workers for cluster in self.clusters)

    @property
    def schedulers_alive(self) -> int:
        return sum(1 for scheduler in self.schedulers if scheduler.alive)

    @property
    def scheduler_last_beat(self) -> datetime | None:
        return max((s.beat_at for s in self.schedulers), default=None)


def processes(*, within: timedelta = timedelta(hours=24), limit: int = 500) -> Processes:
    """Every worker and scheduler that beat within `within` (alive, stopped or gone), workers
    grouped by cluster (host and django-q2 sentinel pid), each with the jobs it runs now."""
    now = _db_now()
    grace = settings.JOBS_PROCESS_GRACE_SECONDS
    alive_after = now - timedelta(seconds=grace)
    rows = list(
        ProcessHeartbeat.objects.filter(beat_at__gte=now - within).order_by("-beat_at")[:limit]
    )
    # What the workers run now: the runs whose heartbeat is fresh, at most one per worker, from
    # the partial index of running jobs by heartbeat (runs left behind by a gone worker are the
    # "running without a heartbeat" of the queue, which the sweeper declares lost).
    running: dict[str, list[RunningJob]] = {}
    fresh_after = now - timedelta(seconds=settings.JOBS_STALL_GRACE_SECONDS)
    for job_id, action, account_id, worker, started in (
        Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__gte=fresh_after)
        .order_by()
        .values_list("pk", "action", "account_id", "worker", "started_at")[:5000]
    ):
        started = started if isinstance(started, datetime) else None
        running.setdefault(worker, []).append(RunningJob(job_id, action, account_id, started))
    clusters: dict[tuple[str, int | None], ClusterRow] = {}
    schedulers: list[ProcessRow] = []
    for row in rows:
        process = ProcessRow(
            kind=row.kind,
            host=row.host,
            pid=row.pid,
            started_at=row.started_at,
            beat_at=row.beat_at,
            stopped_at=row.stopped_at,
            jobs_done=row.jobs_done,
            jobs_failed=row.jobs_failed,
            alive=row.stopped_at is None and row.beat_at >= alive_after,
            running=running.get(f"{row.host}:{row.pid}", []) if row.stopped_at is None else [],
        )
        if row.kind == ProcessKind.SCHEDULER:
            schedulers.append(process)
            continue
        key = (row.host, row.cluster_pid)
        cluster = clusters.setdefault(key, ClusterRow(row.host, row.cluster_pid, row.queue, []))
        cluster.workers.append(process)
    ordered = sorted(clusters.values(), key=lambda c: (not c.alive, c.host, c.pid or 0))
    for cluster in ordered:
        cluster.workers.sort(key=lambda w: (not w.alive, w.pid))
    return Processes(now=now, clusters=ordered, schedulers=schedulers, grace=grace)


def _db_now() -> datetime:
    """The database's clock, which the beats carry."""
    with connection.cursor() as cursor:
        cursor.execute(sql.DB_NOW[connection.vendor == "postgresql"])
        row = cursor.fetchone()
    value: datetime = datetime.fromisoformat(row[0]) if isinstance(row[0], str) else row[0]
    # SQLite answers text in UTC, without a zone.
    return value if timezone.is_aware(value) else value.replace(tzinfo=UTC)


def prune_gone(now: datetime) -> int:
    """Delete the rows of processes that stopped beating more than KEEP_GONE ago."""
    deleted, _ = ProcessHeartbeat.objects.filter(beat_at__lt=now - KEEP_GONE).delete()
    return deleted


def alive(kind: ProcessKind, *, grace: float, host: str | None = None) -> int:
    """How many processes of `kind` (on `host`, or anywhere) beat within `grace` seconds, by the
    database's clock, and did not stop."""
    rows = ProcessHeartbeat.objects.filter(
        kind=kind, stopped_at__isnull=True, beat_at__gte=Now() - timedelta(seconds=grace)
    )
    if host:
        rows = rows.filter(host=host)
    return rows.count()
