"""What jobs.broker puts on django-q2's brokers, read back the way a cluster reads it."""

from __future__ import annotations

from django_q.brokers import get_broker
from django_q.signing import SignedPackage

from jobs import services
from jobs.actions.registry import JobSpec
from jobs.states import JobStatus


def next_job_ids(broker, count: int) -> list[str]:
    """The jobs of the next `count` messages a cluster would take."""
    return [SignedPackage.loads(broker.dequeue()[0][1])["args"][0] for _ in range(count)]


def test_on_redis_a_triggered_job_goes_ahead_of_the_line(
    account, actor, make_job, redis_queue, django_capture_on_commit_callbacks
):
    failed = make_job(status=JobStatus.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        waiting = services.jobs_create(
            account=account, specs=[JobSpec("noop") for _ in range(3)], actor=actor
        )
    with django_capture_on_commit_callbacks(execute=True):
        services.job_trigger(job_id=failed.pk, actor=actor)

    assert next_job_ids(get_broker(), 4) == [failed.pk, *(job.pk for job in waiting)]


def test_on_redis_a_batch_keeps_its_order(
    account, actor, redis_queue, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        jobs = services.jobs_create(
            account=account, specs=[JobSpec("noop") for _ in range(3)], actor=actor
        )

    assert next_job_ids(get_broker(), 3) == [job.pk for job in jobs]
