"""Fair share across accounts and per-account concurrency limits, on real django-q2 clusters
(issue 16). Fairness is asserted by the order in which jobs started, never by time."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest
from django.db.models import Max

from accounts.services import account_pause, account_resume
from core.actors import Actor
from core.models import AuditEvent
from jobs import services
from jobs.execution.actions.registry import JobSpec
from jobs.models import ConcurrencyLimit, Job, ProcessHeartbeat, ProcessKind
from jobs.states import TERMINAL, JobStatus
from tests.execution.conftest import Execution
from tests.factories import AccountFactory

pytestmark = pytest.mark.slow

ACTOR = Actor.system("test")
S = JobStatus


def create(account, action: str, count: int, **payload) -> list[str]:
    specs = [JobSpec(action, dict(payload)) for _ in range(count)]
    return [job.pk for job in services.jobs_create(account=account, specs=specs, actor=ACTOR)]


def finished(ids: list[str]) -> bool:
    return Job.objects.filter(pk__in=ids, status__in=sorted(TERMINAL)).count() == len(ids)


def started(ids: list[str]) -> int:
    return Job.objects.filter(pk__in=ids, started_at__isnull=False).count()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("broker", ["orm", "redis"], indirect=True)
def test_a_flood_from_one_account_does_not_starve_another(execution: Execution) -> None:
    flood, other = AccountFactory(), AccountFactory()
    runs = str(execution.runs)
    # The flood is waiting on the broker before the other account's jobs arrive.
    a = create(flood, "test_record", 1500, dir=runs, seconds=0.01)
    execution.cluster()
    execution.wait(lambda: started(a) >= 20, timeout=60, what="the flood to start")
    b = create(other, "test_record", 30, dir=runs, seconds=0.01)
    execution.scheduler()
    execution.wait(lambda: finished(b), timeout=120, what="the other account's jobs")

    last_b = Job.objects.filter(pk__in=b).aggregate(last=Max("started_at"))["last"]
    a_started_before = Job.objects.filter(pk__in=a, started_at__lte=last_b).count()
    a_waiting_after = len(a) - a_started_before
    print(
        f"\n{(execution.env.get('REDIS_URL') and 'redis') or 'orm'}: the other account's 30 jobs"
        f" all started while {a_waiting_after} of the flood's {len(a)} had not"
    )
    # In one global line B would start after every job of A. Taking turns, B's 30 jobs go
    # about one for one with A's, behind at most the messages the cluster had taken ahead
    # (queue_limit, 50): far fewer than the flood's remaining 1,000.
    assert a_waiting_after >= 1000, a_waiting_after
    execution.wait(lambda: finished(a), timeout=240, what="the flood")
    assert Counter(Job.objects.filter(pk__in=a + b).values_list("status", flat=True)) == {
        S.SUCCEEDED: len(a) + len(b)
    }


def _over_limit(execution: Execution) -> list[str]:
    return lines(execution.runs / "over_limit.log")


@pytest.mark.parametrize("broker", ["orm", "redis"], indirect=True)
def test_concurrency_limits_hold_across_two_clusters(execution: Execution) -> None:
    by_policy, own_limit = AccountFactory(), AccountFactory()
    # test_limited's policy allows 2 at once per account; the second account allows itself 1.
    ConcurrencyLimit.objects.create(account=own_limit, action="test_limited", limit=1)
    runs = str(execution.runs)
    # Each cluster takes at most 2 messages ahead of its workers (queue_limit): with the
    # default 50, the first cluster to ask could take the whole backlog into its own queue
    # (it did on SQLite), and the other cluster's workers would never meet the limit.
    execution.cluster(JOBS_QUEUE_LIMIT="2")
    execution.cluster(JOBS_QUEUE_LIMIT="2")
    execution.scheduler()
    # Both clusters' four workers are up before the work arrives, so both can take part.
    execution.wait(
        lambda: ProcessHeartbeat.objects.filter(kind=ProcessKind.WORKER).count() == 4,
        timeout=60,
        what="the two clusters' workers to beat",
    )
    # The work arrives at once, as a backlog: created while the accounts are paused, then let go.
    for account in (by_policy, own_limit):
        account_pause(account_id=account.pk, actor=ACTOR)
    a = create(by_policy, "test_limited", 24, dir=runs, limit=2, seconds=0.15)
    b = create(own_limit, "test_limited", 12, dir=runs, limit=1, seconds=0.15)
    for account in (by_policy, own_limit):
        account_resume(account_id=account.pk, actor=ACTOR)

    execution.wait(lambda: finished(a + b), timeout=180, what="every limited job to finish")
    assert set(Job.objects.filter(pk__in=a + b).values_list("status", flat=True)) == {S.SUCCEEDED}
    assert _over_limit(execution) == [], "never more runs of an account than its limit"
    # Waiting spent no attempt: each job ran once.
    assert set(Job.objects.filter(pk__in=a + b).values_list("attempt_count", flat=True)) == {1}
    # Four workers, so jobs did wait for their slot (and were released, not re-polled).
    holds = AuditEvent.objects.filter(job_id__in=a + b, command="hold").count()
    releases = AuditEvent.objects.filter(job_id__in=a + b, command="release").count()
    assert holds > 0 and releases >= holds
    workers = {line.split()[1] for line in lines(execution.runs / "starts.log")}
    assert workers == {by_policy.pk, own_limit.pk}
    ran_on = set(Job.objects.filter(pk__in=a + b).values_list("worker", flat=True))
    clusters = {
        beat.cluster_pid
        for beat in ProcessHeartbeat.objects.filter(kind=ProcessKind.WORKER)
        if f"{beat.host}:{beat.pid}" in ran_on
    }
    assert len(clusters) == 2, "both clusters took part"


@pytest.mark.parametrize("broker", ["orm", "redis"], indirect=True)
def test_a_killed_runs_slot_frees_when_the_sweeper_declares_it_lost(
    execution: Execution,
) -> None:
    account = AccountFactory()
    ConcurrencyLimit.objects.create(account=account, action="test_limited", limit=1)
    runs = str(execution.runs)
    # The first job works long on its first attempt: its cluster is killed under it.
    [long] = create(account, "test_limited", 1, dir=runs, limit=1, first_seconds=60, seconds=0)
    doomed = execution.cluster()
    execution.wait(
        lambda: Job.objects.filter(pk=long, status=S.RUNNING).exists(),
        timeout=60,
        what="the long job to run",
    )
    rest = create(account, "test_limited", 5, dir=runs, limit=1, seconds=0.05)
    survivor = execution.cluster()
    execution.wait(
        lambda: AuditEvent.objects.filter(job_id__in=rest, command="hold").exists(),
        timeout=60,
        what="the others to wait for the slot",
    )
    assert started(rest) == 0
    doomed.kill(signal.SIGKILL)
    execution.scheduler()

    execution.wait(lambda: finished([long, *rest]), timeout=120, what="every job to finish")
    assert survivor.popen.poll() is None
    stall = AuditEvent.objects.get(job_id=long, command="stall")
    first_start = Job.objects.filter(pk__in=rest).order_by("started_at").first()
    # Nothing of the account started before the sweeper declared the killed run lost...
    assert (
        AuditEvent.objects.filter(
            job_id__in=rest, command="claim", created_at__lt=stall.created_at
        ).count()
        == 0
    ), first_start
    # ...the limit held throughout, and every job succeeded, the long one on its second try.
    assert _over_limit(execution) == []
    assert set(Job.objects.filter(pk__in=[long, *rest]).values_list("status", flat=True)) == {
        S.SUCCEEDED
    }
    assert Job.objects.get(pk=long).attempt_count == 2
    assert set(Job.objects.filter(pk__in=rest).values_list("attempt_count", flat=True)) == {1}


def test_trigger_against_a_limit_on_a_real_cluster(execution: Execution) -> None:
    from core.errors import Conflict

    account = AccountFactory()
    ConcurrencyLimit.objects.create(account=account, action="test_limited", limit=1)
    runs = str(execution.runs)
    [long] = create(account, "test_limited", 1, dir=runs, limit=1, seconds=8)
    [other] = create(account, "test_limited", 1, dir=runs, limit=5, seconds=0)
    Job.objects.filter(pk=other).update(status=S.FAILED)
    execution.cluster()
    execution.wait(
        lambda: Job.objects.filter(pk=long, status=S.RUNNING).exists(),
        timeout=60,
        what="the long job to run",
    )
    with pytest.raises(Conflict):
        services.job_trigger(job_id=other, actor=ACTOR)
    services.job_trigger(job_id=other, actor=ACTOR, force=True)
    # Forced: it runs and finishes while the long one still runs.
    execution.wait(lambda: finished([other]), timeout=60, what="the forced job")
    assert Job.objects.get(pk=long).status == S.RUNNING
    assert Job.objects.get(pk=other).status == S.SUCCEEDED
