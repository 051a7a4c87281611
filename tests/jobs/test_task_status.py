"""A task's status is derived from its jobs and kept current in the same transaction."""

from __future__ import annotations

import pytest

from core.errors import ValidationFailed
from jobs import services
from jobs.models import Task
from jobs.states import JobStatus, TaskStatus, derive_task_status

S = JobStatus


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({}, TaskStatus.EMPTY),
        ({S.QUEUED: 2}, TaskStatus.PENDING),
        ({S.SCHEDULED: 1, S.QUEUED: 1}, TaskStatus.PENDING),
        ({S.RUNNING: 1, S.QUEUED: 1}, TaskStatus.RUNNING),
        ({S.SUCCEEDED: 1, S.QUEUED: 1}, TaskStatus.RUNNING),
        ({S.SUCCEEDED: 2}, TaskStatus.SUCCEEDED),
        ({S.SUCCEEDED: 1, S.RESOLVED: 1}, TaskStatus.SUCCEEDED),
        ({S.SUCCEEDED: 1, S.FAILED: 1}, TaskStatus.FAILED),
        ({S.STALLED: 1}, TaskStatus.FAILED),
    ],
)
def test_derivation(counts, expected):
    assert derive_task_status(counts) == expected


def status_of(task) -> str:
    return Task.objects.get(pk=task.pk).status


def test_task_follows_its_jobs_through_every_transition(account, actor):
    task = services.task_create(
        account=account, kind="noop_batch", params={"count": 2}, actor=actor
    )
    first, second = task.jobs.order_by("id")
    assert status_of(task) == TaskStatus.PENDING

    attempt = services.job_claim(job_id=first.pk, worker="w")
    assert status_of(task) == TaskStatus.RUNNING
    services.job_fail(
        job_id=first.pk, attempt=attempt.number, code="boom", detail="x", retryable=False
    )
    assert status_of(task) == TaskStatus.RUNNING  # the second job is still queued

    attempt = services.job_claim(job_id=second.pk, worker="w")
    services.job_succeed(job_id=second.pk, attempt=attempt.number, result={})
    assert status_of(task) == TaskStatus.FAILED

    services.job_retry(job_id=first.pk, actor=actor)
    assert status_of(task) == TaskStatus.RUNNING

    services.job_resolve(job_id=first.pk, actor=actor, code="ignored", note="not needed")
    assert status_of(task) == TaskStatus.SUCCEEDED

    services.job_trigger(job_id=second.pk, actor=actor)
    assert status_of(task) == TaskStatus.RUNNING

    services.job_update(job_id=second.pk, actor=actor, changes={"run_at": "2099-01-01T00:00:00Z"})
    assert status_of(task) == TaskStatus.RUNNING  # one resolved, one scheduled

    services.job_delete(job_id=second.pk, actor=actor)
    assert status_of(task) == TaskStatus.SUCCEEDED

    services.jobs_search_delete(
        account_id=account.pk, filters={"task_id": task.pk}, actor=actor, expected_count=1
    )
    assert status_of(task) == TaskStatus.EMPTY


def test_lost_run_and_dispatch_update_the_task(account, actor, settings):
    settings.JOBS_STALL_GRACE_SECONDS = 0
    task = services.task_create(
        account=account, kind="noop_batch", params={"count": 1}, actor=actor
    )
    job = task.jobs.get()
    job.max_attempts = 1
    job.save()
    services.job_claim(job_id=job.pk, worker="w")
    assert services.jobs_sweep_lost() == [job.pk]
    job.refresh_from_db()
    assert job.status == S.STALLED
    assert status_of(task) == TaskStatus.FAILED


def test_task_create_rejects_unknown_kind_and_bad_params(account, actor):
    with pytest.raises(ValidationFailed) as excinfo:
        services.task_create(account=account, kind="nope", params={}, actor=actor)
    assert "kind" in excinfo.value.fields
    with pytest.raises(ValidationFailed) as excinfo:
        services.task_create(account=account, kind="noop_batch", params={"count": 0}, actor=actor)
    assert "params" in excinfo.value.fields
    assert not Task.objects.exists()
