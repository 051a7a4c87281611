"""Writing audit events: the one place that maps an actor and a command to an AuditEvent row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from core.actors import Actor
from core.models import AuditEvent
from jobs.models import Job


def audit(**fields: Any) -> AuditEvent:
    """Record one audit event: who did what to which job (or account), when and why. Takes the
    arguments of audit_fields."""
    return AuditEvent.objects.create(**audit_fields(**fields))


def audit_fields(
    *,
    actor: Actor,
    command: str,
    account_id: str,
    job: Job | None = None,
    job_id: str = "",
    from_status: str = "",
    to_status: str = "",
    reason: str = "",
    data: dict[str, Any] | None = None,
    task_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    return {
        "created_at": now or timezone.now(),
        "actor_type": actor.type,
        "actor": actor.name,
        "command": command,
        "account_id": account_id,
        "job_id": job.pk if job else job_id,
        "task_id": task_id or (job.task_id if job and job.task_id else ""),
        "from_status": from_status,
        "to_status": to_status,
        "reason": reason,
        "data": data or {},
    }
