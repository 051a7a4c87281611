"""Handing jobs to django-q2. The job table stays the source of truth: a message only says
"run job X", and a worker that finds X no longer queued does nothing.

Messages are the packages django-q2's own `async_task` builds (signed, same fields), but written
in batches: one COPY per thousand jobs on the ORM broker, one pipelined RPUSH on Redis, instead
of a round trip per job. Any other broker goes through `async_task` one by one.

Both brokers hand messages out first in, first out, with a lane ahead of the line:
- `enqueue(ids)`: at the end of the line;
- `enqueue(ids, ahead=True)` (trigger): in the lane ahead, itself first in, first out, so the
  job is taken before anything in the line, behind only the messages a cluster has already
  taken (up to its queue_limit);
- `enqueue_again({id: waiting_since})` (the sweeper, for jobs nobody claimed in time): back
  in the place the job had in the line on the ORM broker, at the head of the line on Redis
  (a list has no middle to go back to), behind the lane in both cases.
OrderedORM and LanedRedis (Q_CLUSTER["broker_class"]) are django-q2's two brokers with that
order; the stock ones hand out ORM rows in no set order and have no lane on Redis.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from time import sleep
from typing import Any

from django.db import transaction
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis
from django_q.conf import Conf

from core.db import insert_rows

logger = logging.getLogger(__name__)

WORKER_ENTRY = "jobs.execution.worker.run_job"
# A bulk operation's batches run on the workers too (jobs.services.bulk): "run operation X".
BULK_ENTRY = "jobs.execution.worker.run_bulk_operation"
BATCH_SIZE = 1000
# The lane ahead of the line on the ORM broker: messages visible since the epoch.
AHEAD_OF_THE_LINE = datetime(1970, 1, 1, tzinfo=UTC)


class OrderedORM(ORM):
    """django-q2's ORM broker, handing out waiting messages in order: by the time they became
    visible (`lock`: when sent, the epoch for the lane ahead, or when a dead cluster's hold on
    them expired), then by id. The stock broker takes any waiting row (its read has no ORDER
    BY). The index jobs_ormq_line (migration jobs 0002) makes the read one index probe."""

    def dequeue(self) -> list[tuple[Any, Any]] | None:
        # ORM.dequeue (django-q2 1.10, 1.11) with the order added: each row is taken by a
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


class LanedRedis(Redis):
    """django-q2's Redis broker with a second list, the lane ahead of the line: BLPOP serves
    the lists it is given in order, so a message in the lane is taken before any in the line."""

    @property
    def ahead_key(self) -> str:
        return f"{self.list_key}:ahead"

    def dequeue(self) -> list[tuple[Any, Any]] | None:
        task = self.connection.blpop([self.ahead_key, self.list_key], 1)
        if task:
            return [(None, task[1])]
        return None

    def queue_size(self) -> int:
        return self.connection.llen(self.ahead_key) + self.connection.llen(self.list_key)

    def delete_queue(self) -> Any:
        return self.connection.delete(self.ahead_key, self.list_key)

    def purge_queue(self) -> Any:
        self.connection.ltrim(self.ahead_key, 1, 0)
        return self.connection.ltrim(self.list_key, 1, 0)


# For Q_CLUSTER["broker_class"] (settings), and for code that points django-q2's Conf at a broker.
ORDERED_ORM = f"{OrderedORM.__module__}.{OrderedORM.__qualname__}"
LANED_REDIS = f"{LanedRedis.__module__}.{LanedRedis.__qualname__}"


def enqueue(job_ids: Iterable[str], *, ahead: bool = False) -> None:
    """Put one message per job on the broker: at the end of the line, or in the lane `ahead`
    of it. Failures are logged, not raised: the sweeper enqueues a queued job again when no
    worker picked it up in time."""
    ids = list(job_ids)
    for start in range(0, len(ids), BATCH_SIZE):
        _push_logging_failure(ids[start : start + BATCH_SIZE], ahead=ahead)


def enqueue_bulk_operations_on_commit(operation_ids: list[str]) -> None:
    """After commit, one message per bulk operation, in the lane ahead of the line: the work
    of running the operation must not wait behind the jobs it queues."""
    if operation_ids:
        ids = list(operation_ids)
        transaction.on_commit(lambda: _push_logging_failure(ids, ahead=True, func=BULK_ENTRY))


def enqueue_again(waiting_since: Mapping[str, datetime | None]) -> None:
    """Send a new message for jobs whose message may be lost, back in their place in the line
    (when each was queued, `waiting_since`; see the module's docstring). One push: on Redis,
    where they go to the head, batches would each go in front of the one before."""
    _push_logging_failure(list(waiting_since), since=waiting_since)


def enqueue_on_commit(job_ids: list[str], *, ahead: bool = False) -> None:
    """Enqueue after the surrounding transaction commits, so a worker never sees a job that is
    not queued yet, and a rolled-back job is never run."""
    if job_ids:
        ids = list(job_ids)
        transaction.on_commit(lambda: enqueue(ids, ahead=ahead))


def enqueue_again_on_commit(waiting_since: Mapping[str, datetime | None]) -> None:
    if waiting_since:
        since = dict(waiting_since)
        transaction.on_commit(lambda: enqueue_again(since))


def _push_logging_failure(job_ids: list[str], **place: Any) -> None:
    try:
        _push(job_ids, **place)
    except Exception:
        logger.exception(
            "enqueue failed for %d job(s) (%s, ...); the sweeper will enqueue them again",
            len(job_ids),
            job_ids[0],
        )


def _push(
    job_ids: list[str],
    *,
    ahead: bool = False,
    since: Mapping[str, datetime | None] | None = None,
    func: str = WORKER_ENTRY,
) -> None:
    from django_q.brokers import get_broker
    from django_q.models import OrmQ
    from django_q.tasks import async_task

    broker = _broker(get_broker, Conf)
    if Conf.SYNC or not isinstance(broker, ORM | Redis):
        for job_id in job_ids:
            async_task(func, job_id, task_name=job_id)
        return
    packages = [_package(job_id, Conf, func) for job_id in job_ids]
    if isinstance(broker, ORM):
        now = timezone.now()
        if ahead:
            locks = [AHEAD_OF_THE_LINE] * len(job_ids)
        elif since is not None:
            locks = [since[job_id] or now for job_id in job_ids]
        else:
            locks = [now] * len(job_ids)
        key = broker.list_key or Conf.CLUSTER_NAME
        insert_rows(
            [
                OrmQ(key=key, payload=package, lock=lock)
                for package, lock in zip(packages, locks, strict=True)
            ]
        )
    elif ahead and isinstance(broker, LanedRedis):
        broker.connection.rpush(broker.ahead_key, *packages)
    elif ahead or since is not None:
        # The head of the line (django-q2 pops from the head), in the order given.
        broker.connection.lpush(broker.list_key, *reversed(packages))
    else:
        broker.connection.rpush(broker.list_key, *packages)


_brokers: dict[tuple[Any, ...], Any] = {}


def _broker(get_broker: Callable[[], Any], conf: Any) -> Any:
    # One broker per process and configuration: a Redis broker holds a connection pool, and
    # django-q2's get_broker() builds a new one (a new TCP connection) on every call.
    key = (os.getpid(), conf.CLUSTER_NAME, conf.BROKER_CLASS, conf.ORM, repr(conf.REDIS))
    if key not in _brokers:
        _brokers[key] = get_broker()
    return _brokers[key]


def _package(job_id: str, conf: Any, func: str = WORKER_ENTRY) -> str:
    """The signed package async_task(func, job_id, task_name=job_id) would push."""
    from django_q.signing import SignedPackage

    task = {
        # What django_q.humanhash.uuid()[1] returns, without the human-readable name it also
        # computes and async_task throws away.
        "id": uuid.uuid4().hex,
        "name": job_id,
        "func": func,
        "args": (job_id,),
        "kwargs": {},
        "started": timezone.now(),
    }
    if conf.CACHED:
        task["cached"] = conf.CACHED
    if conf.ACK_FAILURES:
        task["ack_failure"] = conf.ACK_FAILURES
    return SignedPackage.dumps(task)
