"""The account page's sync schedules in a real browser: Run now and Pause as an operator would
press them, and the section readable in the admin's dark theme (no light colour of its own)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from core.actors import Actor
from jobs import services
from jobs.models import Schedule, ScheduleOutcome
from tests.browser.test_console import OPERATE, staff
from tests.factories import AccountFactory

pytestmark = pytest.mark.slow

SCHEDULES = ["jobs.view_schedule", "jobs.change_schedule", "jobs.run_schedule"]


def luminance(rgb: str) -> float:
    r, g, b = (int(part) for part in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_run_now_and_pause_from_the_account_page_in_the_dark_theme(
    open_page, django_user_model, console, tmp_path
):
    staff(django_user_model, "planner", [*OPERATE, *SCHEDULES])
    account = AccountFactory(name="Scheduled mailbox")
    schedule = services.schedule_create(
        account=account,
        kind="mailbox_sync",
        cadence={"cron": "*/15 * * * *", "next_run_at": timezone.now() + timedelta(hours=1)},
        actor=Actor.system("test"),
    )
    page = open_page("planner")
    page.emulate_media(color_scheme="dark")
    page.goto(console.url + reverse("admin:accounts_account_change", args=[account.pk]))
    section = page.locator("#account-schedules")
    assert "Every 15th minute of every hour" in section.inner_text()  # cronsim, in words
    section.get_by_role("button", name="Run now").click()
    page.wait_for_selector(".messagelist .success")
    assert "run now: task created" in page.locator(".messagelist").inner_text()
    schedule.refresh_from_db()
    assert schedule.last_outcome == ScheduleOutcome.CREATED
    assert schedule.last_task_id in page.locator("#account-schedules").inner_text()
    page.locator("#account-schedules").get_by_role("button", name="Pause").click()
    page.wait_for_selector("#account-schedules >> text=paused")
    assert Schedule.objects.get(pk=schedule.pk).is_paused
    # Dark theme: the section's text is light on the page's dark background.
    cell = page.locator("#account-schedules td").first
    color = cell.evaluate("el => getComputedStyle(el).color")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert luminance(color) > 0.6 > 0.3 > luminance(background), (color, background)
    page.screenshot(path=str(tmp_path / "account-schedules-dark.png"), full_page=True)
    print("screenshot:", tmp_path / "account-schedules-dark.png")
