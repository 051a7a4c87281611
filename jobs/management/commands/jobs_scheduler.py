"""`manage.py jobs_scheduler`: the dispatcher and the sweeper, one loop in one process.

Every JOBS_DISPATCH_INTERVAL seconds it moves due `scheduled` jobs to the broker; every
JOBS_SWEEP_INTERVAL seconds it declares lost the runs whose worker stopped heart-beating and
enqueues again the queued jobs no worker picked up; and once a minute it prunes finished jobs and
old audit events by the retention policy, one small batch per round (jobs.services.retention),
at most JOBS_PRUNE_ROWS_PER_MINUTE rows a minute. Several can run at once (each step locks
with SKIP LOCKED). It outlives database restarts: on a connection error it closes its
connections, backs off and goes on. SIGTERM or SIGINT stops it between two rounds.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import InterfaceError, OperationalError, close_old_connections, connections

from jobs import services

logger = logging.getLogger("jobs.scheduler")


class Command(BaseCommand):
    help = "Run the dispatcher (scheduled -> queued) and the sweeper (lost runs, lost messages)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--once", action="store_true", help="Run one round, then exit.")

    def handle(self, *args: Any, once: bool = False, **options: Any) -> None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        logger.info(
            "scheduler started: dispatch every %gs, sweep every %gs",
            settings.JOBS_DISPATCH_INTERVAL,
            settings.JOBS_SWEEP_INTERVAL,
        )
        next_sweep = 0.0
        backoff = 0.0
        pruner = services.Pruner()
        while not stop.is_set():
            try:
                # Honour CONN_MAX_AGE and the health checks, as a request would.
                close_old_connections()
                self.dispatch(stop)
                if time.monotonic() >= next_sweep:
                    services.jobs_sweep_lost()
                    services.jobs_requeue_unclaimed()
                    next_sweep = time.monotonic() + settings.JOBS_SWEEP_INTERVAL
                pruner.step()
                backoff = 0.0
            except Exception as exc:
                # A run cut short starts again from its first batch (it removed only what its
                # policy allowed, and its audit event says how far it got).
                pruner.run = None
                backoff = min(max(backoff * 2, 0.5), 10.0)
                if isinstance(exc, OperationalError | InterfaceError):
                    logger.warning("database unavailable (%s); again in %.1fs", exc, backoff)
                else:
                    logger.exception("scheduler round failed; again in %.1fs", backoff)
                connections.close_all()
                stop.wait(backoff)
                continue
            if once:
                break
            stop.wait(settings.JOBS_DISPATCH_INTERVAL)
        connections.close_all()
        logger.info("scheduler stopped")

    @staticmethod
    def dispatch(stop: threading.Event) -> int:
        """Dispatch due jobs batch after batch until none is left (a backlog drains at once)."""
        total = 0
        while not stop.is_set():
            ids = services.jobs_dispatch_due()
            total += len(ids)
            if len(ids) < settings.JOBS_DISPATCH_BATCH:
                break
        return total
