"""A thin imaplib session: timeouts on every socket operation, and every failure classified.

Whatever goes wrong surfaces as a JobError whose code an operator can act on and whose detail
names the server and the step ("IMAP connection to 127.0.0.1:1993 timed out after 10s while
waiting for the greeting"). The password is never part of a detail: it is only ever sent, and any
server text quoted back goes through the session's Redactor (mailsync.redact), which removes it
in every encoding and refuses to quote an answer that repeats the login command.

The password is sent as an IMAP quoted string in LOGIN when it is printable ASCII; otherwise
(non-ASCII, control characters, line breaks) with AUTHENTICATE PLAIN (UTF-8, RFC 4616) when the
server offers it, else as a LOGIN literal. So it reaches the server exactly, and a line break in
it can never end the command and start another.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import re
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from jobs.execution.actions.registry import JobError, advise
from jobs.execution.mailsync.envelope import FETCH_ITEMS, Envelope, parse_fetch_response
from jobs.execution.mailsync.redact import Redactor

# Codes (see the README): the first two are retried by the action's policy.
TIMEOUT = "provider_timeout"
UNAVAILABLE = "provider_unavailable"
AUTH_FAILED = "provider_auth_failed"
TLS_ERROR = "provider_tls_error"
PROTOCOL_ERROR = "provider_protocol_error"
FOLDER_NOT_FOUND = "provider_folder_not_found"
NOT_CONFIGURED = "provider_not_configured"

RETRYABLE = frozenset({TIMEOUT, UNAVAILABLE})

# What an operator fixes first when a code is not (or no longer) retried: the job page says it.
advise(
    AUTH_FAILED,
    "the server rejected the password: fix the account's credentials, then retry",
    where="account",
)
advise(
    TLS_ERROR,
    "the TLS handshake failed: check the account's host, port and security setting (tls, "
    "starttls or none), then retry",
    where="account",
)
advise(
    FOLDER_NOT_FOUND,
    "a folder the account lists does not exist on the server: fix the account's folders, "
    "then retry",
    where="account",
)
advise(
    NOT_CONFIGURED,
    "the account has no IMAP connection settings: fill them in, then retry",
    where="account",
)
advise(
    PROTOCOL_ERROR,
    "the server answered something that is not IMAP: check the account's host and port (is "
    "it an IMAP server?), then retry",
    where="account",
)
advise(
    TIMEOUT,
    "the server did not answer in time, on every attempt: check that it is reachable, then retry",
    where="account",
)
advise(
    UNAVAILABLE,
    "the server refused or dropped the connection, on every attempt: check that it is up and "
    "that the account's host and port are right, then retry",
    where="account",
)
_SERVER_TEXT_MAX = 200
# What LOGIN may carry in a quoted string: printable ASCII (RFC 3501 QUOTED-CHAR, 7-bit).
_QUOTABLE = re.compile(r"[\x20-\x7e]*")
# imaplib's abort for an answer that is not IMAP ("unexpected response: b'...'", also after
# "command: NAME => "), as opposed to a lost connection or a BYE.
_UNEXPECTED = re.compile(r"(^|=> )unexpected (tagged )?response")

# UID SEARCH answers are one line; imaplib refuses lines over 1 MB, so ask in windows of UIDs
# small enough that even a dense window stays well below that.
SEARCH_WINDOW = 50_000


@dataclass(frozen=True)
class FolderStatus:
    uidvalidity: int
    exists: int
    uidnext: int | None


class ImapSession:
    """One connection to one account's server. Use as a context manager; it logs out on exit."""

    def __init__(self, *, host: str, port: int, security: str, timeout: float) -> None:
        self.host = host
        self.port = port
        self.security = security
        self.timeout = timeout
        self._conn: imaplib.IMAP4 | None = None
        # Knows the password once login() is called: every text quoted from then on passes it.
        self.redactor = Redactor()

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    # --- connection ---------------------------------------------------------------------------

    def connect(self) -> None:
        with self._classified("while waiting for the greeting"):
            if self.security == "tls":
                self._conn = imaplib.IMAP4_SSL(
                    self.host, self.port, ssl_context=_tls_context(), timeout=self.timeout
                )
            else:
                self._conn = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
        if self.security == "starttls":
            if "STARTTLS" not in self._conn.capabilities:
                raise JobError(
                    TLS_ERROR,
                    f"IMAP server {self.where} does not offer STARTTLS; the account requires it",
                )
            with self._classified("during STARTTLS"):
                self._conn.starttls(_tls_context())

    def login(self, username: str, password: str) -> None:
        conn = self._require()
        if "LOGINDISABLED" in conn.capabilities:
            raise JobError(
                TLS_ERROR,
                f"IMAP server {self.where} refuses to log in without TLS (LOGINDISABLED); "
                "set the account's security to starttls or tls",
            )
        if "\0" in password:
            raise JobError(
                NOT_CONFIGURED,
                f"The IMAP password of {username!r} contains a NUL character, which IMAP cannot "
                "send; set the password again, then retry",
            )
        plain = "AUTH=PLAIN" in conn.capabilities and not (
            _QUOTABLE.fullmatch(password) and _QUOTABLE.fullmatch(username)
        )
        command = "AUTHENTICATE" if plain else "LOGIN"
        self.redactor.add(password, username=username, command=command)
        try:
            with self._classified(f"during {command}"):
                if plain:
                    conn.authenticate("PLAIN", _plain_response(username, password))
                elif _QUOTABLE.fullmatch(password):
                    conn.login(username, password)
                else:
                    _login_with_literal(conn, username, password)
        except JobError as exc:
            if exc.code != PROTOCOL_ERROR:
                raise
            # imaplib raises its plain `error` when the server answers LOGIN with NO or BAD.
            raise JobError(
                AUTH_FAILED,
                f"IMAP server {self.where} rejected the credentials of {username!r}: "
                f"{self._server_text(exc.__cause__)}",
            ) from None

    def logout(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        # Best effort: the sync is over (or failed already); a server that does not answer the
        # LOGOUT must not turn the outcome into a timeout.
        with contextlib.suppress(Exception):
            conn.logout()
        with contextlib.suppress(Exception):
            conn.shutdown()

    def __enter__(self) -> ImapSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.logout()

    # --- mailbox ------------------------------------------------------------------------------

    def examine(self, folder: str) -> FolderStatus:
        """Select `folder` read-only and read its UIDVALIDITY, EXISTS and UIDNEXT."""
        conn = self._require()
        with self._classified(f"during EXAMINE {folder}"):
            typ, data = conn.select(quote_mailbox(folder), readonly=True)
        if typ != "OK":
            raise JobError(
                FOLDER_NOT_FOUND,
                f"IMAP server {self.where} cannot open folder {folder!r}: "
                f"{self._server_text(data)}",
            )
        responses = conn.untagged_responses
        uidvalidity = _first_int(responses.get("UIDVALIDITY"))
        if uidvalidity is None:
            raise JobError(
                PROTOCOL_ERROR,
                f"IMAP server {self.where} sent no UIDVALIDITY for folder {folder!r}",
            )
        return FolderStatus(
            uidvalidity=uidvalidity,
            exists=_first_int(responses.get("EXISTS")) or 0,
            uidnext=_first_int(responses.get("UIDNEXT")),
        )

    def uids_above(self, last_uid: int, status: FolderStatus) -> Iterator[list[int]]:
        """UIDs greater than `last_uid`, ascending, one list per search window."""
        conn = self._require()
        start = last_uid + 1
        while True:
            # Without UIDNEXT we cannot bound the windows: one open-ended search.
            end = start + SEARCH_WINDOW - 1 if status.uidnext else None
            with self._classified("during UID SEARCH"):
                typ, data = conn.uid("SEARCH", f"UID {start}:{end or '*'}")
            if typ != "OK":
                raise JobError(
                    PROTOCOL_ERROR,
                    f"IMAP server {self.where} refused UID SEARCH: {self._server_text(data)}",
                )
            # "n:*" with n above every UID still matches the highest one (RFC 3501): filter.
            uids = sorted(
                uid for chunk in data if chunk for uid in map(int, chunk.split()) if uid >= start
            )
            if uids:
                yield uids
            if end is None or status.uidnext is None or end + 1 >= status.uidnext:
                return
            start = end + 1

    def fetch_envelopes(self, first_uid: int, last_uid: int) -> list[Envelope]:
        """Envelopes of the messages with first_uid <= UID <= last_uid, in UID order."""
        conn = self._require()
        with self._classified(f"during UID FETCH {first_uid}:{last_uid}"):
            typ, data = conn.uid("FETCH", f"{first_uid}:{last_uid}", FETCH_ITEMS)
        if typ != "OK":
            raise JobError(
                PROTOCOL_ERROR,
                f"IMAP server {self.where} refused UID FETCH: {self._server_text(data)}",
            )
        try:
            envelopes = parse_fetch_response(data)
        except Exception as exc:  # the parser tolerates odd headers; this is a malformed answer
            raise JobError(
                PROTOCOL_ERROR,
                f"IMAP server {self.where} sent a FETCH answer that cannot be parsed "
                f"({self._server_text(exc)})",
            ) from exc
        return sorted((e for e in envelopes if first_uid <= e.uid <= last_uid), key=lambda e: e.uid)

    # --- errors -------------------------------------------------------------------------------

    def _require(self) -> imaplib.IMAP4:
        if self._conn is None:
            raise RuntimeError("not connected")
        return self._conn

    @contextlib.contextmanager
    def _classified(self, step: str) -> Iterator[None]:
        """Turn socket, TLS and imaplib failures into classified JobErrors."""
        try:
            yield
        except JobError:
            raise
        except TimeoutError:
            # Before 3.10 socket.timeout; since then TimeoutError, also raised by TLS handshakes.
            raise JobError(
                TIMEOUT,
                f"IMAP connection to {self.where} timed out after {self.timeout:g}s {step}",
                retryable=True,
            ) from None
        except ssl.SSLError as exc:
            raise JobError(
                TLS_ERROR,
                f"TLS with IMAP server {self.where} failed {step}: {_ssl_reason(exc)}",
            ) from None
        except socket.gaierror as exc:
            raise JobError(
                UNAVAILABLE,
                f"IMAP host {self.host!r} cannot be resolved ({exc.strerror})",
                retryable=True,
            ) from None
        except ConnectionRefusedError:
            raise JobError(
                UNAVAILABLE, f"IMAP connection to {self.where} was refused", retryable=True
            ) from None
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
            # The server dropped the connection: the same as the EOF imaplib reports below,
            # whichever of the two the timing of the drop produces.
            raise JobError(
                UNAVAILABLE,
                f"IMAP connection to {self.where} was lost {step}: {exc.strerror}",
                retryable=True,
            ) from None
        except imaplib.IMAP4.abort as exc:
            # imaplib aborts on a lost connection ("socket error: EOF"), on a BYE, and on an
            # answer that is not IMAP at all ("unexpected response").
            text = self._server_text(exc)
            if not _UNEXPECTED.search(str(exc.args[0] if exc.args else "")):
                raise JobError(
                    UNAVAILABLE,
                    f"IMAP connection to {self.where} was lost {step}: {text}",
                    retryable=True,
                ) from None
            raise JobError(
                PROTOCOL_ERROR, f"IMAP server {self.where} answered oddly {step}: {text}"
            ) from exc
        except imaplib.IMAP4.error as exc:
            raise JobError(
                PROTOCOL_ERROR,
                f"IMAP server {self.where} answered with an error {step}: {self._server_text(exc)}",
            ) from exc
        except OSError as exc:  # reset, unreachable network, broken pipe ...
            raise JobError(
                UNAVAILABLE,
                f"IMAP connection to {self.where} failed {step}: "
                f"{exc.strerror or type(exc).__name__}",
                retryable=True,
            ) from None

    def _server_text(self, value: object) -> str:
        """What the server (or imaplib) said, short, printable, and without the password in any
        encoding; a note instead when it repeats the login command (see mailsync.redact)."""
        if isinstance(value, BaseException):
            value = value.args[0] if len(value.args) == 1 else str(value)
        if isinstance(value, list | tuple):
            value = value[-1] if value else ""
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        # Cleaned before and after whitespace is collapsed: a form of the password holding a
        # run of spaces is known either way.
        text = self.redactor.clean(" ".join(self.redactor.clean(str(value)).split()))
        return text[:_SERVER_TEXT_MAX]


def _plain_response(username: str, password: str) -> Callable[[bytes], bytes | None]:
    """The AUTHENTICATE PLAIN response (RFC 4616: no authzid, UTF-8), given once: a server that
    asks again gets "*" (imaplib's cancel), not the password a second time."""
    sent = False

    def respond(challenge: bytes) -> bytes | None:
        nonlocal sent
        if sent:
            return None
        sent = True
        return b"\0" + username.encode("utf-8") + b"\0" + password.encode("utf-8")

    return respond


def _login_with_literal(conn: imaplib.IMAP4, username: str, password: str) -> None:
    """LOGIN with the password as a literal ({N} CRLF and its UTF-8 bytes), for a password that
    a quoted string cannot carry. imaplib's login() only quotes; this sends LOGIN the way its
    append() sends a message (its `literal` attribute, then `_simple_command`)."""
    conn.literal = password.encode("utf-8")  # type: ignore[assignment]  # imaplib sends bytes
    typ, data = conn._simple_command("LOGIN", username)
    if typ != "OK":
        raise conn.error(data[-1])
    conn.state = "AUTH"


def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def _ssl_reason(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed ({exc.verify_message})"
    return exc.reason or str(exc)


def _first_int(values: list | None) -> int | None:
    if not values or values[0] is None:
        return None
    try:
        return int(values[0])
    except (TypeError, ValueError):
        return None


def quote_mailbox(name: str) -> str:
    """A mailbox name as an IMAP quoted string, non-ASCII in modified UTF-7 (RFC 3501 5.1.3)."""
    encoded = encode_modified_utf7(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_modified_utf7(name: str) -> str:
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)
