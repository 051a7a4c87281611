"""Sync schedules: a task created for an account on a cadence (an interval or a cron
expression), and the scheduler's step that fires the due ones.

- Once, with any number of schedulers: each due schedule is taken under its row lock with SKIP
  LOCKED (another scheduler goes on to other rows instead of waiting) and claimed by a
  conditional UPDATE of its `next_run_at` from the value that was read; on SQLite, whose
  writers take turns (BEGIN IMMEDIATE), the second one finds the slot claimed. The task is
  created in the same transaction as the claim, so a crash in between does neither.
- Once after downtime: `next_run_at` moves to the first slot after now, not the slot after the
  one that was missed, so a schedule that missed a hundred slots runs once.
- Coalesced: when a job of the account and of an action the task kind produces is still
  scheduled, queued or running, the schedule creates nothing (audited as a skip that names the
  job). It takes the account's row lock first, as provider events do
  (jobs.services.creation.provider_event_ingest), so an event and a schedule arriving together
  cannot both miss the pending sync.
- Paused: a schedule waits while it or its account is paused, and runs once when resumed if a
  slot passed meanwhile.
- Audited: every change, fire, skip and run now (core.audit.AuditCommand.SCHEDULE_*).

Lock order: a schedule, then its account. Nothing here locks a schedule while holding its
account, so no other path takes the two the other way round.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cronsim import CronSim
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account
from core.actors import Actor
from core.audit import AuditCommand, audit
from core.errors import Conflict, NotFound, ValidationFailed
from core.input import shown
from jobs import rules
from jobs.execution.actions.registry import get_task_kind
from jobs.models import Job, Schedule, ScheduleOutcome
from jobs.services.creation import task_create
from jobs.services.quarantine import CONNECTION_ERRORS
from jobs.states import PENDING, SYSTEM_SCHEDULER

logger = logging.getLogger(__name__)

# The schedule an account gets with its IMAP settings.
DEFAULT_KIND = "mailbox_sync"


# --- when --------------------------------------------------------------------------------------


def next_run_after(schedule: Schedule, after: datetime) -> datetime:
    """The first slot of the schedule's cadence after `after`. An interval keeps its phase (a
    schedule every 5 minutes from 10:02 runs at 10:07, 10:12, ... whatever the delays), so the
    slots missed while nothing ran collapse into one run."""
    if schedule.interval_seconds:
        step = timedelta(seconds=schedule.interval_seconds)
        anchor = schedule.next_run_at
        if anchor > after:
            return anchor
        return anchor + ((after - anchor) // step + 1) * step
    zone = ZoneInfo(schedule.time_zone)
    found: datetime = next(CronSim(schedule.cron, after.astimezone(zone)))
    return found.astimezone(UTC)


def _first_run(schedule: Schedule, now: datetime) -> datetime:
    """A new cadence's first slot: one interval from now, or the cron expression's next time."""
    if schedule.interval_seconds:
        return now + timedelta(seconds=schedule.interval_seconds)
    schedule.next_run_at = now
    return next_run_after(schedule, now)


def _cadence_data(schedule: Schedule) -> dict[str, Any]:
    return {
        "interval_seconds": schedule.interval_seconds,
        "cron": schedule.cron or None,
        "timezone": schedule.time_zone,
    }


def _audit(
    schedule: Schedule,
    command: AuditCommand,
    actor: Actor,
    *,
    reason: str = "",
    now: datetime | None = None,
    job_id: str = "",
    task_id: str | None = None,
    **data: Any,
) -> None:
    audit(
        actor=actor,
        command=command,
        account_id=schedule.account_id,
        job_id=job_id,
        task_id=task_id,
        reason=reason,
        data={"schedule_id": schedule.pk, "kind": schedule.kind, **data},
        now=now,
    )


def _lock(schedule_id: str) -> Schedule:
    try:
        return Schedule.objects.select_for_update(no_key=True).get(pk=schedule_id)
    except Schedule.DoesNotExist:
        raise NotFound(f"Schedule {schedule_id} not found.") from None


def check_schedule_params(kind: str, params: Any) -> None:
    """The kind is registered and accepts the params (as task_create would check them)."""
    produce = get_task_kind(kind) if isinstance(kind, str) else None
    if produce is None:
        raise ValidationFailed.for_field("kind", f"Unknown task kind {shown(kind, 60)}.")
    if not isinstance(params, dict):
        raise ValidationFailed.for_field("params", "must be an object.")
    try:
        produce(params)
    except (ValueError, TypeError) as exc:
        raise ValidationFailed.for_field("params", str(exc)) from None


# --- changes -----------------------------------------------------------------------------------


def schedule_create(
    *,
    account: Account,
    kind: str,
    actor: Actor,
    params: dict[str, Any] | None = None,
    cadence: Mapping[str, Any],
) -> Schedule:
    """A schedule of `kind` for the account. `cadence`: `interval_seconds` or `cron` (one of
    them), optionally `timezone` (for cron; UTC by default) and `next_run_at` (the first run;
    by default one interval from now, or the cron expression's next time). 409 when the
    account already has a schedule of that kind."""
    params = {} if params is None else params
    check_schedule_params(kind, params)
    fields = rules.clean_cadence(cadence)
    if not fields.get("interval_seconds") and not fields.get("cron"):
        raise ValidationFailed(
            "Give interval_seconds or cron.",
            fields={"interval_seconds": ["Give interval_seconds or cron."]},
        )
    now = timezone.now()
    schedule = Schedule(account_id=account.pk, kind=kind, params=params, **fields)
    if "next_run_at" not in fields:
        schedule.next_run_at = _first_run(schedule, now)
    schedule.created_at = schedule.updated_at = now
    try:
        with transaction.atomic():
            schedule.save(force_insert=True)
            _audit(
                schedule,
                AuditCommand.SCHEDULE_CREATE,
                actor,
                now=now,
                params=params,
                next_run_at=schedule.next_run_at.isoformat(),
                **_cadence_data(schedule),
            )
    except IntegrityError:
        existing = Schedule.objects.filter(account_id=account.pk, kind=kind).first()
        if existing is None:
            raise
        raise Conflict(
            f"Account {account.pk} already has a {kind} schedule ({existing.pk}).",
            code="schedule_exists",
        ) from None
    return schedule


def schedule_create_default(*, account: Account, actor: Actor) -> Schedule | None:
    """The mailbox_sync schedule of an account that has just got IMAP settings, every
    JOBS_DEFAULT_SYNC_INTERVAL seconds (none when 0, or when it has one already). Its first
    run is spread over the first interval by the account id, so accounts created together do
    not all sync in the same second."""
    interval = settings.JOBS_DEFAULT_SYNC_INTERVAL
    if interval <= 0 or Schedule.objects.filter(account_id=account.pk, kind=DEFAULT_KIND).exists():
        return None
    offset = int.from_bytes(hashlib.sha256(account.pk.encode()).digest()[:8], "big") % interval
    first = timezone.now() + timedelta(seconds=offset)
    return schedule_create(
        account=account,
        kind=DEFAULT_KIND,
        actor=actor,
        cadence={"interval_seconds": interval, "next_run_at": first},
    )


def on_imap_configured(sender: Any, *, account: Account, actor: Actor, **kwargs: Any) -> None:
    """accounts.signals.imap_configured: the account's default sync schedule (connected in
    jobs.apps)."""
    schedule_create_default(account=account, actor=actor)


def schedule_update(*, schedule_id: str, changes: Mapping[str, Any], actor: Actor) -> Schedule:
    """Change a schedule's cadence (`interval_seconds` or `cron`, `timezone`) or its next run.
    A new cadence without a `next_run_at` runs next at its first slot from now."""
    fields = rules.clean_schedule_changes(changes)
    now = timezone.now()
    with transaction.atomic():
        schedule = _lock(schedule_id)
        before = {**_cadence_data(schedule), "next_run_at": schedule.next_run_at.isoformat()}
        for name, value in fields.items():
            setattr(schedule, name, value)
        if "next_run_at" not in fields:
            schedule.next_run_at = _first_run(schedule, now)
        schedule.updated_at = now
        schedule.save(update_fields=[*fields, "next_run_at", "updated_at"])
        after = {**_cadence_data(schedule), "next_run_at": schedule.next_run_at.isoformat()}
        _audit(
            schedule,
            AuditCommand.SCHEDULE_UPDATE,
            actor,
            now=now,
            changed=sorted(name for name in after if after[name] != before[name]),
            before=before,
            after=after,
        )
    return schedule


def schedule_delete(*, schedule_id: str, actor: Actor) -> None:
    """Remove a schedule; the tasks it created stay, and so does its audit trail."""
    with transaction.atomic():
        schedule = _lock(schedule_id)
        _audit(schedule, AuditCommand.SCHEDULE_DELETE, actor, **_cadence_data(schedule))
        schedule.delete()


def schedule_pause(*, schedule_id: str, actor: Actor, reason: str = "") -> Schedule:
    """Stop firing the schedule until it is resumed. 409 when it is paused already."""
    with transaction.atomic():
        schedule = _lock(schedule_id)
        if schedule.is_paused:
            raise Conflict(
                f"Schedule {schedule_id} is already paused.",
                code="already_paused",
                extra={"current_status": "paused"},
            )
        schedule.paused_at = schedule.updated_at = timezone.now()
        schedule.paused_reason = (reason or "").strip()[:500]
        schedule.save(update_fields=["paused_at", "paused_reason", "updated_at"])
        _audit(schedule, AuditCommand.SCHEDULE_PAUSE, actor, reason=schedule.paused_reason)
    return schedule


def schedule_resume(*, schedule_id: str, actor: Actor, reason: str = "") -> Schedule:
    """Fire the schedule again: once at the next round if a slot passed while it was paused,
    then on its cadence. 409 when it is not paused."""
    with transaction.atomic():
        schedule = _lock(schedule_id)
        if not schedule.is_paused:
            raise Conflict(
                f"Schedule {schedule_id} is not paused.",
                code="not_paused",
                extra={"current_status": "active"},
            )
        schedule.paused_at = None
        schedule.paused_reason = ""
        schedule.updated_at = timezone.now()
        schedule.save(update_fields=["paused_at", "paused_reason", "updated_at"])
        _audit(schedule, AuditCommand.SCHEDULE_RESUME, actor, reason=(reason or "")[:500])
    return schedule


def schedule_run_now(*, schedule_id: str, actor: Actor) -> Schedule:
    """Create the schedule's task now, as its next slot would, unless a sync is pending
    (coalesced, as the scheduler would). The cadence keeps its slots. Runs whether or not
    the schedule is paused (an operator asked); the task's jobs wait while the account is
    paused, as any task's do."""
    with transaction.atomic():
        schedule = _lock(schedule_id)
        _fire(schedule, now=timezone.now(), actor=actor, slot=None)
    return schedule


# --- the scheduler's step ------------------------------------------------------------------------


def _due(now: datetime) -> Q:
    return Q(next_run_at__lte=now, paused_at__isnull=True, account__paused_at__isnull=True)


def schedules_fire_due(*, now: datetime | None = None, limit: int | None = None) -> list[str]:
    """Fire the due schedules of active accounts, soonest first, each in a transaction of its
    own: a schedule that fails is recorded as failed and moved to its next slot, and stops no
    other. Returns the ids of the schedules handled (fired, coalesced or failed)."""
    now = now or timezone.now()
    limit = limit or settings.JOBS_SCHEDULES_BATCH
    due = Schedule.objects.filter(_due(now))
    ids = list(due.order_by("next_run_at", "pk").values_list("pk", flat=True)[:limit])
    handled: list[str] = []
    for schedule_id in ids:
        try:
            with transaction.atomic():
                # Under its lock, and due still: another scheduler may have fired it since it
                # was read (it is then not due), or hold it now (it is then skipped).
                schedule = (
                    due.filter(pk=schedule_id)
                    .select_for_update(skip_locked=True, no_key=True, of=("self",))
                    .first()
                )
                slot = schedule.next_run_at if schedule else None
                if schedule is None or slot is None or not _claim(schedule, now):
                    continue
                if _fire(schedule, now=now, actor=SYSTEM_SCHEDULER, slot=slot):
                    handled.append(schedule_id)
        except CONNECTION_ERRORS:
            raise
        except Exception as exc:
            logger.exception("schedule %s could not be fired", schedule_id)
            if _record_failure(schedule_id, exc, now=now):
                handled.append(schedule_id)
    return handled


def _claim(schedule: Schedule, now: datetime) -> bool:
    """Move the schedule to its first slot after now, from the slot that was read: a
    conditional UPDATE that only one scheduler can win for a slot."""
    slot = schedule.next_run_at
    schedule.next_run_at = next_run_after(schedule, now)
    return (
        Schedule.objects.filter(pk=schedule.pk, next_run_at=slot, paused_at__isnull=True).update(
            next_run_at=schedule.next_run_at, updated_at=now
        )
        == 1
    )


def _fire(schedule: Schedule, *, now: datetime, actor: Actor, slot: datetime | None) -> bool:
    """Create the schedule's task, or coalesce with a pending job of the same actions, or
    record why the task could not be made; record the outcome on the schedule. `slot`: the
    time it was due, None for an operator's run now. False when the scheduler finds the
    account paused under its lock (paused since the schedule was read): nothing is done, and
    the claim is rolled back with the transaction."""
    # The account's lock serializes this with provider events' coalescing and with a pause.
    account = Account.objects.select_for_update(no_key=True).get(pk=schedule.account_id)
    manual = slot is None
    if account.is_paused and not manual:
        transaction.set_rollback(True)
        return False
    when = {"manual": True} if slot is None else {"slot": slot.isoformat()}
    schedule.last_run_at = now
    schedule.last_task = None
    schedule.last_job_id = schedule.last_detail = ""
    produce = get_task_kind(schedule.kind)
    try:
        if produce is None:
            raise ValueError(f"task kind {schedule.kind!r} is not registered")
        actions = sorted({spec.action for spec in produce(dict(schedule.params))})
    except (ValueError, TypeError) as exc:
        schedule.last_outcome = ScheduleOutcome.FAILED
        schedule.last_detail = f"The task could not be made: {exc}"[:500]
        _audit(schedule, AuditCommand.SCHEDULE_SKIP, actor, reason=schedule.last_detail, **when)
    else:
        pending = (
            Job.objects.filter(
                account_id=account.pk, action__in=actions, status__in=sorted(PENDING)
            )
            .order_by("id")
            .values_list("pk", "status")
            .first()
        )
        if pending is not None:
            job_id, status = pending
            schedule.last_outcome = ScheduleOutcome.COALESCED
            schedule.last_job_id = job_id
            schedule.last_detail = f"Job {job_id} of the same sync was still {status}."
            _audit(
                schedule,
                AuditCommand.SCHEDULE_SKIP,
                actor,
                reason=schedule.last_detail,
                job_id=job_id,
                coalesced_with=job_id,
                job_status=status,
                **when,
            )
        else:
            task = task_create(
                account=account, kind=schedule.kind, params=dict(schedule.params), actor=actor
            )
            schedule.last_outcome = ScheduleOutcome.CREATED
            schedule.last_task = task
            command = AuditCommand.SCHEDULE_RUN_NOW if manual else AuditCommand.SCHEDULE_FIRE
            _audit(schedule, command, actor, task_id=task.pk, now=now, **when)
    schedule.updated_at = now
    schedule.save(
        update_fields=[
            "last_run_at",
            "last_outcome",
            "last_task",
            "last_job_id",
            "last_detail",
            "updated_at",
        ]
    )
    return True


def _record_failure(schedule_id: str, exc: Exception, *, now: datetime) -> bool:
    """A schedule whose firing raised: failed, moved to its next slot (so it is not tried
    again at every round), audited; the error's type only, its traceback is in the log."""
    try:
        with transaction.atomic():
            schedule = (
                Schedule.objects.select_for_update(skip_locked=True, no_key=True)
                .filter(pk=schedule_id)
                .first()
            )
            if schedule is None:
                return False
            slot = schedule.next_run_at
            try:
                schedule.next_run_at = next_run_after(schedule, now)
            except Exception as error:
                # Its cadence itself cannot be evaluated (a time zone or an expression written
                # behind the service's back): paused, or it would be due, first in line, at
                # every round and hold up the schedules behind it.
                schedule.paused_at = now
                schedule.paused_reason = (
                    f"Paused by the scheduler: its cadence cannot be evaluated "
                    f"({type(error).__name__}). Fix it, then resume."
                )
            schedule.last_run_at = schedule.updated_at = now
            schedule.last_outcome = ScheduleOutcome.FAILED
            schedule.last_task = None
            schedule.last_job_id = ""
            schedule.last_detail = (
                f"Internal error ({type(exc).__name__}); see the scheduler's log."
            )
            schedule.save()
            _audit(
                schedule,
                AuditCommand.SCHEDULE_SKIP,
                SYSTEM_SCHEDULER,
                reason=schedule.last_detail,
                now=now,
                slot=slot.isoformat(),
            )
        return True
    except CONNECTION_ERRORS:
        raise
    except Exception:
        logger.exception("schedule %s: its failure could not be recorded either", schedule_id)
        return False
