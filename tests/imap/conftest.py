"""A real IMAP server (pymap, in-memory backend) on a free port for the whole session; each test
gets its own mailbox user on it, so tests never see each other's mail."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass

import pytest

from accounts.services import account_create
from core.actors import Actor
from demo.mailservers import HOST, MailServer, SilentServer, make_message
from jobs import services
from jobs.execution.worker import run_job
from jobs.models import Job

_users = itertools.count(1)


@pytest.fixture(scope="session")
def mail_server():
    with MailServer(HOST, 0) as server:
        yield server


@pytest.fixture(scope="session")
def silent_server():
    with SilentServer(HOST, 0) as server:
        yield server


@dataclass
class Mailbox:
    server: MailServer
    user: str
    password: str

    def deliver(self, first: int, count: int = 1, *, folder: str = "INBOX") -> list[int]:
        return self.server.append_many(
            self.user, [make_message(n) for n in range(first, first + count)], folder=folder
        )


@pytest.fixture
def mailbox(mail_server) -> Mailbox:
    user = f"user{next(_users)}@example.test"
    # Long and distinctive, so a leak anywhere is found by a plain substring search.
    password = f"pw-{secrets.token_hex(12)}-secret"
    mail_server.add_user(user, password)
    return Mailbox(mail_server, user, password)


@pytest.fixture
def imap_settings(settings):
    # A silent server costs one timeout per test: keep it short.
    settings.JOBS_IMAP_TIMEOUT = 1.0
    settings.JOBS_IMAP_BATCH_SIZE = 500
    return settings


@pytest.fixture
def make_imap_account(db, imap_settings):
    def make(*, port: int, user: str, password: str, security: str = "none", folders=None):
        return account_create(
            name=f"IMAP {user}",
            actor=Actor.system("test"),
            email=user,
            imap={
                "host": HOST,
                "port": port,
                "security": security,
                "username": user,
                "password": password,
                "folders": folders or ["INBOX"],
            },
        )

    return make


@pytest.fixture
def imap_account(make_imap_account, mailbox):
    return make_imap_account(port=mailbox.server.port, user=mailbox.user, password=mailbox.password)


def run_sync(account, **payload) -> Job:
    """Create an imap_sync_messages job and run it once through the worker entry point."""
    job = services.job_create(
        account=account,
        action="imap_sync_messages",
        actor=Actor.system("test"),
        payload=payload,
    )
    run_job(job.pk)
    job.refresh_from_db()
    return job
