"""Cancel in the console: the job page's Cancel button (a POST form, for operators with the
cancel permission, on running jobs only), the pending request shown on the page, and the
queue's admin action on a selection."""

from __future__ import annotations

from django.urls import reverse

from core.models import AuditEvent
from jobs.models import Job
from jobs.states import JobStatus
from tests.admin.conftest import OPERATOR_PERMS, READ_ONLY_PERMS, make_staff
from tests.admin.test_actions import messages_of, run_action

S = JobStatus
QUEUE = reverse("admin:jobs_job_changelist")


def page(job) -> str:
    return reverse("admin:jobs_job_change", args=[job.pk])


def command(job) -> str:
    return reverse("admin:jobs_job_command", args=[job.pk, "cancel"])


def test_cancel_button_on_a_running_job_records_the_request(operator_client, make_job):
    job = make_job(status=S.RUNNING)
    html = operator_client.get(page(job)).content.decode()
    assert f'<form method="post" action="{command(job)}" id="command-cancel">' in html
    assert "csrfmiddlewaretoken" in html
    assert "The job is running: other commands wait" in html

    done = operator_client.post(command(job), {"note": "provider is down"})

    assert done.status_code == 302 and done["Location"] == page(job)
    [message] = messages_of(done)
    assert f"Job {job.pk} asked to stop" in message
    job.refresh_from_db()
    assert (job.status, job.cancel_note, job.cancel_requested_by) == (
        S.RUNNING,
        "provider is down",
        "user:operator",
    )
    assert AuditEvent.objects.filter(job_id=job.pk, command="cancel").count() == 1
    # The page says the request is pending, and offers no second one.
    html = operator_client.get(page(job)).content.decode()
    assert 'id="cancel-pending"' in html and "user:operator" in html
    assert 'id="command-cancel"' not in html


def test_no_cancel_button_unless_running(operator_client, make_job):
    for status in set(S) - {S.RUNNING}:
        html = operator_client.get(page(make_job(status=status))).content.decode()
        assert 'id="command-cancel"' not in html, status


def test_a_forged_cancel_of_a_finished_job_says_why(operator_client, make_job):
    job = make_job(status=S.SUCCEEDED)
    done = operator_client.post(command(job), {"note": "late"})
    assert done.status_code == 302
    [message] = messages_of(done)
    assert message.startswith("Not asked to stop:") and "succeeded" in message
    assert Job.objects.get(pk=job.pk).cancel_requested_at is None


def test_read_only_and_other_operators_see_no_button_and_are_refused(
    client, django_user_model, make_job
):
    job = make_job(status=S.RUNNING)
    viewer = make_staff(django_user_model, "viewer", READ_ONLY_PERMS)
    without = make_staff(
        django_user_model, "retrier", [p for p in OPERATOR_PERMS if p != "jobs.cancel_job"]
    )
    for user in (viewer, without):
        client.force_login(user)
        html = client.get(page(job)).content.decode()
        assert 'id="command-cancel"' not in html, user
        assert "The job is running: commands wait" in html
        assert 'value="cancel_jobs"' not in client.get(QUEUE).content.decode()
        assert client.post(command(job), {"note": "x"}).status_code == 403
        forged = client.post(
            QUEUE, {"action": "cancel_jobs", "index": 0, "_selected_action": [job.pk]}
        )
        assert forged.status_code == 403
    assert Job.objects.get(pk=job.pk).cancel_requested_at is None


def test_cancel_the_selected_jobs(operator_client, make_job):
    running = [make_job(status=S.RUNNING) for _ in range(2)]
    failed = make_job(status=S.FAILED)
    assert 'value="cancel_jobs"' in operator_client.get(QUEUE).content.decode()

    page_, done = run_action(
        operator_client, "cancel_jobs", [j.pk for j in [*running, failed]], note="outage"
    )

    html = page_.content.decode()
    assert 'id="bulk-total">3<' in html and 'id="bulk-acting">2<' in html
    assert done.status_code == 302
    assert messages_of(done) == ["2 jobs asked to stop, 1 skipped: failed."]
    for job in running:
        job.refresh_from_db()
        assert (job.status, job.cancel_note) == (S.RUNNING, "outage")
    assert Job.objects.get(pk=failed.pk).cancel_requested_at is None
    assert AuditEvent.objects.filter(command="cancel", reason="outage").count() == 2
