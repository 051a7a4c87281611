"""The operators' console in a real browser: the paths an operator takes at 3 a.m."""

from __future__ import annotations

import os
import re

import pytest
from django.contrib.auth.models import Permission

from core.models import AuditEvent
from jobs.models import Job
from jobs.states import JobStatus
from tests.browser.conftest import PASSWORD
from tests.factories import AccountFactory, JobFactory

pytestmark = pytest.mark.slow
S = JobStatus


def staff(django_user_model, username, perms):
    user = django_user_model.objects.create_user(username, password=PASSWORD, is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


VIEW = ["jobs.view_job", "core.view_auditevent", "accounts.view_account"]
OPERATE = [
    *VIEW,
    "jobs.change_job",
    "jobs.retry_job",
    "jobs.resolve_job",
    "jobs.trigger_job",
    "jobs.delete_job",
    "accounts.change_account",
]


@pytest.fixture
def operator(django_user_model):
    return staff(django_user_model, "operator", OPERATE)


@pytest.fixture
def viewer(django_user_model):
    return staff(django_user_model, "viewer", VIEW)


@pytest.fixture
def mailbox():
    account = AccountFactory(name="Support mailbox")
    failed = [
        JobFactory(account=account, status=S.FAILED, action="sleep", attempt_count=3)
        for _ in range(3)
    ]
    JobFactory(account=account, status=S.SUCCEEDED, action="sleep")
    JobFactory(account=AccountFactory(name="Other mailbox"), status=S.FAILED)
    return account, failed


def test_filter_failed_jobs_and_retry_a_selection(open_page, operator, mailbox):
    account, failed = mailbox
    page = open_page("operator")
    # From the account page, follow its "Failed" count to the filtered queue.
    page.goto(f"{page.url}accounts/account/{account.pk}/change/")
    page.click("#account-status-counts a[data-status=failed]")
    page.wait_for_url(re.compile(r"status=failed"))
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 3
    assert page.locator("#result_list .job-status-failed").count() == 3
    for job in failed[:2]:
        page.check(f"input[name=_selected_action][value={job.pk}]")
    page.select_option("select[name=action]", "retry_jobs")
    page.click("button[name=index]")
    assert page.locator("#bulk-total").inner_text() == "2"
    page.fill("#id_note", "provider is back")
    page.click("#bulk-form input[type=submit]")
    assert page.locator(".messagelist").inner_text().strip() == "2 jobs retried."
    # The retried jobs left the failed view; the account's queue shows them queued.
    assert page.locator("#result_list tbody tr").count() == 1
    page.goto(page.url.split("?")[0] + f"?account={account.pk}")
    for job in failed[:2]:
        row = page.locator("#result_list tbody tr", has_text=job.pk)
        assert row.locator(".job-status").inner_text() == "Queued"
    assert Job.objects.filter(pk__in=[j.pk for j in failed[:2]], status=S.QUEUED).count() == 2


def test_resolve_one_from_its_page_with_a_note(open_page, operator, mailbox, tmp_path):
    _, failed = mailbox
    job = failed[0]
    page = open_page("operator")
    page.goto(f"{page.url}jobs/job/{job.pk}/change/")
    assert page.locator("#command-retry").is_visible()
    page.select_option("#id_resolve_code", "fixed")
    page.fill("#id_resolve_note", "re-sent by hand")
    page.click("#command-resolve input[type=submit]")
    assert "it is now resolved" in page.locator(".messagelist").inner_text()
    assert page.locator("#audit-timeline", has_text="re-sent by hand").count() == 1
    assert page.locator("#command-retry").count() == 0  # no longer allowed
    assert page.locator("#command-trigger").is_visible()
    job.refresh_from_db()
    assert job.status == S.RESOLVED and job.resolution["note"] == "re-sent by hand"


def test_delete_by_search_through_the_confirmation_page(open_page, operator, mailbox):
    account, failed = mailbox
    page = open_page("operator")
    page.goto(f"{page.url}jobs/job/?account={account.pk}&status=failed")
    page.click("#search-delete-link")
    assert page.locator("#matched").inner_text() == "3"
    assert "status failed" in page.locator("#filter-words").inner_text()
    assert Job.objects.filter(account=account).count() == 4  # the preview deleted nothing
    page.click("#search-delete-form input[type=submit]")
    assert page.locator(".messagelist").inner_text().strip() == "3 jobs deleted."
    assert not Job.objects.filter(pk__in=[j.pk for j in failed]).exists()
    assert Job.objects.filter(account=account, status=S.SUCCEEDED).count() == 1
    assert AuditEvent.objects.get(command="search_delete").data["count"] == 3


def test_read_only_operator_sees_no_buttons(open_page, viewer, mailbox):
    account, failed = mailbox
    page = open_page("viewer")
    page.goto(f"{page.url}jobs/job/?account={account.pk}&status=failed")
    assert page.locator("#result_list tbody tr").count() == 3
    assert page.locator("select[name=action]").count() == 0
    assert page.locator("#search-delete-link").count() == 0
    page.goto(page.url.split("?")[0] + f"{failed[0].pk}/change/")
    assert page.locator("#job-commands").is_visible()
    assert page.locator("#job-commands form").count() == 0
    assert page.locator("input[type=submit]").count() == 0
    page.goto(page.url.split("/jobs/")[0] + "/jobs/job/triage/")
    assert page.locator(".retry-group, .resolve-group").count() == 0


def test_pages_render_in_the_browser(open_page, operator, mailbox, tmp_path):
    """The job page, the triage and the dashboard as a person sees them (screenshots go to
    $CONSOLE_SCREENSHOTS when set, to look at them)."""
    from datetime import timedelta

    from django.utils import timezone

    from jobs.models import JobAttempt

    account, failed = mailbox
    now = timezone.now()
    for hours in range(0, 20, 2):
        JobFactory(account=account, status=S.SUCCEEDED, finished_at=now - timedelta(hours=hours))
    JobFactory(account=account, status=S.STALLED, action="imap_sync_messages")
    job = failed[0]
    JobAttempt.objects.create(
        job=job,
        number=1,
        worker="worker-1",
        outcome="failed",
        duration_ms=30120,
        error_code="provider_timeout",
        error_detail="IMAP connection timed out",
        traceback='Traceback (most recent call last):\n  File "sync.py", line 4\nTimeoutError',
    )
    folder = os.environ.get("CONSOLE_SCREENSHOTS") or str(tmp_path)
    page = open_page("operator")
    base = page.url
    page.goto(f"{base}jobs/job/{job.pk}/change/")
    assert page.locator("#job-attempts-table details.traceback").is_visible()
    assert not page.locator("details.traceback pre").is_visible()  # collapsed
    page.screenshot(path=f"{folder}/job_page.png", full_page=True)
    page.goto(f"{base}jobs/job/triage/")
    assert page.locator("#triage-table tr.triage-group").count() == 3
    page.screenshot(path=f"{folder}/triage.png", full_page=True)
    page.goto(f"{base}jobs/job/dashboard/")
    bars = page.locator("#hourly-chart rect.bar-succeeded")
    assert bars.count() == 24
    assert max(bars.nth(i).bounding_box()["height"] for i in range(24)) > 10
    page.screenshot(path=f"{folder}/dashboard.png", full_page=True)
    page.goto(f"{base}jobs/job/?account={account.pk}")
    page.screenshot(path=f"{folder}/queue.png", full_page=True)
    page.goto(base)
    page.screenshot(path=f"{folder}/index.png")
