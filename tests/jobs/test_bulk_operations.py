"""Bulk operations (jobs.services.bulk) on a real database: each command, the fixed set, skips
by reason, pacing by the timestamps it writes, cancellation midway, running twice, and the
audit trail each job's own query finds."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.errors import Conflict, ValidationFailed
from core.models import AuditEvent, AuditEventJob
from jobs import services
from jobs.models import BulkOperation, BulkOperationChunk, Job
from jobs.selectors import bulk_progress as progress
from jobs.selectors import job_timeline
from jobs.states import BulkStatus, JobStatus

FAILED = {"status": ["failed"]}


@pytest.fixture
def small_batches(settings):
    settings.JOBS_BULK_BATCH_SIZE = 2
    settings.JOBS_BULK_DEFAULT_RATE = 0


def create(account, actor, command="retry", filters=FAILED, **kwargs):
    return services.bulk_operation_create(
        command=command,
        filters=filters,
        account_id=account.pk if account else None,
        actor=actor,
        **kwargs,
    )


def run_all(operation, **kwargs):
    result = services.bulk_operation_run(operation.pk, **kwargs)
    operation.refresh_from_db()
    return result


def events_of(job_id: str) -> list[str]:
    from core.audit import for_job

    return list(
        AuditEvent.objects.filter(for_job(job_id)).order_by("id").values_list("command", flat=True)
    )


def test_retry_as_an_operation_queues_each_failed_job_once_with_one_more_attempt(
    account, actor, make_job, small_batches, django_capture_on_commit_callbacks
):
    spent = make_job(status=JobStatus.FAILED, attempt_count=3, max_attempts=3)
    others = [make_job(status=JobStatus.FAILED) for _ in range(4)]
    untouched = make_job(status=JobStatus.SUCCEEDED)
    operation = create(account, actor, note="provider is back")
    assert (operation.matched, operation.batches, operation.batch_size) == (5, 3, 2)
    assert BulkOperationChunk.objects.filter(operation=operation).count() == 3

    assert run_all(operation) == "succeeded"
    assert operation.status == BulkStatus.SUCCEEDED
    assert (operation.done, operation.skipped, operation.failed) == (5, {}, 0)
    for job in [spent, *others]:
        job.refresh_from_db()
        assert job.status == JobStatus.QUEUED
        assert job.enqueued_at is not None and job.resolution is None
        assert events_of(job.pk) == ["retry"]  # factory jobs have no creation event
    spent.refresh_from_db()
    assert spent.max_attempts == 4  # one more attempt, as job_retry grants
    untouched.refresh_from_db()
    assert untouched.status == JobStatus.SUCCEEDED
    batch_events = AuditEvent.objects.filter(command="retry", data__bulk_operation_id=operation.pk)
    assert batch_events.count() == 3
    assert sorted(j for e in batch_events for j in e.data["job_ids"]) == sorted(
        j.pk for j in [spent, *others]
    )
    assert {e.reason for e in batch_events} == {"provider is back"}
    assert progress(operation)["remaining"] == 0

    # Running it again acts on nothing.
    assert run_all(operation) == "succeeded"
    assert AuditEventJob.objects.filter(job_id=spent.pk).count() == 1


def test_resolve_trigger_and_delete_as_operations(account, actor, make_job, small_batches):
    to_resolve = [make_job(status=JobStatus.FAILED, action="noop") for _ in range(3)]
    op = create(
        account,
        actor,
        "resolve",
        {"action": ["noop"], "status": ["failed"]},
        note="fixed upstream",
        inputs={"code": "fixed"},
    )
    run_all(op)
    for job in to_resolve:
        job.refresh_from_db()
        assert job.status == JobStatus.RESOLVED
        assert job.resolution["code"] == "fixed" and job.resolution["note"] == "fixed upstream"
        assert job.finished_at is not None

    done = [make_job(status=JobStatus.SUCCEEDED, action="sleep") for _ in range(3)]
    op = create(account, actor, "trigger", {"action": ["sleep"]}, pace=None)
    run_all(op)
    assert op.done == 3
    assert set(
        Job.objects.filter(pk__in=[j.pk for j in done]).values_list("status", flat=True)
    ) == {JobStatus.QUEUED}

    gone = [make_job(status=JobStatus.SCHEDULED, action="fail") for _ in range(3)]
    op = create(account, actor, "delete", {"action": ["fail"]})
    run_all(op)
    assert op.done == 3
    assert not Job.objects.filter(pk__in=[j.pk for j in gone]).exists()
    for job in gone:
        assert events_of(job.pk) == ["delete"]  # its trail outlives it


def test_resolve_needs_a_code_and_a_note_and_delete_a_filter(account, actor):
    with pytest.raises(ValidationFailed) as error:
        create(account, actor, "resolve", note="why", inputs={"code": "NOT A CODE"})
    assert "code" in error.value.fields
    with pytest.raises(ValidationFailed) as error:
        create(account, actor, "resolve", inputs={"code": "fixed"})
    assert "note" in error.value.fields
    with pytest.raises(ValidationFailed) as error:
        create(account, actor, "delete", {})
    assert error.value.code == "empty_filter"
    with pytest.raises(ValidationFailed) as error:
        create(account, actor, "update")
    assert "command" in error.value.fields


def test_the_set_is_fixed_at_creation(account, actor, make_job, small_batches):
    before = [make_job(status=JobStatus.FAILED) for _ in range(3)]
    operation = create(account, actor)
    later = make_job(status=JobStatus.FAILED)  # fails after the operation was created
    run_all(operation)
    assert operation.matched == operation.done == 3
    later.refresh_from_db()
    assert later.status == JobStatus.FAILED
    assert all(Job.objects.get(pk=j.pk).status == JobStatus.QUEUED for j in before)


def test_skipped_jobs_are_counted_by_reason(account, actor, make_job, small_batches):
    jobs = [make_job(status=JobStatus.FAILED) for _ in range(5)]
    operation = create(account, actor)
    Job.objects.filter(pk=jobs[0].pk).update(status=JobStatus.RUNNING)
    Job.objects.filter(pk=jobs[1].pk).update(status=JobStatus.SUCCEEDED)
    Job.objects.filter(pk=jobs[2].pk).delete()
    run_all(operation)
    assert operation.done == 2
    assert operation.skipped == {"running": 1, "status_changed:succeeded": 1, "gone": 1}
    figures = progress(operation)
    assert (figures["matched"], figures["skipped"], figures["remaining"]) == (5, 3, 0)


def test_trigger_skips_a_job_whose_twin_is_running_unless_forced(
    account, actor, make_job, settings
):
    settings.JOBS_BULK_DEFAULT_RATE = 0
    make_job(status=JobStatus.RUNNING, action="imap_sync_messages")
    waiting = make_job(status=JobStatus.SCHEDULED, action="imap_sync_messages")
    op = create(account, actor, "trigger", {"status": ["scheduled"]})
    run_all(op)
    assert op.skipped == {"sibling_running": 1}
    op = create(account, actor, "trigger", {"status": ["scheduled"]}, inputs={"force": True})
    run_all(op)
    assert op.done == 1
    waiting.refresh_from_db()
    assert waiting.status == JobStatus.QUEUED


def test_across_accounts_and_within_one(account, other_account, actor, make_job, small_batches):
    mine = make_job(status=JobStatus.FAILED)
    theirs = make_job(account=other_account, status=JobStatus.FAILED)
    scoped = create(account, actor)
    assert scoped.matched == 1
    run_all(scoped)
    theirs.refresh_from_db()
    assert theirs.status == JobStatus.FAILED
    Job.objects.filter(pk=mine.pk).update(status=JobStatus.FAILED)
    across = create(None, actor)
    assert across.account_id is None and across.matched == 2
    run_all(across)
    assert across.done == 2


def test_across_accounts_each_account_gets_its_own_share_of_a_batch(
    account, other_account, actor, make_job, settings
):
    settings.JOBS_BULK_DEFAULT_RATE = 0
    mine = [make_job(status=JobStatus.FAILED) for _ in range(2)]
    theirs = make_job(account=other_account, status=JobStatus.FAILED)
    operation = create(None, actor)
    run_all(operation)
    assert operation.batches == 1
    events = AuditEvent.objects.filter(data__bulk_operation_id=operation.pk, command="retry")
    shares = {event.account_id: sorted(event.data["job_ids"]) for event in events}
    assert shares == {account.pk: sorted(j.pk for j in mine), other_account.pk: [theirs.pk]}
    assert events_of(theirs.pk) == ["retry"]


def test_a_dry_run_counts_and_creates_nothing(account, actor, make_job):
    make_job(status=JobStatus.FAILED)
    assert create(account, actor, dry_run=True) == 1
    assert not BulkOperation.objects.exists()


def test_pacing_shows_in_the_timestamps(account, actor, make_job, settings):
    settings.JOBS_BULK_BATCH_SIZE = 100
    jobs = [make_job(status=JobStatus.FAILED) for _ in range(6)]
    operation = create(account, actor, pace={"rate": 2})
    assert (operation.rate, operation.batch_size, operation.batches) == (2.0, 2, 3)
    t0 = timezone.now()
    assert run_all(operation, now=t0) == "paced"
    assert run_all(operation, now=t0 + timedelta(seconds=0.5)) == "paced"  # not due yet
    assert operation.done == 2 and operation.lease_until is None
    assert services.bulk_operations_dispatch(now=t0 + timedelta(seconds=0.5)) == []
    assert services.bulk_operations_dispatch(now=t0 + timedelta(seconds=1)) == [operation.pk]
    run_all(operation, now=t0 + timedelta(seconds=1))
    run_all(operation, now=t0 + timedelta(seconds=2))
    assert operation.status == BulkStatus.SUCCEEDED
    stamps = sorted((Job.objects.get(pk=j.pk).enqueued_at - t0).total_seconds() for j in jobs)
    assert stamps == [0, 0, 1, 1, 2, 2]


def test_a_window_becomes_a_rate_and_the_default_pace_applies(account, actor, make_job, settings):
    settings.JOBS_BULK_DEFAULT_RATE = 500
    for _ in range(10):
        make_job(status=JobStatus.FAILED)
    assert create(account, actor, pace={"window_seconds": 5}).rate == 2.0
    assert create(account, actor, default_pace=True).rate == 500.0
    assert create(account, actor, pace=None).rate is None
    with pytest.raises(ValidationFailed):
        create(account, actor, "delete", pace={"rate": 5})


def test_cancel_midway_keeps_what_was_done(account, actor, make_job, settings):
    settings.JOBS_BULK_BATCH_SIZE = 100
    jobs = [make_job(status=JobStatus.FAILED) for _ in range(6)]
    operation = create(account, actor, pace={"rate": 2})
    t0 = timezone.now()
    run_all(operation, now=t0)
    cancelled = services.bulk_operation_cancel(operation_id=operation.pk, actor=actor, note="stop")
    assert cancelled.status == BulkStatus.CANCELLED
    assert run_all(operation, now=t0 + timedelta(seconds=5)) == BulkStatus.CANCELLED
    assert operation.done == 2
    assert sum(Job.objects.get(pk=j.pk).status == JobStatus.QUEUED for j in jobs) == 2
    assert AuditEvent.objects.filter(
        command="bulk_cancel", data__bulk_operation_id=operation.pk
    ).exists()
    with pytest.raises(Conflict) as error:
        services.bulk_operation_cancel(operation_id=operation.pk, actor=actor)
    assert error.value.extra["current_status"] == "cancelled"
    assert progress(operation)["eta_seconds"] is None


def test_a_batch_interrupted_midway_is_done_again_once(
    account, actor, make_job, small_batches, monkeypatch
):
    """A worker that dies in a batch leaves nothing of it (its transaction is rolled back): the
    next run does that batch from the start, and no job is acted on twice."""
    from jobs.services import bulk

    jobs = [make_job(status=JobStatus.FAILED) for _ in range(6)]
    operation = create(account, actor)
    real = bulk.insert_plain_rows
    calls = {"n": 0}

    def dies_in_the_second_batch(*args):
        calls["n"] += 1
        real(*args)
        if calls["n"] == 2:
            raise KeyboardInterrupt  # as a kill: nothing after this in the batch commits

    monkeypatch.setattr(bulk, "insert_plain_rows", dies_in_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        services.bulk_operation_run(operation.pk)
    operation.refresh_from_db()
    assert (operation.next_batch, operation.done) == (1, 2)
    assert Job.objects.filter(status=JobStatus.QUEUED).count() == 2
    monkeypatch.setattr(bulk, "insert_plain_rows", real)
    run_all(operation)
    assert operation.done == 6
    for job in jobs:
        assert AuditEventJob.objects.filter(job_id=job.pk).count() == 1


def test_a_jobs_audit_query_finds_its_creation_its_operation_and_its_search_delete(
    account, actor, settings
):
    """The issue's case: a job created by a task, retried by an operation, then deleted by a
    search-delete; GET /api/audit-events?job_id= finds all three (tests/api has the HTTP)."""
    settings.JOBS_BULK_DEFAULT_RATE = 0
    task = services.task_create(
        account=account, kind="noop_batch", params={"count": 3}, actor=actor
    )
    job = task.jobs.order_by("id").first()
    Job.objects.filter(task=task).update(status=JobStatus.FAILED)
    run_all(create(account, actor, filters={"task_id": task.pk, "status": "failed"}))
    services.jobs_search_delete(
        account_id=account.pk, filters={"task_id": task.pk}, actor=actor, expected_count=3
    )
    assert events_of(job.pk) == ["create_task", "retry", "search_delete"]


def test_search_delete_links_each_deleted_job_to_its_event(account, actor, make_job):
    jobs = [make_job(status=JobStatus.FAILED, action="fail") for _ in range(3)]
    result = services.jobs_search_delete(
        account_id=account.pk, filters={"action": "fail"}, actor=actor, expected_count=3
    )
    assert result["deleted"] == 3
    for job in jobs:
        assert events_of(job.pk)[-1] == "search_delete"


def test_the_timeline_of_a_job_shows_its_bulk_operation(account, actor, make_job, small_batches):
    job = make_job(status=JobStatus.FAILED)
    run_all(create(account, actor))
    job.refresh_from_db()
    assert "retry" in [event.command for event in job_timeline(job)]


def test_cancel_as_an_operation_records_a_request_on_each_running_job_and_counts_the_rest(
    account, actor, make_job, small_batches
):
    running = [make_job(status=JobStatus.RUNNING, worker="w1") for _ in range(3)]
    queued = make_job(status=JobStatus.QUEUED)
    operation = create(
        account,
        actor,
        command="cancel",
        filters={"status": ["running", "queued"]},
        note="provider down again",
    )
    assert operation.matched == 4
    # One of them is cancelled by hand first: the batch leaves it alone and says why.
    services.job_cancel(job_id=running[0].pk, actor=actor, note="by hand")

    assert run_all(operation) == "succeeded"
    assert operation.done == 2
    assert operation.skipped == {"cancel_pending": 1, "status_changed:queued": 1}
    for job in running:
        job.refresh_from_db()
        assert job.status == JobStatus.RUNNING  # its worker stops it at its next check
        assert job.cancel_requested_at is not None
    assert [j.cancel_note for j in running] == [
        "by hand",
        "provider down again",
        "provider down again",
    ]
    assert events_of(running[1].pk) == ["cancel"]
    queued.refresh_from_db()
    assert queued.status == JobStatus.QUEUED and queued.cancel_requested_at is None


def test_a_bulk_retry_clears_the_cancel_request_and_the_limit_wait_of_the_run_before(
    account, actor, make_job, small_batches
):
    job = make_job(status=JobStatus.RESOLVED)
    Job.objects.filter(pk=job.pk).update(
        cancel_requested_at=timezone.now(), cancel_requested_by="user:x", cancel_note="stop"
    )
    operation = create(account, actor, command="trigger", filters={"status": ["resolved"]})
    assert run_all(operation) == "succeeded"
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert (job.cancel_requested_at, job.cancel_requested_by, job.cancel_note) == (None, "", "")
    assert (job.wait_reason, job.ignore_limit) == ("", False)


def test_a_batch_that_fails_as_a_whole_is_done_one_job_at_a_time(
    account, actor, make_job, small_batches, caplog
):
    """A row the set-based UPDATE cannot change (the database refuses it: a trigger standing
    for a constraint a restore brought along, as in test_poisoned_rows) fails its whole batch;
    the batch is then done through the per-job service, each job alone: the good jobs are
    retried and counted done, the refused one is counted failed and left as it was, the other
    batches are untouched by the detour, and the operation finishes."""
    import logging

    from tests.poison import refuse_updates

    caplog.set_level(logging.WARNING, logger="jobs.services.bulk")
    jobs = [make_job(status=JobStatus.FAILED) for _ in range(5)]
    bad = jobs[1]  # in the first batch (ids in order: jobs[0], jobs[1])
    refuse_updates(bad.pk)
    operation = create(account, actor, note="provider is back")
    assert (operation.matched, operation.batches) == (5, 3)

    assert run_all(operation) == "succeeded"
    assert operation.status == BulkStatus.SUCCEEDED and operation.finished_at is not None
    assert (operation.done, operation.failed, operation.skipped) == (4, 1, {})
    assert progress(operation)["remaining"] == 0
    assert [Job.objects.get(pk=job.pk).status for job in jobs] == [
        JobStatus.QUEUED,
        JobStatus.FAILED,
        JobStatus.QUEUED,
        JobStatus.QUEUED,
        JobStatus.QUEUED,
    ]
    fallback = [r.getMessage() for r in caplog.records if "one by one" in r.getMessage()]
    assert len(fallback) == 1 and "batch 0 failed" in fallback[0]
    # Each job retried once, with one audit event: the per-job service's for the detour's
    # good job, the batch's for the others; none for the refused job.
    assert events_of(jobs[0].pk) == ["retry"]
    assert all(events_of(job.pk) == ["retry"] for job in jobs[2:])
    assert events_of(bad.pk) == []
