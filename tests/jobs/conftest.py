from __future__ import annotations

import uuid

import pytest

from tests.conftest import require


@pytest.fixture
def redis_queue(monkeypatch):
    """This process's producer pointed at a queue of its own on the local Redis: yields the
    client and the list django-q2 reads the queue from; removed afterwards."""
    import redis

    from tests.execution.conftest import REDIS_URL, use_broker

    client = redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        require(False, f"needs Redis at {REDIS_URL}: {exc}")
    queue = f"test-{uuid.uuid4().hex[:10]}"
    use_broker(monkeypatch, queue=queue, redis_url=REDIS_URL)
    key = f"django_q:{queue}:q"
    yield client, key
    client.delete(key)


@pytest.fixture
def next_job_ids():
    """The jobs of the next `count` messages a cluster would take from the broker."""
    from django_q.brokers import get_broker
    from django_q.signing import SignedPackage

    def take(count: int) -> list[str]:
        queue = get_broker()
        return [SignedPackage.loads(queue.dequeue()[0][1])["args"][0] for _ in range(count)]

    return take


@pytest.fixture(params=["orm", "redis"])
def any_broker(request) -> str:
    """Runs the test on the ORM broker (the test database) and on Redis."""
    if request.param == "redis":
        request.getfixturevalue("redis_queue")
    return request.param
