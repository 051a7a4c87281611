"""Operators' console times: `python3 dev.py bench admin [--repeat 9]`.

PostgreSQL only (DATABASE_URL). With the API benchmark's data set (1,000,000 jobs over 1,000
accounts, loaded once by tests.bench.dataset), times in-process through the whole Django stack
(session, admin, templates) the server time of
  - the queue view filtered to the largest account and one status,
  - the unfiltered queue view,
  - a job page (a failed job with attempts and audit events),
  - the error triage,
  - the dashboard,
  - one live refresh of each live region (queue rows, job summary and history, triage, the
    index's counts),
each beside the raw SQL it needs: the very statements the view ran, executed again on their own.
Target: each page under 300 ms median. Nothing is asserted: figures are reported.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.urls import reverse

from core.actors import Actor
from jobs import services
from jobs.models import Job, JobAttempt
from tests.bench.dataset import ensure_dataset
from tests.bench.sql import captured_selects, replay
from tests.bench.timing import timed

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
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")

    jobs_url = reverse("admin:jobs_job_changelist")
    pages = [
        ("queue: one account, status failed", f"{jobs_url}?account={hot}&status=failed"),
        ("queue: unfiltered", jobs_url),
        ("job page", reverse("admin:jobs_job_change", args=[job.pk])),
        ("error triage", reverse("admin:jobs_job_triage")),
        ("dashboard", reverse("admin:jobs_job_dashboard")),
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
        f"{'page':38} {'median ms':>10} {'max ms':>8} {'raw SQL ms':>11} {'queries':>8} "
        f"{'ratio':>6}  target < {TARGET_MS:.0f} ms"
    )
    status = 0
    for name, url in pages:
        view = page(client, url)
        statements = captured_selects(view)
        view_ms = timed(view, args.repeat)
        sql_ms = timed(replay(statements), args.repeat)
        median, sql_median = statistics.median(view_ms), statistics.median(sql_ms)
        verdict = "ok" if median < TARGET_MS else "SLOW"
        print(
            f"{name:38} {median:10.1f} {max(view_ms):8.1f} {sql_median:11.1f} "
            f"{len(statements):8d} {median / max(sql_median, 0.01):6.1f}  {verdict}"
        )
    return status
