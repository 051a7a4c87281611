"""The benchmark data sets, in PostgreSQL, loaded with COPY. The tidy one: 1,000,000 jobs over
1,000 accounts.

`ensure_dataset()` is idempotent: it loads once and afterwards only checks that the rows are
there, so the API and admin benchmarks share one load. The data looks like production: one
large account (30% of the jobs) and many small ones; mostly succeeded jobs, a fifth failed with
a handful of error codes, some stalled, queued, scheduled, running and resolved; ids that sort by
creation time over the last 30 days, rows interleaved across accounts in creation order, payloads
as each action takes them. Random choices use a fixed seed, so every load is the same.

The realistic data set of issue 17 (10M jobs, interleaved, with payloads, tasks, attempts,
audit events and dead tuples) is tests.bench.realistic's.
"""

from __future__ import annotations

import heapq
import io
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.core.management import call_command
from django.db import connection, transaction

from accounts.models import Account
from core.ids import _encode
from jobs.models import Job

ACCOUNT_PREFIX = "bench-"
HOT_SHARE = 0.30  # the large account's share of all jobs
SEED = 1_000_000
COPY_CHUNK = 50_000

# (value, weight)
STATUSES = [
    ("succeeded", 60),
    ("failed", 20),
    ("stalled", 3),
    ("resolved", 5),
    ("queued", 5),
    ("scheduled", 5),
    ("running", 2),
]
ACTIONS = [("imap_sync_messages", 50), ("noop", 20), ("sleep", 15), ("fail", 15)]
ERRORS = [
    ("provider_timeout", "IMAP connection timed out", 50),
    ("provider_auth_failed", "LOGIN failed: invalid credentials", 20),
    ("provider_unavailable", "Server unavailable, try again later", 20),
    ("internal_error", "KeyError: 'uidvalidity'", 10),
]
# The search the benchmarks time: about 5% of an account's jobs.
SEARCH = {
    "status": "failed",
    "action": "imap_sync_messages",
    "last_error_code": "provider_timeout",
}

JOB_COLUMNS = (
    "id, account_id, action, payload, labels, status, priority, run_at, attempt_count, "
    "max_attempts, last_error_code, last_error_detail, last_error_at, worker, created_at, "
    "updated_at, started_at, finished_at, enqueued_at, heartbeat_at"
)


@dataclass(frozen=True)
class Dataset:
    account_ids: list[str]  # oldest first
    hot_account_id: str  # the account with HOT_SHARE of the jobs
    jobs: int
    search: dict[str, str]
    load_seconds: float  # 0.0 when the data was already there


def _ulid(epoch_ms: int, rng: random.Random) -> str:
    return _encode((epoch_ms << 80) | rng.getrandbits(80))


def _weighted(choices, rng: random.Random, n: int) -> list:
    values = [c[0] if len(c) == 2 else c[:-1] for c in choices]
    weights = [c[-1] for c in choices]
    return rng.choices(values, weights=weights, k=n)


# What a job's payload holds, by action (JSON text for COPY: no tab, newline or backslash).
PAYLOADS = {
    "imap_sync_messages": '{"folders": ["INBOX", "Sent"], "full": false}',
    "noop": '{"n": 1}',
    "sleep": '{"seconds": 0.01}',
    "fail": '{"code": "provider_timeout", "retryable": true}',
}


def _job_lines(
    account_id: str,
    count: int,
    start_ms: int,
    end_ms: int,
    rng: random.Random,
    status: str | None = None,
    *,
    stamped: bool = False,
):
    """COPY text lines of `count` jobs of one account, created between start and end (all in
    `status` when given), in creation order; `stamped`: as (epoch ms, line)."""
    stamps = sorted(rng.randrange(start_ms, end_ms) for _ in range(count))
    statuses = [status] * count if status else _weighted(STATUSES, rng, count)
    actions = _weighted(ACTIONS, rng, count)
    errors = _weighted(ERRORS, rng, count)
    null = r"\N"
    for ms, status, action, error in zip(stamps, statuses, actions, errors, strict=True):
        created = datetime.fromtimestamp(ms / 1000, UTC)
        ts = created.isoformat()
        later = (created + timedelta(seconds=3)).isoformat()
        code, detail = ("", "")
        attempts, started, finished, error_at = 0, null, null, null
        enqueued = heartbeat = null
        worker = ""
        if status in {"succeeded", "failed", "stalled", "resolved", "running"}:
            attempts, started = 1 + (ms % 3 if status != "succeeded" else 0), ts
        if status in {"failed", "stalled"}:
            code, detail = (error[0], error[1]) if status == "failed" else ("worker_lost", "lost")
            error_at = later
        if status in {"succeeded", "failed", "stalled", "resolved"}:
            finished = later
        if status == "queued":
            enqueued = ts
        if status == "running":
            heartbeat, worker = later, "bench-worker"
        line = (
            f"job_{_ulid(ms, rng)}\t{account_id}\t{action}\t{PAYLOADS[action]}\t{{}}\t{status}\t"
            f"0\t{ts}\t{attempts}\t5\t{code}\t{detail}\t{error_at}\t{worker}\t{ts}\t{later}\t"
            f"{started}\t{finished}\t{enqueued}\t{heartbeat}\n"
        )
        yield (ms, line) if stamped else line


def copy_jobs(lines) -> int:
    """COPY job lines into the jobs table in chunks; returns the number of rows."""
    total = 0
    raw = connection.connection  # psycopg 3 connection
    with raw.cursor() as cursor, cursor.copy(f"COPY jobs_job ({JOB_COLUMNS}) FROM STDIN") as copy:
        buffer, n = io.StringIO(), 0
        for line in lines:
            buffer.write(line)
            n += 1
            if n == COPY_CHUNK:
                copy.write(buffer.getvalue())
                total += n
                buffer, n = io.StringIO(), 0
        if n:
            copy.write(buffer.getvalue())
            total += n
    return total


def make_jobs(
    account_id: str, count: int, *, seed: int, status: str | None = None, days: float = 30.0
) -> int:
    """COPY `count` jobs into one account (the benchmarks refill what they delete with it)."""
    rng = random.Random(seed)
    end = int(time.time() * 1000)
    start = end - int(days * 86_400_000)
    connection.ensure_connection()
    return copy_jobs(_job_lines(account_id, count, start, end, rng, status))


def _existing() -> list[str]:
    return list(
        Account.objects.filter(name__startswith=ACCOUNT_PREFIX)
        .order_by("id")
        .values_list("id", flat=True)
    )


def ensure_dataset(jobs: int = 1_000_000, accounts: int = 1_000) -> Dataset:
    """Make sure the data set is loaded (PostgreSQL only) and describe it."""
    if connection.vendor != "postgresql":
        raise RuntimeError("The benchmark data set needs PostgreSQL (set DATABASE_URL).")
    call_command("migrate", verbosity=0, interactive=False)
    ids = _existing()
    hot_jobs = int(jobs * HOT_SHARE)
    if len(ids) == accounts:
        loaded = Job.objects.filter(account_id__in=ids).count()
        if loaded == jobs:
            return Dataset(ids, ids[0], jobs, dict(SEARCH), 0.0)
    started = time.perf_counter()
    _clear()
    rng = random.Random(SEED)
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - 30 * 86_400_000
    ids = [f"acc_{_ulid(start_ms - accounts + i, rng)}" for i in range(accounts)]
    Account.objects.bulk_create(
        [
            Account(id=account_id, name=f"{ACCOUNT_PREFIX}{i:04d}")
            for i, account_id in enumerate(ids)
        ],
        batch_size=1000,
    )
    rest, small = jobs - hot_jobs, accounts - 1
    counts = [hot_jobs] + [rest // small + (1 if i < rest % small else 0) for i in range(small)]

    def lines():
        # Interleaved as a live table is: rows lie in the order they were created, every
        # account's among the others' (a merge of the accounts' streams by creation time), so
        # a batch of ids in order touches rows all over the table, as it would in production.
        streams = [
            _job_lines(
                account_id, count, start_ms, now_ms, random.Random(rng.random()), stamped=True
            )
            for account_id, count in zip(ids, counts, strict=True)
        ]
        for _, line in heapq.merge(*streams, key=lambda stamped: stamped[0]):
            yield line

    # One transaction: an interrupted load leaves neither half the rows nor missing indexes.
    with (
        transaction.atomic(),
        connection.cursor() as cursor,
        _secondary_indexes_dropped(cursor, "jobs_job"),
    ):
        copy_jobs(lines())
    with connection.cursor() as cursor:
        # VACUUM sets the visibility map, so index-only scans (triage, counts by status) need
        # not visit the heap, as on a live table that autovacuum keeps.
        cursor.execute("VACUUM ANALYZE jobs_job")
        cursor.execute("ANALYZE accounts_account")
    return Dataset(ids, ids[0], jobs, dict(SEARCH), time.perf_counter() - started)


@contextmanager
def _secondary_indexes_dropped(cursor, table: str):
    """Bulk-load practice: drop the table's secondary indexes (and foreign keys' indexes) for the
    COPY and build them again after, which is several times faster than maintaining eight
    indexes row by row. The definitions come from the catalog, so they are exactly Django's."""
    cursor.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i "
        "WHERE i.tablename = %s AND i.indexname NOT IN ("
        "  SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass)",
        [table, table],
    )
    indexes = cursor.fetchall()
    for name, _ in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    yield
    # The COPY queued deferred foreign-key checks; PostgreSQL builds no index on a table with
    # pending trigger events, so run the checks now.
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    for _, definition in indexes:
        cursor.execute(definition)


def _clear() -> None:
    """Remove a partial or differently sized data set."""
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM jobs_jobattempt WHERE job_id IN (SELECT j.id FROM jobs_job j "
            "JOIN accounts_account a ON a.id = j.account_id WHERE a.name LIKE %s)",
            [ACCOUNT_PREFIX + "%"],
        )
        cursor.execute(
            "DELETE FROM jobs_job WHERE account_id IN "
            "(SELECT id FROM accounts_account WHERE name LIKE %s)",
            [ACCOUNT_PREFIX + "%"],
        )
    Account.objects.filter(name__startswith=ACCOUNT_PREFIX).delete()
