"""imap_sync_messages against a real pymap server, run through the worker entry point."""

from __future__ import annotations

import pytest

from accounts.models import MailboxFolder, MailboxMessage
from core.actors import Actor
from demo.mailservers import ODD_MESSAGES, make_message
from jobs import services
from jobs.execution.mailsync import sync_account, sync_hook
from jobs.execution.worker import run_job
from jobs.models import JobAttempt
from jobs.states import JobStatus
from tests.imap.conftest import run_sync

OPERATOR = Actor.system("test-operator")


def stored(account, folder="INBOX"):
    return list(
        MailboxMessage.objects.filter(account=account, folder=folder)
        .order_by("uid")
        .values_list("uid", "message_id")
    )


def test_first_sync_stores_every_envelope(imap_account, mailbox):
    uids = mailbox.deliver(1, 7)
    mailbox.server.append(mailbox.user, make_message(99), flags=("\\Seen", "\\Flagged"))

    job = run_sync(imap_account)

    assert job.status == JobStatus.SUCCEEDED, job.last_error_detail
    inbox = job.result["folders"]["INBOX"]
    assert inbox["new"] == 8
    assert inbox["total"] == 8
    assert inbox["exists"] == 8
    assert inbox["resynced"] is None
    assert job.result["new_messages"] == 8
    rows = stored(imap_account)
    assert [uid for uid, _ in rows] == [*uids, uids[-1] + 1]
    assert rows[0][1] == "<demo-1@example.test>"
    first = MailboxMessage.objects.get(account=imap_account, uid=uids[0])
    assert first.subject == "Demo message 1"
    assert first.from_address == "Alice Example <alice@example.test>"
    assert first.to_addresses == "Demo User <demo@example.test>"
    assert first.date.isoformat() == "2025-01-01T00:01:00+00:00"
    assert first.size > 100
    flagged = MailboxMessage.objects.get(account=imap_account, message_id="<demo-99@example.test>")
    assert sorted(flagged.flags) == ["\\Flagged", "\\Seen"]
    folder = MailboxFolder.objects.get(account=imap_account, name="INBOX")
    assert folder.uidvalidity == mailbox.server.uidvalidity(mailbox.user)
    assert folder.last_uid == uids[-1] + 1
    assert folder.message_count == 8
    assert folder.synced_at is not None


def test_incremental_sync_fetches_only_new_mail(imap_account, mailbox):
    mailbox.deliver(1, 3)
    assert run_sync(imap_account).result["folders"]["INBOX"]["new"] == 3

    nothing = run_sync(imap_account)
    assert nothing.status == JobStatus.SUCCEEDED
    assert nothing.result["folders"]["INBOX"]["new"] == 0

    new_uids = mailbox.deliver(10, 2)
    job = run_sync(imap_account)

    assert job.result["folders"]["INBOX"]["new"] == 2
    assert job.result["folders"]["INBOX"]["total"] == 5
    assert job.result["folders"]["INBOX"]["last_uid"] == new_uids[-1]
    assert [mid for _, mid in stored(imap_account)][-2:] == [
        "<demo-10@example.test>",
        "<demo-11@example.test>",
    ]


def test_batches_cover_every_uid_once(imap_account, mailbox, settings):
    settings.JOBS_IMAP_BATCH_SIZE = 3
    uids = mailbox.deliver(1, 10)
    fetched: list[list[int]] = []

    with sync_hook(lambda stage, folder, batch: stage == "fetched" and fetched.append(batch)):
        job = run_sync(imap_account)

    assert job.status == JobStatus.SUCCEEDED
    assert fetched == [uids[0:3], uids[3:6], uids[6:9], uids[9:10]]
    assert [uid for uid, _ in stored(imap_account)] == uids


def test_uidvalidity_change_resyncs_the_folder(make_imap_account, mailbox):
    server, user = mailbox.server, mailbox.user
    server.create_folder(user, "Archive")
    old_uids = mailbox.deliver(1, 3, folder="Archive")
    account = make_imap_account(
        port=server.port, user=user, password=mailbox.password, folders=["Archive"]
    )
    assert run_sync(account).result["folders"]["Archive"]["total"] == 3
    old_validity = server.uidvalidity(user, "Archive")

    # Deleted and created again, the folder is a new one: UIDVALIDITY changes and UIDs restart,
    # so the new messages reuse UIDs the old ones had (a naive "above last_uid" misses them).
    for _ in range(20):
        server.delete_folder(user, "Archive")
        server.create_folder(user, "Archive")
        if server.uidvalidity(user, "Archive") != old_validity:
            break
    new_uids = mailbox.deliver(50, 2, folder="Archive")
    assert new_uids == old_uids[:2]

    job = run_sync(account)

    archive = job.result["folders"]["Archive"]
    assert job.status == JobStatus.SUCCEEDED
    assert archive["resynced"] == "uidvalidity"
    assert archive["new"] == 2
    assert archive["total"] == 2
    assert archive["uidvalidity"] != old_validity
    assert stored(account, "Archive") == [
        (new_uids[0], "<demo-50@example.test>"),
        (new_uids[1], "<demo-51@example.test>"),
    ]
    assert not MailboxMessage.objects.filter(account=account, uidvalidity=old_validity).exists()
    folder = MailboxFolder.objects.get(account=account, name="Archive")
    assert (folder.uidvalidity, folder.last_uid, folder.message_count) == (
        archive["uidvalidity"],
        new_uids[-1],
        2,
    )


def test_crash_inside_a_batch_then_retry_resumes_without_duplicates(
    imap_account, mailbox, settings
):
    settings.JOBS_IMAP_BATCH_SIZE = 4
    uids = mailbox.deliver(1, 10)

    def crash_in_third_batch(stage, folder, batch):
        # Rows of the third batch are inserted, last_uid not yet moved: the worst moment.
        if stage == "written" and batch[0] == uids[8]:
            raise RuntimeError("simulated crash in the middle of a batch")

    with sync_hook(crash_in_third_batch):
        job = run_sync(imap_account)

    assert job.status == JobStatus.FAILED
    assert job.last_error_code == "internal_error"
    attempt = JobAttempt.objects.get(job=job, number=1)
    assert "simulated crash" in attempt.traceback
    # The two committed batches stayed; the crashed one rolled back with its last_uid move.
    assert [uid for uid, _ in stored(imap_account)] == uids[:8]
    assert MailboxFolder.objects.get(account=imap_account, name="INBOX").last_uid == uids[7]

    services.job_retry(job_id=job.pk, actor=OPERATOR, note="after the crash")
    run_job(job.pk)
    job.refresh_from_db()

    assert job.status == JobStatus.SUCCEEDED
    assert job.attempt_count == 2
    assert job.result["folders"]["INBOX"]["new"] == 2  # only what the crash lost
    assert [uid for uid, _ in stored(imap_account)] == uids


def test_server_dropping_the_connection_mid_sync_is_retried_and_resumes(
    imap_account, mailbox, settings
):
    settings.JOBS_IMAP_BATCH_SIZE = 5
    uids = mailbox.deliver(1, 40)

    def drop_after_second_batch(stage, folder, batch):
        if stage == "fetched" and batch[0] == uids[5]:
            mailbox.server.disconnect_all()

    with sync_hook(drop_after_second_batch):
        job = run_sync(imap_account)

    assert job.status == JobStatus.SCHEDULED  # retryable: back after a backoff
    assert job.last_error_code == "provider_unavailable"
    assert f"IMAP connection to 127.0.0.1:{mailbox.server.port} was lost during UID FETCH" in (
        job.last_error_detail
    )
    # The next batch is fetched while one is stored, so one more batch may have made it.
    kept = [uid for uid, _ in stored(imap_account)]
    assert kept in (uids[:10], uids[:15])

    services.job_trigger(job_id=job.pk, actor=OPERATOR)
    run_job(job.pk)
    job.refresh_from_db()

    assert job.status == JobStatus.SUCCEEDED
    assert job.result["folders"]["INBOX"]["new"] == 40 - len(kept)
    assert [uid for uid, _ in stored(imap_account)] == uids


def test_storing_the_same_envelopes_again_adds_no_rows(imap_account, mailbox):
    uids = mailbox.deliver(1, 6)
    sync_account(imap_account.pk)
    # As if the sync position were lost after the rows were written (a restored backup, a
    # concurrent forced sync): the same envelopes arrive again.
    MailboxFolder.objects.filter(account=imap_account).update(last_uid=0)

    again = sync_account(imap_account.pk)

    assert again["folders"]["INBOX"]["new"] == 6
    assert again["folders"]["INBOX"]["total"] == 6
    assert [uid for uid, _ in stored(imap_account)] == uids


def test_full_resync_from_a_task_starts_from_scratch(imap_account, mailbox):
    mailbox.deliver(1, 4)
    run_sync(imap_account)
    MailboxMessage.objects.filter(account=imap_account).update(subject="stale copy")

    task = services.task_create(
        account=imap_account, kind="mailbox_resync", params={}, actor=OPERATOR
    )
    job = task.jobs.get()
    assert job.payload == {"full": True}
    run_job(job.pk)
    job.refresh_from_db()

    assert job.status == JobStatus.SUCCEEDED
    assert job.result["folders"]["INBOX"]["resynced"] == "full"
    assert job.result["folders"]["INBOX"]["new"] == 4
    assert not MailboxMessage.objects.filter(subject="stale copy").exists()
    assert MailboxMessage.objects.filter(account=imap_account).count() == 4


def test_mailbox_sync_task_syncs_the_folders_it_names(make_imap_account, mailbox):
    mailbox.server.create_folder(mailbox.user, "Projects")
    mailbox.deliver(1, 2)
    mailbox.deliver(20, 3, folder="Projects")
    account = make_imap_account(
        port=mailbox.server.port, user=mailbox.user, password=mailbox.password
    )

    task = services.task_create(
        account=account, kind="mailbox_sync", params={"folders": ["Projects"]}, actor=OPERATOR
    )
    job = task.jobs.get()
    run_job(job.pk)
    job.refresh_from_db()

    assert job.status == JobStatus.SUCCEEDED
    assert list(job.result["folders"]) == ["Projects"]
    assert MailboxMessage.objects.filter(account=account, folder="Projects").count() == 3
    assert not MailboxMessage.objects.filter(account=account, folder="INBOX").exists()


def test_every_configured_folder_is_synced(make_imap_account, mailbox):
    mailbox.server.create_folder(mailbox.user, "Reçus & co")  # non-ASCII: modified UTF-7
    mailbox.deliver(1, 2)
    mailbox.deliver(30, 1, folder="Reçus & co")
    account = make_imap_account(
        port=mailbox.server.port,
        user=mailbox.user,
        password=mailbox.password,
        folders=["INBOX", "Reçus & co"],
    )

    job = run_sync(account)

    assert job.status == JobStatus.SUCCEEDED, job.last_error_detail
    assert {name: f["new"] for name, f in job.result["folders"].items()} == {
        "INBOX": 2,
        "Reçus & co": 1,
    }


def test_odd_encodings_are_stored_without_crashing(imap_account, mailbox):
    uids = mailbox.server.append_many(mailbox.user, ODD_MESSAGES)

    job = run_sync(imap_account)

    assert job.status == JobStatus.SUCCEEDED, job.last_error_detail
    rows = {
        m.message_id: m for m in MailboxMessage.objects.filter(account=imap_account, uid__in=uids)
    }
    assert len(rows) == len(ODD_MESSAGES)
    words = rows["<odd-1@example.test>"]
    assert words.subject == "Café au lait ☕"
    assert words.from_address == "Jürgen Müller <jurgen@example.test>"
    assert words.to_addresses == "François <francois@example.test>, bob@example.test"
    assert words.date.isoformat() == "2025-03-04T09:00:00+00:00"
    assert rows["<odd-2@example.test>"].date is None  # no Date header
    latin1 = rows["<odd-3@example.test>"]
    assert latin1.subject == "Café in raw latin-1 ÿþ bytes"
    assert latin1.from_address == "René Latin1 <rene@example.test>"
    broken = rows["<odd-4@example.test>"]
    assert broken.date is None  # "not a date at all"
    assert broken.subject == "mystery"  # unknown charset: decoded as well as possible
    assert broken.to_addresses == ""
    folded = rows["<odd-5@example.test>"]
    assert "\x00" not in folded.subject
    assert folded.subject.startswith("folded across lines and a")
    assert folded.from_address == "Doe, Jane <jane@example.test>"
    assert folded.date.isoformat() == "2025-03-06T12:00:00+00:00"  # -0000 is UTC


@pytest.mark.parametrize("payload", [{"folders": "INBOX"}, {"folders": [""]}])
def test_a_bad_payload_fails_without_connecting(imap_account, payload):
    job = services.job_create(
        account=imap_account, action="imap_sync_messages", actor=OPERATOR, payload={}
    )
    # Payloads are validated when a task or event creates the job; a PATCH could still store one.
    job.payload = payload
    job.save(update_fields=["payload"])

    run_job(job.pk)
    job.refresh_from_db()

    assert (job.status, job.last_error_code) == (JobStatus.FAILED, "invalid_payload")
