"""The django-q2 entry: `run_job(job_id)` runs one job in a worker process of a `qcluster`.

django-q2 calls the function in the main thread of a forked worker process, inside its own
SIGALRM-based hard timeout (django_q.worker / django_q.timeout). Here we:

- claim the job (jobs.services.job_claim): only a `queued` job is claimed, so a duplicate or
  late message is a no-op;
- keep a heartbeat while the handler runs, from a thread with its own database connection, so
  the sweeper can tell a slow run from a lost one; a worker whose beats cannot reach the
  database for nearly the grace gives the run up (see _Heartbeat); the beat also brings
  news of a cancel, which stops the handler at its next ownership check (RunCancelled);
- enforce the action's own timeout with SIGALRM (shorter than the cluster's hard limit, which
  kills the whole process), so a timed-out run is recorded as `timeout` and the worker process
  goes on with the next job;
- close the attempt with its outcome, retrying while the database is briefly unreachable.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.dispatch import receiver
from django.utils import timezone

from jobs import services, sql
from jobs.execution.actions.registry import (
    ActionContext,
    JobError,
    RunCancelled,
    RunLost,
    get_action,
)
from jobs.monitoring import heartbeats
from jobs.states import JobStatus

logger = logging.getLogger(__name__)
T = TypeVar("T")


@receiver(connection_created)
def _prepare_worker_connection(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """Set up each database connection of a worker process (the only processes that import
    this module).

    Worker processes commit without waiting for the WAL flush (JOBS_WORKER_ASYNC_COMMIT,
    PostgreSQL only). A database *crash* may then forget the last fraction of a second of
    claims and outcomes, never corrupt anything, and each forgotten transition heals into
    another run (a forgotten claim leaves the job queued and it is enqueued again; a forgotten
    outcome leaves it running and the sweeper reschedules it): the at-least-once the design
    already guarantees. Operators' commands, in the web process, always commit durably."""
    # No health check ("SELECT 1") before the first query of each job: every transition of
    # the worker already retries on a broken connection (_with_db_retry), and a handler starts
    # only after its claim went through on the same connection.
    # Set by BaseDatabaseWrapper.__init__ (Django 4.1+); django-stubs do not declare it.
    connection.health_check_enabled = False  # type: ignore[attr-defined]
    if settings.JOBS_WORKER_ASYNC_COMMIT and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql.ASYNC_COMMIT)


class ActionTimeout(BaseException):
    """Raised in the worker's main thread when the action outruns its timeout. A BaseException,
    so a handler's `except Exception` cannot swallow it."""


def run_job(job_id: str) -> str:
    """Run the job `job_id` once, if it is still queued. Returns the outcome, for django-q2's
    task log: "skipped", "succeeded", "failed", "retry_scheduled", "timeout", "cancelled",
    "lost" or "quarantined" (its row could not be claimed, loaded or closed: the job was failed
    with internal_error instead, see jobs.services.quarantine; the message is consumed and the
    job is not sent again)."""
    limited: list[services.ClaimedRun] = []
    try:
        outcome = _run(job_id, limited)
    except services.JobQuarantined:
        outcome = "quarantined"
    finally:
        if limited:
            _release_slot(limited[0])
    # In memory only: this process's heartbeat thread writes the counts (jobs.monitoring).
    heartbeats.record_outcome(outcome)
    return outcome


def _release_slot(run: services.ClaimedRun) -> None:
    """The run of a job a concurrency limit applies to has ended, whatever its outcome: queue
    a job of the same account and action waiting for the slot. If this fails, the scheduler's
    periodic release does it (jobs.services.limits)."""
    try:
        _with_db_retry(
            lambda: services.jobs_release_waiting(account_id=run.account_id, action=run.action),
            what="release",
        )
    except Exception:
        logger.exception("releasing a slot of %s %s failed", run.account_id, run.action)


def _run(job_id: str, limited: list[services.ClaimedRun]) -> str:
    # One claim time for every try: a retry after a lost reply recognizes its own claim.
    claimed_at = timezone.now()
    claim_sent = time.monotonic()  # the claim stamps the first heartbeat, no earlier than this
    run = _with_db_retry(
        lambda: services.job_claim(job_id=job_id, worker=worker_identity(), claimed_at=claimed_at),
        what="claim",
    )
    if run is None:
        return "skipped"
    if run.limited:
        limited.append(run)
    number = run.number
    registered = get_action(run.action)
    if registered is None:
        return _fail(
            job_id,
            number,
            code="unknown_action",
            detail=f"No action is registered as {run.action!r} on worker {worker_identity()}.",
            retryable=False,
        )
    heartbeat = _heartbeat()
    heartbeat.watch(job_id, number, since=claim_sent)
    context = ActionContext(
        job_id=job_id,
        account_id=run.account_id,
        action=run.action,
        payload=run.payload,
        attempt=number,
        task_id=run.task_id,
        is_lost=lambda: heartbeat.lost(job_id, number),
        is_cancelled=lambda: heartbeat.cancelled(job_id, number),
    )
    timeout = registered.policy.effective_timeout
    try:
        with _deadline(timeout):
            result = registered.handler(context)
        result = _as_result(result)
    except ActionTimeout:
        # The alarm may have interrupted the handler in the middle of a query: never reuse
        # that connection.
        _close_connection()
        return _fail(
            job_id,
            number,
            code="timeout",
            detail=f"The action ran longer than its timeout of {timeout:g} s and was stopped.",
            retryable=True,
            timed_out=True,
        )
    except RunLost:
        # The sweeper closed this attempt as worker_lost and rescheduled the job, or may do so
        # at any moment (no heartbeat got through for nearly the grace).
        logger.warning(
            "run %s of %s was declared lost, or could not be kept (no heartbeat reached the "
            "database for %gs), while it ran; stopped it",
            number,
            job_id,
            heartbeat.lease,
        )
        return "lost"
    except RunCancelled:
        stopped = _with_db_retry(
            lambda: services.job_stop(job_id=job_id, attempt=number), what="stop"
        )
        if stopped is None:
            _discarded(job_id, number)
            return "lost"
        return "cancelled"
    except JobError as exc:
        return _fail(job_id, number, code=exc.code, detail=exc.detail, retryable=exc.retryable)
    except Exception as exc:
        return _fail(
            job_id,
            number,
            code="internal_error",
            detail=f"{type(exc).__name__}: {exc}"[:2000],
            retryable=False,
            traceback=traceback.format_exc(),
        )
    finally:
        heartbeat.unwatch()
    ours = _with_db_retry(
        lambda: services.job_succeed(job_id=job_id, attempt=number, result=result),
        what="success",
    )
    if not ours:
        _discarded(job_id, number)
    return "succeeded" if ours else "lost"


def run_bulk_operation(operation_id: str) -> str:
    """Run the due batches of a bulk operation (jobs.services.bulk_operation_run). Each batch
    is one transaction: a worker killed in one leaves nothing of it, and the scheduler sends
    the operation again once its lease expires. Returns what stopped it, for django-q2's log."""
    return _with_db_retry(lambda: services.bulk_operation_run(operation_id), what="bulk operation")


_identity: tuple[int, str] = (0, "")


def worker_identity() -> str:
    """hostname:pid of this worker process, recorded on the job and its attempt. Kept per
    process: gethostname is a system call, and this is asked for on every claim."""
    global _identity
    pid = os.getpid()
    if _identity[0] != pid:
        _identity = (pid, f"{socket.gethostname()}:{pid}")
    return _identity[1]


def _fail(job_id: str, number: int, **error: Any) -> str:
    job = _with_db_retry(
        lambda: services.job_fail(job_id=job_id, attempt=number, **error), what="failure"
    )
    if job is None:
        _discarded(job_id, number)
        return "lost"
    if job.status == JobStatus.RESOLVED:  # a cancel was requested (services.job_cancel)
        return "cancelled"
    if error.get("timed_out"):
        return "timeout"
    return "retry_scheduled" if job.status == JobStatus.SCHEDULED else "failed"


def _discarded(job_id: str, number: int) -> None:
    logger.warning(
        "the outcome of run %s of %s is discarded: the run is no longer this worker's "
        "(declared lost while it ran, or the job was deleted)",
        number,
        job_id,
    )


def _as_result(value: object) -> dict[str, Any] | None:
    """A handler returns a JSON object or None; any other JSON value is wrapped."""
    if value is not None and not isinstance(value, dict):
        value = {"value": value}
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the action returned a result that is not JSON: {exc}") from None
    return value


def _with_db_retry(call: Callable[[], T], *, what: str) -> T:
    """Run a worker transition, retrying with backoff while the database is unreachable (a
    restart, a failover), for at most JOBS_DB_RETRY_SECONDS. Each transition is one transaction
    that checks the job's state first, so running it again after an unknown outcome is safe."""
    deadline = time.monotonic() + settings.JOBS_DB_RETRY_SECONDS
    delay = 0.2
    while True:
        try:
            return call()
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() + delay > deadline:
                raise
            logger.warning("database unavailable recording %s (%s); retrying", what, exc)
            _close_connection()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _close_connection() -> None:
    with contextlib.suppress(Exception):
        connection.close()


# --- timeout -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise ActionTimeout in this (main) thread after `seconds`. django-q2 has armed SIGALRM for
    its hard limit around this call: we take the timer over and give it back, less the time
    spent, when the handler returns."""
    if threading.current_thread() is not threading.main_thread():
        # Signals only reach the main thread (a synchronous test run, for example).
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise ActionTimeout(f"timed out after {seconds:g} s")

    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    hard_left, _ = signal.setitimer(signal.ITIMER_REAL, 0)
    started = time.monotonic()
    # If the cluster's hard limit comes first, it wins, but is still recorded as our timeout.
    signal.setitimer(signal.ITIMER_REAL, min(seconds, hard_left) if hard_left else seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if hard_left:
            left = hard_left - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))


# --- heartbeat ---------------------------------------------------------------------------------


class _Heartbeat(threading.Thread):
    """One thread per worker process that beats for the run in progress, if any, every
    JOBS_HEARTBEAT_SECONDS. It has its own database connection (Django's are per thread),
    closed whenever no run is in progress. A job shorter than the interval never costs a beat:
    the claim itself stamps the first heartbeat.

    It also keeps the run's lease. The sweeper may declare a run lost once its last heartbeat
    is older than the grace, and hand the job to another worker; a worker cut off from the
    database cannot learn that it did. So when no beat has got through for `lease` seconds
    (the grace less one interval, counted from when the last successful beat, or the claim,
    was sent: no later than the time it stamped), the run counts as lost here too, and a
    handler checking ownership (ctx.ensure_owned) stops before the job's next run can start,
    instead of running beside it. A run given up this way is left to the sweeper."""

    def __init__(self, interval: float) -> None:
        super().__init__(name="jobs-heartbeat", daemon=True)
        self.interval = interval
        grace = settings.JOBS_STALL_GRACE_SECONDS
        self.lease = max(grace - interval, grace / 2)
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._run: tuple[str, int] | None = None
        self._lost: tuple[str, int] | None = None
        self._cancelled: tuple[str, int] | None = None  # a run an operator cancelled
        self._beat_sent = 0.0  # time.monotonic() when the last beat that got through was sent

    def watch(self, job_id: str, attempt: int, *, since: float) -> None:
        """Beat for this run from now on; its claim was sent at `since` (time.monotonic())."""
        with self._lock:
            self._run = (job_id, attempt)
            self._beat_sent = since

    def unwatch(self) -> None:
        with self._lock:
            self._run = None

    def lost(self, job_id: str, attempt: int) -> bool:
        """Whether the heartbeat found that this run was taken away (declared lost), or could
        not keep it: no beat got through within the lease."""
        with self._lock:
            if self._lost == (job_id, attempt):
                return True
            expired = time.monotonic() - self._beat_sent > self.lease
            return self._run == (job_id, attempt) and expired

    def cancelled(self, job_id: str, attempt: int) -> bool:
        """Whether a beat found that an operator cancelled this run."""
        with self._lock:
            return self._cancelled == (job_id, attempt)

    def run(self) -> None:
        while True:
            time.sleep(self.interval)
            with self._lock:
                current = self._run
            if current is None:
                _close_connection()
                continue
            try:
                close_old_connections()
                sent = time.monotonic()
                beat = services.job_heartbeat(job_id=current[0], attempt=current[1])
                if beat is not services.Beat.LOST:
                    with self._lock:
                        if self._run == current:
                            self._beat_sent = sent
                            if beat is services.Beat.CANCEL_REQUESTED:
                                self._cancelled = current
                else:
                    # The sweeper declared the run lost, or the job was deleted: stop beating
                    # for a run that is no longer ours.
                    with self._lock:
                        if self._run == current:
                            self._run = None
                            self._lost = current
            except Exception as exc:
                logger.warning("heartbeat for %s failed: %s", current[0], exc)
                _close_connection()


_heartbeat_thread: _Heartbeat | None = None
_heartbeat_lock = threading.Lock()


def _heartbeat() -> _Heartbeat:
    global _heartbeat_thread
    with _heartbeat_lock:
        # Threads do not survive fork: a worker process starts its own.
        if _heartbeat_thread is None or _heartbeat_thread.pid != os.getpid():
            _heartbeat_thread = _Heartbeat(settings.JOBS_HEARTBEAT_SECONDS)
            _heartbeat_thread.start()
        return _heartbeat_thread
