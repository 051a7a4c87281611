"""API read and delete times: `python3 dev.py bench api [--repeat 50] [--delete-rounds 3]`.

PostgreSQL only (DATABASE_URL). Loads (once) 1,000,000 jobs over 1,000 accounts, then times,
in-process through the whole Django stack (middleware, key authentication, scoping, FilterSet,
serialization), the server time of
  - the first page of the largest account's job list,
  - a search: status=failed, action=imap_sync_messages, last_error_code=provider_timeout,
  - the next page of the list by cursor,
  - search-delete of 100,000 matched jobs,
each beside the raw SQL doing the same work, measured in the same run, as ratios.

For a read, "the same work" is every statement the request runs (the API key look-up and the
page), captured from the request and executed again on their own through the same connection,
as the admin benchmark does; the ratio against the page query alone is shown beside it.
Targets: list and search median under 25 ms and within 3x of raw SQL; search-delete at least
half the speed of the raw SQL delete. Nothing is asserted: figures are reported.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from django.db import connection
from django.test import Client

from accounts.apikeys import api_key_create, api_key_revoke
from accounts.models import Account
from core.actors import Actor
from jobs.models import Job
from tests.bench.dataset import ensure_dataset, make_jobs
from tests.bench.sql import captured_selects, replay
from tests.bench.timing import p95, timed

READ_TARGET_MS = 25.0
READ_TARGET_RATIO = 3.0
DELETE_TARGET_SPEED = 0.5
JOB_SQL_COLUMNS = (
    "id, account_id, task_id, provider_event_id, action, payload, labels, status, priority, "
    "run_at, attempt_count, max_attempts, last_error_code, last_error_detail, last_error_at, "
    "result, resolution, created_at, updated_at, started_at, finished_at"
)


def raw(sql: str, params: list) -> Callable[[], list]:
    def run() -> list:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    return run


def api_call(client: Client, method: str, path: str, key: str, body: dict | None = None):
    headers = {"Authorization": f"Bearer {key}"}

    def run():
        if method == "GET":
            response = client.get(path, headers=headers)
        else:
            response = client.post(
                path, body or {}, content_type="application/json", headers=headers
            )
        if response.status_code != 200:
            raise RuntimeError(
                f"{method} {path}: {response.status_code} {response.content[:300]!r}"
            )
        return response

    return run


def read_line(name: str, api: list[float], sql: list[float], page_sql: list[float]) -> str:
    """api vs every statement of the request; in brackets, vs the page query alone."""
    med = statistics.median
    ratio = med(api) / med(sql)
    verdict = "ok" if med(api) < READ_TARGET_MS and ratio <= READ_TARGET_RATIO else "MISSED"
    return (
        f"{name:<30} {med(api):>8.2f} {p95(api):>8.2f} {med(sql):>8.2f} {p95(sql):>8.2f} "
        f"{ratio:>6.2f}x {verdict:>6}  ({med(page_sql):.2f} ms, {med(api) / med(page_sql):.2f}x)"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench api")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=50, help="timed runs per read")
    parser.add_argument("--delete-jobs", type=int, default=100_000)
    parser.add_argument("--delete-rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if connection.vendor != "postgresql":
        print("bench api needs PostgreSQL: set DATABASE_URL=postgres://...")
        return 2

    print(f"data set: {args.jobs:,} jobs over {args.accounts:,} accounts ...", flush=True)
    dataset = ensure_dataset(jobs=args.jobs, accounts=args.accounts)
    if dataset.load_seconds:
        print(f"loaded in {dataset.load_seconds:.1f} s", flush=True)
    else:
        print("already loaded", flush=True)
    account = dataset.hot_account_id
    hot_jobs = Job.objects.filter(account_id=account).count()
    print(f"timed account {account}: {hot_jobs:,} jobs; {args.repeat} runs per read\n")

    actor = Actor.system("bench")
    key, raw_key = api_key_create(account=None, actor=actor, name="bench api")
    client = Client(HTTP_HOST="localhost")
    lines = []
    try:
        list_path = f"/api/accounts/{account}/jobs"
        search = dataset.search
        first = api_call(client, "GET", list_path, raw_key)().json()
        next_path = first["next"].split("localhost", 1)[1]
        page_sql = f"SELECT {JOB_SQL_COLUMNS} FROM jobs_job WHERE account_id = %s "
        reads = [
            (
                "list: first page (50)",
                api_call(client, "GET", list_path, raw_key),
                raw(page_sql + "ORDER BY id DESC LIMIT 51", [account]),
            ),
            (
                "search: failed+action+error",
                api_call(client, "POST", f"{list_path}/search", raw_key, search),
                raw(
                    page_sql + "AND status IN (%s) AND action IN (%s) "
                    "AND last_error_code IN (%s) ORDER BY id DESC LIMIT 51",
                    [account, search["status"], search["action"], search["last_error_code"]],
                ),
            ),
            (
                "list: next page by cursor",
                api_call(client, "GET", next_path, raw_key),
                raw(
                    page_sql + "AND id < %s ORDER BY id DESC LIMIT 51",
                    [account, first["results"][-1]["id"]],
                ),
            ),
        ]
        for name, call, page_query in reads:
            statements = replay(captured_selects(call))
            api_ms = timed(call, args.repeat)
            sql_ms = timed(statements, args.repeat)
            page_ms = timed(page_query, args.repeat)
            lines.append(read_line(name, api_ms, sql_ms, page_ms))

        # 4. search-delete of N matched jobs, beside the raw SQL delete of N jobs.
        api_delete, sql_delete = bench_search_delete(client, raw_key, args)
        ratio = statistics.median(sql_delete) / statistics.median(api_delete)
        lines.append(
            f"{f'search-delete: {args.delete_jobs:,} jobs':<30} "
            f"{statistics.median(api_delete):>8.0f} {p95(api_delete):>8.0f} "
            f"{statistics.median(sql_delete):>8.0f} {p95(sql_delete):>8.0f} "
            f"{ratio:>6.2f}x {'ok' if ratio >= DELETE_TARGET_SPEED else 'MISSED':>6}"
        )
    finally:
        api_key_revoke(prefix=key.prefix, actor=actor)
        key.delete()

    heads = ("api med", "api p95", "sql med", "sql p95")
    print(f"{'operation':<30} " + " ".join(f"{h:>8}" for h in heads) + f" {'ratio':>7}")
    print(f"{'':<30} " + " ".join(f"{'(ms)':>8}" for _ in heads))
    for line in lines:
        print(line)
    print(
        "\nReads: api time / time of the same statements (key look-up, page) run as raw SQL; in"
        "\nbrackets the page query alone and the ratio to it. Targets: median < 25 ms and <= 3x."
        "\nsearch-delete: raw SQL time / api time (relative speed). Target >= 0.5x."
    )
    return 0


def bench_search_delete(client: Client, raw_key: str, args) -> tuple[list[float], list[float]]:
    """Each round loads N succeeded jobs (and 5% others that must stay) into a scratch account
    and deletes them through the API, then loads them again and deletes them with raw SQL (the
    order alternates round by round). Each side starts from an equally vacuumed table: VACUUM
    ANALYZE after every load, so neither runs over the other's dead rows."""
    scratch = Account.objects.create(name="bench scratch (search-delete)")
    keep = max(1, args.delete_jobs // 20)
    path = f"/api/accounts/{scratch.pk}/jobs/search-delete"
    api_times, sql_times = [], []

    def load(seed: int) -> None:
        make_jobs(scratch.pk, args.delete_jobs, seed=seed, status="succeeded")
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE jobs_job")

    def api_side() -> float:
        started = time.perf_counter()
        body = {"status": "succeeded", "expected_count": args.delete_jobs}
        response = api_call(client, "POST", path, raw_key, body)()
        elapsed = (time.perf_counter() - started) * 1000
        deleted = response.json()["deleted"]
        if deleted != args.delete_jobs:
            raise RuntimeError(f"search-delete deleted {deleted}, expected {args.delete_jobs}")
        return elapsed

    def sql_side() -> float:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            # The same work as the service, in plain SQL: attempts, event links, jobs.
            matched = "SELECT id FROM jobs_job WHERE account_id = %s AND status = 'succeeded'"
            cursor.execute("BEGIN")
            cursor.execute(f"DELETE FROM jobs_jobattempt WHERE job_id IN ({matched})", [scratch.pk])
            cursor.execute(
                f"UPDATE jobs_providerevent SET job_id = NULL WHERE job_id IN ({matched})",
                [scratch.pk],
            )
            cursor.execute(
                "DELETE FROM jobs_job WHERE account_id = %s AND status = 'succeeded'",
                [scratch.pk],
            )
            if cursor.rowcount != args.delete_jobs:
                raise RuntimeError(f"raw delete removed {cursor.rowcount}")
            cursor.execute("COMMIT")
        return (time.perf_counter() - started) * 1000

    try:
        for round_no in range(args.delete_rounds):
            make_jobs(scratch.pk, keep, seed=round_no, status="failed")
            sides = [("api", api_side, api_times), ("sql", sql_side, sql_times)]
            if round_no % 2:
                sides.reverse()
            for offset, (name, side, times) in enumerate(sides):
                load(seed=1000 * (offset + 1) + round_no)
                times.append(side())
                print(
                    f"search-delete round {round_no + 1}/{args.delete_rounds}: "
                    f"{name} {times[-1]:,.0f} ms",
                    flush=True,
                )
            remaining = Job.objects.filter(account_id=scratch.pk).count()
            if remaining != keep * (round_no + 1):
                raise RuntimeError(f"{remaining} jobs remain in the scratch account")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM jobs_job WHERE account_id = %s", [scratch.pk])
        scratch.delete()
        # Leave the shared data set as fast as it was found: each round leaves hundreds of
        # thousands of dead rows, which slow the index-only scans of the next benchmark (the
        # admin's triage and dashboard) where autovacuum is off or behind.
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE jobs_job")
    return api_times, sql_times
