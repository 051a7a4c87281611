"""Fair share and scale-out (issue 16): `python3 dev.py bench fairness [--flood 50000] [--small
100] [--brokers orm,redis]` and `python3 dev.py bench scaleout [--jobs 5000] [--clusters 1,2,3]
[--brokers orm,redis]`.

fairness: one cluster (2 workers) as deployed; account A's flood of `--flood` noop jobs is
created and queued (the cluster starts on it at once), then account B's `--small` noop jobs in
one batch. Reports B's created->started latency (p50, p99, max), and how many of A's jobs were
still waiting when B's last one started (the rest of the flood is then removed, not run).
Target: B's p99 < 1 s.

scaleout: for 1, 2 and 3 clusters of 2 workers on one database, `--jobs` jobs of the
recording action tests.execution.actions.test_record (one O_APPEND line per run, and an
overlap file when a job runs twice at once), created in batches of 1,000 once every cluster is
up; jobs/s from the first insert to the last success, the duplicate and concurrent double runs,
and the CPU the clusters, PostgreSQL and Redis used against the machine's capacity (which says
what saturates). Both steady state: no VACUUM or CHECKPOINT between runs (the figures include
the dead rows earlier runs leave, as a database in use would). The machine is shared: say so
when quoting figures.

Runs against DATABASE_URL (PostgreSQL for figures worth reporting); removes only what it made.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
REDIS_DEFAULT = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobsconsole.settings")
    import django

    django.setup()
    from django.core.management import call_command

    import tests.execution.actions  # noqa: F401  (test_record, in this process too)

    call_command("migrate", verbosity=0)


def _redis_up(url: str) -> bool:
    import redis

    try:
        return bool(redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@contextmanager
def _clusters(broker: str, count: int, redis_url: str, workdir: Path) -> Iterator[str]:
    """`count` qclusters of 2 workers on a queue of their own; this process produces for it."""
    from django_q.conf import Conf

    from jobs.execution.broker import LANED_REDIS, ORDERED_ORM

    queue = f"bench{uuid.uuid4().hex[:10]}"
    names = ("CLUSTER_NAME", "PREFIX", "BROKER_CLASS", "ORM", "REDIS")
    saved = {name: getattr(Conf, name) for name in names}
    Conf.CLUSTER_NAME = Conf.PREFIX = queue
    if broker == "redis":
        Conf.BROKER_CLASS, Conf.ORM, Conf.REDIS = LANED_REDIS, None, redis_url
    else:
        Conf.BROKER_CLASS, Conf.ORM, Conf.REDIS = ORDERED_ORM, "default", {}
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env.update(
        JOBS_QUEUE_NAME=queue,
        JOBS_WORKERS="2",
        JOBS_EXTRA_ACTION_MODULES="tests.execution.actions",
        JOBS_Q_LOG_LEVEL="WARNING",
    )
    if broker == "redis":
        env["REDIS_URL"] = redis_url
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=(workdir / f"qcluster{n}.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for n in range(count)
    ]
    _clusters.procs = procs  # type: ignore[attr-defined]
    try:
        yield queue
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        from django_q.brokers import get_broker

        get_broker(queue).delete_queue()
        for name, value in saved.items():
            setattr(Conf, name, value)


def _create(account: Any, action: str, count: int, **payload: Any) -> list[str]:
    from core.actors import Actor
    from jobs.execution.actions.registry import JobSpec
    from jobs.services import jobs_create

    ids: list[str] = []
    for start in range(0, count, 1000):
        specs = [JobSpec(action, dict(payload)) for _ in range(start, min(count, start + 1000))]
        ids += [
            job.pk for job in jobs_create(account=account, specs=specs, actor=Actor.system("bench"))
        ]
    return ids


def _account(label: str) -> Any:
    from accounts.models import Account

    tag = uuid.uuid4().hex[:8]
    return Account.objects.create(name=f"bench {label} {tag}", email=f"{tag}@bench.test")


def _cleanup(*accounts: Any) -> None:
    from django.db import router

    from core.models import AuditEvent
    from jobs.models import Job, JobAttempt

    db = router.db_for_write(Job)
    for account in accounts:
        JobAttempt.objects.filter(job__account=account)._raw_delete(db)
        Job.objects.filter(account=account)._raw_delete(db)
        AuditEvent.objects.filter(account_id=account.pk)._raw_delete(db)
        account.delete()


def _wait(condition: Any, what: str, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        time.sleep(0.05)


def _pending(account: Any) -> int:
    from jobs.models import Job

    return Job.objects.filter(
        account=account, status__in=["scheduled", "queued", "running"]
    ).count()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


# --- fairness ----------------------------------------------------------------------------------


def fairness(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench fairness")
    parser.add_argument("--flood", type=int, default=50_000)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--brokers", default="orm,redis")
    parser.add_argument("--redis-url", default=REDIS_DEFAULT)
    args = parser.parse_args(argv)
    _setup()
    from django.db import connection

    from jobs.models import Job

    print(
        f"database: {connection.vendor} {connection.settings_dict['NAME']}; 1 cluster of 2 "
        f"workers; flood {args.flood:,} noop jobs of A, then {args.small} of B",
        flush=True,
    )
    for broker in args.brokers.split(","):
        if broker == "redis" and not _redis_up(args.redis_url):
            print(f"redis: skipped, nothing answers at {args.redis_url}")
            continue
        flood, small = _account("A"), _account("B")
        workdir = Path(tempfile.mkdtemp(prefix="bench-fair-"))
        try:
            with _clusters(broker, 1, args.redis_url, workdir):
                warm = _create(small, "noop", 50)
                _wait(lambda small=small: _pending(small) == 0, "the warm-up")
                Job.objects.filter(pk__in=warm).delete()
                started = time.perf_counter()
                _create(flood, "noop", args.flood)
                created_in = time.perf_counter() - started
                b = _create(small, "noop", args.small)
                _wait(
                    lambda b=b: Job.objects.filter(pk__in=b, started_at__isnull=True).count() == 0,
                    "B's jobs to start",
                )
                a_waiting = Job.objects.filter(account=flood, status="queued").count()
                rows = Job.objects.filter(pk__in=b).values_list("created_at", "started_at")
                latency = [(s - c).total_seconds() for c, s in rows]
                # The rest of the flood is not waited for: its jobs and messages are removed.
                done = Job.objects.filter(account=flood, status="succeeded").count()
                flood_rate = done / (time.perf_counter() - started)
            verdict = "ok" if _percentile(latency, 0.99) < 1.0 else "ABOVE TARGET"
            print(
                f"{broker:>5}: B's {args.small} jobs created->started p50 "
                f"{statistics.median(latency) * 1000:.0f} ms, p99 "
                f"{_percentile(latency, 0.99) * 1000:.0f} ms, max {max(latency) * 1000:.0f} ms "
                f"(target p99 < 1000 ms) {verdict}; {a_waiting:,} of A's jobs still queued when "
                f"B's last started; A's flood created in {created_in:.1f} s, run meanwhile at "
                f"{flood_rate:.0f} jobs/s",
                flush=True,
            )
        finally:
            _cleanup(flood, small)
    return 0


# --- scale-out ---------------------------------------------------------------------------------


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _ticks_of(predicate: Any) -> int:
    """utime + stime (jiffies) of the live processes `predicate(pid, comm, pgid)` selects."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2 :].split()
        pgid = int(rest[2])
        if predicate(int(entry.name), comm, pgid):
            total += int(rest[11]) + int(rest[12])
    return total


def scaleout(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench scaleout")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--clusters", default="1,2,3")
    parser.add_argument("--brokers", default="orm,redis")
    parser.add_argument("--redis-url", default=REDIS_DEFAULT)
    args = parser.parse_args(argv)
    _setup()
    from django.db import connection

    from jobs.models import Job, JobAttempt

    cores = os.cpu_count() or 1
    print(
        f"database: {connection.vendor} {connection.settings_dict['NAME']}; {args.jobs:,} "
        f"test_record jobs per run; clusters of 2 workers; {cores} cores (shared)",
        flush=True,
    )
    for broker in args.brokers.split(","):
        if broker == "redis" and not _redis_up(args.redis_url):
            print(f"redis: skipped, nothing answers at {args.redis_url}")
            continue
        for count in [int(n) for n in args.clusters.split(",")]:
            account = _account("scale")
            workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
            runs = workdir / "runs"
            runs.mkdir()
            try:
                with _clusters(broker, count, args.redis_url, workdir):
                    warm = _create(account, "noop", 20 * count)
                    _wait(lambda a=account: _pending(a) == 0, "the warm-up")
                    Job.objects.filter(pk__in=warm).delete()
                    groups = {proc.pid for proc in _clusters.procs}  # type: ignore[attr-defined]
                    busy0, total0 = _cpu_ticks()
                    ours0 = _ticks_of(lambda pid, comm, pgid, g=groups: pgid in g)
                    pg0 = _ticks_of(lambda pid, comm, pgid: comm.startswith("postgres"))
                    redis0 = _ticks_of(lambda pid, comm, pgid: comm.startswith("redis"))
                    started = time.perf_counter()
                    ids = _create(account, "test_record", args.jobs, dir=str(runs))
                    _wait(lambda a=account: _pending(a) == 0, f"{args.jobs} jobs")
                    elapsed = time.perf_counter() - started
                    busy1, total1 = _cpu_ticks()
                    ours = _ticks_of(lambda pid, comm, pgid, g=groups: pgid in g) - ours0
                    pg = _ticks_of(lambda pid, comm, pgid: comm.startswith("postgres")) - pg0
                    rds = _ticks_of(lambda pid, comm, pgid: comm.startswith("redis")) - redis0
                lines = (runs / "runs.log").read_text().split("\n")
                executions = len([line for line in lines if line])
                overlaps = (
                    (runs / "overlaps.log").read_text().split()
                    if (runs / "overlaps.log").exists()
                    else []
                )
                succeeded = Job.objects.filter(pk__in=ids, status="succeeded").count()
                attempts = JobAttempt.objects.filter(job_id__in=ids).count()
                span = total1 - total0
                hz = os.sysconf("SC_CLK_TCK")
                print(
                    f"{broker:>5} x{count} cluster(s): {args.jobs / elapsed:6.0f} jobs/s; "
                    f"{succeeded:,}/{args.jobs:,} succeeded, {executions - args.jobs} duplicate "
                    f"run(s), {len(overlaps)} concurrent double run(s), {attempts:,} attempts; "
                    f"CPU: machine {100 * (busy1 - busy0) / max(span, 1):.0f}% busy, clusters "
                    f"{ours / hz / elapsed:.2f} cores, postgres (all databases) "
                    f"{pg / hz / elapsed:.2f}, redis {rds / hz / elapsed:.2f} of {cores}",
                    flush=True,
                )
            finally:
                _cleanup(account)
    return 0


def main(argv: list[str]) -> int:
    """Both, as `dev.py bench all` runs each suite."""
    return fairness(argv) | scaleout(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
