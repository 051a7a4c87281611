"""The audit log: read-only, searchable by job id, account, actor and command."""

from __future__ import annotations

from django.urls import reverse

from core.actors import Actor
from core.models import AuditEvent
from jobs import services
from jobs.states import JobStatus

URL = reverse("admin:core_auditevent_changelist")


def shown(client, q) -> set[int]:
    return {event.pk for event in client.get(URL, {"q": q}).context["cl"].result_list}


def test_search_by_job_account_actor_command(operator_client, operator, make_job, other_account):
    job = make_job(status=JobStatus.FAILED)
    other = make_job(status=JobStatus.FAILED, account=other_account)
    services.job_retry(job_id=job.pk, actor=Actor.user(operator))
    services.job_resolve(job_id=other.pk, actor=Actor.system("test"), code="fixed", note="x")
    retry = AuditEvent.objects.get(command="retry")
    resolve = AuditEvent.objects.get(command="resolve")
    assert shown(operator_client, job.pk) == {retry.pk}
    assert shown(operator_client, other_account.pk) == {resolve.pk}
    assert shown(operator_client, "user:operator") == {retry.pk}
    assert shown(operator_client, "operator") == {retry.pk}
    assert shown(operator_client, "resolve") == {resolve.pk}
    html = operator_client.get(URL).content.decode()
    assert 'class="job-status job-status-queued"' in html


def test_audit_log_is_read_only(operator_client, superuser, client, make_job):
    job = make_job(status=JobStatus.FAILED)
    services.job_retry(job_id=job.pk, actor=Actor.system("test"))
    event = AuditEvent.objects.get()
    client.force_login(superuser)
    html = client.get(reverse("admin:core_auditevent_change", args=[event.pk])).content.decode()
    assert 'name="_save"' not in html
    assert client.get(reverse("admin:core_auditevent_add")).status_code == 403
    response = client.post(
        reverse("admin:core_auditevent_change", args=[event.pk]), {"reason": "x"}
    )
    assert response.status_code == 403
    assert AuditEvent.objects.get().reason == ""
