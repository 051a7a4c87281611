"""Live pages, server side: each live region names its fragment URL, and that URL answers the
region's HTML alone, from the page's own queries (the queue: its page query, never a count),
in the caller's permissions. The browser half is tests/browser/test_live.py."""

from __future__ import annotations

import re
from datetime import timedelta

from django.contrib.staticfiles import finders
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from core.actors import Actor
from jobs import services
from jobs.models import JobAttempt
from jobs.states import JobStatus
from tests.factories import AccountFactory, JobFactory

S = JobStatus
QUEUE = reverse("admin:jobs_job_changelist")
LIVE_HEADER = {"HTTP_X_LIVE_REFRESH": "1"}


def live_url(html: str, region_id: str) -> str:
    found = re.search(rf'id="{region_id}"[^>]*data-live="([^"]+)"', html)
    assert found, f"no live region {region_id}"
    return found[1].replace("&amp;", "&")


def test_every_admin_page_loads_the_live_script(operator_client):
    html = operator_client.get(reverse("admin:index")).content.decode()
    script = re.search(r'<script src="/static/([^"]+live\.js)" defer>', html)
    assert script and finders.find(script[1])
    assert re.search(r'<link rel="stylesheet" href="/static/core/live\.css">', html)


def test_queue_rows_are_a_live_region_of_the_page_itself(operator_client, make_job):
    make_job(status=S.FAILED)
    html = operator_client.get(QUEUE + "?status=failed").content.decode()
    url = live_url(html, "queue-rows")
    assert url.startswith(QUEUE + "?") and "status=failed" in url and "_live=1" in url
    assert 'data-live-interval="3000"' in html


def test_queue_fragment_is_the_rows_of_the_page_without_a_count(operator_client, make_job):
    failed = [make_job(status=S.FAILED) for _ in range(3)]
    succeeded = make_job(status=S.SUCCEEDED)
    with CaptureQueriesContext(connection) as queries:
        response = operator_client.get(QUEUE + "?status=failed&_live=1", **LIVE_HEADER)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html and "<table" not in html and "changelist-filter" not in html
    assert html.count("<tr") == 3
    for job in failed:
        assert f'value="{job.pk}"' in html  # its checkbox, by name and value
    assert succeeded.pk not in html
    job_queries = [q["sql"] for q in queries.captured_queries if "jobs_job" in q["sql"]]
    assert len(job_queries) == 1, job_queries  # the page, once
    assert "COUNT(" not in job_queries[0].upper()
    assert "LIMIT" in job_queries[0].upper()


def test_queue_fragment_shows_a_change_and_keeps_the_page(operator_client, make_job):
    jobs = [make_job(status=S.QUEUED) for _ in range(60)]
    first = operator_client.get(QUEUE + "?status=queued&_live=1").content.decode()
    assert first.count("<tr") == 50
    second_page = operator_client.get(QUEUE + "?status=queued&p=2&_live=1").content.decode()
    assert second_page.count("<tr") == 10 and jobs[0].pk in second_page  # oldest last
    newest = jobs[-1]
    services.job_resolve(job_id=newest.pk, actor=Actor.system("test"), code="fixed", note="x")
    again = operator_client.get(QUEUE + "?_live=1").content.decode()
    row = next(r for r in again.split("<tr") if newest.pk in r)
    assert "job-status-resolved" in row


def test_an_empty_queue_keeps_its_table_for_rows_to_arrive(operator_client, make_job):
    html = operator_client.get(QUEUE + "?status=stalled").content.decode()
    assert 'id="result_list"' in html and 'id="queue-rows"' in html
    assert "new jobs appear here by themselves" in html
    job = make_job(status=S.STALLED)
    fragment = operator_client.get(QUEUE + "?status=stalled&_live=1").content.decode()
    assert job.pk in fragment and "queue-empty" not in fragment


def test_queue_fragment_follows_permissions(readonly_client, make_job, client):
    job = make_job(status=S.FAILED)
    html = readonly_client.get(QUEUE + "?_live=1").content.decode()
    assert job.pk in html and "action-select" not in html  # a viewer has no checkboxes
    anonymous = Client().get(QUEUE + "?_live=1")
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]


def test_queue_fragment_with_a_bad_filter_is_a_400(operator_client):
    response = operator_client.get(QUEUE + "?status=nonsense&_live=1")
    assert response.status_code == 400


def test_queue_shows_error_detail_and_next_run(operator_client, make_job):
    long_detail = "IMAP connection to imap.example.com:993 timed out " + "x" * 300
    make_job(status=S.FAILED, last_error_code="provider_timeout", last_error_detail=long_detail)
    retry_at = timezone.now() + timedelta(minutes=4, seconds=30)
    make_job(
        status=S.SCHEDULED,
        run_at=retry_at,
        in_status__keep_run_at=True,
        attempt_count=1,
        last_error_code="provider_timeout",
        last_error_detail="timed out",
    )
    html = operator_client.get(QUEUE).content.decode()
    assert re.search(r'class="error-excerpt" title="IMAP connection to [^"]*x{300}"', html)
    shown = re.findall(r'class="error-excerpt" title="[^"]*">([^<]*)</span>', html)[-1]
    assert shown.startswith("IMAP connection to") and shown.endswith("…") and len(shown) <= 70
    assert re.search(
        r'retry <time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">'
        r"in 4 min</time>",
        html,
    )


def test_job_page_regions_and_their_fragments(operator_client, make_job):
    job = make_job(status=S.QUEUED)
    page = reverse("admin:jobs_job_change", args=[job.pk])
    html = operator_client.get(page).content.decode()
    summary_url, history_url = live_url(html, "job-live"), live_url(html, "job-history")
    assert summary_url.startswith(page + "?_live=summary&seen=")
    assert history_url == page + "?_live=history"
    summary = operator_client.get(summary_url).content.decode()
    assert "<html" not in summary and 'id="job-status"' in summary and "Queued" in summary
    assert 'id="command-resolve"' in summary and "csrfmiddlewaretoken" in summary
    assert "job-changed" not in summary
    # The job changes in the background: the next refresh shows it, and says the fields below
    # (rendered at load) are out of date.
    services.job_resolve(job_id=job.pk, actor=Actor.system("test"), code="fixed", note="done")
    summary = operator_client.get(summary_url).content.decode()
    assert "Resolved" in summary and 'id="job-changed"' in summary
    assert 'id="command-resolve"' not in summary and 'id="command-trigger"' in summary
    history = operator_client.get(history_url).content.decode()
    assert 'id="audit-timeline"' in history and "<b>resolve</b>" in history
    assert "<html" not in history


def test_job_fragments_refuse_what_the_page_refuses(operator_client, make_job):
    job = make_job(status=S.QUEUED)
    page = reverse("admin:jobs_job_change", args=[job.pk])
    assert operator_client.get(page + "?_live=nonsense").status_code == 404
    missing = reverse("admin:jobs_job_change", args=["job_01M8S8Z67A1C8BH0QBYC9BNA2B"])
    assert operator_client.get(missing + "?_live=summary").status_code == 404
    assert Client().get(page + "?_live=summary").status_code == 302


def test_job_page_has_one_heading_dashes_and_what_to_fix(operator_client, make_job):
    job = make_job(
        status=S.FAILED,
        attempt_count=1,
        max_attempts=5,
        last_error_code="provider_auth_failed",
        last_error_detail="LOGIN failed: authentication failed",
    )
    html = operator_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert html.count("<h1") == 1 and f"<h1>Job {job.pk}</h1>" in html
    assert f"<h2>{job}</h2>" not in html  # Django's subtitle, the same job again
    assert "None" not in re.sub(r"<script.*?</script>", "", html, flags=re.S)
    assert re.search(r"Provider event:</label>\s*<div class=\"readonly\">—</div>", html)
    account_url = reverse("admin:accounts_account_change", args=[job.account_id])
    assert "provider_auth_failed is not retryable" in html
    assert (
        f'<b>Fix first:</b>\n    <a href="{account_url}">the server rejected the password: fix '
        "the account&#x27;s credentials, then retry</a>" in html
    )


def test_timestamps_have_one_format_with_seconds_and_zone(operator_client, make_job):
    job = make_job(status=S.FAILED)
    JobAttempt.objects.create(job=job, number=1, worker="w", outcome="failed", duration_ms=5)
    html = operator_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    stamps = re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d(?::\d\d)?(?: [A-Z]+)?", html)
    assert stamps and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", s) for s in stamps)
    assert not re.search(r"(a\.m\.|p\.m\.)", html)
    assert re.search(r"\(just now\)|\(\d+ s ago\)", html)  # the relative form beside


def test_audit_data_is_labelled_values(operator_client, make_job):
    job = make_job(status=S.SCHEDULED)
    services.job_trigger(job_id=job.pk, actor=Actor.system("test"), force=True)
    html = operator_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    timeline = html.split('id="audit-timeline"')[1]
    assert '<span class="datum-label">force</span> <span title="yes">yes</span>' in timeline
    assert "{&#x27;" not in timeline and "{'" not in timeline


def test_triage_fragment(operator_client, make_job):
    html = operator_client.get(reverse("admin:jobs_job_triage")).content.decode()
    url = live_url(html, "triage-live")
    assert "Nothing is failed or stalled" in operator_client.get(url).content.decode()
    make_job(status=S.FAILED, action="sleep", last_error_code="provider_timeout")
    fragment = operator_client.get(url).content.decode()
    assert "<html" not in fragment and 'data-error-code="provider_timeout"' in fragment
    assert 'id="triage-total">1<' in fragment


def test_index_counts_live_and_broker_internals(operator_client, operator, make_job, superuser):
    make_job(status=S.FAILED)
    make_job(status=S.STALLED)
    make_job(status=S.QUEUED)
    services.job_retry(job_id=make_job(status=S.FAILED).pk, actor=Actor.user(operator))
    html = operator_client.get(reverse("admin:index")).content.decode()
    url = live_url(html, "console-counts")
    assert url == reverse("admin:jobs_job_counts")
    counts = operator_client.get(url).content.decode()
    assert re.search(r'id="now-needs-operator".*?count-big">2<', counts, re.S)
    assert re.search(r'id="now-queued".*?count-big">2<', counts, re.S)
    assert re.search(r'id="now-running".*?count-big">0<', counts, re.S)
    # django-q2's tables apart, under a heading saying what they are.
    assert "app-django_q" not in html  # an operator without rights on them does not see them
    root = Client()
    root.force_login(superuser)
    internals = root.get(reverse("admin:index")).content.decode().split('id="broker-internals"')
    assert len(internals) == 2 and "Broker internals" in internals[1]
    assert "app-django_q" not in internals[0] and "app-django_q" in internals[1]
    # "Recent actions" shows the operator's own commands from the audit trail.
    recent = html.split('id="recent-actions-module"')[1]
    assert "<b>retry</b>" in recent and "None available" not in recent


def test_index_counts_stop_at_the_cap(make_job, db):
    from jobs import reports

    for _ in range(4):
        make_job(status=S.QUEUED)
    counts = reports.operator_counts(cap=3)
    assert str(counts["queued"]) == "3+" and counts["queued"].capped
    assert str(counts["running"]) == "0"


def test_audit_log_has_seconds_and_accounts_by_name(operator_client, make_job, account):
    job = make_job(status=S.FAILED)
    services.job_retry(job_id=job.pk, actor=Actor.system("test"))
    gone = AccountFactory(name="Soon gone")
    services.job_retry(job_id=make_job(status=S.FAILED, account=gone).pk, actor=Actor.system("t"))
    gone_id = gone.pk
    gone.delete()
    html = operator_client.get(reverse("admin:core_auditevent_changelist")).content.decode()
    account_url = reverse("admin:accounts_account_change", args=[account.pk])
    assert re.search(rf'<a href="{account_url}" class="account-name"[^>]*>{account.name}</a>', html)
    assert gone_id in html  # an event outlives its account: then its id
    assert re.search(
        r"<time datetime=\"[^\"]+\" title=\"[^\"]+\">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</time>",
        html,
    )


def test_history_of_a_job_is_its_audit_log(operator_client, make_job):
    job = make_job(status=S.FAILED)
    response = operator_client.get(reverse("admin:jobs_job_history", args=[job.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:core_auditevent_changelist") + f"?q={job.pk}"


def test_history_of_an_account_is_its_audit_log(operator_client, account):
    response = operator_client.get(reverse("admin:accounts_account_history", args=[account.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:core_auditevent_changelist") + f"?q={account.pk}"
    log = operator_client.get(response["Location"])
    assert log.status_code == 200


def test_an_audit_event_page_shows_its_data_as_labelled_values(operator_client, make_job):
    from core.models import AuditEvent

    job = make_job(status=S.SCHEDULED)
    services.job_trigger(job_id=job.pk, actor=Actor.system("test"), force=True)
    event = AuditEvent.objects.get(job_id=job.pk, command="trigger")
    page = reverse("admin:core_auditevent_change", args=[event.pk])
    html = operator_client.get(page).content.decode()
    assert '<span class="datum-label">force</span> <span title="yes">yes</span>' in html
    assert "{&quot;force&quot;" not in html and "{&#x27;force" not in html


def test_every_live_region_refreshes_at_the_setting(operator_client, settings, account):
    """JOBS_LIVE_REFRESH_MS reaches every live region of the console (none hard-codes its own
    interval), and its default is within the issue's 2-5 s."""
    assert 2000 <= settings.JOBS_LIVE_REFRESH_MS <= 5000
    settings.JOBS_LIVE_REFRESH_MS = 4321
    job = JobFactory(account=account, status=S.FAILED)
    operation = services.bulk_operation_create(
        command="retry",
        filters={"status": ["failed"]},
        account_id=account.pk,
        actor=Actor.system("test"),
    )
    pages = [
        reverse("admin:index"),
        QUEUE,
        reverse("admin:jobs_job_change", args=[job.pk]),
        reverse("admin:jobs_job_triage"),
        reverse("admin:jobs_job_dashboard"),
        reverse("admin:jobs_job_workers"),
        reverse("admin:jobs_bulkoperation_change", args=[operation.pk]),
        reverse("admin:accounts_account_change", args=[account.pk]),
    ]
    for url in pages:
        html = operator_client.get(url).content.decode()
        regions = re.findall(r"<[^>]*\sdata-live=\"[^\"]*\"[^>]*>", html)
        assert regions, f"{url}: no live region"
        for tag in regions:
            assert 'data-live-interval="4321"' in tag, f"{url}: {tag}"
