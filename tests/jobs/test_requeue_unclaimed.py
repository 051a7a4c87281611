"""The sweeper sends a new message for a queued job nobody claimed within the bound, once per
bound, ahead of the line: the job may have lost its message, or only waited behind a backlog."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ

from jobs import services
from jobs.actions.registry import JobSpec
from jobs.models import Job


@pytest.fixture
def queued_jobs(account, actor, django_capture_on_commit_callbacks):
    """Queued jobs, each with its message on the broker; `waited` makes them queued an hour
    ago, past any bound."""

    def make(count: int, *, waited: bool = False) -> list[str]:
        with django_capture_on_commit_callbacks(execute=True):
            jobs = services.jobs_create(
                account=account, specs=[JobSpec("noop") for _ in range(count)], actor=actor
            )
        ids = [job.pk for job in jobs]
        if waited:
            Job.objects.filter(pk__in=ids).update(enqueued_at=timezone.now() - timedelta(hours=1))
        return ids

    return make


@pytest.fixture
def requeue(django_capture_on_commit_callbacks):
    def sweep() -> list[str]:
        with django_capture_on_commit_callbacks(execute=True):
            return services.jobs_requeue_unclaimed()

    return sweep


def test_a_job_whose_message_was_lost_is_enqueued_again_once_per_bound(queued_jobs, requeue):
    [job_id] = queued_jobs(1, waited=True)
    OrmQ.objects.all().delete()  # the broker lost the message
    swept_at = timezone.now()

    assert requeue() == [job_id]
    assert [message.task["args"][0] for message in OrmQ.objects.all()] == [job_id]
    assert Job.objects.get(pk=job_id).enqueued_at >= swept_at
    assert requeue() == []  # not again on the next sweep
    assert OrmQ.objects.count() == 1


def test_jobs_claimed_or_within_the_bound_are_left_alone(queued_jobs, requeue, make_job):
    queued_jobs(2)
    make_job(status="running")

    assert requeue() == []
    assert OrmQ.objects.count() == 2


def test_on_redis_jobs_that_waited_too_long_go_ahead_of_the_line(
    queued_jobs, requeue, redis_queue, next_job_ids
):
    client, key = redis_queue
    waited = queued_jobs(2, waited=True)  # messages lost, or deep in a backlog: all the same
    fresh = queued_jobs(2)

    assert requeue() == waited
    assert client.llen(key) == 6
    # The longest-waiting jobs first, in their order, then the line as it was (the two old
    # messages of `waited` are now no-op claims).
    assert next_job_ids(6) == [*waited, *waited, *fresh]
