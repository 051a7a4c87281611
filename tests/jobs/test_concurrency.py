"""Two commands on one job at the same moment, on real concurrent connections: the row lock
makes exactly one win; the loser sees the new state and gets the 409 (or 404 once deleted)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from django.db import connection, connections, transaction

from core.actors import Actor
from core.errors import DomainError
from core.models import AuditEvent
from jobs import services
from jobs.models import Job
from jobs.states import JobStatus
from tests.conftest import is_postgres
from tests.factories import AccountFactory, JobFactory

pytestmark = pytest.mark.django_db(transaction=True)

ACTOR = Actor.system("test")


def retry(job_id):
    return services.job_retry(job_id=job_id, actor=ACTOR)


def resolve(job_id):
    return services.job_resolve(job_id=job_id, actor=ACTOR, code="ignored", note="race")


def trigger(job_id):
    return services.job_trigger(job_id=job_id, actor=ACTOR)


def delete(job_id):
    return services.job_delete(job_id=job_id, actor=ACTOR)


def _in_thread(target: Callable[[], None]) -> threading.Thread:
    def run():
        try:
            target()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait_for_lock_wait(deadline_s: float = 10.0) -> None:
    """Block until another backend is waiting on a lock: the second command really is queued
    behind the first one's row lock (PostgreSQL only; SQLite serializes at BEGIN IMMEDIATE)."""
    if not is_postgres():
        return
    deadline = time.monotonic() + deadline_s
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    pytest.fail("the second command never waited on the first one's lock")


def race_held(first, second, job_id):
    """`first` runs and holds its transaction open; `second` starts and must wait on the row
    lock; then `first` commits. Returns (first outcome, second outcome)."""
    outcomes: dict[str, object] = {}
    first_done, release = threading.Event(), threading.Event()

    def run_first():
        with transaction.atomic():
            outcomes["first"] = first(job_id)
            first_done.set()
            release.wait(10)

    def run_second():
        try:
            outcomes["second"] = second(job_id)
        except DomainError as exc:
            outcomes["second"] = exc

    a = _in_thread(run_first)
    assert first_done.wait(10)
    b = _in_thread(run_second)
    _wait_for_lock_wait()
    release.set()
    a.join(10)
    b.join(10)
    return outcomes["first"], outcomes["second"]


def transitions(job_id):
    return list(
        AuditEvent.objects.filter(job_id=job_id).order_by("id").values_list("command", flat=True)
    )


def assert_serial_history(job_id, initial_status):
    """Each transition starts from the state the previous one left: no update was lost."""
    status = initial_status
    for event in AuditEvent.objects.filter(job_id=job_id).order_by("id"):
        assert event.from_status == status, (event.command, event.from_status, status)
        status = event.to_status


@pytest.mark.parametrize(
    ("first", "second", "winner"),
    [(retry, retry, "retry"), (resolve, retry, "resolve"), (delete, delete, "delete")],
)
def test_second_command_waits_and_loses(first, second, winner):
    job = JobFactory(account=AccountFactory(), status=JobStatus.FAILED)
    won, lost = race_held(first, second, job.pk)
    assert isinstance(lost, DomainError)
    assert transitions(job.pk) == [winner]
    if winner == "delete":
        assert lost.status_code == 404
        assert not Job.objects.filter(pk=job.pk).exists()
        return
    assert lost.status_code == 409
    assert lost.as_dict()["error"]["current_status"] == won.status
    assert Job.objects.get(pk=job.pk).status == won.status


@pytest.mark.parametrize(
    ("first", "second", "history"),
    [
        # Resolve is allowed from queued, and delete from anything but running: both commands
        # succeed, one after the other, each from the state the other left.
        (retry, resolve, ["retry", "resolve"]),
        (trigger, delete, ["trigger", "delete"]),
    ],
)
def test_compatible_commands_serialize(first, second, history):
    job = JobFactory(account=AccountFactory(), status=JobStatus.FAILED)
    race_held(first, second, job.pk)
    assert transitions(job.pk) == history
    assert_serial_history(job.pk, JobStatus.FAILED)


def test_delete_then_trigger_trigger_finds_nothing():
    job = JobFactory(account=AccountFactory(), status=JobStatus.FAILED)
    _, lost = race_held(delete, trigger, job.pk)
    assert isinstance(lost, DomainError)
    assert lost.status_code == 404
    assert transitions(job.pk) == ["delete"]


@pytest.mark.parametrize(
    ("a", "b"), [(retry, retry), (retry, resolve), (trigger, delete)], ids=lambda f: f.__name__
)
def test_simultaneous_commands_never_lose_an_update(a, b):
    """Released together by a barrier, many times over. Two retries: exactly one wins. Retry
    and resolve, trigger and delete: either both win in some order, or one wins and the other
    gets the 409/404; never both from the same starting state."""
    account = AccountFactory()
    for _ in range(10):
        job = JobFactory(account=account, status=JobStatus.FAILED)
        barrier = threading.Barrier(2)
        results: list[object] = []

        def contender(command, job_id=job.pk, barrier=barrier, results=results):
            barrier.wait(10)
            try:
                results.append(command(job_id))
            except DomainError as exc:
                results.append(exc)

        threads = [_in_thread(lambda c=c: contender(c)) for c in (a, b)]
        for thread in threads:
            thread.join(20)
        assert len(results) == 2
        losers = [r for r in results if isinstance(r, DomainError)]
        assert all(loser.status_code in (404, 409) for loser in losers)
        assert len(transitions(job.pk)) == 2 - len(losers)
        if a is b:
            assert len(losers) == 1
        assert_serial_history(job.pk, JobStatus.FAILED)
