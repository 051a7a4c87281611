"""The sweeper sends a queued job's message again only when it may have been lost, never for a
job that merely waits behind a backlog its message is part of (ORM broker, the test database)."""

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
    """Three queued jobs, each with its message in the broker."""

    def make(count: int = 3) -> list[str]:
        with django_capture_on_commit_callbacks(execute=True):
            jobs = services.jobs_create(
                account=account, specs=[JobSpec("noop") for _ in range(count)], actor=actor
            )
        return [job.pk for job in jobs]

    return make


@pytest.fixture
def stale(settings):
    """A sweep's clock at which every job queued so far has waited past the bound."""
    return timezone.now() + timedelta(seconds=settings.JOBS_REQUEUE_AFTER_SECONDS + 1)


def messages() -> list[str]:
    """The job ids the broker's waiting messages are for."""
    return sorted(message.task["args"][0] for message in OrmQ.objects.all())


def requeue(now, capture) -> list[str]:
    with capture(execute=True):
        return services.jobs_requeue_unclaimed(now=now)


def test_a_job_whose_message_was_lost_is_enqueued_again(
    queued_jobs, stale, django_capture_on_commit_callbacks
):
    [job_id] = queued_jobs(1)
    OrmQ.objects.all().delete()  # the broker lost the message

    assert requeue(stale, django_capture_on_commit_callbacks) == [job_id]
    assert messages() == [job_id]
    assert Job.objects.get(pk=job_id).enqueued_at > stale - timedelta(seconds=1)
    # Sent again once per bound, not on every sweep.
    assert requeue(stale, django_capture_on_commit_callbacks) == []
    assert messages() == [job_id]


def test_jobs_waiting_behind_a_backlog_are_not_enqueued_twice(
    queued_jobs, stale, django_capture_on_commit_callbacks
):
    ids = queued_jobs(3)
    enqueued_at = sorted(Job.objects.values_list("enqueued_at", flat=True))

    assert requeue(stale, django_capture_on_commit_callbacks) == []
    assert messages() == sorted(ids)  # no duplicates behind the backlog
    assert sorted(Job.objects.values_list("enqueued_at", flat=True)) == enqueued_at


def test_fewer_messages_than_queued_jobs_sends_the_stale_ones_again(
    queued_jobs, stale, django_capture_on_commit_callbacks
):
    ids = queued_jobs(3)
    OrmQ.objects.filter(pk=OrmQ.objects.order_by("pk").first().pk).delete()

    # Which message was lost is not known: every stale job is sent again, and the claim of a
    # job that is not queued any more is a no-op.
    assert sorted(requeue(stale, django_capture_on_commit_callbacks)) == sorted(ids)
    assert len(messages()) == 5


def test_messages_a_dead_cluster_had_taken_do_not_count_as_waiting(
    queued_jobs, stale, django_capture_on_commit_callbacks
):
    ids = queued_jobs(2)
    # The ORM broker locks the messages a cluster takes until its retry period ends: a cluster
    # killed with them in memory would leave them invisible for that long.
    OrmQ.objects.update(lock=timezone.now() + timedelta(hours=1))

    assert sorted(requeue(stale, django_capture_on_commit_callbacks)) == sorted(ids)
    assert OrmQ.objects.filter(lock__lte=timezone.now()).count() == 2


def test_on_redis_the_backlog_is_the_length_of_the_queue(
    queued_jobs, stale, django_capture_on_commit_callbacks, redis_queue
):
    client, key = redis_queue
    ids = queued_jobs(2)
    assert client.llen(key) == 2
    assert requeue(stale, django_capture_on_commit_callbacks) == []
    assert client.llen(key) == 2

    client.lpop(key)  # a message lost with a cluster that had taken it
    assert sorted(requeue(stale, django_capture_on_commit_callbacks)) == sorted(ids)
    assert client.llen(key) == 3
