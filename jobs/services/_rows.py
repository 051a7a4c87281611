"""Row helpers shared by the service modules of jobs.services, and by nothing else: locking a
job, checking the state table, the bookkeeping every status change writes, saving, the task's
counters and derived status, set-based deletes, and recording and carrying out a cancel. Each
runs inside its caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.db import router, transaction
from django.db.models import Count, Exists, OuterRef
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.actors import Actor
from core.audit import AuditCommand, audit
from core.errors import Conflict, InvalidTransition, NotFound
from jobs import sql
from jobs.models import AttemptOutcome, Job, JobAttempt, Task
from jobs.states import (
    CANCELLABLE_Q,
    CANCELLED_CODE,
    MAX_ATTEMPT_COUNT,
    TASK_COUNTER,
    TERMINAL,
    Command,
    JobStatus,
    derive_task_status,
    is_allowed,
)


def lock_job(job_id: str, *, for_delete: bool = False) -> Job:
    """The job, locked for this transaction, or NotFound."""
    # NO KEY UPDATE does not block inserts that reference the job (attempts); a delete needs
    # the full lock.
    queryset = Job.objects.select_for_update(no_key=not for_delete)
    try:
        return queryset.get(pk=job_id)
    except Job.DoesNotExist:
        raise NotFound(f"Job {job_id} not found.") from None


def check_allowed(job: Job, command: Command) -> None:
    """InvalidTransition (409 with the current status) unless the state table allows it."""
    if not is_allowed(command, job.status):
        raise InvalidTransition(job_id=job.pk, command=command.value, status=job.status)


def move_to(job: Job, status: JobStatus, *, now: datetime) -> list[str]:
    """Set `status` and the bookkeeping that goes with it, the same way for every transition
    that ends a run or puts a job back in line: no heartbeat any more; `enqueued_at` only while
    queued (the unclaimed-message sweeper reads it); `finished_at` only in a terminal status.
    Returns the fields to save."""
    job.status = status
    job.heartbeat_at = None
    job.enqueued_at = now if status == JobStatus.QUEUED else None
    job.finished_at = now if status in TERMINAL else None
    # Any move ends a wait for a concurrency slot (jobs.services.limits sets it after).
    job.wait_reason = ""
    return ["status", "heartbeat_at", "enqueued_at", "finished_at", "wait_reason"]


def requeue(job: Job, *, now: datetime) -> list[str]:
    """Queue the job now (retry, trigger): a fresh start with no worker and no resolution."""
    fields = move_to(job, JobStatus.QUEUED, now=now)
    job.run_at = now
    job.worker = ""
    job.resolution = None
    # Only a forced trigger lets the next claim go over a concurrency limit (it sets it after).
    job.ignore_limit = False
    fields += ["run_at", "worker", "resolution", "ignore_limit"]
    if job.cancel_requested_at is not None:
        # The cancel was for the run that ended; the next run must not stop at once.
        job.cancel_requested_at, job.cancel_requested_by, job.cancel_note = None, "", ""
        fields += CANCEL_REQUEST_FIELDS
    return fields


def grant_attempt_if_spent(job: Job, fields: list[str]) -> None:
    """Retry and trigger run the job once more even when its budget is spent; a job whose
    attempts already reach the column's largest value (written by SQL) cannot run again."""
    if job.attempt_count >= MAX_ATTEMPT_COUNT:
        raise Conflict(
            f"Job {job.pk} has counted {job.attempt_count:,} attempts, the most a job can: it "
            "cannot run again. Resolve or delete it.",
            code="attempts_exhausted",
            extra={"current_status": job.status},
        )
    if job.attempt_count >= job.max_attempts:
        job.max_attempts = job.attempt_count + 1
        fields.append("max_attempts")


def save(job: Job, fields: list[str], *, now: datetime) -> None:
    job.updated_at = now
    job.save(update_fields=sorted({*fields, "updated_at"}))


def task_job_moved(
    task_id: str | None,
    source: JobStatus | str | None,
    target: JobStatus | str | None,
    *,
    now: datetime,
) -> None:
    """One job of task `task_id` moved from `source` to `target` (None: it was inserted, or
    deleted): move the task's two counters and derive its status from them, in one UPDATE of
    the task's row (jobs.sql.task_job_moved). That statement waits for any other transition of
    a job of the task until it commits, and then reads the counts it committed: the last
    transition to commit derives from all of them. A status no JobStatus names (written by
    SQL) was never counted: the task is counted again from its jobs."""
    if not task_id or source == target:
        return
    statuses = [None if s is None else JobStatus(s) for s in (source, target) if s in _KNOWN]
    if len(statuses) < 2:
        refresh_task_statuses([task_id])
        return
    with transaction.get_connection(router.db_for_write(Task)).cursor() as cursor:
        cursor.execute(sql.task_job_moved(*statuses), {"task_id": task_id, "now": now})


_KNOWN = {None, *JobStatus.values}


def refresh_task_statuses(task_ids: Iterable[str | None]) -> None:
    """Count the jobs of each task again, by status, and derive its status: after a change of
    many jobs at once (dispatch, sweeps, deletes), where one counter move per job would cost
    more than a count. Under the task's row lock, so that concurrent transitions of its jobs
    (task_job_moved, the worker's claim and success) serialize with it: a move that commits
    after the count applies on top of it, one that committed before is in it.

    The count reads the task's entries of the index job_task_status, one per job."""
    ids = sorted({task_id for task_id in task_ids if task_id})
    if not ids:
        return
    current = {
        pk: (status, counts)
        for pk, status, *counts in Task.objects.select_for_update(no_key=True)
        .filter(pk__in=ids)
        .order_by("pk")
        .values_list("pk", "status", *_COUNTERS)
    }
    # A new statement after the lock: in READ COMMITTED it sees what the previous holder of
    # the lock committed.
    found: dict[str, dict[str, int]] = {pk: {} for pk in current}
    rows = (
        Job.objects.filter(task_id__in=list(current), status__in=JobStatus.values)
        .values_list("task_id", "status")
        .annotate(n=Count("*"))
        .order_by()
    )
    for task_id, status, n in rows:
        found[task_id][status] = n
    now = timezone.now()
    for pk, (old_status, old_counts) in current.items():
        counts = [found[pk].get(status, 0) for status in JobStatus]
        status = derive_task_status(found[pk])
        if counts != old_counts or status != old_status:
            changes: dict[str, Any] = dict(zip(_COUNTERS, counts, strict=True))
            if status != old_status:
                changes |= {"status": status, "updated_at": now}
            Task.objects.filter(pk=pk).update(**changes)


_COUNTERS = [TASK_COUNTER[status] for status in JobStatus]


def delete_job_rows(ids: list[str]) -> None:
    """Delete jobs and their attempts, and unlink their provider events, with plain statements
    (jobs.sql.delete_statements): Django's collector would load every row (and its related
    rows) into memory first."""
    db = transaction.get_connection(router.db_for_write(Job))
    param = ",".join(ids) if db.vendor == "postgresql" else json.dumps(ids)
    with db.cursor() as cursor:
        for statement in sql.delete_statements(db.vendor):
            cursor.execute(statement, [param])


def forget_pruned_jobs(task_ids: Iterable[str | None]) -> None:
    """After the retention policy removed jobs of these tasks: count each task's jobs again
    (its counters and status speak of the jobs that exist), and remove the tasks left with none
    (finished work past its retention, like their jobs; a schedule's `last_task` is unlinked)."""
    ids = sorted({task_id for task_id in task_ids if task_id})
    if not ids:
        return
    refresh_task_statuses(ids)
    Task.objects.filter(pk__in=ids).exclude(
        Exists(Job.objects.filter(task_id=OuterRef("pk")))
    ).delete()


def close_attempt(
    job: Job,
    attempt: int,
    *,
    now: datetime,
    outcome: str,
    code: str = "",
    detail: str = "",
    tb: str = "",
) -> None:
    started = job.started_at or now
    JobAttempt.objects.filter(job=job, number=attempt).update(
        finished_at=now,
        duration_ms=max(0, int((now - started).total_seconds() * 1000)),
        outcome=outcome,
        error_code=code,
        error_detail=detail,
        traceback=tb,
    )


def as_datetime(value: Any) -> datetime:
    # A raw cursor on SQLite returns timestamps as text.
    if isinstance(value, str):
        value = parse_datetime(value)
    return timezone.make_aware(value, UTC) if timezone.is_naive(value) else value


# --- cancel ---------------------------------------------------------------------------------

CANCEL_REQUEST_FIELDS = ["cancel_requested_at", "cancel_requested_by", "cancel_note"]


def cancel_request_values(*, actor: Actor, note: str, now: datetime) -> dict[str, Any]:
    """The columns a cancel request writes, the same for one job and for a batch."""
    return {
        "cancel_requested_at": now,
        "cancel_requested_by": actor.name,
        "cancel_note": note,
        "updated_at": now,
    }


def request_cancel(job_ids: Iterable[str], *, actor: Actor, note: str, now: datetime) -> list[str]:
    """Record a cancel request on each job of `job_ids` that is running without one: one
    locking read (in id order, as every command locks) and one UPDATE, for one job
    (job_cancel) or a whole batch (a bulk operation). Returns the ids it recorded it on, in
    order; the caller audits them (AuditCommand.CANCEL). Nothing else is sent anywhere: the
    worker running each job reads the request with its next heartbeat (jobs.services.
    job_heartbeat) and the sweeper with a lost run (jobs_sweep_lost)."""
    ids = list(
        Job.objects.filter(CANCELLABLE_Q, pk__in=list(job_ids))
        .select_for_update(no_key=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if ids:
        Job.objects.filter(pk__in=ids).update(
            **cancel_request_values(actor=actor, note=note, now=now)
        )
    return ids


def close_cancelled(
    job: Job,
    attempt: int,
    *,
    now: datetime,
    actor: Actor,
    command: AuditCommand,
    stopped: str,
    code: str = "",
    detail: str = "",
    tb: str = "",
) -> None:
    """End the locked run `attempt` of a job with a cancel requested: the attempt `cancelled`
    (with the error that ended it, if any: `code`, `detail`, `tb`), the job `resolved` with the
    code `cancelled` and the requester's note and name, audited as `command` by `actor` (the
    worker's STOP, the sweeper's STOP_LOST). `stopped` says how the run ended, for the audit
    event: ownership_check, timeout, error, lost. The job's last error is left as it was: a
    cancel is no failure of the job."""
    close_attempt(
        job, attempt, now=now, outcome=AttemptOutcome.CANCELLED, code=code, detail=detail, tb=tb
    )
    fields = move_to(job, JobStatus.RESOLVED, now=now)
    job.resolution = {
        "code": CANCELLED_CODE,
        "note": job.cancel_note,
        "by": job.cancel_requested_by,
        "at": now.isoformat(),
    }
    save(job, [*fields, "resolution"], now=now)
    requested_at = job.cancel_requested_at
    audit(
        actor=actor,
        command=command,
        account_id=job.account_id,
        job=job,
        from_status=JobStatus.RUNNING,
        to_status=JobStatus.RESOLVED,
        reason=job.cancel_note,
        data={
            "attempt": attempt,
            "stopped": stopped,
            "error_code": code or None,
            "requested_by": job.cancel_requested_by,
            "requested_at": requested_at.isoformat() if requested_at else None,
        },
        now=now,
    )
