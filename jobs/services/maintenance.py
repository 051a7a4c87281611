"""What the scheduler process does on its own: declare lost the runs whose worker stopped
heart-beating, move due scheduled jobs to the broker, and send again the messages of queued jobs
no worker claimed. Each takes its rows with SKIP LOCKED so several schedulers share the work.

One row never stops a round (jobs.services.quarantine): each step handles its rows in a batch,
one transaction, as fast as it can; when the batch fails for any reason but the database being
unreachable, it is rolled back and the same rows are handled one by one, each in a savepoint,
and a row that fails on its own is quarantined (or, for an error that is not in its data,
skipped for this round) while the others go on. A step checks what it reads of a row: a value
the application cannot read (core.unreadable) is such a failure. The dispatcher reads only the
ids of its rows (the job's, its account's, its task's), so it dispatches a due job whatever else
its row holds; the sweeper reads every column but the JSON ones, the requeue `enqueued_at`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.actors import Actor
from core.audit import AuditCommand, audit, audit_fields
from core.models import AuditEvent
from core.unreadable import Unreadable
from jobs.execution.actions.registry import (
    policy_for,
)
from jobs.execution.broker import enqueue_again_on_commit, enqueue_on_commit
from jobs.models import AttemptOutcome, Job
from jobs.services import _rows, limits
from jobs.services.quarantine import (
    CONNECTION_ERRORS,
    DATA_ERRORS,
    UnreadableRow,
    check_readable,
    quarantine_on_error,
)
from jobs.states import SYSTEM_DISPATCHER, SYSTEM_SWEEPER, JobStatus, stale_heartbeat

logger = logging.getLogger(__name__)

# The sweeper reads a lost run's row but not its JSON, which it has no use for.
_JSON_FIELDS = ("payload", "labels", "result", "resolution")


def _batch_or_rows(
    step: str,
    *,
    batch: Callable[[], list[str]],
    select_ids: Callable[[], Iterable[str]],
    one: Callable[[str], Any],
    finish: Callable[[dict[str, Any]], None] = lambda done: None,
    status: str,
    found_by: Actor,
) -> list[str]:
    """`batch()` in one transaction; if it fails, `one(job_id)` for each of `select_ids()`
    (the rows the batch took, locked again) in a savepoint each, then `finish({job_id: what
    one returned})` for those that went through, in the same transaction. A row that fails
    on its own is handed to quarantine_on_error, as `status`, found by `found_by`."""
    try:
        with transaction.atomic():
            return batch()
    except CONNECTION_ERRORS:
        raise
    except Exception as exc:
        logger.warning("%s: a batch failed (%r); handling its rows one by one", step, exc)
    done: dict[str, Any] = {}
    with transaction.atomic():
        for job_id in list(select_ids()):
            try:
                with transaction.atomic():
                    done[job_id] = one(job_id)
            except Exception as exc:
                quarantine_on_error(job_id, exc, status=status, found_by=found_by, step=step)
        finish(done)
    return list(done)


def jobs_sweep_lost(*, now: datetime | None = None, limit: int = 500) -> list[str]:
    """Declare lost the running jobs whose worker stopped heart-beating (killed, lost, cut off)
    or that outran their timeout plus the grace: `stalled` with error `worker_lost`, then
    rescheduled at once when attempts remain. A lost run an operator had cancelled is
    resolved as cancelled instead (never run again)."""
    grace = timedelta(seconds=settings.JOBS_STALL_GRACE_SECONDS)
    candidates = Job.objects.filter(stale_heartbeat(now))
    now = now or timezone.now()
    locked = candidates.select_for_update(skip_locked=True, no_key=True).order_by("pk")

    def declare(jobs: list[Job], detail: str = "") -> list[str]:
        for job in jobs:
            check_readable(job)
        for job in jobs:
            _declare_lost(job, now=now, detail=detail)
        _rows.refresh_task_statuses(job.task_id for job in jobs)
        return [job.pk for job in jobs]

    def declare_one(job_id: str, detail: str = "") -> None:
        declare([Job.objects.defer(*_JSON_FIELDS).get(pk=job_id)], detail)

    swept = _batch_or_rows(
        "sweep_lost",
        batch=lambda: declare(list(locked.defer(*_JSON_FIELDS)[:limit])),
        select_ids=lambda: locked.values_list("pk", flat=True)[:limit],
        one=declare_one,
        status=JobStatus.RUNNING,
        found_by=SYSTEM_SWEEPER,
    )
    # A worker that is alive but stuck past its action's timeout (the hard timeout did not fire).
    overdue, unreadable = _overdue_runs(now=now, grace=grace, limit=limit)
    for job_id, attempt, error in unreadable:
        quarantine_on_error(
            job_id,
            error,
            status=JobStatus.RUNNING,
            found_by=SYSTEM_SWEEPER,
            step="sweep_lost",
            attempt=attempt,
        )
    if overdue:
        # The same runs that were read: a job that finished and was claimed again since
        # is a new run, not an overdue one.
        same_run = Q()
        for job_id, attempt in overdue:
            same_run |= Q(pk=job_id, attempt_count=attempt)
        runs = (
            Job.objects.select_for_update(skip_locked=True, no_key=True)
            .filter(same_run, status=JobStatus.RUNNING)
            .order_by("pk")
        )
        detail = "The run outlived its timeout and its grace."
        swept += _batch_or_rows(
            "sweep_lost",
            batch=lambda: declare(list(runs.defer(*_JSON_FIELDS)), detail),
            select_ids=lambda: runs.values_list("pk", flat=True),
            one=lambda job_id: declare_one(job_id, detail),
            status=JobStatus.RUNNING,
            found_by=SYSTEM_SWEEPER,
        )
    if swept:
        logger.warning("declared %d lost run(s): %s", len(swept), ", ".join(swept[:20]))
        # The slots the lost runs held are free: release what waits for them.
        limits.jobs_release_pairs(
            set(Job.objects.filter(pk__in=swept).values_list("account_id", "action"))
        )
    return swept


def _overdue_runs(
    *, now: datetime, grace: timedelta, limit: int
) -> tuple[list[tuple[str, int]], list[tuple[str, int, Exception]]]:
    """The running jobs (id, attempt) past their action's timeout plus the grace, and those
    whose start cannot be read (id, attempt, why), read without locks."""
    # Oldest first, so the limit cannot hide an overdue run behind younger ones.
    query = Job.objects.filter(status=JobStatus.RUNNING, started_at__lt=now - grace).order_by(
        "started_at"
    )
    try:
        with transaction.atomic():  # a savepoint when called inside a transaction
            rows: list[tuple[str, str, Any, int]] = list(
                query.values_list("pk", "action", "started_at", "attempt_count")[:limit]
            )
    except DATA_ERRORS:
        # A start the database driver cannot parse (SQLite) fails the whole read: row by row.
        rows = [
            (job_id, action, _started_at(job_id), attempt)
            for job_id, action, attempt in query.values_list("pk", "action", "attempt_count")[
                :limit
            ]
        ]
    overdue: list[tuple[str, int]] = []
    unreadable: list[tuple[str, int, Exception]] = []
    for job_id, action, started, attempt in rows:
        started_at: Any = started
        if isinstance(started_at, Unreadable):
            started_at = UnreadableRow(job_id, {"started_at": started_at})
        if isinstance(started_at, Exception):
            unreadable.append((job_id, attempt, started_at))
        elif started_at is not None:
            timeout = timedelta(seconds=policy_for(action).effective_timeout)
            if started_at + timeout + grace < now:
                overdue.append((job_id, attempt))
    return overdue, unreadable


def _started_at(job_id: str) -> datetime | Exception | None:
    try:
        with transaction.atomic():
            started: datetime | None = (
                Job.objects.filter(pk=job_id).values_list("started_at", flat=True).get()
            )
            return started
    except DATA_ERRORS as exc:
        return exc


def _declare_lost(job: Job, *, now: datetime, detail: str = "") -> None:
    detail = detail or (
        f"Worker {job.worker or '?'} stopped heart-beating "
        f"(last heartbeat {job.heartbeat_at.isoformat() if job.heartbeat_at else 'never'})."
    )
    if job.cancel_requested_at is not None:
        # An operator asked for this run to stop, and it did stop, one way or another (its
        # worker killed, stuck or cut off): the job is resolved as cancelled, as its worker
        # would have done, not stalled and run again. The attempt records why it ended.
        _rows.close_cancelled(
            job,
            job.attempt_count,
            now=now,
            actor=SYSTEM_SWEEPER,
            command=AuditCommand.STOP_LOST,
            stopped="lost",
            code="worker_lost",
            detail=detail,
        )
        return
    _rows.close_attempt(
        job,
        job.attempt_count,
        now=now,
        outcome=AttemptOutcome.WORKER_LOST,
        code="worker_lost",
        detail=detail,
    )
    fields = _rows.move_to(job, JobStatus.STALLED, now=now)
    job.last_error_code = "worker_lost"
    job.last_error_detail = detail
    job.last_error_at = now
    audit(
        actor=SYSTEM_SWEEPER,
        command=AuditCommand.STALL,
        account_id=job.account_id,
        job=job,
        from_status=JobStatus.RUNNING,
        to_status=JobStatus.STALLED,
        reason=detail,
        data={"attempt": job.attempt_count, "worker": job.worker},
        now=now,
    )
    if job.attempt_count < job.max_attempts:
        _rows.move_to(job, JobStatus.SCHEDULED, now=now)
        job.run_at = now + timedelta(
            seconds=policy_for(job.action).backoff_seconds(job.attempt_count)
        )
        audit(
            actor=SYSTEM_SWEEPER,
            command=AuditCommand.RESCHEDULE,
            account_id=job.account_id,
            job=job,
            from_status=JobStatus.STALLED,
            to_status=JobStatus.SCHEDULED,
            reason="Attempts remain after a lost run.",
            data={"run_at": job.run_at.isoformat()},
            now=now,
        )
    _rows.save(
        job, [*fields, "run_at", "last_error_code", "last_error_detail", "last_error_at"], now=now
    )


def jobs_dispatch_due(*, now: datetime | None = None, limit: int | None = None) -> list[str]:
    """Move due `scheduled` jobs of active accounts to the broker, highest priority first.
    SKIP LOCKED lets several dispatchers share the work without waiting on each other."""
    now = now or timezone.now()
    limit = limit or settings.JOBS_DISPATCH_BATCH
    due = (
        Job.objects.filter(
            status=JobStatus.SCHEDULED,
            run_at__lte=now,
            account__paused_at__isnull=True,
            # A job held by its concurrency limit waits for a release, not for its run_at.
            wait_reason="",
        )
        .select_for_update(skip_locked=True, no_key=True, of=("self",))
        .order_by("-priority", "run_at", "pk")
    )

    def dispatch(jobs: list[Job]) -> list[str]:
        if not jobs:
            return []
        ids = [job.pk for job in jobs]
        Job.objects.filter(pk__in=ids).update(
            status=JobStatus.QUEUED, enqueued_at=now, updated_at=now
        )
        AuditEvent.objects.bulk_create(
            [
                AuditEvent(
                    **audit_fields(
                        actor=SYSTEM_DISPATCHER,
                        command=AuditCommand.DISPATCH,
                        account_id=job.account_id,
                        job=job,
                        from_status=JobStatus.SCHEDULED,
                        to_status=JobStatus.QUEUED,
                        now=now,
                    )
                )
                for job in jobs
            ]
        )
        _rows.refresh_task_statuses(job.task_id for job in jobs)
        return ids

    def batch() -> list[str]:
        ids = dispatch(list(due.only("pk", "account_id", "task_id")[:limit]))
        enqueue_on_commit(ids)
        return ids

    return _batch_or_rows(
        "dispatch_due",
        batch=batch,
        select_ids=lambda: due.values_list("pk", flat=True)[:limit],
        one=lambda job_id: dispatch(
            [Job.objects.only("pk", "account_id", "task_id").get(pk=job_id)]
        ),
        finish=lambda done: enqueue_on_commit(list(done)),
        status=JobStatus.SCHEDULED,
        found_by=SYSTEM_DISPATCHER,
    )


def jobs_requeue_unclaimed(*, now: datetime | None = None, limit: int = 500) -> list[str]:
    """Enqueue again the queued jobs that no worker claimed within the bound, longest-waiting
    first: their message may have been lost (a broker crash, a cluster killed with messages it
    had taken, an enqueue that failed after commit). A duplicate is harmless: the claim of a
    job that is not queued any more is a no-op.

    The broker cannot tell a lost message from one still waiting behind a long backlog (its
    count is no help: clusters take messages ahead of their workers, and messages of jobs
    resolved or deleted while queued linger), so a job that only waited that long is sent
    again too: back in its place in the line (jobs.execution.broker.enqueue_again), not at its end,
    where the duplicate would only lengthen the backlog."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.JOBS_REQUEUE_AFTER_SECONDS)
    unclaimed = (
        Job.objects.filter(status=JobStatus.QUEUED)
        .filter(Q(enqueued_at__lt=cutoff) | Q(enqueued_at__isnull=True))
        .select_for_update(skip_locked=True, no_key=True)
        .order_by("enqueued_at", "pk")
    )

    def checked(job_id: str, since: datetime | None) -> datetime | None:
        if isinstance(since, Unreadable):
            raise UnreadableRow(job_id, {"enqueued_at": since})
        return since

    def batch() -> list[str]:
        waiting_since = {
            job_id: checked(job_id, since)
            for job_id, since in unclaimed.values_list("pk", "enqueued_at")[:limit]
        }
        Job.objects.filter(pk__in=list(waiting_since)).update(enqueued_at=now)
        enqueue_again_on_commit(waiting_since)
        return list(waiting_since)

    def one(job_id: str) -> datetime | None:
        since = Job.objects.filter(pk=job_id).values_list("enqueued_at", flat=True).get()
        checked(job_id, since)
        Job.objects.filter(pk=job_id).update(enqueued_at=now)
        return since

    ids = _batch_or_rows(
        "requeue_unclaimed",
        batch=batch,
        select_ids=lambda: unclaimed.values_list("pk", flat=True)[:limit],
        one=one,
        finish=enqueue_again_on_commit,
        status=JobStatus.QUEUED,
        found_by=SYSTEM_SWEEPER,
    )
    if ids:
        logger.warning("enqueued again %d unclaimed job(s): %s", len(ids), ", ".join(ids[:20]))
    return ids
