"""django-q2's process queues, made safe for a worker to be killed in (installed by jobs.apps).

A django-q2 cluster hands tasks to its workers through one multiprocessing queue, and results
to its monitor through another. A process waiting on such a queue blocks in `Queue.get()`
*holding the queue's reader lock*, a semaphore shared by every process that reads it. When that
process is killed (kill -9, the OOM killer), the semaphore is never released: every other
worker, and every worker the sentinel starts in place of the dead one, waits on it forever. The
cluster goes on taking messages from the broker and runs none of them, and says nothing
(django-q2 issue #23, django-q issues #200 and #394; tests/execution/test_faults.py
::test_idle_workers_killed_one_after_the_other).

Here a blocking `get()` waits for data without the lock, and takes the lock only to read one
message, so a process killed while it waits holds nothing. Only a kill in the middle of reading
a message (microseconds, against the whole idle time) can still wedge a queue.
"""

from __future__ import annotations

from multiprocessing.reduction import ForkingPickler
from typing import Any

from django_q.queues import Queue

_django_q_get = Queue.get


def _get(self: Queue, block: bool = True, timeout: float | None = None) -> Any:
    """Queue.get (multiprocessing.queues.Queue.get, and django_q.queues.Queue's counter),
    waiting for data outside the reader lock."""
    if not block or timeout is not None:
        return _django_q_get(self, block, timeout)
    if self._closed:
        raise ValueError(f"Queue {self!r} is closed")
    while True:
        self._reader.poll(None)  # wait until a message can be read, holding nothing
        with self._rlock:
            if not self._reader.poll(0):
                continue  # another reader took it first
            data = self._recv_bytes()
        break
    self._sem.release()
    self.size.increment(-1)
    return ForkingPickler.loads(data)


def install() -> None:
    Queue.get = _get
