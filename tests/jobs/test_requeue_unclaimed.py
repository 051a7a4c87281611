"""The sweeper sends a new message for a queued job nobody claimed within the bound, once per
bound, longest-waiting first, back in its place in the line: the job may have lost its message,
or only waited behind a backlog."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ

from jobs import services
from jobs.execution.actions.registry import JobSpec
from jobs.models import Job


@pytest.fixture
def queued_jobs(account, actor, django_capture_on_commit_callbacks):
    """Queued jobs, each with its message on the broker; `waited` makes them queued that long
    ago."""

    def make(count: int, *, waited: timedelta | None = None) -> list[str]:
        with django_capture_on_commit_callbacks(execute=True):
            jobs = services.jobs_create(
                account=account, specs=[JobSpec("noop") for _ in range(count)], actor=actor
            )
        ids = [job.pk for job in jobs]
        if waited:
            Job.objects.filter(pk__in=ids).update(enqueued_at=timezone.now() - waited)
        return ids

    return make


@pytest.fixture
def requeue(django_capture_on_commit_callbacks):
    def sweep() -> list[str]:
        with django_capture_on_commit_callbacks(execute=True):
            return services.jobs_requeue_unclaimed()

    return sweep


HOUR = timedelta(hours=1)


def test_a_job_whose_message_was_lost_is_enqueued_again_once_per_bound(
    orm_queue, queued_jobs, requeue
):
    [job_id] = queued_jobs(1, waited=HOUR)
    OrmQ.objects.all().delete()  # the broker lost the message
    swept_at = timezone.now()

    assert requeue() == [job_id]
    assert [message.task["args"][0] for message in OrmQ.objects.all()] == [job_id]
    assert Job.objects.get(pk=job_id).enqueued_at >= swept_at
    assert requeue() == []  # not again on the next sweep
    assert OrmQ.objects.count() == 1


def test_jobs_claimed_or_within_the_bound_are_left_alone(orm_queue, queued_jobs, requeue, make_job):
    queued_jobs(2)
    make_job(status="running")

    assert requeue() == []
    assert OrmQ.objects.count() == 2


def test_the_longest_waiting_jobs_are_sent_again_first(orm_queue, queued_jobs, requeue):
    later = queued_jobs(1, waited=HOUR)
    earlier = queued_jobs(1, waited=2 * HOUR)

    assert requeue() == [*earlier, *later]


def test_jobs_that_waited_too_long_go_back_in_their_place(
    any_broker, queued_jobs, requeue, next_job_ids
):
    waited = queued_jobs(2, waited=HOUR)  # messages lost, or deep in a backlog: all the same
    fresh = queued_jobs(2)

    assert requeue() == waited
    # The ORM broker puts them back an hour ago: ahead of every message sent since, in their
    # order, with their first messages where they were (now no-op claims); Redis at the head.
    assert next_job_ids(6) == [*waited, *waited, *fresh]
