"""Bulk commands from the queue view: on a selection and on everything a filter matches, each
through a confirmation page, each reported per outcome; delete by search."""

from __future__ import annotations

from django.contrib.messages import get_messages
from django.urls import reverse

from core.models import AuditEvent
from jobs import services
from jobs.models import BulkOperation, Job, JobAttempt
from jobs.states import JobStatus

S = JobStatus
URL = reverse("admin:jobs_job_changelist")
SEARCH_DELETE = reverse("admin:jobs_job_search_delete")


def status_of(*jobs) -> list[str]:
    return [Job.objects.get(pk=job.pk).status for job in jobs]


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def ran_in_the_background(done) -> BulkOperation:
    """The operation a confirmed "All N matching" started, after its page was the redirect and
    a worker ran it."""
    operation = BulkOperation.objects.get()
    assert done.status_code == 302
    assert done["Location"] == reverse("admin:jobs_bulkoperation_change", args=[operation.pk])
    services.bulk_operation_run(operation.pk)
    operation.refresh_from_db()
    return operation


def run_action(client, action, ids, *, query="", select_across=False, **confirm):
    """Post an action as the changelist's form does, then confirm it as the page's form does."""
    url = URL + (f"?{query}" if query else "")
    data = {
        "action": action,
        "index": 0,
        "select_across": "1" if select_across else "0",
        "_selected_action": ids,
    }
    page = client.post(url, data)
    assert page.status_code == 200, page
    done = client.post(
        url,
        {
            "action": action,
            "select_across": data["select_across"],
            "_selected_action": ids,
            "confirm": "yes",
            **confirm,
        },
    )
    return page, done


def test_retry_selection_reports_per_outcome(operator_client, make_job):
    failed = [make_job(status=S.FAILED) for _ in range(2)]
    running = make_job(status=S.RUNNING)
    untouched = make_job(status=S.FAILED)
    page, done = run_action(
        operator_client, "retry_jobs", [j.pk for j in [*failed, running]], note="provider back"
    )
    html = page.content.decode()
    assert 'id="bulk-total">3<' in html and 'id="bulk-acting">2<' in html
    assert "job-status-running" in html  # listed as skipped
    assert done.status_code == 302
    assert messages_of(done) == ["2 jobs retried, 1 skipped: running."]
    assert status_of(*failed, running, untouched) == ["queued", "queued", "running", "failed"]
    assert AuditEvent.objects.filter(command="retry", reason="provider back").count() == 2


def test_retry_everything_the_filter_matches(operator_client, account, other_account, make_job):
    mine = [make_job(status=S.FAILED) for _ in range(3)]
    succeeded = make_job(status=S.SUCCEEDED)
    theirs = make_job(status=S.FAILED, account=other_account)
    query = f"account={account.pk}&status=failed"
    page, done = run_action(
        operator_client, "retry_jobs", [mine[0].pk], query=query, select_across=True
    )
    html = page.content.decode()
    assert 'id="bulk-total">3<' in html
    assert f"account {account.name} ({account.pk}); status failed" in html
    assert 'id="bulk-as-operation"' in html
    operation = ran_in_the_background(done)
    assert messages_of(done) == ["Started: retry of 3 jobs, in the background."]
    assert (operation.command, operation.account_id, operation.matched) == ("retry", account.pk, 3)
    assert status_of(*mine, succeeded, theirs) == ["queued"] * 3 + ["succeeded", "failed"]


def test_resolve_asks_code_and_note(operator_client, make_job):
    jobs = [make_job(status=S.FAILED), make_job(status=S.SUCCEEDED)]
    ids = [j.pk for j in jobs]
    page = operator_client.post(
        URL, {"action": "resolve_jobs", "index": 0, "_selected_action": ids}
    )
    assert 'name="note"' in page.content.decode() and 'name="code"' in page.content.decode()
    # No note: the page comes back with the error and nothing changes.
    again = operator_client.post(
        URL, {"action": "resolve_jobs", "_selected_action": ids, "confirm": "yes", "code": "fixed"}
    )
    assert again.status_code == 200 and "This field is required" in again.content.decode()
    assert status_of(*jobs) == ["failed", "succeeded"]
    _, done = run_action(operator_client, "resolve_jobs", ids, code="fixed", note="fixed by hand")
    assert messages_of(done) == ["1 job resolved, 1 skipped: succeeded."]
    job = Job.objects.get(pk=jobs[0].pk)
    assert job.status == S.RESOLVED
    assert job.resolution["code"] == "fixed" and job.resolution["note"] == "fixed by hand"
    assert job.resolution["by"] == "user:operator"


def test_resolve_everything_the_filter_matches(operator_client, account, make_job):
    jobs = [make_job(status=S.STALLED) for _ in range(2)]
    kept = make_job(status=S.FAILED)
    _, done = run_action(
        operator_client,
        "resolve_jobs",
        [jobs[0].pk],
        query=f"account={account.pk}&status=stalled",
        select_across=True,
        code="ignored",
        note="mailbox gone",
    )
    operation = ran_in_the_background(done)
    assert operation.done == 2 and operation.inputs == {"code": "ignored"}
    assert status_of(*jobs, kept) == ["resolved", "resolved", "failed"]
    assert Job.objects.get(pk=jobs[0].pk).resolution["note"] == "mailbox gone"


def test_trigger_selection_and_sibling_conflict(operator_client, make_job):
    scheduled = make_job(status=S.SCHEDULED, action="sleep")
    make_job(status=S.RUNNING, action="noop")
    blocked = make_job(status=S.QUEUED, action="noop")
    _, done = run_action(
        operator_client, "trigger_jobs", [scheduled.pk, blocked.pk], note="", force=""
    )
    assert messages_of(done) == [
        "1 job triggered, 1 skipped: another job of the same account and action is running."
    ]
    assert status_of(scheduled) == ["queued"]
    _, forced = run_action(operator_client, "trigger_jobs", [blocked.pk], force="on", note="")
    assert messages_of(forced)[-1] == "1 job triggered."


def test_trigger_everything_the_filter_matches(operator_client, account, make_job):
    jobs = [make_job(status=S.SCHEDULED) for _ in range(3)]
    _, done = run_action(
        operator_client,
        "trigger_jobs",
        [jobs[0].pk],
        query=f"account={account.pk}&status=scheduled",
        select_across=True,
    )
    assert ran_in_the_background(done).done == 3
    assert status_of(*jobs) == ["queued"] * 3


def test_delete_selection_per_row_keeps_running(operator_client, make_job):
    gone = make_job(status=S.FAILED)
    JobAttempt.objects.create(job=gone, number=1, outcome="failed")
    running = make_job(status=S.RUNNING)
    page, done = run_action(operator_client, "delete_jobs", [gone.pk, running.pk])
    assert "Yes, delete 1 job" in page.content.decode()
    assert messages_of(done) == ["1 job deleted, 1 skipped: running."]
    assert not Job.objects.filter(pk=gone.pk).exists()
    assert Job.objects.filter(pk=running.pk).exists()
    assert AuditEvent.objects.filter(command="delete", job_id=gone.pk).exists()


def test_delete_everything_the_filter_matches_goes_to_search_delete(
    operator_client, account, make_job
):
    job = make_job(status=S.FAILED)
    query = f"account={account.pk}&status=failed"
    response = operator_client.post(
        f"{URL}?{query}",
        {"action": "delete_jobs", "index": 0, "select_across": "1", "_selected_action": [job.pk]},
    )
    assert response.status_code == 302
    assert response["Location"] == f"{SEARCH_DELETE}?{query}"
    assert Job.objects.filter(pk=job.pk).exists()


def test_django_delete_selected_is_gone(operator_client, make_job):
    html = operator_client.get(URL).content.decode()
    assert "delete_selected" not in html
    for name in ("retry_jobs", "resolve_jobs", "trigger_jobs", "delete_jobs"):
        assert f'value="{name}"' in html


def test_search_delete_confirmation_dry_run_then_delete(
    operator_client, account, other_account, make_job
):
    failed = [make_job(status=S.FAILED, last_error_code="provider_auth_failed") for _ in range(3)]
    other_code = make_job(status=S.FAILED, last_error_code="provider_timeout")
    theirs = make_job(
        status=S.FAILED, account=other_account, last_error_code="provider_auth_failed"
    )
    query = f"account={account.pk}&status=failed&last_error_code=provider_auth_failed"
    page = operator_client.get(f"{SEARCH_DELETE}?{query}")
    html = page.content.decode()
    assert 'id="matched">3<' in html and 'id="to-delete">3<' in html
    assert "error code provider_auth_failed" in html and account.name in html
    assert Job.objects.filter(pk__in=[j.pk for j in failed]).count() == 3  # a dry run only
    assert 'name="expected_count" value="3"' in html  # the count shown is the count confirmed
    done = operator_client.post(f"{SEARCH_DELETE}?{query}", {"expected_count": "3"})
    assert done.status_code == 302 and done["Location"] == f"{URL}?{query}"
    assert messages_of(done) == ["3 jobs deleted."]
    assert not Job.objects.filter(pk__in=[j.pk for j in failed]).exists()
    assert Job.objects.filter(pk__in=[other_code.pk, theirs.pk]).count() == 2
    audit = AuditEvent.objects.get(command="search_delete")
    assert audit.account_id == account.pk and audit.data["count"] == 3
    assert audit.actor == "user:operator"


def test_search_delete_keeps_running_jobs(operator_client, account, make_job):
    make_job(status=S.FAILED, action="sleep")
    running = make_job(status=S.RUNNING, action="sleep")
    query = f"account={account.pk}&action=sleep"
    html = operator_client.get(f"{SEARCH_DELETE}?{query}").content.decode()
    assert 'id="matched">2<' in html and 'id="skipped-running">1<' in html
    done = operator_client.post(f"{SEARCH_DELETE}?{query}", {"expected_count": "2"})
    assert messages_of(done) == ["1 job deleted, 1 skipped: running."]
    assert status_of(running) == ["running"]


def test_search_delete_matches_what_the_queue_shows(operator_client, account, make_job):
    """ "Delete what I filtered": the queue's rows and the deleted ids are the same set."""
    for status in (S.FAILED, S.STALLED, S.SUCCEEDED, S.QUEUED):
        make_job(status=status, action="sleep")
        make_job(status=status, action="noop", last_error_detail="quota exceeded")
    query = f"account={account.pk}&status=failed,stalled,succeeded&q=quota"
    shown = {j.pk for j in operator_client.get(f"{URL}?{query}").context["cl"].result_list}
    assert len(shown) == 3
    operator_client.post(f"{SEARCH_DELETE}?{query}", {"expected_count": "3"})
    assert AuditEvent.objects.get(command="search_delete").data["job_ids"].__len__() == 3
    assert set(AuditEvent.objects.get(command="search_delete").data["job_ids"]) == shown


def test_search_delete_refusals(operator_client, account, make_job):
    job = make_job(status=S.FAILED)
    cases = {
        "status=failed": "pin the queue to an account",
        f"account={account.pk}": "Add at least one filter besides the account",
        f"account={account.pk}&stalled=1": "Stalled now",
    }
    for query, words in cases.items():
        html = operator_client.get(f"{SEARCH_DELETE}?{query}").content.decode()
        assert words in html, query
        assert "search-delete-form" not in html
        operator_client.post(f"{SEARCH_DELETE}?{query}")
    assert Job.objects.filter(pk=job.pk).exists()
    assert not AuditEvent.objects.filter(command="search_delete").exists()


def test_search_delete_link_only_on_an_account_queue(operator_client, account, make_job):
    make_job(status=S.FAILED)
    assert "Delete by search" not in operator_client.get(URL).content.decode()
    html = operator_client.get(URL, {"account": account.pk, "status": "failed"}).content.decode()
    assert f"{SEARCH_DELETE}?account={account.pk}&amp;status=failed" in html


def test_a_selection_has_no_cap_and_runs_in_the_request(operator_client, make_job):
    jobs = [make_job(status=S.FAILED) for _ in range(3)]
    _, done = run_action(operator_client, "retry_jobs", [j.pk for j in jobs])
    assert messages_of(done) == ["3 jobs retried."]
    assert not BulkOperation.objects.exists()


def test_all_matching_stalled_now_is_a_background_operation(
    operator_client, account, other_account, make_job
):
    """ "All N matching" with "stalled now" no longer runs one job at a time in the request
    (no upper bound): it starts a bulk operation whose fixed set is the jobs stalled when it
    was created, as for any other filter."""
    from datetime import timedelta

    from django.utils import timezone

    from jobs.admin.bulk import filter_words

    old = timezone.now() - timedelta(minutes=10)
    stale = [make_job(status=S.RUNNING, heartbeat_at=old) for _ in range(3)]
    fresh = make_job(status=S.RUNNING, heartbeat_at=timezone.now())
    failed = make_job(status=S.FAILED)
    theirs = make_job(status=S.RUNNING, heartbeat_at=old, account=other_account)
    query = f"account={account.pk}&stalled=1"
    page, done = run_action(
        operator_client, "cancel_jobs", [stale[0].pk], query=query, select_across=True, note="hung"
    )
    html = page.content.decode()
    assert 'id="bulk-total">3<' in html and 'id="bulk-as-operation"' in html
    # Nothing was done in the request: the operation does it.
    assert not Job.objects.filter(cancel_requested_at__isnull=False).exists()
    operation = ran_in_the_background(done)
    assert messages_of(done) == ["Started: cancel of 3 jobs, in the background."]
    assert (operation.command, operation.matched, operation.done) == ("cancel", 3, 3)
    assert operation.filter == {services.STALLED_NOW_KEY: ["1"]}
    assert "stalled now" in filter_words(operation, account)
    requested = set(
        Job.objects.filter(cancel_requested_at__isnull=False).values_list("pk", flat=True)
    )
    assert requested == {job.pk for job in stale}
    assert Job.objects.get(pk=stale[0].pk).cancel_note == "hung"
    assert fresh.pk not in requested and theirs.pk not in requested and failed.pk not in requested


def test_all_matching_stalled_now_with_retry_skips_them_as_running(operator_client, make_job):
    from datetime import timedelta

    from django.utils import timezone

    stale = make_job(status=S.RUNNING, heartbeat_at=timezone.now() - timedelta(minutes=10))
    _, done = run_action(
        operator_client, "retry_jobs", [stale.pk], query="stalled=1", select_across=True
    )
    operation = ran_in_the_background(done)
    assert (operation.matched, operation.done, operation.skipped) == (1, 0, {"running": 1})
    assert operation.account_id is None
    assert status_of(stale) == ["running"]
