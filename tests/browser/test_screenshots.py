"""Every console page at 1,400 px, in the admin's light and dark themes (its own toggle): saved
as screenshots to look at ($CONSOLE_SCREENSHOTS, else var/artifacts/screenshots/, git-ignored;
the path is printed), and checked for what a person would see wrong: a page wider than the
window, and in dark mode a light background that a hard-coded colour left behind."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from core.actors import Actor
from jobs import services
from jobs.models import JobAttempt, ProcessHeartbeat, ProcessKind
from jobs.monitoring import rollups
from jobs.states import JobStatus
from tests.browser.test_console import OPERATE, staff
from tests.factories import AccountFactory, JobFactory

pytestmark = pytest.mark.slow
S = JobStatus
ROOT = Path(__file__).resolve().parents[2]

# Elements of the content whose own background is lighter than this (relative luminance, 0-1)
# in dark mode are a light box on a dark page. Status badges are coloured on purpose.
LIGHT = 0.6
LIGHT_BACKGROUNDS = """(light) => {
  const lum = (c) => {
    const m = c.match(/rgba?\\(([\\d.]+), ([\\d.]+), ([\\d.]+)(?:, ([\\d.]+))?\\)/);
    if (!m || (m[4] !== undefined && parseFloat(m[4]) < 0.5)) return null;
    const [r, g, b] = [m[1], m[2], m[3]].map((v) => {
      v = parseFloat(v) / 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const found = [];
  for (const el of document.querySelectorAll('#container *')) {
    if (el.closest('.job-status, .legend-swatch, svg, .live-dot, .theme-toggle')) continue;
    const l = lum(getComputedStyle(el).backgroundColor);
    if (l !== null && l > light) {
      found.push(`${el.tagName.toLowerCase()}#${el.id}.${el.className}`.slice(0, 120));
    }
  }
  return found;
}"""


def folder() -> Path:
    path = Path(os.environ.get("CONSOLE_SCREENSHOTS") or ROOT / "var" / "artifacts" / "screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def console_data():
    account = AccountFactory(name="Support mailbox with a rather long name")
    other = AccountFactory(name="Sales")
    now = timezone.now()
    failed = JobFactory(
        account=account,
        status=S.FAILED,
        action="imap_sync_messages",
        attempt_count=1,
        max_attempts=5,
        last_error_code="provider_auth_failed",
        last_error_detail="LOGIN failed: [AUTHENTICATIONFAILED] Invalid credentials (Failure)",
        payload={"folder": "INBOX"},
    )
    JobAttempt.objects.create(
        job=failed,
        number=1,
        worker="host-1:4242",
        outcome="failed",
        duration_ms=1520,
        error_code="provider_auth_failed",
        error_detail="LOGIN failed",
        traceback='Traceback (most recent call last):\n  File "sync.py", line 4\nLoginError',
    )
    for hours in range(0, 20, 2):
        JobFactory(account=other, status=S.SUCCEEDED, finished_at=now - timedelta(hours=hours))
    JobFactory(account=account, status=S.STALLED, action="imap_sync_messages")
    JobFactory(account=account, status=S.RUNNING, action="sleep")
    JobFactory(
        account=other,
        status=S.SCHEDULED,
        attempt_count=1,
        last_error_code="provider_timeout",
        last_error_detail="IMAP connection to imap.example.com:993 timed out after 30 s " * 3,
        run_at=now + timedelta(minutes=3),
        in_status__keep_run_at=True,
    )
    JobFactory(account=other, status=S.QUEUED, action="sleep")
    services.job_retry(
        job_id=JobFactory(account=other, status=S.FAILED).pk, actor=Actor.system("t")
    )
    # For the schedules list, the workers page and the bulk operations' pages.
    for target, cadence in (
        (account, {"cron": "*/15 * * * *"}),
        (other, {"interval_seconds": 600}),
    ):
        services.schedule_create(
            account=target, kind="mailbox_sync", cadence=cadence, actor=Actor.system("t")
        )
    for kind, pid, cluster_pid, beat_ago in (
        (ProcessKind.WORKER, 4242, 4200, 1),
        (ProcessKind.WORKER, 4243, 4200, 1),
        (ProcessKind.WORKER, 5151, 5100, 900),  # a cluster that stopped beating: gone
        (ProcessKind.SCHEDULER, 4300, None, 2),
    ):
        ProcessHeartbeat.objects.create(
            kind=kind,
            host="host-1",
            pid=pid,
            cluster_pid=cluster_pid,
            queue="jobsconsole",
            started_at=now - timedelta(hours=2),
            beat_at=now - timedelta(seconds=beat_ago),
            jobs_done=40,
            jobs_failed=3,
        )
    operation = services.bulk_operation_create(
        command="retry",
        filters={"status": ["failed"], "last_error_code": ["provider_auth_failed"]},
        account_id=account.pk,
        actor=Actor.system("t"),
        note="credentials fixed",
    )
    # The dashboard's depth chart: the scheduler's samples of the last minutes.
    for minutes in (3, 2, 1, 0):
        rollups.sample_depth(now=now - timedelta(minutes=minutes))
    return account, failed, operation


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_screenshots_of_every_page(open_page, django_user_model, console_data, theme, capsys):
    staff(django_user_model, "operator", [*OPERATE, "jobs.view_schedule"])
    account, failed, operation = console_data
    page = open_page("operator")
    base = page.url
    # The admin's own toggle cycles auto → dark → light (on a light system): click it to the
    # theme, as a person would, and check the page took it.
    for _ in range(3):
        if page.evaluate("document.documentElement.dataset.theme") == theme:
            break
        page.click("#user-tools .theme-toggle")
    assert page.evaluate("document.documentElement.dataset.theme") == theme
    pages = {
        "index": base,
        "queue": f"{base}jobs/job/",
        "queue_account": f"{base}jobs/job/?account={account.pk}",
        "job": f"{base}jobs/job/{failed.pk}/change/",
        "triage": f"{base}jobs/job/triage/",
        "dashboard": f"{base}jobs/job/dashboard/",
        "search_delete": f"{base}jobs/job/search-delete/?account={account.pk}&status=failed",
        "audit_log": f"{base}core/auditevent/",
        "accounts": f"{base}accounts/account/",
        "account": f"{base}accounts/account/{account.pk}/change/",
        "workers": f"{base}jobs/job/workers/",
        "retention": f"{base}jobs/job/retention/",
        "schedules": f"{base}jobs/schedule/",
        "bulk_operations": f"{base}jobs/bulkoperation/",
        "bulk_progress": f"{base}jobs/bulkoperation/{operation.pk}/change/",
    }
    out = folder()
    problems = []
    for name, url in pages.items():
        response = page.goto(url)
        assert response is not None and response.status == 200, f"{name}: {url}"
        assert page.evaluate("document.documentElement.dataset.theme") == theme  # remembered
        page.screenshot(path=str(out / f"{name}-{theme}.png"), full_page=True)
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > 1400:
            problems.append(f"{name}: {width} px wide at 1,400")
        # A table cut by its scrolling box (Django's changelist .results scrolls sideways).
        cut = page.evaluate(
            "() => Array.from(document.querySelectorAll('.results, .module, #content-main'))"
            ".filter((el) => el.scrollWidth > el.clientWidth + 1)"
            ".map((el) => el.className || el.id)"
        )
        if cut:
            problems.append(f"{name}: content wider than its box at 1,400 px: {cut}")
        if theme == "dark":
            light = page.evaluate(LIGHT_BACKGROUNDS, LIGHT)
            if light:
                problems.append(f"{name}: light backgrounds in dark mode: {light[:5]}")
    # The bulk confirmation page, reached as an operator does.
    page.goto(f"{base}jobs/job/?account={account.pk}&status=failed")
    page.check(f"input[name=_selected_action][value={failed.pk}]")
    page.select_option("select[name=action]", "retry_jobs")
    page.click("button[name=index]")
    page.screenshot(path=str(out / f"bulk_confirmation-{theme}.png"), full_page=True)
    if theme == "dark" and (light := page.evaluate(LIGHT_BACKGROUNDS, LIGHT)):
        problems.append(f"bulk_confirmation: light backgrounds in dark mode: {light[:5]}")
    with capsys.disabled():
        print(f"\nscreenshots ({theme}): {out}")
    assert not problems, problems
