"""Handing jobs to django-q2. The job table stays the source of truth: a message only says
"run job X", and a worker that finds X no longer queued does nothing."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction

logger = logging.getLogger(__name__)

WORKER_ENTRY = "jobs.worker.run_job"


def enqueue(job_ids: Iterable[str]) -> None:
    """Put one message per job on the broker. Failures are logged, not raised: the sweeper
    enqueues a queued job again when no worker picked it up in time."""
    from django_q.tasks import async_task

    for job_id in job_ids:
        try:
            async_task(WORKER_ENTRY, job_id, task_name=job_id)
        except Exception:
            logger.exception("enqueue failed for %s; the sweeper will enqueue it again", job_id)


def enqueue_on_commit(job_ids: list[str]) -> None:
    """Enqueue after the surrounding transaction commits, so a worker never sees a job that is
    not queued yet, and a rolled-back job is never run."""
    if job_ids:
        ids = list(job_ids)
        transaction.on_commit(lambda: enqueue(ids))
