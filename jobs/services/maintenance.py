"""What the scheduler process does on its own: declare lost the runs whose worker stopped
heart-beating, move due scheduled jobs to the broker, and send again the messages of queued jobs
no worker claimed. Each takes its rows with SKIP LOCKED so several schedulers share the work."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.audit import AuditCommand, audit, audit_fields
from core.models import AuditEvent
from jobs.execution.actions.registry import (
    policy_for,
)
from jobs.execution.broker import enqueue_again_on_commit, enqueue_on_commit
from jobs.models import AttemptOutcome, Job
from jobs.services import _rows
from jobs.states import SYSTEM_DISPATCHER, SYSTEM_SWEEPER, JobStatus, stale_heartbeat

logger = logging.getLogger(__name__)


def jobs_sweep_lost(*, now: datetime | None = None, limit: int = 500) -> list[str]:
    """Declare lost the running jobs whose worker stopped heart-beating (killed, lost, cut off)
    or that outran their timeout plus the grace: `stalled` with error `worker_lost`, then
    rescheduled at once when attempts remain."""
    grace = timedelta(seconds=settings.JOBS_STALL_GRACE_SECONDS)
    candidates = Job.objects.filter(stale_heartbeat(now))
    now = now or timezone.now()
    swept: list[str] = []
    with transaction.atomic():
        jobs = list(
            candidates.select_for_update(skip_locked=True, no_key=True).order_by("pk")[:limit]
        )
        for job in jobs:
            _declare_lost(job, now=now)
            swept.append(job.pk)
        _rows.refresh_task_statuses(job.task_id for job in jobs)
    # A worker that is alive but stuck past its action's timeout (the hard timeout did not fire).
    overdue = [
        job
        # Oldest first, so the limit cannot hide an overdue run behind younger ones.
        for job in Job.objects.filter(status=JobStatus.RUNNING, started_at__lt=now - grace)
        .only("pk", "action", "started_at", "attempt_count")
        .order_by("started_at")[:limit]
        if job.started_at is not None  # it is: the filter excludes NULL
        and job.started_at + timedelta(seconds=policy_for(job.action).effective_timeout) + grace
        < now
    ]
    if overdue:
        with transaction.atomic():
            # The same runs that were read: a job that finished and was claimed again since
            # is a new run, not an overdue one.
            same_run = Q()
            for job in overdue:
                same_run |= Q(pk=job.pk, attempt_count=job.attempt_count)
            jobs = list(
                Job.objects.select_for_update(skip_locked=True, no_key=True)
                .filter(same_run, status=JobStatus.RUNNING)
                .order_by("pk")
            )
            for job in jobs:
                _declare_lost(job, now=now, detail="The run outlived its timeout and its grace.")
                swept.append(job.pk)
            _rows.refresh_task_statuses(job.task_id for job in jobs)
    if swept:
        logger.warning("declared %d lost run(s): %s", len(swept), ", ".join(swept[:20]))
    return swept


def _declare_lost(job: Job, *, now: datetime, detail: str = "") -> None:
    detail = detail or (
        f"Worker {job.worker or '?'} stopped heart-beating "
        f"(last heartbeat {job.heartbeat_at.isoformat() if job.heartbeat_at else 'never'})."
    )
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
    with transaction.atomic():
        jobs = list(
            Job.objects.filter(
                status=JobStatus.SCHEDULED, run_at__lte=now, account__paused_at__isnull=True
            )
            .select_for_update(skip_locked=True, no_key=True, of=("self",))
            .order_by("-priority", "run_at", "pk")
            .only("pk", "account_id", "task_id")[:limit]
        )
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
        enqueue_on_commit(ids)
    return ids


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
    with transaction.atomic():
        waiting_since = dict(
            Job.objects.filter(status=JobStatus.QUEUED)
            .filter(Q(enqueued_at__lt=cutoff) | Q(enqueued_at__isnull=True))
            .select_for_update(skip_locked=True, no_key=True)
            .order_by("enqueued_at", "pk")
            .values_list("pk", "enqueued_at")[:limit]
        )
        if not waiting_since:
            return []
        ids = list(waiting_since)
        Job.objects.filter(pk__in=ids).update(enqueued_at=now)
        enqueue_again_on_commit(waiting_since)
    logger.warning("enqueued again %d unclaimed job(s): %s", len(ids), ", ".join(ids[:20]))
    return ids
