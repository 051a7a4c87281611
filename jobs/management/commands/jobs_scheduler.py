"""`manage.py jobs_scheduler`: the dispatcher, the sweeper and the sync schedules, one loop in
one process.

Every JOBS_DISPATCH_INTERVAL seconds it moves due `scheduled` jobs to the broker; every
JOBS_SCHEDULES_INTERVAL seconds it fires the due sync schedules (each creates its task once,
whatever the number of schedulers); every JOBS_SWEEP_INTERVAL seconds it declares lost the runs
whose worker stopped heart-beating, enqueues again the queued jobs no worker picked up and
releases jobs held by a concurrency limit whose slot freed; every round it hands out the bulk
operations whose next batch is due, and one small batch of pruning by the retention policy
(jobs.services.retention: at most JOBS_PRUNE_ROWS_PER_MINUTE rows a minute); every
JOBS_ROLLUP_INTERVAL seconds it rolls the closed
minutes up for queue health and samples the queues' depth once a minute
(jobs.monitoring.rollups), and it writes its own heartbeat
(jobs.monitoring.heartbeats) every JOBS_PROCESS_HEARTBEAT_SECONDS. Several can run at once
(each step locks with SKIP LOCKED; the rollup holds its cursor row). It outlives database
restarts: on a connection error it closes its connections, backs off and goes on. SIGTERM or
SIGINT stops it between two rounds.
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
from django.utils import timezone

from jobs import services
from jobs.monitoring import heartbeats, rollups, triage

logger = logging.getLogger("jobs.scheduler")


class Command(BaseCommand):
    help = (
        "Run the dispatcher (scheduled -> queued), the sync schedules and the sweeper "
        "(lost runs, lost messages)."
    )

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
        next_sweep = next_rollup = next_schedules = 0.0
        backoff = 0.0
        beat = heartbeats.SchedulerBeat()
        pruner = services.Pruner()
        while not stop.is_set():
            try:
                # Honour CONN_MAX_AGE and the health checks, as a request would.
                close_old_connections()
                beat.maybe_beat()
                if time.monotonic() >= next_schedules:
                    self.fire_schedules(stop)
                    next_schedules = time.monotonic() + settings.JOBS_SCHEDULES_INTERVAL
                self.dispatch(stop)
                if time.monotonic() >= next_sweep:
                    services.jobs_sweep_lost()
                    services.jobs_requeue_unclaimed()
                    # Jobs held by a concurrency limit whose slot freed without a release.
                    services.jobs_release_waiting_all()
                    next_sweep = time.monotonic() + settings.JOBS_SWEEP_INTERVAL
                # Bulk operations whose next batch is due and that no worker holds (paced ones
                # are due every second or so: every round, not every sweep).
                services.bulk_operations_dispatch()
                if time.monotonic() >= next_rollup:
                    rollups.roll_up()
                    rollups.sample_depth()  # once a minute, whatever the number of schedulers
                    triage.refresh()  # on a large table, every JOBS_TRIAGE_COUNT_INTERVAL
                    heartbeats.prune_gone(timezone.now())
                    next_rollup = time.monotonic() + settings.JOBS_ROLLUP_INTERVAL
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
        beat.stopped()
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

    @staticmethod
    def fire_schedules(stop: threading.Event) -> int:
        """Fire due schedules batch after batch until none is left (after downtime, every
        schedule at once, each once). Their jobs are queued when created."""
        total = 0
        while not stop.is_set():
            handled = services.schedules_fire_due()
            total += len(handled)
            if len(handled) < settings.JOBS_SCHEDULES_BATCH:
                break
        return total
