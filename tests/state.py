"""A snapshot of everything a request could change, to assert that a refused one changed
nothing."""

from __future__ import annotations

from accounts.models import Account, ApiKey
from core.models import AuditEvent, IdempotencyRecord
from jobs.models import Job, JobAttempt, ProviderEvent, Task

_JOB_FIELDS = (
    "pk",
    "status",
    "priority",
    "run_at",
    "max_attempts",
    "payload",
    "labels",
    "attempt_count",
    "updated_at",
)


def snapshot() -> dict:
    return {
        "jobs": sorted(Job.objects.values_list(*_JOB_FIELDS), key=lambda row: row[0]),
        "accounts": sorted(Account.objects.values_list("pk", "name", "paused_at", "updated_at")),
        "audit_events": AuditEvent.objects.count(),
        "attempts": JobAttempt.objects.count(),
        "tasks": Task.objects.count(),
        "provider_events": ProviderEvent.objects.count(),
        "idempotency_records": IdempotencyRecord.objects.count(),
        "api_keys": sorted(ApiKey.objects.values_list("pk", "revoked_at")),
    }
