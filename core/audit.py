"""Writing audit events: the one place that maps an actor and a command to an AuditEvent row,
and the one list of the commands an audit event can name."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.actors import Actor
from core.db import insert_plain_rows
from core.models import AuditEvent, AuditEventJob


class AuditCommand(models.TextChoices):
    """Every command an audit event records, by whom it is usually run."""

    # Operators' commands on jobs (jobs.states.Command has the same values).
    RETRY = "retry", "retry"
    RESOLVE = "resolve", "resolve"
    TRIGGER = "trigger", "trigger"
    UPDATE = "update", "update"
    DELETE = "delete", "delete"
    SEARCH_DELETE = "search_delete", "search_delete"
    # A cancel requested on a running job (the job stays running until its run stops).
    CANCEL = "cancel", "cancel"
    # Bulk operations (jobs.services.bulk): created, cancelled; each batch is an event of the
    # operation's own command (retry, resolve, ...) with the operation's id in its data.
    BULK_CREATE = "bulk_create", "bulk_create"
    BULK_CANCEL = "bulk_cancel", "bulk_cancel"
    # Creation of work.
    CREATE = "create", "create"
    CREATE_TASK = "create_task", "create_task"
    INGEST_EVENT = "ingest_event", "ingest_event"
    # The system's transitions (jobs.states.SYSTEM_TRANSITIONS).
    DISPATCH = "dispatch", "dispatch"
    CLAIM = "claim", "claim"
    SUCCEED = "succeed", "succeed"
    FAIL = "fail", "fail"
    STALL = "stall", "stall"
    RESCHEDULE = "reschedule", "reschedule"
    # A run with a cancel requested, closed as cancelled by its worker, or by the sweeper when
    # the run was lost.
    STOP = "stop", "stop"
    STOP_LOST = "stop_lost", "stop_lost"
    # Per-account concurrency limits (jobs.services.limits): a queued job over its limit waits
    # (hold), and is queued again when a slot frees (release).
    HOLD = "hold", "hold"
    RELEASE = "release", "release"
    # A job whose row could not be read or processed, taken out of the way (failed).
    QUARANTINE = "quarantine", "quarantine"
    # A run of the retention pruner (jobs.services.retention), with its counts.
    PRUNE = "prune", "prune"
    # Accounts and API keys.
    CREATE_ACCOUNT = "create_account", "create_account"
    UPDATE_ACCOUNT = "update_account", "update_account"
    PAUSE = "pause", "pause"
    RESUME = "resume", "resume"
    CREATE_API_KEY = "create_api_key", "create_api_key"
    REVOKE_API_KEY = "revoke_api_key", "revoke_api_key"
    # Sync schedules (jobs.services.schedules): changes by operators and clients, and what the
    # scheduler does with a due schedule: fire it (a task), or skip it (a sync still pending,
    # or the task could not be made), and an operator's run now.
    SCHEDULE_CREATE = "schedule_create", "schedule_create"
    SCHEDULE_UPDATE = "schedule_update", "schedule_update"
    SCHEDULE_DELETE = "schedule_delete", "schedule_delete"
    SCHEDULE_PAUSE = "schedule_pause", "schedule_pause"
    SCHEDULE_RESUME = "schedule_resume", "schedule_resume"
    SCHEDULE_FIRE = "schedule_fire", "schedule_fire"
    SCHEDULE_SKIP = "schedule_skip", "schedule_skip"
    SCHEDULE_RUN_NOW = "schedule_run_now", "schedule_run_now"


class AuditedJob(Protocol):
    """What an audit event needs of a job (jobs.models.Job); core imports no other app."""

    @property
    def pk(self) -> Any: ...

    @property
    def task_id(self) -> str | None: ...


def audit(**fields: Any) -> AuditEvent:
    """Record one audit event: who did what to which job (or account), when and why. Takes the
    arguments of audit_fields."""
    return AuditEvent.objects.create(**audit_fields(**fields))


def audit_fields(
    *,
    actor: Actor,
    command: AuditCommand,
    account_id: str,
    job: AuditedJob | None = None,
    job_id: str = "",
    from_status: str = "",
    to_status: str = "",
    reason: str = "",
    data: dict[str, Any] | None = None,
    task_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The column values of one audit event (for a bulk insert of many)."""
    return {
        "created_at": now or timezone.now(),
        "actor_type": actor.type,
        "actor": actor.name,
        "command": AuditCommand(command).value,
        "account_id": account_id,
        "job_id": job.pk if job else job_id,
        "task_id": task_id or (job.task_id if job and job.task_id else ""),
        "from_status": from_status,
        "to_status": to_status,
        "reason": reason,
        "data": data or {},
    }


def link_jobs(event: AuditEvent | int, job_ids: Iterable[str]) -> None:
    """Record that `event` touched each of `job_ids` (one COPY on PostgreSQL), so each job's
    own audit query finds it (for_job)."""
    event_id = event if isinstance(event, int) else event.pk
    insert_plain_rows(
        AuditEventJob, ("job_id", "event"), [(job_id, event_id) for job_id in job_ids]
    )


def for_job(job_id: str) -> Q:
    """The condition of every audit event that touched the job: its own events (`job_id`), and
    the events about many jobs linked to it (link_jobs). Their ids come from two index probes
    (audit_job and the link table's primary key) joined by a UNION: written as `job_id = X OR
    id IN (links)`, PostgreSQL cannot combine the two and, for a page ordered by id, walked the
    whole table backwards by its primary key (320 ms at 800,000 events, seconds at 40M)."""
    own = AuditEvent.objects.filter(job_id=job_id).order_by().values("pk")
    linked = AuditEventJob.objects.filter(job_id=job_id).order_by().values("event_id")
    return Q(pk__in=own.union(linked, all=True))
