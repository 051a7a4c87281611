"""Factories for tests and benchmarks. Jobs are built directly in a given status, as the
services would have left them, so a test can start from any state."""

from __future__ import annotations

from datetime import timedelta

import factory
from django.utils import timezone

from accounts.models import Account
from core.ids import new_id
from jobs.models import Job, Task
from jobs.services import _rows
from jobs.states import JobStatus, TaskStatus


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account

    id = factory.LazyFunction(lambda: new_id("acc"))
    name = factory.Sequence(lambda n: f"Mailbox {n}")
    email = factory.Sequence(lambda n: f"user{n}@example.test")


class TaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Task

    id = factory.LazyFunction(lambda: new_id("tsk"))
    account = factory.SubFactory(AccountFactory)
    kind = "mailbox_sync"
    # What a task with no jobs is (jobs.states.derive_task_status); its jobs' factory counts
    # each one in, as the services do.
    status = TaskStatus.EMPTY


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job
        skip_postgeneration_save = True

    id = factory.LazyFunction(lambda: new_id("job"))
    account = factory.SubFactory(AccountFactory)
    action = "noop"
    payload = factory.LazyFunction(dict)
    status = JobStatus.QUEUED
    max_attempts = 3

    @factory.post_generation
    def in_status(obj, create, extracted, **kwargs):
        """Fill in what a job in obj.status would carry."""
        now = timezone.now()
        status = obj.status
        if status in {JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STALLED}:
            obj.attempt_count = obj.attempt_count or 1
            obj.started_at = obj.started_at or now - timedelta(seconds=5)
        if status == JobStatus.RUNNING:
            obj.heartbeat_at = obj.heartbeat_at or now
            obj.worker = obj.worker or "test-worker"
        if status in {JobStatus.FAILED, JobStatus.STALLED}:
            obj.last_error_code = obj.last_error_code or (
                "worker_lost" if status == JobStatus.STALLED else "provider_timeout"
            )
            obj.last_error_detail = obj.last_error_detail or "IMAP connection timed out"
            obj.last_error_at = obj.last_error_at or now
        if status in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STALLED, JobStatus.RESOLVED}:
            obj.finished_at = obj.finished_at or now
        if status == JobStatus.SCHEDULED and not kwargs.get("keep_run_at"):
            obj.run_at = now + timedelta(hours=1)
        if status == JobStatus.RESOLVED:
            obj.resolution = obj.resolution or {
                "code": "ignored",
                "note": "test",
                "by": "user:test",
                "at": now.isoformat(),
            }
        if create:
            obj.save()
            if obj.task_id:
                # Counted into its task, as the services count every job they create.
                _rows.refresh_task_statuses([obj.task_id])
