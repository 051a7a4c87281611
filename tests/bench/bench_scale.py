"""Issue 17's targets on the realistic data set: `python3 dev.py bench scale [--repeat 20]`.

PostgreSQL only (DATABASE_URL, a database of its own: the first run loads the realistic data
set of tests.bench.realistic, 10,000,000 jobs over 10,000 accounts, and later runs reuse it).
Times, warm (3 untimed calls first), in-process through the whole Django stack (key
authentication or session, scoping, filters, serialization, templates), `--repeat` runs each:
  - API, the largest account: the first page of its job list, a search for common text and for
    rare text (in < 0.01% of the jobs) in the error detail, a payload search, the next page by
    cursor and the 50th page (49 cursors followed); target p95 < 50 ms;
  - admin: the queue filtered (the largest account, failed) and unfiltered, a job page (a job
    with five attempts and its audit timeline), the triage, the dashboard (24 h) and the audit
    log; target p95 < 300 ms;
each beside every SQL statement it ran, captured and executed again on their own through the
same connection (the ratio says what the stack adds). Then the rare-text search's own query
with the trigram index (job_error_detail_trgm) and without it (`enable_bitmapscan` off for the
statement, so PostgreSQL scans as it did before migration 0010), alternating, `--scan-repeat`
rounds each; target < 100 ms with the index.

The dashboard reads rollups (jobs.monitoring.rollups), which the scheduler writes as work runs;
the data set is loaded, not run, so they are seeded as a busy week leaves them (bench admin's
seed_rollups, for the 1,000 largest accounts). The scheduler's other records that pages read
are kept while they are timed, as the Procfile's scheduler keeps them, by a thread running its
steps (SchedulerSteps): a depth sample each minute and, with more than JOBS_TRIAGE_COUNT_ABOVE
jobs failing, the triage counts every JOBS_TRIAGE_COUNT_INTERVAL; the time of each count is
reported, with the share of a core it costs. Nothing is asserted: figures are reported.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse

from accounts.apikeys import api_key_create, api_key_revoke
from core.actors import Actor
from jobs.models import Job
from jobs.monitoring import rollups, triage
from tests.bench.bench_admin import seed_rollups
from tests.bench.realistic import ensure_realistic_dataset
from tests.bench.sql import captured_selects, replay
from tests.bench.timing import p95, timed

API_P95_MS = 50.0
ADMIN_P95_MS = 300.0
RARE_MS = 100.0


def _get(client: Client, url: str, **headers: str) -> Callable[[], Any]:
    def run() -> Any:
        response = client.get(url, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url}: {response.status_code} {response.content[:300]!r}")
        return response

    return run


def _post(client: Client, url: str, body: dict, **headers: str) -> Callable[[], Any]:
    def run() -> Any:
        response = client.post(url, body, content_type="application/json", headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"POST {url}: {response.status_code} {response.content[:300]!r}")
        return response

    return run


def _line(name: str, samples: list[float], sql: list[float], target: float) -> str:
    med, high = statistics.median(samples), p95(samples)
    verdict = "ok" if high < target else "MISSED"
    return (
        f"{name:40} {med:8.1f} {high:8.1f} {statistics.median(sql):9.1f} "
        f"{med / max(statistics.median(sql), 0.01):6.1f}x  p95 < {target:.0f}: {verdict}"
    )


class SchedulerSteps(threading.Thread):
    """The scheduler's steps that keep what the pages read (a depth sample each minute, the
    triage counts every JOBS_TRIAGE_COUNT_INTERVAL), on their own connection while pages are
    timed; its other steps (dispatch, sweep, prune) would change the data set, so they are left
    out. Records how long each triage count took."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="scheduler-steps")
        self.halt = threading.Event()
        self.counted = threading.Event()
        self.count_ms: list[float] = []

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                rollups.sample_depth()
                started = time.perf_counter()
                if triage.refresh():
                    self.count_ms.append((time.perf_counter() - started) * 1000)
                self.counted.set()
                self.halt.wait(1.0)
        finally:
            connection.close()

    def report(self) -> str:
        if not self.count_ms:
            return "scheduler: no triage count (not above JOBS_TRIAGE_COUNT_ABOVE)"
        median = statistics.median(self.count_ms)
        every = settings.JOBS_TRIAGE_COUNT_INTERVAL
        counts = ", ".join(f"{ms:,.0f}" for ms in self.count_ms)
        return (
            f"scheduler: {len(self.count_ms)} triage counts, {counts} ms (median {median:,.0f} "
            f"ms every {every:g} s: {100 * median / 1000 / every:.1f}% of a core)"
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench scale")
    parser.add_argument("--jobs", type=int, default=10_000_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per read (>= 20)")
    parser.add_argument("--scan-repeat", type=int, default=3, help="rounds of the scan baseline")
    parser.add_argument("--parts", default="api,admin,scan", help="which of api, admin, scan")
    args = parser.parse_args(argv)
    if connection.vendor != "postgresql":
        print("bench scale needs PostgreSQL: DATABASE_URL=postgres://... (a database of its own)")
        return 2

    began = time.perf_counter()
    data = ensure_realistic_dataset(jobs=args.jobs, accounts=args.accounts)
    if data.load_seconds:
        print(f"loaded in {data.load_seconds:,.0f} s")
    hot = data.account_ids[0]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM jobs_job WHERE account_id = %s", [hot])
        hot_jobs = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM jobs_job WHERE last_error_detail ILIKE %s AND "
            "last_error_detail <> ''",
            [f"%{data.rare_term}%"],
        )
        rare_jobs = cursor.fetchone()[0]
    print(
        f"{data.jobs:,} jobs, {data.tasks:,} tasks, {data.attempts:,} attempts, "
        f"{data.audit_events:,} audit events over {len(data.account_ids):,} accounts, "
        f"{data.bytes / 2**30:,.1f} GiB; the largest account holds {hot_jobs:,} jobs; the rare "
        f"term is in {rare_jobs:,} jobs ({100 * rare_jobs / max(data.jobs, 1):.4f}%)"
    )
    seed_rollups(data.account_ids[:1000], hot)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_jobrollup")

    actor = Actor.system("bench")
    key, raw_key = api_key_create(account=None, actor=actor, name="bench scale")
    user, _ = get_user_model().objects.get_or_create(
        username="bench-scale", defaults={"is_staff": True, "is_superuser": True}
    )
    api = Client(HTTP_HOST="localhost")
    admin = Client(SERVER_NAME="localhost")
    admin.force_login(user)
    auth = {"Authorization": f"Bearer {raw_key}"}
    steps = SchedulerSteps()
    steps.start()
    steps.counted.wait()
    try:
        parts = args.parts.split(",")
        status = 0
        if "api" in parts:
            status |= _api(api, auth, hot, data.rare_term, data.common_term, args.repeat)
        if "admin" in parts:
            status |= _admin(admin, hot, args.repeat)
            metrics = _get(api, "/metrics", **auth)
            statements = captured_selects(metrics)
            samples = timed(metrics, args.repeat)
            sql_ms = timed(replay(statements), args.repeat)
            print(_line("/metrics (operator key)", samples, sql_ms, ADMIN_P95_MS), flush=True)
        if "scan" in parts:
            status |= _rare_scan(hot, data.rare_term, args.scan_repeat)
    finally:
        steps.halt.set()
        steps.join()
        print(steps.report())
        api_key_revoke(prefix=key.prefix, actor=actor)
    print(f"\n(bench scale took {time.perf_counter() - began:,.0f} s)")
    return status


def _api(client: Client, auth: dict, hot: str, rare: str, common: str, repeat: int) -> int:
    jobs = f"/api/accounts/{hot}/jobs"
    first = _get(client, jobs, **auth)().json()
    next_url = first["next"].split("localhost", 1)[1]
    page = first
    for _ in range(48):  # to the 50th page
        page = client.get(page["next"].split("localhost", 1)[1], headers=auth).json()
    page_50 = page["next"].split("localhost", 1)[1]
    reads = [
        ("API list: first page (50)", _get(client, jobs, **auth)),
        ("API search: common text", _post(client, f"{jobs}/search", {"q": common}, **auth)),
        ("API search: rare text", _post(client, f"{jobs}/search", {"q": rare}, **auth)),
        (
            "API search: payload folder Archive",
            _post(client, f"{jobs}/search", {"payload": {"folder": "Archive"}}, **auth),
        ),
        (
            "API search: failed + common text",
            _post(client, f"{jobs}/search", {"status": "failed", "q": common}, **auth),
        ),
        ("API list: next page by cursor", _get(client, next_url, **auth)),
        ("API list: page 50 by cursor", _get(client, page_50, **auth)),
    ]
    print(
        f"\n{'API, the largest account':40} {'med ms':>8} {'p95 ms':>8} {'SQL ms':>9} {'ratio':>7}"
    )
    for name, read in reads:
        statements = captured_selects(read)
        samples = timed(read, repeat)
        print(_line(name, samples, timed(replay(statements), repeat), API_P95_MS), flush=True)
    return 0


def _admin(client: Client, hot: str, repeat: int) -> int:
    # A job page worth reading: a job of the largest account with five attempts.
    job = (
        Job.objects.filter(account_id=hot, status="failed", attempt_count=5)
        .order_by("-id")
        .only("id")
        .first()
    )
    assert job is not None, "the data set has failed jobs with five attempts"
    jobs = reverse("admin:jobs_job_changelist")
    pages = [
        ("admin queue: account + failed", f"{jobs}?account={hot}&status=failed"),
        ("admin queue: unfiltered", jobs),
        ("admin job page (5 attempts)", reverse("admin:jobs_job_change", args=[job.pk])),
        ("admin error triage", reverse("admin:jobs_job_triage")),
        *(
            (f"admin dashboard ({key})", f"{reverse('admin:jobs_job_dashboard')}?range={key}")
            for key in ("1h", "24h", "7d")
        ),
        (
            "admin dashboard (7d), the account",
            f"{reverse('admin:jobs_job_dashboard')}?range=7d&account={hot}",
        ),
        ("admin workers page", reverse("admin:jobs_job_workers")),
        ("admin audit log", reverse("admin:core_auditevent_changelist")),
        (
            "admin audit log: the account",
            f"{reverse('admin:core_auditevent_changelist')}?account_id={hot}",
        ),
    ]
    # One refresh of each live region (core.live): what an open page costs every few seconds.
    job_url = reverse("admin:jobs_job_change", args=[job.pk])
    pages += [
        ("live: queue rows, account + failed", f"{jobs}?account={hot}&status=failed&_live=1"),
        ("live: queue rows, unfiltered", f"{jobs}?_live=1"),
        ("live: job summary", f"{job_url}?_live=summary"),
        ("live: job history", f"{job_url}?_live=history"),
        ("live: triage", reverse("admin:jobs_job_triage") + "?_live=1"),
        ("live: index counts", reverse("admin:jobs_job_counts")),
        ("live: dashboard (24 h)", f"{reverse('admin:jobs_job_dashboard')}?range=24h&_live=1"),
    ]
    print(f"\n{'admin':40} {'med ms':>8} {'p95 ms':>8} {'SQL ms':>9} {'ratio':>7}")
    for name, url in pages:
        view = _get(client, url)
        statements = captured_selects(view)
        samples = timed(view, repeat)
        print(_line(name, samples, timed(replay(statements), repeat), ADMIN_P95_MS), flush=True)
    return 0


def _rare_scan(hot: str, rare: str, rounds: int) -> int:
    """The rare-text search's page query with the trigram index and without (a scan)."""
    sql = (
        "SELECT id FROM jobs_job WHERE account_id = %s AND UPPER(last_error_detail::text) "
        "LIKE UPPER(%s) AND NOT (last_error_detail = '') ORDER BY id DESC LIMIT 51"
    )
    params = [hot, f"%{rare}%"]

    def once(indexed: bool) -> float:
        with transaction.atomic(), connection.cursor() as cursor:
            if not indexed:
                cursor.execute("SET LOCAL enable_bitmapscan = off")
            started = time.perf_counter()
            cursor.execute(sql, params)
            cursor.fetchall()
            return (time.perf_counter() - started) * 1000

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        plan = " / ".join(row[0].strip() for row in cursor.fetchall()[:4])
    print(f"\nrare-text search, the page query alone (plan with the index: {plan})")
    indexed, scanned = [], []
    for number in range(1, rounds + 1):
        order = [True, False] if number % 2 else [False, True]
        for side in order:
            (indexed if side else scanned).append(once(side))
        print(f"  round {number}: trigram index {indexed[-1]:,.1f} ms, scan {scanned[-1]:,.1f} ms")
    med_i, med_s = statistics.median(indexed), statistics.median(scanned)
    verdict = "ok" if med_i < RARE_MS else "MISSED"
    print(
        f"  medians: index {med_i:,.1f} ms, scan {med_s:,.1f} ms: {med_s / max(med_i, 0.01):,.0f}x "
        f"faster (target < {RARE_MS:.0f} ms: {verdict})"
    )
    return 0
