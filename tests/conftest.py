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


# Task status is kept by counters that every transition of a task's job moves in its own
# statement (ARCHITECTURE: "A task's status: counters, not a scan"). A path that writes a job's
# status and forgets the task leaves them wrong, silently: so after every test that touched the
# database, the counters and the stored status of every task must equal a count of its jobs.
# Tests that corrupt rows by SQL on purpose opt out with @pytest.mark.counters_unchecked.
def _task_counters_drift() -> list[tuple]:
    from jobs.models import Job, Task
    from jobs.states import TASK_COUNTER, JobStatus, derive_task_status

    task, job = Task._meta.db_table, Job._meta.db_table
    counted = ", ".join(
        f"(SELECT COUNT(*) FROM {job} j WHERE j.task_id = t.id AND j.status = '{status.value}')"
        for status in JobStatus
    )
    stored = ", ".join(f"t.{TASK_COUNTER[status]}" for status in JobStatus)
    # One statement: one snapshot, even while a cluster of the test is still committing.
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT t.id, t.status, {stored}, {counted} FROM {task} t")
        rows = cursor.fetchall()
    n = len(JobStatus)
    drift = []
    for row in rows:
        stored_counts, real_counts = row[2 : 2 + n], row[2 + n :]
        status = derive_task_status(dict(zip(JobStatus, real_counts, strict=True)))
        if tuple(stored_counts) != tuple(real_counts) or row[1] != status:
            drift.append((row[0], row[1], status.value, stored_counts, real_counts))
    return drift


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield
    uses_db = item.get_closest_marker("django_db") or {"db", "transactional_db"} & set(
        item.fixturenames
    )
    if not uses_db or item.get_closest_marker("counters_unchecked"):
        return
    drift = _task_counters_drift()
    assert not drift, (
        "task counters or status differ from a count of the jobs "
        "(task, stored status, derived status, stored counts, real counts): " + repr(drift[:5])
    )
