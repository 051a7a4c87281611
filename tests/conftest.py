from __future__ import annotations

import os

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

from core.actors import Actor
from tests.factories import AccountFactory, JobFactory, TaskFactory

# In CI every test must run: a missing browser or database binary is a failure there, not a
# skip. On a developer machine without them the test skips and says why.
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(autouse=True, scope="session")
def _static_files_from_the_apps():
    """Pages render without a collectstatic run, as in development (see STORAGES in settings):
    pytest imports the settings with DEBUG off, which would pick the production manifest
    storage, and that names nothing before collectstatic has written its manifest."""
    storages = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    with override_settings(
        STORAGES=storages, WHITENOISE_USE_FINDERS=True, WHITENOISE_AUTOREFRESH=True
    ):
        yield


def require(condition: bool, reason: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


@pytest.fixture
def actor() -> Actor:
    return Actor.system("test")


@pytest.fixture
def account(db):
    return AccountFactory()


@pytest.fixture
def other_account(db):
    return AccountFactory()


@pytest.fixture
def make_job(db, account):
    def make(**kwargs):
        kwargs.setdefault("account", account)
        return JobFactory(**kwargs)

    return make


@pytest.fixture
def make_task(db, account):
    def make(**kwargs):
        kwargs.setdefault("account", account)
        return TaskFactory(**kwargs)

    return make
