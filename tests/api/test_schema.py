"""The OpenAPI schema validates without warnings (CI also runs the command) and is served."""

from __future__ import annotations

import io
import os

import pytest
from django.core.management import call_command


def test_schema_validates_without_warnings():
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", os.devnull, stdout=io.StringIO()
    )


@pytest.mark.django_db
def test_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in [
        "/api/accounts/{account_id}/jobs",
        "/api/accounts/{account_id}/jobs/search",
        "/api/accounts/{account_id}/jobs/search-delete",
        "/api/jobs/{job_id}",
        "/api/jobs/{job_id}/retry",
        "/api/jobs/{job_id}/resolve",
        "/api/jobs/{job_id}/trigger",
    ]:
        assert path in paths
    assert set(paths["/api/jobs/{job_id}"]) == {"get", "patch", "delete"}
    assert client.get("/api/docs/").status_code == 200
