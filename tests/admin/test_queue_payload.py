"""The queue view filters by payload through the shared FilterSet."""

from __future__ import annotations

import json

from django.urls import reverse

from jobs.states import JobStatus as S

URL = reverse("admin:jobs_job_changelist")


def test_the_queue_filters_by_payload_and_says_so(operator_client, make_job):
    inbox = make_job(status=S.FAILED, payload={"folder": "INBOX"})
    make_job(status=S.FAILED, payload={"folder": "Sent"})
    response = operator_client.get(URL, {"payload": json.dumps({"folder": "INBOX"})})
    assert response.status_code == 200
    assert [job.pk for job in response.context["cl"].result_list] == [inbox.pk]


def test_a_bad_payload_filter_is_reported_not_a_crash(operator_client, make_job):
    make_job()
    response = operator_client.get(URL, {"payload": "[1]"}, follow=True)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Filter ignored" in html
    assert "must be a JSON object" in html
