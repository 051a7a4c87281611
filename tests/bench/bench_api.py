"""API read and delete times: `python3 dev.py bench api [--repeat 50] [--delete-rounds 3]`.

PostgreSQL only (DATABASE_URL). Loads (once) 1,000,000 jobs over 1,000 accounts, then times,
in-process through the whole Django stack (middleware, key authentication, scoping, FilterSet,
serialization), the server time of
  - the first page of the largest account's job list,
  - a search: status=failed, action=imap_sync_messages, last_error_code=provider_timeout,
  - the next page of the list by cursor,
  - search-delete of 100,000 matched jobs,
each beside the raw SQL doing the same work, measured in the same run, as ratios.
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
from jobs.actors import Actor
from jobs.models import Job
from tests.bench.dataset import ensure_dataset, make_jobs
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


def report_line(name: str, api: list[float], sql: list[float], target: str) -> str:
    ratio = statistics.median(api) / statistics.median(sql)
    return (
        f"{name:<34} {statistics.median(api):>9.2f} {p95(api):>9.2f} "
        f"{statistics.median(sql):>9.2f} {p95(sql):>9.2f} {ratio:>7.2f}x  {target}"
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
        # 1. First page of the list.
        list_path = f"/api/accounts/{account}/jobs"
        api_list = timed(api_call(client, "GET", list_path, raw_key), args.repeat)
        sql_list = timed(
            raw(
                f"SELECT {JOB_SQL_COLUMNS} FROM jobs_job WHERE account_id = %s "
                "ORDER BY id DESC LIMIT 51",
                [account],
            ),
            args.repeat,
        )
        lines.append(report_line("list: first page (50)", api_list, sql_list, "<25 ms, <=3x"))

        # 2. Search: status, action and error code.
        search = dataset.search
        search_path = f"/api/accounts/{account}/jobs/search"
        api_search = timed(api_call(client, "POST", search_path, raw_key, search), args.repeat)
        sql_search = timed(
            raw(
                f"SELECT {JOB_SQL_COLUMNS} FROM jobs_job WHERE account_id = %s "
                "AND status IN (%s) AND action IN (%s) AND last_error_code IN (%s) "
                "ORDER BY id DESC LIMIT 51",
                [account, search["status"], search["action"], search["last_error_code"]],
            ),
            args.repeat,
        )
        lines.append(
            report_line("search: failed+action+error", api_search, sql_search, "<25 ms, <=3x")
        )

        # 3. The next page by cursor.
        first = api_call(client, "GET", list_path, raw_key)().json()
        next_path = first["next"].split("localhost", 1)[1]
        last_id = first["results"][-1]["id"]
        api_next = timed(api_call(client, "GET", next_path, raw_key), args.repeat)
        sql_next = timed(
            raw(
                f"SELECT {JOB_SQL_COLUMNS} FROM jobs_job WHERE account_id = %s AND id < %s "
                "ORDER BY id DESC LIMIT 51",
                [account, last_id],
            ),
            args.repeat,
        )
        lines.append(report_line("list: next page by cursor", api_next, sql_next, "<25 ms, <=3x"))

        # 4. search-delete of N matched jobs, beside the raw SQL delete of N jobs.
        api_delete, sql_delete = bench_search_delete(client, raw_key, args)
        ratio = statistics.median(sql_delete) / statistics.median(api_delete)
        lines.append(
            f"{f'search-delete: {args.delete_jobs:,} jobs':<34} "
            f"{statistics.median(api_delete):>9.0f} {p95(api_delete):>9.0f} "
            f"{statistics.median(sql_delete):>9.0f} {p95(sql_delete):>9.0f} "
            f"{ratio:>7.2f}x  speed vs raw SQL >=0.5x"
        )
    finally:
        api_key_revoke(prefix=key.prefix, actor=actor)
        key.delete()

    heads = ("api med", "api p95", "sql med", "sql p95")
    print(f"{'operation':<34} " + " ".join(f"{h:>9}" for h in heads) + f" {'ratio':>8}  target")
    print(f"{'':<34} {'(ms)':>9} {'(ms)':>9} {'(ms)':>9} {'(ms)':>9}")
    for line in lines:
        print(line)
    print("\nratio: api/sql time for reads; sql/api time (relative speed) for search-delete.")
    return 0


def bench_search_delete(client: Client, raw_key: str, args) -> tuple[list[float], list[float]]:
    """Each round loads N succeeded jobs (and 5% others that must stay) into a scratch account,
    deletes them through the API; loads them again and deletes them with raw SQL."""
    scratch = Account.objects.create(name="bench scratch (search-delete)")
    keep = max(1, args.delete_jobs // 20)
    path = f"/api/accounts/{scratch.pk}/jobs/search-delete"
    api_times, sql_times = [], []
    try:
        for round_no in range(args.delete_rounds):
            print(f"search-delete round {round_no + 1}/{args.delete_rounds} ...", flush=True)
            make_jobs(scratch.pk, keep, seed=round_no, status="failed")
            make_jobs(scratch.pk, args.delete_jobs, seed=1000 + round_no, status="succeeded")
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE jobs_job")
            started = time.perf_counter()
            response = api_call(client, "POST", path, raw_key, {"status": "succeeded"})()
            api_times.append((time.perf_counter() - started) * 1000)
            deleted = response.json()["deleted"]
            if deleted != args.delete_jobs:
                raise RuntimeError(f"search-delete deleted {deleted}, expected {args.delete_jobs}")

            make_jobs(scratch.pk, args.delete_jobs, seed=2000 + round_no, status="succeeded")
            started = time.perf_counter()
            with connection.cursor() as cursor:
                # The same work as the service, in plain SQL: attempts, event links, jobs.
                matched = "SELECT id FROM jobs_job WHERE account_id = %s AND status = 'succeeded'"
                cursor.execute("BEGIN")
                cursor.execute(
                    f"DELETE FROM jobs_jobattempt WHERE job_id IN ({matched})", [scratch.pk]
                )
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
            sql_times.append((time.perf_counter() - started) * 1000)
            remaining = Job.objects.filter(account_id=scratch.pk).count()
            if remaining != keep * (round_no + 1):
                raise RuntimeError(f"{remaining} jobs remain in the scratch account")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM jobs_job WHERE account_id = %s", [scratch.pk])
        scratch.delete()
    return api_times, sql_times
