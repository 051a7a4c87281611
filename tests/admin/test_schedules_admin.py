"""Sync schedules in the console: the list, the add and edit pages (through the services, with
errors on their fields), pause, resume and run now from the account page and as actions, and
a read-only operator who sees them all and no button."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from core.actors import Actor
from core.models import AuditEvent
from jobs import services
from jobs.models import Schedule, ScheduleOutcome, Task
from tests.admin.conftest import OPERATOR_PERMS, READ_ONLY_PERMS, make_staff

pytestmark = pytest.mark.django_db

SCHEDULE_PERMS = [
    "jobs.view_schedule",
    "jobs.add_schedule",
    "jobs.change_schedule",
    "jobs.run_schedule",
    "jobs.delete_schedule",
]


@pytest.fixture
def scheduler_client(client, django_user_model):
    client.force_login(make_staff(django_user_model, "planner", [*OPERATOR_PERMS, *SCHEDULE_PERMS]))
    return client


@pytest.fixture
def viewer_client(client, django_user_model):
    client.force_login(
        make_staff(django_user_model, "viewer", [*READ_ONLY_PERMS, "jobs.view_schedule"])
    )
    return client


@pytest.fixture
def schedule(account):
    return services.schedule_create(
        account=account,
        kind="mailbox_sync",
        cadence={"interval_seconds": 300, "next_run_at": timezone.now() + timedelta(hours=1)},
        actor=Actor.system("test"),
    )


def account_page(account):
    return reverse("admin:accounts_account_change", args=[account.pk])


def section(html: str) -> str:
    return html.split('id="account-schedules"')[1].split('id="failing-actions"')[0]


def test_the_account_page_shows_its_schedules_with_buttons(scheduler_client, account, schedule):
    html = section(scheduler_client.get(account_page(account)).content.decode())
    assert "mailbox_sync" in html and "every 5 min" in html
    assert "not run yet" in html
    for name in ("pause", "run_now"):
        assert reverse(f"admin:jobs_schedule_{name}", args=[schedule.pk]) in html
    assert "csrfmiddlewaretoken" in html
    assert "add a schedule" in html


def test_run_now_and_pause_from_the_account_page(scheduler_client, account, schedule):
    back = account_page(account)
    response = scheduler_client.post(
        reverse("admin:jobs_schedule_run_now", args=[schedule.pk]), {"next": back}
    )
    assert response.status_code == 302 and response["Location"] == back
    schedule.refresh_from_db()
    assert schedule.last_outcome == ScheduleOutcome.CREATED
    task = Task.objects.get(pk=schedule.last_task_id)
    html = section(scheduler_client.get(back).content.decode())
    assert task.pk in html and "Task created" in html
    scheduler_client.post(reverse("admin:jobs_schedule_pause", args=[schedule.pk]), {"next": back})
    schedule.refresh_from_db()
    assert schedule.is_paused
    html = section(scheduler_client.get(back).content.decode())
    assert reverse("admin:jobs_schedule_resume", args=[schedule.pk]) in html
    # Another site is no place to be sent back to.
    away = scheduler_client.post(
        reverse("admin:jobs_schedule_resume", args=[schedule.pk]), {"next": "https://evil.test/"}
    )
    assert away["Location"] == reverse("admin:jobs_schedule_change", args=[schedule.pk])
    commands = set(
        AuditEvent.objects.filter(actor="user:planner").values_list("command", flat=True)
    )
    assert {"schedule_run_now", "schedule_pause", "schedule_resume"} <= commands
    assert (
        scheduler_client.get(reverse("admin:jobs_schedule_pause", args=[schedule.pk])).status_code
        == 405
    )


def test_a_read_only_operator_sees_schedules_and_no_button(viewer_client, account, schedule):
    html = viewer_client.get(account_page(account)).content.decode()
    part = section(html)
    assert "mailbox_sync" in part
    assert "<form" not in part and "add a schedule" not in part
    listing = viewer_client.get(reverse("admin:jobs_schedule_changelist")).content.decode()
    assert schedule.pk in listing
    assert 'name="action"' not in listing  # no actions
    for name in ("pause", "resume", "run_now"):
        response = viewer_client.post(reverse(f"admin:jobs_schedule_{name}", args=[schedule.pk]))
        assert response.status_code == 403
    schedule.refresh_from_db()
    assert not schedule.is_paused and not schedule.last_outcome
    page = viewer_client.get(reverse("admin:jobs_schedule_change", args=[schedule.pk]))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()


def test_the_list_shows_next_and_last_run_and_acts_on_a_selection(
    scheduler_client, account, schedule
):
    listing = scheduler_client.get(reverse("admin:jobs_schedule_changelist")).content.decode()
    assert schedule.pk in listing and account.name in listing and "every 5 min" in listing
    response = scheduler_client.post(
        reverse("admin:jobs_schedule_changelist"),
        {"action": "run_selected", "_selected_action": [schedule.pk]},
    )
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert schedule.last_outcome == ScheduleOutcome.CREATED
    scheduler_client.post(
        reverse("admin:jobs_schedule_changelist"),
        {"action": "pause_selected", "_selected_action": [schedule.pk]},
    )
    schedule.refresh_from_db()
    assert schedule.is_paused


def test_add_through_the_service_with_errors_on_their_fields(scheduler_client, other_account):
    add = reverse("admin:jobs_schedule_add")
    assert scheduler_client.get(f"{add}?account={other_account.pk}").status_code == 200
    base = {"account": other_account.pk, "kind": "mailbox_sync", "params": "{}", "time_zone": "UTC"}
    bad = scheduler_client.post(add, {**base, "cron": "0 0 30 2 *"})
    assert bad.status_code == 200
    assert bad.context["adminform"].form.errors["cron"]
    both = scheduler_client.post(add, {**base, "cron": "* * * * *", "interval_seconds": "60"})
    assert both.context["adminform"].form.errors["cron"]
    params = scheduler_client.post(
        add, {**base, "kind": "noop_batch", "params": '{"count": 0}', "interval_seconds": "60"}
    )
    assert params.context["adminform"].form.errors["params"]
    assert not Schedule.objects.exists()
    done = scheduler_client.post(
        add, {**base, "cron": "0 9 * * MON-FRI", "time_zone": "Europe/Riga"}
    )
    assert done.status_code == 302, done.context["adminform"].form.errors if done.context else ""
    created = Schedule.objects.get()
    assert (created.cron, created.time_zone) == ("0 9 * * MON-FRI", "Europe/Riga")
    assert created.next_run_at > timezone.now()
    assert AuditEvent.objects.filter(command="schedule_create", actor="user:planner").exists()


def test_edit_changes_the_cadence_through_the_service(scheduler_client, schedule):
    url = reverse("admin:jobs_schedule_change", args=[schedule.pk])
    page = scheduler_client.get(url).content.decode()
    assert "next run" in page.lower()
    response = scheduler_client.post(
        url,
        {
            "interval_seconds": "",
            "cron": "*/15 * * * *",
            "time_zone": "UTC",
            "next_run_at": "",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    schedule.refresh_from_db()
    assert (schedule.interval_seconds, schedule.cron) == (None, "*/15 * * * *")
    assert schedule.next_run_at.minute % 15 == 0
    [event] = AuditEvent.objects.filter(command="schedule_update", actor="user:planner")
    assert "cron" in event.data["changed"]


def test_delete_goes_through_the_service(scheduler_client, schedule):
    url = reverse("admin:jobs_schedule_delete", args=[schedule.pk])
    response = scheduler_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not Schedule.objects.exists()
    assert AuditEvent.objects.filter(command="schedule_delete", actor="user:planner").exists()


def test_dark_mode_safe_templates():
    """The section uses the admin's CSS variables and the shared styles, no colour of its own."""
    from pathlib import Path

    html = Path("templates/admin/accounts/account/change_form.html").read_text()
    part = html.split('id="account-schedules"')[1].split('id="failing-actions"')[0]
    assert "style=" not in part
    assert not re.search(r"#[0-9a-fA-F]{3,6}\b", part)


def test_the_live_fragment_is_the_section_alone(
    scheduler_client, django_user_model, account, schedule
):
    url = reverse("admin:jobs_schedule_account_live", args=[account.pk])
    page = scheduler_client.get(reverse("admin:accounts_account_change", args=[account.pk]))
    assert f'data-live="{url}"' in page.content.decode()
    response = scheduler_client.get(url, headers={"X-Live-Refresh": "1"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html and "Sync schedules" in html and schedule.pk in html
    # The buttons send the operator back to the account page, not to the fragment.
    back = reverse("admin:accounts_account_change", args=[account.pk])
    assert f'name="next" value="{back}"' in html
    services.schedule_run_now(schedule_id=schedule.pk, actor=Actor.system("test"))
    assert "Task created" in scheduler_client.get(url).content.decode()
    viewer_client = Client()
    viewer_client.force_login(make_staff(django_user_model, "viewer", ["jobs.view_schedule"]))
    viewer = viewer_client.get(url).content.decode()
    assert schedule.pk in viewer and "<form" not in viewer
    missing = reverse("admin:jobs_schedule_account_live", args=["acc_01HZZZZZZZZZZZZZZZZZZZZZZZ"])
    assert scheduler_client.get(missing).status_code == 404
