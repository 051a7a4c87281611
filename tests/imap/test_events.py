"""Provider events produce imap_sync_messages jobs and coalesce into a pending one."""

from __future__ import annotations

from accounts.models import MailboxMessage
from core.actors import Actor
from core.models import AuditEvent
from demo.mailservers import closed_port
from jobs import services
from jobs.execution.worker import run_job
from jobs.models import Job
from jobs.states import JobStatus

PROVIDER = Actor.system("imap-push")


def ingest(account, external_id: str, type_: str = "mailbox.changed", payload=None):
    return services.provider_event_ingest(
        account=account,
        provider="imap",
        type=type_,
        external_id=external_id,
        payload=payload or {},
        actor=PROVIDER,
    )


def test_events_join_the_queued_sync_then_a_new_one_after_it_ran(imap_account, mailbox):
    mailbox.deliver(1, 2)

    first, created = ingest(imap_account, "ev-1")
    assert created and not first.coalesced
    job = first.job
    assert (job.action, job.status, job.payload) == (
        "imap_sync_messages",
        JobStatus.QUEUED,
        {"full": False},
    )
    assert job.provider_event_id == first.pk

    second, _ = ingest(imap_account, "ev-2")
    third, _ = ingest(imap_account, "ev-3", type_="message.created")

    # Three pings, one pending sync: the later events record the job they joined.
    assert second.job_id == third.job_id == job.pk
    assert second.coalesced and third.coalesced
    assert Job.objects.filter(account=imap_account).count() == 1
    joined = AuditEvent.objects.filter(command="ingest_event", job_id=job.pk)
    assert sorted(e.data["coalesced"] for e in joined) == [False, True, True]

    mailbox.deliver(3, 1)
    run_job(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.result["folders"]["INBOX"]["new"] == 3  # the one sync saw all the mail

    # The sync ran: a new event needs a new sync.
    fourth, _ = ingest(imap_account, "ev-4")
    assert not fourth.coalesced
    assert fourth.job_id != job.pk
    assert fourth.job.status == JobStatus.QUEUED
    assert Job.objects.filter(account=imap_account).count() == 2


def test_a_duplicate_event_is_ignored(imap_account):
    event, created = ingest(imap_account, "same-id")
    again, created_again = ingest(imap_account, "same-id")

    assert created and not created_again
    assert again.pk == event.pk
    assert Job.objects.filter(account=imap_account).count() == 1


def test_an_event_joins_a_sync_waiting_for_its_retry(make_imap_account, mailbox):
    account = make_imap_account(port=closed_port(), user=mailbox.user, password=mailbox.password)
    first, _ = ingest(account, "ev-a")
    run_job(first.job_id)
    job = Job.objects.get(pk=first.job_id)
    assert (job.status, job.last_error_code) == (JobStatus.SCHEDULED, "provider_unavailable")

    second, _ = ingest(account, "ev-b")

    assert second.coalesced
    assert second.job_id == job.pk
    assert Job.objects.filter(account=account).count() == 1


def test_events_of_another_account_do_not_join(imap_account, make_imap_account, mailbox):
    other = make_imap_account(port=mailbox.server.port, user="x@example.test", password="x")
    mine, _ = ingest(imap_account, "ev-1")
    theirs, _ = ingest(other, "ev-1")

    assert not theirs.coalesced
    assert theirs.job_id != mine.job_id
    assert not MailboxMessage.objects.exists()
