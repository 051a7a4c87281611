"""A Python client generated from the app's own OpenAPI schema (openapi-python-client, from
PyPI) drives the main flows against a live server: what the schema says is what the server
does. A schema the generator cannot read, or a request it builds that the server refuses, or an
answer its models cannot parse, fails here.

Generation runs offline: the schema is read from the live server into a file, and the client is
written to a temporary directory and imported from there.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from accounts.apikeys import api_key_create
from core.actors import Actor
from core.models import AuditEvent
from jobs import services
from jobs.models import Job
from jobs.states import JobStatus

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PACKAGE = "jobs_console_client"


@pytest.fixture
def client_package(live_api, tmp_path, monkeypatch):
    """The client generated from the live schema, imported."""
    schema = tmp_path / "schema.json"
    with urllib.request.urlopen(f"{live_api.url}/api/schema/?format=json") as answer:
        schema.write_bytes(answer.read())
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"post_hooks": []}))  # no formatter run on the output
    generator = Path(sys.executable).with_name("openapi-python-client")
    done = subprocess.run(
        [
            str(generator),
            "generate",
            "--path",
            str(schema),
            "--output-path",
            str(tmp_path / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    # A schema part the generator could not read is left out of the client with a warning.
    assert "Warning" not in output and "Unable to" not in output, output
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
        del sys.modules[name]
    return importlib.import_module(PACKAGE)


def _module(package, path: str):
    return importlib.import_module(f"{package.__name__}.{path}")


def _fail(job_id: str) -> None:
    """A worker's run of the job that fails for good (the worker's services, no worker)."""
    run = services.job_claim(job_id=job_id, worker="test-worker")
    assert run is not None
    services.job_fail(
        job_id=job_id,
        attempt=run.number,
        code="provider_timeout",
        detail="IMAP server timed out",
        retryable=False,
    )


def test_generated_client_drives_the_main_flows(live_api, client_package):
    pkg = client_package
    models = _module(pkg, "models")
    api = {
        name: _module(pkg, f"api.{group}.{name}")
        for group, names in {
            "accounts": ["accounts_create", "accounts_get"],
            "tasks": ["tasks_create", "tasks_get"],
            "jobs": [
                "jobs_list",
                "jobs_search",
                "jobs_get",
                "jobs_update",
                "jobs_retry",
                "jobs_resolve",
                "jobs_trigger",
                "jobs_search_delete",
            ],
            "audit": ["audit_events_list"],
        }.items()
        for name in names
    }
    key = api_key_create(account=None, actor=Actor.system("test"))[1]
    client = pkg.AuthenticatedClient(
        base_url=live_api.url, token=key, raise_on_unexpected_status=True
    )

    # An account, with its IMAP settings (the password is write-only).
    account = api["accounts_create"].sync(
        client=client,
        body=models.AccountInputRequest(
            name="Acme",
            email="ops@acme.example",
            imap=models.ImapInputRequest(
                host="imap.acme.example",
                port=993,
                security=models.SecurityEnum.TLS,
                username="ops",
                password='s3cr"et',
                folders=["INBOX", "Archive"],
            ),
        ),
        idempotency_key="create-acme-1",
    )
    assert isinstance(account, models.Account), account
    assert account.imap.password_set is True and account.imap.folders == ["INBOX", "Archive"]
    assert api["accounts_get"].sync(account.id, client=client).name == "Acme"

    # A task that makes three jobs.
    task = api["tasks_create"].sync(
        account.id,
        client=client,
        body=models.TaskInputNoopBatch(
            kind="noop_batch", params=models.TaskInputNoopBatchParams(count=3)
        ),
    )
    assert isinstance(task, models.Task), task
    page = api["jobs_list"].sync(account.id, client=client, task_id=task.id, limit=10)
    assert isinstance(page, models.JobPage), page
    assert {status.value for status in models.JobStatusEnum} == set(JobStatus.values)
    jobs = [job.id for job in page.results]
    assert len(jobs) == 3 and page.next_ is None
    assert all(job.status == models.JobStatusEnum.QUEUED for job in page.results)

    # Two of them fail (as a worker's runs would); a search by the list's filters finds them.
    for job_id in jobs[:2]:
        _fail(job_id)
    found = api["jobs_search"].sync(
        account.id,
        client=client,
        body=models.JobSearchInputRequest(
            status=[models.JobSearchInputRequestStatusType1Item.FAILED],
            last_error_code="provider_timeout",
            task_id=task.id,
        ),
    )
    assert isinstance(found, models.JobPage), found
    assert sorted(job.id for job in found.results) == sorted(jobs[:2])
    assert all("retry" in [c.value for c in job.allowed_commands] for job in found.results)

    # Retry one, resolve the other, trigger the third (queued: sent ahead of the line).
    retried = api["jobs_retry"].sync(
        jobs[0], client=client, body=models.RetryInputRequest(note="provider is back")
    )
    assert retried.status == models.JobStatusEnum.QUEUED, retried
    resolved = api["jobs_resolve"].sync(
        jobs[1],
        client=client,
        body=models.ResolveInputRequest(code="ignored", note="a test mailbox"),
        idempotency_key="resolve-1",
    )
    assert resolved.status == models.JobStatusEnum.RESOLVED, resolved
    assert resolved.resolution.code == "ignored"
    triggered = api["jobs_trigger"].sync(
        jobs[2], client=client, body=models.TriggerInputRequest(force=False)
    )
    assert triggered.status == models.JobStatusEnum.QUEUED, triggered

    # A command the state does not allow is a 409 in the error shape, parsed as such.
    refused = api["jobs_retry"].sync_detailed(
        jobs[1], client=client, body=models.RetryInputRequest()
    )
    assert refused.status_code == 409 and isinstance(refused.parsed, models.Error)
    assert refused.parsed.error.current_status == "resolved"

    # PATCH the mutable fields.
    updated = api["jobs_update"].sync(
        jobs[2],
        client=client,
        body=models.PatchedJobUpdateInputRequest(
            priority=7,
            labels=models.PatchedJobUpdateInputRequestLabels.from_dict({"team": "mail"}),
        ),
    )
    assert updated.priority == 7 and updated.labels.to_dict() == {"team": "mail"}

    # The audit log tells who did what.
    events = api["audit_events_list"].sync(client=client, job_id=jobs[0])
    assert events.results[0].command == "retry"

    # Search-delete: a dry run counts, the real one deletes exactly that count.
    def search_delete(dry_run: bool, **extra):
        return api["jobs_search_delete"].sync(
            account.id,
            client=client,
            body=models.JobSearchDeleteInputRequest(task_id=task.id, dry_run=dry_run, **extra),
            idempotency_key=f"delete-task-{dry_run}",
        )

    counted = search_delete(True)
    assert (counted.matched, counted.deleted, counted.dry_run) == (3, 0, True)
    assert Job.objects.filter(task_id=task.id).count() == 3
    deleted = search_delete(False, expected_count=counted.matched)
    assert (deleted.matched, deleted.deleted, deleted.dry_run) == (3, 3, False)
    assert not Job.objects.filter(task_id=task.id).exists()
    assert AuditEvent.objects.filter(command="search_delete", account_id=account.id).exists()
    gone = api["jobs_get"].sync_detailed(jobs[0], client=client)
    assert gone.status_code == 404 and isinstance(gone.parsed, models.Error)
    assert api["tasks_get"].sync(task.id, client=client).job_counts.to_dict() == {}
