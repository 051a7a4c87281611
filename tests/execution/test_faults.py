"""Faults, with real processes, on PostgreSQL and with each broker (issue 13).

Each test runs `manage.py qcluster` and `manage.py jobs_scheduler` (tests/execution/conftest.py)
on jobs of the `fault_record` action, which records every execution in files that survive a
kill -9, injects one fault, and checks with `faults.survived`: 0 jobs lost (every one
succeeded), 0 left running (no job, no open attempt), 0 concurrent double runs, every
transition audited. The counts are printed, and summed up at the end of the session."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone
from django_q.brokers import get_broker

from jobs.models import AttemptOutcome, Job, JobAttempt
from jobs.states import JobStatus
from tests.conftest import is_postgres, require
from tests.execution.conftest import (
    FAST_SETTINGS,
    PG_BIN,
    ROOT,
    Execution,
    PostgresServer,
    database_url,
    open_execution,
)
from tests.execution.faults import (
    RedisServer,
    TcpProxy,
    all_terminal,
    children_of,
    connected_to,
    create_jobs,
    kill_inside_a_transaction,
    kill_mid_execution,
    lost_attempts,
    parent_of,
    read_runs,
    retrying,
    status_counts,
    survived,
)
from tests.factories import AccountFactory

pytestmark = pytest.mark.slow

S = JobStatus
A = AttemptOutcome
BROKERS = pytest.mark.parametrize("broker", ["orm", "redis"], indirect=True)


@pytest.fixture(autouse=True)
def _postgresql_only() -> None:
    if not is_postgres():
        pytest.skip("the fault suite runs on PostgreSQL (DATABASE_URL is SQLite)")


def _transitions(job_id: str) -> list[tuple[str, str, str]]:
    from core.models import AuditEvent

    return list(
        AuditEvent.objects.filter(job_id=job_id)
        .order_by("id")
        .values_list("command", "from_status", "to_status")
    )


# --- Redis restarted with jobs in flight ----------------------------------------------------------


def test_redis_restarted_with_jobs_in_flight(
    transactional_db, account, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Redis (no persistence) is killed with messages waiting in it, jobs are created while
    it is down (their enqueue fails), and it comes back empty on the same port: the sweeper's
    requeue sends every unclaimed job again."""
    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    started = time.monotonic()
    server = RedisServer(tmp_path)
    server.start()
    try:
        with open_execution(
            monkeypatch, tmp_path, broker="redis", redis_url=server.url
        ) as execution:
            execution.cluster()
            execution.scheduler()
            ids = create_jobs(account, 400, dir=str(execution.runs), seconds=0.02)
            waiting = get_broker()  # this process's, pointed at the private server
            execution.wait(
                lambda: status_counts(ids)[S.SUCCEEDED] >= 20 and waiting.queue_size() >= 100,
                timeout=60,
                what="jobs done, running, and messages waiting in Redis",
            )

            in_redis = waiting.queue_size()
            server.kill()
            running = status_counts(ids)[S.RUNNING]
            # Created while Redis is down: the enqueue after commit fails and is only logged.
            ids += create_jobs(account, 50, dir=str(execution.runs), seconds=0.02)
            server.start()
            assert waiting.queue_size() == 0, "the restart emptied the queue"

            execution.wait(lambda: all_terminal(ids), timeout=120, what="every job to finish")
            survived(
                "Redis restarted, jobs in flight",
                "redis",
                ids,
                execution.runs,
                started=started,
                notes=f"{in_redis} messages lost, {running} running, 50 created while down",
            )
    finally:
        server.kill()


# --- PostgreSQL restarted under load --------------------------------------------------------------


@pytest.mark.parametrize("broker", ["orm", "redis"])
def test_postgres_restarted_under_load(
    broker: str,
    postgres_server: PostgresServer,
    django_db_blocker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two clusters and the scheduler on a private PostgreSQL server, restarted (fast
    shutdown: every session cut, open transactions rolled back) with hundreds of jobs queued
    and four running. (test_execution's restart test, under load and on both brokers.)"""
    started = time.monotonic()
    url = postgres_server.url("jobs")
    createdb = [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(postgres_server.port)]
    subprocess.run([*createdb, "-U", "postgres", "jobs"], check=True)
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env.update(FAST_SETTINGS, DATABASE_URL=url)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    with (
        open_execution(monkeypatch, tmp_path, broker=broker, database=url) as execution,
        django_db_blocker.unblock(),
        connected_to(postgres_server.port, "jobs"),
    ):
        execution.cluster()
        execution.cluster()
        execution.scheduler()
        ids = create_jobs(AccountFactory(), 600, dir=str(execution.runs), seconds=0.02)
        execution.wait(
            lambda: retrying(
                lambda: status_counts(ids)[S.SUCCEEDED] >= 60 and status_counts(ids)[S.RUNNING]
            ),
            timeout=60,
            what="jobs done and running",
        )
        counts = status_counts(ids)
        assert counts[S.QUEUED] >= 300, counts
        postgres_server.restart()

        execution.wait(
            lambda: retrying(lambda: all_terminal(ids)),
            timeout=120,
            what="every job to finish after the restart",
        )
        survived(
            "PostgreSQL restarted under load",
            broker,
            ids,
            execution.runs,
            started=started,
            notes=f"{counts[S.QUEUED]} queued, {counts[S.RUNNING]} running at the restart",
        )


# --- kill -9 of the scheduler in the middle of a round --------------------------------------------

BATCH_25 = {"JOBS_DISPATCH_BATCH": "25"}


@BROKERS
def test_scheduler_killed_inside_its_round(
    execution: Execution, broker: str, account, transactional_db
) -> None:
    """1,000 jobs fall due at once; the scheduler dispatches them in batches of 25 (one
    transaction each). It is frozen, seen inside a transaction (pg_stat_activity) with part
    of the backlog dispatched, and killed with SIGKILL; three times, a new scheduler each time.
    The killed transaction rolls back; a batch committed but not yet sent is sent again by
    the next scheduler's requeue."""
    started = time.monotonic()
    execution.cluster()
    ids = create_jobs(
        account, 1000, dir=str(execution.runs), run_at=timezone.now() + timedelta(seconds=1)
    )
    kills = []
    for n in range(3):
        name = f"fault-scheduler-{n}"
        scheduler = execution.start("scheduler", "jobs_scheduler", PGAPPNAME=name, **BATCH_25)

        kills.append(
            kill_inside_a_transaction(
                scheduler.popen.pid,
                name,
                # Part of the backlog dispatched, part still waiting.
                when=lambda: 0 < status_counts(ids)[S.SCHEDULED] < len(ids),
                timeout=60,
            )
        )
        scheduler.popen.wait(10)
        assert scheduler.popen.returncode == -signal.SIGKILL
    scheduled = status_counts(ids)[S.SCHEDULED]
    assert scheduled > 0, "work was left for the next scheduler"
    last = execution.scheduler()

    execution.wait(lambda: all_terminal(ids), timeout=120, what="every job to finish")
    requeued = sum(
        int(n)
        for proc in execution.procs
        if proc.name == "scheduler"
        for n in re.findall(r"enqueued again (\d+) unclaimed", proc.log.read_text())
    )
    assert last.popen.poll() is None
    statements = ", ".join(doing.split(": ", 1)[1].split()[0] for doing in kills)
    survived(
        "kill -9 of the scheduler mid-round",
        broker,
        ids,
        execution.runs,
        started=started,
        notes=f"killed inside a transaction, in {statements}; {requeued} requeued",
    )


# --- kill -9 of a worker, five times in one run of 2,000 jobs -------------------------------------


@BROKERS
def test_workers_killed_five_times_in_a_run_of_2000_jobs(
    execution: Execution, broker: str, account, transactional_db
) -> None:
    """SIGKILL to django-q2 worker processes, each frozen and killed inside the handler of a
    run (the recorder wrote its start, not its end), five times spread over 2,000 jobs. The
    cluster's sentinel replaces each worker; the sweeper declares each killed run lost and
    reschedules it. (Killing the whole cluster: test_execution's
    test_killing_the_whole_cluster_loses_no_job.)"""
    started = time.monotonic()
    cluster = execution.cluster()
    execution.scheduler()
    ids = create_jobs(account, 2000, dir=str(execution.runs), seconds=0.01)
    killed: dict[int, tuple[str, int]] = {}  # pid -> the run it was in
    misses = 0
    running = Job.objects.filter(account=account, status=S.RUNNING)
    while len(killed) < 5:
        target = (len(killed) + 1) * 300
        execution.wait(
            lambda target=target: status_counts(ids)[S.SUCCEEDED] >= target,
            timeout=90,
            what=f"{target} jobs done",
        )
        job = execution.wait(
            lambda: running.exclude(worker__in=[_worker(pid) for pid in killed]).first(),
            timeout=30,
            what="a job running",
        )
        pid = int(job.worker.rsplit(":", 1)[1])
        with contextlib.suppress(ProcessLookupError):
            assert os.getpgid(pid) == cluster.popen.pid, "a worker process of our cluster"
        if not kill_mid_execution(pid, job.pk, job.attempt_count, execution.runs):
            misses += 1  # it was claiming, reporting, or on to another job: look again
            assert misses < 500
            continue
        killed[pid] = (job.pk, job.attempt_count)

    execution.wait(lambda: all_terminal(ids), timeout=180, what="every job to finish")
    assert lost_attempts(ids) == set(killed.values()), "exactly the killed runs were lost"
    workers = set(JobAttempt.objects.filter(job_id__in=ids).values_list("worker", flat=True))
    assert len(workers) >= 2 + 5, "the sentinel replaced each killed worker"
    survived(
        "kill -9 of a worker, 5 times",
        broker,
        ids,
        execution.runs,
        started=started,
        notes=f"5 killed mid-job ({misses} probes missed), {len(workers)} worker processes",
    )


def _worker(pid: int) -> str:
    import socket

    return f"{socket.gethostname()}:{pid}"


@BROKERS
def test_idle_workers_killed_one_after_the_other(
    execution: Execution, broker: str, account, transactional_db
) -> None:
    """SIGKILL to each idle worker of a cluster in turn, the sentinel replacing each. An idle
    worker waits for its next task in the task queue's get(); one of them does so holding the
    queue's reader lock, and dies with it (jobs/execution/queues.py). Jobs created afterwards
    must still run on that cluster."""
    started = time.monotonic()
    execution.cluster()
    execution.scheduler()
    warm: list[str] = []
    workers: set[int] = set()
    while len(workers) < 2:  # until both workers have run a job (and wait for the next)
        assert len(warm) < 50
        warm += create_jobs(account, 10, dir=str(execution.runs), seconds=0.1)
        execution.wait(lambda w=warm: all_terminal(w), timeout=30, what="warm-up jobs to run")
        workers = {
            int(w.rsplit(":", 1)[1])
            for w in Job.objects.filter(pk__in=warm).values_list("worker", flat=True)
        }
    sentinel = parent_of(min(workers))
    processes = children_of(sentinel)  # the workers, the monitor and the pusher
    for pid in sorted(workers):
        os.kill(pid, signal.SIGKILL)
        execution.wait(
            lambda pid=pid: (
                pid not in (now := children_of(sentinel)) and len(now) == len(processes)
            ),
            timeout=30,
            what=f"the sentinel to replace worker {pid}",
        )

    ids = create_jobs(account, 100, dir=str(execution.runs), seconds=0.01)
    execution.wait(lambda: all_terminal(ids), timeout=60, what="jobs to run after the kills")
    later = set(Job.objects.filter(pk__in=ids).values_list("worker", flat=True))
    assert not {_worker(pid) for pid in workers} & later
    survived(
        "kill -9 of each idle worker",
        broker,
        warm + ids,
        execution.runs,
        started=started,
        notes="2 idle workers killed, replaced by the sentinel",
    )


# --- a worker cut off from PostgreSQL longer than the grace, then reconnected ---------------------


@pytest.mark.parametrize(
    ("broker", "mode"),
    [("orm", "blackhole"), ("orm", "reset"), ("redis", "blackhole")],
    indirect=["broker"],
)
def test_worker_cut_off_from_postgres_longer_than_the_grace(
    execution: Execution, broker: str, mode: str, account, transactional_db
) -> None:
    """Cluster A reaches PostgreSQL through a TCP proxy; cluster B and the scheduler directly.
    A runs two jobs when the proxy cuts it off (`blackhole`: nothing passes and connections
    hang; `reset`: connections dropped and refused), for longer than the stall grace:

    - `late` finishes its work during the cut, so A cannot record the outcome;
    - `coop` works on, checking ownership as a long handler does (ctx.ensure_owned).

    The scheduler declares both runs lost and reschedules them; B runs and succeeds them. Then
    the network heals: A's late success must be discarded, and `coop`'s first run must have
    stopped before its second began (no concurrent double run)."""
    started = time.monotonic()
    grace = float(FAST_SETTINGS["JOBS_STALL_GRACE_SECONDS"])
    proxy = TcpProxy(int(connection.settings_dict["PORT"] or 5432))
    try:
        runs = execution.runs
        [late] = create_jobs(account, 1, dir=str(runs), until="go", then=0)
        [coop] = create_jobs(account, 1, dir=str(runs), seconds=60, then=0, cooperative=True)
        direct = database_url(connection.settings_dict)
        proxied = re.sub(r"@[^/]+/", f"@127.0.0.1:{proxy.port}/", direct)
        cut_off = execution.start("qcluster", "qcluster", DATABASE_URL=proxied, JOBS_WORKERS="2")
        execution.scheduler()
        execution.wait(
            lambda: Job.objects.filter(pk__in=[late, coop], status=S.RUNNING).count() == 2,
            timeout=30,
            what="both jobs running on the cut-off cluster",
        )
        first = dict(Job.objects.filter(pk__in=[late, coop]).values_list("pk", "worker"))
        execution.cluster()  # B, connected directly

        proxy.cut(mode)
        cut_at = time.monotonic()
        (runs / "go").touch()  # `late` ends its work now, cut off
        execution.wait(
            lambda: [r for r in read_runs(runs) if r.job_id == late and r.ended_ns],
            timeout=10,
            what="late's first run to end",
        )
        execution.wait(
            lambda: status_counts([late, coop])[S.SUCCEEDED] == 2,
            timeout=60,
            what="both jobs rescheduled and succeeded elsewhere",
        )
        cut_for = time.monotonic() - cut_at
        assert cut_for > grace
        proxy.heal()

        # The cut-off worker reconnects and reports `late`'s success: it is discarded.
        late_pid = first[late].rsplit(":", 1)[1]
        execution.wait(
            lambda: re.search(
                rf" {late_pid} .*outcome of run 1 of {late} .*discarded", cut_off.log.read_text()
            ),
            timeout=60,
            what="the cut-off worker's late outcome to be discarded",
        )
        os.kill(int(late_pid), 0)  # it was cut off, never killed
        for job_id in (late, coop):
            job = Job.objects.get(pk=job_id)
            assert (job.status, job.attempt_count, job.result) == (S.SUCCEEDED, 2, {"attempt": 2})
            attempts = list(JobAttempt.objects.filter(job_id=job_id).order_by("number"))
            assert [(a.outcome, a.error_code) for a in attempts] == [
                (A.WORKER_LOST, "worker_lost"),
                (A.SUCCEEDED, ""),
            ]
            assert attempts[0].worker == first[job_id]
            assert attempts[1].worker == job.worker != first[job_id]
            assert _transitions(job_id) == [
                ("create", "", S.QUEUED),
                ("claim", S.QUEUED, S.RUNNING),
                ("stall", S.RUNNING, S.STALLED),
                ("reschedule", S.STALLED, S.SCHEDULED),
                ("dispatch", S.SCHEDULED, S.QUEUED),
                ("claim", S.QUEUED, S.RUNNING),
                ("succeed", S.RUNNING, S.SUCCEEDED),
            ]
        [coop_first] = [r for r in read_runs(runs) if r.job_id == coop and r.attempt == 1]
        assert coop_first.outcome == "RunLost", "the cooperative handler gave its run up"
        survived(
            f"worker cut off from PostgreSQL ({mode})",
            broker,
            [late, coop],
            runs,
            started=started,
            notes=f"cut {cut_for:.1f}s > grace {grace:g}s; late outcome discarded",
        )
    finally:
        execution.stop_all()
        proxy.close()
