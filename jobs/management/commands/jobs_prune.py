"""`manage.py jobs_prune [--dry-run] [--all]`: the retention policy from the command line.

`--dry-run` shows the policy, how many rows are past their cut-off now and what the next run of
the scheduler would remove, and removes nothing. Without it, one run as the scheduler makes it
(at most JOBS_PRUNE_ROWS_PER_MINUTE rows, in batches of JOBS_PRUNE_BATCH), audited; `--all`
goes on, a run a minute, until nothing is left to remove.
"""

from __future__ import annotations

import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from jobs import services


def _days(days: float | None) -> str:
    return "keep" if days is None else f"{days:g} d"


class Command(BaseCommand):
    help = (
        "Remove finished jobs and old audit and provider events by the retention policy "
        "(JOBS_RETAIN_*)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Show what would be removed; remove nothing."
        )
        parser.add_argument(
            "--all",
            action="store_true",
            help="Run again every minute until nothing is left to remove (default: one run).",
        )

    def handle(self, *args: Any, dry_run: bool = False, all: bool = False, **options: Any) -> None:
        policy = services.RetentionPolicy.from_settings()
        if dry_run:
            self._preview(policy)
            return
        while True:
            started = time.monotonic()
            # One run's budget; where the scheduler's pruning is off (0), one batch a run.
            budget = policy.rows_per_minute if policy.rows_per_minute > 0 else policy.batch
            record = services.jobs_prune(policy=policy, max_rows=budget)
            removed = ", ".join(f"{n:,} {name}" for name, n in record["removed"].items() if n)
            self.stdout.write(
                f"removed {removed or 'nothing'} ({record['attempts']:,} attempts) in "
                f"{record['batches']} batch(es)" + ("" if record["complete"] else "; more left")
            )
            if record["complete"] or not all:
                return
            time.sleep(max(0.0, 60.0 - (time.monotonic() - started)))

    def _preview(self, policy: services.RetentionPolicy) -> None:
        self.stdout.write(
            f"retention policy (batches of {policy.batch:,}, at most "
            f"{policy.rows_per_minute:,} rows a minute); dry run, nothing removed:"
        )
        self.stdout.write(
            f"{'rows':<16} {'keep for':>9} {'older than':<26} {'past it':>12} {'next run':>10}"
        )
        for row in services.retention_preview(policy=policy):
            cutoff = row.cutoff.isoformat(timespec="seconds") if row.cutoff else "-"
            expired = "-" if row.expired is None else f"{row.expired:,}"
            self.stdout.write(
                f"{row.name:<16} {_days(row.days):>9} {cutoff:<26} {expired:>12} "
                f"{row.next_run:>10,}"
            )
