"""The error triage (groups, acting on a whole group after a preview) and the dashboard."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from jobs import reports, services
from jobs.models import BulkOperation, Job
from jobs.models import RollupGranularity as JobRollupGranularity
from jobs.monitoring import rollups, triage
from jobs.states import JobStatus
from tests.factories import AccountFactory, JobFactory
from tests.monitoring.test_triage_counts import seed as seed_counted

S = JobStatus
TRIAGE = reverse("admin:jobs_job_triage")
DASHBOARD = reverse("admin:jobs_job_dashboard")


def seed_failures(account, other_account):
    early = timezone.now() - timedelta(hours=5)
    JobFactory(account=account, status=S.FAILED, action="sleep", last_error_at=early)
    JobFactory(account=other_account, status=S.FAILED, action="sleep", last_error_detail="slow")
    JobFactory(account=account, status=S.STALLED, action="sleep")  # worker_lost
    JobFactory(
        account=account, status=S.FAILED, action="noop", last_error_code="provider_auth_failed"
    )
    JobFactory(account=account, status=S.SUCCEEDED, action="sleep")
    return early


def test_triage_groups(account, other_account):
    early = seed_failures(account, other_account)
    groups = {(g.action, g.error_code): g for g in reports.triage_groups()}
    assert set(groups) == {
        ("sleep", "provider_timeout"),
        ("sleep", "worker_lost"),
        ("noop", "provider_auth_failed"),
    }
    timeouts = groups[("sleep", "provider_timeout")]
    assert (timeouts.count, timeouts.failed, timeouts.stalled, timeouts.accounts) == (2, 2, 0, 2)
    assert timeouts.first_seen == early and timeouts.last_seen > early
    assert timeouts.sample_detail == "slow"  # the newest job's detail
    assert next(iter(groups)) == ("sleep", "provider_timeout")  # largest first


def test_triage_page_and_group_retry_after_preview(operator_client, account, other_account):
    seed_failures(account, other_account)
    html = operator_client.get(TRIAGE).content.decode()
    assert 'id="triage-total">4<' in html
    assert "provider_auth_failed" in html and "Retry group" in html
    group_url = (
        reverse("admin:jobs_job_changelist")
        + "?status=failed,stalled&action=sleep&last_error_code=provider_timeout"
    )
    assert group_url.replace("&", "&amp;") in html
    sample = Job.objects.filter(action="sleep", status=S.FAILED).first()
    preview = operator_client.post(
        group_url,
        {"action": "retry_jobs", "index": 0, "select_across": "1", "_selected_action": sample.pk},
    )
    assert 'id="bulk-total">2<' in preview.content.decode()
    assert Job.objects.filter(status=S.QUEUED).count() == 0
    done = operator_client.post(
        group_url,
        {
            "action": "retry_jobs",
            "select_across": "1",
            "_selected_action": sample.pk,
            "confirm": "yes",
            "note": "",
        },
    )
    assert [str(m) for m in get_messages(done.wsgi_request)] == [
        "Started: retry of 2 jobs, in the background."
    ]
    operation = BulkOperation.objects.get()
    assert done["Location"] == reverse("admin:jobs_bulkoperation_change", args=[operation.pk])
    services.bulk_operation_run(operation.pk)
    assert Job.objects.filter(status=S.QUEUED, action="sleep").count() == 2
    assert Job.objects.filter(status=S.STALLED).count() == 1  # other groups untouched


def test_dashboard(operator_client, account):
    now = timezone.now()
    for minutes in (5, 70, 75):
        JobFactory(
            account=account, status=S.SUCCEEDED, finished_at=now - timedelta(minutes=minutes)
        )
    JobFactory(account=account, status=S.FAILED, finished_at=now - timedelta(minutes=3))
    JobFactory(account=account, status=S.STALLED, finished_at=now - timedelta(minutes=3))
    JobFactory(
        account=account,
        status=S.FAILED,
        finished_at=now - timedelta(days=3),
        last_error_at=now - timedelta(days=3),
        last_error_code="old_error",
    )
    JobFactory(account=account, status=S.RUNNING, heartbeat_at=now - timedelta(hours=1))
    board = reports.dashboard(now=now)
    assert board.by_status["succeeded"] == 3 and board.by_status["failed"] == 2
    assert board.stalled_now == 1 and board.needs_operator == 3
    assert dict(board.failures_by_code) == {"provider_timeout": 1, "worker_lost": 1}
    assert len(board.hours) == 24
    assert (board.hours[-1].succeeded, board.hours[-1].failed) == (
        1 if (now - timedelta(minutes=5)).hour == now.hour else 0,
        sum(1 for _ in range(2) if (now - timedelta(minutes=3)).hour == now.hour),
    )
    assert sum(b.succeeded for b in board.hours) == 3 and sum(b.failed for b in board.hours) == 2
    html = operator_client.get(DASHBOARD).content.decode()
    assert '<svg class="chart" id="hourly-chart"' in html
    hourly = html.split('id="hourly-chart"')[1].split("</svg>")[0]
    assert hourly.count('<rect class="bar-') == 48
    assert 'id="stalled-now">1<' in html
    assert "provider_timeout" in html and "old_error" not in html


def test_admin_index_links_to_the_console(operator_client):
    html = operator_client.get(reverse("admin:index")).content.decode()
    assert DASHBOARD in html and TRIAGE in html


def test_chart_geometry_scales_to_the_peak():
    hours = [reports.HourBucket(timezone.now(), succeeded=n, failed=n // 2) for n in (0, 10, 37)]
    chart = reports.hourly_chart(hours, height=220)
    tallest = max(chart.bars, key=lambda bar: bar.height)
    assert tallest.value == 37
    assert chart.grid[-1][1] == 40  # 37 rounds up to four grid steps of 10
    assert all(bar.y + bar.height <= chart.plot_bottom + 0.1 for bar in chart.bars)


def test_dashboard_and_triage_query_counts(operator_client, django_assert_max_num_queries):
    for _ in range(20):
        JobFactory(account=AccountFactory(), status=S.FAILED)
    # The queue health adds a fixed six: the rollup cursor, hour and minute rows; the depth
    # samples' last hour row, their hour and minute rows, the newest sample.
    with django_assert_max_num_queries(15):
        operator_client.get(DASHBOARD)
    with django_assert_max_num_queries(10):
        operator_client.get(TRIAGE)


def test_the_triage_page_says_when_the_scheduler_counted(operator_client, settings):
    # On a table with more waiting jobs than the threshold, the scheduler counts them.
    settings.JOBS_TRIAGE_COUNT_ABOVE = 2
    settings.JOBS_TRIAGE_COUNT_INTERVAL = 30.0
    seed_counted(AccountFactory.create_batch(3))
    live = operator_client.get(TRIAGE).content.decode()
    assert 'id="triage-total">6<' in live and "Counted by the scheduler" not in live

    triage.refresh()
    Job.objects.filter(status=S.STALLED).update(status=S.RESOLVED)  # after the count
    html = operator_client.get(TRIAGE).content.decode()
    assert 'id="triage-total">6<' in html
    assert 'id="triage-counted">Counted by the scheduler' in html
    assert "every 30 s" in html


def test_on_a_large_table_the_hours_come_from_the_rollups(db, account, monkeypatch):
    # Statistics say the table is large: a day of finished jobs is not grouped per load.
    monkeypatch.setattr(reports, "status_estimates", lambda: {S.SUCCEEDED.value: 10_000_000})
    now = timezone.now()
    JobFactory(account=account, status=S.SUCCEEDED, finished_at=now - timedelta(hours=2))
    hour = rollups.floor_hour(now) - timedelta(hours=1)
    rollups.Tally(succeeded=7, failed=2, retried=1).row(
        JobRollupGranularity.HOUR, hour, rollups.EVERY_ACCOUNT, "noop"
    ).save()
    board = reports.dashboard(now=now)
    by_hour = {bucket.hour: (bucket.succeeded, bucket.failed) for bucket in board.hours}
    assert by_hour[hour] == (7, 2)
    assert sum(b.succeeded for b in board.hours) == 7  # the job table was not read
