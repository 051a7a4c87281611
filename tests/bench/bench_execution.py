"""Execution, measured as deployed: `python3 dev.py bench execution [--jobs 5000] [--rounds 5]
[--brokers orm,redis] [--commits async,durable] [--sections throughput,latency,trigger,memory]
[--database-url URL]`.

The deployment is the Procfile's: `gunicorn jobsconsole.wsgi` (web), `manage.py qcluster`
(worker, JOBS_WORKERS=2) and `manage.py jobs_scheduler` (scheduler), started as processes
against one database and broker. For each broker (ORM; Redis when it answers) and each commit
mode of the workers (JOBS_WORKER_ASYNC_COMMIT=1, the default, and 0: durable), one deployment
runs these sides, alternating (the order rotates each round) for `--rounds` rounds:
  - raw django-q2: N messages for a function that only notes it ran, enqueued inside the
    window, drained by the same cluster with django-q2's `save` on (a Success row per task),
    timed until every Success row is saved: the baseline, unchanged;
  - ours, jobs of a task: `POST /api/accounts/:id/tasks {"kind": "noop_batch"}` with N jobs,
    timed from the POST until all N succeeded (what every API client's work is);
  - ours, taskless: N `noop` jobs created by jobs_create in the bench process, in batches of
    1,000 (the path a provider event's jobs take, without the HTTP request and event row),
    timed from the first create until all succeeded.
  Between two sides, off the clock, the queue empties (the ORM broker's messages are deleted
  by the cluster's monitor after their runs), so no side's trailing work runs in another's.
Then, in the same deployment:
  - latency: taskless jobs created one by one at about half the median throughput of the
    jobs of a task, for `--latency-seconds`: created -> started p50, p99 and max;
  - trigger: 10,000 jobs queued, then a job triggered through the API
    (`POST /api/jobs/:id/trigger`): time from the POST until its attempt started, with the
    number of jobs still queued at that moment; `--triggers` times;
  - memory: the resident size (VmRSS) of each worker process alive once the cluster ran more
    than 10,000 jobs (django-q2 recycles a worker after 1,000 tasks: `recycle` in settings).
Last, `create`: one noop_batch task of 10,000 jobs created in the bench process, no cluster.

Steady state: no VACUUM FULL, no CHECKPOINT before a side, and the same maintenance for every
side: the database's own autovacuum. By default the bench starts a PostgreSQL of its own
(initdb, in a temporary directory, with the server's defaults: autovacuum on, fsync on) so that
autovacuum runs and no other client shares it; `--database-url` uses a given database instead
(its autovacuum setting is printed). Rows are kept between rounds, as a deployment keeps them
until its retention prunes them.

Targets (reported, not asserted): jobs of a task >= 0.9x taskless; ours (jobs of a task)
>= 1.0x raw django-q2 on Redis and >= 0.9x on the ORM broker; a trigger behind 10,000 queued
jobs starts in < 1 s.

Two sections run only when asked for (`--sections ...,fairness,scale_out`), as they belong to
the fair-share and scale-out work of issue 16: `fairness` (50,000 jobs of account A queued,
then 100 of account B: B's started p50/p99) and `scale_out` (1, 2 and 3 clusters on one
database, `--scale-out-jobs` taskless jobs per round, `--rounds` rounds: throughput, and the
jobs run more than once or twice at the same time; target: 2 clusters >= 1).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RAW_FUNC = "tests.bench.bench_execution.raw_noop"
PG_BIN = Path(os.environ.get("JOBS_PG_BIN", "/usr/lib/postgresql/15/bin"))
TASK_VS_TASKLESS = 0.9
TARGETS = {"orm": 0.9, "redis": 1.0}
TRIGGER_TARGET_S = 1.0
BACKLOG = 10_000
MAX_TASK_JOBS = 10_000  # noop_batch's largest count
SECTIONS = ("throughput", "latency", "trigger", "memory", "fairness", "scale_out", "create")
CREATE_TARGET = 5000.0
WAITING = "('scheduled', 'queued', 'running')"


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
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--brokers", default="orm,redis")
    parser.add_argument("--commits", default="async,durable")
    parser.add_argument("--sections", default="throughput,latency,trigger,memory,create")
    parser.add_argument("--latency-seconds", type=float, default=15.0)
    parser.add_argument("--triggers", type=int, default=3)
    parser.add_argument("--fairness-jobs", type=int, default=50_000)
    # Rounds of 3,000 jobs lasted 3 to 10 s and spread too widely to compare cluster counts
    # (2 clusters on Redis: 640 to 1,300 jobs/s in one run): a round here lasts 10 s or more.
    parser.add_argument("--scale-out-jobs", type=int, default=10_000)
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    )
    parser.add_argument(
        "--database-url",
        help="use this database (default: start a PostgreSQL of the bench's own)",
    )
    args = parser.parse_args(argv)
    if args.jobs > MAX_TASK_JOBS:
        parser.error(f"--jobs: a noop_batch task holds at most {MAX_TASK_JOBS} jobs")
    sections = args.sections.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"--sections: unknown {sorted(unknown)}; choose from {SECTIONS}")

    if args.database_url is None:
        # Django reads DATABASE_URL when it starts: run the bench again against its own server.
        with private_postgres() as url:
            return _again(argv, url)
    if os.environ.get("DATABASE_URL") != args.database_url:
        return _again(argv, args.database_url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobsconsole.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key")
    import django

    django.setup()
    import logging

    from django.core.management import call_command

    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    from django.db import connection

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        autovacuum = cursor.fetchone()[0]
        cursor.execute("SHOW fsync")
        fsync = cursor.fetchone()[0]
    print(
        f"database: {connection.vendor} {connection.settings_dict['NAME']} on port "
        f"{connection.settings_dict['PORT']} (autovacuum {autovacuum}, fsync {fsync}); "
        f"{os.cpu_count()} cores shared with whatever else runs; {args.workers} workers; "
        f"{args.jobs} jobs per side and round; {args.rounds} rounds",
        flush=True,
    )
    for broker in args.brokers.split(","):
        if broker == "redis" and not _redis_up(args.redis_url):
            print(f"redis: skipped, nothing answers at {args.redis_url}")
            continue
        for commit in args.commits.split(","):
            with Deployment.start(args, broker=broker, durable=commit == "durable") as deployment:
                phase(deployment, args, sections)
    if "create" in sections:
        rate = _creation(MAX_TASK_JOBS)
        print(
            f"\ncreate: task noop_batch of {MAX_TASK_JOBS:,} jobs (no cluster): {rate:.0f} jobs/s "
            f"(target >= {CREATE_TARGET:.0f}: {_verdict(rate >= CREATE_TARGET)})",
            flush=True,
        )
    return 0


def _again(argv: list[str], url: str) -> int:
    """This bench in a new process whose Django uses the database at `url`."""
    child = [sys.executable, "-m", "tests.bench.bench_execution", *argv, "--database-url", url]
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run(child, cwd=ROOT, env=env, check=False).returncode


# --- the deployment -----------------------------------------------------------------------------


@dataclass
class Deployment:
    """The Procfile's web, worker and scheduler processes on one broker and queue, and an
    account with an API key for the jobs the bench makes."""

    broker: str
    durable: bool
    queue: str
    env: dict[str, str]
    workdir: Path
    account: Any
    key: str
    base_url: str
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    posts: list[float] = field(default_factory=list)  # seconds each task's POST took

    @property
    def label(self) -> str:
        return f"{self.broker}, {'durable' if self.durable else 'async'} commits"

    @classmethod
    @contextlib.contextmanager
    def start(cls, args: argparse.Namespace, *, broker: str, durable: bool) -> Iterator[Deployment]:
        from django_q.conf import Conf

        from accounts.apikeys import api_key_create
        from accounts.models import Account
        from core.actors import Actor
        from jobs.execution.broker import LANED_REDIS, ORDERED_ORM

        queue = f"bench{uuid.uuid4().hex[:10]}"
        names = ("CLUSTER_NAME", "PREFIX", "BROKER_CLASS", "ORM", "REDIS")
        saved = {name: getattr(Conf, name) for name in names}
        # This process produces for the cluster it starts: point django-q2's producer at it.
        Conf.CLUSTER_NAME = Conf.PREFIX = queue
        if broker == "redis":
            Conf.BROKER_CLASS, Conf.ORM, Conf.REDIS = LANED_REDIS, None, args.redis_url
        else:
            Conf.BROKER_CLASS, Conf.ORM, Conf.REDIS = ORDERED_ORM, "default", {}
        env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
        env.update(
            JOBS_QUEUE_NAME=queue,
            JOBS_WORKERS=str(args.workers),
            JOBS_WORKER_ASYNC_COMMIT="0" if durable else "1",
            DJANGO_SECRET_KEY=os.environ["DJANGO_SECRET_KEY"],
            DJANGO_LOG_LEVEL="WARNING",
        )
        if broker == "redis":
            env["REDIS_URL"] = args.redis_url
        account = Account.objects.create(name=f"bench {queue}", email=f"{queue}@bench.test")
        _, key = api_key_create(account=account, actor=Actor.system("bench"), name="bench")
        port = _free_port()
        deployment = cls(
            broker=broker,
            durable=durable,
            queue=queue,
            env=env,
            workdir=Path(tempfile.mkdtemp(prefix="bench-exec-")),
            account=account,
            key=key,
            base_url=f"http://127.0.0.1:{port}",
        )
        # The Procfile's commands (gunicorn's worker count is its WEB_CONCURRENCY default).
        deployment._spawn(
            "web",
            [
                *(sys.executable, "-m", "gunicorn", "jobsconsole.wsgi"),
                *("--bind", f"127.0.0.1:{port}", "--workers", "2"),
            ],
        )
        deployment._spawn("worker", [sys.executable, "manage.py", "qcluster"])
        deployment._spawn("scheduler", [sys.executable, "manage.py", "jobs_scheduler"])
        try:
            _wait(deployment._web_up, "the web process", timeout=60)
            deployment.warm_up()
            yield deployment
        finally:
            deployment.stop()
            _cleanup(account, queue, broker)
            for name, value in saved.items():
                setattr(Conf, name, value)

    def _spawn(self, name: str, command: list[str]) -> None:
        self.procs[name] = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=(self.workdir / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _web_up(self) -> bool:
        import httpx

        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import httpx

        response = httpx.request(
            method,
            f"{self.base_url}/api{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=120,
        )
        if response.status_code >= 300:
            raise SystemExit(
                f"bench execution: {method} {path}: {response.status_code} {response.text}"
            )
        return response.json()

    def warm_up(self) -> None:
        """Imports, connections and prepared statements, and tables whose statistics describe
        tables in use, before any clock starts."""
        _raw_run(self.workdir / "warm", 200)
        _task_run(self, 1000)
        _taskless_run(self, 1000)

    def worker_pids(self, since_id: str = "") -> list[int]:
        """The worker processes (pids) that ran this deployment's jobs (JobAttempt.worker is
        host:pid)."""
        from jobs.models import JobAttempt

        workers = (
            JobAttempt.objects.filter(job__account=self.account, job_id__gt=since_id)
            .values_list("worker", flat=True)
            .distinct()
        )
        return sorted({int(worker.rsplit(":", 1)[1]) for worker in workers})

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


# --- one deployment's figures -------------------------------------------------------------------


def phase(deployment: Deployment, args: argparse.Namespace, sections: list[str]) -> None:
    print(f"\n--- {deployment.label}", flush=True)
    capacity = None
    if "throughput" in sections:
        capacity = throughput(deployment, args)
    if "latency" in sections:
        latency(deployment, args, capacity)
    if "trigger" in sections:
        trigger(deployment, args)
    if "memory" in sections:
        memory(deployment)
    if "fairness" in sections:
        fairness(deployment, args)
    if "scale_out" in sections:
        scale_out(deployment, args)


def throughput(deployment: Deployment, args: argparse.Namespace) -> float:
    """Raw, jobs of a task and taskless, alternating; returns the median of the jobs of a task
    (jobs/s)."""
    sides: dict[str, Callable[[int], float]] = {
        "raw": lambda n: _raw_run(deployment.workdir / f"raw{uuid.uuid4().hex[:6]}", n),
        "task": lambda n: _task_run(deployment, n),
        "taskless": lambda n: _taskless_run(deployment, n),
    }
    names = list(sides)
    rounds: dict[str, list[float]] = {name: [] for name in names}
    for n in range(args.rounds):
        order = _rotated(names, n)
        for name in order:
            rounds[name].append(sides[name](args.jobs))
            _settle(deployment)
        print(
            f"  round {n + 1} ({' > '.join(order)}): "
            + ", ".join(f"{name} {rounds[name][-1]:.0f}" for name in names)
            + f" jobs/s (the task's POST took {deployment.posts[-1]:.2f} s of "
            + f"{args.jobs / rounds['task'][-1]:.2f} s)",
            flush=True,
        )
    median = {name: statistics.median(values) for name, values in rounds.items()}
    vs_raw = median["task"] / median["raw"]
    vs_taskless = median["task"] / median["taskless"]
    target = TARGETS[deployment.broker]
    print(
        f"  medians: raw django-q2 {median['raw']:.0f} | ours, jobs of a task "
        f"{median['task']:.0f} | ours, taskless {median['taskless']:.0f} jobs/s",
        flush=True,
    )
    print(
        f"  task / raw {vs_raw:.2f} (target >= {target}: {_verdict(vs_raw >= target)}); "
        f"task / taskless {vs_taskless:.2f} (target >= {TASK_VS_TASKLESS}: "
        f"{_verdict(vs_taskless >= TASK_VS_TASKLESS)}); taskless / raw "
        f"{median['taskless'] / median['raw']:.2f}",
        flush=True,
    )
    return median["task"]


def latency(deployment: Deployment, args: argparse.Namespace, capacity: float | None) -> None:
    """Created -> started of taskless jobs arriving one by one at about half the capacity."""
    from core.actors import Actor
    from jobs.execution.actions.registry import JobSpec
    from jobs.models import Job
    from jobs.services import jobs_create

    rate = (capacity or _task_run(deployment, args.jobs)) / 2
    actor = Actor.system("bench")
    ids: list[str] = []
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < args.latency_seconds:
        due = int(elapsed * rate) + 1 - len(ids)
        if due <= 0:
            time.sleep(max(0.0, min(0.002, len(ids) / rate - elapsed)))
            continue
        for _ in range(due):  # behind the schedule (a slow create): catch up, one job each
            [job] = jobs_create(
                account=deployment.account, specs=[JobSpec("noop", {})], actor=actor
            )
            ids.append(job.pk)
    _wait(lambda: not _any_waiting(deployment.account.pk), "the latency jobs")
    delays = sorted(
        (started_at - created_at).total_seconds() * 1000
        for created_at, started_at in Job.objects.filter(pk__in=ids).values_list(
            "created_at", "started_at"
        )
    )
    achieved = len(ids) / args.latency_seconds
    print(
        f"  latency at {achieved:.0f} jobs/s arriving one by one (half of {rate * 2:.0f}), "
        f"{len(ids)} jobs: created -> started p50 {_pct(delays, 50):.0f} ms, "
        f"p99 {_pct(delays, 99):.0f} ms, max {delays[-1]:.0f} ms",
        flush=True,
    )


def trigger(deployment: Deployment, args: argparse.Namespace) -> None:
    """A job triggered through the API behind BACKLOG queued jobs: POST -> its attempt
    started."""
    from core.actors import Actor
    from jobs.execution.actions.registry import JobSpec
    from jobs.models import Job, JobAttempt
    from jobs.services import jobs_create

    actor = Actor.system("bench")
    far = time.time() + 86400 * 365
    results = []
    for _ in range(args.triggers):
        [target] = jobs_create(
            account=deployment.account,
            specs=[JobSpec("noop", {}, run_at=datetime.fromtimestamp(far, UTC))],
            actor=actor,
        )
        # One call: one transaction whose 10,000 messages are sent at its commit, so that the
        # cluster has not drained thousands of them before the trigger.
        jobs_create(account=deployment.account, specs=[JobSpec("noop", {})] * BACKLOG, actor=actor)
        queued = Job.objects.filter(account=deployment.account, status="queued").count()
        posted = time.perf_counter()
        wall = time.time()
        # force: the backlog's own no-op jobs are running, and trigger refuses a second job of
        # the same account and action while one runs (PRODUCT) unless forced.
        deployment.api("POST", f"/jobs/{target.pk}/trigger", {"force": True})
        _wait(
            lambda pk=target.pk: JobAttempt.objects.filter(job_id=pk).exists(),
            "the triggered job to start",
            poll=0.005,
        )
        seen = time.perf_counter() - posted
        attempt = JobAttempt.objects.get(job_id=target.pk)
        start_s = attempt.started_at.timestamp() - wall
        results.append(start_s)
        print(
            f"  trigger behind {queued:,} queued jobs: started {start_s * 1000:.0f} ms after the "
            f"POST (seen by the bench after {seen * 1000:.0f} ms)",
            flush=True,
        )
        _drop_backlog(deployment)
    worst = max(results)
    print(
        f"  trigger: worst {worst * 1000:.0f} ms (target < {TRIGGER_TARGET_S:.0f} s: "
        f"{_verdict(worst < TRIGGER_TARGET_S)})",
        flush=True,
    )


def _drop_backlog(deployment: Deployment) -> None:
    """Remove what is left of a backlog (its queued jobs and their messages) instead of waiting
    for it to drain: on a loaded machine 10,000 jobs take minutes and measure nothing more."""
    from django.db import router

    from jobs.models import Job

    Job.objects.filter(account=deployment.account, status="queued")._raw_delete(
        router.db_for_write(Job)
    )
    _drop_messages(deployment.queue, deployment.broker)
    # Messages a cluster already took claim nothing (their jobs are gone); running ones finish.
    _wait(lambda: not _any_waiting(deployment.account.pk), "the backlog's running jobs")


def memory(deployment: Deployment) -> None:
    """VmRSS of each worker process that ran jobs, once the cluster ran > BACKLOG jobs."""
    from jobs.models import Job

    ran = Job.objects.filter(account=deployment.account, attempt_count__gt=0).count()
    if ran <= BACKLOG:
        _taskless_run(deployment, BACKLOG + 1 - ran)
        ran = BACKLOG + 1
    sizes = []
    for pid in deployment.worker_pids():
        with contextlib.suppress(FileNotFoundError):
            status = Path(f"/proc/{pid}/status").read_text()
            rss = next((line for line in status.splitlines() if line.startswith("VmRSS:")), None)
            if rss is not None:  # None: the process exited and is not reaped yet (a zombie)
                sizes.append((pid, int(rss.split()[1]) / 1024))
    alive = ", ".join(f"pid {pid} {mb:.0f} MB" for pid, mb in sizes) or "none alive"
    print(
        f"  memory after {ran:,} jobs: worker processes alive that ran jobs: {alive} "
        "(django-q2 replaces a worker after 1,000 tasks)",
        flush=True,
    )


def fairness(deployment: Deployment, args: argparse.Namespace) -> None:
    """`--fairness-jobs` (50,000) taskless jobs of account A queued, then 100 of account B:
    the created -> started p50/p99 of B's (target for fair share: p99 < 1 s while A's wait),
    with how many of A's were still queued when B's were created. The fair-share work of issue
    16 is measured by this section; on a broker with one FIFO line B's wait behind all of A's."""
    from accounts.models import Account
    from core.actors import Actor
    from jobs.execution.actions.registry import JobSpec
    from jobs.models import Job
    from jobs.services import jobs_create

    actor = Actor.system("bench")
    other = Account.objects.create(
        name=f"bench {deployment.queue} B", email=f"{deployment.queue}.b@bench.test"
    )
    try:
        for _ in range(0, args.fairness_jobs, 1000):
            jobs_create(account=deployment.account, specs=[JobSpec("noop", {})] * 1000, actor=actor)
        ahead = Job.objects.filter(account=deployment.account, status="queued").count()
        ids = [
            job.pk
            for job in jobs_create(account=other, specs=[JobSpec("noop", {})] * 100, actor=actor)
        ]
        _wait(lambda: not _any_waiting(other.pk), "account B's jobs", timeout=3600)
        delays = sorted(
            (started - created).total_seconds() * 1000
            for created, started in Job.objects.filter(pk__in=ids).values_list(
                "created_at", "started_at"
            )
        )
        left = Job.objects.filter(account=deployment.account, status="queued").count()
        print(
            f"  fairness: 100 jobs of account B behind {ahead:,} queued of account A: started "
            f"p50 {_pct(delays, 50):.0f} ms, p99 {_pct(delays, 99):.0f} ms ({left:,} of A's "
            f"still queued when the last of B's started; target p99 < 1 s: "
            f"{_verdict(_pct(delays, 99) < 1000 and left > 0)})",
            flush=True,
        )
        _wait(lambda: not _any_waiting(deployment.account.pk), "account A's jobs", timeout=3600)
    finally:
        _cleanup(other, "", "none")  # the deployment's queue is left as it is


def scale_out(deployment: Deployment, args: argparse.Namespace) -> None:
    """Taskless throughput with 1, 2 and 3 clusters of `--workers` workers on one database and
    broker, `--rounds` rounds each, the cluster counts alternating (1 2 3, then 2 3 1, then
    3 1 2, ...: the tables grow as rounds go, and no count gets only the fresh or only the grown
    ones), and the jobs that ran more than once (each no-op job should have one attempt) or
    twice at the same time. Target: the median with 2 clusters >= the median with 1."""
    from django.db.models import Count, Q

    from jobs.models import JobAttempt

    counts = (1, 2, 3)
    extra: list[subprocess.Popen] = []
    rates: dict[int, list[float]] = {n: [] for n in counts}
    runs: dict[int, list[tuple[str, str]]] = {n: [] for n in counts}  # job id ranges
    try:
        for round_ in range(args.rounds):
            for clusters in _rotated(counts, round_):
                _set_clusters(deployment, extra, clusters)
                since = _newest_job_id(deployment)
                rates[clusters].append(_taskless_run(deployment, args.scale_out_jobs))
                runs[clusters].append((since, _newest_job_id(deployment)))
    finally:
        _set_clusters(deployment, extra, 1)
    for clusters in counts:
        ran = Q()
        for since, until in runs[clusters]:
            ran |= Q(job_id__gt=since, job_id__lte=until)
        attempts = JobAttempt.objects.filter(ran, job__account=deployment.account)
        twice = attempts.values("job_id").annotate(n=Count("*")).filter(n__gt=1).count()
        workers = attempts.values("worker").distinct().count()
        print(
            f"  scale-out: {clusters} cluster(s), {workers} workers ran jobs: "
            + ", ".join(f"{rate:.0f}" for rate in rates[clusters])
            + f" jobs/s (median {statistics.median(rates[clusters]):.0f}); jobs run more than "
            f"once: {twice}; at the same time: {_overlapping(attempts)}",
            flush=True,
        )
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    print(
        f"  scale-out: 2 clusters / 1 = {two / one:.2f} (target >= 1.0: {_verdict(two >= one)})",
        flush=True,
    )


def _set_clusters(deployment: Deployment, extra: list[subprocess.Popen], clusters: int) -> None:
    """Start or stop clusters (`manage.py qcluster`, as the Procfile's worker) beside the
    deployment's own until `clusters` run. A stopped one ran its last jobs to the end: the
    runs between wait for every job."""
    while len(extra) < clusters - 1:
        name = f"worker{len(extra) + 2}"
        deployment._spawn(name, [sys.executable, "manage.py", "qcluster"])
        extra.append(deployment.procs[name])
        _taskless_run(deployment, 200)  # its workers start and connect
    while len(extra) > clusters - 1:
        proc = extra.pop()
        del deployment.procs[f"worker{len(extra) + 2}"]
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _newest_job_id(deployment: Deployment) -> str:
    from jobs.models import Job

    return (
        Job.objects.filter(account=deployment.account)
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
        or ""
    )


def _overlapping(attempts: Any) -> int:
    """Jobs two of whose attempts ran at the same time."""
    spans: dict[str, list[tuple[Any, Any]]] = {}
    for job_id, started, finished in attempts.values_list("job_id", "started_at", "finished_at"):
        spans.setdefault(job_id, []).append((started, finished))
    overlapping = 0
    for runs in spans.values():
        runs.sort(key=lambda run: run[0])
        if any(b[0] < (a[1] or b[0]) for a, b in itertools.pairwise(runs)):
            overlapping += 1
    return overlapping


# --- the sides ----------------------------------------------------------------------------------


def _raw_run(path: Path, count: int) -> float:
    from django.utils import timezone
    from django_q.brokers import get_broker
    from django_q.brokers.orm import ORM
    from django_q.conf import Conf
    from django_q.humanhash import uuid as q_uuid
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    broker = get_broker()
    tag = path.name  # the run's group: its Success rows are counted by it
    started = time.perf_counter()
    for start in range(0, count, 1000):
        packages = [
            SignedPackage.dumps(
                {
                    "id": q_uuid()[1],
                    "name": f"{tag}-{n}",
                    "group": tag,
                    "func": RAW_FUNC,
                    "args": (str(path),),
                    "kwargs": {},
                    "started": timezone.now(),
                    "ack_failure": Conf.ACK_FAILURES,
                    # `save` on, as the baseline says: a Success row per task. The
                    # cluster's save_limit is -1 (ours keeps its own attempt rows), and without
                    # this key the raw side saved nothing at all.
                    "save": True,
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
    # Done when its Success rows are saved too, as ours is done when its jobs are recorded
    # succeeded: the cluster's monitor saves them after the functions ran, and a backlog of
    # saves left behind ran into the next side's window (always ours, jobs of a task, which
    # follows raw in the rotation), taking its CPU. Polled only now, and less often: the count
    # reads django-q2's task table, which has no index on the group.
    _wait(lambda: _saved(tag) >= count, f"{count} raw Success rows", poll=0.05)
    return count / (time.perf_counter() - started)


def _saved(group: str) -> int:
    from django.db import connection
    from django_q.models import Task

    with connection.cursor() as cursor:
        cursor.execute(f'SELECT count(*) FROM {Task._meta.db_table} WHERE "group" = %s', [group])
        return int(cursor.fetchone()[0])


def _task_run(deployment: Deployment, count: int) -> float:
    """One noop_batch task of `count` jobs created through the API; POST -> all succeeded."""
    started = time.perf_counter()
    task = deployment.api(
        "POST",
        f"/accounts/{deployment.account.pk}/tasks",
        {"kind": "noop_batch", "params": {"count": count}},
    )
    deployment.posts.append(time.perf_counter() - started)
    _wait(lambda: not _any_waiting(deployment.account.pk, task_id=task["id"]), "the task's jobs")
    elapsed = time.perf_counter() - started
    shown = deployment.api("GET", f"/tasks/{task['id']}")
    if (shown["status"], shown["job_counts"]) != ("succeeded", {"succeeded": count}):
        raise SystemExit(f"bench execution: task ended {shown['status']} {shown['job_counts']}")
    return count / elapsed


def _taskless_run(deployment: Deployment, count: int) -> float:
    from core.actors import Actor
    from jobs.execution.actions.registry import JobSpec
    from jobs.models import Job
    from jobs.services import jobs_create

    first: list[str] = []
    started = time.perf_counter()
    for start in range(0, count, 1000):
        specs = [JobSpec("noop", {"n": n}) for n in range(start, min(count, start + 1000))]
        jobs = jobs_create(account=deployment.account, specs=specs, actor=Actor.system("bench"))
        first = first or [jobs[0].pk]
    _wait(lambda: not _any_waiting(deployment.account.pk), "the taskless jobs")
    elapsed = time.perf_counter() - started
    done = Job.objects.filter(
        account=deployment.account, task=None, pk__gte=first[0], status="succeeded"
    ).count()
    if done < count:
        raise SystemExit(f"bench execution: {done} of {count} taskless jobs succeeded")
    return count / elapsed


def _any_waiting(account_id: str, task_id: str | None = None) -> bool:
    """Is any job still waiting or running: one index probe, polled every 20 ms (a plain
    statement, so the poll takes as little as it can from the workers being measured)."""
    from django.db import connection

    column, value = ("task_id", task_id) if task_id else ("account_id", account_id)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM jobs_job WHERE {column} = %s AND status IN {WAITING} LIMIT 1",
            [value],
        )
        return cursor.fetchone() is not None


def _creation(count: int) -> float:
    from django_q.conf import Conf

    from accounts.models import Account
    from core.actors import Actor
    from jobs.services import task_create

    queue = f"bench{uuid.uuid4().hex[:10]}"
    saved = Conf.CLUSTER_NAME, Conf.PREFIX
    Conf.CLUSTER_NAME = Conf.PREFIX = queue
    account = Account.objects.create(name=f"bench {queue}", email=f"{queue}@bench.test")
    try:
        started = time.perf_counter()
        task_create(
            account=account, kind="noop_batch", params={"count": count}, actor=Actor.system("b")
        )
        return count / (time.perf_counter() - started)
    finally:
        _cleanup(account, queue, "redis" if Conf.REDIS and not Conf.ORM else "orm")
        Conf.CLUSTER_NAME, Conf.PREFIX = saved


# --- plumbing -----------------------------------------------------------------------------------


@contextlib.contextmanager
def private_postgres() -> Iterator[str]:
    """A PostgreSQL server of the bench's own (initdb, the server's defaults: autovacuum and
    fsync on), on a free port, removed afterwards. Run as the `postgres` OS user when root."""
    directory = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(directory, "postgres", "postgres")
    data, port = directory / "data", _free_port()
    subprocess.run(
        [*as_user, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True,
        capture_output=True,
    )
    server = subprocess.Popen(
        [
            *as_user,
            *(str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port), "-k", str(directory)),
            *("-c", "listen_addresses=127.0.0.1", "-c", "max_connections=100"),
        ],
        stdout=(directory / "postgres.log").open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        _wait(
            lambda: (
                subprocess.run(
                    [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                    capture_output=True,
                ).returncode
                == 0
            ),
            "the bench's PostgreSQL",
            timeout=60,
        )
        createdb = [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port)]
        subprocess.run([*createdb, "-U", "postgres", "bench"], check=True)
        yield f"postgres://postgres@127.0.0.1:{port}/bench"
    finally:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
            os.kill(int((data / "postmaster.pid").read_text().split()[0]), signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(30)
        shutil.rmtree(directory, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_up(url: str) -> bool:
    import redis

    try:
        return bool(redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _rotated(items: Sequence[Any], round_: int) -> list[Any]:
    """The order of the sides in round `round_`: shifted by one each round, so that no side
    always runs first or always follows the same one."""
    shift = round_ % len(items)
    return [*items[shift:], *items[:shift]]


def _pct(ordered: list[float], pct: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def _wait(
    condition: Callable[[], Any], what: str, timeout: float = 900, poll: float = 0.02
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench execution: timed out waiting for {what}")
        time.sleep(poll)


def _cleanup(account: Any, queue: str, broker: str) -> None:
    from django.db import router

    from accounts.models import ApiKey
    from core.models import AuditEvent, AuditEventJob
    from jobs.models import Job, JobAttempt, Task

    db = router.db_for_write(Job)
    JobAttempt.objects.filter(job__account=account)._raw_delete(db)
    Job.objects.filter(account=account)._raw_delete(db)
    Task.objects.filter(account=account)._raw_delete(db)
    # A task's creation event links its jobs (core_auditeventjob): the links go first.
    AuditEventJob.objects.filter(event__account_id=account.pk)._raw_delete(db)
    AuditEvent.objects.filter(account_id=account.pk)._raw_delete(db)
    ApiKey.objects.filter(account=account).delete()
    _drop_messages(queue, broker)
    account.delete()


def _settle(deployment: Deployment) -> None:
    """Wait, off the clock, until the queue holds no message, so that no side's trailing work
    (on the ORM broker, the monitor deletes each message after its run) runs into the next
    side's window."""
    from django_q.brokers import get_broker

    queue = get_broker()
    _wait(
        lambda: queue.queue_size() + (queue.lock_size() or 0) == 0, "the queue to empty", poll=0.05
    )


def _drop_messages(queue: str, broker: str) -> None:
    """Every message of the queue: its lane and every account's line (the fair brokers keep
    one per account; a backlog's stale messages left in a line would sit ahead of the next
    section's jobs of that account)."""
    from django_q.brokers import get_broker
    from django_q.models import OrmQ

    OrmQ.objects.filter(key=queue).delete()
    OrmQ.objects.filter(key__startswith=f"{queue}:").delete()
    if broker == "redis":
        get_broker(queue).delete_queue()  # the line and the lane ahead (LanedRedis)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
