"""The retention page: the policy, what the next run removes, the last runs, a run now."""

from __future__ import annotations

import re
from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from core.audit import AuditCommand
from core.models import AuditEvent
from jobs.models import Job, ProviderEvent
from jobs.states import JobStatus

URL = reverse("admin:jobs_job_retention")


def _old_succeeded(make_job, count: int, days: float = 10) -> list[Job]:
    jobs = [make_job(status=JobStatus.SUCCEEDED) for _ in range(count)]
    Job.objects.filter(pk__in=[j.pk for j in jobs]).update(
        finished_at=timezone.now() - timedelta(days=days)
    )
    return jobs


def _cell(html: str, rows: str, cls: str) -> str:
    row = re.search(rf'<tr data-rows="{rows}">(.*?)</tr>', html, re.S)
    assert row, rows
    cell = re.search(rf'<td class="num {cls}">(.*?)</td>', row.group(1), re.S)
    assert cell, (rows, cls)
    return re.sub(r"<[^>]+>", "", cell.group(1)).strip()


def test_the_page_shows_the_policy_and_what_the_next_run_removes(
    readonly_client, make_job, settings
):
    settings.JOBS_PRUNE_ROWS_PER_MINUTE = 2
    _old_succeeded(make_job, 3)
    make_job(status=JobStatus.SUCCEEDED)  # young
    response = readonly_client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert _cell(html, "succeeded", "expired") == "3"
    assert _cell(html, "succeeded", "next-run") == "2"  # the minute's budget
    assert _cell(html, "failed", "expired") == "—"
    assert "until an operator acts" in html
    # A read-only operator sees no button, and the page removed nothing.
    assert 'id="prune-now"' not in html
    assert Job.objects.count() == 4


def test_the_page_shows_the_provider_events(readonly_client, account, make_job, settings):
    settings.JOBS_RETAIN_PROVIDER_EVENTS_DAYS = 30.0
    for n, days in enumerate((31, 31, 1)):
        ProviderEvent.objects.create(
            account=account,
            provider="imap",
            type="mailbox.changed",
            external_id=f"e{n}",
            created_at=timezone.now() - timedelta(days=days),
        )
    html = readonly_client.get(URL).content.decode()
    row = re.search(r'<tr data-rows="provider_events">(.*?)</tr>', html, re.S).group(1)
    # Labelled as rows of their own, not as a status of jobs.
    assert "Provider events" in row and "job-status" not in row
    assert "30 days" in row
    assert _cell(html, "provider_events", "expired") == "2"
    assert _cell(html, "provider_events", "next-run") == "2"

    settings.JOBS_RETAIN_PROVIDER_EVENTS_DAYS = None
    html = readonly_client.get(URL).content.decode()
    row = re.search(r'<tr data-rows="provider_events">(.*?)</tr>', html, re.S).group(1)
    assert "for ever" in row and "until an operator acts" not in row
    assert _cell(html, "provider_events", "expired") == "—"
    assert ProviderEvent.objects.count() == 3


def test_a_read_only_operator_cannot_run_it(readonly_client, make_job):
    _old_succeeded(make_job, 1)
    assert readonly_client.post(URL).status_code == 403
    assert Job.objects.count() == 1


def test_an_operator_runs_it_now_and_sees_the_run(operator_client, make_job):
    _old_succeeded(make_job, 3)
    page = operator_client.get(URL).content.decode()
    assert 'id="prune-now"' in page and "csrfmiddlewaretoken" in page
    response = operator_client.post(URL, follow=True)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Retention run: removed 3 succeeded." in html
    assert Job.objects.count() == 0
    runs = re.search(r'id="retention-runs">(.*?)</table>', html, re.S).group(1)
    assert "3 succeeded" in runs
    (event,) = AuditEvent.objects.filter(command=AuditCommand.PRUNE)
    assert event.actor == "user:operator"  # who asked for the run


def test_the_count_is_capped_at_the_budget(readonly_client, make_job, monkeypatch, settings):
    from jobs.admin import views

    monkeypatch.setattr(views, "RETENTION_PREVIEW_MIN_CAP", 1)
    settings.JOBS_PRUNE_ROWS_PER_MINUTE = 2
    _old_succeeded(make_job, 3)
    html = readonly_client.get(URL).content.decode()
    assert _cell(html, "succeeded", "expired") == "at least 2"
    assert _cell(html, "succeeded", "next-run") == "2"
