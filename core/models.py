"""Rows that every app writes: the audit trail and the stored answers of idempotent requests."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from core.actors import ActorType


class AuditEvent(models.Model):
    """Who did what to which job, when and why. Holds ids, not foreign keys, so it outlives
    the jobs, tasks and accounts it speaks of."""

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor_type = models.CharField(max_length=10, choices=ActorType.choices)
    actor = models.CharField(max_length=200)  # "user:alice", "key:ab12cd34", "system:worker"
    command = models.CharField(max_length=40)
    account_id = models.CharField(max_length=32, blank=True)
    job_id = models.CharField(max_length=32, blank=True)
    task_id = models.CharField(max_length=32, blank=True)
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, blank=True)
    reason = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        # The table was created by the jobs app, which held this model before.
        db_table = "jobs_auditevent"
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["job_id", "-id"], name="audit_job"),
            models.Index(fields=["account_id", "-id"], name="audit_account"),
            models.Index(fields=["command", "-id"], name="audit_command"),
            models.Index(fields=["actor", "-id"], name="audit_actor"),
        ]

    def __str__(self) -> str:
        return f"{self.command} {self.job_id or self.account_id} by {self.actor}"


class AuditEventJob(models.Model):
    """A job that an audit event about many jobs touched: a batch of a bulk operation, a
    search-delete, the creation of a task's jobs. A job's audit query (core.audit.for_job) finds
    such an event through this link; an event about one job names it in its own `job_id`.
    Written with COPY beside the event (core.audit.link_jobs). The primary key, job first, is
    the index that query reads."""

    pk = models.CompositePrimaryKey("job_id", "event_id")
    job_id = models.CharField(max_length=32)
    event = models.ForeignKey(
        AuditEvent, on_delete=models.CASCADE, related_name="job_links", db_index=False
    )

    class Meta:
        db_table = "core_auditeventjob"
        # The event's own index: deleting an event (retention) finds its links.
        indexes = [models.Index(fields=["event"], name="audit_event_job_event")]

    def __str__(self) -> str:
        return f"{self.event_id} {self.job_id}"


class IdempotencyRecord(models.Model):
    """The stored answer to a POST sent with an Idempotency-Key, replayed for 24 hours."""

    principal = models.CharField(max_length=200)
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    body_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        db_table = "jobs_idempotencyrecord"
        constraints = [
            models.UniqueConstraint(fields=["principal", "key"], name="idempotency_unique")
        ]

    def __str__(self) -> str:
        return f"{self.principal} {self.key}"
