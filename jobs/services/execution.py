"""What a worker does to the job it runs: claim it (opening an attempt), heart-beat (which also
tells it of a cancel an operator asked for), and close the run as succeeded, failed or stopped
(cancelled). Every outcome is checked against the run the worker owns, so a run the sweeper
declared lost cannot overwrite the newer state.

A job whose row cannot be claimed, loaded or closed for a reason in its data (an attempt count
at the integer maximum, a payload that is no object or cannot be parsed, a timestamp Python
cannot hold, a result the database refuses) is quarantined (jobs.services.quarantine) and the
worker is told so with JobQuarantined: its message is consumed, the job is failed with
internal_error and no longer queued, so it is never sent again and cannot crash-loop a
worker."""

from __future__ import annotations

import enum
import json
import logging
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, NoReturn

from django.db import connection, transaction
from django.db.models.functions import Now
from django.utils import timezone

from core.audit import AuditCommand, audit
from core.db import SQLValue
from jobs import sql
from jobs.execution.actions.registry import (
    policy_for,
)
from jobs.models import AttemptOutcome, Job, JobAttempt
from jobs.services import _rows, limits
from jobs.services.quarantine import (
    DATA_ERRORS,
    JobQuarantined,
    UnreadableRow,
    check_readable,
    job_quarantine,
)
from jobs.states import SYSTEM_WORKER, JobStatus

logger = logging.getLogger(__name__)


_PAYLOAD_FIELD = Job._meta.get_field("payload")
_RESULT_FIELD = Job._meta.get_field("result")


@dataclass(frozen=True)
class ClaimedRun:
    """What a worker needs to run a job it claimed: attempt `number` is now open."""

    job_id: str
    account_id: str
    task_id: str | None
    action: str
    payload: dict[str, Any]
    number: int
    # A concurrency limit applied to the claim (jobs.services.limits): the run's end frees a
    # slot, and the worker releases a job waiting for it.
    limited: bool = False


def job_claim(*, job_id: str, worker: str, claimed_at: datetime | None = None) -> ClaimedRun | None:
    """Claim a queued job for `worker` and open its attempt. Returns None when the job is not
    queued any more (a duplicate or late message, a deleted or resolved job): a no-op.

    A worker retrying its claim after a broken connection passes the same `claimed_at`: if the
    first try did commit (only the reply was lost), that claim is its own and is returned,
    instead of leaving a running job nobody runs for the sweeper (which would cost an attempt).
    """
    params: dict[str, SQLValue] = {
        "job_id": job_id,
        "worker": worker,
        "now": claimed_at or timezone.now(),
    }
    try:
        # A savepoint only inside a caller's transaction (a test): a worker claims in autocommit.
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            run = _claim(job_id, params)
    except DATA_ERRORS as exc:
        # The claim failed on this row, so nothing was claimed: the job is still queued.
        _quarantine(job_id, exc, step="claim", status=JobStatus.QUEUED)
    if run is not None and not isinstance(run.payload, dict):
        # Claimed, but there is nothing a handler could be given.
        _quarantine(
            job_id,
            UnreadableRow(job_id, {"payload": run.payload}),
            step="claim",
            status=JobStatus.RUNNING,
            attempt=run.number,
        )
    return run


def _claim(job_id: str, params: dict[str, Any]) -> ClaimedRun | None:
    # The hot claim takes the job only when no concurrency limit applies to it.
    params = {**params, "limited": limits.policy_limited_param(connection.vendor)}
    if connection.vendor == "postgresql":
        row = sql.CLAIM_POSTGRESQL.first_row(params)
        run = None if row is None else _claimed_run(job_id, row)
    else:
        run = _claim_in_transaction(params, sql.CLAIM_UPDATE)
    if run is None:
        with connection.cursor() as cursor:
            cursor.execute(sql.OWN_CLAIM, params)
            row = cursor.fetchone()
        run = None if row is None else _claimed_run(job_id, row)
    if run is None:
        # Still queued? Then a limit applies: count the slots first.
        run = _claim_limited(job_id, params)
    return run


def _claim_limited(job_id: str, params: dict[str, Any]) -> ClaimedRun | None:
    """The claim of a queued job a concurrency limit applies to: in one transaction, under the
    lock of its account and action, claimed if a slot is free (or a forced trigger let it go
    over), else held (jobs.services.limits.take_slot) without spending an attempt."""
    with transaction.atomic():
        job = (
            Job.objects.select_for_update(no_key=True)
            .filter(pk=job_id, status=JobStatus.QUEUED)
            .only("pk", "account_id", "task_id", "action", "status", "ignore_limit")
            .first()
        )
        if job is None:
            return None
        if not job.ignore_limit and not limits.take_slot(job, now=params["now"]):
            return None
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(sql.CLAIM_LIMITED_SQL_POSTGRESQL, params)
                row = cursor.fetchone()
            run = None if row is None else _claimed_run(job_id, row)
        else:
            run = _claim_in_transaction(params, sql.CLAIM_LIMITED_UPDATE)
    return None if run is None else replace(run, limited=True)


def _quarantine(job_id: str, error: Exception, *, step: str, **run: Any) -> NoReturn:
    """Quarantine the job and raise JobQuarantined; re-raise `error` when the job has moved on
    (it is no longer in the status, or the run, given)."""
    if job_quarantine(job_id=job_id, found_by=SYSTEM_WORKER, step=step, error=error, **run):
        raise JobQuarantined(job_id) from error
    raise error


def _claim_in_transaction(params: dict[str, Any], statement: str) -> ClaimedRun | None:
    """The claim as one transaction of several statements (SQLite)."""
    job_id, worker, now = params["job_id"], params["worker"], params["now"]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            row = cursor.fetchone()
        if row is None:
            return None
        run = _claimed_run(job_id, row)
        JobAttempt.objects.create(job_id=job_id, number=run.number, worker=worker, started_at=now)
        audit(
            actor=SYSTEM_WORKER,
            command=AuditCommand.CLAIM,
            account_id=run.account_id,
            job_id=job_id,
            task_id=run.task_id,
            from_status=JobStatus.QUEUED,
            to_status=JobStatus.RUNNING,
            data={"attempt": run.number, "worker": worker},
            now=now,
        )
        _rows.task_job_moved(run.task_id, JobStatus.QUEUED, JobStatus.RUNNING, now=now)
    return run


def _claimed_run(job_id: str, row: tuple[Any, ...]) -> ClaimedRun:
    account_id, task_id, action, payload, number = row[:5]
    # No expression: from_db_value looks at it only for a key transform.
    payload = _PAYLOAD_FIELD.from_db_value(payload, None, connection)
    return ClaimedRun(job_id, account_id, task_id, action, payload, int(number))


class Beat(enum.Enum):
    """What a heartbeat found of the run it beat for."""

    OWNED = "owned"  # still this worker's
    CANCEL_REQUESTED = "cancel_requested"  # still this worker's, and an operator cancelled it
    LOST = "lost"  # no longer this worker's: declared lost and rescheduled, or deleted


def job_heartbeat(*, job_id: str, attempt: int) -> Beat:
    """Record that the run is alive and say whether it is still this attempt's, and whether a
    cancel was requested (jobs.services.job_cancel). Stamped with the database's clock, which
    the sweeper compares against: workers on other hosts may have clocks that disagree by
    more than the grace.

    One UPDATE per beat, as before cancels existed: the common beat (no cancel) matches the
    first statement. Only when it matches nothing does a second one tell a cancelled run
    (which must keep beating until it stops, or the sweeper would take it for lost) from a
    lost one."""
    run = Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, attempt_count=attempt)
    if run.filter(cancel_requested_at__isnull=True).update(heartbeat_at=Now()):
        return Beat.OWNED
    if run.update(heartbeat_at=Now()):
        return Beat.CANCEL_REQUESTED
    return Beat.LOST


def _lock_own_run(job_id: str, attempt: int) -> Job | None:
    job = Job.objects.select_for_update(no_key=True).filter(pk=job_id).first()
    if job is None or job.status != JobStatus.RUNNING or job.attempt_count != attempt:
        # The sweeper declared this run lost (or an operator deleted the job) while it ran; the
        # outcome of a run we no longer own must not overwrite the newer state.
        return None
    return job


def job_succeed(*, job_id: str, attempt: int, result: dict[str, Any] | None) -> bool:
    """Close a run as succeeded. False when the run is not ours any more: the sweeper declared
    it lost (or an operator deleted the job) while it ran, and the outcome of a run we no
    longer own must not overwrite the newer state. A success the database refuses to record
    (a result it cannot store) quarantines the job: JobQuarantined."""
    try:
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            return _succeed(job_id=job_id, attempt=attempt, result=result)
    except DATA_ERRORS as exc:
        _quarantine(job_id, exc, step="succeed", status=JobStatus.RUNNING, attempt=attempt)


def _succeed(*, job_id: str, attempt: int, result: dict[str, Any] | None) -> bool:
    now = timezone.now()
    # JSON text (or NULL), which the statement's jsonb column or parameter takes as it is.
    stored_result = None if result is None else json.dumps(result, cls=_RESULT_FIELD.encoder)
    params: dict[str, SQLValue] = {
        "job_id": job_id,
        "attempt": attempt,
        "result": stored_result,
        "now": now,
    }
    if connection.vendor == "postgresql":
        # One statement that commits on its own: the job, its attempt, its audit event and its
        # task's counters (jobs.sql).
        return sql.SUCCEED_POSTGRESQL.first_row(params) is not None
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql.SUCCEED_UPDATE, params)
            row = cursor.fetchone()
        if row is None:
            return False
        account_id, task_id, started_at = row[:3]
        duration = now - _rows.as_datetime(started_at)
        JobAttempt.objects.filter(job_id=job_id, number=attempt).update(
            finished_at=now,
            duration_ms=max(0, int(duration.total_seconds() * 1000)),
            outcome=AttemptOutcome.SUCCEEDED,
        )
        audit(
            actor=SYSTEM_WORKER,
            command=AuditCommand.SUCCEED,
            account_id=account_id,
            job_id=job_id,
            task_id=task_id,
            from_status=JobStatus.RUNNING,
            to_status=JobStatus.SUCCEEDED,
            data={"attempt": attempt},
            now=now,
        )
        _rows.task_job_moved(task_id, JobStatus.RUNNING, JobStatus.SUCCEEDED, now=now)
    return True


def job_fail(
    *,
    job_id: str,
    attempt: int,
    code: str,
    detail: str,
    retryable: bool,
    traceback: str = "",
    timed_out: bool = False,
) -> Job | None:
    """Close a run as failed: scheduled again after a backoff when the error is retryable and
    attempts remain, failed otherwise. None when the run is not ours any more. A row that
    cannot be read or written quarantines the job: JobQuarantined."""
    try:
        return _fail(
            job_id=job_id,
            attempt=attempt,
            code=code,
            detail=detail,
            retryable=retryable,
            traceback=traceback,
            timed_out=timed_out,
        )
    except DATA_ERRORS as exc:
        _quarantine(
            job_id,
            exc,
            step="fail",
            context=f"The run had failed with {code}: {detail[:300]}",
            status=JobStatus.RUNNING,
            attempt=attempt,
        )


def _fail(
    *,
    job_id: str,
    attempt: int,
    code: str,
    detail: str,
    retryable: bool,
    traceback: str,
    timed_out: bool,
) -> Job | None:
    with transaction.atomic():
        job = _lock_own_run(job_id, attempt)
        if job is None:
            return None
        check_readable(job)
        now = timezone.now()
        if job.cancel_requested_at is not None:
            # An operator cancelled the run: however it ended, the job is resolved as
            # cancelled, never retried; the attempt keeps the error that ended it.
            _rows.close_cancelled(
                job,
                attempt,
                now=now,
                actor=SYSTEM_WORKER,
                command=AuditCommand.STOP,
                stopped="timeout" if timed_out else "error",
                code=code,
                detail=detail,
                tb=traceback,
            )
            _rows.refresh_task_statuses([job.task_id])
            return job
        policy = policy_for(job.action)
        retry = policy.is_retryable(code, retryable) and job.attempt_count < job.max_attempts
        fields = _rows.move_to(job, JobStatus.SCHEDULED if retry else JobStatus.FAILED, now=now)
        if retry:
            job.run_at = now + timedelta(seconds=policy.backoff_seconds(attempt))
        job.last_error_code = code
        job.last_error_detail = detail
        job.last_error_at = now
        _rows.save(
            job,
            [*fields, "run_at", "last_error_code", "last_error_detail", "last_error_at"],
            now=now,
        )
        if timed_out:
            outcome = AttemptOutcome.TIMEOUT
        else:
            outcome = AttemptOutcome.RETRY_SCHEDULED if retry else AttemptOutcome.FAILED
        _rows.close_attempt(
            job, attempt, now=now, outcome=outcome, code=code, detail=detail, tb=traceback
        )
        audit(
            actor=SYSTEM_WORKER,
            command=AuditCommand.FAIL,
            account_id=job.account_id,
            job=job,
            from_status=JobStatus.RUNNING,
            to_status=job.status,
            reason=detail[:500],
            data={
                "attempt": attempt,
                "error_code": code,
                "retry_at": job.run_at.isoformat() if retry else None,
            },
            now=now,
        )
        _rows.task_job_moved(job.task_id, JobStatus.RUNNING, job.status, now=now)
    return job


def job_stop(*, job_id: str, attempt: int) -> Job | None:
    """Close a run whose handler stopped at an ownership check because a cancel was requested
    (RunCancelled): the attempt `cancelled`, the job resolved with the code `cancelled` and the
    requester's note. None when the run is not ours any more (as job_fail). A row that cannot
    be read or written quarantines the job: JobQuarantined."""
    try:
        with transaction.atomic():
            job = _lock_own_run(job_id, attempt)
            if job is None:
                return None
            check_readable(job)
            _rows.close_cancelled(
                job,
                attempt,
                now=timezone.now(),
                actor=SYSTEM_WORKER,
                command=AuditCommand.STOP,
                stopped="ownership_check",
                code="cancelled",
                detail=f"Stopped at an ownership check: cancelled by {job.cancel_requested_by}.",
            )
            _rows.refresh_task_statuses([job.task_id])
        return job
    except DATA_ERRORS as exc:
        _quarantine(job_id, exc, step="stop", status=JobStatus.RUNNING, attempt=attempt)
