"""Who may read /metrics, and what it answers otherwise (plain text, never a tenant's data)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from accounts.apikeys import api_key_create
from core.actors import Actor

ACTOR = Actor.system("test")


@pytest.fixture
def operator_key(db):
    return api_key_create(account=None, actor=ACTOR, name="prom")[1]


def names(response) -> set[str]:
    return {f.name for f in text_string_to_metric_families(response.content.decode())}


def test_an_operator_key_reads_the_metrics(client, operator_key):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {operator_key}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert {
        "jobs_queue_depth",
        "jobs_oldest_queued_age_seconds",
        "jobs_runs",
        "jobs_runs_started",
        "jobs_run_errors",
        "jobs_start_latency_seconds",
        "jobs_workers_alive",
        "jobs_clusters_alive",
        "jobs_schedulers_alive",
        "jobs_scheduler_last_heartbeat_timestamp_seconds",
        "jobs_rollup_through_timestamp_seconds",
        "process_cpu_seconds",
    } <= names(response)


def test_no_key_a_bad_key_and_an_account_key_are_refused(client, account):
    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing["WWW-Authenticate"].startswith("Bearer")
    assert missing["Content-Type"].startswith("text/plain")
    bad = client.get("/metrics", HTTP_AUTHORIZATION="Bearer jc_aaaaaaaaaa_nope")
    assert bad.status_code == 401
    account_key = api_key_create(account=account, actor=ACTOR, name="crm")[1]
    refused = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {account_key}")
    assert refused.status_code == 403 and account.pk not in refused.content.decode()
    assert b"jobs_" not in refused.content


def test_an_allowed_address_needs_no_key(client, settings, db):
    settings.JOBS_METRICS_ALLOWED_IPS = ["10.1.2.3"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.4").status_code == 401
    # A key that is sent is checked even from an allowed address.
    bad = client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer nope")
    assert bad.status_code == 401


def test_only_get_and_head(client, operator_key):
    response = client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {operator_key}")
    assert response.status_code == 405 and response["Allow"] == "GET, HEAD"
