"""Sync schedules fired by real schedulers: two `manage.py jobs_scheduler` processes on the
same database create each due task once, a schedule missed for days runs once, and a worker
cluster then runs the syncs (against a mailbox that refuses the connection: the point is the
jobs, not the mail). Also two firings at once on real concurrent connections in this process.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from accounts.models import Account
from core.actors import Actor
from core.audit import AuditCommand
from core.models import AuditEvent
from jobs import services
from jobs.models import Job, Schedule, Task
from tests.factories import AccountFactory

pytestmark = pytest.mark.slow

ACTOR = Actor.system("test")


def make_schedules(count: int, *, missed: timedelta, **account) -> list[Schedule]:
    """`count` accounts, each with an hourly mailbox_sync schedule due since `missed` ago."""
    due = timezone.now() - missed
    return [
        services.schedule_create(
            account=AccountFactory(**account),
            kind="mailbox_sync",
            cadence={"interval_seconds": 3600, "next_run_at": due},
            actor=ACTOR,
        )
        for _ in range(count)
    ]


def fired_per_schedule(schedules: list[Schedule]) -> Counter:
    ids = {schedule.pk for schedule in schedules}
    fires = AuditEvent.objects.filter(command=AuditCommand.SCHEDULE_FIRE).values_list(
        "data__schedule_id", flat=True
    )
    return Counter(schedule_id for schedule_id in fires if schedule_id in ids)


def test_two_scheduler_processes_create_each_due_task_once(execution):
    # Their accounts are paused until both schedulers run, so that the two meet on every
    # schedule at once rather than one of them firing everything before the other starts.
    paused = {"paused_at": timezone.now()}
    schedules = make_schedules(60, missed=timedelta(seconds=1), **paused)
    # Missed for three days: 72 hourly slots, one run.
    schedules += make_schedules(60, missed=timedelta(days=3), **paused)
    env = {"JOBS_SCHEDULES_INTERVAL": "0.05", "JOBS_SCHEDULES_BATCH": "7"}
    procs = [execution.start(name, "jobs_scheduler", **env) for name in ("sch-a", "sch-b")]
    execution.wait(
        lambda: all("scheduler started" in proc.log.read_text() for proc in procs),
        timeout=60,
        what="both schedulers to run",
    )
    assert not Task.objects.exists()  # paused accounts: their schedules wait
    Account.objects.update(paused_at=None)
    now = timezone.now()
    execution.wait(
        lambda: not Schedule.objects.filter(next_run_at__lte=now).exists(),
        timeout=90,
        what="every due schedule to be fired",
    )
    # Both schedulers keep going over the next rounds: still one task per schedule.
    execution.wait(
        lambda: Job.objects.filter(status="queued").count() == len(schedules),
        timeout=30,
        what="the syncs to be queued",
    )
    tasks = Counter(Task.objects.values_list("account_id", flat=True))
    assert len(tasks) == len(schedules)
    assert set(tasks.values()) == {1}
    assert fired_per_schedule(schedules) == {schedule.pk: 1 for schedule in schedules}
    # Not fired twice and then coalesced the second time either (the account lock and the
    # pending sync would hide a double fire from the task count): each slot was handled once.
    assert not AuditEvent.objects.filter(command=AuditCommand.SCHEDULE_SKIP).exists()
    assert Job.objects.filter(action="imap_sync_messages").count() == len(schedules)
    for schedule in Schedule.objects.all():
        assert now < schedule.next_run_at <= now + timedelta(hours=1)
    # Every task names the scheduler that made it.
    actors = Counter(
        AuditEvent.objects.filter(command=AuditCommand.CREATE_TASK).values_list("actor", flat=True)
    )
    assert actors == {"system:scheduler": len(schedules)}


def test_a_running_cluster_runs_the_syncs_a_schedule_makes(execution):
    account = AccountFactory(imap_host="127.0.0.1", imap_port=1, imap_username="u")
    schedule = services.schedule_create(
        account=account,
        kind="mailbox_sync",
        cadence={"interval_seconds": 3600, "next_run_at": timezone.now()},
        actor=ACTOR,
    )
    execution.cluster(workers=1)
    execution.start("scheduler", "jobs_scheduler", JOBS_SCHEDULES_INTERVAL="0.1")
    job = execution.wait(
        lambda: Job.objects.filter(account=account, attempt_count__gte=1).first(),
        timeout=60,
        what="the scheduled sync to run",
    )
    assert job.task_id == Schedule.objects.get(pk=schedule.pk).last_task_id
    assert job.action == "imap_sync_messages"


@pytest.mark.django_db(transaction=True)
def test_concurrent_firings_on_real_connections_create_each_task_once():
    schedules = make_schedules(40, missed=timedelta(minutes=5))
    barrier = threading.Barrier(4)
    handled: list[list[str]] = []
    errors: list[BaseException] = []

    def fire():
        try:
            barrier.wait(10)
            handled.append(services.schedules_fire_due(limit=1000))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    done = [schedule_id for ids in handled for schedule_id in ids]
    assert sorted(done) == sorted(schedule.pk for schedule in schedules)  # each by one of them
    assert Task.objects.count() == len(schedules)
    assert fired_per_schedule(schedules) == {schedule.pk: 1 for schedule in schedules}
    assert not AuditEvent.objects.filter(command=AuditCommand.SCHEDULE_SKIP).exists()
