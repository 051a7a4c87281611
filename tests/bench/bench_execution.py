"""Execution throughput: `python3 dev.py bench execution [--jobs 5000] [--rounds 3]
[--create 10000] [--brokers orm,redis]`.

Runs against DATABASE_URL (PostgreSQL for figures worth reporting), in one run and one process
tree, for each broker (ORM; Redis when REDIS_URL or --redis-url answers):
  - raw django-q2: one `manage.py qcluster` with 2 workers drains N messages for a function
    that only notes it ran (one append to a file, so completion can be counted on Redis too);
  - ours: the same cluster, broker and settings runs N `noop` jobs end to end: created (batched
    insert + enqueue), claimed, run, succeeded, with their attempt and audit records;
and reports jobs/s for both and the ratio. "The same broker" is the one a deployment runs:
django-q2's ORM broker with its read ordered (jobs.execution.broker.OrderedORM), or its Redis
broker with a lane ahead of the line read first (jobs.execution.broker.LanedRedis). Both enqueue
in batches, and both clocks start before the first message is written and stop when the last
run is recorded.
Raw and ours alternate for `--rounds` rounds on the same cluster; the medians are compared (on a
small machine a single run moves by a third with whatever else runs on it).
Then it times `task_create(kind="noop_batch", count=10000)`: one task, 10,000 jobs, batched
insert and enqueue, with no cluster running.
Every measurement starts from compacted tables (PostgreSQL: VACUUM FULL), so give the bench a
database of its own.
Targets: ours >= 0.7x raw on the ORM broker, >= 0.5x on Redis; creation >= 5,000 jobs/s.
Nothing is asserted: figures are reported. Only the rows and queues it made are removed.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGETS = {"orm": 0.7, "redis": 0.5}
CREATE_TARGET = 5000.0
RAW_FUNC = "tests.bench.bench_execution.raw_noop"
WARM_UP_JOBS = 1000


def raw_noop(path: str) -> None:
    """The raw django-q2 function: note that it ran, nothing else."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, b".")
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench execution")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--create", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--brokers", default="orm,redis")
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobsconsole.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    print(
        f"database: {connection.vendor} {connection.settings_dict['NAME']}, "
        f"{args.workers} workers, {args.jobs} jobs per run, {args.rounds} rounds",
        flush=True,
    )
    for broker in args.brokers.split(","):
        if broker == "redis" and not _redis_up(args.redis_url):
            print(f"redis: skipped, nothing answers at {args.redis_url}")
            continue
        rounds = _throughput(broker, args.jobs, args.workers, args.redis_url, args.rounds)
        raw = statistics.median(r for r, _ in rounds)
        ours = statistics.median(o for _, o in rounds)
        ratio = ours / raw
        verdict = "ok" if ratio >= TARGETS[broker] else "BELOW TARGET"
        paired = [o / r for r, o in rounds]
        each = ", ".join(f"{p:.2f}" for p in paired)
        print(
            f"{broker:>5}: raw django-q2 {raw:7.0f} jobs/s | ours {ours:7.0f} jobs/s | "
            f"ratio {ratio:.2f} (target >= {TARGETS[broker]}) {verdict}  [rounds: {each}; "
            f"median {statistics.median(paired):.2f}]",
            flush=True,
        )
    rate = _creation(args.create)
    verdict = "ok" if rate >= CREATE_TARGET else "BELOW TARGET"
    print(
        f"create: task noop_batch of {args.create} jobs: {rate:7.0f} jobs/s "
        f"(target >= {CREATE_TARGET:.0f}) {verdict}",
        flush=True,
    )
    return 0


def _redis_up(url: str) -> bool:
    import redis

    try:
        return bool(redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _throughput(
    broker: str, count: int, workers: int, redis_url: str, rounds: int
) -> list[tuple[float, float]]:
    """(raw, ours) jobs/s for each round."""
    from django_q.conf import Conf

    from accounts.models import Account

    queue = f"bench{uuid.uuid4().hex[:10]}"
    from jobs.execution.broker import LANED_REDIS, ORDERED_ORM

    names = ("CLUSTER_NAME", "PREFIX", "BROKER_CLASS", "ORM", "REDIS")
    saved = {name: getattr(Conf, name) for name in names}
    # This process produces for the cluster it starts: point django-q2's producer at its queue.
    Conf.CLUSTER_NAME = Conf.PREFIX = queue
    if broker == "redis":
        Conf.BROKER_CLASS, Conf.ORM, Conf.REDIS = LANED_REDIS, None, redis_url
    else:
        Conf.BROKER_CLASS, Conf.ORM, Conf.REDIS = ORDERED_ORM, "default", {}
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env.update(JOBS_QUEUE_NAME=queue, JOBS_WORKERS=str(workers))
    if broker == "redis":
        env["REDIS_URL"] = redis_url
    account = Account.objects.create(name=f"bench {queue}", email=f"{queue}@bench.test")
    workdir = Path(tempfile.mkdtemp(prefix="bench-exec-"))
    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=(workdir / "qcluster.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # Warm up both paths (imports, connections) before the clocks start. Ours warms up
        # with enough jobs that the statistics the next VACUUM ANALYZE takes describe tables
        # in use: statistics of empty tables make PostgreSQL plan the workers' statements (and
        # cache those plans) for tables of a few rows, a state a database in use is never in.
        _raw_run(workdir / "warm", 20)
        _ours_run(account, WARM_UP_JOBS)
        results = []
        for n in range(rounds):
            _vacuum()
            raw = _raw_run(workdir / f"raw{n}", count)
            _vacuum()
            results.append((raw, _ours_run(account, count)))
        return results
    finally:
        cluster.send_signal(signal.SIGTERM)
        try:
            cluster.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)
        _cleanup(account, queue, broker)
        for name, value in saved.items():
            setattr(Conf, name, value)


def _vacuum() -> None:
    """Start each measured run from compact tables and a checkpoint.

    Every run leaves dead rows and half-empty index pages in the tables it churns (the ORM
    broker's queue, the jobs and their records, which the bench also deletes at the end of
    each phase). Where autovacuum is off or lags, as on the machine these figures come from,
    the next run would pay for the previous ones: over three phases of Redis runs ours fell
    from about 770 to 500 jobs/s while raw django-q2, which writes nothing there, did not.
    VACUUM FULL rewrites the tables and their indexes (so: a database of the bench's own),
    ANALYZE gives the planner their current sizes, and the checkpoint keeps one forced by the
    previous runs' WAL out of this one."""
    from django.db import connection
    from django_q.models import OrmQ

    from core.models import AuditEvent
    from jobs.models import Job, JobAttempt, Task

    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for model in (OrmQ, Job, JobAttempt, AuditEvent, Task):
            cursor.execute(f"VACUUM (FULL, ANALYZE) {model._meta.db_table}")
        cursor.execute("CHECKPOINT")


def _raw_run(path: Path, count: int) -> float:
    from django.utils import timezone
    from django_q.brokers import get_broker
    from django_q.brokers.orm import ORM
    from django_q.conf import Conf
    from django_q.humanhash import uuid as q_uuid
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    broker = get_broker()
    started = time.perf_counter()
    for start in range(0, count, 1000):
        packages = [
            SignedPackage.dumps(
                {
                    "id": q_uuid()[1],
                    "name": f"raw{n}",
                    "func": RAW_FUNC,
                    "args": (str(path),),
                    "kwargs": {},
                    "started": timezone.now(),
                    "ack_failure": Conf.ACK_FAILURES,
                }
            )
            for n in range(start, min(count, start + 1000))
        ]
        if isinstance(broker, ORM):
            now = timezone.now()
            OrmQ.objects.bulk_create(
                [OrmQ(key=broker.list_key, payload=package, lock=now) for package in packages]
            )
        else:
            broker.connection.rpush(broker.list_key, *packages)
    _wait(lambda: path.exists() and path.stat().st_size >= count, f"{count} raw runs")
    return count / (time.perf_counter() - started)


def _ours_run(account, count: int) -> float:
    from django.db import connection

    from core.actors import Actor
    from jobs.execution.actions.registry import JobSpec
    from jobs.models import Job
    from jobs.services import jobs_create

    before = Job.objects.filter(account=account, status="succeeded").count()
    started = time.perf_counter()
    for start in range(0, count, 1000):
        specs = [JobSpec("noop", {"n": n}) for n in range(start, min(count, start + 1000))]
        jobs_create(account=account, specs=specs, actor=Actor.system("bench"))

    # Polled every 20 ms: "is any job still waiting or running" is one index probe (a plain
    # statement, so the poll takes as little as it can from the workers being measured).
    def any_waiting() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM jobs_job WHERE account_id = %s "
                "AND status IN ('scheduled', 'queued', 'running') LIMIT 1",
                [account.pk],
            )
            return cursor.fetchone() is not None

    _wait(lambda: not any_waiting(), "jobs")
    elapsed = time.perf_counter() - started
    succeeded = Job.objects.filter(account=account, status="succeeded").count() - before
    if succeeded != count:
        raise SystemExit(f"bench execution: {succeeded} of {count} jobs succeeded")
    return count / elapsed


def _creation(count: int) -> float:
    from accounts.models import Account
    from core.actors import Actor
    from jobs.services import task_create

    queue = f"bench{uuid.uuid4().hex[:10]}"
    from django_q.conf import Conf

    saved = Conf.CLUSTER_NAME, Conf.PREFIX
    Conf.CLUSTER_NAME = Conf.PREFIX = queue
    account = Account.objects.create(name=f"bench {queue}", email=f"{queue}@bench.test")
    try:
        _vacuum()
        started = time.perf_counter()
        task_create(
            account=account, kind="noop_batch", params={"count": count}, actor=Actor.system("b")
        )
        return count / (time.perf_counter() - started)
    finally:
        broker = "redis" if Conf.REDIS and not Conf.ORM else "orm"
        _cleanup(account, queue, broker)
        Conf.CLUSTER_NAME, Conf.PREFIX = saved


def _wait(condition, what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench execution: timed out waiting for {what}")
        time.sleep(0.02)


def _cleanup(account, queue: str, broker: str) -> None:
    from django.db import router
    from django_q.models import OrmQ

    from core.models import AuditEvent
    from jobs.models import Job, JobAttempt, Task

    db = router.db_for_write(Job)
    JobAttempt.objects.filter(job__account=account)._raw_delete(db)
    Job.objects.filter(account=account)._raw_delete(db)
    Task.objects.filter(account=account)._raw_delete(db)
    AuditEvent.objects.filter(account_id=account.pk)._raw_delete(db)
    OrmQ.objects.filter(key=queue).delete()
    account.delete()
    if broker == "redis":
        from django_q.brokers import get_broker

        get_broker(queue).delete_queue()  # the line and the lane ahead (LanedRedis)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
