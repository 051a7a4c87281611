"""Handing jobs to django-q2. The job table stays the source of truth: a message only says
"run job X", and a worker that finds X no longer queued does nothing.

Messages are the packages django-q2's own `async_task` builds (signed, same fields), but written
in batches: one COPY per thousand jobs on the ORM broker, one pipelined RPUSH on Redis, instead
of a round trip per job. Any other broker goes through `async_task` one by one.

A message can go ahead of the line (trigger, the sweeper): at the head of the Redis list, which
django-q2 pops from, or, on the ORM broker, visible since the epoch, which OrderedORM hands out
first.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from time import sleep

from django.db import transaction
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf

from jobsconsole.db import insert_rows

logger = logging.getLogger(__name__)

WORKER_ENTRY = "jobs.worker.run_job"
BATCH_SIZE = 1000
# The lock (visible-from time) of an ORM message sent ahead of the line.
AHEAD_OF_THE_LINE = datetime(1970, 1, 1, tzinfo=UTC)


class OrderedORM(ORM):
    """django-q2's ORM broker, handing out waiting messages first in, first out: by the time
    they became visible (`lock`: when sent, or when a dead cluster's hold on them expired),
    then by id. The stock broker takes any waiting row (its read has no ORDER BY), so nothing
    could go ahead of the line there. The index jobs_ormq_line (migration jobs 0002) makes the
    ordered read one index probe instead of a scan of the queue table."""

    def dequeue(self):
        # ORM.dequeue (django-q2 1.7 to 1.11) with the order added: each row is taken by a
        # compare-and-set on its lock, so two clusters never take the same message.
        rows = self.get_connection().filter(key=self.list_key, lock__lt=timezone.now())
        rows = rows.order_by("lock", "id")[: Conf.BULK]
        if not rows:
            sleep(Conf.POLL)  # empty queue: spare the CPU, as ORM.dequeue does
            return None
        taken = []
        for row in rows:
            held = self.get_connection().filter(id=row.id, lock=row.lock)
            if held.update(lock=self.timeout(row)):
                taken.append((row.pk, row.payload))
        return taken


# For Q_CLUSTER["broker_class"] (settings), and for code that points django-q2's Conf at a broker.
ORDERED_ORM = f"{OrderedORM.__module__}.{OrderedORM.__qualname__}"


def enqueue(job_ids: Iterable[str], *, ahead: bool = False) -> None:
    """Put one message per job on the broker, at the end of the line, or `ahead` of every
    message waiting, in the order given. (Messages a cluster has already taken, up to its
    queue_limit, are ahead of any line.) Failures are logged, not raised: the sweeper enqueues
    a queued job again when no worker picked it up in time."""
    ids = list(job_ids)
    # Ahead of the line in one push: in batches, each would go in front of the one before.
    size = max(len(ids), 1) if ahead else BATCH_SIZE
    for start in range(0, len(ids), size):
        batch = ids[start : start + size]
        try:
            _push(batch, ahead=ahead)
        except Exception:
            logger.exception(
                "enqueue failed for %d job(s) (%s, ...); the sweeper will enqueue them again",
                len(batch),
                batch[0],
            )


def enqueue_on_commit(job_ids: list[str], *, ahead: bool = False) -> None:
    """Enqueue after the surrounding transaction commits, so a worker never sees a job that is
    not queued yet, and a rolled-back job is never run."""
    if job_ids:
        ids = list(job_ids)
        transaction.on_commit(lambda: enqueue(ids, ahead=ahead))


def _push(job_ids: list[str], *, ahead: bool) -> None:
    from django_q.brokers import get_broker
    from django_q.brokers.orm import ORM
    from django_q.brokers.redis_broker import Redis
    from django_q.conf import Conf
    from django_q.models import OrmQ
    from django_q.tasks import async_task

    broker = _broker(get_broker, Conf)
    if Conf.SYNC or not isinstance(broker, ORM | Redis):
        for job_id in job_ids:
            async_task(WORKER_ENTRY, job_id, task_name=job_id)
        return
    packages = [_package(job_id, Conf) for job_id in job_ids]
    if isinstance(broker, ORM):
        lock = AHEAD_OF_THE_LINE if ahead else timezone.now()
        key = broker.list_key or Conf.CLUSTER_NAME
        insert_rows([OrmQ(key=key, payload=package, lock=lock) for package in packages])
    elif ahead:
        # django-q2 pops from the head of the list: pushed there, in the order given.
        broker.connection.lpush(broker.list_key, *reversed(packages))
    else:
        broker.connection.rpush(broker.list_key, *packages)


_brokers: dict[tuple, object] = {}


def _broker(get_broker, conf):
    # One broker per process and configuration: a Redis broker holds a connection pool, and
    # django-q2's get_broker() builds a new one (a new TCP connection) on every call.
    key = (os.getpid(), conf.CLUSTER_NAME, conf.BROKER_CLASS, conf.ORM, repr(conf.REDIS))
    if key not in _brokers:
        _brokers[key] = get_broker()
    return _brokers[key]


def _package(job_id: str, conf) -> str:
    """The signed package async_task(WORKER_ENTRY, job_id, task_name=job_id) would push."""
    from django_q.signing import SignedPackage

    task = {
        # What django_q.humanhash.uuid()[1] returns, without the human-readable name it also
        # computes and async_task throws away.
        "id": uuid.uuid4().hex,
        "name": job_id,
        "func": WORKER_ENTRY,
        "args": (job_id,),
        "kwargs": {},
        "started": timezone.now(),
    }
    if conf.CACHED:
        task["cached"] = conf.CACHED
    if conf.ACK_FAILURES:
        task["ack_failure"] = conf.ACK_FAILURES
    return SignedPackage.dumps(task)
