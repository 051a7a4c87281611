"""Per-account concurrency limits (jobs.services.limits), driven through the services a worker,
the scheduler and an operator call: the claim holds a job over its limit without spending an
attempt, the end of a run (or the sweeper) releases it, trigger asks the same rule."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.errors import Conflict
from core.models import AuditEvent
from jobs import services
from jobs.models import ConcurrencyLimit, Job
from jobs.states import JobStatus, WaitReason
from tests.factories import AccountFactory

S = JobStatus
SYNC = "imap_sync_messages"  # its policy: one at a time per account
WORKER = "host:1"


@pytest.fixture
def capture(django_capture_on_commit_callbacks):
    # Broker messages are not under test here: capture them without sending.
    return lambda: django_capture_on_commit_callbacks(execute=False)


def claim(job) -> services.ClaimedRun | None:
    return services.job_claim(job_id=job.pk, worker=WORKER)


def held(job) -> bool:
    job.refresh_from_db()
    return job.status == S.SCHEDULED and job.wait_reason == WaitReason.CONCURRENCY_LIMIT


def test_a_job_over_its_limit_waits_without_spending_an_attempt(make_job, capture):
    running = make_job(status=S.RUNNING, action=SYNC)
    waiting = make_job(status=S.QUEUED, action=SYNC)

    with capture():
        assert claim(waiting) is None
    assert held(waiting)
    assert waiting.attempt_count == 0 and not waiting.attempts.exists()
    hold = AuditEvent.objects.get(job_id=waiting.pk, command="hold")
    assert (hold.from_status, hold.to_status, hold.actor) == (
        "queued",
        "scheduled",
        "system:limiter",
    )
    assert hold.data["running"] == [running.pk] and hold.data["limit"] == 1
    # Not spinning: the dispatcher leaves it alone however due it is.
    with capture():
        assert services.jobs_dispatch_due() == []
        # ...and while the slot is taken, a release frees nothing.
        assert services.jobs_release_waiting(account_id=waiting.account_id, action=SYNC) == []
    assert held(waiting)


def test_the_end_of_a_run_lets_the_next_job_start(make_job, capture):
    first = make_job(status=S.QUEUED, action=SYNC)
    second = make_job(status=S.QUEUED, action=SYNC, priority=0)
    with capture():
        run = claim(first)
        assert run is not None and run.limited
        assert claim(second) is None
        assert services.job_succeed(job_id=first.pk, attempt=run.number, result=None)
        # The worker's release after its outcome (jobs.execution.worker._release_slot).
        assert services.jobs_release_waiting(account_id=first.account_id, action=SYNC) == [
            second.pk
        ]
    second.refresh_from_db()
    assert (second.status, second.wait_reason) == (S.QUEUED, "")
    with capture():
        run = claim(second)
    assert run is not None and run.number == 1


def test_the_limit_is_per_account(make_job, capture):
    make_job(status=S.RUNNING, action=SYNC)
    elsewhere = make_job(status=S.QUEUED, action=SYNC, account=AccountFactory())
    with capture():
        assert claim(elsewhere) is not None


def test_a_failed_run_frees_its_slot_and_its_retry_waits_its_turn(make_job, capture):
    first = make_job(status=S.QUEUED, action=SYNC, max_attempts=3)
    second = make_job(status=S.QUEUED, action=SYNC)
    with capture():
        run = claim(first)
        assert claim(second) is None
        services.job_fail(
            job_id=first.pk, attempt=run.number, code="provider_timeout", detail="x", retryable=True
        )
        assert services.jobs_release_waiting(account_id=first.account_id, action=SYNC) == [
            second.pk
        ]
        assert claim(second) is not None
        # The retry of the first comes due while the second runs: it waits, attempt kept.
        Job.objects.filter(pk=first.pk).update(run_at=timezone.now() - timedelta(seconds=1))
        assert services.jobs_dispatch_due() == [first.pk]
        assert claim(first) is None
    assert held(first) and first.attempt_count == 1


def test_the_sweeper_frees_the_slot_of_a_lost_run(make_job, capture):
    long_ago = timezone.now() - timedelta(hours=1)
    lost = make_job(status=S.RUNNING, action=SYNC, heartbeat_at=long_ago, max_attempts=3)
    waiting = make_job(status=S.QUEUED, action=SYNC)
    with capture():
        assert claim(waiting) is None
        assert services.jobs_sweep_lost() == [lost.pk]
    waiting.refresh_from_db()
    assert waiting.status == S.QUEUED
    assert AuditEvent.objects.filter(job_id=waiting.pk, command="release").exists()


def test_an_accounts_own_limit_overrides_the_policy(make_job, account, actor, capture):
    running = make_job(status=S.RUNNING, action=SYNC)
    waiting = make_job(status=S.QUEUED, action=SYNC)
    with capture():
        assert claim(waiting) is None
        # Raised to 2: the waiting job is released at once, and its claim goes through.
        services.account_limit_set(account_id=account.pk, action=SYNC, limit=2, actor=actor)
        waiting.refresh_from_db()
        assert waiting.status == S.QUEUED
        assert claim(waiting) is not None
    assert services.limits_of_account(account.pk)[SYNC] == {"limit": 2, "default": 1, "own": 2}
    assert running.pk != waiting.pk
    event = AuditEvent.objects.filter(command="update_account", account_id=account.pk).get()
    assert event.data["concurrency_limit"] == {"action": SYNC, "from": 1, "to": 2, "own": 2}


def test_an_account_can_limit_an_action_whose_policy_has_none(make_job, account, actor, capture):
    services.account_limit_set(account_id=account.pk, action="noop", limit=1, actor=actor)
    first, second = make_job(status=S.QUEUED), make_job(status=S.QUEUED)
    elsewhere = make_job(status=S.QUEUED, account=AccountFactory())
    with capture():
        assert claim(first).limited
        assert claim(second) is None
        # Another account's noop jobs are not limited: the hot claim takes them.
        assert not claim(elsewhere).limited
    assert held(second)
    # Back to the policy (no limit): released, then claimed.
    with capture():
        services.account_limit_set(account_id=account.pk, action="noop", limit=None, actor=actor)
        assert claim(second) is not None
    assert not ConcurrencyLimit.objects.exists()


def test_the_schedulers_safety_net_releases_what_no_run_end_did(make_job, capture):
    waiting = make_job(status=S.QUEUED, action=SYNC)
    running = make_job(status=S.RUNNING, action=SYNC)
    with capture():
        assert claim(waiting) is None
        # The run ended but its worker died before releasing.
        Job.objects.filter(pk=running.pk).update(status=S.SUCCEEDED)
        assert services.jobs_release_waiting_all() == [waiting.pk]


def test_trigger_respects_the_limit_unless_forced(make_job, account, actor, capture):
    running = make_job(status=S.RUNNING, action=SYNC)
    job = make_job(status=S.FAILED, action=SYNC)
    with pytest.raises(Conflict) as excinfo:
        services.job_trigger(job_id=job.pk, actor=actor)
    assert excinfo.value.code == "sibling_running"
    assert excinfo.value.extra["running_job_id"] == running.pk
    assert excinfo.value.extra["limit"] == 1
    # With force the job runs beside the other, over the limit, once.
    with capture():
        services.job_trigger(job_id=job.pk, actor=actor, force=True)
        run = claim(job)
    assert run is not None and run.number == 2
    job.refresh_from_db()
    assert not job.ignore_limit  # used up by that claim


def test_trigger_within_the_limit_goes_ahead(make_job, account, actor, capture):
    services.account_limit_set(account_id=account.pk, action=SYNC, limit=2, actor=actor)
    make_job(status=S.RUNNING, action=SYNC)
    job = make_job(status=S.SCHEDULED, action=SYNC)
    with capture():
        services.job_trigger(job_id=job.pk, actor=actor)
        assert claim(job) is not None


def test_a_held_job_can_be_triggered_resolved_or_updated(make_job, actor, capture):
    make_job(status=S.RUNNING, action=SYNC)
    jobs = [make_job(status=S.QUEUED, action=SYNC) for _ in range(2)]
    with capture():
        for job in jobs:
            assert claim(job) is None
        services.job_trigger(job_id=jobs[0].pk, actor=actor, force=True)
        services.job_resolve(job_id=jobs[1].pk, actor=actor, code="ignored", note="not needed")
    for job in jobs:
        job.refresh_from_db()
        assert job.wait_reason == ""
    assert [job.status for job in jobs] == [S.QUEUED, S.RESOLVED]


def test_a_paused_accounts_held_jobs_stay_until_it_resumes(make_job, account, actor, capture):
    from accounts import services as account_services

    running = make_job(status=S.RUNNING, action=SYNC)
    waiting = make_job(status=S.QUEUED, action=SYNC)
    with capture():
        assert claim(waiting) is None
        Job.objects.filter(pk=running.pk).update(status=S.SUCCEEDED)
        account_services.account_pause(account_id=account.pk, actor=actor, reason="outage")
        assert services.jobs_release_waiting_all() == []
        account_services.account_resume(account_id=account.pk, actor=actor, reason="")
        assert services.jobs_release_waiting_all() == [waiting.pk]


def test_a_new_run_at_for_a_held_job_makes_it_wait_for_that_time(make_job, actor, capture):
    make_job(status=S.RUNNING, action=SYNC)
    waiting = make_job(status=S.QUEUED, action=SYNC)
    later = timezone.now() + timedelta(hours=1)
    with capture():
        assert claim(waiting) is None
        services.job_update(job_id=waiting.pk, actor=actor, changes={"run_at": later})
    waiting.refresh_from_db()
    assert (waiting.status, waiting.wait_reason, waiting.run_at) == (S.SCHEDULED, "", later)
