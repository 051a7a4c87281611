"""The workers page in a real browser: a cluster appears alive by itself, and once it is killed
(`kill -9` of its whole process tree, so nobody says goodbye) it is shown as gone within the
grace, without a reload (core/static/core/live.js over the page's live region)."""

from __future__ import annotations

import pytest

from jobs.models import ProcessHeartbeat, ProcessKind
from tests.browser.test_console import OPERATE, staff
from tests.execution.conftest import open_execution

pytestmark = pytest.mark.slow
BEATS = {"JOBS_PROCESS_HEARTBEAT_SECONDS": "0.3", "JOBS_PROCESS_GRACE_SECONDS": "2"}


def test_a_killed_cluster_is_shown_as_gone_within_the_grace(
    open_page, django_user_model, settings, monkeypatch, tmp_path
):
    settings.JOBS_LIVE_REFRESH_MS = 400
    settings.JOBS_PROCESS_GRACE_SECONDS = 2  # the page judges beats as the processes send them
    staff(django_user_model, "operator", OPERATE)
    page = open_page("operator")
    page.goto(f"{page.url}jobs/job/workers/")
    page.evaluate("window.__sameDocument = true")
    region = page.locator("#workers-live")
    with open_execution(monkeypatch, tmp_path, broker="orm") as execution:
        cluster = execution.start("qcluster", "qcluster", JOBS_WORKERS="2", **BEATS)
        # The cluster and its two workers arrive by themselves.
        page.wait_for_function(
            "document.querySelectorAll('#workers-live [data-state=alive]').length >= 3",
            timeout=60_000,
        )
        assert ProcessHeartbeat.objects.filter(kind=ProcessKind.WORKER).count() == 2
        cluster.kill()
        # Gone: the cluster and both workers, once their last beat is older than the grace.
        page.wait_for_function(
            "document.querySelectorAll('#workers-live [data-state=gone]').length === 3",
            timeout=30_000,
        )
    assert region.locator("[data-state=alive]").count() == 0
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
