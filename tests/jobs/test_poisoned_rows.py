"""One bad row never stops a round (issue 13, finding 1): a job row corrupted by SQL in every way
the database allows, next to another account's lost run, due job and unclaimed job. One round
of the scheduler still recovers, dispatches and requeues the others; the corrupt job is either
handled as its values allow or quarantined (failed with internal_error, a detail naming the
value, an audit event, a log line naming it); and an operator sees it on the admin queue, its
page and the API, which never answer 500 for it."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from accounts.apikeys import api_key_create
from core.actors import Actor
from core.models import AuditEvent
from jobs import services
from jobs.execution import worker
from jobs.management.commands.jobs_scheduler import Command as SchedulerCommand
from jobs.models import Job, JobAttempt
from jobs.monitoring import triage
from jobs.states import JobStatus
from tests.factories import JobFactory
from tests.poison import (
    DEEP_JSON,
    WRONG_SHAPE_JSON,
    after_year_9999,
    corrupt,
    is_postgres,
    refuse_updates,
    unreadable_timestamps,
)

S = JobStatus
LONG_AGO = timedelta(days=1)
QUARANTINED = "quarantined"


@dataclass(frozen=True)
class Case:
    """A job in `status` (running: a lost run whose worker stopped long ago; queued: waiting
    unclaimed for long; scheduled: due), with `values` written by SQL. `expect` is the status
    after one round (QUARANTINED: failed by the quarantine, naming `blamed`); then, given
    `worker`, a worker is handed its message and must answer that outcome; `postgres`: only
    PostgreSQL can hold the values."""

    name: str
    status: str
    values: dict[str, str | None]
    expect: str
    blamed: str = ""
    worker: str = ""
    postgres: bool = False
    job: dict = field(default_factory=dict)


def _timestamp_cases() -> list[Case]:
    cases = []
    for value in unreadable_timestamps():
        tag = value.split()[0]
        # A lost run: the sweeper reads every column of it but its JSON.
        for column in ("run_at", "created_at", "heartbeat_at", "started_at"):
            cases.append(
                Case(f"running-{column}={tag}", S.RUNNING, {column: value}, QUARANTINED, column)
            )
        # A queued job the requeue takes: it reads enqueued_at. A date after year 9999 is not
        # "waiting longer than the bound", so nothing takes the job: it waits, in view.
        cases.append(
            Case(
                f"queued-enqueued_at={tag}",
                S.QUEUED,
                {"enqueued_at": value},
                S.QUEUED if after_year_9999(value) else QUARANTINED,
                "enqueued_at",
            )
        )
        # A scheduled job: the dispatcher reads only ids, so a due one goes to the broker.
        cases.append(
            Case(
                f"scheduled-run_at={tag}",
                S.SCHEDULED,
                {"run_at": value},
                S.SCHEDULED if after_year_9999(value) else S.QUEUED,
            )
        )
    value = unreadable_timestamps()[0]
    for column in ("updated_at", "last_error_at", "finished_at", "enqueued_at"):
        cases.append(Case(f"running-{column}", S.RUNNING, {column: value}, QUARANTINED, column))
    return cases


def _json_cases() -> list[Case]:
    cases = []
    for value in WRONG_SHAPE_JSON:
        # A payload no handler can be given: the worker quarantines the job it claimed.
        cases.append(
            Case(
                f"payload={value}",
                S.QUEUED,
                {"payload": value},
                QUARANTINED,
                "payload",
                QUARANTINED,
            )
        )
        # Labels, result and resolution of the wrong shape stop no step: handled as usual.
        for column in ("labels", "result", "resolution"):
            cases.append(Case(f"running-{column}={value}", S.RUNNING, {column: value}, S.SCHEDULED))
    cases.append(
        Case(
            "payload=deep",
            S.QUEUED,
            {"payload": DEEP_JSON},
            QUARANTINED,
            "payload",
            QUARANTINED,
            postgres=True,
        )
    )
    for column in ("labels", "result", "resolution"):
        cases.append(
            Case(
                f"running-{column}=deep", S.RUNNING, {column: DEEP_JSON}, S.SCHEDULED, postgres=True
            )
        )
    return cases


def _other_cases() -> list[Case]:
    return [
        # An action no worker knows: failed as unknown_action by the worker, as any such job.
        Case("unknown-action", S.QUEUED, {"action": "no_such_action"}, S.FAILED, worker="failed"),
        # The claim cannot count another attempt (integer out of range): quarantined.
        Case(
            "attempt_count=max",
            S.QUEUED,
            {"attempt_count": "2147483647"},
            QUARANTINED,
            "attempt_count",
            QUARANTINED,
            postgres=True,
        ),
        # More attempts than allowed: a lost run without attempts left stalls.
        Case("attempt_count>max_attempts", S.RUNNING, {"attempt_count": "50"}, S.STALLED),
        # A status no code knows: no step takes the job; it stays in view.
        Case("status=bogus", S.QUEUED, {"status": "bogus"}, "bogus", worker="skipped"),
        Case("empty-worker", S.RUNNING, {"worker": ""}, S.SCHEDULED),
        # NULLs where a running or failed job has values.
        Case("running-nulls", S.RUNNING, {"heartbeat_at": None, "started_at": None}, S.SCHEDULED),
        Case("queued-enqueued_at=null", S.QUEUED, {"enqueued_at": None}, S.QUEUED),
        Case("failed-last_error_at=null", S.FAILED, {"last_error_at": None}, S.FAILED),
        # A paused account's due job waits.
        Case("paused-account", S.SCHEDULED, {}, S.SCHEDULED, job={"paused": True}),
    ]


CASES = _timestamp_cases() + _json_cases() + _other_cases()


@pytest.fixture
def operator_key(db) -> str:
    return api_key_create(account=None, actor=Actor.system("test"))[1]


@pytest.fixture
def admin(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.test", None)
    client.force_login(user)
    return client


def _make(status: str, account, **extra) -> Job:
    """A job in `status` that a round takes: a lost run, an unclaimed or a due job."""
    long_ago = timezone.now() - LONG_AGO
    kwargs: dict = {"account": account, "status": status, "max_attempts": 3}
    if status == S.RUNNING:
        kwargs.update(heartbeat_at=long_ago, started_at=long_ago, attempt_count=1)
    elif status == S.SCHEDULED:
        kwargs.update(run_at=long_ago, in_status__keep_run_at=True)
    job = JobFactory(**kwargs, **extra)
    if status == S.QUEUED:
        Job.objects.filter(pk=job.pk).update(enqueued_at=long_ago)
    if status == S.RUNNING:
        JobAttempt.objects.create(job=job, number=1, worker=job.worker, started_at=long_ago)
    return job


@dataclass
class Others:
    """Another account's work that one round must do whatever the corrupt row holds."""

    lost: Job
    due: Job
    unclaimed: Job

    def check_done(self) -> None:
        lost = Job.objects.get(pk=self.lost.pk)
        assert (lost.status, lost.last_error_code) == (S.SCHEDULED, "worker_lost")
        commands = set(
            AuditEvent.objects.filter(job_id=self.lost.pk).values_list("command", flat=True)
        )
        assert {"stall", "reschedule"} <= commands
        assert Job.objects.get(pk=self.due.pk).status == S.QUEUED
        unclaimed = Job.objects.get(pk=self.unclaimed.pk)
        assert unclaimed.status == S.QUEUED
        assert unclaimed.enqueued_at > timezone.now() - timedelta(minutes=1)  # sent again


@pytest.fixture
def others(db, other_account) -> Others:
    return Others(
        lost=_make(S.RUNNING, other_account),
        due=_make(S.SCHEDULED, other_account),
        unclaimed=_make(S.QUEUED, other_account),
    )


def one_round() -> None:
    """One round of `manage.py jobs_scheduler`: dispatch until no batch is full, sweep lost
    runs, requeue unclaimed jobs (what Command.handle runs, without its loop)."""
    SchedulerCommand.dispatch(threading.Event())
    services.jobs_sweep_lost()
    services.jobs_requeue_unclaimed()


def check_visible(
    job_id: str, account_id: str, status: str, admin, api_get, *, stalled: bool = True
) -> None:
    """An operator sees the job: on the queue (unfiltered, by its status, among the stalled if
    it runs), on its page, and through the API (the job and its account's list)."""
    queue = "/admin/jobs/job/"
    views = [queue, f"{queue}?account={account_id}"]
    if status in S.values:  # the queue refuses to filter by a status it does not know
        views.append(f"{queue}?status={status}")
    if status == S.RUNNING and stalled:
        views.append(f"{queue}?stalled=1")
    for url in views:
        response = admin.get(url)
        assert response.status_code == 200, url
        assert job_id in response.content.decode(), url
    response = admin.get(f"{queue}{job_id}/change/")
    assert response.status_code == 200
    assert job_id in response.content.decode()
    response = api_get(f"/api/jobs/{job_id}")
    assert response.status_code == 200, response.content[:500]
    assert response.json()["id"] == job_id
    response = api_get(f"/api/accounts/{account_id}/jobs")
    assert response.status_code == 200, response.content[:500]
    assert job_id in [job["id"] for job in response.json()["results"]]


@pytest.fixture
def api_get(client, operator_key):
    def get(path: str):
        return client.get(path, headers={"Authorization": f"Bearer {operator_key}"})

    return get


def _check_quarantined(job_id: str, blamed: str, caplog) -> None:
    job = Job.objects.get(pk=job_id)
    assert job.status == S.FAILED
    assert job.last_error_code == "internal_error"
    assert job.last_error_detail.startswith("Quarantined by system:"), job.last_error_detail
    assert blamed in job.last_error_detail, job.last_error_detail
    assert job.finished_at is not None
    # It loads again everywhere: an unreadable timestamp was overwritten (and is kept in the
    # event); JSON, the job's own input, is not.
    [event] = AuditEvent.objects.filter(job_id=job_id, command="quarantine")
    assert event.actor == "system:quarantine"
    assert event.to_status == S.FAILED
    assert blamed in event.data["fields"], event.data
    assert event.data["found_by"] in {"system:sweeper", "system:dispatcher", "system:worker"}
    assert not JobAttempt.objects.filter(job_id=job_id, outcome="running").exists()
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR and job_id in r.getMessage()]
    assert logged, "the log names the quarantined job"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_corrupt_row_stops_no_round(case, account, others, admin, api_get, caplog):
    if case.postgres and not is_postgres():
        pytest.skip("a value only PostgreSQL stores (SQLite's column refuses or holds it)")
    caplog.set_level(logging.WARNING)
    if case.job.get("paused"):
        account.paused_at = timezone.now()
        account.save()
    job = _make(case.status, account)
    if case.values:
        corrupt(job.pk, **case.values)

    one_round()
    if case.worker:
        assert worker.run_job(job.pk) == case.worker

    others.check_done()
    if case.expect == QUARANTINED:
        _check_quarantined(job.pk, case.blamed, caplog)
        status = S.FAILED
    else:
        status = case.expect
        [(actual,)] = Job.objects.filter(pk=job.pk).values_list("status")
        assert actual == status
        assert not AuditEvent.objects.filter(job_id=job.pk, command="quarantine").exists()
        if not is_postgres() and set(case.values.values()) & set(unreadable_timestamps()):
            # SQLite's driver fails reading such a datetime, and only a quarantine repairs it
            # (see core.unreadable): the read side is PostgreSQL's (test_an_operator_sees...).
            return
    check_visible(job.pk, account.pk, status, admin, api_get)


# --- the read side, for a corrupt row no round has touched -------------------------------------


def _read_side_cases() -> list[tuple[str, dict[str, str | None]]]:
    cases = [
        (f"{column}={value.split()[0]}", {column: value})
        for value in unreadable_timestamps()
        for column in ("run_at", "created_at", "updated_at", "finished_at", "last_error_at")
    ]
    cases += [(f"{column}=[]", {column: "[]"}) for column in ("payload", "labels", "resolution")]
    cases += [("status=bogus", {"status": "bogus"})]
    if is_postgres():
        cases += [(f"{c}=deep", {c: DEEP_JSON}) for c in ("payload", "labels", "result")]
    return cases


@pytest.mark.parametrize(
    "values", [values for _, values in _read_side_cases()], ids=[n for n, _ in _read_side_cases()]
)
def test_an_operator_sees_a_corrupt_job_and_can_act_on_it(
    values, account, admin, api_get, client, operator_key, settings
):
    """A finished job nothing will touch again, corrupted: the queue, its page and the API show
    it with the unreadable value as the database spells it, and resolve and delete answer in
    the JSON shape (never 500)."""
    if not is_postgres() and any(v in unreadable_timestamps() for v in values.values()):
        pytest.skip("SQLite's driver fails reading such a datetime; only a round repairs it")
    job = JobFactory(account=account, status=S.FAILED)
    corrupt(job.pk, **values)
    status = values.get("status", S.FAILED)
    check_visible(job.pk, account.pk, status, admin, api_get)

    for url in ("/admin/jobs/job/triage/", "/admin/jobs/job/dashboard/"):
        assert admin.get(url).status_code == 200, url
    # The same triage and /metrics from the scheduler's counts (kept on a large table).
    settings.JOBS_TRIAGE_COUNT_ABOVE = 0
    triage.refresh(force=True)
    counted = admin.get("/admin/jobs/job/triage/")
    assert counted.status_code == 200
    assert ("Counted by the scheduler" in counted.content.decode()) == (status == S.FAILED)
    metrics = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {operator_key}")
    assert metrics.status_code == 200 and b"jobs_queue_depth" in metrics.content
    body = api_get(f"/api/jobs/{job.pk}").json()
    page = admin.get(f"/admin/jobs/job/{job.pk}/change/").content.decode()
    for column, value in values.items():
        if value in unreadable_timestamps():
            # Shown as the database spells it, and marked on the job's page.
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT CAST({column} AS TEXT) FROM jobs_job WHERE id = %s", [job.pk]
                )
                [(stored,)] = cursor.fetchall()
            assert body[column] == stored
            assert f"{column} {stored}" in page
            assert "values the application cannot read" in page
        if value == DEEP_JSON:
            assert body[column].startswith("[[[[")
            assert "values the application cannot read" in page

    headers = {"Authorization": f"Bearer {operator_key}"}
    resolve = client.post(
        f"/api/jobs/{job.pk}/resolve",
        {"code": "ignored", "note": "corrupt row"},
        content_type="application/json",
        headers=headers,
    )
    assert resolve.status_code in {200, 409}, resolve.content[:500]
    assert resolve["Content-Type"].startswith("application/json")
    delete = client.delete(f"/api/jobs/{job.pk}", headers=headers)
    assert delete.status_code in {200, 204}, delete.content[:500]
    assert not Job.objects.filter(pk=job.pk).exists()


@pytest.mark.parametrize("column", ["run_at", "heartbeat_at", "started_at", "created_at"])
@pytest.mark.parametrize("value", unreadable_timestamps())
def test_an_operator_sees_a_corrupt_running_job(
    column, value, account, admin, api_get, client, operator_key
):
    """A lost run no sweep has met yet, corrupted: it is on the queue, among the running and
    the stalled (?stalled=1), and on its page; the API shows it, and resolve and delete refuse
    a running job with a 409 in the JSON shape."""
    if not is_postgres():
        pytest.skip("SQLite's driver fails reading such a datetime; only a round repairs it")
    job = _make(S.RUNNING, account)
    corrupt(job.pk, **{column: value})
    # A heartbeat after year 9999 is not stale: the job is not among the stalled.
    stalled = not (column == "heartbeat_at" and after_year_9999(value))
    check_visible(job.pk, account.pk, S.RUNNING, admin, api_get, stalled=stalled)
    headers = {"Authorization": f"Bearer {operator_key}"}
    resolve = client.post(
        f"/api/jobs/{job.pk}/resolve",
        {"code": "ignored", "note": "corrupt row"},
        content_type="application/json",
        headers=headers,
    )
    delete = client.delete(f"/api/jobs/{job.pk}", headers=headers)
    for response in (resolve, delete):
        assert response.status_code == 409, response.content[:500]
        assert response.json()["error"]["code"]


# --- a row the database refuses to change ------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "found_by"),
    [
        (S.SCHEDULED, "system:dispatcher"),
        (S.RUNNING, "system:sweeper"),
        (S.QUEUED, "system:sweeper"),
    ],
)
def test_a_row_the_database_refuses_to_change_is_quarantined_alone(
    status, found_by, account, others, admin, api_get, caplog
):
    """The batch fails as a whole; its rows are then handled one by one, and only the one that
    fails alone is quarantined: with the database's error, as no value of it is unreadable."""
    caplog.set_level(logging.WARNING)
    job = _make(status, account)
    refuse_updates(job.pk)

    one_round()

    others.check_done()
    job.refresh_from_db()
    assert (job.status, job.last_error_code) == (S.FAILED, "internal_error")
    assert "refused by a constraint" in job.last_error_detail
    assert "no value the application cannot read" in job.last_error_detail
    [event] = AuditEvent.objects.filter(job_id=job.pk, command="quarantine")
    assert (event.from_status, event.data["found_by"]) == (status, found_by)
    assert any("handling its rows one by one" in r.getMessage() for r in caplog.records)
    check_visible(job.pk, account.pk, S.FAILED, admin, api_get)


def test_a_batch_of_good_rows_takes_no_detour(account, others, caplog):
    """Without a bad row each step is one batch, as many statements for six rows as for one:
    the fallback costs nothing until a batch fails."""
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as one:
        assert services.jobs_dispatch_due() == [others.due.pk]
    for _ in range(6):
        _make(S.SCHEDULED, account)
    with CaptureQueriesContext(connection) as six:
        assert len(services.jobs_dispatch_due()) == 6
    assert len(six.captured_queries) == len(one.captured_queries)
    assert not any("one by one" in r.getMessage() for r in caplog.records)


def test_a_poisoned_message_never_reaches_a_handler_twice(account, others):
    """The worker consumes a poisoned message for good: the job leaves `queued`, so a second
    message for it (the requeue, a duplicate) is a no-op."""
    job = _make(S.QUEUED, account)
    corrupt(job.pk, payload="[]")
    assert worker.run_job(job.pk) == "quarantined"
    assert worker.run_job(job.pk) == "skipped"
    assert services.jobs_requeue_unclaimed() == [others.unclaimed.pk]
    assert AuditEvent.objects.filter(job_id=job.pk, command="quarantine").count() == 1


def test_a_success_the_database_cannot_store_quarantines_the_job(account):
    """A handler's result the database refuses (PostgreSQL's jsonb takes no NUL character) is
    not left as a run nobody closes, to be run again by the sweeper."""
    if not is_postgres():
        pytest.skip("SQLite stores a NUL character in JSON")
    job = _make(S.QUEUED, account)
    run = services.job_claim(job_id=job.pk, worker="test-worker")
    with pytest.raises(services.JobQuarantined):
        services.job_succeed(job_id=job.pk, attempt=run.number, result={"text": "a\x00b"})
    job.refresh_from_db()
    assert (job.status, job.last_error_code) == (S.FAILED, "internal_error")
    assert "DataError" in job.last_error_detail


def test_the_failure_of_a_corrupt_run_is_recorded_as_its_quarantine(account):
    """A worker closing a failed run whose row holds an unreadable timestamp quarantines it,
    keeping the run's own error in the detail."""
    job = _make(S.QUEUED, account)
    run = services.job_claim(job_id=job.pk, worker="test-worker")
    corrupt(job.pk, created_at=unreadable_timestamps()[0])
    with pytest.raises(services.JobQuarantined):
        services.job_fail(
            job_id=job.pk,
            attempt=run.number,
            code="provider_timeout",
            detail="slow",
            retryable=True,
        )
    job.refresh_from_db()
    assert (job.status, job.last_error_code) == (S.FAILED, "internal_error")
    assert "provider_timeout: slow" in job.last_error_detail
    assert "created_at" in job.last_error_detail
    assert job.created_at is not None  # overwritten: it loads again


def test_quarantine_leaves_a_job_that_moved_on(account):
    job = _make(S.QUEUED, account)
    assert not services.job_quarantine(
        job_id=job.pk,
        status=S.RUNNING,
        found_by=Actor.system("sweeper"),
        step="sweep_lost",
    )
    assert Job.objects.get(pk=job.pk).status == S.QUEUED
    assert not AuditEvent.objects.filter(job_id=job.pk, command="quarantine").exists()


def test_an_error_not_in_the_rows_data_skips_it_without_failing_it(account, others, monkeypatch):
    """A bug (here: the audit refusing every dispatch of one job) is not turned into a failed
    job: that row waits for the next round, the others go on."""
    job = _make(S.SCHEDULED, account)
    real = services.maintenance.audit_fields

    def audit_fields(**kwargs):
        if kwargs.get("job") is not None and kwargs["job"].pk == job.pk:
            raise RuntimeError("a bug")
        return real(**kwargs)

    monkeypatch.setattr(services.maintenance, "audit_fields", audit_fields)
    assert services.jobs_dispatch_due() == [others.due.pk]
    assert Job.objects.get(pk=job.pk).status == S.SCHEDULED
    assert not AuditEvent.objects.filter(job_id=job.pk, command="quarantine").exists()


# --- every command on a corrupt job ------------------------------------------------------------


def _command_requests(job_id: str) -> list[tuple[str, str, dict | None]]:
    later = (timezone.now() + timedelta(hours=1)).isoformat()
    return [
        ("post", f"/api/jobs/{job_id}/retry", {"note": "provider is back"}),
        ("post", f"/api/jobs/{job_id}/trigger", {"force": True}),
        ("post", f"/api/jobs/{job_id}/resolve", {"code": "ignored", "note": "corrupt row"}),
        ("patch", f"/api/jobs/{job_id}", {"run_at": later}),
        ("patch", f"/api/jobs/{job_id}", {"priority": 5}),
        ("patch", f"/api/jobs/{job_id}", {"max_attempts": 7}),
        ("patch", f"/api/jobs/{job_id}", {"payload": {"folder": "INBOX"}}),
        ("patch", f"/api/jobs/{job_id}", {"labels": {"team": "mail"}}),
        ("get", f"/api/jobs/{job_id}", None),
        ("delete", f"/api/jobs/{job_id}", None),
    ]


def _corruptions() -> list[tuple[str, str, dict[str, str | None]]]:
    cases = [
        ("failed-attempt_count=max", S.FAILED, {"attempt_count": "2147483647"}),
        ("queued-attempt_count=max", S.QUEUED, {"attempt_count": "2147483647"}),
        ("failed-payload=list", S.FAILED, {"payload": "[]"}),
        ("failed-labels=null", S.FAILED, {"labels": "null"}),
    ]
    for value in unreadable_timestamps():
        for status in (S.QUEUED, S.FAILED, S.SCHEDULED):
            cases.append((f"{status}-run_at={value}", status, {"run_at": value}))
        cases.append((f"failed-created_at={value}", S.FAILED, {"created_at": value}))
    return cases


@pytest.mark.parametrize(
    ("status", "values"),
    [(status, values) for _, status, values in _corruptions()],
    ids=[name for name, _, _ in _corruptions()],
)
def test_every_command_on_a_corrupt_job_answers_json_and_never_5xx(
    status, values, account, client, operator_key
):
    """An operator can act on a corrupt job, or is told why not: every command through the API
    answers a 2xx or a 4xx in the JSON error shape, never a 5xx."""
    if not is_postgres() and {"run_at", "created_at"} & set(values):
        pytest.skip("SQLite's driver fails reading such a datetime; only a round repairs it")
    headers = {"Authorization": f"Bearer {operator_key}"}
    for method, path, body in _command_requests("placeholder"):
        job = _make(status, account)
        corrupt(job.pk, **values)
        path = path.replace("placeholder", job.pk)
        kwargs = {"headers": headers}
        if body is not None:
            kwargs.update(data=body, content_type="application/json")
        response = getattr(client, method)(path, **kwargs)
        assert response.status_code < 500, (method, path, response.content[:500])
        if response.status_code != 204:
            assert response["Content-Type"].startswith("application/json"), (method, path)
        if response.status_code >= 400:
            assert response.json()["error"]["code"], (method, path)
