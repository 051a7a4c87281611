from __future__ import annotations

import uuid

import pytest
from django.db import connection

from tests.conftest import require


@pytest.fixture
def redis_queue(monkeypatch):
    """This process's producer pointed at a queue of its own on the local Redis, read through
    the deployment's broker class; removed afterwards."""
    import redis
    from django_q.brokers import get_broker

    from tests.execution.conftest import REDIS_URL, use_broker

    client = redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        require(False, f"needs Redis at {REDIS_URL}: {exc}")
    queue = f"test-{uuid.uuid4().hex[:10]}"
    use_broker(monkeypatch, queue=queue, redis_url=REDIS_URL)
    yield
    get_broker().delete_queue()


@pytest.fixture
def orm_queue(db, monkeypatch):
    """This process's producer pointed at a queue of its own on the ORM broker (the test
    database), without the index on django-q2's queue table (dropped inside the test's
    transaction): PostgreSQL then reads the table in the order its rows lie, as it does a
    large one, so only the broker's own ORDER BY puts messages in order."""
    from tests.execution.conftest import use_broker

    use_broker(monkeypatch, queue=f"test-{uuid.uuid4().hex[:10]}", redis_url=None)
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX jobs_ormq_line")


@pytest.fixture(params=["orm", "redis"])
def any_broker(request, db) -> str:
    """Runs the test on the ORM broker and on Redis. (It asks for `db` itself: when `db` came
    only through getfixturevalue below, a database connection outlived the run and the test
    database could not be dropped at its end.)"""
    request.getfixturevalue(f"{request.param}_queue")
    return request.param


@pytest.fixture
def next_job_ids():
    """The jobs of the next `count` messages a cluster would take from the broker."""
    from django_q.brokers import get_broker
    from django_q.signing import SignedPackage

    def take(count: int) -> list[str]:
        # A read may hand out several messages (OrderedORM takes up to FAIR_BATCH at once):
        # a cluster queues every one of them for its workers, in order.
        queue = get_broker()
        ids: list[str] = []
        while len(ids) < count:
            messages = queue.dequeue()
            assert messages, f"only {len(ids)} of {count} messages"
            ids += [SignedPackage.loads(message)["args"][0] for _, message in messages]
        return ids

    return take
