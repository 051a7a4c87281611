"""The permission matrix: a read-only operator sees queues and job pages but no buttons and no
actions, and a forged POST is a 403; an operator acts per command permission; a superuser can
do everything."""

from __future__ import annotations

import pytest
from django.urls import reverse

from jobs.models import Job
from jobs.states import JobStatus
from tests.admin.conftest import READ_ONLY_PERMS, make_staff

S = JobStatus
QUEUE = reverse("admin:jobs_job_changelist")


def page(job):
    return reverse("admin:jobs_job_change", args=[job.pk])


def command(job, name):
    return reverse("admin:jobs_job_command", args=[job.pk, name])


@pytest.fixture
def superuser_client(client, superuser):
    client.force_login(superuser)
    return client


def test_read_only_operator_sees_but_cannot_act(readonly_client, make_job, account):
    job = make_job(status=S.FAILED)
    queue = readonly_client.get(QUEUE, {"account": account.pk})
    html = queue.content.decode()
    assert queue.status_code == 200 and job.pk in html
    assert 'name="action"' not in html and "Delete by search" not in html
    job_page = readonly_client.get(page(job)).content.decode()
    assert job.pk in job_page and "IMAP connection timed out" in job_page
    assert 'id="command-' not in job_page and "No command is available to you" in job_page
    assert 'name="priority"' not in job_page  # read-only fields
    for url in (reverse("admin:jobs_job_triage"), reverse("admin:jobs_job_dashboard")):
        body = readonly_client.get(url)
        assert body.status_code == 200
        assert "Retry group" not in body.content.decode()


def test_read_only_forged_posts_are_403(readonly_client, make_job, account):
    job = make_job(status=S.FAILED)
    for name in ("retry", "resolve", "trigger"):
        response = readonly_client.post(command(job, name), {"code": "fixed", "note": "x"})
        assert response.status_code == 403, name
    for action in ("retry_jobs", "resolve_jobs", "trigger_jobs", "delete_jobs", "delete_selected"):
        response = readonly_client.post(
            QUEUE, {"action": action, "index": 0, "_selected_action": [job.pk]}
        )
        assert response.status_code == 403, action
    assert readonly_client.post(page(job), {"priority": "5"}).status_code == 403
    assert readonly_client.post(reverse("admin:jobs_job_delete", args=[job.pk])).status_code == 403
    search_delete = reverse("admin:jobs_job_search_delete") + f"?account={account.pk}&status=failed"
    assert readonly_client.get(search_delete).status_code == 403
    assert readonly_client.post(search_delete).status_code == 403
    assert (
        readonly_client.post(reverse("admin:accounts_account_pause", args=[account.pk])).status_code
        == 403
    )
    assert Job.objects.get(pk=job.pk).status == S.FAILED


def test_operator_permissions_are_per_command(client, django_user_model, make_job):
    user = make_staff(django_user_model, "retrier", [*READ_ONLY_PERMS, "jobs.retry_job"])
    client.force_login(user)
    job = make_job(status=S.FAILED)
    html = client.get(page(job)).content.decode()
    assert 'id="command-retry"' in html
    assert 'id="command-resolve"' not in html and 'id="command-trigger"' not in html
    queue = client.get(QUEUE).content.decode()
    assert 'value="retry_jobs"' in queue and 'value="resolve_jobs"' not in queue
    assert client.post(command(job, "resolve"), {"code": "fixed", "note": "x"}).status_code == 403
    assert client.post(command(job, "retry"), {"note": ""}).status_code == 302
    assert Job.objects.get(pk=job.pk).status == S.QUEUED


@pytest.mark.parametrize("who", ["operator_client", "superuser_client"])
def test_operator_and_superuser_can_act(request, who, make_job, account):
    client = request.getfixturevalue(who)
    job = make_job(status=S.FAILED)
    html = client.get(page(job)).content.decode()
    for name in ("retry", "resolve", "trigger"):
        assert f'id="command-{name}"' in html
    queue = client.get(QUEUE, {"account": account.pk}).content.decode()
    for action in ("retry_jobs", "resolve_jobs", "trigger_jobs", "delete_jobs"):
        assert f'value="{action}"' in queue
    assert "Delete by search" in queue
    assert client.post(command(job, "resolve"), {"code": "fixed", "note": "x"}).status_code == 302
    assert Job.objects.get(pk=job.pk).status == S.RESOLVED


def test_anonymous_is_sent_to_login(client, make_job):
    job = make_job(status=S.FAILED)
    response = client.post(command(job, "retry"))
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert Job.objects.get(pk=job.pk).status == S.FAILED
