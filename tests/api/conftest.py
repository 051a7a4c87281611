"""API test fixtures: keys of account A (read-write and read-only), of account B, an operator
key, and a client that sends JSON with a Bearer key."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from accounts.apikeys import api_key_create
from core.actors import Actor

NOTHING = object()


@dataclass
class Keys:
    a: str  # account A, read-write
    a_ro: str  # account A, read-only
    b: str  # account B, read-write
    op: str  # operator, read-write
    op_ro: str  # operator, read-only


@pytest.fixture
def keys(account, other_account) -> Keys:
    cli = Actor.system("test")

    def make(**kwargs) -> str:
        return api_key_create(actor=cli, **kwargs)[1]

    return Keys(
        a=make(account=account),
        a_ro=make(account=account, read_only=True),
        b=make(account=other_account),
        op=make(account=None),
        op_ro=make(account=None, read_only=True),
    )


class Api:
    """A thin JSON client: `api.post(path, body, key=...)` returns the Django response."""

    def __init__(self) -> None:
        self.client = Client()

    def call(
        self,
        method: str,
        path: str,
        body: Any = NOTHING,
        *,
        key: str | None = None,
        raw: bytes | str | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ):
        headers = dict(headers or {})
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if raw is not None:
            data = raw
        elif body is NOTHING:
            data = ""
        else:
            data = json.dumps(body)
        return self.client.generic(
            method, path, data=data, content_type=content_type, headers=headers
        )

    def get(self, path: str, **kwargs):
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: Any = NOTHING, **kwargs):
        return self.call("POST", path, body, **kwargs)

    def patch(self, path: str, body: Any = NOTHING, **kwargs):
        return self.call("PATCH", path, body, **kwargs)

    def delete(self, path: str, **kwargs):
        return self.call("DELETE", path, **kwargs)


@pytest.fixture
def api() -> Api:
    return Api()


def error_of(response) -> dict:
    """The error object of a response in the one error shape (asserting the shape)."""
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    return body["error"]


@pytest.fixture
def live_api(live_server, monkeypatch):
    """The live server, its request threads closing their database connections after each
    request (CONN_MAX_AGE 0), so none is left open on the test database when it is dropped."""
    from django.db import connection

    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    return live_server
