"""Retention: the policy removes what it says and nothing else, in batches, audited."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from core.audit import AuditCommand
from core.models import AuditEvent
from jobs import services
from jobs.models import Job, JobAttempt, ProviderEvent
from jobs.services.retention import AUDIT, PROVIDER_EVENTS, Pruner, PruneRun, RetentionPolicy
from jobs.states import SYSTEM_PRUNER, JobStatus
from jobsconsole.env import env_days

S = JobStatus
NOW = timezone.now()


def policy(**overrides):
    values = {
        "job_days": {S.SUCCEEDED: 7.0, S.RESOLVED: 30.0, S.FAILED: None, S.STALLED: None},
        "audit_days": 90.0,
        "provider_event_days": 30.0,
        "batch": 500,
        "rows_per_minute": 30_000,
    }
    values.update(overrides)
    return RetentionPolicy(**values)


def ago(days: float):
    return NOW - timedelta(days=days)


def job(make_job, status, finished_days_ago=None, **kwargs):
    made = make_job(status=status, **kwargs)
    if finished_days_ago is not None:
        # Written as SQL would leave it, whatever the status (a waiting job with an old
        # finished_at must still never be removed).
        Job.objects.filter(pk=made.pk).update(
            finished_at=ago(finished_days_ago), created_at=ago(finished_days_ago + 1)
        )
    return made


def event(job_id="", days_ago=0.0, command=AuditCommand.CLAIM, **kwargs):
    return AuditEvent.objects.create(
        created_at=ago(days_ago),
        actor_type="system",
        actor="system:test",
        command=command,
        account_id=kwargs.pop("account_id", ""),
        job_id=job_id,
        **kwargs,
    )


def provider_event(account, days_ago=0.0, job=None):
    return ProviderEvent.objects.create(
        account=account,
        provider="imap",
        type="mailbox.changed",
        external_id=f"ext-{ProviderEvent.objects.count()}-{days_ago}",
        job=job,
        created_at=ago(days_ago),
    )


def remaining(*jobs):
    return set(Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("pk", flat=True))


def prune_events():
    return list(AuditEvent.objects.filter(command=AuditCommand.PRUNE))


def test_removes_only_what_the_policy_says(make_job):
    old_ok = [job(make_job, S.SUCCEEDED, 8) for _ in range(3)]
    young_ok = job(make_job, S.SUCCEEDED, 6)
    old_resolved = job(make_job, S.RESOLVED, 31)
    young_resolved = job(make_job, S.RESOLVED, 20)
    old_failed = job(make_job, S.FAILED, 400)
    old_stalled = job(make_job, S.STALLED, 400)

    record = services.jobs_prune(policy=policy(), now=NOW)

    assert remaining(*old_ok, old_resolved) == set()
    kept = [young_ok, young_resolved, old_failed, old_stalled]
    assert remaining(*kept) == {j.pk for j in kept}
    assert record["removed"] == {"succeeded": 3, "resolved": 1, AUDIT: 0, PROVIDER_EVENTS: 0}
    assert record["complete"] is True


def test_never_removes_a_waiting_or_running_job(make_job):
    # Every status with the shortest retention, and waiting jobs whose finished_at is old (a
    # failed job retried keeps no finished_at, but a row may hold anything).
    everything = policy(job_days={s: 0.001 for s in (S.SUCCEEDED, S.RESOLVED, S.FAILED, S.STALLED)})
    waiting = [job(make_job, status, 1000) for status in (S.SCHEDULED, S.QUEUED, S.RUNNING)]
    finished = [job(make_job, status, 1000) for status in (S.SUCCEEDED, S.FAILED, S.STALLED)]

    services.jobs_prune(policy=everything, now=NOW)

    assert remaining(*waiting) == {j.pk for j in waiting}
    assert remaining(*finished) == set()


def test_a_policy_for_a_waiting_status_is_refused():
    for status in (S.SCHEDULED, S.QUEUED, S.RUNNING):
        with pytest.raises(ValueError, match="Only finished jobs"):
            policy(job_days={status: 1.0})
    with pytest.raises(ValueError, match="more than 0"):
        policy(audit_days=0)
    with pytest.raises(ValueError, match="more than 0"):
        policy(provider_event_days=-1.0)


def test_failed_and_stalled_go_when_configured(make_job):
    old_failed = job(make_job, S.FAILED, 15)
    young_failed = job(make_job, S.FAILED, 13)
    old_stalled = job(make_job, S.STALLED, 15)
    configured = policy(
        job_days={S.SUCCEEDED: 7.0, S.RESOLVED: 30.0, S.FAILED: 14.0, S.STALLED: None}
    )
    record = services.jobs_prune(policy=configured, now=NOW)
    assert remaining(old_failed, young_failed, old_stalled) == {young_failed.pk, old_stalled.pk}
    assert record["removed"]["failed"] == 1


def test_attempts_go_with_their_job_and_audit_events_stay(make_job):
    old = job(make_job, S.SUCCEEDED, 8)
    young = job(make_job, S.SUCCEEDED, 1)
    for made in (old, young):
        JobAttempt.objects.create(job=made, number=1, outcome="succeeded")
        event(made.pk, days_ago=8)
    linked = ProviderEvent.objects.create(
        account=old.account, provider="imap", type="mailbox.changed", external_id="e1", job=old
    )

    record = services.jobs_prune(policy=policy(), now=NOW)

    assert not JobAttempt.objects.filter(job_id=old.pk).exists()
    assert JobAttempt.objects.filter(job_id=young.pk).count() == 1
    assert record["attempts"] == 1
    # The provider event stays, unlinked; the audit events of both jobs stay (8 < 90 days).
    linked.refresh_from_db()
    assert linked.job_id is None
    assert AuditEvent.objects.filter(job_id__in=[old.pk, young.pk]).count() == 2


def test_audit_events_have_their_own_longer_retention(make_job, make_task):
    gone_job_old = event("job_01HZZZZZZZZZZZZZZZZZZZZZZZ", days_ago=91)
    gone_job_young = event("job_01HZZZZZZZZZZZZZZZZZZZZZZY", days_ago=89)
    account_event_old = event(days_ago=200, command=AuditCommand.PAUSE, account_id="acc_x")
    # A failed job kept for a year keeps its whole timeline, however old.
    kept_job = job(make_job, S.FAILED, 365)
    kept_job_event = event(kept_job.pk, days_ago=365)
    # The creation of a task speaks for its jobs: kept while one of them exists.
    task = make_task()
    make_job(task=task, status=S.FAILED)
    task_created = event(days_ago=365, command=AuditCommand.CREATE_TASK, task_id=task.pk)
    empty_task_created = event(
        days_ago=365, command=AuditCommand.CREATE_TASK, task_id="tsk_01HZZZZZZZZZZZZZZZZZZZZZZZ"
    )

    record = services.jobs_prune(policy=policy(), now=NOW)

    left = set(AuditEvent.objects.exclude(command=AuditCommand.PRUNE).values_list("pk", flat=True))
    assert left == {gone_job_young.pk, kept_job_event.pk, task_created.pk}
    assert {gone_job_old.pk, account_event_old.pk, empty_task_created.pk}.isdisjoint(left)
    assert record["removed"][AUDIT] == 3


def test_audit_events_kept_when_their_retention_is_keep(make_job):
    old = event("job_01HZZZZZZZZZZZZZZZZZZZZZZZ", days_ago=5000)
    services.jobs_prune(policy=policy(audit_days=None), now=NOW)
    assert AuditEvent.objects.filter(pk=old.pk).exists()


def test_a_run_goes_in_batches_and_is_one_audit_event_with_exact_counts(make_job, account):
    for _ in range(7):
        job(make_job, S.SUCCEEDED, 10)
    for _ in range(3):
        job(make_job, S.RESOLVED, 40)
    for n in range(5):
        event(f"job_01HZZZZZZZZZZZZZZZZZZZZZ{n:02d}", days_ago=100)
    for _ in range(3):
        provider_event(account, days_ago=40)

    run = PruneRun.start(policy(batch=2), NOW)
    steps = []
    while not run.finished:
        steps.append(run.step())
        # After every batch the one event of the run says exactly what is gone so far.
        (prune,) = prune_events()
        assert sum(prune.data["removed"].values()) == sum(steps)
        assert prune.data["complete"] is run.finished

    assert max(steps) == 2
    (prune,) = prune_events()
    assert prune.actor == SYSTEM_PRUNER.name and prune.actor_type == "system"
    assert prune.data["removed"] == {"succeeded": 7, "resolved": 3, AUDIT: 5, PROVIDER_EVENTS: 3}
    assert prune.data["batches"] == 4 + 2 + 3 + 2
    assert prune.data["complete"] is True
    assert "7 succeeded, 3 resolved, 5 audit_events, 3 provider_events" in prune.reason
    assert ProviderEvent.objects.count() == 0


def test_provider_events_go_by_their_age_once_no_job_points_to_them(make_job, account):
    old = [provider_event(account, days_ago=31) for _ in range(3)]
    young = provider_event(account, days_ago=29)
    # A failed job kept for a year still shows the event that pushed it, however old.
    kept_job = job(make_job, S.FAILED, 365)
    kept_event = provider_event(account, days_ago=365, job=kept_job)
    Job.objects.filter(pk=kept_job.pk).update(provider_event=kept_event)
    # The event of a job this run removes goes in the same run (jobs are taken first).
    pruned_job = job(make_job, S.SUCCEEDED, 40)
    freed_event = provider_event(account, days_ago=40, job=pruned_job)
    Job.objects.filter(pk=pruned_job.pk).update(provider_event=freed_event)

    record = services.jobs_prune(policy=policy(batch=2), now=NOW)

    assert set(ProviderEvent.objects.values_list("pk", flat=True)) == {young.pk, kept_event.pk}
    assert record["removed"][PROVIDER_EVENTS] == 4
    assert record["removed"]["succeeded"] == 1
    assert Job.objects.get(pk=kept_job.pk).provider_event_id == kept_event.pk
    assert {e.pk for e in old}.isdisjoint(ProviderEvent.objects.values_list("pk", flat=True))


def test_a_removed_provider_event_is_ingested_again(account):
    # The event is the dedup record of the push: past its retention, a redelivery is new.
    def ingest():
        return services.provider_event_ingest(
            account=account,
            provider="imap",
            type="mailbox.changed",
            external_id="push-1",
            payload={},
            actor=SYSTEM_PRUNER,
        )

    first, created = ingest()
    assert created
    assert ingest() == (first, False)
    Job.objects.filter(provider_event=first).delete()
    ProviderEvent.objects.filter(pk=first.pk).update(created_at=ago(31))
    services.jobs_prune(policy=policy(), now=NOW)
    again, created = ingest()
    assert created and again.pk != first.pk


def test_provider_events_kept_when_their_retention_is_keep(account):
    old = provider_event(account, days_ago=5000)
    record = services.jobs_prune(policy=policy(provider_event_days=None), now=NOW)
    assert ProviderEvent.objects.filter(pk=old.pk).exists()
    assert PROVIDER_EVENTS not in record["removed"]


def test_a_run_that_removes_nothing_writes_no_audit_event(make_job):
    job(make_job, S.SUCCEEDED, 1)
    services.jobs_prune(policy=policy(), now=NOW)
    assert prune_events() == []


def test_max_rows_bounds_a_run(make_job):
    for _ in range(5):
        job(make_job, S.SUCCEEDED, 10)
    record = services.jobs_prune(policy=policy(batch=2), now=NOW, max_rows=3)
    assert record["removed"]["succeeded"] == 3
    assert record["complete"] is False
    assert Job.objects.filter(status=S.SUCCEEDED).count() == 2


def test_the_pruner_spends_its_budget_per_minute_one_batch_per_step(make_job):
    for _ in range(9):
        job(make_job, S.SUCCEEDED, 10)
    clock = [1000.0]
    pruner = Pruner(lambda: policy(batch=2, rows_per_minute=5), clock=lambda: clock[0])

    removed = [pruner.step() for _ in range(5)]
    assert removed == [2, 2, 1, 0, 0]  # the minute's 5 rows, then nothing until the next
    clock[0] += 60
    removed = [pruner.step() for _ in range(4)]
    assert removed == [2, 2, 0, 0]  # the last 4, then the run is finished...
    assert Job.objects.filter(status=S.SUCCEEDED).count() == 0
    assert pruner.run is None
    # ...and the next run starts a minute later.
    job(make_job, S.SUCCEEDED, 10)
    clock[0] += 30
    assert pruner.step() == 0
    clock[0] += 31
    assert pruner.step() == 1


def test_the_pruners_budget_counts_provider_events(make_job, account):
    for _ in range(3):
        job(make_job, S.SUCCEEDED, 10)
    for _ in range(4):
        provider_event(account, days_ago=40)
    clock = [1000.0]
    pruner = Pruner(lambda: policy(batch=2, rows_per_minute=5), clock=lambda: clock[0])

    removed = [pruner.step() for _ in range(5)]
    # 3 jobs, then 2 of the events: the minute's 5 rows; then nothing until the next minute.
    assert removed == [2, 1, 2, 0, 0]
    assert ProviderEvent.objects.count() == 2
    clock[0] += 60
    assert [pruner.step() for _ in range(3)] == [2, 0, 0]
    assert ProviderEvent.objects.count() == 0
    assert pruner.run is None


def test_the_pruner_is_off_with_no_budget(make_job):
    job(make_job, S.SUCCEEDED, 10)
    pruner = Pruner(lambda: policy(rows_per_minute=0), clock=lambda: 0.0)
    assert pruner.step() == 0
    assert Job.objects.count() == 1


def test_preview_counts_what_the_next_run_removes(make_job, account):
    for _ in range(4):
        job(make_job, S.SUCCEEDED, 10)
    job(make_job, S.RESOLVED, 40)
    event("job_01HZZZZZZZZZZZZZZZZZZZZZZZ", days_ago=100)
    for _ in range(2):
        provider_event(account, days_ago=40)
    linked = job(make_job, S.FAILED, 40)
    Job.objects.filter(pk=linked.pk).update(provider_event=provider_event(account, days_ago=40))
    rows = {
        row.name: row
        for row in services.retention_preview(policy=policy(rows_per_minute=4), now=NOW)
    }
    assert (rows["succeeded"].expired, rows["succeeded"].next_run) == (4, 4)
    # The budget is spent on the succeeded jobs: the resolved one waits for a later run.
    assert (rows["resolved"].expired, rows["resolved"].next_run) == (1, 0)
    assert rows["failed"].days is None and rows["failed"].expired is None
    assert rows[AUDIT].expired == 1
    # The event a kept job points to is not past its retention; the budget is spent already.
    assert (rows[PROVIDER_EVENTS].expired, rows[PROVIDER_EVENTS].next_run) == (2, 0)
    assert rows[PROVIDER_EVENTS].days == 30.0
    roomy = services.retention_preview(policy=policy(rows_per_minute=100), now=NOW)
    assert (roomy[-1].name, roomy[-1].expired, roomy[-1].next_run) == (PROVIDER_EVENTS, 2, 2)
    kept = services.retention_preview(policy=policy(provider_event_days=None), now=NOW)[-1]
    assert (kept.days, kept.expired, kept.next_run) == (None, None, 0)
    capped = services.retention_preview(policy=policy(), now=NOW, cap=2)[0]
    assert (capped.expired, capped.capped) == (2, True)
    assert Job.objects.count() == 6  # a preview removes nothing
    assert ProviderEvent.objects.count() == 3


def test_jobs_prune_dry_run_removes_nothing_and_says_what_would_go(make_job, account, settings):
    for _ in range(3):
        job(make_job, S.SUCCEEDED, 10)
    young = job(make_job, S.SUCCEEDED, 1)
    settings.JOBS_RETAIN_PROVIDER_EVENTS_DAYS = 30.0
    for days in (31, 31, 5):
        provider_event(account, days_ago=days)
    out = io.StringIO()
    call_command("jobs_prune", "--dry-run", stdout=out)
    text = out.getvalue()
    assert Job.objects.count() == 4
    assert ProviderEvent.objects.count() == 3
    assert "dry run, nothing removed" in text
    (line,) = [line for line in text.splitlines() if line.startswith("succeeded")]
    assert line.split()[-2:] == ["3", "3"]  # past its cut-off, and in the next run
    (line,) = [line for line in text.splitlines() if line.startswith(PROVIDER_EVENTS)]
    assert line.split()[1:3] == ["30", "d"]
    assert line.split()[-2:] == ["2", "2"]
    assert prune_events() == []

    out = io.StringIO()
    call_command("jobs_prune", stdout=out)
    assert "removed 3 succeeded" in out.getvalue()
    assert "2 provider_events" in out.getvalue()
    assert ProviderEvent.objects.count() == 1
    assert remaining(young) == {young.pk}
    assert Job.objects.count() == 1
    assert len(prune_events()) == 1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, 7.0), ("", None), ("keep", None), (" KEEP ", None), ("14", 14.0), ("0.5", 0.5)],
)
def test_retention_settings_read_days_or_keep(monkeypatch, raw, expected):
    if raw is None:
        monkeypatch.delenv("JOBS_RETAIN_X", raising=False)
    else:
        monkeypatch.setenv("JOBS_RETAIN_X", raw)
    assert env_days("JOBS_RETAIN_X", 7.0) == expected


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "a week"])
def test_retention_settings_refuse_what_is_not_a_retention(monkeypatch, raw):
    monkeypatch.setenv("JOBS_RETAIN_X", raw)
    with pytest.raises(ValueError, match="JOBS_RETAIN_X"):
        env_days("JOBS_RETAIN_X", 7.0)
