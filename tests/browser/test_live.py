"""Live pages in a real browser (core/static/core/live.js): a queue page shows a job that a real
cluster fails in the background, without a reload and without losing the selection; the Pause
toggle stops the updates (and is remembered); a half-typed note is never replaced."""

from __future__ import annotations

import pytest

from core.actors import Actor
from jobs import services
from jobs.execution.actions.registry import JobSpec
from jobs.models import Job
from jobs.states import JobStatus
from tests.browser.test_console import OPERATE, staff
from tests.execution.conftest import open_execution
from tests.factories import AccountFactory, JobFactory

pytestmark = pytest.mark.slow
S = JobStatus
REFRESH_MS = 400


@pytest.fixture
def fast_live(settings):
    settings.JOBS_LIVE_REFRESH_MS = REFRESH_MS


@pytest.fixture
def operator(django_user_model):
    return staff(django_user_model, "operator", OPERATE)


def counter(page, selector: str, name: str) -> int:
    value = page.locator(selector).get_attribute(f"data-live-{name}")
    return int(value or 0)


def wait_for_counter(page, selector: str, name: str, above: int) -> None:
    """Wait until the region's live counter (refreshes, skips) passed `above`."""
    page.wait_for_function(
        "([selector, name, above]) => "
        "parseInt(document.querySelector(selector).dataset[name] || '0', 10) > above",
        arg=[selector, name, above],
    )


def test_a_job_failing_in_the_background_appears_without_a_reload(
    open_page, operator, fast_live, monkeypatch, tmp_path
):
    account = AccountFactory(name="Support mailbox")
    waiting = JobFactory(account=account, status=S.FAILED, action="sleep")
    page = open_page("operator")
    page.goto(f"{page.url}jobs/job/?account={account.pk}")
    page.evaluate("window.__sameDocument = true")
    # The operator selects a row before anything changes.
    page.check(f"input[name=_selected_action][value={waiting.pk}]")
    assert page.locator(".action-counter").inner_text().startswith("1 of")
    with open_execution(monkeypatch, tmp_path, broker="orm") as execution:
        execution.cluster(workers=1)
        execution.scheduler()
        [job] = services.jobs_create(
            account=account,
            specs=[
                JobSpec(
                    "fail",
                    {"code": "provider_auth_failed", "detail": "LOGIN refused", "retryable": False},
                )
            ],
            actor=Actor.system("test"),
        )
        row = page.locator("#result_list tbody tr", has_text=job.pk)
        # It arrives (queued or already further) and then shows its failure, by itself.
        row.locator(".job-status-failed").wait_for(timeout=60_000)
    assert Job.objects.get(pk=job.pk).status == S.FAILED
    assert "provider_auth_failed" in row.inner_text() and "LOGIN refused" in row.inner_text()
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    # The selection survived the refreshes, and Django's counter and actions still work.
    assert page.is_checked(f"input[name=_selected_action][value={waiting.pk}]")
    assert not page.is_checked(f"input[name=_selected_action][value={job.pk}]")
    assert page.locator(".action-counter").inner_text().startswith("1 of")
    page.check(f"input[name=_selected_action][value={job.pk}]")
    assert page.locator(".action-counter").inner_text().startswith("2 of")
    page.select_option("select[name=action]", "retry_jobs")
    page.click("button[name=index]")
    assert page.locator("#bulk-total").inner_text() == "2"


def test_the_pause_toggle_stops_updates_and_is_remembered(open_page, operator, fast_live):
    account = AccountFactory(name="Paused view")
    job = JobFactory(account=account, status=S.QUEUED, action="sleep")
    page = open_page("operator")
    queue = f"{page.url}jobs/job/?account={account.pk}"
    page.goto(queue)
    rows = "#queue-rows"
    wait_for_counter(page, rows, "liveRefreshes", 0)  # it is live
    toggle = page.locator("#live-toggle")
    assert toggle.get_attribute("aria-pressed") == "false"
    toggle.click()
    assert toggle.get_attribute("aria-pressed") == "true"
    assert "resume" in toggle.inner_text().lower()
    refreshes = counter(page, rows, "refreshes")
    services.job_resolve(job_id=job.pk, actor=Actor.system("test"), code="fixed", note="x")
    # Several refresh intervals pass (the skips count them) without a request or a change.
    skips = counter(page, rows, "skips")
    wait_for_counter(page, rows, "liveSkips", skips + 3)
    assert counter(page, rows, "refreshes") == refreshes
    row = page.locator("#result_list tbody tr", has_text=job.pk)
    assert row.locator(".job-status").inner_text() == "Queued"
    # Paused is remembered on the next page load (and would be on any console page).
    page.reload()
    assert page.locator("#live-toggle").get_attribute("aria-pressed") == "true"
    skips = counter(page, rows, "skips")
    wait_for_counter(page, rows, "liveSkips", skips + 2)
    assert counter(page, rows, "refreshes") == 0
    page.locator("#live-toggle").click()  # resume: refreshed at once
    page.locator("#result_list tbody tr", has_text=job.pk).locator(
        ".job-status-resolved"
    ).wait_for()


def test_a_half_typed_note_is_never_replaced(open_page, operator, fast_live):
    job = JobFactory(account=AccountFactory(), status=S.FAILED, action="sleep")
    page = open_page("operator")
    page.goto(f"{page.url}jobs/job/{job.pk}/change/")
    region = "#job-live"
    wait_for_counter(page, region, "liveRefreshes", 0)
    page.fill("#id_retry_note", "provider is back, retrying")
    page.locator("body").click(position={"x": 5, "y": 5})  # focus leaves; the form is dirty
    services.job_update(job_id=job.pk, actor=Actor.system("test"), changes={"priority": 7})
    skips = counter(page, region, "skips")
    wait_for_counter(page, region, "liveSkips", skips + 3)
    assert page.locator(region).get_attribute("data-live-hold") == "editing"
    assert page.input_value("#id_retry_note") == "provider is back, retrying"
    assert page.locator("#job-changed").count() == 0  # not replaced
    # Once the note is cleared, the region refreshes again and says the job changed.
    page.fill("#id_retry_note", "")
    page.locator("body").click(position={"x": 5, "y": 5})
    page.locator("#job-changed").wait_for()
    # The history region below refreshed meanwhile: the update is in its audit timeline.
    page.locator("#audit-timeline", has_text="update").wait_for()


def test_an_open_traceback_stays_open(open_page, operator, fast_live):
    from jobs.models import JobAttempt

    job = JobFactory(account=AccountFactory(), status=S.FAILED, action="sleep")
    JobAttempt.objects.create(
        job=job, number=1, worker="w", outcome="failed", traceback="Traceback\nTimeoutError"
    )
    page = open_page("operator")
    page.goto(f"{page.url}jobs/job/{job.pk}/change/")
    page.click("details.traceback summary")
    refreshes = counter(page, "#job-history", "refreshes")
    services.job_update(job_id=job.pk, actor=Actor.system("test"), changes={"priority": 3})
    page.locator("#audit-timeline", has_text="update").wait_for()  # replaced since
    assert counter(page, "#job-history", "refreshes") > refreshes
    assert page.locator("details.traceback").evaluate("d => d.open") is True
