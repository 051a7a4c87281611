"""The admin site as a whole: its icon and where "View site" leads."""

from __future__ import annotations

import re

from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse

DASHBOARD = reverse("admin:jobs_job_dashboard")


def test_view_site_leads_to_the_dashboard(operator_client):
    page = operator_client.get(reverse("admin:index")).content.decode()
    assert re.search(rf'<a href="{re.escape(DASHBOARD)}">View site</a>', page)
    assert operator_client.get(DASHBOARD).status_code == 200


def test_every_admin_page_names_the_console_icon(operator_client):
    for page in (
        Client().get(reverse("admin:login")),  # anonymous
        operator_client.get(reverse("admin:index")),
        operator_client.get(reverse("admin:jobs_job_changelist")),
    ):
        assert page.status_code == 200
        icon = re.search(r'<link rel="icon" href="/static/([^"]+)"', page.content.decode())
        assert icon, "no icon link"
        assert finders.find(icon[1]), f"{icon[1]} is not an installed static file"
