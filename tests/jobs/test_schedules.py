"""Sync schedules (jobs.services.schedules): the slots, firing once, catch-up once after
downtime, coalescing with a pending sync, pause (of the schedule and of the account), run now,
a schedule that cannot make its task, the default schedule of an IMAP account, and the audit
trail of each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from accounts.services import account_create, account_pause, account_resume, account_update
from core.actors import Actor
from core.audit import AuditCommand
from core.errors import Conflict, ValidationFailed
from core.models import AuditEvent
from jobs import services
from jobs.models import Job, Schedule, ScheduleOutcome, Task
from jobs.services.schedules import next_run_after
from jobs.states import JobStatus

pytestmark = pytest.mark.django_db

ACTOR = Actor.system("test")
T0 = datetime(2026, 3, 2, 10, 2, tzinfo=UTC)


def every(account, seconds=300, *, kind="mailbox_sync", next_run_at=None, **params):
    cadence = {"interval_seconds": seconds}
    if next_run_at is not None:
        cadence["next_run_at"] = next_run_at
    return services.schedule_create(
        account=account, kind=kind, params=params, cadence=cadence, actor=ACTOR
    )


def events(command: AuditCommand, schedule: Schedule) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(command=command, data__schedule_id=schedule.pk).order_by("id")
    )


def test_an_interval_keeps_its_phase_and_a_long_gap_is_one_slot():
    schedule = Schedule(interval_seconds=300, next_run_at=T0)
    assert next_run_after(schedule, T0) == T0 + timedelta(minutes=5)
    assert next_run_after(schedule, T0 + timedelta(minutes=7)) == T0 + timedelta(minutes=10)
    # Three days down: the next slot after now, in the same phase (10:02 + 5 min steps).
    later = T0 + timedelta(days=3, seconds=1)
    assert next_run_after(schedule, later) == T0 + timedelta(days=3, minutes=5)


def test_a_cron_expression_is_read_in_its_time_zone_across_dst():
    schedule = Schedule(cron="0 9 * * MON-FRI", time_zone="Europe/Riga", next_run_at=T0)
    # Monday 2 March 2026, 10:02 UTC is 12:02 in Riga (UTC+2): next is Tuesday 09:00 local.
    assert next_run_after(schedule, T0) == datetime(2026, 3, 3, 7, 0, tzinfo=UTC)
    # After the switch to summer time (29 March), 09:00 in Riga is 06:00 UTC.
    assert next_run_after(schedule, datetime(2026, 3, 29, 12, tzinfo=UTC)) == datetime(
        2026, 3, 30, 6, 0, tzinfo=UTC
    )


def test_a_due_schedule_fires_once_and_moves_to_its_next_slot(account):
    schedule = every(account, next_run_at=T0)
    now = T0 + timedelta(seconds=3)
    assert services.schedules_fire_due(now=now) == [schedule.pk]
    assert services.schedules_fire_due(now=now) == []  # the slot is taken
    schedule.refresh_from_db()
    assert schedule.next_run_at == T0 + timedelta(minutes=5)
    assert schedule.last_run_at == now
    assert schedule.last_outcome == ScheduleOutcome.CREATED
    task = Task.objects.get(account=account)
    assert schedule.last_task_id == task.pk
    assert task.kind == "mailbox_sync"
    [job] = Job.objects.filter(task=task)
    assert job.action == "imap_sync_messages"
    assert job.status == JobStatus.QUEUED
    [fired] = events(AuditCommand.SCHEDULE_FIRE, schedule)
    assert fired.actor == "system:scheduler"
    assert fired.task_id == task.pk
    assert fired.data["slot"] == T0.isoformat()


def test_a_schedule_missed_for_days_runs_once(account):
    schedule = every(account, next_run_at=T0)
    now = T0 + timedelta(days=3, seconds=10)  # 864 slots missed while nothing ran
    assert services.schedules_fire_due(now=now) == [schedule.pk]
    assert services.schedules_fire_due(now=now + timedelta(seconds=30)) == []
    assert Task.objects.filter(account=account).count() == 1
    schedule.refresh_from_db()
    assert schedule.next_run_at == T0 + timedelta(days=3, minutes=5)
    assert len(events(AuditCommand.SCHEDULE_FIRE, schedule)) == 1


@pytest.mark.parametrize("status", [JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RUNNING])
def test_a_due_sync_coalesces_with_a_pending_one(account, make_job, status):
    pending = make_job(action="imap_sync_messages", status=status)
    schedule = every(account, next_run_at=T0)
    assert services.schedules_fire_due(now=T0) == [schedule.pk]
    assert not Task.objects.filter(account=account).exists()
    assert Job.objects.filter(account=account).count() == 1
    schedule.refresh_from_db()
    assert schedule.last_outcome == ScheduleOutcome.COALESCED
    assert schedule.last_job_id == pending.pk
    assert schedule.next_run_at == T0 + timedelta(minutes=5)
    [skip] = events(AuditCommand.SCHEDULE_SKIP, schedule)
    assert skip.job_id == pending.pk  # on the pending job's own timeline
    assert skip.data["coalesced_with"] == pending.pk
    assert skip.data["job_status"] == status


def test_a_slow_mailbox_never_piles_up_syncs(account):
    schedule = every(account, next_run_at=T0)
    for minutes in range(0, 60, 5):  # an hour of slots while the first sync never finishes
        services.schedules_fire_due(now=T0 + timedelta(minutes=minutes, seconds=1))
    assert Job.objects.filter(account=account, action="imap_sync_messages").count() == 1
    assert len(events(AuditCommand.SCHEDULE_FIRE, schedule)) == 1
    assert len(events(AuditCommand.SCHEDULE_SKIP, schedule)) == 11


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.RESOLVED])
def test_finished_syncs_and_other_actions_do_not_coalesce(account, make_job, status):
    make_job(action="imap_sync_messages", status=status)
    make_job(action="noop", status=JobStatus.QUEUED)
    schedule = every(account, next_run_at=T0)
    services.schedules_fire_due(now=T0)
    schedule.refresh_from_db()
    assert schedule.last_outcome == ScheduleOutcome.CREATED


def test_another_accounts_pending_sync_does_not_coalesce(account, other_account, make_job):
    make_job(account=other_account, action="imap_sync_messages", status=JobStatus.QUEUED)
    schedule = every(account, next_run_at=T0)
    services.schedules_fire_due(now=T0)
    schedule.refresh_from_db()
    assert schedule.last_outcome == ScheduleOutcome.CREATED


def test_a_paused_accounts_schedules_wait_and_run_once_when_it_resumes(account):
    schedule = every(account, next_run_at=T0)
    account_pause(account_id=account.pk, actor=ACTOR)
    for hours in range(5):
        assert services.schedules_fire_due(now=T0 + timedelta(hours=hours)) == []
    assert not Task.objects.exists()
    schedule.refresh_from_db()
    assert schedule.next_run_at == T0  # waiting, not skipped
    assert not events(AuditCommand.SCHEDULE_SKIP, schedule)
    account_resume(account_id=account.pk, actor=ACTOR)
    now = T0 + timedelta(hours=5, seconds=1)
    assert services.schedules_fire_due(now=now) == [schedule.pk]
    assert services.schedules_fire_due(now=now) == []
    assert Task.objects.count() == 1


def test_a_paused_schedule_waits_and_runs_once_when_resumed(account):
    schedule = every(account, next_run_at=T0)
    services.schedule_pause(schedule_id=schedule.pk, actor=ACTOR, reason="mailbox migration")
    with pytest.raises(Conflict):
        services.schedule_pause(schedule_id=schedule.pk, actor=ACTOR)
    assert services.schedules_fire_due(now=T0 + timedelta(hours=1)) == []
    services.schedule_resume(schedule_id=schedule.pk, actor=ACTOR)
    with pytest.raises(Conflict):
        services.schedule_resume(schedule_id=schedule.pk, actor=ACTOR)
    assert services.schedules_fire_due(now=T0 + timedelta(hours=1)) == [schedule.pk]
    assert Task.objects.count() == 1
    [paused] = events(AuditCommand.SCHEDULE_PAUSE, schedule)
    assert paused.reason == "mailbox migration"
    assert len(events(AuditCommand.SCHEDULE_RESUME, schedule)) == 1


def test_run_now_creates_the_task_and_keeps_the_slots(account):
    future = timezone.now() + timedelta(hours=1)
    schedule = every(account, next_run_at=future)
    services.schedule_pause(schedule_id=schedule.pk, actor=ACTOR)
    operator = Actor.system("operator")
    ran = services.schedule_run_now(schedule_id=schedule.pk, actor=operator)
    assert ran.last_outcome == ScheduleOutcome.CREATED
    assert ran.next_run_at == future
    [event] = events(AuditCommand.SCHEDULE_RUN_NOW, schedule)
    assert event.actor == "system:operator"
    assert event.task_id == ran.last_task_id
    # Again at once: the sync it made is pending, so this one coalesces.
    again = services.schedule_run_now(schedule_id=schedule.pk, actor=operator)
    assert again.last_outcome == ScheduleOutcome.COALESCED
    assert Task.objects.count() == 1


def test_a_schedule_that_cannot_make_its_task_fails_and_stops_no_other(account, other_account):
    broken = every(account, next_run_at=T0)
    # Its params went bad behind the service's back (written by SQL, an older version).
    Schedule.objects.filter(pk=broken.pk).update(params={"folders": "INBOX"})
    fine = every(other_account, next_run_at=T0 + timedelta(seconds=1))
    assert set(services.schedules_fire_due(now=T0 + timedelta(seconds=2))) == {broken.pk, fine.pk}
    broken.refresh_from_db()
    fine.refresh_from_db()
    assert broken.last_outcome == ScheduleOutcome.FAILED
    assert "folders must be a list" in broken.last_detail
    assert broken.next_run_at == T0 + timedelta(minutes=5)  # not tried again at every round
    assert fine.last_outcome == ScheduleOutcome.CREATED
    [skip] = events(AuditCommand.SCHEDULE_SKIP, broken)
    assert "could not be made" in skip.reason


def test_create_validates_and_one_schedule_per_account_and_kind(account):
    cases = [
        ({"kind": "nope", "cadence": {"interval_seconds": 300}}, "kind"),
        (
            {"kind": "noop_batch", "params": {"count": 0}, "cadence": {"interval_seconds": 60}},
            "params",
        ),
        ({"kind": "mailbox_sync", "cadence": {}}, "interval_seconds"),
        ({"kind": "mailbox_sync", "cadence": {"interval_seconds": 59}}, "interval_seconds"),
        ({"kind": "mailbox_sync", "cadence": {"cron": "*/5 * * *"}}, "cron"),
        ({"kind": "mailbox_sync", "cadence": {"cron": "0 0 30 2 *"}}, "cron"),
        (
            {"kind": "mailbox_sync", "cadence": {"cron": "* * * * *", "interval_seconds": 60}},
            "cron",
        ),
        (
            {"kind": "mailbox_sync", "cadence": {"cron": "* * * * *", "timezone": "Mars/Base"}},
            "timezone",
        ),
        (
            {"kind": "mailbox_sync", "cadence": {"interval_seconds": 60, "next_run_at": "soon"}},
            "next_run_at",
        ),
    ]
    for kwargs, field in cases:
        with pytest.raises(ValidationFailed) as refused:
            services.schedule_create(account=account, actor=ACTOR, **kwargs)
        assert field in refused.value.fields, (kwargs, refused.value.fields)
    assert not Schedule.objects.exists()
    every(account)
    with pytest.raises(Conflict) as exists:
        every(account, 600)
    assert exists.value.code == "schedule_exists"
    assert Schedule.objects.count() == 1


def test_update_changes_the_cadence_and_names_immutable_fields(account):
    schedule = every(account)
    before = timezone.now()
    updated = services.schedule_update(
        schedule_id=schedule.pk,
        changes={"cron": "0 3 * * *", "timezone": "America/New_York"},
        actor=ACTOR,
    )
    assert updated.interval_seconds is None
    assert updated.cron == "0 3 * * *"
    local = updated.next_run_at.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
    assert (local.hour, local.minute) == (3, 0)
    assert before < updated.next_run_at <= before + timedelta(days=1)
    [event] = events(AuditCommand.SCHEDULE_UPDATE, schedule)
    assert set(event.data["changed"]) == {"cron", "interval_seconds", "timezone", "next_run_at"}
    with pytest.raises(ValidationFailed) as refused:
        services.schedule_update(schedule_id=schedule.pk, changes={"kind": "x"}, actor=ACTOR)
    assert refused.value.code == "immutable_field"


def test_delete_keeps_the_tasks_and_the_audit_trail(account):
    schedule = every(account, next_run_at=T0)
    services.schedules_fire_due(now=T0)
    services.schedule_delete(schedule_id=schedule.pk, actor=ACTOR)
    assert not Schedule.objects.exists()
    assert Task.objects.count() == 1
    assert len(events(AuditCommand.SCHEDULE_DELETE, schedule)) == 1
    assert len(events(AuditCommand.SCHEDULE_FIRE, schedule)) == 1


IMAP = {"host": "imap.example.test", "username": "u", "password": "p"}


def test_an_account_with_imap_settings_gets_a_mailbox_sync_schedule(settings):
    settings.JOBS_DEFAULT_SYNC_INTERVAL = 300
    before = timezone.now()
    account = account_create(name="With IMAP", actor=ACTOR, imap=IMAP)
    [schedule] = Schedule.objects.filter(account=account)
    assert (schedule.kind, schedule.interval_seconds, schedule.params) == ("mailbox_sync", 300, {})
    # The first run is spread over the first interval.
    assert before <= schedule.next_run_at < timezone.now() + timedelta(seconds=300)
    [created] = events(AuditCommand.SCHEDULE_CREATE, schedule)
    assert created.actor == ACTOR.name
    # Later changes of its settings make no second one.
    account_update(account_id=account.pk, actor=ACTOR, imap={"host": "imap2.example.test"})
    assert Schedule.objects.filter(account=account).count() == 1


def test_an_account_gets_its_schedule_when_it_gets_imap_settings_not_before(settings):
    settings.JOBS_DEFAULT_SYNC_INTERVAL = 600
    account = account_create(name="No IMAP yet", actor=ACTOR)
    assert not Schedule.objects.filter(account=account).exists()
    account_update(account_id=account.pk, actor=ACTOR, imap=IMAP)
    assert Schedule.objects.get(account=account).interval_seconds == 600


def test_no_default_schedule_when_the_setting_is_zero(settings):
    settings.JOBS_DEFAULT_SYNC_INTERVAL = 0
    account = account_create(name="Quiet", actor=ACTOR, imap=IMAP)
    assert not Schedule.objects.filter(account=account).exists()


def test_the_migration_gives_existing_imap_accounts_their_schedule(settings):
    import importlib

    from django.apps import apps

    from tests.factories import AccountFactory

    settings.JOBS_DEFAULT_SYNC_INTERVAL = 300
    # Made as they were before schedules existed: no service, so no signal.
    with_imap = AccountFactory(imap_host="imap.example.test")
    without = AccountFactory()
    migration = importlib.import_module("jobs.migrations.0009_schedules")
    migration.default_schedules(apps, None)
    [schedule] = Schedule.objects.all()
    assert (schedule.account_id, schedule.kind, schedule.interval_seconds) == (
        with_imap.pk,
        "mailbox_sync",
        300,
    )
    assert schedule.next_run_at < timezone.now() + timedelta(seconds=300)
    [event] = AuditEvent.objects.filter(command=AuditCommand.SCHEDULE_CREATE)
    assert event.actor == "system:migration"
    assert event.data["schedule_id"] == schedule.pk
    assert not Schedule.objects.filter(account=without).exists()


def test_a_schedule_whose_cadence_cannot_be_evaluated_is_paused_out_of_the_way(
    account, other_account
):
    broken = every(account, next_run_at=T0)
    # A time zone no tz database knows, written by SQL: every slot computation fails.
    Schedule.objects.filter(pk=broken.pk).update(
        interval_seconds=None, cron="*/5 * * * *", time_zone="Nowhere/Void"
    )
    fine = every(other_account, next_run_at=T0 + timedelta(seconds=1))
    assert set(services.schedules_fire_due(now=T0 + timedelta(seconds=2), limit=1)) == {broken.pk}
    broken.refresh_from_db()
    assert broken.is_paused and "cannot be evaluated" in broken.paused_reason
    assert broken.last_outcome == ScheduleOutcome.FAILED
    # The next round reaches the schedule behind it.
    assert services.schedules_fire_due(now=T0 + timedelta(seconds=2), limit=1) == [fine.pk]
