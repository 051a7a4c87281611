"""Row helpers shared by the service modules of jobs.services, and by nothing else: locking a
job, checking the state table, the bookkeeping every status change writes, saving, the task's
derived status, and set-based deletes. Each runs inside its caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.db import router, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.errors import Conflict, InvalidTransition, NotFound
from jobs import sql
from jobs.models import Job, JobAttempt, Task
from jobs.states import (
    MAX_ATTEMPT_COUNT,
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
    return [*fields, "run_at", "worker", "resolution", "ignore_limit"]


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


def refresh_task_statuses(task_ids: Iterable[str | None]) -> None:
    """Recompute the derived status of each task from its jobs, under the task's row lock so
    concurrent transitions of two jobs of one task serialize and the last one sees both.

    The status depends only on which job statuses are present, so each task costs one index
    probe per status (`job_task_status`), however many jobs it has."""
    ids = sorted({task_id for task_id in task_ids if task_id})
    if not ids:
        return
    current = dict(
        Task.objects.select_for_update(no_key=True)
        .filter(pk__in=ids)
        .order_by("pk")
        .values_list("pk", "status")
    )
    # A new statement after the lock: in READ COMMITTED it sees what the previous holder of
    # the lock committed.
    probes = {
        status.value: Exists(Job.objects.filter(task_id=OuterRef("pk"), status=status))
        for status in JobStatus
    }
    rows = Task.objects.filter(pk__in=list(current)).annotate(**probes).values("pk", *probes)
    now = timezone.now()
    for row in rows:
        status = derive_task_status({name: 1 for name in probes if row[name]})
        if status != current[row["pk"]]:
            Task.objects.filter(pk=row["pk"]).update(status=status, updated_at=now)


def delete_job_rows(ids: list[str]) -> None:
    """Delete jobs and their attempts, and unlink their provider events, with plain statements
    (jobs.sql.delete_statements): Django's collector would load every row (and its related
    rows) into memory first."""
    db = transaction.get_connection(router.db_for_write(Job))
    param = ",".join(ids) if db.vendor == "postgresql" else json.dumps(ids)
    with db.cursor() as cursor:
        for statement in sql.delete_statements(db.vendor):
            cursor.execute(statement, [param])


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
