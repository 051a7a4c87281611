from __future__ import annotations

import pytest

from core.errors import ValidationFailed
from core.models import AuditEvent
from jobs import services
from jobs.models import Job, JobAttempt, ProviderEvent
from jobs.states import JobStatus


@pytest.fixture
def mixed_jobs(make_job, other_account):
    failed = [
        make_job(
            status=JobStatus.FAILED, action="imap_sync_messages", last_error_code="provider_timeout"
        )
        for _ in range(5)
    ]
    other_code = make_job(status=JobStatus.FAILED, last_error_code="provider_auth_failed")
    running = make_job(status=JobStatus.RUNNING, action="imap_sync_messages")
    succeeded = make_job(status=JobStatus.SUCCEEDED)
    foreign = make_job(
        account=other_account, status=JobStatus.FAILED, last_error_code="provider_timeout"
    )
    for job in failed:
        JobAttempt.objects.create(
            job=job, number=1, outcome="failed", error_code="provider_timeout"
        )
    return {
        "failed": failed,
        "other_code": other_code,
        "running": running,
        "succeeded": succeeded,
        "foreign": foreign,
    }


def test_dry_run_counts_and_deletes_nothing(account, actor, mixed_jobs):
    before = Job.objects.count()
    result = services.jobs_search_delete(
        account_id=account.pk,
        filters={"status": ["failed", "running"], "action": "imap_sync_messages"},
        actor=actor,
        dry_run=True,
    )
    assert result == {"matched": 6, "deleted": 0, "skipped_running": 1, "dry_run": True}
    assert Job.objects.count() == before
    assert not AuditEvent.objects.filter(command="search_delete").exists()


@pytest.mark.parametrize("filters", [{}, {"status": []}, {"q": "  "}, {"action": ""}])
def test_empty_filter_is_refused(account, actor, mixed_jobs, filters):
    before = Job.objects.count()
    with pytest.raises(ValidationFailed) as excinfo:
        services.jobs_search_delete(account_id=account.pk, filters=filters, actor=actor)
    assert excinfo.value.code == "empty_filter"
    assert Job.objects.count() == before


def test_unknown_filter_field_is_refused(account, actor, mixed_jobs):
    with pytest.raises(ValidationFailed) as excinfo:
        services.jobs_search_delete(
            account_id=account.pk, filters={"stauts": "failed"}, actor=actor
        )
    assert "stauts" in excinfo.value.fields


def test_deletes_matches_of_one_account_keeps_running_and_audits(account, actor, mixed_jobs):
    result = services.jobs_search_delete(
        account_id=account.pk,
        filters={"last_error_code": "provider_timeout", "status": "failed,running"},
        actor=actor,
        expected_count=5,
        batch_size=2,  # several batches
    )
    deleted_ids = {job.pk for job in mixed_jobs["failed"]}
    assert result == {"matched": 5, "deleted": 5, "skipped_running": 0, "dry_run": False}
    assert not Job.objects.filter(pk__in=deleted_ids).exists()
    assert not JobAttempt.objects.filter(job_id__in=deleted_ids).exists()
    # Other codes, the other account's job and the running job survive.
    for name in ("other_code", "running", "succeeded", "foreign"):
        assert Job.objects.filter(pk=mixed_jobs[name].pk).exists(), name

    event = AuditEvent.objects.get(command="search_delete")
    assert event.account_id == account.pk
    assert event.data["count"] == 5
    assert event.data["complete"] is True
    assert set(event.data["job_ids"]) == deleted_ids
    assert event.data["filter"] == {
        "last_error_code": ["provider_timeout"],
        "status": ["failed", "running"],
    }
    assert event.actor == actor.name


def test_running_jobs_survive_and_are_reported(account, actor, mixed_jobs):
    result = services.jobs_search_delete(
        account_id=account.pk,
        filters={"action": "imap_sync_messages"},
        actor=actor,
        expected_count=6,
    )
    assert result["matched"] == 6
    assert result["deleted"] == 5
    assert result["skipped_running"] == 1
    assert Job.objects.filter(pk=mixed_jobs["running"].pk).exists()


def test_audit_survives_and_provider_event_link_is_cleared(account, actor, make_job):
    job = make_job(status=JobStatus.FAILED)
    event = ProviderEvent.objects.create(
        account=account, provider="imap", type="mailbox.changed", external_id="e1", job=job
    )
    services.jobs_search_delete(
        account_id=account.pk, filters={"status": "failed"}, actor=actor, expected_count=1
    )
    event.refresh_from_db()
    assert event.job_id is None
    assert AuditEvent.objects.filter(command="search_delete", data__count=1).exists()


def test_search_delete_matches_the_search(account, actor, mixed_jobs):
    """What the filter shows is what gets deleted."""
    from jobs.filters import filter_jobs, normalize_filter_params

    filters = {"status": ["failed"], "attempt_count_min": 1}
    shown = set(
        filter_jobs(
            Job.objects.filter(account=account), normalize_filter_params(filters)
        ).values_list("pk", flat=True)
    )
    services.jobs_search_delete(
        account_id=account.pk, filters=filters, actor=actor, expected_count=len(shown)
    )
    event = AuditEvent.objects.get(command="search_delete")
    assert set(event.data["job_ids"]) == shown
