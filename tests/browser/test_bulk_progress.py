"""From the triage page, retry a whole group: the operation starts, the browser lands on its
progress page, and the figures run to the end without a reload while real workers (a qcluster
and the scheduler, paced at 2 jobs/s) do the batches."""

from __future__ import annotations

import pytest

from jobs.models import BulkOperation
from jobs.states import BulkStatus, JobStatus
from tests.browser.test_console import OPERATE, staff
from tests.execution.conftest import open_execution
from tests.factories import AccountFactory, JobFactory

pytestmark = pytest.mark.slow


def test_a_group_retry_from_the_triage_runs_to_the_end_on_its_live_page(
    open_page, django_user_model, settings, monkeypatch, tmp_path
):
    settings.JOBS_BULK_DEFAULT_RATE = 2  # batches of 2, one a second: progress to watch
    staff(django_user_model, "operator", OPERATE)
    account = AccountFactory(name="Support mailbox")
    for _ in range(6):
        JobFactory(
            account=account,
            status=JobStatus.FAILED,
            action="noop",
            last_error_code="provider_timeout",
        )
    with open_execution(monkeypatch, tmp_path, broker="orm") as execution:
        execution.cluster(workers=1)
        execution.scheduler()
        page = open_page("operator")
        page.goto(page.url + "jobs/job/triage/")
        page.click("tr.triage-group[data-action=noop] input.retry-group")
        assert page.locator("#bulk-total").inner_text() == "6"
        page.click("#bulk-form input[type=submit]")
        page.wait_for_url("**/jobs/bulkoperation/**")
        operation = BulkOperation.objects.get()
        assert page.locator("#bulk-matched").inner_text() == "6"
        page.evaluate("window.notReloaded = true")
        page.wait_for_function(
            "document.getElementById('bulk-status').textContent.trim() === 'succeeded'",
            timeout=60_000,
        )
        assert page.evaluate("window.notReloaded") is True
        assert page.locator("#bulk-done").inner_text() == "6"
        assert page.locator("#bulk-remaining").inner_text() == "0"
        assert page.locator("#bulk-progress[data-live-done]").count() == 1
        operation.refresh_from_db()
        assert operation.status == BulkStatus.SUCCEEDED and operation.done == 6
        assert operation.rate == 2.0 and operation.batches == 3
