from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.errors import ValidationFailed
from core.ids import is_valid_id
from core.models import AuditEvent
from jobs import services
from jobs.execution.actions.registry import JobSpec
from jobs.models import Job, ProviderEvent
from jobs.states import JobStatus


def test_batched_creation_queues_due_jobs_after_commit(
    account, actor, django_capture_on_commit_callbacks
):
    later = timezone.now() + timedelta(hours=1)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        jobs = services.jobs_create(
            account=account,
            specs=[JobSpec("noop"), JobSpec("noop", run_at=later), JobSpec("noop", priority=5)],
            actor=actor,
        )
    assert [job.status for job in jobs] == [JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.QUEUED]
    assert len(callbacks) == 1  # one enqueue call for the batch, after commit
    assert all(is_valid_id(job.pk, "job") for job in jobs)
    assert [job.pk for job in jobs] == sorted(job.pk for job in jobs)  # ids sort by creation
    assert AuditEvent.objects.filter(command="create", job_id__in=[j.pk for j in jobs]).count() == 3


def test_paused_account_jobs_wait_scheduled(account, actor):
    account.paused_at = timezone.now()
    account.save()
    job = services.job_create(account=account, action="noop", actor=actor)
    assert job.status == JobStatus.SCHEDULED
    assert services.jobs_dispatch_due() == []
    from accounts.services import account_resume

    account_resume(account_id=account.pk, actor=actor)
    assert services.jobs_dispatch_due() == [job.pk]
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert AuditEvent.objects.filter(job_id=job.pk, command="dispatch").count() == 1


def test_dispatch_takes_highest_priority_first(account, actor):
    past = timezone.now() - timedelta(seconds=1)
    low = services.job_create(account=account, action="noop", actor=actor, run_at=past)
    Job.objects.filter(pk=low.pk).update(status=JobStatus.SCHEDULED)
    high = services.job_create(account=account, action="noop", actor=actor, run_at=past, priority=9)
    Job.objects.filter(pk=high.pk).update(status=JobStatus.SCHEDULED)
    assert services.jobs_dispatch_due(limit=1) == [high.pk]


def test_unknown_action_is_refused(account, actor):
    with pytest.raises(ValidationFailed) as excinfo:
        services.job_create(account=account, action="no_such_action", actor=actor)
    assert "action" in excinfo.value.fields
    assert not Job.objects.exists()


def test_provider_event_creates_jobs_once(account, actor):
    event, created = services.provider_event_ingest(
        account=account,
        provider="imap",
        type="mailbox.changed",
        external_id="x-1",
        payload={},
        actor=actor,
    )
    assert created
    assert event.job.action == "imap_sync_messages"
    assert event.job.provider_event_id == event.pk
    again, created = services.provider_event_ingest(
        account=account,
        provider="imap",
        type="mailbox.changed",
        external_id="x-1",
        payload={},
        actor=actor,
    )
    assert not created
    assert again.pk == event.pk
    assert Job.objects.count() == 1
    assert ProviderEvent.objects.count() == 1


def test_provider_event_coalesces_into_pending_sync(account, other_account, actor):
    first, _ = services.provider_event_ingest(
        account=account,
        provider="imap",
        type="mailbox.changed",
        external_id="a",
        payload={},
        actor=actor,
    )
    second, created = services.provider_event_ingest(
        account=account,
        provider="imap",
        type="message.created",
        external_id="b",
        payload={},
        actor=actor,
    )
    assert created and second.coalesced
    assert second.job_id == first.job_id
    # Another account gets its own job.
    foreign, _ = services.provider_event_ingest(
        account=other_account,
        provider="imap",
        type="mailbox.changed",
        external_id="a",
        payload={},
        actor=actor,
    )
    assert foreign.job_id != first.job_id
    # Once the sync runs, a new event creates a new job.
    services.job_claim(job_id=first.job_id, worker="w")
    third, _ = services.provider_event_ingest(
        account=account,
        provider="imap",
        type="mailbox.changed",
        external_id="c",
        payload={},
        actor=actor,
    )
    assert not third.coalesced and third.job_id != first.job_id


def test_unknown_event_type_is_refused(account, actor):
    with pytest.raises(ValidationFailed) as excinfo:
        services.provider_event_ingest(
            account=account, provider="imap", type="nope", external_id="a", payload={}, actor=actor
        )
    assert "type" in excinfo.value.fields
    assert not ProviderEvent.objects.exists()
