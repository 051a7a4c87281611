"""django-q2's process queue survives the death of a process waiting on it (jobs.execution
.queues): before, the dead waiter kept the queue's reader lock, and nothing could be read from
the queue again."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
from django_q.queues import Queue

pytestmark = pytest.mark.slow  # starts a process


def _wait_for_a_task(queue: Queue, ready) -> None:
    ready.set()
    queue.get()


def _sleeping(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "S"


def test_a_process_killed_while_waiting_on_the_task_queue_leaves_it_usable() -> None:
    context = multiprocessing.get_context("fork")  # as a django-q2 cluster starts its workers
    queue = Queue()
    ready = context.Event()
    waiter = context.Process(target=_wait_for_a_task, args=(queue, ready))
    waiter.start()
    deadline = time.monotonic() + 10
    while not (ready.is_set() and _sleeping(waiter.pid)):  # blocked in queue.get()
        assert time.monotonic() < deadline
        time.sleep(0.01)

    os.kill(waiter.pid, signal.SIGKILL)
    waiter.join(5)
    queue.put("task")

    assert queue.get(timeout=5) == "task"
    assert queue.qsize() == 0
