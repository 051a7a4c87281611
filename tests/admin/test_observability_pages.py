"""The workers page and the dashboard's queue health: their scopes, their live fragments
(`?_live=1`, the contract of core/static/core/live.js) and who may see them."""

from __future__ import annotations

import re
from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from jobs.models import DepthSample, JobRollup, ProcessHeartbeat, ProcessKind, RollupCursor
from jobs.monitoring import rollups
from jobs.states import JobStatus
from tests.factories import AccountFactory, JobFactory

WORKERS = reverse("admin:jobs_job_workers")
DASHBOARD = reverse("admin:jobs_job_dashboard")


def beat(kind, pid, *, ago, cluster_pid=100, stopped=False, done=0, failed=0):
    now = timezone.now()
    return ProcessHeartbeat.objects.create(
        kind=kind,
        host="host-a",
        pid=pid,
        cluster_pid=cluster_pid if kind == ProcessKind.WORKER else None,
        queue="jobsconsole",
        started_at=now - timedelta(hours=1),
        beat_at=now - timedelta(seconds=ago),
        stopped_at=now - timedelta(seconds=ago) if stopped else None,
        jobs_done=done,
        jobs_failed=failed,
    )


def test_workers_page_shows_alive_gone_and_stopped_processes(readonly_client, account):
    beat(ProcessKind.WORKER, 101, ago=1, done=40, failed=3)
    beat(ProcessKind.WORKER, 102, ago=1)
    beat(ProcessKind.WORKER, 201, ago=600, cluster_pid=200)  # its cluster was killed
    beat(ProcessKind.SCHEDULER, 300, ago=2)
    beat(ProcessKind.SCHEDULER, 301, ago=900, stopped=True)
    job = JobFactory(account=account, status=JobStatus.RUNNING, worker="host-a:101")
    html = readonly_client.get(WORKERS).content.decode()
    assert 'id="clusters-alive">1<' in html and 'id="workers-alive">2<' in html
    assert 'id="schedulers-alive">1<' in html
    assert 'data-cluster="host-a:100" data-state="alive"' in html
    assert 'data-cluster="host-a:200" data-state="gone"' in html
    assert 'data-worker="host-a:201" data-state="gone"' in html
    assert 'data-scheduler="host-a:301" data-state="stopped"' in html
    assert job.pk in html and ">40<" in html
    assert 'data-live="/admin/jobs/job/workers/?_live=1"' in html
    fragment = readonly_client.get(WORKERS + "?_live=1")
    text = fragment.content.decode()
    assert "<html" not in text and 'id="workers-alive">2<' in text and job.pk in text


def test_workers_page_needs_the_view_permission(client, django_user_model):
    user = django_user_model.objects.create_user("nobody", password="pw-for-tests-1", is_staff=True)
    client.force_login(user)
    assert client.get(WORKERS).status_code == 403
    client.logout()
    assert client.get(WORKERS).status_code == 302  # to the login page


def test_dashboard_queue_health_per_range_account_and_action(readonly_client):
    account, other = AccountFactory(), AccountFactory()
    now = timezone.now()
    minute = rollups.floor_minute(now) - timedelta(minutes=5)
    tally = rollups.Tally(started=10, succeeded=7, failed=2, retried=1)
    tally.errors.update({"provider_timeout": 3})
    for seconds in (1, 1, 2, 2, 2, 3, 4, 8, 20, 40):
        tally.add_latency(seconds)
    for account_id in ("", account.pk):
        tally.row("m", minute, account_id, "imap_sync_messages").save()
    rollups.Tally(started=5, succeeded=5).row("m", minute, "", "noop").save()
    rollups.Tally(started=5, succeeded=5).row("m", minute, other.pk, "noop").save()
    RollupCursor.objects.create(name=rollups.CURSOR, through=rollups.floor_minute(now))
    JobFactory(account=account, status=JobStatus.QUEUED, run_at=now - timedelta(minutes=3))
    JobFactory(account=other, status=JobStatus.QUEUED, action="noop")
    rollups.sample_depth()  # the scheduler's depth sample of this minute

    html = readonly_client.get(DASHBOARD + "?range=1h").content.decode()
    assert 'id="runs-started">15<' in html and 'id="runs-finished">15<' in html
    assert 'data-action="imap_sync_messages"' in html and 'data-action="noop"' in html
    assert 'data-code="provider_timeout"' in html
    assert 'data-depth="queued"' in html and 'id="oldest-queued">3 min' in html
    assert 'id="health-chart"' in html
    assert 'data-live="/admin/jobs/job/dashboard/?range=1h&amp;_live=1"' in html

    mine = readonly_client.get(f"{DASHBOARD}?range=24h&account={account.pk}").content.decode()
    assert 'id="runs-started">10<' in mine and 'data-action="noop"' not in mine
    assert account.name in mine

    one = readonly_client.get(f"{DASHBOARD}?range=7d&action=noop&_live=1").content.decode()
    assert "<html" not in one and 'id="runs-started">5<' in one
    assert 'id="latency-p50">—<' in one  # no latency samples for noop

    # What does not parse is ignored, and said.
    odd = readonly_client.get(f"{DASHBOARD}?range=1y&account=acc_nope").content.decode()
    assert "No account <code>acc_nope</code>" in odd and "last 24h" in odd
    assert JobRollup.objects.count() == 4  # reading wrote nothing


def test_dashboard_without_rollups_says_so(readonly_client):
    html = readonly_client.get(DASHBOARD).content.decode()
    assert "none yet (is a scheduler running?)" in html
    assert 'id="oldest-queued">—<' in html


def test_the_chart_heading_names_its_buckets(readonly_client):
    for range_key, bucket in (("1h", "minute"), ("24h", "hour"), ("7d", "6 hours")):
        html = readonly_client.get(f"{DASHBOARD}?range={range_key}").content.decode()
        heading = re.search(r'<h2 id="health-chart-heading">([^:]*):', html)
        assert heading and heading[1] == f"Runs finished per {bucket}, last {range_key} (UTC)"


def test_workers_and_dashboard_show_moments_in_the_console_form(readonly_client):
    beat(ProcessKind.WORKER, 101, ago=1)
    beat(ProcessKind.WORKER, 201, ago=600, cluster_pid=200)
    beat(ProcessKind.SCHEDULER, 300, ago=2)
    through = rollups.floor_minute(timezone.now()) - timedelta(minutes=1)
    RollupCursor.objects.create(name=rollups.CURSOR, through=through)
    html = readonly_client.get(WORKERS).content.decode()
    # Every cell and line that tells a moment: <time> with the absolute form (seconds, zone) on
    # hover or beside; no bare "Y-m-d H:i:s".
    moments = re.findall(r'<time datetime="[^"]+" title="([^"]+)">([^<]+)</time>', html)
    assert len(moments) >= 2 + 2 * 3 + 1  # as of; per process: started, beat; a gone one's since
    assert any(re.fullmatch(r"\d+ (s|min|h)( \d+ min)? ago|just now", text) for _, text in moments)
    bare = re.sub(r"<time[^>]*>.*?</time>", "", html)
    assert not re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?! UTC)", bare)
    dashboard = readonly_client.get(DASHBOARD).content.decode()
    rolled = re.search(
        r'id="rolled-up-to"><time datetime="[^"]+" title="[^"]+">([^<]+)<', dashboard
    )
    assert rolled and rolled[1] == through.strftime("%Y-%m-%d %H:%M:%S UTC")


def test_the_dashboard_shows_depth_from_the_newest_sample(readonly_client):
    account = AccountFactory()
    now = timezone.now()
    minute = rollups.floor_minute(now)
    for account_id, queued in (("", 40), (account.pk, 7)):
        DepthSample.objects.create(
            granularity="m",
            bucket=minute,
            account_id=account_id,
            action="",
            sampled_at=now - timedelta(seconds=5),
            queued=queued,
            running=2,
            oldest_queued_seconds=125,
        )
    # The job table says otherwise: the page does not count it.
    JobFactory(account=account, status=JobStatus.QUEUED)
    html = readonly_client.get(f"{DASHBOARD}?range=1h&account={account.pk}").content.decode()
    assert 'data-depth="queued"><span class="job-status job-status-queued">' in html
    assert '<span class="count-big">7</span></a>' in html
    assert 'id="oldest-queued">2 min 5 s<' in html
    assert "depth sample of <time" in html and "(5 s ago)" in html
    assert 'data-depth="failed"' not in html  # an account's failures are not sampled
    assert 'id="depth-chart"' in html and 'data-status="queued"' in html
    every = readonly_client.get(f"{DASHBOARD}?range=24h").content.decode()
    assert '<span class="count-big">40</span></a>' in every
    assert 'data-depth="failed"' in every  # every account: counted now, cheaply


def test_the_dashboard_without_samples_says_so(readonly_client):
    html = readonly_client.get(DASHBOARD).content.decode()
    assert "No depth sample yet" in html and 'id="oldest-queued">—<' in html
