"""What jobs.execution.broker puts on django-q2's brokers, read back the way a cluster reads it:
first in, first out, with a lane ahead of the line for trigger."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from jobs import services
from jobs.execution import broker
from jobs.execution.actions.registry import JobSpec
from jobs.states import JobStatus


def create_queued(account, actor, capture, count: int) -> list[str]:
    with capture(execute=True):
        jobs = services.jobs_create(
            account=account, specs=[JobSpec("noop") for _ in range(count)], actor=actor
        )
    return [job.pk for job in jobs]


def trigger(job_id: str, actor, capture) -> None:
    with capture(execute=True):
        services.job_trigger(job_id=job_id, actor=actor)


def test_the_deployment_reads_through_the_ordered_brokers(any_broker):
    expected = broker.LanedRedis if any_broker == "redis" else broker.OrderedORM
    assert type(get_broker()) is expected


def test_batches_keep_their_order(
    any_broker, account, actor, monkeypatch, django_capture_on_commit_callbacks, next_job_ids
):
    monkeypatch.setattr(broker, "FIRST_BATCH", 1)
    monkeypatch.setattr(broker, "BATCH_SIZE", 2)
    ids = create_queued(account, actor, django_capture_on_commit_callbacks, 4)
    ids += create_queued(account, actor, django_capture_on_commit_callbacks, 2)

    assert next_job_ids(6) == ids


def test_triggered_jobs_go_ahead_of_the_line_in_the_order_they_were_triggered(
    any_broker, account, actor, make_job, django_capture_on_commit_callbacks, next_job_ids
):
    first, second = make_job(status=JobStatus.FAILED), make_job(status=JobStatus.RESOLVED)
    waiting = create_queued(account, actor, django_capture_on_commit_callbacks, 3)
    trigger(first.pk, actor, django_capture_on_commit_callbacks)
    trigger(second.pk, actor, django_capture_on_commit_callbacks)

    assert next_job_ids(5) == [first.pk, second.pk, *waiting]


def test_jobs_sent_again_go_behind_the_lane_ahead(
    any_broker, account, actor, make_job, django_capture_on_commit_callbacks, next_job_ids
):
    triggered = make_job(status=JobStatus.FAILED)
    waiting = create_queued(account, actor, django_capture_on_commit_callbacks, 2)
    trigger(triggered.pk, actor, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        broker.enqueue_again_on_commit({waiting[1]: timezone.now() - timedelta(hours=1)})

    # On the ORM broker back in its place, which an hour ago was first in line; on Redis at
    # the head of the line.
    assert next_job_ids(4) == [triggered.pk, waiting[1], *waiting]


def test_on_the_orm_broker_a_message_a_dead_cluster_held_comes_back_in_order(
    orm_queue, account, actor, django_capture_on_commit_callbacks, next_job_ids, monkeypatch
):
    monkeypatch.setattr(broker, "FAIR_BATCH", 1)  # the dead cluster took one message
    first, second = create_queued(account, actor, django_capture_on_commit_callbacks, 2)
    [(message_id, _)] = get_broker().dequeue()  # taken by a cluster that then dies
    third = create_queued(account, actor, django_capture_on_commit_callbacks, 1)[0]
    assert OrmQ.objects.get(pk=message_id).lock > timezone.now()  # held: nobody takes it
    # The hold expires (django-q2's retry period) before the others were sent.
    OrmQ.objects.filter(pk=message_id).update(lock=timezone.now() - timedelta(hours=1))

    assert next_job_ids(3) == [first, second, third]


def test_accounts_take_turns_so_a_flood_does_not_starve_the_others(
    any_broker, actor, django_capture_on_commit_callbacks, monkeypatch
):
    """Fair share: one cluster's broker takes the heads of the accounts' lines in turn; the
    lane ahead stays ahead of every line. (One message per turn here; the ORM broker takes up
    to FAIR_BATCH per read, so an account's turn is up to that many of its messages.)"""
    from django_q.signing import SignedPackage

    monkeypatch.setattr(broker, "FAIR_BATCH", 1)
    from tests.factories import AccountFactory

    flood, small, single = AccountFactory(), AccountFactory(), AccountFactory()
    a = create_queued(flood, actor, django_capture_on_commit_callbacks, 5)
    b = create_queued(small, actor, django_capture_on_commit_callbacks, 2)
    c = create_queued(single, actor, django_capture_on_commit_callbacks, 1)
    triggered = a[4]
    trigger(triggered, actor, django_capture_on_commit_callbacks)
    queue = get_broker()  # one cluster's broker: it remembers whose turn it is

    taken: list[str] = []
    while messages := queue.dequeue():
        taken += [SignedPackage.loads(message)["args"][0] for _, message in messages]

    assert taken[0] == triggered
    # Round robin over the accounts with messages: A, B, C, A, B, A, A, A (A's triggered job
    # came first, its own message in the line is a duplicate the claim ignores).
    assert taken[1:] == [a[0], b[0], c[0], a[1], b[1], a[2], a[3], a[4]]
    assert queue.queue_size() == 0


def test_a_message_of_a_job_no_longer_stored_still_goes_out(
    any_broker, account, actor, django_capture_on_commit_callbacks, next_job_ids
):
    """A message whose job is gone (deleted before its message was sent) is sent anyway, on
    the lane: the broker never drops one (the claim finds nothing and does nothing)."""
    broker.enqueue(["job_01J00000000000000000000000"])

    assert next_job_ids(1) == ["job_01J00000000000000000000000"]


def test_an_enqueue_that_names_the_account_sends_to_its_line_without_a_lookup(any_broker, account):
    """jobs_create knows the account of the jobs it creates, so their messages need no query
    to find it: a job id the table does not hold (a lookup would send it to the main line)
    still goes to the account's line."""
    broker.enqueue(["job_01J00000000000000000000000"], account_id=account.pk)

    queue = get_broker()
    if any_broker == "orm":
        line = broker.account_line_key(queue.list_key, account.pk)
        assert list(OrmQ.objects.values_list("key", flat=True)) == [line]
    else:
        assert queue.connection.llen(queue.line_key(account.pk)) == 1
        assert queue.connection.llen(queue.list_key) == 0


def test_on_the_orm_broker_a_turn_is_a_batch_of_the_next_accounts_messages(
    orm_queue, actor, django_capture_on_commit_callbacks, monkeypatch, next_job_ids
):
    from tests.factories import AccountFactory

    monkeypatch.setattr(broker, "FAIR_BATCH", 3)
    flood, small = AccountFactory(), AccountFactory()
    a = create_queued(flood, actor, django_capture_on_commit_callbacks, 7)
    b = create_queued(small, actor, django_capture_on_commit_callbacks, 2)
    queue = get_broker()
    from django_q.signing import SignedPackage

    turns = []
    while messages := queue.dequeue():
        turns.append([SignedPackage.loads(message)["args"][0] for _, message in messages])
    # Three of A, then three from the next account on, wrapping around (B's two, A's next),
    # then A's again.
    assert turns == [a[0:3], [*b, a[3]], a[4:7]]


def test_on_redis_a_busy_pusher_takes_a_batch_in_the_order_of_single_pops(
    db, redis_queue, actor, django_capture_on_commit_callbacks, monkeypatch
):
    """LanedRedis pops up to REDIS_BATCH messages of the accounts' lines per call while they
    wait, in turn, the order one pop at a time gives, each with its doorbell token; the lane
    ahead and the queue's own list still go first, one message at a time, as django-q2's own
    broker pops its list."""
    from django_q.signing import SignedPackage

    from tests.factories import AccountFactory

    monkeypatch.setattr(broker, "REDIS_BATCH", 3)
    flood, small = AccountFactory(), AccountFactory()
    a = create_queued(flood, actor, django_capture_on_commit_callbacks, 5)
    b = create_queued(small, actor, django_capture_on_commit_callbacks, 2)
    trigger(a[4], actor, django_capture_on_commit_callbacks)
    broker.enqueue(["job_01J00000000000000000000000"])  # no account known: the main line
    queue = get_broker()

    batches: list[list[str]] = []
    while messages := queue.dequeue():
        batches.append([SignedPackage.loads(message)["args"][0] for _, message in messages])

    taken = [job_id for batch in batches for job_id in batch]
    assert taken == [
        a[4],
        "job_01J00000000000000000000000",
        a[0],
        b[0],
        a[1],
        b[1],
        a[2],
        a[3],
        a[4],
    ]
    assert batches[:2] == [[a[4]], ["job_01J00000000000000000000000"]]
    assert [len(batch) for batch in batches[2:]] == [3, 3, 1]  # not one pop per message
    assert queue.queue_size() == 0  # no doorbell token left behind
    assert queue.connection.llen(queue.ring_key) == 0


def test_a_message_is_signed_as_django_q2_signs_it(monkeypatch, settings):
    """broker._package signs with a key derived once; the bytes are SignedPackage.dumps'
    own, compressed or not, and a cluster reads them back."""
    import time
    from datetime import UTC, datetime

    from django_q.conf import Conf
    from django_q.signing import SignedPackage

    monkeypatch.setattr(time, "time", lambda: 1_764_633_600.5)
    task = {
        "id": "0" * 32,
        "name": "job_01J00000000000000000000000",
        "func": broker.WORKER_ENTRY,
        "args": ("job_01J00000000000000000000000",),
        "kwargs": {},
        "started": datetime(2026, 12, 2, tzinfo=UTC),
        "ack_failure": True,
    }
    for compressed in (False, True):
        monkeypatch.setattr(Conf, "COMPRESSED", compressed)
        ours = broker._signer(Conf).dumps(task)
        assert ours == SignedPackage.dumps(task, compressed=compressed)
        assert SignedPackage.loads(ours) == task
    monkeypatch.setattr(Conf, "PREFIX", "another-queue")  # another salt, another signature
    assert broker._signer(Conf).dumps(task) == SignedPackage.dumps(task, compressed=True)
    package = broker._package("job_01J00000000000000000000000", Conf)
    assert SignedPackage.loads(package)["args"] == ("job_01J00000000000000000000000",)


def test_on_redis_a_job_triggered_between_two_batches_goes_before_the_next(
    db, redis_queue, account, actor, make_job, django_capture_on_commit_callbacks, monkeypatch
):
    from django_q.signing import SignedPackage

    monkeypatch.setattr(broker, "REDIS_BATCH", 2)
    waiting = create_queued(account, actor, django_capture_on_commit_callbacks, 5)
    queue = get_broker()

    def take() -> list[str]:
        return [SignedPackage.loads(message)["args"][0] for _, message in queue.dequeue() or []]

    assert take() == waiting[:2]  # a full batch: the next dequeue pops the lines at once...
    triggered = make_job(status=JobStatus.FAILED)
    trigger(triggered.pk, actor, django_capture_on_commit_callbacks)
    assert take() == [triggered.pk]  # ...unless the lane ahead holds a message
    assert take() == waiting[2:4]
    assert take() == waiting[4:]


@pytest.mark.django_db(transaction=True)
def test_on_postgresql_a_message_another_pusher_is_taking_is_skipped_not_waited_for(
    monkeypatch, account, actor, django_capture_on_commit_callbacks
):
    """Two clusters' pushers reading one line: while one holds the line's head (taking it, in
    its own transaction), the other takes the next message at once, instead of waiting for the
    head or reading it again after a lost compare-and-set."""
    if connection.vendor != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite has one writer at a time")
    from tests.execution.conftest import use_broker

    use_broker(monkeypatch, queue=f"test-{uuid.uuid4().hex[:10]}", redis_url=None)
    first, second = create_queued(account, actor, django_capture_on_commit_callbacks, 2)
    head = OrmQ.objects.filter(key__startswith=f"{get_broker().list_key}:").order_by("lock", "id")
    head_id = head.values_list("id", flat=True)[0]
    holding, done = threading.Event(), threading.Event()

    def other_pusher() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT id FROM django_q_ormq WHERE id = %s FOR UPDATE", [head_id])
                holding.set()
                done.wait(timeout=30)
        finally:
            connection.close()

    thread = threading.Thread(target=other_pusher)
    thread.start()
    try:
        assert holding.wait(timeout=30)
        # Waiting for the head would hand it out once the other transaction ends: `first`.
        taken = get_broker().dequeue()
    finally:
        done.set()
        thread.join()
    assert [SignedPackage.loads(message)["args"][0] for _, message in taken] == [second]
    assert [SignedPackage.loads(m)["args"][0] for _, m in get_broker().dequeue()] == [first]
