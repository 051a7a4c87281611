"""What jobs.broker puts on django-q2's brokers, read back the way a cluster reads it."""

from __future__ import annotations

from jobs import broker, services
from jobs.actions.registry import JobSpec
from jobs.states import JobStatus


def test_on_redis_a_triggered_job_goes_ahead_of_the_line(
    account, actor, make_job, redis_queue, django_capture_on_commit_callbacks, next_job_ids
):
    failed = make_job(status=JobStatus.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        waiting = services.jobs_create(
            account=account, specs=[JobSpec("noop") for _ in range(3)], actor=actor
        )
    with django_capture_on_commit_callbacks(execute=True):
        services.job_trigger(job_id=failed.pk, actor=actor)

    assert next_job_ids(4) == [failed.pk, *(job.pk for job in waiting)]


def test_on_redis_a_batch_keeps_its_order(
    account, actor, redis_queue, django_capture_on_commit_callbacks, next_job_ids
):
    with django_capture_on_commit_callbacks(execute=True):
        jobs = services.jobs_create(
            account=account, specs=[JobSpec("noop") for _ in range(3)], actor=actor
        )

    assert next_job_ids(3) == [job.pk for job in jobs]


def test_on_redis_messages_sent_ahead_keep_their_order_across_batches(
    account, actor, redis_queue, monkeypatch, django_capture_on_commit_callbacks, next_job_ids
):
    with django_capture_on_commit_callbacks(execute=True):
        waiting = services.jobs_create(account=account, specs=[JobSpec("noop")], actor=actor)
    monkeypatch.setattr(broker, "BATCH_SIZE", 2)

    broker.enqueue(["job_a", "job_b", "job_c"], ahead=True)

    assert next_job_ids(4) == ["job_a", "job_b", "job_c", waiting[0].pk]
