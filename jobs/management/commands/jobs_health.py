"""`manage.py jobs_health`: a liveness check for the worker and scheduler processes.

Exits 0 when a worker (of some cluster) and a scheduler have beaten within the grace, 1 when
either has not, 2 when the database cannot be asked. `--process worker|scheduler` checks one
type; `--this-host` only the processes of the host it runs on (a container's liveness probe).
"""

from __future__ import annotations

import socket
import sys
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError

from jobs.models import ProcessKind
from jobs.monitoring import heartbeats

CHECKS = {"worker": ProcessKind.WORKER, "scheduler": ProcessKind.SCHEDULER}


class Command(BaseCommand):
    help = (
        "Exit non-zero when no worker cluster or no scheduler has heart-beaten within the grace "
        "(a liveness command for process managers and orchestrators)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--process",
            choices=[*CHECKS, "all"],
            default="all",
            help="Which process type to check (default: all).",
        )
        parser.add_argument(
            "--grace",
            type=float,
            default=None,
            help="Seconds since the last heartbeat (default: JOBS_PROCESS_GRACE_SECONDS).",
        )
        parser.add_argument(
            "--this-host",
            action="store_true",
            help="Only count processes on this host (its hostname), e.g. in a container.",
        )

    def handle(
        self,
        *args: Any,
        process: str = "all",
        grace: float | None = None,
        this_host: bool = False,
        **options: Any,
    ) -> None:
        grace = settings.JOBS_PROCESS_GRACE_SECONDS if grace is None else grace
        host = socket.gethostname() if this_host else None
        where = f" on {host}" if host else ""
        kinds = CHECKS if process == "all" else {process: CHECKS[process]}
        failed = False
        for name, kind in kinds.items():
            try:
                count = heartbeats.alive(kind, grace=grace, host=host)
            except DatabaseError as exc:
                self.stderr.write(f"unhealthy: the database did not answer ({exc})")
                sys.exit(2)
            if count:
                self.stdout.write(f"ok: {count} {name} process(es){where} beat within {grace:g}s")
            else:
                failed = True
                self.stderr.write(f"unhealthy: no {name} process{where} beat within {grace:g}s")
        if failed:
            sys.exit(1)
