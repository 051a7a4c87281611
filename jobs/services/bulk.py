"""Bulk operations: an operator's command over everything a filter matched, with no cap.

Creation (bulk_operation_create) checks the command's inputs, fixes the set in one statement
(the matched ids, in id order, cut into chunks of a batch each: jobs.sql.bulk_snapshot_statement)
and answers at once; jobs that come to match later are never swept in. The workers run the
batches (bulk_operation_run, from jobs.execution.worker.run_bulk_operation), in order, each in
one transaction that:

- locks the operation's row (a second runner of the same operation waits, then finds the batch
  done) and the batch's jobs, in id order, in one statement (apply_batch);
- asks the state table (jobs.states.ALLOWED_FROM) which of them the command may act on, and
  counts the others as skipped by reason: `running`, `status_changed:<status>`, `gone`,
  `sibling_running` (trigger), `attempts_exhausted`;
- changes the rest in one UPDATE (or the set-based delete), refreshes their tasks, writes one
  audit event for the batch with its ids and links each job to it (core.audit.link_jobs);
- adds the batch's counts to the operation and moves `next_batch` on;
- sends the broker messages of queued jobs in bulk after commit.

So a batch is done exactly once: a worker killed in one leaves nothing of it behind, and the
scheduler sends the operation again once its lease expires (bulk_operations_dispatch). A cancel
(bulk_operation_cancel) waits for the batch in progress and stops the ones after it.

Pacing (retry and trigger): a rate in jobs per second, or a window to spread the set over
(turned into a rate when the operation is created). Batches then hold about a second's worth of
jobs each and each one is due `size / rate` seconds after the one before; between two batches
no worker waits: the scheduler sends the operation again when the next one is due. The default
for retry and trigger is JOBS_BULK_DEFAULT_RATE jobs per second (README); `pace: null` asks for
no pacing.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import router, transaction
from django.db.models import F, Q
from django.utils import timezone

from core.actors import Actor, ActorType
from core.audit import AuditCommand, audit, audit_fields
from core.db import insert_plain_rows
from core.errors import Conflict, DomainError, NotFound, ValidationFailed
from core.models import AuditEvent, AuditEventJob
from jobs import rules, sql
from jobs.execution.broker import enqueue_bulk_operations_on_commit
from jobs.filters import filter_jobs, has_filters, normalize_filter_params
from jobs.models import BulkOperation, BulkOperationChunk, Job
from jobs.services._batch import PACED_COMMANDS, BatchOutcome, apply_batch, skip_reason
from jobs.services.quarantine import CONNECTION_ERRORS
from jobs.states import (
    BULK_ACTIVE,
    BULK_COMMANDS,
    BulkStatus,
    Command,
    stale_heartbeat,
)

logger = logging.getLogger(__name__)

# A paced batch holds about this many seconds of the rate.
PACE_STEP_SECONDS = 1.0
# The key under which an operation's filter records the admin's "stalled now" (the queue's own
# query-string name for it, jobs.admin.filters.STALLED_PARAM; no FilterSet field has it).
STALLED_NOW_KEY = "stalled"

# --- creating an operation ---------------------------------------------------------------------


def _clean_inputs(
    command: Command, note: str, inputs: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The note and the command's own inputs, checked as the per-job services check them."""
    if command is Command.RESOLVE:
        code = inputs.get("code")
        code = code.strip() if isinstance(code, str) else ""
        if not rules.RESOLUTION_CODE.match(code):
            raise ValidationFailed.for_field(
                "code",
                "must be a short code such as ignored, fixed or cancelled (a-z, 0-9, _ . -).",
            )
        return rules.clean_note(note, required=True), {"code": code}
    cleaned = rules.clean_note(note, required=False)
    if command is Command.TRIGGER:
        return cleaned, {"force": bool(inputs.get("force", False))}
    return cleaned, {}


def _rate(
    command: Command, pace: Mapping[str, Any] | None, matched: int, default: bool
) -> float | None:
    """Jobs per second, or None for no pacing. `default`: the caller gave no pace."""
    if command not in PACED_COMMANDS:
        if pace:
            raise ValidationFailed.for_field("pace", "applies to retry and trigger only.")
        return None
    if default:
        rate = float(settings.JOBS_BULK_DEFAULT_RATE)
        return rate if rate > 0 else None
    if not pace:
        return None
    if "rate" in pace:
        return float(pace["rate"])
    window = float(pace["window_seconds"])
    return max(matched, 1) / window


def bulk_operation_create(
    *,
    command: Command | str,
    filters: Mapping[str, Any],
    account_id: str | None,
    actor: Actor,
    note: str = "",
    inputs: Mapping[str, Any] | None = None,
    pace: Mapping[str, Any] | None = None,
    default_pace: bool = False,
    dry_run: bool = False,
    stalled_now: bool = False,
) -> BulkOperation | int:
    """Create an operation running `command` on every job `filters` match in `account_id` (None:
    across accounts; the caller checked it is an operator), or, for a `dry_run`, count them.
    `pace`: {"rate": jobs/s} or {"window_seconds": s}; `default_pace` when none was given.
    `stalled_now`: the admin queue's own filter besides the FilterSet's (running jobs without a
    heartbeat for the grace, jobs.states.stale_heartbeat): judged once, when the set is fixed,
    and recorded in the operation's filter as `STALLED_NOW_KEY`."""
    try:
        command = Command(command)
    except ValueError:
        raise ValidationFailed.for_field("command", f"{command!r} is not a command.") from None
    if command not in BULK_COMMANDS:
        raise ValidationFailed.for_field("command", f"{command.value} is not a bulk command.")
    note, cleaned = _clean_inputs(command, note, inputs or {})
    params = normalize_filter_params(filters)
    if command is Command.DELETE and not has_filters(params):
        raise ValidationFailed(
            "Refusing to delete without a filter: give at least one filter field.",
            code="empty_filter",
            fields={"filter": ["At least one filter field is required."]},
        )
    base = Job.objects.all() if account_id is None else Job.objects.filter(account_id=account_id)
    if stalled_now:
        base = base.filter(stale_heartbeat())
    matched_qs = filter_jobs(base, params).order_by()
    if dry_run:
        return matched_qs.count()
    now = timezone.now()
    size = settings.JOBS_BULK_BATCH_SIZE
    filter_record = {name: params.getlist(name) for name in params}
    if stalled_now:
        filter_record[STALLED_NOW_KEY] = ["1"]
    with transaction.atomic():
        operation = BulkOperation(
            command=command.value,
            account_id=account_id,
            filter=filter_record,
            inputs=cleaned,
            note=note,
            actor_type=actor.type,
            actor=actor.name,
            batch_size=size,
            status=BulkStatus.RUNNING,
            next_batch_at=now,
            lease_until=now + timedelta(seconds=settings.JOBS_BULK_LEASE_SECONDS),
            created_at=now,
            updated_at=now,
        )
        operation.save(force_insert=True)
        # The set, fixed by one statement; the count read back from the few chunk rows.
        matched = _snapshot(operation, matched_qs, size)
        rate = _rate(command, pace, matched, default_pace)
        if rate is not None:
            # Batches of about a second's worth of the rate, cut again from the fixed set.
            paced = max(1, min(size, math.ceil(rate * PACE_STEP_SECONDS)))
            if paced != size:
                BulkOperationChunk.objects.filter(operation=operation).delete()
                matched = _snapshot(operation, matched_qs, paced)
                size = paced
        operation.matched = matched
        operation.batch_size = size
        operation.batches = math.ceil(matched / size)
        operation.rate = rate
        if matched == 0:
            operation.status = BulkStatus.SUCCEEDED
            operation.finished_at = now
            operation.lease_until = None
        operation.save(
            update_fields=[
                "matched",
                "batch_size",
                "batches",
                "rate",
                "status",
                "finished_at",
                "lease_until",
            ]
        )
        audit(
            actor=actor,
            command=AuditCommand.BULK_CREATE,
            account_id=account_id or "",
            reason=note,
            data={
                "bulk_operation_id": operation.pk,
                "command": command.value,
                "filter": filter_record,
                "inputs": cleaned,
                "matched": matched,
                "rate": rate,
            },
        )
        if matched:
            enqueue_bulk_operations_on_commit([operation.pk])
    return operation


def _snapshot(operation: BulkOperation, matched_qs: Any, size: int) -> int:
    db = transaction.get_connection(router.db_for_write(BulkOperationChunk))
    selected = matched_qs.annotate(bulk_id=F("pk")).values("bulk_id")
    inner, params = selected.query.get_compiler(connection=db).as_sql()
    statement = sql.bulk_snapshot_statement(db.vendor, inner, size)
    with db.cursor() as cursor:
        cursor.execute(statement, [operation.pk, *params])
    return sum(
        BulkOperationChunk.objects.filter(operation=operation).values_list("size", flat=True)
    )


# --- running it --------------------------------------------------------------------------------


def _lease(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.JOBS_BULK_LEASE_SECONDS)


def bulk_operation_run(
    operation_id: str, *, now: datetime | None = None, budget_seconds: float | None = None
) -> str:
    """Run the operation's due batches, one transaction each, until it is done, cancelled, its
    next batch is not due yet (paced: the scheduler sends it again then), or `budget_seconds`
    have passed (then it sends itself again, so no worker is held for long). `now` fixes the
    clock (tests of pacing). Returns what stopped it: "succeeded", "cancelled", "paced",
    "continued", "gone"."""
    budget = settings.JOBS_BULK_RUN_SECONDS if budget_seconds is None else budget_seconds
    deadline = time.monotonic() + budget
    while True:
        with transaction.atomic():
            try:
                operation = BulkOperation.objects.select_for_update().get(pk=operation_id)
            except BulkOperation.DoesNotExist:
                return "gone"
            if operation.status not in BULK_ACTIVE:
                return str(operation.status)
            clock = now or timezone.now()
            if operation.next_batch >= operation.batches:
                _finish(operation, clock)
                return "succeeded"
            if operation.next_batch_at > clock:
                # Paced: give the lease back; the scheduler sends the operation when it is due.
                operation.lease_until = None
                operation.save(update_fields=["lease_until"])
                return "paced"
            _run_batch(operation, clock)
            if operation.status != BulkStatus.RUNNING:
                return str(operation.status)
            if time.monotonic() >= deadline:
                operation.lease_until = _lease(clock)
                operation.save(update_fields=["lease_until"])
                enqueue_bulk_operations_on_commit([operation.pk])
                return "continued"


def _run_batch(operation: BulkOperation, now: datetime) -> None:
    """Batch `next_batch` of the locked operation, and its counters, in the caller's
    transaction."""
    command = Command(operation.command)
    chunk = BulkOperationChunk.objects.get(operation=operation, number=operation.next_batch)
    ids = chunk.job_ids.split(",") if chunk.job_ids else []
    actor = Actor(ActorType(operation.actor_type), operation.actor)
    one_by_one = False
    try:
        with transaction.atomic():
            outcome = apply_batch(
                command, ids, actor=actor, note=operation.note, inputs=operation.inputs, now=now
            )
    except CONNECTION_ERRORS:
        raise
    except Exception as exc:
        logger.warning(
            "bulk operation %s: batch %s failed (%r); running its jobs one by one",
            operation.pk,
            operation.next_batch,
            exc,
        )
        outcome = _one_by_one(command, ids, actor=actor, operation=operation)
        one_by_one = True
    # One event for a set-based batch; the per-job services of a detour audited each job.
    if outcome.acted and not one_by_one:
        _audit_batch(operation, command, actor, outcome, now)
    skipped = Counter(operation.skipped)
    skipped.update(outcome.skipped)
    operation.skipped = dict(skipped)
    operation.done += len(outcome.acted)
    operation.failed += outcome.failed
    operation.started_at = operation.started_at or now
    operation.next_batch += 1
    operation.updated_at = now
    operation.lease_until = _lease(now)
    if operation.rate:
        operation.next_batch_at = now + timedelta(seconds=chunk.size / operation.rate)
    fields = [
        "skipped",
        "done",
        "failed",
        "started_at",
        "next_batch",
        "updated_at",
        "lease_until",
        "next_batch_at",
    ]
    if operation.next_batch >= operation.batches:
        fields += _finish(operation, now, save=False)
    operation.save(update_fields=fields)


def _audit_batch(
    operation: BulkOperation,
    command: Command,
    actor: Actor,
    outcome: BatchOutcome,
    now: datetime,
) -> None:
    """One audit event for the batch, with its ids, linked to each job it changed. An operation
    across accounts writes one event per account the batch touched, each with that account's
    ids only: an account key's audit query finds what was done to its jobs, and never sees
    another account's ids."""
    data = {
        "bulk_operation_id": operation.pk,
        "batch": operation.next_batch,
        "filter": operation.filter,
    }
    if operation.account_id:
        shares = {operation.account_id: outcome.acted}
        data |= {"skipped": dict(outcome.skipped), "failed": outcome.failed}
    else:
        shares = {}
        for job_id in outcome.acted:
            shares.setdefault(outcome.accounts.get(job_id, ""), []).append(job_id)
    events = AuditEvent.objects.bulk_create(
        [
            AuditEvent(
                **audit_fields(
                    actor=actor,
                    command=command.audit_command,
                    account_id=account_id,
                    reason=operation.note,
                    data=data | {"done": len(ids), "job_ids": ids},
                    now=now,
                )
            )
            for account_id, ids in shares.items()
        ]
    )
    links = [
        (job_id, event.pk)
        for event, ids in zip(events, shares.values(), strict=True)
        for job_id in ids
    ]
    insert_plain_rows(AuditEventJob, ("job_id", "event"), links)


def _one_by_one(
    command: Command, ids: list[str], *, actor: Actor, operation: BulkOperation
) -> BatchOutcome:
    """A batch that failed as a whole (a row the set-based statements could not process), done
    through the per-job service, each job in a savepoint: a success is done (in `acted`), a
    refusal a skip, anything else a failure that stops no other job."""
    from jobs.services.commands import job_command

    outcome = BatchOutcome()
    inputs = {"note": operation.note, **operation.inputs}
    for job_id in sorted(ids):
        try:
            with transaction.atomic():
                job_command(command, job_id=job_id, actor=actor, inputs=inputs)
        except CONNECTION_ERRORS:
            raise
        except NotFound:
            outcome.skipped["gone"] += 1
        except DomainError as error:
            status = error.extra.get("current_status")
            reason = skip_reason(command, str(status)) if status else None
            outcome.skipped[reason or error.code] += 1
        except Exception:
            logger.exception("bulk operation %s: %s of %s failed", operation.pk, command, job_id)
            outcome.failed += 1
        else:
            # The per-job service audited the job itself: the caller writes no batch event.
            outcome.acted.append(job_id)
    return outcome


def _finish(operation: BulkOperation, now: datetime, *, save: bool = True) -> list[str]:
    operation.status = BulkStatus.SUCCEEDED
    operation.finished_at = now
    operation.lease_until = None
    fields = ["status", "finished_at", "lease_until"]
    if save:
        operation.save(update_fields=fields)
    return fields


def bulk_operations_dispatch(*, now: datetime | None = None, limit: int = 100) -> list[str]:
    """The scheduler's step: send a message for each running operation whose next batch is due
    and that nobody holds (its lease expired: never sent, paced, or its worker was killed), and
    take the lease for it. SKIP LOCKED: an operation whose batch is running is left alone, and
    several schedulers share the work."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            BulkOperation.objects.select_for_update(skip_locked=True)
            .filter(status=BulkStatus.RUNNING, next_batch_at__lte=now)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .order_by("next_batch_at")
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            BulkOperation.objects.filter(pk__in=ids).update(lease_until=_lease(now))
            enqueue_bulk_operations_on_commit(ids)
    return ids


def bulk_operation_cancel(*, operation_id: str, actor: Actor, note: str = "") -> BulkOperation:
    """Stop the operation after the batch in progress (whose row lock this waits for): what
    was done stays done and counted. 409 with its status when it has already ended."""
    note = rules.clean_note(note, required=False)
    with transaction.atomic():
        try:
            operation = BulkOperation.objects.select_for_update().get(pk=operation_id)
        except BulkOperation.DoesNotExist:
            raise NotFound(f"Bulk operation {operation_id} not found.") from None
        if operation.status not in BULK_ACTIVE:
            raise Conflict(
                f"Bulk operation {operation.pk} is {operation.status}: nothing to cancel.",
                code="invalid_transition",
                extra={"current_status": operation.status},
            )
        now = timezone.now()
        operation.status = BulkStatus.CANCELLED
        operation.finished_at = now
        operation.updated_at = now
        operation.lease_until = None
        operation.cancelled_by = actor.name
        operation.save(
            update_fields=["status", "finished_at", "updated_at", "lease_until", "cancelled_by"]
        )
        audit(
            actor=actor,
            command=AuditCommand.BULK_CANCEL,
            account_id=operation.account_id or "",
            reason=note,
            data={
                "bulk_operation_id": operation.pk,
                "done": operation.done,
                "skipped": operation.skipped,
                "matched": operation.matched,
            },
        )
    return operation
