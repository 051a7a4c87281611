"""What jobs.broker puts on django-q2's brokers, read back the way a cluster reads it: first in,
first out, except what goes ahead of the line."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from django_q.brokers import get_broker
from django_q.models import OrmQ

from jobs import broker, services
from jobs.actions.registry import JobSpec
from jobs.states import JobStatus


def create_queued(account, actor, capture, count: int) -> list[str]:
    with capture(execute=True):
        jobs = services.jobs_create(
            account=account, specs=[JobSpec("noop") for _ in range(count)], actor=actor
        )
    return [job.pk for job in jobs]


def test_a_batch_keeps_its_order(
    any_broker, account, actor, django_capture_on_commit_callbacks, next_job_ids
):
    ids = create_queued(account, actor, django_capture_on_commit_callbacks, 3)

    assert next_job_ids(3) == ids


def test_a_triggered_job_goes_ahead_of_the_line(
    any_broker, account, actor, make_job, django_capture_on_commit_callbacks, next_job_ids
):
    failed = make_job(status=JobStatus.FAILED)
    waiting = create_queued(account, actor, django_capture_on_commit_callbacks, 3)
    with django_capture_on_commit_callbacks(execute=True):
        services.job_trigger(job_id=failed.pk, actor=actor)

    assert next_job_ids(4) == [failed.pk, *waiting]


def test_messages_sent_ahead_keep_their_order_whatever_the_batch_size(
    any_broker, account, actor, monkeypatch, django_capture_on_commit_callbacks, next_job_ids
):
    [waiting] = create_queued(account, actor, django_capture_on_commit_callbacks, 1)
    monkeypatch.setattr(broker, "BATCH_SIZE", 2)

    broker.enqueue(["job_a", "job_b", "job_c"], ahead=True)

    assert next_job_ids(4) == ["job_a", "job_b", "job_c", waiting]


def test_on_the_orm_broker_a_message_a_dead_cluster_held_comes_back_first(
    account, actor, django_capture_on_commit_callbacks, next_job_ids
):
    first, second = create_queued(account, actor, django_capture_on_commit_callbacks, 2)
    [(message_id, _)] = get_broker().dequeue()  # taken by a cluster that then died
    assert OrmQ.objects.get(pk=message_id).lock > timezone.now()  # held: nobody else takes it
    assert next_job_ids(1) == [second]
    OrmQ.objects.filter(pk=message_id).update(lock=timezone.now() - timedelta(seconds=1))
    # The hold expired (django-q2's retry period): visible again, and it has waited longest.
    with django_capture_on_commit_callbacks(execute=True):
        [third] = services.jobs_create(account=account, specs=[JobSpec("noop")], actor=actor)

    assert next_job_ids(2) == [first, third.pk]
