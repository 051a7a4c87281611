"""Retention pruning on PostgreSQL: what it costs to remove finished jobs with their attempts and
old audit events in the scheduler's batches, beside the same rows removed by bare SQL batches,
and what that means for 2.9 million new jobs a day (10,000 mailboxes synced every 5 minutes).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_prune python3 dev.py bench prune

It loads its own rows (an account named bench-prune-...) into the database and removes them:
point it at a database of its own. Figures: wall time per batch (median, p95), rows a second,
and CPU seconds of this process and of its PostgreSQL backend (read from /proc, so the server
must run on this machine), projected to a day of 2.9M jobs (and the 4 audit events each).
Not a test: nothing here asserts a time. On a shared machine the figures are noisy.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

from django.db import connection

from accounts.models import Account
from core.ids import new_id
from core.models import AuditEvent
from jobs.models import Job, JobAttempt
from jobs.services.retention import PruneRun, RetentionPolicy
from jobs.states import JobStatus
from tests.bench.timing import p95

JOBS_PER_DAY = 2_900_000
PRUNE_PREFIX = "bench-prune-"  # the names of the accounts the bench loads
AUDIT_PER_JOB = 4  # create, dispatch, claim, succeed
_JOB, _ATTEMPT, _AUDIT = (m._meta.db_table for m in (Job, JobAttempt, AuditEvent))


def _backend_cpu() -> float:
    """CPU seconds (user + system) of this connection's PostgreSQL backend."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(account_id: str, expired: int, kept_failed: int, young: int, old_audit: int) -> None:
    """Jobs finished 10 days ago (expired at 7 d), failed jobs older still (kept), young
    succeeded jobs; an attempt for each job; 4 audit events for each job (young enough to stay)
    and `old_audit` events 100 days old of jobs long gone. Payloads of about 0.5 KB."""
    payload = "jsonb_build_object('folder', 'INBOX', 'uid', i, 'pad', repeat('x', 400))"
    with connection.cursor() as cursor:
        for start, count, status, days in [
            (0, expired, JobStatus.SUCCEEDED, 10),
            (expired, kept_failed, JobStatus.FAILED, 30),
            (expired + kept_failed, young, JobStatus.SUCCEEDED, 1),
        ]:
            cursor.execute(
                f"""
                INSERT INTO {_JOB} (id, account_id, action, payload, labels, status, priority,
                    run_at, attempt_count, max_attempts, last_error_code, last_error_detail,
                    worker, created_at, updated_at, started_at, finished_at)
                SELECT %(prefix)s || lpad(i::text, 16, '0'), %(account)s, 'imap_sync_messages',
                    {payload}, '{{}}', %(status)s, 0, t, 1, 5, '', '', 'w', t, t, t, t
                FROM generate_series(%(start)s, %(end)s) AS i,
                    LATERAL (SELECT now() - make_interval(days => %(days)s)
                             - make_interval(secs => i %% 3600)) AS at(t)
                """,
                {
                    "prefix": f"job_{account_id[-6:]}",
                    "account": account_id,
                    "status": status.value,
                    "days": days,
                    "start": start,
                    "end": start + count - 1,
                },
            )
        cursor.execute(
            f"""
            INSERT INTO {_ATTEMPT} (job_id, number, worker, started_at, finished_at,
                duration_ms, outcome, error_code, error_detail, traceback)
            SELECT id, 1, 'w', started_at, finished_at, 10, 'succeeded', '', '', ''
            FROM {_JOB} WHERE account_id = %s
            """,
            [account_id],
        )
        cursor.execute(
            f"""
            INSERT INTO {_AUDIT} (created_at, actor_type, actor, command, account_id, job_id,
                task_id, from_status, to_status, reason, data)
            SELECT j.finished_at, 'system', 'system:worker', c.command, j.account_id, j.id, '',
                '', '', '', '{{}}'
            FROM {_JOB} j CROSS JOIN (VALUES ('create'), ('dispatch'), ('claim'), ('succeed'))
                AS c(command)
            WHERE j.account_id = %s
            """,
            [account_id],
        )
        cursor.execute(
            f"""
            INSERT INTO {_AUDIT} (created_at, actor_type, actor, command, account_id, job_id,
                task_id, from_status, to_status, reason, data)
            SELECT now() - interval '100 days' - make_interval(secs => i), 'system',
                'system:worker', 'succeed', %s, 'job_gone' || i, '', '', '', '', '{{}}'
            FROM generate_series(1, %s) AS i
            """,
            [account_id, old_audit],
        )
    for table in (_JOB, _ATTEMPT, _AUDIT):
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {table}")


def sizes() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relname = ANY(%s)",
            [[_JOB, _ATTEMPT, _AUDIT]],
        )
        return dict(cursor.fetchall())


def prune_with_the_service(policy: RetentionPolicy) -> tuple[list[float], dict[str, int]]:
    run = PruneRun.start(policy)
    samples = []
    while not run.finished:
        started = time.perf_counter()
        run.step()
        samples.append((time.perf_counter() - started) * 1000)
    return samples, dict(run.counts)


_BARE_JOBS = f"""
WITH doomed AS (
    SELECT id FROM {_JOB}
    WHERE status = 'succeeded' AND finished_at < now() - interval '7 days'
    ORDER BY finished_at LIMIT %(batch)s FOR UPDATE SKIP LOCKED
), attempts AS (
    DELETE FROM {_ATTEMPT} WHERE job_id IN (SELECT id FROM doomed)
)
DELETE FROM {_JOB} WHERE id IN (SELECT id FROM doomed)
"""
_BARE_AUDIT = f"""
DELETE FROM {_AUDIT} WHERE id IN (
    SELECT a.id FROM {_AUDIT} a
    WHERE a.created_at < now() - interval '90 days'
      AND NOT EXISTS (SELECT FROM {_JOB} j WHERE j.id = a.job_id)
    ORDER BY a.created_at LIMIT %(batch)s)
"""


def prune_with_bare_sql(statement: str, batch: int) -> list[float]:
    """The baseline: the same rows, removed by bare SQL in batches of the same size, each its
    own transaction, oldest first with no cursor (the naive batch delete)."""
    samples = []
    while True:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(statement, {"batch": batch})
            removed = cursor.rowcount
        samples.append((time.perf_counter() - started) * 1000)
        if not removed:
            return samples


def _measure(label: str, rows: int, work) -> tuple[float, float]:
    """Run `work()`, print its figures, return (wall s, CPU s of this process and backend)."""
    cpu_client, cpu_backend = time.process_time(), _backend_cpu()
    started = time.perf_counter()
    samples = work()
    wall = time.perf_counter() - started
    client, backend = time.process_time() - cpu_client, _backend_cpu() - cpu_backend
    print(
        f"  {label}: {rows:,} rows in {len(samples):,} batches, {wall:.2f} s wall "
        f"({rows / max(wall, 1e-9):,.0f} rows/s), batch median {statistics.median(samples):.1f} "
        f"ms, p95 {p95(samples):.1f} ms; CPU {client:.2f} s here + {backend:.2f} s PostgreSQL"
    )
    return wall, client + backend


def _drop(account_id: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {_ATTEMPT} WHERE job_id IN (SELECT id FROM {_JOB} WHERE account_id = %s)",
            [account_id],
        )
        cursor.execute(f"DELETE FROM {_JOB} WHERE account_id = %s", [account_id])
        cursor.execute(f"DELETE FROM {_AUDIT} WHERE account_id = %s", [account_id])
    Account.objects.filter(pk=account_id).delete()
    # The next method starts from tables without this one's dead rows, as the first did.
    with connection.cursor() as cursor:
        for table in (_JOB, _ATTEMPT, _AUDIT):
            cursor.execute(f"VACUUM ANALYZE {table}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench prune")
    parser.add_argument("--expired", type=int, default=200_000)
    parser.add_argument("--kept-failed", type=int, default=50_000)
    parser.add_argument("--young", type=int, default=100_000)
    parser.add_argument("--old-audit", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args(argv)
    if connection.vendor != "postgresql":
        print("bench prune needs PostgreSQL (DATABASE_URL=postgres://...)")
        return 2
    # The policy prunes the whole database, not only the bench's rows: on a database holding
    # other work (the 10M data set of bench scale) it would delete that work.
    own = Account.objects.filter(name__startswith=PRUNE_PREFIX).values("pk")
    if (
        Job.objects.exclude(account_id__in=own).exists()
        or AuditEvent.objects.exclude(account_id__in=own).exists()
    ):
        print(
            "bench prune removes every row its policy matches, and this database holds jobs or "
            "audit events of other accounts: point DATABASE_URL at a database of its own"
        )
        return 2
    policy = RetentionPolicy(
        job_days={
            JobStatus.SUCCEEDED: 7.0,
            JobStatus.RESOLVED: 30.0,
            JobStatus.FAILED: None,
            JobStatus.STALLED: None,
        },
        audit_days=90.0,
        batch=args.batch,
    )
    jobs_only = dataclasses.replace(policy, audit_days=None)
    audit_only = dataclasses.replace(policy, job_days={})
    results: dict[str, dict[str, tuple[float, float]]] = {}
    for method in ("service", "bare SQL"):
        account = Account.objects.create(
            id=new_id("acc"), name=f"{PRUNE_PREFIX}{method}", email="bench@example.test"
        )
        started = time.perf_counter()
        load(account.pk, args.expired, args.kept_failed, args.young, args.old_audit)
        print(f"\n--- {method} (loaded in {time.perf_counter() - started:.1f} s)")
        before = sizes()
        if method == "service":
            jobs = _measure(
                "jobs + attempts", args.expired, lambda: prune_with_the_service(jobs_only)[0]
            )
            audit = _measure(
                "audit events", args.old_audit, lambda: prune_with_the_service(audit_only)[0]
            )
        else:
            jobs = _measure(
                "jobs + attempts", args.expired, lambda: prune_with_bare_sql(_BARE_JOBS, args.batch)
            )
            audit = _measure(
                "audit events", args.old_audit, lambda: prune_with_bare_sql(_BARE_AUDIT, args.batch)
            )
        results[method] = {"jobs": jobs, "audit": audit}
        after = sizes()
        with connection.cursor() as cursor:
            for table in (_JOB, _ATTEMPT, _AUDIT):
                cursor.execute(f"VACUUM {table}")
        vacuumed = sizes()
        for table in (_JOB, _ATTEMPT, _AUDIT):
            print(
                f"  {table}: {before[table] / 2**20:,.1f} MB before, {after[table] / 2**20:,.1f} "
                f"MB after, {vacuumed[table] / 2**20:,.1f} MB after VACUUM (the space is reused)"
            )
        _drop(account.pk)
    service = results["service"]
    per_job = service["jobs"][1] / args.expired
    per_event = service["audit"][1] / args.old_audit
    day = per_job * JOBS_PER_DAY + per_event * JOBS_PER_DAY * AUDIT_PER_JOB
    print(
        f"\nprojected (service): {per_job * 1e6:,.0f} µs CPU a job, {per_event * 1e6:,.0f} µs an "
        f"audit event: {day:,.0f} CPU s a day for {JOBS_PER_DAY:,} jobs and "
        f"{JOBS_PER_DAY * AUDIT_PER_JOB:,} audit events = {day / 86_400:.2%} of one core"
    )
    for kind in ("jobs", "audit"):
        (sw, sc), (bw, bc) = results["service"][kind], results["bare SQL"][kind]
        print(f"service / bare SQL, {kind}: wall {sw / bw:.2f}x, CPU {sc / max(bc, 1e-9):.2f}x")
    return 0
