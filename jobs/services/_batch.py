"""The set-based batch of a command over many jobs, shared by bulk operations (jobs.services.bulk)
and search-delete (jobs.services.commands): lock the jobs in id order in one statement, ask the
state table which the command may act on, count the others as skipped by reason, and change the
rest in one statement, as the per-job services change one. Runs inside its caller's transaction;
imports neither of its callers."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import router, transaction
from django.db.models import F
from django.db.models.expressions import RawSQL
from django.db.models.functions import Greatest
from django.utils import timezone

from core.actors import Actor
from core.errors import ValidationFailed
from jobs import sql
from jobs.execution.broker import enqueue_on_commit
from jobs.models import Job
from jobs.services import _rows, limits
from jobs.states import MAX_ATTEMPT_COUNT, Command, JobStatus, is_allowed

# The commands that queue jobs, and so may be paced.
PACED_COMMANDS = frozenset({Command.RETRY, Command.TRIGGER})


@dataclass
class BatchOutcome:
    """What one batch did: the ids it acted on, and the others counted by reason."""

    acted: list[str] = field(default_factory=list)
    # The account of each acted job (an operation across accounts audits each one's share).
    accounts: dict[str, str] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    failed: int = 0


def skip_reason(command: Command, status: str) -> str | None:
    """Why the state table leaves a job in `status` alone under `command`, or None if it may
    act: `running`, or `status_changed:<status>` (the job moved since the set was fixed)."""
    if is_allowed(command, status):
        return None
    return "running" if status == JobStatus.RUNNING else f"status_changed:{status}"


def _ids_in(ids: list[str]) -> RawSQL:
    """`ids` as a subquery for `pk__in`, bound as one parameter (jobs.sql.IDS_SUBQUERY)."""
    vendor = transaction.get_connection(router.db_for_write(Job)).vendor
    param = ",".join(ids) if vendor == "postgresql" else json.dumps(ids)
    return RawSQL(sql.IDS_SUBQUERY[vendor], [param])


def _lock_rows(ids: list[str], *, for_delete: bool) -> list[tuple[Any, ...]]:
    """The jobs among `ids` that still exist, locked in id order (one statement), as
    (id, status, task_id, account_id, action, attempt_count). NO KEY UPDATE, as for one job,
    except for a delete."""
    return list(
        Job.objects.select_for_update(no_key=not for_delete, of=("self",))
        .filter(pk__in=_ids_in(ids))
        .order_by("pk")
        .values_list("pk", "status", "task_id", "account_id", "action", "attempt_count")
    )


def apply_batch(
    command: Command,
    ids: list[str],
    *,
    actor: Actor,
    note: str = "",
    inputs: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> BatchOutcome:
    """Run `command` on the jobs `ids` inside the caller's transaction, set-based: the same
    changes the per-job services of jobs.services.commands make, checked against the same state
    table, for the whole batch in a few statements. The caller audits (it knows what the batch
    belongs to); broker messages go after commit."""
    inputs = inputs or {}
    now = now or timezone.now()
    outcome = BatchOutcome()
    writer = BATCH_WRITERS.get(command)
    if writer is None:
        raise ValidationFailed.for_field("command", f"{command.value} is not a bulk command.")
    rows = _lock_rows(sorted(ids), for_delete=command is Command.DELETE)
    outcome.skipped["gone"] = len(set(ids)) - len(rows)
    # Trigger's rule without force, asked as the per-job trigger asks it (jobs.services.limits):
    # the (account, action) pairs already running as many jobs as their limit allows.
    twins = (
        limits.pairs_at_limit({(row[3], row[4]) for row in rows})
        if command is Command.TRIGGER and not inputs.get("force")
        else set()
    )
    acting: list[tuple[Any, ...]] = []
    for row in rows:
        _, status, _, account_id, action, attempt_count = row
        reason = skip_reason(command, status)
        if reason is None and command in PACED_COMMANDS and attempt_count >= MAX_ATTEMPT_COUNT:
            reason = "attempts_exhausted"
        if reason is None and (account_id, action) in twins:
            reason = "sibling_running"
        if reason:
            outcome.skipped[reason] += 1
        else:
            acting.append(row)
    outcome.skipped = Counter({k: v for k, v in outcome.skipped.items() if v})
    outcome.acted = [row[0] for row in acting]
    if outcome.acted:
        written = writer(outcome.acted, actor=actor, note=note, inputs=inputs, now=now)
        if written is not None:
            # The writer acted on fewer (a cancel already pending on some).
            done = set(written)
            missed = len(outcome.acted) - len(done)
            if missed:
                outcome.skipped[WRITER_SKIP[command]] += missed
            acting = [row for row in acting if row[0] in done]
            outcome.acted = [row[0] for row in acting]
        if command in CHANGES_STATUS:
            _rows.refresh_task_statuses(row[2] for row in acting)
    outcome.accounts = {row[0]: row[3] for row in acting}
    return outcome


def _queue_now(ids: list[str], *, ahead: bool, now: datetime, ignore_limit: bool = False) -> None:
    """_rows.requeue and _rows.grant_attempt_if_spent for a set: queued now, a fresh start
    (no wait for a concurrency slot, no cancel request of an earlier run), one more attempt
    when the budget is spent; a forced trigger may go over the concurrency limit once."""
    Job.objects.filter(pk__in=_ids_in(ids)).update(
        status=JobStatus.QUEUED,
        heartbeat_at=None,
        enqueued_at=now,
        finished_at=None,
        wait_reason="",
        run_at=now,
        worker="",
        resolution=None,
        ignore_limit=ignore_limit,
        cancel_requested_at=None,
        cancel_requested_by="",
        cancel_note="",
        max_attempts=Greatest(F("max_attempts"), F("attempt_count") + 1),
        updated_at=now,
    )
    enqueue_on_commit(ids, ahead=ahead)


def _retry(ids: list[str], *, now: datetime, **_: Any) -> None:
    _queue_now(ids, ahead=False, now=now)


def _trigger(ids: list[str], *, now: datetime, inputs: Mapping[str, Any], **_: Any) -> None:
    _queue_now(ids, ahead=True, now=now, ignore_limit=bool(inputs.get("force")))


def _resolve(
    ids: list[str], *, actor: Actor, note: str, inputs: Mapping[str, Any], now: datetime
) -> None:
    # _rows.move_to's bookkeeping for a terminal status, then the resolution.
    Job.objects.filter(pk__in=_ids_in(ids)).update(
        status=JobStatus.RESOLVED,
        heartbeat_at=None,
        enqueued_at=None,
        finished_at=now,
        wait_reason="",
        resolution={"code": inputs["code"], "note": note, "by": actor.name, "at": now.isoformat()},
        updated_at=now,
    )


def _delete(ids: list[str], **_: Any) -> None:
    _rows.delete_job_rows(ids)


def _cancel(ids: list[str], *, actor: Actor, note: str, now: datetime, **_: Any) -> list[str]:
    """What job_cancel records for one running job, for the batch: the request, which each
    job's worker reads with its next heartbeat. The status does not change here."""
    return _rows.request_cancel(ids, actor=actor, note=note, now=now)


# The set-based write of each bulk command, after apply_batch has locked and checked the rows.
# A writer that may act on fewer than it was given returns the ids it acted on.
BATCH_WRITERS: dict[Command, Callable[..., list[str] | None]] = {
    Command.RETRY: _retry,
    Command.RESOLVE: _resolve,
    Command.TRIGGER: _trigger,
    Command.DELETE: _delete,
    Command.CANCEL: _cancel,
}
# Why a writer left a checked job alone.
WRITER_SKIP = {Command.CANCEL: "cancel_pending"}
# The commands whose batch changes a status (the tasks are counted again): a cancel only
# records a request.
CHANGES_STATUS = frozenset(BATCH_WRITERS) - {Command.CANCEL}
