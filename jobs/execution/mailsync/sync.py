"""Sync the message envelopes of one account's IMAP folders into MailboxMessage rows."""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

from django.conf import settings

from accounts.crypto import decrypt_secret
from accounts.models import Account
from jobs.execution.actions.registry import JobError
from jobs.execution.mailsync import store
from jobs.execution.mailsync.client import NOT_CONFIGURED, ImapSession
from jobs.execution.mailsync.envelope import Envelope

logger = logging.getLogger("jobs.execution.mailsync")
T = TypeVar("T")
R = TypeVar("R")

DEFAULT_TIMEOUT = 10.0
DEFAULT_BATCH_SIZE = 500

# Crash points for tests and drills: each hook is called as hook(stage, folder, uids) with stage
# "fetched" (a batch came from the server, nothing written yet) or "written" (its rows are inserted
# inside the batch transaction, last_uid not yet advanced). A hook that raises crashes the sync
# right there, as a killed worker or a failing database would.
Hook = Callable[[str, str, list[int]], None]
_hooks: list[Hook] = []


@contextlib.contextmanager
def sync_hook(hook: Hook) -> Iterator[None]:
    """Install a crash-point hook for the duration of the block."""
    _hooks.append(hook)
    try:
        yield
    finally:
        _hooks.remove(hook)


def _run_hooks(stage: str, folder: str, uids: list[int]) -> None:
    for hook in list(_hooks):
        hook(stage, folder, uids)


def sync_account(
    account_id: str,
    *,
    full: bool = False,
    folders: list[str] | None = None,
    ensure_owned: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Fetch the envelopes of messages above each folder's last synced UID and store them.

    Returns counts per folder. Raises JobError with a provider_* code when the server cannot be
    reached, rejects the credentials or answers oddly; rows stored before the failure stay, so
    the next run resumes from there.
    """
    account = Account.objects.filter(pk=account_id).first()
    if account is None:
        raise JobError("account_not_found", f"Account {account_id} does not exist")
    password = _password(account)
    names = list(folders) if folders else account.folders
    timeout = float(getattr(settings, "JOBS_IMAP_TIMEOUT", DEFAULT_TIMEOUT))
    batch_size = int(getattr(settings, "JOBS_IMAP_BATCH_SIZE", DEFAULT_BATCH_SIZE))
    started = time.monotonic()
    result: dict[str, Any] = {"folders": {}, "new_messages": 0}
    session = ImapSession(
        host=account.imap_host,
        port=account.imap_port,
        security=account.imap_security,
        timeout=timeout,
    )
    try:
        with session:
            session.connect()
            session.login(account.imap_username, password)
            del password
            for name in names:
                counts = _sync_folder(
                    session,
                    account_id,
                    name,
                    full=full,
                    batch_size=batch_size,
                    ensure_owned=ensure_owned,
                )
                result["folders"][name] = counts
                result["new_messages"] += counts["new"]
    except Exception as exc:
        # The one exit of errors while the session knew the password: the worker stores their
        # text, and the traceback (chain included) of any that is not a JobError.
        clean = session.redactor.scrub(exc)
        if clean is exc:
            raise
    else:
        result["seconds"] = round(time.monotonic() - started, 3)
        return result
    # Raised outside the except block, so that the original does not become its __context__.
    raise clean


def _password(account: Account) -> str:
    missing = [
        label
        for label, value in (
            ("host", account.imap_host),
            ("username", account.imap_username),
            ("password", account.imap_password_encrypted),
        )
        if not value
    ]
    if missing:
        raise JobError(
            NOT_CONFIGURED,
            f"Account {account.pk} has no IMAP {', '.join(missing)} configured; "
            "set its connection settings, then retry",
        )
    try:
        return decrypt_secret(account.imap_password_encrypted)
    except ValueError:
        raise JobError(
            NOT_CONFIGURED,
            f"The stored IMAP password of account {account.pk} cannot be decrypted with the "
            "configured key (JOBS_CREDENTIALS_KEY changed?); set the password again, then retry",
        ) from None


def _sync_folder(
    session: ImapSession,
    account_id: str,
    name: str,
    *,
    full: bool,
    batch_size: int,
    ensure_owned: Callable[[], None],
) -> dict[str, Any]:
    status = session.examine(name)
    start = store.folder_start(
        account_id=account_id, name=name, uidvalidity=status.uidvalidity, full=full
    )
    if start.reset == "uidvalidity":
        logger.warning(
            "IMAP folder %s of account %s changed UIDVALIDITY to %s: resyncing it",
            name,
            account_id,
            status.uidvalidity,
        )
    new = 0
    last_uid = start.last_uid
    batches = (
        window[i : i + batch_size]
        for window in session.uids_above(start.last_uid, status)
        for i in range(0, len(window), batch_size)
    )

    def fetch(uids: list[int]) -> list[Envelope]:
        return session.fetch_envelopes(uids[0], uids[-1])

    # Closed explicitly: on an error the prefetch thread must be stopped before the session is
    # logged out, not whenever the generator is garbage collected.
    with contextlib.closing(_prefetched(fetch, batches)) as fetched:
        for uids, envelopes in fetched:
            # Stop before writing if the sweeper gave this run away (its new run syncs on) or an
            # operator cancelled it (what is stored so far stays).
            ensure_owned()
            _run_hooks("fetched", name, uids)
            stored = store.store_batch(
                account_id=account_id,
                start=start,
                name=name,
                envelopes=envelopes,
                through_uid=uids[-1],
                before_commit=functools.partial(_run_hooks, "written", name, uids)
                if _hooks
                else None,
            )
            if not stored:
                raise JobError(
                    "sync_conflict",
                    f"IMAP folder {name} of account {account_id} was reset by another sync "
                    "while this one ran",
                    retryable=True,
                )
            new += len(envelopes)
            last_uid = uids[-1]
    total = store.folder_finish(start=start, account_id=account_id, name=name)
    logger.info(
        "IMAP sync of %s folder %s: %d new, %d stored (uidvalidity %s, last uid %s)",
        account_id,
        name,
        new,
        total,
        status.uidvalidity,
        last_uid,
    )
    return {
        "new": new,
        "total": total,
        "exists": status.exists,
        "uidvalidity": status.uidvalidity,
        "last_uid": last_uid,
        "resynced": start.reset or None,
    }


_DONE = object()


def _prefetched(fetch: Callable[[T], R], items: Iterator[T]) -> Generator[tuple[T, R], None, None]:
    """(item, fetch(item)) for each item, fetching the next one in a thread while the caller
    stores the current one: the server works on batch n+1 while the database takes batch n.

    Only the thread touches the IMAP session until the generator is closed, and closing waits for
    the thread (at most one fetch, bounded by the socket timeout), so the caller may then use the
    session again. An error in the thread is raised in the caller, in order.
    """
    results: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(value: object) -> bool:
        while not stop.is_set():
            try:
                results.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set() or not put((item, fetch(item))):
                    return
            put(_DONE)
        except BaseException as exc:  # handed over to the caller, raised there
            put(exc)

    thread = threading.Thread(target=produce, name="imap-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            value = results.get()
            if value is _DONE:
                return
            if isinstance(value, BaseException):
                raise value
            yield value
    finally:
        stop.set()
        thread.join()
