"""Operators' console times: `python3 dev.py bench admin [--repeat 9]`.

PostgreSQL only (DATABASE_URL). With the API benchmark's data set (1,000,000 jobs over 1,000
accounts, loaded once by tests.bench.dataset), times in-process through the whole Django stack
(session, admin, templates) the server time of
  - the queue view filtered to the largest account and one status,
  - the unfiltered queue view,
  - a job page (a failed job with attempts and audit events),
  - the error triage,
  - the dashboard over 1 h, 24 h and 7 d (queue health from the rollups), and its live refresh,
  - the workers page (40 worker processes in 10 clusters, 2 schedulers),
  - `/metrics` with an operator key,
  - one live refresh of each live region (queue rows, job summary and history, triage, the
    index's counts),
each beside the raw SQL it needs: the very statements the view ran, executed again on their own.
Target: each page under 300 ms median (the p95 is shown too). Nothing is asserted: figures are
reported. The rollups are seeded as a busy week would leave them (seed_rollups).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.apikeys import api_key_create
from core.actors import Actor
from jobs import services
from jobs.models import Job, JobAttempt, JobRollup, ProcessHeartbeat, RollupCursor
from jobs.monitoring import rollups
from tests.bench.dataset import ensure_dataset
from tests.bench.sql import captured_selects, replay
from tests.bench.timing import p95, timed

TARGET_MS = 300.0


def page(client: Client, url: str) -> Callable[[], object]:
    def run():
        response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url}: {response.status_code}")
        return response

    return run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench admin")
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args(argv)

    dataset = ensure_dataset()
    if dataset.load_seconds:
        print(f"loaded {dataset.jobs:,} jobs in {dataset.load_seconds:.0f} s")
    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client(SERVER_NAME="localhost")
    client.force_login(user)

    hot = dataset.hot_account_id
    job = Job.objects.filter(account_id=hot, status="failed").order_by("-id").only("id").first()
    if not JobAttempt.objects.filter(job_id=job.pk).exists():
        # A job page worth reading: attempts with tracebacks and an audit timeline.
        for number in range(1, 4):
            JobAttempt.objects.create(
                job_id=job.pk,
                number=number,
                outcome="failed",
                error_code="provider_timeout",
                error_detail="IMAP connection timed out",
                traceback="Traceback (most recent call last):\n  ...\nTimeoutError\n" * 5,
            )
        actor = Actor.user(user)
        for priority in range(5):
            services.job_update(job_id=job.pk, actor=actor, changes={"priority": priority})
    seed_rollups(dataset.account_ids, hot)
    seed_processes()
    key = api_key_create(account=None, actor=Actor.system("bench"), name="bench-metrics")[1]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
        cursor.execute("ANALYZE jobs_jobrollup")

    jobs_url = reverse("admin:jobs_job_changelist")
    dashboard = reverse("admin:jobs_job_dashboard")
    pages = [
        ("queue: one account, status failed", f"{jobs_url}?account={hot}&status=failed"),
        ("queue: unfiltered", jobs_url),
        ("job page", reverse("admin:jobs_job_change", args=[job.pk])),
        ("error triage", reverse("admin:jobs_job_triage")),
        ("dashboard", reverse("admin:jobs_job_dashboard")),
        *(
            (f"dashboard {key}", f"{reverse('admin:jobs_job_dashboard')}?range={key}")
            for key in ("1h", "24h", "7d")
        ),
        ("dashboard 7d, the hot account", f"{dashboard}?range=7d&account={hot}"),
        ("dashboard live refresh (24h)", f"{dashboard}?range=24h&_live=1"),
        ("workers page", reverse("admin:jobs_job_workers")),
        ("workers live refresh", f"{reverse('admin:jobs_job_workers')}?_live=1"),
        # One live refresh of each live region (core.live): what an open page costs every 3 s.
        ("live: queue rows, account + failed", f"{jobs_url}?account={hot}&status=failed&_live=1"),
        ("live: queue rows, unfiltered", f"{jobs_url}?_live=1"),
        ("live: job summary", reverse("admin:jobs_job_change", args=[job.pk]) + "?_live=summary"),
        ("live: job history", reverse("admin:jobs_job_change", args=[job.pk]) + "?_live=history"),
        ("live: triage", reverse("admin:jobs_job_triage") + "?_live=1"),
        ("live: index counts", reverse("admin:jobs_job_counts")),
    ]
    print(f"{dataset.jobs:,} jobs, {len(dataset.account_ids):,} accounts; median of {args.repeat}")
    print(
        f"{'page':38} {'median ms':>10} {'p95 ms':>8} {'raw SQL ms':>11} {'queries':>8} "
        f"{'ratio':>6}  target < {TARGET_MS:.0f} ms"
    )
    status = 0
    metrics_client = Client(SERVER_NAME="localhost", HTTP_AUTHORIZATION=f"Bearer {key}")
    pages.append(("/metrics (operator key)", "/metrics"))
    for name, url in pages:
        view = page(metrics_client if url == "/metrics" else client, url)
        statements = captured_selects(view)
        view_ms = timed(view, args.repeat)
        sql_ms = timed(replay(statements), args.repeat)
        median, sql_median = statistics.median(view_ms), statistics.median(sql_ms)
        verdict = "ok" if median < TARGET_MS else "SLOW"
        print(
            f"{name:38} {median:10.1f} {p95(view_ms):8.1f} {sql_median:11.1f} "
            f"{len(statements):8d} {median / max(sql_median, 0.01):6.1f}  {verdict}"
        )
    return status


def seed_rollups(account_ids: list[str], hot: str) -> None:
    """The rollups a busy week leaves, once: every account and action per minute (two days, as
    kept) and per hour (35 days); each account per hour for 7 days; the large account per
    minute for two days. About 230,000 rows."""
    if RollupCursor.objects.exists():
        return
    now = rollups.floor_minute(timezone.now())
    actions = ["imap_sync_messages", "noop", "sleep", "fail"]

    def tally(scale: int) -> rollups.Tally:
        t = rollups.Tally(started=10 * scale, succeeded=7 * scale, failed=2 * scale, retried=scale)
        t.errors.update({"provider_timeout": 2 * scale, "provider_auth_failed": scale})
        for seconds in (0.2, 0.8, 1.5, 3, 4, 7, 12, 25, 45, 200):
            for _ in range(scale):
                t.add_latency(seconds)
        return t

    rows: list[JobRollup] = []

    def flush(force: bool = False) -> None:
        if len(rows) >= 20_000 or (force and rows):
            JobRollup.objects.bulk_create(rows, batch_size=5_000)
            rows.clear()

    for minute in range(2 * 24 * 60):
        bucket = now - timedelta(minutes=minute + 1)
        for action in actions:
            rows.append(tally(20).row("m", bucket, "", action))
        rows.append(tally(6).row("m", bucket, hot, "imap_sync_messages"))
        flush()
    hour_now = rollups.floor_hour(timezone.now())
    for hour in range(1, 35 * 24):
        bucket = hour_now - timedelta(hours=hour)
        for action in actions:
            rows.append(tally(1200).row("h", bucket, "", action))
        if hour <= 7 * 24:
            for account_id in account_ids:
                rows.append(tally(3).row("h", bucket, account_id, "imap_sync_messages"))
        flush()
    for action in actions:
        rows.append(tally(100_000).row("t", rollups.TOTAL_BUCKET, "", action))
    flush(force=True)
    RollupCursor.objects.create(name=rollups.CURSOR, through=now)


def seed_processes() -> None:
    """Ten clusters of four workers and two schedulers, alive now; and a day of gone ones."""
    if ProcessHeartbeat.objects.exists():
        return
    now = timezone.now()
    rows = []
    for cluster in range(10):
        for worker in range(4):
            rows.append(
                ProcessHeartbeat(
                    kind="worker",
                    host=f"host-{cluster}",
                    pid=1000 + worker,
                    cluster_pid=999,
                    started_at=now - timedelta(hours=3),
                    beat_at=now,
                    jobs_done=5000,
                    jobs_failed=300,
                )
            )
    for gone in range(100):
        rows.append(
            ProcessHeartbeat(
                kind="worker",
                host=f"old-{gone % 10}",
                pid=2000 + gone,
                cluster_pid=1999,
                started_at=now - timedelta(hours=20),
                beat_at=now - timedelta(hours=10),
            )
        )
    for scheduler in range(2):
        rows.append(
            ProcessHeartbeat(
                kind="scheduler",
                host=f"sched-{scheduler}",
                pid=500,
                started_at=now,
                beat_at=now + timedelta(days=365),  # alive for the whole run
            )
        )
    for row in rows:
        if row.kind == "worker" and row.beat_at == now:
            row.beat_at = now + timedelta(days=365)
    ProcessHeartbeat.objects.bulk_create(rows)
