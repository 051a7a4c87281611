"""The operators' commands on one job (retry, trigger, resolve, update, delete, cancel) and
delete by search. Each is one transaction: lock the row, check the state table, write with
update_fields, audit, move the task's counters, and send broker messages after commit. Rows are
locked in a fixed order (jobs by id, then their tasks by id) so two commands never deadlock."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.actors import Actor
from core.audit import AuditCommand, audit, link_jobs
from core.errors import Conflict, ValidationFailed
from core.models import AuditEvent
from jobs import rules
from jobs.execution.broker import enqueue_on_commit
from jobs.filters import filter_jobs, has_filters, normalize_filter_params
from jobs.models import Job
from jobs.services import _rows, limits
from jobs.services._batch import apply_batch
from jobs.states import (
    Command,
    JobStatus,
)

logger = logging.getLogger(__name__)


def job_retry(*, job_id: str, actor: Actor, note: str = "") -> Job:
    """Queue a failed or stalled job now, with one more attempt even if its budget is spent."""
    note = rules.clean_note(note, required=False)
    with transaction.atomic():
        job = _rows.lock_job(job_id)
        _rows.check_allowed(job, Command.RETRY)
        _queue_now(job, command=Command.RETRY, actor=actor, note=note)
    return job


def job_trigger(*, job_id: str, actor: Actor, force: bool = False, note: str = "") -> Job:
    """Queue a job now, ahead of the line (see jobs.execution.broker.enqueue), ignoring its
    run_at and an account pause. Refused while the account runs as many jobs of the action as
    its concurrency limit allows (one, for an action without a limit), unless `force`: two
    syncs of one mailbox at once are a conflict (jobs.services.limits.check_trigger)."""
    note = rules.clean_note(note, required=False)
    with transaction.atomic():
        job = _rows.lock_job(job_id)
        _rows.check_allowed(job, Command.TRIGGER)
        if not force:
            # The one rule of concurrency limits (jobs.services.limits), asked before the claim.
            limits.check_trigger(job)
        _queue_now(
            job,
            command=Command.TRIGGER,
            actor=actor,
            note=note,
            data={"force": force},
            ahead=True,
            ignore_limit=force,
        )
    return job


def _queue_now(
    job: Job,
    *,
    command: Command,
    actor: Actor,
    note: str,
    data: dict[str, Any] | None = None,
    ahead: bool = False,
    ignore_limit: bool = False,
) -> None:
    """Retry and trigger alike: the locked job is queued now, with one more attempt even when
    its budget is spent, audited, and sent to the broker after commit (`ahead` of the line for
    a trigger)."""
    from_status, now = job.status, timezone.now()
    fields = _rows.requeue(job, now=now)
    # A forced trigger runs beside the account's running jobs of the action, over its limit.
    job.ignore_limit = ignore_limit
    _rows.grant_attempt_if_spent(job, fields)
    _rows.save(job, fields, now=now)
    audit(
        actor=actor,
        command=command.audit_command,
        account_id=job.account_id,
        job=job,
        from_status=from_status,
        to_status=job.status,
        reason=note,
        data=data,
    )
    _rows.task_job_moved(job.task_id, from_status, job.status, now=now)
    enqueue_on_commit([job.pk], ahead=ahead)


def job_resolve(*, job_id: str, actor: Actor, code: str, note: str) -> Job:
    """Close a job by hand (ignored, fixed elsewhere, cancelled) with a resolution code and note."""
    code = (code or "").strip()
    if not rules.RESOLUTION_CODE.match(code):
        raise ValidationFailed.for_field(
            "code", "must be a short code such as ignored, fixed or cancelled (a-z, 0-9, _ . -)."
        )
    note = rules.clean_note(note, required=True)
    with transaction.atomic():
        job = _rows.lock_job(job_id)
        _rows.check_allowed(job, Command.RESOLVE)
        from_status, now = job.status, timezone.now()
        job.status = JobStatus.RESOLVED
        job.resolution = {"code": code, "note": note, "by": actor.name, "at": now.isoformat()}
        job.finished_at = now
        job.wait_reason = ""  # no longer waiting for a concurrency slot, if it was
        _rows.save(job, ["status", "resolution", "finished_at", "wait_reason"], now=now)
        audit(
            actor=actor,
            command=AuditCommand.RESOLVE,
            account_id=job.account_id,
            job=job,
            from_status=from_status,
            to_status=job.status,
            reason=note,
            data={"code": code},
        )
        _rows.task_job_moved(job.task_id, from_status, job.status, now=now)
    return job


def job_cancel(*, job_id: str, actor: Actor, note: str = "") -> Job:
    """Ask the worker running a job to stop it. Only a running job can be cancelled (409 with
    the current status otherwise, so a cancel that arrives as the run ends loses cleanly).

    The request is recorded on the row (_rows.request_cancel) and audited; the job stays
    running. The worker learns of it with its next heartbeat (within JOBS_HEARTBEAT_SECONDS)
    and the handler stops at its next ownership check (ctx.ensure_owned), or at the latest at
    its timeout; the worker then records the attempt `cancelled` and resolves the job with
    the code `cancelled`, this note and this actor (jobs.services.job_stop, job_fail). A run
    that is lost meanwhile is resolved the same way by the sweeper, never retried.

    A run that succeeds before its worker saw the request stays succeeded: its work is done
    and its effects happened, so the job says so; the request stays on the row and in the
    audit log. A second cancel of a job whose cancel is pending changes nothing and records
    nothing: the first request stands."""
    note = rules.clean_note(note, required=False)
    with transaction.atomic():
        job = _rows.lock_job(job_id)
        _rows.check_allowed(job, Command.CANCEL)
        if job.cancel_requested_at is not None:
            return job
        now = timezone.now()
        _rows.request_cancel([job.pk], actor=actor, note=note, now=now)
        job.refresh_from_db(fields=[*_rows.CANCEL_REQUEST_FIELDS, "updated_at"])
        audit(
            actor=actor,
            command=AuditCommand.CANCEL,
            account_id=job.account_id,
            job=job,
            from_status=job.status,
            to_status=job.status,
            reason=note,
            data={"attempt": job.attempt_count, "worker": job.worker},
            now=now,
        )
    return job


def job_update(*, job_id: str, actor: Actor, changes: Mapping[str, Any]) -> Job:
    """Change the mutable fields of a job that is not running. A queued job moved into the
    future goes back to `scheduled`."""
    cleaned = rules.clean_changes(changes)
    with transaction.atomic():
        job = _rows.lock_job(job_id)
        _rows.check_allowed(job, Command.UPDATE)
        from_status, now = job.status, timezone.now()
        before = {name: getattr(job, name) for name in cleaned}
        for name, value in cleaned.items():
            setattr(job, name, value)
        fields = list(cleaned)
        if "run_at" in cleaned and job.wait_reason:
            # A new time for a job held by its concurrency limit: it waits for that time now
            # (the dispatcher), and its claim asks for a slot again.
            job.wait_reason = ""
            fields.append("wait_reason")
        if "run_at" in cleaned and job.status == JobStatus.QUEUED and job.run_at > now:
            fields += _rows.move_to(job, JobStatus.SCHEDULED, now=now)
        _rows.save(job, fields, now=now)
        audit(
            actor=actor,
            command=AuditCommand.UPDATE,
            account_id=job.account_id,
            job=job,
            from_status=from_status,
            to_status=job.status,
            data={
                "changes": {
                    name: {"from": rules.jsonable(before[name]), "to": rules.jsonable(value)}
                    for name, value in cleaned.items()
                }
            },
        )
        _rows.task_job_moved(job.task_id, from_status, job.status, now=now)
    return job


def job_delete(*, job_id: str, actor: Actor) -> None:
    """Delete a job that is not running. Its audit trail stays."""
    with transaction.atomic():
        job = _rows.lock_job(job_id, for_delete=True)
        _rows.check_allowed(job, Command.DELETE)
        audit(
            actor=actor,
            command=AuditCommand.DELETE,
            account_id=job.account_id,
            job=job,
            from_status=job.status,
            data={"action": job.action, "attempt_count": job.attempt_count},
        )
        _rows.delete_job_rows([job.pk])
        _rows.task_job_moved(job.task_id, job.status, None, now=timezone.now())


SEARCH_DELETE_BATCH = 10_000


def jobs_search_delete(
    *,
    account_id: str,
    filters: Mapping[str, Any],
    actor: Actor,
    dry_run: bool = False,
    expected_count: Any = None,
    batch_size: int = SEARCH_DELETE_BATCH,
) -> dict[str, Any]:
    """Delete every job of one account that `filters` match, except running ones.

    Deliberate: an empty filter is refused, and a delete (not a dry run) must say how many jobs
    it expects the filter to match, `expected_count`, which is the `matched` of a dry run of the
    same filter. A filter that is always true (`attempt_count_min: 0`) is then a choice made
    knowing its count, never an accident; a count that differs (jobs came or went since the dry
    run) is a 409 with the current count, and nothing is deleted.

    Set-based and batched: each batch locks and deletes up to `batch_size` rows in its own
    transaction, so a large clean-up never holds locks for long. One audit event records the
    filter, the count and the deleted ids; it is written before the first batch and its count
    kept exact with each, so it stays truthful even if the command is interrupted.
    """
    params = normalize_filter_params(filters)
    if not has_filters(params):
        raise ValidationFailed(
            "Refusing to delete without a filter: give at least one filter field.",
            code="empty_filter",
            fields={"filter": ["At least one filter field is required."]},
        )
    matched_qs = filter_jobs(Job.objects.filter(account_id=account_id), params).order_by()
    if not dry_run:
        if expected_count is None:
            raise ValidationFailed(
                "Give expected_count, the number of jobs a dry run of this filter matched: "
                "search-delete deletes only what was counted first.",
                code="expected_count_required",
                fields={"expected_count": ["Required unless dry_run: the dry run's `matched`."]},
            )
        expected_count = rules.int_in("expected_count", expected_count, 0, 2**63 - 1)
    matched = matched_qs.count()
    if dry_run:
        running = matched_qs.filter(status=JobStatus.RUNNING).count()
        return {"matched": matched, "deleted": 0, "skipped_running": running, "dry_run": True}
    if matched != expected_count:
        raise Conflict(
            f"The filter matches {matched:,} jobs now, not the {expected_count:,} expected: "
            "run the dry run again and confirm its count. Nothing was deleted.",
            code="count_changed",
            extra={"matched": matched},
        )

    filter_record = {name: params.getlist(name) for name in params}
    deleted_ids: list[str] = []
    deletable = matched_qs.exclude(status=JobStatus.RUNNING)
    event = audit(
        actor=actor,
        command=AuditCommand.SEARCH_DELETE,
        account_id=account_id,
        data={"filter": filter_record, "count": 0, "complete": False},
    )
    complete = False
    try:
        while not complete:
            with transaction.atomic():
                # The set-based batch of bulk operations: locks the rows in id order, checks
                # them against the state table again (a job may have started meanwhile),
                # deletes and refreshes their tasks; each deleted job is linked to the event.
                found = list(deletable.order_by("pk").values_list("pk", flat=True)[:batch_size])
                ids = apply_batch(Command.DELETE, found, actor=actor).acted if found else []
                if ids:
                    link_jobs(event, ids)
                    # The count is kept exact batch by batch; the id list is written once at the
                    # end (rewriting a growing list per batch would be quadratic).
                    AuditEvent.objects.filter(pk=event.pk).update(
                        data={
                            "filter": filter_record,
                            "count": len(deleted_ids) + len(ids),
                            "complete": False,
                        }
                    )
            deleted_ids += ids
            complete = len(found) < batch_size
    finally:
        AuditEvent.objects.filter(pk=event.pk).update(
            data={
                "filter": filter_record,
                "count": len(deleted_ids),
                "complete": complete,
                "job_ids": deleted_ids,
            }
        )
    running = matched_qs.filter(status=JobStatus.RUNNING).count()
    return {
        "matched": matched,
        "deleted": len(deleted_ids),
        "skipped_running": running,
        "dry_run": False,
    }


def job_command(
    command: Command | str, *, job_id: str, actor: Actor, inputs: Mapping[str, Any]
) -> Job | None:
    """Run one operator command on one job with the inputs its form or body gave: the one map
    from a command to its service, for the API, the admin's bulk actions and the job page's
    buttons. `inputs` holds what the command takes (note; code for resolve; force for trigger;
    changes for update). Returns the job (for cancel, still running: the request is recorded),
    or None for delete."""
    command = Command(command)
    note = inputs.get("note", "")
    if command is Command.RETRY:
        return job_retry(job_id=job_id, actor=actor, note=note)
    if command is Command.TRIGGER:
        return job_trigger(job_id=job_id, actor=actor, force=inputs.get("force", False), note=note)
    if command is Command.RESOLVE:
        return job_resolve(job_id=job_id, actor=actor, code=inputs["code"], note=note)
    if command is Command.UPDATE:
        return job_update(job_id=job_id, actor=actor, changes=inputs["changes"])
    if command is Command.CANCEL:
        return job_cancel(job_id=job_id, actor=actor, note=note)
    job_delete(job_id=job_id, actor=actor)
    return None
