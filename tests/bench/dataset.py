"""The benchmark data sets, in PostgreSQL, loaded with COPY. The tidy one: 1,000,000 jobs over
1,000 accounts.

`ensure_dataset()` is idempotent: it loads once and afterwards only checks that the rows are
there, so the API and admin benchmarks share one load. The data looks like production: one
large account (30% of the jobs) and many small ones; mostly succeeded jobs, a fifth failed with
a handful of error codes, some stalled, queued, scheduled, running and resolved; ids that sort by
creation time over the last 30 days, rows interleaved across accounts in creation order, payloads
as each action takes them. Random choices use a fixed seed, so every load is the same.

`ensure_realistic_dataset()` loads the realistic one of issue 17 (see its section below): 10M
jobs over 10,000 accounts of skewed sizes by default, interleaved in time, with payloads,
labels, attempts, audit events, dead tuples and a realistic error vocabulary.
"""

from __future__ import annotations

import heapq
import io
import json
import math
import random
import tempfile
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


# --- the realistic data set (issue 17) -----------------------------------------------------------
# The data set above is tidy: rows written account by account, empty payloads and labels, no
# attempt, no audit row, no dead tuple, one error detail per code. Every page looks faster on it
# than on a table months of traffic have written. `ensure_realistic_dataset` loads one that
# looks like that traffic instead, under accounts of their own (REAL_PREFIX), leaving the tidy
# one and its callers as they are:
# - accounts of skewed sizes (a Pareto draw: a few hold hundreds of thousands of jobs, most a
#   few hundred), their jobs interleaved in time as real traffic is, not account by account;
# - payloads of 0.1 to 4 KB (log-uniform: most small), labels on a fifth of the jobs;
# - an attempt for each run of each job that ran, an audit event for each transition;
# - error details drawn from a vocabulary of templates with variable parts, weighted as real
#   failures are (a few templates most of the time), with a rare term (RARE_TERM, one job in
#   200,000) and a common one;
# - a share of dead tuples (UPDATE_SHARE of the jobs updated after the load, not vacuumed);
# - COPY into the three tables with their secondary indexes dropped, built again after.

REAL_PREFIX = "real-"
REAL_SEED = 17
UPDATE_SHARE = 0.05
RARE_TERM = "quarantined by gateway zephyr"
COMMON_TERM = "timed out"
_FOLDERS = [("INBOX", 60), ("Sent", 10), ("Archive", 10), ("Drafts", 3), ("Spam", 5)]
_TEAMS = ["mail", "growth", "billing", "ops", "support"]
_HOSTS = [f"imap{i}.mail-{c}.example" for i in range(1, 6) for c in "abcdefgh"]
# (code, detail template, weight); {host}, {n}, {folder}, {uid} are filled per job.
_VOCABULARY = [
    ("provider_timeout", "IMAP connection to {host} timed out after {n} s", 400),
    ("provider_timeout", "read timed out waiting for FETCH response from {host}", 150),
    ("provider_timeout", "IDLE keepalive to {host} timed out", 40),
    ("provider_unavailable", "connection refused by {host}:993", 120),
    ("provider_unavailable", "[UNAVAILABLE] Server busy, try again in {n} seconds", 90),
    ("provider_unavailable", "name or service not known: {host}", 30),
    ("provider_unavailable", "connection reset by peer during SELECT {folder}", 25),
    ("provider_auth_failed", "LOGIN failed: [AUTHENTICATIONFAILED] Invalid credentials", 100),
    ("provider_auth_failed", "[AUTHORIZATIONFAILED] application-specific password required", 20),
    ("provider_auth_failed", "OAuth token expired for mailbox on {host}", 15),
    ("provider_tls_error", "certificate verify failed: hostname mismatch for {host}", 10),
    ("provider_tls_error", "STARTTLS not offered by {host}", 4),
    ("provider_protocol_error", "unexpected response to UID FETCH {uid}: BAD parse error", 8),
    ("provider_protocol_error", "malformed BODYSTRUCTURE for UID {uid} in {folder}", 5),
    ("provider_folder_not_found", "[NONEXISTENT] Unknown mailbox {folder}/Projects-{n}", 12),
    ("provider_not_configured", "no IMAP password stored for this account", 6),
    ("internal_error", "KeyError: 'uidvalidity' in mailsync.storage at UID {uid}", 7),
    ("internal_error", "IntegrityError: duplicate key value violates unique constraint", 3),
    ("internal_error", "UnicodeDecodeError: 'utf-8' codec can't decode byte 0x{n} in header", 2),
]
_RARE_EVERY = 200_000
_STATUS_MIX = [
    ("succeeded", 78),
    ("failed", 6),
    ("stalled", 1),
    ("resolved", 3),
    ("queued", 4),
    ("scheduled", 6),
    ("running", 2),
]


@dataclass(frozen=True)
class RealisticDataset:
    account_ids: list[str]  # largest first
    jobs: int
    attempts: int
    audit_events: int
    rare_term: str
    common_term: str
    load_seconds: float  # 0.0 when it was already there
    bytes: int  # jobs, attempts and audit events with their indexes


def _account_sizes(jobs: int, accounts: int, rng: random.Random) -> list[int]:
    """Pareto-distributed account sizes summing to `jobs`, largest first."""
    weights = sorted((rng.paretovariate(1.1) for _ in range(accounts)), reverse=True)
    total = sum(weights)
    sizes = [max(1, int(jobs * w / total)) for w in weights]
    sizes[0] += jobs - sum(sizes)
    return sizes


def _payload(rng: random.Random, folder: str, uid: int) -> str:
    # 0.1 to 4 KB, log-uniform: most payloads are small, a few carry long header lists.
    target = int(math.exp(rng.uniform(math.log(100), math.log(4096))))
    doc = {
        "folder": folder,
        "uid_next": uid,
        "since": f"2026-{rng.randint(1, 11):02d}-{rng.randint(1, 28):02d}",
        "batch_size": rng.choice([100, 250, 500]),
    }
    text = json.dumps(doc, separators=(",", ":"))
    if len(text) < target:
        doc["headers"] = [
            f"X-Header-{rng.getrandbits(40):010x}" for _ in range((target - len(text)) // 24)
        ]
        text = json.dumps(doc, separators=(",", ":"))
    return text


def _audit_line(
    at: str,
    actor: str,
    command: str,
    account_id: str,
    job_id: str,
    source: str,
    target: str,
    reason: str = "",
) -> str:
    actor_type = actor.split(":", 1)[0].replace("key", "api_key")
    return (
        f"{at}\t{actor_type}\t{actor}\t{command}\t{account_id}\t{job_id}\t\t{source}\t{target}\t"
        f"{reason}\t{{}}\n"
    )


def _copy_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _realistic_rows(
    ids: list[str], sizes: list[int], start_ms: int, end_ms: int, rng: random.Random
):
    """(job line, attempt lines, audit lines) per job, in creation order across accounts."""
    total = sum(sizes)
    owners = rng.choices(range(len(ids)), weights=sizes, k=total)
    stamps = sorted(rng.randrange(start_ms, end_ms) for _ in range(total))
    statuses = _weighted(_STATUS_MIX, rng, total)
    folders = _weighted(_FOLDERS, rng, total)
    errors = rng.choices(_VOCABULARY, weights=[v[2] for v in _VOCABULARY], k=total)
    null = r"\N"
    rare_given = 0
    for index, (ms, owner, status, folder, error) in enumerate(
        zip(stamps, owners, statuses, folders, errors, strict=True)
    ):
        account_id = ids[owner]
        job_id = f"job_{_ulid(ms, rng)}"
        created = datetime.fromtimestamp(ms / 1000, UTC)
        ts = created.isoformat()
        uid = rng.randint(1, 500_000)
        ran = status in {"succeeded", "failed", "stalled", "resolved", "running"}
        attempts = 0
        if ran:
            attempts = (
                1
                if status in {"succeeded", "running"} and rng.random() < 0.9
                else rng.randint(1, 5)
            )
        code = detail = ""
        error_at = null
        if status in {"failed", "resolved"} or (attempts > 1) or status == "stalled":
            code, template, _ = error
            detail = template.format(
                host=rng.choice(_HOSTS), n=rng.randint(2, 120), folder=folder, uid=uid
            )
            if status == "stalled":
                code, detail = (
                    "worker_lost",
                    f"Worker w-{rng.randint(1, 40)} stopped heart-beating.",
                )
            # The first job with a detail after each _RARE_EVERY jobs carries the rare term.
            if index // _RARE_EVERY >= rare_given:
                detail = f"{detail}; {RARE_TERM}"
                rare_given += 1
        clock = created + timedelta(milliseconds=rng.randint(5, 4000))
        attempt_lines = []
        first = "scheduled" if status == "scheduled" else "queued"
        audit_lines = [
            _audit_line(ts, f"key:{account_id[-8:]}", "create", account_id, job_id, "", first)
        ]
        started = finished = null
        for number in range(1, attempts + 1):
            begin = clock
            end = begin + timedelta(milliseconds=rng.randint(50, 20_000))
            last = number == attempts
            if last and status == "running":
                outcome, a_code, a_detail, a_end, duration = "running", "", "", null, null
            elif (
                last and status in {"succeeded", "resolved"} and not (status == "resolved" and code)
            ):
                outcome, a_code, a_detail = "succeeded", "", ""
                a_end, duration = end.isoformat(), int((end - begin).total_seconds() * 1000)
            elif last and status == "stalled":
                outcome, a_code, a_detail = "worker_lost", "worker_lost", detail
                a_end, duration = end.isoformat(), int((end - begin).total_seconds() * 1000)
            else:
                outcome = "failed" if last else "retry_scheduled"
                a_code, a_detail = code or "provider_timeout", detail or "timed out"
                a_end, duration = end.isoformat(), int((end - begin).total_seconds() * 1000)
            attempt_lines.append(
                f"{job_id}\t{number}\tw-{rng.randint(1, 40)}\t{begin.isoformat()}\t{a_end}\t"
                f"{duration}\t{outcome}\t{a_code}\t{_copy_text(a_detail)}\t\n"
            )
            audit_lines.append(
                _audit_line(
                    begin.isoformat(),
                    "system:worker",
                    "claim",
                    account_id,
                    job_id,
                    "queued",
                    "running",
                )
            )
            if outcome != "running":
                verb = {"succeeded": "succeed", "worker_lost": "stall"}.get(outcome, "fail")
                to = {
                    "succeeded": "succeeded",
                    "worker_lost": "stalled",
                    "retry_scheduled": "scheduled",
                }.get(outcome, "failed")
                audit_lines.append(
                    _audit_line(a_end, "system:worker", verb, account_id, job_id, "running", to)
                )
            started = begin.isoformat()
            finished = a_end
            clock = end + timedelta(seconds=rng.randint(1, 300))
        if status == "resolved":
            at = clock.isoformat()
            audit_lines.append(
                _audit_line(
                    at,
                    "user:operator",
                    "resolve",
                    account_id,
                    job_id,
                    "failed",
                    "resolved",
                    "fixed elsewhere",
                )
            )
            finished = at
        if status in {"failed", "stalled"} or (status == "resolved" and code):
            error_at = finished
        if status not in {"succeeded", "failed", "stalled", "resolved"}:
            finished = null
        updated = finished if finished != null else ts
        labels = "{}"
        if rng.random() < 0.2:
            labels = json.dumps({"team": rng.choice(_TEAMS), "tier": rng.choice(["gold", "free"])})
        resolution = null
        if status == "resolved":
            resolution = json.dumps(
                {"code": "fixed", "note": "fixed elsewhere", "by": "user:operator", "at": finished}
            )
        run_at = (
            ts
            if status != "scheduled"
            else (created + timedelta(minutes=rng.randint(1, 600))).isoformat()
        )
        enqueued = ts if status == "queued" else null
        heartbeat = clock.isoformat() if status == "running" else null
        worker = f"w-{rng.randint(1, 40)}" if status == "running" else ""
        payload = _copy_text(_payload(rng, folder, uid))
        job_line = (
            f"{job_id}\t{account_id}\timap_sync_messages\t{payload}\t"
            f"{labels}\t{status}\t0\t{run_at}\t{attempts}\t5\t{code}\t{_copy_text(detail)}\t{error_at}\t"
            f"{worker}\t{ts}\t{updated}\t{started}\t{finished}\t{enqueued}\t{heartbeat}\t{resolution}\n"
        )
        yield job_line, attempt_lines, audit_lines


_ATTEMPT_COLUMNS = (
    "job_id, number, worker, started_at, finished_at, duration_ms, outcome, error_code, "
    "error_detail, traceback"
)
_AUDIT_COLUMNS = (
    "created_at, actor_type, actor, command, account_id, job_id, task_id, from_status, "
    "to_status, reason, data"
)
_REAL_JOB_COLUMNS = f"{JOB_COLUMNS}, resolution"


def _copy_file(cursor_copy_sql: str, handle) -> None:
    raw = connection.connection
    handle.seek(0)
    with raw.cursor() as cursor, cursor.copy(cursor_copy_sql) as copy:
        while chunk := handle.read(1 << 20):
            copy.write(chunk)


def _real_accounts() -> list[str]:
    return list(
        Account.objects.filter(name__startswith=REAL_PREFIX)
        .order_by("name")
        .values_list("id", flat=True)
    )


def _real_size() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sum(pg_total_relation_size(c)) FROM unnest(%s::regclass[]) AS c",
            [["jobs_job", "jobs_jobattempt", "jobs_auditevent"]],
        )
        return int(cursor.fetchone()[0] or 0)


def _clear_realistic(ids: list[str]) -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM jobs_auditevent WHERE account_id = ANY(%s)", [ids])
        cursor.execute(
            "DELETE FROM jobs_jobattempt WHERE job_id IN "
            "(SELECT id FROM jobs_job WHERE account_id = ANY(%s))",
            [ids],
        )
        cursor.execute("DELETE FROM jobs_job WHERE account_id = ANY(%s)", [ids])
    Account.objects.filter(pk__in=ids).delete()


def ensure_realistic_dataset(
    jobs: int = 10_000_000, accounts: int = 10_000, *, days: float = 30.0
) -> RealisticDataset:
    """Make sure the realistic data set is loaded (PostgreSQL only), once per database, and
    describe it. Deterministic (REAL_SEED): every load of one size is the same."""
    if connection.vendor != "postgresql":
        raise RuntimeError("The benchmark data set needs PostgreSQL (set DATABASE_URL).")
    call_command("migrate", verbosity=0, interactive=False)
    ids = _real_accounts()

    def describe(load_seconds: float) -> RealisticDataset:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*), coalesce(sum(attempt_count), 0) FROM jobs_job "
                "WHERE account_id = ANY(%s)",
                [ids],
            )
            loaded, attempts = cursor.fetchone()
            cursor.execute("SELECT count(*) FROM jobs_auditevent WHERE account_id = ANY(%s)", [ids])
            events = cursor.fetchone()[0]
        return RealisticDataset(
            ids, loaded, int(attempts), events, RARE_TERM, COMMON_TERM, load_seconds, _real_size()
        )

    if len(ids) == accounts and Job.objects.filter(account_id__in=ids).count() == jobs:
        return describe(0.0)
    started = time.perf_counter()
    if ids:
        _clear_realistic(ids)
    rng = random.Random(REAL_SEED)
    end_ms = int(time.time() * 1000)
    start_ms = end_ms - int(days * 86_400_000)
    sizes = _account_sizes(jobs, accounts, rng)
    ids = [f"acc_{_ulid(start_ms - accounts + i, rng)}" for i in range(accounts)]
    Account.objects.bulk_create(
        [Account(id=account_id, name=f"{REAL_PREFIX}{i:05d}") for i, account_id in enumerate(ids)],
        batch_size=1000,
    )
    connection.ensure_connection()
    with (
        tempfile.TemporaryFile("w+", encoding="utf-8") as attempts_file,
        tempfile.TemporaryFile("w+", encoding="utf-8") as audit_file,
        transaction.atomic(),
        connection.cursor() as cursor,
        _secondary_indexes_dropped(cursor, "jobs_job"),
        _secondary_indexes_dropped(cursor, "jobs_jobattempt"),
        _secondary_indexes_dropped(cursor, "jobs_auditevent"),
    ):

        def job_lines():
            for job_line, attempt_lines, audit_lines in _realistic_rows(
                ids, sizes, start_ms, end_ms, rng
            ):
                attempts_file.writelines(attempt_lines)
                audit_file.writelines(audit_lines)
                yield job_line

        raw = connection.connection
        with (
            raw.cursor() as raw_cursor,
            raw_cursor.copy(f"COPY jobs_job ({_REAL_JOB_COLUMNS}) FROM STDIN") as copy,
        ):
            buffer: list[str] = []
            for line in job_lines():
                buffer.append(line)
                if len(buffer) == COPY_CHUNK:
                    copy.write("".join(buffer))
                    buffer.clear()
            if buffer:
                copy.write("".join(buffer))
        _copy_file(f"COPY jobs_jobattempt ({_ATTEMPT_COLUMNS}) FROM STDIN", attempts_file)
        _copy_file(f"COPY jobs_auditevent ({_AUDIT_COLUMNS}) FROM STDIN", audit_file)
    with connection.cursor() as cursor:
        for table in ("jobs_job", "jobs_jobattempt", "jobs_auditevent"):
            cursor.execute(f"VACUUM ANALYZE {table}")
        # Dead tuples, as months of status changes leave them between two vacuums: a share of
        # the jobs updated once more, not vacuumed.
        cursor.execute(
            "UPDATE jobs_job SET updated_at = updated_at WHERE account_id = ANY(%s) "
            "AND abs(hashtext(id)) %% 1000 < %s",
            [ids, int(UPDATE_SHARE * 1000)],
        )
        cursor.execute("ANALYZE jobs_job")
    return describe(time.perf_counter() - started)
