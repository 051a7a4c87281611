"""Creating work: jobs (one or a batch), tasks and the jobs they produce, provider events
(deduplicated, coalesced into a pending sync). Due jobs go to the broker after commit."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Account
from core.actors import Actor
from core.audit import AuditCommand, audit, audit_fields, link_jobs
from core.db import insert_rows
from core.errors import ValidationFailed
from core.ids import new_id
from core.models import AuditEvent
from jobs import rules
from jobs.execution.actions.registry import (
    JobSpec,
    get_action,
    get_event_route,
    get_task_kind,
    policy_for,
)
from jobs.execution.broker import enqueue_on_commit
from jobs.models import Job, ProviderEvent, Task
from jobs.services import _rows
from jobs.states import (
    JobStatus,
)

logger = logging.getLogger(__name__)


def _validate_spec(spec: JobSpec) -> None:
    if get_action(spec.action) is None:
        raise ValidationFailed.for_field("action", f"Unknown action {spec.action!r}.")
    rules.validate_payload(spec.payload)
    rules.validate_labels(spec.labels)


def jobs_create(
    *,
    account: Account,
    specs: list[JobSpec],
    actor: Actor,
    task: Task | None = None,
    provider_event: ProviderEvent | None = None,
    task_event: AuditEvent | None = None,
) -> list[Job]:
    """Create jobs in one batched insert. Due jobs of an active account are queued and sent to
    the broker after commit; the others wait as `scheduled` for the dispatcher. A task's jobs
    are linked to the task's `create_task` event, `task_event`, so that each job's own audit
    query finds its creation."""
    for spec in specs:
        _validate_spec(spec)
    now = timezone.now()
    jobs: list[Job] = []
    for spec in specs:
        run_at = spec.run_at or now
        due = run_at <= now and not account.is_paused
        jobs.append(
            Job(
                id=new_id("job"),
                account_id=account.pk,
                task_id=task.pk if task else None,
                provider_event_id=provider_event.pk if provider_event else None,
                action=spec.action,
                payload=spec.payload,
                labels=spec.labels,
                priority=spec.priority,
                run_at=run_at,
                max_attempts=spec.max_attempts or policy_for(spec.action).effective_max_attempts,
                status=JobStatus.QUEUED if due else JobStatus.SCHEDULED,
                enqueued_at=now if due else None,
                created_at=now,
                updated_at=now,
            )
        )
    with transaction.atomic():
        insert_rows(jobs)
        if task is None:
            # A task's jobs are recorded by the task's own `create_task` event (which the job
            # page shows): ten thousand identical "created" rows would say nothing more.
            insert_rows(
                [
                    AuditEvent(
                        **audit_fields(
                            actor=actor,
                            command=AuditCommand.CREATE,
                            account_id=account.pk,
                            job=job,
                            to_status=job.status,
                            data={"action": job.action}
                            | (
                                {"provider_event_id": job.provider_event_id}
                                if provider_event
                                else {}
                            ),
                            now=now,
                        )
                    )
                    for job in jobs
                ]
            )
        else:
            if task_event is not None:
                # One COPY of (event, job) links: a fraction of the job rows' own cost.
                link_jobs(task_event, [job.pk for job in jobs])
            _rows.refresh_task_statuses([task.pk])
        enqueue_on_commit(
            [job.pk for job in jobs if job.status == JobStatus.QUEUED], account_id=account.pk
        )
    return jobs


def job_create(
    *,
    account: Account,
    action: str,
    actor: Actor,
    payload: dict[str, Any] | None = None,
    priority: int = 0,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    labels: dict[str, str] | None = None,
    task: Task | None = None,
) -> Job:
    """Create one job (see jobs_create)."""
    spec = JobSpec(action, payload or {}, priority, run_at, max_attempts, labels or {})
    return jobs_create(account=account, specs=[spec], actor=actor, task=task)[0]


def task_create(*, account: Account, kind: str, params: dict[str, Any], actor: Actor) -> Task:
    """Create a task and, in the same transaction, the jobs its kind produces."""
    produce = get_task_kind(kind)
    if produce is None:
        raise ValidationFailed.for_field("kind", f"Unknown task kind {kind!r}.")
    if not isinstance(params, dict):
        raise ValidationFailed.for_field("params", "must be an object.")
    try:
        specs = produce(params)
    except (ValueError, TypeError) as exc:
        raise ValidationFailed.for_field("params", str(exc)) from None
    with transaction.atomic():
        task = Task.objects.create(account=account, kind=kind, params=params)
        event = audit(
            actor=actor,
            command=AuditCommand.CREATE_TASK,
            account_id=account.pk,
            task_id=task.pk,
            data={"kind": kind, "jobs": len(specs)},
        )
        jobs_create(account=account, specs=specs, actor=actor, task=task, task_event=event)
        task.refresh_from_db()
    return task


def provider_event_ingest(
    *,
    account: Account,
    provider: str,
    type: str,
    external_id: str,
    payload: dict[str, Any],
    actor: Actor,
) -> tuple[ProviderEvent, bool]:
    """Turn a provider event into jobs. Returns (event, created): an event whose external id was
    seen before is returned as it was and creates nothing. A coalescing event type joins a
    scheduled or queued job of the same account and action instead of creating another."""
    route = get_event_route(provider, type)
    if route is None:
        raise ValidationFailed.for_field("type", f"Unknown event type {provider}:{type}.")
    if not external_id or len(external_id) > 255:
        raise ValidationFailed.for_field("external_id", "must be 1 to 255 characters.")
    if not isinstance(payload, dict):
        raise ValidationFailed.for_field("payload", "must be an object.")
    rules.validate_payload(payload)
    try:
        specs = route.produce(payload)
    except (ValueError, TypeError) as exc:
        raise ValidationFailed.for_field("payload", str(exc)) from None

    def existing() -> ProviderEvent | None:
        return ProviderEvent.objects.filter(
            account=account, provider=provider, external_id=external_id
        ).first()

    if (event := existing()) is not None:
        return event, False
    try:
        with transaction.atomic():
            # The account lock serializes events of one account, so two events arriving together
            # cannot both miss the pending sync and create two.
            Account.objects.select_for_update(no_key=True).filter(pk=account.pk).first()
            event = ProviderEvent.objects.create(
                account=account,
                provider=provider,
                type=type,
                external_id=external_id,
                payload=payload,
            )
            to_create: list[JobSpec] = []
            joined: Job | None = None
            for spec in specs:
                pending = None
                if route.coalesce:
                    pending = (
                        Job.objects.filter(
                            account=account,
                            action=spec.action,
                            status__in=[JobStatus.SCHEDULED, JobStatus.QUEUED],
                        )
                        .order_by("id")
                        .first()
                    )
                if pending:
                    joined = joined or pending
                else:
                    to_create.append(spec)
            created = jobs_create(
                account=account, specs=to_create, actor=actor, provider_event=event
            )
            event.job = created[0] if created else joined
            event.coalesced = not created and joined is not None
            event.save(update_fields=["job", "coalesced"])
            audit(
                actor=actor,
                command=AuditCommand.INGEST_EVENT,
                account_id=account.pk,
                job=event.job,
                data={
                    "provider_event_id": event.pk,
                    "type": f"{provider}:{type}",
                    "external_id": external_id,
                    "coalesced": event.coalesced,
                    "created_jobs": [job.pk for job in created],
                },
            )
    except IntegrityError:
        # The same external id arrived concurrently and the other request won.
        event = existing()
        if event is None:
            raise
        return event, False
    return event, True
