"""The bulk operations' pages: the list in words, the progress page and its live fragment
(`?_live=1`, `data-live-done` once ended), Cancel as a POST button for those who may run the
command and for nobody else."""

from __future__ import annotations

import pytest
from django.urls import reverse

from core.actors import Actor
from jobs import services
from jobs.models import BulkOperation
from jobs.states import JobStatus as S
from tests.factories import JobFactory

LIST = reverse("admin:jobs_bulkoperation_changelist")


@pytest.fixture
def operation(account, settings):
    settings.JOBS_BULK_BATCH_SIZE = 2
    settings.JOBS_BULK_DEFAULT_RATE = 0
    for _ in range(3):
        JobFactory(account=account, status=S.FAILED, last_error_code="provider_timeout")
    JobFactory(account=account, status=S.RUNNING, last_error_code="provider_timeout")
    return services.bulk_operation_create(
        command="retry",
        filters={"last_error_code": "provider_timeout"},
        account_id=account.pk,
        actor=Actor.system("test"),
        note="provider is back",
    )


def page(operation: BulkOperation) -> str:
    return reverse("admin:jobs_bulkoperation_change", args=[operation.pk])


def test_the_list_says_who_ran_what_on_which_filter(operator_client, operation, account):
    html = operator_client.get(LIST).content.decode()
    assert operation.pk in html and "system:test" in html
    assert f"account {account.name} ({account.pk}); error code provider_timeout" in html


def test_progress_page_and_its_live_fragment_until_done(operator_client, operation):
    html = operator_client.get(page(operation)).content.decode()
    assert f'data-live="{page(operation)}?_live=1"' in html
    assert 'id="bulk-matched">4<' in html and 'id="bulk-done">0<' in html
    assert 'id="bulk-cancel"' in html
    fragment = operator_client.get(page(operation) + "?_live=1", HTTP_X_LIVE_REFRESH="1")
    text = fragment.content.decode()
    assert "<html" not in text and "data-live-done" not in text
    services.bulk_operation_run(operation.pk)
    text = operator_client.get(page(operation) + "?_live=1").content.decode()
    assert 'id="bulk-done">3<' in text and 'id="bulk-skipped">1<' in text
    assert "running" in text and "data-live-done" in text
    assert 'id="bulk-cancel"' not in text  # nothing left to cancel


def test_cancel_is_a_post_button(operator_client, operation):
    cancel = reverse("admin:jobs_bulkoperation_cancel", args=[operation.pk])
    assert operator_client.get(cancel).status_code == 405
    done = operator_client.post(cancel)
    assert done.status_code == 302 and done["Location"] == page(operation)
    operation.refresh_from_db()
    assert operation.status == "cancelled" and operation.cancelled_by == "user:operator"
    again = operator_client.post(cancel, follow=True)
    assert "Not cancelled" in again.content.decode()


def test_a_read_only_operator_sees_no_buttons_and_cannot_cancel(readonly_client, operation):
    html = readonly_client.get(page(operation)).content.decode()
    assert 'id="bulk-matched">4<' in html
    assert "bulk-cancel" not in html
    cancel = reverse("admin:jobs_bulkoperation_cancel", args=[operation.pk])
    assert readonly_client.post(cancel).status_code == 403
    operation.refresh_from_db()
    assert operation.status == "running"


def test_the_job_page_shows_its_batch_with_a_count_not_the_ids(operator_client, operation):
    services.bulk_operation_run(operation.pk)
    job_id = BulkOperation.objects.get(pk=operation.pk).chunks.get(number=0).job_ids.split(",")[0]
    html = operator_client.get(reverse("admin:jobs_job_change", args=[job_id])).content.decode()
    timeline = html.split('id="audit-timeline"', 1)[1]
    assert "provider is back" in timeline
    # The batch's id list as its length, a labelled value (core.templatetags.console.labelled).
    assert '<span class="datum-label">jobs</span> <span title="2">2</span>' in timeline
    assert "job_ids" not in timeline
