"""/healthz: no authentication, one cheap query, the API's error shape when the database is away,
and nothing about tenants."""

from __future__ import annotations

import logging
import socket

import pytest
from django.db import DEFAULT_DB_ALIAS, connection
from django.db.utils import ConnectionHandler
from django.test import Client

from accounts.apikeys import api_key_create
from core import health
from core.actors import Actor
from tests.factories import JobFactory

OK = {"status": "ok", "database": "ok"}


@pytest.fixture
def unreachable_database(monkeypatch, tmp_path):
    """The health check's databases, with the default one where nothing answers: a port no
    server listens on (PostgreSQL), a file in a folder that does not exist (SQLite). The view's
    real driver fails as it would in production; nothing is mocked below the connection."""
    settings_dict = dict(connection.settings_dict)
    if connection.vendor == "postgresql":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        settings_dict.update(HOST="127.0.0.1", PORT=str(port))
        settings_dict["OPTIONS"] = {**settings_dict["OPTIONS"], "connect_timeout": 5}
    else:
        settings_dict["NAME"] = str(tmp_path / "no-such-folder" / "db.sqlite3")
    handler = ConnectionHandler({DEFAULT_DB_ALIAS: settings_dict})
    monkeypatch.setattr(health, "connections", handler)
    yield settings_dict
    handler.close_all()


@pytest.fixture
def operator_key(db) -> str:
    return "Bearer " + api_key_create(account=None, actor=Actor.system("test"))[1]


@pytest.mark.django_db
def test_healthy(client, django_assert_num_queries):
    with django_assert_num_queries(1) as queries:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    assert response.json() == OK
    assert queries.captured_queries[0]["sql"] == "SELECT 1"
    assert client.head("/healthz").status_code == 200


@pytest.mark.django_db
def test_database_unavailable(client, unreachable_database, caplog):
    with caplog.at_level(logging.WARNING, logger="core.health"):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    assert response.json() == {
        "error": {"code": "unavailable", "message": "The database did not answer."}
    }
    # The cause is logged for operators, not told to whoever asks.
    assert "the database did not answer" in caplog.text
    body = response.content.decode()
    for detail in (unreachable_database["NAME"], unreachable_database.get("PORT")):
        assert not detail or detail not in body


@pytest.mark.django_db
def test_needs_no_credentials_and_ignores_them(operator_key):
    # Anonymous, a bad key, a good key and a session all get the same answer: no 401, no 403.
    for headers in ({}, {"authorization": "Bearer jc_nope_nope"}, {"authorization": operator_key}):
        response = Client(headers=headers).get("/healthz")
        assert response.status_code == 200, headers
        assert response.json() == OK


@pytest.mark.django_db
def test_tells_nothing_about_tenants(client):
    job = JobFactory(last_error_detail="IMAP connection timed out")
    body = client.get("/healthz").content.decode()
    assert body == '{"status": "ok", "database": "ok"}'
    for secret in (job.pk, job.account_id, job.account.name, job.account.email):
        assert secret not in body


def test_other_methods_are_refused_in_the_error_shape(client):
    response = client.post("/healthz", {})
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response.json()["error"]["code"] == "method_not_allowed"
