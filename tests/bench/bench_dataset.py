"""Load the realistic data set (tests.bench.realistic.ensure_realistic_dataset) and report its
load time, its size and its shape: `python3 dev.py bench dataset [--jobs N] [--accounts N]`.

Loaded once per database: a second run with the same size only describes it.
"""

from __future__ import annotations

import argparse

from django.db import connection

from tests.bench.realistic import ensure_realistic_dataset


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench dataset")
    parser.add_argument("--jobs", type=int, default=10_000_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    args = parser.parse_args(argv)
    if connection.vendor != "postgresql":
        print("bench dataset needs PostgreSQL (DATABASE_URL=postgres://...)")
        return 2
    data = ensure_realistic_dataset(jobs=args.jobs, accounts=args.accounts)
    how = f"loaded in {data.load_seconds:,.1f} s" if data.load_seconds else "already loaded"
    print(
        f"{data.jobs:,} jobs ({data.tasks:,} tasks), {data.attempts:,} attempts, "
        f"{data.audit_events:,} audit events over "
        f"{len(data.account_ids):,} accounts: {how}; {data.bytes / 2**30:,.2f} GiB with indexes"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT account_id, count(*) FROM jobs_job WHERE account_id = ANY(%s) "
            "GROUP BY account_id ORDER BY count(*) DESC",
            [data.account_ids],
        )
        counts = [n for _, n in cursor.fetchall()]
        cursor.execute(
            "SELECT status, count(*) FROM jobs_job WHERE account_id = ANY(%s) GROUP BY status "
            "ORDER BY 2 DESC",
            [data.account_ids],
        )
        statuses = cursor.fetchall()
        cursor.execute(
            "SELECT count(*) FILTER (WHERE last_error_detail ILIKE %s), "
            "count(*) FILTER (WHERE last_error_detail ILIKE %s), "
            "avg(pg_column_size(payload))::int, count(*) FILTER (WHERE labels <> '{}') "
            "FROM jobs_job WHERE account_id = ANY(%s)",
            [f"%{data.rare_term}%", f"%{data.common_term}%", data.account_ids],
        )
        rare, common, payload_bytes, labelled = cursor.fetchone()
        cursor.execute(
            "SELECT n_live_tup, n_dead_tup FROM pg_stat_user_tables WHERE relname = 'jobs_job'"
        )
        live, dead = cursor.fetchone()
    middle = counts[len(counts) // 2] if counts else 0
    print(f"accounts: largest {counts[:5]}, median {middle:,}, smallest {counts[-1:]}")
    print("statuses: " + ", ".join(f"{status} {n:,}" for status, n in statuses))
    print(
        f"error detail: '{data.rare_term}' in {rare:,} jobs, '{data.common_term}' in {common:,}; "
        f"payload {payload_bytes:,} bytes on average; {labelled:,} jobs with labels; "
        f"{dead:,} dead tuples beside {live:,} live (statistics)"
    )
    return 0
