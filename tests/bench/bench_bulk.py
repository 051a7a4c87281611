"""Bulk operations: `python3 dev.py bench bulk [--rounds 2] [--accept-runs 5]`.

PostgreSQL only (DATABASE_URL). On the shared data set (tests/bench/dataset.py: 1,000,000 jobs
over 1,000 accounts, interleaved, with payloads and attempt counts), the operation retries
every failed provider_timeout job, about 100,000 of them spread over all the accounts, as an
operator, across accounts, unpaced (`"pace": null`), with NO worker running:

- accept: POST /api/bulk-operations through the whole Django stack, median of `--accept-runs`
  (each accepted operation but the last is cancelled before it runs);
- all queued: from the request until every job of the set is `queued` with its broker message
  written, the batches run in this process as a worker runs them (jobs.services
  .bulk_operation_run); broker messages counted on the ORM broker's table;
- baseline: the same retry through the per-job service (jobs.services.job_retry, one
  transaction, audit event and message per job), in the same run.
Sides alternate round by round, every round is shown, and before each side the set is put back
to `failed`, the broker's table emptied and the jobs table vacuumed.

Then search-delete of 100,000 jobs beside the raw SQL DELETE on an equally vacuumed table (the
shared function of bench api). Targets on the 2-core machine: accept < 1 s, all queued < 15 s.
Nothing is asserted: figures are reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

from django.db import connection
from django.test import Client

from accounts.apikeys import api_key_create, api_key_revoke
from core.actors import Actor
from jobs import services
from jobs.models import BulkOperation, BulkOperationChunk, Job
from tests.bench.bench_api import api_call, bench_search_delete
from tests.bench.dataset import ensure_dataset

FILTER = {"status": "failed", "last_error_code": "provider_timeout"}
ACCEPT_TARGET_MS = 1000.0
QUEUED_TARGET_S = 15.0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench bulk")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of bulk vs per-job")
    parser.add_argument("--accept-runs", type=int, default=5)
    parser.add_argument(
        "--baseline-jobs",
        type=int,
        default=0,
        help="per-job path on the first N jobs of the set only, scaled up (0: all)",
    )
    parser.add_argument("--delete-jobs", type=int, default=100_000)
    parser.add_argument("--delete-rounds", type=int, default=2)
    args = parser.parse_args(argv)
    if connection.vendor != "postgresql":
        print("bench bulk needs PostgreSQL: set DATABASE_URL=postgres://...")
        return 2
    from django_q.conf import Conf
    from django_q.models import OrmQ

    if not Conf.ORM:
        print("bench bulk counts broker messages on the ORM broker: unset REDIS_URL")
        return 2

    print(f"data set: {args.jobs:,} jobs over {args.accounts:,} accounts ...", flush=True)
    dataset = ensure_dataset(jobs=args.jobs, accounts=args.accounts)
    print(f"loaded in {dataset.load_seconds:.1f} s" if dataset.load_seconds else "already loaded")
    matched_qs = Job.objects.filter(status="failed", last_error_code="provider_timeout")
    ids = list(matched_qs.order_by("pk").values_list("pk", flat=True))
    accounts = matched_qs.values("account_id").distinct().count()
    print(f"the set: {len(ids):,} failed provider_timeout jobs over {accounts:,} accounts\n")

    actor = Actor.system("bench")
    key, raw_key = api_key_create(account=None, actor=actor, name="bench bulk")
    client = Client(HTTP_HOST="localhost")
    body = {"command": "retry", "filter": FILTER, "account_id": None, "pace": None}

    def reset() -> None:
        """The set back to failed as loaded, the broker and the bench's audit rows gone, the
        table vacuumed: every side starts from the same table."""
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE jobs_job SET status = 'failed', enqueued_at = NULL, max_attempts = 5, "
                "run_at = created_at WHERE id = ANY(string_to_array(%s, ','))",
                [",".join(ids)],
            )
            # The bench's own audit rows (plain statements: the ORM would load 100,000 links).
            bench_events = "SELECT id FROM jobs_auditevent WHERE actor IN (%s, %s)"
            actors = [f"key:{key.prefix}", actor.name]
            cursor.execute(
                f"DELETE FROM core_auditeventjob WHERE event_id IN ({bench_events})", actors
            )
            cursor.execute(f"DELETE FROM jobs_auditevent WHERE id IN ({bench_events})", actors)
        OrmQ.objects.all().delete()
        BulkOperationChunk.objects.all().delete()
        BulkOperation.objects.all().delete()
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE jobs_job")
            cursor.execute("VACUUM ANALYZE jobs_auditevent")
            cursor.execute("VACUUM ANALYZE core_auditeventjob")

    def all_queued() -> bool:
        return not matched_qs.exists() and OrmQ.objects.count() >= len(ids)

    def bulk_side() -> dict[str, float]:
        accepts = []
        operation_id = ""
        for run in range(args.accept_runs):
            started = time.perf_counter()
            response = api_call_202(client, raw_key, body)
            accepts.append((time.perf_counter() - started) * 1000)
            operation_id = response["id"]
            if response["progress"]["matched"] != len(ids):
                raise RuntimeError(f"matched {response['progress']['matched']}, not {len(ids)}")
            if run < args.accept_runs - 1:
                services.bulk_operation_cancel(operation_id=operation_id, actor=actor)
        OrmQ.objects.all().delete()  # the operations' own messages: no worker reads them here
        started = time.perf_counter()
        services.bulk_operation_run(operation_id, budget_seconds=3600)
        run_s = time.perf_counter() - started
        if not all_queued():
            raise RuntimeError("not every job is queued with its message")
        operation = BulkOperation.objects.get(pk=operation_id)
        return {
            "accept_ms": statistics.median(accepts),
            "accepts": accepts,
            "queued_s": accepts[-1] / 1000 + run_s,
            "messages": OrmQ.objects.count(),
            "done": operation.done,
            "batches": operation.batches,
        }

    def per_job_side() -> dict[str, float]:
        some = ids[: args.baseline_jobs] if args.baseline_jobs else ids
        started = time.perf_counter()
        for job_id in some:
            services.job_retry(job_id=job_id, actor=actor)
        elapsed = time.perf_counter() - started
        if matched_qs.filter(pk__in=some).exists() or OrmQ.objects.count() < len(some):
            raise RuntimeError("not every job is queued with its message")
        # Scaled to the whole set when only part of it was run (said in the table).
        return {
            "queued_s": elapsed * len(ids) / len(some),
            "messages": OrmQ.objects.count(),
            "jobs_run": len(some),
        }

    rows = []
    try:
        for round_no in range(args.rounds):
            sides = [("bulk", bulk_side), ("per-job", per_job_side)]
            if round_no % 2:
                sides.reverse()
            for name, side in sides:
                reset()
                print(f"round {round_no + 1}/{args.rounds}: {name} ...", flush=True)
                result = side()
                rows.append((round_no + 1, name, result))
                print(f"  {result}", flush=True)
        reset()
        print("\nsearch-delete vs raw SQL DELETE ...", flush=True)
        api_delete, sql_delete = bench_search_delete(client, raw_key, args)
    finally:
        api_key_revoke(prefix=key.prefix, actor=actor)
        key.delete()

    print(f"\n{'round':<6} {'side':<8} {'accept med':>11} {'all queued':>11} {'messages':>9}")
    print(f"{'':<6} {'':<8} {'(ms)':>11} {'(s)':>11}")
    for round_no, name, result in rows:
        accept = f"{result['accept_ms']:.0f}" if "accept_ms" in result else "—"
        print(
            f"{round_no:<6} {name:<8} {accept:>11} {result['queued_s']:>11.2f} "
            f"{result['messages']:>9,}"
        )
    bulk = [r for _, n, r in rows if n == "bulk"]
    per_job = [r for _, n, r in rows if n == "per-job"]
    accept = statistics.median(r["accept_ms"] for r in bulk)
    queued = statistics.median(r["queued_s"] for r in bulk)
    baseline = statistics.median(r["queued_s"] for r in per_job)
    print(
        f"\naccept (median of {args.accept_runs} per round, median of rounds): {accept:.0f} ms "
        f"(target < {ACCEPT_TARGET_MS:.0f} ms: {'ok' if accept < ACCEPT_TARGET_MS else 'MISSED'})"
        f"\nall {len(ids):,} queued: {queued:.2f} s (target < {QUEUED_TARGET_S:.0f} s: "
        f"{'ok' if queued < QUEUED_TARGET_S else 'MISSED'}); per-job service path "
        f"{baseline:.2f} s: {baseline / queued:.1f}x slower"
    )
    for round_no, (api_ms, sql_ms) in enumerate(zip(api_delete, sql_delete, strict=True), 1):
        print(f"search-delete round {round_no}: api {api_ms:,.0f} ms, raw SQL {sql_ms:,.0f} ms")
    print(
        f"search-delete of {args.delete_jobs:,}: api median {statistics.median(api_delete):,.0f} "
        f"ms, raw SQL median {statistics.median(sql_delete):,.0f} ms "
        f"({statistics.median(sql_delete) / statistics.median(api_delete):.2f}x the raw speed)"
    )
    return 0


def api_call_202(client: Client, raw_key: str, body: dict) -> dict:
    response = client.post(
        "/api/bulk-operations",
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw_key}"},
    )
    if response.status_code != 202:
        raise RuntimeError(f"bulk operation: {response.status_code} {response.content[:300]!r}")
    return response.json()


__all__ = ["api_call", "main"]
