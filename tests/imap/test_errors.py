"""Every provider error code, produced by a real failing server (or a real absence of one)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from accounts.models import Account
from demo.mailservers import HOST, closed_port
from jobs.models import JobAttempt
from jobs.states import JobStatus
from tests.factories import AccountFactory
from tests.imap.conftest import run_sync


def assert_failed(job, code: str, *, retried: bool) -> JobAttempt:
    """The job carries `code`; a retryable error put it back in `scheduled` for a later attempt,
    any other failed it for an operator. Its attempt records the same."""
    assert job.last_error_code == code, job.last_error_detail
    attempt = JobAttempt.objects.get(job=job, number=1)
    assert attempt.error_code == code
    assert attempt.error_detail == job.last_error_detail
    if retried:
        assert job.status == JobStatus.SCHEDULED
        assert attempt.outcome == "retry_scheduled"
    else:
        assert job.status == JobStatus.FAILED
        assert attempt.outcome == "failed"
    return attempt


def test_wrong_password_is_auth_failed_and_not_retried(make_imap_account, mailbox):
    account = make_imap_account(port=mailbox.server.port, user=mailbox.user, password="wrong")

    job = run_sync(account)

    assert_failed(job, "provider_auth_failed", retried=False)
    assert f"IMAP server 127.0.0.1:{mailbox.server.port} rejected the credentials" in (
        job.last_error_detail
    )
    assert mailbox.user in job.last_error_detail
    assert "AUTHENTICATIONFAILED" in job.last_error_detail  # what the server said


def test_closed_port_is_unavailable_and_retried(make_imap_account, mailbox):
    port = closed_port()
    account = make_imap_account(port=port, user=mailbox.user, password=mailbox.password)

    job = run_sync(account)

    assert_failed(job, "provider_unavailable", retried=True)
    assert job.last_error_detail == f"IMAP connection to 127.0.0.1:{port} was refused"
    assert job.run_at > job.last_error_at  # after a backoff


def test_unknown_host_is_unavailable_and_retried(make_imap_account, mailbox):
    account = make_imap_account(port=993, user=mailbox.user, password=mailbox.password)
    Account.objects.filter(pk=account.pk).update(imap_host="imap.nonexistent.invalid")

    job = run_sync(account)

    assert_failed(job, "provider_unavailable", retried=True)
    assert "IMAP host 'imap.nonexistent.invalid' cannot be resolved" in job.last_error_detail


def test_silent_server_is_a_timeout_and_retried(make_imap_account, mailbox, silent_server):
    account = make_imap_account(
        port=silent_server.port, user=mailbox.user, password=mailbox.password
    )

    started = time.monotonic()
    job = run_sync(account)

    assert time.monotonic() - started < 10  # bounded by JOBS_IMAP_TIMEOUT (1s here)
    assert_failed(job, "provider_timeout", retried=True)
    assert job.last_error_detail == (
        f"IMAP connection to 127.0.0.1:{silent_server.port} timed out after 1s "
        "while waiting for the greeting"
    )


def test_silent_server_times_out_a_tls_handshake_too(make_imap_account, mailbox, silent_server):
    account = make_imap_account(
        port=silent_server.port, user=mailbox.user, password=mailbox.password, security="tls"
    )

    job = run_sync(account)

    assert_failed(job, "provider_timeout", retried=True)


def test_tls_to_a_plain_port_is_a_tls_error(make_imap_account, mailbox):
    account = make_imap_account(
        port=mailbox.server.port, user=mailbox.user, password=mailbox.password, security="tls"
    )

    job = run_sync(account)

    assert_failed(job, "provider_tls_error", retried=False)
    assert job.last_error_detail.startswith(
        f"TLS with IMAP server 127.0.0.1:{mailbox.server.port} failed while waiting for the "
        "greeting: "
    )


def test_starttls_required_but_not_offered_is_a_tls_error(make_imap_account, mailbox):
    account = make_imap_account(
        port=mailbox.server.port,
        user=mailbox.user,
        password=mailbox.password,
        security="starttls",
    )

    job = run_sync(account)

    assert_failed(job, "provider_tls_error", retried=False)
    assert "does not offer STARTTLS" in job.last_error_detail


@pytest.fixture
def garbage_server():
    """Answers every connection with an HTTP error line: not an IMAP server at all."""
    sock = socket.create_server((HOST, 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join(5)
    sock.close()


def test_a_server_that_is_not_imap_is_a_protocol_error(make_imap_account, mailbox, garbage_server):
    account = make_imap_account(port=garbage_server, user=mailbox.user, password=mailbox.password)

    job = run_sync(account)

    assert_failed(job, "provider_protocol_error", retried=False)
    assert f"IMAP server 127.0.0.1:{garbage_server} answered oddly" in job.last_error_detail
    assert "HTTP/1.1 400" in job.last_error_detail


def test_missing_folder_is_named(make_imap_account, mailbox):
    account = make_imap_account(
        port=mailbox.server.port,
        user=mailbox.user,
        password=mailbox.password,
        folders=["INBOX", "No Such Folder"],
    )
    mailbox.deliver(1, 2)

    job = run_sync(account)

    assert_failed(job, "provider_folder_not_found", retried=False)
    assert "cannot open folder 'No Such Folder'" in job.last_error_detail
    # The folders before it were synced and stay synced.
    assert account.messages.filter(folder="INBOX").count() == 2


def test_account_without_imap_settings_is_not_configured(db, imap_settings):
    account = AccountFactory()

    job = run_sync(account)

    assert_failed(job, "provider_not_configured", retried=False)
    assert job.last_error_detail == (
        f"Account {account.pk} has no IMAP host, username, password configured; "
        "set its connection settings, then retry"
    )


def test_undecryptable_password_is_not_configured(make_imap_account, mailbox):
    account = make_imap_account(
        port=mailbox.server.port, user=mailbox.user, password=mailbox.password
    )
    Account.objects.filter(pk=account.pk).update(imap_password_encrypted="gAAAA-not-a-token")

    job = run_sync(account)

    assert_failed(job, "provider_not_configured", retried=False)
    assert "cannot be decrypted" in job.last_error_detail
