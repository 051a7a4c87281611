"""The job page: fields, formatted JSON, attempts with tracebacks, the audit timeline, command
buttons as POST forms shown only when the state allows, and edits through job_update."""

from __future__ import annotations

from django.contrib.messages import get_messages
from django.urls import reverse

from core.actors import Actor
from core.models import AuditEvent
from jobs import services
from jobs.models import Job, JobAttempt
from jobs.states import JobStatus

S = JobStatus


def page_url(job) -> str:
    return reverse("admin:jobs_job_change", args=[job.pk])


def command_url(job, command) -> str:
    return reverse("admin:jobs_job_command", args=[job.pk, command])


def test_job_page_shows_everything(operator_client, operator, make_job):
    job = make_job(
        status=S.FAILED,
        payload={"folder": "INBOX", "since": 42},
        last_error_detail="IMAP connection timed out after 30 s",
    )
    JobAttempt.objects.create(
        job=job,
        number=1,
        worker="host-1:123",
        outcome="failed",
        duration_ms=1520,
        error_code="provider_timeout",
        error_detail="timed out",
        traceback="Traceback (most recent call last):\n  File x\nTimeoutError",
    )
    services.job_retry(job_id=job.pk, actor=Actor.user(operator))
    services.job_resolve(job_id=job.pk, actor=Actor.system("test"), code="ignored", note="n/a")
    html = operator_client.get(page_url(job)).content.decode()
    assert "{\n  &quot;folder&quot;: &quot;INBOX&quot;," in html  # indented JSON
    assert "IMAP connection timed out after 30 s" in html
    assert "1.52 s" in html and "host-1:123" in html
    assert (
        '<details class="traceback" data-live-key="traceback-1"><summary>Traceback</summary>'
        in html
    )
    assert "TimeoutError" in html
    timeline = html.split('id="audit-timeline"')[1]
    assert (
        "user:operator" in timeline and "<b>retry</b>" in timeline and "<b>resolve</b>" in timeline
    )
    assert timeline.index("<b>resolve</b>") < timeline.index("<b>retry</b>")  # newest first


def test_buttons_follow_the_state_table(operator_client, make_job):
    cases = {
        S.FAILED: {"retry", "resolve", "trigger"},
        S.STALLED: {"retry", "resolve", "trigger"},
        S.SCHEDULED: {"resolve", "trigger"},
        S.SUCCEEDED: {"trigger"},
        S.RESOLVED: {"trigger"},
        S.RUNNING: set(),
    }
    for status, expected in cases.items():
        job = make_job(status=status)
        html = operator_client.get(page_url(job)).content.decode()
        shown = {c for c in ("retry", "resolve", "trigger") if f'id="command-{c}"' in html}
        assert shown == expected, status
        for command in expected:
            assert f'<form method="post" action="{command_url(job, command)}"' in html
        assert "csrfmiddlewaretoken" in html


def test_resolve_from_the_page_with_a_note(operator_client, make_job):
    job = make_job(status=S.FAILED)
    response = operator_client.post(
        command_url(job, "resolve"), {"code": "fixed", "note": "replayed by hand"}
    )
    assert response.status_code == 302 and response["Location"] == page_url(job)
    job.refresh_from_db()
    assert job.status == S.RESOLVED and job.resolution["note"] == "replayed by hand"
    event = AuditEvent.objects.get(job_id=job.pk, command="resolve")
    assert event.actor == "user:operator" and event.reason == "replayed by hand"


def test_resolve_without_note_is_refused(operator_client, make_job):
    job = make_job(status=S.FAILED)
    response = operator_client.post(command_url(job, "resolve"), {"code": "fixed", "note": ""})
    assert "Not resolved: note" in next(str(m) for m in get_messages(response.wsgi_request))
    job.refresh_from_db()
    assert job.status == S.FAILED


def test_command_refused_by_state_says_why(operator_client, make_job):
    job = make_job(status=S.SUCCEEDED)
    response = operator_client.post(command_url(job, "retry"), {"note": ""})
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        f"Not retried: Cannot retry job {job.pk}: it is succeeded."
    ]
    assert Job.objects.get(pk=job.pk).status == S.SUCCEEDED


def test_retry_and_trigger_from_the_page(operator_client, make_job):
    failed, scheduled = make_job(status=S.FAILED), make_job(status=S.SCHEDULED)
    operator_client.post(command_url(failed, "retry"), {"note": "again"})
    operator_client.post(command_url(scheduled, "trigger"), {"force": "on"})
    assert Job.objects.get(pk=failed.pk).status == S.QUEUED
    assert Job.objects.get(pk=scheduled.pk).status == S.QUEUED
    assert AuditEvent.objects.get(job_id=scheduled.pk, command="trigger").data == {"force": True}


def test_commands_are_post_only(operator_client, make_job):
    job = make_job(status=S.FAILED)
    assert operator_client.get(command_url(job, "retry")).status_code == 405
    assert Job.objects.get(pk=job.pk).status == S.FAILED


def test_edit_mutable_fields_through_the_service(operator_client, make_job):
    job = make_job(status=S.FAILED, priority=0, max_attempts=3, payload={"a": 1})
    html = operator_client.get(page_url(job)).content.decode()
    assert 'name="priority"' in html and 'name="payload"' in html
    assert 'name="action"' not in html and 'name="status"' not in html  # immutable: read-only
    response = operator_client.post(
        page_url(job),
        {
            "priority": "7",
            "run_at_0": job.run_at.strftime("%Y-%m-%d"),
            "run_at_1": job.run_at.strftime("%H:%M:%S"),
            "max_attempts": "3",
            "payload": '{"a": 2}',
            "labels": "{}",
            "attempts-TOTAL_FORMS": "0",
            "attempts-INITIAL_FORMS": "0",
            "_continue": "1",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    job.refresh_from_db()
    assert job.priority == 7 and job.payload == {"a": 2}
    event = AuditEvent.objects.get(job_id=job.pk, command="update")
    assert set(event.data["changes"]) == {"priority", "payload"}, event.data


def test_running_job_is_read_only(operator_client, make_job):
    job = make_job(status=S.RUNNING)
    html = operator_client.get(page_url(job)).content.decode()
    assert 'name="priority"' not in html
    assert "The job is running" in html
    assert operator_client.post(reverse("admin:jobs_job_delete", args=[job.pk])).status_code == 403


def test_delete_from_the_page_uses_the_service(operator_client, make_job):
    job = make_job(status=S.FAILED)
    JobAttempt.objects.create(job=job, number=1, outcome="failed")
    url = reverse("admin:jobs_job_delete", args=[job.pk])
    assert operator_client.get(url).status_code == 200
    response = operator_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not Job.objects.filter(pk=job.pk).exists()
    assert AuditEvent.objects.filter(job_id=job.pk, command="delete").exists()


def test_job_page_query_count_is_bounded(operator_client, make_job, django_assert_max_num_queries):
    job = make_job(status=S.FAILED)
    for number in range(1, 30):
        JobAttempt.objects.create(job=job, number=number, outcome="failed", traceback="tb")
    for _ in range(30):
        services.job_update(job_id=job.pk, actor=Actor.system("test"), changes={"priority": 1})
    with django_assert_max_num_queries(15):
        assert operator_client.get(page_url(job)).status_code == 200
